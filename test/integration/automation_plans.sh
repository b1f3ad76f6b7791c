#!/usr/bin/env bash
# Every statement on the automation path reads the tables that grow (jobs,
# activities, logs, the outbox, comments, items …) through an index, never
# by a sequential scan, whatever their statistics say (issue 19).  Its plans
# are kept by the session, made once from the statistics of the moment, so
# a table that was empty then and holds millions of rows now must not be
# read in full.
#
# The harshest statistics: every table vacuumed and analyzed while empty
# (0 pages, 0 rows), where a sequential scan costs nothing and would win
# over any index.  Then one session runs the automation again and again
# (bulk and single moves into a stage with robots of many kinds, delays on a
# date field, a wait, a control, an auto-complete activity; incoming calls a
# trigger moves deals with, the exceptions list; due jobs; business
# processes with a timer and waiting for a task), so that its kept plans
# become generic, while auto_explain logs every plan, nested ones included
# (SPI, PL/pgSQL).  No logged plan may read a table outside the small definition tables
# (stages, robots, users …) in full: by a sequential scan, or by an index
# scan with no condition (all of a partial index, such as every pending job).
# The job runner's statements (crm.run_next_job, crm.run_due_jobs: their
# claims and their reads of the claimed jobs) are judged the same way.
set -euo pipefail
cd "$(dirname "$0")/../.."
. scripts/lib.sh
. test/integration/common.bash

it_begin automation_plans "crm.worker_enabled = off" "autovacuum = off" \
	"session_preload_libraries = 'auto_explain'" "auto_explain.log_min_duration = 0" \
	"auto_explain.log_nested_statements = on" "auto_explain.log_format = json" "auto_explain.log_verbose = on" \
	"log_min_messages = log" "logging_collector = on" "log_destination = 'csvlog'" \
	"log_directory = '$IT_DIR/log'" "log_filename = 'pg.log'" "log_file_mode = 0644"

# Setup, not judged (auto_explain is off in this session).
psql -X -q -v ON_ERROR_STOP=1 -d crm_it <<'SQL' >/dev/null 2>&1
SET auto_explain.log_min_duration = -1;
INSERT INTO crm.department (id, name) VALUES (1, 'Sales');
INSERT INTO crm.user (id, name, email, department_id) VALUES (1, 'Boss', 'boss@example.com', 1), (2, 'Ann', 'ann@example.com', 1);
UPDATE crm.department SET head_id = 1;
SELECT crm.add_robot(crm.stage('deal', 'preparation'), a, p::jsonb, delay => d::jsonb)
  FROM (VALUES
	('create_activity', '{"subject": "Call {{title}}", "auto_complete": true}', NULL),
	('add_comment', '{"text": "Now {{title}}"}', NULL),
	('write_log', '{"text": "Logged {{title}}"}', NULL),
	('notify', '{"text": "Note {{title}}", "recipients": ["responsible"]}', NULL),
	('create_task', '{"title": "Task {{title}}", "responsible": "responsible"}', NULL),
	('update_item', '{"fields": {"amount": "={{amount}} + 1"}}', NULL),
	('generate_code', '{"format": "digits", "length": 6}', NULL),
	('webhook', '{"url": "http://127.0.0.1:9/hook"}', NULL),
	('control', '{"after": "1 day", "text": "still here"}', NULL),
	('add_comment', '{"text": "Later {{title}}"}', '{"after": "3 days"}'),
	('add_comment', '{"text": "Before closing"}', '{"at": "close_date", "offset": "-1 day"}'),
	('wait', '{"for": "2 days"}', NULL),
	('add_comment', '{"text": "After the wait"}', NULL)) r(a, p, d);
SELECT crm.add_robot(crm.stage('deal', 'final_invoice'), 'add_comment', '{"text": "Job for {{title}}"}',
	delay => '{"after": "1 hour"}');
SELECT crm.add_trigger(crm.stage('deal', 'preparation'), 'incoming_call');
SELECT crm.add_trigger(crm.stage('deal', 'executing'), 'webhook', '{"code": "go"}');
INSERT INTO crm.exception_list (type, value) VALUES ('phone', '+33 1 00 00 00 00');
SELECT crm.add_process_template('deal', 'Follow-up', $${
	"activities": [
		{"type": "set_status_text", "text": "Waiting for {{title}}"},
		{"type": "delay", "for": "1 hour"},
		{"type": "add_comment", "text": "Followed up {{title}}"}]}$$);
SELECT crm.add_process_template('deal', 'Approval', $${
	"activities": [
		{"type": "create_task", "title": "Approve {{title}}", "responsible": "responsible", "wait": true},
		{"type": "add_comment", "text": "Approved {{title}}"}]}$$);
INSERT INTO crm.deal (id, title, responsible_id, amount, close_date)
	SELECT g, 'd' || g, 2, g, current_date + 30 FROM generate_series(1, 400) g;
-- every table empty and analyzed as such, but the deals
TRUNCATE crm.timeline_comment, crm.history, crm.automation_log, crm.robot_log_entry, crm.job, crm.activity, crm.task,
	crm.notification, crm.outbox, crm.process_instance CASCADE;
VACUUM ANALYZE;
SQL

# The judged session (its backend's plans only): 8 rounds of the automation, each on 50 fresh deals.
{
	echo "SET client_min_messages = warning;"
	echo "SELECT pg_backend_pid() \\g (tuples_only=on format=unaligned) $IT_DIR/session.pid"
	for r in $(seq 0 7); do
		a=$((r * 50 + 1)); b=$((a + 19)); c=$((a + 20)); d=$((a + 29)); e=$((a + 30)); f=$((a + 39)); g=$((a + 40)); h=$((a + 49))
		cat <<SQL
/*test*/ UPDATE crm.deal SET stage_id = crm.stage('deal', 'preparation') WHERE id BETWEEN $a AND $b;
/*test*/ UPDATE crm.deal SET close_date = close_date + 1 WHERE id BETWEEN $a AND $((a + 4));
/*test*/ UPDATE crm.deal SET close_date = NULL WHERE id = $((a + 5));
/*test*/ UPDATE crm.deal SET stage_id = crm.stage('deal', 'executing') WHERE id BETWEEN $a AND $((a + 9));
/*test*/ UPDATE crm.deal SET stage_id = crm.stage('deal', 'preparation') WHERE id = $c;
/*test*/ UPDATE crm.deal SET stage_id = crm.stage('deal', 'executing') WHERE id = $c;
/*test*/ INSERT INTO crm.activity (entity_type, entity_id, type, direction, remote_address, subject)
	SELECT 'deal', i, 'call', 'incoming', '+336' || i, 'Call' FROM generate_series($((c + 1)), $d) i;
/*test*/ INSERT INTO crm.activity (entity_type, entity_id, type, direction, remote_address, subject)
	VALUES ('deal', $e, 'call', 'incoming', '+33 1 00 00 00 00', 'Excepted');
/*test*/ SELECT crm.fire_trigger('go', 'deal', $((e + 1)));
/*test*/ UPDATE crm.deal SET stage_id = crm.stage('deal', 'final_invoice') WHERE id BETWEEN $((e + 2)) AND $f;
/*test*/ SELECT crm.start_process('Follow-up', i) FROM generate_series($g, $((g + 2))) i;
/*test*/ SELECT crm.start_process('Approval', i) FROM generate_series($((g + 3)), $((g + 5))) i;
/*test*/ UPDATE crm.task SET status = 'completed' WHERE entity_id BETWEEN $((g + 3)) AND $((g + 4)) AND process_instance_id IS NOT NULL;
/*test*/ DELETE FROM crm.task WHERE entity_id = $((g + 5)) AND process_instance_id IS NOT NULL;
/*test*/ UPDATE crm.job SET due_at = now() - interval '1 minute' WHERE status = 'pending'
   AND (kind IN ('process_timer', 'control') OR entity_id BETWEEN $((e + 2)) AND $f);
/*test*/ SELECT count(crm.run_next_job()) FROM generate_series(1, 10);
/*test*/ SELECT crm.run_due_jobs(10);
/*test*/ DELETE FROM crm.deal WHERE id = $h;
SQL
	done
	echo "/*test*/ SELECT crm.run_due_jobs(10000);"
} | psql -X -q -v ON_ERROR_STOP=1 -d crm_it >"$IT_DIR/session.out" 2>&1 || { echo "psql failed" >>"$IT_DIR/session.out"; cat "$IT_DIR/session.out"; }
check "the automation session ran without an error" "0" "$(grep -c -e ERROR -e 'psql failed' "$IT_DIR/session.out" || true)"
check "its robots ran (comments written)" "t" "$(q "SELECT count(*) > 300 FROM crm.timeline_comment")"
check "jobs ran (done)" "t" "$(q "SELECT count(*) >= 80 FROM crm.job WHERE status = 'done'")"
check "jobs were cancelled by leaving the stage" "t" "$(q "SELECT count(*) >= 80 FROM crm.job WHERE status = 'cancelled'")"
check "auto-complete activities were completed" "t" "$(q "SELECT count(*) >= 80 FROM crm.activity WHERE auto_complete AND completed")"
check "paused processes resumed: tasks completed, one deleted" "t|t" "$(q "SELECT count(*) >= 8 FROM crm.process_instance i JOIN crm.process_template t ON t.id = i.template_id WHERE t.name = 'Approval' AND i.status = 'completed'")|$(q "SELECT count(*) >= 4 FROM crm.process_instance i JOIN crm.process_template t ON t.id = i.template_id WHERE t.name = 'Approval' AND i.status = 'failed'")"
check "incoming calls moved deals" "t" "$(q "SELECT count(*) >= 80 FROM crm.robot_log WHERE kind = 'trigger' AND status = 'fired'")"
check "the excepted phone's calls were not recorded" "0" "$(q "SELECT count(*) FROM crm.activity WHERE subject = 'Excepted'")"

# The plans: sequential scans of crm tables that grow, per statement.
psql -X -q -d postgres -c "SELECT 1" >/dev/null	# the log is flushed by then
"$PY" - "$IT_DIR/log/pg.csv" "$(cat "$IT_DIR/session.pid")" >"$IT_DIR/scans.out" <<'PY'
import csv, json, re, sys
csv.field_size_limit(1 << 30)
small = {"entity_type", "pipeline", "stage", "user_field", "robot", "trigger", "work_schedule",
         "holiday", "provider", "provider_secret", "department", "user", "process_template",
         "document_template", "webform", "disabled_endpoint"}
plans = bad = 0
seen = set()
def scans(node):
    # a sequential scan, or an index read whole (no condition: all of a
    # partial index, e.g. every pending job)
    kind = node.get("Node Type")
    if kind == "Seq Scan" or (kind in ("Index Scan", "Index Only Scan") and "Index Cond" not in node):
        yield node.get("Schema"), node.get("Relation Name")
    if kind == "Bitmap Heap Scan" and not any("Index Cond" in c for c in node.get("Plans", [])):
        yield node.get("Schema"), node.get("Relation Name")
    for child in node.get("Plans", []):
        yield from scans(child)
for row in csv.reader(open(sys.argv[1], newline="")):
    msg = row[13] if len(row) > 13 else ""
    if "plan:" not in msg or row[3] != sys.argv[2]:
        continue
    body = json.loads(msg.split("plan:", 1)[1])
    text = " ".join(body.get("Query Text", "").split())
    if text.startswith("/*test*/"):
        continue		# the session's own statements, not the automation's
    plans += 1
    for schema, rel in scans(body["Plan"]):
        if schema != "crm" or rel in small:
            continue
        key = (rel, text)
        if key in seen:
            continue
        seen.add(key)
        bad += 1
        print(f"# full scan of crm.{rel}: {text[:300]}")
print(f"plans={plans} bad={bad}")
PY
cat "$IT_DIR/scans.out" | head -40
check "auto_explain logged the session's plans (nested ones included)" "t" \
	"$(sed -n 's/^plans=\([0-9]*\).*/\1/p' "$IT_DIR/scans.out" | awk '{print ($1 > 500) ? "t" : "f"}')"
check "no statement of the automation read a growing table in full (sequential scan, or an index with no condition)" "0" \
	"$(sed -n 's/.* bad=\([0-9]*\)$/\1/p' "$IT_DIR/scans.out")"

it_end
