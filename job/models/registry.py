"""The model registry: fitted models in the artifact store, in safe formats, addressed by their identity.

Layout (the same in a local folder and under ``s3://bucket/prefix``)::

    models/<name>/train_end=YYYY-MM/<fit_id>/
        model.skops        scikit-learn forecasters (persistence, historical-mean, ridge, tree)
        network.keras      the LSTM's Keras network (weights, no optimizer state)
        weights.npz        the same weights as numpy arrays: what forecasts read (no TensorFlow needed)
        state.json         the LSTM's scalers and fitted attributes
        ensemble.json      the ensemble's weights and the prefixes of its stored members
        metadata.json      written last: identity, parameters, training window, fingerprints, feature
                           names, assets, validation metrics, library versions, sha256 and size of each file
        forecasts/<digest>.json   forecasts this fit made: per decision month, the fingerprint of the
                           feature window it read and one predicted return per asset (exact floats)

``train_end`` is the fit month: the last label month the fit may see. ``<fit_id>`` is the fit's identity
(:func:`fit_identity`): the model, its configuration fingerprint, the fingerprint of its exact training
rows (:class:`RowDigests`), the library versions, and how its hyperparameters were chosen (searched, or
carried from an earlier searched fit) or, for the ensemble, its members' identities. The same identity
is the same fit, wherever and whenever it was computed: a walk-forward fold, the live fit of the as-of
month, a Dask worker's task. A data revision changes the identity of exactly the fits whose training rows
it touches. Nothing read from storage is unpickled: skops loads with an explicit list of trusted types
and Keras loads with ``safe_mode=True``. A file whose checksum does not match its metadata raises
:class:`CorruptModel`; the caller then refits or fails per ``models.on_corrupt_model``.
"""

from __future__ import annotations

import functools
import hashlib
import json
import platform
import tempfile
from datetime import UTC, datetime
from importlib import metadata as importlib_metadata
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from job.config import Settings
from job.dataset import Dataset
from job.errors import ConfigError, ExitCode, RotationError
from job.jsonio import json_bytes
from job.logs import get_logger
from job.models.base import Forecaster, array_from_json, array_to_json
from job.models.ensemble import EnsembleForecaster
from job.models.factory import MODEL_NAMES, ensemble_member_names
from job.models.lstm import PRESETS, LSTMForecaster
from job.months import month_str, parse_month
from job.store.base import ArtifactNotFound, Store

log = get_logger("registry")

ROOT = "models"
METADATA = "metadata.json"
SKOPS_FILE = "model.skops"
KERAS_FILE = "network.keras"
WEIGHTS_FILE = "weights.npz"
STATE_FILE = "state.json"
ENSEMBLE_FILE = "ensemble.json"
FORECASTS_DIR = "forecasts"
# Bump when a stored layout or a model's code changes what a fit learns: every identity changes, so old
# fits stop matching and are refitted (the package version is part of the identity too).
FORMAT_VERSION = 3

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
# The libraries whose versions are part of a fit's identity (what the numbers depend on; skops and pandas
# only carry them). Keras and TensorFlow only for the LSTM, so a TensorFlow upgrade keeps ridge's fits.
IDENTITY_LIBRARIES = ("python", "numpy", "scikit-learn", "sector-rotation")
KERAS_LIBRARIES = ("keras", "tensorflow", "tensorflow-cpu")


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
        # "inference": forecasts come from job.models.lstm.forward (numpy), not from Keras: a fit stored
        # before then forecast with different last bits, so it is another fit; "initializers": every
        # layer's initializer is seeded from the model's seed (job.models.lstm.build_network)
        relevant["lstm"] = {"preset": m.lstm_preset, "epochs": m.lstm_epochs, "patience": m.lstm_patience,
                            "batch_size": m.lstm_batch_size, "validation_share": m.lstm_validation_share,
                            "inference": "numpy", "initializers": "seeded"}
        if PRESETS[m.lstm_preset].jit_compile:
            # trained as one XLA program, not op by op under op determinism (job.models.lstm.
            # _set_op_determinism): other last bits than a fit stored before, so another fit
            relevant["lstm"]["training"] = "xla"
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


class RowDigests:
    """Per-month digests of a dataset's feature rows and labels, for fingerprinting training rows cheaply.

    A fold's training set ``X`` (windows of ``lookback`` feature rows) and ``y`` (labels) are a function of
    the feature rows from ``lookback - 1`` months before its first row to its last row, and the labels of
    its rows: hashing those rows (with the months, feature names, assets and lookback) fingerprints the
    exact ``X`` and ``y`` bytes without building them (building and hashing 173 folds' ``X`` would cost
    about 0.4 GB of hashing per model on the real data).
    """

    def __init__(self, dataset: Dataset, lookback: int, *, masked: tuple[str, ...] = ()) -> None:
        """``masked``: digests of ``dataset.view(masked)`` (what a fit that does not use those features
        reads), with them named in the header so that a view's fingerprints never equal the full dataset's."""
        dataset = dataset.view(masked)
        self.lookback = int(lookback)
        self.months = dataset.months
        features = np.ascontiguousarray(dataset.features.to_numpy(dtype=np.float64))
        labels = np.ascontiguousarray(dataset.labels().to_numpy(dtype=np.float64))
        self._features = [hashlib.sha256(row.tobytes()).digest() for row in features]
        self._labels = [hashlib.sha256(row.tobytes()).digest() for row in labels]
        self._labelled = ~np.isnan(labels).any(axis=1)
        self._month_text = [month_str(m) for m in self.months]
        header: dict[str, Any] = {"features": dataset.feature_names, "assets": dataset.assets,
                                  "lookback": self.lookback}
        if masked:  # absent otherwise: a fit that masks nothing keeps the identity it had before masks existed
            header["masked"] = list(masked)
        self._header = json.dumps(header).encode()

    def training_positions(self, as_of: pd.Period) -> np.ndarray:
        """Row positions of :meth:`Dataset.training_set` ``(lookback, as_of)``: label month <= ``as_of``."""
        pos = np.arange(self.lookback - 1, len(self.months))
        last = self.months.get_indexer(pd.PeriodIndex([as_of - 1]))[0]
        if last < 0:  # as_of - 1 is outside the data: every row, or none
            last = len(self.months) - 1 if len(self.months) and as_of - 1 > self.months[-1] else -1
        pos = pos[pos <= last]
        return pos[self._labelled[pos]]

    def rows(self, as_of: pd.Period) -> tuple[str, pd.PeriodIndex]:
        """``(fingerprint, row months)`` of the training rows with label month <= ``as_of``."""
        pos = self.training_positions(as_of)
        h = hashlib.sha256(self._header)
        if len(pos):
            for i in range(max(0, int(pos[0]) - self.lookback + 1), int(pos[-1]) + 1):
                h.update(self._month_text[i].encode() + self._features[i])
            for i in pos:
                h.update(b"y" + self._month_text[i].encode() + self._labels[i])
        return h.hexdigest()[:16], self.months[pos]

    def window(self, month: pd.Period) -> str:
        """Fingerprint of the feature window ending at ``month`` (what a forecast for it reads)."""
        i = int(self.months.get_indexer(pd.PeriodIndex([month]))[0])
        if i < self.lookback - 1:
            raise ValueError(f"no full {self.lookback}-month feature window for {month_str(month)}")
        h = hashlib.sha256(self._header)
        for j in range(i - self.lookback + 1, i + 1):
            h.update(self._month_text[j].encode() + self._features[j])
        return h.hexdigest()[:16]


def fit_identity(*, name: str, config: str, rows: str, libraries: dict[str, str], search: bool | None = None,
                 carried_from: str | None = None, members: dict[str, str] | None = None) -> tuple[str, dict[str, Any]]:
    """``(fit_id, identity)``: the 16-hex-digit identity of one fit, and what it hashes.

    ``search``: the fit searched its hyperparameters (None: the model has none to search);
    ``carried_from``: the fit_id of the searched fit whose choice this refit carries; ``members``: an
    ensemble's members' fit_ids.
    """
    identity: dict[str, Any] = {"format": FORMAT_VERSION, "model": name, "config": config, "rows": rows,
                                "libraries": dict(sorted(libraries.items()))}
    if search is not None:
        identity["search"] = bool(search)
    if carried_from is not None:
        identity["carried_from"] = carried_from
    if members:
        identity["members"] = dict(sorted(members.items()))
    return _sha256(json.dumps(identity, sort_keys=True).encode())[:16], identity


def identity_libraries(name: str) -> dict[str, str]:
    """The library versions that are part of model ``name``'s fit identity."""
    versions = library_versions()
    wanted = IDENTITY_LIBRARIES + (KERAS_LIBRARIES if name == "lstm" else ())
    return {k: v for k, v in versions.items() if k in wanted}


def library_versions() -> dict[str, str]:
    """Installed versions of the libraries a stored model depends on."""
    return dict(_library_versions())


@functools.cache
def _library_versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for name in LIBRARIES:
        try:
            out[name] = importlib_metadata.version(name)
        except importlib_metadata.PackageNotFoundError:
            continue
    return out


class ModelRegistry:
    """Fitted models in a :class:`job.store.base.Store` under ``models/``."""

    def __init__(self, store: Store) -> None:
        self.store = store

    # -- writing -------------------------------------------------------------------------------------

    def save(self, model: Forecaster, *, name: str, train_end: str, data_fingerprint: str,
             config_fingerprint: str, feature_names: list[str], assets: list[str], metrics: dict[str, Any],
             training_window: dict[str, Any] | None = None, member_prefixes: dict[str, str] | None = None,
             fit_id: str | None = None, identity: dict[str, Any] | None = None) -> str:
        """Store fitted ``model``; return its prefix ``models/<name>/train_end=YYYY-MM/<fit_id>``.

        ``fit_id``/``identity`` come from :func:`fit_identity`; without them the folder is named by a hash
        of the configuration, ``data_fingerprint`` and ``train_end`` (a model stored outside the
        walk-forward's identities, e.g. by a test). An ensemble stores references to its members, which
        must be stored already: ``member_prefixes`` maps each member name to its prefix.
        """
        train_end = month_str(parse_month(train_end))
        if fit_id is None:
            fit_id = _sha256(f"{config_fingerprint}|{data_fingerprint}|{train_end}".encode())[:16]
        prefix = fit_prefix(name, train_end, fit_id)
        meta = {**model_summary(model, assets), "name": name, "train_end": train_end,
                "training_window": training_window or {}, "data_fingerprint": data_fingerprint,
                "config_fingerprint": config_fingerprint, "fingerprint": fit_id, "fit_id": fit_id,
                "identity": identity or {}, "rows_fingerprint": (identity or {}).get("rows"),
                "feature_names": list(feature_names), "assets": list(assets), "metrics": metrics,
                "members": member_prefixes or {}}
        self.save_serialised(prefix, serialise_model(model, member_prefixes), meta)
        return prefix

    def save_serialised(self, prefix: str, files: dict[str, bytes], meta: dict[str, Any]) -> None:
        """Write a fit's ``files`` (from :func:`serialise_model`), then ``metadata.json``: ``meta`` plus
        each file's sha256 and size, the library versions and the time. Metadata last: a prefix without
        it is never found."""
        for filename, data in files.items():
            self.store.put_bytes(f"{prefix}/{filename}", data)
        meta = {**meta, "format_version": FORMAT_VERSION,
                "files": {fn: {"sha256": _sha256(data), "bytes": len(data)} for fn, data in files.items()},
                "library_versions": library_versions(),
                "created_at": datetime.now(UTC).isoformat(timespec="seconds")}
        self.store.put_bytes(f"{prefix}/{METADATA}", json_bytes(meta, strict=True), "application/json")
        log.info("saved %s", prefix, extra={"fields": {"model": meta.get("name"), "train_end": meta.get("train_end")}})

    # -- forecasts made by a fit -----------------------------------------------------------------------

    def save_forecasts(self, prefix: str, assets: list[str], rows: list[tuple[str, str, np.ndarray]], *,
                       fit_seconds: float | None = None) -> str:
        """Store forecasts that fit ``prefix`` made: ``rows`` of (decision month, window fingerprint,
        predicted returns). One small JSON file per call, named by its content (floats written exactly,
        as Python's repr writes them); a repeated call rewrites the same file. Returns its key."""
        body = [{"decision_month": m, "window": w, "predicted": [float(v) for v in p]} for m, w, p in rows]
        key = f"{prefix}/{FORECASTS_DIR}/{_sha256(json.dumps(body, sort_keys=True).encode())[:16]}.json"
        doc = {"assets": list(assets), "fit_seconds": fit_seconds, "rows": body}
        self.store.put_bytes(key, json.dumps(doc, sort_keys=True).encode(), "application/json")
        return key

    def forecasts(self, keys: list[str], assets: list[str]) -> tuple[dict[tuple[str, str], np.ndarray],
                                                                     float | None]:
        """The forecasts stored in ``keys`` (one fit's forecast files) for ``assets``:
        ``({(decision month, window fingerprint): predicted}, fit seconds)``. Unreadable or differently
        shaped files are skipped with a warning (their months are then forecast again)."""
        out: dict[tuple[str, str], np.ndarray] = {}
        seconds = None
        for key in keys:
            try:
                doc = json.loads(self.store.get_bytes(key))
                if doc["assets"] != list(assets):
                    continue
                for row in doc["rows"]:
                    out[(row["decision_month"], row["window"])] = np.asarray(row["predicted"], dtype=np.float64)
                seconds = doc.get("fit_seconds", seconds)
            except (ArtifactNotFound, ValueError, KeyError, TypeError) as exc:
                log.warning("skipping stored forecasts %s: %s", key, type(exc).__name__)
        return out, seconds

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

    def verify(self, prefix: str) -> dict[str, Any]:
        """Check every file of the fit at ``prefix`` (size and sha256) without loading it; its metadata.

        Raises CorruptModel as :meth:`load` does for a missing, truncated or modified file."""
        prefix = prefix.rstrip("/")
        meta = self.metadata(prefix)
        self._verified_files(prefix, meta)
        return meta

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
        state = json.loads(files[STATE_FILE])
        if WEIGHTS_FILE in files:  # forecasts need only the weights: no TensorFlow import
            return LSTMForecaster.from_state(state, LSTMForecaster.weights_from_file(files[WEIGHTS_FILE]))
        from job.models.lstm import _keras

        keras = _keras()
        with tempfile.TemporaryDirectory(prefix="rotation-keras-") as tmp:
            path = Path(tmp) / KERAS_FILE
            path.write_bytes(files[KERAS_FILE])
            network = keras.saving.load_model(path, compile=False, safe_mode=True)
        # stored before weights.npz existed (readable by prefix; runs plan other identities since then)
        return LSTMForecaster.from_state(state, network.get_weights(), network)

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
             dataset: Dataset, lookback: int) -> str | None:
        """The newest stored fit of ``name`` that ``dataset`` still vouches for, or None.

        Compatible: same config fingerprint, feature names and assets as ``dataset``; ``train_end <= as_of``
        with ``as_of - train_end < refit_months`` (refit 1: only this month's); and the fingerprint of its
        training rows equal to that of ``dataset``'s rows up to its ``train_end``
        (:class:`RowDigests`): a fit made before a data revision that touched its rows is not returned.
        Unreadable metadata is skipped with a warning (load() reports it when asked directly).
        """
        as_of = parse_month(as_of)
        digests: dict[tuple[str, ...], RowDigests] = {}  # per feature mask (Dataset.masked_at the train_end)
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

        def rows_at(train_end: pd.Period) -> str:
            masked = dataset.masked_at(train_end)
            if masked not in digests:
                digests[masked] = RowDigests(dataset, lookback, masked=masked)
            return digests[masked].rows(train_end)[0]

        best: tuple[tuple[str, str], str] | None = None
        for train_end, prefix in sorted(candidates, reverse=True):
            try:
                meta = self.metadata(prefix)
            except CorruptModel as exc:
                log.warning("skipping stored model: %s", exc.one_line())
                continue
            if (meta.get("config_fingerprint") != config_fingerprint
                    or meta.get("feature_names") != dataset.feature_names
                    or meta.get("assets") != dataset.assets
                    or meta.get("rows_fingerprint") != rows_at(train_end)):
                continue
            key = (month_str(train_end), str(meta.get("created_at", "")))
            if best is None or key > best[0]:
                best = (key, prefix)
        return best[1] if best is not None else None


def fit_prefix(name: str, train_end: str, fit_id: str) -> str:
    """Where fit ``fit_id`` of model ``name`` with fit month ``train_end`` (YYYY-MM) is stored."""
    return f"{ROOT}/{name}/train_end={train_end}/{fit_id}"


def serialise_model(model: Forecaster, member_prefixes: dict[str, str] | None = None) -> dict[str, bytes]:
    """A fitted model as files in safe formats: skops for scikit-learn, .keras and JSON for the LSTM, JSON
    references to stored members for the ensemble (``member_prefixes`` must name every member)."""
    if isinstance(model, LSTMForecaster):
        with tempfile.TemporaryDirectory(prefix="rotation-keras-") as tmp:
            path = Path(tmp) / KERAS_FILE
            model.portable_network().save(path)
            network = path.read_bytes()
        return {KERAS_FILE: network, WEIGHTS_FILE: model.weights_file(),
                STATE_FILE: json_bytes(model.state(), strict=True)}
    if isinstance(model, EnsembleForecaster):
        missing = sorted(set(model.members_) - set(member_prefixes or {}))
        if missing:
            raise ValueError(f"save the ensemble's members first; no stored prefix for {missing}")
        state = {"weighting": model.weighting, "weights": model.weights_,
                 "members": {n: (member_prefixes or {})[n] for n in model.members_},
                 "n_steps": model.n_steps_, "n_features": model.n_features_in_, "n_assets": model.n_assets_,
                 "validation_mae": array_to_json(model.validation_mae_),
                 "validation_predictions": array_to_json(model.validation_predictions_)}
        return {ENSEMBLE_FILE: json_bytes(state, strict=True)}
    import skops.io

    return {SKOPS_FILE: skops.io.dumps(model)}


def model_summary(model: Forecaster, assets: list[str]) -> dict[str, Any]:
    """What a fit's metadata says about the fitted model: class, parameters, chosen hyperparameters,
    validation error per asset (JSON-ready; computed where the model was fitted, e.g. a Dask worker)."""
    mae = np.asarray(model.validation_mae_, dtype=np.float64)
    mean = float(np.mean(mae))
    return {"class": type(model).__name__, "params": _plain_params(model),
            "best_params": getattr(model, "best_params_", None),
            "validation_mae": dict(zip(assets, (float(v) if np.isfinite(v) else None for v in mae), strict=True)),
            "validation_mae_mean": mean if np.isfinite(mean) else None}


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


def training_window(months: pd.PeriodIndex) -> dict[str, Any]:
    """The decision and label months a model was fitted on (for its metadata)."""
    return {"first_decision_month": month_str(months[0]), "last_decision_month": month_str(months[-1]),
            "first_label_month": month_str(months[0] + 1), "last_label_month": month_str(months[-1] + 1),
            "rows": len(months)}


__all__ = ["CorruptModel", "ModelRegistry", "RowDigests", "config_fingerprint", "data_fingerprint", "fit_identity",
           "fit_prefix", "identity_libraries", "library_versions", "model_summary", "serialise_model",
           "training_window"]
