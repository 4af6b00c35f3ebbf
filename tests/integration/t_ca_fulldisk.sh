#!/bin/sh
# ASAN=yes
# t_ca_fulldisk.sh - the CA on a disk that fills up during enrollments
# (docs/CA.md, "A full disk"): the state directory (ledger and audit log)
# is a small tmpfs this test mounts (and unmounts); a filler takes its
# space away and gives it back in small steps while clients enroll. After
# it all: every audit line parses as JSON, no certificate was delivered
# without its audit record (and ledger row), and no join token was
# consumed without a certificate. Then a torn audit line left by a crash
# is repaired when the log is opened.
. "$(dirname "$0")/lib.sh"

JC=$(test_tool jsonl_check) || { not_ok "tests/tools/jsonl_check is not built next to $HSMESH (make check-build)"; done_testing; exit 1; }
if [ "$(id -u)" != 0 ]; then
	ok "# SKIP not root: cannot mount a tmpfs"
	done_testing
	exit 0
fi
D=$T/small
mkdir -p "$D"
if ! mount -t tmpfs -o size=1m,mode=0700 hsmesh-fulldisk "$D"; then
	ok "# SKIP cannot mount a tmpfs here"
	done_testing
	exit 0
fi
trap 'kill $_pids 2>/dev/null; sleep 0.2; umount "$D" 2>/dev/null || umount -l "$D" 2>/dev/null; _cleanup' EXIT INT TERM

ca_setup full ec-p256
Y=$T/full.yaml
yaml_set "$Y" state_dir "$D/ca"
yaml_set "$Y" database "$D/ca/ledger.db"
quiet "$HSMESH" ca init -c "$Y" || { not_ok "ca init"; done_testing; exit 1; }
AUDIT=$D/ca/audit.log
DB=$D/ca/ledger.db
N=60
i=0
while [ $i -lt $N ]; do
	"$HSMESH" ca token -c "$Y" --id "spiffe://example.org/full/$i" >"$T/tok.$i" || break
	i=$((i + 1))
done
check "$N join tokens made on the small disk" test $i -eq $N
serve_ca "$Y" "$T/serve.log"
check "ca serve runs on it (port ${PORT:-none})" test -n "$PORT"
openssl ecparam -name prime256v1 -genkey -noout -out "$T/k.pem" 2>/dev/null

enroll() { # I: an ir with token I; the certificate in $T/cert.I, the client's words in $T/out.I
	t=$(cat "$T/tok.$1")
	timeout 30 openssl cmp -server "127.0.0.1:$PORT" -path .well-known/cmp -cmd ir -ref "${t%%:*}" \
	    -secret "pass:${t#*:}" -newkey "$T/k.pem" -subject /CN=x -certout "$T/cert.$1" \
	    >"$T/out.$1" 2>&1
}
# fill: take every free byte of the tmpfs
fill() { dd if=/dev/zero of="$D/filler" bs=4096 count=100000 oflag=append conv=notrunc 2>/dev/null; sync; }
# give BYTES: free that much of the filler
give() { s=$(stat -c %s "$D/filler"); [ "$s" -gt "$1" ] && truncate -s $((s - $1)) "$D/filler"; }

i=0
# A few with room to spare.
while [ $i -lt 5 ]; do enroll $i; i=$((i + 1)); done
fill
# Full: then ever so slightly less full, in steps that land anywhere in a page.
for step in 0 0 700 300 1500 2500 4096 200 6000 9000 0 12000 3000 800 20000 0 5000; do
	give "$step"
	enroll $i; i=$((i + 1))
	enroll $i; i=$((i + 1))
	[ $((i % 6)) -eq 0 ] && fill
done
LAST=$i
rm -f "$D/filler"
check "the server survived the full disk" alive "$SRV"

delivered=0; failed=0
for j in $(seq 0 $((LAST - 1))); do
	if [ -s "$T/cert.$j" ]; then delivered=$((delivered + 1)); else failed=$((failed + 1)); fi
done
check "some enrollments were refused for want of space ($failed), some succeeded ($delivered)" \
    sh -c '[ "$1" -gt 0 ] && [ "$2" -gt 0 ]' x "$failed" "$delivered"
check "a refused client read why (issuance failed: ...)" sh -c 'grep -l "issuance failed" "$1"/out.* >/dev/null' x "$T"
grep -h "audit log write failed\|ledger" "$T"/out.* 2>/dev/null | head -n 2 | sed 's/^/# /'

check "every audit line parses as a JSON object ($("$JC" "$AUDIT" 2>&1))" quiet "$JC" "$AUDIT"
# serial_of CERT: the ledger's spelling (lower-case hex, no leading zeros)
serial_of() { openssl x509 -in "$1" -noout -serial | cut -d= -f2 | tr 'A-F' 'a-f' | sed 's/^0*//'; }
noaudit=0; noledger=0
for j in $(seq 0 $((LAST - 1))); do
	[ -s "$T/cert.$j" ] || continue
	s=$(serial_of "$T/cert.$j")
	grep "\"event\":\"issued\"" "$AUDIT" | grep -q "\"serial\":\"$s\"" || noaudit=$((noaudit + 1))
	grep "\"event\":\"rolled_back\"" "$AUDIT" | grep -q "\"serial\":\"$s\"" && noaudit=$((noaudit + 1))
	[ "$(sqlite3 "$DB" "select count(*) from certs where serial = '$s'")" = 1 ] || noledger=$((noledger + 1))
done
check "no certificate delivered without its audit record ($noaudit of $delivered lack one)" test "$noaudit" -eq 0
check "... nor without its ledger row ($noledger lack one)" test "$noledger" -eq 0
used=$(sqlite3 "$DB" "select count(*) from tokens where used_at is not null")
paid=$(sqlite3 "$DB" "select count(*) from tokens t where used_at is not null and exists
    (select 1 from certs c where c.auth = 'token:' || t.ref)")
check "no join token consumed without a certificate ($used used, $paid with one)" test "$used" -eq "$paid"
check "... and the certificates delivered are those tokens ($delivered)" test "$used" -eq "$delivered"
issued=$(grep -c "\"event\":\"issued\"" "$AUDIT")
rolled=$(grep -c "\"event\":\"rolled_back\"" "$AUDIT")
certs=$(sqlite3 "$DB" "select count(*) from certs")
check "every certificate in the ledger has its audit line ($certs; $issued issued, $rolled rolled back)" \
    test "$certs" -eq $((issued - rolled))
check "the audit failure was logged" grep -q "audit log .* write failed\|ledger" "$T/serve.log"

# With space again, a token refused meanwhile still enrolls.
for j in $(seq 0 $((LAST - 1))); do [ -s "$T/cert.$j" ] || { K=$j; break; }; done
check "with space again, a token refused on the full disk enrolls (token $K)" enroll "$K"
check "... and the audit log says so" sh -c 'grep "\"event\":\"issued\"" "$1" | grep -q "\"serial\":\"$2\""' x "$AUDIT" "$(serial_of "$T/cert.$K" 2>/dev/null)"
kill -TERM "$SRV"
check "SIGTERM stops the server" wait_exit "$SRV" 10

# --- a torn last line (a crash in mid-write) is cut off when the log is opened ---
lines=$(wc -l <"$AUDIT")
printf '{"time":"2026-01-01T00:00:00.000Z","event":"issu' >>"$AUDIT"
"$HSMESH" ca token -c "$Y" --id spiffe://example.org/after-repair >/dev/null 2>"$T/repair.err"
check "opening the log removes the torn line and says so ($(head -c 160 "$T/repair.err"))" \
    grep -q "removed a torn last line of 48 bytes" "$T/repair.err"
check "... records the repair" sh -c 'grep "\"event\":\"audit_repaired\"" "$1" | grep -q "\"removed_bytes\":\"48\""' x "$AUDIT"
check "... and every line parses again" quiet "$JC" "$AUDIT"
check "... with the lines before it kept ($lines, now $(wc -l <"$AUDIT"))" test "$(wc -l <"$AUDIT")" -eq $((lines + 2))

umount "$D" && ok "the tmpfs is unmounted" || not_ok "umount $D"
done_testing
