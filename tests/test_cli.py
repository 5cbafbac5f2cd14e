"""The `durable` command line as real processes (`python -m durable ...`) against a real
coordinator, plus unit tests of its formatting."""

from __future__ import annotations

import io
import json
import os
import pty
import queue
import re
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import replace
from datetime import datetime, timedelta, timezone
from typing import IO, Any

import pytest

import durable
from durable import cli
from durable.v1 import coordinator_pb2 as pb
from tests.support import ROOT, Coordinator, eventually, free_port, new_id, payload

# Every command here answers within this; a watch ends within it after its last value.
RUN_TIMEOUT = 30.0
# How long a watcher may take to print a value once it is set.
PROMPT = 15.0

BAR_0 = "progress  [--------------------]   0%"
BAR_50 = "progress  [##########----------]  50%"
BAR_100 = "progress  [####################] 100%"


def environment() -> dict[str, str]:
    """This environment without DURABLE_* settings, so only the flags given count."""
    return {k: v for k, v in os.environ.items() if not k.startswith("DURABLE_")}


def command(coordinator: Coordinator | str, *args: str) -> list[str]:
    address = coordinator if isinstance(coordinator, str) else coordinator.address
    return [sys.executable, "-m", "durable", "--coordinator", address, *args]


def run(coordinator: Coordinator | str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        command(coordinator, *args),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT,
        env=environment(),
    )


def ok(coordinator: Coordinator | str, *args: str) -> str:
    """Run a command that must succeed; its stdout."""
    result = run(coordinator, *args)
    assert result.returncode == 0, f"exit {result.returncode}\n{result.stdout}\n{result.stderr}"
    return result.stdout


def fails(coordinator: Coordinator | str, *args: str, code: int = 2) -> str:
    """Run a command that must fail with `code` and one line on stderr; that line."""
    result = run(coordinator, *args)
    assert result.returncode == code, f"exit {result.returncode}\n{result.stdout}\n{result.stderr}"
    assert "Traceback" not in result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


@pytest.fixture(scope="module")
def client(coordinator: Coordinator) -> Iterator[durable.Client]:
    client = durable.Client(coordinator.address)
    yield client
    client.close()


def start(client: durable.Client, name: str = "cli.flow", value: Any = None) -> str:
    workflow_id = new_id("cli")
    client.start_workflow(workflow_id, name, payload({"args": [value], "kwargs": {}}))
    return workflow_id


def set_event(client: durable.Client, workflow_id: str, step_id: int, key: str, value: Any) -> None:
    client.set_event(
        pb.SetEventRequest(workflow_id=workflow_id, step_id=step_id, key=key, value=payload(value))
    )


def finish(client: durable.Client, workflow_id: str, output: Any = "done") -> None:
    client.finish_workflow(
        pb.FinishWorkflowRequest(workflow_id=workflow_id, output=payload(output))
    )


def inspected_workflow(client: durable.Client) -> str:
    """A finished workflow with a step retried twice, a failed step and an event."""
    workflow_id = start(client, "cli.inspected", "x")
    for attempt in (1, 2):
        client.record_step_attempt(
            pb.RecordStepAttemptRequest(
                workflow_id=workflow_id,
                step_id=1,
                name="fetch",
                attempt=attempt,
                error=pb.Failure(type="builtins.TimeoutError", message=f"slow {attempt}"),
            )
        )
    client.run_step(
        pb.RunStepRequest(
            workflow_id=workflow_id,
            step_id=1,
            name="fetch",
            output=payload({"rows": 3}),
            attempts=3,
        )
    )
    set_event(client, workflow_id, 2, "progress", 50)
    client.run_step(
        pb.RunStepRequest(
            workflow_id=workflow_id,
            step_id=3,
            name="check",
            error=pb.Failure(type="builtins.ValueError", message="bad row"),
        )
    )
    finish(client, workflow_id, "done")
    return workflow_id


# --- workflows list ------------------------------------------------------------------------


def test_list_prints_an_aligned_table_newest_first(
    coordinator: Coordinator, client: durable.Client
) -> None:
    name = f"cli.list.{new_id()}"
    ids = [start(client, name, n) for n in range(3)]
    finish(client, ids[0])
    durable.cancel_workflow(ids[1], client=client)

    header, *rows = ok(coordinator, "workflows", "list", "--name", name).splitlines()

    assert header.split() == ["ID", "NAME", "STATUS", "CREATED", "ATTEMPTS"]
    assert [row.split()[0] for row in rows] == ids[::-1]
    assert [row.split()[2] for row in rows] == ["PENDING", "CANCELLED", "SUCCESS"]
    # Every cell starts where its header does.
    starts = [match.start() for match in re.finditer(r"\S+", header)]
    for row in rows:
        assert [match.start() for match in re.finditer(r"\S+", row)] == starts, row
    created = durable.get_workflow(ids[2], client=client).created_at
    assert rows[0].split()[3] == created.astimezone().isoformat(timespec="seconds")
    assert rows[0].split()[4] == "0"


def test_list_filters_limits_and_prints_json(
    coordinator: Coordinator, client: durable.Client
) -> None:
    name = f"cli.list.{new_id()}"
    ids = [start(client, name, n) for n in range(3)]
    finish(client, ids[0], {"answer": 42})

    listed = json.loads(ok(coordinator, "workflows", "list", "--name", name, "--json"))
    assert [item["workflow_id"] for item in listed] == ids[::-1]
    oldest = listed[-1]
    assert oldest["status"] == "SUCCESS"
    assert oldest["output"] == {"answer": 42}
    assert oldest["input"] == {"args": [0], "kwargs": {}}
    assert oldest["error"] is None
    assert datetime.fromisoformat(oldest["created_at"]).tzinfo is not None

    def listed_ids(*args: str) -> list[str]:
        out = ok(coordinator, "workflows", "list", "--name", name, "--json", *args)
        return [item["workflow_id"] for item in json.loads(out)]

    assert listed_ids("--status", "success") == [ids[0]]
    assert listed_ids("--status", "SUCCESS", "pending") == ids[::-1]
    assert listed_ids("--status", "cancelled") == []
    assert listed_ids("--since", "1h") == ids[::-1]
    future = (datetime.now(timezone.utc) + timedelta(hours=1)).isoformat()
    assert listed_ids("--since", future) == []
    assert listed_ids("--limit", "2") == ids[:0:-1]
    assert listed_ids("--limit", "0") == ids[::-1]

    limited = run(coordinator, "workflows", "list", "--name", name, "--limit", "1")
    assert limited.returncode == 0
    assert len(limited.stdout.splitlines()) == 2  # header and one row
    assert "more match" in limited.stderr

    nothing = run(coordinator, "workflows", "list", "--name", f"{name}.none")
    assert (nothing.returncode, nothing.stdout) == (0, "")
    assert "no workflows" in nothing.stderr


# --- workflows show ------------------------------------------------------------------------


def test_show_prints_the_workflow_its_steps_and_events(
    coordinator: Coordinator, client: durable.Client
) -> None:
    workflow_id = inspected_workflow(client)

    lines = ok(coordinator, "workflows", "show", workflow_id).splitlines()

    fields = dict(line.split(None, 1) for line in lines[: lines.index("")])
    assert fields["workflow"] == workflow_id
    assert fields["name"] == "cli.inspected"
    assert fields["status"] == "SUCCESS"
    assert fields["input"] == '{"args": ["x"], "kwargs": {}}'
    assert fields["output"] == '"done"'
    assert "steps (3)" in lines and "events (1)" in lines
    steps = lines[lines.index("steps (3)") + 1 : lines.index("events (1)") - 1]
    assert steps[0].split() == ["STEP", "NAME", "KIND", "ATTEMPTS", "RECORDED", "TOOK", "OUTCOME"]
    assert steps[1].split()[:4] == ["1", "fetch", "step", "3"]
    assert steps[1].endswith('{"rows": 3}')
    assert steps[2].split()[0] == "attempt"
    assert steps[2].endswith(": builtins.TimeoutError: slow 1")
    assert steps[3].endswith(": builtins.TimeoutError: slow 2")
    assert steps[4].split()[:4] == ["2", "progress", "set_event", "1"]
    assert steps[5].split()[:4] == ["3", "check", "step", "1"]
    assert steps[5].endswith("error builtins.ValueError: bad row")
    events = lines[lines.index("events (1)") + 1 :]
    assert [line.split() for line in events] == [["KEY", "VALUE"], ["progress", "50"]]


def test_show_json_holds_everything(coordinator: Coordinator, client: durable.Client) -> None:
    workflow_id = inspected_workflow(client)

    shown = json.loads(ok(coordinator, "workflows", "show", workflow_id, "--json"))

    assert shown["workflow"]["workflow_id"] == workflow_id
    assert shown["workflow"]["status"] == "SUCCESS"
    assert shown["events"] == {"progress": 50}
    fetch, progress, check = shown["steps"]
    assert (fetch["name"], fetch["kind"], fetch["attempts"]) == ("fetch", "step", 3)
    assert fetch["output"] == {"rows": 3}
    assert [a["attempt"] for a in fetch["failed_attempts"]] == [1, 2]
    assert fetch["failed_attempts"][0]["error"] == {
        "type": "builtins.TimeoutError",
        "message": "slow 1",
    }
    assert progress["kind"] == "set_event"
    assert check["error"] == {"type": "builtins.ValueError", "message": "bad row"}


# --- cancel, resume, fork ------------------------------------------------------------------


def test_cancel_resume_and_fork_print_the_resulting_status(
    coordinator: Coordinator, client: durable.Client
) -> None:
    workflow_id = start(client)
    set_event(client, workflow_id, 1, "stage", "one")

    assert ok(coordinator, "workflows", "cancel", workflow_id) == f"{workflow_id}  CANCELLED\n"
    assert ok(coordinator, "workflows", "resume", workflow_id) == f"{workflow_id}  ENQUEUED\n"
    cancelled = json.loads(ok(coordinator, "workflows", "cancel", workflow_id, "--json"))
    assert (cancelled["workflow_id"], cancelled["status"]) == (workflow_id, "CANCELLED")
    resumed = json.loads(ok(coordinator, "workflows", "resume", workflow_id, "--json"))
    assert resumed["status"] == "ENQUEUED"

    fork_id = new_id("cli-fork")
    forked = ok(
        coordinator, "workflows", "fork", workflow_id, "--from-step", "2", "--new-id", fork_id
    )
    assert forked == f"{fork_id}  ENQUEUED\n"
    assert durable.list_events(fork_id, client=client) == {"stage": "one"}

    again = json.loads(
        ok(coordinator, "workflows", "fork", workflow_id, "--from-step", "1", "--json")
    )
    assert again["forked_from"] == workflow_id
    assert again["status"] == "ENQUEUED"
    assert again["workflow_id"] not in (workflow_id, fork_id)


def test_cancelling_a_finished_workflow_says_so(
    coordinator: Coordinator, client: durable.Client
) -> None:
    workflow_id = start(client)
    finish(client, workflow_id)

    result = run(coordinator, "workflows", "cancel", workflow_id)

    assert result.returncode == 0
    assert result.stdout == f"{workflow_id}  SUCCESS\n"
    assert "already finished" in result.stderr
    line = fails(coordinator, "workflows", "resume", workflow_id)
    assert "finished with SUCCESS" in line


# --- errors --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "args",
    [
        ["workflows", "show", "{id}"],
        ["workflows", "cancel", "{id}"],
        ["workflows", "resume", "{id}"],
        ["workflows", "fork", "{id}", "--from-step", "1"],
        ["workflows", "show", "{id}", "--json"],
    ],
)
def test_an_unknown_workflow_is_one_line_and_exit_2(
    coordinator: Coordinator, args: list[str]
) -> None:
    missing = new_id("missing")
    line = fails(coordinator, *(arg.format(id=missing) for arg in args))
    assert line == f"durable: workflow {missing!r} does not exist"


def test_an_unreachable_coordinator_is_one_line_and_exit_2() -> None:
    address = f"127.0.0.1:{free_port()}"
    line = fails(address, "--retry-seconds", "0", "workflows", "list")
    assert line.startswith(f"durable: coordinator {address} is unavailable")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["workflows", "list", "--since", "last tuesday"], "neither an ISO 8601 time"),
        (["workflows", "list", "--status", "running"], "unknown status 'running'"),
        (["workflows", "list", "--limit", "-1"], "must be 0 or more"),
        (["workflows", "fork", "wf", "--from-step", "0"], "must be 1 or more"),
        (["workflows", "fork", "wf"], "--from-step"),
        (["events", "get", "wf", "key", "--timeout", "soon"], "not a number"),
        (["workflows", "show", "bad id!"], "workflow_id"),
        (["workflows"], "required"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(
    coordinator: Coordinator, args: list[str], message: str
) -> None:
    assert message in fails(coordinator, *args)


def test_tls_files_that_cannot_be_read_are_one_line_and_exit_2(coordinator: Coordinator) -> None:
    line = fails(coordinator, "--tls-ca", "/nonexistent/ca.pem", "workflows", "list")
    assert line.startswith("durable: cannot read a TLS file")


def test_the_console_script_and_help() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "durable", "--help"],
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT,
        cwd=ROOT,
    )
    assert result.returncode == 0
    for flag in ("--coordinator", "--token", "--tls-ca", "workflows", "events"):
        assert flag in result.stdout


# --- events get ----------------------------------------------------------------------------


def test_events_get_prints_the_value_as_json(
    coordinator: Coordinator, client: durable.Client
) -> None:
    workflow_id = start(client)
    set_event(client, workflow_id, 1, "result", {"url": "https://pay.example/1", "n": [1, 2]})

    out = ok(coordinator, "events", "get", workflow_id, "result")
    assert json.loads(out) == {"url": "https://pay.example/1", "n": [1, 2]}
    assert out.count("\n") == 1

    detailed = json.loads(ok(coordinator, "events", "get", workflow_id, "result", "--json"))
    assert detailed["value"] == {"url": "https://pay.example/1", "n": [1, 2]}
    assert (detailed["workflow_id"], detailed["key"], detailed["version"]) == (
        workflow_id,
        "result",
        1,
    )
    assert datetime.fromisoformat(detailed["set_at"]).tzinfo is not None


def test_events_get_times_out_with_exit_1(coordinator: Coordinator, client: durable.Client) -> None:
    workflow_id = start(client)
    line = fails(coordinator, "events", "get", workflow_id, "absent", "--timeout", "0.2", code=1)
    assert "timed out" in line


def test_events_get_of_a_key_a_finished_workflow_never_set_exits_1(
    coordinator: Coordinator, client: durable.Client
) -> None:
    workflow_id = start(client)
    finish(client, workflow_id)
    line = fails(coordinator, "events", "get", workflow_id, "absent", code=1)
    assert line == f"durable: workflow {workflow_id!r} finished (SUCCESS) without setting 'absent'"


# --- events watch --------------------------------------------------------------------------


class Watcher:
    """`durable events watch` running in the background, its stdout read line by line."""

    def __init__(self, coordinator: Coordinator, *args: str) -> None:
        self.process = subprocess.Popen(
            command(coordinator, "events", "watch", *args),
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=environment(),
        )
        self._lines: queue.Queue[str | None] = queue.Queue()
        assert self.process.stdout is not None
        self._reader = threading.Thread(target=self._read, args=(self.process.stdout,))
        self._reader.start()

    def _read(self, stream: IO[str]) -> None:
        for line in stream:
            self._lines.put(line.rstrip("\n"))
        self._lines.put(None)

    def next_line(self) -> str | None:
        """The next line it prints (None at its end); fails if none comes in time."""
        try:
            return self._lines.get(timeout=PROMPT)
        except queue.Empty:
            raise AssertionError(f"no output within {PROMPT}s") from None

    def finish(self) -> tuple[int, str]:
        """Its exit status and stderr, once it ends by itself."""
        assert self.next_line() is None, "more output than expected"
        code = self.process.wait(timeout=RUN_TIMEOUT)
        assert self.process.stderr is not None
        return code, self.process.stderr.read()

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=RUN_TIMEOUT)
        self._reader.join(timeout=RUN_TIMEOUT)
        for stream in (self.process.stdout, self.process.stderr):
            if stream is not None:
                stream.close()


@pytest.fixture
def watchers() -> Iterator[list[Watcher]]:
    started: list[Watcher] = []
    yield started
    for watcher in started:
        watcher.close()


def test_watch_prints_each_value_live_with_progress_bars(
    coordinator: Coordinator, client: durable.Client, watchers: list[Watcher]
) -> None:
    workflow_id = start(client)
    set_event(client, workflow_id, 1, "progress", 0)
    watcher = Watcher(coordinator, workflow_id, "progress", "--timeout", "60")
    watchers.append(watcher)

    # Each value is set only once the previous one is printed, so every one is seen live.
    assert watcher.next_line() == BAR_0
    set_event(client, workflow_id, 2, "progress", 50)
    assert watcher.next_line() == BAR_50
    set_event(client, workflow_id, 3, "progress", "almost")
    assert watcher.next_line() == 'progress  "almost"'
    set_event(client, workflow_id, 4, "progress", 100)
    assert watcher.next_line() == BAR_100
    finish(client, workflow_id)

    code, stderr = watcher.finish()
    assert code == 0
    assert f"workflow {workflow_id!r} finished: SUCCESS" in stderr


def test_watch_json_prints_one_value_per_line(
    coordinator: Coordinator, client: durable.Client, watchers: list[Watcher]
) -> None:
    workflow_id = start(client)
    set_event(client, workflow_id, 1, "state", {"phase": "load"})
    watcher = Watcher(coordinator, workflow_id, "state", "--json")
    watchers.append(watcher)

    assert watcher.next_line() == '{"phase": "load"}'
    set_event(client, workflow_id, 2, "state", 25)
    assert watcher.next_line() == "25"
    finish(client, workflow_id)
    assert watcher.finish()[0] == 0


def test_watch_times_out_with_exit_1(
    coordinator: Coordinator, client: durable.Client, watchers: list[Watcher]
) -> None:
    workflow_id = start(client)
    set_event(client, workflow_id, 1, "progress", 10)
    watcher = Watcher(coordinator, workflow_id, "progress", "--timeout", "0.5")
    watchers.append(watcher)

    assert watcher.next_line() == "progress  [##------------------]  10%"
    code, stderr = watcher.finish()
    assert code == 1
    assert "timed out after 0.5s" in stderr


def test_watch_redraws_the_bar_in_place_on_a_terminal(
    coordinator: Coordinator, client: durable.Client
) -> None:
    workflow_id = start(client)
    for step_id, value in enumerate([20, 60], start=1):
        set_event(client, workflow_id, step_id, "progress", value)
    finish(client, workflow_id)
    # A finished workflow: the watch prints the latest value, then ends.
    primary, secondary = pty.openpty()
    try:
        process = subprocess.Popen(
            command(coordinator, "events", "watch", workflow_id, "progress"),
            cwd=ROOT,
            stdout=secondary,
            stderr=subprocess.DEVNULL,
            env=environment(),
        )
        os.close(secondary)
        assert process.wait(timeout=RUN_TIMEOUT) == 0
        output = b""
        while True:
            try:
                chunk = os.read(primary, 4096)
            except OSError:  # EIO: the terminal's other side is closed and drained
                break
            if not chunk:
                break
            output += chunk
    finally:
        os.close(primary)
    assert output.decode() == "\rprogress  [############--------]  60%\r\n"


# --- formatting (unit) ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "bar"),
    [
        (0, "[--------------------]   0%"),
        (5, "[#-------------------]   5%"),
        (50, "[##########----------]  50%"),
        (99.9, "[###################-]  99%"),
        (100, "[####################] 100%"),
        (33.3, "[######--------------]  33%"),
        (100.0, "[####################] 100%"),
    ],
)
def test_progress_bar(value: float, bar: str) -> None:
    assert cli.progress_bar(value) == bar


@pytest.mark.parametrize("value", [-1, 100.5, 101, True, False, "50", None, [50], {"p": 50}])
def test_only_numbers_from_0_to_100_are_bars(value: Any) -> None:
    assert cli.progress_bar(value) is None


def test_event_lines() -> None:
    assert cli.event_line("progress", 50) == BAR_50
    assert cli.event_line("status", "done") == 'status  "done"'
    assert cli.event_line("n", 250) == "n  250"
    assert cli.event_line("ok", True) == "ok  true"
    assert cli.progress_bar(50, width=10) == "[#####-----]  50%"


def test_event_printer_on_a_terminal_redraws_bars_and_keeps_other_values() -> None:
    out = io.StringIO()
    printer = cli.EventPrinter("progress", out, as_json=False, tty=True)
    for value in (0, 50, "paused", 100):
        printer.show(value)
    printer.end_line()
    assert out.getvalue() == f'\r{BAR_0}\r{BAR_50}\nprogress  "paused"\n\r{BAR_100}\n'


def test_event_printer_off_a_terminal_prints_a_line_per_value() -> None:
    out = io.StringIO()
    printer = cli.EventPrinter("progress", out, as_json=False)  # StringIO is no terminal
    for value in (0, 50, 100):
        printer.show(value)
    printer.end_line()
    assert out.getvalue() == f"{BAR_0}\n{BAR_50}\n{BAR_100}\n"


def test_since_accepts_durations_and_iso_times() -> None:
    now = datetime(2026, 1, 2, 12, 0, tzinfo=timezone.utc)
    assert cli.parse_since("90s", now) == now - timedelta(seconds=90)
    assert cli.parse_since("30m", now) == now - timedelta(minutes=30)
    assert cli.parse_since("1.5h", now) == now - timedelta(minutes=90)
    assert cli.parse_since("2d", now) == now - timedelta(days=2)
    assert cli.parse_since("1w", now) == now - timedelta(weeks=1)
    assert cli.parse_since("2026-01-01T10:00:00Z") == datetime(2026, 1, 1, 10, tzinfo=timezone.utc)
    assert cli.parse_since("2026-01-01T10:00:00+02:00") == datetime(
        2026, 1, 1, 8, tzinfo=timezone.utc
    )
    local = cli.parse_since("2026-01-01T10:00")
    assert local == datetime(2026, 1, 1, 10).astimezone()


def test_local_time_is_iso_to_the_second() -> None:
    moment = datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=timezone.utc)
    assert cli.local_time(moment) == moment.astimezone().isoformat(timespec="seconds")
    assert cli.local_time(None) == "-"


# --- schedules -----------------------------------------------------------------------------


def schedule(client: durable.Client, cron: str = "0 3 * * *", **options: Any) -> str:
    """A new schedule of a workflow no worker registers; its name."""
    name = new_id("cli-sched")
    options.setdefault("time_zone", "Europe/Paris")
    durable.set_schedule(
        name, cron, options.pop("workflow", "cli.nobody"), client=client, **options
    )
    return name


def test_schedules_list_prints_each_schedule_with_its_next_three_ticks(
    coordinator: Coordinator, client: durable.Client
) -> None:
    workflow = f"cli.sched.{new_id()}"
    first = schedule(client, workflow=workflow)
    second = schedule(client, "30 14 * * 1-5", workflow=workflow, time_zone="UTC")
    durable.pause_schedule(second, client=client)

    header, *rows = ok(coordinator, "schedules", "list", "--workflow", workflow).splitlines()

    assert re.split(r"\s{2,}", header) == [
        "NAME",
        "CRON",
        "TIME ZONE",
        "WORKFLOW",
        "STATE",
        "LAST TICK",
        "NEXT TICKS",
    ]
    assert sorted(row.split()[0] for row in rows) == sorted([first, second])
    by_name = {row.split()[0]: re.split(r"\s{2,}", row) for row in rows}
    info = durable.get_schedule(first, client=client)
    ticks = ", ".join(cli.local_time(tick) for tick in info.next_ticks[:3])
    assert by_name[first] == [first, "0 3 * * *", "Europe/Paris", workflow, "active", "-", ticks]
    assert by_name[second][1:6] == ["30 14 * * 1-5", "UTC", workflow, "paused", "-"]
    # The header's columns line up with the cells.
    assert rows[0].index(workflow) == header.index("WORKFLOW")

    listed = json.loads(ok(coordinator, "schedules", "list", "--workflow", workflow, "--json"))
    assert {item["name"]: item["state"] for item in listed} == {first: "active", second: "paused"}
    shown = next(item for item in listed if item["name"] == first)
    assert shown["cron"] == "0 3 * * *"
    assert shown["time_zone"] == "Europe/Paris"
    assert shown["input"] == {"args": [], "kwargs": {}}
    assert [datetime.fromisoformat(tick) for tick in shown["next_ticks"]] == info.next_ticks
    assert shown["last_tick"] is None

    nothing = run(coordinator, "schedules", "list", "--workflow", f"{workflow}.none")
    assert (nothing.returncode, nothing.stdout) == (0, "")
    assert "no schedules" in nothing.stderr


def test_schedules_show_prints_every_field_five_ticks_and_the_warning(
    coordinator: Coordinator, client: durable.Client
) -> None:
    end = datetime.now(timezone.utc) + timedelta(days=30)
    name = schedule(client, queue="cli-reports", end_time=end, catch_up="latest")

    lines = ok(coordinator, "schedules", "show", name).splitlines()

    fields = dict(line.split(None, 1) for line in lines[: lines.index("")] if "  " in line)
    assert fields["schedule"] == name
    assert fields["cron"] == "0 3 * * *"
    assert lines[2].split("  ")[0] == "time zone"
    assert lines[2].endswith("Europe/Paris")
    assert fields["workflow"] == "cli.nobody"
    assert fields["queue"] == "cli-reports"
    assert fields["state"] == "active"
    assert fields["catch-up"] == "latest"
    assert fields["ends"] == cli.local_time(end)
    info = durable.get_schedule(name, client=client)
    ticks = lines.index("next ticks (5)")
    assert [line.strip() for line in lines[ticks + 1 : ticks + 6]] == [
        cli.local_time(tick) for tick in info.next_ticks
    ]
    assert len(info.next_ticks) == 5
    warnings = lines[lines.index("warnings (1)") + 1 :]
    assert len(warnings) == 1
    assert warnings[0].startswith("  WARNING: no live worker")
    assert "'cli.nobody'" in warnings[0]

    shown = json.loads(ok(coordinator, "schedules", "show", name, "--json"))
    assert shown["name"] == name
    assert shown["queue_name"] == "cli-reports"
    assert shown["catch_up"] == "latest"
    assert abs(datetime.fromisoformat(shown["end_time"]) - end) < timedelta(seconds=1)
    assert len(shown["next_ticks"]) == 5
    assert len(shown["warnings"]) == 1 and "no live worker" in shown["warnings"][0]


def test_schedules_pause_resume_delete_print_the_state_and_exit_codes(
    coordinator: Coordinator, client: durable.Client
) -> None:
    name = schedule(client)

    assert ok(coordinator, "schedules", "pause", name) == f"{name}  paused\n"
    assert durable.get_schedule(name, client=client).paused
    paused = json.loads(ok(coordinator, "schedules", "pause", name, "--json"))
    assert (paused["state"], paused["next_ticks"]) == ("paused", [])
    assert ok(coordinator, "schedules", "resume", name) == f"{name}  active\n"
    assert not durable.get_schedule(name, client=client).paused

    deleted = run(coordinator, "schedules", "delete", name)
    assert (deleted.returncode, deleted.stdout) == (0, "")
    assert f"deleted schedule {name!r}" in deleted.stderr
    assert name not in {info.name for info in durable.list_schedules(client=client)}

    line = fails(coordinator, "schedules", "delete", name, code=1)
    assert line == f"durable: schedule {name!r} does not exist; nothing deleted"
    again = run(coordinator, "schedules", "delete", name, "--json")
    assert again.returncode == 1
    assert json.loads(again.stdout) == {"name": name, "deleted": False}


@pytest.mark.parametrize("command", ["show", "pause", "resume", "trigger"])
def test_an_unknown_schedule_is_one_line_and_exit_2(coordinator: Coordinator, command: str) -> None:
    missing = new_id("missing")
    line = fails(coordinator, "schedules", command, missing)
    assert line == f"durable: schedule {missing!r} does not exist"


def test_schedules_trigger_prints_the_started_workflow_id(
    coordinator: Coordinator, client: durable.Client
) -> None:
    name = schedule(client)
    durable.pause_schedule(name, client=client)  # triggering works while paused too

    out = ok(coordinator, "schedules", "trigger", name)

    workflow_id = out.strip()
    assert out == f"{workflow_id}\n"
    assert workflow_id.startswith(f"{name}@manual-")
    info = durable.get_workflow(workflow_id, client=client)
    assert (info.name, info.schedule_name) == ("cli.nobody", name)
    assert info.scheduled_time is not None

    fields = dict(
        re.split(r"\s{2,}", line, maxsplit=1)
        for line in ok(coordinator, "workflows", "show", workflow_id).splitlines()
        if "  " in line and not line.startswith(" ")
    )
    assert fields["schedule"] == name
    assert fields["scheduled for"] == cli.local_time(info.scheduled_time)

    started = json.loads(ok(coordinator, "schedules", "trigger", name, "--json"))
    assert started["schedule_name"] == name
    assert started["workflow_id"] not in (workflow_id, "")
    assert datetime.fromisoformat(started["scheduled_time"]).tzinfo is not None


def ticked(client: durable.Client, name: str) -> durable.ScheduleInfo | None:
    info = durable.get_schedule(name, client=client)
    return info if info.last_tick is not None else None


def test_a_ticking_schedule_shows_its_last_tick(
    coordinator: Coordinator, client: durable.Client
) -> None:
    name = schedule(client, "* * * * * *", time_zone="UTC")  # every second
    try:
        info = eventually(lambda: ticked(client, name), timeout=20)
    finally:
        durable.pause_schedule(name, client=client)
    assert info.last_tick is not None and info.last_workflow_id is not None
    shown = json.loads(ok(coordinator, "schedules", "show", name, "--json"))
    assert shown["last_workflow_id"] is not None
    assert datetime.fromisoformat(shown["last_tick"]) >= info.last_tick
    row = ok(coordinator, "schedules", "list", "--workflow", "cli.nobody").splitlines()
    assert any(line.startswith(f"{name} ") and "paused" in line for line in row)
    tick = json.loads(ok(coordinator, "workflows", "show", info.last_workflow_id, "--json"))
    assert tick["workflow"]["schedule_name"] == name
    assert datetime.fromisoformat(tick["workflow"]["scheduled_time"]) == info.last_tick


def test_schedules_help_lists_its_commands() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "durable", "schedules", "--help"],
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT,
        cwd=ROOT,
    )
    assert result.returncode == 0
    for name in ("list", "show", "pause", "resume", "delete", "trigger"):
        assert re.search(rf"^\s+{name}\s", result.stdout, re.MULTILINE), result.stdout
    top = subprocess.run(
        [sys.executable, "-m", "durable", "--help"],
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT,
        cwd=ROOT,
    )
    assert "schedules" in top.stdout


def test_schedule_state() -> None:
    now = datetime(2026, 1, 2, 12, 0, tzinfo=timezone.utc)
    tick = now + timedelta(hours=1)
    info = durable.ScheduleInfo(
        name="s",
        cron="0 * * * *",
        time_zone="UTC",
        workflow_name="w",
        input=None,
        queue_name=None,
        start_time=None,
        end_time=None,
        catch_up="skip",
        paused=False,
        created_at=now,
        updated_at=now,
        last_tick=None,
        last_workflow_id=None,
        next_ticks=[tick],
    )
    assert cli.schedule_state(info, now) == "active"
    assert cli.schedule_state(replace(info, paused=True, next_ticks=[]), now) == "paused"
    assert cli.schedule_state(replace(info, end_time=now, next_ticks=[]), now) == "ended"
    assert cli.schedule_state(replace(info, next_ticks=[]), now) == "ended"


# --- versions ------------------------------------------------------------------------------


def test_workflows_list_filters_by_version_and_shows_it(
    coordinator: Coordinator, client: durable.Client
) -> None:
    name = f"cli.versions.{new_id()}"
    old = new_id("cli-v1")
    new = new_id("cli-v2")
    bare = start(client, name)
    client.start_workflow(old, name, payload({"args": [], "kwargs": {}}), app_version="v1")
    client.start_workflow(new, name, payload({"args": [], "kwargs": {}}), app_version="v2")

    header, *rows = ok(coordinator, "workflows", "list", "--name", name).splitlines()
    assert header.split() == ["ID", "NAME", "STATUS", "CREATED", "ATTEMPTS", "VERSION"]
    assert [(row.split()[0], row.split()[-1]) for row in rows] == [
        (new, "v2"),
        (old, "v1"),
        (bare, "-"),
    ]

    header, *rows = ok(
        coordinator, "workflows", "list", "--name", name, "--version", "v1"
    ).splitlines()
    assert header.split()[-1] == "VERSION"
    assert [row.split()[0] for row in rows] == [old]
    listed = json.loads(ok(coordinator, "workflows", "list", "--version", "v2", "--json"))
    assert new in {item["workflow_id"] for item in listed}
    assert {item["app_version"] for item in listed} == {"v2"}

    # No column when nothing listed has a version.
    plain_name = f"cli.versions.{new_id()}"
    start(client, plain_name)
    assert ok(coordinator, "workflows", "list", "--name", plain_name).splitlines()[0].split() == [
        "ID",
        "NAME",
        "STATUS",
        "CREATED",
        "ATTEMPTS",
    ]

    lines = ok(coordinator, "workflows", "show", old).splitlines()
    fields = dict(line.split(None, 1) for line in lines[: lines.index("")])
    assert fields["version"] == "v1"


def test_fork_with_version_moves_the_fork_to_that_version(
    coordinator: Coordinator, client: durable.Client
) -> None:
    source = new_id("cli-fork-v")
    client.start_workflow(source, "cli.flow", payload({"args": [], "kwargs": {}}), app_version="v1")
    fork_id = new_id("cli-fork-v2")

    out = ok(
        coordinator,
        "workflows",
        "fork",
        source,
        "--from-step",
        "1",
        "--new-id",
        fork_id,
        "--version",
        "v2",
    )

    assert out == f"{fork_id}  ENQUEUED\n"
    assert durable.get_workflow(fork_id, client=client).app_version == "v2"
    kept = json.loads(ok(coordinator, "workflows", "fork", source, "--from-step", "1", "--json"))
    assert kept["app_version"] == "v1"  # without --version: the original's
    assert "app_version" in fails(
        coordinator, "workflows", "fork", source, "--from-step", "1", "--version", "bad version!"
    )


# --- queues show ---------------------------------------------------------------------------


def test_queues_show_prints_limits_totals_and_each_partition(
    coordinator: Coordinator, client: durable.Client
) -> None:
    queue = new_id("cli-queue")
    client.configure_queue(
        pb.QueueConfig(name=queue, concurrency=2, worker_concurrency=5, limits_per_partition=True)
    )
    for partition, count in (("tenant-a", 3), ("tenant-b", 1), ("", 2)):
        for _ in range(count):
            client.start_workflow(
                new_id("cli-q"),
                "cli.queued",
                payload({"args": [], "kwargs": {}}),
                queue_name=queue,
                partition_key=partition,
            )
    client.start_workflow(
        new_id("cli-q"),
        "cli.queued",
        payload({"args": [], "kwargs": {}}),
        queue_name=queue,
        partition_key="tenant-b",
        delay=3600.0,
    )

    lines = ok(coordinator, "queues", "show", queue).splitlines()
    fields = dict(line.split(None, 1) for line in lines[: lines.index("")] if "  " in line)
    assert lines[0].split() == ["queue", queue]
    assert lines[1].split() == ["concurrency", "2", "per", "partition"]
    assert lines[2].split() == ["worker", "concurrency", "5"]
    assert lines[3].split() == ["rate", "limit", "none"]
    assert "7 enqueued (1 delayed), 0 running" in fields["total"]
    header, *rows = lines[lines.index("") + 1 :]
    assert header.split() == ["PARTITION", "ENQUEUED", "DELAYED", "RUNNING"]
    assert [row.split() for row in rows] == [
        ["tenant-a", "3", "0", "0"],
        ["(none)", "2", "0", "0"],
        ["tenant-b", "2", "1", "0"],
    ]

    shown = json.loads(ok(coordinator, "queues", "show", queue, "--json"))
    assert shown == {
        "name": queue,
        "concurrency": 2,
        "worker_concurrency": 5,
        "rate_limit": None,
        "limits_per_partition": True,
        "paused": False,
        "total": {"enqueued": 7, "delayed": 1, "running": 0},
        "partitions": [
            {"partition_key": "tenant-a", "enqueued": 3, "delayed": 0, "running": 0},
            {"partition_key": "", "enqueued": 2, "delayed": 0, "running": 0},
            {"partition_key": "tenant-b", "enqueued": 2, "delayed": 1, "running": 0},
        ],
        "partitions_truncated": False,
    }

    result = run(coordinator, "queues", "show", queue, "--max-partitions", "1")
    assert result.returncode == 0
    assert result.stdout.splitlines()[-1].split() == ["tenant-a", "3", "0", "0"]
    assert result.stderr == "durable: only the 1 busiest partitions are shown (--max-partitions)\n"
    truncated = json.loads(
        ok(coordinator, "queues", "show", queue, "--max-partitions", "1", "--json")
    )
    assert truncated["partitions_truncated"] and len(truncated["partitions"]) == 1


def test_queues_show_of_an_unknown_queue_is_zeros(coordinator: Coordinator) -> None:
    queue = new_id("cli-never")
    lines = ok(coordinator, "queues", "show", queue).splitlines()
    assert lines[-1].split() == ["total", "0", "enqueued", "(0", "delayed),", "0", "running"]
    assert json.loads(ok(coordinator, "queues", "show", queue, "--json"))["rate_limit"] is None


def test_queues_show_with_a_rate_limit(coordinator: Coordinator, client: durable.Client) -> None:
    queue = new_id("cli-rate")
    config = pb.QueueConfig(name=queue, rate_limit=10)
    config.rate_period.FromSeconds(60)
    client.configure_queue(config)
    lines = ok(coordinator, "queues", "show", queue).splitlines()
    assert lines[1].split() == ["concurrency", "none"]
    assert lines[3].split() == ["rate", "limit", "10", "per", "60s"]
    shown = json.loads(ok(coordinator, "queues", "show", queue, "--json"))
    assert shown["rate_limit"] == {"limit": 10, "period_seconds": 60.0}


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["queues", "show", "q", "--max-partitions", "0"], "must be 1 or more"),
        (["queues", "show", "q", "--max-partitions", "1001"], "must be 1000 or less"),
        (["queues", "show", "bad\x01name"], "name"),
        (["queues", "show"], "NAME"),
    ],
)
def test_queues_show_bad_input_is_one_line_and_exit_2(
    coordinator: Coordinator, args: list[str], message: str
) -> None:
    assert message in fails(coordinator, *args)


# --- workflows start (by name) -------------------------------------------------------------


@durable.workflow(name="cli.greet")
def greet(name: str, *, punctuation: str = "!") -> str:
    """Run by this module's worker; the CLI processes that start it never import it."""
    if not name:
        raise ValueError("no name")
    return f"hello {name}{punctuation}"


@pytest.fixture(scope="module")
def greeter(client: durable.Client) -> Iterator[None]:
    queue = durable.Queue("cli-named")
    with durable.Worker([greet], lease_seconds=2, queues=[queue], client=client):
        yield


def test_workflows_start_by_name_waits_enqueued_and_show_says_for_what(
    coordinator: Coordinator, client: durable.Client
) -> None:
    workflow_id = new_id("cli-start")
    out = ok(
        coordinator, "workflows", "start", "cli.nobody", "--input", '{"a": 1}', "--id", workflow_id
    )
    assert out == f"{workflow_id}  ENQUEUED\n"
    info = durable.get_workflow(workflow_id, client=client)
    assert (info.name, info.input) == ("cli.nobody", {"args": [{"a": 1}], "kwargs": {}})
    shown = run(coordinator, "workflows", "show", workflow_id)
    assert shown.returncode == 0
    assert shown.stdout.splitlines()[2].split() == ["status", "ENQUEUED"]
    assert "durable: ENQUEUED: waiting for a worker that registers 'cli.nobody'" in shown.stderr
    # The same ID again is the same workflow.
    again = ok(coordinator, "workflows", "start", "cli.nobody", "--id", workflow_id, "--json")
    assert json.loads(again)["input"] == {"args": [{"a": 1}], "kwargs": {}}

    queued = json.loads(
        ok(coordinator, "workflows", "start", "cli.nobody", "--queue", "cli-empty", "--json")
    )
    assert (queued["status"], queued["queue_name"]) == ("ENQUEUED", "cli-empty")
    shown = run(coordinator, "workflows", "show", queued["workflow_id"])
    assert "registers 'cli.nobody' and serves queue 'cli-empty'" in shown.stderr


def test_workflows_start_wait_prints_the_output_a_worker_recorded(
    coordinator: Coordinator, greeter: None
) -> None:
    out = ok(
        coordinator,
        *("workflows", "start", "cli.greet", "--args", '["ada"]'),
        *("--kwargs", '{"punctuation": "?"}', "--wait", "30"),
    )
    assert out == '"hello ada?"\n'
    finished = json.loads(
        ok(
            coordinator,
            *("workflows", "start", "cli.greet", "--input", '"grace"'),
            *("--queue", "cli-named", "--wait", "--json"),
        )
    )
    assert (finished["status"], finished["output"]) == ("SUCCESS", "hello grace!")
    assert finished["queue_name"] == "cli-named"


def test_workflows_start_wait_exits_1_for_a_failure_or_a_timeout(
    coordinator: Coordinator, greeter: None
) -> None:
    failed = fails(
        coordinator, "workflows", "start", "cli.greet", "--input", '""', "--wait", code=1
    )
    assert failed.endswith("ended ERROR: builtins.ValueError: no name")
    late = fails(coordinator, "workflows", "start", "cli.nobody", "--wait", "0.2", code=1)
    assert late.endswith("did not finish in 0.2s")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--args", '{"a": 1}'], "not a JSON array"),
        (["--kwargs", "[1]"], "not a JSON object"),
        (["--input", "{"], "not JSON"),
        (["--input", "1", "--args", "[1]"], "not allowed with argument"),
        (["--wait", "-1"], "must not be negative"),
        (["--id", "bad id!"], "workflow_id"),
    ],
)
def test_workflows_start_bad_input_is_one_line_and_exit_2(
    coordinator: Coordinator, args: list[str], message: str
) -> None:
    assert message in fails(coordinator, "workflows", "start", "cli.nobody", *args)


def test_workflows_start_needs_a_name(coordinator: Coordinator) -> None:
    assert "NAME" in fails(coordinator, "workflows", "start")


# --- retention and deleting workflows -----------------------------------------------------


def test_retention_get_set_and_clear(coordinator: Coordinator) -> None:
    assert ok(coordinator, "retention", "get") == "none: finished workflows are kept forever\n"
    assert "deleted 30d after their last change (namespace)" in ok(
        coordinator, "retention", "set", "30d"
    )
    assert json.loads(ok(coordinator, "retention", "get", "--json")) == {
        "finished_after_seconds": 30 * 86400,
        "from_config": False,
    }
    assert "90m" in ok(coordinator, "retention", "set", "5400s")
    assert "kept forever" in ok(coordinator, "retention", "set", "--clear")
    assert "at least 60 seconds" in fails(coordinator, "retention", "set", "30s")
    assert "not a duration" in fails(coordinator, "retention", "set", "soon")
    assert "not allowed with argument" in fails(coordinator, "retention", "set", "1h", "--clear")
    assert ok(coordinator, "retention", "get") == "none: finished workflows are kept forever\n"


def test_workflows_delete(coordinator: Coordinator, client: durable.Client) -> None:
    finished, running = start(client), start(client)
    finish(client, finished)
    # Not on a terminal: only with --yes.
    assert "--yes" in fails(coordinator, "workflows", "delete", finished)
    assert "is PENDING: only finished workflows can be deleted" in fails(
        coordinator, "workflows", "delete", running, "--yes"
    )
    assert ok(coordinator, "workflows", "delete", finished, "--yes") == "deleted 1 workflow\n"
    assert "does not exist" in fails(coordinator, "workflows", "delete", finished, "--yes", code=1)
    client.cancel_workflow(running)
    reply = json.loads(
        ok(coordinator, "workflows", "delete", running, "--children", "--yes", "--json")
    )
    assert reply == {"workflow_id": running, "deleted": 1}


# --- bulk actions and queue pause -------------------------------------------------------------


def enqueue_some(client: durable.Client, name: str, queue: str, count: int) -> list[str]:
    ids = [new_id("cli-bulk") for _ in range(count)]
    for workflow_id in ids:
        client.start_workflow(
            workflow_id, name, payload({"args": [], "kwargs": {}}), queue_name=queue
        )
    return ids


def status_of(client: durable.Client, workflow_id: str) -> int:
    return client.get_workflow(workflow_id).status


def run_without_terminal(coordinator: Coordinator, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        command(coordinator, *args),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT,
        env=environment(),
        stdin=subprocess.DEVNULL,
    )


def test_cancel_all_dry_run_counts_and_changes_nothing(
    coordinator: Coordinator, client: durable.Client
) -> None:
    name, queue = new_id("cli-bulk"), new_id("cli-q")
    ids = enqueue_some(client, name, queue, 3)
    out = ok(coordinator, "workflows", "cancel-all", "--name", name, "--dry-run")
    assert out == "3 workflows (ENQUEUED or PENDING) would be cancelled\n"
    reply = json.loads(
        ok(coordinator, "workflows", "cancel-all", "--queue", queue, "--dry-run", "--json")
    )
    assert reply == {"matched": 3, "changed": 0, "dry_run": True}
    assert all(status_of(client, w) == pb.WORKFLOW_STATUS_ENQUEUED for w in ids)


def test_cancel_all_needs_yes_without_a_terminal_and_a_filter_or_all(
    coordinator: Coordinator, client: durable.Client
) -> None:
    name, queue = new_id("cli-bulk"), new_id("cli-q")
    ids = enqueue_some(client, name, queue, 2)
    result = run_without_terminal(coordinator, "workflows", "cancel-all", "--name", name)
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr == (
        "durable: 2 workflows (ENQUEUED or PENDING) match; not cancelling them: confirm with"
        " --yes (stdin is not a terminal)\n"
    )
    assert all(status_of(client, w) == pb.WORKFLOW_STATUS_ENQUEUED for w in ids)
    assert "--all" in fails(coordinator, "workflows", "cancel-all", "--yes")
    assert "--all" in fails(coordinator, "workflows", "resume-all", "--dry-run")
    # --all with a dry run only counts.
    assert "would be cancelled" in ok(coordinator, "workflows", "cancel-all", "--all", "--dry-run")


def test_cancel_all_and_resume_all_with_yes_show_progress(
    coordinator: Coordinator, client: durable.Client
) -> None:
    name, queue = new_id("cli-bulk"), new_id("cli-q")
    ids = enqueue_some(client, name, queue, 3)
    result = run(coordinator, "workflows", "cancel-all", "--name", name, "--yes")
    assert result.returncode == 0, result.stderr
    assert result.stdout == "cancelled 3 workflows\n"
    assert result.stderr.splitlines() == [
        "durable: 3 workflows (ENQUEUED or PENDING) match",
        "durable: cancelled 3 of 3 matched so far",
    ]
    assert all(status_of(client, w) == pb.WORKFLOW_STATUS_CANCELLED for w in ids)
    assert ok(coordinator, "workflows", "cancel-all", "--name", name, "--yes") == (
        "nothing to cancel: no ENQUEUED or PENDING workflow matches\n"
    )
    reply = json.loads(
        ok(
            coordinator,
            "workflows",
            "resume-all",
            "--name",
            name,
            "--status",
            "cancelled",
            "--yes",
            "--json",
        )
    )
    assert reply == {"matched": 3, "changed": 3, "dry_run": False}
    assert all(status_of(client, w) == pb.WORKFLOW_STATUS_ENQUEUED for w in ids)


def test_cancel_all_asks_on_a_terminal(coordinator: Coordinator, client: durable.Client) -> None:
    name, queue = new_id("cli-bulk"), new_id("cli-q")
    ids = enqueue_some(client, name, queue, 2)

    def answer(text: bytes) -> subprocess.CompletedProcess[str]:
        primary, secondary = pty.openpty()
        try:
            os.write(primary, text)
            return subprocess.run(
                command(coordinator, "workflows", "cancel-all", "--name", name),
                cwd=ROOT,
                capture_output=True,
                text=True,
                timeout=RUN_TIMEOUT,
                env=environment(),
                stdin=secondary,
            )
        finally:
            os.close(secondary)
            os.close(primary)

    declined = answer(b"n\n")
    assert declined.returncode == 2
    assert declined.stderr.startswith(
        "2 workflows (ENQUEUED or PENDING) match. Cancel them? [y/N] "
    )
    assert declined.stderr.endswith("durable: nothing cancelled\n")
    assert all(status_of(client, w) == pb.WORKFLOW_STATUS_ENQUEUED for w in ids)
    accepted = answer(b"y\n")
    assert accepted.returncode == 0, accepted.stderr
    assert accepted.stdout == "cancelled 2 workflows\n"
    assert all(status_of(client, w) == pb.WORKFLOW_STATUS_CANCELLED for w in ids)


def test_queues_pause_resume_and_show(coordinator: Coordinator) -> None:
    queue = new_id("cli-paused")
    assert ok(coordinator, "queues", "pause", queue) == f"queue {queue} paused\n"
    lines = ok(coordinator, "queues", "show", queue).splitlines()
    assert lines[4].split() == ["paused", "yes:", "nothing", "new", "is", "handed", "out"]
    assert json.loads(ok(coordinator, "queues", "show", queue, "--json"))["paused"] is True
    assert json.loads(ok(coordinator, "queues", "resume", queue, "--json")) == {
        "name": queue,
        "paused": False,
    }
    assert ok(coordinator, "queues", "show", queue).splitlines()[4].split() == ["paused", "no"]
    assert "NAME" in fails(coordinator, "queues", "pause")
