#!/bin/sh
# ASAN=yes
# t_app.sh - `hsmesh app`, the HTTP app behind the demo's sidecars: the
# server against real curl (raw bytes through curl's telnet://, which sends
# standard input as is), the client against the server, and the refusals.
# The binary: $1 (tests/run.sh), else $HSMESH, else $HSMESH_EXE.
[ -z "${HSMESH:-}" ] && [ -n "${HSMESH_EXE:-}" ] && HSMESH=$HSMESH_EXE
. "$(dirname "$0")/lib.sh"

# start_app NAME [serve options...]: serve on 127.0.0.1:0 in the background;
# sets APP (pid) and P (port), the log in $T/NAME.log.
start_app() {
	_name=$1; shift
	"$HSMESH" app serve --listen 127.0.0.1:0 --name "$_name" --port-file "$T/$_name.port" "$@" \
	    2>"$T/$_name.log" &
	APP=$!; track $APP
	for _ in $(seq 200); do [ -s "$T/$_name.port" ] && break; sleep 0.05; done
	P=$(cat "$T/$_name.port" 2>/dev/null)
}
# exits DESC STATUS PATTERN COMMAND...: exits with STATUS and one stderr line matching PATTERN
exits() {
	d=$1; want=$2; pat=$3; shift 3
	"$@" >"$T/out" 2>"$T/err"; rc=$?
	nl=$(grep -cv '^$' "$T/err")
	if [ "$rc" -eq "$want" ] && [ "$nl" -eq 1 ] && grep -qiE -- "$pat" "$T/err"; then
		ok "$d: $(cat "$T/err")"
	else
		not_ok "$d (exit $rc, stderr: $(cat "$T/err"))"
	fi
}
# raw BYTES: send printf-formatted BYTES on one connection, print the answer
raw() { printf "$1" | curl -s --max-time 5 "telnet://127.0.0.1:$P"; }
code() { curl -s -o /dev/null -w '%{http_code}' --max-time 10 "$@"; }

# ---- the server, with curl ----
start_app b
B=$APP BP=$P
U=http://127.0.0.1:$P
check "serve logs one line: 'hsmesh app: b listening on 127.0.0.1:$P'" \
    test "$(cat "$T/b.log")" = "hsmesh app: b listening on 127.0.0.1:$P"
check "GET / says hello" test "$(curl -s "$U/")" = "hello from b"
check "GET /whoami" test "$(curl -s "$U/whoami")" = "b"
head -c 1048576 /dev/urandom >"$T/body"
check "POST /echo round-trips 1 MiB of random bytes" \
    sh -c 'curl -s -H "Expect:" --data-binary @"$1" "$2/echo" | cmp -s - "$1"' x "$T/body" "$U"
head -c 1 /dev/zero >>"$T/body"
check "POST /echo of 1 MiB + 1 byte: 413" test "$(code -H 'Expect:' --data-binary @"$T/body" "$U/echo")" = 413
check "GET /bytes?n=1000000: 1000000 bytes of 'x'" \
    sh -c 'curl -s "$1/bytes?n=1000000" >"$2/x" && [ "$(wc -c <"$2/x")" -eq 1000000 ] && [ "$(tr -d x <"$2/x" | wc -c)" -eq 0 ]' x "$U" "$T"
check "GET /bytes?n=1GiB+1: 400" test "$(code "$U/bytes?n=1073741825")" = 400
check "GET /bytes without n: 400" test "$(code "$U/bytes")" = 400
check "unknown path: 404" test "$(code "$U/nope")" = 404
check "other method: 405 with Allow: GET" sh -c 'curl -s -i -X DELETE "$1/" | tr -d "\r" | grep -q "^Allow: GET$"' x "$U"
check "GET /echo: 405" test "$(code "$U/echo")" = 405
check "a malformed request line: 400" test "$(code --request-target 'bad target' "$U/")" = 400
raw 'GET / HTTP/1.1\nHost: x\n\nGET / HTTP/1.1\r\nHost: x\r\n\r\n' >"$T/bad.out"
check "bare LF: 400, Connection: close, and nothing after it" \
    sh -c 'tr -d "\r" <"$1" | grep -q "^HTTP/1.1 400 Bad Request$" && grep -q "^Connection: close" "$1" && [ "$(grep -c "^HTTP/" "$1")" -eq 1 ]' x "$T/bad.out"
raw '\001\002garbage\r\n\r\n' >"$T/bad2.out"
check "binary garbage: 400" grep -q "^HTTP/1.1 400" "$T/bad2.out"
check "keep-alive: two URLs on one curl command line use one connection" \
    test "$(curl -s -o /dev/null -o /dev/null -w '%{num_connects}' "$U/" "$U/whoami")" = 10
raw 'GET / HTTP/1.1\r\nHost: x\r\n\r\nGET /whoami HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n' >"$T/pipe.out"
check "pipelined requests are answered in order, then Connection: close" \
    sh -c 'tr -d "\r" <"$1" | awk "/^hello from b\$/ { h = NR } /^b\$/ { w = NR } END { exit !(h && w > h) }" && grep -q "^Connection: close" "$1"' x "$T/pipe.out"
check "HTTP/1.0 without keep-alive is answered and closed" \
    sh -c 'o=$(printf "GET / HTTP/1.0\r\n\r\n" | curl -s --max-time 5 "telnet://127.0.0.1:$1"); echo "$o" | grep -q "^Connection: close" && echo "$o" | grep -q "^hello from b"' x "$P"

curl -s -o "$T/slow.out" -w '%{time_total}' --max-time 10 "$U/slow?ms=2000" >"$T/slow.time" &
SLOW=$!; track $SLOW
sleep 0.3
t=$(curl -s -o /dev/null -w '%{time_total}' --max-time 10 "$U/")
check "GET / during a /slow?ms=2000 answers at once (${t} s)" awk -v t="$t" 'BEGIN { exit !(t < 1.0) }'
check "... while /slow still waits" alive $SLOW
wait_exit $SLOW 10
check "... which answers 'slow' after 2 s ($(cat "$T/slow.time") s)" \
    sh -c '[ "$(cat "$1")" = slow ] && awk -v t="$(cat "$2")" "BEGIN { exit !(t >= 1.9) }"' x "$T/slow.out" "$T/slow.time"

# 1200 concurrent connections held by /slow: 1024 are served, the rest
# accepted and closed; then the server answers again.
# slow_clients MS: 1200 clients (4 curls of 300) each GET /slow?ms=MS at once;
# each curl's status codes in $T/par.K, their pids in PAR
slow_clients() {
	PAR=""
	for k in 1 2 3 4; do
		curl -s --no-progress-meter --parallel --parallel-immediate --parallel-max 300 -o /dev/null \
		    -w '%{http_code}\n' "$U/slow?ms=$1&i=[1-300]" >"$T/par.$k" 2>/dev/null &
		PAR="$PAR $!"; track $!
	done
}
if [ "$(ulimit -Hn)" = unlimited ] || [ "$(ulimit -Hn)" -ge 1200 ]; then
	slow_clients 4000
	sleep 2
	check "with 1024 connections open, one more is closed at once" test "$(code "$U/")" = 000
	for p in $PAR; do wait_exit "$p" 20; done
	check "1200 parallel /slow: $(cat "$T"/par.* | grep -c '^200$') answered (want 1024), $(cat "$T"/par.* | grep -c '^000$') closed" \
	    test "$(cat "$T"/par.* | grep -c '^200$')" -eq 1024
	check "... and the server answers again" test "$(curl -s "$U/")" = "hello from b"
	# Clients that go while waiting on /slow free their slots at once, not at
	# the deadline: 1200 wait on a 30 s /slow, go, and the next client is served.
	slow_clients 30000
	sleep 2
	check "1024 clients waiting on a 30 s /slow: one more is closed at once" test "$(code "$U/")" = 000
	kill $PAR 2>/dev/null
	for p in $PAR; do wait_exit "$p" 5; done
	sleep 0.5
	check "... those clients gone, the next one is served at once (not after 30 s)" \
	    test "$(curl -s --max-time 2 "$U/")" = "hello from b"
else
	ok "# SKIP 1024-connection limit: hard descriptor limit $(ulimit -Hn)"
fi

# ---- the client ----
"$HSMESH" app get "$U/" --count 5 >"$T/get.out" 2>"$T/get.err"
rc=$?
check "get --count 5: exit $rc, five lines '200 hello from b', nothing on stderr" \
    sh -c '[ "$1" -eq 0 ] && [ "$(grep -c "^200 hello from b$" "$2")" -eq 5 ] && [ "$(wc -l <"$2")" -eq 5 ] && [ ! -s "$3" ]' \
    x "$rc" "$T/get.out" "$T/get.err"
check "get of a large body prints its size" \
    sh -c '[ "$("$1" app get "$2/bytes?n=300000")" = "200 <300000 bytes>" ]' x "$HSMESH" "$U"
check "get --expect-status 404 of /nope: exit 0, '404 Not Found'" \
    sh -c '[ "$("$1" app get "$2/nope" --expect-status 404)" = "404 Not Found" ]' x "$HSMESH" "$U"
exits "get of an unexpected status" 1 "1 of 1 responses did not have status 200" "$HSMESH" app get "$U/nope"
exits "get times out" 1 "timeout waiting for response 1" "$HSMESH" app get "$U/slow?ms=3000" --timeout 300

start_app once --max-requests 1
exits "get against a server that closes after one response" 1 "connection closed by peer after 1 of 3 requests" \
    "$HSMESH" app get "http://127.0.0.1:$P/" --count 3
check "... which printed the one response" test "$(cat "$T/out")" = "200 hello from once"
start_app idle --idle-timeout 300
exits "get --interval 1000 against --idle-timeout 300" 1 "connection closed by peer after 1 of 2 requests" \
    "$HSMESH" app get "http://127.0.0.1:$P/" --count 2 --interval 1000
IDLE=$APP IP=$P
kill -INT "$IDLE"
check "SIGINT: exit 0" wait_exit "$IDLE" 5
exits "get against a closed port" 1 "^hsmesh app get: connect 127.0.0.1:$IP: Connection refused$" \
    "$HSMESH" app get "http://127.0.0.1:$IP/"

# ---- usage ----
check "app --help" sh -c '"$1" app --help | grep -q "usage: hsmesh app serve"' x "$HSMESH"
check "app serve --help" sh -c '"$1" app serve --help | grep -q "/bytes?n=N"' x "$HSMESH"
check "app get --help" sh -c '"$1" app get --help | grep -q -- "--expect-status"' x "$HSMESH"
exits "app without a subcommand" 2 "missing subcommand" "$HSMESH" app
exits "app serve without --name" 2 "--listen and --name are required" "$HSMESH" app serve --listen 127.0.0.1:0
exits "app serve with a bad name" 2 "--name wants" "$HSMESH" app serve --listen 127.0.0.1:0 --name 'a b'
exits "app serve with an unknown option" 2 "unknown option '--bogus'" "$HSMESH" app serve --bogus
exits "app serve on a bad address" 1 "not host:port" "$HSMESH" app serve --listen nowhere --name x
exits "app serve on a port in use" 1 "cannot listen on 127.0.0.1:$BP" "$HSMESH" app serve --listen "127.0.0.1:$BP" --name x
exits "app get without a URL" 2 "want one URL" "$HSMESH" app get
exits "app get --count 0" 2 "--count wants a number from 1" "$HSMESH" app get "$U/" --count 0
exits "app get of an https URL" 2 "only http://" "$HSMESH" app get "https://127.0.0.1:$BP/"
exits "app get --timeout without a value" 2 "missing value for '--timeout'" "$HSMESH" app get "$U/" --timeout

kill -TERM "$B"
check "SIGTERM: exit 0" wait_exit "$B" 5
done_testing
