/*-------------------------------------------------------------------------
 *
 * actions_process.c
 *	  The activities only business processes run (seed 000): control (the
 *	  process one: a notice now, not a stage check later), user_notification,
 *	  social_message, calendar_event, absence.  feed_message and email share
 *	  the executors of feed_post and send_email.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "utils/builtins.h"
#include "utils/timestamp.h"

#include "actions/actions.h"
#include "core/spi_util.h"

/* The first user of a list parameter; 0 when it names none. */
static int64
first_of(CrmActionCall *call, const char *param)
{
	int64	   *ids;

	return crm_param_users(call, param, &ids) > 0 ? ids[0] : 0;
}

/* The first user of a list parameter, the item's responsible when it is absent. */
static int64
user_or_responsible(CrmActionCall *call, const char *param)
{
	int64		id = first_of(call, param);
	bool		isnull;

	if (id == 0 && !crm_param_present(call, param))
	{
		id = crm_item_int(call->cx, "responsible_id", &isnull);
		if (isnull)
			id = 0;
	}
	if (id == 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("parameter \"%s\" names no user for this document", param),
				 errhint("The document may have no responsible user.")));
	return id;
}

/* from/to of an event or absence: both given, in order. */
static void
period(CrmActionCall *call, TimestampTz *from, TimestampTz *to)
{
	if (!crm_param_when(call, "from", from) || !crm_param_when(call, "to", to))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("parameters \"from\" and \"to\" must both give a time")));
	if (*to < *from)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("\"to\" (%s) is before \"from\" (%s)",
						timestamptz_to_str(*to), timestamptz_to_str(*from))));
}

static Datum
text_or_null(char *s, char *isnull)
{
	*isnull = (s == NULL || *s == '\0') ? 'n' : ' ';
	return *isnull == 'n' ? (Datum) 0 : CStringGetTextDatum(s);
}

/*
 * control (process): notifies now the supervisor of the document's
 * responsible (unless to_supervisor is false) and the extra recipients.
 */
void
crm_exec_process_control(CrmActionCall *call)
{
	int64	   *extra;
	int			n = crm_param_users(call, "recipients", &extra);
	int64	   *ids = palloc(sizeof(int64) * (n + 1));
	int			count = 0;
	int			i;

	if (crm_param_bool(call, "to_supervisor", true))
		ids[count++] = crm_item_supervisor(call);
	for (i = 0; i < n; i++)
		if (count == 0 || ids[0] != extra[i])
			ids[count++] = extra[i];
	if (count == 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("control notifies nobody: \"to_supervisor\" is false and \"recipients\" names no user")));
	crm_notify_users(call, ids, count, 0, "system", crm_param_text(call, "text"), NULL);
}

/* user_notification: to, text, email_text, kind (personal | system), sender. */
void
crm_exec_user_notification(CrmActionCall *call)
{
	int64	   *ids;
	int			n = crm_param_users(call, "to", &ids);
	char	   *kind = crm_param_text(call, "kind");
	int64		sender = first_of(call, "sender");
	char	   *email_text = crm_param_text(call, "email_text");

	if (n == 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("parameter \"to\" names no user for this document")));
	if (kind == NULL)
		kind = sender ? "personal" : "system";
	if (strcmp(kind, "system") == 0)
		sender = 0;
	else if (sender == 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("a personal notification needs \"sender\""),
				 errhint("Name the sending user, or use \"kind\": \"system\".")));
	crm_notify_users(call, ids, n, sender, kind, crm_param_text(call, "text"),
					 email_text && *email_text ? email_text : NULL);
}

/* social_message: a personal message, sent by e-mail to a recipient offline. */
void
crm_exec_social_message(CrmActionCall *call)
{
	int64	   *ids;
	int			n = crm_param_users(call, "to", &ids);
	int64		sender = user_or_responsible(call, "sender");
	char	   *text = crm_param_text(call, "text");

	if (n == 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("parameter \"to\" names no user for this document")));
	crm_notify_users(call, ids, n, sender, "personal", text, text);
}

/*
 * calendar_event: an event in a user's calendar (calendar_type user, the
 * default) or a group's (calendar_type group, owner_id the group).
 */
void
crm_exec_calendar_event(CrmActionCall *call)
{
	static SPIPlanPtr plan = NULL;
	Oid			types[13] = {INT8OID, TEXTOID, TEXTOID, TEXTOID, TEXTOID, TEXTOID,
	TIMESTAMPTZOID, TIMESTAMPTZOID, TEXTOID, INT8OID, INT8OID, INT8OID, INT8OID};
	Datum		vals[13];
	char		nulls[13] = {' ', ' ', ' ', ' ', ' ', ' ', ' ', ' ', ' ', ' ', ' ', ' ', ' '};
	char	   *ctype = crm_param_text(call, "calendar_type");
	TimestampTz from;
	TimestampTz to;
	int64		group = 0;
	int64		user = user_or_responsible(call, "user");

	period(call, &from, &to);
	if (ctype != NULL && strcmp(ctype, "group") == 0)
	{
		if (!crm_param_int(call, "owner_id", &group) || group <= 0)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("a group calendar event needs \"owner_id\", the group")));
	}
	else
		ctype = "user";
	vals[0] = Int64GetDatum(user);
	vals[1] = CStringGetTextDatum(ctype);
	vals[2] = text_or_null(crm_param_text(call, "section_id"), &nulls[2]);
	vals[3] = CStringGetTextDatum(crm_param_text(call, "name"));
	vals[4] = text_or_null(crm_param_text(call, "description"), &nulls[4]);
	vals[5] = text_or_null(crm_param_text(call, "location"), &nulls[5]);
	vals[6] = TimestampTzGetDatum(from);
	vals[7] = TimestampTzGetDatum(to);
	vals[8] = CStringGetTextDatum(call->cx->entity_type);
	vals[9] = Int64GetDatum(call->cx->item_id);
	nulls[8] = nulls[9] = call->unbound ? 'n' : ' ';
	crm_action_author(call, vals, nulls, 10, 11);
	vals[12] = Int64GetDatum(group);
	nulls[12] = group ? ' ' : 'n';
	/* the user's calendar, or the group's (group_id), the user organizing */
	crm_exec(crm_plan(&plan,
					  "INSERT INTO crm.calendar_event (owner_id, calendar_type, section, title, description,"
					  " location, start_at, end_at, entity_type, entity_id, robot_id, process_instance_id,"
					  " group_id, attendees)"
					  " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, ARRAY[$1])"
					  " RETURNING id",
					  13, types), vals, nulls, false, 1);
	crm_action_output_int(call, "event_id", crm_returned_id());
}

/* absence: a row of the absence chart. */
void
crm_exec_absence(CrmActionCall *call)
{
	static SPIPlanPtr plan = NULL;
	Oid			types[8] = {INT8OID, TEXTOID, TEXTOID, TEXTOID, TEXTOID, TIMESTAMPTZOID,
	TIMESTAMPTZOID, INT8OID};
	Datum		vals[8];
	char		nulls[8] = {' ', ' ', ' ', ' ', ' ', ' ', ' ', ' '};
	char	   *type = crm_param_text(call, "absence_type");
	TimestampTz from;
	TimestampTz to;

	period(call, &from, &to);
	vals[0] = Int64GetDatum(user_or_responsible(call, "user"));
	vals[1] = CStringGetTextDatum(type ? type : "other");
	vals[2] = CStringGetTextDatum(crm_param_text(call, "name"));
	vals[3] = text_or_null(crm_param_text(call, "description"), &nulls[3]);
	vals[4] = text_or_null(crm_param_text(call, "location"), &nulls[4]);
	vals[5] = TimestampTzGetDatum(from);
	vals[6] = TimestampTzGetDatum(to);
	vals[7] = Int64GetDatum(call->process_instance_id);
	nulls[7] = call->process_instance_id ? ' ' : 'n';
	crm_exec(crm_plan(&plan,
					  "INSERT INTO crm.absence (user_id, type, name, description, location, start_at, end_at,"
					  " process_instance_id)"
					  " VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING id",
					  8, types), vals, nulls, false, 1);
	crm_action_output_int(call, "absence_id", crm_returned_id());
}
