"""Bad input over real gRPC: every RPC rejects each malformed field with INVALID_ARGUMENT and
an ErrorInfo naming the field; oversized messages get RESOURCE_EXHAUSTED; and afterwards the
coordinator is still healthy."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import grpc
import pytest
from google.protobuf.duration_pb2 import Duration
from google.protobuf.message import Message
from google.protobuf.timestamp_pb2 import Timestamp
from grpc_health.v1 import health_pb2, health_pb2_grpc

from durable.v1 import coordinator_pb2 as pb
from durable.v1 import operations_pb2 as opb
from durable.v1 import operations_pb2_grpc as opb_grpc
from durable.v1 import schedules_pb2 as spb
from durable.v1 import schedules_pb2_grpc as spb_grpc
from tests.support import RPC_TIMEOUT, Coordinator, Stub, error_info, running_coordinator

# The small coordinator's payload limit; its gRPC receive limit is this plus 64 KiB.
PAYLOAD_LIMIT = 1000
# The small coordinator's longest allowed wait.
MAX_WAIT_SECONDS = 120

GOOD_ID = "bad-input-workflow"  # need not exist: validation comes before any lookup
GOOD = pb.Payload(encoding="json", data=b'{"ok": true}')


@pytest.fixture(scope="module")
def small(database_url: str) -> Iterator[Coordinator]:
    """A coordinator with a small payload limit and a short maximum wait."""
    with running_coordinator(
        database_url,
        "--max-payload-bytes",
        str(PAYLOAD_LIMIT),
        "--max-wait-seconds",
        str(MAX_WAIT_SECONDS),
    ) as process:
        yield process


def call(stub: Stub, request: Message) -> object:
    """Send `request` to the RPC it belongs to; a GetEvent stream is read to its end."""
    if isinstance(request, pb.StartWorkflowRequest):
        return stub.StartWorkflow(request, timeout=RPC_TIMEOUT)
    if isinstance(request, pb.RunStepRequest):
        return stub.RunStep(request, timeout=RPC_TIMEOUT)
    if isinstance(request, pb.SetEventRequest):
        return stub.SetEvent(request, timeout=RPC_TIMEOUT)
    if isinstance(request, pb.GetEventRequest):
        return list(stub.GetEvent(request, timeout=RPC_TIMEOUT))
    if isinstance(request, pb.FinishWorkflowRequest):
        return stub.FinishWorkflow(request, timeout=RPC_TIMEOUT)
    if isinstance(request, pb.GetWorkflowRequest):
        return stub.GetWorkflow(request, timeout=RPC_TIMEOUT)
    if isinstance(request, pb.AwaitWorkflowRequest):
        return stub.AwaitWorkflow(request, timeout=RPC_TIMEOUT)
    if isinstance(request, pb.ListStepsRequest):
        return stub.ListSteps(request, timeout=RPC_TIMEOUT)
    if isinstance(request, pb.SendRequest):
        return stub.Send(request, timeout=RPC_TIMEOUT)
    if isinstance(request, pb.RecvRequest):
        return stub.Recv(request, timeout=RPC_TIMEOUT)
    if isinstance(request, pb.SleepRequest):
        return stub.Sleep(request, timeout=RPC_TIMEOUT)
    if isinstance(request, pb.ConfigureQueueRequest):
        return stub.ConfigureQueue(request, timeout=RPC_TIMEOUT)
    if isinstance(request, pb.HeartbeatRequest):
        return stub.Heartbeat(request, timeout=RPC_TIMEOUT)
    if isinstance(request, pb.ListWorkflowsRequest):
        return stub.ListWorkflows(request, timeout=RPC_TIMEOUT)
    if isinstance(request, pb.SetAttributesRequest):
        return stub.SetAttributes(request, timeout=RPC_TIMEOUT)
    raise TypeError(f"not a request: {type(request)}")


# --- request builders: a valid request of each kind, with one field changed -----------------


def start_req(**fields: Any) -> pb.StartWorkflowRequest:
    return pb.StartWorkflowRequest(**{"workflow_id": GOOD_ID, "name": "flow", **fields})


def step_req(**fields: Any) -> pb.RunStepRequest:
    return pb.RunStepRequest(
        **{"workflow_id": GOOD_ID, "step_id": 1, "name": "step", "output": GOOD, **fields}
    )


def step_req_without_outcome() -> pb.RunStepRequest:
    return pb.RunStepRequest(workflow_id=GOOD_ID, step_id=1, name="step")


def set_req(**fields: Any) -> pb.SetEventRequest:
    return pb.SetEventRequest(
        **{"workflow_id": GOOD_ID, "step_id": 1, "key": "key", "value": GOOD, **fields}
    )


def get_req(**fields: Any) -> pb.GetEventRequest:
    return pb.GetEventRequest(
        **{"workflow_id": GOOD_ID, "key": "key", "timeout": Duration(), **fields}
    )


def finish_req(**fields: Any) -> pb.FinishWorkflowRequest:
    if "error" in fields:
        return pb.FinishWorkflowRequest(workflow_id=GOOD_ID, **fields)
    return pb.FinishWorkflowRequest(**{"workflow_id": GOOD_ID, "output": GOOD, **fields})


def await_req(**fields: Any) -> pb.AwaitWorkflowRequest:
    return pb.AwaitWorkflowRequest(**{"workflow_id": GOOD_ID, "timeout": Duration(), **fields})


def list_req(**fields: Any) -> pb.ListStepsRequest:
    return pb.ListStepsRequest(**{"workflow_id": GOOD_ID, **fields})


def send_req(**fields: Any) -> pb.SendRequest:
    return pb.SendRequest(**{"destination_workflow_id": GOOD_ID, "message": GOOD, **fields})


def recv_req(**fields: Any) -> pb.RecvRequest:
    return pb.RecvRequest(**{"workflow_id": GOOD_ID, "step_id": 1, "timeout": Duration(), **fields})


def sleep_req(**fields: Any) -> pb.SleepRequest:
    return pb.SleepRequest(
        **{"workflow_id": GOOD_ID, "step_id": 1, "duration": Duration(seconds=1), **fields}
    )


def caller(workflow_id: str = GOOD_ID, step_id: int = 1) -> pb.StepRef:
    return pb.StepRef(workflow_id=workflow_id, step_id=step_id)


def json_payload(data: bytes) -> pb.Payload:
    return pb.Payload(encoding="json", data=data)


def failure(**fields: str) -> pb.Failure:
    return pb.Failure(**{"type": "builtins.ValueError", **fields})


# Workflow IDs every RPC must reject, with the field they are reported under.
BAD_WORKFLOW_IDS = {
    "space": "order 1",
    "257-chars": "w" * 257,
    "newline": "order\n1",
    "trailing-newline": "order-1\n",
    "tab": "order\t1",
    "nul": "order\x001",
    "del": "order\x7f1",
    "unicode-letter": "bestellung-ä",
    "unicode-fullwidth-digit": "order-\uff11",
    "emoji": "order-\U0001f600",
    "comma": "a,b",
    "star": "a*b",
    "quote": "a'b",
    "backslash": "a\\b",
}
# IDs that only RPCs with a required ID reject (StartWorkflow generates one when empty).
EMPTY_ID = {"empty": ""}

BAD_NAMES = {
    "empty": "",
    "257-chars": "n" * 257,
    "257-unicode-chars": "\u00e9" * 257,
    "nul": "a\x00b",
    "newline": "a\nb",
    "carriage-return": "a\rb",
    "escape": "a\x1bb",
    "del": "a\x7fb",
}

BAD_JSON = {
    "not-json": b"{not json",
    "empty": b"",
    "python-literal": b"None",
    "single-quotes": b"{'a': 1}",
    "trailing-comma": b"[1, 2,]",
    "two-values": b"1 2",
    "invalid-utf8": b'"\xff\xfe"',
    "nan": b"NaN",
    "nan-in-list": b"[1, NaN]",
    "infinity": b"Infinity",
    "minus-infinity": b"-Infinity",
}

BAD_ENCODINGS = {
    "uppercase": "JSON",
    "leading-dash": "-json",
    "leading-dot": ".bin",
    "space": "text plain",
    "65-chars": "a" * 65,
    "unicode": "j\u00e9son",
    "semicolon": "text/plain;charset=utf-8",
}

BAD_DURATIONS = {
    "negative-seconds": Duration(seconds=-1),
    "negative-nanos": Duration(nanos=-1),
    "mixed-sign-positive-seconds": Duration(seconds=1, nanos=-1),
    "mixed-sign-negative-seconds": Duration(seconds=-1, nanos=1),
    "nanos-out-of-range": Duration(seconds=0, nanos=1_000_000_000),
    "seconds-out-of-range": Duration(seconds=315_576_000_001),
    "over-the-maximum": Duration(seconds=MAX_WAIT_SECONDS + 1),
    "over-the-maximum-by-a-nanosecond": Duration(seconds=MAX_WAIT_SECONDS, nanos=1),
}


@dataclass(frozen=True)
class Case:
    id: str
    request: Message
    field: str


def cases() -> list[Case]:
    found: list[Case] = []

    def add(case_id: str, request: Message, field: str) -> None:
        found.append(
            Case(f"{type(request).__name__.removesuffix('Request')}-{case_id}", request, field)
        )

    id_builders: list[tuple[Callable[..., Message], bool]] = [
        (start_req, False),
        (step_req, True),
        (set_req, True),
        (get_req, True),
        (finish_req, True),
        (lambda **f: pb.GetWorkflowRequest(**f), True),
        (await_req, True),
        (list_req, True),
    ]
    for build, id_required in id_builders:
        bad_ids = {**BAD_WORKFLOW_IDS, **(EMPTY_ID if id_required else {})}
        for label, value in bad_ids.items():
            add(f"workflow_id-{label}", build(workflow_id=value), "workflow_id")

    for label, value in BAD_NAMES.items():
        add(f"name-{label}", start_req(name=value), "name")
        add(f"name-{label}", step_req(name=value), "name")
        add(f"key-{label}", set_req(key=value), "key")
        add(f"key-{label}", get_req(key=value), "key")
        add(f"error.type-{label}", step_req(error=failure(type=value)), "error.type")
        add(f"error.type-{label}", finish_req(error=failure(type=value)), "error.type")

    for label, data in BAD_JSON.items():
        add(f"input-{label}", start_req(input=json_payload(data)), "input.data")
        add(f"output-{label}", step_req(output=json_payload(data)), "output.data")
        add(f"value-{label}", set_req(value=json_payload(data)), "value.data")
        add(f"output-{label}", finish_req(output=json_payload(data)), "output.data")
    # An empty encoding means JSON, so its data must be JSON too.
    add("value-default-encoding-not-json", set_req(value=pb.Payload(data=b"nope")), "value.data")

    for label, encoding in BAD_ENCODINGS.items():
        bad = pb.Payload(encoding=encoding, data=b"1")
        add(f"input.encoding-{label}", start_req(input=bad), "input.encoding")
        add(f"output.encoding-{label}", step_req(output=bad), "output.encoding")
        add(f"value.encoding-{label}", set_req(value=bad), "value.encoding")
        add(f"output.encoding-{label}", finish_req(output=bad), "output.encoding")

    too_big = json_payload(json.dumps("x" * (PAYLOAD_LIMIT - 1)).encode())  # limit + 1 bytes
    too_big_opaque = pb.Payload(encoding="bytes", data=b"\0" * (PAYLOAD_LIMIT + 1))
    add("input-over-the-limit", start_req(input=too_big), "input.data")
    add("output-over-the-limit", step_req(output=too_big), "output.data")
    add("value-over-the-limit", set_req(value=too_big), "value.data")
    add("opaque-value-over-the-limit", set_req(value=too_big_opaque), "value.data")
    add("output-over-the-limit", finish_req(output=too_big), "output.data")
    add(
        "error.details-over-the-limit",
        step_req(error=failure(details="d" * (PAYLOAD_LIMIT + 1))),
        "error.details",
    )
    add("error.message-nul", step_req(error=failure(message="a\x00b")), "error.message")
    add("error.details-nul", finish_req(error=failure(details="a\x00b")), "error.details")

    for step_id in (0, -1, -(2**31)):
        add(f"step_id-{step_id}", step_req(step_id=step_id), "step_id")
        add(f"step_id-{step_id}", set_req(step_id=step_id), "step_id")

    add("missing-outcome", step_req_without_outcome(), "outcome")
    add("missing-result", pb.FinishWorkflowRequest(workflow_id=GOOD_ID), "result")
    add("missing-value", pb.SetEventRequest(workflow_id=GOOD_ID, step_id=1, key="k"), "value")

    for label, timeout in BAD_DURATIONS.items():
        add(f"timeout-{label}", get_req(timeout=timeout), "timeout")
        add(f"timeout-{label}", get_req(timeout=timeout, follow=True), "timeout")
        add(f"timeout-{label}", await_req(timeout=timeout), "timeout")

    for after_version in (-1, -(2**63)):
        add(f"after_version-{after_version}", get_req(after_version=after_version), "after_version")
        add(
            f"follow-after_version-{after_version}",
            get_req(after_version=after_version, follow=True),
            "after_version",
        )

    for page_size in (-1, 1001, 2**31 - 1):
        add(f"page_size-{page_size}", list_req(page_size=page_size), "page_size")
    add("after_step_id-negative", list_req(after_step_id=-1), "after_step_id")
    _add_message_and_sleep_cases(add)
    _add_child_and_queue_cases(add)
    _add_delay_and_debounce_cases(add)
    _add_attribute_cases(add)
    return found


def _add_message_and_sleep_cases(add: Callable[[str, Message, str], None]) -> None:
    """Send, Recv, Sleep, and GetEvent from a workflow (`caller`)."""
    for label, value in {**BAD_WORKFLOW_IDS, **EMPTY_ID}.items():
        add(
            f"destination-{label}",
            send_req(destination_workflow_id=value),
            "destination_workflow_id",
        )
        add(f"workflow_id-{label}", recv_req(workflow_id=value), "workflow_id")
        add(f"workflow_id-{label}", sleep_req(workflow_id=value), "workflow_id")
        add(f"caller-{label}", send_req(caller=caller(value)), "caller.workflow_id")
        add(f"caller-{label}", get_req(caller=caller(value)), "caller.workflow_id")
    for label, value in BAD_NAMES.items():
        if value:  # an empty topic is the default topic, an empty key no key
            add(f"topic-{label}", send_req(topic=value), "topic")
            add(f"topic-{label}", recv_req(topic=value), "topic")
            add(f"idempotency_key-{label}", send_req(idempotency_key=value), "idempotency_key")
    for label, data in BAD_JSON.items():
        add(f"message-{label}", send_req(message=json_payload(data)), "message.data")
    too_big = json_payload(json.dumps("x" * (PAYLOAD_LIMIT - 1)).encode())
    add("message-over-the-limit", send_req(message=too_big), "message.data")
    add("message-encoding", send_req(message=pb.Payload(encoding="JSON")), "message.encoding")
    add("missing-message", pb.SendRequest(destination_workflow_id=GOOD_ID), "message")
    for step_id in (0, -1, -(2**31)):
        add(f"step_id-{step_id}", recv_req(step_id=step_id), "step_id")
        add(f"step_id-{step_id}", sleep_req(step_id=step_id), "step_id")
        add(f"caller.step_id-{step_id}", send_req(caller=caller(step_id=step_id)), "caller.step_id")
        add(f"caller.step_id-{step_id}", get_req(caller=caller(step_id=step_id)), "caller.step_id")
    add(
        "caller.executor_id",
        send_req(caller=pb.StepRef(workflow_id=GOOD_ID, step_id=1, executor_id="a b")),
        "caller.executor_id",
    )
    for label, timeout in BAD_DURATIONS.items():
        add(f"timeout-{label}", recv_req(timeout=timeout), "timeout")
        if "maximum" not in label:  # a sleep may be longer than any wait: up to a year
            add(f"duration-{label}", sleep_req(duration=timeout), "duration")
    year = 365 * 24 * 3600
    add("duration-over-a-year", sleep_req(duration=Duration(seconds=year + 1)), "duration")
    add("missing-duration", pb.SleepRequest(workflow_id=GOOD_ID, step_id=1), "duration")
    add("follow-with-caller", get_req(caller=caller(), follow=True), "follow")
    add("after_version-with-caller", get_req(caller=caller(), after_version=1), "after_version")
    add("from_first_value-without-follow", get_req(from_first_value=True), "from_first_value")
    add(
        "from_first_value-with-after_version",
        get_req(from_first_value=True, follow=True, after_version=2),
        "from_first_value",
    )


def _add_child_and_queue_cases(add: Callable[[str, Message, str], None]) -> None:
    """StartWorkflow with `parent` or `queue_name`, ConfigureQueue, Heartbeat.queues and
    the ListWorkflows filters."""
    for label, value in {**BAD_WORKFLOW_IDS, **EMPTY_ID}.items():
        add(f"parent-{label}", start_req(parent=caller(value)), "parent.workflow_id")
    for step_id in (0, -1):
        bad_parent = start_req(parent=caller(step_id=step_id))
        add(f"parent.step_id-{step_id}", bad_parent, "parent.step_id")
    add("child-is-its-parent", start_req(parent=caller(GOOD_ID)), "workflow_id")
    for label, value in BAD_NAMES.items():
        if value:  # an empty queue name is no queue, an empty filter no filter
            add(f"queue_name-{label}", start_req(queue_name=value), "queue_name")
            add(
                f"deduplication_id-{label}",
                start_req(queue_name="q", deduplication_id=value),
                "deduplication_id",
            )
            add(f"queue_name-{label}", pb.ListWorkflowsRequest(queue_name=value), "queue_name")
        add(
            f"queue.name-{label}",
            pb.ConfigureQueueRequest(queue=pb.QueueConfig(name=value)),
            "queue.name",
        )
        heartbeat = pb.HeartbeatRequest(executor_id="exec-1", queues=[value])
        add(f"queues-{label}", heartbeat, "queues")
    for label, value in BAD_WORKFLOW_IDS.items():
        add(
            f"parent_workflow_id-{label}",
            pb.ListWorkflowsRequest(parent_workflow_id=value),
            "parent_workflow_id",
        )
    add("queue_name-with-executor_id", start_req(queue_name="q", executor_id="e"), "queue_name")
    add("priority-without-queue", start_req(priority=1), "priority")
    add("deduplication_id-without-queue", start_req(deduplication_id="d"), "deduplication_id")
    add("missing-queue", pb.ConfigureQueueRequest(), "queue")
    for limit in ("concurrency", "worker_concurrency", "rate_limit"):
        config = pb.QueueConfig(name="q")
        setattr(config, limit, -1)
        add(f"{limit}-negative", pb.ConfigureQueueRequest(queue=config), f"queue.{limit}")
    for label, config in {
        "rate_limit-without-period": pb.QueueConfig(name="q", rate_limit=1),
        "period-without-rate_limit": pb.QueueConfig(name="q", rate_period=Duration(seconds=1)),
        "period-zero": pb.QueueConfig(name="q", rate_limit=1, rate_period=Duration()),
        "period-over-a-day": pb.QueueConfig(
            name="q", rate_limit=1, rate_period=Duration(seconds=86_401)
        ),
        "period-negative": pb.QueueConfig(name="q", rate_limit=1, rate_period=Duration(seconds=-1)),
    }.items():
        add(label, pb.ConfigureQueueRequest(queue=config), "queue.rate_period")
    many = pb.HeartbeatRequest(executor_id="exec-1", queues=[f"q{i}" for i in range(1001)])
    add("queues-over-1000", many, "queues")


def _add_delay_and_debounce_cases(add: Callable[[str, Message, str], None]) -> None:
    """StartWorkflow with `delay`, `start_at`, `debounce_key` and `debounce`."""
    year = 365 * 24 * 3600
    for label, value in {
        "negative": Duration(seconds=-1),
        "negative-nanos": Duration(nanos=-1),
        "over-365-days": Duration(seconds=year + 1),
    }.items():
        add(f"delay-{label}", start_req(delay=value), "delay")
    for label, value in {
        "zero": Duration(),
        "negative": Duration(seconds=-1),
        "over-a-day": Duration(seconds=86_401),
    }.items():
        add(f"debounce-{label}", start_req(debounce_key="k", debounce=value), "debounce")
    far = Timestamp(seconds=int(time.time()) + year + 3600)
    add("start_at-over-365-days", start_req(start_at=far), "start_at")
    add("start_at-out-of-range", start_req(start_at=Timestamp(seconds=-(2**40))), "start_at")
    one = Duration(seconds=1)
    add("start_at-with-delay", start_req(delay=one, start_at=Timestamp(seconds=1)), "start_at")
    add("delay-with-executor_id", start_req(delay=one, executor_id="e"), "delay")
    add("start_at-with-executor_id", start_req(start_at=far, executor_id="e"), "start_at")
    add("debounce-without-key", start_req(debounce=one), "debounce_key")
    add("debounce_key-without-debounce", start_req(debounce_key="k"), "debounce")
    add(
        "debounce_key-with-delay",
        start_req(debounce_key="k", debounce=one, delay=one),
        "debounce_key",
    )
    add(
        "debounce_key-with-executor_id",
        start_req(debounce_key="k", debounce=one, executor_id="e"),
        "debounce_key",
    )
    add(
        "debounce_key-with-deduplication_id",
        start_req(debounce_key="k", debounce=one, queue_name="q", deduplication_id="d"),
        "deduplication_id",
    )
    add(
        "debounce_key-of-a-child",
        start_req(debounce_key="k", debounce=one, parent=caller("a-parent")),
        "debounce_key",
    )
    for label, key in BAD_NAMES.items():
        if key:  # an empty key is no debounce
            add(f"debounce_key-{label}", start_req(debounce_key=key, debounce=one), "debounce_key")


BAD_ATTRIBUTES = {
    "too-many-keys": {f"k{i}": "v" for i in range(33)},
    "key-with-a-space": {"bad key": "v"},
    "key-with-a-slash": {"a/b": "v"},
    "key-not-ascii": {"ключ": "v"},
    "key-too-long": {"k" * 65: "v"},
    "value-too-long": {"k": "v" * 257},
    "value-with-a-newline": {"k": "a\nb"},
    "value-with-nul": {"k": "a\x00b"},
}


def _add_attribute_cases(add: Callable[[str, Message, str], None]) -> None:
    """Search attributes: StartWorkflow, the ListWorkflows filter, SetAttributes."""
    for label, attributes in BAD_ATTRIBUTES.items():
        add(f"attributes-{label}", start_req(attributes=attributes), "attributes")
        add(f"attributes-{label}", pb.ListWorkflowsRequest(attributes=attributes), "attributes")
        add(
            f"attributes-{label}",
            pb.SetAttributesRequest(workflow_id=GOOD_ID, step_id=1, attributes=attributes),
            "attributes",
        )
    add("attributes-empty-value", start_req(attributes={"k": ""}), "attributes")
    add("attributes-empty-value", pb.ListWorkflowsRequest(attributes={"k": ""}), "attributes")
    add("attributes-none", pb.SetAttributesRequest(workflow_id=GOOD_ID, step_id=1), "attributes")
    for label, value in {**BAD_WORKFLOW_IDS, **EMPTY_ID}.items():
        add(
            f"workflow_id-{label}",
            pb.SetAttributesRequest(workflow_id=value, step_id=1, attributes={"k": "v"}),
            "workflow_id",
        )
    for step_id in (0, -1):
        add(
            f"step_id-{step_id}",
            pb.SetAttributesRequest(workflow_id=GOOD_ID, step_id=step_id, attributes={"k": "v"}),
            "step_id",
        )


CASES = cases()


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input_is_rejected_with_invalid_argument_naming_the_field(
    small: Coordinator, case: Case
) -> None:
    with pytest.raises(grpc.RpcError) as caught:
        call(small.stub, case.request)
    err = caught.value
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT, err.details()
    info = error_info(err)
    assert info.reason == "INVALID_ARGUMENT"
    assert info.domain == "durable.v1"
    assert info.metadata["field"] == case.field
    assert (err.details() or "").startswith(f"{case.field}:")


def test_error_message_over_64_kib_is_rejected(stub: Stub) -> None:
    # 64 KiB + 1 would not even reach the small coordinator; the default one takes it.
    request = step_req(error=failure(message="m" * (64 * 1024 + 1)))
    with pytest.raises(grpc.RpcError) as caught:
        call(stub, request)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error_info(caught.value).metadata["field"] == "error.message"


# --- what is accepted at the edges ---------------------------------------------------------


def test_edge_values_are_accepted(small: Coordinator) -> None:
    stub = small.stub
    long_id = "w" * 255 + "1"
    punctuation_id = "a.b_c:d@e/f+g=h-i"
    for workflow_id in (long_id, punctuation_id):
        assert call(stub, start_req(workflow_id=workflow_id, name="\u00e9" * 256))

    exact = json_payload(json.dumps("x" * (PAYLOAD_LIMIT - 2)).encode())
    assert len(exact.data) == PAYLOAD_LIMIT
    requests: list[Message] = [
        step_req(workflow_id=long_id, step_id=2**31 - 1, name="n" * 256, output=exact),
        step_req(workflow_id=long_id, step_id=1, name="\u6b65\u9aa4 with spaces", output=GOOD),
        step_req(
            workflow_id=long_id,
            step_id=2,
            name="fails",
            error=pb.Failure(type="builtins.ValueError"),  # message and details optional
        ),
        step_req(
            workflow_id=long_id,
            step_id=3,
            name="opaque",
            output=pb.Payload(encoding="a" * 64, data=b"\xff\x00"),
        ),
        step_req(
            workflow_id=long_id,
            step_id=4,
            name="whitespace",
            output=json_payload(b' \n\t{"a": [1e300, -0.5, "\\u00e9", null]} \n'),
        ),
        set_req(workflow_id=long_id, step_id=5, key="k" * 256, value=exact),
        set_req(workflow_id=long_id, step_id=6, key="\U0001f600 progress", value=GOOD),
        get_req(workflow_id=long_id, key="k" * 256, timeout=Duration()),
        get_req(workflow_id=long_id, key="k" * 256, timeout=Duration(seconds=MAX_WAIT_SECONDS)),
        await_req(workflow_id=long_id, timeout=Duration()),
        list_req(workflow_id=long_id, page_size=1000),
        pb.GetWorkflowRequest(workflow_id=punctuation_id),
        finish_req(workflow_id=punctuation_id, output=exact),
    ]
    for request in requests:
        call(stub, request)


# --- oversized and malformed messages ------------------------------------------------------


def test_message_over_the_receive_limit_gets_resource_exhausted(
    small: Coordinator, stub: Stub
) -> None:
    # Whatever its payload limit, a coordinator receives messages up to 1 MiB and 64 KiB
    # (a BatchedSession message of many small calls): a larger payload under it is refused
    # by validation, naming the field; over it, by gRPC.
    large = json_payload(json.dumps("x" * 200_000).encode())
    with pytest.raises(grpc.RpcError) as caught:
        small.stub.StartWorkflow(start_req(input=large), timeout=RPC_TIMEOUT)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error_info(caught.value).metadata["field"] == "input.data"
    huge = json_payload(json.dumps("x" * (2 * 1024 * 1024)).encode())
    with pytest.raises(grpc.RpcError) as caught:
        small.stub.StartWorkflow(start_req(input=huge), timeout=RPC_TIMEOUT)
    assert caught.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED

    # The default coordinator takes payloads up to 1 MiB; 2 MiB is past its receive limit.
    huge = json_payload(json.dumps("x" * (2 * 1024 * 1024)).encode())
    with pytest.raises(grpc.RpcError) as caught:
        stub.SetEvent(set_req(value=huge), timeout=RPC_TIMEOUT)
    assert caught.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED


def test_a_request_that_is_not_a_valid_message_fails_without_harming_the_server(
    small: Coordinator,
) -> None:
    raw: grpc.UnaryUnaryMultiCallable[bytes, bytes] = small.channel.unary_unary(
        "/durable.v1.CoordinatorService/StartWorkflow"
    )
    for garbage in (
        b"\x12\x02\xff\xfe",  # field 2 (name) holding invalid UTF-8
        b"\xff\xff\xff\xff",  # not a protobuf message
    ):
        with pytest.raises(grpc.RpcError) as caught:
            raw(garbage, timeout=RPC_TIMEOUT)
        assert caught.value.code() != grpc.StatusCode.OK


# --- found by fuzzing (tests/test_fuzz.py) --------------------------------------------------


def test_json_nested_deeper_than_the_parser_goes_is_invalid_argument(stub: Stub) -> None:
    # Within the default 1 MiB limit; Python's parser gives up at about 1000 levels.
    nested = json_payload(b"[" * 100_000 + b"]" * 100_000)
    requests: list[tuple[Message, str]] = [
        (start_req(input=nested), "input.data"),
        (step_req(output=nested), "output.data"),
        (set_req(value=nested), "value.data"),
        (finish_req(output=nested), "output.data"),
    ]
    for request, field in requests:
        with pytest.raises(grpc.RpcError) as caught:
            call(stub, request)
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert error_info(caught.value).metadata["field"] == field


def test_page_token_naming_a_workflow_id_with_nul_is_invalid_argument(stub: Stub) -> None:
    token = base64.urlsafe_b64encode(json.dumps(["2026-01-01T00:00:00+00:00", "a\x00b"]).encode())
    with pytest.raises(grpc.RpcError) as caught:
        stub.ListWorkflows(pb.ListWorkflowsRequest(page_token=token.decode()), timeout=RPC_TIMEOUT)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error_info(caught.value).metadata["field"] == "page_token"


def test_list_workflows_pages_of_large_inputs_stay_under_the_message_limit(stub: Stub) -> None:
    # Five 1 MiB inputs in one page would be over the coordinator's send limit (about
    # 3 MiB) and the client's default receive limit (4 MiB).
    name = "bad-input.large-inputs"
    large = pb.Payload(encoding="bytes", data=b"x" * (1024 * 1024))
    ids = {f"large-input-{i}" for i in range(5)}
    for workflow_id in ids:
        stub.StartWorkflow(
            pb.StartWorkflowRequest(workflow_id=workflow_id, name=name, input=large),
            timeout=RPC_TIMEOUT,
        )
    request = pb.ListWorkflowsRequest(name=name)
    seen: list[str] = []
    pages = 0
    while True:
        reply = stub.ListWorkflows(request, timeout=RPC_TIMEOUT)
        pages += 1
        assert reply.workflows, "a page holds at least one workflow"
        assert reply.ByteSize() < 3 * 1024 * 1024
        seen.extend(w.workflow_id for w in reply.workflows)
        if not reply.next_page_token:
            break
        request.page_token = reply.next_page_token
    assert sorted(seen) == sorted(ids)
    assert pages > 1


# --- afterwards ----------------------------------------------------------------------------


@pytest.mark.parametrize("which", ["small", "default"])
def test_coordinator_is_still_healthy_after_bad_input(
    which: str, small: Coordinator, coordinator: Coordinator
) -> None:
    process = small if which == "small" else coordinator
    health = health_pb2_grpc.HealthStub(process.channel)
    reply = health.Check(health_pb2.HealthCheckRequest(), timeout=RPC_TIMEOUT)
    assert reply.status == health_pb2.HealthCheckResponse.SERVING

    workflow_id = f"healthy-after-bad-input-{which}"
    stub = process.stub
    started = stub.StartWorkflow(start_req(workflow_id=workflow_id), timeout=RPC_TIMEOUT)
    assert started.created
    stub.SetEvent(set_req(workflow_id=workflow_id), timeout=RPC_TIMEOUT)
    [event] = stub.GetEvent(get_req(workflow_id=workflow_id), timeout=RPC_TIMEOUT)
    assert event.event.value == GOOD
    finished = stub.FinishWorkflow(finish_req(workflow_id=workflow_id), timeout=RPC_TIMEOUT)
    assert finished.workflow.status == pb.WORKFLOW_STATUS_SUCCESS

    assert process.process.poll() is None
    # Nothing reached the coordinator's own error handling (an unexpected exception would be
    # logged by coordinator.edge). grpc itself logs the undecodable requests sent above.
    assert " ERROR coordinator." not in process.log()


# --- ScheduleService -----------------------------------------------------------------------

# SetSchedule, ListSchedules and the by-name RPCs, each with one bad field (a table of its
# own: these go to ScheduleService, not CoordinatorService).


def schedule_spec(**fields: Any) -> spb.SetScheduleRequest:
    good: dict[str, Any] = {"name": "bad-input", "cron": "0 2 * * *", "workflow_name": "w"}
    return spb.SetScheduleRequest(spec=spb.ScheduleSpec(**{**good, **fields}))


def schedule_cases() -> list[Case]:
    found: list[Case] = []

    def add(case_id: str, request: Message, field: str) -> None:
        found.append(
            Case(f"{type(request).__name__.removesuffix('Request')}-{case_id}", request, field)
        )

    for label, value in {
        "empty": "",
        "blank": "   ",
        "four-fields": "* * * *",
        "seven-fields": "* * * * * * *",
        "minute-60": "60 * * * *",
        "hour-24": "0 24 * * *",
        "day-32": "0 0 32 * *",
        "month-13": "0 0 1 13 *",
        "weekday-8": "0 0 * * 8",
        "second-60": "60 * * * * *",
        "word": "every day",
        "bad-month-name": "0 0 1 JANX *",
        "step-zero": "*/0 * * * *",
        "never": "0 0 31 2 *",
        "hashed": "H * * * *",
        "random": "R * * * *",
        "over-256-chars": "0 " + "1," * 127 + "2 * * *",
        "nul": "0 2 * * *\x00",
    }.items():
        add(f"cron-{label}", schedule_spec(cron=value), "spec.cron")
    for label, value in {
        "unknown": "Mars/Olympus",
        "lowercase": "europe/paris",
        "offset": "+02:00",
        "trailing-space": "Europe/Paris ",
        "path": "../../etc/passwd",
        "65-chars": "Europe/" + "x" * 58,
        "nul": "Europe/Paris\x00",
    }.items():
        add(f"time_zone-{label}", schedule_spec(time_zone=value), "spec.time_zone")
    for label, value in {
        "empty": "",
        "at": "nightly@2026",
        "slash": "reports/nightly",
        "space": "nightly report",
        "201-chars": "s" * 201,
        "unicode": "bericht-ä",
        "newline": "nightly\n",
    }.items():
        add(f"name-{label}", schedule_spec(name=value), "spec.name")
        if value:  # an empty name is only refused by SetSchedule's spec ("name" below)
            for request in (
                spb.GetScheduleRequest(name=value),
                spb.PauseScheduleRequest(name=value),
                spb.ResumeScheduleRequest(name=value),
                spb.DeleteScheduleRequest(name=value),
                spb.TriggerScheduleRequest(name=value),
            ):
                add(f"name-{label}", request, "name")
    for request in (spb.GetScheduleRequest(), spb.TriggerScheduleRequest()):
        add("name-empty", request, "name")
    for label, value in BAD_NAMES.items():
        add(f"workflow_name-{label}", schedule_spec(workflow_name=value), "spec.workflow_name")
        if value:  # an empty queue is no queue, an empty filter no filter
            add(f"queue_name-{label}", schedule_spec(queue_name=value), "spec.queue_name")
            add(
                f"workflow_name-{label}",
                spb.ListSchedulesRequest(workflow_name=value),
                "workflow_name",
            )
    for label, data in BAD_JSON.items():
        add(f"input-{label}", schedule_spec(input=json_payload(data)), "spec.input.data")
    too_big = json_payload(json.dumps("x" * (PAYLOAD_LIMIT - 1)).encode())
    add("input-over-the-limit", schedule_spec(input=too_big), "spec.input.data")
    add(
        "input.encoding-uppercase",
        schedule_spec(input=pb.Payload(encoding="JSON", data=b"1")),
        "spec.input.encoding",
    )
    for catch_up in (4, -1, 2**31 - 1):
        add(f"catch_up-{catch_up}", schedule_spec(catch_up=catch_up), "spec.catch_up")
    early, late = Timestamp(seconds=1_800_000_000), Timestamp(seconds=1_800_000_060)
    add(
        "end_time-before-start_time",
        schedule_spec(start_time=late, end_time=early),
        "spec.end_time",
    )
    add("end_time-equal-start_time", schedule_spec(start_time=late, end_time=late), "spec.end_time")
    add(
        "start_time-nanos-out-of-range",
        schedule_spec(start_time=Timestamp(seconds=1, nanos=1_000_000_000)),
        "spec.start_time",
    )
    add(
        "end_time-after-year-9999",
        schedule_spec(end_time=Timestamp(seconds=253_402_300_800)),
        "spec.end_time",
    )
    add("missing-spec", spb.SetScheduleRequest(), "spec")
    for page_size in (-1, 1001, 2**31 - 1):
        add(f"page_size-{page_size}", spb.ListSchedulesRequest(page_size=page_size), "page_size")
    for label, token in {"not-base64": "not a token!", "nul": "AA==", "not-utf8": "_w=="}.items():
        add(f"page_token-{label}", spb.ListSchedulesRequest(page_token=token), "page_token")
    return found


SCHEDULE_CASES = schedule_cases()


@pytest.mark.parametrize("case", SCHEDULE_CASES, ids=[c.id for c in SCHEDULE_CASES])
def test_bad_schedule_input_is_rejected_with_invalid_argument_naming_the_field(
    small: Coordinator, case: Case
) -> None:
    stub = spb_grpc.ScheduleServiceStub(small.channel)
    method = getattr(stub, type(case.request).__name__.removesuffix("Request"))
    with pytest.raises(grpc.RpcError) as caught:
        method(case.request, timeout=RPC_TIMEOUT)
    err = caught.value
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT, err.details()
    info = error_info(err)
    assert (info.reason, info.domain) == ("INVALID_ARGUMENT", "durable.v1")
    assert info.metadata["field"] == case.field
    assert (err.details() or "").startswith(f"{case.field}:")


# --- OperationsService: retention and DeleteWorkflow ---------------------------------------


def retention_cases() -> list[Case]:
    found: list[Case] = []

    def add(case_id: str, request: Message, field: str) -> None:
        found.append(
            Case(f"{type(request).__name__.removesuffix('Request')}-{case_id}", request, field)
        )

    for label, value in {
        "under-a-minute": Duration(seconds=59, nanos=999_999_999),
        "zero": Duration(),
        "negative": Duration(seconds=-3600),
        "nanos-out-of-range": Duration(seconds=3600, nanos=1_000_000_000),
        "mixed-signs": Duration(seconds=3600, nanos=-1),
        "over-100-years": Duration(seconds=3_155_760_001),
    }.items():
        add(
            f"finished_after-{label}",
            opb.SetRetentionRequest(finished_after=value),
            "finished_after",
        )
    add("finished_after-missing", opb.SetRetentionRequest(), "finished_after")
    add(
        "finished_after-with-clear",
        opb.SetRetentionRequest(finished_after=Duration(seconds=3600), clear=True),
        "finished_after",
    )
    for label, bad_id in {**BAD_WORKFLOW_IDS, **EMPTY_ID}.items():
        add(f"workflow_id-{label}", opb.DeleteWorkflowRequest(workflow_id=bad_id), "workflow_id")
    return found


RETENTION_CASES = retention_cases()


@pytest.mark.parametrize("case", RETENTION_CASES, ids=[c.id for c in RETENTION_CASES])
def test_bad_retention_input_is_rejected_with_invalid_argument_naming_the_field(
    small: Coordinator, case: Case
) -> None:
    stub = opb_grpc.OperationsServiceStub(small.channel)
    method = getattr(stub, type(case.request).__name__.removesuffix("Request"))
    with pytest.raises(grpc.RpcError) as caught:
        method(case.request, timeout=RPC_TIMEOUT)
    err = caught.value
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT, err.details()
    info = error_info(err)
    assert (info.reason, info.domain) == ("INVALID_ARGUMENT", "durable.v1")
    assert info.metadata["field"] == case.field
    assert (err.details() or "").startswith(f"{case.field}:")


# --- OperationsService: bulk actions and queue pause -----------------------------------------


def bulk_cases() -> list[Case]:
    found: list[Case] = []

    def add(case_id: str, request: Message, field: str) -> None:
        found.append(
            Case(f"{type(request).__name__.removesuffix('Request')}-{case_id}", request, field)
        )

    for kind in (opb.CancelWorkflowsRequest, opb.ResumeWorkflowsRequest):
        # An empty filter matches the whole namespace: only with match_all (dry run or not).
        add("empty-filter", kind(), "match_all")
        add("empty-filter-dry-run", kind(dry_run=True), "match_all")
        add(
            "empty-filter-paging-only",
            kind(filter=pb.ListWorkflowsRequest(page_size=5)),
            "match_all",
        )
        for label, value in BAD_NAMES.items():
            if not value:
                continue  # an empty name is no condition
            add(f"name-{label}", kind(filter=pb.ListWorkflowsRequest(name=value)), "filter.name")
            add(
                f"queue_name-{label}",
                kind(filter=pb.ListWorkflowsRequest(queue_name=value)),
                "filter.queue_name",
            )
        for label, attributes in BAD_ATTRIBUTES.items():
            add(
                f"attributes-{label}",
                kind(filter=pb.ListWorkflowsRequest(attributes=attributes), match_all=True),
                "filter.attributes",
            )
        add(
            "status-unknown",
            kind(filter=pb.ListWorkflowsRequest(statuses=[pb.WorkflowStatus.ValueType(99)])),
            "filter.statuses",
        )
        add(
            "created_after-out-of-range",
            kind(filter=pb.ListWorkflowsRequest(created_after=Timestamp(seconds=-(10**12)))),
            "filter.created_after",
        )
    for queue_kind in (opb.PauseQueueRequest, opb.ResumeQueueRequest):
        for label, value in {**BAD_NAMES, **EMPTY_ID}.items():
            add(f"name-{label}", queue_kind(name=value), "name")
    return found


BULK_CASES = bulk_cases()


@pytest.mark.parametrize("case", BULK_CASES, ids=[c.id for c in BULK_CASES])
def test_bad_bulk_and_pause_input_is_rejected_with_invalid_argument_naming_the_field(
    small: Coordinator, case: Case
) -> None:
    stub = opb_grpc.OperationsServiceStub(small.channel)
    method = getattr(stub, type(case.request).__name__.removesuffix("Request"))
    with pytest.raises(grpc.RpcError) as caught:
        reply = method(case.request, timeout=RPC_TIMEOUT)
        if not isinstance(reply, Message):
            list(reply)  # a stream fails at its first message
    err = caught.value
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT, err.details()
    info = error_info(err)
    assert (info.reason, info.domain) == ("INVALID_ARGUMENT", "durable.v1")
    assert info.metadata["field"] == case.field
    assert (err.details() or "").startswith(f"{case.field}:")


# --- WatchWorkflows ------------------------------------------------------------------------


def watch_cases() -> list[Case]:
    found: list[Case] = []

    def add(case_id: str, request: pb.WatchWorkflowsRequest, field: str) -> None:
        found.append(Case(f"WatchWorkflows-{case_id}", request, field))

    watch = pb.WatchWorkflowsRequest
    fullwidth_one = "\uff11"
    for cursor in (
        "nope",
        "1",
        "1.",
        ".1",
        "-1.2",
        "1.2.3",
        "1.x",
        "9" * 25 + ".1",
        f"{fullwidth_one}.1",
    ):
        add(f"after_cursor-{cursor[:12]}", watch(after_cursor=cursor), "after_cursor")
    for label, duration in BAD_DURATIONS.items():
        add(f"timeout-{label}", watch(timeout=duration), "timeout")
    unknown = pb.ListWorkflowsRequest(statuses=[pb.WorkflowStatus.ValueType(99)])
    add("statuses-unknown", watch(filter=unknown), "filter.statuses")
    for label, value in BAD_NAMES.items():
        if value:
            add(f"name-{label}", watch(filter=pb.ListWorkflowsRequest(name=value)), "filter.name")
            queue = pb.ListWorkflowsRequest(queue_name=value)
            add(f"queue_name-{label}", watch(filter=queue), "filter.queue_name")
    for label, value in BAD_WORKFLOW_IDS.items():
        parent = pb.ListWorkflowsRequest(parent_workflow_id=value)
        add(f"parent_workflow_id-{label}", watch(filter=parent), "filter.parent_workflow_id")
    for label, attributes in BAD_ATTRIBUTES.items():
        tagged = pb.ListWorkflowsRequest(attributes=attributes)
        add(f"attributes-{label}", watch(filter=tagged), "filter.attributes")
    return found


@pytest.mark.parametrize("case", watch_cases(), ids=lambda case: case.id)
def test_bad_watch_input_is_rejected_with_invalid_argument_naming_the_field(
    small: Coordinator, case: Case
) -> None:
    assert isinstance(case.request, pb.WatchWorkflowsRequest)
    with pytest.raises(grpc.RpcError) as caught:
        list(small.stub.WatchWorkflows(case.request, timeout=RPC_TIMEOUT))
    err = caught.value
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT, (err.code(), err.details())
    info = error_info(err)
    assert (info.reason, info.domain) == ("INVALID_ARGUMENT", "durable.v1")
    assert info.metadata["field"] == case.field
    assert (err.details() or "").startswith(f"{case.field}:")
