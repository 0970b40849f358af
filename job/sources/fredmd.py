"""FRED-MD monthly panel CSVs (McCracken and Ng), from a path or a URL, recognised by content.

Format: header ``sasdate,RPI,...``; the second row ``Transform:,5,5,...`` holds transformation codes
(1..7); dates ``M/D/YYYY`` on the first of the month; empty fields are missing; the last months are
ragged and some vintages end with blank rows. A vintage ``YYYY-MM`` holds data through the month before.

A file is a FRED-MD panel when its first line starts with ``sasdate`` (any file name: the panel is
published as ``current.csv``). Its vintage is the month after its last dated row, unless configured
(a location ending in ``#YYYY-MM``). A ``YYYY-MM`` in the file name is a claim that is checked: rows at
or after it are an error, and when the panel ends earlier (a ragged end) the named, later month is used,
so a panel is never used before it can have been released. A row at or after the vintage month is a
DataError: a vintage cannot know it. Every row is checked at the door
(dates, numbers, finite values within range, tcodes 1..7); a failure names the file and the line.

One vintage gives pseudo-real-time data: values are revised ones, ``available_at`` = period end + lag
(computed in the warehouse). Several vintages: each later vintage's values become usable from its
release, so a decision uses the latest vintage released by then (see ``sql/views.sql``).
"""

from __future__ import annotations

import io
import re
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import requests

from job.errors import ConfigError, DataError, UpstreamUnavailable
from job.logs import get_logger
from job.months import month_end, month_str, parse_month
from job.series import alias_map, catalogue
from job.sources.base import MACRO_COLUMNS
from job.sources.checks import MAX_MACRO_ABS, TCODES, decode, fail, today
from job.sources.retry import DEFAULT_ATTEMPTS, DEFAULT_INITIAL_WAIT_S, with_retries

log = get_logger("sources.fredmd")
_VINTAGE_RE = re.compile(r"(\d{4})-(\d{2})")
_STATED_RE = re.compile(r"#(\d{4}-\d{2})$")
NOT_A_PANEL = "not a FRED-MD panel (no 'sasdate' header and 'Transform:' row)"


def split_location(location: str) -> tuple[str, str | None]:
    """``'path/current.csv#2025-02'`` -> ``('path/current.csv', '2025-02')``: a configured vintage."""
    match = _STATED_RE.search(location.strip())
    if not match:
        return location.strip(), None
    parse_month(match.group(1))
    return location.strip()[:match.start()], match.group(1)


def _download(url: str, timeout_s: float, attempts: int, initial_wait_s: float) -> bytes:
    deadline_at = time.monotonic() + timeout_s

    def get() -> bytes:
        response = requests.get(url, timeout=max(1.0, min(timeout_s, deadline_at - time.monotonic())))
        response.raise_for_status()
        return response.content

    try:
        return with_retries(get, what=f"FRED-MD download {url}", deadline_at=deadline_at, attempts=attempts,
                            initial_wait_s=initial_wait_s, hint="check the network or use --source snapshot")
    except requests.RequestException as exc:
        raise UpstreamUnavailable(f"cannot download FRED-MD from {url}: {exc}",
                                  hint="check the network or use --source snapshot") from None


def read_text(location: str, timeout_s: float, *, attempts: int = DEFAULT_ATTEMPTS,
              initial_wait_s: float = DEFAULT_INITIAL_WAIT_S) -> str:
    """The CSV text of a local path or an http(s) URL.

    URLs are retried on timeouts, 429 and 5xx within ``timeout_s`` (UpstreamUnavailable when that fails);
    the bytes must be UTF-8 or cp1252 (DataError naming the line of the first bad byte otherwise).
    """
    if location.startswith(("http://", "https://")):
        return decode(_download(location, timeout_s, attempts, initial_wait_s), location)
    path = Path(location)
    if not path.is_file():
        raise ConfigError(f"FRED-MD file not found: {path}")
    return decode(path.read_bytes(), location)


def panel_problem(head: str) -> str | None:
    """None when ``head`` (the start of a file) looks like a FRED-MD panel, else why it does not."""
    first = head.lstrip("\ufeff").split("\n", 1)[0]
    return None if first.split(",", 1)[0].strip().strip('"').lower() == "sasdate" else NOT_A_PANEL


@dataclass(frozen=True)
class FolderScan:
    """Which files of a folder are FRED-MD panels (used) and which are not (skipped, with the reason)."""

    used: list[str]
    skipped: dict[str, str]


def scan_folder(folder: Path) -> FolderScan:
    """Every file of ``folder``, recognised by content; each one is logged as used or skipped."""
    used: list[str] = []
    skipped: dict[str, str] = {}
    for path in sorted(p for p in folder.iterdir() if p.is_file()) if folder.is_dir() else []:
        if path.name.startswith("."):
            reason: str | None = "hidden file"
        else:
            with path.open("rb") as handle:
                reason = panel_problem(handle.read(4096).decode("utf-8", errors="replace"))
        if reason is None:
            used.append(str(path))
            log.info("FRED-MD file %s: used", path)
        else:
            skipped[str(path)] = reason
            log.info("FRED-MD file %s: skipped, %s", path, reason)
    return FolderScan(used=used, skipped=skipped)


def _line_numbers(raw: pd.DataFrame) -> np.ndarray:
    """File line of each data row (header = line 1; ``skip_blank_lines=False`` keeps the count exact)."""
    return np.arange(len(raw)) + 2


def parse_fredmd(text: str, *, origin: str, vintage: str | None = None) -> tuple[pd.DataFrame, dict]:
    """Parse one FRED-MD vintage into long macro observations (levels, not yet transformed).

    Returns ``(frame, details)``; ``frame`` has the warehouse's macro columns. Series renamed between
    vintages are mapped to their current names; series the catalogue does not know are dropped and
    listed in ``details['dropped']``. Raises DataError naming the line for a malformed file, a bad date,
    a non-numeric, infinite or out-of-range value, a transformation code outside 1..7, duplicated dates,
    or a row dated at or after the vintage month.
    """
    if panel_problem(text) is not None:
        if not text.strip():
            raise DataError(f"{origin}: not a FRED-MD CSV (the file is empty)")
        raise DataError(f"{origin}: not a FRED-MD CSV (first column must be 'sasdate')")
    try:
        raw = pd.read_csv(io.StringIO(text), dtype=str, keep_default_na=False, skip_blank_lines=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
        raise DataError(f"{origin}: not a FRED-MD CSV ({str(exc).strip().splitlines()[0]})") from None
    raw = raw.fillna("")
    raw.columns = [str(c).lstrip("\ufeff") for c in raw.columns]
    lines = _line_numbers(raw)
    first = raw.iloc[0, 0].strip().lower() if len(raw) else ""
    file_tcodes = raw.iloc[0, 1:] if first.startswith("transform") else None
    if file_tcodes is not None:
        for col, code in file_tcodes.items():
            if not code.strip():
                continue
            try:
                tcode = float(code)
            except ValueError:
                tcode = float("nan")
            if not (np.isfinite(tcode) and tcode == int(tcode) and int(tcode) in TCODES):
                raise fail(origin, f"transformation code {code.strip()!r} for {col} is not one of 1..7", line=2,
                           hint="FRED-MD tcodes are 1 (level) .. 7 (change of growth rate)")
    keep = np.ones(len(raw), dtype=bool)
    if file_tcodes is not None:
        keep[0] = False
    keep &= (raw.iloc[:, 0].str.strip() != "").to_numpy()  # blank tail rows and blank lines
    body, body_lines = raw[keep], lines[keep]
    if body.empty:
        raise DataError(f"{origin}: a FRED-MD header but no dated rows")
    dates = pd.to_datetime(body.iloc[:, 0].str.strip(), format="%m/%d/%Y", errors="coerce")
    if dates.isna().any():
        i = int(np.flatnonzero(dates.isna().to_numpy())[0])
        raise fail(origin, f"bad date {body.iloc[i, 0]!r} (expected M/D/YYYY)", line=body_lines[i])
    periods = dates.dt.to_period("M").dt.start_time
    dup = periods.duplicated().to_numpy()
    if dup.any():
        i = int(np.flatnonzero(dup)[0])
        raise fail(origin, f"duplicated date {periods.iloc[i].date()}", line=body_lines[i])
    values = body.iloc[:, 1:].apply(lambda c: c.str.strip()).replace({"": None})
    numeric = values.apply(pd.to_numeric, errors="coerce")
    bad_mask = (numeric.isna() & values.notna()).to_numpy().copy()
    arr = numeric.to_numpy(dtype=float)
    with np.errstate(invalid="ignore"):
        bad_mask |= ~np.isfinite(arr) & ~np.isnan(arr)
        bad_mask |= np.abs(arr) > MAX_MACRO_ABS
    if bad_mask.any():
        r, c = (int(x[0]) for x in np.nonzero(bad_mask))
        col, text_value = numeric.columns[c], values.iloc[r, c]
        problem = ("is not a number" if np.isnan(arr[r, c]) else "is not finite" if not np.isfinite(arr[r, c])
                   else f"is beyond +-{MAX_MACRO_ABS:g}")
        raise fail(origin, f"value {text_value!r} in column {col} {problem}", line=body_lines[r])
    has_value = numeric.notna().any(axis=1).to_numpy()
    if periods.max() > today():
        i = int(np.argmax(periods.to_numpy()))
        raise fail(origin, f"row dated {periods.iloc[i].date()} is after today", line=body_lines[i])
    content = pd.Period(periods[has_value].max() if has_value.any() else periods.max(), freq="M") + 1
    match = _VINTAGE_RE.search(Path(origin.split("?", maxsplit=1)[0]).stem)
    named = parse_month(f"{match.group(1)}-{match.group(2)}") if match else None
    if vintage is not None:
        chosen, how = parse_month(vintage), "configured"
    elif named is not None:  # a claim, checked below; used when the panel ends earlier (a ragged end)
        chosen, how = named, "named in the file name"
    else:
        chosen, how = content, "the month after its last row"
    late = (periods >= pd.Timestamp(chosen.start_time)).to_numpy() & has_value
    if late.any():
        i = int(np.flatnonzero(late)[0])
        raise fail(origin, f"row dated {month_str(pd.Period(periods.iloc[i], freq='M'))} runs past the vintage "
                   f"{month_str(chosen)} ({how}): a vintage holds data through the month before its release",
                   line=body_lines[i], hint="state the right vintage (a location ending in #YYYY-MM) or fix the file")
    vintage = month_str(chosen)
    numeric.index = periods.to_numpy()
    known, renames = catalogue(), alias_map()
    numeric = numeric.rename(columns=lambda c: canonical_name(c, renames))
    dropped = sorted(c for c in numeric.columns if c not in known)
    numeric = numeric[[c for c in numeric.columns if c in known]]
    tcode_mismatch = {}
    if file_tcodes is not None:
        for col, code in file_tcodes.items():
            name = canonical_name(col, renames)
            if code.strip() and name in known and int(float(code)) != known[name].tcode:
                tcode_mismatch[name] = int(float(code))
    last_period = pd.Timestamp(numeric.index.max())
    release = month_end(chosen)
    long = numeric.rename_axis("period").reset_index().melt(id_vars="period", var_name="series")
    long = long.dropna(subset=["value"])
    long["vintage"] = vintage
    long["vintage_release"] = pd.Timestamp(release)
    long["realtime_start"] = pd.NaT
    long["origin"] = origin
    details = {"vintage": vintage, "vintage_from": how, "release": release.isoformat(), "rows": len(long),
               "first_period": str(pd.Timestamp(numeric.index.min()).date()), "last_period": str(last_period.date()),
               "series": int(numeric.shape[1]), "dropped": dropped, "tcode_mismatch": tcode_mismatch}
    if dropped:
        log.info("FRED-MD %s: %d series not in the catalogue were dropped", vintage, len(dropped),
                 extra={"fields": {"dropped": dropped}})
    return long[MACRO_COLUMNS].sort_values(["series", "period"]).reset_index(drop=True), details


def canonical_name(column: str, renames: dict[str, str]) -> str:
    """The catalogue's name for a panel column: renamed series mapped, case-insensitive match."""
    name = renames.get(column.strip(), column.strip())
    by_lower = {k.lower(): k for k in catalogue()}
    return by_lower.get(name.lower(), name)


def read_vintages(locations: list[str], timeout_s: float, *, attempts: int = DEFAULT_ATTEMPTS,
                  initial_wait_s: float = DEFAULT_INITIAL_WAIT_S) -> tuple[pd.DataFrame, list[dict]]:
    """Parse several vintages (a location may end in ``#YYYY-MM`` to state its vintage).

    The same vintage twice is a DataError.
    """
    frames, details = [], []
    for location in locations:
        where, stated = split_location(location)
        text = read_text(where, timeout_s, attempts=attempts, initial_wait_s=initial_wait_s)
        frame, info = parse_fredmd(text, origin=where, vintage=stated)
        frames.append(frame)
        details.append(info | {"file": where})
        log.info("FRED-MD %s: vintage %s (%s), periods %s .. %s", where, info["vintage"], info["vintage_from"],
                 info["first_period"][:7], info["last_period"][:7])
    vintages = [d["vintage"] for d in details]
    if len(set(vintages)) != len(vintages):
        raise DataError(f"FRED-MD vintages given twice: {vintages}",
                        hint="keep one file per vintage, or state each file's vintage as PATH#YYYY-MM")
    return pd.concat(frames, ignore_index=True), details
