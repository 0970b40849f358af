"""The leverage rule made visible: the predicted returns against the threshold, and when it triggered.

The allocation (:mod:`job.strategy`) flags asset i in month m when its predicted monthly return
``p_{m,i} > threshold`` and multiplies its raw weight by ``factor``. Over a backtest, per model:

- quantiles of every finite ``p_{m,i}``: ``min``, ``p01``, ``p05``, ``p25``, ``p50``, ``p75``, ``p95``,
  ``p99``, ``max`` (linear interpolation, numpy's default);
- ``n_forecasts`` (pairs), ``n_flagged = #{p_{m,i} > threshold}``, ``share_flagged = n_flagged /
  n_forecasts``; ``months``, ``months_flagged`` (months with at least one flag), ``share_months_flagged``;
- ``headroom = threshold - max_{m,i} p_{m,i}`` (positive: the largest forecast stayed below the
  threshold by that much);
- ``triggers``: per asset, the number of months it was flagged (assets never flagged left out).

:func:`leverage_sentence` says in one plain sentence whether and where it triggered.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

QUANTILES = (("min", 0.0), ("p01", 0.01), ("p05", 0.05), ("p25", 0.25), ("p50", 0.5), ("p75", 0.75),
             ("p95", 0.95), ("p99", 0.99), ("max", 1.0))


def _num(value: Any) -> float | None:
    value = float(value)
    return value if math.isfinite(value) else None


def pct(value: float, *, sign: bool = False) -> str:
    """``0.153 -> '15.3 %'`` (one decimal, trailing ``.0`` dropped; a real minus sign)."""
    text = f"{100 * value:+.1f}" if sign else f"{100 * value:.1f}"
    text = text[:-2] if text.endswith(".0") else text
    return text.replace("-", "\u2212") + " %"


def usage(forecasts: pd.DataFrame, threshold: float) -> dict[str, Any]:
    """Per model of ``forecasts`` (model, decision_month, asset, predicted): the figures above."""
    out: dict[str, Any] = {}
    for model, rows in forecasts.groupby("model", sort=False):
        rows = rows[np.isfinite(rows["predicted"].to_numpy(dtype=np.float64))]
        if rows.empty:
            continue
        p = rows["predicted"].to_numpy(dtype=np.float64)
        flagged = rows[p > threshold]
        months = rows["decision_month"].nunique()
        months_flagged = flagged["decision_month"].nunique()
        figures: dict[str, Any] = {k: _num(np.quantile(p, q)) for k, q in QUANTILES}
        figures.update({"n_forecasts": len(p), "n_flagged": len(flagged), "share_flagged": _num(len(flagged) / len(p)),
                        "months": months, "months_flagged": months_flagged,
                        "share_months_flagged": _num(months_flagged / months), "headroom": _num(threshold - p.max())})
        counts = flagged.groupby("asset", sort=False).size().sort_values(ascending=False, kind="stable")
        out[str(model)] = {"predicted": figures, "triggers": {str(a): int(c) for a, c in counts.items()}}
    return out


def leverage_sentence(models: dict[str, Any], threshold: float) -> str:
    """One plain sentence: never triggered (with the range of the forecasts), or where and how often."""
    if not models:
        return "There were no backtest forecasts to compare with the leverage threshold."
    at = f"At the {pct(threshold)} threshold"
    fired = {m: v for m, v in models.items() if v["predicted"]["n_flagged"]}
    if not fired:
        low = min(v["predicted"]["min"] for v in models.values())
        high = max(v["predicted"]["max"] for v in models.values())
        return (f"{at} the leverage rule never triggered: predicted monthly returns ranged from "
                f"{pct(low, sign=True)} to {pct(high, sign=True)}.")
    parts = []
    for model, v in fired.items():
        f = v["predicted"]
        top, count = next(iter(v["triggers"].items()))
        parts.append(f"{model} in {f['months_flagged']} of {f['months']} months ({f['n_flagged']} asset-months, "
                     f"most often {top}, {count} times)")
    never = [m for m in models if m not in fired]
    text = f"{at} the leverage rule triggered for " + "; ".join(parts)
    if never:
        text += f"; never for {', '.join(never)}"
    return text + "."


def leverage_summary(forecasts: pd.DataFrame, threshold: float, factor: float | None = None) -> dict[str, Any]:
    """The ``leverage`` section of the metrics document: ``{"threshold", "factor", "sentence",
    "models": {model: {"predicted": {...}, "triggers": {asset: months}}}}``."""
    models = usage(forecasts, threshold)
    return {"threshold": float(threshold), "factor": None if factor is None else float(factor),
            "sentence": leverage_sentence(models, threshold), "models": models}
