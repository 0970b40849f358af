"""Execution lag: executed returns from the real daily closes, booked by the backtest, compared with
trading at the month-end close on the same months."""

from __future__ import annotations

import csv
import dataclasses
import functools
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.base import clone
from sklearn.linear_model import Ridge
from sklearn.pipeline import make_pipeline

from job.backtest import booked_returns, evaluate, walk_forward
from job.config import load_settings
from job.dataset import synthetic_dataset
from job.execution import assumption, execution_summary
from job.models.base import WindowFlattener
from job.strategy import StrategyParams

RIDGE = functools.partial(clone, make_pipeline(WindowFlattener(), Ridge(alpha=10.0)))


def _close(snapshot: Path, ticker: str, day: str) -> float:
    """The Close of ``day`` in the snapshot's own CSV (yfinance's adjusted close), read by hand."""
    with (snapshot / "prices" / f"{ticker}.csv").open(newline="") as handle:
        for row in csv.DictReader(handle):
            if row["Date"][:10] == day:
                return float(row["Close"])
    raise AssertionError(f"{ticker} has no close on {day}")


@pytest.fixture(scope="module")
def snapshot_dataset(snapshot_warehouse: Path):
    from job.warehouse import load_dataset

    settings = load_settings(environ={}, overrides={"data": {"source": "snapshot"}})
    return load_dataset(settings, snapshot_warehouse)


def test_executed_return_of_a_known_month_is_two_closes(snapshot_dataset, snapshot_dir: Path) -> None:
    """Decision at the end of 2020-02: the run is on 2020-03-03, the trade at the close of Wed 2020-03-04
    (the first trading day from the 4th), held to Mon 2020-04-06 (the 4th was a Saturday)."""
    dataset, _ = snapshot_dataset
    executed = dataset.executed_returns
    assert executed is not None and executed.attrs["execution_lag_days"] == 4
    assert executed.attrs["execution_dates"]["2020-03"] == ["2020-03-04", "2020-04-06"]
    for ticker in ("SPY", "VDE", "VGT"):
        by_hand = _close(snapshot_dir, ticker, "2020-04-06") / _close(snapshot_dir, ticker, "2020-03-04") - 1.0
        assert executed.loc[pd.Period("2020-03", "M"), ticker] == pytest.approx(by_hand, rel=1e-12)
    # the calendar-month label of the same decision differs: it is close(03-31) / close(02-28) - 1
    month_end = _close(snapshot_dir, "SPY", "2020-03-31") / _close(snapshot_dir, "SPY", "2020-02-28") - 1.0
    assert dataset.labels().loc[pd.Period("2020-02", "M"), "SPY"] == pytest.approx(month_end, rel=1e-12)
    booked = booked_returns(dataset, pd.PeriodIndex([pd.Period("2020-02", "M")]))
    assert booked.loc[pd.Period("2020-02", "M"), "SPY"] == pytest.approx(
        _close(snapshot_dir, "SPY", "2020-04-06") / _close(snapshot_dir, "SPY", "2020-03-04") - 1.0, rel=1e-12)


def test_the_as_of_months_executed_return_is_not_known_yet(snapshot_dataset) -> None:
    """Point in time: the executed return of the as-of month needs the next month's close; no price after
    the as-of month is read, and a truncated dataset keeps only what was known."""
    dataset, as_of = snapshot_dataset
    executed = dataset.executed_returns
    assert executed.loc[as_of].isna().all()
    assert executed.loc[: as_of - 1].iloc[-12:].notna().all().all()
    cut = dataset.truncate(as_of - 6)
    assert cut.executed_returns.index[-1] == as_of - 7


def test_lag_zero_books_calendar_months(snapshot_warehouse: Path) -> None:
    from job.warehouse import load_dataset

    settings = load_settings(environ={}, overrides={"data": {"source": "snapshot"},
                                                    "backtest": {"execution_lag_days": 0}})
    dataset, _ = load_dataset(settings, snapshot_warehouse)
    assert dataset.executed_returns is None
    months = dataset.months[-5:-1]
    pd.testing.assert_frame_equal(booked_returns(dataset, months), dataset.labels().reindex(months)[dataset.assets])


def _with_executed(dataset, executed: pd.DataFrame):
    return dataclasses.replace(dataset, executed_returns=executed)


def test_evaluate_books_executed_returns_and_drops_the_unknown_month() -> None:
    """The portfolio, benchmark and equal weight are realised on executed returns; the last decision
    month (its executed return unknown) keeps its weights but has no portfolio row."""
    data = synthetic_dataset(n_months=60)
    rng = np.random.default_rng(3)
    executed = pd.DataFrame(rng.normal(0.01, 0.05, data.returns.shape), index=data.months, columns=data.assets)
    executed.iloc[-1] = np.nan
    lagged = _with_executed(data, executed)
    months = data.months[20:-1]  # decision months; the last one's target is the data's last month
    forecasts = pd.DataFrame({"model": "m", "decision_month": np.repeat(months.to_numpy(), len(data.assets)),
                              "asset": np.tile(data.assets, len(months)),
                              "predicted": rng.normal(0, 0.02, len(months) * len(data.assets))})
    params = StrategyParams(threshold=0.15, factor=5.0, shrinkage=0.3, mode="normalised", cost_bps=10.0)
    weights, port = evaluate(forecasts, lagged, params)
    assert weights["decision_month"].nunique() == len(months)
    assert len(port) == len(months) - 1 and port["decision_month"].iloc[-1] == months[-2]
    w = weights[weights["decision_month"] == months[3]].set_index("asset")["exposure"]
    assert port["portfolio_return"].iloc[3] == pytest.approx(float((w * executed.loc[months[3] + 1]).sum()), rel=1e-12)
    assert port["benchmark_return"].iloc[3] == executed.loc[months[3] + 1, "SPY"]
    assert port["equal_weight_return"].iloc[3] == pytest.approx(executed.loc[months[3] + 1].mean(), rel=1e-12)


def test_execution_summary_compares_the_same_months() -> None:
    """Executed returns equal to the calendar months: no difference; shifted ones: a difference, and
    both timings measured on the executed portfolio's months."""
    data = synthetic_dataset(n_months=120)
    settings = load_settings(environ={}, overrides={"backtest": {"n_jobs": 1, "min_train_months": 36},
                                                    "models": {"lookback_months": 6}})
    same = data.returns.copy()
    same.attrs["execution_lag_days"] = 4
    result = walk_forward(_with_executed(data, same), ["ridge"], settings, factories={"ridge": RIDGE})
    doc = execution_summary(result, _with_executed(data, same), result.params)
    ridge = doc["models"]["ridge"]
    assert ridge["executed_net"] == ridge["month_end_net"]
    assert all(v == 0 for v in ridge["difference_net"].values())
    assert doc["window"]["months"] == len(result.portfolio)
    assert "day 4" in doc["assumption"]
    shifted = data.returns.shift(-1)  # a different booking; its last month unknown
    shifted.attrs["execution_lag_days"] = 4
    lagged = _with_executed(data, shifted)
    result = walk_forward(lagged, ["ridge"], settings, factories={"ridge": RIDGE})
    doc = execution_summary(result, lagged, result.params)
    assert doc["window"]["months"] == len(result.portfolio) == result.forecasts["decision_month"].nunique() - 1
    assert doc["models"]["ridge"]["difference_net"]["sharpe"] != 0
    assert set(doc["models"]) == {"ridge", "benchmark", "equal_weight"}


def test_assumption_sentences() -> None:
    assert "last trading day" in assumption(0)
    text = assumption(4, ("2025-01", "2025-02-04", "2025-03-04"))
    assert "day 4" in text and "2025-02-04" in text and "calendar-month" in text
