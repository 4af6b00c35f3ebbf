#!/bin/bash
# bench/callgrind.sh OUT_N1 OUT_N2 DN [TOP] [--inclusive]
# bench/callgrind.sh --compare A_N1 A_N2 B_N1 B_N2 DN [TOP]
#
# Where the instructions of DN extra handshakes go: two callgrind profiles
# of the same server, one after N1 handshakes and one after N2 = N1 + DN,
# compared function by function, so start-up and shutdown cancel. Prints
# the TOP (default 20) functions by instructions per handshake:
#
#   Ir/handshake  share  function [object]
#
# Self cost by default; --inclusive counts each function with its callees
# (shares then add up to more than 100 %). --compare prints the functions
# on which server A spends more instructions per handshake than server B
# (e.g. the hsmesh proxy against openssl s_server), largest excess first.
# `make bench` writes these lists to bench/results/callgrind-*.txt.
set -u
usage() { echo "usage: $0 OUT_N1 OUT_N2 DN [TOP] [--inclusive] | --compare A_N1 A_N2 B_N1 B_N2 DN [TOP]" >&2; exit 2; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
TAB=$(printf '\t')
# annot FILE INCL: one line per function, "Ir<TAB>file:function [object]"
annot() {
	callgrind_annotate --auto=no --threshold=100 --inclusive="$2" "$1" 2>/dev/null |
	    sed -n 's/^ *\([0-9,][0-9,]*\) ([ 0-9.]*%)  *\(.*\)$/\1\t\2/p' | grep -v 'PROGRAM TOTALS' | sed 's/ \[[^]]*\]$//' | tr -d ','
}
total() { awk '/^(summary|totals):/ {print $2; exit}' "$1"; }
# per_hs N1 N2 DN INCL: "Ir per handshake<TAB>function" for every function that grew
per_hs() {
	annot "$1" "$4" >"$tmp/a"; annot "$2" "$4" >"$tmp/b"
	awk -F'\t' -v dn="$3" '
		NR == FNR { a[$2] += $1; next }
		{ b[$2] += $1 }
		END { for (f in b) { d = (b[f] - a[f]) / dn; if (d > 0) printf "%.0f\t%s\n", d, f } }' "$tmp/a" "$tmp/b"
}
show() { # show TOTAL: the sorted "Ir<TAB>function" lines of stdin, TOP of them, with shares of TOTAL
	sort -t"$TAB" -k1,1nr | head -n "$top" |
	    awk -F'\t' -v tot="$1" '{ printf "%12d  %5.1f%%  %s\n", $1, (tot > 0 ? 100 * $1 / tot : 0), $2 }'
}

if [ "${1:-}" = --compare ]; then
	[ $# -ge 6 ] || usage
	top=${7:-20}
	ta=$((($(total "$3") - $(total "$2")) / $6)); tb=$((($(total "$5") - $(total "$4")) / $6))
	per_hs "$2" "$3" "$6" no >"$tmp/A"; per_hs "$4" "$5" "$6" no >"$tmp/B"
	printf '%12s  %6s  %s\n' "excess Ir/hs" "of gap" "function [object] (A minus B)"
	printf '%12d  %6s  %s\n' $((ta - tb)) "100%" "(all: A $ta - B $tb per handshake)"
	awk -F'\t' 'NR == FNR { b[$2] = $1; next } { d = $1 - b[$2]; if (d > 0) printf "%d\t%s\n", d, $2 }' \
	    "$tmp/B" "$tmp/A" | show $((ta - tb))
	exit 0
fi
[ $# -ge 3 ] || usage
top=${4:-20} incl=no
[ "${5:-}" = --inclusive ] && incl=yes
tot=$((($(total "$2") - $(total "$1")) / $3))
printf '%12s  %6s  %s\n' "Ir/handshake" "share" "function [object]"
printf '%12d  %6s  %s\n' "$tot" "100%" "(all, per handshake)"
per_hs "$1" "$2" "$3" $incl | show "$tot"
