"""Benchmark 7: the monthly job through ``rotation run``: cold, next month, unchanged rerun (issue 13).

    python -m bench.bench_monthly [--quick] [--previous 2025-01] [--month 2025-02] [--after 2025-03]

Every figure is the wall time of a ``rotation run --source snapshot --as-of M`` child process (ingest,
validation, fits, walk-forward, audit, report and publishing included), with its stage timings and fit
counts from the published manifest, all measured one after the other in this benchmark:

- ``cold``: MONTH into an empty store and warehouse (what every run of a month cost before issue 13);
- ``previous``: PREVIOUS into a second empty store (setting up "last month was published");
- ``next_month``: MONTH into that store (the monthly job's usual run: one new fold per model; the
  default 2025-01 -> 2025-02 is the issue's, and at 2025-02 the FRED-MD series ``S&P PE ratio`` expires,
  so the LSTM's yearly fold is split there: its fit at 2025-02 is new too);
- ``rerun``: MONTH again, nothing changed (the month is found published from identical inputs);
- ``after`` (``--after``): the month after MONTH in the same store;
- ``identical``: every table kind of MONTH published by ``cold`` and by ``next_month`` compared: the
  scikit-learn models' rows bit for bit, the LSTM's and the ensemble's within 1e-6 (reported as the max
  absolute difference; fits are deterministic per seed, so 0 is expected there too).

Targets (issue 13): next month <= 20 s and >= 5x less than cold; rerun <= 15 s. ``--quick`` runs the
synthetic sample with ridge only (static scheme, no audit): it checks the benchmark runs and measures nothing.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from bench.common import Report, load, parser, ratio, run_command

TARGET_NEXT_S = 20.0
TARGET_RERUN_S = 15.0
TARGET_RATIO = 5.0
KINDS = ("forecasts", "weights", "backtest", "backtest_forecasts", "backtest_weights", "metrics")
EXACT_MODELS = ("ridge", "tree", "persistence", "historical-mean", "momentum")


def rotation_run(args: Any, root: Path, month: str) -> dict[str, Any]:
    """One ``rotation run`` of ``month`` on the store and warehouse under ``root``; its figures."""
    cmd = [sys.executable, "-m", "job", "--warehouse", str(root / "warehouse.duckdb"), "--store", str(root / "store"),
           "run", "--as-of", month]
    if args.quick:
        cmd += ["--source", "sample", "--models", "ridge", "--no-audit", "--scheme", "static"]
    else:
        cmd += ["--source", "snapshot", "--snapshot-dir", args.snapshot_dir]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ROTATION_", "DASK_"))}
    env["TF_CPP_MIN_LOG_LEVEL"] = "3"
    res = run_command(cmd, env=env)
    out: dict[str, Any] = {"month": month, "returncode": res.returncode, "wall_s": round(res.seconds, 2),
                           "tree_peak_rss_mb": round(res.tree_peak_rss_mb, 1), "load": res.load}
    if res.returncode != 0:
        out["error"] = (res.stderr.strip().splitlines() or ["(no output)"])[-1]
        return out
    manifest = json.loads((root / "store" / "runs" / f"as_of={month}" / "manifest.json").read_text())
    out["published"] = "already published from identical inputs" not in res.stdout
    out["run_id"] = manifest["run_id"]
    out["stages_s"] = manifest.get("timings", {}) if out["published"] else {}
    computation = manifest.get("computation") or {}
    out["fits"] = {part: {k: v for k, v in (facts or {}).items() if k in ("fits_fitted", "fits_reused",
                                                                           "forecasts_reused")}
                   for part, facts in computation.items()} if out["published"] else {}
    return out


def published_frames(root: Path, month: str) -> dict[str, pd.DataFrame]:
    """The month's published table kinds, without the run-specific columns."""
    import pyarrow.parquet as pq

    manifest = json.loads((root / "store" / "runs" / f"as_of={month}" / "manifest.json").read_text())
    frames = {}
    for kind in KINDS:
        paths = [a["path"] for a in manifest["artifacts"] if a.get("kind") == kind]
        if paths:
            frame = pd.concat([pq.read_table(root / "store" / p).to_pandas() for p in paths], ignore_index=True)
            frames[kind] = frame.drop(columns=[c for c in ("run_id", "created_at") if c in frame.columns])
    return frames


def compare(a: dict[str, pd.DataFrame], b: dict[str, pd.DataFrame]) -> dict[str, Any]:
    """Per kind: bit-identical for the exact models, the max absolute difference of the others."""
    out: dict[str, Any] = {}
    for kind in KINDS:
        if kind not in a or kind not in b:
            out[kind] = "missing" if (kind in a) != (kind in b) else "absent"
            continue
        x, y = a[kind], b[kind]
        if list(x.columns) != list(y.columns) or len(x) != len(y):
            out[kind] = f"different shape {x.shape} vs {y.shape}"
            continue
        key = "model" if "model" in x.columns else None
        exact = x[key].isin(EXACT_MODELS) if key else pd.Series(True, index=x.index)
        same_exact = x[exact].reset_index(drop=True).equals(y[exact.to_numpy()].reset_index(drop=True))
        numeric = [c for c in x.columns if pd.api.types.is_float_dtype(x[c])]
        rest = ~exact
        diff = float(np.nanmax(np.abs(x.loc[rest, numeric].to_numpy(dtype=float)
                                      - y.loc[rest.to_numpy(), numeric].to_numpy(dtype=float)))) \
            if rest.any() and numeric else 0.0
        out[kind] = {"exact_models_identical": bool(same_exact), "other_models_max_abs_diff": diff}
    return out


def main(argv: list[str] | None = None) -> dict:
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--previous", default=None, help="The month published before (default 2025-01; sample 2025-11).")
    p.add_argument("--month", default=None, help="The benchmark's month (default 2025-02; sample 2025-12).")
    p.add_argument("--after", default=None, help="Also run the month after in the same store.")
    args = p.parse_args(argv)
    previous = args.previous or ("2025-11" if args.quick else "2025-01")
    month = args.month or ("2025-12" if args.quick else "2025-02")
    report = Report("bench_monthly (7: rotation run cold, next month, unchanged rerun)", args)
    with tempfile.TemporaryDirectory(prefix="bench-monthly-") as tmp:
        cold_root, warm_root = Path(tmp) / "cold", Path(tmp) / "warm"
        runs: dict[str, dict[str, Any]] = {}
        steps = [("cold", cold_root, month), ("previous", warm_root, previous), ("next_month", warm_root, month),
                 ("rerun", warm_root, month)]
        if args.after:
            steps.append(("after", warm_root, args.after))
        for name, root, m in steps:
            root.mkdir(exist_ok=True)
            runs[name] = figures = rotation_run(args, root, m)
            stages = ", ".join(f"{k} {v:.1f}" for k, v in figures.get("stages_s", {}).items())
            report.add(name, figures, f"{name} ({m}): wall {figures['wall_s']} s"
                       + (f", stages [{stages}] s" if stages else ", nothing published (identical inputs)"
                          if figures.get("published") is False else "")
                       + (f", fits {figures['fits']}" if figures.get("fits") else "")
                       + f", process tree peak {figures['tree_peak_rss_mb']:.0f} MB, load {figures['load']}"
                       + (f", FAILED: {figures['error']}" if "error" in figures else ""))
            if "error" in figures:
                return report.finish()
        same = compare(published_frames(cold_root, month), published_frames(warm_root, month))
        report.add("identical", same, f"{month} cold vs next month: {same}")
    cold, nxt, rerun = runs["cold"]["wall_s"], runs["next_month"]["wall_s"], runs["rerun"]["wall_s"]
    summary = {"cold_s": cold, "next_month_s": nxt, "rerun_s": rerun, "cold_over_next": round(ratio(cold, nxt), 1),
               "next_target_reached": nxt <= TARGET_NEXT_S and ratio(cold, nxt) >= TARGET_RATIO,
               "rerun_target_reached": rerun <= TARGET_RERUN_S, "load": load()}
    report.add("summary", summary, f"next month {nxt:.1f} s (target <= {TARGET_NEXT_S:.0f} s and >= "
               f"{TARGET_RATIO:.0f}x less than cold {cold:.1f} s: {summary['cold_over_next']}x, "
               f"{'reached' if summary['next_target_reached'] else 'NOT reached'}); rerun {rerun:.1f} s "
               f"(target <= {TARGET_RERUN_S:.0f} s, {'reached' if summary['rerun_target_reached'] else 'NOT reached'})")
    return report.finish()


if __name__ == "__main__":
    main()
