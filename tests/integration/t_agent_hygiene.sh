#!/bin/sh
# ASAN=yes
# t_agent_hygiene.sh - the agent's token hygiene at start (docs/AGENT.md):
# keys of its label schemes (hsmesh-wl-*, hsmesh-node-*) that no state file
# references are removed, one log line each; the key of its certificate
# stays, and another program's keys (another label, no label) survive.
# Orphans are made the two ways they happen: an agent killed in the middle
# of an enrollment (the CA stopped with SIGSTOP, so the exchange hangs
# after the key was generated), and keys generated with the agent's label
# scheme behind its back.
. "$(dirname "$0")/lib.sh"

ID=spiffe://example.org/web
ID2=spiffe://example.org/db
P11="pkcs11-tool --module $SOFTHSM_MODULE --token-label node --login --pin 1234"

new_token node
printf '1234\n' >"$T/pin"
ca_setup hyca ec-p256
yaml_set "$T/hyca.yaml" listen 127.0.0.1:0
quiet "$HSMESH" ca init -c "$T/hyca.yaml" || { not_ok "ca init"; done_testing; exit 1; }
serve_ca "$T/hyca.yaml" "$T/ca.log"
CA=$SRV
CAPORT=$PORT
"$HSMESH" ca token -c "$T/hyca.yaml" --id "$ID" >"$T/web.tok"
"$HSMESH" ca token -c "$T/hyca.yaml" --id "$ID2" >"$T/db.tok"

# agent_yaml FILE ID TOKENFILE
agent_yaml() {
	cat >"$1" <<EOF
token:
  module: $SOFTHSM_MODULE
  uri: "pkcs11:token=node"
  pin_file: $T/pin
ca:
  url: http://127.0.0.1:$CAPORT/.well-known/cmp
  root: $T/hyca/root.pem
state_dir: $T/state
socket: $T/agent.sock
retry:
  min: 1s
  max: 2s
workloads:
  - id: $2
    uid: $(id -u)
    join_token_file: $3
EOF
}
wait_log() { wait_in "$T/agent.log" "$1" "$2"; }	# PATTERN SECS
labels() { p11_privkeys 1234 node | cut -d'|' -f1 | sort; }
ids() { p11_privkeys 1234 node | cut -d'|' -f2 | tr -d ' ' | tr 'A-F' 'a-f'; }
has_key() { ids | grep -qx "$1"; }
no_key() { ! has_key "$1"; }

# --- an agent enrolls ID: its key is referenced by its cert.pem ---
agent_yaml "$T/web.yaml" "$ID" "$T/web.tok"
"$HSMESH" agent -c "$T/web.yaml" 2>"$T/agent.log" &
AGENT=$!; track $AGENT
check "the agent enrolls $ID" wait_log "$ID: enrolled certificate serial" 20
kill -TERM "$AGENT"; wait_exit "$AGENT" 10
CERT=$T/state/example.org+web/cert.pem
KEEP=$(openssl x509 -in "$CERT" -pubkey -noout | openssl pkey -pubin -outform DER | sha256sum | cut -c1-64)

# --- an agent killed in the middle of an enrollment leaves its new key behind ---
agent_yaml "$T/db.yaml" "$ID2" "$T/db.tok"
kill -STOP "$CA"
mv "$T/agent.log" "$T/agent-web.log"
"$HSMESH" agent -c "$T/db.yaml" 2>"$T/agent.log" &
AGENT=$!; track $AGENT
check "a second agent generates a key for $ID2 and hangs on the stopped CA" \
    wait_log "$ID2: generated ec-p256 key [0-9a-f]{64} in the token" 20
ORPHAN1=$(sed -nE "s/.*$(echo "$ID2" | sed 's|/|\\/|g'): generated ec-p256 key ([0-9a-f]{64}) in the token.*/\1/p" "$T/agent.log" | head -n 1)
kill -KILL "$AGENT"; wait "$AGENT" 2>/dev/null
kill -CONT "$CA"
sleep 0.3
check "killed mid-enrollment: its key $(echo "$ORPHAN1" | cut -c1-16)... is left in the token" \
    has_key "$ORPHAN1"

# --- keys made behind the agent's back: two of its schemes, two of other programs ---
gen() { # LABEL|"" ID_HEX
	if [ -n "$1" ]; then
		$P11 --keypairgen --key-type EC:prime256v1 --label "$1" --id "$2" >/dev/null 2>&1
	else
		$P11 --keypairgen --key-type EC:prime256v1 --id "$2" >/dev/null 2>&1
	fi
}
ORPHAN2=$(printf 'orphan-wl' | sha256sum | cut -c1-64)
ORPHAN3=$(printf 'orphan-node' | sha256sum | cut -c1-64)
FOREIGN1=$(printf 'foreign' | sha256sum | cut -c1-64)
FOREIGN2=$(printf 'nolabel' | sha256sum | cut -c1-64)
gen hsmesh-wl-deadbeef "$ORPHAN2"
gen hsmesh-node-orphan "$ORPHAN3"
gen other-app "$FOREIGN1"
gen "" "$FOREIGN2"
check "the token holds the agent's key, three orphans and two foreign keys ($(labels | tr '\n' ' '))" \
    test "$(ids | wc -l)" -eq 6

# --- the agent starts: orphans go, the rest stays ---
mv "$T/agent.log" "$T/agent-db.log"
rm -rf "$T/state/example.org+db"
"$HSMESH" agent -c "$T/web.yaml" 2>"$T/agent.log" &
AGENT=$!; track $AGENT
check "the agent reuses its certificate" wait_log "$ID: reusing certificate serial" 15
for k in "$ORPHAN1" "$ORPHAN2" "$ORPHAN3"; do
	check "removed the orphan $(echo "$k" | cut -c1-16)... with a log line" \
	    grep -qE "removed unreferenced key $k \(label hsmesh-(wl|node)-[^)]*\) from the token" "$T/agent.log"
	check "... and it is gone from the token" no_key "$k"
done
check "the key of its certificate stays ($(echo "$KEEP" | cut -c1-16)...)" has_key "$KEEP"
check "another program's key (label other-app) survives" has_key "$FOREIGN1"
check "a key without a label survives" has_key "$FOREIGN2"
check "exactly three keys were removed" test "$(grep -c "removed unreferenced key" "$T/agent.log")" -eq 3
tls13_input "$T/data"
"$HSMESH" agent client --socket "$T/agent.sock" sign "$ID" <"$T/data" >"$T/sig.der" 2>"$T/sign.err"
openssl x509 -in "$CERT" -pubkey -noout >"$T/pub.pem"
check "the agent still signs (a TLS 1.3 input) with the kept key ($(head -c 160 "$T/sign.err"))" \
    sh -c 'openssl dgst -sha256 -verify "$1" -signature "$2" "$3" >/dev/null' x "$T/pub.pem" "$T/sig.der" "$T/data"
kill -TERM "$AGENT"; wait_exit "$AGENT" 10

# --- a state file it cannot read: nothing is removed ---
gen hsmesh-wl-cafe0001 "$ORPHAN2"
printf 'not a certificate\n' >"$T/state/broken.pem"
mv "$T/agent.log" "$T/agent-2.log"
"$HSMESH" agent -c "$T/web.yaml" 2>"$T/agent.log" &
AGENT=$!; track $AGENT
check "with an unreadable state file the clean-up is skipped, and says why" \
    wait_log "not removing unreferenced keys from the token: cannot read the state: .*broken.pem" 15
check "... so the orphan stays" has_key "$ORPHAN2"
kill -TERM "$AGENT"; wait_exit "$AGENT" 10
kill -TERM "$CA"; wait_exit "$CA" 10
done_testing
