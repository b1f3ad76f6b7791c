-- The scheduler's side of the job table: crm.run_next_job() (what the worker
-- calls, each time in a transaction of its own) runs each due job exactly
-- once, isolates a failing job, and costs the same however many jobs are
-- not due yet.  The worker is off on the regression cluster: this file
-- calls crm.run_next_job() itself.
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS crm_automation CASCADE;
CREATE EXTENSION crm_automation;
RESET client_min_messages;
\set SHOW_CONTEXT never

-- A deal enters "preparation", whose robots run later: one comments, one
-- divides by zero when it runs.
INSERT INTO crm.user (id, name) VALUES (1, 'Sam');
SELECT crm.add_robot(crm.stage('deal', 'preparation'), 'add_comment', '{"text": "an hour later"}',
	delay => '{"after": "1 hour"}', name => 'later') IS NOT NULL AS added;
SELECT crm.add_robot(crm.stage('deal', 'preparation'), 'add_comment', '{"text": "=\"share: \" & {{amount}} / 0"}',
	delay => '{"after": "2 hours"}', name => 'broken') IS NOT NULL AS added;
INSERT INTO crm.deal (id, title, responsible_id, amount, stage_id)
VALUES (1, 'Chairs', 1, 100, crm.stage('deal', 'preparation'));
SELECT j.kind, r.name AS robot, j.status, j.due_at > now() AS in_the_future
  FROM crm.job j JOIN crm.robot r ON r.id = j.robot_id ORDER BY j.due_at;

-- Nothing is due: nothing runs, and the worker would sleep until the
-- first due time.
SELECT crm.run_next_job() AS ran;
SELECT crm.next_job_due() = (SELECT min(due_at) FROM crm.job) AS sleeps_until_the_first;

-- A job kind with no executor yet (process_resume: a process waiting for
-- its task) fails with a clear error and does not hold up the others.
INSERT INTO crm.job (kind, entity_type, entity_id, due_at) VALUES ('process_resume', 'deal', 1, now() - interval '3 minutes');

-- Everything falls due.  Each call runs the earliest due job, once; the
-- failing ones are marked failed with their error, the others run.
UPDATE crm.job SET due_at = now() - interval '1 minute' WHERE robot_id = (SELECT id FROM crm.robot WHERE name = 'later');
UPDATE crm.job SET due_at = now() - interval '30 seconds' WHERE robot_id = (SELECT id FROM crm.robot WHERE name = 'broken');
SELECT crm.run_next_job() IS NOT NULL AS ran;
SELECT crm.run_next_job() IS NOT NULL AS ran;
SELECT crm.run_next_job() IS NOT NULL AS ran;
SELECT crm.run_next_job() IS NOT NULL AS ran_again;
SELECT j.kind, r.name AS robot, j.status, j.attempts, j.last_error
  FROM crm.job j LEFT JOIN crm.robot r ON r.id = j.robot_id ORDER BY j.id;
SELECT r.name AS robot, l.status, l.error FROM crm.robot_log l JOIN crm.robot r ON r.id = l.robot_id ORDER BY l.id;
SELECT text FROM crm.timeline_comment ORDER BY id;

-- The claim reads the index of pending jobs from its start and stops at the
-- first one not yet due, so a call costs the same with one or thousands of
-- jobs in the future (pg_stat_xact_user_tables counts this backend's reads
-- not yet reported; the difference is the call's).
INSERT INTO crm.job (kind, entity_type, entity_id, due_at)
SELECT 'process_timer', 'deal', i, now() + interval '1 day' + make_interval(secs => i)
  FROM generate_series(1, 5000) i;
BEGIN;
SELECT idx_tup_fetch AS fetched_before FROM pg_stat_xact_user_tables WHERE relid = 'crm.job'::regclass \gset
SELECT crm.run_next_job() AS ran, crm.next_job_due() > now() + interval '1 day' AS next_due_tomorrow;
SELECT idx_tup_fetch - :fetched_before < 10 AS future_jobs_not_read
  FROM pg_stat_xact_user_tables WHERE relid = 'crm.job'::regclass;
ROLLBACK;
