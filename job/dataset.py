"""The point-in-time modelling dataset: features of each decision month and next month's returns.

This is the one contract between the warehouse and everything that learns or trades:

- ``features``: one row per decision month (monthly ``PeriodIndex``, contiguous, increasing), one column
  per feature, no missing values. Columns named ``ret:<ASSET>`` hold the asset's total return over the
  decision month itself (known at its last trading day); ``macro:<SERIES>`` hold transformed macro
  values known at the decision date (``available_at`` <= decision date).
- ``returns``: monthly total returns per asset (columns in universe order), indexed by month; missing
  (NaN) only where the asset has no return yet (before its first price).
- ``present``: the universe of each month (bool, months x assets): an asset is present (forecast,
  allocated, evaluated) from the month it has ``data.min_asset_history_months`` months of returns, or from
  the first month when its history starts with the data's (see README: "Unbalanced panels").
- label of decision month m = return of each asset over month m+1 (:meth:`Dataset.labels`).

Unbalanced panels use masked outputs: models always see and predict every asset. Where an asset has no
return yet, its return feature and (for fitting) its label hold the cross-sectional mean of the assets
that have one that month (:meth:`Dataset.filled_returns`: neutral for ranking); its forecasts are masked
out (NaN) while it is absent, the allocation gives it weight 0, and evaluation reads
:meth:`Dataset.realised_labels`, missing where the asset was absent at the decision month.

Models see windows: the last ``lookback`` rows of features ending at a decision month, as a float array
of shape ``(n, lookback, n_features)`` (:meth:`Dataset.windows`). Ridge and the tree flatten them; the
LSTM reads them as sequences.

Expired features (``expired``): a macro series that stops being usable (its last value is more than
``data.max_staleness_months`` old, or it has a hole) from month e is a feature of every fit made before e
and of none made at or after it. A fit at month f reads :meth:`Dataset.view` of
:meth:`Dataset.masked_at` (f): the expired columns held at 0.0 in every month, which carries no
information to any model (a constant input after each model's own scaling) and keeps every fit's input
width, so an ensemble's members combine. ``features`` hold 0.0 from e on, which no fit reads unmasked:
the walk-forward splits a fold at e (``job.schedule.walk_forward_folds``), so a fit from before e never
forecasts a month from e. What a series does at e therefore changes only the fits from e on; the fits
(and published forecasts) of earlier months keep their identity.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from functools import cached_property
from typing import Any

import numpy as np
import pandas as pd

from job.months import month_str

RETURN_PREFIX = "ret:"
MACRO_PREFIX = "macro:"


@dataclass(frozen=True)
class DatasetInfo:
    """What a Dataset is: where it came from and how it was built (one typed description, read-only).

    ``dataset_fingerprint`` is the content hash of the ingested source data the dataset was built from
    (the warehouse's ingest fingerprint). It is not the model registry's fingerprint of a fit's training
    rows (``job.models.registry``: ``data_fingerprint(dataset)``, ``rows_fingerprint``).
    ``asset_first_months``: each asset's first month with a return (None: none by the as-of month);
    ``asset_entry_months``: the first decision month in which it is present (forecast and allocated;
    held from the month after). ``risk_free_missing``: months where no source had a risk-free value
    before the first known one (left missing: consumers decide, see ``backtest.risk_free_for``).
    ``ingest``: the source's own details of the last ingest (ranges, vintages...), free-form per source.
    ``dropped_series``: macro series left out of the features (no value at the first month);
    ``expired_series``: series that are features of the fits before a month and of none from it
    (``{series: month}``, see :attr:`Dataset.expired`).
    """

    source: str = "unknown"
    universe: str = ""
    sectors: Mapping[str, str] = field(default_factory=dict)
    as_of: str = ""
    first_month: str = ""
    dataset_fingerprint: str = ""
    look_ahead: bool = False
    synthetic: bool = False
    n_macro_features: int = 0
    dropped_series: tuple[str, ...] = ()
    expired_series: Mapping[str, str] = field(default_factory=dict)
    asset_first_months: Mapping[str, str | None] = field(default_factory=dict)
    asset_entry_months: Mapping[str, str | None] = field(default_factory=dict)
    min_asset_history_months: int = 0
    risk_free_missing: tuple[str, ...] = ()
    ingest: Mapping[str, Any] = field(default_factory=dict)

    def replace(self, **changes: Any) -> DatasetInfo:
        return replace(self, **changes)

    @property
    def late_assets(self) -> dict[str, str | None]:
        """Assets that enter after the first month: ``{asset: entry month}``."""
        first = self.first_month
        return {a: m for a, m in self.asset_entry_months.items() if m is None or m > first}


@dataclass(frozen=True)
class Dataset:
    """Features, returns and the risk-free rate for one universe, all known point in time."""

    features: pd.DataFrame
    returns: pd.DataFrame
    benchmark: str
    risk_free: pd.Series = field(default_factory=lambda: pd.Series(dtype=float))
    publication_lag_months: int = 1
    info: DatasetInfo = field(default_factory=DatasetInfo)
    present: pd.DataFrame | None = None
    # Indexed by target month t: the return from the close of the execution day in t to the one in t+1
    # (job.execution; None: the portfolio trades at the decision month's last close). The backtest
    # books these; the models keep predicting the calendar-month labels.
    executed_returns: pd.DataFrame | None = None
    # feature name -> the first month it is unusable (module docstring: "Expired features")
    expired: Mapping[str, pd.Period] = field(default_factory=dict)

    def __post_init__(self) -> None:
        idx = self.features.index
        if not isinstance(idx, pd.PeriodIndex) or (len(idx) > 1 and not (np.diff(idx.asi8) == 1).all()):
            raise ValueError("features must have a contiguous monthly PeriodIndex")
        if self.features.isna().to_numpy().any():
            raise ValueError("features must not contain missing values")
        if self.benchmark not in self.returns.columns:
            raise ValueError(f"benchmark {self.benchmark} is not among the returns' assets")
        if not isinstance(self.info, DatasetInfo):
            raise TypeError("info must be a DatasetInfo")
        own = self.returns.reindex(idx).notna()
        present = own if self.present is None else self.present.reindex(index=idx, columns=self.assets,
                                                                         fill_value=False)
        present = present.astype(bool)
        object.__setattr__(self, "present", present)
        absent_return = present.to_numpy() & ~own.to_numpy()
        if absent_return.any():
            i, j = np.argwhere(absent_return)[0]
            raise ValueError(f"asset {self.assets[j]} is present in {month_str(idx[i])} without a return")
        if len(idx) and not present[self.benchmark].all():
            raise ValueError(f"the benchmark {self.benchmark} must be present in every month")
        unknown = sorted(set(self.expired) - set(self.features.columns))
        if unknown:
            raise ValueError(f"expired features that are not features: {unknown[:3]}")
        object.__setattr__(self, "expired", {k: pd.Period(v, freq="M") for k, v in sorted(self.expired.items())})
        object.__setattr__(self, "_views", {})

    def __getstate__(self) -> dict[str, Any]:
        # a worker builds the views it needs: the dataset travels without this process's copies
        return {**self.__dict__, "_views": {}}

    @property
    def synthetic(self) -> bool:
        """Whether the data are synthetic (``info.synthetic``: the sample source)."""
        return self.info.synthetic

    @property
    def mask(self) -> pd.DataFrame:
        """The presence mask (bool, months x assets); ``present`` typed as set by ``__post_init__``."""
        assert self.present is not None
        return self.present

    @cached_property
    def filled_returns(self) -> pd.DataFrame:
        """Returns with each missing one replaced by the cross-sectional mean of that month's known ones.

        What the ``ret:`` features and the fitting labels hold for an asset before its first return.
        """
        return fill_cross_sectional(self.returns)

    @property
    def assets(self) -> list[str]:
        return list(self.returns.columns)

    @property
    def feature_names(self) -> list[str]:
        return list(self.features.columns)

    @property
    def months(self) -> pd.PeriodIndex:
        return self.features.index  # type: ignore[return-value]

    def masked_at(self, fit_month: pd.Period) -> tuple[str, ...]:
        """The features a fit at ``fit_month`` does not use: those expired at or before it."""
        return tuple(name for name in self.feature_names if name in self.expired and self.expired[name] <= fit_month)

    @property
    def feature_breaks(self) -> tuple[pd.Period, ...]:
        """The months at which a feature expires: a walk-forward fold does not span one."""
        return tuple(sorted(set(self.expired.values())))

    def view(self, masked: tuple[str, ...] | list[str]) -> Dataset:
        """This dataset with the ``masked`` features held at 0.0 in every month (itself when none is);
        what a fit that does not use them reads (module docstring: "Expired features"). Cached."""
        key = tuple(masked)
        if not key:
            return self
        views: dict[tuple[str, ...], Dataset] = self._views  # type: ignore[attr-defined]
        if key not in views:
            missing = [m for m in key if m not in self.features.columns]
            if missing:
                raise ValueError(f"cannot mask unknown features {missing[:3]}")
            features = self.features.copy()
            features[list(key)] = 0.0
            views[key] = replace(self, features=features)
        return views[key]

    def return_feature_index(self) -> list[int]:
        """Column positions of ``ret:<ASSET>`` in asset order (what the persistence baseline reads)."""
        names = self.feature_names
        return [names.index(RETURN_PREFIX + a) for a in self.assets]

    def labels(self) -> pd.DataFrame:
        """Fitting label of decision month m: each asset's return over m+1 (NaN where m+1 is not known yet).

        An asset without a return in m+1 (before its first price) gets the cross-sectional mean of the
        others (:attr:`filled_returns`), so every model fits every output on every row.
        """
        shifted = self.filled_returns.reindex(self.months + 1)
        shifted.index = self.months
        return shifted

    def realised_labels(self) -> pd.DataFrame:
        """What a decision at m realises: the label where the asset is present at m, NaN where it is not."""
        return self.labels().where(self.mask)

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
            publication_lag_months=self.publication_lag_months, info=self.info,
            present=self.mask.loc[:last_month],
            # the executed return of t needs the execution close in t+1: known at last_month for t < last_month
            executed_returns=None if self.executed_returns is None else self.executed_returns.loc[:last_month - 1],
            expired={k: v for k, v in self.expired.items() if v <= last_month},
        )


def fill_cross_sectional(returns: pd.DataFrame) -> pd.DataFrame:
    """``returns`` with each missing value replaced by the mean of the same month's known values."""
    if not returns.isna().to_numpy().any():
        return returns
    mean = returns.mean(axis=1)
    return returns.apply(lambda col: col.fillna(mean))


def presence(returns: pd.DataFrame, min_history: int) -> tuple[pd.DataFrame, dict[str, str | None],
                                                                dict[str, str | None]]:
    """The presence mask of ``returns`` (months x assets), each asset's first return month and entry month.

    An asset whose returns start in the first month is present throughout (it has the data's whole
    history); one that starts later is present from the month in which it has ``min_history`` months of
    returns (first month + ``min_history`` - 1).
    """
    months = pd.PeriodIndex(returns.index)
    known = returns.notna()
    mask = pd.DataFrame(False, index=months, columns=returns.columns)
    first: dict[str, str | None] = {}
    entry: dict[str, str | None] = {}
    for asset in returns.columns:
        col = known[asset].to_numpy()
        if not col.any():
            first[asset] = entry[asset] = None
            continue
        start = int(np.argmax(col))
        first[asset] = month_str(months[start])
        at = start if start == 0 else start + max(int(min_history), 1) - 1
        entry[asset] = month_str(months[at]) if at < len(months) else None
        if at < len(months):
            mask.iloc[at:, mask.columns.get_loc(asset)] = True
    return mask, first, entry


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
    info = DatasetInfo(source="synthetic", universe="synthetic", synthetic=True, first_month=month_str(months[0]),
                       as_of=month_str(months[-1]), n_macro_features=n_macro,
                       asset_first_months={a: month_str(months[0]) for a in assets},
                       asset_entry_months={a: month_str(months[0]) for a in assets})
    return Dataset(features=features, returns=returns, benchmark="SPY", risk_free=rf, info=info)
