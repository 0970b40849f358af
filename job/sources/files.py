"""The user's own data files (``--source file``): daily prices or monthly returns, CSV or Parquet.

A universe names its files in its TOML table (see the README, "Your own data files"):

    [universes.my-industries.file]
    path = "data/industries.csv"   # one long table (date, asset, value), or "data/{asset}.parquet"
    kind = "returns"               # prices (adjusted closes) | returns (monthly total returns)
    unit = "percent"               # returns only, required: percent (1.5 = 1.5 %) | fraction (0.015)

Schema (column names configurable with ``date_column``, ``asset_column``, ``value_column``):

- one long table: ``date, asset, value``; one file per asset (``{asset}`` in ``path``): ``date, value``.
- ``date``: prices: the trading day ``YYYY-MM-DD`` (a time and zone after it are ignored); returns: the
  month ``YYYY-MM`` or ``YYYYMM``, or the month's last trading day ``YYYY-MM-DD`` (then decisions fall
  on that day, exactly as with daily prices).
- ``value``: prices: the adjusted close (a total-return index); returns: the total return over the month.
  Every row must have a value; a month missing inside an asset's returns is an error.

Monthly returns become a total-return index (100 at the end of the month before the first return, then
compounded) stored at each month's end, so the warehouse's monthly returns reproduce the file's exactly.
Every row is checked at the door (``job/sources/checks.py``); a bad row is a DataError (exit 3) naming
the file, the line (for Parquet: the row) and the problem.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from job.config import Settings, Universe
from job.errors import ConfigError
from job.logs import get_logger
from job.sources.base import PRICE_COLUMNS, SourceData
from job.sources.checks import check_prices, check_returns, decode, fail
from job.sources.snapshot import parse_days, parse_numbers, read_csv_text

log = get_logger("sources.files")


def _format(path: Path, declared: str) -> str:
    if declared != "auto":
        return declared
    return "parquet" if path.suffix.lower() in (".parquet", ".pq") else "csv"


def read_table(path: Path, declared: str = "auto") -> tuple[pd.DataFrame, np.ndarray, str]:
    """``(frame of strings or typed columns, line numbers, origin)`` of one CSV or Parquet file."""
    origin = str(path)
    if not path.is_file():
        raise ConfigError(f"data file not found: {path}", hint="check [universes.<name>.file] path")
    if _format(path, declared) == "parquet":
        try:
            frame = pd.read_parquet(path)
        except Exception as exc:  # pyarrow raises several types for a corrupt file
            raise fail(origin, f"not a readable Parquet file ({str(exc).splitlines()[0]})") from None
        return frame.reset_index(drop=True), np.arange(len(frame)) + 1, origin
    frame = read_csv_text(decode(path.read_bytes(), origin), origin)
    return frame, np.arange(len(frame)) + 2, origin


def _columns(frame: pd.DataFrame, wanted: list[str], origin: str) -> None:
    missing = [c for c in wanted if c not in frame.columns]
    if missing:
        raise fail(origin, f"missing column(s) {missing}; it has {list(frame.columns)}", line=1,
                   hint="name the columns with date_column/asset_column/value_column in the universe's [file]")


def _months_and_days(values: pd.Series, origin: str, lines: np.ndarray) -> tuple[pd.Series, pd.Series]:
    """Returns' dates: ``YYYY-MM``, ``YYYYMM`` or ``YYYY-MM-DD`` -> (first of month, decision day)."""
    if pd.api.types.is_datetime64_any_dtype(values):
        days = pd.to_datetime(values).dt.tz_localize(None).dt.normalize()
        return days.dt.to_period("M").dt.start_time, days
    text = values.astype(str).str.strip()
    month = pd.to_datetime(text.where(text.str.fullmatch(r"\d{4}-\d{2}")), format="%Y-%m", errors="coerce")
    compact = pd.to_datetime(text.where(text.str.fullmatch(r"\d{6}")), format="%Y%m", errors="coerce")
    day = pd.to_datetime(text.where(text.str.match(r"^\d{4}-\d{2}-\d{2}")).str[:10], format="%Y-%m-%d",
                         errors="coerce")
    first = month.fillna(compact).fillna(day.dt.to_period("M").dt.start_time)
    if first.isna().any():
        i = int(np.flatnonzero(first.isna().to_numpy())[0])
        raise fail(origin, f"bad date {values.iloc[i]!r} (expected YYYY-MM, YYYYMM or YYYY-MM-DD)", line=lines[i])
    end = first + pd.offsets.MonthEnd(0)
    last_weekday = end - pd.to_timedelta(np.maximum(end.dt.day_of_week - 4, 0), unit="D")
    return first, day.fillna(last_weekday)


def _values(values: pd.Series, origin: str, lines: np.ndarray, what: str) -> pd.Series:
    if pd.api.types.is_numeric_dtype(values):
        numbers = values.astype(float)
        if numbers.isna().any():
            i = int(np.flatnonzero(numbers.isna().to_numpy())[0])
            raise fail(origin, f"missing {what} (omit the row instead)", line=lines[i])
        return numbers
    return parse_numbers(values, origin, lines, what=what)


def _rows(settings_file: Any, universe: Universe) -> list[pd.DataFrame]:
    """One frame per file: asset, date (or month + day), value, origin, line."""
    spec = settings_file
    frames = []
    if "{asset}" in spec.path:
        for ticker in universe.tickers:
            raw, lines, origin = read_table(Path(spec.path.replace("{asset}", ticker)), spec.format)
            _columns(raw, [spec.date_column, spec.value_column], origin)
            frames.append(pd.DataFrame({"asset": ticker, "raw_date": raw[spec.date_column].to_numpy(),
                                        "raw_value": raw[spec.value_column].to_numpy(), "origin": origin,
                                        "line": lines}))
        return frames
    raw, lines, origin = read_table(Path(spec.path), spec.format)
    _columns(raw, [spec.date_column, spec.asset_column, spec.value_column], origin)
    assets = raw[spec.asset_column].astype(str).str.strip()
    missing = [t for t in universe.tickers if t not in set(assets)]
    if missing:
        raise ConfigError(f"{origin} has no rows for {missing} of universe {universe.name!r}",
                          hint=f"it holds {sorted(set(assets))[:20]}")
    keep = assets.isin(universe.tickers).to_numpy()
    if not keep.all():
        log.info("%s: %d rows of assets outside universe %s ignored", origin, int((~keep).sum()), universe.name)
    frames.append(pd.DataFrame({"asset": assets[keep].to_numpy(), "raw_date": raw[spec.date_column][keep].to_numpy(),
                                "raw_value": raw[spec.value_column][keep].to_numpy(), "origin": origin,
                                "line": lines[keep]}))
    return frames


def returns_to_prices(returns: pd.DataFrame) -> pd.DataFrame:
    """Monthly returns (asset, month, day, ret, origin) -> a total-return index at each month's end.

    100 at the last weekday of the month before the first return, then ``100 * prod(1 + r)``.
    """
    out = []
    for asset, group in returns.sort_values(["asset", "month"]).groupby("asset", sort=False):
        first = pd.Period(group["month"].iloc[0], freq="M") - 1
        base_day = pd.Timestamp(first.end_time.date())
        while base_day.day_of_week > 4:
            base_day -= pd.Timedelta(days=1)
        closes = 100.0 * np.cumprod(1.0 + group["ret"].to_numpy())
        out.append(pd.DataFrame({"asset": asset, "date": [base_day, *group["day"]], "close": [100.0, *closes],
                                 "origin": [group["origin"].iloc[0], *group["origin"]]}))
    return pd.concat(out, ignore_index=True)


def fetch_files(settings: Settings, universe: Universe) -> SourceData:
    """Prices of ``universe`` from its ``[universes.<name>.file]`` files (see the module docstring)."""
    spec = getattr(universe, "file", None)
    if spec is None:
        raise ConfigError(f"universe {universe.name!r} names no data files",
                          hint=f"add a [universes.{universe.name}.file] table (path, kind, unit): see the README")
    if spec.kind == "returns" and spec.unit is None:
        raise ConfigError(f"universe {universe.name!r}: state the unit of its monthly returns",
                          hint=f'set unit = "percent" or unit = "fraction" in [universes.{universe.name}.file]')
    frames = _rows(spec, universe)
    parts = []
    for frame in frames:
        origin, lines = str(frame["origin"].iloc[0]), frame["line"].to_numpy()
        if frame.empty:
            raise fail(origin, "no data rows (a header only)")
        what = "close" if spec.kind == "prices" else "return"
        values = _values(frame["raw_value"], origin, lines, what)
        if spec.kind == "prices":
            dates = (pd.to_datetime(frame["raw_date"]).dt.tz_localize(None).dt.normalize()
                     if pd.api.types.is_datetime64_any_dtype(frame["raw_date"])
                     else parse_days(frame["raw_date"], origin, lines))
            parts.append(check_prices(pd.DataFrame({"asset": frame["asset"], "date": dates, "close": values,
                                                    "origin": origin, "line": lines}), origin))
            continue
        month, day = _months_and_days(frame["raw_date"], origin, lines)
        ret = values / 100.0 if spec.unit == "percent" else values
        checked = check_returns(pd.DataFrame({"asset": frame["asset"], "month": month, "day": day, "ret": ret,
                                              "origin": origin, "line": lines}), origin)
        for _, group in checked.sort_values(["asset", "month"]).groupby("asset", sort=False):
            steps = group["month"].dt.to_period("M").astype("int64").diff().to_numpy()[1:]
            if (steps != 1).any():
                i = int(np.flatnonzero(steps != 1)[0]) + 1
                raise fail(origin, f"asset={group['asset'].iloc[i]} month {group['month'].iloc[i]:%Y-%m} follows "
                           f"{group['month'].iloc[i - 1]:%Y-%m}: a month is missing", line=group["line"].iloc[i],
                           hint="every month of an asset's life needs a return")
        parts.append(checked)
    if spec.kind == "prices":
        prices = pd.concat(parts, ignore_index=True)
    else:
        prices = check_prices(returns_to_prices(pd.concat(parts, ignore_index=True)), spec.path)
    prices = prices[PRICE_COLUMNS].sort_values(["asset", "date"]).reset_index(drop=True)
    details = {"files": sorted(set(prices["origin"])), "kind": spec.kind, "unit": spec.unit,
               "prices": {t: [str(g["date"].min().date()), str(g["date"].max().date())]
                          for t, g in prices.groupby("asset", sort=False)}}
    log.info("file source: %s %s of %d assets from %s", spec.kind, spec.unit or "", prices["asset"].nunique(),
             spec.path)
    return SourceData(source="file", prices=prices, details=details)
