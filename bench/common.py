"""What every benchmark shares: timing (median over repeats), memory, machine facts, the printed report.

Figures are only comparable within one run: the machine is shared, so every figure carries the load
average (``os.getloadavg()``) at the moment it was taken, and every speed-up is a ratio of two
timings taken in the same process one after the other.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
LIBRARIES = ("numpy", "pandas", "scikit-learn", "duckdb", "tensorflow-cpu", "keras", "joblib")


def load() -> tuple[float, float, float]:
    """The 1, 5 and 15 minute load averages, rounded (what else ran on the machine)."""
    return tuple(round(x, 2) for x in os.getloadavg())  # type: ignore[return-value]


@dataclass
class Timing:
    """Seconds of each repeat of one measured call; ``median`` is the reported figure."""

    name: str
    seconds: list[float]
    load: tuple[float, float, float]
    result: Any = field(default=None, repr=False)

    @property
    def median(self) -> float:
        return statistics.median(self.seconds)

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "median_s": round(self.median, 6), "repeats": len(self.seconds),
                "min_s": round(min(self.seconds), 6), "max_s": round(max(self.seconds), 6), "load": self.load}


def timeit(name: str, func: Callable[[], Any], repeats: int = 3, warmup: int = 0) -> Timing:
    """Call ``func`` ``warmup`` times unmeasured, then ``repeats`` times; keeps the last result.

    The load average is read after the last repeat (it covers the measured calls).
    """
    for _ in range(warmup):
        func()
    seconds, result = [], None
    for _ in range(max(1, repeats)):
        began = time.perf_counter()
        result = func()
        seconds.append(time.perf_counter() - began)
    return Timing(name=name, seconds=seconds, load=load(), result=result)


def peak_rss_mb() -> float:
    """Peak resident set size of this process so far, in MB (``ru_maxrss`` is in kB on Linux)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _tree_rss_kb(root: int) -> int:
    """Current RSS of ``root`` and all its descendants (from /proc), in kB; 0 for vanished processes."""
    children: dict[int, list[int]] = {}
    rss: dict[int, int] = {}
    page_kb = os.sysconf("SC_PAGE_SIZE") // 1024
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            pages = int((entry / "statm").read_text().split()[1])
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(entry.name))
        rss[int(entry.name)] = pages * page_kb
    total, todo = 0, [root]
    while todo:
        pid = todo.pop()
        total += rss.get(pid, 0)
        todo.extend(children.get(pid, []))
    return total


@dataclass
class CommandResult:
    """A finished child command: exit code, wall seconds, memory, output."""

    returncode: int
    seconds: float
    max_rss_mb: float
    tree_peak_rss_mb: float
    stdout: str
    stderr: str
    load: tuple[float, float, float]
    timed_out: bool = False


def run_command(args: Sequence[str], *, env: dict[str, str] | None = None, cwd: Path | None = None,
                timeout: float | None = None, sample_s: float = 0.2) -> CommandResult:
    """Run ``args`` and measure it.

    ``max_rss_mb``: the largest single process of the command (``RUSAGE_CHILDREN``'s ``ru_maxrss``, what
    ``/usr/bin/time -v`` reports). ``tree_peak_rss_mb``: the largest sum of the RSS of the command and its
    descendants (joblib workers) seen by polling /proc every ``sample_s`` seconds: what a container's
    memory limit has to hold. After ``timeout`` seconds the command is stopped (SIGTERM, as Kubernetes
    does: the job releases its lock and keeps what it stored; SIGKILL 60 s later if it is still there) and
    ``timed_out`` set; the figures up to then are kept.
    """
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    began = time.perf_counter()
    proc = subprocess.Popen(list(args), env=env, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    peak = [0]
    done = threading.Event()

    def poll() -> None:
        while not done.is_set():
            peak[0] = max(peak[0], _tree_rss_kb(proc.pid))
            done.wait(sample_s)

    poller = threading.Thread(target=poll, daemon=True)
    poller.start()
    timed_out = False
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        timed_out = True
        proc.terminate()
        try:
            out, err = proc.communicate(timeout=60)
            how = "stopped with SIGTERM"
        except subprocess.TimeoutExpired:
            proc.kill()
            out, err = proc.communicate()
            how = "killed"
        err = (err or "") + f"\ntimed out after {timeout} s ({how})"
    finally:
        done.set()
        poller.join()
    seconds = time.perf_counter() - began
    after = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    # ru_maxrss of children is a running maximum over every child waited for: exact when this one is larger.
    return CommandResult(returncode=proc.returncode, seconds=seconds, max_rss_mb=max(after, 0) / 1024
                         if after > before else float("nan"), tree_peak_rss_mb=peak[0] / 1024, stdout=out,
                         stderr=err, load=load(), timed_out=timed_out)


def machine() -> dict[str, Any]:
    """CPU model, logical cores, memory, OS, Python and library versions, date and load."""
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem_gb = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    versions = {}
    for lib in LIBRARIES:
        try:
            versions[lib] = metadata.version(lib)
        except metadata.PackageNotFoundError:
            continue
    return {"date": datetime.now(UTC).isoformat(timespec="seconds"), "cpu": cpu, "cores": os.cpu_count(),
            "affinity": len(os.sched_getaffinity(0)), "memory_gb": round(mem_gb, 1),
            "os": platform.platform(), "python": platform.python_version(), "libraries": versions,
            "load": load()}


def ratio(slow: float, fast: float) -> float:
    """How many times faster ``fast`` is than ``slow`` (inf when ``fast`` is 0)."""
    return slow / fast if fast > 0 else float("inf")


def parser(description: str) -> argparse.ArgumentParser:
    """The options every benchmark script takes: ``--quick``, ``--snapshot-dir``, ``--json``."""
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--quick", action="store_true",
                   help="Tiny sizes on the synthetic sample data: checks that the benchmark runs, measures nothing.")
    p.add_argument("--snapshot-dir", default=os.environ.get("ROTATION_SNAPSHOT_DIR") or str(REPO_ROOT.parent / "shared"
                                                                                              / "data"),
                   help="The real data snapshot (default $ROTATION_SNAPSHOT_DIR, else ../shared/data).")
    p.add_argument("--json", dest="json_path", default=None, help="Also write the figures to this JSON file.")
    return p


class Report:
    """Collects a benchmark's figures, prints them as it goes and writes them as JSON at the end."""

    def __init__(self, benchmark: str, args: argparse.Namespace) -> None:
        self.benchmark = benchmark
        self.args = args
        self.figures: dict[str, Any] = {"benchmark": benchmark, "quick": bool(args.quick), "machine": machine()}
        m = self.figures["machine"]
        print(f"# {benchmark}  ({m['date']}, {m['cpu']}, {m['cores']} cores, {m['memory_gb']} GB, "
              f"load {m['load']}){'  [--quick: sizes too small to mean anything]' if args.quick else ''}",
              flush=True)

    def add(self, key: str, value: Any, text: str | None = None) -> None:
        """Record ``value`` under ``key`` and print ``text`` (or ``key: value``)."""
        self.figures[key] = value.as_dict() if isinstance(value, Timing) else value
        if text is None and isinstance(value, Timing):
            text = f"{value.name}: median {value.median:.4f} s over {len(value.seconds)} (load {value.load})"
        print(f"  {text if text is not None else f'{key}: {value}'}", flush=True)

    def finish(self) -> dict[str, Any]:
        """Add the peak RSS of this process, write the JSON file if asked; returns the figures."""
        self.figures["peak_rss_mb"] = round(peak_rss_mb(), 1)
        self.figures["load_at_end"] = load()
        print(f"  peak RSS of this process: {self.figures['peak_rss_mb']:.0f} MB; load at end {load()}", flush=True)
        if self.args.json_path:
            Path(self.args.json_path).parent.mkdir(parents=True, exist_ok=True)
            Path(self.args.json_path).write_text(json.dumps(self.figures, indent=2, default=str))
        return self.figures


def python() -> str:
    """The interpreter running the benchmarks (the project's venv when started from it)."""
    return sys.executable


def settings_for(args: argparse.Namespace, warehouse: Path, **sections: dict[str, Any]) -> Any:
    """Settings for the benchmark's data: the real snapshot, or the synthetic sample with ``--quick``.

    ``sections`` are extra ``{section: {key: value}}`` overrides.
    """
    from job.config import load_settings

    data = {"source": "sample"} if args.quick else {"source": "snapshot"}
    overrides: dict[str, Any] = {"data": data, "paths": {"warehouse": str(warehouse),
                                                         "snapshot_dir": "" if args.quick else args.snapshot_dir}}
    for name, values in sections.items():
        overrides[name] = {**overrides.get(name, {}), **values}
    return load_settings(environ={}, overrides=overrides)


def ingested_dataset(args: argparse.Namespace, workdir: Path, **sections: dict[str, Any]) -> tuple[Any, Any]:
    """Ingest the benchmark's data into a fresh warehouse under ``workdir``; ``(settings, dataset)``."""
    from job import warehouse
    from job.sources import fetch

    settings = settings_for(args, workdir / "warehouse.duckdb", **sections)
    universe = settings.universe()
    data = fetch([settings.data.source], settings, universe, settings.snapshot_dir())
    warehouse.ingest(settings.paths.warehouse, data, universe)
    dataset, _ = warehouse.load_dataset(settings, settings.paths.warehouse)
    return settings, dataset
