#!/usr/bin/env bash
# What a person sees in Dino (Debian 12's dino-im 0.4.2) through tidemark, on
# screen: runs Dino as the unprivileged user DINO_USER (tmuser) under Xvfb
# against a private Prosody + tidemark, plays bob with a scripted client, and
# saves screenshots in docs/screens/dino-*.png. Modelled on gajim-screens.sh.
#
#   bash scripts/dino-screens.sh          run it (again: everything is made afresh)
#   bash scripts/dino-screens.sh stop     stop what it started
#
# Needs dino-im, xvfb, xdotool, imagemagick, dbus, sqlite3. Ports: C2S_PORT
# (29222), COMPONENT_PORT (29347), and 5222 on 127.0.0.1/::1: Dino 0.4 has no
# host/port setting (it asks DNS for the domain's SRV record, then tries
# localhost:5222), so a small forwarder there leads it to C2S_PORT. Dino
# trusts only the system's CAs: as root this installs certs/localhost.crt in
# /usr/local/share/ca-certificates and runs update-ca-certificates.
# X display DINO_DISPLAY (:58). Everything lives under run/dino/.
set -euo pipefail
# shellcheck source=lib.sh
source "$(dirname "$0")/lib.sh"
cd "$REPO_ROOT"

DIR="$REPO_ROOT/run/dino"
OUT="$REPO_ROOT/docs/screens"
DINO_USER=${DINO_USER:-tmuser}
DISPLAY_NO=${DINO_DISPLAY:-:58}
TIDEMARK=${TIDEMARK_BIN:-$REPO_ROOT/target/release/tidemark}
export C2S_PORT=${C2S_PORT:-29222} COMPONENT_PORT=${COMPONENT_PORT:-29347} COMPONENT_JID=chat.localhost

stop_all() {
	kill_pidfile "$DIR/dino.pid"
	kill_pidfile "$DIR/forward.pid"
	kill_pidfile "$DIR/tidemark.pid"
	kill_pidfile "$DIR/dbus.pid"
	kill_pidfile "$DIR/xvfb.pid"
	[ -d "$DIR/prosody" ] && bash scripts/prosody.sh stop "$DIR/prosody" || true
}

if [ "${1:-}" = stop ]; then stop_all; exit 0; fi
[ $# -eq 0 ] || { sed -n '2,17p' "$0" | sed 's/^# \{0,1\}//'; exit 64; }

for tool in dino-im Xvfb xdotool import dbus-daemon sqlite3; do
	command -v "$tool" >/dev/null || die "$tool is missing (apt-get install dino-im xvfb xdotool imagemagick dbus sqlite3)"
done
id "$DINO_USER" >/dev/null 2>&1 || die "no user $DINO_USER to run Dino as (DINO_USER)"
[ -x "$TIDEMARK" ] || die "no tidemark binary at $TIDEMARK (cargo build --release --bins, or TIDEMARK_BIN)"
ensure_prosody
ensure_python

stop_all
rm -rf "$DIR"
[ -n "${DINO_SCREENS_STOP_AFTER:-}" ] || trap stop_all EXIT
mkdir -p "$DIR/shots" "$OUT"
chmod 755 "$DIR" "$DIR/shots"

# Dino verifies the server's certificate against the system's trust store
# (GnuTLS) and offers no exception for a self-signed one without the wizard.
if ! cmp -s certs/localhost.crt /usr/local/share/ca-certificates/tidemark-dev-localhost.crt; then
	[ "$(id -u)" = 0 ] || die "Dino must trust certs/localhost.crt: run as root, or install it in the system's CAs yourself"
	cp certs/localhost.crt /usr/local/share/ca-certificates/tidemark-dev-localhost.crt
	update-ca-certificates >/dev/null
fi

export COMPONENT_SECRET; COMPONENT_SECRET=$(head -c 18 /dev/urandom | base64 | tr -d '/+=')
EXTRA_MODULES="private pep vcard_legacy bookmarks" bash scripts/prosody.sh start "$DIR/prosody"
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

[[rooms]]
name = "team"
members = ["alice@localhost", "bob@localhost"]
TOML

setsid "$TIDEMARK" --config "$DIR/tidemark.toml" >>"$DIR/tidemark.log" 2>&1 </dev/null &
echo $! >"$DIR/tidemark.pid"

# localhost:5222 -> 127.0.0.1:$C2S_PORT, for Dino (see the top).
setsid python3 - "$C2S_PORT" >"$DIR/forward.log" 2>&1 </dev/null <<'PY' &
import asyncio, sys
port = int(sys.argv[1])
async def pipe(r, w):
    try:
        while data := await r.read(65536):
            w.write(data); await w.drain()
    finally:
        w.close()
async def handle(r, w):
    ur, uw = await asyncio.open_connection("127.0.0.1", port)
    await asyncio.gather(pipe(r, uw), pipe(ur, w), return_exceptions=True)
async def main():
    servers = [await asyncio.start_server(handle, host, 5222) for host in ("127.0.0.1", "::1")]
    await asyncio.gather(*(s.serve_forever() for s in servers))
asyncio.run(main())
PY
echo $! >"$DIR/forward.pid"

Xvfb "$DISPLAY_NO" -screen 0 1280x800x24 -nolisten tcp >"$DIR/xvfb.log" 2>&1 &
echo $! >"$DIR/xvfb.pid"
DBUS_ADDR=$(runuser -u "$DINO_USER" -- dbus-daemon --session --fork --print-address=1 --print-pid=2 2>"$DIR/dbus.pid" | head -1)
[ -n "$DBUS_ADDR" ] || die "no session bus for $DINO_USER"

# Dino's account, written into its database (no wizard): a first start makes
# the schema, then alice goes into the `account` table.
DINO_HOME=$(getent passwd "$DINO_USER" | cut -d: -f6)
runuser -u "$DINO_USER" -- rm -rf "$DINO_HOME/.local/share/dino" "$DINO_HOME/.config/dino" "$DINO_HOME/.cache/dino"
python3 scripts/dino_screens.py --port "$C2S_PORT" --alice "alice:${PW[alice]}" --bob "bob:${PW[bob]}" \
	--display "$DISPLAY_NO" --dbus "$DBUS_ADDR" --user "$DINO_USER" --home "$DINO_HOME" \
	--run "$DIR" --out "$OUT" --tidemark "$TIDEMARK" ${DINO_SCREENS_STOP_AFTER:+--stop-after "$DINO_SCREENS_STOP_AFTER"}
log "screenshots in ${OUT#"$REPO_ROOT"/}/ (raw ones in ${DIR#"$REPO_ROOT"/}/shots/)"
