"""Forecasters (scikit-learn estimators) and the model registry.

Every model learns from feature windows ``X`` of shape ``(n, lookback, n_features)`` and predicts next
month's return of each asset, ``(n, n_assets)``. Importing this package does not import TensorFlow:
Keras is loaded when an LSTM is built or loaded.
"""

from __future__ import annotations

from job.model_names import BASELINES, MODEL_NAMES
from job.models.base import Clipper, Forecaster, WindowFlattener
from job.models.baselines import HistoricalMeanForecaster, PersistenceForecaster
from job.models.ensemble import EnsembleForecaster
from job.models.factory import build_model, ensemble_member_names, parse_model_names
from job.models.linear import RidgeForecaster
from job.models.lstm import PRESETS, SEED_PARAMETERS, LSTMForecaster, build_network
from job.models.registry import CorruptModel, ModelRegistry, config_fingerprint, data_fingerprint
from job.models.training import (
    FORECAST_COLUMNS,
    TrainedModel,
    fit_model,
    forecast_frame,
    train_models,
    train_or_load,
    train_or_load_result,
    training_data,
)
from job.models.tree import ORIGINAL_TREE, TreeForecaster

__all__ = [
    "BASELINES",
    "FORECAST_COLUMNS",
    "MODEL_NAMES",
    "ORIGINAL_TREE",
    "PRESETS",
    "SEED_PARAMETERS",
    "Clipper",
    "CorruptModel",
    "EnsembleForecaster",
    "Forecaster",
    "HistoricalMeanForecaster",
    "LSTMForecaster",
    "ModelRegistry",
    "PersistenceForecaster",
    "RidgeForecaster",
    "TrainedModel",
    "TreeForecaster",
    "WindowFlattener",
    "build_model",
    "build_network",
    "config_fingerprint",
    "data_fingerprint",
    "ensemble_member_names",
    "fit_model",
    "forecast_frame",
    "parse_model_names",
    "train_models",
    "train_or_load",
    "train_or_load_result",
    "training_data",
]
