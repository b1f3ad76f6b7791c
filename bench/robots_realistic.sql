-- Setup of the REALISTIC cases of bench/robots_bench.sh and
-- bench/robots_instructions.sh (REALISTIC=1): robots_setup.sql, then a
-- database as a user's looks after a few weeks (issue 17).
--
--   - a second deal pipeline, "Wholesale", of 10 stages w1 .. w10 with 3
--     robots each (30), the same rules for the PL/pgSQL baseline;
--   - :n deals in w1 in each of two deal tables of the same shape: crm.deal
--     (with the engine) and base_deal (with the baseline's trigger);
--   - the moves go into w5, whose 3 robots are templated add_comment robots;
--   - the comment tables (crm.timeline_comment, base_comment, both LIKE ...
--     INCLUDING ALL) and the robot log already hold 200,000 rows each
--     (robots_setup.sql) and are never emptied: each run adds to them.
\ir robots_setup.sql
SET client_min_messages = warning;

SELECT crm.add_pipeline('deal', 'Wholesale') AS pipeline \gset
CREATE TABLE bench_stage (n int PRIMARY KEY, id bigint NOT NULL);
INSERT INTO bench_stage
	SELECT g, crm.add_stage(:pipeline, 'w' || g, 'Wholesale ' || g) FROM generate_series(1, 10) g;

-- 3 robots per stage; those of w5 write the comments the benchmark counts.
SELECT count(*) FROM (
	SELECT crm.add_robot(s.id, 'add_comment',
		jsonb_build_object('text', 'Robot ' || i || ': preparing {{title}} for {{amount}}'))
	  FROM bench_stage s, generate_series(1, 3) i ORDER BY s.n, i) x \g /dev/null
INSERT INTO base_rule SELECT s.id, i, 'Robot ' || i || ': preparing {{title}} for {{amount}}'
	  FROM bench_stage s, generate_series(1, 3) i;

-- The deals of both tables move into w1 (not timed), then wait there.
SET session_replication_role = replica;
UPDATE crm.deal SET stage_id = (SELECT id FROM bench_stage WHERE n = 1);
UPDATE base_deal SET stage_id = (SELECT id FROM bench_stage WHERE n = 1);
RESET session_replication_role;
VACUUM ANALYZE crm.deal, base_deal, base_rule, crm.robot, crm.stage;

-- stage_w(n): the id of stage wn.
CREATE FUNCTION stage_w(n int) RETURNS bigint LANGUAGE sql STABLE AS
	$$ SELECT id FROM bench_stage WHERE bench_stage.n = stage_w.n $$;

-- timed_wal(k, q): one run of statement q, its time and the WAL it wrote.
CREATE TABLE bench_wal (k text, bytes numeric);
CREATE FUNCTION timed_wal(k text, q text) RETURNS void LANGUAGE plpgsql AS $$
DECLARE
	t0 timestamptz;
	l0 pg_lsn;
BEGIN
	l0 := pg_current_wal_insert_lsn();
	t0 := clock_timestamp();
	EXECUTE q;
	INSERT INTO bench_run VALUES (k, extract(epoch FROM clock_timestamp() - t0) * 1000);
	INSERT INTO bench_wal VALUES (k, pg_current_wal_insert_lsn() - l0);
END $$;
