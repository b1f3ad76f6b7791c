-- crm.run_due_jobs(): due jobs claimed in one batch and run each in a
-- subtransaction of its own; a failing job fails alone, a job an earlier
-- job of the batch cancelled is skipped, crm.job_timeout stops a job that
-- runs too long; crm.cleanup_jobs() deletes old done and cancelled jobs.
BEGIN;
CREATE EXTENSION crm_automation;
SELECT plan(17);

INSERT INTO crm.department (id, name) VALUES (1, 'Sales');
INSERT INTO crm.user (id, name, department_id) VALUES (1, 'Mia', 1);
INSERT INTO crm.deal (id, title, responsible_id) SELECT i, 'deal ' || i, 1 FROM generate_series(1, 30) i;
SELECT crm.stage('deal', 'preparation') AS s \gset
SELECT crm.add_robot(:s, 'add_comment', '{"text": "later for {{title}}"}', delay => '{"after": "1 hour"}') \gset

SELECT is(crm.run_due_jobs(100), 0, 'nothing due: nothing runs');

-- Ten robot jobs and a job without an executor, all due.
UPDATE crm.deal SET stage_id = :s WHERE id <= 10;
INSERT INTO crm.job (kind, entity_type, entity_id, due_at) VALUES ('process_resume', 'deal', 5, now());
UPDATE crm.job SET due_at = now() - interval '1 second' WHERE status = 'pending';
SELECT is(crm.run_due_jobs(100), 11, 'one call runs the eleven due jobs');
SELECT results_eq($$SELECT status, count(*) FROM crm.job GROUP BY status ORDER BY status$$,
	$$VALUES ('done', 10::bigint), ('failed', 1::bigint)$$, 'ten done, the one without an executor failed alone');
SELECT is((SELECT last_error FROM crm.job WHERE kind = 'process_resume'), 'no executor for job kind "process_resume"',
	'its error is kept');
SELECT is((SELECT count(DISTINCT entity_id) FROM crm.timeline_comment WHERE text LIKE 'later for deal %'), 10::bigint,
	'each robot wrote its comment');
SELECT is((SELECT max(attempts) FROM crm.job), 1, 'each job counted one attempt');

-- max_jobs bounds a batch.
UPDATE crm.deal SET stage_id = :s WHERE id BETWEEN 11 AND 15;
UPDATE crm.job SET due_at = now() - interval '1 second' WHERE status = 'pending';
SELECT is(crm.run_due_jobs(2), 2, 'max_jobs 2: two run');
SELECT is((SELECT count(*) FROM crm.job WHERE status = 'pending'), 3::bigint, 'three still pending');
SELECT is(crm.run_due_jobs(), 3, 'the next call runs the rest');
SELECT throws_ok('SELECT crm.run_due_jobs(0)', '22023', 'max_jobs must be between 1 and 10000, not 0',
	'max_jobs is checked');

-- A delayed change_stage that runs first moves the deal out of the stage,
-- which cancels the deal's other job of the same batch: it does not run.
SELECT crm.add_robot(:s, 'change_stage', '{"stage": "executing"}', delay => '{"after": "1 hour"}') AS cs \gset
UPDATE crm.deal SET stage_id = :s WHERE id = 20;
UPDATE crm.job j SET due_at = now() - CASE WHEN r.action = 'change_stage' THEN interval '2 seconds' ELSE interval '1 second' END
  FROM crm.robot r WHERE r.id = j.robot_id AND j.entity_id = 20;
SELECT is(crm.run_due_jobs(), 1, 'one of the two jobs ran');
SELECT results_eq($$SELECT r.action, j.status FROM crm.job j JOIN crm.robot r ON r.id = j.robot_id
	WHERE j.entity_id = 20 ORDER BY r.action$$,
	$$VALUES ('add_comment', 'cancelled'), ('change_stage', 'done')$$,
	'the stage change is done, the comment cancelled by it');
SELECT is((SELECT count(*) FROM crm.timeline_comment WHERE entity_id = 20), 0::bigint, 'no comment for the deal that left');

-- crm.job_timeout: a job that runs longer fails alone, its effects rolled back.
SELECT crm.delete_robot(:cs) IS NULL AS deleted \gset
CREATE FUNCTION slow_comment() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
	IF NEW.text = 'later for deal 25' THEN PERFORM pg_sleep(5); END IF;
	RETURN NEW;
END $$;
CREATE TRIGGER slow_comment BEFORE INSERT ON crm.timeline_comment FOR EACH ROW EXECUTE FUNCTION slow_comment();
UPDATE crm.deal SET stage_id = :s WHERE id BETWEEN 24 AND 26;
UPDATE crm.job SET due_at = now() - interval '1 second' WHERE status = 'pending' AND entity_id BETWEEN 24 AND 26;
SET crm.job_timeout = '200ms';
SELECT is(crm.run_due_jobs(), 3, 'three jobs ran, one too long');
RESET crm.job_timeout;
SELECT results_eq($$SELECT entity_id, status, coalesce(last_error, '') FROM crm.job WHERE entity_id BETWEEN 24 AND 26 ORDER BY entity_id$$,
	$$VALUES (24::bigint, 'done', ''), (25::bigint, 'failed', 'job ran longer than crm.job_timeout (200 ms)'), (26::bigint, 'done', '')$$,
	'the slow one failed at the time limit, the others are done');
SELECT is((SELECT count(*) FROM crm.timeline_comment WHERE entity_id BETWEEN 24 AND 26), 2::bigint,
	'its comment rolled back, theirs kept');

-- Cleanup: done and cancelled jobs older than crm.job_retention go.
UPDATE crm.job SET updated_at = now() - interval '8 days' WHERE entity_id <= 20;
SELECT is(crm.cleanup_jobs(), (SELECT count(*) FROM crm.job WHERE entity_id <= 20 AND status IN ('done', 'cancelled')),
	'crm.cleanup_jobs() deletes the old done and cancelled jobs, failed ones stay');

SELECT * FROM finish();
ROLLBACK;
