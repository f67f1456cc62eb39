#!/usr/bin/env bash
# Run a private PostgreSQL 15 for tidemark: its own cluster under DIR, on
# 127.0.0.1 only, on a port of its own, never as a system service.
#
#   scripts/postgres.sh install       install Debian's postgresql-15 if missing
#   scripts/postgres.sh start DIR     initdb DIR/data on first start, then start
#   scripts/postgres.sh stop DIR
#   scripts/postgres.sh status DIR
#   scripts/postgres.sh url DIR       print the connection URL (no password)
#   scripts/postgres.sh createdb DIR NAME
#                                     create database NAME (owned by tidemark)
#                                     unless it exists; print its URL
#
# Environment (read by the first start; saved in DIR/env for later ones):
#   PG_PORT (15432)
#
# The first start creates the role and database `tidemark`, with a random
# password written to DIR/password (mode 600); DIR/url holds the URL
# without it. tidemark's config: storage.backend = "postgres",
# storage.url = that URL, storage.password_file = DIR/password. The contract
# tests: TIDEMARK_PG_URL=$(cat DIR/url) TIDEMARK_PG_PASSWORD_FILE=DIR/password.
#
# PostgreSQL refuses to run as root: as root, the cluster runs as the
# `postgres` user (Debian's package makes it), which must be able to reach
# DIR (so not under a mode-0700 /root; /tmp/... will do).
set -euo pipefail
# shellcheck source=lib.sh
source "$(dirname "$0")/lib.sh"

PG_BIN=/usr/lib/postgresql/15/bin

usage() { sed -n '2,25p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 64; }

abs_dir() { mkdir -p "$1" && (cd "$1" && pwd); }

ensure_postgres() {
	[ -x "$PG_BIN/initdb" ] && [ -x "$PG_BIN/pg_ctl" ] && return 0
	log "PostgreSQL 15 is missing: installing postgresql-15 with apt-get"
	as_root apt-get update
	as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y postgresql-15
	# The package may start a system cluster on 5432; ours never uses it.
	if command -v pg_ctlcluster >/dev/null; then as_root pg_ctlcluster 15 main stop >/dev/null 2>&1 || true; fi
}

# Runs a command as the cluster's owner: `postgres` when we are root,
# ourselves otherwise.
as_owner() {
	if [ "$(id -u)" = 0 ]; then
		if command -v setpriv >/dev/null; then
			setpriv --reuid=postgres --regid=postgres --init-groups -- "$@"
		else
			runuser -u postgres -- "$@"
		fi
	else
		"$@"
	fi
}

settings() { # DIR
	if [ -f "$1/env" ] && [ -z "${PG_PORT:-}" ]; then
		# shellcheck disable=SC1091
		source "$1/env"
	fi
	PORT=${PG_PORT:-15432}
}

cmd_start() {
	local dir; dir=$(abs_dir "$1")
	ensure_postgres
	settings "$dir"
	echo "PG_PORT=$PORT" >"$dir/env"
	if [ "$(id -u)" = 0 ]; then
		chown postgres:postgres "$dir"
		as_owner test -w "$dir" -a -x "$dir" 2>/dev/null \
			|| die "the postgres user cannot reach $dir; choose a DIR it can (say under /tmp)"
	fi
	if as_owner "$PG_BIN/pg_ctl" -D "$dir/data" status >/dev/null 2>&1; then
		log "PostgreSQL already running in $dir"
		return 0
	fi
	port_in_use "$PORT" && die "127.0.0.1:$PORT is already in use (another PostgreSQL?)"

	local fresh=0
	if [ ! -f "$dir/data/PG_VERSION" ]; then
		fresh=1
		# Trust on the Unix socket for the owner (the socket lives in DIR,
		# reachable by the owner only); passwords over TCP for everyone.
		as_owner "$PG_BIN/initdb" -D "$dir/data" -U postgres --auth-local=trust \
			--auth-host=scram-sha-256 -E UTF8 --locale=C.UTF-8 >"$dir/initdb.log" 2>&1 \
			|| { cat "$dir/initdb.log" >&2; die "initdb failed"; }
	fi
	as_owner "$PG_BIN/pg_ctl" -D "$dir/data" -l "$dir/data/postgres.log" -w \
		-o "-c listen_addresses=127.0.0.1 -c port=$PORT -c unix_socket_directories=$dir/data" \
		start >/dev/null
	if [ $fresh = 1 ]; then
		local password
		password=$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')
		umask 077
		printf '%s\n' "$password" >"$dir/password"
		as_owner "$PG_BIN/psql" -h "$dir/data" -p "$PORT" -U postgres -d postgres -v ON_ERROR_STOP=1 -q \
			-c "CREATE ROLE tidemark LOGIN PASSWORD '$password'" \
			-c "CREATE DATABASE tidemark OWNER tidemark" >/dev/null
	fi
	echo "postgres://tidemark@127.0.0.1:$PORT/tidemark" >"$dir/url"
	log "PostgreSQL 15 on 127.0.0.1:$PORT, database tidemark; URL in $dir/url, password in $dir/password"
}

# A database of its own per tidemark (the integration suite on PostgreSQL:
# every tidemark a test starts gets a fresh store, as with sled's directory).
cmd_createdb() {
	local dir name; dir=$(abs_dir "$1"); name=$2
	[[ $name =~ ^[a-z_][a-z0-9_]{0,62}$ ]] || die "database name $name: lower-case letters, digits and _ only"
	settings "$dir"
	local psql=(as_owner "$PG_BIN/psql" -h "$dir/data" -p "$PORT" -U postgres -d postgres -v ON_ERROR_STOP=1 -qAt)
	if [ -z "$("${psql[@]}" -c "SELECT 1 FROM pg_database WHERE datname = '$name'")" ]; then
		"${psql[@]}" -c "CREATE DATABASE $name OWNER tidemark" >/dev/null
	fi
	echo "postgres://tidemark@127.0.0.1:$PORT/$name"
}

cmd_stop() {
	local dir; dir=$(abs_dir "$1")
	if as_owner "$PG_BIN/pg_ctl" -D "$dir/data" status >/dev/null 2>&1; then
		as_owner "$PG_BIN/pg_ctl" -D "$dir/data" -m fast -w stop >/dev/null
		log "stopped PostgreSQL in $dir"
	else
		log "no PostgreSQL running in $dir"
	fi
}

cmd_status() {
	local dir; dir=$(abs_dir "$1")
	settings "$dir"
	if as_owner "$PG_BIN/pg_ctl" -D "$dir/data" status >/dev/null 2>&1; then
		echo "running on 127.0.0.1:$PORT ($dir)"
	else
		echo "stopped ($dir)"
		return 3
	fi
}

case "${1:-}" in
install) ensure_postgres ;;
start) [ $# = 2 ] || usage; cmd_start "$2" ;;
stop) [ $# = 2 ] || usage; cmd_stop "$2" ;;
status) [ $# = 2 ] || usage; cmd_status "$2" ;;
url) [ $# = 2 ] || usage; cat "$(abs_dir "$2")/url" ;;
createdb) [ $# = 3 ] || usage; cmd_createdb "$2" "$3" ;;
*) usage ;;
esac
