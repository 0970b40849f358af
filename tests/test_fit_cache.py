"""The content-addressed walk-forward: cold, warm, next month, resumed and revised runs give the same
forecasts, weights and portfolio bit for bit, and fit only what is new."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from job.backtest import BacktestResult, walk_forward
from job.config import Settings, load_settings
from job.dataset import Dataset, synthetic_dataset
from job.metrics import summarise
from job.models import ModelRegistry, train_models
from job.models.registry import config_fingerprint
from job.months import month_str
from job.store import LocalStore
from tests.conftest import REPO_ROOT

MODELS = ["ridge", "tree", "ensemble"]
OVERRIDES = {
    "models": {"lookback_months": 6, "cv_splits": 3, "ridge_alphas": [10.0, 100.0, 1000.0],
               "tree_max_leaf_nodes": [4, 8], "tree_min_samples_split": [2], "tree_min_samples_leaf": [1, 4],
               "refit_months": {"ridge": 1, "tree": 3, "ensemble": 1}, "ensemble_members": ["ridge", "tree"]},
    "backtest": {"min_train_months": 36, "n_jobs": 1, "tune_months": 6},
}


def _settings(**backtest: object) -> Settings:
    overrides = {**OVERRIDES, "backtest": {**OVERRIDES["backtest"], **backtest}}
    return load_settings(environ={}, overrides=overrides)


@pytest.fixture(scope="module")
def data() -> Dataset:
    return synthetic_dataset(n_months=72, n_assets=3, n_macro=4, seed=5)


@pytest.fixture(scope="module")
def cold(data: Dataset) -> BacktestResult:
    """The reference: everything fitted in memory, no registry."""
    return walk_forward(data, MODELS, _settings())


def _registry(path: Path) -> ModelRegistry:
    return ModelRegistry(LocalStore(path))


def assert_same(result: BacktestResult, reference: BacktestResult) -> None:
    """Forecasts, weights, portfolio and metrics equal bit for bit."""
    for name in ("forecasts", "weights", "portfolio", "baselines"):
        pd.testing.assert_frame_equal(getattr(result, name), getattr(reference, name), check_exact=True, obj=name)
    assert summarise(result, _settings()) == summarise(reference, _settings())


def test_cold_and_warm_runs_with_a_registry_equal_a_run_without_one(data: Dataset, cold: BacktestResult,
                                                                    tmp_path: Path) -> None:
    registry = _registry(tmp_path)
    first = walk_forward(data, MODELS, _settings(), registry=registry)
    assert_same(first, cold)
    assert first.info["fits_fitted"] == len(cold.folds)
    stored = list(tmp_path.rglob("metadata.json"))
    assert len(stored) == len(cold.folds)
    again = walk_forward(data, MODELS, _settings(), registry=registry)
    assert_same(again, cold)
    assert again.info["fits_fitted"] == 0 and again.info["forecasts_reused"] == len(cold.forecasts) // 3
    assert sorted(tmp_path.rglob("metadata.json")) == sorted(stored)  # stored once
    # recompute refits everything, to the same bits, into the same folders
    forced = walk_forward(data, MODELS, _settings(), registry=registry, recompute=True)
    assert forced.info["fits_fitted"] == len(cold.folds)
    assert_same(forced, cold)
    assert sorted(tmp_path.rglob("metadata.json")) == sorted(stored)


def test_the_tuning_cadence_and_the_members_are_part_of_the_identity(data: Dataset, cold: BacktestResult,
                                                                     tmp_path: Path) -> None:
    registry = _registry(tmp_path)
    walk_forward(data, MODELS, _settings(), registry=registry)
    other = walk_forward(data, MODELS, _settings(tune_months=3), registry=registry)
    folds = other.folds.set_index(["model", "fit_month"])
    # the first fold searches under both cadences: same fit; later refits carry other searches: new fits
    ridge = folds.loc["ridge"]
    assert not ridge["fitted"].iloc[0] and ridge["fitted"].iloc[1:].any()
    # ensemble fits whose members changed are new fits; the ensemble's own settings did not change
    assert folds.loc["ensemble"]["fitted"].sum() >= ridge["fitted"].sum()
    base = cold.folds.set_index(["model", "fit_month"])
    changed = base["fit_id"] != folds["fit_id"]
    assert (changed == folds["fitted"]).all()


def test_next_month_fits_only_what_is_new_and_equals_a_cold_run(data: Dataset, tmp_path: Path) -> None:
    """As-of A (live fits and the walk-forward), then A + 1: the walk-forward at A + 1 fits nothing (its
    new decision month A is the live fit of A, stored with its forecast), and equals a cold run."""
    settings = _settings()
    registry = _registry(tmp_path)
    as_of = data.months[-3]
    month_a, month_b = data.truncate(as_of), data.truncate(as_of + 1)
    models = ["ridge", "tree", "ensemble"]
    live = train_models(models, month_a, settings, as_of, registry, with_baselines=False)
    assert not any(r.reused for r in live.values())
    walk_forward(month_a, models, settings, registry=registry)
    nxt = walk_forward(month_b, models, settings, registry=registry)
    assert nxt.info["fits_fitted"] == 0
    assert_same(nxt, walk_forward(month_b, models, settings))
    # the live fit of A is the walk-forward's fit for decision month A: same folder, same forecast
    at_a = nxt.forecasts[nxt.forecasts["decision_month"] == as_of]
    for name, trained in live.items():
        fit_month = at_a[at_a["model"] == name]["fit_month"].iloc[0]
        assert trained.prefix.endswith(nxt.folds.set_index(["model", "fit_month"]).loc[(name, fit_month), "fit_id"])
        window = month_a.windows(6, pd.PeriodIndex([as_of]))
        np.testing.assert_array_equal(trained.model.predict(window)[0],
                                      at_a[at_a["model"] == name]["predicted"].to_numpy())
    # a same-month rerun of the live fits reuses them all
    again = train_models(models, month_a, settings, as_of, registry, with_baselines=False)
    assert all(r.reused and r.prefix == live[n].prefix for n, r in again.items())


def test_a_late_revision_refits_that_fold_and_the_ones_after_nothing_else(data: Dataset, cold: BacktestResult,
                                                                          tmp_path: Path) -> None:
    registry = _registry(tmp_path)
    walk_forward(data, MODELS, _settings(), registry=registry)
    month = data.months[-8]
    features = data.features.copy()
    features.loc[month, "macro:M1"] += 0.25  # one value of one late month
    revised = Dataset(features=features, returns=data.returns, benchmark=data.benchmark, risk_free=data.risk_free,
                      info=data.info)
    result = walk_forward(revised, MODELS, _settings(), registry=registry)
    folds = result.folds
    # a fold's training rows contain month m's features when its last row (fit month - 1) is at or after m
    touched = folds["fit_month"] > month
    assert folds.loc[touched, "fitted"].all() and not folds.loc[~touched, "fitted"].any()
    assert touched.any() and (~touched).any()
    assert_same(result, walk_forward(revised, MODELS, _settings()))
    # forecasts whose window does not reach the revised month are the old ones, bit for bit
    early = result.forecasts["decision_month"] < month
    pd.testing.assert_frame_equal(result.forecasts[early], cold.forecasts[early], check_exact=True)


def test_the_local_pool_gives_the_same_bits(data: Dataset, cold: BacktestResult, tmp_path: Path) -> None:
    pooled = walk_forward(data, MODELS, _settings(), n_jobs=2, registry=_registry(tmp_path))
    assert pooled.info["executor"] == "local-pool"
    assert_same(pooled, cold)


def test_cheap_fits_travel_in_batches_searches_alone(data: Dataset, cold: BacktestResult,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """What goes to a worker: a search alone, other fits of one model in order, at most BATCH_FITS a task;
    every fit once; the same bits as the reference."""
    import job.fits
    from job.cluster import executor as real_executor

    submitted: list[job.fits.FitBatch] = []

    def recording(*args: object, **kwargs: object) -> object:
        ex = real_executor(*args, **kwargs)
        submit = ex.submit

        def record(batch: job.fits.FitBatch, **kw: object) -> None:
            submitted.append(batch)
            submit(batch, **kw)

        ex.submit = record
        return ex

    monkeypatch.setattr(job.fits, "make_executor", recording)
    result = walk_forward(data, MODELS, _settings())
    assert_same(result, cold)
    tasks = [t for b in submitted for t in b.tasks]
    singles = result.folds[result.folds["model"] != "ensemble"]  # ensembles combine their members here
    assert len({t.fit_id for t in tasks}) == len(tasks) and {t.fit_id for t in tasks} == set(singles["fit_id"])
    for batch in submitted:
        assert 1 <= len(batch.tasks) <= job.fits.BATCH_FITS
        assert len({t.label.split("@")[0] for t in batch.tasks}) == 1
        assert not any(t.search for t in batch.tasks) or len(batch.tasks) == 1
        months = [t.fit_month for t in batch.tasks]
        assert months == sorted(months)
    assert max(len(b.tasks) for b in submitted) > 1  # ridge's monthly refits are batched
    assert any(b.tasks[0].search for b in submitted)  # and the searches went alone


RESUME_SCRIPT = textwrap.dedent("""
    import sys
    from pathlib import Path
    from job.backtest import walk_forward
    from job.models import ModelRegistry
    from job.store import LocalStore
    from tests.test_fit_cache import MODELS, _settings
    from job.dataset import synthetic_dataset

    data = synthetic_dataset(n_months=72, n_assets=3, n_macro=4, seed=5)
    walk_forward(data, MODELS, _settings(), registry=ModelRegistry(LocalStore(Path(sys.argv[1]))))
""")


def test_a_killed_backfill_resumes_where_it_stopped(data: Dataset, cold: BacktestResult, tmp_path: Path) -> None:
    """SIGKILL a walk-forward once some fits are stored: the rerun fits only the rest and equals a cold run."""
    store = tmp_path / "store"
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    proc = subprocess.Popen([sys.executable, "-c", RESUME_SCRIPT, str(store)], cwd=REPO_ROOT, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and proc.poll() is None:
        if len(list(store.rglob("metadata.json"))) >= 6:
            break
        time.sleep(0.05)
    assert proc.poll() is None, f"the backfill ended before it could be killed: {proc.stderr.read().decode()[-500:]}"
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    done = len(list(store.rglob("metadata.json")))
    assert 6 <= done < len(cold.folds)
    resumed = walk_forward(data, MODELS, _settings(), registry=_registry(store))
    assert resumed.info["fits_fitted"] == len(cold.folds) - done
    assert_same(resumed, cold)


def _expiring(data: Dataset, feature: str, month: pd.Period) -> Dataset:
    """``data`` as build_dataset makes it when ``feature`` goes stale at ``month`` (Dataset.expired)."""
    features = data.features.copy()
    features.loc[month:, feature] = 0.0
    return Dataset(features=features, returns=data.returns, benchmark=data.benchmark, risk_free=data.risk_free,
                   info=data.info, expired={feature: month})


def test_a_series_that_goes_stale_changes_only_the_fits_from_that_month(data: Dataset, cold: BacktestResult,
                                                                        tmp_path: Path) -> None:
    """A macro series that stops at month e, in the monthly flow (live fits, then the walk-forward):
    the run of e fits only its live fits, which do not use the series, one per model, even for the tree
    whose fold spans e (it refits every 3 months); the run of e + 1 fits nothing; every walk-forward equals
    a cold one; the earlier fits keep their identities and forecasts."""
    settings = _settings()
    registry = _registry(tmp_path)
    tree_fits = sorted(set(cold.folds[cold.folds["model"] == "tree"]["fit_month"]))
    month = tree_fits[-2] + 1  # inside a tree fold, not at its start
    stale = _expiring(data, "macro:M2", month)
    before, at_e, after = data.truncate(month - 1), stale.truncate(month), stale.truncate(month + 1)
    assert at_e.masked_at(month - 1) == () and at_e.masked_at(month) == ("macro:M2",)
    assert at_e.feature_breaks == (month,) and before.feature_breaks == ()

    train_models(MODELS, before, settings, month - 1, registry, with_baselines=False)
    first = walk_forward(before, MODELS, settings, registry=registry)
    wf_e = walk_forward(at_e, MODELS, settings, registry=registry)
    assert wf_e.info["fits_fitted"] == 0
    assert_same(wf_e, walk_forward(at_e, MODELS, settings))
    live = train_models(MODELS, at_e, settings, month, registry, with_baselines=False)
    assert not any(r.reused for r in live.values())
    for name, trained in live.items():
        assert f"train_end={month_str(month)}/" in trained.prefix, name  # the tree's fold was split at e
        meta = registry.metadata(trained.prefix)
        assert meta["masked_features"] == ["macro:M2"] and "macro:M2" in meta["feature_names"], name
    # find() vouches for a fit by the rows it read: the masked view's
    assert registry.find("ridge", as_of=month, refit_months=1, config_fingerprint=config_fingerprint("ridge", settings),
                         dataset=at_e, lookback=6) == live["ridge"].prefix
    wf_next = walk_forward(after, MODELS, settings, registry=registry)
    assert wf_next.info["fits_fitted"] == 0
    assert_same(wf_next, walk_forward(after, MODELS, settings))
    at = wf_next.folds[wf_next.folds["fit_month"] == month].set_index("model")["fit_id"]
    assert sorted(at.index) == sorted(MODELS) and all(r.prefix.endswith(at[n]) for n, r in live.items())
    early = wf_next.forecasts["decision_month"] < month - 1
    pd.testing.assert_frame_equal(wf_next.forecasts[early].reset_index(drop=True),
                                  first.forecasts.reset_index(drop=True), check_exact=True)


def test_a_masked_series_carries_no_information(data: Dataset) -> None:
    """Ridge fitted at the expiry month forecasts what ridge fitted without the series at all forecasts
    (the masked column is constant, so it gets no weight), to rounding."""
    from job.models.training import fit_model

    settings = _settings()
    month = data.months[-5]
    stale = _expiring(data, "macro:M2", month).truncate(month)
    without = Dataset(features=stale.features.drop(columns="macro:M2"), returns=stale.returns,
                      benchmark=stale.benchmark, risk_free=stale.risk_free, info=stale.info)
    masked_model, _ = fit_model("ridge", stale, settings, month)
    plain_model, _ = fit_model("ridge", without, settings, month)
    assert masked_model.best_params_ == plain_model.best_params_
    window = pd.PeriodIndex([month])
    np.testing.assert_allclose(masked_model.predict(stale.view(("macro:M2",)).windows(6, window)),
                               plain_model.predict(without.windows(6, window)), rtol=0, atol=1e-12)
