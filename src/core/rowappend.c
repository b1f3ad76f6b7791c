/*-------------------------------------------------------------------------
 *
 * rowappend.c
 *	  Appending a sink's rows, written alone or a few at a time, to its
 *	  table without an INSERT statement.
 *
 * A row written at once through a sink (rowsink.c) is otherwise one INSERT
 * statement: the executor starts, builds a projection of every column and
 * compiles the table's CHECK constraints again, for one row.  The trigger
 * engine writes a log row for each event it decides (an incoming call ...),
 * one statement each, so for a sink that asks for it (CrmRowSink.append)
 * this does what that INSERT does with what it needs prepared once, as
 * COPY FROM does once per statement.  The robots' log rows of a statement
 * and the rows of business-process instances are appended the same way,
 * a batch's rows together (crm_rows_append, below):
 *
 *	  - the INSERT privilege of the current user is checked;
 *	  - the columns the sink does not write get their defaults (an identity
 *		takes its next value);
 *	  - values of a column whose type is a domain pass its constraints;
 *	  - NOT NULL and CHECK constraints are checked (ExecConstraints);
 *	  - the tuple is inserted and its index entries made, unique ones
 *		checked.
 *
 * Only a plain table without triggers that fire on INSERT (foreign keys and
 * deferrable unique constraints are triggers), rules, row security or
 * generated columns qualifies (and not a table whose rows Citus keeps in
 * shards, core/citus.h); for any other, or when the current user may
 * not insert, crm_row_append returns false and the caller runs the INSERT.
 * A sink whose writer guarantees some foreign keys of its rows (fk_checked:
 * they reference rows it wrote itself in the transaction, or locked as the
 * check would, FOR KEY SHARE) also qualifies when the only triggers that
 * fire on INSERT are those foreign keys' checks, which it skips; a foreign
 * key it does not name (one a user added) makes the table not qualify.
 *
 * crm_rows_append does the same for many rows at once, as COPY FROM does:
 * one heap_multi_insert per thousand rows (a WAL record per page, not per
 * row), then each row's index entries, with the table and its indexes
 * opened once.  A sink's batch of more than one row is written this way
 * (rowsink.c) when its table qualifies.
 *
 * What is compiled (defaults, CHECK constraints, domain checks) is kept
 * per backend; a relcache invalidation of the table (ALTER TABLE, in this
 * session or another) makes the next row compile it again.  The table and
 * its indexes are opened and closed for each row, as a statement would: no
 * reference outlives the call, so the table can be altered or truncated
 * later in the same transaction, and a rolled-back subtransaction takes its
 * rows with it (the heap marks them with its id).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/table.h"
#include "access/tableam.h"
#include "catalog/namespace.h"
#include "catalog/pg_constraint.h"
#include "catalog/pg_trigger.h"
#include "catalog/pg_type.h"
#include "commands/trigger.h"
#include "executor/executor.h"
#include "miscadmin.h"
#include "nodes/makefuncs.h"
#include "optimizer/optimizer.h"
#include "parser/parse_relation.h"
#include "rewrite/rewriteHandler.h"
#include "utils/acl.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/inval.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/regproc.h"
#include "utils/rel.h"
#include "utils/syscache.h"

#include "core/citus.h"
#include "core/rowsink.h"

/* What one sink's rows need; kept per backend. */
typedef struct AppendTarget
{
	CrmRowSink *sink;
	Oid			relid;
	bool		ready;			/* compiled for the table as it is */
	uint64		invals;			/* relcache invalidations of the table seen */
	bool		usable;			/* false: the caller runs the INSERT */
	MemoryContext cxt;			/* what is compiled, reset when rebuilt */
	EState	   *estate;			/* for expressions and ExecConstraints */
	ResultRelInfo rri;			/* filled again for each row */
	ExprState **checks;			/* CHECK constraints, compiled by ExecConstraints */
	TupleTableSlot *slot;		/* on a copy of the table's descriptor */
	AttrNumber	attnums[CRM_SINK_MAX_COLS];
	Oid			domains[CRM_SINK_MAX_COLS]; /* the column's domain, or 0 */
	void	   *domain_extra[CRM_SINK_MAX_COLS];
	int			ndefaults;
	AttrNumber *default_atts;
	ExprState **defaults;
	int			nslots;			/* of rows appended together (crm_rows_append) */
	TupleTableSlot **slots;
} AppendTarget;

/*
 * The slot holds a row to append: the sink's columns (domain-checked), the
 * defaults of the others, nulls elsewhere.
 */
static void
fill_slot(AppendTarget *t, int natts, TupleTableSlot *slot, ExprContext *econtext,
		  const Datum *values, const bool *nulls)
{
	int			i;

	ExecClearTuple(slot);
	memset(slot->tts_isnull, true, sizeof(bool) * slot->tts_tupleDescriptor->natts);
	for (i = 0; i < natts; i++)
	{
		AttrNumber	att = t->attnums[i] - 1;

		if (OidIsValid(t->domains[i]))
			domain_check(values[i], nulls[i], t->domains[i], &t->domain_extra[i],
						 t->estate->es_query_cxt);
		slot->tts_values[att] = values[i];
		slot->tts_isnull[att] = nulls[i];
	}
	for (i = 0; i < t->ndefaults; i++)
	{
		AttrNumber	att = t->default_atts[i] - 1;

		slot->tts_values[att] = ExecEvalExpr(t->defaults[i], econtext,
											 &slot->tts_isnull[att]);
	}
	ExecStoreVirtualTuple(slot);
}

/*
 * Rows appended together: one heap_multi_insert of up to this many, each
 * row then indexed.
 */
#define APPEND_CHUNK 1000

static List *targets = NIL;		/* in TopMemoryContext */
static bool callback_registered = false;

/* A change of the table (or of every relation) compiles again. */
static void
append_relcache_callback(Datum arg, Oid relid)
{
	ListCell   *lc;

	foreach(lc, targets)
	{
		AppendTarget *t = (AppendTarget *) lfirst(lc);

		if (relid == InvalidOid || t->relid == relid)
		{
			t->ready = false;
			t->invals++;
		}
	}
}

/*
 * Whether a foreign key's check (a trigger of constraint conoid) is one the
 * sink's writer guarantees: the key is one of its columns, referencing the
 * table the sink names for it.
 */
static bool
fk_guaranteed(Relation rel, Oid conoid, const CrmRowSink *sink)
{
	HeapTuple	tup = SearchSysCache1(CONSTROID, ObjectIdGetDatum(conoid));
	Form_pg_constraint con;
	Datum		d;
	bool		isnull;
	ArrayType  *arr;
	bool		found = false;
	int			i;

	if (!HeapTupleIsValid(tup))
		return false;
	con = (Form_pg_constraint) GETSTRUCT(tup);
	d = SysCacheGetAttr(CONSTROID, tup, Anum_pg_constraint_conkey, &isnull);
	arr = isnull ? NULL : DatumGetArrayTypeP(d);
	if (con->contype == CONSTRAINT_FOREIGN && arr != NULL &&
		ARR_NDIM(arr) == 1 && ARR_DIMS(arr)[0] == 1 && !ARR_HASNULL(arr) &&
		ARR_ELEMTYPE(arr) == INT2OID)
	{
		AttrNumber	key = ((int16 *) ARR_DATA_PTR(arr))[0];

		for (i = 0; i < CRM_SINK_MAX_FKS && sink->fk_checked[i].column != NULL && !found; i++)
		{
			Oid			refrel = RangeVarGetRelid(makeRangeVarFromNameList(stringToQualifiedNameList(sink->fk_checked[i].references)),
												  NoLock, true);

			found = key == attnameAttNum(rel, sink->fk_checked[i].column, false) &&
				OidIsValid(refrel) && con->confrelid == refrel;
		}
	}
	ReleaseSysCache(tup);
	return found;
}

/*
 * Whether no trigger fires when a row is inserted, but the checks of
 * foreign keys the sink's writer guarantees.
 */
static bool
no_insert_triggers(Relation rel, const CrmRowSink *sink)
{
	TriggerDesc *td = rel->trigdesc;
	int			i;

	if (td == NULL)
		return true;
	for (i = 0; i < td->numtriggers; i++)
	{
		Trigger    *tg = &td->triggers[i];

		if (!TRIGGER_FOR_INSERT(tg->tgtype))
			continue;
		if (tg->tgisinternal && RI_FKey_trigger_type(tg->tgfoid) == RI_TRIGGER_FK &&
			fk_guaranteed(rel, tg->tgconstraint, sink))
			continue;
		return false;
	}
	return true;
}

/* Whether rows of the table may be appended without the executor. */
static bool
table_qualifies(Relation rel, const CrmRowSink *sink)
{
	TupleConstr *constr = RelationGetDescr(rel)->constr;

	return rel->rd_rel->relkind == RELKIND_RELATION &&
		no_insert_triggers(rel, sink) &&
		rel->rd_rules == NULL &&
		!rel->rd_rel->relrowsecurity &&
		!(constr != NULL && constr->has_generated_stored) &&
		/* Citus keeps its rows in shards: the INSERT goes there */
		!crm_table_is_distributed(RelationGetRelid(rel));
}

/*
 * Maps the sink's columns onto the table; false when one is missing or of
 * another type than the sink's (or a domain over another type).
 */
static bool
map_columns(AppendTarget *t, Relation rel)
{
	TupleDesc	desc = RelationGetDescr(rel);
	int			i;

	for (i = 0; i < t->sink->natts; i++)
	{
		AttrNumber	att = attnameAttNum(rel, t->sink->columns[i], false);
		Oid			type;

		if (att <= 0)
			return false;
		type = TupleDescAttr(desc, att - 1)->atttypid;
		t->attnums[i] = att;
		t->domains[i] = InvalidOid;
		t->domain_extra[i] = NULL;
		if (type == t->sink->types[i])
			continue;
		if (getBaseType(type) != t->sink->types[i])
			return false;
		t->domains[i] = type;
	}
	return true;
}

/* The defaults of the columns the sink does not write, compiled. */
static void
compile_defaults(AppendTarget *t, Relation rel)
{
	TupleDesc	desc = RelationGetDescr(rel);
	bool		written[MaxHeapAttributeNumber];
	int			i;

	memset(written, 0, sizeof(bool) * desc->natts);
	for (i = 0; i < t->sink->natts; i++)
		written[t->attnums[i] - 1] = true;
	t->default_atts = palloc(sizeof(AttrNumber) * desc->natts);
	t->defaults = palloc(sizeof(ExprState *) * desc->natts);
	t->ndefaults = 0;
	for (i = 0; i < desc->natts; i++)
	{
		Node	   *expr;

		if (written[i] || TupleDescAttr(desc, i)->attisdropped)
			continue;
		expr = build_column_default(rel, i + 1);
		if (expr == NULL)
			continue;
		t->default_atts[t->ndefaults] = i + 1;
		t->defaults[t->ndefaults] = ExecInitExpr(expression_planner((Expr *) expr), NULL);
		t->ndefaults++;
	}
}

/* Compiles what the rows of the (open) table need. */
static void
prepare_target(AppendTarget *t, Relation rel)
{
	MemoryContext old;
	uint64		invals = t->invals;

	MemoryContextReset(t->cxt);
	t->estate = NULL;
	t->checks = NULL;
	t->slot = NULL;
	t->nslots = 0;
	t->slots = NULL;
	t->usable = false;
	t->ready = false;			/* until everything is compiled */
	old = MemoryContextSwitchTo(t->cxt);
	if (table_qualifies(rel, t->sink) && map_columns(t, rel))
	{
		t->estate = CreateExecutorState();
		MemoryContextSwitchTo(t->estate->es_query_cxt);
		t->slot = MakeSingleTupleTableSlot(CreateTupleDescCopy(RelationGetDescr(rel)),
										   &TTSOpsVirtual);
		compile_defaults(t, rel);
		t->usable = true;
	}
	MemoryContextSwitchTo(old);
	/* unless the table changed meanwhile */
	t->ready = t->invals == invals;
}

static AppendTarget *
target_for(CrmRowSink *sink)
{
	ListCell   *lc;
	AppendTarget *t;
	MemoryContext old;

	foreach(lc, targets)
	{
		t = (AppendTarget *) lfirst(lc);
		if (t->sink == sink)
			return t;
	}
	if (!callback_registered)
	{
		CacheRegisterRelcacheCallback(append_relcache_callback, (Datum) 0);
		callback_registered = true;
	}
	old = MemoryContextSwitchTo(TopMemoryContext);
	t = palloc0(sizeof(AppendTarget));
	t->sink = sink;
	t->cxt = AllocSetContextCreate(TopMemoryContext, "crm row append", ALLOCSET_SMALL_SIZES);
	targets = lappend(targets, t);
	MemoryContextSwitchTo(old);
	return t;
}

/*
 * Opens the sink's table for a row, as an INSERT would (RowExclusiveLock),
 * with what its rows need compiled; NULL when the table does not qualify.
 */
static Relation
open_target(AppendTarget *t)
{
	Relation	rel;

	if (!t->ready || !OidIsValid(t->relid))
		t->relid = RangeVarGetRelid(makeRangeVarFromNameList(stringToQualifiedNameList(t->sink->table)),
									NoLock, false);
	rel = table_open(t->relid, RowExclusiveLock);
	/* taking the lock may have brought news of the table */
	if (!t->ready)
		prepare_target(t, rel);
	if (!t->usable)
	{
		table_close(rel, NoLock);
		return NULL;
	}
	return rel;
}

bool
crm_row_append(CrmRowSink *sink, const Datum *values, const bool *nulls)
{
	AppendTarget *t = target_for(sink);
	Relation	rel;
	ResultRelInfo *rri = &t->rri;
	TupleTableSlot *slot;
	ExprContext *econtext;

	rel = open_target(t);
	if (rel == NULL)
		return false;
	if (pg_class_aclcheck(t->relid, GetUserId(), ACL_INSERT) != ACLCHECK_OK)
	{
		table_close(rel, NoLock);
		return false;
	}

	slot = t->slot;
	econtext = GetPerTupleExprContext(t->estate);
	ResetExprContext(econtext);
	fill_slot(t, sink->natts, slot, econtext, values, nulls);

	/* the CHECK constraints compiled by the first row are kept */
	InitResultRelInfo(rri, rel, 0, NULL, 0);
	rri->ri_ConstraintExprs = t->checks;
	if (RelationGetDescr(rel)->constr != NULL)
	{
		ExecConstraints(rri, slot, t->estate);
		t->checks = rri->ri_ConstraintExprs;
	}

	/* on an error, the resource owner closes what is open */
	ExecOpenIndices(rri, false);
	table_tuple_insert(rel, slot, GetCurrentCommandId(true), 0, NULL);
	if (rri->ri_NumIndices > 0)
		(void) ExecInsertIndexTuples(rri, slot, t->estate, false, false, NULL, NIL);
	ExecCloseIndices(rri);
	ExecClearTuple(slot);
	ResetExprContext(econtext);
	table_close(rel, NoLock);
	return true;
}


bool
crm_rows_append(CrmRowSink *sink, int n, const Datum *rows)
{
	AppendTarget *t = target_for(sink);
	Relation	rel;
	ResultRelInfo *rri = &t->rri;
	ExprContext *econtext;
	CommandId	cid;
	MemoryContext old;
	int			done = 0;
	int			j;

	rel = open_target(t);
	if (rel == NULL)
		return false;
	if (pg_class_aclcheck(t->relid, GetUserId(), ACL_INSERT) != ACLCHECK_OK)
	{
		table_close(rel, NoLock);
		return false;
	}
	/* the slots of a chunk, kept with what is compiled */
	if (t->nslots < Min(n, APPEND_CHUNK))
	{
		old = MemoryContextSwitchTo(t->estate->es_query_cxt);

		if (t->slots == NULL)
			t->slots = palloc0(sizeof(TupleTableSlot *) * APPEND_CHUNK);
		while (t->nslots < Min(n, APPEND_CHUNK))
			t->slots[t->nslots++] = MakeSingleTupleTableSlot(t->slot->tts_tupleDescriptor,
															 &TTSOpsVirtual);
		MemoryContextSwitchTo(old);
	}
	econtext = GetPerTupleExprContext(t->estate);
	cid = GetCurrentCommandId(true);

	InitResultRelInfo(rri, rel, 0, NULL, 0);
	rri->ri_ConstraintExprs = t->checks;
	ExecOpenIndices(rri, false);
	while (done < n)
	{
		int			chunk = Min(n - done, APPEND_CHUNK);

		ResetExprContext(econtext);
		for (j = 0; j < chunk; j++)
		{
			TupleTableSlot *slot = t->slots[j];
			HeapTupleHeader rec = DatumGetHeapTupleHeader(rows[done + j]);
			HeapTupleData tup;
			Datum		values[CRM_SINK_MAX_COLS];
			bool		nulls[CRM_SINK_MAX_COLS];

			tup.t_len = HeapTupleHeaderGetDatumLength(rec);
			ItemPointerSetInvalid(&tup.t_self);
			tup.t_tableOid = InvalidOid;
			tup.t_data = rec;
			heap_deform_tuple(&tup, sink->desc, values, nulls);

			fill_slot(t, sink->natts, slot, econtext, values, nulls);
			if (RelationGetDescr(rel)->constr != NULL)
			{
				ExecConstraints(rri, slot, t->estate);
				t->checks = rri->ri_ConstraintExprs;
			}
		}
		/* the heap's copies of the rows go with the chunk */
		old = MemoryContextSwitchTo(GetPerTupleMemoryContext(t->estate));
		table_multi_insert(rel, t->slots, chunk, cid, 0, NULL);
		MemoryContextSwitchTo(old);
		for (j = 0; j < chunk; j++)
		{
			if (rri->ri_NumIndices > 0)
				(void) ExecInsertIndexTuples(rri, t->slots[j], t->estate,
											 false, false, NULL, NIL);
			ExecClearTuple(t->slots[j]);
		}
		done += chunk;
	}
	ExecCloseIndices(rri);
	ResetExprContext(econtext);
	table_close(rel, NoLock);
	return true;
}
