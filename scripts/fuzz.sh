#!/usr/bin/env bash
# scripts/fuzz.sh SECONDS [TARGET...] — build the filter core's cargo-fuzz
# targets (filter/fuzz) and run each for SECONDS; all targets by default.
# `make fuzz` and `make fuzz-smoke` call it. Exits non-zero on the first
# crash, panic, leak or timeout, after printing the input that caused it
# (kept in filter/fuzz/artifacts/<target>/). See docs/design/fuzzing.md.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"

SECONDS_EACH=${1:?usage: scripts/fuzz.sh SECONDS [TARGET...]}
shift
TARGETS=("$@")
[[ ${#TARGETS[@]} -gt 0 ]] || TARGETS=(parse decide sse policy session uri)
# address (the default) or none; see docs/design/fuzzing.md.
FUZZ_SANITIZER=${FUZZ_SANITIZER:-address}
# One input that takes this long is a finding: in Envoy it would stall a worker.
FUZZ_TIMEOUT=${FUZZ_TIMEOUT:-10}

bash scripts/setup.sh fuzz
export PATH="$ROOT/.tools/cargo-fuzz/bin:$PATH"
# cargo-fuzz passes nightly-only flags (-Zsanitizer, sancov passes). The
# stable toolchain accepts them with RUSTC_BOOTSTRAP=1, so no nightly needs
# to be installed, which a fresh machine could not do.
export RUSTC_BOOTSTRAP=1
fuzz=(cargo fuzz)
fuzz_opts=(--fuzz-dir filter/fuzz --target-dir target/fuzz --sanitizer "$FUZZ_SANITIZER")

say() { printf 'fuzz: %s\n' "$*"; }
elapsed() { awk -v a="$1" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.0f", b - a }'; }

start=$EPOCHREALTIME
passed=0
"${fuzz[@]}" build "${fuzz_opts[@]}"
say "built the targets in $(elapsed "$start") s"
for target in "${TARGETS[@]}"; do
    # New finds go to target/ (not committed); the seeds are only read.
    corpus=target/fuzz-corpus/$target
    t0=$EPOCHREALTIME
    log=target/fuzz-logs/$target.log
    mkdir -p "$corpus" target/fuzz-logs
    status=0
    "${fuzz[@]}" run "${fuzz_opts[@]}" "$target" "$corpus" "filter/fuzz/corpus/$target" -- \
        -max_total_time="$SECONDS_EACH" -timeout="$FUZZ_TIMEOUT" -print_final_stats=1 >"$log" 2>&1 || status=$?
    if [[ $status != 0 ]]; then
        # The panic (before libFuzzer's stack trace), then the input, also in base64.
        grep -m1 -A4 -E 'panicked at|ERROR: (AddressSanitizer|libFuzzer)' "$log" || true
        tail -n 25 "$log"
        say "$target FAILED (exit $status; whole log: $log). The input is in filter/fuzz/artifacts/$target/; rerun it with:"
        say "  RUSTC_BOOTSTRAP=1 PATH=.tools/cargo-fuzz/bin:\$PATH cargo fuzz run ${fuzz_opts[*]} $target filter/fuzz/artifacts/$target/<file>"
        # The plain closing line a CI summary reads.
        say "$passed passed, 1 failed"
        exit "$status"
    fi
    runs=$(awk '/^stat::number_of_executed_units/ { print $2 }' "$log")
    say "$target: no finding in ${runs:-?} runs, $(elapsed "$t0") s"
    passed=$((passed + 1))
done
say "every target ran $SECONDS_EACH s without a finding ($(elapsed "$start") s in all)"
say "$passed passed, 0 failed"
