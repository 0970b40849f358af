"""The stateful fault test: random sequences of commands and faults, the store's promises after every step.

The model, the driver and the invariants are in :mod:`tests.fault_model` (its docstring lists them).
The CI variant runs ``ROTATION_STATEFUL_STEPS`` unset: 100 steps on a local folder and 100 on a moto S3
server behind the fault proxy (3 % of requests answered 503, responses dropped and outages at random),
seeded (``ROTATION_STATEFUL_SEED``, default below). The long variant (``-m slow`` with
``ROTATION_STATEFUL_STEPS=N``) runs N steps on each store with proportionally more of the costly steps.
A failure prints the seed, the whole sequence with each step's outcome, and the command that replays it.
Figures of the latest runs: RELIABILITY.md.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from tests.fault_model import Budget, Driver, Target, Violation, can_use_other_host, describe_machine
from tests.s3_server import S3Target

CI_STEPS = 100  # per store: 200 in all
DEFAULT_SEED = 20261129
BASE_503_SHARE = 0.03

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1800)]


# Read at import: the autouse fixture of conftest.py removes every ROTATION_* variable before each test.
_SEED_TEXT = os.environ.get("ROTATION_STATEFUL_SEED", "")
_STEPS_TEXT = os.environ.get("ROTATION_STATEFUL_STEPS", "")


def _seed() -> int:
    return int(_SEED_TEXT or DEFAULT_SEED)


def _long_steps() -> int | None:
    return int(_STEPS_TEXT) if _STEPS_TEXT else None


@pytest.fixture(scope="module")
def other_host() -> bool:
    """Whether signalled runs can get another host name (a UTS namespace: root); else they share ours."""
    able = can_use_other_host()
    if not able:
        print("note: no UTS namespace here: every signalled run shares this host name, so a dead holder is "
              "recognised by its pid and the lease path is exercised by store outages only")
    return able


def _drive(target: Target, tmp_path: Path, warehouse: Path, steps: int, other_host: bool) -> None:
    copy = tmp_path / "warehouse.duckdb"
    shutil.copyfile(warehouse, copy)
    driver = Driver(target, _seed(), Budget.scaled(steps), tmp_path, copy, other_host)
    print(f"\nstateful fault test on {target.name}, seed {driver.seed}, {steps} steps; machine: {describe_machine()}")
    try:
        stats = driver.run()
    except Violation as exc:
        pytest.fail(str(exc), pytrace=False)
    print(f"stateful {target.name}: {stats.summary()}; machine after: {describe_machine()}")
    assert stats.steps >= steps


def _local(tmp_path: Path) -> Target:
    from job.store import open_store

    uri = str(tmp_path / "artifacts")
    return Target("local", uri, open_store(uri))


def _s3(s3_bucket: S3Target, fault_proxy: object) -> Target:
    from job.store import open_store

    proxy = fault_proxy(s3_bucket.endpoint, share=BASE_503_SHARE, seed=_seed())  # type: ignore[operator]
    return Target("s3", s3_bucket.uri, open_store(s3_bucket.uri), proxy=proxy, base_share=BASE_503_SHARE)


def test_stateful_local(tmp_path: Path, sample_warehouse: Path, other_host: bool) -> None:
    """Random commands, SIGKILLs and SIGTERMs against a local folder keep every promise after every step."""
    _drive(_local(tmp_path), tmp_path, sample_warehouse, CI_STEPS, other_host)


@pytest.mark.s3
def test_stateful_s3(tmp_path: Path, sample_warehouse: Path, other_host: bool, s3_bucket: S3Target,
                     fault_proxy: object) -> None:
    """The same against moto S3 behind the fault proxy: 503s, dropped responses, outages mid-command."""
    _drive(_s3(s3_bucket, fault_proxy), tmp_path, sample_warehouse, CI_STEPS, other_host)


@pytest.mark.parametrize("store", ["local", pytest.param("s3", marks=pytest.mark.s3)])
def test_stateful_long(store: str, tmp_path: Path, sample_warehouse: Path, other_host: bool,
                       request: pytest.FixtureRequest) -> None:
    """The long variant: ROTATION_STATEFUL_STEPS steps on each store (not run unless that is set)."""
    steps = _long_steps()
    if steps is None:
        pytest.skip("the long stateful variant runs with ROTATION_STATEFUL_STEPS=N (CI runs the short one)")
    if store == "local":
        target = _local(tmp_path)
    else:
        target = _s3(request.getfixturevalue("s3_bucket"), request.getfixturevalue("fault_proxy"))
    _drive(target, tmp_path, sample_warehouse, steps, other_host)
