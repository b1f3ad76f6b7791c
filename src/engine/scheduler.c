/*-------------------------------------------------------------------------
 *
 * scheduler.c
 *	  Runs scheduled jobs, dispatching on their kind: a batch of due jobs
 *	  (crm.run_due_jobs), or one job (crm._execute_job).
 *
 * The job runners (delivery/job_runner.c) call crm.run_due_jobs() in a
 * transaction per batch: one claim for up to max_jobs due jobs, each then
 * run in a subtransaction of its own, so that a failing job is rolled back
 * and marked failed alone, and under crm.job_timeout.  Claim, execution
 * and the new statuses commit together: a crash or a shutdown mid-batch
 * rolls the whole batch back, and its jobs are pending again, never run
 * twice in effect.  crm.run_next_job() (SQL, 40_automation.sql) runs one
 * job in the same way.  Each family of automation registers the executor of
 * its job kinds here (robots: "robot", "wait", "control"; processes:
 * timers), so that the scheduler knows nothing about what a job does.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "storage/latch.h"
#include "utils/builtins.h"
#include "utils/jsonb.h"
#include "utils/memutils.h"
#include "utils/resowner.h"
#include "utils/timeout.h"

#include "catalog/namespace.h"
#include "utils/lsyscache.h"

#include "core/citus.h"
#include "core/guc.h"
#include "core/spi_util.h"
#include "engine/scheduler.h"

#define MAX_JOB_KINDS 16

typedef struct JobKind
{
	const char *kind;
	CrmJobExecutor fn;
} JobKind;

static JobKind job_kinds[MAX_JOB_KINDS];
static int	n_job_kinds = 0;

void
crm_register_job_executor(const char *kind, CrmJobExecutor fn)
{
	int			i;

	for (i = 0; i < n_job_kinds; i++)
	{
		if (strcmp(job_kinds[i].kind, kind) == 0)
		{
			job_kinds[i].fn = fn;
			return;
		}
	}
	if (n_job_kinds >= MAX_JOB_KINDS)
		elog(ERROR, "too many job kinds");
	job_kinds[n_job_kinds].kind = kind;
	job_kinds[n_job_kinds].fn = fn;
	n_job_kinds++;
}

static bool
get_int64(HeapTuple tup, TupleDesc desc, int col, int64 *out)
{
	bool		isnull;
	Datum		d = SPI_getbinval(tup, desc, col, &isnull);

	*out = isnull ? 0 : DatumGetInt64(d);
	return !isnull;
}

#define JOB_COLUMNS "id, kind, robot_id, log_id, process_instance_id," \
	" stage_id, entity_type, entity_id, due_at, context"

/*
 * Reads a job into *job (its context copied into cxt).  A claimed job is
 * read only while still pending and due by due_by (an earlier job of the
 * batch may have cancelled it, or moved its due time), and marked done in
 * the same statement: done before it runs, so that nothing it or a later
 * job of the batch does cancels it once it ran; its failure rolls the mark
 * back with the rest.  Returns false when there is no such job.  SPI is
 * connected.
 */
/*
 * On a distributed installation (core/citus.h) the batch's jobs are in one
 * of this node's shards of crm.job, which the claim, the mark and a failure
 * name directly (the row's address is the shard's); NULL otherwise.
 */
static const char *job_shard = NULL;

/* A claimed job marked done as it starts, on crm.job or one of its shards (%s). */
static const char *const mark_done_sql =
"UPDATE %s SET status = 'done', attempts = attempts + 1, updated_at = now()"
" WHERE ctid = $3 AND id = $1 AND status = 'pending' AND due_at <= $2"
" RETURNING " JOB_COLUMNS;

/* A job that failed (%s: crm.job or one of its shards). */
static const char *const mark_failed_sql =
"UPDATE %s SET status = 'failed', attempts = attempts + 1, last_error = $2, updated_at = now()"
" WHERE id = $1";

static bool
read_job(int64 id, ItemPointer tid, TimestampTz due_by, CrmJob *job, MemoryContext cxt)
{
	static SPIPlanPtr any_plan = NULL;
	static SPIPlanPtr due_plan = NULL;
	bool		claimed = tid != NULL;
	Oid			argtypes[3] = {INT8OID, TIMESTAMPTZOID, TIDOID};
	Datum		args[3];
	SPIPlanPtr	plan;
	HeapTuple	tup;
	TupleDesc	desc;
	bool		isnull;
	Datum		d;
	char	   *text;

	/*
	 * By the row version the claim locked (a TID scan): a plan by id could
	 * take the partial index on pending jobs instead of the primary key
	 * (it matches the status), and scan every pending job for each one
	 * when the statistics were taken while none was pending.  A version
	 * changed since (by an earlier job of the batch) is not found: the job
	 * waits for the next batch.
	 */
	if (claimed && job_shard != NULL)
	{
		args[0] = Int64GetDatum(id);
		args[1] = TimestampTzGetDatum(due_by);
		args[2] = PointerGetDatum(tid);
		if (SPI_execute_with_args(psprintf(mark_done_sql, job_shard), 3, argtypes, args, NULL, false, 0)
			!= SPI_OK_UPDATE_RETURNING)
			elog(ERROR, "could not mark job " INT64_FORMAT " in %s", id, job_shard);
		plan = NULL;
	}
	else if (claimed)
		plan = crm_plan(&due_plan, psprintf(mark_done_sql, "crm.job"), 3, argtypes);
	else
		plan = crm_plan(&any_plan, "SELECT " JOB_COLUMNS " FROM crm.job WHERE id = $1",
						1, argtypes);
	if (plan != NULL)
	{
		args[0] = Int64GetDatum(id);
		args[1] = TimestampTzGetDatum(due_by);
		args[2] = PointerGetDatum(tid);
		(void) crm_exec(plan, args, NULL, !claimed, claimed ? 0 : 1);
	}
	if (SPI_processed == 0)
		return false;

	tup = SPI_tuptable->vals[0];
	desc = SPI_tuptable->tupdesc;
	memset(job, 0, sizeof(*job));
	get_int64(tup, desc, 1, &job->id);
	text = SPI_getvalue(tup, desc, 2);
	strlcpy(job->kind, text ? text : "", sizeof(job->kind));
	get_int64(tup, desc, 3, &job->robot_id);
	get_int64(tup, desc, 4, &job->log_id);
	get_int64(tup, desc, 5, &job->process_instance_id);
	get_int64(tup, desc, 6, &job->stage_id);
	text = SPI_getvalue(tup, desc, 7);
	strlcpy(job->entity_type, text ? text : "", sizeof(job->entity_type));
	get_int64(tup, desc, 8, &job->entity_id);
	d = SPI_getbinval(tup, desc, 9, &isnull);
	job->due_at = isnull ? 0 : DatumGetTimestampTz(d);
	d = SPI_getbinval(tup, desc, 10, &isnull);
	{
		MemoryContext old = MemoryContextSwitchTo(cxt);

		job->context = isnull ? NULL : DatumGetJsonbPCopy(d);
		MemoryContextSwitchTo(old);
	}
	return true;
}

/* Runs a job with the executor its kind registered. */
static void
dispatch(const CrmJob *job)
{
	int			i;

	for (i = 0; i < n_job_kinds; i++)
	{
		if (strcmp(job_kinds[i].kind, job->kind) == 0)
		{
			job_kinds[i].fn(job);
			return;
		}
	}
	ereport(ERROR,
			(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
			 errmsg("no executor for job kind \"%s\"", job->kind),
			 errdetail("Job %lld cannot run.", (long long) job->id)));
}

PG_FUNCTION_INFO_V1(crm_execute_job);

Datum
crm_execute_job(PG_FUNCTION_ARGS)
{
	int64		job_id = PG_GETARG_INT64(0);
	MemoryContext caller_cxt = CurrentMemoryContext;
	CrmJob		job;
	bool		found;

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	/* the job's context outlives SPI: copied into the caller's context */
	found = read_job(job_id, NULL, 0, &job, caller_cxt);
	SPI_finish();
	if (!found)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("job %lld does not exist", (long long) job_id)));
	dispatch(&job);
	PG_RETURN_VOID();
}

/* ---------- batches: crm.run_due_jobs ---------- */

/*
 * crm.job_timeout: a timer of our own (not statement_timeout, which belongs
 * to the caller's session).  When it fires it asks for a query cancel, so
 * that the job stops at its next CHECK_FOR_INTERRUPTS; the flag tells that
 * cancel apart from a user's.
 */
static TimeoutId job_timeout_id = MAX_TIMEOUTS;
static volatile sig_atomic_t job_timed_out = false;

static void
job_timeout_handler(void)
{
	job_timed_out = true;
	QueryCancelPending = true;
	InterruptPending = true;
	SetLatch(MyLatch);
}

static void
job_timer_start(void)
{
	if (job_timeout_id == MAX_TIMEOUTS)
		job_timeout_id = RegisterTimeout(USER_TIMEOUT, job_timeout_handler);
	job_timed_out = false;
	if (crm_job_timeout > 0)
		enable_timeout_after(job_timeout_id, crm_job_timeout);
}

static void
job_timer_stop(void)
{
	if (crm_job_timeout > 0 || get_timeout_active(job_timeout_id))
		disable_timeout(job_timeout_id, false);
}

static void
mark_failed(int64 id, const char *error)
{
	static SPIPlanPtr plan = NULL;
	Oid			argtypes[2] = {INT8OID, TEXTOID};
	Datum		args[2];

	args[0] = Int64GetDatum(id);
	args[1] = CStringGetTextDatum(error);
	if (job_shard != NULL)
		(void) SPI_execute_with_args(psprintf(mark_failed_sql, job_shard), 2, argtypes, args, NULL, false, 0);
	else
		(void) crm_exec(crm_plan(&plan, psprintf(mark_failed_sql, "crm.job"), 2, argtypes),
						args, NULL, false, 0);
	ereport(LOG,
			(errmsg("crm_automation: job %lld failed: %s", (long long) id, error)));
}

/*
 * Runs one claimed job in a subtransaction of its own, under
 * crm.job_timeout.  Its failure (an ERROR, or the time limit) rolls back
 * what it did and marks it failed; a cancel that is not the time limit's
 * (a user's, or the server shutting down) is thrown on and ends the whole
 * batch, whose jobs then stay pending.  Returns whether the job ran (false:
 * an earlier job of the batch cancelled it or moved its due time).
 */
/* Attempts of a job that failed on a deadlock or a serialization failure. */
#define JOB_ATTEMPTS 3

static bool
run_claimed_job(int64 id, ItemPointer tid, TimestampTz now, MemoryContext job_cxt, int attempt)
{
	MemoryContext oldcxt = CurrentMemoryContext;
	ResourceOwner oldowner = CurrentResourceOwner;
	volatile bool ran = false;
	ErrorData  *edata = NULL;

	check_stack_depth();			/* again after a deadlock: bounded, still */
	/* each job is a change of its own for crm.max_steps (lineage.c) */
	SetCurrentStatementStartTimestamp();
	BeginInternalSubTransaction(NULL);
	MemoryContextSwitchTo(job_cxt);
	PG_TRY();
	{
		CrmJob		job;

		job_timer_start();
		if (read_job(id, tid, now, &job, job_cxt))
		{
			dispatch(&job);
			ran = true;
		}
		/* a time limit reached but swallowed by the job is still reached */
		CHECK_FOR_INTERRUPTS();
		if (job_timed_out)
			ereport(ERROR, (errcode(ERRCODE_QUERY_CANCELED), errmsg("timed out")));
		job_timer_stop();
		ReleaseCurrentSubTransaction();
	}
	PG_CATCH();
	{
		job_timer_stop();
		MemoryContextSwitchTo(oldcxt);
		edata = CopyErrorData();
		FlushErrorState();
		RollbackAndReleaseCurrentSubTransaction();
		if (edata->sqlerrcode == ERRCODE_QUERY_CANCELED && !job_timed_out)
		{
			MemoryContextSwitchTo(oldcxt);
			CurrentResourceOwner = oldowner;
			ReThrowError(edata);
		}
	}
	PG_END_TRY();
	MemoryContextSwitchTo(oldcxt);
	CurrentResourceOwner = oldowner;

	if (edata != NULL && !job_timed_out && attempt < JOB_ATTEMPTS &&
		(edata->sqlerrcode == ERRCODE_T_R_DEADLOCK_DETECTED ||
		 edata->sqlerrcode == ERRCODE_T_R_SERIALIZATION_FAILURE))
	{
		/* rolled back alone: run it again once the other side went on */
		ereport(LOG,
				(errmsg("crm_automation: job %lld, attempt %d of %d failed, trying again: %s",
						(long long) id, attempt, JOB_ATTEMPTS, edata->message)));
		FreeErrorData(edata);
		MemoryContextReset(job_cxt);
		pg_usleep(attempt * 50000L);
		CHECK_FOR_INTERRUPTS();
		return run_claimed_job(id, tid, now, job_cxt, attempt + 1);
	}
	if (edata != NULL)
	{
		/* the time limit's cancel is spent: it must not stop the next job */
		if (job_timed_out)
		{
			QueryCancelPending = false;
			mark_failed(id, psprintf("job ran longer than crm.job_timeout (%d ms)", crm_job_timeout));
		}
		else
			mark_failed(id, edata->message);
		FreeErrorData(edata);
		ran = true;
	}
	else if (job_timed_out)
		QueryCancelPending = false;	/* fired after the job's last check */
	job_timed_out = false;
	MemoryContextReset(job_cxt);
	return ran;
}

/* The claim of due jobs, on crm.job or one of its shards (%s). */
static const char *const claim_sql =
"SELECT id, ctid FROM %s"
" WHERE status = 'pending' AND due_at <= $1"
" ORDER BY due_at LIMIT $2 FOR UPDATE SKIP LOCKED";

static int32 run_batch(const char *query, SPIPlanPtr plan, TimestampTz now, int32 limit,
					   MemoryContext caller_cxt, MemoryContext job_cxt);

PG_FUNCTION_INFO_V1(crm_run_due_jobs);

/*
 * crm.run_due_jobs(max_jobs): claims up to max_jobs due jobs in one index
 * scan (FOR UPDATE SKIP LOCKED: other callers claim others) and runs them
 * one after the other in the caller's transaction, each in a
 * subtransaction of its own.  Returns how many ran or failed.  The due
 * bound is a parameter, the clock read once: the scan stops at the first
 * job not yet due.
 */
Datum
crm_run_due_jobs(PG_FUNCTION_ARGS)
{
	static SPIPlanPtr claim_plan = NULL;
	int32		limit = PG_ARGISNULL(0) ? 100 : PG_GETARG_INT32(0);
	TimestampTz now = GetCurrentTimestamp();
	Oid			argtypes[2] = {TIMESTAMPTZOID, INT4OID};
	MemoryContext caller_cxt = CurrentMemoryContext;
	MemoryContext job_cxt;
	volatile int32 ran = 0;

	if (limit < 1 || limit > 10000)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("max_jobs must be between 1 and 10000, not %d", limit)));
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	job_cxt = AllocSetContextCreate(caller_cxt, "crm job", ALLOCSET_DEFAULT_SIZES);

	/*
	 * Distributed (core/citus.h): this node's jobs are in its shards of
	 * crm.job, each claimed from and run in turn; the coordinator has none.
	 */
	{
		Oid			job_rel = get_relname_relid("job", get_namespace_oid("crm", false));

		if (crm_table_is_distributed(job_rel))
		{
			List	   *shards = crm_local_shards(job_rel);
			ListCell   *lc;

			PG_TRY();
			{
				foreach(lc, shards)
				{
					job_shard = (const char *) lfirst(lc);
					if (ran < limit)
						ran += run_batch(psprintf(claim_sql, job_shard), NULL, now, limit - ran,
										 caller_cxt, job_cxt);
				}
			}
			PG_FINALLY();
			{
				job_shard = NULL;
			}
			PG_END_TRY();
			MemoryContextDelete(job_cxt);
			SPI_finish();
			PG_RETURN_INT32(ran);
		}
	}
	ran = run_batch(NULL, crm_plan(&claim_plan, psprintf(claim_sql, "crm.job"), 2, argtypes),
					now, limit, caller_cxt, job_cxt);
	MemoryContextDelete(job_cxt);
	SPI_finish();
	PG_RETURN_INT32(ran);
}

/*
 * Claims up to limit due jobs (by the query text, or the kept plan) and
 * runs them; returns how many ran or failed.
 */
static int32
run_batch(const char *query, SPIPlanPtr plan, TimestampTz now, int32 limit,
		  MemoryContext caller_cxt, MemoryContext job_cxt)
{
	Oid			argtypes[2] = {TIMESTAMPTZOID, INT4OID};
	Datum		args[2];
	int64	   *ids;
	ItemPointerData *tids;
	uint64		n;
	uint64		i;
	int32		ran = 0;

	args[0] = TimestampTzGetDatum(now);
	args[1] = Int32GetDatum(limit);
	if (query != NULL)
	{
		if (SPI_execute_with_args(query, 2, argtypes, args, NULL, false, 0) != SPI_OK_SELECT)
			elog(ERROR, "could not claim jobs");
	}
	else
		(void) crm_exec(plan, args, NULL, false, 0);
	n = SPI_processed;
	ids = MemoryContextAlloc(caller_cxt, sizeof(int64) * (n + 1));
	tids = MemoryContextAlloc(caller_cxt, sizeof(ItemPointerData) * (n + 1));
	for (i = 0; i < n; i++)
	{
		bool		isnull;

		get_int64(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 1, &ids[i]);
		ItemPointerCopy((ItemPointer) DatumGetPointer(SPI_getbinval(SPI_tuptable->vals[i],
														  SPI_tuptable->tupdesc, 2, &isnull)),
						&tids[i]);
	}
	SPI_freetuptable(SPI_tuptable);

	for (i = 0; i < n; i++)
	{
		CHECK_FOR_INTERRUPTS();
		if (run_claimed_job(ids[i], &tids[i], now, job_cxt, 1))
			ran++;
	}
	pfree(ids);
	pfree(tids);
	return ran;
}
