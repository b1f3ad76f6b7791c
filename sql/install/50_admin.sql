
-- ---------------------------------------------------------------------------
-- Admin functions: pipelines, stages, smart processes, custom fields.
-- Each checks its input and raises an error with an errcode, a message that
-- names the bad value, and a hint; an error leaves nothing stored.
-- ---------------------------------------------------------------------------

-- Returns the entity type row, or raises a clear error.
CREATE FUNCTION crm._entity_type(p_code text) RETURNS crm.entity_type
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
	et crm.entity_type;
BEGIN
	SELECT * INTO et FROM crm.entity_type WHERE code = lower(p_code);
	IF NOT FOUND THEN
		RAISE EXCEPTION 'unknown entity type "%"', p_code
			USING ERRCODE = 'undefined_object',
				  HINT = 'Known entity types: ' ||
					(SELECT string_agg(code, ', ' ORDER BY id) FROM crm.entity_type) || '.';
	END IF;
	RETURN et;
END
$$;

CREATE FUNCTION crm._pipeline(p_id bigint) RETURNS crm.pipeline
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
	p crm.pipeline;
BEGIN
	IF p_id IS NULL THEN
		RAISE EXCEPTION 'pipeline id must not be null'
			USING ERRCODE = 'null_value_not_allowed',
				  HINT = 'List pipelines with: SELECT id, entity_type, name FROM crm.pipeline;';
	END IF;
	SELECT * INTO p FROM crm.pipeline WHERE id = p_id;
	IF NOT FOUND THEN
		RAISE EXCEPTION 'pipeline % does not exist', p_id
			USING ERRCODE = 'undefined_object',
				  HINT = 'List pipelines with: SELECT id, entity_type, name FROM crm.pipeline;';
	END IF;
	RETURN p;
END
$$;

CREATE FUNCTION crm._stage(p_id bigint) RETURNS crm.stage
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
	s crm.stage;
BEGIN
	IF p_id IS NULL THEN
		RAISE EXCEPTION 'stage id must not be null'
			USING ERRCODE = 'null_value_not_allowed',
				  HINT = 'Find a stage id with crm.stage(entity_type, code).';
	END IF;
	SELECT * INTO s FROM crm.stage WHERE id = p_id;
	IF NOT FOUND THEN
		RAISE EXCEPTION 'stage % does not exist', p_id
			USING ERRCODE = 'undefined_object',
				  HINT = 'Find a stage id with crm.stage(entity_type, code).';
	END IF;
	RETURN s;
END
$$;

-- Stage codes are identifiers: lower case, digits and underscores.
CREATE FUNCTION crm._stage_code(p_code text) RETURNS text
LANGUAGE plpgsql IMMUTABLE SET search_path = pg_catalog, pg_temp AS $$
BEGIN
	IF p_code IS NULL OR lower(p_code) !~ '^[a-z][a-z0-9_]{0,49}$' THEN
		RAISE EXCEPTION 'invalid stage code "%"', p_code
			USING ERRCODE = 'invalid_parameter_value',
				  DETAIL = 'A stage code starts with a letter and holds only letters, digits and underscores (at most 50).',
				  HINT = 'For example: ''negotiation'' or ''won''.';
	END IF;
	RETURN lower(p_code);
END
$$;

CREATE FUNCTION crm._check_semantics(p_semantics text) RETURNS void
LANGUAGE plpgsql IMMUTABLE SET search_path = pg_catalog, pg_temp AS $$
BEGIN
	IF p_semantics IS NULL OR p_semantics NOT IN ('process', 'success', 'failure') THEN
		RAISE EXCEPTION 'invalid stage semantics "%"', p_semantics
			USING ERRCODE = 'invalid_parameter_value',
				  HINT = 'Semantics is one of: process, success, failure.';
	END IF;
END
$$;

-- Renumbers a pipeline's stages 10, 20, 30 ... in their current order
-- (sort, then age), so that a new sort value can always fit in between.
CREATE FUNCTION crm._renumber_stages(p_pipeline_id bigint) RETURNS void
LANGUAGE sql SET search_path = pg_catalog, pg_temp AS $$
	UPDATE crm.stage s SET sort = o.n * 10
	  FROM (SELECT id, row_number() OVER (ORDER BY sort, id) AS n
			  FROM crm.stage WHERE pipeline_id = p_pipeline_id) o
	 WHERE s.id = o.id AND s.sort IS DISTINCT FROM o.n * 10;
$$;

-- Sort value that places a new stage of this semantics where a CRM puts it:
-- process stages after the last process stage, final ones at the end.
CREATE FUNCTION crm._default_sort(p_pipeline_id bigint, p_semantics text) RETURNS integer
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
	SELECT CASE WHEN p_semantics = 'process'
				THEN coalesce((SELECT max(sort) FROM crm.stage
								WHERE pipeline_id = p_pipeline_id AND semantics = 'process'), 0) + 5
				ELSE coalesce((SELECT max(sort) FROM crm.stage
								WHERE pipeline_id = p_pipeline_id), 0) + 10
		   END;
$$;

CREATE FUNCTION crm.add_stage(pipeline_id bigint, code text, name text,
							  semantics text DEFAULT 'process', sort integer DEFAULT NULL)
RETURNS bigint
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
	p crm.pipeline := crm._pipeline(add_stage.pipeline_id);
	v_code text := crm._stage_code(add_stage.code);
	v_id bigint;
BEGIN
	PERFORM crm._check_semantics(add_stage.semantics);
	IF add_stage.name IS NULL OR btrim(add_stage.name) = '' THEN
		RAISE EXCEPTION 'stage name must not be empty'
			USING ERRCODE = 'invalid_parameter_value',
				  HINT = 'Give the stage a name shown to users, e.g. ''Negotiation''.';
	END IF;
	IF EXISTS (SELECT FROM crm.stage s WHERE s.pipeline_id = p.id AND s.code = v_code) THEN
		RAISE EXCEPTION 'stage "%" already exists in pipeline "%"', v_code, p.name
			USING ERRCODE = 'duplicate_object',
				  HINT = 'Stage codes are unique within a pipeline; choose another code or use crm.rename_stage.';
	END IF;
	IF add_stage.semantics = 'success'
	   AND EXISTS (SELECT FROM crm.stage s WHERE s.pipeline_id = p.id AND s.semantics = 'success') THEN
		RAISE EXCEPTION 'pipeline "%" already has a success stage', p.name
			USING ERRCODE = 'unique_violation',
				  DETAIL = 'A pipeline has one success stage and any number of failure stages.',
				  HINT = 'Add it as a process or failure stage, or delete the existing success stage.';
	END IF;

	INSERT INTO crm.stage (pipeline_id, code, name, sort, semantics)
	VALUES (p.id, v_code, btrim(add_stage.name),
			coalesce(add_stage.sort, crm._default_sort(p.id, add_stage.semantics)),
			add_stage.semantics)
	RETURNING id INTO v_id;
	PERFORM crm._renumber_stages(p.id);
	RETURN v_id;
END
$$;
COMMENT ON FUNCTION crm.add_stage(bigint, text, text, text, integer) IS
	'Adds a stage to a pipeline; sort orders stages (NULL: process stages after the last process stage, final stages at the end)';

-- Moves a stage to a new position given as a sort value (see crm.add_stage).
CREATE FUNCTION crm.move_stage(stage_id bigint, sort integer) RETURNS void
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
	s crm.stage := crm._stage(move_stage.stage_id);
BEGIN
	IF move_stage.sort IS NULL THEN
		RAISE EXCEPTION 'sort must not be null'
			USING ERRCODE = 'null_value_not_allowed',
				  HINT = 'Stages are numbered 10, 20, 30 ...; 15 puts a stage between the first two.';
	END IF;
	-- Ties go before the stage that holds the position now.
	UPDATE crm.stage SET sort = move_stage.sort WHERE id = s.id;
	UPDATE crm.stage st SET sort = st.sort + 1
	 WHERE st.pipeline_id = s.pipeline_id AND st.id <> s.id AND st.sort >= move_stage.sort
	   AND EXISTS (SELECT FROM crm.stage x WHERE x.pipeline_id = s.pipeline_id
				   AND x.id <> s.id AND x.sort = move_stage.sort);
	PERFORM crm._renumber_stages(s.pipeline_id);
END
$$;

CREATE FUNCTION crm.rename_stage(stage_id bigint, name text, code text DEFAULT NULL)
RETURNS void
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
	s crm.stage := crm._stage(rename_stage.stage_id);
	v_code text := CASE WHEN rename_stage.code IS NULL THEN s.code
						ELSE crm._stage_code(rename_stage.code) END;
BEGIN
	IF rename_stage.name IS NULL OR btrim(rename_stage.name) = '' THEN
		RAISE EXCEPTION 'stage name must not be empty'
			USING ERRCODE = 'invalid_parameter_value',
				  HINT = 'Give the stage a name shown to users, e.g. ''Negotiation''.';
	END IF;
	IF v_code <> s.code AND EXISTS (SELECT FROM crm.stage x
									WHERE x.pipeline_id = s.pipeline_id AND x.code = v_code) THEN
		RAISE EXCEPTION 'stage "%" already exists in this pipeline', v_code
			USING ERRCODE = 'duplicate_object',
				  HINT = 'Stage codes are unique within a pipeline.';
	END IF;
	UPDATE crm.stage SET name = btrim(rename_stage.name), code = v_code WHERE id = s.id;
END
$$;

-- True when some item of the stage's entity type is in it.
CREATE FUNCTION crm._stage_in_use(p_stage crm.stage, OUT in_use boolean, OUT table_name text)
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
	et crm.entity_type;
BEGIN
	SELECT e.* INTO et FROM crm.entity_type e JOIN crm.pipeline p ON p.entity_type = e.code
	 WHERE p.id = p_stage.pipeline_id;
	table_name := 'crm.' || et.table_name;
	EXECUTE format('SELECT EXISTS (SELECT 1 FROM crm.%I WHERE stage_id = $1)', et.table_name)
		INTO in_use USING p_stage.id;
END
$$;

CREATE FUNCTION crm.delete_stage(stage_id bigint) RETURNS void
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp
-- Citus: rows of a reference table that distributed tables refer to are
-- deleted over the connections that looked for the items
SET citus.multi_shard_modify_mode = 'sequential'
AS $$
DECLARE
	s crm.stage := crm._stage(delete_stage.stage_id);
	u record;
BEGIN
	u := crm._stage_in_use(s);
	IF u.in_use THEN
		RAISE EXCEPTION 'stage "%" still holds items', s.code
			USING ERRCODE = 'object_in_use',
				  DETAIL = format('Items of %s are in stage %s.', u.table_name, s.id),
				  HINT = format('Move them to another stage first: UPDATE %s SET stage_id = ... WHERE stage_id = %s;',
								u.table_name, s.id);
	END IF;
	IF NOT EXISTS (SELECT FROM crm.stage x WHERE x.pipeline_id = s.pipeline_id AND x.id <> s.id) THEN
		RAISE EXCEPTION 'stage "%" is the last stage of its pipeline', s.code
			USING ERRCODE = 'object_in_use',
				  HINT = 'A pipeline needs at least one stage; delete the pipeline instead with crm.delete_pipeline.';
	END IF;
	-- The stage's robots and triggers go with it.
	DELETE FROM crm.stage WHERE id = s.id;
	PERFORM crm._renumber_stages(s.pipeline_id);
END
$$;

CREATE FUNCTION crm.add_pipeline(entity_type text, name text) RETURNS bigint
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
	et crm.entity_type := crm._entity_type(add_pipeline.entity_type);
	v_id bigint;
BEGIN
	IF NOT et.has_stages THEN
		RAISE EXCEPTION 'entity type "%" has no pipelines', et.code
			USING ERRCODE = 'feature_not_supported',
				  HINT = 'Pipelines exist for leads, deals, quotes, invoices and smart processes.';
	END IF;
	IF NOT et.multiple_pipelines THEN
		RAISE EXCEPTION 'entity type "%" has a single pipeline', et.code
			USING ERRCODE = 'feature_not_supported',
				  HINT = 'Add stages to its default pipeline: crm.add_stage(crm.default_pipeline(''' || et.code || '''), ...).';
	END IF;
	IF add_pipeline.name IS NULL OR btrim(add_pipeline.name) = '' THEN
		RAISE EXCEPTION 'pipeline name must not be empty'
			USING ERRCODE = 'invalid_parameter_value',
				  HINT = 'Give the pipeline a name, e.g. ''Wholesale''.';
	END IF;
	IF EXISTS (SELECT FROM crm.pipeline p WHERE p.entity_type = et.code AND p.name = btrim(add_pipeline.name)) THEN
		RAISE EXCEPTION 'pipeline "%" already exists for %', btrim(add_pipeline.name), et.code
			USING ERRCODE = 'duplicate_object',
				  HINT = 'Pipeline names are unique per entity type.';
	END IF;
	INSERT INTO crm.pipeline (entity_type, name, sort)
	SELECT et.code, btrim(add_pipeline.name), coalesce(max(p.sort), 0) + 10
	  FROM crm.pipeline p WHERE p.entity_type = et.code
	RETURNING id INTO v_id;
	RETURN v_id;
END
$$;
COMMENT ON FUNCTION crm.add_pipeline(text, text) IS
	'Adds an empty pipeline to an entity type with several pipelines (deals, smart processes); add its stages with crm.add_stage';

CREATE FUNCTION crm.delete_pipeline(pipeline_id bigint) RETURNS void
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp
-- Citus: rows of a reference table that distributed tables refer to are
-- deleted over the connections that looked for the items
SET citus.multi_shard_modify_mode = 'sequential'
AS $$
DECLARE
	p crm.pipeline := crm._pipeline(delete_pipeline.pipeline_id);
	s crm.stage;
	u record;
BEGIN
	IF p.is_default THEN
		RAISE EXCEPTION 'pipeline "%" is the default pipeline of %', p.name, p.entity_type
			USING ERRCODE = 'object_in_use',
				  HINT = 'New items land in the default pipeline; it cannot be deleted.';
	END IF;
	FOR s IN SELECT * FROM crm.stage WHERE stage.pipeline_id = p.id LOOP
		u := crm._stage_in_use(s);
		IF u.in_use THEN
			RAISE EXCEPTION 'pipeline "%" still holds items', p.name
				USING ERRCODE = 'object_in_use',
					  DETAIL = format('Items of %s are in its stage "%s".', u.table_name, s.code),
					  HINT = 'Move them to another pipeline first.';
		END IF;
	END LOOP;
	DELETE FROM crm.pipeline WHERE id = p.id;
END
$$;

CREATE FUNCTION crm.default_pipeline(entity_type text) RETURNS bigint
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
	et crm.entity_type := crm._entity_type(default_pipeline.entity_type);
	v_id bigint;
BEGIN
	SELECT id INTO v_id FROM crm.pipeline p WHERE p.entity_type = et.code AND p.is_default;
	IF v_id IS NULL THEN
		RAISE EXCEPTION 'entity type "%" has no pipelines', et.code
			USING ERRCODE = 'feature_not_supported',
				  HINT = 'Pipelines exist for leads, deals, quotes, invoices and smart processes.';
	END IF;
	RETURN v_id;
END
$$;

-- The id of a stage, by entity type and code, in the default pipeline or the
-- one given (by id or by name).
CREATE FUNCTION crm.stage(entity_type text, code text, pipeline bigint DEFAULT NULL)
RETURNS bigint
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
	et crm.entity_type := crm._entity_type(stage.entity_type);
	p crm.pipeline;
	v_id bigint;
BEGIN
	IF stage.pipeline IS NULL THEN
		p := crm._pipeline(crm.default_pipeline(et.code));
	ELSE
		p := crm._pipeline(stage.pipeline);
		IF p.entity_type <> et.code THEN
			RAISE EXCEPTION 'pipeline % belongs to %, not %', p.id, p.entity_type, et.code
				USING ERRCODE = 'invalid_parameter_value',
					  HINT = format('List the pipelines of %s with: SELECT id, name FROM crm.pipeline WHERE entity_type = %L;',
									et.code, et.code);
		END IF;
	END IF;
	SELECT id INTO v_id FROM crm.stage s WHERE s.pipeline_id = p.id AND s.code = lower(stage.code);
	IF v_id IS NULL THEN
		RAISE EXCEPTION 'stage "%" does not exist in pipeline "%" of %', stage.code, p.name, et.code
			USING ERRCODE = 'undefined_object',
				  HINT = 'Its stages are: ' || coalesce((SELECT string_agg(s.code, ', ' ORDER BY s.sort)
														 FROM crm.stage s WHERE s.pipeline_id = p.id), 'none') || '.';
	END IF;
	RETURN v_id;
END
$$;

CREATE FUNCTION crm.stage(entity_type text, code text, pipeline text) RETURNS bigint
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
	et crm.entity_type := crm._entity_type(stage.entity_type);
	v_pipeline bigint;
BEGIN
	SELECT id INTO v_pipeline FROM crm.pipeline p WHERE p.entity_type = et.code AND p.name = stage.pipeline;
	IF v_pipeline IS NULL THEN
		RAISE EXCEPTION 'pipeline "%" does not exist for %', stage.pipeline, et.code
			USING ERRCODE = 'undefined_object',
				  HINT = 'Its pipelines are: ' || coalesce((SELECT string_agg(format('%L', p.name), ', ' ORDER BY p.sort)
															FROM crm.pipeline p WHERE p.entity_type = et.code), 'none') || '.';
	END IF;
	RETURN crm.stage(et.code, stage.code, v_pipeline);
END
$$;

-- Creates the default stages of an entity type's kind in a pipeline.
CREATE FUNCTION crm._add_default_stages(p_pipeline_id bigint, p_kind text) RETURNS void
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
	r record;
BEGIN
	FOR r IN
		SELECT * FROM (VALUES
			('lead', 1, 'new', 'New', 'process'),
			('lead', 2, 'in_process', 'In process', 'process'),
			('lead', 3, 'processed', 'Processed', 'process'),
			('lead', 4, 'converted', 'Converted', 'success'),
			('lead', 5, 'junk', 'Junk lead', 'failure'),
			('deal', 1, 'new', 'New', 'process'),
			('deal', 2, 'preparation', 'Preparing documents', 'process'),
			('deal', 3, 'prepayment_invoice', 'Prepayment invoice', 'process'),
			('deal', 4, 'executing', 'In progress', 'process'),
			('deal', 5, 'final_invoice', 'Final invoice', 'process'),
			('deal', 6, 'won', 'Deal won', 'success'),
			('deal', 7, 'lost', 'Deal lost', 'failure'),
			('quote', 1, 'draft', 'New', 'process'),
			('quote', 2, 'sent', 'Sent to client', 'process'),
			('quote', 3, 'received', 'Received', 'process'),
			('quote', 4, 'approved', 'Approved', 'success'),
			('quote', 5, 'declined', 'Declined', 'failure'),
			('invoice', 1, 'new', 'New', 'process'),
			('invoice', 2, 'sent', 'Sent to client', 'process'),
			('invoice', 3, 'paid', 'Paid', 'success'),
			('invoice', 4, 'declined', 'Declined', 'failure'),
			('smart', 1, 'new', 'New', 'process'),
			('smart', 2, 'preparation', 'Preparation', 'process'),
			('smart', 3, 'client', 'Waiting for client', 'process'),
			('smart', 4, 'success', 'Success', 'success'),
			('smart', 5, 'fail', 'Failure', 'failure')
		) AS d(kind, n, code, name, semantics)
		WHERE d.kind = p_kind ORDER BY d.n
	LOOP
		INSERT INTO crm.stage (pipeline_id, code, name, sort, semantics)
		VALUES (p_pipeline_id, r.code, r.name, r.n * 10, r.semantics);
	END LOOP;
END
$$;

CREATE FUNCTION crm.create_smart_process(code text, name text) RETURNS integer
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
	v_code text := lower(create_smart_process.code);
	v_id integer;
	v_pipeline bigint;
BEGIN
	IF v_code IS NULL OR v_code !~ '^[a-z][a-z0-9_]{0,39}$' THEN
		RAISE EXCEPTION 'invalid smart process code "%"', create_smart_process.code
			USING ERRCODE = 'invalid_parameter_value',
				  DETAIL = 'A code starts with a letter and holds only letters, digits and underscores (at most 40).',
				  HINT = 'For example: ''delivery'' or ''repair_order''.';
	END IF;
	IF create_smart_process.name IS NULL OR btrim(create_smart_process.name) = '' THEN
		RAISE EXCEPTION 'smart process name must not be empty'
			USING ERRCODE = 'invalid_parameter_value',
				  HINT = 'Give it a name shown to users, e.g. ''Deliveries''.';
	END IF;
	IF EXISTS (SELECT FROM crm.entity_type e WHERE e.code = v_code) THEN
		RAISE EXCEPTION 'entity type "%" already exists', v_code
			USING ERRCODE = 'duplicate_object',
				  HINT = 'Entity type codes are unique; choose another code.';
	END IF;
	v_id := nextval('crm.smart_process_id_seq');
	INSERT INTO crm.entity_type (id, code, name, table_name, id_prefix, has_stages,
								 multiple_pipelines, is_smart)
	VALUES (v_id, v_code, btrim(create_smart_process.name), 'item',
			'T' || to_hex(v_id), true, true, true);
	INSERT INTO crm.pipeline (entity_type, name, is_default)
	VALUES (v_code, 'General', true) RETURNING id INTO v_pipeline;
	PERFORM crm._add_default_stages(v_pipeline, 'smart');
	RETURN v_id;
END
$$;
COMMENT ON FUNCTION crm.create_smart_process(text, text) IS
	'Creates a custom entity type whose items live in crm.item, with a default pipeline of stages';

-- Registers a custom field, stored in the items' fields jsonb under its code.
CREATE FUNCTION crm.add_field(entity_type text, code text, name text, type text DEFAULT 'text',
							  multiple boolean DEFAULT false)
RETURNS bigint
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
	et crm.entity_type := crm._entity_type(add_field.entity_type);
	v_id bigint;
BEGIN
	IF add_field.code IS NULL OR add_field.code !~ '^[A-Za-z][A-Za-z0-9_]{0,49}$' THEN
		RAISE EXCEPTION 'invalid field code "%"', add_field.code
			USING ERRCODE = 'invalid_parameter_value',
				  HINT = 'A field code starts with a letter and holds only letters, digits and underscores, e.g. ''UF_DELIVERY_DATE''.';
	END IF;
	IF add_field.type IS NULL OR add_field.type NOT IN ('text', 'number', 'boolean', 'date', 'datetime',
														'user', 'list', 'file', 'url', 'money', 'booking') THEN
		RAISE EXCEPTION 'invalid field type "%"', add_field.type
			USING ERRCODE = 'invalid_parameter_value',
				  HINT = 'Field types: text, number, boolean, date, datetime, user, list, file, url, money, booking.';
	END IF;
	IF EXISTS (SELECT FROM information_schema.columns c
				WHERE c.table_schema = 'crm' AND c.table_name = et.table_name
				  AND c.column_name = lower(add_field.code))
	   OR EXISTS (SELECT FROM crm.user_field f
				   WHERE f.entity_type = et.code AND upper(f.code) = upper(add_field.code)) THEN
		RAISE EXCEPTION 'field "%" already exists for %', add_field.code, et.code
			USING ERRCODE = 'duplicate_object',
				  HINT = 'Field codes are case-insensitive and unique per entity type.';
	END IF;
	INSERT INTO crm.user_field (entity_type, code, name, type, multiple)
	VALUES (et.code, add_field.code, coalesce(nullif(btrim(add_field.name), ''), add_field.code),
			add_field.type, add_field.multiple)
	RETURNING id INTO v_id;
	RETURN v_id;
END
$$;

-- The acting user for the current transaction only: what an application
-- behind a transaction pooler (pgbouncer in transaction mode) must use, since
-- a plain SET crm.user_id stays with the server connection and reaches
-- other clients' transactions.  Same as SET LOCAL crm.user_id; 0 or NULL
-- means the system.
CREATE FUNCTION crm.set_user(user_id bigint) RETURNS bigint
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
BEGIN
	IF coalesce(user_id, 0) <> 0 AND NOT EXISTS (SELECT FROM crm.user u WHERE u.id = set_user.user_id) THEN
		RAISE EXCEPTION 'user % does not exist', user_id
			USING ERRCODE = 'no_data_found',
				  HINT = 'List users with: SELECT id, name FROM crm.user;';
	END IF;
	IF coalesce(user_id, 0) < 0 OR coalesce(user_id, 0) > 2147483647 THEN
		RAISE EXCEPTION 'user id % is out of range', user_id
			USING ERRCODE = 'numeric_value_out_of_range',
				  HINT = 'crm.user_id holds ids from 1 to 2147483647.';
	END IF;
	RETURN set_config('crm.user_id', coalesce(user_id, 0)::text, true)::bigint;
END
$$;
COMMENT ON FUNCTION crm.set_user(bigint) IS
	'Sets the acting CRM user for the current transaction only (safe behind a transaction pooler)';
