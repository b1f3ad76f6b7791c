-- Setup of one database of bench/scaling.sh: a fresh install, never
-- analyzed.  Deals 1..:deals wait in stage "new"; stage "preparation" has a
-- robot of each kind that leaves something behind for the stage's leavers:
-- an activity completed when the stage changes, a control, a delayed
-- robot and a wait (with a robot after it).  An incoming call moves a deal
-- into "preparation" (a trigger), and a delayed write_log robot on
-- "final_invoice" is what the job runner's jobs run.
SET client_min_messages = warning;
CREATE EXTENSION crm_automation;
INSERT INTO crm.user (id, name) VALUES (1, 'Bench');

SELECT crm.add_robot(crm.stage('deal', 'preparation'), 'create_activity',
		'{"subject": "Call {{title}}", "auto_complete": true}'),
	crm.add_robot(crm.stage('deal', 'preparation'), 'control', '{"after": "1 day", "text": "still here"}'),
	crm.add_robot(crm.stage('deal', 'preparation'), 'add_comment', '{"text": "Reminder for {{title}}"}',
		delay => '{"after": "3 days"}'),
	crm.add_robot(crm.stage('deal', 'preparation'), 'wait', '{"for": "2 days"}'),
	crm.add_robot(crm.stage('deal', 'preparation'), 'add_comment', '{"text": "After the wait"}'),
	crm.add_trigger(crm.stage('deal', 'preparation'), 'incoming_call'),
	crm.add_robot(crm.stage('deal', 'final_invoice'), 'write_log', '{"text": "Job for {{title}}"}',
		delay => '{"after": "1 hour"}', name => 'runner') \g /dev/null

INSERT INTO crm.deal (id, title, responsible_id, amount)
	SELECT g, 'd' || g, 1, g FROM generate_series(1, :deals) g;

-- Moves of deals first .. first + n - 1 into a stage, one statement and one
-- transaction each, as an application makes them.
CREATE PROCEDURE bench_moves(first bigint, n int, stage bigint) LANGUAGE plpgsql AS $$
BEGIN
	FOR i IN first .. first + n - 1 LOOP
		UPDATE crm.deal SET stage_id = stage WHERE id = i;
		COMMIT;
	END LOOP;
END $$;

-- Incoming calls for the same deals (each moves its deal into "preparation").
CREATE PROCEDURE bench_calls(first bigint, n int) LANGUAGE plpgsql AS $$
BEGIN
	FOR i IN first .. first + n - 1 LOOP
		INSERT INTO crm.activity (entity_type, entity_id, type, direction, remote_address, subject)
		VALUES ('deal', i, 'call', 'incoming', '+336' || i, 'Call');
		COMMIT;
	END LOOP;
END $$;

-- Due jobs of the "runner" robot for the same deals (not timed) ...
CREATE PROCEDURE bench_due_jobs(first bigint, n int) LANGUAGE sql AS $$
	UPDATE crm.deal SET stage_id = crm.stage('deal', 'final_invoice')
	 WHERE id BETWEEN first AND first + n - 1;
	UPDATE crm.job SET due_at = now() - interval '1 minute'
	 WHERE status = 'pending' AND entity_type = 'deal' AND entity_id BETWEEN first AND first + n - 1;
$$;

-- ... run by crm.run_next_job(), a transaction each, as the worker does.
CREATE PROCEDURE bench_jobs(n int) LANGUAGE plpgsql AS $$
BEGIN
	FOR i IN 1 .. n LOOP
		IF crm.run_next_job() IS NULL THEN
			RAISE EXCEPTION 'no job was due';
		END IF;
		COMMIT;
	END LOOP;
END $$;

-- ... or by crm.run_due_jobs(), batches of up to 200 in a transaction each,
-- as the job runners do.
CREATE PROCEDURE bench_batches(n int) LANGUAGE plpgsql AS $$
DECLARE
	done int := 0;
	k int;
BEGIN
	WHILE done < n LOOP
		k := crm.run_due_jobs(least(n - done, 200));
		IF k = 0 THEN
			RAISE EXCEPTION 'no job was due';
		END IF;
		done := done + k;
		COMMIT;
	END LOOP;
END $$;
