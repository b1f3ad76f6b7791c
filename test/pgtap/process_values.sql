-- Business processes: starting by template name; int variables take
-- numbers that are whole after evaluation; typed custom fields keep their
-- type when an activity (or a robot) writes them.
BEGIN;
CREATE EXTENSION crm_automation;
SELECT plan(16);

INSERT INTO crm.department (id, name) VALUES (1, 'Sales');
INSERT INTO crm.user (id, name, department_id) VALUES (1, 'Mia', 1);
INSERT INTO crm.deal (id, title, responsible_id, amount) VALUES (1, 'Chairs', 1, 8000), (2, 'Desks', 1, 8500);
INSERT INTO crm.lead (id, title, responsible_id) VALUES (1, 'Call me', 1);
INSERT INTO crm.user_field (entity_type, code, name, type) VALUES
	('deal', 'UF_SEATS', 'Seats', 'number'), ('deal', 'UF_RUSH', 'Rush', 'boolean'),
	('deal', 'UF_OWNER', 'Owner', 'user'), ('deal', 'UF_NOTE', 'Note', 'text');

SELECT crm.add_process_template('deal', 'Count', $${
	"variables": {"k": {"type": "int"}},
	"activities": [
		{"type": "set_variable", "variable": "k", "value": "={{amount}} / 1000"},
		{"type": "set_field", "field": "UF_SEATS", "value": "{=Variable:k}"},
		{"type": "update_item", "fields": {"UF_RUSH": "yes", "UF_OWNER": "1", "UF_NOTE": "12"}}]}$$) IS NOT NULL AS t1;
SELECT crm.add_process_template('lead', 'Count', '{"activities": [{"type": "add_comment", "text": "lead"}]}') IS NOT NULL AS t2;

-- By name.
SELECT throws_ok($$SELECT crm.start_process('Count', 1)$$, '42P08', 'process template name "Count" is ambiguous',
	'a name two document types use needs the type');
SELECT isnt(crm.start_process('Count', 'deal', 1), NULL, 'by name and document type');
SELECT throws_ok($$SELECT crm.start_process('Nope', 'deal', 1)$$, '42704', 'process template "Nope" does not exist for deal',
	'an unknown name');
SELECT throws_ok($$SELECT crm.start_process(NULL::text, 1)$$, '22004', 'template must not be null', 'a NULL name: refused, no crash');

-- Whole numbers after evaluation: 8000 / 1000 = 8.
SELECT results_eq($$SELECT status, variables->'k' FROM crm.process_instance WHERE document_id = 1 AND document_type = 'deal'$$,
	$$VALUES ('completed', '8'::jsonb)$$, 'an int variable takes 8000 / 1000');
SELECT is((SELECT fields->'UF_SEATS' FROM crm.deal WHERE id = 1), '8'::jsonb, 'a number field gets a number, not "8"');
SELECT is((SELECT fields->'UF_RUSH' FROM crm.deal WHERE id = 1), 'true'::jsonb, 'a boolean field gets true from "yes"');
SELECT is((SELECT fields->'UF_OWNER' FROM crm.deal WHERE id = 1), '1'::jsonb, 'a user field gets a user id');
SELECT is((SELECT fields->'UF_NOTE' FROM crm.deal WHERE id = 1), '"12"'::jsonb, 'a text field keeps text');

-- 8500 / 1000 is not whole: the instance fails, naming the variable.
SELECT isnt(crm.start_process('Count', 'deal', 2), NULL, 'starts');
SELECT results_eq($$SELECT status, error FROM crm.process_instance WHERE document_id = 2 AND document_type = 'deal'$$,
	$$VALUES ('failed', 'value 8.5 does not fit variable "k" of type int')$$,
	'a fraction does not fit an int variable, and the error names it');

-- A value that does not fit a typed custom field: the robot fails, naming the field.
SELECT crm.add_robot(crm.stage('deal', 'preparation'), 'update_item', '{"fields": {"UF_SEATS": "many"}}') IS NOT NULL AS r;
UPDATE crm.deal SET stage_id = crm.stage('deal', 'preparation') WHERE id = 2;
SELECT results_eq($$SELECT status, error FROM crm.robot_log WHERE entity_id = 2 AND action = 'update_item'$$,
	$$VALUES ('failed', 'value "many" does not fit custom field UF_SEATS of type number')$$,
	'"many" does not fit a number field');
SELECT is((SELECT fields ? 'UF_SEATS' FROM crm.deal WHERE id = 2), false, 'and nothing was written');
-- A robot's number from a template: stored as a number.
UPDATE crm.robot SET params = '{"fields": {"UF_SEATS": "{{amount}}"}}' WHERE action = 'update_item';
UPDATE crm.deal SET stage_id = crm.stage('deal', 'new') WHERE id = 2;
UPDATE crm.deal SET stage_id = crm.stage('deal', 'preparation') WHERE id = 2;
SELECT is((SELECT jsonb_typeof(fields->'UF_SEATS') FROM crm.deal WHERE id = 2), 'number', 'a robot''s rendered number is stored as a number');

-- Many custom fields in one update_item (more than one jsonb_build_object takes).
INSERT INTO crm.user_field (entity_type, code, name, type)
	SELECT 'deal', 'UF_F' || i, 'F' || i, 'number' FROM generate_series(1, 45) i;
SELECT crm.add_process_template('deal', 'Many', jsonb_build_object('activities', jsonb_build_array(
	jsonb_build_object('type', 'update_item', 'fields',
		(SELECT jsonb_object_agg('UF_F' || i, i::text) FROM generate_series(1, 45) i))))) IS NOT NULL AS t3;
SELECT isnt(crm.start_process('Many', 'deal', 1), NULL, 'starts');
SELECT is((SELECT count(*) FROM crm.deal, jsonb_each(fields) f
			WHERE id = 1 AND f.key LIKE 'UF_F%' AND jsonb_typeof(f.value) = 'number'), 45::bigint,
	'45 custom fields set in one update, each a number');

SELECT * FROM finish();
ROLLBACK;
