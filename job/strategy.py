"""The allocation rule: predicted returns become weights, leverage flags and a portfolio return.

For one month with predicted returns ``p_i`` of the ``N`` assets (the original notebook's rule):

- only the assets present that month take part (a missing prediction marks an absent asset: weight 0,
  and ``N`` counts the present assets);
- leverage flag ``f_i = p_i > threshold``; multiplier ``L_i = factor if f_i else 1``;
- signal ``s_i = max(0, p_i)``; ``raw_i = s_i * L_i``; ``n_i = raw_i / sum(raw)``, or ``1/N`` for every
  asset when ``sum(raw) = 0`` (all predictions <= 0);
- final weight ``w_i = shrinkage / N + (1 - shrinkage) * n_i``;
- capital deployed ``C = sum(w_i * L_i)``.

Two ways to turn the allocation into a realised return ``R`` from realised returns ``r_i``:

- ``normalised`` (the original, the default): ``R = sum(w_i L_i r_i) / C``. The "leverage" only
  re-weights: the portfolio holds exposures ``e_i = w_i L_i / C`` that always sum to 100 %.
- ``levered``: the portfolio really carries ``C`` times its capital, borrowing ``C - 1`` at the
  risk-free rate ``rf``: ``R = sum(w_i L_i r_i) - (C - 1) rf``; exposures ``e_i = w_i L_i``.

Turnover and costs. Turnover at month t is ``sum_i |e_{t,i} - e_{t-1,i}|`` on the exposures the portfolio
actually holds (so in ``normalised`` mode on ``w L / C``, not on ``w``), with ``e_{-1} = 0`` (the first
month buys the portfolio from cash). We use the target-to-target difference, not the drift of last
month's holdings to their pre-rebalance value: the standard monthly-rebalancing convention, and it keeps
turnover a function of the weights alone (the drifted version differs by about one month's
cross-sectional return dispersion). Cost = ``cost_bps / 1e4 * turnover``, subtracted from ``R`` to give
the net return.

Every function here works on arrays whose last axis is the asset, and broadcasts over any leading axes
(months, parameter combinations): :func:`sweep` evaluates a whole grid of (threshold, factor, shrinkage)
in one pass without Python loops over months or assets.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from typing import Any

import numpy as np
import pandas as pd

MODES = ("normalised", "levered")


@dataclass(frozen=True)
class StrategyParams:
    """Parameters of the allocation rule (see the module docstring for the formulas).

    Parameters
    ----------
    threshold : float
        A predicted monthly return strictly above this flags the asset for leverage.
    factor : float
        Multiplier ``L_i`` of flagged assets (>= 1).
    shrinkage : float
        Share of the weight spread equally over all assets, in [0, 1].
    mode : {"normalised", "levered"}
        ``normalised`` divides by capital deployed (the original); ``levered`` carries it and pays rf.
    cost_bps : float
        Transaction cost in basis points per unit of turnover.
    """

    threshold: float = 0.15
    factor: float = 5.0
    shrinkage: float = 0.3
    mode: str = "normalised"
    cost_bps: float = 10.0

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, not {self.mode!r}")
        if not 0.0 <= self.shrinkage <= 1.0:
            raise ValueError(f"shrinkage must be in [0, 1], not {self.shrinkage}")
        if self.factor < 1.0:
            raise ValueError(f"factor must be >= 1, not {self.factor}")
        if self.cost_bps < 0.0:
            raise ValueError(f"cost_bps must be >= 0, not {self.cost_bps}")

    @classmethod
    def from_settings(cls, settings: Any) -> StrategyParams:
        """The ``[strategy]`` section of :class:`job.config.Settings`."""
        s = settings.strategy
        return cls(threshold=float(s.threshold), factor=float(s.factor), shrinkage=float(s.shrinkage),
                   mode=str(s.mode), cost_bps=float(s.cost_bps))

    def replace(self, **changes: Any) -> StrategyParams:
        """A copy with ``changes`` applied (``None`` values are ignored)."""
        return replace(self, **{k: v for k, v in changes.items() if v is not None})

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


PRESETS: dict[str, StrategyParams] = {
    # The defaults: leverage only strong signals, keep 30 % spread equally.
    "default": StrategyParams(),
    # What the original notebook ran with. Its numbers had no costs: compare with the gross ("full") figures.
    "notebook": StrategyParams(threshold=0.10, factor=10.0, shrinkage=0.0),
}


@dataclass(frozen=True)
class Allocation:
    """The rule's output; arrays share the leading shape of the predictions (``...``).

    Attributes
    ----------
    weights : ndarray (..., N)
        Final weights ``w_i`` (non-negative, summing to 1).
    flags : ndarray of bool (..., N)
        Leverage flags ``p_i > threshold``.
    multipliers : ndarray (..., N)
        ``L_i``: ``factor`` where flagged, else 1.
    capital : ndarray (...)
        Capital deployed ``C = sum(w_i L_i)`` (>= 1).
    """

    weights: np.ndarray
    flags: np.ndarray
    multipliers: np.ndarray
    capital: np.ndarray

    def exposures(self, mode: str) -> np.ndarray:
        """Exposure per asset as a share of capital: ``w L / C`` (normalised) or ``w L`` (levered)."""
        held = self.weights * self.multipliers
        if mode == "normalised":
            return held / self.capital[..., None]
        if mode == "levered":
            return held
        raise ValueError(f"mode must be one of {MODES}, not {mode!r}")

    def gross_exposure(self, mode: str) -> np.ndarray:
        """``sum |e_i|``: always 1 in normalised mode, ``C`` in levered mode."""
        return np.abs(self.exposures(mode)).sum(axis=-1)


def allocate_arrays(predicted: np.ndarray, threshold: Any, factor: Any, shrinkage: Any) -> Allocation:
    """The rule with array parameters: ``threshold``, ``factor`` and ``shrinkage`` broadcast against
    ``predicted[..., :1]`` (give a grid axis as shape ``(K, 1, 1)`` for predictions ``(T, N)``).

    A missing prediction (NaN) marks an asset absent from that month's universe (unbalanced panels): it
    gets weight 0, no flag, and ``N`` in the rule is the number of assets present in that row. Raises
    ValueError for infinite predictions or a row without any asset present.
    """
    p = np.asarray(predicted, dtype=np.float64)
    if p.ndim == 0 or p.shape[-1] == 0:
        raise ValueError("predicted must have a last axis of assets")
    present = ~np.isnan(p)
    if np.isinf(p).any():
        raise ValueError("predicted returns must be finite")
    n = present.sum(axis=-1, keepdims=True)
    if (n == 0).any():
        raise ValueError("a month without any asset present (every prediction is missing)")
    threshold = np.asarray(threshold, dtype=np.float64)
    factor = np.asarray(factor, dtype=np.float64)
    shrinkage = np.asarray(shrinkage, dtype=np.float64)
    flags = p > threshold  # False where missing
    multipliers = np.where(flags, factor, 1.0)
    raw = np.where(present, np.maximum(p, 0.0) * multipliers, 0.0)
    total = raw.sum(axis=-1, keepdims=True)
    positive = total > 0.0
    normalised = np.where(positive, raw / np.where(positive, total, 1.0), present / n)
    weights = np.where(present, shrinkage / n + (1.0 - shrinkage) * normalised, 0.0)
    capital = (weights * multipliers).sum(axis=-1)
    return Allocation(weights=weights, flags=flags, multipliers=multipliers, capital=capital)


def allocate(predicted: np.ndarray, params: StrategyParams) -> Allocation:
    """Apply the rule to predicted returns of shape ``(..., N)`` (one row per month, say)."""
    return allocate_arrays(predicted, params.threshold, params.factor, params.shrinkage)


def portfolio_returns(alloc: Allocation, realised: np.ndarray, params: StrategyParams | str,
                      rf: np.ndarray | pd.Series | None = None) -> np.ndarray:
    """Gross portfolio return per month (before costs).

    ``normalised``: ``sum(w L r) / C``; ``levered``: ``sum(w L r) - (C - 1) rf``. ``realised`` broadcasts
    against the weights; ``rf`` (monthly decimal, one per month, shape of ``alloc.capital``'s last axis)
    is required in levered mode and ignored otherwise.
    """
    mode = params if isinstance(params, str) else params.mode
    r = np.asarray(realised, dtype=np.float64)
    # an asset absent from the month's universe (weight 0) has no realised return: it contributes nothing
    r = np.where(np.isnan(r) & (alloc.weights == 0.0), 0.0, r)
    held = (alloc.weights * alloc.multipliers * r).sum(axis=-1)
    if mode == "normalised":
        return held / alloc.capital
    if mode == "levered":
        if rf is None:
            raise ValueError("levered mode needs the risk-free rate (financing cost) per month")
        rate = np.asarray(rf, dtype=np.float64)
        if not np.isfinite(rate).all():
            raise ValueError("risk-free rate has missing values in the backtest window")
        return held - (alloc.capital - 1.0) * rate
    raise ValueError(f"mode must be one of {MODES}, not {mode!r}")


def turnover(exposures: np.ndarray) -> np.ndarray:
    """``sum_i |e_t,i - e_{t-1},i|`` per month along axis -2 (months), starting from cash (``e_{-1} = 0``)."""
    e = np.asarray(exposures, dtype=np.float64)
    previous = np.concatenate([np.zeros_like(e[..., :1, :]), e[..., :-1, :]], axis=-2)
    return np.abs(e - previous).sum(axis=-1)


def costs(turnover_: np.ndarray, cost_bps: Any) -> np.ndarray:
    """Transaction cost as a return: ``cost_bps / 1e4 * turnover``."""
    return np.asarray(cost_bps, dtype=np.float64) / 1e4 * np.asarray(turnover_, dtype=np.float64)


@dataclass(frozen=True)
class StrategyRun:
    """One strategy over months: the allocation and its per-month outcome (arrays, months on axis -1)."""

    allocation: Allocation
    exposures: np.ndarray
    gross_exposure: np.ndarray
    turnover: np.ndarray
    cost: np.ndarray
    gross_return: np.ndarray
    net_return: np.ndarray


def run_strategy(predicted: np.ndarray, realised: np.ndarray, params: StrategyParams,
                 rf: np.ndarray | pd.Series | None = None) -> StrategyRun:
    """Allocate ``predicted`` (T, N), realise ``realised`` (T, N); returns, exposures, turnover, costs."""
    alloc = allocate(predicted, params)
    return _outcome(alloc, realised, params.mode, params.cost_bps, rf)


def _outcome(alloc: Allocation, realised: np.ndarray, mode: str, cost_bps: Any,
             rf: np.ndarray | pd.Series | None) -> StrategyRun:
    exposures = alloc.exposures(mode)
    gross = portfolio_returns(alloc, realised, mode, rf)
    turn = turnover(exposures)
    cost = costs(turn, cost_bps)
    return StrategyRun(allocation=alloc, exposures=exposures, gross_exposure=np.abs(exposures).sum(axis=-1),
                       turnover=turn, cost=cost, gross_return=gross, net_return=gross - cost)


def sweep(predicted: np.ndarray, realised: np.ndarray, thresholds: Sequence[float], factors: Sequence[float],
          shrinkages: Sequence[float], *, mode: str = "normalised", cost_bps: float = 10.0,
          rf: np.ndarray | pd.Series | None = None, benchmark: np.ndarray | pd.Series | None = None,
          original_rf: float = 0.0427, chunk_size: int = 512) -> pd.DataFrame:
    """Evaluate every (threshold, factor, shrinkage) combination on one forecast matrix.

    The grid is broadcast against ``predicted`` (T, N) as a leading axis, ``chunk_size`` combinations
    at a time (memory ~ chunk_size * T * N * 8 bytes per temporary), so there are no Python loops over
    months or assets. Each row equals a separate :func:`run_strategy` with those parameters followed by
    :func:`job.metrics.performance` on its gross returns (and ``*_net`` on net returns).

    ``rf`` (T,) is the monthly risk-free rate: financing in levered mode and the Sharpe/Sortino target
    (zero when absent). ``benchmark`` (T,) adds ``hit_rate`` (share of months beating it).
    """
    from job import metrics

    p = np.asarray(predicted, dtype=np.float64)
    r = np.asarray(realised, dtype=np.float64)
    if p.ndim != 2 or p.shape != r.shape:
        raise ValueError(f"predicted and realised must both be (T, N), got {p.shape} and {r.shape}")
    grid = np.array(list(itertools.product(thresholds, factors, shrinkages)), dtype=np.float64).reshape(-1, 3)
    if len(grid) == 0:
        raise ValueError("the grid is empty")
    if (grid[:, 1] < 1).any() or (grid[:, 2] < 0).any() or (grid[:, 2] > 1).any():
        raise ValueError("factors must be >= 1 and shrinkages in [0, 1]")
    rate = np.zeros(p.shape[0]) if rf is None else np.asarray(rf, dtype=np.float64)
    bench = None if benchmark is None else np.asarray(benchmark, dtype=np.float64)
    columns: dict[str, list[np.ndarray]] = {}
    for lo in range(0, len(grid), chunk_size):
        g = grid[lo:lo + chunk_size, :, None, None]  # (k, 1, 1) per parameter
        alloc = allocate_arrays(p[None], g[:, 0], g[:, 1], g[:, 2])
        run = _outcome(alloc, r[None], mode, cost_bps, rate if mode == "levered" else None)
        block = {
            **metrics.vector_metrics(run.gross_return, rate, bench, original_rf=original_rf),
            **{f"{k}_net": v for k, v in metrics.vector_metrics(run.net_return, rate, bench,
                                                                 original_rf=original_rf).items()},
            "avg_turnover": run.turnover.mean(axis=-1),
            "avg_capital_deployed": run.allocation.capital.mean(axis=-1),
            "avg_gross_exposure": run.gross_exposure.mean(axis=-1),
            "share_months_levered": run.allocation.flags.any(axis=-1).mean(axis=-1),
        }
        for key, value in block.items():
            columns.setdefault(key, []).append(np.asarray(value))
    out = pd.DataFrame({"threshold": grid[:, 0], "factor": grid[:, 1], "shrinkage": grid[:, 2]})
    for key, parts in columns.items():
        out[key] = np.concatenate(parts)
    out.insert(3, "mode", mode)
    out.insert(4, "cost_bps", float(cost_bps))
    return out
