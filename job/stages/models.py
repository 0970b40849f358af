"""Model stages: train or load the models as of a month, forecast the next month, allocate weights."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from job.dataset import Dataset
from job.months import month_str
from job.store.base import Store


def sectors_of(dataset: Dataset, settings: Any) -> dict[str, str]:
    """Asset -> sector name: from the dataset's universe, else the configured universe with these assets."""
    known = dataset.info.sectors
    if known:
        return dict(known)
    for universe in settings.universes.values():
        if universe.tickers == list(dataset.assets):
            return dict(universe.assets)
    return {a: a for a in dataset.assets}


def train(dataset: Dataset, settings: Any, as_of: pd.Period, store: Store, names: list[str], *,
          force: bool = False, cluster: str | None = None) -> dict[str, Any]:
    """Train or load ``names`` (and the fitted baselines) as of ``as_of`` into the store's model registry.

    Returns ``{name: TrainedModel}``; ``force`` refits the named models even when the same fit is stored;
    ``cluster`` fits on a Dask scheduler (default ``$DASK_SCHEDULER_ADDRESS``).
    """
    from job.models import ModelRegistry, data_fingerprint, train_models

    return train_models(names, dataset, settings, as_of, ModelRegistry(store),
                        data_fingerprint=data_fingerprint(dataset), force=force, cluster=cluster)


def forecast(dataset: Dataset, settings: Any, as_of: pd.Period, store: Store, names: list[str], *,
             recompute: bool = False, cluster: str | None = None) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Next month's forecasts of ``names`` (and both baselines), trained or loaded as of ``as_of``.

    Returns the frame of the ``forecasts`` artifact kind (one row per model and asset; decision month
    ``as_of``, target month ``as_of + 1``) and the TrainedModel of each model.
    """
    from job.models import forecast_frame

    trained = train(dataset, settings, as_of, store, names, force=recompute, cluster=cluster)
    frame = forecast_frame(trained, dataset, as_of,
                           settings.models.lookback_months, sectors=sectors_of(dataset, settings))
    return mask_absent(frame, dataset, as_of), trained


def mask_absent(frame: pd.DataFrame, dataset: Dataset, as_of: pd.Period) -> pd.DataFrame:
    """Forecasts of assets not present at ``as_of`` (unbalanced panels: not entered yet) become NaN,
    so the allocation gives them weight 0."""
    present = dataset.mask.loc[as_of]
    absent = [a for a in dataset.assets if not present[a]]
    if not absent:
        return frame
    out = frame.copy()
    out.loc[out["asset"].isin(absent), "predicted"] = np.nan
    return out


def allocate(forecasts: pd.DataFrame, dataset: Dataset, params: Any) -> pd.DataFrame:
    """Weights for the target month from each model's forecasts: the ``weights`` artifact kind's frame."""
    from job.strategy import allocate as allocate_matrix

    models = list(dict.fromkeys(forecasts["model"]))
    wide = forecasts.pivot(index="model", columns="asset", values="predicted").reindex(
        index=models, columns=dataset.assets)
    alloc = allocate_matrix(wide.to_numpy(dtype=np.float64), params)
    exposure = alloc.exposures(params.mode)
    n_models, n_assets = wide.shape
    sectors = dict(zip(forecasts["asset"], forecasts["sector"], strict=False))
    return pd.DataFrame({
        "model": np.repeat(wide.index.to_numpy(), n_assets),
        "decision_month": forecasts["decision_month"].iloc[0],
        "target_month": forecasts["target_month"].iloc[0],
        "asset": np.tile(wide.columns.to_numpy(), n_models),
        "sector": [sectors.get(a, a) for a in np.tile(wide.columns.to_numpy(), n_models)],
        "predicted": wide.to_numpy(dtype=np.float64).ravel(),
        "weight": alloc.weights.ravel(),
        "flag": alloc.flags.ravel().astype(bool),
        "multiplier": alloc.multipliers.ravel(),
        "exposure": exposure.ravel(),
        "capital_deployed": np.repeat(alloc.capital, n_assets),
        "mode": params.mode,
    })


def target_month(as_of: pd.Period) -> str:
    return month_str(as_of + 1)
