"""Walk-forward and static backtests: no look-ahead, cadence, the 80/20 split, outputs and the CLI."""

from __future__ import annotations

import functools
import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.base import BaseEstimator, RegressorMixin, clone
from sklearn.linear_model import Ridge
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.tree import DecisionTreeRegressor

from job.backtest import (
    baseline_forecasts,
    decision_months,
    evaluate,
    labelled_months,
    static_split,
    sweep_result,
    walk_forward,
)
from job.cli import main
from job.config import load_settings
from job.dataset import RETURN_PREFIX, Dataset, synthetic_dataset
from job.errors import ConfigError, ExitCode
from job.metrics import performance, summarise
from job.models.base import WindowFlattener
from job.strategy import StrategyParams, run_strategy

LOOKBACK = 6
MIN_TRAIN = 36

# Factories are picklable (functools.partial of clone on a template), so loky workers can run them.
RIDGE = functools.partial(clone, make_pipeline(WindowFlattener(), StandardScaler(), Ridge(alpha=10.0)))
TREE = functools.partial(clone, make_pipeline(WindowFlattener(), DecisionTreeRegressor(max_depth=3, random_state=0)))


class MeanOfMembers(RegressorMixin, BaseEstimator):
    """A test ensemble: the plain average of already fitted members (what build_model's does with weights)."""

    def __init__(self, members: dict | None = None) -> None:
        self.members = members

    def fit(self, X: np.ndarray, y: np.ndarray) -> MeanOfMembers:
        self.members_ = dict(self.members or {})
        return self

    def predict(self, X: np.ndarray) -> np.ndarray:
        return np.mean([m.predict(X) for m in self.members_.values()], axis=0)


class LastLabelSpy(RegressorMixin, BaseEstimator):
    """Remembers the newest training label it saw and predicts it."""

    def fit(self, X: np.ndarray, y: np.ndarray) -> LastLabelSpy:
        self.last_label_, self.n_rows_ = np.array(y[-1]), len(y)
        return self

    def predict(self, X: np.ndarray) -> np.ndarray:
        return np.tile(self.last_label_, (len(X), 1))


def _settings(**backtest: object):
    overrides = {"models": {"lookback_months": LOOKBACK, "refit_months": {"ridge": 1, "tree": 3, "ensemble": 1},
                            "ensemble_members": ["ridge", "tree"]},
                 "backtest": {"min_train_months": MIN_TRAIN, "n_jobs": 1, **backtest}}
    return load_settings(environ={}, overrides=overrides)


@pytest.fixture(scope="module")
def data() -> Dataset:
    return synthetic_dataset(n_months=100, n_assets=4, n_macro=5, seed=3)


@pytest.fixture(scope="module")
def result(data: Dataset):
    return walk_forward(data, ["ridge", "tree"], _settings(), factories={"ridge": RIDGE, "tree": TREE})


def _perturbed_after(data: Dataset, month: pd.Period, seed: int = 9) -> Dataset:
    """The same dataset with every return after ``month`` (and the features holding them) changed."""
    rng = np.random.default_rng(seed)
    returns = data.returns.copy()
    later = returns.index > month
    returns.loc[later] += rng.normal(0, 0.05, (int(later.sum()), returns.shape[1]))
    features = data.features.copy()
    features.loc[later, [RETURN_PREFIX + a for a in data.assets]] = returns.loc[later].to_numpy()
    return Dataset(features=features, returns=returns, benchmark=data.benchmark, risk_free=data.risk_free)


@pytest.mark.parametrize("scheme", ["walk-forward", "static"])
def test_changing_labels_after_m_changes_no_forecast_or_weight_up_to_m(data: Dataset, scheme: str) -> None:
    """The leak test: perturb every return after month m; forecasts and weights for decision months <= m
    are bit-identical, while later ones (and the realised value of m, the return of m+1) do change."""
    settings = _settings()
    factories = {"ridge": RIDGE, "tree": TREE}
    base = walk_forward(data, ["ridge", "tree"], settings, scheme=scheme, factories=factories)
    months = base.forecasts["decision_month"].drop_duplicates().sort_values()
    m = months.iloc[len(months) // 2]
    changed = walk_forward(_perturbed_after(data, m), ["ridge", "tree"], settings, scheme=scheme,
                           factories=factories)
    for frame, other, cols in ((base.forecasts, changed.forecasts, ["predicted"]),
                               (base.weights, changed.weights, ["weight", "flag", "multiplier", "exposure"])):
        early, early_other = frame[frame["decision_month"] <= m], other[other["decision_month"] <= m]
        assert len(early) > 0
        pd.testing.assert_frame_equal(early[cols].reset_index(drop=True), early_other[cols].reset_index(drop=True),
                                      check_exact=True)
    late = base.forecasts["decision_month"] > m
    assert not np.array_equal(base.forecasts.loc[late, "predicted"], changed.forecasts.loc[late, "predicted"])
    at_m = base.forecasts["decision_month"] == m
    assert not np.array_equal(base.forecasts.loc[at_m, "realised"], changed.forecasts.loc[at_m, "realised"])


def test_training_rows_never_have_a_label_month_after_the_decision_month(data: Dataset, result) -> None:
    assert (result.forecasts["train_end"] <= result.forecasts["decision_month"]).all()
    assert (result.forecasts["fit_month"] <= result.forecasts["decision_month"]).all()
    assert (result.folds["train_end"] <= result.folds["first_decision"]).all()
    labelled = labelled_months(data, LOOKBACK)
    for fold in result.folds.itertuples():  # every labelled row up to the fit month, and nothing else
        assert fold.n_train == int((labelled + 1 <= fold.fit_month).sum())


def test_the_newest_label_a_fit_sees_is_the_return_of_its_fit_month(data: Dataset) -> None:
    months = decision_months(data, LOOKBACK, MIN_TRAIN)
    res = walk_forward(data, ["spy"], _settings(), end=months[11], factories={"spy": LastLabelSpy})
    assert len(res.folds) == 12
    for month, rows in res.forecasts.groupby("decision_month"):
        assert (rows["fit_month"] == month).all()
        np.testing.assert_array_equal(rows["predicted"], data.returns.loc[month, data.assets].to_numpy())


def test_first_decision_month_has_exactly_the_minimum_training_rows(result) -> None:
    first = result.folds.sort_values("fit_month").iloc[0]
    assert first["n_train"] == MIN_TRAIN


def test_refit_cadence_reuses_the_last_fit_in_between(result) -> None:
    tree = result.forecasts[result.forecasts["model"] == "tree"]
    per_month = tree.drop_duplicates("decision_month").sort_values("decision_month")
    fit_months = per_month["fit_month"].drop_duplicates()
    assert (np.diff(fit_months.astype("int64")) == 3).all()
    assert (per_month["decision_month"].astype("int64") - per_month["fit_month"].astype("int64")).max() == 2
    ridge = result.forecasts[result.forecasts["model"] == "ridge"]
    assert (ridge["fit_month"] == ridge["decision_month"]).all()


def test_static_scheme_is_the_original_80_20_split(data: Dataset) -> None:
    res = walk_forward(data, ["ridge"], _settings(), scheme="static", factories={"ridge": RIDGE})
    labelled = labelled_months(data, LOOKBACK)
    n_test = math.ceil(0.2 * len(labelled))
    months = res.forecasts["decision_month"].drop_duplicates()
    assert list(months) == list(labelled[-n_test:])
    assert len(res.folds) == 1
    assert res.folds.iloc[0]["n_train"] == len(labelled) - n_test
    assert res.original_window == (labelled[-n_test], labelled[-1])
    assert static_split(data, LOOKBACK, 0.8).fit_month == labelled[-n_test]


def test_outputs_follow_the_forecasts(data: Dataset, result) -> None:
    """Portfolio rows are the strategy applied to each model's forecast matrix; SPY and 1/N alongside."""
    ridge = result.forecasts[result.forecasts["model"] == "ridge"]
    pred = ridge.pivot(index="decision_month", columns="asset", values="predicted")[data.assets]
    months = pd.PeriodIndex(pred.index)
    realised = data.labels().loc[months, data.assets].to_numpy()
    run = run_strategy(pred.to_numpy(), realised, result.params, data.risk_free.loc[months + 1].to_numpy())
    port = result.portfolio[result.portfolio["model"] == "ridge"]
    np.testing.assert_allclose(port["portfolio_return"], run.gross_return)
    np.testing.assert_allclose(port["portfolio_return_net"], run.net_return)
    np.testing.assert_allclose(port["benchmark_return"], data.returns.loc[months + 1, "SPY"])
    np.testing.assert_allclose(port["equal_weight_return"], realised.mean(axis=1))
    assert (port["target_month"] == port["decision_month"] + 1).all()
    w = result.weights.groupby(["model", "decision_month"])["weight"].sum()
    np.testing.assert_allclose(w, 1.0)


@pytest.mark.slow
def test_parallel_folds_give_the_same_numbers(data: Dataset, result) -> None:
    again = walk_forward(data, ["ridge", "tree"], _settings(), n_jobs=2, factories={"ridge": RIDGE, "tree": TREE})
    pd.testing.assert_frame_equal(result.forecasts, again.forecasts, check_exact=True)
    pd.testing.assert_frame_equal(result.portfolio, again.portfolio, check_exact=True)


def test_ensemble_combines_the_latest_member_fits(data: Dataset) -> None:
    res = walk_forward(data, ["ridge", "tree", "ensemble"], _settings(),
                       factories={"ridge": RIDGE, "tree": TREE, "ensemble": MeanOfMembers})
    wide = res.forecasts.pivot_table(index=["decision_month", "asset"], columns="model", values="predicted")
    np.testing.assert_allclose(wide["ensemble"], (wide["ridge"] + wide["tree"]) / 2, rtol=0, atol=1e-15)


def test_baselines_are_persistence_and_the_training_mean(data: Dataset, result) -> None:
    months = decision_months(data, LOOKBACK, MIN_TRAIN)
    base = baseline_forecasts(data, months, LOOKBACK)
    m = months[7]
    pers = base[(base["model"] == "persistence") & (base["decision_month"] == m)]
    np.testing.assert_allclose(pers["predicted"], data.returns.loc[m, data.assets])
    hist = base[(base["model"] == "historical-mean") & (base["decision_month"] == m)]
    _, y, _ = data.training_set(LOOKBACK, as_of=m)
    np.testing.assert_allclose(hist["predicted"], y.mean(axis=0), rtol=1e-12)
    assert len(result.baselines) == 3 * len(months) * len(data.assets)  # persistence, historical-mean, momentum


def test_summary_has_models_periods_metrics_and_the_original_window(data: Dataset, result) -> None:
    doc = summarise(result, _settings())
    assert set(doc["models"]) == {"ridge", "tree"}
    assert set(doc["models"]["ridge"]) == {"full", "full_net", "last_20pct", "last_20pct_net"}
    full = doc["models"]["ridge"]["full"]
    assert isinstance(full["cagr"], float) and isinstance(full["avg_turnover"], float)
    assert doc["windows"]["last_20pct"]["start"] == str(result.original_window[0] + 1)
    spy = data.returns.loc[result.portfolio["target_month"].drop_duplicates(), "SPY"]
    assert doc["benchmark"]["full"]["cagr"] == pytest.approx(performance(spy, data.risk_free)["cagr"])
    assert doc["forecast_quality"]["by_model"]["ridge"]["mae_ratio_historical_mean"] is not None
    json.dumps(doc)  # plain data


def test_sweep_result_matches_reevaluating_the_forecasts(data: Dataset, result) -> None:
    table = sweep_result(result, data, [0.0, 0.02], [1.0, 5.0], [0.3])
    params = StrategyParams(threshold=0.02, factor=5.0, shrinkage=0.3)
    _, port = evaluate(result.forecasts, data, params)
    row = table[(table["model"] == "tree") & (table["threshold"] == 0.02) & (table["factor"] == 5.0)].iloc[0]
    tree = port[port["model"] == "tree"].set_index("target_month")
    stats = performance(tree["portfolio_return_net"], tree["risk_free"])
    assert row["sharpe_net"] == pytest.approx(stats["sharpe"], rel=1e-12)


def test_too_little_history_is_a_configuration_error(data: Dataset) -> None:
    with pytest.raises(ConfigError, match="no decision months"):
        walk_forward(data, ["ridge"], _settings(min_train_months=500), factories={"ridge": RIDGE})
    with pytest.raises(ConfigError, match="scheme"):
        walk_forward(data, ["ridge"], _settings(), scheme="rolling", factories={"ridge": RIDGE})


def test_levered_mode_without_a_risk_free_rate_is_a_configuration_error(data: Dataset, result) -> None:
    bare = Dataset(features=data.features, returns=data.returns, benchmark="SPY")
    with pytest.raises(ConfigError, match="risk-free"):
        evaluate(result.forecasts, bare, StrategyParams(mode="levered"))


@pytest.mark.slow
def test_leak_on_the_real_snapshot(snapshot_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> None:
    """The leak test on real data with the real models (through build_model): perturb every return after
    month m in the dataset loaded from the snapshot warehouse; forecasts and weights up to m stay identical."""
    from job.warehouse import load_dataset

    path = tmp_path_factory.mktemp("real") / "warehouse.duckdb"
    with pytest.raises(SystemExit) as exit_info:
        main(["--warehouse", str(path), "--store", str(path.parent / "unused"), "ingest", "--source", "snapshot",
              "--snapshot-dir", str(snapshot_dir)])
    assert exit_info.value.code == 0
    settings = load_settings(environ={}, overrides={"backtest": {"n_jobs": 1}})
    data, _ = load_dataset(settings, path, as_of=pd.Period("2020-12", "M"))
    m = pd.Period("2019-06", "M")
    window = {"start": m - 3, "end": m + 3}
    base = walk_forward(data, ["persistence", "ridge"], settings, **window)
    changed = walk_forward(_perturbed_after(data, m), ["persistence", "ridge"], settings, **window)
    for frame, other, cols in ((base.forecasts, changed.forecasts, ["model", "decision_month", "asset", "predicted"]),
                               (base.weights, changed.weights, ["model", "decision_month", "asset", "weight", "flag"])):
        early = frame[frame["decision_month"] <= m][cols].reset_index(drop=True)
        assert len(early) == 2 * 4 * len(data.assets)
        pd.testing.assert_frame_equal(early, other[other["decision_month"] <= m][cols].reset_index(drop=True),
                                      check_exact=True)
    late = base.forecasts["decision_month"] > m
    assert not np.array_equal(base.forecasts.loc[late, "predicted"], changed.forecasts.loc[late, "predicted"])


# ---- the command -------------------------------------------------------------------------------------------

def _rotation(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exit_info:
        main(args)
    out = capsys.readouterr()
    return int(exit_info.value.code), out.out, out.err


@pytest.fixture(scope="module")
def sample_warehouse(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("wh") / "warehouse.duckdb"
    with pytest.raises(SystemExit) as exit_info:
        main(["--warehouse", str(path), "--store", str(path.parent / "unused"), "ingest", "--source", "sample"])
    assert exit_info.value.code == 0
    return path


@pytest.mark.slow
def test_backtest_command_publishes_backtest_metrics_and_sweep(sample_warehouse: Path, tmp_path: Path,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    """It runs the baselines through the walk-forward, writes the artifacts and a manifest, exit code 0."""
    store = tmp_path / "store"
    code, out, err = _rotation(["--warehouse", str(sample_warehouse), "--store", str(store), "backtest",
                                "--models", "persistence,historical-mean", "--n-jobs", "1", "--preset", "notebook",
                                "--sweep", "--sweep-thresholds", "0,0.01", "--sweep-factors", "1,10",
                                "--sweep-shrinkages", "0,0.5"], capsys)
    assert code == 0, err
    assert "benchmark" in out and "sweep best" in out
    manifest = json.loads(next(store.glob("runs/as_of=*/manifest.json")).read_text())
    kinds = {a["path"].split("/")[0] for a in manifest["artifacts"]}
    assert kinds == {"backtest", "backtest_forecasts", "backtest_weights", "metrics", "sweep"}
    metrics_path = next(a["path"] for a in manifest["artifacts"] if a["path"].startswith("metrics/"))
    metrics = pd.read_parquet(store / metrics_path).set_index("path")["value"]
    assert metrics["strategy.threshold"] == 0.10 and metrics["strategy.factor"] == 10.0
    assert isinstance(metrics["models.historical-mean.full.cagr"], float)
    sweep = pd.read_parquet(store / next(a["path"] for a in manifest["artifacts"] if a["path"].startswith("sweep/")))
    assert len(sweep) == 2 * 8


@pytest.mark.parametrize(("args", "message"), [
    (["--models", "bogus"], "unknown model"),
    (["--factor", "0.5"], "factor must be >= 1"),
    (["--as-of", "2025-13"], "invalid month"),
])
def test_backtest_command_rejects_bad_options_with_exit_code_2(sample_warehouse: Path, tmp_path: Path,
                                                               capsys: pytest.CaptureFixture[str],
                                                               args: list[str], message: str) -> None:
    code, _, err = _rotation(["--warehouse", str(sample_warehouse), "--store", str(tmp_path), "backtest", *args],
                             capsys)
    assert code == ExitCode.USAGE
    assert message in err and "Traceback" not in err


def test_backtest_command_without_a_warehouse_says_to_ingest(tmp_path: Path,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = _rotation(["--warehouse", str(tmp_path / "none.duckdb"), "--store", str(tmp_path), "backtest",
                              "--models", "persistence"], capsys)
    assert code == ExitCode.USAGE
    assert "rotation ingest" in err


def test_a_feature_break_splits_only_the_fold_that_spans_it() -> None:
    """Folds keep their cadence; a break (a month from which a feature is not used) starts a new fold
    inside the one that spans it, and the static split is cut the same way."""
    from job.schedule import Fold, split_at_breaks, walk_forward_folds

    months = pd.period_range("2010-01", periods=30, freq="M")
    plain = walk_forward_folds(months, 12)
    assert [str(f.fit_month) for f in plain] == ["2010-01", "2011-01", "2012-01"]
    broken = walk_forward_folds(months, 12, [pd.Period("2011-05", "M"), pd.Period("2012-01", "M"),
                                             pd.Period("2009-03", "M")])
    assert [(str(f.fit_month), len(f.decision_months)) for f in broken] == [
        ("2010-01", 12), ("2011-01", 4), ("2011-05", 8), ("2012-01", 6)]
    assert pd.PeriodIndex(np.concatenate([f.decision_months for f in broken])).equals(months)
    static = split_at_breaks(Fold(fit_month=months[10], decision_months=months[10:]), [pd.Period("2011-05", "M")])
    assert [(str(f.fit_month), len(f.decision_months)) for f in static] == [("2010-11", 6), ("2011-05", 14)]
    assert walk_forward_folds(months[:0], 12, [months[3]]) == []
