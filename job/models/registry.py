"""The model registry: fitted models in the artifact store, in safe formats, found by freshness.

Layout (the same in a local folder and under ``s3://bucket/prefix``)::

    models/<name>/train_end=YYYY-MM/<fingerprint>/
        model.skops        scikit-learn forecasters (persistence, historical-mean, ridge, tree)
        network.keras      the LSTM's Keras network (weights, no optimizer state)
        state.json         the LSTM's scalers and fitted attributes
        ensemble.json      the ensemble's weights and the prefixes of its stored members
        metadata.json      written last: parameters, training window, fingerprints, feature names,
                           assets, validation metrics, library versions, sha256 and size of each file

``train_end`` is the as-of month the model was trained for (its last label month is at or before it);
``<fingerprint>`` hashes the configuration and the data, so retraining the same thing rewrites the same
folder. Nothing read from storage is unpickled: skops loads with an explicit list of trusted types and
Keras loads with ``safe_mode=True``. A file whose checksum does not match its metadata raises
:class:`CorruptModel`; :func:`train_or_load` then retrains or fails per ``models.on_corrupt_model``.
"""

from __future__ import annotations

import hashlib
import json
import platform
import tempfile
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib import metadata as importlib_metadata
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from job.config import Settings
from job.dataset import Dataset
from job.errors import ConfigError, ExitCode, RotationError
from job.logs import get_logger
from job.models.base import Forecaster, array_from_json, array_to_json
from job.models.ensemble import EnsembleForecaster
from job.models.factory import BASELINES, MODEL_NAMES, ensemble_member_names
from job.models.lstm import LSTMForecaster
from job.models.training import fit_model
from job.months import month_str, parse_month
from job.store.base import ArtifactNotFound, Store

log = get_logger("registry")

ROOT = "models"
METADATA = "metadata.json"
SKOPS_FILE = "model.skops"
KERAS_FILE = "network.keras"
STATE_FILE = "state.json"
ENSEMBLE_FILE = "ensemble.json"
FORMAT_VERSION = 2  # bump when a stored layout changes: old models then stop matching and are retrained

# Types a stored scikit-learn forecaster may contain beyond skops' own defaults (numpy, builtins and
# scikit-learn's Pipeline, StandardScaler, Ridge, DecisionTreeRegressor). Anything else is refused.
TRUSTED_TYPES = (
    "job.models.base.Clipper",
    "job.models.base.WindowFlattener",
    "job.models.baselines.HistoricalMeanForecaster",
    "job.models.baselines.PersistenceForecaster",
    "job.models.linear.RidgeForecaster",
    "job.models.tree.TreeForecaster",
    "sklearn.tree._tree.Tree",
)
LIBRARIES = ("scikit-learn", "skops", "numpy", "pandas", "keras", "tensorflow", "tensorflow-cpu", "sector-rotation")


class CorruptModel(RotationError):
    """A stored model failed its checksum, is incomplete, or holds types outside the trusted list."""

    exit_code = ExitCode.VALIDATION


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _digest(obj: Any) -> str:
    return _sha256(json.dumps(obj, sort_keys=True, default=str).encode())[:16]


def config_fingerprint(name: str, settings: Settings) -> str:
    """A 16-hex-digit hash of everything in the settings that changes what model ``name`` learns.

    Common: the lookback, the seed, the data source and publication lags (the leaky lag-0 alignment
    never mixes with the point-in-time one), the registry format. Per model: its own settings; the
    ensemble adds its weighting and its members' fingerprints. Raises ConfigError for an unknown name.
    """
    if name not in MODEL_NAMES:
        raise ConfigError(f"unknown model {name!r}", hint=f"choose from {', '.join(MODEL_NAMES)}")
    m, d = settings.models, settings.data
    relevant: dict[str, Any] = {
        "model": name, "format": FORMAT_VERSION, "lookback": m.lookback_months, "seed": m.seed,
        "source": d.source, "publication_lag_months": d.publication_lag_months,
        "market_lag_months": d.market_lag_months, "max_staleness_months": d.max_staleness_months,
    }
    if name in ("persistence", "historical-mean", "ridge", "tree"):
        relevant["cv_splits"] = m.cv_splits
    if name == "ridge":
        relevant["alphas"] = [float(a) for a in m.ridge_alphas]
    elif name == "tree":
        relevant["tree"] = ({"fixed": True} if m.tree_fixed else
                            {"max_leaf_nodes": m.tree_max_leaf_nodes, "min_samples_split": m.tree_min_samples_split,
                             "min_samples_leaf": m.tree_min_samples_leaf})
    elif name == "lstm":
        relevant["lstm"] = {"preset": m.lstm_preset, "epochs": m.lstm_epochs, "patience": m.lstm_patience,
                            "batch_size": m.lstm_batch_size, "validation_share": m.lstm_validation_share}
    elif name == "ensemble":
        relevant["weighting"] = m.ensemble_weighting
        relevant["members"] = {n: config_fingerprint(n, settings) for n in ensemble_member_names(settings)}
    return _digest(relevant)


def data_fingerprint(dataset: Dataset) -> str:
    """A 16-hex-digit hash of the dataset's features and returns (values, months, names, benchmark)."""
    h = hashlib.sha256()
    for frame in (dataset.features, dataset.returns):
        h.update(json.dumps([str(c) for c in frame.columns]).encode())
        h.update(json.dumps([month_str(p) for p in frame.index]).encode())
        h.update(np.ascontiguousarray(frame.to_numpy(dtype=np.float64)).tobytes())
    h.update(f"{dataset.benchmark}|{dataset.publication_lag_months}".encode())
    return h.hexdigest()[:16]


def library_versions() -> dict[str, str]:
    """Installed versions of the libraries a stored model depends on."""
    out = {"python": platform.python_version()}
    for name in LIBRARIES:
        try:
            out[name] = importlib_metadata.version(name)
        except importlib_metadata.PackageNotFoundError:
            continue
    return out


def _json_bytes(obj: Any) -> bytes:
    return json.dumps(obj, indent=1, sort_keys=True, allow_nan=False, default=str).encode()


class ModelRegistry:
    """Fitted models in a :class:`job.store.base.Store` under ``models/``."""

    def __init__(self, store: Store) -> None:
        self.store = store

    # -- writing -------------------------------------------------------------------------------------

    def save(self, model: Forecaster, *, name: str, train_end: str, data_fingerprint: str,
             config_fingerprint: str, feature_names: list[str], assets: list[str], metrics: dict[str, Any],
             training_window: dict[str, Any] | None = None, member_prefixes: dict[str, str] | None = None) -> str:
        """Store fitted ``model``; return its prefix ``models/<name>/train_end=YYYY-MM/<fingerprint>``.

        Model files are written first and ``metadata.json`` (with each file's sha256) last, so a prefix
        without metadata is never found. An ensemble stores references to its members, which must be
        stored already: ``member_prefixes`` maps each member name to its prefix.
        """
        train_end = month_str(parse_month(train_end))
        fingerprint = _sha256(f"{config_fingerprint}|{data_fingerprint}|{train_end}".encode())[:16]
        prefix = f"{ROOT}/{name}/train_end={train_end}/{fingerprint}"
        files = self._serialise(model, member_prefixes)
        for filename, data in files.items():
            self.store.put_bytes(f"{prefix}/{filename}", data)
        meta = {
            "name": name, "format_version": FORMAT_VERSION, "class": type(model).__name__,
            "params": _plain_params(model), "best_params": getattr(model, "best_params_", None),
            "train_end": train_end, "training_window": training_window or {},
            "data_fingerprint": data_fingerprint, "config_fingerprint": config_fingerprint,
            "fingerprint": fingerprint, "feature_names": list(feature_names), "assets": list(assets),
            "validation_mae": dict(zip(assets, (float(v) for v in model.validation_mae_), strict=True)),
            "validation_mae_mean": float(np.mean(model.validation_mae_)),
            "metrics": metrics, "members": member_prefixes or {},
            "files": {fn: {"sha256": _sha256(data), "bytes": len(data)} for fn, data in files.items()},
            "library_versions": library_versions(),
            "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        }
        self.store.put_bytes(f"{prefix}/{METADATA}", _json_bytes(meta), "application/json")
        log.info("saved %s", prefix, extra={"fields": {"model": name, "train_end": train_end}})
        return prefix

    def _serialise(self, model: Forecaster, member_prefixes: dict[str, str] | None) -> dict[str, bytes]:
        if isinstance(model, LSTMForecaster):
            with tempfile.TemporaryDirectory(prefix="rotation-keras-") as tmp:
                path = Path(tmp) / KERAS_FILE
                model.portable_network().save(path)
                network = path.read_bytes()
            return {KERAS_FILE: network, STATE_FILE: _json_bytes(model.state())}
        if isinstance(model, EnsembleForecaster):
            missing = sorted(set(model.members_) - set(member_prefixes or {}))
            if missing:
                raise ValueError(f"save the ensemble's members first; no stored prefix for {missing}")
            state = {"weighting": model.weighting, "weights": model.weights_,
                     "members": {n: (member_prefixes or {})[n] for n in model.members_},
                     "n_steps": model.n_steps_, "n_features": model.n_features_in_, "n_assets": model.n_assets_,
                     "validation_mae": array_to_json(model.validation_mae_),
                     "validation_predictions": array_to_json(model.validation_predictions_)}
            return {ENSEMBLE_FILE: _json_bytes(state)}
        import skops.io

        return {SKOPS_FILE: skops.io.dumps(model)}

    # -- reading -------------------------------------------------------------------------------------

    def metadata(self, prefix: str) -> dict[str, Any]:
        """The parsed ``metadata.json`` of ``prefix``; CorruptModel when missing or unreadable."""
        key = f"{prefix.rstrip('/')}/{METADATA}"
        try:
            meta = json.loads(self.store.get_bytes(key))
        except ArtifactNotFound:
            raise CorruptModel(f"stored model {prefix} has no {METADATA}",
                               hint="it was never completed; retrain it with `rotation train`") from None
        except ValueError:
            raise CorruptModel(f"stored model metadata {key} is not valid JSON (truncated or modified)",
                               hint="delete the folder or retrain with `rotation train`") from None
        if not isinstance(meta, dict) or not isinstance(meta.get("files"), dict):
            raise CorruptModel(f"stored model metadata {key} lacks its file checksums",
                               hint="delete the folder or retrain with `rotation train`")
        return meta

    def _verified_files(self, prefix: str, meta: dict[str, Any]) -> dict[str, bytes]:
        """Every file listed in the metadata, each checked against its size and sha256."""
        out = {}
        for filename, expected in sorted(meta["files"].items()):
            key = f"{prefix}/{filename}"
            try:
                data = self.store.get_bytes(key)
            except ArtifactNotFound:
                raise CorruptModel(f"stored model file {key} is missing",
                                   hint="delete the folder or retrain with `rotation train`") from None
            if len(data) != expected.get("bytes") or _sha256(data) != expected.get("sha256"):
                raise CorruptModel(
                    f"stored model file {key} failed its checksum ({len(data)} bytes, expected "
                    f"{expected.get('bytes')}; sha256 {_sha256(data)[:12]}..., expected "
                    f"{str(expected.get('sha256'))[:12]}...): it is truncated or was modified",
                    hint="it was not loaded; delete the folder or retrain with `rotation train`")
            out[filename] = data
        return out

    def load(self, prefix: str, *, members: dict[str, Forecaster] | None = None) -> Forecaster:
        """The fitted model stored at ``prefix``, after verifying every file's sha256.

        Raises CorruptModel (one line) for a missing, truncated or modified file or an untrusted type.
        An ensemble loads its members from their own prefixes unless ``members`` already holds them.
        """
        prefix = prefix.rstrip("/")
        meta = self.metadata(prefix)
        files = self._verified_files(prefix, meta)
        try:
            if SKOPS_FILE in files:
                return self._load_skops(prefix, files[SKOPS_FILE])
            if KERAS_FILE in files:
                return self._load_lstm(files)
            if ENSEMBLE_FILE in files:
                return self._load_ensemble(json.loads(files[ENSEMBLE_FILE]), members or {})
        except CorruptModel:
            raise
        except Exception as exc:  # verified bytes that still do not load: a version or format mismatch
            raise CorruptModel(f"stored model {prefix} could not be loaded: {type(exc).__name__}: "
                               f"{' '.join(str(exc).split())[:200]}",
                               hint="retrain it with `rotation train`") from None
        raise CorruptModel(f"stored model {prefix} has no model file", hint="retrain it with `rotation train`")

    @staticmethod
    def _load_skops(prefix: str, data: bytes) -> Forecaster:
        import skops.io

        untrusted = skops.io.get_untrusted_types(data=data)
        refused = sorted(set(untrusted) - set(TRUSTED_TYPES))
        if refused:
            raise CorruptModel(f"stored model {prefix} contains types outside the trusted list: "
                               f"{', '.join(refused[:5])}", hint="it was not loaded; retrain it")
        model = skops.io.loads(data, trusted=list(untrusted))
        if not isinstance(model, Forecaster):
            raise CorruptModel(f"stored model {prefix} holds a {type(model).__name__}, not a forecaster")
        return model

    @staticmethod
    def _load_lstm(files: dict[str, bytes]) -> LSTMForecaster:
        from job.models.lstm import _keras

        keras = _keras()
        with tempfile.TemporaryDirectory(prefix="rotation-keras-") as tmp:
            path = Path(tmp) / KERAS_FILE
            path.write_bytes(files[KERAS_FILE])
            network = keras.saving.load_model(path, compile=False, safe_mode=True)
        return LSTMForecaster.from_state(json.loads(files[STATE_FILE]), network)

    def _load_ensemble(self, state: dict[str, Any], members: dict[str, Forecaster]) -> EnsembleForecaster:
        loaded = {name: members[name] if name in members else self.load(member_prefix)
                  for name, member_prefix in state["members"].items()}
        model = EnsembleForecaster(members=loaded, weighting=state["weighting"])
        model.members_ = loaded
        model.weights_ = {k: float(v) for k, v in state["weights"].items()}
        model.n_steps_, model.n_features_in_, model.n_assets_ = state["n_steps"], state["n_features"], state["n_assets"]
        model.validation_mae_ = array_from_json(state["validation_mae"])
        model.validation_predictions_ = array_from_json(state["validation_predictions"])
        return model

    # -- finding -------------------------------------------------------------------------------------

    def prefixes(self, name: str) -> list[str]:
        """Prefixes of stored models ``name`` that have metadata, oldest train_end first."""
        keys = self.store.list(f"{ROOT}/{name}/")
        return sorted(k[: -len(METADATA) - 1] for k in keys if k.endswith(f"/{METADATA}"))

    def find(self, name: str, *, as_of: str | pd.Period, refit_months: int, config_fingerprint: str,
             feature_names: list[str], assets: list[str] | None = None) -> str | None:
        """The newest compatible stored model, or None.

        Compatible: same config fingerprint and feature names (and assets when given), and
        ``train_end <= as_of`` with ``as_of - train_end < refit_months`` (refit 1: only this month's).
        Unreadable metadata is skipped with a warning (load() reports it when asked directly).
        """
        as_of = parse_month(as_of)
        candidates = []
        for prefix in self.prefixes(name):
            part = next((p for p in prefix.split("/") if p.startswith("train_end=")), None)
            if part is None:
                continue
            try:
                train_end = parse_month(part.removeprefix("train_end="))
            except ConfigError:
                continue
            age = (as_of - train_end).n
            if 0 <= age < refit_months:
                candidates.append((train_end, prefix))
        best: tuple[tuple[str, str], str] | None = None
        for train_end, prefix in sorted(candidates, reverse=True):
            try:
                meta = self.metadata(prefix)
            except CorruptModel as exc:
                log.warning("skipping stored model: %s", exc.one_line())
                continue
            if (meta.get("config_fingerprint") != config_fingerprint
                    or meta.get("feature_names") != list(feature_names)
                    or (assets is not None and meta.get("assets") != list(assets))):
                continue
            key = (month_str(train_end), str(meta.get("created_at", "")))
            if best is None or key > best[0]:
                best = (key, prefix)
        return best[1] if best is not None else None


def _plain_params(model: Forecaster) -> dict[str, Any]:
    """Constructor parameters as JSON-ready data (ensemble members by class name)."""
    out = {}
    for key, value in model.get_params(deep=False).items():
        if isinstance(value, dict):
            value = {k: type(v).__name__ for k, v in value.items()}
        elif isinstance(value, tuple):
            value = list(value)
        out[key] = value
    return out


# -- the train-or-load policy ------------------------------------------------------------------------


@dataclass
class TrainedModel:
    """A fitted model ready to forecast, where it is stored, and whether it was reused."""

    name: str
    model: Forecaster
    prefix: str
    reused: bool
    fit_seconds: float | None = None
    metadata: dict[str, Any] = field(default_factory=dict)


def train_or_load(name: str, dataset: Dataset, settings: Settings, as_of: str | pd.Period,
                  registry: ModelRegistry, *, data_fingerprint: str, force: bool = False,
                  members: dict[str, TrainedModel] | None = None) -> tuple[Forecaster, str, bool]:
    """``(model, prefix, reused)`` for model ``name`` as of ``as_of``.

    Reuses the newest compatible stored model within ``models.refit_months[name]`` (default 1: only
    one trained for this very month); otherwise fits on the pairs whose label month is at or before
    ``as_of`` and saves it. ``force`` always refits. A stored model that fails its checksum is retrained
    (``models.on_corrupt_model = "retrain"``, with a warning) or raises CorruptModel (``"fail"``).
    The ensemble first trains or loads its members (``members`` may hold some already), and is reused
    only when it was built from exactly those stored members.
    """
    result = train_or_load_result(name, dataset, settings, as_of, registry, data_fingerprint=data_fingerprint,
                                  force=force, members=members)
    return result.model, result.prefix, result.reused


def train_or_load_result(name: str, dataset: Dataset, settings: Settings, as_of: str | pd.Period,
                         registry: ModelRegistry, *, data_fingerprint: str, force: bool = False,
                         members: dict[str, TrainedModel] | None = None) -> TrainedModel:
    """:func:`train_or_load` with the details (:class:`TrainedModel`)."""
    as_of = parse_month(as_of)
    cfg = config_fingerprint(name, settings)
    member_results: dict[str, TrainedModel] = {}
    if name == "ensemble":
        members = dict(members or {})
        for member in ensemble_member_names(settings):
            member_results[member] = members.get(member) or train_or_load_result(
                member, dataset, settings, as_of, registry, data_fingerprint=data_fingerprint)
    member_prefixes = {n: r.prefix for n, r in member_results.items()}

    if not force:
        refit = int(settings.models.refit_months.get(name, 1))
        prefix = registry.find(name, as_of=as_of, refit_months=refit, config_fingerprint=cfg,
                               feature_names=dataset.feature_names, assets=dataset.assets)
        if prefix is not None:
            try:
                meta = registry.metadata(prefix)
                if name != "ensemble" or meta.get("members") == member_prefixes:
                    model = registry.load(prefix, members={n: r.model for n, r in member_results.items()})
                    log.info("reusing stored %s", prefix, extra={"fields": {"model": name}})
                    return TrainedModel(name, model, prefix, True, metadata=meta)
            except CorruptModel as exc:
                if settings.models.on_corrupt_model == "fail":
                    raise
                log.warning("%s; retraining (models.on_corrupt_model=retrain)", exc.one_line())

    # fit_model asserts that no training label lies after as_of (training_data); so does the window below.
    model, summary = fit_model(name, dataset, settings, as_of,
                               members={n: r.model for n, r in member_results.items()} or None)
    window = summary["window"]
    assert parse_month(window["last_label_month"]) <= as_of, "training label after the as-of month"
    seconds = summary["fit_seconds"]
    metrics = {"fit_seconds": round(seconds, 3), "best_params": getattr(model, "best_params_", None)}
    if isinstance(model, EnsembleForecaster):
        metrics["weights"] = model.weights_
    prefix = registry.save(model, name=name, train_end=month_str(as_of), data_fingerprint=data_fingerprint,
                           config_fingerprint=cfg, feature_names=dataset.feature_names, assets=dataset.assets,
                           metrics=metrics, training_window=window,
                           member_prefixes=member_prefixes or None)
    return TrainedModel(name, model, prefix, False, fit_seconds=seconds, metadata=registry.metadata(prefix))


def train_models(names: list[str], dataset: Dataset, settings: Settings, as_of: str | pd.Period,
                 registry: ModelRegistry, *, data_fingerprint: str, force: bool = False,
                 with_baselines: bool = True) -> dict[str, TrainedModel]:
    """Train or load each of ``names`` (plus both baselines when ``with_baselines``), members first.

    ``force`` refits the named models (not models pulled in only as ensemble members or baselines).
    """
    order = [n for n in MODEL_NAMES if n in names or (with_baselines and n in BASELINES)]
    out: dict[str, TrainedModel] = {}
    for name in order:
        out[name] = train_or_load_result(name, dataset, settings, as_of, registry, data_fingerprint=data_fingerprint,
                                         force=force and name in names, members=out if name == "ensemble" else None)
    return out


__all__ = ["CorruptModel", "ModelRegistry", "TrainedModel", "config_fingerprint", "data_fingerprint",
           "library_versions", "train_models", "train_or_load", "train_or_load_result"]
