#!/usr/bin/env bash
# scripts/run.sh — run the gateway locally: the control plane (mcp-gateway)
# in the background and Envoy with the wasm filter in front of it, until
# Ctrl-C (SIGINT) or SIGTERM, which stops both. If either exits by itself,
# the other is stopped too and run.sh exits with the first one's status.
#
# Expects `make build` to have run (target/release/mcp-gateway,
# target/mcp_filter.wasm, .tools/envoy-path). Overridable:
#   CATALOG=catalog.yaml  ENVOY_CONFIG=envoy/gateway.yaml  ENVOY_LOG_LEVEL=warn
#   ENVOY_WORKERS=N     Envoy's worker threads (default: one per core)
#   GATEWAY_BIN=target/release/mcp-gateway  WASM=target/mcp_filter.wasm
#   NATIVE_DIR=target/native-release  where Envoy finds libmcp_filter_native.so
#                       when the catalog says `gateway.filter: native` (`make native`)
#   EXAMPLE_SERVERS=1   also start the example catalog's HTTP upstream: the
#                       repo's rmcp echo server on :8101 (loopback, clean
#                       environment). Its stdio servers the control plane runs.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"

CATALOG=${CATALOG:-catalog.yaml}
ENVOY_CONFIG=${ENVOY_CONFIG:-envoy/gateway.yaml}
ENVOY_LOG_LEVEL=${ENVOY_LOG_LEVEL:-warn}
ENVOY_WORKERS=${ENVOY_WORKERS:-$(nproc)}
GATEWAY_BIN=${GATEWAY_BIN:-target/release/mcp-gateway}
WASM=${WASM:-target/mcp_filter.wasm}
NATIVE_DIR=$(realpath -m "${NATIVE_DIR:-target/native-release}")

die() { echo "run: $*" >&2; exit 1; }
[[ $ENVOY_WORKERS =~ ^[1-9][0-9]*$ ]] || die "ENVOY_WORKERS must be a positive number (got '$ENVOY_WORKERS')"
[[ -x $GATEWAY_BIN ]] || die "$GATEWAY_BIN not found: run 'make build' (or 'make run')"
[[ -f $WASM ]] || die "$WASM not found: run 'make wasm'"
[[ -f $CATALOG ]] || die "catalog $CATALOG not found (set CATALOG=...)"
if grep -Eq '^[[:space:]]+filter:[[:space:]]*native' "$CATALOG"; then
    [[ -f $NATIVE_DIR/libmcp_filter_native.so ]] || die "$NATIVE_DIR/libmcp_filter_native.so not found: run 'make native'"
fi
[[ -f $ENVOY_CONFIG ]] || die "Envoy config $ENVOY_CONFIG not found (set ENVOY_CONFIG=...)"
[[ -f .tools/envoy-path ]] || die ".tools/envoy-path missing: run 'make setup'"
ENVOY=$(cat .tools/envoy-path)
[[ -x $ENVOY ]] || die "envoy binary $ENVOY is missing: run 'make setup'"

EXAMPLE_SERVERS=${EXAMPLE_SERVERS:-1}
gw_pid=""
envoy_pid=""
example_pids=""
stopping=0
# Envoy's admin interface (envoy/gateway.yaml), for a graceful drain.
ENVOY_ADMIN_PORT=${ENVOY_ADMIN_PORT:-9901}
DRAIN_SECONDS=${DRAIN_SECONDS:-5}
envoy_admin() {  # envoy_admin METHOD PATH: one request, answer on stdout
    exec 3<>"/dev/tcp/127.0.0.1/$ENVOY_ADMIN_PORT" || return 1
    printf '%s %s HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\nContent-Length: 0\r\n\r\n' "$1" "$2" >&3
    cat <&3
    exec 3<&-
}
# Envoy stops taking new connections and closes idle ones, lets requests in
# flight finish (DRAIN_SECONDS at most), then everything stops.
drain_envoy() {
    [[ -n $envoy_pid ]] && kill -0 "$envoy_pid" 2>/dev/null || return 0
    envoy_admin POST '/drain_listeners?graceful' >/dev/null 2>&1 || return 0
    local active
    for _ in $(seq $((DRAIN_SECONDS * 10))); do
        active=$(envoy_admin GET '/stats?filter=^http.mcp_gateway.downstream_rq_active$' 2>/dev/null |
            sed -n 's/^http\.mcp_gateway\.downstream_rq_active: *\([0-9]*\).*/\1/p')
        [[ -z $active || $active == 0 ]] && break
        sleep 0.1
    done
}
stop_all() {
    [[ $stopping == 1 ]] && return
    stopping=1
    local pid
    drain_envoy
    # The control plane takes up to 10 s for calls in flight, then stops the
    # servers it runs (5 s each at most): give it 20 s.
    for pid in $envoy_pid $gw_pid $example_pids; do
        kill -TERM "$pid" 2>/dev/null || true
    done
    for _ in $(seq 200); do
        local alive=0
        for pid in $envoy_pid $gw_pid $example_pids; do
            kill -0 "$pid" 2>/dev/null && alive=1
        done
        [[ $alive == 0 ]] && break
        sleep 0.1
    done
    for pid in $envoy_pid $gw_pid $example_pids; do
        kill -KILL "$pid" 2>/dev/null || true
    done
    wait 2>/dev/null || true
}
trap 'echo; echo "run: stopping"; stop_all; exit 130' INT
trap 'stop_all; exit 143' TERM
trap 'stop_all' EXIT

if [[ $EXAMPLE_SERVERS == 1 ]]; then
    echo_bin=target/debug/mcp-echo-server
    [[ -x $echo_bin ]] || die "$echo_bin not found: run 'make build' (or EXAMPLE_SERVERS=0)"
    [[ -d servers/node_modules && -x .tools/servers-venv/bin/mcp-server-time ]] ||
        die "the example catalog's servers are not installed: run 'make setup'"
    echo "run: example HTTP upstream: echo on 127.0.0.1:8101"
    # A clean environment: upstreams get none of the gateway's secrets.
    env -i PATH="$PATH" HOME="$HOME" "$echo_bin" --port 8101 --name echo >/dev/null &
    example_pids="$example_pids $!"
    # The control plane would find it later anyway; waiting shows its tools
    # from the first configuration on.
    for _ in $(seq 100); do
        (exec 3<>/dev/tcp/127.0.0.1/8101) 2>/dev/null && break
        sleep 0.1
    done
fi

# A development certificate for the example catalog's HTTPS listener
# (gateway.tls): a throwaway CA in .run/tls, and a certificate for localhost
# and 127.0.0.1 signed by it. Trust .run/tls/ca.crt in clients
# (curl --cacert .run/tls/ca.crt). Replacing the files rotates them live.
dev_certificate() {
    local dir=.run/tls
    [[ -f $dir/gateway.crt && -f $dir/gateway.key ]] && return 0
    command -v openssl >/dev/null || die "openssl is needed for the development certificate (apt-get install openssl)"
    mkdir -p "$dir"
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 30 \
        -subj "/CN=mcp-gateway development CA" -keyout "$dir/ca.key" -out "$dir/ca.crt" 2>/dev/null
    openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=localhost" \
        -keyout "$dir/gateway.key" -out "$dir/gateway.csr" 2>/dev/null
    printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n' > "$dir/ext.cnf"
    openssl x509 -req -in "$dir/gateway.csr" -CA "$dir/ca.crt" -CAkey "$dir/ca.key" -CAcreateserial \
        -days 30 -extfile "$dir/ext.cnf" -out "$dir/gateway.crt" 2>/dev/null
    chmod 600 "$dir"/*.key
    echo "run: made a development certificate in $dir (trust $dir/ca.crt)"
}
grep -q '^ *tls:' "$CATALOG" && dev_certificate

# Says loudly whether clients must authenticate.
"$GATEWAY_BIN" --validate "$CATALOG" | sed 's/^/run: /'
echo "run: $GATEWAY_BIN --catalog $CATALOG --wasm $WASM"
"$GATEWAY_BIN" --catalog "$CATALOG" --wasm "$WASM" &
gw_pid=$!

echo "run: $ENVOY -c $ENVOY_CONFIG --concurrency $ENVOY_WORKERS --log-level $ENVOY_LOG_LEVEL"
# The native filter (gateway.filter: native) is loaded by name from here.
export ENVOY_DYNAMIC_MODULES_SEARCH_PATH="$NATIVE_DIR"
"$ENVOY" -c "$ENVOY_CONFIG" --concurrency "$ENVOY_WORKERS" --log-level "$ENVOY_LOG_LEVEL" --drain-time-s "$DRAIN_SECONDS" --drain-strategy immediate &
envoy_pid=$!

echo "MCP endpoint: http://127.0.0.1:4444/mcp"
grep -q '^ *tls:' "$CATALOG" && echo "MCP endpoint over TLS: https://localhost:4443/mcp (curl --cacert .run/tls/ca.crt)"
echo "Console: http://127.0.0.1:18001/console (also http://127.0.0.1:4444/console)"
echo "run: Ctrl-C stops both"

# Wait until either process exits (or a signal arrives: the traps run then).
status=0
wait -n "$gw_pid" "$envoy_pid" || status=$?
if ! kill -0 "$gw_pid" 2>/dev/null; then
    echo "run: mcp-gateway exited (status $status); stopping Envoy" >&2
else
    echo "run: envoy exited (status $status); stopping mcp-gateway" >&2
fi
stop_all
exit "$status"
