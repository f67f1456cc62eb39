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

stop_all() { gajim_stop "$DIR"; }

if [ "${1:-}" = stop ]; then stop_all; exit 0; fi
[ $# -eq 0 ] || { sed -n '2,14p' "$0" | sed 's/^# \{0,1\}//'; exit 64; }

gajim_prepare "$DIR" "$GAJIM_USER" alice bob
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

# A members-only room, as a team would have: Gajim sends read markers there.
[[rooms]]
name = "team"
members = ["alice@localhost", "bob@localhost"]
TOML

cargo build --release --bin tidemark
gajim_start_tidemark "$DIR"
gajim_session "$DIR" "$DISPLAY_NO" "$GAJIM_USER" alice alice@localhost "${PW[alice]}"

python3 scripts/gajim_screens.py --port "$C2S_PORT" --alice "alice:${PW[alice]}" --bob "bob:${PW[bob]}" \
	--display "$DISPLAY_NO" --dbus "$DBUS_ADDR" --user "$GAJIM_USER" --home "$GAJIM_HOME" \
	--run "$DIR" --out "$OUT" ${GAJIM_SCREENS_STOP_AFTER:+--stop-after "$GAJIM_SCREENS_STOP_AFTER"}
# GAJIM_SCREENS_STOP_AFTER=start leaves Gajim, Prosody and tidemark running
# (to look around: DISPLAY=$DISPLAY_NO xdotool ...; `stop` ends them).
log "screenshots in ${OUT#"$REPO_ROOT"/}/ (raw ones in ${DIR#"$REPO_ROOT"/}/shots/)"
