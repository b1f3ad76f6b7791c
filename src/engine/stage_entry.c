/*-------------------------------------------------------------------------
 *
 * stage_entry.c
 *	  Gathering a statement's stage changes and running their robots in
 *	  batches.
 *
 * crm_item_after (AFTER INSERT, AFTER UPDATE when stage_id changes, AFTER
 * DELETE, FOR EACH ROW) only notes the change: the item, the stage it
 * entered, a copy of its row.  crm_item_after_statement (AFTER INSERT OR
 * UPDATE OR DELETE, FOR EACH STATEMENT) runs what the statement noted, and a
 * statement that changes many rows runs them every CHUNK_ITEMS rows, so
 * memory stays flat however many rows move.  PostgreSQL queues a
 * statement's AFTER STATEMENT event after its AFTER ROW events, so the
 * statement trigger always comes last.
 *
 * A batch runs optimistically: in one subtransaction, with the rows the
 * robots write gathered into one INSERT per table (rowsink.c).  If anything
 * in it fails, the subtransaction is rolled back and the batch replayed
 * carefully, each robot in a subtransaction of its own, so that the failing
 * robot is logged as failed and the others do their work; the rest of the
 * statement then runs carefully too.
 *
 * Robots may write items, whose statements note and run changes of their
 * own: the notes form a stack of frames, one per statement being gathered
 * (core/frames.h: a frame belongs to the subtransaction level it was
 * opened at; a rolled-back subtransaction drops its frames).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "access/xact.h"
#include "commands/trigger.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/resowner.h"

#include "engine/robots.h"
#include "core/scope.h"
#include "core/rowsink.h"
#include "core/rule_cache.h"
#include "core/frames.h"
#include "engine/hooks.h"

PG_FUNCTION_INFO_V1(crm_item_after);
PG_FUNCTION_INFO_V1(crm_item_after_statement);

/* A batch runs when a statement has noted this many rows, or bytes of rows. */
#define CHUNK_ITEMS 1000
#define CHUNK_BYTES (8 * 1024 * 1024)

typedef struct RelDesc
{
	Oid			relid;
	TupleDesc	desc;
} RelDesc;

typedef struct Frame
{
	CrmFrame	base;			/* its memory (the frame and its descriptors),
								 * level, busy, and n: its entries */
	MemoryContext rows_cxt;		/* its entries and their rows */
	bool		careful;		/* a batch failed: the rest run carefully */
	int			cap;
	Size		bytes;
	CrmStageEntry *entries;
	List	   *descs;			/* RelDesc *: a copy per relation */
} Frame;

static void
init_frame(CrmFrame *base)
{
	((Frame *) base)->rows_cxt = AllocSetContextCreate(base->cxt, "crm stage change rows",
														ALLOCSET_DEFAULT_SIZES);
}

static CrmFrameStack frames = {
	.name = "crm stage changes",
	.frame_size = sizeof(Frame),
	.init = init_frame,
	.unrun_detail = "The statement-level trigger \"item_batch\" of an item table did not fire.",
	.unrun_hint = "Do not disable the item tables' item_batch triggers.",
};

/* The frame this statement's rows go to: the top one if it is gathering. */
static Frame *
current_frame(bool create)
{
	return (Frame *) crm_frame_current(&frames, create);
}

static TupleDesc
frame_desc(Frame *f, Relation rel)
{
	ListCell   *lc;
	RelDesc    *rd;
	MemoryContext old;

	foreach(lc, f->descs)
	{
		rd = (RelDesc *) lfirst(lc);
		if (rd->relid == RelationGetRelid(rel))
			return rd->desc;
	}
	old = MemoryContextSwitchTo(f->base.cxt);
	rd = palloc(sizeof(RelDesc));
	rd->relid = RelationGetRelid(rel);
	rd->desc = CreateTupleDescCopy(RelationGetDescr(rel));
	f->descs = lappend(f->descs, rd);
	MemoryContextSwitchTo(old);
	return rd->desc;
}

/*
 * One optimistic run: a subtransaction, rows gathered per table.  Returns
 * false, with everything of the batch rolled back, when anything failed.
 */
static bool
run_optimistic(const CrmStageEntry *entries, int n)
{
	MemoryContext oldcxt = CurrentMemoryContext;
	ResourceOwner oldowner = CurrentResourceOwner;
	int			lineage = crm_lineage_depth();
	int			sinks = crm_sink_depth();
	bool		ok = true;

	BeginInternalSubTransaction(NULL);
	MemoryContextSwitchTo(oldcxt);
	PG_TRY();
	{
		crm_sink_push(true);
		crm_robots_run_entries(entries, n, false);
		crm_sink_flush();
		ReleaseCurrentSubTransaction();
		MemoryContextSwitchTo(oldcxt);
		CurrentResourceOwner = oldowner;
	}
	PG_CATCH();
	{
		ErrorData  *edata;

		MemoryContextSwitchTo(oldcxt);
		edata = CopyErrorData();
		FlushErrorState();
		RollbackAndReleaseCurrentSubTransaction();
		MemoryContextSwitchTo(oldcxt);
		CurrentResourceOwner = oldowner;
		crm_lineage_restore(lineage);
		crm_sink_pop_to(sinks);
		if (edata->sqlerrcode == ERRCODE_QUERY_CANCELED)
			ReThrowError(edata);
		FreeErrorData(edata);
		ok = false;
	}
	PG_END_TRY();
	return ok;
}

/* Runs the frame's entries and empties it. */
static void
run_frame(Frame *f)
{
	CrmScope	scope;

	if (f->base.n == 0)
		return;
	f->base.busy = true;
	crm_scope_enter(&scope, CRM_SCOPE_SPI);

	if (!f->careful && !run_optimistic(f->entries, f->base.n))
		f->careful = true;
	if (f->careful)
	{
		/* rows are written at once, even inside an outer gathering batch */
		crm_sink_push(false);
		crm_robots_run_entries(f->entries, f->base.n, true);
		crm_sink_pop();
	}

	crm_scope_leave(&scope);

	/* empty the frame for the statement's next rows */
	MemoryContextReset(f->rows_cxt);
	f->entries = NULL;
	f->base.n = 0;
	f->cap = 0;
	f->bytes = 0;
	f->base.busy = false;
}

static int64
tuple_int64(HeapTuple tuple, TupleDesc desc, AttrNumber att, bool *isnull)
{
	Datum		d = heap_getattr(tuple, att, desc, isnull);

	return *isnull ? 0 : DatumGetInt64(d);
}

Datum
crm_item_after(PG_FUNCTION_ARGS)
{
	TriggerData *td = (TriggerData *) fcinfo->context;
	Relation	rel;
	TupleDesc	desc;
	CrmItemColumns colsbuf;
	const CrmItemColumns *cols = &colsbuf;
	HeapTuple	tuple;
	Frame	   *f;
	CrmStageEntry *e;
	MemoryContext old;
	bool		isnull;

	if (!CALLED_AS_TRIGGER(fcinfo) || !TRIGGER_FIRED_AFTER(td->tg_event) ||
		!TRIGGER_FIRED_FOR_ROW(td->tg_event))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("crm.item_after() must be an AFTER ROW trigger")));

	rel = td->tg_relation;
	desc = RelationGetDescr(rel);
	colsbuf = *crm_item_columns(rel);	/* a copy, as in row_trigger.c */
	if (cols->id == InvalidAttrNumber || cols->stage_id == InvalidAttrNumber)
		PG_RETURN_POINTER(NULL);
	tuple = TRIGGER_FIRED_BY_UPDATE(td->tg_event) ? td->tg_newtuple : td->tg_trigtuple;

	f = current_frame(true);
	old = MemoryContextSwitchTo(f->rows_cxt);
	if (f->base.n == f->cap)
	{
		f->cap = f->cap ? f->cap * 2 : 16;
		f->entries = f->entries ? repalloc(f->entries, sizeof(CrmStageEntry) * f->cap)
			: palloc(sizeof(CrmStageEntry) * f->cap);
	}
	e = &f->entries[f->base.n];
	memset(e, 0, sizeof(*e));
	e->item_id = tuple_int64(tuple, desc, cols->id, &isnull);
	if (td->tg_trigger->tgnargs > 0)
		e->entity_type = pstrdup(td->tg_trigger->tgargs[0]);
	else
		e->entity_type = TextDatumGetCString(heap_getattr(tuple, cols->entity_type, desc, &isnull));
	e->left = !TRIGGER_FIRED_BY_INSERT(td->tg_event);
	if (!TRIGGER_FIRED_BY_DELETE(td->tg_event))
	{
		e->stage_id = tuple_int64(tuple, desc, cols->stage_id, &isnull);
		e->trigger_move = crm_move_hooks == NULL ? NULL :
			crm_move_hooks->take_move(e->entity_type, e->item_id, e->stage_id);
		e->tuple = heap_copytuple(tuple);
		e->desc = frame_desc(f, rel);
		f->bytes += tuple->t_len;
	}
	f->base.n++;
	MemoryContextSwitchTo(old);

	if (f->base.n >= CHUNK_ITEMS || f->bytes >= CHUNK_BYTES)
		run_frame(f);
	PG_RETURN_POINTER(NULL);
}

/* The statement is done: run what it noted. */
Datum
crm_item_after_statement(PG_FUNCTION_ARGS)
{
	TriggerData *td = (TriggerData *) fcinfo->context;
	Frame	   *f;

	if (!CALLED_AS_TRIGGER(fcinfo) || !TRIGGER_FIRED_AFTER(td->tg_event) ||
		!TRIGGER_FIRED_FOR_STATEMENT(td->tg_event))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("crm.item_after_statement() must be an AFTER STATEMENT trigger")));

	f = current_frame(false);
	if (f != NULL)
	{
		run_frame(f);
		Assert(frames.frames[frames.nframes - 1] == &f->base);
		crm_frame_pop(&frames, &f->base);
	}
	/* then what a layer above gathered for the statement (auto-start) */
	if (crm_write_hooks != NULL)
		crm_write_hooks->statement_end();
	PG_RETURN_POINTER(NULL);
}
