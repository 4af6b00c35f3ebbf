#!/bin/sh
# t_demo.sh - `hsmesh demo`, the README's first command, runs to the end,
# prints every step's outcome and leaves nothing behind.
. "$(dirname "$0")/lib.sh"

before=$(ls -d /tmp/hsmesh-demo.* 2>/dev/null | wc -l)
timeout 120 "$HSMESH" demo >"$T/demo.out" 2>&1
rc=$?
check "hsmesh demo exits 0 (rc $rc)" test "$rc" -eq 0
for n in 1 2 3 4 5 6 7; do
	check "step $n is shown" grep -q "== step $n:" "$T/demo.out"
done
check "the CA key is reported sensitive and never extractable" \
    sh -c 'grep -q "sensitive *yes" "$1" && grep -q "never extractable *yes" "$1" && grep -q "extractable *no" "$1"' x "$T/demo.out"
check "the issued SVID's chain check is OK" grep -q "chain check.*: OK" "$T/demo.out"
check "three policy violations are refused" test "$(grep -c -- "-> refused" "$T/demo.out")" -eq 3
check "its temporary directory is removed" test "$(ls -d /tmp/hsmesh-demo.* 2>/dev/null | wc -l)" -eq "$before"
done_testing
