"""Significance of the figures: HAC t-statistics, Sharpe-ratio differences, the deflated Sharpe ratio.

Every kernel takes series with time on the **last axis** (any leading axes broadcast) and returns
arrays of the leading shape. p-values are two-sided and asymptotic (standard normal), computed with the
standard library's :class:`statistics.NormalDist` (no SciPy at run time).

Newey-West lag rule (used wherever a lag is not given): ``L = floor(4 (T / 100) ** (2 / 9))`` (Newey and
West 1994's rule of thumb for the Bartlett kernel): 3 for T = 28..99 months, 4 for T = 100..272, 5 from 273.
"""

from __future__ import annotations

import math
from statistics import NormalDist
from typing import NamedTuple

import numpy as np

from job.metrics import MONTHS_PER_YEAR

EULER_GAMMA = 0.5772156649015329
_NORMAL = NormalDist()
LAG_RULE = "floor(4 * (T / 100) ** (2 / 9))"


def _norm_cdf(z: np.ndarray) -> np.ndarray:
    z = np.asarray(z, dtype=np.float64)
    return 0.5 * (1.0 + np.vectorize(math.erf, otypes=[np.float64])(z / math.sqrt(2.0))) if z.size else z


def two_sided_p(z: np.ndarray) -> np.ndarray:
    """``2 (1 - Phi(|z|))`` (NaN stays NaN)."""
    z = np.asarray(z, dtype=np.float64)
    return np.where(np.isnan(z), np.nan, 2.0 * (1.0 - _norm_cdf(np.abs(np.nan_to_num(z)))))


def newey_west_lag(n_obs: int) -> int:
    """``floor(4 (T / 100) ** (2 / 9))``, at least 0.

    References
    ----------
    Newey, W. and West, K. (1994), "Automatic lag selection in covariance matrix estimation", *Review of
    Economic Studies* 61(4).
    """
    return max(0, math.floor(4.0 * (n_obs / 100.0) ** (2.0 / 9.0))) if n_obs > 0 else 0


def long_run_covariance(y: np.ndarray, lag: int) -> np.ndarray:
    """Bartlett-kernel HAC covariance of the columns of ``y`` (..., T, k) around their means, (..., k, k).

    ``S = G_0 + sum_{j=1..L} (1 - j / (L + 1)) (G_j + G_j')`` with ``G_j = (1/T) sum_{t>j} u_t u_{t-j}'``,
    ``u_t = y_t - ybar``. ``S / T`` estimates the covariance of the sample mean.

    References
    ----------
    Newey, W. and West, K. (1987), "A simple, positive semi-definite, heteroskedasticity and
    autocorrelation consistent covariance matrix", *Econometrica* 55(3).
    """
    y = np.asarray(y, dtype=np.float64)
    t = y.shape[-2]
    u = y - y.mean(axis=-2, keepdims=True)
    s = np.einsum("...ti,...tj->...ij", u, u) / t
    for j in range(1, min(lag, t - 1) + 1):
        g = np.einsum("...ti,...tj->...ij", u[..., j:, :], u[..., :-j, :]) / t
        s = s + (1.0 - j / (lag + 1.0)) * (g + np.swapaxes(g, -1, -2))
    return s


class MeanTest(NamedTuple):
    """A mean with its Newey-West standard error, t-statistic, two-sided p-value and lag."""

    mean: np.ndarray
    se: np.ndarray
    t: np.ndarray
    p: np.ndarray
    lag: int


def newey_west_mean_test(x: np.ndarray, lag: int | None = None) -> MeanTest:
    """Test ``mean(x) = 0`` with Newey-West standard errors: ``t = xbar / sqrt(S / T)``.

    ``S = g_0 + 2 sum_{j=1..L} (1 - j / (L + 1)) g_j``, ``g_j = (1/T) sum_{t>j} (x_t - xbar)(x_{t-j} -
    xbar)``; ``L`` = ``lag`` or :func:`newey_west_lag` (T). Equals statsmodels' ``OLS(x, 1)`` with
    ``cov_type="HAC", cov_kwds={"maxlags": L, "use_correction": False}``. ``lag = 0`` gives the
    heteroskedasticity-only t, ``xbar / (std(x, ddof=0) / sqrt(T))``.
    """
    x = np.asarray(x, dtype=np.float64)
    t = x.shape[-1]
    lag = newey_west_lag(t) if lag is None else int(lag)
    s = long_run_covariance(x[..., None], lag)[..., 0, 0]
    mean = x.mean(axis=-1)
    se = np.sqrt(np.maximum(s, 0.0) / t)
    with np.errstate(invalid="ignore", divide="ignore"):
        stat = np.where(se > 0, mean / np.where(se > 0, se, 1.0), np.nan)
    return MeanTest(mean=mean, se=se, t=stat, p=two_sided_p(stat), lag=lag)


# ---- Sharpe-ratio differences ----------------------------------------------------------------------------

class SharpeDifference(NamedTuple):
    """Difference of two Sharpe ratios (annualised), its standard error, z and two-sided p-value."""

    difference: np.ndarray
    se: np.ndarray
    z: np.ndarray
    p: np.ndarray


def sharpe_difference_hac(x1: np.ndarray, x2: np.ndarray, lag: int | None = None) -> SharpeDifference:
    """Ledoit-Wolf (2008) test of ``SR1 = SR2`` on excess returns, delta method with a HAC covariance.

    ``v = (mu1, mu2, g1, g2)`` (means and uncentred second moments), ``SR_i = mu_i / sqrt(g_i - mu_i^2)``
    (population standard deviation), ``Delta = SR1 - SR2``, gradient ``grad = (g1 / s1^3, -g2 / s2^3,
    -mu1 / (2 s1^3), mu2 / (2 s2^3))`` with ``s_i^2 = g_i - mu_i^2``, ``se = sqrt(grad' Psi grad / T)`` where
    ``Psi`` = :func:`long_run_covariance` of ``y_t = (x1_t, x2_t, x1_t^2, x2_t^2)`` with ``L`` = ``lag`` or
    :func:`newey_west_lag` (T). ``z = Delta / se``; p two-sided normal. Reported ``difference`` and ``se``
    are annualised (times ``sqrt(12)``), z and p are scale free.

    Definition difference: Ledoit and Wolf use a prewhitened quadratic-spectral/Parzen kernel with an
    automatic bandwidth and a ``T / (T - 4)`` factor; this uses the Bartlett (Newey-West) kernel at the
    stated lag and no factor, so it is exactly reproducible with any Newey-West implementation.

    References
    ----------
    Ledoit, O. and Wolf, M. (2008), "Robust performance hypothesis testing with the Sharpe ratio",
    *Journal of Empirical Finance* 15(5), 850-859.
    """
    x1, x2 = np.broadcast_arrays(np.asarray(x1, dtype=np.float64), np.asarray(x2, dtype=np.float64))
    t = x1.shape[-1]
    lag = newey_west_lag(t) if lag is None else int(lag)
    y = np.stack([x1, x2, x1 * x1, x2 * x2], axis=-1)
    mu1, mu2, g1, g2 = np.moveaxis(y.mean(axis=-2), -1, 0)
    with np.errstate(invalid="ignore", divide="ignore"):
        s1, s2 = np.sqrt(g1 - mu1 * mu1), np.sqrt(g2 - mu2 * mu2)
        delta = mu1 / s1 - mu2 / s2
        grad = np.stack([g1 / s1**3, -g2 / s2**3, -0.5 * mu1 / s1**3, 0.5 * mu2 / s2**3], axis=-1)
        psi = long_run_covariance(y, lag)
        var = np.einsum("...i,...ij,...j->...", grad, psi, grad) / t
        se = np.sqrt(np.maximum(var, 0.0))
        z = np.where(se > 0, delta / np.where(se > 0, se, 1.0), np.nan)
    root = math.sqrt(MONTHS_PER_YEAR)
    return SharpeDifference(difference=delta * root, se=se * root, z=z, p=two_sided_p(z))


def sharpe_difference_jkm(x1: np.ndarray, x2: np.ndarray) -> SharpeDifference:
    """Jobson-Korkie test of ``SR1 = SR2`` with Memmel's correction (iid normal returns).

    ``SR_i = mean(x_i) / std(x_i, ddof=1)`` (monthly), ``rho`` = correlation of ``x1`` and ``x2``,
    ``theta = (2 - 2 rho + (SR1^2 + SR2^2 - 2 SR1 SR2 rho^2) / 2) / T``, ``z = (SR1 - SR2) / sqrt(theta)``.
    Reported ``difference`` and ``se`` are annualised (times ``sqrt(12)``).

    References
    ----------
    Jobson, J. and Korkie, B. (1981), "Performance hypothesis testing with the Sharpe and Treynor
    measures", *Journal of Finance* 36(4); Memmel, C. (2003), "Performance hypothesis testing with the
    Sharpe ratio", *Finance Letters* 1.
    """
    x1, x2 = np.broadcast_arrays(np.asarray(x1, dtype=np.float64), np.asarray(x2, dtype=np.float64))
    t = x1.shape[-1]
    sd1, sd2 = np.std(x1, axis=-1, ddof=1), np.std(x2, axis=-1, ddof=1)
    c1, c2 = x1 - x1.mean(axis=-1, keepdims=True), x2 - x2.mean(axis=-1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        sr1, sr2 = x1.mean(axis=-1) / sd1, x2.mean(axis=-1) / sd2
        rho = (c1 * c2).sum(axis=-1) / np.sqrt((c1 * c1).sum(axis=-1) * (c2 * c2).sum(axis=-1))
        theta = (2.0 - 2.0 * rho + 0.5 * (sr1**2 + sr2**2 - 2.0 * sr1 * sr2 * rho**2)) / t
        se = np.sqrt(np.maximum(theta, 0.0))
        z = np.where(se > 0, (sr1 - sr2) / np.where(se > 0, se, 1.0), np.nan)
    root = math.sqrt(MONTHS_PER_YEAR)
    return SharpeDifference(difference=(sr1 - sr2) * root, se=se * root, z=z, p=two_sided_p(z))


# ---- multiple testing: the deflated Sharpe ratio ----------------------------------------------------------

def expected_max_sharpe(n_trials: int, sharpe_variance: float) -> float:
    """Expected maximum Sharpe ratio of ``N`` unskilled trials (the deflated Sharpe's benchmark ``SR_0``).

    ``SR_0 = sqrt(V[SR]) ((1 - gamma) Phi^-1(1 - 1/N) + gamma Phi^-1(1 - 1/(N e)))``, ``gamma`` the
    Euler-Mascheroni constant; 0 for a single trial. Same units as ``sharpe_variance`` (per period).
    """
    if n_trials < 2:
        return 0.0
    a = _NORMAL.inv_cdf(1.0 - 1.0 / n_trials)
    b = _NORMAL.inv_cdf(1.0 - 1.0 / (n_trials * math.e))
    return math.sqrt(max(sharpe_variance, 0.0)) * ((1.0 - EULER_GAMMA) * a + EULER_GAMMA * b)


def probabilistic_sharpe(sharpe: float, benchmark: float, n_obs: int, skew: float, kurtosis: float) -> float:
    """``PSR = Phi((SR - SR*) sqrt(T - 1) / sqrt(1 - g3 SR + (g4 - 1) / 4 SR^2))``, per-period Sharpe ratios.

    ``skew`` ``g3`` and ``kurtosis`` ``g4`` (not excess: 3 for a normal) of the returns.

    References
    ----------
    Bailey, D. and Lopez de Prado, M. (2012), "The Sharpe ratio efficient frontier", *Journal of Risk* 15(2).
    """
    den = 1.0 - skew * sharpe + (kurtosis - 1.0) / 4.0 * sharpe * sharpe
    if n_obs < 2 or not den > 0:
        return float("nan")
    return _NORMAL.cdf((sharpe - benchmark) * math.sqrt(n_obs - 1) / math.sqrt(den))


class DeflatedSharpe(NamedTuple):
    """The deflated Sharpe ratio (a probability) and what went into it (per-period Sharpe ratios)."""

    dsr: float
    sharpe: float
    expected_max_sharpe: float
    n_trials: int
    sharpe_variance: float
    n_obs: int
    skew: float
    kurtosis: float


def deflated_sharpe(sharpe: float, sharpe_variance: float, n_trials: int, n_obs: int, skew: float,
                    kurtosis: float) -> DeflatedSharpe:
    """Deflated Sharpe ratio of the best of ``n_trials``: ``PSR(SR*=SR_0)`` with ``SR_0`` the expected maximum.

    ``DSR = Phi((SR - SR_0) sqrt(T - 1) / sqrt(1 - g3 SR + (g4 - 1) / 4 SR^2))``, ``SR_0`` =
    :func:`expected_max_sharpe` (N, V[SR]). All Sharpe ratios (``sharpe``, the variance of the trials'
    Sharpe ratios) **per period** (monthly: annual / sqrt(12), variance annual / 12); ``skew`` and
    ``kurtosis`` (not excess) of the selected trial's returns; ``n_obs`` = T.

    References
    ----------
    Bailey, D. and Lopez de Prado, M. (2014), "The deflated Sharpe ratio: correcting for selection bias,
    backtest overfitting and non-normality", *Journal of Portfolio Management* 40(5), 94-107. Their
    example (N = 100, V = 0.5 / 250, SR = 2.5 / sqrt(250), T = 1250, skew -3, kurtosis 10) gives 0.9004.
    """
    sr0 = expected_max_sharpe(n_trials, sharpe_variance)
    dsr = probabilistic_sharpe(sharpe, sr0, n_obs, skew, kurtosis)
    return DeflatedSharpe(dsr=dsr, sharpe=float(sharpe), expected_max_sharpe=sr0, n_trials=int(n_trials),
                          sharpe_variance=float(sharpe_variance), n_obs=int(n_obs), skew=float(skew),
                          kurtosis=float(kurtosis))


def population_moments(x: np.ndarray) -> tuple[float, float]:
    """Skewness ``m3 / m2^1.5`` and kurtosis ``m4 / m2^2`` (not excess) with population central moments."""
    x = np.asarray(x, dtype=np.float64)
    d = x - x.mean()
    m2 = float((d * d).mean())
    if m2 <= 0:
        return float("nan"), float("nan")
    return float((d**3).mean() / m2**1.5), float((d**4).mean() / m2**2)
