"""Thousands of concurrent GetEvent follow streams plus steady step traffic on one
coordinator for a while: no error, no stream starved (each receives every value, in
order, and the end of its workflow), and the coordinator's memory stays bounded."""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path

import pytest

from tests.reliability.load import Load
from tests.reliability.report import Report
from tests.reliability.scale import SCALE, TEST_TIMEOUT
from tests.support import Coordinator

MIB = 1024 * 1024
# Memory settles within seconds of the streams opening; from the first half of the steady
# phase to the second it may grow by allocator noise, not by a leak per value or call.
GROWTH_BOUND = 1.10
GROWTH_SLACK = 16 * MIB


class RssSampler:
    """Samples a process's resident memory (VmRSS) every 0.2 s in a thread."""

    def __init__(self, pid: int) -> None:
        self.path = Path(f"/proc/{pid}/status")
        self.samples: list[tuple[float, int]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def rss(self) -> int:
        for line in self.path.read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
        raise AssertionError("no VmRSS")

    def _run(self) -> None:
        while not self._stop.wait(0.2):
            self.samples.append((time.monotonic(), self.rss()))

    def peak(self, since: float, until: float) -> int:
        return max(rss for at, rss in self.samples if since <= at <= until)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)


@pytest.mark.timeout(TEST_TIMEOUT)
def test_thousands_of_event_streams_with_step_traffic(
    coordinator: Coordinator, report: Report
) -> None:
    sampler = RssSampler(coordinator.process.pid)
    before = sampler.rss()
    load = Load(coordinator.address, SCALE.streams, SCALE.load_seconds)
    started = time.monotonic()
    try:
        result = asyncio.run(load.run())
    finally:
        sampler.stop()
    elapsed = time.monotonic() - started
    steady_from, steady_until = result.steady
    middle = (steady_from + steady_until) / 2
    first_half, second_half = sampler.peak(steady_from, middle), sampler.peak(middle, steady_until)

    delivered = sum(len(s.versions) for s in result.streams)
    report.record(
        "load (GetEvent streams + step traffic)",
        streams=len(result.streams),
        watched_workflows=len(load.workflows),
        steady_seconds=SCALE.load_seconds,
        seconds_to_open_all_streams=result.connected_seconds,
        values_per_stream=result.values_per_workflow,
        values_delivered=delivered,
        starved_streams=result.starved,
        stream_errors=result.stream_errors,
        delivery_lag_p50_seconds=result.lag(0.5),
        delivery_lag_p99_seconds=result.lag(0.99),
        delivery_lag_max_seconds=result.lag(1.0),
        steps_recorded=result.step_codes["OK"],
        step_latency_p99_ms=result.step_p99() * 1000,
        step_codes=dict(result.step_codes),
        set_event_codes=dict(result.set_codes),
        rss_mib_before=before / MIB,
        rss_mib_peak_first_half=first_half / MIB,
        rss_mib_peak_second_half=second_half / MIB,
        rss_kib_per_stream=(max(first_half, second_half) - before) / 1024 / len(result.streams),
        records_checked=delivered,
        seconds=elapsed,
    )
    errors = [s.error for s in result.streams if s.error]
    assert not errors, errors[:5]
    assert result.starved == 0
    assert set(result.step_codes) == {"OK"} and set(result.set_codes) == {"OK"}
    assert second_half < first_half * GROWTH_BOUND + GROWTH_SLACK, (first_half, second_half)
    assert coordinator.process.poll() is None
