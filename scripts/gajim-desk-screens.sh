#!/usr/bin/env bash
# What an agent of a team desk (xep/desk.md) sees in Gajim 1.7.3, on screen:
# as gajim-screens.sh does for 1:1 chats and rooms, runs Gajim as the
# unprivileged user GAJIM_USER (tmuser) under Xvfb against a private Prosody +
# tidemark with a desk `support` (agents alice, in Gajim, and bob, scripted;
# manual assignment; two predefined messages); a scripted customer dan writes
# to support@chat.localhost. Screenshots: docs/screens/desk-*.png.
# Not part of the test command: it needs a GUI stack and takes a minute or two.
#
#   bash scripts/gajim-desk-screens.sh          run it (again: everything is made afresh)
#   bash scripts/gajim-desk-screens.sh stop     stop what it started
#
# Needs gajim, xvfb, xdotool, imagemagick, dbus (Debian 12 packages). Ports:
# C2S_PORT (39422), COMPONENT_PORT (39547); X display GAJIM_DISPLAY (:59).
# Everything lives under run/gajim-desk/ (config, data, logs, raw screenshots).
set -euo pipefail
# shellcheck source=lib.sh
source "$(dirname "$0")/lib.sh"
cd "$REPO_ROOT"

DIR="$REPO_ROOT/run/gajim-desk"
OUT="$REPO_ROOT/docs/screens"
GAJIM_USER=${GAJIM_USER:-tmuser}
DISPLAY_NO=${GAJIM_DISPLAY:-:59}
export C2S_PORT=${C2S_PORT:-39422} COMPONENT_PORT=${COMPONENT_PORT:-39547} COMPONENT_JID=chat.localhost

stop_all() { gajim_stop "$DIR"; }

if [ "${1:-}" = stop ]; then stop_all; exit 0; fi
[ $# -eq 0 ] || { sed -n '2,15p' "$0" | sed 's/^# \{0,1\}//'; exit 64; }

gajim_prepare "$DIR" "$GAJIM_USER" alice bob dan
# Whatever happens below, what this script started is stopped at the end,
# unless asked to leave it running.
[ -n "${GAJIM_SCREENS_STOP_AFTER:-}" ] || trap stop_all EXIT
mkdir -p "$OUT"

cat >"$DIR/tidemark.toml" <<TOML
[component]
jid = "chat.localhost"
server = "127.0.0.1:$COMPONENT_PORT"
secret = "$COMPONENT_SECRET"

[storage]
path = "$DIR/tidemark-db"

[log]
level = "info"

[[desks]]
name = "support"
agents = ["alice@localhost", "bob@localhost"]
assignment = "manual"

[[desks.predefined]]
title = "Greeting"
text = "Hello! Thanks for writing to us; an agent is looking at your message."

[[desks.predefined]]
title = "Closing"
text = "Glad we could help. Write again any time."
TOML

cargo build --release --bin tidemark
gajim_start_tidemark "$DIR"
gajim_session "$DIR" "$DISPLAY_NO" "$GAJIM_USER" alice alice@localhost "${PW[alice]}"

python3 scripts/gajim_desk_screens.py --port "$C2S_PORT" \
	--alice "alice:${PW[alice]}" --bob "bob:${PW[bob]}" --dan "dan:${PW[dan]}" \
	--display "$DISPLAY_NO" --dbus "$DBUS_ADDR" --user "$GAJIM_USER" --home "$GAJIM_HOME" \
	--run "$DIR" --out "$OUT" ${GAJIM_SCREENS_STOP_AFTER:+--stop-after "$GAJIM_SCREENS_STOP_AFTER"}
# GAJIM_SCREENS_STOP_AFTER=start (or a step's name) leaves Gajim, Prosody and
# tidemark running (to look around: DISPLAY=$DISPLAY_NO xdotool ...; `stop` ends them).
log "screenshots in ${OUT#"$REPO_ROOT"/}/desk-*.png (raw ones in ${DIR#"$REPO_ROOT"/}/shots/)"
