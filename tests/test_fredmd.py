"""FRED-MD panel parsing: transform row, ragged and blank tails, renamed series, bad input -> exit 3."""

from __future__ import annotations

import socket
from pathlib import Path

import pandas as pd
import pytest

from job.errors import ConfigError, DataError, UpstreamUnavailable
from job.sources.fredmd import NOT_A_PANEL, parse_fredmd, read_text, read_vintages, scan_folder

# A tiny panel in the 2019-10 vintage's style: old name VXOCLSx, one series the catalogue does not know,
# a ragged last month and a blank tail row.
PANEL = """sasdate,INDPRO,VXOCLSx,MZMSL,CPIAUCSL
Transform:,5,1,6,6
7/1/2019,109.10,16.1,100.0,255.7
8/1/2019,109.94,18.9,101.0,256.0
9/1/2019,109.52,,102.0,
,,,,
"""


def test_parse_panel_long_rows_with_vintage_and_release() -> None:
    frame, details = parse_fredmd(PANEL, origin="fred-md/2019-10.csv")
    assert list(frame.columns) == ["series", "period", "value", "vintage", "vintage_release", "realtime_start",
                                   "origin"]
    assert details["vintage"] == "2019-10"                    # from the file name
    assert details["release"] == "2019-10-31"                 # a vintage is released at its month's end
    assert details["dropped"] == ["MZMSL"]                    # not in the catalogue
    assert details["last_period"] == "2019-09-01"
    assert set(frame["series"]) == {"INDPRO", "VIXCLSx", "CPIAUCSL"}   # VXOCLSx renamed to its current name
    assert len(frame) == 3 + 2 + 2                            # ragged month: missing values are not rows
    indpro = frame[frame["series"] == "INDPRO"].set_index("period")["value"]
    assert indpro[pd.Timestamp("2019-09-01")] == 109.52
    assert frame["realtime_start"].isna().all()
    assert (frame["vintage_release"] == pd.Timestamp("2019-10-31")).all()


def test_vintage_without_a_dated_name_is_the_month_after_the_last_period() -> None:
    _, details = parse_fredmd(PANEL, origin="https://example.org/current.csv")
    assert details["vintage"] == "2019-10"


def test_tcode_mismatch_is_reported() -> None:
    _, details = parse_fredmd(PANEL.replace("Transform:,5,1", "Transform:,2,1"), origin="x/2019-10.csv")
    assert details["tcode_mismatch"] == {"INDPRO": 2}


@pytest.mark.parametrize(("text", "needle"), [
    ("date,INDPRO\n2019-07-01,1\n", "first column must be 'sasdate'"),
    ("", "not a FRED-MD CSV"),
    (PANEL.replace("8/1/2019", "2019-08-01"), "bad date '2019-08-01'"),
    (PANEL.replace("8/1/2019", "7/1/2019"), "duplicated date 2019-07-01"),
    (PANEL.replace("109.94", "n/a"), "line 4: value 'n/a' in column INDPRO is not a number"),
    (PANEL.replace("109.94", "1e300"), "line 4: value '1e300' in column INDPRO is beyond"),
    (PANEL.replace("109.94", "inf"), "line 4: value 'inf' in column INDPRO is not finite"),
    (PANEL.replace("Transform:,5,1", "Transform:,9,1"), "line 2: transformation code '9' for INDPRO"),
    (PANEL.replace("Transform:,5,1", "Transform:,five,1"), "transformation code"),
])
def test_bad_panels_are_data_errors(text: str, needle: str) -> None:
    """Every malformed panel is a DataError (exit 3) whose message names the problem."""
    with pytest.raises(DataError, match=needle) as info:
        parse_fredmd(text, origin="bad.csv")
    assert info.value.exit_code == 3


def test_read_vintages_rejects_the_same_vintage_twice(tmp_path: Path) -> None:
    first = tmp_path / "2019-10.csv"
    first.write_text(PANEL)
    second = tmp_path / "a" / "2019-10.csv"
    second.parent.mkdir()
    second.write_text(PANEL)
    with pytest.raises(DataError, match="vintages given twice"):
        read_vintages([str(first), str(second)], 5)


def test_read_text_handles_crlf_cp1252_and_missing_files(tmp_path: Path) -> None:
    path = tmp_path / "2019-10.csv"
    path.write_bytes(PANEL.replace("\n", "\r\n").replace("MZMSL", "MZM\u00a7").encode("cp1252"))
    frame, _ = parse_fredmd(read_text(str(path), 5), origin=str(path))
    assert len(frame) == 7
    with pytest.raises(ConfigError, match="FRED-MD file not found"):
        read_text(str(tmp_path / "absent.csv"), 5)


def test_unreachable_url_is_upstream_unavailable() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(UpstreamUnavailable, match="cannot download FRED-MD") as info:
        read_text(f"http://127.0.0.1:{port}/current.csv", 5)
    assert info.value.exit_code == 4


def test_real_vintages_parse(snapshot_dir: Path) -> None:
    """The snapshot's two vintages: renamed series mapped, blank tail row ignored, dictionary not a vintage."""
    frame, details = read_vintages([str(snapshot_dir / "fred-md" / f"{v}.csv") for v in ("2019-10", "2025-02")], 60)
    by_vintage = {d["vintage"]: d for d in details}
    assert by_vintage["2019-10"]["last_period"] == "2019-09-01"
    assert by_vintage["2025-02"]["last_period"] == "2025-01-01"
    assert set(by_vintage["2019-10"]["dropped"]) == {"MZMSL", "S&P: indust"}
    old = frame[(frame["vintage"] == "2019-10")]
    assert "VIXCLSx" in set(old["series"]) and "VXOCLSx" not in set(old["series"])
    assert not frame.duplicated(["series", "period", "vintage"]).any()


def test_rows_past_a_named_or_configured_vintage_are_data_errors() -> None:
    with pytest.raises(DataError, match=r"line 5: row dated 2019-09 runs past the vintage 2019-09 \(named"):
        parse_fredmd(PANEL, origin="x/2019-09.csv")
    with pytest.raises(DataError, match=r"runs past the vintage 2019-08 \(configured\)"):
        parse_fredmd(PANEL, origin="x/current.csv", vintage="2019-08")
    _, details = parse_fredmd(PANEL, origin="x/2019-12.csv")       # a ragged end: the later, named month
    assert details["vintage"] == "2019-12"


def test_current_csv_is_read_by_content_and_other_files_are_skipped(tmp_path: Path, caplog) -> None:
    """FRED-MD is recognised by content: current.csv is used, a dictionary and a note are skipped, logged."""
    (tmp_path / "current.csv").write_text(PANEL)
    (tmp_path / "dictionary.csv").write_bytes("id,tcode,fred,description\n1,5,RPI,Real \u00a7\n".encode("cp1252"))
    (tmp_path / "notes.txt").write_text("downloaded 2019-10-15\n")
    with caplog.at_level("INFO", logger="rotation"):
        scan = scan_folder(tmp_path)
    assert scan.used == [str(tmp_path / "current.csv")]
    assert scan.skipped == {str(tmp_path / "dictionary.csv"): NOT_A_PANEL, str(tmp_path / "notes.txt"): NOT_A_PANEL}
    text = caplog.text
    assert "current.csv: used" in text and "dictionary.csv: skipped, not a FRED-MD panel" in text
    frame, details = read_vintages(scan.used, 5)
    assert details[0]["vintage"] == "2019-10" and details[0]["vintage_from"] == "the month after its last row"
    frame, details = read_vintages([f"{tmp_path / 'current.csv'}#2019-11"], 5)
    assert details[0]["vintage"] == "2019-11" and set(frame["vintage"]) == {"2019-11"}


def test_snapshot_folder_with_current_csv(tmp_path: Path, snapshot_dir: Path) -> None:
    """The published name current.csv is read (it was silently skipped); the ingest lists skipped files."""
    import shutil

    from job.config import load_settings
    from job.sources.snapshot import fetch_snapshot

    folder = tmp_path / "snap"
    shutil.copytree(snapshot_dir, folder, ignore=shutil.ignore_patterns("README.md", "2019-10.csv"))
    (folder / "fred-md" / "2025-02.csv").rename(folder / "fred-md" / "current.csv")
    settings = load_settings(environ={})
    data = fetch_snapshot(settings, settings.universe("snapshot"), folder, prices=False)
    assert [v["vintage"] for v in data.details["vintages"]] == ["2025-02"]
    assert list(data.details["fred_md_skipped"]) == [str(folder / "fred-md" / "dictionary.csv")]
    assert data.prices is None and data.macro is not None
