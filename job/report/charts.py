"""Charts for the report: matplotlib (Agg) figures rendered to inline SVG text.

Every chart is deterministic (the same data gives the same bytes): the SVG ids are salted with the
chart's name (:rc:`svg.hashsalt`), no date or creator metadata is written, text stays text
(``svg.fonttype = none``, so it is small and searchable). The XML prolog and namespace declarations
are removed because the SVG is embedded in HTML5, where they are implied (and so the report contains
no URL at all). Each function returns ``""`` when there is nothing to draw.
"""

from __future__ import annotations

import contextlib
import io
import re
from collections.abc import Iterator

import matplotlib

matplotlib.use("Agg")

import matplotlib.dates as mdates
import matplotlib.pyplot as plt
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, PercentFormatter

# Colour-blind-friendly palette (Okabe-Ito), assigned to models in report order.
PALETTE = ("#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442", "#999999")
BENCHMARK_COLOR = "#222222"
EQUAL_WEIGHT_COLOR = "#8c8c8c"
_AREA_COLORS = ("#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f", "#edc948", "#b07aa1", "#ff9da7",
                "#9c755f", "#bab0ac", "#1f77b4", "#8c564b", "#17becf", "#bcbd22", "#7f7f7f", "#aec7e8")

_RC = {
    "svg.fonttype": "none",
    "font.family": "DejaVu Sans",
    "font.size": 9.0,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": True,
    "grid.color": "#e6e6e6",
    "grid.linewidth": 0.6,
    "axes.edgecolor": "#888888",
    "legend.frameon": False,
    "figure.dpi": 72,
}


@contextlib.contextmanager
def _style() -> Iterator[None]:
    """matplotlib's defaults plus ours, whatever the process's global style: another library (quantstats,
    seaborn) changing rcParams on import must not change a single byte of the report."""
    with plt.style.context("default"), plt.rc_context(_RC):
        yield


def model_colors(models: list[str]) -> dict[str, str]:
    """A fixed colour per model, by position."""
    return {m: PALETTE[i % len(PALETTE)] for i, m in enumerate(models)}


def _months_to_dates(months: pd.Series | list[str]) -> pd.DatetimeIndex:
    """Month labels to the month-end timestamps matplotlib draws (normalised to midnight)."""
    return pd.PeriodIndex(list(months), freq="M").to_timestamp(how="end").normalize()


def _figure(height: float = 3.2, width: float = 9.6) -> Figure:
    return Figure(figsize=(width, height), layout="constrained")


def to_svg(fig: Figure, name: str, title: str) -> str:
    """Render ``fig`` to deterministic SVG markup for inline HTML (no prolog, no namespaces, no URLs)."""
    buffer = io.StringIO()
    with _style(), plt.rc_context({"svg.hashsalt": f"rotation-report-{name}", "svg.fonttype": "none"}):
        fig.savefig(buffer, format="svg", metadata={"Date": None, "Creator": None, "Format": None,
                                                    "Type": None})
    svg = buffer.getvalue()
    svg = svg[svg.index("<svg"):]
    svg = re.sub(r'\s+xmlns(:\w+)?="[^"]*"', "", svg)
    svg = re.sub(r'<svg\b[^>]*?\swidth="[^"]*"\s+height="[^"]*"',
                 lambda m: re.sub(r'\s(width|height)="[^"]*"', "", m.group(0)), svg, count=1)
    label = (title.replace("&", "&amp;").replace('"', "&quot;").replace("<", "&lt;").replace(">", "&gt;"))
    svg = svg.replace("<svg", f'<svg class="chart" role="img" aria-label="{label}"', 1)
    return svg.strip()


def _date_axis(ax: plt.Axes) -> None:
    locator = mdates.AutoDateLocator(minticks=5, maxticks=12)
    ax.xaxis.set_major_locator(locator)
    ax.xaxis.set_major_formatter(mdates.ConciseDateFormatter(locator, show_offset=False))
    ax.margins(x=0.01)


def _legend(fig: Figure, ax: plt.Axes) -> None:
    """One row of legend entries above the axes (outside, so it never hides a curve)."""
    handles, labels = ax.get_legend_handles_labels()
    if handles:
        fig.legend(handles, labels, loc="outside upper center", ncols=min(len(handles), 7), fontsize=8)


def _series_frame(returns: pd.DataFrame, market: pd.DataFrame, column: str) -> pd.DataFrame:
    """Wide monthly frame: one column per model (``column`` of returns) plus benchmark and equal weight."""
    wide = returns.pivot_table(index="month", columns="model", values=column, sort=True)
    models = list(dict.fromkeys(returns["model"]))
    wide = wide.reindex(columns=models)
    mkt = market.set_index("month")[["benchmark_return", "equal_weight_return"]]
    wide = wide.join(mkt, how="outer").sort_index()
    return wide


def _wealth(wide: pd.DataFrame) -> pd.DataFrame:
    """Growth of 100 from the first month where each series has data (missing months add nothing)."""
    return 100.0 * (1.0 + wide.fillna(0.0)).cumprod()


def _label_lines(ax: plt.Axes, wide: pd.DataFrame, models: list[str], chosen: str, benchmark: str) -> None:
    colors = model_colors(models)
    x = _months_to_dates(wide.index)
    for model in models:
        if model not in wide:
            continue
        main = model == chosen
        ax.plot(x, wide[model].to_numpy(), color=colors[model], lw=2.2 if main else 1.1,
                alpha=1.0 if main else 0.8, label=f"{model} (chosen)" if main else model, zorder=3 if main else 2)
    if "benchmark_return" in wide:
        ax.plot(x, wide["benchmark_return"].to_numpy(), color=BENCHMARK_COLOR, lw=1.4, ls="--", label=benchmark)
    if "equal_weight_return" in wide:
        ax.plot(x, wide["equal_weight_return"].to_numpy(), color=EQUAL_WEIGHT_COLOR, lw=1.2, ls=":",
                label="equal weight")


def growth_chart(returns: pd.DataFrame, market: pd.DataFrame, models: list[str], chosen: str,
                 benchmark: str) -> str:
    """Growth of $100 (net of costs), every model, the benchmark and equal weight, log scale."""
    if returns.empty:
        return ""
    wide = _series_frame(returns, market, "net_return")
    wealth = _wealth(wide)
    fig = _figure(3.4)
    with _style():
        ax = fig.add_subplot()
        _label_lines(ax, wealth, models, chosen, benchmark)
        ax.set_yscale("log")
        ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"${v:,.0f}"))
        ax.yaxis.set_minor_formatter(FuncFormatter(lambda v, _: ""))
        ax.set_ylabel("value of $100 (log scale)")
        _date_axis(ax)
        _legend(fig, ax)
        return to_svg(fig, "growth", "Growth of $100, net of costs")


def drawdown_chart(returns: pd.DataFrame, market: pd.DataFrame, models: list[str], chosen: str,
                   benchmark: str) -> str:
    """Drawdown from the running peak (net of costs) of every model, the benchmark and equal weight."""
    if returns.empty:
        return ""
    wealth = _wealth(_series_frame(returns, market, "net_return"))
    drawdown = wealth / wealth.cummax() - 1.0
    fig = _figure(2.6)
    with _style():
        ax = fig.add_subplot()
        _label_lines(ax, drawdown, models, chosen, benchmark)
        if chosen in drawdown:
            ax.fill_between(_months_to_dates(drawdown.index), drawdown[chosen].to_numpy(), 0.0,
                            color=model_colors(models)[chosen], alpha=0.12, lw=0)
        ax.yaxis.set_major_formatter(PercentFormatter(1.0, decimals=0))
        ax.set_ylabel("drawdown")
        _date_axis(ax)
        _legend(fig, ax)
        return to_svg(fig, "drawdown", "Drawdown, net of costs")


def _by_model(frame: pd.DataFrame, value: str, models: list[str],
              ) -> tuple[pd.DataFrame, list[str], dict[str, str], pd.DatetimeIndex]:
    """``value`` by month (rows) and model (columns), the models in report order, their colours, the dates."""
    wide = frame.pivot_table(index="month", columns="model", values=value, sort=True)
    order = [m for m in models if m in wide] + [m for m in wide.columns if m not in models]
    return wide, order, model_colors(order), _months_to_dates(wide.index)


def ic_chart(ic: pd.DataFrame, models: list[str], chosen: str, window: int = 12) -> str:
    """Monthly rank IC of the chosen model (bars) and the rolling mean IC of every model (lines)."""
    if ic.empty:
        return ""
    wide, order, colors, x = _by_model(ic, "ic", models)
    fig = _figure(2.8)
    with _style():
        ax = fig.add_subplot()
        if chosen in wide:
            values = wide[chosen].to_numpy()
            ax.bar(x, values, width=22, color="#b9d3e8", lw=0,
                   label=f"{chosen}: monthly IC")
        for model in order:
            rolling = wide[model].rolling(window, min_periods=max(3, window // 2)).mean()
            ax.plot(x, rolling.to_numpy(), color=colors[model], lw=2.0 if model == chosen else 1.1,
                    label=f"{model}: {window}-month mean")
        ax.axhline(0.0, color="#444444", lw=0.8)
        ax.set_ylabel("rank IC (Spearman)")
        ax.set_ylim(-1.0, 1.0)
        _date_axis(ax)
        _legend(fig, ax)
        return to_svg(fig, "ic", "Information coefficient over time")


def weights_chart(weights: pd.DataFrame, model: str, labels: dict[str, str]) -> str:
    """Stacked area of one model's weights over time (assets in universe order)."""
    rows = weights[weights["model"] == model]
    if rows.empty:
        return ""
    assets = list(dict.fromkeys(rows["asset"]))
    wide = rows.pivot_table(index="month", columns="asset", values="weight", sort=True).reindex(columns=assets)
    wide = wide.fillna(0.0)
    x = _months_to_dates(wide.index)
    fig = _figure(3.4)
    with _style():
        ax = fig.add_subplot()
        ax.stackplot(x, wide.to_numpy().T, labels=[f"{a} {labels.get(a, '')}".strip() for a in assets],
                     colors=[_AREA_COLORS[i % len(_AREA_COLORS)] for i in range(len(assets))], lw=0)
        ax.set_ylim(0.0, max(1.0, float(wide.sum(axis=1).max())))
        ax.yaxis.set_major_formatter(PercentFormatter(1.0, decimals=0))
        ax.set_ylabel(f"{model}: weight")
        ax.grid(False)
        _date_axis(ax)
        ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=7.5, reverse=True)
        return to_svg(fig, "weights", f"Weights over time, {model}")


def capital_chart(exposure: pd.DataFrame, models: list[str], chosen: str) -> str:
    """Capital deployed (sum of weight x multiplier) per model over time; 1.0 means no leverage flag."""
    if exposure.empty:
        return ""
    wide, order, colors, x = _by_model(exposure, "capital", models)
    fig = _figure(2.4)
    with _style():
        ax = fig.add_subplot()
        for model in order:
            ax.step(x, wide[model].to_numpy(), where="mid", color=colors[model],
                    lw=2.0 if model == chosen else 1.0, label=model)
        ax.axhline(1.0, color="#444444", lw=0.8, ls="--")
        low, high = ax.get_ylim()  # a flat 1.0x (the rule never triggered) keeps a readable axis
        ax.set_ylim(min(low, 0.9), max(high, 1.1))
        ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:.2f}x" if high - low < 1 else f"{v:.1f}x"))
        ax.set_ylabel("capital deployed")
        _date_axis(ax)
        _legend(fig, ax)
        return to_svg(fig, "capital", "Capital deployed over time")


def lookahead_chart(returns: pd.DataFrame, chosen: str) -> str:
    """Growth of $100 of the chosen model: point in time vs publication lag 0."""
    rows = returns[returns["model"] == chosen] if not returns.empty else returns
    if rows.empty:
        return ""
    wide = rows.pivot_table(index="month", columns="alignment", values="net_return", sort=True)
    wealth = _wealth(wide)
    x = _months_to_dates(wealth.index)
    fig = _figure(2.6)
    with _style():
        ax = fig.add_subplot()
        styles = {"point_in_time": ("#0072B2", "-", "point in time"),
                  "lag0": ("#D55E00", "--", "publication lag 0 (look-ahead)")}
        for name in wealth.columns:
            color, ls, label = styles.get(name, ("#999999", "-", name))
            ax.plot(x, wealth[name].to_numpy(), color=color, ls=ls, lw=1.6, label=f"{chosen}: {label}")
        ax.set_yscale("log")
        ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"${v:,.0f}"))
        ax.yaxis.set_minor_formatter(FuncFormatter(lambda v, _: ""))
        _date_axis(ax)
        _legend(fig, ax)
        return to_svg(fig, "lookahead", "Growth of $100, point in time vs look-ahead")


def rolling_chart(frame: pd.DataFrame, model: str, benchmark: str, window: int) -> str:
    """Rolling ``window``-month Sharpe (top; the model and the benchmark) and beta against the benchmark
    (bottom; 1 dashed) of one model. ``frame``: index months, columns ``sharpe``, ``beta`` and
    ``benchmark_sharpe`` (as :func:`job.analytics.rolling_frame`, labelled by each window's last month)."""
    frame = frame.dropna(how="all")
    if frame.empty:
        return ""
    x = _months_to_dates(frame.index)
    fig = _figure(3.6)
    with _style():
        top, bottom = fig.subplots(2, 1, sharex=True)
        top.plot(x, frame["sharpe"].to_numpy(), color=PALETTE[0], lw=1.8, label=f"{model}")
        if "benchmark_sharpe" in frame:
            top.plot(x, frame["benchmark_sharpe"].to_numpy(), color=BENCHMARK_COLOR, lw=1.2, ls="--",
                     label=benchmark)
        top.axhline(0.0, color="#444444", lw=0.8)
        top.set_ylabel(f"{window}-month Sharpe")
        bottom.plot(x, frame["beta"].to_numpy(), color=PALETTE[1], lw=1.6, label=f"{model}: beta vs {benchmark}")
        bottom.axhline(1.0, color="#444444", lw=0.8, ls="--")
        bottom.set_ylabel(f"{window}-month beta")
        _date_axis(bottom)
        handles, labels = top.get_legend_handles_labels()
        more, more_labels = bottom.get_legend_handles_labels()
        fig.legend(handles + more, labels + more_labels, loc="outside upper center", ncols=3, fontsize=8)
        return to_svg(fig, "rolling", f"Rolling {window}-month Sharpe and beta, {model}")
