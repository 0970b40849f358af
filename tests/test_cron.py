"""The plain-cron entry of the README (docker/cron/crontab), run as cron runs it.

cron starts ``/bin/sh -c '<command>'`` with nothing in its environment but what the crontab sets (PATH,
HOME, SHELL, the wrapper's CRON_LOG_* variables). These tests read the crontab's variable lines and
entries from the committed file, so the test and the documentation cannot drift apart; only the three
installation paths the file says to adapt are replaced by this checkout and temporary folders.
"""

from __future__ import annotations

import os
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.fault_model import CHEAP_CONFIG  # the cheapest real monthly job, one definition

REPO_ROOT = Path(__file__).resolve().parents[1]
CRONTAB = REPO_ROOT / "docker" / "cron" / "crontab"
ENV_EXAMPLE = REPO_ROOT / "docker" / "cron" / "rotation.env.example"
WRAPPER = REPO_ROOT / "scripts" / "rotation-cron"
SCHEDULE = r"(?P<schedule>(?:\S+\s+){4}\S+)\s+(?P<command>.+)"


@dataclass
class Crontab:
    variables: dict[str, str]
    entries: list[str]  # active entries' commands
    commented: list[str]  # commands of entries commented out (the alternatives)


def read_crontab(text: str) -> Crontab:
    """Variable lines (NAME=value), active entries and commented-out entries of a crontab."""
    variables: dict[str, str] = {}
    entries: list[str] = []
    commented: list[str] = []
    for raw in text.splitlines():
        line = raw.strip()
        if not line:
            continue
        if line.startswith("#"):
            m = re.fullmatch(r"#\s*" + SCHEDULE, line)
            if m and re.fullmatch(r"[\d*/,-]+", m["schedule"].split()[0]):
                commented.append(m["command"])
            continue
        var = re.fullmatch(r"([A-Za-z_][A-Za-z0-9_]*)\s*=\s*(.*)", line)
        if var:
            variables[var[1]] = var[2]
            continue
        m = re.fullmatch(SCHEDULE, line)
        assert m, f"not a crontab line: {line}"
        entries.append(m["command"])
    return Crontab(variables, entries, commented)


@dataclass
class Host:
    """A pretend host: the crontab's paths mapped to this checkout and temporary folders."""

    root: Path

    @property
    def etc(self) -> Path:
        return self.root / "etc"

    @property
    def home(self) -> Path:
        return self.root / "home"

    def adapt(self, text: str) -> str:
        return (text.replace("/opt/sector-rotation", str(REPO_ROOT))
                .replace("/etc/sector-rotation", str(self.etc))
                .replace("/var/lib/sector-rotation", str(self.home)))

    def cron(self, command: str, variables: dict[str, str], timeout: float = 900) -> subprocess.CompletedProcess[str]:
        """``/bin/sh -c COMMAND`` under ``env -i`` with only the crontab's variables (as cron does)."""
        env = [f"{k}={self.adapt(v)}" for k, v in variables.items() if k != "MAILTO"]
        return subprocess.run(["env", "-i", *env, "/bin/sh", "-c", self.adapt(command)], capture_output=True,
                              text=True, timeout=timeout, check=False, cwd=self.home)


@pytest.fixture
def host(tmp_path: Path) -> Host:
    made = Host(tmp_path)
    made.etc.mkdir()
    made.home.mkdir()
    return made


@pytest.fixture
def crontab() -> Crontab:
    return read_crontab(CRONTAB.read_text())


def write_env(host: Host, store: Path, **extra: str) -> Path:
    """The example env file, with a local store, the sample source and the cheapest models appended
    (later lines win)."""
    config = host.etc / "cheap.toml"
    config.write_text(CHEAP_CONFIG)
    lines = [ENV_EXAMPLE.read_text().rstrip("\n"), "# the test's settings",
             f"ROTATION_STORE={store}", "ROTATION_SOURCE=sample", "ROTATION_MODELS=persistence,historical-mean",
             f"ROTATION_CONFIG={config}", *(f"{k}={v}" for k, v in extra.items())]
    path = host.etc / "rotation.env"
    path.write_text("\n".join(lines) + "\n")
    path.chmod(0o600)
    return path


def logs(host: Host, variables: dict[str, str]) -> list[Path]:
    return sorted(Path(host.adapt(variables["CRON_LOG_DIR"])).glob("rotation-*.log"))


def test_crontab_sets_what_cron_does_not(crontab: Crontab) -> None:
    """The crontab sets an explicit PATH (with the venv), HOME, SHELL=/bin/sh and the wrapper's log
    settings; its entry runs the wrapper with the env file; the image's alternative passes the same file."""
    assert crontab.variables["SHELL"] == "/bin/sh"
    assert crontab.variables["PATH"].split(":")[0] == "/opt/sector-rotation/.venv/bin"
    assert {"HOME", "CRON_LOG_DIR", "CRON_LOG_KEEP", "MAILTO"} <= set(crontab.variables)
    assert not [k for k in crontab.variables if k.startswith("ROTATION_")]  # the job refuses unknown ones
    assert len(crontab.entries) == 1
    assert crontab.entries[0].split()[:3] == ["/opt/sector-rotation/scripts/rotation-cron",
                                             "/etc/sector-rotation/rotation.env", "rotation"]
    docker = [c for c in crontab.commented if " docker run " in c]
    assert docker and "--env-file /etc/sector-rotation/rotation.env" in docker[0]
    for command in [*crontab.entries, *docker]:
        assert subprocess.run(["/bin/sh", "-n", "-c", command], check=False).returncode == 0


def test_readme_shows_the_committed_entry(crontab: Crontab) -> None:
    """The README's plain-cron section quotes the committed crontab's entry."""
    readme = (REPO_ROOT / "README.md").read_text()
    assert "### Plain cron" in readme
    assert crontab.entries[0] in readme


@pytest.mark.slow
def test_cron_entry_runs_the_month(host: Host, crontab: Crontab) -> None:
    """As cron runs it: exit 0, nothing printed (no mail), the run's output in a new log file, old logs
    pruned to CRON_LOG_KEEP."""
    store = host.root / "store"
    write_env(host, store)
    log_dir = Path(host.adapt(crontab.variables["CRON_LOG_DIR"]))
    log_dir.mkdir(parents=True)
    for day in range(1, 31):  # older logs: only the newest CRON_LOG_KEEP may stay
        (log_dir / f"rotation-202001{day:02d}T060000Z.log").write_text("old\n")
    done = host.cron(crontab.entries[0], crontab.variables)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout == "" and done.stderr == ""
    kept = logs(host, crontab.variables)
    assert len(kept) == int(crontab.variables["CRON_LOG_KEEP"])
    newest = kept[-1]
    assert "rotation-2020" not in newest.name
    text = newest.read_text()
    assert "published 20" in text and text.rstrip().endswith("exit 0")
    assert (log_dir / "latest.log").resolve() == newest.resolve()
    assert list(store.glob("runs/as_of=*/manifest.json"))


def test_cron_entry_surfaces_a_failure_in_one_line(host: Host, crontab: Crontab) -> None:
    """An unwritable store: the job's exit code is the entry's, and cron mails one line naming it, the
    job's error line and the log."""
    blocker = host.root / "not-a-folder"
    blocker.write_text("a file where the store's parent folder should be\n")
    write_env(host, blocker / "store")  # cannot be created, even by root
    done = host.cron(crontab.entries[0], crontab.variables, timeout=300)
    assert done.returncode == 5, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    assert len(lines) == 1 and done.stderr == "", done.stdout + done.stderr
    assert lines[0].startswith("sector-rotation: rotation exited 5: error: ")
    log = logs(host, crontab.variables)[-1]
    assert f"(log: {log})" in lines[0]
    assert "error: " in log.read_text()


def test_docker_entry_passes_the_env_file_and_surfaces_its_code(host: Host, crontab: Crontab,
                                                               tmp_path: Path) -> None:
    """The image's entry, with a stand-in ``docker`` on PATH (no engine here): it gets the env file and the
    image, and its exit code and error line come back as for the installed command."""
    write_env(host, host.root / "store")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    record = tmp_path / "docker-args"
    (bin_dir / "docker").write_text(f'#!/bin/sh\nprintf "%s\\n" "$@" > {record}\n'
                                    'echo "error: the artifact store is unreachable (check the endpoint)" >&2\n'
                                    "exit 5\n")
    (bin_dir / "docker").chmod(0o755)
    variables = {**crontab.variables, "PATH": f"{bin_dir}:{crontab.variables['PATH']}"}
    docker = next(c for c in crontab.commented if " docker run " in c)
    done = host.cron(docker, variables, timeout=60)
    assert done.returncode == 5
    assert done.stdout.splitlines() == [done.stdout.strip()]
    assert done.stdout.startswith("sector-rotation: docker exited 5: error: the artifact store is unreachable")
    args = record.read_text().splitlines()
    assert args[0] == "run" and args[-1] == "sector-rotation:local"
    assert args[args.index("--env-file") + 1] == str(host.etc / "rotation.env")


def test_wrapper_refuses_a_bad_env_file(host: Host, crontab: Crontab) -> None:
    """A line that is not KEY=VALUE: exit 2 and one line naming the file and the line."""
    env = host.etc / "rotation.env"
    env.write_text("ROTATION_SOURCE=sample\nexport FOO=bar\n")
    done = host.cron(crontab.entries[0], crontab.variables, timeout=60)
    assert done.returncode == 2
    assert done.stdout == f"sector-rotation: {env}: line 2 is not KEY=VALUE (exit 2)\n"
    assert os.access(WRAPPER, os.X_OK)
