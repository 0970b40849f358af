"""Point in time: a decision at date D only uses observations with available_at <= D.

Rules (sql/views.sql, DESIGN.md "Time conventions"): an ALFRED observation is available from its
realtime_start; the earliest vintage holding a period is pseudo-real-time (period end + lag, on a
weekday); a later vintage's value of that period only from the later vintage's release. For each period
the decision uses the latest value available by then.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pytest

from job import warehouse
from job.config import Settings, load_settings


@pytest.fixture(scope="module")
def settings() -> Settings:
    return load_settings(environ={})


@pytest.fixture
def planted(snapshot_warehouse: Path, tmp_path: Path):  # type: ignore[no-untyped-def]
    """A private copy of the snapshot warehouse and a function that inserts macro observations into it."""
    path = Path(shutil.copy(snapshot_warehouse, tmp_path / "planted.duckdb"))

    def plant(rows: list[tuple]) -> Path:
        with duckdb.connect(str(path)) as con:
            con.executemany(
                "INSERT INTO macro_observations VALUES (?, ?, ?, ?, ?, ?, 'test', 'planted', now())", rows)
        return path

    return plant


def _features(path: Path, settings: Settings, start: str, end: str, lag: int | None = None) -> pd.DataFrame:
    with warehouse.connect(path, read_only=True) as con:
        return warehouse.feature_long(con, settings, start=pd.Period(start, "M"), end=pd.Period(end, "M"),
                                      publication_lag=lag)


def _value(frame: pd.DataFrame, month: str, series: str) -> pd.Series:
    row = frame[(frame["month"] == pd.Timestamp(f"{month}-01")) & (frame["series"] == series)]
    assert len(row) == 1
    return row.iloc[0]


def test_every_feature_was_available_at_its_decision_date(snapshot_warehouse: Path, settings: Settings) -> None:
    """Over the whole window, no (decision month, feature) uses an observation from after the decision."""
    long = _features(snapshot_warehouse, settings, "2004-10", "2025-12")
    assert len(long) > 30_000
    assert (long["available_at"] <= long["decision_date"]).all()
    assert (long["period"] < long["month"] + pd.offsets.MonthBegin(1)).all()
    # macro releases (lag 1) describe at most the previous month; market data at most the current one
    indpro = long[long["series"] == "INDPRO"]
    assert (indpro["period"] <= indpro["month"] - pd.offsets.MonthBegin(1)).all()
    # forward-fill is explicit and bounded: a stale value is NULL with its reason
    stale = long[long["staleness"] > settings.data.max_staleness_months]
    assert stale["value"].isna().all() and (stale["null_reason"] == "stale").all()


def test_a_planted_future_observation_is_never_used(planted, snapshot_warehouse: Path, settings: Settings) -> None:
    """INDPRO 2010-01 = 1e9 first published (ALFRED) on 2030-01-01 changes no decision before 2030."""
    path = planted([("INDPRO", "2010-01-01", 1e9, "alfred:2030-01-01", "2030-01-01", "2030-01-01"),
                    # a later FRED-MD-style vintage, released in 2031, revising 2010-02
                    ("INDPRO", "2010-02-01", 2e9, "2031-01", "2031-01-31", None)])
    with warehouse.connect(path, read_only=True) as con:
        avail = con.execute("SELECT vintage, available_at FROM macro_available(1, 0) WHERE series = 'INDPRO' "
                            "AND vintage IN ('alfred:2030-01-01', '2031-01')").fetchall()
    assert sorted((v, str(a)) for v, a in avail) == [("2031-01", "2031-01-31"), ("alfred:2030-01-01", "2030-01-01")]
    original = _features(snapshot_warehouse, settings, "2009-10", "2011-06")
    changed = _features(path, settings, "2009-10", "2011-06")
    pd.testing.assert_frame_equal(changed, original)
    assert not changed["vintage"].isin(["alfred:2030-01-01", "2031-01"]).any()
    assert changed["value"].abs().max() < 1e6


def test_each_period_uses_the_vintage_known_at_the_decision(snapshot_warehouse: Path, settings: Settings) -> None:
    """With vintages 2019-10 and 2025-02: a 2015 decision uses the 2019-10 values (the earliest vintage
    holding the period, pseudo-real-time), never the 2025-02 revision (released 2025-02-28); a period
    only the 2025-02 vintage holds is pseudo-real-time from that vintage."""
    long = _features(snapshot_warehouse, settings, "2015-01", "2020-03")
    indpro = long[long["series"] == "INDPRO"].set_index("month")
    assert set(indpro.loc["2015-01-01":"2019-10-01", "vintage"]) == {"2019-10"}
    assert set(indpro.loc["2019-11-01":, "vintage"]) == {"2025-02"}
    with duckdb.connect(str(snapshot_warehouse), read_only=True) as con:
        levels = con.execute("SELECT period, vintage, value FROM macro_observations WHERE series = 'INDPRO' "
                             "AND period IN ('2015-04-01', '2015-05-01')").df()
    level = levels.pivot(index="period", columns="vintage", values="value")["2019-10"]
    expected = np.log(level[pd.Timestamp("2015-05-01")] / level[pd.Timestamp("2015-04-01")])
    row = _value(long, "2015-06", "INDPRO")
    assert row["period"] == pd.Timestamp("2015-05-01")
    assert row["value"] == pytest.approx(expected)


def test_transformations_never_mix_vintages(snapshot_warehouse: Path, settings: Settings) -> None:
    """At the 2019-11 decision INDPRO's growth comes from one vintage (2025-02, 2017=100), not from the
    2025-02 level of 2019-10 over the 2019-10 vintage's level of 2019-09 (2012=100): a fake -7.5 %."""
    long = _features(snapshot_warehouse, settings, "2019-11", "2019-11")
    with duckdb.connect(str(snapshot_warehouse), read_only=True) as con:
        x = dict(con.execute("SELECT period::VARCHAR, value FROM macro_observations WHERE series = 'INDPRO' AND "
                             "vintage = '2025-02' AND period IN ('2019-09-01', '2019-10-01')").fetchall())
    assert _value(long, "2019-11", "INDPRO")["value"] == pytest.approx(np.log(x["2019-10-01"] / x["2019-09-01"]))
    assert abs(_value(long, "2019-11", "RPI")["value"]) < 0.02      # was a fake +4.1 % from the rebasing


def test_the_latest_release_by_the_decision_date_wins(planted, settings: Settings) -> None:
    """ALFRED releases of INDPRO 2015-05 on 06-15 (first), 06-26 (revision) and 07-15 (later revision):
    the 2015-06 decision (2015-06-30) uses the 06-26 value; the 2019-10 vintage then counts only from
    its own release (it is no longer the earliest vintage of the period)."""
    path = planted([("INDPRO", "2015-05-01", 100.0, "alfred:2015-06-15", "2015-06-15", "2015-06-15"),
                    ("INDPRO", "2015-05-01", 101.0, "alfred:2015-06-26", "2015-06-26", "2015-06-26"),
                    ("INDPRO", "2015-05-01", 999.0, "alfred:2015-07-15", "2015-07-15", "2015-07-15")])
    long = _features(path, settings, "2015-06", "2015-06")
    row = _value(long, "2015-06", "INDPRO")
    assert row["vintage"] == "alfred:2015-06-26"
    assert row["available_at"] == pd.Timestamp("2015-06-26")
    with duckdb.connect(str(path), read_only=True) as con:
        x1 = con.execute("SELECT value FROM macro_observations WHERE series = 'INDPRO' AND vintage = '2019-10' "
                         "AND period = '2015-04-01'").fetchone()[0]
    assert row["value"] == pytest.approx(np.log(101.0 / x1))


def test_publication_lag_zero_is_the_notebooks_look_ahead(snapshot_warehouse: Path, settings: Settings) -> None:
    """Lag 0 makes macro period m usable at decision m (the original notebook's leak); lag 1 does not."""
    lag1 = _features(snapshot_warehouse, settings, "2015-06", "2015-06")
    lag0 = _features(snapshot_warehouse, settings, "2015-06", "2015-06", lag=0)
    assert _value(lag1, "2015-06", "INDPRO")["period"] == pd.Timestamp("2015-05-01")
    assert _value(lag0, "2015-06", "INDPRO")["period"] == pd.Timestamp("2015-06-01")
    assert _value(lag0, "2015-06", "INDPRO")["value"] != _value(lag1, "2015-06", "INDPRO")["value"]
    # market data (lag 0 either way) is unaffected
    assert _value(lag0, "2015-06", "VIXCLS")["value"] == _value(lag1, "2015-06", "VIXCLS")["value"]
