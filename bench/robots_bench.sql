-- Driven by bench/robots_bench.sh.  Each measurement is the median of 5 runs.
\pset footer off
SET client_min_messages = warning;
CREATE EXTENSION crm_automation;
INSERT INTO crm.user (id, name) VALUES (1, 'Bench');

-- time_ms(sql): milliseconds one statement takes.
CREATE FUNCTION time_ms(q text) RETURNS float8 LANGUAGE plpgsql AS $$
DECLARE t0 timestamptz;
BEGIN
	t0 := clock_timestamp();
	EXECUTE q;
	RETURN extract(epoch FROM clock_timestamp() - t0) * 1000;
END $$;

CREATE FUNCTION median_ms(q text, setup text DEFAULT NULL, runs int DEFAULT 5) RETURNS float8
LANGUAGE plpgsql AS $$
DECLARE xs float8[] := '{}';
BEGIN
	FOR i IN 1..runs LOOP
		IF setup IS NOT NULL THEN EXECUTE setup; END IF;
		xs := xs || time_ms(q);
	END LOOP;
	RETURN (SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY x) FROM unnest(xs) x);
END $$;

-- 1. An update that changes no stage.
CREATE TABLE plain_deal (LIKE crm.deal INCLUDING ALL);
INSERT INTO crm.deal (title, responsible_id, amount) SELECT 'd' || g, 1, g FROM generate_series(1, :n) g;
INSERT INTO plain_deal SELECT * FROM crm.deal;
VACUUM ANALYZE crm.deal, plain_deal;
SELECT round(a::numeric, 1) AS with_engine_ms, round(b::numeric, 1) AS plain_table_ms,
       round((a / b)::numeric, 3) AS ratio, '<= 1.10' AS goal
  FROM (SELECT median_ms('UPDATE crm.deal SET amount = amount + 1') a,
               median_ms('UPDATE plain_deal SET amount = amount + 1') b) t;

-- 2. Moving N deals into a stage with 3 templated add_comment robots.
SELECT crm.add_robot(crm.stage('deal', 'preparation'), 'add_comment',
	jsonb_build_object('text', 'Robot ' || i || ': preparing {{title}} for {{amount}}'))
  FROM generate_series(1, 3) i;

-- The baseline: rules looked up by stage, rendered and inserted by PL/pgSQL.
CREATE TABLE base_rule (stage_id bigint, sort int, text text);
CREATE INDEX ON base_rule (stage_id);
INSERT INTO base_rule SELECT crm.stage('deal', 'preparation'), i,
	'Robot ' || i || ': preparing {{title}} for {{amount}}' FROM generate_series(1, 3) i;
CREATE TABLE base_comment (id bigserial PRIMARY KEY, entity_type text, entity_id bigint, text text);
CREATE TABLE base_deal (LIKE crm.deal INCLUDING DEFAULTS);
ALTER TABLE base_deal ADD PRIMARY KEY (id);
CREATE FUNCTION base_trigger() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE r record;
BEGIN
	FOR r IN SELECT text FROM base_rule WHERE stage_id = NEW.stage_id ORDER BY sort LOOP
		INSERT INTO base_comment (entity_type, entity_id, text)
		VALUES ('deal', NEW.id, replace(replace(r.text, '{{title}}', NEW.title), '{{amount}}', NEW.amount::text));
	END LOOP;
	RETURN NULL;
END $$;
CREATE TRIGGER base_move AFTER UPDATE ON base_deal FOR EACH ROW
	WHEN (OLD.stage_id IS DISTINCT FROM NEW.stage_id) EXECUTE FUNCTION base_trigger();
INSERT INTO base_deal SELECT * FROM crm.deal;
VACUUM ANALYZE base_deal;

SELECT round(a::numeric, 1) AS engine_ms, round(b::numeric, 1) AS plpgsql_ms,
       round((a / b)::numeric, 3) AS ratio, '<= 1.00' AS goal
  FROM (SELECT median_ms(format('UPDATE crm.deal SET stage_id = %s', crm.stage('deal', 'preparation')),
                         format('UPDATE crm.deal SET stage_id = %s; TRUNCATE crm.timeline_comment, crm.robot_log', crm.stage('deal', 'new')), 3) a,
               median_ms(format('UPDATE base_deal SET stage_id = %s', crm.stage('deal', 'preparation')),
                         format('UPDATE base_deal SET stage_id = %s; TRUNCATE base_comment', crm.stage('deal', 'new')), 3) b) t;
SELECT count(*) AS comments_written FROM crm.timeline_comment;

-- 3. Robots elsewhere must not slow a move: 10, then 10,000 robots on other stages.
DELETE FROM crm.deal WHERE id > 2000;
CREATE TEMP TABLE scale (robots int, ms float8);
SELECT crm.add_robot(crm.stage('deal', 'executing'), 'write_log', '{"text": "x"}') FROM generate_series(1, 10);
INSERT INTO scale SELECT 10, median_ms(format('UPDATE crm.deal SET stage_id = %s', crm.stage('deal', 'preparation')),
	format('UPDATE crm.deal SET stage_id = %s; TRUNCATE crm.timeline_comment, crm.robot_log', crm.stage('deal', 'new')), 3);
INSERT INTO crm.robot (stage_id, action, params, sort)
	SELECT crm.stage('deal', 'executing'), 'write_log', '{"text": "x"}', g FROM generate_series(1, 9990) g;
INSERT INTO scale SELECT 10000, median_ms(format('UPDATE crm.deal SET stage_id = %s', crm.stage('deal', 'preparation')),
	format('UPDATE crm.deal SET stage_id = %s; TRUNCATE crm.timeline_comment, crm.robot_log', crm.stage('deal', 'new')), 3);
SELECT (SELECT round(ms::numeric, 1) FROM scale WHERE robots = 10) AS ms_10_elsewhere,
       (SELECT round(ms::numeric, 1) FROM scale WHERE robots = 10000) AS ms_10000_elsewhere,
       round(((SELECT ms FROM scale WHERE robots = 10000) / (SELECT ms FROM scale WHERE robots = 10))::numeric, 3) AS ratio,
       '<= 1.20' AS goal;

-- 4. One bulk statement: 100,000 deals into a stage with 3 robots (memory stays flat:
--    each row's work is freed with the after-trigger event).
TRUNCATE crm.timeline_comment, crm.robot_log;
DELETE FROM crm.robot WHERE stage_id = crm.stage('deal', 'executing');
INSERT INTO crm.deal (title, responsible_id, amount) SELECT 'bulk' || g, 1, g FROM generate_series(1, 100000) g;
CREATE TEMP TABLE bulk AS
	SELECT time_ms(format('UPDATE crm.deal SET stage_id = %s WHERE title LIKE ''bulk%%''', crm.stage('deal', 'preparation'))) AS ms;
SELECT round((SELECT ms FROM bulk)::numeric / 1000, 1) AS bulk_100k_seconds,
       (SELECT count(*) FROM crm.timeline_comment) AS comments,
       (SELECT pg_size_pretty(sum(total_bytes)) FROM pg_backend_memory_contexts) AS backend_memory_after;
