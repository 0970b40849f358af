"""Exact shortcuts for the time-ordered hyperparameter searches of ridge and the tree.

Both give the same choice and the same validation predictions as ``GridSearchCV`` over the same
``TimeSeriesSplit`` (tests compare them), at a fraction of the cost, which is what makes monthly
walk-forward refits affordable:

- Ridge: for each split the standardised, clipped, centred training matrix X (n x p, n << p) gives one
  eigendecomposition of the Gram matrix K = X X^T; every alpha's test predictions follow from it,
  ``(X_test X^T) Q diag(1 / (lambda + alpha)) Q^T y`` (the dual form of the ridge solution), instead
  of one solve per alpha.
- Tree: scikit-learn grows a tree with ``max_leaf_nodes`` best first, expanding the frontier node with
  the largest impurity decrease; node ids are assigned at expansion, so the children of the e-th
  expansion are nodes 2e+1 and 2e+2 and a tree limited to k leaves is exactly the first k-1 expansions
  of a larger one (same random state, same split evaluations). One fit with the largest leaf count
  then answers every smaller one. ``min_samples_split`` below ``2 * min_samples_leaf`` cannot change
  a tree, so equivalent settings are fitted once.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import numpy as np
from sklearn.model_selection import TimeSeriesSplit
from sklearn.preprocessing import StandardScaler
from sklearn.tree import DecisionTreeRegressor


def _flatten(X: np.ndarray) -> np.ndarray:
    return np.asarray(X, dtype=np.float64).reshape(len(X), -1)


def _select(scores: np.ndarray) -> int:
    """Index of the best mean score (first on ties), as GridSearchCV's rank 1."""
    return int(np.flatnonzero(scores == scores.max())[0])


def ridge_path_cv(X: np.ndarray, y: np.ndarray, alphas: Sequence[float], cv: TimeSeriesSplit,
                  clip: float | None) -> tuple[int, np.ndarray]:
    """(index of the best alpha, CV test-row predictions of every alpha (n_alphas, n, n_assets)).

    The pipeline evaluated is flatten -> StandardScaler -> clip -> Ridge(alpha) with an intercept, each
    fitted on the split's training rows only; the score is the negative MAE averaged over assets, then
    over splits (GridSearchCV's ``neg_mean_absolute_error``).
    """
    X2 = _flatten(X)
    alphas = np.asarray(alphas, dtype=np.float64)
    out = np.full((len(alphas), *y.shape), np.nan)
    split_scores = []
    for train, test in cv.split(X2):
        scaler = StandardScaler().fit(X2[train])
        xtr, xte = scaler.transform(X2[train]), scaler.transform(X2[test])
        if clip is not None:
            xtr, xte = np.clip(xtr, -clip, clip), np.clip(xte, -clip, clip)
        x_mean, y_mean = xtr.mean(axis=0), y[train].mean(axis=0)
        xtr_c, xte_c, ytr_c = xtr - x_mean, xte - x_mean, y[train] - y_mean
        lam, Q = np.linalg.eigh(xtr_c @ xtr_c.T)
        lam = np.clip(lam, 0.0, None)
        A = (xte_c @ xtr_c.T) @ Q           # (n_test, n_train)
        B = Q.T @ ytr_c                      # (n_train, n_assets)
        preds = np.einsum("tk,ak,kj->atj", A, 1.0 / (lam[None, :] + alphas[:, None]), B) + y_mean
        out[:, test] = preds
        split_scores.append(-np.abs(preds - y[test]).mean(axis=(1, 2)))
    best = _select(np.mean(split_scores, axis=0))
    return best, out


def _truncated_predict(tree: DecisionTreeRegressor, X32: np.ndarray, leaves: int) -> np.ndarray:
    """Predictions of ``tree`` cut back to its first ``leaves - 1`` best-first expansions."""
    t = tree.tree_
    left, right, feature, threshold = t.children_left, t.children_right, t.feature, t.threshold
    # An internal node belongs to the cut tree when its expansion index (children_left - 1) / 2 < leaves - 1.
    expanded = (left >= 0) & ((left - 1) // 2 < leaves - 1)
    node = np.zeros(len(X32), dtype=np.intp)
    rows = np.arange(len(X32))
    while True:
        active = expanded[node]
        if not active.any():
            break
        n = node[active]
        go_left = X32[rows[active], feature[n]] <= threshold[n]
        node[active] = np.where(go_left, left[n], right[n])
    return t.value[node][:, :, 0]


def tree_path_cv(X: np.ndarray, y: np.ndarray, grid: dict[str, Sequence[int]], cv: TimeSeriesSplit,
                 seed: int) -> tuple[dict[str, int], np.ndarray]:
    """(best {max_leaf_nodes, min_samples_split, min_samples_leaf}, its CV test-row predictions)."""
    X2 = _flatten(X)
    X32 = X2.astype(np.float32)
    leaves_grid = sorted({int(v) for v in grid["max_leaf_nodes"]})
    settings = [dict(zip(("max_leaf_nodes", "min_samples_split", "min_samples_leaf"), v, strict=True))
                for v in itertools.product(grid["max_leaf_nodes"], grid["min_samples_split"],
                                           grid["min_samples_leaf"])]
    preds = {i: np.full(y.shape, np.nan) for i in range(len(settings))}
    split_scores = []
    for train, test in cv.split(X2):
        fitted: dict[tuple[int, int], DecisionTreeRegressor] = {}
        scores = np.empty(len(settings))
        for i, s in enumerate(settings):
            key = (max(int(s["min_samples_split"]), 2 * int(s["min_samples_leaf"])), int(s["min_samples_leaf"]))
            if key not in fitted:
                fitted[key] = DecisionTreeRegressor(
                    criterion="squared_error", random_state=seed, max_leaf_nodes=leaves_grid[-1],
                    min_samples_split=key[0], min_samples_leaf=key[1]).fit(X2[train], y[train])
            p = _truncated_predict(fitted[key], X32[test], int(s["max_leaf_nodes"])).reshape(len(test), -1)
            preds[i][test] = p
            scores[i] = -np.abs(p - y[test]).mean()
        split_scores.append(scores)
    best = _select(np.mean(split_scores, axis=0))
    return {k: int(v) for k, v in settings[best].items()}, preds[best]
