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
