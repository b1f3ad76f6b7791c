#!/usr/bin/env bash
# The trigger engine's speed ratios (issue 5) counted in CPU instructions
# with valgrind's callgrind instead of seconds: the same count for the same
# build and data whatever else the machine is doing, so the ratios can be
# compared from run to run.  Same data, cases and statements as
# bench/triggers_bench.sh (bench/triggers_setup.sql): single-row INSERTs of
# an incoming call, one per deal, for N deals (default 2,000), with
#   a. 50 triggers, none listening to calls on the deal's pipeline (each
#      call is logged no_trigger, a compact row),
#   b. 5 of them listening, conditions false (decided and logged),
#   c. one of them moving the deal (for scale),
# each against the same INSERTs with no trigger active.
#
# Each run is a single-user backend started from a copy of the prepared
# cluster: it activates the case's triggers, makes one call (deal 1) that
# fills the backend's caches as a long-lived connection has them, then the
# calls of deals 2..N in one statement; the instructions of the same backend
# without that last statement are subtracted.  Set CALLGRIND_KEEP=DIR to
# keep the callgrind files (for callgrind_annotate), CASES="b" to count
# fewer cases.
#
#   N=2000 bash bench/triggers_instructions.sh
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh

N=${N:-2000}
crm_icount_begin bench/triggers_setup.sql "$N"

# measure CASE: millions of instructions of the calls of deals 2..N with the
# case's triggers active, after the warm-up call.
measure() {
	local with without
	with=$(crm_icount "$W" "$1" "SELECT use_case('$1')" "SELECT calls(1)" "SELECT calls($N, 2)")
	without=$(crm_icount "$W" "$1_warmup" "SELECT use_case('$1')" "SELECT calls(1)")
	python3 -c "print(($with - $without) / 1e6)"
}

none=$(measure none)
for case in ${CASES:-a b c}; do
	eval "$case=\$(measure $case)"
done

row() {
	python3 -c 'import sys; n, v, b, g = sys.argv[1:]; v = float(v)
print(f"{n:<62} {v:>10.1f} {v / float(b):>7.3f} {g}")' "$1" "$2" "$none" "$3"
}
echo "Instructions (millions) for $((N - 1)) call INSERTs, warm backend"
printf '%-62s %10s %7s %s\n' case instr ratio goal
row "none: no trigger active" "$none" ""
[ -z "${a:-}" ] || row "a. 50 triggers, none for calls on the deal's pipeline" "$a" "<= 1.20"
[ -z "${b:-}" ] || row "b. 5 of them for calls, conditions false (decided, logged)" "$b" "<= 1.20"
[ -z "${c:-}" ] || row "c. one of them moves each deal (log, history, UPDATE)" "$c" "for scale"
