"""The names of the models: what ``--models`` accepts, and which of them are the baselines.

A plain module (no scikit-learn) so that the report, the metrics and the commands can read the names
without importing the models. :mod:`job.models.factory` maps each name to a forecaster.
"""

from __future__ import annotations

MODEL_NAMES: tuple[str, ...] = ("persistence", "historical-mean", "momentum", "ridge", "tree", "lstm", "ensemble")
"""Every model, in the order they are trained, reported and listed."""

BASELINES: tuple[str, ...] = ("persistence", "historical-mean", "momentum")
"""The baselines every model is measured against: forecast on the backtest's months by their formulas,
run through the same allocation and costs as the models, scored on the same rows (the scoreboard),
reported beside each model's MAE (``mae_persistence``...) and kept out of the models' own tables."""

FITTED_BASELINES: tuple[str, ...] = ("persistence", "historical-mean")
"""The baselines also fitted with the live models, so next month's forecasts show them beside the models."""

__all__ = ["BASELINES", "FITTED_BASELINES", "MODEL_NAMES"]
