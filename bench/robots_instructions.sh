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
#   N=5000 bash bench/robots_instructions.sh
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh

N=${N:-5000}
SINGLE=${SINGLE:-500}
crm_icount_begin bench/robots_setup.sql "$N"

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
row() { python3 -c "print(f'{\"$1\":<58} {$2:>10.1f} {$3:>10.1f} {$2 / $3:>7.3f} $4')"; }
echo "Instructions (millions) for $N deals, warm backend"
printf '%-58s %10s %10s %7s %s\n' case engine baseline ratio goal
row "1. UPDATE changing no stage vs identical table" "$nostage_engine" "$nostage_base" "<= 1.10"
row "2. move into a stage with 3 add_comment robots vs PL/pgSQL" "$move_engine" "$move_base" "<= 1.00"
row "3. $SINGLE moves of one deal each (one statement per deal), same" "$single_engine" "$single_base" "(no goal)"
