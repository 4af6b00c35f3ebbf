#!/bin/sh
# ASAN=yes
# t_ca_front.sh - the CA front under slow and many clients (docs/CA.md):
# 500 slow connections held open while `openssl cmp ir` enrolls; the
# per-source and global connection limits answer 503; the request deadline
# and the progress rule answer 408; a second message of a transaction in
# progress is answered 409, never a silent close; refusals are counted in
# /metrics and the log is throttled. Every client is bounded in time.
. "$(dirname "$0")/lib.sh"

SLOW=$(test_tool slowcli) || { not_ok "tests/tools/slowcli is not built next to $HSMESH (make check-build)"; done_testing; exit 1; }

ca_setup front ec-p256
Y=$T/front.yaml
cat >>"$Y" <<YAML
metrics:
  listen: 127.0.0.1:0
YAML
quiet "$HSMESH" ca init -c "$Y" || { not_ok "ca init"; done_testing; exit 1; }

# start_srv YAML LOG: ca serve in the background; sets SRV, PORT, MPORT
start_srv() {
	serve_ca "$1" "$2"
	wait_in "$2" "metrics at" 5
	MPORT=$(sed -n 's|.*metrics at http://127.0.0.1:\([0-9]*\)/metrics.*|\1|p' "$2" | head -n 1)
}
# metric NAME_AND_LABELS: its value at the running server, 0 when absent
metric() {
	curl -s --max-time 5 "http://127.0.0.1:$MPORT/metrics" | awk -v k="$1" '$1 == k { v = $2 } END { print v + 0 }'
}
# field NAME LINE: a key=value of slowcli's report
field() { echo "$2" | tr ' ' '\n' | sed -n "s/^$1=//p"; }
newkey() { openssl ecparam -name prime256v1 -genkey -noout -out "$1" 2>/dev/null; }
ref() { echo "${1%%:*}"; }
sec() { echo "${1#*:}"; }
enroll() { # ID OUT: a good ir with a fresh token; prints nothing, status of openssl cmp
	_t=$("$HSMESH" ca token -c "$Y" --id "$1") || return 1
	timeout 30 openssl cmp -server "127.0.0.1:$PORT" -path .well-known/cmp -cmd ir -ref "$(ref "$_t")" \
	    -secret "pass:$(sec "$_t")" -newkey "$T/k.pem" -subject /CN=x -certout "$2" >"$2.out" 2>&1
}
newkey "$T/k.pem"

# --- 500 slow connections, one header line every 3 s, for 16 s ---
start_srv "$Y" "$T/serve.log"
check "ca serve listens (port ${PORT:-none}, metrics ${MPORT:-none})" test -n "$PORT" -a -n "$MPORT"
"$SLOW" 127.0.0.1 "$PORT" 500 10 3000 16000 >"$T/slow.out" 2>&1 &
SL=$!
track "$SL"
held=0
for _ in $(seq 100); do
	held=$(metric hsmesh_ca_connections)
	[ "$held" -ge 500 ] && break
	sleep 0.1
done
check "500 slow connections are open at the CA ($held)" test "$held" -ge 500
t0=$(date +%s%N)
check "meanwhile a good openssl cmp ir enrolls" enroll spiffe://example.org/during-slow "$T/c1.pem"
ms=$((($(date +%s%N) - t0) / 1000000))
ok "# the ir took $ms ms with $held slow connections held (no timing assertion)"
check "... and the certificate names its token's ID" test "$(uri_sans "$T/c1.pem")" = spiffe://example.org/during-slow
still=$(metric hsmesh_ca_connections)
check "the slow connections are still held after it ($still)" test "$still" -ge 400
wait_exit "$SL" 30
R=$(cat "$T/slow.out")
check "slowcli ran ($R)" test -n "$(field opened "$R")"
check "the request deadline closed the slow connections with 408 ($(field status408 "$R") answers)" \
    test "$(field status408 "$R")" -ge 400
n=$(metric 'hsmesh_ca_connections_refused_total{reason="request_timeout"}')
check "the metric counts them ($n)" test "$n" -ge 400
lines=$(grep -c "refused connection" "$T/serve.log")
check "the log is throttled: $lines lines for $n refusals (first per source and reason)" test "$lines" -le 40
check "the server is alive" alive "$SRV"

# --- the per-source limit (64 by default) ---
"$SLOW" 127.0.0.1 "$PORT" 70 1 1000 3000 hold >"$T/src.out" 2>&1
R=$(cat "$T/src.out")
n=$(metric 'hsmesh_ca_connections_refused_total{reason="max_connections_per_source"}')
check "70 connections from one address: 6 over the per-source limit are refused ($n; client saw $(field status503 "$R") 503s)" \
    sh -c '[ "$1" -eq 6 ] && [ "$2" -ge 1 ]' x "$n" "$(field status503 "$R")"
"$SLOW" 127.0.0.1 "$PORT" 64 1 1000 6000 hold >"$T/src2.out" 2>&1 &
SL=$!
track "$SL"
sleep 1
check "with one address at its limit, another still enrolls" enroll spiffe://example.org/other-source "$T/c2.pem"
code=$(curl -s --max-time 5 --interface 127.0.0.2 -o "$T/503.body" -w '%{http_code}' --data-binary x "http://127.0.0.1:$PORT/.well-known/cmp")
check "the address at its limit is answered 503 with a reason ($code: $(cat "$T/503.body"))" \
    sh -c '[ "$1" = 503 ] && grep -q "too many connections from your address" "$2"' x "$code" "$T/503.body"
wait_exit "$SL" 20

# --- a transaction in progress: a second message is answered 409 ---
# A slow token (300 ms per signature) keeps the first one busy.
kill -TERM "$SRV"; wait_exit "$SRV" 10
cp "$Y" "$T/slowsig.yaml"
sed -i "s|^  pin_file: .*|&\n  test_sign_delay_ms: 300|" "$T/slowsig.yaml"
start_srv "$T/slowsig.yaml" "$T/serve2.log"
TOK=$("$HSMESH" ca token -c "$Y" --id spiffe://example.org/replayed)
# The request, as the client would send it (written before the send, which fails).
openssl cmp -server 127.0.0.1:1 -cmd ir -ref "$(ref "$TOK")" -secret "pass:$(sec "$TOK")" \
    -newkey "$T/k.pem" -subject /CN=x -reqout "$T/req.der" -certout "$T/never.pem" -msg_timeout 2 >/dev/null 2>&1
check "a request captured for replay" test -s "$T/req.der"
i=0; CURLS=""
while [ $i -lt 30 ]; do
	curl -s --max-time 20 -D "$T/hdr.$i" -o "$T/rep.$i" -w '%{http_code}\n' -H 'Content-Type: application/pkixcmp' \
	    --data-binary @"$T/req.der" "http://127.0.0.1:$PORT/.well-known/cmp" >"$T/code.$i" &
	CURLS="$CURLS $!"
	i=$((i + 1))
done
for p in $CURLS; do wait "$p"; done
c409=0; c200=0; other=0; used=0
for i in $(seq 0 29); do
	case $(cat "$T/code.$i") in
	409) c409=$((c409 + 1)) ;;
	200) c200=$((c200 + 1))
	     grep -q "join token already used" "$T/rep.$i" && used=$((used + 1)) ;;
	*) other=$((other + 1)) ;;
	esac
done
check "30 concurrent replays of one ir: each gets 409 or a CMP answer, none a silent close (409: $c409, 200: $c200, other: $other)" \
    sh -c '[ "$1" -eq 0 ] && [ "$2" -ge 1 ] && [ $(($2 + $3)) -eq 30 ]' x "$other" "$c409" "$c200"
issued=$(sqlite3 "$T/front/ledger.db" "select count(*) from certs where spiffe_id = 'spiffe://example.org/replayed'")
check "... exactly one certificate came of them ($issued in the ledger); the other CMP answers say the token was used ($used)" \
    sh -c '[ "$1" -eq 1 ] && [ "$2" -eq $(($3 - 1)) ]' x "$issued" "$used" "$c200"
phr=0
for i in $(seq 0 29); do
	[ "$(cat "$T/code.$i")" = 409 ] && head -n 1 "$T/hdr.$i" | grep -q "^HTTP/1.1 409 Conflict" && phr=$((phr + 1))
done
check "each 409 reads 'HTTP/1.1 409 Conflict' ($phr of $c409)" test "$phr" -eq "$c409"
# A MAC asking for 32767 PBM iterations is refused before it is computed, unsigned.
perl -0777 -pe 's/\x02\x02\x01\xf4/\x02\x02\x7f\xff/' "$T/req.der" >"$T/costly.der"
check "a request with 32767 PBM iterations made for the test" sh -c '! cmp -s "$1" "$2"' x "$T/req.der" "$T/costly.der"
curl -s --max-time 10 -o "$T/costly.rsp" -H 'Content-Type: application/pkixcmp' \
    --data-binary @"$T/costly.der" "http://127.0.0.1:$PORT/.well-known/cmp"
check "... is answered with an unprotected error naming the limit" sh -c 'grep -q "PBM iteration count over 10000" "$1" &&
    ! openssl asn1parse -inform DER -in "$1" | grep -q "d=1 .*cont \[ 0 \]"' x "$T/costly.rsp"
n=$(metric 'hsmesh_ca_cmp_refused_total{reason="pbm_cost"}')
check "... and counted ($n)" test "$n" -eq 1
kill -TERM "$SRV"; wait_exit "$SRV" 10

# --- small limits: the global limit, the progress rule, the deadline ---
cp "$Y" "$T/small.yaml"
cat >>"$T/small.yaml" <<YAML
front:
  max_connections: 50
  max_connections_per_source: 50
  idle_timeout: 2s
  request_timeout: 4s
YAML
start_srv "$T/small.yaml" "$T/serve3.log"
"$SLOW" 127.0.0.1 "$PORT" 60 2 1000 3000 hold >"$T/glob.out" 2>&1
R=$(cat "$T/glob.out")
n=$(metric 'hsmesh_ca_connections_refused_total{reason="max_connections"}')
check "60 connections against max_connections 50: 10 refused with 503 ($n; client saw $(field status503 "$R"))" \
    sh -c '[ "$1" -eq 10 ] && [ "$2" -ge 1 ]' x "$n" "$(field status503 "$R")"
"$SLOW" 127.0.0.1 "$PORT" 5 1 1000 4000 idle >"$T/idle.out" 2>&1
R=$(cat "$T/idle.out")
n=$(metric 'hsmesh_ca_connections_refused_total{reason="idle_timeout"}')
check "connections silent for longer than idle_timeout (2s) get 408 ($(field status408 "$R")) and are counted ($n)" \
    sh -c '[ "$1" -ge 5 ] && [ "$2" -ge 5 ]' x "$(field status408 "$R")" "$n"
check "the log names the idle refusal" grep -q "silent for longer than idle_timeout" "$T/serve3.log"
check "after all that, an enrollment still works" enroll spiffe://example.org/after "$T/c3.pem"
kill -TERM "$SRV"
check "SIGTERM stops the server" wait_exit "$SRV" 10
check "the audit log is one JSON object a line" sh -c '! grep -qv "^{\"time\":\".*\"}$" "$1"' x "$T/front/audit.log"
done_testing
