/*-------------------------------------------------------------------------
 *
 * job_runner.c
 *	  The job runners: background workers that run a database's due jobs
 *	  (delayed robots, waits, stage controls, process timers).
 *
 * A database has crm.job_workers of them (launcher.c, ranks from
 * CRM_JOB_RANK_BASE), apart from the delivery workers (worker.c), so that
 * a burst of jobs never holds a message and a job that runs long holds no
 * transfer.  Each turn of the loop runs one batch: crm.run_due_jobs(n) in
 * a transaction of its own (scheduler.c claims up to n due jobs with FOR
 * UPDATE SKIP LOCKED and runs each in a subtransaction, under
 * crm.job_timeout).  A batch that came back full means more are due: the
 * runner goes on at once and wakes the next runner (at most every
 * SIBLING_WAKE_MS), so a burst draws them all in, each claiming batches
 * of its own, while a trickle wakes only the first.  Otherwise it sleeps
 * until crm.next_job_due(), or until a commit that wrote crm.job sets its
 * latch (launcher.c).
 *
 * The engine is reached only through SQL, as the delivery workers reach
 * it.  A database still on 0.1.0 (no crm.run_due_jobs) gets its jobs run
 * by crm.run_next_job(), a batch's worth in one transaction.
 *
 * SIGTERM (a shutdown, pg_terminate_backend) is die(): a job running at
 * that moment stops at its next CHECK_FOR_INTERRUPTS, the batch's
 * transaction aborts and its jobs are pending again, their effects never
 * committed: nothing runs twice, nothing is lost.  crm.worker_enabled =
 * off does the same (the launcher sends the SIGTERM, as a long job would
 * not see the reload).  The first runner also deletes done and cancelled
 * jobs past crm.job_retention every CLEANUP_EVERY_MS.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <malloc.h>

#include "access/xact.h"
#include "catalog/pg_type.h"
#include "commands/dbcommands.h"
#include "commands/extension.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "tcop/tcopprot.h"
#include "utils/guc.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"

#include "core/guc.h"
#include "delivery/worker.h"

#define JOBS_PER_BATCH		200
#define CLEANUP_EVERY_MS	(5 * 60 * 1000)
#define IDLE_CHECK_MS		(10 * 60 * 1000)
#define SIBLING_WAKE_MS		100
#define ERROR_NAP_MS		1000

/* set by the steps, read by the loop */
static bool extension_gone = false;
static bool has_batches = true; /* crm.run_due_jobs exists (0.2.0 on) */
static char dbname[NAMEDATALEN];

typedef struct Batch
{
	bool		check;			/* look at the extension first */
	int			limit;
	int			ran;
	TimestampTz next_due;		/* when not full: the earliest pending job */
} Batch;

static void
look_at_extension(void)
{
	char	   *name = get_database_name(MyDatabaseId);
	bool		isnull;

	strlcpy(dbname, name ? name : "?", sizeof(dbname));
	extension_gone = !OidIsValid(get_extension_oid("crm_automation", true));
	if (extension_gone)
		return;
	if (SPI_execute("SELECT pg_catalog.to_regprocedure('crm.run_due_jobs(integer)') IS NOT NULL",
					true, 1) != SPI_OK_SELECT)
		elog(ERROR, "could not look for crm.run_due_jobs");
	has_batches = DatumGetBool(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc,
											 1, &isnull));
}

static int
single_int(void)
{
	bool		isnull;
	Datum		d = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);

	return isnull ? -1 : DatumGetInt32(d);
}

/*
 * One batch of due jobs, in the step's transaction; then, unless it was
 * full, the earliest due time of the jobs left (read after the batch, so
 * that a job it planned for now counts).
 */
static void
step_batch(void *arg)
{
	Batch	   *b = arg;
	Oid			argtypes[1] = {INT4OID};
	Datum		args[1];
	bool		isnull;
	Datum		d;

	if (b->check)
	{
		look_at_extension();
		if (extension_gone)
			return;
	}
	if (has_batches)
	{
		args[0] = Int32GetDatum(b->limit);
		if (SPI_execute_with_args("SELECT crm.run_due_jobs($1)", 1, argtypes, args, NULL,
								  false, 1) != SPI_OK_SELECT)
			elog(ERROR, "crm.run_due_jobs() failed");
		b->ran = single_int();
	}
	else
	{
		/* 0.1.0: one job per call, the batch's worth in this transaction */
		for (b->ran = 0; b->ran < b->limit; b->ran++)
		{
			CHECK_FOR_INTERRUPTS();
			if (SPI_execute("SELECT crm.run_next_job() IS NOT NULL", false, 1) != SPI_OK_SELECT)
				elog(ERROR, "crm.run_next_job() failed");
			if (!DatumGetBool(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull)))
				break;
		}
	}
	if (b->ran >= b->limit)
		return;
	if (SPI_execute("SELECT crm.next_job_due()", false, 1) != SPI_OK_SELECT)
		elog(ERROR, "crm.next_job_due() failed");
	d = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);
	b->next_due = isnull ? DT_NOEND : DatumGetTimestampTz(d);
}

static void
step_cleanup(void *arg)
{
	if (has_batches)
		(void) SPI_execute("SELECT crm.cleanup_jobs()", false, 0);
}

void
crm_job_runner_main(Oid dboid, int rank)
{
	int			nth = rank - CRM_JOB_RANK_BASE;
	MemoryContext loop_cxt;
	TimestampTz next_due = 0;
	TimestampTz last_cleanup = 0;
	TimestampTz sibling_woken_at = 0;
	bool		woken = true;	/* everything once at start */
	bool		backlog = false;

	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	pqsignal(SIGTERM, die);
	BackgroundWorkerUnblockSignals();
	/* a reload signalled before the SIGHUP handler was set is lost: read the files once */
	ConfigReloadPending = true;
	BackgroundWorkerInitializeConnectionByOid(dboid, InvalidOid, 0);
	strlcpy(dbname, crm_worker_begin(dboid, rank, "crm_automation job runner"), sizeof(dbname));

	/*
	 * Every job opens and closes index scans and executor states whose
	 * blocks (tens of kB) glibc hands back to the kernel when freed, to
	 * fault them in again for the next job: a sixth of a job's time.  A
	 * job runner keeps its freed heap instead (up to 64 MB).
	 */
	mallopt(M_TRIM_THRESHOLD, 64 * 1024 * 1024);
	mallopt(M_MMAP_THRESHOLD, 4 * 1024 * 1024);
	ereport(LOG, (errmsg("crm_automation job runner %d started for database \"%s\"", nth, dbname)));

	loop_cxt = AllocSetContextCreate(TopMemoryContext, "crm job runner loop", ALLOCSET_DEFAULT_SIZES);

	while (!ProcDiePending)
	{
		TimestampTz now;
		long		timeout;
		int			rc;

		MemoryContextReset(loop_cxt);
		MemoryContextSwitchTo(loop_cxt);
		CHECK_FOR_INTERRUPTS();
		if (ConfigReloadPending)
		{
			ConfigReloadPending = false;
			ProcessConfigFile(PGC_SIGHUP);
		}
		if (!crm_worker_enabled || !crm_rank_wanted(rank))
			break;

		now = GetCurrentTimestamp();
		if (woken || backlog || now >= next_due)
		{
			Batch		b = {0};

			backlog = false;
			b.check = woken;
			b.limit = JOBS_PER_BATCH;
			b.next_due = DT_NOEND;
			if (!crm_worker_xact(step_batch, &b, "crm_automation: running jobs"))
			{
				/* not a job's failure (those are recorded): back off */
				next_due = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), ERROR_NAP_MS);
			}
			else if (extension_gone)
				break;
			else if (b.ran >= b.limit)
			{
				/* more are due: go on, and draw the next runner in */
				backlog = true;
				if (TimestampDifferenceExceeds(sibling_woken_at, now, SIBLING_WAKE_MS))
				{
					crm_worker_wake_next();
					sibling_woken_at = now;
				}
			}
			else
				next_due = b.next_due;
		}

		now = GetCurrentTimestamp();
		if (nth == 0 && !backlog &&
			(last_cleanup == 0 || TimestampDifferenceExceeds(last_cleanup, now, CLEANUP_EVERY_MS)))
		{
			(void) crm_worker_xact(step_cleanup, NULL, "crm_automation: cleaning up jobs");
			last_cleanup = now;
		}

		if (backlog || next_due <= now)
			timeout = 0;
		else if (next_due == DT_NOEND)
			timeout = IDLE_CHECK_MS;
		else
			timeout = Min((long) ((next_due - now + 999) / 1000), IDLE_CHECK_MS);
		rc = WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
					   timeout, PG_WAIT_EXTENSION);
		woken = (rc & WL_LATCH_SET) != 0;
		/* a latch set after a timeout stays set for the next wait (worker.c) */
		if (woken)
			ResetLatch(MyLatch);
	}

	MemoryContextSwitchTo(TopMemoryContext);
	if (extension_gone)
	{
		crm_worker_set_state(CRM_WORKER_ABSENT);
		ereport(LOG, (errmsg("crm_automation job runner %d stopping: the extension was dropped from database \"%s\"", nth, dbname)));
	}
	else if (!ProcDiePending && !crm_worker_enabled)
	{
		crm_worker_set_state(CRM_WORKER_DISABLED);
		ereport(LOG, (errmsg("crm_automation job runner %d stopping: crm.worker_enabled is off", nth)));
	}
	else if (!ProcDiePending)
		ereport(LOG, (errmsg("crm_automation job runner %d stopping: crm.job_workers is %d", nth, crm_job_workers)));
	proc_exit(0);
}
