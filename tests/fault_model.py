"""A model of the artifact store's promises, and a seeded random driver of commands and faults against it.

:class:`Driver` runs a random (seeded) sequence of steps against one store: ``rotation run``,
``forecast``, ``backtest``, ``report``, ``query`` and ``verify``, a second run while a live holder keeps
the run lock, and runs stopped by SIGKILL or SIGTERM at a random moment. On S3 every command reaches the
store through :class:`tests.s3_server.FaultProxy`: a share of 503s all along, and per step, at random,
dropped responses (the request lands, its answer is lost) or an outage that starts in the middle.

After EVERY step it checks the promises of the README against the store itself (for S3 straight at
the server, without faults):

``manifests``  every month's manifest reads, and every artifact it lists exists with its size and sha256
               (:func:`job.store.manifest.verify_manifest`);
``publication`` a month never disappears; what a step changed is what that command may publish: a
               ``run`` replaces the month with a complete publication of its own artifacts, a stage
               command (``forecast``, ``backtest``, ``report``) keeps every other kind's artifacts
               byte for byte; a month changes only through a command that published it;
``query``      ``rotation query`` shows every committed month once in ``runs`` (status ok), each
               (model, asset) exactly once in ``forecasts`` and ``weights``, the weights of the models of
               the month's last run and at least the forecasts the model expects;
``report``     ``rotation report --as-of M`` re-renders every committed month (exit 0, or 2 with one
               line when the month has no report data yet), without republishing it;
``lock``       a lock left behind is taken over within one lease (measured with a real
               :class:`job.store.lock.RunLock`); a SIGTERMed run released its lock;
``processes``  a signalled run leaves no process of its session behind;
``exit``       every exit code is a documented one for that step (never 1), and every failure prints
               exactly one ``error:`` line and no traceback.

``query`` and ``report`` are re-run whenever what they read changed (the manifests' bytes; a month's
report data), since a store with the same manifests and verified files answers the same: re-rendering
two reports after every one of hundreds of steps would not fit the CI budget.

The steps themselves run in this process through :func:`job.cli.main` (cheap), except the signalled
runs: those are real processes forked from a warm ``forkserver`` that imported the job once, each in
its own session, killed with :func:`os.kill`. Where the kernel allows (root: a UTS namespace), half of
them get another host name, so their lock is not recognised as a dead local process and only the lease
can free it, as for a pod on another node.

A failure raises AssertionError with the seed, every step so far with its outcome, and the command
that replays the sequence.
"""

from __future__ import annotations

import contextlib
import ctypes
import hashlib
import json
import multiprocessing
import os
import random
import re
import shutil
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.s3_server import FaultProxy, lock_writes

DOCUMENTED_EXIT_CODES = frozenset({0, 2, 3, 5, 6, 130, 143})
MONTHS = ("2025-11", "2025-12")
BASELINES = ("persistence", "historical-mean", "momentum")
LEASE_S = 3
WAIT_S = 1
LOCK_SLACK_S = 2.5  # poll interval (1 s +-20 %) plus scheduling on a loaded 2-core machine
# What each command may write into a month's publication (a run replaces the month: anything).
MERGE_KINDS = {"forecast": {"forecasts"}, "report": {"reports"},
               "backtest": {"backtest", "backtest_forecasts", "backtest_weights", "metrics", "sweep",
                            "lookahead_backtest"}}
# Cheap but real: the sample market from 2016, a static backtest, one process.
CHEAP_CONFIG = """\
# tests/fault_model.py: the cheapest real monthly job (sample market from 2016, static backtest)
[data]
start = "2016-01"
[backtest]
scheme = "static"
min_train_months = 24
n_jobs = 1
"""
STAGE_RE = re.compile(r"\bstage (\w+)\b")
# Where a signal may land: the start of the process, the start of a stage, or just after the manifest.
ANCHORS = ("start", "dataset", "validate", "train_forecast", "backtest", "publish", "commit", "published")
OTHER_HOST = "stateful-other-host"
READY_QUERIES = sorted(str(p) for p in (Path(__file__).resolve().parents[1] / "sql" / "queries").glob("*.sql"))


# -- outcomes ---------------------------------------------------------------------------------------------

@dataclass
class Outcome:
    """What one command did: exit code (negative: killed by that signal), output and duration."""

    code: int
    stdout: str
    stderr: str
    seconds: float
    note: str = ""

    @property
    def error_lines(self) -> list[str]:
        return [line for line in self.stderr.splitlines() if line.startswith("error: ")]

    def brief(self) -> str:
        last = self.error_lines[-1][:160] if self.error_lines else ""
        extra = f" {self.note}" if self.note else ""
        return f"exit {self.code} in {self.seconds:.1f}s{extra}{' | ' + last if last else ''}"


def call_cli(argv: list[str], env: dict[str, str]) -> Outcome:
    """``rotation ARGV`` in this process (the console script's main), with ``env`` set for the call."""
    from click.testing import CliRunner

    from job.cli import main

    began = time.monotonic()
    runner = CliRunner()
    with runner.isolation(env=env) as (out, err, _):
        try:
            main(list(argv))
            code = 0
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
        sys.stdout.flush()
        sys.stderr.flush()
        return Outcome(code, out.getvalue().decode(errors="replace"), err.getvalue().decode(errors="replace"),
                       time.monotonic() - began)


# -- signalled runs: processes forked from a warm forkserver ------------------------------------------------

ALREADY_PUBLISHED = "is already published from identical inputs"  # what an unchanged rerun prints

PRELOAD = ["job.cli", "job.commands.run", "job.pipeline", "job.stages.data", "job.stages.models",
           "job.stages.evaluation", "job.stages.report", "job.store.s3", "job.store.publish", "job.query",
           "tests.fault_model"]


def _set_hostname(name: str) -> bool:
    """Move this process into a new UTS namespace with host name ``name`` (needs CAP_SYS_ADMIN)."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.unshare(0x04000000) != 0:  # CLONE_NEWUTS
            return False
        raw = name.encode()
        return libc.sethostname(raw, len(raw)) == 0
    except (OSError, AttributeError):
        return False


def _child_main(argv: list[str], env: dict[str, str], out_path: str, err_path: str, other_host: bool) -> None:
    """A forked ``rotation ARGV``: its own session, output to files, exit code as the console script's."""
    os.setsid()
    for fd, path in ((1, out_path), (2, err_path)):
        target = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        os.dup2(target, fd)
        os.close(target)
    os.environ.clear()
    os.environ.update(env)
    if other_host and not _set_hostname(OTHER_HOST):
        sys.stderr.write("note: could not set another host name\n")
    from job.cli import main

    main(argv)


_CONTEXT: Any = None


def forkserver() -> Any:
    """The multiprocessing context whose server preloads the job (started on first use)."""
    global _CONTEXT
    if _CONTEXT is None:
        ctx = multiprocessing.get_context("forkserver")
        ctx.set_forkserver_preload(PRELOAD)
        _CONTEXT = ctx
    return _CONTEXT


def can_use_other_host() -> bool:
    """Whether a child can get another host name (tried in a throwaway child)."""
    ctx = forkserver()
    proc = ctx.Process(target=_probe_hostname)
    proc.start()
    proc.join(60)
    return proc.exitcode == 0


def _probe_hostname() -> None:
    sys.exit(0 if _set_hostname(OTHER_HOST) else 1)


@dataclass
class Child:
    """A signalled run in flight."""

    process: Any
    out: Path
    err: Path
    began: float
    sent: str = ""  # "SIGKILL at stage publish +0.4s", or "" when it ended first
    stage: str = ""

    @property
    def pid(self) -> int:
        return int(self.process.pid)

    def stages(self) -> list[str]:
        try:
            text = self.err.read_text(errors="replace")
        except FileNotFoundError:
            return []
        return STAGE_RE.findall(text)

    def saw(self, anchor: str) -> bool:
        if anchor == "start":
            return True
        try:
            text = self.err.read_text(errors="replace")
        except FileNotFoundError:
            return False
        if anchor == "published":
            return bool(re.search(r"\] published \d{4}-\d{2} run ", text))
        return f"stage {anchor}" in text


def start_child(argv: list[str], env: dict[str, str], workdir: Path, name: str, other_host: bool) -> Child:
    out, err = workdir / f"{name}.out", workdir / f"{name}.err"
    proc = forkserver().Process(target=_child_main, args=(argv, env, str(out), str(err), other_host))
    proc.start()
    return Child(process=proc, out=out, err=err, began=time.monotonic())


def signal_at(child: Child, signum: int, anchor: str, delay: float, timeout: float = 600) -> threading.Thread:
    """In a thread: wait for ``anchor`` in the child's log, then ``delay`` s, then send ``signum``."""
    def watch() -> None:
        deadline = time.monotonic() + timeout
        while child.process.is_alive() and not child.saw(anchor) and time.monotonic() < deadline:
            time.sleep(0.05)
        end = time.monotonic() + delay
        while child.process.is_alive() and time.monotonic() < end:
            time.sleep(0.02)
        if child.process.is_alive():
            stages = child.stages()
            child.stage = stages[-1] if stages else "import"
            with contextlib.suppress(ProcessLookupError):
                os.kill(child.pid, signum)
                child.sent = f"{signal.Signals(signum).name} at {anchor}+{delay:.2f}s (in stage {child.stage})"

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    return thread


def session_leftovers(sid: int) -> list[str]:
    """Processes still in session ``sid`` (the signalled run's own session): ``pid command``."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue
        head, _, rest = text.rpartition(")")
        fields = rest.split()
        if len(fields) > 3 and int(fields[3]) == sid and fields[0] != "Z":
            found.append(f"{stat.parent.name} {head.split('(', 1)[-1]}")
    return found


# -- what the store holds ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class Month:
    """A committed month as its manifest says."""

    sha: str
    run_id: str
    command: str
    complete: bool
    models: tuple[str, ...]
    entries: dict[str, frozenset[tuple[str, str]]]  # kind -> {(path, sha256)}
    publications: tuple[str, ...]  # run ids

    @property
    def kinds(self) -> set[str]:
        return set(self.entries)


def read_months(store: Any) -> dict[str, Month]:
    """Every month's manifest, read straight from the store; a damaged one fails the check."""
    from job.store.manifest import list_manifests, manifest_key, scan_manifests

    scan = scan_manifests(store)
    assert not scan.damaged, f"damaged manifests: {scan.damaged}"
    months: dict[str, Month] = {}
    for manifest in list_manifests(store):
        entries: dict[str, set[tuple[str, str]]] = {}
        for art in manifest["artifacts"]:
            entries.setdefault(art["kind"], set()).add((art["path"], art["sha256"]))
        pubs = manifest.get("publications") or []
        months[manifest["as_of"]] = Month(
            sha=hashlib.sha256(store.get_bytes(manifest_key(manifest["as_of"]))).hexdigest(),
            run_id=manifest["run_id"], command=str(manifest.get("command", "")),
            complete=bool(manifest.get("complete")), models=tuple(manifest.get("models") or ()),
            entries={k: frozenset(v) for k, v in entries.items()},
            publications=tuple(str(p.get("run_id")) for p in pubs))
    return months


def read_lock(store: Any) -> dict[str, Any] | None:
    from job.store.base import ArtifactNotFound
    from job.store.lock import LOCK_KEY

    try:
        data = store.get_bytes(LOCK_KEY)
    except ArtifactNotFound:
        return None
    try:
        value = json.loads(data)
    except ValueError:
        return {"unreadable": data[:80].decode(errors="replace")}
    return value if isinstance(value, dict) else {}


# -- the model --------------------------------------------------------------------------------------------

@dataclass
class Expect:
    """What the model knows a committed month must show."""

    kinds: set[str] = field(default_factory=set)
    weights_models: frozenset[str] = frozenset()
    forecast_models: frozenset[str] = frozenset()


@dataclass
class Step:
    number: int
    action: str
    params: dict[str, Any]
    outcome: str = "(running)"

    def __str__(self) -> str:
        args = ", ".join(f"{k}={v}" for k, v in self.params.items())
        return f"{self.number:4d}. {self.action}({args}) -> {self.outcome}"


@dataclass
class Stats:
    steps: int = 0
    actions: dict[str, int] = field(default_factory=dict)
    kills: int = 0
    terms: int = 0
    signals_late: int = 0  # the run ended before its signal
    other_host: int = 0
    checks: dict[str, int] = field(default_factory=dict)
    lock_takeovers: list[float] = field(default_factory=list)
    ambiguous: int = 0  # a failed or killed command whose publication landed anyway
    codes: dict[str, int] = field(default_factory=dict)
    faults: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0

    def check(self, name: str, count: int = 1) -> None:
        self.checks[name] = self.checks.get(name, 0) + count

    def summary(self) -> str:
        total = sum(self.checks.values())
        worst = max(self.lock_takeovers, default=0.0)
        return (f"{self.steps} steps in {self.seconds:.0f} s; actions {dict(sorted(self.actions.items()))}; "
                f"SIGKILL {self.kills}, SIGTERM {self.terms} sent ({self.signals_late} runs ended first, "
                f"{self.other_host} as another host); {total} invariant checks {dict(sorted(self.checks.items()))}; "
                f"{len(self.lock_takeovers)} locks left behind, taken over after at most {worst:.1f} s "
                f"(lease {LEASE_S} s); {self.ambiguous} publications that landed although the command failed "
                f"or was killed; exit codes {dict(sorted(self.codes.items()))}; "
                f"faults {dict(sorted(self.faults.items()))}")


@dataclass
class Target:
    """One store under test: where it is, how to reach it with and without faults."""

    name: str  # "local" or "s3"
    uri: str
    direct: Any  # an opened store that reaches it without faults
    proxy: FaultProxy | None = None
    base_share: float = 0.0

    def fault_env(self) -> dict[str, str]:
        return {"ROTATION_S3_ENDPOINT": self.proxy.endpoint} if self.proxy else {}


@dataclass
class Budget:
    """How many steps, and at most how many of each costly one (a run costs tens of seconds)."""

    steps: int
    caps: dict[str, int]

    @classmethod
    def scaled(cls, steps: int) -> Budget:
        k = max(1.0, steps / 100)
        base = {"run": 2, "forecast": 3, "backtest": 2, "report": 2, "sigkill": 3, "sigterm": 3,
                "contended": 5, "outage": 1}
        return cls(steps, {name: round(n * k) for name, n in base.items()})


WEIGHTS = {"run": 3, "forecast": 3, "backtest": 2, "report": 3, "query": 5, "verify": 2, "contended": 3,
           "sigkill": 4, "sigterm": 4}


class Violation(AssertionError):
    pass


class Driver:
    """Runs a seeded random sequence of steps against ``target`` and checks the invariants after each."""

    def __init__(self, target: Target, seed: int, budget: Budget, workdir: Path, warehouse: Path,
                 other_host: bool, log: Callable[[str], None] = print) -> None:
        self.target = target
        self.seed = seed
        self.rng = random.Random(f"{seed}/{target.name}")
        self.budget = budget
        self.workdir = workdir
        self.warehouse = warehouse
        self.allow_other_host = other_host
        self.log = log
        self.steps: list[Step] = []
        self.stats = Stats()
        self.expect: dict[str, Expect] = {}
        self.months: dict[str, Month] = {}
        self.used: dict[str, int] = {}
        self._query_memo: str | None = None
        self._report_memo: dict[str, tuple[Any, ...]] = {}
        self._child: Child | None = None
        self.config = workdir / "cheap.toml"
        self.config.write_text(CHEAP_CONFIG)
        self.env = {"ROTATION_CONFIG": str(self.config), "ROTATION_STORE__LOCK_LEASE_S": str(LEASE_S),
                    "ROTATION_STORE__LOCK_WAIT_S": str(WAIT_S), "ROTATION_CACHE_DIR": str(workdir / "cache"),
                    "MPLCONFIGDIR": str(workdir / "mpl"), "TF_CPP_MIN_LOG_LEVEL": "2"}

    # -- running --------------------------------------------------------------------------------------

    def run(self) -> Stats:
        began = time.monotonic()
        try:
            self.months = read_months(self.target.direct)
            self._step("run", {"month": self.rng.choice(MONTHS), "models": self._models()})  # a first month
            while len(self.steps) < self.budget.steps:
                action = self._choose()
                self._step(action, self._params(action))
        finally:
            self.stats.seconds = time.monotonic() - began
            self.stats.steps = len(self.steps)
            if self.target.proxy is not None:
                proxy = self.target.proxy
                self.stats.faults.update({"requests": proxy.requests, "503": proxy.failed, "dropped": proxy.dropped})
        return self.stats

    def _choose(self) -> str:
        names = [a for a in WEIGHTS if self.used.get(a, 0) < self.budget.caps.get(a, 1 << 30)]
        return self.rng.choices(names, weights=[WEIGHTS[a] for a in names])[0]

    def _models(self) -> list[str]:
        return sorted(self.rng.sample(BASELINES, self.rng.randint(1, len(BASELINES))))

    def _params(self, action: str) -> dict[str, Any]:
        """Every random choice of a step, drawn before it runs (so a seed replays the same sequence)."""
        params: dict[str, Any] = {}
        if action in ("run", "forecast", "backtest", "report", "sigkill", "sigterm", "contended"):
            params["month"] = self.rng.choice(MONTHS)
        if action in ("run", "forecast", "backtest", "sigkill", "sigterm", "contended"):
            params["models"] = self._models()
        if action == "query":
            params["sql"] = self.rng.choice([*READY_QUERIES, "SELECT * FROM runs", "SELECT count(*) FROM weights"])
        if action in ("sigkill", "sigterm"):
            anchor = self.rng.choice(ANCHORS)
            params["anchor"] = anchor
            # The commit is short: a signal aimed at it must come within a fraction of a second.
            spread = {"start": 8.0, "commit": 0.25, "published": 0.25}.get(anchor, 1.5)
            params["delay"] = round(self.rng.uniform(0, spread), 2)
            params["other_host"] = self.allow_other_host and self.rng.random() < 0.5
            params["contender"] = self.rng.random() < 0.4
        if self.target.proxy is not None and action not in ("contended",):
            roll = self.rng.random()
            if roll < 0.25:
                params["drop"] = (self.rng.choice(["lock", "manifest", "put", "any"]), self.rng.randint(1, 2))
            elif (roll < 0.6 and action in ("run", "forecast", "backtest")
                  and self.used.get("outage", 0) < self.budget.caps["outage"]):
                params["outage_after"] = round(self.rng.uniform(0.5, 20.0), 1)
                self.used["outage"] = self.used.get("outage", 0) + 1
        return params

    def _step(self, action: str, params: dict[str, Any]) -> None:
        step = Step(len(self.steps) + 1, action, params)
        self.steps.append(step)
        self.used[action] = self.used.get(action, 0) + 1
        self.stats.actions[action] = self.stats.actions.get(action, 0) + 1
        before = self.months
        try:
            with self._faults(params):
                outcomes = getattr(self, f"do_{action}")(step)
            step.outcome = "; ".join(o.brief() for o in outcomes)
            self.log(str(step))
            self.check(step, before, outcomes)
        except Violation as exc:
            raise Violation(self.report(step, str(exc))) from None

    @contextlib.contextmanager
    def _faults(self, params: dict[str, Any]) -> Iterator[None]:
        proxy = self.target.proxy
        if proxy is None:
            yield
            return
        timer = None
        if "drop" in params:
            what, count = params["drop"]
            match = {"lock": lock_writes, "manifest": _manifest_puts, "put": _puts, "any": None}[what]
            proxy.drop_responses(count, match)
            self.stats.faults[f"drop-{what}"] = self.stats.faults.get(f"drop-{what}", 0) + count
        if "outage_after" in params:
            timer = threading.Timer(params["outage_after"], proxy.outage)
            timer.start()
            self.stats.faults["outage"] = self.stats.faults.get("outage", 0) + 1
        try:
            yield
        finally:
            if timer is not None:
                timer.cancel()
            with proxy._lock:
                proxy.down = False
                proxy.share = self.target.base_share
                proxy._drop.clear()

    def report(self, step: Step, problem: str) -> str:
        lines = [f"stateful fault test failed on {self.target.name} ({self.target.uri}), seed {self.seed}, "
                 f"step {step.number}: {problem}", "the sequence:"]
        lines += [str(s) for s in self.steps]
        lines.append(f"replay: ROTATION_STATEFUL_SEED={self.seed} ROTATION_STATEFUL_STEPS={self.budget.steps} "
                     f'.venv/bin/pytest tests/test_stateful.py -k "long and {self.target.name}" -s')
        return "\n".join(lines)

    # -- the commands -----------------------------------------------------------------------------------

    def _group(self, warehouse: Path | None = None) -> list[str]:
        return ["--warehouse", str(warehouse or self.warehouse), "--store", self.target.uri]

    def _run_args(self, month: str, models: list[str]) -> list[str]:
        return ["run", "--as-of", month, "--source", "sample", "--models", ",".join(models), "--no-audit",
                "--skip-ingest"]

    def _call(self, argv: list[str], faults: bool = True, **env: str) -> Outcome:
        merged = {**self.env, **(self.target.fault_env() if faults else {}), **env}
        return call_cli([*self._group(), *argv], merged)

    def do_run(self, step: Step) -> list[Outcome]:
        p = step.params
        return [self._call(self._run_args(p["month"], p["models"]))]

    def do_forecast(self, step: Step) -> list[Outcome]:
        p = step.params
        return [self._call(["forecast", "--as-of", p["month"], "--models", ",".join(p["models"])])]

    def do_backtest(self, step: Step) -> list[Outcome]:
        p = step.params
        return [self._call(["backtest", "--as-of", p["month"], "--models", ",".join(p["models"])])]

    def do_report(self, step: Step) -> list[Outcome]:
        out = self.workdir / "report-step.html"
        return [self._call(["report", "--as-of", step.params["month"], "--quiet", "--output", str(out)])]

    def do_query(self, step: Step) -> list[Outcome]:
        sql = step.params["sql"]
        args = ["query", "--file", sql] if sql.endswith(".sql") else ["query", sql]
        return [self._call([*args, "--format", "csv"])]

    def do_verify(self, step: Step) -> list[Outcome]:
        return [self._call(["verify"])]

    def do_contended(self, step: Step) -> list[Outcome]:
        """A second run while a live holder (this test, through the real RunLock) keeps the lock."""
        from job.store.lock import RunLock

        p = step.params
        with RunLock(self.target.direct, "stateful test: the live holder", LEASE_S) as holder:
            outcome = self._call(self._run_args(p["month"], p["models"]))
            holder.assert_held()
        return [outcome]

    def _signalled(self, step: Step, signum: int) -> list[Outcome]:
        p = step.params
        name = f"step{step.number:04d}"
        warehouse = self.workdir / f"{name}.duckdb"  # each process its own warehouse, as each pod has
        shutil.copyfile(self.warehouse, warehouse)
        env = {**{k: v for k, v in os.environ.items() if not k.startswith("ROTATION_")},
               **self.env, **self.target.fault_env()}
        argv = [*self._group(warehouse), *self._run_args(p["month"], p["models"])]
        child = start_child(argv, env, self.workdir, name, p["other_host"])
        watcher = signal_at(child, signum, p["anchor"], p["delay"])
        outcomes: list[Outcome] = []
        if p["contender"]:
            outcomes.append(self._contend(child))
        child.process.join(600)
        watcher.join(5)
        if child.process.is_alive():
            os.kill(child.pid, signal.SIGKILL)
            child.process.join(10)
            raise Violation(f"the run (pid {child.pid}) did not end within 600 s")
        code = child.process.exitcode
        time.sleep(0.5)  # workers of a killed run get a moment to notice
        leftovers = session_leftovers(child.pid)
        self.stats.check("processes")
        for line in leftovers:
            with contextlib.suppress(ProcessLookupError, ValueError):
                os.kill(int(line.split()[0]), signal.SIGKILL)
        if leftovers:
            raise Violation(f"the signalled run left processes behind: {leftovers}")
        # A signal sent in the instant the run ended (not yet reaped) changed nothing: the exit code tells.
        effective = code in ((-9,) if signum == signal.SIGKILL else (143, -15))
        if child.sent and not effective:
            child.sent += " (too late: the run had ended)"
        if child.sent and effective:
            if signum == signal.SIGKILL:
                self.stats.kills += 1
            else:
                self.stats.terms += 1
            self.stats.other_host += int(p["other_host"])
        else:
            self.stats.signals_late += 1
        outcome = Outcome(code, child.out.read_text(errors="replace"), child.err.read_text(errors="replace"),
                          time.monotonic() - child.began, note=child.sent or "ended before the signal")
        outcome.note += f" pid {child.pid}"
        self._child = child
        return [outcome, *outcomes]

    def _contend(self, child: Child) -> Outcome:
        """Once the child holds the lock, a second run (in this process) that must not get it."""
        deadline = time.monotonic() + 120
        while child.process.is_alive() and time.monotonic() < deadline:
            lock = read_lock(self.target.direct)
            if lock and lock.get("pid") == child.pid:
                break
            time.sleep(0.1)
        else:
            return Outcome(0, "", "", 0.0, note="(no contender: the run ended before it held the lock)")
        p = self.steps[-1].params
        outcome = self._call(self._run_args(p["month"], p["models"]))
        outcome.note = "(contender)"
        return outcome

    def do_sigkill(self, step: Step) -> list[Outcome]:
        return self._signalled(step, signal.SIGKILL)

    def do_sigterm(self, step: Step) -> list[Outcome]:
        return self._signalled(step, signal.SIGTERM)

    # -- the invariants -------------------------------------------------------------------------------

    def check(self, step: Step, before: dict[str, Month], outcomes: list[Outcome]) -> None:
        self._check_exits(step, outcomes)
        if step.action == "sigterm" and outcomes[0].code in (143, -15):
            self._check_released(outcomes[0])
        self._check_lock()
        after = self._check_manifests()
        self._check_publication(step, before, after, outcomes)
        self.months = after
        self._check_query()
        self._check_reports()

    def _allowed(self, step: Step, outcome: Outcome, index: int) -> set[int]:
        s3 = self.target.proxy is not None
        store_codes = {5} if s3 else set()
        if "outage_after" in step.params or "drop" in step.params:
            store_codes |= {5}
        action = step.action
        if index > 0 or action == "contended":  # a second run while a live run holds the lock
            return {6} if action == "contended" else {0, 6} | store_codes
        if action in ("run", "forecast", "backtest"):
            return {0} | store_codes
        if action == "report":
            return {0, 2} | store_codes
        if action in ("query", "verify"):
            return {0} | store_codes
        if action == "sigkill":
            return {-9, 0} | store_codes | ({6} if step.params["contender"] else set())
        return {143, -15, 0} | store_codes | ({6} if step.params["contender"] else set())

    def _check_exits(self, step: Step, outcomes: list[Outcome]) -> None:
        for index, outcome in enumerate(outcomes):
            if "(no contender" in outcome.note:
                continue
            self.stats.check("exit")
            key = f"{step.action}{'-contender' if index else ''}:{outcome.code}"
            self.stats.codes[key] = self.stats.codes.get(key, 0) + 1
            if outcome.code >= 0 and outcome.code not in DOCUMENTED_EXIT_CODES:
                raise Violation(f"exit code {outcome.code} is not a documented one; stderr:\n{outcome.stderr[-3000:]}")
            if outcome.code not in self._allowed(step, outcome, index):
                raise Violation(f"exit code {outcome.code} is not what {step.action} may give here "
                                f"({sorted(self._allowed(step, outcome, index))}); stderr:\n{outcome.stderr[-3000:]}")
            if "Traceback (most recent call last)" in outcome.stderr:
                raise Violation(f"a traceback on stderr:\n{outcome.stderr[-3000:]}")
            if outcome.code > 0 and len(outcome.error_lines) != 1:
                raise Violation(f"exit {outcome.code} with {len(outcome.error_lines)} error lines, not one:\n"
                                f"{outcome.stderr[-3000:]}")
            holder_named = "another run holds the store's run lock" in "".join(outcome.error_lines)
            if outcome.code == 6 and (step.action == "contended" or index > 0) and not holder_named:
                raise Violation(f"the second run's line does not name the holder: {outcome.error_lines[0]}")

    def _check_released(self, outcome: Outcome) -> None:
        """A run stopped by SIGTERM released its lock (unless its last line says it could not)."""
        self.stats.check("lock-released")
        child = self._child
        assert child is not None
        lock = read_lock(self.target.direct)
        ours = lock is not None and lock.get("pid") == child.pid
        if ours and outcome.code == -15:
            return  # the signal came before the handler was installed (the process died as by default)
        if ours and "could not be released" not in outcome.stderr:
            raise Violation(f"the SIGTERMed run (pid {child.pid}) left its lock although it says it released "
                            f"it: {lock}")

    def _check_lock(self) -> None:
        """A lock left behind (no run is alive now) is taken over within one lease."""
        from job.store.lock import RunLock

        lock = read_lock(self.target.direct)
        if lock is None:
            return
        self.stats.check("lock-takeover")
        began = time.monotonic()
        with RunLock(self.target.direct, "stateful test: the next run", LEASE_S, wait_s=LEASE_S + 10):
            waited = time.monotonic() - began
        self.stats.lock_takeovers.append(waited)
        if waited > LEASE_S + LOCK_SLACK_S:
            raise Violation(f"a lock left behind ({lock}) delayed the next holder {waited:.1f} s, more than one "
                            f"lease ({LEASE_S} s) plus {LOCK_SLACK_S} s")

    def _check_manifests(self) -> dict[str, Month]:
        from job.store.manifest import list_manifests, verify_manifest

        try:
            after = read_months(self.target.direct)
        except AssertionError as exc:
            raise Violation(str(exc)) from None
        for manifest in list_manifests(self.target.direct):
            self.stats.check("manifest")
            problems = verify_manifest(self.target.direct, manifest)
            if problems:
                raise Violation(f"{manifest['as_of']}: {problems}")
        return after

    def _check_publication(self, step: Step, before: dict[str, Month], after: dict[str, Month],
                           outcomes: list[Outcome]) -> None:
        p = step.params
        ok = outcomes[0].code == 0 and step.action in ("run", "forecast", "backtest")
        for month in sorted(set(before) | set(after)):
            self.stats.check("publication")
            old, new = before.get(month), after.get(month)
            if new is None:
                raise Violation(f"{month} was published and is gone")
            mine = p.get("month") == month
            if old is not None and old.sha == new.sha:
                if ok and mine and step.action == "run" and ALREADY_PUBLISHED in outcomes[0].stdout:
                    # a run of inputs the month was published from publishes nothing: only after a run
                    # of the same models (a stage command since, or other models, would change them)
                    self.stats.check("unchanged rerun")
                    if old.command != "run" or sorted(old.models) != sorted(p["models"]) or not old.complete:
                        raise Violation(f"run said {month} was already published from its inputs, but the "
                                        f"month's last publication was {old.command} of {old.models}")
                    continue
                if ok and mine and step.action != "contended":
                    raise Violation(f"{step.action} exited 0 but {month}'s manifest did not change")
                continue
            if not mine or step.action in ("query", "verify", "contended"):
                raise Violation(f"{month} changed during {step.action} of {p.get('month')}: {old} -> {new}")
            failed = all(o.code != 0 for o in outcomes if "(no contender" not in o.note)
            if failed:
                self.stats.ambiguous += 1
            new_runs = [r for r in new.publications if old is None or r not in old.publications]
            if new.command == "run":
                self._check_replace(month, new, step)
            else:
                if new.command != step.action:
                    raise Violation(f"{month} was published by {new.command} during {step.action}")
                self._check_merge(month, old, new, step.action)
            if not new_runs:
                raise Violation(f"{month} changed without a new publication entry")

    def _check_replace(self, month: str, new: Month, step: Step) -> None:
        from job.store.publish import COMPLETE_KINDS

        if step.action not in ("run", "sigkill", "sigterm"):
            raise Violation(f"{month} was replaced by a run during {step.action}")
        if not new.complete or not set(COMPLETE_KINDS) <= new.kinds:
            raise Violation(f"{month}: a run published an incomplete month: {sorted(new.kinds)}")
        foreign = {path for entries in new.entries.values() for path, _ in entries if new.run_id not in path}
        if foreign:
            raise Violation(f"{month}: the run's manifest lists other runs' files: {sorted(foreign)[:3]}")
        if sorted(new.models) != sorted(step.params["models"]):
            raise Violation(f"{month}: the run published models {new.models}, asked {step.params['models']}")
        self.expect[month] = Expect(kinds=set(new.kinds), weights_models=frozenset(new.models),
                                    forecast_models=frozenset(new.models))

    def _check_merge(self, month: str, old: Month | None, new: Month, command: str) -> None:
        written = {k for k in new.kinds if old is None or new.entries[k] != old.entries.get(k)}
        if not written <= MERGE_KINDS[command]:
            foreign = sorted(written - MERGE_KINDS[command])
            raise Violation(f"{month}: {command} rewrote kinds it does not own: {foreign}")
        if old is not None:
            hidden = old.kinds - new.kinds
            if hidden:
                raise Violation(f"{month}: {command} hid kinds another command published: {sorted(hidden)}")
        expect = self.expect.setdefault(month, Expect())
        expect.kinds |= new.kinds
        if command == "forecast":
            expect.forecast_models |= frozenset(self.steps[-1].params.get("models", ()))

    def _query(self, sql: str) -> list[list[str]]:
        outcome = self._call(["query", sql, "--format", "csv"], faults=False)
        if outcome.code != 0:
            raise Violation(f"rotation query failed: {outcome.brief()}\n{outcome.stderr[-2000:]}")
        rows = [line.split(",") for line in outcome.stdout.strip().splitlines()]
        return rows[1:]

    def _check_query(self) -> None:
        key = "|".join(f"{m}:{s.sha}" for m, s in sorted(self.months.items()))
        if key == self._query_memo:
            return
        self.stats.check("query")
        rows = self._query(
            "SELECT 'forecasts', CAST(as_of AS VARCHAR), model, asset, count(*) FROM forecasts GROUP BY ALL "
            "UNION ALL SELECT 'weights', CAST(as_of AS VARCHAR), model, asset, count(*) FROM weights GROUP BY ALL "
            "UNION ALL SELECT 'runs', CAST(as_of AS VARCHAR), status, run_id, 1 FROM runs")
        runs = {r[1]: (r[2], r[3]) for r in rows if r[0] == "runs"}
        if set(runs) != set(self.months):
            raise Violation(f"runs shows {sorted(runs)}, the manifests {sorted(self.months)}")
        for month, (status, run_id) in runs.items():
            if status != "ok" or run_id != self.months[month].run_id:
                raise Violation(f"runs shows {month} as {status} run {run_id}, its manifest "
                                f"{self.months[month].run_id}")
        twice = [r for r in rows if r[0] != "runs" and r[4] != "1"]
        if twice:
            raise Violation(f"rows shown more than once: {twice[:5]}")
        for month in self.months:
            expect = self.expect.get(month, Expect())
            weights = {r[2] for r in rows if r[0] == "weights" and r[1] == month}
            forecasts = {r[2] for r in rows if r[0] == "forecasts" and r[1] == month}
            if weights != set(expect.weights_models):
                raise Violation(f"{month}: weights of {sorted(weights)}, expected {sorted(expect.weights_models)}")
            if not set(expect.forecast_models) <= forecasts:
                raise Violation(f"{month}: forecasts of {sorted(forecasts)}, expected at least "
                                f"{sorted(expect.forecast_models)}")
            for kind, models in (("forecasts", forecasts), ("weights", weights)):
                for model in models:
                    assets = {r[3] for r in rows if r[0] == kind and r[1] == month and r[2] == model}
                    if len(assets) != 12:
                        raise Violation(f"{month}: {kind} of {model} for {len(assets)} assets, not 12")
        self._query_memo = key

    def _check_reports(self) -> None:
        """Every committed month re-renders: exit 0 when it holds every kind a run publishes, else 0 or 2
        (one line naming what is missing). A month merged into since its report was rendered gets a new
        report merged in (the re-rendering is the report step's job too); a second re-rendering must then
        leave it alone: the rendering is reproducible from the published artifacts."""
        from job.store.publish import COMPLETE_KINDS

        inputs = set(COMPLETE_KINDS) - {"reports"}
        for month in sorted(self.months):
            for attempt in (1, 2):
                state = self.months[month]
                key = tuple(sorted((k, v) for k, v in state.entries.items()))
                if self._report_memo.get(month) == key:
                    break
                self.stats.check("report")
                out = self.workdir / f"report-{month}.html"
                outcome = self._call(["report", "--as-of", month, "--quiet", "--output", str(out)], faults=False)
                complete = inputs <= state.kinds
                if outcome.code != 0 and (complete or outcome.code != 2 or len(outcome.error_lines) != 1):
                    raise Violation(f"rotation report --as-of {month} (kinds {sorted(state.kinds)}) gave "
                                    f"{outcome.brief()}\n{outcome.stderr[-2000:]}")
                now = read_months(self.target.direct)
                if now[month].sha != state.sha:
                    if attempt == 2:
                        raise Violation(f"re-rendering {month}'s report twice republished it twice: the "
                                        "rendering is not reproducible from the published artifacts")
                    self._check_merge(month, state, now[month], "report")
                    self.stats.check("report-merged")
                    self.months = now
                    continue
                self._report_memo[month] = key
                break


def _puts(method: str, path: str, headers: dict[str, str]) -> bool:
    return method == "PUT"


def _manifest_puts(method: str, path: str, headers: dict[str, str]) -> bool:
    return method == "PUT" and path.split("?", 1)[0].endswith("/manifest.json")


def describe_machine() -> str:
    load = os.getloadavg()
    return f"{os.cpu_count()} CPUs, load {load[0]:.1f} {load[1]:.1f} {load[2]:.1f}"


__all__ = ["Budget", "Driver", "Outcome", "Stats", "Target", "Violation", "call_cli", "can_use_other_host",
           "describe_machine"]
