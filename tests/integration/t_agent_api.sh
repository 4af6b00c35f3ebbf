# ASAN=yes
# t_agent_api.sh HSMESH - what a workload's uid can and cannot do to the
# agent's local API (issues 14 and 15), with a real CA (`hsmesh ca serve`)
# and an agent serving two workloads: web (uid 12345, the attacker) and db
# (uid 12346, the victim).
#
#   - The signing oracle (14): tests/tools/sign_attack, run as uid 12345,
#     asks the agent to sign a CMP kur for a key in a file in every way
#     (OpenSSL's CMP client with the agent-backed key, the old digest SIGN,
#     the ProtectedPart, its digest): every one refused, logged with the
#     reason and counted; a TLS 1.3 input still signed.
#   - The connection quota (15): tests/tools/agent_hog, as uid 12345, opens
#     200 connections, keeps half a frame on some: the agent keeps 8
#     (api.max_connections_per_uid), closes the half frames after
#     api.frame_timeout (2 s), and meanwhile uid 12346's GET_SVID and SIGN
#     succeed; the refusal lines in the log stay few, and a summary counts
#     the others.
. "$(dirname "$0")/lib.sh"

WEB=spiffe://example.org/web
DB=spiffe://example.org/db
ATTACKER=12345
VICTIM=12346

if [ "$(id -u)" != 0 ]; then
	ok "# SKIP t_agent_api needs root (workloads of other uids, setpriv)"
	done_testing
	exit 0
fi
as() { _u=$1; shift; setpriv --reuid="$_u" --regid="$_u" --clear-groups "$@"; }
diag() { for f in "$@"; do echo "# --- $f"; tail -n 20 "$f" 2>/dev/null | sed 's/^/#   /'; done; }
ATTACK=$(test_tool sign_attack)
HOG=$(test_tool agent_hog)
if [ ! -x "$ATTACK" ] || [ ! -x "$HOG" ]; then
	not_ok "tests/tools/sign_attack and agent_hog are not built next to $HSMESH (make check-build)"
	done_testing
	exit 1
fi
chmod 711 "$T"		# the workloads' uids reach the socket

# ---- a CA and an agent with two workloads ------------------------------------------------
new_token ca
printf '1234\n' >"$T/ca.pin"
write_ca_yaml "$T/ca.yaml" ca "$T/ca.pin"
"$HSMESH" ca init -c "$T/ca.yaml" >/dev/null 2>"$T/ca-init.err"
"$HSMESH" ca serve -c "$T/ca.yaml" --port-file "$T/ca.port" 2>"$T/ca.log" &
CA=$!; track $CA
for _ in $(seq 200); do [ -s "$T/ca.port" ] && break; sleep 0.05; done
new_token node
printf '1234\n' >"$T/node.pin"
"$HSMESH" ca token -c "$T/ca.yaml" --id "$WEB" >"$T/web.join"
"$HSMESH" ca token -c "$T/ca.yaml" --id "$DB" >"$T/db.join"
cat >"$T/agent.yaml" <<EOF
token:
  module: $SOFTHSM_MODULE
  uri: "pkcs11:token=node"
  pin_file: $T/node.pin
ca:
  url: http://127.0.0.1:$(cat "$T/ca.port")/.well-known/cmp
  root: $T/ca/root.pem
state_dir: $T/state
socket: $T/agent.sock
workloads:
  - id: $WEB
    uid: $ATTACKER
    join_token_file: $T/web.join
  - id: $DB
    uid: $VICTIM
    join_token_file: $T/db.join
api:
  max_connections_per_uid: 8
  frame_timeout: 2s
metrics:
  listen: 127.0.0.1:0
EOF
S=$T/agent.sock
"$HSMESH" agent -c "$T/agent.yaml" 2>"$T/agent.log" &
AGENT=$!; track $AGENT
enrolled() { wait_log "$DB: enrolled certificate" 20 && wait_log "$WEB: enrolled certificate" 5; }
check "the agent enrolls both workloads" enrolled || diag "$T/agent.log" "$T/ca.log"
check "the agent says its limits" \
    wait_log "local API on $S: at most 1024 clients, 8 per uid \(root not counted\); idle timeout 60s, incomplete frames 2s" 2
MPORT=$(sed -n 's|.*metrics on http://127.0.0.1:\([0-9]*\)/metrics.*|\1|p' "$T/agent.log" | head -n 1)
metric() { curl -s --max-time 5 "http://127.0.0.1:$MPORT/metrics" | sed -n "s/^$1 //p"; }

# ---- the signing oracle (issue 14) -------------------------------------------------------
as "$ATTACKER" "$ATTACK" "$S" "$WEB" >"$T/attack.out" 2>"$T/attack.err"; rc=$?
sed 's/^/# attack: /' "$T/attack.out" "$T/attack.err"
check "attack as uid $ATTACKER: every way to have a CMP kur signed is refused, a TLS input signed (rc $rc)" \
    test "$rc" -eq 0
check "attack: OpenSSL's kur through the agent-backed key: refused, not a TLS input" \
    grep -q "^kur refused: agent: not a TLS handshake signature input: a DER SEQUENCE" "$T/attack.out"
check "attack: the old SIGN of the kur's digest: refused, digest signing is no longer offered" \
    grep -q "^digest refused: digest signing is no longer offered" "$T/attack.out"
check "attack: the ProtectedPart itself: refused as a DER SEQUENCE" \
    grep -q "^der refused: .*not a TLS handshake signature input: a DER SEQUENCE or SET spanning" "$T/attack.out"
check "attack: a raw 32-byte digest: refused" \
    grep -q "^hash refused: .*not a TLS handshake signature input" "$T/attack.out"
check "attack: the control, a TLS 1.3 CertificateVerify input, is signed" grep -qx "tls signed" "$T/attack.out"
check "the agent logs each refusal with uid, ID, reason and a count" \
    wait_log "local client uid $ATTACKER pid [0-9]+: refused to sign for $WEB: not a TLS handshake signature input: .*; refusing to sign \([0-9]+ refused so far\)" 2
check "the agent logs the old SIGN's refusal" \
    wait_log "local client uid $ATTACKER pid [0-9]+: refused to sign for $WEB: digest signing is no longer offered.*\(1 refused so far\)" 1
check "/metrics counts the refusals by reason (not_tls $(metric 'hsmesh_agent_sign_refused_total{reason="not_tls"}'), digest $(metric 'hsmesh_agent_sign_refused_total{reason="digest"}'))" \
    sh -c '[ "$1" -ge 3 ] && [ "$2" -eq 1 ]' x "$(metric 'hsmesh_agent_sign_refused_total{reason="not_tls"}')" \
    "$(metric 'hsmesh_agent_sign_refused_total{reason="digest"}')"
# The keyholder's token sessions (issue 19), asked of it once a second: at rest
# between the default bounds 2..64, at least one open.
for _ in $(seq 50); do [ "$(metric hsmesh_agent_keyholder_sessions_max)" = 64 ] && break; sleep 0.1; done
check "/metrics shows the keyholder's token sessions: $(metric hsmesh_agent_keyholder_sessions) of at most $(metric hsmesh_agent_keyholder_sessions_max), $(metric hsmesh_agent_keyholder_sessions_open) open" \
    sh -c '[ "$1" = 64 ] && [ "$2" -ge 2 ] && [ "$2" -le 64 ] && [ "$3" -ge 1 ] && [ "$3" -le "$2" ]' x \
    "$(metric hsmesh_agent_keyholder_sessions_max)" "$(metric hsmesh_agent_keyholder_sessions)" \
    "$(metric hsmesh_agent_keyholder_sessions_open)"
# The victim's identity is out of the attacker's reach, whatever it sends.
as "$ATTACKER" "$ATTACK" "$S" "$DB" >"$T/attack2.out" 2>&1
check "attack on another uid's ID: refused before anything ($(head -c 120 "$T/attack2.out"))" \
    grep -q "may not use this SPIFFE ID" "$T/attack2.out"

# ---- the connection quota (issue 15) -----------------------------------------------------
tls13_input "$T/data"
as "$ATTACKER" "$HOG" "$S" 200 4 6 >"$T/hog.out" 2>"$T/hog.err" &
HOGPID=$!; track $HOGPID
for _ in $(seq 100); do [ -s "$T/hog.out" ] && break; sleep 0.1; done
HELD=$(head -n 1 "$T/hog.out")
check "uid $ATTACKER opens 200 connections: the agent keeps its quota of 8 ($HELD)" \
    test "$HELD" = "held=8 refused=192"
# Meanwhile (the hog holds its 8, 4 with half a frame) the other uid is served.
as "$VICTIM" "$HSMESH" agent client --socket "$S" get "$DB" >"$T/db.pem" 2>"$T/db.err"
check "meanwhile uid $VICTIM's GET_SVID succeeds ($(head -c 160 "$T/db.err"))" grep -q "BEGIN CERTIFICATE" "$T/db.pem"
as "$VICTIM" "$HSMESH" agent client --socket "$S" sign "$DB" <"$T/data" >"$T/db.sig" 2>"$T/dbsign.err"
openssl x509 -in "$T/db.pem" -pubkey -noout >"$T/db.pub"
check "meanwhile uid $VICTIM's SIGN succeeds and verifies ($(head -c 160 "$T/dbsign.err"))" \
    sh -c 'openssl dgst -sha256 -verify "$1" -signature "$2" "$3" >/dev/null' x "$T/db.pub" "$T/db.sig" "$T/data"
refuse "meanwhile uid $ATTACKER itself gets no ninth connection" "closed the connection" \
    as "$ATTACKER" "$HSMESH" agent client --socket "$S" get "$WEB"
wait "$HOGPID"
LAST=$(sed -n 2p "$T/hog.out")
echo "# hog: $LAST"
hc=$(echo "$LAST" | sed -n 's/.*half_closed=\([0-9]*\).*/\1/p')
first=$(echo "$LAST" | sed -n 's/.*first_ms=\([0-9]*\).*/\1/p')
others=$(echo "$LAST" | sed -n 's/.*others_open=\([0-9]*\).*/\1/p')
check "the 4 half frames are closed after frame_timeout, 2 s ($LAST)" \
    sh -c '[ "$1" = 4 ] && [ "$2" -ge 1900 ]' x "${hc:-0}" "${first:-0}"
check "the 4 quiet connections stay (idle_timeout 60 s not reached) ($LAST)" test "${others:-0}" = 4
check "the agent logs the half-frame closes" \
    wait_log "closed local client uid $ATTACKER pid [0-9]+: an incomplete frame for 2 s" 1
# 193 refusals (192 + the client's) within a second or two: at most 5 lines a second.
n=$(grep -c "refused local client uid $ATTACKER pid" "$T/agent.log")
check "193 refused connections: $n lines in the log (at most 5 a second)" test "$n" -ge 1 -a "$n" -le 15
check "the rest are counted in a summary line within 15 s" \
    wait_log "[0-9]+ more refused local client connections of uid $ATTACKER not logged in the last [0-9]+ s" 15
check "/metrics counts the refused connections ($(metric 'hsmesh_agent_local_refused_total{reason="limit"}')) and the half frames closed ($(metric 'hsmesh_agent_local_closed_total{reason="incomplete_frame"}'))" \
    sh -c '[ "$1" -ge 193 ] && [ "$2" -eq 4 ]' x "$(metric 'hsmesh_agent_local_refused_total{reason="limit"}')" \
    "$(metric 'hsmesh_agent_local_closed_total{reason="incomplete_frame"}')"
check "the agent still runs" kill -0 "$AGENT"
as "$VICTIM" "$HSMESH" agent client --socket "$S" get "$DB" >/dev/null 2>&1
check "after the hog: uid $ATTACKER is served again" \
    sh -c 'setpriv --reuid="$1" --regid="$1" --clear-groups "$2" agent client --socket "$3" get "$4" >/dev/null' \
    x "$ATTACKER" "$HSMESH" "$S" "$WEB"

kill -TERM "$AGENT"; wait_exit "$AGENT" 10; rc=$?
check "SIGTERM: the agent exits 0 (got $rc)" test "$rc" -eq 0
grep -h -A30 -E "ERROR: (Address|Leak)Sanitizer|runtime error" "$T"/agent.log | sed "s/^/# /" | head -n 60
check "no sanitizer report in the agent's log" sh -c '! grep -qE "ERROR: (Address|Leak)Sanitizer|runtime error" "$1"' x "$T/agent.log"
done_testing
