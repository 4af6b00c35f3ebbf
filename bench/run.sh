#!/bin/bash
# bench/run.sh BUILD_DIR - `make bench`: the same workloads through each
# contender, in one run on this machine, on loopback.
#
#   direct    wrk -> app (no proxy)
#   hsmesh    wrk -> hsmesh proxy (outbound) =mTLS=> hsmesh proxy (inbound) -> app
#             keys in a SoftHSM2 token, signatures through the node agent
#   haproxy   the same pair with HAProxy (mode tcp, keys in files, as users run it)
#   stunnel   the same pair with stunnel
#
# Every contender runs the same backend (`hsmesh app serve`) and the same
# client (wrk; curl for bulk). Each measurement is repeated REPS times and
# the median reported. Results: bench/results/RESULTS.md, results.json,
# keepalive.png, and the README's benchmark table.
#
# Measured so far (issue 5): keep-alive requests/s with p50/p99 at 100 and
# 1000 connections (1 KiB responses) and requests per proxy CPU-second;
# new mutual-TLS connections/s with and without session resumption; bulk
# MB/s for a 100 MB body; proxy RSS idle and at 1000 open connections.
# Not yet: the key path, callgrind instructions per handshake, the slow
# token (see RESULTS.md).
#
# QUICK=1: one repetition of 2 s each (a smoke run). ONLY="hsmesh haproxy":
# some contenders only.
set -u
B=${1:-build}
case $B in /*) ;; *) B=$(pwd)/$B ;; esac
ROOTDIR=$(cd "$(dirname "$0")/.." && pwd)
QUICK=${QUICK:-0}
if [ "$QUICK" = 1 ]; then DUR=2; REPS=1; BULK_MB=20; else DUR=8; REPS=3; BULK_MB=100; fi
OUT=$ROOTDIR/bench/results
mkdir -p "$OUT"
. "$ROOTDIR/tests/integration/lib.sh" "$B/hsmesh"
ME=$(id -u)
JSON=$T/results.jsonl
: >"$JSON"
say() { echo "bench: $*" >&2; }

for tool in wrk haproxy stunnel curl gnuplot; do
	command -v $tool >/dev/null 2>&1 || { echo "bench: $tool is missing (run make bench as root)" >&2; exit 1; }
done

# ---- one CA, file keys for HAProxy/stunnel, token keys for hsmesh --------------
new_token ca; printf '1234\n' >"$T/ca.pin"
write_ca_yaml "$T/ca.yaml" ca "$T/ca.pin"
"$HSMESH" ca init -c "$T/ca.yaml" >/dev/null
"$HSMESH" ca serve -c "$T/ca.yaml" --port-file "$T/ca.port" 2>"$T/ca.log" &
track $!
for _ in $(seq 100); do [ -s "$T/ca.port" ] && break; sleep 0.05; done
ROOT=$T/ca/root.pem
for w in a b; do
	openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$T/f$w.key" \
	    -subj "/CN=$w" -out "$T/f$w.csr" 2>/dev/null
	"$HSMESH" ca issue -c "$T/ca.yaml" --csr "$T/f$w.csr" --id "spiffe://example.org/$w" \
	    --ttl 2h >"$T/f$w.pem"
	cat "$T/f$w.pem" "$T/f$w.key" >"$T/f$w.combined"
	"$HSMESH" ca token -c "$T/ca.yaml" --id "spiffe://example.org/$w" >"$T/$w.join"
done
new_token node; printf '1234\n' >"$T/node.pin"
cat >"$T/agent.yaml" <<EOF
token:
  module: $SOFTHSM_MODULE
  uri: "pkcs11:token=node"
  pin_file: $T/node.pin
ca:
  url: http://127.0.0.1:$(cat "$T/ca.port")/.well-known/cmp
  root: $ROOT
state_dir: $T/state
socket: $T/agent.sock
workloads:
  - id: spiffe://example.org/a
    uid: $ME
    join_token_file: $T/a.join
  - id: spiffe://example.org/b
    uid: $ME
    join_token_file: $T/b.join
EOF
"$HSMESH" agent -c "$T/agent.yaml" 2>"$T/agent.log" &
track $!
for _ in $(seq 200); do [ "$(grep -c enrolled "$T/agent.log" 2>/dev/null)" -ge 2 ] && break; sleep 0.1; done

"$HSMESH" app serve --listen 127.0.0.1:0 --name bench --port-file "$T/app.port" 2>/dev/null &
track $!
for _ in $(seq 100); do [ -s "$T/app.port" ] && break; sleep 0.05; done
APP=$(cat "$T/app.port")

# free_port: a port below the ephemeral range (where wrk's thousands of
# client sockets would collide with it) that nothing listens on now
free_port() {
	while :; do
		p=$((20000 + $(od -An -N2 -tu2 /dev/urandom | tr -d ' ') % 12000))
		curl -s -o /dev/null --max-time 1 "http://127.0.0.1:$p/" || [ $? -ne 7 ] || { echo $p; return; }
	done
}

# ---- contenders: start_X RESUME sets ENTRY (plaintext port) and PIDS ------------
PIDS=""; ENTRY=""
stop_pair() { for p in $PIDS; do kill "$p" 2>/dev/null; done; for p in $PIDS; do wait "$p" 2>/dev/null; done; PIDS=""; }
wait_port() { for _ in $(seq 100); do curl -s -o /dev/null "http://127.0.0.1:$1/" && return 0; sleep 0.05; done; return 1; }

start_direct() { ENTRY=$APP; PIDS=""; }

start_hsmesh() {
	pa=$(free_port); pb=$(free_port)
	cat >"$T/pb.yaml" <<EOF
agent: { socket: $T/agent.sock, id: "spiffe://example.org/b" }
workers: 2
tls: { tickets: $([ "$1" = 1 ] && echo true || echo false) }
inbound:
  - { name: in, listen: "127.0.0.1:$pb", forward_to: "127.0.0.1:$APP", allow: ["spiffe://example.org/a"] }
EOF
	cat >"$T/pa.yaml" <<EOF
agent: { socket: $T/agent.sock, id: "spiffe://example.org/a" }
workers: 2
outbound:
  - { name: out, listen: "127.0.0.1:$pa", connect: "127.0.0.1:$pb", expect_id: "spiffe://example.org/b" }
EOF
	"$HSMESH" proxy -c "$T/pb.yaml" 2>"$T/pb.log" & p1=$!
	"$HSMESH" proxy -c "$T/pa.yaml" 2>"$T/pa.log" & p2=$!
	PIDS="$p1 $p2"; track $p1 $p2; ENTRY=$pa
	for _ in $(seq 100); do grep -q "ready:" "$T/pa.log" 2>/dev/null && grep -q "ready:" "$T/pb.log" && break; sleep 0.1; done
}

# the global and defaults sections of both HAProxy processes (L4, like the sidecars)
ha_head() {
	cat <<EOF
global
  nbthread 2
  maxconn 8000
defaults
  mode tcp
  timeout connect 5s
  timeout client 300s
  timeout server 300s
EOF
}

start_haproxy() {
	pa=$(free_port); pb=$(free_port)
	reuse=$([ "$1" = 1 ] && echo "" || echo "no-ssl-reuse")
	{ ha_head; cat <<EOF
frontend in
  bind 127.0.0.1:$pb ssl crt $T/fb.combined ca-file $ROOT verify required ssl-min-ver TLSv1.3
  default_backend app
backend app
  server app 127.0.0.1:$APP
EOF
	} >"$T/hb.cfg"
	{ ha_head; cat <<EOF
frontend out
  bind 127.0.0.1:$pa
  default_backend peer
backend peer
  server b 127.0.0.1:$pb ssl crt $T/fa.combined ca-file $ROOT verify required ssl-min-ver TLSv1.3 $reuse
EOF
	} >"$T/ha.cfg"
	haproxy -f "$T/hb.cfg" -db 2>>"$T/hb.log" & p1=$!
	haproxy -f "$T/ha.cfg" -db 2>>"$T/ha.log" & p2=$!
	PIDS="$p1 $p2"; track $p1 $p2; ENTRY=$pa
	wait_port "$pa"
}

start_stunnel() {
	pa=$(free_port); pb=$(free_port)
	cat >"$T/sb.conf" <<EOF
foreground = yes
pid =
[in]
accept = 127.0.0.1:$pb
connect = 127.0.0.1:$APP
cert = $T/fb.pem
key = $T/fb.key
CAfile = $ROOT
verifyChain = yes
requireCert = yes
sslVersionMin = TLSv1.3
EOF
	cat >"$T/sa.conf" <<EOF
foreground = yes
pid =
[out]
client = yes
accept = 127.0.0.1:$pa
connect = 127.0.0.1:$pb
cert = $T/fa.pem
key = $T/fa.key
CAfile = $ROOT
verifyChain = yes
sslVersionMin = TLSv1.3
EOF
	stunnel "$T/sb.conf" 2>>"$T/sb.log" & p1=$!
	stunnel "$T/sa.conf" 2>>"$T/sa.log" & p2=$!
	PIDS="$p1 $p2"; track $p1 $p2; ENTRY=$pa
	wait_port "$pa"
}

# ---- measurements -------------------------------------------------------------------
cpu_ticks() { t=0; for p in $PIDS; do set -- $(sed 's/.*) //' /proc/$p/stat 2>/dev/null); t=$((t + ${12:-0} + ${13:-0})); done; echo $t; }
rss_kib() { r=0; for p in $PIDS; do v=$(awk '/^VmRSS/ {print $2}' /proc/$p/status 2>/dev/null); r=$((r + ${v:-0})); done; echo $r; }
median() { sort -g | awk '{a[NR]=$1} END {if (NR == 0) print 0; else print a[int((NR + 1) / 2)]}'; }
# wrk_ms LATENCY: "1.23ms" / "456.00us" / "1.2s" in ms
to_ms() { awk -v v="$1" 'BEGIN { n = v + 0; if (v ~ /us$/) n /= 1000; else if (v ~ /ms$/) n += 0; else if (v ~ /s$/) n *= 1000; printf "%.3f", n }'; }
record() { echo "$1" >>"$JSON"; }

# keepalive NAME CONNS
keepalive() {
	rps=""; p50=""; p99=""; eff=""
	for _ in $(seq $REPS); do
		c0=$(cpu_ticks)
		wrk -t2 -c"$2" -d"${DUR}s" --timeout 10s --latency "http://127.0.0.1:$ENTRY/bytes?n=1024" >"$T/wrk.out" 2>&1
		c1=$(cpu_ticks)
		r=$(awk '/^Requests\/sec/ {print $2}' "$T/wrk.out")
		n=$(awk '/requests in/ {print $1}' "$T/wrk.out")
		rps="$rps ${r:-0}"
		p50="$p50 $(to_ms "$(awk '$1 == "50%" {print $2}' "$T/wrk.out")")"
		p99="$p99 $(to_ms "$(awk '$1 == "99%" {print $2}' "$T/wrk.out")")"
		errs=$(grep -c "Socket errors\|Non-2xx" "$T/wrk.out")
		if [ -n "$PIDS" ] && [ $((c1 - c0)) -gt 0 ]; then
			eff="$eff $(awk -v n="${n:-0}" -v t=$((c1 - c0)) -v hz="$(getconf CLK_TCK)" 'BEGIN {printf "%.0f", n / (t / hz)}')"
		fi
	done
	rps=$(echo $rps | tr ' ' '\n' | median); p50=$(echo $p50 | tr ' ' '\n' | median)
	p99=$(echo $p99 | tr ' ' '\n' | median); eff=$(echo ${eff:-0} | tr ' ' '\n' | median)
	say "$1 keepalive c=$2: $rps req/s p50 $p50 ms p99 $p99 ms, $eff req per proxy CPU-s (errors: $errs)"
	record "{\"contender\":\"$1\",\"test\":\"keepalive\",\"conns\":$2,\"rps\":$rps,\"p50_ms\":$p50,\"p99_ms\":$p99,\"req_per_proxy_cpu_s\":$eff,\"error_lines\":$errs}"
}

# newconn NAME RESUME: each request a new connection through the pair
newconn() {
	rps=""
	for _ in $(seq $REPS); do
		wrk -t2 -c32 -d"${DUR}s" --timeout 10s -H "Connection: close" "http://127.0.0.1:$ENTRY/bytes?n=1024" >"$T/wrk.out" 2>&1
		rps="$rps $(awk '/^Requests\/sec/ {print $2}' "$T/wrk.out")"
	done
	rps=$(echo $rps | tr ' ' '\n' | median)
	say "$1 new connections (resumption $2): $rps conn/s"
	record "{\"contender\":\"$1\",\"test\":\"newconn\",\"resume\":$2,\"cps\":$rps}"
}

bulk() {
	mbs=""
	for _ in $(seq $REPS); do
		s=$(curl -s -o /dev/null -w '%{speed_download}' --max-time 60 \
		    "http://127.0.0.1:$ENTRY/bytes?n=$((BULK_MB * 1000000))")
		mbs="$mbs $(awk -v s="$s" 'BEGIN {printf "%.1f", s / 1000000}')"
	done
	mbs=$(echo $mbs | tr ' ' '\n' | median)
	say "$1 bulk ${BULK_MB} MB: $mbs MB/s"
	record "{\"contender\":\"$1\",\"test\":\"bulk\",\"mb\":$BULK_MB,\"mbps\":$mbs}"
}

memory() {
	[ -n "$PIDS" ] || return 0
	curl -s -o /dev/null "http://127.0.0.1:$ENTRY/"
	idle=$(rss_kib)
	wrk -t2 -c1000 -d6s --timeout 10s "http://127.0.0.1:$ENTRY/slow?ms=5000" >/dev/null 2>&1 &
	w=$!
	sleep 3
	busy=$(rss_kib)
	wait $w
	per=$(awk -v i="$idle" -v b="$busy" 'BEGIN {printf "%.1f", (b - i) / 1000}')
	say "$1 RSS (both proxies): idle $idle KiB, at 1000 connections $busy KiB: $per KiB per connection"
	record "{\"contender\":\"$1\",\"test\":\"memory\",\"idle_kib_pair\":$idle,\"busy_kib_pair\":$busy,\"kib_per_conn_pair\":$per}"
}

for c in ${ONLY:-direct hsmesh haproxy stunnel}; do
	say "=== $c"
	start_$c 1
	memory $c
	if ! curl -s -o /dev/null --max-time 5 "http://127.0.0.1:$ENTRY/"; then
		say "$c does not forward; its logs:"
		tail -n 5 "$T"/*.log >&2
	fi
	keepalive $c 100
	keepalive $c 1000
	[ $c != direct ] && newconn $c 1
	bulk $c
	stop_pair
	if [ $c = hsmesh ] || [ $c = haproxy ]; then
		start_$c 0
		newconn $c 0
		stop_pair
	fi
done

# ---- report ---------------------------------------------------------------------------
get() { # get CONTENDER TEST FIELD [KEY=VALUE]
	grep "\"contender\":\"$1\",\"test\":\"$2\"" "$JSON" | { [ -n "${4:-}" ] && grep "$4" || cat; } |
	    head -n 1 | sed "s/.*\"$3\":\([0-9.]*\).*/\1/"
}
ratio() { awk -v a="${1:-0}" -v b="${2:-0}" 'BEGIN { if (b + 0 == 0) print "-"; else printf "%.2f", a / b }'; }
met() { awk -v v="$1" -v t="$2" -v dir="$3" 'BEGIN { if (v == "-") print "n/a"; else if ((dir == "ge" && v + 0 >= t + 0) || (dir == "le" && v + 0 <= t + 0)) print "met"; else print "NOT met" }'; }
{
	echo "["; sed '$!s/$/,/' "$JSON"; echo "]"
} >"$OUT/results.json"
R=$OUT/RESULTS.md
{
	echo "# hsmesh benchmarks"
	echo
	echo "Run $(date -u +%Y-%m-%dT%H:%MZ) by \`make bench\`$( [ "$QUICK" = 1 ] && echo " (QUICK=1: one short repetition)"), on $(nproc) cores shared by wrk, the proxies and the backend;"
	echo "median of $REPS run(s) of ${DUR} s. Loopback only. hsmesh keys are in SoftHSM2 (signatures through the agent);"
	echo "HAProxy ($(haproxy -v | head -n 1 | awk '{print $3}')) and stunnel ($(stunnel -version 2>&1 | awk '/^stunnel/ {print $2; exit}')) keys are in files. All pairs: TLS 1.3, mutual, mode tcp."
	echo
	echo "## Keep-alive, 1 KiB responses"
	echo
	echo "| contender | conns | req/s | × HAProxy | p50 ms | p99 ms | req per proxy CPU-s |"
	echo "|---|---|---|---|---|---|---|"
	for n in 100 1000; do
		for c in direct hsmesh haproxy stunnel; do
			echo "| $c | $n | $(get $c keepalive rps "\"conns\":$n,") | $(ratio "$(get $c keepalive rps "\"conns\":$n,")" "$(get haproxy keepalive rps "\"conns\":$n,")") | $(get $c keepalive p50_ms "\"conns\":$n,") | $(get $c keepalive p99_ms "\"conns\":$n,") | $(get $c keepalive req_per_proxy_cpu_s "\"conns\":$n,") |"
		done
	done
	echo
	echo "## New mutual-TLS connections/s (32 clients, a new connection per request)"
	echo
	echo "| contender | resumption | conn/s | × HAProxy |"
	echo "|---|---|---|---|"
	for c in hsmesh haproxy stunnel; do
		for r in 1 0; do
			v=$(get $c newconn cps "\"resume\":$r,"); [ -n "$v" ] || continue
			echo "| $c | $([ $r = 1 ] && echo yes || echo no) | $v | $(ratio "$v" "$(get haproxy newconn cps "\"resume\":$r,")") |"
		done
	done
	echo
	echo "## Bulk (${BULK_MB} MB body) and memory"
	echo
	echo "| contender | MB/s | × HAProxy | RSS idle, pair (KiB) | RSS at 1000 conns, pair (KiB) | KiB per connection, pair |"
	echo "|---|---|---|---|---|---|"
	for c in direct hsmesh haproxy stunnel; do
		echo "| $c | $(get $c bulk mbps) | $(ratio "$(get $c bulk mbps)" "$(get haproxy bulk mbps)") | $(get $c memory idle_kib_pair) | $(get $c memory busy_kib_pair) | $(get $c memory kib_per_conn_pair) |"
	done
	echo
	echo "## Targets (issue 5)"
	echo
	k100=$(ratio "$(get hsmesh keepalive rps '"conns":100,')" "$(get haproxy keepalive rps '"conns":100,')")
	k1000=$(ratio "$(get hsmesh keepalive rps '"conns":1000,')" "$(get haproxy keepalive rps '"conns":1000,')")
	p100=$(ratio "$(get hsmesh keepalive p99_ms '"conns":100,')" "$(get haproxy keepalive p99_ms '"conns":100,')")
	p1000=$(ratio "$(get hsmesh keepalive p99_ms '"conns":1000,')" "$(get haproxy keepalive p99_ms '"conns":1000,')")
	nc=$(ratio "$(get hsmesh newconn cps '"resume":1,')" "$(get haproxy newconn cps '"resume":1,')")
	nc0=$(ratio "$(get hsmesh newconn cps '"resume":0,')" "$(get haproxy newconn cps '"resume":0,')")
	bk=$(ratio "$(get hsmesh bulk mbps)" "$(get haproxy bulk mbps)")
	idle=$(awk -v v="$(get hsmesh memory idle_kib_pair)" 'BEGIN {printf "%.0f", v / 2}')
	per=$(awk -v v="$(get hsmesh memory kib_per_conn_pair)" 'BEGIN {printf "%.1f", v / 2}')
	echo "| target | measured | |"
	echo "|---|---|---|"
	echo "| keep-alive req/s ≥ 1.2× HAProxy at 100 conns | ${k100}× | $(met "$k100" 1.2 ge) |"
	echo "| keep-alive req/s ≥ 1.2× HAProxy at 1000 conns | ${k1000}× | $(met "$k1000" 1.2 ge) |"
	echo "| p99 ≤ HAProxy's at 100 / 1000 conns | ${p100}× / ${p1000}× | $(met "$p100" 1 le) / $(met "$p1000" 1 le) |"
	echo "| new mTLS conn/s ≥ 0.9× HAProxy (with / without resumption) | ${nc}× / ${nc0}× | $(met "$nc" 0.9 ge) / $(met "$nc0" 0.9 ge) |"
	echo "| bulk ≥ 1.0× HAProxy | ${bk}× | $(met "$bk" 1.0 ge) |"
	echo "| RSS ≤ 5 MiB idle (one proxy, half the pair) | ${idle} KiB | $(met "$idle" 5120 le) |"
	echo "| ≤ 40 KiB per open connection (one proxy) | ${per} KiB | $(met "$per" 40 le) |"
	echo "| instructions per inbound handshake ≤ 1.1× s_server | not measured yet | n/a |"
	echo "| slow token (5 ms, 20 ms) ≥ 0.8× no delay at 64 clients | not measured yet | n/a |"
	echo
	echo "Per-connection memory is measured with 1000 connections each waiting on \`/slow?ms=5000\`"
	echo "(RSS of both proxies of the pair, at 1000 connections minus idle, divided by 1000)."
	echo "Requests per proxy CPU-second divide the requests wrk completed by the CPU time"
	echo "(utime + stime from /proc/PID/stat) both proxies of the pair used during the run."
} >"$R"

# plot: keep-alive req/s per contender
awk -F'|' '/^\| [a-z]+ \| (100|1000) \|/ { gsub(/ /, "", $2); gsub(/ /, "", $3); gsub(/ /, "", $4); print $2, $3, $4 }' "$R" >"$T/ka.dat"
gnuplot <<EOF 2>/dev/null
set terminal png size 800,450
set output "$OUT/keepalive.png"
set title "Keep-alive requests/s, 1 KiB responses ($(nproc) cores shared)"
set style data histogram
set style fill solid 0.8
set ylabel "requests/s"
set key top right
plot "< awk '\$2 == 100' $T/ka.dat" using 3:xtic(1) title "100 connections", \
     "< awk '\$2 == 1000' $T/ka.dat" using 3 title "1000 connections"
EOF

# README: the table between "## Benchmarks" and the next heading
if [ "$QUICK" != 1 ]; then
	awk -v res="$R" '
	/^## Benchmarks/ { print; print ""; print "From `make bench` (details, targets and method: [bench/results/RESULTS.md](bench/results/RESULTS.md)):"; print "";
		while ((getline l < res) > 0) { if (l ~ /^## Keep-alive/) on = 1; else if (l ~ /^## New/) on = 0; if (on && l ~ /^\|/) print l }
		print ""; skip = 1; next }
	/^## / { skip = 0 }
	!skip' "$ROOTDIR/README.md" >"$T/README.md" && cp "$T/README.md" "$ROOTDIR/README.md"
fi
say "results in $R"
cat "$R"
