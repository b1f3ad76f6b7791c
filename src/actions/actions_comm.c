/*-------------------------------------------------------------------------
 *
 * actions_comm.c
 *	  Communication and task actions that stay inside the database:
 *	  add_comment, write_log, notify, create_task, create_activity, and the
 *	  effects of control and wait.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "utils/array.h"
#include "utils/builtins.h"

#include "actions/actions.h"
#include "core/guc.h"
#include "core/rowsink.h"
#include "core/spi_util.h"

static int64
first_user(CrmActionCall *call, const char *param, bool required)
{
	int64	   *ids;
	int			n = crm_param_users(call, param, &ids);
	bool		isnull;
	int64		id;

	if (n > 0)
		return ids[0];
	if (!crm_param_present(call, param))
	{
		id = crm_item_int(call->cx, "responsible_id", &isnull);
		if (!isnull)
			return id;
	}
	if (required)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("parameter \"%s\" names no user for this item", param),
				 errhint("The item may have no responsible user, or the department no head.")));
	return 0;
}

/*
 * Comments, history entries and notifications are written through sinks:
 * nothing in a robot sequence reads them back, so a batch of moves writes
 * each table's rows in one statement (rowsink.c).
 */
static CrmRowSink comment_sink = {
	"crm.timeline_comment", 6,
	{"entity_type", "entity_id", "author_id", "text", "robot_id", "process_instance_id"},
	{TEXTOID, INT8OID, INT8OID, TEXTOID, INT8OID, INT8OID}
};

static CrmRowSink history_sink = {
	"crm.history", 6,
	{"entity_type", "entity_id", "event_type", "text", "robot_id", "process_instance_id"},
	{TEXTOID, INT8OID, TEXTOID, TEXTOID, INT8OID, INT8OID}
};

static CrmRowSink notification_sink = {
	"crm.notification", 9,
	{"user_id", "sender_id", "kind", "text", "entity_type", "entity_id", "robot_id",
	"process_instance_id", "email_text"},
	{INT8OID, INT8OID, TEXTOID, TEXTOID, TEXTOID, INT8OID, INT8OID, INT8OID, TEXTOID}
};

void
crm_exec_add_comment(CrmActionCall *call)
{
	Datum		vals[6];
	bool		nulls[6] = {false, false, false, false, false, false};
	int64		author = first_user(call, "author", false);

	vals[0] = CStringGetTextDatum(call->cx->entity_type);
	vals[1] = Int64GetDatum(call->cx->item_id);
	vals[2] = Int64GetDatum(author);
	nulls[2] = (author == 0);
	vals[3] = CStringGetTextDatum(crm_param_text(call, "text"));
	vals[4] = Int64GetDatum(call->robot_id);
	nulls[4] = (call->robot_id == 0);
	vals[5] = Int64GetDatum(call->process_instance_id);
	nulls[5] = (call->process_instance_id == 0);
	crm_sink_add(&comment_sink, vals, nulls);
}

void
crm_exec_write_log(CrmActionCall *call)
{
	Datum		vals[6];
	bool		nulls[6] = {false, false, false, false, false, false};

	vals[0] = CStringGetTextDatum(call->cx->entity_type);
	vals[1] = Int64GetDatum(call->cx->item_id);
	vals[2] = CStringGetTextDatum("info");
	vals[3] = CStringGetTextDatum(crm_param_text(call, "text"));
	vals[4] = Int64GetDatum(call->robot_id);
	nulls[4] = (call->robot_id == 0);
	vals[5] = Int64GetDatum(call->process_instance_id);
	nulls[5] = (call->process_instance_id == 0);
	crm_sink_add(&history_sink, vals, nulls);
}

/*
 * Notifications to users: personal from sender, or from the system (sender
 * 0, or kind "system"); email_text, when given, is what an offline user
 * receives by e-mail instead.
 */
void
crm_notify_users(CrmActionCall *call, const int64 *ids, int n, int64 sender, const char *kind,
				 const char *text, const char *email_text)
{
	Datum		vals[9];
	bool		nulls[9] = {false, false, false, false, false, false, false, false, false};
	int			i;

	if (kind == NULL)
		kind = sender ? "personal" : "system";
	vals[1] = Int64GetDatum(sender);
	nulls[1] = (sender == 0);
	vals[2] = CStringGetTextDatum(kind);
	vals[3] = CStringGetTextDatum(text);
	vals[8] = email_text ? CStringGetTextDatum(email_text) : (Datum) 0;
	nulls[8] = (email_text == NULL);
	vals[4] = CStringGetTextDatum(call->cx->entity_type);
	vals[5] = Int64GetDatum(call->cx->item_id);
	nulls[4] = nulls[5] = call->unbound;
	vals[6] = Int64GetDatum(call->robot_id);
	nulls[6] = (call->robot_id == 0);
	vals[7] = Int64GetDatum(call->process_instance_id);
	nulls[7] = (call->process_instance_id == 0);
	for (i = 0; i < n; i++)
	{
		vals[0] = Int64GetDatum(ids[i]);
		crm_sink_add(&notification_sink, vals, nulls);
	}
}

void
crm_exec_notify(CrmActionCall *call)
{
	int64	   *ids;
	int			n = crm_param_users(call, "recipients", &ids);
	int64	   *sender;
	int			ns = crm_param_users(call, "sender", &sender);

	if (n == 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("parameter \"recipients\" names no user for this item")));
	crm_notify_users(call, ids, n, ns > 0 ? sender[0] : 0, NULL, crm_param_text(call, "text"), NULL);
}

/* The supervisor of the item's responsible user; an error when there is none. */
int64
crm_item_supervisor(CrmActionCall *call)
{
	CrmExpr    *e = crm_expr_compile_text("{{responsible_id}}", "control");
	int64		resp;
	int64		id;
	bool		isnull;
	static SPIPlanPtr plan = NULL;
	Oid			t[1] = {INT8OID};
	Datum		v[1];

	if (!crm_value_to_int64(crm_expr_eval(e, call->cx), &resp))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("the item has no responsible user, so it has no supervisor to notify")));
	v[0] = Int64GetDatum(resp);
	crm_exec(crm_plan(&plan, "SELECT crm.supervisor_of($1)", 1, t), v, NULL, true, 1);
	id = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
	if (isnull)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("the responsible user has no supervisor to notify")));
	return id;
}

/* control, when due: the item is still in the stage. */
void
crm_exec_control(CrmActionCall *call)
{
	int64	   *ids;
	int			n;
	char	   *text = crm_param_text(call, "text");

	n = crm_param_users(call, "recipients", &ids);
	if (n == 0)
	{
		/* default: the responsible user's supervisor */
		ids = palloc(sizeof(int64));
		ids[0] = crm_item_supervisor(call);
		n = 1;
	}
	if (text == NULL || *text == '\0')
		text = crm_expr_render(crm_expr_compile_text("\"{{title}}\" is still in the same stage; check its progress.",
													 "control"), call->cx);
	crm_notify_users(call, ids, n, 0, NULL, text, NULL);
}

/* wait: the pause is planned by the sequencer; the instructions go to the responsible user. */
void
crm_exec_wait(CrmActionCall *call)
{
	char	   *text = crm_param_text(call, "instructions");
	bool		isnull;
	int64		resp;

	if (text == NULL || *text == '\0')
		return;
	resp = crm_item_int(call->cx, "responsible_id", &isnull);
	if (!isnull)
		crm_notify_users(call, &resp, 1, 0, NULL, text, NULL);
}

void
crm_exec_create_task(CrmActionCall *call)
{
	static SPIPlanPtr plan = NULL;
	Oid			types[14] = {TEXTOID, TEXTOID, INT8OID, TIMESTAMPTZOID, TEXTOID, TEXTOID,
	INT8OID, TEXTARRAYOID, INT8OID, INT8ARRAYOID, INT8OID, INT8ARRAYOID, INT8ARRAYOID, INT8OID};
	Datum		vals[14];
	char		nulls[14] = {' ', ' ', ' ', ' ', ' ', ' ', ' ', ' ', ' ', ' ', ' ', ' ', ' ', ' '};
	TimestampTz deadline;
	char	   *desc = crm_param_text(call, "description");
	char	   *priority = crm_param_text(call, "priority");
	Jsonb	   *bindings = crm_param_json(call, "bindings");
	Datum	   *elems;
	int			nelems = 1;
	bool		isnull;

	elems = palloc(sizeof(Datum) * 64);
	if (call->unbound)
		nelems = 0;
	else
		elems[0] = CStringGetTextDatum(psprintf("%s_%lld", crm_item_prefix(call->cx->entity_type),
												(long long) call->cx->item_id));
	if (bindings)
	{
		JsonbIterator *it = JsonbIteratorInit(&bindings->root);
		JsonbValue	v;
		JsonbIteratorToken tok;

		while ((tok = JsonbIteratorNext(&it, &v, true)) != WJB_DONE && nelems < 64)
			if ((tok == WJB_ELEM || tok == WJB_VALUE) && v.type == jbvString && v.val.string.len > 0)
				elems[nelems++] = PointerGetDatum(cstring_to_text_with_len(v.val.string.val, v.val.string.len));
	}

	vals[0] = CStringGetTextDatum(crm_param_text(call, "title"));
	vals[1] = desc ? CStringGetTextDatum(desc) : (Datum) 0;
	nulls[1] = desc ? ' ' : 'n';
	vals[2] = Int64GetDatum(first_user(call, "responsible", true));
	if (crm_param_when(call, "deadline", &deadline))
		vals[3] = TimestampTzGetDatum(deadline);
	else
		nulls[3] = 'n';
	vals[4] = CStringGetTextDatum(priority ? priority : "normal");
	vals[5] = CStringGetTextDatum(call->cx->entity_type);
	vals[6] = Int64GetDatum(call->cx->item_id);
	nulls[5] = nulls[6] = call->unbound ? 'n' : ' ';
	vals[7] = PointerGetDatum(construct_array(elems, nelems, TEXTOID, -1, false, TYPALIGN_INT));
	crm_action_author(call, vals, nulls, 8, 13);
	vals[9] = crm_param_file_array(call, "files");
	vals[10] = Int64GetDatum((int64) crm_acting_user_id);
	nulls[10] = DatumGetInt64(vals[10]) ? ' ' : 'n';
	vals[11] = crm_param_user_array(call, "accomplices");
	vals[12] = crm_param_user_array(call, "auditors");
	crm_exec(crm_plan(&plan,
					  "INSERT INTO crm.task (title, description, responsible_id, deadline, priority,"
					  " entity_type, entity_id, bindings, robot_id, files, created_by, accomplices, auditors,"
					  " process_instance_id)"
					  " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14) RETURNING id",
					  14, types), vals, nulls, false, 1);
	crm_action_output_int(call, "task_id",
						  DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull)));
}

void
crm_exec_create_activity(CrmActionCall *call)
{
	static SPIPlanPtr plan = NULL;
	Oid			types[11] = {TEXTOID, INT8OID, TEXTOID, TEXTOID, TEXTOID, INT8OID, BOOLOID,
	BOOLOID, TIMESTAMPTZOID, INT8OID, INT8OID};
	Datum		vals[11];
	char		nulls[11] = {' ', ' ', ' ', ' ', ' ', ' ', ' ', ' ', ' ', ' ', ' '};
	TimestampTz deadline;
	char	   *desc = crm_param_text(call, "description");
	char	   *type = crm_param_text(call, "type");
	int64		resp = first_user(call, "responsible", false);
	bool		isnull;

	vals[0] = CStringGetTextDatum(call->cx->entity_type);
	vals[1] = Int64GetDatum(call->cx->item_id);
	vals[2] = CStringGetTextDatum(type ? type : "todo");
	vals[3] = CStringGetTextDatum(crm_param_text(call, "subject"));
	vals[4] = desc ? CStringGetTextDatum(desc) : (Datum) 0;
	nulls[4] = desc ? ' ' : 'n';
	vals[5] = Int64GetDatum(resp);
	nulls[5] = resp ? ' ' : 'n';
	vals[6] = BoolGetDatum(crm_param_bool(call, "important", false));
	vals[7] = BoolGetDatum(crm_param_bool(call, "auto_complete", false));
	if (crm_param_when(call, "deadline", &deadline))
		vals[8] = TimestampTzGetDatum(deadline);
	else
		nulls[8] = 'n';
	crm_action_author(call, vals, nulls, 9, 10);
	crm_exec(crm_plan(&plan,
					  "INSERT INTO crm.activity (entity_type, entity_id, type, direction, subject,"
					  " description, responsible_id, important, auto_complete, deadline, robot_id,"
					  " process_instance_id)"
					  " VALUES ($1, $2, $3, 'outgoing', $4, $5, $6, $7, $8, $9, $10, $11) RETURNING id",
					  11, types), vals, nulls, false, 1);
	crm_action_output_int(call, "activity_id",
						  DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull)));
}
