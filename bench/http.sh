# bench/http.sh - the HTTP/2 part of `make bench` (issue 18), sourced by
# bench/run.sh (part "http"; `ONLY=http make bench` runs it alone).
#
# Three sidecar pairs in front of the same backend (`hsmesh app serve`,
# which speaks h2c), mutual TLS between the two proxies of each pair:
#
#   hsmesh   h2load -> hsmesh proxy (outbound, protocol: http, h2c in)
#            =h2 mTLS (pooled)=> hsmesh proxy (inbound, protocol: http,
#            app_protocol: h2c) -> app; keys in SoftHSM2 through the agent
#   haproxy  HAProxy 2.6, mode http, `proto h2` on the client side and h2
#            (ALPN) on the server side of each proxy, keys in files
#   nghttpx  nghttpx (nghttp2-proxy) pair, h2 backends, client certificate
#            on the outbound one's backend, --verify-client on the inbound
#
# Measured for each, the contenders' runs interleaved as in run.sh:
#   - requests/s and p50/p99 latency at 10 connections x 100 streams and
#     100 x 10 (h2load, 1 KiB responses; percentiles from --log-file);
#   - CPU per request of the whole pair (hsmesh: with the agent and its
#     keyholder), utime + stime from /proc over the 10 x 100 run;
#   - short-lived application connections through the outbound proxy,
#     1000 a second for HDUR s (h2load -r, one request each): connections/s
#     reached and upstream TLS connections per 1000 of them (hsmesh: its
#     handshake counters; the others: distinct connections to the inbound
#     proxy seen by `ss` every 50 ms, a lower bound);
#   - private memory per idle HTTP/2 connection: bench/h2idle.c opens
#     3000 h2c connections with one request each and leaves them open;
#     (private memory of the pair with them - without) / 3000.

HTTP_STREAMS=$([ "${QUICK:-0}" = 1 ] && echo 10x100 || echo "10x100 100x10")
# seconds per h2load run: 4 (QUICK=1: 1), shorter than run.sh's DUR so that
# make bench stays under 15 minutes (issue 19); h2load makes 40-50 k requests
# a second through a pair, enough for its percentiles
HDUR=$([ "${QUICK:-0}" = 1 ] && echo 1 || echo 4)

# pids of the HTTP pairs, by contender
HPIDS_hsmesh=""; HPIDS_haproxy=""; HPIDS_nghttpx=""; HENTRY_hsmesh=""; HENTRY_haproxy=""; HENTRY_nghttpx=""

# h_up NAME: start the pair of contender NAME, set HENTRY_NAME and HPIDS_NAME; 1 if it does not answer
h_up() {
	h_start_$1 || return 1
	eval "ent=\$HENTRY_$1"
	for _ in $(seq 100); do
		curl -s -o /dev/null --max-time 2 --http2-prior-knowledge "http://127.0.0.1:$ent/" && return 0
		sleep 0.1
	done
	say "http: $1 does not answer; its logs:"; tail -n 5 "$T"/h-"$1"*.log >&2
	return 1
}

h_start_hsmesh() {
	pa=$(free_port); pb=$(free_port); HM_MA=$(free_port); HM_MB=$(free_port)
	cat >"$T/h-hsmesh-b.yaml" <<EOF
agent: { socket: $T/agent.sock, id: "spiffe://example.org/b" }
workers: 2
limits: { max_connections: 8000 }
inbound:
  - { name: in, listen: "127.0.0.1:$pb", forward_to: "127.0.0.1:$APP", protocol: http, app_protocol: h2c, allow: ["spiffe://example.org/a"] }
metrics: { listen: "127.0.0.1:$HM_MB" }
EOF
	cat >"$T/h-hsmesh-a.yaml" <<EOF
agent: { socket: $T/agent.sock, id: "spiffe://example.org/a" }
workers: 2
limits: { max_connections: 8000 }
outbound:
  - { name: out, listen: "127.0.0.1:$pa", connect: "127.0.0.1:$pb", expect_id: "spiffe://example.org/b", protocol: http }
metrics: { listen: "127.0.0.1:$HM_MA" }
EOF
	"$HSMESH" proxy -c "$T/h-hsmesh-b.yaml" 2>"$T/h-hsmesh-b.log" & p1=$!
	"$HSMESH" proxy -c "$T/h-hsmesh-a.yaml" 2>"$T/h-hsmesh-a.log" & p2=$!
	track $p1 $p2
	HPIDS_hsmesh="$p1 $p2"; HENTRY_hsmesh=$pa; HB_hsmesh=$pb
	for _ in $(seq 100); do grep -q "ready:" "$T/h-hsmesh-a.log" 2>/dev/null && grep -q "ready:" "$T/h-hsmesh-b.log" && return 0; sleep 0.1; done
	return 1
}

h_start_haproxy() {
	pa=$(free_port); pb=$(free_port)
	h_ha_head() {
		printf 'global\n  nbthread 2\n  maxconn 8000\ndefaults\n  mode http\n  timeout connect 5s\n'
		printf '  timeout client 300s\n  timeout server 300s\n  http-reuse always\n  maxconn 8000\n'
	}
	{ h_ha_head; cat <<EOF
frontend in
  bind 127.0.0.1:$pb ssl crt $T/fb.combined ca-file $ROOT verify required alpn h2,http/1.1 ssl-min-ver TLSv1.3
  default_backend app
backend app
  server app 127.0.0.1:$APP proto h2
EOF
	} >"$T/h-haproxy-b.cfg"
	{ h_ha_head; cat <<EOF
frontend out
  bind 127.0.0.1:$pa proto h2
  default_backend peer
backend peer
  server b 127.0.0.1:$pb ssl crt $T/fa.combined ca-file $ROOT verify required alpn h2 ssl-min-ver TLSv1.3
EOF
	} >"$T/h-haproxy-a.cfg"
	haproxy -f "$T/h-haproxy-b.cfg" -db 2>"$T/h-haproxy-b.log" & p1=$!
	haproxy -f "$T/h-haproxy-a.cfg" -db 2>"$T/h-haproxy-a.log" & p2=$!
	track $p1 $p2
	HPIDS_haproxy="$p1 $p2"; HENTRY_haproxy=$pa; HB_haproxy=$pb
}

h_start_nghttpx() {
	pa=$(free_port); pb=$(free_port)
	# --conf /dev/null: not the package's /etc/nghttpx/nghttpx.conf
	nghttpx --conf=/dev/null -n 2 --frontend="127.0.0.1,$pb" --backend="127.0.0.1,$APP;;proto=h2" \
	    --verify-client --verify-client-cacert="$ROOT" --no-ocsp --log-level=WARN \
	    --accesslog-file=/dev/null --errorlog-file="$T/h-nghttpx-b.log" --worker-frontend-connections=8000 --rlimit-nofile=20000 \
	    "$T/fb.key" "$T/fb.pem" >/dev/null 2>&1 & p1=$!
	# the backend's certificate names no host (a SPIFFE ID only): --insecure, the chain unchecked
	nghttpx --conf=/dev/null -n 2 --frontend="127.0.0.1,$pa;no-tls" --backend="127.0.0.1,$pb;;tls;proto=h2" \
	    --client-private-key-file="$T/fa.key" --client-cert-file="$T/fa.pem" --cacert="$ROOT" \
	    --insecure --no-ocsp --log-level=WARN --accesslog-file=/dev/null --worker-frontend-connections=8000 --rlimit-nofile=20000 \
	    --errorlog-file="$T/h-nghttpx-a.log" >/dev/null 2>&1 & p2=$!
	track $p1 $p2
	HPIDS_nghttpx="$p1 $p2"; HENTRY_nghttpx=$pa; HB_nghttpx=$pb
}

# h_tree PIDS...: the pids and their children (nghttpx's workers are processes)
h_tree() { for p in "$@"; do echo "$p"; children "$p"; done; }

# the pids whose CPU counts for a contender: the pair with its workers; hsmesh's agent and its keyholder too
h_cpu_pids() {
	eval "h_tree \$HPIDS_$1"
	[ "$1" = hsmesh ] && [ -n "$AGENT_PID" ] && h_tree "$AGENT_PID"
}

# h_load NAME CONNS STREAMS: one h2load run through NAME's pair, appended to acc.h2.NAME.CxS:
# req/s, p50 ms, p99 ms, CPU µs per request (pair + agent + keyholder), failed
h_load() {
	eval "ent=\$HENTRY_$1"
	cp=$(h_cpu_pids "$1" | tr '\n' ' ')
	c0=$(PIDS=$cp cpu_ticks)
	rm -f "$T/h2load.log"
	h2load -D "$HDUR" -c "$2" -m "$3" -t 2 --log-file="$T/h2load.log" \
	    "http://127.0.0.1:$ent/bytes?n=1024" >"$T/h2load.out" 2>&1
	c1=$(PIDS=$cp cpu_ticks)
	rps=$(awk '/^finished in/ {print $4}' "$T/h2load.out")
	ok=$(awk '/^requests:/ {print $8}' "$T/h2load.out")
	failed=$(awk '/^requests:/ {print $10}' "$T/h2load.out")
	pct=$(awk '{print $3}' "$T/h2load.log" 2>/dev/null | sort -n | awk '{a[NR] = $1} END {
	    if (NR == 0) { print "0 0"; exit }
	    i = int(NR * 0.5 + 0.5); j = int(NR * 0.99 + 0.5); if (i < 1) i = 1; if (j < 1) j = 1
	    printf "%.3f %.3f", a[i] / 1000, a[j] / 1000 }')
	cpu=$(awk -v n="${ok:-0}" -v t=$((c1 - c0)) -v hz="$(getconf CLK_TCK)" 'BEGIN { if (n > 0) printf "%.1f", t / hz * 1e6 / n; else print 0 }')
	echo "${rps:-0} $pct $cpu ${failed:-0}" >>"$T/acc.h2.$1.$2x$3"
}

# h_newconn NAME: short-lived application connections through NAME's outbound proxy,
# 1000 a second for HDUR s (h2load -r: h2c, one request each, closed when answered):
# connections/s reached and upstream connections per 1000
h_newconn() {
	eval "ent=\$HENTRY_$1 inb=\$HB_$1"
	if [ "$1" = hsmesh ]; then
		hs0=$(curl -s "http://127.0.0.1:$HM_MA/metrics" | awk '/^hsmesh_proxy_handshakes_total\{listener="out"/ {s += $NF} END {print s + 0}')
	else
		: >"$T/ss.$1"
		( while :; do ss -Htn state established "dport = :$inb" 2>/dev/null | awk '{print $3}' >>"$T/ss.$1"; sleep 0.05; done ) &
		sp=$!
	fi
	nc=$((HDUR * 1000))
	h2load -r 1000 --rate-period=1s -c "$nc" -n "$nc" -m 1 -t 2 "http://127.0.0.1:$ent/bytes?n=1024" >"$T/h2load.new" 2>&1
	n=$(awk '/^requests:/ {print $8}' "$T/h2load.new")
	cps=$(awk -v n="${n:-0}" '/^finished in/ { t = $3 + 0; if ($3 ~ /ms,?$/) t /= 1000; if (t > 0) printf "%.0f", n / t; else print 0 }' "$T/h2load.new")
	if [ "$1" = hsmesh ]; then
		hs1=$(curl -s "http://127.0.0.1:$HM_MA/metrics" | awk '/^hsmesh_proxy_handshakes_total\{listener="out"/ {s += $NF} END {print s + 0}')
		up=$((hs1 - hs0))
	else
		kill "$sp" 2>/dev/null; wait "$sp" 2>/dev/null
		up=$(sort -u "$T/ss.$1" | wc -l)
	fi
	per=$(awk -v u="$up" -v n="${n:-0}" 'BEGIN { if (n > 0) printf "%.2f", u * 1000 / n; else print 0 }')
	echo "${cps:-0} $up ${n:-0} $per" >>"$T/acc.h2new.$1"
}

# h_idle NAME: private memory per idle HTTP/2 connection (3000 of them, QUICK: 1000), on a
# pair started for it (after the load runs, pools and caches would hold memory already)
h_idle() {
	eval "PIDS=\"\$HPIDS_$1\""; stop_pair
	h_up "$1" || return 0
	eval "ent=\$HENTRY_$1"
	eval "pids=\$(h_tree \$HPIDS_$1 | tr '\n' ' ')"
	nidle=$([ "$QUICK" = 1 ] && echo 1000 || echo 3000)
	curl -s -o /dev/null --http2-prior-knowledge "http://127.0.0.1:$ent/"
	sleep 0.5
	m0=$(PIDS=$pids priv_kib); r0=$(PIDS=$pids rss_kib)
	"$B/bench/h2idle" "$ent" "$nidle" / >"$T/h2idle.out" 2>&1 &
	ip=$!; track $ip
	for _ in $(seq 600); do grep -q "^ready" "$T/h2idle.out" 2>/dev/null && break; sleep 0.1; done
	got=$(awk '/^ready/ {print $2}' "$T/h2idle.out")
	sleep 1
	m1=$(PIDS=$pids priv_kib); r1=$(PIDS=$pids rss_kib)
	kill "$ip" 2>/dev/null; wait "$ip" 2>/dev/null
	per=$(awk -v a="$m0" -v b="$m1" -v n="${got:-0}" 'BEGIN { if (n > 0) printf "%.1f", (b - a) / n; else print 0 }')
	say "http: $1 idle HTTP/2 connections: ${got:-0} open, private memory of the pair $m0 -> $m1 KiB: $per KiB each (RSS $r0 -> $r1 KiB)"
	record "{\"test\":\"http_idle\",\"contender\":\"$1\",\"conns\":${got:-0},\"priv_kib_before\":$m0,\"priv_kib_after\":$m1,\"kib_per_conn\":$per}"
}

part_http() {
	say "=== HTTP/2 through a mutual-TLS pair (hsmesh, HAProxy mode http, nghttpx)"
	for tool in h2load nghttpx haproxy; do
		command -v $tool >/dev/null 2>&1 || { record "{\"test\":\"http_skipped\",\"why\":\"$tool is missing\"}"; say "http: $tool is missing"; return 0; }
	done
	[ -x "$B/bench/h2idle" ] || { say "http: $B/bench/h2idle is missing (make bench builds it)"; return 0; }
	hkeys=""
	for c in hsmesh haproxy nghttpx; do h_up $c && hkeys="$hkeys $c"; done
	for rep in $(seq $REPS); do
		order=$(rotate "$hkeys" $((rep - 1)))
		say "http: repetition $rep of $REPS (order: $order)"
		for cs in $HTTP_STREAMS; do
			for k in $order; do h_load "$k" "${cs%x*}" "${cs#*x}"; done
		done
		for k in $order; do h_newconn "$k"; done
	done
	for k in $hkeys; do
		for cs in $HTTP_STREAMS; do
			f=$T/acc.h2.$k.$cs
			rps=$(col "$f" 1); p50=$(col "$f" 2); p99=$(col "$f" 3); cpu=$(col "$f" 4)
			failed=$(awk '{s += $5} END {print s + 0}' "$f" 2>/dev/null)
			say "http: $k $cs: $rps req/s, p50 $p50 ms, p99 $p99 ms, $cpu µs CPU per request, $failed failed"
			record "{\"test\":\"http_load\",\"contender\":\"$k\",\"streams\":\"$cs\",\"rps\":$rps,\"p50_ms\":$p50,\"p99_ms\":$p99,\"cpu_us_per_req\":$cpu,\"failed\":$failed}"
		done
		f=$T/acc.h2new.$k
		cps=$(col "$f" 1); per=$(col "$f" 4); up=$(col "$f" 2); n=$(col "$f" 3)
		say "http: $k new application connections: $cps conn/s, $per upstream connections per 1000 ($up for $n)"
		record "{\"test\":\"http_newconn\",\"contender\":\"$k\",\"cps\":$cps,\"upstream\":$up,\"conns\":$n,\"upstream_per_1000\":$per}"
	done
	for k in $hkeys; do h_idle "$k"; done
	say "http: (the idle measurement restarts each pair first)"
	for k in $hkeys; do eval "PIDS=\"\$HPIDS_$k\""; stop_pair; done
}

# ---- the report: RESULTS.md's HTTP/2 section (run.sh calls it) ------------------------
hj() { # hj TEST CONTENDER FIELD [STRING]: a field of the part's records
	grep -F "\"test\":\"$1\",\"contender\":\"$2\"" "$JSON" | { [ -n "${4:-}" ] && grep -F -- "$4" || cat; } |
	    head -n 1 | sed -n "s/.*\"$3\":\"\{0,1\}\([^\",}]*\).*/\1/p"
}

# h_limit CONTENDER CxS: what limits hsmesh where it misses a target against CONTENDER at CxS,
# from the CPU each pair spent per request in the same run
h_limit() {
	a=$(hj http_load hsmesh cpu_us_per_req "\"streams\":\"$2\""); b=$(hj http_load "$1" cpu_us_per_req "\"streams\":\"$2\"")
	if awk -v a="${a:-0}" -v b="${b:-0}" 'BEGIN { exit !(a > b) }'; then
		echo "CPU: the hsmesh pair spends $a µs per request (with its agent and keyholder), $1's $b µs"
	else
		echo "not the pair's CPU ($a µs per request against $1's $b µs): the $(nproc) cores are shared with h2load and the app, and the run's noise"
	fi
}

report_http() {
	grep -q '"test":"http_' "$JSON" || return 0
	echo "## HTTP/2 through a mutual-TLS pair (issue 18)"
	echo
	if grep -q '"test":"http_skipped"' "$JSON"; then
		echo "Not run: $(grep '"test":"http_skipped"' "$JSON" | sed 's/.*"why":"\([^"]*\)".*/\1/')."
		echo
		return 0
	fi
	echo "h2load (h2c, prior knowledge) -> outbound proxy -> HTTP/2 over mutual TLS 1.3 -> inbound proxy -> the"
	echo "app over h2c, \`GET /bytes?n=1024\`, ${HDUR} s per run, median of $REPS runs interleaved across the contenders;"
	echo "p50/p99 from h2load's per-request log. hsmesh: \`protocol: http\` on both sidecars (\`app_protocol: h2c\`),"
	echo "keys in SoftHSM2 through the agent; HAProxy $(haproxy -v 2>/dev/null | head -n 1 | awk '{print $3}') \`mode http\`, \`proto h2\` in front, h2 by ALPN to"
	echo "its peer, \`proto h2\` to the app, \`http-reuse always\`; nghttpx $(nghttpx --version 2>/dev/null | awk '{print $2}') (\`--verify-client\` inbound, a client"
	echo "certificate on the outbound backend, \`proto=h2\` backends). Two workers (threads) per proxy. CPU per"
	echo "request: utime + stime of both proxies (hsmesh: and of the agent and its keyholder) over the 10 x 100 run."
	echo
	echo "| contender | conns x streams | req/s | × HAProxy | × nghttpx | p50 ms | p99 ms | CPU µs per request |"
	echo "|---|---|---|---|---|---|---|---|"
	for cs in $HTTP_STREAMS; do
		for c in hsmesh haproxy nghttpx; do
			v=$(hj http_load $c rps "\"streams\":\"$cs\""); [ -n "$v" ] || continue
			echo "| $c | $(echo $cs | tr x ' ' | awk '{print $1 " × " $2}') | $v | $(ratio "$v" "$(hj http_load haproxy rps "\"streams\":\"$cs\"")") | $(ratio "$v" "$(hj http_load nghttpx rps "\"streams\":\"$cs\"")") | $(hj http_load $c p50_ms "\"streams\":\"$cs\"") | $(hj http_load $c p99_ms "\"streams\":\"$cs\"") | $(hj http_load $c cpu_us_per_req "\"streams\":\"$cs\"") |"
		done
	done
	echo
	echo "Short-lived application connections: h2load opens 1000 a second for ${HDUR} s through the outbound proxy"
	echo "(\`h2load -r 1000\`, h2c, one request each, closed once answered). Upstream connections per 1000 application ones: hsmesh"
	echo "from its handshake counters (full and resumed); HAProxy and nghttpx: the distinct connections to their"
	echo "inbound proxy \`ss\` saw, sampled every 50 ms (a lower bound)."
	echo
	echo "| contender | application conn/s | upstream connections | per 1000 application connections |"
	echo "|---|---|---|---|"
	for c in hsmesh haproxy nghttpx; do
		v=$(hj http_newconn $c cps); [ -n "$v" ] || continue
		echo "| $c | $v | $(hj http_newconn $c upstream) of $(hj http_newconn $c conns) | $(hj http_newconn $c upstream_per_1000) |"
	done
	echo
	echo "Idle HTTP/2 connections: bench/h2idle.c opens them one after the other (h2c, one request each) and keeps"
	echo "them open; private memory (Private_Clean + Private_Dirty) of both proxies of the pair, with them minus without."
	echo
	echo "| contender | idle connections | private KiB before | after | KiB per connection |"
	echo "|---|---|---|---|---|"
	for c in hsmesh haproxy nghttpx; do
		v=$(hj http_idle $c kib_per_conn); [ -n "$v" ] || continue
		echo "| $c | $(hj http_idle $c conns) | $(hj http_idle $c priv_kib_before) | $(hj http_idle $c priv_kib_after) | $v |"
	done
	echo
	echo "Targets (issue 18), with what limits a miss:"
	echo
	echo "| target | measured | | what limits it |"
	echo "|---|---|---|---|"
	for cs in $HTTP_STREAMS; do
		k=$(echo $cs | tr x ' ' | awk '{print $1 " × " $2}')
		h=$(hj http_load hsmesh rps "\"streams\":\"$cs\"")
		ph=$(hj http_load hsmesh p99_ms "\"streams\":\"$cs\"")
		for c in haproxy nghttpx; do
			want=$([ $c = haproxy ] && echo 1.2 || echo 1.0); cn=$([ $c = haproxy ] && echo HAProxy || echo nghttpx)
			r=$(ratio "$h" "$(hj http_load $c rps "\"streams\":\"$cs\"")")
			m=$(met "$r" "$want" ge)
			echo "| req/s ≥ ${want}× $cn's pair, $k | ${r}× | $m | $([ "$m" = "NOT met" ] && h_limit "$c" "$cs") |"
		done
		for c in haproxy nghttpx; do
			r=$(ratio "$ph" "$(hj http_load $c p99_ms "\"streams\":\"$cs\"")")
			m=$(met "$r" 1 le); cn=$([ $c = haproxy ] && echo HAProxy || echo nghttpx)
			echo "| p99 no higher than $cn's, $k | ${r}× | $m | $([ "$m" = "NOT met" ] && h_limit "$c" "$cs") |"
		done
	done
	per=$(hj http_newconn hsmesh upstream_per_1000); cps=$(hj http_newconn hsmesh cps)
	m=$(met "${per:--}" 10 le)
	echo "| ≤ 10 upstream handshakes per 1000 short-lived application connections ($cps conn/s) | $per | $m | $([ "$m" = "NOT met" ] && echo "pool connections opened for the burst: each holds at most \`max_concurrent_streams\` of the peer's streams") |"
	m=$(hj http_idle hsmesh kib_per_conn); mm=$(met "${m:--}" 48 le)
	echo "| ≤ 48 KiB private memory per idle HTTP/2 connection | $m KiB | $mm | $([ "$mm" = "NOT met" ] && echo "per connection: a TLS object on the inbound side, an nghttp2 session and its buffers on both") |"
	echo
	echo "The machine has $(nproc) cores shared by h2load, both proxies of a pair and the app (and, for hsmesh, the"
	echo "agent): each proxy's CPU per request is what the pair costs; requests/s show what the cores left give."
	echo "Not measured in this part yet: the pairs on an equal CPU budget (the layout of issue 19) and HTTP/1.1"
	echo "clients (wrk)."
	echo
}
