/*-------------------------------------------------------------------------
 *
 * rowsink.c
 *	  Rows the engine writes, one at a time or gathered into batches.
 *
 * Moving thousands of items into a stage writes thousands of comments and
 * log rows.  One INSERT per row pays the executor's start-up, constraint
 * compilation and plan lookup each time; a batch writes each table's rows
 * with a single INSERT ... SELECT FROM unnest($1) of an array of records
 * built here, so those costs are paid once per batch.  Single rows are
 * written with INSERT ... VALUES, prepared once too.  A sink that allows it
 * (append) skips the statements when its table qualifies: its rows are
 * appended as the INSERT would write them (rowappend.c), a batch's rows
 * together.
 *
 * Batches form a stack that follows the engine's nesting (a robot's action
 * can move another item, whose robots run in a batch of their own).  Each
 * batch remembers the subtransaction level it was opened at, so that a
 * rolled-back subtransaction drops the batches it opened with their rows.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "access/xact.h"
#include "catalog/namespace.h"
#include "catalog/pg_type.h"
#include "funcapi.h"
#include "lib/stringinfo.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/regproc.h"
#include "utils/memutils.h"

#include "core/citus.h"
#include "core/rowsink.h"
#include "core/spi_util.h"

#define MAX_BATCH_DEPTH 256

/* The rows of one sink kept in a batch, as records. */
typedef struct SinkRows
{
	CrmRowSink *sink;
	int			n;
	int			cap;
	Datum	   *rows;
} SinkRows;

typedef struct SinkBatch
{
	bool		deferring;
	int			xact_level;		/* GetCurrentTransactionNestLevel() at push */
	MemoryContext cxt;
	List	   *rows;			/* SinkRows *, in order of first use */
} SinkBatch;

static SinkBatch *batches[MAX_BATCH_DEPTH];
static int	depth = 0;
static bool callbacks_registered = false;

static void
free_batch(SinkBatch *b)
{
	if (b->cxt)
		MemoryContextDelete(b->cxt);
}

void
crm_sink_pop_to(int to)
{
	while (depth > to)
	{
		SinkBatch  *b = batches[--depth];

		batches[depth] = NULL;
		free_batch(b);
	}
}

static void
sink_xact_callback(XactEvent event, void *arg)
{
	if (event == XACT_EVENT_ABORT || event == XACT_EVENT_PARALLEL_ABORT ||
		event == XACT_EVENT_COMMIT || event == XACT_EVENT_PARALLEL_COMMIT ||
		event == XACT_EVENT_PREPARE)
	{
		/* contexts hang below TopTransactionContext: forget, do not free */
		depth = 0;
	}
}

static void
sink_subxact_callback(SubXactEvent event, SubTransactionId mySubid,
					  SubTransactionId parentSubid, void *arg)
{
	if (event == SUBXACT_EVENT_ABORT_SUB)
	{
		int			level = GetCurrentTransactionNestLevel();

		while (depth > 0 && batches[depth - 1]->xact_level >= level)
		{
			SinkBatch  *b = batches[--depth];

			batches[depth] = NULL;
			free_batch(b);
		}
	}
}

void
crm_sink_push(bool deferring)
{
	SinkBatch  *b;
	MemoryContext cxt;

	if (!callbacks_registered)
	{
		RegisterXactCallback(sink_xact_callback, NULL);
		RegisterSubXactCallback(sink_subxact_callback, NULL);
		callbacks_registered = true;
	}
	if (depth >= MAX_BATCH_DEPTH)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("automation nested too deeply"),
				 errhint("Lower crm.max_depth.")));
	cxt = AllocSetContextCreate(TopTransactionContext, "crm row batch",
								ALLOCSET_DEFAULT_SIZES);
	b = MemoryContextAllocZero(cxt, sizeof(SinkBatch));
	b->deferring = deferring;
	b->xact_level = GetCurrentTransactionNestLevel();
	b->cxt = cxt;
	batches[depth++] = b;
}

void
crm_sink_pop(void)
{
	if (depth > 0)
		crm_sink_pop_to(depth - 1);
}

int
crm_sink_depth(void)
{
	return depth;
}

/*
 * The record of the sink's columns, built on first use: the rows a batch
 * keeps.
 */
static TupleDesc
sink_desc(CrmRowSink *sink)
{
	MemoryContext old;
	TupleDesc	desc;
	int			i;

	if (sink->desc != NULL)
		return sink->desc;
	Assert(sink->natts > 0 && sink->natts <= CRM_SINK_MAX_COLS);
	old = MemoryContextSwitchTo(TopMemoryContext);
	desc = CreateTemplateTupleDesc(sink->natts);
	for (i = 0; i < sink->natts; i++)
		TupleDescInitEntry(desc, i + 1, sink->columns[i], sink->types[i], -1, 0);
	sink->desc = BlessTupleDesc(desc);
	MemoryContextSwitchTo(old);
	return sink->desc;
}

/*
 * Whether Citus keeps the sink's table in shards (crm.distribute()): there
 * a row about no item carries 0 as its item's id, the distribution column,
 * which cannot be NULL (sql/install/97_distribute.sql).
 */
static bool
sink_distributed(CrmRowSink *sink)
{
	List	   *names = stringToQualifiedNameList(sink->table);

	return crm_table_is_distributed(RangeVarGetRelid(makeRangeVarFromNameList(names),
													 NoLock, true));
}

/* A column's value in the sink's statements: ref, or coalesce(ref, 0). */
static void
append_value(StringInfo sql, CrmRowSink *sink, int i, const char *ref, bool distributed)
{
	const char *col = sink->columns[i];

	if (distributed && (strcmp(col, "entity_id") == 0 || strcmp(col, "document_id") == 0))
		appendStringInfo(sql, "coalesce(%s, 0)", ref);
	else
		appendStringInfoString(sql, ref);
}

/*
 * Prepares the sink's statement on first use: the rows travel as one array
 * of records, which unnest() turns back into rows with a single copy each.
 * Only a batch that is not appended needs it (preparing it costs a new
 * backend about a million instructions).
 */
static SPIPlanPtr
sink_plan(CrmRowSink *sink)
{
	StringInfoData sql;
	Oid			argtypes[1] = {RECORDARRAYOID};
	int			i;
	bool		distributed;

	if (sink->plan != NULL)
		return sink->plan;
	(void) sink_desc(sink);
	distributed = sink_distributed(sink);

	initStringInfo(&sql);
	appendStringInfo(&sql, "INSERT INTO %s (", sink->table);
	for (i = 0; i < sink->natts; i++)
		appendStringInfo(&sql, "%s%s", i ? ", " : "", sink->columns[i]);
	appendStringInfoString(&sql, ") SELECT ");
	for (i = 0; i < sink->natts; i++)
	{
		if (i > 0)
			appendStringInfoString(&sql, ", ");
		append_value(&sql, sink, i, quote_identifier(sink->columns[i]), distributed);
	}
	appendStringInfoString(&sql, " FROM unnest($1) AS r (");
	for (i = 0; i < sink->natts; i++)
		appendStringInfo(&sql, "%s%s %s", i ? ", " : "", sink->columns[i],
						 format_type_be(sink->types[i]));
	appendStringInfoChar(&sql, ')');
	return crm_plan(&sink->plan, sql.data, 1, argtypes);
}

/*
 * The statement for a single row, the most frequent write outside batches:
 * INSERT ... VALUES with a parameter per column starts in about half the
 * instructions of the unnest() of a one-element array.
 */
static void
sink_write_one(CrmRowSink *sink, const Datum *values, const bool *nulls)
{
	char		spi_nulls[CRM_SINK_MAX_COLS];
	int			i;

	if (sink->append && crm_row_append(sink, values, nulls))
		return;
	if (sink->plan_one == NULL)
	{
		StringInfoData sql;
		bool		distributed = sink_distributed(sink);

		initStringInfo(&sql);
		appendStringInfo(&sql, "INSERT INTO %s (", sink->table);
		for (i = 0; i < sink->natts; i++)
			appendStringInfo(&sql, "%s%s", i ? ", " : "", sink->columns[i]);
		appendStringInfoString(&sql, ") VALUES (");
		for (i = 0; i < sink->natts; i++)
		{
			if (i > 0)
				appendStringInfoString(&sql, ", ");
			append_value(&sql, sink, i, psprintf("$%d", i + 1), distributed);
		}
		appendStringInfoChar(&sql, ')');
		crm_plan(&sink->plan_one, sql.data, sink->natts, sink->types);
	}
	for (i = 0; i < sink->natts; i++)
		spi_nulls[i] = nulls[i] ? 'n' : ' ';
	crm_exec(sink->plan_one, values, spi_nulls, false, 0);
}

void
crm_sink_write(CrmRowSink *sink, const Datum *values, const bool *nulls)
{
	sink_write_one(sink, values, nulls);
}

/*
 * Writes n rows (records of the sink's type): an append sink's appended
 * together when its table qualifies, else one INSERT (a single row: its
 * INSERT ... VALUES).
 */
static void
sink_write(CrmRowSink *sink, int n, Datum *rows)
{
	Datum		arg;

	if (sink->append && n > 1 && crm_rows_append(sink, n, rows))
		return;
	if (n == 1)
	{
		Datum		values[CRM_SINK_MAX_COLS];
		bool		nulls[CRM_SINK_MAX_COLS];
		HeapTupleHeader rec = DatumGetHeapTupleHeader(rows[0]);
		HeapTupleData tup;

		tup.t_len = HeapTupleHeaderGetDatumLength(rec);
		ItemPointerSetInvalid(&tup.t_self);
		tup.t_tableOid = InvalidOid;
		tup.t_data = rec;
		heap_deform_tuple(&tup, sink->desc, values, nulls);
		sink_write_one(sink, values, nulls);
		return;
	}
	arg = PointerGetDatum(construct_array(rows, n, RECORDOID, -1, false, TYPALIGN_DOUBLE));
	crm_exec(sink_plan(sink), &arg, NULL, false, 0);
}

/* A row as a record of the sink's blessed type. */
static Datum
sink_row(CrmRowSink *sink, const Datum *values, const bool *nulls)
{
	HeapTuple	tup = heap_form_tuple(sink->desc, (Datum *) values, (bool *) nulls);

	return HeapTupleGetDatum(tup);
}

Datum
crm_sink_record(CrmRowSink *sink, const Datum *values, const bool *nulls)
{
	MemoryContext cxt = CurrentMemoryContext;

	/* preparing the plan (SPI) leaves another context current */
	(void) sink_plan(sink);
	MemoryContextSwitchTo(cxt);
	return sink_row(sink, values, nulls);
}

void
crm_sink_write_records(CrmRowSink *sink, int n, Datum *rows)
{
	if (n > 0)
		sink_write(sink, n, rows);
}

static SinkRows *
batch_rows(SinkBatch *b, CrmRowSink *sink)
{
	ListCell   *lc;
	SinkRows   *r;
	MemoryContext old;

	foreach(lc, b->rows)
	{
		r = (SinkRows *) lfirst(lc);
		if (r->sink == sink)
			return r;
	}
	old = MemoryContextSwitchTo(b->cxt);
	r = palloc0(sizeof(SinkRows));
	r->sink = sink;
	b->rows = lappend(b->rows, r);
	MemoryContextSwitchTo(old);
	return r;
}

void
crm_sink_add(CrmRowSink *sink, const Datum *values, const bool *nulls)
{
	SinkBatch  *b = depth > 0 ? batches[depth - 1] : NULL;
	SinkRows   *r;
	MemoryContext old;

	(void) sink_desc(sink);
	if (b == NULL || !b->deferring)
	{
		sink_write_one(sink, values, nulls);
		return;
	}

	r = batch_rows(b, sink);
	old = MemoryContextSwitchTo(b->cxt);
	if (r->n == r->cap)
	{
		r->cap = r->cap ? r->cap * 2 : 64;
		r->rows = r->rows ? repalloc(r->rows, sizeof(Datum) * r->cap)
			: palloc(sizeof(Datum) * r->cap);
	}
	r->rows[r->n++] = sink_row(sink, values, nulls);
	MemoryContextSwitchTo(old);
}

/*
 * Writes the rows of the top batch (one INSERT per sink) and pops it.  The
 * batch leaves the stack first, so that rows added while writing (by
 * triggers on the tables written) go to the batch below it.
 */
void
crm_sink_flush(void)
{
	SinkBatch  *b;

	if (depth == 0)
		return;
	b = batches[--depth];
	batches[depth] = NULL;
	PG_TRY();
	{
		ListCell   *lc;

		foreach(lc, b->rows)
		{
			SinkRows   *r = (SinkRows *) lfirst(lc);

			if (r->n > 0)
				sink_write(r->sink, r->n, r->rows);
		}
	}
	PG_FINALLY();
	{
		free_batch(b);
	}
	PG_END_TRY();
}
