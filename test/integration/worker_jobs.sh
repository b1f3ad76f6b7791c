#!/usr/bin/env bash
# The worker as scheduler: delayed robots and stage controls run on time (to
# the second), a wait ends early on client activity, leaving a stage cancels
# what was planned; and the worker's life: SIGHUP (crm.worker_enabled),
# DROP/CREATE EXTENSION, DROP DATABASE without FORCE, restart after a crash.
set -euo pipefail
cd "$(dirname "$0")/../.."
. scripts/lib.sh
. test/integration/common.bash

it_begin worker_jobs "crm.allowed_hosts = '127.0.0.1'"
it_sink_http
B=http://127.0.0.1:$HTTP_PORT

q "INSERT INTO crm.department (id, name) VALUES (100, 'Sales')"
q "INSERT INTO crm.user (id, name, department_id) VALUES (100, 'Boss', 100), (101, 'Seller', 100)"
q "UPDATE crm.department SET head_id = 100 WHERE id = 100"
P=$(q "SELECT crm.stage('deal', 'preparation')")
q "SELECT crm.add_robot($P, 'add_comment', '{\"text\": \"two seconds later\"}', delay => '{\"after\": \"2 seconds\"}')" >/dev/null
q "SELECT crm.add_robot($P, 'control', '{\"after\": \"3 seconds\", \"text\": \"{{title}} is stuck\"}')" >/dev/null
q "INSERT INTO crm.deal (id, title, responsible_id) VALUES (100, 'Stays', 101), (101, 'Leaves', 101)"

echo "# delayed robot and control, on time"
t0=$(q "UPDATE crm.deal SET stage_id = $P WHERE id IN (100, 101) RETURNING extract(epoch FROM clock_timestamp())" | head -1)
q "UPDATE crm.deal SET stage_id = crm.stage('deal', 'executing') WHERE id = 101" >/dev/null
wait_for "SELECT count(*) = 1 FROM crm.timeline_comment WHERE text = 'two seconds later'" 10 || true
wait_for "SELECT count(*) = 1 FROM crm.notification WHERE text = 'Stays is stuck'" 10 || true
d1=$(q "SELECT round((extract(epoch FROM created_at) - $t0)::numeric, 2) FROM crm.timeline_comment WHERE text = 'two seconds later'")
d2=$(q "SELECT round((extract(epoch FROM created_at) - $t0)::numeric, 2) FROM crm.notification WHERE text = 'Stays is stuck'")
echo "# delayed comment after ${d1}s, control after ${d2}s"
check "the 2-second robot ran within 1 s of its due time" "t" "$(q "SELECT $d1 >= 1.9 AND $d1 < 3.0")"
check "the 3-second control notified the supervisor within 1 s of its due time" "t|100" \
	"$(q "SELECT $d2 >= 2.9 AND $d2 < 4.0")|$(q "SELECT user_id FROM crm.notification WHERE text = 'Stays is stuck'")"
check "the deal that left the stage got neither" "0|0" \
	"$(q "SELECT count(*) FROM crm.timeline_comment WHERE entity_id = 101")|$(q "SELECT count(*) FROM crm.notification WHERE text LIKE 'Leaves%'")"
check "their jobs: done for the one that stayed, cancelled for the other" "100:done,done|101:cancelled,cancelled" \
	"$(q "SELECT string_agg(entity_id || ':' || s, '|' ORDER BY entity_id) FROM (SELECT entity_id, string_agg(status, ',' ORDER BY status) s FROM crm.job GROUP BY entity_id) x")"

echo "# a deal created in a stage: its delayed robot runs on time too"
F=$(q "SELECT crm.stage('deal', 'final_invoice')")
q "SELECT crm.add_robot($F, 'add_comment', '{\"text\": \"created two seconds ago\"}', delay => '{\"after\": \"2 seconds\"}')" >/dev/null
sleep 1
t0=$(q "INSERT INTO crm.deal (id, title, responsible_id, stage_id) VALUES (103, 'Created', 101, $F) RETURNING extract(epoch FROM clock_timestamp())")
wait_for "SELECT count(*) = 1 FROM crm.timeline_comment WHERE text = 'created two seconds ago'" 10 || true
d3=$(q "SELECT round((extract(epoch FROM created_at) - $t0)::numeric, 2) FROM crm.timeline_comment WHERE text = 'created two seconds ago'")
check "the 2-second robot of a new deal ran within 1 s of its due time" "t" "$(q "SELECT ${d3:-99} >= 1.9 AND ${d3:-99} < 3.0")"

echo "# a delay tied to a date field follows it: moved from next year to in two seconds"
W=$(q "SELECT crm.stage('deal', 'prepayment_invoice')")
q "SELECT crm.add_field('deal', 'UF_DUE', 'Due', 'datetime')" >/dev/null
q "SELECT crm.add_robot($W, 'add_comment', '{\"text\": \"on the due date\"}', delay => '{\"at\": \"fields.UF_DUE\"}')" >/dev/null
q "INSERT INTO crm.deal (id, title, responsible_id, stage_id, fields) VALUES (104, 'Dated', 101, $W, jsonb_build_object('UF_DUE', now() + interval '1 year'))"
sleep 1
check "planned for next year, nothing yet" "0" "$(q "SELECT count(*) FROM crm.timeline_comment WHERE entity_id = 104")"
t0=$(q "UPDATE crm.deal SET fields = jsonb_build_object('UF_DUE', clock_timestamp() + interval '2 seconds') WHERE id = 104 RETURNING extract(epoch FROM clock_timestamp())")
wait_for "SELECT count(*) = 1 FROM crm.timeline_comment WHERE entity_id = 104" 10 || true
d4=$(q "SELECT round((extract(epoch FROM created_at) - $t0)::numeric, 2) FROM crm.timeline_comment WHERE entity_id = 104")
check "the moved job ran within 1 s of its new due time" "t" "$(q "SELECT ${d4:-99} >= 1.9 AND ${d4:-99} < 3.0")"

echo "# a wait ends early on client activity"
E=$(q "SELECT crm.stage('deal', 'executing')")
q "SELECT crm.add_robot($E, 'wait', '{\"for\": \"1 day\", \"until_client_activity\": true}')" >/dev/null
q "SELECT crm.add_robot($E, 'webhook', '{\"url\": \"$B/ok/after-wait/{{id}}\"}')" >/dev/null
q "INSERT INTO crm.deal (id, title, responsible_id) VALUES (102, 'Waits', 101)"
q "UPDATE crm.deal SET stage_id = $E WHERE id = 102"
sleep 1
check "the robot after the wait has not run" "0" "$(q "SELECT count(*) FROM crm.outbox WHERE entity_id = 102")"
q "INSERT INTO crm.activity (entity_type, entity_id, type, direction, subject, remote_address) VALUES ('deal', 102, 'call', 'incoming', 'Client calls back', '+33 1')"
wait_for "SELECT count(*) = 1 FROM crm.outbox WHERE entity_id = 102 AND status = 'sent'" 5 || true
check "the client's call ended the wait: the next robot ran and its webhook was sent" "sent" "$(q "SELECT status FROM crm.outbox WHERE entity_id = 102")"

echo "# a robocall that waits for its result holds the robots after it until its message is done"
R=$(q "SELECT crm.stage('deal', 'final_invoice')")
q "SELECT crm.add_provider('robocall', 'voice', '{\"url\": \"$B/slow/2/call\", \"body\": \"{text}\"}')" >/dev/null
q "SELECT crm.add_robot($R, 'robocall', '{\"number\": \"+33 1 23\", \"text\": \"Your order {{title}}\", \"wait_for_result\": true}')" >/dev/null
q "SELECT crm.add_robot($R, 'add_comment', '{\"text\": \"after the call\"}')" >/dev/null
q "INSERT INTO crm.deal (id, title, responsible_id) VALUES (105, 'Calls', 101)"
q "UPDATE crm.deal SET stage_id = $R WHERE id = 105"
sleep 1
check "while the call's request is in flight the next robot waits" "0|sending" \
	"$(q "SELECT count(*) FROM crm.timeline_comment WHERE entity_id = 105")|$(q "SELECT status FROM crm.outbox WHERE entity_id = 105")"
wait_for "SELECT count(*) = 1 FROM crm.timeline_comment WHERE entity_id = 105" 10 || true
check "the call sent, the wait ended and the next robot ran" "sent|1|done" \
	"$(q "SELECT status FROM crm.outbox WHERE entity_id = 105")|$(q "SELECT count(*) FROM crm.timeline_comment WHERE entity_id = 105 AND text = 'after the call'")|$(q "SELECT status FROM crm.job WHERE entity_id = 105 AND kind = 'wait'")"
check "the ended wait names the message and how it ended" "sent" \
	"$(q "SELECT j.context->>'message_status' FROM crm.job j JOIN crm.outbox o ON o.id = (j.context->>'message_id')::bigint WHERE j.entity_id = 105")"

echo "# a failing job is isolated and logged"
W=$(q "SELECT crm.stage('deal', 'won')")
q "SELECT crm.add_robot($W, 'add_comment', '{\"text\": \"=\\\"share \\\" & {{amount}} / 0\"}', delay => '{\"after\": \"1 second\"}')" >/dev/null
q "SELECT crm.add_robot($W, 'add_comment', '{\"text\": \"won {{title}}\"}', delay => '{\"after\": \"1 second\"}')" >/dev/null
timer=$(q "INSERT INTO crm.job (kind, entity_type, entity_id, due_at) VALUES ('process_resume', 'deal', 100, now() + interval '1 second') RETURNING id")
q "UPDATE crm.deal SET stage_id = $W WHERE id = 100" >/dev/null
wait_for "SELECT count(*) = 0 FROM crm.job WHERE status = 'pending' AND entity_id = 100" 10 || true
check "the robot that divides by zero failed, its neighbour ran" "failed|done|1" \
	"$(q "SELECT string_agg(l.status, '|' ORDER BY l.id) FROM crm.robot_log l JOIN crm.robot r ON r.id = l.robot_id WHERE r.stage_id = $W AND l.entity_id = 100")|$(q "SELECT count(*) FROM crm.timeline_comment WHERE text = 'won Stays'")"
check "a job without an executor is marked failed with its error" "failed|no executor for job kind \"process_resume\"" \
	"$(q "SELECT status || '|' || last_error FROM crm.job WHERE id = $timer")"
check "and the failure is in the server log" "1" \
	"$(grep -c "crm_automation: job $timer failed: no executor for job kind" "$CRM_CLUSTER_DIR/server.log" || true)"

echo "# a business process waits at its delay; the worker resumes it on time"
T=$(q "SELECT crm.add_process_template('deal', 'Later', '{\"activities\": [{\"type\": \"set_status_text\", \"text\": \"waiting\"}, {\"type\": \"delay\", \"for\": \"2 seconds\"}, {\"type\": \"add_comment\", \"text\": \"process resumed\"}, {\"type\": \"set_status_text\", \"text\": \"done\"}]}')")
I=$(q "SELECT crm.start_process($T, 100)")
check "the instance waits at its delay" "waiting|waiting" "$(q "SELECT status || '|' || status_text FROM crm.process_instance WHERE id = $I")"
wait_for "SELECT status = 'completed' FROM crm.process_instance WHERE id = $I" 10 || true
check "the worker resumed it after the delay: the comment written, the instance completed" "completed|done|1" \
	"$(q "SELECT status || '|' || status_text FROM crm.process_instance WHERE id = $I")|$(q "SELECT count(*) FROM crm.timeline_comment WHERE text = 'process resumed'")"

echo "# SIGHUP: crm.worker_enabled"
q "ALTER SYSTEM SET crm.worker_enabled = off"
q "SELECT pg_reload_conf()" >/dev/null
sleep 0.5
id=$(q "INSERT INTO crm.outbox (channel, payload) VALUES ('webhook', '{\"url\": \"$B/ok/paused\"}') RETURNING id")
sleep 1
check "with the worker disabled, a message waits" "pending" "$(q "SELECT status FROM crm.outbox WHERE id = $id")"
q "ALTER SYSTEM RESET crm.worker_enabled"
q "SELECT pg_reload_conf()" >/dev/null
wait_for "SELECT status = 'sent' FROM crm.outbox WHERE id = $id" 15 || true
check "enabled again on reload, it is sent" "sent" "$(q "SELECT status FROM crm.outbox WHERE id = $id")"

echo "# the workers' life (crm.workers_per_database = 2, the default)"
workers() {	# workers DATABASE: how many run
	q "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'crm_automation worker' AND datname = '$1'"
}
wait_for "SELECT count(*) = 2 FROM pg_stat_activity WHERE backend_type = 'crm_automation worker' AND datname = 'crm_it'" 10 || true
check "two workers for crm_it, running, ranks 0 and 1" "0 running,1 running|2" \
	"$(q "SELECT string_agg(worker || ' ' || state, ',' ORDER BY worker) FROM crm.worker_status() WHERE role = 'delivery' AND database = 'crm_it'")|$(workers crm_it)"
check "and one job runner (crm.job_workers = 1, the default), in a process of its own" "0 running|1" \
	"$(q "SELECT string_agg(worker || ' ' || state, ',') FROM crm.worker_status() WHERE role = 'jobs' AND database = 'crm_it'")|$(q "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'crm_automation job runner' AND datname = 'crm_it'")"
check "crm.worker_status() shows the workers' pids" "2" \
	"$(q "SELECT count(*) FROM crm.worker_status() s JOIN pg_stat_activity a USING (pid) WHERE s.database = 'crm_it' AND a.backend_type = 'crm_automation worker'")"
check "a database without the extension shows its first worker absent, no other" "0 absent" \
	"$(q "SELECT string_agg(worker || ' ' || state, ',' ORDER BY worker) FROM crm.worker_status() WHERE role = 'delivery' AND database = 'postgres'")"
# a sent message older than crm.outbox_retention: the worker deletes it when it starts
old=$(q "INSERT INTO crm.outbox (channel, payload, status, sent_at, created_at) VALUES ('webhook', '{}', 'sent', now() - interval '8 days', now() - interval '8 days') RETURNING id")
pid=$(q "SELECT pid FROM crm.worker_status() WHERE role = 'delivery' AND database = 'crm_it' AND worker = 0")
kill -9 "$pid"
sleep 0.5
for i in $(seq 1 100); do
	psql -X -q -d crm_it -c "SELECT 1" >/dev/null 2>&1 && break; sleep 0.2
done
id=$(q "INSERT INTO crm.outbox (channel, payload) VALUES ('webhook', '{\"url\": \"$B/ok/after-crash\"}') RETURNING id")
wait_for "SELECT status = 'sent' FROM crm.outbox WHERE id = $id" 20 || true
check "after a worker crash (server reinitialised) a new worker delivers" "sent" "$(q "SELECT status FROM crm.outbox WHERE id = $id")"
check "the new worker cleaned up the outbox: sent messages older than 7 days are gone" "0" \
	"$(q "SELECT count(*) FROM crm.outbox WHERE id = $old")"

wait_for "SELECT count(*) = 2 FROM pg_stat_activity WHERE backend_type = 'crm_automation worker' AND datname = 'crm_it'" 10 || true
check "after the crash both workers run again" "2" "$(workers crm_it)"

q "DROP EXTENSION crm_automation CASCADE"
wait_for "SELECT count(*) = 0 FROM pg_stat_activity WHERE backend_type = 'crm_automation worker' AND datname = 'crm_it'" 10 || true
check "DROP EXTENSION: both workers leave" "0" "$(workers crm_it)"
check "each says why in the server log" "2" \
	"$(grep -c 'crm_automation worker [01] stopping: the extension was dropped from database "crm_it"' "$CRM_CLUSTER_DIR/server.log" || true)"
q "CREATE EXTENSION crm_automation"
wait_for "SELECT count(*) = 2 FROM pg_stat_activity WHERE backend_type = 'crm_automation worker' AND datname = 'crm_it'" 10 || true
check "CREATE EXTENSION: the workers start at once" "2" "$(workers crm_it)"

psql -X -q -d postgres -c "CREATE DATABASE crm_other" >/dev/null
psql -X -q -d crm_other -c "CREATE EXTENSION crm_automation" >/dev/null
wait_for "SELECT count(*) = 2 FROM pg_stat_activity WHERE backend_type = 'crm_automation worker' AND datname = 'crm_other'" 10 || true
check "a second database gets its own workers" "2" "$(workers crm_other)"
if psql -X -q -d postgres -c "DROP DATABASE crm_other" >/dev/null 2>"$IT_DIR/drop.err"; then r=dropped; else r=$(cat "$IT_DIR/drop.err"); fi
check "DROP DATABASE (without FORCE) succeeds while its workers were running" "dropped" "$r"
check "no database without the extension has a worker" "0" \
	"$(q "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'crm_automation worker' AND datname <> 'crm_it'")"

it_end
