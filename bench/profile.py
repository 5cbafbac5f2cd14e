"""Where the time of a step goes: CPU per operation of each process, and optional py-spy.

    .venv/bin/python -m bench.profile step [--count 2000] [COMMON]
    .venv/bin/python -m bench.profile throughput [--count 300] [COMMON]
    .venv/bin/python -m bench.profile capacity [--count 200] [--in-flight 200] [COMMON]
    COMMON: [--spy DIR [--spy-arg=--gil ...]] [--coordinator-arg=FLAG ...]

Starts one coordinator on a fresh database (DATABASE_URL, required) and runs:

- `step`: one workflow of `count` sequential no-op steps through the SDK (bench.run's
  step_latency);
- `throughput`: `count` workflows of 10 steps started at once through the SDK (bench.run's
  throughput);
- `capacity`: RunStep alone, from a gRPC asyncio client keeping `in-flight` calls going over
  `count` workflows of 30 steps: what one coordinator sustains without the SDK's threads.

It prints the wall time and the CPU time (user + system, from /proc) that the coordinator,
this process (the SDK or client) and every Postgres process spent per operation: per step,
or per RPC for throughput (12 per workflow: start, 10 steps, finish), and for throughput
how much of the run its loop of starts took. With `--spy DIR`, py-spy (`pip install
py-spy`, not a project dependency) samples the coordinator into DIR/coordinator-<mode>.txt
(collapsed stacks; `--spy-arg` passes py-spy a flag, e.g. `--gil` to count only what holds
the GIL, i.e. the Python that runs); run this script under `py-spy record` to sample the
SDK side too.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import grpc
import psycopg

import durable
from durable.v1 import coordinator_pb2 as pb
from durable.v1 import coordinator_pb2_grpc as pb_grpc
from tests.support import Coordinator, create_database, drop_database


@durable.step(name="profile.noop")
def noop(i: int) -> int:
    return i


@durable.workflow(name="profile.sequential")
def sequential(steps: int) -> None:
    for i in range(steps):
        noop(i)


@durable.workflow(name="profile.ten_steps")
def ten_steps() -> int:
    for i in range(10):
        noop(i)
    return 10


def cpu_seconds(pid: int | str) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def postmaster_pid(database_url: str) -> int:
    """The server's postmaster, from its data directory (the server must be local)."""
    with psycopg.connect(database_url) as conn:
        row = conn.execute("SHOW data_directory").fetchone()
    assert row is not None
    return int((Path(row[0]) / "postmaster.pid").read_text().split()[0])


def postgres_cpu_seconds(postmaster: int) -> float:
    """CPU of the server's processes: the postmaster's children (backends, WAL writer...).
    Only this server's: other servers on the machine may come and go meanwhile."""
    total = cpu_seconds(postmaster)
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            parent = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
            if parent == postmaster:
                total += cpu_seconds(pid)
        except OSError:
            continue  # exited meanwhile
    return total


def run_steps(count: int) -> int:
    sequential(count)
    return count


# Seconds the last `throughput` run spent in its loop of starts: `start_workflow` returns
# once the start is committed, so this loop is what the run's length follows
# (bench/README.md, "Throughput").
STARTS_SECONDS = [0.0]


def run_throughput(count: int) -> int:
    began = time.perf_counter()
    handles = [durable.start_workflow(ten_steps) for _ in range(count)]
    STARTS_SECONDS[0] = time.perf_counter() - began
    for handle in handles:
        handle.result(timeout=600)
    return count * 12


async def run_capacity(address: str, workflows: int, in_flight: int) -> int:
    steps = 30
    async with grpc.aio.insecure_channel(address) as channel:
        stub = pb_grpc.CoordinatorServiceStub(channel)
        ids = [f"capacity-{uuid.uuid4().hex}" for _ in range(workflows)]
        for workflow_id in ids:
            await stub.StartWorkflow(
                pb.StartWorkflowRequest(
                    workflow_id=workflow_id, name="profile.capacity", input=pb.Payload(data=b"{}")
                )
            )
        slots = asyncio.Semaphore(in_flight)

        async def one(workflow_id: str) -> None:
            for step_id in range(1, steps + 1):
                async with slots:
                    await stub.RunStep(
                        pb.RunStepRequest(
                            workflow_id=workflow_id,
                            step_id=step_id,
                            name="n",
                            output=pb.Payload(encoding="json", data=b"1"),
                        )
                    )

        await asyncio.gather(*(one(w) for w in ids))
    return workflows * steps


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("mode", choices=["step", "throughput", "capacity"])
    parser.add_argument("--count", type=int, help="steps, workflows or workflows")
    parser.add_argument("--in-flight", type=int, default=200, help="capacity: calls at once")
    parser.add_argument("--spy", type=Path, help="sample the coordinator with py-spy into DIR")
    parser.add_argument(
        "--spy-arg",
        action="append",
        default=[],
        metavar="FLAG",
        help="an extra py-spy record flag, e.g. --spy-arg=--gil (only samples holding the GIL)",
    )
    parser.add_argument(
        "--coordinator-arg",
        action="append",
        default=[],
        metavar="FLAG",
        help="an extra coordinator flag, e.g. --coordinator-arg=--no-group-commit",
    )
    args = parser.parse_args()
    server_url = os.environ.get("DATABASE_URL")
    if not server_url:
        sys.exit("DATABASE_URL must name a Postgres server")
    count = args.count or {"step": 2000, "throughput": 300, "capacity": 200}[args.mode]

    database_url = create_database(server_url)
    postmaster = postmaster_pid(database_url)
    coordinator = Coordinator(database_url, *args.coordinator_arg)
    spy = None
    try:
        coordinator.wait_serving()
        durable.configure(coordinator.address)
        sequential(50)  # warm-up: connections, prepared statements
        work: Callable[[], int] = {
            "step": lambda: run_steps(count),
            "throughput": lambda: run_throughput(count),
            "capacity": lambda: asyncio.run(
                run_capacity(coordinator.address, count, args.in_flight)
            ),
        }[args.mode]
        if args.spy is not None:
            args.spy.mkdir(parents=True, exist_ok=True)
            out = args.spy / f"coordinator-{args.mode}.txt"
            py_spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
            command = [py_spy, "record", "--pid", str(coordinator.process.pid), "-o", str(out)]
            spy = subprocess.Popen(
                [*command, "--format", "raw", "--rate", "500", *args.spy_arg],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        before = (
            cpu_seconds(coordinator.process.pid),
            cpu_seconds(os.getpid()),
            postgres_cpu_seconds(postmaster),
        )
        started = time.perf_counter()
        operations = work()
        wall = time.perf_counter() - started
        after = (
            cpu_seconds(coordinator.process.pid),
            cpu_seconds(os.getpid()),
            postgres_cpu_seconds(postmaster),
        )
    finally:
        if spy is not None:
            spy.send_signal(signal.SIGINT)  # py-spy writes its file on SIGINT
            spy.wait(timeout=30)
        coordinator.stop()
        drop_database(server_url, database_url)
    per_op = [(b - a) / operations * 1000 for a, b in zip(before, after, strict=True)]
    unit = {"step": "step", "throughput": "RPC", "capacity": "RunStep"}[args.mode]
    print(
        f"{args.mode}: {operations} {unit}s in {wall:.2f} s = {operations / wall:.0f}/s, "
        f"wall {wall / operations * 1000:.3f} ms per {unit}"
    )
    print(
        f"CPU ms per {unit}: coordinator {per_op[0]:.3f}, this process {per_op[1]:.3f}, "
        f"postgres {per_op[2]:.3f}"
    )
    if args.mode == "throughput":
        starts = STARTS_SECONDS[0]
        print(
            f"the loop of starts: {starts:.2f} s of the {wall:.2f} s, "
            f"{starts / count * 1000:.2f} ms per start"
        )


if __name__ == "__main__":
    main()
