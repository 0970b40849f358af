"""Benchmark: the monthly job's modelling work when the registry already holds last month's fits.

    python -m bench.bench_incremental [--quick] [--repeats 1] [--models ridge,tree,lstm,ensemble]
                                      [--as-of 2025-01] [--no-audit]

One "month" here is what ``rotation run`` computes besides ingest, validation, publishing and the report:
the live fits of the as-of month and their forecasts (:func:`job.models.train_models`), the walk-forward
backtest (:func:`job.backtest.walk_forward` with the registry) and the look-ahead audit (ridge's
walk-forward on the publication-lag-0 dataset). Measured in one process, one after the other:

- ``cold``: month A + 1 into an empty registry (the baseline: what every run cost before issue 13);
- ``next_month``: month A into another empty registry, then month A + 1 (only A + 1 is timed);
- ``rerun``: month A + 1 again, nothing changed;
- the forecasts of ``cold`` and ``next_month`` compared bit for bit (the scikit-learn models) or within
  float32 tolerance (the LSTM).

Targets (issue 13, through ``rotation run``, which adds ingest, validation and publishing): next month
<= 20 s and >= 5x less than cold; rerun <= 15 s.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from bench.common import Report, load, parser, ratio, settings_for, timeit

TARGET_NEXT_S = 20.0
TARGET_RERUN_S = 15.0
TARGET_RATIO = 5.0


def month(settings: Any, warehouse: Path, as_of: pd.Period, models: list[str], registry: Any,
          audit: bool) -> dict[str, Any]:
    """The modelling work of one monthly run; returns the results (for comparison) and fit counts."""
    from job.backtest import walk_forward
    from job.models import train_models
    from job.warehouse import load_dataset

    dataset, _ = load_dataset(settings, warehouse, as_of=as_of)
    live = train_models(models, dataset, settings, as_of, registry)
    result = walk_forward(dataset, models, settings, registry=registry)
    out = {"live_fitted": sum(not r.reused for r in live.values()), "walk_forward_fitted": result.info["fits_fitted"],
           "result": result}
    if audit and "ridge" in models:
        lag0, _ = load_dataset(settings, warehouse, as_of=as_of, publication_lag=0)
        audit_result = walk_forward(lag0, ["ridge"], settings, registry=registry)
        out["audit_fitted"] = audit_result.info["fits_fitted"]
    return out


def main(argv: list[str] | None = None) -> dict:
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--repeats", type=int, default=1)
    p.add_argument("--models", default="ridge,tree,lstm,ensemble")
    p.add_argument("--as-of", default="2025-01", help="Month A (the benchmark's next month is A + 1).")
    p.add_argument("--no-audit", action="store_true", help="Leave out the look-ahead audit's walk-forward.")
    args = p.parse_args(argv)
    from job import warehouse
    from job.models import ModelRegistry
    from job.sources import fetch
    from job.store import LocalStore

    report = Report("bench_incremental", args)
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    audit = not args.no_audit
    with tempfile.TemporaryDirectory(prefix="bench-inc-") as tmp:
        root = Path(tmp)
        settings = settings_for(args, root / "warehouse.duckdb", models={"lstm_preset": "small"})
        universe = settings.universe()
        warehouse.ingest(settings.paths.warehouse, fetch([settings.data.source], settings, universe,
                                                         settings.snapshot_dir()), universe)
        a = pd.Period(args.as_of, "M") if not args.quick else pd.Period("2019-06", "M")
        b = a + 1
        wh = Path(settings.paths.warehouse)

        def cold() -> dict[str, Any]:
            folder = Path(tempfile.mkdtemp(dir=root))
            return month(settings, wh, b, models, ModelRegistry(LocalStore(folder)), audit)

        cold_t = timeit(f"cold month {b}", cold, repeats=args.repeats)
        registry = ModelRegistry(LocalStore(root / "store"))
        prev = timeit(f"month {a} (cold, not compared)", lambda: month(settings, wh, a, models, registry, audit),
                      repeats=1)
        nxt = timeit(f"next month {b} after {a}", lambda: month(settings, wh, b, models, registry, audit), repeats=1)
        rerun = timeit(f"rerun of {b}", lambda: month(settings, wh, b, models, registry, audit),
                       repeats=args.repeats)
        for name, timing in (("cold", cold_t), ("previous_month", prev), ("next_month", nxt), ("rerun", rerun)):
            counts = {k: v for k, v in timing.result.items() if k.endswith("_fitted")}
            report.add(name, {**timing.as_dict(), **counts},
                       f"{timing.name}: median {timing.median:.2f} s (fits: {counts}; load {timing.load})")
        exact = _compare(cold_t.result["result"], nxt.result["result"])
        report.add("identical", exact, f"next month vs cold: {exact}")
        speedup = ratio(cold_t.median, nxt.median)
        report.add("summary", {
            "cold_s": round(cold_t.median, 2), "next_month_s": round(nxt.median, 2), "rerun_s": round(rerun.median, 2),
            "cold_over_next": round(speedup, 1), "targets": {"next_month_s": TARGET_NEXT_S, "ratio": TARGET_RATIO,
                                                            "rerun_s": TARGET_RERUN_S},
            "load": load()},
            f"next month {nxt.median:.1f} s vs cold {cold_t.median:.1f} s: {speedup:.1f}x less; rerun "
            f"{rerun.median:.1f} s (modelling only; `rotation run` adds ingest, validation, publishing)")
    return report.finish()


def _compare(cold: Any, nxt: Any) -> dict[str, Any]:
    """Per model: forecasts equal bit for bit, or the largest absolute difference."""
    out = {}
    for model, rows in cold.forecasts.groupby("model", sort=False):
        other = nxt.forecasts[nxt.forecasts["model"] == model]
        a, b = rows["predicted"].to_numpy(), other["predicted"].to_numpy()
        out[model] = "identical" if np.array_equal(a, b) else f"max |diff| {float(np.max(np.abs(a - b))):.3g}"
    return out


if __name__ == "__main__":
    main()
