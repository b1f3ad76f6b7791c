-- Backups: every table and sequence of the extension is dumped by pg_dump,
-- whole; CREATE EXTENSION in replica mode (a restore) creates no default rows.
-- The round trip itself is test/integration/dump_restore.sh.
BEGIN;
SELECT plan(6);

SET LOCAL session_replication_role = replica;
CREATE EXTENSION crm_automation;

SELECT is((SELECT string_agg(c.oid::regclass::text, ' ' ORDER BY c.relname)
			 FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
			WHERE n.nspname = 'crm' AND c.relkind IN ('r', 'S')
			  AND NOT c.oid = ANY ((SELECT extconfig FROM pg_extension WHERE extname = 'crm_automation')::oid[])),
		  NULL, 'every table and sequence of schema crm is marked for pg_dump');
SELECT ok((SELECT count(*) > 80 AND bool_and(cond = '')
			 FROM pg_extension e, unnest(e.extconfig, e.extcondition) AS x(rel, cond)
			WHERE e.extname = 'crm_automation'),
		  'whole tables and sequences (no filter), identity sequences included');
SELECT is((SELECT array[(SELECT count(*) FROM crm.entity_type), (SELECT count(*) FROM crm.pipeline),
						(SELECT count(*) FROM crm.stage), (SELECT count(*) FROM crm.work_schedule)]),
		  array[0, 0, 0, 0]::bigint[], 'in replica mode CREATE EXTENSION creates no default rows: the restored data brings them');
SELECT is((SELECT last_value FROM crm.stage_id_seq), 1::bigint, 'nor consumes ids');

DROP EXTENSION crm_automation;
SET LOCAL session_replication_role = origin;
CREATE EXTENSION crm_automation;
SELECT is((SELECT array[(SELECT count(*) FROM crm.entity_type), (SELECT count(*) FROM crm.pipeline),
						(SELECT count(*) FROM crm.stage), (SELECT count(*) FROM crm.work_schedule)]),
		  array[6, 4, 21, 1]::bigint[], 'otherwise the built-in entity types, default pipelines and stages, the working week');
SELECT is((SELECT code || ':' || name FROM crm.stage WHERE id = crm.stage('deal', 'won')), 'won:Deal won',
		  'the default stages as before');

SELECT * FROM finish();
ROLLBACK;
