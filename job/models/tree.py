"""A regression tree on the flattened feature window, its size chosen by time-ordered CV."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from sklearn.base import clone
from sklearn.pipeline import Pipeline
from sklearn.tree import DecisionTreeRegressor

from job.models.base import Forecaster, WindowFlattener
from job.models.cv import mae_per_asset, time_series_cv
from job.models.fastcv import tree_path_cv

# The setting the original notebook's search chose; reachable without a search via ``fixed=True``.
ORIGINAL_TREE = {"max_leaf_nodes": 50, "min_samples_split": 10, "min_samples_leaf": 1}


class TreeForecaster(Forecaster):
    """Multi-output ``DecisionTreeRegressor`` (squared error) over the flattened window.

    The grid ``max_leaf_nodes x min_samples_split x min_samples_leaf`` is searched with
    ``TimeSeriesSplit(cv_splits)`` and mean absolute error, then refitted on all rows. ``fixed=True``
    uses the original notebook's setting (50 leaves, split 10, leaf 1) without a search. No scaler:
    a tree's splits do not depend on the features' scale. ``seed`` fixes the tie-breaking between
    equally good splits, so two fits are identical bit for bit.
    """

    def __init__(self, max_leaf_nodes: Sequence[int] = (10, 20, 50, 100),
                 min_samples_split: Sequence[int] = (2, 5, 10, 20), min_samples_leaf: Sequence[int] = (1, 2, 4, 8),
                 fixed: bool = False, cv_splits: int = 5, seed: int = 42,
                 prior_validation_mae: Sequence[float] | None = None) -> None:
        self.max_leaf_nodes = max_leaf_nodes
        self.min_samples_split = min_samples_split
        self.min_samples_leaf = min_samples_leaf
        self.fixed = fixed
        self.cv_splits = cv_splits
        self.seed = seed
        self.prior_validation_mae = prior_validation_mae

    def fit(self, X: np.ndarray, y: np.ndarray) -> TreeForecaster:
        X, y = self._validate_fit(X, y)
        pipeline = Pipeline([("flatten", WindowFlattener()),
                             ("tree", DecisionTreeRegressor(criterion="squared_error", random_state=self.seed))])
        if self.fixed:
            grid = {k: [v] for k, v in ORIGINAL_TREE.items()}
        else:
            grid = {"max_leaf_nodes": [int(v) for v in self.max_leaf_nodes],
                    "min_samples_split": [int(v) for v in self.min_samples_split],
                    "min_samples_leaf": [int(v) for v in self.min_samples_leaf]}
        if self.cv_splits == 0:
            # A walk-forward refit between searches (tuned_clone): one fit with the searched setting; the
            # validation error is the one the search measured (prior_validation_mae), not measured again.
            self.best_params_ = {k: int(v[0]) for k, v in grid.items()}
            self.model_ = pipeline.set_params(**{f"tree__{k}": v for k, v in self.best_params_.items()}).fit(X, y)
            self.validation_predictions_ = np.full(y.shape, np.nan)
            self.validation_mae_ = (np.asarray(self.prior_validation_mae, dtype=np.float64) if self.prior_validation_mae
                                    is not None else np.full(y.shape[1], np.nan))
            return self
        cv = time_series_cv(len(X), self.cv_splits)
        # One best-first fit per split answers every leaf count (job.models.fastcv); the same choice and
        # predictions as GridSearchCV over the pipeline below.
        self.best_params_, self.validation_predictions_ = tree_path_cv(X, y, grid, cv, self.seed)
        self.model_ = pipeline.set_params(**{f"tree__{k}": v for k, v in self.best_params_.items()}).fit(X, y)
        self.validation_mae_ = mae_per_asset(y, self.validation_predictions_)
        return self

    def tuned_clone(self) -> TreeForecaster:
        """An unfitted copy for walk-forward refits between searches: this fit's chosen setting, no CV,
        and this fit's validation error carried forward (``cv_splits=0``, ``prior_validation_mae``)."""
        p = self.best_params_
        return clone(self).set_params(fixed=False, max_leaf_nodes=(p["max_leaf_nodes"],),
                                      min_samples_split=(p["min_samples_split"],),
                                      min_samples_leaf=(p["min_samples_leaf"],), cv_splits=0,
                                      prior_validation_mae=tuple(float(v) for v in self.validation_mae_))

    def predict(self, X: np.ndarray) -> np.ndarray:
        """Next month's return per asset, shape ``(n, n_assets)``."""
        return np.asarray(self.model_.predict(self._validate_predict(X))).reshape(len(X), self.n_assets_)
