#!/bin/bash
# bench/kaprofile.sh BUILD_DIR [CONNS...] - what one keep-alive request costs
# each proxy of the hsmesh pair and of the HAProxy pair, in counts that do
# not depend on how busy the machine is: system calls per request by kind
# (perf's syscall tracepoints), epoll events per epoll_wait, and user-space
# instructions per request (callgrind). The layout of make bench's equal
# budget part: one worker each (HAProxy nbthread 1), resumption on.
#
# For each CONNS (default 100 1000), build/bench/kacount opens CONNS
# connections through the outbound proxy, one request each (warm-up), and
# only then is the counting started, for exactly REQS (default 20000)
# more requests (callgrind: CG_REQS, default 4000). Per CONNS, per pair:
# the CPU of the set-up (pair, for hsmesh with agent and keyholder) and the
# inbound's full/resumed handshakes, steady CPU per request (utime + stime),
# system calls per request (perf), epoll batches and read/write sizes
# (strace), then both pairs under callgrind for instructions per request.
# Not part of make check or make bench; a few minutes (callgrind at 1000
# connections: about ten). Needs build/bench/kacount (`make bench` builds it).
#
#   PIN=1        pairs, agent and keyholder on CPU 0, kacount and the app on
#                CPU 1 (make bench's equal-budget layout)
#   NO_PERF=1    callgrind only;  NO_CG=1: no callgrind;  NO_HAPROXY=1: hsmesh only
#   CG_OPTS=...  more valgrind options (e.g. --cache-sim=yes --LL=1048576,8,64)
#   SETUP_IR=1   callgrind instructions per resumed connection set-up instead
#   KPROF=1      perf cpu-clock profile of the pair (objects, top symbols) and
#                steady CPU per request, only
#   WRK=1        make bench's budget measurement (wrk -t1, 8 s, set-up in the
#                window), twice per pair, only
#   SLOW=1       a 4 MB/s reader of a 24 MB response and a 300 MB bulk
#                transfer through the hsmesh pair, with its RSS, only
#   IPI=1        per request and CPU (perf, system-wide): IPIs sent, wake-ups,
#                context switches, for each pair twice, only (a wake-up of an
#                idle CPU is an IPI, which on a VM costs the sender a VM exit)
#   ALT=BUILD    steady CPU per request of this hsmesh (hsmeshA), of BUILD's
#                (hsmeshB) and of HAProxy, alternating, ABREPS (default 3) times, only
#   KEEP=DIR     keep the callgrind profiles in DIR
# Rates printed are wall-clock and only as good as the machine is quiet.
set -u
B=${1:-build}
case $B in /*) ;; *) B=$(pwd)/$B ;; esac
shift
CONNS_LIST=${*:-100 1000}
REQS=${REQS:-20000}
CG_REQS=${CG_REQS:-4000}
# PIN=1: the pairs on CPU 0, kacount and the app on CPU 1 (make bench's equal budget layout)
if [ "${PIN:-0}" = 1 ]; then PPIN="taskset -c 0"; KPIN="taskset -c 1"; else PPIN=""; KPIN=""; fi
ROOTDIR=$(cd "$(dirname "$0")/.." && pwd)
. "$ROOTDIR/tests/integration/lib.sh" "$B/hsmesh"
. "$ROOTDIR/bench/mesh.sh"
ME=$(id -u)
KAC=$B/bench/kacount
[ -x "$KAC" ] || { echo "kaprofile: $KAC is missing (make $KAC)" >&2; exit 1; }
say() { echo "kaprofile: $*" >&2; }

# ---- a CA, the node agent (keys in SoftHSM2), file keys for HAProxy, the app ----
mesh_setup
cat >"$T/agent.yaml" <<EOF
token: { module: $SOFTHSM_MODULE, uri: "pkcs11:token=node", pin_file: $T/node.pin }
ca: { url: "http://127.0.0.1:$(cat "$T/ca.port")/.well-known/cmp", root: $ROOT }
state_dir: $T/state
socket: $T/agent.sock
workloads:
  - { id: "spiffe://example.org/a", uid: $ME, join_token_file: $T/a.join }
  - { id: "spiffe://example.org/b", uid: $ME, join_token_file: $T/b.join }
EOF
$PPIN "$HSMESH" agent -c "$T/agent.yaml" 2>"$T/agent.log" &
AGENT=$!; track $AGENT
for _ in $(seq 600); do
	[ "$(grep -cE 'enrolled certificate|reusing certificate' "$T/agent.log" 2>/dev/null)" -ge 2 ] && break
	sleep 0.1
done
$KPIN "$HSMESH" app serve --listen 127.0.0.1:0 --name kap --idle-timeout 900000 --port-file "$T/app.port" 2>/dev/null &
track $!
for _ in $(seq 100); do [ -s "$T/app.port" ] && break; sleep 0.05; done
APP=$(cat "$T/app.port")
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# hsmesh_pair [PREFIX...]: start the pair (each proxy under PREFIX); sets ENTRY, PA (outbound), PB
hsmesh_pair() {
	pa=$(port); pb=$(port); MB=$(port)
	cat >"$T/pb.yaml" <<EOF
agent: { socket: $T/agent.sock, id: "spiffe://example.org/b", timeout: 30s }
workers: 1
timeouts: { handshake: 60s }
access_log: $T/pb.access
inbound:
  - { name: in, listen: "127.0.0.1:$pb", forward_to: "127.0.0.1:$APP", allow: ["spiffe://example.org/a"] }
admission: { handshake_rate: 0 }
metrics: { listen: "127.0.0.1:$MB" }
EOF
	cat >"$T/pa.yaml" <<EOF
agent: { socket: $T/agent.sock, id: "spiffe://example.org/a", timeout: 30s }
workers: 1
timeouts: { handshake: 60s }
access_log: $T/pa.access
outbound:
  - { name: out, listen: "127.0.0.1:$pa", connect: "127.0.0.1:$pb", expect_id: "spiffe://example.org/b" }
EOF
	rm -f "$T/pa.log" "$T/pb.log"
	$PPIN "$@" "$HSMESH" proxy -c "$T/pb.yaml" 2>"$T/pb.log" & PB=$!
	$PPIN "$@" "$HSMESH" proxy -c "$T/pa.yaml" 2>"$T/pa.log" & PA=$!
	track $PA $PB; ENTRY=$pa
	for _ in $(seq 1200); do grep -q "ready:" "$T/pa.log" 2>/dev/null && grep -q "ready:" "$T/pb.log" && return 0; sleep 0.1; done
	say "the hsmesh pair did not start:"; tail -n 3 "$T/pa.log" "$T/pb.log" >&2; return 1
}

haproxy_pair() {
	pa=$(port); pb=$(port)
	rm -f "$T/hb.sock"
	# head SOCKET: the global and defaults sections (a stats socket for "show info")
	ha_head() {
		printf 'global\n  nbthread 1\n  maxconn 8000\n  stats socket %s\n' "$1"
		printf 'defaults\n  mode tcp\n  timeout connect 5s\n  timeout client 300s\n  timeout server 300s\n'
	}
	{ ha_head "$T/hb.sock"
	  printf 'frontend in\n  bind 127.0.0.1:%s ssl crt %s ca-file %s verify required ssl-min-ver TLSv1.3\n  default_backend app\nbackend app\n  server app 127.0.0.1:%s\n' \
	    "$pb" "$T/fb.combined" "$ROOT" "$APP"; } >"$T/hb.cfg"
	{ ha_head "$T/ha.sock"
	  printf 'frontend out\n  bind 127.0.0.1:%s\n  default_backend peer\nbackend peer\n  server b 127.0.0.1:%s ssl crt %s ca-file %s verify required ssl-min-ver TLSv1.3\n' \
	    "$pa" "$pb" "$T/fa.combined" "$ROOT"; } >"$T/ha.cfg"
	$PPIN "$@" haproxy -f "$T/hb.cfg" -db 2>>"$T/hb.log" & PB=$!
	$PPIN "$@" haproxy -f "$T/ha.cfg" -db 2>>"$T/ha.log" & PA=$!
	track $PA $PB; ENTRY=$pa
	for _ in $(seq 600); do curl -s -o /dev/null "http://127.0.0.1:$pa/" && break; sleep 0.1; done
}

# setup NAME CONNS: CPU of the pair (hsmesh: with the agent and its keyholder)
# while CONNS connections come up, one request each, and how many of the
# inbound's handshakes were full
uticks() { t=0; for p in $1; do set -- $(sed 's/.*) //' /proc/$p/stat 2>/dev/null); t=$((t + ${12:-0})); done; echo $t; }
ticks() { t=0; for p in $1; do set -- $(sed 's/.*) //' /proc/$p/stat 2>/dev/null); t=$((t + ${12:-0} + ${13:-0})); done; echo $t; }
setup() {
	counted=$(kids $PA $PB $(case $1 in hsmesh*) echo $AGENT ;; esac))
	c0=$(ticks "$counted")
	kac_start "$2" 0 || return 1
	c1=$(ticks "$counted")
	kac_run; kac_end
	if [ "$1" = hsmesh ]; then
		hs="inbound: $(curl -s "http://127.0.0.1:$MB/metrics" | grep '^hsmesh_proxy_handshakes_total' | tr '\n' ' ')"
	else
		hs="inbound: $(python3 -c 'import socket,sys; s=socket.socket(socket.AF_UNIX); s.connect(sys.argv[1]); s.sendall(b"show info\n"); print(s.makefile().read())' "$T/hb.sock" | grep -E '^(SslFrontendSessionReuse_pct|CumSslConns|SslFrontendKeyRate)' | tr '\n' ' ')"
	fi
	printf '%-22s set-up of %d connections: %.2f ms CPU per connection; %s\n' "$1" "$2" \
	    "$(awk -v t=$((c1 - c0)) -v hz="$(getconf CLK_TCK)" -v n="$2" 'BEGIN {print t * 1000 / hz / n}')" "$hs"
}

# cpu NAME CONNS: CPU of the pair per request in the steady window (REQS
# requests after the warm-up), and the wall-clock rate (noise on a shared machine)
cpu() {
	counted=$(kids $PA $PB $(case $1 in hsmesh*) echo $AGENT ;; esac))
	kac_start "$2" "$REQS" || return 1
	c0=$(ticks "$counted"); u0=$(uticks "$counted")
	kac_run
	c1=$(ticks "$counted"); u1=$(uticks "$counted")
	kac_end
	printf '%-22s steady: %.1f us CPU per request (%.1f user) (pair%s); %s\n' "$1" \
	    "$(awk -v t=$((c1 - c0)) -v hz="$(getconf CLK_TCK)" -v n="$REQS" 'BEGIN {print t * 1e6 / hz / n}')" \
	    "$(awk -v t=$((u1 - u0)) -v hz="$(getconf CLK_TCK)" -v n="$REQS" 'BEGIN {print t * 1e6 / hz / n}')" \
	    "$(case $1 in hsmesh*) echo " + agent + keyholder" ;; esac)" "$(awk '/^done/ {printf "%.0f req/s wall", $2 / $3}' "$T/kac.out")"
}

# setup_ir NAME CONNS: callgrind Ir per connection set-up (connect, resumed
# handshake, one request) of each proxy, CONNS connections 8 at a time, after
# one connection that leaves a session to resume
setup_ir() {
	curl -s -o /dev/null --max-time 60 "http://127.0.0.1:$ENTRY/"
	rm -f "$T/kac.in" "$T/kac.out"; mkfifo "$T/kac.in"
	"$KAC" -p -c "$2" -n 0 -w 8 "127.0.0.1:$ENTRY" "/bytes?n=1024" <"$T/kac.in" >"$T/kac.out" 2>"$T/kac.err" &
	KP=$!; track $KP
	exec 3>"$T/kac.in"
	for _ in $(seq 300); do grep -q start "$T/kac.out" && break; sleep 0.1; done
	callgrind_control -z "$PA" >/dev/null; callgrind_control -z "$PB" >/dev/null
	echo go >&3
	for _ in $(seq 6000); do grep -q ready "$T/kac.out" && break; kill -0 $KP 2>/dev/null || break; sleep 0.1; done
	callgrind_control -d "$PA" >/dev/null; callgrind_control -d "$PB" >/dev/null
	kac_run; kac_end
	for p in "$PA" "$PB"; do
		f=$(ls -t "$T/cg.$p".* 2>/dev/null | head -1)
		ir=$(awk '/^(summary|totals):/ {print $2; exit}' "$f")
		printf '%-22s Ir per connection set-up %d\n' "$1 $([ "$p" = "$PA" ] && echo outbound || echo inbound)" $((ir / $2))
		[ -n "${KEEP:-}" ] && cp "$f" "$KEEP/$1.$([ "$p" = "$PA" ] && echo out || echo in).setup$2.cg"
	done
	[ "$1" = hsmesh ] && echo "   $(curl -s "http://127.0.0.1:$MB/metrics" | grep '^hsmesh_proxy_handshakes_total' | tr '\n' ' ')"
	return 0
}

# kac_start CONNS N [WARM]: kacount through ENTRY, warmed up (at most WARM
# connections warming at once; default all); its stdin is fd 3
kac_start() {
	rm -f "$T/kac.in" "$T/kac.out"; mkfifo "$T/kac.in"
	$KPIN "$KAC" -c "$1" -n "$2" -w "${3:-$1}" "127.0.0.1:$ENTRY" "/bytes?n=1024" <"$T/kac.in" >"$T/kac.out" 2>"$T/kac.err" &
	KP=$!; track $KP
	exec 3>"$T/kac.in"
	for _ in $(seq 3000); do grep -q ready "$T/kac.out" && return 0; kill -0 $KP 2>/dev/null || break; sleep 0.1; done
	say "kacount did not get ready: $(cat "$T/kac.err")"; tail -n 30 "$T"/p[ab].log "$T"/h[ab].log >&2 2>/dev/null; head -c 3000 "$T"/p[ab].access >&2 2>/dev/null; return 1
}
kac_run() {
	echo go >&3
	while ! grep -q done "$T/kac.out"; do kill -0 $KP 2>/dev/null || return 1; sleep 0.05; done
}
kac_end() { echo end >&3; exec 3>&-; wait $KP 2>/dev/null; }

EVS="raw_syscalls:sys_enter,syscalls:sys_enter_epoll_wait,syscalls:sys_enter_epoll_ctl,syscalls:sys_enter_read,syscalls:sys_enter_write,syscalls:sys_enter_recvfrom,syscalls:sys_enter_sendto,syscalls:sys_enter_readv,syscalls:sys_enter_writev,syscalls:sys_enter_clock_gettime,syscalls:sys_enter_getsockopt,syscalls:sys_enter_setsockopt,syscalls:sys_exit_epoll_wait"
# syscalls NAME CONNS: perf's counts per request for PA and PB (one line each)
syscalls() {
	kac_start "$2" "$REQS" || return 1
	perf stat -x, -e "$EVS" -p "$PA" -o "$T/perf.a" & s1=$!
	perf stat -x, -e "$EVS" -p "$PB" -o "$T/perf.b" & s2=$!
	sleep 1
	kac_run
	kill -INT $s1 $s2; wait $s1 $s2 2>/dev/null
	kac_end
	for x in a b; do
		# events per epoll_wait: the sum of its return values is not counted by perf; use strace below
		awk -F, -v n="$REQS" -v who="$1 $([ $x = a ] && echo outbound || echo inbound)" '
			/^[0-9]/ { split($3, e, ":"); k = e[2]; sub(/^sys_enter_/, "", k); if (k == "sys_enter") k = "all"; v[k] = $1 }
			END { printf "%-22s", who; for (k in v) if (k != "sys_exit_epoll_wait") printf " %s=%.2f", k, v[k] / n; printf "\n" }' "$T/perf.$x"
	done
}

# batch NAME CONNS: epoll events returned per epoll_wait and bytes per read/write
# (strace on the outbound proxy for REQS/4 requests; strace slows it, so batches grow)
batch() {
	kac_start "$2" $((REQS / 4)) || return 1
	strace -f -q -e trace=epoll_wait,read,write,recvfrom,sendto,readv,writev -o "$T/st.a" -p "$PA" & s1=$!
	sleep 1
	kac_run
	kill -INT $s1; wait $s1 2>/dev/null
	kac_end
	awk -v who="$1 outbound" '
		/epoll_wait\(/ && / = [0-9]+$/ { w++; ev += $NF }
		/ (read|recvfrom|readv)\(/ && / = [0-9]+$/ { rn++; rb += $NF } / (read|recvfrom|readv)\(/ && /EAGAIN/ { ra++ }
		/ (write|sendto|writev)\(/ && / = [0-9]+$/ { wn++; wb += $NF }
		END { printf "%-22s events per epoll_wait %.1f, reads %d (%.0f B avg) + %d EAGAIN, writes %d (%.0f B avg)\n", who, ev / w, rn, rb / rn, ra, wn, wb / wn }' "$T/st.a"
}

# instructions NAME CONNS: callgrind Ir per request of each proxy (started
# under callgrind with --callgrind-out-file=$T/cg.%p), counted over CG_REQS
instructions() {
	# under valgrind, 1000 connections at once would pass the handshake deadlines
	kac_start "$2" "$CG_REQS" 8 || return 1
	callgrind_control -z "$PA" >/dev/null; callgrind_control -z "$PB" >/dev/null
	kac_run
	callgrind_control -d "$PA" >/dev/null; callgrind_control -d "$PB" >/dev/null
	kac_end
	for p in "$PA" "$PB"; do
		f=$(ls -t "$T/cg.$p".* 2>/dev/null | head -1)
		ir=$(awk '/^(summary|totals):/ {print $2; exit}' "$f")
		printf '%-22s Ir per request %d\n' "$1 $([ "$p" = "$PA" ] && echo outbound || echo inbound)" $((ir / CG_REQS))
		[ -n "${KEEP:-}" ] && cp "$f" "$KEEP/$1.$([ "$p" = "$PA" ] && echo out || echo in).$2.cg"
	done
}

# wrkrun NAME CONNS: make bench's budget measurement (wrk -t1 on CPU 1 for 8 s, the
# window with the connections' set-up), after one request that leaves a session;
# requests per CPU-second of the pair (hsmesh: + agent + keyholder), handshakes
wrkrun() {
	curl -s -o /dev/null "http://127.0.0.1:$ENTRY/"
	counted=$(kids $PA $PB $(case $1 in hsmesh*) echo $AGENT ;; esac))
	c0=$(ticks "$counted")
	taskset -c 1 wrk -t1 -c"$2" -d8s --timeout 10s --latency "http://127.0.0.1:$ENTRY/bytes?n=1024" >"$T/wrk.out" 2>&1
	c1=$(ticks "$counted")
	n=$(awk '/requests in/ {print $1}' "$T/wrk.out")
	if [ "$1" = hsmesh ]; then
		hs="$(curl -s "http://127.0.0.1:$MB/metrics" | grep '^hsmesh_proxy_handshakes_total' | sed 's/.*resumed=//' | tr '\n' ' ')"
	else
		hs="$(python3 -c 'import socket,sys; s=socket.socket(socket.AF_UNIX); s.connect(sys.argv[1]); s.sendall(b"show info\n"); print(s.makefile().read())' "$T/hb.sock" | grep -E '^(SslFrontendSessionReuse_pct|CumSslConns)' | tr '\n' ' ')"
	fi
	printf '%-22s wrk c%d 8 s: %s req/s, p99 %s, %.0f req per CPU-s; handshakes %s\n' "$1" "$2" \
	    "$(awk '/^Requests\/sec/ {print $2}' "$T/wrk.out")" "$(awk '$1 == "99%" {print $2}' "$T/wrk.out")" \
	    "$(awk -v n="$n" -v t=$((c1 - c0)) -v hz="$(getconf CLK_TCK)" 'BEGIN {print n / (t / hz)}')" "$hs"
}

# kprof NAME CONNS: where the pair's CPU goes in the steady window (perf
# cpu-clock samples of both proxies, by object and symbol, kernel included)
kprof() {
	kac_start "$2" "$REQS" || return 1
	perf record -q -e cpu-clock -F 4000 -p "$PA,$PB" -o "$T/perf.data" 2>/dev/null & pr=$!
	sleep 0.5
	kac_run
	kill -INT $pr; wait $pr 2>/dev/null
	kac_end
	echo "-- $1, $2 connections: share of samples by object"
	perf report -i "$T/perf.data" --sort dso --stdio 2>/dev/null | grep -E '^ +[0-9]' | head -8
	echo "-- $1, $2 connections: top symbols"
	perf report -i "$T/perf.data" --sort dso,sym --stdio 2>/dev/null | grep -E '^ +[0-9]' | head -${KTOP:-30}
}

VG="valgrind --tool=callgrind --quiet ${CG_OPTS:-} --callgrind-out-file=$T/cg.%p"
for conns in $CONNS_LIST; do
	echo "== $conns connections, $REQS requests (callgrind: $CG_REQS)"
	if [ "${SLOW:-0}" = 1 ]; then
		# a reader at 4 MB/s of a 24 MB response: it completes, and the pair's memory stays bounded
		hsmesh_pair
		r0=$(( $(awk '/^VmRSS/ {print $2}' /proc/$PA/status) + $(awk '/^VmRSS/ {print $2}' /proc/$PB/status) ))
		curl -s --limit-rate 4M -o "$T/slow.out" "http://127.0.0.1:$ENTRY/bytes?n=24000000" & cp=$!
		mx=0
		while kill -0 $cp 2>/dev/null; do
			r=$(( $(awk '/^VmRSS/ {print $2}' /proc/$PA/status) + $(awk '/^VmRSS/ {print $2}' /proc/$PB/status) ))
			[ $r -gt $mx ] && mx=$r
			python3 -c 'import time; time.sleep(0.5)'
		done
		echo "slow reader: $(stat -c %s "$T/slow.out") of 24000000+ bytes; pair RSS idle $r0 KiB, at most $mx KiB while reading"
		curl -s -o "$T/bulk.out" "http://127.0.0.1:$ENTRY/bytes?n=300000000"; echo "bulk: $(stat -c %s "$T/bulk.out") bytes"
		kill $PA $PB; wait $PA $PB 2>/dev/null
		continue
	fi
	if [ "${IPI:-0}" = 1 ]; then
		for _ in 1 2; do
			for who in hsmesh haproxy; do
				${who}_pair; kac_start "$conns" "$REQS" || exit 1
				perf stat -x, -a -A -e ipi:ipi_send_cpu,sched:sched_wakeup,cs -o "$T/ipi.txt" & ps_=$!
				sleep 0.3; kac_run; kill -INT $ps_; wait $ps_ 2>/dev/null; kac_end
				awk -F, -v n="$REQS" -v who="$who" '/^CPU/ {printf "%-8s %s %-22s %.3f per request\n", who, $1, $4, $2 / n}' "$T/ipi.txt"
				kill $PA $PB; wait $PA $PB 2>/dev/null
			done
		done
		continue
	fi
	if [ -n "${ALT:-}" ]; then
		H0=$HSMESH
		for _ in $(seq "${ABREPS:-3}"); do
			HSMESH=$H0; hsmesh_pair; cpu hsmeshA "$conns"; kill $PA $PB; wait $PA $PB 2>/dev/null
			HSMESH=$ALT/hsmesh; hsmesh_pair; cpu hsmeshB "$conns"; kill $PA $PB; wait $PA $PB 2>/dev/null
			[ "${NO_HAPROXY:-0}" = 1 ] && continue
			haproxy_pair; cpu haproxy "$conns"; kill $PA $PB; wait $PA $PB 2>/dev/null
		done
		HSMESH=$H0
		continue
	fi
	if [ "${KPROF:-0}" = 1 ]; then
		hsmesh_pair; kprof hsmesh "$conns"; cpu hsmesh "$conns"; kill $PA $PB; wait $PA $PB 2>/dev/null
		if [ "${NO_HAPROXY:-0}" != 1 ]; then
			haproxy_pair; kprof haproxy "$conns"; cpu haproxy "$conns"; kill $PA $PB; wait $PA $PB 2>/dev/null
		fi
		continue
	fi
	if [ "${WRK:-0}" = 1 ]; then
		for rep in 1 2; do
			hsmesh_pair; wrkrun hsmesh "$conns"; kill $PA $PB; wait $PA $PB 2>/dev/null
			haproxy_pair; wrkrun haproxy "$conns"; kill $PA $PB; wait $PA $PB 2>/dev/null
		done
		continue
	fi
	if [ "${NO_PERF:-0}" != 1 ]; then
		hsmesh_pair; setup hsmesh "$conns"; cpu hsmesh "$conns"; syscalls hsmesh "$conns"; batch hsmesh "$conns"; kill $PA $PB; wait $PA $PB 2>/dev/null
		if [ "${NO_HAPROXY:-0}" != 1 ]; then
			haproxy_pair; setup haproxy "$conns"; cpu haproxy "$conns"; syscalls haproxy "$conns"; batch haproxy "$conns"
			kill $PA $PB; wait $PA $PB 2>/dev/null
		fi
	fi
	if [ "${NO_CG:-0}" != 1 ]; then
		# SETUP_IR=1: instructions per connection set-up instead of per request
		what=$([ "${SETUP_IR:-0}" = 1 ] && echo setup_ir || echo instructions)
		hsmesh_pair env LD_PRELOAD="$B/bench/vgshim.so" HSMESH_VG_NO_SECCOMP=1 $VG
		$what hsmesh "$conns"; kill $PA $PB; wait $PA $PB 2>/dev/null
		if [ "${NO_HAPROXY:-0}" != 1 ]; then
			haproxy_pair $VG
			$what haproxy "$conns"; kill $PA $PB; wait $PA $PB 2>/dev/null
		fi
	fi
done
