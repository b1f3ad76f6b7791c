/*-------------------------------------------------------------------------
 *
 * explain.c
 *	  crm.explain(entity_type, id, stage): why automation would (or would
 *	  not) act for an item, rule by rule, without acting.
 *
 * One row per robot of the item's stage (or of the stage given, as if the
 * item entered it), per trigger of that stage's pipeline and per process
 * template that auto-starts for the entity type, with the decision a real
 * run would make now:
 *
 *	  robots     yes, condition_false, delayed (a delay, a wait, a control,
 *				 or chained after_previous to a delayed robot: its due time in
 *				 detail), waits (after a wait, or a robocall waiting for its
 *				 result), not_applicable (an earlier robot ends the sequence:
 *				 change_stage, delete_item, ...), loop_stopped, failed (its row
 *				 is invalid, its condition or parameters raise an error);
 *	  triggers   yes (the item would move), condition_false, already_there,
 *				 backwards, loop_stopped, failed, not_applicable (another
 *				 trigger of the same event decides first);
 *	  processes  yes (the item's next change starts it), not_applicable,
 *				 failed (its definition fails its check).
 *
 * The sequence of robots is walked as robots.c's run_sequence walks it.
 * Conditions are taken apart by expr_explain.c (the condition as written,
 * with the item's values, each part's value); parameters are rendered as
 * the executors render them.  What explain cannot know without running the
 * robots is said in the documentation: every condition is read on the item
 * as it is now (an earlier robot's update_item is not seen, nor outputs of
 * earlier robots), and a trigger's condition reads an empty event payload.
 *
 * Rights: the item is read as the caller (its table's privileges and row
 * security apply: a caller who cannot read the item gets an error), then
 * rules are read, conditions evaluated and parameters rendered as the
 * automation owner in its scope (core/scope.h), as a real run does, each
 * robot's in a subtransaction of its own so that an error is that robot's
 * "failed".  Nothing is written; the item is not locked.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "catalog/namespace.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "funcapi.h"
#include "mb/pg_wchar.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/jsonb.h"
#include "utils/lsyscache.h"
#include "utils/numeric.h"
#include "utils/timestamp.h"

#include "actions/actions.h"
#include "core/guc.h"
#include "core/rule_cache.h"
#include "core/scope.h"
#include "core/spi_util.h"
#include "engine/robots.h"
#include "engine/work_time.h"
#include "expr/expr.h"
#include "expr/expr_explain.h"
#include "processes/processes.h"
#include "triggers/trigger_explain.h"

PG_FUNCTION_INFO_V1(crm_explain);

#define EXPLAIN_COLS 7
#define CONDITION_MAX 2000		/* bytes of a condition shown */

/* What the rows are written to, and the item they are about. */
typedef struct Explain
{
	ReturnSetInfo *rsinfo;
	const char *entity_type;
	int64		item_id;
	int64		stage_id;		/* the stage considered, 0: none */
	bool		entering;		/* as if it entered stage_id (given) */
	bool		careful;		/* each step in a subtransaction of its own */
	List	   *rows;			/* ExplainRow *, written at the end */
	MemoryContext cxt;			/* where rows are kept (the scope's SPI
								 * connection has a context of its own) */
	HeapTuple	tuple;
	TupleDesc	desc;
	CrmEvalContext cx;
} Explain;

/* One row being built. */
typedef struct Row
{
	const char *kind;
	int64		rule_id;
	const char *rule;
	const char *decision;
	const char *condition;
	const char *substituted;
	JsonbParseState *detail;
} Row;

/* A row ready for the tuplestore. */
typedef struct ExplainRow
{
	Datum		vals[EXPLAIN_COLS];
	bool		nulls[EXPLAIN_COLS];
} ExplainRow;

/*
 * Runs one step of the explanation.  Carefully, in a subtransaction of its
 * own, whose error is returned (the step's "failed"); otherwise directly,
 * an error then ending the optimistic pass (crm_explain runs it again
 * carefully), as robots.c runs a batch.
 */
static ErrorData *
run_step(Explain *ex, void (*body) (void *arg), void *arg)
{
	if (ex->careful)
		return crm_run_isolated(body, arg);
	body(arg);
	return NULL;
}

/* ---------- detail jsonb ---------- */

static void
detail_key(Row *row, const char *key)
{
	JsonbValue	k;

	k.type = jbvString;
	k.val.string.val = (char *) key;
	k.val.string.len = strlen(key);
	pushJsonbValue(&row->detail, WJB_KEY, &k);
}

static void
detail_text(Row *row, const char *key, const char *value)
{
	JsonbValue	v;

	if (value == NULL)
		return;
	detail_key(row, key);
	v.type = jbvString;
	v.val.string.val = (char *) value;
	v.val.string.len = strlen(value);
	pushJsonbValue(&row->detail, WJB_VALUE, &v);
}

static void
detail_bool(Row *row, const char *key, bool value)
{
	JsonbValue	v;

	detail_key(row, key);
	v.type = jbvBool;
	v.val.boolean = value;
	pushJsonbValue(&row->detail, WJB_VALUE, &v);
}

static void
detail_int(Row *row, const char *key, int64 value)
{
	JsonbValue	v;

	detail_key(row, key);
	v.type = jbvNumeric;
	v.val.numeric = int64_to_numeric(value);
	pushJsonbValue(&row->detail, WJB_VALUE, &v);
}

static void
detail_jsonb(Row *row, const char *key, Jsonb *value)
{
	JsonbValue	v;

	if (value == NULL)
		return;
	detail_key(row, key);
	if (JB_ROOT_IS_SCALAR(value))
		(void) JsonbExtractScalar(&value->root, &v);
	else
		crm_jsonb_binary(value, &v);
	pushJsonbValue(&row->detail, WJB_VALUE, &v);
}

static void
detail_time(Row *row, const char *key, TimestampTz t)
{
	detail_text(row, key, timestamptz_to_str(t));
}

static void
row_begin(Row *row, const char *kind, int64 rule_id, const char *rule)
{
	memset(row, 0, sizeof(*row));
	row->kind = kind;
	row->rule_id = rule_id;
	row->rule = rule;
	pushJsonbValue(&row->detail, WJB_BEGIN_OBJECT, NULL);
}

static void
row_end(Explain *ex, Row *row)
{
	MemoryContext old = MemoryContextSwitchTo(ex->cxt);
	ExplainRow *er = palloc0(sizeof(ExplainRow));
	Datum	   *vals = er->vals;
	bool	   *nulls = er->nulls;
	Jsonb	   *detail = JsonbValueToJsonb(pushJsonbValue(&row->detail, WJB_END_OBJECT, NULL));

	vals[0] = CStringGetTextDatum(row->kind);
	vals[1] = Int64GetDatum(row->rule_id);
	if (row->rule)
		vals[2] = CStringGetTextDatum(row->rule);
	else
		nulls[2] = true;
	vals[3] = CStringGetTextDatum(row->decision);
	if (row->condition)
		vals[4] = CStringGetTextDatum(row->condition);
	else
		nulls[4] = true;
	if (row->substituted)
		vals[5] = CStringGetTextDatum(row->substituted);
	else
		nulls[5] = true;
	vals[6] = JsonbPGetDatum(detail);
	ex->rows = lappend(ex->rows, er);
	MemoryContextSwitchTo(old);
}

/* ---------- conditions ---------- */

typedef struct CondCall
{
	const CrmExpr *e;
	CrmEvalContext *cx;
	CrmExprExplained out;
} CondCall;

static void
cond_call(void *arg)
{
	CondCall   *c = arg;

	crm_expr_explain(c->e, c->cx, &c->out);
}

/*
 * Explains a condition into the row (condition, substituted, parts); true
 * when it holds (or there is none), false when it does not; an error is
 * put in *error and gives false.
 */
static bool
explain_condition(Explain *ex, Row *row, const CrmExpr *e, char **error)
{
	CondCall	c;
	ErrorData  *edata;

	*error = NULL;
	if (e == NULL)
		return true;
	row->condition = crm_expr_source(e);
	/* as written, within psql's reach: the whole text is the rule's */
	if (strlen(row->condition) > CONDITION_MAX)
		row->condition = psprintf("%.*s…", pg_mbcliplen(row->condition, strlen(row->condition),
													   CONDITION_MAX), row->condition);
	memset(&c, 0, sizeof(c));
	c.e = e;
	c.cx = &ex->cx;
	edata = run_step(ex, cond_call, &c);
	if (edata != NULL)
	{
		*error = pstrdup(edata->message);
		FreeErrorData(edata);
		if (row->condition[0] == '=')
			row->condition++;
		return false;
	}
	/*
	 * A formula as its author wrote it; a JSON condition as the formula it
	 * stands for (its JSON goes to the detail), so that both columns read
	 * alike.
	 */
	if (row->condition[0] == '=')
		row->condition++;
	else
	{
		detail_text(row, "condition_json", row->condition);
		row->condition = c.out.written;
	}
	row->substituted = c.out.substituted;
	detail_jsonb(row, "parts", c.out.parts);
	if (crm_expr_refs(e, "Robot") != NIL)
		detail_text(row, "condition_note",
					"the condition reads outputs of earlier robots, empty until they run");
	detail_bool(row, "condition_value", c.out.value);
	return c.out.value;
}

/* ---------- parameters ---------- */

static void
push_string(JsonbParseState **st, JsonbIteratorToken tok, const char *s)
{
	JsonbValue	v;

	if (s == NULL)
	{
		v.type = jbvNull;
		pushJsonbValue(st, tok, &v);
		return;
	}
	v.type = jbvString;
	v.val.string.val = (char *) s;
	v.val.string.len = strlen(s);
	pushJsonbValue(st, tok, &v);
}

static void
push_int(JsonbParseState **st, JsonbIteratorToken tok, int64 i)
{
	JsonbValue	v;

	v.type = jbvNumeric;
	v.val.numeric = int64_to_numeric(i);
	pushJsonbValue(st, tok, &v);
}

static void
push_jsonb(JsonbParseState **st, Jsonb *j)
{
	JsonbValue	v;

	if (j == NULL)
		v.type = jbvNull;
	else if (JB_ROOT_IS_SCALAR(j))
		(void) JsonbExtractScalar(&j->root, &v);
	else
		crm_jsonb_binary(j, &v);
	pushJsonbValue(st, WJB_VALUE, &v);
}

/* One parameter, rendered as its executor renders it. */
static void
render_param(CrmActionCall *call, const CrmCompiledParam *p, JsonbParseState **st)
{
	const char *name = p->desc->name;
	JsonbValue	v;
	ListCell   *lc;
	ListCell   *lc2;

	push_string(st, WJB_KEY, name);
	switch (p->desc->type)
	{
		case CRM_P_TEXT:
		case CRM_P_ENUM:
		case CRM_P_FIELD:
		case CRM_P_INTERVAL:
			if (p->expr == NULL)
				push_jsonb(st, p->raw);
			else
				push_string(st, WJB_VALUE, crm_param_text(call, name));
			break;
		case CRM_P_INT:
			{
				int64		i;

				if (crm_param_int(call, name, &i))
					push_int(st, WJB_VALUE, i);
				else
					push_string(st, WJB_VALUE, NULL);
			}
			break;
		case CRM_P_BOOL:
			v.type = jbvBool;
			v.val.boolean = crm_param_bool(call, name, false);
			pushJsonbValue(st, WJB_VALUE, &v);
			break;
		case CRM_P_WHEN:
			{
				TimestampTz t;

				push_string(st, WJB_VALUE, crm_param_when(call, name, &t) ?
							timestamptz_to_str(t) : NULL);
			}
			break;
		case CRM_P_USERS:
			{
				int64	   *ids;
				int			n = crm_param_users(call, name, &ids);
				int			i;

				pushJsonbValue(st, WJB_BEGIN_ARRAY, NULL);
				for (i = 0; i < n; i++)
					push_int(st, WJB_ELEM, ids[i]);
				pushJsonbValue(st, WJB_END_ARRAY, NULL);
			}
			break;
		case CRM_P_ADDRESSES:
			pushJsonbValue(st, WJB_BEGIN_ARRAY, NULL);
			foreach(lc, p->items)
				push_string(st, WJB_ELEM, crm_expr_render((CrmExpr *) lfirst(lc), call->cx));
			pushJsonbValue(st, WJB_END_ARRAY, NULL);
			break;
		case CRM_P_FIELDS:
			pushJsonbValue(st, WJB_BEGIN_OBJECT, NULL);
			forboth(lc, p->field_names, lc2, p->field_exprs)
			{
				CrmExpr    *e = (CrmExpr *) lfirst(lc2);

				push_string(st, WJB_KEY, (char *) lfirst(lc));
				push_string(st, WJB_VALUE, e ? crm_expr_render(e, call->cx) : NULL);
			}
			pushJsonbValue(st, WJB_END_OBJECT, NULL);
			break;
		case CRM_P_JSON:
			push_jsonb(st, crm_param_json(call, name));
			break;
		case CRM_P_STAGE:
			push_int(st, WJB_VALUE, crm_param_stage(call, name));
			break;
		case CRM_P_FILES:
		case CRM_P_PIPELINE:
			push_jsonb(st, p->raw);
			break;
	}
}

typedef struct ParamsCall
{
	CrmActionCall *call;
	Jsonb	   *result;
} ParamsCall;

static void
params_call(void *arg)
{
	ParamsCall *pc = arg;
	JsonbParseState *st = NULL;
	int			i;

	pushJsonbValue(&st, WJB_BEGIN_OBJECT, NULL);
	for (i = 0; i < pc->call->params->n; i++)
		if (pc->call->params->params[i].present)
			render_param(pc->call, &pc->call->params->params[i], &st);
	pc->result = JsonbValueToJsonb(pushJsonbValue(&st, WJB_END_OBJECT, NULL));
}

static void
robot_call(CrmActionCall *call, Explain *ex, const CrmRobot *r)
{
	memset(call, 0, sizeof(*call));
	call->action = r->action;
	call->params = r->params;
	call->cx = &ex->cx;
	call->robot_id = r->id;
	call->stage_id = ex->stage_id;
	call->where = r->where;
}

static bool
expr_reads_outputs(const CrmExpr *e)
{
	return e != NULL && crm_expr_refs(e, "Robot") != NIL;
}

/* Do the robot's parameters read {=Robot:NAME.key}? */
static bool
reads_outputs(const CrmRobot *r)
{
	int			i;

	for (i = 0; i < r->params->n; i++)
	{
		const CrmCompiledParam *p = &r->params->params[i];
		ListCell   *lc;

		if (!p->present)
			continue;
		if (expr_reads_outputs(p->expr))
			return true;
		foreach(lc, p->items)
			if (expr_reads_outputs(lfirst(lc)))
				return true;
		foreach(lc, p->field_exprs)
			if (expr_reads_outputs(lfirst(lc)))
				return true;
		/* a JSON parameter's strings are compiled when rendered */
		if (p->desc->type == CRM_P_JSON && p->raw != NULL &&
			strstr(JsonbToCString(NULL, &p->raw->root, VARSIZE(p->raw)), "{=Robot:") != NULL)
			return true;
	}
	return false;
}

/*
 * The robot's parameters rendered for the item, into the row's detail;
 * NULL, or the error rendering raised.
 */
static char *
explain_params(Explain *ex, Row *row, const CrmRobot *r, bool *hold)
{
	CrmActionCall call;
	ParamsCall	pc;
	ErrorData  *edata;

	robot_call(&call, ex, r);
	pc.call = &call;
	pc.result = NULL;
	edata = run_step(ex, params_call, &pc);
	if (edata != NULL)
	{
		char	   *msg = pstrdup(edata->message);

		FreeErrorData(edata);
		if (!reads_outputs(r))
			return msg;
		/* the outputs of the robots before it exist only once they ran */
		detail_text(row, "params_error", msg);
		detail_text(row, "note", "the parameters read outputs of earlier robots, known only when they run");
		return NULL;
	}
	detail_jsonb(row, "params", pc.result);
	/* a robocall waiting for its result holds the robots after it */
	if (hold != NULL && (r->action->flags & CRM_ACT_OUTBOUND) &&
		crm_param_if_any(&call, "wait_for_result") != NULL)
	{
		JsonbValue *w = getKeyJsonValueFromContainer(&pc.result->root, "wait_for_result", 15, NULL);

		*hold = w != NULL && w->type == jbvBool && w->val.boolean;
	}
	return NULL;
}

/* ---------- robots ---------- */

/* A delayed robot's due time, as robots.c computes it; false with *why when it has none. */
typedef struct DueCall
{
	Explain    *ex;
	const CrmRobot *r;
	TimestampTz due;
	bool		has_due;
} DueCall;


static void
due_call(void *arg)
{
	DueCall    *d = arg;
	const CrmRobot *r = d->r;
	TimestampTz now = GetCurrentTransactionStartTimestamp();

	d->has_due = true;
	if (r->delay_kind == CRM_DELAY_AFTER && r->delay_work_time)
		d->due = crm_work_time_add(crm_work_schedule(), now, r->delay_after);
	else if (r->delay_kind == CRM_DELAY_AFTER)
		d->due = DatumGetTimestampTz(DirectFunctionCall2(timestamptz_pl_interval,
														 TimestampTzGetDatum(now),
														 IntervalPGetDatum(r->delay_after)));
	else
	{
		CrmExpr    *e = crm_expr_compile_text(psprintf("{{%s}}", r->delay_field), "delay.at");

		if (!crm_value_to_timestamptz(crm_expr_eval(e, &d->ex->cx), &d->due))
		{
			d->has_due = false;
			return;
		}
		if (r->delay_offset)
			d->due = DatumGetTimestampTz(DirectFunctionCall2(timestamptz_pl_interval,
															 TimestampTzGetDatum(d->due),
															 IntervalPGetDatum(r->delay_offset)));
	}
}

/* A wait's or a control's interval parameter ("for" / "after"), as a due time. */
typedef struct ScheduleCall
{
	Explain    *ex;
	const CrmRobot *r;
	TimestampTz due;
	bool		has_due;
	bool		client_activity;
} ScheduleCall;

static void
schedule_call(void *arg)
{
	ScheduleCall *s = arg;
	bool		is_wait = strcmp(s->r->action->name, "wait") == 0;
	CrmActionCall call;
	Interval   *iv = NULL;

	robot_call(&call, s->ex, s->r);
	s->has_due = crm_param_interval(&call, is_wait ? "for" : "after", &iv);
	if (s->has_due)
	{
		if (!crm_delay_in_bounds(iv))
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("the interval is too long"),
					 errdetail("A delay is at most %d days (about 100 years).", CRM_MAX_DELAY_DAYS)));
		s->due = DatumGetTimestampTz(DirectFunctionCall2(timestamptz_pl_interval,
														 TimestampTzGetDatum(GetCurrentTransactionStartTimestamp()),
														 IntervalPGetDatum(iv)));
	}
	s->client_activity = is_wait && crm_param_if_any(&call, "until_client_activity") != NULL &&
		crm_param_bool(&call, "until_client_activity", false);
}

/* Does a robot that runs end the robots after it (robots.c: stop_chain)? */
static bool
ends_sequence(Explain *ex, const CrmRobot *r)
{
	if (r->action->flags & CRM_ACT_STOPS_CHAIN)
		return true;
	/* a lead converted is moved to its success stage */
	return r->action->exec == crm_exec_convert && strcmp(ex->entity_type, "lead") == 0;
}

static void
robot_row_begin(Row *row, const CrmRobot *r)
{
	row_begin(row, "robot", r->id, r->name ? r->name : r->action_name);
	detail_text(row, "action", r->action_name);
}

typedef enum SeqState
{
	SEQ_RUNS,					/* the robots run now, in turn */
	SEQ_WAITS,					/* a wait or a held robot: the rest wait */
	SEQ_ENDED					/* a robot ends the sequence */
} SeqState;

static void
explain_robots(Explain *ex)
{
	List	   *robots = crm_stage_rules(ex->stage_id);
	CrmRobot  **seq;
	ListCell   *lc;
	int			n = 0;
	int			i = 0;
	int			steps = 0;
	SeqState	state = SEQ_RUNS;
	char	   *state_reason = NULL;

	if (robots == NIL)
		return;
	seq = palloc(sizeof(CrmRobot *) * list_length(robots));
	foreach(lc, robots)
		seq[n++] = (CrmRobot *) lfirst(lc);

	while (i < n)
	{
		CrmRobot   *r = seq[i];
		int			chain_end = i + 1;
		Row			row;
		char	   *error = NULL;
		bool		holds;

		CHECK_FOR_INTERRUPTS();
		while (chain_end < n && seq[chain_end]->after_previous)
			chain_end++;

		robot_row_begin(&row, r);
		if (state != SEQ_RUNS)
		{
			row.decision = state == SEQ_WAITS ? "waits" : "not_applicable";
			detail_text(&row, "reason", state_reason);
			if (r->invalid == NULL)
				(void) explain_condition(ex, &row, r->condition, &error);
			row_end(ex, &row);
			i++;
			continue;
		}
		if (r->invalid != NULL)
		{
			int			j;

			row.decision = "failed";
			detail_text(&row, "error", r->invalid);
			row_end(ex, &row);
			if (!r->has_delay)
			{
				i++;
				continue;
			}
			/* a delayed one's chain would have run with it */
			for (j = i + 1; j < chain_end; j++)
			{
				robot_row_begin(&row, seq[j]);
				row.decision = "not_applicable";
				detail_text(&row, "reason", psprintf("chained to %s, which fails", r->where));
				row_end(ex, &row);
			}
			i = chain_end;
			continue;
		}

		if (r->action->flags & CRM_ACT_SCHEDULES)
		{
			bool		is_wait = strcmp(r->action->name, "wait") == 0;
			ScheduleCall sc;
			ErrorData  *edata;

			if (!explain_condition(ex, &row, r->condition, &error))
			{
				row.decision = error ? "failed" : "condition_false";
				detail_text(&row, "error", error);
				row_end(ex, &row);
				i++;
				continue;
			}
			memset(&sc, 0, sizeof(sc));
			sc.ex = ex;
			sc.r = r;
			edata = run_step(ex, schedule_call, &sc);
			if (edata != NULL)
			{
				row.decision = "failed";
				detail_text(&row, "error", pstrdup(edata->message));
				FreeErrorData(edata);
				row_end(ex, &row);
				i++;
				continue;
			}
			row.decision = "delayed";
			if (sc.has_due)
				detail_time(&row, "due_at", sc.due);
			if (is_wait)
			{
				detail_text(&row, "reason", sc.has_due ?
							(sc.client_activity ? "waits until the due time or the client's activity" :
							 "waits until the due time") :
							(sc.client_activity ? "waits for the client's activity" :
							 "waits with no end of its own"));
				state = SEQ_WAITS;
				state_reason = psprintf("after the wait of %s", r->where);
			}
			else
				detail_text(&row, "reason", "checks then that the item is still in the stage");
			(void) explain_params(ex, &row, r, NULL);
			row_end(ex, &row);
			i++;
			continue;
		}

		if (r->delay_kind != CRM_DELAY_NONE)
		{
			DueCall		dc;
			ErrorData  *edata;
			int			j;

			memset(&dc, 0, sizeof(dc));
			dc.ex = ex;
			dc.r = r;
			edata = run_step(ex, due_call, &dc);
			if (edata != NULL || !dc.has_due)
			{
				row.decision = "failed";
				detail_text(&row, "error", edata ? pstrdup(edata->message) :
							psprintf("field \"%s\" of the item holds no date, so the robot has no due time",
									 r->delay_field));
				if (edata)
					FreeErrorData(edata);
				row_end(ex, &row);
				i = chain_end;	/* its chain goes nowhere either */
				continue;
			}
			for (j = i; j < chain_end; j++)
			{
				if (j > i)
				{
					robot_row_begin(&row, seq[j]);
					detail_text(&row, "reason", psprintf("chained to %s", r->where));
				}
				else
					detail_text(&row, "reason", "the condition is tested when due");
				row.decision = "delayed";
				detail_time(&row, "due_at", dc.due);
				if (seq[j]->invalid == NULL)
				{
					(void) explain_condition(ex, &row, seq[j]->condition, &error);
					(void) explain_params(ex, &row, seq[j], NULL);
				}
				row_end(ex, &row);
			}
			i = chain_end;
			continue;
		}

		/* a robot that runs now */
		if (!crm_lineage_would_push('r', r->id, ex->entity_type, ex->item_id, steps, &error))
		{
			row.decision = "loop_stopped";
			detail_text(&row, "reason", error);
			row_end(ex, &row);
			i++;
			continue;
		}
		steps++;
		if (!explain_condition(ex, &row, r->condition, &error))
		{
			row.decision = error ? "failed" : "condition_false";
			detail_text(&row, "error", error);
			row_end(ex, &row);
			i++;
			continue;
		}
		holds = false;
		error = explain_params(ex, &row, r, &holds);
		if (error != NULL)
		{
			row.decision = "failed";
			detail_text(&row, "error", error);
			row_end(ex, &row);
			i++;
			continue;
		}
		row.decision = "yes";
		row_end(ex, &row);
		if (ends_sequence(ex, r))
		{
			state = SEQ_ENDED;
			state_reason = psprintf("%s (%s) ends the robots of the stage before it",
									r->where, r->action_name);
		}
		else if (holds)
		{
			state = SEQ_WAITS;
			state_reason = psprintf("after the call of %s is done", r->where);
		}
		i++;
	}
}

/* ---------- triggers ---------- */

static const char *
trigger_label(const CrmTrigger *t)
{
	return t->name ? t->name : t->event->name;
}

static void
explain_triggers(Explain *ex)
{
	List	   *verdicts = crm_triggers_explain(ex->entity_type, ex->item_id, ex->tuple,
												ex->desc, ex->stage_id, ex->careful);
	ListCell   *lc;

	foreach(lc, verdicts)
	{
		CrmTriggerVerdict *v = lfirst(lc);
		const CrmTrigger *t = v->trigger;
		Row			row;
		char	   *error = NULL;

		row_begin(&row, "trigger", t->id, trigger_label(t));
		detail_text(&row, "event", t->event->name);
		detail_int(&row, "stage_id", t->stage_id);
		if (t->key)
			detail_text(&row, "key", t->key);
		if (strcmp(v->outcome, "fired") == 0)
			row.decision = "yes";
		else if (strcmp(v->outcome, "shadowed") == 0)
		{
			row.decision = "not_applicable";
			if (v->decided_by != NULL)
			{
				detail_int(&row, "decided_by", v->decided_by->id);
				detail_text(&row, "reason",
							psprintf("trigger %lld of the same event decides first (%s)",
									 (long long) v->decided_by->id,
									 v->decided_as ? v->decided_as : "?"));
			}
		}
		else
			row.decision = v->outcome;
		if (strcmp(v->outcome, "loop_stopped") == 0)
			detail_text(&row, "reason", v->error);
		else
			detail_text(&row, "error", v->error);
		if (t->reads_event)
			detail_text(&row, "note", "the condition reads the event's payload, empty here");
		if (t->invalid == NULL)
			(void) explain_condition(ex, &row, t->condition, &error);
		row_end(ex, &row);
	}
}

/* ---------- processes ---------- */

static void
explain_processes(Explain *ex)
{
	static SPIPlanPtr plan = NULL;
	Oid			types[1] = {TEXTOID};
	Datum		vals[1];
	SPITupleTable *tt;
	uint64		n;
	uint64		i;

	vals[0] = CStringGetTextDatum(ex->entity_type);
	crm_exec(crm_plan(&plan,
					  "SELECT id, name, 'add' = ANY (auto_start), 'modify' = ANY (auto_start)"
					  "  FROM crm.process_template"
					  " WHERE document_type = $1 AND active AND cardinality(auto_start) > 0"
					  " ORDER BY id",
					  1, types), vals, NULL, true, 0);
	tt = SPI_tuptable;
	n = SPI_processed;
	for (i = 0; i < n; i++)
	{
		HeapTuple	tup = tt->vals[i];
		bool		isnull;
		int64		id = DatumGetInt64(SPI_getbinval(tup, tt->tupdesc, 1, &isnull));
		char	   *name = TextDatumGetCString(SPI_getbinval(tup, tt->tupdesc, 2, &isnull));
		bool		on_add = DatumGetBool(SPI_getbinval(tup, tt->tupdesc, 3, &isnull));
		bool		on_modify = DatumGetBool(SPI_getbinval(tup, tt->tupdesc, 4, &isnull));
		CrmProcessTemplate *t = crm_process_template(id);
		Row			row;

		row_begin(&row, "process", id, name);
		detail_text(&row, "auto_start", on_add && on_modify ? "add, modify" :
					on_add ? "add" : "modify");
		if (t->invalid_message != NULL)
		{
			row.decision = "failed";
			detail_text(&row, "error", t->invalid_message);
		}
		else if (crm_import_mode)
		{
			row.decision = "not_applicable";
			detail_text(&row, "reason", "crm.import_mode is on: imports start nothing");
		}
		else if (crm_lineage_has('r') || crm_lineage_has('p'))
		{
			row.decision = "not_applicable";
			detail_text(&row, "reason", "automation is running: its writes start nothing");
		}
		else if (on_modify)
		{
			row.decision = "yes";
			detail_text(&row, "reason", ex->entering ?
						"starts when the item changes (entering a stage is a change)" :
						"starts when the item changes");
		}
		else
		{
			row.decision = "not_applicable";
			detail_text(&row, "reason", "starts when an item is created; this one exists");
		}
		row_end(ex, &row);
	}
}

/* ---------- the item ---------- */

/*
 * Reads the item as the caller: its table's privileges and row security
 * decide whether the caller may explain it.  The statement names its table
 * and operator in full and is not kept.
 */
static void
read_item(Explain *ex)
{
	char	   *table = crm_entity_table(ex->entity_type);
	const char *qualified = quote_qualified_identifier("crm", table);
	Oid			relid = get_relname_relid(table, get_namespace_oid("crm", false));
	bool		typed = OidIsValid(relid) && get_attnum(relid, "entity_type") != InvalidAttrNumber;
	Oid			types[2] = {INT8OID, TEXTOID};
	Datum		vals[2];
	MemoryContext caller = CurrentMemoryContext;
	int			ret;

	vals[0] = Int64GetDatum(ex->item_id);
	vals[1] = CStringGetTextDatum(ex->entity_type);
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	ret = SPI_execute_with_args(psprintf("SELECT * FROM %s WHERE id OPERATOR(pg_catalog.=) $1%s",
										 qualified,
										 typed ? " AND entity_type OPERATOR(pg_catalog.=) $2" : ""),
								typed ? 2 : 1, types, vals, NULL, true, 1);
	if (ret != SPI_OK_SELECT)
		elog(ERROR, "could not read %s %lld", ex->entity_type, (long long) ex->item_id);
	if (SPI_processed == 0)
		ereport(ERROR,
				(errcode(ERRCODE_NO_DATA_FOUND),
				 errmsg("%s %lld does not exist", ex->entity_type, (long long) ex->item_id),
				 errhint("Explain an existing item: SELECT id FROM %s;", qualified)));
	{
		MemoryContext old = MemoryContextSwitchTo(caller);

		ex->tuple = heap_copytuple(SPI_tuptable->vals[0]);
		ex->desc = CreateTupleDescCopy(SPI_tuptable->tupdesc);
		MemoryContextSwitchTo(old);
	}
	SPI_finish();
}

/* The stage considered: the one given (checked), else the item's. */
static void
choose_stage(Explain *ex, bool given, int64 stage)
{
	int			att = SPI_fnumber(ex->desc, "stage_id");
	bool		isnull = true;
	Datum		d = (Datum) 0;

	if (att > 0)
		d = heap_getattr(ex->tuple, att, ex->desc, &isnull);
	if (!given)
	{
		ex->stage_id = isnull ? 0 : DatumGetInt64(d);
		return;
	}
	{
		const CrmStageInfo *st = crm_stage_info(stage);
		Datum		repl[1];
		bool		rnull[1] = {false};
		int			cols[1];

		if (st == NULL)
			ereport(ERROR,
					(errcode(ERRCODE_UNDEFINED_OBJECT),
					 errmsg("stage %lld does not exist", (long long) stage),
					 errhint("Find a stage id with crm.stage(entity_type, code).")));
		if (strcmp(st->entity_type, ex->entity_type) != 0 || att <= 0)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("stage %lld is a stage of %s, not of %s", (long long) stage,
							st->entity_type, ex->entity_type),
					 errhint("Find a stage id with crm.stage('%s', code).", ex->entity_type)));
		/* read as if the item were in it */
		repl[0] = Int64GetDatum(stage);
		cols[0] = att;
		ex->tuple = heap_modify_tuple_by_cols(ex->tuple, ex->desc, 1, cols, repl, rnull);
		ex->stage_id = stage;
		ex->entering = true;
	}
}

static void
explain_all(void *arg)
{
	Explain    *ex = arg;

	if (ex->stage_id != 0)
	{
		explain_robots(ex);
		explain_triggers(ex);
	}
	explain_processes(ex);
}

/*
 * crm.explain(entity_type text, id bigint, stage bigint DEFAULT NULL)
 *	 RETURNS TABLE (kind, rule_id, rule, decision, condition, substituted, detail)
 */
Datum
crm_explain(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	Explain		ex;
	CrmScope	scope;

	if (PG_ARGISNULL(0))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("entity type must not be null"),
				 errhint("For example crm.explain('deal', 12).")));
	if (PG_ARGISNULL(1))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("item id must not be null"),
				 errhint("For example crm.explain('deal', 12).")));
	memset(&ex, 0, sizeof(ex));
	ex.entity_type = text_to_cstring(PG_GETARG_TEXT_PP(0));
	ex.item_id = PG_GETARG_INT64(1);
	InitMaterializedSRF(fcinfo, 0);
	ex.rsinfo = rsinfo;
	ex.cxt = CurrentMemoryContext;

	read_item(&ex);
	choose_stage(&ex, !PG_ARGISNULL(2), PG_ARGISNULL(2) ? 0 : PG_GETARG_INT64(2));
	crm_eval_context_init(&ex.cx, ex.entity_type, ex.item_id, ex.tuple, ex.desc);

	crm_scope_enter(&scope, CRM_SCOPE_SPI);
	crm_rule_cache_pin();
	PG_TRY();
	{
		ErrorData  *edata;

		/*
		 * Optimistically in one subtransaction; if anything fails (a
		 * condition that raises an error, parameters that cannot be
		 * rendered), again step by step, each in its own.
		 */
		edata = crm_run_isolated(explain_all, &ex);
		if (edata != NULL)
		{
			FreeErrorData(edata);
			list_free(ex.rows);
			ex.rows = NIL;
			ex.careful = true;
			explain_all(&ex);
		}
	}
	PG_FINALLY();
	{
		crm_rule_cache_unpin();
	}
	PG_END_TRY();
	crm_scope_leave(&scope);
	{
		ListCell   *lc;

		foreach(lc, ex.rows)
		{
			ExplainRow *er = lfirst(lc);

			tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, er->vals, er->nulls);
		}
	}
	return (Datum) 0;
}
