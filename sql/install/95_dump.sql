
-- ---------------------------------------------------------------------------
-- Backups.  pg_dump leaves out the rows of an extension's tables unless the
-- extension marks them as configuration tables; every table of this
-- extension holds the CRM's data (items, structure, automation, the log,
-- jobs, the outbox, providers and their secrets), so every table and every
-- sequence (identity ones too: new ids go on after a restore) is marked,
-- whole.  A table created by an earlier fragment is marked without being
-- listed here; the integration test dump_restore.sh checks that none is
-- missed.
--
-- Restoring (README, "Backup and restore") runs with
-- session_replication_role = replica: the dumped rows come back as they
-- were, without the engine's triggers (no robots run again, no timestamps
-- or authors rewritten, foreign keys not checked, so the
-- user <-> department cycle loads), and CREATE EXTENSION then creates no
-- default rows (60_defaults.sql): the dump holds the default pipelines,
-- stages and working week as the administrators left them.
-- ---------------------------------------------------------------------------
DO $$
DECLARE
	r record;
BEGIN
	FOR r IN
		SELECT c.oid::regclass AS rel
		  FROM pg_catalog.pg_depend d
		  JOIN pg_catalog.pg_class c ON c.oid = d.objid
		 WHERE d.classid = 'pg_catalog.pg_class'::regclass
		   AND d.refclassid = 'pg_catalog.pg_extension'::regclass
		   AND d.refobjid = (SELECT oid FROM pg_catalog.pg_extension WHERE extname = 'crm_automation')
		   AND d.deptype = 'e'
		   AND c.relkind IN ('r', 'S')
		 ORDER BY c.relname
	LOOP
		PERFORM pg_catalog.pg_extension_config_dump(r.rel, '');
	END LOOP;
END
$$;
