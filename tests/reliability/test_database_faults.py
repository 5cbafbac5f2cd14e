"""Postgres restarted (pg_ctl stop -m fast, then start) and the coordinator's connection cut
(PostgresProxy) under load: SDK client processes run workflows and raw writers record
steps as fast as they are acknowledged.

Each fault must turn health NOT_SERVING, and SERVING again within seconds of the database
coming back, with writes acknowledged again; afterwards no acknowledged write may be
missing, every workflow must have its right result, and the only errors a writer may have
seen are UNAVAILABLE or a deadline.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import partial

import grpc
import psycopg
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from tests.reliability.checks import (
    create_side_effects_table,
    kill_points,
    verify,
    wait_for_progress,
)
from tests.reliability.postgres import DedicatedPostgres
from tests.reliability.processes import FlowProcess, all_running
from tests.reliability.report import Report
from tests.reliability.scale import SCALE, SEED, TEST_TIMEOUT, rng
from tests.reliability.writer import AckedWriter
from tests.support import Coordinator, PostgresProxy, create_database, eventually

PREFIX = "dbfault"
STEPS = 4
PAUSE = 0.05
WRITERS = 2
# "Back within seconds": from the database being reachable again to SERVING and to the
# next acknowledged write.
BACK_WITHIN = 10.0


@dataclass
class Rig:
    postgres: DedicatedPostgres
    proxy: PostgresProxy
    database_url: str  # direct, for checks and side effects
    coordinator: Coordinator  # reaches the database through the proxy


@pytest.fixture(scope="module")
def rig() -> Iterator[Rig]:
    postgres = DedicatedPostgres()
    try:
        database_url = create_database(postgres.url)
        proxy = PostgresProxy(database_url)
        coordinator = Coordinator(proxy.url)
        try:
            coordinator.wait_serving()
            yield Rig(postgres, proxy, database_url, coordinator)
        finally:
            coordinator.stop()
            proxy.close()
    finally:
        postgres.close()


def health(coordinator: Coordinator) -> int:
    stub = health_pb2_grpc.HealthStub(coordinator.channel)
    try:
        reply = stub.Check(health_pb2.HealthCheckRequest(), timeout=1)
    except grpc.RpcError:
        return int(health_pb2.HealthCheckResponse.UNKNOWN)
    return int(reply.status)


def all_acked_since(writers: list[AckedWriter], moment: float) -> bool:
    return all(w.acked_since(moment) is not None for w in writers)


@pytest.mark.timeout(TEST_TIMEOUT)
def test_no_acknowledged_write_is_lost_when_postgres_restarts_or_is_cut_off(
    rig: Rig, report: Report
) -> None:
    create_side_effects_table(rig.database_url)
    count, faults = SCALE.db_workflows, SCALE.db_faults
    points = kill_points(rng("database faults"), count * STEPS, faults)
    print(f"\nseed {SEED}: database faults at recorded steps {points}")
    coordinator = rig.coordinator
    # Alternate a real restart and a cut connection.
    kinds: list[tuple[str, Callable[[], None], Callable[[], None]]] = [
        ("postgres restart", rig.postgres.stop, rig.postgres.start),
        ("connection cut", rig.proxy.cut, rig.proxy.resume),
    ]

    started = time.monotonic()
    writers = [AckedWriter(coordinator.stub, f"acked-{w}") for w in range(WRITERS)]
    for writer in writers:
        writer.start()
    driver = FlowProcess(
        "drive",
        coordinator.address,
        rig.database_url,
        PREFIX,
        0,
        count,
        "--steps",
        str(STEPS),
        "--pause",
        str(PAUSE),
        "--threads",
        "16",
        name="driver",
    )
    to_not_serving: list[float] = []
    to_serving: list[float] = []
    to_acked: list[float] = []
    injected: Counter[str] = Counter()
    try:
        for n, point in enumerate(points):
            wait_for_progress(rig.database_url, PREFIX, point, all_running([driver]))
            name, inject, restore = kinds[n % len(kinds)]
            down = time.monotonic()
            inject()
            injected[name] += 1
            eventually(
                lambda: health(coordinator) == health_pb2.HealthCheckResponse.NOT_SERVING,
                timeout=15,
            )
            to_not_serving.append(time.monotonic() - down)
            restore()
            back = time.monotonic()
            eventually(
                lambda: health(coordinator) == health_pb2.HealthCheckResponse.SERVING,
                timeout=30,
            )
            to_serving.append(time.monotonic() - back)
            eventually(partial(all_acked_since, writers, back), timeout=30)
            to_acked.append(max(w.acked_since(back) or 0.0 for w in writers) - back)
        outcomes = driver.wait_done(timeout=300)
    finally:
        for writer in writers:
            writer.stop()
        driver.close()
    elapsed = time.monotonic() - started

    assert not outcomes.errors, dict(list(outcomes.errors.items())[:5])
    verdict = verify(rig.database_url, PREFIX, range(count), STEPS)
    lost_acked = 0
    with psycopg.connect(rig.database_url) as conn:
        for writer in writers:
            stored = {
                step_id: json.loads(bytes(data))
                for step_id, data in conn.execute(
                    "SELECT step_id, output_data FROM durable.steps WHERE workflow_id = %s",
                    (writer.workflow_id,),
                )
            }
            lost_acked += sum(1 for s in writer.acked if stored.get(s) != s)
    codes = sum((w.codes for w in writers), Counter[str]())
    acked = sum(len(w.acked) for w in writers)
    report.record(
        "database faults (Postgres restart, connection cut)",
        workflows=count,
        faults_injected=sum(injected.values()),
        faults=dict(injected),
        fault_points_recorded_steps=points,
        acknowledged_writes=acked,
        max_seconds_to_not_serving=max(to_not_serving),
        max_seconds_back_to_serving=max(to_serving),
        max_seconds_to_next_ack=max(to_acked),
        writer_codes=dict(codes),
        records_checked=verdict.records_checked + acked,
        lost=verdict.lost + lost_acked,
        doubled=verdict.doubled,
        wrong_results=len(verdict.wrong),
        seconds=elapsed,
    )
    assert lost_acked == 0
    verdict.assert_clean()
    assert not any(w.unexpected for w in writers), [w.unexpected[:5] for w in writers]
    assert max(to_serving) < BACK_WITHIN and max(to_acked) < BACK_WITHIN, (to_serving, to_acked)
    assert coordinator.process.poll() is None
