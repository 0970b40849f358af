"""Newey-West t, Sharpe-ratio difference tests and the deflated Sharpe ratio (job/significance.py).

Checked against statsmodels (HAC OLS on a constant, ``S_hac_simple``), SciPy's normal distribution, a
finite-difference delta method written independently, hand arithmetic for Jobson-Korkie-Memmel, and the
numerical example of Bailey and Lopez de Prado (2014).
"""

from __future__ import annotations

import math
import statistics

import numpy as np
import pytest

from job import significance as sg

sm = pytest.importorskip("statsmodels.api")
TOL = 1e-9


@pytest.fixture(scope="module")
def ar_series() -> np.ndarray:
    """Autocorrelated monthly ICs (MA(2)), T = 173."""
    rng = np.random.default_rng(7)
    e = rng.normal(0.03, 0.2, 175)
    return e[2:] + 0.5 * e[1:-1] + 0.25 * e[:-2]


@pytest.mark.parametrize(("n", "lag"), [(27, 2), (28, 3), (99, 3), (100, 4), (173, 4), (272, 4), (273, 5)])
def test_newey_west_lag_rule(n: int, lag: int) -> None:
    assert sg.newey_west_lag(n) == lag == math.floor(4 * (n / 100) ** (2 / 9))


@pytest.mark.parametrize("lag", [None, 0, 1, 6])
def test_newey_west_t_matches_statsmodels_hac(ar_series: np.ndarray, lag: int | None) -> None:
    test = sg.newey_west_mean_test(ar_series, lag)
    used = sg.newey_west_lag(len(ar_series)) if lag is None else lag
    fit = sm.OLS(ar_series, np.ones(len(ar_series))).fit(
        cov_type="HAC", cov_kwds={"maxlags": used, "use_correction": False})
    assert test.lag == used
    assert abs(test.t - fit.tvalues[0]) < TOL
    assert abs(test.se - fit.bse[0]) < TOL
    assert abs(test.p - fit.pvalues[0]) < TOL


def test_newey_west_t_is_smaller_than_the_plain_t_on_positively_autocorrelated_series(ar_series) -> None:
    plain = ar_series.mean() / (ar_series.std(ddof=1) / math.sqrt(len(ar_series)))
    assert abs(sg.newey_west_mean_test(ar_series).t) < abs(plain)
    stacked = sg.newey_west_mean_test(np.stack([ar_series, -ar_series]))
    assert stacked.t.shape == (2,) and math.isclose(stacked.t[0], -stacked.t[1])


def test_long_run_covariance_matches_statsmodels_s_hac_simple(ar_series) -> None:
    from statsmodels.stats.sandwich_covariance import S_hac_simple

    rng = np.random.default_rng(3)
    y = np.column_stack([ar_series, rng.normal(size=len(ar_series)), ar_series**2])
    for lag in (0, 2, 4):
        theirs = S_hac_simple(y - y.mean(axis=0), nlags=lag) / len(y)
        assert np.abs(sg.long_run_covariance(y, lag) - theirs).max() < 1e-15


def _pair(n: int, seed: int = 11) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    b = rng.normal(0.008, 0.045, n)
    return 0.002 + 0.8 * b + rng.normal(0, 0.025, n), b


def test_ledoit_wolf_delta_method_matches_an_independent_computation() -> None:
    """Finite-difference gradient of f(v) and statsmodels' HAC of the moment series give the same se."""
    from statsmodels.stats.sandwich_covariance import S_hac_simple

    x1, x2 = _pair(173)
    lag = 4
    y = np.column_stack([x1, x2, x1**2, x2**2])
    v = y.mean(axis=0)

    def f(v: np.ndarray) -> float:
        return v[0] / math.sqrt(v[2] - v[0] ** 2) - v[1] / math.sqrt(v[3] - v[1] ** 2)

    h = 1e-7
    grad = np.array([(f(v + h * e) - f(v - h * e)) / (2 * h) for e in np.eye(4)])
    psi = S_hac_simple(y - v, nlags=lag) / len(y)
    se = math.sqrt(grad @ psi @ grad / len(y))
    test = sg.sharpe_difference_hac(x1, x2, lag)
    root = math.sqrt(12)
    assert abs(test.difference / root - f(v)) < 1e-12
    assert abs(test.se / root - se) < 1e-8  # finite differences: ~1e-9 relative
    z = f(v) / se
    assert abs(test.z - z) < 1e-6
    assert abs(test.p - 2 * (1 - statistics.NormalDist().cdf(abs(z)))) < 1e-6


def test_jobson_korkie_memmel_by_hand() -> None:
    x1 = np.array([0.02, -0.01, 0.03, 0.015, -0.02, 0.04])
    x2 = np.array([0.01, -0.015, 0.02, 0.02, -0.01, 0.025])
    n = 6
    sr1 = statistics.mean(x1) / statistics.stdev(x1)
    sr2 = statistics.mean(x2) / statistics.stdev(x2)
    rho = statistics.correlation(list(x1), list(x2))
    theta = (2 - 2 * rho + 0.5 * (sr1**2 + sr2**2 - 2 * sr1 * sr2 * rho**2)) / n
    z = (sr1 - sr2) / math.sqrt(theta)
    test = sg.sharpe_difference_jkm(x1, x2)
    assert abs(test.z - z) < 1e-12
    assert abs(test.difference - (sr1 - sr2) * math.sqrt(12)) < 1e-12
    assert abs(test.p - 2 * (1 - statistics.NormalDist().cdf(abs(z)))) < 1e-12


def test_ledoit_wolf_iid_agrees_with_jkm_on_long_normal_samples() -> None:
    """On iid normal returns the two tests estimate the same variance (to sampling error)."""
    x1, x2 = _pair(20000, seed=5)
    lw, jk = sg.sharpe_difference_hac(x1, x2, lag=0), sg.sharpe_difference_jkm(x1, x2)
    assert abs(lw.se / jk.se - 1) < 0.03
    assert abs(lw.difference - jk.difference) < 1e-3


def test_equal_series_have_no_difference_and_sharpe_tests_broadcast() -> None:
    x1, x2 = _pair(120)
    same = sg.sharpe_difference_hac(x1, x1)
    assert same.difference == 0 and np.isnan(same.z) and np.isnan(same.p)
    stacked = sg.sharpe_difference_hac(np.stack([x1, x2]), x2)
    assert stacked.p.shape == (2,) and math.isclose(stacked.p[0], float(sg.sharpe_difference_hac(x1, x2).p))


def test_deflated_sharpe_reproduces_bailey_lopez_de_prado_2014() -> None:
    """Their example: N = 100 trials, V[SR] = 1/2 (annual), best SR 2.5 (annual), T = 1250 daily
    observations, skew -3, kurtosis 10 -> SR_0 = 0.1132 (daily), DSR = 0.9004."""
    d = sg.deflated_sharpe(2.5 / math.sqrt(250), 0.5 / 250, 100, 1250, -3.0, 10.0)
    assert abs(d.expected_max_sharpe - 0.1132) < 5e-5
    assert abs(d.dsr - 0.9004) < 5e-5


def test_deflated_sharpe_against_scipy() -> None:
    norm = pytest.importorskip("scipy.stats").norm
    sr, var, n, t, g3, g4 = 0.25, 0.004, 315, 173, -0.4, 4.5
    gamma = np.euler_gamma
    sr0 = math.sqrt(var) * ((1 - gamma) * norm.ppf(1 - 1 / n) + gamma * norm.ppf(1 - 1 / (n * math.e)))
    dsr = norm.cdf((sr - sr0) * math.sqrt(t - 1) / math.sqrt(1 - g3 * sr + (g4 - 1) / 4 * sr**2))
    d = sg.deflated_sharpe(sr, var, n, t, g3, g4)
    assert abs(d.expected_max_sharpe - sr0) < 1e-12 and abs(d.dsr - dsr) < 1e-12
    assert sg.expected_max_sharpe(1, var) == 0.0  # one trial: the PSR against zero
    assert abs(sg.deflated_sharpe(sr, var, 1, t, g3, g4).dsr - sg.probabilistic_sharpe(sr, 0.0, t, g3, g4)) < 1e-15


def test_population_moments_match_scipy() -> None:
    stats = pytest.importorskip("scipy.stats")
    x, _ = _pair(173)
    skew, kurt = sg.population_moments(x)
    assert abs(skew - stats.skew(x, bias=True)) < TOL
    assert abs(kurt - stats.kurtosis(x, fisher=False, bias=True)) < TOL


def test_deflated_sharpe_of_a_sweep(synthetic) -> None:
    """The best row of a sweep, rebuilt from the forecasts, has the sweep's Sharpe; N counts every row."""
    from job.backtest import sweep_result, walk_forward
    from job.config import load_settings
    from job.metrics import summarise

    settings = load_settings(environ={}, overrides={"backtest": {"n_jobs": 1}})
    result = walk_forward(synthetic, ["momentum", "persistence"], settings)
    table = sweep_result(result, synthetic, [0.0, 0.02], [1.0, 3.0], [0.0, 0.5])
    doc = summarise(result, settings, sweep=table)
    best = doc["deflated_sharpe"]["by_model"]["all_models"]
    assert best["n_trials"] == len(table) == 16
    assert math.isclose(best["sharpe"], table["sharpe_net"].max(), rel_tol=1e-12)
    row = table.loc[table["sharpe_net"].idxmax()]
    assert best["best_model"] == row["model"] and best["threshold"] == row["threshold"]
    assert best["months"] == (result.portfolio["model"] == row["model"]).sum()
    assert 0.0 <= best["dsr"] <= 1.0
    assert math.isclose(best["sharpe_variance"], float(np.var(table["sharpe_net"], ddof=1)), rel_tol=1e-9)
    assert doc["deflated_sharpe"]["by_model"]["momentum"]["n_trials"] == 8
    assert "deflated_sharpe" not in summarise(result, settings)
