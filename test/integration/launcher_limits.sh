#!/usr/bin/env bash
# The launcher at its limits, said in the log by database name: no
# background worker slot left (max_worker_processes) once a minute per
# database, with what to change; a database beyond the slots of shared
# memory (256) once.
set -euo pipefail
cd "$(dirname "$0")/../.."
. scripts/lib.sh
. test/integration/common.bash

# the launcher, the logical replication launcher, crm_it's two delivery
# workers and its job runner fill max_worker_processes
it_begin launcher_limits "max_worker_processes = 5" "crm.workers_per_database = 2"
LOG=$CRM_CLUSTER_DIR/server.log

running() {	# running DATABASE N: true when N of its workers run
	echo "SELECT count(*) = $2 FROM crm.worker_status() s JOIN pg_stat_activity a USING (pid)
	       WHERE s.role = 'delivery' AND s.database = '$1' AND s.state = 'running'"
}

echo "# no background worker slot for a second database"
wait_for "$(running crm_it 2)" 15 || true
check "crm_it's two workers run" "t" "$(q "$(running crm_it 2)")"
psql -X -q -d postgres -c "CREATE DATABASE crm_b" >/dev/null
check "CREATE EXTENSION warns that max_worker_processes cannot hold them all" \
	"WARNING:  max_worker_processes is too low for the crm_automation workers of every database|HINT:  Raise max_worker_processes to at least 7 (a restart is needed), or lower crm.workers_per_database." \
	"$(psql -X -q -d crm_b -c "CREATE EXTENSION crm_automation" 2>&1 | grep -E '^(WARNING|HINT)' | paste -sd '|')"
sleep 12	# the launcher tries again every 5 s
check "the log names the database, once in the minute" "1" \
	"$(grep -c 'no background worker slot left for worker 0 of database "crm_b"' "$LOG" || true)"
check "and says what to change" "1" \
	"$(grep -c 'HINT:  Raise max_worker_processes (a restart is needed) or lower crm.workers_per_database.' "$LOG" || true)"
check "no message names a database by its OID only" "0" \
	"$(grep -cE 'slot left for database [0-9]+' "$LOG" || true)"
q "ALTER SYSTEM SET crm.workers_per_database = 1"
q "SELECT pg_reload_conf()" >/dev/null
for _ in $(seq 1 150); do [ "$(psql -X -q -t -A -d crm_b -c "$(running crm_b 1)")" = t ] && break; sleep 0.1; done
check "with crm.workers_per_database = 1, crm_b's worker runs" "t" \
	"$(psql -X -q -t -A -d crm_b -c "$(running crm_b 1)")"
psql -X -q -d postgres -c "CREATE DATABASE crm_c" >/dev/null
check "a delivery worker and a job runner each in three databases and the launcher: 7, counted" \
	"HINT:  Raise max_worker_processes to at least 7 (a restart is needed), or lower crm.workers_per_database." \
	"$(psql -X -q -d crm_c -c "CREATE EXTENSION crm_automation" 2>&1 | grep -E '^HINT')"

echo "# more databases than the launcher has slots for (256)"
n=$(q "SELECT count(*) FROM pg_database WHERE datallowconn AND NOT datistemplate")
for i in $(seq 1 $((257 - n))); do echo "CREATE DATABASE crm_many_$i;"; done >"$IT_DIR/many.sql"
psql -X -q -d postgres -f "$IT_DIR/many.sql" >/dev/null
sleep 12
check "one database is left without a worker, named in one WARNING" "1" \
	"$(grep -cE 'WARNING:  crm_automation: database "crm_many_[0-9]+" has no worker: at most 256 databases are served' "$LOG" || true)"
psql -X -q -d postgres -c "DROP DATABASE crm_many_1" >/dev/null
sleep 6
check "once there is room, it is not warned about again" "1" \
	"$(grep -cE 'has no worker: at most 256 databases are served' "$LOG" || true)"

check "no process was terminated by a signal" "0" "$(grep -c 'terminated by signal' "$LOG" || true)"
it_end
