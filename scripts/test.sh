#!/usr/bin/env bash
# THE test command: installs what is missing, builds tidemark, runs the unit
# tests (the store contract against sled and against a private PostgreSQL 15
# cluster: scripts/postgres.sh, on 127.0.0.1:$PG_PORT, 15432 unless set) and
# the integration tests against a real Prosody on 127.0.0.1, then the core
# integration suites again against a real ejabberd, and on Prosody again
# with tidemark's store in PostgreSQL (issue 12).
#
#   bash scripts/test.sh                 everything
#   bash scripts/test.sh -k receipts     extra arguments go to pytest (every run)
#
# EJABBERD=0 skips the ejabberd run, PG=0 the PostgreSQL one.
# KEEP_RUN_DIR=1 keeps run/it-*/ (Prosody + tidemark logs) even when all pass;
# it is always kept when a test fails. FUZZ_STANZAS (100000; 0 skips) and FUZZ_SEED (1)
# set the bounded fuzz run.
set -euo pipefail
# shellcheck source=lib.sh
source "$(dirname "$0")/lib.sh"
cd "$REPO_ROOT"

ensure_prosody
[ "${EJABBERD:-1}" = 0 ] || ensure_ejabberd
ensure_profanity
ensure_python
ensure_cargo

# A server left behind by an interrupted run would hold the test ports.
for d in run/it-*/prosody; do
	[ -f "$d/prosody.pid" ] && bash scripts/prosody.sh stop "$d" || true
done
for d in run/it-*/ejabberd; do
	[ -f "$d/ejabberd.pid" ] && bash scripts/ejabberd.sh stop "$d" || true
done
for d in run/it-*/cluster/ejabberd run/it-*/ejabberd-cluster; do
	[ -d "$d" ] && bash scripts/ejabberd.sh cluster-stop "$d" || true
done
for d in /tmp/tidemark-cluster-pg.*; do
	[ -d "$d" ] && bash scripts/postgres.sh stop "$d" && rm -rf "$d" || true
done

log "cargo fmt --check, cargo clippy -D warnings"
cargo fmt --all -- --check
cargo clippy --release --all-targets -- -D warnings
log "cargo build --release"
cargo build --release
# The PostgreSQL backend's contract checks run against a cluster of this
# run's own, under /tmp (the postgres user must reach it; a clone under
# /root would not do), stopped and removed at exit.
bash scripts/postgres.sh install
PG_DIR=$(mktemp -d /tmp/tidemark-test-pg.XXXXXX)
chmod 755 "$PG_DIR"
stop_postgres() { bash scripts/postgres.sh stop "$PG_DIR" || true; rm -rf "$PG_DIR"; }
trap stop_postgres EXIT
bash scripts/postgres.sh start "$PG_DIR"
export TIDEMARK_PG_URL TIDEMARK_PG_PASSWORD_FILE="$PG_DIR/password"
TIDEMARK_PG_URL=$(bash scripts/postgres.sh url "$PG_DIR")
log "cargo test --release"
cargo test --release
log "integration tests (tests/integration)"
python3 -m pytest -q tests/integration "$@"
# The core suites against ejabberd: what a deployment on it relies on (1:1,
# receipts and markers, the presence gate, rooms, the conversation list,
# desks, restarts, the component link, TLS on it, federation with a Prosody),
# and two tidemarks on an ejabberd
# cluster of two nodes over one PostgreSQL (test_cluster.py, which needs
# ejabberd). About 6 minutes here; the rest of the suite runs on Prosody
# only, to keep CI short.
if [ "${EJABBERD:-1}" != 0 ]; then
	log "integration tests, core suites, against ejabberd (TIDEMARK_IT_SERVER=ejabberd)"
	core=()
	for t in cluster config connection desk federation groups inbox markers presence \
		presence_gate receipts relay resilience status_query tls; do
		core+=("tests/integration/test_$t.py")
	done
	# Status 5: the extra arguments selected none of the core suites.
	TIDEMARK_IT_SERVER=ejabberd python3 -m pytest -q "${core[@]}" "$@" || [ $? = 5 ]
fi
# The whole integration suite again, with every tidemark on a PostgreSQL
# database of its own (TIDEMARK_IT_STORE=postgres; in this run's cluster),
# through a two-node ejabberd cluster (TIDEMARK_IT_SERVER=ejabberd-cluster:
# each test's users logged in on alternate nodes, tidemark given both
# nodes), as a deployment past one machine runs (README "Several
# instances"); on Prosody when EJABBERD=0. What needs Prosody or sled (its
# directory lock), and test_cluster.py (which starts a cluster of its own in
# the ejabberd run), skip themselves and say why. About 8 minutes here.
if [ "${PG:-1}" != 0 ]; then
	server=ejabberd-cluster
	[ "${EJABBERD:-1}" != 0 ] || server=prosody
	log "integration tests, the whole suite, with the store in PostgreSQL (TIDEMARK_IT_STORE=postgres), through $server"
	TIDEMARK_IT_SERVER=$server TIDEMARK_IT_STORE=postgres TIDEMARK_IT_PG_DIR="$PG_DIR" \
		python3 -m pytest -q tests/integration "$@"
fi
# A bounded fuzz run (scripts/fuzz.sh runs millions): about a minute here.
# FUZZ_STANZAS=0 skips it.
if [ "${FUZZ_STANZAS:-100000}" != 0 ]; then
	log "fuzz: ${FUZZ_STANZAS:-100000} mutated stanzas through the reader and the service"
	target/release/tidemark-fuzz --stanzas "${FUZZ_STANZAS:-100000}" --seed "${FUZZ_SEED:-1}"
fi
