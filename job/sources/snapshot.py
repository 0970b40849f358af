"""An offline snapshot folder laid out like ``../shared/data``.

- ``prices/<TICKER>.csv``: daily rows as written by yfinance ``Ticker.history()``
  (``Date,Open,High,Low,Close,...``; ``Date`` like ``2004-01-30 00:00:00-05:00``). ``Close`` is already
  split- and dividend-adjusted, i.e. a total-return index: dividends are not applied again.
- ``fred-md/*.csv``: FRED-MD vintages (every file named ``YYYY-MM.csv`` unless configured).
- ``fred/<ID>.csv``: single FRED series (header ``DATE,<ID>`` or ``date,value``); daily ones are averaged
  per month. Revised values (no vintage): used only for market series, whose lag is 0.
- ``french/F-F_Research_Data_Factors*.csv``: the monthly risk-free rate RF (percent per month).
"""

from __future__ import annotations

import io
from pathlib import Path

import pandas as pd

from job.config import Settings, Universe
from job.errors import ConfigError, DataError
from job.logs import get_logger
from job.series import catalogue
from job.sources.base import MACRO_COLUMNS, PRICE_COLUMNS, RF_COLUMNS, SourceData
from job.sources.fredmd import read_vintages

log = get_logger("sources.snapshot")


def read_price_csv(path: Path, ticker: str) -> pd.DataFrame:
    """Daily adjusted closes from a yfinance ``history()`` CSV; DataError on anything malformed."""
    try:
        raw = pd.read_csv(path, dtype={"Date": str})
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: malformed price CSV ({exc})".splitlines()[0]) from None
    missing = {"Date", "Close"} - set(raw.columns)
    if missing:
        raise DataError(f"{path}: malformed price CSV, missing column(s) {sorted(missing)}")
    dates = pd.to_datetime(raw["Date"].astype(str).str[:10], format="%Y-%m-%d", errors="coerce")
    if dates.isna().any():
        raise DataError(f"{path}: bad date {raw['Date'][dates.isna()].iloc[0]!r} (expected YYYY-MM-DD...)")
    close = pd.to_numeric(raw["Close"], errors="coerce")
    if close.isna().any():
        raise DataError(f"{path}: non-numeric or missing Close {raw['Close'][close.isna()].iloc[0]!r} "
                        f"on {dates[close.isna()].iloc[0].date()}")
    if (close <= 0).any():
        raise DataError(f"{path}: non-positive Close on {dates[close <= 0].iloc[0].date()}")
    if dates.duplicated().any():
        raise DataError(f"{path}: duplicated date {dates[dates.duplicated()].iloc[0].date()}")
    frame = pd.DataFrame({"asset": ticker, "date": dates, "close": close.astype(float), "origin": str(path)})
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
    raw = pd.read_csv(path, dtype=str, keep_default_na=False)
    if raw.shape[1] != 2:
        raise DataError(f"{path}: expected two columns (date, value)")
    dates = pd.to_datetime(raw.iloc[:, 0], errors="coerce")
    values = pd.to_numeric(raw.iloc[:, 1].replace({"": None, ".": None}), errors="coerce")
    bad = values.isna() & ~raw.iloc[:, 1].isin(["", "."])
    if dates.isna().any() or bad.any():
        raise DataError(f"{path}: malformed rows (bad date or non-numeric value)")
    monthly = values.groupby(dates.dt.to_period("M")).mean().dropna()
    return pd.DataFrame({
        "series": series, "period": monthly.index.start_time, "value": monthly.to_numpy(),
        "vintage": "latest", "vintage_release": pd.NaT, "realtime_start": pd.NaT, "origin": str(path),
    })


def read_french_rf(path: Path) -> pd.DataFrame:
    """The monthly RF column of a Fama/French factors CSV (first block only), as a decimal."""
    lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    start = next((i for i, line in enumerate(lines) if line.replace(" ", "").startswith(",Mkt-RF")), None)
    if start is None:
        raise DataError(f"{path}: no ',Mkt-RF,...,RF' header")
    block = [lines[start]]
    for line in lines[start + 1:]:
        head = line.split(",")[0].strip()
        if not (head.isdigit() and len(head) == 6):
            break
        block.append(line)
    frame = pd.read_csv(io.StringIO("\n".join(block)))
    frame.columns = ["yyyymm", *[c.strip() for c in frame.columns[1:]]]
    months = pd.to_datetime(frame["yyyymm"].astype(str), format="%Y%m")
    return pd.DataFrame({"month": months, "rf": frame["RF"].astype(float) / 100.0, "origin": str(path)})[RF_COLUMNS]


def fetch_snapshot(settings: Settings, universe: Universe, folder: Path | None) -> SourceData:
    """Everything the snapshot holds for ``universe``."""
    if folder is None:
        raise ConfigError("no snapshot folder", hint="pass --snapshot-dir or set ROTATION_SNAPSHOT_DIR")
    if not folder.is_dir():
        raise ConfigError(f"snapshot folder not found: {folder}",
                          hint="pass --snapshot-dir or set ROTATION_SNAPSHOT_DIR")
    if not (folder / "prices").is_dir():
        raise ConfigError(f"snapshot folder {folder} has no prices/ folder")
    prices = read_prices(folder / "prices", universe)
    vintages = settings.data.fred_md_vintages or [str(p) for p in sorted((folder / "fred-md").glob("*.csv"))
                                                  if p.stem[:4].isdigit()]
    if not vintages:
        raise ConfigError(f"snapshot folder {folder} has no fred-md/YYYY-MM.csv vintage")
    macro, vintage_details = read_vintages(vintages, settings.data.download_timeout_s)
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
    details = {"folder": str(folder), "vintages": vintage_details,
               "prices": {t: [str(g["date"].min().date()), str(g["date"].max().date())]
                          for t, g in prices.groupby("asset", sort=False)},
               "extra_series": [e["series"].iloc[0] for e in extras],
               "risk_free": str(french[-1]) if french else "TB3MS"}
    return SourceData(source="snapshot", prices=prices[PRICE_COLUMNS], macro=macro[MACRO_COLUMNS],
                      risk_free=risk_free, details=details)
