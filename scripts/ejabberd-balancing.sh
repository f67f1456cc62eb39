#!/usr/bin/env bash
# Measures how an ejabberd 23.01 cluster of two nodes routes to several
# component connections under one name, for each domain_balancing setting:
# the runs behind docs/ejabberd-balancing.md. Markdown on stdout.
#
#   scripts/ejabberd-balancing.sh DIR [CASE...]
#
# DIR/cluster is the cluster (wiped and started afresh for each setting: the
# route table is in RAM, so only a restart of both nodes empties it).
# CASE: default, types, slots, kill, none (all unless given).
# Environment: C2S_PORT (18222), COMPONENT_PORT (18347), as for ejabberd.sh.
set -euo pipefail
# shellcheck source=lib.sh
source "$(dirname "$0")/lib.sh"

[ $# -ge 1 ] || { sed -n '2,11p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 64; }
mkdir -p "$1"
DIR=$(cd "$1" && pwd)/cluster
shift
CASES=${*:-default types slots kill none}
export C2S_PORT=${C2S_PORT:-18222} COMPONENT_PORT=${COMPONENT_PORT:-18347}
export COMPONENT_JID=chat.localhost XMPP_DOMAIN=localhost COMPONENT_SECRET=s3cret
EJ="$REPO_ROOT/scripts/ejabberd.sh"
PROBE="$REPO_ROOT/scripts/balancing_probe.py"

trap 'bash "$EJ" cluster-stop "$DIR" >/dev/null 2>&1 || true' EXIT

# cluster TYPE NUMBER: a fresh cluster with that domain_balancing (empty: none).
cluster() {
	bash "$EJ" cluster-stop "$DIR" >/dev/null 2>&1 || true
	rm -rf "$DIR"
	DOMAIN_BALANCING=$1 COMPONENT_NUMBER=$2 bash "$EJ" cluster-start "$DIR" >/dev/null
	bash "$EJ" register "$DIR" alice probe >/dev/null
	bash "$EJ" register "$DIR" bob probe >/dev/null
	echo "### domain_balancing: ${1:-none}${2:+, component_number: $2}"
	echo
	if [ -n "$1$2" ]; then
		echo '```yaml'; sed -n '/^domain_balancing:/,/^$/p' "$DIR/node1/ejabberd.yml" | sed '/^$/d'; echo '```'; echo
	fi
}

probe() { python3 "$PROBE" "$@"; }

for c in $CASES; do
	case $c in
	default)
		cluster "" ""
		probe spread --components 127.0.0.1,127.0.0.2 --title "2 connections: node 1, node 2"
		probe spread --components 127.0.0.1,127.0.0.1,127.0.0.2 --title "3 connections: two on node 1, one on node 2"
		;;
	types)
		for t in random source destination bare_source bare_destination; do
			cluster "$t" 3
			probe spread --components 127.0.0.1,127.0.0.1,127.0.0.2 --title "$t, 3 connections: two on node 1, one on node 2"
		done
		;;
	slots)
		cluster bare_destination 3
		probe spread --components 127.0.0.1,127.0.0.2 --title "3 slots, 2 connections"
		cluster bare_destination 2
		probe spread --components 127.0.0.1,127.0.0.1,127.0.0.2 --title "2 slots, 3 connections"
		;;
	kill)
		cluster "" ""
		probe kill --components 127.0.0.1,127.0.0.2 --victim 1 --title "no balancing, node 2's only connection killed"
		probe kill --components 127.0.0.1,127.0.0.1,127.0.0.2 --victim 0 --title "no balancing, one of node 1's two connections killed"
		cluster bare_destination 2
		probe kill --components 127.0.0.1,127.0.0.2 --victim 1 --respawn 1.0 \
			--title "bare_destination, 2 slots, node 2's connection killed, replaced 1 s later"
		;;
	none)
		cluster "" ""
		probe none --title "no balancing, no component ever connected"
		cluster bare_destination 2
		probe spread --components 127.0.0.1,127.0.0.2 --rounds 1 --title "bare_destination, 2 slots (connected once, then gone)" >/dev/null
		probe none --title "bare_destination, 2 slots, both connections gone"
		;;
	*) die "unknown case $c" ;;
	esac
done
