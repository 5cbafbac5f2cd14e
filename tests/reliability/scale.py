"""How hard the reliability suite pushes: CI figures by default, the issue's full figures
with DURABLE_RELIABILITY=full (`make reliability`).

The seed of every random choice (kill moments, which worker dies) comes from
DURABLE_RELIABILITY_SEED, or is drawn and printed, so a failing run can be replayed.
"""

from __future__ import annotations

import os
import random
from dataclasses import dataclass

MODE = "full" if os.environ.get("DURABLE_RELIABILITY", "").lower() == "full" else "ci"


@dataclass(frozen=True)
class Scale:
    # Coordinator crash: workflows run by SDK client processes while it is SIGKILLed.
    crash_workflows: int
    crash_drivers: int
    crash_kills: int
    # Worker crash: workflows started by worker processes, some of which are SIGKILLed.
    worker_workflows: int
    worker_processes: int
    worker_kills: int
    # Database faults: Postgres restarts and connection cuts under load.
    db_workflows: int
    db_faults: int
    # Replica failover: coordinators killed in turn under clients that fail over.
    failover_workflows: int
    failover_kills: int
    # Primary failover: Postgres primary SIGKILLed, its standby promoted, under load.
    promotion_workflows: int
    # Load: concurrent GetEvent streams plus steady step traffic.
    streams: int
    load_seconds: float


CI = Scale(
    crash_workflows=150,
    crash_drivers=2,
    crash_kills=3,
    worker_workflows=60,
    worker_processes=3,
    worker_kills=1,
    db_workflows=60,
    db_faults=2,
    failover_workflows=40,
    failover_kills=2,
    promotion_workflows=60,
    streams=1000,
    load_seconds=10.0,
)

FULL = Scale(
    crash_workflows=1000,
    crash_drivers=4,
    crash_kills=8,
    worker_workflows=300,
    worker_processes=4,
    worker_kills=3,
    db_workflows=300,
    db_faults=6,
    failover_workflows=200,
    failover_kills=4,
    promotion_workflows=200,
    streams=5000,
    load_seconds=60.0,
)

SCALE = FULL if MODE == "full" else CI


def seed() -> int:
    """The suite's random seed: DURABLE_RELIABILITY_SEED, or a fresh one."""
    chosen = os.environ.get("DURABLE_RELIABILITY_SEED")
    return int(chosen) if chosen else random.SystemRandom().randrange(2**32)


SEED = seed()


def rng(name: str) -> random.Random:
    """A random generator for one test, derived from the suite's seed and the test's name
    (so one test's draws do not depend on which other tests ran)."""
    return random.Random(f"{SEED}:{name}")


# Per-test pytest timeout (seconds): the full figures take minutes, not the default 120 s.
TEST_TIMEOUT = 900 if MODE == "full" else 180
