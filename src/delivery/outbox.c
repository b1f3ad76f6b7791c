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

#include "access/heapam.h"
#include "access/table.h"
#include "access/xact.h"
#include "catalog/pg_type.h"
#include "commands/trigger.h"
#include "common/pg_prng.h"
#include "executor/spi.h"
#include "utils/acl.h"
#include "utils/array.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "mb/pg_wchar.h"
#include "utils/builtins.h"
#include "utils/timestamp.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/resowner.h"
#include "utils/tuplestore.h"

#include "catalog/namespace.h"
#include "core/charset.h"
#include "core/citus.h"
#include "core/guc.h"
#include "delivery/delivery.h"
#include "core/spi_util.h"
#include "core/index_probe.h"
#include "core/scope.h"
#include "core/rowsink.h"

/* longest error text stored, in bytes */
#define ERROR_MAX 4096

/* The claim's result columns, in the order of crm._claim_messages. */
enum
{
	C_ID = 1, C_CHANNEL, C_ATTEMPTS, C_KEY, C_PROVIDER, C_URL, C_METHOD, C_HEADERS, C_BODY,
	C_SECRET, C_USERNAME, C_MAIL_FROM, C_RCPT, C_SUBJECT, C_HTML, C_TLS, C_ATTACHMENTS,
	C_ERROR, C_CA, C_CLIENT_CERT, C_CLIENT_KEY, C_CHARSET, C_DUE, C_NCOLS = C_DUE
};

/* crm._claim_leases' result columns, in its order. */
enum
{
	L_ID = 1, L_CHANNEL, L_ATTEMPTS, L_KEY, L_PAYLOAD, L_DUE, L_PROVIDER, L_ACTIVE, L_NAME,
	L_CONFIG, L_SECRET, L_CLIENT_KEY, L_GONE, L_NCOLS = L_GONE
};

/*
 * A database still on 0.1.0 has the claim without the TLS and charset
 * columns, and without the cursor (p_after_at, p_after_id, due_at).
 */
#define C_NCOLS_0_1 C_ERROR

/* whether this database's claim takes a cursor: -1 not known yet */
static int	claim_has_cursor = -1;

/* whether this database has crm._claim_leases: -1 not known yet */
static int	claim_has_leases = -1;

/* whether this database has crm.outbox_due (0.2.0): -1 not known yet */
static int	due_table_known = -1;

/* true while a worker records results (crm._outbox_recording()) */
static bool recording = false;

/*
 * What a catalog query (one boolean) says about this database's schema,
 * looked up once into *known (-1: not yet), leaving the caller's SPI result
 * as it was.
 */
static bool
schema_has(int *known, SPIPlanPtr *plan, const char *query)
{
	if (*known < 0)
	{
		SPITupleTable *saved = SPI_tuptable;
		uint64		saved_n = SPI_processed;
		bool		isnull;
		Datum		d;

		crm_exec(crm_plan(plan, query, 0, NULL), NULL, NULL, true, 1);
		d = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);
		*known = !isnull && DatumGetBool(d) ? 1 : 0;
		SPI_tuptable = saved;
		SPI_processed = saved_n;
	}
	return *known == 1;
}

/*
 * Looks up, once, whether crm._claim_messages takes a cursor (not on
 * 0.1.0); crm_outbox_claim_forget() makes the next claim look again (after
 * a failed exchange: ALTER EXTENSION ... UPDATE may have replaced it).
 */
static bool
has_cursor(void)
{
	static SPIPlanPtr plan = NULL;

	return schema_has(&claim_has_cursor, &plan,
					  "SELECT coalesce(max(p.pronargs), 0) >= 6 FROM pg_catalog.pg_proc p"
					  " WHERE p.proname = '_claim_messages'"
					  "   AND p.pronamespace = 'crm'::pg_catalog.regnamespace");
}

/*
 * Looks up, once, whether this database has crm._claim_leases (the claim
 * returns messages as stored, render.c makes them ready), or only
 * crm._claim_messages (it renders them in SQL: before 0.2.0).
 */
static bool
has_leases(void)
{
	static SPIPlanPtr plan = NULL;

	return schema_has(&claim_has_leases, &plan,
					  "SELECT EXISTS (SELECT FROM pg_catalog.pg_proc p"
					  " WHERE p.proname = '_claim_leases'"
					  "   AND p.pronamespace = 'crm'::pg_catalog.regnamespace)");
}

static List *claim_from_shards(int limit, Datum *vals, MemoryContext parent);
static List *read_claimed(List *out, CrmClaimCursor *cursor, MemoryContext parent, const char *shard);
static double record_outcomes(List *msgs, const char *shard);

/* Whether Citus keeps crm.outbox in shards (core/citus.h). */
static bool
outbox_distributed(void)
{
	Oid			nsp = get_namespace_oid("crm", true);

	return OidIsValid(nsp) && crm_table_is_distributed(get_relname_relid("outbox", nsp));
}

void
crm_outbox_claim_forget(void)
{
	claim_has_cursor = -1;
	claim_has_leases = -1;
	due_table_known = -1;
}

/*
 * Whether crm.outbox_due is a table here (from 0.2.0; 0.1.0 had an index of
 * crm.outbox by that name): the messages not yet done are found through it,
 * and records keep it.  Looked up once, again after crm_outbox_claim_forget.
 */
bool
crm_outbox_has_due_table(void)
{
	static SPIPlanPtr plan = NULL;

	return schema_has(&due_table_known, &plan,
					  "SELECT EXISTS (SELECT FROM pg_catalog.pg_class c"
					  " WHERE c.relname = 'outbox_due' AND c.relkind = 'r'"
					  "   AND c.relnamespace = 'crm'::pg_catalog.regnamespace)");
}

/*
 * crm._outbox_recording(): whether this backend is recording the results of
 * its transfers (a delivery worker's record, which keeps crm.outbox_due
 * itself right after: settle_due): crm.outbox's row trigger then has
 * nothing to do.
 */
PG_FUNCTION_INFO_V1(crm_outbox_recording);
Datum
crm_outbox_recording(PG_FUNCTION_ARGS)
{
	PG_RETURN_BOOL(recording);
}

static char *
get_text(HeapTuple tup, TupleDesc desc, int col)
{
	bool		isnull;
	Datum		d = SPI_getbinval(tup, desc, col, &isnull);

	return isnull ? NULL : TextDatumGetCString(d);
}

static char **
get_text_array(HeapTuple tup, TupleDesc desc, int col, int *n)
{
	bool		isnull;
	Datum		d = SPI_getbinval(tup, desc, col, &isnull);
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
		m->att[m->natt].name = get_text(tup, desc, 1);
		m->att[m->natt].content_type = get_text(tup, desc, 2);
		content = DatumGetByteaPP(SPI_getbinval(tup, desc, 3, &isnull));
		m->att[m->natt].len = VARSIZE_ANY_EXHDR(content);
		m->att[m->natt].data = palloc(m->att[m->natt].len + 1);
		memcpy(m->att[m->natt].data, VARDATA_ANY(content), m->att[m->natt].len);
		m->natt++;
	}
}

static Datum array_of(Datum *elems, bool *nulls, int n, Oid type);

/*
 * An e-mail that asks for a charset: its subject and body converted to it
 * (here, in the claim's transaction: the conversion is looked up in the
 * catalog).  The name is checked again, whoever wrote the row.  A
 * character the charset cannot hold is written '?' (core/charset.c); how
 * many were is logged.
 */
static void
convert_texts(CrmMessage *m)
{
	int			enc = crm_charset_encoding(m->charset);
	int			replaced = 0;
	int			n;
	char	   *error = NULL;

	if (enc < 0)
	{
		m->error = psprintf("unknown charset \"%s\"",
							crm_text_clean(m->charset, strlen(m->charset), 64, false));
		return;
	}
	if (m->subject)
	{
		m->subject = crm_charset_convert(m->subject, strlen(m->subject), enc, &n, &error);
		replaced += n;
	}
	if (error == NULL)
	{
		m->body = crm_charset_convert(m->body, strlen(m->body), enc, &n, &error);
		replaced += n;
	}
	if (error != NULL)
	{
		m->error = error;
		return;
	}
	m->encoding = enc;
	if (replaced > 0)
		ereport(LOG,
				(errmsg("crm_automation: outbox message " INT64_FORMAT ": %d character(s) not in charset %s written as \"?\"",
						m->id, replaced, crm_mime_charset(enc))));
}

/*
 * The endpoint of a URL as the worker counts transfers: "scheme://authority"
 * lower-cased, or NULL when the URL has none.  The claim skips busy
 * endpoints with the same function (crm._url_endpoint).
 */
char *
crm_endpoint_of(const char *url)
{
	const char *p = url;
	char	   *e;
	char	   *c;

	if (url == NULL || !isalpha((unsigned char) *p))
		return NULL;
	for (p++; isalnum((unsigned char) *p) || *p == '+' || *p == '.' || *p == '-'; p++)
		;
	if (strncmp(p, "://", 3) != 0)
		return NULL;
	p += 3;
	p += strcspn(p, "/?#");
	e = pnstrdup(url, p - url);
	for (c = e; *c; c++)
		*c = pg_ascii_tolower((unsigned char) *c);
	return e;
}

PG_FUNCTION_INFO_V1(crm_url_endpoint_sql);

/* crm._url_endpoint(url text): crm_endpoint_of() for the claim. */
Datum
crm_url_endpoint_sql(PG_FUNCTION_ARGS)
{
	char	   *e = crm_endpoint_of(text_to_cstring(PG_GETARG_TEXT_PP(0)));

	if (e == NULL)
		PG_RETURN_NULL();
	PG_RETURN_TEXT_P(cstring_to_text(e));
}

/*
 * Leases up to limit due messages (expired leases too when asked), skipping
 * those for the endpoints in busy (a list of strings: endpoints whose share
 * of the transfer slots is full and that have messages claimed ahead
 * already), after *cursor when it is valid and the database's claim takes
 * one (then moved to the last message claimed; NULL: from the start);
 * returns them as CrmMessages, each in its own context under parent.
 */
List *
crm_outbox_claim(int limit, int lease_ms, bool expired, List *busy, CrmClaimCursor *cursor,
				 MemoryContext parent)
{
	static SPIPlanPtr plan = NULL;
	static SPIPlanPtr plan_leases = NULL;
	static SPIPlanPtr plan_0_1 = NULL;
	Oid			types[6] = {INT4OID, INTERVALOID, BOOLOID, TEXTARRAYOID, TIMESTAMPTZOID, INT8OID};
	Datum		vals[6];
	char		nulls[6] = {' ', ' ', ' ', ' ', 'n', 'n'};
	bool		with_cursor = has_cursor();
	Datum	   *names;
	ListCell   *lc;
	int			nbusy = 0;

	vals[0] = Int32GetDatum(limit);
	vals[1] = DirectFunctionCall3(interval_in,
								  CStringGetDatum(psprintf("%d milliseconds", lease_ms)),
								  ObjectIdGetDatum(InvalidOid), Int32GetDatum(-1));
	vals[2] = BoolGetDatum(expired);
	names = palloc(sizeof(Datum) * (list_length(busy) + 1));
	foreach(lc, busy)
		names[nbusy++] = CStringGetTextDatum((char *) lfirst(lc));
	vals[3] = array_of(names, NULL, nbusy, TEXTOID);
	if (outbox_distributed())
		return claim_from_shards(limit, vals, parent);
	if (!with_cursor)
		crm_exec(crm_plan(&plan_0_1, "SELECT * FROM crm._claim_messages($1, $2, $3, $4)", 4, types),
				 vals, NULL, false, 0);
	else
	{
		if (cursor != NULL && cursor->valid)
		{
			vals[4] = TimestampTzGetDatum(cursor->at);
			vals[5] = Int64GetDatum(cursor->id);
			nulls[4] = nulls[5] = ' ';
		}
		if (has_leases())
			crm_exec(crm_plan(&plan_leases, "SELECT * FROM crm._claim_leases($1, $2, $3, $4, $5, $6)",
							  6, types),
					 vals, nulls, false, 0);
		else
			crm_exec(crm_plan(&plan, "SELECT * FROM crm._claim_messages($1, $2, $3, $4, $5, $6)", 6, types),
					 vals, nulls, false, 0);
	}

	return read_claimed(NIL, cursor, parent, NULL);
}

/*
 * Distributed (core/citus.h): this node's messages are in its shards of
 * crm.outbox.  crm._outbox_shard_claims() gives each shard with its claim:
 * crm._claim_messages made for that shard (the shard and this node's copies
 * of the reference tables it reads in place of the tables), so that the
 * claim runs on local tables, as one node's does.  Claims from each shard in
 * turn, up to limit in all; no claim point (the cursor is one node's).
 */
static List *
claim_from_shards(int limit, Datum *vals, MemoryContext parent)
{
	Oid			types[4] = {INT4OID, INTERVALOID, BOOLOID, TEXTARRAYOID};
	List	   *shards = NIL;
	List	   *claims = NIL;
	List	   *out = NIL;
	ListCell   *ls,
			   *lc;
	uint64		i;

	if (SPI_execute("SELECT shard, claim FROM crm._outbox_shard_claims()", false, 0) != SPI_OK_SELECT)
		elog(ERROR, "could not list the shards of crm.outbox");
	for (i = 0; i < SPI_processed; i++)
	{
		shards = lappend(shards, SPI_getvalue(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 1));
		claims = lappend(claims, SPI_getvalue(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 2));
	}
	forboth(ls, shards, lc, claims)
	{
		int			got = list_length(out);

		if (got >= limit)
			break;
		vals[0] = Int32GetDatum(limit - got);
		if (SPI_execute_with_args(psprintf("SELECT * FROM %s($1, $2, $3, $4)", (char *) lfirst(lc)),
								  4, types, vals, NULL, false, 0) != SPI_OK_SELECT)
			elog(ERROR, "could not claim from %s", (char *) lfirst(ls));
		out = read_claimed(out, NULL, parent, (char *) lfirst(ls));
	}
	return out;
}

/*
 * A row of crm._claim_leases() made ready to send (render.c); *due: its
 * place in the claim's order, *due_null when it has none.
 */
static void
read_leased(CrmMessage *m, HeapTuple tup, TupleDesc desc, char ***att_ids, int *natt,
			TimestampTz *due, bool *due_null)
{
	CrmLeased	l = {0};
	bool		isnull;
	Datum		d;

	l.id = DatumGetInt64(SPI_getbinval(tup, desc, L_ID, &isnull));
	l.channel = get_text(tup, desc, L_CHANNEL);
	d = SPI_getbinval(tup, desc, L_ATTEMPTS, &isnull);
	l.attempts = isnull ? 0 : DatumGetInt32(d);
	l.key = get_text(tup, desc, L_KEY);
	d = SPI_getbinval(tup, desc, L_PAYLOAD, &isnull);
	l.payload = isnull ? NULL : DatumGetJsonbP(d);
	d = SPI_getbinval(tup, desc, L_PROVIDER, &isnull);
	l.has_provider = !isnull;
	l.provider_id = isnull ? 0 : DatumGetInt64(d);
	d = SPI_getbinval(tup, desc, L_ACTIVE, &isnull);
	l.active = !isnull && DatumGetBool(d);
	l.provider_name = get_text(tup, desc, L_NAME);
	d = SPI_getbinval(tup, desc, L_CONFIG, &isnull);
	l.config = isnull ? NULL : DatumGetJsonbP(d);
	l.secret = get_text(tup, desc, L_SECRET);
	l.client_key = get_text(tup, desc, L_CLIENT_KEY);
	l.gone = get_text(tup, desc, L_GONE);
	d = SPI_getbinval(tup, desc, L_DUE, due_null);
	*due = *due_null ? 0 : DatumGetTimestampTz(d);
	if (l.payload == NULL)
		l.payload = DatumGetJsonbP(DirectFunctionCall1(jsonb_in, CStringGetDatum("{}")));
	crm_render_leased(m, &l, att_ids, natt);
}

/* A row of crm._claim_messages() (rendered in SQL: before crm._claim_leases). */
static void
read_rendered(CrmMessage *m, HeapTuple tup, TupleDesc desc, char ***att_ids, int *natt,
			  TimestampTz *due, bool *due_null)
{
	bool		isnull;
	Datum		d;

	m->id = DatumGetInt64(SPI_getbinval(tup, desc, C_ID, &isnull));
	m->attempts = DatumGetInt32(SPI_getbinval(tup, desc, C_ATTEMPTS, &isnull));
	d = SPI_getbinval(tup, desc, C_PROVIDER, &isnull);
	m->provider_id = isnull ? 0 : DatumGetInt64(d);
	m->channel = get_text(tup, desc, C_CHANNEL);
	m->key = get_text(tup, desc, C_KEY);
	m->url = get_text(tup, desc, C_URL);
	m->method = get_text(tup, desc, C_METHOD);
	m->headers = get_text_array(tup, desc, C_HEADERS, &m->nheaders);
	m->body = get_text(tup, desc, C_BODY);
	m->secret = get_text(tup, desc, C_SECRET);
	m->username = get_text(tup, desc, C_USERNAME);
	m->mail_from = get_text(tup, desc, C_MAIL_FROM);
	m->rcpt = get_text_array(tup, desc, C_RCPT, &m->nrcpt);
	m->subject = get_text(tup, desc, C_SUBJECT);
	d = SPI_getbinval(tup, desc, C_HTML, &isnull);
	m->html = !isnull && DatumGetBool(d);
	m->tls = get_text(tup, desc, C_TLS);
	m->error = get_text(tup, desc, C_ERROR);
	*due_null = true;
	if (desc->natts >= C_NCOLS)
	{
		m->ca = get_text(tup, desc, C_CA);
		m->client_cert = get_text(tup, desc, C_CLIENT_CERT);
		m->client_key = get_text(tup, desc, C_CLIENT_KEY);
		m->charset = get_text(tup, desc, C_CHARSET);
		d = SPI_getbinval(tup, desc, C_DUE, due_null);
		*due = *due_null ? 0 : DatumGetTimestampTz(d);
	}
	*att_ids = get_text_array(tup, desc, C_ATTACHMENTS, natt);
}

/*
 * The messages of the claim's result (SPI_tuptable: crm._claim_leases', or
 * crm._claim_messages' before it) appended to out, each in a memory context
 * of its own under parent; shard: the shard of crm.outbox they were claimed
 * from (distributed), or NULL.
 */
static List *
read_claimed(List *out, CrmClaimCursor *cursor, MemoryContext parent, const char *shard)
{
	uint64		i;
	bool		leased = SPI_processed > 0 && SPI_tuptable->tupdesc->natts == L_NCOLS;

	if (SPI_processed > 0 && !leased && SPI_tuptable->tupdesc->natts != C_NCOLS &&
		SPI_tuptable->tupdesc->natts != C_NCOLS_0_1)
		elog(ERROR, "the claim returned %d columns, expected %d",
			 SPI_tuptable->tupdesc->natts, L_NCOLS);
	for (i = 0; i < SPI_processed; i++)
	{
		HeapTuple	tup = SPI_tuptable->vals[i];
		TupleDesc	desc = SPI_tuptable->tupdesc;
		MemoryContext cxt = AllocSetContextCreate(parent, "crm outbox message",
												  ALLOCSET_SMALL_SIZES);
		MemoryContext old = MemoryContextSwitchTo(cxt);
		CrmMessage *m = palloc0(sizeof(CrmMessage));
		char	  **att_ids = NULL;
		int			natt = 0;
		TimestampTz due = 0;
		bool		due_null;

		m->cxt = cxt;
		m->shard = shard ? pstrdup(shard) : NULL;
		m->claimed_at = GetCurrentTransactionStartTimestamp();	/* the claim's now() */
		m->retry_after = -1;
		if (leased)
			read_leased(m, tup, desc, &att_ids, &natt, &due, &due_null);
		else
			read_rendered(m, tup, desc, &att_ids, &natt, &due, &due_null);
		m->encoding = GetDatabaseEncoding();
		m->endpoint = crm_endpoint_of(m->url);
		if (cursor != NULL && !due_null)
		{
			/* the claim's order: the last one is the furthest */
			cursor->valid = true;
			cursor->at = due;
			cursor->id = m->id;
		}
		if (m->body == NULL)
			m->body = pstrdup("");
		if (m->error == NULL)
			m->error = crm_message_check(m);
		if (m->error == NULL && m->charset != NULL)
			convert_texts(m);
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

typedef void (*SubStep) (void *arg);

/*
 * Runs fn in a subtransaction; returns NULL, or the ERROR it raised (copied
 * into the caller's memory context, the subtransaction rolled back).
 */
static ErrorData *
in_subtransaction(SubStep fn, void *arg)
{
	MemoryContext cxt = CurrentMemoryContext;
	ResourceOwner owner = CurrentResourceOwner;
	ErrorData  *volatile edata = NULL;

	BeginInternalSubTransaction(NULL);
	MemoryContextSwitchTo(cxt);
	PG_TRY();
	{
		fn(arg);
		ReleaseCurrentSubTransaction();
	}
	PG_CATCH();
	{
		MemoryContextSwitchTo(cxt);
		edata = CopyErrorData();
		FlushErrorState();
		RollbackAndReleaseCurrentSubTransaction();
	}
	PG_END_TRY();
	MemoryContextSwitchTo(cxt);
	CurrentResourceOwner = owner;
	return edata;
}

/* A careful claim's steps: claim one message; give up the first due one. */
typedef struct CarefulStep
{
	int			lease_ms;
	MemoryContext parent;
	List	   *claimed;		/* claim_one: what it claimed */
	const char *why;			/* give_up: the error */
	int64		id;				/* give_up: the message made dead, 0 none */
	int64		target;			/* the message claim_one is to take, 0: the
								 * first due */
	CrmClaimCursor at;			/* just before target */
} CarefulStep;

static void
claim_one(void *arg)
{
	CarefulStep *c = arg;

	CrmClaimCursor at = c->at;

	c->claimed = crm_outbox_claim(1, c->lease_ms, true, NIL, c->target ? &at : NULL, c->parent);
}

/*
 * The message a claim of one, skipping no endpoint, takes first (the one
 * whose claim raised c->why) is made dead with that error.
 */
/*
 * give_up's statements, on crm.outbox or one of its shards (%s): the first
 * message a claim would take (its order and conditions, crm._claim_messages),
 * then that message made dead.
 */
static const char *const give_up_find_sql =
"SELECT d.id, q.next_attempt_at FROM crm.outbox_due q JOIN %1$s d ON d.id = q.message_id"
" WHERE q.rel = '%1$s'::regclass AND q.next_attempt_at <= now()"
"   AND d.sent_at IS NULL AND d.next_attempt_at < 'infinity'"
"   AND (d.status IN ('pending', 'failed')"
"        OR (d.status = 'sending' AND (d.lease_until < now()"
"            OR d.claimed_at < pg_postmaster_start_time())))"
" ORDER BY q.next_attempt_at, q.message_id LIMIT 1 FOR UPDATE OF d SKIP LOCKED";
/* the same on a database still on 0.1.0 (no crm.outbox_due) */
static const char *const give_up_find_0_1_sql =
"SELECT d.id FROM %s d"
" WHERE d.sent_at IS NULL AND d.next_attempt_at < 'infinity'"
"   AND d.next_attempt_at <= now()"
"   AND (d.status IN ('pending', 'failed')"
"        OR (d.status = 'sending' AND (d.lease_until < now()"
"            OR d.claimed_at < pg_postmaster_start_time())))"
" ORDER BY d.next_attempt_at, d.id LIMIT 1 FOR UPDATE SKIP LOCKED";
static const char *const give_up_kill_sql =
"UPDATE %s SET status = 'dead', next_attempt_at = 'infinity',"
"       lease_until = NULL, updated_at = now(), last_error = $2"
" WHERE id = $1";

/* This node's shards of crm.outbox (distributed), by name. */
static List *
node_shards(void)
{
	List	   *shards = NIL;
	uint64		i;

	if (SPI_execute("SELECT shard FROM crm._outbox_shard_claims()", false, 0) != SPI_OK_SELECT)
		elog(ERROR, "could not list the shards of crm.outbox");
	for (i = 0; i < SPI_processed; i++)
		shards = lappend(shards, SPI_getvalue(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 1));
	return shards;
}

/* give_up on a distributed installation: in this node's shards, in turn */
static void
give_up_in_shards(CarefulStep *c)
{
	Oid			types[2] = {INT8OID, TEXTOID};
	Datum		vals[2];
	List	   *shards = node_shards();
	ListCell   *lc;
	bool		isnull;

	foreach(lc, shards)
	{
		const char *shard = lfirst(lc);

		if (SPI_execute(psprintf(crm_outbox_has_due_table() ? give_up_find_sql : give_up_find_0_1_sql,
								 shard), false, 1) != SPI_OK_SELECT)
			elog(ERROR, "could not read %s", shard);
		if (SPI_processed == 0)
			continue;
		vals[0] = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);
		vals[1] = CStringGetTextDatum(c->why);
		if (SPI_execute_with_args(psprintf(give_up_kill_sql, shard), 2, types, vals, NULL, false, 0)
			!= SPI_OK_UPDATE)
			elog(ERROR, "could not give up a message of %s", shard);
		c->id = DatumGetInt64(vals[0]);
		return;
	}
}

static void
give_up(void *arg)
{
	static SPIPlanPtr find = NULL;
	static SPIPlanPtr find_0_1 = NULL;
	static SPIPlanPtr kill = NULL;
	CarefulStep *c = arg;
	Oid			types[2] = {INT8OID, TEXTOID};
	Datum		vals[2];
	bool		isnull;

	if (c->target != 0)
	{
		/* the message the failed claim was to take, locked since (pick_target) */
		vals[0] = Int64GetDatum(c->target);
		vals[1] = CStringGetTextDatum(c->why);
		crm_exec(crm_plan(&kill, psprintf(give_up_kill_sql, "crm.outbox"), 2, types), vals, NULL, false, 0);
		c->id = c->target;
		return;
	}
	if (outbox_distributed())
	{
		give_up_in_shards(c);
		return;
	}
	if (crm_outbox_has_due_table())
		crm_exec(crm_plan(&find, psprintf(give_up_find_sql, "crm.outbox"), 0, NULL), NULL, NULL, false, 1);
	else
		crm_exec(crm_plan(&find_0_1, psprintf(give_up_find_0_1_sql, "crm.outbox"), 0, NULL),
				 NULL, NULL, false, 1);
	if (SPI_processed == 0)
		return;
	vals[0] = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);
	vals[1] = CStringGetTextDatum(c->why);
	crm_exec(crm_plan(&kill, psprintf(give_up_kill_sql, "crm.outbox"), 2, types), vals, NULL, false, 0);
	c->id = DatumGetInt64(vals[0]);
}

/*
 * The message the next careful claim is to take: the first a claim would
 * take, locked in the exchange's transaction (not in the claim's
 * subtransaction), so that no other worker takes it or kills it, and the
 * claim, started just before it, takes it and no other.  Then a claim that
 * fails makes that message dead, whatever another worker claimed or failed
 * to claim meanwhile.  Only on one node with crm.outbox_due and a claim that
 * takes a cursor; elsewhere give_up looks for the first due message.
 */
static void
pick_target(CarefulStep *c)
{
	static SPIPlanPtr find = NULL;
	bool		isnull;

	c->target = 0;
	if (outbox_distributed() || !crm_outbox_has_due_table() || !has_cursor())
		return;
	crm_exec(crm_plan(&find, psprintf(give_up_find_sql, "crm.outbox"), 0, NULL), NULL, NULL, false, 1);
	if (SPI_processed == 0)
		return;
	c->target = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
	c->at.valid = true;
	c->at.at = DatumGetTimestampTz(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2, &isnull));
	c->at.id = c->target - 1;
}

/*
 * A claim that raised an ERROR (a row changed by hand, a trigger or a
 * constraint of the site's on crm.outbox, ...) rolled back the exchange
 * with it; the next claims carefully: one message at a time, each in a
 * subtransaction.  The message whose claim fails is made dead with the
 * error (give_up), logged, and the others are claimed as usual, so one bad
 * row never holds the queue.
 */
List *
crm_outbox_claim_careful(int limit, int lease_ms, MemoryContext parent)
{
	List	   *out = NIL;
	CarefulStep c = {0};
	int			n;

	c.lease_ms = lease_ms;
	c.parent = parent;
	for (n = 0; n < limit; n++)
	{
		ErrorData  *edata;

		c.claimed = NIL;
		pick_target(&c);
		edata = in_subtransaction(claim_one, &c);
		if (edata == NULL)
		{
			if (c.claimed == NIL)
				break;
			out = list_concat(out, c.claimed);
			continue;
		}
		c.why = psprintf("could not prepare the message: %s",
						 edata->message
						 ? crm_text_clean(edata->message, strlen(edata->message),
										  ERROR_MAX - 64, false)
						 : "an error without a message");
		c.id = 0;
		edata = in_subtransaction(give_up, &c);
		if (edata != NULL || c.id == 0)
		{
			ereport(WARNING,
					(errmsg("crm_automation: a message could not be prepared nor given up: %s",
							edata ? edata->message : c.why)));
			break;
		}
		ereport(WARNING,
				(errmsg("crm_automation: outbox message " INT64_FORMAT " is dead: %s", c.id, c.why)));
	}
	return out;
}

/*
 * Backoff before attempt n+1: crm.retry_base_delay doubling with each
 * attempt, capped by crm.retry_max_delay, with "equal jitter" (half fixed,
 * half random) so that a burst of failures does not retry in lockstep.
 * *lo and *hi bound it, in seconds.
 */
static void
retry_bounds(int attempts, double *lo, double *hi)
{
	double		d = (double) crm_retry_base_delay * pow(2.0, Max(attempts - 1, 0));

	d = Min(d, (double) crm_retry_max_delay);
	*lo = d / 2.0;
	*hi = d;
}

/* The delay before the next attempt; a Retry-After from the server wins, within the cap. */
double
crm_retry_delay(int attempts, long retry_after)
{
	double		lo;
	double		hi;

	if (retry_after >= 0)
		return Min((double) retry_after, (double) crm_retry_max_delay);
	retry_bounds(attempts, &lo, &hi);
	return lo + pg_prng_double(&pg_global_prng_state) * (hi - lo);
}

static Interval *
seconds_interval(double secs)
{
	Interval   *iv = palloc0(sizeof(Interval));

	iv->time = (int64) (secs * USECS_PER_SEC);
	return iv;
}

PG_FUNCTION_INFO_V1(crm_retry_schedule);

/*
 * crm.retry_schedule(): for each failed attempt that is retried under the
 * current settings, the shortest and longest wait before the next one.
 */
Datum
crm_retry_schedule(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	int			n;

	InitMaterializedSRF(fcinfo, 0);
	for (n = 1; n < crm_max_attempts; n++)
	{
		Datum		values[3];
		bool		nulls[3] = {false, false, false};
		double		lo;
		double		hi;

		retry_bounds(n, &lo, &hi);
		values[0] = Int32GetDatum(n);
		values[1] = IntervalPGetDatum(seconds_interval(lo));
		values[2] = IntervalPGetDatum(seconds_interval(hi));
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
	PG_RETURN_VOID();
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

static Datum
array_of(Datum *elems, bool *nulls, int n, Oid type)
{
	int16		typlen;
	bool		typbyval;
	char		typalign;
	int			dims[1] = {n};
	int			lbs[1] = {1};

	if (n == 0)
		return PointerGetDatum(construct_empty_array(type));
	get_typlenbyvalalign(type, &typlen, &typbyval, &typalign);
	return PointerGetDatum(construct_md_array(elems, nulls, 1, dims, lbs, type,
											  typlen, typbyval, typalign));
}

/* An endpoint answered 410 Gone: its waiting messages die, it is disabled. */
static void
disable_endpoint(CrmMessage *m, const char *error)
{
	static SPIPlanPtr plan = NULL;
	Oid			types[4] = {TEXTOID, TEXTOID, INT8OID, TEXTOID};
	Datum		vals[4];
	char		nulls[4] = {' ', ' ', ' ', ' '};

	vals[0] = CStringGetTextDatum(m->url ? m->url : "");
	vals[1] = CStringGetTextDatum(error ? error : "410 Gone");
	vals[2] = Int64GetDatum(m->provider_id);
	nulls[2] = (m->provider_id && strcmp(m->channel, "webhook") != 0) ? ' ' : 'n';
	vals[3] = CStringGetTextDatum(m->channel);
	if (outbox_distributed())
	{
		/*
		 * Distributed: reference tables and the outbox's shards everywhere,
		 * one statement each (Citus sends each where its rows are)
		 */
		if (strcmp(m->channel, "webhook") == 0)
			(void) SPI_execute_with_args("INSERT INTO crm.disabled_endpoint (url, reason) VALUES ($1, $2)"
										 " ON CONFLICT (url) DO NOTHING", 2, types, vals, nulls, false, 0);
		if (nulls[2] == ' ')
			(void) SPI_execute_with_args("UPDATE crm.provider SET active = false, disabled_reason = $2"
										 " WHERE id = $3", 3, types, vals, nulls, false, 0);
		(void) SPI_execute_with_args("UPDATE crm.outbox SET status = 'dead', next_attempt_at = 'infinity',"
									 "        updated_at = now(), last_error = 'endpoint gone: ' || $2"
									 "  WHERE status IN ('pending', 'failed')"
									 "    AND ((channel = 'webhook' AND $4 = 'webhook' AND payload ->> 'url' = $1)"
									 "         OR provider_id = $3)", 4, types, vals, nulls, false, 0);
		return;
	}
	crm_exec(crm_plan(&plan,
					  "WITH d AS (INSERT INTO crm.disabled_endpoint (url, reason)"
					  "           SELECT $1, $2 WHERE $4 = 'webhook'"
					  "           ON CONFLICT (url) DO NOTHING RETURNING 1),"
					  " p AS (UPDATE crm.provider SET active = false, disabled_reason = $2"
					  "       WHERE id = $3 RETURNING 1)"
					  " UPDATE crm.outbox SET status = 'dead', next_attempt_at = 'infinity', updated_at = now(),"
					  "        last_error = 'endpoint gone: ' || $2"
					  "  WHERE status IN ('pending', 'failed')"
					  "    AND ((channel = 'webhook' AND $4 = 'webhook' AND payload ->> 'url' = $1)"
					  "         OR provider_id = $3)",
					  4, types), vals, nulls, false, 0);
}

/*
 * Records the outcome of finished messages, in one statement whatever
 * their number: each row only if its lease is still ours (same attempt,
 * still sending); if the lease expired and another claimer took the
 * message, nothing is recorded.  Rows are found by primary key: the index
 * scan prunes the page of the versions the claim left behind, so the new
 * version (not a HOT update: sent_at leaves outbox_due) fits on the same
 * page.  Found by address (a TID scan, which prunes nothing), it relied on
 * a later claim's scan over the messages in flight having pruned the page
 * first; a loop that records each batch before the next claim (one SQL
 * session claiming and recording 20,000 messages) grew the table by three
 * quarters.
 * A dead message's next attempt is 'infinity', which takes it out of
 * outbox_due.  Returns the shortest delay, in seconds, before one of them
 * is due again (-1: none is), so that the worker knows without a query.
 */
double
crm_outbox_record(List *msgs)
{
	List	   *rest = msgs;
	double		soonest = -1;

	/* distributed: each shard's messages in a statement on that shard */
	while (rest != NIL)
	{
		const char *shard = ((CrmMessage *) linitial(rest))->shard;
		List	   *these = NIL;
		List	   *others = NIL;
		ListCell   *lc;
		double		d;

		foreach(lc, rest)
		{
			CrmMessage *m = lfirst(lc);

			if ((m->shard == NULL && shard == NULL) ||
				(m->shard != NULL && shard != NULL && strcmp(m->shard, shard) == 0))
				these = lappend(these, m);
			else
				others = lappend(others, m);
		}
		d = record_outcomes(these, shard);
		if (d >= 0 && (soonest < 0 || d < soonest))
			soonest = d;
		rest = others;
	}
	return soonest;
}

/*
 * The record of crm_outbox_record, on crm.outbox or one of its shards (%1$s):
 * each message's new due time, and whether it is still to be done (failed,
 * or given back), for crm.outbox_due (settle_due).  The row trigger that
 * would keep crm.outbox_due one row at a time is skipped while this runs
 * (crm._outbox_recording()).
 */
#define RECORD_UPDATE(rel) \
	"UPDATE " rel " o" \
	"   SET status = r.status, response_code = r.code, last_error = r.error," \
	"       response_excerpt = r.excerpt," \
	"       next_attempt_at = CASE r.status" \
	"           WHEN 'failed' THEN clock_timestamp() + make_interval(secs => r.delay)" \
	"           WHEN 'dead' THEN 'infinity'" \
	"           ELSE o.next_attempt_at END," \
	"       attempts = CASE WHEN r.released THEN o.attempts - 1 ELSE o.attempts END," \
	"       sent_at = CASE WHEN r.status = 'sent' THEN clock_timestamp() END," \
	"       lease_until = NULL, updated_at = now()" \
	"  FROM unnest($1, $2, $3, $4, $5, $6, $7, $8)" \
	"       AS r (id, attempts, status, code, error, excerpt, delay, released)" \
	" WHERE o.id = r.id AND o.attempts = r.attempts" \
	"   AND o.status = 'sending'"

static const char *const record_due_sql =
RECORD_UPDATE("%1$s")
" RETURNING o.id, o.next_attempt_at, o.sent_at IS NULL AND o.next_attempt_at < 'infinity'";

/*
 * Deletes the rows of crm.outbox_due (due, opened RowExclusiveLock) that a
 * probe of its primary key finds for keys (message id, table); a row
 * deleted or changed meanwhile (the sweep) is left alone.  Whether one was
 * deleted.
 */
static bool
delete_due_rows(Relation due, CrmProbe *probe, const Datum *keys)
{
	TupleTableSlot *slot;
	bool		deleted = false;

	crm_probe_start(probe, keys);
	while ((slot = crm_probe_next(probe)) != NULL)
	{
		TM_FailureData tmfd;

		if (heap_delete(due, &slot->tts_tid, GetCurrentCommandId(true), InvalidSnapshot,
						true, &tmfd, false) == TM_Ok)
			deleted = true;
	}
	return deleted;
}

/*
 * crm.outbox_due after a record (its RETURNING rows in SPI_tuptable): the
 * row of each message sent or dead is deleted, a failed one's gets its next
 * attempt.  Rows are found by probes of the primary key, not by a statement:
 * crm.outbox_due is emptied and filled all day, so its statistics often say
 * "empty" while it holds a backlog, and a kept plan made from them read all
 * of it for each batch (a fifth of the workers' time in a burst).
 */
static void
settle_due(Oid rel)
{
	SPITupleTable *tt = SPI_tuptable;
	uint64		n = SPI_processed;
	Oid			due_relid;
	Relation	due;
	CrmProbe	probe;
	Datum	   *again_ids;
	Datum	   *again_at;
	int			nagain = 0;
	uint64		i;

	if (n == 0)
		return;
	due_relid = get_relname_relid("outbox_due", get_namespace_oid("crm", false));
	due = table_open(due_relid, RowExclusiveLock);
	again_ids = palloc(sizeof(Datum) * n);
	again_at = palloc(sizeof(Datum) * n);
	crm_probe_begin(&probe, "outbox_due", "outbox_due_pkey", 2);
	for (i = 0; i < n; i++)
	{
		bool		isnull;
		Datum		id = SPI_getbinval(tt->vals[i], tt->tupdesc, 1, &isnull);
		Datum		at = SPI_getbinval(tt->vals[i], tt->tupdesc, 2, &isnull);
		bool		still = DatumGetBool(SPI_getbinval(tt->vals[i], tt->tupdesc, 3, &isnull));
		Datum		keys[2];
		TupleTableSlot *slot;
		bool		kept = false;

		keys[0] = id;
		keys[1] = ObjectIdGetDatum(rel);
		crm_probe_start(&probe, keys);
		while ((slot = crm_probe_next(&probe)) != NULL)
		{
			TM_FailureData tmfd;
			bool		null_at;
			Datum		row_at = slot_getattr(slot, 3, &null_at);

			if (still && !null_at && DatumGetTimestampTz(row_at) == DatumGetTimestampTz(at))
			{
				kept = true;	/* given back: due as before */
				continue;
			}
			/* gone or changed meanwhile (the sweep): nothing to do */
			(void) heap_delete(due, &slot->tts_tid, GetCurrentCommandId(true), InvalidSnapshot,
							   true, &tmfd, false);
		}
		if (still && !kept)
		{
			again_ids[nagain] = id;
			again_at[nagain] = at;
			nagain++;
		}
	}
	crm_probe_end(&probe);
	table_close(due, NoLock);
	CommandCounterIncrement();
	if (nagain > 0)
	{
		static SPIPlanPtr plan = NULL;
		Oid			types[3] = {INT8ARRAYOID, TIMESTAMPTZARRAYOID, OIDOID};
		Datum		vals[3];

		vals[0] = array_of(again_ids, NULL, nagain, INT8OID);
		vals[1] = array_of(again_at, NULL, nagain, TIMESTAMPTZOID);
		vals[2] = ObjectIdGetDatum(rel);
		crm_exec(crm_plan_opts(&plan,
							   "INSERT INTO crm.outbox_due (message_id, rel, next_attempt_at)"
							   " SELECT a.id, $3, a.at FROM unnest($1, $2) AS a (id, at)"
							   " ON CONFLICT (message_id, rel) DO UPDATE SET next_attempt_at = excluded.next_attempt_at",
							   3, types, CURSOR_OPT_GENERIC_PLAN),
				 vals, NULL, false, 0);
	}
}

/* The same on a database still on 0.1.0 (no crm.outbox_due). */
static const char *const record_sql = RECORD_UPDATE("%s");

/* crm_outbox_record for messages of crm.outbox (shard NULL) or of one shard of it */
static double
record_outcomes(List *msgs, const char *shard)
{
	static SPIPlanPtr plan = NULL;
	static SPIPlanPtr plan_0_1 = NULL;
	Oid			types[8] = {INT8ARRAYOID, INT4ARRAYOID, TEXTARRAYOID, INT4ARRAYOID,
	TEXTARRAYOID, TEXTARRAYOID, FLOAT8ARRAYOID, BOOLARRAYOID};
	int			n = list_length(msgs);
	Datum	   *ids,
			   *attempts,
			   *status,
			   *codes,
			   *errors,
			   *excerpts,
			   *delays,
			   *released;
	bool	   *code_null,
			   *error_null,
			   *excerpt_null;
	Datum		vals[8];
	ListCell   *lc;
	int			i = 0;
	double		soonest = -1;

	if (n == 0)
		return -1;
	ids = palloc(sizeof(Datum) * n);
	attempts = palloc(sizeof(Datum) * n);
	status = palloc(sizeof(Datum) * n);
	codes = palloc(sizeof(Datum) * n);
	errors = palloc(sizeof(Datum) * n);
	excerpts = palloc(sizeof(Datum) * n);
	delays = palloc(sizeof(Datum) * n);
	released = palloc(sizeof(Datum) * n);
	code_null = palloc(sizeof(bool) * n);
	error_null = palloc(sizeof(bool) * n);
	excerpt_null = palloc(sizeof(bool) * n);

	foreach(lc, msgs)
	{
		CrmMessage *m = lfirst(lc);
		double		delay;
		char	   *error;
		const char *st = status_of(m, &delay, &error);

		/* texts from the network: valid in the database encoding */
		if (error)
			error = crm_text_clean(error, strlen(error), ERROR_MAX, false);
		ids[i] = Int64GetDatum(m->id);
		attempts[i] = Int32GetDatum(m->attempts);
		status[i] = CStringGetTextDatum(st);
		codes[i] = Int32GetDatum((int32) m->code);
		code_null[i] = m->code == 0;
		errors[i] = error ? CStringGetTextDatum(error) : (Datum) 0;
		error_null[i] = error == NULL;
		excerpts[i] = m->excerpt_len > 0
			? CStringGetTextDatum(crm_text_clean(m->excerpt, m->excerpt_len, CRM_EXCERPT_MAX,
												 m->excerpt_cut))
			: (Datum) 0;
		excerpt_null[i] = m->excerpt_len == 0;
		delays[i] = Float8GetDatum(delay);
		if (strcmp(st, "failed") == 0 && (soonest < 0 || delay < soonest))
			soonest = delay;
		released[i] = BoolGetDatum(m->outcome == CRM_OUT_RELEASED);
		i++;
		if (m->outcome == CRM_OUT_GONE)
			disable_endpoint(m, error);
	}
	vals[0] = array_of(ids, NULL, n, INT8OID);
	vals[1] = array_of(attempts, NULL, n, INT4OID);
	vals[2] = array_of(status, NULL, n, TEXTOID);
	vals[3] = array_of(codes, code_null, n, INT4OID);
	vals[4] = array_of(errors, error_null, n, TEXTOID);
	vals[5] = array_of(excerpts, excerpt_null, n, TEXTOID);
	vals[6] = array_of(delays, NULL, n, FLOAT8OID);
	vals[7] = array_of(released, NULL, n, BOOLOID);
	if (!crm_outbox_has_due_table())
	{
		if (shard != NULL)
		{
			if (SPI_execute_with_args(psprintf(record_sql, shard), 8, types, vals, NULL, false, 0)
				!= SPI_OK_UPDATE)
				elog(ERROR, "could not record the messages of %s", shard);
			return soonest;
		}
		crm_exec(crm_plan_opts(&plan_0_1, psprintf(record_sql, "crm.outbox"), 8, types,
							   CURSOR_OPT_GENERIC_PLAN),
				 vals, NULL, false, 0);
		return soonest;
	}
	recording = true;
	PG_TRY();
	{
		if (shard != NULL)
		{
			if (SPI_execute_with_args(psprintf(record_due_sql, shard), 8, types, vals, NULL, false, 0)
				!= SPI_OK_UPDATE_RETURNING)
				elog(ERROR, "could not record the messages of %s", shard);
		}
		else
			crm_exec(crm_plan_opts(&plan, psprintf(record_due_sql, "crm.outbox"), 8, types,
								   CURSOR_OPT_GENERIC_PLAN),
					 vals, NULL, false, 0);
	}
	PG_FINALLY();
	{
		recording = false;
	}
	PG_END_TRY();
	settle_due(shard != NULL
			   ? DatumGetObjectId(DirectFunctionCall1(regclassin, CStringGetDatum(shard)))
			   : get_relname_relid("outbox", get_namespace_oid("crm", false)));
	return soonest;
}

/*
 * When a message next becomes claimable (DT_NOEND: none is): the earliest
 * next attempt of a pending or failed one, or the earliest end of a lease.
 * Asked when a claim came back short, so the messages due by now are those
 * in flight (leased, at the head of the due order: up to three slots' worth
 * per worker) and perhaps a few behind the claim point or locked by another
 * claim: the first 500 in due order tell them, each read by its id, and the
 * index gives the first due later; not the whole backlog, which a burst's
 * tail would read again at each short claim (it was a seventh of the
 * workers' time).  A lease further than 500 messages in is found once those
 * before it are done.  Planned once.  On crm.outbox or one of its shards
 * (%1$s).
 */
static const char *const next_due_sql =
"SELECT least((SELECT min(CASE WHEN o.status IN ('pending', 'failed') THEN q.next_attempt_at"
"                              WHEN o.status = 'sending' THEN o.lease_until END)"
"                FROM (SELECT q.message_id, q.next_attempt_at FROM crm.outbox_due q"
"                       WHERE q.rel = '%1$s'::regclass AND q.next_attempt_at <= now()"
"                       ORDER BY q.rel, q.next_attempt_at, q.message_id LIMIT 500) q,"
"                     LATERAL (SELECT o.status, o.lease_until FROM %1$s o"
"                               WHERE o.id = q.message_id AND o.sent_at IS NULL) o),"
"             (SELECT q.next_attempt_at FROM crm.outbox_due q"
"               WHERE q.rel = '%1$s'::regclass AND q.next_attempt_at > now()"
"               ORDER BY q.rel, q.next_attempt_at, q.message_id LIMIT 1))";
/* the same on a database still on 0.1.0 (no crm.outbox_due) */
static const char *const next_due_0_1_sql =
"SELECT least((SELECT min(next_attempt_at) FROM crm.outbox"
"               WHERE sent_at IS NULL AND next_attempt_at < 'infinity'"
"                 AND status IN ('pending', 'failed')),"
"             (SELECT min(lease_until) FROM crm.outbox"
"               WHERE sent_at IS NULL AND next_attempt_at < 'infinity'"
"                 AND next_attempt_at <= now() AND status = 'sending'))";

static TimestampTz
due_of_result(void)
{
	bool		isnull;
	Datum		d;

	if (SPI_processed == 0)
		return DT_NOEND;
	d = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);
	return isnull ? DT_NOEND : DatumGetTimestampTz(d);
}

TimestampTz
crm_outbox_next_due(void)
{
	static SPIPlanPtr plan = NULL;
	static SPIPlanPtr plan_0_1 = NULL;
	TimestampTz due = DT_NOEND;

	if (!crm_outbox_has_due_table())
	{
		crm_exec(crm_plan(&plan_0_1, next_due_0_1_sql, 0, NULL), NULL, NULL, true, 1);
		return due_of_result();
	}
	if (outbox_distributed())
	{
		/* this node's shards, each with its rows of crm.outbox_due */
		/* this node's shards, each with its rows of crm.outbox_due */
		List	   *shards = node_shards();
		ListCell   *lc;
		foreach(lc, shards)
		{
			TimestampTz d;

			if (SPI_execute(psprintf(next_due_sql, (char *) lfirst(lc)), true, 1) != SPI_OK_SELECT)
				elog(ERROR, "could not read %s", (char *) lfirst(lc));
			d = due_of_result();
			if (d < due)
				due = d;
		}
		return due;
	}
	crm_exec(crm_plan(&plan, psprintf(next_due_sql, "crm.outbox"), 0, NULL), NULL, NULL, true, 1);
	return due_of_result();
}

/*
 * Rows of crm.outbox_due whose message is done (sent, dead) or gone, or
 * whose due time is not the message's: left by writes that skipped the
 * triggers (an administrator's session_replication_role = replica, rows
 * changed by hand in crm.outbox_due).  Such a row is never claimed, but
 * each claim from the start reads past it.  crm.outbox_due holds only
 * messages not yet done, so reading it all is cheap; the worker runs this
 * with the outbox's cleanup.  On crm.outbox or one of its shards (%1$s).
 */
static const char *const due_sweep_sql =
"WITH stale AS ("
" DELETE FROM crm.outbox_due q"
"  WHERE q.rel = '%1$s'::regclass"
"    AND NOT EXISTS (SELECT FROM %1$s o WHERE o.id = q.message_id"
"                     AND o.sent_at IS NULL AND o.next_attempt_at < 'infinity'"
"                     AND o.next_attempt_at = q.next_attempt_at)"
" RETURNING q.message_id)"
" INSERT INTO crm.outbox_due (message_id, rel, next_attempt_at)"
" SELECT o.id, '%1$s'::regclass, o.next_attempt_at FROM %1$s o JOIN stale s ON o.id = s.message_id"
"  WHERE o.sent_at IS NULL AND o.next_attempt_at < 'infinity'";

void
crm_outbox_due_sweep(void)
{
	if (!crm_outbox_has_due_table())
		return;
	if (outbox_distributed())
	{
		/* this node's shards, each with its rows of crm.outbox_due */
		List	   *shards = node_shards();
		ListCell   *lc;
		foreach(lc, shards)
			(void) SPI_execute(psprintf(due_sweep_sql, (char *) lfirst(lc)), false, 0);
		return;
	}
	(void) SPI_execute(psprintf(due_sweep_sql, "crm.outbox"), false, 0);
}

/*
 * crm._outbox_due_forget(message_id, rel): deletes the row of crm.outbox_due
 * for a message of rel (crm.outbox or a shard of it), found by a probe of
 * the primary key, not by a kept plan (see settle_due): crm.outbox's row
 * trigger calls it when a message is done, deleted or due at another time.
 * Returns whether there was one.
 */
PG_FUNCTION_INFO_V1(crm_outbox_due_forget);
Datum
crm_outbox_due_forget(PG_FUNCTION_ARGS)
{
	Oid			due_relid;
	Relation	due;
	CrmProbe	probe;
	Datum		keys[2];
	bool		found;

	if (PG_ARGISNULL(0) || PG_ARGISNULL(1))
		PG_RETURN_BOOL(false);
	/* the list is the workers' and the triggers' (which act as the owner) */
	if (!has_privs_of_role(GetUserId(), crm_automation_owner()))
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("only the owner of schema crm may change crm.outbox_due"),
				 errhint("Update or delete the message in crm.outbox: its triggers keep crm.outbox_due.")));
	due_relid = get_relname_relid("outbox_due", get_namespace_oid("crm", false));
	if (!OidIsValid(due_relid))
		PG_RETURN_BOOL(false);
	due = table_open(due_relid, RowExclusiveLock);
	crm_probe_begin(&probe, "outbox_due", "outbox_due_pkey", 2);
	keys[0] = PG_GETARG_DATUM(0);
	keys[1] = PG_GETARG_DATUM(1);
	found = delete_due_rows(due, &probe, keys);
	crm_probe_end(&probe);
	table_close(due, NoLock);
	CommandCounterIncrement();
	PG_RETURN_BOOL(found);
}

/* crm.outbox_due's rows, appended without an INSERT statement (rowappend.c) */
static CrmRowSink due_sink = {
	"crm.outbox_due", 3,
	{"message_id", "rel", "next_attempt_at"},
	{INT8OID, REGCLASSOID, TIMESTAMPTZOID},
	true
};

/*
 * Lists a message in crm.outbox_due at its due time, in place of any row it
 * had there (a row left over from a message deleted with the triggers off
 * and an id given again): the row is appended as an INSERT would, without
 * one (core/rowappend.c), as the owner (the caller is in the automation
 * scope).
 */
static void
list_due(Relation due, CrmProbe *probe, Datum id, Oid rel, Datum at)
{
	Datum		vals[3];
	bool		nulls[3] = {false, false, false};

	vals[0] = id;
	vals[1] = ObjectIdGetDatum(rel);
	vals[2] = at;
	(void) delete_due_rows(due, probe, vals);
	if (!crm_row_append(&due_sink, vals, nulls))
		crm_sink_write(&due_sink, vals, nulls);
}

/*
 * crm._outbox_queued(): crm.outbox's statement trigger after INSERT (its new
 * rows a transition table): the messages not yet done are listed in
 * crm.outbox_due, as the extension's owner (the automation scope: an
 * administrator may queue messages, and only the owner writes the list).
 * In C, rows appended without a statement: a robot queues each message
 * with an INSERT of its own, and the same trigger in PL/pgSQL, or with an
 * INSERT, cost a sixth of queuing the message.
 */
PG_FUNCTION_INFO_V1(crm_outbox_queued);
Datum
crm_outbox_queued(PG_FUNCTION_ARGS)
{
	TriggerData *td = (TriggerData *) fcinfo->context;
	TupleDesc	desc;
	TupleTableSlot *slot;
	AttrNumber	a_id,
				a_at,
				a_sent;
	Oid			rel;
	Relation	due = NULL;
	CrmProbe	probe;
	CrmScope	scope;

	if (!CALLED_AS_TRIGGER(fcinfo) || !TRIGGER_FIRED_FOR_STATEMENT(td->tg_event) ||
		!TRIGGER_FIRED_BY_INSERT(td->tg_event) || td->tg_newtable == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("crm._outbox_queued() must be a statement trigger after INSERT with a new table")));
	desc = RelationGetDescr(td->tg_relation);
	rel = RelationGetRelid(td->tg_relation);
	a_id = SPI_fnumber(desc, "id");
	a_at = SPI_fnumber(desc, "next_attempt_at");
	a_sent = SPI_fnumber(desc, "sent_at");
	if (a_id <= 0 || a_at <= 0 || a_sent <= 0)
		elog(ERROR, "crm._outbox_queued(): %s has no id, next_attempt_at or sent_at",
			 RelationGetRelationName(td->tg_relation));
	slot = MakeSingleTupleTableSlot(desc, &TTSOpsMinimalTuple);
	tuplestore_rescan(td->tg_newtable);
	while (tuplestore_gettupleslot(td->tg_newtable, true, false, slot))
	{
		bool		null_id,
					null_at,
					null_sent;
		Datum		id = slot_getattr(slot, a_id, &null_id);
		Datum		at = slot_getattr(slot, a_at, &null_at);

		(void) slot_getattr(slot, a_sent, &null_sent);
		/* sent or dead (next attempt 'infinity'): not listed */
		if (null_id || null_at || !null_sent || TIMESTAMP_IS_NOEND(DatumGetTimestampTz(at)))
			continue;
		if (due == NULL)
		{
			/* SPI: for the INSERT of a row that cannot be appended */
			crm_scope_enter(&scope, CRM_SCOPE_SPI);
			due = table_open(get_relname_relid("outbox_due", get_namespace_oid("crm", false)),
							 RowExclusiveLock);
			crm_probe_begin(&probe, "outbox_due", "outbox_due_pkey", 2);
		}
		list_due(due, &probe, id, rel, at);
	}
	ExecDropSingleTupleTableSlot(slot);
	if (due != NULL)
	{
		crm_probe_end(&probe);
		table_close(due, NoLock);
		crm_scope_leave(&scope);
		CommandCounterIncrement();
	}
	return PointerGetDatum(NULL);
}

/* Gives unfinished messages back to the queue (worker shutdown). */
void
crm_outbox_release(List *msgs)
{
	ListCell   *lc;

	foreach(lc, msgs)
	{
		CrmMessage *m = lfirst(lc);

		m->outcome = CRM_OUT_RELEASED;
		m->result_error = "interrupted by worker shutdown";
	}
	(void) crm_outbox_record(msgs);
}
