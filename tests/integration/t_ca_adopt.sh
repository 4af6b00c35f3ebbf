#!/bin/sh
# ASAN=yes
# t_ca_adopt.sh - `hsmesh ca init` adopts a key it finds in the token only if
# the token says it is sensitive and never was extractable: keys made with
# pkcs11-tool (OpenSC) in throwaway SoftHSM2 tokens, the way an operator
# would, one refused for each reason and one adopted.
. "$(dirname "$0")/lib.sh"

M=$SOFTHSM_MODULE
# p11 TOKEN ARGS...: pkcs11-tool logged in to TOKEN
p11() { _t=$1; shift; pkcs11-tool --module "$M" --token-label "$_t" --login --pin 1234 "$@"; }
# name_key TOKEN ID: give the key pair ID the CKA_ID hsmesh names keys by
# (SHA-256 of its SubjectPublicKeyInfo)
name_key() {
	p11 "$1" --read-object --type pubkey --id "$2" -o "$T/pub.der" >/dev/null 2>&1 || return 1
	_kid=$(openssl dgst -sha256 -binary "$T/pub.der" | od -An -v -tx1 | tr -d ' \n')
	p11 "$1" --set-id "$_kid" --id "$2" --type privkey >/dev/null 2>&1 &&
	    p11 "$1" --set-id "$_kid" --id "$2" --type pubkey >/dev/null 2>&1
}
# keygen TOKEN [pkcs11-tool options]: an EC P-256 pair labelled hsmesh-ca
keygen() {
	_t=$1; shift
	p11 "$_t" --keypairgen --key-type EC:prime256v1 --label hsmesh-ca --id 01 "$@" >/dev/null 2>&1 &&
	    name_key "$_t" 01
}
# access TOKEN: the Access line pkcs11-tool shows for the private key
access() { p11 "$1" --list-objects --type privkey 2>/dev/null | sed -n 's/^ *Access: *//p' | head -n 1; }

command -v pkcs11-tool >/dev/null || { ok "# SKIP pkcs11-tool (opensc) not installed"; done_testing; exit; }
if [ "${HSMESH_TOKEN_BACKEND:-}" = tpm ]; then ok "# SKIP SoftHSM2 only"; done_testing; exit; fi

# --- an extractable key: refused, and nothing written ---
ca_setup ext ec-p256
check "pkcs11-tool makes an extractable key labelled hsmesh-ca" keygen ext --extractable
check "... the token calls it extractable ($(access ext))" sh -c 'echo "$1" | tr "," "\n" | grep -qx " *extractable"' x "$(access ext)"
refuse "ca init refuses the extractable key, naming the attributes it found" \
    "^hsmesh ca init: key 'hsmesh-ca' in the token is extractable \(CKA_EXTRACTABLE=TRUE, CKA_SENSITIVE=(TRUE|FALSE), CKA_NEVER_EXTRACTABLE=FALSE, CKA_ALWAYS_SENSITIVE=(TRUE|FALSE)\): refusing to adopt it$" \
    "$HSMESH" ca init -c "$T/ext.yaml"
check "... and writes no root.pem" test ! -e "$T/ext/root.pem"
check "... and leaves the key where it was (nothing generated beside it)" test "$(p11_privkeys 1234 ext | wc -l)" -eq 1

# --- a key that was readable once: imported from a file ---
ca_setup imp ec-p256
openssl ecparam -name prime256v1 -genkey -noout -out "$T/imp.pem" 2>/dev/null
openssl pkey -in "$T/imp.pem" -outform DER -out "$T/imp.der" 2>/dev/null
openssl pkey -in "$T/imp.pem" -pubout -outform DER -out "$T/imppub.der" 2>/dev/null
check "pkcs11-tool imports a key from a file as sensitive, not extractable" sh -c '
    pkcs11-tool --module "$1" --token-label imp --login --pin 1234 --write-object "$2" --type privkey \
        --label hsmesh-ca --id 02 --sensitive >/dev/null 2>&1 &&
    pkcs11-tool --module "$1" --token-label imp --login --pin 1234 --write-object "$3" --type pubkey \
        --label hsmesh-ca --id 02 >/dev/null 2>&1' x "$M" "$T/imp.der" "$T/imppub.der"
check "... named by its SPKI hash" name_key imp 02
refuse "ca init refuses a key that was outside the token once" \
    "^hsmesh ca init: key 'hsmesh-ca' in the token (was extractable once|was not sensitive once).* \(CKA_EXTRACTABLE=FALSE, .*CKA_NEVER_EXTRACTABLE=FALSE.*\): refusing to adopt it$" \
    "$HSMESH" ca init -c "$T/imp.yaml"
check "... and writes no root.pem" test ! -e "$T/imp/root.pem"

# --- a key made in the token as it should be: adopted ---
ca_setup good ec-p256
check "pkcs11-tool makes a sensitive, non-extractable key labelled hsmesh-ca" keygen good --sensitive
check "... the token says sensitive, never extractable ($(access good))" access_protected "$(access good)"
check "ca init adopts it" sh -c '"$1" ca init -c "$2" >"$3"' x "$HSMESH" "$T/good.yaml" "$T/good.out"
check "... saying so" grep -q "^CA key reused in the token (EC P-256, label 'hsmesh-ca')" "$T/good.out"
new_csr "$T/w.csr" ec-p256
check "... and issues with it" sh -c '"$1" ca issue -c "$2" --csr "$3" --id spiffe://example.org/w >"$4" &&
    openssl verify -CAfile "$5" "$4" >/dev/null' x "$HSMESH" "$T/good.yaml" "$T/w.csr" "$T/w.pem" "$T/good/root.pem"
check "running ca init again keeps it" sh -c '"$1" ca init -c "$2" | grep -q "(kept)"' x "$HSMESH" "$T/good.yaml"
done_testing
