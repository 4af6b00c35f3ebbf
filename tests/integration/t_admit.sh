# t_admit.sh HSMESH - handshake admission on the sidecar's inbound listeners
# (issue 15): a full handshake costs a signature on the node's token, so
# the proxy admits full handshakes per source (a token bucket) and caps the
# key operations in flight, before anything is signed.
#
# A real CA, an agent serving b (its /metrics counts the signatures), b's
# app, and two proxies for b: P (admission: 1 a second after a burst of 3
# per source) and K (one key operation in flight). Clients are
# `openssl s_client` and curl bound to loopback sources:
#   - 60 ClientHellos from 127.0.0.2 (10 at a time): most are refused
#     (rate_limited, with a TLS alert), counted in /metrics and logged a
#     few times; the agent signed only for those admitted;
#   - 127.0.0.2, just limited, still resumes a session (no signature: a
#     resumption is never charged), and 127.0.0.3's full handshakes succeed;
#   - K with its agent stopped: a first handshake holds the one slot
#     (waiting for its signature), a second one is refused key_ops_busy at
#     once; after the first fails by agent.timeout, the slot is free again.
. "$(dirname "$0")/lib.sh"

IDB=spiffe://example.org/b
IDA=spiffe://example.org/a
FLOOD=60
diag() { for f in "$@"; do echo "# --- $f"; tail -n 15 "$f" 2>/dev/null | sed 's/^/#   /'; done; }
port() { awk -v n="$1" '$1 == n { print $2 }' "$2" 2>/dev/null; }
# metric PORT NAME{LABELS}: a value from a /metrics page (0 when absent)
metric() { curl -s --max-time 5 "http://127.0.0.1:$1/metrics" | awk -v k="$2" '$1 == k { v = $2 } END { print v + 0 }'; }

# ---- CA, agent (b), app ------------------------------------------------------------------
check "the agent enrolls b" mesh_up "$IDB" || diag "$T/agent.log" "$T/ca.log"
AMET=$AGENT_METRICS
"$HSMESH" app serve --listen 127.0.0.1:0 --name b --port-file "$T/app.port" 2>"$T/app.log" &
track $!
for _ in $(seq 100); do [ -s "$T/app.port" ] && break; sleep 0.05; done
# a client certificate b allows (a file key: the client's signature is not the agent's)
file_svid fa "$IDA"

proxy_yaml() { # FILE ADMISSION-LINES...
	_f=$1; shift
	cat >"$_f" <<EOF
agent: { socket: $T/agent.sock, id: "$IDB", timeout: 2s }
workers: 2
inbound:
  - { name: web, listen: "127.0.0.1:0", forward_to: "127.0.0.1:$(cat "$T/app.port")", allow: ["$IDA"] }
metrics: { listen: "127.0.0.1:0" }
access_log: $(dirname "$_f")/$(basename "$_f" .yaml)-access.log
admission:
EOF
	for _l in "$@"; do echo "  $_l" >>"$_f"; done
}
proxy_yaml "$T/p.yaml" "handshake_rate: 1" "handshake_burst: 3"
proxy_yaml "$T/k.yaml" "max_key_operations: 1"
"$HSMESH" proxy -c "$T/p.yaml" --ports-file "$T/p.ports" 2>"$T/p.log" &
PP=$!; track $PP
"$HSMESH" proxy -c "$T/k.yaml" --ports-file "$T/k.ports" 2>"$T/k.log" &
PK=$!; track $PK
check "proxy P: ready" wait_in "$T/p.log" "ready: serving $IDB" 15 || diag "$T/p.log"
check "proxy K: ready" wait_in "$T/k.log" "ready: serving $IDB" 15 || diag "$T/k.log"
PPORT=$(port web "$T/p.ports"); PMET=$(port metrics "$T/p.ports")
KPORT=$(port web "$T/k.ports"); KMET=$(port metrics "$T/k.ports")

# hello SRC PORT [s_client options]: one TLS connection from SRC; its output
hello() {
	_s=$1 _p=$2; shift 2
	timeout 10 openssl s_client -connect "127.0.0.1:$_p" -bind "$_s:0" -tls1_3 "$@" </dev/null 2>&1
}
# allowed SRC: curl from SRC with a certificate P allows reaches the app
allowed() {
	test "$(curl -sk --max-time 10 --interface "$1" --cert "$T/fa.pem" --key "$T/fa.key" \
	    "https://127.0.0.1:$PPORT/")" = "hello from b"
}

# ---- a session to resume later, from 127.0.0.2, before its flood -------------------------
(sleep 1; printf 'GET / HTTP/1.0\r\n\r\n') | timeout 10 openssl s_client -connect "127.0.0.1:$PPORT" \
    -bind 127.0.0.2:0 -tls1_3 -cert "$T/fa.pem" -key "$T/fa.key" -sess_out "$T/sess.pem" \
    >"$T/first.out" 2>&1
check "127.0.0.2 makes a full handshake and keeps its session" \
    sh -c 'grep -q "^New, TLSv1.3" "$1" && test -s "$2"' x "$T/first.out" "$T/sess.pem" || diag "$T/first.out"

# ---- the flood ---------------------------------------------------------------------------
S0=$(metric "$AMET" hsmesh_agent_signatures_total)
t0=$(date +%s)
mkdir "$T/flood"
seq "$FLOOD" | xargs -P 10 -I{} sh -c 'timeout 10 openssl s_client -connect "127.0.0.1:$1" \
    -bind 127.0.0.2:0 -tls1_3 </dev/null >"$2/{}.out" 2>&1; true' x "$PPORT" "$T/flood"
t1=$(date +%s)
DUR=$((t1 - t0 + 1))
REFUSED=$(metric "$PMET" 'hsmesh_proxy_handshake_failures_total{listener="web",reason="rate_limited"}')
S1=$(metric "$AMET" hsmesh_agent_signatures_total)
# At most the burst and the refill over the flood's time were admitted.
MAXADM=$((3 + DUR))
echo "# flood of $FLOOD from 127.0.0.2 in ${DUR}s: $REFUSED refused, $((S1 - S0)) signatures"
check "the flood is refused by the per-source rate ($REFUSED of $FLOOD refused, at most $MAXADM admitted)" \
    test "$REFUSED" -ge $((FLOOD - MAXADM))
check "the agent signed only for the admitted handshakes ($((S1 - S0)) signatures for $FLOOD ClientHellos)" \
    test $((S1 - S0)) -le $((FLOOD - REFUSED))
alerted() { grep -l "alert internal error" "$T"/flood/*.out | wc -l; }
check "a refused client gets a TLS alert and no session ($(alerted) of $FLOOD)" \
    sh -c 'test "$(grep -l "alert internal error" "$1"/*.out | wc -l)" -ge "$2" &&
        ! grep -l "alert internal error" "$1"/*.out | xargs grep -l "^New, TLSv1.3"' x "$T/flood" "$REFUSED" ||
    diag "$T/flood/1.out"
check "P logs the refusal once with the source and the limit, not once per ClientHello ($(grep -c 'refused: rate_limited' "$T/p.log") lines)" \
    sh -c 'grep -q "inbound web: 127.0.0.2:[0-9]* refused: rate_limited: more than 3 full handshakes from 127.0.0.2/32 (1 a second after a burst of 3)" "$1" &&
        test "$(grep -c "refused: rate_limited" "$1")" -le 3' x "$T/p.log" || diag "$T/p.log"
check "the access log says rate_limited" grep -q '"client":"127.0.0.2:[0-9]*".*"reason":"rate_limited"' "$T/p-access.log"

# ---- a resumption from the limited source, and other sources -----------------------------
S2=$(metric "$AMET" hsmesh_agent_signatures_total)
hello 127.0.0.2 "$PPORT" -cert "$T/fa.pem" -key "$T/fa.key" -sess_in "$T/sess.pem" >"$T/resumed.out"
S3=$(metric "$AMET" hsmesh_agent_signatures_total)
check "127.0.0.2, just limited, resumes its session (no signature, not charged)" \
    sh -c 'grep -q "^Reused, TLSv1.3" "$1" && test "$2" -eq "$3"' x "$T/resumed.out" "$S2" "$S3" ||
    diag "$T/resumed.out"
three() { for _ in 1 2 3; do allowed "$1" || return 1; done; }
check "127.0.0.3's full handshakes succeed (3 of 3)" three 127.0.0.3

# ---- the key operations in flight (K: one) -----------------------------------------------
kill -STOP "$AGENT"
hello 127.0.0.3 "$KPORT" -cert "$T/fa.pem" -key "$T/fa.key" >"$T/slow.out" &
SLOW=$!
check "K: a handshake waits for its signature (1 in flight)" \
    sh -c 'for _ in $(seq 50); do [ "$(curl -s --max-time 2 "http://127.0.0.1:$1/metrics" |
        awk "\$1 == \"hsmesh_proxy_key_operations_in_flight\" { print \$2 }")" = 1 ] && exit 0; sleep 0.1; done; exit 1' x "$KMET"
hello 127.0.0.4 "$KPORT" -cert "$T/fa.pem" -key "$T/fa.key" >"$T/busy.out"
check "K: another source's full handshake is refused at once: key_ops_busy" \
    sh -c 'grep -q "alert internal error" "$1" &&
        grep -q "inbound web: 127.0.0.4:[0-9]* refused: key_ops_busy: 1 key operations in flight" "$2"' \
    x "$T/busy.out" "$T/k.log" || diag "$T/busy.out" "$T/k.log"
wait "$SLOW"
kill -CONT "$AGENT"
check "K: the waiting handshake ended by agent.timeout, and its slot came back" \
    sh -c 'test "$(curl -s --max-time 2 "http://127.0.0.1:$1/metrics" |
        awk "\$1 == \"hsmesh_proxy_key_operations_in_flight\" { print \$2 }")" = 0' x "$KMET"
check "K counts key_ops_busy ($(metric "$KMET" 'hsmesh_proxy_handshake_failures_total{listener="web",reason="key_ops_busy"}'))" \
    test "$(metric "$KMET" 'hsmesh_proxy_handshake_failures_total{listener="web",reason="key_ops_busy"}')" -ge 1
check "K serves a full handshake again once the agent answers" \
    sh -c 'for _ in 1 2 3 4 5 6 7 8 9 10; do
		test "$(curl -sk --max-time 10 --cert "$2" --key "$3" "https://127.0.0.1:$1/")" = "hello from b" && exit 0
		sleep 0.5; done; exit 1' x "$KPORT" "$T/fa.pem" "$T/fa.key"
for p in $PP $PK; do kill -TERM "$p" 2>/dev/null; done
both_gone() { gone "$PP" 10 && gone "$PK" 10; }
check "both proxies stop on SIGTERM" both_gone
done_testing
