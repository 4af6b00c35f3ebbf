#!/bin/sh
# t_ca_drills.sh HSMESH - failure drills of CA replicas (issue 17, item 5):
# two `hsmesh ca serve` on one PostgreSQL database (tests/integration/pg.sh)
# and one SoftHSM2 token directory, 16 clients enrolling through the agent's
# CMP client (bench/cmpload: failover across the replicas, and a client
# whose attempt failed tries again for up to 20 s).
#
#   kill -9 of one replica mid-run: every client completes (at the other
#     replica; an answer lost with the dead one is delivered again by the
#     other, for the same transaction), no serial twice, every certificate a
#     client received is in the ledger and in an audit log.
#   PostgreSQL stopped and started again mid-run: meanwhile the replicas
#     answer systemFailure at once (no crash, no hang); afterwards they
#     reconnect by themselves and every client completes.
#
# Each drill is bounded: the load starts no enrollment after 20 s and a
# client gives up 20 s after its enrollment began.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/pg.sh"
if ! pg_available; then
	ok "# SKIP postgresql-15 (initdb, pg_ctl, psql) not installed"
	done_testing; exit 0
fi
LOAD=""
for _d in "${HSMESH_BUILD:-}" "$(dirname "$HSMESH")" "$(dirname "$HSMESH")/.."; do
	[ -n "$_d" ] && [ -x "$_d/bench/cmpload" ] && { LOAD=$_d/bench/cmpload; break; }
done
if [ -z "$LOAD" ]; then
	not_ok "bench/cmpload is not built next to $HSMESH (make check-build)"
	done_testing; exit 1
fi
trap '_cleanup; pg_stop' EXIT INT TERM
pg_ca drill || { done_testing; exit 1; }
quiet "$HSMESH" ca token -c "$Y" --id spiffe://example.org/warm

# replica NAME: a `ca serve` with its own audit log and port; PID_NAME, URL_NAME
replica() {
	sed -e '/^audit_log:/d' "$Y" >"$T/$1.yaml"
	echo "audit_log: $T/drill/audit-$1.log" >>"$T/$1.yaml"
	rm -f "$T/$1.port"
	"$HSMESH" ca serve -c "$T/$1.yaml" --port-file "$T/$1.port" 2>>"$T/$1.log" &
	eval "PID_$1=\$!"
	track $!
	for _ in $(seq 200); do [ -s "$T/$1.port" ] && break; sleep 0.05; done
	eval "URL_$1=http://127.0.0.1:\$(cat \"\$T/\$1.port\")/.well-known/cmp"
}
# load NAME N CLIENTS: N tokens, then cmpload in the background (LOADPID)
load() {
	"$LOAD" tokens "$DBURI" "$T/drill/token.key" "spiffe://example.org/$1" "$2" >"$T/$1.tok"
	rm -f "$T/$1.serials"
	CMPLOAD_RETRY_S=20 CMPLOAD_SERIALS="$T/$1.serials" "$LOAD" run "$ROOT" "$T/$1.tok" "$3" 20 \
	    "$URL_a" "$URL_b" >"$T/$1.json" 2>"$T/$1.err" &
	LOADPID=$!
	track $LOADPID
}
# enrolled NAME: serials received so far
enrolled() { if [ -f "$T/$1.serials" ]; then wc -l <"$T/$1.serials"; else echo 0; fi; }
wait_enrolled() { # NAME N SECS
	_i=0
	while [ "$(enrolled "$1")" -lt "$2" ] && [ "$_i" -lt $(($3 * 20)) ]; do sleep 0.05; _i=$((_i + 1)); done
	[ "$(enrolled "$1")" -ge "$2" ]
}
# accounted NAME N: N serials, all different, each in the ledger and in an audit log
accounted() {
	_dn=$(sort -u "$T/$1.serials" | wc -l)
	[ "$(wc -l <"$T/$1.serials")" -eq "$2" ] && [ "$_dn" -eq "$2" ] || { echo "# $_dn distinct of $(wc -l <"$T/$1.serials")" >&2; return 1; }
	_in=$(psql_ca "SELECT count(*) FROM certs WHERE serial IN ($(sed "s/.*/'&'/" "$T/$1.serials" | paste -sd,))")
	[ "$_in" -eq "$2" ] || { echo "# $_in in the ledger" >&2; return 1; }
	cat "$T"/drill/audit-*.log | grep -E '"event":"(issued|redelivered)"' | grep -o '"serial":"[0-9a-f]*"' |
	    cut -d'"' -f4 | sort -u >"$T/$1.audited"
	_miss=$(sort -u "$T/$1.serials" | comm -23 - "$T/$1.audited" | wc -l)
	[ "$_miss" -eq 0 ] || { echo "# $_miss without an audit line" >&2; return 1; }
}
field() { sed -n "s/.*\"$1\":\([0-9.]*\).*/\1/p" "$2"; }

replica a
replica b
check "two replicas on one database and one token directory" sh -c '[ -n "$1" ] && [ -n "$2" ]' x "$URL_a" "$URL_b"

# ---- drill 1: kill -9 of a replica while 16 clients enroll ----
KA=$(wait_child "$PID_a" 5)
load kill 300 16
wait_enrolled kill 60 15
kill -9 "$PID_a"
check "replica a killed (-9) after $(enrolled kill) of 300 enrollments" gone "$PID_a" 5
wait_exit "$LOADPID" 60; _rc=$?
check "... the load finishes within its bounds (status $_rc)" test $_rc -ne 124
check "... every client completed: 300 enrolled, none failed ($(tr -d '\n' <"$T/kill.json"))" \
    sh -c '[ "$(sed -n "s/.*\"enrolled\":\([0-9]*\).*/\1/p" "$1")" = 300 ] && [ "$(sed -n "s/.*\"failed\":\([0-9]*\).*/\1/p" "$1")" = 0 ]' x "$T/kill.json"
check "... no serial twice; each in the ledger and in an audit log" accounted kill 300
check "... replica b carried on alone" alive "$PID_b"
check "... both had issued ($(grep -c '"event":"issued"' "$T/drill/audit-a.log") by a, $(grep -c '"event":"issued"' "$T/drill/audit-b.log") by b)" \
    sh -c '[ "$(grep -c "\"event\":\"issued\"" "$1")" -gt 0 ] && [ "$(grep -c "\"event\":\"issued\"" "$2")" -gt 0 ]' x \
    "$T/drill/audit-a.log" "$T/drill/audit-b.log"
check "... and its keyholder went with it (pid $KA)" gone "$KA" 5

# ---- drill 2: PostgreSQL stopped and started again mid-run ----
replica a
PROBE=$("$HSMESH" ca token -c "$Y" --id spiffe://example.org/probe)
openssl ecparam -name prime256v1 -genkey -noout -out "$T/probe.key" 2>/dev/null
load pg 200 16
wait_enrolled pg 40 15
pg_stop_server
check "PostgreSQL stopped after $(enrolled pg) of 200 enrollments" sh -c '! psql -X -d "$1" -c "select 1" >/dev/null 2>&1' x "$DBURI"
t0=$(date +%s)
timeout 20 openssl cmp -server "${URL_a#http://}" -cmd ir -implicit_confirm -ref "${PROBE%%:*}" \
    -secret "pass:${PROBE#*:}" -newkey "$T/probe.key" -subject /CN=x -trusted "$ROOT" -certout "$T/x.pem" >"$T/probe.out" 2>&1
t1=$(date +%s)
check "meanwhile a replica answers systemFailure in $((t1 - t0)) s: $(grep -o 'PKIFailureInfo: [a-zA-Z]*; StatusString: "[^"]*"' "$T/probe.out" | head -n 1)" \
    sh -c 'grep -q "systemFailure" "$1" && [ "$2" -lt 10 ]' x "$T/probe.out" $((t1 - t0))
both_alive() { alive "$PID_a" && alive "$PID_b"; }
check "... both replicas keep running" both_alive
sleep 1
check "PostgreSQL started again" pg_restart_server
wait_exit "$LOADPID" 60; _rc=$?
check "... the load finishes within its bounds (status $_rc)" test $_rc -ne 124
check "... every client completed: 200 enrolled, none failed ($(tr -d '\n' <"$T/pg.json"))" \
    sh -c '[ "$(sed -n "s/.*\"enrolled\":\([0-9]*\).*/\1/p" "$1")" = 200 ] && [ "$(sed -n "s/.*\"failed\":\([0-9]*\).*/\1/p" "$1")" = 0 ]' x "$T/pg.json"
check "... some of them waited for the database (retried $(field retried "$T/pg.json"))" test "$(field retried "$T/pg.json")" -gt 0
check "... no serial twice; each in the ledger and in an audit log" accounted pg 200
check "... the replicas reconnected by themselves" sh -c 'grep -q "ledger: connected to PostgreSQL" "$1" && grep -q "ledger: connected to PostgreSQL" "$2"' x "$T/a.log" "$T/b.log"
check "... and the probe's token, refused meanwhile, still enrolls" quiet timeout 20 openssl cmp \
    -server "${URL_b#http://}" -cmd ir -implicit_confirm -ref "${PROBE%%:*}" -secret "pass:${PROBE#*:}" \
    -newkey "$T/probe.key" -subject /CN=x -trusted "$ROOT" -certout "$T/probe.pem"

for r in a b; do
	eval "p=\$PID_$r"
	kill -TERM "$p"
	check "replica $r stops cleanly on SIGTERM" wait_exit "$p" 10
done
grep -h -A20 -E "ERROR: (Address|Leak)Sanitizer|runtime error" "$T"/*.log | sed "s/^/# /" | head -n 40
done_testing
