-- Business processes: templates of activities for one document, checked
-- when saved, started by hand, run at once until a delay.
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS crm_automation CASCADE;
CREATE EXTENSION crm_automation;
RESET client_min_messages;
\set SHOW_CONTEXT never

INSERT INTO crm.department (id, name) VALUES (1, 'Sales');
INSERT INTO crm.user (id, name, email, department_id) VALUES
	(1, 'Mia', 'mia@example.com', 1), (2, 'Sam', 'sam@example.com', 1);
UPDATE crm.department SET head_id = 1;

-- Each bad definition is refused with an error code, a message, the place
-- of the bad part in the detail, and a hint.  This helper shows them as a row.
CREATE FUNCTION pg_temp.refused(p_type text, p_definition jsonb, p_auto_start text[] DEFAULT '{}')
RETURNS TABLE (code text, message text, detail text, hint text)
LANGUAGE plpgsql AS $$
BEGIN
	PERFORM crm.add_process_template(p_type, 'bad', p_definition, p_auto_start);
	code := 'stored!';
	RETURN NEXT;
EXCEPTION WHEN OTHERS THEN
	GET STACKED DIAGNOSTICS code = RETURNED_SQLSTATE, message = MESSAGE_TEXT,
		detail = PG_EXCEPTION_DETAIL, hint = PG_EXCEPTION_HINT;
	RETURN NEXT;
END
$$;
\pset null '-'
\x on

-- The document type: an entity type, a feed post (feed_post) or a drive
-- file (drive_file).  On those two, an activity that needs a CRM item is
-- refused with its place and what to use instead.
SELECT * FROM pg_temp.refused('spaceship', '{"activities": [{"type": "write_log", "text": "x"}]}');
SELECT * FROM pg_temp.refused('feed_post', '{"activities": [{"type": "write_log", "text": "x"}]}');
SELECT * FROM pg_temp.refused('drive_file', '{"activities": [{"type": "set_status_text", "text": "{{name}}"}, {"type": "if", "condition": "{{size}} > 0", "then": [{"type": "change_stage", "stage": "won"}]}]}');
SELECT * FROM pg_temp.refused('feed_post', '{"activities": [{"type": "set_field", "field": "entity_id", "value": "1"}]}');
SELECT * FROM pg_temp.refused('feed_post', '{"activities": [{"type": "set_status_text", "text": "{{responsible.name}}"}]}');
-- Auto-start: add and/or modify; a template that auto-starts gets no
-- parameters, so none may be required without a default.
SELECT * FROM pg_temp.refused('deal', '{"parameters": {"why": {"type": "text", "required": true}}, "activities": [{"type": "write_log", "text": "x"}]}', '{add}');
SELECT * FROM pg_temp.refused('deal', '{"activities": [{"type": "write_log", "text": "x"}]}', '{sometimes}');

-- The definition's shape.
SELECT * FROM pg_temp.refused('deal', '[]');
SELECT * FROM pg_temp.refused('deal', '{"steps": []}');
SELECT * FROM pg_temp.refused('deal', '{}');
SELECT * FROM pg_temp.refused('deal', '{"activities": []}');
SELECT * FROM pg_temp.refused('deal', '{"activities": {"type": "write_log"}}');

-- Parameters, variables and constants.
SELECT * FROM pg_temp.refused('deal', '{"parameters": [], "activities": [{"type": "write_log", "text": "x"}]}');
SELECT * FROM pg_temp.refused('deal', '{"parameters": {"why": {"type": "colour"}}, "activities": [{"type": "write_log", "text": "x"}]}');
SELECT * FROM pg_temp.refused('deal', '{"parameters": {"why": "text"}, "activities": [{"type": "write_log", "text": "x"}]}');
SELECT * FROM pg_temp.refused('deal', '{"parameters": {"why": {"type": "text", "required": "yes"}}, "activities": [{"type": "write_log", "text": "x"}]}');
SELECT * FROM pg_temp.refused('deal', '{"parameters": {"why": {"type": "text", "size": 3}}, "activities": [{"type": "write_log", "text": "x"}]}');
SELECT * FROM pg_temp.refused('deal', '{"variables": {"n": {"type": "int", "default": "many"}}, "activities": [{"type": "write_log", "text": "x"}]}');
SELECT * FROM pg_temp.refused('deal', '{"variables": {"2x": {"type": "int"}}, "activities": [{"type": "write_log", "text": "x"}]}');
SELECT * FROM pg_temp.refused('deal', '{"constants": 5, "activities": [{"type": "write_log", "text": "x"}]}');

-- Activities: a type, known; a name that is an identifier, used once.
SELECT * FROM pg_temp.refused('deal', '{"activities": ["write_log"]}');
SELECT * FROM pg_temp.refused('deal', '{"activities": [{"type": 7}]}');
SELECT * FROM pg_temp.refused('deal', '{"activities": [{"type": "write_log", "text": "x", "name": 7}]}');
SELECT * FROM pg_temp.refused('deal', '{"activities": [{"text": "x"}]}');
SELECT * FROM pg_temp.refused('deal', '{"activities": [{"type": "teleport"}]}');
SELECT * FROM pg_temp.refused('deal', '{"activities": [{"type": "write_log", "text": "x", "name": "a b"}]}');
SELECT * FROM pg_temp.refused('deal', '{"activities": [{"type": "write_log", "text": "x", "name": "log"},
	{"type": "if", "condition": "{{amount}} > 1", "then": [{"type": "write_log", "text": "y", "name": "LOG"}]}]}');

-- Process-only activities are checked like actions (control inside a
-- process is the process activity: a notice now, with text; the robot's
-- "after" is not one of its parameters; openline_message's hidden is a
-- boolean; email's charset must name an encoding PostgreSQL knows).
SELECT * FROM pg_temp.refused('deal', '{"activities": [{"type": "openline_message", "text": "hello", "hidden": "yes"}]}');
SELECT * FROM pg_temp.refused('deal', '{"activities": [{"type": "write_log", "text": "x"},
	{"type": "if", "condition": "{{amount}} > 1", "then": [], "else": [{"type": "user_notification", "text": "t"}]}]}');
SELECT * FROM pg_temp.refused('deal', '{"activities": [{"type": "email", "to": "responsible", "subject": "s", "body": "b", "charset": "ebcdic"}]}');
SELECT * FROM pg_temp.refused('deal', '{"activities": [{"type": "control", "after": "1 day"}]}');

-- The activities that pause the instance (create_task with "wait", robocall
-- with "wait_for_result", the wait action) are accepted; their parameters
-- are checked as any other's.
SELECT * FROM pg_temp.refused('deal', '{"activities": [{"type": "wait", "instructions": "call back"}]}');
SELECT * FROM pg_temp.refused('deal', '{"activities": [{"type": "wait", "for": "soon"}]}');
SELECT * FROM pg_temp.refused('deal', '{"activities": [{"type": "create_task", "title": "t", "responsible": "responsible", "wait": "yes"}]}');
SELECT * FROM pg_temp.refused('deal', '{"activities": [{"type": "if", "condition": "true", "then": [
	{"type": "create_task", "params": {"title": "t", "responsible": "responsible", "bind_current": 0}}]}]}');
SELECT * FROM pg_temp.refused('deal', '{"activities": [{"type": "robocall", "number": "+33611111111", "text": "t", "wait_for_result": "yes"}]}');

-- A robot action is checked by its descriptor, exactly as a robot: the
-- same errors, with the activity's place.
SELECT * FROM pg_temp.refused('deal', '{"activities": [{"type": "notify", "text": "hi"}]}');
SELECT * FROM pg_temp.refused('deal', '{"activities": [{"type": "add_comment", "text": "x", "colour": "red"}]}');
SELECT * FROM pg_temp.refused('deal', '{"activities": [{"type": "add_comment", "text": "{{no_such_field}}"}]}');
SELECT * FROM pg_temp.refused('deal', '{"activities": [{"type": "add_comment", "text": "=1 +"}]}');
SELECT * FROM pg_temp.refused('lead', '{"activities": [{"type": "copy_deal"}]}');
SELECT * FROM pg_temp.refused('deal', '{"activities": [{"type": "change_stage", "stage": "nowhere"}]}');
SELECT * FROM pg_temp.refused('deal', '{"activities": [{"type": "send_sms", "text": "x", "recipients": "+33611111111", "provider": "nobody"}]}');

-- if: a condition in the expression language, then/else arrays checked
-- recursively.
SELECT * FROM pg_temp.refused('deal', '{"activities": [{"type": "if", "then": []}]}');
SELECT * FROM pg_temp.refused('deal', '{"activities": [{"type": "if", "condition": "{{amount}} >", "then": []}]}');
SELECT * FROM pg_temp.refused('deal', '{"activities": [{"type": "if", "condition": "{{weight}} > 1", "then": []}]}');
SELECT * FROM pg_temp.refused('deal', '{"activities": [{"type": "if", "condition": "{{amount}} > 1"}]}');
SELECT * FROM pg_temp.refused('deal', '{"activities": [{"type": "if", "condition": 5, "then": []}]}');
SELECT * FROM pg_temp.refused('deal', '{"activities": [{"type": "if", "condition": "{{amount}} > 1", "then": {}}]}');
SELECT * FROM pg_temp.refused('deal', '{"activities": [{"type": "if", "condition": "{{amount}} > 1", "then": [], "else": {}}]}');
SELECT * FROM pg_temp.refused('deal', '{"activities": [{"type": "if", "condition": "{{amount}} > 1", "then": [], "otherwise": []}]}');
SELECT * FROM pg_temp.refused('deal', '{"activities": [{"type": "if", "condition": "{{amount}} > 1",
	"then": [{"type": "write_log", "text": "x"}, {"type": "if", "condition": "{{amount}} > 2", "then": [{"type": "add_comment"}]}]}]}');

-- delay: "for", a positive interval (in working time with "work_time":
-- days and hours), or "until" a date or a template giving one.
SELECT * FROM pg_temp.refused('deal', '{"activities": [{"type": "delay"}]}');
SELECT * FROM pg_temp.refused('deal', '{"activities": [{"type": "delay", "for": "-1 hour"}]}');
SELECT * FROM pg_temp.refused('deal', '{"activities": [{"type": "delay", "for": "soon"}]}');
SELECT * FROM pg_temp.refused('deal', '{"activities": [{"type": "delay", "for": "1 hour", "until": "tomorrow"}]}');
SELECT * FROM pg_temp.refused('deal', '{"activities": [{"type": "delay", "until": "tomorrow"}]}');
SELECT * FROM pg_temp.refused('deal', '{"activities": [{"type": "delay", "until": 5}]}');
SELECT * FROM pg_temp.refused('deal', '{"activities": [{"type": "delay", "until": "{{no_such_field}}"}]}');
SELECT * FROM pg_temp.refused('deal', '{"activities": [{"type": "delay", "until": "{{close_date}}", "work_time": true}]}');
SELECT * FROM pg_temp.refused('deal', '{"activities": [{"type": "delay", "for": "1 month", "work_time": true}]}');
SELECT * FROM pg_temp.refused('deal', '{"activities": [{"type": "delay", "for": "1 hour", "work_time": "yes"}]}');

-- set_variable: a declared variable; set_field: a field of the document
-- (it is update_item with one field); set_status_text: a template.
SELECT * FROM pg_temp.refused('deal', '{"activities": [{"type": "set_variable", "variable": "x", "value": 1}]}');
SELECT * FROM pg_temp.refused('deal', '{"variables": {"n": {"type": "int"}}, "activities": [{"type": "set_variable", "variable": "n"}]}');
SELECT * FROM pg_temp.refused('deal', '{"variables": {"n": {"type": "int"}}, "activities": [{"type": "set_variable", "variable": "n", "value": "lots"}]}');
SELECT * FROM pg_temp.refused('deal', '{"activities": [{"type": "set_field", "field": "weight", "value": 1}]}');
SELECT * FROM pg_temp.refused('deal', '{"activities": [{"type": "set_field", "value": 1}]}');
SELECT * FROM pg_temp.refused('deal', '{"activities": [{"type": "set_field", "field": "id", "value": 1}]}');
SELECT * FROM pg_temp.refused('deal', '{"activities": [{"type": "set_status_text"}]}');

-- References to the template's own names must resolve.
SELECT * FROM pg_temp.refused('deal', '{"activities": [{"type": "add_comment", "text": "{=Variable:missing}"}]}');
SELECT * FROM pg_temp.refused('deal', '{"activities": [{"type": "set_status_text", "text": "{=Constant:limit}"}]}');
SELECT * FROM pg_temp.refused('deal', '{"activities": [{"type": "if", "condition": "{=Parameter:why} = \"x\"", "then": []}]}');
SELECT * FROM pg_temp.refused('deal', '{"activities": [{"type": "add_comment", "text": "Task {=Activity:approve.task_id}"}]}');

\x off
-- The template itself needs a name and a definition.
SELECT crm.add_process_template('deal', '', '{"activities": [{"type": "write_log", "text": "x"}]}');
SELECT crm.add_process_template('deal', 'No definition', NULL);
-- Nothing was stored by any of them.
SELECT count(*) AS templates FROM crm.process_template;

-- A good template: parameters, variables, constants, a branch, a robot
-- action, a field, a status text.
SELECT crm.add_process_template('deal', 'Approval', $${
	"parameters": {"reason": {"type": "text", "required": true}},
	"variables":  {"approved": {"type": "bool", "default": false}},
	"constants":  {"threshold": 5000},
	"activities": [
		{"type": "set_status_text", "text": "Checking {{title}}: {=Parameter:reason}"},
		{"type": "if", "condition": "{{amount}} >= {=Constant:threshold}",
		 "then": [{"type": "create_task", "name": "approve", "title": "Approve {{title}}",
				   "responsible": "supervisor"},
				  {"type": "add_comment", "text": "Approval task {=Activity:approve.task_id}"}],
		 "else": [{"type": "set_variable", "variable": "approved", "value": "=true"}]},
		{"type": "set_field", "field": "title", "value": "{{title}} (approved: {=Variable:approved})"},
		{"type": "set_status_text", "text": "Done"}]}$$) AS template_id \gset
SELECT name, document_type, auto_start, active FROM crm.process_template;
-- The same name twice for a document type is refused.
SELECT crm.add_process_template('deal', 'Approval', '{"activities": [{"type": "write_log", "text": "x"}]}');

-- A small deal: no approval needed, the variable is set, the field written.
INSERT INTO crm.deal (id, title, responsible_id, amount) VALUES (1, 'Chairs', 2, 800);
SELECT crm.start_process(:template_id, 1, '{"reason": "renewal"}') IS NOT NULL AS started;
SELECT template, document_type, document_id, status, status_text, current_activity, error
  FROM crm.process_instances;
SELECT title FROM crm.deal WHERE id = 1;
SELECT count(*) AS tasks FROM crm.task;

-- A big deal: the supervisor gets a task, whose id a later activity reads.
INSERT INTO crm.deal (id, title, responsible_id, amount) VALUES (2, 'Desks', 2, 9000);
SELECT crm.start_process(:template_id, 'deal', 2, '{"reason": "new client"}') AS instance \gset
SELECT status, status_text FROM crm.process_instances WHERE id = :instance;
SELECT title, responsible_id FROM crm.task;
SELECT text = 'Approval task ' || (SELECT id FROM crm.task) AS comment_names_the_task
  FROM crm.timeline_comment WHERE entity_id = 2;
SELECT title FROM crm.deal WHERE id = 2;

-- Starting needs the required parameters, a document that exists, of the
-- template's type; nothing is stored when it fails.
SELECT crm.start_process(:template_id, 1);
SELECT crm.start_process(:template_id, 1, '{"reason": "x", "mood": "good"}');
SELECT crm.start_process(:template_id, 99, '{"reason": "x"}');
SELECT crm.start_process(:template_id, 'lead', 1, '{"reason": "x"}');
SELECT crm.start_process(4242, 1);
SELECT crm.start_process(:template_id, 1, '["renewal"]');
SELECT crm.start_process(:template_id, 1, '{"reason": {"why": "renewal"}}');
SELECT crm.update_process_template(:template_id, active => false);
SELECT crm.start_process(:template_id, 1, '{"reason": "x"}');
SELECT crm.update_process_template(:template_id, active => true);
SELECT count(*) AS instances FROM crm.process_instance;

-- Updating checks the new definition the same way; deleting removes the
-- template and its instances.
SELECT crm.update_process_template(:template_id, definition => '{"activities": [{"type": "openline_message"}]}');
SELECT crm.update_process_template(:template_id, name => 'Approval v2');
SELECT crm.update_process_template(4242, name => 'Nobody');
SELECT crm.delete_process_template(4242);
SELECT name FROM crm.process_template;
SELECT crm.delete_process_template(:template_id);
SELECT count(*) AS templates, (SELECT count(*) FROM crm.process_instance) AS instances FROM crm.process_template;

-- {=Parameter:x} can be tried from psql like the other references.
SELECT crm.evaluate('Why: {=Parameter:reason}', context => '{"parameters": {"reason": "renewal"}}') AS rendered;
