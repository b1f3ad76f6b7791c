/*-------------------------------------------------------------------------
 *
 * lineage.c
 *	  What automation is running for which item, and the guard that runs a step alone.
 *
 * Loops: the transaction keeps the chain of (rule, item) pairs that led to
 * the current action (the lineage): robots ('r'), triggers ('t') and process
 * instances ('p') push themselves while they run.  A rule that would run
 * again for the same item inside its own chain is a cycle and is not run
 * (loop_stopped); crm.max_depth bounds long chains.  A later, separate
 * statement starts a new chain, so legitimate re-entry still runs.
 *
 * crm_run_isolated runs one step (a robot, a trigger's decision or move, a
 * process activity) in a subtransaction of its own, and puts the lineage
 * back when the step fails.
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

/* ---------- lineage ---------- */

#define MAX_LINEAGE 1024

typedef struct LineageEntry
{
	char		kind;			/* 'r' robot, 't' trigger, 'p' process instance */
	int64		rule_id;
	int64		item_id;
	char		entity_type[CRM_NAME_LEN];
	SubTransactionId subid;		/* pushed in this subtransaction */
} LineageEntry;

static LineageEntry lineage[MAX_LINEAGE];
static int	lineage_len = 0;
static bool xact_callback_registered = false;

/*
 * Steps caused by one change: everything that a statement's change of one
 * item caused, however wide (two copy_deal robots on a first stage double
 * on every level), is bounded by crm.max_steps.  The root is the item whose
 * automation started with an empty lineage, in the current top-level
 * statement; each item of a bulk statement is a root of its own.
 */
static int	root_steps = 0;
static int64 root_item_id = 0;
static char root_entity_type[CRM_NAME_LEN];
static TimestampTz root_statement = 0;

static void
robots_xact_callback(XactEvent event, void *arg)
{
	if (event == XACT_EVENT_COMMIT || event == XACT_EVENT_ABORT ||
		event == XACT_EVENT_PARALLEL_COMMIT || event == XACT_EVENT_PARALLEL_ABORT ||
		event == XACT_EVENT_PREPARE)
	{
		lineage_len = 0;
		root_steps = 0;
		root_item_id = 0;
	}
}

/*
 * What ran in a subtransaction that is rolled back (ROLLBACK TO SAVEPOINT
 * after an error escaped a statement, a PL/pgSQL exception block) is no
 * longer running: a retry must not be taken for a loop.
 */
static void
robots_subxact_callback(SubXactEvent event, SubTransactionId mySubid,
						SubTransactionId parentSubid, void *arg)
{
	if (event != SUBXACT_EVENT_ABORT_SUB)
		return;
	while (lineage_len > 0 && lineage[lineage_len - 1].subid >= mySubid)
		lineage_len--;
}

static const char *
lineage_kind_name(char kind)
{
	return kind == 'r' ? "robot" : kind == 'p' ? "process" : "trigger";
}

/*
 * Pushes (kind, rule, item) on the lineage.  Returns false, with a
 * description of the cycle in *cycle, when that pair is already running for
 * this item or the chain reached crm.max_depth.
 */
bool
crm_lineage_push(char kind, int64 rule_id, const char *entity_type,
				 int64 item_id, char **cycle)
{
	int			i;

	if (!xact_callback_registered)
	{
		RegisterXactCallback(robots_xact_callback, NULL);
		RegisterSubXactCallback(robots_subxact_callback, NULL);
		xact_callback_registered = true;
	}
	for (i = 0; i < lineage_len; i++)
	{
		if (lineage[i].kind == kind && lineage[i].rule_id == rule_id &&
			lineage[i].item_id == item_id &&
			strcmp(lineage[i].entity_type, entity_type) == 0)
		{
			StringInfoData buf;
			int			j;

			initStringInfo(&buf);
			for (j = i; j < lineage_len; j++)
				appendStringInfo(&buf, "%s %lld on %s %lld -> ",
								 lineage_kind_name(lineage[j].kind),
								 (long long) lineage[j].rule_id, lineage[j].entity_type,
								 (long long) lineage[j].item_id);
			appendStringInfo(&buf, "%s %lld on %s %lld",
							 lineage_kind_name(kind), (long long) rule_id,
							 entity_type, (long long) item_id);
			*cycle = buf.data;
			return false;
		}
	}
	if (lineage_len >= crm_max_depth || lineage_len >= MAX_LINEAGE)
	{
		*cycle = psprintf("automation depth %d reached (crm.max_depth)", lineage_len);
		return false;
	}
	if (lineage_len == 0 &&
		(root_item_id != item_id || root_statement != GetCurrentStatementStartTimestamp() ||
		 strcmp(root_entity_type, entity_type) != 0))
	{
		root_steps = 0;
		root_item_id = item_id;
		root_statement = GetCurrentStatementStartTimestamp();
		strlcpy(root_entity_type, entity_type, CRM_NAME_LEN);
	}
	if (root_steps >= crm_max_steps)
	{
		*cycle = psprintf("%d automation steps caused by one change reached (crm.max_steps)",
						  root_steps);
		return false;
	}
	root_steps++;
	lineage[lineage_len].kind = kind;
	lineage[lineage_len].subid = GetCurrentSubTransactionId();
	lineage[lineage_len].rule_id = rule_id;
	lineage[lineage_len].item_id = item_id;
	strlcpy(lineage[lineage_len].entity_type, entity_type, CRM_NAME_LEN);
	lineage_len++;
	return true;
}

void
crm_lineage_pop(void)
{
	if (lineage_len > 0)
		lineage_len--;
}

int
crm_lineage_depth(void)
{
	return lineage_len;
}

bool
crm_lineage_has(char kind)
{
	int			i;

	for (i = 0; i < lineage_len; i++)
		if (lineage[i].kind == kind)
			return true;
	return false;
}

bool
crm_lineage_would_push(char kind, int64 rule_id, const char *entity_type,
					   int64 item_id, int steps_before, char **why)
{
	int			steps;
	int			i;

	for (i = 0; i < lineage_len; i++)
		if (lineage[i].kind == kind && lineage[i].rule_id == rule_id &&
			lineage[i].item_id == item_id &&
			strcmp(lineage[i].entity_type, entity_type) == 0)
		{
			*why = psprintf("%s %lld already runs for %s %lld in this chain",
							lineage_kind_name(kind), (long long) rule_id,
							entity_type, (long long) item_id);
			return false;
		}
	if (lineage_len >= crm_max_depth || lineage_len >= MAX_LINEAGE)
	{
		*why = psprintf("automation depth %d reached (crm.max_depth)", lineage_len);
		return false;
	}
	/* an empty lineage starts a new change, counted from zero */
	steps = (lineage_len == 0 ? 0 : root_steps) + steps_before;
	if (steps >= crm_max_steps)
	{
		*why = psprintf("%d automation steps caused by one change reached (crm.max_steps)",
						steps);
		return false;
	}
	return true;
}

/* Back to an earlier depth, after an error skipped the pops. */
void
crm_lineage_restore(int depth)
{
	if (depth >= 0 && depth < lineage_len)
		lineage_len = depth;
}

/* ---------- the guard ---------- */

ErrorData *
crm_run_isolated(void (*body) (void *arg), void *arg)
{
	MemoryContext oldcxt = CurrentMemoryContext;
	ResourceOwner oldowner = CurrentResourceOwner;
	int			depth = crm_lineage_depth();
	ErrorData  *edata = NULL;

	BeginInternalSubTransaction(NULL);
	MemoryContextSwitchTo(oldcxt);
	PG_TRY();
	{
		body(arg);
		ReleaseCurrentSubTransaction();
		MemoryContextSwitchTo(oldcxt);
		CurrentResourceOwner = oldowner;
	}
	PG_CATCH();
	{
		MemoryContextSwitchTo(oldcxt);
		edata = CopyErrorData();
		FlushErrorState();
		RollbackAndReleaseCurrentSubTransaction();
		MemoryContextSwitchTo(oldcxt);
		CurrentResourceOwner = oldowner;
		while (crm_lineage_depth() > depth)
			crm_lineage_pop();
		if (edata->sqlerrcode == ERRCODE_QUERY_CANCELED)
			ReThrowError(edata);
	}
	PG_END_TRY();
	return edata;
}
