-- Rows unrelated to the deals bench/scaling.sh moves, :rows in each table the
-- automation path touches (items 10,000,000 and up), loaded without firing
-- the automation and without ANALYZE: a database that grew since its
-- sessions planned their statements.  crm.job gets :rows done jobs and a
-- fifth as many pending ones; a tenth of the activities are open and
-- complete with their stage.
SET client_min_messages = warning;
SET session_replication_role = replica;
INSERT INTO crm.job (kind, robot_id, stage_id, entity_type, entity_id, due_at, status, created_at)
	SELECT 'robot', 1, 1, 'deal', 10000000 + g, now() - interval '1 day', 'done', now() - interval '1 day'
	  FROM generate_series(1, :rows) g;
INSERT INTO crm.job (kind, robot_id, stage_id, entity_type, entity_id, due_at)
	SELECT 'robot', 1, 1, 'deal', 10000000 + g, now() + interval '30 days'
	  FROM generate_series(1, :rows / 5) g;
INSERT INTO crm.activity (entity_type, entity_id, type, direction, subject, auto_complete, remote_address)
	SELECT 'deal', 10000000 + g, 'call', 'incoming', 'Call', g % 10 = 0, '+337' || g
	  FROM generate_series(1, :rows) g;
-- (a robot run each, in the robots' log table: crm.robot_log is a view)
INSERT INTO crm.robot_log_entry (stage_id, entity_type, entity_id, robot_ids, actions, statuses, started, finished_at)
	SELECT 1, 'deal', 10000000 + g, '{1}', '{add_comment}', '{done}', ARRAY[now()], ARRAY[now()]
	  FROM generate_series(1, :rows) g;
INSERT INTO crm.outbox (channel, payload, status, entity_type, entity_id, sent_at)
	SELECT 'webhook', '{"url": "http://127.0.0.1/x"}', 'sent', 'deal', 10000000 + g, now()
	  FROM generate_series(1, :rows) g;
INSERT INTO crm.timeline_comment (entity_type, entity_id, text)
	SELECT 'deal', 10000000 + g, 'Comment ' || g FROM generate_series(1, :rows) g;
-- A database that grew was checkpointed since: the load's dirty buffers are
-- written now, not by the measured statements evicting them (no VACUUM or
-- ANALYZE: the statistics stay those of the empty tables).
CHECKPOINT;
