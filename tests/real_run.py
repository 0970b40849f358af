"""The output of real ``rotation run``s, made once per test process and shared by the reader tests.

Readers (``rotation query``, its views, the ready queries, ``rotation verify``) are tested against what
the real stages publish, never against parquet written by hand. Two months of the synthetic ``sample``
source, ridge and tree, no look-ahead audit, a static backtest (one fit per model instead of a refit per
month: the readers are under test, not the walk-forward), into one local folder, through the installed
console script (as a user or the CronJob runs it). Tests that change the store copy it first (:func:`copy_store`).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

ROTATION_BIN = Path(sys.executable).parent / "rotation"
MONTHS = ("2025-11", "2025-12")  # the sample source's default as-of is 2025-12
MODELS = ("ridge", "tree")
N_ASSETS = 12


@dataclass(frozen=True)
class RealRun:
    """A store with ``MONTHS`` published by real runs, and the group options that reach it."""

    store: Path
    warehouse: Path
    workdir: Path

    def group(self, store: Path | str | None = None) -> list[str]:
        return ["--warehouse", str(self.warehouse), "--store", str(store or self.store)]


_made: dict[str, RealRun] = {}


def subprocess_env(workdir: Path) -> dict[str, str]:
    """A clean environment: no developer ROTATION_* or AWS settings."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("ROTATION_", "AWS_")) or k == "ROTATION_SNAPSHOT_DIR"}
    env.update({"MPLCONFIGDIR": str(workdir / "mpl"), "TF_CPP_MIN_LOG_LEVEL": "2",
                "ROTATION_CACHE_DIR": str(workdir / "cache")})
    return env


def real_run(tmp_path_factory: pytest.TempPathFactory) -> RealRun:
    """Run ``rotation run`` for each of ``MONTHS`` once per process; the same store for every caller."""
    if "run" not in _made:
        workdir = tmp_path_factory.mktemp("real-run")
        made = RealRun(store=workdir / "artifacts", warehouse=workdir / "warehouse.duckdb", workdir=workdir)
        for month in MONTHS:
            proc = subprocess.run([str(ROTATION_BIN), *made.group(), "run", "--as-of", month, "--source", "sample",
                                   "--models", ",".join(MODELS), "--no-audit", "--scheme", "static"],
                                  cwd=workdir, capture_output=True, text=True, timeout=900,
                                  env=subprocess_env(workdir), check=False)
            assert proc.returncode == 0, f"rotation run --as-of {month} failed:\n{proc.stderr[-4000:]}"
        _made["run"] = made
    return _made["run"]


def copy_store(run: RealRun, dest: Path) -> Path:
    """A copy of the real run's store to damage."""
    shutil.copytree(run.store, dest)
    return dest
