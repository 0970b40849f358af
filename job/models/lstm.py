"""The LSTM forecaster (Keras 3 on TensorFlow), with the original notebook's architecture as a preset.

TensorFlow is imported only when a network is built or loaded, so ``import job.models`` stays fast.

Presets (:data:`PRESETS`):

- ``seed``: the original exactly. ``LSTM(1350, recurrent_dropout=0.8) -> LayerNormalization ->
  Dense 1280/512/160, each with LeakyReLU and an l1_l2(0.1) kernel regulariser -> Dense(n_assets)
  with l2(0.1)``. For a (12, 135) input and 12 assets: 10,496,264 parameters. ``l1_l2(0.1)`` is read
  with the tf.keras 2 defaults the original ran on (l1=0.1, l2=0.01); Keras 3's ``l1_l2`` would make
  l2 zero.
- ``small``: the same shape scaled down (LSTM 64, Dense 64/32/16, light regularisation, no recurrent
  dropout so the fused kernel runs); trains in seconds on the real data.

Training: Adam, mean squared error, early stopping on the time-ordered tail of the training rows
(``validation_share``) with the best weights restored. Features are standardised per feature over the
non-tail training rows and all their time steps, then clipped to +-5 standard deviations; targets are
standardised per asset the same way (the network then learns returns in units of their standard
deviation, which keeps the MSE and the regularisers on a sensible scale) and predictions are
transformed back to returns.

Determinism: ``keras.utils.set_random_seed(seed)`` before every fit, every layer's initializer seeded
from ``seed`` (:func:`build_network`), and TensorFlow op determinism for a preset trained op by op (an
XLA-compiled preset is deterministic as one program, see :func:`_set_op_determinism`), so the same
inputs give the same predictions in this process, a pool worker or a Dask worker (at the same TensorFlow
thread count).

Inference: Keras trains; forecasts come from :func:`forward`, the fitted network's inference pass in
numpy over its weights (``network_weights_``), which the registry stores beside the ``.keras`` file. A
run that only forecasts with stored LSTM fits (next month's) then never imports TensorFlow: its import
and the model load were ~6 s of a 38 s next-month run (BENCHMARKS.md 7). Hand-written for that reason;
``tests/test_lstm.py`` checks it against the Keras network.
"""

from __future__ import annotations

import gc
import io
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from job.models.base import Forecaster, array_from_json, array_to_json
from job.progress import Progress


@dataclass(frozen=True)
class LSTMPreset:
    """One architecture: LSTM width and recurrent dropout, dense head widths and regularisers."""

    units: int
    recurrent_dropout: float
    dense: tuple[int, ...]
    dense_l1: float
    dense_l2: float
    output_l2: float
    # XLA-compiled training step. With recurrent dropout the LSTM cannot use the fused kernel and runs a
    # per-step loop; XLA fuses it: a whole seed fit is 1.09x (60 rows) to 1.25x (232 rows) faster on 2
    # cores and peaks lower (bench/bench_lstm.py part 3, BENCHMARKS.md 6). The small preset's fits last a
    # few seconds in all, so there the compilation would cost more than it saves.
    jit_compile: bool = False


PRESETS: dict[str, LSTMPreset] = {
    "seed": LSTMPreset(units=1350, recurrent_dropout=0.8, dense=(1280, 512, 160), dense_l1=0.1, dense_l2=0.01,
                       output_l2=0.1, jit_compile=True),
    "small": LSTMPreset(units=64, recurrent_dropout=0.0, dense=(64, 32, 16), dense_l1=1e-4, dense_l2=1e-4,
                        output_l2=1e-4),
}
SEED_PARAMETERS = 10_496_264  # the original network's size for input (12, 135) and 12 assets


def _keras() -> Any:
    """Import Keras (and TensorFlow) on first use, quietly."""
    import os

    # TensorFlow's C++ log (oneDNN notices, tf.data attribute warnings) is noise for a user.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    # oneDNN's custom kernels reorder float sums between runs and announce it on stderr; the plain
    # kernels keep the LSTM's forecasts reproducible and the log clean.
    os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")
    import keras

    return keras


def build_network(n_steps: int, n_features: int, n_assets: int, preset: str = "small", *,
                  learning_rate: float = 1e-3, seed: int = 42, compile: bool = True) -> Any:
    """The Keras model of ``preset`` for windows ``(n_steps, n_features)``, ``n_assets`` outputs.

    Compiled with Adam and MSE unless ``compile=False`` (the registry stores uncompiled copies: the
    optimizer state would triple a stored seed network's size).

    Raises ValueError for an unknown preset.
    """
    if preset not in PRESETS:
        raise ValueError(f"unknown LSTM preset {preset!r}; choose one of {sorted(PRESETS)}")
    spec = PRESETS[preset]
    keras = _keras()
    layers, regularizers, init = keras.layers, keras.regularizers, keras.initializers
    # Every initializer gets its own seed from ``seed``. Keras' default (seed None) draws one from Python's
    # process-wide ``random`` when the layer is built, which another thread can consume first: on a Dask
    # worker (tornado and the worker's own threads) that gave another initialisation than this process's.
    inputs = keras.Input(shape=(n_steps, n_features), name="window")
    x = layers.LSTM(spec.units, recurrent_dropout=spec.recurrent_dropout, seed=seed, name="lstm",
                    kernel_initializer=init.GlorotUniform(seed=seed + 1),
                    recurrent_initializer=init.Orthogonal(seed=seed + 2))(inputs)
    x = layers.LayerNormalization(name="norm")(x)
    for i, width in enumerate(spec.dense):
        x = layers.Dense(width, kernel_regularizer=regularizers.L1L2(l1=spec.dense_l1, l2=spec.dense_l2),
                         kernel_initializer=init.GlorotUniform(seed=seed + 3 + i), name=f"dense_{i}")(x)
        x = layers.LeakyReLU(name=f"leaky_{i}")(x)
    outputs = layers.Dense(n_assets, kernel_regularizer=regularizers.L2(spec.output_l2),
                           kernel_initializer=init.GlorotUniform(seed=seed + 3 + len(spec.dense)), name="returns")(x)
    model = keras.Model(inputs, outputs, name=f"lstm_{preset}")
    if compile:
        model.compile(optimizer=keras.optimizers.Adam(learning_rate=learning_rate), loss="mse",
                      jit_compile=spec.jit_compile)
    return model


def _set_op_determinism(tf: Any, enabled: bool) -> None:
    """TensorFlow's op determinism on (a preset trained op by op) or off (an XLA-compiled preset).

    Keras refuses ``jit_compile=True`` while op determinism is on (``model_supports_jit``: "not all ops
    are supported by XLA with determinism enabled"), so the seed preset silently trained op by op at
    ~5.6 s per epoch instead of ~3.8 s (185 rows, 2 cores). Off is safe for XLA on CPU: the whole train
    step is one compiled program and its random ops are Keras' seeded stateless ones; measured, two fits
    in two processes give the same weights bit for bit, as op by op does (both only at the same
    TensorFlow thread count). ``tests/test_lstm.py`` checks it. The flag is process-wide, so every fit
    sets it. ``disable_op_determinism`` has no public alias in TensorFlow 2.21.
    """
    if enabled:
        tf.config.experimental.enable_op_determinism()
    else:
        from tensorflow.python.framework import config as tf_config

        tf_config.disable_op_determinism()


# Keras' defaults in build_network's layers, which forward() computes (tests compare with the network).
LAYER_NORM_EPSILON = 1e-3
LEAKY_SLOPE = 0.3


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 0.5 * (np.tanh(0.5 * x) + 1.0)


def forward(weights: list[np.ndarray], Xs: np.ndarray) -> np.ndarray:
    """The network of :func:`build_network` at inference (no dropout) in float64 numpy.

    ``weights`` in Keras' ``get_weights()`` order: the LSTM's kernel ``(n_features, 4u)``, recurrent
    kernel ``(u, 4u)`` and bias (gates i, f, c, o), the layer norm's gamma and beta, then each dense
    layer's kernel and bias, the output layer last. ``Xs``: scaled windows ``(n, n_steps, n_features)``;
    returns ``(n, n_assets)`` in the scaled target units.
    """
    w = [np.asarray(a, dtype=np.float64) for a in weights]
    kernel, recurrent, bias, gamma, beta, head = w[0], w[1], w[2], w[3], w[4], w[5:]
    units = recurrent.shape[0]
    x = np.asarray(Xs, dtype=np.float64)
    h = np.zeros((len(x), units))
    c = np.zeros((len(x), units))
    inputs = x @ kernel + bias  # (n, n_steps, 4u): the input projection of every step at once
    for t in range(x.shape[1]):
        z = inputs[:, t] + h @ recurrent
        i, f = _sigmoid(z[:, :units]), _sigmoid(z[:, units:2 * units])
        g, o = np.tanh(z[:, 2 * units:3 * units]), _sigmoid(z[:, 3 * units:])
        c = f * c + i * g
        h = o * np.tanh(c)
    mean = h.mean(axis=1, keepdims=True)
    var = ((h - mean) ** 2).mean(axis=1, keepdims=True)
    y = (h - mean) / np.sqrt(var + LAYER_NORM_EPSILON) * gamma + beta
    for k in range(0, len(head) - 2, 2):
        y = y @ head[k] + head[k + 1]
        y = np.where(y >= 0, y, LEAKY_SLOPE * y)
    return y @ head[-2] + head[-1]


def _progress_callback(keras: Any, total: int, **fields: Any) -> Any:
    """A Keras callback reporting each epoch through :class:`job.progress.Progress`."""

    class EpochProgress(keras.callbacks.Callback):
        def __init__(self) -> None:
            super().__init__()
            self.bar = Progress("lstm epochs", total, **fields)

        def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
            logs = logs or {}
            self.bar.update(**{k: round(float(v), 5) for k, v in logs.items() if k in ("loss", "val_loss")})

        def on_train_end(self, logs: dict | None = None) -> None:
            self.bar.close()

    return EpochProgress()


class LSTMForecaster(Forecaster):
    """An LSTM over the feature window predicting next month's return of every asset.

    Parameters
    ----------
    preset : {"small", "seed"}
        Architecture (see :data:`PRESETS`).
    epochs : int
        Maximum epochs of a fit from scratch.
    patience : int
        Early-stopping patience (epochs without a better validation loss).
    batch_size : int
    validation_share : float
        Share of the training rows, the most recent ones, held out for early stopping and for
        ``validation_mae_``. At least one row is held out.
    learning_rate : float
    seed : int
    warm_start_epochs : int
        Maximum epochs of a fit that starts from a previous fit's weights (``fit(warm_start_from=...)``).
    clip : float or None
        Standardised features are clipped to ``[-clip, clip]`` (None: not clipped), as for ridge.

    .. warning::
       ``validation_mae_`` is measured on the same tail rows that chose the stopping epoch, so it is
       slightly optimistic; the walk-forward backtest gives the honest out-of-sample error.

    Attributes
    ----------
    network_ : keras.Model or None
        The trained network (None when loaded from the registry: forecasts need only ``network_weights_``).
    network_weights_ : list of numpy arrays
        The trained network's weights (Keras ``get_weights()`` order), what :func:`forward` reads.
    best_epoch_ : int
        Epochs until the restored best weights (1-based).
    history_ : dict[str, list[float]]
        Training and validation loss per epoch.
    """

    def __init__(self, preset: str = "small", epochs: int = 200, patience: int = 20, batch_size: int = 32,
                 validation_share: float = 0.2, learning_rate: float = 1e-3, seed: int = 42,
                 warm_start_epochs: int = 50, clip: float | None = 5.0) -> None:
        self.preset = preset
        self.epochs = epochs
        self.patience = patience
        self.batch_size = batch_size
        self.validation_share = validation_share
        self.learning_rate = learning_rate
        self.seed = seed
        self.warm_start_epochs = warm_start_epochs
        self.clip = clip

    def fit(self, X: np.ndarray, y: np.ndarray, warm_start_from: LSTMForecaster | None = None) -> LSTMForecaster:
        """Fit on ``(X, y)``, early-stopping on the most recent ``validation_share`` of the rows.

        With ``warm_start_from`` (a fitted LSTMForecaster of the same preset and shapes), training starts
        from its weights and runs at most ``warm_start_epochs`` epochs; scalers are refitted on the new
        rows. Raises ValueError when the warm start does not match.
        """
        X, y = self._validate_fit(X, y)
        if not 0 < self.validation_share < 1:
            raise ValueError("validation_share must be in (0, 1)")
        keras = _keras()
        import tensorflow as tf

        keras.utils.set_random_seed(self.seed)
        _set_op_determinism(tf, not PRESETS[self.preset].jit_compile)
        n = len(X)
        n_val = min(n - 2, max(1, round(n * self.validation_share)))
        n_fit = n - n_val
        self.x_mean_ = X[:n_fit].reshape(-1, self.n_features_in_).mean(axis=0)
        self.x_scale_ = _safe_scale(X[:n_fit].reshape(-1, self.n_features_in_).std(axis=0))
        self.y_mean_ = y[:n_fit].mean(axis=0)
        self.y_scale_ = _safe_scale(y[:n_fit].std(axis=0))
        Xs, ys = self._scale_x(X), ((y - self.y_mean_) / self.y_scale_).astype(np.float32)

        if getattr(self, "network_", None) is not None:  # a refit replaces the old network: free it
            del self.network_
            gc.collect()
        self.network_ = build_network(self.n_steps_, self.n_features_in_, self.n_assets_, self.preset,
                                      learning_rate=self.learning_rate, seed=self.seed)
        epochs = self.epochs
        if warm_start_from is not None:
            self._check_warm_start(warm_start_from)
            self.network_.set_weights(warm_start_from.network_weights_)
            epochs = self.warm_start_epochs
        stop = keras.callbacks.EarlyStopping(monitor="val_loss", patience=self.patience, restore_best_weights=True)
        history = self.network_.fit(
            Xs[:n_fit], ys[:n_fit], validation_data=(Xs[n_fit:], ys[n_fit:]), epochs=epochs,
            batch_size=self.batch_size, shuffle=True, verbose=0,
            callbacks=[stop, _progress_callback(keras, epochs, preset=self.preset, rows=n_fit)])
        self.history_ = {k: [float(v) for v in vals] for k, vals in history.history.items()}
        losses = self.history_.get("val_loss", [])
        self.best_epoch_ = int(np.argmin(losses)) + 1 if losses else epochs
        self.warm_started_ = warm_start_from is not None
        self.network_weights_ = [np.asarray(w) for w in self.network_.get_weights()]
        self.validation_predictions_ = np.full(y.shape, np.nan)
        self.validation_predictions_[n_fit:] = self._predict_scaled(Xs[n_fit:])
        self.validation_mae_ = np.mean(np.abs(y[n_fit:] - self.validation_predictions_[n_fit:]), axis=0)
        return self

    def _check_warm_start(self, other: LSTMForecaster) -> None:
        ok = (isinstance(other, LSTMForecaster) and getattr(other, "network_weights_", None) is not None
              and other.preset == self.preset
              and (other.n_steps_, other.n_features_in_, other.n_assets_)
              == (self.n_steps_, self.n_features_in_, self.n_assets_))
        if not ok:
            raise ValueError("warm_start_from must be a fitted LSTMForecaster with the same preset and shapes")

    def _scale_x(self, X: np.ndarray) -> np.ndarray:
        scaled = (X - self.x_mean_) / self.x_scale_
        if self.clip is not None:
            scaled = np.clip(scaled, -self.clip, self.clip)
        return scaled.astype(np.float32)

    def _predict_scaled(self, Xs: np.ndarray) -> np.ndarray:
        out = forward(self.network_weights_, Xs) if len(Xs) else np.empty((0, self.n_assets_))
        return out * self.y_scale_ + self.y_mean_

    def predict(self, X: np.ndarray) -> np.ndarray:
        """Next month's return per asset, shape ``(n, n_assets)``."""
        X = self._validate_predict(X)
        return self._predict_scaled(self._scale_x(X))

    def portable_network(self) -> Any:
        """An uncompiled copy of the fitted network (same weights, no optimizer state) for saving."""
        copy = build_network(self.n_steps_, self.n_features_in_, self.n_assets_, self.preset,
                             learning_rate=self.learning_rate, seed=self.seed, compile=False)
        copy.set_weights(self.network_weights_)
        return copy

    @property
    def n_parameters(self) -> int:
        """Trainable and non-trainable weights of the fitted network."""
        return int(sum(np.asarray(w).size for w in self.network_weights_))

    # -- persistence helpers for the registry (Keras weights go to a .keras file, the rest to JSON) ----

    STATE_ARRAYS = ("x_mean_", "x_scale_", "y_mean_", "y_scale_", "validation_mae_", "validation_predictions_")
    STATE_SCALARS = ("n_steps_", "n_features_in_", "n_assets_", "best_epoch_", "warm_started_", "history_")

    def state(self) -> dict[str, Any]:
        """Everything but the network, as JSON-ready data (NaN written as null)."""
        out: dict[str, Any] = {"params": self.get_params(), "preset_spec": asdict(PRESETS[self.preset])}
        for name in self.STATE_ARRAYS:
            out[name] = array_to_json(getattr(self, name))
        for name in self.STATE_SCALARS:
            out[name] = getattr(self, name)
        return out

    def weights_file(self) -> bytes:
        """``network_weights_`` as an ``.npz`` file (arrays ``w0``, ``w1``, ... in order; no pickled objects)."""
        buffer = io.BytesIO()
        np.savez(buffer, **{f"w{i}": np.asarray(w) for i, w in enumerate(self.network_weights_)})
        return buffer.getvalue()

    @staticmethod
    def weights_from_file(data: bytes) -> list[np.ndarray]:
        with np.load(io.BytesIO(data), allow_pickle=False) as npz:
            return [npz[f"w{i}"] for i in range(len(npz.files))]

    @classmethod
    def from_state(cls, state: dict[str, Any], weights: list[np.ndarray], network: Any = None) -> LSTMForecaster:
        """Rebuild a fitted forecaster from :meth:`state` and its weights (and its network, if loaded)."""
        model = cls(**state["params"])
        for name in cls.STATE_ARRAYS:
            setattr(model, name, array_from_json(state[name]))
        for name in cls.STATE_SCALARS:
            setattr(model, name, state[name])
        model.network_weights_ = [np.asarray(w) for w in weights]
        model.network_ = network
        return model


def _safe_scale(scale: np.ndarray) -> np.ndarray:
    """Standard deviations with zeros (constant columns) replaced by one."""
    return np.where(scale > 0, scale, 1.0)
