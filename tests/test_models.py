"""The scikit-learn forecasters on the synthetic dataset with a planted signal."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
from sklearn.base import clone

from job.config import load_settings
from job.dataset import Dataset
from job.errors import ConfigError
from job.models import (
    MODEL_NAMES,
    EnsembleForecaster,
    HistoricalMeanForecaster,
    PersistenceForecaster,
    RidgeForecaster,
    TreeForecaster,
    build_model,
    parse_model_names,
    training_data,
)
from job.models.cv import time_series_cv

LOOKBACK = 12
N_TRAIN = 120


@pytest.fixture(scope="module")
def data(synthetic: Dataset) -> tuple[np.ndarray, np.ndarray, pd.PeriodIndex]:
    return synthetic.training_set(LOOKBACK, synthetic.months[-1])


@pytest.fixture(scope="module")
def settings():
    return load_settings(environ={}, overrides={"models": {"cv_splits": 4}})


def _mae(model, X: np.ndarray, y: np.ndarray) -> float:
    model.fit(X[:N_TRAIN], y[:N_TRAIN])
    return float(np.mean(np.abs(model.predict(X[N_TRAIN:]) - y[N_TRAIN:])))


def test_ridge_and_tree_beat_persistence_out_of_sample(synthetic: Dataset, data) -> None:
    """Trained on the first 120 rows, ridge and the tree forecast the rest better than persistence."""
    X, y, _ = data
    persistence = _mae(PersistenceForecaster(synthetic.return_feature_index()), X, y)
    ridge = _mae(RidgeForecaster(), X, y)
    tree = _mae(TreeForecaster(fixed=True), X, y)
    assert ridge < persistence
    assert tree < persistence


@pytest.mark.parametrize("name", [n for n in MODEL_NAMES if n != "lstm"])
def test_every_model_gives_finite_predictions_and_validation_mae(name: str, synthetic: Dataset, data,
                                                                  settings) -> None:
    """build_model(name) fits and predicts (n, n_assets) finite values and reports per-asset MAE."""
    X, y, _ = data
    members = None
    if name == "ensemble":
        members = {m: build_model(m, settings, return_feature_index=synthetic.return_feature_index())
                   for m in ("ridge", "historical-mean")}
    model = build_model(name, settings, return_feature_index=synthetic.return_feature_index(), members=members)
    model.fit(X[:N_TRAIN], y[:N_TRAIN])
    pred = model.predict(X[N_TRAIN:])
    assert pred.shape == (len(X) - N_TRAIN, y.shape[1])
    assert np.isfinite(pred).all()
    assert model.validation_mae_.shape == (y.shape[1],)
    assert np.isfinite(model.validation_mae_).all() and (model.validation_mae_ > 0).all()
    assert (model.n_assets_, model.n_features_in_) == (y.shape[1], X.shape[2])


def test_unknown_model_name_is_a_config_error(settings) -> None:
    with pytest.raises(ConfigError, match="unknown model 'xgboost'"):
        build_model("xgboost", settings, return_feature_index=[0])
    with pytest.raises(ConfigError, match="unknown model"):
        parse_model_names("ridge,xgboost", settings)
    assert parse_model_names("tree, ridge", settings) == ["ridge", "tree"]


@pytest.mark.parametrize("model", [RidgeForecaster(), TreeForecaster()])
def test_sklearn_models_are_bit_for_bit_deterministic(model, data) -> None:
    """Two fits on the same data give identical predictions and chosen parameters."""
    X, y, _ = data
    first = clone(model).fit(X[:N_TRAIN], y[:N_TRAIN])
    second = clone(model).fit(X[:N_TRAIN], y[:N_TRAIN])
    assert first.best_params_ == second.best_params_
    np.testing.assert_array_equal(first.predict(X[N_TRAIN:]), second.predict(X[N_TRAIN:]))


def test_tuned_models_choose_from_the_configured_grids(data) -> None:
    X, y, _ = data
    ridge = RidgeForecaster(alphas=(5.0, 1000.0)).fit(X, y)
    assert ridge.best_params_["alpha"] in (5.0, 1000.0)
    tree = TreeForecaster(max_leaf_nodes=(10, 20), min_samples_split=(2,), min_samples_leaf=(1, 4)).fit(X, y)
    assert tree.best_params_["max_leaf_nodes"] in (10, 20) and tree.best_params_["min_samples_leaf"] in (1, 4)


def test_tree_fixed_is_the_original_setting(data, settings) -> None:
    X, y, _ = data
    fixed = settings.with_overrides({"models": {"tree_fixed": True}})
    tree = build_model("tree", fixed, return_feature_index=[0]).fit(X, y)
    assert tree.best_params_ == {"max_leaf_nodes": 50, "min_samples_split": 10, "min_samples_leaf": 1}
    assert tree.model_.named_steps["tree"].max_leaf_nodes == 50


def test_ridge_scaler_sees_only_training_rows(data) -> None:
    """The pipeline's StandardScaler is fitted on the rows passed to fit, never on later rows."""
    X, y, _ = data
    ridge = RidgeForecaster(alphas=(50.0,)).fit(X[:N_TRAIN], y[:N_TRAIN])
    scaler = ridge.model_.named_steps["scale"]
    np.testing.assert_allclose(scaler.mean_, X[:N_TRAIN].reshape(N_TRAIN, -1).mean(axis=0))
    assert ridge.model_.named_steps["scale"].n_features_in_ == LOOKBACK * X.shape[2]


def test_validation_is_time_ordered(data) -> None:
    """Every CV fold trains on rows before the rows it tests; the first rows are never validated."""
    X, _, _ = data
    for train, test in time_series_cv(len(X), 5).split(X):
        assert train.max() < test.min()
    model = HistoricalMeanForecaster(cv_splits=5).fit(X, data[1])
    assert np.isnan(model.validation_predictions_[0]).all()
    assert np.isfinite(model.validation_predictions_[-1]).all()


def test_persistence_predicts_last_months_returns(synthetic: Dataset, data) -> None:
    X, y, months = data
    model = PersistenceForecaster(synthetic.return_feature_index()).fit(X, y)
    pred = model.predict(X)
    np.testing.assert_array_equal(pred, synthetic.returns.loc[months].to_numpy())


def test_historical_mean_predicts_training_mean(data) -> None:
    X, y, _ = data
    model = HistoricalMeanForecaster().fit(X[:N_TRAIN], y[:N_TRAIN])
    np.testing.assert_allclose(model.predict(X[N_TRAIN:])[0], y[:N_TRAIN].mean(axis=0))


def test_ensemble_weights_follow_validation_mae(synthetic: Dataset, data) -> None:
    """Inverse-MAE weights sum to one and favour the member with the lower validation MAE."""
    X, y, _ = data
    members = {"ridge": RidgeForecaster().fit(X, y),
               "persistence": PersistenceForecaster(synthetic.return_feature_index()).fit(X, y)}
    ens = EnsembleForecaster(members=members, weighting="inverse-mae").fit(X, y)
    assert pytest.approx(sum(ens.weights_.values())) == 1.0
    assert ens.weights_["ridge"] > ens.weights_["persistence"]
    expected = sum(w * members[n].predict(X[-3:]) for n, w in ens.weights_.items())
    np.testing.assert_allclose(ens.predict(X[-3:]), expected)
    equal = EnsembleForecaster(members=members, weighting="equal").fit(X, y)
    assert equal.weights_ == {"ridge": 0.5, "persistence": 0.5}


def test_bad_inputs_are_rejected(data) -> None:
    X, y, _ = data
    with pytest.raises(ValueError, match="shape"):
        RidgeForecaster().fit(X.reshape(len(X), -1), y)
    with pytest.raises(ValueError, match="finite"):
        bad = X.copy()
        bad[0, 0, 0] = np.nan
        RidgeForecaster().fit(bad, y)
    model = RidgeForecaster(alphas=(50.0,)).fit(X, y)
    with pytest.raises(ValueError, match="shape"):
        model.predict(X[:, 1:, :])


def test_training_data_has_no_label_after_as_of(synthetic: Dataset) -> None:
    """Every training row's label month (decision month + 1) is at or before the as-of month."""
    as_of = pd.Period("2012-06", freq="M")
    _, y, months = training_data(synthetic, LOOKBACK, as_of)
    assert (months + 1 <= as_of).all()
    assert months[-1] + 1 == as_of
    np.testing.assert_array_equal(y[-1], synthetic.returns.loc[as_of].to_numpy())


def test_importing_models_does_not_import_tensorflow() -> None:
    code = "import sys, job.models; print('tensorflow' in sys.modules or 'keras' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_training_code_refuses_a_leaky_training_set(synthetic: Dataset, monkeypatch: pytest.MonkeyPatch) -> None:
    """Even if the dataset returned a row labelled after as_of, training stops with an assertion."""
    as_of = pd.Period("2012-06", freq="M")
    X, y, months = synthetic.training_set(LOOKBACK, as_of + 2)  # two months too many

    monkeypatch.setattr(Dataset, "training_set", lambda self, lookback, a: (X, y, months))
    with pytest.raises(AssertionError, match="label month after the as-of month 2012-06"):
        training_data(synthetic, LOOKBACK, as_of)
