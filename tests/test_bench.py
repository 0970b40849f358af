"""The benchmark scripts still run (``--quick``: synthetic sample data, tiny sizes; no timing is checked)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
SCRIPTS = ["bench_sweep", "bench_ingest", "bench_walk_forward", "bench_lstm", "bench_run", "bench_monthly"]


@pytest.mark.slow
@pytest.mark.parametrize("script", SCRIPTS)
def test_benchmark_runs_quick(script: str, tmp_path: Path) -> None:
    """Each benchmark exits 0 with --quick and writes its figures, machine facts and peak RSS as JSON."""
    out = tmp_path / f"{script}.json"
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    proc = subprocess.run([sys.executable, "-m", f"bench.{script}", "--quick", "--json", str(out)], cwd=REPO_ROOT,
                          env=env, check=False, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    figures = json.loads(out.read_text())
    assert figures["quick"] is True
    assert figures["machine"]["cores"] >= 1 and len(figures["machine"]["load"]) == 3
    assert figures["peak_rss_mb"] > 0
    assert "# bench_" in proc.stdout
