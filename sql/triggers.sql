-- Triggers: rules on a stage that move an item there when an event happens
-- for it -- a call, an e-mail, a web form, a click, a payment, a change of a
-- field, an application's event.
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS crm_automation CASCADE;
CREATE EXTENSION crm_automation;
RESET client_min_messages;

-- A team: Mia heads Sales, Sam sells, Ola answers the phone.
INSERT INTO crm.department (id, name) VALUES (1, 'Sales');
INSERT INTO crm.user (id, name, email, department_id) VALUES
	(1, 'Mia', 'mia@example.com', 1), (2, 'Sam', 'sam@example.com', 1), (3, 'Ola', 'ola@example.com', 1);
UPDATE crm.department SET head_id = 1;

-- The catalogue: every event, where it comes from and what it takes.
SELECT event, family, entity_types, source FROM crm.trigger_events;
SELECT event, p->>'name' AS param, p->>'type' AS type, (p->>'required')::boolean AS required
  FROM crm.trigger_events, jsonb_array_elements(parameters) p ORDER BY event;
-- What a condition may read as {=Event:key} (NULL: free-form).
SELECT event, CASE WHEN cardinality(payload) > 5 THEN 'columns of its source row' ELSE array_to_string(payload, ', ') END AS payload
  FROM crm.trigger_events;

-- A client calls about a new deal: the call trigger on "preparation" moves
-- the deal there, and the stage's robot runs.
SELECT crm.add_trigger(crm.stage('deal', 'preparation'), 'incoming_call') AS call_trigger;
SELECT crm.add_robot(crm.stage('deal', 'preparation'), 'add_comment',
	'{"text": "Client called about {{title}}"}') IS NOT NULL AS robot_added;
INSERT INTO crm.deal (id, title, responsible_id) VALUES (1, 'Chairs', 2);
INSERT INTO crm.activity (entity_type, entity_id, type, direction, remote_address, subject)
VALUES ('deal', 1, 'call', 'incoming', '+33611111111', 'Question on chairs');
SELECT s.code AS stage FROM crm.deal d JOIN crm.stage s ON s.id = d.stage_id WHERE d.id = 1;
SELECT kind, name, action, stage, status FROM crm.item_automation('deal', 1);
SELECT text FROM crm.timeline_comment WHERE entity_id = 1;
-- The stage change is in the history, on behalf of the responsible user (Sam).
SELECT user_id, text, details->>'from' AS from_stage, details->>'to' AS to_stage
  FROM crm.history WHERE entity_id = 1 AND event_type = 'stage_change';

-- A second call: the deal is already there, it is not moved again.
INSERT INTO crm.activity (entity_type, entity_id, type, direction, remote_address)
VALUES ('deal', 1, 'call', 'incoming', '+33611111111');
SELECT name, status FROM crm.item_automation('deal', 1) WHERE kind = 'trigger';

-- Calls go forward only: a missed-call trigger on "new" does not send the
-- deal back ...
SELECT crm.add_trigger(crm.stage('deal', 'new'), 'missed_call', name => 'Missed') AS missed_trigger;
INSERT INTO crm.activity (entity_type, entity_id, type, direction, status, remote_address)
VALUES ('deal', 1, 'call', 'incoming', 'missed', '+33611111111');
SELECT s.code AS stage FROM crm.deal d JOIN crm.stage s ON s.id = d.stage_id WHERE d.id = 1;
SELECT name, action, status FROM crm.item_automation('deal', 1) WHERE kind = 'trigger' ORDER BY log_id DESC LIMIT 1;
-- ... unless it allows backwards moves.  A call updated to missed is an
-- event too.
SELECT crm.update_trigger((SELECT id FROM crm.trigger WHERE name = 'Missed'), allow_backwards => true);
UPDATE crm.activity SET status = 'missed' WHERE id = 2;
SELECT s.code AS stage FROM crm.deal d JOIN crm.stage s ON s.id = d.stage_id WHERE d.id = 1;

-- A condition reads the item and the event: an e-mail whose subject
-- mentions an invoice moves a deal of at least 1000 to "prepayment_invoice",
-- on behalf of Ola.
SELECT crm.add_trigger(crm.stage('deal', 'prepayment_invoice'), 'incoming_email',
	condition => '{"all": [{"field": "{=Event:subject}", "op": "contains", "value": "invoice"},
	                       {"field": "amount", "op": ">=", "value": 1000}]}',
	name => 'Invoice asked', on_behalf_of => 3) AS email_trigger;
INSERT INTO crm.deal (id, title, responsible_id, amount) VALUES (2, 'Desks', 2, 5000);
INSERT INTO crm.activity (entity_type, entity_id, type, direction, remote_address, subject)
VALUES ('deal', 2, 'email', 'incoming', 'buyer@example.org', 'Hello');
INSERT INTO crm.activity (entity_type, entity_id, type, direction, remote_address, subject)
VALUES ('deal', 2, 'email', 'incoming', 'buyer@example.org', 'Please send the Invoice');
SELECT name, status, outputs->'checked' AS checked FROM crm.item_automation('deal', 2) WHERE kind = 'trigger';
SELECT user_id, details->>'to' AS to_stage FROM crm.history WHERE entity_id = 2 AND event_type = 'stage_change';

-- When several triggers match, the one whose stage comes first wins: an
-- application's "contract.signed" event has triggers on "executing" and on
-- "won"; crm.fire_trigger says what happened.
SELECT crm.add_trigger(crm.stage('deal', 'won'), 'webhook', '{"code": "contract.signed"}', name => 'Signed: won') AS won_trigger;
SELECT crm.add_trigger(crm.stage('deal', 'executing'), 'webhook', '{"code": "contract.signed"}', name => 'Signed: executing') AS executing_trigger;
SELECT crm.fire_trigger('contract.signed', 'deal', 2, '{"by": "buyer"}') AS outcome;
SELECT s.code AS stage FROM crm.deal d JOIN crm.stage s ON s.id = d.stage_id WHERE d.id = 2;
SELECT crm.fire_trigger('contract.signed', 'deal', 2) AS again,
       crm.fire_trigger('unknown.code', 'deal', 2) AS nobody_listens;
-- An event that reaches a deal with no trigger of its pipeline for it
-- leaves a compact row: no_trigger, the event's key and the deal's stage.
SELECT action, status, outputs FROM crm.item_automation('deal', 2) WHERE status = 'no_trigger';

-- A field change: a deal whose amount or custom field UF_URGENT changes
-- moves to "executing"; a change of another field fires nothing.
SELECT crm.add_field('deal', 'UF_URGENT', 'Urgent', 'boolean') IS NOT NULL AS field_added;
SELECT crm.add_trigger(crm.stage('deal', 'executing'), 'field_changed',
	'{"fields": ["amount", "UF_URGENT"]}', name => 'Urgent or repriced') AS field_trigger;
INSERT INTO crm.deal (id, title, responsible_id) VALUES (3, 'Lamps', 2);
UPDATE crm.deal SET title = 'Desk lamps' WHERE id = 3;
SELECT count(*) AS trigger_logs FROM crm.robot_log WHERE entity_id = 3 AND kind = 'trigger';
UPDATE crm.deal SET fields = fields || '{"UF_URGENT": true}' WHERE id = 3;
SELECT s.code AS stage, d.stage_changed_at IS NOT NULL AS stage_time_set
  FROM crm.deal d JOIN crm.stage s ON s.id = d.stage_id WHERE d.id = 3;
SELECT name, status, outputs->'event' AS event FROM crm.item_automation('deal', 3) WHERE kind = 'trigger';

-- A new responsible: responsible_changed, with the old and new user in the
-- payload.
SELECT crm.add_trigger(crm.stage('deal', 'final_invoice'), 'responsible_changed',
	condition => '"{=Event:to} = 3"') AS responsible_trigger;
UPDATE crm.deal SET responsible_id = 1 WHERE id = 3;
UPDATE crm.deal SET responsible_id = 3 WHERE id = 3;
SELECT name, status, outputs->'event' AS event FROM crm.item_automation('deal', 3)
 WHERE kind = 'trigger' AND action = 'responsible_changed';

-- The exceptions list: the add_to_exceptions robot puts a client's phone
-- and e-mail on it; their calls are no longer recorded and fire nothing.
-- Phones are compared by their digits and a leading +, however written on
-- either side; e-mails without regard to case.  An address that is not
-- written as a phone (an e-mail to a fax gateway) is not compared as one.
INSERT INTO crm.contact (id, name, phone, email) VALUES (1, 'Spammer', '+33 6 99 99 99 99', 'Spam@Example.org');
SELECT crm.add_robot(crm.stage('deal', 'lost'), 'add_to_exceptions') IS NOT NULL AS robot_added;
INSERT INTO crm.deal (id, title, responsible_id, contact_id, stage_id) VALUES (4, 'Junk', 2, 1, crm.stage('deal', 'lost'));
SELECT type, value, key FROM crm.exception_list ORDER BY type;
INSERT INTO crm.deal (id, title, responsible_id, contact_id) VALUES (5, 'Other', 2, 1);
INSERT INTO crm.activity (entity_type, entity_id, type, direction, remote_address)
VALUES ('deal', 5, 'call', 'incoming', '+33699999999'),
       ('deal', 5, 'call', 'incoming', '+33 (6) 99-99-99-99'),
       ('deal', 5, 'email', 'incoming', 'spam@example.ORG'),
       ('deal', 5, 'call', 'incoming', '0699999999'),
       ('deal', 5, 'call', 'incoming', '+33600000000'),
       ('deal', 5, 'email', 'incoming', '+33699999999@fax.example.org');
SELECT type, remote_address FROM crm.activity WHERE entity_id = 5 ORDER BY id;
SELECT name, status FROM crm.item_automation('deal', 5) WHERE kind = 'trigger';
-- Each dropped activity leaves a compact row in the deal's automation
-- (excepted: the list entry that matched and the incoming address).
SELECT action, outputs->>'type' AS type, outputs->>'entry' AS entry, outputs->>'address' AS address
  FROM crm.item_automation('deal', 5) WHERE status = 'excepted';

-- Open channels: a message moves a lead to "in_process".
SELECT crm.add_trigger(crm.stage('lead', 'in_process'), 'openline_message') AS openline_trigger;
INSERT INTO crm.lead (id, title, responsible_id) VALUES (100, 'Chat lead', 2);
INSERT INTO crm.activity (entity_type, entity_id, type, direction, remote_address)
VALUES ('lead', 100, 'openline', 'incoming', 'telegram:4242');
SELECT s.code AS stage FROM crm.lead l JOIN crm.stage s ON s.id = l.stage_id WHERE l.id = 100;

-- Web forms: a submission creates a lead from the mapped keys, then the
-- webform trigger (here only for large budgets) moves it.
SELECT crm.add_field('lead', 'UF_BUDGET', 'Budget', 'number') IS NOT NULL AS field_added;
SELECT crm.add_webform('quote_request', 'Quote request',
	'{"name": "contact_name", "mail": "email", "budget": "UF_BUDGET"}', responsible_id => 2) AS form_id;
SELECT crm.add_trigger(crm.stage('lead', 'processed'), 'webform', '{"form": "quote_request"}',
	condition => '"{=Event:budget} >= 10000"', name => 'Big request') AS webform_trigger;
SELECT crm.submit_webform('quote_request', '{"name": "Claire", "mail": "claire@example.org", "budget": 25000, "note": "asap"}') AS big_lead;
SELECT crm.submit_webform('quote_request', '{"name": "Bob", "budget": 50}') AS small_lead;
SELECT l.id, l.title, l.contact_name, l.email, l.responsible_id, l.source, l.fields, s.code AS stage
  FROM crm.lead l JOIN crm.stage s ON s.id = l.stage_id WHERE l.id < 100 ORDER BY l.id;
SELECT entity_id, status FROM crm.robot_log WHERE action = 'webform' ORDER BY id;
-- A submission may also name an existing item.
SELECT crm.submit_webform('quote_request', '{"budget": 99999}', 'lead', 100) AS existing_lead;
SELECT s.code AS stage FROM crm.lead l JOIN crm.stage s ON s.id = l.stage_id WHERE l.id = 100;
SELECT form_code, entity_type, entity_id, created_item FROM crm.webform_submission ORDER BY id;

-- Tracked links: a token per URL; the endpoint serving it calls
-- crm.track_click, which returns the URL and fires link_click (or qr_scan,
-- email_read for QR codes and tracking pixels).
SELECT crm.add_trigger(crm.stage('deal', 'preparation'), 'link_click',
	'{"url": "https://shop.example.com/offer"}', name => 'Offer opened') AS link_trigger;
SELECT crm.add_trigger(crm.stage('deal', 'prepayment_invoice'), 'qr_scan') AS qr_trigger;
SELECT crm.add_trigger(crm.stage('deal', 'preparation'), 'email_read') AS read_trigger;
INSERT INTO crm.deal (id, title, responsible_id) VALUES (6, 'Sofas', 2), (7, 'Beds', 2), (8, 'Rugs', 2);
CREATE TEMP TABLE tok AS SELECT
	crm.tracking_link('deal', 6, 'https://shop.example.com/other') AS other,
	crm.tracking_link('deal', 6, 'https://shop.example.com/offer') AS offer,
	crm.tracking_link('deal', 7, 'https://shop.example.com/menu', 'qr_scan') AS qr,
	crm.tracking_link('deal', 8, NULL, 'email_read') AS pixel;
SELECT crm.track_click(other) AS url FROM tok;
SELECT s.code AS stage_after_other_link FROM crm.deal d JOIN crm.stage s ON s.id = d.stage_id WHERE d.id = 6;
SELECT crm.track_click(offer) AS url FROM tok;
SELECT crm.track_click(qr) AS url, crm.track_click(pixel) AS pixel_url FROM tok;
SELECT d.id, s.code AS stage FROM crm.deal d JOIN crm.stage s ON s.id = d.stage_id WHERE d.id IN (6, 7, 8) ORDER BY d.id;
SELECT event, clicks FROM crm.tracked_link ORDER BY event, clicks;

-- Payments: an invoice that becomes paid moves itself and its deal; a
-- payment received moves the item it is bound to.
SELECT crm.add_trigger(crm.stage('invoice', 'paid'), 'invoice_paid') AS invoice_trigger;
SELECT crm.add_trigger(crm.stage('deal', 'final_invoice'), 'invoice_paid', name => 'Deal invoice paid') AS deal_invoice_trigger;
SELECT crm.add_trigger(crm.stage('quote', 'received'), 'payment',
	condition => '"{=Event:amount} >= 100"') AS payment_trigger;
INSERT INTO crm.deal (id, title, responsible_id) VALUES (9, 'Tables', 2);
INSERT INTO crm.invoice (id, title, responsible_id, deal_id, amount) VALUES (1, 'Tables invoice', 2, 9, 300);
UPDATE crm.invoice SET paid = true, paid_at = now() WHERE id = 1;
SELECT s.code AS invoice_stage FROM crm.invoice i JOIN crm.stage s ON s.id = i.stage_id WHERE i.id = 1;
SELECT s.code AS deal_stage FROM crm.deal d JOIN crm.stage s ON s.id = d.stage_id WHERE d.id = 9;
INSERT INTO crm.quote (id, title, responsible_id) VALUES (1, 'Quote', 2);
INSERT INTO crm.payment (entity_type, entity_id, amount) VALUES ('quote', 1, 20);
SELECT s.code AS after_small_payment FROM crm.quote q JOIN crm.stage s ON s.id = q.stage_id WHERE q.id = 1;
INSERT INTO crm.payment (entity_type, entity_id, amount) VALUES ('quote', 1, 200);
SELECT s.code AS after_payment FROM crm.quote q JOIN crm.stage s ON s.id = q.stage_id WHERE q.id = 1;

-- Bookings: a resource booked for a smart-process item moves it, for the
-- service the trigger names.
SELECT crm.create_smart_process('repair', 'Repairs') > 0 AS created;
SELECT crm.add_trigger(crm.stage('repair', 'client'), 'booking', '{"service": "Visit"}') AS booking_trigger;
INSERT INTO crm.item (id, entity_type, title, responsible_id) VALUES (1, 'repair', 'Boiler', 2);
INSERT INTO crm.resource_booking (service, user_id, start_at, duration, entity_type, entity_id)
VALUES ('Phone call', 2, '2030-01-01 10:00+00', '30 minutes', 'repair', 1);
SELECT s.code AS stage_after_other_service FROM crm.item i JOIN crm.stage s ON s.id = i.stage_id WHERE i.id = 1;
INSERT INTO crm.resource_booking (service, user_id, start_at, duration, entity_type, entity_id)
VALUES ('visit', 2, '2030-01-02 10:00+00', '1 hour', 'repair', 1);
SELECT s.code AS stage FROM crm.item i JOIN crm.stage s ON s.id = i.stage_id WHERE i.id = 1;

-- Copying a trigger to another stage validates it there; an inactive
-- trigger fires nothing; a deleted one is gone.
SELECT crm.copy_trigger((SELECT id FROM crm.trigger WHERE name = 'Offer opened'), crm.stage('deal', 'executing')) > 0 AS copied;
SELECT s.code AS stage, t.name, t.params FROM crm.trigger t JOIN crm.stage s ON s.id = t.stage_id
 WHERE t.name = 'Offer opened' ORDER BY t.id;
SELECT count(*) AS deactivated FROM crm.trigger t, crm.update_trigger(t.id, active => false) WHERE t.event = 'webhook';
SELECT crm.fire_trigger('contract.signed', 'deal', 1) AS inactive;
SELECT count(*) AS deleted FROM crm.trigger t, crm.delete_trigger(t.id) WHERE t.event = 'webhook';
SELECT count(*) AS webhook_triggers FROM crm.trigger WHERE event = 'webhook';

-- A rolled-back event moves nothing and leaves no log.
BEGIN;
INSERT INTO crm.deal (id, title, responsible_id) VALUES (10, 'Ghost', 2);
INSERT INTO crm.activity (entity_type, entity_id, type, direction) VALUES ('deal', 10, 'call', 'incoming');
ROLLBACK;
SELECT count(*) AS ghost_logs FROM crm.robot_log WHERE entity_id = 10;

-- A cancel or statement timeout during a trigger's move cancels the
-- statement, as anywhere else: it is not a failure of the trigger to log
-- and go past.
INSERT INTO crm.deal (id, title, responsible_id) VALUES (11, 'Slow', 2);
CREATE FUNCTION pg_temp.slow_move() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
	IF NEW.id = 11 AND NEW.stage_id = crm.stage('deal', 'won') THEN
		PERFORM pg_sleep(5);
	END IF;
	RETURN NEW;
END $$;
CREATE TRIGGER slow_move BEFORE UPDATE ON crm.deal FOR EACH ROW EXECUTE FUNCTION pg_temp.slow_move();
SELECT crm.add_trigger(crm.stage('deal', 'won'), 'webhook', '{"code": "slow.win"}') > 0 AS added;
\set VERBOSITY terse
SET statement_timeout = '300ms';
SELECT crm.fire_trigger('slow.win', 'deal', 11);
RESET statement_timeout;
\set VERBOSITY default
SELECT count(*) AS slow_logs FROM crm.robot_log WHERE entity_id = 11 AND trigger_id IS NOT NULL;
SELECT s.code AS slow_stage FROM crm.deal d JOIN crm.stage s ON s.id = d.stage_id WHERE d.id = 11;
DROP TRIGGER slow_move ON crm.deal;
