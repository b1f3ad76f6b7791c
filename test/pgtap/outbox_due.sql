-- crm.outbox_due lists the messages not yet done by due time, whoever
-- writes crm.outbox: a row per pending, sending or failed message, none for
-- sent and dead ones, the due time the message's own.  The delivery workers'
-- records keep it themselves (test/integration/worker_queue.sh); here the
-- triggers, the repair functions and who may change it.
BEGIN;
CREATE EXTENSION crm_automation;
SELECT plan(26);

CREATE FUNCTION pg_temp.due() RETURNS text LANGUAGE sql AS $$
	SELECT coalesce(string_agg(q.message_id || '@' || (q.next_attempt_at = o.next_attempt_at)::text, ' '
							   ORDER BY q.message_id), '')
	  FROM crm.outbox_due q LEFT JOIN crm.outbox o ON o.id = q.message_id
	 WHERE q.rel = 'crm.outbox'::regclass
$$;

-- INSERT, one row or many, pending or already done
INSERT INTO crm.outbox (id, channel, payload) VALUES (1, 'webhook', '{"url": "https://a.example.com/1"}');
SELECT is(pg_temp.due(), '1@true', 'a queued message is listed, at its due time');
INSERT INTO crm.outbox (id, channel, payload, next_attempt_at)
SELECT g, 'sms', jsonb_build_object('to', jsonb_build_array('+3361234567' || g), 'text', 'x'), now() + g * interval '1 minute'
  FROM generate_series(2, 4) g;
SELECT is(pg_temp.due(), '1@true 2@true 3@true 4@true', 'several in one INSERT: each listed');
INSERT INTO crm.outbox (id, channel, payload, status, sent_at) VALUES (5, 'webhook', '{"url": "https://a.example.com/5"}', 'sent', now());
INSERT INTO crm.outbox (id, channel, payload, status, next_attempt_at) VALUES (6, 'webhook', '{"url": "https://a.example.com/6"}', 'dead', 'infinity');
SELECT is(pg_temp.due(), '1@true 2@true 3@true 4@true', 'a message inserted sent or dead is not');
SELECT is((SELECT count(*) FROM crm.outbox_due WHERE rel = 'crm.outbox'::regclass)::int, 4, 'one row per message');
DELETE FROM crm.outbox WHERE id = 6;
SELECT is(pg_temp.due(), '1@true 2@true 3@true 4@true', 'deleting a dead message changes nothing');

-- UPDATE: a new due time, done, back to the queue, a new id
UPDATE crm.outbox SET next_attempt_at = now() + interval '1 hour' WHERE id = 2;
SELECT is(pg_temp.due(), '1@true 2@true 3@true 4@true', 'a message due at another time: listed at that time');
UPDATE crm.outbox SET status = 'sent', sent_at = now() WHERE id = 3;
SELECT is(pg_temp.due(), '1@true 2@true 4@true', 'a message marked sent by hand leaves the list');
UPDATE crm.outbox SET status = 'dead', next_attempt_at = 'infinity' WHERE id = 4;
SELECT is(pg_temp.due(), '1@true 2@true', 'a message made dead leaves it');
SELECT ok(crm.retry_message(4), 'a dead message requeued');
SELECT is(pg_temp.due(), '1@true 2@true 4@true', 'is listed again');
UPDATE crm.outbox SET status = 'dead', next_attempt_at = 'infinity' WHERE id IN (1, 2);
SELECT is(crm.retry_dead(), 2::bigint, 'retry_dead requeues both');
SELECT is(pg_temp.due(), '1@true 2@true 4@true', 'and lists them');
UPDATE crm.outbox SET id = 40 WHERE id = 4;
SELECT is(pg_temp.due(), '1@true 2@true 40@true', 'a message given another id is listed by it');
UPDATE crm.outbox SET status = 'sending', attempts = 1, lease_until = now() + interval '1 minute' WHERE id = 1;
SELECT is(pg_temp.due(), '1@true 2@true 40@true', 'a leased message stays listed (its lease may end)');

-- DELETE and TRUNCATE
DELETE FROM crm.outbox WHERE id = 2;
SELECT is(pg_temp.due(), '1@true 40@true', 'a deleted message leaves the list');
DELETE FROM crm.outbox WHERE id = 5;
SELECT is(pg_temp.due(), '1@true 40@true', 'deleting a sent one changes nothing');

-- who may change it
CREATE ROLE admin_due NOLOGIN;
GRANT crm_admin TO admin_due;
SET ROLE admin_due;
SELECT is(pg_temp.due(), '1@true 40@true', 'crm_admin reads it');
SELECT throws_ok($$DELETE FROM crm.outbox_due$$, '42501', NULL, 'crm_admin does not write it');
SELECT throws_ok($$SELECT crm._outbox_due_forget(1, 'crm.outbox')$$, '42501', NULL,
	'nor deletes from it through the triggers'' function');
UPDATE crm.outbox SET next_attempt_at = now() + interval '2 hours' WHERE id = 1;
SELECT is(pg_temp.due(), '1@true 40@true', 'crm_admin''s changes of crm.outbox keep it (the triggers act as the owner)');
RESET ROLE;
SELECT is(crm._outbox_due_forget(NULL, NULL), NULL, 'the function with NULLs: nothing');

-- a list out of step (rows written with the triggers off) is repaired
SET LOCAL session_replication_role = replica;
INSERT INTO crm.outbox (id, channel, payload) VALUES (7, 'webhook', '{"url": "https://a.example.com/7"}');
UPDATE crm.outbox SET status = 'sent', sent_at = now() WHERE id = 40;
RESET session_replication_role;
SELECT is(pg_temp.due(), '1@true 40@true', 'written with the triggers off: out of step');
SELECT is(crm._outbox_due_rebuild(), 1::bigint, '_outbox_due_rebuild adds the missing one');
SELECT is(pg_temp.due(), '1@true 7@true', 'and drops the one done');

-- a due time of -infinity (written by hand) is due: listed as the rebuild lists it
INSERT INTO crm.outbox (id, channel, payload, next_attempt_at) VALUES (900, 'webhook', '{"url": "https://a.example.com/900"}', '-infinity');
SELECT is((SELECT count(*) FROM crm.outbox_due WHERE message_id = 900 AND next_attempt_at = '-infinity')::int, 1,
	'a message due at -infinity is listed');

TRUNCATE crm.outbox CASCADE;
SELECT is(pg_temp.due(), '', 'TRUNCATE empties it');

SELECT * FROM finish();
ROLLBACK;
