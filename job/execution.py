"""Execution lag: the portfolio is traded after the decision, not at the decision month's last close.

The monthly run (docker/k8s/cronjob.yaml) starts at 06:00 New York time on the 3rd of the month after
the decision month m. The weights it publishes can be traded, at the earliest, during that day; the
backtest assumes they are traded at the close of the execution day

    E(t) = the first trading day on or after calendar day ``d = backtest.execution_lag_days`` of month t

for the target month t = m + 1 (default d = 4: the trading day after the CronJob's scheduled day), and
held to the close of the same point a month later, E(t + 1). With adjusted closes ``P_i`` (a total-return
index, sql/schema.sql) the return booked for asset i in target month t is

    r^exec_{i,t} = P_i(E(t + 1)) / P_i(E(t)) - 1

(sql/execution.sql; the execution day is found per asset, so a missing price on one day moves only that
asset to its next trading day). ``d = 0`` means no lag: trading at the decision month's last close, the
calendar-month return ``P_i(last close of t) / P_i(last close of m) - 1`` the models predict.

The models keep predicting calendar-month returns (their labels do not change); only the money is
booked on executed returns: the portfolio, benchmark and equal-weight returns of the backtest
(:func:`job.backtest.booked_returns`). The executed return of the as-of month itself is not known at
the as-of month's end (it needs E(as_of + 1)), so an execution-lag backtest has one month fewer than
the forecasts; :func:`execution_summary` compares both timings on exactly the same months. The monthly
risk-free rate of the target month is kept for the straddling period (a shift of a few days).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np
import pandas as pd

from job.months import month_start, month_str
from job.resources import sql_path

EXECUTION_SQL = "execution.sql"


def execution_closes(con: Any, day: int, first: pd.Period, as_of: pd.Period) -> pd.DataFrame:
    """Rows (asset, month, date, close, exit_date, exit_close, ret) of sql/execution.sql for months
    ``first..as_of``, reading no price after the end of ``as_of``."""
    last_date = (as_of + 1).start_time.date() - pd.Timedelta(days=1)
    return con.execute(sql_path(EXECUTION_SQL).read_text(),
                       [int(day), month_start(first), last_date]).df()


def executed_returns(con: Any, assets: list[str], months: pd.PeriodIndex, day: int,
                     as_of: pd.Period) -> pd.DataFrame:
    """Executed returns ``r^exec_{i,t}`` (rows: ``months`` as target months, columns: ``assets``).

    NaN where not known by the end of ``as_of`` (the as-of month itself) or where a month has no
    trading day on or after ``day``. ``attrs["execution_dates"]``: ``{target month: [entry date, exit
    date]}`` of the first asset (the benchmark's in the universe order), ``attrs["execution_lag_days"]``.
    """
    long = execution_closes(con, day, months[0], as_of)
    wide = long.pivot(index="month", columns="asset", values="ret")
    wide.index = pd.PeriodIndex(pd.to_datetime(wide.index), freq="M")
    out = wide.reindex(index=months, columns=assets).astype(np.float64)
    dates = long[long["asset"] == assets[0]]
    out.attrs["execution_dates"] = {
        month_str(pd.Period(pd.Timestamp(row.month), freq="M")): [
            str(pd.Timestamp(row.date).date()),
            None if pd.isna(row.exit_date) else str(pd.Timestamp(row.exit_date).date())]
        for row in dates.itertuples(index=False)}
    out.attrs["execution_lag_days"] = int(day)
    return out


def assumption(day: int, example: tuple[str, str, str] | None = None) -> str:
    """The sentence the report states: when the backtest trades, and an example month."""
    if day <= 0:
        return ("The backtest trades at the close of the decision month's last trading day and books "
                "calendar-month returns (no execution lag).")
    text = (f"The backtest trades at the close of the first trading day on or after day {day} of the month "
            "after the decision (the monthly run starts on the 3rd) and holds to the same point a month "
            "later; the models still predict calendar-month returns.")
    if example is not None:
        decision, entry, exit_ = example
        text += f" For example, the decision made at the end of {decision} was traded on {entry} and held to {exit_}."
    return text


def _figures(r: np.ndarray, rate: np.ndarray) -> dict[str, float | None]:
    from job.metrics import _number, vector_metrics

    out = vector_metrics(r, rate)
    keep = ("cagr", "annual_volatility", "sharpe", "sortino", "max_drawdown")
    figures = {k: _number(out[k]) for k in keep}
    figures["total_return"] = _number(np.prod(1.0 + r) - 1.0)
    return figures


def execution_summary(result: Any, dataset: Any, params: Any, *,
                      baseline_portfolio: pd.DataFrame | None = None) -> dict[str, Any]:
    """The ``execution`` section of the metrics document: executed vs month-end trading, same months.

    For every model (and baseline, when ``baseline_portfolio`` is given), the benchmark and equal
    weight: ``cagr``, ``annual_volatility``, ``sharpe``, ``sortino``, ``max_drawdown``,
    ``total_return`` under periods ``executed``/``executed_net`` (booked on executed returns, the
    backtest's P&L) and ``month_end``/``month_end_net`` (the same forecasts and weights realised at
    month-end closes, as the original did), and ``difference_net`` (executed minus month-end, net of
    costs), all over the target months of the executed portfolio. Formulas: :mod:`job.metrics`.
    With ``execution_lag_days = 0`` only the assumption is given.
    """
    from job.backtest import evaluate

    executed = getattr(dataset, "executed_returns", None)
    day = int(executed.attrs.get("execution_lag_days", 0)) if executed is not None else 0
    out: dict[str, Any] = {"execution_lag_days": day}
    if executed is None or result.portfolio.empty:
        out["assumption"] = assumption(0)
        return out
    forecasts = result.forecasts
    portfolio = result.portfolio
    if baseline_portfolio is not None and not baseline_portfolio.empty:
        names = set(baseline_portfolio["model"])
        forecasts = pd.concat([forecasts, result.baselines[result.baselines["model"].isin(names)]],
                              ignore_index=True)
        portfolio = pd.concat([portfolio, baseline_portfolio], ignore_index=True)
    _, month_end = evaluate(forecasts, replace(dataset, executed_returns=None), params)
    key = ["model", "target_month"]
    both = portfolio.merge(month_end, on=key, suffixes=("", "_month_end"), how="inner")
    dates = executed.attrs.get("execution_dates", {})
    first = both.sort_values("target_month").iloc[0] if len(both) else None
    example = None
    if first is not None:
        entry = dates.get(month_str(first["target_month"]), [None, None])
        if entry[0] and entry[1]:
            example = (month_str(first["decision_month"]), entry[0], entry[1])
    models: dict[str, Any] = {}
    reference = None
    for model, rows in both.groupby("model", sort=False):
        rows = rows.sort_values("target_month")
        reference = rows if reference is None or len(rows) > len(reference) else reference
        rate = rows["risk_free"].to_numpy(dtype=np.float64)
        entry = {}
        for period, column in (("executed", "portfolio_return"), ("executed_net", "portfolio_return_net"),
                               ("month_end", "portfolio_return_month_end"),
                               ("month_end_net", "portfolio_return_net_month_end")):
            entry[period] = _figures(rows[column].to_numpy(dtype=np.float64), rate)
        entry["difference_net"] = _difference(entry["executed_net"], entry["month_end_net"])
        models[str(model)] = entry
    if reference is not None:
        rate = reference["risk_free"].to_numpy(dtype=np.float64)
        for name, column in (("benchmark", "benchmark_return"), ("equal_weight", "equal_weight_return")):
            exe = _figures(reference[column].to_numpy(dtype=np.float64), rate)
            end = _figures(reference[column + "_month_end"].to_numpy(dtype=np.float64), rate)
            models[name] = {"executed": exe, "month_end": end, "difference": _difference(exe, end)}
        out["window"] = {"start": month_str(reference["target_month"].iloc[0]),
                         "end": month_str(reference["target_month"].iloc[-1]), "months": len(reference)}
    out["assumption"] = assumption(day, example)
    out["models"] = models
    return out


def _difference(a: dict[str, float | None], b: dict[str, float | None]) -> dict[str, float | None]:
    return {k: (None if a[k] is None or b[k] is None else a[k] - b[k]) for k in a}
