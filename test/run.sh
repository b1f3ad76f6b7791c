#!/usr/bin/env bash
# Runs every test of crm_automation on a throw-away cluster:
#   pg_regress   sql/*.sql against expected/*.out (exact SQL output)
#   pgTAP        test/pgtap/*.sql through pg_prove (assertions)
#   integration  test/integration/*.sh (worker against local servers)
#   layers       test/layers.sh (src/ folders use only the layers below them)
# Works as root (the cluster then belongs to the postgres user) or as a user
# with sudo.  Prints one closing line: "crm_automation: N passed, M failed".
#
#   test/run.sh [--only WORD]   runs only the tests whose name contains WORD
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh

only=
if [ "${1:-}" = --only ]; then only=$2; fi

crm_install_deps

# Other checkouts on this machine install the same extension: one run at a
# time, from install to the last test.
exec 9>/tmp/crm_automation.test.lock
flock 9

crm_build_install
trap crm_cluster_stop EXIT
# pg_regress and pgTAP run jobs themselves (crm.run_next_job()): the worker
# stays idle on this cluster.  Integration tests start clusters of their own
# with the worker on.
crm_cluster_start "crm.worker_enabled = off"

passed=0
failed=0

# summary_of OUTPUT: adds the "N passed, M failed" line of a script's output.
summary_of() {
	local line p f
	line=$(echo "$1" | grep -E '[0-9]+ passed, [0-9]+ failed' | tail -n 1)
	if [ -z "$line" ]; then
		return 1
	fi
	p=$(echo "$line" | sed -E 's/.*\b([0-9]+) passed, ([0-9]+) failed.*/\1/')
	f=$(echo "$line" | sed -E 's/.*\b([0-9]+) passed, ([0-9]+) failed.*/\2/')
	passed=$((passed + p)); failed=$((failed + f))
}

echo "== layers"
if [ -z "$only" ] || [[ layers == *"$only"* ]]; then
	out=$(bash test/layers.sh 2>&1) || true
	echo "$out"
	summary_of "$out" || { echo "layers: no summary line"; failed=$((failed + 1)); }
fi

echo "== pg_regress"
rm -rf results regression.diffs regression.out
regress=$(make -s -f Makefile print-regress 2>/dev/null | tr ' ' '\n' | grep -e "$only" | tr "\n" " " || true)
if [ -n "$regress" ] && make -s installcheck REGRESS="$regress" >/tmp/crm_regress.$$ 2>&1; then :; fi
touch /tmp/crm_regress.$$; cat /tmp/crm_regress.$$
n_good=$(grep -cE '\.\.\. ok' /tmp/crm_regress.$$ || true)
n_bad=$(grep -cE '\.\.\. FAILED' /tmp/crm_regress.$$ || true)
if [ -n "$regress" ] && [ "$n_good" -eq 0 ] && [ "$n_bad" -eq 0 ]; then n_bad=1; fi	# pg_regress did not run
rm -f /tmp/crm_regress.$$
[ -f regression.diffs ] && head -300 regression.diffs
passed=$((passed + n_good))
failed=$((failed + n_bad))

echo "== pgTAP"
psql -q -X -d postgres -c "CREATE DATABASE crm_tap" >/dev/null
psql -q -X -d crm_tap -c "CREATE EXTENSION pgtap" >/dev/null
tap_files=$(ls test/pgtap/*.sql 2>/dev/null | grep -e "$only" || true)
if [ -n "$tap_files" ] && pg_prove -d crm_tap $tap_files >/tmp/crm_prove.$$ 2>&1; then :; fi
touch /tmp/crm_prove.$$; cat /tmp/crm_prove.$$
tap_total=$(sed -n 's/^Files=[0-9]*, Tests=\([0-9]*\),.*/\1/p' /tmp/crm_prove.$$)
tap_total=${tap_total:-0}
tap_failed=0
for n in $(sed -nE 's/.*Failed ([0-9]+)\/[0-9]+ subtests.*/\1/p' /tmp/crm_prove.$$); do
	tap_failed=$((tap_failed + n))
done
# A file that died or broke its plan fails without a subtest count.
if [ -n "$tap_files" ] && ! grep -q '^Result: PASS' /tmp/crm_prove.$$ && [ "$tap_failed" -eq 0 ]; then tap_failed=1; fi
rm -f /tmp/crm_prove.$$
[ "$tap_failed" -gt "$tap_total" ] && tap_total=$tap_failed
passed=$((passed + tap_total - tap_failed))
failed=$((failed + tap_failed))

echo "== integration"
for t in test/integration/*.sh; do
	[ -e "$t" ] || continue
	case "$t" in *"$only"*) ;; *) continue ;; esac
	name=$(basename "$t" .sh)
	if out=$(bash "$t" 2>&1); then
		echo "$out" | tail -n 20
	else
		echo "$out" | tail -n 60
	fi
	summary_of "$out" || { echo "$name: no summary line"; failed=$((failed + 1)); }
done

echo
echo "crm_automation: $passed passed, $failed failed"
[ "$failed" -eq 0 ] && [ "$passed" -gt 0 ]
