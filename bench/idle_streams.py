"""The idle-streams scenario of bench.run: many GetEvent streams held open on one coordinator.

What it reports, and why these measures:

- **Coordinator RSS** (VmRSS from /proc) before the streams and with all of them open: the
  target is 10,000 idle streams in at most 1 GiB.
- **Database work while idle**: transactions (xact_commit + xact_rollback) and rows read
  (tup_returned + tup_fetched) per second in the coordinators' database, from
  pg_stat_database, over a window with no streams and over one with every stream open. A
  stream that polled the database would show as extra transactions per second there
  (10,000 streams polling once a minute: +167/s). Every statement counts, whoever runs it,
  so the baseline holds the coordinators' own periodic work (health probe, sweeper); the
  figure to read is the difference. The counters are read over a connection to another
  database, so reading them adds nothing. Backends report their counters when they go idle,
  at most once a second and at the latest 10 s later, so each window starts after a quiet
  settling period longer than that.
- **Waking one of them**: with every stream open, the time from a SetEvent call to the
  value arriving on the one stream waiting for that key.
"""

from __future__ import annotations

import asyncio
import re
import time
import urllib.request
import uuid
from dataclasses import dataclass
from typing import Any

import grpc
import psycopg
from google.protobuf import duration_pb2

from durable.v1 import coordinator_pb2 as pb
from durable.v1 import coordinator_pb2_grpc as pb_grpc

# Backends flush their statistics at most every second, and an idle one within 10 s.
STATS_SETTLE_SECONDS = 11.0
# Streams opened per wave; the next wave waits until these are all open server-side, so
# the opening reads never queue for a pool connection long enough to time out.
WAVE = 1000
# HTTP/2 connections the streams are spread over.
CHANNELS = 10
STREAM_TIMEOUT_SECONDS = 600


@dataclass(frozen=True)
class Target:
    address: str
    pid: int
    metrics_url: str
    database: str  # the coordinators' database name
    server_url: str  # a connection to another database on the same server


def rss_mib(pid: int) -> float:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for {pid}")


def open_streams(metrics_url: str) -> int:
    text = urllib.request.urlopen(metrics_url, timeout=5).read().decode()
    found = re.search(r'^durable_open_streams\{method="GetEvent"\} (\S+)$', text, re.M)
    return int(float(found[1])) if found else 0


async def db_counters(target: Target) -> tuple[float, int, int]:
    """(time, transactions, rows read) of the coordinators' database so far."""
    async with await psycopg.AsyncConnection.connect(target.server_url, autocommit=True) as conn:
        cur = await conn.execute(
            "SELECT xact_commit + xact_rollback, tup_returned + tup_fetched"
            " FROM pg_stat_database WHERE datname = %s",
            (target.database,),
        )
        row = await cur.fetchone()
    assert row is not None
    return time.monotonic(), int(row[0]), int(row[1])


async def window(target: Target, seconds: float) -> dict[str, float]:
    """Database work per second over `seconds`, after a settling period."""
    await asyncio.sleep(STATS_SETTLE_SECONDS)
    t0, x0, r0 = await db_counters(target)
    await asyncio.sleep(seconds)
    t1, x1, r1 = await db_counters(target)
    return {"xact_per_s": (x1 - x0) / (t1 - t0), "rows_read_per_s": (r1 - r0) / (t1 - t0)}


async def all_open(metrics_url: str, count: int, timeout: float = 120.0) -> None:
    """Wait until the coordinator reports `count` open GetEvent streams."""
    deadline = time.monotonic() + timeout
    while await asyncio.to_thread(open_streams, metrics_url) < count:
        if time.monotonic() > deadline:
            raise RuntimeError(f"fewer than {count} streams open after {timeout}s")
        await asyncio.sleep(0.2)


async def measure(target: Target, count: int, window_seconds: float) -> dict[str, Any]:
    idle_before = await window(target, window_seconds)
    rss_before = rss_mib(target.pid)
    channels = [grpc.aio.insecure_channel(target.address) for _ in range(CHANNELS)]
    stubs = [pb_grpc.CoordinatorServiceStub(channel) for channel in channels]
    workflow_id = f"idle-{uuid.uuid4().hex}"
    await stubs[0].StartWorkflow(
        pb.StartWorkflowRequest(
            workflow_id=workflow_id, name="bench.idle", input=pb.Payload(data=b"{}")
        )
    )
    timeout = duration_pb2.Duration(seconds=STREAM_TIMEOUT_SECONDS)
    calls: list[Any] = []
    readers: list[asyncio.Task[Any]] = []
    try:
        started = time.perf_counter()
        for i in range(count):
            request = pb.GetEventRequest(workflow_id=workflow_id, key=f"k{i}", timeout=timeout)
            call = stubs[i % CHANNELS].GetEvent(request)
            calls.append(call)
            readers.append(asyncio.ensure_future(call.read()))
            if (i + 1) % WAVE == 0 or i + 1 == count:
                await all_open(target.metrics_url, i + 1)
        open_s = time.perf_counter() - started
        idle_with = await window(target, window_seconds)
        rss_with = rss_mib(target.pid)
        if any(reader.done() for reader in readers):
            raise RuntimeError("an idle stream ended early")
        # Wake one stream among all of them.
        woken = count // 2
        sent = time.perf_counter()
        await stubs[0].SetEvent(
            pb.SetEventRequest(
                workflow_id=workflow_id,
                step_id=1,
                key=f"k{woken}",
                value=pb.Payload(encoding="json", data=b"1"),
            )
        )
        message = await asyncio.wait_for(readers[woken], timeout=10)
        wake_s = time.perf_counter() - sent
        if not message.HasField("event"):
            raise RuntimeError(f"woken stream got {message}")
    finally:
        for call in calls:
            call.cancel()
        for reader in readers:
            reader.cancel()
        await asyncio.gather(*readers, return_exceptions=True)
        for channel in channels:
            await channel.close()
    return {
        "streams": count,
        "open_s": open_s,
        "rss_before_mib": rss_before,
        "rss_mib": rss_with,
        "rss_per_stream_kib": (rss_with - rss_before) * 1024 / count,
        "window_s": window_seconds,
        "before": idle_before,
        "with_streams": idle_with,
        "extra_xact_per_s": idle_with["xact_per_s"] - idle_before["xact_per_s"],
        "wake_one_s": wake_s,
    }


def run(target: Target, count: int, window_seconds: float) -> dict[str, Any]:
    return asyncio.run(measure(target, count, window_seconds))
