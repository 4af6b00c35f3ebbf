#!/bin/sh
# bench/idlemem.sh BUILD [N] - what an idle connection costs the sidecar:
# N (default 3000) idle TCP connections (nothing sent), then N idle TLS
# connections (mutual TLS handshaken, then quiet), each to a freshly
# started inbound listener, measured by bench/idleconns from the proxy's
# /proc/PID/smaps_rollup (RSS and private memory, per connection). A
# real CA, agent and app on loopback, as in the integration tests. Prints
# one line per kind; a measurement, never an assertion.
#
# First, the node agent idle once enrolled (issue 19): one line per
# process, the agent, its spawner and its keyholder ("idle agent|spawner|
# keyholder: rss R KiB, pss P KiB, private V KiB, threads N"; private =
# Private_Clean + Private_Dirty), and, when built, the floor of such a
# pair: bench/sslfloor (one SSL_CTX) and bench/p11floor (libcrypto and
# the PKCS#11 module, one logged-in session on the same token), as
# "floor sslfloor|p11floor: ..." lines of the same form.
#
#   make build/bench/idleconns && sh bench/idlemem.sh build 3000
#
# PROXY_WRAP prefixes the proxy's command (a profiler: with valgrind, also
# LD_PRELOAD=build/bench/vgshim.so HSMESH_VG_NO_SECCOMP=1, see vgshim.c);
# ONLY=tcp, ONLY=tls or ONLY=agent measures one kind.
B=${1:-build}
N=${2:-3000}
case $B in /*) ;; *) B=$(pwd)/$B ;; esac
TOOL=$B/bench/idleconns
set -- "$B/hsmesh"
. "$(dirname "$0")/../tests/integration/lib.sh"
[ -x "$TOOL" ] || { echo "build $TOOL first (make $TOOL)" >&2; exit 1; }
ulimit -n 20000 2>/dev/null

mesh_up spiffe://example.org/b || { echo "the agent did not enroll" >&2; exit 1; }

# procmem WHAT PID: one line of the memory of process PID
procmem() {
	awk -v w="$1" -v th="$(awk '/^Threads:/ {print $2}' "/proc/$2/status")" '
	    /^Rss:/ {r = $2} /^Pss:/ {p = $2} /^Private_(Clean|Dirty):/ {v += $2}
	    END {printf "%s: rss %d KiB, pss %d KiB, private %d KiB, threads %d\n", w, r, p, v, th}' "/proc/$2/smaps_rollup"
}
if [ "${ONLY:-agent}" = agent ]; then
	sleep 1		# the enrollment's job reaped
	procmem "idle agent" "$AGENT"
	for _c in $(cat /proc/"$AGENT"/task/*/children); do
		case $(tr '\0' ' ' <"/proc/$_c/cmdline") in
		*" keyholder "*) procmem "idle keyholder" "$_c" ;;
		*) procmem "idle spawner" "$_c" ;;
		esac
	done
	# floor NAME COMMAND...: a minimal process of the same libraries, once ready
	floor() {
		_n=$1; shift
		[ -x "$1" ] || return 0
		"$@" >"$T/$_n.out" 2>"$T/$_n.err" &
		_f=$!; track $_f
		for _ in $(seq 100); do grep -q ready "$T/$_n.out" && break; sleep 0.05; done
		grep -q ready "$T/$_n.out" && procmem "floor $_n" $_f
		kill $_f; wait $_f 2>/dev/null
	}
	floor sslfloor "$B/bench/sslfloor"
	floor p11floor "$B/bench/p11floor" "$SOFTHSM_MODULE" node "$T/node.pin"
fi
"$HSMESH" app serve --listen 127.0.0.1:0 --name b --port-file "$T/app.port" 2>"$T/app.log" &
track $!
for _ in $(seq 100); do [ -s "$T/app.port" ] && break; sleep 0.05; done
file_svid fa spiffe://example.org/a
cat >"$T/p.yaml" <<EOF
agent: { socket: $T/agent.sock, id: "spiffe://example.org/b" }
workers: 2
limits: { max_connections: $((N + 100)) }
admission: { handshake_rate: 0 }     # one source, N handshakes
inbound:
  - { name: web, listen: "127.0.0.1:0", forward_to: "127.0.0.1:$(cat "$T/app.port")", allow: ["spiffe://example.org/a"] }
EOF

# measure KIND [idleconns options]: a fresh proxy, N connections of KIND
measure() {
	_k=$1; shift
	rm -f "$T/p.ports"
	${PROXY_WRAP:-} "$HSMESH" proxy -c "$T/p.yaml" --ports-file "$T/p.ports" 2>"$T/p-$_k.log" &
	_p=$!; track $_p
	wait_in "$T/p-$_k.log" "ready: serving" 60 || { echo "the proxy did not start" >&2; return 1; }
	sleep 0.5
	"$TOOL" -p "$_p" -n "$N" -s 1500 "$@" "127.0.0.1:$(awk '$1 == "web" { print $2 }' "$T/p.ports")" ||
	    grep -v "^$" "$T/p-$_k.log" | tail -n 5 >&2
	kill "$_p"; wait "$_p" 2>/dev/null
}
[ "${ONLY:-tcp}" = tcp ] && measure tcp
[ "${ONLY:-tls}" = tls ] && measure tls -c "$T/fa.pem" -k "$T/fa.key"
exit 0
