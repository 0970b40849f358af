"""FRED-MD monthly panel CSVs (McCracken and Ng), from a path or a URL.

Format: header ``sasdate,RPI,...``; the second row ``Transform:,5,5,...`` holds transformation codes;
dates ``M/D/YYYY`` on the first of the month; empty fields are missing; the last months are ragged
and some vintages end with blank rows. A vintage ``YYYY-MM`` holds data through the month before it.

One vintage gives pseudo-real-time data: values are revised ones, ``available_at`` = period end + lag
(computed in the warehouse). Several vintages: each later vintage's values become usable from its
release, so a decision uses the latest vintage released by then (see ``sql/views.sql``).
"""

from __future__ import annotations

import io
import re
from pathlib import Path

import pandas as pd
import requests

from job.errors import ConfigError, DataError, UpstreamUnavailable
from job.logs import get_logger
from job.months import month_end, parse_month
from job.series import alias_map, catalogue
from job.sources.base import MACRO_COLUMNS

log = get_logger("sources.fredmd")
_VINTAGE_RE = re.compile(r"(\d{4})-(\d{2})")


def read_text(location: str, timeout_s: float) -> str:
    """The CSV text of a local path or an http(s) URL (UpstreamUnavailable when the URL fails)."""
    if location.startswith(("http://", "https://")):
        try:
            response = requests.get(location, timeout=timeout_s)
            response.raise_for_status()
        except requests.RequestException as exc:
            raise UpstreamUnavailable(f"cannot download FRED-MD from {location}: {exc}",
                                      hint="check the network or use --source snapshot") from None
        return response.text
    path = Path(location)
    if not path.is_file():
        raise ConfigError(f"FRED-MD file not found: {path}")
    try:
        return path.read_bytes().decode("utf-8-sig", errors="strict")
    except UnicodeDecodeError:
        return path.read_bytes().decode("cp1252")


def parse_fredmd(text: str, *, origin: str, vintage: str | None = None) -> tuple[pd.DataFrame, dict]:
    """Parse one FRED-MD vintage into long macro observations (levels, not yet transformed).

    Returns ``(frame, details)``; ``frame`` has the warehouse's macro columns. Series renamed between
    vintages are mapped to their current names; series the catalogue does not know are dropped and
    listed in ``details['dropped']``. Raises DataError for a malformed file, non-numeric values or
    duplicated dates.
    """
    try:
        raw = pd.read_csv(io.StringIO(text), dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
        raise DataError(f"{origin}: not a FRED-MD CSV ({exc})") from None
    if raw.empty or raw.columns[0].strip().lower() != "sasdate":
        raise DataError(f"{origin}: not a FRED-MD CSV (first column must be 'sasdate')")
    first = raw.iloc[0, 0].strip().lower()
    file_tcodes = raw.iloc[0, 1:] if first.startswith("transform") else None
    body = raw.iloc[1:] if file_tcodes is not None else raw
    body = body[body.iloc[:, 0].str.strip() != ""]  # blank tail rows
    dates = pd.to_datetime(body.iloc[:, 0].str.strip(), format="%m/%d/%Y", errors="coerce")
    if dates.isna().any():
        bad = body.iloc[:, 0][dates.isna()].iloc[0]
        raise DataError(f"{origin}: bad date {bad!r} (expected M/D/YYYY)")
    if dates.duplicated().any():
        raise DataError(f"{origin}: duplicated date {dates[dates.duplicated()].iloc[0].date()}")
    values = body.iloc[:, 1:].replace({"": None})
    numeric = values.apply(pd.to_numeric, errors="coerce")
    bad_mask = numeric.isna() & values.notna()
    if bad_mask.to_numpy().any():
        col = bad_mask.any().idxmax()
        raise DataError(f"{origin}: non-numeric value {values[col][bad_mask[col]].iloc[0]!r} in column {col}")
    numeric.index = dates.dt.to_period("M").dt.start_time
    known, renames = catalogue(), alias_map()
    numeric = numeric.rename(columns=lambda c: canonical_name(c, renames))
    dropped = sorted(c for c in numeric.columns if c not in known)
    numeric = numeric[[c for c in numeric.columns if c in known]]
    tcode_mismatch = {}
    if file_tcodes is not None:
        for col, code in file_tcodes.items():
            name = canonical_name(col, renames)
            if not code.strip():
                continue
            try:
                tcode = int(float(code))
            except ValueError:
                raise DataError(f"{origin}: bad transformation code {code!r} for {col} (expected 1..7)") from None
            if name in known and tcode != known[name].tcode:
                tcode_mismatch[name] = tcode
    last_period = numeric.index.max()
    if vintage is None:
        match = _VINTAGE_RE.search(Path(origin).stem)
        vintage = f"{match.group(1)}-{match.group(2)}" if match else str(
            pd.Period(last_period, freq="M") + 1)
    release = month_end(parse_month(vintage))
    long = numeric.rename_axis("period").reset_index().melt(id_vars="period", var_name="series")
    long = long.dropna(subset=["value"])
    long["vintage"] = vintage
    long["vintage_release"] = pd.Timestamp(release)
    long["realtime_start"] = pd.NaT
    long["origin"] = origin
    details = {"vintage": vintage, "release": release.isoformat(), "rows": len(long),
               "first_period": str(numeric.index.min().date()), "last_period": str(last_period.date()),
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


def read_vintages(locations: list[str], timeout_s: float) -> tuple[pd.DataFrame, list[dict]]:
    """Parse several vintages; the same (series, period, vintage) twice is a DataError."""
    frames, details = [], []
    for location in locations:
        frame, info = parse_fredmd(read_text(location, timeout_s), origin=location)
        frames.append(frame)
        details.append(info)
    vintages = [d["vintage"] for d in details]
    if len(set(vintages)) != len(vintages):
        raise DataError(f"FRED-MD vintages given twice: {vintages}")
    return pd.concat(frames, ignore_index=True), details

