"""Data validation: the real snapshot and the sample pass; each corruption fails exactly its check.

Corruptions are made with SQL on a copy of a session-wide warehouse (real DuckDB, real Great
Expectations). "Exactly" is asserted on the set of failing critical checks across all suites.
"""

from __future__ import annotations

import copy
import json
import shutil
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from job import warehouse
from job.config import Settings, load_settings
from job.dataset import MACRO_PREFIX, Dataset
from job.errors import ConfigError, DataError, ValidationFailed
from job.resources import expectations_dir, sql_path
from job.validation import Suite, ValidationReport, load_suites, parse_suite, validate

AS_OF = pd.Period("2025-02", freq="M")


def failing(report: ValidationReport, severity: str = "critical") -> set[str]:
    """``{"suite.check"}`` of the failed checks of one severity."""
    return {f"{r.suite}.{r.check}" for r in report.failures if r.severity == severity}


def copy_warehouse(src: Path, tmp_path: Path, *statements: str) -> Path:
    """A copy of ``src`` changed by ``statements`` (SQL run on the raw tables)."""
    dst = tmp_path / "corrupt.duckdb"
    shutil.copy(src, dst)
    with warehouse.connect(dst) as con:
        for statement in statements:
            con.execute(statement)
    return dst


def check(path: Path, settings: Settings, *, dataset: Dataset | str | None = "build", as_of: pd.Period | None = None,
          lag: int | None = None, views: Callable[[str], str] | None = None,
          suites: list[Suite] | None = None) -> ValidationReport:
    """Validate the warehouse at ``path``; ``dataset="build"`` builds it there (None when that fails)."""
    with warehouse.connect(path) as con:
        if views is not None:
            original = sql_path("views.sql").read_text()
            patched = views(original)
            assert patched != original, "the view patch no longer applies to sql/views.sql"
            con.execute(patched)
        if isinstance(dataset, str):
            try:
                dataset, as_of = warehouse.build_dataset(con, settings, as_of=as_of, publication_lag=lag)
            except DataError:
                dataset = None
        return validate(con, settings, dataset, as_of or AS_OF, suites=suites)


@pytest.fixture(scope="module")
def settings() -> Settings:
    return load_settings(environ={})


@pytest.fixture(scope="module")
def real(snapshot_warehouse: Path, settings: Settings) -> tuple[Dataset, ValidationReport]:
    """The clean real dataset (both FRED-MD vintages) and its validation report."""
    with warehouse.connect(snapshot_warehouse, read_only=True) as con:
        dataset, as_of = warehouse.build_dataset(con, settings)
        assert as_of == AS_OF
        return dataset, validate(con, settings, dataset, as_of)


# --- suites as files -------------------------------------------------------------------------------


def test_shipped_suites_load_in_run_order() -> None:
    """The six suites ship as GX JSON with a unique check name, a frame and a severity per expectation."""
    suites = load_suites()
    assert [s.name for s in suites] == ["prices", "macro", "features", "labels", "lookahead", "risk_free"]
    for suite in suites:
        raw = json.loads((expectations_dir() / f"{suite.name}.json").read_text())
        assert len(raw["expectations"]) == len(suite.checks)
        assert all(c.severity in ("critical", "warning") for c in suite.checks)


def test_tolerated_gaps_expand_into_the_value_set() -> None:
    """meta.tolerate {"CP3Mx": ["2020-04"], "X": ["2001-11..2002-01"]} becomes 'CP3Mx 2020-04'... in value_set."""
    obj = {"name": "t", "expectations": [{
        "type": "expect_column_values_to_be_in_set", "kwargs": {"column": "gap", "value_set": ["A 1999-01"]},
        "meta": {"check": "gaps", "frame": "macro_gaps", "tolerate": {"CP3Mx": ["2020-04"],
                                                                       "X": ["2001-11..2002-01"]}}}]}
    (suite_check,) = parse_suite(obj, Path("t.json")).checks
    assert suite_check.severity == "critical"  # the default
    assert suite_check.config["kwargs"]["value_set"] == ["A 1999-01", "CP3Mx 2020-04", "X 2001-11", "X 2001-12",
                                                         "X 2002-01"]


@pytest.mark.parametrize(("change", "message"), [
    ({"meta": {"check": "x", "frame": "nope"}}, "meta.frame 'nope' is not a validation frame"),
    ({"meta": {"check": "x", "frame": "prices_daily", "severity": "fatal"}}, "severity must be critical or warning"),
    ({"type": "expect_column_values_to_be_purple"}, "not valid for Great Expectations"),
    ({"meta": {"check": "x", "frame": "macro_gaps", "tolerate": {"A": ["2020-13"]}},
      "type": "expect_column_values_to_be_in_set", "kwargs": {"column": "gap", "value_set": []}}, "invalid month"),
])
def test_a_broken_suite_is_a_configuration_error(change: dict, message: str) -> None:
    """A typo in a suite file fails with exit code 2 and says which file and expectation."""
    expectation = {"type": "expect_column_values_to_not_be_null", "kwargs": {"column": "close"},
                   "meta": {"check": "x", "frame": "prices_daily"}} | change
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        parse_suite({"name": "t", "expectations": [expectation]}, Path("t.json"))


# --- real data and the sample pass ---------------------------------------------------------------------


@pytest.mark.slow
def test_real_snapshot_passes_every_critical_check(real: tuple[Dataset, ValidationReport]) -> None:
    """vanguard-etf with FRED-MD 2019-10 + 2025-02: no critical failure; the thin-trading VOX run warns."""
    _, report = real
    print(report.summary_table())
    assert report.passed, report.summary_table()
    assert sum(s.checks for s in report.suites) == sum(len(s.checks) for s in load_suites())
    # The Fama/French file ends 2024-12: the months after it carry TB3MS's last value, and a warning says so.
    assert failing(report, "warning") == {"prices.stale_price_warning", "risk_free.risk_free_known"}
    warning = report.result("prices", "stale_price_warning")
    assert warning.examples[0] == {"asset": "VOX", "first_day": "2004-10-11", "run_days": 6}
    json.dumps(report.to_dict())  # serialisable as is
    report.raise_if_failed()


def test_a_month_whose_macro_data_went_stale_fails_on_the_series_its_fits_would_use(
        snapshot_warehouse: Path, settings: Settings) -> None:
    """At 2025-06 the snapshot's FRED-MD is months old: most series expired by then (Dataset.expired), so
    the month's fits would use fewer than 50 of them; the expired series' held cells are not checked
    against the warehouse (they are no fit's input), so that is the one critical failure."""
    month = pd.Period("2025-06", freq="M")
    with warehouse.connect(snapshot_warehouse, read_only=True) as con:
        dataset, _ = warehouse.build_dataset(con, settings, as_of=month)
        report = validate(con, settings, dataset, month)
    assert len(dataset.masked_at(month)) > 80 and dataset.info.n_macro_features > 100
    assert failing(report) == {"features.min_macro_series"}, report.summary_table()


@pytest.mark.slow
def test_real_snapshot_with_the_2025_02_vintage_alone_passes(snapshot_dir: Path, tmp_path: Path) -> None:
    settings = load_settings(environ={}, overrides={"data": {"fred_md_vintages": [
        str(snapshot_dir / "fred-md" / "2025-02.csv")]}})
    from job.sources.snapshot import fetch_snapshot

    universe = settings.universe("snapshot")
    path = tmp_path / "w.duckdb"
    warehouse.ingest(path, fetch_snapshot(settings, universe, snapshot_dir), universe)
    report = check(path, settings, as_of=None)
    assert report.as_of == AS_OF
    assert report.passed, report.summary_table()


@pytest.mark.slow
def test_the_sample_source_passes(sample_warehouse: Path, settings: Settings) -> None:
    with warehouse.connect(sample_warehouse, read_only=True) as con:
        dataset, as_of = warehouse.build_dataset(con, settings)
        report = validate(con, settings, dataset, as_of)
    assert report.passed, report.summary_table()
    assert failing(report, "warning") == set()


# --- each corruption fails exactly its check -------------------------------------------------------------


@pytest.mark.slow
def test_a_missing_month_for_one_sector(snapshot_warehouse: Path, settings: Settings, tmp_path: Path) -> None:
    """Without VGT's June 2015 prices the dataset cannot be built; the warehouse checks name the gap (every
    asset and month in one row, so the one-line error names them all) and say what to do."""
    path = copy_warehouse(snapshot_warehouse, tmp_path,
                          "DELETE FROM prices_daily WHERE asset = 'VGT' AND date BETWEEN '2015-06-01' AND '2015-06-30'")
    report = check(path, settings)
    assert failing(report) == {"prices.returns_complete"}
    result = report.result("prices", "returns_complete")
    # June has no month-end, July no previous month-end
    assert result.examples == [{"n_assets": 1, "n_months": 2, "gaps": "VGT 2015-06..2015-07"}]
    assert "gaps=VGT 2015-06..2015-07" in result.headline and "add the missing months" in result.hint
    assert {r.skipped for s in report.suites for r in s.results if s.name not in {"prices", "macro", "risk_free"}} == {
        "no dataset: it could not be built"}
    with pytest.raises(ValidationFailed, match=r"prices\.returns_complete: every asset has a return"):
        report.raise_if_failed()


@pytest.mark.slow
def test_a_duplicated_macro_observation(snapshot_warehouse: Path, settings: Settings, tmp_path: Path) -> None:
    """A second vintage released the same day gives INDPRO 1990-06 two values with one available_at."""
    path = copy_warehouse(snapshot_warehouse, tmp_path, """
        INSERT INTO macro_observations
        SELECT series, period, value * 1.01, '2025-02-bis', vintage_release, realtime_start, source, origin, ingested_at
        FROM macro_observations WHERE series = 'INDPRO' AND period = '1990-06-01' AND vintage = '2025-02'""")
    report = check(path, settings)
    assert failing(report) == {"macro.available_unique"}
    result = report.result("macro", "available_unique")
    assert result.unexpected_count == 2
    assert {e["vintage"] for e in result.examples} == {"2025-02", "2025-02-bis"}
    assert all(e["series"] == "INDPRO" and e["period"] == "1990-06" for e in result.examples)


@pytest.mark.slow
def test_a_return_of_300_percent(snapshot_warehouse: Path, settings: Settings, tmp_path: Path) -> None:
    """VGT's closes from its June 2015 month-end on, times four: a +300 % month, then normal returns."""
    path = copy_warehouse(snapshot_warehouse, tmp_path,
                          "UPDATE prices_daily SET close = close * 4 WHERE asset = 'VGT' AND date >= '2015-06-30'")
    report = check(path, settings)
    assert failing(report) == {"prices.returns_within_bounds"}
    result = report.result("prices", "returns_within_bounds")
    assert result.unexpected_count == 1
    (example,) = result.examples
    assert example["asset"] == "VGT" and example["month"] == "2015-06"
    assert example["ret"] == pytest.approx(3.0, abs=0.2)


@pytest.mark.slow
def test_a_stale_price_run(snapshot_warehouse: Path, settings: Settings, tmp_path: Path) -> None:
    """VDE's close frozen for 12 trading days fails the critical stale check (and the 5-day warning)."""
    path = copy_warehouse(snapshot_warehouse, tmp_path, """
        UPDATE prices_daily SET close = 50.0 WHERE asset = 'VDE' AND date IN (
            SELECT date FROM prices_daily WHERE asset = 'VDE' AND date >= '2016-03-01' ORDER BY date LIMIT 12)""")
    report = check(path, settings)
    assert failing(report) == {"prices.no_stale_prices"}
    assert failing(report, "warning") == {"prices.stale_price_warning", "risk_free.risk_free_known"}
    (example,) = report.result("prices", "no_stale_prices").examples
    assert example == {"asset": "VDE", "first_day": "2016-03-01", "run_days": 12}


ALFRED_ROW = """
    INSERT INTO macro_observations VALUES ('INDPRO', DATE '2010-01-01', 999.0, 'alfred:2030-01-01',
                                           DATE '2030-01-01', DATE '2030-01-01', 'snapshot', 'planted',
                                           now()::TIMESTAMP)"""


@pytest.mark.slow
def test_a_value_published_in_the_future_is_never_used(snapshot_warehouse: Path, settings: Settings,
                                                       tmp_path: Path, real: tuple[Dataset, ValidationReport]) -> None:
    """An ALFRED-style revision with realtime_start 2030 changes no feature and passes validation."""
    path = copy_warehouse(snapshot_warehouse, tmp_path, ALFRED_ROW)
    with warehouse.connect(path) as con:
        dataset, _ = warehouse.build_dataset(con, settings)
        report = validate(con, settings, dataset, AS_OF)
    pd.testing.assert_frame_equal(dataset.features, real[0].features)
    assert report.passed, report.summary_table()


@pytest.mark.slow
def test_a_value_available_after_its_decision_date(snapshot_warehouse: Path, settings: Settings,
                                                   tmp_path: Path) -> None:
    """A feature view that forgets ALFRED's realtime_start uses the 2030 value: look-ahead fails."""
    path = copy_warehouse(snapshot_warehouse, tmp_path, ALFRED_ROW)

    def leaky(text: str) -> str:
        return text.replace("ON a.available_at <= d.decision_date",
                            "ON (a.available_at <= d.decision_date "
                            "OR (a.vintage LIKE 'alfred:%' AND a.period < d.month))")

    report = check(path, settings, views=leaky)
    assert failing(report) == {"lookahead.available_before_decision"}
    result = report.result("lookahead", "available_before_decision")
    example = result.examples[0]
    assert example["series"] == "INDPRO" and example["period"] == "2010-01"
    assert example["month"] == "2010-02" and example["available_at"] == "2030-01-01"


@pytest.mark.slow
def test_a_feature_matrix_built_with_lag_0_when_lag_1_is_configured(snapshot_warehouse: Path,
                                                                   settings: Settings) -> None:
    """The original notebook's leak: macro values of month m used at the end of m. Only the leak check fails."""
    assert settings.data.publication_lag_months == 1
    report = check(snapshot_warehouse, settings, lag=0)
    assert report.dataset_lag == 0 and report.configured_lag == 1
    assert failing(report) == {"lookahead.no_leak_at_configured_lag"}
    result = report.result("lookahead", "no_leak_at_configured_lag")
    example = result.examples[0]
    assert example["period"] == example["month"]  # the month's own value, published a month later
    assert example["configured_available_at"] > example["decision_date"]
    with pytest.raises(ValidationFailed, match="no_leak_at_configured_lag"):
        report.raise_if_failed()


@pytest.mark.slow
def test_a_lag_0_matrix_labelled_as_lag_1_does_not_hide_the_leak(snapshot_warehouse: Path,
                                                                 settings: Settings) -> None:
    """The recomputation at the stated lag differs from the values the matrix holds."""
    with warehouse.connect(snapshot_warehouse, read_only=True) as con:
        leaky, _ = warehouse.build_dataset(con, settings, publication_lag=0)
        report = validate(con, settings, replace(leaky, publication_lag_months=1), AS_OF)
    assert failing(report) == {"features.values_match_warehouse"}


@pytest.mark.slow
def test_the_as_of_month_has_no_features(snapshot_warehouse: Path, settings: Settings) -> None:
    """A dataset that ends in 2025-01 cannot forecast from 2025-02."""
    report = check(snapshot_warehouse, settings, as_of=pd.Period("2025-01", freq="M"))
    assert report.passed
    with warehouse.connect(snapshot_warehouse, read_only=True) as con:
        dataset, _ = warehouse.build_dataset(con, settings, as_of=pd.Period("2025-01", freq="M"))
        report = validate(con, settings, dataset, AS_OF)
    assert failing(report) == {"lookahead.as_of_features_exist"}
    assert report.result("lookahead", "as_of_features_exist").observed_value == 202501


@pytest.mark.slow
def test_a_macro_series_with_a_hole(snapshot_warehouse: Path, settings: Settings, tmp_path: Path) -> None:
    """INDPRO without 2010-05 in the 2019-10 vintage: an unexplained gap (the series drops out of the features)."""
    path = copy_warehouse(snapshot_warehouse, tmp_path, "DELETE FROM macro_observations WHERE series = 'INDPRO' "
                          "AND period = '2010-05-01' AND vintage = '2019-10'")
    report = check(path, settings)
    assert failing(report) == {"macro.no_unexplained_gaps"}
    assert report.result("macro", "no_unexplained_gaps").examples == [
        {"series": "INDPRO", "vintage": "2019-10", "period": "2010-05", "gap": "INDPRO 2010-05"}]


@pytest.mark.slow
def test_known_gaps_are_tolerated_only_when_listed(snapshot_warehouse: Path, settings: Settings) -> None:
    """Without the JSON tolerance, FRED-MD's missing CP3Mx and COMPAPFFx 2020-04 fail the gap check."""
    raw = json.loads((expectations_dir() / "macro.json").read_text())
    strict = copy.deepcopy(raw)
    for expectation in strict["expectations"]:
        expectation["meta"].pop("tolerate", None)
    report = check(snapshot_warehouse, settings, dataset=None, suites=[parse_suite(strict, Path("macro.json"))])
    result = report.result("macro", "no_unexplained_gaps")
    assert not result.success and result.unexpected_count == 302  # incl. UMCSENTx, quarterly before 1978
    assert [e["gap"] for e in result.examples[:2]] == ["COMPAPFFx 2020-04", "CP3Mx 2020-04"]


# --- the dataset contract: checks a buggy producer would trip ----------------------------------------


class _Unchecked(Dataset):
    """A Dataset whose constructor checks are skipped: what a buggy producer could hand on."""

    def __post_init__(self) -> None:
        pass


class _SameMonthLabels(Dataset):
    """The classic bug: the label of month m is m's own return (known at the decision date)."""

    def labels(self) -> pd.DataFrame:
        return self.returns.reindex(self.months).set_axis(self.months)


class _TrainsOnTheFuture(Dataset):
    """A training_set that ignores the as-of month."""

    def training_set(self, lookback: int, as_of: pd.Period) -> tuple[np.ndarray, np.ndarray, pd.PeriodIndex]:
        return super().training_set(lookback, as_of + 6)


def _as(cls: type[Dataset], dataset: Dataset, **changes: object) -> Dataset:
    fields = {"features": dataset.features, "returns": dataset.returns, "benchmark": dataset.benchmark,
              "risk_free": dataset.risk_free, "publication_lag_months": dataset.publication_lag_months,
              "info": dataset.info, "present": dataset.mask, "expired": dataset.expired} | changes
    return cls(**fields)


@pytest.mark.slow
@pytest.mark.parametrize(("case", "expected"), [
    ("skipped_month", {"features.months_contiguous"}),
    ("few_macro", {"features.min_macro_series"}),
    ("same_month_labels", {"labels.label_after_decision", "lookahead.training_window_before_label"}),
    ("trains_on_future", {"lookahead.training_labels_known"}),
])
def test_a_buggy_dataset(case: str, expected: set[str], snapshot_warehouse: Path, settings: Settings,
                         real: tuple[Dataset, ValidationReport]) -> None:
    clean = real[0]
    as_of = AS_OF
    if case == "skipped_month":
        dataset = _as(_Unchecked, clean, features=clean.features.drop(pd.Period("2012-03", freq="M")))
    elif case == "few_macro":
        keep = [c for c in clean.feature_names if not c.startswith(MACRO_PREFIX)] + [
            c for c in clean.feature_names if c.startswith(MACRO_PREFIX)][:40]
        dataset = replace(clean, features=clean.features[keep],
                          expired={k: v for k, v in clean.expired.items() if k in keep})
    elif case == "same_month_labels":
        dataset = _as(_SameMonthLabels, clean)
    else:
        as_of = pd.Period("2024-06", freq="M")
        dataset = _as(_TrainsOnTheFuture, clean.truncate(pd.Period("2024-12", freq="M")))
    with warehouse.connect(snapshot_warehouse, read_only=True) as con:
        report = validate(con, settings, dataset, as_of)
    if case == "trains_on_future":  # the matrix also runs past the as-of month
        expected = expected | {"lookahead.as_of_features_exist"}
    assert failing(report) == expected, report.summary_table()


# --- the command line ---------------------------------------------------------------------------------


@pytest.mark.slow
def test_cli_exits_3_and_publishes_only_the_failed_result(snapshot_warehouse: Path, tmp_path: Path,
                                                          rotation: Callable) -> None:
    path = copy_warehouse(snapshot_warehouse, tmp_path,
                          "UPDATE prices_daily SET close = close * 4 WHERE asset = 'VGT' AND date >= '2015-06-30'")
    store = tmp_path / "store"
    result = rotation("--warehouse", str(path), "--store", str(store), "validate")
    assert result.exit_code == 3, result.stderr
    assert result.error.startswith("error: data validation failed for 2025-02: prices.returns_within_bounds")
    assert "asset=VGT month=2015-06" in result.error
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["suite", "checks", "failed", "warnings", "worst", "example"]
    assert lines[1].split()[:4] == ["prices", "8", "1", "1"]
    files = [p.relative_to(store).as_posix() for p in store.rglob("*") if p.is_file()
             and not p.relative_to(store).as_posix().startswith("locks/")]  # the run lock's guard file
    assert len(files) == 1 and files[0].startswith("validation/as_of=2025-02/run_id=")
    assert not (store / "locks" / "run.lock").exists(), "the lock taken to record the failure was released"
    saved = json.loads((store / files[0]).read_text())
    assert saved["passed"] is False
    assert saved["failures"][0]["check"] == "returns_within_bounds"
    assert saved["failures"][0]["column"] == "ret"
    assert saved["failures"][0]["unexpected_examples"][0]["asset"] == "VGT"


@pytest.mark.slow
def test_cli_passes_on_the_real_snapshot_and_flags_the_lag_0_leak(snapshot_warehouse: Path, tmp_path: Path,
                                                                  rotation: Callable) -> None:
    store = tmp_path / "store"
    ok = rotation("--warehouse", str(snapshot_warehouse), "--store", str(store), "validate", "--json",
                  str(tmp_path / "v.json"))
    assert ok.exit_code == 0, ok.stderr
    assert "validation passed for 2025-02" in ok.stdout
    assert json.loads((tmp_path / "v.json").read_text())["passed"] is True
    assert not store.exists()
    leak = rotation("--warehouse", str(snapshot_warehouse), "--store", str(store), "validate",
                    "--publication-lag", "0", "--no-publish-failure")
    assert leak.exit_code == 3
    assert "lookahead.no_leak_at_configured_lag" in leak.error
    assert not store.exists()


def test_cli_without_a_warehouse_is_a_usage_error(tmp_path: Path, rotation: Callable) -> None:
    result = rotation("--warehouse", str(tmp_path / "none.duckdb"), "validate")
    assert result.exit_code == 2
    assert "no warehouse" in result.error


def test_sql_frames_use_known_parameters() -> None:
    """Every sql/validation file is a registered frame and names only parameters the runner provides."""
    import re

    from job.validation import FRAMES

    known = {"start", "window_start", "first_month", "last_month", "as_of", "as_of_end", "dataset_lag",
             "configured_lag", "market_lag", "max_stale", "series"}
    for path in sorted(sql_path("validation").glob("*.sql")):
        assert path.stem in FRAMES
        assert set(re.findall(r"\$([A-Za-z_]\w*)", path.read_text())) <= known, path.name
