
-- ---------------------------------------------------------------------------
-- Robots: the engine's row trigger on the item tables, the catalogue view,
-- and the admin API.  Definitions are validated by crm._validate_robot (C,
-- robot_admin.c) before anything is stored.
-- ---------------------------------------------------------------------------

CREATE FUNCTION crm.item_after() RETURNS trigger
	AS 'MODULE_PATHNAME', 'crm_item_after' LANGUAGE C;
CREATE FUNCTION crm.item_after_statement() RETURNS trigger
	AS 'MODULE_PATHNAME', 'crm_item_after_statement' LANGUAGE C;

-- Robots run when an item enters a stage: on insert, and when stage_id
-- changes (the WHEN clause keeps every other update free of the engine).
-- The row triggers only note the change; the statement trigger runs what
-- its statement noted, in batches (stage_entry.c).
DO $$
DECLARE
	t text;
BEGIN
	FOREACH t IN ARRAY ARRAY['lead', 'deal', 'quote', 'invoice'] LOOP
		EXECUTE format('CREATE TRIGGER item_enter AFTER INSERT ON crm.%I
							FOR EACH ROW EXECUTE FUNCTION crm.item_after(%L)', t, t);
		EXECUTE format('CREATE TRIGGER item_move AFTER UPDATE ON crm.%I
							FOR EACH ROW WHEN (OLD.stage_id IS DISTINCT FROM NEW.stage_id)
							EXECUTE FUNCTION crm.item_after(%L)', t, t);
		EXECUTE format('CREATE TRIGGER item_gone AFTER DELETE ON crm.%I
							FOR EACH ROW EXECUTE FUNCTION crm.item_after(%L)', t, t);
		EXECUTE format('CREATE TRIGGER item_batch AFTER INSERT OR UPDATE OR DELETE ON crm.%I
							FOR EACH STATEMENT EXECUTE FUNCTION crm.item_after_statement()', t);
	END LOOP;
END
$$;
CREATE TRIGGER item_enter AFTER INSERT ON crm.item
	FOR EACH ROW EXECUTE FUNCTION crm.item_after();
CREATE TRIGGER item_move AFTER UPDATE ON crm.item
	FOR EACH ROW WHEN (OLD.stage_id IS DISTINCT FROM NEW.stage_id)
	EXECUTE FUNCTION crm.item_after();
CREATE TRIGGER item_gone AFTER DELETE ON crm.item
	FOR EACH ROW EXECUTE FUNCTION crm.item_after();
CREATE TRIGGER item_batch AFTER INSERT OR UPDATE OR DELETE ON crm.item
	FOR EACH STATEMENT EXECUTE FUNCTION crm.item_after_statement();

-- Leaving a stage completes its auto_complete activities: a small index
-- finds the few that are still open.
CREATE INDEX activity_auto_complete ON crm.activity (entity_type, entity_id)
	WHERE auto_complete AND NOT completed;

-- The supervisor of a user: the head of their department, or for a head,
-- the head of the nearest parent department with another head.
CREATE FUNCTION crm.supervisor_of(user_id bigint) RETURNS bigint
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
	WITH RECURSIVE up(dept, head, depth) AS (
		SELECT d.id, d.head_id, 0
		  FROM crm.user u JOIN crm.department d ON d.id = u.department_id
		 WHERE u.id = supervisor_of.user_id
		UNION ALL
		SELECT p.id, p.head_id, up.depth + 1
		  FROM up JOIN crm.department c ON c.id = up.dept
				  JOIN crm.department p ON p.id = c.parent_id
		 WHERE (up.head IS NULL OR up.head = supervisor_of.user_id) AND up.depth < 64
	)
	SELECT head FROM up
	 WHERE head IS NOT NULL AND head <> supervisor_of.user_id
	 ORDER BY depth LIMIT 1;
$$;

CREATE FUNCTION crm._robot_actions(
	OUT action text, OUT family text, OUT description text, OUT outbound boolean,
	OUT parameters jsonb, OUT outputs text)
RETURNS SETOF record
	AS 'MODULE_PATHNAME', 'crm_robot_actions' LANGUAGE C STABLE;

CREATE VIEW crm.robot_actions AS
	SELECT action, family, description, outbound, parameters, outputs
	  FROM crm._robot_actions();
COMMENT ON VIEW crm.robot_actions IS
	'The actions robots can run, with their parameters (name, type, required)';

CREATE FUNCTION crm._validate_robot(stage_id bigint, action text, params jsonb,
									condition jsonb, delay jsonb, robot_id bigint)
RETURNS void
	AS 'MODULE_PATHNAME', 'crm_validate_robot' LANGUAGE C;

CREATE FUNCTION crm._robot(p_id bigint) RETURNS crm.robot
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
	r crm.robot;
BEGIN
	SELECT * INTO r FROM crm.robot WHERE id = p_id;
	IF NOT FOUND THEN
		RAISE EXCEPTION 'robot % does not exist', p_id
			USING ERRCODE = 'undefined_object',
				  HINT = 'List robots with: SELECT id, stage_id, name, action FROM crm.robot;';
	END IF;
	RETURN r;
END
$$;

CREATE FUNCTION crm._check_robot_name(p_stage_id bigint, p_name text, p_robot_id bigint)
RETURNS void
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
BEGIN
	IF p_name IS NULL THEN
		RETURN;
	END IF;
	IF p_name !~ '^[A-Za-z_][A-Za-z0-9_]{0,62}$' THEN
		RAISE EXCEPTION 'invalid robot name "%"', p_name
			USING ERRCODE = 'invalid_parameter_value',
				  HINT = 'A robot name is an identifier (letters, digits, underscores), used as {=Robot:NAME.output}.';
	END IF;
	IF EXISTS (SELECT FROM crm.robot r WHERE r.stage_id = p_stage_id
				AND lower(r.name) = lower(p_name) AND r.id IS DISTINCT FROM p_robot_id) THEN
		RAISE EXCEPTION 'robot "%" already exists on stage %', p_name, p_stage_id
			USING ERRCODE = 'duplicate_object',
				  HINT = 'Robot names are unique per stage.';
	END IF;
END
$$;

CREATE FUNCTION crm.add_robot(stage_id bigint, action text, params jsonb DEFAULT '{}',
							  condition jsonb DEFAULT NULL, delay jsonb DEFAULT NULL,
							  name text DEFAULT NULL, after_previous boolean DEFAULT false)
RETURNS bigint
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
	s crm.stage := crm._stage(add_robot.stage_id);
	v_id bigint;
BEGIN
	PERFORM crm._check_robot_name(s.id, add_robot.name, NULL);
	PERFORM crm._validate_robot(s.id, add_robot.action, coalesce(add_robot.params, '{}'),
								add_robot.condition, add_robot.delay, NULL);
	INSERT INTO crm.robot (stage_id, name, action, params, condition, delay, after_previous, sort,
						   created_by)
	SELECT s.id, add_robot.name, add_robot.action, coalesce(add_robot.params, '{}'),
		   add_robot.condition, add_robot.delay, coalesce(add_robot.after_previous, false),
		   coalesce(max(r.sort), 0) + 10, nullif(current_setting('crm.user_id')::bigint, 0)
	  FROM crm.robot r WHERE r.stage_id = s.id
	RETURNING id INTO v_id;
	RETURN v_id;
END
$$;
COMMENT ON FUNCTION crm.add_robot(bigint, text, jsonb, jsonb, jsonb, text, boolean) IS
	'Adds a robot to a stage; it runs for every item that enters the stage';

-- NULL leaves a setting unchanged; condition => 'null' or delay => 'null' removes it.
CREATE FUNCTION crm.update_robot(robot_id bigint, params jsonb DEFAULT NULL,
								 condition jsonb DEFAULT NULL, delay jsonb DEFAULT NULL,
								 name text DEFAULT NULL, after_previous boolean DEFAULT NULL,
								 active boolean DEFAULT NULL)
RETURNS void
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
	r crm.robot := crm._robot(update_robot.robot_id);
BEGIN
	IF update_robot.params IS NOT NULL THEN r.params := update_robot.params; END IF;
	IF update_robot.condition IS NOT NULL THEN
		r.condition := CASE WHEN update_robot.condition = 'null' THEN NULL ELSE update_robot.condition END;
	END IF;
	IF update_robot.delay IS NOT NULL THEN
		r.delay := CASE WHEN update_robot.delay = 'null' THEN NULL ELSE update_robot.delay END;
	END IF;
	IF update_robot.name IS NOT NULL THEN r.name := nullif(update_robot.name, ''); END IF;
	IF update_robot.after_previous IS NOT NULL THEN r.after_previous := update_robot.after_previous; END IF;
	IF update_robot.active IS NOT NULL THEN r.active := update_robot.active; END IF;
	PERFORM crm._check_robot_name(r.stage_id, r.name, r.id);
	PERFORM crm._validate_robot(r.stage_id, r.action, r.params, r.condition, r.delay, r.id);
	UPDATE crm.robot SET params = r.params, condition = r.condition, delay = r.delay,
						 name = r.name, after_previous = r.after_previous, active = r.active
	 WHERE id = r.id;
END
$$;

CREATE FUNCTION crm.delete_robot(robot_id bigint) RETURNS void
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp
-- Citus: the robot's row is deleted over the connections that read its jobs
SET citus.multi_shard_modify_mode = 'sequential'
AS $$
DECLARE
	r crm.robot := crm._robot(delete_robot.robot_id);
	-- a parameter: Citus takes no volatile function in an UPDATE of a distributed table
	v_now timestamptz := clock_timestamp();
BEGIN
	-- its scheduled runs go with it
	WITH j AS (UPDATE crm.job SET status = 'cancelled', updated_at = now()
				WHERE job.robot_id = r.id AND status = 'pending' RETURNING log_id)
	UPDATE crm.automation_log l SET status = 'cancelled', finished_at = v_now
	  FROM j WHERE l.id = j.log_id;
	DELETE FROM crm.robot WHERE id = r.id;
END
$$;

-- Copies a robot to another stage (of the same or another pipeline).
CREATE FUNCTION crm.copy_robot(robot_id bigint, to_stage_id bigint) RETURNS bigint
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
	r crm.robot := crm._robot(copy_robot.robot_id);
	s crm.stage := crm._stage(copy_robot.to_stage_id);
	v_id bigint;
BEGIN
	PERFORM crm._check_robot_name(s.id, r.name, NULL);
	PERFORM crm._validate_robot(s.id, r.action, r.params, r.condition, r.delay, NULL);
	INSERT INTO crm.robot (stage_id, name, action, params, condition, delay, after_previous, sort, active)
	SELECT s.id, r.name, r.action, r.params, r.condition, r.delay, r.after_previous,
		   coalesce(max(x.sort), 0) + 10, r.active
	  FROM crm.robot x WHERE x.stage_id = s.id
	RETURNING id INTO v_id;
	RETURN v_id;
END
$$;

-- Moves a robot to another stage, or to another position (sort) on its stage.
CREATE FUNCTION crm.move_robot(robot_id bigint, to_stage_id bigint DEFAULT NULL,
							   sort integer DEFAULT NULL)
RETURNS void
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
	r crm.robot := crm._robot(move_robot.robot_id);
	s crm.stage := crm._stage(coalesce(move_robot.to_stage_id, r.stage_id));
BEGIN
	IF s.id <> r.stage_id THEN
		PERFORM crm._check_robot_name(s.id, r.name, r.id);
		PERFORM crm._validate_robot(s.id, r.action, r.params, r.condition, r.delay, r.id);
	END IF;
	UPDATE crm.robot SET stage_id = s.id,
		sort = coalesce(move_robot.sort,
						CASE WHEN s.id = r.stage_id THEN r.sort
							 ELSE coalesce((SELECT max(x.sort) FROM crm.robot x WHERE x.stage_id = s.id), 0) + 10 END)
	 WHERE id = r.id;
END
$$;

-- An item's automation history, in order.
CREATE FUNCTION crm.item_automation(entity_type text, item_id bigint)
RETURNS TABLE (log_id bigint, kind text, name text, action text, stage text, status text,
			   error text, outputs jsonb, planned_at timestamptz, finished_at timestamptz)
-- PL/pgSQL: Citus plans no SQL function with parameters on distributed
-- tables; a trace row's document is its instance's (the join stays in a shard)
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
BEGIN
	RETURN QUERY
	SELECT * FROM (
		SELECT l.id, l.kind, l.name, l.action, s.code, l.status, l.error,
			   coalesce(l.outputs, l.detail), l.planned_at, l.finished_at
		  FROM crm.robot_log l LEFT JOIN crm.stage s ON s.id = l.stage_id
		 WHERE l.entity_type = item_automation.entity_type AND l.entity_id = item_automation.item_id
		UNION ALL
		-- business processes' activities: "template / activity name or place"
		SELECT p.id, 'process', t.name || ' / ' || coalesce(p.name, p.path), p.type, NULL, p.status,
			   p.error, p.outputs, p.started_at, p.finished_at
		  FROM crm.process_instance i
		  JOIN crm.process_log p ON p.document_id = i.document_id AND p.instance_id = i.id
		  JOIN crm.process_template t ON t.id = i.template_id
		 WHERE i.document_type = item_automation.entity_type AND i.document_id = item_automation.item_id
	) h (log_id, kind, name, action, stage, status, error, outputs, planned_at, finished_at)
	 ORDER BY h.planned_at, h.kind, h.log_id;
END
$$;
