/*-------------------------------------------------------------------------
 *
 * scheduler.c
 *	  Runs one scheduled job (crm._execute_job), dispatching on its kind.
 *
 * The claiming loop is crm.run_next_job() (SQL, 40_automation.sql), called
 * by the worker; each family of automation registers the executor of its job
 * kinds here (robots: "robot", "wait", "control"; processes: timers), so that
 * the scheduler knows nothing about what a job does.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "executor/spi.h"
#include "fmgr.h"
#include "utils/builtins.h"
#include "utils/jsonb.h"

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

PG_FUNCTION_INFO_V1(crm_execute_job);

Datum
crm_execute_job(PG_FUNCTION_ARGS)
{
	int64		job_id = PG_GETARG_INT64(0);
	Oid			argtypes[1] = {INT8OID};
	Datum		args[1];
	CrmJob		job;
	HeapTuple	tup;
	TupleDesc	desc;
	bool		isnull;
	Datum		d;
	int			i;
	CrmJobExecutor fn = NULL;
	MemoryContext caller_cxt = CurrentMemoryContext;

	args[0] = Int64GetDatum(job_id);
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	if (SPI_execute_with_args("SELECT id, kind, robot_id, log_id, process_instance_id,"
							  "       stage_id, entity_type, entity_id, due_at, context"
							  "  FROM crm.job WHERE id = $1",
							  1, argtypes, args, NULL, true, 1) != SPI_OK_SELECT)
		elog(ERROR, "could not read job %lld", (long long) job_id);
	if (SPI_processed == 0)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("job %lld does not exist", (long long) job_id)));

	tup = SPI_tuptable->vals[0];
	desc = SPI_tuptable->tupdesc;
	memset(&job, 0, sizeof(job));
	get_int64(tup, desc, 1, &job.id);
	strlcpy(job.kind, SPI_getvalue(tup, desc, 2), sizeof(job.kind));
	get_int64(tup, desc, 3, &job.robot_id);
	get_int64(tup, desc, 4, &job.log_id);
	get_int64(tup, desc, 5, &job.process_instance_id);
	get_int64(tup, desc, 6, &job.stage_id);
	strlcpy(job.entity_type, SPI_getvalue(tup, desc, 7), sizeof(job.entity_type));
	get_int64(tup, desc, 8, &job.entity_id);
	d = SPI_getbinval(tup, desc, 9, &isnull);
	job.due_at = DatumGetTimestampTz(d);
	d = SPI_getbinval(tup, desc, 10, &isnull);
	{
		MemoryContext old = MemoryContextSwitchTo(caller_cxt);

		job.context = isnull ? NULL : DatumGetJsonbPCopy(d);
		MemoryContextSwitchTo(old);
	}
	SPI_finish();

	for (i = 0; i < n_job_kinds; i++)
	{
		if (strcmp(job_kinds[i].kind, job.kind) == 0)
		{
			fn = job_kinds[i].fn;
			break;
		}
	}
	if (fn == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("no executor for job kind \"%s\"", job.kind),
				 errdetail("Job %lld cannot run.", (long long) job.id)));

	fn(&job);
	PG_RETURN_VOID();
}
