# ASAN=yes
# TPM=yes
# t_ca_init_issue.sh HSMESH - issue 2 happy paths: `hsmesh ca init` makes a
# non-extractable CA key in a fresh SoftHSM2 token and a root certificate,
# `hsmesh ca issue` turns CSRs (P-256, P-384, RSA) into X.509-SVIDs that
# OpenSSL accepts for TLS client and server use, `hsmesh inspect` prints them.
. "$(dirname "$0")/lib.sh"

TD=example.org
ca_setup ca ec-p256
Y=$T/ca.yaml
ROOT=$T/ca/root.pem

# ---- ca init ----------------------------------------------------------------
check "ca init exits 0" quiet "$HSMESH" ca init -c "$Y"
check "ca init wrote state_dir/root.pem" test -s "$ROOT"
check "root.pem is a PEM certificate" openssl x509 -in "$ROOT" -noout
check "root.pem is self-signed (openssl verify -x509_strict against itself)" \
    quiet openssl verify -x509_strict -CAfile "$ROOT" "$ROOT"
check "root.pem subject == issuer" \
    test "$(openssl x509 -in "$ROOT" -noout -subject | cut -d= -f2-)" = "$(openssl x509 -in "$ROOT" -noout -issuer | cut -d= -f2-)"
bc=$(openssl x509 -in "$ROOT" -noout -ext basicConstraints 2>/dev/null)
check "root basicConstraints is critical CA:TRUE" sh -c 'echo "$1" | grep -q critical && echo "$1" | grep -q "CA:TRUE"' x "$bc"
ku=$(openssl x509 -in "$ROOT" -noout -ext keyUsage 2>/dev/null)
check "root keyUsage has keyCertSign and cRLSign ($(echo $ku | cut -d: -f2-))" \
    sh -c 'echo "$1" | grep -q "Certificate Sign" && echo "$1" | grep -q "CRL Sign"' x "$ku"
check "root has exactly one URI SAN, spiffe://$TD ($(uri_sans "$ROOT" | tr '\n' ' '))" \
    test "$(uri_sans "$ROOT")" = "spiffe://$TD"
check "root key is EC P-256 (key.type ec-p256)" sh -c 'openssl x509 -in "$1" -noout -text | grep -q "ASN1 OID: prime256v1"' x "$ROOT"
root_spki=$(spki_hex "$ROOT")

# ---- the key on the token, as pkcs11-tool sees it -----------------------------
p11_privkeys >"$T/keys1"
sed 's/^/# token private key: /' "$T/keys1"
check "token holds exactly one private key after ca init" test "$(wc -l <"$T/keys1")" -eq 1
check "CA private key Access line has 'sensitive' and 'never extractable' ($(cut -d'|' -f3 "$T/keys1" | head -n 1))" \
    access_protected "$(cut -d'|' -f3 "$T/keys1" | head -n 1)"
# The certificate's public key is the token's: the EC point ends the SPKI.
point=$(echo "$root_spki" | tail -c 131)
check "root.pem public key is the token's key (EC_POINT matches)" \
    sh -c 'pkcs11-tool --module "$1" --login --pin 1234 --list-objects --type pubkey 2>/dev/null | grep -qi "EC_POINT: *0441$2"' x "$SOFTHSM_MODULE" "$point"
check "no private key material in state_dir" sh -c '! grep -rlq "PRIVATE KEY" "$1"' x "$T/ca"

# ---- ca init is idempotent ------------------------------------------------------
cp "$ROOT" "$T/root1.pem"
check "second ca init exits 0" quiet "$HSMESH" ca init -c "$Y"
check "second ca init keeps the same root key" test "$(spki_hex "$ROOT")" = "$root_spki"
p11_privkeys >"$T/keys2"
check "token still holds exactly one private key after the second ca init" test "$(wc -l <"$T/keys2")" -eq 1
check "the token key is the same object (same CKA_ID)" test "$(cut -d'|' -f2 "$T/keys1")" = "$(cut -d'|' -f2 "$T/keys2")"

# A lost root.pem is rebuilt from the key still in the token.
mv "$ROOT" "$T/root.saved"
check "ca init without root.pem (key still in the token) exits 0" quiet "$HSMESH" ca init -c "$Y"
check "... and writes a root.pem for the same key" test "$(spki_hex "$ROOT")" = "$root_spki"
check "... still exactly one private key on the token" test "$(p11_privkeys | wc -l)" -eq 1
mv "$T/root.saved" "$ROOT"

# ---- ca issue -------------------------------------------------------------------
# issue OUT ID CSR [--ttl D] [-c YAML]: run ca issue, stdout to OUT; t0 = time before
issue() {
	_out=$1 _id=$2 _csr=$3; shift 3
	_y=$Y
	if [ "${1:-}" = -c ]; then _y=$2; shift 2; fi
	t0=$(date +%s)
	"$HSMESH" ca issue -c "$_y" --csr "$_csr" --id "$_id" "$@" >"$_out" 2>"$T/issue.err"
}
new_csr "$T/p256.csr" ec-p256 frontend
ID1=spiffe://$TD/ns/shop/sa/frontend
check "ca issue (P-256 CSR, default svid_ttl 1h) exits 0" issue "$T/p256.pem" "$ID1" "$T/p256.csr"
sed 's/^/# stderr: /' "$T/issue.err"
svid_checks "P-256 SVID" "$T/p256.pem" "$ID1" 3600 "$T/p256.csr" "$ROOT" "$t0"

check "ca issue --ttl 30m exits 0" issue "$T/ttl30m.pem" "spiffe://$TD/ttl/30m" "$T/p256.csr" --ttl 30m
svid_checks "30m SVID" "$T/ttl30m.pem" "spiffe://$TD/ttl/30m" 1800 "$T/p256.csr" "$ROOT" "$t0"

check "ca issue --ttl 1h exits 0" issue "$T/ttl1h.pem" "spiffe://$TD/ttl/1h" "$T/p256.csr" --ttl 1h
svid_checks "1h SVID" "$T/ttl1h.pem" "spiffe://$TD/ttl/1h" 3600 "$T/p256.csr" "$ROOT" "$t0"

check "ca issue --ttl 24h (= max_ttl) exits 0" issue "$T/ttl24h.pem" "spiffe://$TD/ttl/24h" "$T/p256.csr" --ttl 24h
check "24h SVID: notAfter - now <= 24h" test $(($(enddate_epoch "$T/ttl24h.pem") - $(date +%s))) -le 86400

# 2d needs max_ttl above 48h: same token and state, a second config.
cp "$Y" "$T/ca72.yaml"
yaml_set "$T/ca72.yaml" max_ttl 72h
check "ca issue --ttl 2d (max_ttl 72h) exits 0" issue "$T/ttl2d.pem" "spiffe://$TD/ttl/2d" "$T/p256.csr" -c "$T/ca72.yaml" --ttl 2d
sed 's/^/# stderr: /' "$T/issue.err"
svid_checks "2d SVID" "$T/ttl2d.pem" "spiffe://$TD/ttl/2d" 172800 "$T/p256.csr" "$ROOT" "$t0"

new_csr "$T/p384.csr" ec-p384 p384
check "ca issue (P-384 CSR) exits 0" issue "$T/p384.pem" "spiffe://$TD/key/p384" "$T/p384.csr" --ttl 30m
svid_checks "P-384 SVID" "$T/p384.pem" "spiffe://$TD/key/p384" 1800 "$T/p384.csr" "$ROOT" "$t0"

new_csr "$T/rsa3072.csr" rsa-3072 rsa3072
check "ca issue (RSA-3072 CSR) exits 0" issue "$T/rsa3072.pem" "spiffe://$TD/key/rsa3072" "$T/rsa3072.csr" --ttl 30m
svid_checks "RSA-3072 SVID" "$T/rsa3072.pem" "spiffe://$TD/key/rsa3072" 1800 "$T/rsa3072.csr" "$ROOT" "$t0"

new_csr "$T/rsa2048.csr" rsa-2048 rsa2048
check "ca issue (RSA-2048 CSR) exits 0" issue "$T/rsa2048.pem" "spiffe://$TD/key/rsa2048" "$T/rsa2048.csr" --ttl 30m
svid_checks "RSA-2048 SVID" "$T/rsa2048.pem" "spiffe://$TD/key/rsa2048" 1800 "$T/rsa2048.csr" "$ROOT" "$t0"

# A CSR asking for more than its ID: other SANs and CA:TRUE are not copied.
new_csr "$T/rogue.csr" ec-p256 rogue -addext "subjectAltName=URI:spiffe://evil.org/x,DNS:evil.example,URI:spiffe://$TD/admin" \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=keyCertSign"
check "ca issue on a CSR requesting other SANs and CA:TRUE exits 0" issue "$T/rogue.pem" "spiffe://$TD/ns/x" "$T/rogue.csr"
svid_checks "rogue-CSR SVID" "$T/rogue.pem" "spiffe://$TD/ns/x" 3600 "$T/rogue.csr" "$ROOT" "$t0"

# pin_env instead of pin_file
sed "s|^  pin_file:.*|  pin_env: HSMESH_TEST_CA_PIN|" "$Y" >"$T/ca-env.yaml"
check "ca issue with token.pin_env exits 0" env HSMESH_TEST_CA_PIN=1234 "$HSMESH" ca issue -c "$T/ca-env.yaml" --csr "$T/p256.csr" --id "spiffe://$TD/env" >"$T/env.pem"
check "pin_env SVID verifies" quiet openssl verify -x509_strict -CAfile "$ROOT" -purpose sslclient "$T/env.pem"
SVID_SERIALS="$SVID_SERIALS $(openssl x509 -in "$T/env.pem" -noout -serial 2>/dev/null | cut -d= -f2)"

# A SPIFFE path may use the whole allowed alphabet.
IDW="spiffe://$TD/ns/A-z_0.9/sa/x-y_z.1"
check "ca issue accepts an ID with letters, digits, '-', '_', '.' in the path" issue "$T/wide.pem" "$IDW" "$T/p256.csr"
check "... and certifies exactly it" test "$(uri_sans "$T/wide.pem")" = "$IDW"

nser=$(echo $SVID_SERIALS | wc -w); nuniq=$(echo $SVID_SERIALS | tr ' ' '\n' | sort -u | wc -l)
check "serial numbers of the $nser SVIDs are all different" test "$nser" -eq "$nuniq"
check "serial numbers carry >= 64 bits (first: $(echo $SVID_SERIALS | cut -d' ' -f1))" test "$(echo $SVID_SERIALS | cut -d' ' -f1 | wc -c)" -ge 16

# ---- explicit key.label --------------------------------------------------------------
ca_setup lbl ec-p256
sed -i 's/^  type: ec-p256$/  type: ec-p256\n  label: hsmesh-test-root/' "$T/lbl.yaml"
check "ca init with key.label exits 0" quiet "$HSMESH" ca init -c "$T/lbl.yaml"
check "the token's private key carries key.label 'hsmesh-test-root' ($(p11_privkeys 1234 lbl | cut -d'|' -f1))" \
    test "$(p11_privkeys 1234 lbl | cut -d'|' -f1)" = hsmesh-test-root

# ---- inspect -------------------------------------------------------------------------
keyid() { openssl x509 -in "$1" -noout -pubkey | openssl pkey -pubin -outform DER | sha256sum | cut -d' ' -f1; }
# norm FILE: lower case, no colons or spaces (so "AB:CD" and "abcd" compare)
norm() { tr 'A-Z' 'a-z' <"$1" | tr -d ': '; }
check "inspect SVID exits 0" sh -c '"$1" inspect "$2" >"$3"' x "$HSMESH" "$T/p256.pem" "$T/insp"
sed 's/^/#   /' "$T/insp"
check "inspect SVID shows the SPIFFE ID" grep -qF "$ID1" "$T/insp"
check "inspect SVID shows the subject" grep -qi 'subject' "$T/insp"
check "inspect SVID shows the issuer" grep -qi 'issuer' "$T/insp"
check "inspect SVID shows the key type" grep -qiE 'p-?256|prime256v1|ec' "$T/insp"
check "inspect SVID shows the key id (SHA-256 of SPKI)" sh -c 'norm() { tr "A-Z" "a-z" <"$1" | tr -d ": "; }; norm "$1" | grep -q "$2"' x "$T/insp" "$(keyid "$T/p256.pem")"
check "inspect SVID shows the validity" grep -qiE 'valid|not ?after|expires' "$T/insp"
check "inspect SVID shows the notAfter year" grep -q "$(date -u -d "@$(enddate_epoch "$T/p256.pem")" +%Y)" "$T/insp"
check "inspect RSA SVID exits 0 and says RSA" sh -c '"$1" inspect "$2" | grep -qi rsa' x "$HSMESH" "$T/rsa3072.pem"
check "inspect P-384 SVID names the curve" sh -c '"$1" inspect "$2" | grep -qiE "p-?384|secp384r1"' x "$HSMESH" "$T/p384.pem"
check "inspect root.pem shows spiffe://$TD" sh -c '"$1" inspect "$2" | grep -qF "spiffe://$3"' x "$HSMESH" "$ROOT" "$TD"
check "inspect CSR exits 0" sh -c '"$1" inspect "$2" >"$3"' x "$HSMESH" "$T/p256.csr" "$T/inspcsr"
sed 's/^/#   /' "$T/inspcsr"
check "inspect CSR shows the subject CN" grep -q frontend "$T/inspcsr"
check "inspect CSR shows the key type" grep -qiE 'p-?256|prime256v1|ec' "$T/inspcsr"
csr_keyid=$(openssl req -in "$T/p256.csr" -noout -pubkey | openssl pkey -pubin -outform DER | sha256sum | cut -d' ' -f1)
check "inspect CSR shows the key id" sh -c 'tr "A-Z" "a-z" <"$1" | tr -d ": " | grep -q "$2"' x "$T/inspcsr" "$csr_keyid"
new_csr "$T/sancsr.csr" ec-p256 withsan -addext "subjectAltName=URI:spiffe://$TD/asked"
check "inspect CSR shows a requested SPIFFE ID" sh -c '"$1" inspect "$2" | grep -qF "spiffe://$3/asked"' x "$HSMESH" "$T/sancsr.csr" "$TD"
openssl x509 -in "$T/p256.pem" -outform DER -out "$T/p256.der"
check "inspect accepts a DER certificate" sh -c '"$1" inspect "$2" | grep -qF "$3"' x "$HSMESH" "$T/p256.der" "$ID1"
head -c 300 /dev/urandom >"$T/garbage.bin"
refuse "inspect refuses a garbage file" 'certificate|csr|request|parse|recogni|format|pem|der|quote' "$HSMESH" inspect "$T/garbage.bin"
refuse "inspect refuses a missing file" 'no such|not found|cannot|open|exist' "$HSMESH" inspect "$T/nonexistent.pem"

done_testing
