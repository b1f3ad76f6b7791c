-- crm_automation demo: a deal moving through its pipeline.
\pset footer off
CREATE EXTENSION crm_automation;

\echo '== A team'
INSERT INTO crm.department (name) VALUES ('Sales');
INSERT INTO crm.user (name, email, department_id) VALUES
	('Mia Manager', 'mia@example.com', 1),
	('Sam Seller', 'sam@example.com', 1);
UPDATE crm.department SET head_id = 1 WHERE id = 1;
SELECT u.id, u.name, d.name AS department, d.head_id = u.id AS is_head
  FROM crm.user u JOIN crm.department d ON d.id = u.department_id ORDER BY u.id;

\echo '== The deal pipeline'
SELECT s.sort, s.code, s.name, s.semantics
  FROM crm.stage s WHERE s.pipeline_id = crm.default_pipeline('deal') ORDER BY s.sort;

\echo '== A deal is created by plain SQL and lands in the first stage'
INSERT INTO crm.contact (name, phone, email) VALUES ('Claire Client', '+33 6 12 34 56 78', 'claire@example.org');
INSERT INTO crm.deal (title, responsible_id, contact_id, amount)
VALUES ('Office chairs', 2, 1, 4800);
SELECT d.id, d.title, s.code AS stage FROM crm.deal d JOIN crm.stage s ON s.id = d.stage_id;

\echo '== It moves through its stages'
UPDATE crm.deal SET stage_id = crm.stage('deal', 'preparation') WHERE id = 1;
UPDATE crm.deal SET stage_id = crm.stage('deal', 'executing') WHERE id = 1;
UPDATE crm.deal SET stage_id = crm.stage('deal', 'won') WHERE id = 1;
SELECT d.id, d.title, s.code AS stage, s.semantics FROM crm.deal d JOIN crm.stage s ON s.id = d.stage_id;

\echo '== Robots on the stages (automation rules)'
SELECT crm.add_robot(crm.stage('deal', 'preparation'), 'create_task',
	'{"title": "Prepare the quote for {{title}}", "responsible": "responsible", "deadline": "tomorrow"}',
	name => 'quote_task') IS NOT NULL AS robot_added;
SELECT crm.add_robot(crm.stage('deal', 'preparation'), 'notify',
	'{"text": "{{responsible.name}} prepares {{title}} ({{amount}} {{currency}}), task {=Robot:quote_task.task_id}", "recipients": "supervisor"}',
	condition => '"{{amount}} >= 1000"') IS NOT NULL AS robot_added;
SELECT crm.add_robot(crm.stage('deal', 'executing'), 'add_comment',
	'{"text": "={{title}} & \" is in progress, expected margin \" & round({{amount}} * 0.3, 0)"}') IS NOT NULL AS robot_added;
-- The ERP is a local sink started by demo/run.sh (:sink_url); its provider
-- signs every webhook (Standard Webhooks, whsec_ secret).
SELECT crm.add_provider('webhook', 'erp', '{"headers": {"X-Source": "crm-demo"}}',
	'whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw') IS NOT NULL AS provider_added;
SELECT crm.add_robot(crm.stage('deal', 'won'), 'webhook',
	jsonb_build_object('url', :'sink_url' || '/deals/{{id}}', 'provider', 'erp',
					   'body', jsonb_build_object('deal', '{{title}}', 'client', '{{contact.name}}', 'amount', '{{amount}}')))
	IS NOT NULL AS robot_added;
SELECT crm.add_robot(crm.stage('deal', 'won'), 'add_comment', '{"text": "Ask {{contact.name}} for a review"}',
	delay => '{"after": "7 days"}') IS NOT NULL AS robot_added;

\echo '== A second deal moves through the same stages; the robots fire'
INSERT INTO crm.deal (title, responsible_id, contact_id, amount) VALUES ('Standing desks', 2, 1, 12500);
UPDATE crm.deal SET stage_id = crm.stage('deal', 'preparation') WHERE title = 'Standing desks';
UPDATE crm.deal SET stage_id = crm.stage('deal', 'executing') WHERE title = 'Standing desks';
UPDATE crm.deal SET stage_id = crm.stage('deal', 'won') WHERE title = 'Standing desks';

\echo '== What the automation did'
SELECT a.stage, a.action, a.status FROM crm.deal d, crm.item_automation('deal', d.id) a
 WHERE d.title = 'Standing desks' ORDER BY a.log_id;
SELECT title, responsible_id, deadline::date = current_date + 1 AS due_tomorrow FROM crm.task;
SELECT user_id AS notified, text FROM crm.notification;
SELECT text AS timeline FROM crm.timeline_comment;
SELECT channel, status, payload->>'url' AS url, payload->'body' AS body FROM crm.outbox ORDER BY id;
SELECT kind, status, due_at::date - current_date AS due_in_days FROM crm.job;

\echo '== The worker delivers the webhook after commit (waiting up to 5 s)'
DO $$
BEGIN
	FOR i IN 1..50 LOOP
		EXIT WHEN NOT EXISTS (SELECT FROM crm.outbox WHERE channel = 'webhook' AND status IN ('pending', 'sending'));
		PERFORM pg_sleep(0.1);
	END LOOP;
END $$;
SELECT channel, status, attempts, response_code, response_excerpt, last_error
  FROM crm.outbox ORDER BY id;
SELECT channel, pending, sending, failed, dead, sent_last_minute FROM crm.outbox_stats;

\echo '== Triggers: events move a deal (a client''s call, then an application''s event)'
SELECT crm.add_trigger(crm.stage('deal', 'preparation'), 'incoming_call', name => 'Client called') IS NOT NULL AS trigger_added;
SELECT crm.add_trigger(crm.stage('deal', 'executing'), 'webhook', '{"code": "contract.signed"}',
	condition => '"{=Event:total} >= {{amount}}"', name => 'Contract signed') IS NOT NULL AS trigger_added;
INSERT INTO crm.deal (title, responsible_id, contact_id, amount) VALUES ('Meeting tables', 2, 1, 3200);
INSERT INTO crm.activity (entity_type, entity_id, type, direction, remote_address, subject)
SELECT 'deal', id, 'call', 'incoming', '+33 6 12 34 56 78', 'Question on the tables'
  FROM crm.deal WHERE title = 'Meeting tables';
SELECT crm.fire_trigger('contract.signed', 'deal', id, '{"total": 3200}') AS outcome
  FROM crm.deal WHERE title = 'Meeting tables';
SELECT a.kind, a.name, a.action, a.stage, a.status FROM crm.deal d, crm.item_automation('deal', d.id) a
 WHERE d.title = 'Meeting tables' ORDER BY a.log_id;
SELECT h.user_id, h.text FROM crm.history h JOIN crm.deal d ON d.id = h.entity_id
 WHERE d.title = 'Meeting tables' AND h.event_type = 'stage_change' ORDER BY h.id;

\echo '== A business process: big deals wait for the manager''s approval'
-- Starts by itself for every new deal (auto_start add); over the threshold a
-- task for the responsible's supervisor pauses it until the task is done.
SELECT crm.add_process_template('deal', 'Approval', $${
	"constants": {"threshold": 10000},
	"activities": [
		{"type": "if", "condition": "{{amount}} >= {=Constant:threshold}",
		 "then": [
			{"type": "set_status_text", "text": "Waiting for the manager's approval"},
			{"type": "create_task", "name": "approval", "title": "Approve {{title}} ({{amount}} {{currency}})",
			 "responsible": "supervisor", "wait": true},
			{"type": "add_comment", "text": "Approved (task {=Activity:approval.task_id})"},
			{"type": "set_status_text", "text": "Approved"}],
		 "else": [{"type": "set_status_text", "text": "No approval needed"}]}]}$$,
	auto_start => '{add}') IS NOT NULL AS template_added;
INSERT INTO crm.deal (title, responsible_id, contact_id, amount)
VALUES ('Conference room', 2, 1, 24000), ('Desk lamps', 2, 1, 600);
SELECT d.title, p.status, p.status_text, p.waiting_for
  FROM crm.deal d, crm.document_processes('deal', d.id) p
 WHERE d.title IN ('Conference room', 'Desk lamps') ORDER BY d.id;
SELECT t.title, u.name AS responsible, t.status FROM crm.task t JOIN crm.user u ON u.id = t.responsible_id
 WHERE t.process_instance_id IS NOT NULL;

\echo '== The manager completes the task; the job runner resumes the process (waiting up to 5 s)'
UPDATE crm.task SET status = 'completed' WHERE process_instance_id IS NOT NULL;
DO $$
BEGIN
	FOR i IN 1..50 LOOP
		EXIT WHEN NOT EXISTS (SELECT FROM crm.process_instance WHERE status = 'waiting');
		PERFORM pg_sleep(0.1);
	END LOOP;
END $$;
SELECT d.title, p.status, p.status_text
  FROM crm.deal d, crm.document_processes('deal', d.id) p
 WHERE d.title = 'Conference room';
\echo '== Its trace, next to the rest of the deal''s automation'
SELECT a.kind, a.name, a.action, a.status, a.outputs
  FROM crm.deal d, crm.item_automation('deal', d.id) a
 WHERE d.title = 'Conference room' ORDER BY a.planned_at, a.log_id;
SELECT text AS timeline FROM crm.timeline_comment t JOIN crm.deal d ON d.id = t.entity_id
 WHERE d.title = 'Conference room';

\echo '== Why did (or didn''t) it run? Desk lamps, as if it entered "preparation"'
-- crm.explain: each robot of the stage, each trigger of the pipeline, each
-- process template that starts by itself, with the decision a run would
-- make now and the condition with the deal's values (nothing is run).
SELECT kind, rule, decision, condition, substituted
  FROM crm.explain('deal', (SELECT id FROM crm.deal WHERE title = 'Desk lamps'),
				   stage => crm.stage('deal', 'preparation'));

\echo '== What would moving Desk lamps to "won" do? Simulated (rolled back), then done'
-- crm.simulate runs the UPDATE with all its automation and rolls it back:
-- every row it would write, and nothing is left (no message, no job).
SELECT seq, op, tbl, actor, summary
  FROM crm.simulate($$UPDATE crm.deal SET stage_id = crm.stage('deal', 'won') WHERE title = 'Desk lamps'$$);
SELECT count(*) AS messages_for_desk_lamps FROM crm.outbox o JOIN crm.deal d ON d.id = o.entity_id
 WHERE d.title = 'Desk lamps';
UPDATE crm.deal SET stage_id = crm.stage('deal', 'won') WHERE title = 'Desk lamps';
SELECT a.action, a.status FROM crm.deal d, crm.item_automation('deal', d.id) a
 WHERE d.title = 'Desk lamps' AND a.stage = 'won' ORDER BY a.log_id;
DO $$
BEGIN
	FOR i IN 1..50 LOOP
		EXIT WHEN NOT EXISTS (SELECT FROM crm.outbox WHERE channel = 'webhook' AND status IN ('pending', 'sending'));
		PERFORM pg_sleep(0.1);
	END LOOP;
END $$;
SELECT o.channel, o.status, o.payload->>'url' AS url FROM crm.outbox o JOIN crm.deal d ON d.id = o.entity_id
 WHERE d.title = 'Desk lamps';
