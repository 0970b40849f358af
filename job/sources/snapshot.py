"""An offline snapshot folder laid out like ``../shared/data``.

- ``prices/<TICKER>.csv``: daily rows as written by yfinance ``Ticker.history()``
  (``Date,Open,High,Low,Close,...``; ``Date`` like ``2004-01-30 00:00:00-05:00``). ``Close`` is already
  split- and dividend-adjusted, i.e. a total-return index: dividends are not applied again.
- ``fred-md/*``: FRED-MD vintages, recognised by content (any file name; see ``job/sources/fredmd.py``);
  every file is logged as used or skipped with the reason, and listed in the ingest's details.
- ``fred/<ID>.csv``: single FRED series (header ``DATE,<ID>`` or ``date,value``); daily ones are averaged
  per month. Revised values (no vintage): used only for market series, whose lag is 0.
- ``french/F-F_Research_Data_Factors*.csv``: the monthly risk-free rate RF (percent per month).

Every file is checked at the door (``job/sources/checks.py``): encoding (UTF-8, else cp1252), shape,
dates, numbers and ranges on every row; a failure is a DataError (exit 3) naming the file and the line.
"""

from __future__ import annotations

import csv
import io
import re
from pathlib import Path

import numpy as np
import pandas as pd

from job.config import Settings, Universe
from job.errors import ConfigError, DataError
from job.logs import get_logger
from job.series import catalogue
from job.sources.base import MACRO_COLUMNS, PRICE_COLUMNS, RF_COLUMNS, SourceData
from job.sources.checks import check_macro, check_prices, check_risk_free, decode, fail
from job.sources.fredmd import read_vintages, scan_folder
from job.sources.retry import retry_settings

log = get_logger("sources.snapshot")
_DAY = re.compile(r"^\d{4}-\d{2}-\d{2}")


def read_csv_text(text: str, origin: str) -> pd.DataFrame:
    """All fields as strings, blank lines kept (so that row i is file line i + 2); DataError if malformed."""
    try:
        raw = pd.read_csv(io.StringIO(text), dtype=str, keep_default_na=False, skip_blank_lines=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, csv.Error) as exc:
        message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        found = re.search(r"Expected (\d+) fields in line (\d+), saw (\d+)", message)
        if found:
            raise fail(origin, f"malformed CSV: {found.group(3)} fields where the header has {found.group(1)}",
                       line=int(found.group(2))) from None
        raise fail(origin, f"malformed CSV ({message})") from None
    return raw.fillna("")


def parse_days(values: pd.Series, origin: str, lines: np.ndarray, *, what: str = "date") -> pd.Series:
    """``YYYY-MM-DD`` (anything after the 10th character, such as a time and zone, is ignored)."""
    text = values.astype(str).str.strip()
    ok = text.str.match(_DAY)
    dates = pd.to_datetime(text.str[:10].where(ok), format="%Y-%m-%d", errors="coerce")
    if dates.isna().any():
        i = int(np.flatnonzero(dates.isna().to_numpy())[0])
        raise fail(origin, f"bad {what} {values.iloc[i]!r} (expected YYYY-MM-DD)", line=lines[i])
    return dates


def parse_numbers(values: pd.Series, origin: str, lines: np.ndarray, *, what: str,
                  missing: tuple[str, ...] = ()) -> pd.Series:
    """Floats; a field in ``missing`` becomes NaN, anything else that is not a number is a DataError."""
    text = values.astype(str).str.strip()
    absent = text.isin(missing)
    numbers = pd.to_numeric(text.where(~absent), errors="coerce")
    bad = numbers.isna() & ~absent
    if bad.any():
        i = int(np.flatnonzero(bad.to_numpy())[0])
        raise fail(origin, f"{what} {values.iloc[i]!r} is not a number", line=lines[i])
    return numbers.astype(float)


def read_price_csv(path: Path, ticker: str) -> pd.DataFrame:
    """Daily adjusted closes from a yfinance ``history()`` CSV; DataError naming the line on anything bad."""
    origin = str(path)
    raw = read_csv_text(decode(path.read_bytes(), origin), origin)
    missing = {"Date", "Close"} - set(raw.columns)
    if missing:
        raise fail(origin, f"malformed price CSV, missing column(s) {sorted(missing)}", line=1)
    if raw.empty:
        raise fail(origin, "no price rows (a header only)", hint="download the prices again; nothing was ingested")
    lines = np.arange(len(raw)) + 2
    dates = parse_days(raw["Date"], origin, lines)
    close = parse_numbers(raw["Close"], origin, lines, what="Close")
    frame = pd.DataFrame({"asset": ticker, "date": dates, "close": close, "origin": origin, "line": lines})
    check_prices(frame, origin)
    return frame.sort_values("date").reset_index(drop=True)


def read_prices(folder: Path, universe: Universe) -> pd.DataFrame:
    """Prices of every ticker of the universe; a ticker without a file is a configuration error."""
    missing = [t for t in universe.tickers if not (folder / f"{t}.csv").is_file()]
    if missing:
        have = sorted(p.stem for p in folder.glob("*.csv"))
        raise ConfigError(f"unknown ticker(s) {missing} for the snapshot in {folder}",
                          hint=f"it holds {have}; the snapshot source defaults to --universe vanguard-etf")
    return pd.concat([read_price_csv(folder / f"{t}.csv", t) for t in universe.tickers], ignore_index=True)


def read_fred_series(path: Path, series: str) -> pd.DataFrame:
    """A single FRED series CSV as monthly means (``DATE,<ID>`` or ``date,value`` headers)."""
    origin = str(path)
    raw = read_csv_text(decode(path.read_bytes(), origin, ("utf-8-sig",)), origin)  # FRED writes UTF-8
    if raw.shape[1] != 2:
        raise fail(origin, f"expected two columns (date, value), found {raw.shape[1]}", line=1)
    if raw.empty:
        raise fail(origin, "no rows (a header only)")
    lines = np.arange(len(raw)) + 2
    dates = parse_days(raw.iloc[:, 0], origin, lines)
    values = parse_numbers(raw.iloc[:, 1], origin, lines, what="value", missing=("", "."))
    rows = pd.DataFrame({"series": series, "period": dates, "value": values, "origin": origin, "line": lines})
    check_macro(rows, origin)
    dup = dates.duplicated().to_numpy()
    if dup.any():
        i = int(np.flatnonzero(dup)[0])
        raise fail(origin, f"duplicated date {dates.iloc[i].date()}", line=lines[i])
    monthly = values.groupby(dates.dt.to_period("M")).mean().dropna()
    return pd.DataFrame({
        "series": series, "period": monthly.index.start_time, "value": monthly.to_numpy(),
        "vintage": "latest", "vintage_release": pd.NaT, "realtime_start": pd.NaT, "origin": origin,
    })


def read_french_rf(path: Path) -> pd.DataFrame:
    """The monthly RF column of a Fama/French factors CSV (first block only), as a decimal.

    Months after the ``YYYYMM`` in the file name (the file's release) are a DataError, as is a
    non-numeric or out-of-range RF; the message names the line.
    """
    origin = str(path)
    lines = decode(path.read_bytes(), origin).splitlines()
    start = next((i for i, line in enumerate(lines) if line.replace(" ", "").startswith(",Mkt-RF")), None)
    if start is None:
        raise DataError(f"{origin}: no ',Mkt-RF,...,RF' header")
    header = [c.strip() for c in lines[start].split(",")]
    if "RF" not in header:
        raise fail(origin, "no RF column in the header", line=start + 1)
    col = header.index("RF")
    months, rfs, numbers = [], [], []
    for number, line in enumerate(lines[start + 1:], start=start + 2):
        fields = line.split(",")
        head = fields[0].strip()
        if not (head.isdigit() and len(head) == 6):
            break
        if len(fields) != len(header):
            raise fail(origin, f"{len(fields)} fields where the header has {len(header)}", line=number)
        month = pd.to_datetime(head, format="%Y%m", errors="coerce")
        if pd.isna(month):
            raise fail(origin, f"bad month {head!r} (expected YYYYMM)", line=number)
        try:
            value = float(fields[col])
        except ValueError:
            raise fail(origin, f"RF {fields[col].strip()!r} of {head} is not a number", line=number) from None
        months.append(month)
        rfs.append(value / 100.0)
        numbers.append(number)
    if not months:
        raise fail(origin, "no monthly rows after the header", line=start + 1)
    frame = pd.DataFrame({"month": months, "rf": rfs, "origin": origin, "line": numbers})
    check_risk_free(frame, origin)
    released = re.search(r"_(\d{6})$", path.stem)
    if released:
        cutoff = pd.to_datetime(released.group(1), format="%Y%m")
        late = (frame["month"] > cutoff).to_numpy()
        if late.any():
            i = int(np.flatnonzero(late)[0])
            raise fail(origin, f"month {frame['month'].iloc[i]:%Y-%m} is after the file's release "
                       f"{cutoff:%Y-%m} (named in the file name)", line=numbers[i])
    return frame[RF_COLUMNS]


def fetch_snapshot(settings: Settings, universe: Universe, folder: Path | None, *,
                   prices: bool = True) -> SourceData:
    """Everything the snapshot holds for ``universe`` (without prices when ``prices`` is False)."""
    if folder is None:
        raise ConfigError("no snapshot folder", hint="pass --snapshot-dir or set ROTATION_SNAPSHOT_DIR")
    if not folder.is_dir():
        raise ConfigError(f"snapshot folder not found: {folder}",
                          hint="pass --snapshot-dir or set ROTATION_SNAPSHOT_DIR")
    if prices and not (folder / "prices").is_dir():
        raise ConfigError(f"snapshot folder {folder} has no prices/ folder")
    price_frame = read_prices(folder / "prices", universe) if prices else None
    skipped: dict[str, str] = {}
    if settings.data.fred_md_vintages:
        vintages = list(settings.data.fred_md_vintages)
    else:
        scan = scan_folder(folder / "fred-md")
        vintages, skipped = scan.used, scan.skipped
    if not vintages:
        raise ConfigError(f"snapshot folder {folder} has no FRED-MD panel in fred-md/",
                          hint=f"skipped: {skipped}" if skipped else "add a FRED-MD CSV (first column 'sasdate')")
    macro, vintage_details = read_vintages(vintages, settings.data.download_timeout_s, **retry_settings(settings))
    extras = []
    known = catalogue()
    for series in settings.data.extra_fred_series:
        path = folder / "fred" / f"{series}.csv"
        if series in known and path.is_file():
            extras.append(read_fred_series(path, series))
        else:
            log.warning("extra series %s not in the snapshot or the catalogue; skipped", series)
    if extras:
        macro = pd.concat([macro, *extras], ignore_index=True)
    french = sorted((folder / "french").glob("F-F_Research_Data_Factors*.csv"))
    risk_free = read_french_rf(french[-1]) if french else None
    details = {"folder": str(folder), "vintages": vintage_details, "fred_md_skipped": skipped,
               "extra_series": [e["series"].iloc[0] for e in extras],
               "risk_free": str(french[-1]) if french else "TB3MS"}
    if price_frame is not None:
        details["prices"] = {t: [str(g["date"].min().date()), str(g["date"].max().date())]
                             for t, g in price_frame.groupby("asset", sort=False)}
    return SourceData(source="snapshot", prices=None if price_frame is None else price_frame[PRICE_COLUMNS],
                      macro=macro[MACRO_COLUMNS], risk_free=risk_free, details=details)
