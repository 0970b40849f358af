#!/usr/bin/env bash
# Install what the test suite needs beyond the venv: headless Chromium (report rendering), OpenStack
# Swift (a signature-checking S3 server), buildah and debootstrap (the container image). Idempotent;
# needs root and Debian's package registry. Each script skips what is already installed.
set -euo pipefail
cd "$(dirname "$0")/.."
missing=()
command -v tini >/dev/null || missing+=(tini)            # the container's PID 1, tested on the host too
command -v shellcheck >/dev/null || missing+=(shellcheck) # lint of entrypoint.sh and scripts
if ((${#missing[@]})); then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
bash scripts/install_chromium.sh
bash scripts/swift.sh install
bash scripts/build_image.sh --install-only
