"""Benchmark-relative, tail, drawdown-episode, calendar and rolling analytics of monthly returns.

Named ``analytics`` rather than ``benchmark_metrics`` because only half of it is relative to a
benchmark: the tail statistics, the drawdown episodes and the calendar tables describe one series.
The headline metrics (CAGR, Sharpe, ...) stay in :mod:`job.metrics`; its :func:`job.metrics.summarise`
publishes these figures under new keys.

Conventions (as :mod:`job.metrics`): monthly decimal returns with time on the **last axis** and any
leading axes (models, gross/net, parameter grids) broadcast; annualisation by 12. ``r`` is the strategy,
``b`` the reference (SPY or equal weight), ``rf`` the monthly risk-free rate; ``x = r - rf`` and
``z = b - rf`` are excess returns, ``a = r - b`` the active return.

Formulas (each function repeats its own):

- active return ``= 12 * mean(a)``; tracking error ``TE = std(a, ddof=1) * sqrt(12)``; information ratio
  ``IR = 12 * mean(a) / TE`` (Grinold and Kahn, *Active Portfolio Management*, 2000, ch. 5);
- CAPM regression by OLS ``x_t = alpha + beta * z_t + e_t``: ``beta = sum((z - zbar)(x - xbar)) /
  sum((z - zbar)^2)``, ``alpha = xbar - beta * zbar`` (monthly; published as ``12 * alpha``), residual
  variance ``s^2 = sum(e^2) / (T - 2)``, ``se(beta) = s / sqrt(Szz)``, ``se(alpha) = s * sqrt(1/T +
  zbar^2 / Szz)``, t = estimate / se (classical, homoskedastic OLS standard errors);
- up (down) capture ``= CAGR(r | b > 0) / CAGR(b | b > 0)`` (``b < 0`` for down), with ``CAGR(y) =
  prod(1 + y) ** (12 / n) - 1`` over the n selected months (Morningstar's geometric definition, as
  empyrical's ``up_capture``);
- correlation: Pearson's of ``r`` and ``b``;
- skewness ``G1 = sqrt(T (T - 1)) / (T - 2) * m3 / m2^1.5`` and excess kurtosis ``G2 = (T - 1) / ((T - 2)
  (T - 3)) * ((T + 1) * (m4 / m2^2 - 3) + 6)`` with central moments ``m_k = mean((r - rbar)^k)``
  (the bias-adjusted estimators of pandas, Excel and quantstats; Joanes and Gill, 1998);
- historical VaR(95 %) ``= q_0.05(r)``, the 5 % quantile with linear interpolation between order
  statistics (``numpy.quantile``'s default); CVaR(95 %) ``= mean of the k + 1 smallest returns``, ``k =
  floor(0.05 (T - 1))`` (empyrical's definition). Both are returns: a loss is a negative number;
- rolling w-month (36) Sharpe ``= mean(x) / std(x, ddof=1) * sqrt(12)`` and beta ``= cov(x, z) /
  var(z)`` over each window of w months ending at t.
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import numpy as np
import pandas as pd

from job.metrics import MONTHS_PER_YEAR, _safe_div, drawdowns
from job.months import month_label

ROLLING_MONTHS = 36
TAIL_LEVEL = 0.95


def _arr(value: Any) -> np.ndarray:
    return np.asarray(value, dtype=np.float64)


# ---- relative to a benchmark ----------------------------------------------------------------------------

def active_return(r: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Annualised arithmetic active return ``12 * mean(r - b)``."""
    return (_arr(r) - _arr(b)).mean(axis=-1) * MONTHS_PER_YEAR


def tracking_error(r: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Annualised tracking error ``std(r - b, ddof=1) * sqrt(12)``."""
    return np.std(_arr(r) - _arr(b), axis=-1, ddof=1) * math.sqrt(MONTHS_PER_YEAR)


def information_ratio(r: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``12 * mean(r - b) / (std(r - b, ddof=1) * sqrt(12))`` (NaN when the active return is constant).

    References
    ----------
    Grinold, R. and Kahn, R. (2000), *Active Portfolio Management*, 2nd ed., ch. 5.
    """
    return _safe_div(active_return(r, b), tracking_error(r, b))


class Regression(NamedTuple):
    """OLS of excess returns on the reference's excess returns; monthly alpha, arrays of shape ``(...)``."""

    alpha: np.ndarray
    beta: np.ndarray
    alpha_se: np.ndarray
    beta_se: np.ndarray
    alpha_t: np.ndarray
    beta_t: np.ndarray
    r_squared: np.ndarray


def capm_regression(r: np.ndarray, b: np.ndarray, rf: np.ndarray | float = 0.0) -> Regression:
    """OLS ``x_t = alpha + beta z_t + e_t`` with ``x = r - rf``, ``z = b - rf``, with t-statistics.

    ``beta = Sxz / Szz``, ``alpha = xbar - beta zbar`` (monthly), ``s^2 = sum(e^2) / (T - 2)``,
    ``se(beta) = s / sqrt(Szz)``, ``se(alpha) = s sqrt(1/T + zbar^2 / Szz)``; ``Sxz = sum((z - zbar)
    (x - xbar))``. NaN where the reference is constant or the fit is perfect (se = 0).

    References
    ----------
    Jensen, M. (1968), "The performance of mutual funds in the period 1945-1964", *Journal of Finance* 23.
    """
    rf = _arr(rf)
    x, z = _arr(r) - rf, _arr(b) - rf
    x, z = np.broadcast_arrays(x, z)
    t = x.shape[-1]
    xbar, zbar = x.mean(axis=-1), z.mean(axis=-1)
    zc, xc = z - zbar[..., None], x - xbar[..., None]
    szz, sxz, sxx = (zc * zc).sum(axis=-1), (zc * xc).sum(axis=-1), (xc * xc).sum(axis=-1)
    beta = _safe_div(sxz, szz)
    alpha = xbar - beta * zbar
    resid = xc - beta[..., None] * zc
    s2 = (resid * resid).sum(axis=-1) / (t - 2) if t > 2 else np.full_like(xbar, np.nan)
    beta_se = np.sqrt(_safe_div(s2, szz))
    alpha_se = np.sqrt(s2 * (1.0 / t + _safe_div(zbar * zbar, szz)))
    return Regression(alpha=alpha, beta=beta, alpha_se=alpha_se, beta_se=beta_se,
                      alpha_t=_safe_div(alpha, alpha_se), beta_t=_safe_div(beta, beta_se),
                      r_squared=_safe_div(sxz * sxz, szz * sxx))


def _conditional_cagr(y: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """``prod(1 + y[mask]) ** (12 / n) - 1`` along the last axis (NaN when no month is selected)."""
    with np.errstate(divide="ignore"):
        logs = np.where(mask, np.log(np.maximum(1.0 + y, 0.0)), 0.0)
    n = mask.sum(axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        out = np.expm1(logs.sum(axis=-1) * MONTHS_PER_YEAR / np.where(n > 0, n, 1))
    return np.where(n > 0, out, np.nan)


def capture_ratio(r: np.ndarray, b: np.ndarray, *, up: bool = True) -> np.ndarray:
    """Up (``b > 0``) or down (``b < 0``) capture: ``CAGR(r | months) / CAGR(b | months)``.

    ``CAGR(y | months) = prod_{months}(1 + y) ** (12 / n) - 1``: Morningstar's geometric capture ratio,
    the definition of empyrical's ``up_capture`` / ``down_capture``. NaN with no such month.
    """
    r, b = np.broadcast_arrays(_arr(r), _arr(b))
    mask = b > 0 if up else b < 0
    num, den = _conditional_cagr(r, mask), _conditional_cagr(b, mask)
    ok = np.isfinite(den) & (den != 0)
    return np.where(ok, num / np.where(ok, den, 1.0), np.nan)


def correlation(r: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pearson correlation of ``r`` and ``b`` along the last axis."""
    r, b = np.broadcast_arrays(_arr(r), _arr(b))
    rc = r - r.mean(axis=-1, keepdims=True)
    bc = b - b.mean(axis=-1, keepdims=True)
    return _safe_div((rc * bc).sum(axis=-1), np.sqrt((rc * rc).sum(axis=-1) * (bc * bc).sum(axis=-1)))


def relative_metrics(r: np.ndarray, b: np.ndarray, rf: np.ndarray | float = 0.0) -> dict[str, np.ndarray]:
    """Every figure of ``r`` against the reference ``b`` (see the module docstring), arrays of shape ``(...)``.

    Keys: ``active_return``, ``tracking_error``, ``information_ratio``, ``alpha`` (annualised ``12 *
    alpha``), ``alpha_t``, ``beta``, ``beta_t``, ``r_squared``, ``up_capture``, ``down_capture``,
    ``correlation``.
    """
    reg = capm_regression(r, b, rf)
    return {
        "active_return": active_return(r, b),
        "tracking_error": tracking_error(r, b),
        "information_ratio": information_ratio(r, b),
        "alpha": reg.alpha * MONTHS_PER_YEAR,
        "alpha_t": reg.alpha_t,
        "beta": reg.beta,
        "beta_t": reg.beta_t,
        "r_squared": reg.r_squared,
        "up_capture": capture_ratio(r, b, up=True),
        "down_capture": capture_ratio(r, b, up=False),
        "correlation": correlation(r, b),
    }


# ---- one series: the shape of the distribution ----------------------------------------------------------

def _central_moments(r: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    d = r - r.mean(axis=-1, keepdims=True)
    d2 = d * d
    return d2.mean(axis=-1), (d2 * d).mean(axis=-1), (d2 * d2).mean(axis=-1)


def skewness(r: np.ndarray) -> np.ndarray:
    """Bias-adjusted sample skewness ``G1 = sqrt(T (T - 1)) / (T - 2) * m3 / m2^1.5`` (T >= 3).

    References
    ----------
    Joanes, D. and Gill, C. (1998), "Comparing measures of sample skewness and kurtosis", *The
    Statistician* 47(1). The estimator of ``pandas.Series.skew`` and ``scipy.stats.skew(bias=False)``.
    """
    r = _arr(r)
    t = r.shape[-1]
    m2, m3, _ = _central_moments(r)
    g1 = _safe_div(m3, m2 ** 1.5)
    return g1 * math.sqrt(t * (t - 1)) / (t - 2) if t > 2 else np.full_like(g1, np.nan)


def excess_kurtosis(r: np.ndarray) -> np.ndarray:
    """Bias-adjusted excess kurtosis ``G2 = (T - 1) / ((T - 2)(T - 3)) * ((T + 1) g2 + 6)``, ``g2 = m4 / m2^2 - 3``.

    References
    ----------
    Joanes and Gill (1998); the estimator of ``pandas.Series.kurt`` and
    ``scipy.stats.kurtosis(fisher=True, bias=False)``.
    """
    r = _arr(r)
    t = r.shape[-1]
    m2, _, m4 = _central_moments(r)
    g2 = _safe_div(m4, m2 * m2) - 3.0
    if t <= 3:
        return np.full_like(g2, np.nan)
    return (t - 1) / ((t - 2) * (t - 3)) * ((t + 1) * g2 + 6.0)


def _tail(level: float) -> float:
    """``1 - level`` without the binary noise of ``1 - 0.95`` (0.05000000000000004)."""
    return round(1.0 - level, 12)


def value_at_risk(r: np.ndarray, level: float = TAIL_LEVEL) -> np.ndarray:
    """Historical VaR: the ``1 - level`` quantile of ``r`` (linear interpolation; a loss is negative).

    ``q = r_(j) + (h - j)(r_(j+1) - r_(j))`` with ``h = (1 - level)(T - 1)``, ``j = floor(h)`` on the sorted
    returns (Hyndman and Fan's definition 7, ``numpy.quantile``'s default; empyrical's ``value_at_risk``).
    """
    return np.quantile(_arr(r), _tail(level), axis=-1)


def conditional_value_at_risk(r: np.ndarray, level: float = TAIL_LEVEL) -> np.ndarray:
    """Historical CVaR (expected shortfall): the mean of the ``k + 1`` smallest returns.

    ``k = floor((1 - level)(T - 1))``.
    This is the definition of empyrical's ``conditional_value_at_risk`` (the tail includes the order statistic
    at the VaR cut-off). A loss is negative.

    References
    ----------
    Acerbi, C. and Tasche, D. (2002), "Expected shortfall: a natural coherent alternative to value at risk",
    *Economic Notes* 31(2).
    """
    r = _arr(r)
    k = math.floor((r.shape[-1] - 1) * _tail(level))
    return np.sort(r, axis=-1)[..., :k + 1].mean(axis=-1)


def distribution_metrics(r: np.ndarray, level: float = TAIL_LEVEL) -> dict[str, np.ndarray]:
    """``best_month``, ``worst_month``, ``skew``, ``excess_kurtosis``, ``var_95``, ``cvar_95`` of ``r`` (..., T)."""
    r = _arr(r)
    tag = f"{round(level * 100):d}"
    return {"best_month": r.max(axis=-1), "worst_month": r.min(axis=-1), "skew": skewness(r),
            "excess_kurtosis": excess_kurtosis(r), f"var_{tag}": value_at_risk(r, level),
            f"cvar_{tag}": conditional_value_at_risk(r, level)}


# ---- rolling -----------------------------------------------------------------------------------------------

def _windows(y: np.ndarray, window: int) -> np.ndarray:
    if y.shape[-1] < window:
        return np.empty((*y.shape[:-1], 0, window))
    return np.lib.stride_tricks.sliding_window_view(y, window, axis=-1)


def rolling_sharpe(r: np.ndarray, rf: np.ndarray | float = 0.0, window: int = ROLLING_MONTHS) -> np.ndarray:
    """Sharpe ``mean(x) / std(x, ddof=1) * sqrt(12)`` of each ``window``-month span: shape ``(..., T - window + 1)``.

    Element ``j`` covers months ``j .. j + window - 1`` (it is the value at the window's last month).
    """
    x = _arr(r) - _arr(rf)
    w = _windows(x, window)
    return _safe_div(w.mean(axis=-1), np.std(w, axis=-1, ddof=1)) * math.sqrt(MONTHS_PER_YEAR)


def rolling_beta(r: np.ndarray, b: np.ndarray, rf: np.ndarray | float = 0.0,
                 window: int = ROLLING_MONTHS) -> np.ndarray:
    """OLS beta ``cov(x, z) / var(z)`` of excess returns over each ``window``-month span, ``(..., T - window + 1)``."""
    rf = _arr(rf)
    x, z = np.broadcast_arrays(_arr(r) - rf, _arr(b) - rf)
    wx, wz = _windows(x, window), _windows(z, window)
    zc = wz - wz.mean(axis=-1, keepdims=True)
    return _safe_div((zc * wx).sum(axis=-1), (zc * zc).sum(axis=-1))


def rolling_frame(returns: pd.Series, benchmark: pd.Series, rf: pd.Series | float = 0.0,
                  window: int = ROLLING_MONTHS) -> pd.DataFrame:
    """Rolling Sharpe and beta labelled by each window's last month (columns ``sharpe``, ``beta``)."""
    rate = rf.reindex(returns.index).to_numpy(dtype=np.float64) if isinstance(rf, pd.Series) else float(rf)
    r = returns.to_numpy(dtype=np.float64)
    b = benchmark.reindex(returns.index).to_numpy(dtype=np.float64)
    index = returns.index[window - 1:]
    return pd.DataFrame({"sharpe": rolling_sharpe(r, rate, window), "beta": rolling_beta(r, b, rate, window)},
                        index=index)


# ---- drawdown episodes ----------------------------------------------------------------------------------

def drawdown_episodes(r: np.ndarray) -> list[dict[str, Any]]:
    """Every drawdown episode of one series ``r`` (T,), deepest first.

    An episode is a maximal run of months with ``W_t < max_{s<=t} W_s``. Positions count the starting
    capital as 0 and month i as i (as :func:`job.metrics.drawdowns`): ``peak`` is the position where the
    running peak was set, ``trough`` the deepest position (the first one on ties), ``recovery`` the first
    position with ``W_t >= W_peak`` (None if not yet), ``depth = W_trough / W_peak - 1``,
    ``length_months = recovery - peak`` (or ``T - peak`` while unrecovered) and ``underwater_months`` the
    months below the peak.
    """
    dd = drawdowns(_arr(r))
    under = dd < 0.0
    if not under.any():
        return []
    edges = np.diff(np.concatenate([[False], under, [False]]).astype(np.int8))
    starts, ends = np.nonzero(edges == 1)[0], np.nonzero(edges == -1)[0]  # underwater positions [start, end)
    t = len(dd) - 1
    out = []
    for s, e in zip(starts, ends, strict=True):
        trough = int(s + np.argmin(dd[s:e]))
        recovered = e <= t
        out.append({"peak": int(s - 1), "trough": trough, "recovery": int(e) if recovered else None,
                    "depth": float(dd[trough]), "length_months": int((e if recovered else t) - (s - 1)),
                    "underwater_months": int(e - s), "recovered": bool(recovered)})
    out.sort(key=lambda ep: (ep["depth"], ep["peak"]))
    return out


def _month_label(index: pd.Index, pos: int | None) -> str | None:
    """Label of position ``pos`` (0 = the month before the first one, for a Period index)."""
    if pos is None:
        return None
    month = index[pos - 1] if pos > 0 else (index[0] - 1 if isinstance(index[0], pd.Period) else None)
    if month is None:
        return None
    return month_label(month)


def worst_drawdowns(returns: pd.Series, n: int = 5) -> list[dict[str, Any]]:
    """The ``n`` deepest drawdown episodes of ``returns`` (indexed by month), deepest first.

    Each: ``rank``, ``peak`` (month wealth peaked; as :func:`job.metrics.drawdown_dates`), ``trough``,
    ``recovery`` (first month back at the peak, None if not yet), ``depth`` (negative), ``length_months``
    (peak to recovery, or to the last month), ``months_to_trough``, ``underwater_months``, ``recovered``.
    """
    episodes = drawdown_episodes(returns.to_numpy(dtype=np.float64))[:n]
    index = returns.index
    return [{"rank": i + 1, "peak": _month_label(index, ep["peak"]), "trough": _month_label(index, ep["trough"]),
             "recovery": _month_label(index, ep["recovery"]), "depth": ep["depth"],
             "length_months": ep["length_months"], "months_to_trough": ep["trough"] - ep["peak"],
             "underwater_months": ep["underwater_months"], "recovered": ep["recovered"]}
            for i, ep in enumerate(episodes)]


# ---- calendar tables ------------------------------------------------------------------------------------

def _periods(index: pd.Index) -> pd.PeriodIndex:
    if isinstance(index, pd.PeriodIndex):
        return index.asfreq("M")
    return pd.PeriodIndex(pd.DatetimeIndex(index), freq="M")


def year_compounded(years: np.ndarray, r: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``prod_{months of y}(1 + r) - 1`` per calendar year: ``(years (Y,), returns (..., Y), months (Y,))``.

    ``years`` (T,) must be non-decreasing (returns in time order); ``r`` is ``(..., T)``.
    """
    years = np.asarray(years)
    starts = np.concatenate([[0], np.nonzero(np.diff(years))[0] + 1])
    growth = np.multiply.reduceat(1.0 + _arr(r), starts, axis=-1) - 1.0
    return years[starts], growth, np.diff(np.append(starts, len(years)))


def calendar_year_returns(returns: pd.Series, benchmark: pd.Series | None = None,
                          equal_weight: pd.Series | None = None, *,
                          extra: dict[str, pd.Series] | None = None) -> pd.DataFrame:
    """Compounded return of each calendar year ``prod_{months of y}(1 + r) - 1``, beside the references.

    Index: year; columns ``return`` (and ``benchmark``, ``equal_weight``, any ``extra`` series, and
    ``active = return - benchmark`` when a benchmark is given) and ``months`` (fewer than 12 in a partial
    first or last year). The series are aligned on ``returns``' months, which must be in time order.
    """
    columns = {"return": returns, "benchmark": benchmark, "equal_weight": equal_weight, **(extra or {})}
    names = [k for k, v in columns.items() if v is not None]
    values = np.stack([columns[k].reindex(returns.index).to_numpy(dtype=np.float64) if k != "return"
                       else returns.to_numpy(dtype=np.float64) for k in names])
    years, growth, counts = year_compounded(_periods(returns.index).year.to_numpy(), values)
    out = pd.DataFrame(dict(zip(names, growth, strict=True)), index=pd.Index(years, name="year"))
    if benchmark is not None:
        out["active"] = out["return"] - out["benchmark"]
    out["months"] = counts
    return out


def monthly_returns_table(returns: pd.Series) -> pd.DataFrame:
    """Year x month (1..12) table of monthly returns for a heatmap, plus ``year`` (compounded, as
    :func:`calendar_year_returns`). Months outside the data are NaN."""
    months = _periods(returns.index)
    frame = pd.DataFrame({"year": months.year, "month": months.month, "r": returns.to_numpy(dtype=np.float64)})
    table = frame.pivot(index="year", columns="month", values="r").reindex(columns=range(1, 13))
    table.columns = pd.Index(range(1, 13), name="month")
    years, growth, _ = year_compounded(frame["year"].to_numpy(), frame["r"].to_numpy())
    table["year"] = pd.Series(growth, index=years)
    return table

