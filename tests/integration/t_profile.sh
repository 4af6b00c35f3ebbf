# ASAN=yes
# t_profile.sh HSMESH - the 3GPP NF certificate profile (TS 33.310 6.1.3c)
# and the sidecars' TLS for it (TS 33.210 6.2, TS 33.501 13.1.0).
#
# A P-384 CA with `profile: 3gpp-nf`: a file-key certificate of the profile
# read field by field with `openssl x509 -text` and `hsmesh inspect`; the
# refusals (no NF fields, an FQDN outside the home network, a TTL over 3
# years); then an agent (P-384 keys) with two NFs enrolled through
# self-managed entries of the profile, a sidecar pair with `tls.profile:
# 3gpp-nf`: TLS 1.2 for a peer offering only 1.2, TLS 1.3 otherwise,
# secp384r1 and ecdsa_secp384r1_sha384, and SNI from the outbound side
# (seen by openssl s_server -trace).
. "$(dirname "$0")/lib.sh"

ME=$(id -u)
DOM=5gc.mnc001.mcc001.3gppnetwork.org
IDAMF=spiffe://example.org/amf
IDSMF=spiffe://example.org/smf
IDNRF=spiffe://example.org/nrf
diag() { for f in "$@"; do echo "# --- $f"; tail -n 15 "$f" 2>/dev/null | sed 's/^/#   /'; done; }

# ---- the CA -----------------------------------------------------------------------------
ca_setup ca ec-p384
cat >>"$T/ca.yaml" <<EOF
profile: 3gpp-nf
plmn:
  mcc: "001"
  mnc: "01"
  country: FI
EOF
"$HSMESH" ca init -c "$T/ca.yaml" >/dev/null 2>"$T/init.err" || diag "$T/init.err"
ROOT=$T/ca/root.pem

# ---- a certificate of the profile, field by field ------------------------------------------
new_csr "$T/nrf.csr" ec-p384 nrf
"$HSMESH" ca issue -c "$T/ca.yaml" --csr "$T/nrf.csr" --id "$IDNRF" --nf-type NRF \
    --nf-type NSSF --fqdn "nrf1.$DOM" >"$T/nrf.pem" 2>"$T/issue.err" || diag "$T/issue.err"
openssl x509 -in "$T/nrf.pem" -noout -text >"$T/nrf.txt" 2>&1
"$HSMESH" inspect "$T/nrf.pem" >"$T/nrf.insp" 2>&1
# has FILE PATTERN: grep -E the file
has() { grep -qE -- "$2" "$1"; }
# after FILE HEADER PATTERN: the line after HEADER matches PATTERN
after() { grep -A1 -F -- "$2" "$1" | tail -n 1 | grep -qE -- "$3"; }
X=$T/nrf.txt
check "x509: subject C=FI, O=the home network domain" has "$X" "Subject: C = FI, O = $DOM\$"
check "x509: keyUsage critical, digitalSignature alone" sh -c \
    'grep -q "X509v3 Key Usage: critical" "$1" && grep -A1 "X509v3 Key Usage" "$1" | tail -1 | grep -qx " *Digital Signature"' x "$X"
check "x509: extendedKeyUsage serverAuth and clientAuth" after "$X" "Extended Key Usage" \
    "TLS Web Server Authentication, TLS Web Client Authentication"
check "x509: SKI present" after "$X" "Subject Key Identifier" "^ *[0-9A-F]{2}(:[0-9A-F]{2}){19}\$"
check "x509: AKI is the root's SKI" sh -c 'a=$(grep -A1 "Authority Key Identifier" "$1" | tail -1 | tr -d " ");
    r=$(openssl x509 -in "$2" -noout -ext subjectKeyIdentifier | tail -1 | tr -d " "); [ -n "$r" ] && [ "$a" = "$r" ]' x "$X" "$ROOT"
check "x509: subjectAltName critical: the FQDN and the SPIFFE ID" sh -c \
    'grep -q "X509v3 Subject Alternative Name: critical" "$1" && grep -A1 "Subject Alternative Name" "$1" | tail -1 | grep -qx " *DNS:nrf1.$2, URI:$3"' x "$X" "$DOM" "$IDNRF"
# 1.3.6.1.5.5.7.1.34 is not known to OpenSSL 3.0: the value's DER, checked exactly
check "x509: nfTypes (1.3.6.1.5.5.7.1.34) is SEQUENCE { IA5String NRF, IA5String NSSF }" sh -c '
	openssl x509 -in "$1" -outform DER -out "$2.der" &&
	openssl asn1parse -inform DER -in "$2.der" >"$2.asn1" &&
	off=$(grep -A2 ":1.3.6.1.5.5.7.1.34" "$2.asn1" | grep "OCTET STRING" | sed "s/^ *\([0-9]*\):.*/\1/") &&
	[ -n "$off" ] && openssl asn1parse -inform DER -in "$2.der" -strparse "$off" >"$2.nft" &&
	grep -q "SEQUENCE" "$2.nft" && grep -q "IA5STRING *:NRF$" "$2.nft" && grep -q "IA5STRING *:NSSF$" "$2.nft" &&
	[ "$(grep -c IA5STRING "$2.nft")" -eq 2 ]' x "$T/nrf.pem" "$T/nrf"
check "x509: verifies as client and server against the root" sh -c \
    'openssl verify -x509_strict -CAfile "$2" -purpose sslclient "$1" >/dev/null &&
     openssl verify -x509_strict -CAfile "$2" -purpose sslserver "$1" >/dev/null' x "$T/nrf.pem" "$ROOT"
check "x509: P-384 key, signed ecdsa-with-SHA384" sh -c \
    'grep -q "ASN1 OID: secp384r1" "$1" && grep -q "Signature Algorithm: ecdsa-with-SHA384" "$1"' x "$X"
I=$T/nrf.insp
check "inspect: subject" has "$I" "^subject: +C=FI, O=$DOM\$"
check "inspect: dns name and spiffe id" sh -c 'grep -qx "dns name: *nrf1.$2" "$1" && grep -qx "spiffe id: *$3" "$1"' x "$I" "$DOM" "$IDNRF"
check "inspect: alt names critical" has "$I" "^alt names: +critical\$"
check "inspect: key usage digitalSignature (critical)" has "$I" "^key usage: +digitalSignature \\(critical\\)\$"
check "inspect: ext key usage" has "$I" "^ext key usage: +serverAuth, clientAuth\$"
check "inspect: SKI and AKI" sh -c 'grep -qE "^subj key id: +[0-9A-F:]{59}\$" "$1" && grep -qE "^auth key id: +[0-9A-F:]{59}\$" "$1"' x "$I"
check "inspect: nf types NRF, NSSF" has "$I" "^nf types: +NRF, NSSF\$"
check "inspect: lifetime" has "$I" "^lifetime: +[0-9]+ s"

# ---- refusals ----------------------------------------------------------------------------
refuse "an ID without entries and no NF fields" "needs NF types and an FQDN" \
    "$HSMESH" ca issue -c "$T/ca.yaml" --csr "$T/nrf.csr" --id spiffe://example.org/x
refuse "an FQDN outside the home network" "not inside the home network domain $DOM" \
    "$HSMESH" ca issue -c "$T/ca.yaml" --csr "$T/nrf.csr" --id "$IDNRF" --nf-type NRF --fqdn nrf1.example.com
refuse "a malformed NF type" "NF type 'nrf'" \
    "$HSMESH" ca issue -c "$T/ca.yaml" --csr "$T/nrf.csr" --id "$IDNRF" --nf-type nrf --fqdn "nrf1.$DOM"
cp "$T/ca.yaml" "$T/long.yaml"; yaml_set "$T/long.yaml" max_ttl 2000d
refuse "a TTL over 3 years is refused, not cut short" "1100 days\\) exceeds the 1095 days" \
    "$HSMESH" ca issue -c "$T/long.yaml" --csr "$T/nrf.csr" --id "$IDNRF" --nf-type NRF --fqdn "nrf1.$DOM" --ttl 1100d
yaml_set "$T/long.yaml" svid_ttl 1100d
refuse "svid_ttl over 3 years with profile 3gpp-nf: a configuration error" "'svid_ttl' 1100d: .*3 years" \
    "$HSMESH" ca issue -c "$T/long.yaml" --csr "$T/nrf.csr" --id "$IDNRF" --nf-type NRF --fqdn "nrf1.$DOM"
sed '/^plmn:/,$d' "$T/ca.yaml" >"$T/noplmn.yaml"
refuse "profile 3gpp-nf without plmn" "needs the home network" \
    "$HSMESH" ca issue -c "$T/noplmn.yaml" --csr "$T/nrf.csr" --id "$IDNRF"
refuse "an entry of the profile without an FQDN" "needs the NF's FQDN|missing FQDN" \
    "$HSMESH" ca entry add -c "$T/ca.yaml" --id "$IDAMF" --self-managed --nf-type AMF

# ---- two NFs enrolled by an agent (P-384 keys), through entries of the profile -------------
for n in amf smf; do
	N=$(echo "$n" | tr a-z A-Z)
	"$HSMESH" ca entry add -c "$T/ca.yaml" --id "spiffe://example.org/$n" --self-managed \
	    --profile 3gpp-nf --nf-type "$N" --fqdn "${n}1.$DOM" >/dev/null 2>>"$T/entry.err"
	"$HSMESH" ca token -c "$T/ca.yaml" --id "spiffe://example.org/$n" >"$T/$n.join" 2>>"$T/entry.err"
done
check "ca entry show: the entry's profile, NF types and FQDN" sh -c \
    '"$1" ca entry show -c "$2" --id "$3" | tr -s " " >"$4/show" && grep -qx "profile: 3gpp-nf" "$4/show" &&
     grep -qx "nf types: SMF" "$4/show" && grep -qx "fqdn: smf1.$5" "$4/show"' x "$HSMESH" "$T/ca.yaml" "$IDSMF" "$T" "$DOM" ||
    diag "$T/entry.err"
serve_ca "$T/ca.yaml" "$T/ca.log"
new_token node
printf '1234\n' >"$T/node.pin"
cat >"$T/agent.yaml" <<EOF
token:
  module: $SOFTHSM_MODULE
  uri: "pkcs11:token=node"
  pin_file: $T/node.pin
ca:
  url: http://127.0.0.1:$PORT/.well-known/cmp
  root: $ROOT
state_dir: $T/state
socket: $T/agent.sock
key:
  type: ec-p384
retry:
  min: 1s
  max: 2s
workloads:
  - id: $IDAMF
    uid: $ME
    join_token_file: $T/amf.join
  - id: $IDSMF
    uid: $ME
    join_token_file: $T/smf.join
EOF
"$HSMESH" agent -c "$T/agent.yaml" 2>>"$T/agent.log" &
track $!
enrolled() { wait_in "$T/agent.log" "$IDAMF: enrolled" 30 && wait_in "$T/agent.log" "$IDSMF: enrolled" 30; }
check "agent: amf and smf enrolled" enrolled || diag "$T/agent.log" "$T/ca.log"
AMFCERT=$(ls "$T"/state/*amf*/cert.pem 2>/dev/null | head -n 1)
check "the agent's amf certificate is of the profile (entry's NF type and FQDN)" sh -c \
    '"$1" inspect "$2" >"$3/amf.insp" && grep -qE "^nf types: +AMF\$" "$3/amf.insp" &&
     grep -qE "^dns name: +amf1.$4\$" "$3/amf.insp" && grep -qE "^subject: +C=FI, O=$4\$" "$3/amf.insp" &&
     grep -qE "^key: +EC P-384" "$3/amf.insp"' x "$HSMESH" "$AMFCERT" "$T" "$DOM"

# ---- the sidecar pair --------------------------------------------------------------------
"$HSMESH" app serve --listen 127.0.0.1:0 --name smf --port-file "$T/app.port" 2>"$T/app.log" &
track $!
wait_in "$T/app.port" . 5
APPPORT=$(cat "$T/app.port")
port() { awk -v n="$1" '$1 == n { print $2 }' "$2" 2>/dev/null; }
cat >"$T/smf.yaml" <<EOF
agent:
  socket: $T/agent.sock
  id: $IDSMF
workers: 1
tls:
  profile: 3gpp-nf
inbound:
  - name: sbi
    listen: 127.0.0.1:0
    forward_to: 127.0.0.1:$APPPORT
    allow: [$IDAMF, $IDNRF]
EOF
"$HSMESH" proxy -c "$T/smf.yaml" --ports-file "$T/smf.ports" 2>"$T/smf.log" &
track $!
check "proxy smf: ready" wait_in "$T/smf.log" "ready: serving $IDSMF" 15 || diag "$T/smf.log"
SMFPORT=$(port sbi "$T/smf.ports")

# s_client NAME ARGS...: a handshake to smf's inbound side with the NRF certificate (P-384)
s_client() {
	_sc=$1; shift
	printf 'GET / HTTP/1.0\r\n\r\n' | timeout 10 openssl s_client -connect "127.0.0.1:$SMFPORT" \
	    -cert "$T/nrf.pem" -key "$T/nrf.csr.key" -CAfile "$ROOT" -verify_return_error \
	    -ign_eof "$@" >"$T/$_sc.out" 2>&1
}
s_client tls12 -tls1_2 -groups P-384 -sigalgs ecdsa_secp384r1_sha384
check "a peer offering only TLS 1.2 gets TLS 1.2 (and the app's answer)" sh -c \
    'grep -q "^ *Protocol *: TLSv1.2" "$1" && grep -q "hello from smf" "$1"' x "$T/tls12.out" || diag "$T/tls12.out" "$T/smf.log"
check "TLS 1.2: ECDHE on secp384r1, ECDHE-ECDSA with a P-384 certificate, ecdsa SHA-384 signature" sh -c \
    'grep -q "Server Temp Key: ECDH, secp384r1" "$1" && grep -q "Peer signature type: ECDSA" "$1" &&
     grep -q "Peer signing digest: SHA384" "$1" && grep -qE "Cipher *: ECDHE-ECDSA-" "$1"' x "$T/tls12.out"
s_client tls13 -groups P-384 -sigalgs ecdsa_secp384r1_sha384
check "a peer offering 1.2 and 1.3 gets TLS 1.3" sh -c \
    'grep -q "^ *Protocol *: TLSv1.3" "$1" && grep -q "hello from smf" "$1"' x "$T/tls13.out" || diag "$T/tls13.out"
check "TLS 1.3: secp384r1 and ecdsa_secp384r1_sha384" sh -c \
    'grep -q "Server Temp Key: ECDH, secp384r1" "$1" && grep -q "Peer signing digest: SHA384" "$1" && grep -q "Peer signature type: ECDSA" "$1"' x "$T/tls13.out"
s_client tls11 -tls1_1 -cipher DEFAULT@SECLEVEL=0
check "a peer offering only TLS 1.1 is refused: protocol version alert" sh -c \
    '! grep -q "hello from smf" "$1" && grep -q "alert protocol version" "$1"' x "$T/tls11.out"

# openssl s_server as a second peer of amf's outbound side: it logs the ClientHello
# (-trace) and answers with the session (-www); smf's certificate from the CA.
new_csr "$T/srv.csr" ec-p384 smf
"$HSMESH" ca issue -c "$T/ca.yaml" --csr "$T/srv.csr" --id "$IDSMF" >"$T/srv.pem" 2>>"$T/issue.err"
# s_server NAME ARGS...: started in the background; SPORT its port
s_server() {
	_ss=$1; shift
	openssl s_server -accept 127.0.0.1:0 -cert "$T/srv.pem" -key "$T/srv.csr.key" -CAfile "$ROOT" \
	    -Verify 2 -verify_return_error -www -trace "$@" >"$T/$_ss.srv" 2>&1 &
	track $!
	wait_in "$T/$_ss.srv" "^ACCEPT" 5
	SPORT=$(sed -n 's/^ACCEPT .*:\([0-9]*\)$/\1/p' "$T/$_ss.srv")
}
s_server srv13
s_server srv12 -tls1_2
SPORT13=$(sed -n 's/^ACCEPT .*:\([0-9]*\)$/\1/p' "$T/srv13.srv")
cat >"$T/amf.yaml" <<EOF
agent:
  socket: $T/agent.sock
  id: $IDAMF
workers: 1
tls:
  profile: 3gpp-nf
outbound:
  - name: to-smf
    listen: 127.0.0.1:0
    connect: 127.0.0.1:$SMFPORT
    expect_id: $IDSMF
    server_name: smf1.$DOM
  - name: to-srv13
    listen: 127.0.0.1:0
    connect: 127.0.0.1:$SPORT13
    expect_id: $IDSMF
    server_name: smf1.$DOM
  - name: to-srv12
    listen: 127.0.0.1:0
    connect: 127.0.0.1:$SPORT
    expect_id: $IDSMF
    server_name: smf1.$DOM
EOF
"$HSMESH" proxy -c "$T/amf.yaml" --ports-file "$T/amf.ports" 2>"$T/amf.log" &
track $!
check "proxy amf: ready" wait_in "$T/amf.log" "ready: serving $IDAMF" 15 || diag "$T/amf.log"
check "amf -> smf through the sidecar pair reaches smf's app" sh -c \
    'test "$(curl -s --max-time 10 "http://127.0.0.1:$1/")" = "hello from smf"' x "$(port to-smf "$T/amf.ports")"
get() { curl -s --max-time 10 "http://127.0.0.1:$(port "$1" "$T/amf.ports")/" >"$T/$1.page" 2>&1; }
get to-srv13; get to-srv12
# sni FILE: the host name of the server_name extension in an s_server -trace log
sni() { awk '/extension_type=server_name/ { f = 1; next } /extension_type=/ { f = 0 } f' "$1" | sed 's/^.*   //' | tr -d '\n'; }
SNI=$(sni "$T/srv13.srv")
check "the outbound side sends SNI smf1.$DOM (s_server's trace: '$SNI')" \
    sh -c 'case $1 in *"smf1.$2") ;; *) exit 1 ;; esac' x "$SNI" "$DOM"
check "outbound to a peer offering 1.2 and 1.3: TLS 1.3" grep -q "^ *Protocol *: TLSv1.3" "$T/to-srv13.page"
check "outbound to a peer offering only 1.2: TLS 1.2, P-384 certificate verified" sh -c \
    'grep -q "^ *Protocol *: TLSv1.2" "$1"' x "$T/to-srv12.page" || diag "$T/to-srv12.page" "$T/srv12.srv" "$T/amf.log"

# ---- bad proxy configuration -------------------------------------------------------------
sed '/server_name/d' "$T/amf.yaml" >"$T/nosni.yaml"
refuse "tls.profile 3gpp-nf: an outbound listener without server_name" "'to-smf' needs server_name" \
    "$HSMESH" proxy -c "$T/nosni.yaml"
done_testing
