/*-------------------------------------------------------------------------
 *
 * worker.c
 *	  The per-database delivery workers: deliver the outbox.
 *
 * A database has crm.workers_per_database of them (launcher.c), each with
 * its rank and its share of crm.worker_concurrency, the "slots" below.  They
 * claim from the same outbox (SKIP LOCKED keeps their claims apart); rank 0
 * alone runs the outbox's cleanup.  Due jobs are not theirs: the job
 * runners (job_runner.c) run them, so a burst of jobs never holds a
 * message.  A claim that came back full means more messages wait: the
 * worker then wakes the next rank (at most every SIBLING_WAKE_MS), so a
 * burst draws every worker in.
 *
 * One loop, never blocking on anything but its wait:
 *
 *	 1. (the entry point starts a job runner's loop instead for its ranks);
 *	 2. fill the free transfer slots from the messages claimed ahead;
 *	 3. one short transaction, the "exchange", when there is enough to do:
 *		record the transfers that finished (one UPDATE for all of them), then
 *		lease more messages (crm._claim_messages), and note the next time
 *		anything falls due (crm._next_message_due()'s query) unless the claim was
 *		full; commit (after an exchange that rolled back, the claim takes
 *		one message at a time, so that a row whose claim raises an ERROR
 *		fails alone: crm_outbox_claim_careful);
 *	 4. hand the claimed messages to libcurl (http.c) as slots free up, and
 *		commit nothing while they travel;
 *	 5. wait on the latch, the transfers' sockets and the earliest due time.
 *
 * Each exchange has a fixed cost, so the loop makes them count: it claims
 * when fewer than half the slots' worth of messages are ready, as many as
 * fill the free slots and twice the slots ahead, and records results once
 * a slots' worth finished (or 20 ms after the first, or when nothing else
 * is in flight).  A message claimed ahead starts only while its lease
 * outlasts its whole transfer by START_MARGIN_MS; one that waited longer
 * for a slot (slow endpoints holding them all) goes back to the queue
 * unsent.
 *
 * One endpoint (scheme and authority of the URL) holds at most all of the
 * worker's slots but an eighth: however slow it is, messages to others
 * find a free slot.  Its messages beyond that wait in the ready list
 * without counting as ready, and once half the slots' worth of them wait,
 * claims skip that endpoint, looking at most 2,000 messages ahead in the
 * queue (a longer backlog for a slow endpoint still delays the messages
 * queued after it until it shrinks below that).
 *
 * The exchange commits without waiting for its WAL to reach the disk
 * (synchronous_commit off, for that transaction only; jobs commit as
 * configured).  Losing such a commit in a crash loses no message: a lost
 * claim leaves the message pending, a lost result leaves it leased by a
 * worker of the previous server, which the first claim after the restart
 * takes back.  Either way the message is sent again with the same
 * webhook-id, so what a crash can cost is duplicates, never a message.
 * To keep them bounded, an exchange that recorded results flushes the WAL
 * to the local disk right after its commit (without waiting for
 * synchronous standbys), before the worker goes on: a crash re-sends at
 * most the messages in flight and those finished but not yet recorded.
 * (Results left off the disk for up to 100 ms, as before, let a crash
 * re-send a slots' worth more: worker_crash.sh saw it.)  In a burst each
 * commit records about a slots' worth, so this is one flush per slots'
 * worth of messages; claims alone are never flushed.
 *
 * The loop's allocations live in a context reset at the top of each turn;
 * each message has its own context, deleted once its result is recorded.
 * SIGTERM lets the transfers in flight finish for up to 3 seconds and gives
 * the rest, and the messages claimed ahead, back to the queue; a crash
 * leaves their leases, which a later claim takes back (every claim reads
 * past the messages being sent and takes those whose lease ended, or was
 * taken before the server started).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "access/xlog.h"
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
#include "utils/guc.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"

#include "core/guc.h"
#include "core/scope.h"
#include "core/spi_util.h"
#include "delivery/delivery.h"
#include "delivery/worker.h"

#define CLEANUP_EVERY_MS	(5 * 60 * 1000)
#define SHUTDOWN_GRACE_MS	3000
#define LEASE_MARGIN_MS		30000
#define IDLE_CHECK_MS		(10 * 60 * 1000)
#define RECORD_DELAY_MS		20		/* longest a result waits for others to share its commit */
#define SIBLING_WAKE_MS		100		/* while claims come back full, how often the next
										 * worker is woken */
#define START_MARGIN_MS		5000	/* a leased message starts only while its lease outlasts
									 * the transfer by this much */
#define SKIP_AGAIN_MS		250		/* after a claim that skipped busy endpoints came
									 * back short, how long before the next may;
									 * doubled while they come back empty, up to */
#define SKIP_AGAIN_MAX_MS	2000
#define EXCHANGE_RETRY_MS	1000	/* after a failed exchange, the next waits that long */
#define RECORD_TRIES		3	/* records of one result before it is given up */
#define ERROR_NAP_MS		1000	/* after an ERROR out of the loop no message took */
#define FROM_START_MS		250		/* while claims from the cursor come back full, how
									 * often one starts from the start instead */

static volatile sig_atomic_t got_sigterm = false;

/*
 * This worker's rank among its database's workers (0 runs the outbox's
 * cleanup) and its share of crm.worker_concurrency.
 */
static int	rank = 0;
static int	slots = 1;

/* set by the steps, read by the loop */
static bool extension_gone = false;
static TimestampTz next_msg_due = 0;

/*
 * Messages claimed ahead, not yet started (oldest due first), and those
 * given back unsent because they waited too long; both in worker_cxt.
 */
static List *ready = NIL;
static int	ready_blocked = 0;	/* how many of them wait for a busy endpoint */
static int	last_claimed = 0;	/* how many messages the last exchange claimed */
static List *unsent = NIL;
static MemoryContext worker_cxt = NULL;

/*
 * While start_ready() goes through the ready messages: those it keeps, and
 * the position of the one being started (-1: none), so that an ERROR in
 * between loses none of them (restore_ready()).
 */
static List *ready_kept = NIL;
static int	ready_pos = -1;

/*
 * Results whose record rolled back (the exchange failed): recorded again,
 * not dropped (their messages would be sent again once their lease ended).
 * After a second failure in a row each is recorded in a transaction of its
 * own, so that one result that cannot be recorded holds no other.
 */
static List *unrecorded = NIL;
static int	record_failures = 0;
static bool claim_failed = false;	/* the last exchange that claimed rolled
									 * back: the next claims one by one
									 * (crm_outbox_claim_careful) */
static TimestampTz exchange_retry_at = 0;	/* after a failed exchange, not before */

/* when this worker's claim last started from the start of the queue (see step_exchange) */
static TimestampTz from_start_at = 0;

static void
worker_sigterm(SIGNAL_ARGS)
{
	int			save_errno = errno;

	got_sigterm = true;
	SetLatch(MyLatch);
	errno = save_errno;
}

/*
 * Runs fn in a transaction of its own with SPI connected.  An ERROR is
 * reported and the transaction rolled back; the loop goes on.
 */
bool
crm_worker_xact(CrmXactStep fn, void *arg, const char *activity)
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

/*
 * One exchange with the outbox, in one short transaction: record the
 * transfers that finished, then lease up to limit more messages.  One
 * commit per turn of the loop, however many messages it covers.
 */
typedef struct Exchange
{
	List	   *finished;		/* to record */
	int			limit;			/* to claim; 0: none */
	bool		check_extension;
	MemoryContext cxt;			/* the messages' parent context */
	MemoryContext list_cxt;		/* where the list of claimed ones goes */
	List	   *busy;			/* endpoints the claim skips */
	bool		careful;		/* the last claim failed: one by one */
	List	   *claimed;
} Exchange;

/* A claim went as far as c: the database's workers claim after it. */
static void
cursor_advance(const CrmClaimCursor *c)
{
	if (c->valid)
		crm_claim_point_advance(c->at, c->id);
}

static void
step_exchange(void *arg)
{
	Exchange   *x = arg;
	double		retry_in;

	if (x->check_extension)
	{
		extension_gone = !OidIsValid(get_extension_oid("crm_automation", true));
		if (extension_gone)
			return;
	}

	/* see the header comment: a lost commit here costs a re-send only */
	(void) set_config_option("synchronous_commit", "off", PGC_USERSET, PGC_S_SESSION,
							 GUC_ACTION_LOCAL, true, 0, false);

	/*
	 * The record finds each row by primary key.  Its plan is made once,
	 * often while the outbox is nearly empty, when reading the whole table
	 * looks as cheap; kept as the outbox grows, it would read every row for
	 * every batch.
	 */
	(void) set_config_option("enable_seqscan", "off", PGC_USERSET, PGC_S_SESSION,
							 GUC_ACTION_LOCAL, true, 0, false);
	retry_in = crm_outbox_record(x->finished);

	/*
	 * A failure is due again after its delay: the worker must look then,
	 * whether or not a claim follows (one that does reads the due time).
	 */
	if (retry_in >= 0)
		next_msg_due = Min(next_msg_due,
						   TimestampTzPlusMilliseconds(GetCurrentTimestamp(),
													   (int64) (retry_in * 1000.0)));
	if (x->limit > 0)
	{
		int			lease_ms = crm_http_timeout + LEASE_MARGIN_MS;
		TimestampTz now = GetCurrentTimestamp();
		CrmClaimCursor cursor = {0};
		List	   *l;
		MemoryContext old;

		/*
		 * A claim from the start of the queue reads past every message in
		 * flight (leased, not done): up to three slots' worth for each
		 * worker.  The database's workers claim after the furthest message
		 * any of them claimed instead (a point in shared memory), which
		 * skips them all.  What lies behind that point and becomes
		 * claimable (a message committed by a transaction that began
		 * earlier, one given back unsent, an expired lease, one a claim
		 * skipped while another held it, or claimed by an exchange that
		 * rolled back) is taken by a claim from the start: when the claim
		 * from the point comes back short (the rest of the limit, in the
		 * same transaction) and at least every FROM_START_MS.
		 */
		cursor.valid = crm_claim_point(&cursor.at, &cursor.id);
		if (x->careful)
			l = crm_outbox_claim_careful(x->limit, lease_ms, x->cxt);
		else if (x->busy != NIL || !cursor.valid ||
				 TimestampDifferenceExceeds(from_start_at, now, FROM_START_MS))
		{
			CrmClaimCursor start = {0};

			l = crm_outbox_claim(x->limit, lease_ms, true, x->busy, &start, x->cxt);
			from_start_at = now;
			cursor_advance(&start);
		}
		else
		{
			CrmClaimCursor after = cursor;

			l = crm_outbox_claim(x->limit, lease_ms, true, NIL, &after, x->cxt);
			cursor_advance(&after);
			if (list_length(l) < x->limit)
			{
				CrmClaimCursor start = {0};

				l = list_concat(l, crm_outbox_claim(x->limit - list_length(l), lease_ms, true,
													NIL, &start, x->cxt));
				from_start_at = now;
				cursor_advance(&start);
			}
		}
		old = MemoryContextSwitchTo(x->list_cxt);

		x->claimed = list_copy(l);
		MemoryContextSwitchTo(old);

		/* a full claim means more may wait: no need to look further */
		if (list_length(x->claimed) >= x->limit)
			return;
		next_msg_due = crm_outbox_next_due();
	}
}

static void
step_release(void *arg)
{
	crm_outbox_release((List *) arg);
}

/*
 * The exchange just committed, recording n results: on the local disk before
 * the worker goes on (see the header comment).
 */
static void
results_committed(int n)
{
	if (n > 0 && XactLastCommitEnd != InvalidXLogRecPtr)
		XLogFlush(XactLastCommitEnd);
}

/*
 * This worker's share of crm.worker_concurrency: the workers of a database
 * split it, the first ones taking the remainder.  False when its rank is no
 * longer wanted (the settings changed): it then leaves.
 */
static bool
share_slots(void)
{
	int			n = crm_workers_wanted();

	if (rank >= n)
		return false;
	slots = crm_worker_concurrency / n + (rank < crm_worker_concurrency % n ? 1 : 0);
	return true;
}

static void
step_cleanup(void *arg)
{
	(void) SPI_execute("SELECT crm.cleanup_outbox()", false, 0);
	crm_outbox_due_sweep();
}

static void
free_messages(List *msgs)
{
	ListCell   *lc;

	foreach(lc, msgs)
		MemoryContextDelete(((CrmMessage *) lfirst(lc))->cxt);
}

/*
 * Transfers one endpoint may hold at once: all of the worker's slots but an
 * eighth (at least one), so that messages to other endpoints find a free
 * slot however slow this one is.
 */
static int
endpoint_share(void)
{
	return Max(1, slots - Max(1, slots / 8));
}

typedef struct Blocked
{
	const char *endpoint;
	int			n;
} Blocked;

/*
 * Starts ready messages in the free transfer slots, oldest first, each
 * while its endpoint has less than its share of them in flight; the others
 * wait (blocked).  A message leased so long ago that its transfer could
 * outlast the lease (all the slots, or its endpoint's share, held by slow
 * transfers) is given back unsent instead: once its lease expired, a claim
 * could take it again.  Returns how many messages wait for their endpoint;
 * when busy is not NULL, sets it to the endpoints with at least half the
 * slots' worth of them (a list of strings in the current context), which
 * the next claim skips.
 */
static int
start_ready(CrmTransport *t, List **busy)
{
	TimestampTz now = GetCurrentTimestamp();
	int			share = endpoint_share();
	List	   *blocked = NIL;
	int			nblocked = 0;
	ListCell   *lc;
	MemoryContext old;

	/* no free slot: nothing starts, and the counts stand */
	if (busy == NULL && crm_transport_inflight(t) >= slots)
		return ready_blocked;
	old = MemoryContextSwitchTo(worker_cxt);

	Assert(ready_kept == NIL);
	foreach(lc, ready)
	{
		CrmMessage *m = lfirst(lc);

		if (crm_transport_inflight(t) >= slots)
		{
			/* no free slot: the rest wait as they are */
			ready_kept = list_concat(ready_kept, list_copy_tail(ready, foreach_current_index(lc)));
			break;
		}
		if (TimestampDifferenceExceeds(m->claimed_at, now, LEASE_MARGIN_MS - START_MARGIN_MS))
		{
			m->outcome = CRM_OUT_RELEASED;
			m->result_error = "waited too long for a free transfer slot: back to the queue";
			unsent = lappend(unsent, m);
		}
		else if (m->endpoint != NULL && crm_transport_load(t, m->endpoint) >= share)
		{
			ListCell   *bc;
			Blocked    *b = NULL;

			ready_kept = lappend(ready_kept, m);
			nblocked++;
			if (busy == NULL)
				continue;
			foreach(bc, blocked)
			{
				if (strcmp(((Blocked *) lfirst(bc))->endpoint, m->endpoint) == 0)
				{
					b = lfirst(bc);
					break;
				}
			}
			if (b == NULL)
			{
				b = palloc0(sizeof(Blocked));
				b->endpoint = m->endpoint;
				blocked = lappend(blocked, b);
			}
			b->n++;
		}
		else
		{
			/* an ERROR here is caught by the loop: see restore_ready() */
			ready_pos = foreach_current_index(lc);
			crm_transport_start(t, m);
			ready_pos = -1;
		}
	}
	list_free(ready);
	ready = ready_kept;
	ready_kept = NIL;
	ready_blocked = nblocked;
	MemoryContextSwitchTo(old);

	if (busy != NULL)
	{
		*busy = NIL;
		foreach(lc, blocked)
		{
			Blocked    *b = lfirst(lc);

			if (b->n >= Max(1, slots / 2))
				*busy = lappend(*busy, pstrdup(b->endpoint));
		}
		list_free_deep(blocked);
	}
	return nblocked;
}

/* Results waiting to be recorded. */
static int
results_waiting(CrmTransport *t)
{
	return crm_transport_nfinished(t) + list_length(unsent) + list_length(unrecorded);
}

static void
step_record(void *arg)
{
	double		retry_in = crm_outbox_record((List *) arg);

	if (retry_in >= 0)
		next_msg_due = Min(next_msg_due,
						   TimestampTzPlusMilliseconds(GetCurrentTimestamp(),
													   (int64) (retry_in * 1000.0)));
}

/*
 * The exchange failed twice in a row with results in it: each result
 * waiting is recorded in a transaction of its own.  One whose record fails
 * alone is kept once more without its excerpt, error text or disabling of
 * its endpoint; after RECORD_TRIES it is given up with a WARNING (its
 * lease ends and the message is sent again, with the same webhook-id).
 */
static void
record_alone(void)
{
	List	   *all = unrecorded;
	List	   *left = NIL;
	ListCell   *lc;

	unrecorded = NIL;
	foreach(lc, all)
	{
		CrmMessage *m = lfirst(lc);
		List	   *one = list_make1(m);
		bool		ok;
		MemoryContext old;

		ok = crm_worker_xact(step_record, one, "crm_automation: recording deliveries");
		list_free(one);
		if (ok)
		{
			results_committed(1);
			MemoryContextDelete(m->cxt);
			continue;
		}
		if (++m->record_tries >= RECORD_TRIES)
		{
			ereport(WARNING,
					(errmsg("crm_automation: could not record the result of outbox message " INT64_FORMAT, m->id),
					 errdetail("It will be sent again once its lease ends.")));
			MemoryContextDelete(m->cxt);
			continue;
		}
		m->excerpt_len = 0;
		m->result_error = "the result's text could not be recorded";
		if (m->outcome == CRM_OUT_GONE)
			m->outcome = CRM_OUT_DEAD;
		old = MemoryContextSwitchTo(worker_cxt);
		left = lappend(left, m);
		MemoryContextSwitchTo(old);
	}
	list_free(all);
	unrecorded = left;
}

/*
 * Records what finished and claims up to limit more (0: none), skipping
 * the busy endpoints, in one transaction; the claimed messages join the
 * ready ones and start as slots allow.  Returns whether the transaction
 * committed; *full says, after a claim, whether it took all it could (more
 * may be waiting).
 */
static bool
exchange(CrmTransport *t, int limit, List *busy, bool check_extension,
		 MemoryContext msg_cxt, bool *full)
{
	Exchange	x = {0};
	MemoryContext old;
	bool		ok;

	if (record_failures >= 2 && unrecorded != NIL)
		record_alone();
	x.finished = list_concat(crm_transport_finished(t), unsent);
	list_free(unsent);
	unsent = NIL;
	x.finished = list_concat(x.finished, unrecorded);
	list_free(unrecorded);
	unrecorded = NIL;
	x.limit = limit;
	x.busy = busy;
	x.check_extension = check_extension;
	x.careful = claim_failed && limit > 0;
	x.cxt = msg_cxt;
	x.list_cxt = CurrentMemoryContext;
	if (x.finished == NIL && limit == 0 && !check_extension)
		return true;
	ok = crm_worker_xact(step_exchange, &x,
						limit > 0 ? "crm_automation: claiming messages"
						: "crm_automation: recording deliveries");
	if (!ok)
	{
		/* the claim rolled back with the rest: its messages were never ours */
		free_messages(x.claimed);
		/* the results are kept, to be recorded again in a second */
		old = MemoryContextSwitchTo(worker_cxt);
		unrecorded = list_copy(x.finished);
		MemoryContextSwitchTo(old);
		list_free(x.finished);
		if (unrecorded != NIL)
			record_failures++;
		claim_failed = limit > 0;
		/* the next claim starts from the start (what this one took is behind the point) */
		from_start_at = 0;
		crm_outbox_claim_forget();
		exchange_retry_at = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), EXCHANGE_RETRY_MS);
		*full = false;
		return false;
	}
	record_failures = 0;
	if (limit > 0)
		claim_failed = false;
	results_committed(list_length(x.finished));
	free_messages(x.finished);
	list_free(x.finished);
	if (limit > 0)
		*full = list_length(x.claimed) >= limit;
	last_claimed = list_length(x.claimed);
	old = MemoryContextSwitchTo(worker_cxt);
	ready = list_concat(ready, x.claimed);
	MemoryContextSwitchTo(old);
	list_free(x.claimed);
	(void) start_ready(t, NULL);
	return true;
}

static void
shutdown_worker(CrmTransport *t, MemoryContext msg_cxt)
{
	TimestampTz deadline = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), SHUTDOWN_GRACE_MS);
	List	   *left;
	bool		full;

	while (crm_transport_inflight(t) > 0 && GetCurrentTimestamp() < deadline)
	{
		(void) crm_transport_wait(t, 100);
		ResetLatch(MyLatch);
	}
	(void) exchange(t, 0, NIL, false, msg_cxt, &full);
	left = list_concat(crm_transport_abandon(t), ready);
	ready = NIL;
	ready_blocked = 0;
	if (left != NIL)
	{
		(void) crm_worker_xact(step_release, left, "crm_automation: releasing messages");
		free_messages(left);
	}
}

/*
 * After an ERROR: the messages start_ready() was going through are ready
 * again, but the one being started (the transport finished it).
 */
static void
restore_ready(void)
{
	MemoryContext old = MemoryContextSwitchTo(worker_cxt);

	if (ready_pos >= 0)
	{
		List	   *rest = list_copy_tail(ready, ready_pos + 1);

		list_free(ready);
		ready = list_concat(ready_kept, rest);
		list_free(rest);
		ready_kept = NIL;
		ready_pos = -1;
	}
	else if (ready_kept != NIL)
	{
		/* thrown before any start: ready still holds every message */
		list_free(ready_kept);
		ready_kept = NIL;
	}
	MemoryContextSwitchTo(old);
}

/* Have crm.allowed_hosts or crm.allow_private_networks changed? */
static bool
guard_changed(const char *hosts_before, bool private_before)
{
	return private_before != crm_allow_private_networks ||
		strcmp(hosts_before, crm_allowed_hosts ? crm_allowed_hosts : "") != 0;
}

/*
 * What every worker of a database (delivery worker or job runner) does
 * once connected: takes its slot, pins its settings, and leaves at once
 * when the database has no crm_automation or crm.worker_enabled is off;
 * otherwise marks itself running.  Returns the database's name.
 */
const char *
crm_worker_begin(Oid dboid, int rank, const char *appname)
{
	crm_worker_attach(dboid, rank);
	pgstat_report_appname(appname);

	/*
	 * Short statements, many times a second: compiling them (when a large
	 * outbox lifts the planner's estimates above jit_above_cost) would cost
	 * far more than it saves.
	 */
	SetConfigOption("jit", "off", PGC_SUSET, PGC_S_OVERRIDE);

	/*
	 * Whatever search_path the database or a role was given (ALTER DATABASE
	 * ... SET search_path), the worker finds nothing by name outside
	 * pg_catalog: its SQL names crm objects, and jobs act as automation
	 * (core/scope.h) with the same path.
	 */
	SetConfigOption("search_path", CRM_PINNED_SEARCH_PATH, PGC_SUSET, PGC_S_OVERRIDE);

	(void) crm_worker_xact(step_check_extension, NULL, "crm_automation: starting");
	if (extension_gone)
	{
		crm_worker_set_state(CRM_WORKER_ABSENT);
		proc_exit(0);
	}
	if (!crm_worker_enabled)
	{
		/* started before the launcher read crm.worker_enabled = off */
		crm_worker_set_state(CRM_WORKER_DISABLED);
		proc_exit(0);
	}
	crm_worker_set_state(CRM_WORKER_RUNNING);
	return dbname;
}

void
crm_worker_main(Datum arg)
{
	Oid			dboid = DatumGetObjectId(arg);
	MemoryContext loop_cxt;
	MemoryContext msg_cxt;
	CrmTransport *t;
	sigjmp_buf	local_sigjmp_buf;

	/*
	 * The loop's state lives in static storage: it must survive a longjmp
	 * to the recovery block below.
	 */
	static TimestampTz last_cleanup = 0;
	static bool woken = true;	/* do everything once at start */
	static bool backlog = false;
	static bool check_pending = true;	/* woken: look for DROP EXTENSION */
	static TimestampTz first_result_at = 0; /* when the oldest result waiting
											 * finished */
	static TimestampTz sibling_woken_at = 0;
	static int	skipped = 0;	/* endpoints the last claim skipped, if it came
								 * back short */
	static TimestampTz skip_again_at = 0;	/* then, when a claim may skip them
											 * again */
	static int	skip_again_ms = SKIP_AGAIN_MS;
	static TimestampTz skipped_at = 0;	/* when the last such claim ran */

	memcpy(&rank, MyBgworkerEntry->bgw_extra, sizeof(rank));
	if (rank >= CRM_JOB_RANK_BASE)
	{
		crm_job_runner_main(dboid, rank);
		proc_exit(0);
	}
	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	pqsignal(SIGTERM, worker_sigterm);
	BackgroundWorkerUnblockSignals();
	/* a reload signalled before the SIGHUP handler was set is lost: read the files once */
	ConfigReloadPending = true;
	BackgroundWorkerInitializeConnectionByOid(dboid, InvalidOid, 0);
	(void) crm_worker_begin(dboid, rank, "crm_automation worker");
	ereport(LOG, (errmsg("crm_automation worker %d started for database \"%s\"", rank, dbname)));

	loop_cxt = AllocSetContextCreate(TopMemoryContext, "crm worker loop", ALLOCSET_DEFAULT_SIZES);
	msg_cxt = AllocSetContextCreate(TopMemoryContext, "crm worker messages", ALLOCSET_DEFAULT_SIZES);
	worker_cxt = AllocSetContextCreate(TopMemoryContext, "crm worker queues", ALLOCSET_SMALL_SIZES);
	t = crm_transport_create();

	/*
	 * An ERROR outside the transactions of the steps (which catch their
	 * own) comes here, as in PostgreSQL's own background workers
	 * (autovacuum, the WAL writer), instead of ending the worker: reported,
	 * any transaction aborted, and the loop goes on.  One thrown while a
	 * message was being prepared (crm_transport_start: rendering, MIME,
	 * signing) is that message's: it is recorded dead with the error.  Any
	 * other makes the loop pause a second, so that one that comes back at
	 * every turn cannot flood the log.
	 */
	if (sigsetjmp(local_sigjmp_buf, 1) != 0)
	{
		ErrorData  *edata;
		bool		blamed;

		error_context_stack = NULL;
		HOLD_INTERRUPTS();
		EmitErrorReport();
		MemoryContextSwitchTo(worker_cxt);
		edata = CopyErrorData();
		AbortCurrentTransaction();
		FlushErrorState();
		MemoryContextSwitchTo(worker_cxt);
		blamed = crm_transport_recover(t, edata->message);
		restore_ready();
		FreeErrorData(edata);
		pgstat_report_activity(STATE_IDLE, NULL);
		RESUME_INTERRUPTS();
		if (!blamed)
		{
			(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
							 ERROR_NAP_MS, PG_WAIT_EXTENSION);
			ResetLatch(MyLatch);
		}
		woken = true;
	}
	PG_exception_stack = &local_sigjmp_buf;

	while (!got_sigterm)
	{
		TimestampTz now;
		TimestampTz wake_at = DT_NOEND;
		long		timeout;
		int			room;
		bool		want_claim;
		bool		want_record;
		int			waiting;
		int			startable;
		List	   *busy;

		MemoryContextReset(loop_cxt);
		MemoryContextSwitchTo(loop_cxt);
		CHECK_FOR_INTERRUPTS();
		if (ConfigReloadPending)
		{
			char	   *hosts = pstrdup(crm_allowed_hosts ? crm_allowed_hosts : "");
			bool		private_networks = crm_allow_private_networks;

			ConfigReloadPending = false;
			ProcessConfigFile(PGC_SIGHUP);
			/* connections kept alive were opened under the old settings */
			if (guard_changed(hosts, private_networks))
				crm_transport_guard_changed(t);
		}
		if (!crm_worker_enabled || !share_slots())
			break;

		now = GetCurrentTimestamp();
		if (woken)
			check_pending = true;

		/*
		 * Fill the free slots from the messages claimed ahead.  Claim when
		 * fewer than half the slots' worth are ready, enough for the free
		 * slots and twice the slots ahead; record results once the slots'
		 * worth finished, or RECORD_DELAY_MS after the first, or at once when
		 * nothing else is in flight.  Each commit thus covers about as many
		 * messages as there are slots, whatever the order they finish in.
		 *
		 * Messages waiting for a busy endpoint (one holding its share of the
		 * slots) do not count as ready, and the claim skips the endpoints with
		 * half the slots' worth of them.  Such a claim reads up to 2,000
		 * messages: once one came back short, the next waits SKIP_AGAIN_MS
		 * (doubling while they come back empty) or, after a commit, at least
		 * SKIP_AGAIN_MS; but when no endpoint is busy any more, claim again
		 * at once.
		 */
		startable = list_length(ready) - start_ready(t, &busy);
		room = Min(3 * slots - crm_transport_inflight(t) - startable,
				   5 * slots - list_length(ready));
		want_claim = crm_worker_enabled && room > 0 && startable <= slots / 2;
		if (busy == NIL)
			want_claim = want_claim && (woken || backlog || now >= next_msg_due || skipped > 0);
		else
			want_claim = want_claim &&
				(now >= skip_again_at ||
				 (woken && TimestampDifferenceExceeds(skipped_at, now, SKIP_AGAIN_MS)));
		waiting = results_waiting(t);
		if (waiting > 0 && first_result_at == 0)
			first_result_at = now;
		want_record = waiting >= slots ||
			(waiting > 0 && (crm_transport_inflight(t) == 0 ||
							 TimestampDifferenceExceeds(first_result_at, now, RECORD_DELAY_MS)));
		if (now < exchange_retry_at)
		{
			/* the last exchange failed: the next waits a little */
			want_claim = want_record = false;
		}
		else if (want_claim || want_record ||
				 (check_pending && crm_transport_inflight(t) == 0 && ready == NIL))
		{
			if (!exchange(t, want_claim ? room : 0, busy, check_pending, msg_cxt, &backlog))
				next_msg_due = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), 1000);
			else
			{
				check_pending = false;
				if (want_claim)
				{
					skipped = backlog ? 0 : list_length(busy);
					if (busy != NIL)
						skipped_at = now;
					if (busy != NIL && backlog)
						skip_again_at = 0;
					else if (busy != NIL)
					{
						/* nothing new for the others since a commit: look less often */
						skip_again_ms = last_claimed == 0 ? Min(skip_again_ms * 2, SKIP_AGAIN_MAX_MS)
							: SKIP_AGAIN_MS;
						skip_again_at = TimestampTzPlusMilliseconds(now, skip_again_ms);
					}
				}
				/* more wait: draw a sibling in (it may already be busy) */
				if (want_claim && backlog &&
					TimestampDifferenceExceeds(sibling_woken_at, now, SIBLING_WAKE_MS))
				{
					crm_worker_wake_next();
					sibling_woken_at = now;
				}
				if (want_claim && !backlog && next_msg_due <= now)
				{
					/* due but not claimable (locked by another claimer): look again soon */
					next_msg_due = TimestampTzPlusMilliseconds(now, 250);
				}
			}
			first_result_at = 0;
		}
		if (extension_gone)
			break;

		now = GetCurrentTimestamp();
		if (rank == 0 &&
			(last_cleanup == 0 || TimestampDifferenceExceeds(last_cleanup, now, CLEANUP_EVERY_MS)))
		{
			(void) crm_worker_xact(step_cleanup, NULL, "crm_automation: cleaning the outbox");
			last_cleanup = now;
		}

		/*
		 * Sleep until the latch, a socket, the earliest due time, or the time
		 * to record the results waiting.
		 */
		if (crm_worker_enabled)
		{
			if (list_length(ready) - ready_blocked <= slots / 2)
			{
				TimestampTz claim_at = backlog ? now : next_msg_due;

				/* a claim skipping busy endpoints waits its turn */
				if (busy != NIL)
					claim_at = Max(claim_at, skip_again_at);
				wake_at = Min(wake_at, claim_at);
			}
		}
		if (results_waiting(t) > 0)
		{
			if (first_result_at == 0)
				first_result_at = now;
			wake_at = Min(wake_at, TimestampTzPlusMilliseconds(first_result_at, RECORD_DELAY_MS));
		}
		if (now < exchange_retry_at)
		{
			/* nothing to record or claim before then */
			wake_at = exchange_retry_at;
		}
		if (wake_at <= now)
			timeout = 0;
		else if (wake_at == DT_NOEND)
			timeout = IDLE_CHECK_MS;
		else
			timeout = Min((long) ((wake_at - now + 999) / 1000), IDLE_CHECK_MS);

		/*
		 * Reset the latch only when the wait reported it: one set after the
		 * wait returned on a socket (a commit that queued a message while
		 * the transfers were being handled) stays set, and the next wait
		 * returns at once with it, instead of being lost with a reset.
		 */
		woken = crm_transport_wait(t, timeout);
		if (woken)
			ResetLatch(MyLatch);
	}

	/* an ERROR from here on ends the worker */
	PG_exception_stack = NULL;
	MemoryContextSwitchTo(TopMemoryContext);
	shutdown_worker(t, msg_cxt);
	if (extension_gone)
	{
		/* a new crm.outbox starts its ids again */
		crm_claim_point_reset();
		crm_worker_set_state(CRM_WORKER_ABSENT);
		ereport(LOG, (errmsg("crm_automation worker %d stopping: the extension was dropped from database \"%s\"", rank, dbname)));
		proc_exit(0);
	}
	if (!got_sigterm && !crm_worker_enabled)
	{
		/* the launcher starts it again once the setting is on */
		crm_worker_set_state(CRM_WORKER_DISABLED);
		ereport(LOG, (errmsg("crm_automation worker %d stopping: crm.worker_enabled is off", rank)));
		proc_exit(0);
	}
	if (!got_sigterm)
		ereport(LOG, (errmsg("crm_automation worker %d stopping: crm.workers_per_database is %d", rank, crm_workers_per_database)));
	proc_exit(0);
}
