"""Configuration: defaults < TOML file < ROTATION_* environment < flags, typed, secrets masked."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path

import duckdb
import pytest
from pydantic import ValidationError

from job.config import load_settings, masked_environment, settings_as_dict
from job.errors import ConfigError

ORIGINAL = ["SPY", "VCR", "VCSAX", "VDE", "VFAIX", "VGSLX", "VHCIX", "VINAX", "VITAX", "VMIAX", "VOX", "VUIAX"]
VANGUARD_ETF = ["SPY", "VCR", "VDC", "VDE", "VFH", "VNQ", "VHT", "VIS", "VGT", "VAW", "VOX", "VPU"]
SECRET = "supersecretvalue123"
AWS_SECRET = "wJalrXUtnFEMIK7MDENGbPxRfiCYzzSECRETKEY"
# What Kubernetes injects into every pod of a namespace holding a Service named `rotation` (one TCP port 80
# named http) and one named `rotation-api`, unless the pod sets enableServiceLinks: false.
SERVICE_LINKS = {
    "ROTATION_SERVICE_HOST": "10.0.0.1",
    "ROTATION_SERVICE_PORT": "80",
    "ROTATION_SERVICE_PORT_HTTP": "80",
    "ROTATION_PORT": "tcp://10.0.0.1:80",
    "ROTATION_PORT_80_TCP": "tcp://10.0.0.1:80",
    "ROTATION_PORT_80_TCP_PROTO": "tcp",
    "ROTATION_PORT_80_TCP_PORT": "80",
    "ROTATION_PORT_80_TCP_ADDR": "10.0.0.1",
    "ROTATION_API_SERVICE_HOST": "10.0.0.2",
    "ROTATION_API_PORT_8080_UDP_ADDR": "10.0.0.2",
}


def _show(rotation, *args: str, env: dict[str, str] | None = None) -> dict:
    result = rotation(*args, "config", "show", env=env)
    assert result.exit_code == 0, result.stderr
    return json.loads(result.stdout)


def _write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_defaults_hold_both_universes_and_the_window() -> None:
    """The package defaults carry the original 12 tickers, the vanguard-etf classes and start 2004-10."""
    settings = load_settings(environ={})
    assert settings.universes["original"].tickers == ORIGINAL
    assert settings.universes["vanguard-etf"].tickers == VANGUARD_ETF
    assert settings.universes["vanguard-etf"].benchmark == "SPY"
    assert settings.data.start == "2004-10"
    assert settings.data.source == "sample"
    assert settings.universe("snapshot").name == "vanguard-etf"
    assert settings.universe("sample").name == "original"


def test_each_layer_overrides_the_one_below(rotation, tmp_path: Path) -> None:
    """defaults < --config < ROTATION_* < flags, each visible in `rotation config show`."""
    config = _write(tmp_path / "c.toml", """
[paths]
warehouse = "from-toml.duckdb"
store = "from-toml-store"
[strategy]
threshold = 0.2
factor = 3.0
[models]
seed = 1
""")
    env = {"ROTATION_STRATEGY__THRESHOLD": "0.3", "ROTATION_STORE": "from-env-store",
           "ROTATION_WAREHOUSE": "from-env.duckdb"}
    shown = _show(rotation, "--config", str(config), "--warehouse", "from-flag.duckdb", env=env)
    assert shown["backtest"]["min_train_months"] == 60           # default
    assert shown["strategy"]["factor"] == 3.0                    # TOML over default
    assert shown["models"]["seed"] == 1                          # TOML over default
    assert shown["strategy"]["threshold"] == 0.3                 # env over TOML
    assert shown["paths"]["store"] == "from-env-store"           # env short name over TOML
    assert shown["paths"]["warehouse"] == "from-flag.duckdb"     # flag over env and TOML


def test_one_key_through_every_layer(tmp_path: Path) -> None:
    """The same key set in each layer takes the highest layer's value; tables merge key by key."""
    config = _write(tmp_path / "c.toml", "[strategy]\nthreshold = 0.2\n[models.refit_months]\nridge = 6\n")
    env = {"ROTATION_STRATEGY__THRESHOLD": "0.3"}
    flags = {"strategy": {"threshold": 0.4}}
    assert load_settings(environ={}).strategy.threshold == 0.15
    assert load_settings(config, environ={}).strategy.threshold == 0.2
    assert load_settings(config, environ=env).strategy.threshold == 0.3
    settings = load_settings(config, environ=env, overrides=flags)
    assert settings.strategy.threshold == 0.4
    assert settings.strategy.factor == 5.0                                   # untouched default beside it
    assert settings.models.refit_months == {"ridge": 6, "tree": 1, "lstm": 12, "ensemble": 1}
    assert settings.with_overrides({"strategy": {"threshold": 0.5}}).strategy.threshold == 0.5


def test_settings_are_immutable_and_overrides_copy() -> None:
    settings = load_settings(environ={})
    with pytest.raises(ValidationError, match="frozen"):
        settings.store.lock_lease_s = 1  # type: ignore[misc]
    with pytest.raises(ValidationError, match="frozen"):
        settings.strategy = settings.strategy  # type: ignore[misc]
    changed = settings.with_overrides({"store": {"lock_lease_s": 30, "lock_wait_s": 0}})
    assert (changed.store.lock_lease_s, changed.store.lock_wait_s) == (30, 0.0)
    assert (settings.store.lock_lease_s, settings.store.lock_wait_s) == (120, 60.0)


def test_config_file_from_the_environment(rotation, tmp_path: Path) -> None:
    """ROTATION_CONFIG names the TOML file when --config is not given."""
    config = _write(tmp_path / "c.toml", "[strategy]\nshrinkage = 0.5\n")
    shown = _show(rotation, env={"ROTATION_CONFIG": str(config)})
    assert shown["strategy"]["shrinkage"] == 0.5


@pytest.mark.parametrize(("text", "needles"), [
    ("[strategy]\nthreshhold = 0.2\n", ["unknown configuration key strategy.threshhold", "bad.toml"]),
    ("[nosuchsection]\nx = 1\n", ["unknown configuration key nosuchsection", "bad.toml"]),
    ("[models]\nlookback_months = \"twelve\"\n",
     ["models.lookback_months = 'twelve'", "should be a valid integer", "bad.toml"]),
    ("[strategy]\nfactor = [1, 2]\n", ["strategy.factor = [1, 2]", "should be a valid number"]),
    ("[strategy]\nmode = \"yolo\"\n", ["strategy.mode = 'yolo'", "'normalised' or 'levered'"]),
    ("[universes.mine]\nbenchmark = \"XLK\"\n[universes.mine.assets]\nSPY = \"S&P 500\"\n",
     ["benchmark 'XLK' is not one of its assets"]),
    ("[universes.mine]\nbenchmark = \"SPY\"\nassets = {SPY = \"S&P 500\"}\nsectors = 1\n",
     ["unknown configuration key universes.mine.sectors"]),
    ("[secrets]\nFRED_API_KEY = \"abc\"\n", ["unknown configuration key secrets", "only from the environment"]),
    ("[strategy\nthreshold = 0.2\n", ["not valid TOML"]),
])
def test_bad_config_file_exits_2_with_one_line(rotation, tmp_path: Path, text: str, needles: list[str]) -> None:
    """An unknown key, a wrongly typed value or broken TOML is a usage error (2) naming key, value, file."""
    config = _write(tmp_path / "bad.toml", text)
    result = rotation("--config", str(config), "config", "show")
    assert result.exit_code == 2
    for needle in needles:
        assert needle in result.error
    assert len(result.stderr.strip().splitlines()) == 1
    assert result.stdout == ""


def test_missing_config_file_exits_2(rotation, tmp_path: Path) -> None:
    result = rotation("--config", str(tmp_path / "absent.toml"), "config", "show")
    assert result.exit_code == 2
    assert "cannot read configuration file" in result.stderr


@pytest.mark.parametrize(("name", "value", "needles"), [
    ("ROTATION_STRATEGY__THRESHOLD", "high",
     ["strategy.threshold = 'high'", "environment variable ROTATION_STRATEGY__THRESHOLD", "should be a valid number"]),
    ("ROTATION_MODELS__LOOKBACK_MONTHS", "2.5", ["models.lookback_months = '2.5'", "should be a valid integer"]),
    ("ROTATION_STORE__PATH_STYLE", "maybe", ["store.path_style = 'maybe'", "should be a valid boolean"]),
    ("ROTATION_MODELS__RIDGE_ALPHAS", "1,ten", ["'ten'", "ROTATION_MODELS__RIDGE_ALPHAS", "should be a valid number"]),
    ("ROTATION_STRATEGY__NOPE", "1",
     ["unknown configuration key strategy.nope", "environment variable ROTATION_STRATEGY__NOPE"]),
    ("ROTATION_STRATEGY__THRESHLD", "0.2", ["unknown configuration key strategy.threshld"]),
    ("ROTATION_NOSECTION__KEY", "1", ["unknown configuration key nosection", "ROTATION_NOSECTION__KEY"]),
    ("ROTATION_FROBNICATE", "1", ["unknown environment variable ROTATION_FROBNICATE"]),
    ("ROTATION_PORT_HTTP", "80", ["unknown environment variable ROTATION_PORT_HTTP"]),  # not a service link
    ("ROTATION_DATA__SOURCE", "bloomberg", ["data.source = 'bloomberg'", "must be one of yahoo"]),
    ("ROTATION_LSTM_PRESET", "huge", ["models.lstm_preset = 'huge'", "ROTATION_LSTM_PRESET", "'small' or 'seed'"]),
])
def test_bad_environment_value_exits_2(rotation, name: str, value: str, needles: list[str]) -> None:
    """A ROTATION_* variable that names no key or does not parse is a usage error (2) naming it."""
    result = rotation("config", "show", env={name: value})
    assert result.exit_code == 2, result.stderr
    for needle in needles:
        assert needle in result.error
    assert len(result.stderr.strip().splitlines()) == 1


def test_kubernetes_service_links_are_not_configuration(rotation) -> None:
    """The variables Kubernetes injects for a Service named rotation are ignored; a typo beside them is not."""
    assert _show(rotation, env=SERVICE_LINKS)["strategy"]["threshold"] == 0.15
    settings = load_settings(environ={**SERVICE_LINKS, "ROTATION_STRATEGY__THRESHOLD": "0.25"})
    assert settings.strategy.threshold == 0.25
    with pytest.raises(ConfigError, match=r"strategy\.threshld"):
        load_settings(environ={**SERVICE_LINKS, "ROTATION_STRATEGY__THRESHLD": "0.25"})


def test_environment_values_take_the_settings_types() -> None:
    """Floats accept decimals even where the default is written as an integer; lists get typed items."""
    settings = load_settings(environ={"ROTATION_DATA__DOWNLOAD_TIMEOUT_S": "2.5",
                                      "ROTATION_MODELS__RIDGE_ALPHAS": "1, 10",
                                      "ROTATION_MODELS__ENABLED": "ridge,tree",
                                      "ROTATION_STORE__PATH_STYLE": "false",
                                      "ROTATION_BACKTEST__N_JOBS": "1",
                                      "ROTATION_DATA__FRED_SERIES": '["VIXCLS", "DGS10"]',
                                      "ROTATION_MODELS__REFIT_MONTHS__LSTM": "6",
                                      "ROTATION_STORE__LOCK_WAIT_S": "0"})
    assert settings.data.download_timeout_s == 2.5
    assert settings.models.ridge_alphas == [1.0, 10.0]
    assert settings.models.enabled == ["ridge", "tree"]
    assert settings.store.path_style is False
    assert settings.backtest.n_jobs == 1
    assert settings.data.fred_series == ["VIXCLS", "DGS10"]                 # a JSON list works too
    assert settings.models.refit_months["lstm"] == 6 and settings.models.refit_months["ridge"] == 1
    assert settings.store.lock_wait_s == 0.0


def test_flags_are_validated_too() -> None:
    settings = load_settings(environ={})
    with pytest.raises(ConfigError, match=r"strategy\.shrinkage = 2\.0 \(from a command-line flag\)"):
        settings.with_overrides({"strategy": {"shrinkage": 2.0}})
    with pytest.raises(ConfigError, match=r"unknown configuration key strategy\.shrinkag \(from a command-line"):
        settings.with_overrides({"strategy": {"shrinkag": 0.5}})
    with pytest.raises(ConfigError, match=r"unknown configuration key paths\.wherehouse"):
        load_settings(environ={}, overrides={"paths": {"wherehouse": "x"}})
    assert settings.with_overrides({"data": {"publication_lag_months": 0}}).data.publication_lag_months == 0


@pytest.mark.parametrize("fmt", ["json", "toml"])
def test_config_show_masks_secrets(rotation, fmt: str) -> None:
    """Secrets come only from the environment and `config show` never prints them."""
    env = {"FRED_API_KEY": SECRET, "AWS_SECRET_ACCESS_KEY": AWS_SECRET, "AWS_ACCESS_KEY_ID": "AKIAEXAMPLEKEYID"}
    result = rotation("config", "show", "--format", fmt, env=env)
    assert result.exit_code == 0, result.stderr
    for secret in env.values():
        assert secret not in result.stdout + result.stderr
    assert "****" in result.stdout
    if fmt == "toml":  # the same effective configuration as the JSON form and as settings_as_dict
        shown = tomllib.loads(result.stdout)
        assert shown == {**settings_as_dict(load_settings(environ={})), "secrets": shown["secrets"]}
        assert shown["store"]["lock_lease_s"] == 120 and shown["universes"]["original"]["benchmark"] == "SPY"
    masked = masked_environment(env)
    assert masked["FRED_API_KEY"].startswith("****")
    assert masked["AWS_SESSION_TOKEN"] == "(unset)"


def test_secrets_never_reach_the_log_of_a_verbose_ingest(rotation, tmp_path: Path) -> None:
    """An ingest run with -v (text and JSON logs) never writes the FRED key or the AWS secret."""
    env = {"FRED_API_KEY": SECRET, "AWS_SECRET_ACCESS_KEY": AWS_SECRET}
    for fmt in ("text", "json"):
        result = rotation("-v", "--log-format", fmt, "--warehouse", str(tmp_path / f"{fmt}.duckdb"),
                          "ingest", "--source", "sample", env=env)
        assert result.exit_code == 0, result.stderr
        assert SECRET not in result.stdout + result.stderr
        assert AWS_SECRET not in result.stdout + result.stderr


def test_user_defined_universe_works_with_the_sample_source(rotation, tmp_path: Path) -> None:
    """A universe defined in TOML (tickers, sectors, benchmark) is ingested and modelled as given."""
    config = _write(tmp_path / "mine.toml", """
[data]
universe = "mine"
[universes.mine]
benchmark = "IVV"
[universes.mine.assets]
IVV = "S&P 500"
XLK = "Technology"
XLE = "Energy"
""")
    warehouse = tmp_path / "w.duckdb"
    result = rotation("--config", str(config), "--warehouse", str(warehouse), "ingest", "--source", "sample")
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["universe"] == "mine"
    with duckdb.connect(str(warehouse), read_only=True) as con:
        rows = con.execute("SELECT asset, sector, is_benchmark FROM assets ORDER BY position").fetchall()
        assets_with_prices = {r[0] for r in con.execute("SELECT DISTINCT asset FROM prices_daily").fetchall()}
    assert rows == [("IVV", "S&P 500", True), ("XLK", "Technology", False), ("XLE", "Energy", False)]
    assert assets_with_prices == {"IVV", "XLK", "XLE"}
    shown = _show(rotation, "--config", str(config))
    assert shown["universes"]["mine"]["benchmark"] == "IVV"


def test_unknown_universe_exits_2(rotation, tmp_path: Path) -> None:
    result = rotation("--warehouse", str(tmp_path / "w.duckdb"), "ingest", "--source", "sample",
                      "--universe", "nope")
    assert result.exit_code == 2
    assert "unknown universe 'nope'" in result.stderr
    assert not (tmp_path / "w.duckdb").exists()
