"""The cross-sectional momentum baseline (12-1 month return) and its registration as ``momentum``."""

from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
from sklearn.base import clone
from sklearn.exceptions import NotFittedError

from job.models.baselines import MomentumForecaster
from job.models.factory import MODEL_NAMES, build_model

N_ASSETS, N_FEATURES, LOOKBACK = 3, 5, 13
RET = (4, 0, 2)  # where each asset's return sits among the features


def _windows(n: int = 30, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    X = rng.normal(0.0, 0.05, (n, LOOKBACK, N_FEATURES))
    y = rng.normal(0.0, 0.05, (n, N_ASSETS))
    return X, y


def test_prediction_is_the_12_1_return_per_month_by_hand() -> None:
    X, y = _windows()
    model = MomentumForecaster(return_feature_index=RET).fit(X, y)
    pred, signal = model.predict(X[:2]), model.signal(X[:2])
    for row in range(2):
        for asset, col in enumerate(RET):
            months = X[row, LOOKBACK - 12:LOOKBACK - 1, col]  # t-11 .. t-1 of a window ending at t
            total = math.prod(1.0 + months) - 1.0
            assert math.isclose(signal[row, asset], total, rel_tol=1e-12)
            assert math.isclose(pred[row, asset], (1.0 + total) ** (1 / 11) - 1.0, rel_tol=1e-12)
    # same cross-sectional order as the 12-1 return (the rank IC is the signal's)
    assert (np.argsort(pred, axis=1) == np.argsort(signal, axis=1)).all()


def test_only_the_formation_months_matter() -> None:
    X, y = _windows()
    model = MomentumForecaster(return_feature_index=RET).fit(X, y)
    base = model.predict(X)
    bumped = X.copy()
    bumped[:, -1, :] += 0.5      # the skipped month t
    bumped[:, 0, :] += 0.5       # t-12: outside a 12-month window inside a 13-month lookback
    bumped[:, :, 1] += 0.5       # a feature that is not a return
    assert np.array_equal(model.predict(bumped), base)
    bumped[:, -12, RET[0]] += 0.1  # t-11 is in
    assert not np.allclose(model.predict(bumped)[:, 0], base[:, 0])


def test_window_is_settable() -> None:
    X, y = _windows()
    six_zero = MomentumForecaster(return_feature_index=RET, months=6, skip=0).fit(X, y)
    months = X[:, -6:, :][:, :, list(RET)]
    assert np.allclose(six_zero.predict(X), np.prod(1 + months, axis=1) ** (1 / 6) - 1, rtol=1e-12, atol=0)


@pytest.mark.parametrize(("months", "skip", "match"), [(14, 1, "at least 14 months"), (3, 3, "skip < months"),
                                                      (3, -1, "skip < months")])
def test_bad_windows_are_refused(months: int, skip: int, match: str) -> None:
    X, y = _windows()
    with pytest.raises(ValueError, match=match):
        MomentumForecaster(return_feature_index=RET, months=months, skip=skip).fit(X, y)
    with pytest.raises(ValueError, match="return_feature_index"):
        MomentumForecaster(return_feature_index=(0, 1)).fit(X, y)


def test_scikit_learn_conventions() -> None:
    X, y = _windows()
    model = MomentumForecaster(return_feature_index=RET, months=9, skip=2, cv_splits=3)
    assert model.get_params() == {"return_feature_index": RET, "months": 9, "skip": 2, "cv_splits": 3}
    assert clone(model).get_params() == model.get_params()
    with pytest.raises(NotFittedError):
        model.predict(X)
    before = set(vars(model))
    model.fit(X, y)
    assert all(name.endswith("_") for name in set(vars(model)) - before)
    assert model.validation_mae_.shape == (N_ASSETS,) and np.isfinite(model.validation_mae_).all()
    assert model.validation_predictions_.shape == y.shape


def test_factory_registers_momentum_with_its_settings() -> None:
    assert "momentum" in MODEL_NAMES
    plain = SimpleNamespace(models=SimpleNamespace(cv_splits=4))
    model = build_model("momentum", plain, return_feature_index=RET)  # type: ignore[arg-type]
    assert isinstance(model, MomentumForecaster)
    assert (model.months, model.skip, model.cv_splits, model.return_feature_index) == (12, 1, 4, RET)
    custom = SimpleNamespace(models=SimpleNamespace(cv_splits=4, momentum_months=6, momentum_skip_months=0))
    model = build_model("momentum", custom, return_feature_index=RET)  # type: ignore[arg-type]
    assert (model.months, model.skip) == (6, 0)


def test_walk_forward_runs_momentum_through_the_allocation(synthetic) -> None:
    """``walk_forward(dataset, ["momentum"], settings)``: forecasts are the 12-1 returns of the data."""
    from job.backtest import walk_forward
    from job.config import load_settings

    settings = load_settings(environ={}, overrides={"backtest": {"n_jobs": 1}})
    result = walk_forward(synthetic, ["momentum"], settings)
    assert set(result.forecasts["model"]) == {"momentum"} and set(result.portfolio["model"]) == {"momentum"}
    assert result.portfolio["portfolio_return_net"].notna().all()
    returns = synthetic.returns[synthetic.assets]
    for month in pd.PeriodIndex(result.forecasts["decision_month"].unique())[[0, -1]]:
        formation = returns.loc[month - 11:month - 1]
        assert len(formation) == 11
        expected = (1.0 + formation).prod() ** (1 / 11) - 1.0
        rows = result.forecasts[result.forecasts["decision_month"] == month].set_index("asset")["predicted"]
        assert np.allclose(rows[synthetic.assets].to_numpy(), expected.to_numpy(), rtol=1e-12, atol=0)
