# tests/integration/tpm.sh - sourced: a throwaway TPM 2.0 behind PKCS#11.
#
# A software TPM (swtpm, on Unix sockets only), a private D-Bus session bus
# and tpm2-abrmd on it, and a tpm2-pkcs11 store, all in one directory. The
# direct swtpm TCTI runs out of object contexts once a few keys exist, so
# the PKCS#11 module talks to the TPM through the broker (tabrmd TCTI).
#
#   tpm_available        true when the Debian packages are installed
#   tpm_start DIR        start the stack in DIR (must exist), export
#                        DBUS_SESSION_BUS_ADDRESS, TPM2_PKCS11_TCTI,
#                        TPM2_PKCS11_STORE, TPM2TOOLS_TCTI; pids go to `track`
#                        when the caller has it (tests/integration/lib.sh)
#   tpm_new_token LABEL [PIN] [SO_PIN]   a token in the store (1234 / 5678)
#   tpm_stop             stop what tpm_start started
#   tpm_run CMD...       all of it around one command (tests/run.sh, bench)
TPM_MODULE=/usr/lib/x86_64-linux-gnu/pkcs11/libtpm2_pkcs11.so
TPM_TCTI_LIB=/usr/lib/x86_64-linux-gnu/libtss2-tcti-tabrmd.so.0
_tpm_pids=""

tpm_available() {
	for _c in swtpm tpm2-abrmd tpm2_ptool tpm2_dictionarylockout dbus-daemon; do
		command -v "$_c" >/dev/null 2>&1 || return 1
	done
	[ -f "$TPM_MODULE" ] && [ -e "$TPM_TCTI_LIB" ]
}

# _tpm_wait SECS COMMAND...: poll COMMAND every 50 ms until it succeeds
_tpm_wait() {
	_w=$(($1 * 20)); shift
	while [ "$_w" -gt 0 ]; do
		"$@" >/dev/null 2>&1 && return 0
		sleep 0.05; _w=$((_w - 1))
	done
	return 1
}

_tpm_bg() { # LOG COMMAND...: start in the background, remember the pid
	_l=$1; shift
	"$@" >"$_l" 2>&1 </dev/null &
	_tpm_pids="$! $_tpm_pids"
	command -v track >/dev/null 2>&1 && track $!
	return 0
}

tpm_start() {
	_d=$1
	mkdir -p "$_d/tpmstate" "$_d/p11store" || return 1
	_tpm_bg "$_d/swtpm.log" swtpm socket --tpm2 --tpmstate dir="$_d/tpmstate" \
	    --server type=unixio,path="$_d/tpm.sock" --ctrl type=unixio,path="$_d/tpm.sock.ctrl" \
	    --flags not-need-init,startup-clear
	# --nofork: $! is the daemon itself, so cleanup can reach it.
	_tpm_bg "$_d/dbus.log" dbus-daemon --nofork --nopidfile \
	    --config-file=/usr/share/dbus-1/session.conf --address=unix:path="$_d/bus"
	_tpm_wait 10 test -S "$_d/tpm.sock.ctrl" && _tpm_wait 10 test -S "$_d/bus" ||
	    { echo "tpm_start: swtpm or dbus-daemon did not come up (logs in $_d)" >&2; return 1; }
	export DBUS_SESSION_BUS_ADDRESS="unix:path=$_d/bus"
	export TPM2TOOLS_TCTI="tabrmd:bus_type=session" TPM2_PKCS11_TCTI="tabrmd:bus_type=session"
	export TPM2_PKCS11_STORE="$_d/p11store" TSS2_LOG="all+none"
	_tpm_bg "$_d/abrmd.log" tpm2-abrmd --session --allow-root --flush-all \
	    --tcti=swtpm:path="$_d/tpm.sock"
	_tpm_wait 10 tpm2_getrandom 4 ||
	    { echo "tpm_start: tpm2-abrmd did not come up: $(tail -n 1 "$_d/abrmd.log")" >&2; return 1; }
	# Wrong-PIN tests must not trip the TPM's dictionary-attack lockout.
	tpm2_dictionarylockout --setup-parameters --max-tries=1000 --recovery-time=1 \
	    --lockout-recovery-time=1 >/dev/null 2>&1 &&
	tpm2_ptool init --path="$TPM2_PKCS11_STORE" >/dev/null 2>"$_d/ptool.err" ||
	    { echo "tpm_start: tpm2_ptool init: $(tail -n 1 "$_d/ptool.err")" >&2; return 1; }
}

tpm_new_token() {
	tpm2_ptool addtoken --pid=1 --label="$1" --userpin="${2:-1234}" --sopin="${3:-5678}" \
	    --path="$TPM2_PKCS11_STORE" >/dev/null
}

# _tpm_gone PID: not running (absent, or a zombie waiting for us)
_tpm_gone() {
	_st=$(sed 's/.*) //' /proc/"$1"/stat 2>/dev/null | cut -d' ' -f1)
	[ -z "$_st" ] || [ "$_st" = Z ] || [ "$_st" = X ]
}

tpm_stop() {
	for _p in $_tpm_pids; do kill "$_p" 2>/dev/null; done
	for _p in $_tpm_pids; do
		_tpm_wait 2 _tpm_gone "$_p" || kill -9 "$_p" 2>/dev/null
		wait "$_p" 2>/dev/null
	done
	_tpm_pids=""
}

tpm_run() {
	_rd=$(mktemp -d /tmp/hsmesh-tpm.XXXXXX) || return 1
	trap 'tpm_stop; rm -rf "$_rd"' EXIT INT TERM
	tpm_start "$_rd" || return 1
	HSMESH_TOKEN_BACKEND=tpm "$@"
}
