#!/bin/sh
# Run a libFuzzer target briefly (FUZZ_SECONDS, default 10) from its seed
# corpus and report in TAP. Longer runs: build/fuzz/NAME -max_total_time=600.
t=$1; name=$(basename "$t")
seeds="$(dirname "$0")/corpus/$name"
work=$(mktemp -d); trap 'rm -rf "$work"' EXIT
[ -d "$seeds" ] && cp -r "$seeds"/. "$work"/ 2>/dev/null
if "$t" -max_total_time="${FUZZ_SECONDS:-10}" -rss_limit_mb=2048 -timeout=10 "$work" >"$work.log" 2>&1; then
	echo "ok 1 - $name: $(grep -o 'Done [0-9]* runs' "$work.log" | tail -1) without a crash"
else
	tail -n 40 "$work.log"; echo "not ok 1 - $name crashed"
fi
rm -f "$work.log"
