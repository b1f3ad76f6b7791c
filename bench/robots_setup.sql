-- Setup of bench/robots_bench.sh: the data, the robots, and the baselines.
SET client_min_messages = warning;
CREATE EXTENSION crm_automation;
INSERT INTO crm.user (id, name) VALUES (1, 'Bench');

\ir common.sql
CREATE TABLE bench_run (k text, ms float8);

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

INSERT INTO crm.deal (title, responsible_id, amount) SELECT 'd' || g, 1, g FROM generate_series(1, :n) g;

-- 1. The identical table without the engine.
SELECT copy_table('crm.deal', 'same_deal');
INSERT INTO same_deal SELECT * FROM crm.deal;

-- 2. Three templated add_comment robots on "preparation".
SELECT count(*) FROM (
	SELECT crm.add_robot(crm.stage('deal', 'preparation'), 'add_comment',
		jsonb_build_object('text', 'Robot ' || i || ': preparing {{title}} for {{amount}}'))
	  FROM generate_series(1, 3) i) x \g /dev/null

-- The baseline: rules looked up by stage, rendered and inserted by PL/pgSQL
-- into a copy of crm.timeline_comment, from an identical deal table.
CREATE TABLE base_rule (stage_id bigint, sort int, text text);
CREATE INDEX ON base_rule (stage_id);
INSERT INTO base_rule SELECT crm.stage('deal', 'preparation'), i,
	'Robot ' || i || ': preparing {{title}} for {{amount}}' FROM generate_series(1, 3) i;
SELECT copy_table('crm.timeline_comment', 'base_comment');
SELECT copy_table('crm.deal', 'base_deal');
CREATE FUNCTION base_trigger() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE r record;
BEGIN
	FOR r IN SELECT text FROM base_rule WHERE stage_id = NEW.stage_id ORDER BY sort LOOP
		INSERT INTO base_comment (entity_type, entity_id, author_id, text)
		VALUES ('deal', NEW.id, NEW.responsible_id, replace(replace(r.text, '{{title}}', NEW.title), '{{amount}}', NEW.amount::text));
	END LOOP;
	RETURN NULL;
END $$;
CREATE TRIGGER base_move AFTER UPDATE ON base_deal FOR EACH ROW
	WHEN (OLD.stage_id IS DISTINCT FROM NEW.stage_id) EXECUTE FUNCTION base_trigger();
INSERT INTO base_deal SELECT * FROM crm.deal;

-- The tables the moves write already hold rows, as a user's database does:
-- 200,000 earlier comments (in the engine's table and the baseline's) and
-- as many robot runs in the log (3 per entry row, as the engine logs them).
SET session_replication_role = replica;
INSERT INTO crm.timeline_comment (entity_type, entity_id, author_id, text)
	SELECT 'deal', 1 + g % :n, 1, 'earlier comment ' || g FROM generate_series(1, 200000) g;
INSERT INTO base_comment (entity_type, entity_id, author_id, text)
	SELECT 'deal', 1 + g % :n, 1, 'earlier comment ' || g FROM generate_series(1, 200000) g;
INSERT INTO crm.robot_log_entry (stage_id, entity_type, entity_id, robot_ids, actions, statuses, started, finished_at)
	SELECT crm.stage('deal', 'preparation'), 'deal', 1 + g % :n, ARRAY(SELECT id FROM crm.robot ORDER BY id LIMIT 3),
		   '{add_comment,add_comment,add_comment}', '{done,done,done}', ARRAY[now(), now(), now()], ARRAY[now(), now(), now()]
	  FROM generate_series(1, 200000 / 3) g;
RESET session_replication_role;
VACUUM ANALYZE crm.deal, same_deal, base_deal, crm.timeline_comment, base_comment, crm.robot_log_entry;
