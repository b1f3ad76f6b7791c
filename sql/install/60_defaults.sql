
-- ---------------------------------------------------------------------------
-- Default data: the built-in entity types, each with its default pipeline
-- and stages, and the working week.
--
-- Not when CREATE EXTENSION runs with session_replication_role = replica:
-- that is how a backup is restored (README, "Backup and restore"), and the
-- backup holds these rows as the administrators left them (renamed, re-sorted
-- or deleted stages, another working week), with the ids its items refer to.
-- ---------------------------------------------------------------------------
DO $$
DECLARE
	r record;
	v_pipeline bigint;
BEGIN
	IF current_setting('session_replication_role') = 'replica' THEN
		RETURN;
	END IF;

	INSERT INTO crm.entity_type (id, code, name, table_name, id_prefix, has_stages, multiple_pipelines) VALUES
		(1, 'lead', 'Lead', 'lead', 'L', true, false),
		(2, 'deal', 'Deal', 'deal', 'D', true, true),
		(3, 'contact', 'Contact', 'contact', 'C', false, false),
		(4, 'company', 'Company', 'company', 'CO', false, false),
		(7, 'quote', 'Quote', 'quote', 'Q', true, false),
		(31, 'invoice', 'Invoice', 'invoice', 'I', true, false);

	FOR r IN SELECT code FROM crm.entity_type WHERE has_stages ORDER BY id LOOP
		INSERT INTO crm.pipeline (entity_type, name, is_default)
		VALUES (r.code, 'General', true) RETURNING id INTO v_pipeline;
		PERFORM crm._add_default_stages(v_pipeline, r.code);
	END LOOP;

	INSERT INTO crm.work_schedule DEFAULT VALUES;
END
$$;
