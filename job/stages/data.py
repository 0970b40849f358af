"""Data stages: ingest the sources into the warehouse, then build and validate one month's dataset."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from job.dataset import Dataset
from job.errors import DataError
from job.months import month_str


def ingest(settings: Any, warehouse_path: str | Path, sources: list[str]) -> dict[str, Any]:
    """Fetch ``sources`` and load them into the warehouse in one transaction; returns the ingest summary."""
    from job import warehouse
    from job.sources import fetch

    universe = settings.universe(sources[0] if len(sources) == 1 else None)
    data = fetch(sources, settings, universe, settings.snapshot_dir())
    return warehouse.ingest(warehouse_path, data, universe)


@dataclass
class PreparedMonth:
    """One month's data after the checks.

    ``dataset`` is None when it could not be built (``build_error`` says why; the checks still ran and
    say which data are at fault). ``lag0`` is the same dataset at publication lag 0, for the look-ahead
    audit, built only when asked and when the checks passed.
    """

    as_of: pd.Period
    dataset: Dataset | None
    validation: Any
    build_error: DataError | None = None
    lag0: Dataset | None = None

    @property
    def passed(self) -> bool:
        return bool(self.validation.passed) and self.build_error is None and self.dataset is not None


def prepare(settings: Any, warehouse_path: str | Path, *, as_of: pd.Period | None = None,
            publication_lag: int | None = None, audit: bool = False,
            timed: Any = None) -> PreparedMonth:
    """Build the point-in-time dataset of ``as_of`` (default: the last month the data support) and run
    every validation suite on it. ``timed(name)`` is an optional context manager factory for stage timings.
    """
    from contextlib import nullcontext

    from job import warehouse
    from job.validation import validate

    def stage(name: str) -> Any:
        return timed(name) if timed is not None else nullcontext()

    build_error: DataError | None = None
    dataset: Dataset | None
    with warehouse.connect(warehouse_path, read_only=True) as con:
        with stage("dataset"):
            try:
                dataset, month = warehouse.build_dataset(con, settings, as_of=as_of, publication_lag=publication_lag)
            except DataError as exc:  # e.g. a month without prices: the checks still say which and why
                dataset, build_error = None, exc
                month = as_of or warehouse.default_as_of(con, settings)
        with stage("validate"):
            report = validate(con, settings, dataset, month)
        prepared = PreparedMonth(as_of=month, dataset=dataset, validation=report, build_error=build_error)
        if audit and prepared.passed:
            with stage("dataset_lag0"):
                prepared.lag0, _ = warehouse.build_dataset(con, settings, as_of=month, publication_lag=0)
    return prepared


def run_inputs(settings: Any, warehouse_path: str | Path, *, as_of: pd.Period | None, models: list[str],
               scheme: str | None, audit: bool) -> dict[str, Any] | None:
    """What a run of ``as_of`` (default: the last month the data support) on this warehouse is a function
    of (:mod:`job.run_inputs`); None when the warehouse cannot say (no data: the run fails on it later)."""
    from job import warehouse
    from job.run_inputs import run_inputs as record
    from job.run_inputs import warehouse_fingerprint

    with warehouse.connect(warehouse_path, read_only=True) as con:
        try:
            month = as_of or warehouse.default_as_of(con, settings)
            source = str(warehouse.latest_ingest(con)["source"])
        except (DataError, TypeError, KeyError):
            return None
        return record(settings=settings, as_of=month_str(month), models=models, scheme=scheme, audit=audit,
                      source=source, warehouse=warehouse_fingerprint(con))


def load(settings: Any, warehouse_path: str | Path, *, as_of: pd.Period | None = None,
         publication_lag: int | None = None) -> tuple[Dataset, pd.Period]:
    """The point-in-time dataset of ``as_of`` without the checks (for train, forecast, backtest)."""
    from job.warehouse import load_dataset

    return load_dataset(settings, warehouse_path, as_of=as_of, publication_lag=publication_lag)
