"""Build a forecaster by name from the settings (the one place that maps configuration to models)."""

from __future__ import annotations

from collections.abc import Sequence

from job.config import Settings
from job.errors import ConfigError
from job.model_names import MODEL_NAMES
from job.models.base import Forecaster
from job.models.baselines import HistoricalMeanForecaster, MomentumForecaster, PersistenceForecaster
from job.models.ensemble import EnsembleForecaster
from job.models.linear import RidgeForecaster
from job.models.lstm import LSTMForecaster
from job.models.tree import TreeForecaster


def build_model(name: str, settings: Settings, *, return_feature_index: Sequence[int],
                members: dict[str, Forecaster] | None = None) -> Forecaster:
    """An unfitted forecaster ``name`` configured from ``settings.models``.

    ``return_feature_index``: positions of the ``ret:<ASSET>`` features (persistence and momentum read
    them). Momentum's window is ``models.momentum_months`` (12) skipping ``models.momentum_skip_months`` (1).
    ``members`` (ensemble only): fitted or unfitted members; default: unfitted members built from
    ``settings.models.ensemble_members``. Raises ConfigError for an unknown name.
    """
    m = settings.models
    if name == "persistence":
        return PersistenceForecaster(return_feature_index=tuple(int(i) for i in return_feature_index),
                                     cv_splits=m.cv_splits)
    if name == "historical-mean":
        return HistoricalMeanForecaster(cv_splits=m.cv_splits)
    if name == "momentum":
        return MomentumForecaster(return_feature_index=tuple(int(i) for i in return_feature_index),
                                  months=_model_setting(settings, "momentum_months", 12),
                                  skip=_model_setting(settings, "momentum_skip_months", 1), cv_splits=m.cv_splits)
    if name == "ridge":
        return RidgeForecaster(alphas=tuple(float(a) for a in m.ridge_alphas), cv_splits=m.cv_splits)
    if name == "tree":
        return TreeForecaster(max_leaf_nodes=tuple(m.tree_max_leaf_nodes),
                              min_samples_split=tuple(m.tree_min_samples_split),
                              min_samples_leaf=tuple(m.tree_min_samples_leaf), fixed=m.tree_fixed,
                              cv_splits=m.cv_splits, seed=m.seed)
    if name == "lstm":
        return LSTMForecaster(preset=m.lstm_preset, epochs=m.lstm_epochs, patience=m.lstm_patience,
                              batch_size=m.lstm_batch_size, validation_share=m.lstm_validation_share, seed=m.seed)
    if name == "ensemble":
        if members is None:
            members = {member: build_model(member, settings, return_feature_index=return_feature_index)
                       for member in ensemble_member_names(settings)}
        return EnsembleForecaster(members=dict(members), weighting=m.ensemble_weighting)
    raise ConfigError(f"unknown model {name!r}", hint=f"choose from {', '.join(MODEL_NAMES)}")


def _model_setting(settings: Settings, key: str, default: int) -> int:
    """``settings.models.<key>``, or ``default`` while the settings class does not declare it.

    (``models.momentum_months`` = 12 and ``models.momentum_skip_months`` = 1 are meant for the settings
    class and ``job/defaults.toml``; until they land there the constructor's defaults apply.)
    """
    value = getattr(settings.models, key, default)
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(f"configuration key models.{key} must be int, not {value!r}")
    return value


def ensemble_member_names(settings: Settings) -> list[str]:
    """The ensemble's members from ``models.ensemble_members``; ConfigError if one is not a model."""
    names = list(settings.models.ensemble_members)
    bad = [n for n in names if n not in MODEL_NAMES or n == "ensemble"]
    if bad or not names:
        raise ConfigError(f"models.ensemble_members must name models other than the ensemble, got {names}")
    return names


def parse_model_names(text: str | None, settings: Settings) -> list[str]:
    """``"ridge,tree"`` (or ``models.enabled`` when None) as a list in MODEL_NAMES order.

    Raises ConfigError for an unknown name or an empty list.
    """
    names = [n.strip() for n in text.split(",") if n.strip()] if text is not None else list(settings.models.enabled)
    bad = [n for n in names if n not in MODEL_NAMES]
    if bad:
        raise ConfigError(f"unknown model(s) {', '.join(bad)}", hint=f"choose from {', '.join(MODEL_NAMES)}")
    if not names:
        raise ConfigError("no models selected", hint=f"choose from {', '.join(MODEL_NAMES)}")
    return [n for n in MODEL_NAMES if n in names]
