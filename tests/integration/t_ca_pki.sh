# t_ca_pki.sh HSMESH - a CA under an operator's root (issue 16, item 2).
#
# A test PKI made with openssl plays the operator: a root and an
# intermediate. `ca init --csr` makes a CSR for the token's CA key, the
# operator's intermediate signs it with a URI name constraint, `ca install
# --chain` puts it in place after checking it; bad chains are refused, each
# with one line. Then a mesh on loopback whose agent trusts only the
# operator's root: SVIDs verify with `openssl verify` against that root,
# a sidecar pair carries a call, and a sidecar refuses a peer certificate
# outside a CA's name constraint (OpenSSL enforces URI constraints).
. "$(dirname "$0")/lib.sh"

ME=$(id -u)
IDA=spiffe://example.org/a
IDB=spiffe://example.org/b
diag() { for f in "$@"; do echo "# --- $f"; tail -n 15 "$f" 2>/dev/null | sed 's/^/#   /'; done; }

new_token ca
printf '1234\n' >"$T/ca.pin"
write_ca_yaml "$T/ca.yaml" ca "$T/ca.pin" "audit_log: $T/ca/audit.log"

# ---- the CSR ----------------------------------------------------------------------------
check "ca init --csr writes a CSR" quiet "$HSMESH" ca init -c "$T/ca.yaml" --csr "$T/ca.csr"
check "the CSR's signature verifies (made through the keyholder)" quiet openssl req -in "$T/ca.csr" -noout -verify
check "no self-signed root.pem was written" test ! -e "$T/ca/root.pem"
check "the CSR asks for CA:TRUE and the name constraint" sh -c '
	t=$(openssl req -in "$1" -noout -text); echo "$t" | grep -q "CA:TRUE" &&
	echo "$t" | grep -q "URI:example.org" && echo "$t" | grep -q "URI:spiffe://example.org"' x "$T/ca.csr"
KEYID=$(openssl req -in "$T/ca.csr" -noout -pubkey | openssl pkey -pubin -outform DER | sha256sum | cut -c1-64)
check "ca init --csr again: the same key" sh -c '
	"$1" ca init -c "$2" --csr "$3/again.csr" >/dev/null &&
	test "$(openssl req -in "$3/again.csr" -noout -pubkey)" = "$(openssl req -in "$3/ca.csr" -noout -pubkey)"' x "$HSMESH" "$T/ca.yaml" "$T"

# ---- the operator's PKI -----------------------------------------------------------------
P=$T/op; mkdir -p "$P"
ec() { openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1" 2>/dev/null; }
# ext FILE LINES...: an extension section "v3" for openssl x509 -req -extfile
ext() { f=$1; shift; { echo "[v3]"; for l in "$@"; do echo "$l"; done; echo "subjectKeyIdentifier=hash"; echo "authorityKeyIdentifier=keyid:always"; } >"$f"; }
CAEXT="basicConstraints=critical,CA:TRUE"
KU="keyUsage=critical,keyCertSign,cRLSign,digitalSignature"
# sign CSR CA CAKEY OUT DAYS EXTLINES...: the operator signs
sign() {
	_csr=$1 _ca=$2 _cakey=$3 _out=$4 _days=$5; shift 5
	ext "$P/ext.cnf" "$@"
	openssl x509 -req -in "$_csr" -CA "$_ca" -CAkey "$_cakey" -set_serial "0x$(openssl rand -hex 8)" \
	    -days "$_days" -extfile "$P/ext.cnf" -extensions v3 -out "$_out" 2>>"$P/openssl.err"
}
ec "$P/root.key"
openssl req -x509 -new -key "$P/root.key" -subj "/O=Operator/CN=Operator Root" -days 30 \
    -addext "$CAEXT" -addext "$KU" -out "$P/root.pem" 2>>"$P/openssl.err"
ec "$P/int.key"
openssl req -new -key "$P/int.key" -subj "/O=Operator/CN=Operator Issuing CA" -out "$P/int.csr" 2>/dev/null
sign "$P/int.csr" "$P/root.pem" "$P/root.key" "$P/int.pem" 30 "$CAEXT,pathlen:1" "$KU"
NC="nameConstraints=critical,permitted;URI:example.org"
SAN="subjectAltName=URI:spiffe://example.org"
sign "$T/ca.csr" "$P/int.pem" "$P/int.key" "$P/ca.pem" 20 "$CAEXT,pathlen:0" "$KU" "$SAN" "$NC"
cat "$P/ca.pem" "$P/int.pem" "$P/root.pem" >"$P/good.pem"

# ---- bad chains, refused before anything is written ----------------------------------------
install() { "$HSMESH" ca install -c "$T/ca.yaml" --chain "$1"; }
refuse "the CA certificate alone" "only the CA certificate" install "$P/ca.pem"
cat "$P/ca.pem" "$P/int.pem" >"$P/noroot.pem"
refuse "a chain without its root" "does not end in a self-signed root" install "$P/noroot.pem"
ec "$P/other.key"
openssl req -new -key "$P/other.key" -subj "/CN=not the token" -out "$P/other.csr" 2>/dev/null
sign "$P/other.csr" "$P/int.pem" "$P/int.key" "$P/other.pem" 20 "$CAEXT,pathlen:0" "$KU" "$NC"
cat "$P/other.pem" "$P/int.pem" "$P/root.pem" >"$P/otherkey.pem"
refuse "a certificate for another key" "not the token's CA key" install "$P/otherkey.pem"
sign "$T/ca.csr" "$P/int.pem" "$P/int.key" "$P/leafish.pem" 20 "basicConstraints=critical,CA:FALSE" "keyUsage=critical,digitalSignature"
cat "$P/leafish.pem" "$P/int.pem" "$P/root.pem" >"$P/notca.pem"
refuse "a certificate that is not a CA (CA:FALSE)" "not a CA certificate" install "$P/notca.pem"
sign "$T/ca.csr" "$P/int.pem" "$P/int.key" "$P/expired.pem" -1 "$CAEXT" "$KU"
cat "$P/expired.pem" "$P/int.pem" "$P/root.pem" >"$P/expired-chain.pem"
refuse "an expired CA certificate" "certificate 1 .* expired at" install "$P/expired-chain.pem"
openssl req -new -key "$P/int.key" -subj "/O=Operator/CN=Operator Issuing CA" -out "$P/int0.csr" 2>/dev/null
sign "$P/int0.csr" "$P/root.pem" "$P/root.key" "$P/int0.pem" 30 "$CAEXT,pathlen:0" "$KU"
cat "$P/ca.pem" "$P/int0.pem" "$P/root.pem" >"$P/pathlen.pem"
refuse "an intermediate whose path length leaves no room" "path length of certificate 2" install "$P/pathlen.pem"
ec "$P/root2.key"
openssl req -x509 -new -key "$P/root2.key" -subj "/O=Operator/CN=Operator Root" -days 30 \
    -addext "$CAEXT" -addext "$KU" -out "$P/root2.pem" 2>>"$P/openssl.err"
cat "$P/ca.pem" "$P/int.pem" "$P/root2.pem" >"$P/wrongroot.pem"
refuse "a chain ending in another root of the same name" "does not verify to its root" install "$P/wrongroot.pem"
sign "$T/ca.csr" "$P/int.pem" "$P/int.key" "$P/othernc.pem" 20 "$CAEXT,pathlen:0" "$KU" \
    "nameConstraints=critical,permitted;URI:other.org"
cat "$P/othernc.pem" "$P/int.pem" "$P/root.pem" >"$P/othernc-chain.pem"
refuse "a name constraint that excludes the trust domain" "name constraints of certificate 1 .*exclude spiffe://example.org" install "$P/othernc-chain.pem"
sign "$T/ca.csr" "$P/int.pem" "$P/int.key" "$P/othersan.pem" 20 "$CAEXT,pathlen:0" "$KU" "subjectAltName=URI:spiffe://other.org"
cat "$P/othersan.pem" "$P/int.pem" "$P/root.pem" >"$P/othersan-chain.pem"
refuse "a CA certificate naming another trust domain" "names spiffe://other.org, not spiffe://example.org" install "$P/othersan-chain.pem"
check "nothing installed by the refusals" test ! -e "$T/ca/ca.pem" -a ! -e "$T/ca/chain.pem"

# ---- the good chain -----------------------------------------------------------------------
check "ca install --chain: accepted" quiet install "$P/good.pem" || diag "$P/openssl.err"
check "installed: ca.pem is the operator-signed certificate" cmp -s "$T/ca/ca.pem" "$P/ca.pem"
check "installed: chain.pem holds the intermediate and the root" test "$(grep -c 'BEGIN CERT' "$T/ca/chain.pem")" -eq 2
check "installing the same chain again is fine" quiet install "$P/good.pem"
check "audited: ca_installed with the key id" grep -q "\"ca_installed\".*$KEYID" "$T/ca/audit.log"

new_csr "$T/w.csr" ec-p256 w
"$HSMESH" ca issue -c "$T/ca.yaml" --csr "$T/w.csr" --id "$IDA" >"$T/w.pem" 2>"$T/issue.err"
cat "$T/ca/ca.pem" "$P/int.pem" >"$T/untrusted.pem"
check "an SVID verifies with openssl verify against the operator's root only" \
    quiet openssl verify -x509_strict -CAfile "$P/root.pem" -untrusted "$T/untrusted.pem" "$T/w.pem" || diag "$T/issue.err"
check "... and not against another root of the same name" \
    sh -c '! openssl verify -CAfile "$1" -untrusted "$2" "$3" >/dev/null 2>&1' x "$P/root2.pem" "$T/untrusted.pem" "$T/w.pem"
check "the SVID's issuer is the installed CA certificate" \
    test "$(openssl x509 -in "$T/w.pem" -noout -issuer)" = "issuer=$(openssl x509 -in "$P/ca.pem" -noout -subject | cut -d= -f2-)"

# ---- a mesh under the operator's root -----------------------------------------------------
"$HSMESH" ca serve -c "$T/ca.yaml" --port-file "$T/ca.port" 2>"$T/ca.log" &
CA=$!; track $CA
for _ in $(seq 200); do [ -s "$T/ca.port" ] && break; sleep 0.05; done
CAPORT=$(cat "$T/ca.port" 2>/dev/null)
new_token node
printf '1234\n' >"$T/node.pin"
for w in a b; do "$HSMESH" ca token -c "$T/ca.yaml" --id "spiffe://example.org/$w" >"$T/$w.join"; done
cat >"$T/agent.yaml" <<EOF
token:
  module: $SOFTHSM_MODULE
  uri: "pkcs11:token=node"
  pin_file: $T/node.pin
ca:
  url: http://127.0.0.1:$CAPORT/.well-known/cmp
  root: $P/root.pem
state_dir: $T/state
socket: $T/agent.sock
retry:
  min: 1s
  max: 2s
workloads:
  - id: $IDA
    uid: $ME
    join_token_file: $T/a.join
  - id: $IDB
    uid: $ME
    join_token_file: $T/b.join
EOF
"$HSMESH" agent -c "$T/agent.yaml" 2>>"$T/agent.log" &
AGENT=$!; track $AGENT
both() { wait_log "$IDA: enrolled" 30 && wait_log "$IDB: enrolled" 30; }
check "the agent, trusting only the operator's root, enrolls a and b over CMP" both || diag "$T/agent.log" "$T/ca.log"
check "a's chain from the agent: leaf, the CA's certificate, the intermediate" \
    test "$(grep -c 'BEGIN CERT' "$T/state/example.org+a/cert.pem" 2>/dev/null)" -eq 3
check "a's bundle is the operator's root" \
    sh -c 'openssl x509 -in "$1" -noout -fingerprint | cmp -s - "$2"' x "$T/state/example.org+a/bundle.pem" \
    "$(openssl x509 -in "$P/root.pem" -noout -fingerprint >"$T/rootfp"; echo "$T/rootfp")"
check "a's SVID from CMP verifies against the operator's root" \
    quiet openssl verify -x509_strict -CAfile "$P/root.pem" -untrusted "$T/state/example.org+a/cert.pem" "$T/state/example.org+a/cert.pem"

"$HSMESH" app serve --listen 127.0.0.1:0 --name b --port-file "$T/app.port" 2>"$T/app.log" &
APP=$!; track $APP
for _ in $(seq 100); do [ -s "$T/app.port" ] && break; sleep 0.05; done
port() { awk -v n="$1" '$1 == n { print $2 }' "$2" 2>/dev/null; }
cat >"$T/b.yaml" <<EOF
agent:
  socket: $T/agent.sock
  id: $IDB
workers: 1
inbound:
  - name: web
    listen: 127.0.0.1:0
    forward_to: 127.0.0.1:$(cat "$T/app.port")
    allow:
      - $IDA
      - spiffe://evil.org/a
EOF
"$HSMESH" proxy -c "$T/b.yaml" --ports-file "$T/b.ports" 2>"$T/b.log" &
PB=$!; track $PB
cat >"$T/a.yaml" <<EOF
agent:
  socket: $T/agent.sock
  id: $IDA
workers: 1
inbound: []
outbound:
  - name: to-b
    listen: 127.0.0.1:0
    connect: 127.0.0.1:PORTB
    expect_id: $IDB
EOF
check "proxy b: ready" wait_log "ready: serving $IDB" 15 "$T/b.log"
BPORT=$(port web "$T/b.ports")
sed -i "s/PORTB/$BPORT/" "$T/a.yaml"
"$HSMESH" proxy -c "$T/a.yaml" --ports-file "$T/a.ports" 2>"$T/a.log" &
PA=$!; track $PA
check "proxy a: ready" wait_log "ready: serving $IDA" 15 "$T/a.log"
APORT=$(port to-b "$T/a.ports")
check "a -> b through the sidecars, under the operator's root" \
    sh -c 'test "$(curl -s --max-time 10 "http://127.0.0.1:$1/")" = "hello from b"' x "$APORT" || diag "$T/a.log" "$T/b.log"
# The CRL is signed by the CA's key under ca.pem, which is not the agent's
# trust anchor (the operator's root is): agent and sidecars take it from
# the CA certificate of the verified chain.
check "the agent takes the CRL signed by the operator-issued CA" \
    wait_log "CRL [0-9]+ from http" 20 || diag "$T/agent.log"
check "... and so does sidecar b" wait_log "CRL [0-9]+: [0-9]+ revoked" 20 "$T/b.log" || diag "$T/b.log"
check "... and no CRL was refused by a sidecar" sh -c '! grep -q "CRL from the agent refused" "$1" "$2"' x "$T/a.log" "$T/b.log"

# ---- the name constraint, enforced by the sidecar ---------------------------------------------
# A CA the operator constrained to example.org (its key in a file, so that it
# can sign what the token's CA never would): a leaf inside the constraint
# and one outside it, both in b's allow list.
ec "$P/nc.key"
openssl req -new -key "$P/nc.key" -subj "/O=Operator/CN=Constrained CA" -out "$P/nc.csr" 2>/dev/null
sign "$P/nc.csr" "$P/int.pem" "$P/int.key" "$P/nc.pem" 20 "$CAEXT,pathlen:0" "$KU" "$NC"
for who in example.org evil.org; do
	ec "$P/$who.key"
	openssl req -new -key "$P/$who.key" -subj "/CN=a" -out "$P/$who.csr" 2>/dev/null
	sign "$P/$who.csr" "$P/nc.pem" "$P/nc.key" "$P/$who.leaf" 1 "basicConstraints=critical,CA:FALSE" \
	    "keyUsage=critical,digitalSignature" "extendedKeyUsage=clientAuth,serverAuth" "subjectAltName=URI:spiffe://$who/a"
	cat "$P/$who.leaf" "$P/nc.pem" "$P/int.pem" >"$P/$who.chain"
done
tls() { curl -sk --max-time 10 --cert "$1" --key "$2" "https://127.0.0.1:$BPORT/" 2>/dev/null; }
check "a peer inside the name constraint is accepted (control)" \
    test "$(tls "$P/example.org.chain" "$P/example.org.key")" = "hello from b"
check "a peer certificate outside the name constraint is refused" \
    sh -c '! curl -sk --max-time 10 --cert "$2" --key "$3" "https://127.0.0.1:$1/" >/dev/null 2>&1' x "$BPORT" "$P/evil.org.chain" "$P/evil.org.key"
check "... for its name constraint (b's log)" wait_log "refused: .*permitted subtree violation" 5 "$T/b.log" || diag "$T/b.log"
check "openssl verify agrees" sh -c '! openssl verify -CAfile "$1" -untrusted "$2" "$3" >/dev/null 2>&1' x "$P/root.pem" "$P/evil.org.chain" "$P/evil.org.leaf"

done_testing
