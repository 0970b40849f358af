"""The baselines every model is reported against: persistence, the historical mean and momentum."""

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


class MomentumForecaster(Forecaster):
    """Cross-sectional momentum: next month's return of each asset from its ``months - skip`` month return.

    At decision month t (the window's last month) the signal of asset i is the compounded return from
    month ``t - months + 1`` to ``t - skip``: with the defaults (12, 1) the classic "12-1" momentum,
    ``M_i = prod_{s=t-11}^{t-1} (1 + r_{i,s}) - 1``, skipping the most recent month (Jegadeesh and Titman
    1993; Fama and French's "prior 2-12" sort). The forecast is that return per month,
    ``(1 + M_i) ** (1 / (months - skip)) - 1``: on the scale of a monthly return (so its MAE and the
    allocation's threshold mean what they mean for the other models) and with the same cross-sectional
    ranks as ``M_i`` (so its rank IC is the momentum signal's). Nothing is learned; returns are read from
    the ``ret:<ASSET>`` features at ``return_feature_index``, like :class:`PersistenceForecaster`, and
    ``validation_mae_`` is measured on the same time-ordered CV test rows.

    Parameters
    ----------
    return_feature_index : sequence of int
        Feature positions of the assets' monthly returns, one per asset.
    months : int
        Span of the formation window including the skipped months (12); the feature window must hold at
        least this many months.
    skip : int
        Most recent months left out (1), ``0 <= skip < months``.
    cv_splits : int
        Folds of the time-ordered validation.

    References
    ----------
    Jegadeesh, N. and Titman, S. (1993), "Returns to buying winners and selling losers", *Journal of
    Finance* 48(1); Moskowitz, T. and Grinblatt, M. (1999), "Do industries explain momentum?", *Journal of
    Finance* 54(4) (momentum across industry portfolios).
    """

    def __init__(self, return_feature_index: Sequence[int] = (), months: int = 12, skip: int = 1,
                 cv_splits: int = 5) -> None:
        self.return_feature_index = return_feature_index
        self.months = months
        self.skip = skip
        self.cv_splits = cv_splits

    def fit(self, X: np.ndarray, y: np.ndarray) -> MomentumForecaster:
        X, y = self._validate_fit(X, y)
        index = np.asarray(self.return_feature_index, dtype=np.intp)
        if index.shape != (self.n_assets_,) or (index < 0).any() or (index >= self.n_features_in_).any():
            raise ValueError(f"return_feature_index must hold {self.n_assets_} feature positions, "
                             f"got {list(self.return_feature_index)}")
        months, skip = int(self.months), int(self.skip)
        if not 0 <= skip < months:
            raise ValueError(f"momentum needs 0 <= skip < months, got months={months}, skip={skip}")
        if months > self.n_steps_:
            raise ValueError(f"a {months}-month momentum needs windows of at least {months} months, "
                             f"got {self.n_steps_} (raise models.lookback_months)")
        self.feature_index_ = index
        self.formation_ = slice(self.n_steps_ - months, self.n_steps_ - skip)
        cv = time_series_cv(len(X), self.cv_splits)
        self.validation_predictions_ = cv_predictions(lambda _x, _y, X_test: self._momentum(X_test), X, y, cv)
        self.validation_mae_ = mae_per_asset(y, self.validation_predictions_)
        return self

    def _momentum(self, X: np.ndarray) -> np.ndarray:
        returns = X[:, self.formation_, :][:, :, self.feature_index_]
        growth = np.prod(np.maximum(1.0 + returns, 0.0), axis=1)
        return growth ** (1.0 / returns.shape[1]) - 1.0

    def signal(self, X: np.ndarray) -> np.ndarray:
        """The compounded formation-window return ``M_i`` (12-1 momentum), shape ``(n, n_assets)``."""
        per_month = self._momentum(self._validate_predict(X))
        return (1.0 + per_month) ** (int(self.months) - int(self.skip)) - 1.0

    def predict(self, X: np.ndarray) -> np.ndarray:
        """The formation window's compounded return per month of each asset, shape ``(n, n_assets)``."""
        return self._momentum(self._validate_predict(X))
