#!/bin/bash
# Runs tidemark's benchmarks (BENCHMARKS.md). Each scenario prints its own
# figures next to a baseline measured in the same run, and the ratio.
#
#   scripts/bench.sh component [options]   # 1. tidemark alone over XEP-0114
#   scripts/bench.sh e2e N [options]       # 2. N clients through Prosody
#   scripts/bench.sh storage [options]     # 3. 1,000,000 statuses in sled
#   scripts/bench.sh all
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --bins >&2
scenario=${1:-all}
shift || true
case "$scenario" in
component|storage)
    exec target/release/tidemark-bench "$scenario" "$@" ;;
e2e)
    n=${1:-50}
    shift || true
    scripts/prosody-bench.sh start "$n" >&2
    trap 'scripts/prosody-bench.sh stop' EXIT
    python3 scripts/e2e_bench.py --clients "$n" "$@" ;;
all)
    "$0" component
    "$0" e2e 50
    "$0" e2e 500
    "$0" storage ;;
*)
    echo "usage: $0 component|e2e N|storage|all [options]" >&2
    exit 2 ;;
esac
