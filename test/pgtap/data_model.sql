-- The data model's constraints and the roles' rights.
BEGIN;
CREATE EXTENSION crm_automation;
SELECT plan(62);

-- Every table of SPEC §9 exists.
SELECT has_table('crm', t, 'table crm.' || t) FROM unnest(ARRAY[
	'lead', 'deal', 'contact', 'company', 'quote', 'invoice', 'item', 'pipeline', 'stage', 'user',
	'department', 'activity', 'task', 'process_instance', 'timeline_comment', 'history', 'feed_post',
	'notification', 'chat', 'chat_member', 'chat_message', 'calendar_event', 'absence', 'exception_list',
	'resource_booking', 'document', 'drive_file', 'robot', 'trigger', 'automation_log', 'robot_log_entry',
	'process_template',
	'outbox', 'provider']) t;
-- The robot log is read through a view of its two tables.
SELECT has_view('crm', 'robot_log', 'view crm.robot_log');

-- Key column types.
SELECT col_type_is('crm', 'deal', 'stage_id', 'bigint', 'deal.stage_id is bigint');
SELECT col_type_is('crm', 'deal', 'fields', 'jsonb', 'deal.fields is jsonb');
SELECT col_type_is('crm', 'contact', 'name', 'text', 'contact.name is text');

INSERT INTO crm.department (id, name) VALUES (1, 'Sales');
INSERT INTO crm.user (id, name, department_id) VALUES (1, 'Mia', 1);

-- CHECKs on enumerations, a few foreign keys, NOT NULL.
SELECT throws_ok($$INSERT INTO crm.stage (pipeline_id, code, name, sort, semantics) VALUES (crm.default_pipeline('deal'), 'x', 'X', 1, 'won')$$,
	'23514', NULL, 'stage semantics is checked');
SELECT throws_ok($$INSERT INTO crm.history (entity_type, entity_id, event_type) VALUES ('deal', 1, 'gossip')$$,
	'23514', NULL, 'history event_type is checked');
SELECT throws_ok($$INSERT INTO crm.activity (entity_type, entity_id, type, direction) VALUES ('deal', 1, 'call', 'sideways')$$,
	'23514', NULL, 'activity direction is checked');
SELECT throws_ok($$INSERT INTO crm.outbox (channel, payload, status) VALUES ('webhook', '{}', 'lost')$$,
	'23514', NULL, 'outbox status is checked');
SELECT throws_ok($$INSERT INTO crm.outbox (channel, payload) VALUES ('pigeon', '{}')$$,
	'23514', NULL, 'outbox channel is checked');
SELECT throws_ok($$INSERT INTO crm.job (kind, entity_type, entity_id, due_at, status) VALUES ('robot', 'deal', 1, now(), 'maybe')$$,
	'23514', NULL, 'job status is checked');
SELECT throws_ok($$INSERT INTO crm.chat_message (sender_id, text) VALUES (1, 'to nobody')$$,
	'23514', NULL, 'a message goes to a chat or to one user');
SELECT throws_ok($$INSERT INTO crm.user (id, name, department_id) VALUES (999, 'Ghost', 999)$$,
	'23503', NULL, 'users belong to existing departments');
SELECT throws_ok($$INSERT INTO crm.task (title) VALUES ('no owner')$$,
	'23502', NULL, 'a task needs a responsible user');
SELECT throws_ok($$INSERT INTO crm.pipeline (entity_type, name, is_default) VALUES ('deal', 'Second default', true)$$,
	'23505', NULL, 'one default pipeline per entity type');
SELECT throws_ok($$INSERT INTO crm.calendar_event (title, start_at, end_at) VALUES ('x', now(), now() - interval '1 hour')$$,
	'23514', NULL, 'an event ends after it starts');

-- Smart-process items: their own stages only, entity type fixed.
SELECT crm.create_smart_process('repair', 'Repairs');
INSERT INTO crm.item (entity_type, title) VALUES ('repair', 'Fix the lamp');
SELECT is((SELECT s.code FROM crm.item i JOIN crm.stage s ON s.id = i.stage_id), 'new', 'a smart item lands in its first stage');
SELECT throws_ok($$INSERT INTO crm.item (entity_type, title, stage_id) VALUES ('repair', 'x', crm.stage('deal', 'new'))$$,
	'23503', NULL, 'a smart item refuses a deal stage');
SELECT crm.create_smart_process('delivery', 'Deliveries');
SELECT throws_ok($$UPDATE crm.item SET entity_type = 'delivery', stage_id = crm.stage('delivery', 'new')$$,
	'0A000', NULL, 'the entity type of an item does not change');

-- The cache sees a stage created a moment ago, in the same transaction.
SELECT crm.add_stage(crm.default_pipeline('deal'), 'fresh', 'Fresh', sort => 1);
INSERT INTO crm.deal (title) VALUES ('Fresh deal');
SELECT is((SELECT s.code FROM crm.deal d JOIN crm.stage s ON s.id = d.stage_id WHERE d.title = 'Fresh deal'), 'fresh',
	'a new first stage is the default at once');

-- Roles.
SELECT has_role('crm_admin', 'crm_admin exists');
SELECT has_role('crm_user', 'crm_user exists');
CREATE ROLE crm_test_user; GRANT crm_user TO crm_test_user;
CREATE ROLE crm_test_admin; GRANT crm_admin TO crm_test_admin;
SET ROLE crm_test_user;
SELECT lives_ok($$INSERT INTO crm.deal (title) VALUES ('by a user')$$, 'crm_user inserts deals');
SELECT lives_ok($$SELECT count(*) FROM crm.stage$$, 'crm_user reads stages');
SELECT throws_ok($$SELECT crm.add_stage(crm.default_pipeline('deal'), 'x', 'X')$$, '42501', NULL, 'crm_user cannot add stages');
SELECT throws_ok($$INSERT INTO crm.stage (pipeline_id, code, name, sort) VALUES (1, 'x', 'X', 1)$$, '42501', NULL,
	'crm_user cannot write stages');
SELECT throws_ok($$SELECT * FROM crm.provider_secret$$, '42501', NULL, 'crm_user cannot read secrets');
RESET ROLE;
SET ROLE crm_test_admin;
SELECT lives_ok($$SELECT crm.add_stage(crm.default_pipeline('deal'), 'by_admin', 'By admin')$$, 'crm_admin adds stages');
SELECT throws_ok($$SELECT * FROM crm.provider_secret$$, '42501', NULL, 'crm_admin cannot read secrets');
RESET ROLE;

SELECT * FROM finish();
ROLLBACK;
