/*-------------------------------------------------------------------------
 *
 * scope.h
 *	  Acting as automation: the one way in and out.
 *
 * Robots, triggers, delayed jobs, process activities and the exceptions
 * list are rules an administrator defined: they act with the privileges of
 * the extension's owner (the owner of schema crm), so that an application
 * role that moves a deal need not be able to write the log, jobs or outbox.
 * The role that caused them must never get code of its own run with those
 * privileges, so the scope also
 *
 *	- marks the operation SECURITY_RESTRICTED_OPERATION (as VACUUM and
 *	  REFRESH MATERIALIZED VIEW do for a table owner's code): no SET ROLE,
 *	  no temporary objects, no cursors WITH HOLD;
 *	- pins search_path to "pg_catalog, pg_temp" at a new GUC nest level, so
 *	  that no operator, function or table in a schema the caller controls is
 *	  found by name (the extension's SQL names crm. objects explicitly, and
 *	  kept plans are never replanned under the caller's path);
 *	- plans its statements without sequential scans, hash joins, merge
 *	  joins or JIT (a planner hook, crm_scope_init, turns enable_seqscan,
 *	  enable_hashjoin, enable_mergejoin and jit off for the planner's call
 *	  while in a scope): a kept plan is made once, from the statistics of
 *	  the moment (often "empty table": a new installation, or a table that
 *	  grew inside the statement), and must still cost O(log n) when the
 *	  table holds millions of rows.  So every statement here reads the
 *	  tables it touches by index probes (the indexes each needs exist;
 *	  test/integration/automation_plans.sh checks the plans), and a table
 *	  with no index to use is still read in full, as before;
 *	- connects to SPI when asked.
 *
 * crm_scope_leave undoes all of it in reverse.  On an error the
 * (sub)transaction's abort undoes it as well: the user id, the GUC nest
 * level and SPI are all restored by AbortSubTransaction / AbortTransaction,
 * so callers need no PG_TRY for the scope alone.
 *
 *-------------------------------------------------------------------------
 */
#ifndef CRM_SCOPE_H
#define CRM_SCOPE_H

/* The search_path automation runs with. */
#define CRM_PINNED_SEARCH_PATH "pg_catalog, pg_temp"

/* crm_scope_enter's flags */
#define CRM_SCOPE_SPI	0x01	/* SPI_connect on entry, SPI_finish on leave */

typedef struct CrmScope
{
	Oid			saved_userid;
	int			saved_sec;
	int			guc_nest;		/* -1: the path was already pinned */
	int			flags;
} CrmScope;

extern void crm_scope_enter(CrmScope *scope, int flags);
extern void crm_scope_leave(CrmScope *scope);

/* Installs the scope's planner hook (from _PG_init). */
extern void crm_scope_init(void);

/* The role automation acts as: the owner of schema crm. */
extern Oid	crm_automation_owner(void);

#endif							/* CRM_SCOPE_H */
