"""Configuration: package defaults < TOML file < ``ROTATION_*`` environment < command-line flags.

:class:`Settings` is a frozen pydantic-settings model: its sources are the package defaults
(``job/defaults.toml``), the ``--config`` TOML file, the environment (:class:`RotationEnvironment`) and
the flags (init arguments), deep-merged in that order and validated by pydantic. Any problem is a
:class:`~job.errors.ConfigError` (exit 2) in one line that names the key, the value, what was expected and
where the value came from, so a typo never silently does nothing. Secrets (``FRED_API_KEY``, AWS
credentials) are read only from the environment, never from files, and :func:`masked_environment` is what
``config show`` prints of them.
"""

from __future__ import annotations

import json
import os
import re
import tomllib
import typing
from collections.abc import Callable, Mapping
from contextvars import ContextVar
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic.fields import FieldInfo
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from job.errors import ConfigError

SOURCES = ("yahoo", "fred", "fred-md", "snapshot", "sample", "file")
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
# Kubernetes service links: a Service named ``rotation`` (or ``rotation-*``) in the pod's namespace injects
# ROTATION_SERVICE_HOST, ROTATION_SERVICE_PORT[_<NAME>], ROTATION_PORT and ROTATION_PORT_<N>_<PROTO>[_PROTO|
# _PORT|_ADDR]. They are never configuration keys (those always contain "__" or are in ENV_SHORT).
SERVICE_LINK = re.compile(r"ROTATION_(?:[A-Z0-9_]+_)?(?:SERVICE_HOST|SERVICE_PORT(?:_[A-Z0-9_]+)?|PORT"
                          r"|PORT_\d+_(?:TCP|UDP|SCTP)(?:_PROTO|_PORT|_ADDR)?)")
DEFAULTS_FILE = Path(__file__).with_name("defaults.toml")
DEFAULT_SNAPSHOT = Path("../shared/data")

NonNegative = Annotated[int, Field(ge=0)]


class _Section(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class FileSource(_Section):
    """A universe's own data files for ``--source file`` (checked and read by job/sources/files.py)."""

    path: str                    # one long table, or a pattern with {asset}: one file per asset
    kind: Literal["prices", "returns"]
    unit: Literal["fraction", "percent"] | None = None   # monthly returns: required
    format: Literal["auto", "csv", "parquet"] = "auto"
    date_column: str = "date"
    asset_column: str = "asset"
    value_column: str = "value"


class Universe(_Section):
    """Assets traded (ticker -> sector name, in order) and the benchmark, one of them."""

    name: str = Field(default="", exclude=True)  # the key of its [universes.NAME] table
    assets: dict[str, str]
    benchmark: str
    file: FileSource | None = None  # [universes.NAME.file]: the data of --source file

    @property
    def tickers(self) -> list[str]:
        return list(self.assets)

    @model_validator(mode="after")
    def _benchmark_is_an_asset(self) -> Universe:
        if not self.assets:
            raise ValueError(f"universe {self.name!r} needs an [universes.{self.name}.assets] table of "
                             "ticker = sector")
        if self.benchmark not in self.assets:
            raise ValueError(f"universe {self.name!r}: benchmark {self.benchmark!r} is not one of its assets")
        return self


class Paths(_Section):
    warehouse: str
    store: str
    snapshot_dir: str


class DataSettings(_Section):
    source: str
    universe: str
    start: str
    publication_lag_months: NonNegative
    market_lag_months: NonNegative
    fresh_tolerance_months: NonNegative
    min_fresh_share: float = Field(gt=0, le=1)
    max_staleness_months: NonNegative
    fred_md_vintages: list[str]
    fred_series: list[str]
    extra_fred_series: list[str]
    download_timeout_s: float = Field(gt=0)
    retry_attempts: int = Field(default=5, ge=1)  # network sources: attempts on a timeout, 429 or 5xx
    retry_initial_wait_s: float = Field(default=1.0, ge=0)
    sample_seed: int
    # months of returns an asset that starts after the data needs before it is forecast and held
    # (a feature window and a label); 0 = models.lookback_months + 1
    min_asset_history_months: NonNegative = 0

    @field_validator("source")
    @classmethod
    def _known_sources(cls, value: str) -> str:
        # a comma-separated combination (yahoo,fred-md: live prices + macro) is a valid source too
        if not value.strip() or any(part.strip() not in SOURCES for part in value.split(",")):
            raise ValueError(f"data.source must be one of {', '.join(SOURCES)} (or a comma-separated combination)")
        return value

    @field_validator("start")
    @classmethod
    def _a_month(cls, value: str) -> str:
        from job.months import parse_month

        try:
            parse_month(value)
        except ConfigError as exc:
            raise ValueError(exc.one_line()) from None
        return value


class ModelSettings(_Section):
    enabled: list[str]
    lookback_months: int = Field(ge=1)
    seed: int
    cv_splits: int = Field(ge=2)
    ridge_alphas: list[float]
    tree_max_leaf_nodes: list[int]
    tree_min_samples_split: list[int]
    tree_min_samples_leaf: list[int]
    tree_fixed: bool
    lstm_preset: Literal["small", "seed"]
    lstm_epochs: int = Field(ge=1)
    lstm_patience: int = Field(ge=1)
    lstm_batch_size: int = Field(ge=1)
    lstm_validation_share: float = Field(gt=0, lt=1)
    ensemble_weighting: Literal["equal", "inverse-mae"]
    ensemble_members: list[str]
    momentum_months: int = Field(default=12, ge=1)  # momentum baseline: window incl. the skipped months
    momentum_skip_months: int = Field(default=1, ge=0)
    on_corrupt_model: Literal["retrain", "fail"]
    refit_months: dict[str, int]  # model -> months a stored model is reused; new models may be added


class StrategySettings(_Section):
    threshold: float
    factor: float = Field(ge=1)
    shrinkage: float = Field(ge=0, le=1)
    mode: Literal["normalised", "levered"]
    cost_bps: float = Field(ge=0)


class BacktestSettings(_Section):
    scheme: Literal["walk-forward", "static"]
    min_train_months: int = Field(ge=12)
    static_train_share: float = Field(gt=0, lt=1)
    original_sortino_rf: float
    n_jobs: int
    tune_months: int = Field(ge=1)
    min_oos_months: NonNegative = 36  # fewer out-of-sample months: a warning and the report says so
    # trade at the close of the first trading day on or after this day of the month after the decision
    # month (4: the trading day after the CronJob's 3rd); 0: at the decision month's last close
    execution_lag_days: int = Field(default=4, ge=0, le=20)


class StoreSettings(_Section):
    endpoint_url: str
    region: str
    path_style: bool
    retention_runs: int = Field(ge=0)
    lock_lease_s: int = Field(gt=0)
    lock_wait_s: float = Field(ge=0)
    connect_timeout_s: float = Field(gt=0)
    read_timeout_s: float = Field(gt=0)
    max_attempts: int = Field(ge=1)


class ReportSettings(_Section):
    default_model: str


@dataclass
class _Load:
    """What one :func:`load_settings` call reads, and the sources it built (to say where a value came from)."""

    config_file: Path | None = None
    environ: Mapping[str, str] | None = None
    sources: list[PydanticBaseSettingsSource] = field(default_factory=list)


_LOAD: ContextVar[_Load | None] = ContextVar("rotation_settings_load", default=None)


class Settings(BaseSettings):
    """The effective configuration of one invocation (immutable; :meth:`with_overrides` makes a copy)."""

    model_config = SettingsConfigDict(frozen=True, extra="forbid")

    paths: Paths
    data: DataSettings
    universes: dict[str, Universe]
    models: ModelSettings
    strategy: StrategySettings
    backtest: BacktestSettings
    store: StoreSettings
    report: ReportSettings

    @field_validator("universes", mode="before")
    @classmethod
    def _name_universes(cls, value: Any) -> Any:
        if isinstance(value, Mapping) and any(isinstance(t, Mapping) and "name" in t for t in value.values()):
            raise ValueError("a universe is named by its table: [universes.NAME] has no name key")
        return {name: {**table, "name": name} if isinstance(table, Mapping) else table
                for name, table in value.items()} if isinstance(value, Mapping) else value

    @classmethod
    def settings_customise_sources(cls, settings_cls: type[BaseSettings], init_settings: PydanticBaseSettingsSource,
                                   **_: PydanticBaseSettingsSource) -> tuple[PydanticBaseSettingsSource, ...]:
        """Highest priority first: flags, ``ROTATION_*``, the ``--config`` file, the package defaults."""
        load = _LOAD.get() or _Load()
        sources: list[PydanticBaseSettingsSource] = [
            init_settings, RotationEnvironment(settings_cls, os.environ if load.environ is None else load.environ)]
        if load.config_file is not None:
            sources.append(ConfigFile(settings_cls, load.config_file))
        sources.append(TomlConfigSettingsSource(settings_cls, DEFAULTS_FILE))
        load.sources = sources
        return tuple(sources)

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
        """A copy with ``{section: {key: value}}`` overrides applied (CLI flags), validated again."""
        merged = _merge(self.model_dump(), overrides)
        try:
            return type(self).model_validate(merged)
        except ValidationError as exc:
            raise _config_error(exc, [_set_in(overrides, "a command-line flag")]) from None


class ConfigFile(TomlConfigSettingsSource):
    """The ``--config`` TOML file; unlike the plain TOML source, a missing or broken file is an error."""

    def __init__(self, settings_cls: type[BaseSettings], path: Path) -> None:
        self.path = path
        if not path.is_file():
            reason = "is a folder" if path.is_dir() else "no such file"
            raise ConfigError(f"cannot read configuration file {path}: {reason}")
        super().__init__(settings_cls, path)

    def _read_file(self, file_path: Any) -> dict[str, Any]:
        try:
            return tomllib.loads(Path(file_path).read_text(encoding="utf-8"))
        except OSError as exc:
            raise ConfigError(f"cannot read configuration file {file_path}: {exc.strerror}") from None
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise ConfigError(f"configuration file {file_path} is not valid TOML: {exc}") from None


class RotationEnvironment(PydanticBaseSettingsSource):
    """``ROTATION_<SECTION>__<KEY>`` (deeper tables with more ``__``) and the short names in ENV_SHORT.

    A list setting takes a comma-separated value (``ridge,tree``) or a JSON list; pydantic converts the
    strings to each key's type. Variables read elsewhere (ENV_NOT_KEYS) and Kubernetes service links
    (SERVICE_LINK) are skipped; any other ``ROTATION_*`` variable is an error, so a typo never passes.
    """

    def __init__(self, settings_cls: type[BaseSettings], environ: Mapping[str, str]) -> None:
        super().__init__(settings_cls)
        self.environ = environ
        self.origins: dict[tuple[str, ...], str] = {}  # key path -> the variable that set it

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False  # unused: __call__ maps every variable itself

    def origin(self, path: tuple[Any, ...]) -> str | None:
        """The variable that set ``path``, a table above it or a key below it, if any."""
        return next((name for set_path, name in self.origins.items()
                     if set_path[:len(path)] == path or path[:len(set_path)] == set_path), None)

    def __call__(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for name, value in sorted(self.environ.items()):
            if not name.startswith("ROTATION_") or name in ENV_NOT_KEYS:
                continue
            if name in ENV_SHORT:
                path: tuple[str, ...] = ENV_SHORT[name]
            elif "__" in name:
                path = tuple(name[len("ROTATION_"):].lower().split("__"))
            elif SERVICE_LINK.fullmatch(name):
                continue
            else:
                raise ConfigError(f"unknown environment variable {name}",
                                  hint="use ROTATION_<SECTION>__<KEY>, e.g. ROTATION_STRATEGY__THRESHOLD")
            *tables, key = path
            target = out
            for table in tables:
                if not isinstance(target.get(table), dict):
                    target[table] = {}
                target = target[table]
            target[key] = _env_value(name, value, _annotation(path))
            self.origins[path] = f"environment variable {name}"
        return out


def _env_value(name: str, text: str, annotation: Any) -> Any:
    """A list or table setting from one string (JSON, or comma-separated items); other values as given."""
    container = typing.get_origin(annotation)
    if container in (list, dict) and text.lstrip().startswith(("[", "{")):
        try:
            return json.loads(text)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"environment variable {name}={text!r} is not valid JSON: {exc}") from None
    return [item.strip() for item in text.split(",") if item.strip()] if container is list else text


def _annotation(path: tuple[str, ...]) -> Any:
    """The annotation of the setting at ``path`` (``("models", "ridge_alphas")`` -> ``list[float]``), or None."""
    annotation: Any = Settings
    for part in path:
        fields = getattr(annotation, "model_fields", None)
        if not isinstance(fields, dict) or part not in fields:
            return None
        annotation = fields[part].annotation
    return annotation


def _merge(base: Mapping[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    """``base`` updated by ``override``, tables merged key by key."""
    out = dict(base)
    for key, value in override.items():
        old = out.get(key)
        out[key] = _merge(old, value) if isinstance(old, Mapping) and isinstance(value, Mapping) else value
    return out


Origin = Callable[[tuple[Any, ...]], str | None]  # key path -> where its value came from, or None


def _set_in(data: Mapping[str, Any], label: str) -> Origin:
    """An :data:`Origin` for one plain layer (flags, a TOML file): ``label`` when ``path`` is set in ``data``."""
    def origin(path: tuple[Any, ...]) -> str | None:
        node: Any = data
        try:
            for part in path:
                node = node[part]
        except (KeyError, IndexError, TypeError):
            return None
        return label
    return origin


def _config_error(exc: ValidationError, layers: list[Origin]) -> ConfigError:
    """The first problem of a pydantic error in one line: key, value, where it came from, what was expected."""
    errors = exc.errors(include_url=False)
    error = errors[0]
    path = tuple(error["loc"])
    key = ".".join(str(part) for part in path)
    origin = next((found for found in (layer(path) for layer in layers) if found), None)
    where = f" (from {origin})" if origin else ""
    more = f" (and {len(errors) - 1} more problem{'s' if len(errors) > 2 else ''})" if len(errors) > 1 else ""
    if error["type"] == "extra_forbidden":
        extra = "; secrets are read only from the environment" if path[0] == "secrets" else ""
        return ConfigError(f"unknown configuration key {key}{where}{extra}{more}",
                           hint="`rotation config show` lists the valid keys")
    if error["type"] == "missing":
        return ConfigError(f"configuration key {key} is missing{where}{more}")
    value = error.get("input")
    shown = "" if isinstance(value, Mapping) else f" = {value!r}"
    message = str(error["msg"]).removeprefix("Value error, ").removeprefix("Input ")
    return ConfigError(f"configuration key {key}{shown}{where}: {message}{more}")


def load_settings(config_file: str | Path | None = None,
                  environ: Mapping[str, str] | None = None,
                  overrides: Mapping[str, Any] | None = None) -> Settings:
    """Defaults < ``config_file`` < ``ROTATION_*`` in ``environ`` < ``overrides`` (CLI flags)."""
    environ = os.environ if environ is None else environ
    config_file = config_file or environ.get("ROTATION_CONFIG") or None
    load = _Load(config_file=Path(config_file) if config_file else None, environ=environ)
    token = _LOAD.set(load)
    try:
        return Settings(**dict(overrides or {}))
    except ValidationError as exc:
        layers = [_set_in(overrides or {}, "a command-line flag")]
        for source in load.sources:  # highest priority first
            if isinstance(source, RotationEnvironment):
                layers.append(source.origin)
            elif isinstance(source, TomlConfigSettingsSource):
                label = (f"configuration file {source.path}" if isinstance(source, ConfigFile)
                         else f"the package defaults {DEFAULTS_FILE}")
                layers.append(_set_in(source.toml_data, label))
        raise _config_error(exc, layers) from None
    finally:
        _LOAD.reset(token)


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
    out = settings.model_dump(exclude={"universes"})
    out["universes"] = {name: universe.model_dump(exclude_none=True) for name, universe in settings.universes.items()}
    return out
