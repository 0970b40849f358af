"""Macro series from the FRED API (fredapi), with ALFRED real-time publication dates where given.

``FRED_API_KEY`` comes only from the environment (exit 2 when missing). fredapi calls ``urlopen``
without a timeout, so a socket timeout is set for the duration of the download and the whole download
runs under the job's deadline; network errors map to exit 4. For each non-market series the
observations come with ``realtime_start`` (the date a value was first published), so ``available_at``
is the real publication date; market series (rates, VIX, oil) use today's values with lag 0, and daily
series are averaged per month.

Each HTTP request is retried with backoff and jitter on timeouts, 429 and 5xx (``job/sources/retry.py``),
within the download's deadline: one rate-limited call among ~130 no longer fails the run. Every answer
is checked at the door (finite values within range, no value published before its period began).
"""

from __future__ import annotations

import os
import socket
import time
import urllib.error
import urllib.request
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pandas as pd

from job.config import Settings
from job.errors import ConfigError, UpstreamUnavailable
from job.logs import get_logger
from job.progress import progress
from job.series import SeriesInfo, catalogue
from job.sources.base import MACRO_COLUMNS, SourceData
from job.sources.checks import check_macro
from job.sources.deadline import call_with_deadline
from job.sources.retry import DEFAULT_ATTEMPTS, DEFAULT_INITIAL_WAIT_S, retry_settings, with_retries

log = get_logger("sources.fred")


@contextmanager
def socket_timeout(seconds: float) -> Iterator[None]:
    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(seconds)
    try:
        yield
    finally:
        socket.setdefaulttimeout(previous)


def retrying_fred(api_key: str, *, deadline_at: float, attempts: int = DEFAULT_ATTEMPTS,
                  initial_wait_s: float = DEFAULT_INITIAL_WAIT_S) -> Any:
    """A ``fredapi.Fred`` whose every request is retried on timeouts, 429 and 5xx until ``deadline_at``.

    fredapi's private ``__fetch_data`` (one ``urlopen`` per request) is replaced; the rest of fredapi's
    parsing is kept. An HTTP error that is not transient becomes fredapi's usual ValueError (its message).
    """
    from fredapi import Fred

    class RetryingFred(Fred):  # type: ignore[misc]
        def _Fred__fetch_data(self, url: str) -> ET.Element:  # noqa: N802 - fredapi's name-mangled method
            full = url + "&api_key=" + self.api_key

            def once() -> bytes:
                with urllib.request.urlopen(full) as response:
                    return bytes(response.read())

            series = url.rsplit("series_id=", maxsplit=1)[-1].split("&", maxsplit=1)[0]
            try:
                body = with_retries(once, what=f"FRED {series}", deadline_at=deadline_at, attempts=attempts,
                                    initial_wait_s=initial_wait_s,
                                    hint="FRED keeps failing; retry later, or use --source snapshot")
            except urllib.error.HTTPError as exc:
                root = ET.fromstring(exc.read())
                raise ValueError(root.get("message")) from None
            return ET.fromstring(body)

    return RetryingFred(api_key=api_key)


def series_to_fetch(settings: Settings) -> list[SeriesInfo]:
    """The configured FRED ids (default: the FRED-MD panel's ids plus the extra market series)."""
    known = catalogue()
    by_fred = {s.fred_id: s for s in known.values() if s.fred_id}
    wanted = settings.data.fred_series or [s.fred_id for s in known.values()
                                           if s.fred_id and s.group != "extra market"]
    wanted = list(dict.fromkeys([*wanted, *settings.data.extra_fred_series]))
    missing = [w for w in wanted if w not in by_fred]
    if missing:
        raise ConfigError(f"FRED series without catalogue metadata (tcode, market): {missing[:5]}",
                          hint="add them to job/macro_series.toml")
    return [by_fred[w] for w in wanted]


def _observations(fred: Any, info: SeriesInfo) -> pd.DataFrame:
    """Observations of one series as warehouse rows (monthly periods)."""
    if info.market:
        values = fred.get_series(info.fred_id).dropna()
        monthly = values.groupby(values.index.to_period("M")).mean()
        return pd.DataFrame({"series": info.name, "period": monthly.index.start_time, "value": monthly.to_numpy(),
                             "vintage": "latest", "vintage_release": pd.NaT, "realtime_start": pd.NaT,
                             "origin": f"fred:{info.fred_id}"})
    rel = fred.get_series_all_releases(info.fred_id).dropna(subset=["value"])
    rel["period"] = pd.to_datetime(rel["date"]).dt.to_period("M").dt.start_time
    rel["realtime_start"] = pd.to_datetime(rel["realtime_start"])
    rel = rel.groupby(["period", "realtime_start"], as_index=False)["value"].last()
    return pd.DataFrame({"series": info.name, "period": rel["period"], "value": rel["value"].astype(float),
                         "vintage": "alfred:" + rel["realtime_start"].dt.strftime("%Y-%m-%d"),
                         "vintage_release": rel["realtime_start"], "realtime_start": rel["realtime_start"],
                         "origin": f"alfred:{info.fred_id}"})


def fetch_fred(settings: Settings, *, root_url: str | None = None) -> SourceData:
    """Download the configured series; ConfigError without FRED_API_KEY, UpstreamUnavailable offline."""
    key = os.environ.get("FRED_API_KEY", "").strip()
    if not key:
        raise ConfigError("FRED_API_KEY is not set", hint="export FRED_API_KEY=... (a free key from FRED)")
    infos = series_to_fetch(settings)
    timeout = min(30.0, settings.data.download_timeout_s)
    total = settings.data.download_timeout_s * 10
    fred = retrying_fred(key, deadline_at=time.monotonic() + total, **retry_settings(settings))
    if root_url:
        fred.root_url = root_url

    def download() -> list[pd.DataFrame]:
        frames = []
        with socket_timeout(timeout):
            for info in progress(infos, "FRED series", unit="series"):
                try:
                    frames.append(_observations(fred, info))
                except (urllib.error.URLError, TimeoutError, ConnectionError, OSError) as exc:
                    raise UpstreamUnavailable(f"FRED is unreachable ({type(exc).__name__}: {exc})",
                                              hint="check the network, or use --source snapshot") from None
                except ET.ParseError:  # a proxy or error page instead of FRED's XML
                    raise UpstreamUnavailable(f"FRED answered {info.fred_id} with something that is not XML",
                                              hint="check the network or proxy, or use --source snapshot") from None
                except ValueError as exc:  # fredapi turns API errors into ValueError
                    message = str(exc).replace(key, "****")
                    if "api_key" in message.lower() or "api key" in message.lower():
                        raise ConfigError(f"FRED rejected the API key: {message}") from None
                    log.warning("FRED series %s skipped: %s", info.fred_id, message)
        return frames

    frames = call_with_deadline(download, seconds=total, what="FRED")
    if not frames:
        raise UpstreamUnavailable("FRED returned no series")
    macro = pd.concat(frames, ignore_index=True)[MACRO_COLUMNS]
    check_macro(macro, "FRED")
    details = {"series": sorted(macro["series"].unique().tolist()), "rows": len(macro)}
    return SourceData(source="fred", macro=macro, details=details)
