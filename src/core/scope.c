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
#include "utils/guc.h"
#include "utils/inval.h"
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

/*
 * The planner settings of the scope (see scope.h): the statements run in it
 * read the tables they touch by index probes, never by scanning them or by
 * joining them whole, whatever the statistics said when they were planned.
 * JIT goes too: a plan that must read a small table in full costs more than
 * disable_cost, far above jit_above_cost, and compiling it took 100-140 ms
 * of every new session's first write.
 */
static const char *const probe_settings[] = {
	"enable_seqscan", "enable_hashjoin", "enable_mergejoin", "jit"
};

static bool
settings_pinned(void)
{
	return !enable_seqscan && !enable_hashjoin && !enable_mergejoin && !jit_enabled &&
		namespace_search_path != NULL &&
		strcmp(namespace_search_path, CRM_PINNED_SEARCH_PATH) == 0;
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
	 * robots) finds the settings pinned already: nothing to set or undo.
	 */
	if (settings_pinned())
		scope->guc_nest = -1;
	else
	{
		int			i;

		scope->guc_nest = NewGUCNestLevel();
		(void) set_config_option("search_path", CRM_PINNED_SEARCH_PATH,
								 PGC_USERSET, PGC_S_SESSION,
								 GUC_ACTION_SAVE, true, 0, false);
		for (i = 0; i < lengthof(probe_settings); i++)
			(void) set_config_option(probe_settings[i], "off",
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
