"""The report's input contract: :class:`ReportData`, plain frames and dicts for the seven sections.

:func:`job.report.published.report_data` fills a :class:`ReportData` from the artifacts a month publishes
(so ``rotation run`` and ``rotation report`` render the same page from the same files); the renderers
(:func:`job.report.render_html`, :func:`job.report.render_text`) only read it. Nothing here is stored: the
published parquet tables and the manifest are the record.

Conventions for every frame and dict below:

- months are ``"YYYY-MM"`` strings (a :class:`pandas.Period` is accepted and converted);
- returns, weights, MAE, drawdowns, volatility, CAGR, hit rate and turnover are fractions
  (0.012 = 1.2 %), never percentages;
- metric dicts are nested ``{name: {period: {metric: value}}}`` where ``name`` is a model or one of
  :data:`BENCHMARK_KEY` / :data:`EQUAL_WEIGHT_KEY`, ``period`` is one of :data:`PERIODS`, and
  ``metric`` is preferably one of the keys in :data:`METRICS` (unknown keys are shown after them);
  values are numbers, ``"YYYY-MM"`` strings (drawdown dates) or ``None``.

Frames are validated and normalised on construction (required columns present, months as strings,
numeric columns as float); a missing column raises ``ValueError`` naming it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import pandas as pd

from job.model_names import BASELINES  # noqa: F401 (the report modules read the one tuple from here)
from job.months import month_label

# Section anchors and headings, in the order the issue asks for. Tests and readers rely on them.
SECTIONS: tuple[tuple[str, str], ...] = (
    ("decision", "1. The decision"),
    ("performance", "2. Performance vs the benchmark and equal weight"),
    ("forecast-quality", "3. Forecast quality"),
    ("allocation", "4. Allocation history"),
    ("lookahead", "5. Look-ahead audit"),
    ("data-quality", "6. Data quality"),
    ("provenance", "7. Provenance"),
)
SECTION_TITLES: tuple[str, ...] = tuple(title for _, title in SECTIONS)

DISCLAIMER = ("This report is research, not investment advice. Past and simulated performance does not "
              "guarantee future results; nothing here is a recommendation to buy or sell any security.")
SYNTHETIC_BANNER = "SYNTHETIC DATA"

BENCHMARK_KEY = "benchmark"
EQUAL_WEIGHT_KEY = "equal_weight"
PERIODS: tuple[str, ...] = ("full", "last_20pct")
PERIOD_LABELS = {"full": "Full out-of-sample span", "last_20pct": "Last 20 % of months (the original's window)"}


class MetricSpec(NamedTuple):
    """One row of the metrics tables: the key in the metric dicts, its label and how it is formatted.

    ``fmt``: ``pct`` (fraction shown as %), ``num`` (2 decimals), ``x`` (multiple, 2 decimals), ``month``.
    """

    key: str
    label: str
    fmt: str


# The metric keys the report knows (those of job/metrics.py's metrics document), in display order. Keys a
# metrics dict carries beyond these are shown after them with a generic format; keys it lacks are left
# out when no series has them; WINDOW_KEYS describe the period and go into its heading instead.
METRICS: tuple[MetricSpec, ...] = (
    MetricSpec("cagr", "CAGR", "pct"),
    MetricSpec("total_return", "Total return", "pct"),
    MetricSpec("annual_volatility", "Volatility (annualised)", "pct"),
    MetricSpec("sharpe", "Sharpe", "num"),
    MetricSpec("sortino", "Sortino", "num"),
    MetricSpec("max_drawdown", "Maximum drawdown", "pct"),
    MetricSpec("max_drawdown_peak", "Drawdown peak", "month"),
    MetricSpec("max_drawdown_trough", "Drawdown trough", "month"),
    MetricSpec("max_drawdown_recovery", "Recovered by", "month"),
    MetricSpec("calmar", "Calmar", "num"),
    MetricSpec("hit_rate", "Hit rate vs benchmark", "pct"),
    MetricSpec("avg_turnover", "Average monthly turnover", "pct"),
    MetricSpec("avg_capital_deployed", "Average capital deployed", "x"),
    MetricSpec("avg_gross_exposure", "Average gross exposure", "x"),
    MetricSpec("total_cost", "Total transaction cost", "pct"),
    MetricSpec("mean_monthly_return", "Mean monthly return", "pct"),
    MetricSpec("mean_risk_free_annual", "Risk-free rate (annual mean)", "pct"),
    MetricSpec("original_std", "Std, original definition", "pct"),
    MetricSpec("original_sortino", "Sortino, original definition", "num"),
)
WINDOW_KEYS: tuple[str, ...] = ("start", "end", "months")
HEADLINE_METRICS: tuple[str, ...] = ("cagr", "annual_volatility", "sharpe", "max_drawdown")

MetricTable = dict[str, dict[str, dict[str, Any]]]
"""``{name: {period: {metric: value}}}``: names are models plus ``benchmark`` and ``equal_weight``."""


# --------------------------------------------------------------------------------------------- frames

def _frame(df: pd.DataFrame | None, name: str, columns: Mapping[str, str]) -> pd.DataFrame:
    """A normalised copy of ``df``: required ``columns`` ({name: kind}) present and coerced.

    Kinds: ``str``, ``month``, ``float``, ``int``, ``bool``. Extra columns are kept as they are.
    """
    if df is None:
        df = pd.DataFrame({col: pd.Series(dtype=float if kind == "float" else object)
                           for col, kind in columns.items()})
    if not isinstance(df, pd.DataFrame):
        raise TypeError(f"{name} must be a pandas DataFrame, not {type(df).__name__}")
    missing = [col for col in columns if col not in df.columns]
    if missing:
        raise ValueError(f"{name} lacks column(s) {missing}; it needs {list(columns)}")
    out = df.reset_index(drop=True).copy()
    for col, kind in columns.items():
        values = out[col]
        if kind == "month":
            out[col] = pd.Series([month_label(v) for v in values], dtype=object, index=out.index)
        elif kind == "str":
            out[col] = pd.Series([str(v) for v in values], dtype=object, index=out.index)
        elif kind == "float":
            out[col] = pd.to_numeric(values, errors="raise").astype("float64")
        elif kind == "int":
            out[col] = pd.to_numeric(values, errors="raise").astype("int64")
        elif kind == "bool":
            out[col] = values.astype(bool)
    return out


# ------------------------------------------------------------------------------------------- sections

ALLOCATION_COLUMNS = {"model": "str", "asset": "str", "sector": "str", "predicted_return": "float",
                      "weight": "float", "flag": "bool", "multiplier": "float"}
RETURNS_COLUMNS = {"month": "month", "model": "str", "gross_return": "float", "net_return": "float"}
MARKET_COLUMNS = {"month": "month", "benchmark_return": "float", "equal_weight_return": "float",
                  "risk_free": "float"}
MAE_COLUMNS = {"model": "str", "asset": "str", "mae": "float"}
IC_COLUMNS = {"month": "month", "model": "str", "ic": "float"}
WEIGHTS_COLUMNS = {"model": "str", "month": "month", "asset": "str", "weight": "float"}
EXPOSURE_COLUMNS = {"model": "str", "month": "month", "capital": "float", "n_flagged": "int",
                    "turnover": "float"}
LOOKAHEAD_RETURNS_COLUMNS = {"month": "month", "model": "str", "alignment": "str", "net_return": "float"}


@dataclass
class DecisionSection:
    """Section 1: next month's allocation.

    ``allocations``: one row per (model, asset) with columns ``model``, ``asset`` (ticker), ``sector``,
    ``predicted_return`` (next-month total return forecast), ``weight`` (final weight w_i),
    ``flag`` (leverage flag: prediction above the threshold), ``multiplier`` (L_i). Asset order is the
    universe order of the first model's rows. ``capital``: capital deployed C = sum(w_i * L_i) per model.
    """

    target_month: str
    chosen_model: str
    allocations: pd.DataFrame
    capital: dict[str, float]
    threshold: float | None = None
    factor: float | None = None

    def __post_init__(self) -> None:
        self.target_month = month_label(self.target_month)
        self.allocations = _frame(self.allocations, "decision.allocations", ALLOCATION_COLUMNS)
        self.capital = {str(k): float(v) for k, v in self.capital.items()}

    @property
    def models(self) -> list[str]:
        """Models in the order of first appearance."""
        return list(dict.fromkeys(self.allocations["model"]))


@dataclass
class PerformanceSection:
    """Section 2: out-of-sample performance.

    ``returns``: one row per (model, month) with the portfolio's ``gross_return`` (before costs) and
    ``net_return`` (after transaction costs). ``market``: one row per month with ``benchmark_return``,
    ``equal_weight_return`` and ``risk_free`` (monthly). ``metrics_net`` / ``metrics_gross``: the
    metric tables (:data:`MetricTable`) with and without costs; benchmark and equal weight under
    :data:`BENCHMARK_KEY` and :data:`EQUAL_WEIGHT_KEY` (they carry no costs, so the same in both).
    """

    returns: pd.DataFrame
    market: pd.DataFrame
    metrics_net: MetricTable
    metrics_gross: MetricTable
    benchmark: str = "SPY"
    cost_bps: float | None = None
    caveat: str = ""  # a plain sentence opening the section ('' = none): e.g. a span too short to tell skill from luck

    def __post_init__(self) -> None:
        self.returns = _frame(self.returns, "performance.returns", RETURNS_COLUMNS)
        self.market = _frame(self.market, "performance.market", MARKET_COLUMNS)


@dataclass
class ForecastQualitySection:
    """Section 3: how good the forecasts were, out of sample.

    ``mae``: one row per (model, asset) with the mean absolute error of the monthly return forecast;
    the baselines appear as models named ``persistence`` and ``historical-mean`` (:data:`BASELINES`);
    an optional row with asset ``all`` holds the overall MAE (otherwise the mean over assets is shown).
    ``ic``: one row per (month, model): the rank information coefficient (Spearman of predicted vs
    realised across assets). ``ic_summary`` (optional): ``{model: {"mean", "t_stat", "n"}}`` as the
    metrics computed it; when empty the report computes mean, t = mean / (sd / sqrt(n)) and n from ``ic``.
    """

    mae: pd.DataFrame
    ic: pd.DataFrame
    ic_summary: dict[str, dict[str, float]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.mae = _frame(self.mae, "forecast_quality.mae", MAE_COLUMNS)
        self.ic = _frame(self.ic, "forecast_quality.ic", IC_COLUMNS)

    def ic_stats(self) -> dict[str, dict[str, float | None]]:
        """Mean IC, its t-statistic and the number of months per model (given, else computed)."""
        out: dict[str, dict[str, float | None]] = {}
        for model, group in self.ic.groupby("model", sort=False):
            values = group["ic"].dropna().to_numpy()
            n = len(values)
            mean = float(values.mean()) if n else None
            sd = float(values.std(ddof=1)) if n > 1 else None
            t = mean / (sd / math.sqrt(n)) if mean is not None and sd else None
            positive = float((values > 0).mean()) if n else None
            out[str(model)] = {"mean": mean, "t_stat": t, "n": float(n), "share_positive": positive}
        for model, given in self.ic_summary.items():
            out.setdefault(model, {}).update({k: v for k, v in given.items() if v is not None})
        return out


@dataclass
class AllocationSection:
    """Section 4: what the strategy held.

    ``weights``: one row per (model, month, asset) with the weight held over that month.
    ``exposure``: one row per (model, month) with ``capital`` deployed (sum of w_i * L_i),
    ``n_flagged`` (assets with the leverage flag) and ``turnover`` (sum of |w_t - w_{t-1}|).
    """

    weights: pd.DataFrame
    exposure: pd.DataFrame

    def __post_init__(self) -> None:
        self.weights = _frame(self.weights, "allocation.weights", WEIGHTS_COLUMNS)
        self.exposure = _frame(self.exposure, "allocation.exposure", EXPOSURE_COLUMNS)


@dataclass
class LookaheadSection:
    """Section 5: the same backtest with publication lag 0 (the original notebook's alignment).

    ``point_in_time`` and ``lag0``: :data:`MetricTable` s (net of costs) of the point-in-time backtest
    (macro lag ``publication_lag_months``) and of the lag-0 one. ``returns`` (optional): one row per
    (month, model, alignment) with ``alignment`` in {``point_in_time``, ``lag0``} and ``net_return``,
    for the chart.
    """

    point_in_time: MetricTable
    lag0: MetricTable
    publication_lag_months: int = 1
    returns: pd.DataFrame | None = None

    def __post_init__(self) -> None:
        self.returns = _frame(self.returns, "lookahead.returns", LOOKAHEAD_RETURNS_COLUMNS)


@dataclass
class ValidationSuite:
    """One Great Expectations suite's outcome: checks run, critical failures, warnings, worst example."""

    name: str
    checks: int
    failed: int
    warnings: int = 0
    worst: str = ""


@dataclass
class DataSource:
    """One data source as ingested: what it is, the span it covers, which vintage, how many rows."""

    name: str
    kind: str
    first: str = ""
    last: str = ""
    vintage: str = ""
    rows: int | None = None
    note: str = ""


@dataclass
class DataQualitySection:
    """Section 6: validation summary and data sources. ``synthetic`` puts a banner on top of the report."""

    synthetic: bool
    source: str
    suites: list[ValidationSuite] = field(default_factory=list)
    sources: list[DataSource] = field(default_factory=list)
    passed: bool = True
    # each asset's first month with a return and the first month it was held (it enters the universe with
    # enough history for a feature window and a label; None: not yet by the as-of month), in universe order
    asset_first_months: dict[str, str | None] = field(default_factory=dict)
    asset_first_held_months: dict[str, str | None] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.suites = [s if isinstance(s, ValidationSuite) else ValidationSuite(**s) for s in self.suites]
        self.sources = [s if isinstance(s, DataSource) else DataSource(**s) for s in self.sources]


@dataclass
class ProvenanceSection:
    """Section 7: what produced this report. ``configuration`` must already have secrets masked
    (build it with :func:`job.report.collect_provenance`, which masks them)."""

    run_id: str
    created_at: str
    code_version: str
    git_commit: str | None
    library_versions: dict[str, str]
    data_fingerprint: str
    model_fingerprints: dict[str, str]
    configuration: dict[str, Any]
    secrets: dict[str, str] = field(default_factory=dict)
    stage_timings: dict[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.stage_timings = {str(k): float(v) for k, v in self.stage_timings.items()}


SCOREBOARD_COLUMNS = {"model": "str", "kind": "str", "mae": "float", "rank_ic_mean": "float",
                      "rank_ic_t_newey_west": "float", "rank_ic_p_newey_west": "float", "sign_hit_rate": "float",
                      "rank_hit_rate": "float"}
EXECUTION_COLUMNS = {"model": "str", "timing": "str", "cagr": "float", "sharpe": "float",
                     "annual_volatility": "float", "max_drawdown": "float"}
LEVERAGE_COLUMNS = {"model": "str", "min": "float", "p05": "float", "p50": "float", "p95": "float", "max": "float",
                    "share_flagged": "float", "months_flagged": "int", "months": "int"}
TRIGGER_COLUMNS = {"model": "str", "asset": "str", "months": "int"}


@dataclass
class ScoreboardSection:
    """One scoreboard: every model and baseline on the same out-of-sample rows (job/scoreboard.py).

    ``table``: one row per model or baseline (``kind`` = ``model`` | ``baseline``), in MAE order, with
    ``mae``, ``rank_ic_mean``, ``rank_ic_t_newey_west``, ``rank_ic_p_newey_west``, ``sign_hit_rate``,
    ``rank_hit_rate`` and, where present, ``rank_ic_newey_west_lag``, ``mae_rank``, ``mae_ratio_vs_<b>`` and
    ``mae_dm_p_vs_<b>`` (``<b>`` a baseline, ``-`` as ``_``). ``start``/``end``: target months of the common
    window; ``months``: decision months in it; ``assets``: assets scored.
    """

    table: pd.DataFrame
    start: str = ""
    end: str = ""
    months: int = 0
    assets: int = 0

    def __post_init__(self) -> None:
        self.table = _frame(self.table, "scoreboard.table", SCOREBOARD_COLUMNS)


@dataclass
class ExecutionSection:
    """When the backtest trades (``backtest.execution_lag_days``; 0 = at the month-end close) and what
    that changes: ``table`` has one row per (model, timing) with ``timing`` in {``executed``,
    ``month_end``}: CAGR, Sharpe, volatility and maximum drawdown net of costs over the same months
    (``start``..``end``); the benchmark and equal weight appear as models ``benchmark``/``equal_weight``."""

    execution_lag_days: int
    assumption: str
    table: pd.DataFrame | None = None
    start: str = ""
    end: str = ""
    months: int = 0

    def __post_init__(self) -> None:
        self.table = _frame(self.table, "execution.table", EXECUTION_COLUMNS)


@dataclass
class LeverageSection:
    """The leverage rule against the predictions: ``quantiles`` one row per model/baseline (min, p05, p50,
    p95, max of the predicted monthly returns, share of (month, asset) over the threshold, months with a
    flag out of months); ``triggers`` one row per (model, asset) flagged at least once with its months;
    ``sentence``: a plain sentence (says so when the rule never triggered)."""

    threshold: float
    sentence: str
    quantiles: pd.DataFrame | None = None
    triggers: pd.DataFrame | None = None
    factor: float | None = None

    def __post_init__(self) -> None:
        self.quantiles = _frame(self.quantiles, "leverage.quantiles", LEVERAGE_COLUMNS)
        self.triggers = _frame(self.triggers, "leverage.triggers", TRIGGER_COLUMNS)


LOOKAHEAD_NOT_RUN = ("the lag-0 backtest was not run for this month (it doubles the backtest time); "
                     "run `rotation backtest --publication-lag 0` to produce it")


@dataclass
class ReportData:
    """Everything the report shows, for one as-of month and one run. See the module docstring."""

    as_of: str
    decision: DecisionSection
    performance: PerformanceSection
    forecast_quality: ForecastQualitySection
    allocation: AllocationSection
    data_quality: DataQualitySection
    provenance: ProvenanceSection
    lookahead: LookaheadSection | None = None
    lookahead_not_run_reason: str = LOOKAHEAD_NOT_RUN
    title: str = "Sector rotation: monthly report"
    disclaimer: str = DISCLAIMER
    # Issue 15 (job/verdict.py, job/scoreboard.py, job/execution.py, job/leverage.py). ``verdict``: plain
    # sentences computed from the metrics, shown first.
    # ``analytics``: metrics-document sections as they are (relative, significance, distribution,
    # drawdowns, calendar_years, deflated_sharpe, baselines), ``{section: {"models": {name: {period: ...}}}}``.
    verdict: list[str] = field(default_factory=list)
    scoreboard: ScoreboardSection | None = None
    execution: ExecutionSection | None = None
    leverage: LeverageSection | None = None
    analytics: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.as_of = month_label(self.as_of)

    @property
    def run_id(self) -> str:
        return self.provenance.run_id

    @property
    def synthetic(self) -> bool:
        return self.data_quality.synthetic

    @property
    def models(self) -> list[str]:
        """Models in report order: those of the decision, then any other with returns."""
        models = self.decision.models
        models += [m for m in dict.fromkeys(self.performance.returns["model"]) if m not in models]
        return models
