"""The Node.js client in examples/node, written from the .proto alone, runs as real `node`
processes against a real coordinator: its scenarios print what the Python examples print,
its workflows replay recorded history, and it follows events a Python workflow sets.

Needs `node` on PATH and examples/node/node_modules (`make node-deps`; `make test` runs it).
"""

from __future__ import annotations

import json
import os
import queue
import shutil
import subprocess
import threading
from types import TracebackType
from typing import Any

import pytest

import durable
from durable.v1 import coordinator_pb2 as pb
from tests.support import ROOT, RPC_TIMEOUT, Coordinator, new_id, payload

NODE_EXAMPLES = ROOT / "examples" / "node"
# Bound on a whole Node program run, and on each awaited output line.
RUN_TIMEOUT = 60.0
LINE_TIMEOUT = 10.0

PROGRESS_OUTPUT = ["progress: 50%", "progress: 100%", "status: complete", "result: done"]


def node() -> str:
    path = shutil.which("node")
    assert path, "node (Node.js 20+) is not on PATH: the Node client tests need it"
    assert (NODE_EXAMPLES / "node_modules").is_dir(), (
        "examples/node/node_modules is missing: run `make node-deps`"
    )
    return path


def run_node(
    script: str, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run `node examples/node/SCRIPT ARGS` from the repository root, to completion."""
    return subprocess.run(
        [node(), f"examples/node/{script}", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT,
        env=env,
    )


def output_of(result: subprocess.CompletedProcess[str]) -> list[str]:
    assert result.returncode == 0, f"exit {result.returncode}\n{result.stdout}\n{result.stderr}"
    return result.stdout.splitlines()


class RunningNode:
    """A Node program whose stdout lines are read as they come, each with a bounded wait."""

    def __init__(self, script: str, *args: str, env: dict[str, str] | None = None) -> None:
        self.process = subprocess.Popen(
            [node(), f"examples/node/{script}", *args],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        self._lines: queue.Queue[str | None] = queue.Queue()
        self._stderr: list[str] = []
        self._readers = [
            threading.Thread(target=self._read_stdout, daemon=True),
            threading.Thread(target=self._read_stderr, daemon=True),
        ]
        for reader in self._readers:
            reader.start()

    def _read_stdout(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self._lines.put(line.rstrip("\n"))
        self._lines.put(None)

    def _read_stderr(self) -> None:
        assert self.process.stderr is not None
        self._stderr.append(self.process.stderr.read())

    def next_line(self, timeout: float = LINE_TIMEOUT) -> str:
        try:
            line = self._lines.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"no output line within {timeout}s") from None
        assert line is not None, f"the program ended early: exit {self.process.wait(1)}"
        return line

    def finish(self) -> tuple[int, list[str], str]:
        """Wait for the exit; returns the exit code, the lines not read yet, and stderr."""
        code = self.process.wait(timeout=RUN_TIMEOUT)
        for reader in self._readers:
            reader.join(timeout=LINE_TIMEOUT)
        rest: list[str] = []
        while (line := self._lines.get(timeout=LINE_TIMEOUT)) is not None:
            rest.append(line)
        return code, rest, "".join(self._stderr)

    def __enter__(self) -> RunningNode:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=RUN_TIMEOUT)


# --- the coordinator's record, read over gRPC from Python ----------------------------------


def checkpoints(coordinator: Coordinator, workflow_id: str) -> list[tuple[int, str, str, Any]]:
    """(position, kind, name, recorded step output) of each recorded step, in order."""
    reply = coordinator.stub.ListSteps(
        pb.ListStepsRequest(workflow_id=workflow_id), timeout=RPC_TIMEOUT
    )
    kinds = {pb.STEP_KIND_STEP: "step", pb.STEP_KIND_SET_EVENT: "set_event"}
    return [
        (step.step_id, kinds[step.kind], step.name, json.loads(step.output.data))
        for step in reply.steps
    ]


def record(
    coordinator: Coordinator,
    workflow_id: str,
    data: str,
    *steps: pb.RunStepRequest | pb.SetEventRequest,
) -> None:
    """Start the Node example's workflow with input {"data": DATA} and record `steps` as if
    a runner had done them and died."""
    stub = coordinator.stub
    stub.StartWorkflow(
        pb.StartWorkflowRequest(
            workflow_id=workflow_id,
            name="examples.node.process_data",
            input=payload({"data": data}),
        ),
        timeout=RPC_TIMEOUT,
    )
    for step in steps:
        step.workflow_id = workflow_id
        if isinstance(step, pb.RunStepRequest):
            stub.RunStep(step, timeout=RPC_TIMEOUT)
        else:
            stub.SetEvent(step, timeout=RPC_TIMEOUT)


def status_of(coordinator: Coordinator, workflow_id: str) -> int:
    reply = coordinator.stub.GetWorkflow(
        pb.GetWorkflowRequest(workflow_id=workflow_id), timeout=RPC_TIMEOUT
    )
    return reply.workflow.status


# --- the programs ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "script", ["progress.js", "checkout.js", "watch.js", "send.js", "enqueue.js", "schedules.js"]
)
def test_help(script: str) -> None:
    result = run_node(script, "--help")
    assert result.returncode == 0, result.stderr
    assert "--coordinator HOST:PORT" in result.stdout


def test_progress_runs_the_workflow_through_raw_rpcs(coordinator: Coordinator, sdk: None) -> None:
    workflow_id = new_id("data")
    args = ["--coordinator", coordinator.address, "--workflow-id", workflow_id]
    output = output_of(run_node("progress.js", *args, "--step-seconds", "0"))

    # The watcher printed 50 while the workflow ran and 100 after it; the output is the
    # Python example's, line for line.
    assert output == [f"workflow: {workflow_id}", *PROGRESS_OUTPUT]
    # Checkpoints sit at the positions the wire contract numbers from 1.
    assert checkpoints(coordinator, workflow_id) == [
        (1, "set_event", "status", None),
        (2, "step", "step_one", "the quick brown fox"),
        (3, "set_event", "progress", None),
        (4, "step", "step_two", 4),
        (5, "set_event", "progress", None),
        (6, "set_event", "status", None),
    ]
    # What Node recorded reads back through the Python SDK.
    assert durable.retrieve_workflow(workflow_id).result(timeout=RPC_TIMEOUT) == "done"
    assert durable.get_event(workflow_id, "progress", timeout=RPC_TIMEOUT) == 100
    assert durable.get_event(workflow_id, "status", timeout=RPC_TIMEOUT) == "complete"

    # Run again under the same ID: the finished workflow does not run again, its recorded
    # result comes back and the watcher sees only the last progress value.
    again = output_of(run_node("progress.js", *args, "--step-seconds", "0", "--verbose"))
    assert again == [f"workflow: {workflow_id}", *PROGRESS_OUTPUT[1:]]
    assert len(checkpoints(coordinator, workflow_id)) == 6


def test_progress_resumes_from_the_recorded_input(coordinator: Coordinator) -> None:
    """A runner died after step 1: the next run replays it, then runs step one on the input
    recorded at the first start, not on its own --data."""
    workflow_id = new_id("data")
    record(
        coordinator,
        workflow_id,
        "Recorded  Input Text Here",
        pb.SetEventRequest(step_id=1, key="status", value=payload("processing")),
    )
    result = run_node(
        "progress.js",
        *("--coordinator", coordinator.address, "--workflow-id", workflow_id),
        *("--data", "ignored", "--step-seconds", "0", "--verbose"),
    )
    assert output_of(result) == [f"workflow: {workflow_id}", *PROGRESS_OUTPUT]
    assert result.stderr.splitlines() == [
        "step 1 set_event status: replayed",
        "step 2 step step_one: ran",
        "step 3 set_event progress: ran",
        "step 4 step step_two: ran",
        "step 5 set_event progress: ran",
        "step 6 set_event status: ran",
    ]
    recorded = checkpoints(coordinator, workflow_id)
    assert recorded[1] == (2, "step", "step_one", "recorded input text here")
    assert recorded[3] == (4, "step", "step_two", 4)


def test_progress_replays_recorded_steps_with_their_recorded_outputs(
    coordinator: Coordinator,
) -> None:
    """A runner died after progress 50: the next run skips positions 1-3 and feeds step two
    the *recorded* output of step one."""
    workflow_id = new_id("data")
    record(
        coordinator,
        workflow_id,
        "The Quick  Brown Fox",
        pb.SetEventRequest(step_id=1, key="status", value=payload("processing")),
        pb.RunStepRequest(step_id=2, name="step_one", output=payload("three recorded words")),
        pb.SetEventRequest(step_id=3, key="progress", value=payload(50)),
    )
    result = run_node(
        "progress.js",
        *("--coordinator", coordinator.address, "--workflow-id", workflow_id),
        *("--step-seconds", "0", "--verbose"),
    )
    # The watcher joins with progress at 50 (the current value), then sees 100.
    assert output_of(result) == [f"workflow: {workflow_id}", *PROGRESS_OUTPUT]
    assert [line.rsplit(": ", 1)[1] for line in result.stderr.splitlines()] == [
        *["replayed"] * 3,
        *["ran"] * 3,
    ]
    recorded = checkpoints(coordinator, workflow_id)
    assert recorded[1] == (2, "step", "step_one", "three recorded words")
    assert recorded[3] == (4, "step", "step_two", 3)


def test_progress_refuses_a_history_its_code_does_not_match(coordinator: Coordinator) -> None:
    workflow_id = new_id("data")
    record(
        coordinator,
        workflow_id,
        "x",
        pb.RunStepRequest(step_id=1, name="something_else", output=payload(1)),
    )
    result = run_node(
        "progress.js", "--coordinator", coordinator.address, "--workflow-id", workflow_id
    )
    assert result.returncode == 2
    assert result.stdout.splitlines() == [f"workflow: {workflow_id}"]
    assert result.stderr.splitlines() == [
        f'workflow {workflow_id} step 1 was recorded as step "something_else", but the code '
        'asked for set_event "status": the workflow is not deterministic'
    ]
    # Not the workflow's outcome: it stays PENDING, to be resumed by fixed code.
    assert status_of(coordinator, workflow_id) == pb.WORKFLOW_STATUS_PENDING


def test_checkout_prints_payment_url_then_success(coordinator: Coordinator) -> None:
    order_id = new_id("order")
    args = ["--coordinator", coordinator.address, "--order-id", order_id, "--step-seconds", "0"]
    expected = [
        f"workflow: checkout-{order_id}",
        f"payment URL: https://pay.example/{order_id}",
        "result: success",
    ]
    assert output_of(run_node("checkout.js", *args)) == expected
    # The same order again is the same workflow: its recorded URL and result.
    assert output_of(run_node("checkout.js", *args)) == expected
    assert len(checkpoints(coordinator, f"checkout-{order_id}")) == 3


def test_checkout_shows_payment_url_while_workflow_still_runs(coordinator: Coordinator) -> None:
    """The URL comes from the event, not the result: it is printed while the workflow is
    still PENDING, waiting for the payment (3 s here)."""
    order_id = new_id("order")
    workflow_id = f"checkout-{order_id}"
    env = {**os.environ, "DURABLE_COORDINATOR": coordinator.address}  # the default address
    with RunningNode("checkout.js", "--order-id", order_id, "--step-seconds", "3", env=env) as run:
        assert run.next_line() == f"workflow: {workflow_id}"
        assert run.next_line() == f"payment URL: https://pay.example/{order_id}"
        assert status_of(coordinator, workflow_id) == pb.WORKFLOW_STATUS_PENDING
        code, rest, stderr = run.finish()
    assert (code, rest, stderr) == (0, ["result: success"], "")


@pytest.mark.parametrize(
    ("script", "args", "first_call"),
    [
        ("progress.js", [], "StartWorkflow"),
        ("checkout.js", [], "StartWorkflow"),
        ("watch.js", ["--workflow-id", "w", "--key", "k"], "GetEvent"),
    ],
)
def test_unreachable_coordinator_is_one_line_and_exit_2(
    script: str, args: list[str], first_call: str
) -> None:
    result = run_node(script, "--coordinator", "127.0.0.1:1", *args)
    assert result.returncode == 2
    [line] = result.stderr.splitlines()
    assert line.startswith(f"cannot reach the coordinator at 127.0.0.1:1: {first_call}: ")
    assert "UNAVAILABLE" in line


def test_watch_ends_with_exit_1_when_the_timeout_passes(coordinator: Coordinator) -> None:
    result = run_node(
        "watch.js",
        *("--coordinator", coordinator.address, "--workflow-id", new_id("none")),
        *("--key", "progress", "--timeout", "0.2"),
    )
    assert (result.returncode, result.stdout) == (1, "")
    assert result.stderr == "timed out after 0.2s before the workflow finished\n"


# --- across languages: a Python SDK workflow, a Node watcher -------------------------------

# Values of every JSON kind, so the watcher must decode and print them exactly.
PUBLISHED: list[Any] = [0, 25, 50.5, "75%", {"percent": 100, "note": "fertig ✓"}, [1, None]]
parked: set[str] = set()


class Crash(BaseException):
    """Stands for the process dying: not an Exception, so nothing records it."""


@durable.step
def park(workflow_id: str) -> None:
    if workflow_id in parked:
        raise Crash(workflow_id)


@durable.workflow(name="tests.node.publishes_progress")
def publishes_progress(workflow_id: str) -> str:
    durable.set_event("progress", PUBLISHED[0])
    park(workflow_id)
    for value in PUBLISHED[1:]:
        durable.set_event("progress", value)
    return "done"


def start_publishing(workflow_id: str) -> durable.WorkflowHandle[str]:
    with durable.set_workflow_id(workflow_id):
        return durable.start_workflow(publishes_progress, workflow_id)


def test_node_watcher_prints_exactly_what_a_python_workflow_sets(
    coordinator: Coordinator, sdk: None
) -> None:
    workflow_id = new_id("xlang")
    # Park the workflow after its first value: it dies in the step that follows.
    parked.add(workflow_id)
    with pytest.raises(Crash):
        start_publishing(workflow_id).result(timeout=RPC_TIMEOUT)
    assert status_of(coordinator, workflow_id) == pb.WORKFLOW_STATUS_PENDING

    with RunningNode(
        "watch.js",
        *("--coordinator", coordinator.address, "--workflow-id", workflow_id),
        *("--key", "progress", "--timeout", "30"),
    ) as watcher:
        # Node is following before the workflow resumes: every later value must reach it.
        assert json.loads(watcher.next_line()) == PUBLISHED[0]
        parked.discard(workflow_id)
        assert start_publishing(workflow_id).result(timeout=RPC_TIMEOUT) == "done"
        code, rest, stderr = watcher.finish()

    assert (code, stderr) == (0, "")
    assert [json.loads(line) for line in rest] == PUBLISHED[1:]


# --- across languages: Node sends messages and enqueues work for Python ------------------


@durable.workflow(name="tests.node.awaits_approval")
def awaits_approval() -> Any:
    return durable.recv("approval", timeout=30)


def test_node_sends_a_message_a_python_workflow_receives_once(
    coordinator: Coordinator, sdk: None
) -> None:
    workflow_id = new_id("approve")
    args = ["--coordinator", coordinator.address, "--workflow-id", workflow_id]
    message = {"approved": True, "by": "zoë"}
    # Sent before the workflow exists: the message waits for it. Sent twice with one key:
    # delivered once.
    send = [*args, "--topic", "approval", "--message", json.dumps(message), "--key", "k-1"]
    assert output_of(run_node("send.js", *send)) == ["sent"]
    assert output_of(run_node("send.js", *send)) == ["already sent"]

    with durable.set_workflow_id(workflow_id):
        assert awaits_approval() == message
    # A second workflow run under the same ID replays its recorded receive.
    with durable.set_workflow_id(workflow_id):
        assert awaits_approval() == message
    assert [step.kind for step in durable.list_steps(workflow_id)] == ["recv"]


def test_node_send_refuses_bad_input_in_one_line(coordinator: Coordinator) -> None:
    result = run_node(
        "send.js",
        *("--coordinator", coordinator.address, "--workflow-id", "bad id with spaces"),
        *("--message", "1"),
    )
    assert result.returncode == 2
    [line] = result.stderr.splitlines()
    assert line.startswith("the coordinator refused: Send: INVALID_ARGUMENT: ")


mailroom = durable.Queue("tests-node-mailroom", concurrency=2)


@durable.workflow(name="tests.node.welcome")
def welcome(user: str) -> str:
    return f"welcome, {user}"


def test_node_enqueues_a_workflow_a_python_worker_runs(coordinator: Coordinator, sdk: None) -> None:
    workflow_id = new_id("welcome")
    with durable.Worker([welcome], queues=[mailroom], lease_seconds=5):
        result = run_node(
            "enqueue.js",
            *("--coordinator", coordinator.address, "--queue", mailroom.name),
            *("--name", "tests.node.welcome", "--workflow-id", workflow_id),
            *("--input", json.dumps({"args": ["ada"], "kwargs": {}}), "--timeout", "30"),
        )
    assert output_of(result) == [f"workflow: {workflow_id}", 'result: "welcome, ada"']
    info = durable.get_workflow(workflow_id)
    assert (info.queue_name, info.status.value) == (mailroom.name, "SUCCESS")


# --- schedules: Node lists what Python created -------------------------------------------


def test_node_lists_schedules_created_over_python_grpc(coordinator: Coordinator) -> None:
    from durable.v1 import schedules_pb2 as spb
    from durable.v1 import schedules_pb2_grpc as spb_grpc

    stub = spb_grpc.ScheduleServiceStub(coordinator.channel)
    workflow = f"tests.node.{new_id('report')}"
    tag = new_id("node")
    nightly, hourly = f"{tag}-nightly", f"{tag}-hourly"
    stub.SetSchedule(
        spb.SetScheduleRequest(
            spec=spb.ScheduleSpec(
                name=nightly, cron="0 2 * * *", time_zone="Europe/Paris", workflow_name=workflow
            )
        ),
        timeout=RPC_TIMEOUT,
    )
    stub.SetSchedule(
        spb.SetScheduleRequest(
            spec=spb.ScheduleSpec(
                name=hourly, cron="0 * * * *", workflow_name=workflow, queue_name="reports"
            )
        ),
        timeout=RPC_TIMEOUT,
    )
    stub.PauseSchedule(spb.PauseScheduleRequest(name=hourly), timeout=RPC_TIMEOUT)
    try:
        shown = stub.GetSchedule(spb.GetScheduleRequest(name=nightly), timeout=RPC_TIMEOUT)
        ticks = [
            t.ToDatetime().strftime("%Y-%m-%dT%H:%M:%SZ") for t in shown.schedule.next_tick_times
        ]
        assert len(ticks) == 5
        args = ["--coordinator", coordinator.address, "--workflow", workflow]
        # One schedule per page: the script follows next_page_token.
        output = output_of(run_node("schedules.js", *args, "--page-size", "1"))
        assert output == [
            f"schedule: {hourly}",
            "  cron: 0 * * * * (UTC)",
            f"  workflow: {workflow}",
            "  queue: reports",
            "  paused: yes",
            "  next ticks: none",
            f"schedule: {nightly}",
            "  cron: 0 2 * * * (Europe/Paris)",
            f"  workflow: {workflow}",
            "  paused: no",
            f"  next ticks: {', '.join(ticks)}",
        ]
        as_json = [
            json.loads(line) for line in output_of(run_node("schedules.js", *args, "--json"))
        ]
        assert [(s["name"], s["paused"], s["queue"]) for s in as_json] == [
            (hourly, True, "reports"),
            (nightly, False, None),
        ]
        assert as_json[1]["next_ticks"] == ticks
        assert as_json[1]["catch_up"] == "CATCH_UP_POLICY_SKIP"
        # Without the filter the listing includes them too; an unknown workflow lists none.
        everything = output_of(run_node("schedules.js", "--coordinator", coordinator.address))
        assert f"schedule: {nightly}" in everything and f"schedule: {hourly}" in everything
        none = run_node("schedules.js", *args[:2], "--workflow", f"{workflow}.none")
        assert output_of(none) == ["no schedules"]
    finally:
        for name in (nightly, hourly):
            stub.DeleteSchedule(spb.DeleteScheduleRequest(name=name), timeout=RPC_TIMEOUT)

    helped = run_node("schedules.js", "--help")
    assert helped.returncode == 0 and "--coordinator HOST:PORT" in helped.stdout
    unreachable = run_node("schedules.js", "--coordinator", "127.0.0.1:1")
    assert unreachable.returncode == 2
    [line] = unreachable.stderr.splitlines()
    assert line.startswith("cannot reach the coordinator at 127.0.0.1:1: ListSchedules: ")
