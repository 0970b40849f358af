"""The relative, tail, drawdown, calendar and rolling kernels (job/analytics.py) against empyrical-reloaded,
quantstats, statsmodels and pandas on the same returns, and their place in the metrics document.

Parity is to 1e-9 unless a definition difference is stated next to the assertion:

- alpha: we publish the arithmetic ``12 * alpha`` (the scale of its t-statistic); empyrical compounds the
  same monthly intercept, ``(1 + alpha) ** 12 - 1``, so that is what is compared;
- information ratio: empyrical's ``excess_sharpe`` is not annualised, ours is ``* sqrt(12)``;
- drawdown episodes: quantstats' ``start`` is the first month under water (our peak + 1), ``end`` the last
  month under water (our recovery - 1, or the last month while unrecovered), depth in percent.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import pandas as pd
import pytest

from job import analytics as an

ep = pytest.importorskip("empyrical")
T = 173
TOL = 1e-9


@pytest.fixture(scope="module")
def series() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(20240501)
    b = rng.normal(0.009, 0.045, T)
    r = 0.001 + 0.9 * b + rng.normal(0.0, 0.02, T)
    rf = np.abs(rng.normal(0.001, 0.0005, T))
    return {"r": r, "b": b, "rf": rf}


def _months(n: int = T, start: str = "2010-11") -> pd.PeriodIndex:
    return pd.period_range(start, periods=n, freq="M")


def test_information_ratio_and_tracking_error_match_empyrical(series) -> None:
    r, b = series["r"], series["b"]
    assert abs(an.information_ratio(r, b) / math.sqrt(12) - ep.excess_sharpe(r, b)) < TOL  # ours annualised
    assert abs(an.tracking_error(r, b) - np.std(r - b, ddof=1) * math.sqrt(12)) < TOL
    assert abs(an.active_return(r, b) - 12 * np.mean(r - b)) < TOL


def test_alpha_beta_match_empyrical_and_t_statistics_match_statsmodels(series) -> None:
    sm = pytest.importorskip("statsmodels.api")
    r, b, rf = series["r"], series["b"], series["rf"]
    reg = an.capm_regression(r, b, rf)
    e_alpha, e_beta = ep.alpha_beta(r - rf, b - rf, period="monthly")  # empyrical takes only a constant rf
    assert abs(reg.beta - e_beta) < TOL
    assert abs((1 + reg.alpha) ** 12 - 1 - e_alpha) < TOL  # empyrical compounds the same monthly alpha
    fit = sm.OLS(r - rf, sm.add_constant(b - rf)).fit()
    assert np.abs(fit.params - [reg.alpha, reg.beta]).max() < TOL
    assert np.abs(fit.bse - [reg.alpha_se, reg.beta_se]).max() < TOL
    assert np.abs(fit.tvalues - [reg.alpha_t, reg.beta_t]).max() < TOL
    assert abs(fit.rsquared - reg.r_squared) < TOL


def test_capture_correlation_and_tails_match_empyrical(series) -> None:
    r, b = series["r"], series["b"]
    assert abs(an.capture_ratio(r, b, up=True) - ep.up_capture(r, b, period="monthly")) < TOL
    assert abs(an.capture_ratio(r, b, up=False) - ep.down_capture(r, b, period="monthly")) < TOL
    assert abs(an.correlation(r, b) - np.corrcoef(r, b)[0, 1]) < TOL
    for n in (T, 20, 21, 61, 100):  # the CVaR tail size changes with T
        assert abs(an.value_at_risk(r[:n]) - ep.value_at_risk(r[:n])) < TOL
        assert abs(an.conditional_value_at_risk(r[:n]) - ep.conditional_value_at_risk(r[:n])) < TOL


def test_skew_and_excess_kurtosis_match_pandas_and_scipy(series) -> None:
    stats = pytest.importorskip("scipy.stats")
    r = series["r"]
    assert abs(an.skewness(r) - pd.Series(r).skew()) < TOL
    assert abs(an.excess_kurtosis(r) - pd.Series(r).kurt()) < TOL
    assert abs(an.skewness(r) - stats.skew(r, bias=False)) < TOL
    assert abs(an.excess_kurtosis(r) - stats.kurtosis(r, fisher=True, bias=False)) < TOL
    dist = an.distribution_metrics(r)
    assert dist["best_month"] == r.max() and dist["worst_month"] == r.min()
    assert set(dist) == {"best_month", "worst_month", "skew", "excess_kurtosis", "var_95", "cvar_95"}


def test_rolling_sharpe_and_beta_match_empyrical(series) -> None:
    r, b, rf = series["r"], series["b"], series["rf"]
    mine = an.rolling_sharpe(r, rf, 36)
    theirs = np.asarray(ep.roll_sharpe_ratio(r - rf, window=36, period="monthly"))
    assert mine.shape == theirs.shape == (T - 35,)
    assert np.abs(mine - theirs).max() < TOL
    beta = an.rolling_beta(r, b, rf, 36)
    assert np.abs(beta - np.asarray(ep.roll_beta(r - rf, b - rf, window=36))).max() < TOL
    frame = an.rolling_frame(pd.Series(r, _months()), pd.Series(b, _months()), pd.Series(rf, _months()))
    assert frame.index[0] == _months()[35] and np.allclose(frame["sharpe"], mine, atol=0, rtol=0)


def test_kernels_broadcast_over_leading_axes(series) -> None:
    """A (3, T) stack gives what three 1-D calls give (the kernels never loop over months)."""
    r, b, rf = series["r"], series["b"], series["rf"]
    stack = np.stack([r, b * 1.1 + 0.001, r[::-1]])
    rel = an.relative_metrics(stack, b, rf)
    dist = an.distribution_metrics(stack)
    for i in range(3):
        one = an.relative_metrics(stack[i], b, rf)
        assert all(abs(rel[k][i] - one[k]) < 1e-12 for k in one)
        one_d = an.distribution_metrics(stack[i])
        assert all(abs(dist[k][i] - one_d[k]) < 1e-12 for k in one_d)
    assert an.rolling_sharpe(stack, rf).shape == (3, T - 35)


def test_calendar_years_match_empyrical_aggregate_returns(series) -> None:
    r, b = series["r"], series["b"]
    months = _months()
    table = an.calendar_year_returns(pd.Series(r, months), pd.Series(b, months))
    stamps = months.to_timestamp(how="end").normalize()
    theirs = ep.aggregate_returns(pd.Series(r, stamps), "yearly")
    assert list(table.index) == list(theirs.index)
    assert np.abs(table["return"].to_numpy() - theirs.to_numpy()).max() < TOL
    bench = ep.aggregate_returns(pd.Series(b, stamps), "yearly").to_numpy()
    assert np.abs(table["benchmark"].to_numpy() - bench).max() < TOL
    assert table["months"].tolist()[:2] == [2, 12] and table["months"].sum() == T  # 2010 holds Nov and Dec
    assert np.allclose(table["active"], table["return"] - table["benchmark"], rtol=0, atol=1e-15)


def test_monthly_table_matches_quantstats(series) -> None:
    qs = pytest.importorskip("quantstats")
    r = series["r"]
    months = _months()
    mine = an.monthly_returns_table(pd.Series(r, months))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        theirs = qs.stats.monthly_returns(pd.Series(r, months.to_timestamp(how="end").normalize()))
    assert mine.shape == (theirs.shape[0], 13)
    grid = mine[list(range(1, 13))].to_numpy()
    other = theirs.iloc[:, :12].to_numpy(dtype=np.float64)
    present = ~np.isnan(grid)
    assert np.abs(grid[present] - other[present]).max() < TOL and (other[~present] == 0).all()  # qs fills 0
    assert np.abs(mine["year"].to_numpy() - theirs["EOY"].to_numpy(dtype=np.float64)).max() < TOL


def test_worst_drawdowns_match_quantstats(series) -> None:
    qs = pytest.importorskip("quantstats")
    r = series["r"] - 0.004  # more and deeper episodes
    months = _months()
    mine = an.worst_drawdowns(pd.Series(r, months), 5)
    stamps = months.to_timestamp(how="end").normalize()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        details = qs.stats.drawdown_details(qs.stats.to_drawdown_series(pd.Series(r, stamps)))
    details = details.sort_values("max drawdown").head(5)
    assert len(mine) == 5
    label = {str(s.date()): f"{p.year:04d}-{p.month:02d}" for s, p in zip(stamps, months, strict=True)}
    for ep_, (_, row) in zip(mine, details.iterrows(), strict=True):
        assert abs(ep_["depth"] * 100 - row["max drawdown"]) < 1e-7  # quantstats: percent
        first_under = months[months.get_loc(pd.Period(ep_["peak"], "M")) + 1]
        assert label[str(row["start"])[:10]] == f"{first_under.year:04d}-{first_under.month:02d}"
        assert label[str(row["valley"])[:10]] == ep_["trough"]
        if ep_["recovered"]:
            last_under = pd.Period(ep_["recovery"], "M") - 1
            assert label[str(row["end"])[:10]] == f"{last_under.year:04d}-{last_under.month:02d}"
            assert ep_["underwater_months"] == ep_["length_months"] - 1


def test_drawdown_episodes_by_hand() -> None:
    """W: 0.9, 0.99, 1.089, 0.9801, 1.17612, 1.0585; episodes from the start capital and an open one."""
    months = pd.period_range("2020-01", periods=6, freq="M")
    r = pd.Series([-0.1, 0.1, 0.1, -0.1, 0.2, -0.1], months)
    eps = an.worst_drawdowns(r)
    assert [e["rank"] for e in eps] == [1, 2, 3]
    first = eps[0]  # -10 % three times: the earliest first
    assert (first["peak"], first["trough"], first["recovery"]) == ("2019-12", "2020-01", "2020-03")
    assert (first["length_months"], first["months_to_trough"], first["underwater_months"]) == (3, 1, 2)
    last = eps[2]
    assert (last["peak"], last["trough"], last["recovery"], last["recovered"]) == ("2020-05", "2020-06", None, False)
    assert last["length_months"] == 1 and math.isclose(last["depth"], -0.1)
    assert an.worst_drawdowns(pd.Series([0.01, 0.02], months[:2])) == []


def test_summarise_adds_new_sections_and_keeps_the_old_ones(synthetic) -> None:
    from job.backtest import walk_forward
    from job.config import load_settings
    from job.metrics import summarise
    from job.query import flatten_metrics
    from job.significance import newey_west_lag, sharpe_difference_hac

    settings = load_settings(environ={}, overrides={"backtest": {"n_jobs": 1}})
    result = walk_forward(synthetic, ["momentum"], settings)
    doc = summarise(result, settings)
    assert {"scheme", "strategy", "models", "benchmark", "equal_weight", "windows", "forecast_quality"} <= set(doc)
    assert set(doc["models"]["momentum"]) == {"full", "full_net", "last_20pct", "last_20pct_net"}
    assert "beta_vs_benchmark" not in doc["models"]["momentum"]["full_net"]  # old tables untouched
    rel = doc["relative"]["models"]["momentum"]["full_net"]
    rows = result.portfolio.sort_values("decision_month")
    r, b, rf = (rows[c].to_numpy() for c in ("portfolio_return_net", "benchmark_return", "risk_free"))
    assert math.isclose(rel["beta_vs_benchmark"], an.capm_regression(r, b, rf).beta, rel_tol=1e-12)
    assert math.isclose(rel["sharpe_difference_p_vs_benchmark"], float(sharpe_difference_hac(r - rf, b - rf).p),
                        rel_tol=1e-12)
    assert "information_ratio_vs_equal_weight" in rel
    assert "beta_vs_benchmark" in doc["relative"]["models"]["equal_weight"]["full"]
    assert set(doc["distribution"]["models"]) == {"momentum", "benchmark", "equal_weight"}
    assert 1 <= len(doc["drawdowns"]["models"]["momentum"]["full_net"]) <= 5
    ic = doc["significance"]["by_model"]["momentum"]
    assert ic["rank_ic_newey_west_lag"] == newey_west_lag(ic["rank_ic_months"])
    flat = pd.DataFrame(flatten_metrics(doc))
    beta = flat[(flat["section"] == "relative") & (flat["metric"] == "beta_vs_benchmark")]
    assert ("momentum", "full_net") in set(zip(beta["model"], beta["period"], strict=True))
    years = flat[flat["section"] == "calendar_years"]
    assert {"return", "return_net", "benchmark", "equal_weight", "active", "months"} <= set(years["metric"])
