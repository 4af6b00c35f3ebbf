#!/bin/sh
# t_proxy_user.sh HSMESH - `user:` of proxy.yaml (docs/ARCHITECTURE.md
# "Confinement", docs/PROXY.md "Running as a user"). Started as root with
# `user: nobody`, the sidecar binds an inbound listener on a port below
# 1024 and its metrics endpoint, then runs as nobody in every thread (no
# capability left, its seccomp filter on) and relays mTLS both ways through
# a real agent and keyholder (SoftHSM2); the access log and ports file are
# nobody's. SIGHUP as nobody: a policy change applies, a rotated access log
# is reopened, a changed listen address (a new bind) and an access log
# nobody cannot open are refused as a whole with the running configuration
# kept. Refused with one line: a user that does not exist, a drop that
# fails (root without CAP_SETGID), and `user:` naming another user when
# started as a user other than root.
. "$(dirname "$0")/lib.sh"

if [ "$(id -u)" != 0 ] || [ "${HSMESH_TOKEN_BACKEND:-}" = tpm ] || ! id nobody >/dev/null 2>&1; then
	ok "# SKIP proxy user: (needs root, SoftHSM2 and the user nobody)"
	done_testing
	exit 0
fi
NOBODY=$(id -u nobody)
NOGROUP=$(id -g nobody)
ID=spiffe://example.org/web
IDCL=spiffe://example.org/client

# diag FILE...: the tail of each file as TAP comments (after a failure)
diag() { for f in "$@"; do echo "# --- $f"; tail -n 15 "$f" 2>/dev/null | sed 's/^/#   /'; done; }
# port NAME FILE: the port a proxy bound for listener NAME
port() { awk -v n="$1" '$1 == n { print $2 }' "$2" 2>/dev/null; }
# ids_are PID UID GID: every thread's real, effective, saved and fs ids are
# UID and GID, its supplementary groups do not include root's, and it holds
# no capability
ids_are() {
	_nt=0
	for _s in /proc/"$1"/task/*/status; do
		awk -v u="$2" -v g="$3" '
			/^Uid:/ { if ($2 != u || $3 != u || $4 != u || $5 != u) bad = 1 }
			/^Gid:/ { if ($2 != g || $3 != g || $4 != g || $5 != g) bad = 1 }
			/^Groups:/ { for (i = 2; i <= NF; i++) if ($i == 0) bad = 1 }
			/^Cap(Prm|Eff|Amb):/ { if ($2 !~ /^0+$/) bad = 1 }
			END { exit bad }' "$_s" || { echo "# $_s:"; grep -E '^(Uid|Gid|Groups|Cap)' "$_s" | sed 's/^/#   /'; return 1; }
		_nt=$((_nt + 1))
	done
	# the main thread, 2 workers and the agent link's reader at least
	[ "$_nt" -ge 4 ] || { echo "# only $_nt threads"; return 1; }
}
# relays: curl with the client SVID to the inbound listener on the low
# port, and in plaintext through the outbound listener (mTLS to that same
# inbound listener, the proxy as client)
inbound_ok() {
	# -k: curl cannot check a SPIFFE ID (no DNS name); the proxy checks the client's
	test "$(curl -sk --max-time 10 --cert "$T/cl.pem" --key "$T/cl.key" "https://127.0.0.1:$LOW/" \
	    2>/dev/null)" = "hello from web"
}
inbound_no() {
	curl -sk --max-time 10 --cert "$T/cl.pem" --key "$T/cl.key" "https://127.0.0.1:$LOW/" >/dev/null 2>&1 && return 1
	return 0
}
outbound_ok() { test "$(curl -s --max-time 10 "http://127.0.0.1:$OUT/" 2>/dev/null)" = "hello from web"; }

# ---- a CA and an agent (as root) serving $ID to nobody's uid --------------------------
chmod 755 "$T"
MESH_UID=$NOBODY
if ! mesh_up "$ID"; then
	not_ok "the agent enrolled $ID"; diag "$T/ca.log" "$T/agent.log"; done_testing; exit 1
fi
file_svid cl "$IDCL"
"$HSMESH" app serve --listen 127.0.0.1:0 --name web --port-file "$T/app.port" 2>"$T/app.log" &
track $!
for _ in $(seq 100); do [ -s "$T/app.port" ] && break; sleep 0.05; done
APPPORT=$(cat "$T/app.port")
# nobody's own directory: the access log and the ports file
mkdir -m 755 "$T/pu" && chown nobody:"$NOGROUP" "$T/pu"
mkdir -m 700 "$T/rootonly"

# proxy_yaml FILE LISTEN_PORT ACCESS_LOG ALLOW...: the sidecar of $ID as nobody
proxy_yaml() {
	_f=$1 _lp=$2 _al=$3; shift 3
	{
		cat <<EOF
agent:
  socket: $T/agent.sock
  id: $ID
workers: 2
inbound:
  - name: web
    listen: 127.0.0.1:$_lp
    forward_to: 127.0.0.1:$APPPORT
    allow:
EOF
		for _a; do echo "      - $_a"; done
		cat <<EOF
outbound:
  - name: out
    listen: 127.0.0.1:0
    connect: 127.0.0.1:$LOW
    expect_id: $ID
    server_name: web
metrics:
  listen: 127.0.0.1:0
access_log: $_al
user: nobody
EOF
	} >"$_f"
}

# ---- started as root: a port below 1024, then nobody ----------------------------------------
# the first free one of a few privileged ports on loopback
P=""
for LOW in 844 853 876 889 898 913 947 968 986 999; do
	ss -Htln "sport = :$LOW" 2>/dev/null | grep -q . && continue
	proxy_yaml "$T/p.yaml" "$LOW" "$T/pu/access.log" "$IDCL" "$ID"
	rm -f "$T/pu/p.ports"
	"$HSMESH" proxy -c "$T/p.yaml" --ports-file "$T/pu/p.ports" 2>"$T/p.log" &
	P=$!
	for _ in $(seq 200); do { [ -s "$T/pu/p.ports" ] || ! alive "$P"; } && break; sleep 0.05; done
	alive "$P" && break
	grep -q "in use" "$T/p.log" || break
	P=""
done
[ -n "$P" ] && track "$P"
check "proxy with user: nobody, started as root, binds 127.0.0.1:$LOW (below 1024)" \
    sh -c 'test -n "$1" && test "$(awk '\''$1 == "web" { print $2 }'\'' "$2")" = "$3"' x "$P" "$T/pu/p.ports" "$LOW" ||
    diag "$T/p.log"
check "... and serves $ID from the agent" wait_in "$T/p.log" "ready: serving $ID" 20 || diag "$T/p.log" "$T/agent.log"
check "... says it runs as nobody" grep -q "running as user 'nobody' (uid $NOBODY, gid $NOGROUP)" "$T/p.log"
OUT=$(port out "$T/pu/p.ports"); MET=$(port metrics "$T/pu/p.ports")
check "every thread of the proxy runs as uid $NOBODY gid $NOGROUP, without root's group or a capability" \
    ids_are "$P" "$NOBODY" "$NOGROUP"
check "... under its seccomp filter with NoNewPrivs" \
    sh -c 'grep -q "^Seccomp:[[:space:]]*2$" /proc/$1/status && grep -q "^NoNewPrivs:[[:space:]]*1$" /proc/$1/status' x "$P"
check "the ports file and the access log are nobody's" \
    sh -c 'test "$(stat -c %u "$1/p.ports")" = "$2" && test "$(stat -c %u "$1/access.log")" = "$2"' x "$T/pu" "$NOBODY"
check "inbound mTLS on port $LOW: a client with $IDCL reaches the app" inbound_ok || diag "$T/p.log"
check "outbound: plaintext in, mTLS out (to the same proxy's inbound listener) reaches the app" outbound_ok ||
    diag "$T/p.log"
check "the metrics endpoint (bound as root) answers" \
    sh -c 'curl -s --max-time 10 "http://127.0.0.1:$1/metrics" | grep -q "^hsmesh_proxy_connections_total{listener=\"web\""' x "$MET"
check "the access log has the connections" wait_in "$T/pu/access.log" '"listener":"out".*"decision":"allow"' 5

# ---- SIGHUP as nobody ------------------------------------------------------------------------
# a policy change (the client is no longer allowed) and a rotated access log
mv "$T/pu/access.log" "$T/pu/access.log.1"
proxy_yaml "$T/p.yaml" "$LOW" "$T/pu/access.log" "$ID"
kill -HUP "$P"
check "SIGHUP: reloaded as nobody" wait_in "$T/p.log" "reloaded $T/p.yaml" 10 || diag "$T/p.log"
check "... the client is refused now" inbound_no
check "... the outbound path still works" outbound_ok
check "... the rotated access log was reopened: a new file of nobody's" \
    sh -c 'test "$(stat -c %u "$1" 2>/dev/null)" = "$2" && grep -q "\"decision\":\"deny\"" "$1"' x "$T/pu/access.log" "$NOBODY"
# a new listen address would need a new (privileged) bind: refused, nothing of the file applies
proxy_yaml "$T/p.yaml" 0 "$T/pu/access.log" "$IDCL" "$ID"
kill -HUP "$P"
check "SIGHUP with a changed listen address: refused, the running configuration kept" \
    wait_in "$T/p.log" "reload refused, keeping the running configuration: the set of listeners" 10
old_policy() { inbound_no && outbound_ok; }
check "... the proxy still listens on $LOW and its policy holds (the client refused, outbound served)" old_policy
# an access log nobody cannot open: refused as a whole (the allow list of the same file does not apply)
proxy_yaml "$T/p.yaml" "$LOW" "$T/rootonly/access.log" "$IDCL" "$ID"
kill -HUP "$P"
check "SIGHUP with an access log nobody cannot open: refused in one line, naming the file" \
    wait_in "$T/p.log" "reload refused, keeping the running configuration and access log: cannot open access log $T/rootonly/access.log: Permission denied" 10 ||
    diag "$T/p.log"
check "... nothing of that file applies (the client is still refused)" inbound_no
check "... and the access log in use goes on" sh -c '
	n=$(wc -l <"$1"); curl -s --max-time 10 "http://127.0.0.1:$2/" >/dev/null
	for _ in $(seq 50); do [ "$(wc -l <"$1")" -gt "$n" ] && exit 0; sleep 0.1; done; exit 1' x "$T/pu/access.log" "$OUT"
proxy_yaml "$T/p.yaml" "$LOW" "$T/pu/access.log" "$IDCL" "$ID"
kill -HUP "$P"
check "a good file again: the client is allowed" sh -c '
	for _ in $(seq 50); do [ "$(grep -c "reloaded " "$1")" -ge 2 ] && exit 0; sleep 0.1; done; exit 1' x "$T/p.log"
check "... through port $LOW" inbound_ok
check "after the reloads the proxy still runs as nobody in every thread" ids_are "$P" "$NOBODY" "$NOGROUP"
kill "$P"
check "SIGTERM: the proxy drains and exits 0" wait_exit "$P" 15

# ---- refusals --------------------------------------------------------------------------------
# starts_refused DESC PATTERN COMMAND...: exits 1 within 15 s without
# serving, its last stderr line is the one error line and matches PATTERN
starts_refused() {
	_d=$1 _pat=$2; shift 2
	rm -f "$T/pu/r.ports"
	"$@" --ports-file "$T/pu/r.ports" 2>"$T/r.log" &
	_r=$!; track $_r
	wait_exit "$_r" 15; _st=$?
	_last=$(tail -n 1 "$T/r.log")
	if [ "$_st" = 1 ] && ! [ -e "$T/pu/r.ports" ] && ! grep -q "started:" "$T/r.log" &&
	    echo "$_last" | grep -qE "^hsmesh proxy: $_pat"; then
		ok "$_d: $_last"
	else
		not_ok "$_d (status $_st)"; sed 's/^/#   /' "$T/r.log"
	fi
}
sed "s/^user: nobody/user: no-such-user-$$/" "$T/p.yaml" >"$T/bad.yaml"
starts_refused "a user that does not exist" "user 'no-such-user-$$' does not exist$" \
    "$HSMESH" proxy -c "$T/bad.yaml"
check "proxy --check of that file: refused in one line naming the file and the user" sh -c '
	out=$("$1" proxy -c "$2" --check 2>&1); st=$?
	[ "$st" = 1 ] && [ "$(printf "%s\n" "$out" | wc -l)" = 1 ] &&
	    [ "$out" = "hsmesh proxy: $2: user '"'"'$3'"'"' does not exist" ]' x "$HSMESH" "$T/bad.yaml" "no-such-user-$$"
check "... and of the file with user: nobody: ok" sh -c '"$1" proxy -c "$2" --check | grep -q ": ok ("' x "$HSMESH" "$T/p.yaml"
# root without CAP_SETGID and CAP_SETUID: the switch fails, the proxy does not run as root
starts_refused "a switch that fails (root without CAP_SETGID): the proxy does not run on as root" \
    "user 'nobody': cannot set its groups: Operation not permitted$" \
    setpriv --bounding-set -setgid,-setuid "$HSMESH" proxy -c "$T/p.yaml"
# nobody may not reach the build directory (a checkout under a 0700 directory):
# it runs a copy of the binary from $T
install -m 755 "$HSMESH" "$T/hsmesh-nobody"
proxy_yaml "$T/daemon.yaml" 0 "$T/pu/access2.log" "$ID"
sed -i "s/^user: nobody/user: daemon/" "$T/daemon.yaml"
starts_refused "user: daemon when started as nobody" \
    "user 'daemon' \(uid $(id -u daemon)\): started as uid $NOBODY, which cannot become another user" \
    setpriv --reuid=nobody --regid="$NOGROUP" --clear-groups "$T/hsmesh-nobody" proxy -c "$T/daemon.yaml"
check "hsmesh proxy --help tells of user:" sh -c '"$1" proxy --help | grep -q "user: NAME"' x "$HSMESH"
done_testing
