/*-------------------------------------------------------------------------
 *
 * trigger_load.c
 *	  Loading the triggers of an entity type into the rule cache.
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
static void *
triggers_load(const char *entity_type)
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

/* The rule cache's slot of the triggers (crm_triggers_load_init). */
static int	triggers_slot = -1;

const CrmEntityTriggers *
crm_entity_triggers(const char *entity_type)
{
	return crm_entity_rules(entity_type, triggers_slot);
}

void
crm_triggers_load_init(void)
{
	triggers_slot = crm_rule_cache_entity_slot(triggers_load);
}
