#!/usr/bin/env bash
# Citus (issue 16): moving N deals into a stage with 3 templated add_comment
# robots on a coordinator with two worker nodes (crm.distribute()) against
# the same on one node, in the same run.  On this 2-CPU machine the three
# nodes share the CPUs, so this shows the overhead of distribution, not a
# speed-up; the per-item costs it prints are what the scaling estimate in
# bench/README.md ("Citus") is computed from.  Nothing here is a pass/fail
# test.
#
#   N=20000 RUNS=5 bash bench/citus_bench.sh
#   PG_ROOT=/tmp/x N=20000 RUNS=5 bash bench/citus_bench.sh   (private copy, no lock)
#
# Method: both clusters hold PREFILL deals (default 100,000) with comments
# and robot log rows from earlier moves (never emptied); each run moves the
# N deals back (not timed) and then into the stage (timed, on a new
# connection to the coordinator / the node), runs alternating between the
# two; medians of RUNS.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
. scripts/citus.sh
crm_install_deps
crm_bench_build
crm_citus_install

N=${N:-20000}
RUNS=${RUNS:-5}
PREFILL=${PREFILL:-100000}

trap 'crm_citus_cluster_stop; crm_cluster_stop' EXIT
crm_cluster_start "crm.worker_enabled = off"
SINGLE_PORT=$PGPORT
SINGLE_HOST=$PGHOST
crm_citus_cluster_start crm_bench "crm.worker_enabled = off"
CITUS_PORT=${CRM_CITUS_PORTS[0]}
CITUS_HOST=$CRM_CITUS_DIR

setup() {
	cat <<SQL
CREATE EXTENSION crm_automation;
$1
INSERT INTO crm.department (id, name) VALUES (1, 'Sales');
INSERT INTO crm.user (id, name, department_id) VALUES (1, 'Seller', 1);
INSERT INTO crm.robot (stage_id, name, action, params, sort)
SELECT crm.stage('deal', 'preparation'), 'r' || g, 'add_comment',
	   jsonb_build_object('text', 'Robot ' || g || ': {{title}} ({{amount}})'), g * 10
  FROM generate_series(1, 3) g;
INSERT INTO crm.deal (title, responsible_id, amount) SELECT 'Deal ' || g, 1, g FROM generate_series(1, $PREFILL) g;
-- earlier history: every deal went through the stage once
UPDATE crm.deal SET stage_id = crm.stage('deal', 'preparation');
UPDATE crm.deal SET stage_id = crm.stage('deal', 'new');
VACUUM ANALYZE;
SQL
}
setup "" | psql -X -q -v ON_ERROR_STOP=1 -h "$SINGLE_HOST" -p "$SINGLE_PORT" -d postgres >/dev/null
setup "SELECT count(*) FROM crm.distribute();" |
	psql -X -q -v ON_ERROR_STOP=1 -h "$CITUS_HOST" -p "$CITUS_PORT" -d crm_bench >/dev/null

# run HOST PORT DB: prints the milliseconds of the timed move
run() {
	psql -X -q -v ON_ERROR_STOP=1 -h "$1" -p "$2" -d "$3" \
		-c "UPDATE crm.deal SET stage_id = crm.stage('deal', 'new') WHERE id <= $N AND stage_id <> crm.stage('deal', 'new')" >/dev/null
	psql -X -q -v ON_ERROR_STOP=1 -h "$1" -p "$2" -d "$3" -At <<SQL | tail -n 1
\timing on
SELECT crm.stage('deal', 'preparation') AS s \gset
UPDATE crm.deal SET stage_id = :s WHERE id <= $N;
SQL
}
ms() { sed -nE 's/^Time: ([0-9.]+) ms.*/\1/p'; }
one=()
three=()
for r in $(seq 1 "$RUNS"); do
	one+=("$(run "$SINGLE_HOST" "$SINGLE_PORT" postgres | ms)")
	three+=("$(run "$CITUS_HOST" "$CITUS_PORT" crm_bench | ms)")
done
median() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2}'; }
m1=$(median "${one[@]}")
m3=$(median "${three[@]}")
check=$(psql -X -At -h "$CITUS_HOST" -p "$CITUS_PORT" -d crm_bench -c \
	"SELECT count(*) FROM crm.timeline_comment WHERE entity_id <= $N")
echo "moving $N deals into a stage with 3 add_comment robots (tables holding $PREFILL deals and their history), medians of $RUNS:"
echo "  one node:                     $m1 ms  (${one[*]})"
echo "  coordinator + 2 workers:      $m3 ms  (${three[*]})"
echo "  ratio 3 nodes / 1 node:       $(echo "$m3 / $m1" | bc -l | xargs printf '%.2f')"
echo "  per deal: $(echo "$m1 * 1000 / $N" | bc -l | xargs printf '%.1f') us one node, $(echo "$m3 * 1000 / $N" | bc -l | xargs printf '%.1f') us distributed"
echo "  comments of the moved deals on the cluster: $check (3 per move, $((RUNS + 1)) moves each)"
