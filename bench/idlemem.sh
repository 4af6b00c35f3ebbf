#!/bin/sh
# bench/idlemem.sh BUILD [N] - what an idle connection costs the sidecar:
# N (default 3000) idle TCP connections (nothing sent), then N idle TLS
# connections (mutual TLS handshaken, then quiet), each to a freshly
# started inbound listener, measured by bench/idleconns from the proxy's
# /proc/PID/smaps_rollup (RSS and private memory, per connection). A
# real CA, agent and app on loopback, as in the integration tests. Prints
# one line per kind; a measurement, never an assertion.
#
#   make build/bench/idleconns && sh bench/idlemem.sh build 3000
#
# PROXY_WRAP prefixes the proxy's command (a profiler: with valgrind, also
# LD_PRELOAD=build/bench/vgshim.so HSMESH_VG_NO_SECCOMP=1, see vgshim.c);
# ONLY=tcp or ONLY=tls measures one kind.
B=${1:-build}
N=${2:-3000}
case $B in /*) ;; *) B=$(pwd)/$B ;; esac
TOOL=$B/bench/idleconns
set -- "$B/hsmesh"
. "$(dirname "$0")/../tests/integration/lib.sh"
[ -x "$TOOL" ] || { echo "build $TOOL first (make $TOOL)" >&2; exit 1; }
ulimit -n 20000 2>/dev/null

mesh_up spiffe://example.org/b || { echo "the agent did not enroll" >&2; exit 1; }
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
