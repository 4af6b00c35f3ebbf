#!/bin/sh
# t_ca_replicate.sh HSMESH - `hsmesh ca replicate`: the CA key from one
# SoftHSM2 token into another, never in clear (docs/REPLICAS.md).
#
# Covered: ca init with key.replicable makes a key extractable only to
# trusted keys, and ca init adopts exactly that (not without
# key.replicable); the token itself refuses to wrap the CA key with a key
# its SO did not mark trusted (pkcs11-tool --wrap as the user), and a CA
# key made without key.replicable (not extractable) is refused by the
# token; the SO PIN is required and a wrong one refused; request / wrap /
# unwrap SoftHSM2 -> SoftHSM2; the unwrapped key is sensitive, not
# extractable and wrap-with-trusted (the token's attributes); a replica
# with it issues certificates that verify under the same root; with
# attestation, a target whose quote binds its unwrapping key and the
# source's nonce is accepted (tests/tools/sgx_testpki), a quote for
# another key, a stale nonce or another enclave refused; no PEM private
# key but the test's own client keys exists anywhere in the test's files.
. "$(dirname "$0")/lib.sh"

TOOL=$(test_tool sgx_testpki)
MRS=aa11aa11aa11aa11aa11aa11aa11aa11aa11aa11aa11aa11aa11aa11aa11aa11
MRS2=bb22bb22bb22bb22bb22bb22bb22bb22bb22bb22bb22bb22bb22bb22bb22bb22

# Two tokens in one SoftHSM2 directory: the source CA's and the target's.
ca_setup src ec-p256
new_token tgt
printf "1234\n" >"$T/tgt.pin"
yaml_set "$T/src.yaml" listen 127.0.0.1:0
sed -i 's|^  type: \(.*\)|  type: \1\n  replicable: true|' "$T/src.yaml"
printf '5678\n' >"$T/so.pin"
printf '9999\n' >"$T/bad-so.pin"
check "ca init with key.replicable" sh -c '"$1" ca init -c "$2" | grep -q "generated.*replicable: wrappable to trusted keys only"' x "$HSMESH" "$T/src.yaml"
ROOT=$T/src/root.pem
KEYID=$(openssl x509 -in "$ROOT" -noout -pubkey | openssl pkey -pubin -outform DER 2>/dev/null | sha256sum | cut -c1-64)
describe() { # TOKEN KEYID: the keyholder's view of a key's attributes
	"$HSMESH" keyholder --module "$SOFTHSM_MODULE" --token "pkcs11:token=$1" --pin-file "$T/src.pin" --describe "$2"
}
describe src "$KEYID" >"$T/src.attrs"
check "... the source key: sensitive, extractable, wrap with trusted keys only" sh -c \
    'grep -q "sensitive  *yes" "$1" && grep -q "extractable  *YES" "$1" && grep -q "wrap with trusted yes" "$1"' x "$T/src.attrs"
check "ca init again adopts that key (key.replicable set)" quiet "$HSMESH" ca init -c "$T/src.yaml"
sed 's|^  replicable: true|  replicable: false|' "$T/src.yaml" >"$T/src-norep.yaml"
refuse "without key.replicable ca init refuses it" \
    "is extractable to trusted keys but key.replicable is not set.*CKA_WRAP_WITH_TRUSTED=TRUE" \
    "$HSMESH" ca init -c "$T/src-norep.yaml"

# The token's own rule: only a trusted key may wrap it. Straight through
# the module with the user PIN (tests/tools/p11steal), an AES key of the
# user's own, which the user cannot mark trusted, is refused.
STEAL=$(test_tool p11steal)
check "the token refuses to wrap the CA key with an untrusted key ($("$STEAL" "$SOFTHSM_MODULE" src "$T/src.pin" "$KEYID"))" \
    sh -c '"$1" "$2" src "$3" "$4" | grep -qx "refused CKR_KEY_NOT_WRAPPABLE"' x "$STEAL" "$SOFTHSM_MODULE" "$T/src.pin" "$KEYID"
# ---- the target: root.pem and token.key copied, its own token ----
mkdir -p "$T/tgt"
cp "$ROOT" "$T/src/token.key" "$T/tgt/" 2>/dev/null || { "$HSMESH" ca token -c "$T/src.yaml" --id spiffe://example.org/x >/dev/null; cp "$ROOT" "$T/src/token.key" "$T/tgt/"; }
sed -e "s|token=src|token=tgt|" -e "s|$T/src|$T/tgt|g" -e '/replicable/d' "$T/src.yaml" >"$T/tgt.yaml"

check "request: an unwrapping key in the target token" sh -c \
    '"$1" ca replicate request -c "$2" --out "$3" | grep -q "unwrapping key [0-9a-f]\{64\} made"' x "$HSMESH" "$T/tgt.yaml" "$T/req.pem"
check "... the request is one PEM block of public data" \
    sh -c 'grep -c "BEGIN HSMESH UNWRAPPING KEY" "$1" | grep -qx 1 && ! grep -q PRIVATE "$1"' x "$T/req.pem"
refuse "wrap without the SO PIN is refused" "so-pin" \
    "$HSMESH" ca replicate wrap -c "$T/src.yaml" --request "$T/req.pem" --out "$T/w.pem"
refuse "wrap with a wrong SO PIN is refused" "C_Login\(SO\): CKR_PIN_INCORRECT" \
    "$HSMESH" ca replicate wrap -c "$T/src.yaml" --request "$T/req.pem" --out "$T/w.pem" --so-pin-file "$T/bad-so.pin"
check "wrap with the SO PIN (from a file), saying the target is not attested" sh -c \
    '"$1" ca replicate wrap -c "$2" --request "$3" --out "$4" --so-pin-file "$5" | grep -q "^target: *NOT attested"' \
    x "$HSMESH" "$T/src.yaml" "$T/req.pem" "$T/w.pem" "$T/so.pin"
check "... the wrapped key file is 0600 and names no private key" \
    sh -c '[ "$(stat -c %a "$1")" = 600 ] && grep -q "BEGIN HSMESH WRAPPED KEY" "$1" && ! grep -q PRIVATE "$1"' x "$T/w.pem"
check "... audited" grep -q '"event":"replicated".*"to":"unattested"' "$T/src/audit.log"
check "the source keeps signing (its keyholder logged the user in again)" quiet "$HSMESH" ca init -c "$T/src.yaml"

check "unwrap into the target token" sh -c '"$1" ca replicate unwrap -c "$2" --in "$3" | grep -q "sensitive, not extractable"' \
    x "$HSMESH" "$T/tgt.yaml" "$T/w.pem"
describe tgt "$KEYID" >"$T/tgt.attrs"
check "... the target key is sensitive, not extractable, wrap with trusted only" sh -c \
    'grep -q "sensitive  *yes" "$1" && grep -q "extractable  *no" "$1" && grep -q "wrap with trusted yes" "$1"' x "$T/tgt.attrs"
check "... the one-use unwrapping key is gone" sh -c \
    '! pkcs11-tool --module "$1" --token-label tgt --login --pin 1234 --list-objects --type privkey 2>/dev/null | grep -q hsmesh-unwrap' x "$SOFTHSM_MODULE"
refuse "unwrap again: the token holds the CA key already" "holds the CA key already|no unwrapping key" \
    "$HSMESH" ca replicate unwrap -c "$T/tgt.yaml" --in "$T/w.pem"
check "ca init on the target adopts the replicated key (unwrapped wrap-with-trusted)" quiet "$HSMESH" ca init -c "$T/tgt.yaml"

# A replica with the copy issues under the same root.
new_csr "$T/w.csr" ec-p256
check "the target issues with the replicated key" sh -c '"$1" ca issue -c "$2" --csr "$3" --id spiffe://example.org/rep >"$4"' \
    x "$HSMESH" "$T/tgt.yaml" "$T/w.csr" "$T/rep.pem"
check "... a certificate that verifies under the source's root" quiet openssl verify -x509_strict -CAfile "$ROOT" "$T/rep.pem"
"$HSMESH" ca serve -c "$T/tgt.yaml" --port-file "$T/tgt.port" 2>"$T/tgt-serve.log" &
track $!
for _ in $(seq 100); do [ -s "$T/tgt.port" ] && break; sleep 0.05; done
TOK=$("$HSMESH" ca token -c "$T/tgt.yaml" --id spiffe://example.org/cmp)
openssl ecparam -name prime256v1 -genkey -noout -out "$T/k.pem" 2>/dev/null
check "ca serve on the target enrolls over CMP with the replicated key" quiet timeout 30 openssl cmp \
    -server "127.0.0.1:$(cat "$T/tgt.port")" -path .well-known/cmp -cmd ir -implicit_confirm \
    -ref "${TOK%%:*}" -secret "pass:${TOK#*:}" -newkey "$T/k.pem" -subject /CN=x -certout "$T/cmp.pem" -trusted "$ROOT"
check "... verifying under the same root" quiet openssl verify -CAfile "$ROOT" "$T/cmp.pem"

# A CA key made without key.replicable never leaves its token: the token refuses.
ca_setup fixed ec-p256
quiet "$HSMESH" ca init -c "$T/fixed.yaml"
FIXEDID=$(openssl x509 -in "$T/fixed/root.pem" -noout -pubkey | openssl pkey -pubin -outform DER 2>/dev/null | sha256sum | cut -c1-64)
check "... nor to the user's own key (CKR_KEY_UNEXTRACTABLE)" \
    sh -c '"$1" "$2" fixed "$3" "$4" | grep -qx "refused CKR_KEY_UNEXTRACTABLE"' x "$STEAL" "$SOFTHSM_MODULE" "$T/fixed.pin" "$FIXEDID"
"$HSMESH" ca replicate request -c "$T/tgt.yaml" --out "$T/req2.pem" >/dev/null
refuse "wrap of a non-replicable CA key: the token refuses (not extractable)" \
    "token refuses to wrap this key \(CKR_KEY_UNEXTRACTABLE\)" \
    "$HSMESH" ca replicate wrap -c "$T/fixed.yaml" --request "$T/req2.pem" --out "$T/w2.pem" --so-pin-file "$T/so.pin"

# ---- with attestation: the target proves its unwrapping key lives in an allowed enclave ----
if [ -x "$TOOL" ]; then
	"$TOOL" init "$T/pki" --mrsigner "$MRS" --prodid 3
	"$TOOL" init "$T/pki2" --mrsigner "$MRS2" --prodid 3
	{ cat "$T/src.yaml"; printf 'replication:\n  attestation:\n    collateral: %s\n    insecure_test_root: %s\n    mrsigner: [%s]\n    isv_prod_id: 3\n' \
	    "$T/pki/collateral.json" "$T/pki/root.pem" "$MRS"; } >"$T/src-att.yaml"
	tgt_att() { # NAME PKI: a target whose quotes come from that test enclave
		{ cat "$T/tgt.yaml"; printf 'replication:\n  evidence:\n    producer: command\n    command: [%s, quote, %s]\n' "$TOOL" "$2"; } >"$T/$1.yaml"
	}
	tgt_att tgt-att "$T/pki"
	tgt_att tgt-att2 "$T/pki2"
	NONCE=$("$HSMESH" ca replicate nonce -c "$T/src-att.yaml")
	check "nonce: 64 hex digits from the source ($NONCE)" sh -c 'echo "$1" | grep -Eqx "[0-9a-f]{64}"' x "$NONCE"
	refuse "a target with replication.evidence needs --nonce" "nonce is required" \
	    "$HSMESH" ca replicate request -c "$T/tgt-att.yaml" --out "$T/ra.pem"
	check "request with a quote binding the unwrapping key and the nonce" quiet "$HSMESH" ca replicate request \
	    -c "$T/tgt-att.yaml" --nonce "$NONCE" --out "$T/ra.pem"
	check "... which carries the quote" grep -q "BEGIN HSMESH SGX QUOTE" "$T/ra.pem"
	refuse "a source with replication.attestation refuses a request without a quote" "carries no quote" \
	    "$HSMESH" ca replicate wrap -c "$T/src-att.yaml" --request "$T/req2.pem" --out "$T/x.pem" --so-pin-file "$T/so.pin"
	# The quote of one request beside another unwrapping key: bound to the wrong key.
	{ sed -n '/BEGIN HSMESH UNWRAPPING KEY/,/END HSMESH UNWRAPPING KEY/p' "$T/req2.pem"
	  sed -n '/BEGIN HSMESH SGX QUOTE/,/END HSMESH SGX QUOTE/p' "$T/ra.pem"; } >"$T/swapped.pem"
	refuse "a quote for another unwrapping key is refused" "evidence is refused: .*report data" \
	    "$HSMESH" ca replicate wrap -c "$T/src-att.yaml" --request "$T/swapped.pem" --out "$T/x.pem" --so-pin-file "$T/so.pin"
	# pki2's enclave (MRSIGNER $MRS2) under a root the source trusts, MRSIGNER $MRS allowed only.
	sed -e "s|$T/pki/|$T/pki2/|g" "$T/src-att.yaml" >"$T/src-att2.yaml"
	NONCE2=$("$HSMESH" ca replicate nonce -c "$T/src-att2.yaml")
	"$HSMESH" ca replicate request -c "$T/tgt-att2.yaml" --nonce "$NONCE2" --out "$T/rb.pem" >/dev/null
	refuse "a quote from an enclave not allowed is refused" "evidence is refused: MRSIGNER" \
	    "$HSMESH" ca replicate wrap -c "$T/src-att2.yaml" --request "$T/rb.pem" --out "$T/x.pem" --so-pin-file "$T/so.pin"
	refuse "... and from an enclave under another root" "evidence is refused: .*not the trusted root" \
	    "$HSMESH" ca replicate wrap -c "$T/src-att.yaml" --request "$T/rb.pem" --out "$T/x.pem" --so-pin-file "$T/so.pin"
	OTHER=$("$HSMESH" ca replicate nonce -c "$T/fixed.yaml")
	"$HSMESH" ca replicate request -c "$T/tgt-att.yaml" --nonce "$OTHER" --out "$T/rc.pem" >/dev/null
	refuse "a quote over another CA's nonce is refused" "evidence is refused: .*nonce" \
	    "$HSMESH" ca replicate wrap -c "$T/src-att.yaml" --request "$T/rc.pem" --out "$T/x.pem" --so-pin-file "$T/so.pin"
	check "the attested request is wrapped" sh -c '"$1" ca replicate wrap -c "$2" --request "$3" --out "$4" \
	    --so-pin-file "$5" | grep -q "^target: *sgx:"' x "$HSMESH" "$T/src-att.yaml" "$T/ra.pem" "$T/wa.pem" "$T/so.pin"
	check "... audited with the measured enclave" sh -c 'grep "\"event\":\"attested\",\"op\":\"replicate\"" "$1" | grep -q "$2" &&
	    grep -q "\"event\":\"replicated\".*\"to\":\"sgx:" "$1"' x "$T/src/audit.log" "$MRS"
	new_token tgt2
	printf "1234\n" >"$T/tgt2.pin"
	mkdir -p "$T/tgt2" && cp "$ROOT" "$T/src/token.key" "$T/tgt2/"
	sed -e "s|token=tgt|token=tgt2|" -e "s|$T/tgt|$T/tgt2|g" "$T/tgt-att.yaml" >"$T/tgt2.yaml"
	refuse "a wrapped key opens only in the token it was made for" "no unwrapping key" \
	    "$HSMESH" ca replicate unwrap -c "$T/tgt2.yaml" --in "$T/wa.pem"
else
	not_ok "tests/tools/sgx_testpki is not built next to $HSMESH (make check-build)"
fi

# No private key in clear anywhere but the test's own client keys.
check "no PEM private key in the test's files but the clients' own" sh -c \
    '! grep -rl "PRIVATE KEY" "$1" 2>/dev/null | grep -v -e "/k\.pem$" -e "\.csr\.key$" -e "/pki2\?/" | grep -q .' x "$T"
done_testing
