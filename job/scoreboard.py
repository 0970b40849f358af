"""One scoreboard: every model and baseline scored on the same out-of-sample rows, and the baselines'
portfolios run through the same allocation as the models.

Rows. A forecast row is a (decision month m, asset i) pair with prediction ``p_{m,i}`` and realised
calendar-month return ``r_{m,i}`` (of month m+1). The scoreboard keeps the pairs where *every* model and
baseline has a finite prediction and the realised return is known (the intersection), so each figure
below is computed on identical rows for everyone; ``M`` is the number of decision months among them and
``n_m`` the number of assets kept in month m.

Figures per model (on the common rows):

- ``mae = mean_{m,i} |p_{m,i} - r_{m,i}|``;
- rank IC: each month ``IC_m`` = Spearman correlation across assets of ``p_{m,.}`` and ``r_{m,.}``
  (months with fewer than 3 assets, or a constant side, are left out); ``rank_ic_mean = mean_m IC_m``,
  with the Newey-West t-statistic ``rank_ic_t_newey_west = mean / sqrt(S / M)`` (Bartlett kernel, lag
  ``floor(4 (M / 100) ** (2/9))``, :func:`job.significance.newey_west_mean_test`), its two-sided normal
  p-value and lag; ``rank_ic_positive_share`` = share of months with ``IC_m > 0``;
- ``sign_hit_rate = mean_{m,i} 1[(p_{m,i} > 0) = (r_{m,i} > 0)]``: the direction of each asset's return;
- ``rank_hit_rate`` (top-half agreement) ``= mean_{m,i} 1[(p_{m,i} > med_m(p)) = (r_{m,i} > med_m(r))]``
  with ``med_m`` the cross-sectional median in month m: whether the forecast put the asset in the half of
  the cross-section it ended up in (a forecast with no cross-sectional skill scores about 0.5, whatever
  the market did);
- against each baseline b: ``mae_ratio_vs_b = mae / mae_b`` (< 1 beats it) and a Diebold-Mariano test of
  equal MAE: ``d_m = mean_i |p_{m,i} - r_{m,i}| - mean_i |p^b_{m,i} - r_{m,i}|``, ``mae_diff_vs_b =
  mean_m d_m`` with its Newey-West ``mae_dm_t_vs_b`` and ``mae_dm_p_vs_b`` (negative t: the model's
  errors are smaller).

The per-model "validation MAE" of each model's own fit (CV test rows for ridge, tree and the baselines,
the last 20 % for the LSTM, their intersection for the ensemble) is measured on different rows; it stays
a diagnostic of each fit and is never compared here.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

from job.metrics import rank_ic
from job.model_names import BASELINES
from job.months import month_str

BASELINE_NAMES = BASELINES  # the one tuple, job.model_names
MIN_IC_ASSETS = 3


def all_forecasts(result: Any) -> pd.DataFrame:
    """Models' forecasts plus the baselines not also run as models, with a ``kind`` column."""
    models = set(result.forecasts["model"])
    frames = [result.forecasts.assign(kind="model")]
    if result.baselines is not None and not result.baselines.empty:
        frames.append(result.baselines[~result.baselines["model"].isin(models)].assign(kind="baseline"))
    every = pd.concat(frames, ignore_index=True)
    every.loc[every["model"].isin(BASELINE_NAMES), "kind"] = "baseline"
    return every


def common_rows(every: pd.DataFrame) -> pd.DataFrame:
    """The (decision_month, asset) pairs every model predicts (finite) with a known realised return."""
    ok = every[np.isfinite(every["predicted"].to_numpy(dtype=np.float64))
               & np.isfinite(every["realised"].to_numpy(dtype=np.float64))]
    n_models = every["model"].nunique()
    counts = ok.groupby(["decision_month", "asset"], sort=True)["model"].nunique()
    keep = counts[counts == n_models].index
    key = pd.MultiIndex.from_frame(ok[["decision_month", "asset"]])
    return ok[key.isin(keep)].reset_index(drop=True)


def _wide(rows: pd.DataFrame, column: str) -> pd.DataFrame:
    return rows.pivot(index="decision_month", columns="asset", values=column).sort_index()


def _num(value: Any) -> float | None:
    value = float(value)
    return value if math.isfinite(value) else None


def score(rows: pd.DataFrame) -> dict[str, Any]:
    """The figures of one model on its (common) rows (formulas in the module docstring)."""
    from job.significance import newey_west_mean_test

    pred, real = _wide(rows, "predicted"), _wide(rows, "realised")
    err = (rows["predicted"] - rows["realised"]).abs()
    ic = rank_ic(rows, min_assets=MIN_IC_ASSETS).to_numpy(dtype=np.float64)
    test = newey_west_mean_test(ic) if len(ic) > 2 else None
    sign = ((rows["predicted"] > 0) == (rows["realised"] > 0)).mean()
    top_pred = pred.gt(pred.median(axis=1), axis=0)
    top_real = real.gt(real.median(axis=1), axis=0)
    both = pred.notna() & real.notna()
    rank_hit = (top_pred == top_real)[both].stack().mean()
    return {
        "mae": _num(err.mean()),
        "rank_ic_mean": _num(ic.mean()) if len(ic) else None,
        "rank_ic_t_newey_west": None if test is None else _num(test.t),
        "rank_ic_p_newey_west": None if test is None else _num(test.p),
        "rank_ic_newey_west_lag": None if test is None else int(test.lag),
        "rank_ic_months": len(ic),
        "rank_ic_positive_share": _num((ic > 0).mean()) if len(ic) else None,
        "sign_hit_rate": _num(sign),
        "rank_hit_rate": _num(rank_hit),
    }


def _versus(rows: pd.DataFrame, base: pd.DataFrame) -> dict[str, float | None]:
    """MAE ratio and Diebold-Mariano (Newey-West) test of equal MAE against one baseline's rows."""
    from job.significance import newey_west_mean_test

    own = (rows["predicted"] - rows["realised"]).abs().groupby(rows["decision_month"]).mean()
    other = (base["predicted"] - base["realised"]).abs().groupby(base["decision_month"]).mean()
    d = (own - other.reindex(own.index)).dropna().to_numpy(dtype=np.float64)
    mae, mae_b = float((rows["predicted"] - rows["realised"]).abs().mean()), float(
        (base["predicted"] - base["realised"]).abs().mean())
    test = newey_west_mean_test(d) if len(d) > 2 else None
    return {"mae_ratio": _num(mae / mae_b) if mae_b > 0 else None, "mae_diff": _num(d.mean()) if len(d) else None,
            "mae_dm_t": None if test is None else _num(test.t), "mae_dm_p": None if test is None else _num(test.p)}


def scoreboard(result: Any) -> dict[str, Any]:
    """The ``scoreboard`` section of the metrics document.

    ``{"window": {start, end, months, assets, rows, models}, "models": {name: {"common": {kind, mae,
    rank_ic_mean, rank_ic_t_newey_west, rank_ic_p_newey_west, rank_ic_newey_west_lag, rank_ic_months,
    rank_ic_positive_share, sign_hit_rate, rank_hit_rate, mae_rank, mae_ratio_vs_<b>, mae_diff_vs_<b>,
    mae_dm_t_vs_<b>, mae_dm_p_vs_<b>}}}}`` (``<b>`` a baseline with ``-`` as ``_``); ``window`` months
    are target months (the month each return was earned). Empty dict without forecasts.
    """
    every = all_forecasts(result)
    rows = common_rows(every)
    if rows.empty:
        return {}
    kinds = every.drop_duplicates("model").set_index("model")["kind"].to_dict()
    by_model = {str(m): g for m, g in rows.groupby("model", sort=False)}
    baselines = [b for b in BASELINE_NAMES if b in by_model]
    models: dict[str, Any] = {}
    for name, group in by_model.items():
        entry: dict[str, Any] = {"kind": kinds.get(name, "model"), **score(group)}
        for base in baselines:
            if base == name:
                continue
            col = base.replace("-", "_")
            for key, value in _versus(group, by_model[base]).items():
                entry[f"{key}_vs_{col}"] = value
        models[name] = {"common": entry}
    order = sorted(models, key=lambda n: (models[n]["common"]["mae"] is None, models[n]["common"]["mae"] or 0.0))
    for rank, name in enumerate(order, start=1):
        models[name]["common"]["mae_rank"] = rank
    months = pd.PeriodIndex(rows["decision_month"].unique()).sort_values()
    window = {"start": month_str(months[0] + 1), "end": month_str(months[-1] + 1), "months": len(months),
              "assets": int(rows["asset"].nunique()), "rows": int(len(rows) // max(len(by_model), 1)),
              "models": len(by_model)}
    return {"window": window, "models": models}


def baseline_backtest(result: Any, dataset: Any, params: Any) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(weights, portfolio) of the baselines not run as models, through :func:`job.backtest.evaluate`:
    the same allocation, costs and booked (executed) returns as every model."""
    from job.backtest import PORTFOLIO_COLUMNS, WEIGHT_COLUMNS, evaluate

    base = result.baselines
    if base is None or base.empty:
        return pd.DataFrame(columns=WEIGHT_COLUMNS), pd.DataFrame(columns=PORTFOLIO_COLUMNS)
    return evaluate(base[~base["model"].isin(set(result.forecasts["model"]))], dataset, params)


BASELINE_SECTIONS = ("relative", "distribution", "drawdowns", "calendar_years")


def baseline_summary(result: Any, portfolio: pd.DataFrame, settings: Any = None) -> dict[str, Any]:
    """The ``baselines`` section: the baselines' portfolios measured exactly like the models'.

    ``{"performance": {"models": {baseline: {period: {...}}}}, "relative": {"models": ...},
    "distribution": ..., "drawdowns": ..., "calendar_years": ...}`` with the periods, metrics and
    formulas of :func:`job.metrics.summarise` (``full``, ``last_20pct``, ``_net`` after costs).
    """
    from dataclasses import replace

    from job.metrics import summarise

    if portfolio is None or portfolio.empty:
        return {}
    names = set(portfolio["model"])
    pseudo = replace(result, portfolio=portfolio, forecasts=result.baselines[result.baselines["model"].isin(names)],
                     baselines=None)
    doc = summarise(pseudo, settings)
    out: dict[str, Any] = {"performance": {"models": doc["models"]}}
    for key in BASELINE_SECTIONS:  # the benchmark and equal weight are in the main sections already
        if key in doc:
            out[key] = {"models": {m: v for m, v in doc[key]["models"].items() if m in names}}
    return out
