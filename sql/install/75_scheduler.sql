
-- ---------------------------------------------------------------------------
-- Scheduler hooks.  The worker sleeps until the earliest pending job
-- (crm.next_job_due(), index job_due); these keep due times right when what
-- they depend on changes, in the same transaction, so the worker's wake-up
-- at commit sees the new time.
-- ---------------------------------------------------------------------------

-- A wait with until_client_activity ends when the client calls, writes or
-- messages: the item's pending wait falls due now, a robot's (kind 'wait')
-- and a business process's (a process_timer whose context says so).  These
-- triggers' plans are kept by the session, made from the statistics of
-- their first calls: enable_seqscan = off keeps them on the index of an
-- item's pending jobs (job_item) and the robot's primary key however
-- crm.job grew since (test/integration/automation_plans.sh).
CREATE FUNCTION crm._end_waits_on_activity() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
SET enable_seqscan = off SET jit = off AS $$
BEGIN
	UPDATE crm.job j
	   SET due_at = least(j.due_at, now()), updated_at = now(),
		   context = j.context || jsonb_build_object('ended_by_activity', NEW.id)
	 WHERE j.status = 'pending' AND j.kind = 'wait'
	   AND j.entity_type = NEW.entity_type AND j.entity_id = NEW.entity_id
	   AND coalesce((SELECT (r.params ->> 'until_client_activity')::boolean
					   FROM crm.robot r WHERE r.id = j.robot_id), false);
	UPDATE crm.job j
	   SET due_at = least(j.due_at, now()), updated_at = now(),
		   context = j.context || jsonb_build_object('ended_by_activity', NEW.id)
	 WHERE j.status = 'pending' AND j.kind = 'process_timer'
	   AND j.entity_type = NEW.entity_type AND j.entity_id = NEW.entity_id
	   AND j.context @> '{"until_client_activity": true}';
	RETURN NULL;
END
$$;
CREATE TRIGGER end_waits AFTER INSERT ON crm.activity
	FOR EACH ROW WHEN (NEW.direction = 'incoming' AND NEW.entity_id IS NOT NULL)
	EXECUTE FUNCTION crm._end_waits_on_activity();

-- A robocall robot with wait_for_result holds the robots after it in a wait
-- job (robots.c); the wait ends when the worker records its message sent or
-- dead.  The WHEN clause keeps the worker's other records free of it.
CREATE FUNCTION crm._end_waits_on_message() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
SET enable_seqscan = off SET jit = off AS $$
BEGIN
	UPDATE crm.job j
	   SET due_at = least(j.due_at, now()), updated_at = now(),
		   context = j.context || jsonb_build_object('message_id', NEW.id, 'message_status', NEW.status)
	 WHERE j.status = 'pending' AND j.kind = 'wait'
	   AND j.entity_type = NEW.entity_type AND j.entity_id = NEW.entity_id
	   AND j.robot_id = NEW.robot_id;
	RETURN NULL;
END
$$;
CREATE TRIGGER end_waits AFTER UPDATE OF status ON crm.outbox
	FOR EACH ROW WHEN (NEW.status IN ('sent', 'dead') AND NEW.channel = 'robocall'
					   AND NEW.robot_id IS NOT NULL AND NEW.payload @> '{"wait_for_result": true}')
	EXECUTE FUNCTION crm._end_waits_on_message();

-- A business process paused by a robocall with wait_for_result (a
-- process_timer job whose context names the message, processes.c) goes on
-- when the worker records the call sent or dead.
CREATE FUNCTION crm._resume_on_message() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
SET enable_seqscan = off SET jit = off AS $$
BEGIN
	UPDATE crm.job j
	   SET due_at = least(j.due_at, now()), updated_at = now(),
		   context = j.context || jsonb_build_object('message_status', NEW.status)
	 WHERE j.status = 'pending' AND j.kind = 'process_timer'
	   AND j.entity_type = NEW.entity_type AND j.entity_id = NEW.entity_id
	   AND j.process_instance_id = NEW.process_instance_id
	   AND j.context @> jsonb_build_object('message_id', NEW.id);
	RETURN NULL;
END
$$;
CREATE TRIGGER resume_processes AFTER UPDATE OF status ON crm.outbox
	FOR EACH ROW WHEN (NEW.status IN ('sent', 'dead') AND NEW.channel = 'robocall'
					   AND NEW.process_instance_id IS NOT NULL
					   AND NEW.payload @> '{"wait_for_result": true}')
	EXECUTE FUNCTION crm._resume_on_message();

-- A business process paused by create_task with "wait" goes on when its
-- task is completed, and fails there when the task is deleted: the
-- instance's job (far ahead until then) falls due now, and the job runner
-- resumes it in a transaction of its own, not in the user's UPDATE.
CREATE FUNCTION crm._resume_on_task() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
SET enable_seqscan = off SET jit = off AS $$
DECLARE
	t crm.task := CASE WHEN TG_OP = 'DELETE' THEN OLD ELSE NEW END;
	v_type text;
	v_id bigint;
BEGIN
	-- the instance's document first: the UPDATE then probes the index of
	-- the document's pending jobs (job_item), whatever the statistics.  A
	-- process's task is its document's, which names the instance's shard
	-- on a distributed installation (docs/citus.md); else by id alone.
	SELECT i.document_type, i.document_id INTO v_type, v_id
	  FROM crm.process_instance i WHERE i.id = t.process_instance_id AND i.document_id = t.entity_id;
	IF NOT FOUND THEN
		SELECT i.document_type, i.document_id INTO v_type, v_id
		  FROM crm.process_instance i WHERE i.id = t.process_instance_id;
		IF NOT FOUND THEN
			RETURN NULL;
		END IF;
	END IF;
	UPDATE crm.job j
	   SET due_at = least(j.due_at, now()), updated_at = now(),
		   context = j.context || jsonb_build_object('task_status',
						CASE WHEN TG_OP = 'DELETE' THEN 'deleted' ELSE t.status END)
	 WHERE j.status = 'pending' AND j.kind = 'process_timer'
	   AND j.entity_type = v_type AND j.entity_id = v_id
	   AND j.process_instance_id = t.process_instance_id
	   AND j.context @> jsonb_build_object('task_id', t.id);
	RETURN NULL;
END
$$;
CREATE TRIGGER resume_processes AFTER UPDATE OF status ON crm.task
	FOR EACH ROW WHEN (NEW.process_instance_id IS NOT NULL AND NEW.status = 'completed'
					   AND OLD.status <> 'completed')
	EXECUTE FUNCTION crm._resume_on_task();
CREATE TRIGGER resume_processes_on_delete AFTER DELETE ON crm.task
	FOR EACH ROW WHEN (OLD.process_instance_id IS NOT NULL)
	EXECUTE FUNCTION crm._resume_on_task();
