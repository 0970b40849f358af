"""Adapters from the backtest's frames and the metrics document to the report's sections.

They read plain frames with the columns documented on :class:`job.backtest.BacktestResult` (months as
``pandas.Period`` or ``YYYY-MM``) and the metrics document of :func:`job.metrics.summarise`,
and import neither module, so the report stays a leaf of the package. Returns and weights are labelled
by the month they were earned or held (``target_month``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pandas as pd

from job.metrics import rank_ic
from job.model_names import BASELINES
from job.months import month_labels
from job.report.data import (
    BENCHMARK_KEY,
    EQUAL_WEIGHT_KEY,
    EXECUTION_COLUMNS,
    LEVERAGE_COLUMNS,
    SCOREBOARD_COLUMNS,
    AllocationSection,
    DecisionSection,
    ExecutionSection,
    ForecastQualitySection,
    LeverageSection,
    LookaheadSection,
    MetricTable,
    PerformanceSection,
    ScoreboardSection,
)

NET_SUFFIX = "_net"


def metric_tables(doc: Mapping[str, Any]) -> tuple[MetricTable, MetricTable]:
    """(net, gross) metric tables from a metrics document.

    ``doc["models"][model]`` holds periods ``full``/``last_20pct`` (before costs) and ``full_net``/
    ``last_20pct_net`` (after costs); ``doc["benchmark"]`` and ``doc["equal_weight"]`` carry no costs
    and go into both tables. The baselines run through the allocation (``doc["baselines"]["performance"]
    ["models"]``: persistence, historical-mean, momentum) follow the models, under their names.
    """
    net: MetricTable = {}
    gross: MetricTable = {}
    baselines = ((doc.get("baselines") or {}).get("performance") or {}).get("models") or {}
    models = {**(doc.get("models") or {}), **{b: v for b, v in baselines.items() if b not in (doc.get("models") or {})}}
    for model, periods in models.items():
        net[model] = {p[: -len(NET_SUFFIX)]: m for p, m in periods.items() if p.endswith(NET_SUFFIX)}
        gross[model] = {p: m for p, m in periods.items() if not p.endswith(NET_SUFFIX)}
        if not net[model]:  # a document without cost variants: costs were zero
            net[model] = dict(gross[model])
    for key in (BENCHMARK_KEY, EQUAL_WEIGHT_KEY):
        if doc.get(key):
            net[key] = dict(doc[key])
            gross[key] = dict(doc[key])
    return net, gross


def out_of_sample_months(portfolio: pd.DataFrame) -> int:
    """How many months the backtest's out-of-sample span has (distinct target months of any model)."""
    if portfolio is None or portfolio.empty:
        return 0
    return int(pd.Series(month_labels(portfolio["target_month"])).nunique())


def small_sample_caveat(months: int, minimum: int) -> str:
    """The plain sentence that opens the performance section when the span is under ``minimum`` months
    ('' otherwise)."""
    if months >= minimum:
        return ""
    return (f"These figures cover only {months} out-of-sample month{'s' if months != 1 else ''} (fewer than "
            f"{minimum}): too few to tell skill from luck, so read them as an illustration, not as evidence "
            "that any model works.")


def performance_section(portfolio: pd.DataFrame, doc: Mapping[str, Any], *, benchmark: str,
                        cost_bps: float | None = None, min_oos_months: int | None = None) -> PerformanceSection:
    """Section 2 from the backtest's ``portfolio`` frame (one row per model and month) and the metrics document.

    With ``min_oos_months``, a span shorter than that gets :func:`small_sample_caveat` as ``caveat``."""
    months = month_labels(portfolio["target_month"])
    returns = pd.DataFrame({"month": months, "model": portfolio["model"].astype(str).to_numpy(),
                            "gross_return": portfolio["portfolio_return"].to_numpy(),
                            "net_return": portfolio["portfolio_return_net"].to_numpy()})
    market = pd.DataFrame({"month": months, "benchmark_return": portfolio["benchmark_return"].to_numpy(),
                           "equal_weight_return": portfolio["equal_weight_return"].to_numpy(),
                           "risk_free": portfolio["risk_free"].to_numpy()})
    market = market.drop_duplicates("month").sort_values("month", kind="stable")
    net, gross = metric_tables(doc)
    caveat = "" if min_oos_months is None else small_sample_caveat(out_of_sample_months(portfolio), min_oos_months)
    return PerformanceSection(returns=returns, market=market, metrics_net=net, metrics_gross=gross,
                              benchmark=benchmark, cost_bps=cost_bps, caveat=caveat)


def rank_ic_frame(forecasts: pd.DataFrame) -> pd.DataFrame:
    """:func:`job.metrics.rank_ic` per model, as (month = target month, model, ic) rows.

    Months where either side is constant across assets are left out (the correlation is undefined).
    """
    rows = forecasts[forecasts["realised"].notna()]
    out = [pd.DataFrame({"month": month_labels(ic.index), "model": str(model), "ic": ic.to_numpy(dtype=float)})
           for model, g in rows.groupby("model", sort=True)
           if len(ic := rank_ic(g.drop(columns="decision_month", errors="ignore")
                                 .rename(columns={"target_month": "decision_month"})))]
    return pd.concat(out, ignore_index=True) if out else pd.DataFrame(columns=["month", "model", "ic"])


def forecast_quality_section(forecasts: pd.DataFrame, baselines: pd.DataFrame | None,
                             doc: Mapping[str, Any]) -> ForecastQualitySection:
    """Section 3: MAE per model and asset (baselines as models), the IC series, and the IC summary of
    ``doc["forecast_quality"]["by_model"]`` (mean, t-statistic, months, share positive)."""
    quality = doc.get("forecast_quality") or {}
    by_asset = quality.get("mae_by_asset") or {}
    if by_asset:
        mae = pd.DataFrame([{"model": m, "asset": a, "mae": v} for m, assets in by_asset.items()
                            for a, v in assets.items()], columns=["model", "asset", "mae"])
    else:
        every = pd.concat([f for f in (forecasts, baselines) if f is not None], ignore_index=True)
        every = every[every["realised"].notna()]
        err = (every["predicted"] - every["realised"]).abs()
        mae = err.groupby([every["model"], every["asset"]], sort=False).mean().rename("mae").reset_index()
    for model, stats in (quality.get("by_model") or {}).items():
        if stats.get("mae") is not None:
            mae = pd.concat([mae, pd.DataFrame([{"model": model, "asset": "all", "mae": stats["mae"]}])],
                            ignore_index=True)
    summary = {m: {"mean": s.get("rank_ic_mean"), "t_stat": s.get("rank_ic_t"), "n": s.get("rank_ic_months"),
                   "share_positive": s.get("rank_ic_positive_share")}
               for m, s in (quality.get("by_model") or {}).items() if m not in BASELINES}
    return ForecastQualitySection(mae=mae, ic=rank_ic_frame(forecasts), ic_summary=summary)


def allocation_section(weights: pd.DataFrame, portfolio: pd.DataFrame) -> AllocationSection:
    """Section 4 from the backtest's ``weights`` (model, target_month, asset, weight, flag...) and
    ``portfolio`` (capital_deployed, turnover, levered_assets or the flags)."""
    w = pd.DataFrame({"model": weights["model"].astype(str).to_numpy(), "month": month_labels(weights["target_month"]),
                      "asset": weights["asset"].astype(str).to_numpy(), "weight": weights["weight"].to_numpy()})
    flagged = (weights.assign(flag=weights["flag"].astype(bool))
               .groupby(["model", "target_month"], sort=False)["flag"].sum().rename("n_flagged"))
    exp = portfolio.set_index(["model", "target_month"])[["capital_deployed", "turnover"]].join(flagged)
    exp = exp.reset_index()
    exposure = pd.DataFrame({"model": exp["model"].astype(str).to_numpy(), "month": month_labels(exp["target_month"]),
                             "capital": exp["capital_deployed"].to_numpy(),
                             "n_flagged": exp["n_flagged"].fillna(0).astype(int).to_numpy(),
                             "turnover": exp["turnover"].to_numpy()})
    return AllocationSection(weights=w, exposure=exposure)


def decision_section(weights: pd.DataFrame, forecasts: pd.DataFrame, *, target_month: Any, chosen_model: str,
                     sectors: Mapping[str, str], threshold: float | None = None,
                     factor: float | None = None) -> DecisionSection:
    """Section 1 from next month's ``weights`` (model, asset, weight, flag, multiplier) and ``forecasts``
    (model, asset, predicted); ``sectors`` maps tickers to sector names (the universe, in order)."""
    merged = weights.merge(forecasts[["model", "asset", "predicted"]], on=["model", "asset"], how="left")
    order = {a: i for i, a in enumerate(sectors)}
    models = {m: i for i, m in enumerate(dict.fromkeys(weights["model"]))}
    merged = merged.assign(_m=merged["model"].map(models), _o=merged["asset"].map(order).fillna(len(order)))
    merged = merged.sort_values(["_m", "_o"], kind="stable")
    alloc = pd.DataFrame({"model": merged["model"].astype(str).to_numpy(), "asset": merged["asset"].to_numpy(),
                          "sector": [sectors.get(a, a) for a in merged["asset"]],
                          "predicted_return": merged["predicted"].to_numpy(), "weight": merged["weight"].to_numpy(),
                          "flag": merged["flag"].astype(bool).to_numpy(),
                          "multiplier": merged["multiplier"].to_numpy()})
    capital = {m: float((g["weight"] * g["multiplier"]).sum()) for m, g in alloc.groupby("model", sort=False)}
    return DecisionSection(target_month=target_month, chosen_model=chosen_model, allocations=alloc,
                           capital=capital, threshold=threshold, factor=factor)


def lookahead_section(doc_point_in_time: Mapping[str, Any], doc_lag0: Mapping[str, Any], *,
                      publication_lag_months: int, portfolio_point_in_time: pd.DataFrame | None = None,
                      portfolio_lag0: pd.DataFrame | None = None) -> LookaheadSection:
    """Section 5 from the metrics documents of the point-in-time and the lag-0 backtests (net of
    costs), with the two portfolio frames for the chart when given."""
    pit, _ = metric_tables(doc_point_in_time)
    lag0, _ = metric_tables(doc_lag0)
    frames = []
    for name, port in (("point_in_time", portfolio_point_in_time), ("lag0", portfolio_lag0)):
        if port is not None:
            frames.append(pd.DataFrame({"month": month_labels(port["target_month"]), "model": port["model"].astype(str),
                                        "alignment": name, "net_return": port["portfolio_return_net"].to_numpy()}))
    returns = pd.concat(frames, ignore_index=True) if frames else None
    return LookaheadSection(point_in_time=pit, lag0=lag0, publication_lag_months=publication_lag_months,
                            returns=returns)


# ---- issue 15: verdict, scoreboard, execution lag, leverage, analytics ------------------------------------

ANALYTICS_SECTIONS = ("relative", "significance", "distribution", "drawdowns", "calendar_years", "deflated_sharpe",
                      "baselines")


def _with_columns(frame: pd.DataFrame, columns: Mapping[str, str]) -> pd.DataFrame:
    """``frame`` with every column of ``columns`` (a figure missing from an older document: NaN)."""
    for column in columns:
        if column not in frame:
            frame[column] = float("nan")
    return frame


def verdict_sentences(doc: Mapping[str, Any]) -> list[str]:
    """The verdict's sentences in order, from ``doc["verdict"]`` (``sentence_1``, ``sentence_2``...)."""
    section = doc.get("verdict") or {}
    keys = sorted((k for k in section if k.startswith("sentence_")), key=lambda k: int(k.split("_")[1]))
    return [str(section[k]) for k in keys if section[k]]


def scoreboard_section(doc: Mapping[str, Any]) -> ScoreboardSection | None:
    """The scoreboard (``doc["scoreboard"]``): one row per model and baseline, in MAE order."""
    board = doc.get("scoreboard") or {}
    if not board.get("models"):
        return None
    rows = [{"model": m, **(v.get("common") or {})} for m, v in board["models"].items()]
    table = _with_columns(pd.DataFrame(rows), SCOREBOARD_COLUMNS)
    if "mae_rank" in table:
        table = table.sort_values("mae_rank", kind="stable")
    window = board.get("window") or {}
    return ScoreboardSection(table=table, start=str(window.get("start", "")), end=str(window.get("end", "")),
                             months=int(window.get("months") or 0), assets=int(window.get("assets") or 0))


def execution_section(doc: Mapping[str, Any]) -> ExecutionSection | None:
    """Executed vs month-end trading (``doc["execution"]``), net of costs (gross for the references)."""
    section = doc.get("execution")
    if not section:
        return None
    rows = []
    for model, periods in (section.get("models") or {}).items():
        for timing in ("executed", "month_end"):
            figures = periods.get(f"{timing}_net") or periods.get(timing)
            if figures:
                rows.append({"model": model, "timing": timing, **figures})
    window = section.get("window") or {}
    return ExecutionSection(execution_lag_days=int(section.get("execution_lag_days") or 0),
                            assumption=str(section.get("assumption", "")),
                            table=_with_columns(pd.DataFrame(rows), EXECUTION_COLUMNS) if rows else None,
                            start=str(window.get("start", "")),
                            end=str(window.get("end", "")), months=int(window.get("months") or 0))


def leverage_section(doc: Mapping[str, Any]) -> LeverageSection | None:
    """Predicted returns against the leverage threshold (``doc["leverage"]``)."""
    section = doc.get("leverage")
    if not section:
        return None
    quantiles, triggers = [], []
    for model, entry in (section.get("models") or {}).items():
        quantiles.append({"model": model, **(entry.get("predicted") or {})})
        triggers += [{"model": model, "asset": a, "months": n} for a, n in (entry.get("triggers") or {}).items()]
    return LeverageSection(threshold=float(section["threshold"]), sentence=str(section.get("sentence", "")),
                           quantiles=_with_columns(pd.DataFrame(quantiles), LEVERAGE_COLUMNS) if quantiles else None,
                           triggers=pd.DataFrame(triggers) if triggers else None, factor=section.get("factor"))


def analytics_sections(doc: Mapping[str, Any]) -> dict[str, Any]:
    """The metrics-document sections the report shows as they are (:data:`ANALYTICS_SECTIONS`)."""
    return {k: doc[k] for k in ANALYTICS_SECTIONS if doc.get(k)}
