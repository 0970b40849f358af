"""The frames the expectation suites run on, built by SQL on DuckDB or from the Dataset.

Each frame has a name (what ``meta.frame`` of an expectation in ``expectations/*.json`` refers to), the
columns that name one of its rows in a failure example, and a builder. SQL frames run the file
``sql/validation/<name>.sql`` with named parameters (``$start``, ``$as_of``...; see :func:`sql_parameters`).
Dataset frames are built from what the models will see: the feature matrix, its labels and the training
set, so the checks are made on the data handed on, not on a recomputation of it.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from typing import Any

import duckdb
import numpy as np
import pandas as pd

from job.config import Settings
from job.dataset import MACRO_PREFIX, Dataset
from job.errors import ConfigError
from job.months import month_end, month_start, month_str
from job.resources import sql_path


@dataclass(frozen=True)
class FrameContext:
    """What a frame builder may read: the warehouse, the settings, the dataset (or None) and the as-of month."""

    con: duckdb.DuckDBPyConnection
    settings: Settings
    dataset: Dataset | None
    as_of: pd.Period

    @property
    def dataset_lag(self) -> int:
        """The publication lag the dataset was built with (the configured one when there is no dataset)."""
        if self.dataset is None:
            return self.settings.data.publication_lag_months
        return int(self.dataset.publication_lag_months)


@dataclass(frozen=True)
class Frame:
    """A named frame: its key columns (shown in failure examples) and how to build it."""

    name: str
    keys: tuple[str, ...]
    build: Callable[[FrameContext], pd.DataFrame]
    needs_dataset: bool = False
    doc: str = ""


def month_number(month: pd.Period) -> int:
    """Months since year 0: consecutive months differ by exactly one."""
    return month.year * 12 + month.month - 1


def yyyymm(month: pd.Period) -> int:
    """``202502`` for 2025-02: ordered like months and readable in a failure message."""
    return month.year * 100 + month.month


def sql_parameters(ctx: FrameContext) -> dict[str, Any]:
    """Named parameters available to ``sql/validation/*.sql`` (a file uses the ones it names)."""
    data = ctx.settings.data
    start = pd.Period(data.start, freq="M")
    has_months = ctx.dataset is not None and len(ctx.dataset.months) > 0
    first = ctx.dataset.months[0] if has_months else start
    last = ctx.dataset.months[-1] if has_months else ctx.as_of
    series = ([c[len(MACRO_PREFIX):] for c in ctx.dataset.feature_names if c.startswith(MACRO_PREFIX)]
              if ctx.dataset is not None else [])
    return {
        "start": month_start(start),                   # first decision month of the window
        "window_start": month_start(start - 1),        # its previous month-end is needed for a return
        "first_month": month_start(first),             # first month of the dataset
        "last_month": month_start(last),               # its last month (the as-of month when all is well)
        "as_of": month_start(ctx.as_of),
        "as_of_end": month_end(ctx.as_of),
        "dataset_lag": ctx.dataset_lag,
        "configured_lag": data.publication_lag_months,
        "market_lag": data.market_lag_months,
        "max_stale": data.max_staleness_months,
        "series": series,                              # the macro series of the dataset's features
    }


@cache
def _sql_text(name: str) -> str:
    path = sql_path(f"validation/{name}.sql")
    if not path.is_file():
        raise ConfigError(f"validation frame {name!r} has no SQL file {path}")
    return path.read_text(encoding="utf-8")


def sql_frame(name: str) -> Callable[[FrameContext], pd.DataFrame]:
    """A builder that runs ``sql/validation/<name>.sql`` with the parameters it names."""

    def build(ctx: FrameContext) -> pd.DataFrame:
        text = _sql_text(name)
        wanted = set(re.findall(r"\$([A-Za-z_]\w*)", text))
        params = {k: v for k, v in sql_parameters(ctx).items() if k in wanted}
        return ctx.con.execute(text, params).df()

    return build


def _need(ctx: FrameContext) -> Dataset:
    if ctx.dataset is None:  # guarded by Frame.needs_dataset; kept for type checkers
        raise ValueError("this frame needs the dataset")
    return ctx.dataset


def _month_columns(months: pd.PeriodIndex, prefix: str = "") -> dict[str, Any]:
    return {f"{prefix}month": [month_str(m) for m in months],
            f"{prefix}yyyymm": np.array([yyyymm(m) for m in months], dtype=np.int64),
            f"{prefix}index": np.array([month_number(m) for m in months], dtype=np.int64)}


def feature_months(ctx: FrameContext) -> pd.DataFrame:
    """One row per decision month of the feature matrix, in its order, with the step from the previous one."""
    months = _need(ctx).months
    frame = pd.DataFrame(_month_columns(months))
    frame["step"] = frame["index"].diff().fillna(1).astype(np.int64)
    return frame


def feature_values(ctx: FrameContext) -> pd.DataFrame:
    """The feature matrix in long form (month, feature, value); infinite values become missing."""
    features = _need(ctx).features
    values = features.to_numpy(dtype=np.float64, copy=True)
    values[~np.isfinite(values)] = np.nan
    return pd.DataFrame({
        "month": np.repeat([month_str(m) for m in features.index], features.shape[1]),
        "feature": np.tile(np.asarray(features.columns, dtype=object), features.shape[0]),
        "value": values.reshape(-1),
    })


def macro_feature_columns(ctx: FrameContext) -> pd.DataFrame:
    """One row per macro series the as-of month's fits use (how many usable macro series the models get):
    the features but those expired by then (``Dataset.masked_at``)."""
    dataset = _need(ctx)
    masked = set(dataset.masked_at(ctx.as_of))
    names = [c for c in dataset.feature_names if c.startswith(MACRO_PREFIX) and c not in masked]
    return pd.DataFrame({"feature": names, "series": [n[len(MACRO_PREFIX):] for n in names]})


def _row_months(values: np.ndarray, table: pd.DataFrame) -> list[pd.Period | None]:
    """For each row of ``values``, the month (index of ``table``) whose row holds exactly those values.

    This is how the checks find out which month a label or a feature window really comes from, instead
    of trusting the code that built it.
    """
    lookup: dict[bytes, pd.Period] = {}
    for month, row in zip(table.index, table.to_numpy(dtype=np.float64), strict=True):
        lookup.setdefault(np.ascontiguousarray(row).tobytes(), month)
    return [lookup.get(np.ascontiguousarray(row, dtype=np.float64).tobytes()) for row in values]


def labels(ctx: FrameContext) -> pd.DataFrame:
    """One row per (decision month, asset) whose label month is known by the as-of month and in the dataset.

    ``label_index`` is the month whose returns hold exactly the label's values (missing when the label
    is missing or matches no month), found by matching values rather than trusting Dataset.labels()
    (against the returns as the models see them: missing ones filled with the month's cross-sectional mean).
    """
    dataset = _need(ctx)
    table = dataset.labels()
    last = min(ctx.as_of, dataset.months[-1]) if len(dataset.months) else ctx.as_of
    table = table[table.index < last]
    values = table.to_numpy(dtype=np.float64)
    found = _row_months(values, dataset.filled_returns)
    found = [m if m is not None and not np.isnan(row).any() else None for m, row in zip(found, values, strict=True)]
    n_assets = table.shape[1]
    return pd.DataFrame({
        "month": np.repeat([month_str(m) for m in table.index], n_assets),
        "month_index": np.repeat([month_number(m) for m in table.index], n_assets),
        "label_month": np.repeat([month_str(m) if m is not None else None for m in found], n_assets),
        "label_index": np.repeat([float(month_number(m)) if m is not None else np.nan for m in found], n_assets),
        "asset": np.tile(np.asarray(table.columns, dtype=object), table.shape[0]),
        "label": values.reshape(-1),
    })


def training_set(ctx: FrameContext) -> pd.DataFrame:
    """One row per training pair the models would get at the as-of month (Dataset.training_set).

    ``label_yyyymm``: the month whose returns the label holds; ``window_end_index``: the month whose
    features end the input window. Both are found by matching values, not taken from the month labels.
    """
    dataset = _need(ctx)
    lookback = ctx.settings.models.lookback_months
    if len(dataset.months) < lookback:
        return pd.DataFrame({c: pd.Series(dtype=t) for c, t in [
            ("month", object), ("label_month", object), ("label_yyyymm", float), ("label_index", float),
            ("window_end_index", float)]})
    x, y, months = dataset.training_set(lookback, ctx.as_of)
    label_found = _row_months(y, dataset.filled_returns) if len(y) else []
    window_found = _row_months(x[:, -1, :], dataset.features) if len(x) else []
    return pd.DataFrame({
        "month": [month_str(m) for m in months],
        "label_month": [month_str(m) if m is not None else None for m in label_found],
        "label_yyyymm": [float(yyyymm(m)) if m is not None else np.nan for m in label_found],
        "label_index": [float(month_number(m)) if m is not None else np.nan for m in label_found],
        "window_end_index": [float(month_number(m)) if m is not None else np.nan for m in window_found],
    })


def feature_availability(ctx: FrameContext) -> pd.DataFrame:
    """Every macro value of the feature matrix with its availability (SQL) and the dataset's own value.

    Rows come from ``sql/validation/feature_availability.sql`` at the dataset's publication lag, outer-
    joined to the dataset's macro columns: ``abs_diff`` is the gap between the dataset's value and the
    warehouse's (missing when the warehouse has no such value). The cells of an expired series from its
    expiry month are left out: they are not features of any fit (``Dataset.expired``).
    """
    dataset = _need(ctx)
    sql = sql_frame("feature_availability")(ctx)
    macro = [c for c in dataset.feature_names if c.startswith(MACRO_PREFIX)]
    wide = dataset.features[macro]
    own = pd.DataFrame({
        "month": np.repeat([month_str(m) for m in wide.index], wide.shape[1]),
        "series": np.tile(np.asarray([c[len(MACRO_PREFIX):] for c in macro], dtype=object), wide.shape[0]),
        "dataset_value": wide.to_numpy(dtype=np.float64).reshape(-1),
    })
    # An expired series' cells from its expiry month are placeholders no fit reads (Dataset.expired)
    read = np.ones(wide.shape, dtype=bool)
    for j, name in enumerate(macro):
        if name in dataset.expired:
            read[:, j] = wide.index < dataset.expired[name]
    own = own[read.reshape(-1)].reset_index(drop=True)
    sql["month"] = sql["month"].astype(object)
    sql["series"] = sql["series"].astype(object)
    merged = own.merge(sql, on=["month", "series"], how="left")
    merged["abs_diff"] = (merged["dataset_value"] - merged["value"]).abs()
    return merged


FRAMES: dict[str, Frame] = {f.name: f for f in [
    Frame("prices_daily", ("asset", "date"), sql_frame("prices_daily"),
          doc="daily adjusted closes of the universe in the window"),
    Frame("monthly_returns", ("asset", "month"), sql_frame("monthly_returns"),
          doc="every (asset, month) of each asset's life in [data.start, as-of] with its monthly return (NULL = gap)"),
    Frame("return_gaps", ("n_assets", "n_months"), sql_frame("return_gaps"),
          doc="every gap inside an asset's life in the window, in one row (none when there is no gap)"),
    Frame("price_runs", ("asset", "first_day"), sql_frame("price_runs"),
          doc="runs of identical consecutive closes (2 trading days or more)"),
    Frame("macro_gaps", ("series", "vintage", "period"), sql_frame("macro_gaps"),
          doc="months without a value inside a macro series' history, per vintage"),
    Frame("macro_series", ("series",), sql_frame("macro_series"),
          doc="one row per macro series: metadata and missing values"),
    Frame("macro_available", ("series", "period", "vintage"), sql_frame("macro_available"),
          doc="macro observations with available_at at the dataset's lag"),
    Frame("risk_free", ("months", "n_months", "source"), sql_frame("risk_free"),
          doc="runs of months of the window in which no source had a risk-free value (forward-filled)"),
    Frame("feature_months", ("month",), feature_months, needs_dataset=True,
          doc="decision months of the feature matrix"),
    Frame("feature_values", ("month", "feature"), feature_values, needs_dataset=True,
          doc="the feature matrix, long"),
    Frame("macro_feature_columns", ("feature",), macro_feature_columns, needs_dataset=True,
          doc="macro series used as features"),
    Frame("feature_availability", ("month", "series", "period"), feature_availability, needs_dataset=True,
          doc="macro feature values with available_at and availability at the configured lag"),
    Frame("labels", ("month", "asset"), labels, needs_dataset=True,
          doc="labels (next month's returns) per decision month and asset"),
    Frame("training_set", ("month",), training_set, needs_dataset=True,
          doc="training pairs at the as-of month"),
]}


def expectation_parameters(ctx: FrameContext) -> dict[str, Any]:
    """Values for ``{"$PARAMETER": name}`` in expectation kwargs (GX suite parameters)."""
    start = pd.Period(ctx.settings.data.start, freq="M")
    return {
        "as_of": yyyymm(ctx.as_of),
        "start": yyyymm(start),
        "configured_lag": ctx.settings.data.publication_lag_months,
        "dataset_lag": ctx.dataset_lag,
        "n_months": len(pd.period_range(start, ctx.as_of, freq="M")),
    }
