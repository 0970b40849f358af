"""Time-ordered cross-validation helpers: folds never train on rows after the rows they test."""

from __future__ import annotations

import itertools
from collections.abc import Callable

import numpy as np
from sklearn.base import clone
from sklearn.model_selection import GridSearchCV, TimeSeriesSplit


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


def estimator_cv_predictions(estimator: object, X: np.ndarray, y: np.ndarray, cv: TimeSeriesSplit) -> np.ndarray:
    """:func:`cv_predictions` for a scikit-learn estimator (a fresh clone per fold)."""

    def fit_predict(X_train: np.ndarray, y_train: np.ndarray, X_test: np.ndarray) -> np.ndarray:
        model = clone(estimator)
        model.fit(X_train, y_train)  # type: ignore[attr-defined]
        return np.asarray(model.predict(X_test)).reshape(len(X_test), -1)  # type: ignore[attr-defined]

    return cv_predictions(fit_predict, X, y, cv)


def mae_per_asset(y: np.ndarray, predictions: np.ndarray) -> np.ndarray:
    """Mean absolute error per column over the rows where ``predictions`` is finite."""
    rows = np.isfinite(predictions).all(axis=1)
    if not rows.any():
        return np.full(y.shape[1], np.nan)
    return np.mean(np.abs(y[rows] - predictions[rows]), axis=0)


def tune(estimator: object, grid: dict[str, list], X: np.ndarray, y: np.ndarray, cv: TimeSeriesSplit, *,
         n_jobs: int | None = None) -> tuple[object, dict, np.ndarray]:
    """Choose ``grid`` parameters by time-ordered CV (mean absolute error), refit on all rows.

    Returns ``(fitted best estimator, best parameters, CV test-row predictions of the best setting)``.
    A grid with one setting skips the search (the model is still validated on the same folds).
    """
    settings = [dict(zip(grid, values, strict=True)) for values in itertools.product(*grid.values())]
    if len(settings) == 1:
        best_params = settings[0]
    else:
        search = GridSearchCV(estimator, grid, scoring="neg_mean_absolute_error", cv=cv, n_jobs=n_jobs,
                              refit=False, error_score="raise")
        search.fit(X, y)
        best_params = search.best_params_
    best = clone(estimator).set_params(**best_params)  # type: ignore[attr-defined]
    predictions = estimator_cv_predictions(best, X, y, cv)
    best.fit(X, y)
    return best, {k: _plain(v) for k, v in best_params.items()}, predictions


def _plain(value: object) -> object:
    """numpy scalars -> Python numbers (for metadata JSON)."""
    return value.item() if isinstance(value, np.generic) else value
