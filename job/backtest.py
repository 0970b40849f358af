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

Folds (one fit and the months it forecasts) are independent and run through joblib: the ``loky``
process backend for scikit-learn models (``n_jobs`` workers). The LSTM's folds (and anything depending
on them) run sequentially in the main process: TensorFlow already uses both cores for one fit, and each
loky worker would import its own TensorFlow (~2 GB). The ensemble combines, at each of its fit months,
the latest fit of each member (each member on its own refit cadence), via
``build_model("ensemble", ..., members=...)``; that fit must not refit the members.

Everything is deterministic given the models' seeds; outputs are pandas frames with ``Period`` months.
"""

from __future__ import annotations

import functools
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from joblib import Parallel, delayed
from sklearn.base import clone

from job.dataset import Dataset
from job.errors import ConfigError
from job.logs import get_logger
from job.months import month_str
from job.progress import Progress
from job.strategy import StrategyParams, run_strategy, sweep

log = get_logger("backtest")

SCHEMES = ("walk-forward", "static")
BASELINES = ("persistence", "historical-mean")
# Models whose fits are not sent to joblib workers (TensorFlow: see the module docstring).
SEQUENTIAL_MODELS = frozenset({"lstm"})
ModelFactory = Callable[..., Any]

FORECAST_COLUMNS = ["model", "decision_month", "target_month", "asset", "predicted", "realised",
                    "fit_month", "train_end"]
WEIGHT_COLUMNS = ["model", "decision_month", "target_month", "asset", "weight", "flag", "multiplier", "exposure"]
PORTFOLIO_COLUMNS = ["model", "decision_month", "target_month", "portfolio_return", "portfolio_return_net",
                     "benchmark_return", "equal_weight_return", "capital_deployed", "gross_exposure",
                     "turnover", "cost", "risk_free", "levered_assets"]


@dataclass(frozen=True)
class Fold:
    """One fit: training rows with label month <= ``fit_month``, forecasts for ``decision_months``."""

    fit_month: pd.Period
    decision_months: pd.PeriodIndex


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
        persistence and historical-mean forecasts on the same months, columns as ``forecasts``.
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


# ---- which months -------------------------------------------------------------------------------------------

def labelled_months(dataset: Dataset, lookback: int) -> pd.PeriodIndex:
    """Decision months with a full feature window and a known label (the return of m+1)."""
    months = dataset.window_months(lookback)
    known = dataset.labels().reindex(months).notna().all(axis=1).to_numpy()
    return months[known]


def decision_months(dataset: Dataset, lookback: int, min_train_months: int, *,
                    start: pd.Period | None = None, end: pd.Period | None = None) -> pd.PeriodIndex:
    """Walk-forward decision months: labelled, with >= ``min_train_months`` training rows, in [start, end].

    Training rows at m are labelled window months m' with m' + 1 <= m (see ``Dataset.training_set``).
    """
    labelled = labelled_months(dataset, lookback)
    # rows available at m = labelled months m' <= m - 1
    n_train = np.searchsorted(labelled.asi8, (labelled - 1).asi8, side="right")
    months = labelled[n_train >= min_train_months]
    if start is not None:
        months = months[months >= start]
    if end is not None:
        months = months[months <= end]
    return months


def static_split(dataset: Dataset, lookback: int, train_share: float, *,
                 end: pd.Period | None = None) -> Fold:
    """The original 80/20 split of the labelled months (<= ``end``): one fit, forecasts for the rest.

    The test part is the last ``ceil((1 - train_share) * n)`` labelled months (scikit-learn's
    ``train_test_split(shuffle=False)`` rounding); the fit uses the months before it, i.e.
    ``training_set(as_of=first test month)``.
    """
    months = labelled_months(dataset, lookback)
    if end is not None:
        months = months[months <= end]
    n_test = math.ceil(round((1.0 - train_share) * len(months), 9))
    if n_test < 1 or len(months) - n_test < 3:
        raise ConfigError(f"too few labelled months ({len(months)}) for a {train_share:.0%} static split")
    test = months[len(months) - n_test:]
    return Fold(fit_month=test[0], decision_months=test)


def walk_forward_folds(months: pd.PeriodIndex, refit_months: int) -> list[Fold]:
    """Split decision ``months`` into folds: a refit at the first month, then every ``refit_months``."""
    if refit_months < 1:
        raise ConfigError(f"refit_months must be >= 1, not {refit_months}")
    return [Fold(fit_month=months[i], decision_months=months[i:i + refit_months])
            for i in range(0, len(months), refit_months)]


# ---- fitting ------------------------------------------------------------------------------------------------

def _fit_predict(factory: ModelFactory, X_train: np.ndarray, y_train: np.ndarray, X_pred: np.ndarray,
                 keep: bool, members: Mapping[str, Any] | None = None) -> tuple[np.ndarray, Any, float]:
    """Fit a fresh estimator and predict ``X_pred`` (runs in a joblib worker)."""
    began = time.perf_counter()
    model = factory() if members is None else factory(members=dict(members))
    model.fit(X_train, y_train)
    predicted = np.asarray(model.predict(X_pred), dtype=np.float64)
    return predicted, (model if keep else None), time.perf_counter() - began


@dataclass
class _ModelRun:
    rows: pd.DataFrame
    folds: pd.DataFrame
    fitted: list[tuple[pd.Period, Any]]


def _forecast_frame(dataset: Dataset, model: str, fold: Fold, predicted: np.ndarray,
                    train_end: pd.Period, labels: pd.DataFrame | None = None) -> pd.DataFrame:
    months = fold.decision_months
    assets = dataset.assets
    labels = dataset.labels() if labels is None else labels
    if predicted.shape != (len(months), len(assets)):
        raise ValueError(f"model {model} predicted shape {predicted.shape}, expected {(len(months), len(assets))}")
    realised = labels.reindex(months).to_numpy(dtype=np.float64)
    t, n = predicted.shape
    return pd.DataFrame({
        "model": model,
        "decision_month": np.repeat(months.to_numpy(), n),
        "target_month": np.repeat((months + 1).to_numpy(), n),
        "asset": np.tile(assets, t),
        "predicted": predicted.ravel(),
        "realised": realised.ravel(),
        "fit_month": fold.fit_month,
        "train_end": train_end,
    })


def tuning_folds(folds: Sequence[Fold], tune_months: int) -> list[bool]:
    """Which folds search hyperparameters: the first, then the first fold at least ``tune_months``
    after the previous search. The folds between refit with the last search's choice."""
    flags, last = [], None
    for fold in folds:
        tune = last is None or tune_months <= 1 or (fold.fit_month - last).n >= tune_months
        if tune:
            last = fold.fit_month
        flags.append(tune)
    return flags


def run_model(dataset: Dataset, model: str, factory: ModelFactory, folds: Sequence[Fold], *, lookback: int,
              n_jobs: int = 1, keep_models: bool = False,
              members_for: Callable[[pd.Period], Mapping[str, Any]] | None = None,
              tune_months: int = 1) -> _ModelRun:
    """Fit ``factory()`` once per fold and forecast the fold's months; progress is reported per fold.

    ``members_for(fit_month)`` (ensembles) gives the fitted members passed as ``factory(members=...)``.
    With ``tune_months > 1`` a model that can (``tuned_clone``) searches its hyperparameters only every
    ``tune_months`` months and the folds in between refit with that choice: phase one fits the tuning
    folds, phase two the others. Every fit still sees only its own fold's training rows.
    """
    data = []
    for fold in folds:
        X_train, y_train, rows = dataset.training_set(lookback, as_of=fold.fit_month)
        if len(rows) == 0:
            raise ConfigError(f"no training rows for {model} at {month_str(fold.fit_month)}")
        train_end = rows.max() + 1
        assert train_end <= fold.decision_months.min(), "training label after a decision month"
        X_pred = dataset.windows(lookback, fold.decision_months)
        members = None if members_for is None else members_for(fold.fit_month)
        data.append((X_train, y_train, X_pred, members, len(rows), train_end))
    sequential = n_jobs == 1 or model in SEQUENTIAL_MODELS or members_for is not None
    parallel = Parallel(n_jobs=1 if sequential else n_jobs, backend="loky")
    tune = tuning_folds(folds, tune_months) if members_for is None else [True] * len(folds)
    outputs: list[Any] = [None] * len(folds)
    bar = Progress(f"backtest {model} folds", len(folds), model=model)
    phase_one = [i for i, flag in enumerate(tune) if flag]
    keep_tuned = keep_models or not all(tune)
    for i, out in zip(phase_one, parallel(delayed(_fit_predict)(factory, *data[i][:3], keep_tuned, data[i][3])
                                          for i in phase_one), strict=True):
        outputs[i] = out
        bar.update()
    phase_two = [i for i, flag in enumerate(tune) if not flag]
    if phase_two:
        last_tuned, protos = None, {}
        for i, flag in enumerate(tune):
            if flag:
                last_tuned = outputs[i][1]
            elif hasattr(last_tuned, "tuned_clone"):
                protos[i] = functools.partial(clone, last_tuned.tuned_clone())
            else:
                protos[i] = factory
        for i, out in zip(phase_two, parallel(delayed(_fit_predict)(protos[i], *data[i][:3], keep_models, data[i][3])
                                              for i in phase_two), strict=True):
            outputs[i] = out
            bar.update()
    bar.close()
    frames, fold_rows, fitted = [], [], []
    labels = dataset.labels()
    for fold, (_, _, _, _, n_train, train_end), out, tuned in zip(folds, data, outputs, tune, strict=True):
        predicted, estimator, seconds = out
        frames.append(_forecast_frame(dataset, model, fold, predicted, train_end, labels))
        fold_rows.append({"model": model, "fit_month": fold.fit_month, "first_decision": fold.decision_months[0],
                          "last_decision": fold.decision_months[-1], "n_train": n_train, "train_end": train_end,
                          "seconds": seconds, "tuned": tuned})
        if keep_models:
            fitted.append((fold.fit_month, estimator))
    return _ModelRun(rows=pd.concat(frames, ignore_index=True), folds=pd.DataFrame(fold_rows), fitted=fitted)


def model_factory(name: str, settings: Any, dataset: Dataset) -> ModelFactory:
    """A picklable factory for ``job.models.build_model(name, settings, return_feature_index=...)``.

    Called with no arguments it builds a fresh unfitted forecaster; the ensemble's is called with
    ``members={name: fitted forecaster}``.
    """
    from job.models.factory import build_model

    return functools.partial(build_model, name, settings, return_feature_index=dataset.return_feature_index())


def baseline_forecasts(dataset: Dataset, months: pd.PeriodIndex, lookback: int) -> pd.DataFrame:
    """Persistence (the decision month's own return) and historical-mean (mean of the training labels
    at that month, exactly what ``HistoricalMeanForecaster`` refitted monthly predicts) for ``months``.
    """
    assets = dataset.assets
    labelled = labelled_months(dataset, lookback)
    labels = dataset.labels().reindex(labelled).to_numpy(dtype=np.float64)
    sums = np.vstack([np.zeros(len(assets)), np.cumsum(labels, axis=0)])
    counts = np.searchsorted(labelled.asi8, (months - 1).asi8, side="right")  # rows with m' <= m - 1
    with np.errstate(invalid="ignore", divide="ignore"):
        hist = sums[counts] / counts[:, None]
    persistence = dataset.features.loc[months, [f"ret:{a}" for a in assets]].to_numpy(dtype=np.float64)
    frames = []
    for name, values in (("persistence", persistence), ("historical-mean", hist)):
        frame = _forecast_frame(dataset, name, Fold(fit_month=months[0], decision_months=months), values,
                                months[0])
        frame["fit_month"] = np.repeat(months.to_numpy(), len(assets))
        frame["train_end"] = frame["fit_month"]
        frames.append(frame)
    return pd.concat(frames, ignore_index=True)[FORECAST_COLUMNS]


# ---- from forecasts to money --------------------------------------------------------------------------------

def risk_free_for(dataset: Dataset, months: pd.PeriodIndex, *, required: bool) -> np.ndarray:
    """The monthly risk-free rate over each of ``months`` (forward-filled last known rate).

    Without any rate: zeros, unless ``required`` (levered mode), which raises ConfigError.
    """
    rf = dataset.risk_free
    if rf is None or rf.dropna().empty:
        if required:
            raise ConfigError("levered mode needs a risk-free rate and the dataset has none",
                              hint="ingest the Fama/French or TB3MS series, or use --mode normalised")
        return np.zeros(len(months))
    union = rf.index.union(months)
    aligned = rf.reindex(union).ffill().reindex(months)
    if aligned.isna().any():
        if required:
            raise ConfigError(f"the risk-free rate starts after {month_str(months[0])}")
        aligned = aligned.fillna(0.0)
    return aligned.to_numpy(dtype=np.float64)


def evaluate(forecasts: pd.DataFrame, dataset: Dataset, params: StrategyParams) -> tuple[pd.DataFrame,
                                                                                         pd.DataFrame]:
    """Allocate each model's forecasts month by month and realise them: (weights, portfolio) frames."""
    assets = dataset.assets
    weight_frames, portfolio_frames = [], []
    for model, rows in forecasts.groupby("model", sort=False):
        pred = rows.pivot(index="decision_month", columns="asset", values="predicted")[assets]
        months = pd.PeriodIndex(pred.index)
        realised = dataset.labels().reindex(months)[assets].to_numpy(dtype=np.float64)
        rf = risk_free_for(dataset, months + 1, required=params.mode == "levered")
        run = run_strategy(pred.to_numpy(dtype=np.float64), realised, params, rf)
        alloc = run.allocation
        t, n = alloc.weights.shape
        weight_frames.append(pd.DataFrame({
            "model": model, "decision_month": np.repeat(months.to_numpy(), n),
            "target_month": np.repeat((months + 1).to_numpy(), n), "asset": np.tile(assets, t),
            "weight": alloc.weights.ravel(), "flag": alloc.flags.ravel(),
            "multiplier": alloc.multipliers.ravel(), "exposure": run.exposures.ravel()}))
        bench = dataset.labels().reindex(months)[dataset.benchmark].to_numpy(dtype=np.float64)
        portfolio_frames.append(pd.DataFrame({
            "model": model, "decision_month": months.to_numpy(), "target_month": (months + 1).to_numpy(),
            "portfolio_return": run.gross_return, "portfolio_return_net": run.net_return,
            "benchmark_return": bench, "equal_weight_return": realised.mean(axis=1),
            "capital_deployed": alloc.capital, "gross_exposure": run.gross_exposure,
            "turnover": run.turnover, "cost": run.cost, "risk_free": rf,
            "levered_assets": alloc.flags.sum(axis=1)}))
    if not weight_frames:
        return pd.DataFrame(columns=WEIGHT_COLUMNS), pd.DataFrame(columns=PORTFOLIO_COLUMNS)
    return pd.concat(weight_frames, ignore_index=True), pd.concat(portfolio_frames, ignore_index=True)


# ---- the whole backtest -------------------------------------------------------------------------------------

def walk_forward(dataset: Dataset, model_names: Sequence[str], settings: Any, *, scheme: str | None = None,
                 start: pd.Period | None = None, end: pd.Period | None = None, n_jobs: int | None = None,
                 params: StrategyParams | None = None,
                 factories: Mapping[str, ModelFactory] | None = None) -> BacktestResult:
    """Backtest ``model_names`` on ``dataset`` under ``scheme`` (default ``settings.backtest.scheme``).

    ``factories`` maps a model name to a callable returning a fresh sklearn-style estimator (fit(X, y)
    -> self, predict(X) -> (n, n_assets)); names without one use :func:`model_factory` (``build_model``).
    An ``ensemble`` factory is called with ``members={name: fitted member}`` and its members are
    ``settings.models.ensemble_members``. ``params`` defaults to ``settings.strategy``. ``start``/``end``
    bound the decision months (walk-forward); for ``static`` only ``end`` applies (the split is of the
    months up to it). Raises ConfigError for an unknown scheme or too little history.
    """
    scheme = scheme or settings.backtest.scheme
    if scheme not in SCHEMES:
        raise ConfigError(f"unknown backtest scheme {scheme!r}", hint=f"choose one of {', '.join(SCHEMES)}")
    if not model_names:
        raise ConfigError("no models to backtest", hint="pass --models, e.g. --models ridge,tree")
    params = params or StrategyParams.from_settings(settings)
    lookback = int(settings.models.lookback_months)
    n_jobs = int(settings.backtest.n_jobs if n_jobs is None else n_jobs)
    factories = dict(factories or {})
    refit = dict(settings.models.refit_months)

    def factory_for(name: str) -> ModelFactory:
        if name not in factories:
            factories[name] = model_factory(name, settings, dataset)
        return factories[name]

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

    def folds_for(name: str) -> list[Fold]:
        if scheme == "static":
            return [Fold(fit_month=original.fit_month, decision_months=months)]
        return walk_forward_folds(months, int(refit.get(name, 1)))

    wanted = list(dict.fromkeys(model_names))
    members = list(settings.models.ensemble_members) if "ensemble" in wanted else []
    began = time.perf_counter()
    runs: dict[str, _ModelRun] = {}
    for name in [m for m in dict.fromkeys([*members, *wanted]) if m != "ensemble"]:
        runs[name] = run_model(dataset, name, factory_for(name), folds_for(name), lookback=lookback,
                               n_jobs=n_jobs, keep_models=name in members,
                               tune_months=int(settings.backtest.tune_months))
    if "ensemble" in wanted:
        fitted = {name: runs[name].fitted for name in members}

        def members_for(fit_month: pd.Period) -> dict[str, Any]:
            return {name: [est for month, est in fits if month <= fit_month][-1] for name, fits in fitted.items()}

        runs["ensemble"] = run_model(dataset, "ensemble", factory_for("ensemble"), folds_for("ensemble"),
                                     lookback=lookback, n_jobs=1, members_for=members_for)
    forecasts = pd.concat([runs[name].rows for name in wanted], ignore_index=True)[FORECAST_COLUMNS]
    folds = pd.concat([runs[name].folds for name in wanted], ignore_index=True)
    weights, portfolio = evaluate(forecasts, dataset, params)
    seconds = time.perf_counter() - began
    log.info("backtest done", extra={"fields": {"scheme": scheme, "models": ",".join(wanted),
                                                "months": len(months), "folds": len(folds),
                                                "seconds": round(seconds, 2)}})
    return BacktestResult(
        forecasts=forecasts, weights=weights, portfolio=portfolio,
        baselines=baseline_forecasts(dataset, months, lookback), folds=folds, scheme=scheme, params=params,
        original_window=(original.decision_months[0], original.decision_months[-1]),
        info={"seconds": seconds, "first_decision": month_str(months[0]), "last_decision": month_str(months[-1]),
              "lookback_months": lookback, "n_jobs": n_jobs, "synthetic": dataset.synthetic,
              "publication_lag_months": dataset.publication_lag_months})


def reevaluate(result: BacktestResult, dataset: Dataset, params: StrategyParams) -> BacktestResult:
    """The same forecasts under other strategy parameters (no refits)."""
    weights, portfolio = evaluate(result.forecasts, dataset, params)
    return BacktestResult(forecasts=result.forecasts, weights=weights, portfolio=portfolio,
                          baselines=result.baselines, folds=result.folds, scheme=result.scheme, params=params,
                          original_window=result.original_window, info=dict(result.info))


def sweep_result(result: BacktestResult, dataset: Dataset, thresholds: Sequence[float], factors: Sequence[float],
                 shrinkages: Sequence[float], *, mode: str = "normalised", cost_bps: float = 10.0,
                 original_rf: float = 0.0427) -> pd.DataFrame:
    """:func:`job.strategy.sweep` of every model's backtest forecasts: one row per (model, combination)."""
    assets = dataset.assets
    frames = []
    for model, rows in result.forecasts.groupby("model", sort=False):
        pred = rows.pivot(index="decision_month", columns="asset", values="predicted")[assets]
        months = pd.PeriodIndex(pred.index)
        realised = dataset.labels().reindex(months)[assets].to_numpy(dtype=np.float64)
        rf = risk_free_for(dataset, months + 1, required=mode == "levered")
        bench = dataset.labels().reindex(months)[dataset.benchmark].to_numpy(dtype=np.float64)
        table = sweep(pred.to_numpy(dtype=np.float64), realised, thresholds, factors, shrinkages, mode=mode,
                      cost_bps=cost_bps, rf=rf, benchmark=bench, original_rf=original_rf)
        table.insert(0, "model", model)
        table["start"] = month_str(months[0] + 1)
        table["end"] = month_str(months[-1] + 1)
        frames.append(table)
    return pd.concat(frames, ignore_index=True)


def as_table(frame: pd.DataFrame) -> pd.DataFrame:
    """A copy with ``Period`` columns written as ``YYYY-MM`` text (for Parquet and DuckDB)."""
    out = frame.copy()
    for column in out.columns:
        if isinstance(out[column].dtype, pd.PeriodDtype):
            out[column] = out[column].astype(str)
    return out
