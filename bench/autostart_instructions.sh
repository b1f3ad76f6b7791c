#!/usr/bin/env bash
# Auto-start's cost (issue 14, item 3) counted in CPU instructions with
# valgrind's callgrind instead of seconds: the same count for the same build
# and data whatever else the machine is doing.  Same data and statements as
# bench/autostart_bench.sh (bench/autostart_setup.sql): one INSERT of N deals
# (default 5,000) into a crm.deal holding 110,000, and N/10 single-row
# INSERTs, one statement each, with
#   none  no template auto-starts (the baseline),
#   other a template auto-starts on leads only,
#   one   a template on deals with one set_status_text activity: an
#         instance started and completed per deal (goal <= 1.20),
#   floor the bulk INSERT writing, in the same statement (a CTE), an
#         instance row and a trace row per deal into copies of the two
#         tables (no template): the least those rows cost, by SQL;
#   floor1 the same with the instance rows only.
#
# Each run is a single-user backend started from a copy of the prepared
# cluster: it switches the templates (use_case), inserts one deal that fills
# the backend's caches as a long-lived connection has them, then runs the
# measured statements; the instructions of the same backend without them
# are subtracted.  CALLGRIND_KEEP=DIR keeps the callgrind files (for
# callgrind_annotate), CASES="one" counts fewer cases.
#
#   N=5000 bash bench/autostart_instructions.sh
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh

N=${N:-5000}
crm_icount_begin bench/autostart_setup.sql "$N"

bulk="INSERT INTO crm.deal (title, responsible_id, amount) SELECT 'New deal ' || g, 1, g FROM generate_series(1, $N) g"
# floor: the same deals, and an instance row and a trace row per deal
# written by the same statement (no template auto-starts); floor1: the
# instance rows only
instances="INSERT INTO floor_instance (template_id, document_type, document_id, status, status_text, finished_at) SELECT 1, 'deal', id, 'completed', 'Welcome, ' || title, now() FROM d"
floor="WITH d AS ($bulk RETURNING id, title), i AS ($instances RETURNING id, document_id, status_text) INSERT INTO floor_log (instance_id, document_type, document_id, path, type, status, outputs, started_at, finished_at) SELECT id, 'deal', document_id, 'activities[0]', 'set_status_text', 'done', jsonb_build_object('text', status_text), clock_timestamp(), clock_timestamp() FROM i"
floor1="WITH d AS ($bulk RETURNING id, title) $instances"
mapfile -t single < <(for i in $(seq 1 $((N / 10))); do
	echo "INSERT INTO crm.deal (title, responsible_id, amount) VALUES ('Single deal $i', 1, $i)"
done)
warm=("CALL use_case('CASE')" "INSERT INTO crm.deal (title, responsible_id) VALUES ('warm-up', 1)")

# measure CASE KIND: millions of instructions of the measured statements.
measure() {
	local with without c=$1
	local w=("${warm[@]/CASE/$c}")
	if [ "$2" = floor ] || [ "$2" = floor1 ]; then
		with=$(crm_icount "$W" "${c}_$2" "${w[@]}" "${!2}")
	elif [ "$2" = bulk ]; then
		with=$(crm_icount "$W" "${c}_bulk" "${w[@]}" "$bulk")
	else
		with=$(crm_icount "$W" "${c}_single" "${w[@]}" "${single[@]}")
	fi
	without=$(crm_icount "$W" "${c}_warmup" "${w[@]}")
	python3 -c "print(($with - $without) / 1e6)"
}

declare -A r
for c in none ${CASES:-other one}; do
	for k in bulk single; do
		r[${c}_$k]=$(measure "$c" "$k")
	done
done
if [ -z "${NOFLOOR:-}" ]; then
	r[floor_bulk]=$(measure none floor)
	r[floor1_bulk]=$(measure none floor1)
fi
row() {
	python3 -c 'import sys; n, b, bn, s, sn = sys.argv[1:]
b, bn, s, sn = map(float, (b, bn, s, sn))
print(f"{n:<46} {b:>10.1f} {b / bn:>7.3f} {s:>10.1f} {s / sn:>7.3f}")' "$1" "$2" "${r[none_bulk]}" "$3" "${r[none_single]}"
}
echo "Instructions (millions), warm backend: one INSERT of $N deals / $((N / 10)) single-row INSERTs"
printf '%-46s %10s %7s %10s %7s\n' case bulk ratio single ratio
row "none: no template auto-starts" "${r[none_bulk]}" "${r[none_single]}"
[ -z "${r[other_bulk]:-}" ] || row "other: a template on leads only (~1.00)" "${r[other_bulk]}" "${r[other_single]}"
[ -z "${r[one_bulk]:-}" ] || row "one: a template on deals, set_status_text (<= 1.20)" "${r[one_bulk]}" "${r[one_single]}"
floor_row() {
	python3 -c 'import sys; t = sys.argv[1]; f, n = map(float, sys.argv[2:])
print(f"{t:<46} {f:>10.1f} {f / n:>7.3f}")' "$1" "$2" "${r[none_bulk]}"
}
[ -z "${r[floor_bulk]:-}" ] || floor_row "floor: + an instance and a trace row each, by SQL" "${r[floor_bulk]}"
[ -z "${r[floor1_bulk]:-}" ] || floor_row "floor1: + an instance row each, by SQL" "${r[floor1_bulk]}"
