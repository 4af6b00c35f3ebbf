#!/bin/sh
# ASAN=yes
# t_inspect_quote.sh - `hsmesh inspect QUOTE --collateral ... [--at TIME]` on
# the real SGX quotes under shared/testdata/sgx and on tampered copies.
. "$(dirname "$0")/lib.sh"
S=${HSMESH_SHARED:-${HSMESH_ROOT:-$(cd "$(dirname "$0")/../.." && pwd)}/../shared}/testdata/sgx
P=$S/phala-dcap-qvl
AT=2025-07-19T10:01:17Z

"$HSMESH" inspect "$P/sgx_quote" --collateral "$P/sgx_quote_collateral.json" --at $AT >"$T/ok.txt" 2>&1
check "the real quote verifies at its collateral's date" grep -q "^verdict *verified" "$T/ok.txt"
check "... with TCB status ConfigurationAndSWHardeningNeeded" grep -q "^tcb status *ConfigurationAndSWHardeningNeeded" "$T/ok.txt"
check "... advisories INTEL-SA-00289, INTEL-SA-00615" grep -q "INTEL-SA-00289,INTEL-SA-00615" "$T/ok.txt"
check "... and prints MRENCLAVE, MRSIGNER and the report data" sh -c 'grep -q "^mrenclave *[0-9a-f]\{64\}" "$1" && grep -q "^mrsigner" "$1" && grep -q "^report data" "$1"' x "$T/ok.txt"
refuse "at today's date it is refused: collateral expired" "step collateral.*expired" \
    "$HSMESH" inspect "$P/sgx_quote" --collateral "$P/sgx_quote_collateral.json"

# Tampered copies: one byte of the report data (offset 48 + 320), truncation.
cp "$P/sgx_quote" "$T/flip.q"
b=$(od -An -tu1 -j 368 -N1 "$T/flip.q" | tr -d ' ')
printf "\\$(printf %o $((b ^ 1)))" | dd of="$T/flip.q" bs=1 seek=368 conv=notrunc 2>/dev/null
refuse "flipped report data is refused at the quote signature" "step quote_sig" \
    "$HSMESH" inspect "$T/flip.q" --collateral "$P/sgx_quote_collateral.json" --at $AT
head -c 600 "$P/sgx_quote" >"$T/short.q"
refuse "a truncated quote is refused naming the field" "quote|signature data" \
    "$HSMESH" inspect "$T/short.q" --collateral "$P/sgx_quote_collateral.json" --at $AT
refuse "a bad --at is refused" "YYYY" "$HSMESH" inspect "$P/sgx_quote" --collateral "$P/sgx_quote_collateral.json" --at yesterday

I=$S/intel-qvl-sample
refuse "Intel's synthetic sample is refused against the built-in production root" "step pck_chain" \
    "$HSMESH" inspect "$I/quote.dat" --collateral "$I" --at 2025-01-01T00:00:00Z
"$HSMESH" inspect "$I/quote.dat" --collateral "$I" --insecure-test-root "$I/trustedRootCaCert.pem" \
    --at 2025-01-01T00:00:00Z >"$T/intel.txt" 2>&1
check "... and verifies UpToDate with its test root passed explicitly as insecure" \
    sh -c 'grep -q "^tcb status *UpToDate" "$1" && grep -q "INSECURE test root" "$1"' x "$T/intel.txt"
done_testing
