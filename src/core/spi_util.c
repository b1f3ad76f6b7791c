/*-------------------------------------------------------------------------
 *
 * spi_util.c
 *	  Prepared, kept SPI plans for the engine's fixed statements.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/namespace.h"
#include "executor/spi.h"
#include "utils/lsyscache.h"
#include "utils/plancache.h"

#include "core/spi_util.h"

SPIPlanPtr
crm_plan(SPIPlanPtr *slot, const char *sql, int nargs, const Oid *argtypes)
{
	return crm_plan_opts(slot, sql, nargs, argtypes, 0);
}

/*
 * The same, with cursor options: CURSOR_OPT_GENERIC_PLAN for a statement
 * run very often whose plan does not depend on its arguments' values (the
 * plan cache would otherwise plan it anew on each call).
 */
SPIPlanPtr
crm_plan_opts(SPIPlanPtr *slot, const char *sql, int nargs, const Oid *argtypes,
			  int cursor_options)
{
	SPIPlanPtr	plan;

	if (*slot != NULL)
		return *slot;
	plan = SPI_prepare_cursor(sql, nargs, (Oid *) argtypes, cursor_options);
	if (plan == NULL)
		elog(ERROR, "could not prepare \"%s\": %s", sql,
			 SPI_result_code_string(SPI_result));
	if (SPI_keepplan(plan) != 0)
		elog(ERROR, "could not keep plan for \"%s\"", sql);
	*slot = plan;
	return plan;
}

/*
 * read_only is deliberately ignored: a read-only execution would use the
 * statement's snapshot, and a robot must see what the robots before it (in
 * the same transaction) wrote.
 */
/*
 * A row count stops the executor early.  That suits a SELECT, but a
 * data-modifying statement stopped at its first RETURNING row never fires
 * its AFTER STATEMENT triggers (the worker's wake-up at commit, the rule
 * cache's invalidation): those always run to their end.
 */
static bool
plan_modifies(SPIPlanPtr plan)
{
	ListCell   *lc;

	foreach(lc, SPI_plan_get_plan_sources(plan))
	{
		CachedPlanSource *ps = (CachedPlanSource *) lfirst(lc);

		if (ps->commandTag != CMDTAG_SELECT)
			return true;
	}
	return false;
}

int
crm_exec(SPIPlanPtr plan, const Datum *values, const char *nulls,
		 bool read_only, long count)
{
	int			ret;

	if (count > 0 && plan_modifies(plan))
		count = 0;
	ret = SPI_execute_plan(plan, (Datum *) values, nulls, false, count);

	if (ret < 0)
		elog(ERROR, "SPI_execute_plan failed: %s", SPI_result_code_string(ret));
	return ret;
}

bool
crm_log_has_entries(void)
{
	Oid			nsp = get_namespace_oid("crm", true);

	return OidIsValid(nsp) && OidIsValid(get_relname_relid("robot_log_entry", nsp));
}

const char *
crm_log_table(void)
{
	return crm_log_has_entries() ? "crm.automation_log" : "crm.robot_log";
}
