-- A deployment's first week: the acting user per transaction, a role given
-- rights on one table only, loading data without automation.
BEGIN;
CREATE EXTENSION crm_automation;
SELECT plan(11);

INSERT INTO crm.department (id, name) VALUES (1, 'Sales');
INSERT INTO crm.user (id, name, email, department_id) VALUES (1, 'Mia', 'mia@example.com', 1), (2, 'Sam', 'sam@example.com', 1);
SELECT crm.add_robot(crm.stage('deal', 'new'), 'add_comment', '{"text": "Welcome {{title}}"}') IS NOT NULL AS r1;

-- crm.set_user: the acting user of this transaction (what a transaction
-- pooler needs; tested through pgbouncer in test/integration/pooler.sh).
SELECT is(crm.set_user(2), 2::bigint, 'set_user returns the user');
SELECT is(current_setting('crm.user_id'), '2', 'and sets crm.user_id');
INSERT INTO crm.deal (id, title, responsible_id) VALUES (1, 'By Sam', 1);
SELECT is((SELECT created_by FROM crm.deal WHERE id = 1), 2::bigint, 'the deal is authored by that user');
SELECT throws_ok($$SELECT crm.set_user(99)$$, 'P0002', 'user 99 does not exist', 'an unknown user is refused');
SELECT is(crm.set_user(NULL), 0::bigint, 'NULL means the system');
INSERT INTO crm.user (id, name, email, department_id) VALUES (3000000000, 'Big', 'big@example.com', 1);
SELECT throws_ok($$SELECT crm.set_user(3000000000)$$, '22003', 'user id 3000000000 is out of range',
	'a user id past crm.user_id''s range is refused');

-- A role granted INSERT on crm.deal alone (not crm_user): its writes get
-- their automation, since automation reads its rules as the owner.
CREATE ROLE deploy_app NOLOGIN;
GRANT USAGE ON SCHEMA crm TO deploy_app;
GRANT SELECT, INSERT ON crm.deal TO deploy_app;
SET ROLE deploy_app;
SELECT lives_ok($$INSERT INTO crm.deal (id, title, responsible_id) VALUES (2, 'Narrow', 1)$$,
	'a role with INSERT on crm.deal only can insert');
RESET ROLE;
SELECT is((SELECT count(*) FROM crm.timeline_comment WHERE entity_id = 2 AND text = 'Welcome Narrow'), 1::bigint,
	'and the robots of the stage ran');
SELECT is((SELECT stage_id FROM crm.deal WHERE id = 2), crm.stage('deal', 'new'), 'it landed in the default stage');

-- Loading data without automation: session_replication_role = replica
-- (superuser) turns every trigger off, crm's included; rows must then carry
-- their stage.
SET session_replication_role = replica;
INSERT INTO crm.deal (id, title, responsible_id, stage_id) VALUES (3, 'Imported', 1, crm.stage('deal', 'new'));
RESET session_replication_role;
SELECT is((SELECT count(*) FROM crm.timeline_comment WHERE entity_id = 3), 0::bigint,
	'an import with session_replication_role = replica runs no robot');
SELECT is((SELECT stage_id FROM crm.deal WHERE id = 3), crm.stage('deal', 'new'), 'and keeps the stage it was given');

SELECT * FROM finish();
ROLLBACK;
