#!/bin/sh
# t_help.sh - `hsmesh --help` names every command that src/main.c dispatches,
# every subcommand of those (the `subcommands:` lists and the `usage:` lines of
# `hsmesh COMMAND --help`, and the table of src/ca/main.c), and every command
# answers --help on stdout with status 0.
. "$(dirname "$0")/lib.sh"

ROOT=${HSMESH_ROOT:-$(cd "$(dirname "$0")/../.." && pwd)}
"$HSMESH" --help >"$T/help" 2>"$T/help.err"
check "hsmesh --help exits 0 with nothing on stderr" test ! -s "$T/help.err"
# listed WORDS...: a line of the command list starts with exactly these words
listed() { grep -qE "^  $*( |\$)" "$T/help"; }

# The commands main.c dispatches: its table's { "name", name_main } rows.
CMDS=$(sed -n 's/^[[:space:]]*{ "\([a-z][a-z-]*\)", [a-z_]*_main },.*/\1/p' "$ROOT/src/main.c")
check "src/main.c's dispatch table read ($(echo $CMDS))" test "$(echo "$CMDS" | wc -w)" -ge 7
for c in $CMDS; do
	check "hsmesh --help names '$c'" listed "$c"
	"$HSMESH" "$c" --help >"$T/$c.help" 2>&1
	check "hsmesh $c --help exits 0 with a usage line" sh -c '[ $1 -eq 0 ] && grep -q "^usage: hsmesh $2" "$3"' x $? "$c" "$T/$c.help"
	# subcommands a command's own help shows: "usage: hsmesh C SUB ..." and
	# "       hsmesh C SUB ..." lines (SUB lower case, not an option), and the
	# rows of its "subcommands:" list
	sed -n "s/^\(usage:\)\{0,1\} *hsmesh $c \([a-z][a-z-]*\)\( .*\)\{0,1\}\$/\2/p" "$T/$c.help" >"$T/$c.subs"
	sed -n '/^subcommands:/,/^$/s/^  \([a-z][a-z-]*\) .*/\1/p' "$T/$c.help" >>"$T/$c.subs"
	for s in $(sort -u "$T/$c.subs"); do
		check "hsmesh --help names '$c $s'" listed "$c $s"
	done
done
# The ca subcommands src/ca/main.c dispatches: its table's { "name", usage_name, ... } rows.
SUBS=$(sed -n 's/^[[:space:]]*{ "\([a-z]*\)", usage_[a-z]*, .*/\1/p' "$ROOT/src/ca/main.c")
check "src/ca/main.c's subcommand table read ($(echo $SUBS))" test "$(echo "$SUBS" | wc -w)" -ge 5
for s in $SUBS; do
	check "hsmesh --help names 'ca $s'" listed "ca $s"
	check "hsmesh ca $s --help exits 0" quiet "$HSMESH" ca "$s" --help
done
# And the other way round: every command the list names is dispatched.
for c in $(sed -n '/^commands:/,/^$/s/^  \([a-z][a-z-]*\).*/\1/p' "$T/help" | sort -u); do
	check "'$c' in hsmesh --help is a command main.c dispatches" sh -c 'echo "$1" | grep -qx "$2"' x "$CMDS" "$c"
done
refuse "an unknown command fails with one line" "unknown command" "$HSMESH" no-such-command
done_testing
