# t_ca_rotate.sh HSMESH - rotating the CA without a dropped call (issue 16, item 3).
#
# A mesh on loopback (CA, one agent with identities a and b, the app behind
# sidecar b, sidecar a in front, 6 s SVIDs, TLS tickets off so that every
# call through the pair is a full handshake). A client makes one request
# every 50 ms through the pair while the CA goes through `ca rotate
# prepare`, `activate` and `retire` (each also tried too early, with
# --dry-run and twice); not one request may fail. Checked along the way:
# the bundles carry the old and the new CA, SVIDs move to the new CA, the
# CA's /metrics and the audit log show each step.
. "$(dirname "$0")/lib.sh"

ME=$(id -u)
IDA=spiffe://example.org/a
IDB=spiffe://example.org/b
diag() { for f in "$@"; do echo "# --- $f"; tail -n 15 "$f" 2>/dev/null | sed 's/^/#   /'; done; }

new_token ca
printf '1234\n' >"$T/ca.pin"
write_ca_yaml "$T/ca.yaml" ca "$T/ca.pin" "audit_log: $T/ca/audit.log" "metrics:" "  listen: 127.0.0.1:0"
yaml_set "$T/ca.yaml" svid_ttl 6s
quiet "$HSMESH" ca init -c "$T/ca.yaml"
ROOT1=$T/ca/root.pem

# start_ca: ca serve on $CAPORT once known (the agents keep their URL); MPORT its metrics
start_ca() {
	: >"$T/ca.log"
	"$HSMESH" ca serve -c "$T/ca.yaml" --port-file "$T/ca.port" 2>>"$T/ca.log" &
	CA=$!; track $CA
	wait_in "$T/ca.log" "metrics at" 10
	MPORT=$(sed -n 's|.*metrics at http://127.0.0.1:\([0-9]*\)/metrics.*|\1|p' "$T/ca.log" | head -n 1)
	CAPORT=$(cat "$T/ca.port" 2>/dev/null)
}
restart_ca() { kill "$CA"; wait "$CA" 2>/dev/null; start_ca; }
metric() { curl -s --max-time 5 "http://127.0.0.1:$MPORT/metrics" | awk -v k="$1" '$1 == k { print $2 }'; }
start_ca
sed -i "s|^listen:.*|listen: 127.0.0.1:$CAPORT|" "$T/ca.yaml"
check "ca serve: a fresh CA is generation 0 in /metrics" test "$(metric hsmesh_ca_active_generation)" = 0

new_token node
printf '1234\n' >"$T/node.pin"
for w in a b; do "$HSMESH" ca token -c "$T/ca.yaml" --id "spiffe://example.org/$w" >"$T/$w.join"; done
cat >"$T/agent.yaml" <<EOF
token:
  module: $SOFTHSM_MODULE
  uri: "pkcs11:token=node"
  pin_file: $T/node.pin
ca:
  url: http://127.0.0.1:$CAPORT/.well-known/cmp
  root: $ROOT1
state_dir: $T/state
socket: $T/agent.sock
retry:
  min: 1s
  max: 2s
workloads:
  - id: $IDA
    uid: $ME
    join_token_file: $T/a.join
  - id: $IDB
    uid: $ME
    join_token_file: $T/b.join
EOF
"$HSMESH" agent -c "$T/agent.yaml" 2>>"$T/agent.log" &
AGENT=$!; track $AGENT
both() { wait_log "$IDA: enrolled" 30 && wait_log "$IDB: enrolled" 30; }
check "agent: a and b enrolled" both || diag "$T/agent.log" "$T/ca.log"

"$HSMESH" app serve --listen 127.0.0.1:0 --name b --port-file "$T/app.port" 2>"$T/app.log" &
track $!
for _ in $(seq 100); do [ -s "$T/app.port" ] && break; sleep 0.05; done
port() { awk -v n="$1" '$1 == n { print $2 }' "$2" 2>/dev/null; }
cat >"$T/b.yaml" <<EOF
agent:
  socket: $T/agent.sock
  id: $IDB
workers: 1
tls:
  tickets: false
inbound:
  - name: web
    listen: 127.0.0.1:0
    forward_to: 127.0.0.1:$(cat "$T/app.port")
    allow:
      - $IDA
EOF
"$HSMESH" proxy -c "$T/b.yaml" --ports-file "$T/b.ports" 2>"$T/b.log" &
track $!
check "proxy b: ready" wait_log "ready: serving $IDB" 15 "$T/b.log"
BPORT=$(port web "$T/b.ports")
cat >"$T/a.yaml" <<EOF
agent:
  socket: $T/agent.sock
  id: $IDA
workers: 1
tls:
  tickets: false
inbound: []
outbound:
  - name: to-b
    listen: 127.0.0.1:0
    connect: 127.0.0.1:$BPORT
    expect_id: $IDB
EOF
"$HSMESH" proxy -c "$T/a.yaml" --ports-file "$T/a.ports" 2>"$T/a.log" &
track $!
check "proxy a: ready" wait_log "ready: serving $IDA" 15 "$T/a.log"
APORT=$(port to-b "$T/a.ports")

# ---- the client: one request every 50 ms, each a new connection, for at most 90 s ----------
: >"$T/calls"
(
	end=$(($(date +%s) + 90))
	while [ ! -e "$T/stop" ] && [ "$(date +%s)" -lt "$end" ]; do
		if [ "$(curl -s --max-time 5 "http://127.0.0.1:$APORT/")" = "hello from b" ]; then
			echo ok >>"$T/calls"
		else
			echo "fail $(date +%T.%N)" >>"$T/calls"
		fi
		sleep 0.05
	done
) &
CLIENT=$!; track $CLIENT

rot() { "$HSMESH" ca rotate "$@" -c "$T/ca.yaml"; }
bundle_n() { # bundle_n ID: CA certificates in the bundle the agent hands out for ID
	rm -f "$T/bundle.pem"
	"$HSMESH" agent client --socket "$T/agent.sock" get "$1" --bundle "$T/bundle.pem" >/dev/null 2>&1
	grep -c 'BEGIN CERT' "$T/bundle.pem" 2>/dev/null || echo 0
}
wait_for() { _s=$1; shift; _i=0; while ! "$@" && [ "$_i" -lt $((_s * 10)) ]; do sleep 0.1; _i=$((_i + 1)); done; "$@"; }

# ---- prepare ------------------------------------------------------------------------------
refuse "activate before anything was prepared" "no prepared CA" rot activate
check "prepare --dry-run says what it would do" sh -c '"$1" ca rotate prepare --dry-run -c "$2" | grep -q "would generate the key"' x "$HSMESH" "$T/ca.yaml"
check "... and changed nothing" sh -c '"$1" ca rotate status -c "$2" | grep -q "not rotated yet"' x "$HSMESH" "$T/ca.yaml"
check "prepare" sh -c '"$1" ca rotate prepare -c "$2" >"$3/prep.out" && grep -q "CA 2 prepared" "$3/prep.out"' x "$HSMESH" "$T/ca.yaml" "$T" || cat "$T/prep.out"
check "prepare again: nothing to do" sh -c '"$1" ca rotate prepare -c "$2" | grep -q "prepared already"' x "$HSMESH" "$T/ca.yaml"
check "status: CA 1 active, CA 2 prepared" sh -c 's=$("$1" ca rotate status -c "$2"); echo "$s" | grep -q "CA 1  active" && echo "$s" | grep -q "CA 2  prepared"' x "$HSMESH" "$T/ca.yaml"
refuse "activate too early" "CA 2 was prepared [0-9]+ s ago.*activate after" rot activate
restart_ca
check "/metrics: two CAs in the bundle, generation 1 active" \
    test "$(metric hsmesh_ca_bundle_cas) $(metric hsmesh_ca_active_generation)" = "2 1"
bundle_is() { test "$(bundle_n "$1")" -eq "$2"; }
check "the agent learns CA 2 from a signed answer and hands both CAs to the sidecars" wait_for 15 bundle_is "$IDB" 2 || diag "$T/agent.log"
check "... to a's sidecar too" wait_for 15 bundle_is "$IDA" 2

# ---- activate -----------------------------------------------------------------------------
wait_for 10 sh -c '"$1" ca rotate activate --dry-run -c "$2" >/dev/null 2>&1' x "$HSMESH" "$T/ca.yaml"
check "activate --dry-run" sh -c '"$1" ca rotate activate --dry-run -c "$2" | grep -q "would activate CA 2"' x "$HSMESH" "$T/ca.yaml"
check "activate" sh -c '"$1" ca rotate activate -c "$2" | grep -q "CA 2 active"' x "$HSMESH" "$T/ca.yaml"
check "activate again: nothing to do" sh -c '"$1" ca rotate activate -c "$2" | grep -q "active already"' x "$HSMESH" "$T/ca.yaml"
T_ACT=$(date +%s)
# CA 1 issued a certificate to each identity within the last half-life (3 s): they live on
refuse "retire while CA 1's certificates live" "CA 1 issued [0-9]+ certificates? that ha(s|ve) not expired.*retire after" rot retire
restart_ca
check "/metrics: generation 2 active" test "$(metric hsmesh_ca_active_generation)" = 2
# moved_on ID: the SVID the agent hands out for ID no longer chains to CA 1, and
# verifies against the bundle (CA 1 and CA 2)
moved_on() {
	"$HSMESH" agent client --socket "$T/agent.sock" get "$1" --bundle "$T/mb.pem" >"$T/cur.pem" 2>/dev/null &&
	    ! openssl verify -CAfile "$ROOT1" "$T/cur.pem" >/dev/null 2>&1 &&
	    openssl verify -CAfile "$T/mb.pem" "$T/cur.pem" >/dev/null 2>&1
}
check "a's SVID moves to CA 2" wait_for 15 moved_on "$IDA" || diag "$T/agent.log" "$T/ca.log"
check "b's SVID moves to CA 2" wait_for 15 moved_on "$IDB"

# ---- retire -------------------------------------------------------------------------------
# CA 1's last certificate expires at most svid_ttl after activation (plus the clock's second)
while [ "$(date +%s)" -le $((T_ACT + 7)) ]; do sleep 0.2; done
check "retire --dry-run" sh -c '"$1" ca rotate retire --dry-run -c "$2" | grep -q "would retire CA 1"' x "$HSMESH" "$T/ca.yaml"
check "retire" sh -c '"$1" ca rotate retire -c "$2" | grep -q "CA 1 retired"' x "$HSMESH" "$T/ca.yaml"
check "retire again: nothing to do" sh -c '"$1" ca rotate retire -c "$2" | grep -q "nothing to retire"' x "$HSMESH" "$T/ca.yaml"
restart_ca
check "/metrics: one CA in the bundle" test "$(metric hsmesh_ca_bundle_cas)" = 1
sleep 4	# a renewal of each identity with CA 2 alone, under traffic
touch "$T/stop"
wait "$CLIENT" 2>/dev/null
OKS=$(grep -c '^ok' "$T/calls"); FAILS=$(grep -c '^fail' "$T/calls")
check "no request failed across prepare, activate and retire ($OKS ok, $FAILS failed)" test "$FAILS" -eq 0 -a "$OKS" -gt 50 ||
    { grep '^fail' "$T/calls" | head -5 | sed 's/^/#   /'; diag "$T/a.log" "$T/b.log"; }
check "audit: ca_recorded, ca_prepared, ca_activated, ca_retired" sh -c '
	for e in ca_recorded ca_prepared ca_activated ca_retired; do grep -q "\"$e\"" "$1" || exit 1; done' x "$T/ca/audit.log"
check "the new key is in the token, not extractable" sh -c 'p11_privkeys() { pkcs11-tool --module "$1" --token-label ca --login --pin 1234 --list-objects --type privkey 2>/dev/null; }
	p11_privkeys "$1" | grep -q "hsmesh-ca.g2"' x "$SOFTHSM_MODULE"

done_testing
