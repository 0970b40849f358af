"""Benchmarks 1 and 2: ``rotation run`` end to end on the real snapshot, per stage, wall time and peak memory.

    python -m bench.bench_run [--quick] [--repeats 1]          # 1: ridge, tree, small LSTM, ensemble
    python -m bench.bench_run --seed [--timeout 3600]          # 2: the same with --lstm-preset seed
    python -m bench.bench_run --seed --root DIR --timeout 3000  # 2 in pieces: each call resumes in DIR
    python -m bench.bench_run --seed --root DIR --as-of 2025-03 # 2, then the next month in the same store

Each repeat is a fresh ``rotation run --source snapshot`` in a child process with an empty warehouse and
store (so it ingests, validates, trains every model, backtests walk-forward and publishes): the wall
time of the command, its stage timings from the published manifest, the peak RSS of its largest process
(``ru_maxrss``, as ``/usr/bin/time -v``) and the peak of the sum over the process and its joblib workers
(polled from /proc; what the CronJob's memory limit must hold).

``--root DIR`` keeps the warehouse and store in DIR instead of a temporary folder: a run stopped by
``--timeout`` keeps every fit it finished there (SIGTERM: the job releases its lock), and the next call
with the same DIR fits only what is missing, so the seed run can be done in pieces. Each piece reports
the seed LSTM fits stored so far and the seconds they took.

Naive comparison (in this process, ``--skip-naive`` to leave out): ridge, tree and the small LSTM are
fitted once on the final training rows, then forecast every walk-forward decision month's window in one
``predict`` call vs one call per row (the notebook's loop).
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from bench import naive
from bench.common import Report, load, parser, ratio, run_command, timeit

TARGET_S = 60.0
TARGET_RSS_MB = 3000.0


def one_run(args: Any, root: Path, preset: str, models: str, timeout: float | None) -> dict[str, Any]:
    """One ``rotation run`` in a child process under ``root``; figures, or the failure."""
    cmd = [sys.executable, "-m", "job", "--warehouse", str(root / "warehouse.duckdb"), "--store", str(root / "store"),
           "run", "--models", models, "--lstm-preset", preset]
    # --quick: a smoke test of the benchmark on the sample (static scheme, no audit), not a measurement
    cmd += ["--source", "sample", "--scheme", "static", "--no-audit"] if args.quick else \
        ["--source", "snapshot", "--snapshot-dir", args.snapshot_dir]
    if args.as_of:
        cmd += ["--as-of", args.as_of]
    env = {k: v for k, v in os.environ.items() if not k.startswith("ROTATION_")}
    env["TF_CPP_MIN_LOG_LEVEL"] = "3"
    res = run_command(cmd, env=env, timeout=timeout)
    out: dict[str, Any] = {"command": " ".join(cmd[1:]), "returncode": res.returncode, "wall_s": round(res.seconds, 2),
                           "max_rss_mb": round(res.max_rss_mb, 1), "tree_peak_rss_mb": round(res.tree_peak_rss_mb, 1),
                           "load": res.load}
    if res.timed_out:
        # what it reached: the stages logged as done (stderr), the memory so far
        out["stages_done"] = [line.split("stage ", 1)[1] for line in res.stderr.splitlines() if " done in " in line]
    # a kept root holds one manifest per as-of month: this run's is the one of --as-of, else the newest
    manifests = sorted((root / "store" / "runs").glob(f"as_of={args.as_of or '*'}/manifest.json"),
                       key=lambda path: path.stat().st_mtime)
    if res.returncode != 0 or not manifests:
        out["error"] = (res.stderr.strip().splitlines() or ["(no output)"])[-1]
        return out
    manifest = json.loads(manifests[-1].read_text())
    out["stages_s"] = manifest["timings"]
    out["backtest"] = (manifest.get("computation") or {}).get("backtest")  # fits fitted and reused
    return out


def stored_lstm_fits(store: Path, preset: str) -> dict[str, Any]:
    """The ``preset`` LSTM fits in ``store``'s model registry: how many, their training ends, and the
    seconds their fits took (from each fit's metadata.json)."""
    fits = []
    for meta in sorted(store.glob("models/lstm/train_end=*/*/metadata.json")):
        m = json.loads(meta.read_text())
        if (m.get("params") or {}).get("preset") == preset:
            fits.append((m["train_end"], float((m.get("metrics") or {}).get("fit_seconds") or 0.0)))
    return {"fits": len(fits), "train_ends": sorted({t for t, _ in fits}),
            "fit_seconds": round(sum(s for _, s in fits), 1)}


def predict_comparison(args: Any) -> dict[str, Any]:
    """Batched vs per-row forecasts of the backtest's decision months for ridge, tree and the small LSTM."""
    from bench.common import ingested_dataset
    from job.backtest import decision_months
    from job.models.factory import build_model

    with tempfile.TemporaryDirectory(prefix="bench-run-") as tmp:
        settings, dataset = ingested_dataset(args, Path(tmp), models={"lstm_preset": "small"})
    lookback = int(settings.models.lookback_months)
    months = decision_months(dataset, lookback, int(settings.backtest.min_train_months))
    X, y, _ = dataset.training_set(lookback, as_of=months[-1])
    windows = dataset.windows(lookback, months)
    out: dict[str, Any] = {"rows": len(months)}
    for name in ("ridge", "tree", "lstm"):
        model = build_model(name, settings, return_feature_index=dataset.return_feature_index())
        if name == "lstm" and args.quick:
            model.set_params(epochs=2)
        model.fit(X, y)
        batched = timeit(f"{name} predict, one call", lambda m=model: m.predict(windows), repeats=5, warmup=1)
        per_row = timeit(f"{name} predict, one call per row", lambda m=model: naive.predict_per_row(m, windows),
                         repeats=1 if name == "lstm" else 3)
        np.testing.assert_allclose(per_row.result, batched.result, rtol=1e-5, atol=1e-7)
        out[name] = {"batched_s": round(batched.median, 5), "per_row_s": round(per_row.median, 4),
                     "speedup": round(ratio(per_row.median, batched.median), 1), "load": per_row.load}
    return out


def main(argv: list[str] | None = None) -> dict:
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--repeats", type=int, default=1)
    p.add_argument("--seed", action="store_true", help="Benchmark 2: the seed LSTM preset (slow).")
    p.add_argument("--models", default="ridge,tree,lstm,ensemble")
    p.add_argument("--timeout", type=float, default=None, help="Give up on a run after this many seconds.")
    p.add_argument("--skip-naive", action="store_true", help="Leave out the per-row predict comparison.")
    p.add_argument("--as-of", default=None, help="The run's month (default: the job's, the latest complete month).")
    p.add_argument("--root", type=Path, default=None,
                   help="Keep the warehouse and store here (one run): a run stopped by --timeout resumes here.")
    args = p.parse_args(argv)
    preset = "seed" if args.seed else "small"
    report = Report(f"bench_run ({2 if args.seed else 1}: {preset} LSTM)", args)
    runs = []
    for i in range(1 if args.quick or args.root else args.repeats):
        with tempfile.TemporaryDirectory(prefix="bench-run-") as tmp:
            root = Path(tmp) if args.root is None else args.root
            root.mkdir(parents=True, exist_ok=True)
            try:
                models = "ridge" if args.quick else args.models  # --quick: a smoke test, not a measurement
                figures = one_run(args, root, "small" if args.quick else preset, models, args.timeout)
            except Exception as exc:  # a timeout is a figure too
                figures = {"error": f"{type(exc).__name__}: {exc}".splitlines()[0], "load": load()}
            if args.root is not None:
                figures["lstm_fits_stored"] = stored = stored_lstm_fits(root / "store", preset)
                report.add(f"stored_{i}", stored, f"{preset} LSTM fits stored in {root}: {stored['fits']} "
                           f"(training ends {', '.join(stored['train_ends'])}), {stored['fit_seconds']} s of fits")
        runs.append(figures)
        stages = ", ".join(f"{k} {v:.1f}" for k, v in figures.get("stages_s", {}).items())
        report.add(f"run_{i}", figures, f"run {i}: wall {figures.get('wall_s')} s, stages [{stages}] s, "
                   f"max RSS {figures.get('max_rss_mb')} MB (process tree {figures.get('tree_peak_rss_mb')} MB), "
                   f"load {figures['load']}" + (f", FAILED: {figures['error']}" if "error" in figures else "")
                   + (f", walk-forward fits fitted {bt.get('fits_fitted')} / reused {bt.get('fits_reused')}"
                      if (bt := figures.get("backtest")) else ""))
    ok = [r for r in runs if "error" not in r]
    if ok:
        wall = float(np.median([r["wall_s"] for r in ok]))
        rss = max(r["tree_peak_rss_mb"] for r in ok)
        summary = {"wall_s": wall, "peak_rss_mb": rss, "target_s": TARGET_S, "wall_target_reached": wall < TARGET_S,
                   "target_rss_mb": TARGET_RSS_MB, "rss_target_reached": rss < TARGET_RSS_MB}
        report.add("summary", summary, f"median wall {wall:.1f} s (target < {TARGET_S:.0f} s "
                   f"{'reached' if wall < TARGET_S else 'NOT reached'}); peak RSS {rss:.0f} MB (target < 3 GB "
                   f"{'reached' if rss < TARGET_RSS_MB else 'NOT reached'})")
    if not args.skip_naive and not args.seed:
        cmp_ = predict_comparison(args)
        parts = [f"{k} {v['batched_s'] * 1e3:.1f} ms vs {v['per_row_s']:.2f} s ({v['speedup']:.0f}x)"
                 for k, v in cmp_.items() if isinstance(v, dict)]
        report.add("predict_per_row", cmp_, f"predict, one call vs one call per row over {cmp_['rows']} months: "
                   + ", ".join(parts) + f" (load {load()})")
    return report.finish()


if __name__ == "__main__":
    main()
