"""A raw gRPC writer that keeps every write it got an acknowledgement for, so the test can
prove afterwards that none of them was lost, whatever failed in between."""

from __future__ import annotations

import threading
import time
from collections import Counter

import grpc

from durable.v1 import coordinator_pb2 as pb
from tests.support import Stub, payload

# Codes a write may end with while the database is away; anything else is a failure.
OUTAGE_CODES = frozenset({grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED})
CALL_TIMEOUT = 5.0
PACE = 0.01  # between writes: steady traffic, not a CPU hog


class AckedWriter:
    """Records steps 1, 2, 3... of its own workflow with RunStep (output = the step ID),
    retrying a step until it is acknowledged; `acked` holds the acknowledged step IDs and
    when the acknowledgement came (time.monotonic())."""

    def __init__(self, stub: Stub, workflow_id: str) -> None:
        self.stub = stub
        self.workflow_id = workflow_id
        self.acked: dict[int, float] = {}
        self.codes: Counter[str] = Counter()
        self.unexpected: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> None:
        self.stub.StartWorkflow(
            pb.StartWorkflowRequest(workflow_id=self.workflow_id, name="reliability.acked"),
            timeout=CALL_TIMEOUT,
        )
        self._thread.start()

    def acked_since(self, moment: float) -> float | None:
        """The first acknowledgement after `moment`, if any."""
        return min((t for t in list(self.acked.values()) if t > moment), default=None)

    def _run(self) -> None:
        step_id = 1
        while not self._stop.is_set():
            request = pb.RunStepRequest(
                workflow_id=self.workflow_id, step_id=step_id, name="acked", output=payload(step_id)
            )
            try:
                self.stub.RunStep(request, timeout=CALL_TIMEOUT)
            except grpc.RpcError as error:
                code: grpc.StatusCode = error.code()
                self.codes[code.name] += 1
                if code not in OUTAGE_CODES:
                    self.unexpected.append(f"{code.name}: {error.details()}")
                time.sleep(PACE)
                continue  # the same step again: RunStep is idempotent
            self.codes["OK"] += 1
            self.acked[step_id] = time.monotonic()
            step_id += 1
            time.sleep(PACE)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=CALL_TIMEOUT + 5)
