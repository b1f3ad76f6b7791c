/*-------------------------------------------------------------------------
 *
 * processes.c
 *	  Running business-process instances (crm.start_process, the
 *	  "process_timer" job).
 *
 * An instance runs its template's activities in order for one document, in
 * the transaction that started it (or, after a pause, in the job runner's
 * transaction):
 *
 *	  - a robot action (and set_field, which is update_item with one field)
 *		goes through the action's descriptor and executor, as a robot does,
 *		with the instance's variables, constants, parameters and the outputs
 *		of named activities in the evaluation context;
 *	  - if evaluates its condition and runs then or else;
 *	  - set_variable and set_status_text change the instance;
 *	  - a pause stops the run: a delay (for an interval, in working time, or
 *		until a date), the action wait, create_task with "wait" and robocall
 *		with "wait_for_result".  The instance waits; its position (the path
 *		of the pausing activity, e.g. [2, "then", 0]), variables, outputs, a
 *		copy of the definition and what it waits for are kept in
 *		crm.process_instance, and a "process_timer" job resumes it after
 *		that activity.  A delay's job is due at its time; the others' is due
 *		far ahead until their event (a task completed or deleted, a call
 *		sent or given up, the client's activity) makes it due now, through
 *		the triggers of 75_scheduler.sql.  The job checks the event itself
 *		(the task's or message's status) and waits again when it has not
 *		happened.
 *
 * Each activity runs in a subtransaction of its own: a failure rolls back
 * that activity only, marks the instance failed with the error and the
 * activity's path, and the caller's transaction goes on, as with robots.
 * Instances act as the automation owner, as robots do, and are on the
 * causal lineage (kind 'p') while they run.
 *
 * A new instance's row is written once, in the state it ends or pauses in,
 * with its trace rows after it (no INSERT then UPDATE), unless it reaches
 * an action first: then it is written as running before the action
 * (write_instance).  The rows are appended without INSERT statements
 * (core/rowappend.c); auto-start keeps those of the instances that complete
 * and appends them together (crm_process_keep_begin).  The document is read
 * by a probe of its primary key when the instance starts, and its first
 * activity uses that row.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "catalog/dependency.h"
#include "catalog/namespace.h"
#include "catalog/pg_type.h"
#include "commands/sequence.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/jsonb.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/numeric.h"
#include "utils/rel.h"
#include "utils/timestamp.h"

#include "actions/actions.h"
#include "expr/expr.h"
#include "processes/processes.h"
#include "engine/robots.h"
#include "core/citus.h"
#include "core/guc.h"
#include "core/index_probe.h"
#include "core/rowsink.h"
#include "core/scope.h"
#include "core/rule_cache.h"
#include "engine/scheduler.h"
#include "core/spi_util.h"
#include "engine/work_time.h"

PG_FUNCTION_INFO_V1(crm_start_process);

/* Nesting of if activities a position can describe (index, branch, ...). */
#define MAX_STEPS 64

typedef struct ProcessRun
{
	int64		instance_id;
	const char *document_type;
	int64		document_id;
	Jsonb	   *definition;
	Jsonb	   *var_decl;		/* the declarations of variables */
	CrmEvalContext cx;			/* variables, constants, parameters, outputs */
	char	   *status_text;
	bool		status_text_set;
	const char *status;			/* running, then completed, waiting or failed */
	char	   *current;		/* path of the activity waiting or failed */
	char	   *error;
	/* what a paused run waits for (set by the activity that paused it) */
	const char *wait_kind;		/* delay, task, call or wait */
	TimestampTz due;			/* when its job is due; 0: when the event comes */
	int64		wait_ref;		/* the task or outbox message waited for */
	bool		until_client_activity;	/* a wait ended by the client */
	char	   *waiting_for;	/* in words, for crm.process_instances */
	char	   *wait_name;		/* the name of the activity that paused it */
	int			steps[MAX_STEPS];	/* where the run is: index, branch (0 then,
									 * 1 else), index, ... */
	int			nsteps;
	Jsonb	   *after;			/* the position to resume after, when waiting */
	/*
	 * The instance's row.  A new instance is written once, in the state it
	 * ends in, with its trace rows after it, unless an action runs first
	 * (an action may read the instance, stop it, name it in rows it
	 * writes): then it is stored before that action, as running.
	 */
	bool		stored;			/* it is in crm.process_instance */
	bool		in_statement;	/* started by the statement that wrote the document */
	int64		template_id;
	Jsonb	   *parameters;
	Jsonb	   *initial_variables;
	bool		has_started_by;
	int64		started_by;
	List	   *pending;		/* TraceRow: the trace until it is stored */
	struct CrmKeptRows *kept;	/* where its rows go if it completes */
	bool		row_fresh;		/* cx.tuple: the document as the next activity
								 * must see it */
} ProcessRun;

/* The rows of completed instances, kept to be written together. */
typedef struct CrmKeptRows
{
	MemoryContext cxt;
	int			ninstances;
	int			ntrace;
	int			cap_instances;
	int			cap_trace;
	Datum	   *instances;		/* records of instance_sink */
	Datum	   *trace;			/* records of trace_sink */
} CrmKeptRows;

#define KEPT_INSTANCES_MAX 1000

/* A row of the trace (crm.process_log). */
typedef struct TraceRow
{
	char	   *path;
	char	   *type;
	char	   *name;
	const char *status;
	char	   *error;
	Jsonb	   *outputs;
	TimestampTz started;
	TimestampTz finished;		/* 0 for a waiting row */
} TraceRow;

/*
 * The instances' and the trace's rows, appended without an INSERT statement
 * when the tables allow it (core/rowappend.c).  Their foreign keys hold by
 * construction: an instance's template was read and locked FOR KEY SHARE
 * before it started (crm_process_template) and so was the user who started
 * it (acting_user); a trace row's instance is written by the same run
 * before it, or, resumed, read FOR UPDATE.
 */
static CrmRowSink instance_sink = {
	.table = "crm.process_instance",
	.natts = 13,
	.columns = {"id", "template_id", "document_type", "document_id", "status", "status_text",
				"current_activity", "parameters", "variables", "state", "error", "started_by",
	"finished_at"},
	.types = {INT8OID, INT8OID, TEXTOID, INT8OID, TEXTOID, TEXTOID, TEXTOID, JSONBOID, JSONBOID,
	JSONBOID, TEXTOID, INT8OID, TIMESTAMPTZOID},
	.append = true,
	.fk_checked = {{"template_id", "crm.process_template"}, {"started_by", "crm.user"}},
};

static CrmRowSink trace_sink = {
	.table = "crm.process_log",
	.natts = 11,
	.columns = {"instance_id", "document_type", "document_id", "path", "type", "name", "status",
	"error", "outputs", "started_at", "finished_at"},
	.types = {INT8OID, TEXTOID, INT8OID, TEXTOID, TEXTOID, TEXTOID, TEXTOID, TEXTOID, JSONBOID,
	TIMESTAMPTZOID, TIMESTAMPTZOID},
	.append = true,
	.fk_checked = {{"instance_id", "crm.process_instance"}},
};

/* ---------- jsonb helpers ---------- */

static JsonbValue *
member(JsonbContainer *obj, const char *key)
{
	return getKeyJsonValueFromContainer(obj, key, strlen(key), NULL);
}

static Jsonb *
member_jsonb(Jsonb *obj, const char *key)
{
	JsonbValue *v;

	if (obj == NULL || (v = member(&obj->root, key)) == NULL)
		return NULL;
	return JsonbValueToJsonb(v);
}

/* {"key": "text"} */
static Jsonb *
one_string(const char *key, const char *text)
{
	JsonbValue	v;

	v.type = jbvString;
	v.val.string.val = (char *) text;
	v.val.string.len = strlen(text);
	return crm_jsonb_with(NULL, key, &v);
}

/* ---------- activities ---------- */

typedef struct ActivityArgs
{
	Jsonb	   *activity;
	CrmActivityKind kind;
	const CrmActionDesc *action;
	const char *path;
	bool		result;			/* an if's condition */
	bool		stop_chain;		/* the action would stop later robots */
	bool		pause;			/* the instance waits after this activity */
	Jsonb	   *outputs;		/* what an action said it did (the trace) */
} ActivityArgs;

/* When a wait with no end of its own is due: in a hundred years. */
static TimestampTz
far_future(void)
{
	return DatumGetTimestampTz(DirectFunctionCall2(timestamptz_pl_interval,
												   TimestampTzGetDatum(GetCurrentTransactionStartTimestamp()),
												   DirectFunctionCall3(interval_in, CStringGetDatum("100 years"),
																	   ObjectIdGetDatum(InvalidOid), Int32GetDatum(-1))));
}

/* An integer member of a JSON object (an action's outputs), or 0. */
static int64
member_int(Jsonb *obj, const char *key)
{
	JsonbValue *v;

	if (obj == NULL || (v = member(&obj->root, key)) == NULL || v->type != jbvNumeric)
		return 0;
	return DatumGetInt64(DirectFunctionCall1(numeric_int8, NumericGetDatum(v->val.numeric)));
}

static char *
timestamp_text(TimestampTz ts)
{
	return DatumGetCString(DirectFunctionCall1(timestamptz_out, TimestampTzGetDatum(ts)));
}

/*
 * The activities that pause the instance once they ran: create_task with
 * "wait" (until the task is completed), robocall with "wait_for_result"
 * (until its message is sent or given up), and the robot action wait (for
 * a time, or until the client calls or writes).
 */
static void
action_pause(ProcessRun *pr, ActivityArgs *a, CrmActionCall *call)
{
	if (strcmp(a->action->name, "create_task") == 0 &&
		crm_activity_flag(a->activity, "wait", false))
	{
		pr->wait_kind = "task";
		pr->wait_ref = member_int(a->outputs, "task_id");
		pr->due = 0;
		pr->waiting_for = psprintf("task %lld to be completed", (long long) pr->wait_ref);
		a->pause = true;
	}
	else if (strcmp(a->action->name, "robocall") == 0 && call->hold)
	{
		pr->wait_kind = "call";
		pr->wait_ref = member_int(a->outputs, "message_id");
		pr->due = 0;
		pr->waiting_for = psprintf("the result of the call (outbox message %lld)",
								   (long long) pr->wait_ref);
		a->pause = true;
	}
	else if (strcmp(a->action->name, "wait") == 0)
	{
		Interval   *iv;

		pr->wait_kind = "wait";
		pr->until_client_activity = crm_param_bool(call, "until_client_activity", false);
		pr->due = 0;
		if (crm_param_interval(call, "for", &iv))
		{
			if (iv->month < 0 || iv->day < 0 || iv->time < 0 || !crm_delay_in_bounds(iv))
				ereport(ERROR,
						(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
						 errmsg("\"for\" of the wait must be a positive interval of at most %d days",
								CRM_MAX_DELAY_DAYS)));
			pr->due = DatumGetTimestampTz(DirectFunctionCall2(timestamptz_pl_interval,
															  TimestampTzGetDatum(GetCurrentTransactionStartTimestamp()),
															  IntervalPGetDatum(iv)));
		}
		if (pr->due != 0 && pr->until_client_activity)
			pr->waiting_for = psprintf("client activity, or until %s", timestamp_text(pr->due));
		else if (pr->due != 0)
			pr->waiting_for = psprintf("the wait until %s", timestamp_text(pr->due));
		else
			pr->waiting_for = pstrdup("client activity");
		a->pause = true;
	}
}


static char *
activity_where(Jsonb *activity, const char *path)
{
	char	   *name = crm_jsonb_string(activity, "name");

	return name ? psprintf("activity \"%s\"", name) : psprintf("activity %s", path);
}

/*
 * A robot action (or set_field): the descriptor's executor for the
 * document.  a->stop_chain says what the executor said about later robots
 * (true after a change of stage or pipeline, a conversion, a deletion);
 * a->pause that the instance waits after it.
 */
static void
run_action(ProcessRun *pr, ActivityArgs *a)
{
	CrmActionCall call;
	bool		isnull;
	char	   *where = activity_where(a->activity, a->path);
	char	   *name;

	memset(&call, 0, sizeof(call));
	call.action = a->action;
	call.params = crm_action_compile(a->action, crm_activity_params(a->activity, a->kind), where);
	call.cx = &pr->cx;
	call.robot_id = 0;
	call.process_instance_id = pr->instance_id;
	call.stage_id = crm_item_int(&pr->cx, "stage_id", &isnull);
	call.where = where;
	/* a feed post or drive file is no CRM item: effect rows cannot name it */
	call.unbound = (strcmp(a->action->name, "create_task") == 0 &&
					!crm_activity_flag(a->activity, "bind_current", true)) ||
		crm_workspace_document(pr->document_type);
	a->action->exec(&call);
	if (call.has_outputs)
	{
		Jsonb	   *outputs = JsonbValueToJsonb(pushJsonbValue(&call.outputs, WJB_END_OBJECT, NULL));
		JsonbValue	v;

		a->outputs = outputs;
		if ((name = crm_jsonb_string(a->activity, "name")) != NULL)
		{
			crm_jsonb_binary(outputs, &v);
			pr->cx.activity_outputs = crm_jsonb_with(pr->cx.activity_outputs, name, &v);
		}
	}
	a->stop_chain = call.stop_chain;
	if (a->kind == CRM_ACTIVITY_ACTION)
		action_pause(pr, a, &call);
}

/*
 * A delay: its due time, "for" an interval from now (in working time with
 * "work_time") or "until" a date evaluated now.
 */
static void
run_delay(ProcessRun *pr, ActivityArgs *a)
{
	char	   *s_for = crm_jsonb_string(a->activity, "for");
	char	   *s_until = crm_jsonb_string(a->activity, "until");
	bool		work_time = crm_activity_flag(a->activity, "work_time", false);
	TimestampTz now = GetCurrentTransactionStartTimestamp();
	JsonbValue	v;

	if (s_for != NULL)
	{
		Interval   *iv = DatumGetIntervalP(DirectFunctionCall3(interval_in, CStringGetDatum(s_for),
															   ObjectIdGetDatum(InvalidOid),
															   Int32GetDatum(-1)));

		if (work_time)
			pr->due = crm_work_time_add(crm_work_schedule(), now, iv);
		else
			pr->due = DatumGetTimestampTz(DirectFunctionCall2(timestamptz_pl_interval,
															  TimestampTzGetDatum(now),
															  IntervalPGetDatum(iv)));
		a->outputs = one_string("for", s_for);
		if (work_time)
		{
			v.type = jbvBool;
			v.val.boolean = true;
			a->outputs = crm_jsonb_with(a->outputs, "work_time", &v);
		}
	}
	else
	{
		CrmValue	when;

		if (s_until == NULL)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("a delay activity needs \"for\" or \"until\"")));
		when = crm_expr_eval(crm_expr_compile_text(s_until, "until"), &pr->cx);
		if (!crm_value_to_timestamptz(when, &pr->due))
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("\"until\" of the delay gives no date: %s", s_until),
					 errhint("The template or formula must give a date or a timestamp when the delay is reached.")));
		a->outputs = one_string("until", timestamp_text(pr->due));
	}
	pr->wait_kind = "delay";
	pr->waiting_for = psprintf("the delay until %s", timestamp_text(pr->due));
	a->pause = true;
}

static void
run_set_variable(ProcessRun *pr, Jsonb *activity)
{
	char	   *name = crm_jsonb_string(activity, "variable");
	JsonbValue *value = member(&activity->root, "value");
	JsonbValue	v;
	JsonbValue	stored;
	char	   *type;
	char	   *declared = crm_process_variable(pr->var_decl, name, &type);

	if (declared == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("unknown variable \"%s\"", name)));
	v = *value;
	if (value->type == jbvString)
	{
		char	   *src = pnstrdup(value->val.string.val, value->val.string.len);

		crm_value_to_jsonb_value(crm_expr_eval(crm_expr_compile_text(src, "value"), &pr->cx), &v);
	}
	if (!crm_process_value(type, &v, &stored))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("value %s does not fit variable \"%s\" of type %s",
						JsonbToCString(NULL, &JsonbValueToJsonb(&v)->root, 0),
						declared, type),
				 strcmp(type, "int") == 0 ?
				 errhint("An int variable holds whole numbers: round the value (=round(...)) or declare the variable as number.") : 0));
	pr->cx.variables = crm_jsonb_with(pr->cx.variables, declared, &stored);
}

/* The part of an activity that runs in its subtransaction. */
static void
activity_body(ProcessRun *pr, ActivityArgs *a)
{
	/*
	 * The document may have changed since the last activity: read it again
	 * (the first one of a new instance has the row read when it started).
	 */
	if (pr->row_fresh)
		pr->row_fresh = false;
	else
	{
		pr->cx.cache = NULL;
		pr->cx.tuple = NULL;
		pr->cx.desc = NULL;
	}
	switch (a->kind)
	{
		case CRM_ACTIVITY_ACTION:
		case CRM_ACTIVITY_SET_FIELD:
			run_action(pr, a);
			break;
		case CRM_ACTIVITY_DELAY:
			run_delay(pr, a);
			break;
		case CRM_ACTIVITY_IF:
			a->result = crm_expr_test(crm_expr_compile_condition(member_jsonb(a->activity, "condition"),
																 "condition"),
									  &pr->cx);
			break;
		case CRM_ACTIVITY_SET_VARIABLE:
			run_set_variable(pr, a->activity);
			break;
		case CRM_ACTIVITY_SET_STATUS_TEXT:
			pr->status_text = crm_expr_render(crm_expr_compile_text(crm_jsonb_string(a->activity, "text"),
																	"text"),
											  &pr->cx);
			pr->status_text_set = true;
			break;
		default:
			ereport(ERROR,
					(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
					 errmsg("activity type \"%s\" is not supported",
							crm_jsonb_string(a->activity, "type"))));
	}
}

typedef struct ActivityCall
{
	ProcessRun *pr;
	ActivityArgs *a;
} ActivityCall;

static void
activity_call(void *arg)
{
	ActivityCall *c = arg;

	activity_body(c->pr, c->a);
}

/*
 * Runs an activity's body in a subtransaction of its own.  A failure rolls
 * its effects back and fails the instance (false); a query cancel goes on up.
 */
static bool
run_guarded(ProcessRun *pr, ActivityArgs *a)
{
	ActivityCall c = {pr, a};
	ErrorData  *edata;

	/*
	 * In auto-start's optimistic run (its rows kept), an activity that
	 * writes nothing (it computes a text, a variable, a branch) needs no
	 * subtransaction of its own: its error rolls the whole run back, and the
	 * replay runs every start again with each activity guarded.
	 */
	if (pr->kept != NULL &&
		(a->kind == CRM_ACTIVITY_SET_STATUS_TEXT || a->kind == CRM_ACTIVITY_SET_VARIABLE ||
		 a->kind == CRM_ACTIVITY_IF))
	{
		activity_body(pr, a);
		return true;
	}
	edata = crm_run_isolated_retrying(activity_call, &c);

	if (edata == NULL)
		return true;
	pr->status = "failed";
	pr->error = edata->message;
	pr->current = pstrdup(a->path);
	return false;
}

/* True when an action stopped the instance in crm.process_instance. */
static bool
instance_stopped(ProcessRun *pr)
{
	static SPIPlanPtr plan = NULL;
	Oid			types[1] = {INT8OID};
	Datum		vals[1];

	vals[0] = Int64GetDatum(pr->instance_id);
	crm_exec(crm_plan(&plan,
					  "SELECT 1 FROM crm.process_instance WHERE id = $1 AND status = 'stopped'",
					  1, types), vals, NULL, false, 1);
	return SPI_processed > 0;
}

/* The current position as a jsonb array: [2, "then", 0]. */
static Jsonb *
position_jsonb(ProcessRun *pr)
{
	JsonbParseState *st = NULL;
	JsonbValue	v;
	int			i;

	pushJsonbValue(&st, WJB_BEGIN_ARRAY, NULL);
	for (i = 0; i < pr->nsteps; i++)
	{
		if (i % 2 == 0)
		{
			v.type = jbvNumeric;
			v.val.numeric = int64_to_numeric(pr->steps[i]);
		}
		else
		{
			v.type = jbvString;
			v.val.string.val = pr->steps[i] == 0 ? "then" : "else";
			v.val.string.len = 4;
		}
		pushJsonbValue(&st, WJB_ELEM, &v);
	}
	return JsonbValueToJsonb(pushJsonbValue(&st, WJB_END_ARRAY, NULL));
}

static bool run_block(ProcessRun *pr, JsonbContainer *block, const char *path,
					  const int *resume, int nresume);
static Jsonb *empty_object(void);
static bool document_exists(const char *document_type, int64 document_id);
static bool document_row(const char *document_type, int64 document_id, HeapTuple *tuple,
						 TupleDesc *desc);

/* Whether the schema has the trace (a 0.1.0 one, not yet updated, has none). */
static bool
has_trace(void)
{
	return OidIsValid(get_relname_relid("process_log", get_namespace_oid("crm", false)));
}

static void
trace_values(ProcessRun *pr, const TraceRow *r, Datum *vals, bool *nulls)
{
	memset(nulls, 0, sizeof(bool) * 11);
	vals[0] = Int64GetDatum(pr->instance_id);
	vals[1] = CStringGetTextDatum(pr->document_type);
	vals[2] = Int64GetDatum(pr->document_id);
	vals[3] = CStringGetTextDatum(r->path);
	vals[4] = CStringGetTextDatum(r->type ? r->type : "?");
	vals[5] = r->name ? CStringGetTextDatum(r->name) : (Datum) 0;
	nulls[5] = r->name == NULL;
	vals[6] = CStringGetTextDatum(r->status);
	vals[7] = r->error ? CStringGetTextDatum(r->error) : (Datum) 0;
	nulls[7] = r->error == NULL;
	vals[8] = r->outputs ? JsonbPGetDatum(r->outputs) : (Datum) 0;
	nulls[8] = r->outputs == NULL;
	vals[9] = TimestampTzGetDatum(r->started);
	vals[10] = TimestampTzGetDatum(r->finished);
	nulls[10] = r->finished == 0;
}

static void
write_trace_row(ProcessRun *pr, const TraceRow *r)
{
	Datum		vals[11];
	bool		nulls[11];

	trace_values(pr, r, vals, nulls);
	crm_sink_write(&trace_sink, vals, nulls);
}

/* The trace rows kept until the instance's row was written. */
static void
write_pending_trace(ProcessRun *pr)
{
	ListCell   *lc;

	if (pr->pending != NIL && has_trace())
		foreach(lc, pr->pending)
			write_trace_row(pr, (TraceRow *) lfirst(lc));
	pr->pending = NIL;
}

/*
 * The trace: a row of crm.process_log for an activity that ran (done or
 * failed) or paused the instance (waiting).  Written after the activity's
 * subtransaction ended, so a failure's row stays; kept until the
 * instance's row is written when it is not yet.
 */
static void
log_activity(ProcessRun *pr, ActivityArgs *a, const char *status, const char *error,
			 Jsonb *outputs, TimestampTz started)
{
	TraceRow	r;

	r.path = (char *) a->path;
	r.type = crm_jsonb_string(a->activity, "type");
	r.name = crm_jsonb_string(a->activity, "name");
	r.status = status;
	r.error = (char *) error;
	r.outputs = outputs;
	r.started = started;
	r.finished = strcmp(status, "waiting") != 0 ? GetCurrentTimestamp() : 0;
	if (!pr->stored)
	{
		TraceRow   *kept = palloc(sizeof(TraceRow));

		*kept = r;
		pr->pending = lappend(pr->pending, kept);
	}
	else if (has_trace())
		write_trace_row(pr, &r);
}

static void
kept_add(CrmKeptRows *k, bool instance, Datum row)
{
	Datum	  **rows = instance ? &k->instances : &k->trace;
	int		   *n = instance ? &k->ninstances : &k->ntrace;
	int		   *cap = instance ? &k->cap_instances : &k->cap_trace;

	if (*n == *cap)
	{
		*cap = *cap ? *cap * 2 : 64;
		*rows = *rows ? repalloc(*rows, sizeof(Datum) * *cap)
			: MemoryContextAlloc(k->cxt, sizeof(Datum) * *cap);
	}
	(*rows)[(*n)++] = row;
}

/* Writes the kept rows: the instances, then their trace. */
static void
kept_write(CrmKeptRows *k)
{
	if (k->ninstances > 0)
		crm_sink_write_records(&instance_sink, k->ninstances, k->instances);
	if (k->ntrace > 0 && has_trace())
		crm_sink_write_records(&trace_sink, k->ntrace, k->trace);
	k->ninstances = k->ntrace = 0;
	k->cap_instances = k->cap_trace = 0;
	k->instances = k->trace = NULL;
	MemoryContextReset(k->cxt);
}

/* A completed instance's row and its trace, kept (crm_process_keep_begin). */
static void
keep_rows(ProcessRun *pr, Datum *vals, bool *nulls)
{
	CrmKeptRows *k = pr->kept;
	MemoryContext old = MemoryContextSwitchTo(k->cxt);
	ListCell   *lc;

	kept_add(k, true, crm_sink_record(&instance_sink, vals, nulls));
	foreach(lc, has_trace() ? pr->pending : NIL)
	{
		Datum		tvals[11];
		bool		tnulls[11];

		MemoryContextSwitchTo(old);
		trace_values(pr, (TraceRow *) lfirst(lc), tvals, tnulls);
		MemoryContextSwitchTo(k->cxt);
		kept_add(k, false, crm_sink_record(&trace_sink, tvals, tnulls));
	}
	MemoryContextSwitchTo(old);
	pr->pending = NIL;
	pr->stored = true;
	if (k->ninstances >= KEPT_INSTANCES_MAX)
		kept_write(k);
}

void
crm_process_keep_begin(CrmStartShared *shared)
{
	CrmKeptRows *k = palloc0(sizeof(CrmKeptRows));

	k->cxt = AllocSetContextCreate(CurrentMemoryContext, "crm process rows",
								   ALLOCSET_DEFAULT_SIZES);
	shared->kept = k;
}

void
crm_process_keep_flush(CrmStartShared *shared)
{
	CrmScope	scope;

	if (shared->kept == NULL)
		return;
	crm_scope_enter(&scope, CRM_SCOPE_SPI);
	kept_write(shared->kept);
	crm_scope_leave(&scope);
	MemoryContextDelete(shared->kept->cxt);
	pfree(shared->kept);
	shared->kept = NULL;
}

/*
 * The instance's row, as it is when an action is about to run, or as it
 * ended: written once, then the trace rows kept until then.  A completed
 * one may be kept to be written with others (crm_process_keep_begin).
 */
static void
write_instance(ProcessRun *pr, bool final, Jsonb *state)
{
	Datum		vals[13];
	bool		nulls[13];
	const char *status = final ? pr->status : "running";
	Jsonb	   *variables = final ? pr->cx.variables : pr->initial_variables;

	memset(nulls, 0, sizeof(nulls));
	vals[0] = Int64GetDatum(pr->instance_id);
	vals[1] = Int64GetDatum(pr->template_id);
	vals[2] = CStringGetTextDatum(pr->document_type);
	vals[3] = Int64GetDatum(pr->document_id);
	vals[4] = CStringGetTextDatum(status);
	nulls[5] = !(final && pr->status_text_set && pr->status_text != NULL);
	vals[5] = nulls[5] ? (Datum) 0 : CStringGetTextDatum(pr->status_text);
	nulls[6] = !(final && pr->current != NULL);
	vals[6] = nulls[6] ? (Datum) 0 : CStringGetTextDatum(pr->current);
	vals[7] = JsonbPGetDatum(pr->parameters);
	vals[8] = JsonbPGetDatum(variables ? variables : empty_object());
	vals[9] = JsonbPGetDatum(final && state ? state : empty_object());
	nulls[10] = !(final && pr->error != NULL);
	vals[10] = nulls[10] ? (Datum) 0 : CStringGetTextDatum(pr->error);
	vals[11] = Int64GetDatum(pr->started_by);
	nulls[11] = !pr->has_started_by;
	nulls[12] = !(final && strcmp(status, "running") != 0 && strcmp(status, "waiting") != 0);
	vals[12] = nulls[12] ? (Datum) 0 : TimestampTzGetDatum(GetCurrentTransactionStartTimestamp());
	if (final && pr->kept != NULL && strcmp(status, "completed") == 0)
	{
		keep_rows(pr, vals, nulls);
		return;
	}
	crm_sink_write(&instance_sink, vals, nulls);
	pr->stored = true;
	write_pending_trace(pr);
}

bool		crm_processes_in_statement = false;

/*
 * Whether an activity must wait for the job runner: on a distributed
 * installation (core/citus.h) a statement runs an auto-started instance on
 * its document's shard, where only that shard's rows may be written, so an
 * action that writes another item or shared rows (CRM_ACT_SHARED) pauses
 * the instance before it, resumed at once by the job runner of the
 * document's node, which runs it there (docs/citus.md); so does every
 * action of a feed post's or a drive file's instance.
 */
static bool
defer_activity(ProcessRun *pr, const ActivityArgs *a)
{
	if (!pr->in_statement)
		return false;
	if (crm_workspace_document(pr->document_type))
	{
		/*
		 * A feed post or a drive file is in a reference table, its
		 * instance on the shard of its id: anything it writes (a
		 * notification, the document itself) is beyond that shard.
		 */
		if (a->kind != CRM_ACTIVITY_ACTION && a->kind != CRM_ACTIVITY_SET_FIELD)
			return false;
	}
	else if (a->kind != CRM_ACTIVITY_ACTION || a->action == NULL ||
			 !(a->action->flags & CRM_ACT_SHARED))
		return false;
	return crm_table_is_distributed(get_relname_relid("process_instance",
													  get_namespace_oid("crm", false)));
}

/* Runs one activity; false when the run stops here (delay, failure, end). */
static bool
run_activity(ProcessRun *pr, JsonbValue *av, const char *path)
{
	ActivityArgs a;
	int			depth = pr->nsteps;
	TimestampTz started = GetCurrentTimestamp();

	CHECK_FOR_INTERRUPTS();
	memset(&a, 0, sizeof(a));
	a.activity = JsonbValueToJsonb(av);
	a.path = path;
	a.kind = crm_activity_kind(crm_jsonb_string(a.activity, "type"), &a.action);

	if (!pr->stored && (a.kind == CRM_ACTIVITY_ACTION || a.kind == CRM_ACTIVITY_SET_FIELD))
		write_instance(pr, false, NULL);
	if (defer_activity(pr, &a))
	{
		/* resumed before it (the position of the activity before) */
		pr->steps[pr->nsteps - 1]--;
		pr->after = position_jsonb(pr);
		pr->steps[pr->nsteps - 1]++;
		pr->status = "waiting";
		pr->current = pstrdup(path);
		pr->wait_kind = "delay";
		pr->due = GetCurrentTimestamp();
		pr->waiting_for = "the job runner of the document's node (it writes beyond the document)";
		log_activity(pr, &a, "waiting", NULL, one_string("deferred", "job runner"), started);
		return false;
	}
	if (!run_guarded(pr, &a))
	{
		log_activity(pr, &a, "failed", pr->error, NULL, started);
		return false;
	}
	if (a.pause)
	{
		/* a delay, or an action that waits: the run stops here */
		pr->status = "waiting";
		pr->current = pstrdup(path);
		pr->after = position_jsonb(pr);
		pr->wait_name = crm_jsonb_string(a.activity, "name");
		log_activity(pr, &a, "waiting", NULL, a.outputs, started);
		return false;
	}
	if (a.kind == CRM_ACTIVITY_IF)
		a.outputs = one_string("branch", a.result ? "then" : "else");
	else if (a.kind == CRM_ACTIVITY_SET_STATUS_TEXT)
		a.outputs = one_string("text", pr->status_text);
	log_activity(pr, &a, "done", NULL, a.outputs, started);
	if (a.kind == CRM_ACTIVITY_IF)
	{
		const char *branch = a.result ? "then" : "else";
		JsonbValue *b = member(&a.activity->root, branch);

		if (b == NULL)
			return true;
		/* the position has this activity's index: the branch follows it */
		if (depth + 1 > MAX_STEPS)
			ereport(ERROR,
					(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
					 errmsg("if activities are nested too deeply at %s", path)));
		pr->steps[depth] = a.result ? 0 : 1;
		pr->nsteps = depth + 1;
		if (!run_block(pr, b->val.binary.data, psprintf("%s.%s", path, branch), NULL, 0))
			return false;
		pr->nsteps = depth;
		return true;
	}
	/*
	 * An action that ends a robot sequence (a change of stage or pipeline, a
	 * conversion, a deletion) ends the instance only when change_pipeline
	 * stopped the document's processes, or the document is gone.
	 */
	if (a.stop_chain && instance_stopped(pr))
	{
		pr->status = "stopped";
		return false;
	}
	if (a.stop_chain && !document_exists(pr->document_type, pr->document_id))
	{
		pr->status = "completed";
		return false;
	}
	return true;
}

/*
 * Runs the activities of a block in order.  resume (nresume steps), when
 * given, is the position of a delay inside this block: the run goes on
 * after it.
 */
static bool
run_block(ProcessRun *pr, JsonbContainer *block, const char *path,
		  const int *resume, int nresume)
{
	int			n = JsonContainerSize(block);
	int			depth = pr->nsteps;
	int			start = 0;
	int			i;

	check_stack_depth();
	if (depth + 1 > MAX_STEPS)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("if activities are nested too deeply at %s", path)));
	if (nresume > 0)
	{
		start = resume[0] + 1;
		if (nresume >= 3 && resume[0] < n)
		{
			/* the delay was inside a branch of the if at resume[0] */
			JsonbValue *av = getIthJsonbValueFromContainer(block, resume[0]);
			const char *branch = resume[1] == 0 ? "then" : "else";
			JsonbValue *b = member(av->val.binary.data, branch);

			pr->steps[depth] = resume[0];
			pr->steps[depth + 1] = resume[1];
			pr->nsteps = depth + 2;
			if (b != NULL &&
				!run_block(pr, b->val.binary.data,
						   psprintf("%s[%d].%s", path, resume[0], branch),
						   resume + 2, nresume - 2))
				return false;
			pr->nsteps = depth;
		}
	}
	for (i = start; i < n; i++)
	{
		JsonbValue *av = getIthJsonbValueFromContainer(block, i);

		pr->steps[depth] = i;
		pr->nsteps = depth + 1;
		if (!run_activity(pr, av, psprintf("%s[%d]", path, i)))
			return false;
		pr->nsteps = depth;
	}
	return true;
}

/* The position saved by a delay, as steps. */
static int
position_steps(Jsonb *after, int *steps)
{
	JsonbIterator *it;
	JsonbValue	v;
	JsonbIteratorToken tok;
	int			n = 0;

	if (after == NULL)
		return 0;
	it = JsonbIteratorInit(&after->root);
	while ((tok = JsonbIteratorNext(&it, &v, true)) != WJB_DONE)
	{
		if (tok != WJB_ELEM || n >= MAX_STEPS)
			continue;
		if (v.type == jbvNumeric)
			steps[n++] = DatumGetInt32(DirectFunctionCall1(numeric_int4, NumericGetDatum(v.val.numeric)));
		else if (v.type == jbvString)
			steps[n++] = (v.val.string.len == 4 && strncmp(v.val.string.val, "else", 4) == 0) ? 1 : 0;
	}
	return n;
}

/* ---------- instances ---------- */

static void
run_setup(ProcessRun *pr, int64 instance_id, const char *document_type, int64 document_id,
		  Jsonb *definition, Jsonb *parameters, Jsonb *variables, Jsonb *outputs)
{
	memset(pr, 0, sizeof(*pr));
	pr->stored = true;			/* a new instance says otherwise */
	pr->instance_id = instance_id;
	pr->document_type = document_type;
	pr->document_id = document_id;
	pr->definition = definition;
	pr->var_decl = member_jsonb(definition, "variables");
	pr->status = "running";
	crm_eval_context_init(&pr->cx, document_type, document_id, NULL, NULL);
	pr->cx.variables = variables;
	pr->cx.parameters = parameters;
	pr->cx.constants = member_jsonb(definition, "constants");
	pr->cx.activity_outputs = outputs;
}

/*
 * A failed instance tells the people who can act on it: the document's
 * responsible and the template's author (once if they are the same), by a
 * system notification naming the template, the document and the error.
 */
typedef struct FailureNotice
{
	ProcessRun *pr;
	bool		to_responsible;
} FailureNotice;

static void
notify_failure_call(void *arg)
{
	static SPIPlanPtr plan = NULL;
	FailureNotice *fn = arg;
	ProcessRun *pr = fn->pr;
	Oid			types[5] = {INT8OID, INT8OID, TEXTOID, TEXTOID, BOOLOID};
	Datum		vals[5];
	char		nulls[5] = {' ', ' ', ' ', ' ', ' '};
	bool		isnull = true;
	int64		responsible = 0;

	/* a feed post's responsible is its author, a drive file's its owner */
	if (fn->to_responsible)
		responsible = crm_item_int(&pr->cx, "responsible_id", &isnull);
	vals[0] = Int64GetDatum(pr->instance_id);
	vals[1] = Int64GetDatum(responsible);
	nulls[1] = isnull ? 'n' : ' ';
	vals[2] = CStringGetTextDatum(pr->error ? pr->error : "unknown error");
	vals[3] = CStringGetTextDatum(pr->document_type);
	/* a notice about no item: entity_id 0 where Citus keeps the table */
	vals[4] = BoolGetDatum(crm_table_is_distributed(get_relname_relid("notification",
																	  get_namespace_oid("crm", false))));
	crm_exec(crm_plan(&plan,
					  "INSERT INTO crm.notification (user_id, kind, text, entity_type, entity_id,"
					  "   process_instance_id)"
					  " SELECT DISTINCT u.id, 'system',"
					  "   format('Business process \"%s\" failed on %s %s: %s', t.name, i.document_type,"
					  "          i.document_id, $3),"
					  "   e.code, CASE WHEN e.code IS NOT NULL THEN i.document_id WHEN $5 THEN 0 END, i.id"
					  "  FROM crm.process_instance i"
					  "  JOIN crm.process_template t ON t.id = i.template_id"
					  "  JOIN crm.user u ON u.id = t.created_by OR u.id = $2"
					  "  LEFT JOIN crm.entity_type e ON e.code = $4"
					  " WHERE i.id = $1",
					  5, types), vals, nulls, false, 0);
}

static void
notify_failure(ProcessRun *pr)
{
	FailureNotice fn = {pr, true};
	ErrorData  *edata = crm_run_isolated(notify_failure_call, &fn);

	if (edata != NULL && fn.to_responsible)
	{
		/* the document is gone, or unreadable: its author at least */
		fn.to_responsible = false;
		pr->cx.cache = NULL;
		edata = crm_run_isolated(notify_failure_call, &fn);
	}
	if (edata != NULL)
		ereport(LOG,
				(errmsg("crm_automation: process instance %lld failed and nobody could be notified: %s",
						(long long) pr->instance_id, edata->message)));
}

/*
 * What a paused instance waits for, kept in its state and its job's
 * context: {"kind": "task", "task_id": 12, "name": "approve"}, {"kind":
 * "call", "message_id": 7}, {"kind": "wait", "until_client_activity":
 * true}, {"kind": "delay"}.
 */
static Jsonb *
wait_jsonb(ProcessRun *pr)
{
	Jsonb	   *w = one_string("kind", pr->wait_kind);
	JsonbValue	v;

	if (pr->wait_ref != 0)
	{
		v.type = jbvNumeric;
		v.val.numeric = int64_to_numeric(pr->wait_ref);
		w = crm_jsonb_with(w, strcmp(pr->wait_kind, "task") == 0 ? "task_id" : "message_id", &v);
	}
	if (pr->until_client_activity)
	{
		v.type = jbvBool;
		v.val.boolean = true;
		w = crm_jsonb_with(w, "until_client_activity", &v);
	}
	if (pr->wait_name != NULL)
	{
		v.type = jbvString;
		v.val.string.val = pr->wait_name;
		v.val.string.len = strlen(pr->wait_name);
		w = crm_jsonb_with(w, "name", &v);
	}
	return w;
}

/* The row of an instance written before, as the run ended or paused. */
static void
update_instance(ProcessRun *pr, Jsonb *state)
{
	static SPIPlanPtr update_plan = NULL;
	Oid			types[10] = {INT8OID, TEXTOID, TEXTOID, BOOLOID, TEXTOID, JSONBOID, JSONBOID, TEXTOID,
	INT8OID, TIMESTAMPTZOID};
	Datum		vals[10];
	char		nulls[10] = {' ', ' ', ' ', ' ', ' ', ' ', ' ', ' ', ' ', ' '};

	vals[0] = Int64GetDatum(pr->instance_id);
	vals[1] = CStringGetTextDatum(pr->status);
	vals[2] = pr->status_text ? CStringGetTextDatum(pr->status_text) : (Datum) 0;
	nulls[2] = pr->status_text ? ' ' : 'n';
	vals[3] = BoolGetDatum(pr->status_text_set);
	vals[4] = pr->current ? CStringGetTextDatum(pr->current) : (Datum) 0;
	nulls[4] = pr->current ? ' ' : 'n';
	vals[5] = pr->cx.variables ? JsonbPGetDatum(pr->cx.variables) : (Datum) 0;
	nulls[5] = pr->cx.variables ? ' ' : 'n';
	vals[6] = JsonbPGetDatum(state);
	vals[7] = pr->error ? CStringGetTextDatum(pr->error) : (Datum) 0;
	nulls[7] = pr->error ? ' ' : 'n';
	/* the document's id and the time as values: one shard, when distributed */
	vals[8] = Int64GetDatum(pr->document_id);
	vals[9] = TimestampTzGetDatum(GetCurrentTransactionStartTimestamp());
	crm_exec(crm_plan(&update_plan,
					  "UPDATE crm.process_instance SET status = $2,"
					  " status_text = CASE WHEN $4 THEN $3 ELSE status_text END,"
					  " current_activity = $5, variables = coalesce($6, '{}'), state = $7, error = $8,"
					  " finished_at = CASE WHEN $2 IN ('completed', 'failed', 'stopped') THEN $10 END"
					  " WHERE id = $1 AND document_id = $9",
					  10, types), vals, nulls, false, 0);
}

/*
 * Runs (or resumes after a pause at position resume) an instance, as the
 * automation owner, and records where it ended.
 */
static void
run_instance(ProcessRun *pr, const int *resume, int nresume)
{
	static SPIPlanPtr job_plan = NULL;
	JsonbValue *acts = member(&pr->definition->root, "activities");
	char	   *cycle = NULL;
	int			depth = crm_lineage_depth();
	Jsonb	   *state = NULL;
	Jsonb	   *wait = NULL;

	if (strcmp(pr->status, "failed") == 0)
		;						/* its definition is invalid: nothing runs */
	else if (!crm_lineage_push('p', pr->instance_id, pr->document_type, pr->document_id, &cycle))
	{
		pr->status = "failed";
		pr->error = psprintf("loop stopped: %s", cycle);
	}
	else
	{
		PG_TRY();
		{
			if (run_block(pr, acts->val.binary.data, "activities", resume, nresume))
				pr->status = "completed";
		}
		PG_FINALLY();
		{
			crm_lineage_restore(depth);
		}
		PG_END_TRY();
	}

	if (pr->cx.activity_outputs != NULL)
	{
		JsonbValue	v;

		crm_jsonb_binary(pr->cx.activity_outputs, &v);
		state = crm_jsonb_with(NULL, "outputs", &v);
	}
	if (strcmp(pr->status, "waiting") == 0)
	{
		JsonbValue	v;

		crm_jsonb_binary(pr->after, &v);
		state = crm_jsonb_with(state, "after", &v);
		crm_jsonb_binary(pr->definition, &v);
		state = crm_jsonb_with(state, "definition", &v);
		wait = wait_jsonb(pr);
		crm_jsonb_binary(wait, &v);
		state = crm_jsonb_with(state, "wait", &v);
		v.type = jbvString;
		v.val.string.val = pr->waiting_for;
		v.val.string.len = strlen(pr->waiting_for);
		state = crm_jsonb_with(state, "waiting_for", &v);
	}
	if (state == NULL)
		state = empty_object();

	if (!pr->stored)
		write_instance(pr, true, state);
	else
		update_instance(pr, state);
	if (strcmp(pr->status, "failed") == 0)
		notify_failure(pr);

	if (strcmp(pr->status, "waiting") == 0)
	{
		Oid			jtypes[6] = {INT8OID, TEXTOID, INT8OID, TIMESTAMPTZOID, TEXTOID, JSONBOID};
		Datum		jvals[6];

		/*
		 * The job that resumes it: due after a delay, or far ahead when an
		 * event ends the wait (a completed task, a call's result, the client's
		 * activity: the triggers of 75_scheduler.sql make it due now).  Its
		 * context says what it waits for, for those triggers.
		 */
		jvals[0] = Int64GetDatum(pr->instance_id);
		jvals[1] = CStringGetTextDatum(pr->document_type);
		jvals[2] = Int64GetDatum(pr->document_id);
		jvals[3] = TimestampTzGetDatum(pr->due != 0 ? pr->due : far_future());
		jvals[4] = CStringGetTextDatum(pr->current);
		jvals[5] = JsonbPGetDatum(wait);
		crm_exec(crm_plan(&job_plan,
						  "INSERT INTO crm.job (kind, process_instance_id, entity_type, entity_id, due_at, context)"
						  " VALUES ('process_timer', $1, $2, $3, $4, $6 || jsonb_build_object('activity', $5))",
						  6, jtypes), jvals, NULL, false, 0);
	}
}

/* A definition to check again before it runs (crm_run_isolated). */
typedef struct DefinitionCheck
{
	const char *document_type;
	Jsonb	   *definition;
} DefinitionCheck;

static void
check_definition_call(void *arg)
{
	DefinitionCheck *dc = arg;

	crm_process_check_definition(dc->document_type, dc->definition);
}

/* The instance fails at once: what it would run is not a valid definition. */
static void
invalid_definition_text(ProcessRun *pr, const char *what, const char *message,
						const char *detail)
{
	pr->status = "failed";
	pr->error = detail
		? psprintf("%s has an invalid definition: %s (%s)", what, message, detail)
		: psprintf("%s has an invalid definition: %s", what, message);
}

static void
invalid_definition(ProcessRun *pr, const char *what, ErrorData *edata)
{
	invalid_definition_text(pr, what, edata->message, edata->detail);
	FreeErrorData(edata);
}

/* An empty JSON object, made once per backend. */
static Jsonb *
empty_object(void)
{
	static Jsonb *empty = NULL;

	if (empty == NULL)
	{
		MemoryContext old = MemoryContextSwitchTo(TopMemoryContext);

		empty = DatumGetJsonbP(DirectFunctionCall1(jsonb_in, CStringGetDatum("{}")));
		MemoryContextSwitchTo(old);
	}
	return empty;
}

/* The value a start parameter gets: given, else its default; checked against its type. */
static Jsonb *
start_parameters(int64 template_id, Jsonb *decl, Jsonb *given)
{
	Jsonb	   *result = NULL;
	JsonbIterator *it;
	JsonbValue	k;
	JsonbIteratorToken tok;

	if (!JB_ROOT_IS_OBJECT(given) || JB_ROOT_IS_SCALAR(given))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("parameters must be a JSON object"),
				 errhint("For example '{\"reason\": \"renewal\"}'.")));
	/* every given key is declared */
	it = JsonbIteratorInit(&given->root);
	while ((tok = JsonbIteratorNext(&it, &k, true)) != WJB_DONE)
	{
		char	   *key;

		if (tok != WJB_KEY)
			continue;
		key = pnstrdup(k.val.string.val, k.val.string.len);
		if (decl == NULL || member(&decl->root, key) == NULL)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("unknown parameter \"%s\" for process template %lld", key, (long long) template_id),
					 errhint("The template's parameters are the keys of its definition's \"parameters\".")));
	}
	if (decl == NULL)
		return given;
	it = JsonbIteratorInit(&decl->root);
	while ((tok = JsonbIteratorNext(&it, &k, true)) != WJB_DONE)
	{
		JsonbValue	d;
		JsonbValue *v;
		JsonbValue *req;
		JsonbValue	stored;
		char	   *name;
		char	   *type;

		if (tok != WJB_KEY)
			continue;
		name = pnstrdup(k.val.string.val, k.val.string.len);
		(void) JsonbIteratorNext(&it, &d, true);
		type = crm_jsonb_string(JsonbValueToJsonb(&d), "type");
		v = member(&given->root, name);
		if (v == NULL || v->type == jbvNull)
			v = member(d.val.binary.data, "default");
		if (v == NULL || v->type == jbvNull)
		{
			req = member(d.val.binary.data, "required");
			if (req != NULL && req->type == jbvBool && req->val.boolean)
				ereport(ERROR,
						(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
						 errmsg("missing required parameter \"%s\" for process template %lld",
								name, (long long) template_id),
						 errhint("Pass it in parameters, e.g. '{\"%s\": ...}'.", name)));
			continue;
		}
		if (!crm_process_value(type, v, &stored))
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("parameter \"%s\" must be of type %s, not %s", name, type,
							JsonbToCString(NULL, &JsonbValueToJsonb(v)->root, 0))));
		result = crm_jsonb_with(result, name, &stored);
	}
	return result ? result : empty_object();
}

/* Initial values of the declared variables: their defaults. */
static Jsonb *
initial_variables(Jsonb *decl)
{
	Jsonb	   *result = NULL;
	JsonbIterator *it;
	JsonbValue	k;
	JsonbIteratorToken tok;

	if (decl == NULL)
		return NULL;
	it = JsonbIteratorInit(&decl->root);
	while ((tok = JsonbIteratorNext(&it, &k, true)) != WJB_DONE)
	{
		JsonbValue	d;
		JsonbValue *v;
		JsonbValue	stored;
		char	   *name;

		if (tok != WJB_KEY)
			continue;
		name = pnstrdup(k.val.string.val, k.val.string.len);
		(void) JsonbIteratorNext(&it, &d, true);
		v = member(d.val.binary.data, "default");
		if (v == NULL)
		{
			stored.type = jbvNull;
			v = &stored;
		}
		else if (!crm_process_value(crm_jsonb_string(JsonbValueToJsonb(&d), "type"), v, &stored))
			elog(ERROR, "default of variable \"%s\" does not fit its type", name);
		result = crm_jsonb_with(result, name, &stored);
	}
	return result;
}

/* The kept plans of document_exists, one per item table. */
#define EXISTS_PLANS 16
static struct
{
	char		table[NAMEDATALEN];
	SPIPlanPtr	plan;
}			exists_plans[EXISTS_PLANS];

static bool
document_exists(const char *document_type, int64 document_id)
{
	HeapTuple	tuple;
	TupleDesc	desc;

	return document_row(document_type, document_id, &tuple, &desc);
}

/* The same, with the row when it was read by a probe (else *tuple is NULL). */
static bool
document_row(const char *document_type, int64 document_id, HeapTuple *tuple, TupleDesc *desc)
{
	Oid			types[1] = {INT8OID};
	Datum		vals[1];
	char	   *table = crm_document_table(document_type);
	SPIPlanPtr *plan = NULL;
	int			i;

	*tuple = NULL;
	*desc = NULL;
	/* by a probe of the primary key, when the table has one */
	switch (crm_probe_row(table, Int64GetDatum(document_id), tuple, desc))
	{
		case CRM_ROW_FOUND:
			return true;
		case CRM_ROW_NONE:
			return false;
		case CRM_ROW_UNREAD:
			break;
	}
	for (i = 0; i < EXISTS_PLANS && plan == NULL; i++)
	{
		if (exists_plans[i].table[0] == '\0')
			strlcpy(exists_plans[i].table, table, NAMEDATALEN);
		if (strcmp(exists_plans[i].table, table) == 0)
			plan = &exists_plans[i].plan;
	}
	vals[0] = Int64GetDatum(document_id);
	/*
	 * The table name comes from the catalogue of entity types (or is
	 * feed_post, drive_file).  Not read-only:
	 * a fresh snapshot sees what the activities just did.
	 */
	if (plan != NULL)
		crm_exec(crm_plan(plan,
						  psprintf("SELECT 1 FROM %s WHERE id = $1",
								   quote_qualified_identifier("crm", table)),
						  1, types), vals, NULL, false, 1);
	else if (SPI_execute_with_args(psprintf("SELECT 1 FROM %s WHERE id = $1",
											quote_qualified_identifier("crm", table)),
								   1, types, vals, NULL, false, 1) != SPI_OK_SELECT)
		elog(ERROR, "could not read %s %lld", document_type, (long long) document_id);
	return SPI_processed > 0;
}

/*
 * crm._start_process(template_id, document_type, document_id, parameters):
 * checks, creates the instance and runs it; returns its id.  document_type
 * NULL takes the template's.
 */
Datum
crm_start_process(PG_FUNCTION_ARGS)
{
	if (PG_ARGISNULL(0))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("template_id must not be null"),
				 errhint("List templates with: SELECT id, document_type, name FROM crm.process_template;")));
	if (PG_ARGISNULL(2))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("document_id must not be null")));
	PG_RETURN_INT64(crm_process_start(PG_GETARG_INT64(0),
									  PG_ARGISNULL(1) ? NULL : text_to_cstring(PG_GETARG_TEXT_PP(1)),
									  PG_GETARG_INT64(2),
									  PG_ARGISNULL(3) ? NULL : PG_GETARG_JSONB_P(3),
									  false));
}

/*
 * Whether the definitions are Citus reference tables (core/citus.h): then
 * an instance's rows take the INSERT, whose foreign-key checks read this
 * node's copies, and locking a definition row FOR KEY SHARE ourselves would
 * lock it on every node from every shard's statement (a distributed
 * deadlock between two shards' starts).
 */
static bool
references_distributed(void)
{
	return crm_table_is_distributed(get_relname_relid("process_template",
													  get_namespace_oid("crm", false)));
}

/*
 * A template as its instances start: its row, and whether its definition
 * still passes the checks of crm.add_process_template (a bad one fails
 * every instance at once).  Allocated in the caller's context.
 */
CrmProcessTemplate *
crm_process_template(int64 template_id)
{
	static SPIPlanPtr template_plan = NULL;
	static SPIPlanPtr template_plan_distributed = NULL;
	Oid			types[1] = {INT8OID};
	Datum		vals[1];
	MemoryContext caller = CurrentMemoryContext;
	CrmProcessTemplate *t = palloc0(sizeof(CrmProcessTemplate));
	CrmScope	scope;
	DefinitionCheck dc;
	ErrorData  *edata;
	bool		isnull;

	crm_scope_enter(&scope, CRM_SCOPE_SPI);
	vals[0] = Int64GetDatum(template_id);
	if (references_distributed())
		crm_exec(crm_plan_opts(&template_plan_distributed,
							   "SELECT document_type, definition, active FROM crm.process_template WHERE id = $1",
							   1, types, CURSOR_OPT_GENERIC_PLAN), vals, NULL, false, 1);
	else
		crm_exec(crm_plan_opts(&template_plan,
							   "SELECT document_type, definition, active FROM crm.process_template WHERE id = $1"
							   " FOR KEY SHARE",
							   1, types, CURSOR_OPT_GENERIC_PLAN), vals, NULL, false, 1);
	if (SPI_processed == 0)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("process template %lld does not exist", (long long) template_id),
				 errhint("List templates with: SELECT id, document_type, name FROM crm.process_template;")));
	{
		MemoryContext old = MemoryContextSwitchTo(caller);

		t->id = template_id;
		t->document_type = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1);
		t->definition = DatumGetJsonbPCopy(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2, &isnull));
		t->active = DatumGetBool(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 3, &isnull));
		MemoryContextSwitchTo(old);
	}
	if (t->active)
	{
		/* the stored definition is checked again: a bad one fails its instances */
		dc.document_type = t->document_type;
		dc.definition = t->definition;
		edata = crm_run_isolated(check_definition_call, &dc);
		if (edata != NULL)
		{
			t->invalid_message = pstrdup(edata->message);
			t->invalid_detail = edata->detail ? pstrdup(edata->detail) : NULL;
			FreeErrorData(edata);
		}
	}
	crm_scope_leave(&scope);
	return t;
}

int64
crm_process_start(int64 template_id, const char *asked_type, int64 document_id,
				  Jsonb *given, bool missing_ok)
{
	return crm_process_start_template(crm_process_template(template_id), asked_type,
									  document_id, given, missing_ok, NULL);
}

/*
 * Who starts an instance (started_by): the acting CRM user (crm.user_id)
 * when that user exists, locked FOR KEY SHARE as the foreign key's check
 * would; false for none.
 */
static bool
acting_user(CrmStartShared *shared, int64 *user_id)
{
	static SPIPlanPtr plan = NULL;
	static SPIPlanPtr plan_distributed = NULL;
	Oid			types[1] = {INT8OID};
	Datum		vals[1];
	bool		exists;

	*user_id = crm_acting_user_id;
	if (crm_acting_user_id <= 0)
		return false;
	if (shared != NULL && shared->user_known && shared->user_asked == crm_acting_user_id)
		return shared->user_exists;
	vals[0] = Int64GetDatum((int64) crm_acting_user_id);
	if (references_distributed())
		crm_exec(crm_plan_opts(&plan_distributed, "SELECT 1 FROM crm.user WHERE id = $1", 1, types,
							   CURSOR_OPT_GENERIC_PLAN),
				 vals, NULL, false, 1);
	else
		crm_exec(crm_plan_opts(&plan, "SELECT 1 FROM crm.user WHERE id = $1 FOR KEY SHARE", 1, types,
							   CURSOR_OPT_GENERIC_PLAN),
				 vals, NULL, false, 1);
	exists = SPI_processed > 0;
	if (shared != NULL)
	{
		shared->user_known = true;
		shared->user_asked = crm_acting_user_id;
		shared->user_exists = exists;
	}
	return exists;
}

/* The next id of crm.process_instance (its identity's sequence). */
static int64
next_instance_id(void)
{
	static Oid	table = InvalidOid;
	static Oid	seq = InvalidOid;
	Oid			relid = get_relname_relid("process_instance", get_namespace_oid("crm", false));

	if (relid != table || !OidIsValid(seq))
	{
		seq = getIdentitySequence(relid, get_attnum(relid, "id"), false);
		table = relid;
	}
	return nextval_internal(seq, false);
}

int64
crm_process_start_template(const CrmProcessTemplate *t, const char *asked_type,
						   int64 document_id, Jsonb *given, bool missing_ok,
						   CrmStartShared *shared)
{
	HeapTuple	row;
	TupleDesc	row_desc;
	Jsonb	   *parameters;
	Jsonb	   *variables;
	int64		instance_id;
	ProcessRun	pr;
	CrmScope	scope;

	if (given == NULL)
		given = empty_object();
	if (!t->active)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("process template %lld is not active", (long long) t->id),
				 errhint("Activate it with crm.update_process_template(%lld, active => true).",
						 (long long) t->id)));
	if (asked_type != NULL && strcmp(asked_type, t->document_type) != 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("process template %lld is for %s documents, not %s",
						(long long) t->id, t->document_type, asked_type)));

	crm_scope_enter(&scope, CRM_SCOPE_SPI);
	if (!document_row(t->document_type, document_id, &row, &row_desc))
	{
		if (missing_ok)
		{
			crm_scope_leave(&scope);
			return 0;
		}
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("%s %lld does not exist", t->document_type, (long long) document_id)));
	}
	if (t->invalid_message == NULL)
	{
		parameters = start_parameters(t->id, member_jsonb(t->definition, "parameters"), given);
		variables = initial_variables(member_jsonb(t->definition, "variables"));
	}
	else
	{
		parameters = JB_ROOT_IS_OBJECT(given) && !JB_ROOT_IS_SCALAR(given) ? given
			: empty_object();
		variables = NULL;
	}

	/* its row is written when it ends, or before an action (write_instance) */
	instance_id = next_instance_id();
	run_setup(&pr, instance_id, t->document_type, document_id, t->definition, parameters, variables, NULL);
	pr.stored = false;
	pr.in_statement = crm_processes_in_statement;
	pr.template_id = t->id;
	pr.parameters = parameters;
	pr.initial_variables = variables;
	pr.has_started_by = acting_user(shared, &pr.started_by);
	pr.kept = shared != NULL ? shared->kept : NULL;
	/* the first activity reads the document as it was just read */
	pr.cx.tuple = row;
	pr.cx.desc = row_desc;
	pr.row_fresh = row != NULL;
	if (t->invalid_message != NULL)
		invalid_definition_text(&pr, psprintf("process template %lld", (long long) t->id),
								t->invalid_message, t->invalid_detail);
	run_instance(&pr, NULL, 0);

	crm_scope_leave(&scope);
	return instance_id;
}

/* What a wait's end means for the instance (wait_outcome). */
typedef enum WaitOutcome
{
	WAIT_RESUME,				/* the activity is done: go on after it */
	WAIT_FAIL,					/* the activity failed: so does the instance */
	WAIT_AGAIN					/* not over yet: wait again */
} WaitOutcome;

/* A row's text column by key (a task's or message's status), NULL if none. */
static char *
status_of(const char *sql, SPIPlanPtr *plan, int64 id)
{
	Oid			types[1] = {INT8OID};
	Datum		vals[1];

	vals[0] = Int64GetDatum(id);
	crm_exec(crm_plan(plan, sql, 1, types), vals, NULL, false, 1);
	if (SPI_processed == 0)
		return NULL;
	return SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1);
}

/*
 * Has what the paused activity waited for happened?  The job may run
 * early (a task completed, then reopened before the job ran): the task or
 * message itself says.  *outputs gets what the activity adds to its
 * outputs, *error why it failed.
 */
static WaitOutcome
wait_outcome(Jsonb *wait, const CrmJob *job, Jsonb **outputs, char **error)
{
	static SPIPlanPtr task_plan = NULL;
	static SPIPlanPtr message_plan = NULL;
	char	   *kind = crm_jsonb_string(wait, "kind");
	JsonbValue	v;
	char	   *status;

	*outputs = NULL;
	*error = NULL;
	if (kind == NULL || strcmp(kind, "delay") == 0)
		return WAIT_RESUME;
	if (strcmp(kind, "task") == 0)
	{
		int64		task_id = member_int(wait, "task_id");

		status = status_of("SELECT status FROM crm.task WHERE id = $1", &task_plan, task_id);
		if (status == NULL)
		{
			*error = psprintf("task %lld was deleted before it was completed", (long long) task_id);
			return WAIT_FAIL;
		}
		if (strcmp(status, "completed") != 0)
			return WAIT_AGAIN;
		v.type = jbvNumeric;
		v.val.numeric = int64_to_numeric(task_id);
		*outputs = crm_jsonb_with(one_string("status", status), "task_id", &v);
		return WAIT_RESUME;
	}
	if (strcmp(kind, "call") == 0)
	{
		int64		message_id = member_int(wait, "message_id");

		status = status_of("SELECT status FROM crm.outbox WHERE id = $1", &message_plan, message_id);
		/* a message cleaned up after its end: the trigger noted how it ended */
		if (status == NULL)
			status = crm_jsonb_string(job->context, "message_status");
		if (status == NULL)
		{
			*error = psprintf("outbox message %lld of the call no longer exists", (long long) message_id);
			return WAIT_FAIL;
		}
		if (strcmp(status, "sent") != 0 && strcmp(status, "dead") != 0)
			return WAIT_AGAIN;
		v.type = jbvNumeric;
		v.val.numeric = int64_to_numeric(message_id);
		*outputs = crm_jsonb_with(one_string("status", status), "message_id", &v);
		return WAIT_RESUME;
	}
	/* wait: its time is over, or the client was active */
	*outputs = one_string("ended_by", member(&job->context->root, "ended_by_activity") != NULL
						  ? "client_activity" : "time");
	return WAIT_RESUME;
}

/* The paused activity's "waiting" row of the trace ends (done or failed). */
static void
finish_waiting_row(ProcessRun *pr, const char *path, const char *status, const char *error,
				   Jsonb *outputs)
{
	static SPIPlanPtr plan = NULL;
	Oid			types[7] = {INT8OID, TEXTOID, TEXTOID, TEXTOID, JSONBOID, INT8OID, TIMESTAMPTZOID};
	Datum		vals[7];
	char		nulls[7] = {' ', ' ', ' ', ' ', ' ', ' ', ' '};

	/* a 0.1.0 schema, not yet updated (ALTER EXTENSION ... UPDATE) has none */
	if (!OidIsValid(get_relname_relid("process_log", get_namespace_oid("crm", false))))
		return;
	vals[0] = Int64GetDatum(pr->instance_id);
	vals[1] = CStringGetTextDatum(path);
	vals[2] = CStringGetTextDatum(status);
	vals[3] = error ? CStringGetTextDatum(error) : (Datum) 0;
	nulls[3] = error ? ' ' : 'n';
	vals[4] = outputs ? JsonbPGetDatum(outputs) : (Datum) 0;
	nulls[4] = outputs ? ' ' : 'n';
	/* the document's id and the time as values: one shard, when distributed */
	vals[5] = Int64GetDatum(pr->document_id);
	vals[6] = TimestampTzGetDatum(GetCurrentTimestamp());
	crm_exec(crm_plan(&plan,
					  "UPDATE crm.process_log SET status = $3, error = $4,"
					  " outputs = coalesce(outputs, '{}') || coalesce($5, '{}'), finished_at = $7"
					  " WHERE document_id = $6 AND instance_id = $1"
					  "   AND id = (SELECT max(id) FROM crm.process_log"
					  "              WHERE document_id = $6 AND instance_id = $1 AND path = $2 AND status = 'waiting')",
					  7, types), vals, nulls, false, 0);
}

/* The job again, as it was: what the instance waits for has not happened yet. */
static void
wait_again(const CrmJob *job)
{
	static SPIPlanPtr plan = NULL;
	Oid			types[2] = {INT8OID, INT8OID};
	Datum		vals[2];

	vals[0] = Int64GetDatum(job->id);
	vals[1] = Int64GetDatum(job->entity_id);	/* its shard, when distributed */
	crm_exec(crm_plan(&plan,
					  "INSERT INTO crm.job (kind, process_instance_id, entity_type, entity_id, due_at, context)"
					  " SELECT kind, process_instance_id, entity_type, entity_id,"
					  "   greatest(due_at, now() + interval '100 years'),"
					  "   context - 'task_status' - 'message_status' - 'ended_by_activity'"
					  "  FROM crm.job WHERE id = $1 AND entity_id = $2",
					  2, types), vals, NULL, false, 0);
}

/*
 * A "process_timer" job: the instance's pause is over (its delay or wait
 * ran out, its task was completed or deleted, its call ended), it goes on
 * after the activity that paused it, or fails there.  An instance no
 * longer waiting (stopped meanwhile) is left alone.
 */
static void
execute_process_timer(const CrmJob *job)
{
	static SPIPlanPtr plan = NULL;
	Oid			types[2] = {INT8OID, INT8OID};
	Datum		vals[2];
	MemoryContext caller = CurrentMemoryContext;
	CrmScope	scope;
	ProcessRun	pr;
	HeapTuple	tup;
	TupleDesc	desc;
	bool		isnull;
	char	   *status;
	char	   *current;
	Jsonb	   *state;
	int			steps[MAX_STEPS];
	int			nsteps;

	crm_scope_enter(&scope, CRM_SCOPE_SPI);
	vals[0] = Int64GetDatum(job->process_instance_id);
	vals[1] = Int64GetDatum(job->entity_id);	/* the document: its shard, when distributed */
	crm_exec(crm_plan(&plan,
					  "SELECT status, parameters, variables, state, current_activity FROM crm.process_instance"
					  " WHERE id = $1 AND document_id = $2 FOR UPDATE",
					  2, types), vals, NULL, false, 1);
	if (SPI_processed == 0)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("process instance %lld no longer exists", (long long) job->process_instance_id)));
	tup = SPI_tuptable->vals[0];
	desc = SPI_tuptable->tupdesc;
	status = SPI_getvalue(tup, desc, 1);
	if (strcmp(status, "waiting") == 0)
	{
		MemoryContext old = MemoryContextSwitchTo(caller);
		Jsonb	   *parameters = DatumGetJsonbPCopy(SPI_getbinval(tup, desc, 2, &isnull));
		Jsonb	   *variables = DatumGetJsonbPCopy(SPI_getbinval(tup, desc, 3, &isnull));
		Jsonb	   *wait;
		Jsonb	   *outputs;
		char	   *error;

		state = DatumGetJsonbPCopy(SPI_getbinval(tup, desc, 4, &isnull));
		current = SPI_getvalue(tup, desc, 5);
		MemoryContextSwitchTo(old);
		run_setup(&pr, job->process_instance_id, job->entity_type, job->entity_id,
				  member_jsonb(state, "definition"), parameters, variables,
				  member_jsonb(state, "outputs"));
		nsteps = position_steps(member_jsonb(state, "after"), steps);
		if (pr.definition == NULL || nsteps == 0 || current == NULL)
			ereport(ERROR,
					(errcode(ERRCODE_DATA_CORRUPTED),
					 errmsg("process instance %lld has no position to resume at",
							(long long) job->process_instance_id)));
		wait = member_jsonb(state, "wait");
		switch (wait_outcome(wait, job, &outputs, &error))
		{
			case WAIT_AGAIN:
				wait_again(job);
				crm_scope_leave(&scope);
				return;
			case WAIT_FAIL:
				finish_waiting_row(&pr, current, "failed", error, NULL);
				pr.status = "failed";
				pr.error = error;
				pr.current = current;
				run_instance(&pr, NULL, 0);
				crm_scope_leave(&scope);
				return;
			case WAIT_RESUME:
				finish_waiting_row(&pr, current, "done", NULL, outputs);
				if (outputs != NULL && crm_jsonb_string(wait, "name") != NULL)
				{
					JsonbValue	v;
					char	   *name = crm_jsonb_string(wait, "name");
					JsonbValue *had = pr.cx.activity_outputs
						? member(&pr.cx.activity_outputs->root, name) : NULL;
					Jsonb	   *all = outputs;

					/* the outputs it had when it paused (task_id), with the new ones */
					if (had != NULL && had->type == jbvBinary)
						all = DatumGetJsonbP(DirectFunctionCall2(jsonb_concat,
																 JsonbPGetDatum(JsonbValueToJsonb(had)),
																 JsonbPGetDatum(outputs)));
					crm_jsonb_binary(all, &v);
					pr.cx.activity_outputs = crm_jsonb_with(pr.cx.activity_outputs, name, &v);
				}
				break;
		}
		{
			DefinitionCheck dc = {job->entity_type, pr.definition};
			ErrorData  *edata = crm_run_isolated(check_definition_call, &dc);

			if (edata != NULL)
				invalid_definition(&pr, psprintf("process instance %lld",
												 (long long) job->process_instance_id), edata);
		}
		/* the status text set before the pause stays unless changed */
		run_instance(&pr, steps, nsteps);
	}
	crm_scope_leave(&scope);
}

void
crm_processes_init(void)
{
	crm_register_job_executor("process_timer", execute_process_timer);
}
