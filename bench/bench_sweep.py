"""Benchmark 4: the strategy sweep, asset-month allocations per second, vs a Python loop over assets.

    python -m bench.bench_sweep [--quick] [--repeats 5]

Forecasts are the persistence forecast of the real snapshot (each asset's return in the decision month)
for every decision month (245 x 12 assets); realised values are the next month's returns. The grid is
thresholds x factors x shrinkages (default 21 x 10 x 11 = 2,310 combinations). One "asset-month
allocation" is one asset's weight in one month under one combination. Three figures:

- ``sweep``: :func:`job.strategy.sweep` as the ``backtest --sweep`` command calls it: allocation,
  returns, turnover, costs and every metric (gross and net) of every combination;
- ``allocate``: the allocation core alone (:func:`job.strategy.allocate_arrays` over the grid);
- ``naive``: :func:`bench.naive.sweep_loop` (loops over months and assets, fewer metrics) on the first
  ``--naive-combos`` combinations, as a rate.

The naive loop's returns are checked against the sweep's to 1e-12 before any figure is printed.
"""

from __future__ import annotations

import itertools
import tempfile
from pathlib import Path

import numpy as np

from bench import naive
from bench.common import Report, ingested_dataset, parser, timeit

TARGET = 10e6  # asset-month allocations per second (issue 9)


def inputs(args) -> tuple[np.ndarray, np.ndarray, np.ndarray]:  # type: ignore[no-untyped-def]
    """(predicted, realised, benchmark) of shape (T, N), (T, N), (T,) from the benchmark's data."""
    with tempfile.TemporaryDirectory(prefix="bench-sweep-") as tmp:
        _, dataset = ingested_dataset(args, Path(tmp))
    labels = dataset.labels()
    months = labels.index[labels.notna().all(axis=1)]
    predicted = dataset.features.loc[months, [f"ret:{a}" for a in dataset.assets]].to_numpy(dtype=np.float64)
    realised = labels.loc[months, dataset.assets].to_numpy(dtype=np.float64)
    return predicted, realised, labels.loc[months, dataset.benchmark].to_numpy(dtype=np.float64)


def main(argv: list[str] | None = None) -> dict:
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--naive-combos", type=int, default=40, help="Combinations the naive loop runs.")
    args = p.parse_args(argv)
    from job.strategy import allocate_arrays, sweep

    report = Report("bench_sweep (4)", args)
    predicted, realised, bench = inputs(args)
    if args.quick:
        thresholds, factors, shrinkages = np.linspace(0, 0.1, 3), [1.0, 5.0], [0.0, 0.5]
        args.repeats, args.naive_combos = 1, 3
    else:
        thresholds, factors, shrinkages = np.linspace(0.0, 0.2, 21), np.arange(1.0, 11.0), np.linspace(0, 1, 11)
    grid = list(itertools.product(thresholds, factors, shrinkages))
    t, n = predicted.shape
    allocations = len(grid) * t * n
    report.add("shape", {"combinations": len(grid), "months": t, "assets": n, "asset_month_allocations": allocations})

    full = timeit("sweep (allocation + returns + turnover + all metrics)",
                  lambda: sweep(predicted, realised, thresholds, factors, shrinkages, benchmark=bench),
                  repeats=args.repeats, warmup=1)
    report.add("sweep", full)
    g = np.asarray(grid)[:, :, None, None]

    def core() -> None:
        for lo in range(0, len(g), 512):
            allocate_arrays(predicted[None], g[lo:lo + 512, 0], g[lo:lo + 512, 1], g[lo:lo + 512, 2])

    alloc = timeit("allocate_arrays over the grid (allocation only)", core, repeats=args.repeats, warmup=1)
    report.add("allocate", alloc)

    few = grid[:args.naive_combos]
    loop = timeit(f"naive loop over months and assets ({len(few)} combinations)",
                  lambda: naive.sweep_loop(predicted, realised, few), repeats=max(1, args.repeats // 2))
    report.add("naive", loop)
    # parity: the loop's Sharpe and max drawdown equal the sweep's for the same combinations
    table = full.result.iloc[:len(few)]
    for col in ("sharpe", "max_drawdown", "cagr_net"):
        np.testing.assert_allclose(loop.result[col].to_numpy(), table[col].to_numpy(), rtol=1e-9, atol=1e-12,
                                   err_msg=f"naive loop and sweep disagree on {col}")

    rates = {
        "sweep_per_s": allocations / full.median,
        "allocate_per_s": allocations / alloc.median,
        "naive_per_s": len(few) * t * n / loop.median,
        "combinations_per_s_sweep": len(grid) / full.median,
    }
    rates["speedup_sweep_vs_naive"] = rates["sweep_per_s"] / rates["naive_per_s"]
    rates["target_per_s"] = TARGET
    rates["target_reached"] = bool(rates["sweep_per_s"] >= TARGET)
    report.add("rates", {k: (round(v, 1) if isinstance(v, float) else v) for k, v in rates.items()},
               f"sweep {rates['sweep_per_s'] / 1e6:.2f} M asset-month allocations/s (all metrics), allocation "
               f"core {rates['allocate_per_s'] / 1e6:.2f} M/s, naive loop {rates['naive_per_s'] / 1e6:.3f} M/s: "
               f"sweep {rates['speedup_sweep_vs_naive']:.0f}x the naive loop; target 10 M/s "
               f"{'reached' if rates['target_reached'] else 'NOT reached'}")
    return report.finish()


if __name__ == "__main__":
    main()
