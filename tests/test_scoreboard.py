"""One scoreboard on the same rows, momentum as a baseline through the allocation, the leverage rule."""

from __future__ import annotations

import functools
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
from sklearn.base import clone
from sklearn.linear_model import Ridge
from sklearn.pipeline import make_pipeline

from job.backtest import baseline_forecasts, decision_months, evaluate, walk_forward
from job.config import load_settings
from job.dataset import synthetic_dataset
from job.leverage import leverage_sentence, leverage_summary
from job.metrics import decision_sections, summarise
from job.models.base import WindowFlattener
from job.models.baselines import MomentumForecaster
from job.scoreboard import all_forecasts, baseline_backtest, common_rows, score, scoreboard

RIDGE = functools.partial(clone, make_pipeline(WindowFlattener(), Ridge(alpha=10.0)))


@pytest.fixture(scope="module")
def setup():
    data = synthetic_dataset(n_months=120)
    settings = load_settings(environ={}, overrides={"backtest": {"n_jobs": 1, "min_train_months": 36},
                                                    "models": {"lookback_months": 12}})
    result = walk_forward(data, ["ridge"], settings, factories={"ridge": RIDGE})
    return data, settings, result


def test_momentum_baseline_is_the_momentum_forecaster(setup) -> None:
    """The closed-form baseline equals MomentumForecaster's prediction on the same windows."""
    data, _, _ = setup
    months = decision_months(data, 12, 36)
    base = baseline_forecasts(data, months, 12)
    mom = base[base["model"] == "momentum"].pivot(index="decision_month", columns="asset", values="predicted")
    X, y, _ = data.training_set(12, months[-1])
    model = MomentumForecaster(data.return_feature_index(), months=12, skip=1, cv_splits=3).fit(X, y)
    expected = model.predict(data.windows(12, months))
    np.testing.assert_allclose(mom.loc[months, data.assets].to_numpy(), expected, rtol=1e-10, atol=1e-14)
    assert set(base["model"]) == {"persistence", "historical-mean", "momentum"}
    six = baseline_forecasts(data, months, 12, momentum_months=6, momentum_skip=0)
    m = months[4]
    by_hand = (1 + data.returns.loc[m - 5:m, data.assets]).prod() ** (1 / 6) - 1
    got = six[(six["model"] == "momentum") & (six["decision_month"] == m)].set_index("asset")["predicted"]
    np.testing.assert_allclose(got[data.assets], by_hand, rtol=1e-10)


def test_scoreboard_scores_every_model_on_the_same_rows(setup) -> None:
    """A model missing a month removes that month for everyone; figures match hand computations."""
    _, _, result = setup
    forecasts = result.forecasts.copy()
    dropped = forecasts["decision_month"].unique()[5]
    forecasts.loc[forecasts["decision_month"] == dropped, "predicted"] = np.nan
    holed = SimpleNamespace(forecasts=forecasts, baselines=result.baselines)
    board = scoreboard(holed)
    months = result.forecasts["decision_month"].nunique()
    assert board["window"]["months"] == months - 1 and board["window"]["models"] == 4
    rows = common_rows(all_forecasts(holed))
    assert dropped not in set(rows["decision_month"])
    hist = result.baselines[(result.baselines["model"] == "historical-mean")
                            & (result.baselines["decision_month"] != dropped)]
    entry = board["models"]["historical-mean"]["common"]
    assert entry["kind"] == "baseline" and board["models"]["ridge"]["common"]["kind"] == "model"
    assert entry["mae"] == pytest.approx((hist["predicted"] - hist["realised"]).abs().mean(), rel=1e-12)
    assert entry["sign_hit_rate"] == pytest.approx(((hist["predicted"] > 0) == (hist["realised"] > 0)).mean())
    ridge = board["models"]["ridge"]["common"]
    assert ridge["mae_ratio_vs_historical_mean"] == pytest.approx(ridge["mae"] / entry["mae"], rel=1e-12)
    assert sorted(v["common"]["mae_rank"] for v in board["models"].values()) == [1, 2, 3, 4]
    # the published forecast quality and IC significance use the same rows
    doc = summarise(SimpleNamespace(**{**vars(result), "forecasts": forecasts}))
    assert doc["forecast_quality"]["by_model"]["historical-mean"]["mae"] == pytest.approx(entry["mae"], rel=1e-12)
    assert doc["significance"]["by_model"]["ridge"]["rank_ic_months"] == ridge["rank_ic_months"]


def test_rank_hit_rate_is_top_half_agreement() -> None:
    """4 assets: the forecast puts A, B in the top half; the realised top half is A, C: 2 of 4 agree."""
    rows = pd.DataFrame({"decision_month": pd.Period("2020-01", "M"), "asset": list("ABCD"),
                         "predicted": [0.04, 0.03, -0.01, -0.02], "realised": [0.05, -0.01, 0.02, -0.03]})
    figures = score(rows)
    assert figures["rank_hit_rate"] == 0.5
    assert figures["sign_hit_rate"] == 0.5  # A and D right; B (+ vs -) and C (- vs +) wrong
    assert figures["mae"] == pytest.approx(np.mean([0.01, 0.04, 0.03, 0.01]))


def test_baselines_run_through_the_same_allocation(setup) -> None:
    """The baselines' portfolios are evaluate() of their forecasts; their metrics sit beside the models'."""
    data, settings, result = setup
    _, port = baseline_backtest(result, data, result.params)
    assert set(port["model"]) == {"persistence", "historical-mean", "momentum"}
    _, direct = evaluate(result.baselines[result.baselines["model"] == "momentum"], data, result.params)
    pd.testing.assert_frame_equal(port[port["model"] == "momentum"].reset_index(drop=True), direct)
    doc = summarise(result, settings)
    sections, _, _ = decision_sections(result, data, result.params, settings, ["ridge"], doc)
    base = sections["baselines"]
    assert set(base["performance"]["models"]) == {"persistence", "historical-mean", "momentum"}
    mom = base["relative"]["models"]["momentum"]["full_net"]
    assert 0 <= mom["sharpe_difference_p_vs_benchmark"] <= 1
    assert "equal_weight" not in base["relative"]["models"]
    assert set(sections["verdict"]) >= {"chosen_model", "sentence_1", "sentence_2", "sentence_3", "sentence_4"}
    assert sections["verdict"]["chosen_model"] == "ridge"


def test_leverage_usage_and_its_sentence() -> None:
    rows = pd.DataFrame({"model": "m", "decision_month": np.repeat(pd.period_range("2020-01", periods=3, freq="M"), 2),
                         "asset": ["A", "B"] * 3, "predicted": [0.01, -0.02, 0.2, 0.03, 0.17, 0.18]})
    doc = leverage_summary(rows, 0.15, 5.0)
    m = doc["models"]["m"]
    assert m["predicted"]["n_flagged"] == 3 and m["predicted"]["months_flagged"] == 2
    assert m["triggers"] == {"A": 2, "B": 1}
    assert m["predicted"]["max"] == 0.2 and m["predicted"]["headroom"] == pytest.approx(-0.05)
    assert "triggered for m in 2 of 3 months" in doc["sentence"] and "most often A, 2 times" in doc["sentence"]
    quiet = leverage_summary(rows.assign(predicted=rows["predicted"] / 10), 0.15)
    assert quiet["sentence"] == ("At the 15 % threshold the leverage rule never triggered: predicted monthly "
                                 "returns ranged from \u22120.2 % to +2 %.")
    assert leverage_sentence({}, 0.15).startswith("There were no")
