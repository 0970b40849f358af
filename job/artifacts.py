"""The artifact contract: every kind of file the job publishes, defined once.

A kind has a name (the first path segment and, for tables, the view ``rotation query`` gives it), its
file names, a pyarrow schema for tables, and the columns by which a newer publication replaces rows of
an older one (``merge_on``). Every writer goes through :meth:`Kind.table` (columns checked, types cast),
``rotation query`` and ``sql/store_views.sql`` define one view per table kind, the report and the tests
read the same names. Paths follow DESIGN.md::

    {kind}/as_of=YYYY-MM/run_id=<run id>/{file}

``as_of`` and ``run_id`` live in the path (hive partitions), never inside the files. Months inside the
files are ``YYYY-MM`` text: ``decision_month`` (the last complete month when the decision was made) and
``target_month`` (the month the forecast, weight or return is for, ``decision_month + 1``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import pandas as pd
import pyarrow as pa

from job.errors import ConfigError

MONTH = pa.string()
F64 = pa.float64()


class ContractError(ValueError):
    """A frame does not match its kind's schema (a bug in the writer, not bad user data)."""


@dataclass(frozen=True)
class Kind:
    """One artifact kind.

    Parameters
    ----------
    name:
        First path segment; also the DuckDB view name for table kinds.
    files:
        File names under a run's folder (``part-0.parquet`` for tables).
    description:
        One line for the README and ``rotation query --help``.
    schema:
        pyarrow schema of the file's columns (table kinds only).
    merge_on:
        Columns identifying rows that a newer publication of the same month replaces; the older rows
        whose values are absent from the newer table are kept. Empty: the newer file replaces the kind.
    open_columns:
        Extra float columns beyond ``schema`` are allowed (the sweep's metric columns).
    """

    name: str
    files: tuple[str, ...]
    description: str
    schema: pa.Schema | None = None
    merge_on: tuple[str, ...] = ()
    open_columns: bool = False

    @property
    def is_table(self) -> bool:
        return self.schema is not None

    @property
    def columns(self) -> list[str]:
        return [] if self.schema is None else list(self.schema.names)

    def prefix(self, as_of: str, run_id: str) -> str:
        """``{name}/as_of={as_of}/run_id={run_id}/``."""
        return f"{self.name}/as_of={check_as_of(as_of)}/run_id={check_run_id(run_id)}/"

    def key(self, as_of: str, run_id: str, file: str | None = None) -> str:
        """The key of one of this kind's files (default: its first file)."""
        name = file or self.files[0]
        if name not in self.files:
            raise ConfigError(f"{name!r} is not a file of artifact kind {self.name!r}")
        return self.prefix(as_of, run_id) + name

    def table(self, frame: pd.DataFrame) -> pa.Table:
        """``frame`` as a pyarrow table of exactly this kind's schema (columns in order, types cast).

        Raises :class:`ContractError` naming the missing or unexpected columns, or the column that cannot
        be cast. ``Period`` columns are written as ``YYYY-MM`` text.
        """
        if self.schema is None:
            raise ContractError(f"artifact kind {self.name!r} is not a table")
        frame = frame.reset_index(drop=True)
        missing = [c for c in self.schema.names if c not in frame.columns]
        extra = [c for c in frame.columns if c not in self.schema.names]
        if missing:
            raise ContractError(f"{self.name}: missing column(s) {', '.join(missing)}")
        if extra and not self.open_columns:
            raise ContractError(f"{self.name}: unexpected column(s) {', '.join(map(str, extra))}")
        fields = list(self.schema)
        if self.open_columns:
            fields += [pa.field(str(c), F64) for c in extra]
        arrays = []
        for fld in fields:
            values = frame[fld.name]
            if isinstance(values.dtype, pd.PeriodDtype):
                values = values.astype(str)
            try:
                arrays.append(pa.array(values.to_numpy(dtype=object if fld.type == MONTH else None),
                                       type=fld.type, from_pandas=True))
            except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError, ValueError) as exc:
                raise ContractError(f"{self.name}.{fld.name}: cannot be written as {fld.type} ({exc})") from None
        return pa.Table.from_arrays(arrays, schema=pa.schema(fields))


def _schema(*fields: tuple[str, pa.DataType]) -> pa.Schema:
    return pa.schema([pa.field(name, kind) for name, kind in fields])


FORECASTS = Kind(
    "forecasts", ("part-0.parquet",),
    "next month's forecast of every model: one row per (model, asset)",
    _schema(("model", pa.string()), ("decision_month", MONTH), ("target_month", MONTH), ("asset", pa.string()),
            ("sector", pa.string()), ("predicted", F64), ("validation_mae", F64), ("train_end", MONTH),
            ("model_fingerprint", pa.string())),
    merge_on=("model",))
WEIGHTS = Kind(
    "weights", ("part-0.parquet",),
    "next month's weights of every model: one row per (model, asset)",
    _schema(("model", pa.string()), ("decision_month", MONTH), ("target_month", MONTH), ("asset", pa.string()),
            ("sector", pa.string()), ("predicted", F64), ("weight", F64), ("flag", pa.bool_()),
            ("multiplier", F64), ("exposure", F64), ("capital_deployed", F64), ("mode", pa.string())),
    merge_on=("model",))
BACKTEST = Kind(
    "backtest", ("part-0.parquet",),
    "walk-forward portfolio returns: one row per (model, decision month)",
    _schema(("model", pa.string()), ("decision_month", MONTH), ("target_month", MONTH),
            ("portfolio_return", F64), ("portfolio_return_net", F64), ("benchmark_return", F64),
            ("equal_weight_return", F64), ("capital_deployed", F64), ("gross_exposure", F64),
            ("turnover", F64), ("cost", F64), ("risk_free", F64), ("levered_assets", pa.int64())),
    merge_on=("model",))
BACKTEST_FORECASTS = Kind(
    "backtest_forecasts", ("part-0.parquet",),
    "walk-forward forecasts against realised returns (models and baselines): one row per (model, decision "
    "month, asset)",
    _schema(("model", pa.string()), ("decision_month", MONTH), ("target_month", MONTH), ("asset", pa.string()),
            ("predicted", F64), ("realised", F64), ("fit_month", MONTH), ("train_end", MONTH)),
    merge_on=("model",))
BACKTEST_WEIGHTS = Kind(
    "backtest_weights", ("part-0.parquet",),
    "walk-forward weights: one row per (model, decision month, asset)",
    _schema(("model", pa.string()), ("decision_month", MONTH), ("target_month", MONTH), ("asset", pa.string()),
            ("weight", F64), ("flag", pa.bool_()), ("multiplier", F64), ("exposure", F64)),
    merge_on=("model",))
METRICS = Kind(
    "metrics", ("part-0.parquet",),
    "performance and forecast-quality figures, one long table: one row per (section, model, period, metric)",
    _schema(("section", pa.string()), ("model", pa.string()), ("period", pa.string()), ("metric", pa.string()),
            ("value", F64), ("value_text", pa.string()), ("path", pa.string())),
    merge_on=("section", "model"))
LOOKAHEAD_BACKTEST = Kind(
    "lookahead_backtest", ("part-0.parquet",),
    "the look-ahead audit: the walk-forward portfolio again at publication lag 0 (the original notebook's "
    "alignment, labelled look-ahead): one row per (model, decision month)",
    BACKTEST.schema, merge_on=("model",))
SWEEP = Kind(
    "sweep", ("part-0.parquet",),
    "strategy-parameter sweep on the walk-forward forecasts: one row per (model, threshold, factor, shrinkage)",
    _schema(("model", pa.string()), ("threshold", F64), ("factor", F64), ("shrinkage", F64), ("mode", pa.string()),
            ("cost_bps", F64), ("start", MONTH), ("end", MONTH)),
    merge_on=("model",), open_columns=True)
VALIDATION = Kind("validation", ("validation.json",), "Great Expectations results of the month's data")
REPORTS = Kind("reports", ("report.html",), "the self-contained HTML report")

KINDS: tuple[Kind, ...] = (FORECASTS, WEIGHTS, BACKTEST, BACKTEST_FORECASTS, BACKTEST_WEIGHTS, LOOKAHEAD_BACKTEST,
                           METRICS, SWEEP, VALIDATION, REPORTS)
BY_NAME: dict[str, Kind] = {k.name: k for k in KINDS}
TABLE_KINDS: tuple[Kind, ...] = tuple(k for k in KINDS if k.is_table)
# Kinds earlier versions published; garbage collection still looks for them.
RETIRED_KINDS: tuple[str, ...] = ("backtest_positions", "report_data")

AS_OF_RE = re.compile(r"^\d{4}-(0[1-9]|1[0-2])$")
RUN_ID_RE = re.compile(r"^[0-9A-Za-z][0-9A-Za-z._-]*$")
RUN_PATH_RE = re.compile(r"^(?P<kind>[a-z][a-z0-9_-]*)/as_of=(?P<as_of>[^/]+)/run_id=(?P<run_id>[^/]+)/(?P<file>.+)$")


def check_as_of(as_of: str) -> str:
    if not AS_OF_RE.match(as_of):
        raise ConfigError(f"as-of month {as_of!r} is not YYYY-MM")
    return as_of


def check_run_id(run_id: str) -> str:
    if not RUN_ID_RE.match(run_id):
        raise ConfigError(f"run id {run_id!r} may hold only letters, digits, '.', '_' and '-'")
    return run_id


def kind_of(path: str) -> str | None:
    """The kind of a published path (``weights/as_of=.../run_id=.../part-0.parquet`` -> ``weights``)."""
    match = RUN_PATH_RE.match(path)
    return match["kind"] if match else None


def get(name: str) -> Kind:
    """The kind called ``name``; ConfigError for an unknown one."""
    try:
        return BY_NAME[name]
    except KeyError:
        raise ConfigError(f"unknown artifact kind {name!r}", hint=f"kinds: {', '.join(BY_NAME)}") from None
