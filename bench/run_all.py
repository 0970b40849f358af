"""Run every benchmark with modest defaults: ``python -m bench.run_all`` (``make bench``).

    python -m bench.run_all [--quick] [--out bench/results] [--only sweep,ingest] [--seed]

Each benchmark runs in its own child process (so one's imports and memory do not bias the next) and
writes ``<out>/<name>.json`` (default bench/out, git-ignored); the printed lines are the figures
BENCHMARKS.md records. ``--seed`` adds benchmark 2 (``rotation run --lstm-preset seed``, capped at
``--seed-timeout`` seconds).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

from bench.common import REPO_ROOT, load

# name -> module and its modest default arguments (the order runs the quick ones first)
BENCHMARKS: dict[str, tuple[str, list[str]]] = {
    "sweep": ("bench.bench_sweep", []),
    "ingest": ("bench.bench_ingest", []),
    "lstm": ("bench.bench_lstm", []),
    "walk_forward": ("bench.bench_walk_forward", []),
    "run": ("bench.bench_run", []),
    "monthly": ("bench.bench_monthly", []),
}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="Every benchmark with --quick (sample data, tiny sizes).")
    p.add_argument("--out", default=str(REPO_ROOT / "bench" / "out"), help="Folder for the JSON figures.")
    p.add_argument("--only", default="", help="Comma-separated subset of: " + ", ".join(BENCHMARKS))
    p.add_argument("--seed", action="store_true", help="Also benchmark 2 (the seed LSTM preset, slow).")
    p.add_argument("--seed-timeout", type=float, default=3600.0)
    args = p.parse_args(argv)
    chosen = [n.strip() for n in args.only.split(",") if n.strip()] or list(BENCHMARKS)
    unknown = sorted(set(chosen) - set(BENCHMARKS))
    if unknown:
        p.error(f"unknown benchmark(s) {unknown}")
    jobs = [(name, *BENCHMARKS[name]) for name in chosen]
    if args.seed:
        jobs.append(("run_seed", "bench.bench_run", ["--seed", "--timeout", str(args.seed_timeout)]))
    failed = []
    for name, module, extra in jobs:
        cmd = [sys.executable, "-m", module, *extra, "--json", str(Path(args.out) / f"{name}.json")]
        if args.quick:
            cmd.append("--quick")
        began = time.perf_counter()
        rc = subprocess.call(cmd, cwd=REPO_ROOT)
        print(f"## {name}: exit {rc} after {time.perf_counter() - began:.0f} s (load {load()})", flush=True)
        if rc != 0:
            failed.append(name)
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
