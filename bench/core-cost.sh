#!/usr/bin/env bash
# bench/core-cost.sh — the filter core's cost per request, in instructions,
# under valgrind's callgrind: a run with N requests minus a run with none,
# divided by N (filter/examples/core_cost.rs says what each workload is).
# Unlike a time, the count does not move with the machine's load, so it is
# the number to track from one change to the next.
#
#   bash bench/core-cost.sh [N]      N requests per workload (default 2000)
#
# Prints a Markdown table. Needs valgrind (Debian: apt-get install valgrind).
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
N=${1:-2000}
command -v valgrind >/dev/null || { echo "core-cost: valgrind is not installed (apt-get install valgrind)" >&2; exit 1; }
cargo build -q --release -p mcp-filter --example core_cost
bin=target/release/examples/core_cost
instructions() {  # instructions WORKLOAD COUNT
    valgrind --tool=callgrind --callgrind-out-file=/dev/null "$bin" "$1" "$2" 2>&1 | sed -n 's/.*Collected : //p'
}
echo "| workload | instructions per request |"
echo "|---|---:|"
for w in call list init call-auth list-auth; do
    base=$(instructions "$w" 0)
    total=$(instructions "$w" "$N")
    echo "| $w | $(( (total - base) / N )) |"
done
