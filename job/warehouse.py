"""The DuckDB warehouse: raw tables, SQL views, idempotent ingest and the point-in-time dataset.

DDL and views live in ``sql/schema.sql`` and ``sql/views.sql``. An ingest is one transaction: it either
lands whole or leaves the previous tables exactly as they were. Upserts keep ``ingested_at`` of rows
whose value did not change, so re-ingesting the same data leaves the tables identical.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pandas as pd

from job.config import Settings, Universe
from job.dataset import MACRO_PREFIX, RETURN_PREFIX, Dataset, DatasetInfo, fill_cross_sectional, presence
from job.errors import ConfigError, DataError, LockHeld
from job.logs import get_logger
from job.months import last_complete_month, month_start, month_str
from job.resources import sql_path
from job.series import catalogue
from job.sources.base import SourceData

log = get_logger("warehouse")
LIVE_SOURCES = ("yahoo", "fred", "fred-md")


@contextmanager
def connect(path: str | Path, *, read_only: bool = False) -> Iterator[duckdb.DuckDBPyConnection]:
    """Open the warehouse, creating tables and (re)creating views; map a held file lock to exit 6."""
    path = Path(path)
    if read_only and not path.is_file():
        raise ConfigError(f"no warehouse at {path}", hint="run `rotation ingest` first, or pass --warehouse")
    if not read_only:
        path.parent.mkdir(parents=True, exist_ok=True)
    try:
        con = duckdb.connect(str(path), read_only=read_only)
    except duckdb.IOException as exc:
        if "lock" in str(exc).lower():
            raise LockHeld(f"the warehouse {path} is in use by another process",
                           hint="wait for the other run to finish") from None
        raise ConfigError(f"cannot open the warehouse {path}: {str(exc).splitlines()[0]}") from None
    try:
        if not read_only:
            con.execute(sql_path("schema.sql").read_text())
        con.execute(sql_path("views.sql").read_text()) if not read_only else _temp_views(con)
        yield con
    except BaseException:  # Ctrl-C / SIGTERM: stop DuckDB's threads, or close() waits for the query to end
        con.interrupt()
        raise
    finally:
        con.close()


def _temp_views(con: duckdb.DuckDBPyConnection) -> None:
    """Views on a read-only connection go to the temp schema (the file cannot be written)."""
    text = sql_path("views.sql").read_text()
    text = text.replace("CREATE OR REPLACE VIEW ", "CREATE OR REPLACE TEMP VIEW ")
    text = text.replace("CREATE OR REPLACE MACRO ", "CREATE OR REPLACE TEMP MACRO ")
    con.execute(text)


def _series_meta(data: SourceData) -> pd.DataFrame:
    if "series_meta" in data.details:
        return pd.DataFrame(data.details["series_meta"])
    return pd.DataFrame([{"series": s.name, "tcode": s.tcode, "market": s.market, "grp": s.group,
                          "description": s.description} for s in catalogue().values()])


def _assets_frame(universe: Universe) -> pd.DataFrame:
    return pd.DataFrame({"asset": universe.tickers, "sector": list(universe.assets.values()),
                         "is_benchmark": [t == universe.benchmark for t in universe.tickers],
                         "position": range(len(universe.tickers))})


_UPSERTS = {
    "prices_daily": (["asset", "date"], ["close", "source", "origin"], "close"),
    "macro_observations": (["series", "period", "vintage"],
                           ["value", "vintage_release", "realtime_start", "source", "origin"], "value"),
}


def _upsert(con: duckdb.DuckDBPyConnection, table: str, frame: pd.DataFrame, source: str, now: datetime) -> int:
    """Insert or update ``frame`` into ``table``; returns the number of new or changed rows.

    Rows of another source are removed first: a table holds one source's data at a time.
    """
    keys, cols, value_col = _UPSERTS[table]
    other = con.execute(f"SELECT count(*) FROM {table} WHERE source <> ?", [source]).fetchone()[0]
    if other:
        log.info("replacing %d %s rows of another source with %s data", other, table, source)
        con.execute(f"DELETE FROM {table} WHERE source <> ?", [source])
    staged = frame.assign(source=source, ingested_at=now)
    con.register("staged", staged)
    try:
        on = " AND ".join(f"t.{k} = s.{k}" for k in keys)
        # Only rows that are new or differ in some column go through the upsert: a row equal in every
        # column would be rewritten to itself, and a monthly ingest re-sends the whole history
        # (bench/bench_ingest.py; figures in BENCHMARKS.md).
        differs = " OR ".join(f"t.{c} IS DISTINCT FROM s.{c}" for c in cols)
        con.execute(
            f"CREATE OR REPLACE TEMP TABLE staged_delta AS SELECT s.*, (t.{keys[0]} IS NULL OR t.{value_col} "
            f"IS DISTINCT FROM s.{value_col}) AS value_changed FROM staged s LEFT JOIN {table} t ON {on} "
            f"WHERE t.{keys[0]} IS NULL OR {differs}")
        changed = con.execute("SELECT count(*) FROM staged_delta WHERE value_changed").fetchone()[0]
        all_cols = [*keys, *cols, "ingested_at"]
        updates = ", ".join(f"{c} = excluded.{c}" for c in cols)
        con.execute(
            f"INSERT INTO {table} ({', '.join(all_cols)}) SELECT {', '.join(all_cols)} FROM staged_delta "
            f"ON CONFLICT ({', '.join(keys)}) DO UPDATE SET {updates}, ingested_at = CASE WHEN "
            f"{table}.{value_col} IS DISTINCT FROM excluded.{value_col} THEN excluded.ingested_at "
            f"ELSE {table}.ingested_at END")
        con.execute("DROP TABLE staged_delta")  # on failure the ingest's ROLLBACK removes it
    finally:
        con.unregister("staged")
    return int(changed)


def ingest(path: str | Path, data: SourceData, universe: Universe) -> dict[str, Any]:
    """Load ``data`` into the warehouse in one transaction; returns a summary of what changed.

    On any error the transaction is rolled back and the previous tables stay as they were.
    """
    started = datetime.now(UTC).replace(tzinfo=None)
    summary: dict[str, Any] = {"source": data.source, "universe": universe.name,
                               "fingerprint": data.fingerprint()}
    with connect(path) as con:
        con.execute("BEGIN TRANSACTION")
        try:
            changed = 0
            con.execute("DELETE FROM assets")
            con.register("assets_df", _assets_frame(universe))
            con.execute("INSERT INTO assets SELECT asset, sector, is_benchmark, position FROM assets_df")
            con.unregister("assets_df")
            if data.prices is not None:
                changed += _upsert(con, "prices_daily", data.prices, data.source, started)
            if data.macro is not None:
                meta = _series_meta(data)
                con.execute("DELETE FROM series_meta")
                con.register("meta_df", meta)
                con.execute("INSERT INTO series_meta SELECT series, tcode, market, grp, description FROM meta_df")
                con.unregister("meta_df")
                unknown = set(data.macro["series"]) - set(meta["series"])
                if unknown:
                    raise DataError(f"macro series without metadata: {sorted(unknown)[:5]}")
                changed += _upsert(con, "macro_observations", data.macro, data.source, started)
            if data.risk_free is not None:
                con.execute("DELETE FROM risk_free")
                con.register("rf_df", data.risk_free.assign(source=data.source))
                con.execute("INSERT INTO risk_free SELECT month, rf, source, origin FROM rf_df")
                con.unregister("rf_df")
            finished = datetime.now(UTC).replace(tzinfo=None)
            counts = {t: con.execute(f"SELECT count(*) FROM {t}").fetchone()[0]
                      for t in ("prices_daily", "macro_observations")}
            details = {k: v for k, v in data.details.items() if k != "series_meta"}
            con.execute("INSERT INTO ingests VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", [
                uuid.uuid4().hex[:12], data.source, universe.name, started, finished,
                counts["prices_daily"], counts["macro_observations"], changed, summary["fingerprint"],
                json.dumps(details | {"synthetic": data.synthetic}, default=str)])
            con.execute("COMMIT")
        except BaseException:
            con.execute("ROLLBACK")
            raise
    summary.update(price_rows=counts["prices_daily"], macro_rows=counts["macro_observations"],
                   changed_rows=changed)
    return summary


def latest_ingest(con: duckdb.DuckDBPyConnection) -> dict[str, Any]:
    """The last successful ingest (source, universe, details...); ConfigError when there is none."""
    row = con.execute("SELECT source, universe, finished_at, fingerprint, details FROM ingests "
                      "ORDER BY finished_at DESC LIMIT 1").fetchone()
    if row is None:
        raise ConfigError("the warehouse is empty", hint="run `rotation ingest` first")
    return {"source": row[0], "universe": row[1], "finished_at": row[2], "fingerprint": row[3],
            "details": json.loads(row[4])}


def load_universe(con: duckdb.DuckDBPyConnection) -> Universe:
    rows = con.execute("SELECT asset, sector, is_benchmark FROM assets ORDER BY position").fetchall()
    name = latest_ingest(con)["universe"]
    return Universe(name=name, assets={a: s for a, s, _ in rows},
                    benchmark=next(a for a, _, b in rows if b))


def freshness(con: duckdb.DuckDBPyConnection, settings: Settings,
              publication_lag: int | None = None) -> pd.DataFrame:
    """Per decision month: how many series are fresh (staleness <= tolerance) out of all series."""
    lag = settings.data.publication_lag_months if publication_lag is None else publication_lag
    return con.execute(
        """SELECT month, count(*) FILTER (staleness <= ?) AS fresh,
                  (SELECT count(DISTINCT series) FROM macro_observations) AS total
           FROM macro_features(?, ?, ?) GROUP BY month ORDER BY month""",
        [settings.data.fresh_tolerance_months, lag, settings.data.market_lag_months,
         settings.data.fresh_tolerance_months]).df()


def default_as_of(con: duckdb.DuckDBPyConnection, settings: Settings, source: str | None = None) -> pd.Period:
    """The last complete month the data supports (see README: 'as-of month').

    Live sources: the last complete calendar month (if the data reaches it). Snapshot and sample: the
    last decision month in which at least ``min_fresh_share`` of the macro series are fresh.
    """
    source = source or latest_ingest(con)["source"]
    months = con.execute("SELECT month FROM decision_months ORDER BY month").df()["month"]
    if months.empty:
        raise DataError("no complete month has prices for every asset of the universe")
    last = pd.Period(months.iloc[-1], freq="M")
    if any(part in LIVE_SOURCES for part in source.split("+")):
        return min(last, last_complete_month())
    fresh = freshness(con, settings)
    ok = fresh[fresh["fresh"] >= settings.data.min_fresh_share * fresh["total"]]
    if ok.empty:
        raise DataError("no month has fresh macro data for most series",
                        hint="check the macro source or lower data.min_fresh_share")
    return min(last, pd.Period(ok["month"].iloc[-1], freq="M"))


def feature_long(con: duckdb.DuckDBPyConnection, settings: Settings, *, start: pd.Period, end: pd.Period,
                 publication_lag: int | None = None) -> pd.DataFrame:
    """The long feature table (month, series, value, period, available_at, ...) for months in [start, end]."""
    lag = settings.data.publication_lag_months if publication_lag is None else publication_lag
    return con.execute(
        "SELECT * FROM macro_features(?, ?, ?) WHERE month BETWEEN ? AND ? ORDER BY month, series",
        [lag, settings.data.market_lag_months, settings.data.max_staleness_months,
         month_start(start), month_start(end)]).df()


def _periods(values: pd.Series) -> pd.PeriodIndex:
    return pd.PeriodIndex(pd.to_datetime(values), freq="M")


def build_dataset(con: duckdb.DuckDBPyConnection, settings: Settings, *, as_of: pd.Period | None = None,
                  publication_lag: int | None = None) -> tuple[Dataset, pd.Period]:
    """The point-in-time Dataset from ``settings.data.start`` to ``as_of`` (default: :func:`default_as_of`)."""
    ingest_info = latest_ingest(con)
    universe = load_universe(con)
    as_of = as_of or default_as_of(con, settings, ingest_info["source"])
    start = pd.Period(settings.data.start, freq="M")
    decision = con.execute("SELECT month FROM decision_months WHERE month BETWEEN ? AND ? ORDER BY month",
                           [month_start(start), month_start(as_of)]).df()
    months = _periods(decision["month"])
    if len(months) == 0 or months[-1] != as_of:
        last = con.execute("SELECT max(month) FROM decision_months").fetchone()[0]
        raise ConfigError(f"no complete data for --as-of {month_str(as_of)}",
                          hint=f"the warehouse's last complete month is {str(last)[:7] if last else 'none'}")
    expected = pd.period_range(months[0], as_of, freq="M")
    if len(expected) != len(months):
        missing = sorted(set(expected) - set(months))
        raise DataError(f"months where an asset that has started has no return: "
                        f"{[month_str(m) for m in missing[:5]]}",
                        hint="the prices suite names every asset and month (rotation validate)")
    if months[0] != start:
        log.warning("data starts at %s, after the configured start %s", month_str(months[0]), month_str(start))
    rets = con.execute("SELECT asset, month, ret FROM monthly_returns WHERE month BETWEEN ? AND ?",
                       [month_start(months[0]), month_start(as_of)]).df()
    returns = rets.pivot(index="month", columns="asset", values="ret")
    returns.index = _periods(returns.index)
    returns = returns.reindex(index=months, columns=universe.tickers).astype(np.float64)
    # Months before an asset's first return are missing (it has not started): decision_months already
    # guarantees that every asset that has started has a return, so the only holes are leading ones.
    lookback = int(settings.models.lookback_months)
    min_history = int(settings.data.min_asset_history_months) or lookback + 1
    present, first_months, entry_months = presence(returns, min_history)
    late = {a: m for a, m in entry_months.items() if first_months[a] != month_str(months[0])}
    if late:
        log.info("unbalanced universe: %s", ", ".join(f"{a} from {m or 'after ' + month_str(as_of)}"
                                                      for a, m in late.items()))
    long = feature_long(con, settings, start=months[0], end=as_of, publication_lag=publication_lag)
    wide = long.pivot(index="month", columns="series", values="value")
    wide.index = _periods(wide.index)
    wide = wide.reindex(months)
    macro, expired, dropped = _macro_columns(wide)
    features = pd.concat([fill_cross_sectional(returns).add_prefix(RETURN_PREFIX), macro], axis=1).astype(np.float64)
    rf = con.execute("SELECT month, rf FROM risk_free_monthly WHERE month BETWEEN ? AND ? ORDER BY month",
                     [month_start(months[0]), month_start(as_of)]).df()
    # Missing before the first known value (forward fill cannot reach it): left missing, never a silent
    # 0.0; backtest.risk_free_for decides (0 with a warning in normalised mode, exit 2 in levered mode).
    risk_free = pd.Series(rf["rf"].to_numpy(dtype=np.float64), index=_periods(rf["month"]), name="rf").reindex(months)
    lag = settings.data.publication_lag_months if publication_lag is None else publication_lag
    details = dict(ingest_info["details"])
    info = DatasetInfo(
        source=str(ingest_info["source"]), universe=universe.name, sectors=dict(universe.assets),
        as_of=month_str(as_of), first_month=month_str(months[0]),
        dataset_fingerprint=str(ingest_info["fingerprint"]),
        # lag 0 is the original notebook's alignment whether it comes from the override or the config
        look_ahead=lag == 0, synthetic=bool(details.get("synthetic")),
        n_macro_features=int(macro.shape[1]), dropped_series=tuple(dropped),
        expired_series={name[len(MACRO_PREFIX):]: month_str(m) for name, m in expired.items()},
        asset_first_months=first_months, asset_entry_months=entry_months, min_asset_history_months=min_history,
        risk_free_missing=tuple(month_str(m) for m in risk_free.index[risk_free.isna().to_numpy()]),
        ingest=details)
    executed = None
    if settings.backtest.execution_lag_days > 0:  # job/execution.py: returns from the close of the trade day
        from job.execution import executed_returns
        executed = executed_returns(con, universe.tickers, months, settings.backtest.execution_lag_days, as_of)
    dataset = Dataset(features=features, returns=returns, benchmark=universe.benchmark, risk_free=risk_free,
                      publication_lag_months=lag, info=info, present=present, executed_returns=executed,
                      expired=expired)
    return dataset, as_of


def _macro_columns(wide: pd.DataFrame) -> tuple[pd.DataFrame, dict[str, pd.Period], list[str]]:
    """``(macro features, expired, dropped)`` from the wide point-in-time values (months x series).

    A series without a value at the first month is dropped (no fit could use it from the start). One
    whose values stop (stale beyond ``data.max_staleness_months``, or a hole) expires at its first missing
    month: the fits before it use the series, the fits from it do not (``Dataset.expired``); its cells
    from then on hold 0.0, which no fit reads. So a series going stale changes only the fits from the
    month it does, never the earlier ones' training rows (issue 13: one series' staleness at 2025-02
    used to drop it from every month and refit the whole walk-forward).
    """
    started = wide.columns[wide.notna().to_numpy()[0]] if len(wide) else wide.columns[:0]
    dropped = sorted(set(wide.columns) - set(started))
    macro = wide[sorted(started)].add_prefix(MACRO_PREFIX)
    expired: dict[str, pd.Period] = {}
    missing = macro.isna().to_numpy()
    for j in np.flatnonzero(missing.any(axis=0)):
        first = int(np.argmax(missing[:, j]))
        expired[str(macro.columns[j])] = macro.index[first]
        macro.iloc[first:, j] = 0.0
    return macro, expired, dropped


def load_dataset(settings: Settings, warehouse: str | Path, *, as_of: pd.Period | None = None,
                 publication_lag: int | None = None) -> tuple[Dataset, pd.Period]:
    """Open the warehouse read-only and build the point-in-time Dataset up to ``as_of``."""
    with connect(warehouse, read_only=True) as con:
        return build_dataset(con, settings, as_of=as_of, publication_lag=publication_lag)
