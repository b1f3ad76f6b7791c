/*-------------------------------------------------------------------------
 *
 * actions_chat.c
 *	  Workspace messaging actions: feed_post, create_group_chat,
 *	  add_chat_members, chat_message, direct_message, add_to_exceptions,
 *	  schedule_meeting, schedule_call.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "utils/array.h"
#include "utils/builtins.h"

#include "actions/actions.h"
#include "core/spi_util.h"

static int64
first_or_zero(CrmActionCall *call, const char *param)
{
	int64	   *ids;

	return crm_param_users(call, param, &ids) > 0 ? ids[0] : 0;
}

/* A text[] of the string elements of a rendered JSON parameter. */
static Datum
text_array(Jsonb *j)
{
	Datum	   *elems = palloc(sizeof(Datum) * 64);
	int			n = 0;

	if (j)
	{
		JsonbIterator *it = JsonbIteratorInit(&j->root);
		JsonbValue	v;
		JsonbIteratorToken tok;

		while ((tok = JsonbIteratorNext(&it, &v, true)) != WJB_DONE && n < 64)
			if ((tok == WJB_ELEM || tok == WJB_VALUE) && v.type == jbvString && v.val.string.len > 0)
				elems[n++] = PointerGetDatum(cstring_to_text_with_len(v.val.string.val, v.val.string.len));
	}
	return PointerGetDatum(construct_array(elems, n, TEXTOID, -1, false, TYPALIGN_INT));
}

void
crm_exec_feed_post(CrmActionCall *call)
{
	static SPIPlanPtr plan = NULL;
	Oid			types[10] = {INT8OID, TEXTOID, TEXTOID, TEXTOID, INT8OID, INT8OID,
	INT8ARRAYOID, TEXTARRAYOID, INT8ARRAYOID, INT8OID};
	Datum		vals[10];
	char		nulls[10] = {' ', ' ', ' ', ' ', ' ', ' ', ' ', ' ', ' ', ' '};
	int64		sender = first_or_zero(call, "sender");
	int64	   *ids;
	int			n = crm_param_users(call, "recipients", &ids);

	vals[0] = Int64GetDatum(sender);
	nulls[0] = sender ? ' ' : 'n';
	vals[1] = CStringGetTextDatum(crm_param_text(call, "title"));
	vals[2] = CStringGetTextDatum(crm_param_text(call, "text"));
	vals[3] = CStringGetTextDatum(call->cx->entity_type);
	vals[4] = Int64GetDatum(call->cx->item_id);
	nulls[3] = nulls[4] = call->unbound ? 'n' : ' ';
	crm_action_author(call, vals, nulls, 5, 9);
	vals[6] = crm_int8_array(ids, n);
	/* feed_message (a process activity) has no tags and no files */
	vals[7] = text_array(crm_param_if_any(call, "tags") ? crm_param_json(call, "tags") : NULL);
	vals[8] = crm_param_if_any(call, "files") ? crm_param_file_array(call, "files") : crm_int8_array(NULL, 0);
	/* no recipients: a post to everyone */
	crm_exec(crm_plan(&plan,
					  "WITH p AS (INSERT INTO crm.feed_post (author_id, title, text, entity_type, entity_id,"
					  "   robot_id, to_all, tags, files, process_instance_id)"
					  "  VALUES ($1, $2, $3, $4, $5, $6, cardinality($7) = 0, $8, $9, $10) RETURNING id),"
					  " r AS (INSERT INTO crm.feed_post_recipient (post_id, user_id)"
					  "  SELECT p.id, u FROM p, unnest($7) u ON CONFLICT DO NOTHING)"
					  " SELECT id FROM p",
					  10, types), vals, nulls, false, 1);
	crm_action_output_int(call, "post_id", crm_returned_id());
}

void
crm_exec_create_group_chat(CrmActionCall *call)
{
	static SPIPlanPtr plan = NULL;
	static SPIPlanPtr members = NULL;
	Oid			types[6] = {TEXTOID, INT8OID, TEXTOID, INT8OID, INT8OID, INT8OID};
	Datum		vals[6];
	char		nulls[6] = {' ', ' ', ' ', ' ', ' ', ' '};
	int64	   *ids;
	int			n = crm_param_users(call, "members", &ids);
	Oid			mtypes[2] = {INT8OID, INT8ARRAYOID};
	Datum		mvals[2];
	int64		chat;

	if (n < 2)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("a group chat needs at least 2 members, got %d", n)));
	vals[0] = CStringGetTextDatum(crm_param_text(call, "name"));
	vals[1] = Int64GetDatum(ids[0]);
	vals[2] = CStringGetTextDatum(call->cx->entity_type);
	vals[3] = Int64GetDatum(call->cx->item_id);
	nulls[2] = nulls[3] = call->unbound ? 'n' : ' ';
	crm_action_author(call, vals, nulls, 4, 5);
	crm_exec(crm_plan(&plan,
					  "INSERT INTO crm.chat (title, type, owner_id, created_by_automation, entity_type, entity_id,"
					  " robot_id, process_instance_id)"
					  " VALUES ($1, 'group', $2, true, $3, $4, $5, $6) RETURNING id",
					  6, types), vals, nulls, false, 1);
	chat = crm_returned_id();
	mvals[0] = Int64GetDatum(chat);
	mvals[1] = crm_int8_array(ids, n);
	crm_exec(crm_plan(&members,
					  "INSERT INTO crm.chat_member (chat_id, user_id) SELECT $1, u FROM unnest($2) u"
					  " ON CONFLICT DO NOTHING", 2, mtypes), mvals, NULL, false, 0);
	crm_action_output_int(call, "chat_id", chat);
}

/*
 * The chat the "chat" parameter names.  Members are added only to chats made
 * by create_group_chat (seed 004); messages go to those and to any other
 * private group chat - type 'group', as opposed to 'open' chats anyone may
 * join and 'private' one-to-one dialogs (direct_message writes those).
 */
static int64
target_chat(CrmActionCall *call, bool any_group)
{
	static SPIPlanPtr plan = NULL;
	int64		chat = 0;
	Oid			types[1] = {INT8OID};
	Datum		vals[1];
	bool		isnull;
	bool		automation;
	char	   *type;

	(void) crm_param_int(call, "chat", &chat);
	vals[0] = Int64GetDatum(chat);
	crm_exec(crm_plan(&plan, "SELECT created_by_automation, type FROM crm.chat WHERE id = $1",
					  1, types), vals, NULL, true, 1);
	if (SPI_processed == 0)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("chat %lld does not exist", (long long) chat),
				 errhint("Use the output of a create_group_chat robot: {=Robot:NAME.chat_id}.")));
	automation = DatumGetBool(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
	type = TextDatumGetCString(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2, &isnull));
	if (!any_group && !automation)
		ereport(ERROR,
				(errcode(ERRCODE_WRONG_OBJECT_TYPE),
				 errmsg("chat %lld was not created by a robot", (long long) chat),
				 errhint("Members are added only to chats made by create_group_chat: {=Robot:NAME.chat_id}.")));
	if (any_group && !automation && strcmp(type, "group") != 0)
		ereport(ERROR,
				(errcode(ERRCODE_WRONG_OBJECT_TYPE),
				 errmsg("chat %lld is not a private group chat", (long long) chat),
				 errdetail("Its type is \"%s\"; messages go to chats of type \"group\".", type),
				 errhint("Messages go to group chats; use direct_message to write to a user.")));
	return chat;
}

void
crm_exec_add_chat_members(CrmActionCall *call)
{
	static SPIPlanPtr plan = NULL;
	int64		chat = target_chat(call, false);
	int64	   *ids;
	int			n = crm_param_users(call, "members", &ids);
	Oid			types[3] = {INT8OID, INT8ARRAYOID, BOOLOID};
	Datum		vals[3];

	vals[0] = Int64GetDatum(chat);
	vals[1] = crm_int8_array(ids, n);
	vals[2] = BoolGetDatum(crm_param_bool(call, "show_history", true));
	crm_exec(crm_plan(&plan,
					  "INSERT INTO crm.chat_member (chat_id, user_id, show_history) SELECT $1, u, $3 FROM unnest($2) u"
					  " ON CONFLICT DO NOTHING", 3, types), vals, NULL, false, 0);
}

static void
insert_message(CrmActionCall *call, int64 chat, int64 recipient)
{
	static SPIPlanPtr plan = NULL;
	Oid			types[7] = {INT8OID, INT8OID, INT8OID, TEXTOID, TEXTOID, INT8OID, INT8OID};
	Datum		vals[7];
	char		nulls[7] = {' ', ' ', ' ', ' ', ' ', ' ', ' '};
	int64		sender = first_or_zero(call, "sender");
	char	   *type = crm_param_text(call, "type");

	vals[0] = Int64GetDatum(chat);
	nulls[0] = chat ? ' ' : 'n';
	vals[1] = Int64GetDatum(recipient);
	nulls[1] = recipient ? ' ' : 'n';
	vals[2] = Int64GetDatum(sender);
	nulls[2] = sender ? ' ' : 'n';
	vals[3] = CStringGetTextDatum(type ? type : "normal");
	vals[4] = CStringGetTextDatum(crm_param_text(call, "text"));
	crm_action_author(call, vals, nulls, 5, 6);
	crm_exec(crm_plan(&plan,
					  "INSERT INTO crm.chat_message (chat_id, recipient_id, sender_id, type, text, robot_id,"
					  " process_instance_id)"
					  " VALUES ($1, $2, $3, $4, $5, $6, $7)", 7, types), vals, nulls, false, 0);
}

void
crm_exec_chat_message(CrmActionCall *call)
{
	insert_message(call, target_chat(call, true), 0);
}

void
crm_exec_direct_message(CrmActionCall *call)
{
	int64	   *ids;
	int			n = crm_param_users(call, "recipients", &ids);
	int			i;

	if (n == 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("parameter \"recipients\" names no user for this item")));
	for (i = 0; i < n; i++)
		insert_message(call, 0, ids[i]);
}

void
crm_exec_add_to_exceptions(CrmActionCall *call)
{
	static SPIPlanPtr plan = NULL;
	const char *table = crm_item_table(call->cx->entity_type);
	char	   *sql;
	Oid			types[2] = {TEXTOID, INT8OID};
	Datum		vals[2];

	/*
	 * The client's phones and e-mails: the item's own (leads, contacts,
	 * companies) and those of its linked contact and company.
	 */
	sql = psprintf("WITH i AS (SELECT to_jsonb(t) AS j FROM crm.%s t WHERE id = $2),"
				   " a AS ("
				   "  SELECT 'phone' AS type, j->>'phone' AS v FROM i UNION ALL"
				   "  SELECT 'email', lower(j->>'email') FROM i UNION ALL"
				   "  SELECT 'phone', c.phone FROM i JOIN crm.contact c ON c.id = (j->>'contact_id')::bigint UNION ALL"
				   "  SELECT 'email', lower(c.email) FROM i JOIN crm.contact c ON c.id = (j->>'contact_id')::bigint UNION ALL"
				   "  SELECT 'phone', c.phone FROM i JOIN crm.company c ON c.id = (j->>'company_id')::bigint UNION ALL"
				   "  SELECT 'email', lower(c.email) FROM i JOIN crm.company c ON c.id = (j->>'company_id')::bigint)"
				   " INSERT INTO crm.exception_list (type, value, comment, entity_type, entity_id)"
				   " SELECT DISTINCT ON (type, k) type, v, 'added by a robot', $1, $2 FROM"
				   "  (SELECT type, v, CASE type WHEN 'phone' THEN crm.phone_key(v) ELSE v END AS k FROM a) a"
				   "  WHERE k ~ '[0-9A-Za-z]'"
				   " ON CONFLICT (type, key) DO NOTHING", quote_identifier(table));
	(void) plan;
	vals[0] = CStringGetTextDatum(call->cx->entity_type);
	vals[1] = Int64GetDatum(call->cx->item_id);
	if (SPI_execute_with_args(sql, 2, types, vals, NULL, false, 0) < 0)
		elog(ERROR, "add_to_exceptions failed");
	crm_action_output_int(call, "added", (int64) SPI_processed);
}

static void
schedule(CrmActionCall *call, const char *type)
{
	static SPIPlanPtr plan = NULL;
	Oid			types[10] = {TEXTOID, INT8OID, TEXTOID, TEXTOID, TEXTOID, INT8OID,
	TIMESTAMPTZOID, TEXTOID, INT8OID, INT8OID};
	Datum		vals[10];
	char		nulls[10] = {' ', ' ', ' ', ' ', ' ', ' ', ' ', ' ', ' ', ' '};
	TimestampTz when;
	char	   *desc = crm_param_text(call, "description");
	char	   *loc = crm_param_text(call, "location");
	bool		isnull;
	int64		resp = crm_item_int(call->cx, "responsible_id", &isnull);

	(void) crm_param_when(call, "when", &when);
	vals[0] = CStringGetTextDatum(call->cx->entity_type);
	vals[1] = Int64GetDatum(call->cx->item_id);
	vals[2] = CStringGetTextDatum(type);
	vals[3] = CStringGetTextDatum(crm_param_text(call, "subject"));
	vals[4] = desc ? CStringGetTextDatum(desc) : (Datum) 0;
	nulls[4] = desc ? ' ' : 'n';
	vals[5] = Int64GetDatum(resp);
	nulls[5] = isnull ? 'n' : ' ';
	vals[6] = TimestampTzGetDatum(when);
	vals[7] = loc ? CStringGetTextDatum(loc) : (Datum) 0;
	nulls[7] = loc ? ' ' : 'n';
	crm_action_author(call, vals, nulls, 8, 9);
	/* the activity, and the same slot in the responsible user's calendar */
	crm_exec(crm_plan(&plan,
					  "WITH a AS (INSERT INTO crm.activity (entity_type, entity_id, type, direction, subject,"
					  "   description, responsible_id, start_at, end_at, deadline, location, robot_id,"
					  "   process_instance_id)"
					  "  VALUES ($1, $2, $3, 'outgoing', $4, $5, $6, $7, $7 + interval '1 hour', $7, $8, $9, $10)"
					  "  RETURNING id)"
					  " INSERT INTO crm.calendar_event (owner_id, title, description, location, start_at, end_at,"
					  "   activity_id, entity_type, entity_id, robot_id, process_instance_id)"
					  " SELECT $6, $4, $5, $8, $7, $7 + interval '1 hour', a.id, $1, $2, $9, $10 FROM a"
					  " RETURNING activity_id",
					  10, types), vals, nulls, false, 1);
	crm_action_output_int(call, "activity_id", crm_returned_id());
}

void
crm_exec_schedule_meeting(CrmActionCall *call)
{
	schedule(call, "meeting");
}

void
crm_exec_schedule_call(CrmActionCall *call)
{
	schedule(call, "call");
}
