"""Ridge regression on the flattened, standardised feature window, alpha chosen by time-ordered CV."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from sklearn.base import clone
from sklearn.linear_model import Ridge
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from job.models.base import Clipper, Forecaster, WindowFlattener
from job.models.cv import mae_per_asset, time_series_cv
from job.models.fastcv import ridge_path_cv


class RidgeForecaster(Forecaster):
    """Multi-output Ridge over the 12-month window flattened to one row (12 x 135 -> 1620 columns).

    ``Pipeline(flatten -> StandardScaler -> clip to +-clip -> Ridge)``: the scaler is fitted on the
    training rows of each CV fold and, finally, on all training rows; standardised values beyond
    ``clip`` standard deviations are clipped (None: no clipping) so that one out-of-range series cannot
    dominate a forecast. ``alpha`` is chosen from ``alphas`` by
    ``TimeSeriesSplit(cv_splits)`` with mean absolute error (the original notebook chose 1000 from
    [5, 25, 50, 300, 500, 1000]), then the pipeline is refitted on all rows.

    Attributes
    ----------
    model_ : Pipeline
        The refitted pipeline.
    best_params_ : dict
        ``{"alpha": ...}``.
    validation_mae_ : ndarray of shape (n_assets,)
        MAE of the chosen alpha on the CV test rows.
    """

    def __init__(self, alphas: Sequence[float] = (5.0, 25.0, 50.0, 300.0, 500.0, 1000.0), cv_splits: int = 5,
                 clip: float | None = 5.0) -> None:
        self.alphas = alphas
        self.clip = clip
        self.cv_splits = cv_splits

    def fit(self, X: np.ndarray, y: np.ndarray) -> RidgeForecaster:
        X, y = self._validate_fit(X, y)
        pipeline = Pipeline([("flatten", WindowFlattener()), ("scale", StandardScaler()),
                             ("clip", Clipper(self.clip)), ("ridge", Ridge())])
        alphas = [float(a) for a in self.alphas]
        cv = time_series_cv(len(X), self.cv_splits)
        # Every alpha's CV predictions from one eigendecomposition per split (job.models.fastcv);
        # the same choice and predictions as GridSearchCV over the pipeline below.
        best, predictions = ridge_path_cv(X, y, alphas, cv, self.clip)
        self.validation_predictions_ = predictions[best]
        self.model_ = pipeline.set_params(ridge__alpha=alphas[best]).fit(X, y)
        self.best_params_ = {"alpha": alphas[best]}
        self.validation_mae_ = mae_per_asset(y, self.validation_predictions_)
        return self

    def tuned_clone(self) -> RidgeForecaster:
        """An unfitted copy whose grid is this fit's chosen alpha (walk-forward refits between tunings)."""
        return clone(self).set_params(alphas=(self.best_params_["alpha"],))

    def predict(self, X: np.ndarray) -> np.ndarray:
        """Next month's return per asset, shape ``(n, n_assets)``."""
        return np.asarray(self.model_.predict(self._validate_predict(X))).reshape(len(X), self.n_assets_)
