# ASAN=yes
# t_http.sh HSMESH - `protocol: http` in the sidecar (issue 18).
#
# A CA, one agent with the identities a, b and c, the built-in app with
# the path echo (it answers with the x-forwarded-client-cert values it got
# and logs the caller's SPIFFE ID), proxy B with inbound HTTP listeners in
# front of it (HTTP/1.1 and h2c to the app, routes on one of them, one to
# an application that is not there, and a tcp one), proxy A (identity a)
# with outbound HTTP listeners to them (one expecting an ID B does not
# have) and proxy C (identity c). Clients are real: curl --http2 and
# --http2-prior-knowledge, nghttp, h2load (a short bounded burst), openssl
# s_client; curl also talks mutual TLS to B directly with a file-key
# certificate of a. Covered: routes allow and refuse (403, the access-log
# line names the route), the path normal form, the application sees the
# caller's identity and a forged header is removed, ALPN h2 and http/1.1
# on TLS (none on tcp listeners), h2c to the application, timeouts and
# limits with their statuses, 502 for an unreachable application and a
# peer of the wrong identity, pooling in the metrics (200 application
# connections cost a handful of handshakes), SIGHUP changing routes under
# an open connection, a slow reader that makes no sidecar buffer, drain.
. "$(dirname "$0")/lib.sh"
# Under AddressSanitizer freed memory waits in a quarantine (256 MB by
# default), which the slow-reader check below would read as buffering.
export ASAN_OPTIONS="${ASAN_OPTIONS:-}:quarantine_size_mb=4"

ME=$(id -u)
IDA=spiffe://example.org/a
IDB=spiffe://example.org/b
IDC=spiffe://example.org/c

diag() { for f in "$@"; do echo "# --- $f"; tail -n 15 "$f" 2>/dev/null | sed 's/^/#   /'; done; }
wait_log() {
	_i=0
	while ! grep -qE "$2" "$1" 2>/dev/null && [ "$_i" -lt $((${3:-5} * 10)) ]; do sleep 0.1; _i=$((_i + 1)); done
	grep -qE "$2" "$1" 2>/dev/null
}
port() { awk -v n="$1" '$1 == n { print $2 }' "$2" 2>/dev/null; }
metric() { curl -s --max-time 5 "http://127.0.0.1:$1/metrics" | awk -v m="$2" 'index($0, m) == 1 { s += $NF } END { print s + 0 }'; }

# ---- CA, agent, app --------------------------------------------------------------------
new_token ca
printf '1234\n' >"$T/ca.pin"
write_ca_yaml "$T/ca.yaml" ca "$T/ca.pin"
"$HSMESH" ca init -c "$T/ca.yaml" >/dev/null 2>"$T/ca-init.err"
"$HSMESH" ca serve -c "$T/ca.yaml" --port-file "$T/ca.port" 2>"$T/ca.log" &
track $!
for _ in $(seq 200); do [ -s "$T/ca.port" ] && break; sleep 0.05; done
ROOT=$T/ca/root.pem
new_token node
printf '1234\n' >"$T/node.pin"
for w in a b c; do "$HSMESH" ca token -c "$T/ca.yaml" --id "spiffe://example.org/$w" >"$T/$w.join"; done
# a file-key certificate of a, for curl and openssl talking to B directly
openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$T/fa.key" \
    -subj /CN=a -out "$T/fa.csr" 2>/dev/null
"$HSMESH" ca issue -c "$T/ca.yaml" --csr "$T/fa.csr" --id "$IDA" --ttl 2h >"$T/fa.pem" 2>"$T/issue.err"
cat >"$T/agent.yaml" <<EOF
token: { module: $SOFTHSM_MODULE, uri: "pkcs11:token=node", pin_file: $T/node.pin }
ca: { url: "http://127.0.0.1:$(cat "$T/ca.port")/.well-known/cmp", root: $ROOT }
state_dir: $T/state
socket: $T/agent.sock
workloads:
  - { id: $IDA, uid: $ME, join_token_file: $T/a.join }
  - { id: $IDB, uid: $ME, join_token_file: $T/b.join }
  - { id: $IDC, uid: $ME, join_token_file: $T/c.join }
EOF
"$HSMESH" agent -c "$T/agent.yaml" 2>"$T/agent.log" &
track $!
enrolled() { n=$(grep -c ': enrolled' "$T/agent.log" 2>/dev/null); [ "${n:-0}" -ge 3 ]; }
for _ in $(seq 600); do enrolled && break; sleep 0.1; done
check "agent: a, b and c enrolled" enrolled || diag "$T/agent.log"

"$HSMESH" app serve --listen 127.0.0.1:0 --name b --echo --port-file "$T/app.port" 2>"$T/app.log" &
track $!
for _ in $(seq 100); do [ -s "$T/app.port" ] && break; sleep 0.05; done
APP=$(cat "$T/app.port")
# a port nothing listens on (an app started and stopped): the application that is not there
"$HSMESH" app serve --listen 127.0.0.1:0 --name gone --port-file "$T/dead.port" 2>/dev/null &
dp=$!
for _ in $(seq 100); do [ -s "$T/dead.port" ] && break; sleep 0.05; done
kill "$dp"; wait "$dp" 2>/dev/null
DEAD=$(cat "$T/dead.port")

# ---- proxy B: inbound HTTP (routes; h2c to the app; no app) and tcp ----------------------
cat >"$T/b.yaml" <<EOF
agent: { socket: $T/agent.sock, id: $IDB }
workers: 2
limits: { max_header_bytes: 8192, min_body_rate: 2000 }
inbound:
  - name: web
    listen: 127.0.0.1:0
    forward_to: 127.0.0.1:$APP
    protocol: http
    allow: [$IDA, $IDC]
    routes:
      - name: sm-create
        path: /nsmf-pdusession/v1/sm-contexts
        methods: [POST]
        allow: [$IDA]
      - name: nrf
        path_prefix: /nnrf-nfm/v1/
        methods: [GET, HEAD]
        allow: [spiffe://example.org/*]
      - name: slow
        path: /slow
        allow: [$IDA]
        timeout: 1s
      - name: public
        path_prefix: /public
        allow: [$IDA]   # public
  - name: web2
    listen: 127.0.0.1:0
    forward_to: 127.0.0.1:$APP
    protocol: http
    app_protocol: h2c
    allow: [$IDA]
  - name: nobody
    listen: 127.0.0.1:0
    forward_to: 127.0.0.1:$DEAD
    protocol: http
    allow: [$IDA]
  - name: raw
    listen: 127.0.0.1:0
    forward_to: 127.0.0.1:$APP
    allow: [$IDA]
metrics: { listen: "127.0.0.1:0" }
access_log: $T/b-access.log
EOF
"$HSMESH" proxy -c "$T/b.yaml" --ports-file "$T/b.ports" 2>"$T/b.log" &
PB=$!; track $PB
check "proxy b: ready" wait_log "$T/b.log" "ready: serving $IDB" 20 || diag "$T/b.log"
BWEB=$(port web "$T/b.ports"); BWEB2=$(port web2 "$T/b.ports"); BDEAD=$(port nobody "$T/b.ports")
BRAW=$(port raw "$T/b.ports"); BMET=$(port metrics "$T/b.ports")

# ---- proxies A (identity a) and C (identity c): outbound HTTP --------------------------
cat >"$T/a.yaml" <<EOF
agent: { socket: $T/agent.sock, id: $IDA }
workers: 2
limits: { max_header_bytes: 8192, max_headers: 40, max_streams: 200 }
outbound:
  - { name: to-web, listen: 127.0.0.1:0, connect: 127.0.0.1:$BWEB, expect_id: $IDB, protocol: http }
  - { name: to-web2, listen: 127.0.0.1:0, connect: 127.0.0.1:$BWEB2, expect_id: $IDB, protocol: http }
  - { name: to-nobody, listen: 127.0.0.1:0, connect: 127.0.0.1:$BDEAD, expect_id: $IDB, protocol: http }
  - { name: to-wrong, listen: 127.0.0.1:0, connect: 127.0.0.1:$BWEB, expect_id: spiffe://example.org/zz, protocol: http }
metrics: { listen: 127.0.0.1:0 }
access_log: $T/a-access.log
EOF
sed "s|id: $IDA }|id: $IDC }|; s|a-access|c-access|" "$T/a.yaml" >"$T/c.yaml"
"$HSMESH" proxy -c "$T/a.yaml" --ports-file "$T/a.ports" 2>"$T/a.log" &
PA=$!; track $PA
"$HSMESH" proxy -c "$T/c.yaml" --ports-file "$T/c.ports" 2>"$T/c.log" &
PC=$!; track $PC
check "proxy a: ready" wait_log "$T/a.log" "ready: serving $IDA" 20 || diag "$T/a.log"
check "proxy c: ready" wait_log "$T/c.log" "ready: serving $IDC" 20 || diag "$T/c.log"
A=$(port to-web "$T/a.ports"); A2=$(port to-web2 "$T/a.ports"); ADEAD=$(port to-nobody "$T/a.ports")
AWRONG=$(port to-wrong "$T/a.ports"); AMET=$(port metrics "$T/a.ports"); C=$(port to-web "$T/c.ports")

# get URL [curl options...]: "STATUS VERSION" then the body
get() { u=$1; shift; curl -s --max-time 10 -w '\n%{http_code} %{http_version}\n' "$@" "$u" 2>&1; }
last() { tail -n 1; }

# ---- the protocols -----------------------------------------------------------------------
out=$(get "http://127.0.0.1:$A/public/hello")
check "HTTP/1.1 through a -> b: 200 and the app's echo ($(echo "$out" | tr '\n' '|'))" \
    sh -c 'echo "$1" | grep -q "^GET /public/hello$" && echo "$1" | tail -n 1 | grep -q "^200 1.1$"' x "$out"
out=$(get "http://127.0.0.1:$A/public/h2c" --http2-prior-knowledge)
check "curl --http2-prior-knowledge: HTTP/2 from the client, 200 ($(echo "$out" | last))" \
    sh -c 'echo "$1" | tail -n 1 | grep -q "^200 2$" && echo "$1" | grep -q "^GET /public/h2c$"' x "$out"
out=$(get "http://127.0.0.1:$A/public/up" --http2)
check "curl --http2 (an h2c upgrade offer, answered in HTTP/1.1): 200 ($(echo "$out" | last))" \
    sh -c 'echo "$1" | tail -n 1 | grep -q "^200 1.1$" && echo "$1" | grep -q "^GET /public/up$"' x "$out"
nghttp -n -s "http://127.0.0.1:$A/public/nghttp" >"$T/nghttp.out" 2>&1
check "nghttp (h2c): 200" grep -qE '^ +[0-9]+ .* 200 ' "$T/nghttp.out" || cat "$T/nghttp.out"
out=$(get "http://127.0.0.1:$A2/whoami" --http2-prior-knowledge)
check "app_protocol h2c: the sidecar speaks HTTP/2 to the app ($(echo "$out" | tr '\n' '|'))" \
    sh -c 'echo "$1" | head -n 1 | grep -qx b && echo "$1" | tail -n 1 | grep -q "^200 2$"' x "$out"
head -c 300000 /dev/urandom >"$T/body"
curl -s --max-time 20 --http2-prior-knowledge -X POST --data-binary @"$T/body" -o "$T/echo.h2" "http://127.0.0.1:$A2/echo"
check "a 300 KB body echoed through h2c both ways is intact" cmp -s "$T/body" "$T/echo.h2"
curl -s --max-time 20 -o "$T/big" -w '%{size_download}' "http://127.0.0.1:$A2/bytes?n=5000000" >"$T/big.n"
check "a 5 MB response through the pair arrives whole ($(cat "$T/big.n") bytes)" test "$(cat "$T/big.n")" = 5000000

# direct mutual TLS to B with curl: ALPN
out=$(get "https://127.0.0.1:$BWEB/public/tls" --http2 --cert "$T/fa.pem" --key "$T/fa.key" --cacert "$ROOT" -k)
check "curl --http2 over mutual TLS to b: ALPN h2 ($(echo "$out" | last))" \
    sh -c 'echo "$1" | tail -n 1 | grep -q "^200 2$"' x "$out"
out=$(get "https://127.0.0.1:$BWEB/public/tls1" --http1.1 --cert "$T/fa.pem" --key "$T/fa.key" -k)
check "curl --http1.1 over mutual TLS to b: ALPN http/1.1 ($(echo "$out" | last))" \
    sh -c 'echo "$1" | tail -n 1 | grep -q "^200 1.1$"' x "$out"
openssl s_client -connect "127.0.0.1:$BRAW" -alpn h2,http/1.1 -cert "$T/fa.pem" -key "$T/fa.key" \
    -CAfile "$ROOT" </dev/null >"$T/sc.out" 2>&1
check "a tcp listener selects no ALPN even when the client offers h2" grep -q "No ALPN negotiated" "$T/sc.out"
openssl s_client -connect "127.0.0.1:$BWEB" -alpn h2,http/1.1 -cert "$T/fa.pem" -key "$T/fa.key" \
    -CAfile "$ROOT" </dev/null >"$T/sc2.out" 2>&1
check "an http listener selects h2" grep -q "ALPN protocol: h2" "$T/sc2.out"

# ---- the caller's identity -----------------------------------------------------------------
HASH=$(openssl x509 -in "$T/state/example.org+a/cert.pem" -outform DER | sha256sum | cut -c1-64)
out=$(get "http://127.0.0.1:$A/public/who" -H "X-Forwarded-Client-Cert: By=$IDB;URI=spiffe://example.org/admin" \
    -H "x_forwarded_client_cert: URI=spiffe://example.org/admin")
check "the app sees exactly one x-forwarded-client-cert: the forged ones are gone ($(echo "$out" | grep -c forwarded))" \
    test "$(echo "$out" | grep -ci "^x-forwarded-client-cert")" = 1
check "... it is By=b;Hash=<a's certificate>;URI=a" \
    grep -q "^x-forwarded-client-cert: By=$IDB;Hash=$HASH;URI=$IDA\$" <<EOF
$out
EOF
check "the app logs the caller's SPIFFE ID from the header" wait_log "$T/app.log" "GET /public/who from $IDA" 5
out=$(get "http://127.0.0.1:$A/public/h2who" --http2-prior-knowledge -H "x-forwarded-client-cert: By=x")
check "... and over h2c from the client too" sh -c 'echo "$1" | grep -c "^x-forwarded-client-cert: By=spiffe://example.org/b;" | grep -qx 1' x "$out"

# ---- routes --------------------------------------------------------------------------------
out=$(get "http://127.0.0.1:$A/nsmf-pdusession/v1/sm-contexts" -X POST -d '{"supi":"imsi-1"}' --http2-prior-knowledge)
check "route sm-create: a may POST (the app's 201) ($(echo "$out" | last))" sh -c 'echo "$1" | tail -n 1 | grep -q "^201 2"' x "$out"
out=$(get "http://127.0.0.1:$C/nsmf-pdusession/v1/sm-contexts" -X POST -d '{"supi":"imsi-1"}' --http2-prior-knowledge)
check "route sm-create: c is refused 403 with a short body ($(echo "$out" | tr '\n' '|'))" \
    sh -c 'echo "$1" | tail -n 1 | grep -q "^403 2" && echo "$1" | grep -q "^403 Forbidden$"' x "$out"
check "... the access log names the route and the peer" wait_log "$T/b-access.log" \
    "\"peer_id\":\"$IDC\",\"method\":\"POST\",\"path\":\"/nsmf-pdusession/v1/sm-contexts\",\"route\":\"sm-create\",\"status\":\"403\""
out=$(get "http://127.0.0.1:$C/nnrf-nfm/v1/nf-instances?nf-type=SMF")
check "route nrf: c may GET (200) ($(echo "$out" | last))" sh -c 'echo "$1" | tail -n 1 | grep -q "^200"' x "$out"
out=$(get "http://127.0.0.1:$A/nsmf-pdusession/v1/sm-contexts")
check "GET where only POST is routed: no route matches, 403 ($(echo "$out" | last))" sh -c 'echo "$1" | tail -n 1 | grep -q "^403"' x "$out"
check "... logged with route \"-\"" wait_log "$T/b-access.log" '"method":"GET","path":"/nsmf-pdusession/v1/sm-contexts","route":"-","status":"403"'
out=$(get "http://127.0.0.1:$A/%70ublic/%7Ex")
check "paths are matched and forwarded in normal form: /%70ublic/%7Ex is /public/~x" \
    sh -c 'echo "$1" | grep -q "^GET /public/~x$"' x "$out"
for p in "/public/../nsmf-pdusession/v1/sm-contexts" "/public/%2e%2e/x" "/public//x" "/public%2Fx" "/public;x"; do
	out=$(curl -s --max-time 5 --path-as-is -o /dev/null -w '%{http_code}' "http://127.0.0.1:$A$p")
	check "an ambiguous path is refused 400: $p ($out)" test "$out" = 400
done
out=$(get "http://127.0.0.1:$A/slow?ms=4000")
check "a route's request timeout (1 s): 504 ($(echo "$out" | last))" sh -c 'echo "$1" | tail -n 1 | grep -q "^504"' x "$out"
check "... logged with reason request_timeout" wait_log "$T/b-access.log" '"route":"slow","status":"504".*"reason":"request_timeout"'

# ---- limits and failures ---------------------------------------------------------------------
big=$(head -c 9000 /dev/zero | tr '\0' 'a')
out=$(curl -s --max-time 5 -o /dev/null -w '%{http_code}' -H "X-Big: $big" "http://127.0.0.1:$A/public/x")
check "a head over max_header_bytes: 431 ($out)" test "$out" = 431
out=$(curl -s --max-time 5 -o /dev/null -w '%{http_code}' --http2-prior-knowledge -H "X-Big: $big" "http://127.0.0.1:$A/public/x")
check "... over h2c too: 431 ($out)" test "$out" = 431
many=$(for i in $(seq 50); do printf -- "-H X-H$i:v "; done)
# shellcheck disable=SC2086
out=$(curl -s --max-time 5 -o /dev/null -w '%{http_code}' $many "http://127.0.0.1:$A/public/x")
check "more fields than max_headers (40; 50 sent): 431 ($out)" test "$out" = 431
# shellcheck disable=SC2086
out=$(curl -s --max-time 5 -o /dev/null -w '%{http_code}' --http2-prior-knowledge $many "http://127.0.0.1:$A/public/x")
check "... over h2c too: 431 ($out)" test "$out" = 431
check "... all four 431s logged with reason header_limit" \
    sh -c 'for i in $(seq 50); do test "$(grep -c "\"status\":\"431\".*\"reason\":\"header_limit\"" "$1")" -eq 4 && exit 0; sleep 0.1; done; exit 1' x "$T/a-access.log"
nghttp -nv "http://127.0.0.1:$A/public/x" >"$T/nghttp-settings.out" 2>&1
check "max_streams (200) is the sidecar's SETTINGS_MAX_CONCURRENT_STREAMS" \
    grep -q 'SETTINGS_MAX_CONCURRENT_STREAMS(0x03):200' "$T/nghttp-settings.out"
head -c 3000 /dev/zero >"$T/slowbody"
out=$(curl -s --max-time 20 -o /dev/null -w '%{http_code} %{time_total}' -H 'Expect:' --limit-rate 300 \
    -X POST --data-binary @"$T/slowbody" "http://127.0.0.1:$A/public/upload")
check "a request body slower than min_body_rate (2000 B/s; this one 300 B/s): 408 ($out s)" \
    sh -c 'echo "$1" | grep -q "^408 "' x "$out"
check "... logged with reason min_body_rate" wait_log "$T/b-access.log" '"path":"/public/upload".*"status":"408".*"reason":"min_body_rate"'
out=$(get "http://127.0.0.1:$ADEAD/x")
check "an application that is not there: 502 ($(echo "$out" | last))" sh -c 'echo "$1" | tail -n 1 | grep -q "^502"' x "$out"
check "... the inbound sidecar logs connect_failed" wait_log "$T/b-access.log" '"listener":"nobody".*"status":"502".*"reason":"connect_failed"'
out=$(get "http://127.0.0.1:$AWRONG/public/x")
check "a peer with an unexpected SPIFFE ID: 502 ($(echo "$out" | last))" sh -c 'echo "$1" | tail -n 1 | grep -q "^502"' x "$out"
check "... logged with reason unexpected_id" wait_log "$T/a-access.log" '"listener":"to-wrong".*"status":"502".*"reason":"unexpected_id"'

# ---- load and pooling --------------------------------------------------------------------------
timeout 60 h2load -n 2000 -c 10 -m 10 "http://127.0.0.1:$A/public/load" >"$T/h2load.out" 2>&1
check "h2load, 2000 requests on 10 connections x 10 streams: all 2xx" \
    grep -q "status codes: 2000 2xx" "$T/h2load.out" || grep -E "requests:|status" "$T/h2load.out"
hs0=$(metric "$AMET" 'hsmesh_proxy_handshakes_total{listener="to-web"')
c0=$(metric "$AMET" 'hsmesh_proxy_connections_total{listener="to-web"')
i=0; ok200=0
while [ $i -lt 200 ]; do
	[ "$(curl -s --max-time 5 -o /dev/null -w '%{http_code}' "http://127.0.0.1:$A/public/p$i")" = 200 ] && ok200=$((ok200 + 1))
	i=$((i + 1))
done
hs1=$(metric "$AMET" 'hsmesh_proxy_handshakes_total{listener="to-web"')
c1=$(metric "$AMET" 'hsmesh_proxy_connections_total{listener="to-web"')
check "200 application connections, one request each: all 200 ($ok200)" test "$ok200" = 200
check "... $((c1 - c0)) application connections cost $((hs1 - hs0)) upstream handshakes (pooled: at most 2)" \
    sh -c '[ $(($2 - $1)) -ge 200 ] && [ $(($4 - $3)) -le 2 ]' x "$c0" "$c1" "$hs0" "$hs1"
check "per-route request counters and the latency histogram in /metrics" sh -c '
	m=$(curl -s "http://127.0.0.1:$1/metrics")
	echo "$m" | grep -q "^hsmesh_proxy_http_requests_total{listener=\"web\",route=\"sm-create\",class=\"4xx\"} [1-9]" &&
	echo "$m" | grep -q "^hsmesh_proxy_http_requests_total{listener=\"web\",route=\"public\",class=\"2xx\"} [1-9]" &&
	echo "$m" | grep -q "^hsmesh_proxy_http_request_seconds_count{listener=\"web\",route=\"public\"} [1-9]"' x "$BMET"
check "upstream connections in /metrics: a's pools opened $(metric "$AMET" 'hsmesh_proxy_upstream_connections_total{listener="to-web"') to web" \
    test "$(metric "$AMET" 'hsmesh_proxy_upstream_connections_total{listener="to-web"')" -le 4

# ---- flow control: a slow reader makes no sidecar buffer --------------------------------------
rss() { awk '/^VmRSS/ {print $2}' "/proc/$1/status"; }
ra0=$(rss "$PA"); rb0=$(rss "$PB")
curl -s --max-time 4 --limit-rate 500k --http2-prior-knowledge -o /dev/null "http://127.0.0.1:$A2/bytes?n=500000000" &
cp=$!
sleep 3
ra1=$(rss "$PA"); rb1=$(rss "$PB")
wait $cp
check "a client reading at 500 KB/s from a 500 MB response: a grew $((ra1 - ra0)) KiB, b $((rb1 - rb0)) KiB (< 8 MiB each)" \
    sh -c '[ $(($2 - $1)) -lt 8192 ] && [ $(($4 - $3)) -lt 8192 ]' x "$ra0" "$ra1" "$rb0" "$rb1"

# ---- SIGHUP: routes change for new requests, the connection stays ------------------------
wc0=$(metric "$BMET" 'hsmesh_proxy_connections_total{listener="web"')
"$HSMESH" app get "http://127.0.0.1:$A/public/hup" --count 10 --interval 400 >"$T/hup.out" 2>"$T/hup.err" &
gp=$!
sleep 1.5
sed -i "s|allow: \[$IDA\]   # public|allow: [$IDC]   # public|" "$T/b.yaml"
kill -HUP "$PB"
wait_log "$T/b.log" "reloaded .*b.yaml" 5
wait "$gp"
check "SIGHUP: the first requests 200, those after the reload 403 ($(tr '\n' ' ' <"$T/hup.out"))" \
    sh -c 'head -n 1 "$1" | grep -q "^200" && tail -n 1 "$1" | grep -q "^403" && [ "$(wc -l <"$1")" -eq 10 ]' x "$T/hup.out"
check "... on one client connection that stayed open (no 'closed' from the client)" \
    sh -c '! grep -qi "closed" "$1"' x "$T/hup.err"
check "... and no new connection from a to b for it" test "$(metric "$BMET" 'hsmesh_proxy_connections_total{listener="web"')" = "$wc0"

# ---- a reload that changes an outbound listener's upstream drains its pool -------------------
up0=$(metric "$AMET" 'hsmesh_proxy_upstream_connections_total{listener="to-web"')
sed -i "s|connect: 127.0.0.1:$BWEB, expect_id: $IDB, protocol: http }|connect: 127.0.0.1:$BWEB, expect_id: $IDB, protocol: http, server_name: b.example.org }|" "$T/a.yaml"
kill -HUP "$PA"
wait_log "$T/a.log" "reloaded .*a.yaml" 5
i=0; ok=0
while [ $i -lt 10 ]; do
	[ "$(curl -s --max-time 5 -o /dev/null -w '%{http_code}' "http://127.0.0.1:$A/nnrf-nfm/v1/after")" = 200 ] && ok=$((ok + 1))
	i=$((i + 1))
done
up1=$(metric "$AMET" 'hsmesh_proxy_upstream_connections_total{listener="to-web"')
check "a reload with another server_name: requests go on ($ok of 10) over new pool connections ($up0 -> $up1 opened)" \
    sh -c '[ "$1" = 10 ] && [ "$3" -gt "$2" ]' x "$ok" "$up0" "$up1"
check "... and the old ones close once idle (pool connections open: $(metric "$AMET" 'hsmesh_proxy_upstream_connections_active{listener="to-web"'))" \
    sh -c 'for i in $(seq 50); do [ "$(curl -s "http://127.0.0.1:$1/metrics" | awk "/^hsmesh_proxy_upstream_connections_active\\{listener=\"to-web\"/ {print \$NF}")" -le 2 ] && exit 0; sleep 0.1; done; exit 1' x "$AMET"

# ---- drain -------------------------------------------------------------------------------------
kill -TERM "$PA" "$PC"
check "SIGTERM: proxy a exits 0" wait_exit "$PA" 15
check "SIGTERM: proxy c exits 0" wait_exit "$PC" 15
kill -TERM "$PB"
check "SIGTERM: proxy b exits 0" wait_exit "$PB" 15
check "no sanitizer report in the proxies' logs" sh -c '! grep -l "ERROR: AddressSanitizer\|runtime error" "$@"' x "$T/a.log" "$T/b.log" "$T/c.log"
done_testing
