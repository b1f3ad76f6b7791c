/*-------------------------------------------------------------------------
 *
 * worker.c
 *	  The per-database worker: runs due jobs and delivers the outbox.
 *
 * One loop, never blocking on anything but its wait:
 *
 *	 1. when woken (a commit set the latch) or when something fell due:
 *		run due jobs, each in its own transaction (crm.run_next_job()),
 *		then claim messages up to crm.worker_concurrency in flight and note
 *		the next time anything falls due (crm._next_wakeup());
 *	 2. hand the claimed messages to libcurl (http.c) and commit nothing
 *		while they travel;
 *	 3. record finished transfers in one short transaction;
 *	 4. wait on the latch, the transfers' sockets and the earliest due time.
 *
 * While a backlog remains, it claims again as soon as a quarter of the
 * transfer slots are free.  SIGTERM lets the transfers in flight finish for
 * up to 3 seconds and gives the rest back to the queue; a crash leaves their
 * leases, which the next claim takes back (crm._claim_messages).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "commands/dbcommands.h"
#include "commands/extension.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "tcop/tcopprot.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"

#include "crm_automation.h"
#include "delivery.h"
#include "worker.h"

#define JOBS_PER_PASS		100
#define CLEANUP_EVERY_MS	(5 * 60 * 1000)
#define SHUTDOWN_GRACE_MS	3000
#define LEASE_MARGIN_MS		30000
#define IDLE_CHECK_MS		(10 * 60 * 1000)

static volatile sig_atomic_t got_sigterm = false;

/* set by the steps, read by the loop */
static bool extension_gone = false;
static TimestampTz next_job_due = 0;
static TimestampTz next_msg_due = 0;
static bool job_backlog = false;

static void
worker_sigterm(SIGNAL_ARGS)
{
	int			save_errno = errno;

	got_sigterm = true;
	SetLatch(MyLatch);
	errno = save_errno;
}

typedef void (*XactStep) (void *arg);

/*
 * Runs fn in a transaction of its own with SPI connected.  An ERROR is
 * reported and the transaction rolled back; the loop goes on.
 */
static bool
in_transaction(XactStep fn, void *arg, const char *activity)
{
	MemoryContext caller = CurrentMemoryContext;
	volatile bool ok = true;

	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	PG_TRY();
	{
		if (SPI_connect() != SPI_OK_CONNECT)
			elog(ERROR, "SPI_connect failed");
		PushActiveSnapshot(GetTransactionSnapshot());
		pgstat_report_activity(STATE_RUNNING, activity);
		fn(arg);
		SPI_finish();
		PopActiveSnapshot();
		CommitTransactionCommand();
	}
	PG_CATCH();
	{
		MemoryContextSwitchTo(caller);
		EmitErrorReport();
		FlushErrorState();
		AbortCurrentTransaction();
		ok = false;
	}
	PG_END_TRY();
	MemoryContextSwitchTo(caller);
	pgstat_report_stat(false);
	pgstat_report_activity(STATE_IDLE, NULL);
	return ok;
}

static char dbname[NAMEDATALEN];

static void
step_check_extension(void *arg)
{
	char	   *name = get_database_name(MyDatabaseId);

	strlcpy(dbname, name ? name : "?", sizeof(dbname));
	extension_gone = !OidIsValid(get_extension_oid("crm_automation", true));
}

static TimestampTz
get_due(int col)
{
	bool		isnull;
	Datum		d = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, col, &isnull);

	return isnull ? DT_NOEND : DatumGetTimestampTz(d);
}

/*
 * One due job, if any; *ran says whether there was one.  When there was
 * none, the next due time is noted (read in the same snapshot).
 */
static void
step_run_job(void *arg)
{
	bool	   *ran = arg;
	bool		isnull;

	if (SPI_execute("SELECT crm.run_next_job(), crm.next_job_due()", false, 1) != SPI_OK_SELECT)
		elog(ERROR, "crm.run_next_job() failed");
	(void) SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);
	*ran = !isnull;
	if (!*ran)
		next_job_due = get_due(2);
}

typedef struct ClaimStep
{
	int			limit;
	MemoryContext cxt;			/* the messages' parent context */
	MemoryContext list_cxt;		/* where the list of them goes */
	List	   *claimed;
} ClaimStep;

static void
step_claim(void *arg)
{
	ClaimStep  *c = arg;

	extension_gone = !OidIsValid(get_extension_oid("crm_automation", true));
	if (extension_gone)
		return;
	if (c->limit > 0)
	{
		List	   *l = crm_outbox_claim(c->limit, crm_http_timeout + LEASE_MARGIN_MS, c->cxt);
		MemoryContext old = MemoryContextSwitchTo(c->list_cxt);

		c->claimed = list_copy(l);
		MemoryContextSwitchTo(old);
	}
	if (SPI_execute("SELECT crm._next_message_due()", true, 1) != SPI_OK_SELECT)
		elog(ERROR, "crm._next_message_due() failed");
	next_msg_due = get_due(1);
}

static void
step_record(void *arg)
{
	ListCell   *lc;

	foreach(lc, (List *) arg)
		crm_outbox_record((CrmMessage *) lfirst(lc));
}

static void
step_release(void *arg)
{
	ListCell   *lc;

	foreach(lc, (List *) arg)
		crm_outbox_release((CrmMessage *) lfirst(lc));
}

static void
step_cleanup(void *arg)
{
	(void) SPI_execute("SELECT crm.cleanup_outbox()", false, 0);
}

static void
free_messages(List *msgs)
{
	ListCell   *lc;

	foreach(lc, msgs)
		MemoryContextDelete(((CrmMessage *) lfirst(lc))->cxt);
}

static void
record_finished(CrmTransport *t)
{
	List	   *done = crm_transport_finished(t);

	if (done == NIL)
		return;
	(void) in_transaction(step_record, done, "crm_automation: recording deliveries");
	free_messages(done);
	list_free(done);
}

/*
 * Runs due jobs, up to JOBS_PER_PASS; notes whether some may remain.
 * Returns how many ran.
 */
static int
run_jobs(void)
{
	int			n;

	job_backlog = false;
	for (n = 0; n < JOBS_PER_PASS; n++)
	{
		bool		ran = false;

		CHECK_FOR_INTERRUPTS();
		if (got_sigterm)
			return n;
		if (!in_transaction(step_run_job, &ran, "crm_automation: running a job"))
		{
			/* not the job's failure (run_next_job keeps those): back off */
			next_job_due = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), 1000);
			return n;
		}
		if (!ran)
			return n;
	}
	job_backlog = true;
	return n;
}

static void
shutdown_worker(CrmTransport *t)
{
	TimestampTz deadline = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), SHUTDOWN_GRACE_MS);
	List	   *left;

	while (crm_transport_inflight(t) > 0 && GetCurrentTimestamp() < deadline)
	{
		(void) crm_transport_wait(t, 100);
		ResetLatch(MyLatch);
		record_finished(t);
	}
	record_finished(t);
	left = crm_transport_abandon(t);
	if (left != NIL)
	{
		(void) in_transaction(step_release, left, "crm_automation: releasing messages");
		free_messages(left);
	}
}

void
crm_worker_main(Datum arg)
{
	Oid			dboid = DatumGetObjectId(arg);
	MemoryContext loop_cxt;
	MemoryContext msg_cxt;
	CrmTransport *t;
	TimestampTz last_cleanup = 0;
	bool		woken = true;	/* do everything once at start */
	bool		backlog = false;

	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	pqsignal(SIGTERM, worker_sigterm);
	BackgroundWorkerUnblockSignals();
	BackgroundWorkerInitializeConnectionByOid(dboid, InvalidOid, 0);
	crm_worker_attach(dboid);
	pgstat_report_appname("crm_automation worker");

	(void) in_transaction(step_check_extension, NULL, "crm_automation: starting");
	if (extension_gone)
	{
		crm_worker_set_state(dboid, CRM_WORKER_ABSENT);
		proc_exit(0);
	}
	crm_worker_set_state(dboid, CRM_WORKER_RUNNING);
	ereport(LOG, (errmsg("crm_automation worker started for database \"%s\"", dbname)));

	loop_cxt = AllocSetContextCreate(TopMemoryContext, "crm worker loop", ALLOCSET_DEFAULT_SIZES);
	msg_cxt = AllocSetContextCreate(TopMemoryContext, "crm worker messages", ALLOCSET_DEFAULT_SIZES);
	t = crm_transport_create();

	while (!got_sigterm)
	{
		TimestampTz now;
		TimestampTz wake_at;
		long		timeout;
		int			batch = Max(crm_worker_concurrency / 4, 1);
		int			free_slots;
		bool		can_claim;

		MemoryContextReset(loop_cxt);
		MemoryContextSwitchTo(loop_cxt);
		CHECK_FOR_INTERRUPTS();
		if (ConfigReloadPending)
		{
			ConfigReloadPending = false;
			ProcessConfigFile(PGC_SIGHUP);
		}

		if (crm_worker_enabled)
		{
			now = GetCurrentTimestamp();
			if ((woken || now >= next_job_due) && run_jobs() > 0)
				woken = true;	/* the jobs may have queued messages */

			free_slots = crm_worker_concurrency - crm_transport_inflight(t);
			can_claim = free_slots >= batch ||
				(free_slots > 0 && crm_transport_inflight(t) == 0);
			if (can_claim && (woken || backlog || now >= next_msg_due))
			{
				ClaimStep	c = {0};

				c.limit = free_slots;
				c.cxt = msg_cxt;
				c.list_cxt = loop_cxt;
				if (!in_transaction(step_claim, &c, "crm_automation: claiming messages"))
					next_msg_due = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), 1000);
				else
				{
					ListCell   *lc;

					backlog = list_length(c.claimed) >= c.limit;
					/* due but not claimable (locked by someone): look again soon */
					if (!backlog && next_msg_due <= now)
						next_msg_due = TimestampTzPlusMilliseconds(now, 250);
					foreach(lc, c.claimed)
						crm_transport_start(t, (CrmMessage *) lfirst(lc));
					list_free(c.claimed);
				}
				if (extension_gone)
					break;
			}
		}

		record_finished(t);

		now = GetCurrentTimestamp();
		if (last_cleanup == 0 || TimestampDifferenceExceeds(last_cleanup, now, CLEANUP_EVERY_MS))
		{
			(void) in_transaction(step_cleanup, NULL, "crm_automation: cleaning the outbox");
			last_cleanup = now;
		}

		/* sleep until the latch, a socket, or the earliest due time */
		free_slots = crm_worker_concurrency - crm_transport_inflight(t);
		can_claim = free_slots >= batch ||
			(free_slots > 0 && crm_transport_inflight(t) == 0);
		wake_at = next_job_due;
		if (can_claim)
			wake_at = Min(wake_at, backlog ? now : next_msg_due);
		if (!crm_worker_enabled)
			timeout = IDLE_CHECK_MS;
		else if (job_backlog || wake_at <= now)
			timeout = 0;
		else if (wake_at == DT_NOEND)
			timeout = IDLE_CHECK_MS;
		else
			timeout = Min((long) ((wake_at - now + 999) / 1000), IDLE_CHECK_MS);

		woken = crm_transport_wait(t, timeout);
		ResetLatch(MyLatch);
		record_finished(t);
	}

	MemoryContextSwitchTo(TopMemoryContext);
	shutdown_worker(t);
	if (extension_gone)
	{
		crm_worker_set_state(dboid, CRM_WORKER_ABSENT);
		ereport(LOG, (errmsg("crm_automation worker stopping: the extension was dropped from database \"%s\"", dbname)));
		proc_exit(0);
	}
	proc_exit(0);
}
