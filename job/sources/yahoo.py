"""Daily adjusted closes from Yahoo Finance through yfinance.

yfinance never raises from ``download()`` when the network is down: it returns an EMPTY frame and logs.
It can also hang for minutes. So: our own deadline, and an explicit check that every ticker came back
with data; anything missing is an UpstreamUnavailable (exit 4) naming the tickers. When yfinance's own
error record says the missing tickers were rate limited (HTTP 429), timed out or met a 5xx, the download
is retried with backoff and jitter within the deadline (``job/sources/retry.py``). The answer is checked
at the door like a file (``job/sources/checks.py``): every close finite, positive, bounded, no wild jump.
"""

from __future__ import annotations

import logging
import os
import re
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import pandas as pd

from job.config import Settings, Universe
from job.errors import UpstreamUnavailable
from job.logs import get_logger
from job.months import month_start, parse_month
from job.sources.base import PRICE_COLUMNS, SourceData
from job.sources.checks import check_prices
from job.sources.deadline import call_with_deadline
from job.sources.retry import TransientUpstream, retry_settings, with_retries

log = get_logger("sources.yahoo")


def _download(tickers: list[str], start: str, session: Any = None) -> pd.DataFrame:
    import yfinance as yf

    cache = Path(os.environ.get("ROTATION_CACHE_DIR", Path.home() / ".cache" / "sector-rotation")) / "yfinance"
    cache.mkdir(parents=True, exist_ok=True)
    yf.set_tz_cache_location(str(cache))
    kwargs: dict[str, Any] = {"start": start, "auto_adjust": True, "actions": False, "progress": False,
                              "threads": False, "group_by": "column"}
    if session is not None:
        kwargs["session"] = session
    if log.isEnabledFor(logging.DEBUG):  # --verbose: keep yfinance's own messages
        return yf.download(tickers, **kwargs)
    # yfinance prints one raw line per failed ticker and pandas deprecation warnings on stderr; they would
    # break --log-format json, and the missing tickers become one UpstreamUnavailable line anyway.
    logging.getLogger("yfinance").setLevel(logging.CRITICAL)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return yf.download(tickers, **kwargs)


_TRANSIENT = re.compile(r"rate.?limit|too many requests|\b429\b|timed? ?out|timeout|\b5\d\d\b|server error",
                        re.IGNORECASE)


def transient_errors(tickers: list[str]) -> dict[str, str]:
    """yfinance's recorded errors (``yfinance.shared._ERRORS``) for ``tickers`` that are worth a retry."""
    shared = sys.modules.get("yfinance.shared")
    errors = getattr(shared, "_ERRORS", None) or {}
    return {t: str(errors[t]) for t in tickers if t in errors and _TRANSIENT.search(str(errors[t]))}


def tidy_download(raw: pd.DataFrame, tickers: list[str]) -> pd.DataFrame:
    """yfinance's wide frame -> tidy (asset, date, close); UpstreamUnavailable for missing tickers."""
    if raw is None or raw.empty:
        raise UpstreamUnavailable("Yahoo Finance returned no data (network down or tickers unknown)",
                                  hint="check the network, or use --source snapshot")
    close = raw["Close"] if isinstance(raw.columns, pd.MultiIndex) else raw[["Close"]].set_axis(tickers, axis=1)
    close = close.reindex(columns=tickers)
    missing = [t for t in tickers if close[t].dropna().empty]
    if missing:
        raise UpstreamUnavailable(f"Yahoo Finance returned no prices for {missing}",
                                  hint="check the tickers of the universe and the network")
    long = close.rename_axis("date").reset_index().melt(id_vars="date", var_name="asset", value_name="close")
    long = long.dropna(subset=["close"])
    long["date"] = pd.to_datetime(long["date"]).dt.tz_localize(None).dt.normalize()
    long["origin"] = "yfinance"
    return long[PRICE_COLUMNS].sort_values(["asset", "date"]).reset_index(drop=True)


def fetch_yahoo(settings: Settings, universe: Universe, *, session: Any = None) -> SourceData:
    """Prices for ``universe`` from a month before ``settings.data.start`` up to today."""
    start = month_start(parse_month(settings.data.start) - 2).isoformat()
    log.info("downloading %d tickers from Yahoo Finance", len(universe.tickers),
             extra={"fields": {"tickers": universe.tickers, "start": start}})
    timeout = settings.data.download_timeout_s

    def attempt() -> pd.DataFrame:
        raw = _download(universe.tickers, start, session)
        try:
            return tidy_download(raw, universe.tickers)
        except UpstreamUnavailable:
            transient = transient_errors(universe.tickers)
            if transient:
                raise TransientUpstream("Yahoo Finance: " + "; ".join(f"{t}: {e}" for t, e in
                                                                      list(transient.items())[:3])) from None
            raise

    deadline_at = time.monotonic() + timeout
    prices = call_with_deadline(
        lambda: with_retries(attempt, what="Yahoo Finance", deadline_at=deadline_at, **retry_settings(settings),
                             hint="Yahoo Finance keeps failing; retry later, or use --source snapshot"),
        seconds=timeout, what="Yahoo Finance")
    check_prices(prices, "Yahoo Finance")
    details = {"prices": {t: [str(g["date"].min().date()), str(g["date"].max().date())]
                          for t, g in prices.groupby("asset", sort=False)}}
    return SourceData(source="yahoo", prices=prices, details=details)
