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
#include "engine/robots.h"

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

/*
 * The delay's shape and bounds (crm_robot_parse_delay, the same checks the
 * rule cache makes when it loads the robot), then the date field it names.
 */
static void
check_delay(Jsonb *delay, const char *entity_type)
{
	CrmRobot	r;

	memset(&r, 0, sizeof(r));
	crm_robot_parse_delay(&r, delay);
	if (r.delay_kind == CRM_DELAY_AT)
	{
		CrmExpr    *e = crm_expr_compile_text(psprintf("{{%s}}", r.delay_field), "delay.at");

		crm_expr_check(e, entity_type, NIL, false, "delay.at");
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

	st = crm_stage_info_required(stage_id);
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
