/*-------------------------------------------------------------------------
 *
 * trigger_explain.c
 *	  What each trigger of an item's pipeline would decide if its event
 *	  happened now (crm.explain, admin/explain.c).
 *
 * Part of the CRM triggers (src/triggers/).  Each trigger is put to the
 * decision its own event would get: an event with the trigger's key (form
 * code, URL, application code), for field_changed a change of the fields it
 * watches, and an empty payload ({=Event:key} reads NULL).  The decision is
 * trig_decide's, over every trigger of that event, so a trigger that an
 * earlier one (in stage order) decides before is reported as shadowed by
 * it, as the real event would be decided.  Nothing is logged or moved.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "utils/rel.h"

#include "engine/robots.h"
#include "core/rule_cache.h"
#include "triggers/trigger_explain.h"
#include "triggers/trigger_int.h"

typedef struct Decision
{
	EventCall  *c;
	List	   *triggers;
	Outcome    *o;
} Decision;

static void
decide(void *arg)
{
	Decision   *d = arg;

	trig_decide(d->c, d->triggers, d->o);
}

static int
trigger_order(const ListCell *a, const ListCell *b)
{
	const CrmTrigger *x = lfirst(a);
	const CrmTrigger *y = lfirst(b);

	if (x->stage_sort != y->stage_sort)
		return x->stage_sort < y->stage_sort ? -1 : 1;
	if (x->stage_id != y->stage_id)
		return x->stage_id < y->stage_id ? -1 : 1;
	if (x->event->id != y->event->id)
		return x->event->id < y->event->id ? -1 : 1;
	return x->id < y->id ? -1 : x->id > y->id ? 1 : 0;
}

static CrmTriggerVerdict *
explain_one(const CrmEntityTriggers *ets, const CrmTrigger *t, EventCall *base,
			bool careful)
{
	CrmTriggerVerdict *v = palloc0(sizeof(CrmTriggerVerdict));
	EventCall	c = *base;
	Outcome		o;
	Decision	d;
	ErrorData  *edata;
	int			i;

	v->trigger = t;
	c.event = t->event;
	c.key = t->key;
	if (t->event->id == CRM_EV_FIELD_CHANGED)
	{
		bool	   *changed = palloc0(sizeof(bool) * Max(ets->nwatched, 1));

		for (i = 0; i < t->nfields; i++)
			changed[t->fields[i]] = true;
		c.changed = changed;
	}
	memset(&o, 0, sizeof(o));
	d.c = &c;
	d.triggers = ets->by_event[t->event->id];
	d.o = &o;
	if (careful)
		edata = crm_run_isolated(decide, &d);
	else
	{
		decide(&d);
		edata = NULL;
	}
	if (edata != NULL)
	{
		/* the condition that failed is the event's failure */
		if (o.trigger == NULL || o.trigger == t)
		{
			v->outcome = "failed";
			v->error = pstrdup(edata->message);
		}
		else
		{
			v->outcome = "shadowed";
			v->decided_by = o.trigger;
			v->decided_as = "failed";
			v->error = pstrdup(edata->message);
		}
		FreeErrorData(edata);
		return v;
	}
	for (i = 0; i < o.nchecked; i++)
		if (o.checked_ids[i] == t->id)
		{
			v->outcome = o.checked_results[i];
			if (o.trigger == t && o.error != NULL)
				v->error = o.error;
			else if (strcmp(v->outcome, "failed") == 0)
				v->error = t->invalid;
			return v;
		}
	v->outcome = "shadowed";
	v->decided_by = o.trigger;
	v->decided_as = o.status;
	return v;
}

List *
crm_triggers_explain(const char *entity_type, int64 item_id, HeapTuple tuple,
					 TupleDesc desc, int64 stage_id, bool careful)
{
	const CrmEntityTriggers *ets = crm_entity_triggers(entity_type);
	const CrmStageInfo *st = crm_stage_info(stage_id);
	EventCall	base;
	List	   *mine = NIL;
	List	   *verdicts = NIL;
	ListCell   *lc;
	int			e;

	if (ets == NULL || st == NULL)
		return NIL;
	memset(&base, 0, sizeof(base));
	base.entity_type = entity_type;
	base.item_id = item_id;
	base.stage_id = stage_id;
	base.pipeline_id = st->pipeline_id;
	base.stage_sort = st->sort;
	base.tuple = tuple;
	base.desc = desc;
	for (e = 0; e < CRM_N_EVENTS; e++)
		foreach(lc, ets->by_event[e])
		{
			CrmTrigger *t = lfirst(lc);

			if (t->pipeline_id == base.pipeline_id)
				mine = lappend(mine, t);
		}
	list_sort(mine, trigger_order);
	foreach(lc, mine)
		verdicts = lappend(verdicts, explain_one(ets, lfirst(lc), &base, careful));
	return verdicts;
}
