-- Setup of bench/update_bench.sh: a deal table as a user's database has it
-- after a few weeks (rows of every stage, robots and triggers on a
-- non-default pipeline, a field_changed trigger the updates must consult),
-- and the baselines: the same-shape table without the extension, and a lean
-- 5-column table.  :ff is the fillfactor given to the three tables.
SET client_min_messages = warning;
CREATE EXTENSION crm_automation;
INSERT INTO crm.user (id, name) VALUES (1, 'Bench');

\ir common.sql
CREATE TABLE bench_run (k text, ms float8);

-- A second deal pipeline of 10 stages with 30 robots and 10 triggers.
CREATE TEMP TABLE p AS SELECT crm.add_pipeline('deal', 'Partners') AS id;
SELECT count(*) FROM (SELECT crm.add_stage((SELECT id FROM p), 'p' || s, 'Partner stage ' || s)
	FROM generate_series(1, 10) s) x \g /dev/null
SELECT count(*) FROM (
	SELECT crm.add_robot(st.id, 'add_comment',
		jsonb_build_object('text', 'Robot ' || r || ' on ' || st.code || ': {{title}} for {{amount}}'),
		condition => CASE WHEN r = 3 THEN '"{{amount}} >= 1000"'::jsonb END)
	  FROM crm.stage st CROSS JOIN generate_series(1, 3) r
	 WHERE st.pipeline_id = (SELECT id FROM p)) x \g /dev/null
SELECT count(*) FROM (
	SELECT crm.add_trigger(st.id, 'responsible_changed')
	  FROM crm.stage st WHERE st.pipeline_id = (SELECT id FROM p) AND st.code IN ('p2', 'p4', 'p6', 'p8', 'p10')) x \g /dev/null
SELECT count(*) FROM (
	SELECT crm.add_trigger(st.id, 'field_changed', '{"fields": ["close_date"]}')
	  FROM crm.stage st WHERE st.pipeline_id = (SELECT id FROM p) AND st.code IN ('p3', 'p5', 'p7', 'p9')) x \g /dev/null
SELECT crm.add_trigger(crm.stage('deal', 'executing'), 'field_changed', '{"fields": ["close_date"]}') \g /dev/null

-- copy_table(source, target): the same columns, defaults, indexes, checks and
-- foreign keys; not the triggers.
CREATE FUNCTION copy_table(src regclass, dst text) RETURNS void LANGUAGE plpgsql AS $$
DECLARE c record;
BEGIN
	EXECUTE format('CREATE TABLE %I (LIKE %s INCLUDING ALL)', dst, src);
	FOR c IN SELECT pg_get_constraintdef(oid) AS def FROM pg_constraint
	          WHERE conrelid = src AND contype = 'f' LOOP
		EXECUTE format('ALTER TABLE %I ADD %s', dst, c.def);
	END LOOP;
END $$;
SELECT copy_table('crm.deal', 'same_deal');
CREATE TABLE lean_deal (id bigint PRIMARY KEY, title text NOT NULL, stage_id bigint NOT NULL,
                        amount numeric NOT NULL, updated_at timestamptz NOT NULL DEFAULT now());
CREATE INDEX ON lean_deal (stage_id);

SELECT format('ALTER TABLE %s SET (fillfactor = %s)', t, :ff)
  FROM unnest(ARRAY['crm.deal', 'same_deal', 'lean_deal']) t \gexec

-- 200,000 deals spread over the default pipeline's first stage and the
-- partner pipeline's stages (inserted with the engine off: no robots ran).
SET session_replication_role = replica;
INSERT INTO crm.deal (title, stage_id, responsible_id, amount, contact_id, company_id)
	SELECT 'd' || g,
	       CASE WHEN g % 2 = 0 THEN crm.stage('deal', 'new')
	            ELSE (SELECT id FROM crm.stage WHERE pipeline_id = (SELECT id FROM p) AND code = 'p' || (1 + g % 10)) END,
	       1, g, g % 5000, g % 700
	  FROM generate_series(1, 200000) g;
RESET session_replication_role;

-- The baselines get the same rows the same way (in id order, indexes
-- built as rows arrive).
INSERT INTO same_deal SELECT * FROM crm.deal ORDER BY id;
INSERT INTO lean_deal SELECT id, title, stage_id, amount, updated_at FROM crm.deal ORDER BY id;
VACUUM ANALYZE crm.deal, same_deal, lean_deal;
CHECKPOINT;
