#!/usr/bin/env bash
# Paused business processes survive the server: one instance waits for its
# task (create_task with "wait", inside an if), another at a delay; the
# server is restarted, then stopped with "pg_ctl stop -m immediate" and
# started again.  The job runner resumes the delay when it is due, and the
# task's instance once the task is completed; both complete, each with the
# trace rows of what it ran.
set -euo pipefail
cd "$(dirname "$0")/../.."
. scripts/lib.sh
. test/integration/common.bash

it_begin process_pause "fsync = on"

q "INSERT INTO crm.department (id, name) VALUES (1, 'Sales');
   INSERT INTO crm.user (id, name, department_id) VALUES (1, 'Mia', 1), (2, 'Sam', 1);
   UPDATE crm.department SET head_id = 1;
   INSERT INTO crm.deal (id, title, responsible_id, amount) VALUES (1, 'Chairs', 2, 8000), (2, 'Desks', 2, 300)" >/dev/null
task_t=$(q "SELECT crm.add_process_template('deal', 'Approval', '{\"activities\": [
	{\"type\": \"if\", \"condition\": \"{{amount}} > 1000\", \"then\": [
		{\"type\": \"create_task\", \"name\": \"approve\", \"title\": \"Approve {{title}}\",
		 \"responsible\": \"supervisor\", \"wait\": true},
		{\"type\": \"add_comment\", \"text\": \"approved: {=Activity:approve.status}\"}]},
	{\"type\": \"write_log\", \"text\": \"approval over\"}]}')")
delay_t=$(q "SELECT crm.add_process_template('deal', 'Later', '{\"activities\": [
	{\"type\": \"delay\", \"for\": \"8 seconds\"},
	{\"type\": \"write_log\", \"text\": \"later\"}]}')")
i1=$(q "SELECT crm.start_process($task_t, 1)")
i2=$(q "SELECT crm.start_process($delay_t, 2)")
task=$(q "SELECT id FROM crm.task WHERE process_instance_id = $i1")
check "one instance waits for its task" "waiting|task $task to be completed" \
	"$(q "SELECT status, waiting_for FROM crm.process_instances WHERE id = $i1")"
check "the other at its delay" "waiting|t" \
	"$(q "SELECT status, waiting_for LIKE 'the delay until %' FROM crm.process_instances WHERE id = $i2")"

# a clean restart, then a crash
crm_cluster_restart -m fast
check "after a restart they still wait" "waiting
waiting" "$(q "SELECT status FROM crm.process_instance ORDER BY id")"
crm_as_owner "$(crm_pg_bindir)/pg_ctl" -D "$CRM_CLUSTER_DIR/data" -m immediate -w stop >/dev/null
echo "# stopped with -m immediate"
crm_as_owner "$(crm_pg_bindir)/pg_ctl" -D "$CRM_CLUSTER_DIR/data" -l "$CRM_CLUSTER_DIR/server.log" -w -t 60 start >/dev/null

check "the task's instance still waits after the crash" "waiting" \
	"$(q "SELECT status FROM crm.process_instance WHERE id = $i1")"
wait_for "SELECT status = 'completed' FROM crm.process_instance WHERE id = $i2" 30 || true
check "the delay's instance is resumed by the job runner when due, and completes" "completed" \
	"$(q "SELECT status FROM crm.process_instance WHERE id = $i2")"
check "the delay's trace: the delay done, then the activity after it" "activities[0]|delay|done|t
activities[1]|write_log|done|t" \
	"$(q "SELECT path, type, status, finished_at IS NOT NULL FROM crm.process_log WHERE instance_id = $i2 ORDER BY id")"

q "UPDATE crm.task SET status = 'completed', completed_at = now() WHERE id = $task" >/dev/null
wait_for "SELECT status = 'completed' FROM crm.process_instance WHERE id = $i1" 30 || true
check "completing the task resumes its instance, which completes" "completed" \
	"$(q "SELECT status FROM crm.process_instance WHERE id = $i1")"
check "the task's trace: the if, the task done with its outputs, then the rest" "activities[0]|if|done|{\"branch\": \"then\"}
activities[0].then[0]|create_task|done|{\"status\": \"completed\", \"task_id\": $task}
activities[0].then[1]|add_comment|done|
activities[1]|write_log|done|" \
	"$(q "SELECT path, type, status, coalesce(outputs::text, '') FROM crm.process_log WHERE instance_id = $i1 ORDER BY id")"
check "the activity after the task read its status" "approved: completed" \
	"$(q "SELECT text FROM crm.timeline_comment WHERE entity_id = 1")"
check "no job is left pending, none failed" "0|0" \
	"$(q "SELECT count(*) FILTER (WHERE status = 'pending'), count(*) FILTER (WHERE status = 'failed') FROM crm.job")"

it_end
