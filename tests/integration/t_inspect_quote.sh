#!/bin/sh
# ASAN=yes
# t_inspect_quote.sh - `hsmesh inspect QUOTE --collateral ... [--at TIME]` on
# the real SGX quotes under tests/testdata/sgx and on tampered copies.
. "$(dirname "$0")/lib.sh"
S=${HSMESH_SHARED:-${HSMESH_ROOT:-$(cd "$(dirname "$0")/../.." && pwd)}/tests}/testdata/sgx
P=$S/phala-dcap-qvl
AT=2025-07-19T10:01:17Z

"$HSMESH" inspect "$P/sgx_quote" --collateral "$P/sgx_quote_collateral.json" --at $AT >"$T/ok.txt" 2>&1
check "the real quote verifies at its collateral's date" grep -q "^verdict *verified" "$T/ok.txt"
check "... with TCB status ConfigurationAndSWHardeningNeeded" grep -q "^tcb status *ConfigurationAndSWHardeningNeeded" "$T/ok.txt"
check "... advisories INTEL-SA-00289, INTEL-SA-00615" grep -q "INTEL-SA-00289,INTEL-SA-00615" "$T/ok.txt"
check "... and prints MRENCLAVE, MRSIGNER and the report data" sh -c 'grep -q "^mrenclave *[0-9a-f]\{64\}" "$1" && grep -q "^mrsigner" "$1" && grep -q "^report data" "$1"' x "$T/ok.txt"
refuse "at today's date it is refused: collateral expired" "step collateral.*expired" \
    "$HSMESH" inspect "$P/sgx_quote" --collateral "$P/sgx_quote_collateral.json"
# Expired collateral: a day past the earliest nextUpdate (2025-07-19T10:01:18Z).
DAY1=2025-07-20T10:01:18Z
refuse "a day past nextUpdate it is refused by default, naming the item and how long ago" \
    "step collateral: qe_identity: collateral expired \\(nextUpdate 2025-07-19T10:01:18Z, 1d 0h 0m 0s before.*collateral_grace 0s" \
    "$HSMESH" inspect "$P/sgx_quote" --collateral "$P/sgx_quote_collateral.json" --at $DAY1
refuse "... and with --collateral-grace 1d (a grace covers less than its length)" "collateral_grace 1d 0h 0m 0s" \
    "$HSMESH" inspect "$P/sgx_quote" --collateral "$P/sgx_quote_collateral.json" --at $DAY1 --collateral-grace 1d
"$HSMESH" inspect "$P/sgx_quote" --collateral "$P/sgx_quote_collateral.json" --at $DAY1 --collateral-grace 25h >"$T/grace.txt" 2>&1
check "with --collateral-grace 25h it verifies, and says the grace was used, for what and how long" sh -c \
    'grep -q "^verdict *verified" "$1" && grep -q "^tcb status *ConfigurationAndSWHardeningNeeded" "$1" &&
     grep -q "^grace used *collateral expired 1d 0h 0m 0s before the verification time (.*qe_identity.*); accepted within --collateral-grace 25h$" "$1"' x "$T/grace.txt"
"$HSMESH" inspect "$P/sgx_quote" --collateral "$P/sgx_quote_collateral.json" --at $AT --collateral-grace 25h >"$T/nograce.txt" 2>&1
check "... inside the window no grace is used" sh -c \
    'grep -q "^verdict *verified" "$1" && ! grep -q "^grace used" "$1"' x "$T/nograce.txt"
refuse "a bad --collateral-grace is refused" "collateral-grace" \
    "$HSMESH" inspect "$P/sgx_quote" --collateral "$P/sgx_quote_collateral.json" --at $DAY1 --collateral-grace soon

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
# TDX: quote v4 with a TD 1.0 body (UpToDate), v5 with a TD 1.5 body.
TAT=2025-07-01T00:00:00Z
"$HSMESH" inspect "$P/tdx_quote" --collateral "$P/tdx_quote_collateral.json" --at $TAT >"$T/tdx.txt" 2>&1
check "the real TDX quote verifies UpToDate, no advisories, at its collateral's date" sh -c \
    'grep -q "^verdict *verified" "$1" && grep -q "^tcb status *UpToDate (platform UpToDate, QE UpToDate)" "$1" &&
     grep -q "^advisories *none" "$1" && grep -q "^tdx tcb *SGX level UpToDate, module TDX_01 UpToDate" "$1"' x "$T/tdx.txt"
check "... and prints MRTD, RTMR0-3, MRSEAM, MRSIGNERSEAM, MRCONFIGID, MROWNER(CONFIG), TD attributes, XFAM, report data" sh -c \
    'for f in mrtd rtmr0 rtmr1 rtmr2 rtmr3 mrseam mrsignerseam mrconfigid mrowner mrownerconfig; do
         grep -q "^$f  *[0-9a-f]\{96\}$" "$1" || exit 1; done
     grep -q "^mrtd *91eb2b44d141d4ec" "$1" && grep -q "^td attributes *0000001000000000$" "$1" &&
     grep -q "^xfam *e702060000000000$" "$1" && grep -q "^report data *9a9d48e7f6799642[0-9a-f]\{112\}$" "$1"' x "$T/tdx.txt"
refuse "at today's date the TDX quote is refused: collateral expired" "step collateral.*expired" \
    "$HSMESH" inspect "$P/tdx_quote" --collateral "$P/tdx_quote_collateral.json"
refuse "the v5 'outdated' TDX quote: its PCK TCB is below every TCB level (TCB not supported)" "step tcb_level.*not supported" \
    "$HSMESH" inspect "$P/tdx_quote_outdated" --collateral "$P/tdx_quote_outdated_collateral.json" --at 2026-03-01T00:00:00Z
refuse "... and at today's date: collateral expired" "step collateral.*expired" \
    "$HSMESH" inspect "$P/tdx_quote_outdated" --collateral "$P/tdx_quote_outdated_collateral.json"
# Tampered TD report: report data (48 + 520), the TD attributes' DEBUG bit (48 + 120).
for off in 568 168; do
	cp "$P/tdx_quote" "$T/tdx$off.q"
	b=$(od -An -tu1 -j $off -N1 "$T/tdx$off.q" | tr -d ' ')
	printf "\\$(printf %o $((b ^ 1)))" | dd of="$T/tdx$off.q" bs=1 seek=$off conv=notrunc 2>/dev/null
done
refuse "a flipped TD report data byte is refused at the quote signature" "step quote_sig" \
    "$HSMESH" inspect "$T/tdx568.q" --collateral "$P/tdx_quote_collateral.json" --at $TAT
"$HSMESH" inspect "$T/tdx168.q" --collateral "$P/tdx_quote_collateral.json" --at $TAT >"$T/dbg.txt" 2>&1
check "a TD with the DEBUG bit set afterwards is shown as DEBUG and refused at the quote signature" sh -c \
    'grep -q "^td attributes *0100001000000000 (DEBUG TD)" "$1" && grep -q "^verdict *REFUSED at step quote_sig" "$1"' x "$T/dbg.txt"
refuse "Intel's synthetic TDX sample is refused: its type-5 certification data is DER, not PEM" "step parse.*PEM" \
    "$HSMESH" inspect "$I/tdx/quote.dat" --collateral "$I/tdx" --insecure-test-root "$I/tdx/trustedRootCaCert.pem" \
    --at 2025-01-01T00:00:00Z
done_testing
