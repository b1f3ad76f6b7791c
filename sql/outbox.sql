-- The outbox from SQL: webhook signatures, the providers API, the worker's
-- claim and lease, the observability views, requeueing and cleanup.  The
-- worker is off on the regression cluster (crm.worker_enabled = off), so
-- this file plays the worker's part itself by calling crm._claim_messages().
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS crm_automation CASCADE;
CREATE EXTENSION crm_automation;
RESET client_min_messages;
\set SHOW_CONTEXT never

-- Webhook signatures follow Standard Webhooks: the known answer from its
-- specification (secret, message id, timestamp, body).
SELECT crm.webhook_signature('whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw', 'msg_p5jXN8AQM9LWM0D4loKWxJek',
	1614265330, '{"test": 2432232314}') AS signature;
SELECT crm.webhook_signature('whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw', 'msg_p5jXN8AQM9LWM0D4loKWxJek',
	1614265330, '{"test": 2432232314}') = 'v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=' AS known_answer;

-- Any change of id, timestamp or body gives another signature.
SELECT count(DISTINCT s) AS distinct_signatures
  FROM (VALUES (crm.webhook_signature('whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw', 'msg_p5jXN8AQM9LWM0D4loKWxJek', 1614265330, '{"test": 2432232314}')),
			   (crm.webhook_signature('whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw', 'msg_p5jXN8AQM9LWM0D4loKWxJel', 1614265330, '{"test": 2432232314}')),
			   (crm.webhook_signature('whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw', 'msg_p5jXN8AQM9LWM0D4loKWxJek', 1614265331, '{"test": 2432232314}')),
			   (crm.webhook_signature('whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw', 'msg_p5jXN8AQM9LWM0D4loKWxJek', 1614265330, '{"test": 2432232315}'))) v (s);

-- A whsec_ secret must hold base64.
SELECT crm.webhook_signature('whsec_not*base64', 'msg_1', 1614265330, '{}');

-- Providers: the first of a channel is its default; a secret is kept apart
-- from the configuration.
SELECT crm.add_provider('webhook', 'erp', '{"url": "https://erp.example.com/hook", "headers": {"X-Source": "crm"}}',
	'whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw') AS erp_id;
SELECT crm.add_provider('webhook', 'audit', '{"method": "PUT"}') AS audit_id;
SELECT crm.add_provider('sms', 'gateway', '{"url": "https://sms.example.com/send?from=CRM",
	"headers": {"Authorization": "Bearer {secret}"},
	"body": "{\"to\": \"{to}\", \"text\": \"{text}\", \"ref\": \"{message_id}\"}"}', 'tok123') AS sms_id;
SELECT crm.add_provider('robocall', 'voice', '{"url": "https://voice.example.com/call?to={number}",
	"format": "form", "body": "text={text}&wait={wait_for_result}"}') AS voice_id;
SELECT crm.add_provider('email', 'relay', '{"url": "smtps://smtp.example.com:465", "username": "crm",
	"from": "crm@example.com", "tls": "required"}', 'smtp-password') AS relay_id;
SELECT id, channel, name, config, is_default, active FROM crm.provider ORDER BY id;
SELECT p.name, s.provider_id IS NOT NULL AS has_secret
  FROM crm.provider p LEFT JOIN crm.provider_secret s ON s.provider_id = p.id ORDER BY p.id;

-- update_provider changes only what it is given; is_default moves the
-- default; secret => '' removes the secret.
SELECT crm.update_provider(2, is_default => true);
SELECT crm.update_provider(1, config => '{"url": "https://erp.example.com/v2/hook"}', secret => '');
SELECT crm.update_provider(2, secret => 'whsec_c2VjcmV0LWtleS1mb3ItYXVkaXQ=', name => 'audit-log');
SELECT p.id, p.name, p.config, p.is_default, s.provider_id IS NOT NULL AS has_secret
  FROM crm.provider p LEFT JOIN crm.provider_secret s ON s.provider_id = p.id
 WHERE p.channel = 'webhook' ORDER BY p.id;
SELECT crm.update_provider(2, is_default => false, secret => 'whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw');
SELECT crm.update_provider(1, is_default => true);

-- Definitions are checked when saved: each mistake is an error saying
-- what is wrong, and nothing is stored (the pgTAP file test/pgtap/providers.sql
-- checks every SQLSTATE).
SELECT crm.add_provider('fax', 'old', '{}');
SELECT crm.add_provider('sms', 'cheap', '{"body": "x"}');
SELECT crm.add_provider('sms', 'cheap', '{"url": "ftp://sms.example.com", "body": "x"}');
SELECT crm.add_provider('webhook', 'x', '{"url": "https://x.example.com", "timeout": 5}');
SELECT crm.add_provider('webhook', 'x', '{"headers": {"X-A": "a\r\nX-B: b"}}');
SELECT crm.add_provider('webhook', 'x', '{}', 'not-a-whsec-secret');
SELECT crm.add_provider('email', 'x', '{"url": "smtp://mail.example.com", "tls": "maybe"}');
SELECT crm.add_provider('webhook', 'erp', '{}');
SELECT crm.update_provider(99, active => false);
SELECT crm.update_provider(3, config => '{"url": "https://sms.example.com", "format": "xml"}');
SELECT count(*) AS providers, (SELECT count(*) FROM crm.provider_secret) AS secrets,
	   (SELECT config->>'url' FROM crm.provider WHERE id = 3) AS sms_url
  FROM crm.provider;

-- Messages are written by robots (or by hand) and wait, pending.
INSERT INTO crm.outbox (id, channel, provider_id, payload, idempotency_key) VALUES
	(1, 'webhook', 1, '{"url": "https://shop.example.com/orders", "body": {"order": 7}, "headers": {"X-Order": "7"}}', 'msg_1'),
	(2, 'webhook', NULL, '{"url": "https://b.example.com/x", "method": "patch", "body": "plain"}', 'msg_2'),
	(3, 'sms', NULL, '{"to": ["+33 6 12", "+33 7 34"], "text": "Line \"one\"\nÉté"}', 'msg_3'),
	(4, 'robocall', NULL, '{"number": "+1 555", "text": "Hello & bye", "wait_for_result": true}', 'msg_4'),
	(5, 'email', NULL, '{"to": ["a@example.org", "b@example.org"], "subject": "Été", "body": "<b>hi</b>", "html": true, "attachments": ["9"]}', 'msg_5'),
	(6, 'webhook', 2, '{"body": {"n": 6}}', 'msg_6');
SELECT channel, status, count(*) FROM crm.outbox GROUP BY 1, 2 ORDER BY 1, 2;

-- The worker's claim leases due messages: status sending, one more attempt,
-- a lease, and each message ready to send (provider resolved, templates
-- rendered, the secret attached).  A message that cannot be sent comes back
-- with an error, and the worker marks it dead without trying.
-- The claim changes no indexed column: each lease is a HOT update (the new
-- row version on the same page, no index entries).
BEGIN;
SELECT n_tup_hot_upd AS hot_before FROM pg_stat_xact_user_tables WHERE relid = 'crm.outbox'::regclass \gset
SELECT id, channel, attempts, idempotency_key AS key, provider_id AS provider, url, method, headers, body,
	   secret, username, mail_from, rcpt, subject, html, tls, attachments, error
  FROM crm._claim_messages(10, '1 minute') ORDER BY id \gx
SELECT n_tup_hot_upd - :hot_before AS hot_updates FROM pg_stat_xact_user_tables WHERE relid = 'crm.outbox'::regclass;
COMMIT;
SELECT id, status, attempts, lease_until BETWEEN now() + interval '59 seconds' AND now() + interval '61 seconds' AS leased_1_min
  FROM crm.outbox ORDER BY id;

-- Leased messages are not claimed again...
SELECT count(*) AS claimed_again FROM crm._claim_messages(10, '1 minute');
-- ...until their lease expires (a worker died mid-request: nothing is lost),
-- or the lease was taken before the server last started.
UPDATE crm.outbox SET lease_until = now() - interval '1 second' WHERE id = 1;
UPDATE crm.outbox SET claimed_at = pg_postmaster_start_time() - interval '1 second' WHERE id = 2;
SELECT id, attempts FROM crm._claim_messages(10, '1 minute') ORDER BY id;

-- A claim takes at most its limit, oldest due first; a message whose lease
-- expired is back in its place in the queue (1 was due after 10-14).
INSERT INTO crm.outbox (id, channel, payload, idempotency_key, next_attempt_at)
SELECT i, 'webhook', jsonb_build_object('url', 'https://c.example.com/' || i), 'msg_' || i,
	   now() - make_interval(secs => 100 - i)
  FROM generate_series(10, 14) i;
UPDATE crm.outbox SET lease_until = now() - interval '1 second' WHERE id = 1;
SELECT array_agg(id ORDER BY id) AS claimed FROM crm._claim_messages(3, '1 minute');
SELECT array_agg(id ORDER BY id) AS claimed FROM crm._claim_messages(3, '1 minute');

-- Retries wait crm.retry_base_delay (30 s), doubling with each attempt up
-- to crm.retry_max_delay (6 h), with jitter: between half the delay and the
-- delay.  After crm.max_attempts (10) the message is dead.
SELECT attempt, wait_min, wait_max FROM crm.retry_schedule();

-- A failed message waits for its next attempt; the worker sleeps until the
-- earliest time anything falls due (a retry or the end of a lease).
BEGIN;
UPDATE crm.outbox SET status = 'failed', lease_until = NULL, next_attempt_at = now() + interval '1 hour',
	   last_error = 'HTTP 503', response_code = 503
 WHERE id IN (10, 11);
UPDATE crm.outbox SET lease_until = now() + interval '10 minutes' WHERE status = 'sending';
SELECT count(*) AS claimed FROM crm._claim_messages(10, '1 minute');
SELECT crm._next_message_due() = now() + interval '10 minutes' AS next_due_is_the_first_lease_end;
UPDATE crm.outbox SET lease_until = now() + interval '2 hours' WHERE status = 'sending';
SELECT crm._next_message_due() = now() + interval '1 hour' AS next_due_is_the_retry;
COMMIT;

-- The claim's cost does not grow with messages that are not due: it reads
-- the partial index of due messages from its start and stops at the first
-- one in the future (pg_stat_xact_user_tables counts this backend's reads
-- not yet reported; the difference is the claim's).
SELECT setval(pg_get_serial_sequence('crm.outbox', 'id'), 1000) > 0 AS ids_above_1000;
INSERT INTO crm.outbox (channel, payload, next_attempt_at)
SELECT 'webhook', '{"url": "https://later.example.com"}', now() + interval '1 day'
  FROM generate_series(1, 5000);
BEGIN;
SELECT idx_tup_fetch AS fetched_before FROM pg_stat_xact_user_tables WHERE relid = 'crm.outbox'::regclass \gset
SELECT count(*) AS claimed FROM crm._claim_messages(10, '1 minute');
SELECT idx_tup_fetch - :fetched_before < 50 AS not_due_rows_not_read
  FROM pg_stat_xact_user_tables WHERE relid = 'crm.outbox'::regclass;
ROLLBACK;
DELETE FROM crm.outbox WHERE payload->>'url' = 'https://later.example.com';

-- Results as the worker records them: 1 sent; 2 dead after a final 404;
-- 3 and 4 failed (retrying); 5 dead after its last attempt.
UPDATE crm.outbox SET status = 'sent', sent_at = now(), response_code = 200, lease_until = NULL WHERE id = 1;
UPDATE crm.outbox SET status = 'dead', response_code = 404, last_error = 'HTTP 404',
	   response_excerpt = 'no such hook', lease_until = NULL WHERE id = 2;
UPDATE crm.outbox SET status = 'failed', last_error = 'Timeout was reached', lease_until = NULL,
	   next_attempt_at = now() + interval '30 seconds' WHERE id IN (3, 4);
UPDATE crm.outbox SET status = 'dead', attempts = 10, response_code = 451,
	   last_error = 'gave up after 10 attempts: 451 try later', lease_until = NULL WHERE id = 5;

-- Queue depth by channel and status (sent messages are not a queue).
SELECT channel, status, messages, oldest_age >= interval '0' AS has_age, next_attempt_at IS NOT NULL AS has_next
  FROM crm.outbox_queue ORDER BY channel, status;
-- Depth, send rate and the oldest waiting message, per channel.
SELECT channel, pending, sending, failed, dead, sent_last_minute, sent_last_hour, per_second,
	   oldest_pending_age IS NOT NULL AS has_waiting
  FROM crm.outbox_stats ORDER BY channel;
-- Recent failures with their errors, latest first; and the dead letters.
SELECT id, channel, status, attempts, response_code, last_error FROM crm.outbox_failures ORDER BY id;
SELECT id, channel, attempts, response_code, last_error, response_excerpt FROM crm.outbox_dead ORDER BY id;

-- Requeueing: one message, or every dead one (of a channel).  Attempts
-- start again from zero.
SELECT crm.retry_message(2) AS requeued, crm.retry_message(1) AS sent_one_is_not;
SELECT id, status, attempts, next_attempt_at <= now() AS due FROM crm.outbox WHERE id IN (1, 2) ORDER BY id;
SELECT crm.retry_message(999);
UPDATE crm.outbox SET status = 'dead' WHERE id IN (2, 12);
SELECT crm.retry_dead('email') AS email_requeued;
SELECT crm.retry_dead() AS all_requeued;
SELECT id, status, attempts FROM crm.outbox WHERE id IN (2, 5, 12) ORDER BY id;

-- Cleanup deletes sent messages older than crm.outbox_retention (7 days
-- by default; the worker calls it every 5 minutes), or older than the
-- interval given: created and sent before it.
SHOW crm.outbox_retention;
UPDATE crm.outbox SET status = 'sent', sent_at = now() - interval '8 days', created_at = now() - interval '8 days' WHERE id = 1;
UPDATE crm.outbox SET status = 'sent', sent_at = now() - interval '2 days', created_at = now() - interval '2 days' WHERE id = 2;
UPDATE crm.outbox SET status = 'sent', sent_at = now() - interval '1 hour', created_at = now() - interval '1 hour' WHERE id = 3;
SELECT crm.cleanup_outbox() AS deleted;
SET crm.outbox_retention = '1d';
SELECT crm.cleanup_outbox() AS deleted;
RESET crm.outbox_retention;
SELECT crm.cleanup_outbox(interval '30 minutes') AS deleted;
SELECT array_agg(id ORDER BY id) AS left_in_outbox FROM crm.outbox;

-- A provider with messages waiting cannot be deleted; once they are
-- done it can, and its sent messages stay, without a provider.
SELECT crm.delete_provider(2);
UPDATE crm.outbox SET status = 'sent', sent_at = now() WHERE provider_id = 2;
SELECT crm.delete_provider(2);
SELECT id, name FROM crm.provider ORDER BY id;
SELECT id, status, provider_id FROM crm.outbox WHERE id = 6;
