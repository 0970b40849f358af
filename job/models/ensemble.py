"""The ensemble: a weighted average of other forecasters' predictions."""

from __future__ import annotations

import numpy as np
from sklearn.base import clone

from job.models.base import Forecaster
from job.models.cv import mae_per_asset


class EnsembleForecaster(Forecaster):
    """Average the members' forecasts with equal or inverse-validation-MAE weights.

    Members that are already fitted (they have ``validation_mae_``) are used as they are: ``fit`` then
    only computes the weights, so a train-or-load step can combine stored models. Unfitted members are
    cloned and fitted on ``(X, y)`` first.

    With ``weighting="inverse-mae"`` the weight of member i is proportional to 1 / (its mean validation
    MAE over assets). ``validation_mae_`` is measured on the validation rows every member predicted out
    of sample (for ridge, tree and the LSTM: the LSTM's validation tail) when the members were fitted on
    these same rows; otherwise it is the weighted mean of the members' validation MAEs, an upper bound
    of the ensemble's own (the MAE of an average is at most the average of the MAEs).

    Attributes
    ----------
    members_ : dict[str, Forecaster]
        The fitted members.
    weights_ : dict[str, float]
        Member weights, summing to one.
    """

    def __init__(self, members: dict[str, Forecaster] | None = None, weighting: str = "inverse-mae") -> None:
        self.members = members
        self.weighting = weighting

    def fit(self, X: np.ndarray, y: np.ndarray) -> EnsembleForecaster:
        X, y = self._validate_fit(X, y)
        if not self.members:
            raise ValueError("an ensemble needs at least one member")
        if self.weighting not in ("equal", "inverse-mae"):
            raise ValueError(f"weighting must be 'equal' or 'inverse-mae', not {self.weighting!r}")
        members: dict[str, Forecaster] = {}
        for name, member in self.members.items():
            if not hasattr(member, "validation_mae_"):
                member = clone(member).fit(X, y)
            if (member.n_steps_, member.n_features_in_, member.n_assets_) != (
                    self.n_steps_, self.n_features_in_, self.n_assets_):
                raise ValueError(f"ensemble member {name} was fitted on differently shaped data")
            members[name] = member
        self.members_ = members
        self.weights_ = self._weights(members)
        self.validation_predictions_ = self._validation_predictions(members, len(y))
        if np.isfinite(self.validation_predictions_).all(axis=1).any():
            self.validation_mae_ = mae_per_asset(y, self.validation_predictions_)
        else:
            self.validation_mae_ = sum(w * np.asarray(members[n].validation_mae_) for n, w in self.weights_.items())
        return self

    def _weights(self, members: dict[str, Forecaster]) -> dict[str, float]:
        if self.weighting == "equal":
            raw = {name: 1.0 for name in members}
        else:
            maes = {name: float(np.mean(m.validation_mae_)) for name, m in members.items()}
            if not all(np.isfinite(v) and v > 0 for v in maes.values()):
                raise ValueError(f"inverse-MAE weights need positive finite validation MAEs, got {maes}")
            raw = {name: 1.0 / v for name, v in maes.items()}
        total = sum(raw.values())
        return {name: v / total for name, v in raw.items()}

    def _validation_predictions(self, members: dict[str, Forecaster], n_rows: int) -> np.ndarray:
        """Weighted members' validation predictions where all have them (NaN elsewhere)."""
        preds = [np.asarray(getattr(m, "validation_predictions_", np.empty((0, 0)))) for m in members.values()]
        if any(p.shape != (n_rows, self.n_assets_) for p in preds):
            return np.full((n_rows, self.n_assets_), np.nan)
        return sum(w * p for w, p in zip(self.weights_.values(), preds, strict=True))

    def predict(self, X: np.ndarray) -> np.ndarray:
        """The weighted average of the members' predictions, shape ``(n, n_assets)``."""
        X = self._validate_predict(X)
        return sum(w * self.members_[name].predict(X) for name, w in self.weights_.items())
