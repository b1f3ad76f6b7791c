#!/usr/bin/env bash
# The workers and database-level DDL: a DROP DATABASE that will fail on
# ownership leaves them alone; CREATE DATABASE ... TEMPLATE and ALTER
# DATABASE ... RENAME find them stepped aside and get them back afterwards;
# crm.worker_enabled = off makes them leave until it is on again.
set -euo pipefail
cd "$(dirname "$0")/../.."
. scripts/lib.sh
. test/integration/common.bash

it_begin launcher_ddl "crm.workers_per_database = 2"

pids() {	# pids DATABASE: "rank:pid state,..." of its workers
	q "SELECT string_agg(worker || ':' || coalesce(pid::text, '-') || ' ' || state, ',' ORDER BY worker)
	     FROM crm.worker_status() WHERE database = '$1'"
}
running() {	# running DATABASE: true when both ranks run
	echo "SELECT count(*) = 2 FROM crm.worker_status() s JOIN pg_stat_activity a USING (pid)
	       WHERE s.database = '$1' AND s.state = 'running'"
}
as_role() {	# as_role ROLE DATABASE SQL: the error line, if any
	psql -X -q -t -A -U "$1" -d "$2" -c "$3" 2>&1 | sed -n 's/^ERROR: *//p'
}

echo "# a DROP DATABASE that fails on ownership stops nothing"
wait_for "$(running crm_it)" 15 || true
before=$(pids crm_it)
check "two workers run in crm_it" "t" "$(q "$(running crm_it)")"
q "CREATE ROLE mallory LOGIN"
check "a role that does not own crm_it cannot drop it" "must be owner of database crm_it" \
	"$(as_role mallory postgres "DROP DATABASE crm_it")"
sleep 1
check "the workers kept running (same pids)" "$before" "$(pids crm_it)"
check "nor can it with DROP DATABASE IF EXISTS" "must be owner of database crm_it" \
	"$(as_role mallory postgres "DROP DATABASE IF EXISTS crm_it")"
sleep 1
check "the workers still run (same pids)" "$before" "$(pids crm_it)"

echo "# the owner's DROP DATABASE does not wait for them"
psql -X -q -d postgres -c "CREATE DATABASE crm_gone" >/dev/null
psql -X -q -d crm_gone -c "CREATE EXTENSION crm_automation" >/dev/null
wait_for "$(running crm_gone)" 15 || true
t0=$(date +%s%N)
check "DROP DATABASE of a database with workers succeeds" "" \
	"$(psql -X -q -d postgres -c "DROP DATABASE crm_gone" 2>&1 | sed -n 's/^ERROR: *//p')"
check "at once (under 3 s)" "t" "$([ $(( ($(date +%s%N) - t0) / 1000000 )) -lt 3000 ] && echo t || echo f)"

check "no process was terminated by a signal" "0" \
	"$(grep -c 'terminated by signal' "$CRM_CLUSTER_DIR/server.log" || true)"
it_end
