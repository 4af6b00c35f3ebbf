#!/bin/sh
# tests/run.sh BUILD_DIR - run every test and print "N passed, N failed".
#
# Every test program speaks TAP ("ok N - ...", "not ok N - ..."): the cmocka
# unit tests (CMOCKA_MESSAGE_OUTPUT=TAP), the integration scripts
# (tests/integration/lib.sh) and the fuzz smoke runs. A program that exits
# non-zero without reporting a failure counts as one failure.
B=${1:-build}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
B=$(cd "$B" && pwd)
export HSMESH_BUILD="$B" HSMESH_ROOT="$ROOT" CMOCKA_MESSAGE_OUTPUT=TAP
export ASAN_OPTIONS="detect_leaks=1:abort_on_error=0:${ASAN_OPTIONS:-}"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1"
LOG="$B/test-logs"
rm -rf "$LOG"; mkdir -p "$LOG"
pass=0; fail=0; failed_names=""

logof() { echo "$LOG/$(echo "$1" | tr '/ ' '__').log"; }
run() { # name command...
	name=$1; shift
	out=$(logof "$name")
	start=$(date +%s)
	"$@" >"$out" 2>&1 </dev/null
	tally "$name" "$?" "$start"
}
# run_bg NAME COMMAND...: start it now, tally it with wait_bg NAME START later
run_bg() {
	_o=$(logof "$1"); shift
	( "$@" >"$_o" 2>&1 </dev/null; echo $? >"$_o.rc" ) &
}
# qrun NAME COMMAND...: run it quietly, keeping its exit status and times
# for tally_q (a stream of qruns runs beside another stream)
qrun() {
	_o=$(logof "$1"); shift
	_s=$(date +%s)
	"$@" >"$_o" 2>&1 </dev/null
	echo "$? $_s $(date +%s)" >"$_o.rc"
}
tally_q() { # NAME
	_o=$(logof "$1")
	read -r _rc _s _e <"$_o.rc" 2>/dev/null || { _rc=1; _s=0; _e=0; }
	tally "$1" "$_rc" "$_s" "$_e"
	rm -f "$_o.rc"
}
wait_bg() {
	wait
	_o=$(logof "$1")
	tally "$1" "$(cat "$_o.rc" 2>/dev/null || echo 1)" "$2"
	rm -f "$_o.rc"
}
tally() { # name rc start [end]: count the TAP lines of the name's log
	name=$1; rc=$2; start=$3; end=${4:-$(date +%s)}; out=$(logof "$name")
	p=$(grep -c '^ok ' "$out"); f=$(grep -c '^not ok ' "$out")
	if [ $rc -ne 0 ] && [ "$f" -eq 0 ]; then f=1; echo "not ok - $name exited $rc" >>"$out"; fi
	if [ "$p" -eq 0 ] && [ "$f" -eq 0 ]; then f=1; echo "not ok - $name reported nothing" >>"$out"; fi
	pass=$((pass + p)); fail=$((fail + f))
	printf '%-48s %3d passed %3d failed  (%ss)\n' "$name" "$p" "$f" "$((end - start))"
	if [ "$f" -ne 0 ]; then
		failed_names="$failed_names $name"
		grep '^not ok ' "$out" | sed 's/^/    /'
		tail -n 15 "$out" | sed 's/^/    | /'
	fi
}

# Two streams side by side, each one test at a time: the plain build's unit
# and integration tests, and the sanitizer build's (the integration suites
# marked ASAN=yes run a second time there). Most of an integration suite's
# time is spent waiting on its daemons, so two streams fill the two cores
# better than one. Results are reported in a fixed order once both end.
plain=""; sanitized=""
for t in "$B"/tests/test_*; do [ -x "$t" ] && plain="$plain unit/$(basename "$t")"; done
for t in "$ROOT"/tests/integration/t_*.sh; do
	[ -f "$t" ] && plain="$plain integration/$(basename "$t" .sh)"
done
for t in "$B"/asan/tests/test_*; do [ -x "$t" ] && sanitized="$sanitized unit-asan/$(basename "$t")"; done
# The ledger suite again on PostgreSQL: one throwaway server
# (tests/integration/pg.sh) for both builds of test_ledger. Installed but
# not starting is a failure; only missing binaries make it a skip.
PGSH="$ROOT/tests/integration/pg.sh"
sanitized="$sanitized unit-pg/test_ledger"
for t in "$ROOT"/tests/integration/t_*.sh; do
	grep -q '^# ASAN=yes' "$t" 2>/dev/null && sanitized="$sanitized integration-asan/$(basename "$t" .sh)"
done
stream() { # NAME...: run the named tests one after the other
	for n in "$@"; do
		case $n in
		unit/*) HSMESH_EXE="$B/hsmesh" qrun "$n" "$B/tests/${n#unit/}" ;;
		unit-asan/*) HSMESH_EXE="$B/asan/hsmesh" qrun "$n" "$B/asan/tests/${n#unit-asan/}" ;;
		integration/*) qrun "$n" sh "$ROOT/tests/integration/${n#integration/}.sh" "$B/hsmesh" ;;
		integration-asan/*) qrun "$n" sh "$ROOT/tests/integration/${n#integration-asan/}.sh" "$B/asan/hsmesh" ;;
		unit-pg/*)
			if sh -c '. "$1"; pg_available' x "$PGSH"; then
				qrun "$n" env HSMESH_TEST_LEDGER=postgresql sh -c '. "$1"; shift; pg_run_each "$@"' \
				    x "$PGSH" "$B/tests/test_ledger" "$B/asan/tests/test_ledger"
			else
				qrun "$n" echo "ok - # SKIP PostgreSQL pass: postgresql-15 (initdb, pg_ctl, psql) not installed"
			fi ;;
		esac
	done
}
# shellcheck disable=SC2086
stream $sanitized &
# shellcheck disable=SC2086
stream $plain
wait
for n in $plain $sanitized; do tally_q "$n"; done
# The token-layer and CA suites run again on a software TPM 2.0
# (tests/integration/tpm.sh): unit tests whose source says "TPM=yes" and
# integration suites marked "# TPM=yes", with HSMESH_TOKEN_BACKEND=tpm.
TPMSH="$ROOT/tests/integration/tpm.sh"
if sh -c '. "$1"; tpm_available' x "$TPMSH"; then
	export HSMESH_EXE="$B/hsmesh"
	for t in "$B"/tests/test_*; do
		grep -q 'TPM=yes' "$ROOT/tests/unit/$(basename "$t").c" 2>/dev/null &&
		    run "unit-tpm/$(basename "$t")" sh -c '. "$1"; shift; tpm_run "$@"' x "$TPMSH" "$t"
	done
	for t in "$ROOT"/tests/integration/t_*.sh; do
		grep -q '^# TPM=yes' "$t" 2>/dev/null &&
		    run "integration-tpm/$(basename "$t" .sh)" env HSMESH_TOKEN_BACKEND=tpm sh "$t" "$B/hsmesh"
	done
else
	run "tpm" echo "ok - # SKIP TPM pass: swtpm, tpm2-abrmd, tpm2-pkcs11 or the tabrmd TCTI not installed"
fi
# Fuzz smoke runs are bounded in time, not in work: two at a time use both cores.
set -- "$B"/fuzz/fuzz_*
while [ $# -gt 0 ]; do
	a=$1; shift
	if [ $# -gt 0 ]; then
		b=$1; shift; start=$(date +%s)
		run_bg "fuzz-smoke/$(basename "$b")" sh "$ROOT/tests/fuzz/smoke.sh" "$b"
		run "fuzz-smoke/$(basename "$a")" sh "$ROOT/tests/fuzz/smoke.sh" "$a"
		wait_bg "fuzz-smoke/$(basename "$b")" "$start"
	elif [ -x "$a" ]; then
		run "fuzz-smoke/$(basename "$a")" sh "$ROOT/tests/fuzz/smoke.sh" "$a"
	fi
done

[ -n "$failed_names" ] && echo "failed:$failed_names (logs in $LOG)"
echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
