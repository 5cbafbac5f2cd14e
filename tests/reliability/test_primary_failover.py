"""Postgres primary failover under load: a primary and a streaming standby (replication.py),
two coordinators on one multi-host URL (primary first, target_session_attrs=read-write),
SDK clients running workflows with side effects and a follower on every workflow's
"progress" event, a worker serving a queue whose workflows wait for messages sent across
the fault (mailbox.py), and raw writers recording steps as fast as they are acknowledged.

Mid-run the primary's postmaster is SIGKILLed and, PROMOTE_AFTER seconds later (an HA
manager's detection time), the standby is promoted. Once both coordinators serve again,
the old primary is started again as it was (diverged, on the old timeline, first in the
URL) and every coordinator connection is terminated, so each must reconnect past it; and
a third coordinator starts, with no timeline seen yet, on the same URL.

With synchronous replication nothing acknowledged may be lost or doubled, and the old
primary must get no write. With asynchronous replication the same run measures what is
lost (`make reliability` and the report; docs/operations.md).
"""

from __future__ import annotations

import json
import re
import subprocess
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import psycopg
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from tests.reliability.checks import (
    check_watches,
    create_side_effects_table,
    kill_points,
    recorded_steps,
    verify,
    wait_for_progress,
)
from tests.reliability.processes import FlowProcess, Outcomes, all_running
from tests.reliability.replication import ReplicatedPostgres
from tests.reliability.report import Report
from tests.reliability.scale import MODE, SCALE, SEED, TEST_TIMEOUT, rng
from tests.reliability.writer import AckedWriter
from tests.support import Coordinator, LineProcess, create_database, eventually, start_pending

PREFIX = "promote"
MAILBOX = "relay"  # not "promote-...": verify() reads PREFIX-%
STEPS = 4
PAUSE = 0.1
# Seconds between the kill and the promotion: what Patroni or a managed service takes to
# decide the primary is gone (theirs is 10-30 s; the coordinator's part is what follows).
PROMOTE_AFTER = 2.0
REFUSED_OLD = "refusing database connection: .*a diverged old primary"
# With asynchronous replication: how long the clients get to finish after the failover.
ASYNC_PATIENCE = 60.0 if MODE == "full" else 20.0


def serving(coordinator: Coordinator) -> bool:
    stub = health_pb2_grpc.HealthStub(coordinator.channel)
    try:
        reply = stub.Check(health_pb2.HealthCheckRequest(), timeout=1)
    except grpc.RpcError:
        return False
    return bool(reply.status == health_pb2.HealthCheckResponse.SERVING)


def with_hosts(url: str, *ports: int) -> str:
    """`url` naming 127.0.0.1 on `ports`, in that order, read-write only."""
    hosts = ",".join("127.0.0.1" for _ in ports)
    return make_conninfo(
        url,
        host=hosts,
        port=",".join(str(p) for p in ports),
        target_session_attrs="read-write",
    )


def table_writes(url: str) -> int:
    """Rows inserted, updated or deleted in the durable schema since the server started
    (statistics start afresh after a crash)."""
    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute(
            "SELECT coalesce(sum(n_tup_ins + n_tup_upd + n_tup_del), 0) FROM pg_stat_user_tables"
            " WHERE schemaname = 'durable'"
        ).fetchone()
    assert row is not None
    return int(row[0])


class MailboxProcess(LineProcess):
    """One `python -m tests.reliability.mailbox` process: a queue, messages, a worker."""

    def __init__(self, target: str, database_url: str, prefix: str, count: int) -> None:
        self.outcomes = Outcomes()
        log = Path(tempfile.gettempdir()) / f"reliability-mailbox-{uuid.uuid4().hex[:8]}.log"
        argv = ["tests.reliability.mailbox", target, database_url, prefix, str(count)]
        super().__init__("mailbox", argv, log, stdin=subprocess.DEVNULL)

    def on_line(self, line: str) -> None:
        if line.startswith("{"):
            self.outcomes.add(json.loads(line))

    def wait_done(self, timeout: float) -> Outcomes:
        self._line("done", timeout, interval=0.05)
        self.process.wait(timeout=30)
        return self.outcomes


def check_mailbox(url: str, prefix: str, count: int) -> tuple[int, int, list[str]]:
    """(lost, doubled, problems) for the mailbox workflows PREFIX-n: each finished with its
    message doubled, its one message delivered and consumed once, its step run once."""
    lost, doubled, problems = 0, 0, []
    with psycopg.connect(url) as conn:
        results: dict[str, bytes] = dict(
            conn.execute(
                "SELECT workflow_id, output_data FROM durable.workflows"
                " WHERE workflow_id LIKE %s AND status = 'SUCCESS'",
                (f"{prefix}-%",),
            ).fetchall()
        )
        messages = Counter(
            wid
            for (wid,) in conn.execute(
                "SELECT destination_id FROM durable.messages"
                " WHERE destination_id LIKE %s AND consumed_step_id IS NOT NULL",
                (f"{prefix}-%",),
            )
        )
        runs = Counter(
            wid
            for (wid,) in conn.execute(
                "SELECT workflow_id FROM side_effects WHERE workflow_id LIKE %s", (f"{prefix}-%",)
            )
        )
    for n in range(count):
        wid = f"{prefix}-{n}"
        if wid not in results or json.loads(bytes(results[wid])) != 2 * n:
            lost += 1
            problems.append(f"{wid}: result {results.get(wid)!r}")
        for seen, what in ((messages[wid], "consumed message"), (runs[wid], "step run")):
            if seen != 1:
                lost, doubled = lost + (seen == 0), doubled + max(0, seen - 1)
                problems.append(f"{wid}: {seen} x {what}")
    return lost, doubled, problems


def lost_acked(url: str, writers: list[AckedWriter]) -> int:
    lost = 0
    with psycopg.connect(url) as conn:
        for writer in writers:
            stored = {
                step_id: json.loads(bytes(data))
                for step_id, data in conn.execute(
                    "SELECT step_id, output_data FROM durable.steps WHERE workflow_id = %s",
                    (writer.workflow_id,),
                )
            }
            lost += sum(1 for s in writer.acked if stored.get(s) != s)
    return lost


@pytest.fixture(params=["sync", "async"])
def replicated(request: pytest.FixtureRequest) -> Iterator[ReplicatedPostgres]:
    rig = ReplicatedPostgres(synchronous=request.param == "sync")
    try:
        yield rig
    finally:
        rig.close()


@pytest.mark.timeout(TEST_TIMEOUT)
def test_nothing_acknowledged_is_lost_when_the_primary_fails_over(
    replicated: ReplicatedPostgres, report: Report
) -> None:
    rig = replicated
    mode = "synchronous" if rig.synchronous else "asynchronous"
    on_primary = create_database(rig.primary.url)
    name = conninfo_to_dict(on_primary)["dbname"]
    # Coordinators: the old primary first, where a careless reconnect would land.
    coordinator_url = make_conninfo(rig.url, dbname=name)
    # The workflows' own side effects (user code, unguarded): the standby first, so after
    # the failover they land on the new primary and not on the restarted old one.
    side_url = with_hosts(on_primary, rig.standby.port, rig.primary.port)
    new_primary = make_conninfo(rig.standby.url, dbname=name)
    create_side_effects_table(on_primary)

    count = SCALE.promotion_workflows
    (point,) = kill_points(rng(f"primary failover {mode}"), count * STEPS, 1)
    print(f"\nseed {SEED}: {mode} replication, kill the primary at recorded step {point}")
    coordinators = [Coordinator(coordinator_url), Coordinator(coordinator_url)]
    writers: list[AckedWriter] = []
    driver = mailbox = None
    try:
        for coordinator in coordinators:
            coordinator.wait_serving()
        writers = [AckedWriter(c.stub, f"acked-{k}") for k, c in enumerate(coordinators)]
        for writer in writers:
            writer.start()
        target = "ipv4:" + ",".join(f"127.0.0.1:{c.port}" for c in coordinators)
        driver = FlowProcess(
            "drive",
            target,
            side_url,
            PREFIX,
            0,
            count,
            *("--steps", str(STEPS), "--pause", str(PAUSE), "--threads", "16"),
            *("--watch-every", "1"),
            name="driver",
        )
        # Sends, recvs and a queue across the failover, from a worker of its own.
        mailbox = MailboxProcess(target, side_url, MAILBOX, count)
        started = time.monotonic()
        wait_for_progress(on_primary, PREFIX, point, all_running([driver]))
        with psycopg.connect(on_primary, autocommit=True) as conn:
            row = conn.execute(
                "SELECT count(*) FROM durable.workflows WHERE (workflow_id LIKE %s"
                " OR workflow_id LIKE %s) AND status IN ('PENDING', 'ENQUEUED')",
                (f"{PREFIX}-%", f"{MAILBOX}-%"),
            ).fetchone()
            in_flight = row[0] if row else 0
            steps_before = recorded_steps(conn, PREFIX)

        killed, gone = rig.kill_primary()
        time.sleep(PROMOTE_AFTER)  # the HA manager's detection time, deliberately
        rig.promote()
        promoted = time.monotonic()
        eventually(lambda: all(w.acked_since(promoted) for w in writers), timeout=60)
        # The first write acknowledged once nothing of the old primary was left to answer.
        first_ack = min(t for w in writers if (t := w.acked_since(gone)) is not None)
        eventually(lambda: all(serving(c) for c in coordinators), timeout=30)
        back_serving = time.monotonic() - promoted

        # The old primary comes back as it was, first in the coordinators' URL, and every
        # coordinator connection is cut so that each must reconnect past it.
        rig.restart_old_primary()
        old_primary = make_conninfo(rig.primary.url, dbname=name)
        with psycopg.connect(new_primary, autocommit=True) as conn:
            conn.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                " WHERE application_name = 'durable-coordinator'"
            )
        resumed = time.monotonic()
        eventually(lambda: all(w.acked_since(resumed) for w in writers), timeout=60)
        # A coordinator started now has seen no timeline of its own: it must still pass
        # over the old primary, first in its URL, to the new one.
        late = Coordinator(coordinator_url)
        coordinators.append(late)
        late.wait_serving(timeout=60)
        late_workflow = start_pending(late.stub)
        if rig.synchronous:
            outcomes = driver.wait_done(timeout=300)
            mail = mailbox.wait_done(timeout=300)
        else:
            # What asynchronous replication lost may leave a follower waiting for a value
            # that will never come (its workflow's last commits are gone): bounded here.
            try:
                outcomes = driver.wait_done(timeout=ASYNC_PATIENCE)
            except AssertionError:
                outcomes = driver.outcomes
            try:
                mail = mailbox.wait_done(timeout=ASYNC_PATIENCE)
            except AssertionError:
                mail = mailbox.outcomes
        elapsed = time.monotonic() - started
    finally:
        for writer in writers:
            writer.stop()
        for process in (driver, mailbox):
            if process is not None:
                process.close()
        for coordinator in coordinators:
            coordinator.stop()

    refusals = sum(len(re.findall(REFUSED_OLD, c.log())) for c in coordinators)
    late_refusals = len(re.findall(REFUSED_OLD, coordinators[-1].log()))
    with psycopg.connect(new_primary) as conn:
        late_landed = conn.execute(
            "SELECT count(*) FROM durable.workflows WHERE workflow_id = %s", (late_workflow,)
        ).fetchone() == (1,)
    writes_on_old = table_writes(old_primary)
    verdict = verify(new_primary, PREFIX, range(count), STEPS)
    mail_lost, mail_doubled, mail_problems = check_mailbox(new_primary, MAILBOX, count)
    lost_writes = lost_acked(new_primary, writers)
    watches: dict[str, Any] = outcomes.watches
    codes = sum((w.codes for w in writers), Counter[str]())
    figures: dict[str, Any] = dict(
        replication=mode,
        workflows=count,
        faults_injected=1,
        workflows_in_flight_at_kill=in_flight,
        steps_recorded_at_kill=steps_before,
        seconds_kill_to_promotion=PROMOTE_AFTER,
        seconds_kill_to_primary_gone=gone - killed,
        seconds_kill_to_first_ack=first_ack - killed,
        seconds_promotion_to_first_ack=first_ack - promoted,
        seconds_promotion_to_serving=back_serving,
        acknowledged_writes=sum(len(w.acked) for w in writers),
        writer_codes=dict(codes),
        old_primary_refusals=refusals,
        late_coordinator_refusals=late_refusals,
        writes_on_old_primary=writes_on_old,
        workflow_errors=len(outcomes.errors),
        workflows_unfinished_by_client=count - len(outcomes.results) - len(outcomes.errors),
        followers_not_done=count - len(watches),
        records_checked=verdict.records_checked,
        messages=count,
        mailbox_errors=len(mail.errors),
        lost=verdict.lost + lost_writes + mail_lost,
        lost_acknowledged_writes=lost_writes,
        doubled=verdict.doubled + mail_doubled,
        wrong_results=len(verdict.wrong) + len(mail_problems),
        seconds=elapsed,
    )
    if not rig.synchronous:
        # What asynchronous replication loses is measured and reported, not asserted.
        report.record(
            "primary failover, asynchronous replication",
            first_problems=verdict.wrong[:4],
            **figures,
        )
        assert writes_on_old == 0 and late_landed
        return
    watched = check_watches(watches, STEPS)
    report.record("primary failover, synchronous replication", watched_values=watched, **figures)
    assert not outcomes.errors, dict(list(outcomes.errors.items())[:5])
    assert lost_writes == 0
    verdict.assert_clean()
    assert not mail.errors, dict(list(mail.errors.items())[:5])
    assert not mail_problems, mail_problems[:10]
    assert not any(w.unexpected for w in writers), [w.unexpected[:5] for w in writers]
    assert writes_on_old == 0, "a coordinator wrote to the diverged old primary"
    assert refusals >= len(coordinators), "the old primary was never refused"
    assert late_refusals >= 1 and late_landed, "a coordinator started late used the old primary"
    assert len(watches) == count
