-- Driven by bench/triggers_bench.sh after bench/triggers_setup.sql: rounds of
-- the four cases, each N single-row INSERTs of an incoming call, one per deal.
\pset footer off
SET client_min_messages = warning;
SET bench.n = :'n';
CREATE TABLE result (round int, case_name text, ms float8, logged bigint, moved bigint);
-- Rounds of the four cases, each statement in a transaction of its own; the
-- deals are vacuumed before each run, so that no run pays for the moves of
-- the one before.
SELECT q FROM generate_series(1, 9) r,
	unnest(ARRAY['none', 'a', 'b', 'c']) WITH ORDINALITY c(name, i),
	unnest(ARRAY[format('SELECT use_case(%L)', c.name),
				 'VACUUM crm.deal',
				 format('INSERT INTO result (round, case_name, ms) SELECT %s, %L, time_ms(%L)',
						r, c.name, format('SELECT calls(%s)', current_setting('bench.n'))),
				 format('UPDATE result SET logged = (SELECT count(*) FROM crm.robot_log WHERE kind = ''trigger''),'
						' moved = (SELECT count(*) FROM crm.deal WHERE stage_id <> crm.stage(''deal'', ''new''))'
						' WHERE round = %s AND case_name = %L', r, c.name)]) WITH ORDINALITY q(q, j)
 ORDER BY r, c.i, q.j \gexec

SELECT case_name, round(percentile_cont(0.5) WITHIN GROUP (ORDER BY ms)::numeric, 1) AS median_ms,
       round(min(ms)::numeric, 1) AS min_ms, round(max(ms)::numeric, 1) AS max_ms,
       max(logged) AS trigger_logs_per_run, max(moved) AS deals_moved_per_run
  FROM result GROUP BY case_name ORDER BY case_name;
-- Each round measures every case back to back: the ratio of a round is its
-- case over its "none", and the figure is the median of the rounds' ratios
-- (the machine's load drifts between rounds, less within one).
WITH r AS (SELECT x.case_name, x.ms / n.ms AS ratio
			 FROM result x JOIN result n ON n.round = x.round AND n.case_name = 'none'
			WHERE x.case_name <> 'none')
SELECT x.measure, round(percentile_cont(0.5) WITHIN GROUP (ORDER BY r.ratio)::numeric, 3) AS ratio,
       round(min(r.ratio)::numeric, 3) AS best, round(max(r.ratio)::numeric, 3) AS worst, x.goal
  FROM (VALUES ('a', 'a: call INSERT, 50 triggers (none for calls on the deal''s pipeline) vs none', '<= 1.20'),
               ('b', 'b: call INSERT, 50 triggers (5 for calls, conditions false: decided, logged) vs none', '<= 1.20'),
               ('c', 'c: call INSERT, 50 triggers, the call moves the deal (log, history, UPDATE) vs none', 'for scale')) x(c, measure, goal)
  JOIN r ON r.case_name = x.c GROUP BY x.c, x.measure, x.goal ORDER BY x.c;
