-- Business processes that pause: create_task with "wait" (resumed when the
-- task is completed, failed when it is deleted), the wait action (a time,
-- or the client's activity), robocall with "wait_for_result" (the call's
-- end), delay "until" a date and in working time.  Each pause is a
-- process_timer job that an event makes due now; the job runs the instance
-- on after the activity that paused it, inside nested branches too.
BEGIN;
CREATE EXTENSION crm_automation;
SELECT plan(46);

INSERT INTO crm.department (id, name) VALUES (1, 'Sales');
INSERT INTO crm.user (id, name, email, department_id) VALUES (1, 'Mia', 'mia@example.com', 1), (2, 'Sam', 'sam@example.com', 1);
UPDATE crm.department SET head_id = 1;
INSERT INTO crm.deal (id, title, responsible_id, amount, close_date) VALUES
	(1, 'Chairs', 2, 8000, current_date + 10), (2, 'Desks', 2, 300, NULL), (3, 'Lamps', 2, 50, current_date - 1);

-- ---------- create_task with "wait", two branches deep ----------
SELECT crm.add_process_template('deal', 'Approval', $${
	"activities": [
		{"type": "if", "condition": "{{amount}} > 1000", "then": [
			{"type": "if", "condition": "{{amount}} > 5000", "then": [
				{"type": "create_task", "name": "approve", "title": "Approve {{title}}",
				 "responsible": "supervisor", "wait": true},
				{"type": "add_comment", "text": "Task {=Activity:approve.task_id} is {=Activity:approve.status}"}]},
			{"type": "write_log", "text": "after the inner if"}]},
		{"type": "write_log", "text": "after the outer if"}]}$$) AS approval \gset
SELECT crm.start_process(:approval, 1) AS i1 \gset
SELECT id AS task1 FROM crm.task WHERE process_instance_id = :i1 \gset

SELECT results_eq(format('SELECT status, current_activity, waiting_for FROM crm.process_instances WHERE id = %s', :i1),
	format($$VALUES ('waiting', 'activities[0].then[0].then[0]', 'task %s to be completed')$$, :task1),
	'the instance waits at its task, and says so');
SELECT results_eq(format('SELECT title, responsible_id, entity_type, entity_id, bindings FROM crm.task WHERE id = %s', :task1),
	$$VALUES ('Approve Chairs', 1::bigint, 'deal', 1::bigint, '{D_1}'::text[])$$,
	'the task is created for the supervisor, bound to the document, with the instance''s id');
SELECT results_eq(format('SELECT kind, status, due_at > now() + interval ''1 year'' FROM crm.job WHERE process_instance_id = %s', :i1),
	$$VALUES ('process_timer', 'pending', true)$$, 'its job waits with no end of its own');
SELECT results_eq(format('SELECT path, status, outputs->>''task_id'' FROM crm.process_log WHERE instance_id = %s AND type = ''create_task''', :i1),
	format($$VALUES ('activities[0].then[0].then[0]', 'waiting', '%s')$$, :task1), 'the trace shows it waiting');
SELECT is((SELECT count(*) FROM crm.timeline_comment WHERE entity_id = 1), 0::bigint, 'nothing after the task ran yet');
SELECT is(crm.run_next_job(), NULL, 'nothing is due');

-- The task in progress is not the end of the wait; completing it is.
SET LOCAL ROLE crm_user;
UPDATE crm.task SET status = 'in_progress' WHERE id = :task1;
RESET ROLE;
SELECT is(crm.run_next_job(), NULL, 'a task in progress resumes nothing');
SET LOCAL ROLE crm_user;
UPDATE crm.task SET status = 'completed', completed_at = now() WHERE id = :task1;
RESET ROLE;
SELECT results_eq(format('SELECT due_at <= now(), context->>''task_status'' FROM crm.job WHERE process_instance_id = %s', :i1),
	$$VALUES (true, 'completed')$$, 'completing the task (as an application user) makes the job due now');
SELECT is((SELECT status FROM crm.process_instance WHERE id = :i1), 'waiting',
	'the user''s UPDATE does not run the process');
SELECT isnt(crm.run_next_job(), NULL, 'the job runs');
SELECT results_eq(format('SELECT status, current_activity, waiting_for FROM crm.process_instances WHERE id = %s', :i1),
	$$VALUES ('completed', NULL::text, NULL::text)$$, 'the instance went on and completed');
SELECT is((SELECT text FROM crm.timeline_comment WHERE entity_id = 1), format('Task %s is completed', :task1),
	'the activity after the task read its outputs task_id and status');
SELECT results_eq($$SELECT text FROM crm.history WHERE entity_id = 1 ORDER BY id$$,
	$$VALUES ('after the inner if'), ('after the outer if')$$, 'then the rest of both branches and what follows ran');
SELECT results_eq(format('SELECT status, outputs, finished_at IS NOT NULL FROM crm.process_log WHERE instance_id = %s AND type = ''create_task''', :i1),
	format($$VALUES ('done', '{"task_id": %s, "status": "completed"}'::jsonb, true)$$, :task1),
	'the task''s trace row is done with its outputs');

-- A task completed again later resumes nothing more.
UPDATE crm.task SET status = 'pending' WHERE id = :task1;
UPDATE crm.task SET status = 'completed' WHERE id = :task1;
SELECT is(crm.run_next_job(), NULL, 'a finished instance is not resumed again');

-- ---------- the task deleted: the activity fails ----------
SELECT crm.start_process(:approval, 1) AS i2 \gset
SELECT id AS task2 FROM crm.task WHERE process_instance_id = :i2 \gset
DELETE FROM crm.task WHERE id = :task2;
SELECT isnt(crm.run_next_job(), NULL, 'deleting the task makes the job due');
SELECT results_eq(format('SELECT status, current_activity, error FROM crm.process_instances WHERE id = %s', :i2),
	format($$VALUES ('failed', 'activities[0].then[0].then[0]', 'task %s was deleted before it was completed')$$, :task2),
	'the instance failed at the task');
SELECT results_eq(format('SELECT status, error FROM crm.process_log WHERE instance_id = %s AND type = ''create_task''', :i2),
	format($$VALUES ('failed', 'task %s was deleted before it was completed')$$, :task2), 'its trace row failed');
SELECT is((SELECT count(*) FROM crm.notification WHERE process_instance_id = :i2 AND user_id = 2), 1::bigint,
	'the responsible is told');
SELECT is((SELECT count(*) FROM crm.history WHERE entity_id = 1 AND text = 'after the outer if'), 1::bigint,
	'nothing after the task ran');

-- ---------- a spurious run: the task is still open, the wait goes on ----------
SELECT crm.start_process(:approval, 1) AS i3 \gset
UPDATE crm.job SET due_at = now() - interval '1 second' WHERE process_instance_id = :i3;
SELECT isnt(crm.run_next_job(), NULL, 'the job runs early');
SELECT results_eq(format('SELECT status FROM crm.process_instance WHERE id = %s', :i3), $$VALUES ('waiting')$$,
	'the instance still waits for its open task');
SELECT results_eq(format('SELECT status, due_at > now() + interval ''1 year'' FROM crm.job WHERE process_instance_id = %s ORDER BY id', :i3),
	$$VALUES ('done', false), ('pending', true)$$, 'with a new job');
SELECT lives_ok(format('SELECT crm.stop_process(%s)', :i3), 'and can be stopped');
SELECT is((SELECT count(*) FROM crm.job WHERE process_instance_id = :i3 AND status = 'pending'), 0::bigint,
	'which cancels its job');

-- ---------- bind_current false ----------
SELECT crm.add_process_template('deal', 'Unbound', $${"activities": [
	{"type": "create_task", "params": {"title": "Review", "responsible": 1, "bind_current": false,
	 "bindings": ["C_5"]}}]}$$) AS unbound \gset
SELECT crm.start_process(:unbound, 2) AS i4 \gset
SELECT results_eq(format('SELECT entity_type, entity_id, bindings FROM crm.task WHERE process_instance_id = %s', :i4),
	$$VALUES (NULL::text, NULL::bigint, '{C_5}'::text[])$$, 'with bind_current false the document is not bound');
SELECT is((SELECT status FROM crm.process_instance WHERE id = :i4), 'completed', 'without wait the instance goes on');

-- ---------- the wait action ----------
SELECT crm.add_process_template('deal', 'Wait', $${"activities": [
	{"type": "wait", "name": "w", "for": "2 days", "until_client_activity": true, "instructions": "Call {{title}}"},
	{"type": "add_comment", "text": "wait ended by {=Activity:w.ended_by}"}]}$$) AS wait_t \gset
SELECT crm.start_process(:wait_t, 2) AS i5 \gset
SELECT results_eq(format('SELECT status, waiting_for LIKE ''client activity, or until %%'' FROM crm.process_instances WHERE id = %s', :i5),
	$$VALUES ('waiting', true)$$, 'the wait pauses the instance until client activity or its time');
SELECT is((SELECT count(*) FROM crm.notification WHERE process_instance_id = :i5 AND text = 'Call Desks'), 1::bigint,
	'its instructions went to the responsible');
SELECT results_eq(format('SELECT due_at = now() + interval ''2 days'' FROM crm.job WHERE process_instance_id = %s', :i5),
	$$VALUES (true)$$, 'its job is due when the time is over');
INSERT INTO crm.activity (entity_type, entity_id, type, direction, subject) VALUES ('deal', 2, 'call', 'incoming', 'Hello');
SELECT isnt(crm.run_next_job(), NULL, 'an incoming call makes it due');
SELECT results_eq(format('SELECT status FROM crm.process_instance WHERE id = %s', :i5), $$VALUES ('completed')$$,
	'the instance went on');
SELECT is((SELECT text FROM crm.timeline_comment WHERE process_instance_id = :i5), 'wait ended by client_activity',
	'and knows what ended the wait');

SELECT crm.add_process_template('deal', 'Short wait', $${"activities": [
	{"type": "wait", "name": "w", "for": "1 hour"},
	{"type": "add_comment", "text": "wait ended by {=Activity:w.ended_by}"}]}$$) AS short_wait \gset
SELECT crm.start_process(:short_wait, 2) AS i6 \gset
INSERT INTO crm.activity (entity_type, entity_id, type, direction, subject) VALUES ('deal', 2, 'call', 'incoming', 'Again');
SELECT is(crm.run_next_job(), NULL, 'a wait without until_client_activity ignores the client');
UPDATE crm.job SET due_at = now() - interval '1 second' WHERE process_instance_id = :i6;
SELECT isnt(crm.run_next_job(), NULL, 'its time over, it runs');
SELECT is((SELECT text FROM crm.timeline_comment WHERE process_instance_id = :i6), 'wait ended by time',
	'ended by time');

-- ---------- robocall with wait_for_result ----------
SELECT crm.add_provider('robocall', 'voice', '{"url": "http://127.0.0.1:9/call", "body": "{text}"}');
SELECT crm.add_process_template('deal', 'Call', $${"activities": [
	{"type": "robocall", "name": "call", "number": "+33 1 23", "text": "About {{title}}", "wait_for_result": true},
	{"type": "add_comment", "text": "call {=Activity:call.status}"}]}$$) AS call_t \gset
SELECT crm.start_process(:call_t, 2) AS i7 \gset
SELECT id AS msg FROM crm.outbox WHERE process_instance_id = :i7 \gset
SELECT results_eq(format('SELECT status, waiting_for FROM crm.process_instances WHERE id = %s', :i7),
	format($$VALUES ('waiting', 'the result of the call (outbox message %s)')$$, :msg),
	'the instance waits for the call''s result');
UPDATE crm.outbox SET status = 'sending' WHERE id = :msg;
SELECT is(crm.run_next_job(), NULL, 'a call in progress resumes nothing');
UPDATE crm.outbox SET status = 'dead' WHERE id = :msg;
SELECT isnt(crm.run_next_job(), NULL, 'the call given up makes the job due');
SELECT results_eq(format('SELECT status FROM crm.process_instance WHERE id = %s', :i7), $$VALUES ('completed')$$,
	'the instance went on');
SELECT is((SELECT text FROM crm.timeline_comment WHERE process_instance_id = :i7), 'call dead',
	'with the call''s status in its outputs');

-- ---------- delay until a date, and in working time ----------
SELECT crm.add_process_template('deal', 'Until close', $${"activities": [
	{"type": "delay", "until": "{{close_date}}"},
	{"type": "write_log", "text": "closing day"}]}$$) AS until_t \gset
SELECT crm.start_process(:until_t, 1) AS i8 \gset
SELECT results_eq(format('SELECT due_at FROM crm.job WHERE process_instance_id = %s', :i8),
	$$VALUES ((current_date + 10)::timestamptz)$$, 'delay until a date field: the job is due then');
SELECT crm.start_process(:until_t, 3) AS i9 \gset
SELECT isnt(crm.run_next_job(), NULL, 'a date already past is due at once');
SELECT is((SELECT status FROM crm.process_instance WHERE id = :i9), 'completed', 'and the instance goes on');
SELECT crm.start_process(:until_t, 2) AS i10 \gset
SELECT results_eq(format('SELECT status, error FROM crm.process_instance WHERE id = %s', :i10),
	$$VALUES ('failed', '"until" of the delay gives no date: {{close_date}}')$$, 'a date field that is empty fails the delay');

SELECT crm.add_process_template('deal', 'Working hours', $${"activities": [
	{"type": "delay", "for": "3 hours", "work_time": true}]}$$) AS wt \gset
SELECT crm.start_process(:wt, 1) AS i11 \gset
SELECT results_eq(format($$SELECT j.due_at = crm.work_time_add(now(), interval '3 hours'), l.outputs
	FROM crm.job j JOIN crm.process_log l ON l.instance_id = j.process_instance_id WHERE j.process_instance_id = %s$$, :i11),
	$$VALUES (true, '{"for": "3 hours", "work_time": true}'::jsonb)$$, 'a delay in working time');

SELECT * FROM finish();
ROLLBACK;
