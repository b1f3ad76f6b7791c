-- The process-only activities of seed 000: control (notifies now),
-- user_notification, social_message, feed_message, calendar_event,
-- absence, email (and its charset), openline_message; their save-time
-- checks; the catalogue crm.activity_types.
BEGIN;
CREATE EXTENSION crm_automation;
SELECT plan(60);

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
SELECT throws_ok($$SELECT crm.add_process_template('deal', 'E', '{"activities": [{"type": "email", "to": ["a@example.com"], "subject": "s", "body": "b", "charset": "klingon"}]}')$$,
	'22023', 'parameter "charset" names an unknown charset "klingon"', 'an unknown charset is refused at save');
SELECT throws_ok($$SELECT crm.add_process_template('deal', 'E2', '{"activities": [{"type": "email", "to": ["a@example.com"], "subject": "s", "body": "b", "charset": "SQL_ASCII"}]}')$$,
	'22023', NULL, 'SQL_ASCII is not a charset');
SELECT is((SELECT count(*) FROM crm.process_template WHERE name IN ('C', 'U', 'K', 'A', 'E', 'E2')), 0::bigint, 'nothing stored');
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

-- email's charset: any name of an encoding PostgreSQL knows, kept by
-- PostgreSQL's name for the worker (which converts subject and body);
-- utf-8 by default.  An unknown one from a template fails the activity.
SELECT crm.add_process_template('deal', 'Charsets', $${"variables": {"cs": {"type": "text", "default": "latin1"}},
 "activities": [
	{"type": "email", "to": ["a@example.com"], "subject": "cs1", "body": "b", "charset": "iso-8859-1"},
	{"type": "email", "to": ["a@example.com"], "subject": "cs2", "body": "b", "charset": "windows-1252"},
	{"type": "email", "to": ["a@example.com"], "subject": "cs3", "body": "b", "charset": "koi8-r"},
	{"type": "email", "to": ["a@example.com"], "subject": "cs4", "body": "b", "charset": "{=Variable:cs}"},
	{"type": "email", "to": ["a@example.com"], "subject": "cs5", "body": "b", "charset": "EUC_JP"},
	{"type": "email", "to": ["a@example.com"], "subject": "cs6", "body": "b"}
]}$$) IS NOT NULL AS t;
SELECT crm.start_process('Charsets', 'deal', 1) AS ic \gset
SELECT results_eq($$SELECT payload->>'subject', payload->>'charset' FROM crm.outbox WHERE process_instance_id = $$ || :ic || $$ ORDER BY id$$,
	$$VALUES ('cs1', 'LATIN1'), ('cs2', 'WIN1252'), ('cs3', 'KOI8R'), ('cs4', 'LATIN1'), ('cs5', 'EUC_JP'), ('cs6', 'UTF8')$$,
	'charsets by any of their names, utf-8 by default');
SELECT crm.add_process_template('deal', 'BadCharset', $${"variables": {"cs": {"type": "text", "default": "ebcdic"}},
 "activities": [{"type": "email", "to": ["a@example.com"], "subject": "s", "body": "b", "charset": "{=Variable:cs}"}]}$$) IS NOT NULL AS t;
SELECT crm.start_process('BadCharset', 'deal', 1) AS ibc \gset
SELECT is((SELECT status || ': ' || error FROM crm.process_instance WHERE id = :ibc), 'failed: unknown charset "ebcdic"',
	'a rendered charset that is unknown fails the activity, nothing queued');

-- openline_message: an outgoing openline activity on the document, and,
-- unless hidden, a message on channel openline for the channel connector
-- with the client's address from the latest incoming openline activity.
SELECT crm.add_provider('openline', 'connector', '{"url": "https://connector.example.com/in"}',
						secret => 'whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw') IS NOT NULL AS t;
INSERT INTO crm.activity (entity_type, entity_id, type, direction, subject, remote_address, created_at)
VALUES ('deal', 1, 'openline', 'incoming', 'old', 'telegram:41', now() - interval '1 day'),
	   ('deal', 1, 'openline', 'incoming', 'Hi', 'telegram:42', now() - interval '1 hour');
INSERT INTO crm.drive_file (id, name, content_type, content) VALUES (501, 'offer.pdf', 'application/pdf', '\x25504446');
INSERT INTO crm.document (id, title, body, entity_type, entity_id) VALUES (601, 'Invoice 7', '<p>7</p>', 'deal', 1);
SELECT crm.add_process_template('deal', 'Chat', $${"activities": [
	{"type": "openline_message", "name": "m", "text": "Hello {{title}}\r\nline 2 \"quoted\"", "attachments": [501], "provider": "connector"},
	{"type": "openline_message", "name": "h", "text": "note for us", "hidden": true},
	{"type": "openline_message", "name": "d", "text": "your invoice", "attachment_type": "document", "attachments": ["601"]}
]}$$) IS NOT NULL AS t;
SELECT crm.start_process('Chat', 'deal', 1) AS io \gset
SELECT is((SELECT status || coalesce(': ' || error, '') FROM crm.process_instance WHERE id = :io), 'completed', 'the open-channel messages ran');
SELECT results_eq($$SELECT description, direction, status, completed, remote_address, responsible_id, subject
					 FROM crm.activity WHERE type = 'openline' AND process_instance_id = $$ || :io || $$ ORDER BY id$$,
	$$VALUES (E'Hello Chairs\r\nline 2 "quoted"', 'outgoing', 'completed', true, 'telegram:42', 2::bigint, 'Open channel message'),
			 ('note for us', 'outgoing', 'completed', true, 'telegram:42', 2::bigint, 'Open channel message (hidden, not sent to the client)'),
			 ('your invoice', 'outgoing', 'completed', true, 'telegram:42', 2::bigint, 'Open channel message')$$,
	'each is an outgoing openline activity of the instance, the hidden one too');
SELECT results_eq($$SELECT channel, provider_id IS NOT NULL, payload->>'text', payload->'client'->>'address', payload->>'entity_type',
						   (payload->>'entity_id')::bigint, payload->>'attachment_type', payload->'attachments'
					  FROM crm.outbox WHERE channel = 'openline' ORDER BY id$$,
	$$VALUES ('openline', true, E'Hello Chairs\r\nline 2 "quoted"', 'telegram:42', 'deal', 1::bigint, 'drive',
			  '[{"id": 501, "name": "offer.pdf", "size": 4, "content_type": "application/pdf"}]'::jsonb),
			 ('openline', false, 'your invoice', 'telegram:42', 'deal', 1, 'document',
			  '[{"id": 601, "name": "Invoice 7", "size": 8, "content_type": "text/html"}]')$$,
	'queued for the connector with the client, the text as written (CR/LF too) and the attachments; the hidden one is not');
SELECT ok((SELECT bool_and((payload->>'activity_id')::bigint = a.id AND o.process_instance_id = :io)
			 FROM crm.outbox o JOIN crm.activity a ON a.description = o.payload->>'text' AND a.direction = 'outgoing'
			WHERE o.channel = 'openline'), 'each message names its activity and instance');
SELECT results_eq($$SELECT name, outputs ? 'activity_id', outputs ? 'message_id' FROM crm.process_log
					 WHERE instance_id = $$ || :io || $$ ORDER BY id$$,
	$$VALUES ('m', true, true), ('h', true, false), ('d', true, true)$$, 'outputs: activity_id, and message_id when sent');
-- The claim gives the connector the payload as the body, signed with the provider's secret.
SELECT results_eq($$SELECT url, method, body::jsonb ->> 'text', secret, error FROM crm._claim_messages(1000, '1 minute')
					 WHERE channel = 'openline' ORDER BY id$$,
	$$VALUES ('https://connector.example.com/in', 'POST', E'Hello Chairs\r\nline 2 "quoted"', 'whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw', NULL::text),
			 ('https://connector.example.com/in', 'POST', 'your invoice', 'whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw', NULL)$$,
	'the claim: the connector''s url, the payload as the body, the signing secret');
-- Without an incoming openline activity the message goes without a client.
INSERT INTO crm.deal (id, title, responsible_id) VALUES (2, 'Tables', 2);
SELECT crm.start_process('Chat', 'deal', 2) AS io2 \gset
SELECT results_eq($$SELECT payload ? 'client' FROM crm.outbox WHERE channel = 'openline' AND entity_id = 2 ORDER BY id$$,
	$$VALUES (false), (false)$$, 'no client known: none in the payload');

-- Run-time failures fail the activity alone: a text too long or empty
-- once rendered, an attachment that does not exist.
UPDATE crm.deal SET title = repeat('x', 20001) WHERE id = 2;
SELECT crm.add_process_template('deal', 'Long', '{"activities": [{"type": "openline_message", "text": "{{title}}"}]}') IS NOT NULL AS t;
SELECT crm.start_process('Long', 'deal', 2) AS il \gset
SELECT is((SELECT error FROM crm.process_instance WHERE id = :il),
	'parameter "text" is 20001 characters long once rendered; the limit is 20000', 'a huge text fails the activity');
SELECT crm.add_process_template('deal', 'Empty', '{"variables": {"v": {"type": "text", "default": ""}}, "activities": [{"type": "openline_message", "text": "{=Variable:v}"}]}') IS NOT NULL AS t;
SELECT crm.start_process('Empty', 'deal', 1) AS ie \gset
SELECT is((SELECT error FROM crm.process_instance WHERE id = :ie), 'the open-channel message is empty once rendered', 'an empty text fails the activity');
SELECT crm.add_process_template('deal', 'NoFile', '{"activities": [{"type": "openline_message", "text": "x", "attachments": [999]}]}') IS NOT NULL AS t;
SELECT crm.start_process('NoFile', 'deal', 1) AS inf \gset
SELECT is((SELECT error FROM crm.process_instance WHERE id = :inf), 'attachment 999 is not a drive file (crm.drive_file)', 'a missing attachment fails the activity');
SELECT is((SELECT count(*) FROM crm.activity WHERE process_instance_id IN (:il, :ie, :inf)), 0::bigint, 'and records nothing');

-- Save-time checks of openline_message: nothing stored.
SELECT throws_ok($$SELECT crm.add_process_template('deal', 'O1', '{"activities": [{"type": "openline_message"}]}')$$,
	'22023', 'missing required parameter "text" for action "openline_message"', 'text is required');
SELECT throws_ok($$SELECT crm.add_process_template('deal', 'O2', '{"activities": [{"type": "openline_message", "text": null}]}')$$,
	'22004', NULL, 'text must not be null');
SELECT throws_ok($$SELECT crm.add_process_template('deal', 'O3', '{"activities": [{"type": "openline_message", "text": "x", "hidden": "yes"}]}')$$,
	'22023', 'parameter "hidden" must be a boolean, not a string', 'hidden is a boolean');
SELECT throws_ok($$SELECT crm.add_process_template('deal', 'O4', '{"activities": [{"type": "openline_message", "text": "x", "attachment_type": "disk"}]}')$$,
	'22023', NULL, 'attachment_type is document or drive');
SELECT throws_ok($$SELECT crm.add_process_template('deal', 'O5', '{"activities": [{"type": "openline_message", "text": "x", "attachments": ["a.pdf"]}]}')$$,
	'22023', NULL, 'attachments are ids or a file field');
SELECT throws_ok($$SELECT crm.add_process_template('deal', 'O6', '{"activities": [{"type": "openline_message", "text": "x", "provider": "nope"}]}')$$,
	'42704', 'openline provider "nope" does not exist', 'a provider that does not exist');
SELECT throws_ok($$SELECT crm.add_process_template('deal', 'O7', '{"activities": [{"type": "openline_message", "text": "x", "channel": "tg"}]}')$$,
	'22023', NULL, 'an unknown parameter');
SELECT throws_ok(format($$SELECT crm.add_process_template('deal', 'O8', '{"activities": [{"type": "openline_message", "text": "%s"}]}')$$, repeat('y', 20001)),
	'22001', NULL, 'a text longer than 20,000 characters');
SELECT throws_ok($$SELECT crm.add_process_template('deal', 'O9', '{"activities": [{"type": "if", "condition": "true", "then": [{"type": "openline_message", "text": "{{nosuchfield}}"}]}]}')$$,
	'42703', NULL, 'a template naming no field');
SELECT is((SELECT count(*) FROM crm.process_template WHERE name ~ '^O[0-9]$'), 0::bigint, 'nothing stored');
CREATE FUNCTION pg_temp.error_place(def text) RETURNS text LANGUAGE plpgsql AS $f$
DECLARE d text; c text; h text;
BEGIN
	PERFORM crm.add_process_template('deal', 'Place', def::jsonb);
	RETURN 'saved';
EXCEPTION WHEN OTHERS THEN
	GET STACKED DIAGNOSTICS d = PG_EXCEPTION_DETAIL, c = PG_EXCEPTION_CONTEXT, h = PG_EXCEPTION_HINT;
	RETURN coalesce(d, '') || ' | ' || coalesce(c, '') || ' | ' || coalesce(h, '');
END
$f$;
SELECT alike(pg_temp.error_place('{"activities": [{"type": "set_status_text", "text": "a"}, {"type": "if", "condition": "true", "then": [{"type": "openline_message", "text": "x", "hidden": 1}]}]}'),
	'%activities[1].then[0]%|%', 'the error names the activity''s place');
SELECT alike(pg_temp.error_place('{"activities": [{"type": "openline_message", "text": "x", "channel": "tg"}]}'),
	'At activities[0].%|%|%Parameters of openline_message%text*%', 'and hints at its parameters');
-- Robots cannot send open-channel messages (process only).
SELECT throws_ok($$SELECT crm.add_robot(crm.stage('deal', 'new'), 'openline_message', '{"text": "x"}')$$,
	'22023', NULL, 'openline_message is not a robot action');

-- openline providers: a url, and a signing secret always.
SELECT throws_ok($$SELECT crm.add_provider('openline', 'nosecret', '{"url": "https://c.example.com/"}')$$,
	'22023', 'an openline provider needs a signing secret', 'an openline provider needs a secret');
SELECT throws_ok($$SELECT crm.add_provider('openline', 'nourl', '{}', secret => 'whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw')$$,
	'22023', 'openline provider config needs a "url"', 'and a url');
SELECT throws_ok($$SELECT crm.add_provider('openline', 'badsecret', '{"url": "https://c.example.com/"}', secret => 'hunter2')$$,
	'22023', 'webhook secret must be "whsec_" followed by a base64 key', 'a Standard Webhooks secret');


-- The catalogue.
SELECT results_eq($$SELECT kind, in_robots, in_processes FROM crm.activity_types WHERE type = 'absence'$$,
	$$VALUES ('process_only', false, true)$$, 'absence: process only');
SELECT results_eq($$SELECT kind, in_processes FROM crm.activity_types WHERE type = 'control' ORDER BY kind$$,
	$$VALUES ('action', false), ('process_only', true)$$, 'two controls: the robot one, the process one');
SELECT is((SELECT document_types FROM crm.activity_types WHERE type = 'control' AND kind = 'process_only'), 'deal, lead', 'with its document types');
SELECT ok((SELECT count(*) FROM crm.activity_types WHERE kind = 'flow') = 5
		  AND (SELECT count(*) FROM crm.activity_types WHERE kind = 'action') = (SELECT count(*) FROM crm.robot_actions),
	'every robot action and the flow activities are listed');
SELECT results_eq($$SELECT kind, in_robots, in_processes, note FROM crm.activity_types WHERE type = 'openline_message'$$,
	$$VALUES ('process_only', false, true, NULL::text)$$, 'openline_message: process only, supported');
SELECT results_eq($$SELECT p->>'name' FROM crm.activity_types, jsonb_array_elements(parameters) p WHERE type = 'openline_message'$$,
	$$VALUES ('text'), ('hidden'), ('attachment_type'), ('attachments'), ('provider')$$, 'with its parameters');
SELECT is((SELECT p->>'type' FROM crm.activity_types, jsonb_array_elements(parameters) p WHERE type = 'email' AND p->>'name' = 'charset'),
	'text', 'email''s charset is any charset name');
SET LOCAL ROLE crm_user;
SELECT ok((SELECT count(*) > 30 FROM crm.activity_types), 'crm_user reads the catalogue');
RESET ROLE;

SELECT * FROM finish();
ROLLBACK;
