"""The point-in-time Dataset: one row per decision month, aligned returns, labels = next month."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from job import warehouse
from job.config import load_settings
from job.dataset import Dataset, DatasetInfo, presence, synthetic_dataset
from job.errors import ConfigError

VANGUARD_ETF = ["SPY", "VCR", "VDC", "VDE", "VFH", "VNQ", "VHT", "VIS", "VGT", "VAW", "VOX", "VPU"]


@pytest.fixture(scope="module")
def snapshot_dataset(snapshot_warehouse: Path) -> tuple[Dataset, pd.Period]:
    return warehouse.load_dataset(load_settings(environ={}), snapshot_warehouse)


def test_default_as_of_is_the_last_month_with_fresh_macro_data(snapshot_dataset) -> None:
    """The snapshot's prices run to 2025-12 but its newest FRED-MD vintage ends 2025-01: as-of 2025-02."""
    _, as_of = snapshot_dataset
    assert as_of == pd.Period("2025-02", "M")


def test_one_feature_row_per_decision_month(snapshot_dataset) -> None:
    dataset, as_of = snapshot_dataset
    assert dataset.months.equals(pd.period_range("2004-10", as_of, freq="M"))
    assert not dataset.features.isna().to_numpy().any()
    info = dataset.info
    assert isinstance(info, DatasetInfo) and info.as_of == "2025-02" and info.first_month == "2004-10"
    assert info.n_macro_features > 100 and info.source == "snapshot" and len(info.dataset_fingerprint) > 8
    assert info.look_ahead is False and dataset.publication_lag_months == 1
    assert not dataset.synthetic and not info.synthetic
    assert info.sectors["SPY"] and list(info.sectors) == VANGUARD_ETF
    # a balanced universe: every asset present from the first month, no late asset
    assert set(info.asset_entry_months.values()) == {"2004-10"} and not info.late_assets
    assert dataset.mask.to_numpy().all()


def test_vanguard_etf_returns_are_complete_and_aligned(snapshot_dataset) -> None:
    dataset, _ = snapshot_dataset
    assert dataset.assets == VANGUARD_ETF and dataset.benchmark == "SPY"
    assert not dataset.returns.isna().to_numpy().any()
    assert dataset.returns.index.equals(dataset.months)
    own = dataset.features.iloc[:, dataset.return_feature_index()].to_numpy()
    np.testing.assert_array_equal(own, dataset.returns.to_numpy())
    assert dataset.returns.loc[pd.Period("2008-10", "M"), "SPY"] == pytest.approx(-0.165, abs=0.005)
    assert not dataset.risk_free.isna().any()
    assert dataset.risk_free[pd.Period("2008-01", "M")] == pytest.approx(0.0021)


def test_labels_are_next_month_returns_and_training_stops_at_as_of(snapshot_dataset) -> None:
    dataset, as_of = snapshot_dataset
    labels = dataset.labels()
    month = pd.Period("2010-05", "M")
    pd.testing.assert_series_equal(labels.loc[month], dataset.returns.loc[month + 1], check_names=False)
    assert labels.loc[as_of].isna().all()                 # the month to forecast is not known yet
    x, y, months = dataset.training_set(12, as_of)
    assert months.max() + 1 <= as_of
    assert x.shape == (len(months), 12, dataset.features.shape[1]) and y.shape == (len(months), 12)


def test_explicit_as_of_and_publication_lag(snapshot_warehouse: Path) -> None:
    """An earlier --as-of truncates; lag 0 (from the override or the config) is labelled look-ahead."""
    settings = load_settings(environ={})
    dataset, as_of = warehouse.load_dataset(settings, snapshot_warehouse, as_of=pd.Period("2012-06", "M"),
                                            publication_lag=0)
    assert as_of == pd.Period("2012-06", "M") and dataset.months[-1] == as_of
    assert dataset.info.look_ahead is True and dataset.publication_lag_months == 0
    lag0 = settings.with_overrides({"data": {"publication_lag_months": 0}})
    dataset, _ = warehouse.load_dataset(lag0, snapshot_warehouse, as_of=pd.Period("2006-06", "M"))
    assert dataset.info.look_ahead is True
    with pytest.raises(ConfigError, match="no complete data for --as-of 2030-01"):
        warehouse.load_dataset(settings, snapshot_warehouse, as_of=pd.Period("2030-01", "M"))


def test_missing_warehouse_is_a_usage_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no warehouse at") as info:
        warehouse.load_dataset(load_settings(environ={}), tmp_path / "absent.duckdb")
    assert info.value.exit_code == 2


def test_sample_dataset_is_labelled_synthetic(sample_warehouse: Path) -> None:
    dataset, as_of = warehouse.load_dataset(load_settings(environ={}), sample_warehouse)
    assert dataset.synthetic and dataset.info.synthetic and dataset.info.source == "sample"
    assert dataset.months[0] == pd.Period("2004-10", "M") and dataset.months[-1] == as_of
    assert dataset.assets[0] == "SPY" and len(dataset.assets) == 12


def test_dataset_contract_rejects_gaps_and_missing_values(synthetic: Dataset) -> None:
    with pytest.raises(ValueError, match="contiguous"):
        Dataset(features=synthetic.features.drop(synthetic.months[5]), returns=synthetic.returns, benchmark="SPY")
    holed = synthetic.features.copy()
    holed.iloc[3, 2] = np.nan
    with pytest.raises(ValueError, match="missing values"):
        Dataset(features=holed, returns=synthetic.returns, benchmark="SPY")
    with pytest.raises(ValueError, match="benchmark"):
        Dataset(features=synthetic.features, returns=synthetic.returns, benchmark="QQQ")


def test_windows_never_reach_past_their_decision_month(synthetic: Dataset) -> None:
    windows = synthetic.windows(6)
    assert windows.shape == (len(synthetic.months) - 5, 6, synthetic.features.shape[1])
    np.testing.assert_array_equal(windows[-1, -1], synthetic.features.iloc[-1].to_numpy())
    truncated = synthetic.truncate(synthetic.months[100])
    assert truncated.months[-1] == synthetic.months[100] and truncated.returns.index[-1] == synthetic.months[100]
    with pytest.raises(ValueError, match="no full 6-month feature window"):
        synthetic.windows(6, synthetic.months[:3])
    assert synthetic_dataset(seed=0).features.equals(synthetic.features)     # deterministic given a seed


def test_late_assets_are_masked_filled_and_realised_only_when_present(synthetic: Dataset) -> None:
    """Unbalanced panel: S2 has no return before month 40. Its features and fitting labels hold the
    cross-sectional mean of the others; it is present (forecast, held, evaluated) once it has
    ``min_history`` months of returns; its realised labels are missing before that."""
    returns = synthetic.returns.copy()
    returns.iloc[:40, 2] = np.nan
    mask, first, entry = presence(returns, min_history=13)
    assert first["S2"] == "2008-05" and entry["S2"] == "2009-05" and entry["SPY"] == "2005-01"
    assert not mask["S2"].iloc[:52].any() and mask["S2"].iloc[52:].all() and mask.drop(columns="S2").all().all()
    dataset = Dataset(features=synthetic.features, returns=returns, benchmark="SPY", present=mask,
                      info=DatasetInfo(asset_first_months=first, asset_entry_months=entry, first_month="2005-01"))
    assert dataset.info.late_assets == {"S2": "2009-05"}
    filled = dataset.filled_returns
    np.testing.assert_allclose(filled.iloc[10, 2], returns.iloc[10].drop("S2").mean())
    assert filled.drop(columns="S2").equals(returns.drop(columns="S2"))
    labels, realised = dataset.labels(), dataset.realised_labels()
    assert not labels.iloc[:-1].isna().to_numpy().any()          # every output fits on every row
    assert realised["S2"].iloc[:52].isna().all() and realised["S2"].iloc[52:-1].notna().all()
    _x, y, months = dataset.training_set(12, dataset.months[-1])
    assert len(months) == len(dataset.months) - 12 and not np.isnan(y).any()
    everywhere = pd.DataFrame(True, index=returns.index, columns=returns.columns)
    with pytest.raises(ValueError, match="S2 is present in 2005-01 without a return"):
        Dataset(features=synthetic.features, returns=returns, benchmark="SPY", present=everywhere)


def test_a_series_that_stops_expires_at_its_first_missing_month(snapshot_dataset, snapshot_warehouse: Path) -> None:
    """At 2025-02 the snapshot's FRED-MD 'S&P PE ratio' is older than data.max_staleness_months, and CP3Mx
    has no value for 2020-05: each is a feature of the fits before that month and of none from it. The
    dataset as of 2025-01 has the same feature rows, so next month's run keeps the earlier fits."""
    dataset, as_of = snapshot_dataset
    feb, jan = pd.Period("2025-02", "M"), pd.Period("2025-01", "M")
    assert dataset.expired == {"macro:CP3Mx": pd.Period("2020-05", "M"), "macro:S&P PE ratio": feb}
    assert dataset.info.expired_series == {"CP3Mx": "2020-05", "S&P PE ratio": "2025-02"}
    assert dataset.feature_breaks == (pd.Period("2020-05", "M"), feb)
    assert dataset.masked_at(jan) == ("macro:CP3Mx",) and dataset.masked_at(as_of) == ("macro:CP3Mx",
                                                                                       "macro:S&P PE ratio")
    assert (dataset.features.loc[feb:, "macro:S&P PE ratio"] == 0.0).all()
    assert (dataset.view(dataset.masked_at(as_of)).features[["macro:CP3Mx", "macro:S&P PE ratio"]] == 0.0).all().all()
    earlier, _ = warehouse.load_dataset(load_settings(environ={}), snapshot_warehouse, as_of=jan)
    assert earlier.expired == {"macro:CP3Mx": pd.Period("2020-05", "M")}
    pd.testing.assert_frame_equal(dataset.features.loc[:jan], earlier.features, check_exact=True)
    assert not set(dataset.info.dropped_series) & set(dataset.info.expired_series)
