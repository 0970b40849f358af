"""Content-addressed fits: plan fits by identity, reuse what the registry holds, run the rest anywhere.

A walk-forward (or the live fit of the as-of month) is a list of :class:`FoldPlan`: a fit
(:class:`FitSpec`, named by its identity, see :func:`job.models.registry.fit_identity`) and the decision
months it forecasts, each with the fingerprint of the feature window it reads. :class:`FitRunner` then

1. reads the forecasts the registry already holds for those fits (one listing per model, one small file
   per fit), keyed by (decision month, window fingerprint);
2. forecasts the missing months of fits that are stored (load, predict) in this process;
3. fits what is not stored on an :mod:`job.cluster` executor (this process, the local pool, a Dask
   cluster), storing each fit and its forecasts as it completes, so an interrupted backfill resumes;
4. fits the ensembles last, in this process, from their members' fits.

Hyperparameter tuning (``backtest.tune_months``): a searched fit's identity says so; a refit between two
searches names the searched fit whose choice it carries, and is submitted as soon as that fit ends (or
at once when it is stored). An ensemble's identity names its members' fits.

Bit-for-bit rule: every fit and every forecast runs under one BLAS thread and forecasts one month at a
time (:func:`predict_rows`), so a month forecast with its fold, alone next month, in a pool worker or on
a Dask worker gives the same bits.
"""

from __future__ import annotations

import functools
import os
import socket
import time
from collections.abc import Callable, Collection, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import clone
from threadpoolctl import ThreadpoolController

from job.cluster import executor as make_executor
from job.dataset import Dataset
from job.errors import ConfigError
from job.logs import get_logger
from job.models.registry import (
    FORECASTS_DIR,
    METADATA,
    CorruptModel,
    ModelRegistry,
    RowDigests,
    config_fingerprint,
    data_fingerprint,
    fit_identity,
    fit_prefix,
    identity_libraries,
    library_versions,
    model_summary,
    serialise_model,
    training_window,
)
from job.months import month_str
from job.progress import Progress
from job.schedule import Fold, live_months, tuning_folds, walk_forward_folds

log = get_logger("fits")

ModelFactory = Callable[..., Any]
# Fitted locally in this process, not in pool workers: TensorFlow already uses both cores for one fit and
# each worker would import its own (~2 GB). On a Dask cluster they run on the workers like the others.
SEQUENTIAL_MODELS = frozenset({"lstm"})
# At most this many pool-eligible fits run in this process rather than on the local pool (not on a cluster).
SMALL_BATCH = 4
# Fits that need no search (ridge's months, a tuning period's carried refits) travel to a worker in tasks of
# at most this many: a ridge + tree backfill is ~45 tasks instead of 346 (fewer scheduler transitions and
# result messages; a task still lasts about a second, so two workers stay balanced). On the 2-core
# benchmark machine the cluster's overhead was mostly its nanny processes, not the tasks (BENCHMARKS.md 7).
BATCH_FITS = 12


# ---- identities and plans -------------------------------------------------------------------------------------

@dataclass(frozen=True, eq=False)
class FitSpec:
    """One fit, by identity: model, fit month (last label month it may see), training rows, provenance."""

    model: str
    fit_month: pd.Period
    fit_id: str
    identity: dict[str, Any]
    row_months: pd.PeriodIndex
    cacheable: bool
    search: bool | None = None
    carried_from: FitSpec | None = None
    members: dict[str, FitSpec] = field(default_factory=dict)
    masked: tuple[str, ...] = ()  # features it does not use (expired by its fit month: Dataset.masked_at)

    @property
    def prefix(self) -> str:
        return fit_prefix(self.model, month_str(self.fit_month), self.fit_id)

    @property
    def label(self) -> str:
        return f"{self.model}@{month_str(self.fit_month)}"

    @property
    def n_train(self) -> int:
        return len(self.row_months)

    @property
    def train_end(self) -> pd.Period:
        """The last label month the fit saw."""
        return self.row_months.max() + 1


@dataclass(frozen=True, eq=False)
class FoldPlan:
    """A fit and the decision months it forecasts, with the fingerprint of each month's feature window."""

    spec: FitSpec
    months: pd.PeriodIndex
    windows: tuple[str, ...]


class Planner:
    """Names the fits of one dataset and configuration (see the module docstring).

    ``factories`` maps model names to custom zero-argument estimator factories (tests, benchmarks);
    their fits are identified by a hash of the factory and never stored (their types are not in the
    registry's trusted list).
    """

    def __init__(self, dataset: Dataset, settings: Any, *, factories: Mapping[str, ModelFactory] | None = None) -> None:
        self.dataset, self.settings = dataset, settings
        self.lookback = int(settings.models.lookback_months)
        self._digests: dict[tuple[str, ...], RowDigests] = {}
        self._custom = dict(factories or {})
        self._config: dict[str, str] = {}
        self._tunable: dict[str, bool] = {}
        self._rows: dict[pd.Period, tuple[str, pd.PeriodIndex]] = {}
        self._windows: dict[tuple[tuple[str, ...], pd.Period], str] = {}

    def digests(self, masked: tuple[str, ...] = ()) -> RowDigests:
        """Row digests of the dataset as fits that do not use ``masked`` read it (:meth:`Dataset.view`)."""
        if masked not in self._digests:
            self._digests[masked] = RowDigests(self.dataset, self.lookback, masked=masked)
        return self._digests[masked]

    def factory(self, name: str) -> ModelFactory:
        """A picklable factory: called with no arguments (the ensemble's: ``members=...``) it builds a
        fresh unfitted forecaster."""
        if name in self._custom:
            return self._custom[name]
        from job.models.factory import build_model

        return functools.partial(build_model, name, self.settings,
                                 return_feature_index=tuple(self.dataset.return_feature_index()))

    def cacheable(self, name: str) -> bool:
        return name not in self._custom

    def config(self, name: str) -> str:
        if name not in self._config:
            if name in self._custom:
                import joblib

                self._config[name] = "custom-" + joblib.hash(self._custom[name])[:16]
            else:
                self._config[name] = config_fingerprint(name, self.settings)
        return self._config[name]

    def tunable(self, name: str) -> bool:
        """Whether ``name`` can carry a search's choice to later refits (``tuned_clone``)."""
        if name not in self._tunable:
            self._tunable[name] = name != "ensemble" and hasattr(self.factory(name)(), "tuned_clone")
        return self._tunable[name]

    def rows(self, fit_month: pd.Period) -> tuple[str, pd.PeriodIndex]:
        if fit_month not in self._rows:
            self._rows[fit_month] = self.digests(self.dataset.masked_at(fit_month)).rows(fit_month)
        return self._rows[fit_month]

    def window(self, month: pd.Period, masked: tuple[str, ...] = ()) -> str:
        if (masked, month) not in self._windows:
            self._windows[(masked, month)] = self.digests(masked).window(month)
        return self._windows[(masked, month)]

    def spec(self, name: str, fit_month: pd.Period, *, search: bool | None = None,
             carried_from: FitSpec | None = None, members: Mapping[str, FitSpec] | None = None) -> FitSpec:
        rows, row_months = self.rows(fit_month)
        if len(row_months) == 0:
            raise ConfigError(f"no training rows for {name} at {month_str(fit_month)}")
        fit_id, identity = fit_identity(
            name=name, config=self.config(name), rows=rows, libraries=identity_libraries(name), search=search,
            carried_from=carried_from.fit_id if carried_from is not None else None,
            members={n: s.fit_id for n, s in members.items()} if members else None)
        cacheable = self.cacheable(name) and all(s.cacheable for s in (members or {}).values())
        masked = self.dataset.masked_at(fit_month)
        different = {n: s.label for n, s in (members or {}).items() if s.masked != masked}
        if different:  # the ensemble passes its own inputs to its members (walk_forward_folds' breaks)
            raise ConfigError(f"ensemble at {month_str(fit_month)} would combine fits that use other features "
                              f"({', '.join(different.values())})")
        return FitSpec(model=name, fit_month=fit_month, fit_id=fit_id, identity=identity, row_months=row_months,
                       cacheable=cacheable, search=search, carried_from=carried_from, members=dict(members or {}),
                       masked=masked)

    def fold_plan(self, spec: FitSpec, months: pd.PeriodIndex) -> FoldPlan:
        return FoldPlan(spec=spec, months=months, windows=tuple(self.window(m, spec.masked) for m in months))

    def plan(self, name: str, folds: Sequence[Fold], tune_months: int) -> list[FoldPlan]:
        """One plan per fold; with a tunable model, searches per :func:`job.schedule.tuning_folds`."""
        tunable = self.tunable(name)
        flags = tuning_folds(folds, tune_months) if tunable else [None] * len(folds)
        plans, last = [], None
        for fold, flag in zip(folds, flags, strict=True):
            spec = self.spec(name, fold.fit_month, search=flag, carried_from=None if flag in (None, True) else last)
            if flag:
                last = spec
            plans.append(self.fold_plan(spec, fold.decision_months))
        return plans

    def plan_ensemble(self, folds: Sequence[Fold], members: Mapping[str, Sequence[FoldPlan]]) -> list[FoldPlan]:
        """The ensemble's plans: at each fit month, the latest fit of each member (its own cadence)."""
        plans = []
        for fold in folds:
            chosen = {}
            for name, member_plans in members.items():
                earlier = [p.spec for p in member_plans if p.spec.fit_month <= fold.fit_month]
                if not earlier:
                    raise ConfigError(f"ensemble member {name} has no fit at or before {month_str(fold.fit_month)}")
                chosen[name] = earlier[-1]
            plans.append(self.fold_plan(self.spec("ensemble", fold.fit_month, members=chosen), fold.decision_months))
        return plans

    def live_plans(self, names: Sequence[str], as_of: pd.Period) -> dict[str, FoldPlan]:
        """The live fit of each of ``names`` at ``as_of``: the walk-forward fold containing ``as_of`` when
        the walk-forward's schedule is extended by the live month (:func:`job.schedule.live_months`), with
        the forecast for ``as_of`` (the ensemble's members are planned too, first)."""
        from job.models.factory import ensemble_member_names

        models = self.settings.models
        months = live_months(self.dataset, self.lookback, int(self.settings.backtest.min_train_months), as_of)
        tune = int(self.settings.backtest.tune_months)
        order = list(dict.fromkeys([*(ensemble_member_names(self.settings) if "ensemble" in names else []),
                                    *[n for n in names if n != "ensemble"]]))
        full: dict[str, list[FoldPlan]] = {}
        out: dict[str, FoldPlan] = {}
        breaks = self.dataset.feature_breaks
        for name in order:
            full[name] = self.plan(name, walk_forward_folds(months, int(models.refit_months.get(name, 1)), breaks),
                                   tune)
        if "ensemble" in names:
            members = {n: full[n] for n in ensemble_member_names(self.settings)}
            full["ensemble"] = self.plan_ensemble(
                walk_forward_folds(months, int(models.refit_months.get("ensemble", 1)), breaks), members)
        for name, plans in full.items():
            spec = next(p.spec for p in plans if as_of in p.months)
            out[name] = self.fold_plan(spec, pd.PeriodIndex([as_of]))
        return out


# ---- the task a worker runs ----------------------------------------------------------------------------------

@dataclass(frozen=True)
class FitTask:
    """What a worker needs for one fit (the dataset travels separately, once)."""

    fit_id: str
    label: str
    fit_month: pd.Period
    months: pd.PeriodIndex
    lookback: int
    factory: ModelFactory
    search: bool | None
    serialise: bool
    keep: bool
    libraries: dict[str, str]
    member_prefixes: dict[str, str] | None = None
    masked: tuple[str, ...] = ()


@dataclass
class FitOutcome:
    """A finished fit: forecasts, the stored form of the model, and what its metadata needs."""

    predicted: np.ndarray
    files: dict[str, bytes]
    summary: dict[str, Any]
    seconds: float
    tuned: Any = None
    model: Any = None
    ran_on: str = ""


@functools.cache
def _controller() -> ThreadpoolController:
    # threadpool_limits() scans the process's loaded libraries on every call (~4-7 ms; two calls per fit were
    # 2.2 s of a 173-fit backfill's CPU per model); one controller per process, built at the first fit, when
    # numpy's and scipy's BLAS are loaded (TensorFlow's kernels do not use them).
    return ThreadpoolController()


def one_blas_thread() -> Any:
    """A context in which BLAS runs on one thread (the bit-for-bit rule in the module docstring)."""
    return _controller().limit(limits=1, user_api="blas")


def predict_rows(model: Any, X: np.ndarray) -> np.ndarray:
    """``model.predict`` one window at a time under one BLAS thread: a month's forecast does not depend on
    which other months were forecast with it, nor on the machine's thread count."""
    with one_blas_thread():
        rows = [np.asarray(model.predict(X[i:i + 1]), dtype=np.float64).reshape(-1) for i in range(len(X))]
    return np.vstack(rows) if rows else np.empty((0, 0))


def fit_task(task: FitTask, dataset: Dataset) -> FitOutcome:
    """Fit ``task.factory()`` on the training rows at ``task.fit_month`` and forecast ``task.months``.

    Runs anywhere (this process, a pool worker, a Dask worker); raises ConfigError when the worker's
    libraries differ from the ones in the fit's identity (its numbers would not be that fit's).
    """
    here = library_versions()
    different = {k: (here.get(k), v) for k, v in task.libraries.items() if here.get(k) != v}
    if different:
        raise ConfigError(f"{socket.gethostname()} cannot fit {task.label}: its libraries differ from the run's "
                          f"({', '.join(f'{k} {a} here, {b} there' for k, (a, b) in different.items())})",
                          hint="run the workers on the job's own image")
    dataset = dataset.view(task.masked)
    X, y, _ = dataset.training_set(task.lookback, as_of=task.fit_month)
    with one_blas_thread():
        began = time.perf_counter()
        model = task.factory()
        model.fit(X, y)
        seconds = time.perf_counter() - began
    predicted = predict_rows(model, dataset.windows(task.lookback, task.months)) if len(task.months) else \
        np.empty((0, len(dataset.assets)))
    files, summary = {}, {}
    if task.serialise:
        files = serialise_model(model, task.member_prefixes)
        summary = model_summary(model, dataset.assets)
        if hasattr(model, "weights_"):
            summary["weights"] = dict(model.weights_)
    tuned = model.tuned_clone() if task.search and hasattr(model, "tuned_clone") else None
    return FitOutcome(predicted=predicted, files=files, summary=summary, seconds=seconds, tuned=tuned,
                      model=model if task.keep else None, ran_on=f"{socket.gethostname()}:{os.getpid()}")


@dataclass(frozen=True)
class FitBatch:
    """Fits that travel to a worker together (see :data:`BATCH_FITS`); one fit for a search or the LSTM."""

    tasks: tuple[FitTask, ...]

    @property
    def label(self) -> str:
        first, last = self.tasks[0].label, self.tasks[-1].label
        return first if len(self.tasks) == 1 else f"{first}..{last.split('@')[-1]}"


def fit_batch(batch: FitBatch, dataset: Dataset) -> list[FitOutcome]:
    """:func:`fit_task` for each of ``batch``'s fits, in order (what an executor runs)."""
    return [fit_task(task, dataset) for task in batch.tasks]


# ---- running plans -------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class FoldResult:
    """A plan's forecasts, ``(len(plan.months), n_assets)``, and how they were obtained."""

    plan: FoldPlan
    predicted: np.ndarray
    seconds: float | None
    fitted: bool


@dataclass(eq=False)
class _State:
    spec: FitSpec
    wanted: dict[tuple[str, str], pd.Period] = field(default_factory=dict)
    got: dict[tuple[str, str], np.ndarray] = field(default_factory=dict)
    seconds: float | None = None
    fit: bool = False
    fitted: bool = False

    def missing(self) -> list[tuple[str, str]]:
        return [k for k in self.wanted if k not in self.got]


@dataclass
class RunStats:
    """What a :meth:`FitRunner.run` did (logged; benchmarks and tests read it)."""

    fitted: int = 0
    reused: int = 0
    forecasts_reused: int = 0
    forecasts_from_stored_fits: int = 0
    executor: str = ""
    ran_on: dict[str, int] = field(default_factory=dict)


class FitRunner:
    """Runs :class:`FoldPlan` lists against a registry (see the module docstring).

    ``registry`` None: nothing is read or stored (every fit runs). ``recompute``: True refits everything,
    or a collection of model names to refit. ``keep``: model names whose fitted objects stay in memory
    (:meth:`model`), e.g. uncacheable ensemble members. ``data_fingerprint`` (of the whole dataset; default:
    computed) goes into new fits' metadata. ``on_corrupt``: ``"retrain"`` (a stored fit that
    fails its checksum is refitted, with a warning) or ``"fail"`` (CorruptModel is raised).
    """

    def __init__(self, planner: Planner, registry: ModelRegistry | None, *, recompute: bool | Collection[str] = False,
                 n_jobs: int = 1, cluster: str | None = None, keep: Collection[str] = (),
                 on_corrupt: str = "retrain", label: str = "fits", data_fingerprint: str | None = None) -> None:
        self.planner, self.registry = planner, registry
        self.dataset = planner.dataset
        self._recompute = recompute
        self.n_jobs, self.cluster = n_jobs, cluster
        self._keep = set(keep)
        self.on_corrupt = on_corrupt
        self.label = label
        self._states: dict[str, _State] = {}
        self._listing: dict[str, set[str]] = {}
        self._tuned: dict[str, Any] = {}
        self._waiting: dict[str, list[_State]] = {}
        self._models: dict[str, Any] = {}
        self._loaded: dict[str, tuple[str, Any]] = {}
        self._dataset_fp = data_fingerprint
        self._need_objects: set[str] = set()
        self.fitted: dict[str, float] = {}  # fit_id -> seconds, of the fits made by this runner
        self.stats = RunStats()

    # -- what the registry holds ---------------------------------------------------------------------

    def _reuse(self, spec: FitSpec) -> bool:
        if self.registry is None or not spec.cacheable:
            return False
        if isinstance(self._recompute, bool):
            return not self._recompute
        return spec.model not in self._recompute

    def _keys(self, model: str) -> set[str]:
        if model not in self._listing:
            assert self.registry is not None
            self._listing[model] = set(self.registry.store.list(f"models/{model}/"))
        return self._listing[model]

    def _stored(self, spec: FitSpec) -> bool:
        return self._reuse(spec) and f"{spec.prefix}/{METADATA}" in self._keys(spec.model)

    def _forecast_keys(self, spec: FitSpec) -> list[str]:
        head = f"{spec.prefix}/{FORECASTS_DIR}/"
        return sorted(k for k in self._keys(spec.model) if k.startswith(head))

    def _read_cached(self, states: Sequence[_State]) -> None:
        readable = [(st, keys) for st in states if self._stored(st.spec) and (keys := self._forecast_keys(st.spec))]
        if not readable:
            return
        assert self.registry is not None
        registry, assets = self.registry, self.dataset.assets
        with ThreadPoolExecutor(max_workers=8) as pool:  # S3 GETs overlap; a local folder does not mind
            for (st, _), (cached, seconds) in zip(readable, pool.map(lambda item: registry.forecasts(item[1], assets),
                                                                     readable), strict=True):
                for key in st.wanted:
                    if key in cached:
                        st.got[key] = cached[key]
                        self.stats.forecasts_reused += 1
                st.seconds = seconds

    # -- models -------------------------------------------------------------------------------------

    def model(self, spec: FitSpec) -> Any:
        """The fitted model of ``spec``: kept from this run, else loaded from the registry (CorruptModel per
        ``on_corrupt``: refitted here, or raised)."""
        if spec.fit_id in self._models:
            return self._models[spec.fit_id]
        latest = self._loaded.get(spec.model)
        if latest is not None and latest[0] == spec.fit_id:
            return latest[1]
        stored_now = spec.cacheable and self.registry is not None and spec.fit_id in self.fitted
        if not (stored_now or self._stored(spec)):
            return self._fit_here(spec)
        assert self.registry is not None
        try:
            members = {n: self.model(s) for n, s in spec.members.items()}
            model = self.registry.load(spec.prefix, members=members or None)
        except CorruptModel as exc:
            if self.on_corrupt == "fail":
                raise
            log.warning("%s; refitting (models.on_corrupt_model=retrain)", exc.one_line())
            self._listing.get(spec.model, set()).discard(f"{spec.prefix}/{METADATA}")
            return self._fit_here(spec)
        self._loaded[spec.model] = (spec.fit_id, model)  # one per model: ensembles walk forward in order
        return model

    def _factory(self, spec: FitSpec) -> ModelFactory:
        base = self.planner.factory(spec.model)
        if spec.members:
            return functools.partial(base, members={n: self.model(s) for n, s in spec.members.items()})
        if spec.carried_from is not None:
            return functools.partial(clone, self._tuned_proto(spec.carried_from))
        return base

    def _tuned_proto(self, searched: FitSpec) -> Any:
        if searched.fit_id not in self._tuned:
            self._tuned[searched.fit_id] = self.model(searched).tuned_clone()
        return self._tuned[searched.fit_id]

    def _task(self, st: _State) -> FitTask:
        spec = st.spec
        return FitTask(fit_id=spec.fit_id, label=spec.label, fit_month=spec.fit_month,
                       months=pd.PeriodIndex([st.wanted[k] for k in st.missing()], freq="M"),
                       lookback=self.planner.lookback, factory=self._factory(spec), search=spec.search,
                       serialise=spec.cacheable and self.registry is not None,
                       keep=spec.model in self._keep or spec.fit_id in self._need_objects,
                       libraries=spec.identity["libraries"],
                       member_prefixes={n: s.prefix for n, s in spec.members.items()} or None,
                       masked=spec.masked)

    def _fit_here(self, spec: FitSpec) -> Any:
        """Fit ``spec`` in this process now (a member or searched fit needed as an object), keep it."""
        st = self._states.setdefault(spec.fit_id, _State(spec))
        self._need_objects.add(spec.fit_id)
        outcome = fit_task(self._task(st), self.dataset)
        self._finish(st, outcome)
        return self._models[spec.fit_id]

    # -- storing -----------------------------------------------------------------------------------

    def _finish(self, st: _State, outcome: FitOutcome) -> None:
        spec = st.spec
        rows = [(k, st.wanted[k]) for k in st.missing()]
        for (key, _), predicted in zip(rows, outcome.predicted, strict=True):
            st.got[key] = predicted
        st.seconds, st.fitted, st.fit = outcome.seconds, True, False
        self.fitted[spec.fit_id] = outcome.seconds
        self.stats.fitted += 1
        host = outcome.ran_on
        self.stats.ran_on[host] = self.stats.ran_on.get(host, 0) + 1
        if outcome.model is not None:
            self._models[spec.fit_id] = outcome.model
        if outcome.tuned is not None:
            self._tuned[spec.fit_id] = outcome.tuned
        if outcome.files and self.registry is not None:
            self._save(spec, outcome, [(month_str(m), key[1], st.got[key]) for key, m in rows])

    def _save(self, spec: FitSpec, outcome: FitOutcome, rows: list[tuple[str, str, np.ndarray]]) -> None:
        assert self.registry is not None
        if self._dataset_fp is None:
            self._dataset_fp = str(self.dataset.info.dataset_fingerprint or data_fingerprint(self.dataset))
        summary = dict(outcome.summary)
        weights = summary.pop("weights", None)
        metrics: dict[str, Any] = {"fit_seconds": round(outcome.seconds, 3), "best_params": summary.get("best_params")}
        if weights is not None:
            metrics["weights"] = weights
        meta = {**summary, "name": spec.model, "train_end": month_str(spec.fit_month),
                "training_window": training_window(spec.row_months), "data_fingerprint": self._dataset_fp,
                "config_fingerprint": spec.identity["config"], "rows_fingerprint": spec.identity["rows"],
                "fingerprint": spec.fit_id, "fit_id": spec.fit_id, "identity": spec.identity,
                "search": spec.search, "carried_from": spec.carried_from.prefix if spec.carried_from else None,
                "feature_names": self.dataset.feature_names, "masked_features": list(spec.masked),
                "assets": self.dataset.assets, "metrics": metrics,
                "members": {n: s.prefix for n, s in spec.members.items()}, "ran_on": outcome.ran_on}
        self.registry.save_serialised(spec.prefix, outcome.files, meta)
        self._keys(spec.model).add(f"{spec.prefix}/{METADATA}")
        if rows:
            key = self.registry.save_forecasts(spec.prefix, self.dataset.assets, rows, fit_seconds=outcome.seconds)
            self._keys(spec.model).add(key)

    def _forecast_stored(self, st: _State) -> None:
        """Forecast ``st``'s missing months with its stored fit (a month the fit had not forecast yet)."""
        missing = st.missing()
        model = self.model(st.spec)
        if not st.missing():  # the model was refitted (corrupt) and forecast them
            return
        data = self.dataset.view(st.spec.masked)
        predicted = predict_rows(model, data.windows(self.planner.lookback,
                                                     pd.PeriodIndex([st.wanted[k] for k in missing])))
        for key, row in zip(missing, predicted, strict=True):
            st.got[key] = row
        self.stats.forecasts_from_stored_fits += len(missing)
        if st.seconds is None and self.registry is not None:
            st.seconds = (self.registry.metadata(st.spec.prefix).get("metrics") or {}).get("fit_seconds")
        if self.registry is not None and st.spec.cacheable:
            key = self.registry.save_forecasts(st.spec.prefix, self.dataset.assets,
                                               [(k[0], k[1], st.got[k]) for k in missing], fit_seconds=st.seconds)
            self._keys(st.spec.model).add(key)

    # -- the run ------------------------------------------------------------------------------------

    def run(self, plans: Sequence[FoldPlan]) -> list[FoldResult]:
        """Forecasts for every plan (members before ensembles in ``plans``' order); see the module docstring."""
        for plan in plans:
            st = self._states.setdefault(plan.spec.fit_id, _State(plan.spec))
            for month, window in zip(plan.months, plan.windows, strict=True):
                st.wanted[(month_str(month), window)] = month
        states = list(dict.fromkeys(self._states[p.spec.fit_id] for p in plans))
        if self.registry is not None:
            self._read_cached(states)
        singles = [st for st in states if not st.spec.members]
        ensembles = [st for st in states if st.spec.members]
        to_fit: list[_State] = []
        for st in singles:
            if not st.missing():
                continue
            if self._stored(st.spec):
                self._forecast_stored(st)
            else:
                st.fit = True
                to_fit.append(st)
        if to_fit:
            self._run_fits(to_fit)
        for st in ensembles:
            if not st.missing():
                continue
            if self._stored(st.spec):
                self._forecast_stored(st)
            else:
                self._finish(st, fit_task(self._task(st), self.dataset))
        self.stats.reused = sum(1 for st in states if not st.fitted)
        log.info("%s: %d fitted, %d stored fits reused for %d new forecasts, %d forecasts reused", self.label,
                 self.stats.fitted, self.stats.reused, self.stats.forecasts_from_stored_fits,
                 self.stats.forecasts_reused,
                 extra={"fields": {"fitted": self.stats.fitted, "forecasts_reused": self.stats.forecasts_reused,
                                   "executor": self.stats.executor or "none"}})
        out = []
        for plan in plans:
            st = self._states[plan.spec.fit_id]
            keys = [(month_str(m), w) for m, w in zip(plan.months, plan.windows, strict=True)]
            predicted = np.vstack([st.got[k] for k in keys]) if keys else np.empty((0, len(self.dataset.assets)))
            out.append(FoldResult(plan=plan, predicted=predicted, seconds=st.seconds, fitted=st.fitted))
        return out

    def _run_fits(self, to_fit: list[_State]) -> None:
        """Fit ``to_fit`` on the executor; a carried refit waits for its search (submitted when it ends)."""
        ready: list[_State] = []
        for st in to_fit:
            searched = st.spec.carried_from
            if searched is None or searched.fit_id in self._tuned:
                ready.append(st)
                continue
            pending = self._states.get(searched.fit_id)
            if pending is not None and pending.fit:
                self._waiting.setdefault(searched.fit_id, []).append(st)
            elif self._stored(searched):
                self._tuned_proto(searched)  # load the stored search's choice
                ready.append(st)
            else:  # the search is neither stored nor planned here (a live refit): fit it, forecasting nothing
                extra = self._states.setdefault(searched.fit_id, _State(searched))
                extra.fit = True
                ready.insert(0, extra)
                self._waiting.setdefault(searched.fit_id, []).append(st)
        total = len(to_fit) + sum(1 for st in ready if st not in to_fit)
        bar = Progress(f"{self.label}: fits", total)
        pooled = sum(1 for st in {id(st): st for st in [*to_fit, *ready]}.values()
                     if st.spec.model not in SEQUENTIAL_MODELS)
        # A handful of fits (next month's: one new fold per model) cost less than starting the pool's
        # workers (a spawned interpreter importing the libraries, ~2-3 s each): fit them here.
        n_jobs = self.n_jobs if pooled > SMALL_BATCH else 1
        with make_executor(fit_batch, self.dataset, n_jobs=n_jobs, cluster=self.cluster) as ex:
            self.stats.executor = ex.kind
            self._submit(ex, ready)
            for batch, outcomes in ex.completed():
                waiters: list[_State] = []
                for task, outcome in zip(batch.tasks, outcomes, strict=True):
                    st = self._states[task.fit_id]
                    self._finish(st, outcome)
                    bar.update()
                    waiters += self._waiting.pop(st.spec.fit_id, [])
                self._submit(ex, waiters)
        bar.close()

    def _submit(self, ex: Any, states: Sequence[_State]) -> None:
        """Submit ``states`` in order: a search, an ensemble or an LSTM fit alone, consecutive other fits of
        one model in batches of at most :data:`BATCH_FITS`."""
        group: list[_State] = []

        def flush() -> None:
            if group:
                batch = FitBatch(tuple(self._task(st) for st in group))
                ex.submit(batch, label=batch.label, local_only=group[0].spec.model in SEQUENTIAL_MODELS)
                group.clear()

        for st in states:
            alone = bool(st.spec.search) or bool(st.spec.members) or st.spec.model in SEQUENTIAL_MODELS
            if group and (alone or st.spec.model != group[0].spec.model or len(group) >= BATCH_FITS):
                flush()
            group.append(st)
            if alone:
                flush()
        flush()


__all__ = ["BATCH_FITS", "SEQUENTIAL_MODELS", "FitBatch", "FitOutcome", "FitRunner", "FitSpec", "FitTask", "FoldPlan",
           "FoldResult", "Planner", "RunStats", "fit_batch", "fit_task", "one_blas_thread", "predict_rows"]
