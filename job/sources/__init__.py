"""Data sources. Each returns a :class:`SourceData`; several can be combined in one ingest.

``yahoo`` gives prices, ``fred`` and ``fred-md`` give macro data, ``snapshot`` and ``sample`` give both.
A live monthly run combines them: ``--source yahoo,fred-md``.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from job.config import SOURCES, Settings, Universe
from job.errors import ConfigError
from job.sources.base import SourceData

__all__ = ["FRED_MD_CURRENT_URL", "SourceData", "fetch", "parse_sources"]

FRED_MD_CURRENT_URL = "https://files.stlouisfed.org/files/htdocs/fred-md/monthly/current.csv"


def parse_sources(text: str) -> list[str]:
    """``'yahoo,fred-md'`` -> ``['yahoo', 'fred-md']``; ConfigError for an unknown name."""
    names = [n.strip() for n in text.split(",") if n.strip()]
    unknown = [n for n in names if n not in SOURCES]
    if not names or unknown:
        raise ConfigError(f"unknown source {unknown or text!r}", hint=f"choose from {', '.join(SOURCES)}")
    return names


def _fetch_one(name: str, settings: Settings, universe: Universe, snapshot_dir: Path | None) -> SourceData:
    if name == "sample":
        from job.sources.sample import fetch_sample

        return fetch_sample(settings, universe)
    if name == "snapshot":
        from job.sources.snapshot import fetch_snapshot

        return fetch_snapshot(settings, universe, snapshot_dir)
    if name == "yahoo":
        from job.sources.yahoo import fetch_yahoo

        return fetch_yahoo(settings, universe)
    if name == "fred":
        from job.sources.fred import fetch_fred

        return fetch_fred(settings)
    from job.sources.fredmd import read_vintages

    locations = settings.data.fred_md_vintages or [FRED_MD_CURRENT_URL]
    macro, details = read_vintages(locations, settings.data.download_timeout_s)
    return SourceData(source="fred-md", macro=macro, details={"vintages": details})


def fetch(names: list[str], settings: Settings, universe: Universe, snapshot_dir: Path | None) -> SourceData:
    """Fetch every named source and combine them (prices from the first that has prices, etc.)."""
    parts = [_fetch_one(n, settings, universe, snapshot_dir) for n in names]
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
