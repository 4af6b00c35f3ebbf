#!/bin/bash
# bench/enroll.sh BUILD_DIR OUT_JSONL - enrollment throughput of `hsmesh ca
# serve` (issue 17, item 4), one JSON object a line in OUT_JSONL.
#
# The CA key in a SoftHSM2 token; clients are bench/cmpload (one process,
# CLIENTS threads, ir with join tokens and implicit confirmation through the
# agent's CMP client; tokens put into the ledger beforehand, keys made
# beforehand). For each ledger (SQLite file; PostgreSQL 15 from
# tests/integration/pg.sh, with fsync on like SQLite's synchronous=FULL),
# 1 and 2 replicas (`ca serve` processes on the one database and the one
# token directory, replica i pinned to CPU i-1 with taskset, its keyholder
# with it) and 4 and 16 clients:
#   {"backend":..,"replicas":..,"clients":..,"enrolled":..,"per_s":..,
#    "p50_ms":..,"p99_ms":..,"client_cpu_ms":..,"ca_cpu_ms":..,
#    "front_cpu_ms":..,"kh_cpu_ms":..,"db_cpu_ms":..}
# CPU per enrollment from /proc/PID/stat (utime + stime) of every front and
# keyholder (ca_cpu_ms = front + keyholder), of the PostgreSQL server's
# processes (db_cpu_ms), and of cmpload itself (client_cpu_ms). And the idle
# memory of one replica (front + keyholder, after start, before any load):
#   {"rss":"idle","backend":..,"vmrss_kib":..,"pss_kib":..,"private_kib":..}
# QUICK=1: 2 s per run instead of 6, 16 clients only.
set -u
B=$(cd "${1:?usage: bench/enroll.sh BUILD_DIR OUT_JSONL}" && pwd)
OUT=${2:?usage: bench/enroll.sh BUILD_DIR OUT_JSONL}
ROOTDIR=$(cd "$(dirname "$0")/.." && pwd)
QUICK=${QUICK:-0}
if [ "$QUICK" = 1 ]; then SECS=2; NTOK=1500; CLIENTS=16; else SECS=6; NTOK=4000; CLIENTS="4 16"; fi
LOAD=$B/bench/cmpload
. "$ROOTDIR/tests/integration/lib.sh" "$B/hsmesh"
. "$ROOTDIR/tests/integration/pg.sh"
trap '_cleanup; pg_stop' EXIT INT TERM
say() { echo "enroll: [$(printf %3d $SECONDS)s] $*" >&2; }
: >"$OUT"
[ -x "$LOAD" ] || { echo "bench/enroll.sh: $LOAD is missing (make bench builds it)" >&2; exit 1; }
NCPU=$(nproc)
HZ=$(getconf CLK_TCK)

ca_setup ca ec-p256
yaml_set "$T/ca.yaml" listen 127.0.0.1:0
"$HSMESH" ca init -c "$T/ca.yaml" >/dev/null || exit 1
"$HSMESH" ca token -c "$T/ca.yaml" --id spiffe://example.org/warm >/dev/null || exit 1
ROOT=$T/ca/root.pem
backends="sqlite"
if pg_available && PG_FSYNC=on pg_start; then
	pg_createdb bench && backends="sqlite postgresql"
else
	say "PostgreSQL not available: SQLite only"
fi

# ticks PID...: utime + stime of the processes, in clock ticks
ticks() { _t=0; for _p in "$@"; do set -- $(sed 's/.*) //' /proc/$_p/stat 2>/dev/null); _t=$((_t + ${12:-0} + ${13:-0})); done; echo $_t; }
# the PostgreSQL server's processes
pg_pids() { _m=$(head -n 1 "$PG_DIR/data/postmaster.pid" 2>/dev/null); [ -n "$_m" ] && { echo "$_m"; children "$_m"; }; }
field() { sed -n "s/.*\"$1\":\([0-9.]*\).*/\1/p" <<<"$2"; }
ms_per() { awk -v t="$1" -v n="$2" -v hz="$HZ" 'BEGIN { if (n > 0) printf "%.3f", t * 1000 / hz / n; else print 0 }'; }

# replicas BACKEND N: N `ca serve` on the backend's ledger; FRONTS, KHS, URLS
FRONTS=""; KHS=""; URLS=""
replicas() {
	FRONTS=""; KHS=""; URLS=""
	for i in $(seq "$2"); do
		sed -e '/^database:/d' -e '/^audit_log:/d' "$T/ca.yaml" >"$T/r$i.yaml"
		if [ "$1" = postgresql ]; then echo "database: \"$(pg_uri bench)\"" >>"$T/r$i.yaml"
		else echo "database: $T/ca/ledger.db" >>"$T/r$i.yaml"; fi
		echo "audit_log: $T/ca/audit-$i.log" >>"$T/r$i.yaml"
		rm -f "$T/r$i.port"
		taskset -c $(((i - 1) % NCPU)) "$HSMESH" ca serve -c "$T/r$i.yaml" --port-file "$T/r$i.port" 2>>"$T/serve.log" &
		FRONTS="$FRONTS $!"; track $!
	done
	for i in $(seq "$2"); do
		for _ in $(seq 200); do [ -s "$T/r$i.port" ] && break; sleep 0.05; done
		URLS="$URLS http://127.0.0.1:$(cat "$T/r$i.port")/.well-known/cmp"
	done
	for f in $FRONTS; do KHS="$KHS $(wait_child "$f" 5)"; done
}
stop_replicas() { for f in $FRONTS; do kill -TERM "$f" 2>/dev/null; done; for f in $FRONTS; do wait "$f" 2>/dev/null; done; FRONTS=""; }
db_of() { if [ "$1" = postgresql ]; then pg_uri bench; else echo "$T/ca/ledger.db"; fi; }

# idle memory of one replica, front + keyholder
for be in $backends; do
	replicas "$be" 1
	sleep 1
	rss=0; pss=0; priv=0
	for p in $FRONTS $KHS; do
		rss=$((rss + $(awk '/^VmRSS/ {print $2}' /proc/$p/status)))
		pss=$((pss + $(awk '/^Pss:/ {print $2}' /proc/$p/smaps_rollup)))
		priv=$((priv + $(awk '/^Private_(Clean|Dirty):/ {s += $2} END {print s + 0}' /proc/$p/smaps_rollup)))
	done
	echo "{\"rss\":\"idle\",\"backend\":\"$be\",\"vmrss_kib\":$rss,\"pss_kib\":$pss,\"private_kib\":$priv}" >>"$OUT"
	say "idle $be: VmRSS $rss KiB, PSS $pss KiB, private $priv KiB (front + keyholder)"
	stop_replicas
done

for be in $backends; do
	for nrep in 1 2; do
		for clients in $CLIENTS; do
			"$LOAD" tokens "$(db_of "$be")" "$T/ca/token.key" "spiffe://example.org/$be/$nrep/$clients" "$NTOK" \
			    >"$T/tok" 2>"$T/tok.err" || { say "tokens: $(tail -n 1 "$T/tok.err")"; continue; }
			replicas "$be" "$nrep"
			pgp=""; [ "$be" = postgresql ] && pgp=$(pg_pids)
			f0=$(ticks $FRONTS); k0=$(ticks $KHS); d0=$(ticks $pgp)
			# shellcheck disable=SC2086
			j=$("$LOAD" run "$ROOT" "$T/tok" "$clients" "$SECS" $URLS 2>"$T/load.err")
			f1=$(ticks $FRONTS); k1=$(ticks $KHS); d1=$(ticks $pgp)
			stop_replicas
			n=$(field enrolled "$j")
			[ -n "$n" ] || { say "$be $nrep/$clients: cmpload: $(tail -n 1 "$T/load.err")"; continue; }
			fr=$(ms_per $((f1 - f0)) "$n"); kh=$(ms_per $((k1 - k0)) "$n"); db=$(ms_per $((d1 - d0)) "$n")
			ca=$(awk -v a="$fr" -v b="$kh" 'BEGIN { printf "%.3f", a + b }')
			echo "{\"backend\":\"$be\",\"replicas\":$nrep,${j#\{}" | sed "s/}$/,\"ca_cpu_ms\":$ca,\"front_cpu_ms\":$fr,\"kh_cpu_ms\":$kh,\"db_cpu_ms\":$db}/" >>"$OUT"
			say "$be, $nrep replica(s), $clients clients: $(field per_s "$j")/s, CA $ca ms (front $fr + keyholder $kh), db $db ms, client $(field client_cpu_ms "$j") ms per enrollment"
		done
	done
done
