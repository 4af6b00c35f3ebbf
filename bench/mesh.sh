# bench/mesh.sh - what bench/run.sh and bench/kaprofile.sh both start from,
# sourced after tests/integration/lib.sh (which gives $T, new_token,
# write_ca_yaml, track):
#
# mesh_setup: a CA (keys in SoftHSM2) serving CMP, CA_PID and ROOT set;
# for workloads a and b (spiffe://example.org/a, .../b) a file key and its
# certificate ($T/fW.key, fW.pem, fW.combined: HAProxy's and stunnel's
# keys) and a join token ($T/W.join) for the agent; the node token, PIN
# in $T/node.pin. kids: a PID list with the children (an agent and its keyholder).
mesh_setup() {
	new_token ca; printf '1234\n' >"$T/ca.pin"
	write_ca_yaml "$T/ca.yaml" ca "$T/ca.pin"
	"$HSMESH" ca init -c "$T/ca.yaml" >/dev/null
	"$HSMESH" ca serve -c "$T/ca.yaml" --port-file "$T/ca.port" 2>"$T/ca.log" &
	CA_PID=$!; track $CA_PID
	for _ in $(seq 100); do [ -s "$T/ca.port" ] && break; sleep 0.05; done
	ROOT=$T/ca/root.pem
	for w in a b; do
		openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$T/f$w.key" \
		    -subj "/CN=$w" -out "$T/f$w.csr" 2>/dev/null
		"$HSMESH" ca issue -c "$T/ca.yaml" --csr "$T/f$w.csr" --id "spiffe://example.org/$w" \
		    --ttl 2h >"$T/f$w.pem"
		cat "$T/f$w.pem" "$T/f$w.key" >"$T/f$w.combined"
		"$HSMESH" ca token -c "$T/ca.yaml" --id "spiffe://example.org/$w" >"$T/$w.join"
	done
	new_token node; printf '1234\n' >"$T/node.pin"
}

# kids PID...: the PIDs and their children (the agent's keyholder), one line
kids() { for p in "$@"; do echo "$p"; cat /proc/"$p"/task/*/children 2>/dev/null; done | tr ' ' '\n' | grep . | tr '\n' ' '; }
