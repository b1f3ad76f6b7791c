/*-------------------------------------------------------------------------
 *
 * launcher.c
 *	  Shared state of the workers, the launcher, and waking them up.
 *
 * The launcher is a static background worker connected to no database.  It
 * scans pg_database (as autovacuum does) and starts a dynamic worker per
 * connectable database; a worker that finds no crm_automation in its
 * database marks its slot ABSENT and leaves.  Once that first worker runs,
 * the launcher starts its siblings, up to crm.workers_per_database (never
 * more than crm.worker_concurrency): they claim from the same outbox, and
 * only the first runs due jobs.  CREATE EXTENSION (through
 * crm.start_worker() at the end of the install script) and CREATE DATABASE
 * poke the launcher; otherwise it rescans every 30 seconds.  Workers are
 * registered never to be restarted by the postmaster: the launcher restarts
 * them itself, so that after a crash there is exactly one per database and
 * rank.  A worker whose rank is no longer wanted (the setting was lowered)
 * leaves at its next reload.
 *
 * A transaction that inserts into crm.outbox or crm.job sets the latch of
 * one of its database's workers when it commits (never when it aborts): the
 * first one running.  A worker whose claim was full (more messages wait)
 * sets its next sibling's latch, so a burst draws every worker in, while a
 * trickle of messages wakes only one and the others sleep without polling.
 *
 * A prepared transaction's commit is not this backend's: COMMIT PREPARED
 * (the utility hook) wakes the workers of its database once it has run,
 * whatever the transaction wrote (a latch costs nothing; the worker then
 * looks for due jobs and messages once).
 *
 * DROP DATABASE, CREATE DATABASE ... TEMPLATE and ALTER DATABASE ... RENAME
 * fail while anybody else is connected to the database: a utility hook asks
 * its workers to leave first, once the statement is sure to get past its
 * permission checks (a role that may not run it stops nothing).  After a
 * copy or a rename, or a drop that failed, the launcher starts them again
 * at once (a rename keeps the OID they connect by).
 *
 * With crm.worker_enabled off the workers leave at their next reload and
 * the launcher starts none until it is on again.
 *
 * Limits are said by database name: a database beyond the slots of shared
 * memory (once), a worker that finds no background worker process (once a
 * minute per database), and CREATE EXTENSION when max_worker_processes
 * cannot hold the launcher and every database's workers.
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
#include "commands/defrem.h"
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
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/syscache.h"
#include "utils/timestamp.h"

#include "core/guc.h"
#include "delivery/worker.h"

#define CRM_MAX_DATABASES	256
#define LAUNCHER_NAP_MS		30000	/* rescan of pg_database */
#define RESTART_DELAY_MS	5000	/* between two starts of a failing worker */

/* One worker of a database. */
typedef struct CrmWorkerSlot
{
	CrmWorkerState state;
	pid_t		pid;
	PGPROC	   *proc;
	TimestampTz changed_at;
} CrmWorkerSlot;

/* A database and its workers, by rank (0 runs the jobs). */
typedef struct CrmDatabaseSlot
{
	Oid			dboid;
	bool		used;
	bool		recheck;		/* CREATE EXTENSION: look again */
	CrmWorkerSlot workers[CRM_WORKER_SLOTS];

	/*
	 * The furthest message any of its delivery workers claimed, in the
	 * claim's order (due time, then id): their claims start after it
	 * (worker.c).
	 */
	bool		claim_valid;
	TimestampTz claim_at;
	int64		claim_id;
} CrmDatabaseSlot;

typedef struct CrmShared
{
	slock_t		mutex;
	PGPROC	   *launcher;
	CrmDatabaseSlot slots[CRM_MAX_DATABASES];
} CrmShared;

static CrmShared *crm_shared = NULL;

static shmem_request_hook_type prev_shmem_request_hook = NULL;
static shmem_startup_hook_type prev_shmem_startup_hook = NULL;
static ProcessUtility_hook_type prev_ProcessUtility = NULL;

/* per-transaction requests, acted upon at commit */
static bool wake_at_commit = false;	/* the transaction wrote crm.outbox */
static bool wake_all_at_commit = false;
static bool jobs_at_commit = false;	/* the transaction wrote crm.job */
static bool start_at_commit = false;
static bool xact_callback_registered = false;

/* the launcher's handles of the workers it started, by slot and rank */
static BackgroundWorkerHandle *handles[CRM_MAX_DATABASES][CRM_WORKER_SLOTS];

/* in a database worker: its slot and rank (-1: not a worker) */
static int	my_slot = -1;
static int	my_rank = -1;

static const char *const state_names[] = {
	"free", "starting", "running", "absent", "stopped", "dropping", "paused",
	"disabled"
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
		if (crm_shared->slots[i].used && crm_shared->slots[i].dboid == dboid)
			return i;
	return -1;
}

static int
slot_alloc(Oid dboid)
{
	int			i;
	int			r;

	for (i = 0; i < CRM_MAX_DATABASES; i++)
	{
		if (!crm_shared->slots[i].used)
		{
			memset(&crm_shared->slots[i], 0, sizeof(CrmDatabaseSlot));
			crm_shared->slots[i].dboid = dboid;
			crm_shared->slots[i].used = true;
			for (r = 0; r < CRM_WORKER_SLOTS; r++)
				crm_shared->slots[i].workers[r].state = CRM_WORKER_STOPPED;
			return i;
		}
	}
	return -1;
}

/* How many workers each database runs: the setting, within the slots. */
int
crm_workers_wanted(void)
{
	return Max(Min(crm_workers_per_database, crm_worker_concurrency), 1);
}

/* Whether a rank (a delivery worker's, or a job runner's) is wanted. */
bool
crm_rank_wanted(int rank)
{
	if (rank < CRM_JOB_RANK_BASE)
		return rank < crm_workers_wanted();
	return rank - CRM_JOB_RANK_BASE < crm_job_workers;
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

/*
 * Sets the latch of the first running worker of a database, of one role
 * (delivery, or jobs), whose rank in that role is from (wrapping around),
 * other than the caller; or of every worker of the database.
 */
static void
wake_workers(Oid dboid, bool jobs, int from, bool all)
{
	PGPROC	   *procs[CRM_WORKER_SLOTS];
	int			n = 0;
	int			base = jobs ? CRM_JOB_RANK_BASE : 0;
	int			size = jobs ? CRM_MAX_JOB_WORKERS : CRM_MAX_WORKERS_PER_DATABASE;
	int			i;
	int			k;

	if (all)
	{
		base = 0;
		size = CRM_WORKER_SLOTS;
	}
	SpinLockAcquire(&crm_shared->mutex);
	i = slot_of(dboid);
	for (k = 0; i >= 0 && k < size; k++)
	{
		int			r = base + (from + k) % size;
		PGPROC	   *proc = crm_shared->slots[i].workers[r].proc;

		if (proc == NULL || proc == MyProc || (!all && !crm_rank_wanted(r)))
			continue;
		procs[n++] = proc;
		if (!all)
			break;
	}
	SpinLockRelease(&crm_shared->mutex);
	for (k = 0; k < n; k++)
		SetLatch(&procs[k]->procLatch);
}

/*
 * A worker whose claim was full draws its next sibling of the same role in
 * (a delivery worker the next delivery worker, a job runner the next job
 * runner).
 */
void
crm_worker_wake_next(void)
{
	if (crm_shared == NULL || my_rank < 0)
		return;
	if (my_rank >= CRM_JOB_RANK_BASE)
	{
		if (crm_job_workers > 1)
			wake_workers(MyDatabaseId, true, my_rank - CRM_JOB_RANK_BASE + 1, false);
	}
	else if (crm_workers_wanted() > 1)
		wake_workers(MyDatabaseId, false, my_rank + 1, false);
}

/*
 * The launcher looks at the database again (starts its workers if it has
 * none): CREATE EXTENSION committed, here or by COMMIT PREPARED.
 */
static void
request_start(Oid dbid)
{
	int			i;

	SpinLockAcquire(&crm_shared->mutex);
	i = slot_of(dbid);
	if (i < 0)
		i = slot_alloc(dbid);
	if (i >= 0)
		crm_shared->slots[i].recheck = true;
	SpinLockRelease(&crm_shared->mutex);
	wake_launcher();
}

static void
crm_xact_callback(XactEvent event, void *arg)
{
	switch (event)
	{
		case XACT_EVENT_COMMIT:
		case XACT_EVENT_PARALLEL_COMMIT:
			if (crm_shared == NULL)
				break;
			/*
			 * Messages wake the first delivery worker, jobs the first job
			 * runner; a worker's own commits wake no worker of its role
			 * (it looks again itself), but a job runner's queued messages
			 * wake delivery, and a delivery worker's record that changed a
			 * job (a wait ending with its message) wakes a job runner.
			 */
			if (wake_all_at_commit)
				wake_workers(MyDatabaseId, false, 0, true);
			else
			{
				bool		i_deliver = my_rank >= 0 && my_rank < CRM_JOB_RANK_BASE;
				bool		i_run_jobs = my_rank >= CRM_JOB_RANK_BASE;

				if (wake_at_commit && !i_deliver)
					wake_workers(MyDatabaseId, false, 0, false);
				if (jobs_at_commit && !i_run_jobs)
					wake_workers(MyDatabaseId, true, 0, false);
			}
			if (start_at_commit)
				request_start(MyDatabaseId);
			break;
		case XACT_EVENT_ABORT:
		case XACT_EVENT_PARALLEL_ABORT:
			break;
		case XACT_EVENT_PREPARE:

			/*
			 * Whether it commits is known only at COMMIT PREPARED, perhaps in
			 * another session: that statement wakes the workers (the utility
			 * hook).  Nothing is left to the next transaction of this one.
			 */
			break;
		default:
			return;
	}
	wake_at_commit = false;
	wake_all_at_commit = false;
	jobs_at_commit = false;
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
	/* a simulated statement is rolled back: nothing to wake anyone for */
	if (crm_simulating)
		return PointerGetDatum(NULL);
	ensure_xact_callback();
	/* crm.job's trigger says so: its commit wakes a job runner */
	if (((TriggerData *) fcinfo->context)->tg_trigger->tgnargs > 0)
		jobs_at_commit = true;
	else
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
	CrmDatabaseSlot *copy;
	int			i;
	int			r;

	InitMaterializedSRF(fcinfo, 0);
	if (crm_shared == NULL)
		PG_RETURN_VOID();

	copy = palloc(sizeof(crm_shared->slots));
	SpinLockAcquire(&crm_shared->mutex);
	memcpy(copy, crm_shared->slots, sizeof(crm_shared->slots));
	SpinLockRelease(&crm_shared->mutex);

	for (i = 0; i < CRM_MAX_DATABASES; i++)
	{
		char	   *name;

		if (!copy[i].used)
			continue;
		name = get_database_name(copy[i].dboid);
		if (name == NULL)
			continue;
		for (r = 0; r < CRM_WORKER_SLOTS; r++)
		{
			CrmWorkerSlot *w = &copy[i].workers[r];
			bool		jobs = r >= CRM_JOB_RANK_BASE;

			/* 0.1.0's function has no role column: heap_form_tuple reads 4 */
			Datum		values[5];
			bool		nulls[5] = {false, false, false, false, false};

			/*
			 * Ranks no longer wanted, once gone, are not workers any more;
			 * nor are the siblings of a first worker that found no
			 * extension, or that were never started.
			 */
			if (w->pid == 0 && r > 0 &&
				(!crm_rank_wanted(r) || copy[i].workers[0].state == CRM_WORKER_ABSENT ||
				 (w->state == CRM_WORKER_STOPPED && w->changed_at == 0)))
				continue;
			values[0] = DirectFunctionCall1(namein, CStringGetDatum(name));
			values[1] = Int32GetDatum(jobs ? r - CRM_JOB_RANK_BASE : r);
			values[2] = Int32GetDatum(w->pid);
			nulls[2] = w->pid == 0;
			values[3] = CStringGetTextDatum(state_names[w->state]);
			values[4] = CStringGetTextDatum(jobs ? "jobs" : "delivery");
			tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
		}
	}
	PG_RETURN_VOID();
}

/* ---------------------------------------------------------------------------
 * Workers' side of the slots
 * ---------------------------------------------------------------------------
 */

/*
 * The furthest message this database's delivery workers claimed (false:
 * none known, claim from the start).
 */
bool
crm_claim_point(TimestampTz *at, int64 *id)
{
	bool		valid = false;

	if (crm_shared == NULL || my_slot < 0)
		return false;
	SpinLockAcquire(&crm_shared->mutex);
	if (crm_shared->slots[my_slot].claim_valid)
	{
		valid = true;
		*at = crm_shared->slots[my_slot].claim_at;
		*id = crm_shared->slots[my_slot].claim_id;
	}
	SpinLockRelease(&crm_shared->mutex);
	return valid;
}

/* A claim went as far as (at, id): moves the database's point there if further. */
void
crm_claim_point_advance(TimestampTz at, int64 id)
{
	CrmDatabaseSlot *d;

	if (crm_shared == NULL || my_slot < 0)
		return;
	SpinLockAcquire(&crm_shared->mutex);
	d = &crm_shared->slots[my_slot];
	if (!d->claim_valid || at > d->claim_at || (at == d->claim_at && id > d->claim_id))
	{
		d->claim_valid = true;
		d->claim_at = at;
		d->claim_id = id;
	}
	SpinLockRelease(&crm_shared->mutex);
}

/* Forgets the point (ids may start again: the extension was dropped). */
void
crm_claim_point_reset(void)
{
	if (crm_shared == NULL || my_slot < 0)
		return;
	SpinLockAcquire(&crm_shared->mutex);
	crm_shared->slots[my_slot].claim_valid = false;
	SpinLockRelease(&crm_shared->mutex);
}

/* This worker's slot, if it still holds it; the caller holds the mutex. */
static CrmWorkerSlot *
my_worker_slot(void)
{
	CrmWorkerSlot *w;

	if (my_slot < 0)
		return NULL;
	w = &crm_shared->slots[my_slot].workers[my_rank];
	return w->pid == MyProcPid ? w : NULL;
}

static void
worker_detach(int code, Datum arg)
{
	CrmWorkerSlot *w;
	TimestampTz now = GetCurrentTimestamp();

	SpinLockAcquire(&crm_shared->mutex);
	w = my_worker_slot();
	if (w)
	{
		if (w->state == CRM_WORKER_RUNNING || w->state == CRM_WORKER_STARTING)
			w->state = CRM_WORKER_STOPPED;
		w->pid = 0;
		w->proc = NULL;
		w->changed_at = now;
	}
	SpinLockRelease(&crm_shared->mutex);
	wake_launcher();
}

void
crm_worker_attach(Oid dboid, int rank)
{
	int			i;
	bool		stepped_aside = false;
	TimestampTz now;

	if (rank < 0 || rank >= CRM_WORKER_SLOTS)
		elog(ERROR, "crm_automation worker of rank %d", rank);
	now = GetCurrentTimestamp();
	SpinLockAcquire(&crm_shared->mutex);
	i = slot_of(dboid);
	if (i < 0)
		i = slot_alloc(dboid);
	if (i >= 0)
	{
		CrmWorkerSlot *w = &crm_shared->slots[i].workers[rank];

		/*
		 * Started just before a statement asked this database's workers to
		 * leave: it did not see this one, which leaves by itself.
		 */
		stepped_aside = w->state == CRM_WORKER_DROPPING ||
			w->state == CRM_WORKER_PAUSED;
		if (!stepped_aside)
		{
			w->pid = MyProcPid;
			w->proc = MyProc;
			w->state = CRM_WORKER_STARTING;
			w->changed_at = now;
		}
	}
	SpinLockRelease(&crm_shared->mutex);
	if (stepped_aside)
		proc_exit(0);
	if (i < 0)
		ereport(ERROR,
				(errcode(ERRCODE_CONFIGURATION_LIMIT_EXCEEDED),
				 errmsg("crm_automation serves at most %d databases", CRM_MAX_DATABASES)));
	my_slot = i;
	my_rank = rank;
	before_shmem_exit(worker_detach, (Datum) 0);
}

void
crm_worker_set_state(CrmWorkerState state)
{
	CrmWorkerSlot *w;
	TimestampTz now = GetCurrentTimestamp();

	SpinLockAcquire(&crm_shared->mutex);
	w = my_worker_slot();
	if (w)
	{
		/* a DROP DATABASE, a copy or a rename in progress keeps its mark */
		if (w->state != CRM_WORKER_DROPPING && w->state != CRM_WORKER_PAUSED)
			w->state = state;
		w->changed_at = now;
	}
	SpinLockRelease(&crm_shared->mutex);
	/* the first worker running: the launcher starts its siblings */
	if (state == CRM_WORKER_RUNNING && my_rank == 0)
		wake_launcher();
}

/* ---------------------------------------------------------------------------
 * Utility hook: DROP DATABASE, CREATE DATABASE, ALTER DATABASE ... RENAME,
 * DROP EXTENSION, COMMIT PREPARED
 * ---------------------------------------------------------------------------
 */

/*
 * The database whose workers a statement needs gone, with the mark they get
 * (DROPPING or PAUSED), or InvalidOid.  Only when the statement will get
 * past the checks the server makes before it looks for other sessions (in
 * the same order as dropdb, createdb and RenameDatabase): a role that may
 * not drop, copy or rename the database must not stop its workers.
 */
static Oid
database_to_leave(Node *parsetree, bool isTopLevel, CrmWorkerState *mark)
{
	Oid			dboid = InvalidOid;

	if (IsA(parsetree, DropdbStmt))
	{
		/* DROP DATABASE refuses a transaction block and a function */
		if (!isTopLevel || IsTransactionBlock())
			return InvalidOid;
		dboid = get_database_oid(((DropdbStmt *) parsetree)->dbname, true);
		if (!OidIsValid(dboid) || dboid == MyDatabaseId ||
			!pg_database_ownercheck(dboid, GetUserId()))
			return InvalidOid;
		*mark = CRM_WORKER_DROPPING;
	}
	else if (IsA(parsetree, CreatedbStmt))
	{
		ListCell   *lc;
		HeapTuple	tup;
		bool		is_template;

		if (!isTopLevel || IsTransactionBlock() || !have_createdb_privilege())
			return InvalidOid;
		foreach(lc, ((CreatedbStmt *) parsetree)->options)
		{
			DefElem    *d = lfirst(lc);

			if (strcmp(d->defname, "template") == 0 && d->arg != NULL)
				dboid = get_database_oid(defGetString(d), true);
		}
		if (!OidIsValid(dboid))
			return InvalidOid;	/* template1, or an error to come */
		tup = SearchSysCache1(DATABASEOID, ObjectIdGetDatum(dboid));
		if (!HeapTupleIsValid(tup))
			return InvalidOid;
		is_template = ((Form_pg_database) GETSTRUCT(tup))->datistemplate;
		ReleaseSysCache(tup);
		/* a database not marked as a template is copied by its owner only */
		if (!is_template && !pg_database_ownercheck(dboid, GetUserId()))
			return InvalidOid;
		*mark = CRM_WORKER_PAUSED;
	}
	else if (IsA(parsetree, RenameStmt) &&
			 ((RenameStmt *) parsetree)->renameType == OBJECT_DATABASE)
	{
		RenameStmt *stmt = (RenameStmt *) parsetree;

		dboid = get_database_oid(stmt->subname, true);
		if (!OidIsValid(dboid) ||
			!pg_database_ownercheck(dboid, GetUserId()) ||
			!have_createdb_privilege() ||
			dboid == MyDatabaseId ||
			OidIsValid(get_database_oid(stmt->newname, true)))
			return InvalidOid;
		*mark = CRM_WORKER_PAUSED;
	}
	return dboid;
}

/*
 * Asks the workers of a database to leave and waits for them (up to 10 s;
 * the statement itself then waits 5 s more for anybody still there).  The
 * mark keeps the launcher from starting them again meanwhile, and a worker
 * connecting at that moment from taking its slot.
 */
static void
ask_workers_to_leave(Oid dboid, CrmWorkerState mark)
{
	pid_t		pids[CRM_WORKER_SLOTS];
	TimestampTz now = GetCurrentTimestamp();
	int			i;
	int			r;
	int			waited;
	bool		any = false;

	SpinLockAcquire(&crm_shared->mutex);
	i = slot_of(dboid);
	for (r = 0; r < CRM_WORKER_SLOTS; r++)
	{
		pids[r] = 0;
		if (i < 0)
			continue;
		crm_shared->slots[i].workers[r].state = mark;
		crm_shared->slots[i].workers[r].changed_at = now;
		pids[r] = crm_shared->slots[i].workers[r].pid;
		any |= pids[r] != 0;
	}
	SpinLockRelease(&crm_shared->mutex);
	if (!any)
		return;

	for (r = 0; r < CRM_WORKER_SLOTS; r++)
		if (pids[r] != 0)
			kill(pids[r], SIGTERM);
	for (waited = 0; waited < 1000; waited++)
	{
		bool		gone = true;

		SpinLockAcquire(&crm_shared->mutex);
		for (r = 0; r < CRM_WORKER_SLOTS; r++)
			if (pids[r] != 0 && crm_shared->slots[i].workers[r].pid == pids[r])
				gone = false;
		SpinLockRelease(&crm_shared->mutex);
		if (gone)
			break;
		CHECK_FOR_INTERRUPTS();
		pg_usleep(10000L);
	}
}

/*
 * The statement is over (a copy or a rename), or failed: the launcher
 * starts the workers again at once.  Until its transaction ends they wait
 * at connection for the lock it holds on the database.  No allocation: this
 * also runs while an error unwinds.
 */
static void
let_workers_back(Oid dboid)
{
	int			i;
	int			r;

	SpinLockAcquire(&crm_shared->mutex);
	i = slot_of(dboid);
	for (r = 0; i >= 0 && r < CRM_WORKER_SLOTS; r++)
	{
		CrmWorkerSlot *w = &crm_shared->slots[i].workers[r];

		if (w->state == CRM_WORKER_DROPPING || w->state == CRM_WORKER_PAUSED)
		{
			w->state = CRM_WORKER_STOPPED;
			w->changed_at = 0;
		}
	}
	SpinLockRelease(&crm_shared->mutex);
	wake_launcher();
}

/*
 * CREATE EXTENSION crm_automation: says so when max_worker_processes cannot
 * hold the launcher and crm.workers_per_database workers for every database
 * that has the extension, this one included.  The others are counted from
 * the slots: those whose first worker did not find the extension missing
 * (a database whose worker never got a process counts, as it may have it).
 */
static void
check_worker_processes(void)
{
	int			wanted = crm_workers_wanted() + crm_job_workers;
	int			ndb = 1;
	int			needed;
	int			i;

	SpinLockAcquire(&crm_shared->mutex);
	for (i = 0; i < CRM_MAX_DATABASES; i++)
	{
		CrmDatabaseSlot *d = &crm_shared->slots[i];

		if (d->used && d->dboid != MyDatabaseId &&
			d->workers[0].state != CRM_WORKER_ABSENT &&
			d->workers[0].state != CRM_WORKER_FREE)
			ndb++;
	}
	SpinLockRelease(&crm_shared->mutex);

	needed = 1 + wanted * ndb;
	if (needed > max_worker_processes)
		ereport(WARNING,
				(errcode(ERRCODE_CONFIGURATION_LIMIT_EXCEEDED),
				 errmsg("max_worker_processes is too low for the crm_automation workers of every database"),
				 errdetail("The launcher and %d workers (crm.workers_per_database delivery workers and crm.job_workers job runners) in each of %d databases with crm_automation need %d background worker processes; max_worker_processes is %d, and other background workers share it.",
						   wanted, ndb, needed, max_worker_processes),
				 errhint("Raise max_worker_processes to at least %d (a restart is needed), or lower crm.workers_per_database.",
						 needed)));
}

static void
crm_ProcessUtility(PlannedStmt *pstmt, const char *queryString, bool readOnlyTree,
				   ProcessUtilityContext context, ParamListInfo params,
				   QueryEnvironment *queryEnv, DestReceiver *dest, QueryCompletion *qc)
{
	Node	   *parsetree = pstmt->utilityStmt;
	CrmWorkerState mark = CRM_WORKER_FREE;
	Oid			aside = InvalidOid;

	if (crm_shared != NULL)
		aside = database_to_leave(parsetree, context == PROCESS_UTILITY_TOPLEVEL, &mark);
	if (OidIsValid(aside))
		ask_workers_to_leave(aside, mark);

	PG_TRY();
	{
		if (prev_ProcessUtility)
			prev_ProcessUtility(pstmt, queryString, readOnlyTree, context, params,
								queryEnv, dest, qc);
		else
			standard_ProcessUtility(pstmt, queryString, readOnlyTree, context, params,
									queryEnv, dest, qc);
	}
	PG_CATCH();
	{
		if (OidIsValid(aside))
			let_workers_back(aside);
		PG_RE_THROW();
	}
	PG_END_TRY();

	if (crm_shared == NULL)
		return;
	/* a dropped database's workers stay away; the launcher forgets it */
	if (OidIsValid(aside) && mark == CRM_WORKER_PAUSED)
		let_workers_back(aside);

	if (IsA(parsetree, DropStmt) &&
		((DropStmt *) parsetree)->removeType == OBJECT_EXTENSION)
	{
		/* the workers notice at their next wake-up that the extension is gone */
		ensure_xact_callback();
		wake_all_at_commit = true;
	}
	else if (IsA(parsetree, CreatedbStmt))
		wake_launcher();
	else if (IsA(parsetree, CreateExtensionStmt) &&
			 strcmp(((CreateExtensionStmt *) parsetree)->extname, "crm_automation") == 0)
		check_worker_processes();
	else if (IsA(parsetree, TransactionStmt) &&
			 ((TransactionStmt *) parsetree)->kind == TRANS_STMT_COMMIT_PREPARED)
	{
		/*
		 * Committed (an error would not come here): its messages and jobs
		 * are visible now.  The prepared transaction belonged to this
		 * database (COMMIT PREPARED refuses another's).
		 */
		wake_workers(MyDatabaseId, false, 0, false);
		wake_workers(MyDatabaseId, true, 0, false);

		/*
		 * It may have been a CREATE EXTENSION (Citus creates the extension
		 * on its worker nodes in prepared transactions): a database whose
		 * worker found no extension gets one now, not at the next rescan.
		 */
		if (crm_shared != NULL)
		{
			bool		absent;
			int			i;

			SpinLockAcquire(&crm_shared->mutex);
			i = slot_of(MyDatabaseId);
			absent = i < 0 || crm_shared->slots[i].workers[0].state == CRM_WORKER_ABSENT;
			SpinLockRelease(&crm_shared->mutex);
			if (absent)
				request_start(MyDatabaseId);
		}
	}
}

/* ---------------------------------------------------------------------------
 * The launcher
 * ---------------------------------------------------------------------------
 */

/* A database the launcher serves, as read from pg_database. */
typedef struct LauncherDb
{
	Oid			oid;
	NameData	name;
} LauncherDb;

/*
 * Databases the launcher could not give a slot (CRM_MAX_DATABASES), each
 * warned about once, as long as it stays without one.
 */
static List *over_limit = NIL;

/* When the launcher last said that a database's worker found no bgworker slot. */
static Oid	no_bgworker_db[CRM_MAX_DATABASES];
static TimestampTz no_bgworker_logged_at[CRM_MAX_DATABASES];

#define NO_BGWORKER_LOG_MS	60000

/* Connectable, non-template, valid databases (a list of LauncherDb). */
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
		LauncherDb *d;

		if (!db->datallowconn || db->datistemplate || database_is_invalid_form(db))
			continue;
		old = MemoryContextSwitchTo(caller);
		d = palloc(sizeof(LauncherDb));
		d->oid = db->oid;
		d->name = db->datname;
		dbs = lappend(dbs, d);
		MemoryContextSwitchTo(old);
	}
	table_endscan(scan);
	table_close(rel, AccessShareLock);
	CommitTransactionCommand();
	return dbs;
}

static bool
database_listed(List *dbs, Oid dboid)
{
	ListCell   *lc;

	foreach(lc, dbs)
		if (((LauncherDb *) lfirst(lc))->oid == dboid)
			return true;
	return false;
}

static bool
start_worker(int slot, int rank, LauncherDb *db, TimestampTz now)
{
	BackgroundWorker w;
	BackgroundWorkerHandle **handle = &handles[slot][rank];

	memset(&w, 0, sizeof(w));
	w.bgw_flags = BGWORKER_SHMEM_ACCESS | BGWORKER_BACKEND_DATABASE_CONNECTION;
	w.bgw_start_time = BgWorkerStart_RecoveryFinished;
	w.bgw_restart_time = BGW_NEVER_RESTART;
	snprintf(w.bgw_library_name, BGW_MAXLEN, "crm_automation");
	snprintf(w.bgw_function_name, BGW_MAXLEN, "crm_worker_main");
	if (rank >= CRM_JOB_RANK_BASE)
	{
		snprintf(w.bgw_name, BGW_MAXLEN, "crm_automation job runner %u/%d", db->oid,
				 rank - CRM_JOB_RANK_BASE);
		snprintf(w.bgw_type, BGW_MAXLEN, "crm_automation job runner");
	}
	else
	{
		if (rank == 0)
			snprintf(w.bgw_name, BGW_MAXLEN, "crm_automation worker %u", db->oid);
		else
			snprintf(w.bgw_name, BGW_MAXLEN, "crm_automation worker %u/%d", db->oid, rank);
		snprintf(w.bgw_type, BGW_MAXLEN, "crm_automation worker");
	}
	w.bgw_main_arg = ObjectIdGetDatum(db->oid);
	memcpy(w.bgw_extra, &rank, sizeof(rank));
	w.bgw_notify_pid = MyProcPid;

	if (*handle)
		pfree(*handle);
	*handle = NULL;
	if (!RegisterDynamicBackgroundWorker(&w, handle))
	{
		/* tried again every 5 s: said once a minute */
		if (no_bgworker_db[slot] != db->oid ||
			TimestampDifferenceExceeds(no_bgworker_logged_at[slot], now, NO_BGWORKER_LOG_MS))
		{
			ereport(WARNING,
					(errcode(ERRCODE_CONFIGURATION_LIMIT_EXCEEDED),
					 errmsg("crm_automation: no background worker slot left for %s %d of database \"%s\"",
							rank >= CRM_JOB_RANK_BASE ? "job runner" : "worker",
							rank >= CRM_JOB_RANK_BASE ? rank - CRM_JOB_RANK_BASE : rank,
							NameStr(db->name)),
					 errdetail("All %d background worker processes (max_worker_processes) are in use; the launcher tries again every %d seconds.",
							   max_worker_processes, RESTART_DELAY_MS / 1000),
					 errhint("Raise max_worker_processes (a restart is needed) or lower crm.workers_per_database.")));
			no_bgworker_db[slot] = db->oid;
			no_bgworker_logged_at[slot] = now;
		}
		return false;
	}
	return true;
}

/*
 * Whether the worker of a slot and rank should start now; *nap shortens to
 * when it should be looked at again.  exited says whether the worker last
 * registered for them is known to be gone (read before: the caller holds
 * the mutex, and GetBackgroundWorkerPid takes an LWLock).
 */
static bool
should_start(int slot, int rank, bool exited, TimestampTz now, long *nap)
{
	CrmDatabaseSlot *d = &crm_shared->slots[slot];
	CrmWorkerSlot *s = &d->workers[rank];
	bool		start = false;

	/* siblings follow the first worker, once it found the extension */
	if (rank > 0 && d->workers[0].state != CRM_WORKER_RUNNING)
		return false;

	switch (s->state)
	{
		case CRM_WORKER_STOPPED:
			if (TimestampDifferenceExceeds(s->changed_at, now, RESTART_DELAY_MS) ||
				s->changed_at == 0 || d->recheck)
				start = true;
			else
				*nap = Min(*nap, RESTART_DELAY_MS);
			break;
		case CRM_WORKER_ABSENT:
			if (rank == 0)
				start = d->recheck;
			/*
			 * A sibling that found no extension while the first one still
			 * ran (DROP EXTENSION, not yet noticed by it): again later.
			 */
			else if (TimestampDifferenceExceeds(s->changed_at, now, RESTART_DELAY_MS))
				start = true;
			else
				*nap = Min(*nap, RESTART_DELAY_MS);
			break;
		case CRM_WORKER_STARTING:
			/* registered but never attached (e.g. could not connect) */
			if (s->pid == 0 && handles[slot][rank] != NULL && exited)
				start = TimestampDifferenceExceeds(s->changed_at, now, RESTART_DELAY_MS);
			else if (s->pid == 0 && handles[slot][rank] == NULL)
				start = TimestampDifferenceExceeds(s->changed_at, now, 10000);
			if (!start && s->pid == 0)
				*nap = Min(*nap, RESTART_DELAY_MS);
			break;
		case CRM_WORKER_DISABLED:
			/* crm.worker_enabled is on again (launcher_pass checks) */
			start = true;
			break;
		case CRM_WORKER_DROPPING:
		case CRM_WORKER_PAUSED:

			/*
			 * The statement's session normally lets them back at its end;
			 * this is for one that died on the way (the database survived a
			 * DROP that failed, or a copy or a rename is over).
			 */
			if (s->pid == 0 && TimestampDifferenceExceeds(s->changed_at, now, 10000))
				start = true;
			else
				*nap = Min(*nap, 10000);
			break;
		default:
			break;
	}
	return start;
}

/*
 * crm.worker_enabled is off: the delivery workers leave by themselves once
 * their transfers in flight are done, but a job runner may be in the
 * middle of a long job that only an interrupt stops (its batch rolls back:
 * the jobs stay pending).  Marked disabled first, so that they show so once
 * gone.
 */
static void
stop_job_runners(void)
{
	pid_t		pids[CRM_MAX_DATABASES * CRM_MAX_JOB_WORKERS];
	int			n = 0;
	int			i;
	int			r;

	SpinLockAcquire(&crm_shared->mutex);
	for (i = 0; i < CRM_MAX_DATABASES; i++)
	{
		if (!crm_shared->slots[i].used)
			continue;
		for (r = CRM_JOB_RANK_BASE; r < CRM_WORKER_SLOTS; r++)
		{
			CrmWorkerSlot *w = &crm_shared->slots[i].workers[r];

			if (w->pid != 0 &&
				(w->state == CRM_WORKER_RUNNING || w->state == CRM_WORKER_STARTING))
			{
				w->state = CRM_WORKER_DISABLED;
				pids[n++] = w->pid;
			}
		}
	}
	SpinLockRelease(&crm_shared->mutex);
	for (i = 0; i < n; i++)
		kill(pids[i], SIGTERM);
}

/* One pass: start what should run.  Returns the delay until the next pass. */
static long
launcher_pass(void)
{
	List	   *dbs = database_list();
	List	   *still_over = NIL;
	TimestampTz now = GetCurrentTimestamp();
	long		nap = LAUNCHER_NAP_MS;
	int			i;
	int			r;
	ListCell   *lc;

	/* forget databases that are gone */
	SpinLockAcquire(&crm_shared->mutex);
	for (i = 0; i < CRM_MAX_DATABASES; i++)
	{
		CrmDatabaseSlot *d = &crm_shared->slots[i];
		bool		live = false;

		for (r = 0; r < CRM_WORKER_SLOTS; r++)
			live |= d->workers[r].pid != 0;
		if (d->used && !live && !database_listed(dbs, d->dboid))
			d->used = false;
	}
	SpinLockRelease(&crm_shared->mutex);

	/* crm.worker_enabled off: the workers left, none starts */
	if (!crm_worker_enabled)
	{
		stop_job_runners();
		list_free_deep(dbs);
		return LAUNCHER_NAP_MS;
	}

	foreach(lc, dbs)
	{
		LauncherDb *db = lfirst(lc);
		bool		start[CRM_WORKER_SLOTS];
		bool		exited[CRM_WORKER_SLOTS];
		pid_t		pid;

		/*
		 * Only this process frees a slot: the one found here stays the
		 * database's while the mutex is released.
		 */
		SpinLockAcquire(&crm_shared->mutex);
		i = slot_of(db->oid);
		if (i < 0)
			i = slot_alloc(db->oid);
		SpinLockRelease(&crm_shared->mutex);
		if (i < 0)
		{
			if (!list_member_oid(over_limit, db->oid))
				ereport(WARNING,
						(errcode(ERRCODE_CONFIGURATION_LIMIT_EXCEEDED),
						 errmsg("crm_automation: database \"%s\" has no worker: at most %d databases are served",
								NameStr(db->name), CRM_MAX_DATABASES),
						 errhint("Drop databases that are no longer used, or disallow connections to them (ALTER DATABASE ... ALLOW_CONNECTIONS false).")));
			still_over = lappend_oid(still_over, db->oid);
			continue;
		}

		/* GetBackgroundWorkerPid takes an LWLock: never under the mutex */
		for (r = 0; r < CRM_WORKER_SLOTS; r++)
			exited[r] = handles[i][r] != NULL &&
				GetBackgroundWorkerPid(handles[i][r], &pid) == BGWH_STOPPED;

		SpinLockAcquire(&crm_shared->mutex);
		for (r = 0; r < CRM_WORKER_SLOTS; r++)
		{
			start[r] = crm_rank_wanted(r) && should_start(i, r, exited[r], now, &nap);
			if (start[r])
			{
				crm_shared->slots[i].workers[r].state = CRM_WORKER_STARTING;
				crm_shared->slots[i].workers[r].changed_at = now;
			}
		}
		if (start[0] && crm_shared->slots[i].recheck)
		{
			/* CREATE EXTENSION: the siblings follow the first at once */
			crm_shared->slots[i].recheck = false;
			for (r = 1; r < CRM_WORKER_SLOTS; r++)
				if (crm_shared->slots[i].workers[r].state == CRM_WORKER_ABSENT)
				{
					crm_shared->slots[i].workers[r].state = CRM_WORKER_STOPPED;
					crm_shared->slots[i].workers[r].changed_at = 0;
				}
		}
		SpinLockRelease(&crm_shared->mutex);

		for (r = 0; r < CRM_WORKER_SLOTS; r++)
		{
			if (start[r] && !start_worker(i, r, db, now))
			{
				SpinLockAcquire(&crm_shared->mutex);
				crm_shared->slots[i].workers[r].state = CRM_WORKER_STOPPED;
				crm_shared->slots[i].workers[r].changed_at = now;
				SpinLockRelease(&crm_shared->mutex);
				nap = Min(nap, RESTART_DELAY_MS);
			}
		}
	}
	/* a database that got a slot, or is gone, is warned about again */
	list_free(over_limit);
	over_limit = still_over;
	list_free_deep(dbs);
	return nap;
}

void
crm_launcher_main(Datum arg)
{
	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	pqsignal(SIGTERM, die);
	BackgroundWorkerUnblockSignals();
	/* a reload signalled before the SIGHUP handler was set is lost: read the files once */
	ConfigReloadPending = true;
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
