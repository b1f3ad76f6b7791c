-- Robots: rules attached to a stage that run when an item enters it.
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS crm_automation CASCADE;
CREATE EXTENSION crm_automation;
RESET client_min_messages;

-- A team: Mia heads Sales, Sam sells.
INSERT INTO crm.department (id, name) VALUES (1, 'Sales');
INSERT INTO crm.user (id, name, email, phone, department_id) VALUES
	(1, 'Mia', 'mia@example.com', '+33100000001', 1),
	(2, 'Sam', 'sam@example.com', '+33100000002', 1);
UPDATE crm.department SET head_id = 1;
SELECT crm.supervisor_of(2) AS sams_supervisor, crm.supervisor_of(1) AS mias_supervisor;

-- The catalogue is discoverable from psql.
SELECT action, family, outbound, outputs FROM crm.robot_actions ORDER BY action;
SELECT p->>'name' AS param, p->>'type' AS type, (p->>'required')::boolean AS required
  FROM crm.robot_actions, jsonb_array_elements(parameters) p
 WHERE action = 'send_sms';

-- Robots on "preparation": a comment, a history entry, a task whose id a
-- later robot reads, and a notification to the supervisor.
SELECT crm.add_robot(crm.stage('deal', 'preparation'), 'add_comment',
	'{"text": "Preparing {{title}} ({{amount}} {{currency}}) for {{responsible.name}}"}') IS NOT NULL AS added;
SELECT crm.add_robot(crm.stage('deal', 'preparation'), 'write_log',
	'{"text": "Documents requested"}') IS NOT NULL AS added;
SELECT crm.add_robot(crm.stage('deal', 'preparation'), 'create_task',
	'{"title": "Prepare documents for {{title}}", "responsible": "responsible", "deadline": "tomorrow"}',
	name => 'docs') IS NOT NULL AS added;
SELECT crm.add_robot(crm.stage('deal', 'preparation'), 'notify',
	'{"text": "Task {=Robot:docs.task_id} opened for {{title}}", "recipients": "supervisor"}') IS NOT NULL AS added;

-- A deal created and moved by plain SQL runs them, in order.
INSERT INTO crm.deal (id, title, responsible_id, amount) VALUES (1, 'Chairs', 2, 4800);
UPDATE crm.deal SET stage_id = crm.stage('deal', 'preparation') WHERE id = 1;
SELECT text FROM crm.timeline_comment WHERE entity_id = 1;
SELECT event_type, text FROM crm.history WHERE entity_id = 1;
SELECT title, responsible_id, bindings, deadline IS NOT NULL AS has_deadline FROM crm.task;
SELECT user_id, kind, text = 'Task ' || (SELECT id FROM crm.task) || ' opened for Chairs' AS text_ok
  FROM crm.notification;
SELECT name, action, stage, status, error FROM crm.item_automation('deal', 1);

-- A condition that does not hold skips the robot (logged as skipped).
SELECT crm.add_robot(crm.stage('deal', 'executing'), 'add_comment', '{"text": "Big deal!"}',
	condition => '"={{amount}} >= 10000"') IS NOT NULL AS added;
UPDATE crm.deal SET stage_id = crm.stage('deal', 'executing') WHERE id = 1;
SELECT name, action, stage, status FROM crm.item_automation('deal', 1) WHERE stage = 'executing';

-- A failing robot is logged and the application's statement still succeeds:
-- Mia heads the department, so she has no supervisor to notify.
SELECT crm.add_robot(crm.stage('deal', 'final_invoice'), 'notify',
	'{"text": "Invoice {{title}}", "recipients": "supervisor"}') IS NOT NULL AS added;
SELECT crm.add_robot(crm.stage('deal', 'final_invoice'), 'write_log', '{"text": "after the failure"}') IS NOT NULL AS added;
INSERT INTO crm.deal (id, title, responsible_id, stage_id) VALUES (2, 'Desks', 1, crm.stage('deal', 'final_invoice'));
SELECT action, status, error FROM crm.item_automation('deal', 2);

-- A rolled-back move plans nothing.
BEGIN;
UPDATE crm.deal SET stage_id = crm.stage('deal', 'preparation') WHERE id = 2;
ROLLBACK;
SELECT count(*) AS preparation_runs_of_deal_2 FROM crm.robot_log
 WHERE entity_id = 2 AND stage_id = crm.stage('deal', 'preparation');

-- A delayed robot becomes a job; leaving the stage cancels it.
SELECT crm.add_robot(crm.stage('deal', 'prepayment_invoice'), 'add_comment', '{"text": "Reminder"}',
	delay => '{"after": "2 days"}', name => 'reminder') IS NOT NULL AS added;
SELECT crm.add_robot(crm.stage('deal', 'prepayment_invoice'), 'write_log', '{"text": "after the reminder"}',
	after_previous => true) IS NOT NULL AS added;
INSERT INTO crm.deal (id, title, responsible_id, stage_id) VALUES (3, 'Lamps', 2, crm.stage('deal', 'prepayment_invoice'));
SELECT kind, status, due_at - now() BETWEEN '1 day 23 hours' AND '2 days' AS due_in_2_days,
       jsonb_array_length(context->'chain') AS chained_robots FROM crm.job
 WHERE entity_id = 3 AND robot_id = (SELECT id FROM crm.robot WHERE name = 'reminder');
SELECT name, action, status FROM crm.item_automation('deal', 3);
UPDATE crm.deal SET stage_id = crm.stage('deal', 'executing') WHERE id = 3;
SELECT status FROM crm.job WHERE entity_id = 3;
SELECT name, action, stage, status FROM crm.item_automation('deal', 3);

-- Outbound actions write a rendered message to the outbox, nothing more.
SELECT crm.add_robot(crm.stage('deal', 'won'), 'webhook',
	'{"url": "https://hooks.example.com/deal/{{id}}", "body": {"deal": "{{title}}", "amount": "={{amount}}*2"}}') IS NOT NULL AS added;
SELECT crm.add_robot(crm.stage('deal', 'won'), 'send_email',
	'{"to": ["responsible", "boss@example.com"], "subject": "Won: {{title}}", "body": "Congratulations"}') IS NOT NULL AS added;
UPDATE crm.deal SET stage_id = crm.stage('deal', 'won') WHERE id = 1;
SELECT channel, status, payload FROM crm.outbox ORDER BY id;

-- update_item sets columns and custom fields; generate_code's output feeds it.
SELECT crm.add_field('deal', 'UF_CODE', 'Code');
SELECT crm.add_robot(crm.stage('deal', 'lost'), 'generate_code', '{"format": "digits", "length": 6}',
	name => 'gen') IS NOT NULL AS added;
SELECT crm.add_robot(crm.stage('deal', 'lost'), 'update_item',
	'{"fields": {"title": "{{title}} (lost)", "UF_CODE": "{=Robot:gen.code}", "amount": 0}}') IS NOT NULL AS added;
UPDATE crm.deal SET stage_id = crm.stage('deal', 'lost') WHERE id = 2;
SELECT title, amount, fields->>'UF_CODE' ~ '^[0-9]{6}$' AS code_ok FROM crm.deal WHERE id = 2;

-- A rule loop stops with a log entry, not a failed statement: each stage
-- sends the lead to the other.
SELECT crm.add_robot(crm.stage('lead', 'in_process'), 'change_status', '{"stage": "processed"}') IS NOT NULL AS added;
SELECT crm.add_robot(crm.stage('lead', 'processed'), 'change_status', '{"stage": "in_process"}') IS NOT NULL AS added;
INSERT INTO crm.lead (id, title) VALUES (1, 'Loop');
UPDATE crm.lead SET stage_id = crm.stage('lead', 'in_process') WHERE id = 1;
SELECT stage, status FROM crm.item_automation('lead', 1);
SELECT s.code FROM crm.lead l JOIN crm.stage s ON s.id = l.stage_id;

-- Bad definitions are refused with a clear error, and nothing is stored.
SELECT count(*) AS robots_before FROM crm.robot;
SELECT crm.add_robot(crm.stage('deal', 'new'), 'teleport', '{}');
SELECT crm.add_robot(crm.stage('deal', 'new'), 'notify', '{"text": "hi"}');
SELECT crm.add_robot(crm.stage('deal', 'new'), 'notify', '{"text": "hi", "recipients": 2, "colour": "red"}');
SELECT crm.add_robot(crm.stage('deal', 'new'), 'notify', '{"text": 5, "recipients": "nobody"}');
SELECT crm.add_robot(crm.stage('deal', 'new'), 'send_sms', jsonb_build_object('text', repeat('x', 201), 'recipients', '+33611111111'));
SELECT crm.add_robot(crm.stage('deal', 'new'), 'add_comment', '{"text": "{{no_such_field}}"}');
SELECT crm.add_robot(crm.stage('deal', 'new'), 'add_comment', '{"text": "=1 +"}');
SELECT crm.add_robot(crm.stage('deal', 'new'), 'add_comment', '{"text": "x"}', delay => '{"after": "soon"}');
SELECT crm.add_robot(crm.stage('deal', 'new'), 'generate_code', '{"format": "emoji", "length": 4}');
SELECT crm.add_robot(crm.stage('deal', 'preparation'), 'add_comment', '{"text": "x"}', name => 'docs');
SELECT crm.add_robot(999999, 'add_comment', '{"text": "x"}');
SELECT count(*) AS robots_after FROM crm.robot;

-- copy, move, update, delete.
SELECT crm.copy_robot((SELECT id FROM crm.robot WHERE name = 'docs'), crm.stage('deal', 'new')) IS NOT NULL AS copied;
SELECT crm.update_robot((SELECT id FROM crm.robot WHERE name = 'docs' AND stage_id = crm.stage('deal', 'new')),
	params => '{"title": "Call {{title}}", "responsible": 1}');
SELECT s.code, r.params->>'title' AS title FROM crm.robot r JOIN crm.stage s ON s.id = r.stage_id
 WHERE r.name = 'docs' ORDER BY s.sort;
SELECT crm.move_robot((SELECT id FROM crm.robot WHERE name = 'docs' AND stage_id = crm.stage('deal', 'new')),
	crm.stage('deal', 'executing'));
SELECT crm.delete_robot((SELECT id FROM crm.robot WHERE name = 'docs' AND stage_id = crm.stage('deal', 'executing')));
SELECT count(*) AS docs_robots FROM crm.robot WHERE name = 'docs';

-- When a job is due, crm.run_next_job() (the worker's call) runs it and the
-- robots chained after it; a control notifies the supervisor.
SELECT crm.add_robot(crm.stage('quote', 'sent'), 'add_comment', '{"text": "Follow up on {{title}}"}',
	delay => '{"after": "1 hour"}', name => 'follow') IS NOT NULL AS added;
SELECT crm.add_robot(crm.stage('quote', 'sent'), 'write_log', '{"text": "followed up"}',
	after_previous => true) IS NOT NULL AS added;
SELECT crm.add_robot(crm.stage('quote', 'sent'), 'control',
	'{"after": "3 days", "text": "{{title}} is stuck"}') IS NOT NULL AS added;
INSERT INTO crm.quote (id, title, responsible_id, stage_id) VALUES (1, 'Offer', 2, crm.stage('quote', 'sent'));
SELECT crm.run_next_job() IS NULL AS nothing_due_yet;
UPDATE crm.job SET due_at = now() - interval '1 second' WHERE entity_type = 'quote';
SELECT crm.run_next_job() IS NOT NULL AS ran, crm.run_next_job() IS NOT NULL AS ran_again,
       crm.run_next_job() IS NULL AS none_left;
SELECT kind, status FROM crm.job WHERE entity_type = 'quote' ORDER BY id;
SELECT text FROM crm.timeline_comment WHERE entity_type = 'quote';
SELECT text FROM crm.history WHERE entity_type = 'quote';
SELECT user_id, text FROM crm.notification WHERE entity_type = 'quote';
SELECT action, status FROM crm.item_automation('quote', 1);

-- Row triggers note stage changes; the statement trigger item_batch runs
-- them.  With it disabled, the changes could not be automated: the
-- transaction refuses to commit rather than silently skip its robots.
ALTER TABLE crm.quote DISABLE TRIGGER item_batch;
BEGIN;
INSERT INTO crm.quote (id, title, stage_id) VALUES (2, 'Unserved', crm.stage('quote', 'sent'));
COMMIT;
ALTER TABLE crm.quote ENABLE TRIGGER item_batch;
SELECT count(*) AS unserved_quotes FROM crm.quote WHERE id = 2;

-- A delay tied to a date field follows the field: when the close date
-- moves, the job moves with it; other changes leave it alone; an emptied
-- date fails the job, with the reason in the item's history.
SELECT crm.add_pipeline('deal', 'Renewals') IS NOT NULL AS added;
SELECT crm.add_stage((SELECT id FROM crm.pipeline WHERE name = 'Renewals'), 'renewal', 'Renewal') IS NOT NULL AS added;
SELECT crm.add_robot(crm.stage('deal', 'renewal', 'Renewals'), 'add_comment', '{"text": "Renewal due tomorrow"}',
	delay => '{"at": "close_date", "offset": "-1 day"}', name => 'eve') IS NOT NULL AS added;
INSERT INTO crm.deal (id, title, responsible_id, close_date, stage_id)
	VALUES (50, 'Support plan', 1, '2030-06-10', crm.stage('deal', 'renewal', 'Renewals'));
SELECT to_char(due_at, 'YYYY-MM-DD') AS due FROM crm.job WHERE entity_type = 'deal' AND entity_id = 50;
UPDATE crm.deal SET close_date = '2030-07-01' WHERE id = 50;
SELECT to_char(due_at, 'YYYY-MM-DD') AS due_after_move FROM crm.job WHERE entity_type = 'deal' AND entity_id = 50;
UPDATE crm.deal SET title = 'Support plan 2030' WHERE id = 50;
SELECT to_char(due_at, 'YYYY-MM-DD') AS due_after_rename FROM crm.job WHERE entity_type = 'deal' AND entity_id = 50;
UPDATE crm.deal SET close_date = NULL WHERE id = 50;
SELECT status, last_error FROM crm.job WHERE entity_type = 'deal' AND entity_id = 50;
SELECT name, status, error FROM crm.item_automation('deal', 50);
