#!/usr/bin/env bash
# Run tidemark for real on this machine: Prosody on 127.0.0.1 (c2s 5222,
# component 5347) with users alice, bob and carol, tidemark connected as
# chat.localhost, and a scripted conversation (scripts/demo.py). Prosody and
# tidemark are left running for your own XMPP client.
#
#   bash scripts/demo.sh          start (or restart tidemark) and run the demo
#   bash scripts/demo.sh stop     stop tidemark and Prosody
#
# Everything lives under run/demo/ (config, data, logs, passwords).
set -euo pipefail
# shellcheck source=lib.sh
source "$(dirname "$0")/lib.sh"
cd "$REPO_ROOT"

DIR="$REPO_ROOT/run/demo"
export C2S_PORT=5222 COMPONENT_PORT=5347 COMPONENT_JID=chat.localhost

stop_tidemark() {
	local pid; pid=$(cat "$DIR/tidemark.pid" 2>/dev/null || true)
	if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
		kill -TERM "$pid"
		for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
		kill -0 "$pid" 2>/dev/null && kill -KILL "$pid"
		log "tidemark stopped (pid $pid)"
	fi
	rm -f "$DIR/tidemark.pid"
}

if [ "${1:-}" = stop ]; then
	stop_tidemark
	bash scripts/prosody.sh stop "$DIR/prosody"
	exit 0
fi
[ $# -eq 0 ] || { sed -n '2,11p' "$0" | sed 's/^# \{0,1\}//'; exit 64; }

ensure_prosody
ensure_python
ensure_cargo
mkdir -p "$DIR"

# Secrets and passwords are made once and kept in run/demo/ (not in git).
[ -s "$DIR/secret" ] || (umask 077; head -c 18 /dev/urandom | base64 | tr -d '/+=' >"$DIR/secret")
export COMPONENT_SECRET; COMPONENT_SECRET=$(cat "$DIR/secret")
bash scripts/prosody.sh start "$DIR/prosody"

declare -A PW
for u in alice bob carol; do
	[ -s "$DIR/password-$u" ] || (umask 077; head -c 9 /dev/urandom | base64 | tr -d '/+=' >"$DIR/password-$u")
	PW[$u]=$(cat "$DIR/password-$u")
	bash scripts/prosody.sh register "$DIR/prosody" "$u" "${PW[$u]}"
done

cat >"$DIR/tidemark.toml" <<TOML
# tidemark demo configuration (written by scripts/demo.sh)
[component]
jid = "chat.localhost"
server = "127.0.0.1:5347"
secret = "$COMPONENT_SECRET"

[storage]
path = "$DIR/tidemark-db"

[presence]
offline = "reject"

[limits]
max_body_bytes = 65536

[[desks]]
name = "support"
agents = ["bob@localhost"]

[log]
level = "info"
TOML
chmod 600 "$DIR/tidemark.toml"

log "cargo build --release"
cargo build --release
stop_tidemark
setsid target/release/tidemark --config "$DIR/tidemark.toml" >>"$DIR/tidemark.log" 2>&1 </dev/null &
echo $! >"$DIR/tidemark.pid"
sleep 0.5
kill -0 "$(cat "$DIR/tidemark.pid")" 2>/dev/null || { tail -20 "$DIR/tidemark.log" >&2; die "tidemark did not start"; }
log "tidemark running (pid $(cat "$DIR/tidemark.pid"), log $DIR/tidemark.log)"

python3 scripts/demo.py --port 5222 --alice "alice:${PW[alice]}" --bob "bob:${PW[bob]}" \
	--carol "carol:${PW[carol]}"

cat <<INFO

Prosody and tidemark are still running on 127.0.0.1.
  Users (server 127.0.0.1, port 5222, STARTTLS with a self-signed certificate):
    alice@localhost  password ${PW[alice]}
    bob@localhost    password ${PW[bob]}
    carol@localhost  password ${PW[carol]}
  In your client, add a contact by its tracked address, e.g. bob\\40localhost@chat.localhost
  (or ask the gateway chat.localhost, XEP-0100, to translate bob@localhost).
  The team desk support@chat.localhost has bob as its agent: write to it as carol, answer
  as bob in the chat "carol (support)", run the "desk" command on chat.localhost as bob.
  Logs: $DIR/prosody/prosody.log  $DIR/tidemark.log
  Stop everything: bash scripts/demo.sh stop
INFO
