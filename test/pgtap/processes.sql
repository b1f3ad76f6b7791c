-- Business processes at run time: delays and their timers, resuming inside
-- a branch, stopping, failing activities, runtime type checks, privileges.
BEGIN;
CREATE EXTENSION crm_automation;
SELECT plan(42);

INSERT INTO crm.department (id, name) VALUES (1, 'Sales');
INSERT INTO crm.user (id, name, email, department_id) VALUES (1, 'Mia', 'mia@example.com', 1), (2, 'Sam', 'sam@example.com', 1);
UPDATE crm.department SET head_id = 1;
INSERT INTO crm.deal (id, title, responsible_id, amount) VALUES (1, 'Chairs', 2, 800), (2, 'Desks', 1, 9000);

-- A delay: the instance waits at the delay with a timer job; when the job
-- runs, it goes on after the delay with its variables.
SELECT crm.add_process_template('deal', 'Follow-up', $${
	"variables": {"n": {"type": "int", "default": 0}},
	"activities": [
		{"type": "set_status_text", "text": "Waiting for {{title}}"},
		{"type": "set_variable", "variable": "n", "value": "={{amount}} / 100"},
		{"type": "delay", "for": "1 hour"},
		{"type": "if", "condition": "{=Variable:n} = 8",
		 "then": [{"type": "add_comment", "text": "Followed up, n = {=Variable:n}"}],
		 "else": [{"type": "write_log", "text": "n is not 8"}]},
		{"type": "set_status_text", "text": "Done with {{title}}"}]}$$) AS follow_up \gset
SELECT crm.start_process(:follow_up, 1) AS i1 \gset

SELECT results_eq($$SELECT status, status_text, current_activity FROM crm.process_instances WHERE id = $$ || :i1,
	$$VALUES ('waiting', 'Waiting for Chairs', 'activities[2]')$$, 'the instance waits at the delay, its status text shown');
SELECT is((SELECT variables->>'n' FROM crm.process_instance WHERE id = :i1), '8', 'its variables are kept');
SELECT results_eq($$SELECT kind, status, due_at > now() + interval '59 minutes', entity_type, entity_id
	FROM crm.job WHERE process_instance_id = $$ || :i1,
	$$VALUES ('process_timer', 'pending', true, 'deal', 1::bigint)$$, 'a process_timer job is due after the delay');
SELECT is((SELECT count(*) FROM crm.timeline_comment WHERE entity_id = 1), 0::bigint, 'nothing after the delay ran yet');
SELECT is(crm.run_next_job(), NULL, 'the timer is not due yet');

UPDATE crm.job SET due_at = now() - interval '1 second' WHERE process_instance_id = :i1;
SELECT isnt(crm.run_next_job(), NULL, 'the due timer runs');
SELECT results_eq($$SELECT status, status_text, current_activity, finished_at IS NOT NULL FROM crm.process_instances WHERE id = $$ || :i1,
	$$VALUES ('completed', 'Done with Chairs', NULL::text, true)$$, 'the instance went on after the delay and completed');
SELECT is((SELECT text FROM crm.timeline_comment WHERE entity_id = 1), 'Followed up, n = 8',
	'the activities after the delay ran with the variables set before it');
SELECT is((SELECT status FROM crm.job WHERE process_instance_id = :i1), 'done', 'the timer job is done');
SELECT is((SELECT state FROM crm.process_instance WHERE id = :i1) ? 'definition', false,
	'a finished instance keeps no copy of its definition');

-- A delay inside a branch: the run resumes inside the branch, then goes on
-- after the if.
SELECT crm.add_process_template('deal', 'Branch delay', $${
	"activities": [
		{"type": "if", "condition": {"all": [{"field": "amount", "op": ">=", "value": 5000}]},
		 "then": [{"type": "write_log", "text": "big, waiting"},
				  {"type": "delay", "for": "2 days"},
				  {"type": "write_log", "text": "big, resumed"}],
		 "else": [{"type": "write_log", "text": "small"}]},
		{"type": "write_log", "text": "after the if"}]}$$) AS branch \gset
SELECT crm.start_process(:branch, 2) AS i2 \gset
SELECT results_eq($$SELECT status, current_activity FROM crm.process_instances WHERE id = $$ || :i2,
	$$VALUES ('waiting', 'activities[0].then[1]')$$, 'the instance waits inside the then branch');
UPDATE crm.job SET due_at = now() - interval '1 second' WHERE process_instance_id = :i2;
SELECT isnt(crm.run_next_job(), NULL, 'its timer runs');
SELECT results_eq($$SELECT text FROM crm.history WHERE entity_id = 2 ORDER BY id$$,
	$$VALUES ('big, waiting'), ('big, resumed'), ('after the if')$$, 'resumed inside the branch, then after the if; else never ran');
SELECT is((SELECT status FROM crm.process_instance WHERE id = :i2), 'completed', 'and completed');

-- A definition changed while an instance waits: the instance goes on with
-- the definition it started with.
SELECT crm.start_process(:branch, 2) AS i3 \gset
SELECT crm.update_process_template(:branch, definition => '{"activities": [{"type": "write_log", "text": "new version"}]}');
UPDATE crm.job SET due_at = now() - interval '1 second' WHERE process_instance_id = :i3;
SELECT isnt(crm.run_next_job(), NULL, 'the timer of the older instance runs');
SELECT is((SELECT count(*) FROM crm.history WHERE entity_id = 2 AND text = 'new version'), 0::bigint,
	'a waiting instance keeps the definition it started with');
SELECT is((SELECT status FROM crm.process_instance WHERE id = :i3), 'completed', 'and completes');

-- Stopping a waiting instance cancels its timer.
SELECT crm.start_process(:follow_up, 1) AS i4 \gset
SELECT lives_ok(format('SELECT crm.stop_process(%s)', :i4), 'a waiting instance stops');
SELECT results_eq($$SELECT status, finished_at IS NOT NULL FROM crm.process_instance WHERE id = $$ || :i4,
	$$VALUES ('stopped', true)$$, 'it is stopped');
SELECT is((SELECT status FROM crm.job WHERE process_instance_id = :i4), 'cancelled', 'its timer is cancelled');
SELECT throws_ok(format('SELECT crm.stop_process(%s)', :i4), '55000',
	format('process instance %s is not running (it is stopped)', :i4), 'a stopped instance cannot be stopped again');
SELECT throws_ok('SELECT crm.stop_process(424242)', '42704', 'process instance 424242 does not exist',
	'an unknown instance');

-- A failing activity fails the instance, with its error and place; the
-- activities before it keep their effects, later ones do not run, and the
-- caller's transaction goes on.  Mia heads the department: she has no
-- supervisor to notify.
SELECT crm.add_process_template('deal', 'Escalate', $${
	"activities": [
		{"type": "write_log", "text": "escalating"},
		{"type": "notify", "text": "Look at {{title}}", "recipients": "supervisor"},
		{"type": "write_log", "text": "escalated"}]}$$) AS escalate \gset
SELECT lives_ok(format('SELECT crm.start_process(%s, 2)', :escalate), 'a failing activity does not fail start_process');
SELECT results_eq($$SELECT status, current_activity, error IS NOT NULL, finished_at IS NOT NULL
	FROM crm.process_instances WHERE template_id = $$ || :escalate,
	$$VALUES ('failed', 'activities[1]', true, true)$$, 'the instance failed at the notify activity, with the error');
SELECT results_eq($$SELECT text FROM crm.history WHERE entity_id = 2 AND text LIKE 'escalat%'$$,
	$$VALUES ('escalating')$$, 'what ran before the failure stays, what follows did not run');
SELECT is((SELECT count(*) FROM crm.notification WHERE text NOT LIKE 'Business process "Escalate" failed on deal 2: %'), 0::bigint,
	'the failed activity left nothing (the only notice says the instance failed)');

-- A value that does not fit its variable's type fails the instance when
-- the activity runs.
SELECT crm.add_process_template('deal', 'Typed', $${
	"variables": {"n": {"type": "int"}},
	"activities": [{"type": "set_variable", "variable": "n", "value": "{{title}}"}]}$$) AS typed \gset
SELECT crm.start_process(:typed, 1) AS i5 \gset
SELECT results_eq($$SELECT status, error FROM crm.process_instance WHERE id = $$ || :i5,
	$$VALUES ('failed', 'value "Chairs" does not fit variable "n" of type int')$$, 'a runtime value is checked against the variable''s type');

-- set_field changes the document (through update_item); a robot action's
-- outputs are readable by later activities.
SELECT crm.add_process_template('deal', 'Code', $${
	"activities": [
		{"type": "generate_code", "name": "gen", "format": "digits", "length": 6},
		{"type": "set_field", "field": "title", "value": "{{title}} #{=Activity:gen.code}"}]}$$) AS code \gset
SELECT crm.start_process(:code, 1) AS i6 \gset
SELECT matches((SELECT title FROM crm.deal WHERE id = 1), '^Chairs #[0-9]{6}$', 'set_field wrote the generated code into the title');

-- Starting: parameters are checked, and nothing is stored on error.
SELECT crm.add_process_template('deal', 'With parameters', $${
	"parameters": {"reason": {"type": "text", "required": true}, "rounds": {"type": "int", "default": 2}},
	"activities": [{"type": "write_log", "text": "{=Parameter:reason} x{=Parameter:rounds}"}]}$$) AS with_params \gset
SELECT throws_ok(format('SELECT crm.start_process(%s, 1)', :with_params), '22023',
	format('missing required parameter "reason" for process template %s', :with_params), 'a required parameter is missing');
SELECT throws_ok(format($$SELECT crm.start_process(%s, 1, '{"reason": "r", "rounds": "many"}')$$, :with_params), '22023',
	'parameter "rounds" must be of type int, not "many"', 'a parameter of the wrong type');
SELECT is((SELECT count(*) FROM crm.process_instance WHERE template_id = :with_params), 0::bigint, 'nothing was stored');
SELECT crm.start_process(:with_params, 1, '{"reason": "renewal"}') AS i7 \gset
SELECT is((SELECT text FROM crm.history WHERE entity_id = 1 AND text LIKE 'renewal%'), 'renewal x2',
	'parameters and their defaults are read as {=Parameter:x}');

-- What a process writes names its instance.
SELECT is((SELECT process_instance_id FROM crm.history WHERE text = 'renewal x2'), :i7::bigint,
	'a history entry written by a process names its instance');

-- change_pipeline stops every process of the document, with its timer,
-- and the one that ran it.
SELECT crm.add_pipeline('deal', 'Other') AS other \gset
SELECT crm.add_stage(:other, 'start', 'Start') AS other_start \gset
SELECT crm.start_process(:follow_up, 2) AS i8 \gset
SELECT crm.add_process_template('deal', 'Move', $${"activities": [
	{"type": "change_pipeline", "pipeline": "Other"},
	{"type": "write_log", "text": "after the move"}]}$$) AS move \gset
SELECT crm.start_process(:move, 2) AS i9 \gset
SELECT results_eq(format('SELECT status FROM crm.process_instance WHERE id IN (%s, %s) ORDER BY id', :i8, :i9),
	$$VALUES ('stopped'), ('stopped')$$, 'change_pipeline stopped the waiting instance of the document and its own');
SELECT is((SELECT status FROM crm.job WHERE process_instance_id = :i8), 'cancelled', 'the stopped instance''s timer is cancelled');
SELECT is((SELECT count(*) FROM crm.history WHERE text = 'after the move'), 0::bigint, 'nothing after change_pipeline ran');
SELECT is((SELECT s.pipeline_id FROM crm.deal d JOIN crm.stage s ON s.id = d.stage_id WHERE d.id = 2), :other::bigint,
	'the deal is in the other pipeline');

-- A change of stage does not end the process (robots after it would not
-- run; activities do); deleting the document completes it.
INSERT INTO crm.deal (id, title, responsible_id) VALUES (3, 'Lamps', 2);
SELECT crm.add_process_template('deal', 'Stage then delete', $${"activities": [
	{"type": "change_stage", "stage": "preparation"},
	{"type": "write_log", "text": "after the stage change"},
	{"type": "delete_item"},
	{"type": "write_log", "text": "after the deletion"}]}$$) AS stage_delete \gset
SELECT crm.start_process(:stage_delete, 3) AS i10 \gset
SELECT is((SELECT count(*) FROM crm.history WHERE entity_id = 3 AND text = 'after the stage change'), 1::bigint,
	'the activity after change_stage ran');
SELECT is((SELECT count(*) FROM crm.deal WHERE id = 3), 0::bigint, 'delete_item deleted the deal');
SELECT results_eq(format('SELECT status, error FROM crm.process_instance WHERE id = %s', :i10),
	$$VALUES ('completed', NULL::text)$$, 'the instance completed with its document deleted');

-- An application role can start and stop processes, and read the view.
SET LOCAL ROLE crm_user;
SELECT lives_ok(format('SELECT crm.stop_process(crm.start_process(%s, 1))', :follow_up), 'crm_user starts and stops a process');
SELECT ok((SELECT count(*) FROM crm.process_instances) > 0, 'crm_user reads crm.process_instances');
RESET ROLE;

SELECT * FROM finish();
ROLLBACK;
