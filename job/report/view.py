"""The report's view model: every number, text, rule and colour of the HTML page, computed from ReportData.

:func:`build_view` turns a :class:`~job.report.data.ReportData` into plain, immutable values that the
jinja2 templates in ``job/report/templates`` only lay out: numbers are already formatted text
(:func:`fmt`), CSS classes already decided (the MAE colouring against the baselines, the chosen model's
row, failed validation suites), derived figures already computed (annualised turnover, the look-ahead
deltas, capital deployed), rows already in display order. Text is plain text, never HTML: the templates
escape every value (autoescape). The only values that are markup are the inline SVG charts, which
:func:`_chart` wraps in :class:`markupsafe.Markup` (see there why that is safe).
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Collection, Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import pandas as pd
from markupsafe import Markup

from job.analytics import ROLLING_MONTHS, monthly_returns_table, rolling_frame
from job.report import charts
from job.report.data import (
    BASELINES,
    BENCHMARK_KEY,
    EQUAL_WEIGHT_KEY,
    METRICS,
    PERIOD_LABELS,
    PERIODS,
    SECTIONS,
    SYNTHETIC_BANNER,
    WINDOW_KEYS,
    MetricTable,
    ReportData,
)
from job.scoreboard import BASELINE_NAMES

NBSP = "\u00a0"
MISSING = "–"  # what an absent or non-finite value shows

# ------------------------------------------------------------------------------------------ formatting


def finite(value: Any) -> float | None:
    """``value`` as a finite float, or None (None, bools, text, NaN and infinities)."""
    if isinstance(value, bool) or value is None:
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def fmt(value: Any, kind: str = "num") -> str:
    """A metric value as text: ``pct`` (fraction as %), ``num`` (2 decimals), ``num3``, ``x`` (multiple),
    ``int``, ``p`` (a p-value, 3 decimals), ``month`` (or any text, shown as it is); ``–`` when absent or not finite."""
    if kind == "month" or isinstance(value, str):
        return str(value) if value not in (None, "") else MISSING
    number = finite(value)
    if number is None:
        return MISSING
    if kind == "pct":
        return f"{number * 100:.2f}{NBSP}%"
    if kind == "x":
        return f"{number:.2f}x"
    if kind == "int":
        return f"{number:.0f}"
    if kind == "p":  # a p-value: three decimals, tiny ones as a bound
        return "< 0.001" if number < 0.001 else f"{number:.3f}"
    if abs(number) >= 1000:
        return f"{number:,.0f}"
    return f"{number:.3f}" if kind == "num3" else f"{number:.2f}"


def text_or_missing(value: str | None) -> str:
    return value if value else MISSING


def series_label(name: str, benchmark: str) -> str:
    """How a series is named on the page: models by name, the benchmark by ticker, equal weight in words."""
    return {BENCHMARK_KEY: f"{benchmark} (benchmark)", EQUAL_WEIGHT_KEY: "equal weight"}.get(name, name)


BASELINE_SERIES: tuple[str, ...] = tuple(dict.fromkeys((*BASELINES, *BASELINE_NAMES)))
"""The forecasters that are baselines (persistence, historical mean, momentum): marked wherever they appear."""


def is_baseline(name: str) -> bool:
    return name in BASELINE_SERIES


def series_name(name: str, benchmark: str, chosen: str = "") -> str:
    """:func:`series_label`, with ``(baseline)`` for a baseline and ``(chosen)`` for the chosen model."""
    label = series_label(name, benchmark)
    if is_baseline(name):
        label += " (baseline)"
    return label + (" (chosen)" if name == chosen else "")


def series_class(name: str, chosen: str) -> str:
    """A series' row class: the chosen model highlighted, baselines set apart."""
    return "chosen" if name == chosen else ("baseline" if is_baseline(name) else "")


def _chart(svg: str) -> Markup:
    """The one place where text becomes markup without escaping.

    Safe because ``svg`` comes from :mod:`job.report.charts`, which renders it with matplotlib's SVG
    backend: every label that came from the data (model, asset and sector names) is XML-escaped by
    matplotlib, the title attribute is escaped by :func:`charts.to_svg`, and the SVG carries no script,
    no link and no URL (prolog and namespaces are removed). ``""`` (nothing to draw) stays empty.
    """
    return Markup(svg)  # safe: see the docstring


# ---------------------------------------------------------------------------------------------- tables


@dataclass(frozen=True)
class Cell:
    """One table cell: plain ``text`` and how it is shown.

    ``cls``: the cell's CSS classes (``l`` left-aligned text column, ``good``/``bad`` verdicts);
    ``bold``/``code``: the text in ``<b>``/``<code>``; ``flag``: the text as a red leverage flag;
    ``bar_px``: a weight bar of that width (CSS pixels, formatted) before the text.
    """

    text: str
    cls: str = ""
    bold: bool = False
    code: bool = False
    flag: bool = False
    bar_px: str | None = None


@dataclass(frozen=True)
class Row:
    cells: tuple[Cell, ...]
    cls: str = ""


@dataclass(frozen=True)
class Table:
    headers: tuple[Cell, ...]
    rows: tuple[Row, ...]


def table(headers: Sequence[str], rows: Iterable[Sequence[Cell | str]], *, left: int | Collection[int] = 1,
          row_classes: Sequence[str] | None = None, cell_classes: Sequence[Sequence[str]] | None = None) -> Table:
    """A table view: text columns (the first ``left`` columns, or the positions in ``left``) left-aligned,
    optional per-row and per-cell CSS classes."""
    lefts = set(range(left)) if isinstance(left, int) else set(left)

    def classes(i: int, extra: str) -> str:
        return " ".join(c for c in ("l" if i in lefts else "", extra) if c)

    out = []
    for r, row in enumerate(rows):
        cells = tuple(replace(c if isinstance(c, Cell) else Cell(c),
                              cls=classes(i, cell_classes[r][i] if cell_classes else ""))
                      for i, c in enumerate(row))
        out.append(Row(cells, row_classes[r] if row_classes else ""))
    return Table(tuple(Cell(h, classes(i, "")) for i, h in enumerate(headers)), tuple(out))


def _chosen_rows(names: Sequence[str], chosen: str) -> list[str]:
    """The row class of each name: the chosen model's row is highlighted."""
    return ["chosen" if n == chosen else "" for n in names]


# -------------------------------------------------------------------------------------- the decision


@dataclass(frozen=True)
class DecisionView:
    target_month: str
    as_of: str
    chosen: str
    chosen_missing: bool
    weights: Table
    capital: Table
    note: str
    verdict: tuple[str, ...] = ()  # the computed verdict, shown first ((): none in this run)


def decision_view(data: ReportData) -> DecisionView:
    d = data.decision
    alloc, chosen, models = d.allocations, d.chosen_model, d.models
    rows_chosen = alloc[alloc["model"] == chosen]
    chosen_missing = rows_chosen.empty
    if chosen_missing:  # show the first model's weights instead
        rows_chosen = alloc[alloc["model"] == models[0]] if models else alloc
    others = [m for m in models if m != chosen]
    weight_of = alloc.set_index(["model", "asset"])["weight"]
    max_w = max(float(rows_chosen["weight"].max()), 1e-12) if not rows_chosen.empty else 1.0
    rows: list[list[Cell | str]] = []
    for rec in rows_chosen.itertuples(index=False):
        flag = Cell(f"yes, x{rec.multiplier:g}", flag=True) if rec.flag else MISSING
        bar = f"{60 * max(rec.weight, 0.0) / max_w:.1f}"
        rows.append([rec.asset, rec.sector, fmt(rec.predicted_return, "pct"), flag,
                     Cell(fmt(rec.weight, "pct"), bar_px=bar),
                     *(fmt(weight_of.get((m, rec.asset)), "pct") for m in others)])
    if not rows_chosen.empty:
        rows.append([Cell("Total", bold=True), "", "", "", Cell(fmt(rows_chosen["weight"].sum(), "pct"), bold=True),
                     *(fmt(alloc.loc[alloc["model"] == m, "weight"].sum(), "pct") for m in others)])
    weights = table(["Asset", "Sector", "Predicted return", "Leverage flag", f"Weight ({chosen})", *others],
                    rows, left=2)
    capital = table(["Model", "Capital deployed", "Flagged assets"],
                    [[m, fmt(d.capital.get(m), "x"), str(int(alloc.loc[alloc["model"] == m, "flag"].sum()))]
                     for m in models], row_classes=_chosen_rows(models, chosen))
    rule = []
    if d.threshold is not None:
        rule.append(f"leverage flag when the predicted return exceeds {fmt(d.threshold, 'pct')}")
    if d.factor is not None:
        rule.append(f"multiplier x{d.factor:g} on flagged assets")
    note = ("Capital deployed = sum of weight x multiplier; 1.00x means no asset is flagged"
            + ("; " + "; ".join(rule) if rule else "") + ".")
    return DecisionView(d.target_month, data.as_of, chosen, chosen_missing, weights, capital, note,
                        verdict=tuple(s for s in data.verdict if s))


# ------------------------------------------------------------------------------------------ performance


@dataclass(frozen=True)
class Kpi:
    label: str
    value: str
    detail: str


@dataclass(frozen=True)
class PeriodView:
    """One period's metrics: the heading, the net table and, when models carry costs, the gross one
    (``None``: the period has no metrics to show, so the page says so)."""

    heading: str
    net: Table | None
    has_gross: bool
    gross: Table | None


@dataclass(frozen=True)
class PerformanceView:
    has_returns: bool
    first_month: str
    last_month: str
    n_months: int
    cost_bps: str | None
    benchmark: str
    kpis: tuple[Kpi, ...]
    growth_chart: Markup
    drawdown_chart: Markup
    periods: tuple[PeriodView, ...]
    # issue 14/15: each block is absent (''/None) when the data lacks it
    caveat: str = ""
    execution_assumption: str = ""
    execution_heading: str = ""
    execution: Table | None = None
    relative: Table | None = None
    distribution: Table | None = None
    drawdowns_heading: str = ""
    drawdowns: Table | None = None
    calendar: Table | None = None
    heatmap_heading: str = ""
    heatmap: Table | None = None
    rolling_heading: str = ""
    rolling_chart: Markup = field(default_factory=Markup)
    rolling_note: str = ""
    deflated: Table | None = None


def metric_keys(tables: Iterable[MetricTable]) -> list[tuple[str, str, str]]:
    """(key, label, format) of the rows to show: known metrics present in any table, then unknown keys."""
    tables = list(tables)
    seen = {m.key for m in METRICS} | set(WINDOW_KEYS)
    present: set[str] = set()
    extra: list[tuple[str, str, str]] = []
    for tbl in tables:
        for periods in tbl.values():
            for metrics in periods.values():
                present.update(metrics)
                for key in metrics:
                    if key not in seen:
                        seen.add(key)
                        extra.append((key, key.replace("_", " "), "num3"))
    return [(m.key, m.label, m.fmt) for m in METRICS if m.key in present] + extra


def period_window(tbl: MetricTable, chosen: str, period: str) -> str:
    """``: YYYY-MM to YYYY-MM, n months`` of a period, from the chosen model's (or any) metrics."""
    for name in [chosen, *tbl]:
        m = tbl.get(name, {}).get(period, {})
        if m.get("start") and m.get("end"):
            months = f", {int(m['months'])} months" if finite(m.get("months")) is not None else ""
            return f": {m['start']} to {m['end']}{months}"
    return ""


def metrics_table(tbl: MetricTable, period: str, order: list[str], chosen: str, benchmark: str,
                  keys: list[tuple[str, str, str]]) -> Table | None:
    """Rows = metrics, columns = models then benchmark and equal weight, for one period (None: nothing)."""
    names = [n for n in order if n in tbl] + [n for n in tbl if n not in order]
    if not names or not keys:
        return None
    headers = ["Metric"] + [series_name(n, benchmark, chosen) for n in names]
    return table(headers, [[label] + [fmt(tbl[n].get(period, {}).get(key), kind) for n in names]
                           for key, label, kind in keys])


def table_periods(*tables: MetricTable) -> list[str]:
    """The periods any of ``tables`` has: the known ones in order, then unknown ones sorted."""
    present = {pr for t in tables for v in t.values() for pr in v}
    return [pr for pr in PERIODS if pr in present] + sorted(present - set(PERIODS))


def performance_view(data: ReportData) -> PerformanceView:
    p = data.performance
    chosen, models = data.decision.chosen_model, data.models
    months = sorted(p.returns["month"].unique())
    kpis = []
    for name in (chosen, BENCHMARK_KEY, EQUAL_WEIGHT_KEY):
        full = p.metrics_net.get(name, {}).get("full", {})
        if full:
            kpis.append(Kpi(series_label(name, p.benchmark), fmt(full.get("cagr"), "pct"),
                            f"CAGR · Sharpe {fmt(full.get('sharpe'))} · max DD {fmt(full.get('max_drawdown'), 'pct')}"))
    order = [*models, *(b for b in BASELINE_SERIES if b not in models), BENCHMARK_KEY, EQUAL_WEIGHT_KEY]
    keys = metric_keys([p.metrics_net, p.metrics_gross])
    # The benchmark and equal weight carry no costs: the before-costs table shows the models only.
    gross = {k: v for k, v in p.metrics_gross.items() if k not in (BENCHMARK_KEY, EQUAL_WEIGHT_KEY)}
    periods = tuple(
        PeriodView(PERIOD_LABELS.get(period, period) + period_window(p.metrics_net, chosen, period),
                   metrics_table(p.metrics_net, period, order, chosen, p.benchmark, keys), bool(gross),
                   metrics_table(gross, period, order, chosen, p.benchmark, keys) if gross else None)
        for period in table_periods(p.metrics_net, p.metrics_gross))
    has_returns = not p.returns.empty
    return PerformanceView(
        has_returns=has_returns, first_month=str(months[0]) if months else "",
        last_month=str(months[-1]) if months else "", n_months=len(months),
        cost_bps=f"{p.cost_bps:g}" if p.cost_bps is not None else None, benchmark=p.benchmark, kpis=tuple(kpis),
        growth_chart=_chart(charts.growth_chart(p.returns, p.market, models, chosen, p.benchmark)
                            if has_returns else ""),
        drawdown_chart=_chart(charts.drawdown_chart(p.returns, p.market, models, chosen, p.benchmark)
                              if has_returns else ""),
        periods=periods, caveat=p.caveat, **_execution_view(data), **_analytics_view(data), **_calendar_view(data))


def _ordered_series(data: ReportData, names: Iterable[str]) -> list[str]:
    """``names`` in report order: models, then baselines, then anything else, the benchmark and equal weight last."""
    names = list(dict.fromkeys(names))
    known = [m for m in data.models if m in names and not is_baseline(m)]
    known += [b for b in BASELINE_SERIES if b in names and b not in known]
    known += [n for n in names if n not in known and n not in (BENCHMARK_KEY, EQUAL_WEIGHT_KEY)]
    return known + [n for n in (BENCHMARK_KEY, EQUAL_WEIGHT_KEY) if n in names]


def _delta(a: Any, b: Any) -> float | None:
    va, vb = finite(a), finite(b)
    return None if va is None or vb is None else va - vb


EXECUTION_METRICS: tuple[tuple[str, str, str], ...] = (
    ("cagr", "CAGR", "pct"), ("sharpe", "Sharpe", "num"), ("annual_volatility", "Volatility", "pct"),
    ("max_drawdown", "Max DD", "pct"))


def _execution_view(data: ReportData) -> dict[str, Any]:
    """The execution assumption and the executed vs month-end table (series x metric, with the difference)."""
    e = data.execution
    if e is None:
        return {}
    out: dict[str, Any] = {"execution_assumption": e.assumption}
    t = e.table
    if t is None or t.empty:
        return out
    chosen, benchmark = data.decision.chosen_model, data.performance.benchmark
    names = _ordered_series(data, t["model"])
    by = {(r["model"], r["timing"]): r for r in t.to_dict("records")}
    headers = ["Series"] + [h for _, label, _ in EXECUTION_METRICS
                            for h in (f"{label}, executed", f"{label}, month-end close", f"Δ {label}")]
    rows = []
    for name in names:
        exe, end = by.get((name, "executed"), {}), by.get((name, "month_end"), {})
        row: list[Cell | str] = [series_name(name, benchmark, chosen)]
        for key, _, kind in EXECUTION_METRICS:
            row += [fmt(exe.get(key), kind), fmt(end.get(key), kind), fmt(_delta(exe.get(key), end.get(key)), kind)]
        rows.append(row)
    window = f": {e.start} to {e.end}, {e.months} months" if e.start and e.end else ""
    out["execution_heading"] = f"Traded on the execution day vs at the month-end close{window}"
    out["execution"] = table(headers, rows, row_classes=[series_class(n, chosen) for n in names])
    return out


RELATIVE_METRICS: tuple[tuple[str, str, str], ...] = (
    ("active_return", "Active return (annual)", "pct"), ("tracking_error", "Tracking error", "pct"),
    ("information_ratio", "Information ratio", "num"), ("alpha", "Alpha (annual)", "pct"),
    ("alpha_t", "t(alpha)", "num"), ("beta", "Beta", "num"), ("beta_t", "t(beta)", "num"),
    ("up_capture", "Up capture", "pct"), ("down_capture", "Down capture", "pct"),
    ("correlation", "Correlation", "num"), ("sharpe_difference", "Sharpe difference", "num"),
    ("sharpe_difference_p", "p (Ledoit-Wolf)", "p"))
DISTRIBUTION_METRICS: tuple[tuple[str, str, str], ...] = (
    ("best_month", "Best month", "pct"), ("worst_month", "Worst month", "pct"), ("skew", "Skew", "num"),
    ("excess_kurtosis", "Excess kurtosis", "num"), ("var_95", "VaR 95 %", "pct"), ("cvar_95", "CVaR 95 %", "pct"))


def _analytics_models(analytics: dict[str, Any], section: str) -> dict[str, Any]:
    """``{name: {period: {...}}}`` of one analytics section, the baselines' own section merged in."""
    own = dict((analytics.get(section) or {}).get("models") or {})
    base = ((analytics.get("baselines") or {}).get(section) or {}).get("models") or {}
    return {**own, **{k: v for k, v in base.items() if k not in own}}


def _full(periods: Any) -> dict[str, Any]:
    """The full span's figures, net of costs where the series has costs (the references have none)."""
    if not isinstance(periods, dict):
        return {}
    return periods.get("full_net") or periods.get("full") or {}


def _drawdown_rows(episodes: Any) -> list[dict[str, Any]]:
    if isinstance(episodes, list):
        return [e for e in episodes if isinstance(e, dict)]
    if isinstance(episodes, dict):
        return [episodes[k] for k in sorted(episodes, key=lambda k: int(k) if str(k).isdigit() else 0)
                if isinstance(episodes[k], dict)]
    return []


def _analytics_view(data: ReportData) -> dict[str, Any]:
    """Relative-to-benchmark and distribution tables, the chosen model's five worst drawdowns (beside the
    benchmark's) and the sweep's deflated Sharpe, from ``data.analytics`` (full span, net of costs)."""
    a = data.analytics
    if not a:
        return {}
    chosen, benchmark = data.decision.chosen_model, data.performance.benchmark
    out: dict[str, Any] = {}
    relative = _analytics_models(a, "relative")
    if relative:
        names = _ordered_series(data, relative)
        rows = [[series_name(n, benchmark, chosen)]
                + [fmt(_full(relative[n]).get(f"{key}_vs_{BENCHMARK_KEY}"), kind) for key, _, kind in RELATIVE_METRICS]
                for n in names]
        out["relative"] = table(["Series"] + [label for _, label, _ in RELATIVE_METRICS], rows,
                                row_classes=[series_class(n, chosen) for n in names])
    distribution = _analytics_models(a, "distribution")
    if distribution:
        names = _ordered_series(data, distribution)
        rows = [[series_name(n, benchmark, chosen)]
                + [fmt(_full(distribution[n]).get(key), kind) for key, _, kind in DISTRIBUTION_METRICS] for n in names]
        out["distribution"] = table(["Series"] + [label for _, label, _ in DISTRIBUTION_METRICS], rows,
                                    row_classes=[series_class(n, chosen) for n in names])
    episodes = _analytics_models(a, "drawdowns")
    shown = [n for n in (chosen, BENCHMARK_KEY) if _drawdown_rows(_full(episodes.get(n)))]
    if shown:
        rows, classes = [], []
        for n in shown:
            for i, ep in enumerate(_drawdown_rows(_full(episodes[n])), start=1):
                recovery = ep.get("recovery") or ("not yet" if ep.get("recovered") is not True else MISSING)
                rows.append([series_name(n, benchmark), str(i), fmt(ep.get("depth"), "pct"),
                             fmt(ep.get("peak"), "month"), fmt(ep.get("trough"), "month"), str(recovery),
                             fmt(ep.get("months_to_trough"), "int"), fmt(ep.get("length_months"), "int")])
                classes.append(series_class(n, chosen))
        out["drawdowns_heading"] = "Five worst drawdowns, full span" + (", net of costs" if chosen in shown else "")
        out["drawdowns"] = table(["Series", "Rank", "Depth", "Start (peak)", "Trough", "Recovered",
                                  "Months to trough", "Length (months)"], rows, row_classes=classes)
    deflated = ((a.get("deflated_sharpe") or {}).get("by_model")) or {}
    if deflated:
        names = [n for n in deflated if n != "all_models"] + [n for n in deflated if n == "all_models"]
        rows = []
        for n in names:
            d = deflated[n] or {}
            combo = (f"threshold {fmt(d.get('threshold'), 'pct')}, factor {fmt(d.get('factor'))}, "
                     f"shrinkage {fmt(d.get('shrinkage'))}")
            rows.append(["every model" if n == "all_models" else n, str(d.get("best_model") or n), combo,
                         fmt(d.get("sharpe")), fmt(d.get("expected_max_sharpe")), fmt(d.get("n_trials"), "int"),
                         fmt(d.get("months"), "int"), fmt(d.get("dsr"), "pct")])
        out["deflated"] = table(["Trials of", "Best model", "Best combination", "Sharpe (best, net)",
                                 "Expected max Sharpe (no skill)", "Trials", "Months", "Deflated Sharpe"],
                                rows, left=3)
    return out


CALENDAR_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
HEAT_STEP = 0.02  # one shade per 2 % of monthly return
HEAT_LEVELS = 4


def heat_class(value: float | None, step: float = HEAT_STEP) -> str:
    """The heatmap colour class of a monthly return: ``hp1``..``hp4`` (gains), ``hn1``..``hn4`` (losses),
    ``h0`` within half a step of zero, ``""`` without a value."""
    if value is None:
        return ""
    level = min(round(abs(value) / step), HEAT_LEVELS)
    return "h0" if level == 0 else ("hp" if value > 0 else "hn") + str(level)


def _calendar_view(data: ReportData) -> dict[str, Any]:
    """Calendar-year returns beside the benchmark, the chosen model's monthly-returns heatmap and its
    rolling Sharpe and beta (all from the booked returns, net of costs)."""
    p = data.performance
    chosen = data.decision.chosen_model
    model = chosen if (p.returns["model"] == chosen).any() else None
    if model is None:
        return {}
    rows_m = p.returns[p.returns["model"] == model].sort_values("month", kind="stable")
    months = pd.PeriodIndex(rows_m["month"], freq="M")
    net = pd.Series(rows_m["net_return"].to_numpy(dtype=np.float64), index=months)
    market = p.market.set_index(pd.PeriodIndex(p.market["month"], freq="M"))
    bench = market["benchmark_return"].reindex(months)
    out: dict[str, Any] = {}
    heat = monthly_returns_table(net)
    rows, classes = [], []
    for year, values in heat.iterrows():
        cells = [finite(values.get(m)) for m in range(1, 13)]
        rows.append([str(year), *(fmt(v, "pct") for v in cells), fmt(values.get("year"), "pct")])
        classes.append(["", *(heat_class(v) for v in cells), ""])
    out["heatmap_heading"] = f"Monthly returns: {model}, net of costs"
    out["heatmap"] = table(["Year", *CALENDAR_MONTHS, "Full year"], rows, cell_classes=classes)
    if not p.returns.empty:
        years = pd.PeriodIndex(p.returns["month"], freq="M").year
        growth = (1.0 + p.returns["net_return"]).groupby([p.returns["model"], years]).prod() - 1.0
        mkt_years = months.year
        ref = {name: ((1.0 + market[col].reindex(months)).groupby(mkt_years).prod() - 1.0)
               for name, col in ((BENCHMARK_KEY, "benchmark_return"), (EQUAL_WEIGHT_KEY, "equal_weight_return"))}
        counts = pd.Series(1, index=months).groupby(mkt_years).sum()
        others = [m for m in data.models if m != model]
        rows, classes = [], []
        for year in sorted(set(mkt_years)):
            own = finite(growth.get((model, year)))
            active = _delta(own, ref[BENCHMARK_KEY].get(year))
            rows.append([str(year), str(int(counts.get(year, 0))), fmt(own, "pct"),
                         fmt(ref[BENCHMARK_KEY].get(year), "pct"), fmt(active, "pct"),
                         fmt(ref[EQUAL_WEIGHT_KEY].get(year), "pct"),
                         *(fmt(growth.get((m, year)), "pct") for m in others)])
            verdict = "" if active is None else ("good" if active > 0 else "bad")
            classes.append(["", "", "", "", verdict, "", *([""] * len(others))])
        benchmark = p.benchmark
        out["calendar"] = table(["Year", "Months", series_name(model, benchmark, chosen), benchmark,
                                 f"{model} − {benchmark}", "equal weight",
                                 *(series_name(m, benchmark) for m in others)], rows, cell_classes=classes)
    rate = market["risk_free"].reindex(months).fillna(0.0)
    out["rolling_heading"] = f"Rolling {ROLLING_MONTHS}-month Sharpe and beta: {model}, net of costs"
    if len(net) >= ROLLING_MONTHS:
        frame = rolling_frame(net, bench, rate)
        frame["benchmark_sharpe"] = rolling_frame(bench, bench, rate)["sharpe"]
        out["rolling_chart"] = _chart(charts.rolling_chart(frame, model, p.benchmark, ROLLING_MONTHS))
    else:
        out["rolling_note"] = (f"Only {len(net)} months of returns: a rolling {ROLLING_MONTHS}-month window "
                               "needs at least that many.")
    return out


# -------------------------------------------------------------------------------------- forecast quality


@dataclass(frozen=True)
class ForecastQualityView:
    mae: Table | None
    ic: Table | None
    ic_chart: Markup
    scoreboard_heading: str = ""  # set: the scoreboard replaces the per-model MAE and IC tables
    scoreboard: Table | None = None
    scoreboard_note: str = ""


def mae_verdict(mae: float | None, baselines: Sequence[float]) -> str:
    """The colour of a model's MAE cell: ``good`` (green) where it beats every baseline (lower than the
    best), ``bad`` (red) where it beats none (at least the worst), ``""`` in between or without data."""
    if mae is None or not baselines:
        return ""
    if mae < min(baselines):
        return "good"
    return "bad" if mae >= max(baselines) else ""


def mae_table(data: ReportData) -> Table | None:
    """MAE per asset (rows in the data's asset order, then all assets), models then baselines."""
    mae = data.forecast_quality.mae
    if mae.empty:
        return None
    wide = mae.pivot_table(index="asset", columns="model", values="mae", sort=False)
    cols = [m for m in data.models if m in wide] + [m for m in wide.columns
                                                    if m not in data.models and m not in BASELINES]
    base = [b for b in BASELINES if b in wide]
    assets = [a for a in dict.fromkeys(mae["asset"]) if str(a).lower() != "all"]
    # The overall row: the given "all" row, else the mean over assets.
    overall = wide.loc["all"] if "all" in wide.index else wide.reindex(assets).mean(axis=0)
    rows, classes = [], []
    for label, values in [*((a, wide.loc[a]) for a in assets), ("All assets", overall)]:
        baselines = [v for v in (finite(values.get(b)) for b in base) if v is not None]
        model_values = [finite(values.get(m)) for m in cols]
        rows.append([str(label), *(fmt(v, "pct") for v in model_values), *(fmt(values.get(b), "pct") for b in base)])
        classes.append(["", *(mae_verdict(v, baselines) for v in model_values), *([""] * len(base))])
    return table(["Asset", *cols, *[f"{b} (baseline)" for b in base]], rows, cell_classes=classes,
                 row_classes=[""] * (len(rows) - 1) + ["chosen"])


def _significant(ratio: float | None, p: float | None, alpha: float = 0.05) -> str:
    """The colour of an MAE ratio against a baseline: ``good`` below 1 and significant (Diebold-Mariano
    p < alpha), ``bad`` above 1 and significant, ``""`` otherwise (no difference shown as a verdict)."""
    if ratio is None or p is None or p >= alpha:
        return ""
    return "good" if ratio < 1 else ("bad" if ratio > 1 else "")


def scoreboard_view(data: ReportData) -> dict[str, Any]:
    """The one scoreboard: every model and baseline on the same rows (MAE order), with the window it
    covers in the heading; baselines marked. ``{}`` when the data has none."""
    board = data.scoreboard
    if board is None or board.table.empty:
        return {}
    chosen = data.decision.chosen_model
    t = board.table
    names = [str(m) for m in t["model"]]
    bases = [b for b in BASELINE_SERIES if b in names]
    headers = ["Model", "MAE", "Mean rank IC", "Newey-West t", "p", "Sign hit rate", "Rank hit rate",
               *(f"MAE / {b} (DM p)" for b in bases)]
    rows, classes = [], []
    for rec in t.to_dict("records"):
        name = str(rec["model"])
        baseline = rec.get("kind") == "baseline" or is_baseline(name)
        row: list[Cell | str] = [name + (" (baseline)" if baseline else "") + (" (chosen)" if name == chosen else ""),
                                 fmt(rec.get("mae"), "pct"), fmt(rec.get("rank_ic_mean"), "num3"),
                                 fmt(rec.get("rank_ic_t_newey_west")), fmt(rec.get("rank_ic_p_newey_west"), "p"),
                                 fmt(rec.get("sign_hit_rate"), "pct"), fmt(rec.get("rank_hit_rate"), "pct")]
        cls = [""] * len(row)
        for b in bases:
            col = b.replace("-", "_")
            ratio, p = finite(rec.get(f"mae_ratio_vs_{col}")), finite(rec.get(f"mae_dm_p_vs_{col}"))
            row.append(MISSING if ratio is None else f"{fmt(ratio, 'num3')} (p {fmt(p, 'p')})")
            cls.append(_significant(ratio, p))
        rows.append(row)
        classes.append(cls)
    lags = sorted({int(v) for v in t.get("rank_ic_newey_west_lag", pd.Series(dtype=float)) if finite(v) is not None})
    lag = f"lag {lags[0]}" if len(lags) == 1 else ("lags " + ", ".join(map(str, lags)) if lags else "")
    span = f" ({board.start} to {board.end})" if board.start and board.end else ""
    heading = (f"Scoreboard: {len(names)} models and baselines on the same {board.months} months{span}, "
               f"{board.assets} assets")
    note = ("Every row is scored on the same (month, asset) pairs: those every model and baseline forecast with a "
            "known return. MAE: mean absolute error of the monthly return; rank IC: Spearman correlation across "
            f"assets each month, its mean with a Newey-West t{' (' + lag + ')' if lag else ''} and two-sided p; "
            "sign hit rate: share of forecasts with the right sign; rank hit rate: share put in the right half of "
            "the cross-section (0.5 is no skill); MAE / baseline below 1 beats that baseline, with the "
            "Diebold-Mariano p of equal MAE (green or red only where p < 0.05).")
    return {"scoreboard_heading": heading, "scoreboard_note": note,
            "scoreboard": table(headers, rows, cell_classes=classes,
                                row_classes=[series_class(n, chosen) for n in names])}


def forecast_quality_view(data: ReportData) -> ForecastQualityView:
    f = data.forecast_quality
    chosen = data.decision.chosen_model
    stats = f.ic_stats()
    board = scoreboard_view(data)
    if board:  # the scoreboard replaces the per-model tables, which may stand on different rows
        chart = _chart(charts.ic_chart(f.ic, data.models, chosen) if stats else "")
        return ForecastQualityView(None, None, chart, **board)
    ic = None
    if stats:
        order = [m for m in data.models if m in stats] + [m for m in stats if m not in data.models]
        ic = table(["Model", "Mean IC", "t-statistic", "Months with IC > 0", "Months"],
                   [[m, fmt(stats[m].get("mean"), "num3"), fmt(stats[m].get("t_stat")),
                     fmt(stats[m].get("share_positive"), "pct"), fmt(stats[m].get("n"), "int")] for m in order],
                   row_classes=_chosen_rows(order, chosen))
    return ForecastQualityView(mae_table(data), ic, _chart(charts.ic_chart(f.ic, data.models, chosen) if stats else ""))


# ------------------------------------------------------------------------------------------- allocation


@dataclass(frozen=True)
class AllocationView:
    weights_model: str | None  # None: no weight history
    weights_chart: Markup
    exposure: Table | None
    capital_chart: Markup
    leverage_sentence: str = ""  # the leverage rule against the predictions ('' and None: not in this run)
    leverage_quantiles: Table | None = None
    leverage_triggers: Table | None = None


def annualised_turnover(monthly: pd.Series) -> float:
    """Twelve times the average monthly turnover (sum of |w(t) - w(t-1)| over assets)."""
    return float(monthly.sum()) / max(len(monthly), 1) * 12


def leverage_view(data: ReportData) -> dict[str, Any]:
    """The leverage rule made visible: its sentence, the predicted returns' quantiles against the threshold
    per model and baseline, and which assets triggered how often (only when any did)."""
    lev = data.leverage
    if lev is None:
        return {}
    chosen = data.decision.chosen_model
    out: dict[str, Any] = {"leverage_sentence": lev.sentence}
    q = lev.quantiles
    if q is not None and not q.empty:
        names = _ordered_series(data, q["model"])
        by = {r["model"]: r for r in q.to_dict("records")}
        threshold = fmt(lev.threshold, "pct")
        rows = [[series_name(n, data.performance.benchmark, chosen), fmt(by[n].get("min"), "pct"),
                 fmt(by[n].get("p05"), "pct"), fmt(by[n].get("p50"), "pct"), fmt(by[n].get("p95"), "pct"),
                 fmt(by[n].get("max"), "pct"), threshold, fmt(by[n].get("share_flagged"), "pct"),
                 f"{fmt(by[n].get('months_flagged'), 'int')} of {fmt(by[n].get('months'), 'int')}"]
                for n in names]
        out["leverage_quantiles"] = table(
            ["Model", "Lowest", "5th percentile", "Median", "95th percentile", "Highest", "Threshold",
             "Asset-months over it", "Months with a flag"], rows,
            row_classes=[series_class(n, chosen) for n in names])
    trig = lev.triggers
    if trig is not None and not trig.empty:
        names = _ordered_series(data, trig["model"])
        rows, classes = [], []
        for n in names:
            for rec in trig[trig["model"] == n].to_dict("records"):
                rows.append([series_name(n, data.performance.benchmark, chosen), str(rec["asset"]),
                             fmt(rec["months"], "int")])
                classes.append(series_class(n, chosen))
        out["leverage_triggers"] = table(["Model", "Asset", "Months flagged"], rows, left=2, row_classes=classes)
    return out


def allocation_view(data: ReportData) -> AllocationView:
    a = data.allocation
    chosen = data.decision.chosen_model
    sectors = dict(zip(data.decision.allocations["asset"], data.decision.allocations["sector"], strict=True))
    if a.weights.empty:
        model, weights_chart = None, _chart("")
    else:  # the chosen model's history, else the first model's
        model = chosen if (a.weights["model"] == chosen).any() else str(a.weights["model"].iloc[0])
        weights_chart = _chart(charts.weights_chart(a.weights, model, sectors))
    leverage = leverage_view(data)
    if a.exposure.empty:
        return AllocationView(model, weights_chart, None, _chart(""), **leverage)
    rows, names = [], []
    for name, g in a.exposure.groupby("model", sort=False):
        names.append(str(name))
        rows.append([str(name), fmt(float((g["n_flagged"] > 0).mean()), "pct"), fmt(g["n_flagged"].mean()),
                     fmt(g["capital"].mean(), "x"), fmt(g["capital"].max(), "x"), fmt(g["turnover"].mean(), "pct"),
                     fmt(annualised_turnover(g["turnover"]), "pct")])
    exposure = table(["Model", "Months with a flag", "Flagged assets per month", "Average capital",
                      "Maximum capital", "Average monthly turnover", "Annualised turnover"], rows,
                     row_classes=_chosen_rows(names, chosen))
    return AllocationView(model, weights_chart, exposure, _chart(charts.capital_chart(a.exposure, data.models, chosen)),
                          **leverage)


# ------------------------------------------------------------------------------------------- look-ahead


@dataclass(frozen=True)
class LookaheadView:
    not_run_reason: str | None  # set: the lag-0 backtest was not run, and why
    lag: str
    periods: tuple[tuple[str, Table], ...]
    chart: Markup


LOOKAHEAD_METRICS: tuple[tuple[str, str, str], ...] = (
    ("cagr", "CAGR", "pct"), ("sharpe", "Sharpe", "num"), ("max_drawdown", "Max DD", "pct"))


def lookahead_view(data: ReportData) -> LookaheadView:
    look = data.lookahead
    chosen = data.decision.chosen_model
    if look is None:
        return LookaheadView(data.lookahead_not_run_reason, "", (), _chart(""))
    n = look.publication_lag_months
    pit, lag0 = look.point_in_time, look.lag0
    # only the series the audit ran with lag 0 (the point-in-time document also holds the rest, which would
    # show as rows of dashes)
    names = [m for m in [*data.models, BENCHMARK_KEY, EQUAL_WEIGHT_KEY] if m in lag0]
    names += [m for m in lag0 if m not in names]
    headers = ["Series"] + [h for _, label, _ in LOOKAHEAD_METRICS
                            for h in (f"{label}, point in time", f"{label}, lag 0", f"Δ {label}")]
    periods = []
    for period in [pr for pr in PERIODS if any(pr in v for t in (pit, lag0) for v in t.values())]:
        rows = []
        for name in names:
            a, b = pit.get(name, {}).get(period, {}), lag0.get(name, {}).get(period, {})
            row = [series_label(name, data.performance.benchmark)]
            for key, _, kind in LOOKAHEAD_METRICS:
                va, vb = finite(a.get(key)), finite(b.get(key))  # the leak's worth: lag 0 minus point in time
                row += [fmt(va, kind), fmt(vb, kind), fmt(None if va is None or vb is None else vb - va, kind)]
            rows.append(row)
        periods.append((f"{PERIOD_LABELS.get(period, period)}, net of costs",
                        table(headers, rows, row_classes=_chosen_rows(names, chosen))))
    chart = charts.lookahead_chart(look.returns, chosen) if look.returns is not None and not look.returns.empty else ""
    return LookaheadView(None, f"lag {n} month{'s' if n != 1 else ''}", tuple(periods), _chart(chart))


# ----------------------------------------------------------------------------------------- data quality


@dataclass(frozen=True)
class DataQualityView:
    synthetic: bool
    source: str
    passed: bool
    suites: Table | None
    sources: Table | None
    assets: Table | None = None  # each asset's first month (None: not in this run)


def data_quality_view(data: ReportData) -> DataQualityView:
    q = data.data_quality
    suites = table(["Suite", "Checks", "Failed", "Warnings", "Worst example"],
                   [[s.name, str(s.checks), str(s.failed), str(s.warnings), text_or_missing(s.worst)]
                    for s in q.suites],
                   cell_classes=[["", "", "bad" if s.failed else "", "", ""] for s in q.suites],
                   left={0, 4}) if q.suites else None
    sources = table(["Source", "Kind", "First", "Last", "Vintage", "Rows", "Note"],
                    [[s.name, s.kind, text_or_missing(s.first), text_or_missing(s.last), text_or_missing(s.vintage),
                      fmt(s.rows, "int") if s.rows is not None else MISSING, s.note] for s in q.sources],
                    left={0, 1, 4, 6}) if q.sources else None
    assets = None
    if q.asset_first_months:
        sectors = dict(zip(data.decision.allocations["asset"], data.decision.allocations["sector"], strict=True))
        assets = table(["Asset", "Sector", "First month with a return", "First month held"],
                       [[a, sectors.get(a, ""), fmt(first, "month"),
                         fmt(q.asset_first_held_months.get(a), "month") if q.asset_first_held_months else MISSING]
                        for a, first in q.asset_first_months.items()], left=2)
    return DataQualityView(q.synthetic, q.source, q.passed, suites, sources, assets)


# ------------------------------------------------------------------------------------------- provenance


@dataclass(frozen=True)
class ProvenanceView:
    items: Table
    models: Table | None
    libraries: Table | None
    timings: Table | None
    secrets: Table | None
    configuration: str
    disclaimer: str


def provenance_view(data: ReportData) -> ProvenanceView:
    v = data.provenance
    items = table(["Item", "Value"], [
        ["Run id", v.run_id], ["As-of month", data.as_of], ["Created", v.created_at],
        ["Code version", v.code_version], ["Git commit", v.git_commit or "unknown"],
        ["Data fingerprint", Cell(v.data_fingerprint, code=True)]], left=2)
    return ProvenanceView(
        items=items,
        models=table(["Model", "Fingerprint"], [[k, Cell(x, code=True)] for k, x in v.model_fingerprints.items()],
                     left=2) if v.model_fingerprints else None,
        libraries=table(["Package", "Version"], [[k, x] for k, x in sorted(v.library_versions.items())])
        if v.library_versions else None,
        timings=table(["Stage", "Seconds"], [[k, fmt(x)] for k, x in v.stage_timings.items()])
        if v.stage_timings else None,
        secrets=table(["Variable", "Value (masked)"], [[k, x] for k, x in v.secrets.items()], left=2)
        if v.secrets else None,
        configuration=json.dumps(v.configuration, indent=2, ensure_ascii=False, sort_keys=False),
        disclaimer=data.disclaimer)


# ------------------------------------------------------------------------------------------------- page


SectionBody = (DecisionView | PerformanceView | ForecastQualityView | AllocationView | LookaheadView
               | DataQualityView | ProvenanceView)


@dataclass(frozen=True)
class SectionView:
    anchor: str
    title: str
    template: str  # templates/sections/<anchor>.html, which lays out ``body``
    body: SectionBody


@dataclass(frozen=True)
class PageView:
    title: str
    as_of: str
    target_month: str
    chosen: str
    run_id: str
    synthetic: bool
    banner: str
    source: str
    code_version: str
    disclaimer: str
    sections: tuple[SectionView, ...]


_SECTION_VIEWS: dict[str, Callable[[ReportData], SectionBody]] = {
    "decision": decision_view, "performance": performance_view, "forecast-quality": forecast_quality_view,
    "allocation": allocation_view, "lookahead": lookahead_view, "data-quality": data_quality_view,
    "provenance": provenance_view,
}


def build_view(data: ReportData) -> PageView:
    """The whole page's view, the seven sections in the order of :data:`SECTIONS`."""
    return PageView(
        title=data.title, as_of=data.as_of, target_month=data.decision.target_month,
        chosen=data.decision.chosen_model, run_id=data.run_id, synthetic=data.synthetic, banner=SYNTHETIC_BANNER,
        source=data.data_quality.source, code_version=data.provenance.code_version, disclaimer=data.disclaimer,
        sections=tuple(SectionView(anchor, title, f"sections/{anchor}.html", _SECTION_VIEWS[anchor](data))
                       for anchor, title in SECTIONS))
