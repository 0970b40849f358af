#!/usr/bin/env bash
# Smoke-test the built image (scripts/build_image.sh): run its entrypoint with buildah, as uid 10001 with
# a fresh tmpfs at /tmp (like the CronJob's emptyDir), against S3 servers on loopback.
#
#   image      non-root user, root filesystem not writable, sql/ and expectations/ at $ROTATION_HOME,
#              `rotation --help`, `config show` from ROTATION_* variables with secrets masked,
#              TensorFlow imports, DuckDB's httpfs writes to the S3 server from inside the container
#   entrypoint bounded wait for the S3 endpoint: a closed port exits 5 after the timeout; a live one
#              proceeds
#   ingest     `rotation ingest --source sample` into the warehouse under /tmp (when the image has it)
#   run        the default entrypoint (ROTATION_SOURCE=sample, ROTATION_STORE=s3://smoke/ci): exit 0,
#              runs/as_of=M/manifest.json and weights for M in the bucket, `rotation query` counts the
#              weights; a second run keeps one manifest per month and the same number of rows
#   swift      (scripts/swift.sh) the same run with a wrong secret against Swift's s3api exits 5
#
# moto server is started here (.venv/bin/moto_server -H 127.0.0.1 -p PORT); Swift with scripts/swift.sh
# (stopped again if this script started it). The `run` and `swift` parts are required when the image
# holds job.commands.run (and the source tree scripts/swift.sh), else reported as skipped; --require-run
# makes an image without `rotation run` a failure.
# Results: one line per check on stdout and $ROTATION_CI_WORK/container/smoke.json. Exit 1 if any failed.
#
# Usage: scripts/container_smoke.sh [--require-run] [--no-swift]
# Environment: ROTATION_CI_WORK (default .ci/work), ROTATION_IMAGE (default localhost/sector-rotation:ci),
# ROTATION_SMOKE_RUN_ARGS: given to the runs as ROTATION_ARGS; default "--models ridge --scheme static
# --no-audit" (seconds: the smoke checks the container and the store, not the models); "" runs the full
# default job (all models, walk-forward backtest: tens of minutes on 2 cores).
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
WORK="${ROTATION_CI_WORK:-$REPO/.ci/work}/container"
IMAGE="${ROTATION_IMAGE:-localhost/sector-rotation:ci}"
PY="$REPO/.venv/bin/python"
MOTO="$REPO/.venv/bin/moto_server"
BUCKET=smoke
PREFIX=ci

require_run=0
use_swift=0
[[ -f "$REPO/scripts/swift.sh" ]] && use_swift=1
for arg in "$@"; do
  case "$arg" in
    --require-run) require_run=1 ;;
    --no-swift) use_swift=0 ;;
    -h|--help) awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; exit 0 ;;
    *) echo "container_smoke.sh: unknown argument $arg" >&2; exit 2 ;;
  esac
done

[[ $(id -u) -eq 0 ]] || { echo "container_smoke.sh: needs root (buildah --isolation chroot)" >&2; exit 2; }
[[ -x "$PY" && -x "$MOTO" ]] || { echo "container_smoke.sh: needs the project's .venv with moto[server]" >&2; exit 2; }
command -v buildah >/dev/null || { echo "container_smoke.sh: buildah missing: run scripts/build_image.sh first" >&2; exit 2; }

buildah_() { buildah --root "$WORK/storage" --runroot "$WORK/runroot" --storage-driver vfs "$@"; }
images=$(buildah_ images --noheading --format '{{.Name}}:{{.Tag}}' || true)
grep -qx "$IMAGE" <<<"$images" \
  || { echo "container_smoke.sh: image $IMAGE not found: run scripts/build_image.sh first" >&2; exit 2; }

mkdir -p "$WORK/smoke"
LOGS="$WORK/smoke"
RESULTS_LINES="$LOGS/results.jsonl"
: >"$RESULTS_LINES"
failures=0

# record NAME ok|fail|skip DETAIL SECONDS
record() {
  local name=$1 status=$2 detail=${3:-} seconds=${4:-0}
  printf '%-4s %-40s %s\n' "$status" "$name" "$detail"
  [[ "$status" == fail ]] && failures=$((failures + 1))
  "$PY" -c 'import json, sys; print(json.dumps(dict(zip(("name", "status", "detail", "seconds"), sys.argv[1:5]))))' \
    "$name" "$status" "$detail" "$seconds" >>"$RESULTS_LINES"
}

moto_pid=""
ctr=""
swift_started=0
cleanup() {
  [[ -n "$ctr" ]] && buildah_ rm "$ctr" >/dev/null 2>&1 || true
  [[ -n "$moto_pid" ]] && kill "$moto_pid" 2>/dev/null || true
  ((swift_started)) && bash "$REPO/scripts/swift.sh" stop >/dev/null 2>&1 || true
}
trap cleanup EXIT

free_port() { "$PY" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

# s3 ENDPOINT KEY SECRET ACTION [ARG]: small boto3 helper run on the host.
#   mb BUCKET | summary BUCKET PREFIX (JSON: {"manifests": {as_of: run_id}, "weights": {as_of: n_objects}})
s3() {
  "$PY" - "$@" <<'PY'
import json
import re
import sys

import boto3
from botocore.config import Config

endpoint, key, secret, action, *rest = sys.argv[1:]
s3 = boto3.client("s3", endpoint_url=endpoint, aws_access_key_id=key, aws_secret_access_key=secret,
                  region_name="us-east-1", config=Config(s3={"addressing_style": "path"}))
if action == "mb":
    try:
        s3.create_bucket(Bucket=rest[0])
    except (s3.exceptions.BucketAlreadyOwnedByYou, s3.exceptions.BucketAlreadyExists):
        pass
elif action == "summary":
    bucket, prefix = rest
    keys = [o["Key"] for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix + "/")
            for o in page.get("Contents", [])]
    manifests, weights = {}, {}
    for k in keys:
        if m := re.search(r"(?:^|/)runs/as_of=(\d{4}-\d{2})/manifest\.json$", k):
            body = json.loads(s3.get_object(Bucket=bucket, Key=k)["Body"].read())
            manifests.setdefault(m.group(1), []).append(body.get("run_id"))
        if m := re.search(r"(?:^|/)weights/as_of=(\d{4}-\d{2})/", k):
            weights[m.group(1)] = weights.get(m.group(1), 0) + 1
    print(json.dumps({"manifests": manifests, "weights": weights}, sort_keys=True))
PY
}

wait_port() {  # wait_port PORT SECONDS
  "$PY" - "$1" "$2" <<'PY'
import socket, sys, time
deadline = time.monotonic() + float(sys.argv[2])
while time.monotonic() < deadline:
    try:
        socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=1).close()
        sys.exit(0)
    except OSError:
        time.sleep(0.1)
sys.exit(1)
PY
}

# --- S3 server and working container -------------------------------------------------------------------
MOTO_PORT=$(free_port)
"$MOTO" -H 127.0.0.1 -p "$MOTO_PORT" >"$LOGS/moto.log" 2>&1 &
moto_pid=$!
wait_port "$MOTO_PORT" 20 || { echo "container_smoke.sh: moto server did not start; see $LOGS/moto.log" >&2; exit 1; }
MOTO_URL="http://127.0.0.1:$MOTO_PORT"
s3 "$MOTO_URL" smoke-key smoke-secret mb "$BUCKET"
echo "moto server on $MOTO_URL, bucket $BUCKET; image $IMAGE"

ctr=$(buildah_ from --pull=never --name "rotation-smoke-$$" "$IMAGE")
SECRET_VALUE="smoke-secret-value-$$"
BASE_ENV=(
  "AWS_ENDPOINT_URL=$MOTO_URL" "AWS_ACCESS_KEY_ID=smoke-access-key" "AWS_SECRET_ACCESS_KEY=$SECRET_VALUE"
  "AWS_REGION=us-east-1" "ROTATION_STORE=s3://$BUCKET/$PREFIX" "ROTATION_SOURCE=sample"
)
RUN_ENV=(ROTATION_WAIT_FOR_STORE_S=10 "ROTATION_ARGS=${ROTATION_SMOKE_RUN_ARGS---models ridge --scheme static --no-audit}")

# in_ctr NAME [VAR=VALUE ...] -- ARGS...: run /entrypoint.sh ARGS in a fresh container /tmp.
# stdout -> $LOGS/NAME.out, stderr -> $LOGS/NAME.err; sets $rc and $secs.
in_ctr() {
  local name=$1
  shift
  local envs=() e
  for e in "${BASE_ENV[@]}"; do envs+=(--env "$e"); done
  while (($#)) && [[ "$1" != -- ]]; do envs+=(--env "$1"); shift; done
  shift
  local t0
  t0=$(date +%s)
  set +e
  buildah_ run --isolation chroot --user 10001:10001 \
    --mount type=tmpfs,destination=/tmp,tmpfs-mode=1777 \
    "${envs[@]}" "$ctr" -- /entrypoint.sh "$@" >"$LOGS/$name.out" 2>"$LOGS/$name.err"
  rc=$?
  set -e
  secs=$(($(date +%s) - t0))
}

# The job's last lines on stderr, without buildah's own ("subprocess exited ...", "Error: exit status N").
last_err() { grep -Ev '^(subprocess exited|Error: exit status)' "$LOGS/$1.err" | tail -n 2 | tr '\n' ' ' | cut -c1-300; }

# --- image ------------------------------------------------------------------------------------------------
in_ctr user -- id -u
if [[ $rc -eq 0 && "$(cat "$LOGS/user.out")" == 10001 ]]; then record image.non_root ok "uid 10001"
else record image.non_root fail "rc=$rc uid=$(cat "$LOGS/user.out") $(last_err user)"; fi

in_ctr rootfs -- bash -c 'for p in /app /opt/venv /entrypoint.sh /; do touch "$p/.w" 2>/dev/null && echo "$p"; done; exit 0'
if [[ $rc -eq 0 && ! -s "$LOGS/rootfs.out" ]]; then record image.rootfs_not_writable ok "/app /opt/venv / not writable by uid 10001"
else record image.rootfs_not_writable fail "writable: $(tr '\n' ' ' <"$LOGS/rootfs.out")"; fi

in_ctr home -- bash -c 'ls "$ROTATION_HOME"/sql/*.sql >/dev/null && test -d "$ROTATION_HOME/expectations" && test -d "$HOME" && test -w "$MPLCONFIGDIR" && echo ok'
if [[ $rc -eq 0 ]]; then record image.runtime_files ok "sql/ and expectations/ under \$ROTATION_HOME; HOME and caches writable"
else record image.runtime_files fail "rc=$rc $(last_err home)"; fi

in_ctr help -- rotation --help
if [[ $rc -eq 0 ]] && grep -q "Usage: rotation" "$LOGS/help.out"; then record image.cli_help ok ""
else record image.cli_help fail "rc=$rc $(last_err help)"; fi

in_ctr config -- config show
if [[ $rc -eq 0 ]] && grep -q "s3://$BUCKET/$PREFIX" "$LOGS/config.out" && ! grep -q "$SECRET_VALUE" "$LOGS/config.out" "$LOGS/config.err"; then
  record entrypoint.config_from_env ok "ROTATION_STORE reached the CLI; secret masked"
else record entrypoint.config_from_env fail "rc=$rc $(last_err config)"; fi

# DuckDB's httpfs from inside the container to the loopback S3 server: the path the job publishes through.
in_ctr libs -- python3 -c "
import os, duckdb, duckdb_ext, tensorflow as tf
con = duckdb_ext.init(duckdb.connect())
con.sql('LOAD httpfs')
host = os.environ['AWS_ENDPOINT_URL'].split('://', 1)[1]
con.sql(f\"CREATE SECRET (TYPE s3, KEY_ID 'k', SECRET 's', REGION 'us-east-1', ENDPOINT '{host}', URL_STYLE 'path', USE_SSL false)\")
con.sql(\"COPY (SELECT 42 AS answer) TO 's3://$BUCKET/probe/answer.parquet'\")
print(tf.__version__, con.sql(\"SELECT answer FROM read_parquet('s3://$BUCKET/probe/answer.parquet')\").fetchall()[0][0])
"
if [[ $rc -eq 0 ]] && grep -q " 42$" "$LOGS/libs.out"; then record image.tensorflow_duckdb_s3 ok "tensorflow $(cut -d' ' -f1 "$LOGS/libs.out"); httpfs round trip"
else record image.tensorflow_duckdb_s3 fail "rc=$rc $(last_err libs)"; fi

# The image's Dask configuration (docker/dask/dask.yaml, installed under /etc/dask): what a `dask worker` on
# this image reads. The nanny must not set MALLOC_TRIM_THRESHOLD_ in the worker it spawns.
in_ctr daskcfg -- python3 -c "
import dask.config, distributed
print(dask.config.get('distributed.nanny.pre-spawn-environ'))
"
if [[ $rc -eq 0 ]] && grep -q "'MALLOC_TRIM_THRESHOLD_': None" "$LOGS/daskcfg.out"; then
  record image.dask_worker_config ok "/etc/dask/sector-rotation.yaml read: the nanny leaves glibc's malloc defaults"
else record image.dask_worker_config fail "rc=$rc $(cat "$LOGS/daskcfg.out") $(last_err daskcfg)"; fi

# --- entrypoint: bounded wait for the store ---------------------------------------------------------------
CLOSED_PORT=$(free_port)
in_ctr wait_closed ROTATION_WAIT_FOR_STORE_S=2 "AWS_ENDPOINT_URL=http://127.0.0.1:$CLOSED_PORT" -- config show
if [[ $rc -eq 5 ]] && grep -q "did not answer within 2 s" "$LOGS/wait_closed.err"; then
  record entrypoint.wait_closed_port_exits_5 ok "${secs} s"
else record entrypoint.wait_closed_port_exits_5 fail "rc=$rc $(last_err wait_closed)"; fi

in_ctr wait_open ROTATION_WAIT_FOR_STORE_S=10 -- config show
if [[ $rc -eq 0 ]]; then record entrypoint.wait_open_port_proceeds ok "${secs} s"
else record entrypoint.wait_open_port_proceeds fail "rc=$rc $(last_err wait_open)"; fi

# --- ingest (a stage that exists before `run`) --------------------------------------------------------------
in_ctr ingest_help -- ingest --help
if [[ $rc -ne 0 ]]; then
  record stage.ingest_sample skip "the image has no \`rotation ingest\`"
else
  in_ctr ingest -- ingest --source sample
  if [[ $rc -eq 0 ]]; then record stage.ingest_sample ok "${secs} s"
  else record stage.ingest_sample fail "rc=$rc $(last_err ingest)"; fi
fi

# --- the monthly run ----------------------------------------------------------------------------------------
# Required when the image holds the module (an import error is then a failure, not a skip).
in_ctr has_run -- python3 -c 'import importlib.util, sys; sys.exit(importlib.util.find_spec("job.commands.run") is None)'
[[ $rc -eq 0 ]] && require_run=1
in_ctr run_help -- run --help
have_run=$((rc == 0))
if ((!have_run)); then
  status=skip
  ((require_run)) && status=fail
  for check in run.first run.published run.query run.second_run_publishes_once; do
    record "$check" "$status" "the image has no \`rotation run\` yet"
  done
else
  in_ctr run1 "${RUN_ENV[@]}" --
  if [[ $rc -eq 0 ]]; then record run.first ok "${secs} s"
  else record run.first fail "rc=$rc $(last_err run1)" "$secs"; fi

  summary1=$(s3 "$MOTO_URL" k s summary "$BUCKET" "$PREFIX")
  echo "$summary1" >"$LOGS/summary1.json"
  if "$PY" -c '
import json, sys
s = json.loads(sys.argv[1])
ok = s["manifests"] and all(len(v) == 1 for v in s["manifests"].values()) and all(s["weights"].get(m) for m in s["manifests"])
sys.exit(0 if ok else 1)' "$summary1"; then
    record run.published ok "manifests: $summary1"
  else record run.published fail "bucket: $summary1"; fi

  in_ctr query1 -- query --format csv "select count(*) as n from weights"
  rows1=$(grep -Eo '[0-9]+' "$LOGS/query1.out" | tail -n 1 || true)
  if [[ $rc -eq 0 && -n "$rows1" && "$rows1" -gt 0 ]]; then record run.query ok "$rows1 weight rows"
  else record run.query fail "rc=$rc out=$(head -c 200 "$LOGS/query1.out") $(last_err query1)"; fi

  in_ctr run2 "${RUN_ENV[@]}" --
  rc_run2=$rc
  summary2=$(s3 "$MOTO_URL" k s summary "$BUCKET" "$PREFIX")
  echo "$summary2" >"$LOGS/summary2.json"
  in_ctr query2 -- query --format csv "select count(*) as n from weights"
  rows2=$(grep -Eo '[0-9]+' "$LOGS/query2.out" | tail -n 1 || true)
  if [[ $rc_run2 -eq 0 && "$rows2" == "$rows1" ]] && "$PY" -c '
import json, sys
a, b = (json.loads(x) for x in sys.argv[1:3])
sys.exit(0 if set(a["manifests"]) == set(b["manifests"]) and all(len(v) == 1 for v in b["manifests"].values()) else 1)' \
    "$summary1" "$summary2"; then
    same=$([[ "$summary1" == "$summary2" ]] && echo "manifest unchanged" || echo "manifest replaced")
    record run.second_run_publishes_once ok "one manifest per month, $rows2 rows; $same"
  else record run.second_run_publishes_once fail "rc=$rc_run2 rows $rows1 -> $rows2; $summary2 $(last_err run2)"; fi
fi

# --- Swift: a wrong secret is a store failure (exit 5) -----------------------------------------------------
if ((!use_swift)); then
  record swift.wrong_secret_exits_5 skip "scripts/swift.sh not available (or --no-swift)"
elif ((!have_run)); then
  status=skip
  ((require_run)) && status=fail
  record swift.wrong_secret_exits_5 "$status" "the image has no \`rotation run\` yet"
else
  bash "$REPO/scripts/swift.sh" status >/dev/null 2>&1 || swift_started=1
  if ! swift_url=$(bash "$REPO/scripts/swift.sh" start 2>"$LOGS/swift.err"); then
    record swift.wrong_secret_exits_5 fail "scripts/swift.sh start failed: $(tail -n 2 "$LOGS/swift.err" | tr '\n' ' ')"
  else
    s3 "$swift_url" test:tester testing mb "$BUCKET"
    in_ctr swift_wrong "AWS_ENDPOINT_URL=$swift_url" AWS_ACCESS_KEY_ID=test:tester \
      AWS_SECRET_ACCESS_KEY=not-the-secret "${RUN_ENV[@]}" --
    if [[ $rc -eq 5 ]] && ! grep -q not-the-secret "$LOGS/swift_wrong.out" "$LOGS/swift_wrong.err"; then
      record swift.wrong_secret_exits_5 ok "$(last_err swift_wrong)"
    else record swift.wrong_secret_exits_5 fail "rc=$rc $(last_err swift_wrong)"; fi
  fi
fi

"$PY" -c '
import json, sys
checks = [json.loads(line) for line in open(sys.argv[1])]
json.dump({"image": sys.argv[2], "checks": checks}, open(sys.argv[3], "w"), indent=2)' \
  "$RESULTS_LINES" "$IMAGE" "$WORK/smoke.json"
echo "results: $WORK/smoke.json; logs: $LOGS"
if ((failures)); then
  echo "container_smoke.sh: $failures check(s) failed" >&2
  exit 1
fi
echo "container_smoke.sh: all checks passed"
