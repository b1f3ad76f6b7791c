-- The data of the auto-start benchmarks (bench/autostart_bench.sh timed,
-- bench/autostart_instructions.sh in instructions): PREFILL deals (100,000
-- by default), the instances of PREFILL/10 of them, a template on deals and
-- one on leads, each with one set_status_text activity, and use_case() to
-- make the templates auto-start as a case wants.
\pset footer off
SET client_min_messages = warning;
\if :{?prefill}
\else
\set prefill 100000
\endif
CREATE EXTENSION crm_automation;
\ir common.sql
CREATE TABLE bench_run (k text, ms float8);
INSERT INTO crm.department (id, name) VALUES (1, 'Sales');
INSERT INTO crm.user (id, name, department_id) VALUES (1, 'Seller', 1);
INSERT INTO crm.deal (title, responsible_id, amount)
	SELECT 'Old deal ' || g, 1, g FROM generate_series(1, :prefill) g;
SELECT crm.add_process_template('deal', 'Welcome', '{"activities": [
	{"type": "set_status_text", "text": "Welcome, {{title}}"}]}', auto_start => '{}');
SELECT crm.add_process_template('lead', 'Lead welcome', '{"activities": [
	{"type": "set_status_text", "text": "Welcome, {{title}}"}]}', auto_start => '{}');
-- the process tables hold earlier instances too
UPDATE crm.process_template SET auto_start = '{add}' WHERE name = 'Welcome';
INSERT INTO crm.deal (title, responsible_id, amount)
	SELECT 'Earlier deal ' || g, 1, g FROM generate_series(1, :prefill / 10) g;
UPDATE crm.process_template SET auto_start = '{}' WHERE name = 'Welcome';

-- CALL use_case(c): none (no template auto-starts), other (the lead template
-- only), one (the deal template).
CREATE PROCEDURE use_case(c text) LANGUAGE sql AS $$
	UPDATE crm.process_template SET auto_start = CASE
		WHEN c = 'other' AND document_type = 'lead' THEN '{add}'::text[]
		WHEN c = 'one' AND document_type = 'deal' THEN '{add}'::text[]
		ELSE '{}' END;
$$;

-- The floor: tables like the instances' and the trace's (columns, defaults,
-- CHECKs, indexes; no foreign keys, no triggers), for the least an
-- instance writes, by the cheapest SQL: floor_insert(n) is the INSERT of n
-- deals that also writes, in the same statement, an instance row and a
-- trace row per deal (no template auto-starts).
CREATE TABLE floor_instance (LIKE crm.process_instance INCLUDING ALL);
CREATE TABLE floor_log (LIKE crm.process_log INCLUDING ALL);
VACUUM ANALYZE;
