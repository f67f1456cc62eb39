#!/usr/bin/env bash
# Makes the development certificates of the TLS component link (issue 12):
#
#   component-ca.crt          a CA of our own: what tidemark's component.ca_file names
#   component-server.pem      the server's certificate for 127.0.0.1 and localhost,
#                             signed by that CA, followed by its key (ejabberd's
#                             certfile; Prosody takes the same file as certificate
#                             and key)
#   other-ca.crt              another CA, trusted by nobody here
#   other-server.pem          a certificate for the same names signed by other-ca:
#                             what a server tidemark must refuse presents
#
# The keys are public (committed): never use any of this outside tests. The
# CAs' keys are thrown away, so nothing more can be signed with them; run
# this again to make a new set (the tests use whatever is here).
set -euo pipefail
cd "$(dirname "$0")"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
days=3650

ca() { # NAME CN
	openssl req -x509 -newkey rsa:2048 -nodes -days "$days" -subj "/CN=$2" \
		-addext "basicConstraints=critical,CA:TRUE" \
		-addext "keyUsage=critical,keyCertSign,cRLSign" \
		-keyout "$work/$1.key" -out "$1.crt" 2>/dev/null
}

server() { # NAME CA
	openssl req -newkey rsa:2048 -nodes -subj "/CN=localhost" \
		-keyout "$work/$1.key" -out "$work/$1.csr" 2>/dev/null
	cat >"$work/$1.ext" <<EXT
basicConstraints=critical,CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=serverAuth
subjectAltName=DNS:localhost,IP:127.0.0.1
EXT
	openssl x509 -req -in "$work/$1.csr" -CA "$2.crt" -CAkey "$work/$2.key" -CAcreateserial -CAserial "$work/$2.srl" \
		-days "$days" -extfile "$work/$1.ext" -out "$work/$1.crt" 2>/dev/null
	cat "$work/$1.crt" "$work/$1.key" >"$1.pem"
	chmod 644 "$1.pem"
}

ca component-ca "tidemark development component CA"
server component-server component-ca
ca other-ca "tidemark development other CA (untrusted)"
server other-server other-ca
openssl verify -CAfile component-ca.crt component-server.pem >/dev/null
! openssl verify -CAfile component-ca.crt other-server.pem >/dev/null 2>&1
echo "made component-ca.crt, component-server.pem, other-ca.crt, other-server.pem in $(pwd)"
