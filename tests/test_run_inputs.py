"""A run's inputs fingerprint: what makes an unchanged rerun a no-op, and every change a full run.

The pipeline side (a rerun with the same inputs publishes nothing; a damaged month or changed settings
run again) is tested through ``rotation run`` in tests/test_run.py
(test_an_unchanged_rerun_verifies_the_month_and_publishes_nothing) and by the stateful model
(tests/fault_model.py, check "unchanged rerun").
"""

from __future__ import annotations

import shutil
from pathlib import Path

import duckdb

from job import warehouse
from job.config import load_settings
from job.run_inputs import already_published, run_inputs, warehouse_fingerprint
from job.sources import fetch


def _fingerprint(path: Path) -> str:
    with duckdb.connect(str(path), read_only=True) as con:
        return warehouse_fingerprint(con)


def test_the_same_data_in_a_fresh_warehouse_has_the_same_fingerprint(sample_warehouse: Path,
                                                                      tmp_path: Path) -> None:
    """A CronJob's warehouse is an emptyDir: the same data ingested later (other ingested_at) agrees;
    re-ingesting it changes nothing; one changed price changes the fingerprint."""
    settings = load_settings(environ={})
    universe = settings.universe("sample")
    data = fetch(["sample"], settings, universe, None)
    fresh = tmp_path / "fresh.duckdb"
    warehouse.ingest(fresh, data, universe)
    assert _fingerprint(fresh) == _fingerprint(sample_warehouse)
    warehouse.ingest(fresh, data, universe)
    assert _fingerprint(fresh) == _fingerprint(sample_warehouse)

    revised = Path(shutil.copy(fresh, tmp_path / "revised.duckdb"))
    data.prices.loc[data.prices.index[-1], "close"] *= 1.5
    warehouse.ingest(revised, data, universe)
    assert _fingerprint(revised) != _fingerprint(fresh)


def test_the_fingerprint_changes_with_what_is_computed_not_with_where_it_is_stored() -> None:
    settings = load_settings(environ={})
    base = dict(settings=settings, as_of="2025-12", models=["ridge"], scheme=None, audit=False, source="sample",
                warehouse="w" * 64)
    fingerprint = run_inputs(**base)["fingerprint"]
    assert run_inputs(**base)["fingerprint"] == fingerprint  # deterministic
    changed = [
        {"as_of": "2025-11"}, {"models": ["ridge", "tree"]}, {"scheme": "static"}, {"audit": True},
        {"source": "snapshot"}, {"warehouse": "v" * 64},
        {"settings": settings.with_overrides({"strategy": {"cost_bps": 25.0}})},
        {"settings": settings.with_overrides({"models": {"lstm_preset": "seed"}})},
    ]
    for change in changed:
        assert run_inputs(**{**base, **change})["fingerprint"] != fingerprint, change
    elsewhere = settings.with_overrides({"store": {"lock_wait_s": 5.0, "retention_runs": 0},
                                         "paths": {"store": "/elsewhere"}})
    assert run_inputs(**{**base, "settings": elsewhere})["fingerprint"] == fingerprint


def test_only_a_complete_run_publication_of_the_same_inputs_counts() -> None:
    inputs = run_inputs(settings=load_settings(environ={}), as_of="2025-12", models=["ridge"], scheme=None,
                        audit=False, source="sample", warehouse="w" * 64)
    manifest = {"command": "run", "complete": True, "inputs": dict(inputs)}
    assert already_published(manifest, inputs)
    assert not already_published(None, inputs)
    assert not already_published({**manifest, "command": "forecast"}, inputs)  # a stage merged into it since
    assert not already_published({**manifest, "complete": False}, inputs)
    assert not already_published({**manifest, "inputs": {**inputs, "fingerprint": "0" * 64}}, inputs)
    assert not already_published({"command": "run", "complete": True}, inputs)  # published before fingerprints
