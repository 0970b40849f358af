"""What every data source returns: tidy frames with provenance, ready for the warehouse."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

PRICE_COLUMNS = ["asset", "date", "close", "origin"]
MACRO_COLUMNS = ["series", "period", "value", "vintage", "vintage_release", "realtime_start", "origin"]
RF_COLUMNS = ["month", "rf", "origin"]


@dataclass
class SourceData:
    """One ingest's worth of data from one source.

    - ``prices``: asset, date (datetime64 day), close (adjusted: total-return index), origin.
    - ``macro``: series, period (first of month), value (level), vintage, vintage_release, realtime_start
      (NaT when unknown), origin.
    - ``risk_free``: month (first of month), rf (decimal per month), origin.
    A source that does not provide a kind leaves it ``None``; the warehouse then keeps what it had.
    """

    source: str
    prices: pd.DataFrame | None = None
    macro: pd.DataFrame | None = None
    risk_free: pd.DataFrame | None = None
    synthetic: bool = False
    details: dict[str, Any] = field(default_factory=dict)

    def fingerprint(self) -> str:
        """sha256 over the content (not the ingest time): the same data gives the same fingerprint."""
        digest = hashlib.sha256(self.source.encode())
        for frame in (self.prices, self.macro, self.risk_free):
            if frame is not None:
                hashed = pd.util.hash_pandas_object(frame.reset_index(drop=True), index=False)
                digest.update(hashed.to_numpy().tobytes())
        return digest.hexdigest()


def empty_macro() -> pd.DataFrame:
    return pd.DataFrame({c: pd.Series(dtype="object") for c in MACRO_COLUMNS})
