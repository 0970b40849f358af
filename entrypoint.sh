#!/usr/bin/env bash
# Container entrypoint of the sector-rotation job.
#
#   (no arguments)          rotation $ROTATION_GLOBAL_ARGS ${ROTATION_COMMAND:-run} [--as-of $ROTATION_AS_OF] $ROTATION_ARGS
#                           (run = the last complete month unless ROTATION_AS_OF is set)
#   -x ... (an option)      rotation $ROTATION_GLOBAL_ARGS run -x ...
#   ingest|validate|train|forecast|backtest|report|run|query|config ...
#                           rotation $ROTATION_GLOBAL_ARGS <subcommand> ...
#   anything else           executed as given (bash, python3, rotation --help, ...)
#
# ROTATION_VERBOSE=1 adds -v (tracebacks). The CLI reads the rest of its settings itself
# (ROTATION_STORE, ROTATION_WAREHOUSE, ROTATION_SOURCE, ROTATION_LOG_FORMAT, ROTATION_S3_ENDPOINT, ...).
# ROTATION_WAIT_FOR_STORE_S=N waits up to N seconds for the S3 endpoint (ROTATION_S3_ENDPOINT, else
# AWS_ENDPOINT_URL_S3, else AWS_ENDPOINT_URL) to accept TCP connections first; exit 5 if it never does.
# The job is exec'd so that signals reach it; as PID 1 it runs under tini, which forwards them (Python
# as PID 1 would ignore SIGTERM).
set -euo pipefail

SUBCOMMANDS=" ingest validate train forecast backtest report run query config "

die() {
  local code=$1
  shift
  printf 'error: %s\n' "$*" >&2
  exit "$code"
}

# Writable folders under /tmp (an emptyDir with a read-only root filesystem) may not exist yet.
for dir in "${HOME:-}" "${XDG_CACHE_HOME:-}" "${XDG_CONFIG_HOME:-}" "${MPLCONFIGDIR:-}" "${KERAS_HOME:-}" \
  "${YF_CACHE_DIR:-}" "${ROTATION_CACHE_DIR:-}"; do
  if [[ -n "$dir" && "$dir" != / ]]; then
    mkdir -p "$dir" 2>/dev/null || true
  fi
done

wait_for_store() {
  local timeout=${ROTATION_WAIT_FOR_STORE_S:-}
  [[ -z "$timeout" || "$timeout" == 0 ]] && return 0
  [[ "$timeout" =~ ^[0-9]+$ ]] || die 2 "ROTATION_WAIT_FOR_STORE_S must be a whole number of seconds, not '$timeout'"
  local endpoint=${ROTATION_S3_ENDPOINT:-${AWS_ENDPOINT_URL_S3:-${AWS_ENDPOINT_URL:-}}}
  if [[ -z "$endpoint" ]]; then
    printf 'entrypoint: ROTATION_WAIT_FOR_STORE_S is set but no S3 endpoint is (ROTATION_S3_ENDPOINT or AWS_ENDPOINT_URL); not waiting\n' >&2
    return 0
  fi
  # No curl in slim images: a TCP connect from Python is enough to know the server is listening.
  python3 - "$endpoint" "$timeout" <<'PY' || exit $?
import socket
import sys
import time
from urllib.parse import urlsplit

endpoint, timeout = sys.argv[1], float(sys.argv[2])
url = urlsplit(endpoint if "://" in endpoint else f"http://{endpoint}")
try:
    host, port = url.hostname, url.port or (443 if url.scheme == "https" else 80)
except ValueError:
    host = None
if not host:
    print(f"error: cannot read a host and port from the S3 endpoint {endpoint!r}", file=sys.stderr)
    sys.exit(2)
deadline = time.monotonic() + timeout
last = "no attempt"
while True:
    left = deadline - time.monotonic()
    try:
        with socket.create_connection((host, port), timeout=max(0.2, min(2.0, left))):
            sys.exit(0)
    except OSError as exc:
        last = exc.strerror or type(exc).__name__
    if time.monotonic() + 0.5 >= deadline:
        break
    time.sleep(0.5)
print(f"error: S3 endpoint {endpoint} ({host}:{port}) did not answer within {timeout:g} s ({last}); "
      "check ROTATION_S3_ENDPOINT / AWS_ENDPOINT_URL and that the store is running", file=sys.stderr)
sys.exit(5)
PY
}

# Word-split the configurable argument strings without glob expansion.
read -r -a global_args <<<"${ROTATION_GLOBAL_ARGS:-}"
read -r -a extra_args <<<"${ROTATION_ARGS:-}"
case "${ROTATION_VERBOSE:-}" in
  1 | true | yes | on) global_args=(-v "${global_args[@]}") ;;
esac

if (($# == 0)); then
  command_=${ROTATION_COMMAND:-run}
  as_of=()
  [[ -n "${ROTATION_AS_OF:-}" ]] && as_of=(--as-of "$ROTATION_AS_OF")
  set -- rotation "${global_args[@]}" "$command_" "${as_of[@]}" "${extra_args[@]}"
elif [[ "$1" == -* ]]; then
  set -- rotation "${global_args[@]}" run "$@"
elif [[ "$SUBCOMMANDS" == *" $1 "* ]]; then
  set -- rotation "${global_args[@]}" "$@"
fi

# Wait only for the job itself, not for a shell someone asked for.
[[ "$1" == rotation ]] && wait_for_store

if [[ $$ -eq 1 ]] && command -v tini >/dev/null; then
  exec tini -g -- "$@"
fi
exec "$@"
