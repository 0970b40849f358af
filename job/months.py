"""Calendar months, the job's unit of time.

A month is a :class:`pandas.Period` with frequency ``M`` and is written ``YYYY-MM``. The decision date of
month m is its last trading day; the label of month m is the return over month m+1 (see DESIGN.md).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from datetime import date
from typing import Any

import pandas as pd

from job.errors import ConfigError

_MONTH_RE = re.compile(r"^(\d{4})-(\d{2})$")


def parse_month(text: str | pd.Period | date) -> pd.Period:
    """Parse ``YYYY-MM`` (or a Period/date) into a monthly Period; raise ConfigError otherwise."""
    if isinstance(text, pd.Period):
        return text.asfreq("M")
    if isinstance(text, date):
        return pd.Period(year=text.year, month=text.month, freq="M")
    match = _MONTH_RE.match(str(text).strip())
    if not match or not 1 <= int(match.group(2)) <= 12:
        raise ConfigError(f"invalid month {text!r}", hint="write months as YYYY-MM, for example 2025-01")
    return pd.Period(year=int(match.group(1)), month=int(match.group(2)), freq="M")


def month_str(month: pd.Period | pd.Timestamp) -> str:
    """``YYYY-MM`` for a monthly Period (or the month of a Timestamp)."""
    return f"{month.year:04d}-{month.month:02d}"


def month_label(value: Any) -> str:
    """``YYYY-MM`` for a Period or Timestamp (the month it falls in); other values (text already) as ``str``."""
    return month_str(value) if isinstance(value, pd.Period | pd.Timestamp) else str(value)


def month_labels(values: Iterable[Any]) -> list[str]:
    """:func:`month_label` of each value."""
    return [month_label(v) for v in values]


def month_start(month: pd.Period) -> date:
    """First calendar day of the month."""
    return date(month.year, month.month, 1)


def month_end(month: pd.Period) -> date:
    """Last calendar day of the month."""
    return month.end_time.date()


def last_complete_month(today: date | None = None) -> pd.Period:
    """The last complete calendar month before ``today`` (the default as-of month for live sources)."""
    today = today or date.today()
    return pd.Period(year=today.year, month=today.month, freq="M") - 1
