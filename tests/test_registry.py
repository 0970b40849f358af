"""The model registry: safe formats, checksums, and the train-or-load policy."""

from __future__ import annotations

import itertools
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.base import BaseEstimator

from job.config import Settings, load_settings
from job.dataset import Dataset
from job.errors import ExitCode
from job.models import (
    CorruptModel,
    ModelRegistry,
    PersistenceForecaster,
    build_model,
    config_fingerprint,
    data_fingerprint,
    forecast_frame,
    train_models,
    train_or_load,
    training_data,
)
from job.models.registry import RowDigests, serialise_model
from job.store import LocalStore

AS_OF = pd.Period("2017-06", freq="M")


@pytest.fixture
def settings() -> Settings:
    return load_settings(environ={}, overrides={"models": {
        "cv_splits": 3, "ridge_alphas": [50.0, 500.0], "tree_fixed": True,
        "lstm_epochs": 4, "lstm_patience": 2, "ensemble_members": ["ridge", "historical-mean"],
        "refit_months": {"ridge": 1, "lstm": 12}}})


@pytest.fixture
def registry(tmp_path: Path) -> ModelRegistry:
    return ModelRegistry(LocalStore(tmp_path / "artifacts"))


def _save(registry: ModelRegistry, name: str, model, dataset: Dataset, settings: Settings, **extra) -> str:
    return registry.save(model, name=name, train_end="2017-06", data_fingerprint=data_fingerprint(dataset),
                         config_fingerprint=config_fingerprint(name, settings), feature_names=dataset.feature_names,
                         assets=dataset.assets, metrics={"note": "test"}, **extra)


@pytest.mark.parametrize("name", ["persistence", "historical-mean", "ridge", "tree"])
def test_save_load_gives_identical_predictions(name: str, synthetic: Dataset, settings: Settings,
                                               registry: ModelRegistry) -> None:
    X, y, _ = training_data(synthetic, 12, AS_OF)
    model = build_model(name, settings, return_feature_index=synthetic.return_feature_index()).fit(X, y)
    prefix = _save(registry, name, model, synthetic, settings)
    assert prefix.startswith(f"models/{name}/train_end=2017-06/")
    loaded = registry.load(prefix)
    assert type(loaded) is type(model)
    np.testing.assert_array_equal(loaded.predict(X), model.predict(X))
    np.testing.assert_array_equal(loaded.validation_mae_, model.validation_mae_)


def test_lstm_save_load_gives_identical_predictions(synthetic: Dataset, settings: Settings,
                                                   registry: ModelRegistry) -> None:
    """The network goes to a .keras file, its weights also to .npz, the scalers to JSON. Loading for a
    forecast reads the .npz and JSON only: a fresh process forecasts without importing TensorFlow."""
    X, y, _ = training_data(synthetic, 12, AS_OF)
    model = build_model("lstm", settings, return_feature_index=synthetic.return_feature_index()).fit(X, y)
    prefix = _save(registry, "lstm", model, synthetic, settings)
    meta = registry.metadata(prefix)
    assert set(meta["files"]) == {"network.keras", "weights.npz", "state.json"}
    loaded = registry.load(prefix)
    np.testing.assert_array_equal(loaded.predict(X), model.predict(X))
    assert loaded.network_ is None and loaded.n_parameters == model.n_parameters
    np.save(registry.store.uri + "/X.npy", X)
    script = ("import sys, numpy as np; from job.models import ModelRegistry; from job.store import LocalStore; "
              f"store = LocalStore({registry.store.uri!r}); "
              f"p = ModelRegistry(store).load({prefix!r}).predict(np.load({registry.store.uri + '/X.npy'!r})); "
              f"np.save({registry.store.uri + '/p.npy'!r}, p); print('tensorflow' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
    np.testing.assert_array_equal(np.load(registry.store.uri + "/p.npy"), model.predict(X))
    # a fit stored before weights.npz existed still loads, from its .keras file, and forecasts the same
    older = {k: v for k, v in serialise_model(model).items() if k != "weights.npz"}
    np.testing.assert_array_equal(ModelRegistry._load_lstm(older).predict(X), model.predict(X))


def test_metadata_records_what_the_model_was_trained_on(synthetic: Dataset, settings: Settings,
                                                       registry: ModelRegistry) -> None:
    model, prefix, reused = train_or_load("ridge", synthetic, settings, AS_OF, registry,
                                          data_fingerprint=data_fingerprint(synthetic))
    assert not reused
    meta = json.loads(registry.store.get_bytes(f"{prefix}/metadata.json"))
    assert meta["train_end"] == "2017-06"
    assert meta["training_window"]["last_label_month"] == "2017-06"
    assert meta["feature_names"] == synthetic.feature_names and meta["assets"] == synthetic.assets
    assert meta["best_params"] == model.best_params_
    assert set(meta["validation_mae"]) == set(synthetic.assets)
    assert {"scikit-learn", "skops", "numpy"} <= set(meta["library_versions"])
    assert set(meta["files"]) == {"model.skops"} and len(meta["files"]["model.skops"]["sha256"]) == 64
    assert meta["data_fingerprint"] == data_fingerprint(synthetic)
    # the identity: config, exact training rows, libraries, tuning provenance; the folder is named by it
    identity = meta["identity"]
    assert prefix.endswith("/" + meta["fit_id"]) and identity["rows"] == meta["rows_fingerprint"]
    assert identity["rows"] == RowDigests(synthetic, 12).rows(AS_OF)[0]
    assert {"numpy", "scikit-learn", "python"} <= set(identity["libraries"])
    # tune_months = 12: 2017-06 is between two searches, so it carries the last search's alpha
    assert identity["search"] is False and meta["carried_from"].startswith("models/ridge/train_end=")
    searched = registry.metadata(meta["carried_from"])
    assert searched["identity"]["search"] is True and identity["carried_from"] == searched["fit_id"]
    assert meta["params"]["alphas"] == [searched["best_params"]["alpha"]]


def test_train_or_load_reuses_a_fresh_model_and_retrains_a_stale_one(synthetic: Dataset, settings: Settings,
                                                                     registry: ModelRegistry) -> None:
    fp = data_fingerprint(synthetic)
    model, prefix, reused = train_or_load("ridge", synthetic, settings, AS_OF, registry, data_fingerprint=fp)
    assert not reused
    again, prefix2, reused2 = train_or_load("ridge", synthetic, settings, AS_OF, registry, data_fingerprint=fp)
    assert reused2 and prefix2 == prefix
    window = synthetic.windows(12, pd.PeriodIndex([AS_OF]))
    np.testing.assert_array_equal(again.predict(window), model.predict(window))
    # ridge refits monthly: one month later the stored model is stale
    _, prefix3, reused3 = train_or_load("ridge", synthetic, settings, AS_OF + 1, registry, data_fingerprint=fp)
    assert not reused3 and "train_end=2017-07" in prefix3
    # a longer refit interval: the walk-forward's folds of 3 months, each month using its fold's fit
    slow = settings.with_overrides({"models": {"refit_months": {"ridge": 3}}})
    prefixes = [train_or_load("ridge", synthetic, slow, AS_OF + k, registry, data_fingerprint=fp)[1] for k in range(6)]
    runs = [len(list(group)) for _, group in itertools.groupby(prefixes)]
    assert len(runs) == len(set(prefixes)) in (2, 3) and max(runs) == 3
    # a changed configuration never matches an old model
    other = settings.with_overrides({"models": {"ridge_alphas": [25.0]}})
    _, _, reused5 = train_or_load("ridge", synthetic, other, AS_OF, registry, data_fingerprint=fp)
    assert not reused5


def _revised(data: Dataset, month: pd.Period, column: str = "macro:M0", delta: float = 0.5) -> Dataset:
    """``data`` with one feature value of ``month`` changed (a data revision)."""
    features = data.features.copy()
    features.loc[month, column] += delta
    return Dataset(features=features, returns=data.returns, benchmark=data.benchmark, risk_free=data.risk_free,
                   info=data.info)


def test_a_data_revision_refits_the_live_model_and_find_skips_the_old_one(synthetic: Dataset, settings: Settings,
                                                                          registry: ModelRegistry) -> None:
    """A same-month rerun after a revision of a training row does not reuse the fit made before it."""
    fp = data_fingerprint(synthetic)
    _, before, _ = train_or_load("ridge", synthetic, settings, AS_OF, registry, data_fingerprint=fp)
    cfg = config_fingerprint("ridge", settings)
    assert registry.find("ridge", as_of=AS_OF, refit_months=1, config_fingerprint=cfg, dataset=synthetic,
                         lookback=12) == before
    revised = _revised(synthetic, AS_OF - 5)
    assert registry.find("ridge", as_of=AS_OF, refit_months=1, config_fingerprint=cfg, dataset=revised,
                         lookback=12) is None
    _, after, reused = train_or_load("ridge", revised, settings, AS_OF, registry, data_fingerprint=fp)
    assert not reused and after != before
    # a revision after the fit month does not touch the fit's training rows: reused
    later = _revised(synthetic, AS_OF + 2)
    _, same, reused_later = train_or_load("ridge", later, settings, AS_OF, registry, data_fingerprint=fp)
    assert reused_later and same == before


def test_find_ignores_models_trained_after_as_of(synthetic: Dataset, settings: Settings,
                                                 registry: ModelRegistry) -> None:
    fp = data_fingerprint(synthetic)
    _, prefix, _ = train_or_load("ridge", synthetic, settings, AS_OF, registry, data_fingerprint=fp)
    cfg = config_fingerprint("ridge", settings)
    found = registry.find("ridge", as_of=AS_OF - 1, refit_months=12, config_fingerprint=cfg, dataset=synthetic,
                          lookback=12)
    # the live 2017-06 refit carries the 2016-12 search, stored with it; nothing after 2017-05 is returned
    assert found == registry.metadata(prefix)["carried_from"] and "train_end=2016-12" in found
    assert registry.find("ridge", as_of=AS_OF - 1, refit_months=1, config_fingerprint=cfg, dataset=synthetic,
                         lookback=12) is None


def test_ensemble_stores_references_to_its_members(synthetic: Dataset, settings: Settings,
                                                   registry: ModelRegistry) -> None:
    fp = data_fingerprint(synthetic)
    models = train_models(["ridge", "ensemble"], synthetic, settings, AS_OF, registry, data_fingerprint=fp)
    assert list(models) == ["persistence", "historical-mean", "ridge", "ensemble"]
    ens = models["ensemble"]
    assert ens.metadata["members"] == {"ridge": models["ridge"].prefix,
                                       "historical-mean": models["historical-mean"].prefix}
    loaded = registry.load(ens.prefix)
    window = synthetic.windows(12, pd.PeriodIndex([AS_OF]))
    np.testing.assert_array_equal(loaded.predict(window), ens.model.predict(window))
    assert loaded.weights_ == ens.model.weights_
    again = train_models(["ridge", "ensemble"], synthetic, settings, AS_OF, registry, data_fingerprint=fp)
    assert all(r.reused for r in again.values())


def _corrupt_first_model_file(registry: ModelRegistry, prefix: str, how: str) -> str:
    meta = registry.metadata(prefix)
    filename = sorted(meta["files"])[0]
    path = Path(registry.store.uri) / prefix / filename
    data = bytearray(path.read_bytes())
    if how == "truncate":
        data = data[: len(data) // 2]
    else:
        data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))
    return filename


@pytest.mark.parametrize("how", ["truncate", "bitflip"])
def test_corrupt_model_file_is_rejected_with_a_clear_message(how: str, synthetic: Dataset, settings: Settings,
                                                             registry: ModelRegistry) -> None:
    fp = data_fingerprint(synthetic)
    _, prefix, _ = train_or_load("tree", synthetic, settings, AS_OF, registry, data_fingerprint=fp)
    filename = _corrupt_first_model_file(registry, prefix, how)
    with pytest.raises(CorruptModel) as info:
        registry.load(prefix)
    line = info.value.one_line()
    assert "\n" not in line
    assert f"{prefix}/{filename} failed its checksum" in line and "truncated or was modified" in line
    assert info.value.exit_code == ExitCode.VALIDATION


def test_corrupt_keras_file_is_rejected(synthetic: Dataset, settings: Settings, registry: ModelRegistry) -> None:
    X, y, _ = training_data(synthetic, 12, AS_OF)
    model = build_model("lstm", settings.with_overrides({"models": {"lstm_epochs": 1}}),
                        return_feature_index=synthetic.return_feature_index()).fit(X, y)
    prefix = _save(registry, "lstm", model, synthetic, settings)
    path = Path(registry.store.uri) / prefix / "network.keras"
    data = bytearray(path.read_bytes())
    data[100] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(CorruptModel, match=r"network\.keras failed its checksum"):
        registry.load(prefix)


def test_corrupt_model_policy_retrains_or_fails(synthetic: Dataset, settings: Settings,
                                                registry: ModelRegistry) -> None:
    fp = data_fingerprint(synthetic)
    _, prefix, _ = train_or_load("ridge", synthetic, settings, AS_OF, registry, data_fingerprint=fp)
    _corrupt_first_model_file(registry, prefix, "bitflip")
    failing = settings.with_overrides({"models": {"on_corrupt_model": "fail"}})
    with pytest.raises(CorruptModel, match="failed its checksum"):
        train_or_load("ridge", synthetic, failing, AS_OF, registry, data_fingerprint=fp)
    model, prefix2, reused = train_or_load("ridge", synthetic, settings, AS_OF, registry, data_fingerprint=fp)
    assert not reused and prefix2 == prefix  # retrained and rewritten in place
    assert registry.load(prefix2).best_params_ == model.best_params_


class Untrusted(BaseEstimator):
    """A type the registry's trusted list does not name."""


def test_untrusted_types_are_refused(synthetic: Dataset, settings: Settings, registry: ModelRegistry) -> None:
    """A skops file holding a type outside the trusted list is not loaded, even with valid checksums."""
    X, y, _ = training_data(synthetic, 12, AS_OF)
    model = PersistenceForecaster(synthetic.return_feature_index()).fit(X, y)
    model.extra_ = Untrusted()
    prefix = _save(registry, "persistence", model, synthetic, settings)
    with pytest.raises(CorruptModel, match=r"types outside the trusted list: (tests\.)?test_registry\.Untrusted"):
        registry.load(prefix)


def test_truncated_metadata_is_a_corrupt_model(synthetic: Dataset, settings: Settings,
                                               registry: ModelRegistry) -> None:
    fp = data_fingerprint(synthetic)
    _, prefix, _ = train_or_load("persistence", synthetic, settings, AS_OF, registry, data_fingerprint=fp)
    path = Path(registry.store.uri) / prefix / "metadata.json"
    path.write_bytes(path.read_bytes()[:40])
    with pytest.raises(CorruptModel, match="not valid JSON"):
        registry.load(prefix)
    # find() skips it and train_or_load retrains
    _, _, reused = train_or_load("persistence", synthetic, settings, AS_OF, registry, data_fingerprint=fp)
    assert not reused


def test_forecast_frame_has_one_row_per_model_and_asset(synthetic: Dataset, settings: Settings,
                                                        registry: ModelRegistry) -> None:
    models = train_models(["ridge"], synthetic, settings, AS_OF, registry, data_fingerprint=data_fingerprint(synthetic))
    frame = forecast_frame(models, synthetic, AS_OF, 12,
                           sectors={"SPY": "S&P 500"})
    assert len(frame) == 3 * len(synthetic.assets)
    assert set(frame["target_month"]) == {"2017-07"} and set(frame["train_end"]) == {"2017-06"}
    assert np.isfinite(frame["predicted"]).all()
    assert frame.loc[frame["asset"] == "SPY", "sector"].eq("S&P 500").all()
    assert frame["model_fingerprint"].str.len().eq(16).all()


# -- the train and forecast commands ---------------------------------------------------------------


def _rotation(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    """Run the CLI in-process; return (exit code, stdout, stderr)."""
    from job.cli import main

    with pytest.raises(SystemExit) as info:
        main(list(args))
    out = capsys.readouterr()
    return int(info.value.code or 0), out.out, out.err


@pytest.fixture
def sample_warehouse(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> list[str]:
    """Group options pointing at a warehouse filled from the built-in sample source."""
    group = ["--warehouse", str(tmp_path / "wh.duckdb"), "--store", str(tmp_path / "store")]
    code, _, err = _rotation(capsys, *group, "ingest", "--source", "sample")
    assert code == 0, err
    return group


def test_train_then_forecast_reuses_the_stored_model(sample_warehouse: list[str], tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    """`rotation train` saves; `rotation forecast` reuses it and publishes one row per model and asset."""
    code, out, err = _rotation(capsys, *sample_warehouse, "train", "--models", "ridge", "--as-of", "2020-06")
    assert code == 0, err
    assert "ridge" in out and "trained in" in out and "not comparable across models" in out
    assert "x historical-mean" not in out  # own-fit MAEs are on different rows: no ratios between models
    code, out, err = _rotation(capsys, *sample_warehouse, "forecast", "--models", "ridge", "--as-of", "2020-06")
    assert code == 0, err
    assert "forecast of 2020-07 returns" in out
    assert all(line.split()[-1] != "trained" for line in out.splitlines() if line.startswith("ridge"))
    assert "reused" in next(line for line in out.splitlines() if line.startswith("ridge"))
    parts = list((tmp_path / "store" / "forecasts" / "as_of=2020-06").glob("run_id=*/part-0.parquet"))
    assert len(parts) == 1
    frame = pd.read_parquet(parts[0])
    assert set(frame["model"]) == {"persistence", "historical-mean", "ridge"}
    assert frame.groupby("model").size().eq(12).all()
    assert np.isfinite(frame["predicted"]).all() and set(frame["target_month"]) == {"2020-07"}
    assert (tmp_path / "store" / "runs" / "as_of=2020-06" / "manifest.json").is_file()


def test_unknown_model_exits_2(sample_warehouse: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = _rotation(capsys, *sample_warehouse, "forecast", "--models", "ridge,xgboost")
    assert code == ExitCode.USAGE
    assert err.strip() == ("error: unknown model(s) xgboost (choose from persistence, historical-mean, momentum, "
                           "ridge, tree, lstm, ensemble)")


def test_corrupt_model_with_fail_policy_exits_3(sample_warehouse: list[str], tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str],
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """With models.on_corrupt_model=fail, a tampered stored model stops the forecast with one line."""
    assert _rotation(capsys, *sample_warehouse, "train", "--models", "ridge", "--as-of", "2020-06")[0] == 0
    # The live fit of 2020-06 (earlier folds of the walk-forward schedule, e.g. the last search, are stored too).
    model_file = next((tmp_path / "store" / "models" / "ridge" / "train_end=2020-06").rglob("model.skops"))
    model_file.write_bytes(model_file.read_bytes()[:-10])
    monkeypatch.setenv("ROTATION_MODELS__ON_CORRUPT_MODEL", "fail")
    code, _, err = _rotation(capsys, *sample_warehouse, "forecast", "--models", "ridge", "--as-of", "2020-06")
    assert code == ExitCode.VALIDATION
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "model.skops failed its checksum" in errors[0]
    assert err.rstrip().endswith(errors[0]) and "Traceback" not in err


@pytest.mark.slow
def test_real_snapshot_all_models_train_and_forecast(snapshot_dir: Path, tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    """On the real snapshot every model trains, and forecasts 12 finite returns (small LSTM)."""
    group = ["--warehouse", str(tmp_path / "wh.duckdb"), "--store", str(tmp_path / "store")]
    code, _, err = _rotation(capsys, *group, "ingest", "--source", "snapshot", "--snapshot-dir", str(snapshot_dir))
    assert code == 0, err
    names = "persistence,historical-mean,ridge,tree,lstm,ensemble"
    code, out, err = _rotation(capsys, *group, "train", "--models", names, "--lstm-preset", "small")
    assert code == 0, err
    assert out.count("trained in") == 6
    code, out, err = _rotation(capsys, *group, "forecast", "--models", names, "--lstm-preset", "small")
    assert code == 0, err
    assert out.count(" reused ") == 6
    frame = pd.read_parquet(next((tmp_path / "store" / "forecasts").rglob("part-0.parquet")))
    assert sorted(frame["model"].unique()) == sorted(names.split(","))
    for _, rows in frame.groupby("model"):
        assert len(rows) == 12 and np.isfinite(rows["predicted"]).all()
        assert rows["predicted"].abs().max() < 0.5  # monthly returns, not nonsense
    assert frame["sector"].ne("").all()
