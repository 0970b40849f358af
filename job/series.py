"""The catalogue of macro series: FRED-MD panel names, FRED ids, transformation codes, market flags.

Read from ``job/macro_series.toml`` (package data). ``market`` series (interest and exchange rates,
stock market, VIX, oil) are published at once, so their publication lag is the market lag (0).
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from functools import cache
from importlib import resources


@dataclass(frozen=True)
class SeriesInfo:
    name: str
    fred_id: str
    tcode: int
    market: bool
    group: str
    description: str
    aliases: tuple[str, ...] = field(default=())


@cache
def catalogue() -> dict[str, SeriesInfo]:
    """All known series by name (FRED-MD name; extras by FRED id)."""
    text = resources.files("job").joinpath("macro_series.toml").read_text(encoding="utf-8")
    out = {}
    for row in tomllib.loads(text)["series"]:
        info = SeriesInfo(name=row["name"], fred_id=row["fred_id"], tcode=int(row["tcode"]),
                          market=bool(row["market"]), group=row["group"], description=row["description"],
                          aliases=tuple(row.get("aliases", ())))
        out[info.name] = info
    return out


@cache
def alias_map() -> dict[str, str]:
    """Old name -> current name, for series renamed between FRED-MD vintages."""
    return {alias: info.name for info in catalogue().values() for alias in info.aliases}
