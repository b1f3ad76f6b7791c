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
 * The shape of a stored trigger's parameters, as crm._validate_trigger
 * checks it at save time without the catalog: a direct UPDATE of
 * crm.trigger may have left anything there.
 */
static void
check_params_shape(const CrmEventDesc *ev, Jsonb *params)
{
	const CrmEventParam *p;

	if (params == NULL || !JB_ROOT_IS_OBJECT(params) || JB_ROOT_IS_SCALAR(params))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("params must be a JSON object")));
	for (p = ev->params; p->name != NULL; p++)
	{
		JsonbValue *v = getKeyJsonValueFromContainer(&params->root, p->name,
													 strlen(p->name), NULL);

		if (v == NULL || v->type == jbvNull)
		{
			if (p->required)
				ereport(ERROR,
						(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
						 errmsg("missing required parameter \"%s\" for event \"%s\"",
								p->name, ev->name)));
			continue;
		}
		if (p->type == CRM_EP_FIELDS)
		{
			JsonbIterator *it;
			JsonbValue	e;
			JsonbIteratorToken tok;

			if (v->type != jbvBinary || !JsonContainerIsArray(v->val.binary.data) ||
				JsonContainerSize(v->val.binary.data) == 0)
				ereport(ERROR,
						(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
						 errmsg("parameter \"%s\" must be an array of field names", p->name)));
			it = JsonbIteratorInit(v->val.binary.data);
			while ((tok = JsonbIteratorNext(&it, &e, true)) != WJB_DONE)
				if (tok == WJB_ELEM && (e.type != jbvString || e.val.string.len == 0))
					ereport(ERROR,
							(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
							 errmsg("parameter \"%s\" must hold field names", p->name)));
		}
		else if (v->type != jbvString || v->val.string.len == 0)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("parameter \"%s\" must be a non-empty string", p->name)));
	}
}

/* One trigger row being compiled (the guarded part of the loading). */
typedef struct TriggerLoad
{
	CrmTrigger *t;
	Jsonb	   *params;
	Jsonb	   *condition;
	List	  **names;
	const char *what;
} TriggerLoad;

static void
trigger_compile(void *arg)
{
	TriggerLoad *tl = arg;
	CrmTrigger *t = tl->t;

	tl->what = "parameters";
	check_params_shape(t->event, tl->params);
	if (t->event->key_param)
		t->key = jsonb_string_key(tl->params, t->event->key_param);
	if (t->event->id == CRM_EV_FIELD_CHANGED)
	{
		ListCell   *lc;

		/* the field names compile as references */
		load_fields(t, tl->params, tl->names);
		foreach(lc, *tl->names)
			(void) crm_expr_compile_text(psprintf("{{%s}}", (char *) lfirst(lc)), "params.fields");
	}
	tl->what = "condition";
	if (tl->condition != NULL)
	{
		t->condition = crm_expr_compile_condition(tl->condition, "condition");
		t->reads_event = crm_expr_refs(t->condition, "Event") != NIL;
	}
}

/*
 * Loads the active triggers of an entity type, compiled into the current
 * memory context (the rule cache's).  A trigger whose row fails its checks
 * stays in the list with the error (t->invalid), and fails the events it
 * would decide (trigger_decide.c).
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
	SPITupleTable *tuptable;
	uint64		i;
	uint64		n;
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
	tuptable = SPI_tuptable;	/* a check below may run queries */
	n = SPI_processed;
	for (i = 0; i < n; i++)
	{
		HeapTuple	tup = tuptable->vals[i];
		TupleDesc	desc = tuptable->tupdesc;
		TriggerLoad tl;
		List	   *fields = NIL;
		ErrorData  *edata;
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
		d = SPI_getbinval(tup, desc, 7, &isnull);
		params = isnull ? NULL : DatumGetJsonbPCopy(d);
		d = SPI_getbinval(tup, desc, 8, &isnull);
		memset(&tl, 0, sizeof(tl));
		tl.t = t;
		tl.params = params;
		tl.condition = isnull ? NULL : DatumGetJsonbPCopy(d);
		tl.names = &fields;
		/* the watched fields join the list only when the trigger is valid */
		fields = list_copy(names);
		edata = crm_run_isolated(trigger_compile, &tl);
		if (edata != NULL)
		{
			t->invalid = psprintf("trigger %lld has %s: %s", (long long) t->id,
								  strcmp(tl.what, "condition") == 0 ? "an invalid condition"
								  : "invalid parameters", edata->message);
			FreeErrorData(edata);
			t->key = NULL;
			t->nfields = 0;
			t->condition = NULL;
			t->reads_event = false;
		}
		else
			names = fields;
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
