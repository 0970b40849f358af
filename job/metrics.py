"""Performance and forecast-quality metrics, with the formulas they promise.

Notation: ``r_t`` monthly portfolio returns (decimal) for ``t = 1..T``, ``rf_t`` the monthly risk-free
rate over the same month (decimal, from the data), ``x_t = r_t - rf_t`` the excess return,
``W_t = prod_{s<=t} (1 + r_s)`` wealth with ``W_0 = 1``.

Standard definitions (used for every headline number):

- CAGR ``= W_T ** (12 / T) - 1`` (``-1`` once wealth reaches zero).
- annualised volatility ``= std(r, ddof=1) * sqrt(12)``.
- Sharpe ``= mean(x) / std(x, ddof=1) * sqrt(12)``.
- Sortino ``= mean(x) * 12 / (DD * sqrt(12))`` with the downside deviation
  ``DD = sqrt(mean_t(min(x_t, 0) ** 2))`` over all T months (target = the risk-free rate; months above
  the target count as zero downside, the Sortino-Price definition).
- maximum drawdown ``= min_t (W_t / max_{s<=t} W_s - 1)`` (a negative number), with its peak month (end of
  the month wealth peaked; the month before the first one when the peak is the starting capital), trough
  month and recovery month (first month after the trough with ``W_t >= W_peak``; None if not yet).
- Calmar ``= CAGR / |maximum drawdown|``.
- hit rate vs benchmark ``= share of months with r_t > b_t`` (ties are not hits).

The original notebook's definitions, reported alongside to reproduce its table:

- ``original_std = std(r, ddof=0) * sqrt(12)`` (population standard deviation);
- ``original_sortino = (CAGR - 0.0427) / (std(r[r < 0], ddof=0) * sqrt(12))``: a fixed 4.27 % annual
  rate, and the population standard deviation of the negative months around their own mean.

Forecast quality (:func:`forecast_quality`): mean absolute error per model and asset next to the
persistence and historical-mean baselines on the same months, and the rank information coefficient:
each month, the Spearman correlation across assets of predicted and realised returns; reported as its
mean over months with ``t = mean / (std(ddof=1) / sqrt(n_months))``.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

from job.model_names import BASELINES
from job.months import month_label

MONTHS_PER_YEAR = 12
ORIGINAL_SORTINO_RF = 0.0427


# ---- vectorised kernels: time on the last axis, any leading axes (parameter grids) ----------------------

def _safe_div(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    num, den = np.asarray(num, dtype=np.float64), np.asarray(den, dtype=np.float64)
    ok = den > 0
    return np.where(ok, num / np.where(ok, den, 1.0), np.nan)


def wealth(r: np.ndarray) -> np.ndarray:
    """``W_t = prod_{s<=t}(1 + r_s)`` along the last axis (floored at 0: a ruined portfolio stays ruined)."""
    growth = np.maximum(1.0 + np.asarray(r, dtype=np.float64), 0.0)
    return np.cumprod(growth, axis=-1)


def cagr(r: np.ndarray) -> np.ndarray:
    """Compound annual growth rate ``W_T ** (12 / T) - 1``."""
    r = np.asarray(r, dtype=np.float64)
    final = wealth(r)[..., -1]
    return final ** (MONTHS_PER_YEAR / r.shape[-1]) - 1.0


def annual_volatility(r: np.ndarray) -> np.ndarray:
    """``std(r, ddof=1) * sqrt(12)``."""
    return np.std(r, axis=-1, ddof=1) * math.sqrt(MONTHS_PER_YEAR)


def sharpe(r: np.ndarray, rf: np.ndarray | float = 0.0) -> np.ndarray:
    """``mean(r - rf) / std(r - rf, ddof=1) * sqrt(12)`` (NaN when the excess return is constant)."""
    x = np.asarray(r, dtype=np.float64) - np.asarray(rf, dtype=np.float64)
    return _safe_div(x.mean(axis=-1), np.std(x, axis=-1, ddof=1)) * math.sqrt(MONTHS_PER_YEAR)


def downside_deviation(r: np.ndarray, rf: np.ndarray | float = 0.0) -> np.ndarray:
    """Monthly ``sqrt(mean(min(r - rf, 0) ** 2))`` over all months."""
    x = np.asarray(r, dtype=np.float64) - np.asarray(rf, dtype=np.float64)
    return np.sqrt(np.mean(np.minimum(x, 0.0) ** 2, axis=-1))


def sortino(r: np.ndarray, rf: np.ndarray | float = 0.0) -> np.ndarray:
    """``mean(r - rf) * 12 / (downside_deviation * sqrt(12))`` (NaN with no month below the target)."""
    x = np.asarray(r, dtype=np.float64) - np.asarray(rf, dtype=np.float64)
    return _safe_div(x.mean(axis=-1) * MONTHS_PER_YEAR,
                     downside_deviation(r, rf) * math.sqrt(MONTHS_PER_YEAR))


def drawdowns(r: np.ndarray) -> np.ndarray:
    """``W_t / max_{s<=t} W_s - 1`` for t = 0..T (position 0 is the starting capital, drawdown 0)."""
    w = wealth(r)
    w = np.concatenate([np.ones_like(w[..., :1]), w], axis=-1)
    peak = np.maximum.accumulate(w, axis=-1)
    return w / peak - 1.0


def max_drawdown(r: np.ndarray) -> np.ndarray:
    """Deepest drawdown ``min_t (W_t / max_{s<=t} W_s - 1)``, a number in [-1, 0]."""
    return drawdowns(r).min(axis=-1)


def calmar(r: np.ndarray) -> np.ndarray:
    """``CAGR / |maximum drawdown|`` (NaN without a drawdown)."""
    return _safe_div(cagr(r), -max_drawdown(r))


def original_std(r: np.ndarray) -> np.ndarray:
    """The notebook's volatility: population ``std(r, ddof=0) * sqrt(12)``."""
    return np.std(r, axis=-1, ddof=0) * math.sqrt(MONTHS_PER_YEAR)


def original_sortino(r: np.ndarray, rate: float = ORIGINAL_SORTINO_RF) -> np.ndarray:
    """The notebook's Sortino: ``(CAGR - rate) / (std(r[r < 0], ddof=0) * sqrt(12))``."""
    r = np.asarray(r, dtype=np.float64)
    neg = r < 0.0
    count = neg.sum(axis=-1)
    mean_neg = _safe_div(np.where(neg, r, 0.0).sum(axis=-1), count)
    var_neg = _safe_div(np.where(neg, (r - mean_neg[..., None]) ** 2, 0.0).sum(axis=-1), count)
    return _safe_div(cagr(r) - rate, np.sqrt(var_neg) * math.sqrt(MONTHS_PER_YEAR))


def hit_rate(r: np.ndarray, benchmark: np.ndarray) -> np.ndarray:
    """Share of months with ``r_t > b_t``."""
    return (np.asarray(r, dtype=np.float64) > np.asarray(benchmark, dtype=np.float64)).mean(axis=-1)


def vector_metrics(r: np.ndarray, rf: np.ndarray | float = 0.0, benchmark: np.ndarray | None = None, *,
                   original_rf: float = ORIGINAL_SORTINO_RF) -> dict[str, np.ndarray]:
    """Every numeric metric of :func:`performance` for returns ``(..., T)``, as arrays of shape ``(...)``."""
    r = np.asarray(r, dtype=np.float64)
    out = {
        "cagr": cagr(r),
        "annual_volatility": annual_volatility(r),
        "sharpe": sharpe(r, rf),
        "sortino": sortino(r, rf),
        "max_drawdown": max_drawdown(r),
        "calmar": calmar(r),
        "original_std": original_std(r),
        "original_sortino": original_sortino(r, original_rf),
    }
    if benchmark is not None:
        out["hit_rate"] = hit_rate(r, benchmark)
    return out


# ---- one return series -----------------------------------------------------------------------------------

def _number(value: Any) -> float | None:
    value = float(value)
    return value if math.isfinite(value) else None


def align_risk_free(rf: pd.Series, months: pd.Index) -> np.ndarray:
    """The monthly rate ``rf`` on ``months``: the last known rate (forward-filled), NaN before the first one.

    The one alignment rule of the risk-free rate; callers decide what a NaN means (:func:`performance`
    raises, ``backtest.risk_free_for`` uses 0 with a warning or exits 2 in levered mode).
    """
    union = rf.index.union(months)
    return rf.reindex(union).ffill().reindex(months).to_numpy(dtype=np.float64)


def _aligned_rf(rf: pd.Series | float | None, index: pd.Index) -> np.ndarray:
    """``rf`` on ``index``: forward-filled (the last known rate), zero when no rate is given."""
    if rf is None:
        return np.zeros(len(index))
    if not isinstance(rf, pd.Series):
        return np.full(len(index), float(rf))
    if rf.empty:
        return np.zeros(len(index))
    aligned = align_risk_free(rf, index)
    if np.isnan(aligned).any():
        first = index[np.isnan(aligned)][0]
        raise ValueError(f"risk-free rate is missing for {month_label(first)} (it starts later than the returns)")
    return aligned


def drawdown_dates(returns: pd.Series) -> dict[str, str | None]:
    """Peak, trough and recovery months of the deepest drawdown of ``returns`` (indexed by month)."""
    dd = drawdowns(returns.to_numpy(dtype=np.float64))
    trough = int(np.argmin(dd))
    if dd[trough] >= 0.0:
        return {"max_drawdown_peak": None, "max_drawdown_trough": None, "max_drawdown_recovery": None}
    w = np.concatenate([[1.0], wealth(returns.to_numpy(dtype=np.float64))])
    peak = int(np.argmax(w[:trough + 1]))
    after = np.nonzero(w[trough + 1:] >= w[peak])[0]
    index = returns.index

    def at(pos: int) -> str | None:
        if pos > 0:
            return month_label(index[pos - 1])
        return month_label(index[0] - 1) if isinstance(index[0], pd.Period) else None

    return {"max_drawdown_peak": at(peak), "max_drawdown_trough": at(trough),
            "max_drawdown_recovery": at(trough + 1 + int(after[0])) if len(after) else None}


def performance(returns: pd.Series, rf: pd.Series | float | None = None, benchmark: pd.Series | None = None,
                *, original_rf: float = ORIGINAL_SORTINO_RF) -> dict[str, Any]:
    """Performance of monthly ``returns`` (indexed by the month they were earned).

    ``rf``: monthly risk-free rate (decimal) by month, forward-filled onto the return months; None means
    zero. ``benchmark``: monthly returns aligned on the same months, for the hit rate. Returns a flat
    dict of numbers (None where undefined) plus the drawdown's month labels; formulas in the module
    docstring. Raises ValueError for fewer than 2 months or missing returns.
    """
    r = returns.astype(np.float64)
    if len(r) < 2 or r.isna().any():
        raise ValueError("performance needs at least 2 months of returns without gaps")
    rate = _aligned_rf(rf, r.index)
    bench = None
    if benchmark is not None:
        b = benchmark.reindex(r.index)
        if b.isna().any():
            raise ValueError("benchmark returns are missing for some months")
        bench = b.to_numpy(dtype=np.float64)
    values = r.to_numpy()
    out: dict[str, Any] = {
        "months": len(r), "start": month_label(r.index[0]), "end": month_label(r.index[-1]),
        "total_return": _number(wealth(values)[-1] - 1.0),
        "mean_monthly_return": _number(values.mean()),
        "mean_risk_free_annual": _number(rate.mean() * MONTHS_PER_YEAR),
    }
    out.update({k: _number(v) for k, v in vector_metrics(values, rate, bench, original_rf=original_rf).items()})
    out.update(drawdown_dates(r))
    return out


# ---- forecasts ---------------------------------------------------------------------------------------------

def rank_ic(frame: pd.DataFrame, *, min_assets: int = 2) -> pd.Series:
    """Monthly Spearman correlation across assets of ``predicted`` and ``realised``.

    ``frame``: one model's rows (decision_month, asset, predicted, realised). Months where either side
    is constant across assets (correlation undefined) are dropped, and so are months with fewer than
    ``min_assets`` assets (the scoreboard asks for 3). Only the assets with both values in a month take
    part (unbalanced panels: an asset absent that month has neither).
    """
    pred = frame.pivot(index="decision_month", columns="asset", values="predicted")
    real = frame.pivot(index="decision_month", columns="asset", values="realised")
    both = pred.notna().to_numpy() & real.notna().to_numpy()
    k = np.maximum(both.sum(axis=1, keepdims=True), 1)
    rp = np.where(both, pred.where(both).rank(axis=1).to_numpy(dtype=np.float64), 0.0)
    rr = np.where(both, real.where(both).rank(axis=1).to_numpy(dtype=np.float64), 0.0)
    rp = np.where(both, rp - rp.sum(axis=1, keepdims=True) / k, 0.0)
    rr = np.where(both, rr - rr.sum(axis=1, keepdims=True) / k, 0.0)
    den = np.sqrt((rp**2).sum(axis=1) * (rr**2).sum(axis=1))
    ic = _safe_div((rp * rr).sum(axis=1), den)
    ic[both.sum(axis=1) < min_assets] = np.nan
    return pd.Series(ic, index=pred.index, name="rank_ic").dropna()


def forecast_quality(forecasts: pd.DataFrame, baselines: pd.DataFrame | None = None) -> dict[str, Any]:
    """MAE and rank IC per model, against the baselines on the same (month, asset) pairs.

    ``forecasts`` and ``baselines`` have columns model, decision_month, asset, predicted, realised (the
    baselines' models are ``persistence`` and ``historical-mean``). Returns
    ``{"by_model": {model: {metric: number}}, "mae_by_asset": {model: {asset: number}}}`` where each
    model's metrics are ``mae``, ``mae_persistence``, ``mae_historical_mean`` (the baselines on that
    model's months), ``mae_ratio_persistence``, ``mae_ratio_historical_mean`` (< 1 beats the baseline),
    ``rank_ic_mean``, ``rank_ic_std``, ``rank_ic_t``, ``rank_ic_months`` and ``rank_ic_positive_share``.
    Baselines appear as models too.
    """
    frames = [forecasts]
    if baselines is not None:  # a baseline also run as a model is reported once, as the model
        frames.append(baselines[~baselines["model"].isin(set(forecasts["model"]))])
    every = pd.concat(frames, ignore_index=True)
    every = every[every["realised"].notna()]
    base = None if baselines is None else baselines.set_index(["decision_month", "asset"])
    by_model: dict[str, dict[str, Any]] = {}
    by_asset: dict[str, dict[str, Any]] = {}
    for model, rows in every.groupby("model", sort=False):
        err = (rows["predicted"] - rows["realised"]).abs()
        mae = float(err.mean())
        entry: dict[str, Any] = {"mae": _number(mae)}
        if base is not None:
            keys = pd.MultiIndex.from_frame(rows[["decision_month", "asset"]])
            for name in BASELINES:
                b = base[base["model"] == name].reindex(keys) if name in set(base["model"]) else None
                col = name.replace("-", "_")
                if b is None or b["predicted"].isna().any():
                    entry[f"mae_{col}"] = entry[f"mae_ratio_{col}"] = None
                    continue
                b_mae = float(np.abs(b["predicted"].to_numpy() - rows["realised"].to_numpy()).mean())
                entry[f"mae_{col}"] = _number(b_mae)
                entry[f"mae_ratio_{col}"] = _number(mae / b_mae) if b_mae > 0 else None
        ic = rank_ic(rows)
        n = len(ic)
        sd = float(ic.std(ddof=1)) if n > 1 else float("nan")
        entry.update({
            "rank_ic_mean": _number(ic.mean()) if n else None,
            "rank_ic_std": _number(sd),
            "rank_ic_t": _number(ic.mean() / (sd / math.sqrt(n))) if n > 1 and sd > 0 else None,
            "rank_ic_months": n,
            "rank_ic_positive_share": _number((ic > 0).mean()) if n else None,
        })
        by_model[str(model)] = entry
        by_asset[str(model)] = {str(a): _number(v) for a, v in err.groupby(rows["asset"], sort=False).mean().items()}
    return {"by_model": by_model, "mae_by_asset": by_asset}


# ---- a whole backtest --------------------------------------------------------------------------------------

def _extras(rows: pd.DataFrame) -> dict[str, Any]:
    return {"avg_turnover": _number(rows["turnover"].mean()),
            "avg_capital_deployed": _number(rows["capital_deployed"].mean()),
            "avg_gross_exposure": _number(rows["gross_exposure"].mean()),
            "total_cost": _number(rows["cost"].sum())}


def summarise(result: Any, settings: Any = None, *, sweep: pd.DataFrame | None = None,
              booked: pd.DataFrame | None = None) -> dict[str, Any]:
    """The metrics document of a :class:`job.backtest.BacktestResult`.

    Shape: ``{"models": {model: {period: {metric: number}}}, "benchmark": {period: {...}},
    "equal_weight": {period: {...}}, "forecast_quality": {...}, "windows": {...}, "strategy": {...},
    "scheme": str}`` where period is ``full`` (the whole out-of-sample span), ``last_20pct`` (the
    original's evaluation window: the last ``1 - static_train_share`` of months), and ``full_net`` /
    ``last_20pct_net`` (after transaction costs). Returns are indexed by the month they were earned
    (target month). Excess returns are over the result's own ``risk_free`` column (the target month's rate).

    New sections (:func:`extended_summary`; the keys above are unchanged): ``relative``,
    ``distribution``, ``drawdowns``, ``calendar_years`` and ``significance``; with a ``sweep`` table
    (:func:`job.backtest.sweep_result`), ``deflated_sharpe`` (:func:`deflated_sharpe_of_sweep`; ``booked``:
    the returns the backtest booked, :func:`job.backtest.booked_returns`, default the forecasts' realised).

    ``forecast_quality`` and ``significance`` are computed on the rows every model and baseline
    predicts (:func:`job.scoreboard.common_rows`), so no two models are measured on different rows.
    """
    original_rate = ORIGINAL_SORTINO_RF if settings is None else float(settings.backtest.original_sortino_rf)
    port = result.portfolio
    first_eval = result.original_window[0] if result.original_window else None
    windows: dict[str, Any] = {}
    models: dict[str, Any] = {}
    reference = None
    for model, rows in port.groupby("model", sort=False):
        rows = rows.sort_values("decision_month").set_index("target_month")
        reference = rows if reference is None or len(rows) > len(reference) else reference
        rate = rows["risk_free"]
        periods: dict[str, Any] = {}
        for period, part in _periods(rows, first_eval).items():
            bench = part["benchmark_return"]
            for suffix, column in (("", "portfolio_return"), ("_net", "portfolio_return_net")):
                stats = performance(part[column], rate, bench, original_rf=original_rate)
                stats.update(_extras(part))
                periods[period + suffix] = stats
        models[str(model)] = periods
    out: dict[str, Any] = {"scheme": result.scheme, "strategy": result.params.as_dict(), "models": models}
    if reference is not None:
        rate = reference["risk_free"]
        for name, column in (("benchmark", "benchmark_return"), ("equal_weight", "equal_weight_return")):
            out[name] = {period: performance(part[column], rate,
                                             None if name == "benchmark" else part["benchmark_return"],
                                             original_rf=original_rate)
                         for period, part in _periods(reference, first_eval).items()}
        windows = {period: {"start": month_label(part.index[0]), "end": month_label(part.index[-1]),
                            "months": len(part)}
                   for period, part in _periods(reference, first_eval).items()}
    out["windows"] = windows
    forecasts, baselines = on_common_rows(result)
    out["forecast_quality"] = forecast_quality(forecasts, baselines)
    out.update(extended_summary(result))
    if sweep is not None and len(sweep):
        out["deflated_sharpe"] = deflated_sharpe_of_sweep(result, sweep, booked=booked)
    return out


def on_common_rows(result: Any) -> tuple[pd.DataFrame, pd.DataFrame | None]:
    """(forecasts, baselines) of ``result`` kept to the (decision month, asset) pairs that every model
    and baseline predicts with a known realised return (:func:`job.scoreboard.common_rows`)."""
    from job.scoreboard import all_forecasts, common_rows

    rows = common_rows(all_forecasts(result))
    keys = pd.MultiIndex.from_frame(rows[["decision_month", "asset"]]).unique()

    def keep(frame: pd.DataFrame | None) -> pd.DataFrame | None:
        if frame is None:
            return None
        return frame[pd.MultiIndex.from_frame(frame[["decision_month", "asset"]]).isin(keys)]

    return keep(result.forecasts), keep(result.baselines)  # type: ignore[return-value]


def _periods(rows: pd.DataFrame, first_eval: pd.Period | None) -> dict[str, pd.DataFrame]:
    """``full`` and, when at least 2 months fall in it and it is a proper subset of ``full``, ``last_20pct``
    (decision months >= first_eval)."""
    out = {"full": rows}
    if first_eval is not None:
        last = rows[rows["decision_month"] >= first_eval]
        if 2 <= len(last) < len(rows):
            out["last_20pct"] = last
    return out


# ---- relative figures, tails, drawdown episodes, calendar years, significance ------------------------------

REFERENCES = (("benchmark", "benchmark_return"), ("equal_weight", "equal_weight_return"))
RETURN_COLUMNS = (("", "portfolio_return"), ("_net", "portfolio_return_net"))
N_DRAWDOWNS = 5


def _numbers(values: dict[str, Any], i: int | tuple[()] = ()) -> dict[str, float | None]:
    return {k: _number(np.asarray(v)[i]) for k, v in values.items()}


def _against(r: np.ndarray, ref: np.ndarray, rate: np.ndarray, name: str) -> list[dict[str, float | None]]:
    """Relative figures and Sharpe-difference tests of each row of ``r`` (k, T) against ``ref`` (T,)."""
    from job.analytics import relative_metrics
    from job.significance import sharpe_difference_hac, sharpe_difference_jkm

    rel = relative_metrics(r, ref, rate)
    lw = sharpe_difference_hac(r - rate, ref - rate)
    jk = sharpe_difference_jkm(r - rate, ref - rate)
    rel.update({"sharpe_difference": lw.difference, "sharpe_difference_se": lw.se, "sharpe_difference_z": lw.z,
                "sharpe_difference_p": lw.p, "sharpe_difference_p_jkm": jk.p})
    return [{f"{k}_vs_{name}": v for k, v in _numbers(rel, i).items()} for i in range(r.shape[0])]


def extended_summary(result: Any) -> dict[str, Any]:
    """The new sections of the metrics document (formulas in :mod:`job.analytics`, :mod:`job.significance`).

    - ``relative``: ``{"models": {model: {period: {metric_vs_benchmark, metric_vs_equal_weight}}}}`` with
      the periods of :func:`summarise` (``full``, ``last_20pct``, ``_net`` after costs); metrics
      ``active_return``, ``tracking_error``, ``information_ratio``, ``alpha`` (annualised), ``alpha_t``,
      ``beta``, ``beta_t``, ``r_squared``, ``up_capture``, ``down_capture``, ``correlation``, and the
      Sharpe-ratio difference (annualised) with its Ledoit-Wolf HAC ``_se``, ``_z``, ``_p`` and the
      Jobson-Korkie-Memmel ``_p_jkm``; ``equal_weight`` appears as a model (against the benchmark only).
    - ``distribution``: ``best_month``, ``worst_month``, ``skew``, ``excess_kurtosis``, ``var_95``,
      ``cvar_95`` per model and period, plus ``benchmark`` and ``equal_weight`` as models.
    - ``drawdowns``: per model and period the 5 deepest episodes, ``{"1": {depth, peak, trough, recovery,
      length_months, months_to_trough, underwater_months, recovered}, ...}``.
    - ``calendar_years``: per model ``{year: {return, return_net, benchmark, equal_weight, active,
      active_net, months}}`` over the full span.
    - ``significance``: ``{"by_model": {model: {rank_ic_mean, rank_ic_t_newey_west, rank_ic_p_newey_west,
      rank_ic_newey_west_lag, rank_ic_months}}}`` (models and baselines).

    Everything is vectorised over gross and net returns; only models and periods are looped over.
    """
    from job.analytics import calendar_year_returns, distribution_metrics, worst_drawdowns
    from job.significance import newey_west_mean_test

    port = result.portfolio
    first_eval = result.original_window[0] if result.original_window else None
    relative: dict[str, Any] = {}
    distribution: dict[str, Any] = {}
    episodes: dict[str, Any] = {}
    calendar: dict[str, Any] = {}
    reference = None
    for model, rows in port.groupby("model", sort=False):
        rows = rows.sort_values("decision_month").set_index("target_month")
        reference = rows if reference is None or len(rows) > len(reference) else reference
        rel_m, dist_m, dd_m = {}, {}, {}
        for period, part in _periods(rows, first_eval).items():
            rate = _aligned_rf(rows["risk_free"], part.index)
            r = part[[c for _, c in RETURN_COLUMNS]].to_numpy(dtype=np.float64).T  # (2, T): gross, net
            against = [_against(r, part[column].to_numpy(dtype=np.float64), rate, name)
                       for name, column in REFERENCES]
            dist = distribution_metrics(r)
            for i, (suffix, column) in enumerate(RETURN_COLUMNS):
                rel_m[period + suffix] = {k: v for figures in against for k, v in figures[i].items()}
                dist_m[period + suffix] = _numbers(dist, i)
                dd_m[period + suffix] = _drawdown_doc(worst_drawdowns(part[column], N_DRAWDOWNS))
        relative[str(model)], distribution[str(model)], episodes[str(model)] = rel_m, dist_m, dd_m
        years = calendar_year_returns(rows["portfolio_return"], rows["benchmark_return"], rows["equal_weight_return"],
                                      extra={"return_net": rows["portfolio_return_net"]})
        years["active_net"] = years["return_net"] - years["benchmark"]
        calendar[str(model)] = {str(year): {k: _number(v) for k, v in row.items()} for year, row in years.iterrows()}
    if reference is not None:
        for name, column in REFERENCES:
            distribution[name], episodes[name] = {}, {}
            for period, part in _periods(reference, first_eval).items():
                values = part[column].to_numpy(dtype=np.float64)
                distribution[name][period] = _numbers(distribution_metrics(values))
                episodes[name][period] = _drawdown_doc(worst_drawdowns(part[column], N_DRAWDOWNS))
        relative["equal_weight"] = {
            period: _against(part[["equal_weight_return"]].to_numpy(dtype=np.float64).T,
                             part["benchmark_return"].to_numpy(dtype=np.float64),
                             _aligned_rf(reference["risk_free"], part.index), "benchmark")[0]
            for period, part in _periods(reference, first_eval).items()}
    significance: dict[str, Any] = {}
    forecasts, baselines = on_common_rows(result)  # every model on the same rows
    frames = [forecasts]
    if baselines is not None:
        frames.append(baselines[~baselines["model"].isin(set(forecasts["model"]))])
    every = pd.concat(frames, ignore_index=True)
    for model, rows in every[every["realised"].notna()].groupby("model", sort=False):
        ic = rank_ic(rows).to_numpy(dtype=np.float64)
        test = newey_west_mean_test(ic) if len(ic) > 1 else None
        significance[str(model)] = {
            "rank_ic_mean": _number(ic.mean()) if len(ic) else None,
            "rank_ic_t_newey_west": None if test is None else _number(test.t),
            "rank_ic_p_newey_west": None if test is None else _number(test.p),
            "rank_ic_newey_west_lag": None if test is None else test.lag,
            "rank_ic_months": len(ic)}
    return {"relative": {"models": relative}, "distribution": {"models": distribution},
            "drawdowns": {"models": episodes}, "calendar_years": {"models": calendar},
            "significance": {"by_model": significance}}


def _drawdown_doc(episodes: list[dict[str, Any]]) -> dict[str, Any]:
    return {str(ep["rank"]): {k: (_number(v) if k == "depth" else v) for k, v in ep.items() if k != "rank"}
            for ep in episodes}


def deflated_sharpe_of_sweep(result: Any, sweep: pd.DataFrame, *, column: str = "sharpe_net",
                             booked: pd.DataFrame | None = None) -> dict[str, Any]:
    """Deflated Sharpe ratio (Bailey and Lopez de Prado 2014) of the best combination of a sweep.

    ``sweep``: :func:`job.backtest.sweep_result`'s table (model, threshold, factor, shrinkage, mode,
    cost_bps, ``column``...). The trials are its rows (every model x combination): N = rows with a
    finite ``column``, ``V[SR]`` = their sample variance (ddof 1) of the monthly Sharpe ratio
    (annual / sqrt(12)). The best row's returns are rebuilt from ``result.forecasts`` with
    :func:`job.strategy.run_strategy` (net of costs for a ``_net`` column) to get T, the skewness and
    kurtosis (population moments, not excess) of its excess returns. Returns ``{"by_model": {model:
    {...}, "all_models": {...}}}``: each with ``dsr`` (a probability), ``sharpe`` and
    ``expected_max_sharpe`` (annualised), ``n_trials``, ``sharpe_variance`` (annualised units), ``months``,
    ``skew``, ``kurtosis``, ``threshold``, ``factor``, ``shrinkage`` and ``best_model``. ``booked``
    (decision months x assets): the returns the sweep realised (executed returns with an execution lag,
    :func:`job.backtest.booked_returns`); default the forecasts' calendar-month ``realised``.
    """
    table = sweep[np.isfinite(sweep[column].to_numpy(dtype=np.float64))]
    if "model" not in table:
        models = list(dict.fromkeys(result.forecasts["model"]))
        if len(models) != 1:
            raise ValueError("a sweep table without a model column needs a single-model result")
        table = table.assign(model=models[0])
    out: dict[str, Any] = {}
    groups = [(str(m), rows) for m, rows in table.groupby("model", sort=False)] + [("all_models", table)]
    for name, rows in groups:
        if rows.empty:
            continue
        out[name] = _deflated_best(result, rows, column, booked)
    return {"by_model": out}


def _deflated_best(result: Any, rows: pd.DataFrame, column: str, booked: pd.DataFrame | None = None) -> dict[str, Any]:
    from job.significance import deflated_sharpe, population_moments
    from job.strategy import StrategyParams, run_strategy

    root = math.sqrt(MONTHS_PER_YEAR)
    sharpes = rows[column].to_numpy(dtype=np.float64)
    best = rows.iloc[int(np.argmax(sharpes))]
    model = str(best["model"])
    forecasts = result.forecasts[result.forecasts["model"] == model]
    pred = forecasts.pivot(index="decision_month", columns="asset", values="predicted")
    real = forecasts.pivot(index="decision_month", columns="asset", values="realised")[pred.columns]
    if booked is not None:  # the sweep's own returns: months whose booked return is known
        real = booked.reindex(index=pred.index, columns=pred.columns)
        known = real.notna().any(axis=1)
        pred, real = pred[known], real[known]
    port = result.portfolio[result.portfolio["model"] == model].set_index("decision_month")
    months = pd.PeriodIndex(pred.index)
    rate = port["risk_free"].reindex(months).to_numpy(dtype=np.float64)
    params = StrategyParams(threshold=float(best["threshold"]), factor=float(best["factor"]),
                            shrinkage=float(best["shrinkage"]), mode=str(best.get("mode", result.params.mode)),
                            cost_bps=float(best.get("cost_bps", result.params.cost_bps)))
    run = run_strategy(pred.to_numpy(dtype=np.float64), real.to_numpy(dtype=np.float64), params, rate)
    excess = (run.net_return if column.endswith("_net") else run.gross_return) - rate
    skew, kurt = population_moments(excess)
    variance = float(np.var(sharpes / root, ddof=1)) if len(sharpes) > 1 else 0.0
    d = deflated_sharpe(float(best[column]) / root, variance, len(sharpes), len(excess), skew, kurt)
    return {"dsr": _number(d.dsr), "sharpe": _number(d.sharpe * root),
            "expected_max_sharpe": _number(d.expected_max_sharpe * root), "n_trials": d.n_trials,
            "sharpe_variance": _number(variance * MONTHS_PER_YEAR), "months": d.n_obs, "skew": _number(skew),
            "kurtosis": _number(kurt), "threshold": _number(params.threshold), "factor": _number(params.factor),
            "shrinkage": _number(params.shrinkage), "best_model": model}


# ---- the decision-support sections: scoreboard, baselines, execution, leverage, verdict --------------------

def decision_sections(result: Any, dataset: Any, params: Any, settings: Any, models: Any,
                      doc: dict[str, Any]) -> tuple[dict[str, Any], pd.DataFrame, pd.DataFrame]:
    """The sections of issue 15 added to a :func:`summarise` document, and the baselines' backtest.

    Returns ``(sections, baseline_weights, baseline_portfolio)`` with sections ``scoreboard``
    (:func:`job.scoreboard.scoreboard`: every model and baseline on the same rows), ``baselines``
    (:func:`job.scoreboard.baseline_summary`: persistence, historical-mean and momentum allocated and
    measured exactly like the models), ``execution`` (:func:`job.execution.execution_summary`: executed
    vs month-end trading on the same months), ``leverage`` (:func:`job.leverage.leverage_summary`: the
    predicted returns against the threshold) and ``verdict`` (:func:`job.verdict.verdict_section`, read
    from the document with these sections in it; ``models``: the models run, for the chosen one).
    """
    from job.execution import execution_summary
    from job.leverage import leverage_summary
    from job.scoreboard import all_forecasts, baseline_backtest, baseline_summary, scoreboard
    from job.verdict import chosen_model, verdict_section

    base_weights, base_portfolio = baseline_backtest(result, dataset, params)
    sections: dict[str, Any] = {
        "scoreboard": scoreboard(result),
        "baselines": baseline_summary(result, base_portfolio, settings),
        "execution": execution_summary(result, dataset, params, baseline_portfolio=base_portfolio),
        "leverage": leverage_summary(all_forecasts(result), float(params.threshold), float(params.factor)),
    }
    default = str(getattr(getattr(settings, "report", None), "default_model", "")) if settings is not None else ""
    names = list(models) or list(dict.fromkeys(result.forecasts["model"]))
    sections["verdict"] = verdict_section({**doc, **sections}, chosen_model(default, names))
    return sections, base_weights, base_portfolio
