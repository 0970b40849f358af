"""Slow, obviously correct reference implementations the tests compare the job's fast paths against."""

from __future__ import annotations

import itertools
from typing import Any

import numpy as np
from sklearn.base import clone
from sklearn.model_selection import GridSearchCV, TimeSeriesSplit

from job.models.cv import cv_predictions


def estimator_cv_predictions(estimator: Any, X: np.ndarray, y: np.ndarray, cv: TimeSeriesSplit) -> np.ndarray:
    """:func:`job.models.cv.cv_predictions` for a scikit-learn estimator (a fresh clone per fold)."""

    def fit_predict(X_train: np.ndarray, y_train: np.ndarray, X_test: np.ndarray) -> np.ndarray:
        model = clone(estimator)
        model.fit(X_train, y_train)
        return np.asarray(model.predict(X_test)).reshape(len(X_test), -1)

    return cv_predictions(fit_predict, X, y, cv)


def tune(estimator: Any, grid: dict[str, list[Any]], X: np.ndarray, y: np.ndarray,
         cv: TimeSeriesSplit) -> tuple[Any, dict[str, Any], np.ndarray]:
    """``GridSearchCV`` over ``grid`` by time-ordered CV (mean absolute error), refitted on all rows: what
    :mod:`job.models.fastcv`'s exact shortcuts must reproduce.

    Returns ``(fitted best estimator, best parameters, CV test-row predictions of the best setting)``.
    A grid with one setting skips the search (the model is still validated on the same folds).
    """
    settings = [dict(zip(grid, values, strict=True)) for values in itertools.product(*grid.values())]
    if len(settings) == 1:
        best_params = settings[0]
    else:
        search = GridSearchCV(estimator, grid, scoring="neg_mean_absolute_error", cv=cv, refit=False,
                              error_score="raise")
        search.fit(X, y)
        best_params = search.best_params_
    best = clone(estimator).set_params(**best_params)
    predictions = estimator_cv_predictions(best, X, y, cv)
    best.fit(X, y)
    return best, {k: v.item() if isinstance(v, np.generic) else v for k, v in best_params.items()}, predictions
