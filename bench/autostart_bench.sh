#!/usr/bin/env bash
# Auto-start benchmark (issue 14, item 3).  Prints ratios measured in one run
# on a throw-away cluster; nothing here is a pass/fail test.  The same
# statements counted in CPU instructions: bench/autostart_instructions.sh.
#
# One INSERT of N deals (one statement, N rows) into a crm.deal that already
# holds PREFILL deals (and process tables that hold the instances of the
# earlier runs), in three cases:
#
#   none    no template auto-starts (the baseline)
#   other   a template auto-starts on leads only: the deals' entity type has
#           none, so each row costs a look in the rule cache     goal: ~1.00
#   one     one template on deals, auto_start 'add', one set_status_text
#           activity: N instances started, each with its trace row
#                                                                goal: <= 1.20
#
# and the same with N/10 single-row INSERTs, one statement each (a PL/pgSQL
# loop), where each statement pays its own start; and, for scale, the floor:
# the bulk INSERT writing, in the same statement, an instance row and a
# trace row per deal into copies of the process tables (no template).
#
# Method: the cases alternate (the templates are switched between runs,
# untimed: use_case() of bench/autostart_setup.sql), every timed statement
# starts on a vacuumed table, and each figure is the median of RUNS runs.
#
#   N=5000 RUNS=7 PREFILL=100000 bash bench/autostart_bench.sh
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
crm_install_deps
exec 9>/tmp/crm_automation.test.lock
flock 9
crm_build_install
trap crm_cluster_stop EXIT
crm_cluster_start "crm.worker_enabled = off"

N=${N:-5000}
RUNS=${RUNS:-7}
PREFILL=${PREFILL:-100000}
P="psql -X -q -v ON_ERROR_STOP=1 -d postgres"

$P -v prefill="$PREFILL" -f bench/autostart_setup.sql >/dev/null

# switch CASE: the templates as the case wants them (not timed).
switch() {
	echo "CALL use_case('$1');"
}

# timed CASE SETUP STATEMENT: one run of STATEMENT after SETUP (not timed).
timed() {
	printf '%s\nINSERT INTO bench_run SELECT %s, time_ms(%s);\n' "$2" "'$1'" "\$q\$$3\$q\$"
}

bulk="INSERT INTO crm.deal (title, responsible_id, amount) SELECT 'New deal ' || g, 1, g FROM generate_series(1, $N) g"
single="DO \$\$ BEGIN FOR g IN 1..$((N / 10)) LOOP
	INSERT INTO crm.deal (title, responsible_id, amount) VALUES ('Single deal ' || g, 1, g); END LOOP; END \$\$"
# floor (no template): the same INSERT writing, in the same statement, an
# instance row and a trace row per deal into copies of the two tables
# (bench/autostart_setup.sql): the least those rows cost, by SQL
floor="WITH d AS ($bulk RETURNING id, title), i AS (INSERT INTO floor_instance (template_id, document_type, document_id, status, status_text, finished_at) SELECT 1, 'deal', id, 'completed', 'Welcome, ' || title, now() FROM d RETURNING id, document_id, status_text) INSERT INTO floor_log (instance_id, document_type, document_id, path, type, status, outputs, started_at, finished_at) SELECT id, 'deal', document_id, 'activities[0]', 'set_status_text', 'done', jsonb_build_object('text', status_text), clock_timestamp(), clock_timestamp() FROM i"
{
	for _ in $(seq "$RUNS"); do
		for c in none other one; do
			# a warm statement after the switch: the cache reload is not timed
			timed "bulk_$c" "$(switch $c) VACUUM crm.deal; INSERT INTO crm.deal (title) VALUES ('warm-up');" "$bulk"
			timed "single_$c" "VACUUM crm.deal;" "$single"
		done
		timed "bulk_floor" "$(switch none) VACUUM crm.deal, floor_instance, floor_log;" "$floor"
	done
} | $P

$P <<SQL
\pset footer off
CREATE FUNCTION pg_temp.med(c text) RETURNS float8 LANGUAGE sql AS
	\$\$ SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY ms) FROM bench_run WHERE k = c \$\$;
\echo 'INSERT of $N deals in one statement (median of $RUNS runs), crm.deal holding $PREFILL+ deals'
SELECT round(pg_temp.med('bulk_none')::numeric, 1) AS none_ms,
       round(pg_temp.med('bulk_other')::numeric, 1) AS other_type_ms,
       round(pg_temp.med('bulk_one')::numeric, 1) AS one_template_ms,
       round((pg_temp.med('bulk_other') / pg_temp.med('bulk_none'))::numeric, 3) AS other_ratio,
       round((pg_temp.med('bulk_one') / pg_temp.med('bulk_none'))::numeric, 3) AS one_ratio,
       '~1.00 / <= 1.20' AS goal;
\echo 'the floor: the same INSERT writing an instance row and a trace row per deal by SQL'
SELECT round(pg_temp.med('bulk_floor')::numeric, 1) AS floor_ms,
       round((pg_temp.med('bulk_floor') / pg_temp.med('bulk_none'))::numeric, 3) AS floor_ratio;
\echo '$((N / 10)) single-row INSERTs, one statement each'
SELECT round(pg_temp.med('single_none')::numeric, 1) AS none_ms,
       round(pg_temp.med('single_other')::numeric, 1) AS other_type_ms,
       round(pg_temp.med('single_one')::numeric, 1) AS one_template_ms,
       round((pg_temp.med('single_other') / pg_temp.med('single_none'))::numeric, 3) AS other_ratio,
       round((pg_temp.med('single_one') / pg_temp.med('single_none'))::numeric, 3) AS one_ratio;
SELECT count(*) AS instances, count(*) FILTER (WHERE status = 'completed') AS completed
  FROM crm.process_instance;
SQL
