# Shared helpers for tidemark's scripts. Source it; do not run it.
# shellcheck shell=bash

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

log() { printf '[%s] %s\n' "$(basename "$0")" "$*" >&2; }
die() { log "error: $*"; exit 1; }

as_root() {
	if [ "$(id -u)" = 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else
		die "need root to run: $*"; fi
}

# Debian's Prosody (and lua-unbound, for the federation tests to come).
# Installed only when prosody is missing; apt-get update runs once.
ensure_prosody() {
	if command -v prosody >/dev/null 2>&1 && command -v prosodyctl >/dev/null 2>&1; then
		return 0
	fi
	log "prosody is missing: installing prosody and lua-unbound with apt-get"
	as_root apt-get update
	as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y prosody lua-unbound
	# The package starts a system Prosody on the default ports; tidemark's
	# scripts never use it (their ports differ), but do not leave it
	# running on a CI box. No systemd here: the package's init script, if any.
	if [ -x /etc/init.d/prosody ]; then as_root /etc/init.d/prosody stop >/dev/null 2>&1 || true; fi
}

# Debian's ejabberd (23.01 on Debian 12), for scripts/ejabberd.sh. Installed
# only when ejabberdctl is missing; the system service the package starts is
# stopped and disabled at once (see quiet_system_ejabberd).
ensure_ejabberd() {
	command -v ejabberdctl >/dev/null 2>&1 && return 0
	log "ejabberd is missing: installing it with apt-get"
	as_root apt-get update
	as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y ejabberd
	quiet_system_ejabberd
}

# The package enables and starts a system ejabberd on 5222/5269/5280 with the
# node ejabberd@localhost. tidemark's scripts run their own instances only;
# the system one must neither hold those ports nor start again at boot.
quiet_system_ejabberd() {
	if [ -d /run/systemd/system ]; then
		as_root systemctl disable --now ejabberd >/dev/null 2>&1 || true
	else
		# Only when it runs: the init script's status check would start an
		# epmd daemon of its own otherwise.
		local pid; pid=$(cat /run/ejabberd/ejabberd.pid 2>/dev/null || true)
		if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null && [ -x /etc/init.d/ejabberd ]; then
			as_root /etc/init.d/ejabberd stop >/dev/null 2>&1 || true
		fi
		if command -v update-rc.d >/dev/null; then as_root update-rc.d ejabberd disable >/dev/null 2>&1 || true; fi
	fi
}

# slixmpp 1.17.0 and pytest for the integration tests and the demo.
ensure_profanity() {
	# A real third-party client for the smoke test (tests/integration/test_profanity.py).
	if command -v profanity >/dev/null 2>&1 && command -v tmux >/dev/null 2>&1; then
		return 0
	fi
	log "profanity or tmux is missing: installing them with apt-get"
	as_root apt-get update
	as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y profanity tmux
}

ensure_python() {
	command -v python3 >/dev/null || die "python3 is required"
	local missing=()
	python3 -c 'import slixmpp, sys; sys.exit(slixmpp.__version__ != "1.17.0")' 2>/dev/null \
		|| missing+=("slixmpp==1.17.0")
	python3 -c 'import pytest' 2>/dev/null || missing+=("pytest")
	[ ${#missing[@]} -eq 0 ] && return 0
	python3 -m pip --version >/dev/null 2>&1 || {
		log "pip is missing: installing python3-pip with apt-get"
		as_root apt-get update
		as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y python3-pip
	}
	log "installing ${missing[*]} with pip"
	# Debian 12 marks its Python as externally managed (PEP 668).
	python3 -m pip install --quiet "${missing[@]}" 2>/dev/null \
		|| python3 -m pip install --quiet --break-system-packages "${missing[@]}"
}

ensure_cargo() {
	command -v cargo >/dev/null 2>&1 && return 0
	[ -x "$HOME/.cargo/bin/cargo" ] && { export PATH="$HOME/.cargo/bin:$PATH"; return 0; }
	die "cargo is missing: install a Rust toolchain (https://rustup.rs) first"
}

# wait_port PORT SECONDS [HOST]: until something accepts on HOST:PORT
# (HOST 127.0.0.1 unless given).
wait_port() {
	local port=$1 deadline=$((SECONDS + $2)) host=${3:-127.0.0.1}
	while [ $SECONDS -lt "$deadline" ]; do
		if (exec 3<>"/dev/tcp/$host/$port") 2>/dev/null; then return 0; fi
		sleep 0.1
	done
	return 1
}

port_in_use() { (exec 3<>"/dev/tcp/${2:-127.0.0.1}/$1") 2>/dev/null; }

# kill_pidfile FILE [SIGNAL]: ends the process whose pid FILE holds (SIGNAL,
# TERM unless given; KILL if it is still there 3 s later) and removes FILE.
kill_pidfile() {
	local pid; pid=$(cat "$1" 2>/dev/null || true)
	if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
		kill "-${2:-TERM}" "$pid" 2>/dev/null || true
		for _ in $(seq 30); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
		kill -0 "$pid" 2>/dev/null && kill -KILL "$pid" 2>/dev/null
	fi
	rm -f "$1"
}

# --- Gajim 1.7 under Xvfb against a private Prosody + tidemark --------------
# (scripts/gajim-screens.sh, scripts/gajim-desk-screens.sh). Everything lives
# under one run directory DIR; each process's pid is in DIR/NAME.pid.

# gajim_stop DIR: stops Gajim, tidemark, the session bus, Xvfb and Prosody.
gajim_stop() {
	local dir=$1
	kill_pidfile "$dir/gajim.pid"
	kill_pidfile "$dir/tidemark.pid"
	kill_pidfile "$dir/dbus.pid"
	kill_pidfile "$dir/xvfb.pid"
	[ -d "$dir/prosody" ] && bash "$REPO_ROOT/scripts/prosody.sh" stop "$dir/prosody" || true
}

# gajim_check GAJIM_USER: what running Gajim under Xvfb needs is there.
gajim_check() {
	local tool
	for tool in gajim Xvfb xdotool import dbus-daemon gdbus; do
		command -v "$tool" >/dev/null || die "$tool is missing (apt-get install gajim xvfb xdotool imagemagick dbus)"
	done
	id "$1" >/dev/null 2>&1 || die "no user $1 to run Gajim as (GAJIM_USER)"
}

# gajim_prepare DIR GAJIM_USER USER...: checks the tools, starts afresh a
# Prosody under DIR (C2S_PORT, COMPONENT_PORT, with what Gajim looks for on a
# real server) and registers each USER with a random password, kept in PW.
# Exports COMPONENT_SECRET for the tidemark config.
gajim_prepare() {
	local dir=$1 gajim_user=$2 u; shift 2
	gajim_check "$gajim_user"
	ensure_prosody
	ensure_python
	gajim_stop "$dir"
	rm -rf "$dir"
	mkdir -p "$dir/shots"
	chmod 755 "$dir" "$dir/shots"
	export COMPONENT_SECRET; COMPONENT_SECRET=$(head -c 18 /dev/urandom | base64 | tr -d '/+=')
	# What Gajim looks for on a real server: bookmarks (private storage), PEP
	# (its own nickname and avatar) and vCards; the tests' Prosody has none.
	EXTRA_MODULES="private pep vcard_legacy" bash "$REPO_ROOT/scripts/prosody.sh" start "$dir/prosody"
	declare -gA PW
	for u in "$@"; do
		PW[$u]=$(head -c 9 /dev/urandom | base64 | tr -d '/+=')
		bash "$REPO_ROOT/scripts/prosody.sh" register "$dir/prosody" "$u" "${PW[$u]}"
	done
}

# gajim_start_tidemark DIR: target/release/tidemark with DIR/tidemark.toml,
# logging to DIR/tidemark.log (gajim_screens.py restarts it the same way).
gajim_start_tidemark() {
	setsid "$REPO_ROOT/target/release/tidemark" --config "$1/tidemark.toml" >>"$1/tidemark.log" 2>&1 </dev/null &
	echo $! >"$1/tidemark.pid"
}

# gajim_session DIR DISPLAY GAJIM_USER ACCOUNT JID PASSWORD: an X server on
# DISPLAY and a session bus for GAJIM_USER (Gajim is a GApplication: its
# actions are reached over D-Bus, as a second `gajim` would reach them), and
# Gajim's account written into its settings database (no wizard): JID on
# 127.0.0.1:$C2S_PORT, STARTTLS, the development certificate trusted. Gajim's
# HOME is DIR/home, so that runs of different scripts (or checkouts) as the
# same user do not share, or wipe, each other's Gajim profile.
# Sets DBUS_ADDR and GAJIM_HOME.
gajim_session() {
	local dir=$1 display=$2 gajim_user=$3 account=$4 jid=$5 password=$6
	Xvfb "$display" -screen 0 1280x800x24 -nolisten tcp >"$dir/xvfb.log" 2>&1 &
	echo $! >"$dir/xvfb.pid"
	DBUS_ADDR=$(runuser -u "$gajim_user" -- dbus-daemon --session --fork --print-address=1 --print-pid=2 2>"$dir/dbus.pid" | head -1)
	[ -n "$DBUS_ADDR" ] || die "no session bus for $gajim_user"
	GAJIM_HOME="$dir/home"
	mkdir -p "$GAJIM_HOME"
	chown "$gajim_user:" "$GAJIM_HOME"
	cp "$REPO_ROOT/certs/localhost.crt" "$dir/localhost.crt"; chmod 644 "$dir/localhost.crt"
	runuser -u "$gajim_user" -- env HOME="$GAJIM_HOME" python3 "$REPO_ROOT/scripts/gajim_settings.py" \
		"$account" "$jid" "$password" 127.0.0.1 "$C2S_PORT" "$dir/localhost.crt" 2>&1 \
		| grep -v '^creating\|PyGIWarning\|from gi.repository\|No translations' || true
}

# COMPONENT_TLS=1 for prosody.sh and ejabberd.sh: the certificate (then its
# key) of the component listener, COMPONENT_CERTFILE or the development one,
# copied under DIR/certs for the server's own user; prints the copy's path.
component_certfile() { # DIR
	local certfile=${COMPONENT_CERTFILE:-$REPO_ROOT/certs/component-server.pem}
	[ -r "$certfile" ] || die "COMPONENT_CERTFILE $certfile cannot be read"
	cp "$certfile" "$1/certs/component.pem"
	chmod 600 "$1/certs/component.pem"
	echo "$1/certs/component.pem"
}
