"""Shared fixtures: the real data snapshot (skipped with a reason when absent) and synthetic data."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from job.dataset import Dataset, synthetic_dataset

REPO_ROOT = Path(__file__).resolve().parents[1]

pytest_plugins: list[str] = []


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
