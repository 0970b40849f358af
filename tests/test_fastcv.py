"""The exact shortcuts for ridge and tree searches agree with GridSearchCV over the same splits."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import Ridge
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.tree import DecisionTreeRegressor

from job.backtest import Fold, tuning_folds
from job.dataset import synthetic_dataset
from job.models.base import Clipper, WindowFlattener
from job.models.cv import time_series_cv
from job.models.fastcv import ridge_path_cv, tree_path_cv
from job.models.linear import RidgeForecaster
from job.models.tree import TreeForecaster
from tests.oracles import tune


@pytest.fixture(scope="module")
def xy() -> tuple[np.ndarray, np.ndarray]:
    data = synthetic_dataset(n_months=120, n_assets=5, n_macro=12, seed=3)
    X, y, _ = data.training_set(6, pd.Period("2014-12", "M"))
    return X, y


def test_ridge_path_matches_grid_search(xy: tuple[np.ndarray, np.ndarray]) -> None:
    """Every alpha's CV predictions equal a refit pipeline's; the chosen alpha is GridSearchCV's."""
    X, y = xy
    alphas = [0.1, 5.0, 50.0, 1000.0]
    cv = time_series_cv(len(X), 5)
    best, paths = ridge_path_cv(X, y, alphas, cv, clip=5.0)
    pipe = Pipeline([("flatten", WindowFlattener()), ("scale", StandardScaler()), ("clip", Clipper(5.0)),
                     ("ridge", Ridge())])
    _, params, predictions = tune(pipe, {"ridge__alpha": alphas}, X, y, cv)
    assert alphas[best] == params["ridge__alpha"]
    np.testing.assert_allclose(paths[best], predictions, rtol=1e-8, atol=1e-10, equal_nan=True)


def test_tree_truncation_equals_fresh_fits(xy: tuple[np.ndarray, np.ndarray]) -> None:
    """A best-first tree cut to k leaves predicts exactly like a tree fitted with max_leaf_nodes=k."""
    X, y = xy
    grid = {"max_leaf_nodes": [3, 8, 20], "min_samples_split": [2, 10], "min_samples_leaf": [1, 4]}
    cv = time_series_cv(len(X), 4)
    best, predictions = tree_path_cv(X, y, grid, cv, seed=7)
    pipe = Pipeline([("flatten", WindowFlattener()), ("tree", DecisionTreeRegressor(random_state=7))])
    _, params, expected = tune(pipe, {f"tree__{k}": v for k, v in grid.items()}, X, y, cv)
    assert best == {k.removeprefix("tree__"): v for k, v in params.items()}
    np.testing.assert_array_equal(predictions, expected)


def test_tuned_clone_keeps_the_choice(xy: tuple[np.ndarray, np.ndarray]) -> None:
    """Refits between searches use the searched setting and reproduce the searched fit exactly."""
    X, y = xy
    for model in (RidgeForecaster(alphas=(1.0, 100.0)), TreeForecaster(max_leaf_nodes=(4, 16))):
        model.fit(X, y)
        refit = model.tuned_clone().fit(X, y)
        assert refit.best_params_ == model.best_params_
        np.testing.assert_array_equal(refit.predict(X), model.predict(X))
        np.testing.assert_allclose(refit.validation_mae_, model.validation_mae_)


def test_tuning_folds_every_n_months() -> None:
    """Searches happen at the first fold and then whenever tune_months have passed."""
    months = pd.period_range("2010-01", periods=30, freq="M")
    folds = [Fold(fit_month=m, decision_months=pd.PeriodIndex([m], freq="M")) for m in months]
    flags = tuning_folds(folds, 12)
    assert [i for i, f in enumerate(flags) if f] == [0, 12, 24]
    assert all(tuning_folds(folds, 1))
