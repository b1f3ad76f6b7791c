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

/* ---------- loading ---------- */

static void
parse_delay(CrmRobot *r, Jsonb *delay)
{
	JsonbValue *v;

	if (delay == NULL)
		return;
	if ((v = getKeyJsonValueFromContainer(&delay->root, "after", 5, NULL)) != NULL &&
		v->type == jbvString)
	{
		r->delay_kind = CRM_DELAY_AFTER;
		r->delay_after = DatumGetIntervalP(DirectFunctionCall3(interval_in,
															   CStringGetDatum(pnstrdup(v->val.string.val, v->val.string.len)),
															   ObjectIdGetDatum(InvalidOid),
															   Int32GetDatum(-1)));
	}
	if ((v = getKeyJsonValueFromContainer(&delay->root, "work_time", 9, NULL)) != NULL &&
		v->type == jbvBool)
		r->delay_work_time = v->val.boolean;
	if ((v = getKeyJsonValueFromContainer(&delay->root, "at", 2, NULL)) != NULL &&
		v->type == jbvString)
	{
		r->delay_kind = CRM_DELAY_AT;
		r->delay_field = pnstrdup(v->val.string.val, v->val.string.len);
		if ((v = getKeyJsonValueFromContainer(&delay->root, "offset", 6, NULL)) != NULL &&
			v->type == jbvString)
			r->delay_offset = DatumGetIntervalP(DirectFunctionCall3(interval_in,
																	CStringGetDatum(pnstrdup(v->val.string.val, v->val.string.len)),
																	ObjectIdGetDatum(InvalidOid),
																	Int32GetDatum(-1)));
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
	for (i = 0; i < n; i++)
	{
		HeapTuple	tup = SPI_tuptable->vals[i];
		TupleDesc	desc = SPI_tuptable->tupdesc;
		bool		isnull;
		Datum		d;
		MemoryContext old = MemoryContextSwitchTo(cache_cxt);
		CrmRobot   *r = palloc0(sizeof(CrmRobot));
		char	   *action;
		Jsonb	   *params;

		r->id = DatumGetInt64(SPI_getbinval(tup, desc, 1, &isnull));
		r->stage_id = stage_id;
		d = SPI_getbinval(tup, desc, 2, &isnull);
		r->name = isnull ? NULL : TextDatumGetCString(d);
		r->where = r->name ? psprintf("robot \"%s\"", r->name) : psprintf("robot %lld", (long long) r->id);
		action = TextDatumGetCString(SPI_getbinval(tup, desc, 3, &isnull));
		r->action = crm_action_lookup(action);
		params = DatumGetJsonbPCopy(SPI_getbinval(tup, desc, 4, &isnull));
		d = SPI_getbinval(tup, desc, 5, &isnull);
		if (!isnull)
			r->condition = crm_expr_compile_condition(DatumGetJsonbPCopy(d), "condition");
		d = SPI_getbinval(tup, desc, 6, &isnull);
		if (!isnull)
			parse_delay(r, DatumGetJsonbPCopy(d));
		r->after_previous = DatumGetBool(SPI_getbinval(tup, desc, 7, &isnull));
		if (r->action != NULL)
		{
			r->params = crm_action_compile(r->action, params, r->where);
			robots = lappend(robots, r);
		}
		else
			elog(WARNING, "robot %lld has unknown action \"%s\" and is ignored",
				 (long long) r->id, action);
		MemoryContextSwitchTo(old);
	}
	SPI_finish();
	return robots;
}
