"""The load the reliability suite puts on one coordinator: thousands of GetEvent follow
streams on a few dozen workflows whose events move steadily, plus steady RunStep traffic,
all over grpc.aio in one event loop. Every stream must receive every value, in order."""

from __future__ import annotations

import asyncio
import statistics
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import grpc

from durable.v1 import coordinator_pb2 as pb
from durable.v1 import coordinator_pb2_grpc as pb_grpc
from tests.support import duration, payload

if TYPE_CHECKING:  # only in the generated type stubs
    from durable.v1.coordinator_pb2_grpc import CoordinatorServiceAsyncStub as AsyncStub

STREAMS_PER_WORKFLOW = 50
STREAMS_PER_CHANNEL = 500
EVENT_SETS_PER_SECOND = 10.0  # over all watched workflows
STEP_WRITERS = 4
STEP_PACE = 0.02
CALL_TIMEOUT = 30.0


@dataclass
class Stream:
    versions: list[int] = field(default_factory=list)
    lags: list[float] = field(default_factory=list)  # receipt time - the value's set_time
    finished: bool = False
    error: str | None = None


@dataclass
class LoadResult:
    streams: list[Stream]
    values_per_workflow: int
    connected_seconds: float
    steady: tuple[float, float]  # time.monotonic() at the start and end of the steady phase
    step_latencies: list[float]
    step_codes: Counter[str]
    set_codes: Counter[str]

    @property
    def starved(self) -> int:
        """Streams that missed a value or did not see the workflow finish."""
        want = list(range(1, self.values_per_workflow + 1))
        return sum(1 for s in self.streams if s.versions != want or not s.finished)

    @property
    def stream_errors(self) -> int:
        return sum(1 for s in self.streams if s.error is not None)

    def lag(self, quantile: float) -> float:
        lags = sorted(lag for s in self.streams for lag in s.lags)
        return lags[min(len(lags) - 1, int(quantile * len(lags)))] if lags else 0.0

    def step_p99(self) -> float:
        if len(self.step_latencies) < 2:
            return 0.0
        return statistics.quantiles(self.step_latencies, n=100)[98]


class Load:
    def __init__(self, address: str, streams: int, seconds: float) -> None:
        self.address = address
        self.seconds = seconds
        self.workflows = [f"load-{n}" for n in range(max(1, streams // STREAMS_PER_WORKFLOW))]
        self.streams = [Stream() for _ in range(streams)]
        self.step_latencies: list[float] = []
        self.step_codes: Counter[str] = Counter()
        self.set_codes: Counter[str] = Counter()
        self.values = 0  # set on every watched workflow so far
        self._steady = asyncio.Event()
        self._all_open = asyncio.Event()
        self._open = 0
        self._target = 0

    def _channel(self) -> grpc.aio.Channel:
        # A connection of its own, not one shared subchannel for thousands of streams.
        options = [("grpc.use_local_subchannel_pool", 1)]
        return grpc.aio.insecure_channel(self.address, options=options)

    async def run(self) -> LoadResult:
        control = self._channel()
        stub = pb_grpc.CoordinatorServiceStub(control)
        for workflow_id in self.workflows:
            await stub.StartWorkflow(
                pb.StartWorkflowRequest(workflow_id=workflow_id, name="reliability.load"),
                timeout=CALL_TIMEOUT,
            )
        await self._set_all(stub)  # value 1: each stream's first message proves it is open
        # Every stream opens at once, as clients re-opening their watches after a coordinator
        # restart would: the coordinator must accept the whole burst (coordinator/server.py).
        channels: list[grpc.aio.Channel] = []
        readers: list[asyncio.Task[None]] = []
        opened = time.monotonic()
        self._target = len(self.streams)
        for first in range(0, len(self.streams), STREAMS_PER_CHANNEL):
            channels.append(self._channel())
            streams_stub = pb_grpc.CoordinatorServiceStub(channels[-1])
            batch = self.streams[first : first + STREAMS_PER_CHANNEL]
            for i, stream in enumerate(batch, start=first):
                workflow_id = self.workflows[i % len(self.workflows)]
                readers.append(asyncio.create_task(self._follow(streams_stub, workflow_id, stream)))
        await self._all_open.wait()
        connected = time.monotonic() - opened

        steady_from = time.monotonic()
        steps = [asyncio.create_task(self._steps(stub, n)) for n in range(STEP_WRITERS)]
        await self._move_events(stub)
        self._steady.set()
        steady = (steady_from, time.monotonic())
        await asyncio.gather(*steps)
        for workflow_id in self.workflows:
            await stub.FinishWorkflow(
                pb.FinishWorkflowRequest(workflow_id=workflow_id, output=payload("done")),
                timeout=CALL_TIMEOUT,
            )
        await asyncio.wait_for(asyncio.gather(*readers), timeout=120)
        for channel in [control, *channels]:
            await channel.close()
        return LoadResult(
            self.streams,
            self.values,
            connected,
            steady,
            self.step_latencies,
            self.step_codes,
            self.set_codes,
        )

    def _opened(self) -> None:
        """A stream got its first message (or failed): is the batch open now?"""
        self._open += 1
        if self._open >= self._target:
            self._all_open.set()

    async def _follow(self, stub: AsyncStub, workflow_id: str, stream: Stream) -> None:
        wait = self.seconds + 120
        request = pb.GetEventRequest(
            workflow_id=workflow_id, key="tick", follow=True, timeout=duration(wait)
        )
        try:
            async for message in stub.GetEvent(request, timeout=wait + 10):
                if message.HasField("event"):
                    stream.versions.append(message.event.version)
                    if message.event.version == 1:
                        self._opened()  # set before the stream opened: no lag to measure
                    else:
                        set_at = message.event.set_time.ToNanoseconds() / 1e9
                        stream.lags.append(time.time() - set_at)
                elif message.HasField("workflow_finished"):
                    stream.finished = True
                else:
                    stream.error = f"unexpected {message}"
        except grpc.aio.AioRpcError as error:
            stream.error = f"{error.code().name}: {error.details()}"
            if not stream.versions:
                self._opened()

    async def _set_all(self, stub: AsyncStub) -> None:
        """Set the next value on every watched workflow, spread over 1/rate s each."""
        self.values += 1
        pause = 1.0 / EVENT_SETS_PER_SECOND
        for workflow_id in self.workflows:
            request = pb.SetEventRequest(
                workflow_id=workflow_id, step_id=self.values, key="tick", value=payload(self.values)
            )
            try:
                await stub.SetEvent(request, timeout=CALL_TIMEOUT)
                self.set_codes["OK"] += 1
            except grpc.aio.AioRpcError as error:
                self.set_codes[error.code().name] += 1
            if self.values > 1:
                await asyncio.sleep(pause)

    async def _move_events(self, stub: AsyncStub) -> None:
        end = time.monotonic() + self.seconds
        while time.monotonic() < end:
            await self._set_all(stub)

    async def _steps(self, stub: AsyncStub, n: int) -> None:
        workflow_id = f"load-steps-{n}"
        await stub.StartWorkflow(
            pb.StartWorkflowRequest(workflow_id=workflow_id, name="reliability.load.steps"),
            timeout=CALL_TIMEOUT,
        )
        step_id = 0
        while not self._steady.is_set():
            step_id += 1
            request = pb.RunStepRequest(
                workflow_id=workflow_id, step_id=step_id, name="tick", output=payload(step_id)
            )
            began = time.monotonic()
            try:
                await stub.RunStep(request, timeout=CALL_TIMEOUT)
                self.step_codes["OK"] += 1
                self.step_latencies.append(time.monotonic() - began)
            except grpc.aio.AioRpcError as error:
                self.step_codes[error.code().name] += 1
            await asyncio.sleep(STEP_PACE)
