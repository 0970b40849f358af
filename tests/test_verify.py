"""`rotation verify`: every committed artifact against its manifest's size and sha256, parquet tables
against their kind's schema; one line per problem, a summary, exit 0 or 3; read-only.

The store comes from real `rotation run`s (tests/real_run.py); damage tests copy it first.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from job.errors import ExitCode
from tests.conftest import CliResult
from tests.real_run import MONTHS, RealRun, copy_store, real_run

Rotation = Callable[..., CliResult]
LATEST, EARLIER = MONTHS[-1], MONTHS[0]


@pytest.fixture(scope="session")
def run(tmp_path_factory: pytest.TempPathFactory) -> RealRun:
    return real_run(tmp_path_factory)


@pytest.fixture
def store(run: RealRun, tmp_path: Path) -> Path:
    return copy_store(run, tmp_path / "artifacts")


def manifest(store: Path, as_of: str) -> dict[str, Any]:
    return json.loads((store / f"runs/as_of={as_of}/manifest.json").read_text())


def path_of(store: Path, as_of: str, kind: str) -> Path:
    (art,) = [a for a in manifest(store, as_of)["artifacts"] if a["kind"] == kind]
    return store / art["path"]


def snapshot(store: Path) -> dict[str, str]:
    """sha256 of every file in the store: verify must change nothing."""
    return {p.relative_to(store).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(store.rglob("*")) if p.is_file()}


def test_a_good_store_verifies(run: RealRun, rotation: Rotation) -> None:
    before = snapshot(run.store)
    result = rotation("--store", str(run.store), "verify")
    assert result.exit_code == 0, result.stderr
    count = sum(len(manifest(run.store, m)["artifacts"]) for m in MONTHS)
    assert result.stdout.strip().splitlines() == [
        f"ok: {count} artifacts of {len(MONTHS)} months in {run.store} match their manifests"]
    one = rotation("--store", str(run.store), "verify", "--as-of", LATEST)
    assert one.exit_code == 0 and f"{len(manifest(run.store, LATEST)['artifacts'])} artifacts of 1 month" in one.stdout
    assert snapshot(run.store) == before


def test_every_kind_of_damage_is_one_line_and_exit_3(store: Path, rotation: Rotation) -> None:
    """A truncated manifest, a missing file, corrupt bytes, and an altered but valid parquet."""
    (store / f"runs/as_of={EARLIER}/manifest.json").write_bytes(
        (store / f"runs/as_of={EARLIER}/manifest.json").read_bytes()[:150])
    missing = path_of(store, LATEST, "forecasts")
    missing.unlink()
    corrupt = path_of(store, LATEST, "backtest")
    corrupt.write_bytes(corrupt.read_bytes()[:-40] + b"\x00" * 40)
    altered = path_of(store, LATEST, "weights")
    table = pq.read_table(altered)
    pq.write_table(table.set_column(table.schema.get_field_index("weight"), "weight",
                                    pa.compute.multiply(table["weight"], 2.0)), altered)
    before = snapshot(store)
    result = rotation("--store", str(store), "verify")
    assert result.exit_code == ExitCode.VALIDATION, result.stderr
    lines = result.stdout.strip().splitlines()
    assert len(lines) == 4, lines
    rel = {p: p.relative_to(store).as_posix() for p in (missing, corrupt, altered)}
    assert any(f"runs/as_of={EARLIER}/manifest.json" in ln and "not valid JSON" in ln for ln in lines)
    assert any(rel[missing] in ln and "missing" in ln for ln in lines)
    assert any(rel[corrupt] in ln and "sha256" in ln for ln in lines)
    assert any(rel[altered] in ln and "the manifest" in ln for ln in lines)
    assert result.error.startswith("error: 4 problems in ") and "Traceback" not in result.stderr
    assert snapshot(store) == before  # read-only: nothing deleted or rewritten
    only = rotation("--store", str(store), "verify", "--as-of", EARLIER)
    assert only.exit_code == ExitCode.VALIDATION and len(only.stdout.strip().splitlines()) == 1


def test_a_parquet_that_matches_its_sha256_but_not_its_schema_is_named(store: Path, rotation: Rotation) -> None:
    """A manifest entry rewritten to vouch for a file of another kind's schema (a writer bug)."""
    man = manifest(store, LATEST)
    weights = next(a for a in man["artifacts"] if a["kind"] == "weights")
    backtest = next(a for a in man["artifacts"] if a["kind"] == "backtest")
    weights.update(path=backtest["path"].replace("backtest/", "weights/", 1), bytes=backtest["bytes"],
                   sha256=backtest["sha256"])
    target = store / weights["path"]
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes((store / backtest["path"]).read_bytes())
    (store / f"runs/as_of={LATEST}/manifest.json").write_text(json.dumps(man))
    result = rotation("--store", str(store), "verify", "--as-of", LATEST)
    assert result.exit_code == ExitCode.VALIDATION
    (line,) = result.stdout.strip().splitlines()
    assert weights["path"] in line and "not the weights schema" in line


def test_verify_of_a_month_never_published_exits_2(run: RealRun, rotation: Rotation) -> None:
    result = rotation("--store", str(run.store), "verify", "--as-of", "1999-01")
    assert result.exit_code == ExitCode.USAGE and "1999-01 has no published manifest" in result.error


def test_an_empty_store_verifies(tmp_path: Path, rotation: Rotation) -> None:
    result = rotation("--store", str(tmp_path / "empty"), "verify")
    assert result.exit_code == 0 and "0 artifacts of 0 months" in result.stdout
