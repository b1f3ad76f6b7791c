-- Auto-start of business processes (SPEC §5, seed 001): templates with
-- auto_start 'add' start when an item is created, 'modify' when a statement
-- changes one; not on imports (crm.import_mode, COPY FROM) nor for writes
-- of automation (the causal lineage); crm.record_incoming creates a lead for
-- an unknown address, and that lead auto-starts.
BEGIN;
CREATE EXTENSION crm_automation;
SELECT plan(55);

INSERT INTO crm.department (id, name) VALUES (1, 'Sales');
INSERT INTO crm.user (id, name, email, department_id) VALUES (1, 'Mia', 'mia@example.com', 1), (2, 'Sam', 'sam@example.com', 1);
UPDATE crm.department SET head_id = 1;
INSERT INTO crm.deal (id, title, responsible_id, amount) VALUES (1, 'Before', 2, 100);
SELECT setval(pg_get_serial_sequence('crm.deal', 'id'), 100);

-- auto_start is stored, each value once; a bad value is refused.
SELECT crm.add_process_template('deal', 'On add', $${
	"activities": [{"type": "set_status_text", "text": "New: {{title}}"}]}$$,
	auto_start => ARRAY['add', 'add']) AS on_add \gset
SELECT is((SELECT auto_start FROM crm.process_template WHERE id = :on_add), ARRAY['add'],
	'auto_start is stored, each value once');
SELECT throws_ok($$SELECT crm.add_process_template('deal', 'Bad', '{"activities": []}', auto_start => ARRAY['sometimes'])$$,
	'22023', 'invalid auto_start {sometimes}', 'an unknown auto_start value is refused');
SELECT throws_ok($$SELECT crm.add_process_template('deal', 'Needs reason',
	'{"parameters": {"reason": {"type": "text", "required": true}}, "activities": [{"type": "write_log", "text": "x"}]}', auto_start => ARRAY['add'])$$,
	'22023', 'a template that auto-starts cannot require parameter "reason"',
	'a template that auto-starts cannot have a required parameter without a default');
SELECT lives_ok($$SELECT crm.add_process_template('deal', 'Reason with default',
	'{"parameters": {"reason": {"type": "text", "required": true, "default": "auto"}}, "activities": [{"type": "write_log", "text": "x"}]}')$$,
	'a required parameter with a default is fine');
SELECT throws_ok($$SELECT crm.update_process_template(
	(SELECT id FROM crm.process_template WHERE name = 'Reason with default'),
	definition => '{"parameters": {"reason": {"type": "text", "required": true}}, "activities": [{"type": "write_log", "text": "x"}]}',
	auto_start => ARRAY['modify'])$$,
	'22023', 'a template that auto-starts cannot require parameter "reason"', 'update_process_template checks it too');
SELECT crm.delete_process_template(id) FROM crm.process_template WHERE name = 'Reason with default';

-- add: one instance per new deal, the instance as crm.start_process makes it.
INSERT INTO crm.deal (title, responsible_id) VALUES ('Chairs', 2), ('Desks', 2);
SELECT results_eq($$SELECT d.title, i.status, i.status_text FROM crm.process_instances i
	JOIN crm.deal d ON d.id = i.document_id WHERE i.template_id = $$ || :on_add || $$ ORDER BY d.id$$,
	$$VALUES ('Chairs', 'completed', 'New: Chairs'), ('Desks', 'completed', 'New: Desks')$$,
	'each new deal starts the add template');
SELECT is((SELECT count(*) FROM crm.process_instance WHERE document_id = 1), 0::bigint,
	'a deal created before the template does not start');
SELECT is((SELECT count(*) FROM crm.process_log l JOIN crm.process_instance i ON i.id = l.instance_id
	WHERE i.template_id = :on_add), 2::bigint, 'their activities are in the trace');

-- modify: a statement that changes a column; not the bookkeeping ones.
SELECT crm.add_process_template('deal', 'On modify', $${
	"activities": [{"type": "set_status_text", "text": "Changed: {{amount}}"}]}$$,
	auto_start => ARRAY['modify']) AS on_modify \gset
UPDATE crm.deal SET amount = 500 WHERE id = 1;
SELECT results_eq($$SELECT status_text FROM crm.process_instances WHERE template_id = $$ || :on_modify,
	$$VALUES ('Changed: 500')$$, 'a changed deal starts the modify template');
SELECT is((SELECT count(*) FROM crm.process_instance WHERE template_id = :on_add AND document_id = 1), 0::bigint,
	'a change does not start the add template');
UPDATE crm.deal SET updated_at = now() - interval '1 day', stage_changed_at = now(), updated_by = 1 WHERE id = 1;
SELECT is((SELECT count(*) FROM crm.process_instance WHERE template_id = :on_modify), 1::bigint,
	'an update of updated_at, updated_by and stage_changed_at only starts nothing');
UPDATE crm.deal SET amount = amount WHERE id = 1;
SELECT is((SELECT count(*) FROM crm.process_instance WHERE template_id = :on_modify), 1::bigint,
	'an update that changes nothing starts nothing');
INSERT INTO crm.deal (id, title) VALUES (1, 'Before') ON CONFLICT (id) DO UPDATE SET amount = 700;
SELECT results_eq($$SELECT count(*) FILTER (WHERE template_id = $$ || :on_modify || $$),
	count(*) FILTER (WHERE template_id = $$ || :on_add || $$)
	FROM crm.process_instance WHERE document_id = 1$$,
	$$VALUES (2::bigint, 0::bigint)$$, 'an upsert that updates starts modify, not add');
SELECT crm.update_process_template(:on_modify, active => false);
UPDATE crm.deal SET amount = 900 WHERE id = 1;
SELECT is((SELECT count(*) FROM crm.process_instance WHERE template_id = :on_modify), 2::bigint,
	'an inactive template does not start (the cache saw the change)');
SELECT crm.update_process_template(:on_modify, active => true);

-- Several templates start in template id order; add and modify together.
SELECT crm.add_process_template('deal', 'Both', $${
	"activities": [{"type": "add_comment", "text": "Both ran"}]}$$,
	auto_start => ARRAY['modify', 'add']) AS both_t \gset
SELECT is((SELECT auto_start FROM crm.process_template WHERE id = :both_t), ARRAY['add', 'modify'],
	'auto_start is stored in order');
INSERT INTO crm.deal (title) VALUES ('Lamps') RETURNING id AS lamps \gset
SELECT results_eq($$SELECT template_id FROM crm.process_instance WHERE document_id = $$ || :lamps || $$ ORDER BY id$$,
	ARRAY[:on_add, :both_t]::bigint[], 'a new deal starts its add templates in id order');
UPDATE crm.deal SET title = 'Lamps 2' WHERE id = :lamps;
SELECT results_eq($$SELECT template_id FROM crm.process_instance WHERE document_id = $$ || :lamps || $$ ORDER BY id$$,
	ARRAY[:on_add, :both_t, :on_modify, :both_t]::bigint[], 'a change starts the modify templates in id order');
SELECT crm.delete_process_template(:both_t);

-- One statement, many rows: one instance each.
INSERT INTO crm.deal (title) SELECT 'Bulk ' || g FROM generate_series(1, 50) g;
SELECT is((SELECT count(*) FROM crm.process_instance i JOIN crm.deal d ON d.id = i.document_id
	WHERE d.title LIKE 'Bulk %' AND i.template_id = :on_add AND i.status = 'completed'), 50::bigint,
	'a bulk INSERT starts one instance per row');

-- Other entity types: contacts, companies, leads, smart-process items.
SELECT crm.add_process_template('contact', 'New contact', $${
	"activities": [{"type": "set_status_text", "text": "Hello {{name}}"}]}$$, auto_start => ARRAY['add', 'modify']);
SELECT crm.add_process_template('company', 'New company', $${
	"activities": [{"type": "set_status_text", "text": "Company {{title}}"}]}$$, auto_start => ARRAY['add']);
INSERT INTO crm.contact (name) VALUES ('Claire');
INSERT INTO crm.company (title) VALUES ('Acme');
UPDATE crm.contact SET last_name = 'Dupont';
SELECT results_eq($$SELECT document_type, status_text FROM crm.process_instances
	WHERE document_type IN ('contact', 'company') ORDER BY id$$,
	$$VALUES ('contact', 'Hello Claire'), ('company', 'Company Acme'), ('contact', 'Hello Claire')$$,
	'contacts and companies auto-start on add and modify');
SELECT crm.create_smart_process('repair', 'Repairs');
SELECT crm.add_process_template('repair', 'New repair', $${
	"activities": [{"type": "set_status_text", "text": "Repair {{title}}"}]}$$, auto_start => ARRAY['add']);
INSERT INTO crm.item (entity_type, title) VALUES ('repair', 'Boiler');
SELECT results_eq($$SELECT status_text FROM crm.process_instances WHERE document_type = 'repair'$$,
	$$VALUES ('Repair Boiler')$$, 'smart-process items auto-start');

-- Imports: crm.import_mode, and COPY FROM.
SELECT count(*) AS modified FROM crm.process_instance WHERE template_id = :on_modify \gset
SET crm.import_mode = on;
INSERT INTO crm.deal (title) VALUES ('Imported');
UPDATE crm.deal SET amount = 1 WHERE id = 1;
RESET crm.import_mode;
SELECT is((SELECT count(*) FROM crm.process_instance i JOIN crm.deal d ON d.id = i.document_id
	WHERE d.title = 'Imported'), 0::bigint, 'nothing starts for a deal inserted in import mode');
SELECT is((SELECT count(*) FROM crm.process_instance WHERE template_id = :on_modify), :modified::bigint,
	'nor for a change in import mode');
COPY crm.deal (title, amount) FROM STDIN;
Copied one	10
Copied two	20
\.
SELECT is((SELECT count(*) FROM crm.deal WHERE title LIKE 'Copied%'), 2::bigint, 'COPY FROM inserted the deals');
SELECT is((SELECT count(*) FROM crm.process_instance i JOIN crm.deal d ON d.id = i.document_id
	WHERE d.title LIKE 'Copied%'), 0::bigint, 'nothing starts for deals copied in');
INSERT INTO crm.deal (title) VALUES ('After the copy') RETURNING id AS after_copy \gset
SELECT is((SELECT count(*) FROM crm.process_instance WHERE document_id = :after_copy AND template_id = :on_add),
	1::bigint, 'the next INSERT auto-starts again');

-- Lineage: a process that copies its deal does not start itself on the
-- copy (one insert, one instance, one copy); a robot's writes neither.
SELECT crm.update_process_template(:on_add, active => false);
SELECT crm.update_process_template(:on_modify, active => false);
SELECT crm.add_process_template('deal', 'Copier', $${
	"activities": [{"type": "copy_deal"}]}$$, auto_start => ARRAY['add', 'modify']) AS copier \gset
INSERT INTO crm.deal (title) VALUES ('Original') RETURNING id AS original \gset
SELECT is((SELECT count(*) FROM crm.process_instance WHERE template_id = :copier), 1::bigint,
	'one insert, one instance');
SELECT is((SELECT count(*) FROM crm.deal WHERE title LIKE 'Original%'), 2::bigint, 'one copy');
SELECT crm.add_robot(crm.stage('deal', 'preparation'), 'update_item', '{"fields": {"amount": 42}}');
UPDATE crm.deal SET stage_id = crm.stage('deal', 'preparation') WHERE id = :original;
SELECT is((SELECT amount FROM crm.deal WHERE id = :original), 42::numeric, 'the robot changed the deal');
SELECT is((SELECT count(*) FROM crm.process_instance WHERE template_id = :copier AND document_id = :original),
	2::bigint, 'the user''s stage change started the modify template once; the robot''s change did not');
SELECT is((SELECT count(*) FROM crm.deal WHERE title LIKE 'Original%'), 3::bigint, 'one more copy');
SELECT crm.delete_process_template(:copier);

-- A start that fails fails alone: the INSERT commits.
SELECT crm.add_process_template('deal', 'Fails', $${
	"activities": [{"type": "set_field", "field": "amount", "value": "not a number"}]}$$,
	auto_start => ARRAY['add']) AS fails \gset
SELECT lives_ok($$INSERT INTO crm.deal (title) VALUES ('Doomed')$$, 'an INSERT whose process fails succeeds');
SELECT results_eq($$SELECT i.status FROM crm.process_instance i JOIN crm.deal d ON d.id = i.document_id
	WHERE d.title = 'Doomed'$$, $$VALUES ('failed')$$, 'the instance failed alone');
SELECT crm.delete_process_template(:fails);

-- An activity that writes nothing (set_status_text, set_variable, if) runs
-- unguarded in a statement's optimistic run; when one fails there, every
-- start is run again guarded: only that instance fails, with its error, and
-- the trace of each is written once.
SELECT crm.add_process_template('deal', 'Ratio', $${
	"variables": {"r": {"type": "number"}},
	"activities": [{"type": "set_variable", "variable": "r", "value": "=100/{{amount}}"},
	               {"type": "if", "condition": "={=Variable:r} > 1", "then": [
	                   {"type": "set_status_text", "text": "ratio {=Variable:r}"}]}]}$$,
	auto_start => ARRAY['add']) AS ratio \gset
SELECT lives_ok($$INSERT INTO crm.deal (title, amount) VALUES ('Ratio 1', 10), ('Ratio 0', 0), ('Ratio 2', 20)$$,
	'an INSERT whose pure activity fails for one row succeeds');
SELECT results_eq($$SELECT d.title, i.status, i.status_text, i.error IS NOT NULL,
		(SELECT string_agg(l.type || ' ' || l.status, ', ' ORDER BY l.id) FROM crm.process_log l WHERE l.instance_id = i.id)
	FROM crm.deal d JOIN crm.process_instance i ON i.document_id = d.id
	WHERE d.title LIKE 'Ratio %' ORDER BY d.id$$,
	$$VALUES ('Ratio 1', 'completed', 'ratio 10', false, 'set_variable done, if done, set_status_text done'),
	         ('Ratio 0', 'failed', NULL, true, 'set_variable failed'),
	         ('Ratio 2', 'completed', 'ratio 5', false, 'set_variable done, if done, set_status_text done')$$,
	'only the failing instance failed; the others completed, each trace written once');
SELECT crm.delete_process_template(:ratio);

-- A start that cannot even begin (here an instance row a site's trigger
-- refuses) is replayed alone: the other items of the statement start.
CREATE FUNCTION public.refuse_instance() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
	IF (SELECT title FROM crm.deal WHERE id = NEW.document_id) = 'Refused' THEN
		RAISE EXCEPTION 'refused by the site';
	END IF;
	RETURN NEW;
END $$;
CREATE TRIGGER refuse BEFORE INSERT ON crm.process_instance FOR EACH ROW EXECUTE FUNCTION public.refuse_instance();
SELECT crm.update_process_template(:on_add, active => true);
SET client_min_messages = error;
SELECT lives_ok($$INSERT INTO crm.deal (title) VALUES ('Accepted 1'), ('Refused'), ('Accepted 2')$$,
	'an INSERT whose start fails succeeds');
RESET client_min_messages;
SELECT results_eq($$SELECT d.title, count(i.id) FROM crm.deal d LEFT JOIN crm.process_instance i ON i.document_id = d.id
	WHERE d.title IN ('Accepted 1', 'Refused', 'Accepted 2') GROUP BY d.id, d.title ORDER BY d.id$$,
	$$VALUES ('Accepted 1', 1::bigint), ('Refused', 0::bigint), ('Accepted 2', 1::bigint)$$,
	'only the start that failed is missing');
DROP TRIGGER refuse ON crm.process_instance;

-- A rolled-back savepoint takes its notes with it.
SAVEPOINT before_rollback;
INSERT INTO crm.deal (title) VALUES ('Rolled back');
ROLLBACK TO SAVEPOINT before_rollback;
INSERT INTO crm.deal (title) VALUES ('Kept') RETURNING id AS kept \gset
SELECT results_eq($$SELECT count(*) FROM crm.process_instance WHERE document_id = $$ || :kept,
	ARRAY[1::bigint], 'after a rolled-back savepoint the next INSERT starts once');
SELECT crm.update_process_template(:on_add, active => false);

-- Web forms and incoming calls and e-mails create leads that auto-start.
SELECT crm.add_process_template('lead', 'New lead', $${
	"activities": [{"type": "set_status_text", "text": "Call back {{title}}"}]}$$, auto_start => ARRAY['add']) AS on_lead \gset
SELECT crm.add_webform('contact_us', 'Contact us', '{"name": "contact_name", "mail": "email"}');
SELECT crm.submit_webform('contact_us', '{"name": "Claire", "mail": "claire@example.org"}') AS form_lead \gset
SELECT results_eq($$SELECT status_text FROM crm.process_instances WHERE document_type = 'lead' AND document_id = $$ || :form_lead,
	$$VALUES ('Call back Contact us')$$, 'a lead from a web form auto-starts');

SELECT * FROM crm.record_incoming('call', '+33 6 11 22 33 44') \gset r_
SELECT results_eq($$SELECT entity_type, created_lead, activity_id IS NOT NULL FROM crm.record_incoming('call', '+33 6 99 99 99 99')$$,
	$$VALUES ('lead', true, true)$$, 'a call from an unknown number creates a lead');
SELECT results_eq($$SELECT l.title, l.phone, l.source, a.type, a.direction, a.remote_address
	FROM crm.lead l JOIN crm.activity a ON a.entity_type = 'lead' AND a.entity_id = l.id WHERE l.id = $$ || :r_entity_id,
	$$VALUES ('Call from +33 6 11 22 33 44', '+33 6 11 22 33 44', 'call', 'call', 'incoming', '+33 6 11 22 33 44')$$,
	'the lead holds the number, the call is its incoming activity');
SELECT results_eq($$SELECT status_text FROM crm.process_instances WHERE document_type = 'lead' AND document_id = $$ || :r_entity_id,
	$$VALUES ('Call back Call from +33 6 11 22 33 44')$$, 'and that lead auto-starts');
SELECT results_eq($$SELECT entity_type, entity_id, created_lead FROM crm.record_incoming('call', '+33611223344')$$,
	format('VALUES (%L, %s::bigint, false)', 'lead', :r_entity_id),
	'a second call from the same number goes to that lead, no new lead');
INSERT INTO crm.contact (name, email) VALUES ('Known', 'Known@Example.org') RETURNING id AS known \gset
SELECT results_eq($$SELECT entity_type, entity_id, created_lead FROM crm.record_incoming('email', 'known@example.org', 'Hello')$$,
	format('VALUES (%L, %s::bigint, false)', 'contact', :known), 'an e-mail from a known contact creates no lead');
SET crm.create_lead_from_unknown = off;
SELECT results_eq($$SELECT entity_type, entity_id, activity_id, created_lead FROM crm.record_incoming('email', 'stranger@example.org')$$,
	$$VALUES (NULL::text, NULL::bigint, NULL::bigint, false)$$, 'with crm.create_lead_from_unknown off nothing is created');
RESET crm.create_lead_from_unknown;
SELECT is((SELECT count(*) FROM crm.lead WHERE email = 'stranger@example.org'), 0::bigint, 'no lead for the stranger');
INSERT INTO crm.exception_list (type, value) VALUES ('email', 'spam@example.org');
SELECT results_eq($$SELECT entity_id, created_lead FROM crm.record_incoming('email', 'SPAM@example.org')$$,
	$$VALUES (NULL::bigint, false)$$, 'an address on the exceptions list records nothing');

-- Hostile inputs.
SELECT throws_ok($$SELECT crm.record_incoming(NULL, 'x@example.org')$$, '22004', 'channel must not be null', 'NULL channel');
SELECT throws_ok($$SELECT crm.record_incoming('call', NULL)$$, '22004', 'address must not be null', 'NULL address');
SELECT throws_ok($$SELECT crm.record_incoming('fax', '123')$$, '22023', 'unknown channel "fax"', 'unknown channel');
SELECT throws_ok($$SELECT crm.record_incoming('email', E'a@example.org\r\nBcc: victim@example.org')$$, '22023',
	'address must not contain line breaks or other control characters', 'CR/LF in the address');
SELECT throws_ok($$SELECT crm.record_incoming('email', repeat('a', 100000) || '@example.org')$$, '22023',
	'address is too long (100012 characters, at most 254)', 'a huge address');
SELECT throws_ok($$SELECT crm.record_incoming('call', 'call me maybe')$$, '22023',
	'invalid phone number "call me maybe"', 'a call from something not a number');
SELECT throws_ok($$SELECT crm.record_incoming('email', 'x@example.org', E'Hi\nBcc: victim@example.org')$$, '22023',
	'subject must be one line of at most 1000 characters', 'CR/LF in the subject');
SELECT throws_ok($$SELECT crm.record_incoming('email', 'x@example.org', 'Hi', repeat('x', 2000000))$$, '22023',
	'body is too long (2000000 characters, at most 1048576)', 'a huge body');
SELECT throws_ok($$SELECT crm.record_incoming('email', 'x@example.org', status => 'missed')$$, '22023',
	'invalid status "missed" for an incoming email', 'an e-mail is not missed');

SELECT * FROM finish();
ROLLBACK;
