"""The SDK ships alone too (sdk/pyproject.toml): a service using it installs gRPC and
protobuf, not the coordinator's Postgres, metrics and logging packages."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
COORDINATOR_ONLY = ("psycopg", "pgserver", "prometheus", "python-json-logger", "grpcio-health")


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    # Built from a copy: setuptools leaves build/ and egg-info/ beside the sources.
    source = tmp_path_factory.mktemp("sdk") / "sdk"
    shutil.copytree(ROOT / "sdk", source, ignore=shutil.ignore_patterns("__pycache__"))
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "-w", str(out), "."],
        cwd=source,
        check=True,
        timeout=300,
    )
    (built,) = out.glob("durable_sdk-*.whl")
    return built


def test_the_sdk_wheel_holds_every_sdk_module_and_no_coordinator(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    shipped = {name for name in names if name.endswith((".py", ".pyi", "py.typed"))}
    sources = {
        path.relative_to(ROOT / "sdk").as_posix()
        for path in (ROOT / "sdk" / "durable").rglob("*")
        if path.suffix in (".py", ".pyi") or path.name == "py.typed"
    }
    assert sources <= shipped
    assert not any(name.startswith("coordinator/") for name in names)


def test_the_sdk_wheel_needs_none_of_the_coordinators_dependencies(wheel: Path) -> None:
    archive = zipfile.ZipFile(wheel)
    (metadata,) = (name for name in archive.namelist() if name.endswith("METADATA"))
    requires = [
        line.removeprefix("Requires-Dist: ").lower()
        for line in archive.read(metadata).decode().splitlines()
        if line.startswith("Requires-Dist:")
    ]
    assert any(line.startswith("grpcio") for line in requires)
    assert not [line for line in requires if line.startswith(COORDINATOR_ONLY)]
