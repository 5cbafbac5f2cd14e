"""Fuzzing every CoordinatorService RPC with hypothesis, against one real coordinator.

Each request is built from strategies that mix odd input (exotic, control, NUL and very
long strings; out-of-range ints; invalid Durations and Timestamps; unknown enum values;
random payload bytes and encodings; payloads around and over the size limits; missing
fields) with valid-looking requests on a few known workflows, so the happy paths run too.
Every call must succeed or fail with a documented code and an ErrorInfo in the durable.v1
domain; never INTERNAL or UNKNOWN, never a hang. Afterwards the coordinator must still be
SERVING with no traceback in its log.

Waits are kept short: a wait-bearing timeout is either invalid or at most 50 ms, and a
missing one (60 s or 30 s by default) is only sent where the server answers at once.
Examples are derandomized and no example database is used, so CI runs the same cases.
Run with -s to see the one-line tally of cases and status codes.
"""

from __future__ import annotations

import base64
import json
import re
import time
from collections import Counter
from collections.abc import Callable
from typing import Any, TypeVar

import grpc
import pytest
from google.protobuf.duration_pb2 import Duration
from google.protobuf.message import Message
from google.protobuf.timestamp_pb2 import Timestamp
from grpc_health.v1 import health_pb2, health_pb2_grpc
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from durable.v1 import coordinator_pb2 as pb
from tests.reliability.report import REPORT
from tests.support import RPC_TIMEOUT, Coordinator, Stub, error_info

M = TypeVar("M", bound=Message)

# The default coordinator's limits (coordinator/config.py, coordinator/server.py).
PAYLOAD_LIMIT = 1024 * 1024
RECEIVE_LIMIT = PAYLOAD_LIMIT + 64 * 1024
MAX_WAIT_SECONDS = 24 * 3600
INT32 = (-(2**31), 2**31 - 1)
INT64 = (-(2**63), 2**63 - 1)
# The longest wait a fuzzed request may ask for.
SHORT_WAIT_NANOS = 50_000_000

FLOW = "fuzz.flow"
KNOWN_IDS = [f"fuzz-known-{i}" for i in range(6)]  # started, PENDING at first
FINISHED_IDS = [f"fuzz-finished-{i}" for i in range(3)]  # started and finished up front
# Started up front and only written to by test_record_step_attempt (test_finish_workflow
# runs first and may finish the known ones).
ATTEMPT_IDS = [f"fuzz-attempts-{i}" for i in range(3)]
WORKER_ID = "fuzz-worker-1"
NO_LEASE_ID = "fuzz-worker-never-heartbeated"
_WORKFLOW_ID = re.compile(r"[A-Za-z0-9._:@/+=-]{1,256}")

pytestmark = pytest.mark.filterwarnings("ignore:Generating overly large repr")

FUZZ = settings(
    max_examples=150,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
    ],
)

ALLOWED = {
    grpc.StatusCode.OK,
    grpc.StatusCode.INVALID_ARGUMENT,
    grpc.StatusCode.NOT_FOUND,
    grpc.StatusCode.ALREADY_EXISTS,  # QUEUE_DEDUPLICATED
    grpc.StatusCode.FAILED_PRECONDITION,
    grpc.StatusCode.RESOURCE_EXHAUSTED,
}


class Tally:
    """Cases run and status codes seen, for the summary line."""

    def __init__(self) -> None:
        self.codes: Counter[str] = Counter()
        self.methods: set[str] = set()
        self.answered: set[str] = set()  # RPCs with at least one OK
        self.started: float | None = None

    def add(self, method: str, code: grpc.StatusCode) -> None:
        if self.started is None:
            self.started = time.monotonic()
        self.methods.add(method)
        self.codes[code.name] += 1
        if code == grpc.StatusCode.OK:
            self.answered.add(method)

    def figures(self) -> dict[str, Any]:
        """The tally as figures for the reliability report (tests/reliability)."""
        return {
            "fuzz_cases": sum(self.codes.values()),
            "rpcs": len(self.methods),
            "rpcs_with_ok_answers": len(self.answered),
            "status_codes": dict(self.codes.most_common()),
            "internal": self.codes["INTERNAL"],
            "unknown": self.codes["UNKNOWN"],
        }

    def summary(self) -> str:
        elapsed = 0.0 if self.started is None else time.monotonic() - self.started
        codes = ", ".join(f"{name}={n}" for name, n in self.codes.most_common())
        never = sorted(self.methods - self.answered)
        unanswered = f"; none for {', '.join(never)}" if never else ""
        return (
            f"fuzz: {sum(self.codes.values())} calls over {len(self.methods)} RPCs "
            f"({len(self.answered)} with OK answers{unanswered}) in {elapsed:.1f}s; "
            f"codes: {codes}"
        )


TALLY = Tally()


def send(stub: Stub, method: str, request: Message) -> grpc.StatusCode:
    """Call `method` with `request` (a stream is read to its end); check the outcome."""
    size = request.ByteSize()
    try:
        reply = getattr(stub, method)(request, timeout=RPC_TIMEOUT)
        if method == "GetEvent":
            messages = list(reply)
            assert messages, "GetEvent ended without a message"
            assert messages[-1].WhichOneof("outcome") is not None
        code = grpc.StatusCode.OK
    except grpc.RpcError as err:
        code = err.code()
        assert code in ALLOWED, f"{method}: {code.name}: {err.details()}"
        if code == grpc.StatusCode.RESOURCE_EXHAUSTED:
            assert size > RECEIVE_LIMIT, f"{method}: RESOURCE_EXHAUSTED for {size} bytes"
        else:
            info = error_info(err)
            assert info.domain == "durable.v1", info
            assert info.reason, info
            if code == grpc.StatusCode.INVALID_ARGUMENT:
                assert info.metadata["field"], info
    if size > RECEIVE_LIMIT:
        assert code == grpc.StatusCode.RESOURCE_EXHAUSTED, f"{method}: {size} bytes got {code}"
    TALLY.add(method, code)
    return code


# --- strategies ----------------------------------------------------------------------------

SPECIAL_STRINGS = [
    "",
    " ",
    "\x00",
    "a\x00b",
    "\t",
    "\r\n",
    "\x1b[31m",
    "\x7f",
    "\x85",  # NEL, a C1 control
    "\x9b",
    "\u00a0",
    "\u200b",
    "\u200d",
    "\u202e",  # right-to-left override
    "\u2028",
    "\ufeff",
    "\ufffd",
    "\uffff",  # a noncharacter
    "\U0010ffff",
    "e\u0301",
    "\U0001f600",
    "\U0001f468\u200d\U0001f469\u200d\U0001f467",
    "../../etc/passwd",
    "'; DROP TABLE durable.workflows; --",
    "%s%n%x",
    "${jndi:ldap://x}",
    "null",
    "NaN",
]

# Any code point but surrogates (protobuf strings are UTF-8): NUL, controls, exotic planes.
odd_chars = st.characters(exclude_categories=["Cs"])
long_strings = st.builds(
    lambda unit, n: unit * n,
    st.sampled_from(["a", "\u00e9", "\u6b65", "\U0001f600", "\x00", "\n"]),
    st.sampled_from([255, 256, 257, 1000, 64 * 1024, 64 * 1024 + 1, 300_000]),
)
odd_text = st.one_of(
    st.sampled_from(SPECIAL_STRINGS),
    st.text(odd_chars, max_size=40),
    st.text(odd_chars, min_size=200, max_size=400),
    long_strings,
)
valid_ids = st.from_regex(_WORKFLOW_ID, fullmatch=True)
workflow_ids = st.one_of(
    st.sampled_from(KNOWN_IDS), st.sampled_from(FINISHED_IDS), valid_ids, odd_text
)
names = st.one_of(st.just(FLOW), st.text(max_size=20).filter(bool), odd_text)


def ints(bounds: tuple[int, int], *special: int) -> st.SearchStrategy[int]:
    low, high = bounds
    edges = {0, 1, -1, low, high, low + 1, high - 1, *special}
    return st.one_of(st.sampled_from(sorted(edges)), st.integers(low, high))


step_ids = st.one_of(st.integers(1, 12), ints(INT32))


def durations(*, valid: st.SearchStrategy[Duration]) -> st.SearchStrategy[Duration]:
    """Invalid Durations of every kind, plus `valid` ones."""
    seconds_limit = 315_576_000_000
    invalid = st.one_of(
        st.builds(Duration, seconds=st.integers(INT64[0], -1), nanos=st.integers(-999_999_999, 0)),
        st.builds(Duration, seconds=st.just(0), nanos=st.integers(INT32[0], -1)),
        st.builds(  # nanos out of range
            Duration,
            seconds=st.integers(-5, 5),
            nanos=st.one_of(st.integers(10**9, INT32[1]), st.integers(INT32[0], -(10**9))),
        ),
        st.builds(  # mixed signs
            Duration, seconds=st.integers(1, INT64[1]), nanos=st.integers(-999_999_999, -1)
        ),
        st.builds(Duration, seconds=st.integers(seconds_limit + 1, INT64[1])),
        st.builds(Duration, seconds=st.integers(INT64[0], -seconds_limit - 1)),
    )
    return st.one_of(invalid, valid)


short_waits = st.builds(Duration, seconds=st.just(0), nanos=st.integers(0, SHORT_WAIT_NANOS))
# Valid-looking but past the maximum wait: rejected before any waiting.
over_max_waits = st.one_of(
    st.builds(Duration, seconds=st.integers(MAX_WAIT_SECONDS + 1, 315_576_000_000)),
    st.builds(Duration, seconds=st.just(MAX_WAIT_SECONDS), nanos=st.integers(1, 999_999_999)),
)
wait_timeouts = durations(valid=st.one_of(short_waits, over_max_waits))
any_durations = durations(
    valid=st.one_of(
        short_waits,
        st.builds(Duration, seconds=st.sampled_from([0, 1, 599, 600, 601, 365 * 24 * 3600])),
        st.builds(
            Duration,
            seconds=st.integers(0, 315_576_000_000),
            nanos=st.integers(0, 999_999_999),
        ),
    )
)

MIN_TS, MAX_TS = -62_135_596_800, 253_402_300_799
timestamps = st.one_of(
    st.builds(
        Timestamp,
        seconds=st.sampled_from([MIN_TS - 1, MIN_TS, 0, 1_700_000_000, MAX_TS, MAX_TS + 1]),
        nanos=st.sampled_from([0, 1, 999_999_999, 10**9, -1]),
    ),
    st.builds(Timestamp, seconds=st.integers(MIN_TS, MAX_TS), nanos=st.integers(0, 999_999_999)),
    st.builds(Timestamp, seconds=ints(INT64), nanos=ints(INT32)),
)


def _json_value() -> st.SearchStrategy[Any]:
    scalars = st.one_of(
        st.none(),
        st.booleans(),
        st.integers(),
        st.floats(allow_nan=False, allow_infinity=False),
        st.text(odd_chars, max_size=20),
    )
    return st.recursive(
        scalars,
        lambda inner: st.one_of(
            st.lists(inner, max_size=4),
            st.dictionaries(st.text(odd_chars, max_size=8), inner, max_size=4),
        ),
        max_leaves=10,
    )


def _big(n: int, kind: str) -> bytes:
    if kind == "json":
        return b'"' + b"x" * max(n - 2, 0) + b'"'
    if kind == "nested":
        return b"[" * (n // 2) + b"]" * (n // 2)
    return b"\xff" * n


SPECIAL_DATA = [
    b"",
    b"null",
    b"NaN",
    b"-Infinity",
    b"1e999",
    b"[1, NaN]",
    b'"\\u0000"',
    b'"\\ud800"',  # a lone surrogate escape: valid JSON text, no valid UTF-16
    b'{"a": 1, "a": 2}',
    b"\xef\xbb\xbf{}",  # a BOM
    b'"\xff"',
    b"\x00",
    b"[" * 100 + b"]" * 100,
    b"[" * 5_000 + b"]" * 5_000,
    b'{"a":' * 3_000 + b"1" + b"}" * 3_000,
]
payload_data = st.one_of(
    st.sampled_from(SPECIAL_DATA),
    st.binary(max_size=64),
    _json_value().map(lambda v: json.dumps(v).encode()),
    _json_value().map(lambda v: json.dumps(v, ensure_ascii=False).encode()),
    st.builds(
        _big,
        st.sampled_from(
            [
                PAYLOAD_LIMIT - 1,
                PAYLOAD_LIMIT,
                PAYLOAD_LIMIT + 1,
                RECEIVE_LIMIT + 1,
                RECEIVE_LIMIT + 100_000,
            ]
        ),
        st.sampled_from(["json", "nested", "bytes"]),
    ),
)
encodings = st.one_of(
    st.sampled_from(["", "json", "bytes", "a" * 64, "a" * 65, "JSON", "json ", "j\x00son"]),
    st.from_regex(r"[a-z0-9][a-z0-9._+/-]{0,63}", fullmatch=True),
    odd_text,
)
payloads = st.builds(
    lambda encoding, data: pb.Payload(encoding=encoding, data=data), encodings, payload_data
)
good_payloads = st.one_of(
    _json_value().map(lambda v: pb.Payload(encoding="json", data=json.dumps(v).encode())),
    st.binary(max_size=32).map(lambda b: pb.Payload(encoding="bytes", data=b)),
)
failure_texts = st.one_of(
    odd_text,
    st.sampled_from([64 * 1024, 64 * 1024 + 1, PAYLOAD_LIMIT + 1]).map(lambda n: "m" * n),
)
failures = st.fixed_dictionaries(
    {}, optional={"type": names, "message": failure_texts, "details": failure_texts}
).map(lambda fields: pb.Failure(**fields))
good_failures = st.builds(
    lambda t, m: pb.Failure(type=t, message=m), st.just("builtins.ValueError"), st.text()
)
executor_ids = st.one_of(st.sampled_from([WORKER_ID, NO_LEASE_ID]), valid_ids, odd_text)
statuses = st.lists(
    st.one_of(st.integers(0, 7), st.sampled_from([99, -1, INT32[0], INT32[1]])), max_size=4
)


def _token(value: Any) -> str:
    return base64.urlsafe_b64encode(json.dumps(value).encode()).decode()


page_tokens = st.one_of(
    st.builds(  # shaped like a real token, with odd contents
        lambda created, wf: _token([created, wf]),
        st.one_of(
            st.sampled_from(
                [
                    "2026-01-01T00:00:00+00:00",
                    "2026-01-01T00:00:00",
                    "0001-01-01T00:00:00+14:00",
                    "9999-12-31T23:59:59.999999-14:00",
                    "not a time",
                ]
            ),
            st.text(odd_chars, max_size=30),
        ),
        st.one_of(st.sampled_from(KNOWN_IDS + SPECIAL_STRINGS), st.text(odd_chars, max_size=30)),
    ),
    _json_value().map(_token),
    st.binary(max_size=40).map(lambda b: base64.urlsafe_b64encode(b).decode()),
    odd_text,
)


def message(cls: type[M], **fields: st.SearchStrategy[Any]) -> st.SearchStrategy[M]:
    """`cls` with any subset of `fields` set (unset ones are missing fields)."""
    return st.fixed_dictionaries({}, optional=fields).map(lambda kw: cls(**kw))


def either(fuzzed: st.SearchStrategy[M], valid: st.SearchStrategy[M]) -> st.SearchStrategy[M]:
    return st.one_of(valid, fuzzed)


outcome_fields = {"output": payloads, "error": failures}

start_requests = either(
    message(
        pb.StartWorkflowRequest,
        workflow_id=workflow_ids,
        name=names,
        input=payloads,
        executor_id=executor_ids,
        timeout=any_durations,
    ),
    st.builds(
        lambda wf, inp: pb.StartWorkflowRequest(workflow_id=wf, name=FLOW, input=inp),
        st.one_of(st.sampled_from(KNOWN_IDS), valid_ids),
        good_payloads,
    ),
)
run_step_requests = either(
    message(
        pb.RunStepRequest,
        workflow_id=workflow_ids,
        step_id=step_ids,
        name=names,
        executor_id=executor_ids,
        start_time=timestamps,
        attempts=ints(INT32),
        **outcome_fields,
    ),
    st.builds(
        lambda wf, step, out, err, attempts, started: pb.RunStepRequest(
            workflow_id=wf,
            step_id=step,
            name=f"step-{step}",
            attempts=attempts,
            start_time=started,
            **({"error": err} if err is not None else {"output": out}),
        ),
        st.sampled_from(KNOWN_IDS),
        st.integers(1, 12),
        good_payloads,
        st.none() | good_failures,
        st.integers(0, 5),
        st.builds(Timestamp, seconds=st.integers(0, 2_000_000_000)),
    ),
)
set_event_requests = either(
    message(
        pb.SetEventRequest,
        workflow_id=workflow_ids,
        step_id=step_ids,
        key=names,
        value=payloads,
        executor_id=executor_ids,
    ),
    st.builds(
        lambda wf, step, key, value: pb.SetEventRequest(
            workflow_id=wf, step_id=step, key=key, value=value
        ),
        st.sampled_from(KNOWN_IDS),
        st.integers(1, 12),
        st.sampled_from(["k1", "k2"]),
        good_payloads,
    ),
)
step_refs = either(
    message(pb.StepRef, workflow_id=workflow_ids, step_id=step_ids, executor_id=executor_ids),
    st.builds(
        lambda wf, step: pb.StepRef(workflow_id=wf, step_id=step),
        st.sampled_from(KNOWN_IDS + FINISHED_IDS),
        st.integers(1, 12),
    ),
)
get_event_requests = either(
    message(
        pb.GetEventRequest,
        workflow_id=workflow_ids,
        key=names,
        timeout=wait_timeouts,
        follow=st.booleans(),
        after_version=ints(INT64),
        caller=step_refs,
    ),
    st.builds(
        lambda wf, key, timeout, follow, after: pb.GetEventRequest(
            workflow_id=wf, key=key, timeout=timeout, follow=follow, after_version=after
        ),
        st.sampled_from(KNOWN_IDS + FINISHED_IDS),
        st.sampled_from(["k1", "k2"]),
        short_waits,
        st.booleans(),
        st.integers(0, 3),
    ),
)
finish_requests = either(
    message(
        pb.FinishWorkflowRequest,
        workflow_id=workflow_ids,
        executor_id=executor_ids,
        **{"output": payloads, "error": failures},
    ),
    st.builds(
        lambda wf, out: pb.FinishWorkflowRequest(workflow_id=wf, output=out),
        st.sampled_from(KNOWN_IDS + FINISHED_IDS),
        good_payloads,
    ),
)
get_workflow_requests = message(pb.GetWorkflowRequest, workflow_id=workflow_ids)
await_requests = message(pb.AwaitWorkflowRequest, workflow_id=workflow_ids, timeout=wait_timeouts)
list_steps_requests = message(
    pb.ListStepsRequest,
    workflow_id=workflow_ids,
    after_step_id=ints(INT32),
    page_size=ints(INT32, 1000, 1001),
)
record_attempt_requests = either(
    message(
        pb.RecordStepAttemptRequest,
        workflow_id=workflow_ids,
        step_id=step_ids,
        name=names,
        attempt=ints(INT32),
        error=failures,
        start_time=timestamps,
        end_time=timestamps,
        executor_id=executor_ids,
    ),
    st.builds(
        lambda wf, step, attempt, err: pb.RecordStepAttemptRequest(
            workflow_id=wf, step_id=step, name=f"step-{step}", attempt=attempt, error=err
        ),
        st.sampled_from(ATTEMPT_IDS),
        st.integers(1, 12),
        st.integers(1, 3),
        good_failures,
    ),
)
heartbeat_requests = message(
    pb.HeartbeatRequest,
    executor_id=st.one_of(valid_ids, odd_text),
    worker_name=st.one_of(st.just("fuzz-host"), odd_text),
    workflow_names=st.one_of(
        st.lists(names, max_size=5),
        st.sampled_from([1000, 1001]).map(lambda n: [f"flow-{i}" for i in range(n)]),
    ),
    lease=any_durations,
    queues=st.one_of(
        st.lists(names, max_size=5),
        st.sampled_from([1000, 1001]).map(lambda n: [f"queue-{i}" for i in range(n)]),
    ),
)
poll_requests = message(
    pb.PollWorkRequest,
    executor_id=executor_ids,
    max_workflows=ints(INT32, 100, 101),
    timeout=wait_timeouts,
)
cancel_requests = message(pb.CancelWorkflowRequest, workflow_id=workflow_ids)
resume_requests = message(pb.ResumeWorkflowRequest, workflow_id=workflow_ids)
fork_requests = message(
    pb.ForkWorkflowRequest,
    workflow_id=workflow_ids,
    start_step_id=step_ids,
    new_workflow_id=st.one_of(valid_ids, workflow_ids),
)
list_workflows_requests = either(
    message(
        pb.ListWorkflowsRequest,
        statuses=statuses,
        name=names,
        created_after=timestamps,
        created_before=timestamps,
        page_size=ints(INT32, 1000, 1001),
        page_token=page_tokens,
        parent_workflow_id=workflow_ids,
        queue_name=names,
    ),
    message(  # valid filters, so the page token (or its absence) is what is tested
        pb.ListWorkflowsRequest,
        statuses=st.lists(st.integers(1, 6), max_size=3),
        name=st.just(FLOW),
        page_size=st.integers(0, 1000),
        page_token=page_tokens,
    ),
)
list_events_requests = message(pb.ListEventsRequest, workflow_id=workflow_ids)
topics = st.one_of(st.sampled_from(["", "t1", "t2"]), names)
send_requests = either(
    message(
        pb.SendRequest,
        destination_workflow_id=workflow_ids,
        topic=topics,
        message=payloads,
        idempotency_key=st.one_of(st.sampled_from(["key-1", "key-2"]), odd_text),
        caller=step_refs,
    ),
    st.builds(
        lambda wf, topic, value, caller: pb.SendRequest(
            destination_workflow_id=wf, topic=topic, message=value, caller=caller
        ),
        st.sampled_from(KNOWN_IDS + FINISHED_IDS),
        st.sampled_from(["", "t1"]),
        good_payloads,
        st.none() | step_refs,
    ),
)
recv_requests = either(
    message(
        pb.RecvRequest,
        workflow_id=workflow_ids,
        step_id=step_ids,
        topic=topics,
        timeout=wait_timeouts,
        executor_id=executor_ids,
    ),
    st.builds(
        lambda wf, step, topic, timeout: pb.RecvRequest(
            workflow_id=wf, step_id=step, topic=topic, timeout=timeout
        ),
        st.sampled_from(KNOWN_IDS),
        st.integers(1, 12),
        st.sampled_from(["", "t1"]),
        short_waits,
    ),
)
sleep_requests = either(
    message(
        pb.SleepRequest,
        workflow_id=workflow_ids,
        step_id=step_ids,
        duration=any_durations,
        executor_id=executor_ids,
    ),
    st.builds(
        lambda wf, step, seconds: pb.SleepRequest(
            workflow_id=wf, step_id=step, duration=Duration(seconds=seconds)
        ),
        st.sampled_from(KNOWN_IDS),
        st.integers(1, 12),
        st.integers(0, 3600),
    ),
)

# Enqueues (some deduplicated) and child starts under the known workflows.
FUZZ_QUEUE = "fuzz-queue"
queue_start_requests = either(
    message(
        pb.StartWorkflowRequest,
        workflow_id=workflow_ids,
        name=names,
        executor_id=executor_ids,
        queue_name=st.one_of(st.just(FUZZ_QUEUE), names),
        priority=ints(INT32),
        deduplication_id=st.one_of(st.sampled_from(["dup-1", "dup-2"]), odd_text),
        parent=step_refs,
    ),
    st.builds(
        lambda wf, queue, priority, dedup, parent: pb.StartWorkflowRequest(
            workflow_id=wf,
            name=FLOW,
            queue_name=queue,
            priority=priority if queue else 0,
            deduplication_id=dedup if queue else "",
            parent=parent,
        ),
        valid_ids,
        st.sampled_from(["", FUZZ_QUEUE]),
        st.integers(-3, 3),
        st.sampled_from(["", "dup-1"]),
        st.none() | step_refs,
    ),
)
rate_periods = durations(
    valid=st.builds(Duration, seconds=st.sampled_from([0, 1, 60, 86_400, 86_401]))
)
configure_queue_requests = either(
    message(
        pb.ConfigureQueueRequest,
        queue=message(
            pb.QueueConfig,
            name=st.one_of(st.just(FUZZ_QUEUE), names),
            concurrency=ints(INT32),
            worker_concurrency=ints(INT32),
            rate_limit=ints(INT32),
            rate_period=rate_periods,
        ),
    ),
    st.builds(
        lambda concurrency, per_worker, rate: pb.ConfigureQueueRequest(
            queue=pb.QueueConfig(
                name=FUZZ_QUEUE,
                concurrency=concurrency,
                worker_concurrency=per_worker,
                rate_limit=rate,
                rate_period=Duration(seconds=1) if rate else None,
            )
        ),
        st.integers(0, 3),
        st.integers(0, 3),
        st.integers(0, 3),
    ),
)


def answers_at_once(workflow_id: str) -> bool:
    """Whether a wait on this workflow ends at once: it is finished or not a valid ID."""
    return workflow_id in FINISHED_IDS or not _WORKFLOW_ID.fullmatch(workflow_id)


# --- fixtures and tests --------------------------------------------------------------------


@pytest.fixture(scope="module")
def seeded(stub: Stub) -> Stub:
    """The known workflows: some PENDING, some finished; and the fuzzing worker's names."""
    for workflow_id in KNOWN_IDS + FINISHED_IDS + ATTEMPT_IDS:
        stub.StartWorkflow(
            pb.StartWorkflowRequest(workflow_id=workflow_id, name=FLOW), timeout=RPC_TIMEOUT
        )
    for workflow_id in FINISHED_IDS:
        stub.FinishWorkflow(
            pb.FinishWorkflowRequest(
                workflow_id=workflow_id, output=pb.Payload(encoding="json", data=b"1")
            ),
            timeout=RPC_TIMEOUT,
        )
    return stub


def _fuzz(strategy: st.SearchStrategy[Any]) -> Callable[[Callable[..., None]], Any]:
    def decorate(test: Callable[..., None]) -> Any:
        return FUZZ(given(request=strategy)(test))

    return decorate


@_fuzz(st.one_of(start_requests, queue_start_requests))
def test_start_workflow(seeded: Stub, request: pb.StartWorkflowRequest) -> None:
    send(seeded, "StartWorkflow", request)


@_fuzz(run_step_requests)
def test_run_step(seeded: Stub, request: pb.RunStepRequest) -> None:
    send(seeded, "RunStep", request)


@_fuzz(set_event_requests)
def test_set_event(seeded: Stub, request: pb.SetEventRequest) -> None:
    send(seeded, "SetEvent", request)


@_fuzz(get_event_requests)
def test_get_event(seeded: Stub, request: pb.GetEventRequest) -> None:
    if not request.HasField("timeout") and not answers_at_once(request.workflow_id):
        request.timeout.CopyFrom(Duration(nanos=SHORT_WAIT_NANOS))  # 60 s by default
    send(seeded, "GetEvent", request)


@_fuzz(finish_requests)
def test_finish_workflow(seeded: Stub, request: pb.FinishWorkflowRequest) -> None:
    send(seeded, "FinishWorkflow", request)


@_fuzz(get_workflow_requests)
def test_get_workflow(seeded: Stub, request: pb.GetWorkflowRequest) -> None:
    send(seeded, "GetWorkflow", request)


@_fuzz(await_requests)
def test_await_workflow(seeded: Stub, request: pb.AwaitWorkflowRequest) -> None:
    if not request.HasField("timeout") and not answers_at_once(request.workflow_id):
        request.timeout.CopyFrom(Duration(nanos=SHORT_WAIT_NANOS))  # 60 s by default
    send(seeded, "AwaitWorkflow", request)


@_fuzz(list_steps_requests)
def test_list_steps(seeded: Stub, request: pb.ListStepsRequest) -> None:
    send(seeded, "ListSteps", request)


@_fuzz(record_attempt_requests)
def test_record_step_attempt(seeded: Stub, request: pb.RecordStepAttemptRequest) -> None:
    send(seeded, "RecordStepAttempt", request)


@_fuzz(heartbeat_requests)
def test_heartbeat(seeded: Stub, request: pb.HeartbeatRequest) -> None:
    send(seeded, "Heartbeat", request)


@FUZZ
@given(request=poll_requests, heartbeat=st.booleans())
def test_poll_work(seeded: Stub, request: pb.PollWorkRequest, heartbeat: bool) -> None:
    if heartbeat:
        # A live lease first, so the claim itself runs (and may claim ENQUEUED work).
        request.executor_id = WORKER_ID
        lease = pb.HeartbeatRequest(
            executor_id=WORKER_ID,
            workflow_names=[FLOW],
            lease=Duration(seconds=30),
            queues=[FUZZ_QUEUE],
        )
        assert send(seeded, "Heartbeat", lease) == grpc.StatusCode.OK
    # 30 s by default; only a session without a lease is refused at once (and random IDs
    # may have one from test_heartbeat).
    if (
        not request.HasField("timeout")
        and _WORKFLOW_ID.fullmatch(request.executor_id)
        and request.executor_id != NO_LEASE_ID
    ):
        request.timeout.CopyFrom(Duration(nanos=SHORT_WAIT_NANOS))
    send(seeded, "PollWork", request)


@_fuzz(cancel_requests)
def test_cancel_workflow(seeded: Stub, request: pb.CancelWorkflowRequest) -> None:
    send(seeded, "CancelWorkflow", request)


@_fuzz(resume_requests)
def test_resume_workflow(seeded: Stub, request: pb.ResumeWorkflowRequest) -> None:
    send(seeded, "ResumeWorkflow", request)


@_fuzz(fork_requests)
def test_fork_workflow(seeded: Stub, request: pb.ForkWorkflowRequest) -> None:
    send(seeded, "ForkWorkflow", request)


@_fuzz(list_workflows_requests)
def test_list_workflows(seeded: Stub, request: pb.ListWorkflowsRequest) -> None:
    send(seeded, "ListWorkflows", request)


@_fuzz(list_events_requests)
def test_list_events(seeded: Stub, request: pb.ListEventsRequest) -> None:
    send(seeded, "ListEvents", request)


@_fuzz(send_requests)
def test_send(seeded: Stub, request: pb.SendRequest) -> None:
    send(seeded, "Send", request)


@_fuzz(recv_requests)
def test_recv(seeded: Stub, request: pb.RecvRequest) -> None:
    if not request.HasField("timeout"):
        request.timeout.CopyFrom(Duration(nanos=SHORT_WAIT_NANOS))  # 60 s by default
    send(seeded, "Recv", request)


@_fuzz(sleep_requests)
def test_sleep(seeded: Stub, request: pb.SleepRequest) -> None:
    send(seeded, "Sleep", request)


@_fuzz(configure_queue_requests)
def test_configure_queue(seeded: Stub, request: pb.ConfigureQueueRequest) -> None:
    send(seeded, "ConfigureQueue", request)


def test_coordinator_survived_the_fuzzing(coordinator: Coordinator, seeded: Stub) -> None:
    health = health_pb2_grpc.HealthStub(coordinator.channel)
    reply = health.Check(health_pb2.HealthCheckRequest(), timeout=RPC_TIMEOUT)
    assert reply.status == health_pb2.HealthCheckResponse.SERVING
    assert coordinator.process.poll() is None
    log = coordinator.log()
    assert "Traceback" not in log, log[-5000:]
    assert " ERROR coordinator." not in log, log[-5000:]
    print(f"\n{TALLY.summary()}")
    # Printed in the reliability report when tests/reliability runs in the same session.
    REPORT.record("fuzzed input (hypothesis, every RPC)", **TALLY.figures(), healthy_after=True)
