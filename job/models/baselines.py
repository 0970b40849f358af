"""The two baselines every model is reported against: persistence and the historical mean."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from job.models.base import Forecaster
from job.models.cv import cv_predictions, mae_per_asset, time_series_cv


class PersistenceForecaster(Forecaster):
    """Next month's return of each asset = its return this month (the original notebook's baseline).

    Reads the ``ret:<ASSET>`` features of the window's last month, at ``return_feature_index`` (in
    asset order, from :meth:`job.dataset.Dataset.return_feature_index`). Nothing is learned;
    ``validation_mae_`` is measured on the same time-ordered CV test rows as the tuned models, so the
    numbers are comparable.

    Parameters
    ----------
    return_feature_index : sequence of int
        Feature positions of the assets' current-month returns, one per asset.
    cv_splits : int
        Folds of the time-ordered validation (only which rows are scored depends on it).
    """

    def __init__(self, return_feature_index: Sequence[int] = (), cv_splits: int = 5) -> None:
        self.return_feature_index = return_feature_index
        self.cv_splits = cv_splits

    def fit(self, X: np.ndarray, y: np.ndarray) -> PersistenceForecaster:
        X, y = self._validate_fit(X, y)
        index = np.asarray(self.return_feature_index, dtype=np.intp)
        if index.shape != (self.n_assets_,) or (index < 0).any() or (index >= self.n_features_in_).any():
            raise ValueError(f"return_feature_index must hold {self.n_assets_} feature positions, "
                             f"got {list(self.return_feature_index)}")
        self.feature_index_ = index
        cv = time_series_cv(len(X), self.cv_splits)
        self.validation_predictions_ = cv_predictions(lambda _x, _y, X_test: self._persist(X_test), X, y, cv)
        self.validation_mae_ = mae_per_asset(y, self.validation_predictions_)
        return self

    def _persist(self, X: np.ndarray) -> np.ndarray:
        return X[:, -1, self.feature_index_].copy()

    def predict(self, X: np.ndarray) -> np.ndarray:
        """The last window month's return of each asset, shape ``(n, n_assets)``."""
        return self._persist(self._validate_predict(X))


class HistoricalMeanForecaster(Forecaster):
    """Next month's return of each asset = the mean of its returns in the training labels.

    Refitted every month (as the walk-forward backtest and ``forecast`` do), this is the expanding
    historical mean of each asset's monthly return: a stronger, honest baseline than persistence.
    ``predict`` ignores ``X`` beyond its length: the forecast is the mean of the labels seen in ``fit``.
    ``validation_mae_``: on each time-ordered CV fold, the mean of the fold's training labels predicts
    its test rows.
    """

    def __init__(self, cv_splits: int = 5) -> None:
        self.cv_splits = cv_splits

    def fit(self, X: np.ndarray, y: np.ndarray) -> HistoricalMeanForecaster:
        X, y = self._validate_fit(X, y)
        self.mean_ = y.mean(axis=0)
        cv = time_series_cv(len(X), self.cv_splits)
        self.validation_predictions_ = cv_predictions(
            lambda _x, y_train, X_test: np.tile(y_train.mean(axis=0), (len(X_test), 1)), X, y, cv)
        self.validation_mae_ = mae_per_asset(y, self.validation_predictions_)
        return self

    def predict(self, X: np.ndarray) -> np.ndarray:
        """The training mean of each asset for every row of ``X``, shape ``(n, n_assets)``."""
        X = self._validate_predict(X)
        return np.tile(self.mean_, (len(X), 1))
