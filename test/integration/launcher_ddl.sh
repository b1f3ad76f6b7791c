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
	     FROM crm.worker_status() WHERE role = 'delivery' AND database = '$1'"
}
running() {	# running DATABASE: true when both ranks run
	echo "SELECT count(*) = 2 FROM crm.worker_status() s JOIN pg_stat_activity a USING (pid)
	       WHERE s.role = 'delivery' AND s.database = '$1' AND s.state = 'running'"
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

echo "# CREATE DATABASE ... TEMPLATE: the workers step aside, then come back"
wait_for "$(running crm_it)" 15 || true
before=$(pids crm_it)
check "a copy of crm_it succeeds" "" \
	"$(psql -X -q -d postgres -c "CREATE DATABASE crm_copy TEMPLATE crm_it" 2>&1 | sed -n 's/^ERROR: *//p')"
wait_for "$(running crm_it)" 15 || true
check "crm_it's workers run again (new pids)" "t|t" \
	"$(q "$(running crm_it)")|$([ "$(pids crm_it)" != "$before" ] && echo t || echo f)"
wait_for "$(running crm_copy)" 15 || true
check "the copy, with the extension, has its own workers" "t" "$(q "$(running crm_copy)")"

echo "# ALTER DATABASE ... RENAME: the same, and the workers follow the new name"
before=$(pids crm_it)
check "a non-owner cannot rename it" "must be owner of database crm_it" \
	"$(as_role mallory postgres "ALTER DATABASE crm_it RENAME TO crm_stolen")"
sleep 1
check "the workers kept running (same pids)" "$before" "$(pids crm_it)"
check "the owner renames it" "" \
	"$(psql -X -q -d postgres -c "ALTER DATABASE crm_it RENAME TO crm_renamed" 2>&1 | sed -n 's/^ERROR: *//p')"
# crm_it is gone by that name: ask in the copy
in_copy() { psql -X -q -t -A -d crm_copy -c "$1"; }
for _ in $(seq 1 150); do [ "$(in_copy "$(running crm_renamed)")" = t ] && break; sleep 0.1; done
check "its workers run under the new name" "t" "$(in_copy "$(running crm_renamed)")"
check "renamed back" "" \
	"$(psql -X -q -d postgres -c "ALTER DATABASE crm_renamed RENAME TO crm_it" 2>&1 | sed -n 's/^ERROR: *//p')"
wait_for "$(running crm_it)" 15 || true
check "and they run again under the old one" "t" "$(q "$(running crm_it)")"

echo "# crm.worker_enabled = off: the workers leave and stay away"
q "ALTER SYSTEM SET crm.worker_enabled = off"
q "SELECT pg_reload_conf()" >/dev/null
nworkers() { q "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'crm_automation worker'"; }
for _ in $(seq 1 100); do [ "$(nworkers)" = 0 ] && break; sleep 0.1; done
check "no worker process is left" "0" "$(nworkers)"
check "crm.worker_status() says disabled" "0:- disabled,1:- disabled" "$(pids crm_it)"
sleep 6
check "none was started again (past the restart delay)" "0" "$(nworkers)"
check "CREATE DATABASE ... TEMPLATE crm_it meanwhile" "" \
	"$(psql -X -q -d postgres -c "CREATE DATABASE crm_copy2 TEMPLATE crm_it" 2>&1 | sed -n 's/^ERROR: *//p')"
sleep 1
check "still none" "0" "$(nworkers)"
q "ALTER SYSTEM RESET crm.worker_enabled"
q "SELECT pg_reload_conf()" >/dev/null
wait_for "$(running crm_it)" 15 || true
check "on again: crm_it's workers run" "t" "$(q "$(running crm_it)")"
wait_for "$(running crm_copy2)" 15 || true
check "and the copy's" "t" "$(q "$(running crm_copy2)")"
id=$(q "INSERT INTO crm.job (kind, entity_type, entity_id, due_at) VALUES ('process_resume', 'deal', 1, now()) RETURNING id")
wait_for "SELECT status <> 'pending' FROM crm.job WHERE id = $id" 15 || true
check "a due job is run again" "t" "$(q "SELECT status <> 'pending' FROM crm.job WHERE id = $id")"

check "no process was terminated by a signal" "0" \
	"$(grep -c 'terminated by signal' "$CRM_CLUSTER_DIR/server.log" || true)"
it_end
