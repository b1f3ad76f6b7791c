/*-------------------------------------------------------------------------
 *
 * trigger_decide.c
 *	  Which trigger, if any, an event moves the item with.
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

/* ---------- deciding ---------- */


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

bool
trig_any_applies(List *triggers, const EventCall *c, bool any_pipeline)
{
	ListCell   *lc;

	foreach(lc, triggers)
		if (applies((CrmTrigger *) lfirst(lc), c, any_pipeline))
			return true;
	return false;
}

bool
trig_any_condition(List *triggers, const EventCall *c)
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
bool
trig_any_reads_event(List *triggers, const EventCall *c)
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
void
trig_decide(const EventCall *c, List *triggers, Outcome *o)
{
	CrmEvalContext cx;
	ListCell   *lc;
	const CrmTrigger *first_false = NULL;
	const CrmTrigger *first_back = NULL;
	const CrmTrigger *first_invalid = NULL;
	int			max = list_length(triggers);

	crm_eval_context_init(&cx, c->entity_type, c->item_id, c->tuple, c->desc);
	cx.event = c->payload;
	foreach(lc, triggers)
	{
		const CrmTrigger *t = (CrmTrigger *) lfirst(lc);
		char	   *cycle = NULL;

		if (!applies(t, c, false))
			continue;
		if (t->invalid != NULL)
		{
			/* its row is broken: it fails alone, the others still decide */
			note(o, t, "failed", max);
			if (first_invalid == NULL)
				first_invalid = t;
			continue;
		}
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
	if (first_invalid != NULL)
	{
		o->status = "failed";
		o->error = first_invalid->invalid;
		o->trigger = first_invalid;
	}
	else if (first_back != NULL)
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

