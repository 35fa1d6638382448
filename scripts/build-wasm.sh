#!/usr/bin/env bash
# scripts/build-wasm.sh — build the proxy-wasm filter (crate mcp-filter) for
# wasm32-unknown-unknown with the wasm-release profile and copy the module to
# target/mcp_filter.wasm, the path Envoy and the control plane load it from.
#
# Toolchain: WASM_TOOLCHAIN=rustup|debian, or auto (default) = the one
# scripts/setup.sh recorded in .tools/wasm-toolchain.
#   rustup: cargo build --target wasm32-unknown-unknown
#   debian: Debian's rustc-web 1.96 with RUSTC_BOOTSTRAP=1 -Zbuild-std, in its
#           own target dir (target/debian-wasm) so the two toolchains never
#           invalidate each other's caches.
# WASM_OUT=path puts the module elsewhere (the fallback test keeps both).
# Extra arguments are passed to cargo build.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"

PACKAGE=${WASM_PACKAGE:-mcp-filter}
ARTIFACT=${WASM_ARTIFACT:-mcp_filter}
PROFILE=wasm-release
TARGET=wasm32-unknown-unknown
OUT=${WASM_OUT:-target/${ARTIFACT}.wasm}

toolchain=${WASM_TOOLCHAIN:-auto}
if [[ $toolchain == auto ]]; then
    if [[ -f .tools/wasm-toolchain ]]; then
        toolchain=$(cat .tools/wasm-toolchain)
    else
        echo "build-wasm: .tools/wasm-toolchain is missing: run 'make setup' (scripts/setup.sh) first" >&2
        exit 1
    fi
fi

start=$SECONDS
case $toolchain in
    rustup)
        set -x
        cargo build -p "$PACKAGE" --target "$TARGET" --profile "$PROFILE" "$@"
        { set +x; } 2>/dev/null
        built=target/$TARGET/$PROFILE/$ARTIFACT.wasm
        ;;
    debian)
        for f in /usr/bin/rustc /usr/bin/cargo; do
            [[ -x $f ]] || { echo "build-wasm: $f missing: run 'WASM_TOOLCHAIN=debian make setup'" >&2; exit 1; }
        done
        # RUSTC: without it cargo would find rustup's rustc first on PATH,
        # whose sysroot has no std source for -Zbuild-std. Unset anything
        # rustup's proxies may have exported so they don't leak in.
        unset RUSTUP_TOOLCHAIN RUSTDOC CARGO_BUILD_RUSTC CARGO_BUILD_RUSTC_WRAPPER RUSTC_WRAPPER
        set -x
        RUSTC=/usr/bin/rustc RUSTC_BOOTSTRAP=1 /usr/bin/cargo build -p "$PACKAGE" \
            --target "$TARGET" --profile "$PROFILE" \
            -Zbuild-std=std,panic_abort --target-dir target/debian-wasm "$@"
        { set +x; } 2>/dev/null
        built=target/debian-wasm/$TARGET/$PROFILE/$ARTIFACT.wasm
        ;;
    *)
        echo "build-wasm: WASM_TOOLCHAIN must be auto, rustup or debian (got '$toolchain')" >&2
        exit 1
        ;;
esac

[[ -f $built ]] || { echo "build-wasm: cargo finished but $built does not exist" >&2; exit 1; }
mkdir -p "$(dirname "$OUT")"
cp "$built" "$OUT.tmp"
mv -f "$OUT.tmp" "$OUT"
echo "build-wasm: $toolchain toolchain, $((SECONDS - start)) s: $built -> $OUT"
echo "filter module: $(stat -c %s "$OUT") bytes"
