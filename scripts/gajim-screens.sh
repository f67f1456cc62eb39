#!/usr/bin/env bash
# What a person sees in Gajim 1.7.3 through tidemark, on screen: runs Gajim
# as the unprivileged user GAJIM_USER (tmuser) under Xvfb against a private
# Prosody + tidemark on 127.0.0.1, drives it (D-Bus actions and xdotool),
# plays bob with a scripted client, and saves screenshots in docs/screens/.
# Not part of the test command: it needs a GUI stack and takes a minute or two.
#
#   bash scripts/gajim-screens.sh          run it (again: everything is made afresh)
#   bash scripts/gajim-screens.sh stop     stop what it started
#
# Needs gajim, xvfb, xdotool, imagemagick, dbus (Debian 12 packages). Ports:
# C2S_PORT (39222), COMPONENT_PORT (39347); X display GAJIM_DISPLAY (:57).
# Everything lives under run/gajim/ (config, data, logs, the raw screenshots).
set -euo pipefail
# shellcheck source=lib.sh
source "$(dirname "$0")/lib.sh"
cd "$REPO_ROOT"

DIR="$REPO_ROOT/run/gajim"
OUT="$REPO_ROOT/docs/screens"
GAJIM_USER=${GAJIM_USER:-tmuser}
DISPLAY_NO=${GAJIM_DISPLAY:-:57}
export C2S_PORT=${C2S_PORT:-39222} COMPONENT_PORT=${COMPONENT_PORT:-39347} COMPONENT_JID=chat.localhost

kill_pidfile() { # FILE [SIGNAL]
	local pid; pid=$(cat "$1" 2>/dev/null || true)
	if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
		kill "-${2:-TERM}" "$pid" 2>/dev/null || true
		for _ in $(seq 30); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
		kill -0 "$pid" 2>/dev/null && kill -KILL "$pid" 2>/dev/null
	fi
	rm -f "$1"
}

stop_all() {
	kill_pidfile "$DIR/gajim.pid"
	kill_pidfile "$DIR/tidemark.pid"
	kill_pidfile "$DIR/dbus.pid"
	kill_pidfile "$DIR/xvfb.pid"
	[ -d "$DIR/prosody" ] && bash scripts/prosody.sh stop "$DIR/prosody" || true
}

if [ "${1:-}" = stop ]; then stop_all; exit 0; fi
[ $# -eq 0 ] || { sed -n '2,14p' "$0" | sed 's/^# \{0,1\}//'; exit 64; }

for tool in gajim Xvfb xdotool import dbus-daemon gdbus; do
	command -v "$tool" >/dev/null || die "$tool is missing (apt-get install gajim xvfb xdotool imagemagick dbus)"
done
id "$GAJIM_USER" >/dev/null 2>&1 || die "no user $GAJIM_USER to run Gajim as (GAJIM_USER)"
ensure_prosody
ensure_python

stop_all
rm -rf "$DIR"
# Whatever happens below, what this script started is stopped at the end,
# unless asked to leave it running.
[ -n "${GAJIM_SCREENS_STOP_AFTER:-}" ] || trap stop_all EXIT
mkdir -p "$DIR/shots" "$OUT"
chmod 755 "$DIR" "$DIR/shots"

export COMPONENT_SECRET; COMPONENT_SECRET=$(head -c 18 /dev/urandom | base64 | tr -d '/+=')
# What Gajim looks for on a real server: bookmarks (private storage), PEP
# (its own nickname and avatar) and vCards; the tests' Prosody has none.
EXTRA_MODULES="private pep vcard_legacy" bash scripts/prosody.sh start "$DIR/prosody"
declare -A PW
for u in alice bob; do
	PW[$u]=$(head -c 9 /dev/urandom | base64 | tr -d '/+=')
	bash scripts/prosody.sh register "$DIR/prosody" "$u" "${PW[$u]}"
done

cat >"$DIR/tidemark.toml" <<TOML
[component]
jid = "chat.localhost"
server = "127.0.0.1:$COMPONENT_PORT"
secret = "$COMPONENT_SECRET"

[storage]
path = "$DIR/tidemark-db"

[log]
level = "info"

# A members-only room, as a team would have: Gajim sends read markers there.
[[rooms]]
name = "team"
members = ["alice@localhost", "bob@localhost"]
TOML

cargo build --release --bin tidemark
start_tidemark() {
	setsid target/release/tidemark --config "$DIR/tidemark.toml" >>"$DIR/tidemark.log" 2>&1 </dev/null &
	echo $! >"$DIR/tidemark.pid"
}
start_tidemark

# The X server and a session bus for Gajim's user (Gajim is a GApplication:
# its actions are reached over D-Bus, as a second `gajim` would reach them).
Xvfb "$DISPLAY_NO" -screen 0 1280x800x24 -nolisten tcp >"$DIR/xvfb.log" 2>&1 &
echo $! >"$DIR/xvfb.pid"
DBUS_ADDR=$(runuser -u "$GAJIM_USER" -- dbus-daemon --session --fork --print-address=1 --print-pid=2 2>"$DIR/dbus.pid" | head -1)
[ -n "$DBUS_ADDR" ] || die "no session bus for $GAJIM_USER"

# Gajim's account, written into its settings database (no wizard): alice on
# 127.0.0.1:$C2S_PORT, STARTTLS, the development certificate trusted.
GAJIM_HOME=$(getent passwd "$GAJIM_USER" | cut -d: -f6)
runuser -u "$GAJIM_USER" -- rm -rf "$GAJIM_HOME/.config/gajim" "$GAJIM_HOME/.local/share/gajim" "$GAJIM_HOME/.cache/gajim"
cp certs/localhost.crt "$DIR/localhost.crt"; chmod 644 "$DIR/localhost.crt"
runuser -u "$GAJIM_USER" -- env HOME="$GAJIM_HOME" python3 scripts/gajim_settings.py \
	alice alice@localhost "${PW[alice]}" 127.0.0.1 "$C2S_PORT" "$DIR/localhost.crt" 2>&1 | grep -v '^creating\|PyGIWarning\|from gi.repository\|No translations' || true

python3 scripts/gajim_screens.py --port "$C2S_PORT" --alice "alice:${PW[alice]}" --bob "bob:${PW[bob]}" \
	--display "$DISPLAY_NO" --dbus "$DBUS_ADDR" --user "$GAJIM_USER" --home "$GAJIM_HOME" \
	--run "$DIR" --out "$OUT" ${GAJIM_SCREENS_STOP_AFTER:+--stop-after "$GAJIM_SCREENS_STOP_AFTER"}
# GAJIM_SCREENS_STOP_AFTER=start leaves Gajim, Prosody and tidemark running
# (to look around: DISPLAY=$DISPLAY_NO xdotool ...; `stop` ends them).
log "screenshots in ${OUT#"$REPO_ROOT"/}/ (raw ones in ${DIR#"$REPO_ROOT"/}/shots/)"
