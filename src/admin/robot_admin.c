/*-------------------------------------------------------------------------
 *
 * robot_admin.c
 *	  Save-time validation of robots (crm._validate_robot), behind
 *	  crm.add_robot, crm.update_robot, crm.copy_robot and crm.move_robot.
 *
 * A robot is checked against its action's descriptor, the stage's entity
 * type (fields), and the other robots of the stage (names used by
 * {=Robot:NAME...}).  Anything wrong is an ERROR; the caller stores nothing.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "utils/builtins.h"
#include "utils/jsonb.h"
#include "utils/numeric.h"

#include "actions/actions.h"
#include "expr/expr.h"
#include "core/rule_cache.h"
#include "core/spi_util.h"

PG_FUNCTION_INFO_V1(crm_validate_robot);

static List *
stage_robot_names(int64 stage_id, int64 exclude_id)
{
	static SPIPlanPtr plan = NULL;
	Oid			types[2] = {INT8OID, INT8OID};
	Datum		vals[2];
	List	   *names = NIL;
	uint64		i;
	bool		isnull;

	vals[0] = Int64GetDatum(stage_id);
	vals[1] = Int64GetDatum(exclude_id);
	crm_exec(crm_plan(&plan,
					  "SELECT name FROM crm.robot WHERE stage_id = $1 AND name IS NOT NULL AND id <> $2",
					  2, types), vals, NULL, true, 0);
	for (i = 0; i < SPI_processed; i++)
		names = lappend(names, TextDatumGetCString(SPI_getbinval(SPI_tuptable->vals[i],
																 SPI_tuptable->tupdesc, 1, &isnull)));
	return names;
}

static void
check_interval_text(JsonbValue *v, const char *key, bool allow_negative)
{
	Interval   *iv;
	char	   *s;

	if (v->type != jbvString)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("delay.%s must be an interval such as \"2 days\"", key)));
	s = pnstrdup(v->val.string.val, v->val.string.len);
	iv = DatumGetIntervalP(DirectFunctionCall3(interval_in, CStringGetDatum(s),
											   ObjectIdGetDatum(InvalidOid), Int32GetDatum(-1)));
	if (!allow_negative && (iv->month < 0 || iv->day < 0 || iv->time < 0))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("delay.%s must be positive, not \"%s\"", key, s)));
}

static void
check_delay(Jsonb *delay, const char *entity_type)
{
	JsonbIterator *it;
	JsonbValue	k;
	JsonbIteratorToken tok;
	bool		has_after = false;
	bool		has_at = false;
	bool		work_time = false;
	Interval   *after = NULL;

	if (!JB_ROOT_IS_OBJECT(delay) || JB_ROOT_IS_SCALAR(delay))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("delay must be a JSON object"),
				 errhint("For example {\"after\": \"2 days\"} or {\"at\": \"close_date\", \"offset\": \"-1 day\"}.")));
	it = JsonbIteratorInit(&delay->root);
	while ((tok = JsonbIteratorNext(&it, &k, true)) != WJB_DONE)
	{
		JsonbValue	v;
		char	   *key;

		if (tok != WJB_KEY)
			continue;
		key = pnstrdup(k.val.string.val, k.val.string.len);
		(void) JsonbIteratorNext(&it, &v, true);
		if (strcmp(key, "after") == 0)
		{
			check_interval_text(&v, key, false);
			has_after = true;
		}
		else if (strcmp(key, "offset") == 0)
			check_interval_text(&v, key, true);
		else if (strcmp(key, "at") == 0)
		{
			char	   *field;
			CrmExpr    *e;

			if (v.type != jbvString)
				ereport(ERROR,
						(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
						 errmsg("delay.at must name a date field")));
			field = pnstrdup(v.val.string.val, v.val.string.len);
			e = crm_expr_compile_text(psprintf("{{%s}}", field), "delay.at");
			crm_expr_check(e, entity_type, NIL, false, "delay.at");
			has_at = true;
		}
		else if (strcmp(key, "work_time") == 0)
		{
			if (v.type != jbvBool)
				ereport(ERROR,
						(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
						 errmsg("delay.work_time must be a boolean")));
			work_time = v.val.boolean;
		}
		else
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("unknown delay key \"%s\"", key),
					 errhint("A delay has \"after\" (with an optional \"work_time\"), or \"at\" with an optional \"offset\".")));
	}
	if (has_after == has_at)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("delay needs exactly one of \"after\" and \"at\""),
				 errhint("For example {\"after\": \"2 days\"} or {\"at\": \"close_date\", \"offset\": \"-1 day\"}.")));
	if (work_time && has_at)
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("delay.work_time applies to \"after\" delays, not to \"at\""),
				 errhint("A date field's time is kept as it is; use {\"after\": \"3 hours\", \"work_time\": true} to count working hours.")));
	if (work_time)
	{
		JsonbValue *v = getKeyJsonValueFromContainer(&delay->root, "after", 5, NULL);

		after = DatumGetIntervalP(DirectFunctionCall3(interval_in,
													  CStringGetDatum(pnstrdup(v->val.string.val, v->val.string.len)),
													  ObjectIdGetDatum(InvalidOid), Int32GetDatum(-1)));
		if (after->month != 0)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("a delay in working time counts days and hours, not months"),
					 errhint("Write \"20 days\" rather than \"1 month\".")));
	}
}

static void
delay_error_callback(void *arg)
{
	errcontext("delay of the robot");
}

/*
 * crm._validate_robot(stage_id, action, params, condition, delay, robot_id)
 * raises an error for anything wrong with the definition.
 */
Datum
crm_validate_robot(PG_FUNCTION_ARGS)
{
	int64		stage_id;
	char	   *action_name;
	Jsonb	   *params = PG_ARGISNULL(2) ? NULL : PG_GETARG_JSONB_P(2);
	Jsonb	   *condition = PG_ARGISNULL(3) ? NULL : PG_GETARG_JSONB_P(3);
	Jsonb	   *delay = PG_ARGISNULL(4) ? NULL : PG_GETARG_JSONB_P(4);
	int64		robot_id = PG_ARGISNULL(5) ? 0 : PG_GETARG_INT64(5);
	const CrmStageInfo *st;
	char		entity_type[CRM_NAME_LEN];
	const CrmActionDesc *action;
	List	   *names;

	/* not STRICT (params, condition, delay and robot_id may be NULL) */
	if (PG_ARGISNULL(0))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("stage id must not be null"),
				 errhint("Find a stage id with crm.stage(entity_type, code).")));
	if (PG_ARGISNULL(1))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("action must not be null"),
				 errhint("See SELECT action, parameters FROM crm.robot_actions; for the list.")));
	stage_id = PG_GETARG_INT64(0);
	action_name = text_to_cstring(PG_GETARG_TEXT_PP(1));

	st = crm_stage_info(stage_id);
	if (st == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("stage %lld does not exist", (long long) stage_id),
				 errhint("Find a stage id with crm.stage(entity_type, code).")));
	strlcpy(entity_type, st->entity_type, CRM_NAME_LEN);

	action = crm_action_lookup(action_name);
	if (action == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("unknown action \"%s\"", action_name),
				 errhint("See SELECT action, parameters FROM crm.robot_actions; for the list.")));

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	names = stage_robot_names(stage_id, robot_id);
	crm_action_validate(action, params ? params : DatumGetJsonbP(DirectFunctionCall1(jsonb_in, CStringGetDatum("{}"))),
						stage_id, entity_type, names, "robot");
	crm_action_check_references(action, params, entity_type);
	if (delay != NULL && (action->flags & CRM_ACT_SCHEDULES))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("action \"%s\" takes no delay", action->name),
				 errhint("Its time is its \"%s\" parameter.",
						 strcmp(action->name, "wait") == 0 ? "for" : "after")));
	if (condition != NULL)
	{
		CrmExpr    *e = crm_expr_compile_condition(condition, "condition");

		crm_expr_check(e, entity_type, names, true, "condition");
	}
	if (delay != NULL)
	{
		ErrorContextCallback errcb;

		errcb.callback = delay_error_callback;
		errcb.arg = NULL;
		errcb.previous = error_context_stack;
		error_context_stack = &errcb;
		check_delay(delay, entity_type);
		error_context_stack = errcb.previous;
	}
	SPI_finish();
	PG_RETURN_VOID();
}
