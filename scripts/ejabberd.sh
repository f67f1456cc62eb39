#!/usr/bin/env bash
# Run a private ejabberd for tidemark: its own config, ctl config, cookie,
# Mnesia spool and logs under DIR, on 127.0.0.1 only, as the ejabberd user,
# never as the system service. Same interface as scripts/prosody.sh.
#
#   scripts/ejabberd.sh install                 install ejabberd if missing, keep the service off
#   scripts/ejabberd.sh start DIR               generate DIR/ejabberd.yml and start
#   scripts/ejabberd.sh stop DIR
#   scripts/ejabberd.sh restart DIR
#   scripts/ejabberd.sh status DIR
#   scripts/ejabberd.sh register DIR USER PASS  create USER@DOMAIN (DIR: one node or a cluster)
#   scripts/ejabberd.sh cluster-start DIR       two nodes in one Mnesia cluster (below)
#   scripts/ejabberd.sh cluster-stop DIR        (also cluster-restart DIR)
#   scripts/ejabberd.sh cluster-status DIR
#
# Environment (read by start; saved in DIR so restart reuses it):
#   C2S_PORT (15222)  COMPONENT_PORT (15347)  COMPONENT_JID (chat.localhost)
#   COMPONENT_SECRET (s3cret)  EJABBERD_LOG_LEVEL (info)  XMPP_DOMAIN (localhost)
#   EXTRA_MODULES (none): more modules, space-separated (mod_vcard or vcard)
#   COMPONENT_TLS (0): 1 puts `tls: true` on the ejabberd_service listener
#     (direct TLS, issue 12) with COMPONENT_CERTFILE (certs/component-server.pem:
#     the certificate, then its key) as its certfile
#   EJABBERD_DIST_PORT (COMPONENT_PORT + 1): Erlang distribution, on the
#     node's loopback address only, for ejabberdctl (and a cluster's other
#     node) to reach this node (no epmd daemon is started)
#   Federation, off unless S2S_ADDR is set: s2s listens on S2S_ADDR:5269
#   (a cluster's nodes each on their own address instead), dialback without
#   TLS (as scripts/prosody.sh offers it), the peers' addresses from the hosts
#   file HOSTS_FILE (the node sees it as /etc/hosts, in a mount namespace of
#   its own)
#   DOMAIN_BALANCING (none): a type (random, source, destination, bare_source,
#     bare_destination) for COMPONENT_JID's `domain_balancing`, and
#     COMPONENT_NUMBER (none) its `component_number`; 23.01 needs both (a
#     type alone crashes every component connection): docs/ejabberd-balancing.md
#
# A cluster (cluster-start DIR): node 1 in DIR/node1 listens on 127.0.0.1, node 2
# in DIR/node2 on 127.0.0.2, each on the same C2S_PORT, COMPONENT_PORT and
# distribution port (without epmd every node of a cluster must listen for
# distribution on the one port `-erl_epmd_port` names, so the nodes differ by
# address), named tidemark1@127.0.0.1 and tidemark2@127.0.0.2, one cookie.
# Node 2 joins node 1's Mnesia cluster on first start: users, rosters and
# component routes are shared; both accept the component with the same secret.
# cluster-stop stops node 2 and then node 1, so that node 1, stopped last,
# loads its tables from its own disc at the next cluster-start.
#
# Debian's /etc/ejabberd/ejabberdctl.cfg sets EJABBERD_CONFIG_PATH and would
# override --config; every ejabberdctl call here names DIR/ejabberdctl.cfg
# instead, which also gives the node its own name, cookie and directories.
set -euo pipefail
# shellcheck source=lib.sh
source "$(dirname "$0")/lib.sh"

usage() { sed -n '2,45p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 64; }

abs_dir() { mkdir -p "$1" && (cd "$1" && pwd); }

# ejabberdctl with this directory's own ctl config. As root it drops to the
# ejabberd user itself (su); the directory must be reachable by that user.
ctl() { # DIR ARGS...
	local dir=$1; shift
	ejabberdctl --config-dir "$dir" --ctl-config "$dir/ejabberdctl.cfg" "$@"
}

pid_of() { # DIR -> pid of a live ejabberd (the beam process), or nothing
	local pid
	pid=$(cat "$1/ejabberd.pid" 2>/dev/null || true)
	if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then echo "$pid"; fi
}

cmd_start() {
	local dir; dir=$(abs_dir "$1")
	ensure_ejabberd
	if [ -n "$(pid_of "$dir")" ]; then log "ejabberd already running in $dir"; return 0; fi

	# Settings: from the environment on first start, from DIR/env afterwards.
	if [ -f "$dir/env" ] && [ -z "${C2S_PORT:-}${COMPONENT_PORT:-}" ]; then
		# shellcheck disable=SC1091
		source "$dir/env"
	fi
	local c2s=${C2S_PORT:-15222} comp=${COMPONENT_PORT:-15347}
	local jid=${COMPONENT_JID:-chat.localhost} secret=${COMPONENT_SECRET:-s3cret}
	local level=${EJABBERD_LOG_LEVEL:-info} domain=${XMPP_DOMAIN:-localhost}
	local dist=${EJABBERD_DIST_PORT:-$((comp + 1))}
	# The node name is fixed per directory (Mnesia ties its data to it, so a
	# restart must reuse it) and differs between directories, so several
	# instances can run side by side. A cluster names its nodes itself.
	local ip=${EJABBERD_IP:-127.0.0.1}
	local node=${EJABBERD_NODE:-tidemark-$(printf '%s' "$dir" | sha256sum | cut -c1-12)@localhost}
	local balancing=${DOMAIN_BALANCING:-} number=${COMPONENT_NUMBER:-}
	cat >"$dir/env" <<ENV
C2S_PORT=$c2s
COMPONENT_PORT=$comp
COMPONENT_JID=$jid
COMPONENT_SECRET=$secret
EJABBERD_LOG_LEVEL=$level
XMPP_DOMAIN=$domain
EJABBERD_DIST_PORT=$dist
EXTRA_MODULES="${EXTRA_MODULES:-}"
EJABBERD_IP=$ip
EJABBERD_NODE=$node
DOMAIN_BALANCING=$balancing
COMPONENT_NUMBER=$number
COMPONENT_TLS=${COMPONENT_TLS:-0}
COMPONENT_CERTFILE=${COMPONENT_CERTFILE:-}
S2S_ADDR=${S2S_ADDR:-}
HOSTS_FILE=${HOSTS_FILE:-}
ENV
	for p in "$c2s" "$comp" "$dist"; do
		port_in_use "$p" "$ip" && die "$ip:$p is already in use (another server?)"
	done

	id ejabberd >/dev/null 2>&1 || die "no ejabberd user: run '$0 install'"
	[ "$(id -u)" = 0 ] || die "run as root: ejabberdctl switches to the ejabberd user itself"
	mkdir -p "$dir/spool" "$dir/logs" "$dir/certs"
	cp "$REPO_ROOT/certs/localhost.crt" "$REPO_ROOT/certs/localhost.key" "$dir/certs/"
	chmod 600 "$dir/certs/localhost.key"

	# The cookie is this instance's own (a cluster's nodes get theirs copied
	# in before their first start).
	local cookie
	if [ -f "$dir/cookie" ]; then cookie=$(cat "$dir/cookie"); else
		cookie=$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n'); echo "$cookie" >"$dir/cookie"
	fi
	cat >"$dir/ejabberdctl.cfg" <<CTL
# Generated by scripts/ejabberd.sh: this instance's own ejabberdctl settings.
ERLANG_NODE=$node
EJABBERD_CONFIG_PATH=$dir/ejabberd.yml
CONFIG_DIR=$dir
SPOOL_DIR=$dir/spool
LOGS_DIR=$dir/logs
EJABBERD_PID_PATH=$dir/ejabberd.pid
EJABBERD_BYPASS_WARNINGS=true
# Distribution on a fixed loopback port instead of an epmd daemon.
ERL_DIST_PORT=$dist
CTL
	# vm.args in --config-dir: the cookie stays out of the ctl config and the
	# su/sh command lines (the beam process still shows it: a test box only).
	cat >"$dir/vm.args" <<ARGS
-setcookie $cookie
-kernel inet_dist_use_interface {${ip//./,}}
ARGS
	local s2s="s2s_access: none" s2s_listener="" s2s_modules=""
	if [ -n "${S2S_ADDR:-}" ]; then
		[ -f "${HOSTS_FILE:-}" ] || die "S2S_ADDR needs HOSTS_FILE, a hosts file naming the federated domains"
		port_in_use 5269 "$S2S_ADDR" && die "$S2S_ADDR:5269 is already in use"
		s2s_listener="  - port: 5269\n    ip: \"$S2S_ADDR\"\n    module: ejabberd_s2s_in\n    shaper: none\n"
		# s2s_dns_retries counts the first try: 0 fails every lookup at once.
		s2s="s2s_access: all\ns2s_use_starttls: false\ns2s_dns_timeout: 1\ns2s_dns_retries: 1\noutgoing_s2s_families: [ipv4]"
		s2s_modules="  mod_s2s_dialback: {}\n"
		# ejabberd's s2s (p1_xmpp 1.6) looks SRV records up through Erlang's
		# resolver and addresses through the C library's getaddrinfo, which
		# reads /etc/hosts only: the node runs in a mount namespace of its
		# own where /etc/hosts is this file (the system's lines, then the
		# federated domains), so nothing outside it changes.
		cat /etc/hosts "$HOSTS_FILE" >"$dir/hosts"
	fi
	# ERL_INETRC names DIR/inetrc: resolve from the hosts file first.
	cp /etc/ejabberd/inetrc "$dir/inetrc"

	# Direct TLS on the component listener: ejabberd reads its certfile as
	# the ejabberd user, so it gets a copy of its own under DIR.
	local component_tls=""
	if [ "${COMPONENT_TLS:-0}" = 1 ]; then
		local pem; pem=$(component_certfile "$dir")
		component_tls="    tls: true\n    certfile: \"$pem\"\n"
	fi
	local extra="" m bal=""
	for m in ${EXTRA_MODULES:-}; do extra="$extra  mod_${m#mod_}: {}\n"; done
	if [ -n "$balancing$number" ]; then
		bal="domain_balancing:\n  \"$jid\":\n"
		[ -z "$balancing" ] || bal="$bal    type: $balancing\n"
		[ -z "$number" ] || bal="$bal    component_number: $number\n"
	fi
	sed -e "s|@DIR@|$dir|g" -e "s|@C2S_PORT@|$c2s|g" -e "s|@COMPONENT_PORT@|$comp|g" \
		-e "s|@IP@|$ip|g" -e "s|@DOMAIN_BALANCING@|$bal|g" \
		-e "s|@COMPONENT_JID@|$jid|g" -e "s|@SECRET@|$secret|g" \
		-e "s|@LOG_LEVEL@|$level|g" -e "s|@DOMAIN@|$domain|g" -e "s|@EXTRA_MODULES@|$extra|g" \
		-e "s|@COMPONENT_TLS@|$component_tls|g" -e "s|@S2S@|$s2s|g" \
		-e "s|@S2S_LISTENER@|$s2s_listener|g" -e "s|@S2S_MODULES@|$s2s_modules|g" \
		"$REPO_ROOT/config/ejabberd.yml.in" >"$dir/ejabberd.yml"
	# They hold the component secret and the cookie.
	chmod 640 "$dir/ejabberd.yml" "$dir/ejabberdctl.cfg" "$dir/env"
	chmod 600 "$dir/cookie" "$dir/vm.args"
	chown -R ejabberd:ejabberd "$dir"
	su -s /bin/sh -c "test -w '$dir' -a -x '$dir'" ejabberd \
		|| die "the ejabberd user cannot reach $dir (a parent directory closed to it?)"

	rm -f "$dir/ejabberd.pid"
	# foreground: stays in our own background job; setsid so the caller's
	# terminal signals do not reach it.
	local ns=()
	if [ -n "${S2S_ADDR:-}" ]; then
		ns=(unshare --mount --propagation private)
		printf 'mount --bind %q /etc/hosts\n' "$dir/hosts" >"$dir/foreground.sh"
	else
		: >"$dir/foreground.sh"
	fi
	printf 'exec ejabberdctl --config-dir %q --ctl-config %q foreground\n' "$dir" "$dir/ejabberdctl.cfg" >>"$dir/foreground.sh"
	setsid "${ns[@]}" bash -e "$dir/foreground.sh" >>"$dir/ejabberd.out" 2>&1 </dev/null &
	if ! wait_port "$c2s" 60 "$ip" || ! wait_port "$comp" 10 "$ip"; then
		log "ejabberd did not start; last lines of its logs:"
		tail -n 20 "$dir/ejabberd.out" "$dir/logs/ejabberd.log" "$dir/logs/error.log" >&2 2>/dev/null || true
		exit 1
	fi
	for _ in $(seq 50); do [ -n "$(pid_of "$dir")" ] && break; sleep 0.1; done
	log "ejabberd running in $dir (pid $(pid_of "$dir"), node $node, c2s $ip:$c2s, component $ip:$comp${component_tls:+ over TLS})"
}

cmd_stop() {
	local dir; dir=$(abs_dir "$1")
	local pid; pid=$(pid_of "$dir")
	[ -z "$pid" ] && { log "ejabberd not running in $dir"; return 0; }
	# The Erlang VM takes SIGTERM as init:stop(): an orderly shutdown,
	# without starting a second VM for `ejabberdctl stop`.
	kill -TERM "$pid"
	for _ in $(seq 150); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
	if kill -0 "$pid" 2>/dev/null; then log "ejabberd $pid ignored TERM: killing"; kill -KILL "$pid"; fi
	rm -f "$dir/ejabberd.pid"
	log "ejabberd stopped ($dir)"
}

cmd_status() {
	local dir; dir=$(abs_dir "$1")
	local pid; pid=$(pid_of "$dir")
	if [ -n "$pid" ]; then echo "running (pid $pid)"; else echo "stopped"; return 3; fi
}

cmd_register() {
	local dir; dir=$(abs_dir "$1")
	# A cluster: register on node 1; Mnesia shares the user with node 2.
	[ -f "$dir/node1/ejabberdctl.cfg" ] && dir="$dir/node1"
	[ -f "$dir/ejabberdctl.cfg" ] || die "no $dir/ejabberdctl.cfg: run '$0 start $dir' first"
	local XMPP_DOMAIN=localhost
	# shellcheck disable=SC1091
	[ -f "$dir/env" ] && source "$dir/env"
	ctl "$dir" register "$2" "${XMPP_DOMAIN:-localhost}" "$3"
}

# --- A two-node cluster under DIR (DIR/node1, DIR/node2) ---------------------

CLUSTER_IPS=(127.0.0.1 127.0.0.2)

node_dir() { echo "$1/node$2"; } # DIR N

# cluster_settings DIR: the cluster's settings, from the environment on first
# start and from DIR/env afterwards (as for one node), written to DIR/env;
# each node's own start then gets them explicitly.
cluster_settings() {
	local dir=$1
	if [ -f "$dir/env" ] && [ -z "${C2S_PORT:-}${COMPONENT_PORT:-}" ]; then
		# shellcheck disable=SC1091
		source "$dir/env"
	fi
	C2S_PORT=${C2S_PORT:-15222} COMPONENT_PORT=${COMPONENT_PORT:-15347}
	EJABBERD_DIST_PORT=${EJABBERD_DIST_PORT:-$((COMPONENT_PORT + 1))}
	cat >"$dir/env" <<ENV
C2S_PORT=$C2S_PORT
COMPONENT_PORT=$COMPONENT_PORT
COMPONENT_JID=${COMPONENT_JID:-chat.localhost}
COMPONENT_SECRET=${COMPONENT_SECRET:-s3cret}
EJABBERD_LOG_LEVEL=${EJABBERD_LOG_LEVEL:-info}
XMPP_DOMAIN=${XMPP_DOMAIN:-localhost}
EJABBERD_DIST_PORT=$EJABBERD_DIST_PORT
EXTRA_MODULES="${EXTRA_MODULES:-}"
DOMAIN_BALANCING=${DOMAIN_BALANCING:-}
COMPONENT_NUMBER=${COMPONENT_NUMBER:-}
S2S_ADDR=${S2S_ADDR:-}
HOSTS_FILE=${HOSTS_FILE:-}
ENV
	chmod 640 "$dir/env"
}

cluster_start_node() { # DIR N: node N with the cluster's settings
	local dir=$1 n=$2 ip=${CLUSTER_IPS[$(($2 - 1))]}
	(
		set -a
		# shellcheck disable=SC1091
		source "$dir/env"
		EJABBERD_IP=$ip EJABBERD_NODE="tidemark$n@$ip"
		# Federation: each node listens for s2s on its own address.
		[ -z "${S2S_ADDR:-}" ] || S2S_ADDR=$ip
		set +a
		cmd_start "$(node_dir "$dir" "$n")"
	)
}

cmd_cluster_start() {
	local dir n; dir=$(abs_dir "$1")
	ensure_ejabberd
	quiet_system_ejabberd
	cluster_settings "$dir"
	# 127.0.0.2 is loopback on Linux without any set-up; check it anyway.
	(exec 3<>/dev/udp/127.0.0.2/9) 2>/dev/null || die "127.0.0.2 is not usable here"
	# One cookie for both nodes, copied in before a node's first start.
	[ -f "$dir/cookie" ] || head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$dir/cookie"
	chmod 600 "$dir/cookie"
	for n in 1 2; do
		mkdir -p "$(node_dir "$dir" "$n")"
		cp "$dir/cookie" "$(node_dir "$dir" "$n")/cookie"
	done
	chown ejabberd:ejabberd "$dir"
	# Node 1 first: at a restart it has the latest tables (it stopped last).
	cluster_start_node "$dir" 1
	cluster_start_node "$dir" 2
	local n2; n2=$(node_dir "$dir" 2)
	if [ ! -f "$n2/joined" ]; then
		log "node 2 joins node 1's cluster"
		ctl "$n2" join_cluster tidemark1@127.0.0.1
		# join_cluster restarts ejabberd inside node 2: wait for its listeners.
		sleep 1
		if ! wait_port "$C2S_PORT" 60 127.0.0.2 || ! wait_port "$COMPONENT_PORT" 10 127.0.0.2; then
			die "node 2 did not come back after join_cluster (see $n2/logs)"
		fi
		touch "$n2/joined"
	fi
	local nodes; nodes=$(ctl "$(node_dir "$dir" 1)" list_cluster | tr -d "'" | sort | tr '\n' ' ')
	[ "$nodes" = "tidemark1@127.0.0.1 tidemark2@127.0.0.2 " ] \
		|| die "the cluster is not whole: node 1 sees: $nodes"
	log "ejabberd cluster running in $dir: $nodes"
}

cmd_cluster_stop() {
	local dir n pid; dir=$(abs_dir "$1")
	# Node 2 first, so that node 1 stops last (see the header).
	for n in 2 1; do
		[ -d "$(node_dir "$dir" "$n")" ] && cmd_stop "$(node_dir "$dir" "$n")"
	done
	# Nothing of this cluster may outlive it: a beam still naming one of its
	# directories (a ctl call left hanging, a node whose pid file was lost).
	for pid in $(pgrep -f "beam.*$dir/node[12]/" || true); do
		log "killing a stray beam process $pid of $dir"; kill -KILL "$pid" 2>/dev/null || true
	done
	return 0
}

cmd_cluster_status() {
	local dir n rc=0; dir=$(abs_dir "$1")
	for n in 1 2; do
		printf 'node %s (%s): ' "$n" "${CLUSTER_IPS[$((n - 1))]}"
		cmd_status "$(node_dir "$dir" "$n")" || rc=3
	done
	if [ $rc = 0 ]; then printf 'cluster: '; ctl "$(node_dir "$dir" 1)" list_cluster | tr -d "'" | sort | tr '\n' ' '; echo; fi
	return $rc
}

[ $# -ge 1 ] || usage
case "$1" in
	install) ensure_ejabberd; quiet_system_ejabberd ;;
	start) [ $# -eq 2 ] || usage; cmd_start "$2" ;;
	stop) [ $# -eq 2 ] || usage; cmd_stop "$2" ;;
	restart) [ $# -eq 2 ] || usage; cmd_stop "$2"; cmd_start "$2" ;;
	status) [ $# -eq 2 ] || usage; cmd_status "$2" ;;
	register) [ $# -eq 4 ] || usage; cmd_register "$2" "$3" "$4" ;;
	cluster-start) [ $# -eq 2 ] || usage; cmd_cluster_start "$2" ;;
	cluster-stop) [ $# -eq 2 ] || usage; cmd_cluster_stop "$2" ;;
	cluster-restart) [ $# -eq 2 ] || usage; cmd_cluster_stop "$2"; cmd_cluster_start "$2" ;;
	cluster-status) [ $# -eq 2 ] || usage; cmd_cluster_status "$2" ;;
	*) usage ;;
esac
