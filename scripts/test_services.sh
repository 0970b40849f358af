#!/usr/bin/env bash
# Install what the test suite needs beyond the venv: headless Chromium (report rendering), OpenStack
# Swift (a signature-checking S3 server), buildah and debootstrap (the container image). Idempotent;
# needs root and Debian's package registry. Each script skips what is already installed.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install_chromium.sh
bash scripts/swift.sh install
if [[ -x scripts/build_image.sh ]] || [[ -f scripts/build_image.sh ]]; then
  bash scripts/build_image.sh --install-only
fi
