
-- ---------------------------------------------------------------------------
-- Why did (or didn't) it run?  crm.explain: the decision each robot of an
-- item's stage, each trigger of its pipeline and each auto-starting process
-- template would make now, with its condition taken apart (admin/explain.c).
-- It reads the item as the caller and writes nothing.
-- ---------------------------------------------------------------------------
CREATE FUNCTION crm.explain(entity_type text, id bigint, stage bigint DEFAULT NULL)
RETURNS TABLE (kind text, rule_id bigint, rule text, decision text, condition text,
			   substituted text, detail jsonb)
	AS 'MODULE_PATHNAME', 'crm_explain' LANGUAGE C VOLATILE;
COMMENT ON FUNCTION crm.explain(text, bigint, bigint) IS
	'What automation would do for an item now (or on entering stage): one row per robot, trigger and auto-starting process template, with its decision and its condition with the item''s values';
REVOKE EXECUTE ON FUNCTION crm.explain(text, bigint, bigint) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION crm.explain(text, bigint, bigint) TO crm_user;

-- What would happen?  crm.simulate runs one INSERT, UPDATE or DELETE on a
-- CRM table as the caller, with all its automation, in a subtransaction it
-- always rolls back, and returns what it wrote (admin/simulate.c): one row
-- per row written, in the order written, its table, who wrote it, a short
-- summary, and the row as jsonb.  Nothing is left, and no worker is woken;
-- sequence values drawn stay used.
CREATE FUNCTION crm._simulate(statement text, row_limit integer)
RETURNS TABLE (seq bigint, op text, tbl text, row_id bigint, row_data jsonb)
	AS 'MODULE_PATHNAME', 'crm_simulate' LANGUAGE C VOLATILE;

CREATE FUNCTION crm.simulate(statement text, row_limit integer DEFAULT 100)
RETURNS TABLE (seq bigint, op text, tbl text, actor text, cause bigint, summary text, detail jsonb)
LANGUAGE sql VOLATILE AS $$
	-- the robot log as crm.robot_log shows it: a stage entry's runs (one
	-- row of crm.robot_log_entry) one by one, trigger decisions and
	-- scheduled runs (crm.automation_log) as they are
	WITH w AS (SELECT * FROM crm._simulate(statement, row_limit)),
	s AS (
		SELECT w.seq, 0::bigint AS sub, w.op,
			   CASE WHEN w.tbl IN ('automation_log', 'robot_log_entry') THEN 'robot_log' ELSE w.tbl END AS tbl,
			   w.row_data
		  FROM w
		 WHERE w.tbl IS DISTINCT FROM 'robot_log_entry' OR w.row_data IS NULL
		UNION ALL
		SELECT w.seq, r.n, w.op, 'robot_log',
			   jsonb_build_object('id', (w.row_data->>'id')::bigint + r.n - 1, 'kind', 'robot',
								  'robot_id', r.robot_id, 'trigger_id', NULL,
								  'name', w.row_data->'names'->(r.n::int - 1),
								  'action', w.row_data->'actions'->(r.n::int - 1),
								  'stage_id', w.row_data->'stage_id', 'entity_type', w.row_data->'entity_type',
								  'entity_id', w.row_data->'entity_id',
								  'status', w.row_data->'statuses'->(r.n::int - 1),
								  'error', w.row_data->'errors'->(r.n::int - 1),
								  'outputs', w.row_data->'outputs'->(r.n::int - 1),
								  'detail', w.row_data->'details'->(r.n::int - 1),
								  'depth', w.row_data->'depth', 'job_id', NULL,
								  'planned_at', w.row_data->'started'->(r.n::int - 1), 'started_at', NULL,
								  'finished_at', w.row_data->'finished_at'->(r.n::int - 1))
		  FROM w, jsonb_array_elements(w.row_data->'robot_ids') WITH ORDINALITY AS r (robot_id, n)
		 WHERE w.tbl = 'robot_log_entry' AND w.row_data IS NOT NULL
	),
	-- who wrote each row, and the item it belongs to (its own row, or the
	-- item its entity_type and entity_id name)
	a AS (
		SELECT row_number() OVER (ORDER BY s.seq, s.sub) - 1 AS seq, s.op, s.tbl,
			   CASE
				 WHEN s.op IN ('statement', 'error', 'truncated') THEN NULL
				 WHEN s.row_data IS NULL THEN NULL
				 WHEN s.tbl = 'robot_log' AND s.row_data->>'kind' = 'trigger'
				   THEN 'trigger ' || coalesce(s.row_data->>'trigger_id', '-')
				 WHEN s.row_data->>'robot_id' IS NOT NULL THEN 'robot ' || (s.row_data->>'robot_id')
				 WHEN s.row_data->>'process_instance_id' IS NOT NULL
				   THEN 'process ' || (s.row_data->>'process_instance_id')
				 WHEN s.tbl = 'process_log' THEN 'process ' || (s.row_data->>'instance_id')
				 WHEN s.tbl = 'process_instance' THEN 'template ' || (s.row_data->>'template_id')
				 ELSE NULL
		   END AS actor,
			   CASE
				 WHEN s.row_data IS NULL THEN NULL
				 -- the item tables: built-in types are named as their tables,
				 -- smart processes' items are in crm.item (read as the caller,
				 -- who may not read crm.entity_type)
				 WHEN s.tbl IN ('lead', 'deal', 'contact', 'company', 'quote', 'invoice', 'item')
				   THEN CASE WHEN s.tbl = 'item' THEN s.row_data->>'entity_type' ELSE s.tbl END
						|| ':' || (s.row_data->>'id')
				 WHEN s.row_data->>'entity_id' IS NOT NULL
				   THEN (s.row_data->>'entity_type') || ':' || (s.row_data->>'entity_id')
			   END AS item,
			   s.tbl IN ('lead', 'deal', 'contact', 'company', 'quote', 'invoice', 'item') AS item_row,
			   s.row_data
		  FROM s
	),
	-- the causal chain, within an item: a trigger's decision follows the
	-- event before it (a row no automation wrote); a robot's or a process's
	-- row follows the item's last write (its move into the stage); the
	-- item's own row and its history follow the decision or robot that
	-- moved it
	c AS (
		SELECT a.*,
			   max(a.seq) FILTER (WHERE a.actor IS NULL AND a.tbl <> 'robot_log') OVER earlier AS last_event,
			   max(a.seq) FILTER (WHERE a.item_row) OVER earlier AS last_item_write,
			   max(a.seq) FILTER (WHERE a.tbl = 'robot_log' AND a.op = 'insert'
								   AND (a.row_data->>'status' = 'fired'
										OR (a.row_data->>'action' = 'change_stage' AND a.row_data->>'status' = 'done'))) OVER earlier
				 AS last_move
		  FROM a
		WINDOW earlier AS (PARTITION BY a.item ORDER BY a.seq ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING)
	)
	SELECT s.seq, s.op, s.tbl, s.actor,
		   CASE
			 WHEN s.item IS NULL OR s.op IN ('statement', 'error', 'truncated') THEN NULL
			 WHEN s.actor LIKE 'trigger %' THEN s.last_event
			 WHEN s.actor IS NOT NULL THEN s.last_item_write
			 WHEN s.item_row OR s.tbl = 'history' THEN s.last_move
		   END,
		   CASE
			 WHEN s.op = 'statement' THEN (s.row_data->>'rows') || ' row(s), ' ||
				  -- a stage entry's runs count as the rows they are shown as
				  ((s.row_data->>'effects')::bigint +
				   (SELECT coalesce(sum(jsonb_array_length(e.row_data->'robot_ids') - 1), 0)
					  FROM w e WHERE e.tbl = 'robot_log_entry' AND e.row_data IS NOT NULL))::text ||
				  ' row(s) written in all'
			 WHEN s.op = 'error' THEN (s.row_data->>'sqlstate') || ': ' || (s.row_data->>'message')
			 WHEN s.op = 'truncated' THEN (s.row_data->>'rows_not_shown') || ' more row(s) not shown (row_limit)'
			 WHEN s.row_data IS NULL THEN '(not readable by you)'
			 WHEN s.tbl = 'robot_log' THEN coalesce(s.row_data->>'name', s.row_data->>'action') || ': ' ||
				  (s.row_data->>'status') || coalesce(' (' || (s.row_data->>'error') || ')', '')
			 WHEN s.tbl = 'outbox' THEN (s.row_data->>'channel') || ' ' ||
				  coalesce(s.row_data->'payload'->>'url', s.row_data->'payload'->>'to', '')
			 WHEN s.tbl = 'job' AND s.row_data->>'status' = 'pending'
			   THEN (s.row_data->>'kind') || ' due in ' ||
				  ((s.row_data->>'due_at')::timestamptz - pg_catalog.now())::text
			 WHEN s.tbl = 'job' THEN (s.row_data->>'kind') || ': ' || (s.row_data->>'status')
			 WHEN s.tbl = 'process_instance' THEN (s.row_data->>'status') ||
				  coalesce(': ' || (s.row_data->>'status_text'), '')
			 WHEN s.tbl = 'process_log' THEN (s.row_data->>'type') || ': ' || (s.row_data->>'status')
			 WHEN s.tbl IN ('timeline_comment', 'notification', 'chat_message') THEN s.row_data->>'text'
			 WHEN s.tbl = 'history' THEN coalesce(nullif(s.row_data->>'text', ''), s.row_data->>'event_type')
			 WHEN s.tbl = 'activity' THEN s.row_data->>'subject'
			 ELSE coalesce(s.row_data->>'title', s.row_data->>'name', s.row_data->>'subject') ||
				  coalesce(' @ ' || (SELECT st.code FROM crm.stage st
									  WHERE st.id = (s.row_data->>'stage_id')::bigint), '')
		   END,
		   s.row_data
	  FROM c s
	 ORDER BY s.seq
$$;
COMMENT ON FUNCTION crm.simulate(text, integer) IS
	'Runs one INSERT, UPDATE or DELETE on a CRM table as the caller, with its automation, and rolls it back: returns every row it would write';
REVOKE EXECUTE ON FUNCTION crm._simulate(text, integer), crm.simulate(text, integer) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION crm._simulate(text, integer), crm.simulate(text, integer) TO crm_user;
