"""Configuration: package defaults < TOML file < ``ROTATION_*`` environment < command-line flags.

The effective configuration is a plain nested dict validated into frozen dataclasses (:class:`Settings`).
Keys unknown to the defaults are rejected (exit code 2), so a typo never silently does nothing.
Secrets (``FRED_API_KEY``, AWS credentials) are read only from the environment, never from files, and
:func:`masked_environment` is what ``config show`` prints of them.
"""

from __future__ import annotations

import copy
import os
import tomllib
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from importlib import resources
from pathlib import Path
from typing import Any

from job.errors import ConfigError

SOURCES = ("yahoo", "fred", "fred-md", "snapshot", "sample")
SECRET_ENV = ("FRED_API_KEY", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN")
# Short environment names for the settings a container sets most (documented in the README).
ENV_SHORT = {
    "ROTATION_WAREHOUSE": ("paths", "warehouse"),
    "ROTATION_STORE": ("paths", "store"),
    "ROTATION_SNAPSHOT_DIR": ("paths", "snapshot_dir"),
    "ROTATION_SOURCE": ("data", "source"),
    "ROTATION_UNIVERSE": ("data", "universe"),
    "ROTATION_MODELS": ("models", "enabled"),
    "ROTATION_LSTM_PRESET": ("models", "lstm_preset"),
    "ROTATION_S3_ENDPOINT": ("store", "endpoint_url"),
}
# Environment variables that are not configuration keys (read elsewhere), so not rejected as unknown.
ENV_NOT_KEYS = {"ROTATION_AS_OF", "ROTATION_LOG_FORMAT", "ROTATION_CONFIG", "ROTATION_TEST_CONTAINER",
                "ROTATION_ARGS", "ROTATION_WAIT_FOR_STORE_S", "ROTATION_COMMAND", "ROTATION_VERBOSE",
                # set by the container image and its entrypoint (Dockerfile, entrypoint.sh)
                "ROTATION_GLOBAL_ARGS", "ROTATION_HOME", "ROTATION_CACHE_DIR",
                # read by the Swift test fixture (tests/s3_server.py)
                "ROTATION_REQUIRE_SWIFT"}
DEFAULT_SNAPSHOT = Path("../shared/data")


def default_config() -> dict[str, Any]:
    """The package defaults (``job/defaults.toml``) as a fresh dict."""
    text = resources.files("job").joinpath("defaults.toml").read_text(encoding="utf-8")
    return tomllib.loads(text)


def deep_merge(base: dict[str, Any], override: Mapping[str, Any], *, where: str,
               allow_new: tuple[str, ...] = ("universes", "refit_months")) -> dict[str, Any]:
    """Return ``base`` updated by ``override``; unknown keys raise ConfigError naming ``where``.

    Keys under ``allow_new`` tables (user-defined universes, per-model refit intervals) may be new.
    """
    out = copy.deepcopy(base)
    for key, value in override.items():
        if key not in out:
            if any(part in allow_new for part in where.split(".")) or where.rsplit(".", maxsplit=1)[-1] in allow_new:
                out[key] = copy.deepcopy(value)
                continue
            raise ConfigError(f"unknown configuration key {where}.{key}".replace("config.", ""),
                              hint="see `rotation config show` for the valid keys")
        if isinstance(out[key], dict):
            if not isinstance(value, Mapping):
                raise ConfigError(f"configuration key {where}.{key} must be a table")
            out[key] = deep_merge(out[key], value, where=f"{where}.{key}", allow_new=allow_new)
        else:
            out[key] = value
    return out


def _coerce(text: str, kind: str, name: str) -> Any:
    """Parse an environment string into ``kind``, the type of the setting it replaces.

    ``kind`` is the field's annotation (``"float"``, ``"list[float]"``...): a float setting whose default
    happens to be written as an integer still accepts ``2.5``, and list items get the element type.
    """
    try:
        if kind == "bool":
            if text.lower() in ("1", "true", "yes", "on"):
                return True
            if text.lower() in ("0", "false", "no", "off"):
                return False
            raise ValueError(text)
        if kind in _SCALARS and kind not in ("str", "bool"):
            return _SCALARS[kind](text)
        if kind.startswith("list"):
            inner = kind[5:-1] if kind.startswith("list[") else "str"
            parse = _SCALARS.get(inner, str) if inner != "bool" else str
            return [parse(item.strip()) for item in text.split(",") if item.strip()]
    except ValueError:
        raise ConfigError(f"environment variable {name}={text!r} is not a valid {kind}") from None
    return text


def env_overrides(base: dict[str, Any], environ: Mapping[str, str]) -> dict[str, Any]:
    """Overrides from ``ROTATION_*`` variables: short names and ``ROTATION_SECTION__KEY``."""
    out: dict[str, Any] = {}
    for name, value in sorted(environ.items()):
        if not name.startswith("ROTATION_") or name in ENV_NOT_KEYS:
            continue
        if name in ENV_SHORT:
            section, key = ENV_SHORT[name]
        elif "__" in name:
            section, _, key = name[len("ROTATION_"):].lower().partition("__")
            section = section.replace("_", "-") if section not in base else section
        else:
            raise ConfigError(f"unknown environment variable {name}",
                              hint="use ROTATION_<SECTION>__<KEY>, e.g. ROTATION_STRATEGY__THRESHOLD")
        if section not in base or key not in base[section]:
            raise ConfigError(f"environment variable {name} names no configuration key {section}.{key}")
        kind = _field_kinds().get(section, {}).get(key) or type(base[section][key]).__name__
        out.setdefault(section, {})[key] = _coerce(value, kind, name)
    return out


@dataclass(frozen=True)
class Universe:
    """Assets traded (ticker -> sector name, in order) and the benchmark, one of them."""

    name: str
    assets: dict[str, str]
    benchmark: str

    @property
    def tickers(self) -> list[str]:
        return list(self.assets)


@dataclass(frozen=True)
class Paths:
    warehouse: str
    store: str
    snapshot_dir: str


@dataclass(frozen=True)
class DataSettings:
    source: str
    universe: str
    start: str
    publication_lag_months: int
    market_lag_months: int
    fresh_tolerance_months: int
    min_fresh_share: float
    max_staleness_months: int
    fred_md_vintages: list[str]
    fred_series: list[str]
    extra_fred_series: list[str]
    download_timeout_s: float
    sample_seed: int


@dataclass(frozen=True)
class ModelSettings:
    enabled: list[str]
    lookback_months: int
    seed: int
    cv_splits: int
    ridge_alphas: list[float]
    tree_max_leaf_nodes: list[int]
    tree_min_samples_split: list[int]
    tree_min_samples_leaf: list[int]
    tree_fixed: bool
    lstm_preset: str
    lstm_epochs: int
    lstm_patience: int
    lstm_batch_size: int
    lstm_validation_share: float
    ensemble_weighting: str
    ensemble_members: list[str]
    report_model: str
    on_corrupt_model: str
    refit_months: dict[str, int]


@dataclass(frozen=True)
class StrategySettings:
    threshold: float
    factor: float
    shrinkage: float
    mode: str
    cost_bps: float


@dataclass(frozen=True)
class BacktestSettings:
    scheme: str
    min_train_months: int
    static_train_share: float
    original_sortino_rf: float
    n_jobs: int
    tune_months: int


@dataclass(frozen=True)
class StoreSettings:
    endpoint_url: str
    region: str
    path_style: bool
    retention_runs: int
    lock_lease_s: int
    lock_wait_s: float
    connect_timeout_s: float
    read_timeout_s: float
    max_attempts: int


@dataclass(frozen=True)
class ReportSettings:
    default_model: str


@dataclass(frozen=True)
class Settings:
    """The effective configuration of one invocation."""

    paths: Paths
    data: DataSettings
    universes: dict[str, Universe]
    models: ModelSettings
    strategy: StrategySettings
    backtest: BacktestSettings
    store: StoreSettings
    report: ReportSettings
    raw: dict[str, Any] = field(repr=False, compare=False)

    def universe(self, source: str | None = None) -> Universe:
        """The configured universe, or the source's default one (snapshot -> vanguard-etf)."""
        name = self.data.universe or ("vanguard-etf" if (source or self.data.source) == "snapshot"
                                      else "original")
        if name not in self.universes:
            raise ConfigError(f"unknown universe {name!r}", hint=f"choose one of {sorted(self.universes)}")
        return self.universes[name]

    def snapshot_dir(self) -> Path | None:
        """The snapshot folder: setting, else $ROTATION_SNAPSHOT_DIR, else ../shared/data if present."""
        if self.paths.snapshot_dir:
            return Path(self.paths.snapshot_dir)
        if os.environ.get("ROTATION_SNAPSHOT_DIR"):
            return Path(os.environ["ROTATION_SNAPSHOT_DIR"])
        return DEFAULT_SNAPSHOT if DEFAULT_SNAPSHOT.is_dir() else None

    def with_overrides(self, overrides: Mapping[str, Any]) -> Settings:
        """A copy with ``{section: {key: value}}`` overrides applied (CLI flags)."""
        return build_settings(deep_merge(self.raw, overrides, where="flag"))


_SCALARS: dict[str, type] = {"str": str, "int": int, "float": float, "bool": bool}
_SECTIONS: dict[str, type] = {"paths": Paths, "data": DataSettings, "models": ModelSettings,
                              "strategy": StrategySettings, "backtest": BacktestSettings,
                              "store": StoreSettings, "report": ReportSettings}


def _field_kinds() -> dict[str, dict[str, str]]:
    """Section -> key -> annotation of the settings dataclasses (``"float"``, ``"list[str]"``...)."""
    return {name: {f.name: str(f.type) for f in fields(cls)} for name, cls in _SECTIONS.items()}


def _conform(value: Any, kind: str, where: str) -> Any:
    """``value`` checked against the annotation ``kind`` (an int widened to float); ConfigError otherwise.

    Without this a wrong type in a TOML file (``lookback_months = "twelve"``) surfaced later as an
    unexpected TypeError (exit 1) instead of a configuration error (exit 2).
    """
    if kind.startswith("list[") and kind.endswith("]"):
        if not isinstance(value, list):
            raise ConfigError(f"configuration key {where} must be a list ({kind}), not {value!r}")
        return [_conform(item, kind[5:-1], where) for item in value]
    if kind.startswith("dict[str, ") and kind.endswith("]"):
        if not isinstance(value, Mapping):
            raise ConfigError(f"configuration key {where} must be a table ({kind}), not {value!r}")
        return {str(k): _conform(v, kind[10:-1], f"{where}.{k}") for k, v in value.items()}
    expected = _SCALARS.get(kind)
    if expected is None:
        return value
    if kind == "float" and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, expected) and (kind == "bool" or not isinstance(value, bool)):
        return value
    raise ConfigError(f"configuration key {where} must be {kind}, not {value!r}")


def _section(cls: type, data: Mapping[str, Any], name: str) -> Any:
    names = {f.name: str(f.type) for f in fields(cls)}
    missing = set(names) - set(data)
    if missing:
        raise ConfigError(f"configuration section [{name}] lacks {sorted(missing)}")
    try:
        return cls(**{k: _conform(data[k], kind, f"{name}.{k}") for k, kind in names.items()})
    except TypeError as exc:
        raise ConfigError(f"configuration section [{name}]: {exc}") from None


def _universe(name: str, data: Mapping[str, Any]) -> Universe:
    assets = data.get("assets")
    benchmark = data.get("benchmark")
    if not isinstance(assets, Mapping) or not assets:
        raise ConfigError(f"universe {name!r} needs an [universes.{name}.assets] table of ticker = sector")
    if benchmark not in assets:
        raise ConfigError(f"universe {name!r}: benchmark {benchmark!r} is not one of its assets")
    return Universe(name=name, assets={str(k): str(v) for k, v in assets.items()}, benchmark=str(benchmark))


def _check(settings: Settings) -> None:
    d, m, s, b = settings.data, settings.models, settings.strategy, settings.backtest
    checks: list[tuple[bool, str]] = [
        # a comma-separated combination (yahoo,fred-md: live prices + macro) is a valid source too
        (bool(d.source.strip()) and all(part.strip() in SOURCES for part in d.source.split(",")),
         f"data.source must be one of {', '.join(SOURCES)} (or a comma-separated combination), not {d.source!r}"),
        (d.publication_lag_months >= 0, "data.publication_lag_months must be >= 0"),
        (0 < d.min_fresh_share <= 1, "data.min_fresh_share must be in (0, 1]"),
        (m.lookback_months >= 1, "models.lookback_months must be >= 1"),
        (m.lstm_preset in ("small", "seed"), "models.lstm_preset must be small or seed"),
        (m.ensemble_weighting in ("equal", "inverse-mae"), "models.ensemble_weighting: equal|inverse-mae"),
        (m.on_corrupt_model in ("retrain", "fail"), "models.on_corrupt_model must be retrain or fail"),
        (0 <= s.shrinkage <= 1, "strategy.shrinkage must be in [0, 1]"),
        (s.factor >= 1, "strategy.factor must be >= 1"),
        (s.mode in ("normalised", "levered"), "strategy.mode must be normalised or levered"),
        (s.cost_bps >= 0, "strategy.cost_bps must be >= 0"),
        (b.scheme in ("walk-forward", "static"), "backtest.scheme must be walk-forward or static"),
        (b.min_train_months >= 12, "backtest.min_train_months must be >= 12"),
        (0 < b.static_train_share < 1, "backtest.static_train_share must be in (0, 1)"),
    ]
    for ok, message in checks:
        if not ok:
            raise ConfigError(message)
    from job.months import parse_month

    parse_month(d.start)


def build_settings(raw: dict[str, Any]) -> Settings:
    """Validate a merged configuration dict into :class:`Settings` (ConfigError on any problem)."""
    settings = Settings(
        paths=_section(Paths, raw["paths"], "paths"),
        data=_section(DataSettings, raw["data"], "data"),
        universes={name: _universe(name, u) for name, u in raw["universes"].items()},
        models=_section(ModelSettings, raw["models"], "models"),
        strategy=_section(StrategySettings, raw["strategy"], "strategy"),
        backtest=_section(BacktestSettings, raw["backtest"], "backtest"),
        store=_section(StoreSettings, raw["store"], "store"),
        report=_section(ReportSettings, raw["report"], "report"),
        raw=raw,
    )
    _check(settings)
    return settings


def load_settings(config_file: str | Path | None = None,
                  environ: Mapping[str, str] | None = None,
                  overrides: Mapping[str, Any] | None = None) -> Settings:
    """Defaults < ``config_file`` < ``ROTATION_*`` in ``environ`` < ``overrides`` (CLI flags)."""
    environ = os.environ if environ is None else environ
    raw = default_config()
    config_file = config_file or environ.get("ROTATION_CONFIG") or None
    if config_file:
        path = Path(config_file)
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigError(f"cannot read configuration file {path}: {exc.strerror}") from None
        try:
            file_cfg = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"configuration file {path} is not valid TOML: {exc}") from None
        raw = deep_merge(raw, file_cfg, where="config")
    raw = deep_merge(raw, env_overrides(raw, environ), where="env")
    if overrides:
        raw = deep_merge(raw, overrides, where="flag")
    return build_settings(raw)


def masked_environment(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """Which secrets are set, masked: ``{'FRED_API_KEY': '****abcd' | '(unset)'}``."""
    environ = os.environ if environ is None else environ
    out = {}
    for name in SECRET_ENV:
        value = environ.get(name)
        out[name] = "(unset)" if not value else "****" + ("" if len(value) < 12 else value[-2:])
    return out


def settings_as_dict(settings: Settings) -> dict[str, Any]:
    """The effective configuration as plain data (for ``config show``, the report and manifests)."""
    out = {f.name: asdict(getattr(settings, f.name)) for f in fields(settings)
           if f.name not in ("raw", "universes")}
    out["universes"] = {name: {"benchmark": u.benchmark, "assets": u.assets}
                        for name, u in settings.universes.items()}
    return out
