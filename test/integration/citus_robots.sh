#!/usr/bin/env bash
# A distributed installation (issue 16, first slice): a Citus coordinator and
# two worker nodes on loopback, built from the vendored Citus source (cached,
# scripts/citus.sh), crm.distribute(), then robots, triggers and delayed
# robots on deals spread over both workers: effects and the robot log in the
# item's shard, visible from the coordinator, ids unique in the cluster; a
# definition change reaching a connection already open on a worker; a deal
# inserted through a worker node.
set -euo pipefail
cd "$(dirname "$0")/../.."
. scripts/lib.sh
. scripts/citus.sh
. test/integration/common.bash

IT_NAME=citus_robots
crm_citus_install
trap 'crm_citus_cluster_stop; rm -rf "$IT_DIR"' EXIT
crm_citus_cluster_start crm_it "crm.worker_enabled = off"
W1=${CRM_CITUS_PORTS[1]}
W2=${CRM_CITUS_PORTS[2]}
# on a worker node
qw() {
	psql -X -q -t -A -v ON_ERROR_STOP=1 -p "$1" -d crm_it -c "$2"
}

q "CREATE EXTENSION crm_automation"
check "the extension is on every node" "1 1" "$(qw "$W1" "SELECT count(*) FROM pg_extension WHERE extname = 'crm_automation'") $(qw "$W2" "SELECT count(*) FROM pg_extension WHERE extname = 'crm_automation'")"
out=$(q "SELECT became, count(*) FROM crm.distribute() GROUP BY 1 ORDER BY 1")
check "crm.distribute() distributes items and their rows, definitions as reference tables" \
	"distributed by document_id|2
distributed by entity_id|15
distributed by id|7
reference table|25" "$out"
err=$(q "SELECT crm.distribute()" 2>&1 || true)
check "a second crm.distribute() is refused" "ERROR:  this installation is already distributed" "$(echo "$err" | head -n 1)"

q "INSERT INTO crm.department (id, name) VALUES (1, 'Sales');
   INSERT INTO crm.user (id, name, email, department_id) VALUES (1, 'Mia', 'mia@example.com', 1);
   INSERT INTO crm.robot (stage_id, name, action, params, sort)
   SELECT crm.stage('deal', 'preparation'), 'r' || g, 'add_comment',
		  jsonb_build_object('text', 'Robot ' || g || ' for {{title}}'), g * 10
	 FROM generate_series(1, 3) g;
   INSERT INTO crm.deal (title, responsible_id, amount) SELECT 'Deal ' || g, 1, g FROM generate_series(1, 200) g;"
check "the deals are spread over both workers" 2 \
	"$(q "SELECT count(DISTINCT p.groupid) FROM crm.deal d
		   JOIN pg_dist_placement p ON p.shardid = get_shard_id_for_distribution_column('crm.deal', d.id)")"

q "UPDATE crm.deal SET stage_id = crm.stage('deal', 'preparation')"
check "every robot wrote its comment, each in its deal's shard, seen from the coordinator" "600|200" \
	"$(q "SELECT count(*), count(DISTINCT entity_id) FROM crm.timeline_comment
		   WHERE text = 'Robot ' || substr(text, 7, 1) || ' for ' || (SELECT title FROM crm.deal d WHERE d.id = entity_id)")"
check "comment ids are unique in the cluster" 600 "$(q "SELECT count(DISTINCT id) FROM crm.timeline_comment")"
check "the robot log has each run, done" "600|done" \
	"$(q "SELECT count(*), string_agg(DISTINCT status, ',') FROM crm.robot_log WHERE action = 'add_comment'")"
check "no row went to a node's placeholder table" "0 0" \
	"$(qw "$W1" "SET citus.enable_router_execution = off; SELECT count(*) FROM pg_catalog.pg_class c
				 WHERE c.relname = 'robot_log_entry' AND c.relnamespace = 'crm'::regnamespace
				   AND pg_relation_size(c.oid) > 0") $(qw "$W2" "SELECT count(*) FROM pg_catalog.pg_class c
				 WHERE c.relname IN ('robot_log_entry', 'timeline_comment') AND c.relnamespace = 'crm'::regnamespace
				   AND pg_relation_size(c.oid) > 0")"

# a trigger: an incoming call moves the deal, on its worker's shard
q "INSERT INTO crm.trigger (stage_id, name, event) VALUES (crm.stage('deal', 'executing'), 'Call', 'incoming_call')"
q "INSERT INTO crm.activity (entity_type, entity_id, type, direction) VALUES ('deal', 5, 'call', 'incoming'), ('deal', 6, 'call', 'incoming')"
check "an incoming call moved the deals (trigger on the shard)" "executing executing" \
	"$(q "SELECT string_agg(s.code, ' ' ORDER BY d.id) FROM crm.deal d JOIN crm.stage s ON s.id = d.stage_id WHERE d.id IN (5, 6)")"
check "the trigger's decisions are logged" "2|fired" \
	"$(q "SELECT count(*), string_agg(DISTINCT status, ',') FROM crm.automation_log WHERE kind = 'trigger'")"

# delayed robots: a job each, cancelled when the deal leaves the stage
q "INSERT INTO crm.robot (stage_id, name, action, params, sort, delay)
   VALUES (crm.stage('deal', 'final_invoice'), 'later', 'add_comment', '{\"text\": \"Later\"}', 10, '{\"after\": \"1 hour\"}')"
q "UPDATE crm.deal SET stage_id = crm.stage('deal', 'final_invoice') WHERE id BETWEEN 1 AND 20"
check "a delayed robot leaves a pending job per deal" "20|pending" \
	"$(q "SELECT count(*), string_agg(DISTINCT status, ',') FROM crm.job")"
q "UPDATE crm.deal SET stage_id = crm.stage('deal', 'won') WHERE id BETWEEN 1 AND 10"
check "leaving the stage cancels the jobs and their log rows" "10|10|10" \
	"$(q "SELECT count(*) FILTER (WHERE status = 'cancelled') || '|' || count(*) FILTER (WHERE status = 'pending')
		   FROM crm.job")|$(q "SELECT count(*) FROM crm.robot_log WHERE name = 'later' AND status = 'cancelled'")"

# the other ten, due now, run by the job runner's function on each worker node
q "UPDATE crm.job SET due_at = now() - interval '1 minute' WHERE status = 'pending'"
ran=$(( $(qw "$W1" "SELECT crm.run_due_jobs(100)") + $(qw "$W2" "SELECT crm.run_due_jobs(100)") ))
check "each worker node runs the due jobs of its shards" 10 "$ran"
check "the delayed robots ran: comments, jobs done, log rows done" "10|10|10" \
	"$(q "SELECT count(*) FROM crm.timeline_comment WHERE text = 'Later'")|$(q "SELECT count(*) FROM crm.job WHERE status = 'done'")|$(q "SELECT count(*) FROM crm.robot_log WHERE name = 'later' AND status = 'done'")"
check "the coordinator holds no job" 0 "$(q "SELECT crm.run_due_jobs(100)")"

# a robot that writes another item (copy_deal): run by a job of the item's
# node, apart from the shard's statement; a comment robot after it runs at once
q "INSERT INTO crm.robot (stage_id, name, action, params, sort)
   VALUES (crm.stage('deal', 'lost'), 'copy', 'copy_deal', '{}', 10),
		  (crm.stage('deal', 'lost'), 'noted', 'add_comment', '{\"text\": \"Lost\"}', 20)"
q "UPDATE crm.deal SET stage_id = crm.stage('deal', 'lost') WHERE id IN (40, 41, 42)"
check "the copies wait for a job each; the comments are written at once" "3|3|0" \
	"$(q "SELECT count(*) FROM crm.job WHERE status = 'pending'")|$(q "SELECT count(*) FROM crm.timeline_comment WHERE text = 'Lost'")|$(q "SELECT count(*) FROM crm.deal WHERE title IN ('Deal 40', 'Deal 41', 'Deal 42') AND id > 200")"
ran=$(( $(qw "$W1" "SELECT crm.run_due_jobs(100)") + $(qw "$W2" "SELECT crm.run_due_jobs(100)") ))
check "the job runners of the nodes copy the deals, wherever the copies land" "3|3" \
	"$ran|$(q "SELECT count(*) FROM crm.deal WHERE title IN ('Deal 40', 'Deal 41', 'Deal 42') AND id > 200")"
check "the copies' runs are logged done, with the new deal's id" "3|3" \
	"$(q "SELECT count(*) FROM crm.robot_log WHERE name = 'copy' AND status = 'done'")|$(q "SELECT count(*) FROM crm.robot_log l JOIN crm.deal d ON d.id = (l.outputs ->> 'deal_id')::bigint WHERE l.name = 'copy'")"

# a business process paused on a task (the approval pattern): completing
# the task resumes it, by the job runner of the deal's node
t=$(q "SELECT crm.add_process_template('deal', 'Approval', '{\"activities\": [
	{\"type\": \"create_task\", \"name\": \"approve\", \"title\": \"Approve {{title}}\",
	 \"responsible\": \"responsible\", \"wait\": true},
	{\"type\": \"add_comment\", \"text\": \"approved: {=Activity:approve.status}\"}]}')")
i=$(q "SELECT crm.start_process($t, 50)")
check "the instance waits for its task, in the deal's shard" "waiting|1" \
	"$(q "SELECT status FROM crm.process_instance WHERE id = $i AND document_id = 50")|$(q "SELECT count(*) FROM crm.task WHERE process_instance_id = $i AND entity_id = 50")"
q "UPDATE crm.task SET status = 'completed', completed_at = now() WHERE process_instance_id = $i AND entity_id = 50"
ran=$(( $(qw "$W1" "SELECT crm.run_due_jobs(100)") + $(qw "$W2" "SELECT crm.run_due_jobs(100)") ))
check "completing the task resumes the instance on its node, which completes" "1|completed" \
	"$ran|$(q "SELECT status FROM crm.process_instance WHERE id = $i")"
check "the trace: the task done with its status, then the comment" "create_task|done|completed
add_comment|done|" \
	"$(q "SELECT type || '|' || status || '|' || coalesce(outputs ->> 'status', '') FROM crm.process_log WHERE instance_id = $i AND document_id = 50 ORDER BY id")"
check "the activity after the task read its status" 1 \
	"$(q "SELECT count(*) FROM crm.timeline_comment WHERE entity_id = 50 AND text = 'approved: completed'")"

# auto-start on add: every deal of a multi-row INSERT, on both workers
q "SELECT crm.add_process_template('deal', 'Welcome', '{\"activities\": [
	{\"type\": \"set_status_text\", \"text\": \"Welcome, {{title}}\"},
	{\"type\": \"add_comment\", \"text\": \"hi {{title}}\"}]}', auto_start => '{add}')" >/dev/null
q "INSERT INTO crm.deal (title, responsible_id) VALUES ('Auto a', 1), ('Auto b', 1), ('Auto c', 1), ('Auto d', 1)"
check "a template auto-starts on each new deal, in its shard" "4|4|Welcome, Auto c" \
	"$(q "SELECT count(*) FROM crm.process_instance i JOIN crm.deal d ON d.id = i.document_id WHERE d.title LIKE 'Auto %' AND i.status = 'completed'")|$(q "SELECT count(*) FROM crm.timeline_comment WHERE text LIKE 'hi Auto %'")|$(q "SELECT status_text FROM crm.document_processes('deal', $(q "SELECT id FROM crm.deal WHERE title = 'Auto c'"))")"

# what is an import is decided by the node that runs the statement: an
# INSERT ... SELECT from the coordinator (which Citus passes to the shards as
# a COPY) auto-starts; a COPY, and crm.import_mode = on (autocommit, in a
# transaction, turned off in it, single- and multi-shard), do not
starts() {
	q "SELECT string_agg(d.title || ':' || (SELECT count(*) FROM crm.process_instance i
	     WHERE i.document_id = d.id), ',' ORDER BY d.title) FROM crm.deal d WHERE d.title LIKE '$1%'"
}
q "INSERT INTO crm.deal (title, responsible_id) SELECT 'Sel ' || g, 1 FROM generate_series(1, 6) g"
check "an INSERT ... SELECT from the coordinator auto-starts each deal" \
	"Sel 1:1,Sel 2:1,Sel 3:1,Sel 4:1,Sel 5:1,Sel 6:1" "$(starts 'Sel ')"
printf 'Copied in %s\t1\n' 1 2 3 4 | psql -X -q -v ON_ERROR_STOP=1 -d crm_it \
	-c "COPY crm.deal (title, responsible_id) FROM STDIN"
check "a COPY on the coordinator is an import: nothing starts" \
	"Copied in 1:0,Copied in 2:0,Copied in 3:0,Copied in 4:0" "$(starts 'Copied in ')"
psql -X -q -v ON_ERROR_STOP=1 -d crm_it >/dev/null <<'SQL'
BEGIN;
COPY crm.deal (title, responsible_id) FROM STDIN;
Tx copy	1
\.
INSERT INTO crm.deal (title, responsible_id) VALUES ('Tx after the copy', 1);
COMMIT;
SET crm.import_mode = on;
INSERT INTO crm.deal (title, responsible_id) VALUES ('Imp single', 1);
INSERT INTO crm.deal (title, responsible_id) VALUES ('Imp multi a', 1), ('Imp multi b', 1);
INSERT INTO crm.deal (title, responsible_id) SELECT 'Imp select ' || g, 1 FROM generate_series(1, 3) g;
BEGIN;
INSERT INTO crm.deal (title, responsible_id) VALUES ('Imp tx on', 1);
SAVEPOINT s;
INSERT INTO crm.deal (title, responsible_id) VALUES ('Imp tx rolled back', 1);
ROLLBACK TO s;
INSERT INTO crm.deal (title, responsible_id) VALUES ('Imp tx after savepoint', 1);
SET crm.import_mode = off;
INSERT INTO crm.deal (title, responsible_id) VALUES ('Imp tx off', 1);
COMMIT;
SQL
check "a COPY in a transaction imports only its rows" "Tx after the copy:1,Tx copy:0" "$(starts 'Tx ')"
check "crm.import_mode = on on the coordinator reaches the shards' nodes; off again in the transaction, starts" \
	"Imp multi a:0,Imp multi b:0,Imp select 1:0,Imp select 2:0,Imp select 3:0,Imp single:0,Imp tx after savepoint:0,Imp tx off:1,Imp tx on:0" \
	"$(starts 'Imp ')"
q "UPDATE crm.process_template SET auto_start = '{}' WHERE name = 'Welcome'"

# feed posts are in a reference table, written on every node's placement:
# a template starts once per post, on the node of the post's process shard,
# and its actions (a notification about no item) run from that node's job runner
q "INSERT INTO crm.feed_post (author_id, title, text) VALUES (1, 'Before any template', 'x')"
q "SELECT crm.add_process_template('feed_post', 'Post', '{\"activities\": [
	{\"type\": \"set_status_text\", \"text\": \"post {{title}}\"},
	{\"type\": \"user_notification\", \"to\": [1], \"text\": \"new post {{title}}\"}]}', auto_start => '{add,modify}')" >/dev/null
q "INSERT INTO crm.feed_post (author_id, title, text) SELECT 1, 'Post ' || g, 'x' FROM generate_series(1, 4) g"
q "UPDATE crm.feed_post SET text = 'y' WHERE title = 'Post 1'"
check "one instance per post written and per post changed, each waiting before its notification" "Post 1:2,Post 2:1,Post 3:1,Post 4:1|5" \
	"$(q "SELECT string_agg(p.title || ':' || coalesce(n, 0), ',' ORDER BY p.title) FROM crm.feed_post p LEFT JOIN (SELECT document_id, count(*) AS n FROM crm.process_instance WHERE document_type = 'feed_post' GROUP BY 1) i ON i.document_id = p.id WHERE p.title LIKE 'Post %'")|$(q "SELECT count(*) FROM crm.process_instance WHERE document_type = 'feed_post' AND status = 'waiting'")"
ran=$(( $(qw "$W1" "SELECT crm.run_due_jobs(100)") + $(qw "$W2" "SELECT crm.run_due_jobs(100)") ))
check "the nodes' job runners complete them: 5 notifications about no item (entity_id 0)" "5|5|5" \
	"$ran|$(q "SELECT count(*) FROM crm.process_instance WHERE document_type = 'feed_post' AND status = 'completed'")|$(q "SELECT count(*) FROM crm.notification WHERE text LIKE 'new post Post %' AND entity_id = 0 AND process_instance_id IS NOT NULL")"
q "UPDATE crm.process_template SET auto_start = '{}' WHERE name = 'Post'"

# an auto-started activity that writes another item (copy_deal) pauses the
# instance before it; the job runner of the deal's node runs it and the rest
q "SELECT crm.add_process_template('deal', 'Copier', '{\"activities\": [
	{\"type\": \"add_comment\", \"text\": \"before the copy\"},
	{\"type\": \"copy_deal\", \"name\": \"copy\"},
	{\"type\": \"add_comment\", \"text\": \"copied to {=Activity:copy.deal_id}\"}]}', auto_start => '{add}')" >/dev/null
q "INSERT INTO crm.deal (title, responsible_id) VALUES ('Copied', 1)"
did=$(q "SELECT id FROM crm.deal WHERE title = 'Copied' ORDER BY id LIMIT 1")
q "UPDATE crm.process_template SET auto_start = '{}' WHERE name = 'Copier'"
check "the instance waits before copy_deal, the comment before it written" "waiting|1" \
	"$(q "SELECT status FROM crm.process_instance WHERE document_id = $did")|$(q "SELECT count(*) FROM crm.timeline_comment WHERE entity_id = $did AND text = 'before the copy'")"
ran=$(( $(qw "$W1" "SELECT crm.run_due_jobs(100)") + $(qw "$W2" "SELECT crm.run_due_jobs(100)") ))
check "the job runner of its node runs copy_deal and the rest" "1|completed|2" \
	"$ran|$(q "SELECT status FROM crm.process_instance WHERE document_id = $did")|$(q "SELECT count(*) FROM crm.deal WHERE title = 'Copied'")"
copy=$(q "SELECT max(id) FROM crm.deal WHERE title = 'Copied'")
check "the activity after it reads the copy's id; the trace shows the pause" "copied to $copy|add_comment done,copy_deal done deferred to the job runner,copy_deal done,add_comment done" \
	"$(q "SELECT text FROM crm.timeline_comment WHERE entity_id = $did AND text LIKE 'copied to %'")|$(q "SELECT string_agg(type || ' ' || status || coalesce(' deferred to the ' || (outputs ->> 'deferred'), ''), ',' ORDER BY id) FROM crm.process_log WHERE document_id = $did")"

# the loop case across nodes: a process that copies its deal (the job runner
# of one node inserting the copy into another node's shard) does not start
# itself on the copy, whichever node holds it
q "UPDATE crm.process_template SET auto_start = '{add}' WHERE name = 'Copier'"
q "INSERT INTO crm.deal (title, responsible_id) SELECT 'Looped ' || g, 1 FROM generate_series(1, 6) g"
for round in 1 2 3; do
	qw "$W1" "SELECT crm.run_due_jobs(100)" >/dev/null
	qw "$W2" "SELECT crm.run_due_jobs(100)" >/dev/null
done
q "UPDATE crm.process_template SET auto_start = '{}' WHERE name = 'Copier'"
check "six inserts, six instances, six copies (none started on a copy)" "12|6|6" \
	"$(q "SELECT count(*) FROM crm.deal WHERE title LIKE 'Looped %'")|$(q "SELECT count(*) FROM crm.process_instance i JOIN (SELECT id FROM crm.deal WHERE title LIKE 'Looped %') d ON d.id = i.document_id")|$(q "SELECT count(DISTINCT i.document_id) FROM crm.process_instance i JOIN (SELECT id FROM crm.deal WHERE title LIKE 'Looped %') d ON d.id = i.document_id WHERE i.status = 'completed'")"

# a connection already open on a worker node sees a robot added on the coordinator
coproc SESSION_W { psql -X -q -t -A -v ON_ERROR_STOP=0 -p "$W1" -d crm_it 2>&1; }
W_PID=$SESSION_W_PID	# bash unsets SESSION_W_PID once the coprocess ends
w() {
	local line out=""
	printf '%s;\n\\echo __done__\n' "$1" >&"${SESSION_W[1]}"
	while IFS= read -r -t 20 line <&"${SESSION_W[0]}"; do
		[ "$line" = __done__ ] && break
		out+="$line"$'\n'
	done
	printf '%s' "$out"
}
w "UPDATE crm.deal SET stage_id = crm.stage('deal', 'prepayment_invoice') WHERE id IN (30, 31)" >/dev/null
q "INSERT INTO crm.robot (stage_id, name, action, params, sort)
   VALUES (crm.stage('deal', 'prepayment_invoice'), 'new', 'add_comment', '{\"text\": \"Added later\"}', 10)"
w "UPDATE crm.deal SET stage_id = crm.stage('deal', 'new') WHERE id IN (30, 31)" >/dev/null
w "UPDATE crm.deal SET stage_id = crm.stage('deal', 'prepayment_invoice') WHERE id IN (30, 31)" >/dev/null
check "an open connection on a worker node runs a robot added on the coordinator" 2 \
	"$(q "SELECT count(*) FROM crm.timeline_comment WHERE text = 'Added later'")"

# a deal written through a worker node: an id of that node's range, robots run
out=$(w "INSERT INTO crm.deal (title, responsible_id, stage_id) VALUES ('From a worker', 1, crm.stage('deal', 'preparation')) RETURNING id")
id=$(echo "$out" | head -n 1)
check "a deal inserted on a worker node takes an id of its range" t \
	"$(q "SELECT $id >= (1::bigint << 48) AND count(*) = 1 FROM crm.deal WHERE id = $id")"
check "and its robots ran" 3 "$(q "SELECT count(*) FROM crm.timeline_comment WHERE entity_id = $id")"
printf '\\q\n' >&"${SESSION_W[1]}" || true
wait "$W_PID" 2>/dev/null || true

check "no server crashed" 0 "$(cat "$CRM_CITUS_DIR"/*.log | grep -c 'terminated by signal' || true)"
it_end
