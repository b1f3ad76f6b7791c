/*-------------------------------------------------------------------------
 *
 * trigger_log.c
 *	  The log row of an event and the history entry of a move.
 *
 * Part of the CRM triggers (src/triggers/): trigger_load.c loads them into
 * the rule cache, trigger_decide.c decides which one applies to an event,
 * trigger_log.c logs the outcome and records moves in the history, and
 * trigger_fire.c runs an event for an item (the entry points, the move, the
 * engine's hooks).  trigger_fire.c's header tells the whole story.
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

#include "engine/robots.h"
#include "core/scope.h"
#include "core/rowsink.h"
#include "core/rule_cache.h"
#include "core/spi_util.h"
#include "triggers/triggers.h"

#include "triggers/trigger_int.h"

/* ---------- logging ---------- */

void
trig_push_key(JsonbParseState **st, const char *key)
{
	JsonbValue	k;

	k.type = jbvString;
	k.val.string.val = (char *) key;
	k.val.string.len = strlen(key);
	pushJsonbValue(st, WJB_KEY, &k);
}

void
trig_push_string(JsonbParseState **st, JsonbIteratorToken tok, const char *s)
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
 * pushed as a value into *st (the object when *st is at the top).  With
 * skip_nulls (the log's copy of the row) a column without a value is left
 * out: {=Event:column} and detail->'event'->>'column' read NULL either way.
 */
static JsonbValue *
push_row(JsonbParseState **st, HeapTuple tuple, TupleDesc desc, bool skip_nulls)
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

		if (att->attisdropped || (skip_nulls && nulls[i]))
			continue;
		trig_push_key(st, NameStr(att->attname));
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

Jsonb *
trig_row_to_jsonb(HeapTuple tuple, TupleDesc desc)
{
	JsonbParseState *st = NULL;

	return JsonbValueToJsonb(push_row(&st, tuple, desc, false));
}

/* {"event": payload, "from": stage code, "checked": [{"trigger", "result"}], "cycle"} */
Jsonb *
trig_log_detail(const EventCall *c, const Outcome *o)
{
	JsonbParseState *st = NULL;
	JsonbValue	v;
	const CrmStageInfo *from;
	int			i;

	pushJsonbValue(&st, WJB_BEGIN_OBJECT, NULL);
	if (c->payload != NULL)
	{
		trig_push_key(&st, "event");
		v.type = jbvBinary;
		v.val.binary.data = &c->payload->root;
		v.val.binary.len = VARSIZE(c->payload) - VARHDRSZ;
		pushJsonbValue(&st, WJB_VALUE, &v);
	}
	else if (c->source_row != NULL)
	{
		/* no condition read it: the row goes straight into the log */
		trig_push_key(&st, "event");
		push_row(&st, c->source_row, c->source_desc, true);
	}
	from = crm_stage_info(c->stage_id);
	if (from != NULL)
	{
		trig_push_key(&st, "from");
		trig_push_string(&st, WJB_VALUE, from->code);
	}
	trig_push_key(&st, "checked");
	pushJsonbValue(&st, WJB_BEGIN_ARRAY, NULL);
	for (i = 0; i < o->nchecked; i++)
	{
		pushJsonbValue(&st, WJB_BEGIN_OBJECT, NULL);
		trig_push_key(&st, "trigger");
		v.type = jbvNumeric;
		v.val.numeric = int64_to_numeric(o->checked_ids[i]);
		pushJsonbValue(&st, WJB_VALUE, &v);
		trig_push_key(&st, "result");
		trig_push_string(&st, WJB_VALUE, o->checked_results[i]);
		pushJsonbValue(&st, WJB_END_OBJECT, NULL);
	}
	pushJsonbValue(&st, WJB_END_ARRAY, NULL);
	if (o->error != NULL && strcmp(o->status, "loop_stopped") == 0)
	{
		trig_push_key(&st, "cycle");
		trig_push_string(&st, WJB_VALUE, o->error);
	}
	return JsonbValueToJsonb(pushJsonbValue(&st, WJB_END_OBJECT, NULL));
}

/*
 * The detail of a no_trigger row, compact: the stage the item is in (so its
 * pipeline) and the event's key (form, URL, code, service) if it has one,
 * {"from": code, "key": key}; never the event's payload or row.
 */
Jsonb *
trig_no_trigger_detail(const EventCall *c)
{
	JsonbParseState *st = NULL;
	const CrmStageInfo *from = crm_stage_info(c->stage_id);

	pushJsonbValue(&st, WJB_BEGIN_OBJECT, NULL);
	if (c->key != NULL)
	{
		trig_push_key(&st, "key");
		trig_push_string(&st, WJB_VALUE, c->key);
	}
	if (from != NULL)
	{
		trig_push_key(&st, "from");
		trig_push_string(&st, WJB_VALUE, from->code);
	}
	return JsonbValueToJsonb(pushJsonbValue(&st, WJB_END_OBJECT, NULL));
}

/*
 * A decision's log row goes through the robots' row sink (rowsink.c): with
 * their rows in the batch's INSERT when the event happens inside a batch of
 * robots, else at once.
 */
#define TRIG_LOG_SINK(table) { \
	table, 14, \
	{"kind", "trigger_id", "name", "action", "stage_id", "entity_type", "entity_id", \
	"status", "error", "detail", "depth", "planned_at", "started_at", "finished_at"}, \
	{TEXTOID, INT8OID, TEXTOID, TEXTOID, INT8OID, TEXTOID, INT8OID, \
	TEXTOID, TEXTOID, JSONBOID, INT4OID, TIMESTAMPTZOID, TIMESTAMPTZOID, TIMESTAMPTZOID}, \
	true \
}

/* crm.automation_log, or crm.robot_log in a database still on 0.1.0 */
static CrmRowSink log_sinks[2] = {TRIG_LOG_SINK("crm.robot_log"), TRIG_LOG_SINK("crm.automation_log")};

void
trig_log_outcome(const char *entity_type, int64 item_id, const CrmEventDesc *event,
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
	if (detail != NULL)
		vals[9] = JsonbPGetDatum(detail);
	else
		nulls[9] = true;
	vals[10] = Int32GetDatum(crm_lineage_depth());
	vals[11] = vals[12] = vals[13] = TimestampTzGetDatum(now);
	crm_sink_add(&log_sinks[crm_log_has_entries()], vals, nulls);
}

/* The stage change in the item's history, on behalf of a user. */
void
trig_record_history(const char *entity_type, int64 item_id, int64 from_stage,
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

int64
trig_acting_user(const CrmTrigger *t, int64 responsible_id)
{
	return t->on_behalf_of != 0 ? t->on_behalf_of : responsible_id;
}


/*
 * Whether the log takes the compact rows (no_trigger, excepted): their
 * statuses came with 0.2.0's CHECK on crm.robot_log.status, and the library
 * serves a database still on 0.1.0 until ALTER EXTENSION ... UPDATE
 * (src/README.md, "Install script") without them.  crm.process_log came with
 * 0.2.0 too (processes.c asks the same): two syscache lookups.
 */
static bool
log_takes_compact_rows(void)
{
	Oid			nsp = get_namespace_oid("crm", true);

	return OidIsValid(nsp) && OidIsValid(get_relname_relid("process_log", nsp));
}

/* A compact row (no_trigger): no trigger, no stage, no payload. */
void
trig_log_compact(const char *entity_type, int64 item_id, const CrmEventDesc *event,
				 const char *status, Jsonb *detail)
{
	if (log_takes_compact_rows())
		trig_log_outcome(entity_type, item_id, event, NULL, status, NULL, detail);
}

/*
 * An incoming call, e-mail or open-channel message the exceptions list
 * dropped (trigger_sources.c): the activity is not recorded, this compact
 * row says why, as the automation (the inserting role need not write the
 * log).  detail: {"type": the list entry's type, "entry_id", "entry": its
 * value, "address": the incoming remote_address}.
 */
void
trig_log_excepted(const char *entity_type, int64 item_id, const CrmEventDesc *event,
				  const char *list_type, int64 entry_id, const char *entry,
				  const char *address)
{
	JsonbParseState *st = NULL;
	JsonbValue	v;
	Jsonb	   *detail;
	CrmScope	scope;

	if (!log_takes_compact_rows())
		return;
	pushJsonbValue(&st, WJB_BEGIN_OBJECT, NULL);
	trig_push_key(&st, "type");
	trig_push_string(&st, WJB_VALUE, list_type);
	trig_push_key(&st, "entry");
	trig_push_string(&st, WJB_VALUE, entry);
	trig_push_key(&st, "address");
	trig_push_string(&st, WJB_VALUE, address);
	trig_push_key(&st, "entry_id");
	v.type = jbvNumeric;
	v.val.numeric = int64_to_numeric(entry_id);
	pushJsonbValue(&st, WJB_VALUE, &v);
	detail = JsonbValueToJsonb(pushJsonbValue(&st, WJB_END_OBJECT, NULL));

	crm_scope_enter(&scope, CRM_SCOPE_SPI);
	trig_log_outcome(entity_type, item_id, event, NULL, "excepted", NULL, detail);
	crm_scope_leave(&scope);
}
