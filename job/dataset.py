"""The point-in-time modelling dataset: features of each decision month and next month's returns.

This is the one contract between the warehouse and everything that learns or trades:

- ``features``: one row per decision month (monthly ``PeriodIndex``, contiguous, increasing), one column
  per feature, no missing values. Columns named ``ret:<ASSET>`` hold the asset's total return over the
  decision month itself (known at its last trading day); ``macro:<SERIES>`` hold transformed macro
  values known at the decision date (``available_at`` <= decision date).
- ``returns``: monthly total returns per asset (columns in universe order), indexed by month.
- label of decision month m = return of each asset over month m+1 (:meth:`Dataset.labels`).

Models see windows: the last ``lookback`` rows of features ending at a decision month, as a float array
of shape ``(n, lookback, n_features)`` (:meth:`Dataset.windows`). Ridge and the tree flatten them; the
LSTM reads them as sequences.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from job.months import month_str

RETURN_PREFIX = "ret:"
MACRO_PREFIX = "macro:"


@dataclass(frozen=True)
class Dataset:
    """Features, returns and the risk-free rate for one universe, all known point in time."""

    features: pd.DataFrame
    returns: pd.DataFrame
    benchmark: str
    risk_free: pd.Series = field(default_factory=lambda: pd.Series(dtype=float))
    publication_lag_months: int = 1
    synthetic: bool = False
    info: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        idx = self.features.index
        if not isinstance(idx, pd.PeriodIndex) or (len(idx) > 1 and not (np.diff(idx.asi8) == 1).all()):
            raise ValueError("features must have a contiguous monthly PeriodIndex")
        if self.features.isna().to_numpy().any():
            raise ValueError("features must not contain missing values")
        if self.benchmark not in self.returns.columns:
            raise ValueError(f"benchmark {self.benchmark} is not among the returns' assets")

    @property
    def assets(self) -> list[str]:
        return list(self.returns.columns)

    @property
    def feature_names(self) -> list[str]:
        return list(self.features.columns)

    @property
    def months(self) -> pd.PeriodIndex:
        return self.features.index  # type: ignore[return-value]

    def return_feature_index(self) -> list[int]:
        """Column positions of ``ret:<ASSET>`` in asset order (what the persistence baseline reads)."""
        names = self.feature_names
        return [names.index(RETURN_PREFIX + a) for a in self.assets]

    def labels(self) -> pd.DataFrame:
        """Label of decision month m: each asset's return over m+1 (NaN where m+1 is not known yet)."""
        shifted = self.returns.reindex(self.months + 1)
        shifted.index = self.months
        return shifted

    def windows(self, lookback: int, months: pd.PeriodIndex | None = None) -> np.ndarray:
        """Feature windows ending at each of ``months`` (default: every month with a full window).

        Returns ``(len(months), lookback, n_features)``; a window never reaches past its decision month.
        """
        values = self.features.to_numpy(dtype=np.float64)
        months = self.window_months(lookback) if months is None else months
        pos = self.months.get_indexer(months)
        if (pos < 0).any() or (pos < lookback - 1).any():
            bad = [month_str(m) for m, p in zip(months, pos, strict=True) if p < lookback - 1]
            raise ValueError(f"no full {lookback}-month feature window for {bad[:3]}")
        steps = np.arange(-lookback + 1, 1)
        return values[pos[:, None] + steps[None, :]]

    def window_months(self, lookback: int) -> pd.PeriodIndex:
        """Decision months that have a full window of ``lookback`` months of features."""
        return self.months[lookback - 1:]

    def training_set(self, lookback: int, as_of: pd.Period) -> tuple[np.ndarray, np.ndarray, pd.PeriodIndex]:
        """(X, y, months) of every pair (window ending at m, return of m+1) with m+1 <= ``as_of``.

        This is the only way models get training rows: the label month of every row is at or before
        the as-of month, which is asserted here as well as by the validation suite.
        """
        months = self.window_months(lookback)
        months = months[months + 1 <= as_of]
        labels = self.labels().reindex(months)
        keep = labels.notna().all(axis=1).to_numpy()
        months = months[keep]
        assert len(months) == 0 or months.max() + 1 <= as_of, "training label after the as-of month"
        return self.windows(lookback, months), labels.loc[months].to_numpy(dtype=np.float64), months

    def truncate(self, last_month: pd.Period) -> Dataset:
        """The dataset as it was known at the end of ``last_month`` (features and returns up to it)."""
        return Dataset(
            features=self.features.loc[:last_month], returns=self.returns.loc[:last_month],
            benchmark=self.benchmark, risk_free=self.risk_free.loc[:last_month],
            publication_lag_months=self.publication_lag_months, synthetic=self.synthetic, info=self.info,
        )


def synthetic_dataset(n_months: int = 180, n_assets: int = 4, n_macro: int = 10, *, seed: int = 0,
                      signal: float = 0.6, start: str = "2005-01") -> Dataset:
    """A small dataset with a planted signal, for unit tests.

    Next month's return of asset j = ``signal`` * 0.04 * macro_j(m) + noise (sd 0.04 * sqrt(1-signal^2)),
    where macro_j is one of the macro features (AR(1), unit variance). The first asset is the benchmark.
    """
    rng = np.random.default_rng(seed)
    months = pd.period_range(start, periods=n_months, freq="M")
    macro = np.zeros((n_months, n_macro))
    for t in range(1, n_months):
        macro[t] = 0.5 * macro[t - 1] + rng.normal(0, np.sqrt(1 - 0.25), n_macro)
    assets = ["SPY"] + [f"S{j}" for j in range(1, n_assets)]
    rets = np.zeros((n_months, n_assets))
    noise_sd = 0.04 * np.sqrt(max(1 - signal**2, 1e-6))
    for t in range(1, n_months):
        rets[t] = 0.008 + signal * 0.04 * macro[t - 1, np.arange(n_assets) % n_macro] + rng.normal(
            0, noise_sd, n_assets)
    returns = pd.DataFrame(rets, index=months, columns=assets)
    features = pd.concat(
        [returns.add_prefix(RETURN_PREFIX),
         pd.DataFrame(macro, index=months, columns=[f"{MACRO_PREFIX}M{i}" for i in range(n_macro)])],
        axis=1)
    rf = pd.Series(0.002, index=months, name="rf")
    return Dataset(features=features, returns=returns, benchmark="SPY", risk_free=rf, synthetic=True)
