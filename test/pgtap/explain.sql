-- crm.explain: for robots of every action family and triggers of every
-- event, the decision explain reports is the one the real run then makes
-- (explain first, then the real move or event, then the log); conditions
-- taken apart; NULL and hostile arguments; rights; nothing written.
BEGIN;
CREATE EXTENSION crm_automation;
SELECT plan(59);

INSERT INTO crm.department (id, name) VALUES (1, 'Sales');
INSERT INTO crm.user (id, name, email, phone, department_id) VALUES
	(1, 'Mia', 'mia@example.com', '+33600000001', 1),
	(2, 'Sam', 'sam@example.com', '+33600000002', 1),
	(3, 'Ola', 'ola@example.com', '+33600000003', 1);
UPDATE crm.department SET head_id = 1;
INSERT INTO crm.contact (id, name, phone, email) VALUES (1, 'Claire', '+33612345678', 'claire@example.org');
SELECT crm.add_field('deal', 'UF_NOTE', 'Note') IS NOT NULL AS field;
SELECT crm.add_provider('webhook', 'hook', '{}') IS NOT NULL AS provider;
SELECT crm.add_provider('email', 'mail', '{"url": "smtp://mail.example.com", "from": "crm@example.com"}') IS NOT NULL AS provider;
SELECT crm.add_provider('sms', 'sms', '{"url": "https://sms.example.com/send"}') IS NOT NULL AS provider;
SELECT crm.add_provider('robocall', 'call', '{"url": "https://call.example.com/call"}') IS NOT NULL AS provider;

-- A pipeline per family, so that each family's robots sit on stages of their own.
CREATE FUNCTION pg_temp.family_stage(p_code text) RETURNS bigint LANGUAGE sql AS $$
	SELECT crm.add_stage(crm.default_pipeline('deal'), p_code, p_code, 'process', 100 + (SELECT count(*)::int FROM crm.stage))
$$;

-- Explains the robots of p_stage for the deal, moves it there, and returns
-- the robots whose logged run differs from what explain said.  A decision
-- maps to the log status of the run: yes -> done, condition_false ->
-- skipped, delayed -> scheduled (a robot chained to a delayed one has no
-- row of its own), waits / not_applicable -> no row, loop_stopped and
-- failed -> the same.
CREATE TEMP TABLE explained (rule_id bigint, decision text, detail jsonb);
CREATE FUNCTION pg_temp.robot_mismatches(p_deal bigint, p_stage bigint)
RETURNS TABLE (robot bigint, explained text, logged text) LANGUAGE plpgsql AS $$
DECLARE
	last_log bigint := coalesce((SELECT max(id) FROM crm.robot_log), 0);
BEGIN
	DELETE FROM explained;
	INSERT INTO explained SELECT x.rule_id, x.decision, x.detail
	  FROM crm.explain('deal', p_deal, p_stage) x WHERE x.kind = 'robot';
	UPDATE crm.deal SET stage_id = p_stage WHERE id = p_deal;
	RETURN QUERY
	SELECT e.rule_id, e.decision, l.status
	  FROM explained e
	  LEFT JOIN LATERAL (SELECT r.status FROM crm.robot_log r
						  WHERE r.id > last_log AND r.kind = 'robot' AND r.robot_id = e.rule_id
							AND r.entity_id = p_deal ORDER BY r.id LIMIT 1) l ON true
	 WHERE CASE
			WHEN e.decision = 'yes' THEN 'done'
			WHEN e.decision = 'condition_false' THEN 'skipped'
			WHEN e.decision = 'delayed' AND e.detail->>'reason' LIKE 'chained to%' THEN NULL
			WHEN e.decision = 'delayed' THEN 'scheduled'
			WHEN e.decision IN ('waits', 'not_applicable') THEN NULL
			ELSE e.decision
		   END IS DISTINCT FROM l.status;
END
$$;

CREATE FUNCTION pg_temp.decisions(p_deal bigint, p_stage bigint) RETURNS text LANGUAGE sql AS $$
	SELECT string_agg(decision, ' ' ORDER BY ord)
	  FROM crm.explain('deal', p_deal, p_stage) WITH ORDINALITY AS x(kind, rule_id, rule, decision, condition, substituted, detail, ord)
	 WHERE kind = 'robot'
$$;

INSERT INTO crm.deal (id, title, responsible_id, contact_id, amount) VALUES
	(11, 'Comm', 2, 1, 1200), (12, 'Out', 2, 1, 1200), (13, 'Items', 2, 1, 1200),
	(14, 'Tasks', 2, 1, 1200), (15, 'Chat', 2, 1, 1200), (16, 'Sched', 2, 1, 1200),
	(17, 'Stop', 2, 1, 1200), (18, 'Loop', 2, 1, 1200), (19, 'Broken', 2, 1, 1200), (20, 'Long', 2, 1, 1200);

-- communication
SELECT pg_temp.family_stage('f_comm') AS s_comm \gset
SELECT crm.add_robot(:s_comm, 'notify', '{"text": "{{title}}", "recipients": "supervisor"}', condition => '"{{amount}} >= 1000"') > 0;
SELECT crm.add_robot(:s_comm, 'add_comment', '{"text": "big {{title}}"}', condition => '"{{amount}} >= 5000"') > 0;
SELECT crm.add_robot(:s_comm, 'write_log', '{"text": "log"}', condition => '{"any": [{"field": "title", "op": "contains", "value": "omm"}, {"field": "amount", "op": "<", "value": 0}]}') > 0;
SELECT crm.add_robot(:s_comm, 'feed_post', '{"title": "t", "text": "x", "recipients": [2, 3]}', condition => '"{{contact.name}} = \"Bob\""') > 0;
SELECT crm.add_robot(:s_comm, 'add_to_exceptions', '{}') > 0;
SELECT is(pg_temp.decisions(11, :s_comm), 'yes condition_false yes condition_false yes', 'communication: decisions');
SELECT is_empty($$SELECT * FROM pg_temp.robot_mismatches(11, $$ || :s_comm || $$)$$, 'communication: explain = the run');

-- outbound
SELECT pg_temp.family_stage('f_out') AS s_out \gset
SELECT crm.add_robot(:s_out, 'webhook', '{"url": "https://erp.example.com/deals/{{id}}", "provider": "hook", "body": {"t": "{{title}}"}}') > 0;
SELECT crm.add_robot(:s_out, 'send_email', '{"to": "responsible", "subject": "s {{title}}", "body": "b"}', condition => '"{{amount}} < 10"') > 0;
SELECT crm.add_robot(:s_out, 'send_sms', '{"text": "hi {{contact.name}}", "recipients": "{{contact.phone}}"}') > 0;
SELECT crm.add_robot(:s_out, 'robocall', '{"number": "{{contact.phone}}", "text": "hello"}', condition => '"not ({{amount}} > 5000)"') > 0;
SELECT is(pg_temp.decisions(12, :s_out), 'yes condition_false yes yes', 'outbound: decisions');
SELECT is_empty($$SELECT * FROM pg_temp.robot_mismatches(12, $$ || :s_out || $$)$$, 'outbound: explain = the run');

-- items
SELECT pg_temp.family_stage('f_items') AS s_items \gset
SELECT crm.add_robot(:s_items, 'generate_code', '{"format": "digits", "length": 6}', name => 'code') > 0;
SELECT crm.add_robot(:s_items, 'update_item', '{"fields": {"UF_NOTE": "code {=Robot:code.code}"}}') > 0;
SELECT crm.add_robot(:s_items, 'change_responsible', '{"users": [3]}', condition => '"{{responsible_id}} = 2"') > 0;
SELECT crm.add_robot(:s_items, 'copy_deal', '{}', condition => '"{{amount}} > 99999"') > 0;
SELECT crm.add_robot(:s_items, 'update_contact', '{"fields": {"post": "{{title}}"}}') > 0;
SELECT is(pg_temp.decisions(13, :s_items), 'yes yes yes condition_false yes', 'items: decisions');
SELECT is_empty($$SELECT * FROM pg_temp.robot_mismatches(13, $$ || :s_items || $$)$$, 'items: explain = the run');

-- tasks
SELECT pg_temp.family_stage('f_tasks') AS s_tasks \gset
SELECT crm.add_robot(:s_tasks, 'create_task', '{"title": "Call {{contact.name}}", "responsible": "responsible", "deadline": "tomorrow"}') > 0;
SELECT crm.add_robot(:s_tasks, 'create_activity', '{"subject": "s"}', condition => '"{{amount}} = 1200"') > 0;
SELECT crm.add_robot(:s_tasks, 'schedule_call', '{"when": "in_2_days", "subject": "call"}', condition => '"{{amount}} != 1200"') > 0;
SELECT crm.add_robot(:s_tasks, 'schedule_meeting', '{"when": "tomorrow", "subject": "meet"}') > 0;
SELECT is(pg_temp.decisions(14, :s_tasks), 'yes yes condition_false yes', 'tasks: decisions');
SELECT is_empty($$SELECT * FROM pg_temp.robot_mismatches(14, $$ || :s_tasks || $$)$$, 'tasks: explain = the run');

-- chat
SELECT pg_temp.family_stage('f_chat') AS s_chat \gset
SELECT crm.add_robot(:s_chat, 'create_group_chat', '{"name": "{{title}}", "members": [2, 3]}', name => 'room') > 0;
SELECT crm.add_robot(:s_chat, 'chat_message', '{"chat": "{=Robot:room.chat_id}", "text": "hi"}') > 0;
SELECT crm.add_robot(:s_chat, 'direct_message', '{"recipients": [3], "text": "{{title}}"}', condition => '"{{title}} = \"Chat\""') > 0;
SELECT crm.add_robot(:s_chat, 'add_chat_members', '{"chat": "{=Robot:room.chat_id}", "members": [1]}', condition => '"{{title}} = \"x\""') > 0;
SELECT is(pg_temp.decisions(15, :s_chat), 'yes yes yes condition_false', 'chat: decisions');
SELECT is_empty($$SELECT * FROM pg_temp.robot_mismatches(15, $$ || :s_chat || $$)$$, 'chat: explain = the run');

-- scheduling: a delayed robot and the robot chained to it, a control, a wait and the robots after it
SELECT pg_temp.family_stage('f_sched') AS s_sched \gset
SELECT crm.add_robot(:s_sched, 'add_comment', '{"text": "later"}', delay => '{"after": "2 days"}') > 0;
SELECT crm.add_robot(:s_sched, 'write_log', '{"text": "chained"}', after_previous => true) > 0;
SELECT crm.add_robot(:s_sched, 'control', '{"after": "3 days", "text": "still here"}') > 0;
SELECT crm.add_robot(:s_sched, 'wait', '{"for": "1 day"}', condition => '"{{amount}} > 100"') > 0;
SELECT crm.add_robot(:s_sched, 'write_log', '{"text": "after the wait"}') > 0;
SELECT is(pg_temp.decisions(16, :s_sched), 'delayed delayed delayed delayed waits', 'scheduling: decisions');
SELECT is((SELECT detail->>'due_at' FROM crm.explain('deal', 16, :s_sched) WHERE rule = 'add_comment')::timestamptz,
	now() + interval '2 days', 'a delayed robot: its due time');
SELECT is_empty($$SELECT * FROM pg_temp.robot_mismatches(16, $$ || :s_sched || $$)$$, 'scheduling: explain = the run');
SELECT is((SELECT due_at FROM crm.job WHERE entity_id = 16 AND kind = 'robot'),
	now() + interval '2 days', 'the job is due when explain said');

-- a robot that ends the sequence: the later ones do not run
SELECT pg_temp.family_stage('f_stop') AS s_stop \gset
SELECT crm.add_robot(:s_stop, 'change_stage', '{"stage": "won"}') > 0;
SELECT crm.add_robot(:s_stop, 'write_log', '{"text": "never"}') > 0;
SELECT is(pg_temp.decisions(17, :s_stop), 'yes not_applicable', 'change_stage: the later robots are not applicable');
SELECT is_empty($$SELECT * FROM pg_temp.robot_mismatches(17, $$ || :s_stop || $$)$$, 'change_stage: explain = the run');

-- crm.max_steps: the step past it is loop_stopped, in explain and in the run
SELECT pg_temp.family_stage('f_loop') AS s_loop \gset
SELECT crm.add_robot(:s_loop, 'write_log', '{"text": "1"}') > 0;
SELECT crm.add_robot(:s_loop, 'write_log', '{"text": "2"}') > 0;
SELECT crm.add_robot(:s_loop, 'write_log', '{"text": "3"}') > 0;
SET crm.max_steps = 2;
SELECT is(pg_temp.decisions(18, :s_loop), 'yes yes loop_stopped', 'max_steps: loop_stopped');
SELECT is_empty($$SELECT * FROM pg_temp.robot_mismatches(18, $$ || :s_loop || $$)$$, 'loop_stopped: explain = the run');
RESET crm.max_steps;

-- a robot whose stored row is broken, and one whose condition raises an error
SELECT pg_temp.family_stage('f_broken') AS s_broken \gset
SELECT crm.add_robot(:s_broken, 'write_log', '{"text": "x"}') AS broken \gset
SELECT crm.add_robot(:s_broken, 'write_log', '{"text": "y"}', condition => '"1 / ({{amount}} - 1200) > 0"') > 0;
SELECT crm.add_robot(:s_broken, 'write_log', '{"text": "z"}', condition => '"{{amount}} = 0 and 1 / 0 > 0"') > 0;
UPDATE crm.robot SET action = 'teleport' WHERE id = :broken;
SELECT is(pg_temp.decisions(19, :s_broken), 'failed failed condition_false', 'broken rows and failing conditions fail');
SELECT alike((SELECT detail->>'error' FROM crm.explain('deal', 19, :s_broken) WHERE rule_id = :broken),
	'%unknown action "teleport"%', 'the broken row''s error');
SELECT is((SELECT substituted FROM crm.explain('deal', 19, :s_broken) WHERE detail->>'condition_value' = 'false'),
	'1200 = 0 and 1 / 0 > 0', 'what "and" does not reach is shown as written, never evaluated');
SELECT is_empty($$SELECT * FROM pg_temp.robot_mismatches(19, $$ || :s_broken || $$)$$, 'failures: explain = the run');

-- Conditions taken apart.
SELECT results_eq(format($$SELECT condition, substituted, detail->'parts' FROM crm.explain('deal', 11, %s) WHERE rule = 'notify'$$, :s_comm),
	$$VALUES ('{{amount}} >= 1000'::text, '1200 >= 1000'::text,
			  '[{"expr": "{{amount}}", "value": 1200}, {"expr": "{{amount}} >= 1000", "value": true}]'::jsonb)$$,
	'a condition: as written, substituted, each part');
SELECT is((SELECT condition || ' -> ' || substituted FROM crm.explain('deal', 11, :s_comm) WHERE rule = 'write_log'),
	'{{title}} contains "omm" or {{amount}} < 0 -> "Comm" contains "omm" or {{amount}} < 0',
	'a JSON condition reads as a formula; "or" stops at its first true rule');
SELECT ok((SELECT detail ? 'condition_json' FROM crm.explain('deal', 11, :s_comm) WHERE rule = 'write_log'),
	'the JSON as stored is in the detail');
SELECT is((SELECT detail->'params' FROM crm.explain('deal', 14, :s_tasks) WHERE rule = 'create_task') - 'deadline',
	'{"title": "Call Claire", "responsible": [2]}'::jsonb, 'parameters as rendered');

SELECT is((SELECT substituted FROM crm.explain('deal', 12, :s_out) WHERE rule = 'robocall'),
	'not (1200 > 5000)', 'parentheses where the grammar needs them');
-- A long condition: described up to a bound, evaluated to the end.
SELECT pg_temp.family_stage('f_long') AS s_long \gset
SELECT crm.add_robot(:s_long, 'write_log', '{"text": "x"}',
	condition => to_jsonb((SELECT string_agg('{{amount}} = ' || g, ' or ') FROM generate_series(1, 5000) g))) > 0;
SELECT results_eq(format($$SELECT decision, length(substituted) < 2300, right(substituted, 1), jsonb_array_length(detail->'parts'),
						  length(condition) <= 2001 FROM crm.explain('deal', 20, %s)$$, :s_long),
	$$VALUES ('yes'::text, true, '…'::text, 50, true)$$, 'a condition of 10,000 terms: bounded text and parts, the right decision');
SELECT is_empty(format($$SELECT * FROM pg_temp.robot_mismatches(20, %s)$$, :s_long), 'and the run agrees');

-- Triggers: each event, explained then happening.
CREATE FUNCTION pg_temp.trigger_agrees(p_deal bigint, p_trigger bigint, p_event text, p_do text)
RETURNS text LANGUAGE plpgsql AS $$
DECLARE
	last_log bigint := coalesce((SELECT max(id) FROM crm.robot_log), 0);
	said text;
	done text;
BEGIN
	SELECT decision INTO said FROM crm.explain('deal', p_deal) WHERE kind = 'trigger' AND rule_id = p_trigger;
	EXECUTE p_do;
	SELECT status INTO done FROM crm.robot_log
	 WHERE id > last_log AND kind = 'trigger' AND action = p_event AND entity_id = p_deal ORDER BY id LIMIT 1;
	RETURN said || ' / ' || coalesce(done, 'none');
END
$$;
INSERT INTO crm.deal (id, title, responsible_id, contact_id, amount, stage_id)
SELECT 100 + g, 'T' || g, 2, 1, 1200, crm.stage('deal', 'preparation') FROM generate_series(1, 16) g;
INSERT INTO crm.invoice (id, title, stage_id, deal_id) VALUES (1, 'Inv', crm.stage('invoice', 'new'), 116);
SELECT crm.add_webform('contact', 'Contact') > 0;
SELECT crm.add_trigger(crm.stage('deal', 'executing'), 'field_changed', '{"fields": ["UF_NOTE"]}', condition => '"{{amount}} > 1000"') AS t_field \gset
SELECT crm.add_trigger(crm.stage('deal', 'executing'), 'responsible_changed', condition => '"{{amount}} > 5000"') AS t_resp \gset
SELECT crm.add_trigger(crm.stage('deal', 'executing'), 'incoming_call') AS t_call \gset
SELECT crm.add_trigger(crm.stage('deal', 'new'), 'missed_call') AS t_missed \gset
SELECT crm.add_trigger(crm.stage('deal', 'preparation'), 'incoming_email') AS t_email \gset
SELECT crm.add_trigger(crm.stage('deal', 'executing'), 'openline_message', condition => '"{{title}} = \"nobody\""') AS t_open \gset
SELECT crm.add_trigger(crm.stage('deal', 'executing'), 'webform', '{"form": "contact"}') AS t_form \gset
SELECT crm.add_trigger(crm.stage('deal', 'executing'), 'link_click') AS t_click \gset
SELECT crm.add_trigger(crm.stage('deal', 'executing'), 'email_read') AS t_read \gset
SELECT crm.add_trigger(crm.stage('deal', 'executing'), 'qr_scan') AS t_qr \gset
SELECT crm.add_trigger(crm.stage('deal', 'executing'), 'booking') AS t_booking \gset
SELECT crm.add_trigger(crm.stage('deal', 'won'), 'payment', condition => '"{{amount}} >= 1200"') AS t_pay \gset
SELECT crm.add_trigger(crm.stage('deal', 'executing'), 'webhook', '{"code": "signed"}') AS t_hook \gset
SELECT crm.add_trigger(crm.stage('deal', 'won'), 'invoice_paid') AS t_paid \gset
SELECT is(pg_temp.trigger_agrees(101, :t_field, 'field_changed', $$UPDATE crm.deal SET fields = '{"UF_NOTE": "x"}' WHERE id = 101$$),
	'yes / fired', 'field_changed');
SELECT is(pg_temp.trigger_agrees(102, :t_resp, 'responsible_changed', $$UPDATE crm.deal SET responsible_id = 3 WHERE id = 102$$),
	'condition_false / condition_false', 'responsible_changed');
SELECT is(pg_temp.trigger_agrees(103, :t_call, 'incoming_call', $$INSERT INTO crm.activity (entity_type, entity_id, type, direction, status) VALUES ('deal', 103, 'call', 'incoming', 'completed')$$),
	'yes / fired', 'incoming_call');
SELECT is(pg_temp.trigger_agrees(104, :t_missed, 'missed_call', $$INSERT INTO crm.activity (entity_type, entity_id, type, direction, status) VALUES ('deal', 104, 'call', 'incoming', 'missed')$$),
	'backwards / backwards', 'missed_call');
SELECT is(pg_temp.trigger_agrees(105, :t_email, 'incoming_email', $$INSERT INTO crm.activity (entity_type, entity_id, type, direction) VALUES ('deal', 105, 'email', 'incoming')$$),
	'already_there / already_there', 'incoming_email');
SELECT is(pg_temp.trigger_agrees(106, :t_open, 'openline_message', $$INSERT INTO crm.activity (entity_type, entity_id, type, direction) VALUES ('deal', 106, 'openline', 'incoming')$$),
	'condition_false / condition_false', 'openline_message');
SELECT is(pg_temp.trigger_agrees(107, :t_form, 'webform', $$SELECT crm.submit_webform('contact', '{}', 'deal', 107)$$),
	'yes / fired', 'webform');
SELECT is(pg_temp.trigger_agrees(108, :t_click, 'link_click', $$SELECT crm.track_click(crm.tracking_link('deal', 108, 'https://x.example'))$$),
	'yes / fired', 'link_click');
SELECT is(pg_temp.trigger_agrees(109, :t_read, 'email_read', $$SELECT crm.track_click(crm.tracking_link('deal', 109, NULL, 'email_read'))$$),
	'yes / fired', 'email_read');
SELECT is(pg_temp.trigger_agrees(110, :t_qr, 'qr_scan', $$SELECT crm.track_click(crm.tracking_link('deal', 110, 'https://x.example', 'qr_scan'))$$),
	'yes / fired', 'qr_scan');
SELECT is(pg_temp.trigger_agrees(111, :t_booking, 'booking', $$INSERT INTO crm.resource_booking (service, user_id, start_at, duration, entity_type, entity_id) VALUES ('Visit', 2, now(), '1 hour', 'deal', 111)$$),
	'yes / fired', 'booking');
SELECT is(pg_temp.trigger_agrees(112, :t_pay, 'payment', $$INSERT INTO crm.payment (entity_type, entity_id, amount) VALUES ('deal', 112, 10)$$),
	'yes / fired', 'payment');
SELECT is(pg_temp.trigger_agrees(113, :t_hook, 'webhook', $$SELECT crm.fire_trigger('signed', 'deal', 113)$$),
	'yes / fired', 'webhook');
SELECT is(pg_temp.trigger_agrees(116, :t_paid, 'invoice_paid', $$UPDATE crm.invoice SET paid = true, paid_at = now() WHERE id = 1$$),
	'yes / fired', 'invoice_paid');
-- Two triggers of one event: the first in stage order decides, the other is not applicable.
SELECT crm.add_trigger(crm.stage('deal', 'final_invoice'), 'incoming_call') AS t_call2 \gset
SELECT is((SELECT decision || ' ' || (detail->>'decided_by') FROM crm.explain('deal', 114) WHERE rule_id = :t_call2),
	'not_applicable ' || :t_call, 'a trigger another one decides before');
SELECT is(pg_temp.trigger_agrees(114, :t_call, 'incoming_call', $$INSERT INTO crm.activity (entity_type, entity_id, type, direction, status) VALUES ('deal', 114, 'call', 'incoming', 'completed')$$),
	'yes / fired', 'the first trigger fires');

-- Process templates that auto-start.
SELECT crm.add_process_template('deal', 'On change', '{"activities": [{"type": "add_comment", "text": "changed"}]}', auto_start => ARRAY['modify']) AS p_mod \gset
SELECT crm.add_process_template('deal', 'On add', '{"activities": [{"type": "add_comment", "text": "added"}]}', auto_start => ARRAY['add']) AS p_add \gset
SELECT results_eq($$SELECT rule, decision FROM crm.explain('deal', 115) WHERE kind = 'process' ORDER BY rule_id$$,
	$$VALUES ('On change'::text, 'yes'::text), ('On add', 'not_applicable')$$, 'auto-start: on change yes, on add not for an existing item');
UPDATE crm.deal SET fields = '{"UF_NOTE": "x"}' WHERE id = 115;
SELECT results_eq($$SELECT template_id FROM crm.process_instance WHERE document_id = 115$$,
	ARRAY[:p_mod::bigint], 'the next change starts the one explain said');
SET crm.import_mode = on;
SELECT is((SELECT decision FROM crm.explain('deal', 115) WHERE rule_id = :p_mod AND kind = 'process'),
	'not_applicable', 'import mode: nothing starts');
RESET crm.import_mode;

-- Pure reading: nothing written (no log row, job, outbox row, instance).
CREATE TEMP TABLE before_counts AS
SELECT (SELECT count(*) FROM crm.robot_log) AS logs, (SELECT count(*) FROM crm.job) AS jobs,
	   (SELECT count(*) FROM crm.outbox) AS msgs, (SELECT count(*) FROM crm.process_instance) AS instances,
	   (SELECT count(*) FROM crm.timeline_comment) AS comments;
SELECT count(*) >= 0 FROM crm.explain('deal', 11, :s_sched) a, crm.explain('deal', 12, :s_out) b;
SELECT results_eq($$SELECT (SELECT count(*) FROM crm.robot_log), (SELECT count(*) FROM crm.job), (SELECT count(*) FROM crm.outbox),
	(SELECT count(*) FROM crm.process_instance), (SELECT count(*) FROM crm.timeline_comment)$$,
	$$SELECT logs, jobs, msgs, instances, comments FROM before_counts$$, 'explain writes nothing');

-- NULLs and hostile input.
SELECT throws_ok($$SELECT * FROM crm.explain(NULL, 1)$$, '22004', 'entity type must not be null', 'NULL entity type');
SELECT throws_ok($$SELECT * FROM crm.explain('deal', NULL)$$, '22004', 'item id must not be null', 'NULL id');
SELECT lives_ok($$SELECT * FROM crm.explain('deal', 11, NULL)$$, 'NULL stage: the item''s own');
SELECT throws_ok($$SELECT * FROM crm.explain('deal''; DROP TABLE crm.deal; --', 1)$$, '42704', NULL, 'an entity type that is none');
SELECT throws_ok($$SELECT * FROM crm.explain('deal', -1)$$, 'P0002', 'deal -1 does not exist', 'no such item');
SELECT throws_ok($$SELECT * FROM crm.explain('deal', 11, 424242)$$, '42704', 'stage 424242 does not exist', 'no such stage');
SELECT throws_ok($$SELECT * FROM crm.explain('deal', 11, crm.stage('lead', 'new'))$$, '22023', NULL, 'a stage of another entity type');
SELECT is((SELECT count(*) FROM crm.explain('contact', 1)), 0::bigint, 'a contact has no stage: nothing to explain');

-- Rights: a crm_user may explain; a role that cannot read the item may not.
CREATE ROLE explain_reader LOGIN IN ROLE crm_user;
CREATE ROLE explain_stranger LOGIN;
GRANT USAGE ON SCHEMA crm TO explain_stranger;
SET ROLE explain_reader;
SELECT ok((SELECT count(*) FROM crm.explain('deal', 11, crm.stage('deal', 'won'))) >= 0, 'crm_user explains');
SET search_path = public, pg_catalog;
RESET ROLE;
GRANT EXECUTE ON FUNCTION crm.explain(text, bigint, bigint) TO explain_stranger;
SET ROLE explain_stranger;
SELECT throws_ok($$SELECT * FROM crm.explain('deal', 11)$$, '42501', NULL, 'explain reads the item with the caller''s rights');
RESET ROLE;

SELECT * FROM finish();
ROLLBACK;
