/*-------------------------------------------------------------------------
 *
 * robots_load.c
 *	  Loading and compiling the robots of a stage for the rule cache.
 *
 * The rule cache (core/rule_cache.c) calls crm_robots_load, registered as
 * its stage loader by crm_robots_init, the first time a stage's robots are
 * needed in a backend; what it returns lives in the cache's memory context
 * until a definition changes.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"


#include "access/htup_details.h"
#include "access/xact.h"
#include "catalog/namespace.h"
#include "catalog/pg_namespace.h"
#include "catalog/pg_type.h"
#include "commands/trigger.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/jsonb.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/syscache.h"
#include "utils/timestamp.h"

#include "core/guc.h"
#include "core/scope.h"
#include "engine/robots.h"
#include "core/rowsink.h"
#include "core/rule_cache.h"
#include "engine/scheduler.h"
#include "core/spi_util.h"
#include "engine/work_time.h"
#include "engine/hooks.h"

/* ---------- delays ---------- */

static Interval *
delay_interval(JsonbValue *v, const char *key, bool allow_negative)
{
	Interval   *iv;
	char	   *s;

	if (v->type != jbvString)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("delay.%s must be an interval such as \"2 days\", not %s",
						key, crm_jsonb_type_name(v))));
	s = pnstrdup(v->val.string.val, v->val.string.len);
	iv = DatumGetIntervalP(DirectFunctionCall3(interval_in, CStringGetDatum(s),
											   ObjectIdGetDatum(InvalidOid), Int32GetDatum(-1)));
	if (!allow_negative && (iv->month < 0 || iv->day < 0 || iv->time < 0))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("delay.%s must be positive, not \"%s\"", key, s)));
	if (!crm_delay_in_bounds(iv))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("delay.%s \"%s\" is too long", key, s),
				 errdetail("A delay is at most %d days (about 100 years).", CRM_MAX_DELAY_DAYS)));
	return iv;
}

/*
 * Reads a robot's delay into r (delay_kind, delay_after, ...), checking its
 * shape as crm._validate_robot does when the robot is saved: an object with
 * exactly one of "after" and "at", intervals that parse, are positive where
 * they must be and are at most CRM_MAX_DELAY, work_time only with "after"
 * and without months.  Anything else is an ERROR.  The field named by "at"
 * is checked against the entity type by the caller at save time.
 */
void
crm_robot_parse_delay(CrmRobot *r, Jsonb *delay)
{
	JsonbIterator *it;
	JsonbValue	k;
	JsonbIteratorToken tok;
	bool		has_after = false;
	bool		has_at = false;

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
			r->delay_after = delay_interval(&v, key, false);
			has_after = true;
		}
		else if (strcmp(key, "offset") == 0)
			r->delay_offset = delay_interval(&v, key, true);
		else if (strcmp(key, "at") == 0)
		{
			if (v.type != jbvString || v.val.string.len == 0)
				ereport(ERROR,
						(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
						 errmsg("delay.at must name a date field")));
			r->delay_field = pnstrdup(v.val.string.val, v.val.string.len);
			/* the field name compiles as a reference */
			(void) crm_expr_compile_text(psprintf("{{%s}}", r->delay_field), "delay.at");
			has_at = true;
		}
		else if (strcmp(key, "work_time") == 0)
		{
			if (v.type != jbvBool)
				ereport(ERROR,
						(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
						 errmsg("delay.work_time must be a boolean")));
			r->delay_work_time = v.val.boolean;
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
	if (r->delay_work_time && has_at)
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("delay.work_time applies to \"after\" delays, not to \"at\""),
				 errhint("A date field's time is kept as it is; use {\"after\": \"3 hours\", \"work_time\": true} to count working hours.")));
	if (has_after && r->delay_offset != NULL)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("delay.offset applies to \"at\" delays, not to \"after\"")));
	if (r->delay_work_time && r->delay_after->month != 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("a delay in working time counts days and hours, not months"),
				 errhint("Write \"20 days\" rather than \"1 month\".")));
	r->delay_kind = has_after ? CRM_DELAY_AFTER : CRM_DELAY_AT;
}

/* ---------- loading ---------- */

/* One robot row being compiled (the guarded part of the loading). */
typedef struct RobotLoad
{
	CrmRobot   *r;
	const char *action;
	Jsonb	   *params;
	Jsonb	   *condition;
	Jsonb	   *delay;
	const char *what;			/* the part being checked, for the message */
} RobotLoad;

/*
 * Checks and compiles a stored robot.  The row may have been changed
 * behind crm.update_robot's back (a direct UPDATE of crm.robot), so
 * nothing of it is trusted: the action must exist, the parameters must
 * pass the structural checks of save time (crm_action_check_structure),
 * the condition must compile and the delay must parse within bounds.
 */
static void
robot_compile(void *arg)
{
	RobotLoad  *rl = arg;
	CrmRobot   *r = rl->r;

	rl->what = "action";
	r->action = crm_action_lookup(rl->action);
	if (r->action == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("unknown action \"%s\"", rl->action)));
	rl->what = "parameters";
	crm_action_check_structure(r->action, rl->params, r->where);
	r->params = crm_action_compile(r->action, rl->params, r->where);
	rl->what = "condition";
	if (rl->condition != NULL)
		r->condition = crm_expr_compile_condition(rl->condition, "condition");
	rl->what = "delay";
	if (rl->delay != NULL)
	{
		if (r->action->flags & CRM_ACT_SCHEDULES)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("action \"%s\" takes no delay", r->action->name)));
		crm_robot_parse_delay(r, rl->delay);
	}
}

/*
 * Loads the active robots of a stage in order, compiled into the current
 * memory context (the rule cache's).
 */
List *
crm_robots_load(int64 stage_id)
{
	static SPIPlanPtr plan = NULL;
	Oid			types[1] = {INT8OID};
	Datum		vals[1];
	List	   *robots = NIL;
	MemoryContext cache_cxt = CurrentMemoryContext;
	SPITupleTable *tuptable;
	uint64		i;
	int			n;

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	vals[0] = Int64GetDatum(stage_id);
	crm_exec(crm_plan(&plan,
					  "SELECT id, name, action, params, condition, delay, after_previous"
					  "  FROM crm.robot WHERE stage_id = $1 AND active ORDER BY sort, id",
					  1, types), vals, NULL, true, 0);
	n = SPI_processed;
	tuptable = SPI_tuptable;	/* a check below may run queries */
	for (i = 0; i < n; i++)
	{
		HeapTuple	tup = tuptable->vals[i];
		TupleDesc	desc = tuptable->tupdesc;
		bool		isnull;
		Datum		d;
		MemoryContext old = MemoryContextSwitchTo(cache_cxt);
		CrmRobot   *r = palloc0(sizeof(CrmRobot));
		RobotLoad	rl;
		ErrorData  *edata;

		memset(&rl, 0, sizeof(rl));
		rl.r = r;
		r->id = DatumGetInt64(SPI_getbinval(tup, desc, 1, &isnull));
		r->stage_id = stage_id;
		d = SPI_getbinval(tup, desc, 2, &isnull);
		r->name = isnull ? NULL : TextDatumGetCString(d);
		r->where = r->name ? psprintf("robot \"%s\"", r->name) : psprintf("robot %lld", (long long) r->id);
		d = SPI_getbinval(tup, desc, 3, &isnull);
		r->action_name = isnull ? pstrdup("?") : TextDatumGetCString(d);
		rl.action = r->action_name;
		d = SPI_getbinval(tup, desc, 4, &isnull);
		rl.params = isnull ? NULL : DatumGetJsonbPCopy(d);
		d = SPI_getbinval(tup, desc, 5, &isnull);
		rl.condition = isnull ? NULL : DatumGetJsonbPCopy(d);
		d = SPI_getbinval(tup, desc, 6, &isnull);
		rl.delay = isnull ? NULL : DatumGetJsonbPCopy(d);
		r->has_delay = rl.delay != NULL;
		d = SPI_getbinval(tup, desc, 7, &isnull);
		r->after_previous = !isnull && DatumGetBool(d);

		/*
		 * A bad row fails alone: the robot stays in the list with its error,
		 * logged as failed each time it would run (robots.c).
		 */
		edata = crm_run_isolated(robot_compile, &rl);
		if (edata != NULL)
		{
			r->invalid = psprintf("robot %lld has %s: %s", (long long) r->id,
								  strcmp(rl.what, "action") == 0 ? "an invalid action" :
								  strcmp(rl.what, "parameters") == 0 ? "invalid parameters" :
								  strcmp(rl.what, "condition") == 0 ? "an invalid condition" :
								  "an invalid delay",
								  edata->message);
			FreeErrorData(edata);
		}
		robots = lappend(robots, r);
		MemoryContextSwitchTo(old);
	}
	SPI_finish();
	return robots;
}
