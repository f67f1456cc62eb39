#!/bin/bash
# Starts (or stops) a throwaway Prosody for scenario 2 of tidemark-bench, on
# 127.0.0.1 only: c2s 35222, component 35347, no s2s. Accounts user0..userN-1
# with password "pw" are written straight into Prosody's internal_plain store
# (prosodyctl register takes ~1 s per account).
#
#   scripts/prosody-bench.sh start N     # N accounts (default 500)
#   scripts/prosody-bench.sh stop
#
# Needs Debian's prosody package (apt-get install -y prosody) and root (it
# runs Prosody as the prosody user, which Prosody insists on).
set -eu
DIR=${PROSODY_BENCH_DIR:-/tmp/tidemark-bench-prosody}
SECRET=${PROSODY_BENCH_SECRET:-bench-secret}
cmd=${1:-start}
N=${2:-500}

stop() {
    if [ -f "$DIR/prosody.pid" ]; then
        pid=$(cat "$DIR/prosody.pid")
        kill "$pid" 2>/dev/null || true
        i=0
        while kill -0 "$pid" 2>/dev/null && [ $i -lt 50 ]; do sleep 0.1; i=$((i+1)); done
        rm -f "$DIR/prosody.pid"
    fi
}

case "$cmd" in
stop) stop; exit 0 ;;
start) ;;
*) echo "usage: $0 start [N] | stop" >&2; exit 2 ;;
esac

command -v prosody >/dev/null || { apt-get install -y prosody >/dev/null; }
stop
rm -rf "$DIR"
mkdir -p "$DIR/certs" "$DIR/data/localhost/accounts"
openssl req -x509 -newkey rsa:2048 -nodes -days 30 -subj /CN=localhost \
    -addext "subjectAltName=DNS:localhost,DNS:chat.localhost" \
    -keyout "$DIR/certs/localhost.key" -out "$DIR/certs/localhost.crt" 2>/dev/null
i=0
while [ $i -lt "$N" ]; do
    printf 'return {\n\t["password"] = "pw";\n};\n' > "$DIR/data/localhost/accounts/user$i.dat"
    i=$((i+1))
done
cat > "$DIR/prosody.cfg.lua" <<CFG
pidfile = "$DIR/prosody.pid"
data_path = "$DIR/data"
log = { warn = "$DIR/prosody.log" }
interfaces = { "127.0.0.1" }
c2s_ports = { 35222 }
c2s_interfaces = { "127.0.0.1" }
component_ports = { 35347 }
component_interfaces = { "127.0.0.1" }
http_ports = {}
https_ports = {}
c2s_direct_tls_ports = {}
certificates = "$DIR/certs"
modules_enabled = { "tls", "roster", "saslauth", "disco", "ping", "presence", "message", "iq" }
modules_disabled = { "s2s", "offline", "limits" }
authentication = "internal_plain"
storage = "internal"
c2s_require_encryption = true
allow_registration = false
-- mod_limits is not loaded; should it be, do not let it throttle the bench.
limits = { c2s = { rate = "100mb/s" } }
VirtualHost "localhost"
Component "chat.localhost"
    component_secret = "$SECRET"
CFG
chown -R prosody:prosody "$DIR"
ulimit -n 8192 || true
runuser -u prosody -- prosody -F --config "$DIR/prosody.cfg.lua" >"$DIR/stdout.log" 2>&1 &
i=0
until (exec 3<>/dev/tcp/127.0.0.1/35222) 2>/dev/null; do
    sleep 0.1; i=$((i+1))
    if [ $i -gt 100 ]; then echo "prosody did not start:" >&2; cat "$DIR/stdout.log" "$DIR/prosody.log" >&2; exit 1; fi
done
echo "prosody up (pid $(cat "$DIR/prosody.pid" 2>/dev/null)), $N accounts, dir $DIR"
