/*-------------------------------------------------------------------------
 *
 * trigger_fire.c
 *	  Running CRM triggers: an event happened for an item, which trigger (if
 *	  any) moves it, and to which stage (SPEC §4).
 *
 * The triggers of an entity type are loaded once into the rule cache
 * (trigger_load.c), grouped by event in stage order, with a bitmask of
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
 * When no trigger's condition holds, condition_false is logged; when no
 * trigger of the item's pipeline listens to an event that some trigger of
 * the entity type listens to (another pipeline's, another form's ...),
 * no_trigger, in a compact row without the payload.  An event nobody listens
 * to is not detected at all (the bitmask below) and leaves no row.  One log
 * row per event and item (crm.robot_log, kind trigger) lists every trigger
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

#include "engine/robots.h"
#include "core/citus.h"
#include "core/scope.h"
#include "core/rowsink.h"
#include "core/rule_cache.h"
#include "core/spi_util.h"
#include "triggers/triggers.h"

#include "triggers/trigger_int.h"

/* ---------- items ---------- */

/* Prepared statements on one item table. */
typedef struct TablePlans
{
	char		table[CRM_NAME_LEN];
	SPIPlanPtr	lock;			/* the row, locked for a move */
	SPIPlanPtr	read;			/* the row, not locked (tables Citus shards) */
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
	crm_plan(&tp->read, psprintf("SELECT * FROM %s WHERE %s", qualified, where), 2, types);
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
	Oid			relid = item_relid(entity_type);
	Relation	rel;
	Oid			pk;
	ScanKeyData key;
	SysScanDesc scan;
	HeapTuple	tup;
	Snapshot	snapshot;
	bool		found = false;

	/* Citus keeps the rows in shards (core/citus.h): a SELECT reads them */
	if (crm_table_is_distributed(relid))
	{
		TablePlans *tp = plans_for(entity_type);
		Datum		vals[2];

		vals[0] = Int64GetDatum(item_id);
		vals[1] = CStringGetTextDatum(entity_type);
		crm_exec(tp->read, vals, NULL, true, 1);
		if (SPI_processed == 0)
			return false;
		*tuple = heap_copytuple(SPI_tuptable->vals[0]);
		*desc = CreateTupleDescCopy(SPI_tuptable->tupdesc);
		return true;
	}
	rel = table_open(relid, AccessShareLock);
	pk = RelationGetPrimaryKeyIndex(rel);
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
 * Triggers act as automation (core/scope.h, as robots do: an application
 * role that records a call need not write the log or move items it cannot
 * see), with the rule cache pinned and SPI connected.  leave_automation after the
 * PG_FINALLY that unpins.
 */
static void
enter_automation(CrmScope *scope)
{
	crm_scope_enter(scope, CRM_SCOPE_SPI);
	crm_rule_cache_pin();
}

static void
leave_automation(CrmScope *scope)
{
	crm_scope_leave(scope);
}

/* ---------- running ---------- */

/*
 * The event reached the decision for an item in a stage, but no trigger of
 * the item's pipeline listens to it (those of the entity type that do are on
 * other pipelines, or wait for another form, URL, code, service or field):
 * a compact row, without the event's payload, says so (no_trigger).
 */
static void
log_no_trigger(const EventCall *c)
{
	trig_log_compact(c->entity_type, c->item_id, c->event, "no_trigger", trig_no_trigger_detail(c));
}

/*
 * Runs a step in a subtransaction (crm_run_isolated_retrying: again after a
 * deadlock or a serialization failure).  An error rolls back
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
	ErrorData  *edata = crm_run_isolated_retrying(step_call, &s);

	if (edata != NULL)
	{
		o->status = "failed";
		o->error = edata->message;
	}
}

static void
decide_step(const EventCall *c, Outcome *o, void *arg)
{
	trig_decide(c, (List *) arg, o);
}

/*
 * Decides; in a subtransaction when a condition is evaluated, since it may
 * raise an error.  Nothing is written there, so the subtransaction gets no
 * transaction id of its own.
 */
static void
decide_safely(const EventCall *c, List *triggers, Outcome *o)
{
	if (trig_any_condition(triggers, c))
		run_isolated(decide_step, c, o, triggers);
	else
		trig_decide(c, triggers, o);
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
	trig_log_outcome(c->entity_type, c->item_id, c->event, o->trigger, "fired", NULL, m->detail);
	trig_record_history(c->entity_type, c->item_id, c->stage_id, o->trigger, m->user_id);
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
 * Locks the item for a move, as a step of its own (crm_run_isolated_retrying):
 * waiting for the row can end in a deadlock, which is tried again and at
 * worst fails the event, never the statement that caused it.
 */
typedef struct LockCall
{
	EventCall  *c;
	bool		found;
} LockCall;

static void
lock_step(void *arg)
{
	LockCall   *l = arg;

	l->found = load_item(l->c->entity_type, l->c->item_id, true, &l->c->tuple, &l->c->desc);
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

	check_stack_depth();
	memset(&o, 0, sizeof(o));
	*move_to = 0;
	if (c->payload == NULL && c->source_row != NULL && trig_any_reads_event(triggers, c))
		c->payload = trig_row_to_jsonb(c->source_row, c->source_desc);
	decide_safely(c, triggers, &o);
	if (o.status == NULL)
	{
		/* a responsible change, or the item moved to another pipeline meanwhile */
		log_no_trigger(c);
		return "no_trigger";
	}

	if (strcmp(o.status, "fired") == 0 && !c->locked)
	{
		LockCall	l = {c, false};
		ErrorData  *edata = crm_run_isolated_retrying(lock_step, &l);

		if (edata != NULL)
		{
			/* a deadlock three times, a lock timeout: the event fails alone */
			o.status = "failed";
			o.error = edata->message;
			trig_log_outcome(c->entity_type, c->item_id, c->event, o.trigger, o.status, o.error,
							 trig_log_detail(c, &o));
			return o.status;
		}
		if (!l.found)
			return "no_trigger";	/* deleted meanwhile */
		c->locked = true;
		c->stage_id = tuple_int8(c->tuple, c->desc, "stage_id");
		set_stage_of(c);
		return run_event(c, triggers, in_before_trigger, move_to);
	}

	detail = trig_log_detail(c, &o);
	user_id = o.trigger ? trig_acting_user(o.trigger, tuple_int8(c->tuple, c->desc, "responsible_id")) : 0;
	if (strcmp(o.status, "fired") == 0 && in_before_trigger)
	{
		remember_move(c, &o, user_id, detail);
		*move_to = o.trigger->stage_id;
	}
	else if (strcmp(o.status, "fired") == 0)
	{
		move_item(c, &o, detail, user_id);
		if (strcmp(o.status, "failed") == 0)
			trig_log_outcome(c->entity_type, c->item_id, c->event, o.trigger, "failed", o.error, detail);
	}
	else
		trig_log_outcome(c->entity_type, c->item_id, c->event, o.trigger, o.status, o.error, detail);
	return o.status;
}

static const char *
fire(EventCall *c, bool missing_ok)
{
	const CrmEntityTriggers *ets = crm_entity_triggers(c->entity_type);
	const char *result = "no_trigger";
	CrmScope	scope;
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
		if (!missing_ok || trig_any_applies(triggers, c, true))
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
				if (trig_any_applies(triggers, c, false))
					result = run_event(c, triggers, false, &move_to);
				else
					log_no_trigger(c);
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

/*
 * Whether the update may change a watched field or the responsible user,
 * tested on the rows' bytes without entering the owner's scope: most
 * updates of an item change neither, and evaluating the fields on both rows
 * costs far more than comparing the columns they read.
 */
static bool
maybe_item_event(const CrmEntityTriggers *ets, HeapTuple oldtuple, HeapTuple newtuple,
				 TupleDesc desc)
{
	int			i;

	if (ets->events & CRM_EVENT_BIT(CRM_EV_FIELD_CHANGED))
		for (i = 0; i < ets->nwatched; i++)
			if (!crm_expr_same_in_rows(ets->watched[i], oldtuple, newtuple, desc))
				return true;
	if ((ets->events & CRM_EVENT_BIT(CRM_EV_RESPONSIBLE_CHANGED)) &&
		!crm_expr_same_in_rows(ets->responsible, oldtuple, newtuple, desc))
		return true;
	return false;
}

static Jsonb *
changed_fields_payload(const CrmEntityTriggers *ets, const bool *changed)
{
	JsonbParseState *st = NULL;
	int			i;

	pushJsonbValue(&st, WJB_BEGIN_OBJECT, NULL);
	trig_push_key(&st, "fields");
	pushJsonbValue(&st, WJB_BEGIN_ARRAY, NULL);
	for (i = 0; i < ets->nwatched; i++)
		if (changed[i])
			trig_push_string(&st, WJB_ELEM, ets->watched_names[i]);
	pushJsonbValue(&st, WJB_END_ARRAY, NULL);
	return JsonbValueToJsonb(pushJsonbValue(&st, WJB_END_OBJECT, NULL));
}

static void
push_user_id(JsonbParseState **st, const char *key, CrmValue v)
{
	JsonbValue	jv;
	int64		id;

	trig_push_key(st, key);
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

static int64
crm_triggers_before_update(Relation rel, const char *entity_type,
						   HeapTuple oldtuple, HeapTuple newtuple,
						   AttrNumber id_att, int64 stage_id)
{
	const CrmEntityTriggers *ets = crm_entity_triggers(entity_type);
	TupleDesc	desc = RelationGetDescr(rel);
	EventCall	c;
	CrmEvalContext oldcx;
	CrmEvalContext newcx;
	CrmScope	scope;
	int64		move_to = 0;
	bool		isnull;

	/* no trigger on a field or responsible change of this entity type */
	if (ets == NULL || !(ets->events & ITEM_EVENTS) || id_att == InvalidAttrNumber)
		return 0;
	/* an update that changes none of the fields they watch: nothing to do */
	if (!maybe_item_event(ets, oldtuple, newtuple, desc))
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
			if (any && trig_any_applies(ets->by_event[CRM_EV_FIELD_CHANGED], &c, false))
			{
				c.payload = changed_fields_payload(ets, changed);
				(void) run_event(&c, ets->by_event[CRM_EV_FIELD_CHANGED], true, &move_to);
			}
			else if (any)
				log_no_trigger(&c); /* a field watched on another pipeline only */
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

static CrmTriggerMove *
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

static bool
crm_triggers_begin_move(const CrmTriggerMove *move)
{
	const PendingMove *m = (const PendingMove *) move;
	char	   *cycle = NULL;
	bool		pushed;

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	pushed = crm_lineage_push('t', m->trigger.id, m->entity_type, m->item_id, &cycle);
	trig_log_outcome(m->entity_type, m->item_id, m->trigger.event, &m->trigger, "fired", NULL, m->detail);
	trig_record_history(m->entity_type, m->item_id, m->from_stage, &m->trigger, m->user_id);
	SPI_finish();
	return pushed;
}

static const CrmMoveHooks move_hooks = {
	crm_triggers_before_update,
	crm_triggers_take_move,
	crm_triggers_begin_move
};

void
crm_triggers_init(void)
{
	crm_triggers_load_init();
	crm_register_move_hooks(&move_hooks);
}
