
-- ---------------------------------------------------------------------------
-- Scaling out with Citus (SPEC §10, docs/citus.md): crm.distribute(), run
-- once on the coordinator of a Citus cluster whose workers are added and
-- which has crm_automation installed on every node, turns the installation
-- into a distributed one:
--
--   - definitions (pipelines, stages, robots, triggers, templates,
--	   providers, users, departments, ...) become reference tables, a copy on
--	   every node;
--   - items (deal, lead, contact, company, quote, invoice, item) are
--	   distributed by id, and every row bound to an item (comments, history,
--	   activities, tasks, logs, jobs, outbox, process instances and their
--	   trace, ...) by that item's id (entity_id, document_id for processes),
--	   in the item's shard: what automation writes for an item stays on its
--	   node, in the same transaction.  Such a table's primary and unique
--	   keys start with that column; rows about no item carry 0 (its default);
--   - each node draws ids from a range of its own (its group id in the top
--	   16 bits), so ids are unique in the cluster.
--
-- The table layouts are changed on every node before any table is
-- distributed: Citus does not create worker copies of tables that belong
-- to an extension, so each node's own (empty) copy must match.
-- ---------------------------------------------------------------------------

-- The tables, what each becomes and by which column (NULL: a reference
-- table; 'local': stays a table of the coordinator, known to every node).
CREATE FUNCTION crm._distribution_plan(OUT tbl text, OUT dist_column text, OUT ord integer)
RETURNS SETOF record LANGUAGE sql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
	SELECT v.t, v.c, (row_number() OVER ())::integer FROM (VALUES
		-- definitions, referenced ones first
		('entity_type', NULL::text), ('department', NULL), ('user', NULL), ('pipeline', NULL),
		('stage', NULL), ('user_field', NULL), ('robot', NULL), ('trigger', NULL),
		('robot_turn', NULL), ('process_template', NULL), ('provider', NULL),
		('provider_secret', NULL), ('document_template', NULL), ('work_schedule', NULL),
		('holiday', NULL), ('disabled_endpoint', NULL), ('webform', NULL), ('exception_list', NULL),
		-- items, by id
		('deal', 'id'), ('lead', 'id'), ('contact', 'id'), ('company', 'id'), ('quote', 'id'),
		('invoice', 'id'), ('item', 'id'),
		-- what automation writes about an item, in its shard
		('timeline_comment', 'entity_id'), ('history', 'entity_id'), ('activity', 'entity_id'),
		('task', 'entity_id'), ('notification', 'entity_id'), ('calendar_event', 'entity_id'),
		('resource_booking', 'entity_id'), ('document', 'entity_id'),
		('automation_log', 'entity_id'), ('robot_log_entry', 'entity_id'), ('job', 'entity_id'),
		('outbox', 'entity_id'), ('payment', 'entity_id'), ('webform_submission', 'entity_id'),
		('tracked_link', 'entity_id'),
		('process_instance', 'document_id'), ('process_log', 'document_id'),
		-- not bound to an item (chats, feed posts, absences, drive files):
		-- a copy on every node as well
		('chat', NULL), ('chat_member', NULL), ('chat_message', NULL),
		('feed_post', NULL), ('feed_post_recipient', NULL), ('absence', NULL),
		('drive_file', NULL)) AS v (t, c)
$$;

-- Runs a DDL command on this node and on every worker node's copy of the
-- extension's tables, without Citus propagating it.
CREATE FUNCTION crm._on_every_node(command text) RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	r record;
BEGIN
	EXECUTE command;
	-- one statement (run_command_on_workers runs only the first of several)
	FOR r IN EXECUTE 'SELECT nodename, nodeport, success, result FROM run_command_on_workers($1)'
			USING format('DO %L', 'BEGIN PERFORM pg_catalog.set_config(''citus.enable_ddl_propagation'', ''off'', true); '
								  'EXECUTE ' || quote_literal(command) || '; END') LOOP
		IF NOT r.success THEN
			RAISE EXCEPTION 'on node %:%: %', r.nodename, r.nodeport, r.result
				USING ERRCODE = 'XX000', DETAIL = 'command: ' || command;
		END IF;
	END LOOP;
END
$$;

CREATE FUNCTION crm.distribute() RETURNS TABLE (tbl text, became text)
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
SET client_min_messages = warning
AS $fn$
DECLARE
	p record;
	k record;
	n_workers integer;
BEGIN
	IF NOT EXISTS (SELECT FROM pg_extension WHERE extname = 'citus') THEN
		RAISE EXCEPTION 'crm.distribute() needs the citus extension'
			USING ERRCODE = '55000',
				  HINT = 'Install Citus on every node, preload it before crm_automation, CREATE EXTENSION citus.';
	END IF;
	IF EXISTS (SELECT FROM pg_catalog.pg_dist_partition WHERE logicalrelid = 'crm.deal'::regclass) THEN
		RAISE EXCEPTION 'this installation is already distributed' USING ERRCODE = '55000',
			DETAIL = 'crm.deal is already a distributed table.',
			HINT = 'Nothing to do: see docs/citus.md for what crm.distribute() made.';
	END IF;
	EXECUTE 'SELECT count(*) FROM pg_dist_node WHERE noderole = ''primary'' AND groupid <> 0
			   AND isactive' INTO n_workers;
	IF n_workers = 0 THEN
		RAISE EXCEPTION 'the Citus cluster has no worker node' USING ERRCODE = '55000',
			HINT = 'Add the workers first: SELECT citus_add_node(host, port).';
	END IF;
	EXECUTE 'SELECT citus_is_coordinator()' INTO STRICT k;
	IF NOT k.citus_is_coordinator THEN
		RAISE EXCEPTION 'crm.distribute() runs on the coordinator' USING ERRCODE = '55000',
			HINT = 'Connect to the coordinator of the Citus cluster and run it there.';
	END IF;

	SET LOCAL citus.enable_ddl_propagation = off;
	SET LOCAL citus.enable_unsafe_triggers = on;
	SET LOCAL citus.enable_local_reference_table_foreign_keys = off;
	SET LOCAL citus.multi_shard_modify_mode = 'sequential';

	-- 1. Every node's copy takes the distributed layout.
	-- a cycle (department.head_id, user.department_id) and keys between
	-- tables that are no longer co-located come back after (3.)
	PERFORM crm._on_every_node('ALTER TABLE crm.department DROP CONSTRAINT department_head_id_fkey');
	PERFORM crm._on_every_node('ALTER TABLE crm.calendar_event DROP CONSTRAINT calendar_event_activity_id_fkey');
	PERFORM crm._on_every_node('ALTER TABLE crm.process_log DROP CONSTRAINT process_log_instance_id_fkey');
	FOR p IN SELECT * FROM crm._distribution_plan() d WHERE d.dist_column NOT IN ('id', 'local') ORDER BY d.ord LOOP
		-- keys start with the distribution column
		FOR k IN SELECT c.conname, c.contype,
						array_to_string(ARRAY(SELECT quote_ident(a.attname)
												FROM unnest(c.conkey) WITH ORDINALITY AS u (n, o)
												JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = u.n
											   ORDER BY u.o), ', ') AS cols
				   FROM pg_constraint c
				  WHERE c.conrelid = ('crm.' || p.tbl)::regclass AND c.contype IN ('p', 'u') LOOP
			PERFORM crm._on_every_node(format('ALTER TABLE crm.%I DROP CONSTRAINT %I, ADD CONSTRAINT %I %s (%I, %s)',
											  p.tbl, k.conname, k.conname,
											  CASE k.contype WHEN 'p' THEN 'PRIMARY KEY' ELSE 'UNIQUE' END,
											  p.dist_column, k.cols));
		END LOOP;
		EXECUTE format('UPDATE crm.%I SET %I = 0 WHERE %I IS NULL', p.tbl, p.dist_column, p.dist_column);
		PERFORM crm._on_every_node(format('ALTER TABLE crm.%I ALTER %I SET DEFAULT 0, ALTER %I SET NOT NULL',
										  p.tbl, p.dist_column, p.dist_column));
	END LOOP;

	-- 2. Ids: each worker node's sequences draw from a range of their own.
	PERFORM crm._on_every_node($cmd$DO $do$
		DECLARE
			s record;
			g bigint := coalesce((SELECT groupid FROM pg_catalog.pg_dist_local_group), 0);
		BEGIN
			IF g = 0 THEN RETURN; END IF;
			FOR s IN SELECT c.oid::regclass AS seq FROM pg_class c
					  WHERE c.relkind = 'S' AND c.relnamespace = 'crm'::regnamespace LOOP
				EXECUTE format('ALTER SEQUENCE %s MINVALUE %s MAXVALUE %s START %s RESTART', s.seq,
							   (g << 48) + 1, ((g + 1) << 48) - 1, (g << 48) + 1);
			END LOOP;
		END $do$$cmd$);

	-- 3. The functions users call in their queries read definitions: in a
	-- query on distributed items they run on the nodes of the shards, where
	-- Citus refuses their reads of the reference tables' copies (a nested
	-- distributed execution) unless allowed for the call.
	FOR k IN SELECT f.oid::regprocedure AS fn FROM pg_catalog.pg_proc f
			  WHERE f.pronamespace = 'crm'::regnamespace
				AND f.proname IN ('stage', 'default_pipeline', 'supervisor_of', 'work_time_add') LOOP
		PERFORM crm._on_every_node(format('ALTER FUNCTION %s SET citus.allow_nested_distributed_execution = on', k.fn));
	END LOOP;

	-- 4. Distribute.
	FOR p IN SELECT * FROM crm._distribution_plan() d ORDER BY d.ord LOOP
		IF p.dist_column IS NULL THEN
			EXECUTE 'SELECT create_reference_table($1)' USING ('crm.' || p.tbl)::regclass;
			tbl := p.tbl; became := 'reference table';
		ELSIF p.dist_column = 'local' THEN
			EXECUTE 'SELECT citus_add_local_table_to_metadata($1, cascade_via_foreign_keys => true)' USING ('crm.' || p.tbl)::regclass;
			tbl := p.tbl; became := 'coordinator table';
		ELSE
			EXECUTE 'SELECT create_distributed_table($1, $2, colocate_with => $3)'
				USING ('crm.' || p.tbl)::regclass, p.dist_column,
					  CASE WHEN p.tbl = 'deal' THEN 'none' ELSE 'crm.deal' END;
			tbl := p.tbl; became := 'distributed by ' || p.dist_column;
		END IF;
		RETURN NEXT;
	END LOOP;
	SET LOCAL citus.enable_ddl_propagation = on;
	-- the messages not yet done are now in shards: each node's workers list
	-- them in its crm.outbox_due when they first claim from a shard
	DELETE FROM crm.outbox_due WHERE rel = 'crm.outbox'::regclass;
	-- crm.robot_log is a view that crm_user reads: Citus checks the query a
	-- view makes on the shards as the session's role, so that role reads
	-- the view's tables (the same rows; on one node it needs only the view)
	GRANT SELECT ON crm.automation_log, crm.robot_log_entry TO crm_user;
	ALTER TABLE crm.department ADD CONSTRAINT department_head_id_fkey
		FOREIGN KEY (head_id) REFERENCES crm."user" (id) ON DELETE SET NULL;
	ALTER TABLE crm.process_log ADD CONSTRAINT process_log_instance_id_fkey
		FOREIGN KEY (document_id, instance_id) REFERENCES crm.process_instance (document_id, id) ON DELETE CASCADE;
END
$fn$;
COMMENT ON FUNCTION crm.distribute() IS
	'Turns this installation into a distributed one on a Citus cluster (run once, on the coordinator)';
REVOKE ALL ON FUNCTION crm.distribute() FROM PUBLIC;
REVOKE ALL ON FUNCTION crm._on_every_node(text) FROM PUBLIC;

-- This node's shards of crm.outbox, each with its claim: crm._claim_leases
-- made for that shard (crm._claim_leases_<shard id>), reading the shard
-- and this node's copies of the reference tables in place of the tables,
-- so that a node's delivery workers claim from local tables as one node's
-- do (src/delivery/outbox.c).  Made when missing or when crm._claim_leases
-- changed (its definition's checksum is the claim's comment); executable by
-- no one but its owner, as crm._claim_leases.
CREATE FUNCTION crm._outbox_shard_claims() RETURNS TABLE (shard text, claim text)
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	r record;
	template text := pg_get_functiondef(
		'crm._claim_leases(integer, interval, boolean, text[], timestamptz, bigint)'::regprocedure);
	version text := md5(template);
	def text;
	t text;
	local_shard text;
BEGIN
	FOR r IN EXECUTE 'SELECT s.shardid FROM pg_catalog.pg_dist_shard s
						JOIN pg_catalog.pg_dist_placement p ON p.shardid = s.shardid
					   WHERE s.logicalrelid = ''crm.outbox''::regclass
						 AND p.groupid = (SELECT groupid FROM pg_catalog.pg_dist_local_group)
					   ORDER BY s.shardid' LOOP
		shard := 'crm.outbox_' || r.shardid;
		claim := 'crm._claim_leases_' || r.shardid;
		IF to_regproc(claim) IS NULL
		   OR obj_description(to_regproc(claim)::oid, 'pg_proc') IS DISTINCT FROM version THEN
			-- the node's workers make it once: the others wait, then see it
			PERFORM pg_advisory_xact_lock(hashtext('crm._outbox_shard_claims'));
		END IF;
		IF to_regproc(claim) IS NULL
		   OR obj_description(to_regproc(claim)::oid, 'pg_proc') IS DISTINCT FROM version THEN
			def := replace(template, 'FUNCTION crm._claim_leases(', 'FUNCTION ' || claim || '(');
			def := regexp_replace(def, '\mcrm\.outbox\M', shard, 'g');
			FOREACH t IN ARRAY ARRAY['provider', 'provider_secret', 'disabled_endpoint'] LOOP
				EXECUTE 'SELECT ''crm.'' || $1 || ''_'' || s.shardid FROM pg_catalog.pg_dist_shard s
						  WHERE s.logicalrelid = (''crm.'' || $1)::regclass'
					INTO STRICT local_shard USING t;
				def := regexp_replace(def, '\mcrm\.' || t || '\M', local_shard, 'g');
			END LOOP;
			-- this node's own function: Citus must not propagate it
			PERFORM set_config('citus.enable_ddl_propagation', 'off', true);
			EXECUTE def;
			EXECUTE format('REVOKE ALL ON FUNCTION %s(integer, interval, boolean, text[], timestamptz, bigint) FROM PUBLIC',
						   claim);
			EXECUTE format('COMMENT ON FUNCTION %s(integer, interval, boolean, text[], timestamptz, bigint) IS %L',
						   claim, version);
			-- the claims of earlier versions (before crm._claim_leases)
			EXECUTE format('DROP FUNCTION IF EXISTS crm.%I(integer, interval, boolean, text[], timestamptz, bigint),
							crm.%1$I(integer, interval, boolean, text[])', '_claim_messages_' || r.shardid);
			-- the shard's messages not yet done, in this node's crm.outbox_due
			-- (those its rows had when Citus copied them into the shard)
			PERFORM crm._outbox_due_rebuild(shard::regclass);
		END IF;
		RETURN NEXT;
	END LOOP;
END
$$;
REVOKE ALL ON FUNCTION crm._outbox_shard_claims() FROM PUBLIC;
