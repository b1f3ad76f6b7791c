#!/usr/bin/env bash
# Robot engine benchmarks (issue 3).  Prints ratios measured in one run on a
# throw-away cluster; nothing here is a pass/fail test.
#
#   1. An UPDATE that changes no stage: crm.deal (with the engine's triggers)
#      vs an identical table (same columns, defaults, indexes, checks and
#      foreign keys) without them.
#   2. N deals moved into a stage with 3 templated add_comment robots vs a
#      lean PL/pgSQL trigger that looks rules up by stage and inserts the
#      rendered comments into a table identical to crm.timeline_comment.
#   3. Per-row cost of a move as robots on OTHER stages grow from 10 to 10,000.
#   4. One UPDATE moving 100,000 deals into that stage: time and memory.
#
# Method: every timed statement starts on a vacuumed table, engine and
# baseline runs alternate (so drift hits both), and each figure is the median
# of RUNS runs (default 5).
#
# REALISTIC=1 times the realistic cases instead (issue 17, setup
# bench/robots_realistic.sql): N deals moved from w1 into w5 (3 templated
# add_comment robots) of a 10-stage, 30-robot second deal pipeline, vs the
# PL/pgSQL trigger on a deal table of the same shape; the comment tables and
# the log hold 200,000 rows and are never emptied (each run adds to them,
# the moves back to w1 too: engine and baseline alike).  Each statement runs
# on a NEW connection (cold) and on one that moved 100 other deals first
# (warm); the WAL each wrote is reported too.  Then SINGLE (default 400)
# single-deal moves, one statement and one transaction each, on one
# connection, and 50 on a new connection each, engine and baseline
# alternating move by move.
#
#   N=20000 RUNS=5 bash bench/robots_bench.sh
#   N=20000 RUNS=5 REALISTIC=1 bash bench/robots_bench.sh
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
crm_install_deps
exec 9>/tmp/crm_automation.test.lock
flock 9
crm_build_install
trap crm_cluster_stop EXIT
crm_cluster_start "crm.worker_enabled = off"

N=${N:-20000}
RUNS=${RUNS:-5}
P="psql -X -q -v ON_ERROR_STOP=1 -d postgres"

if [ "${REALISTIC:-0}" = 1 ]; then
	SINGLE=${SINGLE:-400}
	$P -v n="$N" -f bench/robots_realistic.sql
	w1=$($P -At -c "SELECT stage_w(1)")
	w5=$($P -At -c "SELECT stage_w(5)")
	# run K TABLE WARM: the deals back in w1 (not timed, a connection of its
	# own), then the timed move of deals 101.. on a new connection, after a
	# move of deals 1..100 on it when WARM.
	run() {
		$P -c "UPDATE $2 SET stage_id = $w1 WHERE stage_id <> $w1" -c "VACUUM $2"
		{
			if [ "$3" = warm ]; then echo "UPDATE $2 SET stage_id = $w5 WHERE id <= 100;"; fi
			echo "SELECT timed_wal('$1', 'UPDATE $2 SET stage_id = $w5 WHERE id > 100');"
		} | $P >/dev/null
	}
	for _ in $(seq "$RUNS"); do
		for v in cold warm; do
			run "${v}_engine" crm.deal $v
			run "${v}_base" base_deal $v
		done
	done
	# single-deal moves, engine and baseline alternating move by move: SINGLE
	# on one connection (each its own statement and transaction, timed by
	# the server), then 50 each on a new connection each
	$P -c "UPDATE crm.deal SET stage_id = $w1 WHERE stage_id <> $w1" -c "VACUUM crm.deal"
	$P -c "UPDATE base_deal SET stage_id = $w1 WHERE stage_id <> $w1" -c "VACUUM base_deal"
	{
		echo "UPDATE crm.deal SET stage_id = $w5 WHERE id = 1;"
		echo "UPDATE base_deal SET stage_id = $w5 WHERE id = 1;"
		for i in $(seq 2 $((SINGLE + 1))); do
			echo "SELECT timed_wal('single_warm_engine', 'UPDATE crm.deal SET stage_id = $w5 WHERE id = $i');"
			echo "SELECT timed_wal('single_warm_base', 'UPDATE base_deal SET stage_id = $w5 WHERE id = $i');"
		done
	} | $P >/dev/null
	for i in $(seq $((SINGLE + 2)) $((SINGLE + 51))); do
		echo "SELECT timed_wal('single_cold_engine', 'UPDATE crm.deal SET stage_id = $w5 WHERE id = $i');" | $P >/dev/null
		echo "SELECT timed_wal('single_cold_base', 'UPDATE base_deal SET stage_id = $w5 WHERE id = $i');" | $P >/dev/null
	done
	$P <<'SQL'
\pset footer off
CREATE FUNCTION pg_temp.med(c text) RETURNS float8 LANGUAGE sql AS
	$$ SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY ms) FROM bench_run WHERE k = c $$;
CREATE FUNCTION pg_temp.wal(c text) RETURNS numeric LANGUAGE sql AS
	$$ SELECT round((percentile_cont(0.5) WITHIN GROUP (ORDER BY bytes) / 1048576)::numeric, 1) FROM bench_wal WHERE k = c $$;
CREATE FUNCTION pg_temp.report(e text, b text) RETURNS TABLE (engine_ms numeric, plpgsql_ms numeric, ratio numeric,
		engine_wal_mb numeric, plpgsql_wal_mb numeric, runs bigint) LANGUAGE sql AS $$
	SELECT round(pg_temp.med(e)::numeric, 2), round(pg_temp.med(b)::numeric, 2),
		   round((pg_temp.med(e) / pg_temp.med(b))::numeric, 3), pg_temp.wal(e), pg_temp.wal(b),
		   (SELECT count(*) FROM bench_run WHERE k = e) $$;
\echo 'R1. deals moved from w1 into w5 (3 add_comment robots), medians, each on a NEW connection (goal <= 1.00)'
SELECT * FROM pg_temp.report('cold_engine', 'cold_base');
\echo 'R2. the same on a connection that moved 100 other deals first (goal <= 1.00)'
SELECT * FROM pg_temp.report('warm_engine', 'warm_base');
\echo 'R3. single-deal moves, one statement and transaction each, one connection: median per move (goal <= 1.00)'
SELECT * FROM pg_temp.report('single_warm_engine', 'single_warm_base');
\echo 'R4. single-deal moves, each the first statement of a new connection: median per move'
SELECT * FROM pg_temp.report('single_cold_engine', 'single_cold_base');
SELECT (SELECT count(*) FROM crm.timeline_comment) AS comments, (SELECT count(*) FROM base_comment) AS base_comments,
	   (SELECT count(*) FROM crm.robot_log) AS log_runs, (SELECT count(*) FROM crm.robot_log_entry) AS log_rows;
SQL
	exit 0
fi

$P -v n="$N" -f bench/robots_setup.sql

# timed CASE SETUP STATEMENT: one run of STATEMENT after SETUP (not timed).
timed() {
	printf '%s\nINSERT INTO bench_run SELECT %s, time_ms(%s);\n' "$2" "'$1'" "\$q\$$3\$q\$"
}

prep="(SELECT crm.stage('deal', 'preparation'))"
new="(SELECT crm.stage('deal', 'new'))"
{
	for _ in $(seq "$RUNS"); do
		timed nostage_engine "VACUUM crm.deal;" "UPDATE crm.deal SET amount = amount + 1"
		timed nostage_base "VACUUM same_deal;" "UPDATE same_deal SET amount = amount + 1"
		timed move_engine "UPDATE crm.deal SET stage_id = $new; TRUNCATE crm.timeline_comment, crm.automation_log, crm.robot_log_entry; VACUUM crm.deal;" \
			"UPDATE crm.deal SET stage_id = $prep"
		timed move_base "UPDATE base_deal SET stage_id = $new; TRUNCATE base_comment; VACUUM base_deal;" \
			"UPDATE base_deal SET stage_id = $prep"
	done
} | $P

# 3. Robots elsewhere must not slow a move: 10, then 10,000 robots on another
#    stage, alternating; 2,000 deals move each time.
others="INSERT INTO crm.robot (stage_id, action, params, sort)
	SELECT crm.stage('deal', 'executing'), 'write_log', '{\"text\": \"x\"}', g FROM generate_series(11, 10000) g;"
few="DELETE FROM crm.robot WHERE stage_id = crm.stage('deal', 'executing') AND sort > 10;"
back="UPDATE crm.deal SET stage_id = $new WHERE id <= 2000; TRUNCATE crm.timeline_comment, crm.automation_log, crm.robot_log_entry; VACUUM crm.deal;"
{
	echo "SELECT count(*) FROM (SELECT crm.add_robot(crm.stage('deal', 'executing'), 'write_log', '{\"text\": \"x\"}') FROM generate_series(1, 10)) x \\g /dev/null"
	for _ in $(seq "$RUNS"); do
		timed scale_10 "$few $back" "UPDATE crm.deal SET stage_id = $prep WHERE id <= 2000"
		timed scale_10000 "$others $back" "UPDATE crm.deal SET stage_id = $prep WHERE id <= 2000"
	done
	echo "$few"
} | $P

$P <<'SQL'
\pset footer off
CREATE FUNCTION pg_temp.med(c text) RETURNS float8 LANGUAGE sql AS
	$$ SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY ms) FROM bench_run WHERE k = c $$;
\echo '1. UPDATE changing no stage (deal table vs identical table without the engine)'
SELECT round(pg_temp.med('nostage_engine')::numeric, 1) AS engine_ms,
       round(pg_temp.med('nostage_base')::numeric, 1) AS identical_table_ms,
       round((pg_temp.med('nostage_engine') / pg_temp.med('nostage_base'))::numeric, 3) AS ratio,
       '<= 1.10' AS goal;
\echo '2. Moving the deals into a stage with 3 templated add_comment robots (vs lean PL/pgSQL)'
SELECT round(pg_temp.med('move_engine')::numeric, 1) AS engine_ms,
       round(pg_temp.med('move_base')::numeric, 1) AS plpgsql_ms,
       round((pg_temp.med('move_engine') / pg_temp.med('move_base'))::numeric, 3) AS ratio,
       '<= 1.00' AS goal,
       (SELECT count(*) FROM crm.timeline_comment) AS comments_last_run;
\echo '3. A move of 2,000 deals with 10 vs 10,000 robots defined on another stage'
SELECT round(pg_temp.med('scale_10')::numeric, 1) AS ms_10_elsewhere,
       round(pg_temp.med('scale_10000')::numeric, 1) AS ms_10000_elsewhere,
       round((pg_temp.med('scale_10000') / pg_temp.med('scale_10'))::numeric, 3) AS ratio,
       '<= 1.20' AS goal;
SQL

# 4. One bulk statement: 100,000 deals into the stage with 3 robots; memory of
#    the backend afterwards (work is freed chunk by chunk).
$P <<'SQL'
\pset footer off
TRUNCATE crm.timeline_comment, crm.automation_log, crm.robot_log_entry;
INSERT INTO crm.deal (title, responsible_id, amount) SELECT 'bulk' || g, 1, g FROM generate_series(1, 100000) g;
VACUUM ANALYZE crm.deal;
CREATE TEMP TABLE bulk AS
	SELECT time_ms(format('UPDATE crm.deal SET stage_id = %s WHERE title LIKE ''bulk%%''', crm.stage('deal', 'preparation'))) AS ms;
\echo '4. One UPDATE moving 100,000 deals into the stage with 3 robots'
SELECT round((SELECT ms FROM bulk)::numeric / 1000, 1) AS bulk_100k_seconds,
       (SELECT count(*) FROM crm.timeline_comment) AS comments,
       (SELECT count(*) FROM crm.robot_log) AS log_rows,
       (SELECT pg_size_pretty(sum(total_bytes)) FROM pg_backend_memory_contexts) AS backend_memory_after;
SQL
