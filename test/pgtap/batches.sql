-- Robots of a statement's rows run in batches (stage_entry.c): every row is
-- served exactly once across batch boundaries, a robot that fails for one
-- item is logged as failed while the others do their work, nested moves and
-- rolled-back statements leave nothing behind, rotation counts every turn,
-- and a cancelled statement is cancelled.
BEGIN;
CREATE EXTENSION crm_automation;
SELECT plan(23);

INSERT INTO crm.department (id, name) VALUES (1, 'Sales');
INSERT INTO crm.user (id, name, department_id) VALUES (1, 'Mia', 1), (2, 'Sam', 1), (3, 'Ugo', 1);
UPDATE crm.department SET head_id = 1;

SELECT crm.add_field('deal', 'ratio', 'Ratio', 'number');

-- 2,500 deals cross two batch boundaries (1,000 rows each).  On
-- "preparation": a comment, a robot that divides by zero for one deal, and
-- a comment after it.
SELECT crm.add_robot(crm.stage('deal', 'preparation'), 'add_comment', '{"text": "first {{title}}"}', name => 'first');
SELECT crm.add_robot(crm.stage('deal', 'preparation'), 'update_item',
	'{"fields": {"fields.ratio": "=100/({{amount}} - 1234)"}}', name => 'ratio');
SELECT crm.add_robot(crm.stage('deal', 'preparation'), 'add_comment', '{"text": "last {{title}}"}', name => 'last');
INSERT INTO crm.deal (id, title, responsible_id, amount)
	SELECT g, 'd' || g, 1, g FROM generate_series(1, 2500) g;
UPDATE crm.deal SET stage_id = crm.stage('deal', 'preparation');

SELECT is((SELECT count(*) FROM crm.timeline_comment WHERE text LIKE 'first %'), 2500::bigint,
	'every deal got the first comment once');
SELECT is((SELECT count(*) FROM crm.timeline_comment WHERE text LIKE 'last %'), 2500::bigint,
	'every deal got the last comment once, the failing deal too');
SELECT is((SELECT count(DISTINCT entity_id) FROM crm.timeline_comment), 2500::bigint,
	'comments went to the right deals');
SELECT is((SELECT count(*) FROM crm.deal WHERE fields ? 'ratio'), 2499::bigint,
	'the update robot did its work for every other deal');
SELECT results_eq(
	$$SELECT name, status, error FROM crm.item_automation('deal', 1234)$$,
	$$VALUES ('first'::text, 'done'::text, NULL::text),
	         ('ratio', 'failed', 'division by zero in params.fields at position 5'), ('last', 'done', NULL)$$,
	'the failing deal: its robot is logged as failed, between the other two');
SELECT is((SELECT count(*) FROM crm.robot_log WHERE status = 'done'), 7499::bigint,
	'7,499 runs done, no run logged twice');

-- A robot that moves the item on: the next stage's robots run inside the
-- batch, and the history reads in the order things happened.
SELECT crm.add_robot(crm.stage('deal', 'executing'), 'add_comment', '{"text": "executing {{title}}"}', name => 'exec_note');
SELECT crm.add_robot(crm.stage('deal', 'executing'), 'change_stage', '{"stage": "final_invoice"}', name => 'onward');
SELECT crm.add_robot(crm.stage('deal', 'final_invoice'), 'write_log', '{"text": "invoiced {{title}}"}', name => 'invoiced');
UPDATE crm.deal SET stage_id = crm.stage('deal', 'executing') WHERE id <= 1500;
SELECT is((SELECT count(*) FROM crm.deal WHERE stage_id = crm.stage('deal', 'final_invoice')), 1500::bigint,
	'1,500 deals moved on by their robot');
SELECT is((SELECT count(*) FROM crm.history WHERE text LIKE 'invoiced %'), 1500::bigint,
	'the robots of the stage they moved on to ran for each');
SELECT results_eq(
	$$SELECT name, stage, status FROM crm.item_automation('deal', 7) WHERE stage IN ('executing', 'final_invoice')$$,
	$$VALUES ('exec_note'::text, 'executing'::text, 'done'::text), ('onward', 'executing', 'done'),
	         ('invoiced', 'final_invoice', 'done')$$,
	'an item''s history is in the order the robots ran');

-- Rolled back: nothing planned, nothing left over for the next statement.
SAVEPOINT before_move;
UPDATE crm.deal SET stage_id = crm.stage('deal', 'won') WHERE id > 2000;
SELECT crm.add_robot(crm.stage('deal', 'won'), 'add_comment', '{"text": "won"}');
ROLLBACK TO before_move;
DO $$
BEGIN
	UPDATE crm.deal SET stage_id = crm.stage('deal', 'executing') WHERE id = 2001;
	RAISE EXCEPTION 'the application changes its mind';
EXCEPTION WHEN raise_exception THEN
	NULL;
END
$$;
SELECT is((SELECT count(*) FROM crm.timeline_comment WHERE text LIKE 'executing d2001'), 0::bigint,
	'a move rolled back by an exception block ran nothing');
UPDATE crm.deal SET stage_id = crm.stage('deal', 'executing') WHERE id = 2002;
SELECT is((SELECT count(*) FROM crm.timeline_comment WHERE entity_id = 2002 AND text LIKE 'executing%'), 1::bigint,
	'the next statement runs its own robots, once');
SELECT is((SELECT count(*) FROM crm.robot_log WHERE entity_id = 2001 AND stage_id = crm.stage('deal', 'executing')), 0::bigint,
	'and logged nothing for the rolled-back one');

-- Leaving a stage in bulk cancels what each item had pending there.
SELECT crm.add_robot(crm.stage('deal', 'won'), 'add_comment', '{"text": "a week after"}', delay => '{"after": "7 days"}');
UPDATE crm.deal SET stage_id = crm.stage('deal', 'won') WHERE id BETWEEN 2101 AND 2400;
UPDATE crm.deal SET stage_id = crm.stage('deal', 'lost') WHERE id BETWEEN 2101 AND 2400;
SELECT is((SELECT count(*) FROM crm.job WHERE status = 'cancelled' AND entity_id BETWEEN 2101 AND 2400), 300::bigint,
	'300 items left the stage in one statement: 300 jobs cancelled');
SELECT is((SELECT count(*) FROM crm.robot_log WHERE status = 'cancelled' AND entity_id BETWEEN 2101 AND 2400), 300::bigint,
	'and their scheduled log rows say so');

-- Rotation counts every turn, also within one statement.
SELECT crm.add_robot(crm.stage('quote', 'sent'), 'change_responsible', '{"users": [1, 2, 3], "mode": "rotate"}');
INSERT INTO crm.quote (id, title, stage_id) SELECT g, 'q' || g, crm.stage('quote', 'sent') FROM generate_series(1, 6) g;
SELECT results_eq($$SELECT responsible_id FROM crm.quote ORDER BY id$$,
	$$VALUES (1::bigint), (2), (3), (1), (2), (3)$$, 'six quotes in one INSERT: each user in turn');

-- A cancelled statement is not swallowed by the robots' failure handling.
CREATE TEMP TABLE cancelled (sqlstate text);
SET LOCAL statement_timeout = '20ms';
DO $$
BEGIN
	UPDATE crm.deal SET stage_id = crm.stage('deal', 'preparation') WHERE id <= 2000;
EXCEPTION WHEN query_canceled THEN
	INSERT INTO cancelled VALUES (SQLSTATE);
END
$$;
RESET statement_timeout;
SELECT is((SELECT sqlstate FROM cancelled), '57014', 'a statement timeout during robots cancels the statement');

-- A statement moving a few deals appends their robots' log rows without an
-- INSERT (rowappend.c), as an INSERT would: a rolled-back savepoint takes
-- them back, a trigger an administrator puts on the log sees them.
UPDATE crm.deal SET stage_id = crm.stage('deal', 'new') WHERE id IN (10, 11, 12, 13, 14);
SELECT count(*) AS log_before FROM crm.robot_log WHERE entity_id IN (10, 11, 12) \gset
SAVEPOINT few;
UPDATE crm.deal SET stage_id = crm.stage('deal', 'preparation') WHERE id IN (10, 11, 12);
ROLLBACK TO SAVEPOINT few;
SELECT is((SELECT count(*) FROM crm.robot_log WHERE entity_id IN (10, 11, 12)), :log_before::bigint,
	'a move of three deals rolled back to a savepoint leaves no log row');
UPDATE crm.deal SET stage_id = crm.stage('deal', 'preparation') WHERE id IN (10, 11, 12);
SELECT results_eq($$SELECT entity_id, name, status FROM crm.robot_log
	WHERE entity_id IN (10, 11, 12) ORDER BY id DESC LIMIT 9$$,
	$$VALUES (12::bigint, 'last', 'done'), (12, 'ratio', 'done'), (12, 'first', 'done'),
		(11, 'last', 'done'), (11, 'ratio', 'done'), (11, 'first', 'done'),
		(10, 'last', 'done'), (10, 'ratio', 'done'), (10, 'first', 'done')$$,
	'a move of three deals logs each robot for each deal once, in order');
-- The log keeps an entry's runs in one row (crm.robot_log_entry); the view
-- crm.robot_log numbers them id, id + 1, ...
SELECT results_eq($$SELECT names, statuses, cardinality(finished_at) FROM crm.robot_log_entry
	WHERE entity_id = 12 ORDER BY id DESC LIMIT 1$$,
	$$VALUES ('{first,ratio,last}'::text[], '{done,done,done}'::text[], 3)$$,
	'one log row holds the runs of a deal''s entry into a stage');
SELECT results_eq($$SELECT l.id - e.id, l.name FROM crm.robot_log l,
		(SELECT max(id) AS id FROM crm.robot_log_entry WHERE entity_id = 12) e
	WHERE l.entity_id = 12 AND l.id >= e.id ORDER BY l.id$$,
	$$VALUES (0::bigint, 'first'), (1, 'ratio'), (2, 'last')$$,
	'the view shows each run with its own id');
CREATE TABLE log_seen (entity_id bigint, name text);
-- Automation runs with search_path = pg_catalog, pg_temp: name your tables.
-- The robots' runs of an item's entry are one row of crm.robot_log_entry.
CREATE FUNCTION log_seen() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
	INSERT INTO public.log_seen SELECT NEW.entity_id, n FROM unnest(NEW.names) n;
	RETURN NEW;
END $$;
CREATE TRIGGER seen AFTER INSERT ON crm.robot_log_entry FOR EACH ROW EXECUTE FUNCTION log_seen();
UPDATE crm.deal SET stage_id = crm.stage('deal', 'preparation') WHERE id IN (13, 14);
SELECT results_eq($$SELECT entity_id, name FROM log_seen ORDER BY name, entity_id$$,
	$$VALUES (13::bigint, 'first'), (14, 'first'), (13, 'last'), (14, 'last'), (13, 'ratio'), (14, 'ratio')$$,
	'a trigger on the log sees the robots of a few moved deals');
DROP TRIGGER seen ON crm.robot_log_entry;
SELECT is((SELECT count(*) FROM crm.robot_log WHERE entity_id IN (13, 14)
	AND id > (SELECT max(id) FROM crm.robot_log WHERE entity_id IN (10, 11, 12))), 6::bigint,
	'and each is logged once');

-- Robots act as the extension's owner, also in batches.
SELECT is((SELECT count(*) FROM crm.robot_log WHERE entity_id = 5 AND status = 'failed'), 0::bigint,
	'no failure for an ordinary deal');

SELECT * FROM finish();
ROLLBACK;
