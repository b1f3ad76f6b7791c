#!/usr/bin/env bash
# A deadlock inside a robot, a trigger's step or a job is retried (bounded: three
# attempts) before it counts as a failure: the step's subtransaction rolls
# back, which frees what it had taken, and the step runs again once the
# other transaction gave up.  Without a retry the robot would be logged
# failed and the trigger's move lost.
#
# How the deadlock is made: session B holds what the step needs (the table a
# comment goes into, or the deal a trigger moves) and, once the step waits
# for it, asks for a row the step's transaction holds; the step's session,
# waiting first, detects the deadlock (deadlock_timeout 1 s) and loses.  B
# gives up once the step's first attempt lost (lock_timeout), which frees the
# way for its second attempt.  Robots first run optimistically, all of a
# batch in one subtransaction, and a failure there reruns the batch step by
# step: the robot's deadlock is met twice, and B waits 2.3 s.
set -euo pipefail
cd "$(dirname "$0")/../.."
. scripts/lib.sh
. test/integration/common.bash

it_begin deadlock_retry "crm.worker_enabled = off" "deadlock_timeout = '1s'"
LOG=$CRM_CLUSTER_DIR/server.log

q "INSERT INTO crm.department (id, name) VALUES (100, 'Sales')"
q "INSERT INTO crm.user (id, name, department_id) VALUES (100, 'Seller', 100)"
q "CREATE TABLE public.lockme (id int PRIMARY KEY, v int); INSERT INTO public.lockme VALUES (1, 0)"
P=$(q "SELECT crm.stage('deal', 'preparation')")
q "SELECT crm.add_robot($P, 'add_comment', '{\"text\": \"after the deadlock\"}')" >/dev/null
q "SELECT crm.add_trigger(crm.stage('deal', 'executing'), 'webhook', '{\"code\": \"go\"}')" >/dev/null
q "INSERT INTO crm.deal (id, title, responsible_id) VALUES (1, 'Robot', 100), (2, 'Trigger', 100)"

# other_session SQL_HOLD SQL_THEN MS: B takes SQL_HOLD's locks at once, then,
# 0.3 s later (the step waits by then), runs SQL_THEN with a lock_timeout of
# MS milliseconds.
other_session() {
	psql -X -q -d crm_it >"$IT_DIR/b.out" 2>&1 <<SQL &
BEGIN;
$1;
SELECT pg_sleep(0.3);
SET deadlock_timeout = '10s';
SET lock_timeout = '${3}ms';
$2;
ROLLBACK;
SQL
	IT_PIDS+=($!)
	B_PID=$!
	sleep 0.1	# B holds its locks before the step asks for them
}

echo "# a robot: add_comment waits for crm.timeline_comment, held by B"
other_session "LOCK TABLE crm.timeline_comment IN SHARE MODE" "UPDATE crm.deal SET title = 'B' WHERE id = 1" 2300
out=$(psql -X -q -t -A -d crm_it 2>&1 <<SQL
UPDATE crm.deal SET stage_id = $P WHERE id = 1;
SELECT status FROM crm.robot_log WHERE entity_id = 1;
SQL
) || true
wait "$B_PID" || true
check "B lost to its lock_timeout, not to a deadlock" "1" "$(grep -c 'lock timeout' "$IT_DIR/b.out" || true)"
check "the robot ran once, after a retry" "done|1" \
	"$out|$(q "SELECT count(*) FROM crm.timeline_comment WHERE entity_id = 1 AND text = 'after the deadlock'")"
check "the robot's step met the deadlock and was tried again" "1" \
	"$(grep -c 'attempt 1 of 3 failed, trying again: deadlock detected' "$LOG" || true)"

echo "# a trigger: its move waits for deal 2, held by B"
other_session "SELECT 1 FROM crm.deal WHERE id = 2 FOR UPDATE" "UPDATE public.lockme SET v = 2 WHERE id = 1" 1400
out=$(psql -X -q -t -A -d crm_it 2>&1 <<SQL
BEGIN;
UPDATE public.lockme SET v = 1 WHERE id = 1;
SELECT crm.fire_trigger('go', 'deal', 2);
COMMIT;
SQL
) || true
wait "$B_PID" || true
check "B lost to its lock_timeout" "1" "$(grep -c 'lock timeout' "$IT_DIR/b.out" || true)"
check "the trigger fired and moved the deal, after a retry" "fired|executing" \
	"$out|$(q "SELECT s.code FROM crm.deal d JOIN crm.stage s ON s.id = d.stage_id WHERE d.id = 2")"
check "its deadlock was logged as an attempt too" "2" \
	"$(grep -c 'attempt 1 of 3 failed, trying again: deadlock detected' "$LOG" || true)"

echo "# a job: the delayed robot's comment waits for crm.timeline_comment, held by B"
F=$(q "SELECT crm.stage('deal', 'final_invoice')")
q "SELECT crm.add_robot($F, 'add_comment', '{\"text\": \"later, after the deadlock\"}', delay => '{\"after\": \"1 hour\"}')" >/dev/null
q "INSERT INTO crm.deal (id, title, responsible_id) VALUES (3, 'Job', 100)"
q "UPDATE crm.deal SET stage_id = $F WHERE id = 3"
q "UPDATE crm.job SET due_at = now() - interval '1 second' WHERE entity_id = 3 AND status = 'pending'"
before=$(grep -c 'failed, trying again: deadlock detected' "$LOG" || true)
other_session "LOCK TABLE crm.timeline_comment IN SHARE MODE" "UPDATE public.lockme SET v = 3 WHERE id = 1" 2300
out=$(psql -X -q -t -A -d crm_it 2>&1 <<SQL
BEGIN;
UPDATE public.lockme SET v = 1 WHERE id = 1;
SELECT crm.run_due_jobs(10);
COMMIT;
SQL
) || true
wait "$B_PID" || true
check "B lost to its lock_timeout" "1" "$(grep -c 'lock timeout' "$IT_DIR/b.out" || true)"
check "the job ran once and is done, after a retry" "1|done|1" \
	"$out|$(q "SELECT status FROM crm.job WHERE entity_id = 3")|$(q "SELECT count(*) FROM crm.timeline_comment WHERE entity_id = 3")"
check "its deadlock was logged as an attempt" "t" \
	"$(q "SELECT $(grep -c 'failed, trying again: deadlock detected' "$LOG" || true) > $before")"

check "no backend crashed (server log)" "0" "$(grep -c 'terminated by signal' "$LOG" || true)"
it_end
