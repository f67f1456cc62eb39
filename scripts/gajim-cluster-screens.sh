#!/usr/bin/env bash
# What a person sees in Gajim 1.7.3 when tidemark runs past one machine
# (issue 12): a two-node ejabberd cluster (node 1 on 127.0.0.1, node 2 on
# 127.0.0.2), two tidemarks over one PostgreSQL (one serves, one stands by),
# Gajim as alice on node 1, bob a scripted client on node 2. The serving
# tidemark is killed (kill -9) in the middle of the conversation; the
# screenshots (docs/screens/cluster-*.png) show what alice's Gajim makes of
# the statuses before and after the standby took over.
# Not part of the test command: it needs a GUI stack and takes a few minutes.
#
#   bash scripts/gajim-cluster-screens.sh          run it (again: everything is made afresh)
#   bash scripts/gajim-cluster-screens.sh stop     stop what it started
#
# Needs gajim, xvfb, xdotool, imagemagick, dbus, ejabberd, postgresql-15
# (Debian 12 packages). Ports: C2S_PORT (39622), COMPONENT_PORT (39747),
# PG_PORT (39832); X display GAJIM_DISPLAY (:58). Everything lives under
# run/gajim-cluster/.
set -euo pipefail
# shellcheck source=lib.sh
source "$(dirname "$0")/lib.sh"
cd "$REPO_ROOT"

DIR="$REPO_ROOT/run/gajim-cluster"
OUT="$REPO_ROOT/docs/screens"
GAJIM_USER=${GAJIM_USER:-tmuser}
DISPLAY_NO=${GAJIM_DISPLAY:-:58}
export C2S_PORT=${C2S_PORT:-39622} COMPONENT_PORT=${COMPONENT_PORT:-39747} COMPONENT_JID=chat.localhost
export PG_PORT=${PG_PORT:-39832}

stop_all() {
	local t
	for t in a b; do kill_pidfile "$DIR/tidemark-$t.pid"; done
	gajim_stop "$DIR"
	[ ! -d "$DIR/ejabberd" ] || bash "$REPO_ROOT/scripts/ejabberd.sh" cluster-stop "$DIR/ejabberd" || true
	[ ! -d "$DIR/pg" ] || bash "$REPO_ROOT/scripts/postgres.sh" stop "$DIR/pg" || true
}

if [ "${1:-}" = stop ]; then stop_all; exit 0; fi
[ $# -eq 0 ] || { sed -n '2,18p' "$0" | sed 's/^# \{0,1\}//'; exit 64; }

gajim_check "$GAJIM_USER"
ensure_ejabberd
ensure_python
[ -d "$DIR" ] && stop_all
rm -rf "$DIR"
mkdir -p "$DIR/shots" "$OUT"
chmod 755 "$DIR" "$DIR/shots"
trap stop_all EXIT

export COMPONENT_SECRET; COMPONENT_SECRET=$(head -c 18 /dev/urandom | base64 | tr -d '/+=')
bash scripts/postgres.sh start "$DIR/pg" >/dev/null
# What Gajim looks for on a real server: bookmarks (private storage) and
# vCards.
EXTRA_MODULES="private vcard" bash scripts/ejabberd.sh cluster-start "$DIR/ejabberd"
declare -A PW
for u in alice bob; do
	PW[$u]=$(head -c 9 /dev/urandom | base64 | tr -d '/+=')
	bash scripts/ejabberd.sh register "$DIR/ejabberd" "$u" "${PW[$u]}"
done

# Two tidemarks, each given both nodes (a starts on node 1, b on node 2), one
# database: the first to take the database's lock serves, the other stands by.
for t in a b; do
	servers='"127.0.0.1:'$COMPONENT_PORT'", "127.0.0.2:'$COMPONENT_PORT'"'
	[ $t = a ] || servers='"127.0.0.2:'$COMPONENT_PORT'", "127.0.0.1:'$COMPONENT_PORT'"'
	cat >"$DIR/tidemark-$t.toml" <<TOML
[component]
jid = "chat.localhost"
server = [$servers]
secret = "$COMPONENT_SECRET"

[storage]
backend = "postgres"
url = "$(cat "$DIR/pg/url")"
password_file = "$DIR/pg/password"

[log]
level = "info"
TOML
done

cargo build --release --bin tidemark
start_tidemark() { # a | b
	setsid target/release/tidemark --config "$DIR/tidemark-$1.toml" >>"$DIR/tidemark-$1.log" 2>&1 </dev/null &
	echo $! >"$DIR/tidemark-$1.pid"
}
start_tidemark a
for _ in $(seq 50); do grep -q "serving chat.localhost" "$DIR/tidemark-a.log" && break; sleep 0.2; done
start_tidemark b

# Gajim's settings name 127.0.0.1: node 1.
gajim_session "$DIR" "$DISPLAY_NO" "$GAJIM_USER" alice alice@localhost "${PW[alice]}"

python3 scripts/gajim_cluster_screens.py --port "$C2S_PORT" --alice "alice:${PW[alice]}" --bob "bob:${PW[bob]}" \
	--display "$DISPLAY_NO" --dbus "$DBUS_ADDR" --user "$GAJIM_USER" --home "$GAJIM_HOME" \
	--run "$DIR" --out "$OUT"
