
-- ---------------------------------------------------------------------------
-- Business processes (SPEC §5): templates, instances and their admin API.
-- Definitions are validated by crm._validate_process_template (C,
-- process_admin.c) before anything is stored; instances run in C
-- (processes.c), their timers are crm.job rows of kind 'process_timer'.
-- ---------------------------------------------------------------------------

CREATE FUNCTION crm._validate_process_template(document_type text, definition jsonb)
RETURNS void
	AS 'MODULE_PATHNAME', 'crm_validate_process_template' LANGUAGE C STRICT;

-- The document type of a template: an entity type, or feed_post / drive_file
-- (a row of crm.feed_post / crm.drive_file).
CREATE FUNCTION crm._process_document_type(p_type text) RETURNS text
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
BEGIN
	IF p_type IS NULL THEN
		RAISE EXCEPTION 'document_type must not be null'
			USING ERRCODE = 'null_value_not_allowed',
				  HINT = 'Document types: an entity type (lead, deal, ...), feed_post or drive_file.';
	END IF;
	IF lower(p_type) IN ('feed_post', 'drive_file') THEN
		RETURN lower(p_type);
	END IF;
	IF NOT EXISTS (SELECT FROM crm.entity_type WHERE code = lower(p_type)) THEN
		RAISE EXCEPTION 'unknown document type "%"', p_type
			USING ERRCODE = 'undefined_object',
				  HINT = 'Document types: ' ||
					(SELECT string_agg(code, ', ' ORDER BY id) FROM crm.entity_type) ||
					' (entity types), feed_post and drive_file.';
	END IF;
	RETURN (crm._entity_type(p_type)).code;
END
$$;

CREATE FUNCTION crm._check_auto_start(p_auto_start text[]) RETURNS void
LANGUAGE plpgsql IMMUTABLE SET search_path = pg_catalog, pg_temp AS $$
BEGIN
	IF p_auto_start IS NOT NULL AND NOT p_auto_start <@ ARRAY['add', 'modify'] THEN
		RAISE EXCEPTION 'invalid auto_start %', p_auto_start
			USING ERRCODE = 'invalid_parameter_value',
				  HINT = 'auto_start holds "add" and/or "modify".';
	END IF;
END
$$;

-- A template that auto-starts gets no parameters: each one it declares as
-- required needs a default.
CREATE FUNCTION crm._check_auto_start_parameters(p_auto_start text[], p_definition jsonb) RETURNS void
LANGUAGE plpgsql IMMUTABLE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
	v_name text;
BEGIN
	IF cardinality(p_auto_start) > 0 AND jsonb_typeof(p_definition -> 'parameters') = 'object' THEN
		SELECT p.key INTO v_name
		  FROM jsonb_each(p_definition -> 'parameters') p
		 WHERE p.value ->> 'required' = 'true' AND coalesce(p.value -> 'default', 'null') = 'null'
		 ORDER BY p.key LIMIT 1;
		IF v_name IS NOT NULL THEN
			RAISE EXCEPTION 'a template that auto-starts cannot require parameter "%"', v_name
				USING ERRCODE = 'invalid_parameter_value',
					  DETAIL = format('auto_start %s starts it without parameters.', p_auto_start),
					  HINT = 'Give the parameter a default, or start the template with crm.start_process.';
		END IF;
	END IF;
END
$$;

-- The stored form of auto_start: each value once, in order.
CREATE FUNCTION crm._auto_start(p_auto_start text[]) RETURNS text[]
LANGUAGE sql IMMUTABLE SET search_path = pg_catalog, pg_temp AS $$
	SELECT coalesce(array_agg(DISTINCT a ORDER BY a), '{}') FROM unnest(p_auto_start) a;
$$;

CREATE FUNCTION crm._process_template(p_id bigint) RETURNS crm.process_template
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
	t crm.process_template;
BEGIN
	SELECT * INTO t FROM crm.process_template WHERE id = p_id;
	IF NOT FOUND THEN
		RAISE EXCEPTION 'process template % does not exist', p_id
			USING ERRCODE = 'undefined_object',
				  HINT = 'List templates with: SELECT id, document_type, name FROM crm.process_template;';
	END IF;
	RETURN t;
END
$$;

CREATE FUNCTION crm._check_process_name(p_type text, p_name text, p_id bigint) RETURNS void
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
BEGIN
	IF p_name IS NULL OR btrim(p_name) = '' THEN
		RAISE EXCEPTION 'a process template needs a name, not "%"', coalesce(p_name, 'NULL')
			USING ERRCODE = 'invalid_parameter_value',
				  HINT = 'Give a name that is unique per document type.';
	END IF;
	IF EXISTS (SELECT FROM crm.process_template t WHERE t.document_type = p_type
				AND t.name = p_name AND t.id IS DISTINCT FROM p_id) THEN
		RAISE EXCEPTION 'process template "%" already exists for %', p_name, p_type
			USING ERRCODE = 'duplicate_object',
				  HINT = 'Template names are unique per document type.';
	END IF;
END
$$;

CREATE FUNCTION crm.add_process_template(document_type text, name text, definition jsonb,
										 auto_start text[] DEFAULT '{}')
RETURNS bigint
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
	v_type text := crm._process_document_type(add_process_template.document_type);
	v_id bigint;
BEGIN
	PERFORM crm._check_process_name(v_type, add_process_template.name, NULL);
	PERFORM crm._check_auto_start(add_process_template.auto_start);
	IF add_process_template.definition IS NULL THEN
		RAISE EXCEPTION 'a process template needs a definition'
			USING ERRCODE = 'null_value_not_allowed',
				  HINT = 'For example {"activities": [{"type": "add_comment", "text": "Started"}]}.';
	END IF;
	PERFORM crm._validate_process_template(v_type, add_process_template.definition);
	PERFORM crm._check_auto_start_parameters(add_process_template.auto_start, add_process_template.definition);
	INSERT INTO crm.process_template (document_type, name, definition, auto_start, created_by)
	SELECT v_type, add_process_template.name, add_process_template.definition,
		   crm._auto_start(add_process_template.auto_start), max(u.id)
	  FROM crm.user u WHERE u.id = nullif(current_setting('crm.user_id')::bigint, 0)
	RETURNING id INTO v_id;
	RETURN v_id;
END
$$;
COMMENT ON FUNCTION crm.add_process_template(text, text, jsonb, text[]) IS
	'Adds a business-process template for a document type; returns its id';

-- NULL leaves a setting unchanged.  Running and waiting instances go on with
-- the definition they started with.
CREATE FUNCTION crm.update_process_template(template_id bigint, name text DEFAULT NULL,
											definition jsonb DEFAULT NULL,
											auto_start text[] DEFAULT NULL,
											active boolean DEFAULT NULL)
RETURNS void
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
	t crm.process_template := crm._process_template(update_process_template.template_id);
BEGIN
	IF update_process_template.name IS NOT NULL THEN
		PERFORM crm._check_process_name(t.document_type, update_process_template.name, t.id);
	END IF;
	PERFORM crm._check_auto_start(update_process_template.auto_start);
	IF update_process_template.definition IS NOT NULL THEN
		PERFORM crm._validate_process_template(t.document_type, update_process_template.definition);
	END IF;
	PERFORM crm._check_auto_start_parameters(coalesce(update_process_template.auto_start, t.auto_start),
											 coalesce(update_process_template.definition, t.definition));
	UPDATE crm.process_template p
	   SET name = coalesce(update_process_template.name, p.name),
		   definition = coalesce(update_process_template.definition, p.definition),
		   auto_start = CASE WHEN update_process_template.auto_start IS NULL THEN p.auto_start
							 ELSE crm._auto_start(update_process_template.auto_start) END,
		   active = coalesce(update_process_template.active, p.active)
	 WHERE p.id = t.id;
END
$$;

-- Auto-start (autostart.c): the templates that auto-start are kept in every
-- backend's rule cache, dropped when a template changes; the item tables'
-- statement trigger starts them, on contacts and companies too.
CREATE TRIGGER definitions_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON crm.process_template
	FOR EACH STATEMENT EXECUTE FUNCTION crm.definitions_changed();
CREATE TRIGGER item_batch AFTER INSERT OR UPDATE OR DELETE ON crm.contact
	FOR EACH STATEMENT EXECUTE FUNCTION crm.item_after_statement();
CREATE TRIGGER item_batch AFTER INSERT OR UPDATE OR DELETE ON crm.company
	FOR EACH STATEMENT EXECUTE FUNCTION crm.item_after_statement();

-- Feed posts and drive files, documents too, auto-start the same way: a row
-- trigger notes what was written, the statement's trigger starts it.
CREATE FUNCTION crm._document_row_written() RETURNS trigger
	AS 'MODULE_PATHNAME', 'crm_document_row_written' LANGUAGE C;
CREATE FUNCTION crm._document_after_statement() RETURNS trigger
	AS 'MODULE_PATHNAME', 'crm_document_after_statement' LANGUAGE C;
CREATE TRIGGER process_autostart AFTER INSERT OR UPDATE ON crm.feed_post
	FOR EACH ROW EXECUTE FUNCTION crm._document_row_written();
CREATE TRIGGER process_autostart_batch AFTER INSERT OR UPDATE ON crm.feed_post
	FOR EACH STATEMENT EXECUTE FUNCTION crm._document_after_statement();
CREATE TRIGGER process_autostart AFTER INSERT OR UPDATE ON crm.drive_file
	FOR EACH ROW EXECUTE FUNCTION crm._document_row_written();
CREATE TRIGGER process_autostart_batch AFTER INSERT OR UPDATE ON crm.drive_file
	FOR EACH STATEMENT EXECUTE FUNCTION crm._document_after_statement();

-- Deleting a template stops its instances: their pending timers are
-- cancelled, and the instances go with the template.
CREATE FUNCTION crm.delete_process_template(template_id bigint) RETURNS void
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp
-- Citus: the template's row is deleted over the connections that cancelled the timers
SET citus.multi_shard_modify_mode = 'sequential'
AS $$
DECLARE
	t crm.process_template := crm._process_template(delete_process_template.template_id);
BEGIN
	UPDATE crm.job j SET status = 'cancelled', updated_at = now()
	  FROM crm.process_instance i
	 WHERE i.template_id = t.id AND j.process_instance_id = i.id AND j.status = 'pending'
	   AND j.entity_type = i.document_type AND j.entity_id = i.document_id;
	DELETE FROM crm.process_template WHERE id = t.id;
END
$$;

-- Starting: the instance runs at once, in the caller's transaction, until
-- it ends or pauses (a delay, a task or call to wait for, a wait).
CREATE FUNCTION crm._start_process(template_id bigint, document_type text, document_id bigint,
								   parameters jsonb)
RETURNS bigint
	AS 'MODULE_PATHNAME', 'crm_start_process' LANGUAGE C;

CREATE FUNCTION crm.start_process(template_id bigint, document_id bigint,
								  parameters jsonb DEFAULT '{}')
RETURNS bigint
LANGUAGE sql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
	SELECT crm._start_process(template_id, NULL, document_id, coalesce(parameters, '{}'));
$$;
COMMENT ON FUNCTION crm.start_process(bigint, bigint, jsonb) IS
	'Starts a business process for a document; returns the instance id';

CREATE FUNCTION crm.start_process(template_id bigint, document_type text, document_id bigint,
								  parameters jsonb DEFAULT '{}')
RETURNS bigint
LANGUAGE sql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
	SELECT crm._start_process(template_id, document_type, document_id, coalesce(parameters, '{}'));
$$;
COMMENT ON FUNCTION crm.start_process(bigint, text, bigint, jsonb) IS
	'Starts a business process for a document of the given type; returns the instance id';

-- Templates by name: names are unique per document type, so a name that
-- several document types use needs the type.
CREATE FUNCTION crm._process_template_id(p_name text, p_document_type text) RETURNS bigint
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
	v_ids bigint[];
	v_types text;
BEGIN
	IF p_name IS NULL THEN
		RAISE EXCEPTION 'template must not be null'
			USING ERRCODE = 'null_value_not_allowed',
				  HINT = 'Give a template''s id or name.';
	END IF;
	SELECT array_agg(t.id ORDER BY t.id), string_agg(t.document_type, ', ' ORDER BY t.document_type)
	  INTO v_ids, v_types
	  FROM crm.process_template t
	 WHERE t.name = p_name AND (p_document_type IS NULL OR t.document_type = p_document_type);
	IF v_ids IS NULL THEN
		RAISE EXCEPTION 'process template "%" does not exist%', p_name,
				CASE WHEN p_document_type IS NOT NULL THEN format(' for %s', p_document_type) ELSE '' END
			USING ERRCODE = 'undefined_object',
				  HINT = 'List templates with: SELECT id, document_type, name FROM crm.process_template;';
	END IF;
	IF cardinality(v_ids) > 1 THEN
		RAISE EXCEPTION 'process template name "%" is ambiguous', p_name
			USING ERRCODE = 'ambiguous_parameter',
				  DETAIL = format('Templates of that name exist for %s.', v_types),
				  HINT = format('Give the document type: crm.start_process(%L, document_type, document_id).', p_name);
	END IF;
	RETURN v_ids[1];
END
$$;

CREATE FUNCTION crm.start_process(template text, document_id bigint, parameters jsonb DEFAULT '{}')
RETURNS bigint
LANGUAGE sql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
	SELECT crm._start_process(crm._process_template_id(template, NULL), NULL, document_id,
							  coalesce(parameters, '{}'));
$$;
COMMENT ON FUNCTION crm.start_process(text, bigint, jsonb) IS
	'Starts a business process, its template given by name, for a document; returns the instance id';

CREATE FUNCTION crm.start_process(template text, document_type text, document_id bigint,
								  parameters jsonb DEFAULT '{}')
RETURNS bigint
LANGUAGE sql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
	SELECT crm._start_process(crm._process_template_id(template, document_type), document_type,
							  document_id, coalesce(parameters, '{}'));
$$;
COMMENT ON FUNCTION crm.start_process(text, text, bigint, jsonb) IS
	'Starts a business process, its template given by name, for a document of the given type; returns the instance id';

-- The instance is found, then locked and changed, by its document too: on
-- Citus the document is process_instance's distribution column, and a row is
-- locked in its shard only.
CREATE FUNCTION crm.stop_process(instance_id bigint) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
	i crm.process_instance;
	v_document bigint;
BEGIN
	SELECT p.document_id INTO v_document FROM crm.process_instance p WHERE p.id = stop_process.instance_id;
	IF FOUND THEN
		SELECT * INTO i FROM crm.process_instance p
		 WHERE p.document_id = v_document AND p.id = stop_process.instance_id FOR UPDATE;
	END IF;
	IF NOT FOUND THEN
		RAISE EXCEPTION 'process instance % does not exist', stop_process.instance_id
			USING ERRCODE = 'undefined_object',
				  HINT = 'See SELECT id, template, document_id, status FROM crm.process_instances;';
	END IF;
	IF i.status NOT IN ('running', 'waiting') THEN
		RAISE EXCEPTION 'process instance % is not running (it is %)', i.id, i.status
			USING ERRCODE = 'object_not_in_prerequisite_state',
				  HINT = 'Only running and waiting instances can be stopped.';
	END IF;
	UPDATE crm.job SET status = 'cancelled', updated_at = now()
	 WHERE process_instance_id = i.id AND status = 'pending'
	   AND entity_type = i.document_type AND entity_id = i.document_id;
	UPDATE crm.process_instance
	   SET status = 'stopped', finished_at = now(), state = state - 'definition'
	 WHERE document_id = i.document_id AND id = i.id;
END
$$;
COMMENT ON FUNCTION crm.stop_process(bigint) IS
	'Stops a running or waiting business-process instance and cancels its timer';

-- waiting_for: what a waiting instance waits for, in words (its task, its
-- call's result, client activity, or the time its delay ends).
CREATE VIEW crm.process_instances AS
	SELECT i.id, i.template_id, t.name AS template, i.document_type, i.document_id,
		   i.status, i.status_text, i.current_activity, i.error,
		   i.created_at AS started_at, i.updated_at, i.finished_at,
		   CASE WHEN i.status = 'waiting' THEN i.state ->> 'waiting_for' END AS waiting_for
	  FROM crm.process_instance i
	  JOIN crm.process_template t ON t.id = i.template_id;
COMMENT ON VIEW crm.process_instances IS
	'Business-process instances with their template, status, status text, current activity and what a waiting one waits for';

-- A document's business processes, newest first: what each is doing (its
-- status text, the activity it waits at and what for) or how it ended.
CREATE FUNCTION crm.document_processes(document_type text, document_id bigint)
RETURNS TABLE (instance_id bigint, template text, status text, status_text text,
			   current_activity text, waiting_for text, error text, started_at timestamptz,
			   finished_at timestamptz)
-- PL/pgSQL: Citus plans no SQL function with parameters on distributed tables
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
BEGIN
	RETURN QUERY
	SELECT i.id, t.name, i.status, i.status_text, i.current_activity,
		   CASE WHEN i.status = 'waiting' THEN i.state ->> 'waiting_for' END,
		   i.error, i.created_at, i.finished_at
	  FROM crm.process_instance i
	  JOIN crm.process_template t ON t.id = i.template_id
	 WHERE i.document_type = document_processes.document_type
	   AND i.document_id = document_processes.document_id
	 ORDER BY i.created_at DESC, i.id DESC;
END
$$;
COMMENT ON FUNCTION crm.document_processes(text, bigint) IS
	'A document''s business-process instances with their status text, newest first';

GRANT EXECUTE ON FUNCTION crm.start_process(bigint, bigint, jsonb),
	crm.start_process(bigint, text, bigint, jsonb), crm.stop_process(bigint),
	crm.document_processes(text, bigint), crm.start_process(text, bigint, jsonb),
	crm.start_process(text, text, bigint, jsonb) TO crm_user;
GRANT SELECT ON crm.process_instances TO crm_user;
-- The catalogue of activity types: every robot action (most are also
-- process activities), the process-only activities of seed 000 and the flow
-- activities, with their parameters and outputs, the document types they
-- work on, where they run and what to use instead where they do not.
CREATE FUNCTION crm._activity_actions(
	OUT type text, OUT kind text, OUT family text, OUT description text, OUT parameters jsonb,
	OUT outputs text, OUT document_types text, OUT in_robots boolean, OUT in_processes boolean,
	OUT note text)
RETURNS SETOF record
	AS 'MODULE_PATHNAME', 'crm_activity_actions' LANGUAGE C STABLE;

CREATE VIEW crm.activity_types AS
	SELECT type, kind, family, description, parameters, outputs, document_types,
		   in_robots, in_processes, note
	  FROM crm._activity_actions()
	UNION ALL
	SELECT f.type, 'flow', 'flow', f.description, f.parameters::jsonb, NULL, 'all', false, true, f.note
	  FROM (VALUES
		('if', 'runs "then" or "else" by a condition',
		 '[{"name": "condition", "type": "condition", "required": true, "description": "a condition (text or JSON rules)"},'
		 ' {"name": "then", "type": "activities", "required": false, "description": "activities when true"},'
		 ' {"name": "else", "type": "activities", "required": false, "description": "activities when false"}]', NULL),
		('delay', 'pauses the instance; a timer resumes it',
		 '[{"name": "for", "type": "interval", "required": false, "description": "how long (or until)"},'
		 ' {"name": "until", "type": "text", "required": false, "description": "a timestamp, or a template or formula giving one (or for)"},'
		 ' {"name": "work_time", "type": "boolean", "required": false, "description": "count \"for\" in working time"}]',
		 NULL),
		('set_variable', 'sets a variable of the instance',
		 '[{"name": "variable", "type": "text", "required": true, "description": "a declared variable"},'
		 ' {"name": "value", "type": "value", "required": true, "description": "a value, template or =formula"}]', NULL),
		('set_field', 'sets one field of the document',
		 '[{"name": "field", "type": "field", "required": true, "description": "a column or custom field"},'
		 ' {"name": "value", "type": "value", "required": true, "description": "a value, template or =formula"}]', NULL),
		('set_status_text', 'sets the status text shown on the document',
		 '[{"name": "text", "type": "text", "required": true, "description": "status text (template)"}]', NULL)
	  ) AS f (type, description, parameters, note);
COMMENT ON VIEW crm.activity_types IS
	'Activity types of business processes and robots: parameters, outputs, document types, where each runs';
GRANT SELECT ON crm.activity_types TO crm_user;
GRANT EXECUTE ON FUNCTION crm._activity_actions() TO crm_user;

