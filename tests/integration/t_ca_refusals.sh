# ASAN=yes
# t_ca_refusals.sh HSMESH - issue 2 failure paths: every bad input to
# `hsmesh ca init` / `hsmesh ca issue` is refused with a non-zero exit and
# exactly one line on stderr, prints no certificate, and a wrong PIN never
# locks the token.
. "$(dirname "$0")/lib.sh"

TD=example.org
ca_setup ca ec-p256
Y=$T/ca.yaml
ROOT=$T/ca/root.pem
new_csr "$T/good.csr" ec-p256 good
GOOD=spiffe://$TD/ns/a/sa/b

# Before ca init there is no CA key to sign with.
refuse "ca issue before ca init is refused" 'init|root|key|not found|no ca|missing|exist' \
    "$HSMESH" ca issue -c "$Y" --csr "$T/good.csr" --id "$GOOD"

check "ca init exits 0" quiet "$HSMESH" ca init -c "$Y"
check "sanity: a good request is issued" sh -c '"$1" ca issue -c "$2" --csr "$3" --id "$4" >"$5" && openssl verify -CAfile "$6" "$5" >/dev/null' \
    x "$HSMESH" "$Y" "$T/good.csr" "$GOOD" "$T/good.pem" "$ROOT"

# refuse_issue DESC PATTERN [issue args...]: ca issue refused and no PEM on stdout
refuse_issue() {
	_d=$1 _p=$2; shift 2
	refuse "$_d" "$_p" "$HSMESH" ca issue "$@"
	if [ -s "$T/out" ]; then not_ok "$_d: nothing on stdout (got $(wc -c <"$T/out") bytes)"; fi
}

# ---- CSRs ---------------------------------------------------------------------
corrupt_csr_sig "$T/good.csr" "$T/badsig.csr"
check "sanity: the corrupted CSR still parses" openssl req -in "$T/badsig.csr" -noout
check "sanity: OpenSSL finds its signature wrong" sh -c 'openssl req -in "$1" -noout -verify 2>&1 | grep -q failure' x "$T/badsig.csr"
refuse_issue "CSR with a wrong signature (EC) is refused" 'signature|verif|proof|possession' \
    -c "$Y" --csr "$T/badsig.csr" --id "$GOOD"
new_csr "$T/rsa.csr" rsa-2048 rsa
corrupt_csr_sig "$T/rsa.csr" "$T/badsig-rsa.csr"
refuse_issue "CSR with a wrong signature (RSA) is refused" 'signature|verif|proof|possession' \
    -c "$Y" --csr "$T/badsig-rsa.csr" --id "$GOOD"
refuse_issue "missing CSR file is refused" 'csr|no such|not found|open|read|exist' \
    -c "$Y" --csr "$T/nonexistent.csr" --id "$GOOD"
printf -- '-----BEGIN CERTIFICATE REQUEST-----\nAAAAAAAA\n-----END CERTIFICATE REQUEST-----\n' >"$T/junk.csr"
refuse_issue "CSR file with garbage is refused" 'csr|request|parse|decode|invalid|pem|der' \
    -c "$Y" --csr "$T/junk.csr" --id "$GOOD"
: >"$T/empty.csr"
refuse_issue "empty CSR file is refused" 'csr|request|parse|decode|invalid|empty|pem|der' \
    -c "$Y" --csr "$T/empty.csr" --id "$GOOD"
# A CSR with a weak key (RSA-1024) should not be certified.
openssl req -new -newkey rsa:1024 -nodes -keyout "$T/weak.key" -subj /CN=weak -out "$T/weak.csr" 2>/dev/null
refuse_issue "CSR with an RSA-1024 key is refused (beyond contract)" 'key|weak|size|small|rsa|bits|unsupported' \
    -c "$Y" --csr "$T/weak.csr" --id "$GOOD"

# ---- SPIFFE IDs -----------------------------------------------------------------
refuse_issue "ID outside the trust domain (spiffe://other.org/x) is refused" 'trust.?domain|other\.org|example\.org|domain' \
    -c "$Y" --csr "$T/good.csr" --id spiffe://other.org/x
refuse_issue "ID in a sub-domain (spiffe://a.example.org/x) is refused" 'trust.?domain|domain|example\.org' \
    -c "$Y" --csr "$T/good.csr" --id spiffe://a.example.org/x
for bad in 'spiffe://example.org/../x' 'spiffe://Example.org/x' 'spiffe://example.org/x?q=1' \
    'spiffe://example.org/x#f' 'http://example.org/x' 'spiffe://example.org/a//b'; do
	refuse_issue "malformed ID $bad is refused" 'spiffe|id|invalid|malformed|trust.?domain|path|scheme|query|fragment|segment|character|lower' \
	    -c "$Y" --csr "$T/good.csr" --id "$bad"
done
# More SPIFFE spec violations (beyond the listed ones).
for bad in 'spiffe://example.org/./x' 'spiffe://example.org/x/' 'spiffe://example.org' 'spiffe://example.org/' \
    'spiffe://u@example.org/x' 'spiffe://example.org:8443/x' 'SPIFFE://example.org/x' 'spiffe://example.org/x%41' \
    'spiffe://example.org/a b' 'spiffe:///x' ''; do
	refuse_issue "malformed ID '$bad' is refused (SPIFFE spec, beyond contract)" 'spiffe|id|invalid|malformed|trust.?domain|path|scheme|segment|character|empty|port|user|lower|domain' \
	    -c "$Y" --csr "$T/good.csr" --id "$bad"
done

# ---- TTLs -------------------------------------------------------------------------
refuse_issue "--ttl 48h over max_ttl 24h is refused" 'ttl|max|exceed|long' \
    -c "$Y" --csr "$T/good.csr" --id "$GOOD" --ttl 48h
refuse_issue "--ttl 2d over max_ttl 24h is refused" 'ttl|max|exceed|long' \
    -c "$Y" --csr "$T/good.csr" --id "$GOOD" --ttl 2d
refuse_issue "--ttl 25h over max_ttl 24h is refused" 'ttl|max|exceed|long' \
    -c "$Y" --csr "$T/good.csr" --id "$GOOD" --ttl 25h
for bad in abc 0 -1h 1x 1h30 ''; do
	refuse_issue "malformed --ttl '$bad' is refused" 'ttl|duration|invalid|positive|zero|unit' \
	    -c "$Y" --csr "$T/good.csr" --id "$GOOD" --ttl "$bad"
done

# ---- configuration -----------------------------------------------------------------
# bad_yaml NAME SED-EXPR: a copy of ca.yaml changed by sed
bad_yaml() { sed "$2" "$Y" >"$T/$1.yaml"; }

printf '9999\n' >"$T/wrong.pin"
bad_yaml wrongpin "s|^  pin_file:.*|  pin_file: $T/wrong.pin|"
refuse_issue "ca issue with a wrong PIN is refused" 'pin|login|incorrect' -c "$T/wrongpin.yaml" --csr "$T/good.csr" --id "$GOOD"
refuse "ca init with a wrong PIN is refused" 'pin|login|incorrect' "$HSMESH" ca init -c "$T/wrongpin.yaml"
check "... the message does not reveal the PIN" sh -c '! grep -q 9999 "$1"' x "$T/err"

bad_yaml nomod "s|^  module:.*|  module: /nonexistent/lib.so|"
refuse_issue "ca issue with a missing module is refused" 'module|nonexistent|load|no such|not found' -c "$T/nomod.yaml" --csr "$T/good.csr" --id "$GOOD"
refuse "ca init with a missing module is refused" 'module|nonexistent|load|no such|not found' "$HSMESH" ca init -c "$T/nomod.yaml"
bad_yaml notmod "s|^  module:.*|  module: /usr/lib/x86_64-linux-gnu/libyaml-0.so.2|"
refuse "ca init with a library that is not a PKCS#11 module is refused" 'module|pkcs|C_GetFunctionList|load|symbol|allow' "$HSMESH" ca init -c "$T/notmod.yaml"

bad_yaml notok 's|^  uri:.*|  uri: "pkcs11:token=nosuch"|'
refuse_issue "ca issue with an absent token is refused" 'token|nosuch|not found|no such' -c "$T/notok.yaml" --csr "$T/good.csr" --id "$GOOD"
refuse "ca init with an absent token is refused" 'token|nosuch|not found|no such' "$HSMESH" ca init -c "$T/notok.yaml"
bad_yaml baduri 's|^  uri:.*|  uri: "token=ca"|'
refuse "ca init with a token.uri that is not a pkcs11: URI is refused" 'uri|pkcs11' "$HSMESH" ca init -c "$T/baduri.yaml"

cp "$Y" "$T/unknown.yaml"; echo 'bogus_key: 1' >>"$T/unknown.yaml"
refuse_issue "ca issue with an unknown config key is refused" 'bogus_key|unknown|config|yaml' -c "$T/unknown.yaml" --csr "$T/good.csr" --id "$GOOD"
refuse "ca init with an unknown config key is refused" 'bogus_key|unknown|config|yaml' "$HSMESH" ca init -c "$T/unknown.yaml"
bad_yaml unknown2 's|^  type: ec-p256|  type: ec-p256\n  colour: blue|'
refuse "ca init with an unknown nested key (key.colour) is refused" 'colour|unknown|config|yaml' "$HSMESH" ca init -c "$T/unknown2.yaml"
printf 'trust_domain: [example.org\n  : : :\n\t- x\n' >"$T/garbage.yaml"
refuse "ca init with a YAML syntax error is refused" 'yaml|parse|syntax|config|line' "$HSMESH" ca init -c "$T/garbage.yaml"
refuse "ca init with a missing config file is refused" 'no such|not found|open|config|read' "$HSMESH" ca init -c "$T/nonexistent.yaml"
bad_yaml badtype 's|^  type: ec-p256|  type: ec-p521|'
refuse "ca init with key.type ec-p521 is refused" 'type|ec-p521|key|unsupported' "$HSMESH" ca init -c "$T/badtype.yaml"
bad_yaml nopin "s|^  pin_file:.*|  pin_file: $T/nonexistent.pin|"
refuse "ca init with a missing pin_file is refused" 'pin|no such|not found|open|read' "$HSMESH" ca init -c "$T/nopin.yaml"
bad_yaml badtd 's|^trust_domain:.*|trust_domain: Example.org/x|'
refuse "ca init with a malformed trust_domain is refused" 'trust.?domain|domain|invalid' "$HSMESH" ca init -c "$T/badtd.yaml"
bad_yaml badmax 's|^max_ttl:.*|max_ttl: forever|'
refuse "ca init with a malformed max_ttl is refused" 'ttl|duration|invalid' "$HSMESH" ca init -c "$T/badmax.yaml"
bad_yaml notd '/^trust_domain:/d'
refuse "ca init without trust_domain is refused" 'trust.?domain|missing|required' "$HSMESH" ca init -c "$T/notd.yaml"
check "the refused inits did not change root.pem" quiet openssl verify -CAfile "$ROOT" "$T/good.pem"

# A root.pem whose key is not in the token (another CA's) is not silently replaced or used.
ca_setup other ec-p256
quiet "$HSMESH" ca init -c "$T/other.yaml"
cp "$ROOT" "$T/root.saved"
cp "$T/other/root.pem" "$ROOT"
refuse "ca init with a root.pem whose key is not in the token is refused" 'root|key|token|match' "$HSMESH" ca init -c "$Y"
check "... and leaves that root.pem alone" cmp -s "$ROOT" "$T/other/root.pem"
refuse_issue "ca issue with a root.pem whose key is not in the token is refused" 'root|key|token|match' \
    -c "$Y" --csr "$T/good.csr" --id "$GOOD"
printf 'garbage\n' >"$ROOT"
refuse "ca init with a garbage root.pem is refused" 'root|certificate|parse|pem' "$HSMESH" ca init -c "$Y"
refuse_issue "ca issue with a garbage root.pem is refused" 'root|certificate|parse|pem' -c "$Y" --csr "$T/good.csr" --id "$GOOD"
cp "$T/root.saved" "$ROOT"

# ---- a wrong PIN never locks the token ------------------------------------------------------
i=0; fails=0
while [ $i -lt 12 ]; do
	"$HSMESH" ca issue -c "$T/wrongpin.yaml" --csr "$T/good.csr" --id "$GOOD" >/dev/null 2>&1 && fails=$((fails + 1))
	i=$((i + 1))
done
check "12 more wrong-PIN runs all failed" test $fails -eq 0
check "the token is not locked: pkcs11-tool logs in with the right PIN" \
    sh -c 'pkcs11-tool --module "$1" --token-label ca --login --pin 1234 --list-objects >/dev/null 2>&1' x "$SOFTHSM_MODULE"
check "after 12 wrong-PIN runs ca init with the right PIN succeeds" quiet "$HSMESH" ca init -c "$Y"
check "... and ca issue with the right PIN succeeds" sh -c '"$1" ca issue -c "$2" --csr "$3" --id "$4" >"$5" && openssl verify -CAfile "$6" "$5" >/dev/null' \
    x "$HSMESH" "$Y" "$T/good.csr" "$GOOD" "$T/good2.pem" "$ROOT"
i=0
while [ $i -lt 12 ]; do "$HSMESH" ca init -c "$T/wrongpin.yaml" >/dev/null 2>&1; i=$((i + 1)); done
check "after 12 wrong-PIN ca init runs the right PIN still works" quiet "$HSMESH" ca init -c "$Y"

# ---- usage ----------------------------------------------------------------------------------
for a in "ca" "ca bogus" "ca issue -c $Y --csr $T/good.csr" "ca issue -c $Y --id $GOOD" "ca init"; do
	# shellcheck disable=SC2086
	"$HSMESH" $a >/dev/null 2>&1; rc=$?
	check "'hsmesh $a' exits non-zero (rc $rc)" test $rc -ne 0
done
check "'hsmesh ca --help' exits 0" sh -c '"$1" ca --help >/dev/null' x "$HSMESH"

done_testing
