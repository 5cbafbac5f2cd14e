"""Side-by-side benchmark: this coordinator and DBOS Transact 3.4.0, same scenarios, same run.

    .venv/bin/python -m bench.run [--quick] [--scenarios a,b] [--json-out PATH]

Postgres: DATABASE_URL if set, else an embedded one (pgserver). Each side gets a fresh
database on it. Our side starts two real coordinator processes and drives them with the
Python SDK (idle_streams: with a gRPC asyncio client, bench/idle_streams.py); the DBOS
side runs bench/dbos_worker.py with bench/.venv-dbos/bin/python (a separate venv with
dbos==3.4.0; `make bench` creates it), one process per scenario. If that venv is missing
the DBOS column is skipped with a message. Prints a table with ratios and
the targets from ANCHORS.md, and writes every raw figure to bench/results/run-<time>.json.
The async_* scenarios are the same shapes through each SDK's asyncio API, every workflow a
task of one event loop: our side is bench/async_side.py, run with this venv's Python in a
process of its own per scenario and round (so its threads and RSS are its own), against
the same two coordinators. See bench/README.md for what each scenario measures.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote

from psycopg.conninfo import conninfo_to_dict

import durable
from bench import idle_streams
from coordinator.embedded import start_embedded_postgres
from durable.v1 import coordinator_pb2 as pb
from tests.support import Coordinator, create_database, drop_database, free_port

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
DBOS_PYTHON = HERE / ".venv-dbos" / "bin" / "python"
DBOS_WORKER = HERE / "dbos_worker.py"

SCENARIOS = [
    "step_latency",
    "start_result",
    "event_delivery",
    "throughput",
    "replay",
    "timeout_accuracy",
    "idle_streams",
    "async_step_latency",
    "async_start_result",
    "async_event_delivery",
    "async_throughput",
    "async_throughput_2000",
]
# The scenarios whose figures the host's noise moves most (bench/README.md): each runs
# --rounds times, the two sides alternating, and the table reports the median round.
REPEATED = [
    "step_latency",
    "start_result",
    "event_delivery",
    "throughput",
    "async_step_latency",
    "async_start_result",
    "async_event_delivery",
    "async_throughput",
]
# The async_* scenarios: our side is bench/async_side.py (the SDK's async face, every
# workflow a task of one event loop) in a process of its own per scenario and round, as
# DBOS's is bench/dbos_worker.py, so that its threads and RSS are counted alone.
ASYNC_SIDE = "bench.async_side"
# DBOS has no counterpart of an open GetEvent stream: its get_event waits in a thread of the
# process that calls it (or polls, from its client).
OURS_ONLY = {"idle_streams"}

QUICK = False


def n(full: int, quick: int) -> int:
    return quick if QUICK else full


def percentiles(samples_s: list[float]) -> dict[str, float]:
    ms = sorted(s * 1000 for s in samples_s)
    return {
        "n": len(ms),
        "median_ms": statistics.median(ms),
        "p99_ms": ms[min(len(ms) - 1, int(len(ms) * 0.99))],
        "mean_ms": statistics.fmean(ms),
        "max_ms": ms[-1],
    }


# --- our side: workflows (registered once, by name) ----------------------------------------

STEP_SAMPLES: list[float] = []
STEP_RUNS = [0]
EVENT_READY = threading.Event()
EVENT_SENT: dict[int, float] = {}


@durable.step(name="bench.noop")
def noop(i: int) -> int:
    return i


@durable.step(name="bench.counted")
def counted(i: int) -> int:
    STEP_RUNS[0] += 1
    return i


@durable.workflow(name="bench.sequential")
def sequential(steps: int) -> None:
    for i in range(steps):
        start = time.perf_counter()
        noop(i)
        STEP_SAMPLES.append(time.perf_counter() - start)


@durable.workflow(name="bench.one_step")
def one_step() -> int:
    return noop(1)


@durable.workflow(name="bench.ten_steps")
def ten_steps() -> int:
    for i in range(10):
        noop(i)
    return 10


@durable.workflow(name="bench.many_steps")
def many_steps(steps: int) -> int:
    for i in range(steps):
        counted(i)
    return steps


@durable.workflow(name="bench.publisher")
def publisher(rounds: int) -> None:
    for i in range(rounds):
        if not EVENT_READY.wait(timeout=30):
            raise RuntimeError("reader never got ready")
        EVENT_READY.clear()
        time.sleep(0.005)  # let the reader's GetEvent reach the coordinator and wait
        EVENT_SENT[i] = time.perf_counter()
        durable.set_event(f"k{i}", i)


# --- our side: scenarios -------------------------------------------------------------------


def replay_time(address: str, steps: int) -> float:
    """Seconds for StartWorkflow to resume a PENDING workflow whose `steps` steps are all
    recorded and return its whole history: the coordinator's part of a replay."""
    client = durable.Client(address)
    started = client.start_workflow("", "bench.replay", pb.Payload(encoding="json", data=b"{}"))
    workflow_id = started.workflow.workflow_id
    for i in range(1, steps + 1):
        client.run_step(
            pb.RunStepRequest(
                workflow_id=workflow_id, step_id=i, name="noop", output=pb.Payload(data=b"1")
            )
        )
    start = time.perf_counter()
    again = client.start_workflow(workflow_id, "bench.replay", pb.Payload(data=b"{}"))
    history = client.history(again)
    elapsed = time.perf_counter() - start
    if len(history) != steps:
        raise RuntimeError(f"history of {len(history)} steps, expected {steps}")
    client.close()
    return elapsed


class Ours:
    def __init__(self, a: Coordinator, b: Coordinator, metrics_port: int, server_url: str) -> None:
        self.a, self.b = a, b
        self.metrics_port = metrics_port
        self.server_url = server_url
        durable.configure(a.address)

    def step_latency(self) -> dict[str, Any]:
        sequential(20)  # warm-up: connections, prepared statements
        STEP_SAMPLES.clear()
        sequential(100)
        return {"samples_s": list(STEP_SAMPLES)}

    def start_result(self) -> dict[str, Any]:
        for _ in range(5):
            durable.start_workflow(one_step).result(timeout=10)
        samples = []
        for _ in range(n(200, 40)):
            start = time.perf_counter()
            durable.start_workflow(one_step).result(timeout=10)
            samples.append(time.perf_counter() - start)
        return {"samples_s": samples}

    def _delivery(self, reader: durable.Client) -> list[float]:
        rounds = n(200, 40)
        workflow_id = f"events-{uuid.uuid4().hex}"
        with durable.set_workflow_id(workflow_id):
            handle = durable.start_workflow(publisher, rounds)
        samples = []
        for i in range(rounds):
            EVENT_READY.set()
            value = durable.get_event(workflow_id, f"k{i}", timeout=10, client=reader)
            arrived = time.perf_counter()
            if value != i:
                raise RuntimeError(f"round {i}: got {value!r}")
            samples.append(arrived - EVENT_SENT[i])
        handle.result(timeout=30)
        return samples[1:]  # the first round includes setting up the channel

    def event_delivery(self) -> dict[str, Any]:
        same = self._delivery(durable.Client(self.a.address))
        other = durable.Client(self.b.address)
        across = self._delivery(other)
        other.close()
        return {"samples_s": same, "across_coordinators_samples_s": across}

    def throughput(self) -> dict[str, Any]:
        workflows = n(200, 50)
        durable.start_workflow(ten_steps).result(timeout=10)  # warm-up
        start = time.perf_counter()
        handles = [durable.start_workflow(ten_steps) for _ in range(workflows)]
        for handle in handles:
            handle.result(timeout=300)
        elapsed = time.perf_counter() - start
        return {"workflows": workflows, "steps": workflows * 10, "elapsed_s": elapsed}

    def replay(self) -> dict[str, Any]:
        steps = 1000
        client = durable.Client(self.a.address)
        samples = []
        for _ in range(n(5, 2)):
            # A PENDING workflow with all its steps recorded, as if its process died after
            # the last one: record them over the wire, then run the workflow with its ID.
            workflow_id = f"replay-{uuid.uuid4().hex}"
            data = json.dumps({"args": [steps], "kwargs": {}}).encode()
            client.start_workflow(
                workflow_id, "bench.many_steps", pb.Payload(encoding="json", data=data)
            )
            for i in range(1, steps + 1):
                client.run_step(
                    pb.RunStepRequest(
                        workflow_id=workflow_id,
                        step_id=i,
                        name="bench.counted",
                        output=pb.Payload(encoding="json", data=str(i - 1).encode()),
                    )
                )
            STEP_RUNS[0] = 0
            start = time.perf_counter()
            with durable.set_workflow_id(workflow_id):
                result = many_steps(steps)
            samples.append(time.perf_counter() - start)
            if result != steps or STEP_RUNS[0] != 0:
                raise RuntimeError(f"replay ran {STEP_RUNS[0]} steps again, result {result!r}")
        client.close()
        # The coordinator's part alone: StartWorkflow on the PENDING workflow returning
        # its whole history.
        rpc = [replay_time(self.a.address, steps) for _ in range(n(5, 2))]
        return {"samples_s": samples, "start_workflow_rpc_s": rpc, "steps": steps}

    def timeout_accuracy(self) -> dict[str, Any]:
        errors = []
        for _ in range(n(10, 3)):
            start = time.perf_counter()
            value = durable.get_event(f"missing-{uuid.uuid4().hex}", "nothing", timeout=1)
            errors.append(time.perf_counter() - start - 1.0)
            if value is not None:
                raise RuntimeError(f"got {value!r}")
        return {"errors_s": errors}

    def idle_streams(self) -> dict[str, Any]:
        target = idle_streams.Target(
            address=self.a.address,
            pid=self.a.process.pid,
            metrics_url=f"http://127.0.0.1:{self.metrics_port}/metrics",
            database=str(conninfo_to_dict(self.a.database_url)["dbname"]),
            server_url=self.server_url,
        )
        return idle_streams.run(target, n(10_000, 2_000), window_seconds=5.0 if QUICK else 10.0)


# --- our side of the async_* scenarios ------------------------------------------------------


def run_async_side(scenario: str, a: str, b: str) -> dict[str, Any]:
    """Our side of an async_* scenario: bench/async_side.py in a process of its own
    (this venv's Python), against coordinators `a` and `b`."""
    args = [sys.executable, "-m", ASYNC_SIDE, scenario, a, b]
    if QUICK:
        args.append("--quick")
    done = subprocess.run(args, capture_output=True, text=True, timeout=900, cwd=HERE.parent)
    for line in done.stdout.splitlines():
        if line.startswith("BENCH_RESULT "):
            result: dict[str, Any] = json.loads(line.removeprefix("BENCH_RESULT "))
            return result
    raise RuntimeError(
        f"async side for {scenario} failed (exit {done.returncode}):\n{done.stderr[-2000:]}"
    )


# --- the DBOS side -------------------------------------------------------------------------


def sqlalchemy_url(conninfo: str) -> str:
    """A postgresql:// URL (what DBOS's system_database_url takes) for a libpq conninfo."""
    parts = conninfo_to_dict(conninfo)
    user = quote(str(parts.get("user", "postgres")), safe="")
    password = parts.get("password")
    auth = user + (f":{quote(str(password), safe='')}" if password else "")
    host = str(parts.get("host", "localhost"))
    port = str(parts.get("port", "5432"))
    dbname = quote(str(parts["dbname"]), safe="")
    if host.startswith("/"):  # a Unix socket directory (the embedded Postgres)
        return f"postgresql://{auth}@/{dbname}?host={quote(host, safe='')}&port={port}"
    return f"postgresql://{auth}@{host}:{port}/{dbname}"


def dbos_unavailable() -> str | None:
    if not DBOS_PYTHON.exists():
        return (
            f"{DBOS_PYTHON} not found: create it with `make bench` or "
            f"`python3 -m venv bench/.venv-dbos && bench/.venv-dbos/bin/pip install dbos==3.4.0`"
        )
    check = subprocess.run(
        [str(DBOS_PYTHON), "-c", "import importlib.metadata as m; print(m.version('dbos'))"],
        capture_output=True,
        text=True,
    )
    if check.returncode != 0 or check.stdout.strip() != "3.4.0":
        return f"dbos 3.4.0 is not importable from {DBOS_PYTHON}: {check.stderr.strip()[-300:]}"
    return None


def run_dbos(scenario: str, database_url: str) -> dict[str, Any]:
    args = [str(DBOS_PYTHON), str(DBOS_WORKER), scenario, database_url]
    if QUICK:
        args.append("--quick")
    done = subprocess.run(args, capture_output=True, text=True, timeout=900, cwd=HERE)
    for line in done.stdout.splitlines():
        if line.startswith("BENCH_RESULT "):
            result: dict[str, Any] = json.loads(line.removeprefix("BENCH_RESULT "))
            return result
    raise RuntimeError(
        f"DBOS worker for {scenario} failed (exit {done.returncode}):\n{done.stderr[-2000:]}"
    )


# --- summary -------------------------------------------------------------------------------

# (row, result key, kind, target from ANCHORS.md)
ROWS: dict[str, list[tuple[str, str, str, str]]] = {
    "step_latency": [("per step (100 sequential)", "samples_s", "latency", "DBOS/ours >= 3")],
    "start_result": [("1-step workflow start->result", "samples_s", "latency", "-")],
    "event_delivery": [
        ("set_event->get_event, same", "samples_s", "latency", "p50<=2, p99<=10 ms"),
        (
            "set_event->get_event, across",
            "across_coordinators_samples_s",
            "latency",
            "p50<=2, p99<=10 ms",
        ),
    ],
    "throughput": [("concurrent workflows x 10 steps", "", "throughput", "ours/DBOS >= 8")],
    "replay": [
        ("replay 1000 steps", "samples_s", "latency", "<=50 ms"),
        ("  (StartWorkflow RPC only)", "start_workflow_rpc_s", "latency", "-"),
    ],
    "timeout_accuracy": [("get_event 1 s timeout error", "errors_s", "error", "+-20 ms")],
    "idle_streams": [
        ("idle GetEvent streams: RSS", "rss_mib", "MiB", "<= 1024 MiB at 10000"),
        ("  RSS per stream", "rss_per_stream_kib", "KiB", "-"),
        ("  DB xacts/s, no streams", "before.xact_per_s", "xact/s", "-"),
        (
            "  DB xacts/s, streams open",
            "with_streams.xact_per_s",
            "xact/s",
            "no per-stream polling",
        ),
        ("  set_event wakes 1 of them", "wake_one_s", "value_ms", "-"),
    ],
    "async_step_latency": [
        ("async: per step (100 sequential)", "samples_s", "latency", "<=1.0 ms; DBOS/ours >= 4")
    ],
    "async_start_result": [
        ("async: 1-step start->result", "samples_s", "latency", "<=3.5 ms; DBOS/ours >= 2")
    ],
    "async_event_delivery": [
        ("async: set->get_event, same", "samples_s", "latency", "p50<=2, p99<=10 ms"),
        (
            "async: set->get_event, across",
            "across_coordinators_samples_s",
            "latency",
            "p50<=2, p99<=10 ms",
        ),
    ],
    "async_throughput": [("async: workflows x 10 steps", "", "throughput", "ours/DBOS >= 8")],
    "async_throughput_2000": [
        ("async: workflows x 10 steps", "", "throughput", "ours/DBOS >= 8"),
        ("  OS threads, peak", "threads_peak", "threads", "-"),
        ("  OS threads per 1000 workflows", "threads_peak", "per_1000", "<= 1 (ours)"),
        ("  RSS peak", "rss_peak_mib", "MiB", "-"),
    ],
}
# Rows of one value rather than samples: kind -> (unit printed, scale).
VALUES = {"MiB": ("MiB", 1.0), "KiB": ("KiB", 1.0), "xact/s": ("xact/s", 1.0)}
VALUES["value_ms"] = ("ms", 1000.0)
VALUES["threads"] = ("threads", 1.0)


def figures(result: dict[str, Any] | None, key: str, kind: str) -> dict[str, float] | None:
    if result is None:
        return None
    if kind == "throughput":
        rate = result["steps"] / result["elapsed_s"]
        return {"median": rate, "p99": rate}
    if kind == "per_1000":  # a count per 1,000 of the scenario's workflows
        per = float(result[key]) / (result["workflows"] / 1000)
        return {"median": per, "p99": per}
    if kind in VALUES:
        value: Any = result
        for part in key.split("."):  # "before.xact_per_s": a nested figure
            value = value[part]
        scaled = float(value) * VALUES[kind][1]
        return {"median": scaled, "p99": scaled}
    if key not in result:
        return None
    summary = percentiles(result[key])
    if kind == "error":  # the signed median error, and the largest error either way
        return {"median": summary["median_ms"], "p99": max(abs(e) * 1000 for e in result[key])}
    return {"median": summary["median_ms"], "p99": summary["p99_ms"]}


def unit(kind: str) -> str:
    if kind in VALUES:
        return VALUES[kind][0]
    if kind == "per_1000":
        return "/1000 wf"
    return {"latency": "ms", "throughput": "steps/s", "error": "ms"}[kind]


def alternate(
    sides: dict[str, Callable[[], dict[str, Any]]], number: int
) -> list[tuple[str, Callable[[], dict[str, Any]]]]:
    """The sides in the order round `number` runs them: ours first in even rounds, DBOS
    first in odd ones, so that a host getting busier or quieter during a run does not
    always favour the same side."""
    order = list(sides.items())
    return order if number % 2 == 0 else order[::-1]


def median_round(per_round: list[dict[str, float]]) -> dict[str, float]:
    """A figure over rounds: the median of each statistic across them."""
    return {key: statistics.median(figs[key] for figs in per_round) for key in per_round[0]}


def ratio_of(kind: str, ours: dict[str, float], dbos: dict[str, float]) -> float | None:
    if kind == "latency":
        return dbos["median"] / ours["median"]
    if kind == "throughput":
        return ours["median"] / dbos["median"]
    return None


def table(results: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    rows = []
    for scenario, measured in results.items():
        rounds: list[dict[str, Any]] = measured["rounds"]
        first = rounds[0]["ours"]
        for label, key, kind, target in ROWS[scenario]:
            pairs = [
                (figures(r.get("ours"), key, kind), figures(r.get("dbos"), key, kind))
                for r in rounds
            ]
            ours_rounds = [ours for ours, _ in pairs if ours]
            dbos_rounds = [dbos for _, dbos in pairs if dbos]
            # Each ratio from the two sides of one round.
            ratios = [
                ratio
                for ours, dbos in pairs
                if ours and dbos and (ratio := ratio_of(kind, ours, dbos)) is not None
            ]
            if kind == "throughput":
                prefix = "async: " if scenario.startswith("async_") else ""
                label = f"{prefix}{first['workflows']} workflows x 10 steps"
            if key == "rss_mib":
                label = f"{first['streams']} idle GetEvent streams: RSS"
            rows.append(
                {
                    "scenario": label,
                    "unit": unit(kind),
                    "rounds": len(rounds),
                    "ours": median_round(ours_rounds) if ours_rounds else None,
                    "dbos": median_round(dbos_rounds) if dbos_rounds else None,
                    "ratio": statistics.median(ratios) if ratios else None,
                    "ratio_rounds": ratios,
                    "target": target,
                }
            )
    return rows


def print_table(rows: list[dict[str, Any]]) -> None:
    def cell(figs: dict[str, float] | None, unit: str) -> str:
        if figs is None:
            return "n/a"
        if unit == "steps/s":
            return f"{figs['median']:.0f}"
        if figs["median"] == figs["p99"]:  # one value
            return f"{figs['median']:.2f}"
        return f"{figs['median']:.2f} / {figs['p99']:.2f}"

    def spread(ratios: list[float]) -> str:
        if len(ratios) < 2:
            return "-"
        return f"{min(ratios):.1f}-{max(ratios):.1f}x"

    header = f"{'scenario':<32} {'unit':<8} {'ours med/p99':>17} {'DBOS med/p99':>17}"
    print(f"{header} {'ratio':>7} {'rounds':>10}  target")
    for row in rows:
        ratio = f"{row['ratio']:.1f}x" if row["ratio"] is not None else "-"
        print(
            f"{row['scenario']:<32} {row['unit']:<8} {cell(row['ours'], row['unit']):>17} "
            f"{cell(row['dbos'], row['unit']):>17} {ratio:>7} {spread(row['ratio_rounds']):>10}"
            f"  {row['target']}"
        )
    print(
        "ratio: DBOS/ours medians for latency, ours/DBOS for throughput, the median of the"
        " rounds' ratios (rounds: their range); figures: the median across rounds;"
        " timeout error: signed median / largest |error|"
    )


def main() -> None:
    global QUICK
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="fewer rounds (about a minute)")
    parser.add_argument("--scenarios", default=",".join(SCENARIOS), help="comma-separated")
    parser.add_argument("--json-out", type=Path, help="default: bench/results/run-<time>.json")
    parser.add_argument("--no-dbos", action="store_true", help="measure our side only")
    parser.add_argument(
        "--rounds",
        type=int,
        default=3,
        help=f"rounds of {', '.join(REPEATED)}, the sides alternating (default 3)",
    )
    parser.add_argument(
        "--coordinator-arg",
        action="append",
        default=[],
        metavar="FLAG",
        help="an extra flag for our coordinators, e.g. --coordinator-arg=--no-group-commit",
    )
    args = parser.parse_args()
    QUICK = args.quick
    if args.rounds < 1:
        parser.error("--rounds must be at least 1")
    chosen = [s.strip() for s in args.scenarios.split(",") if s.strip()]
    unknown = set(chosen) - set(SCENARIOS)
    if unknown:
        parser.error(f"unknown scenarios {sorted(unknown)}; choose from {SCENARIOS}")
    chosen = [s for s in SCENARIOS if s in chosen]

    skip_dbos = "--no-dbos given" if args.no_dbos else dbos_unavailable()
    if skip_dbos:
        print(f"DBOS column skipped: {skip_dbos}", file=sys.stderr)

    server_url = os.environ.get("DATABASE_URL")
    embedded = None
    if not server_url:
        data_dir = Path(tempfile.mkdtemp(prefix="durable-bench-")) / "pgdata"
        embedded = start_embedded_postgres(data_dir, temporary=True)
        server_url = embedded.url
    ours_db = create_database(server_url)
    dbos_db = create_database(server_url)
    metrics_port = free_port()
    extra = args.coordinator_arg
    a = Coordinator(ours_db, "--metrics-listen", f"127.0.0.1:{metrics_port}", *extra)
    b = Coordinator(ours_db, *extra)
    results: dict[str, dict[str, Any]] = {}
    try:
        a.wait_serving()
        b.wait_serving()
        ours = Ours(a, b, metrics_port, server_url)
        for scenario in chosen:
            run: Callable[[], dict[str, Any]]
            if scenario.startswith("async_"):
                run = functools.partial(run_async_side, scenario, a.address, b.address)
            else:
                run = getattr(ours, scenario)
            sides: dict[str, Callable[[], dict[str, Any]]] = {"ours": run}
            if not skip_dbos and scenario not in OURS_ONLY:
                sides["dbos"] = functools.partial(run_dbos, scenario, sqlalchemy_url(dbos_db))
            rounds = args.rounds if scenario in REPEATED else 1
            results[scenario] = {"rounds": []}
            for number in range(rounds):
                progress = f"running {scenario} ({number + 1}/{rounds}) ..."
                print(progress, file=sys.stderr, flush=True)
                results[scenario]["rounds"].append(
                    {side: measure() for side, measure in alternate(sides, number)}
                )
    finally:
        a.stop()
        b.stop()
        drop_database(server_url, ours_db)
        drop_database(server_url, dbos_db)
        if embedded is not None:
            embedded.cleanup()

    rows = table(results)
    print_table(rows)
    out = args.json_out or RESULTS / f"run-{time.strftime('%Y%m%dT%H%M%S')}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    report = {
        "quick": QUICK,
        "postgres": "DATABASE_URL" if embedded is None else "embedded (pgserver)",
        "dbos_skipped": skip_dbos,
        "cpu_count": os.cpu_count(),
        "coordinator_args": extra,
        "rounds": args.rounds,
        "table": rows,
        "raw": results,
    }
    out.write_text(json.dumps(report, indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
