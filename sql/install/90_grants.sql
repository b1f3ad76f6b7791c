
-- ---------------------------------------------------------------------------
-- Grants.  crm_user reads structure and works with items and the workspace;
-- crm_admin also defines structure and automation.  Provider secrets are
-- granted to nobody: only the worker and SECURITY DEFINER functions read them.
-- ---------------------------------------------------------------------------
GRANT USAGE ON SCHEMA crm TO crm_user;

REVOKE EXECUTE ON ALL FUNCTIONS IN SCHEMA crm FROM PUBLIC;
GRANT EXECUTE ON FUNCTION crm.stage(text, text, bigint), crm.stage(text, text, text),
	crm.default_pipeline(text), crm._entity_type(text), crm._pipeline(bigint), crm.phone_key(text),
	crm.set_user(bigint)
	TO crm_user;
GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA crm TO crm_admin;

GRANT SELECT ON crm.entity_type, crm.pipeline, crm.stage, crm.user_field,
	crm.user, crm.department, crm.robot, crm.trigger, crm.robot_log,
	crm.work_schedule, crm.holiday, crm.process_template, crm.process_instance, crm.document_template,
	crm.process_log
	TO crm_user;

GRANT SELECT, INSERT, UPDATE, DELETE ON
	crm.lead, crm.deal, crm.contact, crm.company, crm.quote, crm.invoice, crm.item,
	crm.task, crm.activity, crm.timeline_comment, crm.history, crm.feed_post,
	crm.feed_post_recipient, crm.notification, crm.chat, crm.chat_member,
	crm.chat_message, crm.calendar_event, crm.absence, crm.exception_list,
	crm.resource_booking, crm.document, crm.drive_file
	TO crm_user;

GRANT SELECT, INSERT, UPDATE, DELETE ON
	crm.entity_type, crm.pipeline, crm.stage, crm.user_field, crm.user, crm.department,
	crm.robot, crm.robot_turn, crm.trigger, crm.work_schedule, crm.holiday, crm.automation_log, crm.robot_log_entry, crm.job, crm.outbox, crm.provider,
	crm.process_template, crm.process_instance, crm.document_template, crm.process_log
	TO crm_admin;

GRANT USAGE ON ALL SEQUENCES IN SCHEMA crm TO crm_user;

REVOKE ALL ON crm.provider_secret FROM PUBLIC;

-- crm_admin watches and steers delivery: the outbox views, the endpoints
-- disabled by a 410 Gone (delete one to send to it again).
GRANT SELECT ON crm.outbox_queue, crm.outbox_stats, crm.outbox_failures, crm.outbox_dead TO crm_admin;
-- the messages not yet done by due time, kept by crm.outbox's triggers
GRANT SELECT ON crm.outbox_due TO crm_admin;
REVOKE EXECUTE ON FUNCTION crm._outbox_due_forget(bigint, regclass) FROM crm_admin;
GRANT SELECT, DELETE ON crm.disabled_endpoint TO crm_admin;

-- Robots act as the extension's owner; users read the catalogue and an item's history.
GRANT SELECT ON crm.robot_actions TO crm_user;
GRANT EXECUTE ON FUNCTION crm.item_automation(text, bigint), crm._robot_actions() TO crm_user;
GRANT EXECUTE ON FUNCTION crm.evaluate(text, text, bigint, jsonb),
	crm.test_condition(jsonb, text, bigint, jsonb), crm.check_expression(text, text) TO crm_user;
