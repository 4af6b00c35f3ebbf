#!/bin/sh
# t_ca_attest_grace.sh - attestation.collateral_grace (docs/PROTOCOL.md,
# "Attestation"): SGX collateral past its nextUpdate is refused by default,
# and accepted within collateral_grace, audited with what had expired and
# by how long, and logged. The quotes come from tests/tools/sgx_testpki
# with --days 0 (collateral that expires as it is made); an agent with the
# command producer enrolls by evidence alone.
. "$(dirname "$0")/lib.sh"

TOOL=$(test_tool sgx_testpki) || { not_ok "tests/tools/sgx_testpki is not built next to $HSMESH (make check-build)"; done_testing; exit 1; }
MRS=aa11aa11aa11aa11aa11aa11aa11aa11aa11aa11aa11aa11aa11aa11aa11aa11
AID=spiffe://example.org/sgx/$MRS/3
"$TOOL" init "$T/pki" --mrsigner "$MRS" --prodid 3 --days 0

ca_setup ca ec-p256
check "ca init" quiet "$HSMESH" ca init -c "$T/ca.yaml"
# ca_yaml NAME [extra attestation lines...]
ca_yaml() {
	_cy=$1; shift
	{ cat "$T/ca.yaml"
	  echo "attestation:"
	  echo "  collateral: $T/pki/collateral.json"
	  echo "  insecure_test_root: $T/pki/root.pem"
	  echo "  mrsigner: [$MRS]"
	  echo "  isv_prod_id: 3"
	  for l in "$@"; do echo "  $l"; done
	} >"$T/$_cy.yaml"
}
CA=""
ca_start() { # YAML: (re)start the CA; CAPORT its port
	[ -n "$CA" ] && { kill -TERM "$CA"; wait "$CA" 2>/dev/null; }
	serve_ca "$1" "$T/ca.log"
	CA=$SRV
	CAPORT=$PORT
}
ca_yaml nograce
ca_yaml zero "collateral_grace: 0"
ca_yaml grace "collateral_grace: 1h"
ca_yaml badgrace "collateral_grace: soon"
refuse "a collateral_grace that is no duration is refused in one line" "collateral_grace" \
    "$HSMESH" ca serve -c "$T/badgrace.yaml"
ca_start "$T/nograce.yaml"
check "ca serve starts with expired collateral and no grace" test -n "$CAPORT"
# The CA comes back on the same port with each policy.
yaml_set "$T/zero.yaml" listen "127.0.0.1:$CAPORT"
yaml_set "$T/grace.yaml" listen "127.0.0.1:$CAPORT"

new_token node
printf '1234\n' >"$T/node.pin"
cat >"$T/agent.yaml" <<EOF
token:
  module: $SOFTHSM_MODULE
  uri: "pkcs11:token=node"
  pin_file: $T/node.pin
ca:
  url: http://127.0.0.1:$CAPORT/.well-known/cmp
  root: $T/ca/root.pem
state_dir: $T/state
socket: $T/agent.sock
retry:
  min: 1s
  max: 2s
attestation:
  producer: command
  command: [$TOOL, quote, $T/pki]
workloads:
  - id: $AID
    uid: $(id -u)
EOF
"$HSMESH" agent -c "$T/agent.yaml" 2>"$T/agent.log" &
AG=$!; track $AG
check "without a grace, expired collateral refuses the enrollment (the agent reads why)" \
    wait_in "$T/agent.log" "quote refused at step collateral: .*collateral expired .*collateral_grace 0s" 20
check "audit: refused at the collateral step" \
    sh -c 'grep "\"event\":\"refused\"" "$1" | grep -q "quote refused at step collateral"' x "$T/ca/audit.log"
check "no certificate yet" test ! -e "$T/state/example.org+sgx+$MRS+3/cert.pem"
# "0" is no grace either: still refused.
ca_start "$T/zero.yaml"
more_than() { # FILE PATTERN N SECS: more than N lines match within SECS
	_i=0
	while [ "$_i" -lt $(($4 * 10)) ]; do
		[ "$(grep -cE "$2" "$1")" -gt "$3" ] && return 0
		sleep 0.1; _i=$((_i + 1))
	done
	return 1
}
n=$(grep -c "quote refused at step collateral" "$T/ca/audit.log")
check "collateral_grace: 0 is no grace: refused again ($n refusals before)" \
    more_than "$T/ca/audit.log" "quote refused at step collateral" "$n" 10
check "... and still no certificate" test ! -e "$T/state/example.org+sgx+$MRS+3/cert.pem"
# Within an hour's grace: accepted, audited, logged.
ca_start "$T/grace.yaml"
check "the CA log describes the grace" wait_in "$T/ca.log" "expired collateral accepted for 3600 s" 5
check "within collateral_grace the agent enrolls by evidence" wait_in "$T/agent.log" "$AID: enrolled certificate serial" 30
check "audit: attested with what had expired, by how long, and when" \
    sh -c 'grep "\"event\":\"attested\"" "$1" | grep "\"collateral_expired_by\":\"[0-9]*\"" |
    grep "\"collateral_expired_items\":\"[a-z_ ,]*tcb_info" | grep -q "\"collateral_expiry\":\"20[0-9-]*T"' x "$T/ca/audit.log"
check "the CA logs a warning to refresh the collateral" \
    wait_in "$T/ca.log" "warning: attestation: collateral .* expired [0-9]+ s ago .*accepted within collateral_grace 3600 s: refresh it" 2
kill -TERM "$AG"; wait_exit "$AG" 10
kill -TERM "$CA"; wait_exit "$CA" 10
done_testing
