/*-------------------------------------------------------------------------
 *
 * launcher.c
 *	  Shared state of the workers, the launcher, and waking them up.
 *
 * The launcher is a static background worker connected to no database.  It
 * scans pg_database (as autovacuum does) and starts one dynamic worker per
 * connectable database; a worker that finds no crm_automation in its
 * database marks its slot ABSENT and leaves.  CREATE EXTENSION (through
 * crm.start_worker() at the end of the install script) and CREATE DATABASE
 * poke the launcher; otherwise it rescans every 30 seconds.  Workers are
 * registered never to be restarted by the postmaster: the launcher restarts
 * them itself, so that after a crash there is exactly one per database.
 *
 * A transaction that inserts into crm.outbox or crm.job sets the worker's
 * latch when it commits (never when it aborts), so a committed message is
 * picked up at once and an idle worker sleeps without polling.
 *
 * DROP DATABASE waits for nobody to be connected: a utility hook asks the
 * database's worker to leave first.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <signal.h>

#include "access/heapam.h"
#include "access/htup_details.h"
#include "access/tableam.h"
#include "access/xact.h"
#include "catalog/pg_database.h"
#include "commands/dbcommands.h"
#include "commands/trigger.h"
#include "fmgr.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "storage/proc.h"
#include "storage/shmem.h"
#include "storage/spin.h"
#include "tcop/utility.h"
#include "utils/builtins.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"

#include "crm_automation.h"
#include "worker.h"

#define CRM_MAX_DATABASES	256
#define LAUNCHER_NAP_MS		30000	/* rescan of pg_database */
#define RESTART_DELAY_MS	5000	/* between two starts of a failing worker */

typedef struct CrmWorkerSlot
{
	Oid			dboid;
	CrmWorkerState state;
	pid_t		pid;
	PGPROC	   *proc;
	bool		recheck;		/* CREATE EXTENSION: look again */
	TimestampTz changed_at;
} CrmWorkerSlot;

typedef struct CrmShared
{
	slock_t		mutex;
	PGPROC	   *launcher;
	CrmWorkerSlot slots[CRM_MAX_DATABASES];
} CrmShared;

static CrmShared *crm_shared = NULL;

static shmem_request_hook_type prev_shmem_request_hook = NULL;
static shmem_startup_hook_type prev_shmem_startup_hook = NULL;
static ProcessUtility_hook_type prev_ProcessUtility = NULL;

/* per-transaction requests, acted upon at commit */
static bool wake_at_commit = false;
static bool start_at_commit = false;
static bool xact_callback_registered = false;

/* the launcher's handles of the workers it started, by slot */
static BackgroundWorkerHandle *handles[CRM_MAX_DATABASES];

static const char *const state_names[] = {
	"free", "starting", "running", "absent", "stopped", "dropping"
};

static void
crm_shmem_request(void)
{
	if (prev_shmem_request_hook)
		prev_shmem_request_hook();
	RequestAddinShmemSpace(MAXALIGN(sizeof(CrmShared)));
}

static void
crm_shmem_startup(void)
{
	bool		found;

	if (prev_shmem_startup_hook)
		prev_shmem_startup_hook();

	LWLockAcquire(AddinShmemInitLock, LW_EXCLUSIVE);
	crm_shared = ShmemInitStruct("crm_automation", sizeof(CrmShared), &found);
	if (!found)
	{
		memset(crm_shared, 0, sizeof(CrmShared));
		SpinLockInit(&crm_shared->mutex);
	}
	LWLockRelease(AddinShmemInitLock);
}

/* The slot of a database, or -1; the caller holds the mutex. */
static int
slot_of(Oid dboid)
{
	int			i;

	for (i = 0; i < CRM_MAX_DATABASES; i++)
		if (crm_shared->slots[i].state != CRM_WORKER_FREE &&
			crm_shared->slots[i].dboid == dboid)
			return i;
	return -1;
}

static int
slot_alloc(Oid dboid)
{
	int			i;

	for (i = 0; i < CRM_MAX_DATABASES; i++)
	{
		if (crm_shared->slots[i].state == CRM_WORKER_FREE)
		{
			memset(&crm_shared->slots[i], 0, sizeof(CrmWorkerSlot));
			crm_shared->slots[i].dboid = dboid;
			crm_shared->slots[i].state = CRM_WORKER_STOPPED;
			return i;
		}
	}
	return -1;
}

static void
wake_launcher(void)
{
	PGPROC	   *proc;

	SpinLockAcquire(&crm_shared->mutex);
	proc = crm_shared->launcher;
	SpinLockRelease(&crm_shared->mutex);
	if (proc)
		SetLatch(&proc->procLatch);
}

/* ---------------------------------------------------------------------------
 * Wake-up at commit
 * ---------------------------------------------------------------------------
 */
static void
crm_xact_callback(XactEvent event, void *arg)
{
	PGPROC	   *proc = NULL;
	int			i;

	switch (event)
	{
		case XACT_EVENT_COMMIT:
		case XACT_EVENT_PARALLEL_COMMIT:
			if (crm_shared == NULL)
				break;
			if (wake_at_commit)
			{
				SpinLockAcquire(&crm_shared->mutex);
				i = slot_of(MyDatabaseId);
				if (i >= 0)
					proc = crm_shared->slots[i].proc;
				SpinLockRelease(&crm_shared->mutex);
				/* the worker's own commits need no wake-up */
				if (proc && proc != MyProc)
					SetLatch(&proc->procLatch);
			}
			if (start_at_commit)
			{
				SpinLockAcquire(&crm_shared->mutex);
				i = slot_of(MyDatabaseId);
				if (i < 0)
					i = slot_alloc(MyDatabaseId);
				if (i >= 0)
					crm_shared->slots[i].recheck = true;
				SpinLockRelease(&crm_shared->mutex);
				wake_launcher();
			}
			break;
		case XACT_EVENT_ABORT:
		case XACT_EVENT_PARALLEL_ABORT:
			break;
		default:
			return;
	}
	wake_at_commit = false;
	start_at_commit = false;
}

static void
ensure_xact_callback(void)
{
	if (!xact_callback_registered)
	{
		RegisterXactCallback(crm_xact_callback, NULL);
		xact_callback_registered = true;
	}
}

PG_FUNCTION_INFO_V1(crm_wake_worker_trigger);

/* Statement trigger on crm.outbox and crm.job: wake the worker at commit. */
Datum
crm_wake_worker_trigger(PG_FUNCTION_ARGS)
{
	if (!CALLED_AS_TRIGGER(fcinfo))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("crm._wake_worker() must be called as a trigger")));
	ensure_xact_callback();
	wake_at_commit = true;
	return PointerGetDatum(NULL);
}

PG_FUNCTION_INFO_V1(crm_start_worker);

Datum
crm_start_worker(PG_FUNCTION_ARGS)
{
	if (crm_shared == NULL)
	{
		ereport(WARNING,
				(errmsg("crm_automation is not in shared_preload_libraries: no worker will deliver messages or run delayed robots"),
				 errhint("Add crm_automation to shared_preload_libraries in postgresql.conf and restart the server.")));
		PG_RETURN_BOOL(false);
	}
	ensure_xact_callback();
	start_at_commit = true;
	PG_RETURN_BOOL(true);
}

PG_FUNCTION_INFO_V1(crm_worker_status);

Datum
crm_worker_status(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	CrmWorkerSlot copy[CRM_MAX_DATABASES];
	int			i;

	InitMaterializedSRF(fcinfo, 0);
	if (crm_shared == NULL)
		PG_RETURN_VOID();

	SpinLockAcquire(&crm_shared->mutex);
	memcpy(copy, crm_shared->slots, sizeof(copy));
	SpinLockRelease(&crm_shared->mutex);

	for (i = 0; i < CRM_MAX_DATABASES; i++)
	{
		Datum		values[3];
		bool		nulls[3] = {false, false, false};
		char	   *name;

		if (copy[i].state == CRM_WORKER_FREE)
			continue;
		name = get_database_name(copy[i].dboid);
		if (name == NULL)
			continue;
		values[0] = DirectFunctionCall1(namein, CStringGetDatum(name));
		values[1] = Int32GetDatum(copy[i].pid);
		nulls[1] = copy[i].pid == 0;
		values[2] = CStringGetTextDatum(state_names[copy[i].state]);
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
	PG_RETURN_VOID();
}

/* ---------------------------------------------------------------------------
 * Workers' side of the slots
 * ---------------------------------------------------------------------------
 */
static void
worker_detach(int code, Datum arg)
{
	Oid			dboid = DatumGetObjectId(arg);
	int			i;

	SpinLockAcquire(&crm_shared->mutex);
	i = slot_of(dboid);
	if (i >= 0 && crm_shared->slots[i].pid == MyProcPid)
	{
		if (crm_shared->slots[i].state == CRM_WORKER_RUNNING ||
			crm_shared->slots[i].state == CRM_WORKER_STARTING)
			crm_shared->slots[i].state = CRM_WORKER_STOPPED;
		crm_shared->slots[i].pid = 0;
		crm_shared->slots[i].proc = NULL;
		crm_shared->slots[i].changed_at = GetCurrentTimestamp();
	}
	SpinLockRelease(&crm_shared->mutex);
	wake_launcher();
}

void
crm_worker_attach(Oid dboid)
{
	int			i;

	SpinLockAcquire(&crm_shared->mutex);
	i = slot_of(dboid);
	if (i < 0)
		i = slot_alloc(dboid);
	if (i >= 0)
	{
		crm_shared->slots[i].pid = MyProcPid;
		crm_shared->slots[i].proc = MyProc;
		crm_shared->slots[i].state = CRM_WORKER_STARTING;
		crm_shared->slots[i].changed_at = GetCurrentTimestamp();
	}
	SpinLockRelease(&crm_shared->mutex);
	if (i < 0)
		ereport(ERROR,
				(errcode(ERRCODE_CONFIGURATION_LIMIT_EXCEEDED),
				 errmsg("crm_automation serves at most %d databases", CRM_MAX_DATABASES)));
	before_shmem_exit(worker_detach, ObjectIdGetDatum(dboid));
}

void
crm_worker_set_state(Oid dboid, CrmWorkerState state)
{
	int			i;

	SpinLockAcquire(&crm_shared->mutex);
	i = slot_of(dboid);
	if (i >= 0 && crm_shared->slots[i].pid == MyProcPid)
	{
		/* a DROP DATABASE in progress keeps its mark */
		if (crm_shared->slots[i].state != CRM_WORKER_DROPPING)
			crm_shared->slots[i].state = state;
		crm_shared->slots[i].changed_at = GetCurrentTimestamp();
	}
	SpinLockRelease(&crm_shared->mutex);
}

/* ---------------------------------------------------------------------------
 * Utility hook: DROP DATABASE, DROP EXTENSION, CREATE DATABASE
 * ---------------------------------------------------------------------------
 */
static void
stop_worker_for_drop(const char *dbname)
{
	Oid			dboid = get_database_oid(dbname, true);
	pid_t		pid = 0;
	int			i;
	int			waited;

	if (!OidIsValid(dboid) || crm_shared == NULL)
		return;

	SpinLockAcquire(&crm_shared->mutex);
	i = slot_of(dboid);
	if (i >= 0)
	{
		crm_shared->slots[i].state = CRM_WORKER_DROPPING;
		crm_shared->slots[i].changed_at = GetCurrentTimestamp();
		pid = crm_shared->slots[i].pid;
	}
	SpinLockRelease(&crm_shared->mutex);
	if (pid == 0)
		return;

	kill(pid, SIGTERM);
	/* wait up to 10 s for it to leave; dropdb itself then waits 5 s more */
	for (waited = 0; waited < 1000; waited++)
	{
		bool		gone;

		SpinLockAcquire(&crm_shared->mutex);
		gone = (crm_shared->slots[i].pid != pid);
		SpinLockRelease(&crm_shared->mutex);
		if (gone)
			break;
		CHECK_FOR_INTERRUPTS();
		pg_usleep(10000L);
	}
}

static void
crm_ProcessUtility(PlannedStmt *pstmt, const char *queryString, bool readOnlyTree,
				   ProcessUtilityContext context, ParamListInfo params,
				   QueryEnvironment *queryEnv, DestReceiver *dest, QueryCompletion *qc)
{
	Node	   *parsetree = pstmt->utilityStmt;

	if (IsA(parsetree, DropdbStmt))
		stop_worker_for_drop(((DropdbStmt *) parsetree)->dbname);

	if (prev_ProcessUtility)
		prev_ProcessUtility(pstmt, queryString, readOnlyTree, context, params,
							queryEnv, dest, qc);
	else
		standard_ProcessUtility(pstmt, queryString, readOnlyTree, context, params,
								queryEnv, dest, qc);

	if (crm_shared == NULL)
		return;
	if (IsA(parsetree, DropStmt) &&
		((DropStmt *) parsetree)->removeType == OBJECT_EXTENSION)
	{
		/* the worker notices at its next wake-up that its extension is gone */
		ensure_xact_callback();
		wake_at_commit = true;
	}
	else if (IsA(parsetree, CreatedbStmt))
		wake_launcher();
}

/* ---------------------------------------------------------------------------
 * The launcher
 * ---------------------------------------------------------------------------
 */

/* Connectable, non-template, valid databases. */
static List *
database_list(void)
{
	List	   *dbs = NIL;
	Relation	rel;
	TableScanDesc scan;
	HeapTuple	tup;
	MemoryContext caller = CurrentMemoryContext;

	StartTransactionCommand();
	(void) GetTransactionSnapshot();
	rel = table_open(DatabaseRelationId, AccessShareLock);
	scan = table_beginscan_catalog(rel, 0, NULL);
	while (HeapTupleIsValid(tup = heap_getnext(scan, ForwardScanDirection)))
	{
		Form_pg_database db = (Form_pg_database) GETSTRUCT(tup);
		MemoryContext old;

		if (!db->datallowconn || db->datistemplate || database_is_invalid_form(db))
			continue;
		old = MemoryContextSwitchTo(caller);
		dbs = lappend_oid(dbs, db->oid);
		MemoryContextSwitchTo(old);
	}
	table_endscan(scan);
	table_close(rel, AccessShareLock);
	CommitTransactionCommand();
	return dbs;
}

static bool
start_worker(int slot, Oid dboid)
{
	BackgroundWorker w;

	memset(&w, 0, sizeof(w));
	w.bgw_flags = BGWORKER_SHMEM_ACCESS | BGWORKER_BACKEND_DATABASE_CONNECTION;
	w.bgw_start_time = BgWorkerStart_RecoveryFinished;
	w.bgw_restart_time = BGW_NEVER_RESTART;
	snprintf(w.bgw_library_name, BGW_MAXLEN, "crm_automation");
	snprintf(w.bgw_function_name, BGW_MAXLEN, "crm_worker_main");
	snprintf(w.bgw_name, BGW_MAXLEN, "crm_automation worker %u", dboid);
	snprintf(w.bgw_type, BGW_MAXLEN, "crm_automation worker");
	w.bgw_main_arg = ObjectIdGetDatum(dboid);
	w.bgw_notify_pid = MyProcPid;

	if (handles[slot])
		pfree(handles[slot]);
	handles[slot] = NULL;
	if (!RegisterDynamicBackgroundWorker(&w, &handles[slot]))
	{
		ereport(LOG,
				(errmsg("crm_automation: no background worker slot left for database %u", dboid),
				 errhint("Raise max_worker_processes.")));
		return false;
	}
	return true;
}

/* One pass: start what should run.  Returns the delay until the next pass. */
static long
launcher_pass(void)
{
	List	   *dbs = database_list();
	TimestampTz now = GetCurrentTimestamp();
	long		nap = LAUNCHER_NAP_MS;
	int			i;
	ListCell   *lc;

	/* forget databases that are gone */
	SpinLockAcquire(&crm_shared->mutex);
	for (i = 0; i < CRM_MAX_DATABASES; i++)
	{
		CrmWorkerSlot *s = &crm_shared->slots[i];

		if (s->state != CRM_WORKER_FREE && s->pid == 0 &&
			!list_member_oid(dbs, s->dboid))
			s->state = CRM_WORKER_FREE;
	}
	SpinLockRelease(&crm_shared->mutex);

	foreach(lc, dbs)
	{
		Oid			dboid = lfirst_oid(lc);
		bool		start = false;
		pid_t		pid;

		SpinLockAcquire(&crm_shared->mutex);
		i = slot_of(dboid);
		if (i < 0)
		{
			i = slot_alloc(dboid);
			if (i >= 0)
				crm_shared->slots[i].changed_at = 0;
		}
		if (i >= 0)
		{
			CrmWorkerSlot *s = &crm_shared->slots[i];

			switch (s->state)
			{
				case CRM_WORKER_STOPPED:
					if (TimestampDifferenceExceeds(s->changed_at, now, RESTART_DELAY_MS) ||
						s->changed_at == 0 || s->recheck)
						start = true;
					else
						nap = Min(nap, RESTART_DELAY_MS);
					break;
				case CRM_WORKER_ABSENT:
					start = s->recheck;
					break;
				case CRM_WORKER_STARTING:
					/* registered but never attached (e.g. could not connect) */
					if (s->pid == 0 && handles[i] != NULL &&
						GetBackgroundWorkerPid(handles[i], &pid) == BGWH_STOPPED)
						start = TimestampDifferenceExceeds(s->changed_at, now, RESTART_DELAY_MS);
					else if (s->pid == 0 && handles[i] == NULL)
						start = TimestampDifferenceExceeds(s->changed_at, now, 10000);
					if (!start && s->pid == 0)
						nap = Min(nap, RESTART_DELAY_MS);
					break;
				case CRM_WORKER_DROPPING:
					/* the database survived: DROP DATABASE failed */
					if (s->pid == 0 && TimestampDifferenceExceeds(s->changed_at, now, 10000))
						start = true;
					else
						nap = Min(nap, 10000);
					break;
				default:
					break;
			}
			if (start)
			{
				s->state = CRM_WORKER_STARTING;
				s->recheck = false;
				s->changed_at = now;
			}
		}
		SpinLockRelease(&crm_shared->mutex);

		if (start && !start_worker(i, dboid))
		{
			SpinLockAcquire(&crm_shared->mutex);
			crm_shared->slots[i].state = CRM_WORKER_STOPPED;
			crm_shared->slots[i].changed_at = now;
			SpinLockRelease(&crm_shared->mutex);
			nap = Min(nap, RESTART_DELAY_MS);
		}
	}
	list_free(dbs);
	return nap;
}

void
crm_launcher_main(Datum arg)
{
	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	pqsignal(SIGTERM, die);
	BackgroundWorkerUnblockSignals();
	BackgroundWorkerInitializeConnection(NULL, NULL, 0);
	pgstat_report_appname("crm_automation launcher");

	SpinLockAcquire(&crm_shared->mutex);
	crm_shared->launcher = MyProc;
	SpinLockRelease(&crm_shared->mutex);

	for (;;)
	{
		long		nap;

		CHECK_FOR_INTERRUPTS();
		if (ConfigReloadPending)
		{
			ConfigReloadPending = false;
			ProcessConfigFile(PGC_SIGHUP);
		}
		nap = launcher_pass();
		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 nap, PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
	}
}

void
crm_launcher_init(void)
{
	BackgroundWorker w;

	/* wake-up at commit works in every backend, preloaded or not */
	if (!process_shared_preload_libraries_in_progress)
		return;

	prev_shmem_request_hook = shmem_request_hook;
	shmem_request_hook = crm_shmem_request;
	prev_shmem_startup_hook = shmem_startup_hook;
	shmem_startup_hook = crm_shmem_startup;
	prev_ProcessUtility = ProcessUtility_hook;
	ProcessUtility_hook = crm_ProcessUtility;

	memset(&w, 0, sizeof(w));
	w.bgw_flags = BGWORKER_SHMEM_ACCESS | BGWORKER_BACKEND_DATABASE_CONNECTION;
	w.bgw_start_time = BgWorkerStart_RecoveryFinished;
	w.bgw_restart_time = 5;
	snprintf(w.bgw_library_name, BGW_MAXLEN, "crm_automation");
	snprintf(w.bgw_function_name, BGW_MAXLEN, "crm_launcher_main");
	snprintf(w.bgw_name, BGW_MAXLEN, "crm_automation launcher");
	snprintf(w.bgw_type, BGW_MAXLEN, "crm_automation launcher");
	RegisterBackgroundWorker(&w);
}
