#!/bin/sh
# ASAN=yes
# t_custody.sh HSMESH - custody that holds against the workload itself:
# node identity, node-protected enrollment, registration entries and the
# agent's workload selectors (docs/PROTOCOL.md "Node protection and
# registration entries", docs/AGENT.md).
#
# A real CA and a real agent on SoftHSM2 tokens; `openssl cmp` plays the
# attacker (and a second, file-key node). With entries on the CA and one
# node join token (none per workload), the agent enrolls its node, learns
# its entries, enrolls them under the node's certificate and serves each
# to the processes its selectors select: other uids and another executable
# are refused, as is anyone asking for the node's own identity. A workload
# certificate with a file key (ca issue) cannot renew a node-managed ID; a
# node no entry authorises gets no workload ID; a node's replayed kur is
# refused; `ca entry rm` stops the renewals at once. The agent restarts
# with the CA down on its cached entries.
. "$(dirname "$0")/lib.sh"

H=$(readlink -f "$HSMESH")
NODE=spiffe://example.org/node/n1
NODE2=spiffe://example.org/node/filekey
WEB=spiffe://example.org/web		# node-managed: uid WUID running hsmesh
SIDE=spiffe://example.org/side		# node-managed: uid WUID, any executable
ROOTID=spiffe://example.org/admin	# node-managed: uid 0 (so root is a client at all)
CLI=spiffe://example.org/cli		# self-managed
WUID=12346
ME=$(id -u)

new_token ca
new_token agent
printf '1234\n' >"$T/pin"
chmod 711 "$T"		# the workload's uid reaches the socket and its files
write_ca_yaml "$T/ca.yaml" ca "$T/pin"
yaml_set "$T/ca.yaml" svid_ttl 1h
Y=$T/ca.yaml
quiet "$HSMESH" ca init -c "$Y" || { not_ok "ca init"; done_testing; exit 1; }
cp "$T/ca/root.pem" "$T/root.pem"; chmod 644 "$T/root.pem"	# state_dir is 0700
ROOT=$T/root.pem
DB=$T/ca/ledger.db
AUDIT=$T/ca/audit.log
"$HSMESH" ca serve -c "$Y" --port-file "$T/ca.port" 2>"$T/ca.log" &
CA=$!; track $CA
for _ in $(seq 100); do [ -s "$T/ca.port" ] && break; sleep 0.05; done
PORT=$(cat "$T/ca.port")
check "ca serve listens (port ${PORT:-none})" test -n "$PORT"

ocmp() { timeout 30 openssl cmp -server "127.0.0.1:$PORT" -path .well-known/cmp -trusted "$ROOT" "$@"; }
newkey() { openssl ecparam -name prime256v1 -genkey -noout -out "$1" 2>/dev/null; chmod 644 "$1"; }
ref() { echo "${1%%:*}"; }
sec() { echo "${1#*:}"; }
refused_with() { # DESC PATTERN cmd...: the command fails and prints PATTERN
	d=$1; p=$2; shift 2
	if "$@" >"$T/out" 2>&1; then not_ok "$d (succeeded)"; return; fi
	if grep -qiE "$p" "$T/out"; then ok "$d: $(grep -iE "$p" "$T/out" | head -n 1 | cut -c1-200)"
	else not_ok "$d"; sed 's/^/#   /' "$T/out" | tail -n 5; fi
}
audited() { grep '"event":"refused"' "$AUDIT" | grep -q "$1"; }
wait_log() { # PATTERN SECS [FILE]
	_i=0
	while [ "$_i" -lt $(($2 * 10)) ]; do
		grep -qE "$1" "${3:-$T/agent.log}" 2>/dev/null && return 0
		sleep 0.1; _i=$((_i + 1))
	done
	return 1
}
certs_of() { sqlite3 "$DB" "select count(*) from certs where spiffe_id = '$1'"; }
as_wuid() { setpriv --reuid=$WUID --regid=$WUID --clear-groups "$@"; }

# ---- ca entry: the command line ----------------------------------------------------
check "ca entry --help exits 0 and shows every subcommand" \
    sh -c '"$1" ca entry --help | grep -q "entry add" && "$1" ca entry --help | grep -q "entry rm"' x "$HSMESH"
refuse "entry add without a selector" "at least one --selector" \
    sh -c '"$1" ca entry add -c "$2" --node "$3" --id "$4" 2>&1 >/dev/null | head -n 1 >&2; exit 1' x "$HSMESH" "$Y" "$NODE" "$WEB"
refuse "entry add with a bad selector" "uid must be a number" \
    "$HSMESH" ca entry add -c "$Y" --node "$NODE" --id "$WEB" --selector uid:me
refuse "entry add for another trust domain" "not in trust domain" \
    "$HSMESH" ca entry add -c "$Y" --node "$NODE" --id spiffe://other.org/web --selector uid:1
refuse "entry add with a TTL over max_ttl" "exceeds max_ttl" \
    "$HSMESH" ca entry add -c "$Y" --node "$NODE" --id "$WEB" --selector uid:1 --ttl 30d
refuse "entry add with a bad node pattern" "pattern" \
    "$HSMESH" ca entry add -c "$Y" --node-pattern "spiffe://example.org/*/x" --id "$WEB" --selector uid:1
refuse "entry rm of an unknown entry" "no registration entry" \
    "$HSMESH" ca entry rm -c "$Y" 0123456789abcdef
refuse "entry show of an ID without entries" "no registration entry for" \
    "$HSMESH" ca entry show -c "$Y" --id "$WEB"

# ---- entries and one node token: no join token per workload -----------------------
E_WEB=$("$HSMESH" ca entry add -c "$Y" --node "$NODE" --id "$WEB" --selector "uid:$WUID" \
    --selector "path:$H" --ttl 20s)
check "entry add prints the entry's ID ($E_WEB)" sh -c 'echo "$1" | grep -Eq "^[0-9a-f]{16}$"' x "$E_WEB"
E_SIDE=$("$HSMESH" ca entry add -c "$Y" --node-pattern "spiffe://example.org/node/*" --id "$SIDE" \
    --selector "uid:$WUID")
E_ROOT=$("$HSMESH" ca entry add -c "$Y" --node "$NODE" --id "$ROOTID" --selector uid:0)
"$HSMESH" ca entry list -c "$Y" >"$T/list"
check "entry list: one line per entry (3)" test "$(wc -l <"$T/list")" -eq 3
check "entry list names ID, node and selectors" \
    grep -q "^$E_WEB	$WEB	$NODE	20s	uid:$WUID,path:$H\$" "$T/list"
check "entry show" sh -c '"$1" ca entry show -c "$2" "$3" | grep -q "managed by:  the nodes matching spiffe://example.org/node/\*"' \
    x "$HSMESH" "$Y" "$E_SIDE"
refuse "a workload join token for a node-managed ID is refused" "node-managed .*no join token is needed" \
    "$HSMESH" ca token -c "$Y" --id "$WEB"
refuse "a node token for a workload ID is refused" "ID of registration entry" \
    "$HSMESH" ca token -c "$Y" --node --id "$WEB"
"$HSMESH" ca token -c "$Y" --node --id "$NODE" >"$T/node.join"
refuse "a workload token for a node ID (named by an entry) is refused" "node identity: its join token needs --node" \
    "$HSMESH" ca token -c "$Y" --id "$NODE"

cat >"$T/agent.yaml" <<EOF
token:
  module: $SOFTHSM_MODULE
  uri: "pkcs11:token=agent"
  pin_file: $T/pin
ca:
  url: http://127.0.0.1:$PORT/.well-known/cmp
  root: $ROOT
state_dir: $T/state
socket: $T/agent.sock
retry:
  min: 1s
  max: 2s
node:
  id: $NODE
  join_token_file: $T/node.join
  refresh: 2s
workloads:                 # also an entry's ID: the entry wins
  - id: $ROOTID
    uid: 12399
EOF
S=$T/agent.sock
"$HSMESH" agent -c "$T/agent.yaml" 2>"$T/agent.log" &
AGENT=$!; track $AGENT
check "the agent enrolls its node with the node token" wait_log "$NODE: enrolled certificate serial" 20
check "the agent learns its 3 entries from the CA" wait_log "registration entries from the CA: 3 for this node" 10
check "it enrolls $WEB under the node's certificate (no workload token)" wait_log "$WEB: enrolled certificate serial" 15
check "... and $SIDE (entry by node pattern)" wait_log "$SIDE: enrolled certificate serial" 15
check "... and $ROOTID (in agent.yaml too)" wait_log "$ROOTID: enrolled certificate serial" 15
NKID=$(sed -n "s|.*$NODE: generated ec-p256 key \([0-9a-f]*\) .*|\1|p" "$T/agent.log" | head -n 1)
check "the node certificate is a node's in the ledger" \
    test "$(sqlite3 "$DB" "select kind from certs where spiffe_id = '$NODE'")" = 1
check "$WEB's certificate names the node it was issued to, and was node-protected" \
    test "$(sqlite3 "$DB" "select node_id || ' ' || substr(auth, 1, 5) from certs where spiffe_id = '$WEB'")" = "$NODE node:"
C=$T/state/example.org+web/cert.pem
check "$WEB's certificate lives 20 s (the entry's ttl)" \
    test $(( $(enddate_epoch "$C") - $(date +%s) )) -le 20
p11_privkeys 1234 agent >"$T/keys"
check "the node key is labelled hsmesh-node-*, workload keys hsmesh-wl-*" \
    sh -c 'grep -q "^hsmesh-node-[0-9a-f]\{8\}|" "$1" && grep -q "^hsmesh-wl-[0-9a-f]\{8\}|" "$1"' x "$T/keys"
check "the node's key is sensitive and never extractable" \
    sh -c 'grep "^hsmesh-node-" "$1" | grep -q "never extractable"' x "$T/keys"

# ---- selectors on the local API ------------------------------------------------------
if [ "$ME" = 0 ]; then
	mkdir -p "$T/other"; cp "$H" "$T/other/hsmesh"; chmod -R a+rX "$T/other"
	check "a process of uid $WUID running $H gets $WEB" \
	    sh -c 'setpriv --reuid=$1 --regid=$1 --clear-groups "$2" agent client --socket "$3" get "$4" >"$5" && cmp -s "$5" "$6"' \
	    x $WUID "$H" "$S" "$WEB" "$T/got.pem" "$C"
	tls13_input "$T/data"; chmod 644 "$T/data"
	openssl x509 -in "$C" -pubkey -noout >"$T/webpub.pem"
	as_wuid "$H" agent client --socket "$S" sign "$WEB" <"$T/data" >"$T/sig.der" 2>"$T/sign.err"
	check "... and its signatures, which verify with $WEB's certificate" \
	    sh -c 'openssl dgst -sha256 -verify "$1" -signature "$2" "$3" >/dev/null' x "$T/webpub.pem" "$T/sig.der" "$T/data"
	refuse "the same uid running another executable (a copy at another path) may not use $WEB" \
	    "may not use" as_wuid "$T/other/hsmesh" agent client --socket "$S" get "$WEB"
	check "the agent logs why (the path selector)" wait_log "$WEB not selected \(path: the process runs another executable\)" 2
	check "... that executable still gets $SIDE (uid $WUID only)" \
	    quiet as_wuid "$T/other/hsmesh" agent client --socket "$S" get "$SIDE"
	refuse "another uid (12347) is refused at connect" "closed the connection" \
	    setpriv --reuid=12347 --regid=12347 --clear-groups "$H" agent client --socket "$S" get "$WEB"
	check "the agent logged the refused process" wait_log "refused local client uid 12347 pid [0-9]+: no workload identity for this process" 2
	refuse "root is no exception to $WEB's selectors" "may not use" \
	    "$HSMESH" agent client --socket "$S" get "$WEB"
else
	ok "# SKIP other uids and executables need root (setpriv)"
fi

# ---- the node identity is never served -------------------------------------------------
refuse "root asking for the node's identity is refused" "may not use this SPIFFE ID" \
    "$HSMESH" agent client --socket "$S" get "$NODE"
refuse "root cannot subscribe to it either" "may not use this SPIFFE ID" \
    "$HSMESH" agent client --socket "$S" watch "$NODE" --count 1
refuse "nor sign with the node's key (named by its key id) under an identity it may use" \
    "is not a current or retired key of $ROOTID" \
    sh -c 'echo x | "$1" agent client --socket "$2" sign "$3" --key "$4"' x "$HSMESH" "$S" "$ROOTID" "$NKID"
check "root gets the identity its entry gives uid 0" quiet "$HSMESH" agent client --socket "$S" get "$ROOTID"
check "$ROOTID, also in agent.yaml's workloads, follows its entry" \
    wait_log "$ROOTID: also a registration entry for this node: the entry applies" 1
check "... enrolled under the node's certificate, without a join token" \
    test "$(sqlite3 "$DB" "select count(*) from certs where spiffe_id = '$ROOTID' and node_id = '$NODE'")" -ge 1
if [ "$ME" = 0 ]; then
	refuse "... and agent.yaml's uid (12399) no longer applies to it" "closed the connection" \
	    setpriv --reuid=12399 --regid=12399 --clear-groups "$H" agent client --socket "$S" get "$ROOTID"
fi

# ---- the attack: a file-key certificate of a node-managed ID renews itself -----------
newkey "$T/wl.key"
openssl req -new -key "$T/wl.key" -subj /CN=x -out "$T/wl.csr" 2>/dev/null
"$HSMESH" ca issue -c "$Y" --csr "$T/wl.csr" --id "$WEB" >"$T/wl.pem" 2>"$T/issue.err"
check "ca issue made a certificate of $WEB with a file key" test "$(uri_sans "$T/wl.pem")" = "$WEB"
chmod 644 "$T/wl.pem"; newkey "$T/wl2.key"
KURUSER=""; [ "$ME" = 0 ] && KURUSER="setpriv --reuid=$WUID --regid=$WUID --clear-groups"
refused_with "a kur under the workload's uid, signed by that certificate, is refused" \
    "ID is node-managed: renewal must be protected by an authorised node" \
    $KURUSER timeout 30 openssl cmp -server "127.0.0.1:$PORT" -path .well-known/cmp -trusted "$ROOT" \
    -cmd kur -cert "$T/wl.pem" -key "$T/wl.key" -newkey "$T/wl2.key" -certout "$T/stolen.pem"
check "... and audited" audited "ID is node-managed: renewal must be protected by an authorised node"
check "no certificate came of it" test ! -s "$T/stolen.pem"

# ---- a node no entry authorises -------------------------------------------------------
TOK2=$("$HSMESH" ca token -c "$Y" --node --id "$NODE2")
newkey "$T/n2.key"
check "a second node (file key, openssl cmp) enrolls with its node token" \
    quiet ocmp -cmd ir -ref "$(ref "$TOK2")" -secret "pass:$(sec "$TOK2")" -newkey "$T/n2.key" \
    -subject /CN=n2 -sans "$NODE2" -certout "$T/n2.pem"
newkey "$T/x.key"
refused_with "a node no entry authorises is refused a workload ID" \
    "no registration entry authorises node $NODE2 for $WEB" \
    ocmp -cmd ir -cert "$T/n2.pem" -key "$T/n2.key" -newkey "$T/x.key" -subject /CN=x -sans "$WEB" -certout "$T/x.pem"
check "... and audited" audited "no registration entry authorises node $NODE2 for $WEB"
refused_with "nor may it renew the agent's certificate of $WEB" "was not issued to this node" \
    ocmp -cmd kur -cert "$T/n2.pem" -key "$T/n2.key" -oldcert "$C" -newkey "$T/x.key" -certout "$T/x.pem"
check "the pattern entry does authorise it for $SIDE" \
    quiet ocmp -cmd ir -cert "$T/n2.pem" -key "$T/n2.key" -newkey "$T/x.key" -subject /CN=x -sans "$SIDE" -certout "$T/side.pem"
check "... a workload certificate of $SIDE issued to $NODE2" \
    test "$(sqlite3 "$DB" "select count(*) from certs where spiffe_id = '$SIDE' and node_id = '$NODE2'")" = 1
newkey "$T/x2.key"
check "the node renews it (kur naming it in oldCertID)" \
    quiet ocmp -cmd kur -cert "$T/n2.pem" -key "$T/n2.key" -oldcert "$T/side.pem" -newkey "$T/x2.key" -certout "$T/side2.pem"
newkey "$T/x3.key"
refused_with "the same kur again (a replay, or a fork) is refused" "already renewed" \
    ocmp -cmd kur -cert "$T/n2.pem" -key "$T/n2.key" -oldcert "$T/side.pem" -newkey "$T/x3.key" -certout "$T/x.pem"
refused_with "a workload certificate cannot sign an ir" "join token \(MAC\), attestation evidence or the signature of an authorised node" \
    ocmp -cmd ir -cert "$T/side2.pem" -key "$T/x2.key" -newkey "$T/x3.key" -subject /CN=x -sans "$SIDE" -certout "$T/x.pem"

# ---- self-managed: a CMP client manages the ID itself ----------------------------------
"$HSMESH" ca entry add -c "$Y" --id "$CLI" --self-managed --ttl 5m >/dev/null
TOK3=$("$HSMESH" ca token -c "$Y" --id "$CLI")
check "a self-managed ID enrolls with a join token" \
    quiet ocmp -cmd ir -ref "$(ref "$TOK3")" -secret "pass:$(sec "$TOK3")" -newkey "$T/x.key" -subject /CN=c -certout "$T/cli.pem"
check "... for the entry's ttl (5 m)" test $(( $(enddate_epoch "$T/cli.pem") - $(date +%s) )) -le 300
check "... and renews itself (kur by its own certificate)" \
    quiet ocmp -cmd kur -cert "$T/cli.pem" -key "$T/x.key" -newkey "$T/x2.key" -certout "$T/cli2.pem"

# ---- rotation under the node, then ca entry rm stops it ------------------------------
check "$WEB rotates under the node's certificate (kur naming it)" wait_log "$WEB: rotated certificate serial" 25
check "the ledger links the renewal, signed by the node" \
    test "$(sqlite3 "$DB" "select count(*) from certs where spiffe_id = '$WEB' and parent_serial is not null and auth like 'node:%,kur:%'")" -ge 1
if [ "$ME" = 0 ]; then
	as_wuid "$H" agent client --socket "$S" watch "$WEB" --count 100 >"$T/watch.out" 2>"$T/watch.err" &
	WATCH=$!; track $WATCH
	sleep 0.5
fi
"$HSMESH" ca entry rm -c "$Y" "$E_WEB" >"$T/rm.out"
check "ca entry rm says what it removed" grep -q "removed entry $E_WEB ($WEB)" "$T/rm.out"
check "the agent drops $WEB at its next refresh" wait_log "$WEB: no longer this node's \(registration entry removed\)" 10
N=$(certs_of "$WEB")
if [ "$ME" = 0 ]; then
	refuse "$WEB is no longer served" "may not use" \
	    as_wuid "$H" agent client --socket "$S" get "$WEB"
fi
if [ "$ME" = 0 ]; then
	wait_exit "$WATCH" 10; rc=$?
	check "a client subscribed to $WEB is disconnected (watch ended, rc $rc: $(head -c 120 "$T/watch.err"))" \
	    sh -c '[ "$1" -ne 0 ] && [ "$1" -ne 124 ] && grep -q "^svid " "$2"' x "$rc" "$T/watch.out"
fi
check "its state files are gone" test ! -e "$C"
WLABEL=hsmesh-wl-$(printf '%s' "$WEB" | sha256sum | cut -c1-8)
gone_key() { p11_privkeys 1234 agent >"$T/keys2"; ! grep -q "^$WLABEL|" "$T/keys2"; }
_i=0; while ! gone_key && [ $_i -lt 50 ]; do sleep 0.1; _i=$((_i + 1)); done
check "its keys are destroyed in the token ($WLABEL)" gone_key
sleep 12
check "no renewal of $WEB after the entry went (still $N certificates, 20 s ttl)" test "$(certs_of "$WEB")" = "$N"
check "$SIDE and $ROOTID are still served" quiet "$HSMESH" agent client --socket "$S" get "$ROOTID"

# ---- restart with the CA down: the cached entries -------------------------------------
kill -TERM "$CA"; wait_exit "$CA" 5
kill -TERM "$AGENT"; wait_exit "$AGENT" 10; rc=$?
check "SIGTERM: the agent exits 0 (got $rc)" test "$rc" -eq 0
mv "$T/agent.log" "$T/agent1.log"
"$HSMESH" agent -c "$T/agent.yaml" 2>"$T/agent.log" &
AGENT=$!; track $AGENT
check "restart, CA down: the node reuses its certificate" wait_log "$NODE: reusing certificate serial" 10
check "... its entries come from the cache" wait_log "2 registration entries from $T/state/node/entries.der" 5
check "... and $ROOTID is served again" wait_log "$ROOTID: reusing certificate serial" 5
sleep 0.3
check "... to root" quiet "$HSMESH" agent client --socket "$S" get "$ROOTID"
check "... the entries stay while the CA is away" wait_log "registration entries: CA unreachable" 10
kill -TERM "$AGENT"; wait_exit "$AGENT" 10

grep -h -A30 -E "ERROR: (Address|Leak)Sanitizer|runtime error" "$T"/agent*.log "$T/ca.log" | sed "s/^/# /" | head -n 60
sed 's/^/# agent: /' "$T/agent.log" | tail -n 10
done_testing
