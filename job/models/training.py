"""Fit a model as of a month, point in time, and turn fitted models into next month's forecasts."""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import pandas as pd

from job.config import Settings
from job.dataset import Dataset
from job.logs import get_logger
from job.models.base import Forecaster
from job.models.factory import build_model
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


def training_window(months: pd.PeriodIndex) -> dict[str, Any]:
    """The decision and label months a model was fitted on (for its metadata)."""
    return {"first_decision_month": month_str(months[0]), "last_decision_month": month_str(months[-1]),
            "first_label_month": month_str(months[0] + 1), "last_label_month": month_str(months[-1] + 1),
            "rows": len(months)}


def fit_model(name: str, dataset: Dataset, settings: Settings, as_of: pd.Period | str, *,
              members: dict[str, Forecaster] | None = None,
              warm_start_from: Forecaster | None = None) -> tuple[Forecaster, dict[str, Any]]:
    """Build and fit model ``name`` on the training pairs known at ``as_of``.

    Returns the fitted model and a summary: the training window, fit seconds. ``warm_start_from``
    (LSTM only) starts from a previous fit's weights.
    """
    lookback = settings.models.lookback_months
    X, y, months = training_data(dataset, lookback, as_of)
    model = build_model(name, settings, return_feature_index=dataset.return_feature_index(), members=members)
    start = time.perf_counter()
    if warm_start_from is not None and name == "lstm":
        model.fit(X, y, warm_start_from=warm_start_from)  # type: ignore[call-arg]
    else:
        model.fit(X, y)
    seconds = time.perf_counter() - start
    summary = {"window": training_window(months), "fit_seconds": round(seconds, 3)}
    log.info("fitted %s as of %s", name, month_str(parse_month(as_of)),
             extra={"fields": {"model": name, "rows": len(months), "fit_s": round(seconds, 2),
                               "validation_mae": round(float(np.mean(model.validation_mae_)), 5)}})
    return model, summary


def forecast_frame(models: dict[str, tuple[Forecaster, str]], dataset: Dataset, as_of: pd.Period | str,
                   lookback: int, sectors: dict[str, str] | None = None) -> pd.DataFrame:
    """Next month's forecast of every model, one row per (model, asset), columns :data:`FORECAST_COLUMNS`.

    ``models`` maps a model name to ``(fitted model, registry prefix)``; ``train_end`` and
    ``model_fingerprint`` are read from the prefix ``models/<name>/train_end=YYYY-MM/<fingerprint>``.
    The window ends at ``as_of``; the forecast is for ``as_of + 1``.
    """
    as_of = parse_month(as_of)
    window = dataset.windows(lookback, pd.PeriodIndex([as_of]))
    sectors = sectors or {}
    rows = []
    for name, (model, prefix) in models.items():
        predicted = np.asarray(model.predict(window))[0]
        train_end, fingerprint = _prefix_parts(prefix)
        for j, asset in enumerate(dataset.assets):
            rows.append({"model": name, "decision_month": month_str(as_of), "target_month": month_str(as_of + 1),
                         "asset": asset, "sector": sectors.get(asset, ""), "predicted": float(predicted[j]),
                         "validation_mae": float(model.validation_mae_[j]), "train_end": train_end,
                         "model_fingerprint": fingerprint})
    return pd.DataFrame(rows, columns=FORECAST_COLUMNS)


def _prefix_parts(prefix: str) -> tuple[str, str]:
    parts = prefix.strip("/").split("/")
    train_end = next((p.removeprefix("train_end=") for p in parts if p.startswith("train_end=")), "")
    return train_end, parts[-1] if train_end else ""
