"""Data sources. Each returns a :class:`SourceData`; several can be combined in one ingest.

``yahoo`` and ``file`` (the user's own files) give prices, ``fred`` and ``fred-md`` give macro data,
``snapshot`` and ``sample`` give both. A live monthly run combines them: ``--source yahoo,fred-md``; the
user's own prices with the snapshot's macro data: ``--source file,snapshot``. Each source checks its
input at the door (``job/sources/checks.py``), and :func:`fetch` checks every answer once more before
anything reaches the warehouse: a bad row is a DataError (exit 3) and nothing is ingested.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from job.config import SOURCES, Settings, Universe
from job.errors import ConfigError
from job.sources.base import SourceData
from job.sources.checks import check_macro, check_prices, check_risk_free
from job.sources.retry import retry_settings

__all__ = ["FRED_MD_CURRENT_URL", "SourceData", "fetch", "parse_sources"]

FRED_MD_CURRENT_URL = "https://files.stlouisfed.org/files/htdocs/fred-md/monthly/current.csv"


def parse_sources(text: str) -> list[str]:
    """``'yahoo,fred-md'`` -> ``['yahoo', 'fred-md']``; ConfigError for an unknown name."""
    names = [n.strip() for n in text.split(",") if n.strip()]
    unknown = [n for n in names if n not in SOURCES]
    if not names or unknown:
        raise ConfigError(f"unknown source {unknown or text!r}", hint=f"choose from {', '.join(SOURCES)}")
    return names


def _fetch_one(name: str, settings: Settings, universe: Universe, snapshot_dir: Path | None, *,
               prices: bool = True) -> SourceData:
    if name == "sample":
        from job.sources.sample import fetch_sample

        return fetch_sample(settings, universe)
    if name == "snapshot":
        from job.sources.snapshot import fetch_snapshot

        return fetch_snapshot(settings, universe, snapshot_dir, prices=prices)
    if name == "file":
        from job.sources.files import fetch_files

        return fetch_files(settings, universe)
    if name == "yahoo":
        from job.sources.yahoo import fetch_yahoo

        return fetch_yahoo(settings, universe)
    if name == "fred":
        from job.sources.fred import fetch_fred

        return fetch_fred(settings)
    from job.sources.fredmd import read_vintages

    locations = settings.data.fred_md_vintages or [FRED_MD_CURRENT_URL]
    macro, details = read_vintages(locations, settings.data.download_timeout_s, **retry_settings(settings))
    return SourceData(source="fred-md", macro=macro, details={"vintages": details})


def check_at_the_door(data: SourceData) -> SourceData:
    """Every row of every frame within range (see job/sources/checks.py); DataError naming the row."""
    if data.prices is not None:
        check_prices(data.prices, data.source)
    if data.macro is not None:
        check_macro(data.macro, data.source)
    if data.risk_free is not None:
        check_risk_free(data.risk_free, data.source)
    return data


PRICE_SOURCES = ("yahoo", "file", "snapshot", "sample")


def fetch(names: list[str], settings: Settings, universe: Universe, snapshot_dir: Path | None) -> SourceData:
    """Fetch every named source and combine them (prices from the first that has prices, etc.).

    The snapshot reads no prices when an earlier source gives them (``file,snapshot``: the user's own
    prices with the snapshot's macro data, for a universe whose tickers the snapshot does not hold).
    """
    parts = []
    for i, name in enumerate(names):
        earlier_prices = any(n in PRICE_SOURCES for n in names[:i])
        parts.append(check_at_the_door(_fetch_one(name, settings, universe, snapshot_dir,
                                                  prices=not earlier_prices)))
    if len(parts) == 1:
        return parts[0]

    def first(kind: str) -> pd.DataFrame | None:
        return next((getattr(p, kind) for p in parts if getattr(p, kind) is not None), None)

    combined = SourceData(source="+".join(names), prices=first("prices"), macro=first("macro"),
                          risk_free=first("risk_free"), synthetic=any(p.synthetic for p in parts),
                          details={p.source: p.details for p in parts})
    # the series metadata must describe the macro rows actually kept, i.e. come from the same part
    macro_part = next((p for p in parts if p.macro is not None), None)
    if macro_part is not None and "series_meta" in macro_part.details:
        combined.details["series_meta"] = macro_part.details["series_meta"]
    return combined
