#!/usr/bin/env bash
# Scaling benchmark (issue 19): the automation's cost per item must not grow
# with the size of the tables it touches, whatever their statistics say.
# Every database is a fresh install that is never analyzed (autovacuum off),
# the state of a new installation and of a table that grows inside one
# statement.  Prints one table; nothing here is a pass/fail test.
#
#   1. Bulk: one UPDATE moving 1k, 4k, 16k, 64k deals (one after the other,
#      the tables keep what the earlier ones wrote) into a stage with a
#      delayed robot, a wait, a control and an auto-complete activity: time
#      per item.  Goal: per-item cost of 64k / 1k <= 1.5.  Also moving a
#      block out again (cancelling its jobs): the first 1k right after it
#      came, the last block at the end.
#   2. Single items, two databases side by side (dblink; rounds alternate):
#      one with nothing else, one where :rows (1,000,000) unrelated rows were
#      loaded into crm.job (and a fifth as many pending jobs), crm.activity,
#      crm.robot_log, crm.outbox and crm.timeline_comment AFTER its session
#      had run (and planned) everything once on empty tables:
#        - a single-deal move into that stage, and out of it again;
#        - an incoming call (a trigger moves the deal into the stage);
#        - crm.run_next_job() running a due robot job (1,000,000 done jobs),
#          and crm.run_due_jobs() running them in batches, as the job
#          runners do.
#      Goal: each per-item cost with / without the rows <= 1.2.
#
# OLD=<git ref> also measures that commit's code first, built from a copy
# (git archive) in a temporary directory, with the same script: its figures
# and the current code's come from the same run.  The old code is quadratic,
# so it gets smaller sizes and fewer moves (OLD_SIZES, OLD_MOVES, OLD_ROUNDS).
#
#   OLD=af865aa bash bench/scaling.sh
#   SIZES="1000 4000 16000 64000" ROWS=1000000 MOVES=200 ROUNDS=3 bash bench/scaling.sh
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
crm_install_deps
exec 9>/tmp/crm_automation.test.lock
flock 9

OLD=${OLD:-}
SIZES=${SIZES:-1000 4000 16000 64000}
OLD_SIZES=${OLD_SIZES:-1000 4000 16000}
ROWS=${ROWS:-1000000}
MOVES=${MOVES:-200}
ROUNDS=${ROUNDS:-3}
OLD_MOVES=${OLD_MOVES:-20}
OLD_ROUNDS=${OLD_ROUNDS:-1}

TMP=$(mktemp -d /tmp/crm_scaling.XXXXXX)
chmod 755 "$TMP"
trap 'crm_cluster_stop; rm -rf "$TMP"' EXIT
RESULTS=$TMP/results
: >"$RESULTS"
P="psql -X -q -v ON_ERROR_STOP=1"

# bulk LABEL SIZES: part 1 in database "bulk".
bulk() {
	local label=$1 sizes=$2 total=10 s first=11 last=0
	for s in $sizes; do total=$((total + s)); done
	$P -d postgres -c "CREATE DATABASE bulk"
	$P -d bulk -v deals=$total -f bench/scaling_setup.sql
	$P -d bulk -f bench/common.sql
	{
		echo "\\pset footer off"
		echo "\\pset tuples_only on"
		echo "\\pset format unaligned"
		echo "\\pset fieldsep ' '"
		echo "SELECT crm.stage('deal', 'preparation') AS prep, crm.stage('deal', 'executing') AS out \\gset"
		echo "SELECT time_ms(format('UPDATE crm.deal SET stage_id = %s WHERE id <= 10', :prep)) \\g /dev/null"
		for s in $sizes; do
			echo "SELECT '$label', 'bulk_in_$s', time_ms(format('UPDATE crm.deal SET stage_id = %s WHERE id BETWEEN $first AND $((first + s - 1))', :prep)) * 1000 / $s;"
			if [ "$first" = 11 ]; then
				echo "SELECT '$label', 'bulk_out_first', time_ms(format('UPDATE crm.deal SET stage_id = %s WHERE id BETWEEN $first AND $((first + s - 1))', :out)) * 1000 / $s;"
			fi
			last=$first
			first=$((first + s))
		done
		echo "SELECT '$label', 'bulk_out_last', time_ms(format('UPDATE crm.deal SET stage_id = %s WHERE id BETWEEN $last AND $((first - 1))', :out)) * 1000 / $s;"
	} | $P -d bulk | tee -a "$RESULTS"
	$P -d bulk -t -A -c "SELECT format('# bulk: %s jobs, %s activities, %s log rows, %s comments',
		(SELECT count(*) FROM crm.job), (SELECT count(*) FROM crm.activity),
		(SELECT count(*) FROM crm.robot_log), (SELECT count(*) FROM crm.timeline_comment))"
}

# single LABEL MOVES ROUNDS: part 2 in databases "db_empty" and "db_full".
single() {
	local label=$1 m=$2 rounds=$3 deals db
	deals=$((1000 + rounds * 4 * m))
	for db in db_empty db_full; do
		$P -d postgres -c "CREATE DATABASE $db"
		$P -d "$db" -v deals=$deals -f bench/scaling_setup.sql
	done
	$P -d postgres <<SQL
\\pset footer off
\\pset tuples_only on
\\pset format unaligned
\\pset fieldsep ' '
SET client_min_messages = warning;
CREATE EXTENSION IF NOT EXISTS dblink;
CREATE TEMP TABLE res (db text, k text, us float8);
CREATE FUNCTION pg_temp.per_item(conn text, q text, n int) RETURNS float8 LANGUAGE plpgsql AS \$\$
DECLARE t0 timestamptz;
BEGIN
	t0 := clock_timestamp();
	PERFORM dblink_exec(conn, q);
	RETURN extract(epoch FROM clock_timestamp() - t0) * 1e6 / n;
END \$\$;
SELECT dblink_connect('empty', 'host=$PGHOST port=$PGPORT user=$PGUSER dbname=db_empty'),
	   dblink_connect('full', 'host=$PGHOST port=$PGPORT user=$PGUSER dbname=db_full') \\g /dev/null
-- Both sessions run (and plan) everything once while the tables are empty.
DO \$\$
DECLARE c text;
BEGIN
	FOREACH c IN ARRAY ARRAY['empty', 'full'] LOOP
		PERFORM dblink_exec(c, 'CALL bench_moves(1, 10, crm.stage(''deal'', ''preparation''))');
		PERFORM dblink_exec(c, 'CALL bench_moves(1, 10, crm.stage(''deal'', ''executing''))');
		PERFORM dblink_exec(c, 'CALL bench_calls(11, 10)');
		PERFORM dblink_exec(c, 'CALL bench_due_jobs(21, 20)');
		PERFORM dblink_exec(c, 'CALL bench_jobs(10)');
		PERFORM dblink_exec(c, 'CALL bench_batches(10)');
	END LOOP;
END \$\$;
-- The unrelated rows, from another session (session_replication_role
-- would reset the measuring session's plans).
\\! psql -X -q -v ON_ERROR_STOP=1 -d db_full -v rows=$ROWS -f bench/scaling_load.sql
DO \$\$
DECLARE
	c text;
	base bigint;
	m int := $m;
BEGIN
	FOR r IN 0 .. $rounds - 1 LOOP
		base := 1000 + r * 4 * m;
		FOREACH c IN ARRAY CASE WHEN r % 2 = 0 THEN ARRAY['empty', 'full'] ELSE ARRAY['full', 'empty'] END LOOP
			PERFORM dblink_exec(c, format('CALL bench_due_jobs(%s, %s)', base + 2 * m, 2 * m));
			INSERT INTO res VALUES
				(c, 'move_in', pg_temp.per_item(c, format('CALL bench_moves(%s, %s, crm.stage(''deal'', ''preparation''))', base, m), m)),
				(c, 'move_out', pg_temp.per_item(c, format('CALL bench_moves(%s, %s, crm.stage(''deal'', ''executing''))', base, m), m)),
				(c, 'call', pg_temp.per_item(c, format('CALL bench_calls(%s, %s)', base + m, m), m)),
				(c, 'job', pg_temp.per_item(c, format('CALL bench_jobs(%s)', m), m)),
				(c, 'batch', pg_temp.per_item(c, format('CALL bench_batches(%s)', m), m));
		END LOOP;
	END LOOP;
END \$\$;
SELECT '$label', k || '_' || db, percentile_cont(0.5) WITHIN GROUP (ORDER BY us)
  FROM res GROUP BY k, db ORDER BY k, db;
SQL
	$P -d db_full -t -A -c "SELECT format('# full: %s jobs (%s pending), %s activities, %s log rows, %s messages, %s comments',
		(SELECT count(*) FROM crm.job), (SELECT count(*) FROM crm.job WHERE status = 'pending'),
		(SELECT count(*) FROM crm.activity), (SELECT count(*) FROM crm.robot_log),
		(SELECT count(*) FROM crm.outbox), (SELECT count(*) FROM crm.timeline_comment))"
}

# measure LABEL DIR SIZES MOVES ROUNDS: builds and installs DIR's code, runs both parts.
measure() {
	echo "== $1: $(git -C "$2" log -1 --format='%h %s' 2>/dev/null | cut -c1-70 || echo "$2")"
	(cd "$2" && crm_build_install)
	crm_cluster_start "crm.worker_enabled = off" "autovacuum = off"
	bulk "$1" "$3"
	single "$1" "$4" "$5" | tee -a "$RESULTS"
	crm_cluster_stop
}

if [ -n "$OLD" ]; then
	mkdir "$TMP/old"
	git archive "$OLD" | tar -x -C "$TMP/old"
	measure old "$TMP/old" "$OLD_SIZES" "$OLD_MOVES" "$OLD_ROUNDS"
fi
measure new . "$SIZES" "$MOVES" "$ROUNDS"

# The table: figures in microseconds per item, old and new, and each ratio.
first=${SIZES%% *}
largest=${SIZES##* }
old_largest=${OLD_SIZES##* }
awk -v rows="$ROWS" -v first="$first" -v largest="$largest" -v old_largest="$old_largest" '
	NF == 3 && $1 ~ /^(old|new)$/ { v[$1, $2] = $3; seen[$1] = 1 }
	function f(x) { return x == "" ? "-" : sprintf("%.1f", x) }
	function r(a, b) { return (a == "" || b == "" || b == 0) ? "-" : sprintf("%.2f", a / b) }
	function row(name, k) { printf "%-44s %12s %12s\n", name, f(v["old", k]), f(v["new", k]) }
	function ratio(name, a, b, oa, bound) {
		printf "%-44s %12s %12s   goal %s\n", name, r(v["old", oa], v["old", b]), r(v["new", a], v["new", b]), bound
	}
	END {
		printf "%-44s %12s %12s\n", "µs per item", "old", "new"
		for (k in v) split(k, kk, SUBSEP)
		n = split("1000 4000 16000 64000", s, " ")
		for (i = 1; i <= n; i++) row("bulk UPDATE into the stage, " s[i] " deals", "bulk_in_" s[i])
		row("bulk UPDATE out of it, the first block", "bulk_out_first")
		row("bulk UPDATE out of it, the last block", "bulk_out_last")
		ratio("ratio largest / " first " (old: " old_largest " / " first ")", "bulk_in_" largest, "bulk_in_" first, "bulk_in_" old_largest, "<= 1.5")
		ratio("ratio out: last block / first block", "bulk_out_last", "bulk_out_first", "bulk_out_last", "<= 1.5")
		split("move_in move_out call job batch", m, " ")
		split("single-deal move into the stage|single-deal move out of it|incoming call (trigger moves the deal)|crm.run_next_job() running a due job|crm.run_due_jobs() batches running due jobs", d, "|")
		for (i = 1; i <= 5; i++) {
			row(d[i] ", 0 rows", m[i] "_empty")
			row(d[i] ", " rows " rows", m[i] "_full")
			ratio("  ratio " rows " rows / 0", m[i] "_full", m[i] "_empty", m[i] "_full", "<= 1.2")
		}
	}' "$RESULTS"
