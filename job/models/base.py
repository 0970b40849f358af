"""The forecaster contract shared by every model, and the window flattener.

A forecaster is a scikit-learn estimator (the constructor only stores parameters) that learns from
feature windows ``X`` of shape ``(n, lookback, n_features)`` and labels ``y`` of shape ``(n, n_assets)``
(each asset's return over the month after the window's last month) and predicts ``(n, n_assets)``.

After ``fit`` every forecaster has:

- ``n_features_in_``: features per month (the last axis of ``X``), ``n_steps_``: months per window,
  ``n_assets_``: outputs;
- ``validation_mae_``: mean absolute error per asset on time-ordered validation rows (rows the model
  was not fitted on when it predicted them);
- ``validation_predictions_``: ``(n, n_assets)`` predictions for those validation rows, NaN elsewhere
  (the ensemble combines them to measure its own validation error on common rows).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, RegressorMixin, TransformerMixin
from sklearn.utils.validation import check_is_fitted


class Forecaster(RegressorMixin, BaseEstimator):
    """Base class: input checks and the fitted-shape attributes every model sets."""

    def _validate_fit(self, X: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Check shapes and finiteness; set ``n_steps_``, ``n_features_in_``, ``n_assets_``."""
        X = np.asarray(X, dtype=np.float64)
        y = np.asarray(y, dtype=np.float64)
        if X.ndim != 3:
            raise ValueError(f"X must have shape (n, lookback, n_features), got {X.shape}")
        if y.ndim != 2 or y.shape[0] != X.shape[0]:
            raise ValueError(f"y must have shape ({X.shape[0]}, n_assets), got {y.shape}")
        if X.shape[0] < 3:
            raise ValueError(f"at least 3 training rows are needed, got {X.shape[0]}")
        if not (np.isfinite(X).all() and np.isfinite(y).all()):
            raise ValueError("X and y must be finite")
        self.n_steps_ = int(X.shape[1])
        self.n_features_in_ = int(X.shape[2])
        self.n_assets_ = int(y.shape[1])
        return X, y

    def _validate_predict(self, X: np.ndarray) -> np.ndarray:
        """Check that ``X`` has the fitted window shape; return it as float64."""
        check_is_fitted(self, "n_assets_")
        X = np.asarray(X, dtype=np.float64)
        if X.ndim != 3 or X.shape[1:] != (self.n_steps_, self.n_features_in_):
            raise ValueError(f"X must have shape (n, {self.n_steps_}, {self.n_features_in_}), got {X.shape}")
        return X

    @property
    def validation_mae(self) -> float:
        """Overall validation MAE (mean over assets)."""
        check_is_fitted(self, "validation_mae_")
        return float(np.mean(self.validation_mae_))


class WindowFlattener(TransformerMixin, BaseEstimator):
    """Flatten ``(n, lookback, n_features)`` windows into ``(n, lookback * n_features)`` rows.

    Columns are step-major: all features of the oldest month first (12 x 135 -> 1620, as the original).
    """

    def fit(self, X: np.ndarray, y: np.ndarray | None = None) -> WindowFlattener:
        X = np.asarray(X)
        if X.ndim != 3:
            raise ValueError(f"X must have shape (n, lookback, n_features), got {X.shape}")
        self.n_steps_, self.n_window_features_ = int(X.shape[1]), int(X.shape[2])
        return self

    def transform(self, X: np.ndarray) -> np.ndarray:
        check_is_fitted(self, "n_steps_")
        X = np.asarray(X, dtype=np.float64)
        if X.shape[1:] != (self.n_steps_, self.n_window_features_):
            raise ValueError(f"expected windows of shape (n, {self.n_steps_}, {self.n_window_features_})")
        return X.reshape(X.shape[0], -1)


def array_to_json(values: np.ndarray) -> dict[str, Any]:
    """An array as ``{"shape", "values"}`` JSON data; NaN and infinities become null. Floats round-trip."""
    arr = np.asarray(values, dtype=np.float64)
    return {"shape": list(arr.shape), "values": [float(v) if np.isfinite(v) else None for v in arr.ravel()]}


def array_from_json(data: dict[str, Any]) -> np.ndarray:
    """Inverse of :func:`array_to_json` (null -> NaN)."""
    values = [np.nan if v is None else v for v in data["values"]]
    return np.asarray(values, dtype=np.float64).reshape(data["shape"])


class Clipper(TransformerMixin, BaseEstimator):
    """Clip standardised features to ``[-limit, limit]`` (``limit=None``: pass through).

    A series that was nearly constant in the training rows (or changed units later) can be thousands
    of training standard deviations away at prediction time; unclipped, one such column turns a linear
    forecast into nonsense (the real snapshot's ``CONSPI`` does exactly this around 2019).
    """

    def __init__(self, limit: float | None = 5.0) -> None:
        self.limit = limit

    def fit(self, X: np.ndarray, y: np.ndarray | None = None) -> Clipper:
        self.n_features_in_ = int(np.asarray(X).shape[1])
        return self

    def transform(self, X: np.ndarray) -> np.ndarray:
        X = np.asarray(X, dtype=np.float64)
        return X if self.limit is None else np.clip(X, -self.limit, self.limit)
