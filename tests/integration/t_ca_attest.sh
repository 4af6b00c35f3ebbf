# ASAN=yes
# t_ca_attest.sh HSMESH - enrollment bound to SGX attestation evidence
# (issue 6, item 3 and 4): the CA's `attestation:` policy, the agent's
# evidence producers, the nonce round trip and the quote-to-key binding.
#
# Quotes come from tests/tools/sgx_testpki, a test quoting enclave under a
# test root (the CA trusts it through `insecure_test_root`). Covered: an
# agent enrolls by evidence alone (unprotected ir) and its certificate names
# the measured identity; renewal (kur) carries a fresh quote; a quote for
# another key (file producer, and the Gramine interface played by a
# directory) is refused; a quote under another root, a
# debug enclave, an OutOfDate TCB, a not-allowed MRSIGNER are refused with
# the reason; a producer that fails or hangs, and a CA that is down, fail
# the attempt with the reason; a request without evidence is refused; `require: true` refuses
# a join-token request without a quote and keeps the token; a join token
# plus a quote enrolls the token's ID; every decision is in the audit log.
. "$(dirname "$0")/lib.sh"

# The test quoting enclave, in the build directory.
TOOL=$(test_tool sgx_testpki)
if [ ! -x "$TOOL" ]; then
	not_ok "tests/tools/sgx_testpki is not built next to $HSMESH (make check-build)"
	done_testing; exit
fi
MRS=aa11aa11aa11aa11aa11aa11aa11aa11aa11aa11aa11aa11aa11aa11aa11aa11
MRS2=bb22bb22bb22bb22bb22bb22bb22bb22bb22bb22bb22bb22bb22bb22bb22bb22
MRE=ce0ce0ce0ce0ce0ce0ce0ce0ce0ce0ce0ce0ce0ce0ce0ce0ce0ce0ce0ce0ce0c
ME=$(id -u)
AID=spiffe://example.org/sgx/$MRS/3

"$TOOL" init "$T/pki" --mrsigner "$MRS" --mrenclave "$MRE" --prodid 3 --isvsvn 2
"$TOOL" init "$T/pki-other-root" --mrsigner "$MRS" --prodid 3
"$TOOL" init "$T/pki-debug" --mrsigner "$MRS" --prodid 3 --debug
"$TOOL" init "$T/pki-old" --mrsigner "$MRS" --prodid 3 --tcb OutOfDate
"$TOOL" init "$T/pki-signer2" --mrsigner "$MRS2" --prodid 3

# ---- the CA: one token and state, several ca.yaml differing only in attestation ----
ca_setup ca ec-p256
yaml_set "$T/ca.yaml" svid_ttl 16s
check "ca init" quiet "$HSMESH" ca init -c "$T/ca.yaml"
# ca_yaml NAME PKI [extra attestation lines...]: $T/NAME.yaml trusting PKI's root
ca_yaml() {
	_cy=$1; _p=$2; shift 2
	{ cat "$T/ca.yaml"
	  echo "attestation:"
	  echo "  collateral: $_p/collateral.json"
	  echo "  insecure_test_root: $_p/root.pem"
	  echo "  mrsigner: [$MRS]"
	  echo "  isv_prod_id: 3"
	  for l in "$@"; do echo "  $l"; done
	} >"$T/$_cy.yaml"
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
CA=""
# ca_start YAML: (re)start the CA with that config; CAPORT is its port
ca_start() {
	[ -n "$CA" ] && { kill -TERM "$CA"; wait "$CA" 2>/dev/null; }
	rm -f "$T/ca.port"
	"$HSMESH" ca serve -c "$1" --port-file "$T/ca.port" 2>>"$T/ca.log" &
	CA=$!; track $CA
	for _ in $(seq 200); do [ -s "$T/ca.port" ] && break; sleep 0.05; done
	CAPORT=$(cat "$T/ca.port")
}
ca_yaml attest "$T/pki"
ca_start "$T/attest.yaml"
check "ca serve starts with an attestation policy" test -n "$CAPORT"
check "the CA log warns about the insecure test root" wait_in "$T/ca.log" "INSECURE test root" 5

# ---- bad policies are refused at start, one line ----
ca_yaml bad1 "$T/pki"
sed -i "/mrsigner:/d" "$T/bad1.yaml"
refuse "a policy allowing any enclave is refused" "needs a list of allowed mrsigner or mrenclave" \
    "$HSMESH" ca serve -c "$T/bad1.yaml"
ca_yaml bad2 "$T/pki" "tcb_status: [Revoked]"
refuse "accepting a Revoked TCB is refused" "Revoked TCB is never accepted" \
    "$HSMESH" ca serve -c "$T/bad2.yaml"
ca_yaml bad3 "$T/pki"
sed -i "s|collateral: .*|collateral: $T/nonexistent.json|" "$T/bad3.yaml"
refuse "missing collateral is refused" "attestation.collateral" "$HSMESH" ca serve -c "$T/bad3.yaml"

# ---- the agent: evidence only, no join token ----
printf '1234\n' >"$T/node.pin"
new_token node
# agent_yaml FILE STATE ID PRODUCER-LINES [JOIN_TOKEN_FILE]
agent_yaml() {
	cat >"$1" <<EOF
token:
  module: $SOFTHSM_MODULE
  uri: "pkcs11:token=node"
  pin_file: $T/node.pin
ca:
  url: http://127.0.0.1:$CAPORT/.well-known/cmp
  root: $T/ca/root.pem
state_dir: $T/$2
socket: $T/$2.sock
retry:
  min: 1s
  max: 2s
attestation:
$4
workloads:
  - id: $3
    uid: $ME
EOF
	[ -n "$5" ] && echo "    join_token_file: $5" >>"$1"
	return 0
}
AG=""
agent_run() { # YAML LOG
	"$HSMESH" agent -c "$1" 2>"$2" &
	AG=$!; track $AG
}
agent_stop() { [ -n "$AG" ] && { kill -TERM "$AG"; wait "$AG" 2>/dev/null; AG=""; }; return 0; }

agent_yaml "$T/a1.yaml" s1 "$AID" "  producer: command
  command: [$TOOL, quote, $T/pki]"
agent_run "$T/a1.yaml" "$T/a1.log"
check "evidence alone: the agent enrolls" wait_in "$T/a1.log" "$AID: enrolled certificate serial" 20
C1=$T/s1/example.org+sgx+$MRS+3/cert.pem
check "the certificate names the measured identity ($AID)" \
    sh -c '[ "$(openssl x509 -in "$1" -noout -ext subjectAltName | grep -o "URI:[^, ]*")" = "URI:$2" ]' x "$C1" "$AID"
check "the certificate records the measurements (hsmesh inspect: sgx identity)" \
    sh -c '"$1" inspect "$2" | grep -E "^sgx identity: +MRENCLAVE $3, MRSIGNER $4, ISV product 3, SVN 2, production enclave, TCB UpToDate$"' \
    x "$HSMESH" "$C1" "$MRE" "$MRS"
check "the agent asked for a nonce and made a quote" \
    grep -qE "byte quote from the command evidence producer" "$T/a1.log"
check "audit: attested, with MRENCLAVE, MRSIGNER, product, SVN and TCB status" \
    sh -c 'grep "\"event\":\"attested\"" "$1" | grep "\"op\":\"ir\"" | grep "\"mrenclave\":\"$2\"" |
    grep "\"mrsigner\":\"$3\"" | grep "\"isv_prod_id\":\"3\"" | grep "\"isv_svn\":\"2\"" |
    grep -q "\"tcb_status\":\"UpToDate\""' x "$T/ca/audit.log" "$MRE" "$MRS"
check "ledger: issued by evidence (auth sgx:MRENCLAVE prefix)" \
    sh -c '[ "$(sqlite3 "$1" "select count(*) from certs where spiffe_id = '"'"'$2'"'"' and auth = '"'"'sgx:$3'"'"'")" -ge 1 ]' \
    x "$T/ca/ledger.db" "$AID" "$(echo "$MRE" | cut -c1-16)"
check "renewal (kur) carries a fresh quote and rotates the key" \
    wait_in "$T/a1.log" "$AID: rotated certificate serial" 25
check "audit: the kur was attested too" \
    sh -c 'grep "\"event\":\"attested\"" "$1" | grep -q "\"op\":\"kur\""' x "$T/ca/audit.log"
agent_stop

# ---- refusals, each with its reason, through the real agent ----
# agent_refused NAME PRODUCER-LINES PATTERN DESC
agent_refused() {
	agent_yaml "$T/$1.yaml" "$1" "$AID" "$2"
	agent_run "$T/$1.yaml" "$T/$1.log"
	check "$4" wait_in "$T/$1.log" "enrollment failed \(CA refused: .*$3" 20
	agent_stop
}
# A genuine quote, made for other report data: not bound to the agent's key.
printf '%0128d\n' 0 | "$TOOL" quote "$T/pki" >"$T/stale.quote"
agent_refused fixed "  producer: file
  path: $T/stale.quote" "report data does not match" \
    "a quote for another key (file producer) is refused: report data does not match"
# Gramine's interface, played by a plain directory: the agent writes the report
# data to user_report_data and reads quote (here the stale one again).
mkdir "$T/devatt"; cp "$T/stale.quote" "$T/devatt/quote"; : >"$T/devatt/user_report_data"
agent_refused gram "  producer: gramine
  path: $T/devatt" "report data does not match" \
    "gramine producer: writes user_report_data, reads quote (refused: a stale quote)"
check "gramine producer: user_report_data is SHA-256(new key SPKI) || a 32-byte nonce" \
    sh -c '[ "$(wc -c <"$1/user_report_data")" -eq 64 ] &&
    grep -q "generated ec-p256 key $(od -An -tx1 -N32 "$1/user_report_data" | tr -d " \n")" "$2"' \
    x "$T/devatt" "$T/gram.log"
check "audit: that refusal is recorded with the measured values" \
    sh -c 'grep "\"event\":\"refused\"" "$1" | grep "report data does not match" | grep -q "\"mrenclave\":\"$2\""' \
    x "$T/ca/audit.log" "$MRE"
agent_refused root "  producer: command
  command: [$TOOL, quote, $T/pki-other-root]" "quote refused at step pck_chain" \
    "a quote under another root is refused at pck_chain"
ca_yaml attest-debug "$T/pki-debug"
ca_start "$T/attest-debug.yaml"
agent_refused dbg "  producer: command
  command: [$TOOL, quote, $T/pki-debug]" "debug enclave refused" "a debug enclave is refused"
ca_yaml attest-old "$T/pki-old"
ca_start "$T/attest-old.yaml"
agent_refused old "  producer: command
  command: [$TOOL, quote, $T/pki-old]" "TCB status OutOfDate not accepted" "an OutOfDate TCB is refused"
check "audit: the OutOfDate refusal names the advisories" \
    sh -c 'grep "OutOfDate not accepted" "$1" | grep -q "\"advisories\":\"INTEL-SA-"' x "$T/ca/audit.log"
ca_yaml attest-s2 "$T/pki-signer2"
ca_start "$T/attest-s2.yaml"
agent_refused s2 "  producer: command
  command: [$TOOL, quote, $T/pki-signer2]" "MRSIGNER not allowed" "an enclave of another signer is refused"
agent_yaml "$T/cf.yaml" cf "$AID" "  producer: command
  command: [/bin/false]"
agent_run "$T/cf.yaml" "$T/cf.log"
check "a failing evidence producer: enrollment fails with its reason and is retried" \
    wait_in "$T/cf.log" "enrollment failed \(evidence: /bin/false exited with status 1\)" 20
agent_stop

agent_yaml "$T/hang.yaml" hang "$AID" "  producer: command
  command: [sleep, '30']
  timeout: 1s"
agent_run "$T/hang.yaml" "$T/hang.log"
check "a producer that hangs is stopped after its timeout and the attempt retried" \
    wait_in "$T/hang.log" "enrollment failed \(evidence: sleep gave no quote within 1s\)" 20
check "...and the agent still serves its socket" test -S "$T/hang.sock"
agent_stop
agent_yaml "$T/linger.yaml" linger "$AID" "  producer: command
  command: [sh, -c, \"printf x; exec >&-; sleep 30\"]
  timeout: 1s"
agent_run "$T/linger.yaml" "$T/linger.log"
check "a producer that closes its output but does not exit is stopped too" \
    wait_in "$T/linger.log" "enrollment failed \(evidence: sh did not exit within 1s\)" 20
agent_stop
# The CA down: the nonce cannot be fetched; the agent says so and keeps trying.
kill -TERM "$CA"; wait "$CA" 2>/dev/null; CA=""
agent_yaml "$T/down.yaml" down "$AID" "  producer: command
  command: [$TOOL, quote, $T/pki]"
agent_run "$T/down.yaml" "$T/down.log"
check "the CA down: enrollment fails asking for the nonce, retried with backoff" \
    wait_in "$T/down.log" "CA unreachable: asking the CA for an attestation nonce" 20
agent_stop

# ---- requests without evidence (the real openssl cmp client) ----
ca_yaml attest-req "$T/pki" "require: true"
ca_start "$T/attest-req.yaml"
new_csr "$T/w.csr" ec-p256
"$HSMESH" ca token -c "$T/ca.yaml" --id spiffe://example.org/web >"$T/web.tok"
REF=$(cut -d: -f1 "$T/web.tok"); SEC=$(cut -d: -f2 "$T/web.tok")
cmp_ir() { # extra openssl cmp args...
	openssl cmp -cmd ir -server "127.0.0.1:$CAPORT" -path /.well-known/cmp \
	    -trusted "$T/ca/root.pem" -csr "$T/w.csr" -newkey "$T/w.csr.key" \
	    -certout "$T/w.pem" "$@"
}
if cmp_ir -unprotected_requests -subject /CN=w >"$T/unp.out" 2>&1; then
	not_ok "an unprotected ir without evidence is refused (succeeded)"
else
	check "an unprotected ir without evidence is refused" \
	    grep -q "needs a join token (MAC) or attestation evidence" "$T/unp.out"
fi
check "audit: no-evidence refusal recorded" grep -q '"reason":"no attestation evidence"' "$T/ca/audit.log"
if cmp_ir -ref "$REF" -secret "pass:$SEC" >"$T/req.out" 2>&1; then
	not_ok "require: true refuses a join-token ir without a quote (succeeded)"
else
	check "require: true refuses a join-token ir without a quote" grep -q "attestation evidence required" "$T/req.out"
fi
ca_start "$T/attest.yaml"
check "...and the token was not consumed: it enrolls where evidence is optional" \
    cmp_ir -ref "$REF" -secret "pass:$SEC"
check "...for the token's ID" sh -c 'openssl x509 -in "$1" -noout -ext subjectAltName | grep -q "URI:spiffe://example.org/web"' x "$T/w.pem"

# ---- join token plus evidence: the token's ID, both recorded ----
"$HSMESH" ca token -c "$T/ca.yaml" --id spiffe://example.org/db >"$T/db.tok"
agent_yaml "$T/tk.yaml" tk spiffe://example.org/db "  producer: command
  command: [$TOOL, quote, $T/pki]" "$T/db.tok"
agent_run "$T/tk.yaml" "$T/tk.log"
check "join token plus evidence: enrolls the token's ID" \
    wait_in "$T/tk.log" "spiffe://example.org/db: enrolled certificate serial" 20
agent_stop
check "join token plus evidence: the certificate records the measurements too" \
    sh -c '"$1" inspect "$2" | grep -q "^sgx identity: .*MRENCLAVE $3"' x "$HSMESH" "$T/tk/example.org+db/cert.pem" "$MRE"
check "a join token alone: no sgx identity in the certificate" \
    sh -c '! "$1" inspect "$2" | grep -q "sgx identity"' x "$HSMESH" "$T/w.pem"
check "ledger: auth records the token and the evidence" \
    sh -c '[ "$(sqlite3 "$1" "select count(*) from certs where spiffe_id = '"'"'spiffe://example.org/db'"'"' and auth like '"'"'token:%,sgx:%'"'"'")" -eq 1 ]' \
    x "$T/ca/ledger.db"

# ---- the CA survived all of it ----
check "the CA is still serving" kill -0 "$CA"
kill -TERM "$CA"; wait_exit "$CA" 5
done_testing
