"""Which months a walk-forward decides and when it refits: folds of decision months, shared by the
backtest and the live fit of the as-of month (so that both name the same fits).

A fold is one fit and the decision months it forecasts. Decision months are labelled months (a full
feature window and a known next-month return) with at least ``min_train_months`` training rows before
them; the live month (the as-of month, whose label is not known yet) extends the same schedule by one
month, so the live fit is the fold that contains it. Folds start at the first decision month and refit
every ``refit_months`` months; hyperparameter searches run at the first fold and then every
``tune_months`` months, the folds in between carrying the last search's choice.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from job.dataset import Dataset
from job.errors import ConfigError


@dataclass(frozen=True)
class Fold:
    """One fit: training rows with label month <= ``fit_month``, forecasts for ``decision_months``."""

    fit_month: pd.Period
    decision_months: pd.PeriodIndex


def labelled_months(dataset: Dataset, lookback: int) -> pd.PeriodIndex:
    """Decision months with a full feature window and a known label (the return of m+1)."""
    months = dataset.window_months(lookback)
    known = dataset.labels().reindex(months).notna().all(axis=1).to_numpy()
    return months[known]


def decision_months(dataset: Dataset, lookback: int, min_train_months: int, *,
                    start: pd.Period | None = None, end: pd.Period | None = None) -> pd.PeriodIndex:
    """Walk-forward decision months: labelled, with >= ``min_train_months`` training rows, in [start, end].

    Training rows at m are labelled window months m' with m' + 1 <= m (see ``Dataset.training_set``).
    """
    labelled = labelled_months(dataset, lookback)
    # rows available at m = labelled months m' <= m - 1
    n_train = np.searchsorted(labelled.asi8, (labelled - 1).asi8, side="right")
    months = labelled[n_train >= min_train_months]
    if start is not None:
        months = months[months >= start]
    if end is not None:
        months = months[months <= end]
    return months


def live_months(dataset: Dataset, lookback: int, min_train_months: int, as_of: pd.Period) -> pd.PeriodIndex:
    """The walk-forward's decision months up to ``as_of``, extended by ``as_of`` itself (the live month)."""
    months = decision_months(dataset, lookback, min_train_months, end=as_of)
    if len(months) == 0 or months[-1] != as_of:
        months = months.append(pd.PeriodIndex([as_of]))
    return months


def static_split(dataset: Dataset, lookback: int, train_share: float, *,
                 end: pd.Period | None = None) -> Fold:
    """The original 80/20 split of the labelled months (<= ``end``): one fit, forecasts for the rest.

    The test part is the last ``ceil((1 - train_share) * n)`` labelled months (scikit-learn's
    ``train_test_split(shuffle=False)`` rounding); the fit uses the months before it, i.e.
    ``training_set(as_of=first test month)``.
    """
    months = labelled_months(dataset, lookback)
    if end is not None:
        months = months[months <= end]
    n_test = math.ceil(round((1.0 - train_share) * len(months), 9))
    if n_test < 1 or len(months) - n_test < 3:
        raise ConfigError(f"too few labelled months ({len(months)}) for a {train_share:.0%} static split")
    test = months[len(months) - n_test:]
    return Fold(fit_month=test[0], decision_months=test)


def walk_forward_folds(months: pd.PeriodIndex, refit_months: int,
                       breaks: Sequence[pd.Period] = ()) -> list[Fold]:
    """Split decision ``months`` into folds: a refit at the first month, then every ``refit_months``, and
    at each of ``breaks`` (``Dataset.feature_breaks``: a month from which a feature is no longer used).

    A break splits the fold that spans it and moves no other fold, so the fits before and after it
    keep their months (and identities).
    """
    if refit_months < 1:
        raise ConfigError(f"refit_months must be >= 1, not {refit_months}")
    starts = set(range(0, len(months), refit_months))
    starts |= {int(i) for i in months.get_indexer(pd.PeriodIndex(list(breaks), freq="M")) if i > 0}
    edges = [*sorted(starts), len(months)]
    return [Fold(fit_month=months[a], decision_months=months[a:b]) for a, b in itertools.pairwise(edges)]


def split_at_breaks(fold: Fold, breaks: Sequence[pd.Period]) -> list[Fold]:
    """``fold`` split at each of ``breaks`` among its decision months after the first (see above)."""
    parts = walk_forward_folds(fold.decision_months, max(len(fold.decision_months), 1), breaks)
    if not parts:
        return [fold]
    return [Fold(fit_month=fold.fit_month, decision_months=parts[0].decision_months), *parts[1:]]


def tuning_folds(folds: Sequence[Fold], tune_months: int) -> list[bool]:
    """Which folds search hyperparameters: the first, then the first fold at least ``tune_months``
    after the previous search. The folds between refit with the last search's choice."""
    flags, last = [], None
    for fold in folds:
        tune = last is None or tune_months <= 1 or (fold.fit_month - last).n >= tune_months
        if tune:
            last = fold.fit_month
        flags.append(tune)
    return flags
