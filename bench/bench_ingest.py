"""Benchmark 5: incremental monthly ingest (one new month into an existing warehouse) vs full re-ingest.

    python -m bench.bench_ingest [--quick] [--repeats 5]

The snapshot is read once (:func:`job.sources.fetch`; its time is reported separately, both cases pay
it). "One new month": the warehouse first holds the snapshot truncated before its last month (prices,
macro periods and risk-free months before it: set up untimed, copied fresh for every repeat); the
timed call is :func:`job.warehouse.ingest` of the full snapshot into it, which upserts every row and
writes only the new or changed ones. The baseline is the same ingest into an empty warehouse (a full
re-ingest, what a job without an incremental warehouse would do every month).
"""

from __future__ import annotations

import shutil
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import pandas as pd

from bench.common import Report, Timing, load, parser, ratio, settings_for, timeit


def truncated(data, before: pd.Timestamp):  # type: ignore[no-untyped-def]
    """``data`` without prices on or after ``before``, macro periods and risk-free months from it."""
    return replace(
        data,
        prices=None if data.prices is None else data.prices[data.prices["date"] < before].reset_index(drop=True),
        macro=None if data.macro is None else data.macro[pd.to_datetime(data.macro["period"]) < before]
        .reset_index(drop=True),
        risk_free=None if data.risk_free is None else data.risk_free[pd.to_datetime(data.risk_free["month"]) < before]
        .reset_index(drop=True))


def main(argv: list[str] | None = None) -> dict:
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--repeats", type=int, default=5)
    args = p.parse_args(argv)
    from job import warehouse
    from job.sources import fetch

    report = Report("bench_ingest (5)", args)
    repeats = 1 if args.quick else args.repeats
    with tempfile.TemporaryDirectory(prefix="bench-ingest-") as tmp:
        root = Path(tmp)
        settings = settings_for(args, root / "unused.duckdb")
        universe = settings.universe()
        read = timeit("read the source (fetch)", lambda: fetch([settings.data.source], settings, universe,
                                                              settings.snapshot_dir()), repeats=1)
        report.add("fetch", read)
        full = read.result
        last = pd.Timestamp(full.prices["date"].max()).to_period("M").to_timestamp()
        old = truncated(full, last)
        base = root / "base.duckdb"
        warehouse.ingest(base, old, universe)
        report.add("data", {"new_month": str(last.to_period("M")), "price_rows": len(full.prices),
                            "new_price_rows": len(full.prices) - len(old.prices),
                            "macro_rows": 0 if full.macro is None else len(full.macro),
                            "new_macro_rows": 0 if full.macro is None else len(full.macro) - len(old.macro)})
        counter = iter(range(10**6))

        def from_scratch() -> dict:
            return warehouse.ingest(root / f"full-{next(counter)}.duckdb", full, universe)

        # the copy of the base file is set-up, outside the measured ingest call
        inc_seconds, changed = [], None
        for i in range(repeats):
            path = root / f"inc-{i}.duckdb"
            shutil.copy(base, path)
            began = time.perf_counter()
            out = warehouse.ingest(path, full, universe)
            inc_seconds.append(time.perf_counter() - began)
            changed = {k: v for k, v in out.items() if k in ("changed_rows", "price_rows", "macro_rows")}
        inc = Timing("incremental: one new month into the existing warehouse", inc_seconds, load())
        scratch = timeit("full re-ingest into an empty warehouse", from_scratch, repeats=repeats)
        report.add("incremental", {**inc.as_dict(), "summary": changed},
                   f"incremental ingest of {last.to_period('M')}: median {inc.median:.3f} s over {repeats} "
                   f"(load {inc.load}); ingest summary {changed}")
        report.add("full", scratch)
        speedup = ratio(scratch.median, inc.median)
        report.add("summary", {"incremental_s": round(inc.median, 3), "full_s": round(scratch.median, 3),
                               "fetch_s": round(read.median, 3), "speedup": round(speedup, 2)},
                   f"incremental {inc.median:.2f} s vs full re-ingest {scratch.median:.2f} s: {speedup:.2f}x "
                   f"(reading the source, {read.median:.2f} s, is paid by both)")
    return report.finish()


if __name__ == "__main__":
    main()
