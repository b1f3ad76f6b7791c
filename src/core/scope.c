/*-------------------------------------------------------------------------
 *
 * scope.c
 *	  Acting as automation (core/scope.h): owner identity, a restricted
 *	  operation, a pinned search_path.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "catalog/namespace.h"
#include "catalog/pg_namespace.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "jit/jit.h"
#include "optimizer/cost.h"
#include "optimizer/planner.h"
#include "utils/guc.h"
#include "utils/inval.h"
#include "utils/lsyscache.h"
#include "utils/syscache.h"

#include "core/scope.h"

/*
 * The owner is looked up once per backend and forgotten when any schema
 * changes (ALTER SCHEMA crm OWNER TO, DROP EXTENSION): every automation step
 * asks for it.
 */
static Oid	cached_owner = InvalidOid;
static bool owner_callback_registered = false;

static void
owner_invalidate(Datum arg, int cacheid, uint32 hashvalue)
{
	cached_owner = InvalidOid;
}

Oid
crm_automation_owner(void)
{
	Oid			nsp;
	HeapTuple	tup;
	Oid			owner;

	if (OidIsValid(cached_owner))
		return cached_owner;
	if (!owner_callback_registered)
	{
		CacheRegisterSyscacheCallback(NAMESPACEOID, owner_invalidate, (Datum) 0);
		owner_callback_registered = true;
	}
	nsp = get_namespace_oid("crm", false);
	tup = SearchSysCache1(NAMESPACEOID, ObjectIdGetDatum(nsp));
	if (!HeapTupleIsValid(tup))
		elog(ERROR, "cache lookup failed for namespace %u", nsp);
	owner = ((Form_pg_namespace) GETSTRUCT(tup))->nspowner;
	ReleaseSysCache(tup);
	cached_owner = owner;
	return owner;
}

static bool
path_pinned(void)
{
	return namespace_search_path != NULL &&
		strcmp(namespace_search_path, CRM_PINNED_SEARCH_PATH) == 0;
}

/*
 * The planner inside the scope (see scope.h): the statements run in it read
 * the tables they touch by index probes, never by scanning them or by
 * joining them whole, whatever the statistics said when they were planned;
 * and without JIT, which a plan that must still read a small table in full
 * (its cost above disable_cost, far above jit_above_cost) would switch on
 * for 100-140 ms of compiling.  The settings change for the planner's call
 * only: entering a scope sets nothing more than the path, and a statement
 * already planned costs nothing here.
 *
 * "Inside the scope" is read from what the scope sets and every abort
 * restores: a restricted operation, as the automation owner, under the
 * pinned path.  Nothing else runs so (REFRESH MATERIALIZED VIEW and
 * maintenance commands keep the caller's path).
 *
 * Foreign keys' checks of keys of the small definition tables (users,
 * departments, entity types, pipelines, stages: ri_triggers.c's SELECT 1
 * FROM [ONLY] table x WHERE key = $1 ... FOR KEY SHARE OF x) are planned as
 * PostgreSQL plans them for everyone: forbidding a sequential scan made each
 * check an index scan of a table of a few rows, dearer (a comment written by
 * a robot checked its two keys in about 20 % more instructions than the same
 * INSERT outside the scope).  Checks of keys of tables that grow keep the
 * ban: planned while such a table was small, a kept plan would read it whole
 * later.
 */
static planner_hook_type prev_planner = NULL;

static bool
is_foreign_key_check(Query *parse, const char *query_string)
{
	static const char *const small[] = {"user", "department", "entity_type", "pipeline", "stage"};
	RowMarkClause *rc;
	RangeTblEntry *rte;
	char	   *name;
	int			i;

	if (query_string == NULL || strncmp(query_string, "SELECT 1 FROM ", 14) != 0 ||
		parse->commandType != CMD_SELECT || list_length(parse->rtable) != 1 ||
		list_length(parse->rowMarks) != 1)
		return false;
	rc = linitial_node(RowMarkClause, parse->rowMarks);
	rte = linitial_node(RangeTblEntry, parse->rtable);
	if (rc->strength != LCS_FORKEYSHARE || rte->rtekind != RTE_RELATION ||
		get_rel_namespace(rte->relid) != get_namespace_oid("crm", true))
		return false;
	name = get_rel_name(rte->relid);
	for (i = 0; name != NULL && i < lengthof(small); i++)
		if (strcmp(name, small[i]) == 0)
			return true;
	return false;
}

static PlannedStmt *
scope_planner(Query *parse, const char *query_string, int cursor_options,
			  ParamListInfo bound_params)
{
	bool		pin;
	bool		saved_seqscan = enable_seqscan;
	bool		saved_hashjoin = enable_hashjoin;
	bool		saved_mergejoin = enable_mergejoin;
	bool		saved_jit = jit_enabled;
	PlannedStmt *result;

	pin = InSecurityRestrictedOperation() && OidIsValid(cached_owner) &&
		GetUserId() == cached_owner && path_pinned() &&
		!is_foreign_key_check(parse, query_string);
	if (pin)
	{
		enable_seqscan = false;
		enable_hashjoin = false;
		enable_mergejoin = false;
		jit_enabled = false;
	}
	PG_TRY();
	{
		if (prev_planner)
			result = prev_planner(parse, query_string, cursor_options, bound_params);
		else
			result = standard_planner(parse, query_string, cursor_options, bound_params);
	}
	PG_FINALLY();
	{
		if (pin)
		{
			enable_seqscan = saved_seqscan;
			enable_hashjoin = saved_hashjoin;
			enable_mergejoin = saved_mergejoin;
			jit_enabled = saved_jit;
		}
	}
	PG_END_TRY();
	return result;
}

void
crm_scope_init(void)
{
	prev_planner = planner_hook;
	planner_hook = scope_planner;
}

void
crm_scope_enter(CrmScope *scope, int flags)
{
	Oid			owner = crm_automation_owner();

	scope->flags = flags;
	GetUserIdAndSecContext(&scope->saved_userid, &scope->saved_sec);
	SetUserIdAndSecContext(owner, scope->saved_sec |
						   SECURITY_LOCAL_USERID_CHANGE |
						   SECURITY_RESTRICTED_OPERATION);

	/*
	 * A scope inside a scope (a robot's UPDATE running the next stage's
	 * robots) finds the path pinned already: nothing to set or undo.
	 */
	if (path_pinned())
		scope->guc_nest = -1;
	else
	{
		scope->guc_nest = NewGUCNestLevel();
		(void) set_config_option("search_path", CRM_PINNED_SEARCH_PATH,
								 PGC_USERSET, PGC_S_SESSION,
								 GUC_ACTION_SAVE, true, 0, false);
	}

	if (flags & CRM_SCOPE_SPI)
	{
		if (SPI_connect() != SPI_OK_CONNECT)
			elog(ERROR, "SPI_connect failed");
	}
}

void
crm_scope_leave(CrmScope *scope)
{
	if (scope->flags & CRM_SCOPE_SPI)
		SPI_finish();
	if (scope->guc_nest >= 0)
		AtEOXact_GUC(true, scope->guc_nest);
	SetUserIdAndSecContext(scope->saved_userid, scope->saved_sec);
}
