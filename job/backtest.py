"""Walk-forward and static backtests: forecasts made only with what was known, then allocated and realised.

Schemes
-------
``walk-forward`` (default): an expanding window. The first decision month is the first one with at
least ``min_train_months`` training rows (pairs of a feature window and its next-month return). A model
used at decision month m was fitted on :meth:`job.dataset.Dataset.training_set` ``(lookback, as_of=f)``
for a fit month ``f <= m``: every training label month is ``<= f <= m``. Models are refitted every
``refit_months[model]`` decision months (1 = every month) and the last fit is reused in between. At m the
model forecasts the returns of m+1 from the window ending at m; the realised value is the return of m+1.

``static``: the original notebook's single split: one fit on the first ``static_train_share`` (80 %) of
the labelled months, forecasts for the remaining 20 %.

Every fit has an identity (:mod:`job.fits`): the model, its configuration, the fingerprint of its exact
training rows, the library versions, and its hyperparameter provenance (searched every
``backtest.tune_months`` months, carried in between) or, for the ensemble, its members' fits. With a
``registry`` a walk-forward fits only what the registry does not hold and forecasts only the decision
months it has not forecast (keyed by the fingerprint of each month's feature window); fits are stored as
they complete, so an interrupted backfill resumes, and ``recompute=True`` refits everything. The live fit
of the as-of month (:func:`job.models.train_models`) is the fold of this same schedule that contains the
as-of month, so next month's walk-forward reuses it. Fits run in this process (``n_jobs=1``), in a local
process pool (``n_jobs`` workers, the LSTM in this process), or on a Dask cluster (``cluster``, or
``DASK_SCHEDULER_ADDRESS``): :mod:`job.cluster`. The ensemble combines, at each of its fit months, the
latest fit of each member (each member on its own refit cadence).

Everything is deterministic given the models' seeds; outputs are pandas frames with ``Period`` months.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from job.dataset import Dataset
from job.errors import ConfigError
from job.fits import SEQUENTIAL_MODELS, FitRunner, FoldPlan, FoldResult, Planner
from job.logs import get_logger
from job.metrics import align_risk_free
from job.model_names import BASELINES
from job.months import month_str
from job.schedule import (
    Fold,
    decision_months,
    labelled_months,
    live_months,
    split_at_breaks,
    static_split,
    tuning_folds,
    walk_forward_folds,
)
from job.strategy import StrategyParams, run_strategy, sweep

log = get_logger("backtest")

SCHEMES = ("walk-forward", "static")
ModelFactory = Callable[..., Any]

FORECAST_COLUMNS = ["model", "decision_month", "target_month", "asset", "predicted", "realised",
                    "fit_month", "train_end"]
WEIGHT_COLUMNS = ["model", "decision_month", "target_month", "asset", "weight", "flag", "multiplier", "exposure"]
PORTFOLIO_COLUMNS = ["model", "decision_month", "target_month", "portfolio_return", "portfolio_return_net",
                     "benchmark_return", "equal_weight_return", "capital_deployed", "gross_exposure",
                     "turnover", "cost", "risk_free", "levered_assets"]


@dataclass
class BacktestResult:
    """What a backtest produced (months as ``pandas.Period``; see :func:`as_table` for storage).

    Attributes
    ----------
    forecasts : DataFrame
        model, decision_month, target_month, asset, predicted, realised, fit_month, train_end
        (train_end = last label month the fit saw; always <= decision_month).
    weights : DataFrame
        model, decision_month, target_month, asset, weight, flag, multiplier, exposure.
    portfolio : DataFrame
        model, decision_month, target_month, portfolio_return (gross), portfolio_return_net,
        benchmark_return, equal_weight_return, capital_deployed, gross_exposure, turnover, cost,
        risk_free (of the target month), levered_assets.
    baselines : DataFrame
        persistence, historical-mean and momentum forecasts on the same months, columns as ``forecasts``.
    folds : DataFrame
        model, fit_month, first_decision, last_decision, n_train, train_end, seconds.
    """

    forecasts: pd.DataFrame
    weights: pd.DataFrame
    portfolio: pd.DataFrame
    baselines: pd.DataFrame
    folds: pd.DataFrame
    scheme: str
    params: StrategyParams
    original_window: tuple[pd.Period, pd.Period] | None = None
    info: dict[str, Any] = field(default_factory=dict)


# ---- fitting ------------------------------------------------------------------------------------------------

def _forecast_frame(dataset: Dataset, model: str, fold: Fold, predicted: np.ndarray,
                    train_end: pd.Period, labels: pd.DataFrame | None = None) -> pd.DataFrame:
    """One fold's forecasts as rows (see :func:`_forecast_frames`)."""
    return _forecast_frames(dataset, [(model, fold, predicted, train_end)], labels)


def _forecast_frames(dataset: Dataset, parts: Sequence[tuple[str, Fold, np.ndarray, pd.Period]],
                     labels: pd.DataFrame | None = None) -> pd.DataFrame:
    """``(model, fold, predicted, train_end)`` parts as one frame, one row per decision month and asset.

    Built in one pass over all parts (a frame per fold cost 7 ms each, 5 s for a run's ~700 folds)."""
    assets = dataset.assets
    n = len(assets)
    labels = dataset.labels() if labels is None else labels
    for model, fold, predicted, _ in parts:
        if predicted.shape != (len(fold.decision_months), n):
            raise ValueError(f"model {model} predicted shape {predicted.shape}, expected "
                             f"{(len(fold.decision_months), n)}")
    sizes = np.array([len(fold.decision_months) for _, fold, _, _ in parts], dtype=np.int64)
    ordinals = np.concatenate([fold.decision_months.asi8 for _, fold, _, _ in parts]) if parts else \
        np.empty(0, dtype=np.int64)
    months = pd.PeriodIndex.from_ordinals(ordinals, freq="M")
    # Unbalanced panels (job.dataset): an asset absent at the decision month is neither forecast nor realised.
    present = dataset.mask.reindex(index=months, columns=assets, fill_value=False).to_numpy()
    predicted = np.vstack([p for _, _, p, _ in parts]) if parts else np.empty((0, n))
    predicted = np.where(present, predicted, np.nan)
    realised = labels.reindex(months).where(present).to_numpy(dtype=np.float64)
    per_row = sizes * n

    def repeated(values: list[Any]) -> np.ndarray:
        return np.repeat(np.asarray(values, dtype=object), per_row)

    fit_months = pd.PeriodIndex([fold.fit_month for _, fold, _, _ in parts], freq="M").repeat(per_row)
    train_ends = pd.PeriodIndex([end for _, _, _, end in parts], freq="M").repeat(per_row)
    return pd.DataFrame({
        "model": repeated([model for model, _, _, _ in parts]),
        "decision_month": months.repeat(n),
        "target_month": (months + 1).repeat(n),
        "asset": np.tile(np.asarray(assets, dtype=object), len(months)),
        "predicted": predicted.ravel(),
        "realised": realised.ravel(),
        "fit_month": fit_months,
        "train_end": train_ends,
    })


def model_factory(name: str, settings: Any, dataset: Dataset) -> ModelFactory:
    """A picklable factory for ``job.models.build_model(name, settings, return_feature_index=...)``.

    Called with no arguments it builds a fresh unfitted forecaster; the ensemble's is called with
    ``members={name: fitted forecaster}``.
    """
    return Planner(dataset, settings).factory(name)


def baseline_forecasts(dataset: Dataset, months: pd.PeriodIndex, lookback: int, *, momentum_months: int = 12,
                       momentum_skip: int = 1) -> pd.DataFrame:
    """Persistence (the decision month's own return), historical-mean (mean of the training labels
    at that month, exactly what ``HistoricalMeanForecaster`` refitted monthly predicts) and momentum
    (``(prod_{s=m-months+1}^{m-skip} (1 + r_s)) ** (1 / (months - skip)) - 1``, exactly what
    ``MomentumForecaster`` predicts; NaN where the formation window starts before the data) for ``months``.
    """
    assets = dataset.assets
    labelled = labelled_months(dataset, lookback)
    labels = dataset.labels().reindex(labelled).to_numpy(dtype=np.float64)
    sums = np.vstack([np.zeros(len(assets)), np.cumsum(labels, axis=0)])
    counts = np.searchsorted(labelled.asi8, (months - 1).asi8, side="right")  # rows with m' <= m - 1
    with np.errstate(invalid="ignore", divide="ignore"):
        hist = sums[counts] / counts[:, None]
    persistence = dataset.features.loc[months, [f"ret:{a}" for a in assets]].to_numpy(dtype=np.float64)
    momentum = _momentum(dataset, months, momentum_months, momentum_skip)
    frames = []
    for name, values in (("persistence", persistence), ("historical-mean", hist), ("momentum", momentum)):
        frame = _forecast_frame(dataset, name, Fold(fit_month=months[0], decision_months=months), values,
                                months[0])
        frame["fit_month"] = np.repeat(months.to_numpy(), len(assets))
        frame["train_end"] = frame["fit_month"]
        frames.append(frame)
    return pd.concat(frames, ignore_index=True)[FORECAST_COLUMNS]


def _momentum(dataset: Dataset, months: pd.PeriodIndex, span: int, skip: int) -> np.ndarray:
    """Per-month compounded return over the formation window ``[m - span + 1, m - skip]`` of each month m."""
    returns = dataset.features[[f"ret:{a}" for a in dataset.assets]].to_numpy(dtype=np.float64)
    logs = np.vstack([np.zeros(returns.shape[1]), np.cumsum(np.log(np.maximum(1.0 + returns, 1e-300)), axis=0)])
    pos = dataset.months.get_indexer(months)
    first, last = pos - span + 1, pos - skip  # rows of the formation window, inclusive
    ok = first >= 0
    total = logs[np.where(ok, last + 1, 0)] - logs[np.where(ok, first, 0)]
    per_month = np.exp(total / (span - skip)) - 1.0
    per_month[~ok] = np.nan
    return per_month


# ---- from forecasts to money --------------------------------------------------------------------------------

def risk_free_for(dataset: Dataset, months: pd.PeriodIndex, *, required: bool) -> np.ndarray:
    """The monthly risk-free rate over each of ``months`` (forward-filled last known rate).

    Months before the first known rate (missing in the dataset, never a silent 0.0): ConfigError when
    ``required`` (levered mode: exit 2); otherwise 0 with a logged warning naming the months.
    """
    rf = dataset.risk_free
    if rf is None or rf.dropna().empty:
        if required:
            raise ConfigError("levered mode needs a risk-free rate and the dataset has none",
                              hint="ingest the Fama/French or TB3MS series, or use --mode normalised")
        log.warning("no risk-free rate in the dataset: Sharpe and Sortino use 0 for all %d months", len(months))
        return np.zeros(len(months))
    aligned = align_risk_free(rf, months)
    missing = np.isnan(aligned)
    if missing.any():
        gap = months[missing]
        span = month_str(gap[0]) + (f"..{month_str(gap[-1])}" if len(gap) > 1 else "")
        if required:
            raise ConfigError(f"the risk-free rate starts after {month_str(months[0])}: no rate for {span}",
                              hint="ingest a risk-free series covering those months, move data.start, "
                                   "or use --mode normalised")
        log.warning("no risk-free rate for %s (%d months, before the first known value): 0 is used there",
                    span, len(gap))
        aligned = np.where(missing, 0.0, aligned)
    return aligned


def booked_returns(dataset: Dataset, months: pd.PeriodIndex) -> pd.DataFrame:
    """The returns the portfolio decided at each of ``months`` earns (rows: decision months, columns: assets).

    Without ``dataset.executed_returns``: the calendar-month labels (traded at the decision month's
    last close). With them (``backtest.execution_lag_days`` > 0, :mod:`job.execution`): the return from
    the close of the execution day in m+1 to the one in m+2, NaN where that is not known yet.
    """
    executed = getattr(dataset, "executed_returns", None)
    if executed is None:
        return dataset.labels().reindex(months)[dataset.assets]
    out = executed.reindex(index=months + 1, columns=dataset.assets)
    out.index = months
    return out


def evaluate(forecasts: pd.DataFrame, dataset: Dataset, params: StrategyParams) -> tuple[pd.DataFrame,
                                                                                         pd.DataFrame]:
    """Allocate each model's forecasts month by month and realise them: (weights, portfolio) frames.

    Returns are :func:`booked_returns`: with an execution lag, decision months whose executed return
    is not known yet (the last one) have weights but no portfolio row.
    """
    assets = dataset.assets
    weight_frames, portfolio_frames = [], []
    for model, rows in forecasts.groupby("model", sort=False):
        pred = rows.pivot(index="decision_month", columns="asset", values="predicted")[assets]
        months = pd.PeriodIndex(pred.index)
        booked = booked_returns(dataset, months)
        # Unbalanced panels: only the assets present at the decision month are held and realised.
        present = dataset.mask.reindex(index=months, columns=assets, fill_value=False).to_numpy()
        realised = np.where(present, booked.to_numpy(dtype=np.float64), np.nan)
        rf = risk_free_for(dataset, months + 1, required=params.mode == "levered")
        run = run_strategy(np.where(present, pred.to_numpy(dtype=np.float64), np.nan), realised, params, rf)
        alloc = run.allocation
        t, n = alloc.weights.shape
        weight_frames.append(pd.DataFrame({
            "model": model, "decision_month": np.repeat(months.to_numpy(), n),
            "target_month": np.repeat((months + 1).to_numpy(), n), "asset": np.tile(assets, t),
            "weight": alloc.weights.ravel(), "flag": alloc.flags.ravel(),
            "multiplier": alloc.multipliers.ravel(), "exposure": run.exposures.ravel()}))
        bench = booked[dataset.benchmark].to_numpy(dtype=np.float64)
        known = ~np.isnan(np.where(present, realised, 0.0)).any(axis=1)
        portfolio_frames.append(pd.DataFrame({
            "model": model, "decision_month": months.to_numpy(), "target_month": (months + 1).to_numpy(),
            "portfolio_return": run.gross_return, "portfolio_return_net": run.net_return,
            "benchmark_return": bench,
            "equal_weight_return": np.nansum(realised, axis=1) / np.maximum(present.sum(axis=1), 1),
            "capital_deployed": alloc.capital, "gross_exposure": run.gross_exposure,
            "turnover": run.turnover, "cost": run.cost, "risk_free": rf,
            "levered_assets": alloc.flags.sum(axis=1)})[known].reset_index(drop=True))
    if not weight_frames:
        return pd.DataFrame(columns=WEIGHT_COLUMNS), pd.DataFrame(columns=PORTFOLIO_COLUMNS)
    return pd.concat(weight_frames, ignore_index=True), pd.concat(portfolio_frames, ignore_index=True)


# ---- the whole backtest -------------------------------------------------------------------------------------

def walk_forward(dataset: Dataset, model_names: Sequence[str], settings: Any, *, scheme: str | None = None,
                 start: pd.Period | None = None, end: pd.Period | None = None, n_jobs: int | None = None,
                 params: StrategyParams | None = None, factories: Mapping[str, ModelFactory] | None = None,
                 registry: Any = None, recompute: bool = False, cluster: str | None = None) -> BacktestResult:
    """Backtest ``model_names`` on ``dataset`` under ``scheme`` (default ``settings.backtest.scheme``).

    ``registry`` (a :class:`job.models.ModelRegistry`): reuse and store fits and their forecasts by
    identity (see the module docstring); None fits everything in memory. ``recompute``: refit everything
    (and store the fits again). ``cluster``: a Dask scheduler address (default
    ``$DASK_SCHEDULER_ADDRESS``; none: ``n_jobs`` local processes, default ``backtest.n_jobs``).
    ``factories`` maps a model name to a callable returning a fresh sklearn-style estimator (fit(X, y)
    -> self, predict(X) -> (n, n_assets)); their fits are never stored. Names without one use
    ``build_model``. An ``ensemble`` factory is called with ``members={name: fitted member}`` and its
    members are ``settings.models.ensemble_members``. ``params`` defaults to ``settings.strategy``.
    ``start``/``end`` bound the decision months (walk-forward); for ``static`` only ``end`` applies (the
    split is of the months up to it). Raises ConfigError for an unknown scheme or too little history,
    :class:`job.cluster.WorkerLost` when a worker died and its fit could not be completed.
    """
    scheme = scheme or settings.backtest.scheme
    if scheme not in SCHEMES:
        raise ConfigError(f"unknown backtest scheme {scheme!r}", hint=f"choose one of {', '.join(SCHEMES)}")
    if not model_names:
        raise ConfigError("no models to backtest", hint="pass --models, e.g. --models ridge,tree")
    params = params or StrategyParams.from_settings(settings)
    lookback = int(settings.models.lookback_months)
    n_jobs = int(settings.backtest.n_jobs if n_jobs is None else n_jobs)
    refit = dict(settings.models.refit_months)

    original = static_split(dataset, lookback, float(settings.backtest.static_train_share), end=end)
    if scheme == "static":
        months = original.decision_months
        if start is not None:
            log.info("static scheme: --start is ignored (the split is the original's 80/20 of all months)")
    else:
        months = decision_months(dataset, lookback, int(settings.backtest.min_train_months), start=start, end=end)
    if len(months) == 0:
        raise ConfigError(f"no decision months with {settings.backtest.min_train_months} months of training "
                          "history in the chosen window", hint="lower backtest.min_train_months or widen the window")

    breaks = dataset.feature_breaks

    def folds_for(name: str) -> list[Fold]:
        if scheme == "static":
            return split_at_breaks(Fold(fit_month=original.fit_month, decision_months=months), breaks)
        return walk_forward_folds(months, int(refit.get(name, 1)), breaks)

    wanted = list(dict.fromkeys(model_names))
    members = list(settings.models.ensemble_members) if "ensemble" in wanted else []
    began = time.perf_counter()
    planner = Planner(dataset, settings, factories=factories)
    tune_months = int(settings.backtest.tune_months)
    plans: dict[str, list[FoldPlan]] = {}
    for name in [m for m in dict.fromkeys([*members, *wanted]) if m != "ensemble"]:
        plans[name] = planner.plan(name, folds_for(name), tune_months)
    if "ensemble" in wanted:
        plans["ensemble"] = planner.plan_ensemble(folds_for("ensemble"), {n: plans[n] for n in members})
    runner = FitRunner(planner, registry, recompute=recompute, n_jobs=n_jobs, cluster=cluster,
                       keep=[n for n in members if not planner.cacheable(n)],
                       on_corrupt=str(settings.models.on_corrupt_model), label=f"backtest {scheme}")
    results = runner.run([plan for name in plans for plan in plans[name]])
    by_model: dict[str, list[FoldResult]] = {}
    for res in results:
        by_model.setdefault(res.plan.spec.model, []).append(res)
    parts, fold_rows = [], []
    for name in wanted:
        for res in by_model[name]:
            spec = res.plan.spec
            assert spec.train_end <= res.plan.months.min(), "training label after a decision month"
            fold = Fold(fit_month=spec.fit_month, decision_months=res.plan.months)
            parts.append((name, fold, res.predicted, spec.train_end))
            fold_rows.append({"model": name, "fit_month": spec.fit_month, "first_decision": res.plan.months[0],
                              "last_decision": res.plan.months[-1], "n_train": spec.n_train,
                              "train_end": spec.train_end, "seconds": res.seconds, "tuned": spec.search is not False,
                              "fit_id": spec.fit_id, "fitted": res.fitted})
    forecasts = _forecast_frames(dataset, parts)[FORECAST_COLUMNS]
    folds = pd.DataFrame(fold_rows)
    weights, portfolio = evaluate(forecasts, dataset, params)
    seconds = time.perf_counter() - began
    log.info("backtest done", extra={"fields": {"scheme": scheme, "models": ",".join(wanted),
                                                "months": len(months), "folds": len(folds),
                                                "fitted": runner.stats.fitted, "seconds": round(seconds, 2)}})
    return BacktestResult(
        forecasts=forecasts, weights=weights, portfolio=portfolio,
        baselines=baseline_forecasts(dataset, months, lookback, momentum_months=int(settings.models.momentum_months),
                                     momentum_skip=int(settings.models.momentum_skip_months)),
        folds=folds, scheme=scheme, params=params,
        original_window=(original.decision_months[0], original.decision_months[-1]),
        info={"seconds": seconds, "first_decision": month_str(months[0]), "last_decision": month_str(months[-1]),
              "lookback_months": lookback, "n_jobs": n_jobs, "synthetic": dataset.synthetic,
              "publication_lag_months": dataset.publication_lag_months, "executor": runner.stats.executor or "none",
              "fits_fitted": runner.stats.fitted, "fits_reused": runner.stats.reused,
              "forecasts_reused": runner.stats.forecasts_reused, "fits_ran_on": dict(runner.stats.ran_on)})


def sweep_result(result: BacktestResult, dataset: Dataset, thresholds: Sequence[float], factors: Sequence[float],
                 shrinkages: Sequence[float], *, mode: str = "normalised", cost_bps: float = 10.0,
                 original_rf: float = 0.0427) -> pd.DataFrame:
    """:func:`job.strategy.sweep` of every model's backtest forecasts: one row per (model, combination)."""
    assets = dataset.assets
    frames = []
    for model, rows in result.forecasts.groupby("model", sort=False):
        pred = rows.pivot(index="decision_month", columns="asset", values="predicted")[assets]
        booked = booked_returns(dataset, pd.PeriodIndex(pred.index)).dropna(subset=[dataset.benchmark])
        pred = pred.loc[booked.index]
        months = pd.PeriodIndex(pred.index)
        realised = booked.to_numpy(dtype=np.float64)
        rf = risk_free_for(dataset, months + 1, required=mode == "levered")
        bench = booked[dataset.benchmark].to_numpy(dtype=np.float64)
        table = sweep(pred.to_numpy(dtype=np.float64), realised, thresholds, factors, shrinkages, mode=mode,
                      cost_bps=cost_bps, rf=rf, benchmark=bench, original_rf=original_rf)
        table.insert(0, "model", model)
        table["start"] = month_str(months[0] + 1)
        table["end"] = month_str(months[-1] + 1)
        frames.append(table)
    return pd.concat(frames, ignore_index=True)


__all__ = ["BASELINES", "FORECAST_COLUMNS", "SCHEMES", "SEQUENTIAL_MODELS", "BacktestResult", "Fold", "as_table",
           "baseline_forecasts", "booked_returns", "decision_months", "evaluate", "labelled_months", "live_months",
           "model_factory",
           "risk_free_for", "static_split", "sweep_result", "tuning_folds", "walk_forward",
           "walk_forward_folds"]


def as_table(frame: pd.DataFrame) -> pd.DataFrame:
    """A copy with ``Period`` columns written as ``YYYY-MM`` text (for Parquet and DuckDB)."""
    out = frame.copy()
    for column in out.columns:
        if isinstance(out[column].dtype, pd.PeriodDtype):
            out[column] = out[column].astype(str)
    return out
