#!/bin/bash
# Runs tidemark's benchmarks (BENCHMARKS.md). Each scenario prints its own
# figures next to a baseline measured in the same run, and the ratio.
#
#   scripts/bench.sh component [options]   # 1. tidemark alone over XEP-0114
#   scripts/bench.sh e2e N [options]       # 2. N clients through Prosody
#   scripts/bench.sh storage [options]     # 3. 1,000,000 statuses in sled
#   scripts/bench.sh cluster N [options]   # issue 12: N clients through a two-node
#                                          #   ejabberd cluster: direct, sled, PostgreSQL
#                                          #   with 1, 2, 3 instances; failover (kill -9)
#   scripts/bench.sh pgstore [options]     # issue 12: status writes, PostgreSQL vs sled
#   scripts/bench.sh all
#
# cluster and pgstore start their own PostgreSQL (scripts/postgres.sh, PG_PORT,
# default 15472) and cluster its ejabberd nodes (scripts/ejabberd.sh
# cluster-start; C2S_PORT 21222, COMPONENT_PORT 21347) under BENCH_DIR
# (default /tmp/tidemark-bench-cluster), stopped again at the end.
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
cluster|pgstore)
    dir=${BENCH_DIR:-/tmp/tidemark-bench-cluster}
    rm -rf "$dir"
    mkdir -p "$dir/pg" "$dir/ejabberd" "$dir/run"
    # The postgres and ejabberd users must reach their directories.
    chmod 755 "$dir" "$dir/pg" "$dir/ejabberd"
    pg_port=${PG_PORT:-15472} c2s=${C2S_PORT:-21222} comp=${COMPONENT_PORT:-21347}
    stop_all() {
        [ "$scenario" = cluster ] && bash scripts/ejabberd.sh cluster-stop "$dir/ejabberd" >&2 || true
        scripts/postgres.sh stop "$dir/pg" >&2 || true
    }
    trap stop_all EXIT
    PG_PORT=$pg_port scripts/postgres.sh start "$dir/pg" >&2
    if [ "$scenario" = pgstore ]; then
        TIDEMARK_PG_URL=$(cat "$dir/pg/url") TIDEMARK_PG_PASSWORD_FILE="$dir/pg/password" \
            target/release/tidemark-bench pgstore "$@"
    else
        n=${1:-50}
        shift || true
        C2S_PORT=$c2s COMPONENT_PORT=$comp COMPONENT_JID=chat.localhost COMPONENT_SECRET=bench-secret \
            EJABBERD_LOG_LEVEL=warning bash scripts/ejabberd.sh cluster-start "$dir/ejabberd" >&2
        python3 scripts/cluster_bench.py --clients "$n" --c2s-port "$c2s" --component-port "$comp" \
            --ejabberd-dir "$dir/ejabberd" --pg-dir "$dir/pg" --workdir "$dir/run" "$@"
    fi ;;
all)
    "$0" component
    "$0" e2e 50
    "$0" e2e 500
    "$0" storage
    "$0" pgstore
    "$0" cluster 50 ;;
*)
    echo "usage: $0 component|e2e N|storage|cluster N|pgstore|all [options]" >&2
    exit 2 ;;
esac
