#!/usr/bin/env bash
# Build the project's container image without a Docker engine (CI and developer machines).
#
# 1. A Debian bookworm base image is made locally with debootstrap (no registry is reachable from CI):
#    minbase + python3, python3-venv, ca-certificates, tini. It is cached: the rootfs tarball under
#    $ROTATION_CI_WORK/container/base/ and the image in the buildah storage under the same work dir.
# 2. The project's Dockerfile is built with buildah (vfs storage, chroot isolation) on that base:
#    --pull=never --build-arg BASE_IMAGE=localhost/rotation-base:bookworm. pip inside the build gets the
#    host CA bundle (PIP_CERT), as PLATFORM.md describes.
# 3. It prints the build time and the image size, and writes them to build.json in the work dir.
#
# Usage: scripts/build_image.sh [--rebuild-base] [--layers] [--install-only]
# Environment: ROTATION_CI_WORK (default .ci/work), ROTATION_IMAGE (default localhost/sector-rotation:ci).
# Needs root (debootstrap, buildah chroot isolation); installs buildah and debootstrap with apt if missing.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
WORK="${ROTATION_CI_WORK:-$REPO/.ci/work}/container"
IMAGE="${ROTATION_IMAGE:-localhost/sector-rotation:ci}"
BASE_IMAGE="localhost/rotation-base:bookworm"
MIRROR="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
HOST_CA="/etc/ssl/certs/ca-certificates.crt"

rebuild_base=0
layers=false
install_only=0
for arg in "$@"; do
  case "$arg" in
    --rebuild-base) rebuild_base=1 ;;
    --layers) layers=true ;;  # keep intermediate layers: faster rebuilds, slower first build on vfs
    --install-only) install_only=1 ;;  # only install buildah and debootstrap (scripts/test_services.sh)
    -h|--help) awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; exit 0 ;;
    *) echo "build_image.sh: unknown argument $arg" >&2; exit 2 ;;
  esac
done

log() { printf '[build_image %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

if [[ $(id -u) -ne 0 ]]; then
  echo "build_image.sh: needs root (debootstrap and buildah --isolation chroot)" >&2
  exit 2
fi

missing=()
command -v buildah >/dev/null || missing+=(buildah)
command -v debootstrap >/dev/null || missing+=(debootstrap)
if ((${#missing[@]})); then
  log "installing ${missing[*]} with apt"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

((install_only)) && exit 0

mkdir -p "$WORK/base" "$WORK/storage" "$WORK/runroot"
# All buildah state lives in the work dir, so CI never touches the machine's default storage.
buildah_() { buildah --root "$WORK/storage" --runroot "$WORK/runroot" --storage-driver vfs "$@"; }

image_exists() {  # (no `buildah images | grep -q`: grep exiting early makes pipefail see SIGPIPE)
  local names
  names=$(buildah_ images --noheading --format '{{.Name}}:{{.Tag}}' 2>/dev/null || true)
  grep -qx "$1" <<<"$names"
}

started=$(date +%s)

# --- 1. the local Debian base image ---------------------------------------------------------------
if ((rebuild_base)); then
  rm -f "$WORK/base/rootfs.tar.gz"
  image_exists "$BASE_IMAGE" && buildah_ rmi -f "$BASE_IMAGE" >/dev/null
fi
if [[ ! -s "$WORK/base/rootfs.tar.gz" ]]; then
  log "debootstrap bookworm (minbase + python3, python3-venv, ca-certificates, tini) from $MIRROR"
  rootfs="$WORK/base/rootfs"
  rm -rf "$rootfs"
  t0=$(date +%s)
  debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates,tini \
    bookworm "$rootfs" "$MIRROR" >"$WORK/base/debootstrap.log" 2>&1 \
    || { tail -20 "$WORK/base/debootstrap.log" >&2; echo "build_image.sh: debootstrap failed" >&2; exit 1; }
  rm -rf "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/*.bin "$rootfs"/var/cache/apt/archives/*.deb
  tar -C "$rootfs" --numeric-owner -czf "$WORK/base/rootfs.tar.gz.tmp" .
  mv "$WORK/base/rootfs.tar.gz.tmp" "$WORK/base/rootfs.tar.gz"
  rm -rf "$rootfs"
  log "debootstrap took $(($(date +%s) - t0)) s"
  image_exists "$BASE_IMAGE" && buildah_ rmi -f "$BASE_IMAGE" >/dev/null
fi
if ! image_exists "$BASE_IMAGE"; then
  log "importing the rootfs as $BASE_IMAGE"
  cat >"$WORK/base/Containerfile" <<'EOF'
FROM scratch
ADD rootfs.tar.gz /
ENV LANG=C.UTF-8
CMD ["/bin/bash"]
EOF
  buildah_ bud --isolation chroot --quiet -f "$WORK/base/Containerfile" -t "$BASE_IMAGE" "$WORK/base" >/dev/null
fi

# --- 2. the project image ----------------------------------------------------------------------------
revision=$(git -C "$REPO" rev-parse --short HEAD 2>/dev/null || echo unknown)
version=$("$REPO/.venv/bin/python" -c 'import tomllib; print(tomllib.load(open("pyproject.toml","rb"))["project"]["version"])' 2>/dev/null \
  || python3 -c 'import tomllib; print(tomllib.load(open("pyproject.toml","rb"))["project"]["version"])')
log "building $IMAGE from $REPO/Dockerfile (revision $revision, layers=$layers)"
t0=$(date +%s)
(cd "$REPO" && buildah_ bud --isolation chroot --pull=never --layers="$layers" \
  --build-arg BASE_IMAGE="$BASE_IMAGE" \
  --build-arg VERSION="$version" --build-arg REVISION="$revision" \
  --build-arg CREATED="$(date -u +%Y-%m-%dT%H:%M:%SZ)" \
  -v "$HOST_CA:/host-ca.crt:ro" --build-arg PIP_CERT=/host-ca.crt \
  --format docker -f Dockerfile -t "$IMAGE" .)
build_s=$(($(date +%s) - t0))

# Drop dangling images from earlier builds: vfs keeps a full copy of every layer.
buildah_ rmi --prune >/dev/null 2>&1 || true

# Uncompressed size: the sum of the image's layer tarballs (what `docker images` calls SIZE).
size_bytes=$(buildah_ inspect --type image "$IMAGE" \
  | python3 -c 'import json, sys; print(sum(l["size"] for l in json.loads(json.load(sys.stdin)["Manifest"])["layers"]))')
size_mb=$((size_bytes / 1000000))
total_s=$(($(date +%s) - started))
printf '{"image": "%s", "build_seconds": %d, "total_seconds": %d, "size_bytes": %d}\n' \
  "$IMAGE" "$build_s" "$total_s" "$size_bytes" >"$WORK/build.json"
echo "image $IMAGE: size ${size_mb} MB (${size_bytes} bytes, uncompressed); build ${build_s} s; total with base ${total_s} s"
