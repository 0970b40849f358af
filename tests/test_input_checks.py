"""Every input checked at the door (issue 14, point 6): bad snapshot files exit 3 with one line naming the
file, the line and the problem, and nothing is ingested.

Each case copies the real snapshot (../shared/data) into tmp_path, alters one file and runs
``rotation ingest --source snapshot --snapshot-dir COPY`` through the CLI.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest


@pytest.fixture
def snapshot_copy(snapshot_dir: Path, tmp_path: Path) -> Path:
    """A private copy of the snapshot (symlinks for the large files that no case alters)."""
    copy = tmp_path / "snapshot"
    shutil.copytree(snapshot_dir, copy, ignore=shutil.ignore_patterns("README.md"))
    return copy


def _ingest(rotation: Callable, folder: Path, tmp_path: Path) -> object:
    warehouse = tmp_path / "w.duckdb"
    result = rotation("--warehouse", str(warehouse), "ingest", "--source", "snapshot", "--snapshot-dir", str(folder))
    return result, warehouse


def _replace_line(path: Path, predicate: Callable[[str], bool], change: Callable[[str], str]) -> int:
    """Change the first line matching ``predicate``; returns its 1-based number."""
    raw = path.read_bytes()
    newline = b"\r\n" if b"\r\n" in raw else b"\n"
    lines = raw.split(newline)
    for i, line in enumerate(lines):
        text = line.decode("cp1252")
        if predicate(text):
            lines[i] = change(text).encode("cp1252")
            path.write_bytes(newline.join(lines))
            return i + 1
    raise AssertionError("no line matched")


def _assert_exit_3(result: object, warehouse: Path, *needles: str) -> str:
    assert result.exit_code == 3, (result.exit_code, result.stderr[-2000:])
    line = result.error
    assert line.startswith("error: "), result.stderr
    assert "Traceback" not in result.stderr
    for needle in needles:
        assert re.search(needle, line), line
    assert not warehouse.exists() or _price_rows(warehouse) == 0
    return line


def _price_rows(warehouse: Path) -> int:
    import duckdb

    with duckdb.connect(str(warehouse), read_only=True) as con:
        return int(con.execute("SELECT count(*) FROM prices_daily").fetchone()[0])


def test_fredmd_tcode_9(rotation, snapshot_copy: Path, tmp_path: Path) -> None:
    path = snapshot_copy / "fred-md" / "2025-02.csv"
    _replace_line(path, lambda t: t.startswith("Transform:"), lambda t: t.replace("Transform:,5,", "Transform:,9,", 1))
    result, warehouse = _ingest(rotation, snapshot_copy, tmp_path)
    _assert_exit_3(result, warehouse, r"2025-02\.csv: line 2: transformation code '9' for RPI is not one of 1\.\.7")


def test_fredmd_value_1e300(rotation, snapshot_copy: Path, tmp_path: Path) -> None:
    path = snapshot_copy / "fred-md" / "2025-02.csv"
    number = _replace_line(path, lambda t: t.startswith("6/1/2010,"),
                           lambda t: "6/1/2010,1e300," + t.split(",", 2)[2])
    result, warehouse = _ingest(rotation, snapshot_copy, tmp_path)
    _assert_exit_3(result, warehouse, rf"2025-02\.csv: line {number}: value '1e300' in column RPI is beyond")


def test_fredmd_rows_past_the_release_month(rotation, snapshot_copy: Path, tmp_path: Path) -> None:
    """A vintage named 2019-10 whose rows run into 2019-10 (it cannot know that month)."""
    path = snapshot_copy / "fred-md" / "2019-10.csv"
    number = _replace_line(path, lambda t: t.startswith("9/1/2019,"), lambda t: t.replace("9/1/2019", "10/1/2019"))
    result, warehouse = _ingest(rotation, snapshot_copy, tmp_path)
    _assert_exit_3(result, warehouse, rf"2019-10\.csv: line {number}: row dated 2019-10 runs past the vintage 2019-10")


def test_fredmd_byte_invalid_in_every_encoding(rotation, snapshot_copy: Path, tmp_path: Path) -> None:
    """0x81 is neither UTF-8 (a lone continuation byte) nor cp1252 (undefined)."""
    path = snapshot_copy / "fred-md" / "2025-02.csv"
    raw = path.read_bytes().split(b"\r\n")
    raw[9] = raw[9].replace(b",", b",\x81", 1)
    path.write_bytes(b"\r\n".join(raw))
    result, warehouse = _ingest(rotation, snapshot_copy, tmp_path)
    _assert_exit_3(result, warehouse, r"2025-02\.csv: line 10: byte 0x81 .* is not valid utf-8 or cp1252")


@pytest.mark.parametrize(("content", "needle"), [
    (b"DATE,VIXCLS\n1990-01-02,17.24\n1990-01-03,18.19,7\n", r"VIXCLS\.csv: line 3: malformed CSV"),
    (b"DATE,VIXCLS\n1990-01-02,17.24\n1990-01-03,\xff\xfe\n", r"VIXCLS\.csv: line 3: byte 0xff .* is not valid utf-8"),
    (b"DATE,VIXCLS\n1990-01-02,17.24\n1990-01-03,high\n", r"VIXCLS\.csv: line 3: value 'high' is not a number"),
    (b"DATE,VIXCLS\n1990-01-02,17.24\n01/03/1990,18.19\n", r"VIXCLS\.csv: line 3: bad date '01/03/1990'"),
])
def test_malformed_fred_series(rotation, snapshot_copy: Path, tmp_path: Path, content: bytes, needle: str) -> None:
    (snapshot_copy / "fred" / "VIXCLS.csv").write_bytes(content)
    result, warehouse = _ingest(rotation, snapshot_copy, tmp_path)
    _assert_exit_3(result, warehouse, needle)


def test_non_numeric_french_rf(rotation, snapshot_copy: Path, tmp_path: Path) -> None:
    path = next((snapshot_copy / "french").glob("*.csv"))
    number = _replace_line(path, lambda t: t.startswith("200801,"), lambda t: t.rsplit(",", 1)[0] + ",  n/a")
    result, warehouse = _ingest(rotation, snapshot_copy, tmp_path)
    _assert_exit_3(result, warehouse, rf"F-F_Research_Data_Factors_202412\.csv: line {number}: RF 'n/a' of 200801 "
                   "is not a number")


@pytest.mark.parametrize("bad", ["1e300", "inf"])
def test_price_1e300_or_inf_on_a_day_that_is_not_a_month_end(rotation, snapshot_copy: Path, tmp_path: Path,
                                                              bad: str) -> None:
    path = snapshot_copy / "prices" / "VGT.csv"

    def change(text: str) -> str:
        fields = text.split(",")
        fields[4] = bad
        return ",".join(fields)

    number = _replace_line(path, lambda t: t.startswith("2015-06-10"), change)
    result, warehouse = _ingest(rotation, snapshot_copy, tmp_path)
    _assert_exit_3(result, warehouse, rf"VGT\.csv: line {number}: asset=VGT date=2015-06-10: close")


def test_header_only_price_csv_exits_3_at_ingest(rotation, snapshot_copy: Path, tmp_path: Path) -> None:
    path = snapshot_copy / "prices" / "VPU.csv"
    path.write_text(path.read_text().splitlines()[0] + "\n")
    result, warehouse = _ingest(rotation, snapshot_copy, tmp_path)
    _assert_exit_3(result, warehouse, r"VPU\.csv: no price rows")


def test_a_failed_ingest_keeps_the_previous_tables(rotation, snapshot_copy: Path, tmp_path: Path,
                                                   sample_warehouse: Path) -> None:
    """Exit 3 at the door: the warehouse that was there stays exactly as it was."""
    warehouse = Path(shutil.copy(sample_warehouse, tmp_path / "w.duckdb"))
    before = warehouse.read_bytes()
    (snapshot_copy / "prices" / "VPU.csv").write_text("Date,Close\n")
    result = rotation("--warehouse", str(warehouse), "ingest", "--source", "snapshot",
                      "--snapshot-dir", str(snapshot_copy))
    assert result.exit_code == 3
    assert warehouse.read_bytes() == before
