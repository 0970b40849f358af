"""Deployment files: lint, the entrypoint's behaviour, and consistency between image, manifests and code.

The entrypoint runs on the host with a fake ``rotation`` on PATH that prints its argv (and traps SIGTERM),
so its mapping of environment to command line, its passthrough, its bounded wait for the S3 endpoint and
its ``exec`` are checked without building the image (tests/test_container.py does that, in CI).
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from job.config import load_settings
from job.errors import ExitCode

REPO = Path(__file__).resolve().parents[1]
ENTRYPOINT = REPO / "entrypoint.sh"
SUBCOMMANDS = ["ingest", "validate", "train", "forecast", "backtest", "report", "run", "query", "config"]

FAKE_ROTATION = """#!/usr/bin/env bash
# A stand-in for the CLI: records that it ran, prints one argument per line, exits with $FAKE_EXIT.
echo "pid=$$" >&2
if [[ -n "${FAKE_WAIT:-}" ]]; then
  trap 'echo got-TERM; exit 143' TERM
  echo ready
  while :; do sleep 0.05; done
fi
printf '%s\\n' "$@"
exit "${FAKE_EXIT:-0}"
"""


@pytest.fixture
def fake_bin(tmp_path: Path) -> Path:
    """A folder holding the fake ``rotation`` executable."""
    folder = tmp_path / "bin"
    folder.mkdir()
    script = folder / "rotation"
    script.write_text(FAKE_ROTATION)
    script.chmod(0o755)
    return folder


def entry_env(fake_bin: Path, **extra: str) -> dict[str, str]:
    """A clean environment for the entrypoint: PATH with the fake CLI first, no ROTATION_* or AWS_*."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ROTATION_", "AWS_"))}
    env["PATH"] = f"{fake_bin}{os.pathsep}{env.get('PATH', '/usr/bin:/bin')}"
    env.update(extra)
    return env


def run_entry(fake_bin: Path, *args: str, cwd: Path | None = None,
              **env: str) -> subprocess.CompletedProcess[str]:
    """Run entrypoint.sh with ``args``; a hung wait would fail the test through the timeout."""
    return subprocess.run(["bash", str(ENTRYPOINT), *args], env=entry_env(fake_bin, **env), cwd=cwd,
                          capture_output=True, text=True, timeout=60, check=False)


def argv_of(result: subprocess.CompletedProcess[str]) -> list[str]:
    """The arguments the fake CLI received (empty when it did not run)."""
    assert "pid=" in result.stderr, f"the CLI did not run: {result.stderr}"
    return result.stdout.splitlines()


@pytest.fixture
def open_port() -> Iterator[int]:
    """A port on 127.0.0.1 that accepts TCP connections."""
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(16)
        yield server.getsockname()[1]


@pytest.fixture
def closed_port() -> int:
    """A port on 127.0.0.1 where nothing listens (connections are refused)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


# --- lint -------------------------------------------------------------------------------------------------


@pytest.mark.skipif(shutil.which("bash") is None, reason="bash is needed for scripts/lint_deploy.sh")
def test_lint_deploy_passes() -> None:
    """hadolint, kubernetes-validate --strict and docker-compose config accept the deployment files."""
    result = subprocess.run(["bash", str(REPO / "scripts" / "lint_deploy.sh")], capture_output=True, text=True,
                            timeout=300, check=False, cwd=REPO)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "all checks passed" in result.stdout


# --- entrypoint: environment -> command line ------------------------------------------------------------


def test_no_arguments_runs_the_last_complete_month(fake_bin: Path) -> None:
    """With no arguments and no settings the container runs `rotation run` (the CLI picks the month)."""
    result = run_entry(fake_bin)
    assert result.returncode == 0, result.stderr
    assert argv_of(result) == ["run"]


def test_environment_maps_to_run_options(fake_bin: Path) -> None:
    """ROTATION_GLOBAL_ARGS, ROTATION_VERBOSE, ROTATION_AS_OF and ROTATION_ARGS become CLI arguments."""
    result = run_entry(fake_bin, ROTATION_AS_OF="2024-05", ROTATION_ARGS="--models ridge,tree  --no-report",
                       ROTATION_GLOBAL_ARGS="--log-format json", ROTATION_VERBOSE="1")
    assert argv_of(result) == ["-v", "--log-format", "json", "run", "--as-of", "2024-05",
                               "--models", "ridge,tree", "--no-report"]


def test_rotation_command_changes_the_default_subcommand(fake_bin: Path) -> None:
    """ROTATION_COMMAND=backtest runs `rotation backtest` instead of `run`."""
    assert argv_of(run_entry(fake_bin, ROTATION_COMMAND="backtest")) == ["backtest"]


def test_argument_strings_are_not_glob_expanded(fake_bin: Path, tmp_path: Path) -> None:
    """A `*` in ROTATION_ARGS reaches the CLI as is, whatever files the working folder holds."""
    (tmp_path / "a-file").write_text("")
    assert argv_of(run_entry(fake_bin, cwd=tmp_path, ROTATION_ARGS="--models *")) == ["run", "--models", "*"]


def test_options_alone_are_options_of_run(fake_bin: Path) -> None:
    """`docker run IMAGE --as-of 2024-01` means `rotation run --as-of 2024-01`."""
    result = run_entry(fake_bin, "--as-of", "2024-01", ROTATION_GLOBAL_ARGS="--log-format json")
    assert argv_of(result) == ["--log-format", "json", "run", "--as-of", "2024-01"]


@pytest.mark.parametrize("subcommand", SUBCOMMANDS)
def test_subcommands_get_the_rotation_prefix(fake_bin: Path, subcommand: str) -> None:
    """Every CLI subcommand name as the first argument runs `rotation <subcommand> ...`."""
    assert argv_of(run_entry(fake_bin, subcommand, "--flag")) == [subcommand, "--flag"]


def test_query_text_stays_one_argument(fake_bin: Path) -> None:
    """A SQL statement with spaces and quotes reaches `rotation query` as one argument."""
    sql = "select model, count(*) from weights where as_of = '2024-05' group by 1"
    assert argv_of(run_entry(fake_bin, "query", sql)) == ["query", sql]


def test_other_commands_pass_through(fake_bin: Path) -> None:
    """Anything else (a shell, python3, `rotation --help`) is executed as given, exit code included."""
    result = run_entry(fake_bin, "bash", "-c", "echo from-shell; exit 7")
    assert result.returncode == 7
    assert result.stdout == "from-shell\n"
    assert "pid=" not in result.stderr
    assert argv_of(run_entry(fake_bin, "rotation", "--help")) == ["--help"]


@pytest.mark.parametrize("code", [ExitCode.VALIDATION, ExitCode.STORE, ExitCode.LOCKED])
def test_exit_code_of_the_job_is_the_containers(fake_bin: Path, code: ExitCode) -> None:
    """The CronJob's podFailurePolicy sees the CLI's own exit code."""
    assert run_entry(fake_bin, FAKE_EXIT=str(int(code))).returncode == code


def test_writable_folders_are_created(fake_bin: Path, tmp_path: Path) -> None:
    """HOME and the cache folders under an empty /tmp (a fresh emptyDir) exist before the job starts."""
    home, mpl, keras = tmp_path / "t" / "home", tmp_path / "t" / "cache" / "mpl", tmp_path / "t" / "keras"
    result = run_entry(fake_bin, HOME=str(home), MPLCONFIGDIR=str(mpl), KERAS_HOME=str(keras))
    assert result.returncode == 0, result.stderr
    assert home.is_dir() and mpl.is_dir() and keras.is_dir()


# --- entrypoint: bounded wait for the S3 endpoint --------------------------------------------------------


def test_wait_for_closed_port_times_out_with_exit_5(fake_bin: Path, closed_port: int) -> None:
    """Nothing listening: after ROTATION_WAIT_FOR_STORE_S seconds, exit 5 (store unavailable), one line."""
    result = run_entry(fake_bin, ROTATION_WAIT_FOR_STORE_S="2", AWS_ENDPOINT_URL=f"http://127.0.0.1:{closed_port}")
    assert result.returncode == ExitCode.STORE
    assert "pid=" not in result.stderr, "the job must not start"
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1
    assert re.match(rf"error: S3 endpoint http://127\.0\.0\.1:{closed_port} .*did not answer within 2 s", lines[0])
    assert "Traceback" not in result.stderr


def test_wait_for_open_port_starts_the_job(fake_bin: Path, open_port: int) -> None:
    """An endpoint that accepts connections: the job starts."""
    result = run_entry(fake_bin, ROTATION_WAIT_FOR_STORE_S="5", AWS_ENDPOINT_URL=f"http://127.0.0.1:{open_port}")
    assert result.returncode == 0, result.stderr
    assert argv_of(result) == ["run"]


def test_rotation_s3_endpoint_wins_over_aws_endpoint_url(fake_bin: Path, open_port: int, closed_port: int) -> None:
    """The wait probes ROTATION_S3_ENDPOINT (the job's own setting) before AWS_ENDPOINT_URL; no scheme needed."""
    result = run_entry(fake_bin, ROTATION_WAIT_FOR_STORE_S="5", ROTATION_S3_ENDPOINT=f"127.0.0.1:{open_port}",
                       AWS_ENDPOINT_URL=f"http://127.0.0.1:{closed_port}")
    assert result.returncode == 0, result.stderr


def test_wait_needs_whole_seconds(fake_bin: Path) -> None:
    """A malformed timeout is a configuration error (exit 2) with a clear message."""
    result = run_entry(fake_bin, ROTATION_WAIT_FOR_STORE_S="soon", AWS_ENDPOINT_URL="http://127.0.0.1:9")
    assert result.returncode == ExitCode.USAGE
    assert "ROTATION_WAIT_FOR_STORE_S must be a whole number of seconds" in result.stderr


def test_no_wait_without_endpoint_or_for_a_shell(fake_bin: Path, closed_port: int) -> None:
    """No endpoint configured: a notice, then the job. A shell never waits for the store."""
    result = run_entry(fake_bin, ROTATION_WAIT_FOR_STORE_S="2")
    assert result.returncode == 0
    assert "no S3 endpoint" in result.stderr
    shell = run_entry(fake_bin, "true", ROTATION_WAIT_FOR_STORE_S="2",
                      AWS_ENDPOINT_URL=f"http://127.0.0.1:{closed_port}")
    assert shell.returncode == 0


# --- entrypoint: exec, so signals reach the job ---------------------------------------------------------


def test_job_replaces_the_shell_and_receives_sigterm(fake_bin: Path) -> None:
    """The entrypoint execs the CLI: same PID, and SIGTERM (Kubernetes stopping the pod) reaches it."""
    proc = subprocess.Popen(["bash", str(ENTRYPOINT)], env=entry_env(fake_bin, FAKE_WAIT="1"),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stderr is not None and proc.stdout is not None
        assert proc.stderr.readline().strip() == f"pid={proc.pid}"
        assert proc.stdout.readline().strip() == "ready"
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert "got-TERM" in out
    assert proc.returncode == 143


def _can_make_pid_namespace() -> bool:
    if os.geteuid() != 0 or not shutil.which("unshare") or not shutil.which("tini"):
        return False
    probe = subprocess.run(["unshare", "-pf", "--mount-proc", "true"], capture_output=True, check=False)
    return probe.returncode == 0


@pytest.mark.skipif(not _can_make_pid_namespace(),
                    reason="needs root, unshare and tini (apt-get install tini) to run the entrypoint as PID 1")
def test_as_pid_1_the_job_runs_under_tini_and_stops_on_sigterm(fake_bin: Path) -> None:
    """As PID 1 (a pod) the entrypoint puts tini first, so a job without a SIGTERM handler still stops.

    Python as PID 1 would ignore SIGTERM and Kubernetes would kill it only after the grace period.
    """
    first = subprocess.run(["unshare", "-pf", "--mount-proc", "bash", str(ENTRYPOINT), "cat", "/proc/1/comm"],
                           env=entry_env(fake_bin), capture_output=True, text=True, timeout=30, check=False)
    assert first.stdout.strip() == "tini", first.stderr
    proc = subprocess.Popen(["unshare", "-pf", "--kill-child=SIGTERM", "--mount-proc", "bash", str(ENTRYPOINT),
                             "python3", "-c", "import time; print('ready', flush=True); time.sleep(600)"],
                            env=entry_env(fake_bin), stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "ready"
        # Signal the namespace's PID 1 (what the kubelet does), not unshare, which ignores SIGTERM.
        init = int(Path(f"/proc/{proc.pid}/task/{proc.pid}/children").read_text().split()[0])
        os.kill(init, signal.SIGTERM)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            pytest.fail("the job ignored SIGTERM as PID 1")


# --- consistency between the image, the manifests and the code ------------------------------------------


def dockerfile_env() -> dict[str, str]:
    """The ENV settings of the Dockerfile's final stage."""
    text = (REPO / "Dockerfile").read_text()
    final = text.rsplit("\nFROM ", 1)[1].replace("\\\n", " ")
    env: dict[str, str] = {}
    for line in final.splitlines():
        if line.startswith("ENV "):
            env.update(re.findall(r"(\w+)=(\S+)", line))
    return env


def test_dockerfile_contract() -> None:
    """Substitutable base, exec-form entrypoint, numeric non-root user, writable paths only under /tmp."""
    text = (REPO / "Dockerfile").read_text()
    assert "ARG BASE_IMAGE=python:3.11-slim-bookworm" in text
    assert 'ENTRYPOINT ["/entrypoint.sh"]' in text
    assert re.search(r"^USER 10001:10001$", text, re.M)
    env = dockerfile_env()
    for name in ("HOME", "TMPDIR", "XDG_CACHE_HOME", "MPLCONFIGDIR", "KERAS_HOME", "YF_CACHE_DIR",
                 "ROTATION_CACHE_DIR", "ROTATION_WAREHOUSE"):
        assert env[name].startswith("/tmp"), name
    assert env["ROTATION_HOME"] == "/app"
    assert not re.search(r"(SECRET|PASSWORD|API_KEY|TOKEN)\w*=", text), "no secrets in the image"
    assert os.access(ENTRYPOINT, os.X_OK)


def test_image_environment_is_valid_configuration() -> None:
    """The image's ROTATION_* variables are accepted by the configuration loader (no unknown names)."""
    env = {k: v for k, v in dockerfile_env().items() if k.startswith("ROTATION_")}
    assert load_settings(environ=env).paths.warehouse == "/tmp/warehouse.duckdb"


def k8s(name: str) -> dict:
    return yaml.safe_load((REPO / "docker" / "k8s" / name).read_text())


def test_cronjob_failure_policy_matches_exit_codes() -> None:
    """Bad configuration and failed validation fail the Job; upstream, store and lock errors are retried."""
    job = k8s("cronjob.yaml")["spec"]["jobTemplate"]["spec"]
    rules = {rule["action"]: rule for rule in job["podFailurePolicy"]["rules"] if "onExitCodes" in rule}
    assert set(rules["FailJob"]["onExitCodes"]["values"]) == {ExitCode.USAGE, ExitCode.VALIDATION}
    assert set(rules["Count"]["onExitCodes"]["values"]) == {ExitCode.UPSTREAM, ExitCode.STORE, ExitCode.LOCKED}
    for rule in rules.values():  # the API server rejects values out of order
        assert rule["onExitCodes"]["values"] == sorted(rule["onExitCodes"]["values"])
    container = job["template"]["spec"]["containers"][0]
    assert {r["onExitCodes"]["containerName"] for r in rules.values()} == {container["name"]}
    assert job["template"]["spec"]["restartPolicy"] == "Never"


def test_cronjob_retries_outlast_a_dead_holders_lease() -> None:
    """Exit 6 is retried: the attempts' lock waits plus the pod backoff (10 s doubling, capped at 6 min)
    cover more than one lease of the ConfigMap's settings, so a lock left by a killed attempt has lapsed
    before the retries run out, and all of it fits in activeDeadlineSeconds."""
    job = k8s("cronjob.yaml")["spec"]["jobTemplate"]["spec"]
    env = {k: v for k, v in k8s("configmap.yaml")["data"].items() if k.startswith("ROTATION_")}
    store = load_settings(environ=env).store
    retries = job["backoffLimit"]
    backoff = sum(min(10 * 2**i, 360) for i in range(retries))
    covered = backoff + (retries + 1) * store.lock_wait_s
    assert covered > 2 * store.lock_lease_s, (covered, store.lock_lease_s)
    assert job["activeDeadlineSeconds"] > covered + 3600, "room for the retries and an hour-long run"


def test_cronjob_pods_get_no_service_link_variables() -> None:
    """A Service named `rotation` would inject ROTATION_SERVICE_HOST / ROTATION_PORT_* into the pod."""
    pod = k8s("cronjob.yaml")["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    assert pod["enableServiceLinks"] is False


def test_cronjob_runs_hardened_as_the_image_user() -> None:
    """runAsNonRoot as uid 10001 (the Dockerfile's USER), read-only root, /tmp an emptyDir, no capabilities."""
    cron = k8s("cronjob.yaml")["spec"]
    assert cron["concurrencyPolicy"] == "Forbid"
    assert cron["timeZone"]
    pod = cron["jobTemplate"]["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == 10001
    assert pod["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault"
    assert pod["enableServiceLinks"] is False  # no ROTATION_SERVICE_*/ROTATION_PORT_* from a Service "rotation"
    container = pod["containers"][0]
    sc = container["securityContext"]
    assert sc["readOnlyRootFilesystem"] is True
    assert sc["allowPrivilegeEscalation"] is False
    assert sc["capabilities"]["drop"] == ["ALL"]
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    assert "emptyDir" in next(v for v in pod["volumes"] if v["name"] == mounts["/tmp"])
    refs = {next(iter(e)) for e in container["envFrom"]}
    assert refs == {"configMapRef", "secretRef"}
    assert container["resources"]["limits"]["memory"]


def test_configmap_and_env_example_are_valid_configuration() -> None:
    """Every ROTATION_* name in the ConfigMap and in docker/.env.example is one the job accepts."""
    data = k8s("configmap.yaml")["data"]
    example = dict(re.findall(r"^(ROTATION_\w+)=(.*)$", (REPO / "docker" / ".env.example").read_text(), re.M))
    for environ in ({k: v for k, v in data.items() if k.startswith("ROTATION_")}, example):
        settings = load_settings(environ=environ)
        assert settings.paths.store.startswith("s3://")
    secret = k8s("secret.example.yaml")["stringData"]
    assert set(secret) >= {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "FRED_API_KEY"}
    assert not set(secret) & set(data), "secrets stay out of the ConfigMap"


def test_compose_job_waits_for_the_bucket() -> None:
    """The job starts after bucket-init succeeded, which starts after the S3 server is healthy."""
    services = yaml.safe_load((REPO / "docker" / "compose.yaml").read_text())["services"]
    assert services["job"]["depends_on"]["bucket-init"]["condition"] == "service_completed_successfully"
    assert services["bucket-init"]["depends_on"]["s3"]["condition"] == "service_healthy"
    image = services["s3"]["image"]
    assert ":" in image and not image.endswith(":latest"), "the S3 server image is pinned"
    assert services["job"]["read_only"] is True
