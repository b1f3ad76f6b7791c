/*-------------------------------------------------------------------------
 *
 * triggers.c
 *	  Running CRM triggers: an event happened for an item, which trigger (if
 *	  any) moves it, and to which stage (SPEC §4).
 *
 * The triggers of an entity type are loaded once into the rule cache
 * (crm_triggers_load), grouped by event in stage order, with a bitmask of
 * the events that have any: a source whose event nobody listens to costs a
 * hash lookup and no SQL.
 *
 * Firing an event for an item (crm_fire_event) considers the active
 * triggers of the event on the stages of the item's pipeline whose key
 * parameter fits (a form code, a URL, an application's code), in stage
 * order.  The first whose condition holds (read on the item and the event's
 * payload, {=Event:key}) decides:
 *
 *	  - its stage is the item's stage: not moved (already_there);
 *	  - its stage comes before the item's and it does not allow backwards
 *		moves: skipped, the next trigger may still apply (backwards is
 *		logged when none does);
 *	  - else the item moves there (fired): the stage change is recorded in
 *		crm.history on behalf of on_behalf_of or the responsible user, and
 *		the UPDATE runs the new stage's robots (robots.c).
 *
 * When no trigger's condition holds, condition_false is logged.  One log row
 * per event and item (crm.robot_log, kind trigger) lists every trigger
 * checked; it goes through a row sink that appends it without an INSERT
 * statement (rowappend.c), since most events are decided and logged one per
 * statement.  The event's payload is built as jsonb only when a condition
 * reads it; otherwise the source row goes straight into the log row.  The decision and the move run in a subtransaction: an error (a
 * condition that divides by zero, a failing UPDATE) is logged as failed and
 * never aborts the statement that caused the event.
 *
 * Field and responsible changes are detected by the items' BEFORE ROW
 * trigger (crm_triggers_before_update), which sets the new stage in the row
 * itself; the AFTER ROW trigger that then runs the stage's robots completes
 * the move (crm_triggers_claim_move).  A trigger is on the lineage (kind 't',
 * robots.c) while the robots of the stage it moved the item to run, so a
 * loop through robots and triggers stops with loop_stopped.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/genam.h"
#include "access/htup_details.h"
#include "access/stratnum.h"
#include "access/table.h"
#include "access/xact.h"
#include "catalog/namespace.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/fmgroids.h"
#include "utils/jsonb.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/resowner.h"
#include "utils/snapmgr.h"

#include "robots.h"
#include "rowsink.h"
#include "rule_cache.h"
#include "spi_util.h"
#include "triggers.h"

/* ---------- loading ---------- */

static char *
jsonb_string_key(Jsonb *j, const char *key)
{
	JsonbValue *v = getKeyJsonValueFromContainer(&j->root, key, strlen(key), NULL);

	if (v == NULL || v->type != jbvString)
		return NULL;
	return pnstrdup(v->val.string.val, v->val.string.len);
}

/* Index of a watched field, added when new (names compare without case). */
static int
watched_index(List **names, const char *field)
{
	ListCell   *lc;
	int			i = 0;

	foreach(lc, *names)
	{
		if (pg_strcasecmp((char *) lfirst(lc), field) == 0)
			return i;
		i++;
	}
	*names = lappend(*names, pstrdup(field));
	return i;
}

static void
load_fields(CrmTrigger *t, Jsonb *params, List **names)
{
	JsonbValue *v = getKeyJsonValueFromContainer(&params->root, "fields", 6, NULL);
	JsonbIterator *it;
	JsonbValue	e;
	JsonbIteratorToken tok;

	if (v == NULL || v->type != jbvBinary)
		return;
	t->fields = palloc(sizeof(int) * JsonContainerSize(v->val.binary.data));
	it = JsonbIteratorInit(v->val.binary.data);
	while ((tok = JsonbIteratorNext(&it, &e, true)) != WJB_DONE)
		if (tok == WJB_ELEM && e.type == jbvString)
			t->fields[t->nfields++] =
				watched_index(names, pnstrdup(e.val.string.val, e.val.string.len));
}

/*
 * Loads the active triggers of an entity type, compiled into the current
 * memory context (the rule cache's).
 */
CrmEntityTriggers *
crm_triggers_load(const char *entity_type)
{
	static SPIPlanPtr plan = NULL;
	MemoryContext cache_cxt = CurrentMemoryContext;
	CrmEntityTriggers *ets = palloc0(sizeof(CrmEntityTriggers));
	List	   *names = NIL;
	Oid			types[1] = {TEXTOID};
	Datum		vals[1];
	ListCell   *lc;
	uint64		i;
	int			k;

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	vals[0] = CStringGetTextDatum(entity_type);
	crm_exec(crm_plan(&plan,
					  "SELECT t.id, t.stage_id, s.pipeline_id, s.sort, t.name, t.event, t.params,"
					  "       t.condition, t.allow_backwards, t.on_behalf_of"
					  "  FROM crm.trigger t JOIN crm.stage s ON s.id = t.stage_id"
					  "  JOIN crm.pipeline p ON p.id = s.pipeline_id"
					  " WHERE p.entity_type = $1 AND t.active"
					  " ORDER BY s.sort, s.id, t.sort, t.id",
					  1, types), vals, NULL, true, 0);
	for (i = 0; i < SPI_processed; i++)
	{
		HeapTuple	tup = SPI_tuptable->vals[i];
		TupleDesc	desc = SPI_tuptable->tupdesc;
		bool		isnull;
		Datum		d;
		MemoryContext old = MemoryContextSwitchTo(cache_cxt);
		CrmTrigger *t = palloc0(sizeof(CrmTrigger));
		char	   *event = TextDatumGetCString(SPI_getbinval(tup, desc, 6, &isnull));
		Jsonb	   *params;

		t->event = crm_event_lookup(event);
		if (t->event == NULL)
		{
			elog(WARNING, "trigger %lld has unknown event \"%s\" and is ignored",
				 (long long) DatumGetInt64(SPI_getbinval(tup, desc, 1, &isnull)), event);
			MemoryContextSwitchTo(old);
			continue;
		}
		t->id = DatumGetInt64(SPI_getbinval(tup, desc, 1, &isnull));
		t->stage_id = DatumGetInt64(SPI_getbinval(tup, desc, 2, &isnull));
		t->pipeline_id = DatumGetInt64(SPI_getbinval(tup, desc, 3, &isnull));
		t->stage_sort = DatumGetInt32(SPI_getbinval(tup, desc, 4, &isnull));
		d = SPI_getbinval(tup, desc, 5, &isnull);
		t->name = isnull ? psprintf("trigger %lld", (long long) t->id) : TextDatumGetCString(d);
		params = DatumGetJsonbPCopy(SPI_getbinval(tup, desc, 7, &isnull));
		if (t->event->key_param)
			t->key = jsonb_string_key(params, t->event->key_param);
		if (t->event->id == CRM_EV_FIELD_CHANGED)
			load_fields(t, params, &names);
		d = SPI_getbinval(tup, desc, 8, &isnull);
		if (!isnull)
		{
			t->condition = crm_expr_compile_condition(DatumGetJsonbPCopy(d), "condition");
			t->reads_event = crm_expr_refs(t->condition, "Event") != NIL;
		}
		t->allow_backwards = DatumGetBool(SPI_getbinval(tup, desc, 9, &isnull));
		d = SPI_getbinval(tup, desc, 10, &isnull);
		t->on_behalf_of = isnull ? 0 : DatumGetInt64(d);

		ets->by_event[t->event->id] = lappend(ets->by_event[t->event->id], t);
		ets->events |= CRM_EVENT_BIT(t->event->id);
		MemoryContextSwitchTo(old);
	}
	SPI_finish();

	/* the distinct watched fields, each read once per row */
	ets->nwatched = list_length(names);
	ets->watched_names = palloc(sizeof(char *) * Max(ets->nwatched, 1));
	ets->watched = palloc(sizeof(CrmExpr *) * Max(ets->nwatched, 1));
	k = 0;
	foreach(lc, names)
	{
		ets->watched_names[k] = (char *) lfirst(lc);
		ets->watched[k] = crm_expr_compile_text(psprintf("{{%s}}", ets->watched_names[k]),
												"params.fields");
		k++;
	}
	ets->responsible = crm_expr_compile_text("{{responsible_id}}", "responsible_id");
	return ets;
}

/* ---------- items ---------- */

/* Prepared statements on one item table. */
typedef struct TablePlans
{
	char		table[CRM_NAME_LEN];
	SPIPlanPtr	lock;			/* the row, locked for a move */
	SPIPlanPtr	move;
} TablePlans;

#define MAX_ITEM_TABLES 16
static TablePlans table_plans[MAX_ITEM_TABLES];
static int	n_table_plans = 0;

static Oid
item_relid(const char *entity_type)
{
	return get_relname_relid(crm_entity_table(entity_type), get_namespace_oid("crm", false));
}

static TablePlans *
plans_for(const char *entity_type)
{
	char	   *table = crm_entity_table(entity_type);
	const char *qualified = quote_qualified_identifier("crm", table);
	Oid			types[2] = {INT8OID, TEXTOID};
	TablePlans *tp = NULL;
	const char *where;
	int			i;

	for (i = 0; i < n_table_plans; i++)
		if (strcmp(table_plans[i].table, table) == 0)
			return &table_plans[i];
	if (n_table_plans >= MAX_ITEM_TABLES)
		elog(ERROR, "too many item tables for the trigger engine");
	tp = &table_plans[n_table_plans];
	memset(tp, 0, sizeof(*tp));

	/*
	 * The table name comes from crm.entity_type; values are parameters.  A
	 * table of several entity types (smart processes) is filtered by type.
	 */
	where = get_attnum(item_relid(entity_type), "entity_type") != InvalidAttrNumber ?
		"id = $1 AND entity_type = $2" : "id = $1 AND $2 IS NOT NULL";
	crm_plan(&tp->lock, psprintf("SELECT * FROM %s WHERE %s FOR NO KEY UPDATE", qualified, where),
			 2, types);
	types[1] = INT8OID;
	crm_plan(&tp->move, psprintf("UPDATE %s SET stage_id = $1 WHERE id = $2", qualified), 2, types);
	strlcpy(tp->table, table, CRM_NAME_LEN);
	n_table_plans++;
	return tp;
}

/*
 * Reads the item by its primary key without SQL: every event that some
 * trigger of the entity type listens to reads the item (its stage says
 * which triggers apply), most move nothing, and an index lookup costs a
 * fraction of an executor run.  Like SPI, it sees what this transaction
 * wrote before.  The tuple and its descriptor are copies in the current
 * memory context; false when there is no such item.
 */
static bool
read_item(const char *entity_type, int64 item_id, HeapTuple *tuple, TupleDesc *desc)
{
	Relation	rel = table_open(item_relid(entity_type), AccessShareLock);
	Oid			pk = RelationGetPrimaryKeyIndex(rel);
	ScanKeyData key;
	SysScanDesc scan;
	HeapTuple	tup;
	Snapshot	snapshot;
	bool		found = false;

	if (!OidIsValid(pk))
		elog(ERROR, "table \"%s\" has no primary key", RelationGetRelationName(rel));
	CommandCounterIncrement();
	snapshot = RegisterSnapshot(GetTransactionSnapshot());
	ScanKeyInit(&key, 1, BTEqualStrategyNumber, F_INT8EQ, Int64GetDatum(item_id));
	scan = systable_beginscan(rel, pk, true, snapshot, 1, &key);
	tup = systable_getnext(scan);
	if (HeapTupleIsValid(tup))
	{
		AttrNumber	et = get_attnum(RelationGetRelid(rel), "entity_type");

		*desc = CreateTupleDescCopy(RelationGetDescr(rel));
		*tuple = heap_copytuple(tup);
		found = true;
		if (et != InvalidAttrNumber)
		{
			bool		isnull;
			Datum		d = heap_getattr(*tuple, et, *desc, &isnull);

			found = !isnull && strcmp(TextDatumGetCString(d), entity_type) == 0;
		}
	}
	systable_endscan(scan);
	UnregisterSnapshot(snapshot);
	table_close(rel, NoLock);
	return found;
}

/* Reads the item, locked for a move or not; false when it does not exist. */
static bool
load_item(const char *entity_type, int64 item_id, bool lock, HeapTuple *tuple, TupleDesc *desc)
{
	TablePlans *tp;
	Datum		vals[2];

	if (!lock)
		return read_item(entity_type, item_id, tuple, desc);
	tp = plans_for(entity_type);
	vals[0] = Int64GetDatum(item_id);
	vals[1] = CStringGetTextDatum(entity_type);
	crm_exec(tp->lock, vals, NULL, false, 1);
	if (SPI_processed == 0)
		return false;
	*tuple = SPI_tuptable->vals[0];
	*desc = SPI_tuptable->tupdesc;
	return true;
}

static int64
tuple_int8(HeapTuple tuple, TupleDesc desc, const char *column)
{
	int			att = SPI_fnumber(desc, column);
	bool		isnull;
	Datum		d;

	if (att <= 0)
		return 0;
	d = SPI_getbinval(tuple, desc, att, &isnull);
	return isnull ? 0 : DatumGetInt64(d);
}

/* ---------- deciding ---------- */

/* One event for one item. */
typedef struct EventCall
{
	const CrmEventDesc *event;
	const char *entity_type;
	int64		item_id;
	int64		stage_id;		/* where the item is */
	int64		pipeline_id;
	int32		stage_sort;
	HeapTuple	tuple;			/* the item's row */
	TupleDesc	desc;
	bool		locked;			/* the row is locked (or being updated) */
	Jsonb	   *payload;		/* built from source_row when first needed */
	HeapTuple	source_row;		/* the row that is the event, if any */
	TupleDesc	source_desc;
	const char *key;
	const bool *changed;		/* field_changed: per watched field */
} EventCall;

typedef struct Outcome
{
	const char *status;			/* NULL: no trigger applied to the event */
	const CrmTrigger *trigger;	/* the deciding trigger */
	char	   *error;			/* failed: the error; loop_stopped: the cycle */
	int			nchecked;
	int64	   *checked_ids;
	const char **checked_results;
} Outcome;

static bool
key_fits(const CrmTrigger *t, const EventCall *c)
{
	if (t->key == NULL)
		return true;
	if (c->key == NULL)
		return false;
	/* URLs compare exactly; form, application and service codes without case */
	if (t->event->id == CRM_EV_LINK_CLICK)
		return strcmp(t->key, c->key) == 0;
	return pg_strcasecmp(t->key, c->key) == 0;
}

static bool
watches_a_change(const CrmTrigger *t, const bool *changed)
{
	int			i;

	for (i = 0; i < t->nfields; i++)
		if (changed[t->fields[i]])
			return true;
	return false;
}

/* Whether the trigger concerns this event at all (before any condition). */
static bool
applies(const CrmTrigger *t, const EventCall *c, bool any_pipeline)
{
	if (!any_pipeline && t->pipeline_id != c->pipeline_id)
		return false;
	if (!key_fits(t, c))
		return false;
	if (t->event->id == CRM_EV_FIELD_CHANGED && !watches_a_change(t, c->changed))
		return false;
	return true;
}

static bool
any_applies(List *triggers, const EventCall *c, bool any_pipeline)
{
	ListCell   *lc;

	foreach(lc, triggers)
		if (applies((CrmTrigger *) lfirst(lc), c, any_pipeline))
			return true;
	return false;
}

static bool
any_condition(List *triggers, const EventCall *c)
{
	ListCell   *lc;

	foreach(lc, triggers)
	{
		CrmTrigger *t = (CrmTrigger *) lfirst(lc);

		if (t->condition != NULL && applies(t, c, false))
			return true;
	}
	return false;
}

/* Whether a condition to evaluate reads the payload (so it must be built). */
static bool
any_reads_event(List *triggers, const EventCall *c)
{
	ListCell   *lc;

	foreach(lc, triggers)
	{
		CrmTrigger *t = (CrmTrigger *) lfirst(lc);

		if (t->reads_event && applies(t, c, false))
			return true;
	}
	return false;
}

static void
note(Outcome *o, const CrmTrigger *t, const char *result, int max)
{
	if (o->checked_ids == NULL)
	{
		o->checked_ids = palloc(sizeof(int64) * max);
		o->checked_results = palloc(sizeof(char *) * max);
	}
	o->checked_ids[o->nchecked] = t->id;
	o->checked_results[o->nchecked] = result;
	o->nchecked++;
}

static bool
comes_before(const CrmTrigger *t, const EventCall *c)
{
	return t->stage_sort < c->stage_sort ||
		(t->stage_sort == c->stage_sort && t->stage_id < c->stage_id);
}

/* The trigger that decides, in stage order (see the file header). */
static void
decide(const EventCall *c, List *triggers, Outcome *o)
{
	CrmEvalContext cx;
	ListCell   *lc;
	const CrmTrigger *first_false = NULL;
	const CrmTrigger *first_back = NULL;
	int			max = list_length(triggers);

	crm_eval_context_init(&cx, c->entity_type, c->item_id, c->tuple, c->desc);
	cx.event = c->payload;
	foreach(lc, triggers)
	{
		const CrmTrigger *t = (CrmTrigger *) lfirst(lc);
		char	   *cycle = NULL;

		if (!applies(t, c, false))
			continue;
		o->trigger = t;			/* blamed if the condition fails */
		if (t->condition != NULL && !crm_expr_test(t->condition, &cx))
		{
			note(o, t, "condition_false", max);
			if (first_false == NULL)
				first_false = t;
			continue;
		}
		if (t->stage_id == c->stage_id)
			o->status = "already_there";
		else if (!t->allow_backwards && comes_before(t, c))
		{
			note(o, t, "backwards", max);
			if (first_back == NULL)
				first_back = t;
			continue;
		}
		else if (!crm_lineage_push('t', t->id, c->entity_type, c->item_id, &cycle))
		{
			o->status = "loop_stopped";
			o->error = cycle;
		}
		else
		{
			crm_lineage_pop();
			o->status = "fired";
		}
		note(o, t, o->status, max);
		o->trigger = t;
		return;
	}
	if (first_back != NULL)
	{
		o->status = "backwards";
		o->trigger = first_back;
	}
	else if (first_false != NULL)
	{
		o->status = "condition_false";
		o->trigger = first_false;
	}
	else
		o->trigger = NULL;
}

/* ---------- logging ---------- */

static void
push_key(JsonbParseState **st, const char *key)
{
	JsonbValue	k;

	k.type = jbvString;
	k.val.string.val = (char *) key;
	k.val.string.len = strlen(key);
	pushJsonbValue(st, WJB_KEY, &k);
}

static void
push_string(JsonbParseState **st, JsonbIteratorToken tok, const char *s)
{
	JsonbValue	v;

	v.type = jbvString;
	v.val.string.val = (char *) s;
	v.val.string.len = strlen(s);
	pushJsonbValue(st, tok, &v);
}

/*
 * How to push the columns of a row type: in jsonb's key order (shorter
 * names first, then bytewise), so that the object needs no sorting when it
 * ends (sorting was a fifth of deciding an incoming call), with the output
 * function of each column kept.  A few row types are kept per backend; the
 * entry is rebuilt when the columns' number or types change, and a renamed
 * column only makes jsonb sort again.
 */
typedef struct RowKeys
{
	Oid			typeid;
	int			natts;
	int			n;				/* columns not dropped */
	int		   *order;			/* attribute indexes in key order */
	Oid		   *types;			/* atttypid of every attribute */
	Oid		   *outputs;		/* output function of every attribute */
} RowKeys;

#define MAX_ROW_KEYS 8
static RowKeys row_keys[MAX_ROW_KEYS];
static int	next_row_keys = 0;

static int
key_order_cmp(const void *a, const void *b, void *arg)
{
	TupleDesc	desc = (TupleDesc) arg;
	const char *x = NameStr(TupleDescAttr(desc, *(const int *) a)->attname);
	const char *y = NameStr(TupleDescAttr(desc, *(const int *) b)->attname);
	size_t		lx = strlen(x);
	size_t		ly = strlen(y);

	if (lx != ly)
		return lx < ly ? -1 : 1;
	return memcmp(x, y, lx);
}

static bool
row_keys_fit(const RowKeys *k, TupleDesc desc)
{
	int			i;

	if (k->order == NULL || k->typeid != desc->tdtypeid || k->natts != desc->natts)
		return false;
	for (i = 0; i < desc->natts; i++)
		if (k->types[i] != TupleDescAttr(desc, i)->atttypid)
			return false;
	return true;
}

static const RowKeys *
row_keys_for(TupleDesc desc)
{
	RowKeys    *k = NULL;
	MemoryContext old;
	int			i;

	for (i = 0; i < MAX_ROW_KEYS; i++)
		if (row_keys[i].typeid == desc->tdtypeid && row_keys[i].order != NULL)
		{
			k = &row_keys[i];
			if (row_keys_fit(k, desc))
				return k;
			break;
		}
	if (k == NULL)
	{
		k = &row_keys[next_row_keys];
		next_row_keys = (next_row_keys + 1) % MAX_ROW_KEYS;
	}
	if (k->order != NULL)
	{
		pfree(k->order);
		pfree(k->types);
		pfree(k->outputs);
	}
	old = MemoryContextSwitchTo(TopMemoryContext);
	k->typeid = desc->tdtypeid;
	k->natts = desc->natts;
	k->order = palloc(sizeof(int) * Max(desc->natts, 1));
	k->types = palloc(sizeof(Oid) * Max(desc->natts, 1));
	k->outputs = palloc(sizeof(Oid) * Max(desc->natts, 1));
	MemoryContextSwitchTo(old);
	k->n = 0;
	for (i = 0; i < desc->natts; i++)
	{
		Form_pg_attribute att = TupleDescAttr(desc, i);
		bool		isvarlena;

		k->types[i] = att->atttypid;
		k->outputs[i] = InvalidOid;
		if (att->attisdropped)
			continue;
		getTypeOutputInfo(att->atttypid, &k->outputs[i], &isvarlena);
		k->order[k->n++] = i;
	}
	qsort_arg(k->order, k->n, sizeof(int), key_order_cmp, desc);
	return k;
}

/*
 * A row as a jsonb object, the payload of a row event ({=Event:column}),
 * pushed as a value into *st (the object when *st is at the top).
 */
static JsonbValue *
push_row(JsonbParseState **st, HeapTuple tuple, TupleDesc desc)
{
	const RowKeys *keys = desc->tdtypeid != RECORDOID ? row_keys_for(desc) : NULL;
	Datum	   *values = palloc(sizeof(Datum) * Max(desc->natts, 1));
	bool	   *nulls = palloc(sizeof(bool) * Max(desc->natts, 1));
	int			n = keys ? keys->n : desc->natts;
	int			k;

	heap_deform_tuple(tuple, desc, values, nulls);
	pushJsonbValue(st, WJB_BEGIN_OBJECT, NULL);
	for (k = 0; k < n; k++)
	{
		int			i = keys ? keys->order[k] : k;
		Form_pg_attribute att = TupleDescAttr(desc, i);
		JsonbValue	v;
		Datum		d = values[i];

		if (att->attisdropped)
			continue;
		push_key(st, NameStr(att->attname));
		if (nulls[i])
			v.type = jbvNull;
		else if (att->atttypid == INT8OID || att->atttypid == INT4OID || att->atttypid == INT2OID)
		{
			v.type = jbvNumeric;
			v.val.numeric = int64_to_numeric(att->atttypid == INT8OID ? DatumGetInt64(d) :
											 att->atttypid == INT4OID ? DatumGetInt32(d) :
											 DatumGetInt16(d));
		}
		else if (att->atttypid == NUMERICOID)
		{
			v.type = jbvNumeric;
			v.val.numeric = DatumGetNumeric(d);
		}
		else if (att->atttypid == BOOLOID)
		{
			v.type = jbvBool;
			v.val.boolean = DatumGetBool(d);
		}
		else if (att->atttypid == JSONBOID)
		{
			Jsonb	   *j = DatumGetJsonbP(d);

			v.type = jbvBinary;
			v.val.binary.data = &j->root;
			v.val.binary.len = VARSIZE(j) - VARHDRSZ;
		}
		else
		{
			Oid			out;
			bool		isvarlena;
			char	   *text;

			if (keys)
				out = keys->outputs[i];
			else
				getTypeOutputInfo(att->atttypid, &out, &isvarlena);
			text = OidOutputFunctionCall(out, d);
			v.type = jbvString;
			v.val.string.val = text;
			v.val.string.len = strlen(text);
		}
		pushJsonbValue(st, WJB_VALUE, &v);
	}
	return pushJsonbValue(st, WJB_END_OBJECT, NULL);
}

static Jsonb *
row_to_jsonb(HeapTuple tuple, TupleDesc desc)
{
	JsonbParseState *st = NULL;

	return JsonbValueToJsonb(push_row(&st, tuple, desc));
}

/* {"event": payload, "from": stage code, "checked": [{"trigger", "result"}], "cycle"} */
static Jsonb *
log_detail(const EventCall *c, const Outcome *o)
{
	JsonbParseState *st = NULL;
	JsonbValue	v;
	const CrmStageInfo *from;
	int			i;

	pushJsonbValue(&st, WJB_BEGIN_OBJECT, NULL);
	if (c->payload != NULL)
	{
		push_key(&st, "event");
		v.type = jbvBinary;
		v.val.binary.data = &c->payload->root;
		v.val.binary.len = VARSIZE(c->payload) - VARHDRSZ;
		pushJsonbValue(&st, WJB_VALUE, &v);
	}
	else if (c->source_row != NULL)
	{
		/* no condition read it: the row goes straight into the log */
		push_key(&st, "event");
		push_row(&st, c->source_row, c->source_desc);
	}
	from = crm_stage_info(c->stage_id);
	if (from != NULL)
	{
		push_key(&st, "from");
		push_string(&st, WJB_VALUE, from->code);
	}
	push_key(&st, "checked");
	pushJsonbValue(&st, WJB_BEGIN_ARRAY, NULL);
	for (i = 0; i < o->nchecked; i++)
	{
		pushJsonbValue(&st, WJB_BEGIN_OBJECT, NULL);
		push_key(&st, "trigger");
		v.type = jbvNumeric;
		v.val.numeric = int64_to_numeric(o->checked_ids[i]);
		pushJsonbValue(&st, WJB_VALUE, &v);
		push_key(&st, "result");
		push_string(&st, WJB_VALUE, o->checked_results[i]);
		pushJsonbValue(&st, WJB_END_OBJECT, NULL);
	}
	pushJsonbValue(&st, WJB_END_ARRAY, NULL);
	if (o->error != NULL && strcmp(o->status, "loop_stopped") == 0)
	{
		push_key(&st, "cycle");
		push_string(&st, WJB_VALUE, o->error);
	}
	return JsonbValueToJsonb(pushJsonbValue(&st, WJB_END_OBJECT, NULL));
}

/*
 * A decision's log row goes through the robots' row sink (rowsink.c): with
 * their rows in the batch's INSERT when the event happens inside a batch of
 * robots, else at once.
 */
static CrmRowSink log_sink = {
	"crm.robot_log", 14,
	{"kind", "trigger_id", "name", "action", "stage_id", "entity_type", "entity_id",
	"status", "error", "detail", "depth", "planned_at", "started_at", "finished_at"},
	{TEXTOID, INT8OID, TEXTOID, TEXTOID, INT8OID, TEXTOID, INT8OID,
	TEXTOID, TEXTOID, JSONBOID, INT4OID, TIMESTAMPTZOID, TIMESTAMPTZOID, TIMESTAMPTZOID},
	true
};

static void
log_outcome(const char *entity_type, int64 item_id, const CrmEventDesc *event,
			const CrmTrigger *t, const char *status, const char *error, Jsonb *detail)
{
	Datum		vals[14];
	bool		nulls[14];
	TimestampTz now = GetCurrentTimestamp();

	memset(nulls, 0, sizeof(nulls));
	vals[0] = CStringGetTextDatum("trigger");
	if (t != NULL)
	{
		vals[1] = Int64GetDatum(t->id);
		vals[2] = CStringGetTextDatum(t->name);
		vals[4] = Int64GetDatum(t->stage_id);
	}
	else
		nulls[1] = nulls[2] = nulls[4] = true;
	vals[3] = CStringGetTextDatum(event->name);
	vals[5] = CStringGetTextDatum(entity_type);
	vals[6] = Int64GetDatum(item_id);
	vals[7] = CStringGetTextDatum(status);
	if (error != NULL && strcmp(status, "failed") == 0)
		vals[8] = CStringGetTextDatum(error);
	else
		nulls[8] = true;
	vals[9] = JsonbPGetDatum(detail);
	vals[10] = Int32GetDatum(crm_lineage_depth());
	vals[11] = vals[12] = vals[13] = TimestampTzGetDatum(now);
	crm_sink_add(&log_sink, vals, nulls);
}

/* The stage change in the item's history, on behalf of a user. */
static void
record_history(const char *entity_type, int64 item_id, int64 from_stage,
			   const CrmTrigger *t, int64 user_id)
{
	static SPIPlanPtr plan = NULL;
	Oid			types[8] = {TEXTOID, INT8OID, INT8OID, INT8OID, INT8OID, TEXTOID, TEXTOID, INT8OID};
	Datum		vals[8];
	char		nulls[8] = {' ', ' ', ' ', ' ', ' ', ' ', ' ', ' '};

	vals[0] = CStringGetTextDatum(entity_type);
	vals[1] = Int64GetDatum(item_id);
	vals[2] = Int64GetDatum(user_id);
	if (user_id == 0)
		nulls[2] = 'n';
	vals[3] = Int64GetDatum(from_stage);
	vals[4] = Int64GetDatum(t->stage_id);
	vals[5] = CStringGetTextDatum(t->name);
	vals[6] = CStringGetTextDatum(t->event->name);
	vals[7] = Int64GetDatum(t->id);
	crm_exec(crm_plan(&plan,
					  "INSERT INTO crm.history (entity_type, entity_id, event_type, user_id, text, details)"
					  " SELECT $1, $2, 'stage_change', $3,"
					  "        format('Stage changed from \"%s\" to \"%s\" by trigger \"%s\"',"
					  "               f.name, t.name, $6),"
					  "        jsonb_build_object('from', f.code, 'to', t.code, 'trigger_id', $8,"
					  "                           'event', $7)"
					  "   FROM crm.stage f, crm.stage t WHERE f.id = $4 AND t.id = $5",
					  8, types), vals, nulls, false, 0);
}

static int64
acting_user(const CrmTrigger *t, int64 responsible_id)
{
	return t->on_behalf_of != 0 ? t->on_behalf_of : responsible_id;
}

/* ---------- moves decided in the BEFORE trigger ---------- */

/* A move set in the row by the BEFORE trigger, completed by the AFTER one. */
typedef struct PendingMove
{
	char		entity_type[CRM_NAME_LEN];
	int64		item_id;
	int64		to_stage;
	int64		from_stage;
	int64		user_id;
	CrmTrigger	trigger;		/* a copy: the cache may be reloaded meanwhile */
	Jsonb	   *detail;
	SubTransactionId subid;
} PendingMove;

static List *pending_moves = NIL;	/* in TopTransactionContext */
static bool callbacks_registered = false;

static void
triggers_xact_callback(XactEvent event, void *arg)
{
	pending_moves = NIL;
}

/* Moves decided in an aborted subtransaction never happened. */
static void
triggers_subxact_callback(SubXactEvent event, SubTransactionId mySubid,
						  SubTransactionId parentSubid, void *arg)
{
	ListCell   *lc;

	if (event != SUBXACT_EVENT_ABORT_SUB)
		return;
	foreach(lc, pending_moves)
		if (((PendingMove *) lfirst(lc))->subid >= mySubid)
			pending_moves = foreach_delete_current(pending_moves, lc);
}

static void
remember_move(const EventCall *c, const Outcome *o, int64 user_id, Jsonb *detail)
{
	MemoryContext old = MemoryContextSwitchTo(TopTransactionContext);
	PendingMove *m = palloc0(sizeof(PendingMove));

	if (!callbacks_registered)
	{
		RegisterXactCallback(triggers_xact_callback, NULL);
		RegisterSubXactCallback(triggers_subxact_callback, NULL);
		callbacks_registered = true;
	}
	strlcpy(m->entity_type, c->entity_type, CRM_NAME_LEN);
	m->item_id = c->item_id;
	m->to_stage = o->trigger->stage_id;
	m->from_stage = c->stage_id;
	m->user_id = user_id;
	m->trigger = *o->trigger;
	m->trigger.name = pstrdup(o->trigger->name);
	m->trigger.key = NULL;
	m->trigger.fields = NULL;
	m->trigger.condition = NULL;
	m->detail = DatumGetJsonbPCopy(JsonbPGetDatum(detail));
	m->subid = GetCurrentSubTransactionId();
	pending_moves = lappend(pending_moves, m);
	MemoryContextSwitchTo(old);
}

/* ---------- acting as the automation ---------- */

/*
 * Triggers act as the extension's owner (as robots do: an application role
 * that records a call need not write the log or move items it cannot see),
 * with the rule cache pinned and SPI connected.  leave_automation after the
 * PG_FINALLY that unpins.
 */
typedef struct AutomationScope
{
	Oid			userid;
	int			sec;
} AutomationScope;

static void
enter_automation(AutomationScope *scope)
{
	GetUserIdAndSecContext(&scope->userid, &scope->sec);
	SetUserIdAndSecContext(crm_automation_owner(), scope->sec | SECURITY_LOCAL_USERID_CHANGE);
	crm_rule_cache_pin();
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
}

static void
leave_automation(AutomationScope *scope)
{
	SPI_finish();
	SetUserIdAndSecContext(scope->userid, scope->sec);
}

/* ---------- running ---------- */

/*
 * Runs a step in a subtransaction (crm_run_isolated).  An error rolls back
 * what the step wrote and makes the outcome failed, with the error, blaming
 * o->trigger: the statement that caused the event goes on.  A query cancel
 * or statement timeout cancels the statement.
 */
typedef void (*EventStep) (const EventCall *c, Outcome *o, void *arg);

typedef struct StepCall
{
	EventStep	step;
	const EventCall *c;
	Outcome    *o;
	void	   *arg;
} StepCall;

static void
step_call(void *arg)
{
	StepCall   *s = arg;

	s->step(s->c, s->o, s->arg);
}

static void
run_isolated(EventStep step, const EventCall *c, Outcome *o, void *arg)
{
	StepCall	s = {step, c, o, arg};
	ErrorData  *edata = crm_run_isolated(step_call, &s);

	if (edata != NULL)
	{
		o->status = "failed";
		o->error = edata->message;
	}
}

static void
decide_step(const EventCall *c, Outcome *o, void *arg)
{
	decide(c, (List *) arg, o);
}

/*
 * Decides; in a subtransaction when a condition is evaluated, since it may
 * raise an error.  Nothing is written there, so the subtransaction gets no
 * transaction id of its own.
 */
static void
decide_safely(const EventCall *c, List *triggers, Outcome *o)
{
	if (any_condition(triggers, c))
		run_isolated(decide_step, c, o, triggers);
	else
		decide(c, triggers, o);
}

typedef struct MoveArgs
{
	Jsonb	   *detail;
	int64		user_id;
} MoveArgs;

/*
 * The move: the firing's log row, the history entry, and the UPDATE (whose
 * AFTER trigger runs the stage's robots), with the trigger on the lineage.
 */
static void
move_step(const EventCall *c, Outcome *o, void *arg)
{
	MoveArgs   *m = (MoveArgs *) arg;
	TablePlans *tp = plans_for(c->entity_type);
	Datum		vals[2];
	char	   *cycle = NULL;

	if (!crm_lineage_push('t', o->trigger->id, c->entity_type, c->item_id, &cycle))
		elog(ERROR, "lineage refused trigger %lld: %s", (long long) o->trigger->id, cycle);
	log_outcome(c->entity_type, c->item_id, c->event, o->trigger, "fired", NULL, m->detail);
	record_history(c->entity_type, c->item_id, c->stage_id, o->trigger, m->user_id);
	vals[0] = Int64GetDatum(o->trigger->stage_id);
	vals[1] = Int64GetDatum(c->item_id);
	crm_exec(tp->move, vals, NULL, false, 0);
	crm_lineage_pop();
}

static void
move_item(const EventCall *c, Outcome *o, Jsonb *detail, int64 user_id)
{
	MoveArgs	m;

	m.detail = detail;
	m.user_id = user_id;
	run_isolated(move_step, c, o, &m);
}

static void
set_stage_of(EventCall *c)
{
	const CrmStageInfo *st = crm_stage_info(c->stage_id);

	if (st == NULL)
		elog(ERROR, "stage %lld of %s %lld is not cached", (long long) c->stage_id,
			 c->entity_type, (long long) c->item_id);
	c->pipeline_id = st->pipeline_id;
	c->stage_sort = st->sort;
}

/*
 * Decides, moves (outside the BEFORE trigger) and logs.  In the BEFORE
 * trigger a fired move is remembered and its stage returned in *move_to.
 * A decision to move taken on the row as read is taken again on the row
 * locked, so that concurrent events for one item move it once.
 */
static const char *
run_event(EventCall *c, List *triggers, bool in_before_trigger, int64 *move_to)
{
	Outcome		o;
	Jsonb	   *detail;
	int64		user_id;

	memset(&o, 0, sizeof(o));
	*move_to = 0;
	if (c->payload == NULL && c->source_row != NULL && any_reads_event(triggers, c))
		c->payload = row_to_jsonb(c->source_row, c->source_desc);
	decide_safely(c, triggers, &o);
	if (o.status == NULL)
		return "no_trigger";

	if (strcmp(o.status, "fired") == 0 && !c->locked)
	{
		if (!load_item(c->entity_type, c->item_id, true, &c->tuple, &c->desc))
			return "no_trigger";	/* deleted meanwhile */
		c->locked = true;
		c->stage_id = tuple_int8(c->tuple, c->desc, "stage_id");
		set_stage_of(c);
		return run_event(c, triggers, in_before_trigger, move_to);
	}

	detail = log_detail(c, &o);
	user_id = o.trigger ? acting_user(o.trigger, tuple_int8(c->tuple, c->desc, "responsible_id")) : 0;
	if (strcmp(o.status, "fired") == 0 && in_before_trigger)
	{
		remember_move(c, &o, user_id, detail);
		*move_to = o.trigger->stage_id;
	}
	else if (strcmp(o.status, "fired") == 0)
	{
		move_item(c, &o, detail, user_id);
		if (strcmp(o.status, "failed") == 0)
			log_outcome(c->entity_type, c->item_id, c->event, o.trigger, "failed", o.error, detail);
	}
	else
		log_outcome(c->entity_type, c->item_id, c->event, o.trigger, o.status, o.error, detail);
	return o.status;
}

static const char *
fire(EventCall *c, bool missing_ok)
{
	const CrmEntityTriggers *ets = crm_entity_triggers(c->entity_type);
	const char *result = "no_trigger";
	AutomationScope scope;
	int64		move_to;

	/* the cheap answer: nobody listens, and the item need not be checked */
	if (missing_ok && (ets == NULL || !(ets->events & CRM_EVENT_BIT(c->event->id))))
		return result;

	enter_automation(&scope);
	PG_TRY();
	{
		List	   *triggers;

		ets = crm_entity_triggers(c->entity_type);
		triggers = ets ? ets->by_event[c->event->id] : NIL;
		if (!missing_ok || any_applies(triggers, c, true))
		{
			if (!load_item(c->entity_type, c->item_id, false, &c->tuple, &c->desc))
			{
				if (!missing_ok)
					ereport(ERROR,
							(errcode(ERRCODE_NO_DATA_FOUND),
							 errmsg("%s %lld does not exist", c->entity_type, (long long) c->item_id),
							 errhint("Fire the event for an existing item.")));
			}
			else if ((c->stage_id = tuple_int8(c->tuple, c->desc, "stage_id")) != 0)
			{
				set_stage_of(c);
				if (any_applies(triggers, c, false))
					result = run_event(c, triggers, false, &move_to);
			}
		}
	}
	PG_FINALLY();
	{
		crm_rule_cache_unpin();
	}
	PG_END_TRY();
	leave_automation(&scope);
	return result;
}

const char *
crm_fire_event(CrmEventId event, const char *entity_type, int64 item_id,
			   Jsonb *payload, const char *key, bool missing_ok)
{
	EventCall	c;

	memset(&c, 0, sizeof(c));
	c.event = crm_event(event);
	c.entity_type = entity_type;
	c.item_id = item_id;
	c.payload = payload;
	c.key = key;
	return fire(&c, missing_ok);
}

const char *
crm_fire_row_event(CrmEventId event, const char *entity_type, int64 item_id,
				   HeapTuple row, TupleDesc rowdesc, const char *key)
{
	EventCall	c;

	memset(&c, 0, sizeof(c));
	c.event = crm_event(event);
	c.entity_type = entity_type;
	c.item_id = item_id;
	c.source_row = row;
	c.source_desc = rowdesc;
	c.key = key;
	return fire(&c, true);
}

/* ---------- the items' row triggers ---------- */

/* The same value: same type and the same text (so 1 and 1.0 differ). */
static bool
same_value(CrmValue a, CrmValue b)
{
	if (a.type != b.type)
		return false;
	if (a.type == CRM_VAL_NULL)
		return true;
	return strcmp(crm_value_to_cstring(a), crm_value_to_cstring(b)) == 0;
}

static Jsonb *
changed_fields_payload(const CrmEntityTriggers *ets, const bool *changed)
{
	JsonbParseState *st = NULL;
	int			i;

	pushJsonbValue(&st, WJB_BEGIN_OBJECT, NULL);
	push_key(&st, "fields");
	pushJsonbValue(&st, WJB_BEGIN_ARRAY, NULL);
	for (i = 0; i < ets->nwatched; i++)
		if (changed[i])
			push_string(&st, WJB_ELEM, ets->watched_names[i]);
	pushJsonbValue(&st, WJB_END_ARRAY, NULL);
	return JsonbValueToJsonb(pushJsonbValue(&st, WJB_END_OBJECT, NULL));
}

static void
push_user_id(JsonbParseState **st, const char *key, CrmValue v)
{
	JsonbValue	jv;
	int64		id;

	push_key(st, key);
	if (crm_value_to_int64(v, &id))
	{
		jv.type = jbvNumeric;
		jv.val.numeric = int64_to_numeric(id);
	}
	else
		jv.type = jbvNull;
	pushJsonbValue(st, WJB_VALUE, &jv);
}

static Jsonb *
responsible_payload(CrmValue from, CrmValue to)
{
	JsonbParseState *st = NULL;

	pushJsonbValue(&st, WJB_BEGIN_OBJECT, NULL);
	push_user_id(&st, "from", from);
	push_user_id(&st, "to", to);
	return JsonbValueToJsonb(pushJsonbValue(&st, WJB_END_OBJECT, NULL));
}

#define ITEM_EVENTS (CRM_EVENT_BIT(CRM_EV_FIELD_CHANGED) | CRM_EVENT_BIT(CRM_EV_RESPONSIBLE_CHANGED))

int64
crm_triggers_before_update(Relation rel, const char *entity_type,
						   HeapTuple oldtuple, HeapTuple newtuple,
						   AttrNumber id_att, int64 stage_id)
{
	const CrmEntityTriggers *ets = crm_entity_triggers(entity_type);
	TupleDesc	desc = RelationGetDescr(rel);
	EventCall	c;
	CrmEvalContext oldcx;
	CrmEvalContext newcx;
	AutomationScope scope;
	int64		move_to = 0;
	bool		isnull;

	/* no trigger on a field or responsible change of this entity type */
	if (ets == NULL || !(ets->events & ITEM_EVENTS) || id_att == InvalidAttrNumber)
		return 0;

	memset(&c, 0, sizeof(c));
	c.entity_type = entity_type;
	c.item_id = DatumGetInt64(heap_getattr(newtuple, id_att, desc, &isnull));
	c.stage_id = stage_id;
	c.tuple = newtuple;
	c.desc = desc;
	c.locked = true;

	enter_automation(&scope);
	PG_TRY();
	{
		ets = crm_entity_triggers(entity_type);
		set_stage_of(&c);
		crm_eval_context_init(&oldcx, entity_type, c.item_id, oldtuple, desc);
		crm_eval_context_init(&newcx, entity_type, c.item_id, newtuple, desc);

		if (ets->events & CRM_EVENT_BIT(CRM_EV_FIELD_CHANGED))
		{
			bool	   *changed = palloc0(sizeof(bool) * Max(ets->nwatched, 1));
			bool		any = false;
			int			i;

			for (i = 0; i < ets->nwatched; i++)
			{
				changed[i] = !same_value(crm_expr_eval(ets->watched[i], &oldcx),
										 crm_expr_eval(ets->watched[i], &newcx));
				any |= changed[i];
			}
			c.changed = changed;
			c.event = crm_event(CRM_EV_FIELD_CHANGED);
			if (any && any_applies(ets->by_event[CRM_EV_FIELD_CHANGED], &c, false))
			{
				c.payload = changed_fields_payload(ets, changed);
				(void) run_event(&c, ets->by_event[CRM_EV_FIELD_CHANGED], true, &move_to);
			}
		}
		if (move_to == 0 && (ets->events & CRM_EVENT_BIT(CRM_EV_RESPONSIBLE_CHANGED)))
		{
			CrmValue	from = crm_expr_eval(ets->responsible, &oldcx);
			CrmValue	to = crm_expr_eval(ets->responsible, &newcx);

			if (!same_value(from, to))
			{
				c.event = crm_event(CRM_EV_RESPONSIBLE_CHANGED);
				c.changed = NULL;
				c.payload = responsible_payload(from, to);
				(void) run_event(&c, ets->by_event[CRM_EV_RESPONSIBLE_CHANGED], true, &move_to);
			}
		}
	}
	PG_FINALLY();
	{
		crm_rule_cache_unpin();
	}
	PG_END_TRY();
	leave_automation(&scope);
	return move_to;
}

CrmTriggerMove *
crm_triggers_take_move(const char *entity_type, int64 item_id, int64 stage_id)
{
	ListCell   *lc;
	PendingMove *m;

	foreach(lc, pending_moves)
	{
		PendingMove *p = (PendingMove *) lfirst(lc);

		if (p->item_id == item_id && p->to_stage == stage_id &&
			strcmp(p->entity_type, entity_type) == 0)
		{
			pending_moves = foreach_delete_current(pending_moves, lc);
			m = palloc(sizeof(PendingMove));
			memcpy(m, p, sizeof(PendingMove));
			m->detail = p->detail ? DatumGetJsonbPCopy(JsonbPGetDatum(p->detail)) : NULL;
			return (CrmTriggerMove *) m;
		}
	}
	return NULL;
}

bool
crm_triggers_begin_move(const CrmTriggerMove *move)
{
	const PendingMove *m = (const PendingMove *) move;
	char	   *cycle = NULL;
	bool		pushed;

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	pushed = crm_lineage_push('t', m->trigger.id, m->entity_type, m->item_id, &cycle);
	log_outcome(m->entity_type, m->item_id, m->trigger.event, &m->trigger, "fired", NULL, m->detail);
	record_history(m->entity_type, m->item_id, m->from_stage, &m->trigger, m->user_id);
	SPI_finish();
	return pushed;
}
