#!/bin/sh
# ASAN=yes
# t_revoke.sh HSMESH - revocation that reaches the data plane (docs/LIFECYCLE.md,
# "Revocation"; docs/PROXY.md, docs/AGENT.md, docs/CA.md).
#
# A real CA (`ca serve` publishing its CRL), one agent with a node identity
# and two node-managed workloads (a, b) from registration entries, the
# built-in app behind proxy B (inbound, allows a) and proxy A (outbound to
# B). Covered: every issued certificate names a CRL URL that serves a CRL
# `openssl crl -verify` accepts; `ca revoke` of a's live certificate and of
# a file-key certificate of a: the CRL lists both serials, `openssl
# s_client` holding the revoked file key is refused by proxy B within the
# documented bound (the agent's node.refresh hint plus one CRL fetch),
# the established connection of the revoked peer is closed (metrics, log
# reason), the agent takes a's certificate out of service and enrolls it
# again with a new key under its node's certificate, and a -> b works again
# with the new certificate.
. "$(dirname "$0")/lib.sh"

ME=$(id -u)
NODE=spiffe://example.org/node/n1
IDA=spiffe://example.org/a
IDB=spiffe://example.org/b
BOUND=15	# node.refresh 2 s + a CRL fetch (at most 10 s) + the push: docs/LIFECYCLE.md

diag() { for f in "$@"; do echo "# --- $f"; tail -n 15 "$f" 2>/dev/null | sed 's/^/#   /'; done; }
wait_in_log() { # FILE PATTERN SECS
	_i=0
	while ! grep -qiE "$2" "$1" 2>/dev/null && [ "$_i" -lt $(($3 * 10)) ]; do sleep 0.1; _i=$((_i + 1)); done
	grep -qiE "$2" "$1" 2>/dev/null
}
port() { awk -v n="$1" '$1 == n { print $2 }' "$2" 2>/dev/null; }
metric() { awk -v k="$2" '$1 == k { print $2 }' "$1"; }
serial_of() { openssl x509 -in "$1" -noout -serial | cut -d= -f2 | tr 'A-F' 'a-f' | sed 's/^0*//'; }
cdp_of() { openssl x509 -in "$1" -noout -ext crlDistributionPoints 2>/dev/null | sed -n 's/^ *URI://p' | head -n 1; }

# ---- CA, entries, agent --------------------------------------------------------------
new_token ca
new_token node
printf '1234\n' >"$T/pin"
write_ca_yaml "$T/ca.yaml" ca "$T/pin" "crl:" "  next_update: 5m"
Y=$T/ca.yaml
quiet "$HSMESH" ca init -c "$Y" 2>"$T/ca-init.err" || { not_ok "ca init"; diag "$T/ca-init.err"; done_testing; exit 1; }
ROOT=$T/ca/root.pem
"$HSMESH" ca serve -c "$Y" --port-file "$T/ca.port" 2>"$T/ca.log" &
CA=$!; track $CA
for _ in $(seq 200); do [ -s "$T/ca.port" ] && break; sleep 0.05; done
CAPORT=$(cat "$T/ca.port" 2>/dev/null)
check "ca serve listens (port ${CAPORT:-none}) and publishes its CRL" wait_in_log "$T/ca.log" "serving the CRL at http://127.0.0.1:$CAPORT/crl" 5
quiet "$HSMESH" ca entry add -c "$Y" --node "$NODE" --id "$IDA" --selector "uid:$ME"
quiet "$HSMESH" ca entry add -c "$Y" --node "$NODE" --id "$IDB" --selector "uid:$ME"
"$HSMESH" ca token -c "$Y" --node --id "$NODE" >"$T/node.join"

cat >"$T/agent.yaml" <<EOF
token:
  module: $SOFTHSM_MODULE
  uri: "pkcs11:token=node"
  pin_file: $T/pin
ca:
  url: http://127.0.0.1:$CAPORT/.well-known/cmp
  root: $ROOT
state_dir: $T/state
socket: $T/agent.sock
retry:
  min: 1s
  max: 2s
node:
  id: $NODE
  join_token_file: $T/node.join
  refresh: 2s
crl:
  refresh: 30s
EOF
AL=$T/agent.log
"$HSMESH" agent -c "$T/agent.yaml" 2>"$AL" &
AGENT=$!; track $AGENT
check "agent: a and b enrolled under the node's certificate" sh -c '
	for i in $(seq 300); do grep -q "$2: enrolled" "$1" && grep -q "$3: enrolled" "$1" && exit 0; sleep 0.1; done; exit 1' \
    x "$AL" "$IDA" "$IDB" || diag "$AL" "$T/ca.log"
check "agent: holds the CA's CRL (0 revoked)" wait_in_log "$AL" "CRL [0-9]+ from http://127.0.0.1:$CAPORT/crl: 0 revoked" 10

# ---- every certificate names a CRL that verifies -------------------------------------
openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$T/fa.key" -subj /CN=a \
    -out "$T/fa.csr" 2>/dev/null
"$HSMESH" ca issue -c "$Y" --csr "$T/fa.csr" --id "$IDA" --ttl 1h >"$T/fa.pem" 2>"$T/issue.err"
CA_A=$T/state/example.org+a/cert.pem
CA_B=$T/state/example.org+b/cert.pem
CA_N=$(ls "$T"/state/*node*/cert.pem 2>/dev/null | head -n 1)
for c in "$CA_N" "$CA_A" "$CA_B" "$T/fa.pem"; do
	u=$(cdp_of "$c")
	check "$(basename "$(dirname "$c")")/$(basename "$c"): cRLDistributionPoints names ${u:-nothing}" \
	    test "$u" = "http://127.0.0.1:$CAPORT/crl"
	check "... whose CRL openssl crl -verify accepts" sh -c '
	    curl -sf --max-time 5 "$1" -o "$2" && openssl crl -inform DER -in "$2" -CAfile "$3" -noout 2>&1 | grep -q "verify OK"' \
	    x "$u" "$T/crl.der" "$ROOT"
done

# ---- the mesh --------------------------------------------------------------------------
"$HSMESH" app serve --listen 127.0.0.1:0 --name b --port-file "$T/app.port" 2>"$T/app.log" &
APP=$!; track $APP
for _ in $(seq 100); do [ -s "$T/app.port" ] && break; sleep 0.05; done
cat >"$T/b.yaml" <<EOF
agent:
  socket: $T/agent.sock
  id: $IDB
workers: 2
inbound:
  - name: web
    listen: 127.0.0.1:0
    forward_to: 127.0.0.1:$(cat "$T/app.port")
    allow:
      - $IDA
metrics:
  listen: 127.0.0.1:0
access_log: $T/b-access.log
EOF
"$HSMESH" proxy -c "$T/b.yaml" --ports-file "$T/b.ports" 2>"$T/b.log" &
PB=$!; track $PB
check "proxy b: ready" wait_in_log "$T/b.log" "ready: serving $IDB" 15
BPORT=$(port web "$T/b.ports"); BMET=$(port metrics "$T/b.ports")
cat >"$T/a.yaml" <<EOF
agent:
  socket: $T/agent.sock
  id: $IDA
workers: 1
inbound: []
outbound:
  - name: to-b
    listen: 127.0.0.1:0
    connect: 127.0.0.1:$BPORT
    expect_id: $IDB
EOF
"$HSMESH" proxy -c "$T/a.yaml" --ports-file "$T/a.ports" 2>"$T/a.log" &
PA=$!; track $PA
check "proxy a: ready" wait_in_log "$T/a.log" "ready: serving $IDA" 15
APORT=$(port to-b "$T/a.ports")
check "proxy b: holds the CRL from the agent" wait_in_log "$T/b.log" "CRL [0-9]+: 0 revoked certificates" 5 || diag "$T/b.log"
check "a -> b over mTLS reaches b's app" \
    sh -c 'test "$(curl -s --max-time 10 "http://127.0.0.1:$1/")" = "hello from b"' x "$APORT"
sclient() { # s_client to b with the file-key certificate of a, for at most $1 s
	timeout "$1" openssl s_client -connect "127.0.0.1:$BPORT" -cert "$T/fa.pem" -key "$T/fa.key" \
	    -CAfile "$ROOT" -quiet 2>&1
}
# accepted: the handshake verifies and b's app answers the request line with an HTTP error
handshake_ok() { echo | sclient 5 2>&1 | grep -q "^HTTP/1.1 400"; }
check "openssl s_client with a's file-key certificate is accepted before revocation" handshake_ok

# an established connection of a through a's sidecar, and one of the file key, both held open
curl -s --max-time 30 "http://127.0.0.1:$APORT/slow?ms=25000" >"$T/slow.out" 2>&1 &
SLOW=$!; track $SLOW
timeout 30 openssl s_client -connect "127.0.0.1:$BPORT" -cert "$T/fa.pem" -key "$T/fa.key" \
    -CAfile "$ROOT" -quiet </dev/null >"$T/held.out" 2>&1 &
HELD=$!; track $HELD
sleep 1

# ---- ca revoke -------------------------------------------------------------------------
SA=$(serial_of "$CA_A"); SF=$(serial_of "$T/fa.pem")
KA=$(sed -n "s|.*$IDA: enrolled certificate serial [0-9a-fA-F]* (key \([0-9a-f]*\)).*|\1|p" "$AL" | tail -n 1)
T0=$(date +%s)
check "ca revoke --serial $SA (a's live certificate, key in the node's token)" quiet "$HSMESH" ca revoke -c "$Y" --serial "$SA"
check "ca revoke --serial $SF (a's file-key certificate)" quiet "$HSMESH" ca revoke -c "$Y" --serial "$SF"
refused_within() {
	while [ $(($(date +%s) - T0)) -le "$BOUND" ]; do
		sclient 2 </dev/null | grep -q "certificate revoked" && return 0
		sleep 0.3
	done
	return 1
}
check "s_client holding the revoked key is refused by proxy b (alert certificate revoked) within $BOUND s" refused_within ||
    diag "$T/b.log" "$AL"
ok "# revocation reached proxy b in $(($(date +%s) - T0)) s (bound $BOUND s)"
check "proxy b logs the refusal with its reason" wait_in_log "$T/b.log" "refused: cert_revoked: peer .*certificate serial" 5
check "proxy b closed a's established connections (revocation.close_established)" \
    wait_in_log "$T/b.log" "closed [0-9]+ established connections? of revoked peers" 5
check "... the file-key one: its s_client read the end" wait_in_log "$T/held.out" "unexpected eof|closed|errno" 5 ||
    diag "$T/held.out"
check "access log: the closed connection, reason cert_revoked" \
    grep -q '"decision":"allow","reason":"cert_revoked","detail":"peer spiffe://example.org/a certificate serial [0-9a-f]* is revoked.*established connection closed' "$T/b-access.log"
slow_ended() { gone "$SLOW" 5 && ! grep -q slow "$T/slow.out"; }
check "... and a's request through its own sidecar, held open: ended without its answer" slow_ended
curl -s --max-time 5 "http://127.0.0.1:$BMET/metrics" >"$T/b.metrics"
v=$(metric "$T/b.metrics" 'hsmesh_proxy_revoked_connections_closed_total')
check "metrics: both revoked connections closed ($v)" test "${v:-0}" -ge 2
v=$(metric "$T/b.metrics" 'hsmesh_proxy_handshake_failures_total{listener="web",reason="cert_revoked"}')
check "metrics: handshakes refused as cert_revoked ($v)" test "${v:-0}" -ge 1
check "metrics: the CRL's number and nextUpdate" sh -c 'grep -q "^hsmesh_proxy_crl_number [1-9]" "$1" &&
    grep -q "^hsmesh_proxy_crl_next_update_timestamp_seconds [1-9]" "$1"' x "$T/b.metrics"
check "access log: the refusal with reason cert_revoked" grep -q '"reason":"cert_revoked"' "$T/b-access.log"

# ---- the CRL and the agent ---------------------------------------------------------------
curl -sf --max-time 5 "http://127.0.0.1:$CAPORT/crl" -o "$T/crl2.der"
openssl crl -inform DER -in "$T/crl2.der" -CAfile "$ROOT" -noout -text >"$T/crl2.txt" 2>&1
check "the CRL verifies (openssl crl -verify)" grep -q "verify OK" "$T/crl2.txt"
for s in "$SA" "$SF"; do
	check "... and lists serial $s" grep -qi "Serial Number: 0*$s\$" "$T/crl2.txt"
done
check "the agent takes a's revoked certificate out of service" \
    wait_in_log "$AL" "$IDA: certificate serial 0*$SA REVOKED .*enrolling again with a new key, protected by the node's certificate" 5 ||
    diag "$AL"
check "... and enrolls a again with a new key under the node's certificate" \
    wait_in_log "$AL" "$IDA: re-enrolled after revocation: certificate serial 0*$SA -> [0-9A-F]+ \\(key $KA -> [0-9a-f]+; the old key destroyed now, no grace\\)" 20 ||
    diag "$AL"
check "... and destroys the revoked certificate's key in the token" \
    wait_in_log "$AL" "destroyed retired key $KA" 5
SA2=$(serial_of "$CA_A")
check "... a new certificate ($SA2), not listed" test "$SA2" != "$SA"
check "proxy a rotates to it" wait_in_log "$T/a.log" "rotated: new handshakes use certificate serial" 10
check "a -> b works again with the new certificate" sh -c '
	for i in $(seq 50); do test "$(curl -s --max-time 5 "http://127.0.0.1:$1/")" = "hello from b" && exit 0; sleep 0.2; done; exit 1' x "$APORT"
NPUSH=$(grep -c "pushed the new CRL" "$AL")
kill -HUP "$AGENT"
check "SIGHUP makes the agent fetch the CRL now" wait_in_log "$AL" "fetching the CRL now \(SIGHUP\)" 5
sleep 1
check "... and it stays up; the same CRL is not pushed again" \
    sh -c 'kill -0 "$1" && test "$(grep -c "pushed the new CRL" "$2")" -eq "$3"' x "$AGENT" "$AL" "$NPUSH"

# ---- revocation.stale: a sidecar whose agent has no CRL ----------------------------------
# A second agent (its own token) whose CRL URL answers nothing, serving a self-managed c.
new_token node2
IDC=spiffe://example.org/c
"$HSMESH" ca token -c "$Y" --id "$IDC" >"$T/c.join"
sed -e "s|token=node\"|token=node2\"|; s|$T/state|$T/state2|; s|$T/agent.sock|$T/agent2.sock|" \
    -e '/^node:/,/^  refresh:/d; s|^  refresh: 30s|  url: http://127.0.0.1:1/crl|' "$T/agent.yaml" >"$T/agent2.yaml"
printf 'workloads:\n  - id: %s\n    uid: %s\n    join_token_file: %s\n' "$IDC" "$ME" "$T/c.join" >>"$T/agent2.yaml"
"$HSMESH" agent -c "$T/agent2.yaml" 2>"$T/agent2.log" &
A2=$!; track $A2
sed -e "s|$T/agent.sock|$T/agent2.sock|; s|id: $IDB|id: $IDC|; s|^access_log:.*|revocation:\n  stale: refuse|" \
    -e '/^metrics:/,/^  listen:/d' "$T/b.yaml" >"$T/c.yaml"
"$HSMESH" proxy -c "$T/c.yaml" --ports-file "$T/c.ports" 2>"$T/c.log" &
PC=$!; track $PC
check "proxy c (revocation.stale: refuse, its agent holds no CRL): ready" wait_in_log "$T/c.log" "ready: serving $IDC" 30 ||
    diag "$T/agent2.log" "$T/c.log"
openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$T/fa2.key" -subj /CN=a \
    -out "$T/fa2.csr" 2>/dev/null
"$HSMESH" ca issue -c "$Y" --csr "$T/fa2.csr" --id "$IDA" --ttl 1h >"$T/fa2.pem" 2>>"$T/issue.err"
to_c() { echo | timeout 5 openssl s_client -connect "127.0.0.1:$(port web "$T/c.ports")" -cert "$T/fa2.pem" \
    -key "$T/fa2.key" -CAfile "$ROOT" -quiet 2>&1; }
check "... refuses an allowed, unrevoked peer: no CRL to check it against" sh -c '! echo "$1" | grep -q "^HTTP/1.1"' x "$(to_c)"
check "... with reason crl_unavailable" wait_in_log "$T/c.log" "refused: crl_unavailable: no current CRL" 5
sed -i 's|  stale: refuse|  stale: keep|' "$T/c.yaml"
kill -HUP "$PC"
wait_in_log "$T/c.log" "reload" 5
check "after SIGHUP with revocation.stale: keep, the same peer is accepted" sh -c 'echo "$1" | grep -q "^HTTP/1.1 400"' x "$(to_c)"  || diag "$T/c.log" "$T/c.yaml"

done_testing
