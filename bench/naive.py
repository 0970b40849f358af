"""The naive baselines: the job's work written the way the original notebook wrote it.

- one ``model.predict`` call per row (:func:`predict_per_row`);
- the allocation rule as Python loops over months and assets (:func:`allocate_loop`, :func:`sweep_loop`);
- hyperparameters chosen by ``GridSearchCV`` with plain (unshuffled) ``KFold`` over the whole grid and
  refitted every month (:func:`walk_forward_gridsearch`);
- the warehouse rebuilt from scratch for every new month (``bench_ingest``: a fresh file each time).

They compute the same quantities as the job (the sweep loop is checked against ``job.strategy`` in
``bench_sweep``), so a ratio of timings is a like-for-like speed-up.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
from sklearn.model_selection import GridSearchCV, KFold
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.tree import DecisionTreeRegressor

from job.dataset import Dataset
from job.models.base import Clipper, WindowFlattener


def predict_per_row(model: Any, X: np.ndarray) -> np.ndarray:
    """``model.predict`` called once per row (the notebook's loop over test months)."""
    return np.vstack([np.asarray(model.predict(X[i:i + 1])).reshape(1, -1) for i in range(len(X))])


def allocate_loop(predicted: Sequence[float], threshold: float, factor: float,
                  shrinkage: float) -> tuple[list[float], list[float], float]:
    """One month's rule with a Python loop over assets: (weights, multipliers, capital deployed)."""
    n = len(predicted)
    multipliers, raw = [], []
    for p in predicted:
        m = factor if p > threshold else 1.0
        multipliers.append(m)
        raw.append(max(0.0, p) * m)
    total = sum(raw)
    weights = []
    for x in raw:
        normalised = x / total if total > 0 else 1.0 / n
        weights.append(shrinkage / n + (1.0 - shrinkage) * normalised)
    capital = sum(w * m for w, m in zip(weights, multipliers, strict=True))
    return weights, multipliers, capital


def strategy_loop(predicted: np.ndarray, realised: np.ndarray, threshold: float, factor: float, shrinkage: float,
                  cost_bps: float) -> tuple[list[float], list[float]]:
    """Normalised-mode gross and net monthly returns, month by month and asset by asset."""
    gross, net, previous = [], [], [0.0] * predicted.shape[1]
    for t in range(predicted.shape[0]):
        weights, multipliers, capital = allocate_loop(predicted[t].tolist(), threshold, factor, shrinkage)
        exposures = [w * m / capital for w, m in zip(weights, multipliers, strict=True)]
        r = sum(e * x for e, x in zip(exposures, realised[t].tolist(), strict=True))
        turn = sum(abs(e - q) for e, q in zip(exposures, previous, strict=True))
        previous = exposures
        gross.append(r)
        net.append(r - cost_bps / 1e4 * turn)
    return gross, net


def _metrics_loop(returns: list[float]) -> dict[str, float]:
    """CAGR, annual volatility, Sharpe (rf 0) and max drawdown with plain Python."""
    n = len(returns)
    wealth, peak, worst = 1.0, 1.0, 0.0
    for r in returns:
        wealth *= 1.0 + r
        peak = max(peak, wealth)
        worst = min(worst, wealth / peak - 1.0)
    mean = sum(returns) / n
    sd = math.sqrt(sum((r - mean) ** 2 for r in returns) / (n - 1))
    return {"cagr": wealth ** (12.0 / n) - 1.0, "annual_volatility": sd * math.sqrt(12.0),
            "sharpe": mean / sd * math.sqrt(12.0) if sd > 0 else float("nan"), "max_drawdown": worst}


def sweep_loop(predicted: np.ndarray, realised: np.ndarray, grid: Sequence[tuple[float, float, float]],
               cost_bps: float = 10.0) -> pd.DataFrame:
    """Every (threshold, factor, shrinkage) of ``grid`` run one after the other with Python loops."""
    rows = []
    for threshold, factor, shrinkage in grid:
        gross, net = strategy_loop(predicted, realised, threshold, factor, shrinkage, cost_bps)
        rows.append({"threshold": threshold, "factor": factor, "shrinkage": shrinkage, **_metrics_loop(gross),
                     **{f"{k}_net": v for k, v in _metrics_loop(net).items()}})
    return pd.DataFrame(rows)


def naive_ridge(alphas: Sequence[float], clip: float | None = 5.0) -> GridSearchCV:
    """GridSearchCV(KFold(5)) over the ridge pipeline, refitted on all rows (the notebook's search)."""
    from sklearn.linear_model import Ridge

    pipeline = Pipeline([("flatten", WindowFlattener()), ("scale", StandardScaler()), ("clip", Clipper(clip)),
                         ("ridge", Ridge())])
    return GridSearchCV(pipeline, {"ridge__alpha": list(alphas)}, cv=KFold(5), scoring="neg_mean_absolute_error")


def naive_tree(max_leaf_nodes: Sequence[int], min_samples_split: Sequence[int], min_samples_leaf: Sequence[int],
               seed: int = 42) -> GridSearchCV:
    """GridSearchCV(KFold(5)) over every tree setting, one fit per setting and fold, refitted on all rows."""
    pipeline = Pipeline([("flatten", WindowFlattener()),
                         ("tree", DecisionTreeRegressor(criterion="squared_error", random_state=seed))])
    grid = {"tree__max_leaf_nodes": list(max_leaf_nodes), "tree__min_samples_split": list(min_samples_split),
            "tree__min_samples_leaf": list(min_samples_leaf)}
    return GridSearchCV(pipeline, grid, cv=KFold(5), scoring="neg_mean_absolute_error")


def walk_forward_gridsearch(dataset: Dataset, settings: Any, months: pd.PeriodIndex,
                            models: Sequence[str] = ("ridge", "tree")) -> dict[str, np.ndarray]:
    """The notebook's way, month by month: a full GridSearchCV(KFold) per model, refit, predict row by row.

    Returns the forecasts per model, shape ``(len(months), n_assets)``.
    """
    m = settings.models
    lookback = int(m.lookback_months)
    out: dict[str, list[np.ndarray]] = {name: [] for name in models}
    for month in months:
        X, y, _ = dataset.training_set(lookback, as_of=month)
        X_pred = dataset.windows(lookback, pd.PeriodIndex([month]))
        for name in models:
            search = (naive_ridge(m.ridge_alphas) if name == "ridge" else
                      naive_tree(m.tree_max_leaf_nodes, m.tree_min_samples_split, m.tree_min_samples_leaf, m.seed))
            search.fit(X, y)
            out[name].append(predict_per_row(search, X_pred))
    return {name: np.vstack(rows) for name, rows in out.items()}
