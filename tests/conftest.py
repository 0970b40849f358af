"""Shared fixtures: the real data snapshot (skipped with a reason when absent) and synthetic data."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from job.dataset import Dataset, synthetic_dataset

REPO_ROOT = Path(__file__).resolve().parents[1]

pytest_plugins: list[str] = ["tests.s3_server"]


def snapshot_path() -> Path | None:
    """``$ROTATION_SNAPSHOT_DIR``, else ``../shared/data`` beside the repository, when it exists."""
    env = os.environ.get("ROTATION_SNAPSHOT_DIR")
    path = Path(env) if env else REPO_ROOT.parent / "shared" / "data"
    return path if (path / "prices").is_dir() else None


@pytest.fixture(scope="session")
def snapshot_dir() -> Path:
    """The real market and macro snapshot; tests that need it skip with a printed reason otherwise."""
    path = snapshot_path()
    if path is None:
        pytest.skip("real data snapshot not found: set ROTATION_SNAPSHOT_DIR or put it at ../shared/data")
    return path


@pytest.fixture(scope="session")
def synthetic() -> Dataset:
    """180 months, 4 assets, 10 macro features, a planted signal from macro_j(m) to asset j at m+1."""
    return synthetic_dataset()


@pytest.fixture(autouse=True)
def _isolated_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Tests never read the developer's ROTATION_* settings or AWS profile, and write under tmp_path."""
    for name in list(os.environ):
        if name.startswith("ROTATION_") and name != "ROTATION_SNAPSHOT_DIR":
            monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("MPLCONFIGDIR", str(tmp_path / "mpl"))
    monkeypatch.setenv("TF_CPP_MIN_LOG_LEVEL", "2")


@dataclass
class CliResult:
    """What ``rotation ARGS`` did: exit code, stdout and stderr."""

    exit_code: int
    stdout: str
    stderr: str

    @property
    def error(self) -> str:
        """The one ``error: ...`` line on stderr ('' when there is none); asserts there is at most one."""
        lines = [line for line in self.stderr.splitlines() if line.startswith("error: ")]
        assert len(lines) <= 1, self.stderr
        return lines[0] if lines else ""


@pytest.fixture
def rotation(monkeypatch: pytest.MonkeyPatch) -> Callable[..., CliResult]:
    """Run ``job.cli.main(args)`` in-process (CliRunner's isolation) as the console script would.

    ``env`` adds environment variables for the call. The exit code is the one main() gives the shell,
    so the RotationError -> exit code mapping and the one-line ``error: ...`` are what is tested.
    """
    from click.testing import CliRunner

    from job.cli import main

    def run(*args: str, env: dict[str, str] | None = None) -> CliResult:
        for name, value in (env or {}).items():
            monkeypatch.setenv(name, value)
        runner = CliRunner()
        with runner.isolation() as (out, err, _):
            try:
                main(list(args))
                code = 0
            except SystemExit as exc:
                code = exc.code if isinstance(exc.code, int) else 1
            sys.stdout.flush()  # text written with sys.stdout.write() is buffered until the process exits
            sys.stderr.flush()
            return CliResult(code, out.getvalue().decode(), err.getvalue().decode())

    return run


def _ingest(path: Path, source: str, snapshot: Path | None = None) -> Path:
    from job import warehouse
    from job.config import load_settings
    from job.sources import fetch

    settings = load_settings(environ={})
    universe = settings.universe(source)
    warehouse.ingest(path, fetch([source], settings, universe, snapshot), universe)
    return path


@pytest.fixture(scope="session")
def snapshot_warehouse(snapshot_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A warehouse with the real snapshot ingested once per session. Read it; copy it to change it."""
    return _ingest(tmp_path_factory.mktemp("snapshot-warehouse") / "warehouse.duckdb", "snapshot", snapshot_dir)


@pytest.fixture(scope="session")
def sample_warehouse(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A warehouse with the synthetic sample ingested once per session. Read it; copy it to change it."""
    return _ingest(tmp_path_factory.mktemp("sample-warehouse") / "warehouse.duckdb", "sample")
