#!/usr/bin/env bash
# The robot engine's speed ratios (issue 3) counted in CPU instructions
# with valgrind's callgrind instead of seconds: the same count for the same
# build and data whatever else the machine is doing, so the ratios can be
# compared from run to run.  Same statements and baselines as
# bench/robots_bench.sh (bench/robots_setup.sql), N deals (default 5,000).
#
# Each statement runs in a single-user backend started from a copy of the
# prepared cluster, after a warm-up statement on one row that fills the
# backend's caches as a long-lived connection has them; the instructions of
# the same backend running only the warm-up are subtracted.  Case 3 (no
# goal in the issue) moves SINGLE deals (500) one statement each, as an
# application does, where a statement's fixed costs are not shared.
#
# REALISTIC=1 counts the realistic cases instead (issue 17, setup
# bench/robots_realistic.sql): 30 robots over 10 stages of a second deal
# pipeline, grown comment tables and log, moves into its stage w5 (3
# templated add_comment robots) from w1; each case on a NEW backend (cold:
# the counts of a backend that only ran SELECT 1 are subtracted, so the
# rule cache, the relation caches and the plans each backend loads are
# counted) and warm (after a warm-up move of other deals, subtracted).
#
#   N=5000 bash bench/robots_instructions.sh
#   N=5000 REALISTIC=1 bash bench/robots_instructions.sh
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh

N=${N:-5000}
SINGLE=${SINGLE:-500}
REALISTIC=${REALISTIC:-0}
if [ "$REALISTIC" = 1 ]; then
	crm_icount_begin bench/robots_realistic.sql "$N"
else
	crm_icount_begin bench/robots_setup.sql "$N"
fi

# measure NAME WARMUP SQL...: millions of instructions of the statements
# after WARMUP.
measure() {
	local with without
	local name=$1 warmup=$2
	shift 2
	with=$(crm_icount "$W" "$name" "$warmup" "$@")
	without=$(crm_icount "$W" "${name}_warmup" "$warmup")
	python3 -c "print(($with - $without) / 1e6)"
}

# cold NAME SQL...: millions of instructions of a new backend running the
# statements, less those of one running SELECT 1.
cold() {
	local with without
	with=$(crm_icount "$W" "$1" "${@:2}")
	without=$(crm_icount "$W" "${1}_empty" "SELECT 1")
	python3 -c "print(($with - $without) / 1e6)"
}
row() { python3 -c "print(f'{\"$1\":<62} {$2:>10.1f} {$3:>10.1f} {$2 / $3:>7.3f} $4')"; }

if [ "$REALISTIC" = 1 ]; then
	w5="(SELECT id FROM bench_stage WHERE n = 5)"
	declare -A r
	for t in engine:crm.deal base:base_deal; do
		k=${t%%:*} tbl=${t#*:}
		r[bulk_cold_$k]=$(cold "bulk_cold_$k" "UPDATE $tbl SET stage_id = $w5 WHERE id > 100")
		r[bulk_warm_$k]=$(measure "bulk_warm_$k" "UPDATE $tbl SET stage_id = $w5 WHERE id <= 100" \
			"UPDATE $tbl SET stage_id = $w5 WHERE id > 100")
		mapfile -t moves < <(for i in $(seq 2 $((SINGLE + 1))); do echo "UPDATE $tbl SET stage_id = $w5 WHERE id = $i"; done)
		r[single_warm_$k]=$(measure "single_warm_$k" "UPDATE $tbl SET stage_id = $w5 WHERE id = 1" "${moves[@]}")
		r[single_cold_$k]=$(cold "single_cold_$k" "UPDATE $tbl SET stage_id = $w5 WHERE id = 2")
	done
	echo "Instructions (millions), realistic: $((N - 100)) deals moved from w1 into w5 (3 add_comment robots) of a"
	echo "10-stage, 30-robot non-default pipeline, comment tables and log holding 200,000 rows; engine vs PL/pgSQL"
	printf '%-62s %10s %10s %7s %s\n' case engine baseline ratio goal
	row "R1. one UPDATE moving $((N - 100)) deals, new backend" "${r[bulk_cold_engine]}" "${r[bulk_cold_base]}" "<= 1.00"
	row "R2. the same, warm backend" "${r[bulk_warm_engine]}" "${r[bulk_warm_base]}" "<= 1.00"
	row "R3. $SINGLE moves of one deal each (one statement each), warm" "${r[single_warm_engine]}" "${r[single_warm_base]}" "<= 1.00"
	row "R4. one move of one deal, new backend" "${r[single_cold_engine]}" "${r[single_cold_base]}" "(reported)"
	exit 0
fi

prep="(SELECT id FROM crm.stage WHERE code = 'preparation' AND pipeline_id = (SELECT id FROM crm.pipeline WHERE entity_type = 'deal' AND is_default))"
nostage_engine=$(measure nostage_engine "UPDATE crm.deal SET amount = amount + 1 WHERE id = 1" \
	"UPDATE crm.deal SET amount = amount + 1 WHERE id > 1")
nostage_base=$(measure nostage_base "UPDATE same_deal SET amount = amount + 1 WHERE id = 1" \
	"UPDATE same_deal SET amount = amount + 1 WHERE id > 1")
move_engine=$(measure move_engine "UPDATE crm.deal SET stage_id = $prep WHERE id = 1" \
	"UPDATE crm.deal SET stage_id = $prep WHERE id > 1")
move_base=$(measure move_base "UPDATE base_deal SET stage_id = $prep WHERE id = 1" \
	"UPDATE base_deal SET stage_id = $prep WHERE id > 1")

# 3. one deal per statement, as an application moves them: SINGLE statements
single() {
	local i
	for i in $(seq 2 $((SINGLE + 1))); do
		echo "UPDATE $1 SET stage_id = $prep WHERE id = $i"
	done
}
mapfile -t single_engine_sql < <(single crm.deal)
mapfile -t single_base_sql < <(single base_deal)
single_engine=$(measure single_engine "UPDATE crm.deal SET stage_id = $prep WHERE id = 1" "${single_engine_sql[@]}")
single_base=$(measure single_base "UPDATE base_deal SET stage_id = $prep WHERE id = 1" "${single_base_sql[@]}")
echo "Instructions (millions) for $N deals, warm backend"
printf '%-62s %10s %10s %7s %s\n' case engine baseline ratio goal
row "1. UPDATE changing no stage vs identical table" "$nostage_engine" "$nostage_base" "<= 1.10"
row "2. move into a stage with 3 add_comment robots vs PL/pgSQL" "$move_engine" "$move_base" "<= 1.00"
row "3. $SINGLE moves of one deal each (one statement per deal), same" "$single_engine" "$single_base" "(no goal)"
