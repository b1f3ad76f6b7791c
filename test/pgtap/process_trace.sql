-- Business processes leave a trace: a crm.process_log row per activity
-- (done, failed, waiting), shown by crm.item_automation next to robots and
-- triggers; crm.document_processes gives a document's instances and status
-- texts; every row an activity writes carries process_instance_id (and no
-- robot id); a failed instance notifies the document's responsible and the
-- template's author.
BEGIN;
CREATE EXTENSION crm_automation;
SELECT plan(19);

INSERT INTO crm.department (id, name) VALUES (1, 'Sales');
INSERT INTO crm.user (id, name, email, department_id) VALUES (1, 'Mia', 'mia@example.com', 1),
	(2, 'Sam', 'sam@example.com', 1), (3, 'Ada', 'ada@example.com', 1);
UPDATE crm.department SET head_id = 1;
INSERT INTO crm.deal (id, title, responsible_id, amount) VALUES (1, 'Chairs', 2, 8000), (2, 'Desks', 2, 10);

-- A template written by Ada (the acting user when it is saved).
SET LOCAL crm.user_id = 3;
SELECT crm.add_process_template('deal', 'Approval', $${
	"constants": {"threshold": 5000},
	"activities": [
		{"type": "set_status_text", "text": "Checking {{title}}"},
		{"type": "if", "condition": "{{amount}} >= {=Constant:threshold}",
		 "then": [{"type": "create_task", "name": "approve", "title": "Approve {{title}}", "responsible": "supervisor"}],
		 "else": [{"type": "add_comment", "text": "Small deal"}]},
		{"type": "create_activity", "params": {"subject": "Call about {{title}}", "type": "call"}},
		{"type": "create_group_chat", "params": {"name": "Deal {{title}}", "members": ["responsible", "supervisor"]}},
		{"type": "delay", "for": "1 hour"},
		{"type": "add_comment", "text": "after the hour"}]}$$) AS approval \gset
RESET crm.user_id;
SELECT crm.start_process(:approval, 1) AS i1 \gset

SELECT results_eq($$SELECT path, type, name, status, outputs ? 'task_id' OR outputs ? 'branch' OR outputs ? 'text'
						 OR outputs ? 'activity_id' OR outputs ? 'chat_id' OR outputs ? 'for'
					FROM crm.process_log WHERE instance_id = $$ || :i1 || $$ ORDER BY id$$,
	$$VALUES ('activities[0]', 'set_status_text', NULL, 'done', true),
			 ('activities[1]', 'if', NULL, 'done', true),
			 ('activities[1].then[0]', 'create_task', 'approve', 'done', true),
			 ('activities[2]', 'create_activity', NULL, 'done', true),
			 ('activities[3]', 'create_group_chat', NULL, 'done', true),
			 ('activities[4]', 'delay', NULL, 'waiting', true)$$,
	'a log row per activity, in order, with its place, type, name, status and outputs');
SELECT is((SELECT outputs FROM crm.process_log WHERE instance_id = :i1 AND type = 'if'), '{"branch": "then"}',
	'the if says which branch it took');
SELECT ok((SELECT bool_and(finished_at >= started_at) FROM crm.process_log WHERE instance_id = :i1 AND status = 'done')
		  AND (SELECT finished_at IS NULL FROM crm.process_log WHERE instance_id = :i1 AND status = 'waiting'),
	'done rows have their times; the waiting one is not finished');

SELECT results_eq($$SELECT kind, name, action, status FROM crm.item_automation('deal', 1) WHERE kind = 'process'$$,
	$$VALUES ('process', 'Approval / activities[0]', 'set_status_text', 'done'),
			 ('process', 'Approval / activities[1]', 'if', 'done'),
			 ('process', 'Approval / approve', 'create_task', 'done'),
			 ('process', 'Approval / activities[2]', 'create_activity', 'done'),
			 ('process', 'Approval / activities[3]', 'create_group_chat', 'done'),
			 ('process', 'Approval / activities[4]', 'delay', 'waiting')$$,
	'crm.item_automation shows the process''s steps');
SELECT results_eq($$SELECT instance_id, template, status, status_text, current_activity FROM crm.document_processes('deal', 1)$$,
	$$VALUES ($$ || :i1 || $$::bigint, 'Approval', 'waiting', 'Checking Chairs', 'activities[4]')$$,
	'crm.document_processes gives the instance and its status text');

-- What the activities wrote carries the instance, not a robot.
SELECT results_eq($$SELECT process_instance_id, robot_id FROM crm.task WHERE entity_id = 1$$,
	$$VALUES ($$ || :i1 || $$::bigint, NULL::bigint)$$, 'the task carries process_instance_id and no robot id');
SELECT results_eq($$SELECT process_instance_id, robot_id, type FROM crm.activity WHERE entity_id = 1$$,
	$$VALUES ($$ || :i1 || $$::bigint, NULL::bigint, 'call')$$, 'so does the activity (its type set through params)');
SELECT results_eq($$SELECT process_instance_id, robot_id, title FROM crm.chat WHERE entity_id = 1$$,
	$$VALUES ($$ || :i1 || $$::bigint, NULL::bigint, 'Deal Chairs')$$, 'and the group chat (its name set through params)');

-- The timer: the run goes on, and the rest is logged.
UPDATE crm.job SET due_at = now() - interval '1 second' WHERE process_instance_id = :i1;
SELECT isnt(crm.run_next_job(), NULL, 'the timer runs');
SELECT results_eq($$SELECT path, type, status FROM crm.process_log WHERE instance_id = $$ || :i1 || $$ AND id >
					(SELECT id FROM crm.process_log WHERE instance_id = $$ || :i1 || $$ AND type = 'delay')$$,
	$$VALUES ('activities[5]', 'add_comment', 'done')$$, 'after the delay, the next activity is logged');
SELECT is((SELECT status FROM crm.document_processes('deal', 1)), 'completed', 'and the instance completed');

-- A failing activity: logged failed with its error; the instance fails and
-- the responsible (Sam) and the author (Ada) are told, once each.
SET LOCAL crm.user_id = 3;
SELECT crm.add_process_template('deal', 'Breaks', $${
	"variables": {"n": {"type": "int"}},
	"activities": [
		{"type": "add_comment", "text": "before"},
		{"type": "set_variable", "variable": "n", "value": "=1/0"},
		{"type": "add_comment", "text": "never"}]}$$) AS breaks \gset
RESET crm.user_id;
SELECT crm.start_process(:breaks, 2) AS i2 \gset
SELECT results_eq($$SELECT path, type, status, error IS NOT NULL FROM crm.process_log WHERE instance_id = $$ || :i2 || $$ ORDER BY id$$,
	$$VALUES ('activities[0]', 'add_comment', 'done', false), ('activities[1]', 'set_variable', 'failed', true)$$,
	'the failed activity is logged with its error, nothing after it ran');
SELECT is((SELECT status FROM crm.process_instance WHERE id = :i2), 'failed', 'the instance failed');
SELECT results_eq($$SELECT user_id, kind, entity_type, entity_id, process_instance_id FROM crm.notification
					 WHERE process_instance_id = $$ || :i2 || $$ ORDER BY user_id$$,
	$$VALUES (2::bigint, 'system', 'deal', 2::bigint, $$ || :i2 || $$::bigint), (3::bigint, 'system', 'deal', 2::bigint, $$ || :i2 || $$::bigint)$$,
	'the responsible and the template''s author are notified');
SELECT alike((SELECT text FROM crm.notification WHERE process_instance_id = :i2 AND user_id = 3),
	'Business process "Breaks" failed on deal 2: %', 'the notice names the template, the document and the error');

-- The author is also the responsible: one notice.
UPDATE crm.deal SET responsible_id = 3 WHERE id = 2;
SELECT crm.start_process(:breaks, 2) AS i3 \gset
SELECT is((SELECT count(*) FROM crm.notification WHERE process_instance_id = :i3), 1::bigint,
	'one notice when the responsible wrote the template');

-- "params" must be an object, and stands alone with type and name.
SELECT throws_ok($$SELECT crm.add_process_template('deal', 'Bad params', '{"activities": [{"type": "create_group_chat", "params": ["x"]}]}')$$,
	'22023', '"params" must be a JSON object of the activity''s parameters, not an array', 'params of the wrong type');
SELECT throws_ok($$SELECT crm.add_process_template('deal', 'Beside', '{"activities": [{"type": "chat_message", "text": "hi", "params": {"text": "hi"}}]}')$$,
	'22023', 'parameter "text" stands beside "params"', 'a parameter beside params');

-- crm_user reads the trace (its own documents' history).
SET LOCAL ROLE crm_user;
SELECT is((SELECT count(*) FROM crm.item_automation('deal', 1) WHERE kind = 'process'), 7::bigint,
	'crm_user sees the process steps in crm.item_automation');
RESET ROLE;

SELECT * FROM finish();
ROLLBACK;
