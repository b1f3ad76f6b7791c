-- Providers' TLS settings (README, "Providers"): "ca" and "client_cert" in
-- the config, the client key kept with the secret.  Each is PEM text or
-- the absolute path of a file on the server; every malformed value is an
-- ERROR with its SQLSTATE, a message and a detail or hint, and stores
-- nothing; only superusers and members of pg_read_server_files name files;
-- neither crm_admin nor crm_user reads a client key.
BEGIN;
CREATE EXTENSION crm_automation;
SELECT plan(49);

-- The error a statement raises: its SQLSTATE, message, and detail / hint.
CREATE FUNCTION pg_temp.error_of(q text, OUT state text, OUT message text, OUT detail text, OUT hint text)
LANGUAGE plpgsql AS $$
BEGIN
	EXECUTE q;
EXCEPTION WHEN OTHERS THEN
	GET STACKED DIAGNOSTICS state = RETURNED_SQLSTATE, message = MESSAGE_TEXT,
		detail = PG_EXCEPTION_DETAIL, hint = PG_EXCEPTION_HINT;
END $$;

-- A throw-away certificate and its key (EC P-256, made for this test only).
CREATE TEMP TABLE pki (name text PRIMARY KEY, pem text);
INSERT INTO pki VALUES
	('cert', $pem$-----BEGIN CERTIFICATE-----
MIIBdDCCARmgAwIBAgIUT1C03NAshyvoJmmg1F2zFMmZuMIwCgYIKoZIzj0EAwIw
DjEMMAoGA1UEAwwDdGFwMCAXDTI2MTIwNzA4MDUyN1oYDzIxMjYxMTEzMDgwNTI3
WjAOMQwwCgYDVQQDDAN0YXAwWTATBgcqhkjOPQIBBggqhkjOPQMBBwNCAAQCjNMj
T/HVV6iCpqViG1OoNLTnCia7XBPMRdcS9b3HseSaMPbaZ3XKcdxx82Mp32VkgOYc
wq0vRo0WkFIIoCV+o1MwUTAdBgNVHQ4EFgQUDedk4Ll5h8wVoAqV5aFYU3m2iTQw
HwYDVR0jBBgwFoAUDedk4Ll5h8wVoAqV5aFYU3m2iTQwDwYDVR0TAQH/BAUwAwEB
/zAKBggqhkjOPQQDAgNJADBGAiEA212u6vEL4Zk+yNTkSgO63Xn6I37qW5I6hdGQ
PlqmKVkCIQCJ/IHOwQLvm2NWT7ZVuosvHr6wbAK+lDhowJiztZqpdQ==
-----END CERTIFICATE-----
$pem$),
	('key', $pem$-----BEGIN PRIVATE KEY-----
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgwEWGwqH/GoPvfd1g
rUShZ2BpA8r6iadaQY6rLu33vmmhRANCAAQCjNMjT/HVV6iCpqViG1OoNLTnCia7
XBPMRdcS9b3HseSaMPbaZ3XKcdxx82Mp32VkgOYcwq0vRo0WkFIIoCV+
-----END PRIVATE KEY-----
$pem$);
CREATE FUNCTION pg_temp.pem(p_name text) RETURNS text LANGUAGE sql AS $$ SELECT pem FROM pki WHERE name = p_name $$;
GRANT SELECT ON pki TO PUBLIC;

-- Good values: PEM text, with CR LF line ends too, and a file on the server.
SELECT lives_ok($$SELECT crm.add_provider('webhook', 'pem', jsonb_build_object('ca', pg_temp.pem('cert')))$$,
	'a private CA as PEM text is accepted');
SELECT lives_ok($$SELECT crm.add_provider('webhook', 'crlf', jsonb_build_object('ca', replace(pg_temp.pem('cert'), E'\n', E'\r\n')))$$,
	'PEM with CR LF line ends is accepted');
SELECT lives_ok($$SELECT crm.add_provider('webhook', 'bundle', '{"ca": "/etc/ssl/certs/ca-certificates.crt"}')$$,
	'a PEM file on the server is accepted from a superuser');
SELECT lives_ok($$SELECT crm.add_provider('sms', 'mtls', jsonb_build_object('url', 'https://sms.example.com/send',
		'ca', pg_temp.pem('cert'), 'client_cert', pg_temp.pem('cert')), 'tok', client_key => pg_temp.pem('key'))$$,
	'a client certificate with its key is accepted');
SELECT is((SELECT client_key FROM crm.provider_secret WHERE provider_id = (SELECT id FROM crm.provider WHERE name = 'mtls')),
	pg_temp.pem('key'), 'the client key is kept with the secret');
SELECT hasnt_column('crm', 'provider', 'client_key', 'provider definitions have no client key');

CREATE TEMP TABLE before AS
	SELECT (SELECT jsonb_agg(to_jsonb(p) - 'updated_at' ORDER BY id) FROM crm.provider p) AS defs,
		   (SELECT jsonb_agg(to_jsonb(s) ORDER BY provider_id) FROM crm.provider_secret s) AS secrets;

-- Each bad call: SQLSTATE and message, then that it explains itself.
CREATE TEMP TABLE bad (q text, state text, message text);
INSERT INTO bad VALUES
	($$SELECT crm.add_provider('webhook', 'x', '{"ca": "certs/ca.pem"}')$$, '22023', 'provider "ca" is a relative path or not PEM'),
	($$SELECT crm.add_provider('webhook', 'x', jsonb_build_object('ca', E'hello\nworld'))$$, '22023', 'provider "ca" is not PEM'),
	($$SELECT crm.add_provider('webhook', 'x', jsonb_build_object('ca', pg_temp.pem('cert') || E'\r\nX-Injected: 1\r\n'))$$, '22023', 'provider "ca" is not PEM'),
	($$SELECT crm.add_provider('webhook', 'x', jsonb_build_object('ca', 'text before ' || pg_temp.pem('cert')))$$, '22023', 'provider "ca" is not PEM'),
	($$SELECT crm.add_provider('webhook', 'x', jsonb_build_object('ca', replace(pg_temp.pem('cert'), 'MIIB', E'MI\x01IB')))$$, '22023', 'provider "ca" is not PEM text'),
	($$SELECT crm.add_provider('webhook', 'x', jsonb_build_object('ca', replace(pg_temp.pem('cert'), 'MIIB', 'M*IB')))$$, '22023', 'provider "ca" has a CERTIFICATE block that is not valid base64 DER'),
	($$SELECT crm.add_provider('webhook', 'x', jsonb_build_object('ca', pg_temp.pem('key')))$$, '22023', 'provider "ca" holds a "PRIVATE KEY" block'),
	($$SELECT crm.add_provider('webhook', 'x', jsonb_build_object('ca', repeat('A', 70000)))$$, '22023', 'provider "ca" is too long'),
	($$SELECT crm.add_provider('webhook', 'x', jsonb_build_object('ca', E'/etc/ssl/certs/ca.pem\nX'))$$, '22023', 'provider "ca" is not a valid file path'),
	($$SELECT crm.add_provider('webhook', 'x', '{"ca": "/nonexistent/ca.pem"}')$$, '58P01', 'file "/nonexistent/ca.pem" of provider "ca" does not exist'),
	($$SELECT crm.add_provider('webhook', 'x', '{"ca": "/etc/ssl/certs"}')$$, '22023', 'file "/etc/ssl/certs" of provider "ca" is a directory or larger than 1 MB'),
	($$SELECT crm.add_provider('webhook', 'x', '{"ca": 42}')$$, '22023', 'key "ca" of webhook provider config must be a string'),
	($$SELECT crm.add_provider('webhook', 'x', jsonb_build_object('client_cert', pg_temp.pem('cert')))$$, '22023', 'a provider with a client certificate needs its client key'),
	($$SELECT crm.add_provider('webhook', 'x', '{}', client_key => pg_temp.pem('key'))$$, '22023', 'a provider with a client key needs its client certificate'),
	($$SELECT crm.add_provider('webhook', 'x', jsonb_build_object('client_cert', pg_temp.pem('cert')), client_key => pg_temp.pem('cert'))$$, '22023', 'provider client key holds a "CERTIFICATE" block'),
	($$SELECT crm.add_provider('webhook', 'x', jsonb_build_object('client_cert', pg_temp.pem('cert')), client_key => replace(pg_temp.pem('key'), 'PRIVATE KEY', 'ENCRYPTED PRIVATE KEY'))$$, '22023', 'provider client key is encrypted'),
	($$SELECT crm.add_provider('webhook', 'x', jsonb_build_object('client_cert', pg_temp.pem('cert')), client_key => pg_temp.pem('key') || pg_temp.pem('key'))$$, '22023', 'provider client key holds 2 keys'),
	($$SELECT crm.update_provider((SELECT id FROM crm.provider WHERE name = 'pem'), client_key => pg_temp.pem('key'))$$, '22023', 'a provider with a client key needs its client certificate'),
	($$SELECT crm.update_provider((SELECT id FROM crm.provider WHERE name = 'mtls'), client_key => '')$$, '22023', 'a provider with a client certificate needs its client key'),
	($$SELECT crm.update_provider((SELECT id FROM crm.provider WHERE name = 'pem'), config => '{"ca": "ca.pem"}')$$, '22023', 'provider "ca" is a relative path or not PEM');

SELECT throws_ok(q, state, message, 'rejects: ' || message) FROM bad ORDER BY message;
SELECT is(count(*), 0::bigint, 'every one of those errors has a detail or a hint')
  FROM bad, pg_temp.error_of(q) e WHERE e.detail = '' AND e.hint = '';
SELECT is((pg_temp.error_of(format($$SELECT crm.add_provider('webhook', 'x', '{"ca": "%s/PG_VERSION"}')$$,
											current_setting('data_directory')))).message,
	format('provider "ca" (file "%s/PG_VERSION") is not PEM', current_setting('data_directory')),
	'a file that is not PEM is refused, the file named');
SELECT unalike(string_agg(e.message || e.detail || e.hint, ' '), '%SECRET-KEY-TEXT%',
	'a client key is never quoted in an error')
  FROM unnest(ARRAY[$$SELECT crm.add_provider('webhook', 'x', jsonb_build_object('client_cert', pg_temp.pem('cert')), client_key => 'SECRET-KEY-TEXT')$$,
					$$SELECT crm.add_provider('webhook', 'x', jsonb_build_object('client_cert', pg_temp.pem('cert')), client_key => E'SECRET-KEY-TEXT\nmore')$$]) q,
	   pg_temp.error_of(q) e;
SELECT results_eq(
	$$SELECT (SELECT jsonb_agg(to_jsonb(p) - 'updated_at' ORDER BY id) FROM crm.provider p),
			 (SELECT jsonb_agg(to_jsonb(s) ORDER BY provider_id) FROM crm.provider_secret s)$$,
	$$SELECT defs, secrets FROM before$$,
	'the failed calls stored nothing and changed nothing');

-- Removing: client_key => '' with the certificate; the secret stays.
SELECT lives_ok($$SELECT crm.update_provider((SELECT id FROM crm.provider WHERE name = 'mtls'),
		config => jsonb_build_object('url', 'https://sms.example.com/send'), client_key => '')$$,
	'client_key => '''' removes the key, with the certificate');
SELECT is((SELECT secret || '|' || coalesce(client_key, 'none') FROM crm.provider_secret
			WHERE provider_id = (SELECT id FROM crm.provider WHERE name = 'mtls')), 'tok|none',
	'the secret stays, the key is gone');
SELECT lives_ok($$SELECT crm.update_provider((SELECT id FROM crm.provider WHERE name = 'mtls'),
		config => jsonb_build_object('url', 'https://sms.example.com/send', 'client_cert', pg_temp.pem('cert')),
		client_key => pg_temp.pem('key'), secret => '')$$,
	'a key given again, the secret removed');
SELECT is((SELECT coalesce(secret, 'none') || '|' || (client_key = pg_temp.pem('key')) FROM crm.provider_secret
			WHERE provider_id = (SELECT id FROM crm.provider WHERE name = 'mtls')), 'none|true',
	'the key is back, the secret gone');

-- Pointed at another host, a provider loses its secret but keeps its
-- client key: the key signs the handshake and never leaves the server.
SELECT crm.update_provider((SELECT id FROM crm.provider WHERE name = 'mtls'), secret => 'tok2');
UPDATE crm.provider SET config = config || '{"url": "https://elsewhere.example.net/send"}' WHERE name = 'mtls';
SELECT is((SELECT coalesce(secret, 'none') || '|' || (client_key = pg_temp.pem('key')) FROM crm.provider_secret
			WHERE provider_id = (SELECT id FROM crm.provider WHERE name = 'mtls')), 'none|true',
	'repointed: the secret is gone, the client key stays');
SELECT lives_ok($$SELECT crm.update_provider((SELECT id FROM crm.provider WHERE name = 'mtls'),
		config => jsonb_build_object('url', 'https://elsewhere.example.net/send'), client_key => '')$$,
	'removing the last credential');
SELECT is((SELECT count(*) FROM crm.provider_secret WHERE provider_id = (SELECT id FROM crm.provider WHERE name = 'mtls')),
	0::bigint, 'a provider without secret nor key has no row in crm.provider_secret');

-- Roles: crm_admin gives PEM text, never a file; neither role reads a key.
CREATE ROLE crm_tls_admin LOGIN; GRANT crm_admin TO crm_tls_admin;
CREATE ROLE crm_tls_user LOGIN; GRANT crm_user TO crm_tls_user;
SET SESSION AUTHORIZATION crm_tls_admin;
SELECT lives_ok($$SELECT crm.add_provider('webhook', 'admin-mtls', jsonb_build_object('ca', (SELECT pem FROM pki WHERE name = 'cert'),
		'client_cert', (SELECT pem FROM pki WHERE name = 'cert')), client_key => (SELECT pem FROM pki WHERE name = 'key'))$$,
	'crm_admin adds a provider with a client certificate and key as PEM');
SELECT throws_ok($$SELECT * FROM crm.provider_secret$$, '42501', NULL, 'crm_admin cannot read the client key');
SELECT throws_ok($$SELECT client_key FROM crm._claim_messages(10, '1 minute')$$, '42501', NULL,
	'crm_admin cannot read it through the worker''s claim');
SELECT throws_ok($$UPDATE crm.provider_secret SET client_key = NULL$$, '42501', NULL, 'crm_admin cannot change it directly');
SELECT throws_ok($$SELECT crm.add_provider('webhook', 'admin-file', '{"ca": "/etc/ssl/certs/ca-certificates.crt"}')$$,
	'42501', 'only superusers and members of pg_read_server_files may give a file as provider "ca"',
	'crm_admin cannot make the worker read a file');
SELECT throws_ok($$SELECT crm.add_provider('webhook', 'admin-file', '{"ca": "/nonexistent"}')$$,
	'42501', 'only superusers and members of pg_read_server_files may give a file as provider "ca"',
	'nor learn whether one exists');
SELECT throws_ok($$UPDATE crm.provider SET config = '{"client_cert": "/etc/ssl/certs/ca-certificates.crt"}' WHERE name = 'pem'$$,
	'42501', 'only superusers and members of pg_read_server_files may give a file as provider "client_cert"',
	'not by a direct UPDATE either');
SELECT lives_ok($$UPDATE crm.provider SET config = config || '{"method": "PUT"}' WHERE name = 'bundle'$$,
	'crm_admin may change another key of a provider that has a file');
SELECT lives_ok($$SELECT crm.update_provider((SELECT id FROM crm.provider WHERE name = 'admin-mtls'),
		config => '{}', client_key => '')$$,
	'crm_admin removes a client certificate and its key');
RESET SESSION AUTHORIZATION;
SET SESSION AUTHORIZATION crm_tls_user;
SELECT throws_ok($$SELECT * FROM crm.provider_secret$$, '42501', NULL, 'crm_user cannot read the client key');
SELECT throws_ok($$SELECT crm.update_provider(1, client_key => '')$$, '42501', NULL, 'crm_user cannot change providers');
RESET SESSION AUTHORIZATION;
SELECT is((SELECT count(*) FROM crm.provider_secret WHERE provider_id = (SELECT id FROM crm.provider WHERE name = 'admin-mtls')),
	0::bigint, 'the key crm_admin removed is gone');

SELECT * FROM finish();
ROLLBACK;
