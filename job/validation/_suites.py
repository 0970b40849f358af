"""Expectation suites: GX 1.x ExpectationSuite JSON files in ``expectations/``, with the job's meta keys.

Each expectation's ``meta`` says which frame it runs on (``frame``), its short name (``check``), and
its ``severity`` (``critical``, the default, stops the run; ``warning`` is reported only; it is copied
into GX 1.24's own top-level ``severity`` field, which may be given instead but must agree). An
``expect_column_values_to_be_in_set`` expectation may carry ``meta.tolerate``: known exceptions as
``{"<key>": ["YYYY-MM", "YYYY-MM..YYYY-MM", ...]}``, added to its ``value_set`` as ``"<key> YYYY-MM"``
strings (this is how a known gap such as CP3Mx in 2020-04 is tolerated).
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from job.errors import ConfigError
from job.months import month_str, parse_month
from job.resources import expectations_dir
from job.validation._frames import FRAMES

SEVERITIES = ("critical", "warning")
# Suites run in this order (warehouse first, then the dataset); other *.json files follow by name.
SUITE_ORDER = ("prices", "macro", "features", "labels", "lookahead")


@dataclass(frozen=True)
class Check:
    """One expectation of a suite, ready for GX: ``config`` is the expectation dict, tolerances expanded."""

    suite: str
    name: str
    frame: str
    severity: str
    description: str
    config: dict[str, Any] = field(repr=False)

    @property
    def expectation_type(self) -> str:
        return str(self.config["type"])

    @property
    def hint(self) -> str:
        """What the user can do when this check fails (``meta.hint``; '' for the generic advice)."""
        return str(self.config.get("meta", {}).get("hint") or "")

    @property
    def column(self) -> str | None:
        """The column(s) the expectation looks at, as one string (None for table-level expectations)."""
        kwargs = self.config.get("kwargs", {})
        if "column" in kwargs:
            return str(kwargs["column"])
        if "column_A" in kwargs:
            return f"{kwargs['column_A']},{kwargs['column_B']}"
        if "column_list" in kwargs:
            return ",".join(map(str, kwargs["column_list"]))
        return None


@dataclass(frozen=True)
class Suite:
    """A named list of checks loaded from ``expectations/<name>.json``."""

    name: str
    description: str
    checks: list[Check]
    path: Path


def expand_months(spec: str) -> list[str]:
    """``"2020-04"`` -> ``["2020-04"]``; ``"2020-01..2020-03"`` -> the three months, inclusive."""
    first, _, last = spec.partition("..")
    start = parse_month(first)
    end = parse_month(last) if last else start
    if end < start:
        raise ConfigError(f"tolerated range {spec!r} ends before it starts")
    return [month_str(m) for m in pd.period_range(start, end, freq="M")]


def _expand_tolerance(config: dict[str, Any], where: str) -> None:
    tolerate = config.get("meta", {}).get("tolerate")
    if tolerate is None:
        return
    kwargs = config.setdefault("kwargs", {})
    if config.get("type") != "expect_column_values_to_be_in_set" or not isinstance(kwargs.get("value_set"), list):
        raise ConfigError(f"{where}: meta.tolerate needs expect_column_values_to_be_in_set with a value_set list")
    if not isinstance(tolerate, dict) or not all(isinstance(v, list) for v in tolerate.values()):
        raise ConfigError(f"{where}: meta.tolerate must map a key to a list of YYYY-MM or YYYY-MM..YYYY-MM")
    extra = [f"{key} {month}" for key, specs in tolerate.items() for spec in specs for month in expand_months(spec)]
    kwargs["value_set"] = [*kwargs["value_set"], *extra]


def _check(suite: str, index: int, raw: Any) -> Check:
    where = f"expectations/{suite}.json expectation {index + 1}"
    if not isinstance(raw, dict) or "type" not in raw:
        raise ConfigError(f"{where}: an expectation needs a 'type' (e.g. expect_column_values_to_not_be_null)")
    config = copy.deepcopy(raw)
    meta = config.setdefault("meta", {})
    frame = meta.get("frame")
    if frame not in FRAMES:
        raise ConfigError(f"{where}: meta.frame {frame!r} is not a validation frame",
                          hint=f"choose one of {', '.join(FRAMES)}")
    severity = meta.setdefault("severity", config.get("severity", "critical"))
    if severity not in SEVERITIES:
        raise ConfigError(f"{where}: meta.severity must be critical or warning, not {severity!r}")
    if config.get("severity", severity) != severity:
        raise ConfigError(f"{where}: severity {config['severity']!r} and meta.severity {severity!r} disagree")
    config["severity"] = severity  # GX's own field, so GX's reports agree with the job's
    name = str(meta.get("check") or f"{config['type']}:{config.get('kwargs', {}).get('column', index + 1)}")
    _expand_tolerance(config, where)
    description = str(config.get("description") or name)
    return Check(suite=suite, name=name, frame=str(frame), severity=str(severity), description=description,
                 config=config)


def parse_suite(obj: Any, path: Path) -> Suite:
    """Validate one suite's JSON object into a :class:`Suite` (ConfigError naming the file on a problem)."""
    if not isinstance(obj, dict) or not isinstance(obj.get("expectations"), list):
        raise ConfigError(f"{path} is not an expectation suite (needs a list 'expectations')")
    name = str(obj.get("name") or path.stem)
    checks = [_check(name, i, raw) for i, raw in enumerate(obj["expectations"])]
    seen: set[str] = set()
    for check in checks:
        if check.name in seen:
            raise ConfigError(f"{path}: two expectations are named {check.name!r} (meta.check must be unique)")
        seen.add(check.name)
    _gx_parse(name, checks, path)
    return Suite(name=name, description=str(obj.get("meta", {}).get("description", "")), checks=checks, path=path)


def _gx_parse(name: str, checks: list[Check], path: Path) -> None:
    """Let GX build each expectation, so a typo in a type or kwarg fails here with the file's name.

    (``gx.ExpectationSuite`` would only log an invalid expectation and drop it.)
    """
    from great_expectations.expectations.expectation_configuration import ExpectationConfiguration

    for check in checks:
        config = copy.deepcopy(check.config)
        try:
            ExpectationConfiguration(type=config.pop("type"), kwargs=config.pop("kwargs", {}),
                                     meta=config.pop("meta", None), description=config.pop("description", None),
                                     notes=config.pop("notes", None),
                                     severity=config.pop("severity", "critical")).to_domain_obj()
            if config:
                raise ValueError(f"unknown keys {sorted(config)}")
        except Exception as exc:  # GX raises several types (pydantic, its own, KeyError)
            text = str(exc).strip()
            first = text.splitlines()[0] if text else type(exc).__name__
            raise ConfigError(f"{path}: expectation {check.name!r} of suite {name!r} is not valid for Great "
                              f"Expectations: {first}", hint="see expectations/README.md") from None


def load_suites(folder: Path | None = None) -> list[Suite]:
    """Every ``*.json`` suite in ``folder`` (default: the job's ``expectations/``), in run order."""
    folder = folder or expectations_dir()
    paths = sorted(folder.glob("*.json"))
    if not paths:
        raise ConfigError(f"no expectation suites in {folder}", hint="set ROTATION_HOME to the folder holding "
                          "expectations/")
    rank = {name: i for i, name in enumerate(SUITE_ORDER)}
    paths.sort(key=lambda p: (rank.get(p.stem, len(rank)), p.stem))
    suites = []
    for path in paths:
        try:
            obj = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as exc:
            raise ConfigError(f"cannot read expectation suite {path}: {exc}") from None
        suites.append(parse_suite(obj, path))
    return suites
