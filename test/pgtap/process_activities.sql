-- The process-only activities of seed 000: control (notifies now),
-- user_notification, social_message, feed_message, calendar_event,
-- absence, email; their save-time checks; the catalogue crm.activity_types.
BEGIN;
CREATE EXTENSION crm_automation;
SELECT plan(30);

INSERT INTO crm.department (id, name) VALUES (1, 'Sales');
INSERT INTO crm.user (id, name, email, department_id) VALUES (1, 'Mia', 'mia@example.com', 1),
	(2, 'Sam', 'sam@example.com', 1), (3, 'Ada', 'ada@example.com', 1);
UPDATE crm.department SET head_id = 1;
INSERT INTO crm.deal (id, title, responsible_id, amount) VALUES (1, 'Chairs', 2, 8000);
INSERT INTO crm.contact (id, name, responsible_id) VALUES (1, 'Bob', 2);

SELECT crm.add_process_template('deal', 'All', $${"activities": [
	{"type": "control", "text": "Look at {{title}}", "recipients": [3]},
	{"type": "user_notification", "to": [3], "text": "[b]{{title}}[/b] moved", "email_text": "Chairs moved", "kind": "system"},
	{"type": "user_notification", "to": [1], "text": "From Sam", "sender": [2]},
	{"type": "social_message", "to": [1, 3], "text": "Thanks for {{title}}"},
	{"type": "feed_message", "name": "post", "sender": [2], "recipients": [1], "title": "Won {{title}}", "text": "[i]great[/i]"},
	{"type": "calendar_event", "name": "ev", "params": {"name": "Visit {{title}}", "from": "2030-01-02 10:00+00", "to": "2030-01-02 11:00+00", "location": "Lyon"}},
	{"type": "calendar_event", "params": {"name": "Team", "calendar_type": "group", "owner_id": 7, "section_id": "sales", "from": "2030-01-03 10:00+00", "to": "2030-01-03 11:00+00"}},
	{"type": "absence", "params": {"user": [3], "name": "Trip to {{title}} client", "description": "visit", "from": "2030-02-01 00:00+00", "to": "2030-02-03 00:00+00", "absence_type": "business_trip", "location": "Lyon"}},
	{"type": "email", "to": ["client@example.com"], "subject": "About {{title}}", "body": "<p>Hello</p>", "format": "html", "via": "mail_system"}
]}$$) IS NOT NULL AS t;
SELECT crm.start_process('All', 'deal', 1) AS i1 \gset

SELECT is((SELECT status || coalesce(': ' || error, '') FROM crm.process_instance WHERE id = :i1), 'completed', 'every activity ran');
SELECT results_eq($$SELECT user_id, kind, text FROM crm.notification WHERE text = 'Look at Chairs' ORDER BY user_id$$,
	$$VALUES (1::bigint, 'system', 'Look at Chairs'), (3::bigint, 'system', 'Look at Chairs')$$,
	'control notifies the supervisor of the responsible (Mia) and the extra recipients, now');
SELECT results_eq($$SELECT user_id, sender_id, kind, email_text FROM crm.notification WHERE text = '[b]Chairs[/b] moved'$$,
	$$VALUES (3::bigint, NULL::bigint, 'system', 'Chairs moved')$$,
	'user_notification: system, BB-code kept, email_text for when the user is offline');
SELECT results_eq($$SELECT user_id, sender_id, kind FROM crm.notification WHERE text = 'From Sam'$$,
	$$VALUES (1::bigint, 2::bigint, 'personal')$$, 'a personal notification from its sender');
SELECT results_eq($$SELECT user_id, sender_id, kind, email_text FROM crm.notification WHERE text = 'Thanks for Chairs' ORDER BY user_id$$,
	$$VALUES (1::bigint, 2::bigint, 'personal', 'Thanks for Chairs'), (3::bigint, 2::bigint, 'personal', 'Thanks for Chairs')$$,
	'social_message: from the responsible by default, by e-mail to those offline');
SELECT results_eq($$SELECT author_id, title, text, to_all, process_instance_id FROM crm.feed_post$$,
	$$VALUES (2::bigint, 'Won Chairs', '[i]great[/i]', false, $$ || :i1 || $$::bigint)$$, 'feed_message posts, BB-code kept');
SELECT results_eq($$SELECT user_id FROM crm.feed_post_recipient$$, $$VALUES (1::bigint)$$, 'to its recipients');
SELECT results_eq($$SELECT owner_id, calendar_type, group_id, section, title, location, start_at, end_at, entity_id, process_instance_id
					 FROM crm.calendar_event ORDER BY start_at$$,
	$$VALUES (2::bigint, 'user', NULL::bigint, NULL::text, 'Visit Chairs', 'Lyon', '2030-01-02 10:00+00'::timestamptz, '2030-01-02 11:00+00'::timestamptz, 1::bigint, $$ || :i1 || $$::bigint),
			 (2::bigint, 'group', 7::bigint, 'sales', 'Team', NULL, '2030-01-03 10:00+00', '2030-01-03 11:00+00', 1, $$ || :i1 || $$)$$,
	'calendar_event: in the responsible''s calendar, or a group''s');
SELECT results_eq($$SELECT user_id, type, name, description, location, start_at, end_at, process_instance_id FROM crm.absence$$,
	$$VALUES (3::bigint, 'business_trip', 'Trip to Chairs client', 'visit', 'Lyon', '2030-02-01 00:00+00'::timestamptz, '2030-02-03 00:00+00'::timestamptz, $$ || :i1 || $$::bigint)$$,
	'absence: a row of the absence chart with name, description and location');
SELECT results_eq($$SELECT channel, payload->'to', payload->>'subject', (payload->>'html')::boolean, process_instance_id FROM crm.outbox WHERE payload->>'subject' = 'About Chairs'$$,
	$$VALUES ('email', '["client@example.com"]'::jsonb, 'About Chairs', true, $$ || :i1 || $$::bigint)$$,
	'email: queued in the outbox, format html');
SELECT results_eq($$SELECT type, outputs ?| ARRAY['event_id', 'absence_id'] FROM crm.process_log WHERE instance_id = $$ || :i1 || $$ AND type IN ('calendar_event', 'absence') ORDER BY id$$,
	$$VALUES ('calendar_event', true), ('calendar_event', true), ('absence', true)$$, 'their outputs are in the trace');

-- control without a supervisor or recipients fails the instance, naming why.
UPDATE crm.department SET head_id = NULL;
SELECT crm.add_process_template('deal', 'Alone', '{"activities": [{"type": "control", "text": "hello"}]}') IS NOT NULL AS t;
SELECT crm.start_process('Alone', 'deal', 1) AS i2 \gset
SELECT is((SELECT error FROM crm.process_instance WHERE id = :i2), 'the responsible user has no supervisor to notify', 'no supervisor: the activity fails');

-- Save-time checks.
SELECT throws_ok($$SELECT crm.add_process_template('contact', 'C', '{"activities": [{"type": "control", "text": "x"}]}')$$,
	'0A000', 'activity "control" is not available for contact documents', 'control works on deals and leads only');
SELECT throws_ok($$SELECT crm.add_process_template('deal', 'U', '{"activities": [{"type": "user_notification", "text": "x"}]}')$$,
	'22023', NULL, 'user_notification needs "to"');
SELECT throws_ok($$SELECT crm.add_process_template('deal', 'K', '{"activities": [{"type": "user_notification", "to": [1], "text": "x", "kind": "loud"}]}')$$,
	'22023', NULL, 'an unknown kind');
SELECT throws_ok($$SELECT crm.add_process_template('deal', 'A', '{"activities": [{"type": "absence", "params": {"name": "x", "from": "2030-01-01", "to": "2030-01-02", "absence_type": "party"}}]}')$$,
	'22023', NULL, 'an unknown absence type');
SELECT throws_ok($$SELECT crm.add_process_template('deal', 'E', '{"activities": [{"type": "email", "to": ["a@example.com"], "subject": "s", "body": "b", "charset": "koi8-r"}]}')$$,
	'22023', NULL, 'a charset that is not converted yet is refused at save');
SELECT throws_ok($$SELECT crm.add_process_template('deal', 'O', '{"activities": [{"type": "openline_message", "text": "x"}]}')$$,
	'0A000', 'activity type "openline_message" is not supported yet', 'openline_message is refused');
SELECT throws_ok($$SELECT crm.add_process_template('deal', 'O2', '{"activities": [{"type": "openline_message", "text": "x"}]}')$$,
	'0A000', NULL, 'naming the nearest alternative');
SELECT is((SELECT count(*) FROM crm.process_template WHERE name IN ('C', 'U', 'K', 'A', 'E', 'O', 'O2')), 0::bigint, 'nothing stored');
-- Robots cannot use the process-only activities.
SELECT throws_ok($$SELECT crm.add_robot(crm.stage('deal', 'new'), 'absence', '{"name": "x"}')$$,
	'22023', NULL, 'absence is not a robot action');

-- A bad period at run time fails the activity alone.
SELECT crm.add_process_template('deal', 'Backwards', '{"activities": [{"type": "absence", "params": {"name": "x", "from": "2030-01-02 00:00+00", "to": "2030-01-01 00:00+00"}}]}') IS NOT NULL AS t;
SELECT crm.start_process('Backwards', 'deal', 1) AS i3 \gset
SELECT alike((SELECT error FROM crm.process_instance WHERE id = :i3), '"to" (%) is before "from" (%)', 'to before from fails the instance');

-- A personal notification without a sender, a group event without its group:
-- the activity fails, saying what is missing.
SELECT crm.add_process_template('deal', 'Personal', '{"activities": [{"type": "user_notification", "to": [1], "text": "x", "kind": "personal"}]}') IS NOT NULL AS t;
SELECT crm.start_process('Personal', 'deal', 1) AS i4 \gset
SELECT is((SELECT error FROM crm.process_instance WHERE id = :i4), 'a personal notification needs "sender"', 'personal without sender fails');
SELECT crm.add_process_template('deal', 'Group', '{"activities": [{"type": "calendar_event", "params": {"name": "x", "calendar_type": "group", "from": "2030-01-01 10:00+00", "to": "2030-01-01 11:00+00"}}]}') IS NOT NULL AS t;
SELECT crm.start_process('Group', 'deal', 1) AS i5 \gset
SELECT is((SELECT error FROM crm.process_instance WHERE id = :i5), 'a group calendar event needs "owner_id", the group', 'a group event without owner_id fails');

-- The catalogue.
SELECT results_eq($$SELECT kind, in_robots, in_processes FROM crm.activity_types WHERE type = 'absence'$$,
	$$VALUES ('process_only', false, true)$$, 'absence: process only');
SELECT results_eq($$SELECT kind, in_processes FROM crm.activity_types WHERE type = 'control' ORDER BY kind$$,
	$$VALUES ('action', false), ('process_only', true)$$, 'two controls: the robot one, the process one');
SELECT is((SELECT document_types FROM crm.activity_types WHERE type = 'control' AND kind = 'process_only'), 'deal, lead', 'with its document types');
SELECT ok((SELECT count(*) FROM crm.activity_types WHERE kind = 'flow') = 6
		  AND (SELECT count(*) FROM crm.activity_types WHERE kind = 'action') = (SELECT count(*) FROM crm.robot_actions),
	'every robot action and the flow activities are listed');
SELECT alike((SELECT note FROM crm.activity_types WHERE type = 'openline_message'), 'not supported yet: %', 'what is not supported says so');
SET LOCAL ROLE crm_user;
SELECT ok((SELECT count(*) > 30 FROM crm.activity_types), 'crm_user reads the catalogue');
RESET ROLE;

SELECT * FROM finish();
ROLLBACK;
