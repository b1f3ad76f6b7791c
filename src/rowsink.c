/*-------------------------------------------------------------------------
 *
 * rowsink.c
 *	  Rows the engine writes, one at a time or gathered into batches.
 *
 * Moving thousands of items into a stage writes thousands of comments and
 * log rows.  One INSERT per row pays the executor's start-up, constraint
 * compilation and plan lookup each time; a batch writes each table's rows
 * with a single INSERT ... SELECT FROM unnest($1, $2, ...) of arrays built
 * here, so those costs are paid once per batch.  The same prepared
 * statement, with one-element arrays, writes single rows.
 *
 * Batches form a stack that follows the engine's nesting (a robot's action
 * can move another item, whose robots run in a batch of their own).  Each
 * batch remembers the subtransaction level it was opened at, so that a
 * rolled-back subtransaction drops the batches it opened with their rows.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "catalog/pg_type.h"
#include "lib/stringinfo.h"
#include "utils/array.h"
#include "utils/datum.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"

#include "rowsink.h"
#include "spi_util.h"

#define MAX_BATCH_DEPTH 256

/* The rows of one sink kept in a batch, column by column. */
typedef struct SinkRows
{
	CrmRowSink *sink;
	int			n;
	int			cap;
	Datum	   *values[CRM_SINK_MAX_COLS];
	bool	   *nulls[CRM_SINK_MAX_COLS];
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

/* Prepares the sink's statement on first use. */
static SPIPlanPtr
sink_plan(CrmRowSink *sink)
{
	StringInfoData sql;
	Oid			argtypes[CRM_SINK_MAX_COLS];
	int			i;

	if (sink->plan != NULL)
		return sink->plan;
	Assert(sink->natts > 0 && sink->natts <= CRM_SINK_MAX_COLS);
	initStringInfo(&sql);
	appendStringInfo(&sql, "INSERT INTO %s (", sink->table);
	for (i = 0; i < sink->natts; i++)
		appendStringInfo(&sql, "%s%s", i ? ", " : "", sink->columns[i]);
	appendStringInfoString(&sql, ") SELECT * FROM unnest(");
	for (i = 0; i < sink->natts; i++)
	{
		appendStringInfo(&sql, "%s$%d", i ? ", " : "", i + 1);
		argtypes[i] = get_array_type(sink->types[i]);
		if (!OidIsValid(argtypes[i]))
			elog(ERROR, "type %u has no array type", sink->types[i]);
		get_typlenbyvalalign(sink->types[i], &sink->typlen[i],
							 &sink->typbyval[i], &sink->typalign[i]);
	}
	appendStringInfoChar(&sql, ')');
	return crm_plan(&sink->plan, sql.data, sink->natts, argtypes);
}

/* Executes the sink's INSERT for n rows given column by column. */
static void
sink_write(CrmRowSink *sink, int n, Datum **values, bool **nulls)
{
	SPIPlanPtr	plan = sink_plan(sink);
	Datum		args[CRM_SINK_MAX_COLS];
	int			dims[1] = {n};
	int			lbs[1] = {1};
	int			i;

	for (i = 0; i < sink->natts; i++)
		args[i] = PointerGetDatum(construct_md_array(values[i], nulls[i], 1, dims, lbs,
													 sink->types[i], sink->typlen[i],
													 sink->typbyval[i], sink->typalign[i]));
	crm_exec(plan, args, NULL, false, 0);
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
	int			i;

	(void) sink_plan(sink);
	if (b == NULL || !b->deferring)
	{
		Datum	   *v[CRM_SINK_MAX_COLS];
		bool	   *nl[CRM_SINK_MAX_COLS];

		for (i = 0; i < sink->natts; i++)
		{
			v[i] = (Datum *) &values[i];
			nl[i] = (bool *) &nulls[i];
		}
		sink_write(sink, 1, v, nl);
		return;
	}

	r = batch_rows(b, sink);
	old = MemoryContextSwitchTo(b->cxt);
	if (r->n == r->cap)
	{
		int			cap = r->cap ? r->cap * 2 : 64;

		for (i = 0; i < sink->natts; i++)
		{
			r->values[i] = r->cap ? repalloc(r->values[i], sizeof(Datum) * cap)
				: palloc(sizeof(Datum) * cap);
			r->nulls[i] = r->cap ? repalloc(r->nulls[i], sizeof(bool) * cap)
				: palloc(sizeof(bool) * cap);
		}
		r->cap = cap;
	}
	for (i = 0; i < sink->natts; i++)
	{
		r->nulls[i][r->n] = nulls[i];
		r->values[i][r->n] = nulls[i] ? (Datum) 0 :
			datumCopy(values[i], sink->typbyval[i], sink->typlen[i]);
	}
	r->n++;
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
				sink_write(r->sink, r->n, r->values, r->nulls);
		}
	}
	PG_FINALLY();
	{
		free_batch(b);
	}
	PG_END_TRY();
}
