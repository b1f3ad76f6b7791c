-- Triggers: bad definitions and calls (SQLSTATE, message, nothing stored),
-- runtime failures, loops through robots, chains, pipelines, several rows,
-- the decision log, privileges.
BEGIN;
CREATE EXTENSION crm_automation;
SELECT plan(103);

INSERT INTO crm.department (id, name) VALUES (1, 'Sales');
INSERT INTO crm.user (id, name, email, department_id) VALUES
	(1, 'Mia', 'mia@example.com', 1), (2, 'Sam', 'sam@example.com', 1), (3, 'Ola', 'ola@example.com', 1);
UPDATE crm.department SET head_id = 1;
INSERT INTO crm.deal (id, title, responsible_id, amount) VALUES (1, 'Chairs', 2, 100);

-- ---------- bad definitions: SQLSTATE and message ----------
SELECT throws_ok($$SELECT crm.add_trigger(crm.stage('deal', 'won'), 'teleport')$$,
	'22023', 'unknown event "teleport"', 'unknown event');
SELECT throws_ok($$SELECT crm.add_trigger(crm.stage('deal', 'won'), NULL)$$,
	'22004', 'event must not be null', 'null event');
SELECT throws_ok($$SELECT crm.add_trigger(424242, 'incoming_call')$$,
	'42704', 'stage 424242 does not exist', 'unknown stage');
SELECT throws_ok($$SELECT crm.add_trigger(NULL, 'incoming_call')$$,
	'22004', 'stage id must not be null', 'null stage');
SELECT throws_ok($$SELECT crm.add_trigger(crm.stage('deal', 'won'), 'field_changed', '{"fields": ["nope"]}')$$,
	'42703', 'unknown field "nope" in params.fields', 'unknown field');
SELECT throws_ok($$SELECT crm.add_trigger(crm.stage('deal', 'won'), 'field_changed', '{"fields": ["fields.UF_NOPE"]}')$$,
	'42703', 'unknown field "fields.UF_NOPE" in params.fields', 'unregistered custom field');
SELECT throws_ok($$SELECT crm.add_trigger(crm.stage('deal', 'won'), 'field_changed', '{"fields": ["stage_id"]}')$$,
	'22023', 'field "stage_id" cannot be watched', 'a field the engine maintains');
SELECT throws_ok($$SELECT crm.add_trigger(crm.stage('deal', 'won'), 'field_changed', '{"fields": ["contact.phone"]}')$$,
	'22023', 'field "contact.phone" is not a field of the deal itself', 'a related record''s field');
SELECT throws_ok($$SELECT crm.add_trigger(crm.stage('deal', 'won'), 'field_changed', '{"fields": "amount"}')$$,
	'22023', 'parameter "fields" must be an array of field names, not a string', 'fields not an array');
SELECT throws_ok($$SELECT crm.add_trigger(crm.stage('deal', 'won'), 'field_changed', '{"fields": []}')$$,
	'22023', 'parameter "fields" must name at least one field', 'no field');
SELECT throws_ok($$SELECT crm.add_trigger(crm.stage('deal', 'won'), 'field_changed', '{"fields": [1]}')$$,
	'22023', 'parameter "fields" must hold field names, not a number', 'a field name that is a number');
SELECT throws_ok($$SELECT crm.add_trigger(crm.stage('deal', 'won'), 'field_changed')$$,
	'22023', 'missing required parameter "fields" for event "field_changed"', 'missing parameter');
SELECT throws_ok($$SELECT crm.add_trigger(crm.stage('deal', 'won'), 'webform', '{"form": "nope"}')$$,
	'42704', 'unknown web form "nope"', 'unknown form');
SELECT throws_ok($$SELECT crm.add_trigger(crm.stage('deal', 'won'), 'webform', '{"form": null}')$$,
	'22004', 'parameter "form" of event "webform" must not be null', 'null form');
SELECT throws_ok($$SELECT crm.add_trigger(crm.stage('deal', 'won'), 'incoming_call', '{"colour": "red"}')$$,
	'22023', 'unknown parameter "colour" for event "incoming_call"', 'unknown parameter');
SELECT throws_ok($$SELECT crm.add_trigger(crm.stage('deal', 'won'), 'incoming_call', '[]')$$,
	'22023', 'params must be a JSON object', 'params not an object');
SELECT throws_ok($$SELECT crm.add_trigger(crm.stage('lead', 'converted'), 'invoice_paid')$$,
	'0A000', 'event "invoice_paid" is not available for lead stages', 'invoice event on a lead');
SELECT throws_ok($$SELECT crm.add_trigger(crm.stage('deal', 'won'), 'webhook', '{"code": "a b"}')$$,
	'22023', 'invalid event code "a b"', 'bad application code');
SELECT throws_ok($$SELECT crm.add_trigger(crm.stage('deal', 'won'), 'link_click', '{"url": "ftp://x"}')$$,
	'22023', 'invalid URL "ftp://x"', 'bad URL');
SELECT throws_ok($$SELECT crm.add_trigger(crm.stage('deal', 'won'), 'booking', '{"service": ""}')$$,
	'22023', 'parameter "service" must be a non-empty string, not an empty string', 'empty service');
SELECT throws_ok($$SELECT crm.add_trigger(crm.stage('deal', 'won'), 'incoming_call', condition => '"{{amount} > 1"')$$,
	'42601', NULL, 'condition syntax error');
SELECT throws_ok($$SELECT crm.add_trigger(crm.stage('deal', 'won'), 'incoming_call', condition => '"{{nope}} > 1"')$$,
	'42703', 'unknown field "nope" in condition', 'condition on an unknown field');
SELECT throws_ok($$SELECT crm.add_trigger(crm.stage('deal', 'won'), 'incoming_call', condition => '"{=Event:colour} = 1"')$$,
	'42704', 'event "incoming_call" has no payload key "colour"', 'condition on an unknown payload key');
SELECT throws_ok($$SELECT crm.add_trigger(crm.stage('deal', 'won'), 'link_click', condition => '"{=Event:subject} = 1"')$$,
	'42704', 'event "link_click" has no payload key "subject"', 'payload keys depend on the event');
SELECT throws_ok($$SELECT crm.add_trigger(crm.stage('deal', 'won'), 'incoming_call', condition => '"{=Robot:x.y} = 1"')$$,
	'22023', 'a trigger''s condition cannot read robot outputs', 'condition on robot outputs');
SELECT throws_ok($$SELECT crm.add_trigger(crm.stage('deal', 'won'), 'incoming_call', on_behalf_of => 99)$$,
	'42704', 'user 99 does not exist', 'unknown on_behalf_of user');
SELECT throws_ok($$SELECT crm.add_trigger(crm.stage('deal', 'won'), 'incoming_call', name => ' ')$$,
	'22023', 'invalid trigger name " "', 'blank name');
SELECT is((SELECT count(*) FROM crm.trigger), 0::bigint, 'no failed definition was stored');

-- Free-form payloads (web forms, applications) take any key.
SELECT lives_ok($$SELECT crm.add_trigger(crm.stage('deal', 'won'), 'webhook', '{"code": "x"}', condition => '"{=Event:anything} = 1"')$$,
	'a webhook condition reads any payload key');

-- update and copy validate again and change nothing on error.
SELECT throws_ok($$SELECT crm.update_trigger(999, name => 'x')$$,
	'42704', 'trigger 999 does not exist', 'update of an unknown trigger');
SELECT crm.add_trigger(crm.stage('deal', 'executing'), 'field_changed', '{"fields": ["close_date"]}', name => 'Closing') AS closing \gset
SELECT throws_ok(format($$SELECT crm.update_trigger(%s, params => '{"fields": ["nope"]}')$$, :closing),
	'42703', 'unknown field "nope" in params.fields', 'update with a bad field');
SELECT is((SELECT params FROM crm.trigger WHERE id = :closing), '{"fields": ["close_date"]}'::jsonb,
	'the failed update changed nothing');
SELECT throws_ok(format($$SELECT crm.copy_trigger(%s, crm.stage('lead', 'processed'))$$, :closing),
	'42703', 'unknown field "close_date" in params.fields', 'copy to a lead stage: leads have no close_date');
SELECT is((SELECT count(*) FROM crm.trigger WHERE name = 'Closing'), 1::bigint, 'the failed copy stored nothing');
SELECT lives_ok(format($$SELECT crm.update_trigger(%s, on_behalf_of => 3, condition => '"{{amount}} > 0"')$$, :closing),
	'update sets the user and a condition');
SELECT lives_ok(format($$SELECT crm.update_trigger(%s, on_behalf_of => 0, condition => 'null')$$, :closing),
	'0 and null reset them');
SELECT ok((SELECT on_behalf_of IS NULL AND condition IS NULL FROM crm.trigger WHERE id = :closing),
	'back to the responsible user and no condition');
SELECT crm.delete_trigger(:closing);

-- ---------- bad calls ----------
SELECT throws_ok($$SELECT crm.fire_trigger('order.paid', 'deal', 999)$$,
	'P0002', 'deal 999 does not exist', 'firing for a missing item');
SELECT throws_ok($$SELECT crm.fire_trigger('order.paid', 'spaceship', 1)$$,
	'42704', 'unknown entity type "spaceship"', 'firing for an unknown entity type');
SELECT throws_ok($$SELECT crm.fire_trigger('order paid', 'deal', 1)$$,
	'22023', 'invalid event code "order paid"', 'firing a malformed code');
SELECT throws_ok($$SELECT crm.fire_trigger(NULL, 'deal', 1)$$,
	'22004', 'event code must not be null', 'firing no code');
SELECT throws_ok($$SELECT crm.fire_trigger('order.paid', 'deal', 1, '[1]')$$,
	'22023', 'payload must be a JSON object', 'firing an array payload');

SELECT throws_ok($$SELECT crm.add_webform('Bad Code', 'Form')$$,
	'22023', 'invalid web form code "Bad Code"', 'bad form code');
SELECT throws_ok($$SELECT crm.add_webform('contact', 'Contact', '{"x": "salary"}')$$,
	'42703', 'unknown lead field "salary" for form key "x"', 'form mapped to an unknown lead field');
SELECT throws_ok($$SELECT crm.add_webform('contact', 'Contact', '{"x": 1}')$$,
	'22023', 'form key "x" must map to a lead field name, not 1', 'form mapping not a name');
SELECT throws_ok($$SELECT crm.add_webform('contact', 'Contact', responsible_id => 99)$$,
	'42704', 'user 99 does not exist', 'form with an unknown responsible');
SELECT lives_ok($$SELECT crm.add_webform('contact', 'Contact', '{"mail": "email"}')$$, 'a good form');
SELECT throws_ok($$SELECT crm.add_webform('contact', 'Contact again')$$,
	'42710', 'web form "contact" already exists', 'duplicate form');
SELECT throws_ok($$SELECT crm.submit_webform('nope', '{}')$$,
	'42704', 'unknown web form "nope"', 'submitting an unknown form');
SELECT throws_ok($$SELECT crm.submit_webform('contact', '"text"')$$,
	'22023', 'form data must be a JSON object', 'submitting non-object data');
SELECT throws_ok($$SELECT crm.submit_webform('contact', '{}', 'deal', 999)$$,
	'P0002', 'deal 999 does not exist', 'submitting for a missing item');
SELECT throws_ok($$SELECT crm.submit_webform('contact', '{}', 'deal')$$,
	'22023', 'entity_type and item_id go together', 'an entity type without an item');
SELECT is((SELECT count(*) FROM crm.lead) + (SELECT count(*) FROM crm.webform_submission), 0::bigint,
	'failed submissions stored nothing');
SELECT crm.add_trigger(crm.stage('deal', 'preparation'), 'webform', '{"form": "contact"}') AS form_trigger \gset
SELECT throws_ok($$SELECT crm.delete_webform('contact')$$,
	'55006', 'web form "contact" is used by triggers', 'a form in use is kept');
SELECT crm.delete_trigger(:form_trigger);

SELECT throws_ok($$SELECT crm.tracking_link('deal', 1, 'https://x.example', 'hover')$$,
	'22023', 'invalid tracking event "hover"', 'unknown tracking event');
SELECT throws_ok($$SELECT crm.tracking_link('deal', 1, 'javascript:alert(1)')$$,
	'22023', 'invalid URL "javascript:alert(1)"', 'a URL that is no web address');
SELECT throws_ok($$SELECT crm.tracking_link('deal', 999, 'https://x.example')$$,
	'P0002', 'deal 999 does not exist', 'a link for a missing item');
SELECT throws_ok($$SELECT crm.track_click('tl_nope')$$,
	'42704', 'unknown tracking token "tl_nope"', 'an unknown token');
SELECT is((SELECT count(*) FROM crm.tracked_link), 0::bigint, 'no link was stored');

-- ---------- runtime ----------
-- A condition that fails at run time is logged; the call is still recorded.
SELECT crm.add_trigger(crm.stage('deal', 'preparation'), 'incoming_call',
	condition => '"{{amount}} / 0 > 1"', name => 'Broken') AS broken \gset
SELECT lives_ok($$INSERT INTO crm.activity (entity_type, entity_id, type, direction) VALUES ('deal', 1, 'call', 'incoming')$$,
	'a failing trigger does not fail the INSERT');
SELECT results_eq($$SELECT status, error LIKE '%division by zero%' FROM crm.robot_log WHERE trigger_id = $$ || :broken,
	$$VALUES ('failed', true)$$, 'the failure is logged with its error');
SELECT is((SELECT count(*) FROM crm.activity WHERE entity_id = 1), 1::bigint, 'the activity is recorded');
SELECT crm.delete_trigger(:broken);

-- A move that fails (here an application's own trigger refuses it) is
-- logged as failed, leaves no history, and the event's caller goes on.
CREATE FUNCTION pg_temp.no_lost() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
	IF NEW.stage_id = crm.stage('deal', 'lost') THEN
		RAISE EXCEPTION 'deals are not lost here';
	END IF;
	RETURN NEW;
END $$;
CREATE TRIGGER no_lost BEFORE UPDATE ON crm.deal FOR EACH ROW EXECUTE FUNCTION pg_temp.no_lost();
SELECT crm.add_trigger(crm.stage('deal', 'lost'), 'webhook', '{"code": "give.up"}') AS give_up \gset
SELECT is(crm.fire_trigger('give.up', 'deal', 1), 'failed', 'a failing move is reported as failed');
SELECT results_eq($$SELECT status, error FROM crm.robot_log WHERE trigger_id = $$ || :give_up,
	$$VALUES ('failed'::text, 'deals are not lost here'::text)$$, 'and logged with its error');
SELECT ok((SELECT s.code <> 'lost' FROM crm.deal d JOIN crm.stage s ON s.id = d.stage_id WHERE d.id = 1)
		  AND NOT EXISTS (SELECT FROM crm.history WHERE entity_id = 1 AND event_type = 'stage_change'),
	'the deal did not move and no stage change is in the history');
DROP TRIGGER no_lost ON crm.deal;
SELECT crm.delete_trigger(:give_up);

-- A trigger on another pipeline's stage does not pull the deal over.
SELECT crm.add_pipeline('deal', 'Wholesale') AS wholesale \gset
SELECT crm.add_stage(:wholesale, 'talks', 'Talks') AS talks \gset
SELECT crm.add_trigger(:talks, 'webhook', '{"code": "ping"}');
SELECT is(crm.fire_trigger('ping', 'deal', 1), 'no_trigger', 'triggers of another pipeline do not apply');

-- The statement's own stage change wins over a field trigger.
SELECT crm.add_trigger(crm.stage('deal', 'final_invoice'), 'field_changed', '{"fields": ["amount"]}', name => 'Repriced') AS repriced \gset
UPDATE crm.deal SET amount = 200, stage_id = crm.stage('deal', 'executing') WHERE id = 1;
SELECT is((SELECT s.code FROM crm.deal d JOIN crm.stage s ON s.id = d.stage_id WHERE d.id = 1), 'executing',
	'an UPDATE that sets the stage is not overridden');

-- One UPDATE of several rows moves each of them.
INSERT INTO crm.deal (id, title, responsible_id) VALUES (11, 'A', 2), (12, 'B', 2), (13, 'C', 2);
UPDATE crm.deal SET amount = 5 WHERE id BETWEEN 11 AND 13;
SELECT is((SELECT count(*) FROM crm.deal d JOIN crm.stage s ON s.id = d.stage_id
			WHERE d.id BETWEEN 11 AND 13 AND s.code = 'final_invoice'), 3::bigint, 'three rows moved');
SELECT is((SELECT count(*) FROM crm.robot_log WHERE trigger_id = :repriced AND status = 'fired'), 3::bigint,
	'three firings logged');
SELECT is((SELECT count(*) FROM crm.history WHERE event_type = 'stage_change' AND entity_id BETWEEN 11 AND 13), 3::bigint,
	'three stage changes in the history');
SELECT crm.delete_trigger(:repriced);

-- A chain: an application event moves a deal to "preparation", whose robot
-- hands it to Ola, whose responsible trigger moves it on to
-- "prepayment_invoice", whose robot comments.
SELECT crm.add_trigger(crm.stage('deal', 'preparation'), 'webhook', '{"code": "go"}');
SELECT crm.add_robot(crm.stage('deal', 'preparation'), 'change_responsible', '{"users": [3]}');
SELECT crm.add_trigger(crm.stage('deal', 'prepayment_invoice'), 'responsible_changed', condition => '"{{responsible_id}} = 3"');
SELECT crm.add_robot(crm.stage('deal', 'prepayment_invoice'), 'add_comment', '{"text": "Ola takes {{title}}"}');
INSERT INTO crm.deal (id, title, responsible_id) VALUES (20, 'Chain', 2);
SELECT is(crm.fire_trigger('go', 'deal', 20), 'fired', 'the first trigger fires');
SELECT results_eq($$SELECT kind, action, stage, status FROM crm.item_automation('deal', 20)$$,
	$$VALUES ('trigger', 'webhook', 'preparation', 'fired'), ('robot', 'change_responsible', 'preparation', 'done'),
	         ('trigger', 'responsible_changed', 'prepayment_invoice', 'fired'), ('robot', 'add_comment', 'prepayment_invoice', 'done')$$,
	'trigger -> stage -> robot -> trigger -> stage -> robot');
SELECT results_eq($$SELECT s.code, d.responsible_id FROM crm.deal d JOIN crm.stage s ON s.id = d.stage_id WHERE d.id = 20$$,
	$$VALUES ('prepayment_invoice'::text, 3::bigint)$$, 'the deal ends with Ola in prepayment_invoice');
SELECT is((SELECT text FROM crm.timeline_comment WHERE entity_id = 20), 'Ola takes Chain', 'the last robot ran');

-- A move decided by the BEFORE trigger of a statement that then fails (a
-- CHECK violation, in a subtransaction) never happened: a later move of the
-- item by the application is not taken for the trigger's.
SELECT crm.add_trigger(crm.stage('deal', 'won'), 'field_changed', '{"fields": ["close_date"]}', name => 'Closed') AS closed \gset
INSERT INTO crm.deal (id, title, responsible_id) VALUES (40, 'Savepoint', 2);
SELECT throws_ok($$UPDATE crm.deal SET close_date = '2030-01-01', currency = 'bad' WHERE id = 40$$,
	'23514', NULL, 'the UPDATE fails after the trigger decided');
UPDATE crm.deal SET stage_id = crm.stage('deal', 'won') WHERE id = 40;
SELECT is((SELECT count(*) FROM crm.robot_log WHERE trigger_id = :closed), 0::bigint,
	'no firing logged for the failed statement');
SELECT crm.delete_trigger(:closed);

-- A loop between triggers and robots: UF_A on "preparation" -> robot sets
-- UF_B -> trigger (backwards allowed) to "new" -> robot sets UF_A -> the
-- first trigger again, for the same deal in the same chain: stopped.
SELECT crm.add_field('deal', 'UF_A', 'A', 'number') > 0 AND crm.add_field('deal', 'UF_B', 'B', 'number') > 0 AS fields;
SELECT crm.add_trigger(crm.stage('deal', 'won'), 'field_changed', '{"fields": ["UF_A"]}', name => 'A changed') AS a_trigger \gset
SELECT crm.add_robot(crm.stage('deal', 'won'), 'update_item', '{"fields": {"UF_B": "={{UF_B}} + 1"}}');
SELECT crm.add_trigger(crm.stage('deal', 'new'), 'field_changed', '{"fields": ["UF_B"]}', name => 'B changed', allow_backwards => true);
SELECT crm.add_robot(crm.stage('deal', 'new'), 'update_item', '{"fields": {"UF_A": "={{UF_A}} + 1"}}');
INSERT INTO crm.deal (id, title, responsible_id, fields, stage_id)
VALUES (30, 'Loop', 2, '{"UF_A": 0, "UF_B": 0}', crm.stage('deal', 'executing'));
SELECT lives_ok($$UPDATE crm.deal SET fields = '{"UF_A": 1, "UF_B": 0}' WHERE id = 30$$, 'a trigger loop does not fail the UPDATE');
SELECT results_eq($$SELECT status, detail->>'cycle' LIKE 'trigger ' || $$ || :a_trigger || $$ || ' on deal 30 -> robot % -> trigger %'
					FROM crm.robot_log WHERE entity_id = 30 AND kind = 'trigger' AND status = 'loop_stopped'$$,
	$$VALUES ('loop_stopped', true)$$, 'the trigger is stopped once, naming the cycle');
SELECT is((SELECT s.code FROM crm.deal d JOIN crm.stage s ON s.id = d.stage_id WHERE d.id = 30), 'new',
	'the deal stays where the chain stopped');
SELECT is((SELECT (fields->>'UF_A')::int FROM crm.deal WHERE id = 30), 2, 'each robot ran once');
-- A later statement is a new chain: the same triggers fire again.
UPDATE crm.deal SET fields = fields || '{"UF_A": 10}' WHERE id = 30;
SELECT is((SELECT count(*) FROM crm.robot_log WHERE trigger_id = :a_trigger AND status = 'fired'), 2::bigint,
	'legitimate re-entry fires again');

-- ---------- the decision log ----------
-- A decision's log row is appended without an INSERT statement (rowappend.c),
-- but as one would be: a column added to its table (crm.automation_log, read
-- through the view crm.robot_log) later gets its
-- default, a rolled-back savepoint takes the row back, a CHECK constraint or
-- a trigger an administrator adds to the log applies to it.
INSERT INTO crm.deal (id, title, responsible_id, amount) VALUES (70, 'Log', 2, 5);
SELECT crm.add_trigger(crm.stage('deal', 'won'), 'missed_call', condition => '"{{amount}} > 1000"',
	name => 'Big missed call');
ALTER TABLE crm.automation_log ADD COLUMN note text;
ALTER TABLE crm.automation_log ALTER COLUMN note SET DEFAULT 'from the default';
SAVEPOINT before_call;
INSERT INTO crm.activity (entity_type, entity_id, type, direction, status) VALUES ('deal', 70, 'call', 'incoming', 'missed');
ROLLBACK TO SAVEPOINT before_call;
SELECT is((SELECT count(*) FROM crm.robot_log WHERE entity_id = 70 AND kind = 'trigger'), 0::bigint,
	'a call rolled back to a savepoint leaves no log row');
INSERT INTO crm.activity (entity_type, entity_id, type, direction, status) VALUES ('deal', 70, 'call', 'incoming', 'missed');
SELECT results_eq($$SELECT status, name, note FROM crm.automation_log WHERE entity_id = 70 AND kind = 'trigger'$$,
	$$VALUES ('condition_false', 'Big missed call', 'from the default')$$,
	'the log row has the default of a column added since the last one');
ALTER TABLE crm.automation_log DROP COLUMN note;
ALTER TABLE crm.automation_log ADD CONSTRAINT no_false CHECK (status <> 'condition_false') NOT VALID;
SELECT throws_ok($$INSERT INTO crm.activity (entity_type, entity_id, type, direction, status)
	VALUES ('deal', 70, 'call', 'incoming', 'missed')$$,
	'23514', 'new row for relation "automation_log" violates check constraint "no_false"',
	'a CHECK constraint added to the log applies to decisions');
ALTER TABLE crm.automation_log DROP CONSTRAINT no_false;
CREATE TABLE log_seen (status text);
-- Automation runs with search_path = pg_catalog, pg_temp: name your tables.
CREATE FUNCTION log_seen() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
	INSERT INTO public.log_seen VALUES (NEW.status);
	RETURN NEW;
END $$;
CREATE TRIGGER seen AFTER INSERT ON crm.automation_log FOR EACH ROW EXECUTE FUNCTION log_seen();
INSERT INTO crm.activity (entity_type, entity_id, type, direction, status) VALUES ('deal', 70, 'call', 'incoming', 'missed');
SELECT results_eq($$SELECT status FROM log_seen$$, $$VALUES ('condition_false')$$,
	'a trigger on the log sees the decision');
DROP TRIGGER seen ON crm.automation_log;
INSERT INTO crm.activity (entity_type, entity_id, type, direction, status) VALUES ('deal', 70, 'call', 'incoming', 'missed');
SELECT is((SELECT count(*) FROM crm.robot_log WHERE entity_id = 70 AND kind = 'trigger'), 3::bigint,
	'every decision since is logged once');

-- ---------- traces of events that moved nothing ----------
-- no_trigger: an event that some trigger of deals listens to (here calls on
-- the Wholesale pipeline) reaches a deal of a pipeline where none does: one
-- compact row (no trigger, no stage, no copy of the call), shown with the
-- deal's automation.  (The robot of "new" that these deals run is left out.)
INSERT INTO crm.deal (id, title, responsible_id) VALUES (80, 'Trace', 2);
SELECT crm.add_trigger(:talks, 'incoming_call', name => 'Wholesale call') AS wholesale_call \gset
INSERT INTO crm.activity (entity_type, entity_id, type, direction, remote_address)
VALUES ('deal', 80, 'call', 'incoming', '+33611000080');
SELECT results_eq($$SELECT kind, trigger_id, name, action, stage_id, status, error, detail
					FROM crm.robot_log WHERE entity_type = 'deal' AND entity_id = 80 AND kind = 'trigger'$$,
	$$VALUES ('trigger'::text, NULL::bigint, NULL::text, 'incoming_call'::text, NULL::bigint, 'no_trigger'::text,
	          NULL::text, '{"from": "new"}'::jsonb)$$,
	'no trigger of the deal''s pipeline for a call: one compact no_trigger row');
SELECT results_eq($$SELECT kind, action, stage, status FROM crm.item_automation('deal', 80) WHERE kind = 'trigger'$$,
	$$VALUES ('trigger'::text, 'incoming_call'::text, NULL::text, 'no_trigger'::text)$$,
	'crm.item_automation shows it');
-- An event no trigger of the entity type listens to is not detected: no row.
INSERT INTO crm.activity (entity_type, entity_id, type, direction, remote_address)
VALUES ('deal', 80, 'openline', 'incoming', 'chat:80');
UPDATE crm.deal SET title = 'Trace again' WHERE id = 80;
SELECT is((SELECT count(*) FROM crm.robot_log WHERE entity_id = 80 AND kind = 'trigger'), 1::bigint,
	'an event nobody listens to and an UPDATE of an unwatched field leave no row');
-- Items without stages have nothing to decide: a contact's call leaves none.
INSERT INTO crm.contact (id, name) VALUES (80, 'Caller');
INSERT INTO crm.activity (entity_type, entity_id, type, direction, remote_address)
VALUES ('contact', 80, 'call', 'incoming', '+33611000080');
SELECT is((SELECT count(*) FROM crm.robot_log WHERE entity_type = 'contact'), 0::bigint,
	'a contact''s call leaves no trigger row');
-- A field watched on another pipeline only, an application's code nobody
-- listens to: no_trigger, with the event's key.
SELECT crm.add_trigger(:talks, 'field_changed', '{"fields": ["close_date"]}', name => 'Wholesale close') AS wholesale_close \gset
UPDATE crm.deal SET close_date = '2030-01-01' WHERE id = 80;
SELECT is(crm.fire_trigger('nobody.listens', 'deal', 80), 'no_trigger', 'fire_trigger reports no_trigger');
SELECT results_eq($$SELECT action, status, detail FROM crm.robot_log WHERE entity_id = 80 AND kind = 'trigger' ORDER BY id OFFSET 1$$,
	$$VALUES ('field_changed'::text, 'no_trigger'::text, '{"from": "new"}'::jsonb),
	         ('webhook', 'no_trigger', '{"key": "nobody.listens", "from": "new"}')$$,
	'a field watched elsewhere and an unknown code are logged no_trigger');
SELECT crm.delete_trigger(:wholesale_close);

-- excepted: a call, a missed call and an e-mail from addresses on the
-- exceptions list are not recorded; each leaves a compact row naming the
-- list entry that matched.
INSERT INTO crm.exception_list (type, value) VALUES ('phone', '+33 6 55 55 55 55'), ('email', 'Spam@Example.org');
INSERT INTO crm.deal (id, title, responsible_id) VALUES (81, 'Spam', 2);
INSERT INTO crm.activity (entity_type, entity_id, type, direction, status, remote_address) VALUES
	('deal', 81, 'call', 'incoming', 'pending', '+33655555555'),
	('deal', 81, 'call', 'incoming', 'missed', '+33 (6) 55-55-55-55'),
	('deal', 81, 'email', 'incoming', 'pending', 'spam@example.ORG');
SELECT is((SELECT count(*) FROM crm.activity WHERE entity_id = 81), 0::bigint, 'the listed addresses are not recorded');
SELECT results_eq($$SELECT kind, trigger_id, action, status, detail - 'entry_id', (detail->>'entry_id')::bigint
					FROM crm.robot_log WHERE entity_type = 'deal' AND entity_id = 81 AND kind = 'trigger' ORDER BY id$$,
	$$SELECT 'trigger'::text, NULL::bigint, a, 'excepted'::text, d::jsonb, e.id
	    FROM (VALUES (1, 'incoming_call', '{"type": "phone", "entry": "+33 6 55 55 55 55", "address": "+33655555555"}', 'phone'),
	                 (2, 'missed_call', '{"type": "phone", "entry": "+33 6 55 55 55 55", "address": "+33 (6) 55-55-55-55"}', 'phone'),
	                 (3, 'incoming_email', '{"type": "email", "entry": "Spam@Example.org", "address": "spam@example.ORG"}', 'email')) v (n, a, d, t)
	    JOIN crm.exception_list e ON e.type = v.t ORDER BY n$$,
	'each dropped activity is logged excepted with the type, the entry and the address');
SELECT results_eq($$SELECT action, status FROM crm.item_automation('deal', 81) WHERE kind = 'trigger'$$,
	$$VALUES ('incoming_call'::text, 'excepted'::text), ('missed_call', 'excepted'), ('incoming_email', 'excepted')$$,
	'crm.item_automation shows them');
-- A row without an item is no activity crm.activity records, listed or not.
SELECT throws_ok($$INSERT INTO crm.activity (entity_type, entity_id, type, direction, remote_address)
	VALUES ('deal', NULL, 'call', 'incoming', '+33655555555')$$,
	'23502', NULL, 'a listed call without an item is refused as any row without one');
-- A listed call rolled back to a savepoint takes its row with it.
SAVEPOINT before_spam;
INSERT INTO crm.activity (entity_type, entity_id, type, direction, remote_address) VALUES ('deal', 81, 'call', 'incoming', '+33655555555');
ROLLBACK TO SAVEPOINT before_spam;
SELECT is((SELECT count(*) FROM crm.robot_log WHERE entity_id = 81 AND kind = 'trigger'), 3::bigint, 'a rolled-back excepted call leaves no row');
SELECT crm.delete_trigger(:wholesale_call);

-- ---------- privileges ----------
-- An application role records calls and submissions; triggers act as the
-- extension's owner.  It cannot define triggers.
CREATE ROLE trg_app LOGIN IN ROLE crm_user;
SELECT crm.add_trigger(crm.stage('deal', 'executing'), 'incoming_call', name => 'App call');
INSERT INTO crm.deal (id, title, responsible_id) VALUES (50, 'App', 2);
SET ROLE trg_app;
SELECT lives_ok($$INSERT INTO crm.activity (entity_type, entity_id, type, direction) VALUES ('deal', 50, 'call', 'incoming')$$,
	'crm_user records an incoming call');
SELECT lives_ok($$SELECT crm.submit_webform('contact', '{"mail": "x@example.org"}')$$, 'crm_user submits a form');
SELECT lives_ok($$INSERT INTO crm.activity (entity_type, entity_id, type, direction, remote_address) VALUES ('deal', 50, 'call', 'incoming', '+33655555555')$$,
	'crm_user records a call from a listed number');
SELECT throws_ok($$SELECT crm.add_trigger(crm.stage('deal', 'won'), 'incoming_call')$$,
	'42501', NULL, 'crm_user cannot define triggers');
RESET ROLE;
SELECT is((SELECT s.code FROM crm.deal d JOIN crm.stage s ON s.id = d.stage_id WHERE d.id = 50), 'executing',
	'the call moved the deal');
SELECT results_eq($$SELECT action, status FROM crm.robot_log WHERE entity_id = 50 AND status = 'excepted'$$,
	$$VALUES ('incoming_call'::text, 'excepted'::text)$$, 'the listed call is logged excepted, as the automation');

SELECT * FROM finish();
ROLLBACK;
