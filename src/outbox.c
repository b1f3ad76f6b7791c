/*-------------------------------------------------------------------------
 *
 * outbox.c
 *	  The worker's side of crm.outbox: claim, record, release.
 *
 * Each function runs inside a short transaction opened by the worker
 * (worker.c) and returns before anything touches the network.  A claim
 * leases messages (status sending, attempts + 1, lease_until); the result of
 * a transfer is recorded only if the lease is still ours (same attempt, still
 * sending), so a message whose lease expired and was taken again is never
 * recorded twice.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <math.h>

#include "catalog/pg_type.h"
#include "common/pg_prng.h"
#include "executor/spi.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/memutils.h"

#include "crm_automation.h"
#include "delivery.h"
#include "spi_util.h"

static char *
get_text(HeapTuple tup, TupleDesc desc, const char *col)
{
	int			n = SPI_fnumber(desc, col);
	bool		isnull;
	Datum		d = SPI_getbinval(tup, desc, n, &isnull);

	return isnull ? NULL : TextDatumGetCString(d);
}

static char **
get_text_array(HeapTuple tup, TupleDesc desc, const char *col, int *n)
{
	bool		isnull;
	Datum		d = SPI_getbinval(tup, desc, SPI_fnumber(desc, col), &isnull);
	Datum	   *elems;
	bool	   *nulls;
	int			nelems;
	int			i;
	int			k = 0;
	char	  **out;

	*n = 0;
	if (isnull)
		return NULL;
	deconstruct_array(DatumGetArrayTypeP(d), TEXTOID, -1, false, TYPALIGN_INT,
					  &elems, &nulls, &nelems);
	out = palloc0(sizeof(char *) * (nelems + 1));
	for (i = 0; i < nelems; i++)
		if (!nulls[i])
			out[k++] = TextDatumGetCString(elems[i]);
	*n = k;
	return out;
}

/* Loads the attachments (drive file ids) of an e-mail into its context. */
static void
load_attachments(CrmMessage *m, char **ids, int n)
{
	static SPIPlanPtr plan = NULL;
	Oid			types[1] = {TEXTOID};
	Datum		vals[1];
	int			i;

	m->att = palloc0(sizeof(CrmAttachment) * Max(n, 1));
	for (i = 0; i < n; i++)
	{
		HeapTuple	tup;
		TupleDesc	desc;
		bool		isnull;
		bytea	   *content;

		vals[0] = CStringGetTextDatum(ids[i]);
		crm_exec(crm_plan(&plan,
						  "SELECT name, content_type, content FROM crm.drive_file"
						  " WHERE id::text = $1",
						  1, types), vals, NULL, true, 1);
		if (SPI_processed == 0)
		{
			m->error = psprintf("attachment \"%s\" is not a drive file", ids[i]);
			return;
		}
		tup = SPI_tuptable->vals[0];
		desc = SPI_tuptable->tupdesc;
		m->att[m->natt].name = get_text(tup, desc, "name");
		m->att[m->natt].content_type = get_text(tup, desc, "content_type");
		content = DatumGetByteaPP(SPI_getbinval(tup, desc, 3, &isnull));
		m->att[m->natt].len = VARSIZE_ANY_EXHDR(content);
		m->att[m->natt].data = palloc(m->att[m->natt].len + 1);
		memcpy(m->att[m->natt].data, VARDATA_ANY(content), m->att[m->natt].len);
		m->natt++;
	}
}

/*
 * Leases up to limit due messages; returns them as CrmMessages, each in its
 * own context under parent.
 */
List *
crm_outbox_claim(int limit, int lease_ms, MemoryContext parent)
{
	static SPIPlanPtr plan = NULL;
	Oid			types[2] = {INT4OID, INTERVALOID};
	Datum		vals[2];
	List	   *out = NIL;
	uint64		i;

	vals[0] = Int32GetDatum(limit);
	vals[1] = DirectFunctionCall3(interval_in,
								  CStringGetDatum(psprintf("%d milliseconds", lease_ms)),
								  ObjectIdGetDatum(InvalidOid), Int32GetDatum(-1));
	crm_exec(crm_plan(&plan, "SELECT * FROM crm._claim_messages($1, $2)", 2, types),
			 vals, NULL, false, 0);

	for (i = 0; i < SPI_processed; i++)
	{
		HeapTuple	tup = SPI_tuptable->vals[i];
		TupleDesc	desc = SPI_tuptable->tupdesc;
		MemoryContext cxt = AllocSetContextCreate(parent, "crm outbox message",
												  ALLOCSET_SMALL_SIZES);
		MemoryContext old = MemoryContextSwitchTo(cxt);
		CrmMessage *m = palloc0(sizeof(CrmMessage));
		bool		isnull;
		char	  **att_ids;
		int			natt;
		Datum		d;

		m->cxt = cxt;
		m->retry_after = -1;
		m->id = DatumGetInt64(SPI_getbinval(tup, desc, SPI_fnumber(desc, "id"), &isnull));
		m->attempts = DatumGetInt32(SPI_getbinval(tup, desc, SPI_fnumber(desc, "attempts"), &isnull));
		d = SPI_getbinval(tup, desc, SPI_fnumber(desc, "provider_id"), &isnull);
		m->provider_id = isnull ? 0 : DatumGetInt64(d);
		m->channel = get_text(tup, desc, "channel");
		m->key = get_text(tup, desc, "idempotency_key");
		m->url = get_text(tup, desc, "url");
		m->method = get_text(tup, desc, "method");
		m->headers = get_text_array(tup, desc, "headers", &m->nheaders);
		m->body = get_text(tup, desc, "body");
		m->secret = get_text(tup, desc, "secret");
		m->username = get_text(tup, desc, "username");
		m->mail_from = get_text(tup, desc, "mail_from");
		m->rcpt = get_text_array(tup, desc, "rcpt", &m->nrcpt);
		m->subject = get_text(tup, desc, "subject");
		d = SPI_getbinval(tup, desc, SPI_fnumber(desc, "html"), &isnull);
		m->html = !isnull && DatumGetBool(d);
		m->tls = get_text(tup, desc, "tls");
		m->error = get_text(tup, desc, "error");
		att_ids = get_text_array(tup, desc, "attachments", &natt);
		if (m->body == NULL)
			m->body = pstrdup("");
		MemoryContextSwitchTo(old);

		if (m->error == NULL && natt > 0)
		{
			SPITupleTable *saved = SPI_tuptable;
			uint64		saved_n = SPI_processed;

			old = MemoryContextSwitchTo(cxt);
			load_attachments(m, att_ids, natt);
			MemoryContextSwitchTo(old);
			SPI_tuptable = saved;
			SPI_processed = saved_n;
		}
		out = lappend(out, m);
	}
	return out;
}

/*
 * Backoff before attempt n+1: crm.retry_base_delay doubling with each
 * attempt, capped by crm.retry_max_delay, with "equal jitter" (half fixed,
 * half random) so that a burst of failures does not retry in lockstep.  A
 * Retry-After from the server wins, within the cap.
 */
double
crm_retry_delay(int attempts, long retry_after)
{
	double		d = (double) crm_retry_base_delay * pow(2.0, Max(attempts - 1, 0));

	d = Min(d, (double) crm_retry_max_delay);
	d = d / 2.0 + pg_prng_double(&pg_global_prng_state) * d / 2.0;
	if (retry_after >= 0)
		d = Min((double) retry_after, (double) crm_retry_max_delay);
	return d;
}

static const char *
status_of(CrmMessage *m, double *delay, char **error)
{
	*delay = 0;
	*error = m->result_error;
	switch (m->outcome)
	{
		case CRM_OUT_SENT:
			return "sent";
		case CRM_OUT_RETRY:
			if (m->attempts >= crm_max_attempts)
			{
				*error = psprintf("gave up after %d attempts: %s", m->attempts,
								  m->result_error ? m->result_error : "failed");
				return "dead";
			}
			*delay = crm_retry_delay(m->attempts, m->retry_after);
			return "failed";
		case CRM_OUT_RELEASED:
			return "failed";
		default:
			return "dead";
	}
}

/* Records the outcome of one message, if its lease is still ours. */
void
crm_outbox_record(CrmMessage *m)
{
	static SPIPlanPtr plan = NULL;
	static SPIPlanPtr gone_plan = NULL;
	Oid			types[7] = {INT8OID, INT4OID, TEXTOID, INT4OID, TEXTOID, TEXTOID, FLOAT8OID};
	Datum		vals[7];
	char		nulls[7] = {' ', ' ', ' ', ' ', ' ', ' ', ' '};
	double		delay;
	char	   *error;
	const char *status = status_of(m, &delay, &error);

	vals[0] = Int64GetDatum(m->id);
	vals[1] = Int32GetDatum(m->attempts);
	vals[2] = CStringGetTextDatum(status);
	vals[3] = Int32GetDatum((int32) m->code);
	nulls[3] = m->code ? ' ' : 'n';
	vals[4] = error ? CStringGetTextDatum(error) : (Datum) 0;
	nulls[4] = error ? ' ' : 'n';
	vals[5] = m->excerpt_len > 0 ? CStringGetTextDatum(m->excerpt) : (Datum) 0;
	nulls[5] = m->excerpt_len > 0 ? ' ' : 'n';
	vals[6] = Float8GetDatum(delay);
	crm_exec(crm_plan(&plan,
					  "UPDATE crm.outbox"
					  "   SET status = $3, response_code = $4, last_error = $5,"
					  "       response_excerpt = $6,"
					  "       next_attempt_at = CASE WHEN $3 = 'failed'"
					  "           THEN clock_timestamp() + make_interval(secs => $7)"
					  "           ELSE next_attempt_at END,"
					  "       attempts = CASE WHEN $5 = 'interrupted by worker shutdown'"
					  "           THEN attempts - 1 ELSE attempts END,"
					  "       sent_at = CASE WHEN $3 = 'sent' THEN clock_timestamp() END,"
					  "       lease_until = NULL, updated_at = now()"
					  " WHERE id = $1 AND attempts = $2 AND status = 'sending'",
					  7, types), vals, nulls, false, 0);

	if (m->outcome == CRM_OUT_GONE)
	{
		Oid			gtypes[4] = {TEXTOID, TEXTOID, INT8OID, TEXTOID};
		Datum		gvals[4];
		char		gnulls[4] = {' ', ' ', ' ', ' '};

		gvals[0] = CStringGetTextDatum(m->url ? m->url : "");
		gvals[1] = CStringGetTextDatum(error ? error : "410 Gone");
		gvals[2] = Int64GetDatum(m->provider_id);
		gnulls[2] = (m->provider_id && strcmp(m->channel, "webhook") != 0) ? ' ' : 'n';
		gvals[3] = CStringGetTextDatum(m->channel);
		crm_exec(crm_plan(&gone_plan,
						  "WITH d AS (INSERT INTO crm.disabled_endpoint (url, reason)"
						  "           SELECT $1, $2 WHERE $4 = 'webhook'"
						  "           ON CONFLICT (url) DO NOTHING RETURNING 1),"
						  " p AS (UPDATE crm.provider SET active = false, disabled_reason = $2"
						  "       WHERE id = $3 RETURNING 1)"
						  " UPDATE crm.outbox SET status = 'dead', updated_at = now(),"
						  "        last_error = 'endpoint gone: ' || $2"
						  "  WHERE status IN ('pending', 'failed')"
						  "    AND ((channel = 'webhook' AND $4 = 'webhook' AND payload ->> 'url' = $1)"
						  "         OR provider_id = $3)",
						  4, gtypes), gvals, gnulls, false, 0);
	}
}

/* Gives an unfinished message back to the queue (worker shutdown). */
void
crm_outbox_release(CrmMessage *m)
{
	m->outcome = CRM_OUT_RELEASED;
	m->result_error = "interrupted by worker shutdown";
	crm_outbox_record(m);
}
