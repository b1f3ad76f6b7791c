-- What the worker sends for a claimed message (src/delivery/render.c): the
-- provider applied, SMS and call templates rendered, every field's JSON
-- type checked, and the error that makes a message dead without a request.
-- crm._render_claimed() is the worker's own code; crm._claim_messages()
-- shows it for leased rows (the provider found, the default one, a 410).
-- Stored rows are not trusted: hostile payloads and configs written by
-- hand come back with an error or as plain text, never as a crash.
BEGIN;
CREATE EXTENSION crm_automation;
SELECT plan(46);

-- r(channel, payload, config, secret): "url | method | headers | body | error"
CREATE FUNCTION pg_temp.r(p_channel text, p_payload jsonb, p_config jsonb DEFAULT '{}', p_secret text DEFAULT NULL,
						  p_provider boolean DEFAULT true, p_active boolean DEFAULT true, p_gone text DEFAULT NULL)
RETURNS text LANGUAGE sql AS $$
	SELECT concat_ws(' | ', coalesce(x.url, '-'), x.method, array_to_string(x.headers, ';', 'NULL'),
					 coalesce(x.body, '-'), coalesce(x.error, 'ok'))
	  FROM crm._render_claimed(1, p_channel, 1, 'key&1', p_payload, now(), CASE WHEN p_provider THEN 7 END,
							   p_active, 'prov', p_config, p_secret, NULL, p_gone) x
$$;

-- webhooks
SELECT is(pg_temp.r('webhook', '{"url": "https://a.example.com/h", "body": {"deal": 1, "t": "é"}}', '{}', NULL, false),
	'https://a.example.com/h | POST |  | {"t": "é", "deal": 1} | ok', 'a webhook: its url, POST, its JSON body as text');
SELECT is(pg_temp.r('webhook', '{"url": "https://a.example.com/h", "body": "plain \"q\"", "method": "patch"}', '{}', NULL, false),
	'https://a.example.com/h | PATCH |  | plain "q" | ok', 'a string body as is, the method upper-cased');
SELECT is(pg_temp.r('webhook', '{"body": 12.50}', '{"url": "https://p.example.com/", "method": "put", "headers": {"X-A": "1", "B": "{secret}"}}', 'whsec_c2Vjb25k'),
	'https://p.example.com/ | PUT | B: {secret};X-A: 1 | 12.50 | ok',
	'the provider''s url, method and headers; a webhook''s headers are not templates');
SELECT is(pg_temp.r('webhook', '{"url": "https://a.example.com/", "body": null}', '{}', NULL, false),
	'https://a.example.com/ | POST |  | null | ok', 'a JSON null body is sent as null');
SELECT is(pg_temp.r('webhook', '{"url": "https://a.example.com/"}', '{"headers": {"X": "p"}}'),
	'https://a.example.com/ | POST | X: p |  | ok', 'no body: empty');
SELECT is(pg_temp.r('webhook', '{"url": "https://a.example.com/", "headers": {"Own": "o", "N": null, "Num": 3}}', '{"headers": {"X": "p"}}'),
	'https://a.example.com/ | POST | X: p;Num: 3;Own: o |  | ok',
	'the provider''s headers first, then the message''s; a JSON null header is left out');
SELECT is(pg_temp.r('webhook', '{}', '{}', NULL, false),
	'- | POST |  |  | the webhook has no url and its provider none', 'no url anywhere: dead');
SELECT is(pg_temp.r('webhook', '{"url": 5}', '{}', NULL, false),
	'5 | POST |  |  | webhook "url" must be a string, not number', 'a url of the wrong type: dead');
SELECT is(pg_temp.r('webhook', '{"url": "https://a.example.com/", "method": ["GET"]}', '{}', NULL, false),
	'https://a.example.com/ | ["GET"] |  |  | webhook "method" must be a string, not array', 'a method of the wrong type: dead');
SELECT is(pg_temp.r('webhook', '{"url": "https://a.example.com/", "headers": "X: 1"}', '{}', NULL, false),
	'https://a.example.com/ | POST |  |  | webhook headers must be a JSON object', 'headers that are not an object: dead');
SELECT is(pg_temp.r('webhook', E'{"url": "https://a.example.com/", "headers": {"X": "a\\r\\nInjected: 1"}}', '{}', NULL, false),
	E'https://a.example.com/ | POST | X: a\r\nInjected: 1 |  | a header name is not a token or a header value contains CR or LF',
	'a header value with CR LF: dead, never sent');
SELECT is(pg_temp.r('webhook', '{"url": "https://a.example.com/", "headers": {"Bad Name": "v"}}', '{}', NULL, false),
	'https://a.example.com/ | POST | Bad Name: v |  | a header name is not a token or a header value contains CR or LF',
	'a header name that is not a token: dead');
SELECT is(pg_temp.r('webhook', '{"url": "https://gone.example.com/"}', '{}', NULL, false, true, '410 Gone at noon'),
	'https://gone.example.com/ | POST |  |  | endpoint gone: 410 Gone at noon', 'an endpoint that answered 410: dead with why');
SELECT is(pg_temp.r('webhook', '{"url": "https://a.example.com/"}', '{}', NULL, true, false),
	'https://a.example.com/ | POST |  |  | webhook provider "prov" is disabled', 'a disabled provider: dead');
SELECT is(pg_temp.r('webhook', '{"url": "https://a.example.com/"}', '{"url": 5, "headers": {"a": 1}}'),
	'https://a.example.com/ | POST | a: 1 |  | webhook provider "prov" has a config of the wrong shape: an object of strings, with "headers" an object',
	'a provider config changed by hand to a wrong shape: dead');
SELECT is(pg_temp.r('webhook', '{"url": "https://a.example.com/"}', '{"headers": "x"}'),
	'https://a.example.com/ | POST |  |  | webhook provider "prov" has a config of the wrong shape: an object of strings, with "headers" an object',
	'provider headers that are not an object: dead');

-- SMS and calls: the provider's templates
SELECT is(pg_temp.r('sms', '{"to": ["+1 555", "+2&x", null, 7], "text": "héllo {secret} \"q\"\n", "number": "+9"}',
					'{"url": "https://s.example.com/send?to={to}&t={text}", "headers": {"Authorization": "Bearer {secret}", "X-Id": "{message_id}{nope}{"}}',
					E'tok"en'),
	E'https://s.example.com/send?to=%2B1%20555%2C%2B2%26x%2C7&t=h%C3%A9llo%20%7Bsecret%7D%20%22q%22%0A | POST | X-Id: key&1{nope}{;Authorization: Bearer tok"en | {"to": "+1 555,+2&x,7", "text": "héllo {secret} \\"q\\"\\n", "id": "key&1"} | ok',
	'an SMS: url form-encoded, headers (in jsonb''s key order) as text, the default JSON body escaped; a value that says {secret} stays as it is');
SELECT is(pg_temp.r('sms', '{"to": [], "number": 12345, "text": null}', '{"url": "https://s.example.com/"}'),
	'https://s.example.com/ | POST |  | {"to": "12345", "text": "", "id": "key&1"} | ok', 'no recipients list: the number; no text: empty');
SELECT is(pg_temp.r('sms', '{"to": "notarray", "number": "+1"}', '{"url": "https://s.example.com/"}'),
	'https://s.example.com/ | POST |  | {"to": "+1", "text": "", "id": "key&1"} | sms "to" must be array, not string', 'recipients that are not a list: dead');
SELECT is(pg_temp.r('sms', '{"number": {"a": 1}}', '{"url": "https://s.example.com/"}'),
	'https://s.example.com/ | POST |  | {"to": "{\"a\": 1}", "text": "", "id": "key&1"} | sms "number" must be string or number, not object',
	'a number that is an object: dead');
SELECT is(pg_temp.r('robocall', '{"number": "+1", "text": "a b/c?d=e&f~g_h.i-j%k ü €", "wait_for_result": true}',
					'{"url": "https://c.example.com/c", "format": "form", "body": "n={number}&w={wait_for_result}&x={text}&{}&{{to}}&}"}', 's&e=c'),
	'https://c.example.com/c | POST |  | n=%2B1&w=true&x=a%20b%2Fc%3Fd%3De%26f~g_h.i-j%25k%20%C3%BC%20%E2%82%AC&{}&{%2B1}&} | ok',
	'a call, form body: unreserved characters kept, the rest %XX of UTF-8; {} and lone braces as written');
SELECT is(pg_temp.r('robocall', '{"number": "+1"}', '{"url": "https://c.example.com/", "format": "form"}'),
	'https://c.example.com/ | POST |  | to=%2B1&text=&id=key%261 | ok', 'the default form body');
SELECT is(pg_temp.r('robocall', '{"number": "+1", "wait_for_result": 1}', '{"url": "https://c.example.com/"}'),
	'https://c.example.com/ | POST |  | {"to": "+1", "text": "", "id": "key&1"} | robocall "wait_for_result" must be boolean or string, not number',
	'wait_for_result of the wrong type: dead');
SELECT is(pg_temp.r('sms', '{"number": "+1", "text": "x y"}', '{"url": "https://t.example.com", "format": "text", "body": "T={text} N={number} S={secret}"}', 'sec'),
	'https://t.example.com | POST |  | T=x y N=+1 S=sec | ok', 'a text body: values as they are');
SELECT is(pg_temp.r('sms', '{"number": "+1"}', '{"url": "https://t.example.com", "format": "xml"}'),
	'https://t.example.com | POST |  | {"to": "+1", "text": "", "id": "key&1"} | ok', 'an unknown format written by hand: the default body, values as text');
SELECT is(pg_temp.r('sms', '{"number": "+1"}', '{}', NULL, false),
	'- | POST |  | {"to": "+1", "text": "", "id": "key&1"} | no sms provider: add one with crm.add_provider(''sms'', name, config)',
	'no provider: dead, with how to add one');

-- e-mail and open channels
SELECT results_eq($$SELECT url, username, mail_from, rcpt, subject, body, html, tls, attachments, charset, error
					 FROM crm._render_claimed(1, 'email', 1, 'k', '{"to": ["a@x.y", null, "b@x.y"], "subject": "S", "body": "B", "html": true, "charset": "latin1", "attachments": ["1", 2]}',
											  now(), 3, true, 'mail', '{"url": "smtp://127.0.0.1:25", "from": "f@x.y", "username": "u", "tls": "none"}', 'pw', NULL, NULL)$$,
	$$VALUES ('smtp://127.0.0.1:25', 'u', 'f@x.y', ARRAY['a@x.y', 'b@x.y'], 'S', 'B', true, 'none', ARRAY['1', '2'], 'latin1', NULL::text)$$,
	'an e-mail: the provider''s server, login and sender; the message''s recipients, subject, body, attachments, charset');
SELECT results_eq($$SELECT mail_from, rcpt, html, tls, error
					 FROM crm._render_claimed(1, 'email', 1, 'k', '{"to": "a@x.y", "from": "m@x.y", "html": "yes"}',
											  now(), 3, true, 'mail', '{"url": "smtp://127.0.0.1:25"}', NULL, NULL, NULL)$$,
	$$VALUES ('m@x.y', '{}'::text[], false, 'try', 'email "to" must be array, not string')$$,
	'an e-mail: the message''s sender first; recipients that are not a list: dead; html only when true');
SELECT is(pg_temp.r('email', '{"to": ["a@x.y"]}', '{"url": "smtp://127.0.0.1:25"}'),
	'smtp://127.0.0.1:25 | POST |  | - | e-mail provider "prov" has no "from" address and the message none', 'no sender anywhere: dead');
SELECT is(pg_temp.r('openline', '{"text": "hi", "client": {"id": 1}}', '{"url": "https://o.example.com"}', 'whsec_c2Vjb25k'),
	'https://o.example.com | POST |  | {"text": "hi", "client": {"id": 1}} | ok', 'an open-channel message: the payload as written');
SELECT is(pg_temp.r('openline', '{"text": "hi", "hidden": true}', '{"url": "https://o.example.com"}', 'whsec_c2Vjb25k'),
	'https://o.example.com | POST |  | {"text": "hi", "hidden": true} | a hidden open-channel message is never sent to the client', 'a hidden one: dead');
SELECT is(pg_temp.r('openline', '{"text": "hi"}', '{"url": "https://o.example.com"}'),
	'https://o.example.com | POST |  | {"text": "hi"} | openline provider "prov" has no signing secret: give one with crm.update_provider(id, secret => ...)',
	'an open channel without a signing secret: dead');

-- hostile input
SELECT is(crm._render_claimed(NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL) IS NULL, true,
	'all NULL: NULL');
SELECT is(pg_temp.r('sms', NULL, NULL), '- | POST |  | {"to": "", "text": "", "id": "key&1"} | sms provider "prov" has a config of the wrong shape: an object of strings, with "headers" an object',
	'a NULL payload: defaults; a provider with a NULL config: dead');
SELECT is(length(pg_temp.r('sms', jsonb_build_object('number', '1', 'text', repeat('{text}é', 200000)),
						   '{"url": "https://s.example.com/", "format": "form", "body": "{text}{text}"}')),
	length('https://s.example.com/ | POST |  | ' || repeat('%7Btext%7D%C3%A9', 400000) || ' | ok'),
	'a 1.4 MB text that spells its own placeholder, twice: rendered once each, never re-read');
SELECT is(pg_temp.r('webhook', (SELECT jsonb_build_object('url', 'https://a.example.com/', 'body', (repeat('{"a":', 2000) || '1' || repeat('}', 2000))::jsonb))) LIKE '%{"a": {"a": {"a": 1}}}}% | ok',
	true, 'a body nested 2,000 deep is sent as its text');
SELECT is(crm._render_template('a {nope} { b } {{c}} {s} {', '{"s": "tok", "c": "C"}', 'text'), 'a {nope} { b } {C} tok {',
	'_render_template: unknown placeholders and lone braces as written');
SELECT is(crm._render_template('{s}', '{"s": "a\"b\\c\n"}', 'json'), E'a\\"b\\\\c\\n', '_render_template: json escaping');
SELECT is(crm._render_template('{s}', '{"s": null}', 'form'), '', '_render_template: a JSON null is empty');
SELECT is(crm._render_template(NULL, '{}', 'text'), NULL, '_render_template: NULL template, NULL');
SELECT is(crm._render_template('{s}', NULL, NULL), '{s}', '_render_template: NULL values: as written');

-- through the claim: the provider named, else the channel's default; the 410 list
SELECT crm.add_provider('sms', 'first', '{"url": "https://first.example.com/"}', 'sek');
SELECT crm.add_provider('sms', 'second', '{"url": "https://second.example.com/{to}", "format": "form"}', NULL, false);
INSERT INTO crm.disabled_endpoint (url, reason) VALUES ('https://gone.example.com/', 'answered 410');
INSERT INTO crm.outbox (id, channel, provider_id, payload, idempotency_key) VALUES
	(1001, 'sms', NULL, '{"number": "+1"}', 'k1'),
	(1002, 'sms', (SELECT id FROM crm.provider WHERE name = 'second'), '{"number": "+2"}', 'k2'),
	(1003, 'webhook', NULL, '{"url": "https://gone.example.com/"}', 'k3'),
	(1004, 'email', NULL, '{"to": ["a@x.y"]}', 'k4');
SELECT results_eq($$SELECT id, url, secret, error FROM crm._claim_messages(10, '1 minute') ORDER BY id$$,
	$$VALUES (1001::bigint, 'https://first.example.com/', 'sek', NULL::text), (1002, 'https://second.example.com/%2B2', NULL, NULL),
			 (1003, 'https://gone.example.com/', NULL, 'endpoint gone: answered 410'),
			 (1004, NULL, NULL, 'no email provider: add one with crm.add_provider(''email'', name, config)')$$,
	'the claim: the default provider and its secret, the one named, a 410''s reason, no provider');
SELECT is((SELECT string_agg(status || attempts, ',' ORDER BY id) FROM crm.outbox), 'sending1,sending1,sending1,sending1',
	'the claim leased them');

-- a statement's robots queue their messages with one INSERT (crm.outbox's
-- statement triggers run once), each message's id the robot's output
CREATE TABLE pg_temp.outbox_statements (n int);
INSERT INTO pg_temp.outbox_statements VALUES (0);
CREATE FUNCTION pg_temp.count_statement() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
	UPDATE pg_temp.outbox_statements SET n = n + 1;
	RETURN NULL;
END
$$;
CREATE TRIGGER count_statement AFTER INSERT ON crm.outbox FOR EACH STATEMENT EXECUTE FUNCTION pg_temp.count_statement();
INSERT INTO crm.user (name) VALUES ('Robin');
INSERT INTO crm.deal (title, responsible_id) SELECT 'Deal ' || g, (SELECT min(id) FROM crm.user) FROM generate_series(1, 3) g;
SELECT crm.add_robot(crm.stage('deal', 'preparation'), 'webhook', '{"url": "https://hooks.example.com/deal/{{id}}"}', name => 'hook');
UPDATE pg_temp.outbox_statements SET n = 0;
UPDATE crm.deal SET stage_id = crm.stage('deal', 'preparation') WHERE title LIKE 'Deal %';
SELECT is((SELECT n FROM pg_temp.outbox_statements), 1, 'three deals moved by one statement: their messages in one INSERT');
SELECT is((SELECT count(*) FROM crm.outbox o JOIN crm.deal d ON d.id = o.entity_id AND o.entity_type = 'deal'
			WHERE d.title LIKE 'Deal %' AND o.payload ->> 'url' = 'https://hooks.example.com/deal/' || d.id), 3::bigint,
	'one message per deal, each with its own url');
SELECT is((SELECT count(*) FROM crm.robot_log l JOIN crm.outbox o ON o.id = (l.outputs ->> 'message_id')::bigint
			WHERE l.name = 'hook'), 3::bigint, 'each robot''s message_id output is its message''s id');

SELECT * FROM finish();
ROLLBACK;
