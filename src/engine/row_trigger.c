/*-------------------------------------------------------------------------
 *
 * row_trigger.c
 *	  Row triggers on the item tables.
 *
 * crm_item_before (BEFORE INSERT OR UPDATE, FOR EACH ROW) keeps an item
 * consistent whatever the application writes: a new item without a stage
 * lands in the first stage of its entity type's default pipeline, a stage must
 * belong to the item's entity type, and updated_at, stage_changed_at and the
 * authors follow the change.  It reads stages from the rule cache, never
 * from the tables, so a write that changes no stage costs a few field copies.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "access/tupmacs.h"
#include "access/xact.h"
#include "commands/trigger.h"
#include "fmgr.h"
#include "utils/builtins.h"
#include "utils/rel.h"
#include "utils/timestamp.h"

#include "core/guc.h"
#include "engine/due_dates.h"
#include "core/rule_cache.h"
#include "engine/hooks.h"

PG_FUNCTION_INFO_V1(crm_item_before);

#define MAX_SET_COLS 6

/*
 * The entity type of the row: the trigger's argument for the built-in
 * tables, the entity_type column for smart-process items.
 */
static char *
row_entity_type(TriggerData *td, const CrmItemColumns *cols, HeapTuple tuple)
{
	bool		isnull;
	Datum		d;

	if (td->tg_trigger->tgnargs > 0)
		return td->tg_trigger->tgargs[0];
	if (cols->entity_type == InvalidAttrNumber)
		elog(ERROR, "crm.item_before() needs an entity type argument on table \"%s\"",
			 RelationGetRelationName(td->tg_relation));
	d = heap_getattr(tuple, cols->entity_type,
					 RelationGetDescr(td->tg_relation), &isnull);
	if (isnull)
		ereport(ERROR,
				(errcode(ERRCODE_NOT_NULL_VIOLATION),
				 errmsg("entity_type of a smart-process item must not be null"),
				 errhint("Use the code given to crm.create_smart_process.")));
	return TextDatumGetCString(d);
}

static void
check_stage(int64 stage_id, const char *entity_type, const char *table)
{
	const CrmStageInfo *st = crm_stage_info(stage_id);

	if (st == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_FOREIGN_KEY_VIOLATION),
				 errmsg("stage %lld does not exist", (long long) stage_id),
				 errhint("Find a stage id with crm.stage('%s', code).", entity_type)));
	if (strcmp(st->entity_type, entity_type) != 0)
		ereport(ERROR,
				(errcode(ERRCODE_FOREIGN_KEY_VIOLATION),
				 errmsg("stage %lld belongs to %s, not %s",
						(long long) stage_id, st->entity_type, entity_type),
				 errdetail("Items of crm.%s can only be in stages of %s pipelines.",
						   table, entity_type),
				 errhint("Find a stage id with crm.stage('%s', code).", entity_type)));
}

/*
 * The byte offset of a fixed-width, by-value column that is not null in
 * the tuple, or -1.
 */
static long
fixed_column_offset(HeapTuple tuple, TupleDesc desc, AttrNumber attnum)
{
	HeapTupleHeader th = tuple->t_data;
	bool		hasnulls = HeapTupleHasNulls(tuple);
	char	   *tp = (char *) th + th->t_hoff;
	long		off = 0;
	int			i;
	Form_pg_attribute target = TupleDescAttr(desc, attnum - 1);

	if (!target->attbyval || target->attlen <= 0 ||
		attnum > HeapTupleHeaderGetNatts(th) ||
		(hasnulls && att_isnull(attnum - 1, th->t_bits)))
		return -1;
	for (i = 0; i < attnum; i++)
	{
		Form_pg_attribute att = TupleDescAttr(desc, i);

		if (hasnulls && att_isnull(i, th->t_bits))
			continue;
		off = att_align_pointer(off, att->attalign, att->attlen, tp + off);
		if (i == attnum - 1)
			return off;
		off = att_addlength_pointer(off, att->attlen, tp + off);
	}
	return -1;
}

/*
 * The row with some columns set.  Most writes only move timestamps and
 * authors, fixed-width columns already present in the row: a copy of the
 * row with those bytes overwritten is a fraction of the cost of taking the
 * row apart and forming it again, which remains the way for anything else.
 */
static HeapTuple
set_columns(HeapTuple tuple, TupleDesc desc, int n, int *colnums,
			Datum *values, bool *nulls)
{
	long		offsets[MAX_SET_COLS];
	HeapTuple	copy;
	int			i;

	for (i = 0; i < n; i++)
	{
		offsets[i] = nulls[i] ? -1 : fixed_column_offset(tuple, desc, colnums[i]);
		if (offsets[i] < 0)
			return heap_modify_tuple_by_cols(tuple, desc, n, colnums, values, nulls);
	}
	copy = heap_copytuple(tuple);
	for (i = 0; i < n; i++)
	{
		char	   *tp = (char *) copy->t_data + copy->t_data->t_hoff;

		store_att_byval(tp + offsets[i], values[i], TupleDescAttr(desc, colnums[i] - 1)->attlen);
	}
	return copy;
}

Datum
crm_item_before(PG_FUNCTION_ARGS)
{
	TriggerData *td = (TriggerData *) fcinfo->context;
	Relation	rel;
	TupleDesc	desc;
	CrmItemColumns colsbuf;
	const CrmItemColumns *cols = &colsbuf;
	HeapTuple	newtuple;
	bool		is_insert;
	int			ncols = 0;
	int			colnums[MAX_SET_COLS];
	Datum		values[MAX_SET_COLS];
	bool		nulls[MAX_SET_COLS];
	TimestampTz now = GetCurrentTransactionStartTimestamp();

	if (!CALLED_AS_TRIGGER(fcinfo) || !TRIGGER_FIRED_BEFORE(td->tg_event) ||
		!TRIGGER_FIRED_FOR_ROW(td->tg_event))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("crm.item_before() must be a BEFORE ROW trigger")));

	rel = td->tg_relation;
	desc = RelationGetDescr(rel);
	/*
	 * A copy: the hooks below run SQL, which may accept invalidations that
	 * free the cache's entry.
	 */
	colsbuf = *crm_item_columns(rel);
	is_insert = TRIGGER_FIRED_BY_INSERT(td->tg_event);
	newtuple = is_insert ? td->tg_trigtuple : td->tg_newtuple;

	if (cols->stage_id != InvalidAttrNumber)
	{
		bool		isnull;
		Datum		stage = heap_getattr(newtuple, cols->stage_id, desc, &isnull);
		bool		stage_changed;
		char	   *entity_type = row_entity_type(td, cols, newtuple);

		if (is_insert)
		{
			stage_changed = true;
			if (isnull)
			{
				int64		def = crm_default_stage(entity_type);

				if (def == 0)
					ereport(ERROR,
							(errcode(ERRCODE_NOT_NULL_VIOLATION),
							 errmsg("entity type \"%s\" has no default stage", entity_type),
							 errhint("Add a stage to its default pipeline with crm.add_stage, or give stage_id.")));
				colnums[ncols] = cols->stage_id;
				values[ncols] = Int64GetDatum(def);
				nulls[ncols] = false;
				ncols++;
			}
			else
				check_stage(DatumGetInt64(stage), entity_type,
							RelationGetRelationName(rel));
		}
		else
		{
			bool		oldnull;
			Datum		oldstage = heap_getattr(td->tg_trigtuple, cols->stage_id,
												desc, &oldnull);

			if (cols->entity_type != InvalidAttrNumber)
			{
				char	   *old_type = row_entity_type(td, cols, td->tg_trigtuple);

				if (strcmp(old_type, entity_type) != 0)
					ereport(ERROR,
							(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
							 errmsg("cannot change the entity type of item from \"%s\" to \"%s\"",
									old_type, entity_type),
							 errhint("Create a new item of the other type instead.")));
			}
			stage_changed = isnull || oldnull ||
				DatumGetInt64(stage) != DatumGetInt64(oldstage);
			if (stage_changed && !isnull)
				check_stage(DatumGetInt64(stage), entity_type,
							RelationGetRelationName(rel));
			else if (!stage_changed && !isnull)
			{
				/* field_changed / responsible_changed triggers may move it */
				int64		to = crm_move_hooks == NULL ? 0 :
					crm_move_hooks->before_update(rel, entity_type,
												  td->tg_trigtuple, newtuple,
												  cols->id, DatumGetInt64(stage));

				if (to != 0)
				{
					colnums[ncols] = cols->stage_id;
					values[ncols] = Int64GetDatum(to);
					nulls[ncols] = false;
					ncols++;
					stage_changed = true;
				}
				else if (cols->id != InvalidAttrNumber)
				{
					/* delays tied to a date field follow it */
					bool		idnull;
					Datum		id = heap_getattr(newtuple, cols->id, desc, &idnull);

					if (!idnull)
						crm_due_dates_follow(entity_type, DatumGetInt64(id),
											 td->tg_trigtuple, newtuple, desc);
				}
			}
		}

		if (stage_changed && !is_insert && cols->stage_changed_at != InvalidAttrNumber)
		{
			colnums[ncols] = cols->stage_changed_at;
			values[ncols] = TimestampTzGetDatum(now);
			nulls[ncols] = false;
			ncols++;
		}
	}

	if (!is_insert && cols->updated_at != InvalidAttrNumber)
	{
		colnums[ncols] = cols->updated_at;
		values[ncols] = TimestampTzGetDatum(now);
		nulls[ncols] = false;
		ncols++;
	}

	/* The acting CRM user (crm.user_id) is recorded as author. */
	if (crm_acting_user_id > 0)
	{
		if (is_insert && cols->created_by != InvalidAttrNumber)
		{
			bool		isnull;

			(void) heap_getattr(newtuple, cols->created_by, desc, &isnull);
			if (isnull)
			{
				colnums[ncols] = cols->created_by;
				values[ncols] = Int64GetDatum((int64) crm_acting_user_id);
				nulls[ncols] = false;
				ncols++;
			}
		}
		if (cols->updated_by != InvalidAttrNumber)
		{
			colnums[ncols] = cols->updated_by;
			values[ncols] = Int64GetDatum((int64) crm_acting_user_id);
			nulls[ncols] = false;
			ncols++;
		}
	}

	if (ncols > 0)
		newtuple = set_columns(newtuple, desc, ncols, colnums, values, nulls);

	/* business processes that auto-start note the row (engine/hooks.h) */
	if (crm_write_hooks != NULL)
		crm_write_hooks->row_written(rel, row_entity_type(td, cols, newtuple), is_insert,
									 is_insert ? NULL : td->tg_trigtuple, newtuple, cols->id);
	PG_RETURN_POINTER(newtuple);
}
