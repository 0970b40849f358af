"""The allocation rule: parity with a loop transcription of the issue's formulas, modes, costs, sweep."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from job import metrics
from job.strategy import (
    PRESETS,
    StrategyParams,
    allocate,
    costs,
    portfolio_returns,
    run_strategy,
    sweep,
    turnover,
)


def allocate_loop(p: list[float], threshold: float, factor: float, shrinkage: float) -> dict:
    """The issue's rule transcribed literally, one asset at a time (the reference for parity)."""
    n = len(p)
    flags = [p_i > threshold for p_i in p]
    mult = [factor if f else 1.0 for f in flags]
    raw = [max(0.0, p_i) * m for p_i, m in zip(p, mult, strict=True)]
    total = 0.0
    for value in raw:
        total += value
    normal = [value / total for value in raw] if total > 0 else [1.0 / n] * n
    w = [shrinkage / n + (1.0 - shrinkage) * x for x in normal]
    capital = 0.0
    for w_i, m in zip(w, mult, strict=True):
        capital += w_i * m
    return {"weights": w, "flags": flags, "multipliers": mult, "capital": capital}


def returns_loop(alloc: dict, r: list[float], mode: str, rf: float) -> float:
    held = 0.0
    for w_i, m, r_i in zip(alloc["weights"], alloc["multipliers"], r, strict=True):
        held += w_i * m * r_i
    return held / alloc["capital"] if mode == "normalised" else held - (alloc["capital"] - 1.0) * rf


def _random_case(rng: np.random.Generator) -> tuple[np.ndarray, float, float, float]:
    n = int(rng.integers(1, 16))
    kind = rng.integers(0, 5)
    if kind == 0:  # all negative
        p = -rng.uniform(0.0001, 0.1, n)
    elif kind == 1:  # ties: few distinct values, some exactly at the threshold
        p = rng.choice([-0.02, 0.0, 0.01, 0.05, 0.10, 0.15], n)
    elif kind == 2:  # zeros and negatives only: sum(raw) = 0
        p = rng.choice([0.0, -0.0, -0.01], n)
    else:
        p = rng.normal(0.01, 0.08, n)
    threshold = float(rng.choice([0.0, 0.05, 0.10, 0.15, rng.uniform(-0.05, 0.2)]))
    factor = float(rng.choice([1.0, 5.0, 10.0, rng.uniform(1.0, 20.0)]))
    shrinkage = float(rng.choice([0.0, 0.3, 1.0, rng.uniform(0.0, 1.0)]))
    return p, threshold, factor, shrinkage


def test_vectorised_allocation_equals_the_loop_transcription_on_thousands_of_cases() -> None:
    """Weights, flags, multipliers, capital and both modes' returns agree to 1e-12 on 5,000 cases."""
    rng = np.random.default_rng(20261123)
    for _ in range(5000):
        p, threshold, factor, shrinkage = _random_case(rng)
        r = rng.normal(0.01, 0.06, len(p))
        rf = float(rng.uniform(0, 0.005))
        params = StrategyParams(threshold=threshold, factor=factor, shrinkage=shrinkage)
        ref = allocate_loop(list(p), threshold, factor, shrinkage)
        got = allocate(p, params)
        np.testing.assert_allclose(got.weights, ref["weights"], rtol=0, atol=1e-12)
        np.testing.assert_array_equal(got.flags, ref["flags"])
        np.testing.assert_array_equal(got.multipliers, ref["multipliers"])
        assert abs(float(got.capital) - ref["capital"]) <= 1e-12
        for mode in ("normalised", "levered"):
            expected = returns_loop(ref, list(r), mode, rf)
            assert abs(float(portfolio_returns(got, r, mode, rf)) - expected) <= 1e-12


def test_months_are_vectorised_row_by_row() -> None:
    """A (T, N) matrix gives the same rows as the loop run on each month separately."""
    rng = np.random.default_rng(1)
    p = rng.normal(0.01, 0.1, (240, 12))
    p[5] = -np.abs(p[5])  # an all-negative month
    params = StrategyParams(threshold=0.05, factor=10.0, shrinkage=0.2)
    got = allocate(p, params)
    for t in range(len(p)):
        ref = allocate_loop(list(p[t]), 0.05, 10.0, 0.2)
        np.testing.assert_allclose(got.weights[t], ref["weights"], rtol=0, atol=1e-12)
        assert abs(got.capital[t] - ref["capital"]) <= 1e-12


def test_all_negative_predictions_give_equal_weights_and_no_leverage() -> None:
    alloc = allocate(np.array([-0.01, -0.2, -0.03, 0.0]), StrategyParams(shrinkage=0.0))
    np.testing.assert_allclose(alloc.weights, 0.25)
    assert not alloc.flags.any()
    assert alloc.capital == pytest.approx(1.0)


def test_a_prediction_equal_to_the_threshold_is_not_flagged() -> None:
    alloc = allocate(np.array([0.10, 0.1000001, 0.0]), StrategyParams(threshold=0.10, factor=10.0, shrinkage=0.0))
    assert alloc.flags.tolist() == [False, True, False]
    assert alloc.multipliers.tolist() == [1.0, 10.0, 1.0]


def test_hand_example_of_the_rule() -> None:
    """p = (0.2, 0.1, -0.1), threshold 0.15, factor 5, shrinkage 0.3 worked by hand."""
    alloc = allocate(np.array([0.2, 0.1, -0.1]), StrategyParams())
    # raw = (1.0, 0.1, 0) -> n = (10/11, 1/11, 0); w = 0.1 + 0.7 n
    expected = np.array([0.1 + 0.7 * 10 / 11, 0.1 + 0.7 / 11, 0.1])
    np.testing.assert_allclose(alloc.weights, expected, atol=1e-15)
    assert alloc.capital == pytest.approx(5 * expected[0] + expected[1] + expected[2])
    r = np.array([0.02, -0.01, 0.03])
    held = 5 * expected[0] * 0.02 + expected[1] * -0.01 + expected[2] * 0.03
    assert portfolio_returns(alloc, r, "normalised") == pytest.approx(held / alloc.capital)
    assert portfolio_returns(alloc, r, "levered", rf=0.004) == pytest.approx(held - (alloc.capital - 1) * 0.004)


def test_exposures_sum_to_one_when_normalised_and_to_capital_when_levered() -> None:
    rng = np.random.default_rng(3)
    alloc = allocate(rng.normal(0.05, 0.1, (50, 12)), StrategyParams(threshold=0.05))
    np.testing.assert_allclose(alloc.weights.sum(axis=-1), 1.0)
    np.testing.assert_allclose(alloc.gross_exposure("normalised"), 1.0)
    np.testing.assert_allclose(alloc.gross_exposure("levered"), alloc.capital)
    assert (alloc.capital >= 1.0 - 1e-12).all()


def test_levered_mode_needs_a_risk_free_rate() -> None:
    alloc = allocate(np.array([[0.2, 0.0]]), StrategyParams())
    with pytest.raises(ValueError, match="risk-free"):
        portfolio_returns(alloc, np.array([[0.01, 0.01]]), "levered")


def test_turnover_starts_from_cash_and_costs_scale_with_bps() -> None:
    e = np.array([[0.5, 0.5], [0.5, 0.5], [1.0, 0.0]])
    np.testing.assert_allclose(turnover(e), [1.0, 0.0, 1.0])
    np.testing.assert_allclose(costs(turnover(e), 10.0), [0.001, 0.0, 0.001])


def test_net_return_is_gross_minus_cost() -> None:
    rng = np.random.default_rng(4)
    p, r = rng.normal(0.01, 0.05, (36, 5)), rng.normal(0.01, 0.05, (36, 5))
    run = run_strategy(p, r, StrategyParams(threshold=0.02, cost_bps=25.0))
    np.testing.assert_allclose(run.net_return, run.gross_return - 25e-4 * run.turnover)
    assert run.turnover[0] == pytest.approx(1.0)  # bought from cash


def test_presets() -> None:
    assert PRESETS["default"] == StrategyParams(threshold=0.15, factor=5.0, shrinkage=0.3)
    nb = PRESETS["notebook"]
    assert (nb.threshold, nb.factor, nb.shrinkage, nb.mode) == (0.10, 10.0, 0.0, "normalised")


@pytest.mark.parametrize("bad", [{"mode": "x"}, {"shrinkage": 1.5}, {"factor": 0.5}, {"cost_bps": -1.0}])
def test_invalid_parameters_are_rejected(bad: dict) -> None:
    with pytest.raises(ValueError):
        StrategyParams(**bad)


def test_non_finite_predictions_are_rejected() -> None:
    with pytest.raises(ValueError, match="finite"):
        allocate(np.array([0.1, np.inf]), StrategyParams())
    with pytest.raises(ValueError, match="without any asset present"):
        allocate(np.array([[0.1, 0.2], [np.nan, np.nan]]), StrategyParams())


def test_missing_predictions_are_absent_assets() -> None:
    """A NaN prediction is an asset outside the month's universe: weight 0, the rule over the others."""
    params = StrategyParams(threshold=0.02, factor=3.0, shrinkage=0.3)
    full = allocate(np.array([0.01, 0.03, -0.02]), params)
    masked = allocate(np.array([0.01, np.nan, 0.03, -0.02]), params)
    assert masked.weights[1] == 0.0 and not masked.flags[1]
    np.testing.assert_array_equal(masked.weights[[0, 2, 3]], full.weights)
    assert masked.capital == full.capital and masked.weights.sum() == pytest.approx(1.0)
    equal = allocate(np.array([[-0.01, np.nan, -0.02, np.nan]]), params)  # nothing positive: 1/N of present
    np.testing.assert_allclose(equal.weights, [[0.5, 0.0, 0.5, 0.0]])
    realised = np.array([0.02, np.nan, 0.01, -0.03])  # an absent asset has no realised return
    run = run_strategy(np.array([[0.01, np.nan, 0.03, -0.02]]), realised[None], params)
    expected = run_strategy(np.array([[0.01, 0.03, -0.02]]), realised[None, [0, 2, 3]], params)
    np.testing.assert_allclose(run.net_return, expected.net_return)
    np.testing.assert_allclose(run.turnover, expected.turnover)


@pytest.mark.parametrize("mode", ["normalised", "levered"])
def test_sweep_equals_separate_single_runs(mode: str) -> None:
    """Every row of the one-pass sweep equals run_strategy + performance with those parameters."""
    rng = np.random.default_rng(5)
    t, n = 60, 6
    p, r = rng.normal(0.01, 0.06, (t, n)), rng.normal(0.008, 0.05, (t, n))
    rf = np.full(t, 0.002)
    months = pd.period_range("2015-01", periods=t, freq="M")
    thresholds, factors, shrinkages = [0.0, 0.03, 0.1], [1.0, 5.0], [0.0, 0.3, 1.0]
    table = sweep(p, r, thresholds, factors, shrinkages, mode=mode, cost_bps=15.0, rf=rf, benchmark=r[:, 0],
                  chunk_size=5)  # several chunks
    assert len(table) == 18
    for row in table.itertuples():
        params = StrategyParams(threshold=row.threshold, factor=row.factor, shrinkage=row.shrinkage, mode=mode,
                                cost_bps=15.0)
        run = run_strategy(p, r, params, rf)
        bench = pd.Series(r[:, 0], index=months)
        gross = metrics.performance(pd.Series(run.gross_return, index=months), pd.Series(rf, index=months), bench)
        net = metrics.performance(pd.Series(run.net_return, index=months), pd.Series(rf, index=months), bench)
        for key in ("cagr", "annual_volatility", "sharpe", "sortino", "max_drawdown", "calmar", "original_std",
                    "original_sortino", "hit_rate"):
            for value, ref in ((getattr(row, key), gross[key]), (getattr(row, f"{key}_net"), net[key])):
                if ref is None:
                    assert np.isnan(value)
                else:
                    assert value == pytest.approx(ref, rel=1e-12, abs=1e-14)
        assert row.avg_turnover == pytest.approx(run.turnover.mean(), rel=1e-12)
        assert row.avg_capital_deployed == pytest.approx(run.allocation.capital.mean(), rel=1e-12)


def test_sweep_rejects_bad_grids() -> None:
    p = np.zeros((3, 2))
    with pytest.raises(ValueError):
        sweep(p, p, [0.1], [0.5], [0.0])
    with pytest.raises(ValueError):
        sweep(p, np.zeros((3, 3)), [0.1], [1.0], [0.0])
