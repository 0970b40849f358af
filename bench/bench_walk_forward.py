"""Benchmark 3: walk-forward backtest of ridge and tree with monthly refits, vs GridSearchCV(KFold) per month.

    python -m bench.bench_walk_forward [--quick] [--repeats 1] [--naive-months 3] [--dask [--dask-rounds 3]]

The job: :func:`job.backtest.walk_forward` (``scheme="walk-forward"``, refit every month, hyperparameters
re-searched every ``backtest.tune_months`` months with the exact fast CV of ``job.models.fastcv``, the
months between refit with the last choice; ``backtest.n_jobs`` loky workers) over the full out-of-sample
span of the real snapshot. Timed for ridge alone, tree alone and both together.

The naive baseline (:func:`bench.naive.walk_forward_gridsearch`): every month a full ``GridSearchCV``
with plain ``KFold(5)`` over the whole grid for each model, refitted on all rows, then one ``predict``
per row. It takes hours over the whole span, so it runs on ``--naive-months`` months spread evenly over
the span (first, middle, last, ...) and its total is EXTRAPOLATED: mean seconds per month x months.

All timings are cold backfills (no registry: every fit runs). ``--dask``: the same ridge + tree
backfill on the local pool (``n_jobs`` processes) and on a 2-worker Dask cluster on loopback (a ``dask
scheduler`` and two ``dask worker`` processes, one thread each, started here with the image's Dask
configuration, ``docker/dask/dask.yaml``); the cluster's overhead in percent (medians), and how many
fits each worker ran. Also the same cluster on Dask's defaults (its nanny sets ``MALLOC_TRIM_THRESHOLD_`` in
each worker, which the image's configuration unsets) and on workers started ``--no-nanny``. The four run
in ``--dask-rounds`` rounds, each once per round, so that drift in the machine's load hits all alike.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from bench import naive
from bench.common import Report, Timing, ingested_dataset, load, parser, ratio, timeit

TARGET_S = 10.0  # ridge + tree over ~180 months (issue 9)
TARGET_DASK_OVERHEAD = 0.15  # issue 13: the 2-worker loopback cluster vs the local pool
DASK_WORKER_CONFIG = Path(__file__).resolve().parents[1] / "docker" / "dask" / "dask.yaml"  # the image's


@contextmanager
def loopback_cluster(workdir: Path, workers: int = 2, *, nanny: bool = True,
                     image_config: bool = True) -> Iterator[str]:
    """A ``dask scheduler`` and ``workers`` single-threaded ``dask worker`` processes on 127.0.0.1 (each
    under a nanny process, Dask's default, unless ``nanny`` is False), reading the image's Dask
    configuration unless ``image_config`` is False (then Dask's defaults)."""
    dask = str(Path(sys.executable).with_name("dask"))
    scheduler_file = workdir / "scheduler.json"
    env = {k: v for k, v in os.environ.items() if k != "DASK_CONFIG"}
    if image_config:
        env["DASK_CONFIG"] = str(DASK_WORKER_CONFIG)
    procs = [subprocess.Popen([dask, "scheduler", "--host", "127.0.0.1", "--port", "0", "--no-dashboard",
                               "--scheduler-file", str(scheduler_file)], stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL, cwd=workdir, env=env)]
    try:
        while not scheduler_file.exists():
            time.sleep(0.1)
        address = json.loads(scheduler_file.read_text())["address"]
        worker = [dask, "worker", address, "--host", "127.0.0.1", "--nworkers", "1", "--nthreads", "1",
                  "--no-dashboard", *([] if nanny else ["--no-nanny"])]
        procs += [subprocess.Popen(worker, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=workdir,
                                   env=env) for _ in range(workers)]
        from distributed import Client

        with Client(address, timeout=60) as client:
            client.wait_for_workers(workers, timeout=120)
        yield address
    finally:
        # workers first, then the scheduler: a --no-nanny worker whose scheduler goes away while it shuts down
        # can hang at exit (seen with distributed 2026.8), so one that does not exit in time is killed
        for proc in reversed(procs):
            proc.terminate()
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def main(argv: list[str] | None = None) -> dict:
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--repeats", type=int, default=1)
    p.add_argument("--naive-months", type=int, default=3, help="Months the naive GridSearchCV baseline runs.")
    p.add_argument("--n-jobs", type=int, default=None, help="Workers (default backtest.n_jobs).")
    p.add_argument("--dask", action="store_true", help="Also compare the local pool with a 2-worker Dask cluster.")
    p.add_argument("--dask-rounds", type=int, default=3, help="Rounds of the --dask comparison (medians).")
    args = p.parse_args(argv)
    from job.backtest import decision_months, walk_forward

    report = Report("bench_walk_forward (3)", args)
    # --quick: a small tree grid so that the naive search finishes in seconds
    small = {"models": {"tree_max_leaf_nodes": [10, 20], "tree_min_samples_split": [2], "tree_min_samples_leaf": [1],
                        "ridge_alphas": [5.0, 1000.0]}} if args.quick else {}
    with tempfile.TemporaryDirectory(prefix="bench-wf-") as tmp:
        settings, dataset = ingested_dataset(args, Path(tmp), **small)
    lookback = int(settings.models.lookback_months)
    months = decision_months(dataset, lookback, int(settings.backtest.min_train_months))
    if args.quick:
        months = months[-3:]
        args.naive_months = 1
    start = months[0]
    n_jobs = args.n_jobs if args.n_jobs is not None else int(settings.backtest.n_jobs)
    report.add("span", {"first_decision": str(months[0]), "last_decision": str(months[-1]), "months": len(months),
                        "n_jobs": n_jobs, "tune_months": int(settings.backtest.tune_months)})

    timings = {}
    for models in ([["ridge", "tree"]] if args.quick else (["ridge"], ["tree"], ["ridge", "tree"])):
        key = "+".join(models)
        timings[key] = timeit(f"walk_forward {key}, {len(months)} monthly refits",
                              lambda models=models: walk_forward(dataset, models, settings, start=start,
                                                                 n_jobs=n_jobs),
                              repeats=args.repeats)
        result = timings[key].result
        fold_cpu = result.folds.groupby("model")["seconds"].sum().round(2).to_dict()
        report.add(f"walk_forward_{key}", {**timings[key].as_dict(), "fold_fit_seconds": fold_cpu},
                   f"walk_forward {key}: median {timings[key].median:.2f} s over {args.repeats} "
                   f"(fits inside the workers: {fold_cpu} s; load {timings[key].load})")

    if args.dask:
        # Rounds of (pool, cluster with the image's configuration, cluster on Dask's defaults, cluster without
        # nannies), each a fresh set of processes, so that drift in the machine's load hits every variant
        # alike; the pool runs with no cluster alive (idle Dask processes take CPU from whatever else runs).
        def backfill(**where: Any) -> Any:
            return walk_forward(dataset, ["ridge", "tree"], settings, start=start, **where)

        variants = {"pool": None, "cluster": {}, "dask_defaults": {"image_config": False},
                    "no_nanny": {"nanny": False}}
        runs: dict[str, list[Timing]] = {name: [] for name in variants}
        for _ in range(max(1, args.dask_rounds)):
            for name, options in variants.items():
                if options is None:
                    runs[name].append(timeit("ridge+tree on the local pool", lambda: backfill(n_jobs=2), repeats=1))
                    continue
                with tempfile.TemporaryDirectory(prefix="bench-dask-") as tmp, \
                        loopback_cluster(Path(tmp), **options) as address:
                    runs[name].append(timeit(f"ridge+tree on a 2-worker Dask cluster ({name})",
                                             lambda address=address: backfill(cluster=address), repeats=1))
        pool, cluster, dask_defaults, bare = (Timing(name=runs[n][0].name, seconds=[t.median for t in runs[n]],
                                                     load=runs[n][-1].load, result=runs[n][-1].result)
                                              for n in variants)
        overhead = cluster.median / pool.median - 1.0
        bare_overhead = bare.median / pool.median - 1.0
        defaults_overhead = dask_defaults.median / pool.median - 1.0
        tasks = cluster.result.info["fits_ran_on"]
        same = bool((pool.result.forecasts["predicted"].to_numpy() == cluster.result.forecasts["predicted"].to_numpy())
                    .all())
        report.add("dask", {"pool": pool.as_dict(), "cluster": cluster.as_dict(), "overhead": round(overhead, 3),
                            "dask_defaults": dask_defaults.as_dict(),
                            "dask_defaults_overhead": round(defaults_overhead, 3),
                            "no_nanny": bare.as_dict(), "no_nanny_overhead": round(bare_overhead, 3),
                            "fit_seconds": {"pool": round(float(pool.result.folds["seconds"].sum()), 1),
                                            "cluster": round(float(cluster.result.folds["seconds"].sum()), 1),
                                            "dask_defaults": round(float(dask_defaults.result.folds["seconds"]
                                                                         .sum()), 1),
                                            "no_nanny": round(float(bare.result.folds["seconds"].sum()), 1)},
                            "tasks_per_worker": tasks, "identical": same, "target_overhead": TARGET_DASK_OVERHEAD},
                   f"local pool {pool.median:.1f} s, Dask 2 workers {cluster.median:.1f} s: overhead "
                   f"{100 * overhead:+.0f} % (target <= {100 * TARGET_DASK_OVERHEAD:.0f} %); on Dask's defaults "
                   f"{dask_defaults.median:.1f} s ({100 * defaults_overhead:+.0f} %); without nannies "
                   f"{bare.median:.1f} s ({100 * bare_overhead:+.0f} %); fits per worker {tasks}; "
                   f"identical forecasts: {same} (load {cluster.load})")

    picks = np.unique(np.linspace(0, len(months) - 1, max(1, args.naive_months)).round().astype(int))
    sample = months[picks]
    slow = timeit(f"naive GridSearchCV(KFold) ridge + tree on {len(sample)} months",
                  lambda: naive.walk_forward_gridsearch(dataset, settings, sample), repeats=1)
    per_month = slow.median / len(sample)
    extrapolated = per_month * len(months)
    both = timings["ridge+tree"].median
    report.add("naive", {**slow.as_dict(), "months": [str(m) for m in sample], "seconds_per_month": per_month,
                         "extrapolated_total_s": extrapolated},
               f"naive GridSearchCV(KFold) per month: {per_month:.2f} s/month on {len(sample)} months "
               f"({', '.join(map(str, sample))}); EXTRAPOLATED to {len(months)} months: {extrapolated:.0f} s "
               f"(load {slow.load})")
    report.add("summary", {"job_s": round(both, 2), "naive_extrapolated_s": round(extrapolated, 1),
                           "speedup": round(ratio(extrapolated, both), 1), "target_s": TARGET_S,
                           "target_reached": bool(both < TARGET_S), "load": load()},
               f"ridge + tree walk-forward {both:.1f} s vs naive ~{extrapolated:.0f} s (extrapolated): "
               f"{ratio(extrapolated, both):.0f}x; target < {TARGET_S:.0f} s "
               f"{'reached' if both < TARGET_S else 'NOT reached'}")
    return report.finish()


if __name__ == "__main__":
    main()
