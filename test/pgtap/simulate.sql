-- crm.simulate: the rows a statement would write (automation included)
-- are the rows the real statement writes; nothing is left behind (every
-- crm table counted); only single INSERT / UPDATE / DELETE statements on
-- crm tables; a statement failing halfway leaves nothing; the caller's
-- rights; the row limit.
BEGIN;
CREATE EXTENSION crm_automation;
SELECT plan(34);

INSERT INTO crm.department (id, name) VALUES (1, 'Sales');
INSERT INTO crm.user (id, name, email, department_id) VALUES
	(1, 'Mia', 'mia@example.com', 1), (2, 'Sam', 'sam@example.com', 1);
UPDATE crm.department SET head_id = 1;
INSERT INTO crm.contact (id, name, phone, email) VALUES (1, 'Claire', '+33612345678', 'claire@example.org');
SELECT crm.add_provider('webhook', 'hook', '{}') IS NOT NULL AS provider;
INSERT INTO crm.deal (id, title, responsible_id, contact_id, amount) VALUES
	(1, 'Chairs', 2, 1, 7200), (2, 'Lamps', 2, 1, 300), (3, 'Desks', 2, 1, 900), (4, 'Sofas', 2, 1, 8000);

-- Robots of every kind of effect on "won", a trigger, a process that starts on change.
SELECT crm.add_robot(crm.stage('deal', 'won'), 'webhook',
	'{"url": "https://erp.example.com/deals/{{id}}", "provider": "hook", "body": {"deal": "{{title}}"}}') > 0;
SELECT crm.add_robot(crm.stage('deal', 'won'), 'create_task',
	'{"title": "Invoice {{title}}", "responsible": "responsible"}', name => 'invoice') > 0;
SELECT crm.add_robot(crm.stage('deal', 'won'), 'notify',
	'{"text": "Won {{title}}: task {=Robot:invoice.task_id}", "recipients": "supervisor"}',
	condition => '"{{amount}} >= 5000"') > 0;
SELECT crm.add_robot(crm.stage('deal', 'won'), 'add_comment', '{"text": "Ask {{contact.name}} for a review"}',
	delay => '{"after": "7 days"}') > 0;
SELECT crm.add_robot(crm.stage('deal', 'won'), 'change_responsible', '{"users": [1]}') > 0;
SELECT crm.add_trigger(crm.stage('deal', 'lost'), 'field_changed', '{"fields": ["responsible_id"]}',
	condition => '"{{amount}} < 0"') > 0;
SELECT crm.add_process_template('deal', 'Won check', '{"activities": [
	{"type": "if", "condition": "{{stage.code}} = \"won\"",
	 "then": [{"type": "add_comment", "text": "Process saw {{title}} won"}]}]}', auto_start => ARRAY['modify']) > 0;

-- Every row of every crm table, counted.
CREATE FUNCTION pg_temp.crm_counts() RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE
	r record;
	res jsonb := '{}';
	n bigint;
BEGIN
	FOR r IN SELECT c.relname FROM pg_class c
			  WHERE c.relnamespace = 'crm'::regnamespace AND c.relkind = 'r' ORDER BY 1 LOOP
		EXECUTE format('SELECT count(*) FROM crm.%I', r.relname) INTO n;
		res := res || jsonb_build_object(r.relname, n);
	END LOOP;
	RETURN res;
END
$$;

-- What identifies a written row, ids and their sequences left out (a
-- simulation draws ids that the real run then does not get).
CREATE FUNCTION pg_temp.effect_key(tbl text, op text, r jsonb) RETURNS text LANGUAGE sql AS $$
	SELECT tbl || ' ' || op || ' ' || CASE tbl
		WHEN 'robot_log' THEN concat_ws(' ', r->>'kind', r->>'robot_id', r->>'trigger_id', r->>'action', r->>'status', r->>'error')
		WHEN 'outbox' THEN concat_ws(' ', r->>'channel', r->>'robot_id', r->'payload'->>'url',
									 regexp_replace(r->'payload'->>'body', '[0-9]+', 'N', 'g'))
		WHEN 'job' THEN concat_ws(' ', r->>'kind', r->>'robot_id', r->>'due_at', r->>'status')
		WHEN 'task' THEN concat_ws(' ', r->>'title', r->>'responsible_id', r->>'robot_id')
		WHEN 'notification' THEN concat_ws(' ', r->>'user_id', regexp_replace(r->>'text', '[0-9]+$', 'N'))
		WHEN 'timeline_comment' THEN concat_ws(' ', r->>'text', r->>'robot_id')
		WHEN 'process_instance' THEN concat_ws(' ', r->>'template_id', r->>'status')
		WHEN 'process_log' THEN concat_ws(' ', r->>'path', r->>'type', r->>'status')
		WHEN 'deal' THEN concat_ws(' ', r->>'id', r->>'title', r->>'stage_id', r->>'responsible_id')
		WHEN 'robot_turn' THEN r->>'robot_id'
		ELSE r::text
	END
$$;

-- The rows the real statement wrote: those after the ids of before, and
-- the deals it changed.
CREATE FUNCTION pg_temp.real_effects(since jsonb, deals bigint[]) RETURNS SETOF text LANGUAGE plpgsql AS $$
DECLARE
	t text;
BEGIN
	FOREACH t IN ARRAY ARRAY['robot_log', 'outbox', 'job', 'task', 'notification', 'timeline_comment',
							 'process_instance', 'process_log', 'history', 'activity'] LOOP
		RETURN QUERY EXECUTE format('SELECT pg_temp.effect_key(%L, %L, to_jsonb(x)) FROM crm.%I x WHERE x.id > %s',
									t, 'insert', t, coalesce(since->>t, '0'));
	END LOOP;
	RETURN QUERY SELECT pg_temp.effect_key('deal', 'update', to_jsonb(d)) FROM crm.deal d WHERE d.id = ANY (deals);
END
$$;
CREATE FUNCTION pg_temp.max_ids() RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE
	t text;
	res jsonb := '{}';
	n bigint;
BEGIN
	FOREACH t IN ARRAY ARRAY['robot_log', 'outbox', 'job', 'task', 'notification', 'timeline_comment',
							 'process_instance', 'process_log', 'history', 'activity'] LOOP
		EXECUTE format('SELECT coalesce(max(id), 0) FROM crm.%I', t) INTO n;
		res := res || jsonb_build_object(t, n);
	END LOOP;
	RETURN res;
END
$$;

-- 1. Simulate moving deal 1 to "won", then do it: the same rows.
CREATE TEMP TABLE counts_before AS SELECT pg_temp.crm_counts() AS c;
CREATE TEMP TABLE sim AS
SELECT * FROM crm.simulate($$UPDATE crm.deal SET stage_id = crm.stage('deal', 'won') WHERE id = 1$$);
SELECT is((SELECT summary FROM sim WHERE op = 'statement'), '1 row(s), ' || (SELECT count(*) FROM sim WHERE seq > 0) || ' row(s) written in all',
	'the statement row counts the effects');
SELECT is(pg_temp.crm_counts(), (SELECT c FROM counts_before), 'nothing is left: every crm table has the rows it had');
SELECT results_eq($$SELECT summary FROM sim WHERE tbl = 'outbox' ORDER BY seq$$,
	$$VALUES ('webhook https://erp.example.com/deals/1'), ('email ["mia@example.com"]')$$,
	'the messages it would queue: the webhook, and the notification of an offline user by e-mail');
SELECT is((SELECT actor || ': ' || summary FROM sim WHERE tbl = 'outbox' AND detail->>'channel' = 'webhook'),
	'robot ' || (SELECT id FROM crm.robot WHERE action = 'webhook') || ': webhook https://erp.example.com/deals/1',
	'the outbox message, rendered, with the robot that wrote it');
SELECT is((SELECT (detail->>'due_at')::timestamptz FROM sim WHERE tbl = 'job'), now() + interval '7 days', 'when the job would be due');
SELECT ok((SELECT bool_and(a.seq < b.seq) FROM sim a, sim b WHERE a.tbl = 'task' AND b.tbl = 'notification'),
	'in the order written: the task before the notification that reads its id');
CREATE TEMP TABLE ids_before AS SELECT pg_temp.max_ids() AS m;
UPDATE crm.deal SET stage_id = crm.stage('deal', 'won') WHERE id = 1;
SELECT bag_eq($$SELECT pg_temp.effect_key(tbl, op, detail) FROM sim WHERE seq > 0 AND tbl <> 'robot_turn'$$,
	$$SELECT pg_temp.real_effects((SELECT m FROM ids_before), ARRAY[1::bigint])$$,
	'the simulated rows are the rows the real statement wrote');

-- 2. A bulk move and an INSERT, compared the same way.
TRUNCATE counts_before;
INSERT INTO counts_before SELECT pg_temp.crm_counts();
CREATE TEMP TABLE sim2 AS
SELECT * FROM crm.simulate($$UPDATE crm.deal SET stage_id = crm.stage('deal', 'won') WHERE id IN (2, 3)$$);
SELECT is(pg_temp.crm_counts(), (SELECT c FROM counts_before), 'two deals: nothing left either');
TRUNCATE ids_before;
INSERT INTO ids_before SELECT pg_temp.max_ids();
UPDATE crm.deal SET stage_id = crm.stage('deal', 'won') WHERE id IN (2, 3);
SELECT bag_eq($$SELECT pg_temp.effect_key(tbl, op, detail) FROM sim2 WHERE seq > 0 AND tbl <> 'robot_turn'$$,
	$$SELECT pg_temp.real_effects((SELECT m FROM ids_before), ARRAY[2, 3]::bigint[])$$,
	'two deals: the same rows as the real statement');
SELECT ok((SELECT count(*) FROM sim2 WHERE tbl = 'robot_log' AND detail->>'name' IS NULL AND detail->>'action' = 'notify'
		   AND detail->>'status' = 'skipped') = 2, 'small deals: the notification is skipped, in the log');

SELECT set_eq($$SELECT tbl || ' ' || op FROM crm.simulate('INSERT INTO crm.deal (id, title, responsible_id, amount) VALUES (10, ''New'', 2, 10)')
				 WHERE seq > 0$$,
	$$VALUES ('deal insert')$$,
	'an INSERT: the item, and no process (the template starts on change, not on add)');

-- 3. Nothing left: counts of every table, the outbox and the jobs.
TRUNCATE counts_before;
INSERT INTO counts_before SELECT pg_temp.crm_counts();
SELECT ok(count(*) > 5, 'a simulation with many effects') FROM crm.simulate($$UPDATE crm.deal SET stage_id = crm.stage('deal', 'preparation') WHERE id IN (1, 2, 3)$$);
SELECT is(pg_temp.crm_counts(), (SELECT c FROM counts_before), 'after it every crm table has the rows it had');

-- 4. Refused before anything runs.
SELECT throws_ok($$SELECT * FROM crm.simulate(NULL)$$, '22004', 'statement must not be null', 'NULL statement');
SELECT throws_ok($$SELECT * FROM crm.simulate('SELECT 1')$$, '0A000',
	'crm.simulate runs one INSERT, UPDATE or DELETE on a table of schema crm', 'a SELECT is refused');
SELECT throws_ok($$SELECT * FROM crm.simulate('TRUNCATE crm.deal')$$, '0A000', NULL, 'TRUNCATE is refused');
SELECT throws_ok($$SELECT * FROM crm.simulate('DROP TABLE crm.deal')$$, '0A000', NULL, 'DDL is refused');
SELECT throws_ok($$SELECT * FROM crm.simulate('UPDATE crm.deal SET title = ''x''; DELETE FROM crm.deal')$$, '0A000', NULL,
	'two statements are refused');
SELECT throws_ok($$SELECT * FROM crm.simulate('')$$, '0A000', NULL, 'no statement is refused');
CREATE TABLE public.other (id bigint);
SELECT throws_ok($$SELECT * FROM crm.simulate('INSERT INTO public.other VALUES (1)')$$, '0A000', NULL,
	'a table outside schema crm is refused');
SELECT throws_ok($$SELECT * FROM crm.simulate('WITH d AS (DELETE FROM public.other RETURNING id) UPDATE crm.deal SET title = ''x'' WHERE id IN (SELECT id FROM d)')$$,
	'0A000', NULL, 'a data-modifying WITH is refused');
SELECT throws_ok($$SELECT * FROM crm.simulate('UPDATE crm.deal SET title = ''x''', 0)$$, '22023', NULL, 'row_limit 0');
SELECT throws_ok($$SELECT * FROM crm.simulate('UPDATE crm.deal SET title = ')$$, '42601', NULL, 'a syntax error');

-- 5. A statement that fails halfway: the error, and nothing left.
TRUNCATE counts_before;
INSERT INTO counts_before SELECT pg_temp.crm_counts();
SELECT results_eq($$SELECT op, detail->>'sqlstate' FROM crm.simulate('UPDATE crm.deal SET stage_id = crm.stage(''deal'', ''won''), amount = 100 / (id - 3) WHERE id IN (1, 2, 3)')$$,
	$$VALUES ('error'::text, '22012'::text)$$, 'a failing statement: one row, its error');
SELECT is(pg_temp.crm_counts(), (SELECT c FROM counts_before), 'and nothing of what it did before failing');

-- 6. The row limit.
SELECT results_eq($$SELECT count(*), max(seq), string_agg(op, ' ') FILTER (WHERE op IN ('statement', 'truncated')),
						  max((detail->>'rows_not_shown')::int) > 0
					 FROM crm.simulate('UPDATE crm.deal SET stage_id = crm.stage(''deal'', ''won'') WHERE id = 4', 2)$$,
	$$VALUES (4::bigint, 3::bigint, 'statement truncated', true)$$, 'row_limit: the rest counted, not shown');

-- 7. As the caller: its rights, its identity; tables it may not read are not shown.
CREATE ROLE sim_user LOGIN IN ROLE crm_user;
CREATE ROLE sim_reader LOGIN;
GRANT USAGE ON SCHEMA crm TO sim_reader;
GRANT SELECT ON crm.deal, crm.stage TO sim_reader;
GRANT EXECUTE ON FUNCTION crm.simulate(text, integer), crm._simulate(text, integer), crm.stage(text, text, bigint) TO sim_reader;
SET ROLE sim_user;
SELECT is((SELECT detail->>'title' FROM crm.simulate('UPDATE crm.deal SET title = current_user WHERE id = 2') WHERE tbl = 'deal' AND op = 'update'),
	'sim_user', 'the statement runs as the caller');
SELECT is((SELECT string_agg(DISTINCT summary, ', ') FROM crm.simulate('UPDATE crm.deal SET stage_id = crm.stage(''deal'', ''won'') WHERE id = 4') WHERE tbl = 'outbox'),
	'(not readable by you)', 'a crm_user does not read the outbox: the row is counted, not shown');
RESET ROLE;
SET ROLE sim_reader;
SELECT is((SELECT detail->>'sqlstate' FROM crm.simulate('UPDATE crm.deal SET title = ''x'' WHERE id = 2')),
	'42501', 'a role that may not UPDATE the table gets the permission error');
RESET ROLE;

SELECT is(pg_temp.crm_counts(), (SELECT c FROM counts_before), 'still nothing left');

-- 8. The causal chain: an incoming call fires a trigger, which moves the
--    deal, which cancels the delayed robot of the stage it leaves and runs
--    the robots of the stage it enters.
INSERT INTO crm.deal (id, title, responsible_id, amount, stage_id) VALUES (90, 'Chain', 2, 10, crm.stage('deal', 'preparation'));
SELECT crm.add_robot(crm.stage('deal', 'preparation'), 'add_comment', '{"text": "later"}', delay => '{"after": "2 days"}') AS later_robot \gset
UPDATE crm.deal SET stage_id = crm.stage('deal', 'new') WHERE id = 90;
UPDATE crm.deal SET stage_id = crm.stage('deal', 'preparation') WHERE id = 90;
SELECT crm.add_trigger(crm.stage('deal', 'executing'), 'incoming_call', name => 'Call moves') AS call_trigger \gset
SELECT crm.add_robot(crm.stage('deal', 'executing'), 'add_comment', '{"text": "Working on {{title}}"}') AS work_robot \gset
CREATE TEMP TABLE chain AS
SELECT * FROM crm.simulate($$INSERT INTO crm.activity (entity_type, entity_id, type, direction, subject)
                             VALUES ('deal', 90, 'call', 'incoming', 'Chain call')$$);
SELECT is((SELECT c.cause FROM chain c WHERE c.tbl = 'robot_log' AND c.actor = 'trigger ' || :call_trigger),
	(SELECT c.seq FROM chain c WHERE c.tbl = 'activity' AND c.op = 'insert'),
	'the trigger''s decision is caused by the call');
SELECT is((SELECT c.cause FROM chain c WHERE c.tbl = 'deal' AND c.op = 'update'),
	(SELECT c.seq FROM chain c WHERE c.tbl = 'robot_log' AND c.actor = 'trigger ' || :call_trigger),
	'the deal''s move is caused by the trigger');
SELECT results_eq($$SELECT c.tbl, c.op, c.cause = (SELECT d.seq FROM chain d WHERE d.tbl = 'deal' AND d.op = 'update')
					  FROM chain c WHERE c.actor IN ('robot ' || $$ || :later_robot || $$, 'robot ' || $$ || :work_robot || $$)
					 ORDER BY c.seq$$,
	$$VALUES ('robot_log'::text, 'update'::text, true), ('job', 'update', true),
			 ('timeline_comment', 'insert', true), ('robot_log', 'insert', true)$$,
	'the robots'' rows (a cancelled delayed run, the entered stage''s comment and its log) are caused by the move');
SELECT ok((SELECT bool_and(c.cause IS NULL) FROM chain c WHERE c.op = 'statement' OR (c.tbl = 'activity' AND c.op = 'insert')),
	'the statement''s own row has no cause');

SELECT * FROM finish();
ROLLBACK;
