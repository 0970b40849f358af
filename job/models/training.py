"""Fit a model as of a month, point in time; the train-or-load policy; next month's forecasts.

The live fit of model ``name`` at ``as_of`` is the fold of the walk-forward's schedule that contains the
as-of month (:meth:`job.fits.Planner.live_plans`): the same identity, so the same stored fit, as next
month's walk-forward uses for that decision month. Its hyperparameters follow the walk-forward's tuning
cadence (searched every ``backtest.tune_months`` months, carried in between) and its refits the
walk-forward's ``models.refit_months``: what is run live is exactly what the backtest measured.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from job import fits  # (job.fits imports job.models.registry; names are looked up at call time)
from job.config import Settings
from job.dataset import Dataset
from job.logs import get_logger
from job.model_names import FITTED_BASELINES, MODEL_NAMES
from job.models.base import Forecaster
from job.models.factory import build_model
from job.models.registry import CorruptModel, ModelRegistry, training_window
from job.months import month_str, parse_month

log = get_logger("models")

FORECAST_COLUMNS = ["model", "decision_month", "target_month", "asset", "sector", "predicted", "validation_mae",
                    "train_end", "model_fingerprint"]


def training_data(dataset: Dataset, lookback: int, as_of: pd.Period | str) -> tuple[np.ndarray, np.ndarray,
                                                                                      pd.PeriodIndex]:
    """``(X, y, months)`` of every training pair whose label month is at or before ``as_of``.

    Re-checks what :meth:`Dataset.training_set` promises: a row whose label month (decision month + 1)
    is after ``as_of`` raises AssertionError, so a leak cannot reach a model silently.
    Raises ValueError when there are fewer than 3 rows.
    """
    as_of = parse_month(as_of)
    X, y, months = dataset.training_set(lookback, as_of)
    late = [month_str(m) for m in months if m + 1 > as_of]
    assert not late, f"training rows with a label month after the as-of month {month_str(as_of)}: {late[:3]}"
    if len(months) < 3:
        raise ValueError(f"only {len(months)} training rows up to {month_str(as_of)} with a "
                         f"{lookback}-month window; the data start too late for this as-of month")
    return X, y, months


def fit_model(name: str, dataset: Dataset, settings: Settings, as_of: pd.Period | str, *,
              members: dict[str, Forecaster] | None = None) -> tuple[Forecaster, dict[str, Any]]:
    """Build and fit model ``name`` on the training pairs known at ``as_of``.

    Returns the fitted model and a summary: the training window, fit seconds.
    """
    lookback = settings.models.lookback_months
    dataset = dataset.view(dataset.masked_at(parse_month(as_of)))  # without the features expired by then
    X, y, months = training_data(dataset, lookback, as_of)
    model = build_model(name, settings, return_feature_index=dataset.return_feature_index(), members=members)
    start = time.perf_counter()
    model.fit(X, y)
    seconds = time.perf_counter() - start
    summary = {"window": training_window(months), "fit_seconds": round(seconds, 3)}
    log.info("fitted %s as of %s", name, month_str(parse_month(as_of)),
             extra={"fields": {"model": name, "rows": len(months), "fit_s": round(seconds, 2),
                               "validation_mae": round(float(np.mean(model.validation_mae_)), 5)}})
    return model, summary


def forecast_frame(models: dict[str, TrainedModel], dataset: Dataset, as_of: pd.Period | str,
                   lookback: int, sectors: dict[str, str] | None = None) -> pd.DataFrame:
    """Next month's forecast of every model, one row per (model, asset), columns :data:`FORECAST_COLUMNS`.

    ``models`` are :func:`train_models`' results: each carries its forecast for the window ending at
    ``as_of`` (read from the registry's forecast cache or made by its fit: the bits the walk-forward
    publishes for that decision month) and its fit's validation error. ``train_end`` and
    ``model_fingerprint`` come from the prefix ``models/<name>/train_end=YYYY-MM/<fingerprint>``.
    The forecast is for ``as_of + 1``.
    """
    as_of = parse_month(as_of)
    sectors = sectors or {}
    rows = []
    for name, trained in models.items():
        predicted = trained.forecast(dataset, as_of, lookback)
        mae = trained.validation_mae(dataset.assets)
        train_end, fingerprint = _prefix_parts(trained.prefix)
        for j, asset in enumerate(dataset.assets):
            rows.append({"model": name, "decision_month": month_str(as_of), "target_month": month_str(as_of + 1),
                         "asset": asset, "sector": sectors.get(asset, ""), "predicted": float(predicted[j]),
                         "validation_mae": float(mae[j]), "train_end": train_end,
                         "model_fingerprint": fingerprint})
    return pd.DataFrame(rows, columns=FORECAST_COLUMNS)


def _prefix_parts(prefix: str) -> tuple[str, str]:
    parts = prefix.strip("/").split("/")
    train_end = next((p.removeprefix("train_end=") for p in parts if p.startswith("train_end=")), "")
    return train_end, parts[-1] if train_end else ""


# -- the train-or-load policy ------------------------------------------------------------------------


@dataclass
class TrainedModel:
    """A live fit: where it is stored, whether it was reused, its metadata and its forecast for the as-of
    window. The fitted object itself is loaded from the registry only when asked for (``model``): a rerun
    whose forecasts are all cached needs none of them, and loading the LSTM costs TensorFlow's import."""

    name: str
    prefix: str
    reused: bool
    fit_seconds: float | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    predicted: np.ndarray | None = None  # the forecast for the as-of window (target month as_of + 1)
    loader: Callable[[], Forecaster] | None = field(default=None, repr=False)
    masked: tuple[str, ...] = ()  # the features the fit does not use (Dataset.masked_at its fit month)
    _model: Forecaster | None = field(default=None, repr=False)

    @property
    def model(self) -> Forecaster:
        """The fitted model (loaded from the registry, sha256-checked, on first use)."""
        if self._model is None:
            if self.loader is None:
                raise ValueError(f"no fitted {self.name} model to load")
            self._model = self.loader()
        return self._model

    def forecast(self, dataset: Dataset, as_of: pd.Period, lookback: int) -> np.ndarray:
        """The forecast for the window ending at ``as_of``: the stored one, else made by the model."""
        if self.predicted is not None:
            return np.asarray(self.predicted, dtype=np.float64)
        windows = dataset.view(self.masked).windows(lookback, pd.PeriodIndex([as_of]))
        return fits.predict_rows(self.model, windows)[0]

    def validation_mae(self, assets: list[str]) -> np.ndarray:
        """The fit's own validation MAE per asset (from its metadata; NaN where it had none)."""
        stored = self.metadata.get("validation_mae")
        if isinstance(stored, dict) and set(stored) >= set(assets):
            return np.array([np.nan if stored[a] is None else float(stored[a]) for a in assets], dtype=np.float64)
        return np.asarray(self.model.validation_mae_, dtype=np.float64)

    @property
    def params(self) -> dict[str, Any] | None:
        """The chosen hyperparameters, or an ensemble's member weights (from the metadata)."""
        return self.metadata.get("best_params") or (self.metadata.get("metrics") or {}).get("weights")


def train_models(names: list[str], dataset: Dataset, settings: Settings, as_of: str | pd.Period,
                 registry: ModelRegistry, *, data_fingerprint: str | None = None, force: bool = False,
                 with_baselines: bool = True, cluster: str | None = None) -> dict[str, TrainedModel]:
    """The live fit of each of ``names`` (plus both baselines when ``with_baselines``) at ``as_of``.

    Each is the walk-forward fold that contains ``as_of`` (see the module docstring), reused from the
    registry when stored (same identity: configuration, exact training rows, libraries, tuning
    provenance) and fitted and stored otherwise, with its forecast for ``as_of`` (which next month's
    walk-forward reads). ``force`` refits the named models (not models pulled in only as ensemble
    members or baselines). A stored fit that fails its checksum is refitted
    (``models.on_corrupt_model = "retrain"``, with a warning) or raises CorruptModel (``"fail"``).
    ``cluster``: fit on a Dask cluster (default ``$DASK_SCHEDULER_ADDRESS``; none: in this process).
    ``data_fingerprint`` (of the whole dataset) is recorded in new fits' metadata.
    """
    as_of = parse_month(as_of)
    order = [n for n in MODEL_NAMES if n in names or (with_baselines and n in FITTED_BASELINES)]
    order += [n for n in names if n not in order]
    planner = fits.Planner(dataset, settings)
    plans = planner.live_plans(order, as_of)
    for plan in plans.values():
        assert plan.spec.train_end <= as_of, "training label after the as-of month"
    runner = fits.FitRunner(planner, registry, recompute=set(names) if force else False, n_jobs=1, cluster=cluster,
                            keep=list(plans), on_corrupt=str(settings.models.on_corrupt_model),
                            label=f"live fits {month_str(as_of)}", data_fingerprint=data_fingerprint)
    results = {res.plan.spec.model: res for res in runner.run(list(plans.values()))}
    out: dict[str, TrainedModel] = {}
    for name in order:
        res = results[name]
        spec = res.plan.spec
        meta: dict[str, Any] | None = None
        if spec.fit_id not in runner.fitted:
            try:  # a reused fit is checked (sha256 of every file) without loading it
                meta = registry.verify(spec.prefix)
            except CorruptModel:
                runner.model(spec)  # refits it (models.on_corrupt_model = "retrain") or raises
        fitted = spec.fit_id in runner.fitted
        if meta is None:  # fitted by this run (now or just above): its metadata was just written
            meta = registry.metadata(spec.prefix)
        if fitted:
            log.info("fitted %s as of %s", name, month_str(as_of),
                     extra={"fields": {"model": name, "rows": spec.n_train, "prefix": spec.prefix,
                                       "fit_s": round(runner.fitted[spec.fit_id], 2)}})
        else:
            log.info("reusing stored %s", spec.prefix, extra={"fields": {"model": name}})
        out[name] = TrainedModel(name, spec.prefix, not fitted, fit_seconds=runner.fitted.get(spec.fit_id),
                                 metadata=meta, predicted=res.predicted[0] if len(res.predicted) else None,
                                 loader=functools.partial(runner.model, spec), masked=spec.masked)
    return out


def train_or_load_result(name: str, dataset: Dataset, settings: Settings, as_of: str | pd.Period,
                         registry: ModelRegistry, *, data_fingerprint: str | None = None, force: bool = False,
                         members: dict[str, TrainedModel] | None = None) -> TrainedModel:
    """:func:`train_or_load` with the details (:class:`TrainedModel`).

    ``members`` is accepted for compatibility and not needed: an ensemble's members are found by
    identity (stored ones are reused).
    """
    return train_models([name], dataset, settings, as_of, registry, data_fingerprint=data_fingerprint, force=force,
                        with_baselines=False)[name]


def train_or_load(name: str, dataset: Dataset, settings: Settings, as_of: str | pd.Period,
                  registry: ModelRegistry, *, data_fingerprint: str | None = None, force: bool = False,
                  members: dict[str, TrainedModel] | None = None) -> tuple[Forecaster, str, bool]:
    """``(model, prefix, reused)`` for the live fit of model ``name`` at ``as_of`` (see :func:`train_models`)."""
    result = train_or_load_result(name, dataset, settings, as_of, registry, data_fingerprint=data_fingerprint,
                                  force=force)
    return result.model, result.prefix, result.reused


__all__ = ["FORECAST_COLUMNS", "TrainedModel", "fit_model", "forecast_frame", "train_models", "train_or_load",
           "train_or_load_result", "training_data", "training_window"]
