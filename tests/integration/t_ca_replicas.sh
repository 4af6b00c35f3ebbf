#!/bin/sh
# t_ca_replicas.sh HSMESH - CA replicas: two `hsmesh ca serve` sharing one
# PostgreSQL database (tests/integration/pg.sh starts a throwaway server)
# and one SoftHSM2 token directory, the way replicas share one network HSM.
#
# Covered: both replicas start at once on a new database; each issues
# under the same root; a join token is spent once whichever replica sees
# it; a renewal made at one replica cannot be made again at the other; a
# revocation (`ca revoke`) is refused by the other replica at its next
# request; explicit certConf completes at the replica holding the
# transaction, and a certConf sent to the other one is answered, not
# crashed on; an agent with several CA URLs fails over past a closed port,
# an HTTP error and a replica whose database is gone (systemFailure), and
# backs off when every address fails; a replica whose database comes back
# serves again by itself; a replica whose audit log cannot be written
# issues nothing and leaves the join token for another one.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/pg.sh"
if ! pg_available; then
	ok "# SKIP postgresql-15 (initdb, pg_ctl, psql) not installed"
	done_testing; exit 0
fi
MNT=""
trap '[ -z "$MNT" ] || umount -l "$MNT" 2>/dev/null; _cleanup; pg_stop' EXIT INT TERM
pg_ca rep || { done_testing; exit 1; }

# replica NAME [DATABASE_URI]: NAME.yaml (its own audit log) and a running `ca serve`
replica() {
	sed -e "s|^audit_log:.*||" "$Y" >"$T/$1.yaml"
	echo "audit_log: $T/rep/audit-$1.log" >>"$T/$1.yaml"
	if [ -n "${2:-}" ]; then
		sed -i '/^database:/d' "$T/$1.yaml"
		echo "database: \"$2\"" >>"$T/$1.yaml"
	fi
	rm -f "$T/$1.port"
	"$HSMESH" ca serve -c "$T/$1.yaml" --port-file "$T/$1.port" 2>"$T/$1.log" &
	eval "PID_$1=\$!"
	track $!
}
wait_port() { for _ in $(seq 200); do [ -s "$T/$1.port" ] && return 0; sleep 0.05; done; return 1; }
replica a
replica b
both_up() { wait_port a && wait_port b; }
check "two replicas start at once on the new database" both_up
# every step once, up to the schema this build has (src/lib/ledger.h)
SCHEMA=$(sed -n 's/^#define LEDGER_SCHEMA_VERSION \([0-9]*\).*/\1/p' "${HSMESH_ROOT:-$(cd "$(dirname "$0")/../.." && pwd)}/src/lib/ledger.h")
check "... which they migrated once, to schema $SCHEMA ($(psql_ca 'select version from schema_version order by version' | tr '\n' ' '))" \
    test "$(psql_ca 'select version from schema_version order by version' | tr '\n' ' ')" = "$(seq -s ' ' 1 "${SCHEMA:-0}") "
A=127.0.0.1:$(cat "$T/a.port"); B=127.0.0.1:$(cat "$T/b.port")
KA=$(wait_child "$PID_a" 5); KB=$(wait_child "$PID_b" 5)
check "each replica has its own keyholder on the one token directory ($KA, $KB)" \
    sh -c '[ -n "$1" ] && [ -n "$2" ] && [ "$1" != "$2" ] && tr "\0" " " </proc/$1/cmdline | grep -q keyholder && tr "\0" " " </proc/$2/cmdline | grep -q keyholder' x "$KA" "$KB"

ocmp() { _u=$1; shift; timeout 30 openssl cmp -server "$_u" -path .well-known/cmp -trusted "$ROOT" "$@"; }
newkey() { openssl ecparam -name prime256v1 -genkey -noout -out "$1" 2>/dev/null; }
ref() { echo "${1%%:*}"; }
sec() { echo "${1#*:}"; }
serial_of() { openssl x509 -in "$1" -noout -serial | cut -d= -f2 | tr 'A-F' 'a-f' | sed 's/^0*//'; }
refused_with() { # DESC PATTERN cmd...: the client fails and prints PATTERN
	d=$1; p=$2; shift 2
	if "$@" >"$T/out" 2>&1; then not_ok "$d (succeeded)"; return; fi
	if grep -qiE "$p" "$T/out"; then ok "$d: $(grep -iE "$p" "$T/out" | head -n 1 | cut -c1-150)"; else not_ok "$d"; sed 's/^/#   /' "$T/out" | tail -n 5; fi
}

# --- one ledger, one root ---
TOK1=$("$HSMESH" ca token -c "$Y" --id spiffe://example.org/web)
newkey "$T/k1.pem"
check "ir at replica a" quiet ocmp "$A" -cmd ir -implicit_confirm -ref "$(ref "$TOK1")" \
    -secret "pass:$(sec "$TOK1")" -newkey "$T/k1.pem" -subject /CN=x -certout "$T/c1.pem" \
    -reqout "$T/ir1.der"
# The same ir again (its answer lost, say): the certificate it already got, from either replica.
code=$(curl -s -o "$T/ir1b.rsp" -w '%{http_code}' --data-binary @"$T/ir1.der" \
    -H 'Content-Type: application/pkixcmp' "http://$B/.well-known/cmp")
SER1=$(openssl x509 -in "$T/c1.pem" -noout -serial | cut -d= -f2)
check "a retry of that transaction at replica b gets the same certificate (HTTP $code)" \
    sh -c 'openssl asn1parse -inform DER -in "$1" | grep -qi "INTEGER *:0*$2\$"' x "$T/ir1b.rsp" "$SER1"
check "... audited there as delivered again" grep -q '"event":"redelivered","op":"ir".*"serial":"'"$(serial_of "$T/c1.pem")"'"' \
    "$T/rep/audit-b.log"
refused_with "the same join token at replica b: already used" "already used" \
    ocmp "$B" -cmd ir -implicit_confirm -ref "$(ref "$TOK1")" -secret "pass:$(sec "$TOK1")" \
    -newkey "$T/k1.pem" -subject /CN=x -certout "$T/x.pem"
TOK2=$("$HSMESH" ca token -c "$Y" --id spiffe://example.org/api)
newkey "$T/k2.pem"
check "ir at replica b" quiet ocmp "$B" -cmd ir -implicit_confirm -ref "$(ref "$TOK2")" \
    -secret "pass:$(sec "$TOK2")" -newkey "$T/k2.pem" -subject /CN=x -certout "$T/c2.pem"
check "both verify under the one root (x509_strict)" \
    quiet openssl verify -x509_strict -CAfile "$ROOT" "$T/c1.pem" "$T/c2.pem"
check "the ledger holds both, each with the transaction that asked ($(psql_ca "select count(*) from certs where txn is not null"))" \
    test "$(psql_ca "select count(*) from certs where txn is not null")" = 2

# --- renewal chains across replicas ---
newkey "$T/k1b.pem"
check "kur at replica b of a certificate from replica a" quiet ocmp "$B" -cmd kur -implicit_confirm \
    -cert "$T/c1.pem" -key "$T/k1.pem" -newkey "$T/k1b.pem" -certout "$T/c1b.pem"
newkey "$T/k1c.pem"
refused_with "a second kur of it at replica a names the renewal made at b" \
    "already renewed \(superseded by serial $(serial_of "$T/c1b.pem")\)" \
    ocmp "$A" -cmd kur -implicit_confirm -cert "$T/c1.pem" -key "$T/k1.pem" -newkey "$T/k1c.pem" \
    -certout "$T/x.pem"

# --- revocations are seen by the other replica at its next request ---
quiet "$HSMESH" ca revoke -c "$Y" --serial "$(serial_of "$T/c1b.pem")"
refused_with "revoked by 'ca revoke': replica a refuses its kur at once" "revoked" \
    ocmp "$A" -cmd kur -implicit_confirm -cert "$T/c1b.pem" -key "$T/k1b.pem" -newkey "$T/k1c.pem" \
    -certout "$T/x.pem"
TOK3=$("$HSMESH" ca token -c "$Y" --id spiffe://example.org/api)
quiet "$HSMESH" ca revoke -c "$Y" --id spiffe://example.org/api
refused_with "an identity revoked: replica b refuses a fresh token for it" "identity revoked" \
    ocmp "$B" -cmd ir -implicit_confirm -ref "$(ref "$TOK3")" -secret "pass:$(sec "$TOK3")" \
    -newkey "$T/k2.pem" -subject /CN=x -certout "$T/x.pem"

# --- explicit certConf: the transaction stays with its replica ---
TOK4=$("$HSMESH" ca token -c "$Y" --id spiffe://example.org/confirm)
newkey "$T/k4.pem"
check "explicit certConf at replica a (openssl cmp without -implicit_confirm)" quiet ocmp "$A" -cmd ir \
    -ref "$(ref "$TOK4")" -secret "pass:$(sec "$TOK4")" -newkey "$T/k4.pem" -subject /CN=x \
    -certout "$T/c4.pem" -reqout "$T/ir4.der,$T/conf4.der"
code=$(curl -s -o "$T/conf4.rsp" -w '%{http_code}' --data-binary @"$T/conf4.der" \
    -H 'Content-Type: application/pkixcmp' "http://$B/.well-known/cmp")
check "that certConf sent to replica b again is answered (HTTP $code), not crashed on" \
    sh -c '[ "$1" = 200 ] && openssl asn1parse -inform DER -in "$2" >/dev/null' x "$code" "$T/conf4.rsp"
both_alive() { alive "$PID_a" && alive "$PID_b"; }
check "... both replicas keep serving" both_alive
check "... and the certificate is in the ledger, recorded at issuance" \
    test "$(psql_ca "select count(*) from certs where serial = '$(serial_of "$T/c4.pem")'")" = 1

# --- agents fail over ---
"$HSMESH" app serve --listen 127.0.0.1:0 --name notaca --port-file "$T/app.port" 2>/dev/null &
track $!
for _ in $(seq 100); do [ -s "$T/app.port" ] && break; sleep 0.05; done
CLOSED=$((20000 + $(od -An -N2 -tu2 /dev/urandom | tr -d ' ') % 20000))
new_token node
printf '1234\n' >"$T/node.pin"
# agent NAME URL... : an agent enrolling spiffe://example.org/NAME with those CA addresses
agent() {
	_an=$1; shift
	"$HSMESH" ca token -c "$Y" --id "spiffe://example.org/$_an" >"$T/$_an.join"
	{
		printf 'token:\n  module: %s\n  uri: "pkcs11:token=node"\n  pin_file: %s\n' "$SOFTHSM_MODULE" "$T/node.pin"
		printf 'ca:\n  url:\n'
		for _u in "$@"; do printf '    - %s\n' "$_u"; done
		printf '  root: %s\nstate_dir: %s\nsocket: %s\n' "$ROOT" "$T/st-$_an" "$T/$_an.sock"
		printf 'retry:\n  min: 2s\n  max: 8s\nworkloads:\n'
		printf '  - id: spiffe://example.org/%s\n    uid: %s\n    join_token_file: %s\n' "$_an" "$(id -u)" "$T/$_an.join"
	} >"$T/$_an.agent.yaml"
	"$HSMESH" agent -c "$T/$_an.agent.yaml" 2>"$T/$_an.agent.log" &
	AGENT=$!; track $AGENT
}
# log_has NAME PATTERN SECS
log_has() {
	_i=0
	while [ "$_i" -lt $(($3 * 10)) ]; do
		grep -qE "$2" "$T/$1.agent.log" 2>/dev/null && return 0
		sleep 0.1; _i=$((_i + 1))
	done
	return 1
}
agent w1 "http://127.0.0.1:$CLOSED/.well-known/cmp" "http://127.0.0.1:$(cat "$T/app.port")/.well-known/cmp" \
    "http://$A/.well-known/cmp" "http://$B/.well-known/cmp"
check "an agent past a closed port and an HTTP error enrolls at replica a" \
    log_has w1 "spiffe://example.org/w1: enrolled certificate serial" 20
check "... having tried each address in turn" sh -c 'grep -q "127.0.0.1:$1: connect to .*Connection refused; trying the next" "$3" &&
    grep -q "127.0.0.1:$2: .*; trying the next CA address" "$3"' x "$CLOSED" "$(cat "$T/app.port")" "$T/w1.agent.log"
kill -TERM "$AGENT"; wait_exit "$AGENT" 10

# A replica whose database is gone: its role may no longer log in.
psql_ca "CREATE ROLE cdown LOGIN SUPERUSER" >/dev/null
replica c "$(echo "$DBURI" | sed 's|//[^@]*@|//cdown@|')"
wait_port c
C=127.0.0.1:$(cat "$T/c.port")
psql_ca "ALTER ROLE cdown NOLOGIN" >/dev/null
psql_ca "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = 'cdown'" >/dev/null
TOK5=$("$HSMESH" ca token -c "$Y" --id spiffe://example.org/down)
newkey "$T/k5.pem"
refused_with "replica c without its database answers systemFailure" "systemFailure.*ledger unavailable" \
    ocmp "$C" -cmd ir -implicit_confirm -ref "$(ref "$TOK5")" -secret "pass:$(sec "$TOK5")" \
    -newkey "$T/k5.pem" -subject /CN=x -certout "$T/x.pem"
check "... and keeps running" alive "$PID_c"
check "... the reason in its audit log, not to the client" \
    grep -q '"reason":"ledger unavailable: ledger: .*PostgreSQL' "$T/rep/audit-c.log"
agent w2 "http://$C/.well-known/cmp" "http://$B/.well-known/cmp"
check "an agent whose first replica answers systemFailure enrolls at the next" \
    log_has w2 "spiffe://example.org/w2: enrolled certificate serial" 20
check "... having been told why" grep -q "systemFailure.*trying the next CA address" "$T/w2.agent.log"
kill -TERM "$AGENT"; wait_exit "$AGENT" 10
psql_ca "ALTER ROLE cdown LOGIN" >/dev/null
sleep 1.1
check "the database back, replica c serves again by itself (the token it could not spend)" \
    quiet ocmp "$C" -cmd ir -implicit_confirm -ref "$(ref "$TOK5")" -secret "pass:$(sec "$TOK5")" \
    -newkey "$T/k5.pem" -subject /CN=x -certout "$T/c5.pem"

# A replica whose audit log cannot be written (its disk full): it issues
# nothing, and the join token stays unspent for another replica.
if [ "$(id -u)" = 0 ] && mkdir -p "$T/full" && mount -t tmpfs -o size=256k,mode=0700 hsmesh-replicas "$T/full"; then
	MNT=$T/full
	sed -e "s|^audit_log:.*||" "$Y" >"$T/d.yaml"
	echo "audit_log: $MNT/audit-d.log" >>"$T/d.yaml"
	# Full before it starts: no page of the tmpfs is left for a line.
	dd if=/dev/zero of="$MNT/filler" bs=4096 count=1000 2>/dev/null
	"$HSMESH" ca serve -c "$T/d.yaml" --port-file "$T/d.port" 2>"$T/d.log" &
	PID_d=$!; track $PID_d
	wait_port d
	TOK6=$("$HSMESH" ca token -c "$Y" --id spiffe://example.org/fulldisk)
	refused_with "replica d, its audit log on a full disk, issues nothing (systemFailure)" "systemFailure" \
	    ocmp "127.0.0.1:$(cat "$T/d.port")" -cmd ir -implicit_confirm -ref "$(ref "$TOK6")" \
	    -secret "pass:$(sec "$TOK6")" -newkey "$T/k5.pem" -subject /CN=x -certout "$T/x.pem"
	check "... no certificate recorded for it, its join token unspent" test \
	    "$(psql_ca "select count(*) from certs where spiffe_id = 'spiffe://example.org/fulldisk'")/$(psql_ca "select count(*) from tokens where ref = '$(ref "$TOK6")' and used_at is null")" = 0/1
	check "... which replica b then spends" quiet ocmp "$B" -cmd ir -implicit_confirm -ref "$(ref "$TOK6")" \
	    -secret "pass:$(sec "$TOK6")" -newkey "$T/k5.pem" -subject /CN=x -certout "$T/c6.pem"
	kill -TERM "$PID_d"
	check "replica d stops cleanly on SIGTERM" wait_exit "$PID_d" 10
	umount "$MNT" && MNT=""
else
	ok "# SKIP not root or no tmpfs: the full-disk replica"
fi

# Every address down: one failure per attempt, and the attempts back off.
agent w3 "http://127.0.0.1:$CLOSED/.well-known/cmp" "http://127.0.0.1:$((CLOSED + 1))/.well-known/cmp"
# failures W3 N SECS: the agent logged N failed attempts within SECS
failures() {
	_i=0
	while [ "$_i" -lt $(($2 * 10)) ]; do
		[ "$(grep -c "enrollment failed .*retrying in" "$T/w3.agent.log" 2>/dev/null)" -ge "$1" ] && return 0
		sleep 0.1; _i=$((_i + 1))
	done
	return 1
}
check "an agent whose every CA address fails retries with backoff" failures 2 10
delays=$(grep -oE "enrollment failed .*retrying in [0-9]+s" "$T/w3.agent.log" | grep -oE "[0-9]+s$" | tr -d s | tr '\n' ' ')
check "... each delay longer than the last ($delays)" sh -c 'set -- $1; [ $# -ge 2 ] && [ "$2" -gt "$1" ]' x "$delays"
kill -TERM "$AGENT"; wait_exit "$AGENT" 10

for r in a b c; do
	eval "p=\$PID_$r"
	kill -TERM "$p"
	check "replica $r stops cleanly on SIGTERM" wait_exit "$p" 10
done
grep -h -A20 -E "ERROR: (Address|Leak)Sanitizer|runtime error" "$T"/*.log | sed "s/^/# /" | head -n 40
done_testing
