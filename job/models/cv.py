"""Time-ordered cross-validation helpers: folds never train on rows after the rows they test."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from sklearn.model_selection import TimeSeriesSplit


def time_series_cv(n_rows: int, n_splits: int) -> TimeSeriesSplit:
    """``TimeSeriesSplit`` with at most ``n_splits`` folds, fewer when there are too few rows.

    Each fold's training rows precede its test rows; no shuffling. Raises ValueError below 3 rows.
    """
    if n_rows < 3:
        raise ValueError(f"time-ordered cross-validation needs at least 3 rows, got {n_rows}")
    return TimeSeriesSplit(n_splits=max(2, min(n_splits, n_rows // 3)))


def cv_predictions(fit_predict: Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray],
                   X: np.ndarray, y: np.ndarray, cv: TimeSeriesSplit) -> np.ndarray:
    """Out-of-sample predictions on every fold's test rows, NaN on rows no fold tests.

    ``fit_predict(X_train, y_train, X_test)`` is called once per fold and returns the test rows'
    predictions.
    """
    out = np.full(y.shape, np.nan)
    for train, test in cv.split(X):
        out[test] = fit_predict(X[train], y[train], X[test])
    return out


def mae_per_asset(y: np.ndarray, predictions: np.ndarray) -> np.ndarray:
    """Mean absolute error per column over the rows where ``predictions`` is finite."""
    rows = np.isfinite(predictions).all(axis=1)
    if not rows.any():
        return np.full(y.shape[1], np.nan)
    return np.mean(np.abs(y[rows] - predictions[rows]), axis=0)

