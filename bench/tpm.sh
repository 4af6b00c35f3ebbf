#!/bin/bash
# bench/tpm.sh BUILD_DIR OUT_JSON - hsmesh on a software TPM 2.0 (issue 6).
#
# Starts swtpm + a private D-Bus + tpm2-abrmd (tests/integration/tpm.sh) in a
# temporary directory and measures, in about 30 s:
#   tpm_sign_per_s     ECDSA P-256 signatures/s through a keyholder whose
#   tpm_sign_per_s_4   token is on the TPM, 1 and 4 requests in flight
#                      (BUILD_DIR/bench/keypath, made by `make bench`)
#   tpm_enroll_per_s   certificates/s of `hsmesh ca serve` with its CA key on
#                      the TPM, enrolling `openssl cmp` ir clients (4 at a
#                      time, P-256 keys made beforehand, one join token each)
# and writes {"tpm_sign_per_s": N, "tpm_sign_per_s_4": N,
# "tpm_enroll_per_s": N, "notes": "..."}, or {"skipped": "reason"} when the
# TPM packages are missing. A rate that could not be measured is null.
# KEEP=1 keeps the work directory (logs of every client) for a look.
set -u
B=$(cd "${1:?usage: bench/tpm.sh BUILD_DIR OUT_JSON}" && pwd)
OUT=${2:?usage: bench/tpm.sh BUILD_DIR OUT_JSON}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
HSMESH=$B/hsmesh
SIGN_SECS=5 ENROLL_SECS=6 ENROLL_CLIENTS=4 ENROLL_MAX=1000

. "$ROOT/tests/integration/tpm.sh"
if ! tpm_available; then
	printf '{"skipped": "swtpm, tpm2-abrmd, tpm2-pkcs11 or the tabrmd TCTI not installed"}\n' >"$OUT"
	exit 0
fi
W=$(mktemp -d /tmp/hsmesh-bench-tpm.XXXXXX)
SRV=""
cleanup() {
	[ -n "$SRV" ] && kill "$SRV" 2>/dev/null && wait "$SRV" 2>/dev/null
	tpm_stop
	[ -n "${KEEP:-}" ] || rm -rf "$W"
}
trap cleanup EXIT INT TERM
skip() { printf '{"skipped": "%s"}\n' "$1" >"$OUT"; exit 0; }

tpm_start "$W" || skip "the TPM stack did not start"
tpm_new_token bench && tpm_new_token ca || skip "tpm2_ptool addtoken failed"
printf '1234\n' >"$W/pin"
notes="swtpm (Unix sockets) + tpm2-abrmd + tpm2-pkcs11 $(dpkg-query -W -f='${Version}' libtpm2-pkcs11-1 2>/dev/null)"

# rate FIELD JSON: one number out of keypath's JSON line
field() { sed -n "s/.*\"$1\": *\([0-9.]*\).*/\1/p" <<<"$2"; }

sign1=null sign4=null
if [ -x "$B/bench/keypath" ]; then
	for n in 1 4; do
		j=$("$B/bench/keypath" keyholder "$HSMESH" "$TPM_MODULE" "pkcs11:token=bench" "$W/pin" \
		    "$n" "$SIGN_SECS" 2>"$W/keypath.err")
		r=$(field sig_per_s "$j")
		[ -n "$r" ] || { notes="$notes; keypath $n: $(tail -n 1 "$W/keypath.err")"; continue; }
		if [ "$n" = 1 ]; then sign1=$r; else sign4=$r; fi
		notes="$notes; sign inflight $n: p50 $(field p50_us "$j") us, p99 $(field p99_us "$j") us"
	done
else
	notes="$notes; signatures not measured: $B/bench/keypath not built (make bench)"
fi

# Enrollment: the CA key on the TPM, openssl cmp ir clients.
enroll=null
cat >"$W/ca.yaml" <<YAML
trust_domain: example.org
token:
  module: $TPM_MODULE
  uri: "pkcs11:token=ca"
  pin_file: $W/pin
key:
  type: ec-p256
state_dir: $W/ca
listen: 127.0.0.1:0
svid_ttl: 1h
max_ttl: 24h
database: $W/ca/ledger.db
YAML
if "$HSMESH" ca init -c "$W/ca.yaml" >/dev/null 2>"$W/init.err"; then
	"$HSMESH" ca serve -c "$W/ca.yaml" --port-file "$W/port" 2>"$W/serve.log" &
	SRV=$!
	for _ in $(seq 200); do [ -s "$W/port" ] && break; sleep 0.05; done
	PORT=$(cat "$W/port" 2>/dev/null)
	# One join token and one key per enrollment, made (for at most 6 s)
	# before the clock starts; numbered 1..avail without gaps.
	mkdir -p "$W/e"
	prep_end=$((SECONDS + 6))
	prep() { # K: tokens K, K+CLIENTS, ...
		local i=$1
		while [ "$i" -le "$ENROLL_MAX" ] && [ "$SECONDS" -lt "$prep_end" ]; do
			"$HSMESH" ca token -c "$W/ca.yaml" --id "spiffe://example.org/w$i" >"$W/e/$i.tmp" 2>/dev/null &&
			    openssl ecparam -name prime256v1 -genkey -noout -out "$W/e/$i.key" 2>/dev/null &&
			    mv "$W/e/$i.tmp" "$W/e/$i.tok" || break
			i=$((i + ENROLL_CLIENTS))
		done
	}
	ppids=""
	for k in $(seq "$ENROLL_CLIENTS"); do prep "$k" & ppids="$ppids $!"; done
	wait $ppids
	avail=0
	while [ -s "$W/e/$((avail + 1)).tok" ]; do avail=$((avail + 1)); done
	client() { # K: enroll tokens K, K+CLIENTS, ... until the deadline
		local i=$1 t
		while [ "$i" -le "$avail" ] && [ "$(date +%s%N)" -lt "$deadline" ]; do
			t=$(cat "$W/e/$i.tok")
			timeout 20 openssl cmp -server "127.0.0.1:$PORT" -path .well-known/cmp -cmd ir \
			    -ref "${t%%:*}" -secret "pass:${t#*:}" -newkey "$W/e/$i.key" -subject /CN=w \
			    -certout "$W/e/$i.pem" >"$W/e/$i.log" 2>&1
			i=$((i + ENROLL_CLIENTS))
		done
	}
	if [ -n "$PORT" ] && [ "$avail" -gt 0 ]; then
		t0=$(date +%s%N); deadline=$((t0 + ENROLL_SECS * 1000000000))
		cpids=""
		for k in $(seq "$ENROLL_CLIENTS"); do client "$k" & cpids="$cpids $!"; done
		wait $cpids
		t1=$(date +%s%N)
		got=$(ls "$W/e" | grep -c '\.pem$')
		enroll=$(awk -v n="$got" -v ns=$((t1 - t0)) 'BEGIN { printf "%.1f", n / (ns / 1e9) }')
		notes="$notes; enrollment: $got certificates in $(awk -v ns=$((t1 - t0)) 'BEGIN { printf "%.1f", ns / 1e9 }') s, $ENROLL_CLIENTS openssl cmp clients (client process start included)"
		[ "$got" -ge "$avail" ] && notes="$notes (ran out of prepared tokens: a lower bound)"
	else
		notes="$notes; enrollment not measured: ca serve did not start ($(tail -n 1 "$W/serve.log"))"
	fi
else
	notes="$notes; enrollment not measured: ca init: $(tail -n 1 "$W/init.err")"
fi

notes=$(printf '%s' "$notes" | tr -d '"\\')
printf '{"tpm_sign_per_s": %s, "tpm_sign_per_s_4": %s, "tpm_enroll_per_s": %s, "notes": "%s"}\n' \
    "$sign1" "$sign4" "$enroll" "$notes" >"$OUT"
