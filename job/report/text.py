"""The terminal summary: the decision and the headline metrics vs the benchmark, as Markdown tables.

Markdown pipe tables read well on a terminal and paste into an issue or a chat unchanged.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from job.report.data import BENCHMARK_KEY, EQUAL_WEIGHT_KEY, SYNTHETIC_BANNER, ReportData


def _pct(value: Any, digits: int = 2) -> str:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return "-"
    return f"{number * 100:.{digits}f}%" if math.isfinite(number) else "-"


def _num(value: Any) -> str:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return "-"
    return f"{number:.2f}" if math.isfinite(number) else "-"


def _md_table(headers: Sequence[str], rows: Sequence[Sequence[str]], right_from: int = 1) -> list[str]:
    """A Markdown pipe table with padded columns (numbers right-aligned from column ``right_from``)."""
    cells = [list(headers), *[list(r) for r in rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]

    def line(row: Sequence[str]) -> str:
        return "| " + " | ".join(c.rjust(w) if i >= right_from else c.ljust(w)
                                 for i, (c, w) in enumerate(zip(row, widths, strict=True))) + " |"

    rule = "|" + "|".join(("-" * (w + 1) + ":") if i >= right_from else (":" + "-" * (w + 1))
                          for i, w in enumerate(widths)) + "|"
    return [line(headers), rule, *[line(r) for r in rows]]


def render_text(data: ReportData, *, where: str | None = None) -> str:
    """A compact summary: banner if synthetic, the verdict and the small-sample caveat (when any), next
    month's weights per model, headline metrics vs the
    benchmark (full span, net of costs), and where the report is (``where``)."""
    d, p = data.decision, data.performance
    out: list[str] = []
    if data.synthetic:
        out += [f"**{SYNTHETIC_BANNER}** - source {data.data_quality.source!r} is synthetic; "
                "the numbers describe no real market.", ""]
    out += [f"## Sector rotation: weights for {d.target_month} (as of {data.as_of}, run {data.run_id})", ""]
    verdict = [s for s in data.verdict if s]
    if verdict:  # the computed verdict first, one sentence a line
        out += [*verdict, ""]
    if p.caveat:
        out += [p.caveat, ""]
    models = d.models
    chosen_rows = d.allocations[d.allocations["model"] == d.chosen_model]
    weight = d.allocations.set_index(["model", "asset"])["weight"]
    others = [m for m in models if m != d.chosen_model]
    rows = []
    for rec in chosen_rows.itertuples(index=False):
        rows.append([rec.asset, rec.sector, _pct(rec.predicted_return),
                     f"x{rec.multiplier:g}" if rec.flag else "-", _pct(rec.weight, 1),
                     *[_pct(weight.get((m, rec.asset)), 1) for m in others]])
    rows.append(["capital", "", "", "", f"{d.capital.get(d.chosen_model, float('nan')):.2f}x",
                 *[f"{d.capital.get(m, float('nan')):.2f}x" for m in others]])
    out += _md_table(["asset", "sector", "predicted", "flag", f"{d.chosen_model} (chosen)", *others], rows,
                     right_from=2)
    out.append("")
    full = {name: periods.get("full", {}) for name, periods in p.metrics_net.items()}
    names = [m for m in models if m in full] + [n for n in (BENCHMARK_KEY, EQUAL_WEIGHT_KEY) if n in full]
    if names:
        label = {BENCHMARK_KEY: p.benchmark, EQUAL_WEIGHT_KEY: "equal weight"}
        rows = [[label.get(n, n) + (" (chosen)" if n == d.chosen_model else ""), _pct(full[n].get("cagr")),
                 _pct(full[n].get("annual_volatility")), _num(full[n].get("sharpe")), _pct(full[n].get("max_drawdown"))]
                for n in names]
        out += ["Out-of-sample, full span, net of costs:", ""]
        out += _md_table(["series", "CAGR", "vol", "Sharpe", "max drawdown"], rows)
        out.append("")
    if where:
        out += [f"Report: {where}", ""]
    out.append(data.disclaimer)
    return "\n".join(out) + "\n"
