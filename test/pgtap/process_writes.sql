-- How business processes write their rows (issue 14, auto-start speed): an
-- instance that ends before any action is written once, in its final state
-- (no INSERT then UPDATE), its trace rows after it; auto-start appends the
-- rows of the instances that complete together.  The rows are appended
-- without INSERT statements, yet every constraint a user sees still holds:
-- CHECKs, the foreign keys (a user's own ones too), deleting a template.
BEGIN;
CREATE EXTENSION crm_automation;
SELECT plan(17);

INSERT INTO crm.department (id, name) VALUES (1, 'Sales');
INSERT INTO crm.user (id, name, department_id) VALUES (1, 'Mia', 1), (2, 'Sam', 1);

-- pg_stat_xact_user_tables counts this transaction's row writes
CREATE FUNCTION pg_temp.writes(t regclass, OUT ins bigint, OUT upd bigint) LANGUAGE sql AS
	$$ SELECT n_tup_ins, n_tup_upd FROM pg_stat_xact_user_tables WHERE relid = t $$;

SELECT crm.add_process_template('deal', 'Welcome', $${"activities": [
	{"type": "set_variable", "variable": "n", "value": "={{amount}} * 2"},
	{"type": "if", "condition": "{{amount}} > 10", "then": [
		{"type": "set_status_text", "text": "Big {{title}}: {=Variable:n}"}],
	 "else": [{"type": "set_status_text", "text": "Small {{title}}"}]}],
	"variables": {"n": {"type": "int", "default": 0}}}$$, auto_start => '{add}') AS welcome \gset

-- one statement, three deals: three instances written once, as completed
SELECT * FROM pg_temp.writes('crm.process_instance') \gset before_
SET LOCAL crm.user_id = 2;
INSERT INTO crm.deal (title, responsible_id, amount) VALUES ('A', 1, 5), ('B', 1, 50), ('C', 1, 500);
RESET crm.user_id;
SELECT * FROM pg_temp.writes('crm.process_instance') \gset after_
SELECT is((:after_ins - :before_ins)::bigint, 3::bigint, 'three instances are inserted');
SELECT is((:after_upd - :before_upd)::bigint, 0::bigint, 'and never updated: each is written once, in its final state');
SELECT results_eq($$SELECT d.title, i.status, i.status_text, i.variables ->> 'n', i.started_by,
		i.finished_at IS NOT NULL, i.current_activity IS NULL, i.error IS NULL
	FROM crm.process_instance i JOIN crm.deal d ON d.id = i.document_id ORDER BY i.id$$,
	$$VALUES ('A', 'completed', 'Small A', '10', 2::bigint, true, true, true),
		('B', 'completed', 'Big B: 100', '100', 2, true, true, true),
		('C', 'completed', 'Big C: 1000', '1000', 2, true, true, true)$$,
	'their final state: status, status text, variables, who started them, when they ended');
SELECT results_eq($$SELECT l.path, l.type, l.status, l.outputs
	FROM crm.process_log l JOIN crm.process_instance i ON i.id = l.instance_id
	JOIN crm.deal d ON d.id = i.document_id WHERE d.title = 'B' ORDER BY l.id$$,
	$$VALUES ('activities[0]', 'set_variable', 'done', NULL::jsonb),
		('activities[1]', 'if', 'done', '{"branch": "then"}'),
		('activities[1].then[0]', 'set_status_text', 'done', '{"text": "Big B: 100"}')$$,
	'their trace rows, in the order the activities ran');
SELECT results_eq($$SELECT name, action, status FROM crm.item_automation('deal', (SELECT id FROM crm.deal WHERE title = 'A'))$$,
	$$VALUES ('Welcome / activities[0]', 'set_variable', 'done'), ('Welcome / activities[1]', 'if', 'done'),
		('Welcome / activities[1].else[0]', 'set_status_text', 'done')$$,
	'crm.item_automation shows them');
SELECT is((SELECT count(*) FROM crm.process_log l WHERE l.finished_at < l.started_at OR l.finished_at IS NULL), 0::bigint,
	'each trace row has its times');

-- crm.start_process writes the same way
SELECT crm.start_process(:welcome, (SELECT id FROM crm.deal WHERE title = 'A')) AS by_hand \gset
SELECT * FROM pg_temp.writes('crm.process_instance') \gset hand_
SELECT is((:hand_upd - :after_upd)::bigint, 0::bigint, 'an instance started by hand is written once too');
SELECT is((SELECT status_text FROM crm.process_instance WHERE id = :by_hand), 'Small A', 'in its final state');

-- an instance that reaches an action is written as running before it, then updated
SELECT crm.add_process_template('deal', 'Acts', $${"activities": [
	{"type": "set_status_text", "text": "before"},
	{"type": "set_field", "field": "title", "value": "{{title}}!"},
	{"type": "set_status_text", "text": "after {{title}}"}]}$$, auto_start => '{add}') AS acts \gset
UPDATE crm.process_template SET auto_start = '{}' WHERE id = :welcome;
INSERT INTO crm.deal (title, responsible_id, amount) VALUES ('D', 1, 1), ('E', 1, 1);
SELECT * FROM pg_temp.writes('crm.process_instance') \gset acts_
SELECT is((:acts_upd - :hand_upd)::bigint, 2::bigint, 'an instance that runs an action is updated once it ends');
SELECT results_eq($$SELECT i.status, i.status_text, string_agg(l.path || ' ' || l.status, ', ' ORDER BY l.id)
	FROM crm.process_instance i JOIN crm.process_log l ON l.instance_id = i.id
	WHERE i.template_id = $$ || :acts || $$ GROUP BY i.id ORDER BY i.id$$,
	$$VALUES ('completed', 'after D!', 'activities[0] done, activities[1] done, activities[2] done'),
		('completed', 'after E!', 'activities[0] done, activities[1] done, activities[2] done')$$,
	'its trace is whole, and the activity after the action reads the document it changed');

-- a CHECK added to the trace holds for appended rows: the starts fail alone
UPDATE crm.process_template SET auto_start = '{}' WHERE id = :acts;
UPDATE crm.process_template SET auto_start = '{add}' WHERE id = :welcome;
ALTER TABLE crm.process_log ADD CONSTRAINT no_ifs CHECK (type <> 'if') NOT VALID;
SET LOCAL client_min_messages = error;
SELECT lives_ok($$INSERT INTO crm.deal (title, responsible_id, amount) VALUES ('F', 1, 1), ('G', 1, 1)$$,
	'a statement whose starts fail still succeeds');
SELECT lives_ok($$INSERT INTO crm.deal (title, responsible_id, amount) VALUES ('H', 1, 1)$$, 'one row too');
RESET client_min_messages;
SELECT is((SELECT count(*) FROM crm.process_instance i JOIN crm.deal d ON d.id = i.document_id
	WHERE d.title IN ('F', 'G', 'H')), 0::bigint, 'the CHECK refused their trace rows: no instance started');
ALTER TABLE crm.process_log DROP CONSTRAINT no_ifs;

-- a foreign key a user adds to the instances is checked too
CREATE TABLE public.nothing (id bigint PRIMARY KEY);
ALTER TABLE crm.process_instance ADD CONSTRAINT to_nothing FOREIGN KEY (document_id) REFERENCES public.nothing NOT VALID;
SET LOCAL client_min_messages = error;
INSERT INTO crm.deal (title, responsible_id, amount) VALUES ('I', 1, 1), ('J', 1, 1);
RESET client_min_messages;
SELECT is((SELECT count(*) FROM crm.process_instance i JOIN crm.deal d ON d.id = i.document_id
	WHERE d.title IN ('I', 'J')), 0::bigint, 'a foreign key a user added refuses the instances');
ALTER TABLE crm.process_instance DROP CONSTRAINT to_nothing;
INSERT INTO crm.deal (title, responsible_id, amount) VALUES ('K', 1, 1), ('L', 1, 1);
SELECT is((SELECT count(*) FROM crm.process_instance i JOIN crm.deal d ON d.id = i.document_id
	WHERE d.title IN ('K', 'L')), 2::bigint, 'without it they start again');

-- the engine's own foreign keys keep their behaviour
SELECT throws_ok($$INSERT INTO crm.process_instance (template_id, document_type, document_id) VALUES (12345, 'deal', 1)$$,
	'23503', NULL, 'an instance of a template that does not exist is refused');
SELECT crm.delete_process_template(:welcome);
SELECT is((SELECT count(*) FROM crm.process_instance WHERE template_id = :welcome)
	+ (SELECT count(*) FROM crm.process_log l WHERE NOT EXISTS (SELECT FROM crm.process_instance i WHERE i.id = l.instance_id)),
	0::bigint, 'deleting a template deletes its instances and their trace');

SELECT * FROM finish();
ROLLBACK;
