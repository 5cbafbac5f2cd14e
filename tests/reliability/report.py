"""The suite's figures: each test records what it ran, injected and checked; the session
prints them as one table and writes them to reliability-report.json.

A plain module-level collector (not only a fixture), so tests outside this package such as
tests/test_fuzz.py can feed it without depending on it: nothing is printed unless the
reliability conftest is loaded.

A scenario run once per SDK face (sync and async worker or client processes) records one
section per face, titled by `for_face` and with a `face` figure; the headline then adds
the totals of each face.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from tests.reliability.scale import MODE, SEED

REPORT_PATH = Path(__file__).resolve().parents[2] / "reliability-report.json"

# Figures summed over every section into the headline.
TOTALS = ("workflows", "faults_injected", "records_checked", "lost", "doubled")


def for_face(section: str, face: str) -> str:
    """The title of a scenario's section for the processes of one SDK face."""
    return f"{section}, {face} face"


class Report:
    """Figures by section (one per test), in the order they were recorded."""

    def __init__(self) -> None:
        self.sections: dict[str, dict[str, Any]] = {}
        self.started = time.time()

    def record(self, section: str, **figures: Any) -> None:
        self.sections.setdefault(section, {}).update(figures)

    def totals(self) -> dict[str, int]:
        return _sum(self.sections.values())

    def face_totals(self) -> dict[str, dict[str, int]]:
        """Totals of the sections that name an SDK face, by face."""
        faces: dict[str, list[dict[str, Any]]] = {}
        for figures in self.sections.values():
            if "face" in figures:
                faces.setdefault(str(figures["face"]), []).append(figures)
        return {face: _sum(sections) for face, sections in faces.items()}

    def as_json(self) -> dict[str, Any]:
        return {
            "mode": MODE,
            "seed": SEED,
            "seconds": round(time.time() - self.started, 1),
            "totals": self.totals(),
            "face_totals": self.face_totals(),
            "sections": self.sections,
        }

    def write(self, path: Path = REPORT_PATH) -> None:
        path.write_text(json.dumps(self.as_json(), indent=2, sort_keys=False) + "\n")

    def lines(self) -> Iterable[str]:
        totals = self.totals()
        yield f"reliability report: mode={MODE} seed={SEED}"
        yield "  " + ", ".join(f"{name}={value}" for name, value in totals.items())
        for face, figures in self.face_totals().items():
            yield f"  {face} face: " + ", ".join(f"{k}={v}" for k, v in figures.items())
        for section, figures in self.sections.items():
            yield f"  {section}"
            width = max((len(name) for name in figures), default=0)
            for name, value in figures.items():
                yield f"    {name:<{width}}  {_show(value)}"


def _sum(sections: Iterable[dict[str, Any]]) -> dict[str, int]:
    listed = list(sections)
    return {name: sum(int(s.get(name, 0)) for s in listed) for name in TOTALS}


def _show(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.2f}"
    if isinstance(value, dict):
        return ", ".join(f"{k}={_show(v)}" for k, v in value.items()) or "-"
    if isinstance(value, list | tuple):
        return ", ".join(_show(v) for v in value) or "-"
    return str(value)


REPORT = Report()
