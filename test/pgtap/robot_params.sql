-- Robot parameters that are easy to accept and then forget: a wait's
-- instructions, a task's files, accomplices and auditors, a post's files;
-- names checked when a robot is saved (pipelines, stages of the robot's
-- pipeline, document templates, providers); no delay on wait or control.
BEGIN;
CREATE EXTENSION crm_automation;
SELECT plan(28);

INSERT INTO crm.department (id, name) VALUES (1, 'Sales');
INSERT INTO crm.user (id, name, email, department_id) VALUES
	(1, 'Mia', 'mia@example.com', 1), (2, 'Sam', 'sam@example.com', 1), (3, 'Ugo', 'ugo@example.com', 1);
UPDATE crm.department SET head_id = 1;
INSERT INTO crm.drive_file (id, name, content) VALUES (10, 'offer.pdf', 'x'), (11, 'terms.pdf', 'y');

-- ---------- wait: its instructions go to the responsible user ----------
SELECT crm.add_robot(crm.stage('deal', 'preparation'), 'wait',
	'{"for": "2 days", "instructions": "Call {{title}} back if nothing comes"}', name => 'pause');
SELECT crm.add_robot(crm.stage('deal', 'preparation'), 'add_comment', '{"text": "after the wait"}');
INSERT INTO crm.deal (id, title, responsible_id) VALUES (1, 'Acme', 2);
UPDATE crm.deal SET stage_id = crm.stage('deal', 'preparation') WHERE id = 1;
SELECT results_eq($$SELECT user_id, text FROM crm.notification WHERE entity_id = 1$$,
	$$VALUES (2::bigint, 'Call Acme back if nothing comes')$$,
	'the wait''s instructions reach the responsible user when it starts');
SELECT results_eq($$SELECT kind, status FROM crm.job WHERE entity_id = 1$$,
	$$VALUES ('wait', 'pending')$$, 'and the wait is scheduled');
SELECT is((SELECT count(*) FROM crm.timeline_comment WHERE entity_id = 1), 0::bigint,
	'the robot after it waits');

-- Instructions that cannot be rendered: the wait fails, the next robot runs.
SELECT crm.add_robot(crm.stage('deal', 'executing'), 'wait',
	'{"for": "1 day", "instructions": "=100 / ({{amount}} - 5)"}');
SELECT crm.add_robot(crm.stage('deal', 'executing'), 'add_comment', '{"text": "went on"}');
INSERT INTO crm.deal (id, title, responsible_id, amount) VALUES (2, 'Zero', 2, 5);
UPDATE crm.deal SET stage_id = crm.stage('deal', 'executing') WHERE id = 2;
SELECT results_eq($$SELECT action, status FROM crm.robot_log WHERE entity_id = 2 ORDER BY id$$,
	$$VALUES ('wait', 'failed'), ('add_comment', 'done')$$,
	'a wait whose instructions fail is logged failed and the robots after it run');
SELECT is((SELECT count(*) FROM crm.job WHERE entity_id = 2), 0::bigint, 'nothing waits for it');

-- ---------- create_task: files, accomplices, auditors ----------
SELECT crm.add_robot(crm.stage('deal', 'final_invoice'), 'create_task',
	'{"title": "Invoice {{title}}", "responsible": "responsible", "files": [10, 11],
	  "accomplices": [1, 3], "auditors": "supervisor"}', name => 'task');
INSERT INTO crm.deal (id, title, responsible_id) VALUES (3, 'Files', 2);
UPDATE crm.deal SET stage_id = crm.stage('deal', 'final_invoice') WHERE id = 3;
SELECT results_eq($$SELECT files, accomplices, auditors FROM crm.task WHERE entity_id = 3$$,
	$$VALUES ('{10,11}'::bigint[], '{1,3}'::bigint[], '{1}'::bigint[])$$,
	'a task keeps its files, accomplices and auditors');
SELECT crm.add_robot(crm.stage('deal', 'final_invoice'), 'create_task',
	'{"title": "Lost file", "responsible": "responsible", "files": 99}');
INSERT INTO crm.deal (id, title, responsible_id) VALUES (4, 'Missing', 2);
UPDATE crm.deal SET stage_id = crm.stage('deal', 'final_invoice') WHERE id = 4;
SELECT results_eq($$SELECT status, error FROM crm.robot_log WHERE entity_id = 4 AND action = 'create_task' ORDER BY id$$,
	$$VALUES ('done', NULL), ('failed', 'parameter "files" names file 99, which is not in crm.drive_file')$$,
	'a task naming a file that is gone fails with the file''s id');
SELECT is((SELECT count(*) FROM crm.task WHERE title = 'Lost file'), 0::bigint, 'and creates no task');

-- ---------- feed_post: files ----------
SELECT crm.add_robot(crm.stage('deal', 'won'), 'feed_post',
	'{"title": "Won", "text": "{{title}} is won", "files": 11, "recipients": [1]}');
INSERT INTO crm.deal (id, title, responsible_id) VALUES (5, 'Post', 2);
UPDATE crm.deal SET stage_id = crm.stage('deal', 'won') WHERE id = 5;
SELECT results_eq($$SELECT text, files FROM crm.feed_post WHERE entity_id = 5$$,
	$$VALUES ('Post is won', '{11}'::bigint[])$$, 'a post keeps its files');

-- ---------- robocall with wait_for_result holds the robots after it ----------
SELECT crm.add_provider('robocall', 'voice', '{"url": "http://127.0.0.1:9/call", "body": "{text}"}');
SELECT crm.add_robot(crm.stage('deal', 'prepayment_invoice'), 'robocall',
	'{"number": "+33 1 23", "text": "About {{title}}", "wait_for_result": true}');
SELECT crm.add_robot(crm.stage('deal', 'prepayment_invoice'), 'add_comment', '{"text": "after the call"}');
INSERT INTO crm.deal (id, title, responsible_id) VALUES (8, 'Call', 2);
UPDATE crm.deal SET stage_id = crm.stage('deal', 'prepayment_invoice') WHERE id = 8;
SELECT results_eq($$SELECT j.kind, j.status, j.due_at > now() + interval '1 year', o.status
	FROM crm.job j JOIN crm.outbox o ON o.robot_id = j.robot_id AND o.entity_id = j.entity_id WHERE j.entity_id = 8$$,
	$$VALUES ('wait', 'pending', true, 'pending')$$,
	'the robot after a robocall waiting for its result is held in a wait with no end of its own');
SELECT is((SELECT count(*) FROM crm.timeline_comment WHERE entity_id = 8), 0::bigint, 'and has not run');
UPDATE crm.outbox SET status = 'sent' WHERE entity_id = 8;
SELECT results_eq($$SELECT j.due_at <= now(), j.context->>'message_status' FROM crm.job j WHERE j.entity_id = 8$$,
	$$VALUES (true, 'sent')$$, 'the call recorded sent makes the wait due at once');
SELECT crm.add_robot(crm.stage('deal', 'lost'), 'robocall',
	'{"number": "+33 1 23", "text": "Sorry", "wait_for_result": true}');
INSERT INTO crm.deal (id, title, responsible_id) VALUES (9, 'Last', 2);
UPDATE crm.deal SET stage_id = crm.stage('deal', 'lost') WHERE id = 9;
SELECT is((SELECT count(*) FROM crm.job WHERE entity_id = 9), 0::bigint,
	'a robocall with no robot after it holds nothing');

-- ---------- names checked at save ----------
SELECT crm.add_pipeline('deal', 'Partners') AS partners \gset
SELECT crm.add_stage(:partners, 'new', 'New partner');
SELECT crm.add_stage(:partners, 'won', 'Signed', 'success');
SELECT throws_ok(format($$SELECT crm.add_robot(crm.stage('deal', 'new'), 'change_stage', '{"stage": %s}')$$,
		crm.stage('deal', 'won', :partners)),
	'42704', 'parameter "stage" names no stage of the robot''s pipeline',
	'change_stage refuses a stage of another pipeline');
SELECT lives_ok(format($$SELECT crm.add_robot(crm.stage('deal', 'new'), 'change_stage', '{"stage": %s}')$$,
		crm.stage('deal', 'won')),
	'change_stage takes a stage id of the robot''s pipeline');
SELECT throws_ok($$SELECT crm.add_robot(crm.stage('deal', 'new'), 'change_pipeline', '{"pipeline": "Nowhere"}')$$,
	'42704', 'deal pipeline "Nowhere" does not exist', 'change_pipeline: unknown pipeline');
SELECT throws_ok($$SELECT crm.add_robot(crm.stage('deal', 'new'), 'change_pipeline', '{"pipeline": "Partners", "stage": "limbo"}')$$,
	'42704', 'deal pipeline "Partners" has no stage "limbo"', 'change_pipeline: unknown stage of the pipeline');
SELECT lives_ok($$SELECT crm.add_robot(crm.stage('deal', 'new'), 'change_pipeline', '{"pipeline": "Partners", "stage": "won"}')$$,
	'change_pipeline: a pipeline by name and a stage of it');
SELECT throws_ok($$SELECT crm.add_robot(crm.stage('deal', 'new'), 'copy_deal', '{"pipeline": 424242}')$$,
	'42704', 'deal pipeline "424242" does not exist', 'copy_deal: unknown pipeline id');
SELECT throws_ok($$SELECT crm.add_robot(crm.stage('lead', 'new'), 'convert', '{"to": "contact", "pipeline": "Partners"}')$$,
	'22023', 'parameter "pipeline" does not apply to a conversion to contact', 'convert: no pipeline for contacts');
SELECT throws_ok($$SELECT crm.add_robot(crm.stage('deal', 'new'), 'convert', '{"to": "quote", "pipeline": "Partners"}')$$,
	'42704', 'quote pipeline "Partners" does not exist', 'convert: the pipeline is of the target type');
SELECT throws_ok($$SELECT crm.add_robot(crm.stage('deal', 'new'), 'create_document', '{"template": "Contract"}')$$,
	'42704', 'document template "Contract" does not exist', 'create_document: unknown template');
SELECT throws_ok($$SELECT crm.add_robot(crm.stage('deal', 'new'), 'webhook', '{"url": "http://127.0.0.1/x", "provider": "hooks"}')$$,
	'42704', 'webhook provider "hooks" does not exist', 'webhook: unknown provider');
SELECT throws_ok($$SELECT crm.add_robot(crm.stage('deal', 'new'), 'send_sms', '{"text": "hi", "recipients": "+33611111111", "provider": "hooks"}')$$,
	'42704', 'sms provider "hooks" does not exist', 'send_sms: unknown provider');
SELECT throws_ok($$SELECT crm.add_robot(crm.stage('deal', 'new'), 'wait', '{"for": "1 day"}', delay => '{"after": "1 hour"}')$$,
	'22023', 'action "wait" takes no delay', 'wait takes no delay');
SELECT throws_ok($$SELECT crm.add_robot(crm.stage('deal', 'new'), 'control', '{"after": "1 day"}', delay => '{"after": "1 hour"}')$$,
	'22023', 'action "control" takes no delay', 'control takes no delay');
SELECT is((SELECT count(*) FROM crm.robot WHERE stage_id = crm.stage('deal', 'new')), 2::bigint,
	'only the two valid definitions were stored');

-- ---------- a stage of the item's pipeline, checked again when the robot runs ----------
SELECT crm.add_robot(crm.stage('deal', 'new', :partners), 'change_stage',
	format('{"stage": %s}', crm.stage('deal', 'won', :partners))::jsonb);
INSERT INTO crm.deal (id, title, responsible_id, stage_id) VALUES (7, 'Partner', 2, crm.stage('deal', 'new', :partners));
SELECT is((SELECT stage_id FROM crm.deal WHERE id = 7), crm.stage('deal', 'won', :partners),
	'change_stage by id moves the item within its pipeline');

SELECT * FROM finish();
ROLLBACK;
