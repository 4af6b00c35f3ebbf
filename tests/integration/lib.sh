# tests/integration/lib.sh - sourced by integration scripts.
#
# Gives each script a throwaway directory ($T) with its own SoftHSM2 token
# (SOFTHSM2_CONF points into $T), TAP reporting, and cleanup of every
# process the script started (register pids with `track PID`).
#
# With HSMESH_TOKEN_BACKEND=tpm the tokens are on a software TPM 2.0 behind
# tpm2-pkcs11 instead (tests/integration/tpm.sh, started in $T on the first
# new_token); $SOFTHSM_MODULE then names that module (the variable is the
# module of the test tokens, whatever the backend).
HSMESH=${1:-${HSMESH:-build/hsmesh}}
case $HSMESH in /*) ;; *) HSMESH=$(pwd)/$HSMESH ;; esac
SOFTHSM_MODULE=/usr/lib/softhsm/libsofthsm2.so
if [ "${HSMESH_TOKEN_BACKEND:-}" = tpm ]; then
	. "$(dirname "$0")/tpm.sh"
	SOFTHSM_MODULE=$TPM_MODULE
fi
T=$(mktemp -d /tmp/hsmesh-test.XXXXXX)
_n=0; _fails=0; _pids=""

track() { _pids="$_pids $*"; }
_cleanup() {
	for p in $_pids; do kill "$p" 2>/dev/null; done
	sleep 0.1
	for p in $_pids; do kill -9 "$p" 2>/dev/null; done
	rm -rf "$T"
}
trap _cleanup EXIT INT TERM

ok()     { _n=$((_n + 1)); echo "ok $_n - $*"; }
not_ok() { _n=$((_n + 1)); _fails=$((_fails + 1)); echo "not ok $_n - $*"; }
# check DESC COMMAND... : ok when the command succeeds
check()  { d=$1; shift; if "$@"; then ok "$d"; else not_ok "$d"; return 1; fi; }
# refuse DESC PATTERN COMMAND... : ok when the command fails with a one-line
# stderr that matches PATTERN (grep -E, case-insensitive)
refuse() {
	d=$1; pat=$2; shift 2
	if "$@" >"$T/out" 2>"$T/err"; then not_ok "$d (succeeded)"; return; fi
	nl=$(grep -cv '^$' "$T/err")
	if [ "$nl" -ne 1 ]; then not_ok "$d (stderr has $nl lines)"; sed 's/^/#   /' "$T/err"; return; fi
	if grep -qiE "$pat" "$T/err"; then ok "$d: $(cat "$T/err")"; else not_ok "$d (stderr: $(cat "$T/err"))"; fi
}
done_testing() { echo "1..$_n"; [ "$_fails" -eq 0 ]; }

# new_token LABEL [PIN] [SO_PIN]: a fresh SoftHSM2 token in $T/tokens (or TPM token)
new_token() {
	if [ "${HSMESH_TOKEN_BACKEND:-}" = tpm ]; then
		[ -d "$T/tpm" ] || tpm_start "$T/tpm" || return 1
		tpm_new_token "$@"
		return
	fi
	mkdir -p "$T/tokens"
	printf 'directories.tokendir = %s/tokens\nobjectstore.backend = file\nlog.level = ERROR\n' "$T" >"$T/softhsm2.conf"
	export SOFTHSM2_CONF="$T/softhsm2.conf"
	softhsm2-util --init-token --free --label "$1" --pin "${2:-1234}" --so-pin "${3:-5678}" >/dev/null
}

# write_ca_yaml FILE TOKEN_LABEL PINFILE [extra yaml lines...]
write_ca_yaml() {
	f=$1; label=$2; pinf=$3; shift 3
	cat >"$f" <<YAML
trust_domain: example.org
token:
  module: $SOFTHSM_MODULE
  uri: "pkcs11:token=$label"
  pin_file: $pinf
key:
  type: ec-p256
state_dir: $T/ca
listen: 127.0.0.1:0
svid_ttl: 1h
max_ttl: 24h
database: $T/ca/ledger.db
YAML
	for l in "$@"; do echo "$l" >>"$f"; done
}

# ---- helpers for the CA suites (t_ca_*.sh) ----

# yaml_set FILE KEY VALUE: rewrite the value of every "KEY:" line (any indent)
# of a YAML file written by write_ca_yaml (keys there are unique per file).
yaml_set() {
	sed -i "s|^\( *\)$2:.*|\1$2: $3|" "$1"
}

# ca_setup NAME KEYTYPE [PIN]: a token labelled NAME, a PIN file and a ca.yaml
# at $T/NAME.yaml whose state lives in $T/NAME (key.type KEYTYPE).
ca_setup() {
	new_token "$1" "${3:-1234}"
	printf '%s\n' "${3:-1234}" >"$T/$1.pin"
	write_ca_yaml "$T/$1.yaml" "$1" "$T/$1.pin"
	yaml_set "$T/$1.yaml" type "$2"
	yaml_set "$T/$1.yaml" state_dir "$T/$1"
	yaml_set "$T/$1.yaml" database "$T/$1/ledger.db"
}

# new_csr OUT KIND [CN] [extra openssl req args...]: a PEM CSR with a
# throwaway in-memory key; KIND is ec-p256, ec-p384, rsa-2048 or rsa-3072.
new_csr() {
	_o=$1; _k=$2; _cn=${3:-workload}; shift 2; [ $# -gt 0 ] && shift
	case $_k in
	ec-p256) set -- -newkey ec -pkeyopt ec_paramgen_curve:P-256 "$@" ;;
	ec-p384) set -- -newkey ec -pkeyopt ec_paramgen_curve:P-384 "$@" ;;
	rsa-2048) set -- -newkey rsa:2048 "$@" ;;
	rsa-3072) set -- -newkey rsa:3072 "$@" ;;
	esac
	openssl req -new "$@" -nodes -keyout "$_o.key" -subj "/CN=$_cn" -out "$_o" 2>/dev/null
}

# corrupt_csr_sig IN OUT: OUT is IN with one byte of its signature flipped
# (the last byte of the DER, inside the signature BIT STRING). OUT still parses.
corrupt_csr_sig() {
	openssl req -in "$1" -outform DER -out "$T/.csr.der" || return 1
	_sz=$(wc -c <"$T/.csr.der"); _off=$((_sz - 2))
	_b=$(od -An -tu1 -j "$_off" -N1 "$T/.csr.der" | tr -d ' ')
	printf "\\$(printf %o $((_b ^ 0x5a)))" | dd of="$T/.csr.der" bs=1 seek="$_off" conv=notrunc 2>/dev/null
	openssl req -inform DER -in "$T/.csr.der" -out "$2" 2>/dev/null
}

# p11_privkeys: one line "label|id|access" per private key object on the
# token(s) of $SOFTHSM2_CONF, as pkcs11-tool shows them (PIN $1, default 1234).
p11_privkeys() {
	pkcs11-tool --module "$SOFTHSM_MODULE" ${2:+--token-label "$2"} --login --pin "${1:-1234}" \
	    --list-objects --type privkey 2>/dev/null | awk '
	    /^[^ \t]/ { if (inkey) print lbl "|" id "|" acc; inkey = /^Private Key Object/; lbl = id = acc = ""; next }
	    inkey && /^ +label:/  { sub(/^ +label: +/, ""); lbl = $0 }
	    inkey && /^ +ID:/     { sub(/^ +ID: +/, ""); id = $0 }
	    inkey && /^ +Access:/ { sub(/^ +Access: +/, ""); acc = $0 }
	    END { if (inkey) print lbl "|" id "|" acc }'
}

# access_protected "ACCESS LINE": true when the comma-separated flags contain
# "sensitive" and "never extractable" and not a bare "extractable".
access_protected() {
	echo "$1" | tr ',' '\n' | sed 's/^ *//; s/ *$//' >"$T/.acc"
	grep -qx 'sensitive' "$T/.acc" && grep -qx 'never extractable' "$T/.acc" && ! grep -qx 'extractable' "$T/.acc"
}

# spki_hex CERT|CSR: hex of the DER SubjectPublicKeyInfo
spki_hex() {
	if grep -q 'CERTIFICATE REQUEST' "$1"; then openssl req -in "$1" -noout -pubkey; else openssl x509 -in "$1" -noout -pubkey; fi |
	    openssl pkey -pubin -outform DER 2>/dev/null | od -An -v -tx1 | tr -d ' \n'
}

# enddate_epoch CERT / startdate_epoch CERT
enddate_epoch()   { date -d "$(openssl x509 -in "$1" -noout -enddate | cut -d= -f2)" +%s; }
startdate_epoch() { date -d "$(openssl x509 -in "$1" -noout -startdate | cut -d= -f2)" +%s; }

# uri_sans CERT: the URI SANs, one a line
uri_sans() {
	openssl x509 -in "$1" -noout -ext subjectAltName 2>/dev/null | tr ',' '\n' | sed -n 's/^ *URI://p'
}
# all_sans CERT: every SAN entry, one a line
all_sans() {
	openssl x509 -in "$1" -noout -ext subjectAltName 2>/dev/null | sed 1d | tr ',' '\n' | sed 's/^ *//; /^$/d'
}

# wait_log PATTERN SECS [FILE]: FILE ($T/agent.log) matches PATTERN (grep -E) within SECS
# tls13_input FILE: a TLS 1.3 server CertificateVerify input (64 spaces, the
# context string, 0x00, a 32-byte transcript hash), what the agent signs.
tls13_input() { { printf '%64s' ''; printf 'TLS 1.3, server CertificateVerify\000'; head -c 32 /dev/urandom; } >"$1"; }

wait_log() {
	_i=0
	while [ "$_i" -lt $(($2 * 10)) ]; do
		grep -qE "$1" "${3:-$T/agent.log}" 2>/dev/null && return 0
		sleep 0.1; _i=$((_i + 1))
	done
	return 1
}

# test_tool NAME: the path of tests/tools/NAME in the build directory (make
# check-build; the ASan hsmesh lives in BUILD/asan), or nothing
test_tool() {
	for _d in "${HSMESH_BUILD:-}" "$(dirname "$HSMESH")" "$(dirname "$HSMESH")/.."; do
		[ -n "$_d" ] && [ -x "$_d/tests/tools/$1" ] && { echo "$_d/tests/tools/$1"; return 0; }
	done
	return 1
}

# children PID: the pids of PID's direct children, but a daemon's spawner
# (comm "hsmesh-spawner", src/lib/spawner.h: it only starts the others)
children() {
	{ pgrep -P "$1" 2>/dev/null || cat /proc/"$1"/task/*/children 2>/dev/null | tr ' ' '\n' | sed '/^$/d'; } |
	    while read -r _p; do
		[ "$(cat /proc/"$_p"/comm 2>/dev/null)" = hsmesh-spawner ] || echo "$_p"
	done
}

# wait_child PID SECS: print the first child pid of PID that appears within SECS
wait_child() {
	_i=0
	while [ "$_i" -lt $(($2 * 20)) ]; do
		_c=$(children "$1" | head -n 1)
		[ -n "$_c" ] && { echo "$_c"; return 0; }
		[ -d /proc/"$1" ] || return 1
		sleep 0.05; _i=$((_i + 1))
	done
	return 1
}

# alive PID: the process exists and is not a zombie
alive() {
	[ -r /proc/"$1"/stat ] || return 1
	_st=$(sed 's/.*) //' /proc/"$1"/stat 2>/dev/null | cut -d' ' -f1)
	[ -n "$_st" ] && [ "$_st" != Z ] && [ "$_st" != X ]
}

# wait_exit PID SECS: wait for a background child of this shell to end; its
# status, or 124 after killing it when it outlives SECS.
wait_exit() {
	_i=0
	while alive "$1" && [ "$_i" -lt $(($2 * 20)) ]; do sleep 0.05; _i=$((_i + 1)); done
	if alive "$1"; then kill -9 "$1" 2>/dev/null; wait "$1" 2>/dev/null; return 124; fi
	wait "$1"
}

# wait_in FILE PATTERN SECS: FILE matches PATTERN (grep -E) within SECS
wait_in() {
	_i=0
	while [ "$_i" -lt $(($3 * 10)) ]; do
		grep -qE "$2" "$1" 2>/dev/null && return 0
		sleep 0.1; _i=$((_i + 1))
	done
	return 1
}

# serve_ca YAML LOG: `hsmesh ca serve` in the background (tracked), its
# stderr appended to LOG; SRV its pid, PORT its port (empty if it did not start)
serve_ca() {
	rm -f "$T/.ca.port"
	"$HSMESH" ca serve -c "$1" --port-file "$T/.ca.port" 2>>"$2" &
	SRV=$!
	track "$SRV"
	for _ in $(seq 200); do [ -s "$T/.ca.port" ] && break; sleep 0.05; done
	PORT=$(cat "$T/.ca.port" 2>/dev/null)
}

# gone PID SECS: true when PID no longer runs (or is a zombie) within SECS
gone() {
	_i=0
	while alive "$1" && [ "$_i" -lt $(($2 * 20)) ]; do sleep 0.05; _i=$((_i + 1)); done
	! alive "$1"
}

# svid_checks NAME CERT ID TTLSECS CSR ROOT T0: the X.509-SVID contract for
# CERT issued for ID from CSR by ROOT with a ttl of TTLSECS at time T0 (epoch
# taken just before issuing). Appends the serial to $SVID_SERIALS.
SVID_SERIALS=""
svid_checks() {
	n=$1 c=$2 id=$3 ttl=$4 csr=$5 root=$6 t0=$7
	SVID_SERIALS="$SVID_SERIALS $(openssl x509 -in "$c" -noout -serial 2>/dev/null | cut -d= -f2)"
	check "$n: stdout is one PEM certificate" sh -c 'head -n 1 "$1" | grep -q "^-----BEGIN CERTIFICATE-----$" && openssl x509 -in "$1" -noout' x "$c"
	check "$n: openssl verify -x509_strict -purpose sslclient" \
	    quiet openssl verify -x509_strict -CAfile "$root" -purpose sslclient "$c"
	check "$n: openssl verify -x509_strict -purpose sslserver" \
	    quiet openssl verify -x509_strict -CAfile "$root" -purpose sslserver "$c"
	check "$n: exactly one URI SAN, equal to $id (got: $(uri_sans "$c" | tr '\n' ' '))" test "$(uri_sans "$c")" = "$id"
	check "$n: no SAN other than the SPIFFE ID ($(all_sans "$c" | tr '\n' ' '))" test "$(all_sans "$c" | wc -l)" -eq 1
	check "$n: basicConstraints CA:FALSE" sh -c 'openssl x509 -in "$1" -noout -ext basicConstraints | grep -q "CA:FALSE"' x "$c"
	check "$n: keyUsage digitalSignature, no keyCertSign" \
	    sh -c 'k=$(openssl x509 -in "$1" -noout -ext keyUsage); echo "$k" | grep -q "Digital Signature" && ! echo "$k" | grep -q "Certificate Sign"' x "$c"
	check "$n: extendedKeyUsage serverAuth+clientAuth" \
	    sh -c 'k=$(openssl x509 -in "$1" -noout -ext extendedKeyUsage); echo "$k" | grep -q "TLS Web Server" && echo "$k" | grep -q "TLS Web Client"' x "$c"
	check "$n: certified public key is the CSR's" test "$(spki_hex "$c")" = "$(spki_hex "$csr")"
	check "$n: issuer is the root's subject" \
	    test "$(openssl x509 -in "$c" -noout -issuer 2>/dev/null | cut -d= -f2-)" = "$(openssl x509 -in "$root" -noout -subject | cut -d= -f2-)"
	now=$(date +%s); end=$(enddate_epoch "$c" 2>/dev/null || echo 0); start=$(startdate_epoch "$c" 2>/dev/null || echo 0)
	check "$n: notAfter - now = $((end - now)) s <= ttl $ttl s" test $((end - now)) -le "$ttl"
	check "$n: lifetime not cut short (notAfter - t0 = $((end - t0)) s >= ttl - 60 s)" test $((end - t0)) -ge $((ttl - 60))
	check "$n: notBefore <= now" test "$start" -le $((now + 1))
	check "$n: openssl x509 -checkend $((ttl + 1)) says it expires within the ttl" \
	    sh -c 'openssl x509 -in "$1" -noout >/dev/null 2>&1 && ! openssl x509 -in "$1" -noout -checkend "$2" >/dev/null' x "$c" $((ttl + 1))
}

# quiet COMMAND...: run it with stdout discarded (for checks on chatty tools)
quiet() { "$@" >/dev/null; }

# mesh_up ID...: a CA (`ca serve`: $T/ca.yaml, root $T/ca/root.pem) and an
# agent (AGENT its pid, socket $T/agent.sock, /metrics on port
# AGENT_METRICS) serving each ID to this uid (or to uid $MESH_UID when
# set); returns 1 unless every ID enrolled within 30 s.
mesh_up() {
	new_token ca
	printf '1234\n' >"$T/ca.pin"
	write_ca_yaml "$T/ca.yaml" ca "$T/ca.pin"
	"$HSMESH" ca init -c "$T/ca.yaml" >/dev/null 2>"$T/ca-init.err"
	"$HSMESH" ca serve -c "$T/ca.yaml" --port-file "$T/ca.port" 2>"$T/ca.log" &
	track $!
	for _ in $(seq 200); do [ -s "$T/ca.port" ] && break; sleep 0.05; done
	new_token node
	printf '1234\n' >"$T/node.pin"
	cat >"$T/agent.yaml" <<EOA
token: { module: $SOFTHSM_MODULE, uri: "pkcs11:token=node", pin_file: $T/node.pin }
ca: { url: "http://127.0.0.1:$(cat "$T/ca.port")/.well-known/cmp", root: $T/ca/root.pem }
state_dir: $T/state
socket: $T/agent.sock
metrics: { listen: "127.0.0.1:0" }
workloads:
EOA
	for _id; do
		_j=$T/$(echo "$_id" | tr -c 'A-Za-z0-9\n' _).join
		"$HSMESH" ca token -c "$T/ca.yaml" --id "$_id" >"$_j"
		echo "  - { id: \"$_id\", uid: ${MESH_UID:-$(id -u)}, join_token_file: $_j }" >>"$T/agent.yaml"
	done
	"$HSMESH" agent -c "$T/agent.yaml" 2>"$T/agent.log" &
	AGENT=$!; track $AGENT
	for _id; do wait_log "$_id: enrolled" 30 || return 1; done
	AGENT_METRICS=$(sed -n 's|.*metrics on http://127.0.0.1:\([0-9]*\)/metrics.*|\1|p' "$T/agent.log" | head -n 1)
}

# file_svid NAME ID: a certificate for ID from the CA of mesh_up with a key
# in a file ($T/NAME.pem, $T/NAME.key): a client outside the mesh
file_svid() {
	openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$T/$1.key" \
	    -subj "/CN=$1" -out "$T/$1.csr" 2>/dev/null
	"$HSMESH" ca issue -c "$T/ca.yaml" --csr "$T/$1.csr" --id "$2" --ttl 1h >"$T/$1.pem" 2>>"$T/issue.err"
}
