#!/bin/sh
# t_demo.sh - `hsmesh demo`, the README's first command: a whole mesh runs
# to the end, every step's outcome is printed, and nothing is left behind
# (no process, no temporary directory).
. "$(dirname "$0")/lib.sh"

# The demo's own directory (other worktrees may run demos at the same time).
demo_dir() { sed -n 's/^Working directory (removed on exit): \(.*\)$/\1/p' "$1" | head -n 1; }
# none_running DIR: no process has DIR in its command line (the pattern, with
# its dot as [.], does not match the checking shell's own arguments)
none_running() { [ -n "$1" ] && ! pgrep -f "$(echo "$1" | sed 's/\./[.]/g')" >/dev/null; }
timeout 180 "$HSMESH" demo >"$T/demo.out" 2>&1
rc=$?
check "hsmesh demo exits 0 (rc $rc)" test "$rc" -eq 0
[ "$rc" -eq 0 ] || sed 's/^/#   /' "$T/demo.out" | tail -n 40
for n in 1 2 3 4 5 6 7 8 9 10 11 12; do
	check "step $n is shown" grep -q "== step $n:" "$T/demo.out"
done
check "the CA key and a workload key are reported sensitive and never extractable" \
    test "$(grep -c "never extractable *yes" "$T/demo.out")" -eq 2
check "the node and three workloads enrolled" test "$(grep -c "enrolled certificate" "$T/demo.out")" -eq 4
check "the node enrolled first" sh -c 'grep "enrolled certificate" "$1" | head -n 1 | grep -q "/node/demo-node: enrolled"' x "$T/demo.out"
check "three registration entries, one node token, no workload token" \
    sh -c 'test "$(grep -c "ca entry add .*--node .*demo-node" "$1")" -eq 3 && test "$(grep -c "ca token" "$1")" -eq 1 && grep -q "ca token -c ca.yaml --node" "$1"' x "$T/demo.out"
check "a process the selectors do not select is refused" \
    sh -c 'grep -q "the agent closed the connection" "$1" && grep -q "refused local client .*(selectors: path: the process runs another executable)" "$1"' x "$T/demo.out"
check "the SVID's chain check is OK" grep -q "chain check.*: OK" "$T/demo.out"
check "the authorised call is answered" grep -q "200 hello from backend" "$T/demo.out"
check "the intruder is refused" sh -c 'grep -q -- "-> refused" "$1" && grep -q "refused: not_allowed" "$1"' x "$T/demo.out"
check "a compromised workload's CMP request is refused by the agent" \
    sh -c 'grep -q "not a TLS handshake signature input" "$1" && grep -q -- "-> refused: the agent signs TLS handshake inputs only" "$1"' x "$T/demo.out"
check "both sidecars rotate while the connection stays open" \
    sh -c 'test "$(grep -c "rotated:" "$1")" -ge 2 && grep -q -- "-> rotated, connection kept" "$1" && grep -q "^   40 of 40 requests" "$1"' x "$T/demo.out"
check "metrics are shown" grep -q "hsmesh_proxy_handshakes_total{" "$T/demo.out"
check "an access-log line is shown" grep -q '"decision":"deny"' "$T/demo.out"
# the SBI step (issue 18): a second node's NFs over HTTP/2 with per-route policy
check "SBI: the core node's agent enrolled its four NFs" sh -c 'sed -n "/== step 11:/,/== step 12:/p" "$1" | grep -q "its four NFs enrolled"' x "$T/demo.out"
check "SBI: the AMF may POST /nsmf-pdusession/v1/sm-contexts (201)" \
    sh -c 'sed -n "/AMF -> SMF/,/PCF -> SMF/p" "$1" | grep -qx "     201"' x "$T/demo.out"
check "SBI: the SMF prints the caller's SPIFFE ID from x-forwarded-client-cert" \
    grep -q "hsmesh app: smf: POST /nsmf-pdusession/v1/sm-contexts from spiffe://demo.hsmesh.test/ns/5gc/sa/amf" "$T/demo.out"
check "SBI: the PCF is refused 403, the SMF's sidecar logging the route" \
    sh -c 'sed -n "/PCF -> SMF/,/PCF -> NRF/p" "$1" | grep -qx "     403" && grep -q "\"peer_id\":\"spiffe://demo.hsmesh.test/ns/5gc/sa/pcf\",\"method\":\"POST\",\"path\":\"/nsmf-pdusession/v1/sm-contexts\",\"route\":\"create-sm-context\",\"status\":\"403\"" "$1"' x "$T/demo.out"
check "SBI: the PCF may GET /nnrf-nfm/v1/nf-instances (200)" \
    sh -c 'sed -n "/PCF -> NRF/,/20 more/p" "$1" | grep -qx "     200"' x "$T/demo.out"
check "SBI: 20 application connections, at most 2 full handshakes to the NRF" \
    sh -c 'grep -q "connections_total{listener=\"to-nrf\",direction=\"outbound\"} 20" "$1" && n=$(sed -n "s/.*handshakes_total{listener=\"to-nrf\",resumed=\"false\"} //p" "$1") && [ "${n:-9}" -le 2 ]' x "$T/demo.out"
D1=$(demo_dir "$T/demo.out")
check "its temporary directory ($D1) is removed" sh -c '[ -n "$1" ] && [ ! -e "$1" ]' x "$D1"
check "no daemon left running" none_running "$D1"

# Ctrl-C in the middle stops everything and removes the directory.
"$HSMESH" demo >"$T/int.out" 2>&1 &
D=$!; track $D
i=0; while ! grep -q "== step 6:" "$T/int.out" && [ $i -lt 600 ]; do sleep 0.1; i=$((i + 1)); done
kill -INT "$D"
wait_exit "$D" 15
check "Ctrl-C: the demo stops with a non-zero status" test $? -ne 0
sleep 0.5
D2=$(demo_dir "$T/int.out")
check "Ctrl-C: no daemon left running" none_running "$D2"
check "Ctrl-C: the temporary directory ($D2) is removed" sh -c '[ -n "$1" ] && [ ! -e "$1" ]' x "$D2"
done_testing
