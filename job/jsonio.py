"""JSON out of the job: the one home of its sanitising rules and byte layouts.

Two rules, on purpose (each keeps the bytes the job wrote before this module existed):

- :func:`json_bytes` writes the store's documents (manifests, metrics, the report's recorded context,
  validation): sorted keys, NaN and infinities as null, numpy scalars and arrays as numbers, timestamps
  as full ISO 8601 (``2024-01-31T00:00:00``), Periods as ``YYYY-MM``; any other type is an error. With
  ``strict=True`` it writes the model registry's documents instead: no sanitising, a NaN is an error and
  an unknown value is written as ``str(value)``; the registry's layout (``indent=1``, no trailing
  newline) is kept so that fits stored by earlier versions compare byte for byte.
- :func:`plain` turns values from Great Expectations and pandas into JSON-ready Python for the
  validation report: dates at midnight read as dates (``2024-01-31``, what a check's observer wrote),
  NaT and NaN as None, anything else unknown as its text (a check's observed value is shown, never
  refused).
"""

from __future__ import annotations

import json
import math
from datetime import date, datetime
from typing import Any

import numpy as np
import pandas as pd


def json_bytes(obj: Any, *, strict: bool = False) -> bytes:
    """Stable JSON: sorted keys, 2-space indent, trailing newline; NaN and infinities become null.

    ``strict``: the model registry's rule (1-space indent, no newline, NaN raises ValueError, unknown
    values as ``str``).
    """
    if strict:
        return json.dumps(obj, indent=1, sort_keys=True, allow_nan=False, default=str).encode()
    return (json.dumps(_finite(obj), sort_keys=True, indent=2, default=_json_default, allow_nan=False)
            + "\n").encode("utf-8")


def _finite(obj: Any) -> Any:
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {str(k): _finite(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_finite(v) for v in obj]
    return obj


def _json_default(obj: Any) -> Any:
    if hasattr(obj, "item"):  # numpy scalars
        return _finite(obj.item())
    if hasattr(obj, "tolist"):  # numpy arrays
        return _finite(obj.tolist())
    if isinstance(obj, datetime | pd.Timestamp):
        return obj.isoformat()
    if isinstance(obj, pd.Period):
        return str(obj)
    raise TypeError(f"cannot write {type(obj).__name__} to JSON")


def plain(value: Any) -> Any:
    """A JSON-serialisable version of a value from GX or pandas (NaN -> None, timestamps -> ISO dates)."""
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float):
        return None if math.isnan(value) else value
    if isinstance(value, pd.Timestamp | datetime):
        ts = pd.Timestamp(value)
        return ts.date().isoformat() if ts == ts.normalize() else ts.isoformat()
    if isinstance(value, date):
        return value.isoformat()
    if value is pd.NaT or value is pd.NA:
        return None
    if value is None or isinstance(value, bool | int | str):
        return value
    return str(value)
