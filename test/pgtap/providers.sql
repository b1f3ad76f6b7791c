-- The providers API (crm.add_provider, crm.update_provider,
-- crm.delete_provider) and the outbox's admin functions: every malformed
-- input is an ERROR with its SQLSTATE, a message quoting the value and a
-- detail or hint, and stores nothing; secrets stay out of reach of
-- crm_user and crm_admin.
BEGIN;
CREATE EXTENSION crm_automation;
SELECT plan(59);

-- The error a statement raises: its SQLSTATE, message, and detail / hint.
CREATE FUNCTION pg_temp.error_of(q text, OUT state text, OUT message text, OUT detail text, OUT hint text)
LANGUAGE plpgsql AS $$
BEGIN
	EXECUTE q;
EXCEPTION WHEN OTHERS THEN
	GET STACKED DIAGNOSTICS state = RETURNED_SQLSTATE, message = MESSAGE_TEXT,
		detail = PG_EXCEPTION_DETAIL, hint = PG_EXCEPTION_HINT;
END $$;

SELECT crm.add_provider('webhook', 'erp', '{"url": "https://erp.example.com/hook"}',
	'whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw') AS erp \gset
SELECT crm.add_provider('sms', 'gateway', '{"url": "https://sms.example.com/send"}', 'tok') AS sms \gset
CREATE TEMP TABLE before AS
	SELECT (SELECT count(*) FROM crm.provider) AS providers,
		   (SELECT count(*) FROM crm.provider_secret) AS secrets,
		   (SELECT jsonb_agg(to_jsonb(p) - 'updated_at' ORDER BY id) FROM crm.provider p) AS defs,
		   (SELECT jsonb_agg(secret ORDER BY provider_id) FROM crm.provider_secret) AS secret_values;

-- Each bad call: SQLSTATE and message, then that it explains itself.
CREATE TEMP TABLE bad (q text, state text, message text);
INSERT INTO bad VALUES
	($$SELECT crm.add_provider('fax', 'x', '{}')$$, '22023', 'unknown provider channel "fax"'),
	($$SELECT crm.add_provider(NULL, 'x', '{}')$$, '22004', 'provider channel must not be null'),
	($$SELECT crm.add_provider('webhook', NULL, '{}')$$, '22004', 'provider name must not be null'),
	($$SELECT crm.add_provider('webhook', '  ', '{}')$$, '22023', 'provider name must not be empty'),
	($$SELECT crm.add_provider('webhook', 'x', '[1]')$$, '22023', 'provider config must be a JSON object'),
	($$SELECT crm.add_provider('webhook', 'x', NULL)$$, '22023', 'provider config must be a JSON object'),
	($$SELECT crm.add_provider('webhook', 'x', '{"timeout": "5"}')$$, '22023', 'unknown key "timeout" in webhook provider config'),
	($$SELECT crm.add_provider('email', 'x', '{"url": "smtp://m.example.com", "body": "b"}')$$, '22023', 'unknown key "body" in email provider config'),
	($$SELECT crm.add_provider('webhook', 'x', '{"url": 42}')$$, '22023', 'key "url" of webhook provider config must be a string'),
	($$SELECT crm.add_provider('sms', 'x', '{"body": "b"}')$$, '22023', 'sms provider config needs a "url"'),
	($$SELECT crm.add_provider('email', 'x', '{"from": "a@example.com"}')$$, '22023', 'email provider config needs a "url"'),
	($$SELECT crm.add_provider('email', 'x', '{"url": "https://m.example.com"}')$$, '22023', 'e-mail provider url "https://m.example.com" is not an smtp:// or smtps:// URL'),
	($$SELECT crm.add_provider('webhook', 'x', '{"url": "file:///etc/passwd"}')$$, '22023', 'webhook provider url "file:///etc/passwd" is not an http:// or https:// URL'),
	($$SELECT crm.add_provider('robocall', 'x', '{"url": "gopher://v.example.com"}')$$, '22023', 'robocall provider url "gopher://v.example.com" is not an http:// or https:// URL'),
	($$SELECT crm.add_provider('webhook', 'x', '{"method": "TRACE"}')$$, '22023', 'unsupported HTTP method "TRACE"'),
	($$SELECT crm.add_provider('sms', 'x', '{"url": "https://s.example.com", "format": "xml"}')$$, '22023', 'unknown body format "xml"'),
	($$SELECT crm.add_provider('email', 'x', '{"url": "smtp://m.example.com", "tls": "maybe"}')$$, '22023', 'unknown tls mode "maybe"'),
	($$SELECT crm.add_provider('email', 'x', '{"url": "smtp://m.example.com", "from": "Ann <ann@example.com>"}')$$, '22023', 'sender "Ann <ann@example.com>" is not an e-mail address'),
	($$SELECT crm.add_provider('webhook', 'x', '{"headers": ["X-A: 1"]}')$$, '22023', 'provider headers must be a JSON object of strings'),
	($$SELECT crm.add_provider('webhook', 'x', '{"headers": {"X-A": 1}}')$$, '22023', 'header "X-A" must be a string'),
	($$SELECT crm.add_provider('webhook', 'x', '{"headers": {"X-A": "1\r\nX-B: 2"}}')$$, '22023', 'header "X-A" is not a valid HTTP header'),
	($$SELECT crm.add_provider('webhook', 'x', '{"headers": {"X A": "1"}}')$$, '22023', 'header "X A" is not a valid HTTP header'),
	($$SELECT crm.add_provider('webhook', 'x', '{}', 'plain-secret')$$, '22023', 'webhook secret must be "whsec_" followed by a base64 key'),
	($$SELECT crm.add_provider('webhook', 'x', '{}', 'whsec_abcde')$$, '22023', 'webhook secret must be "whsec_" followed by a base64 key'),
	($$SELECT crm.add_provider('webhook', 'erp', '{}')$$, '42710', 'webhook provider "erp" already exists'),
	($$SELECT crm.update_provider(424242, active => false)$$, '42704', 'provider 424242 does not exist'),
	($$SELECT crm.update_provider(NULL, active => false)$$, '22004', 'provider id must not be null'),
	($$SELECT crm.update_provider(:sms, config => '{"url": "https://s.example.com", "format": "xml"}')$$, '22023', 'unknown body format "xml"'),
	($$SELECT crm.update_provider(:sms, config => '{"url": "ftp://s.example.com"}')$$, '22023', 'sms provider url "ftp://s.example.com" is not an http:// or https:// URL'),
	($$SELECT crm.update_provider(:erp, secret => 'nope')$$, '22023', 'webhook secret must be "whsec_" followed by a base64 key'),
	($$SELECT crm.update_provider(:erp, name => '')$$, '22023', 'provider name must not be empty'),
	($$SELECT crm.delete_provider(424242)$$, '42704', 'provider 424242 does not exist'),
	($$SELECT crm.retry_message(424242)$$, '42704', 'outbox message 424242 does not exist'),
	($$SELECT crm.retry_message(NULL)$$, '22004', 'message id must not be null');
UPDATE bad SET q = replace(replace(q, ':sms', :'sms'), ':erp', :'erp');

SELECT throws_ok(q, state, message, 'rejects ' || message) FROM bad ORDER BY message;
SELECT is(count(*), 0::bigint, 'every one of those errors has a detail or a hint')
  FROM bad, pg_temp.error_of(q) e WHERE e.detail = '' AND e.hint = '';
SELECT alike((pg_temp.error_of($$SELECT crm.add_provider('webhook', 'x', '{}', 'plain-secret')$$)).hint,
	'%gen_random_bytes%', 'the secret hint says how to make one');
SELECT unalike(string_agg(e.message || e.detail || e.hint, ' '), '%plain-secret%',
	'an invalid secret is never echoed back')
  FROM pg_temp.error_of($$SELECT crm.add_provider('webhook', 'x', '{}', 'plain-secret')$$) e;

SELECT results_eq(
	$$SELECT (SELECT count(*) FROM crm.provider), (SELECT count(*) FROM crm.provider_secret),
			 (SELECT jsonb_agg(to_jsonb(p) - 'updated_at' ORDER BY id) FROM crm.provider p),
			 (SELECT jsonb_agg(secret ORDER BY provider_id) FROM crm.provider_secret)$$,
	$$SELECT providers, secrets, defs, secret_values FROM before$$,
	'the failed calls stored nothing and changed nothing');

-- A provider still used by waiting messages is kept.
INSERT INTO crm.outbox (channel, provider_id, payload) VALUES ('sms', :sms, '{"to": ["1"], "text": "x"}');
SELECT throws_ok(format('SELECT crm.delete_provider(%s)', :sms), '55006',
	'sms provider "gateway" has messages waiting to be sent', 'a provider with waiting messages is kept');
SELECT alike((pg_temp.error_of(format('SELECT crm.delete_provider(%s)', :sms))).hint, '%active => false%',
	'the hint says how to disable it instead');
SELECT is((SELECT count(*) FROM crm.provider WHERE id = :sms), 1::bigint, 'still there');

-- Roles: crm_admin manages providers through the functions, and neither
-- role reads a secret, directly or through the worker's claim.
CREATE ROLE crm_test_user; GRANT crm_user TO crm_test_user;
CREATE ROLE crm_test_admin; GRANT crm_admin TO crm_test_admin;
SET ROLE crm_test_admin;
SELECT lives_ok($$SELECT crm.add_provider('robocall', 'voice', '{"url": "https://v.example.com"}', 'voice-token')$$,
	'crm_admin adds a provider with a secret');
SELECT lives_ok(format($$SELECT crm.update_provider(%s, secret => 'whsec_c2Vjb25k')$$, :erp),
	'crm_admin replaces a secret');
SELECT is((SELECT count(*) FROM crm.provider), 3::bigint, 'crm_admin reads the provider definitions');
SELECT hasnt_column('crm', 'provider', 'secret', 'definitions have no secret column');
SELECT throws_ok($$SELECT * FROM crm.provider_secret$$, '42501', NULL, 'crm_admin cannot read secrets');
SELECT throws_ok($$SELECT * FROM crm._claim_messages(10, '1 minute')$$, '42501', NULL,
	'crm_admin cannot read secrets through the worker''s claim');
SELECT lives_ok($$SELECT * FROM crm.outbox_queue, crm.outbox_stats, crm.outbox_failures, crm.outbox_dead$$,
	'crm_admin reads the outbox views');
SELECT lives_ok($$SELECT crm.retry_dead()$$, 'crm_admin requeues dead messages');
SELECT lives_ok($$DELETE FROM crm.disabled_endpoint$$, 'crm_admin re-enables endpoints disabled by a 410');
SELECT throws_ok($$UPDATE crm.provider_secret SET secret = 'x'$$, '42501', NULL, 'crm_admin cannot write secrets directly');
RESET ROLE;
SET ROLE crm_test_user;
SELECT throws_ok($$SELECT * FROM crm.provider_secret$$, '42501', NULL, 'crm_user cannot read secrets');
SELECT throws_ok($$SELECT * FROM crm.provider$$, '42501', NULL, 'crm_user cannot read provider definitions');
SELECT throws_ok($$SELECT crm.add_provider('sms', 'mine', '{"url": "https://s.example.com"}')$$, '42501', NULL,
	'crm_user cannot add providers');
SELECT throws_ok($$SELECT * FROM crm._claim_messages(10, '1 minute')$$, '42501', NULL,
	'crm_user cannot claim messages');
SELECT throws_ok($$SELECT * FROM crm.outbox$$, '42501', NULL, 'crm_user cannot read the outbox');
SELECT throws_ok($$SELECT * FROM crm.outbox_dead$$, '42501', NULL, 'crm_user cannot read the outbox views');
RESET ROLE;
SELECT is((SELECT secret FROM crm.provider_secret WHERE provider_id = :erp), 'whsec_c2Vjb25k',
	'the replaced secret is stored for the worker');

-- The functions that cross the privilege boundary are SECURITY DEFINER
-- with a pinned search_path.
SELECT is(count(*), 3::bigint, 'add/update/delete_provider are SECURITY DEFINER with a search_path')
  FROM pg_proc WHERE pronamespace = 'crm'::regnamespace
   AND proname IN ('add_provider', 'update_provider', 'delete_provider')
   AND prosecdef AND proconfig::text LIKE '%search_path=pg_catalog, pg_temp%';

SELECT * FROM finish();
ROLLBACK;
