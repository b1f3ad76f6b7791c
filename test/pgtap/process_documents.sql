-- Feed posts (document type feed_post) and drive files (drive_file) as
-- documents of business processes (SPEC §5, issue 14): templates for them,
-- started by id and by name, templates reading the row's columns, the
-- activities that work on them and those refused when saved (they need a CRM
-- item), set_field on their columns, auto-start on add / modify with the
-- same exclusions as items, crm.item_automation and crm.document_processes.
BEGIN;
CREATE EXTENSION crm_automation;
SELECT plan(59);

INSERT INTO crm.department (id, name) VALUES (1, 'Sales');
INSERT INTO crm.user (id, name, email, department_id) VALUES
	(1, 'Mia', 'mia@example.com', 1), (2, 'Sam', 'sam@example.com', 1);
UPDATE crm.department SET head_id = 1;
INSERT INTO crm.feed_post (id, author_id, title, text) VALUES (10, 2, 'Launch', 'We ship on Monday');
INSERT INTO crm.drive_file (id, name, content_type, content, owner_id)
	VALUES (20, 'plan.pdf', 'application/pdf', '\x255044462d', 2);
SELECT setval(pg_get_serial_sequence('crm.feed_post', 'id'), 100);
SELECT setval(pg_get_serial_sequence('crm.drive_file', 'id'), 100);

-- ---------- templates and starts ----------
SELECT crm.add_process_template('feed_post', 'Review post', $${
	"variables": {"long": {"type": "bool", "default": false}},
	"activities": [
		{"type": "set_status_text", "text": "Reviewing {{title}}: {{text}}"},
		{"type": "if", "condition": "length({{text}}) > 0",
		 "then": [{"type": "set_variable", "variable": "long", "value": "=true"}]},
		{"type": "user_notification", "to": ["responsible"], "text": "Your post {{title}} is reviewed", "kind": "system"},
		{"type": "create_task", "name": "check", "title": "Check {{title}}", "responsible": [1]},
		{"type": "set_field", "field": "title", "value": "{{title}} (reviewed)"}]}$$) AS review \gset
SELECT is((SELECT document_type FROM crm.process_template WHERE id = :review), 'feed_post',
	'a template for feed posts is stored');
SELECT crm.add_process_template('Drive_File', 'File check', $${
	"activities": [
		{"type": "set_status_text", "text": "{{name}} ({{content_type}}, {{size}} bytes)"},
		{"type": "notify", "recipients": ["responsible"], "text": "{{name}} checked"},
		{"type": "set_field", "field": "content_type", "value": "application/x-checked"}]}$$) AS file_check \gset
SELECT is((SELECT document_type FROM crm.process_template WHERE id = :file_check), 'drive_file',
	'the document type is stored in lower case');

SELECT crm.start_process(:review, 10) AS i1 \gset
SELECT results_eq(format('SELECT status, status_text, variables FROM crm.process_instance WHERE id = %s', :i1),
	$$VALUES ('completed', 'Reviewing Launch: We ship on Monday', '{"long": true}'::jsonb)$$,
	'an instance on a feed post reads its title and text, runs if and set_variable');
SELECT is((SELECT title FROM crm.feed_post WHERE id = 10), 'Launch (reviewed)', 'set_field sets a column of the feed post');
SELECT results_eq($$SELECT user_id, entity_type, entity_id FROM crm.notification WHERE text = 'Your post Launch is reviewed'$$,
	$$VALUES (2::bigint, NULL::text, NULL::bigint)$$,
	'"responsible" of a feed post is its author; the notification names no CRM item');
SELECT results_eq(format('SELECT title, responsible_id, entity_type, bindings FROM crm.task WHERE process_instance_id = %s', :i1),
	$$VALUES ('Check Launch', 1::bigint, NULL::text, '{}'::text[])$$,
	'create_task makes a task not bound to the document');

SELECT crm.start_process('File check', 20) AS i2 \gset
SELECT results_eq(format('SELECT document_type, document_id, status, status_text FROM crm.process_instances WHERE id = %s', :i2),
	$$VALUES ('drive_file', 20::bigint, 'completed', 'plan.pdf (application/pdf, 5 bytes)')$$,
	'a template started by name on a drive file reads its name, content type and size');
SELECT is((SELECT content_type FROM crm.drive_file WHERE id = 20), 'application/x-checked', 'set_field sets a column of the drive file');
SELECT is((SELECT user_id FROM crm.notification WHERE text = 'plan.pdf checked'), 2::bigint,
	'"responsible" of a drive file is its owner');
SELECT lives_ok($$SELECT crm.start_process('Review post', 'feed_post', 10)$$, 'by name and document type');
SELECT lives_ok($$SELECT crm.start_process((SELECT id FROM crm.process_template WHERE name = 'File check'), 'drive_file', 20)$$,
	'by id and document type');
SELECT throws_ok($$SELECT crm.start_process('Review post', 'deal', 10)$$,
	'42704', 'process template "Review post" does not exist for deal', 'a name is looked up for its document type');
SELECT throws_ok(format('SELECT crm.start_process(%s, %L, 10)', :review, 'drive_file'),
	'22023', format('process template %s is for feed_post documents, not drive_file', :review),
	'a feed-post template does not start on a drive file');
SELECT throws_ok(format('SELECT crm.start_process(%s, 999)', :review),
	'42704', 'feed_post 999 does not exist', 'a feed post that does not exist');
SELECT throws_ok(format('SELECT crm.start_process(%s, NULL)', :file_check),
	'22004', 'document_id must not be null', 'a NULL document id');

-- The trace and the document's processes.
SELECT ok((SELECT count(*) FROM crm.item_automation('feed_post', 10) WHERE kind = 'process') >= 5,
	'crm.item_automation shows the activities run on the feed post');
SELECT results_eq($$SELECT action, status FROM crm.item_automation('drive_file', 20) WHERE kind = 'process' ORDER BY log_id LIMIT 3$$,
	$$VALUES ('set_status_text', 'done'), ('notify', 'done'), ('set_field', 'done')$$,
	'and on the drive file');
SELECT results_eq($$SELECT template, status FROM crm.document_processes('feed_post', 10) ORDER BY instance_id LIMIT 1$$,
	$$VALUES ('Review post', 'completed')$$, 'crm.document_processes lists a feed post''s instances');
SELECT is((SELECT count(*) FROM crm.document_processes('drive_file', 20)), 2::bigint, 'and a drive file''s');

-- A delay pauses an instance on a feed post; its job resumes it.
SELECT crm.add_process_template('feed_post', 'Later', $${
	"activities": [{"type": "delay", "for": "1 hour"},
				   {"type": "feed_message", "title": "Follow-up", "text": "About {{title}}", "sender": ["responsible"]}]}$$) AS later \gset
SELECT crm.start_process(:later, 10) AS i3 \gset
SELECT results_eq(format('SELECT status, waiting_for LIKE ''the delay until%%'' FROM crm.process_instances WHERE id = %s', :i3),
	$$VALUES ('waiting', true)$$, 'a delay pauses the instance');
UPDATE crm.job SET due_at = now() - interval '1 second' WHERE process_instance_id = :i3;
SELECT isnt(crm.run_next_job(), NULL, 'its job runs');
SELECT is((SELECT status FROM crm.process_instance WHERE id = :i3), 'completed', 'and the instance completes');
SELECT results_eq(format('SELECT author_id, text, entity_type FROM crm.feed_post WHERE process_instance_id = %s', :i3),
	$$VALUES (2::bigint, 'About Launch (reviewed) (reviewed)', NULL::text)$$, 'feed_message posts, reading the post as it is now (reviewed twice)');

-- A failed instance notifies the author of the post.
SELECT crm.add_process_template('feed_post', 'Bad flag', $${
	"activities": [{"type": "set_field", "field": "to_all", "value": "maybe"}]}$$) AS bad_flag \gset
SELECT crm.start_process(:bad_flag, 10) AS i4 \gset
SELECT is((SELECT status FROM crm.process_instance WHERE id = :i4), 'failed', 'a bad value fails the instance');
SELECT results_eq(format('SELECT user_id FROM crm.notification WHERE process_instance_id = %s AND kind = ''system'' ORDER BY user_id', :i4),
	$$VALUES (2::bigint)$$, 'its failure notice goes to the post''s author');

-- ---------- refused when saved ----------
SELECT count(*) AS templates FROM crm.process_template \gset
SELECT throws_ok($$SELECT crm.add_process_template('feed_post', 'Stage', '{"activities": [{"type": "set_status_text", "text": "x"}, {"type": "change_stage", "stage": "won"}]}')$$,
	'0A000', 'activity "change_stage" at activities[1] works on CRM items only, not on feed_post documents',
	'change_stage on a feed post is refused, naming its place');
SELECT throws_ok($$SELECT crm.add_process_template('drive_file', 'Update', '{"activities": [{"type": "if", "condition": "{{size}} > 0", "then": [{"type": "update_item", "fields": {"name": "x"}}]}]}')$$,
	'0A000', 'activity "update_item" at activities[0].then[0] works on CRM items only, not on drive_file documents',
	'update_item inside a branch, on a drive file');
SELECT throws_ok($$SELECT crm.add_process_template('feed_post', 'Comment', '{"activities": [{"type": "add_comment", "text": "x"}]}')$$,
	'0A000', 'activity "add_comment" at activities[0] works on CRM items only, not on feed_post documents', 'add_comment');
SELECT throws_ok($$SELECT crm.add_process_template('feed_post', 'Activity', '{"activities": [{"type": "create_activity", "params": {"subject": "Call", "type": "call"}}]}')$$,
	'0A000', 'activity "create_activity" at activities[0] works on CRM items only, not on feed_post documents', 'create_activity');
SELECT throws_ok($$SELECT crm.add_process_template('drive_file', 'Control', '{"activities": [{"type": "control", "text": "x"}]}')$$,
	'0A000', 'activity "control" at activities[0] works on CRM items only, not on drive_file documents', 'the process control');
SELECT throws_ok($$SELECT crm.add_process_template('feed_post', 'Convert', '{"activities": [{"type": "convert", "to": "deal"}]}')$$,
	'0A000', 'activity "convert" at activities[0] works on CRM items only, not on feed_post documents', 'convert');
SELECT throws_ok($$SELECT crm.add_process_template('feed_post', 'Openline', '{"activities": [{"type": "openline_message", "text": "Hello"}]}')$$,
	'0A000', 'activity "openline_message" at activities[0] works on CRM items only, not on feed_post documents', 'openline_message');
SELECT throws_ok($$SELECT crm.add_process_template('feed_post', 'Field', '{"activities": [{"type": "set_field", "field": "entity_id", "value": "1"}]}')$$,
	'0A000', 'set_field at activities[0] cannot set "entity_id" of a feed_post', 'set_field on a column it does not set');
SELECT throws_ok($$SELECT crm.add_process_template('drive_file', 'Size', '{"activities": [{"type": "set_field", "field": "size", "value": "1"}]}')$$,
	'0A000', 'set_field at activities[0] cannot set "size" of a drive_file', 'nor the size of a drive file');
SELECT throws_ok($$SELECT crm.add_process_template('feed_post', 'Unknown', '{"activities": [{"type": "set_status_text", "text": "{{amount}}"}]}')$$,
	'42703', 'unknown field "amount" in text', 'a template field the feed post does not have');
SELECT is((SELECT count(*) FROM crm.process_template), :templates::bigint, 'nothing refused was stored');

-- The errors' hints name the nearest activity that works.
CREATE FUNCTION pg_temp.hint_of(p_type text, p_definition jsonb) RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
	v_hint text;
BEGIN
	PERFORM crm.add_process_template(p_type, 'refused', p_definition);
	RETURN 'stored!';
EXCEPTION WHEN OTHERS THEN
	GET STACKED DIAGNOSTICS v_hint = PG_EXCEPTION_HINT;
	RETURN v_hint;
END
$$;
SELECT alike(pg_temp.hint_of('feed_post', '{"activities": [{"type": "change_stage", "stage": "won"}]}'),
	'%set_status_text%', 'change_stage: keep the state with set_status_text');
SELECT alike(pg_temp.hint_of('drive_file', '{"activities": [{"type": "update_item", "fields": {"name": "x"}}]}'),
	'Use set_field%', 'update_item: use set_field');
SELECT alike(pg_temp.hint_of('feed_post', '{"activities": [{"type": "create_activity", "params": {"subject": "Call"}}]}'),
	'%create_task%', 'create_activity: use create_task');
SELECT alike(pg_temp.hint_of('feed_post', '{"activities": [{"type": "control", "text": "x"}]}'),
	'%user_notification%supervisor%', 'control: user_notification to the supervisor');
SELECT alike(pg_temp.hint_of('feed_post', '{"activities": [{"type": "delete_item"}]}'),
	'%crm.activity_types%', 'others: the catalogue');
SELECT is(pg_temp.hint_of('feed_post', '{"activities": [{"type": "set_field", "field": "entity_id", "value": "1"}]}'),
	'set_field on a feed_post sets one of: title, text, tags, to_all, files, author_id.', 'set_field: the columns it sets');
SELECT results_eq($$SELECT type, document_types FROM crm.activity_types WHERE type IN ('change_stage', 'notify', 'set_field', 'user_notification') ORDER BY type$$,
	$$VALUES ('change_stage', 'CRM items'), ('notify', 'all'), ('set_field', 'all'), ('user_notification', 'all')$$,
	'the catalogue says where each activity works');

-- NULL and hostile inputs.
SELECT throws_ok($$SELECT crm.add_process_template(NULL, 'x', '{"activities": []}')$$,
	'22004', 'document_type must not be null', 'a NULL document type');
SELECT throws_ok($$SELECT crm.add_process_template('feed_post''; DROP TABLE crm.feed_post; --', 'x', '{"activities": [{"type": "set_status_text", "text": "x"}]}')$$,
	'42704', NULL, 'a hostile document type is an unknown one');
SELECT has_table('crm', 'feed_post', 'and harms nothing');
SELECT throws_ok($$SELECT crm.add_process_template('feed_post', 'Hostile', '{"activities": [{"type": "set_field", "field": "title\"; DROP TABLE crm.drive_file; --", "value": "x"}]}')$$,
	'0A000', NULL, 'a hostile set_field field is refused');
SELECT throws_ok($$SELECT crm.add_process_template('feed_post', NULL, '{"activities": [{"type": "set_status_text", "text": "x"}]}')$$,
	'22023', 'a process template needs a name, not "NULL"', 'a NULL name');

-- ---------- auto-start ----------
SELECT crm.add_process_template('feed_post', 'New post', $${
	"activities": [{"type": "set_status_text", "text": "New post {{title}}"}]}$$, auto_start => '{add}') AS on_post \gset
SELECT crm.add_process_template('drive_file', 'File changed', $${
	"activities": [{"type": "set_status_text", "text": "Changed {{name}}"},
				   {"type": "set_field", "field": "content_type", "value": "text/plain"}]}$$, auto_start => '{modify}') AS on_file \gset
INSERT INTO crm.feed_post (author_id, title, text) VALUES (1, 'Hello', 'a'), (2, 'World', 'b');
SELECT results_eq(format('SELECT p.title, i.status, i.status_text FROM crm.process_instances i JOIN crm.feed_post p ON p.id = i.document_id WHERE i.template_id = %s ORDER BY p.id', :on_post),
	$$VALUES ('Hello', 'completed', 'New post Hello'), ('World', 'completed', 'New post World')$$,
	'each new feed post starts the add template');
UPDATE crm.feed_post SET text = 'changed' WHERE title = 'Hello';
SELECT is((SELECT count(*) FROM crm.process_instance WHERE template_id = :on_post), 2::bigint,
	'a change does not start the add template');
INSERT INTO crm.drive_file (name) VALUES ('new.txt') RETURNING id AS new_file \gset
SELECT is((SELECT count(*) FROM crm.process_instance WHERE template_id = :on_file), 0::bigint,
	'a new drive file does not start the modify template');
UPDATE crm.drive_file SET name = 'renamed.txt' WHERE id = :new_file;
SELECT results_eq(format('SELECT status, status_text FROM crm.process_instances WHERE template_id = %s', :on_file),
	$$VALUES ('completed', 'Changed renamed.txt')$$, 'a changed drive file starts the modify template');
SELECT is((SELECT content_type FROM crm.drive_file WHERE id = :new_file), 'text/plain',
	'the process changed the file, and that change started nothing more');
UPDATE crm.drive_file SET updated_at = now() - interval '1 day' WHERE id = :new_file;
SELECT is((SELECT count(*) FROM crm.process_instance WHERE template_id = :on_file), 1::bigint,
	'an update of updated_at only starts nothing');

-- Exclusions: import mode, COPY FROM, a robot's or a process's writes.
SET crm.import_mode = on;
INSERT INTO crm.feed_post (title, text) VALUES ('Imported', 'x');
UPDATE crm.drive_file SET name = 'imported.txt' WHERE id = :new_file;
RESET crm.import_mode;
SELECT is((SELECT count(*) FROM crm.process_instance WHERE template_id IN (:on_post, :on_file)), 3::bigint,
	'nothing starts in import mode');
COPY crm.feed_post (title, text) FROM STDIN;
Copied	one
\.
SELECT is((SELECT count(*) FROM crm.process_instance i JOIN crm.feed_post p ON p.id = i.document_id
	WHERE i.template_id = :on_post AND p.title = 'Copied'), 0::bigint, 'nor for a post copied in');
INSERT INTO crm.deal (id, title, responsible_id) VALUES (1, 'Deal', 2);
SELECT crm.add_robot(crm.stage('deal', 'preparation'), 'feed_post', '{"title": "Robot post", "text": "x"}');
UPDATE crm.deal SET stage_id = crm.stage('deal', 'preparation') WHERE id = 1;
SELECT is((SELECT count(*) FROM crm.feed_post WHERE title = 'Robot post'), 1::bigint, 'the robot posted');
SELECT is((SELECT count(*) FROM crm.process_instance i JOIN crm.feed_post p ON p.id = i.document_id
	WHERE i.template_id = :on_post AND p.title = 'Robot post'), 0::bigint, 'a robot''s post starts nothing');
SELECT crm.add_process_template('deal', 'Announce', $${
	"activities": [{"type": "feed_message", "title": "Process post", "text": "{{title}}"}]}$$) AS announce \gset
SELECT crm.start_process(:announce, 1);
SELECT is((SELECT count(*) FROM crm.process_instance i JOIN crm.feed_post p ON p.id = i.document_id
	WHERE i.template_id = :on_post AND p.title = 'Process post'), 0::bigint, 'nor a process''s post');

SELECT * FROM finish();
ROLLBACK;
