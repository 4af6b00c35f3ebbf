#!/bin/sh
# t_sgx_testpki.sh - the test SGX PKI / quoting enclave (tests/tools/sgx_testpki)
# makes v3 quotes with any report data that `hsmesh inspect` verifies against
# the tool's collateral when its root is passed as the insecure test root, and
# that are refused without it, across DIRs, when tampered or when expired.
. "$(dirname "$0")/lib.sh"
TP=$(test_tool sgx_testpki)
DEF_MRENCLAVE=61fc715ee73a5a125564abc636c160cd77b261cd827f067f3bae277b8683608f
DEF_MRSIGNER=9e835483061018e266530c7191c702014a3a0a071708b41f5cb7d5afea654011
RD=00112233445566778899aabbccddeeff0123456789abcdeffedcba9876543210a0a1a2a3a4a5a6a7a8a9aaabacadaeafb0b1b2b3b4b5b6b7b8b9babbbcbdbebf

if [ ! -x "$TP" ]; then
	not_ok "tests/tools/sgx_testpki is not built next to $HSMESH (make check-build)"
	done_testing
	exit 1
fi

# verify QUOTE DIR OUT [inspect args...]: hsmesh inspect against DIR's collateral and root
verify() {
	_q=$1; _d=$2; _o=$3; shift 3
	"$HSMESH" inspect "$_q" --collateral "$_d/collateral.json" --insecure-test-root "$_d/root.pem" "$@" >"$_o" 2>&1
}
# field FILE NAME: the value printed for NAME by hsmesh inspect
field() { sed -n "s/^$2  *//p" "$1" | head -n 1; }
# bad_stdin DESC INPUT(printf %b): quote refuses with one stderr line, exit 2, no output
bad_stdin() {
	printf '%b' "$2" | "$TP" quote "$T/a" >"$T/out" 2>"$T/err"
	_rc=$?
	_nl=$(grep -cv '^$' "$T/err")
	if [ "$_rc" -eq 2 ] && [ "$_nl" -eq 1 ] && [ ! -s "$T/out" ]; then
		ok "$1: $(cat "$T/err")"
	else
		not_ok "$1 (exit $_rc, $_nl stderr lines, $(wc -c <"$T/out") bytes out)"
	fi
}
iso() { date -u -d "@$1" +%Y-%m-%dT%H:%M:%SZ; }

check "--help documents the default MRENCLAVE and MRSIGNER" \
    sh -c '"$1" --help | grep -q "$2" && "$1" --help | grep -q "$3"' x "$TP" "$DEF_MRENCLAVE" "$DEF_MRSIGNER"

# Defaults.
check "init with defaults" "$TP" init "$T/a"
check "... DIR is mode 0700 and attestation_key.pem 0600" \
    sh -c 'test "$(stat -c %a "$1")" = 700 && test "$(stat -c %a "$1/attestation_key.pem")" = 600 &&
        test -s "$1/root.pem" && test -s "$1/collateral.json" && test -s "$1/state"' x "$T/a"
check "... the root is a self-signed CA that says TEST" \
    sh -c 'openssl x509 -in "$1" -noout -subject | grep -q TEST &&
        openssl verify -x509_strict -CAfile "$1" "$1" >/dev/null' x "$T/a/root.pem"
check "quote with a given report data" sh -c 'echo "$1" | "$2" quote "$3" >"$4"' x "$RD" "$TP" "$T/a" "$T/a.q"
check "... is a v3 ECDSA-P256 quote (header 03 00 02 00)" \
    test "$(od -An -tx1 -N4 "$T/a.q" | tr -d ' ')" = 03000200
verify "$T/a.q" "$T/a" "$T/a.txt"
check "hsmesh inspect verifies it with the test root (INSECURE)" \
    sh -c 'grep -q "^verdict *verified$" "$1" && grep -q "INSECURE test root" "$1"' x "$T/a.txt"
check "... TCB UpToDate, no advisories" \
    sh -c 'grep -q "^tcb status *UpToDate (platform UpToDate, QE UpToDate)" "$1" && grep -q "^advisories *none" "$1"' x "$T/a.txt"
check "... shows the report data given on stdin" test "$(field "$T/a.txt" 'report data')" = "$RD"
check "... default MRENCLAVE, MRSIGNER, prodid 1, svn 1, not debug" \
    sh -c 'test "$(sed -n "s/^mrenclave *//p" "$1")" = "$2" && test "$(sed -n "s/^mrsigner *//p" "$1")" = "$3" &&
        grep -q "^isv prod id *1$" "$1" && grep -q "^isv svn *1$" "$1" &&
        grep -q "^attributes *0500000000000000e700000000000000$" "$1"' x "$T/a.txt" "$DEF_MRENCLAVE" "$DEF_MRSIGNER"
check "upper-case hex without a newline is accepted too" \
    sh -c 'printf %s "$1" | tr a-f A-F | "$2" quote "$3" >"$4" && "$5" inspect "$4" --collateral "$3/collateral.json" \
        --insecure-test-root "$3/root.pem" | grep -q "^verdict *verified"' x "$RD" "$TP" "$T/a" "$T/a2.q" "$HSMESH"

# Chosen identity, debug, TCB status.
ME=$(printf 'me' | sha256sum | cut -c1-64); MS=$(printf 'ms' | sha256sum | cut -c1-64)
check "init --mrenclave --mrsigner --prodid 42 --isvsvn 9 --debug --tcb OutOfDate" \
    "$TP" init "$T/b" --mrenclave "$ME" --mrsigner "$MS" --prodid 42 --isvsvn 9 --debug --tcb OutOfDate
echo "$RD" | "$TP" quote "$T/b" >"$T/b.q"
verify "$T/b.q" "$T/b" "$T/b.txt"
check "... verified with TCB OutOfDate and its advisories" \
    sh -c 'grep -q "^verdict *verified$" "$1" && grep -q "^tcb status *OutOfDate " "$1" &&
        grep -q "^advisories *INTEL-SA-[0-9]" "$1"' x "$T/b.txt"
check "... shows the MRENCLAVE, MRSIGNER, prodid and svn set" \
    sh -c 'test "$(sed -n "s/^mrenclave *//p" "$1")" = "$2" && test "$(sed -n "s/^mrsigner *//p" "$1")" = "$3" &&
        grep -q "^isv prod id *42$" "$1" && grep -q "^isv svn *9$" "$1"' x "$T/b.txt" "$ME" "$MS"
check "... and the DEBUG attribute" grep -q "^attributes *07.*(DEBUG enclave)" "$T/b.txt"
for s in SWHardeningNeeded ConfigurationNeeded Revoked; do
	"$TP" init "$T/s$s" --tcb $s && echo "$RD" | "$TP" quote "$T/s$s" >"$T/s$s.q"
	verify "$T/s$s.q" "$T/s$s" "$T/s$s.txt"
	check "--tcb $s gives that status with advisories" \
	    sh -c 'grep -q "^tcb status *$2 " "$1" && grep -q "^advisories *INTEL-SA-" "$1"' x "$T/s$s.txt" "$s"
done

# Refusals.
refuse "without --insecure-test-root (Intel's root) it is refused at pck_chain" "step pck_chain" \
    "$HSMESH" inspect "$T/a.q" --collateral "$T/a/collateral.json"
refuse "a quote from another DIR is refused against this DIR's collateral and root" "step pck_chain" \
    "$HSMESH" inspect "$T/b.q" --collateral "$T/a/collateral.json" --insecure-test-root "$T/a/root.pem"
cp "$T/a.q" "$T/flip.q"
b=$(od -An -tu1 -j 368 -N1 "$T/flip.q" | tr -d ' ')
printf "\\$(printf %o $((b ^ 1)))" | dd of="$T/flip.q" bs=1 seek=368 conv=notrunc 2>/dev/null
refuse "a flipped report data byte after signing is refused at quote_sig" "step quote_sig" \
    "$HSMESH" inspect "$T/flip.q" --collateral "$T/a/collateral.json" --insecure-test-root "$T/a/root.pem"
bad_stdin "short hex on stdin: exit 2, one line" "$(echo "$RD" | cut -c1-126)\n"
bad_stdin "non-hex on stdin: exit 2, one line" "$(echo "$RD" | cut -c1-127)g\n"
bad_stdin "a second line on stdin: exit 2, one line" "$RD\n$RD\n"
bad_stdin "empty stdin: exit 2, one line" ""
refuse "init into a non-empty DIR is refused" "not empty" "$TP" init "$T/a"
refuse "init --tcb with an unknown status is refused" "unknown status" "$TP" init "$T/c" --tcb Fine

# Expiry: --days 1, verified 20 hours on, expired 3 days on.
check "init --days 1" "$TP" init "$T/d" --days 1
echo "$RD" | "$TP" quote "$T/d" >"$T/d.q"
now=$(date +%s)
verify "$T/d.q" "$T/d" "$T/d.txt" --at "$(iso $((now + 20 * 3600)))"
check "... verified 20 hours later" grep -q "^verdict *verified$" "$T/d.txt"
refuse "... 3 days later the collateral has expired" "step collateral.*expired" \
    "$HSMESH" inspect "$T/d.q" --collateral "$T/d/collateral.json" --insecure-test-root "$T/d/root.pem" \
    --at "$(iso $((now + 3 * 86400)))"
# ... and its certificates and CRLs with it: within --collateral-grace it still verifies.
verify "$T/d.q" "$T/d" "$T/dg.txt" --at "$(iso $((now + 3 * 86400)))" --collateral-grace 3d
check "... with --collateral-grace 3d it verifies: the certificates and CRLs expired too, grace used" sh -c \
    'grep -q "^verdict *verified$" "$1" && grep -q "^grace used .*pck_chain leaf.*pck_crl.*accepted within --collateral-grace 3d" "$1"' \
    x "$T/dg.txt"
refuse "... with --collateral-grace 1d it is refused" "step collateral.*expired.*collateral_grace 1d" \
    "$HSMESH" inspect "$T/d.q" --collateral "$T/d/collateral.json" --insecure-test-root "$T/d/root.pem" \
    --at "$(iso $((now + 3 * 86400)))" --collateral-grace 1d
done_testing
