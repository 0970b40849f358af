"""The report as one self-contained HTML page: inline CSS, inline SVG charts, no scripts, no URLs.

Every value from the data is escaped by :func:`esc` (which also writes ``://`` as ``:&#47;&#47;``, so no
URL appears literally in the file even when a configuration value holds one). A Content-Security-Policy
meta tag forbids the browser any fetch, so a report opened from a mail or an object store stays
offline. Output is deterministic: the same :class:`ReportData` gives byte-identical HTML.
"""

from __future__ import annotations

import html as _html
import json
import math
from collections.abc import Collection, Iterable, Sequence
from typing import Any

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

_CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src data:; base-uri 'none'; form-action 'none'"

CSS = """
:root { --ink:#1d2433; --muted:#5b6475; --line:#dde1e8; --accent:#0072B2; --good:#e3f4ea; --bad:#fdecea; }
* { box-sizing: border-box; }
body { margin:0; font: 14px/1.45 "DejaVu Sans", "Segoe UI", Helvetica, Arial, sans-serif; color:var(--ink);
       background:#f6f7f9; }
main { max-width: 1180px; margin: 0 auto; padding: 18px 28px 40px; background:#fff; }
header h1 { font-size: 24px; margin: 6px 0 2px; }
header .sub { color: var(--muted); margin: 0 0 10px; }
.banner { background:#b3261e; color:#fff; font-weight:700; letter-spacing:.06em; text-align:center;
          padding:10px 14px; font-size:18px; }
.banner small { display:block; font-weight:400; letter-spacing:0; font-size:13px; }
nav ol { display:flex; flex-wrap:wrap; gap:4px 18px; list-style:none; padding:8px 0; margin:0 0 8px;
         border-top:1px solid var(--line); border-bottom:1px solid var(--line); }
nav a { color: var(--accent); text-decoration:none; }
section { padding-top: 6px; }
h2 { font-size: 19px; margin: 22px 0 8px; padding-bottom: 4px; border-bottom: 2px solid var(--accent); }
h3 { font-size: 15px; margin: 14px 0 6px; }
p.note, .note { color: var(--muted); font-size: 12.5px; }
table { border-collapse: collapse; margin: 6px 0 12px; font-size: 12.5px; }
th, td { padding: 3px 9px; border-bottom: 1px solid var(--line); text-align: right; white-space: nowrap; }
th { background:#f0f2f6; font-weight:600; white-space: normal; vertical-align: bottom; }
.tw { max-width: 100%; overflow-x: auto; }
td.l, th.l { text-align:left; }
tr.chosen td { font-weight:600; background:#eef6fc; }
td.good { background: var(--good); }
td.bad { background: var(--bad); }
.bar { display:inline-block; height:9px; background:var(--accent); vertical-align:middle; margin-right:6px; }
.flag { color:#b3261e; font-weight:700; }
.grid2 { display:grid; grid-template-columns: 1fr 1fr; gap: 0 28px; }
.kpis { display:flex; flex-wrap:wrap; gap:10px; margin:8px 0 12px; }
.kpi { border:1px solid var(--line); border-radius:6px; padding:6px 12px; min-width:150px; }
.kpi b { display:block; font-size:18px; }
.kpi span { color:var(--muted); font-size:12px; }
.status-ok { color:#17663a; font-weight:700; }
.status-fail { color:#b3261e; font-weight:700; }
svg.chart { width:100%; height:auto; display:block; margin: 4px 0 10px; }
pre { background:#f6f7f9; border:1px solid var(--line); padding:8px; font-size:11.5px; overflow:auto; }
details summary { cursor: pointer; color: var(--accent); }
footer { margin-top: 26px; padding-top: 10px; border-top: 1px solid var(--line); color: var(--muted);
         font-size: 12.5px; }
.disclaimer { border-left: 4px solid #b3261e; padding: 6px 12px; background:#fdf6f5; }
@media print { body { background:#fff; } main { max-width:none; } }
"""


# ------------------------------------------------------------------------------------------ formatting

def esc(value: Any) -> str:
    """HTML-escape any value's text; ``://`` is written as ``:&#47;&#47;`` so no URL is literal."""
    return _html.escape("" if value is None else str(value), quote=True).replace("://", ":&#47;&#47;")


def _finite(value: Any) -> float | None:
    if isinstance(value, bool) or value is None:
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def fmt(value: Any, kind: str = "num") -> str:
    """Format a metric value: ``pct`` (fraction as %), ``num``, ``x`` (multiple), ``month``/text."""
    if kind == "month" or isinstance(value, str):
        return esc(value) if value not in (None, "") else "–"
    number = _finite(value)
    if number is None:
        return "–"
    if kind == "pct":
        return f"{number * 100:.2f}&nbsp;%"
    if kind == "x":
        return f"{number:.2f}x"
    if kind == "int":
        return f"{number:.0f}"
    if abs(number) >= 1000:
        return f"{number:,.0f}"
    return f"{number:.3f}" if kind == "num3" else f"{number:.2f}"


def _attrs(cls: str) -> str:
    return f' class="{cls}"' if cls else ""


def table(headers: Sequence[str], rows: Iterable[Sequence[Any]], *, left: int | Collection[int] = 1,
          row_classes: Sequence[str] | None = None, cell_classes: Sequence[Sequence[str]] | None = None,
          caption: str = "") -> str:
    """An HTML table in a horizontally scrollable box; ``headers`` are escaped, cells are pre-formatted
    HTML; text columns (the first ``left`` columns, or the column positions in ``left``) are left-aligned."""
    lefts = set(range(left)) if isinstance(left, int) else set(left)
    out = ['<div class="tw"><table>']
    if caption:
        out.append(f"<caption class=\"note\">{esc(caption)}</caption>")
    out.append("<thead><tr>" + "".join(f"<th{_attrs('l' if i in lefts else '')}>{esc(h)}</th>"
                                       for i, h in enumerate(headers)) + "</tr></thead><tbody>")
    for r, row in enumerate(rows):
        cls = row_classes[r] if row_classes else ""
        cells = []
        for i, cell in enumerate(row):
            classes = " ".join(c for c in ("l" if i in lefts else "",
                                           cell_classes[r][i] if cell_classes else "") if c)
            cells.append(f"<td{_attrs(classes)}>{cell}</td>")
        out.append(f"<tr{_attrs(cls)}>" + "".join(cells) + "</tr>")
    out.append("</tbody></table></div>")
    return "".join(out)


def _section(anchor: str, title: str, body: list[str]) -> str:
    return f'<section id="{anchor}">\n<h2>{esc(title)}</h2>\n' + "\n".join(body) + "\n</section>"


def _series_label(name: str, benchmark: str) -> str:
    return {BENCHMARK_KEY: f"{benchmark} (benchmark)", EQUAL_WEIGHT_KEY: "equal weight"}.get(name, name)


# ---------------------------------------------------------------------------------------- the sections

def _decision(data: ReportData) -> list[str]:
    d = data.decision
    alloc = d.allocations
    chosen = d.chosen_model
    models = d.models
    body = [f'<p>Weights for <b>{esc(d.target_month)}</b>, decided at the end of {esc(data.as_of)} '
            f'with the <b>{esc(chosen)}</b> model (the configured default); the other models\' weights '
            f'alongside.</p>']
    rows_chosen = alloc[alloc["model"] == chosen]
    if rows_chosen.empty:
        body.append(f'<p class="note">The chosen model {esc(chosen)} produced no allocation for this month.</p>')
        rows_chosen = alloc[alloc["model"] == models[0]] if models else alloc
    others = [m for m in models if m != chosen]
    weight_of = alloc.set_index(["model", "asset"])["weight"]
    max_w = max(float(rows_chosen["weight"].max()), 1e-12) if not rows_chosen.empty else 1.0
    rows = []
    for rec in rows_chosen.itertuples(index=False):
        bar = f'<span class="bar" style="width:{60 * max(rec.weight, 0.0) / max_w:.1f}px"></span>'
        flag = f'<span class="flag">yes, x{rec.multiplier:g}</span>' if rec.flag else "–"
        row = [esc(rec.asset), esc(rec.sector), fmt(rec.predicted_return, "pct"), flag,
               bar + fmt(rec.weight, "pct")]
        row += [fmt(weight_of.get((m, rec.asset)), "pct") for m in others]
        rows.append(row)
    if not rows_chosen.empty:
        rows.append(["<b>Total</b>", "", "", "", f"<b>{fmt(rows_chosen['weight'].sum(), 'pct')}</b>"]
                    + [fmt(alloc.loc[alloc["model"] == m, "weight"].sum(), "pct") for m in others])
    headers = ["Asset", "Sector", "Predicted return", "Leverage flag", f"Weight ({chosen})"]
    headers += [f"{m}" for m in others]
    body.append(table(headers, rows, left=2))
    cap_rows = []
    for m in models:
        n_flag = int(alloc.loc[alloc["model"] == m, "flag"].sum())
        cap_rows.append([esc(m), fmt(d.capital.get(m), "x"), str(n_flag)])
    body.append("<h3>Capital deployed</h3>")
    body.append(table(["Model", "Capital deployed", "Flagged assets"], cap_rows,
                      row_classes=["chosen" if m == chosen else "" for m in models]))
    rule = []
    if d.threshold is not None:
        rule.append(f"leverage flag when the predicted return exceeds {fmt(d.threshold, 'pct')}")
    if d.factor is not None:
        rule.append(f"multiplier x{d.factor:g} on flagged assets")
    body.append('<p class="note">Capital deployed = sum of weight x multiplier; 1.00x means no asset is '
                'flagged' + ("; " + "; ".join(rule) if rule else "") + ".</p>")
    return body


def _metric_keys(tables: Iterable[MetricTable]) -> list[tuple[str, str, str]]:
    """(key, label, format) of the rows to show: known metrics present in any table, then unknown keys."""
    tables = list(tables)
    known = [(m.key, m.label, m.fmt) for m in METRICS]
    seen = {m.key for m in METRICS} | set(WINDOW_KEYS)
    extra: list[tuple[str, str, str]] = []
    for tbl in tables:
        for periods in tbl.values():
            for metrics in periods.values():
                for key in metrics:
                    if key not in seen:
                        seen.add(key)
                        extra.append((key, key.replace("_", " "), "num3"))
    present = set()
    for tbl in tables:
        for periods in tbl.values():
            for metrics in periods.values():
                present.update(metrics)
    return [k for k in known if k[0] in present] + extra


def _window(tbl: MetricTable, chosen: str, period: str) -> str:
    """`` (YYYY-MM to YYYY-MM, n months)`` of a period, from the chosen model's (or any) metrics."""
    names = [chosen, *tbl]
    for name in names:
        m = tbl.get(name, {}).get(period, {})
        if m.get("start") and m.get("end"):
            months = f", {int(m['months'])} months" if _finite(m.get("months")) is not None else ""
            return f": {esc(m['start'])} to {esc(m['end'])}{months}"
    return ""


def metrics_table(tbl: MetricTable, period: str, order: list[str], chosen: str, benchmark: str,
                  keys: list[tuple[str, str, str]]) -> str:
    """Rows = metrics, columns = models then benchmark and equal weight, for one period."""
    names = [n for n in order if n in tbl] + [n for n in tbl if n not in order]
    if not names or not keys:
        return '<p class="note">No metrics for this period.</p>'
    headers = ["Metric"] + [_series_label(n, benchmark) + (" (chosen)" if n == chosen else "") for n in names]
    rows = [[esc(label)] + [fmt(tbl[n].get(period, {}).get(key), kind) for n in names]
            for key, label, kind in keys]
    return table(headers, rows)


def _performance(data: ReportData) -> list[str]:
    p = data.performance
    chosen = data.decision.chosen_model
    models = data.models
    body: list[str] = []
    if p.returns.empty:
        body.append('<p class="note">No backtest returns in this run.</p>')
    else:
        months = sorted(p.returns["month"].unique())
        body.append(f'<p>Walk-forward, out-of-sample monthly returns from {esc(months[0])} to '
                    f'{esc(months[-1])} ({len(months)} months), net of transaction costs'
                    + (f' of {p.cost_bps:g} bp per unit of turnover' if p.cost_bps is not None else "")
                    + f', against {esc(p.benchmark)} and an equal-weight portfolio of the universe.</p>')
        net = p.metrics_net
        kpis = []
        for name in (chosen, BENCHMARK_KEY, EQUAL_WEIGHT_KEY):
            full = net.get(name, {}).get("full", {})
            if full:
                kpis.append(f'<div class="kpi"><span>{esc(_series_label(name, p.benchmark))}</span>'
                            f'<b>{fmt(full.get("cagr"), "pct")}</b><span>CAGR · Sharpe '
                            f'{fmt(full.get("sharpe"))} · max DD {fmt(full.get("max_drawdown"), "pct")}</span></div>')
        if kpis:
            body.append('<div class="kpis">' + "".join(kpis) + "</div>")
        body.append("<h3>Growth of $100 (net of costs)</h3>")
        body.append(charts.growth_chart(p.returns, p.market, models, chosen, p.benchmark))
        body.append("<h3>Drawdown</h3>")
        body.append(charts.drawdown_chart(p.returns, p.market, models, chosen, p.benchmark))
    order = [*models, BENCHMARK_KEY, EQUAL_WEIGHT_KEY]
    keys = _metric_keys([p.metrics_net, p.metrics_gross])
    periods = [pr for pr in PERIODS if any(pr in v for t in (p.metrics_net, p.metrics_gross) for v in t.values())]
    periods += sorted({pr for t in (p.metrics_net, p.metrics_gross) for v in t.values() for pr in v} - set(periods))
    for period in periods:
        body.append(f"<h3>{esc(PERIOD_LABELS.get(period, period))}{_window(p.metrics_net, chosen, period)}</h3>")
        body.append('<p class="note">Net of costs</p>'
                    + metrics_table(p.metrics_net, period, order, chosen, p.benchmark, keys))
        # The benchmark and equal weight carry no costs: the before-costs table shows the models only.
        gross = {k: v for k, v in p.metrics_gross.items() if k not in (BENCHMARK_KEY, EQUAL_WEIGHT_KEY)}
        if gross:
            body.append('<p class="note">Before costs</p>'
                        + metrics_table(gross, period, order, chosen, p.benchmark, keys))
    if not periods:
        body.append('<p class="note">No metrics in this run.</p>')
    body.append('<p class="note">Sharpe and Sortino use the risk-free rate from data; the original definitions '
                "(population std of monthly returns x sqrt(12); Sortino = (CAGR - 4.27 %) / downside std) are "
                "shown for comparison with the original notebook.</p>")
    return body


def _forecast_quality(data: ReportData) -> list[str]:
    f = data.forecast_quality
    chosen = data.decision.chosen_model
    body: list[str] = []
    if f.mae.empty:
        body.append('<p class="note">No forecast errors in this run.</p>')
    else:
        body.append("<p>Mean absolute error of the monthly return forecasts, out of sample, per asset. A cell is "
                    "green where the model beats both baselines (persistence: last month's return; historical "
                    "mean: the expanding mean of past returns), red where it beats neither.</p>")
        wide = f.mae.pivot_table(index="asset", columns="model", values="mae", sort=False)
        cols = [m for m in data.models if m in wide] + [m for m in wide.columns
                                                        if m not in data.models and m not in BASELINES]
        base = [b for b in BASELINES if b in wide]
        assets = [a for a in dict.fromkeys(f.mae["asset"]) if str(a).lower() != "all"]
        overall = wide.loc["all"] if "all" in wide.index else wide.reindex(assets).mean(axis=0)
        rows, classes = [], []
        for label, values in [*((a, wide.loc[a]) for a in assets), ("All assets", overall)]:
            best_base = min((values.get(b) for b in base if _finite(values.get(b)) is not None), default=None)
            worst_base = max((values.get(b) for b in base if _finite(values.get(b)) is not None), default=None)
            row, cls = [esc(label)], [""]
            for m in cols:
                v = _finite(values.get(m))
                row.append(fmt(v, "pct"))
                cls.append("" if v is None or best_base is None else
                           "good" if v < best_base else "bad" if v >= worst_base else "")
            for b in base:
                row.append(fmt(values.get(b), "pct"))
                cls.append("")
            rows.append(row)
            classes.append(cls)
        headers = ["Asset", *cols, *[f"{b} (baseline)" for b in base]]
        body.append(table(headers, rows, cell_classes=classes, row_classes=[""] * (len(rows) - 1) + ["chosen"]))
    stats = f.ic_stats()
    if stats:
        body.append("<h3>Information coefficient</h3>")
        body.append("<p>Rank IC: the Spearman correlation, each month, between predicted and realised returns "
                    "across assets. A mean IC with |t| below about 2 is indistinguishable from noise.</p>")
        order = [m for m in data.models if m in stats] + [m for m in stats if m not in data.models]
        rows = [[esc(m), fmt(stats[m].get("mean"), "num3"), fmt(stats[m].get("t_stat")),
                 fmt(stats[m].get("share_positive"), "pct"), fmt(stats[m].get("n"), "int")] for m in order]
        body.append(table(["Model", "Mean IC", "t-statistic", "Months with IC > 0", "Months"], rows,
                          row_classes=["chosen" if m == chosen else "" for m in order]))
        body.append(charts.ic_chart(f.ic, data.models, chosen))
    return body


def _allocation(data: ReportData) -> list[str]:
    a = data.allocation
    chosen = data.decision.chosen_model
    body: list[str] = []
    sectors = dict(zip(data.decision.allocations["asset"], data.decision.allocations["sector"], strict=True))
    model = chosen if (a.weights["model"] == chosen).any() else (a.weights["model"].iloc[0]
                                                                 if not a.weights.empty else chosen)
    if a.weights.empty:
        body.append('<p class="note">No weight history in this run.</p>')
    else:
        body.append(f"<h3>Weights over time: {esc(model)}</h3>")
        body.append(charts.weights_chart(a.weights, model, sectors))
    if not a.exposure.empty:
        body.append("<h3>Leverage usage and turnover</h3>")
        rows, names = [], []
        for name, g in a.exposure.groupby("model", sort=False):
            names.append(str(name))
            rows.append([esc(name), fmt(float((g["n_flagged"] > 0).mean()), "pct"), fmt(g["n_flagged"].mean()),
                         fmt(g["capital"].mean(), "x"), fmt(g["capital"].max(), "x"), fmt(g["turnover"].mean(), "pct"),
                         fmt(g["turnover"].sum() / max(len(g), 1) * 12, "pct")])
        body.append(table(["Model", "Months with a flag", "Flagged assets per month", "Average capital",
                           "Maximum capital", "Average monthly turnover", "Annualised turnover"], rows,
                          row_classes=["chosen" if n == chosen else "" for n in names]))
        body.append(charts.capital_chart(a.exposure, data.models, chosen))
        body.append('<p class="note">Turnover = sum over assets of |w(t) - w(t-1)|, so 200 % is a complete switch.</p>')
    return body


def _lookahead(data: ReportData) -> list[str]:
    look = data.lookahead
    chosen = data.decision.chosen_model
    if look is None:
        return [f'<p class="note"><b>Not run.</b> {esc(data.lookahead_not_run_reason)}</p>']
    body = [f"<p>The same walk-forward backtest twice: point in time (macro data used only once published, "
            f"lag {look.publication_lag_months} month{'s' if look.publication_lag_months != 1 else ''}) and "
            "with publication lag 0, the original notebook's alignment, in which macro values released during "
            "month m+1 informed the decision at the end of month m. The difference is what the leak was worth; "
            "only the point-in-time numbers are achievable.</p>"]
    pit, lag0 = look.point_in_time, look.lag0
    names = [m for m in [*data.models, BENCHMARK_KEY, EQUAL_WEIGHT_KEY] if m in pit or m in lag0]
    names += [m for m in dict.fromkeys([*pit, *lag0]) if m not in names]
    for period in [pr for pr in PERIODS if any(pr in v for t in (pit, lag0) for v in t.values())]:
        body.append(f"<h3>{esc(PERIOD_LABELS.get(period, period))}, net of costs</h3>")
        rows = []
        for n in names:
            a, b = pit.get(n, {}).get(period, {}), lag0.get(n, {}).get(period, {})
            row = [esc(_series_label(n, data.performance.benchmark))]
            for key, kind in (("cagr", "pct"), ("sharpe", "num"), ("max_drawdown", "pct")):
                va, vb = _finite(a.get(key)), _finite(b.get(key))
                row += [fmt(va, kind), fmt(vb, kind),
                        fmt(None if va is None or vb is None else vb - va, kind)]
            rows.append(row)
        body.append(table(["Series", "CAGR, point in time", "CAGR, lag 0", "Δ CAGR", "Sharpe, point in time",
                           "Sharpe, lag 0", "Δ Sharpe", "Max DD, point in time", "Max DD, lag 0", "Δ Max DD"],
                          rows, row_classes=["chosen" if n == chosen else "" for n in names]))
    if look.returns is not None and not look.returns.empty:
        body.append(charts.lookahead_chart(look.returns, chosen))
    return body


def _data_quality(data: ReportData) -> list[str]:
    q = data.data_quality
    body: list[str] = []
    if q.synthetic:
        body.append(f'<p class="flag">{SYNTHETIC_BANNER}: source "{esc(q.source)}" is a seeded synthetic market '
                    "with a planted signal. None of these numbers describe real markets.</p>")
    status = ('<span class="status-ok">passed</span>' if q.passed
              else '<span class="status-fail">FAILED</span>')
    body.append(f"<p>Source: <b>{esc(q.source)}</b>. Validation (Great Expectations): {status}.</p>")
    if q.suites:
        rows = [[esc(s.name), str(s.checks), str(s.failed), str(s.warnings), esc(s.worst) or "–"]
                for s in q.suites]
        classes = [["", "", "bad" if s.failed else "", "", ""] for s in q.suites]
        body.append(table(["Suite", "Checks", "Failed", "Warnings", "Worst example"], rows, cell_classes=classes,
                          left={0, 4}))
    else:
        body.append('<p class="note">No validation summary in this run.</p>')
    if q.sources:
        body.append("<h3>Data sources</h3>")
        rows = [[esc(s.name), esc(s.kind), esc(s.first) or "–", esc(s.last) or "–", esc(s.vintage) or "–",
                 fmt(s.rows, "int") if s.rows is not None else "–", esc(s.note)] for s in q.sources]
        body.append(table(["Source", "Kind", "First", "Last", "Vintage", "Rows", "Note"], rows,
                          left={0, 1, 4, 6}))
    return body


def _provenance(data: ReportData) -> list[str]:
    v = data.provenance
    rows = [["Run id", esc(v.run_id)], ["As-of month", esc(data.as_of)], ["Created", esc(v.created_at)],
            ["Code version", esc(v.code_version)], ["Git commit", esc(v.git_commit or "unknown")],
            ["Data fingerprint", f"<code>{esc(v.data_fingerprint)}</code>"]]
    body = [table(["Item", "Value"], rows, left=2)]
    if v.model_fingerprints:
        body.append("<h3>Models</h3>")
        body.append(table(["Model", "Fingerprint"], [[esc(k), f"<code>{esc(x)}</code>"]
                                                     for k, x in v.model_fingerprints.items()], left=2))
    blocks = []
    if v.library_versions:
        blocks.append("<div><h3>Libraries</h3>" + table(["Package", "Version"], [
            [esc(k), esc(x)] for k, x in sorted(v.library_versions.items())], left=1) + "</div>")
    if v.stage_timings:
        blocks.append("<div><h3>Stage timings</h3>" + table(["Stage", "Seconds"], [
            [esc(k), fmt(x)] for k, x in v.stage_timings.items()], left=1) + "</div>")
    if blocks:
        body.append('<div class="grid2">' + "".join(blocks) + "</div>")
    if v.secrets:
        body.append("<h3>Secrets</h3>" + table(["Variable", "Value (masked)"], [
            [esc(k), esc(x)] for k, x in v.secrets.items()], left=2))
    config = json.dumps(v.configuration, indent=2, ensure_ascii=False, sort_keys=False)
    body.append(f"<details><summary>Configuration (effective, secrets masked)</summary><pre>{esc(config)}</pre>"
                "</details>")
    body.append(f'<p class="disclaimer"><b>Disclaimer.</b> {esc(data.disclaimer)}</p>')
    return body


_BUILDERS = {
    "decision": _decision, "performance": _performance, "forecast-quality": _forecast_quality,
    "allocation": _allocation, "lookahead": _lookahead, "data-quality": _data_quality, "provenance": _provenance,
}


def render_html(data: ReportData) -> str:
    """The complete report page for ``data``: self-contained, deterministic, every value escaped."""
    head = (f'<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
            f'<meta http-equiv="Content-Security-Policy" content="{_CSP}">\n'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">\n'
            f'<meta name="generator" content="rotation report">\n'
            f"<title>{esc(data.title)}: {esc(data.as_of)}</title>\n<style>{CSS}</style>\n</head>\n<body>\n")
    parts = [head]
    if data.synthetic:
        parts.append(f'<div class="banner" role="alert">{SYNTHETIC_BANNER}<small>This report was produced from the '
                     f'"{esc(data.data_quality.source)}" source, a synthetic market with a planted signal, for '
                     "demonstration and tests. It says nothing about real sector returns.</small></div>\n")
    parts.append("<main>\n<header>")
    parts.append(f"<h1>{esc(data.title)}</h1>")
    parts.append(f'<p class="sub">As of <b>{esc(data.as_of)}</b> · weights for '
                 f"<b>{esc(data.decision.target_month)}</b> · chosen model <b>{esc(data.decision.chosen_model)}</b>"
                 f" · run <code>{esc(data.run_id)}</code></p>")
    parts.append("<nav><ol>" + "".join(f'<li><a href="#{a}">{esc(t)}</a></li>' for a, t in SECTIONS)
                 + "</ol></nav></header>\n")
    for anchor, title in SECTIONS:
        parts.append(_section(anchor, title, _BUILDERS[anchor](data)) + "\n")
    parts.append(f"<footer>Generated by rotation {esc(data.provenance.code_version)} for run "
                 f"{esc(data.run_id)}. {esc(data.disclaimer)}</footer>\n</main>\n</body>\n</html>\n")
    return "".join(parts)
