#!/usr/bin/env bash
# A one-node OpenStack Swift with the S3 API (s3api + tempauth) on 127.0.0.1, for the store's tests
# (tests/s3_server.py, marker "swift") and for trying the job against a signature-checking S3 server.
#
#   scripts/swift.sh start   install Swift with apt if missing, configure, start; prints the endpoint
#   scripts/swift.sh stop    stop the servers started by `start`
#   scripts/swift.sh env     print `export AWS_...` lines for the running server (eval "$(... env)")
#   scripts/swift.sh status  exit 0 when the proxy answers its healthcheck
#
# Idempotent: `start` on a running server only prints the endpoint. Everything lives under
# $SWIFT_DIR (default /tmp/rotation-swift) except /etc/swift/swift.conf (Swift reads its hash path
# suffix only from there; written once when absent). Ports: proxy $SWIFT_PORT (default 18080), object,
# container and account servers $SWIFT_BACKEND_PORT, +1, +2 (default 16200-16202).
# S3 credentials: access key "test:tester", secret "testing", region us-east-1, path-style only.
# Quirks (see PLATFORM.md): no conditional put (NotImplemented); DeleteObjects needs Content-MD5.
set -euo pipefail

SWIFT_DIR="${SWIFT_DIR:-/tmp/rotation-swift}"
SWIFT_PORT="${SWIFT_PORT:-18080}"
SWIFT_BACKEND_PORT="${SWIFT_BACKEND_PORT:-16200}"
OBJECT_PORT=$SWIFT_BACKEND_PORT
CONTAINER_PORT=$((SWIFT_BACKEND_PORT + 1))
ACCOUNT_PORT=$((SWIFT_BACKEND_PORT + 2))
ENDPOINT="http://127.0.0.1:${SWIFT_PORT}"
SERVERS=(object container account proxy)

log() { echo "swift.sh: $*" >&2; }

healthy() {
    python3 - "$ENDPOINT/healthcheck" <<'EOF' >/dev/null 2>&1
import sys, urllib.request
with urllib.request.urlopen(sys.argv[1], timeout=2) as r:
    sys.exit(0 if r.read().strip() == b"OK" else 1)
EOF
}

install_swift() {
    if command -v swift-proxy-server >/dev/null 2>&1 && command -v swift-object-server >/dev/null 2>&1 \
        && command -v swift-container-server >/dev/null 2>&1 && command -v swift-account-server >/dev/null 2>&1; then
        return 0
    fi
    local sudo=""
    if [ "$(id -u)" -ne 0 ]; then
        if command -v sudo >/dev/null 2>&1; then sudo="sudo"; else
            log "error: installing Swift needs root (apt-get); run this script as root"; exit 1
        fi
    fi
    log "installing OpenStack Swift with apt (about 30 s)"
    export DEBIAN_FRONTEND=noninteractive
    pkgs=(swift swift-proxy swift-object swift-container swift-account)
    if ! $sudo apt-get install -y -qq --no-install-recommends "${pkgs[@]}" >/dev/null 2>&1; then
        $sudo apt-get update -qq
        $sudo apt-get install -y -qq --no-install-recommends "${pkgs[@]}" >/dev/null
    fi
    # Debian starts the packaged services with /etc/swift configs; ours run from $SWIFT_DIR instead.
    for s in swift-proxy swift-object swift-container swift-account; do
        $sudo systemctl disable --now "$s" >/dev/null 2>&1 || true
    done
}

write_config() {
    local etc="$SWIFT_DIR/etc" node="$SWIFT_DIR/srv/node/sdb1"
    mkdir -p "$etc" "$node" "$SWIFT_DIR/run" "$SWIFT_DIR/log"
    if [ ! -f /etc/swift/swift.conf ]; then
        mkdir -p /etc/swift
        cat >/etc/swift/swift.conf <<EOF
[swift-hash]
swift_hash_path_suffix = rotation-test-$(python3 -c 'import secrets; print(secrets.token_hex(8))')
swift_hash_path_prefix = rotation

[storage-policy:0]
name = Policy-0
default = yes
EOF
    fi
    local common="[DEFAULT]
bind_ip = 127.0.0.1
workers = 1
user = root
swift_dir = $etc
devices = $SWIFT_DIR/srv/node
mount_check = false
log_name = swift
log_facility = LOG_LOCAL0
log_level = WARNING
"
    printf '%sbind_port = %s\n\n[pipeline:main]\npipeline = object-server\n\n[app:object-server]\nuse = egg:swift#object\n' \
        "$common" "$OBJECT_PORT" >"$etc/object-server.conf"
    printf '%sbind_port = %s\n\n[pipeline:main]\npipeline = container-server\n\n[app:container-server]\nuse = egg:swift#container\n' \
        "$common" "$CONTAINER_PORT" >"$etc/container-server.conf"
    printf '%sbind_port = %s\n\n[pipeline:main]\npipeline = account-server\n\n[app:account-server]\nuse = egg:swift#account\n' \
        "$common" "$ACCOUNT_PORT" >"$etc/account-server.conf"
    cat >"$etc/proxy-server.conf" <<EOF
[DEFAULT]
bind_ip = 127.0.0.1
bind_port = $SWIFT_PORT
workers = 1
user = root
swift_dir = $etc
log_level = WARNING

[pipeline:main]
pipeline = catch_errors gatekeeper healthcheck proxy-logging cache listing_formats s3api tempauth copy slo dlo proxy-logging proxy-server

[app:proxy-server]
use = egg:swift#proxy
account_autocreate = true

[filter:s3api]
use = egg:swift#s3api
location = us-east-1

[filter:tempauth]
use = egg:swift#tempauth
user_test_tester = testing .admin

[filter:catch_errors]
use = egg:swift#catch_errors
[filter:gatekeeper]
use = egg:swift#gatekeeper
[filter:healthcheck]
use = egg:swift#healthcheck
[filter:proxy-logging]
use = egg:swift#proxy_logging
[filter:cache]
use = egg:swift#memcache
[filter:listing_formats]
use = egg:swift#listing_formats
[filter:copy]
use = egg:swift#copy
[filter:slo]
use = egg:swift#slo
[filter:dlo]
use = egg:swift#dlo
EOF
    # One replica on one device per ring; built once (a ring names the ports, which are fixed above).
    local ring port
    for ring in object container account; do
        case $ring in object) port=$OBJECT_PORT ;; container) port=$CONTAINER_PORT ;; account) port=$ACCOUNT_PORT ;; esac
        if [ ! -f "$etc/$ring.ring.gz" ]; then
            (cd "$etc" && swift-ring-builder "$ring.builder" create 10 1 1 >/dev/null \
                && swift-ring-builder "$ring.builder" add "r1z1-127.0.0.1:$port/sdb1" 100 >/dev/null \
                && swift-ring-builder "$ring.builder" rebalance >/dev/null)
        fi
    done
}

start() {
    if healthy; then
        echo "$ENDPOINT"
        return 0
    fi
    install_swift
    write_config
    local s started
    started=$(date +%s.%N)
    for s in "${SERVERS[@]}"; do
        local pidfile="$SWIFT_DIR/run/$s.pid"
        if [ -f "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null; then continue; fi
        nohup "swift-$s-server" "$SWIFT_DIR/etc/$s-server.conf" >"$SWIFT_DIR/log/$s.log" 2>&1 &
        echo $! >"$pidfile"
    done
    for _ in $(seq 1 300); do
        if healthy; then
            log "started in $(python3 -c "import time; print(round(time.time() - $started, 1))") s; data in $SWIFT_DIR"
            echo "$ENDPOINT"
            return 0
        fi
        sleep 0.2
    done
    log "error: the Swift proxy did not answer on $ENDPOINT within 60 s; logs in $SWIFT_DIR/log"
    tail -n 5 "$SWIFT_DIR"/log/*.log >&2 || true
    exit 1
}

stop() {
    local s pidfile
    for s in "${SERVERS[@]}"; do
        pidfile="$SWIFT_DIR/run/$s.pid"
        if [ -f "$pidfile" ]; then
            kill "$(cat "$pidfile")" 2>/dev/null || true
            rm -f "$pidfile"
        fi
    done
    log "stopped"
}

print_env() {
    cat <<EOF
export AWS_ENDPOINT_URL=$ENDPOINT
export AWS_ACCESS_KEY_ID=test:tester
export AWS_SECRET_ACCESS_KEY=testing
export AWS_DEFAULT_REGION=us-east-1
EOF
}

case "${1:-start}" in
    install) install_swift ;;
    start) start ;;
    stop) stop ;;
    env) print_env ;;
    status) if healthy; then echo "$ENDPOINT"; else exit 1; fi ;;
    *) echo "usage: $0 install|start|stop|env|status" >&2; exit 2 ;;
esac
