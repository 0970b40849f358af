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
from dataclasses import dataclass, replace
from typing import Any

import pandas as pd
from markupsafe import Markup

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
    ``int``, ``month`` (or any text, shown as it is); ``–`` when absent or not finite."""
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
    if abs(number) >= 1000:
        return f"{number:,.0f}"
    return f"{number:.3f}" if kind == "num3" else f"{number:.2f}"


def text_or_missing(value: str | None) -> str:
    return value if value else MISSING


def series_label(name: str, benchmark: str) -> str:
    """How a series is named on the page: models by name, the benchmark by ticker, equal weight in words."""
    return {BENCHMARK_KEY: f"{benchmark} (benchmark)", EQUAL_WEIGHT_KEY: "equal weight"}.get(name, name)


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
    return DecisionView(d.target_month, data.as_of, chosen, chosen_missing, weights, capital, note)


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
    headers = ["Metric"] + [series_label(n, benchmark) + (" (chosen)" if n == chosen else "") for n in names]
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
    order = [*models, BENCHMARK_KEY, EQUAL_WEIGHT_KEY]
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
        periods=periods)


# -------------------------------------------------------------------------------------- forecast quality


@dataclass(frozen=True)
class ForecastQualityView:
    mae: Table | None
    ic: Table | None
    ic_chart: Markup


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


def forecast_quality_view(data: ReportData) -> ForecastQualityView:
    f = data.forecast_quality
    chosen = data.decision.chosen_model
    stats = f.ic_stats()
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


def annualised_turnover(monthly: pd.Series) -> float:
    """Twelve times the average monthly turnover (sum of |w(t) - w(t-1)| over assets)."""
    return float(monthly.sum()) / max(len(monthly), 1) * 12


def allocation_view(data: ReportData) -> AllocationView:
    a = data.allocation
    chosen = data.decision.chosen_model
    sectors = dict(zip(data.decision.allocations["asset"], data.decision.allocations["sector"], strict=True))
    if a.weights.empty:
        model, weights_chart = None, _chart("")
    else:  # the chosen model's history, else the first model's
        model = chosen if (a.weights["model"] == chosen).any() else str(a.weights["model"].iloc[0])
        weights_chart = _chart(charts.weights_chart(a.weights, model, sectors))
    if a.exposure.empty:
        return AllocationView(model, weights_chart, None, _chart(""))
    rows, names = [], []
    for name, g in a.exposure.groupby("model", sort=False):
        names.append(str(name))
        rows.append([str(name), fmt(float((g["n_flagged"] > 0).mean()), "pct"), fmt(g["n_flagged"].mean()),
                     fmt(g["capital"].mean(), "x"), fmt(g["capital"].max(), "x"), fmt(g["turnover"].mean(), "pct"),
                     fmt(annualised_turnover(g["turnover"]), "pct")])
    exposure = table(["Model", "Months with a flag", "Flagged assets per month", "Average capital",
                      "Maximum capital", "Average monthly turnover", "Annualised turnover"], rows,
                     row_classes=_chosen_rows(names, chosen))
    return AllocationView(model, weights_chart, exposure, _chart(charts.capital_chart(a.exposure, data.models, chosen)))


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
    names = [m for m in [*data.models, BENCHMARK_KEY, EQUAL_WEIGHT_KEY] if m in pit or m in lag0]
    names += [m for m in dict.fromkeys([*pit, *lag0]) if m not in names]
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
    return DataQualityView(q.synthetic, q.source, q.passed, suites, sources)


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
