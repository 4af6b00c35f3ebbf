#!/bin/sh
# ASAN=yes
# TPM=yes
# t_ca_cmp.sh - `hsmesh ca serve`, the CMPv2 issuer, against the unmodified
# `openssl cmp` client; `ca token` and `ca revoke`; the ledger and audit log.
. "$(dirname "$0")/lib.sh"

ca_setup cmp ec-p256
Y=$T/cmp.yaml
yaml_set "$Y" listen 127.0.0.1:0
quiet "$HSMESH" ca init -c "$Y" || { not_ok "ca init"; done_testing; exit 1; }
ROOT=$T/cmp/root.pem
DB=$T/cmp/ledger.db
AUDIT=$T/cmp/audit.log

"$HSMESH" ca serve -c "$Y" --port-file "$T/port" 2>"$T/serve.log" &
SRV=$!
track "$SRV"
for _ in $(seq 100); do [ -s "$T/port" ] && break; sleep 0.05; done
PORT=$(cat "$T/port" 2>/dev/null)
check "ca serve listens (port ${PORT:-none})" test -n "$PORT"
URL="127.0.0.1:$PORT"

ocmp() { timeout 30 openssl cmp -server "$URL" -path .well-known/cmp "$@"; }
newkey() { openssl ecparam -name prime256v1 -genkey -noout -out "$1" 2>/dev/null; }
# ref/secret of a token printed as REF:SECRET
ref() { echo "${1%%:*}"; }
sec() { echo "${1#*:}"; }

# --- ir with a join token ---
TOK=$("$HSMESH" ca token -c "$Y" --id spiffe://example.org/web)
check "ca token prints REF:SECRET ($TOK)" sh -c 'echo "$1" | grep -Eq "^[0-9a-f]{16}:[0-9a-f]{32}$"' x "$TOK"
check "the ledger stores no join-token secret" sh -c '! grep -qa "$1" "$2"' x "$(sec "$TOK")" "$DB"
newkey "$T/k1.pem"
check "ir with the token enrolls" quiet ocmp -cmd ir -ref "$(ref "$TOK")" -secret "pass:$(sec "$TOK")" \
    -newkey "$T/k1.pem" -subject /CN=x -certout "$T/c1.pem" -cacertsout "$T/ca.pem"
check "the certificate carries the token's SPIFFE ID" test "$(uri_sans "$T/c1.pem")" = spiffe://example.org/web
check "it verifies against root.pem (sslclient, x509_strict)" quiet openssl verify -x509_strict -CAfile "$ROOT" -purpose sslclient "$T/c1.pem"
check "caPubs is the root" test "$(openssl x509 -in "$T/ca.pem" -noout -fingerprint)" = "$(openssl x509 -in "$ROOT" -noout -fingerprint)"

refused_with() { # DESC PATTERN cmd...: the client fails and prints PATTERN
	d=$1; p=$2; shift 2
	if "$@" >"$T/out" 2>&1; then not_ok "$d (succeeded)"; return; fi
	if grep -qiE "$p" "$T/out"; then ok "$d: $(grep -iE "$p" "$T/out" | head -n 1 | cut -c1-160)"; else not_ok "$d"; sed 's/^/#   /' "$T/out" | tail -n 5; fi
}
alive_srv() { check "the server keeps serving after: $1" alive "$SRV"; }

refused_with "a reused token is refused" "already used" \
    ocmp -cmd ir -ref "$(ref "$TOK")" -secret "pass:$(sec "$TOK")" -newkey "$T/k1.pem" -subject /CN=x -certout "$T/x.pem"
alive_srv "reused token"

TOK2=$("$HSMESH" ca token -c "$Y" --id spiffe://example.org/api --ttl 1s)
sleep 2.2
refused_with "an expired token is refused" "expired" \
    ocmp -cmd ir -ref "$(ref "$TOK2")" -secret "pass:$(sec "$TOK2")" -newkey "$T/k1.pem" -subject /CN=x -certout "$T/x.pem"

TOK3=$("$HSMESH" ca token -c "$Y" --id spiffe://example.org/db)
# A message that proves nothing costs no signature of the CA: it is answered
# with an unprotected CMP error, which a client reads with -unprotected_errors.
ocmp -cmd ir -ref "$(ref "$TOK3")" -secret pass:0123456789abcdef0123456789abcdef -unprotected_errors \
    -newkey "$T/k1.pem" -subject /CN=x -certout "$T/x.pem" -rspout "$T/wrong.der" >"$T/wrong.txt" 2>&1
check "a wrong secret is refused with an error the client prints" grep -q "received error.*MAC check failed" "$T/wrong.txt"
ocmp -cmd ir -ref ffffffffffffffff -secret pass:0123456789abcdef0123456789abcdef -unprotected_errors \
    -newkey "$T/k1.pem" -subject /CN=x -certout "$T/x.pem" -rspout "$T/unknown.der" >"$T/unknown.txt" 2>&1
check "an unknown token reference is refused" grep -q "received error.*MAC check failed" "$T/unknown.txt"
# Same words, same shape: only ids, nonces and times differ.
msgs() { grep -o 'PKIStatus.*' "$1" | sed 's/errorDetails.*//'; }
check "wrong secret and unknown reference read the same ($(msgs "$T/wrong.txt"))" test "$(msgs "$T/wrong.txt")" = "$(msgs "$T/unknown.txt")"
check "... and are the same size" test "$(wc -c <"$T/wrong.der")" -eq "$(wc -c <"$T/unknown.der")"
# Never MAC-protected with the token's secret, and not signed by the CA either.
check "the error is not protected with the token's MAC" sh -c '! openssl asn1parse -inform DER -in "$1" | grep -q "1.2.840.113533.7.66.13"' x "$T/wrong.der"
check "... nor signed: no protection at all (no CA signature spent on it)" sh -c 'a=$(openssl asn1parse -inform DER -in "$1") &&
    ! echo "$a" | grep -q "d=1 .*cont \[ 0 \]" && ! echo "$a" | grep -qi "ecdsa-with"' x "$T/wrong.der"
check "a client without -unprotected_errors fails too, and nothing is issued" sh -c '! timeout 30 openssl cmp -server "$1" -path .well-known/cmp \
    -cmd ir -ref "$2" -secret pass:0123456789abcdef0123456789abcdef -newkey "$3" -subject /CN=x -certout "$4" >/dev/null 2>&1 &&
    test ! -s "$4"' x "$URL" "$(ref "$TOK3")" "$T/k1.pem" "$T/nothing.pem"
check "the token survives a wrong-secret attempt (right secret still enrolls)" quiet ocmp -cmd ir \
    -ref "$(ref "$TOK3")" -secret "pass:$(sec "$TOK3")" -newkey "$T/k1.pem" -subject /CN=x -certout "$T/db.pem"
alive_srv "wrong secrets"

# --- kur ---
newkey "$T/k2.pem"
check "kur signed by the current certificate renews" quiet ocmp -cmd kur -cert "$T/c1.pem" -key "$T/k1.pem" \
    -newkey "$T/k2.pem" -trusted "$ROOT" -certout "$T/c2.pem"
check "the renewal has the same SPIFFE ID" test "$(uri_sans "$T/c2.pem")" = spiffe://example.org/web
check "the renewal has the new key" test "$(spki_hex "$T/c2.pem")" != "$(spki_hex "$T/c1.pem")"
refused_with "kur with the same key is refused" "new key" \
    ocmp -cmd kur -cert "$T/c2.pem" -key "$T/k2.pem" -newkey "$T/k2.pem" -trusted "$ROOT" -certout "$T/x.pem"
openssl req -x509 -new -key "$T/k1.pem" -subj /CN=evil -days 1 -out "$T/evil.pem" 2>/dev/null
"$HSMESH" ca init -c "$Y" >/dev/null
refused_with "kur from an unknown certificate is refused" "error|rejection" \
    ocmp -cmd kur -cert "$T/evil.pem" -key "$T/k1.pem" -newkey "$T/k2.pem" -trusted "$ROOT" -certout "$T/x.pem"
# An expired certificate of ours: a 1 s certificate issued offline.
new_csr "$T/short.csr" ec-p256
"$HSMESH" ca issue -c "$Y" --csr "$T/short.csr" --id spiffe://example.org/short --ttl 1s >"$T/short.pem"
sleep 2.2
refused_with "kur from an expired certificate is refused" "StatusString: \"certificate expired\"" \
    ocmp -cmd kur -cert "$T/short.pem" -key "$T/short.csr.key" -newkey "$T/k2.pem" -trusted "$ROOT" -certout "$T/x.pem"

# --- a renewal chain never forks: only its newest certificate renews ---
# serial_of CERT: the ledger's spelling (lower-case hex, no leading zeros)
serial_of() { openssl x509 -in "$1" -noout -serial | cut -d= -f2 | tr 'A-F' 'a-f' | sed 's/^0*//'; }
newkey "$T/k2b.pem"
refused_with "a second kur from the same certificate is refused, naming its renewal" \
    "StatusString: \"certificate already renewed \(superseded by serial $(serial_of "$T/c2.pem")\)\"" \
    ocmp -cmd kur -cert "$T/c1.pem" -key "$T/k1.pem" -newkey "$T/k2b.pem" -trusted "$ROOT" -certout "$T/fork.pem"
check "... and no certificate came of it" test ! -s "$T/fork.pem"
check "audit: that refusal is recorded (op kur, the signer, the reason)" sh -c 'grep "\"event\":\"refused\"" "$1" |
    grep "\"op\":\"kur\"" | grep "\"signer_serial\":\"$2\"" | grep -q "certificate already renewed"' x "$AUDIT" "$(serial_of "$T/c1.pem")"
# Several kur from one certificate at once: the ledger lets exactly one through.
TOKF=$("$HSMESH" ca token -c "$Y" --id spiffe://example.org/fork)
check "enroll the certificate to renew concurrently" quiet ocmp -cmd ir -ref "$(ref "$TOKF")" -secret "pass:$(sec "$TOKF")" \
    -newkey "$T/k1.pem" -subject /CN=x -certout "$T/f0.pem"
KURS=""
for i in 1 2 3 4; do
	newkey "$T/kf$i.pem"
	ocmp -cmd kur -cert "$T/f0.pem" -key "$T/k1.pem" -newkey "$T/kf$i.pem" -trusted "$ROOT" \
	    -certout "$T/f$i.pem" >"$T/f$i.out" 2>&1 &
	KURS="$KURS $!"
done
for p in $KURS; do wait "$p"; done
won=0; lost=0
for i in 1 2 3 4; do
	if [ -s "$T/f$i.pem" ]; then won=$((won + 1)); fi
	if grep -q "certificate already renewed" "$T/f$i.out"; then lost=$((lost + 1)); fi
done
check "4 concurrent kur from one certificate: exactly one renews ($won), the others are refused as renewed ($lost)" \
    sh -c '[ "$1" -eq 1 ] && [ "$2" -eq 3 ]' x "$won" "$lost"
if command -v sqlite3 >/dev/null 2>&1; then
	kids=$(sqlite3 "$DB" "select count(*) from certs where parent_serial = '$(serial_of "$T/f0.pem")'")
	check "the ledger holds one renewal of it ($kids)" test "$kids" -eq 1
else
	ok "# SKIP sqlite3 not installed: renewals not counted"
fi
check "audit: the concurrent refusals are recorded ($(grep -c "certificate already renewed" "$AUDIT") lines)" \
    test "$(grep "\"event\":\"refused\"" "$AUDIT" | grep -c "certificate already renewed")" -ge 4

# --- rr, then kur refused ---
check "rr revokes the current certificate" quiet ocmp -cmd rr -cert "$T/c2.pem" -key "$T/k2.pem" -oldcert "$T/c2.pem" -trusted "$ROOT"
newkey "$T/k3.pem"
refused_with "kur from the revoked certificate is refused" "revoked" \
    ocmp -cmd kur -cert "$T/c2.pem" -key "$T/k2.pem" -newkey "$T/k3.pem" -trusted "$ROOT" -certout "$T/x.pem"
# Whoever holds a revoked (or renewed) certificate's key cannot revoke its replacement.
TOKW=$("$HSMESH" ca token -c "$Y" --id spiffe://example.org/web)
check "a replacement for the revoked certificate enrolls with a new token" quiet ocmp -cmd ir \
    -ref "$(ref "$TOKW")" -secret "pass:$(sec "$TOKW")" -newkey "$T/k3.pem" -subject /CN=x -certout "$T/c4.pem"
refused_with "rr signed by the revoked certificate is refused" "StatusString: \"certificate revoked\"" \
    ocmp -cmd rr -cert "$T/c2.pem" -key "$T/k2.pem" -oldcert "$T/c4.pem" -trusted "$ROOT"
refused_with "rr signed by a renewed certificate is refused" "StatusString: \"certificate already renewed" \
    ocmp -cmd rr -cert "$T/c1.pem" -key "$T/k1.pem" -oldcert "$T/c4.pem" -trusted "$ROOT"
check "audit: both rr refusals are recorded" sh -c 'n=$(grep "\"event\":\"refused\"" "$1" | grep "\"op\":\"rr\"" |
    grep -c "certificate revoked\|certificate already renewed"); [ "$n" -ge 2 ]' x "$AUDIT"
newkey "$T/k4.pem"
check "... and the replacement still renews" quiet ocmp -cmd kur -cert "$T/c4.pem" -key "$T/k3.pem" -newkey "$T/k4.pem" \
    -trusted "$ROOT" -certout "$T/c5.pem"

# --- genm ---
check "genm returns the CA certificates" sh -c 'timeout 30 openssl cmp -server "$1" -path .well-known/cmp -cmd genm \
    -cert "$2" -key "$3" -trusted "$4" 2>&1 | grep -q "id-it-caCerts"' x "$URL" "$T/db.pem" "$T/k1.pem" "$ROOT"

# --- HTTP-level refusals ---
code() { curl -s -o /dev/null -w '%{http_code}' "$@"; }
check "malformed DER: HTTP 400" test "$(code -X POST --data-binary garbage -H 'Content-Type: application/pkixcmp' "http://$URL/.well-known/cmp")" = 400
head -c 400000 /dev/zero >"$T/big"
check "a body over the limit: HTTP 413" test "$(code -X POST --data-binary @"$T/big" -H 'Content-Type: application/pkixcmp' "http://$URL/.well-known/cmp")" = 413
check "an unknown path: HTTP 404" test "$(code -X POST --data-binary x "http://$URL/other")" = 404
check "GET: HTTP 405" test "$(code "http://$URL/.well-known/cmp")" = 405
alive_srv "malformed HTTP"

# --- 200 enrollments from 16 parallel clients ---
i=0
while [ $i -lt 200 ]; do
	"$HSMESH" ca token -c "$Y" --id "spiffe://example.org/load/$i" >"$T/tok.$i" || break
	i=$((i + 1))
done
newkey "$T/kl.pem"
enroll_range() { # FROM TO
	j=$1
	while [ "$j" -lt "$2" ]; do
		t=$(cat "$T/tok.$j")
		timeout 30 openssl cmp -server "$URL" -path .well-known/cmp -cmd ir -ref "${t%%:*}" -secret "pass:${t#*:}" \
		    -newkey "$T/kl.pem" -subject /CN=x -certout "$T/load.$j.pem" >/dev/null 2>&1 || echo "fail $j" >>"$T/loadfail"
		j=$((j + 1))
	done
}
rm -f "$T/loadfail"
LOADERS=""
k=0
while [ $k -lt 16 ]; do
	from=$((k * 200 / 16)); to=$(((k + 1) * 200 / 16))
	enroll_range $from $to &
	LOADERS="$LOADERS $!"
	k=$((k + 1))
done
for p in $LOADERS; do wait "$p"; done
check "200 enrollments from 16 parallel clients all succeed ($(cat "$T/loadfail" 2>/dev/null | wc -l) failed)" test ! -s "$T/loadfail"
ok_certs=0
for j in $(seq 0 199); do
	[ "$(uri_sans "$T/load.$j.pem" 2>/dev/null)" = "spiffe://example.org/load/$j" ] && ok_certs=$((ok_certs + 1))
done
check "each carries its own token's ID ($ok_certs/200)" test "$ok_certs" -eq 200
if command -v sqlite3 >/dev/null 2>&1; then
	used=$(sqlite3 "$DB" "select count(*) from tokens where ref in ($(for j in $(seq 0 199); do printf "'%s'," "$(cut -d: -f1 "$T/tok.$j")"; done | sed 's/,$//')) and used_at is not null")
	issued=$(sqlite3 "$DB" "select count(*) from certs where spiffe_id like 'spiffe://example.org/load/%'")
	check "each token used exactly once: $used used, $issued certificates in the ledger" sh -c '[ "$1" -eq 200 ] && [ "$2" -eq 200 ]' x "$used" "$issued"
else
	ok "# SKIP sqlite3 not installed: ledger count not read"
fi

# --- ca revoke ---
SER=$(openssl x509 -in "$T/db.pem" -noout -serial | cut -d= -f2)
check "ca revoke --serial" quiet "$HSMESH" ca revoke -c "$Y" --serial "$SER"
refused_with "kur from a certificate revoked offline is refused" "revoked" \
    ocmp -cmd kur -cert "$T/db.pem" -key "$T/k1.pem" -newkey "$T/k3.pem" -trusted "$ROOT" -certout "$T/x.pem"
check "ca revoke --id" quiet "$HSMESH" ca revoke -c "$Y" --id spiffe://example.org/load/7
refused_with "kur for a revoked identity is refused" "revoked" \
    ocmp -cmd kur -cert "$T/load.7.pem" -key "$T/kl.pem" -newkey "$T/k3.pem" -trusted "$ROOT" -certout "$T/x.pem"
refuse "ca revoke of an unknown serial fails in one line" "no certificate" "$HSMESH" ca revoke -c "$Y" --serial abcdef
refuse "ca token for an ID outside the trust domain fails in one line" "trust domain" "$HSMESH" ca token -c "$Y" --id spiffe://other.org/x

# --- audit log ---
check "the audit log is one JSON object a line" sh -c '! grep -qv "^{\"time\":\".*\"}$" "$1"' x "$AUDIT"
check "it records issuance, refusal and revocation" sh -c 'grep -q "\"event\":\"issued\"" "$1" && grep -q "\"event\":\"refused\"" "$1" && grep -q "\"event\":\"revoked\"" "$1"' x "$AUDIT"
check "no join-token secret in the audit log" sh -c '! grep -q "$1" "$2"' x "$(sec "$TOK")" "$AUDIT"

kill -TERM "$SRV"
check "SIGTERM stops the server cleanly" wait_exit "$SRV" 10

# --- failure paths of the CA itself ---
echo 9999 >"$T/bad.pin"
sed "s|pin_file: .*|pin_file: $T/bad.pin|" "$Y" >"$T/badpin.yaml"
refuse "ca serve with a wrong PIN fails in one line" "PIN" "$HSMESH" ca serve -c "$T/badpin.yaml"

start_srv() {
	rm -f "$T/port"
	"$HSMESH" ca serve -c "$Y" --port-file "$T/port" 2>>"$T/serve.log" &
	SRV=$!
	track "$SRV"
	for _ in $(seq 100); do [ -s "$T/port" ] && break; sleep 0.05; done
	URL="127.0.0.1:$(cat "$T/port")"
}
start_srv
KH=$(wait_child "$SRV" 5)
# waitlog PATTERN SECS: the serve log shows PATTERN within SECS
waitlog() { _i=0; while [ $_i -lt $(($2 * 10)) ]; do grep -q "$1" "$T/serve.log" && return 0; sleep 0.1; _i=$((_i + 1)); done; return 1; }
# The keyholder dies, and its restart fails while the PIN file is away: the CA answers meanwhile.
mv "$T/cmp.pin" "$T/cmp.pin.away"
kill -9 "$KH"
TOKK=$("$HSMESH" ca token -c "$Y" --id spiffe://example.org/after-crash)
check "the death and the failed restart are logged" waitlog "CA keyholder restart failed" 10
check "... naming the dead keyholder and its signal" grep -q "CA keyholder (pid $KH) exited (signal 9): restarting in" "$T/serve.log"
refused_with "with its keyholder down, ir is refused with a reason the client prints" "systemFailure.*CA keyholder restarting" \
    ocmp -cmd ir -ref "$(ref "$TOKK")" -secret "pass:$(sec "$TOKK")" -newkey "$T/k1.pem" -subject /CN=x -certout "$T/x.pem" \
    -unprotected_errors
check "... and the server keeps answering" test "$(code "http://$URL/other")" = 404
mv "$T/cmp.pin.away" "$T/cmp.pin"
check "once the PIN file is back, the supervisor restarts the keyholder (backoff)" waitlog "CA keyholder restarted" 40
check "the token refused meanwhile enrolls, without restarting ca serve" quiet ocmp -cmd ir \
    -ref "$(ref "$TOKK")" -secret "pass:$(sec "$TOKK")" -newkey "$T/k1.pem" -subject /CN=x -certout "$T/after.pem"
check "... for its own ID" test "$(uri_sans "$T/after.pem")" = spiffe://example.org/after-crash
check "... from the same ca serve process" alive "$SRV"
KH2=$(wait_child "$SRV" 5)
check "a new keyholder runs (pid $KH2, was $KH)" sh -c '[ -n "$1" ] && [ "$1" != "$2" ]' x "$KH2" "$KH"
check "audit: the keyholder's death and restart are recorded" sh -c 'grep -q "\"event\":\"keyholder_died\"" "$1" &&
    grep -q "\"event\":\"keyholder_restarted\"" "$1"' x "$AUDIT"
kill -TERM "$SRV"
check "SIGTERM stops the server cleanly" wait_exit "$SRV" 10
check "... and its keyholder with it" gone "$KH2" 5
done_testing
