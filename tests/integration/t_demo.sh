#!/bin/sh
# t_demo.sh - `hsmesh demo`, the README's first command: a whole mesh runs
# to the end, every step's outcome is printed, and nothing is left behind
# (no process, no temporary directory).
. "$(dirname "$0")/lib.sh"

before=$(ls -d /tmp/hsmesh-demo.* 2>/dev/null | wc -l)
timeout 180 "$HSMESH" demo >"$T/demo.out" 2>&1
rc=$?
check "hsmesh demo exits 0 (rc $rc)" test "$rc" -eq 0
[ "$rc" -eq 0 ] || sed 's/^/#   /' "$T/demo.out" | tail -n 40
for n in 1 2 3 4 5 6 7 8 9 10; do
	check "step $n is shown" grep -q "== step $n:" "$T/demo.out"
done
check "the CA key and a workload key are reported sensitive and never extractable" \
    test "$(grep -c "never extractable *yes" "$T/demo.out")" -eq 2
check "three workloads enrolled" test "$(grep -c "enrolled certificate" "$T/demo.out")" -eq 3
check "the SVID's chain check is OK" grep -q "chain check.*: OK" "$T/demo.out"
check "the authorised call is answered" grep -q "200 hello from backend" "$T/demo.out"
check "the intruder is refused" sh -c 'grep -q -- "-> refused" "$1" && grep -q "refused: not_allowed" "$1"' x "$T/demo.out"
check "a compromised workload's CMP request is refused by the agent" \
    sh -c 'grep -q "not a TLS handshake signature input" "$1" && grep -q -- "-> refused: the agent signs TLS handshake inputs only" "$1"' x "$T/demo.out"
check "both sidecars rotate while the connection stays open" \
    sh -c 'test "$(grep -c "rotated:" "$1")" -ge 2 && grep -q -- "-> rotated, connection kept" "$1" && grep -q "^   40 of 40 requests" "$1"' x "$T/demo.out"
check "metrics are shown" grep -q "hsmesh_proxy_handshakes_total{" "$T/demo.out"
check "an access-log line is shown" grep -q '"decision":"deny"' "$T/demo.out"
check "its temporary directory is removed" test "$(ls -d /tmp/hsmesh-demo.* 2>/dev/null | wc -l)" -eq "$before"
check "no daemon left running" sh -c '! pgrep -f "hsmesh-demo\." >/dev/null'

# Ctrl-C in the middle stops everything and removes the directory.
"$HSMESH" demo >"$T/int.out" 2>&1 &
D=$!; track $D
i=0; while ! grep -q "== step 5:" "$T/int.out" && [ $i -lt 600 ]; do sleep 0.1; i=$((i + 1)); done
kill -INT "$D"
wait_exit "$D" 15
check "Ctrl-C: the demo stops with a non-zero status" test $? -ne 0
sleep 0.5
check "Ctrl-C: no daemon left running" sh -c '! pgrep -f "hsmesh-demo\." >/dev/null'
check "Ctrl-C: the temporary directory is removed" test "$(ls -d /tmp/hsmesh-demo.* 2>/dev/null | wc -l)" -eq "$before"
done_testing
