/*-------------------------------------------------------------------------
 *
 * actions_catalog.c
 *	  The catalogue of actions: one descriptor per action (SPEC §3).
 *
 * Robots and business-process activities share these descriptors.  The
 * catalogue is exposed to administrators as the view crm.robot_actions.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "fmgr.h"
#include "funcapi.h"
#include "utils/builtins.h"
#include "utils/json.h"
#include "utils/jsonb.h"

#include "actions/actions.h"

#define END_PARAMS {NULL, 0, false, NULL, 0, NULL}

static const CrmParamDesc p_notify[] = {
	{"text", CRM_P_TEXT, true, NULL, 0, "message text (template)"},
	{"sender", CRM_P_USERS, false, NULL, 0, "sending user (default: none, a system notification)"},
	{"recipients", CRM_P_USERS, true, NULL, 0, "users to notify"},
	END_PARAMS
};

static const CrmParamDesc p_add_comment[] = {
	{"text", CRM_P_TEXT, true, NULL, 0, "comment text (template)"},
	{"author", CRM_P_USERS, false, NULL, 0, "author (default: the responsible user)"},
	END_PARAMS
};

static const CrmParamDesc p_write_log[] = {
	{"text", CRM_P_TEXT, true, NULL, 0, "history entry of type information"},
	END_PARAMS
};

static const CrmParamDesc p_create_task[] = {
	{"title", CRM_P_TEXT, true, NULL, 0, "task title"},
	{"description", CRM_P_TEXT, false, NULL, 0, "task description"},
	{"responsible", CRM_P_USERS, true, NULL, 0, "responsible user (first of the list)"},
	{"deadline", CRM_P_WHEN, false, NULL, 0, "today, tomorrow, in_2_days, in_3_days, an interval from now or a timestamp"},
	{"bindings", CRM_P_JSON, false, NULL, 0, "bound CRM elements: C_12, D_5, L_7, CO_3 (the current item is always bound)"},
	{"files", CRM_P_FILES, false, NULL, 0, "drive file ids or a file field, e.g. \"{{UF_FILES}}\""},
	{"priority", CRM_P_ENUM, false, "low|normal|high", 0, "task priority"},
	{"accomplices", CRM_P_USERS, false, NULL, 0, "participants"},
	{"auditors", CRM_P_USERS, false, NULL, 0, "observers"},
	END_PARAMS
};

static const CrmParamDesc p_create_activity[] = {
	{"subject", CRM_P_TEXT, true, NULL, 0, "activity subject"},
	{"description", CRM_P_TEXT, false, NULL, 0, "activity description"},
	{"type", CRM_P_ENUM, false, "todo|call|meeting|email", 0, "activity type (default todo)"},
	{"important", CRM_P_BOOL, false, NULL, 0, "marked important"},
	{"auto_complete", CRM_P_BOOL, false, NULL, 0, "completed when the item changes stage"},
	{"responsible", CRM_P_USERS, false, NULL, 0, "responsible user (default: the item's)"},
	{"deadline", CRM_P_WHEN, false, NULL, 0, "deadline"},
	END_PARAMS
};

static const CrmParamDesc p_update_item[] = {
	{"fields", CRM_P_FIELDS, true, NULL, 0, "object of field -> value (templates and formulas)"},
	END_PARAMS
};

static const CrmParamDesc p_change_stage[] = {
	{"stage", CRM_P_STAGE, true, NULL, 0, "target stage: an id or a code of the item's pipeline"},
	END_PARAMS
};

static const CrmParamDesc p_change_responsible[] = {
	{"users", CRM_P_USERS, true, NULL, 0, "candidate users"},
	{"mode", CRM_P_ENUM, false, "first|rotate|random", 0, "how to choose (default first)"},
	{"skip_absent", CRM_P_BOOL, false, NULL, 0, "skip users who are absent or inactive"},
	END_PARAMS
};

static const CrmParamDesc p_generate_code[] = {
	{"format", CRM_P_ENUM, true, "digits|letters|mixed", 0, "characters of the code"},
	{"length", CRM_P_INT, true, NULL, 0, "length, 1 to 64"},
	END_PARAMS
};

static const CrmParamDesc p_none[] = {
	END_PARAMS
};

static const CrmParamDesc p_webhook[] = {
	{"url", CRM_P_TEXT, true, NULL, 2048, "http(s) URL (template)"},
	{"method", CRM_P_ENUM, false, "POST|GET|PUT|PATCH|DELETE", 0, "HTTP method (default POST)"},
	{"headers", CRM_P_JSON, false, NULL, 0, "object of header -> value (templates)"},
	{"body", CRM_P_JSON, false, NULL, 0, "JSON body (string leaves are templates); default: the item and the event"},
	{"provider", CRM_P_TEXT, false, NULL, 0, "name of a webhook provider (defaults, signing secret)"},
	END_PARAMS
};

static const CrmParamDesc p_send_email[] = {
	{"from", CRM_P_ADDRESSES, false, NULL, 0, "sender user or address"},
	{"to", CRM_P_ADDRESSES, true, NULL, 0, "users or e-mail addresses"},
	{"subject", CRM_P_TEXT, true, NULL, 998, "subject (template)"},
	{"body", CRM_P_TEXT, true, NULL, 0, "body (template)"},
	{"html", CRM_P_BOOL, false, NULL, 0, "the body is HTML"},
	{"attachments", CRM_P_FILES, false, NULL, 0, "drive file ids or a file field, e.g. \"{{UF_FILES}}\""},
	{"separator", CRM_P_TEXT, false, NULL, 8, "characters separating several addresses in one value (default \",\")"},
	{"provider", CRM_P_TEXT, false, NULL, 0, "name of an e-mail provider (default: the channel's default)"},
	END_PARAMS
};

static const CrmParamDesc p_send_sms[] = {
	{"text", CRM_P_TEXT, true, NULL, 200, "message, at most 200 characters once rendered"},
	{"recipients", CRM_P_ADDRESSES, true, NULL, 0, "users or phone numbers"},
	{"provider", CRM_P_TEXT, false, NULL, 0, "name of an SMS provider"},
	END_PARAMS
};

static const CrmParamDesc p_robocall[] = {
	{"number", CRM_P_TEXT, true, NULL, 64, "phone number to call (template)"},
	{"text", CRM_P_TEXT, true, NULL, 0, "text read to the callee"},
	{"provider", CRM_P_TEXT, false, NULL, 0, "name of a robocall provider"},
	{"wait_for_result", CRM_P_BOOL, false, NULL, 0, "later robots wait for the call's result"},
	END_PARAMS
};

static const CrmParamDesc p_control[] = {
	{"after", CRM_P_INTERVAL, true, NULL, 0, "how long the item may stay in the stage"},
	{"text", CRM_P_TEXT, false, NULL, 0, "notification text"},
	{"recipients", CRM_P_USERS, false, NULL, 0, "who is notified (default: supervisor)"},
	END_PARAMS
};

static const CrmParamDesc p_wait[] = {
	{"for", CRM_P_INTERVAL, false, NULL, 0, "how long to wait"},
	{"until_client_activity", CRM_P_BOOL, false, NULL, 0, "end the wait when the client calls or writes"},
	{"instructions", CRM_P_TEXT, false, NULL, 0, "instructions shown to the responsible user"},
	END_PARAMS
};

static const CrmParamDesc p_feed_post[] = {
	{"title", CRM_P_TEXT, true, NULL, 0, "post title"},
	{"text", CRM_P_TEXT, true, NULL, 0, "post text"},
	{"sender", CRM_P_USERS, false, NULL, 0, "author"},
	{"recipients", CRM_P_USERS, false, NULL, 0, "recipients (default: everyone)"},
	{"files", CRM_P_FILES, false, NULL, 0, "drive file ids or a file field, e.g. \"{{UF_FILES}}\""},
	{"tags", CRM_P_JSON, false, NULL, 0, "array of tags"},
	END_PARAMS
};

static const CrmParamDesc p_create_group_chat[] = {
	{"name", CRM_P_TEXT, true, NULL, 0, "chat name"},
	{"members", CRM_P_USERS, true, NULL, 0, "at least 2 users; the first owns the chat"},
	END_PARAMS
};

static const CrmParamDesc p_add_chat_members[] = {
	{"chat", CRM_P_INT, true, NULL, 0, "a chat made by create_group_chat, e.g. {=Robot:NAME.chat_id}"},
	{"members", CRM_P_USERS, true, NULL, 0, "users to add"},
	{"show_history", CRM_P_BOOL, false, NULL, 0, "new members see earlier messages (default true)"},
	END_PARAMS
};

static const CrmParamDesc p_chat_message[] = {
	{"chat", CRM_P_INT, true, NULL, 0, "a private group chat: one made by create_group_chat or any chat of type group"},
	{"sender", CRM_P_USERS, false, NULL, 0, "sender"},
	{"type", CRM_P_ENUM, false, "announcement|notification|normal", 0, "message type"},
	{"text", CRM_P_TEXT, true, NULL, 0, "message text"},
	END_PARAMS
};

static const CrmParamDesc p_direct_message[] = {
	{"sender", CRM_P_USERS, false, NULL, 0, "sender"},
	{"recipients", CRM_P_USERS, true, NULL, 0, "users"},
	{"type", CRM_P_ENUM, false, "announcement|notification|normal", 0, "message type"},
	{"text", CRM_P_TEXT, true, NULL, 0, "message text"},
	END_PARAMS
};

static const CrmParamDesc p_schedule[] = {
	{"when", CRM_P_WHEN, true, NULL, 0, "today, tomorrow, in_2_days, in_3_days or a timestamp"},
	{"subject", CRM_P_TEXT, true, NULL, 0, "subject"},
	{"description", CRM_P_TEXT, false, NULL, 0, "description"},
	{"location", CRM_P_TEXT, false, NULL, 0, "location, e.g. {{contact.address}}"},
	END_PARAMS
};

static const CrmParamDesc p_update_company[] = {
	{"fields", CRM_P_FIELDS, true, "company", 0, "fields of the linked company"},
	END_PARAMS
};

static const CrmParamDesc p_update_contact[] = {
	{"fields", CRM_P_FIELDS, true, "contact", 0, "fields of the primary contact"},
	END_PARAMS
};

static const CrmParamDesc p_copy_deal[] = {
	{"pipeline", CRM_P_TEXT, false, NULL, 0, "target pipeline id or name (default: the default pipeline)"},
	{"responsible", CRM_P_USERS, false, NULL, 0, "responsible of the copy (default: the same)"},
	END_PARAMS
};

static const CrmParamDesc p_change_pipeline[] = {
	{"pipeline", CRM_P_TEXT, true, NULL, 0, "target pipeline id or name"},
	{"stage", CRM_P_TEXT, false, NULL, 0, "stage code in it (default: its first stage)"},
	END_PARAMS
};

static const CrmParamDesc p_create_document[] = {
	{"template", CRM_P_TEXT, true, NULL, 0, "document template id or name"},
	END_PARAMS
};

static const CrmParamDesc p_convert[] = {
	{"to", CRM_P_ENUM, true, "deal|contact|company|quote|invoice", 0, "from a lead: deal, contact, company; from a deal: quote, invoice"},
	{"pipeline", CRM_P_TEXT, false, NULL, 0, "pipeline of the new deal"},
	END_PARAMS
};

static const CrmParamDesc p_repeat_lead[] = {
	{"responsible", CRM_P_USERS, false, NULL, 0, "responsible of the new lead (default: the deal's)"},
	END_PARAMS
};

static const CrmParamDesc p_booking[] = {
	{"service", CRM_P_TEXT, true, NULL, 0, "service name"},
	{"start", CRM_P_WHEN, true, NULL, 0, "start time"},
	{"duration", CRM_P_INTERVAL, true, NULL, 0, "duration, e.g. \"1 hour\""},
	{"employees", CRM_P_USERS, true, NULL, 0, "users whose time is booked"},
	{"field", CRM_P_FIELD, false, "booking", 0, "the booking field of the item"},
	END_PARAMS
};

static const CrmParamDesc p_cancel_reservation[] = {
	{"field", CRM_P_FIELD, true, "booking", 0, "the booking field whose active bookings are cancelled"},
	END_PARAMS
};

static const CrmActionDesc actions[] = {
	{"add_chat_members", "chat", "adds users to a chat made by create_group_chat", CRM_ACT_ANY_DOCUMENT | CRM_ACT_SHARED, NULL,
	crm_exec_add_chat_members, p_add_chat_members},
	{"add_comment", "communication", "adds a comment to the item's timeline", 0, NULL,
	crm_exec_add_comment, p_add_comment},
	{"add_to_exceptions", "communication", "adds the client's phones and e-mails to the exceptions list",
		CRM_ACT_SHARED, "added", crm_exec_add_to_exceptions, p_none},
	{"cancel_reservation", "scheduling", "cancels the item's active bookings in a booking field", 0, "cancelled",
	crm_exec_cancel_reservation, p_cancel_reservation},
	{"change_responsible", "items", "assigns the item to one of the users", CRM_ACT_SHARED, NULL,
	crm_exec_change_responsible, p_change_responsible},
	{"change_stage", "items", "moves the item to another stage of its pipeline",
		CRM_ACT_STOPS_CHAIN, NULL, crm_exec_change_stage, p_change_stage},
	{"change_status", "items", "moves a lead to another status (a stage)",
		CRM_ACT_STOPS_CHAIN, NULL, crm_exec_change_stage, p_change_stage},
	{"change_pipeline", "items", "moves the item to another pipeline; stops its robots and processes",
		CRM_ACT_STOPS_CHAIN, NULL, crm_exec_change_pipeline, p_change_pipeline},
	{"chat_message", "chat", "posts a message in a private group chat", CRM_ACT_ANY_DOCUMENT | CRM_ACT_SHARED, NULL,
	crm_exec_chat_message, p_chat_message},
	{"control", "scheduling", "notifies if the item is still in the stage after a time",
		CRM_ACT_SCHEDULES, NULL, crm_exec_control, p_control},
	{"convert", "items", "converts a lead (deal, contact, company) or a deal (quote, invoice)",
		CRM_ACT_SHARED, "deal_id,contact_id,company_id,quote_id,invoice_id", crm_exec_convert, p_convert},
	{"copy_deal", "items", "copies the deal, possibly into another pipeline", CRM_ACT_DEALS_ONLY | CRM_ACT_SHARED,
		"deal_id", crm_exec_copy_deal, p_copy_deal},
	{"create_activity", "tasks", "creates an activity for a user", 0, "activity_id",
	crm_exec_create_activity, p_create_activity},
	{"create_contact_from_lead", "items", "creates and links a contact; the lead is not converted",
		CRM_ACT_LEADS_ONLY | CRM_ACT_SHARED, "contact_id", crm_exec_create_contact_from_lead, p_none},
	{"create_document", "items", "creates a document from a template", 0, "document_id",
	crm_exec_create_document, p_create_document},
	{"create_group_chat", "chat", "creates a group chat", CRM_ACT_ANY_DOCUMENT | CRM_ACT_SHARED, "chat_id",
	crm_exec_create_group_chat, p_create_group_chat},
	{"create_repeat_lead", "items", "creates a repeat lead for the deal's client", CRM_ACT_DEALS_ONLY | CRM_ACT_SHARED,
		"lead_id", crm_exec_create_repeat_lead, p_repeat_lead},
	{"create_task", "tasks", "creates a task bound to the item", CRM_ACT_ANY_DOCUMENT, "task_id",
	crm_exec_create_task, p_create_task},
	{"delete_item", "items", "deletes the item; later robots do not run",
		CRM_ACT_STOPS_CHAIN, NULL, crm_exec_delete_item, p_none},
	{"direct_message", "chat", "sends a private message to users", CRM_ACT_ANY_DOCUMENT | CRM_ACT_SHARED, NULL,
	crm_exec_direct_message, p_direct_message},
	{"feed_post", "communication", "publishes a feed post", CRM_ACT_ANY_DOCUMENT | CRM_ACT_SHARED, "post_id",
	crm_exec_feed_post, p_feed_post},
	{"generate_code", "items", "generates a random code", CRM_ACT_ANY_DOCUMENT, "code",
	crm_exec_generate_code, p_generate_code},
	{"notify", "communication", "sends a notification to users", CRM_ACT_ANY_DOCUMENT, NULL,
	crm_exec_notify, p_notify},
	{"reserve_resource", "scheduling", "books employees' time for a service", 0, "booked",
	crm_exec_reserve_resource, p_booking},
	{"robocall", "outbound", "places an automated call through a provider",
		CRM_ACT_OUTBOUND | CRM_ACT_ANY_DOCUMENT, "message_id", crm_exec_outbound, p_robocall},
	{"schedule_call", "tasks", "schedules a call: an activity and a calendar event", 0, "activity_id",
	crm_exec_schedule_call, p_schedule},
	{"schedule_meeting", "tasks", "schedules a meeting: an activity and a calendar event", 0, "activity_id",
	crm_exec_schedule_meeting, p_schedule},
	{"send_email", "outbound", "sends an e-mail", CRM_ACT_OUTBOUND | CRM_ACT_ANY_DOCUMENT, "message_id",
	crm_exec_outbound, p_send_email},
	{"send_sms", "outbound", "sends an SMS through a provider", CRM_ACT_OUTBOUND | CRM_ACT_ANY_DOCUMENT, "message_id",
	crm_exec_outbound, p_send_sms},
	{"update_company", "items", "sets fields of the linked company", CRM_ACT_SHARED, NULL,
	crm_exec_update_related, p_update_company},
	{"update_contact", "items", "sets fields of the primary contact", CRM_ACT_SHARED, NULL,
	crm_exec_update_related, p_update_contact},
	{"update_item", "items", "sets fields of the item", 0, NULL,
	crm_exec_update_item, p_update_item},
	{"wait", "scheduling", "pauses the robots after it", CRM_ACT_SCHEDULES | CRM_ACT_ANY_DOCUMENT, NULL,
	crm_exec_wait, p_wait},
	{"webhook", "outbound", "sends an HTTP request", CRM_ACT_OUTBOUND | CRM_ACT_ANY_DOCUMENT, "message_id",
	crm_exec_outbound, p_webhook},
	{"write_log", "communication", "adds an information entry to the item's history", 0, NULL,
	crm_exec_write_log, p_write_log},
};

#define N_ACTIONS lengthof(actions)

/* ---------- activities of business processes only (seed 000) ---------- */

static const CrmParamDesc p_process_control[] = {
	{"text", CRM_P_TEXT, true, NULL, 0, "notification text (template)"},
	{"to_supervisor", CRM_P_BOOL, false, NULL, 0, "notify the supervisor of the document's responsible (default true)"},
	{"recipients", CRM_P_USERS, false, NULL, 0, "more users to notify"},
	END_PARAMS
};

static const CrmParamDesc p_user_notification[] = {
	{"to", CRM_P_USERS, true, NULL, 0, "users to notify"},
	{"text", CRM_P_TEXT, true, NULL, 0, "notification text (BB-code kept as written)"},
	{"email_text", CRM_P_TEXT, false, NULL, 0, "sent by e-mail instead when the user is offline"},
	{"kind", CRM_P_ENUM, false, "personal|system", 0, "personal (from sender) or system (default: personal when sender is given)"},
	{"sender", CRM_P_USERS, false, NULL, 0, "sending user, for a personal notification"},
	END_PARAMS
};

static const CrmParamDesc p_social_message[] = {
	{"sender", CRM_P_USERS, false, NULL, 0, "sending user (default: the document's responsible)"},
	{"to", CRM_P_USERS, true, NULL, 0, "recipients; by e-mail when offline"},
	{"text", CRM_P_TEXT, true, NULL, 0, "message text"},
	END_PARAMS
};

static const CrmParamDesc p_feed_message[] = {
	{"sender", CRM_P_USERS, false, NULL, 0, "author (the first listed user)"},
	{"recipients", CRM_P_USERS, false, NULL, 0, "recipients (default: everyone)"},
	{"title", CRM_P_TEXT, true, NULL, 0, "post title"},
	{"text", CRM_P_TEXT, true, NULL, 0, "post text (BB-code kept as written)"},
	END_PARAMS
};

static const CrmParamDesc p_calendar_event[] = {
	{"user", CRM_P_USERS, false, NULL, 0, "whose calendar, or who organizes a group's event (default: the responsible)"},
	{"calendar_type", CRM_P_ENUM, false, "user|group", 0, "a user's calendar (default) or a group's"},
	{"owner_id", CRM_P_INT, false, NULL, 0, "the group, for a group calendar"},
	{"section_id", CRM_P_TEXT, false, NULL, 0, "calendar section"},
	{"name", CRM_P_TEXT, true, NULL, 0, "event name"},
	{"description", CRM_P_TEXT, false, NULL, 0, "event description"},
	{"from", CRM_P_WHEN, true, NULL, 0, "start: a timestamp, an interval from now, today, tomorrow..."},
	{"to", CRM_P_WHEN, true, NULL, 0, "end"},
	{"location", CRM_P_TEXT, false, NULL, 0, "where"},
	END_PARAMS
};

static const CrmParamDesc p_absence[] = {
	{"user", CRM_P_USERS, false, NULL, 0, "who is absent (default: the responsible)"},
	{"name", CRM_P_TEXT, true, NULL, 0, "what the absence chart shows"},
	{"description", CRM_P_TEXT, false, NULL, 0, "details"},
	{"from", CRM_P_WHEN, true, NULL, 0, "start"},
	{"to", CRM_P_WHEN, true, NULL, 0, "end"},
	{"absence_type", CRM_P_ENUM, false, "vacation|sick|business_trip|unpaid|other", 0, "kind of absence (default other)"},
	{"location", CRM_P_TEXT, false, NULL, 0, "where, e.g. for a business trip"},
	END_PARAMS
};

static const CrmParamDesc p_email[] = {
	{"from", CRM_P_ADDRESSES, false, NULL, 0, "sender user or address"},
	{"to", CRM_P_ADDRESSES, true, NULL, 0, "users or e-mail addresses"},
	{"subject", CRM_P_TEXT, true, NULL, 998, "subject (template)"},
	{"body", CRM_P_TEXT, true, NULL, 0, "body (template)"},
	{"format", CRM_P_ENUM, false, "text|html", 0, "text (default) or html"},
	{"charset", CRM_P_TEXT, false, NULL, 64, "charset of subject and body, converted when sent: utf-8 (default), iso-8859-1, windows-1252, koi8-r or any encoding PostgreSQL knows; a character it lacks is sent as ?"},
	{"via", CRM_P_ENUM, false, "direct|mail_system", 0, "both go through the outbox; mail_system uses the provider named by provider"},
	{"provider", CRM_P_TEXT, false, NULL, 0, "name of an e-mail provider (default: the channel's default)"},
	{"attachments", CRM_P_FILES, false, NULL, 0, "drive file ids, a file field or a file variable"},
	{"separator", CRM_P_TEXT, false, NULL, 8, "characters separating several addresses in one value (default \",\")"},
	END_PARAMS
};

static const CrmParamDesc p_openline_message[] = {
	{"text", CRM_P_TEXT, true, NULL, 20000, "message to the client (template), at most 20,000 characters once rendered"},
	{"hidden", CRM_P_BOOL, false, NULL, 0, "only recorded on the item, not sent to the client (default false)"},
	{"attachment_type", CRM_P_ENUM, false, "document|drive", 0, "what the ids of attachments are: generated documents or drive files (default drive)"},
	{"attachments", CRM_P_FILES, false, NULL, 0, "ids of documents or drive files, a file field or a file variable"},
	{"provider", CRM_P_TEXT, false, NULL, 0, "name of an openline provider (default: the channel's default)"},
	END_PARAMS
};

static const CrmActionDesc process_actions[] = {
	{"absence", "process", "adds an absence to the absence chart", CRM_ACT_PROCESS_ONLY | CRM_ACT_ANY_DOCUMENT, "absence_id",
	crm_exec_absence, p_absence},
	{"calendar_event", "process", "adds an event to a user's or a group's calendar", CRM_ACT_PROCESS_ONLY | CRM_ACT_ANY_DOCUMENT,
		"event_id", crm_exec_calendar_event, p_calendar_event},
	{"control", "process", "notifies now the supervisor of the document's responsible",
		CRM_ACT_PROCESS_ONLY | CRM_ACT_DEALS_LEADS, NULL, crm_exec_process_control, p_process_control},
	{"email", "process", "sends an e-mail through the outbox", CRM_ACT_PROCESS_ONLY | CRM_ACT_OUTBOUND | CRM_ACT_ANY_DOCUMENT,
		"message_id", crm_exec_outbound, p_email},
	{"feed_message", "process", "publishes a feed post", CRM_ACT_PROCESS_ONLY | CRM_ACT_ANY_DOCUMENT, "post_id",
	crm_exec_feed_post, p_feed_message},
	{"openline_message", "process", "sends a message to the client's open channel, recorded as an openline activity",
		CRM_ACT_PROCESS_ONLY | CRM_ACT_OUTBOUND, "activity_id,message_id", crm_exec_openline_message,
	p_openline_message},
	{"social_message", "process", "sends a personal message, by e-mail to recipients offline",
		CRM_ACT_PROCESS_ONLY | CRM_ACT_ANY_DOCUMENT, NULL, crm_exec_social_message, p_social_message},
	{"user_notification", "process", "notifies users, by e-mail when offline if email_text is given",
		CRM_ACT_PROCESS_ONLY | CRM_ACT_ANY_DOCUMENT, NULL, crm_exec_user_notification, p_user_notification},
};

const CrmActionDesc *
crm_process_action_lookup(const char *name)
{
	int			i;

	if (name == NULL)
		return NULL;
	for (i = 0; i < lengthof(process_actions); i++)
		if (strcmp(process_actions[i].name, name) == 0)
			return &process_actions[i];
	return NULL;
}

const CrmActionDesc *const *
crm_process_action_catalogue(int *n)
{
	static const CrmActionDesc *ptrs[lengthof(process_actions)];
	int			i;

	for (i = 0; i < lengthof(process_actions); i++)
		ptrs[i] = &process_actions[i];
	*n = lengthof(process_actions);
	return ptrs;
}

static const CrmActionDesc *const *
catalogue_pointers(void)
{
	static const CrmActionDesc *ptrs[N_ACTIONS];
	static bool done = false;
	int			i;

	if (!done)
	{
		for (i = 0; i < N_ACTIONS; i++)
			ptrs[i] = &actions[i];
		done = true;
	}
	return ptrs;
}

const CrmActionDesc *const *
crm_action_catalogue(int *n)
{
	*n = N_ACTIONS;
	return catalogue_pointers();
}

const CrmActionDesc *
crm_action_lookup(const char *name)
{
	int			i;

	if (name == NULL)
		return NULL;
	for (i = 0; i < N_ACTIONS; i++)
	{
		if (strcmp(actions[i].name, name) == 0)
			return &actions[i];
	}
	return NULL;
}

static const char *
param_type_name(CrmParamType t)
{
	switch (t)
	{
		case CRM_P_TEXT:
			return "text";
		case CRM_P_USERS:
			return "users";
		case CRM_P_BOOL:
			return "boolean";
		case CRM_P_INT:
			return "integer";
		case CRM_P_INTERVAL:
			return "interval";
		case CRM_P_WHEN:
			return "when";
		case CRM_P_ENUM:
			return "enum";
		case CRM_P_FIELDS:
			return "fields";
		case CRM_P_JSON:
			return "json";
		case CRM_P_ADDRESSES:
			return "addresses";
		case CRM_P_STAGE:
			return "stage";
		case CRM_P_PIPELINE:
			return "pipeline";
		case CRM_P_FILES:
			return "files";
		case CRM_P_FIELD:
			return "field";
	}
	return "unknown";
}

/* An action's parameters as a jsonb array of {name, type, required, ...}. */
static Datum
params_jsonb(const CrmActionDesc *a)
{
	const CrmParamDesc *p;
	StringInfoData buf;
	bool		first = true;

	initStringInfo(&buf);
	appendStringInfoChar(&buf, '[');
	for (p = a->params; p->name != NULL; p++)
	{
		if (!first)
			appendStringInfoString(&buf, ", ");
		first = false;
		appendStringInfoString(&buf, "{\"name\": ");
		escape_json(&buf, p->name);
		appendStringInfoString(&buf, ", \"type\": ");
		escape_json(&buf, param_type_name(p->type));
		appendStringInfo(&buf, ", \"required\": %s", p->required ? "true" : "false");
		if (p->enum_values)
		{
			appendStringInfoString(&buf, ", \"values\": ");
			escape_json(&buf, p->enum_values);
		}
		if (p->max_length > 0)
			appendStringInfo(&buf, ", \"max_length\": %d", p->max_length);
		appendStringInfoString(&buf, ", \"description\": ");
		escape_json(&buf, p->description ? p->description : "");
		appendStringInfoChar(&buf, '}');
	}
	appendStringInfoChar(&buf, ']');
	return DirectFunctionCall1(jsonb_in, CStringGetDatum(buf.data));
}

/*
 * Where an activity works: "all" (CRM items, feed posts and drive files),
 * "CRM items" (every entity type), or the entity types it is limited to.
 */
static const char *
document_types(const CrmActionDesc *a)
{
	if (a->flags & CRM_ACT_DEALS_ONLY)
		return "deal";
	if (a->flags & CRM_ACT_LEADS_ONLY)
		return "lead";
	if (a->flags & CRM_ACT_DEALS_LEADS)
		return "deal, lead";
	if (a->flags & CRM_ACT_ANY_DOCUMENT)
		return "all";
	return "CRM items";
}

PG_FUNCTION_INFO_V1(crm_robot_actions);

/*
 * crm._robot_actions(): one row per action with its parameters as jsonb,
 * behind the view crm.robot_actions.
 */
Datum
crm_robot_actions(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	int			i;

	InitMaterializedSRF(fcinfo, 0);

	for (i = 0; i < N_ACTIONS; i++)
	{
		const CrmActionDesc *a = &actions[i];
		Datum		values[6];
		bool		nulls[6] = {false, false, false, false, false, false};

		values[0] = CStringGetTextDatum(a->name);
		values[1] = CStringGetTextDatum(a->family);
		values[2] = CStringGetTextDatum(a->description);
		values[3] = BoolGetDatum((a->flags & CRM_ACT_OUTBOUND) != 0);
		values[4] = params_jsonb(a);
		if (a->outputs)
			values[5] = CStringGetTextDatum(a->outputs);
		else
			nulls[5] = true;
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
	return (Datum) 0;
}

PG_FUNCTION_INFO_V1(crm_activity_actions);

/*
 * crm._activity_actions(): the actions and the process-only activities,
 * each with where it runs, behind the view crm.activity_types (which adds
 * the flow activities: if, delay, set_variable, set_field, set_status_text).
 */
Datum
crm_activity_actions(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	int			i;

	InitMaterializedSRF(fcinfo, 0);

	for (i = 0; i < N_ACTIONS + lengthof(process_actions); i++)
	{
		const CrmActionDesc *a = i < N_ACTIONS ? &actions[i] : &process_actions[i - N_ACTIONS];
		bool		process_only = (a->flags & CRM_ACT_PROCESS_ONLY) != 0;
		const char *note = NULL;
		bool		in_processes = true;
		Datum		values[10];
		bool		nulls[10] = {false, false, false, false, false, false, false, false, false, false};

		if (!process_only && strcmp(a->name, "control") == 0)
		{
			in_processes = false;
			note = "inside a process, control is the process activity (notifies now); wait with a delay activity first";
		}
		else if (!process_only && strcmp(a->name, "wait") == 0)
			note = "in processes, pauses the instance until the time is over or the client is active";
		else if (strcmp(a->name, "create_task") == 0)
			note = "in processes, \"wait\": true pauses the instance until the task is completed (outputs task_id, status); \"bind_current\": false leaves the document out of its bindings";
		else if (strcmp(a->name, "robocall") == 0)
			note = "in processes, \"wait_for_result\" pauses the instance until the call is sent or given up (outputs message_id, status)";
		else if (strcmp(a->name, "change_responsible") == 0)
			note = "in processes, mode \"rotate\" is not supported (turns are counted per robot)";

		values[0] = CStringGetTextDatum(a->name);
		values[1] = CStringGetTextDatum(process_only ? "process_only" : "action");
		values[2] = CStringGetTextDatum(a->family);
		values[3] = CStringGetTextDatum(a->description);
		values[4] = params_jsonb(a);
		if (a->outputs)
			values[5] = CStringGetTextDatum(a->outputs);
		else
			nulls[5] = true;
		values[6] = CStringGetTextDatum(document_types(a));
		values[7] = BoolGetDatum(!process_only);
		values[8] = BoolGetDatum(in_processes);
		if (note)
			values[9] = CStringGetTextDatum(note);
		else
			nulls[9] = true;
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
	return (Datum) 0;
}
