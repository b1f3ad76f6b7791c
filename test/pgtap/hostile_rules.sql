-- Hostile input to the rules: NULL arguments to every function crm_admin
-- and crm_user may call, rule rows changed behind the admin API's back,
-- huge strings and line breaks, delays out of range.  Whatever happens, the
-- server stays up, a bad rule fails alone (logged as failed with a clear
-- error), the other rules run and the application's statement succeeds.
BEGIN;
CREATE EXTENSION crm_automation;
SELECT plan(49);

INSERT INTO crm.department (id, name) VALUES (1, 'Sales');
INSERT INTO crm.user (id, name, email, department_id) VALUES (1, 'Mia', 'mia@example.com', 1);
UPDATE crm.department SET head_id = 1;

-- NULLs where the admin API's C functions used to read them as values.
SELECT throws_ok($$SELECT crm.add_robot(crm.stage('deal', 'new'), NULL, '{"text": "x"}')$$,
	'22004', 'action must not be null', 'add_robot: NULL action');
SELECT throws_ok($$SELECT crm.add_robot(NULL, 'add_comment', '{"text": "x"}')$$,
	'22004', NULL, 'add_robot: NULL stage');
SELECT throws_ok($$SELECT crm.add_robot(crm.stage('deal', 'new'), 'write_log', NULL)$$,
	'22023', 'missing required parameter "text" for action "write_log"', 'add_robot: NULL params checked as {}');
SELECT throws_ok($$SELECT crm._validate_robot(crm.stage('deal', 'new'), NULL, '{}', NULL, NULL, NULL)$$,
	'22004', 'action must not be null', '_validate_robot: NULL action');
SELECT throws_ok($$SELECT crm._validate_robot(NULL, 'write_log', '{"text": "x"}', NULL, NULL, NULL)$$,
	'22004', 'stage id must not be null', '_validate_robot: NULL stage');
SELECT lives_ok($$SELECT crm._validate_robot(crm.stage('deal', 'new'), 'write_log', '{"text": "x"}', NULL, NULL, NULL)$$,
	'_validate_robot: NULL condition, delay and robot id');
SELECT throws_ok($$SELECT crm._validate_trigger(NULL, NULL, NULL, NULL, NULL)$$,
	'22004', NULL, '_validate_trigger: NULLs');
SELECT throws_ok($$SELECT crm._start_process(NULL, NULL, NULL, NULL)$$,
	'22004', 'template_id must not be null', '_start_process: NULL template');
SELECT crm.add_process_template('deal', 'Hello', '{"activities": [{"type": "add_comment", "text": "hello"}]}') AS hello \gset
INSERT INTO crm.deal (id, title, responsible_id) VALUES (1, 'One', 1);
SELECT throws_ok(format($$SELECT crm._start_process(%s, 'deal', NULL, '{}')$$, :hello),
	'22004', 'document_id must not be null', '_start_process: NULL document');
SELECT ok(crm._start_process(:hello, 'deal', 1, NULL) IS NOT NULL, '_start_process: NULL parameters are {}');
SELECT throws_ok($$SELECT crm.start_process(NULL, 1)$$, '22004', NULL, 'start_process: NULL template');
SELECT throws_ok(format($$SELECT crm.start_process(%s, NULL)$$, :hello), '22004', NULL, 'start_process: NULL document');
SELECT throws_ok($$SELECT crm.fire_trigger(NULL, NULL, NULL, NULL)$$, '22004', NULL, 'fire_trigger: NULLs');
SELECT throws_ok($$SELECT crm._fire_event(NULL, NULL, NULL, NULL, NULL, NULL)$$, '22004', NULL, '_fire_event: NULLs');

-- Every function either may call, with all its arguments NULL, then each
-- argument NULL in turn (the others a plain value of their type): an
-- error or a result, never a crash (which would end this test).
CREATE TEMP TABLE null_calls (fn text, args text, outcome text);
DO $$
DECLARE
	f record;
	i int;
	j int;
	args text[];
	call text;
	sample text;
BEGIN
	FOR f IN SELECT p.oid, p.proname, p.proargtypes::oid[] AS types, p.proretset
			   FROM pg_proc p
			  WHERE p.pronamespace = 'crm'::regnamespace
				AND p.prorettype <> 'trigger'::regtype
				AND (has_function_privilege('crm_admin', p.oid, 'EXECUTE')
					 OR has_function_privilege('crm_user', p.oid, 'EXECUTE'))
				AND p.proname NOT IN ('start_worker')
			  ORDER BY p.proname, p.oid
	LOOP
		FOR i IN 0 .. coalesce(array_length(f.types, 1), 0) LOOP
			args := '{}';
			FOR j IN 1 .. coalesce(array_length(f.types, 1), 0) LOOP
				sample := CASE format_type(f.types[j], NULL)
					WHEN 'bigint' THEN '1' WHEN 'integer' THEN '1' WHEN 'text' THEN '''deal'''
					WHEN 'jsonb' THEN '''{}''' WHEN 'boolean' THEN 'true'
					WHEN 'interval' THEN '''1 day''' WHEN 'timestamp with time zone' THEN 'now()'
					WHEN 'text[]' THEN '''{}''' ELSE 'NULL' END;
				args := args || (CASE WHEN i = 0 OR i = j THEN 'NULL' ELSE sample END
								 || '::' || format_type(f.types[j], NULL));
			END LOOP;
			EXIT WHEN i > 0 AND args IS NULL;
			call := format('SELECT %s crm.%I(%s)', CASE WHEN f.proretset THEN 'count(*) FROM' ELSE '' END,
						   f.proname, array_to_string(args, ', '));
			BEGIN
				EXECUTE call;
				INSERT INTO null_calls VALUES (f.proname, array_to_string(args, ', '), 'ok');
			EXCEPTION WHEN OTHERS THEN
				INSERT INTO null_calls VALUES (f.proname, array_to_string(args, ', '), SQLSTATE);
			END;
		END LOOP;
	END LOOP;
END
$$;
SELECT cmp_ok((SELECT count(DISTINCT fn) FROM null_calls), '>=', 60::bigint,
	'every function of the API was called with NULLs (and the server is up)');
SELECT is((SELECT count(*) FROM null_calls WHERE outcome IN ('XX000', 'XX001', 'XX002')), 0::bigint,
	'no NULL argument ends in an internal error');
SELECT ok((SELECT bool_and(fn IN (SELECT fn FROM null_calls))
			 FROM unnest(ARRAY['add_robot', 'update_robot', 'copy_robot', 'move_robot', 'delete_robot',
							   'add_trigger', 'update_trigger', 'copy_trigger', 'delete_trigger',
							   'add_process_template', 'update_process_template', 'delete_process_template',
							   'start_process', 'stop_process', 'fire_trigger', 'submit_webform',
							   'track_click', 'item_automation', 'evaluate', 'test_condition',
							   'check_expression', 'add_webform']) AS fn),
	'the admin and user API is among them');

-- Rows changed behind the admin API's back: each bad robot fails alone.
SELECT crm.add_robot(crm.stage('deal', 'preparation'), 'add_comment', '{"text": "first"}', name => 'first') AS r_first \gset
SELECT crm.add_robot(crm.stage('deal', 'preparation'), 'add_comment', '{"text": "bad params"}') AS r_params \gset
SELECT crm.add_robot(crm.stage('deal', 'preparation'), 'notify', '{"text": "n", "recipients": [1]}') AS r_type \gset
SELECT crm.add_robot(crm.stage('deal', 'preparation'), 'add_comment', '{"text": "tpl"}') AS r_tpl \gset
SELECT crm.add_robot(crm.stage('deal', 'preparation'), 'add_comment', '{"text": "act"}') AS r_action \gset
SELECT crm.add_robot(crm.stage('deal', 'preparation'), 'add_comment', '{"text": "cond"}') AS r_cond \gset
SELECT crm.add_robot(crm.stage('deal', 'preparation'), 'add_comment', '{"text": "delay"}', delay => '{"after": "1 day"}') AS r_delay \gset
SELECT crm.add_robot(crm.stage('deal', 'preparation'), 'add_comment', '{"text": "far"}', delay => '{"after": "1 day"}') AS r_far \gset
SELECT crm.add_robot(crm.stage('deal', 'preparation'), 'wait', '{"for": "1 day"}') AS r_wait \gset
SELECT crm.add_robot(crm.stage('deal', 'executing'), 'add_comment', '{"text": "divide"}', condition => '"=1/0 = 1"') AS r_div \gset
SELECT crm.add_robot(crm.stage('deal', 'executing'), 'control', '{"after": "1 day"}', condition => '"=1/0 = 1"') AS r_ctl \gset
SELECT crm.add_robot(crm.stage('deal', 'executing'), 'add_comment', '{"text": "after the divisions"}') AS r_after \gset

UPDATE crm.robot SET params = '{}' WHERE id = :r_params;
UPDATE crm.robot SET params = '{"text": "n", "recipients": {"a": 1}}' WHERE id = :r_type;
UPDATE crm.robot SET params = '{"text": "{{title"}' WHERE id = :r_tpl;
UPDATE crm.robot SET action = 'teleport' WHERE id = :r_action;
UPDATE crm.robot SET condition = '{"no": "such form"}' WHERE id = :r_cond;
UPDATE crm.robot SET delay = '{"after": 12}' WHERE id = :r_delay;
UPDATE crm.robot SET delay = '{"after": "1000000 years"}' WHERE id = :r_far;
UPDATE crm.robot SET params = '{"for": "soon"}' WHERE id = :r_wait;

INSERT INTO crm.deal (id, title, responsible_id) VALUES (10, 'Hostile', 1);
SELECT lives_ok($$UPDATE crm.deal SET stage_id = crm.stage('deal', 'preparation') WHERE id = 10$$,
	'the move succeeds whatever the robots'' rows hold');
SELECT is((SELECT status FROM crm.robot_log WHERE entity_id = 10 AND robot_id = :r_first), 'done', 'a good robot ran');
SELECT is((SELECT error FROM crm.robot_log WHERE entity_id = 10 AND robot_id = :r_params AND status = 'failed'),
	format('robot %s has invalid parameters: missing required parameter "text" for action "add_comment"', :r_params),
	'params emptied: failed, with the missing parameter');
SELECT is((SELECT error FROM crm.robot_log WHERE entity_id = 10 AND robot_id = :r_type AND status = 'failed'),
	format('robot %s has invalid parameters: parameter "recipients" must be a user id, a user keyword or a template, or an array of them, not an object', :r_type),
	'an object where a list is expected: failed') ;
SELECT matches((SELECT error FROM crm.robot_log WHERE entity_id = 10 AND robot_id = :r_tpl AND status = 'failed'),
	'^robot \d+ has invalid parameters: ', 'a template that does not compile: failed');
SELECT is((SELECT error FROM crm.robot_log WHERE entity_id = 10 AND robot_id = :r_action AND status = 'failed'),
	format('robot %s has an invalid action: unknown action "teleport"', :r_action), 'an unknown action: failed');
SELECT matches((SELECT error FROM crm.robot_log WHERE entity_id = 10 AND robot_id = :r_cond AND status = 'failed'),
	'^robot \d+ has an invalid condition: ', 'a condition of the wrong shape: failed');
SELECT is((SELECT error FROM crm.robot_log WHERE entity_id = 10 AND robot_id = :r_delay AND status = 'failed'),
	format('robot %s has an invalid delay: delay.after must be an interval such as "2 days", not a number', :r_delay),
	'a delay of the wrong type: failed');
SELECT is((SELECT error FROM crm.robot_log WHERE entity_id = 10 AND robot_id = :r_far AND status = 'failed'),
	format('robot %s has an invalid delay: delay.after "1000000 years" is too long', :r_far),
	'a delay of a million years, tampered in: failed alone');
SELECT matches((SELECT error FROM crm.robot_log WHERE entity_id = 10 AND robot_id = :r_wait AND status = 'failed'),
	'^robot \d+ has invalid parameters: .*soon', 'a wait whose interval does not parse: failed');
SELECT is((SELECT count(*) FROM crm.robot_log WHERE entity_id = 10 AND status = 'failed'), 8::bigint,
	'each bad robot is logged failed once');
SELECT is((SELECT count(*) FROM crm.timeline_comment WHERE entity_id = 10), 1::bigint,
	'the good robot''s comment is there, the bad ones wrote nothing');

-- Errors of planning a robot (conditions of wait and control) fail it alone.
SELECT lives_ok($$UPDATE crm.deal SET stage_id = crm.stage('deal', 'executing') WHERE id = 10$$,
	'conditions dividing by zero do not fail the move');
SELECT is((SELECT status FROM crm.robot_log WHERE entity_id = 10 AND robot_id = :r_div), 'failed', 'a robot''s condition dividing by zero: failed');
SELECT matches((SELECT error FROM crm.robot_log WHERE entity_id = 10 AND robot_id = :r_ctl), 'division by zero',
	'a control''s condition dividing by zero: failed with the error');
SELECT is((SELECT status FROM crm.robot_log WHERE entity_id = 10 AND robot_id = :r_after), 'done', 'the robot after them ran');

-- Delays out of range are refused when saved.
SELECT throws_ok($$SELECT crm.add_robot(crm.stage('deal', 'won'), 'add_comment', '{"text": "x"}', delay => '{"after": "1000000 years"}')$$,
	'22023', 'delay.after "1000000 years" is too long', 'a million years refused at save');
SELECT throws_ok($$SELECT crm.add_robot(crm.stage('deal', 'won'), 'add_comment', '{"text": "x"}', delay => '{"at": "close_date", "offset": "-200 years"}')$$,
	'22023', 'delay.offset "-200 years" is too long', 'an offset beyond the bound refused');
SELECT throws_ok($$SELECT crm.add_robot(crm.stage('deal', 'won'), 'wait', '{"for": "500 years"}')$$,
	'22023', 'parameter "for" is too long: "500 years"', 'a wait of 500 years refused');
SELECT lives_ok($$SELECT crm.add_robot(crm.stage('deal', 'won'), 'add_comment', '{"text": "x"}', delay => '{"after": "99 years"}')$$,
	'99 years is within the bound');

-- Huge strings and line breaks are data, not trouble.
SELECT throws_ok(format($$SELECT crm.add_robot(crm.stage('deal', 'won'), 'add_comment', '{"text": "x"}', name => %L)$$, repeat('n', 100000)),
	'22023', NULL, 'a huge robot name is refused');
SELECT throws_ok($$SELECT crm.add_robot(crm.stage('deal', 'won'), 'add_comment', '{"text": "x"}', name => E'a\r\nb')$$,
	'22023', NULL, 'a robot name with CR/LF is refused');
SELECT crm.add_robot(crm.stage('deal', 'lost'), 'add_comment', jsonb_build_object('text', E'line 1\r\nline 2 {{title}}')) AS r_crlf \gset
SELECT crm.add_robot(crm.stage('deal', 'lost'), 'write_log', jsonb_build_object('text', repeat('x', 1000000))) AS r_huge \gset
INSERT INTO crm.deal (id, title, responsible_id) VALUES (11, E'Title\r\nwith ' || repeat('y', 100000), 1);
SELECT lives_ok($$UPDATE crm.deal SET stage_id = crm.stage('deal', 'lost') WHERE id = 11$$, 'huge texts and CR/LF run');
SELECT is((SELECT count(*) FROM crm.robot_log WHERE entity_id = 11 AND status = 'done'), 2::bigint, 'both robots ran');

-- Tampered triggers: the bad one fails alone, the good one fires.
SELECT crm.add_trigger(crm.stage('deal', 'won'), 'webhook', '{"code": "go"}', condition => '"{{amount}} >= 0"') AS t_cond \gset
SELECT crm.add_trigger(crm.stage('deal', 'executing'), 'webhook', '{"code": "go"}') AS t_params \gset
SELECT crm.add_trigger(crm.stage('deal', 'preparation'), 'webhook', '{"code": "go"}') AS t_good \gset
UPDATE crm.trigger SET condition = '{"bad": 1}' WHERE id = :t_cond;
UPDATE crm.trigger SET params = '{"code": 7}' WHERE id = :t_params;
INSERT INTO crm.deal (id, title, responsible_id) VALUES (12, 'Triggered', 1);
SELECT is(crm.fire_trigger('go', 'deal', 12), 'fired', 'the good trigger fires beside the tampered ones');
SELECT is((SELECT s.code FROM crm.deal d JOIN crm.stage s ON s.id = d.stage_id WHERE d.id = 12), 'preparation', 'it moved the deal');
UPDATE crm.trigger SET event = 'teleported' WHERE id = :t_good;
SELECT lives_ok($$SELECT crm.fire_trigger('go', 'deal', 12)$$, 'an unknown event in a row: the event still runs');
SELECT is(crm.fire_trigger('go', 'deal', 12), 'failed', 'only tampered triggers are left: the event fails, the statement does not');
SELECT matches((SELECT error FROM crm.robot_log WHERE entity_id = 12 AND kind = 'trigger' AND status = 'failed' ORDER BY id DESC LIMIT 1),
	'^trigger \d+ has (an invalid condition|invalid parameters): ', 'the failed event names the tampered trigger');

-- A tampered process template fails its instance, not the caller.
UPDATE crm.process_template SET definition = '{"activities": [{"type": "delay"}]}' WHERE id = :hello;
SELECT lives_ok(format($$SELECT crm.start_process(%s, 1)$$, :hello), 'start_process with a tampered template succeeds');
SELECT matches((SELECT error FROM crm.process_instance WHERE template_id = :hello ORDER BY id DESC LIMIT 1),
	'^process template \d+ has an invalid definition: ', 'its instance failed with the reason');
UPDATE crm.process_template SET definition = '{"activities": "none"}' WHERE id = :hello;
SELECT crm.start_process(:hello, 1) AS i_bad \gset
SELECT is((SELECT status FROM crm.process_instance WHERE id = :i_bad), 'failed',
	'a definition without a list of activities fails its instance');

SELECT * FROM finish();
ROLLBACK;
