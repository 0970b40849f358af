"""Metrics on hand-checkable series, and forecast quality on tiny hand-built frames."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from job.metrics import forecast_quality, performance, rank_ic


def _series(values: list[float], start: str = "2020-01") -> pd.Series:
    return pd.Series(values, index=pd.period_range(start, periods=len(values), freq="M"))


def test_constant_one_percent_a_month_compounds_to_12_68_percent() -> None:
    stats = performance(_series([0.01] * 24), rf=0.0)
    assert stats["cagr"] == pytest.approx(1.01**12 - 1)
    assert round(stats["cagr"], 4) == 0.1268
    assert stats["annual_volatility"] == pytest.approx(0.0, abs=1e-15)
    assert stats["max_drawdown"] == 0.0
    assert stats["max_drawdown_peak"] is None and stats["max_drawdown_recovery"] is None
    assert stats["sortino"] is None  # no month below the target: undefined, not infinite
    assert stats["calmar"] is None


def test_known_drawdown_path_gives_depth_and_dates() -> None:
    # wealth: 1.10, 0.88, 0.924, 1.0164, 1.11804, 1.062138
    stats = performance(_series([0.10, -0.20, 0.05, 0.10, 0.10, -0.05]))
    assert stats["max_drawdown"] == pytest.approx(-0.20)
    assert stats["max_drawdown_peak"] == "2020-01"
    assert stats["max_drawdown_trough"] == "2020-02"
    assert stats["max_drawdown_recovery"] == "2020-05"
    assert stats["total_return"] == pytest.approx(1.1 * 0.8 * 1.05 * 1.1 * 1.1 * 0.95 - 1)


def test_drawdown_from_the_start_peaks_before_the_first_month_and_may_not_recover() -> None:
    stats = performance(_series([-0.10, -0.10, 0.05]))
    assert stats["max_drawdown"] == pytest.approx(0.9 * 0.9 - 1)
    assert stats["max_drawdown_peak"] == "2019-12"
    assert stats["max_drawdown_trough"] == "2020-02"
    assert stats["max_drawdown_recovery"] is None


def test_original_definitions_on_a_fixed_vector() -> None:
    r = [0.02, -0.01, 0.03, -0.04, 0.01, 0.00, -0.02, 0.05, 0.01, -0.03, 0.02, 0.04]
    stats = performance(_series(r), rf=0.0)
    cagr = float(np.prod(1 + np.array(r)) ** (12 / 12) - 1)
    neg = np.array([-0.01, -0.04, -0.02, -0.03])  # mean -0.025; deviations .015 -.015 .005 -.005
    pop_sd = math.sqrt((0.015**2 * 2 + 0.005**2 * 2) / 4)
    assert np.std(neg) == pytest.approx(pop_sd)
    assert stats["original_sortino"] == pytest.approx((cagr - 0.0427) / (pop_sd * math.sqrt(12)))
    assert stats["original_std"] == pytest.approx(np.std(r, ddof=0) * math.sqrt(12))
    assert stats["cagr"] == pytest.approx(cagr)


def test_standard_sharpe_and_sortino_use_the_risk_free_rate() -> None:
    r = np.array([0.03, -0.02, 0.01, 0.04, -0.01, 0.02])
    rf = 0.001
    x = r - rf
    stats = performance(_series(list(r)), rf=_series([rf] * 6))
    assert stats["sharpe"] == pytest.approx(x.mean() / x.std(ddof=1) * math.sqrt(12))
    dd = math.sqrt(np.mean(np.minimum(x, 0) ** 2))
    assert stats["sortino"] == pytest.approx(x.mean() * 12 / (dd * math.sqrt(12)))
    assert stats["annual_volatility"] == pytest.approx(r.std(ddof=1) * math.sqrt(12))
    assert stats["calmar"] == pytest.approx(stats["cagr"] / abs(stats["max_drawdown"]))


def test_risk_free_is_forward_filled_but_must_start_in_time() -> None:
    r = _series([0.01, 0.02, 0.03])
    stats = performance(r, rf=_series([0.012], start="2019-06"))
    assert stats["mean_risk_free_annual"] == pytest.approx(0.144)
    with pytest.raises(ValueError, match="risk-free rate is missing for 2020-01"):
        performance(r, rf=_series([0.001], start="2020-02"))


def test_hit_rate_counts_months_strictly_above_the_benchmark() -> None:
    stats = performance(_series([0.02, 0.01, -0.01, 0.03]), benchmark=_series([0.01, 0.01, -0.02, 0.04]))
    assert stats["hit_rate"] == pytest.approx(0.5)


def test_too_short_or_gappy_returns_are_rejected() -> None:
    with pytest.raises(ValueError):
        performance(_series([0.01]))
    with pytest.raises(ValueError):
        performance(_series([0.01, float("nan")]))


def _frame(model: str, predicted: list[list[float]], realised: list[list[float]]) -> pd.DataFrame:
    months = pd.period_range("2020-01", periods=len(predicted), freq="M")
    rows = [{"model": model, "decision_month": m, "asset": f"A{j}", "predicted": p, "realised": r}
            for m, prow, rrow in zip(months, predicted, realised, strict=True)
            for j, (p, r) in enumerate(zip(prow, rrow, strict=True))]
    return pd.DataFrame(rows)


def test_rank_ic_is_the_monthly_spearman_across_assets() -> None:
    f = _frame("m", [[0.1, 0.2, 0.3], [0.3, 0.2, 0.1], [0.1, 0.1, 0.1]],
               [[1.0, 2.0, 3.0], [1.0, 2.0, 3.0], [1.0, 2.0, 3.0]])
    ic = rank_ic(f)
    assert ic.tolist() == pytest.approx([1.0, -1.0])  # the constant month is dropped


def test_forecast_quality_against_baselines() -> None:
    realised = [[0.01, 0.02, 0.03], [0.03, 0.01, 0.02], [0.02, 0.03, 0.01]]
    model = _frame("ridge", [[0.00, 0.02, 0.04], [0.04, 0.00, 0.02], [0.02, 0.04, 0.00]], realised)
    persistence = _frame("persistence", [[0.03, 0.02, 0.01]] * 3, realised)
    hist = _frame("historical-mean", [[0.02, 0.02, 0.02]] * 3, realised)
    q = forecast_quality(model, pd.concat([persistence, hist], ignore_index=True))
    ridge = q["by_model"]["ridge"]
    assert ridge["mae"] == pytest.approx(2 / 3 * 0.01)
    assert ridge["mae_historical_mean"] == pytest.approx(2 / 3 * 0.01)
    assert ridge["mae_ratio_historical_mean"] == pytest.approx(1.0)
    assert ridge["rank_ic_mean"] == pytest.approx(1.0)
    assert ridge["rank_ic_t"] is None  # zero dispersion: no t-statistic
    assert ridge["rank_ic_months"] == 3
    assert set(q["by_model"]) == {"ridge", "persistence", "historical-mean"}
    assert q["mae_by_asset"]["ridge"]["A0"] == pytest.approx(0.01 * 2 / 3)


def test_rank_ic_t_statistic() -> None:
    f = _frame("m", [[0.1, 0.2, 0.3]] * 4,
               [[1.0, 2.0, 3.0], [1.0, 3.0, 2.0], [1.0, 2.0, 3.0], [3.0, 1.0, 2.0]])
    q = forecast_quality(f)["by_model"]["m"]
    ic = np.array([1.0, 0.5, 1.0, -0.5])
    assert q["rank_ic_mean"] == pytest.approx(ic.mean())
    assert q["rank_ic_t"] == pytest.approx(ic.mean() / (ic.std(ddof=1) / 2))
