# ASAN=yes
# TPM=yes
# t_ca_keytypes.sh HSMESH - a CA whose key is ECDSA P-384 or RSA-3072 (each
# on its own token and state_dir): the key is born non-extractable in the
# token, the root certificate carries it, and the SVIDs it signs for P-256,
# P-384 and RSA requests verify.
. "$(dirname "$0")/lib.sh"

TD=example.org
new_csr "$T/p256.csr" ec-p256 p256
new_csr "$T/p384.csr" ec-p384 p384
new_csr "$T/rsa.csr" rsa-3072 rsa

for kt in ec-p384 rsa-3072; do
	name=$(echo "$kt" | tr -d -- -)
	ca_setup "$name" "$kt"
	Y=$T/$name.yaml
	ROOT=$T/$name/root.pem
	check "[$kt] ca init exits 0" quiet "$HSMESH" ca init -c "$Y"
	check "[$kt] root.pem written" test -s "$ROOT"
	check "[$kt] root.pem is self-signed and valid (-x509_strict)" quiet openssl verify -x509_strict -CAfile "$ROOT" "$ROOT"
	case $kt in
	ec-p384) check "[$kt] root key is EC P-384" sh -c 'openssl x509 -in "$1" -noout -text | grep -q "ASN1 OID: secp384r1"' x "$ROOT" ;;
	rsa-3072) check "[$kt] root key is RSA 3072 bit" sh -c 'openssl x509 -in "$1" -noout -text | grep -q "Public-Key: (3072 bit)"' x "$ROOT" ;;
	esac
	check "[$kt] root basicConstraints critical CA:TRUE" \
	    sh -c 'b=$(openssl x509 -in "$1" -noout -ext basicConstraints); echo "$b" | grep -q critical && echo "$b" | grep -q CA:TRUE' x "$ROOT"
	check "[$kt] root keyUsage keyCertSign + cRLSign" \
	    sh -c 'k=$(openssl x509 -in "$1" -noout -ext keyUsage); echo "$k" | grep -q "Certificate Sign" && echo "$k" | grep -q "CRL Sign"' x "$ROOT"
	check "[$kt] root URI SAN is spiffe://$TD" test "$(uri_sans "$ROOT")" = "spiffe://$TD"
	sigalg=$(openssl x509 -in "$ROOT" -noout -text | sed -n 's/^ *Signature Algorithm: //p' | head -n 1)
	echo "# [$kt] root signature algorithm: $sigalg"
	case $kt in
	ec-p384) check "[$kt] root signed with ecdsa-with-SHA384 ($sigalg)" test "$sigalg" = ecdsa-with-SHA384 ;;
	rsa-3072) check "[$kt] root signed with an RSA SHA-256+ algorithm ($sigalg)" sh -c 'echo "$1" | grep -qiE "sha(256|384|512)WithRSA|rsassaPss"' x "$sigalg" ;;
	esac

	p11_privkeys 1234 "$name" >"$T/$name.keys"
	sed "s/^/# [$kt] token private key: /" "$T/$name.keys"
	check "[$kt] token holds exactly one private key" test "$(wc -l <"$T/$name.keys")" -eq 1
	check "[$kt] Access line has 'sensitive' and 'never extractable' ($(cut -d'|' -f3 "$T/$name.keys" | head -n 1))" \
	    access_protected "$(cut -d'|' -f3 "$T/$name.keys" | head -n 1)"
	pkcs11-tool --module "$SOFTHSM_MODULE" --token-label "$name" --login --pin 1234 --list-objects --type privkey 2>/dev/null >"$T/$name.objs"
	case $kt in
	ec-p384)
		point=$(spki_hex "$ROOT" | tail -c 194)
		check "[$kt] root.pem public key is the token's (EC_POINT)" \
		    sh -c 'pkcs11-tool --module "$1" --token-label "$2" --login --pin 1234 --list-objects --type pubkey 2>/dev/null | grep -qi "EC_POINT: *0461$3"' \
		    x "$SOFTHSM_MODULE" "$name" "$point" ;;
	rsa-3072)
		check "[$kt] token says the private key is RSA" sh -c 'grep -q "^Private Key Object; RSA" "$1"' x "$T/$name.objs"
		id=$(cut -d'|' -f2 "$T/$name.keys" | head -n 1)
		pkcs11-tool --module "$SOFTHSM_MODULE" --token-label "$name" --login --pin 1234 --read-object --type pubkey --id "$id" -o "$T/$name.pub.der" >/dev/null 2>&1
		check "[$kt] root.pem public key is the token's (public key object $id)" \
		    test "$(od -An -v -tx1 "$T/$name.pub.der" | tr -d ' \n')" = "$(spki_hex "$ROOT")" ;;
	esac
	spki1=$(spki_hex "$ROOT")
	check "[$kt] second ca init exits 0" quiet "$HSMESH" ca init -c "$Y"
	check "[$kt] second ca init keeps the root key" test "$(spki_hex "$ROOT")" = "$spki1"
	check "[$kt] still exactly one private key on the token" test "$(p11_privkeys 1234 "$name" | wc -l)" -eq 1

	for csr in p256 p384 rsa; do
		id=spiffe://$TD/ca/$name/$csr
		t0=$(date +%s)
		"$HSMESH" ca issue -c "$Y" --csr "$T/$csr.csr" --id "$id" --ttl 30m >"$T/$name-$csr.pem" 2>"$T/err"
		rc=$?
		check "[$kt] ca issue of a $csr CSR exits 0 (rc $rc$( [ -s "$T/err" ] && printf ', stderr: %s' "$(head -n 1 "$T/err")"))" test $rc -eq 0
		svid_checks "[$kt] $csr SVID" "$T/$name-$csr.pem" "$id" 1800 "$T/$csr.csr" "$ROOT" "$t0"
	done
	# SVIDs of one CA do not verify against the other CA's root.
	[ "$kt" = rsa-3072 ] && check "an SVID of the P-384 CA is rejected by the RSA CA root" \
	    sh -c '! openssl verify -CAfile "$1" "$2" >/dev/null 2>&1' x "$ROOT" "$T/ecp384-p256.pem"
done

done_testing
