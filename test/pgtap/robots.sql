-- Robots: error codes of bad definitions, nothing stored on error, loops,
-- depth, re-entry, privileges.
BEGIN;
CREATE EXTENSION crm_automation;
SELECT plan(41);

INSERT INTO crm.department (id, name) VALUES (1, 'Sales');
INSERT INTO crm.user (id, name, email, department_id) VALUES (1, 'Mia', 'mia@example.com', 1), (2, 'Sam', 'sam@example.com', 1);
UPDATE crm.department SET head_id = 1;

-- Bad definitions: SQLSTATE and message.
SELECT throws_ok($$SELECT crm.add_robot(crm.stage('deal', 'new'), 'teleport', '{}')$$,
	'22023', 'unknown action "teleport"', 'unknown action');
SELECT throws_ok($$SELECT crm.add_robot(crm.stage('deal', 'new'), 'notify', '{"text": "hi"}')$$,
	'22023', 'missing required parameter "recipients" for action "notify"', 'missing parameter');
SELECT throws_ok($$SELECT crm.add_robot(crm.stage('deal', 'new'), 'notify', '{"text": "hi", "recipients": 1, "x": 1}')$$,
	'22023', 'unknown parameter "x" for action "notify"', 'unknown parameter');
SELECT throws_ok($$SELECT crm.add_robot(crm.stage('deal', 'new'), 'create_activity', '{"subject": "s", "important": "yes"}')$$,
	'22023', 'parameter "important" must be a boolean, not a string', 'wrong type');
SELECT throws_ok($$SELECT crm.add_robot(crm.stage('deal', 'new'), 'send_sms', jsonb_build_object('text', repeat('é', 201), 'recipients', '+33611111111'))$$,
	'22001', 'parameter "text" is 201 characters long; the limit is 200', 'SMS limit counts characters');
SELECT throws_ok($$SELECT crm.add_robot(crm.stage('deal', 'new'), 'add_comment', '{"text": "{{no_such_field}}"}')$$,
	'42703', NULL, 'unknown field');
SELECT throws_ok($$SELECT crm.add_robot(crm.stage('deal', 'new'), 'add_comment', '{"text": "=1 +"}')$$,
	'42601', NULL, 'bad expression');
SELECT throws_ok($$SELECT crm.add_robot(crm.stage('deal', 'new'), 'add_comment', '{"text": "x"}', delay => '{"soon": true}')$$,
	'22023', 'unknown delay key "soon"', 'bad delay');
SELECT throws_ok($$SELECT crm.add_robot(crm.stage('deal', 'new'), 'add_comment', '{"text": "x"}', delay => '{"at": "close_date", "work_time": true}')$$,
	'0A000', 'delay.work_time applies to "after" delays, not to "at"', 'work_time on a date-field delay refused');
SELECT throws_ok($$SELECT crm.add_robot(crm.stage('deal', 'new'), 'change_stage', '{"stage": "nowhere"}')$$,
	'42704', 'parameter "stage" names no stage of the robot''s pipeline', 'unknown target stage');
SELECT throws_ok($$SELECT crm.add_robot(crm.stage('lead', 'new'), 'copy_deal', '{}')$$,
	'0A000', 'action "copy_deal" is not available for lead stages', 'deal-only action');
SELECT throws_ok($$SELECT crm.add_robot(42424242, 'write_log', '{"text": "x"}')$$,
	'42704', 'stage 42424242 does not exist', 'unknown stage');
-- Parameters that name a custom field: it must exist and be of the right type.
SELECT crm.add_field('deal', 'UF_VISIT', 'Visit', 'booking') IS NOT NULL AS booking_field;
SELECT crm.add_field('deal', 'UF_NOTE', 'Note') IS NOT NULL AS text_field;
SELECT crm.add_field('deal', 'UF_DOCS', 'Documents', 'file', true) IS NOT NULL AS file_field;
SELECT throws_ok($$SELECT crm.add_robot(crm.stage('deal', 'new'), 'cancel_reservation', '{}')$$,
	'22023', 'missing required parameter "field" for action "cancel_reservation"', 'cancel_reservation needs a field');
SELECT throws_ok($$SELECT crm.add_robot(crm.stage('deal', 'new'), 'cancel_reservation', '{"field": "UF_VISIT", "service": "Visit"}')$$,
	'22023', 'unknown parameter "service" for action "cancel_reservation"', 'cancel_reservation takes only the field');
SELECT throws_ok($$SELECT crm.add_robot(crm.stage('deal', 'new'), 'cancel_reservation', '{"field": "UF_NOPE"}')$$,
	'42703', 'parameter "field" names an unknown field "UF_NOPE"', 'unknown booking field');
SELECT throws_ok($$SELECT crm.add_robot(crm.stage('deal', 'new'), 'cancel_reservation', '{"field": "UF_NOTE"}')$$,
	'42809', 'parameter "field" names field "UF_NOTE" of type text, not booking', 'a field that holds no bookings');
SELECT throws_ok($$SELECT crm.add_robot(crm.stage('deal', 'new'), 'reserve_resource', '{"service": "s", "start": "tomorrow", "duration": "1 hour", "employees": 1, "field": 7}')$$,
	'22023', 'parameter "field" must be the code of a booking field, not a number', 'a field is named by its code');
SELECT throws_ok($$SELECT crm.add_robot(crm.stage('deal', 'new'), 'feed_post', '{"title": "t", "text": "x", "files": ["{{UF_NOTE}}"]}')$$,
	'42809', 'parameter "files" names field "UF_NOTE" of type text, not file', 'files from a field that is not a file field');
SELECT throws_ok($$SELECT crm.add_robot(crm.stage('deal', 'new'), 'send_email', '{"to": 1, "subject": "s", "body": "b", "attachments": "{{UF_NOPE}}"}')$$,
	'42703', 'parameter "attachments" names an unknown field "UF_NOPE"', 'attachments from an unknown field');
SELECT throws_ok($$SELECT crm.add_robot(crm.stage('deal', 'new'), 'create_task', '{"title": "t", "responsible": 1, "files": "see {{UF_DOCS}}"}')$$,
	'22023', 'parameter "files" has an invalid file reference "see {{UF_DOCS}}"', 'a file list holds ids or one field per element');
SELECT is((SELECT count(*) FROM crm.robot), 0::bigint, 'no failed definition was stored');

-- A robot loop is stopped with a log entry and the statement succeeds.
SELECT crm.add_robot(crm.stage('deal', 'preparation'), 'change_stage', '{"stage": "executing"}');
SELECT crm.add_robot(crm.stage('deal', 'executing'), 'change_stage', '{"stage": "preparation"}');
INSERT INTO crm.deal (id, title, responsible_id) VALUES (101, 'Loop', 2);
SELECT lives_ok($$UPDATE crm.deal SET stage_id = crm.stage('deal', 'preparation') WHERE id = 101$$, 'a loop does not fail the statement');
SELECT is((SELECT count(*) FROM crm.robot_log WHERE entity_id = 101 AND status = 'loop_stopped'), 1::bigint, 'the cycle is logged once');
SELECT ok((SELECT detail->>'cycle' LIKE '%robot%deal 101%' FROM crm.robot_log WHERE entity_id = 101 AND status = 'loop_stopped'),
	'the log names the cycle');

-- A later, separate statement is a new chain: the same robots run again.
SELECT lives_ok($$UPDATE crm.deal SET stage_id = crm.stage('deal', 'new') WHERE id = 101$$, 'leave');
SELECT lives_ok($$UPDATE crm.deal SET stage_id = crm.stage('deal', 'preparation') WHERE id = 101$$, 're-enter');
SELECT is((SELECT count(*) FROM crm.robot_log WHERE entity_id = 101 AND status = 'done'), 4::bigint,
	'legitimate re-entry runs the robots again');

-- crm.max_depth bounds long non-cyclic chains.
SET crm.max_depth = 1;
INSERT INTO crm.deal (id, title, responsible_id) VALUES (102, 'Shallow', 2);
UPDATE crm.deal SET stage_id = crm.stage('deal', 'preparation') WHERE id = 102;
SELECT ok((SELECT bool_or(detail->>'cycle' LIKE '%crm.max_depth%') FROM crm.robot_log WHERE entity_id = 102),
	'the depth limit stops the chain with a log entry');
RESET crm.max_depth;

-- An application role with crm_user moves a deal; robots still write the
-- log and the outbox, as the extension's owner.
SELECT crm.add_robot(crm.stage('deal', 'won'), 'webhook', '{"url": "https://example.com/h"}');
INSERT INTO crm.deal (id, title, responsible_id) VALUES (103, 'App', 2);
CREATE ROLE crm_test_app;
GRANT crm_user TO crm_test_app;
SET ROLE crm_test_app;
SELECT lives_ok($$UPDATE crm.deal SET stage_id = crm.stage('deal', 'won') WHERE id = 103$$, 'crm_user moves a deal');
SELECT throws_ok($$SELECT * FROM crm.outbox$$, '42501', NULL, 'crm_user cannot read the outbox');
RESET ROLE;
SELECT is((SELECT count(*) FROM crm.outbox WHERE entity_id = 103), 1::bigint, 'the robot wrote the outbox message');
SELECT is((SELECT status FROM crm.robot_log WHERE entity_id = 103), 'done', 'and logged its run');

-- Leaving the stage completes the activities marked auto_complete.
SELECT crm.add_robot(crm.stage('deal', 'prepayment_invoice'), 'create_activity',
	'{"subject": "Chase the payment", "auto_complete": true}');
SELECT crm.add_robot(crm.stage('deal', 'prepayment_invoice'), 'create_activity', '{"subject": "Keep open"}');
INSERT INTO crm.deal (id, title, responsible_id, stage_id) VALUES (104, 'Pay', 2, crm.stage('deal', 'prepayment_invoice'));
UPDATE crm.deal SET stage_id = crm.stage('deal', 'executing') WHERE id = 104;
SELECT is((SELECT completed FROM crm.activity WHERE entity_id = 104 AND subject = 'Chase the payment'), true,
	'an auto_complete activity is completed when the item leaves the stage');
SELECT is((SELECT completed FROM crm.activity WHERE entity_id = 104 AND subject = 'Keep open'), false,
	'other activities stay open');

-- A bulk statement runs every robot for every row.
SELECT crm.add_robot(crm.stage('deal', 'final_invoice'), 'add_comment', '{"text": "Invoice {{title}}"}');
SELECT crm.add_robot(crm.stage('deal', 'final_invoice'), 'write_log', '{"text": "bulk {{id}}"}');
INSERT INTO crm.deal (id, title, responsible_id) SELECT 1000 + g, 'bulk ' || g, 2 FROM generate_series(1, 2000) g;
UPDATE crm.deal SET stage_id = crm.stage('deal', 'final_invoice') WHERE title LIKE 'bulk %';
SELECT is((SELECT count(*) FROM crm.timeline_comment WHERE text LIKE 'Invoice bulk %'), 2000::bigint,
	'one UPDATE over 2000 deals: every row got its comment');
SELECT is((SELECT count(*) FROM crm.history h JOIN crm.deal d ON d.id = h.entity_id
			WHERE d.title LIKE 'bulk %' AND h.text = 'bulk ' || d.id), 2000::bigint,
	'and every row its own rendered history entry');

-- A lead made for an existing client by create_repeat_lead is a repeated lead.
SELECT crm.add_robot(crm.stage('deal', 'lost'), 'create_repeat_lead', '{}');
INSERT INTO crm.deal (id, title, responsible_id) VALUES (105, 'Again', 2);
UPDATE crm.deal SET stage_id = crm.stage('deal', 'lost') WHERE id = 105;
SELECT is((SELECT is_repeated FROM crm.lead WHERE title = 'Repeat: Again'), true, 'a repeat lead is marked repeated');

-- The exceptions list keys phones by their digits and a leading +.
SELECT is(crm.phone_key(' +33 (6) 11-22.33'), '+336112233', 'phone_key keeps a leading + and the digits');
SELECT throws_ok($$INSERT INTO crm.exception_list (type, value) VALUES ('phone', 'n/a')$$,
	'23514', NULL, 'a phone without digits is refused');
INSERT INTO crm.exception_list (type, value) VALUES ('phone', '+1 555 0100');
SELECT throws_ok($$INSERT INTO crm.exception_list (type, value) VALUES ('phone', '+15550100')$$,
	'23505', NULL, 'the same number written otherwise is already listed');
SELECT is((SELECT count(*) FROM crm.exception_list), 1::bigint, 'and is not stored twice');

SELECT * FROM finish();
ROLLBACK;
