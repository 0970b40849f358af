"""The names of the models: what ``--models`` accepts, and which of them are the baselines.

A plain module (no scikit-learn) so that the report, the metrics and the commands can read the names
without importing the models. :mod:`job.models.factory` maps each name to a forecaster.
"""

from __future__ import annotations

MODEL_NAMES: tuple[str, ...] = ("persistence", "historical-mean", "momentum", "ridge", "tree", "lstm", "ensemble")
"""Every model, in the order they are trained, reported and listed."""

BASELINES: tuple[str, ...] = ("persistence", "historical-mean")
"""The baselines every model is measured against: always fitted with the live models, forecast on the
backtest's months, reported beside each model's MAE (``mae_persistence``...) and left out of the model
tables' IC summary."""

__all__ = ["BASELINES", "MODEL_NAMES"]
