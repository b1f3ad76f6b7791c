/*-------------------------------------------------------------------------
 *
 * simulate.c
 *	  crm._simulate(statement, row_limit): what one INSERT, UPDATE or
 *	  DELETE on CRM tables would do, automation included, without doing it
 *	  (crm.simulate, in 85_explain.sql, dresses the rows up for psql).
 *
 * The statement is parsed first (raw_parser): exactly one INSERT, UPDATE
 * or DELETE whose target is a table of schema crm, with no data-modifying
 * WITH query; anything else is refused before it runs.  It then runs as
 * the caller (this function is not SECURITY DEFINER: the caller's rights,
 * the caller's search_path), with all the automation it causes (robots,
 * triggers, processes, and what they cause in turn, under the usual
 * crm.max_depth and crm.max_steps), inside a subtransaction that is always
 * rolled back.  Before the rollback, the rows it wrote are read back:
 *
 *	  - every table of schema crm that the subtransaction changed (the
 *		statistics counters of the transaction say which: a table nobody
 *		wrote is not read) is read page by page, but for the pages the
 *		visibility map says are all visible (a page holding a row version
 *		of a transaction in progress never is), for the row versions
 *		whose xmin or xmax is one of the subtransaction's transaction ids
 *		(those assigned after it began, and current): new rows (insert),
 *		new versions (update), rows whose last version it deleted (delete);
 *		versions it wrote and replaced itself are skipped;
 *	  - each becomes a row of the result, in the order they were written
 *		(their command id), as jsonb; a table the caller may not SELECT
 *		(or whose row security applies to the caller) shows only its name
 *		and the row's id.
 *
 * Nothing survives: the rows are gone with the rollback, and the worker is
 * not woken (crm_simulating, checked by the outbox's and jobs' wake-up
 * trigger).  Sequences are not transactional: the ids the statement drew
 * are used up.  A statement that fails reports its error as a row (op
 * "error"), and leaves nothing either.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/heapam.h"
#include "access/htup_details.h"
#include "access/multixact.h"
#include "access/tableam.h"
#include "access/transam.h"
#include "access/visibilitymap.h"
#include "access/xact.h"
#include "storage/bufmgr.h"
#include "storage/bufpage.h"
#include "catalog/namespace.h"
#include "catalog/pg_class.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "nodes/parsenodes.h"
#include "parser/parser.h"
#include "pgstat.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/jsonb.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/rls.h"
#include "utils/snapmgr.h"

#include "core/citus.h"
#include "core/guc.h"

PG_FUNCTION_INFO_V1(crm_simulate);

#define SIMULATE_COLS 5
#define SIMULATE_MAX_LIMIT 100000

/* One row version the statement wrote. */
typedef struct Effect
{
	CommandId	cid;			/* when it was written */
	const char *op;				/* insert, update, delete */
	Oid			relid;
	ItemPointerData tid;		/* the version */
	bool		visible;		/* the caller may read the table */
} Effect;

typedef struct Capture
{
	TransactionId first_xid;	/* ids from here on are the statement's */
	int			nest_level;		/* of its subtransaction */
	Oid			caller;
	List	   *effects;		/* Effect * */
	MemoryContext cxt;			/* where effects are kept */
} Capture;

/* ---------- checking the statement ---------- */

static void
refuse(const char *why, const char *hint)
{
	ereport(ERROR,
			(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
			 errmsg("crm.simulate runs one INSERT, UPDATE or DELETE on a table of schema crm"),
			 errdetail("%s", why),
			 errhint("%s", hint)));
}

/*
 * The statement's target table, once it is known to be one INSERT, UPDATE
 * or DELETE on a table of schema crm with no data-modifying WITH query.
 */
static Oid
check_statement(const char *sql)
{
	List	   *stmts = raw_parser(sql, RAW_PARSE_DEFAULT);
	Node	   *stmt;
	RangeVar   *target;
	WithClause *with;
	ListCell   *lc;
	Oid			relid;
	Oid			crm = get_namespace_oid("crm", false);

	if (list_length(stmts) != 1)
		refuse(psprintf("The text holds %d statements.", list_length(stmts)),
			   "Pass a single statement, without a second one after a semicolon.");
	stmt = ((RawStmt *) linitial(stmts))->stmt;
	switch (nodeTag(stmt))
	{
		case T_InsertStmt:
			target = ((InsertStmt *) stmt)->relation;
			with = ((InsertStmt *) stmt)->withClause;
			break;
		case T_UpdateStmt:
			target = ((UpdateStmt *) stmt)->relation;
			with = ((UpdateStmt *) stmt)->withClause;
			break;
		case T_DeleteStmt:
			target = ((DeleteStmt *) stmt)->relation;
			with = ((DeleteStmt *) stmt)->withClause;
			break;
		default:
			refuse("The statement is not an INSERT, UPDATE or DELETE.",
				   "For example crm.simulate('UPDATE crm.deal SET stage_id = crm.stage(''deal'', ''won'') WHERE id = 1').");
			return InvalidOid;	/* keep compiler quiet */
	}
	if (with != NULL)
		foreach(lc, with->ctes)
		{
			CommonTableExpr *cte = lfirst_node(CommonTableExpr, lc);

			if (!IsA(cte->ctequery, SelectStmt))
				refuse(psprintf("WITH query \"%s\" changes data.", cte->ctename),
					   "Simulate one change at a time.");
		}
	/* as the statement will find it: the caller's search_path */
	relid = RangeVarGetRelid(target, NoLock, false);
	if (get_rel_namespace(relid) != crm || get_rel_relkind(relid) != RELKIND_RELATION)
		refuse(psprintf("\"%s\" is not a table of schema crm.", get_rel_name(relid)),
			   "Simulate changes of CRM items and workspace tables (crm.deal, crm.activity, ...).");
	return relid;
}

/* ---------- reading back what it wrote ---------- */

/* Was xid assigned inside the simulated statement's subtransaction? */
static bool
ours(Capture *cap, TransactionId xid)
{
	return TransactionIdIsValid(xid) &&
		TransactionIdFollowsOrEquals(xid, cap->first_xid) &&
		TransactionIdIsCurrentTransactionId(xid);
}

/* The transaction that updated or deleted the version, if any. */
static TransactionId
updater(HeapTupleHeader h)
{
	if (h->t_infomask & HEAP_XMAX_INVALID)
		return InvalidTransactionId;
	if (HEAP_XMAX_IS_LOCKED_ONLY(h->t_infomask))
		return InvalidTransactionId;
	if (h->t_infomask & HEAP_XMAX_IS_MULTI)
		return HeapTupleGetUpdateXid(h);
	return HeapTupleHeaderGetRawXmax(h);
}

/* Did this table get a row written in the subtransaction? */
static bool
table_written(Capture *cap, Oid relid)
{
	PgStat_TableStatus *ts = find_tabstat_entry(relid);
	PgStat_TableXactStatus *tx;

	/* without the counters (track_counts off), every table is read */
	if (!pgstat_track_counts)
		return true;
	if (ts == NULL)
		return false;
	for (tx = ts->trans; tx != NULL; tx = tx->upper)
		if (tx->nest_level >= cap->nest_level &&
			(tx->tuples_inserted > 0 || tx->tuples_updated > 0 || tx->tuples_deleted > 0))
			return true;
	return false;
}

static Jsonb *
tuple_jsonb(HeapTuple tuple, TupleDesc desc)
{
	Datum		rec = heap_copy_tuple_as_datum(tuple, desc);
	Datum		json = DirectFunctionCall1(row_to_json, rec);

	return DatumGetJsonbP(DirectFunctionCall1(jsonb_in,
											  CStringGetDatum(TextDatumGetCString(json))));
}

static void
note_effect(Capture *cap, Relation rel, HeapTuple tuple, const char *op, CommandId cid,
			bool visible)
{
	MemoryContext old = MemoryContextSwitchTo(cap->cxt);
	Effect	   *e = palloc0(sizeof(Effect));

	e->cid = cid;
	e->op = op;
	e->relid = RelationGetRelid(rel);
	e->tid = tuple->t_self;
	e->visible = visible;
	cap->effects = lappend(cap->effects, e);
	MemoryContextSwitchTo(old);
}

/*
 * The row of an effect as jsonb (NULL when hidden from the caller), and
 * its id; read again by its place, the version being still there.
 */
static Jsonb *
effect_row(Capture *cap, const Effect *e, char **table, int64 *id)
{
	Relation	rel = table_open(e->relid, AccessShareLock);
	TupleDesc	desc = RelationGetDescr(rel);
	HeapTupleData tuple;
	Buffer		buf;
	Jsonb	   *row = NULL;
	int			att = SPI_fnumber(desc, "id");
	MemoryContext old;

	*id = 0;
	tuple.t_self = e->tid;
	old = MemoryContextSwitchTo(cap->cxt);
	*table = pstrdup(RelationGetRelationName(rel));
	if (heap_fetch(rel, SnapshotAny, &tuple, &buf, false))
	{
		bool		isnull = true;
		Datum		d = (Datum) 0;

		if (att > 0 && TupleDescAttr(desc, att - 1)->atttypid == INT8OID)
			d = heap_getattr(&tuple, att, desc, &isnull);
		if (!isnull)
			*id = DatumGetInt64(d);
		if (e->visible)
			row = tuple_jsonb(&tuple, desc);
		ReleaseBuffer(buf);
	}
	MemoryContextSwitchTo(old);
	table_close(rel, AccessShareLock);
	return row;
}

/* The row's id (0 when it has none). */
static int64
tuple_id(HeapTuple tuple, TupleDesc desc, int att)
{
	bool		isnull = true;
	Datum		d = (Datum) 0;

	if (att > 0 && TupleDescAttr(desc, att - 1)->atttypid == INT8OID)
		d = heap_getattr(tuple, att, desc, &isnull);
	return isnull ? 0 : DatumGetInt64(d);
}

/*
 * The versions of one table the subtransaction wrote.  A new version made
 * by an UPDATE is an update only if the row existed before the statement
 * (a version of it that the subtransaction did not write was replaced);
 * a row it inserted and then updated is an insert.
 */
static void
capture_table(Capture *cap, Oid relid)
{
	Relation	rel = table_open(relid, AccessShareLock);
	TupleDesc	desc = RelationGetDescr(rel);
	int			id_att = SPI_fnumber(desc, "id");
	BlockNumber nblocks;
	BlockNumber blk;
	Buffer		vmbuf = InvalidBuffer;
	BufferAccessStrategy strategy = GetAccessStrategy(BAS_BULKREAD);
	bool		visible;
	List	   *updated = NIL;	/* Effect * of new versions */
	List	   *updated_ids = NIL;	/* int64 * of the rows they replace */
	List	   *existed = NIL;	/* int64 * of rows that existed before */
	ListCell   *lc;

	visible = pg_class_aclcheck(relid, cap->caller, ACL_SELECT) == ACLCHECK_OK &&
		check_enable_rls(relid, cap->caller, true) != RLS_ENABLED;
	nblocks = RelationGetNumberOfBlocks(rel);
	for (blk = 0; blk < nblocks; blk++)
	{
		Buffer		buf;
		Page		page;
		OffsetNumber off;
		OffsetNumber maxoff;

		CHECK_FOR_INTERRUPTS();
		/* a page all visible holds nothing of a transaction in progress */
		if (VM_ALL_VISIBLE(rel, blk, &vmbuf))
			continue;
		buf = ReadBufferExtended(rel, MAIN_FORKNUM, blk, RBM_NORMAL, strategy);
		LockBuffer(buf, BUFFER_LOCK_SHARE);
		page = BufferGetPage(buf);
		maxoff = PageGetMaxOffsetNumber(page);
		for (off = FirstOffsetNumber; off <= maxoff; off++)
		{
			ItemId		lp = PageGetItemId(page, off);
			HeapTupleData tupdata;
			HeapTuple	tuple = &tupdata;
			HeapTupleHeader h;
			TransactionId xmin;
			TransactionId xmax;
			bool		replaced;

			if (!ItemIdIsNormal(lp))
				continue;
			tupdata.t_data = (HeapTupleHeader) PageGetItem(page, lp);
			tupdata.t_len = ItemIdGetLength(lp);
			tupdata.t_tableOid = relid;
			ItemPointerSet(&tupdata.t_self, blk, off);
			h = tuple->t_data;
			xmin = HeapTupleHeaderGetRawXmin(h);
			xmax = updater(h);
			replaced = !ItemPointerEquals(&tuple->t_self, &h->t_ctid);
			if (ours(cap, xmin))
			{
				/* a version it wrote and then replaced or deleted itself */
				if (TransactionIdIsValid(xmax) && ours(cap, xmax))
					continue;
				note_effect(cap, rel, tuple, (h->t_infomask & HEAP_UPDATED) ? "update" : "insert",
							HeapTupleHeaderGetRawCommandId(h), visible);
				if (h->t_infomask & HEAP_UPDATED)
				{
					int64	   *id = palloc(sizeof(int64));

					*id = tuple_id(tuple, desc, id_att);
					updated = lappend(updated, llast(cap->effects));
					updated_ids = lappend(updated_ids, id);
				}
			}
			else if (TransactionIdIsValid(xmax) && ours(cap, xmax))
			{
				if (!replaced)
					note_effect(cap, rel, tuple, "delete", HeapTupleHeaderGetRawCommandId(h), visible);
				else
				{
					int64	   *id = palloc(sizeof(int64));

					*id = tuple_id(tuple, desc, id_att);
					existed = lappend(existed, id);
				}
			}
		}
		UnlockReleaseBuffer(buf);
	}
	if (BufferIsValid(vmbuf))
		ReleaseBuffer(vmbuf);
	foreach(lc, updated)
	{
		Effect	   *e = lfirst(lc);
		int64		id = *(int64 *) list_nth(updated_ids, foreach_current_index(lc));
		ListCell   *lc2;
		bool		found = false;

		foreach(lc2, existed)
			if (*(int64 *) lfirst(lc2) == id)
				found = true;
		if (!found && id != 0)
			e->op = "insert";
	}
	table_close(rel, AccessShareLock);
}

/*
 * Every table of schema crm the subtransaction wrote, read back; not
 * crm.outbox_due, the outbox's own list of messages not yet done (its rows
 * follow the messages shown).
 */
static void
capture(Capture *cap)
{
	Oid			crm = get_namespace_oid("crm", false);
	int			ret;
	uint64		i;
	uint64		n;
	Oid		   *relids;

	ret = SPI_execute_with_args("SELECT c.oid FROM pg_catalog.pg_class c"
								" WHERE c.relnamespace OPERATOR(pg_catalog.=) $1"
								"   AND c.relkind OPERATOR(pg_catalog.=) 'r'"
								"   AND c.relname OPERATOR(pg_catalog.<>) 'outbox_due'"
								" ORDER BY c.oid",
								1, (Oid[]) {OIDOID}, (Datum[]) {ObjectIdGetDatum(crm)}, NULL, true, 0);
	if (ret != SPI_OK_SELECT)
		elog(ERROR, "could not list the tables of schema crm");
	n = SPI_processed;
	relids = palloc(sizeof(Oid) * Max(n, 1));
	for (i = 0; i < n; i++)
	{
		bool		isnull;

		relids[i] = DatumGetObjectId(SPI_getbinval(SPI_tuptable->vals[i],
												   SPI_tuptable->tupdesc, 1, &isnull));
	}
	for (i = 0; i < n; i++)
		if (table_written(cap, relids[i]))
			capture_table(cap, relids[i]);
}

static int
effect_order(const ListCell *a, const ListCell *b)
{
	const Effect *x = lfirst(a);
	const Effect *y = lfirst(b);

	if (x->cid != y->cid)
		return x->cid < y->cid ? -1 : 1;
	if (x->relid != y->relid)
		return x->relid < y->relid ? -1 : 1;
	return ItemPointerCompare((ItemPointer) &x->tid, (ItemPointer) &y->tid);
}

/* ---------- running it ---------- */

static Jsonb *
error_row(ErrorData *edata)
{
	JsonbParseState *st = NULL;
	JsonbValue	v;
	const char *keys[4] = {"sqlstate", "message", "detail", "hint"};
	const char *vals[4];
	int			i;

	vals[0] = unpack_sql_state(edata->sqlerrcode);
	vals[1] = edata->message;
	vals[2] = edata->detail;
	vals[3] = edata->hint;
	pushJsonbValue(&st, WJB_BEGIN_OBJECT, NULL);
	for (i = 0; i < 4; i++)
	{
		if (vals[i] == NULL)
			continue;
		v.type = jbvString;
		v.val.string.val = (char *) keys[i];
		v.val.string.len = strlen(keys[i]);
		pushJsonbValue(&st, WJB_KEY, &v);
		v.val.string.val = (char *) vals[i];
		v.val.string.len = strlen(vals[i]);
		pushJsonbValue(&st, WJB_VALUE, &v);
	}
	return JsonbValueToJsonb(pushJsonbValue(&st, WJB_END_OBJECT, NULL));
}

static void
push_key(JsonbParseState **st, const char *key)
{
	JsonbValue	v;

	v.type = jbvString;
	v.val.string.val = (char *) key;
	v.val.string.len = strlen(key);
	pushJsonbValue(st, WJB_KEY, &v);
}

static void
push_count(JsonbParseState **st, int64 n)
{
	JsonbValue	v;

	v.type = jbvNumeric;
	v.val.numeric = int64_to_numeric(n);
	pushJsonbValue(st, WJB_VALUE, &v);
}

static Jsonb *
count_row(const char *key, int64 n)
{
	JsonbParseState *st = NULL;

	pushJsonbValue(&st, WJB_BEGIN_OBJECT, NULL);
	push_key(&st, key);
	push_count(&st, n);
	return JsonbValueToJsonb(pushJsonbValue(&st, WJB_END_OBJECT, NULL));
}

/* The first row: the statement, the rows it changed itself, the effects in all. */
static Jsonb *
statement_row(const char *sql, uint64 processed, int effects)
{
	JsonbParseState *st = NULL;
	JsonbValue	v;

	pushJsonbValue(&st, WJB_BEGIN_OBJECT, NULL);
	push_key(&st, "statement");
	v.type = jbvString;
	v.val.string.val = (char *) sql;
	v.val.string.len = strlen(sql);
	pushJsonbValue(&st, WJB_VALUE, &v);
	push_key(&st, "rows");
	push_count(&st, (int64) processed);
	push_key(&st, "effects");
	push_count(&st, effects);
	return JsonbValueToJsonb(pushJsonbValue(&st, WJB_END_OBJECT, NULL));
}

/* A row of the result, kept until the subtransaction is over. */
typedef struct OutRow
{
	Datum		vals[SIMULATE_COLS];
	bool		nulls[SIMULATE_COLS];
} OutRow;

static List *
put_row(List *rows, MemoryContext cxt, int64 seq, const char *op, const char *table,
		int64 id, Jsonb *row)
{
	MemoryContext old = MemoryContextSwitchTo(cxt);
	OutRow	   *r = palloc0(sizeof(OutRow));

	r->vals[0] = Int64GetDatum(seq);
	r->vals[1] = CStringGetTextDatum(op);
	if (table)
		r->vals[2] = CStringGetTextDatum(table);
	else
		r->nulls[2] = true;
	if (id != 0)
		r->vals[3] = Int64GetDatum(id);
	else
		r->nulls[3] = true;
	if (row)
		r->vals[4] = PointerGetDatum(DatumGetJsonbPCopy(JsonbPGetDatum(row)));
	else
		r->nulls[4] = true;
	rows = lappend(rows, r);
	MemoryContextSwitchTo(old);
	return rows;
}

/*
 * crm._simulate(statement text, row_limit integer)
 *	 RETURNS TABLE (seq bigint, op text, tbl text, row_id bigint, row_data jsonb)
 */
Datum
crm_simulate(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	char	   *sql;
	int			limit;
	Capture		cap;
	MemoryContext caller_cxt;
	ResourceOwner owner = CurrentResourceOwner;
	ErrorData  *edata = NULL;
	ListCell   *lc;
	List	   *rows = NIL;
	int64		seq = 0;
	uint64		processed = 0;
	Oid			target;
	bool		was_simulating = crm_simulating;

	if (PG_ARGISNULL(0))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("statement must not be null"),
				 errhint("For example crm.simulate('UPDATE crm.deal SET stage_id = crm.stage(''deal'', ''won'') WHERE id = 1').")));
	limit = PG_ARGISNULL(1) ? 100 : PG_GETARG_INT32(1);
	if (limit < 1 || limit > SIMULATE_MAX_LIMIT)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("row_limit must be between 1 and %d, not %d", SIMULATE_MAX_LIMIT, limit)));
	sql = text_to_cstring(PG_GETARG_TEXT_PP(0));
	InitMaterializedSRF(fcinfo, 0);
	caller_cxt = CurrentMemoryContext;

	target = check_statement(sql);
	if (crm_table_is_distributed(target))
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("crm.simulate cannot see what a statement writes on a Citus cluster"),
				 errdetail("crm.%s is distributed (crm.distribute()): the statement and its automation write on the nodes holding the shards, which this session's capture does not read.",
						   get_rel_name(target)),
				 errhint("Use crm.explain() for the decisions each rule would make, or simulate on a single-node copy of the database.")));

	memset(&cap, 0, sizeof(cap));
	cap.caller = GetUserId();
	cap.cxt = caller_cxt;

	BeginInternalSubTransaction(NULL);
	MemoryContextSwitchTo(caller_cxt);
	cap.nest_level = GetCurrentTransactionNestLevel();
	cap.first_xid = XidFromFullTransactionId(ReadNextFullTransactionId());
	PG_TRY();
	{
		crm_simulating = true;
		if (SPI_connect() != SPI_OK_CONNECT)
			elog(ERROR, "SPI_connect failed");
		/* the caller's statement, with the caller's rights and path */
		if (SPI_execute(sql, false, 0) < 0)
			elog(ERROR, "the statement could not be run");
		processed = SPI_processed;
		/* what it wrote, read before it is all rolled back */
		CommandCounterIncrement();
		capture(&cap);
		list_sort(cap.effects, effect_order);
		rows = put_row(rows, caller_cxt, 0, "statement", get_rel_name(target), 0,
					   statement_row(sql, processed, list_length(cap.effects)));
		foreach(lc, cap.effects)
		{
			Effect	   *e = lfirst(lc);
			char	   *table;
			int64		id;
			Jsonb	   *row;

			if (seq >= limit)
				break;
			row = effect_row(&cap, e, &table, &id);
			rows = put_row(rows, caller_cxt, ++seq, e->op, table, id, row);
		}
		if (list_length(cap.effects) > seq)
			rows = put_row(rows, caller_cxt, seq + 1, "truncated", NULL, 0,
						   count_row("rows_not_shown", list_length(cap.effects) - seq));
		SPI_finish();
		crm_simulating = was_simulating;
		RollbackAndReleaseCurrentSubTransaction();
		MemoryContextSwitchTo(caller_cxt);
		CurrentResourceOwner = owner;
	}
	PG_CATCH();
	{
		crm_simulating = was_simulating;
		MemoryContextSwitchTo(caller_cxt);
		edata = CopyErrorData();
		FlushErrorState();
		RollbackAndReleaseCurrentSubTransaction();
		MemoryContextSwitchTo(caller_cxt);
		CurrentResourceOwner = owner;
		if (edata->sqlerrcode == ERRCODE_QUERY_CANCELED)
			ReThrowError(edata);
	}
	PG_END_TRY();

	if (edata != NULL)
	{
		/* it failed: nothing it did is left, no row written; say why */
		rows = put_row(NIL, caller_cxt, 0, "error", get_rel_name(target), 0, error_row(edata));
	}
	foreach(lc, rows)
	{
		OutRow	   *r = lfirst(lc);

		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, r->vals, r->nulls);
	}
	PG_RETURN_VOID();
}
