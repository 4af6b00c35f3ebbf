#!/bin/sh
# t_confine.sh - confinement of the daemons (docs/ARCHITECTURE.md
# "Confinement"): `ca serve`, the agent and their keyholders run under
# their seccomp filters with NoNewPrivs and still enroll, renew and sign;
# with token.pin_env no process's /proc/PID/environ holds the PIN after
# start; a keyholder killed under a confined CA comes back through the
# spawner; a FIFO at the old or the new lock path does not hang a
# keyholder; started as root with `user:`, each process runs as that user;
# `user:` refused when started as another user; a keyholder with --user.
. "$(dirname "$0")/lib.sh"

ID=spiffe://example.org/web
PINVAR=HSMESH_CONFINE_PIN_$$

# confined PID: "Seccomp: 2" and "NoNewPrivs: 1" in /proc/PID/status
confined() {
	grep -q '^Seccomp:[[:space:]]*2$' /proc/"$1"/status && grep -q '^NoNewPrivs:[[:space:]]*1$' /proc/"$1"/status
}
# keyholder_of PID: PID's child running `hsmesh keyholder`
keyholder_of() {
	for _c in $(children "$1"); do
		tr '\0' ' ' </proc/"$_c"/cmdline 2>/dev/null | grep -q ' keyholder ' && { echo "$_c"; return 0; }
	done
	return 1
}
# no_pin PID...: none of the processes' initial environments holds the variable
no_pin() {
	for _p in "$@"; do
		tr '\0' '\n' </proc/"$_p"/environ | grep -q "^$PINVAR=" && return 1
	done
	return 0
}
uid_of() { awk '/^Uid:/ { print $2 }' /proc/"$1"/status; }

# ---- a CA and an agent, both with pin_env -------------------------------------------------
ca_setup cfca ec-p256
sed -i "s|^  pin_file:.*|  pin_env: $PINVAR|" "$T/cfca.yaml"
env "$PINVAR=1234" "$HSMESH" ca init -c "$T/cfca.yaml" >/dev/null 2>"$T/init.err" ||
    { not_ok "ca init: $(cat "$T/init.err")"; done_testing; exit 1; }
yaml_set "$T/cfca.yaml" svid_ttl 8s
env "$PINVAR=1234" "$HSMESH" ca serve -c "$T/cfca.yaml" --port-file "$T/ca.port" 2>"$T/ca.log" &
CA=$!; track $CA
for _ in $(seq 200); do [ -s "$T/ca.port" ] && break; sleep 0.05; done
CAPORT=$(cat "$T/ca.port" 2>/dev/null)
check "ca serve starts with token.pin_env" test -n "$CAPORT"
CAKH=$(keyholder_of "$CA")
check "ca serve: Seccomp 2, NoNewPrivs 1" confined "$CA"
check "the CA's keyholder ($CAKH): Seccomp 2, NoNewPrivs 1" confined "$CAKH"
"$HSMESH" ca token -c "$T/cfca.yaml" --id "$ID" >"$T/join.tok"

new_token node
cat >"$T/agent.yaml" <<EOF
token:
  module: $SOFTHSM_MODULE
  uri: "pkcs11:token=node"
  pin_env: $PINVAR
ca:
  url: http://127.0.0.1:$CAPORT/.well-known/cmp
  root: $T/cfca/root.pem
state_dir: $T/state
socket: $T/agent.sock
renew_at: 0.5
retry:
  min: 1s
  max: 2s
workloads:
  - id: $ID
    uid: $(id -u)
    join_token_file: $T/join.tok
EOF
env "$PINVAR=1234" "$HSMESH" agent -c "$T/agent.yaml" 2>"$T/agent.log" &
AGENT=$!; track $AGENT
check "the confined agent enrolls $ID" wait_in "$T/agent.log" "$ID: enrolled certificate serial" 20
AGKH=$(keyholder_of "$AGENT")
check "the agent: Seccomp 2, NoNewPrivs 1" confined "$AGENT"
check "the agent's keyholder ($AGKH): Seccomp 2, NoNewPrivs 1" confined "$AGKH"
ALL=$(echo $CA $CAKH $AGENT $AGKH $(pgrep -P "$CA") $(pgrep -P "$AGENT") | tr " " "\n" | sort -u | tr "\n" " ")
check "pin_env: no process's /proc/PID/environ holds $PINVAR (the daemons, their keyholders and spawners: $ALL)" no_pin $ALL
check "the PIN reached the keyholders by a pipe (--pin-fd)" \
    sh -c 'tr "\0" " " </proc/$1/cmdline | grep -q -- "--pin-fd 4" && tr "\0" " " </proc/$2/cmdline | grep -q -- "--pin-fd 4"' x "$CAKH" "$AGKH"
check "the confined agent renews (svid_ttl 8s, renew_at 0.5)" \
    wait_in "$T/agent.log" "$ID: rotated certificate serial" 15
tls13_input "$T/data"
"$HSMESH" agent client --socket "$T/agent.sock" sign "$ID" <"$T/data" >"$T/sig.der" 2>"$T/sign.err"
openssl x509 -in "$T/state/example.org+web/cert.pem" -pubkey -noout >"$T/pub.pem"
check "a handshake signature by the confined agent and keyholder verifies" \
    sh -c 'openssl dgst -sha256 -verify "$1" -signature "$2" "$3" >/dev/null' x "$T/pub.pem" "$T/sig.der" "$T/data"

# ---- the CA's keyholder killed: restarted by the spawner, still confined ------------------
kill -9 "$CAKH"
check "the CA's keyholder comes back" wait_in "$T/ca.log" "keyholder restarted" 15
CAKH2=$(keyholder_of "$CA")
check "the new keyholder ($CAKH2) is confined and has no PIN in its environment" \
    sh -c 'confined() { grep -q "^Seccomp:[[:space:]]*2$" /proc/$1/status && grep -q "^NoNewPrivs:[[:space:]]*1$" /proc/$1/status; }; confined "$1" && ! tr "\0" "\n" </proc/$1/environ | grep -q "^$2="' x "$CAKH2" "$PINVAR"
"$HSMESH" ca token -c "$T/cfca.yaml" --id spiffe://example.org/two >"$T/join2.tok"
sed -e "s|$T/join.tok|$T/join2.tok|" -e "s|$ID|spiffe://example.org/two|" -e "s|$T/state|$T/state2|" \
    -e "s|$T/agent.sock|$T/agent2.sock|" "$T/agent.yaml" >"$T/agent2.yaml"
env "$PINVAR=1234" "$HSMESH" agent -c "$T/agent2.yaml" 2>"$T/agent2.log" &
AG2=$!; track $AG2
check "an enrollment after the restart, without restarting ca serve" \
    wait_in "$T/agent2.log" "spiffe://example.org/two: enrolled certificate serial" 20
kill "$AG2" "$AGENT" 2>/dev/null; wait_exit "$AG2" 10; wait_exit "$AGENT" 10

# ---- lock files: a FIFO at the old and at the new path does not hang a keyholder ---------
printf '1234\n' >"$T/node.pin"
# keyholder_starts NAME [COMMAND-PREFIX...]: a keyholder on $T/NAME.sock serves within 10 s
keyholder_starts() {
	_kn=$1; shift
	"$@" "$HSMESH" keyholder --module "$SOFTHSM_MODULE" --token pkcs11:token=node \
	    --pin-file "$T/node.pin" --socket "$T/$_kn.sock" 2>"$T/$_kn.log" &
	_k=$!; track $_k
	wait_in "$T/$_kn.log" "serving token" 10; _r=$?
	kill "$_k" 2>/dev/null; wait_exit "$_k" 5 >/dev/null
	return $_r
}
mkdir -p "$T/lt"
chmod 700 "$T/lt"
mkdir -m 700 "$T/lt/hsmesh-$(id -u)"
mkfifo "$T/lt/hsmesh-$(id -u)/p11-open.lock"
check "a FIFO at the new lock path: the keyholder still starts (TMPDIR=$T/lt)" \
    keyholder_starts k1 env TMPDIR="$T/lt"
check "... and says why it goes on without the lock" grep -q "not a regular file" "$T/k1.log"
# The old path is shared by every user of /tmp: the FIFO is planted in a
# private mount namespace only (bind-mounted over it), never for others.
if [ "$(id -u)" = 0 ] && unshare -m true 2>/dev/null; then
	mkfifo "$T/oldfifo"
	[ -e /tmp/.hsmesh-p11-open.lock ] || : >>/tmp/.hsmesh-p11-open.lock
	check "a FIFO at the old lock path (/tmp/.hsmesh-p11-open.lock): the keyholder still starts" \
	    keyholder_starts k2 unshare -m sh -c 'mount --bind "$1" /tmp/.hsmesh-p11-open.lock && shift && exec "$@"' x "$T/oldfifo"
else
	ok "# SKIP a FIFO at the old lock path (needs root and unshare -m)"
fi

# ---- user: ---------------------------------------------------------------------------------
if [ "$(id -u)" = 0 ] && [ "${HSMESH_TOKEN_BACKEND:-}" != tpm ] && id nobody >/dev/null 2>&1; then
	kill "$CA"; wait_exit "$CA" 10
	chmod 755 "$T"
	chown -R nobody "$T/cfca" "$T/tokens"
	NOBODY=$(id -u nobody)
	echo "user: nobody" >>"$T/cfca.yaml"
	yaml_set "$T/cfca.yaml" svid_ttl 1h
	env "$PINVAR=1234" "$HSMESH" ca serve -c "$T/cfca.yaml" --port-file "$T/cfca/ca.port2" 2>"$T/ca2.log" &
	CA=$!; track $CA
	for _ in $(seq 200); do [ -s "$T/cfca/ca.port2" ] && break; sleep 0.05; done
	CAPORT=$(cat "$T/cfca/ca.port2" 2>/dev/null)
	CAKH=$(keyholder_of "$CA")
	check "ca serve with user: nobody runs as uid $NOBODY (Uid: $(uid_of "$CA"))" test "$(uid_of "$CA")" = "$NOBODY" ||
	    sed 's/^/#   /' "$T/ca2.log"
	check "its keyholder runs as uid $NOBODY too" test "$(uid_of "$CAKH")" = "$NOBODY"
	check "... both confined" sh -c 'for p; do grep -q "^Seccomp:[[:space:]]*2$" /proc/$p/status || exit 1; done' x "$CA" "$CAKH"
	"$HSMESH" ca token -c "$T/cfca.yaml" --id spiffe://example.org/three >"$T/join3.tok" 2>"$T/tok3.err"
	chown nobody "$T/join3.tok"
	mkdir -p "$T/state3" && chown nobody "$T/state3"
	sed -e "s|$T/join.tok|$T/join3.tok|" -e "s|$ID|spiffe://example.org/three|" -e "s|$T/state|$T/state3|" \
	    -e "s|$T/agent.sock|$T/agent3.sock|" -e "s|/.well-known|/.well-known|" \
	    -e "s|127.0.0.1:[0-9]*/|127.0.0.1:$CAPORT/|" "$T/agent.yaml" >"$T/agent3.yaml"
	echo "user: nobody" >>"$T/agent3.yaml"
	env "$PINVAR=1234" "$HSMESH" agent -c "$T/agent3.yaml" 2>"$T/agent3.log" &
	AG3=$!; track $AG3
	check "the agent with user: nobody enrolls" \
	    wait_in "$T/agent3.log" "spiffe://example.org/three: enrolled certificate serial" 20 ||
	    sed 's/^/#   /' "$T/agent3.log"
	AGKH=$(keyholder_of "$AG3")
	check "the agent runs as uid $NOBODY (Uid: $(uid_of "$AG3")), its keyholder too" \
	    sh -c 'test "$1" = "$3" && test "$2" = "$3"' x "$(uid_of "$AG3")" "$(uid_of "$AGKH")" "$NOBODY"
	# A keyholder started by hand as root: --user, the PIN on a pipe.
	mkdir -p "$T/khu" && chown nobody "$T/khu"
	printf '1234' | "$HSMESH" keyholder --module "$SOFTHSM_MODULE" --token pkcs11:token=node \
	    --pin-fd 5 --user nobody --socket "$T/khu/kh.sock" 5<&0 2>"$T/khu.log" &
	KHU=$!; track $KHU
	check "keyholder --user nobody --pin-fd: serves" wait_in "$T/khu.log" "serving token" 10
	check "... as uid $NOBODY (Uid: $(uid_of "$KHU")), confined" \
	    sh -c 'test "$1" = "$2" && grep -q "^Seccomp:[[:space:]]*2$" /proc/$3/status' x "$(uid_of "$KHU")" "$NOBODY" "$KHU"
	kill "$KHU" 2>/dev/null
	sed "s/^user: nobody/user: daemon/" "$T/cfca.yaml" >"$T/cfca-daemon.yaml"
	# nobody may not reach the build directory (a checkout under a 0700 directory):
	# it runs a copy of the binary from $T
	install -m 755 "$HSMESH" "$T/hsmesh-nobody"
	refuse "user: refused when started as another user than root" "user 'daemon'.*started as uid $NOBODY" \
	    setpriv --reuid=nobody --regid=nogroup --clear-groups env "$PINVAR=1234" \
	    "$T/hsmesh-nobody" ca serve -c "$T/cfca-daemon.yaml"
else
	ok "# SKIP user: (needs root and SoftHSM2)"
fi
done_testing
