"""Checks at the door: every source file or answer is checked before anything is ingested.

A source parser reads its input into a frame whose ``line`` column (where the input has lines) gives the
file line of each row; the checks below then look at EVERY row (not only month ends) for encoding, shape,
types, dates, ranges and dates beyond what the input could know, and raise :class:`DataError` (exit 3)
with one line: ``<file>: line <n>: <problem>``. Nothing is ingested when a check fails, because the
sources run before the warehouse's transaction starts.

Bounds (deliberately wide: they catch corrupt values, not unusual markets):

- prices: finite, positive, at most :data:`MAX_PRICE`; a day-over-day move within
  :data:`MIN_DAILY_RATIO` .. :data:`MAX_DAILY_RATIO` (the snapshot's worst days are -20 % and +17 %);
- monthly returns: above -100 % and at most :data:`MAX_MONTHLY_RETURN`;
- macro levels: finite, absolute value at most :data:`MAX_MACRO_ABS` (the largest FRED-MD level is
  about 4.7e6); FRED-MD transformation codes 1..7;
- risk-free rate: finite, within :data:`RF_BOUNDS` per month (decimal);
- dates: no day after today, and no period a vintage could not have known (FRED-MD rows at or after the
  vintage month, a Fama/French file's months after the month in its name, ALFRED values published
  before their period began).
"""

from __future__ import annotations

from datetime import date

import numpy as np
import pandas as pd

from job.errors import DataError

ENCODINGS = ("utf-8-sig", "cp1252")
MAX_PRICE = 1e9
MIN_DAILY_RATIO, MAX_DAILY_RATIO = 0.2, 5.0
MAX_MONTHLY_RETURN = 3.0
MAX_MACRO_ABS = 1e9
RF_BOUNDS = (-0.01, 0.05)
TCODES = range(1, 8)


def today() -> pd.Timestamp:
    """Today (a function, so that tests can move the clock)."""
    return pd.Timestamp(date.today())


def fail(origin: str, problem: str, *, line: object = None, hint: str | None = None) -> DataError:
    """The DataError for one bad input: one line naming the file, the line (when known) and the problem."""
    at = f"{origin}: line {int(line)}" if line is not None and not pd.isna(line) else origin  # type: ignore[call-overload]
    return DataError(f"{at}: {problem}", hint=hint or "fix or remove the input; nothing was ingested")


def decode(raw: bytes, origin: str, encodings: tuple[str, ...] = ENCODINGS) -> str:
    """The text of ``raw`` in the first encoding that decodes it; DataError naming the line otherwise."""
    errors: list[UnicodeDecodeError] = []
    for encoding in encodings:
        try:
            return raw.decode(encoding)
        except UnicodeDecodeError as exc:
            errors.append(exc)
    last = errors[-1]
    line = raw[:last.start].count(b"\n") + 1
    names = " or ".join(e.replace("-sig", "") for e in encodings)
    raise fail(origin, f"byte 0x{raw[last.start]:02x} at offset {last.start} is not valid {names}", line=line,
               hint="save the file as UTF-8")


def read_text_file(path: object, origin: str | None = None) -> str:
    """Read and decode a local file (see :func:`decode`)."""
    from pathlib import Path

    p = Path(str(path))
    return decode(p.read_bytes(), origin or str(p))


def _first(mask: pd.Series | np.ndarray) -> int:
    return int(np.flatnonzero(np.asarray(mask))[0])


def _row_label(frame: pd.DataFrame, i: int, cols: tuple[str, ...]) -> str:
    parts = []
    for col in cols:
        if col in frame.columns:
            value = frame[col].iloc[i]
            if isinstance(value, pd.Timestamp):
                value = value.strftime("%Y-%m") if col in ("month", "period") else value.date()
            parts.append(f"{col}={value}")
    return " ".join(parts)


def _raise_at(frame: pd.DataFrame, mask: pd.Series | np.ndarray, origin: str, problem: str,
              keys: tuple[str, ...], hint: str | None = None) -> None:
    """Raise for the first row where ``mask`` holds: ``<file>: line <n>: <key=value...>: <problem>``.

    ``problem`` may name the row's columns as ``{close}``; the file is the row's ``origin`` when the frame
    has one (several files in one frame), else ``origin``.
    """
    if not np.asarray(mask).any():
        return
    i = _first(mask)
    line = frame["line"].iloc[i] if "line" in frame.columns else None
    source = str(frame["origin"].iloc[i]) if "origin" in frame.columns and line is not None else origin
    text = problem.format(**{c: frame[c].iloc[i] for c in frame.columns if isinstance(c, str)})
    label = _row_label(frame, i, keys)
    raise fail(source, f"{label}: {text}" if label else text, line=line, hint=hint)


def check_prices(frame: pd.DataFrame, origin: str) -> pd.DataFrame:
    """Daily closes (asset, date, close[, line]): every row finite, positive, bounded, no wild jump, not future."""
    if frame.empty:
        raise fail(origin, "no price rows", hint="the file has a header but no data")
    keys = ("asset", "date")
    close = frame["close"].to_numpy(dtype=float)
    _raise_at(frame, ~np.isfinite(close), origin, "close {close!r} is not a finite number", keys)
    _raise_at(frame, close <= 0, origin, "close {close!r} is not positive", keys)
    _raise_at(frame, close > MAX_PRICE, origin, f"close {{close:g}} is above {MAX_PRICE:g}", keys)
    _raise_at(frame, frame["date"] > today(), origin, "date is after today", keys)
    dup = frame.duplicated(["asset", "date"], keep="first").to_numpy()
    _raise_at(frame, dup, origin, "the same date twice", keys)
    ordered = frame.sort_values(["asset", "date"], kind="stable")
    previous = ordered.groupby("asset", sort=False)["close"].shift()
    ratio = (ordered["close"] / previous).to_numpy(dtype=float)
    jump = (ratio < MIN_DAILY_RATIO) | (ratio > MAX_DAILY_RATIO)
    if jump.any():
        prev_close = previous.to_numpy()[_first(jump)]
        _raise_at(ordered, jump, origin, f"close {{close:g}} after {prev_close:g} the day before: a move beyond "
                  f"{MIN_DAILY_RATIO - 1:+.0%} .. {MAX_DAILY_RATIO - 1:+.0%} in one day", keys,
                  hint="prices must be adjusted closes (a total-return index); fix the row")
    return frame


def check_returns(frame: pd.DataFrame, origin: str) -> pd.DataFrame:
    """Monthly returns as fractions (asset, month, ret[, line]): finite, > -100 %, <= MAX_MONTHLY_RETURN."""
    if frame.empty:
        raise fail(origin, "no return rows", hint="the file has a header but no data")
    keys = ("asset", "month")
    ret = frame["ret"].to_numpy(dtype=float)
    _raise_at(frame, ~np.isfinite(ret), origin, "return {ret!r} is not a finite number", keys)
    _raise_at(frame, (ret <= -1) | (ret > MAX_MONTHLY_RETURN), origin,
              f"return {{ret:g}} (as a fraction) is outside -100 % .. +{MAX_MONTHLY_RETURN:.0%}", keys,
              hint="check the file's unit (percent or fraction) in the universe's [file] table")
    _raise_at(frame, frame["month"] > today(), origin, "month is after today", keys)
    _raise_at(frame, frame.duplicated(["asset", "month"]).to_numpy(), origin, "the same month twice", keys)
    return frame


def check_macro(frame: pd.DataFrame, origin: str) -> pd.DataFrame:
    """Macro levels (series, period, value, vintage[, vintage_release, realtime_start, line])."""
    keys = ("series", "period")
    value = frame["value"].to_numpy(dtype=float)
    present = ~np.isnan(value)
    _raise_at(frame, present & ~np.isfinite(value), origin, "value {value!r} of {series} is not finite", keys)
    _raise_at(frame, present & (np.abs(value) > MAX_MACRO_ABS), origin,
              f"value {{value:g}} of {{series}} is beyond +-{MAX_MACRO_ABS:g}", keys)
    _raise_at(frame, frame["period"] > today(), origin, "period is after today", keys)
    if "realtime_start" in frame.columns:
        rts = pd.to_datetime(frame["realtime_start"])
        _raise_at(frame, (rts < frame["period"]).to_numpy(), origin,
                  "published (realtime_start) before its period began", keys)
        _raise_at(frame, (rts > today()).to_numpy(), origin, "published (realtime_start) after today", keys)
    return frame


def check_risk_free(frame: pd.DataFrame, origin: str) -> pd.DataFrame:
    """Monthly risk-free returns (month, rf[, line]) as decimals."""
    keys = ("month",)
    rf = frame["rf"].to_numpy(dtype=float)
    _raise_at(frame, ~np.isfinite(rf), origin, "RF {rf!r} is not a finite number", keys)
    low, high = RF_BOUNDS
    _raise_at(frame, (rf < low) | (rf > high), origin,
              f"RF {{rf:g}} per month is outside {low:.0%} .. {high:.0%}", keys)
    _raise_at(frame, frame["month"] > today(), origin, "month is after today", keys)
    _raise_at(frame, frame.duplicated(["month"]).to_numpy(), origin, "the same month twice", keys)
    return frame
