"""Where the job's non-Python files live: ``sql/`` and ``expectations/``.

From a source checkout they sit beside the ``job`` package; in the container (or any install) set
``ROTATION_HOME`` to the folder holding them (the image sets ``/app``).
"""

from __future__ import annotations

import os
from pathlib import Path

from job.errors import ConfigError


def home() -> Path:
    """The folder that holds ``sql/`` and ``expectations/``."""
    env = os.environ.get("ROTATION_HOME")
    candidates = [Path(env)] if env else []
    candidates.append(Path(__file__).resolve().parents[1])
    for candidate in candidates:
        if (candidate / "sql").is_dir():
            return candidate
    raise ConfigError("cannot find the job's sql/ folder", hint="set ROTATION_HOME to the folder holding sql/")


def sql_path(name: str) -> Path:
    return home() / "sql" / name


def expectations_dir() -> Path:
    return home() / "expectations"
