-- Faults around automation: a statement that failed and was rolled back to
-- a savepoint leaves no trace in the loop detection; automation that fans
-- out (two copy_deal robots on a first stage) is bounded by crm.max_steps;
-- the stage cache follows definition changes made inside the same
-- transaction.  (Two sessions and REPEATABLE READ: test/integration/
-- rule_cache_sessions.sh.)
BEGIN;
CREATE EXTENSION crm_automation;
SELECT plan(11);

INSERT INTO crm.department (id, name) VALUES (1, 'Sales');
INSERT INTO crm.user (id, name, email, department_id) VALUES (1, 'Mia', 'mia@example.com', 1);

-- 1. A robot's comment reaches an application trigger that sleeps; the
-- statement times out and the application rolls back to its savepoint,
-- then tries again without the sleep.  The retry runs the robot: it is not
-- taken for a loop of the cancelled attempt.
SELECT crm.add_robot(crm.stage('deal', 'preparation'), 'add_comment', '{"text": "Prepared"}') AS prep_robot \gset
INSERT INTO crm.deal (id, title, responsible_id) VALUES (301, 'Retry', 1);
CREATE FUNCTION pg_temp.slow_comment() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
	IF current_setting('faulttest.slow', true) = 'on' THEN
		PERFORM pg_sleep(2);
	END IF;
	RETURN NEW;
END $$;
CREATE TRIGGER slow_comment BEFORE INSERT ON crm.timeline_comment
	FOR EACH ROW EXECUTE FUNCTION pg_temp.slow_comment();
SAVEPOINT before_move;
SET faulttest.slow = 'on';
SET statement_timeout = '300ms';
\set ON_ERROR_STOP 0
UPDATE crm.deal SET stage_id = crm.stage('deal', 'preparation') WHERE id = 301;
\set ON_ERROR_STOP 1
ROLLBACK TO SAVEPOINT before_move;
RESET statement_timeout;
SET faulttest.slow = 'off';
SELECT is((SELECT stage_id FROM crm.deal WHERE id = 301), crm.stage('deal', 'new'),
	'the first attempt was cancelled by the timeout and rolled back');
UPDATE crm.deal SET stage_id = crm.stage('deal', 'preparation') WHERE id = 301;
SELECT results_eq($$SELECT status FROM crm.robot_log WHERE entity_id = 301 AND robot_id = $$ || :prep_robot,
	$$VALUES ('done')$$, 'the retry runs the robot (not loop_stopped)');
SELECT is((SELECT count(*) FROM crm.timeline_comment WHERE entity_id = 301), 1::bigint,
	'and its comment is written once');

-- The same through a PL/pgSQL exception block (a subtransaction).
INSERT INTO crm.deal (id, title, responsible_id) VALUES (302, 'Block', 1);
SET faulttest.slow = 'on';
SET statement_timeout = '300ms';
DO $$
BEGIN
	UPDATE crm.deal SET stage_id = crm.stage('deal', 'preparation') WHERE id = 302;
EXCEPTION WHEN query_canceled THEN
	NULL;
END $$;
RESET statement_timeout;
SET faulttest.slow = 'off';
UPDATE crm.deal SET stage_id = crm.stage('deal', 'preparation') WHERE id = 302;
SELECT results_eq($$SELECT status FROM crm.robot_log WHERE entity_id = 302 AND robot_id = $$ || :prep_robot,
	$$VALUES ('done')$$, 'after an exception block caught the timeout, the retry runs the robot');
DROP TRIGGER slow_comment ON crm.timeline_comment;

-- The same for a trigger: an incoming call moves the deal, the robots of
-- the stage it moved to are cancelled with the statement; the retried call
-- moves it.
SELECT crm.add_robot(crm.stage('deal', 'final_invoice'), 'add_comment', '{"text": "Invoiced"}') IS NOT NULL AS inv_robot;
SELECT crm.add_trigger(crm.stage('deal', 'final_invoice'), 'incoming_call') AS call_trigger \gset
INSERT INTO crm.deal (id, title, responsible_id) VALUES (303, 'Call', 1);
SAVEPOINT before_call;
SET faulttest.slow = 'on';
SET statement_timeout = '300ms';
\set ON_ERROR_STOP 0
INSERT INTO crm.activity (entity_type, entity_id, type, direction) VALUES ('deal', 303, 'call', 'incoming');
\set ON_ERROR_STOP 1
ROLLBACK TO SAVEPOINT before_call;
RESET statement_timeout;
SET faulttest.slow = 'off';
INSERT INTO crm.activity (entity_type, entity_id, type, direction) VALUES ('deal', 303, 'call', 'incoming');
SELECT results_eq($$SELECT status FROM crm.robot_log WHERE entity_id = 303 AND trigger_id = $$ || :call_trigger,
	$$VALUES ('fired')$$, 'the retried call fires the trigger (not loop_stopped)');
SELECT is((SELECT count(*) FROM crm.timeline_comment WHERE entity_id = 303 AND text = 'Invoiced'), 1::bigint,
	'and the robots of its stage run');

-- 2. Fan-out: two copy_deal robots on the first stage copy every copy.
-- Depth alone (crm.max_depth = 16) would allow 2^16 deals; crm.max_steps
-- stops the change after that many steps, logged, and the statement
-- succeeds.
SELECT crm.add_robot(crm.stage('deal', 'new'), 'copy_deal', '{}') IS NOT NULL AS copy1;
SELECT crm.add_robot(crm.stage('deal', 'new'), 'copy_deal', '{}') IS NOT NULL AS copy2;
SET crm.max_steps = 40;
SELECT lives_ok($$INSERT INTO crm.deal (id, title, responsible_id) VALUES (400, 'Seed', 1)$$,
	'the statement that starts the fan-out succeeds');
SELECT cmp_ok((SELECT count(*) FROM crm.deal WHERE title LIKE 'Seed%'), '<=', 41::bigint,
	'at most crm.max_steps copies were made');
SELECT cmp_ok((SELECT count(*) FROM crm.robot_log WHERE status = 'loop_stopped'
	AND detail->>'cycle' LIKE '%crm.max_steps%'), '>=', 1::bigint,
	'the step past the budget is logged loop_stopped, naming crm.max_steps');
RESET crm.max_steps;

-- A bulk statement is many changes: each item has its own budget.
DELETE FROM crm.robot WHERE action = 'copy_deal';
SET crm.max_steps = 2;
INSERT INTO crm.deal (id, title, responsible_id) SELECT g, 'Bulk ' || g, 1 FROM generate_series(500, 509) g;
UPDATE crm.deal SET stage_id = crm.stage('deal', 'preparation') WHERE id BETWEEN 500 AND 509;
SELECT is((SELECT count(*) FROM crm.timeline_comment WHERE entity_id BETWEEN 500 AND 509), 10::bigint,
	'a bulk move runs every item''s robots within its own budget');
RESET crm.max_steps;

-- 3. A robot added in this transaction runs at once.
SELECT crm.add_robot(crm.stage('deal', 'executing'), 'add_comment', '{"text": "Executing"}') IS NOT NULL AS exec_robot;
UPDATE crm.deal SET stage_id = crm.stage('deal', 'executing') WHERE id = 301;
SELECT is((SELECT count(*) FROM crm.timeline_comment WHERE entity_id = 301 AND text = 'Executing'), 1::bigint,
	'a robot added in the same transaction runs');

SELECT * FROM finish();
ROLLBACK;
