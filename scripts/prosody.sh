#!/usr/bin/env bash
# Run a private Prosody for tidemark: its own config, data and log under DIR,
# on 127.0.0.1 only, never as a system service.
#
#   scripts/prosody.sh install                 install prosody + lua-unbound if missing
#   scripts/prosody.sh start DIR               generate DIR/prosody.cfg.lua and start
#   scripts/prosody.sh stop DIR
#   scripts/prosody.sh restart DIR
#   scripts/prosody.sh status DIR
#   scripts/prosody.sh register DIR USER PASS  create USER@DOMAIN
#
# Environment (read by start; saved in DIR so restart reuses it):
#   C2S_PORT (15222)  COMPONENT_PORT (15347)  COMPONENT_JID (chat.localhost)
#   COMPONENT_SECRET (s3cret)  PROSODY_LOG_LEVEL (info)  XMPP_DOMAIN (localhost)
#   EXTRA_MODULES (none): more modules_enabled, space-separated
#   COMPONENT_TLS (0): 1 serves COMPONENT_PORT with direct TLS instead
#     (mod_net_multiplex's ssl_ports; issue 12), presenting COMPONENT_CERTFILE
#     (certs/component-server.pem: the certificate, then its key)
#   Federation, off unless S2S_ADDR is set: s2s listens on S2S_ADDR:5269
#   (say 127.0.0.2; each server its own address) and resolves domains with
#   the hosts file HOSTS_FILE only (lua-unbound, no DNS server asked).
#
# As root, Prosody drops to the `prosody` user (DIR is chowned to it) when that
# user can reach DIR; when it cannot (say, a clone under /root, mode 0700),
# the generated config sets run_as_root = true instead and says so.
set -euo pipefail
# shellcheck source=lib.sh
source "$(dirname "$0")/lib.sh"

usage() { sed -n '2,21p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 64; }

abs_dir() { mkdir -p "$1" && (cd "$1" && pwd); }

prosody_user_can_use() { # DIR
	[ "$(id -u)" = 0 ] && id prosody >/dev/null 2>&1 || return 1
	chown -R prosody:prosody "$1"
	drop_to_prosody test -w "$1" -a -x "$1" 2>/dev/null
}

drop_to_prosody() {
	if command -v setpriv >/dev/null; then
		setpriv --reuid=prosody --regid=prosody --init-groups -- "$@"
	else
		runuser -u prosody -- "$@"
	fi
}

pid_of() { # DIR -> pid of a live Prosody, or nothing
	local pid
	pid=$(cat "$1/prosody.pid" 2>/dev/null || true)
	if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then echo "$pid"; fi
}

cmd_start() {
	local dir; dir=$(abs_dir "$1")
	ensure_prosody
	if [ -n "$(pid_of "$dir")" ]; then log "prosody already running in $dir"; return 0; fi

	# Settings: from the environment on first start, from DIR/env afterwards.
	if [ -f "$dir/env" ] && [ -z "${C2S_PORT:-}${COMPONENT_PORT:-}" ]; then
		# shellcheck disable=SC1091
		source "$dir/env"
	fi
	local c2s=${C2S_PORT:-15222} comp=${COMPONENT_PORT:-15347}
	local jid=${COMPONENT_JID:-chat.localhost} secret=${COMPONENT_SECRET:-s3cret}
	local level=${PROSODY_LOG_LEVEL:-info} domain=${XMPP_DOMAIN:-localhost}
	local s2s_addr=${S2S_ADDR:-} hosts=${HOSTS_FILE:-}
	cat >"$dir/env" <<ENV
C2S_PORT=$c2s
COMPONENT_PORT=$comp
COMPONENT_JID=$jid
COMPONENT_SECRET=$secret
PROSODY_LOG_LEVEL=$level
XMPP_DOMAIN=$domain
S2S_ADDR=$s2s_addr
HOSTS_FILE=$hosts
EXTRA_MODULES="${EXTRA_MODULES:-}"
COMPONENT_TLS=${COMPONENT_TLS:-0}
COMPONENT_CERTFILE=${COMPONENT_CERTFILE:-}
ENV
	for p in "$c2s" "$comp"; do
		port_in_use "$p" && die "127.0.0.1:$p is already in use (another Prosody?)"
	done
	local s2s='modules_disabled = { "s2s" }'
	if [ -n "$s2s_addr" ]; then
		[ -f "$hosts" ] || die "S2S_ADDR needs HOSTS_FILE, a hosts file naming the federated domains"
		port_in_use 5269 "$s2s_addr" && die "$s2s_addr:5269 is already in use"
		# Resolve only through the hosts file: the resolv.conf names a closed
		# loopback port, so nothing ever leaves the machine.
		echo "nameserver 127.0.0.1" >"$dir/resolv.conf"
		s2s="s2s_ports = { 5269 }; s2s_interfaces = { \"$s2s_addr\" }; s2s_require_encryption = false; s2s_secure_auth = false; unbound = { hoststxt = \"$hosts\"; resolvconf = \"$dir/resolv.conf\" }"
	fi

	mkdir -p "$dir/data" "$dir/certs"
	cp "$REPO_ROOT/certs/localhost.crt" "$REPO_ROOT/certs/localhost.key" "$dir/certs/"
	chmod 600 "$dir/certs/localhost.key"

	local run_as_root="-- runs as the prosody user"
	local as_prosody=0
	if [ "$(id -u)" = 0 ]; then
		if prosody_user_can_use "$dir"; then
			as_prosody=1
		else
			log "the prosody user cannot reach $dir: running Prosody as root (run_as_root)"
			run_as_root="run_as_root = true -- the prosody user cannot reach this directory"
		fi
	fi
	# Modules a person's client expects of a real server (say "private pep
	# vcard_legacy" for scripts/gajim-screens.sh); none by default.
	local extra="" m
	for m in ${EXTRA_MODULES:-}; do extra="$extra\"$m\"; "; done
	local listener="component_ports = { $comp }"
	if [ "${COMPONENT_TLS:-0}" = 1 ]; then
		local pem; pem=$(component_certfile "$dir")
		# ssl_ssl: the TLS settings of the "ssl" (multiplex_ssl) service.
		listener="component_ports = { }; ssl_ports = { $comp }; ssl_interfaces = { \"127.0.0.1\" }; ssl_ssl = { certificate = \"$pem\"; key = \"$pem\" }"
		extra="$extra\"net_multiplex\"; "
	fi
	sed -e "s|@DIR@|$dir|g" -e "s|@C2S_PORT@|$c2s|g" -e "s|@COMPONENT_PORT@|$comp|g" \
		-e "s|@COMPONENT_JID@|$jid|g" -e "s|@SECRET@|$secret|g" \
		-e "s|@LOG_LEVEL@|$level|g" -e "s|@RUN_AS_ROOT@|$run_as_root|g" \
		-e "s|@DOMAIN@|$domain|g" -e "s|@S2S@|$s2s|g" -e "s|@EXTRA_MODULES@|$extra|g" \
		-e "s|@COMPONENT_LISTENER@|$listener|g" \
		"$REPO_ROOT/config/prosody.cfg.lua.in" >"$dir/prosody.cfg.lua"
	chmod 640 "$dir/prosody.cfg.lua" "$dir/env" # they hold the component secret
	[ $as_prosody = 1 ] && chown -R prosody:prosody "$dir"

	rm -f "$dir/prosody.pid"
	# -F: stay in the foreground of our own background job; setsid so the
	# caller's terminal signals do not reach it.
	if [ $as_prosody = 1 ]; then
		setsid bash -c "$(declare -f drop_to_prosody); drop_to_prosody prosody --config '$dir/prosody.cfg.lua' -F" \
			>>"$dir/prosody.out" 2>&1 </dev/null &
	else
		setsid prosody --config "$dir/prosody.cfg.lua" -F >>"$dir/prosody.out" 2>&1 </dev/null &
	fi
	if ! wait_port "$c2s" 15 || ! wait_port "$comp" 5 || { [ -n "$s2s_addr" ] && ! wait_port 5269 5 "$s2s_addr"; }; then
		log "prosody did not start; last lines of its logs:"
		tail -n 20 "$dir/prosody.out" "$dir/prosody.log" >&2 2>/dev/null || true
		exit 1
	fi
	log "prosody running in $dir (pid $(pid_of "$dir"), c2s 127.0.0.1:$c2s, component 127.0.0.1:$comp)"
}

cmd_stop() {
	local dir; dir=$(abs_dir "$1")
	local pid; pid=$(pid_of "$dir")
	[ -z "$pid" ] && { log "prosody not running in $dir"; return 0; }
	kill -TERM "$pid"
	for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
	if kill -0 "$pid" 2>/dev/null; then log "prosody $pid ignored TERM: killing"; kill -KILL "$pid"; fi
	rm -f "$dir/prosody.pid"
	log "prosody stopped ($dir)"
}

cmd_status() {
	local dir; dir=$(abs_dir "$1")
	local pid; pid=$(pid_of "$dir")
	if [ -n "$pid" ]; then echo "running (pid $pid)"; else echo "stopped"; return 3; fi
}

cmd_register() {
	local dir; dir=$(abs_dir "$1")
	[ -f "$dir/prosody.cfg.lua" ] || die "no $dir/prosody.cfg.lua: run '$0 start $dir' first"
	local XMPP_DOMAIN=localhost
	# shellcheck disable=SC1091
	[ -f "$dir/env" ] && source "$dir/env"
	prosodyctl --config "$dir/prosody.cfg.lua" register "$2" "${XMPP_DOMAIN:-localhost}" "$3"
}

[ $# -ge 1 ] || usage
case "$1" in
	install) ensure_prosody ;;
	start) [ $# -eq 2 ] || usage; cmd_start "$2" ;;
	stop) [ $# -eq 2 ] || usage; cmd_stop "$2" ;;
	restart) [ $# -eq 2 ] || usage; cmd_stop "$2"; cmd_start "$2" ;;
	status) [ $# -eq 2 ] || usage; cmd_status "$2" ;;
	register) [ $# -eq 4 ] || usage; cmd_register "$2" "$3" "$4" ;;
	*) usage ;;
esac
