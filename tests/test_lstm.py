"""The LSTM forecaster: the original architecture's size, a small preset that trains in seconds."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from job.dataset import Dataset
from job.models import SEED_PARAMETERS, LSTMForecaster, build_network
from job.models.lstm import forward

N_TRAIN = 120


@pytest.fixture(scope="module")
def data(synthetic: Dataset) -> tuple[np.ndarray, np.ndarray, pd.PeriodIndex]:
    return synthetic.training_set(12, synthetic.months[-1])


@pytest.fixture(scope="module")
def fitted_pair(data) -> tuple[LSTMForecaster, LSTMForecaster]:
    X, y, _ = data
    first = LSTMForecaster(preset="small", epochs=30, patience=5, seed=3).fit(X[:N_TRAIN], y[:N_TRAIN])
    second = LSTMForecaster(preset="small", epochs=30, patience=5, seed=3).fit(X[:N_TRAIN], y[:N_TRAIN])
    return first, second


def test_seed_preset_is_the_original_network() -> None:
    """Input (12, 135), 12 assets: exactly 10,496,264 parameters, as in the original notebook (build only)."""
    network = build_network(12, 135, 12, "seed", compile=False)
    assert network.count_params() == SEED_PARAMETERS == 10_496_264
    lstm = network.get_layer("lstm")
    assert lstm.units == 1350 and lstm.recurrent_dropout == pytest.approx(0.8)
    assert [network.get_layer(f"dense_{i}").units for i in range(3)] == [1280, 512, 160]
    assert network.get_layer("dense_0").kernel_regularizer.l1 == pytest.approx(0.1)
    assert network.get_layer("returns").kernel_regularizer.l2 == pytest.approx(0.1)


def test_small_preset_trains_and_predicts_finite_returns(fitted_pair, data) -> None:
    X, y, _ = data
    model = fitted_pair[0]
    pred = model.predict(X[N_TRAIN:])
    assert pred.shape == (len(X) - N_TRAIN, y.shape[1])
    assert np.isfinite(pred).all()
    assert model.validation_mae_.shape == (y.shape[1],) and np.isfinite(model.validation_mae_).all()
    assert 1 <= model.best_epoch_ <= len(model.history_["loss"]) <= 30
    # the validation tail is the most recent 20 % of the training rows, predicted out of sample
    tail = np.isfinite(model.validation_predictions_).all(axis=1)
    assert tail.sum() == round(N_TRAIN * 0.2) and tail[-1] and not tail[0]


def test_same_inputs_give_the_same_predictions(fitted_pair, data) -> None:
    """Seeds and TensorFlow op determinism: two fits agree within 1e-6."""
    X, _, _ = data
    first, second = fitted_pair
    np.testing.assert_allclose(first.predict(X), second.predict(X), rtol=0, atol=1e-6)


def test_forecasts_are_the_keras_networks_inference_pass(fitted_pair, data) -> None:
    """predict() runs forward() (numpy) over the trained weights: the Keras network's own inference
    agrees to float32 precision (Keras computes in float32, forward() in float64)."""
    X, _, _ = data
    model = fitted_pair[0]
    Xs = model._scale_x(X)
    keras_out = np.asarray(model.network_(Xs, training=False), dtype=np.float64)
    np.testing.assert_allclose(forward(model.network_weights_, Xs), keras_out, rtol=0, atol=1e-5)
    expected = forward(model.network_weights_, Xs) * model.y_scale_ + model.y_mean_
    np.testing.assert_array_equal(model.predict(X), expected)


@pytest.mark.slow
def test_forward_matches_the_seed_network_at_inference() -> None:
    """The seed preset's recurrent dropout and regularisers do not act at inference; with random weights
    of every layer (biases, layer norm included) forward() still agrees with Keras."""
    network = build_network(12, 7, 3, "seed", compile=False)
    rng = np.random.default_rng(0)
    weights = [rng.normal(0, 0.05, w.shape).astype(np.float32) for w in network.get_weights()]
    network.set_weights(weights)
    Xs = rng.normal(size=(5, 12, 7)).astype(np.float32)
    keras_out = np.asarray(network(Xs, training=False), dtype=np.float64)
    np.testing.assert_allclose(forward(weights, Xs), keras_out, rtol=0, atol=1e-5)


def test_features_are_standardised_on_training_rows_only(fitted_pair, data) -> None:
    X, y, _ = data
    model = fitted_pair[0]
    n_fit = N_TRAIN - round(N_TRAIN * 0.2)
    np.testing.assert_allclose(model.x_mean_, X[:n_fit].reshape(-1, X.shape[2]).mean(axis=0))
    np.testing.assert_allclose(model.y_mean_, y[:n_fit].mean(axis=0))


@pytest.mark.slow
def test_warm_start_continues_from_previous_weights(fitted_pair, data) -> None:
    """A warm-started refit on more rows starts from the old weights and runs at most warm_start_epochs."""
    X, y, _ = data
    previous = fitted_pair[0]
    model = LSTMForecaster(preset="small", epochs=30, patience=3, seed=3, warm_start_epochs=4)
    model.fit(X[:N_TRAIN + 12], y[:N_TRAIN + 12], warm_start_from=previous)
    assert model.warm_started_ and len(model.history_["loss"]) <= 4
    assert np.isfinite(model.predict(X[-5:])).all()
    with pytest.raises(ValueError, match="warm_start_from"):
        LSTMForecaster(preset="small", epochs=1).fit(X[:, :, :5], y, warm_start_from=previous)


def test_the_initial_weights_depend_on_the_seed_alone() -> None:
    """Another thread drawing from Python's process-wide ``random`` between the seeding and the build (a
    Dask worker's event loop, a client's) leaves the initial weights as they were; another seed does not."""
    import random

    import keras

    keras.utils.set_random_seed(42)
    first = build_network(6, 5, 3, "small", seed=42).get_weights()
    keras.utils.set_random_seed(42)
    random.random(), random.randint(0, 10)  # what another thread may do meanwhile
    second = build_network(6, 5, 3, "small", seed=42).get_weights()
    other = build_network(6, 5, 3, "small", seed=7).get_weights()
    assert len(first) == len(second) and all(np.array_equal(a, b) for a, b in zip(first, second, strict=True))
    assert not all(np.array_equal(a, b) for a, b in zip(first, other, strict=True))


SEED_FIT_CHILD = """
import sys
import numpy as np
from job.models import LSTMForecaster
data = np.load(sys.argv[1])
model = LSTMForecaster(preset="seed", epochs=2, patience=5, seed=3).fit(data["X"], data["y"])
np.savez(sys.argv[2], *model.network_weights_)
"""


@pytest.mark.slow
def test_the_seed_preset_trains_as_one_xla_program_and_reproduces_in_another_process(data, tmp_path) -> None:
    """The seed preset's train step is XLA-compiled (Keras would silently fall back to op by op while op
    determinism is on), and a fit in another process gives the same weights bit for bit; a small-preset
    fit afterwards in the same process turns op determinism back on."""
    import os
    import subprocess
    import sys

    from tensorflow.python.framework.config import is_op_determinism_enabled

    X, y, _ = data
    X, y = X[:40], y[:40]
    here = LSTMForecaster(preset="seed", epochs=2, patience=5, seed=3).fit(X, y)
    assert here.network_.jit_compile is True and not is_op_determinism_enabled()
    np.savez(tmp_path / "data.npz", X=X, y=y)
    subprocess.run([sys.executable, "-c", SEED_FIT_CHILD, str(tmp_path / "data.npz"), str(tmp_path / "w.npz")],
                   check=True, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}, timeout=600)
    there = np.load(tmp_path / "w.npz")
    weights = [there[f"arr_{i}"] for i in range(len(there.files))]
    assert len(weights) == len(here.network_weights_)
    assert all(np.array_equal(a, b) for a, b in zip(here.network_weights_, weights, strict=True))

    small = LSTMForecaster(preset="small", epochs=2, patience=5, seed=3).fit(X, y)
    assert small.network_.jit_compile is False and is_op_determinism_enabled()
