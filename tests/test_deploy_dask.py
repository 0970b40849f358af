"""The Dask cluster's Kubernetes manifests: valid (kubernetes-validate --strict, offline), on the job's own
image, reachable by the name the job and the workers use, with memory limits."""

from __future__ import annotations

import shlex
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
K8S = REPO / "docker" / "k8s"
MANIFESTS = sorted(K8S.glob("dask-*.yaml"))
VERSIONS = ("1.31", "1.37")  # the oldest supported (as the CronJob's podFailurePolicy) and the newest bundled


def _validator() -> str | None:
    local = Path(sys.executable).with_name("kubernetes-validate")
    return str(local) if local.exists() else shutil.which("kubernetes-validate")


def _docs(name: str) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all((K8S / name).read_text()) if d]


def _one(name: str, kind: str) -> dict[str, Any]:
    found = [d for d in _docs(name) if d["kind"] == kind]
    assert len(found) == 1, f"{name}: expected one {kind}"
    return found[0]


def _container(obj: dict[str, Any]) -> dict[str, Any]:
    spec = obj["spec"]["template"]["spec"]
    assert len(spec["containers"]) == 1
    return spec["containers"][0]


def _cronjob_image() -> str:
    cron = _one("cronjob.yaml", "CronJob")
    return cron["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]["image"]


def test_there_are_scheduler_workers_and_backfill_manifests() -> None:
    assert [p.name for p in MANIFESTS] == ["dask-backfill.yaml", "dask-scheduler.yaml", "dask-workers.yaml"]


@pytest.mark.parametrize("manifest", MANIFESTS, ids=lambda p: p.name)
@pytest.mark.parametrize("version", VERSIONS)
def test_manifests_pass_kubernetes_validate_strict(manifest: Path, version: str) -> None:
    validator = _validator()
    if validator is None:
        pytest.skip("kubernetes-validate is not installed (pip install kubernetes-validate)")
    result = subprocess.run([validator, "--strict", "--quiet", "-k", version, str(manifest)], capture_output=True,
                            text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_service_selects_the_scheduler_pods_on_the_port_the_workers_and_the_job_use() -> None:
    deployment = _one("dask-scheduler.yaml", "Deployment")
    service = _one("dask-scheduler.yaml", "Service")
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= labels.items()
    assert deployment["spec"]["selector"]["matchLabels"].items() <= labels.items()
    assert deployment["spec"]["replicas"] == 1
    port = service["spec"]["ports"][0]
    container = _container(deployment)
    assert port["targetPort"] in {p["name"] for p in container["ports"]}
    args = container["args"]
    assert args[:2] == ["dask", "scheduler"] and args[args.index("--port") + 1] == str(port["port"])
    address = f"tcp://{service['metadata']['name']}:{port['port']}"
    workers = _container(_one("dask-workers.yaml", "Deployment"))
    assert workers["args"][:3] == ["dask", "worker", address]
    backfill = _container(_one("dask-backfill.yaml", "Job"))
    assert {"name": "DASK_SCHEDULER_ADDRESS", "value": address} in backfill["env"]


def test_workers_run_one_single_threaded_process_on_the_jobs_image_with_a_memory_limit() -> None:
    """One fit per pod at a time, with the job's libraries (a fit's identity names them)."""
    workers = _container(_one("dask-workers.yaml", "Deployment"))
    args = workers["args"]
    assert args[args.index("--nworkers") + 1] == "1" and args[args.index("--nthreads") + 1] == "1"
    resources = workers["resources"]
    assert resources["limits"]["memory"] == resources["requests"]["memory"]
    assert int(resources["limits"]["memory"].removesuffix("Gi")) >= 4  # seed LSTM peak ~1.9 GB + TensorFlow
    for name in ("dask-workers.yaml", "dask-scheduler.yaml", "dask-backfill.yaml"):
        kind = "Job" if "backfill" in name else "Deployment"
        container = _container(_one(name, kind))
        assert container["image"] == _cronjob_image(), name
        assert "memory" in container["resources"]["limits"], name


@pytest.mark.parametrize("name", ["dask-scheduler.yaml", "dask-workers.yaml", "dask-backfill.yaml"])
def test_pods_are_locked_down_like_the_cronjobs(name: str) -> None:
    obj = _one(name, "Job" if "backfill" in name else "Deployment")
    spec = obj["spec"]["template"]["spec"]
    assert spec["securityContext"]["runAsNonRoot"] is True and spec["automountServiceAccountToken"] is False
    assert spec["enableServiceLinks"] is False
    security = _container(obj)["securityContext"]
    assert security["readOnlyRootFilesystem"] is True and security["allowPrivilegeEscalation"] is False
    assert security["capabilities"]["drop"] == ["ALL"]
    mounts = {m["mountPath"] for m in _container(obj)["volumeMounts"]}
    assert "/tmp" in mounts  # HOME, caches and Dask's local directory


def test_the_entrypoint_runs_dask_commands_as_given() -> None:
    """The containers' args start with `dask`, which the entrypoint executes as given (not a subcommand)."""
    text = (REPO / "entrypoint.sh").read_text()
    subcommands = next(line for line in text.splitlines() if line.startswith("SUBCOMMANDS="))
    assert "dask" not in shlex.split(subcommands.split("=", 1)[1])[0].split()
