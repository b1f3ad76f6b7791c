/*-------------------------------------------------------------------------
 *
 * robots.c
 *	  Running a stage's robots when an item enters it.
 *
 * When items enter a stage (stage_entry.c hands over a statement's stage
 * changes in batches), crm_robots_run_entries cancels what the items' old
 * stages had pending and plans the new stages' robots, in the transaction
 * that moved the items, so a rolled-back move plans nothing:
 *
 *	  - a robot with a delay, and the robots chained to it by after_previous,
 *		become a job (crm.job) the worker runs when due;
 *	  - a wait makes every later robot a job that runs when the wait ends;
 *	  - every other robot runs at once, in order.  A failing robot is logged
 *		and the application's statement still succeeds: a batch runs in one
 *		subtransaction, and if anything in it fails it is rolled back and
 *		replayed "carefully", each robot in a subtransaction of its own.
 *
 * Every run is logged (the view crm.robot_log): the runs of one item's
 * sequence in one row of crm.robot_log_entry, written when the sequence ends;
 * a run planned for later in a row of crm.automation_log, updated when its
 * job runs.  Outputs of named robots feed later ones ({=Robot:NAME.key}).
 *
 * Loops: a robot that would run again for the same item inside its own
 * chain of causes is not run (loop_stopped); see lineage.c.  The robots
 * themselves are loaded by robots_load.c.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "access/xact.h"
#include "catalog/namespace.h"
#include "catalog/pg_namespace.h"
#include "catalog/pg_type.h"
#include "commands/trigger.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/jsonb.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/syscache.h"
#include "utils/timestamp.h"

#include "core/guc.h"
#include "core/index_probe.h"
#include "core/scope.h"
#include "engine/robots.h"
#include "core/rowsink.h"
#include "core/citus.h"
#include "core/rule_cache.h"
#include "engine/scheduler.h"
#include "core/spi_util.h"
#include "engine/work_time.h"
#include "engine/hooks.h"

/* ---------- logging ---------- */

/*
 * The log row of a run in a database still on 0.1.0 (crm_log_has_entries()
 * false): a row per run in the table crm.robot_log.  Rows of finished runs
 * go through a sink (written in the batch's INSERT when a batch is open); a
 * scheduled run's row is written at once, since its job refers to it.
 */
static CrmRowSink log_sink = {
	"crm.robot_log", 13,
	{"robot_id", "name", "action", "stage_id", "entity_type", "entity_id", "status",
	"error", "outputs", "detail", "depth", "planned_at", "finished_at"},
	{INT8OID, TEXTOID, TEXTOID, INT8OID, TEXTOID, INT8OID, TEXTOID,
	TEXTOID, JSONBOID, JSONBOID, INT4OID, TIMESTAMPTZOID, TIMESTAMPTZOID},
	true
};

/*
 * Otherwise the runs of one item's sequence are gathered (EntryLog) and
 * written as one row of crm.robot_log_entry when the sequence ends, through
 * a sink too: a row and an index entry per item instead of a row and two
 * index entries per run.
 */
static CrmRowSink entry_sink = {
	"crm.robot_log_entry", 14,
	{"stage_id", "entity_type", "entity_id", "depth", "planned_at", "robot_ids", "names",
	"actions", "statuses", "errors", "outputs", "details", "started", "finished_at"},
	{INT8OID, TEXTOID, INT8OID, INT4OID, TIMESTAMPTZOID, INT8ARRAYOID, TEXTARRAYOID,
	TEXTARRAYOID, TEXTARRAYOID, TEXTARRAYOID, JSONBARRAYOID, JSONBARRAYOID, TIMESTAMPTZARRAYOID,
	TIMESTAMPTZARRAYOID},
	true
};

/* The runs an entry row holds at most (its CHECK; ids id .. id + 31). */
#define ENTRY_MAX_RUNS 32

typedef struct EntryLog
{
	int			n;
	int			depth;			/* the lineage's at the first run */
	TimestampTz planned_at;
	Datum		robot_ids[ENTRY_MAX_RUNS];
	Datum		actions[ENTRY_MAX_RUNS];
	Datum		statuses[ENTRY_MAX_RUNS];
	Datum		started[ENTRY_MAX_RUNS];
	Datum		finished[ENTRY_MAX_RUNS];
	/* columns mostly NULL: a NULL array when every run's is */
	Datum		names[ENTRY_MAX_RUNS];
	Datum		errors[ENTRY_MAX_RUNS];
	Datum		outputs[ENTRY_MAX_RUNS];
	Datum		details[ENTRY_MAX_RUNS];
	bool		name_null[ENTRY_MAX_RUNS];
	bool		error_null[ENTRY_MAX_RUNS];
	bool		outputs_null[ENTRY_MAX_RUNS];
	bool		detail_null[ENTRY_MAX_RUNS];
} EntryLog;

static Jsonb *
cycle_detail(const char *cycle)
{
	JsonbValue	jv;
	JsonbParseState *st = NULL;

	pushJsonbValue(&st, WJB_BEGIN_OBJECT, NULL);
	jv.type = jbvString;
	jv.val.string.val = "cycle";
	jv.val.string.len = 5;
	pushJsonbValue(&st, WJB_KEY, &jv);
	jv.val.string.val = (char *) cycle;
	jv.val.string.len = strlen(cycle);
	pushJsonbValue(&st, WJB_VALUE, &jv);
	return JsonbValueToJsonb(pushJsonbValue(&st, WJB_END_OBJECT, NULL));
}

/* An array column of an entry row; NULL (*isnull) when every element is. */
static Datum
entry_array(const Datum *elems, const bool *nulls, int n, Oid type, bool *isnull)
{
	int			dims[1] = {n};
	int			lbs[1] = {1};
	int16		typlen;
	bool		typbyval;
	char		typalign;
	int			i;

	*isnull = true;
	for (i = 0; i < n && *isnull; i++)
		if (nulls == NULL || !nulls[i])
			*isnull = false;
	if (*isnull)
		return (Datum) 0;
	get_typlenbyvalalign(type, &typlen, &typbyval, &typalign);
	return PointerGetDatum(construct_md_array((Datum *) elems, (bool *) nulls, 1, dims, lbs,
											  type, typlen, typbyval, typalign));
}

/* The runs gathered for an item, as a row of crm.robot_log_entry. */
static void
entry_flush(EntryLog *e, const char *entity_type, int64 item_id, int64 stage_id)
{
	Datum		vals[14];
	bool		nulls[14];

	if (e == NULL || e->n == 0)
		return;
	memset(nulls, 0, sizeof(nulls));
	vals[0] = Int64GetDatum(stage_id);
	vals[1] = CStringGetTextDatum(entity_type);
	vals[2] = Int64GetDatum(item_id);
	vals[3] = Int32GetDatum(e->depth);
	vals[4] = TimestampTzGetDatum(e->planned_at);
	vals[5] = entry_array(e->robot_ids, NULL, e->n, INT8OID, &nulls[5]);
	vals[6] = entry_array(e->names, e->name_null, e->n, TEXTOID, &nulls[6]);
	vals[7] = entry_array(e->actions, NULL, e->n, TEXTOID, &nulls[7]);
	vals[8] = entry_array(e->statuses, NULL, e->n, TEXTOID, &nulls[8]);
	vals[9] = entry_array(e->errors, e->error_null, e->n, TEXTOID, &nulls[9]);
	vals[10] = entry_array(e->outputs, e->outputs_null, e->n, JSONBOID, &nulls[10]);
	vals[11] = entry_array(e->details, e->detail_null, e->n, JSONBOID, &nulls[11]);
	vals[12] = entry_array(e->started, NULL, e->n, TIMESTAMPTZOID, &nulls[12]);
	vals[13] = entry_array(e->finished, NULL, e->n, TIMESTAMPTZOID, &nulls[13]);
	crm_sink_add(&entry_sink, vals, nulls);
	e->n = 0;
}

/*
 * Logs a run of robot r for an item.  started is when the run began (0: now);
 * cycle is the loop that stopped it.  *entry gathers the runs of the item's
 * sequence (allocated on first use; NULL entry: a row per run, 0.1.0).
 */
static void
log_run(EntryLog **entry, const CrmRobot *r, const char *entity_type, int64 item_id,
		const char *status, const char *error, Jsonb *outputs, const char *cycle,
		TimestampTz started)
{
	Datum		vals[13];
	bool		nulls[13];
	TimestampTz now = GetCurrentTimestamp();
	int			depth = crm_lineage_depth();

	if (entry != NULL)
	{
		EntryLog   *e = *entry;
		int			i;

		if (e == NULL)
			e = *entry = palloc0(sizeof(EntryLog));
		if (e->n == ENTRY_MAX_RUNS)
			entry_flush(e, entity_type, item_id, r->stage_id);
		i = e->n++;
		if (i == 0)
		{
			e->depth = depth;
			e->planned_at = started ? started : now;
		}
		e->started[i] = TimestampTzGetDatum(started ? started : now);
		e->robot_ids[i] = Int64GetDatum(r->id);
		e->name_null[i] = r->name == NULL;
		e->names[i] = r->name ? CStringGetTextDatum(r->name) : (Datum) 0;
		e->actions[i] = CStringGetTextDatum(r->action_name);
		e->statuses[i] = CStringGetTextDatum(status);
		e->error_null[i] = error == NULL;
		e->errors[i] = error ? CStringGetTextDatum(error) : (Datum) 0;
		e->outputs_null[i] = outputs == NULL;
		e->outputs[i] = outputs ? JsonbPGetDatum(outputs) : (Datum) 0;
		e->detail_null[i] = cycle == NULL;
		e->details[i] = cycle ? JsonbPGetDatum(cycle_detail(cycle)) : (Datum) 0;
		e->finished[i] = TimestampTzGetDatum(now);
		return;
	}

	memset(nulls, 0, sizeof(nulls));
	vals[0] = Int64GetDatum(r->id);
	if (r->name)
		vals[1] = CStringGetTextDatum(r->name);
	else
		nulls[1] = true;
	vals[2] = CStringGetTextDatum(r->action_name);
	vals[3] = Int64GetDatum(r->stage_id);
	vals[4] = CStringGetTextDatum(entity_type);
	vals[5] = Int64GetDatum(item_id);
	vals[6] = CStringGetTextDatum(status);
	if (error)
		vals[7] = CStringGetTextDatum(error);
	else
		nulls[7] = true;
	if (outputs)
		vals[8] = JsonbPGetDatum(outputs);
	else
		nulls[8] = true;
	if (cycle)
		vals[9] = JsonbPGetDatum(cycle_detail(cycle));
	else
		nulls[9] = true;
	vals[10] = Int32GetDatum(depth);
	vals[11] = TimestampTzGetDatum(started ? started : now);
	vals[12] = TimestampTzGetDatum(now);
	crm_sink_add(&log_sink, vals, nulls);
}

/* The log row of a scheduled run; returns its id for the job. */
static int64
log_scheduled(const CrmRobot *r, const char *entity_type, int64 item_id)
{
	static SPIPlanPtr plans[2];
	bool		entries = crm_log_has_entries();
	Oid			types[7] = {INT8OID, TEXTOID, TEXTOID, INT8OID, TEXTOID, INT8OID, INT4OID};
	Datum		vals[7];
	char		nulls[7] = {' ', ' ', ' ', ' ', ' ', ' ', ' '};

	vals[0] = Int64GetDatum(r->id);
	if (r->name)
		vals[1] = CStringGetTextDatum(r->name);
	else
		nulls[1] = 'n';
	vals[2] = CStringGetTextDatum(r->action_name);
	vals[3] = Int64GetDatum(r->stage_id);
	vals[4] = CStringGetTextDatum(entity_type);
	vals[5] = Int64GetDatum(item_id);
	vals[6] = Int32GetDatum(crm_lineage_depth());
	crm_exec(crm_plan(&plans[entries],
					  psprintf("INSERT INTO %s (robot_id, name, action, stage_id, entity_type,"
							   " entity_id, status, depth) VALUES ($1, $2, $3, $4, $5, $6, 'scheduled', $7)"
							   " RETURNING id", crm_log_table()),
					  7, types), vals, nulls, false, 1);
	return crm_returned_id();
}

static void
log_update(int64 log_id, const char *status, const char *error, Jsonb *outputs)
{
	static SPIPlanPtr plans[2];
	bool		entries = crm_log_has_entries();
	Oid			types[4] = {INT8OID, TEXTOID, TEXTOID, JSONBOID};
	Datum		vals[4];
	char		nulls[4] = {' ', ' ', ' ', ' '};

	vals[0] = Int64GetDatum(log_id);
	vals[1] = CStringGetTextDatum(status);
	if (error)
		vals[2] = CStringGetTextDatum(error);
	else
		nulls[2] = 'n';
	if (outputs)
		vals[3] = JsonbPGetDatum(outputs);
	else
		nulls[3] = 'n';
	crm_exec(crm_plan(&plans[entries],
					  psprintf("UPDATE %s SET status = $2, error = $3, outputs = $4,"
							   " started_at = coalesce(started_at, clock_timestamp()),"
							   " finished_at = clock_timestamp() WHERE id = $1", crm_log_table()),
					  4, types), vals, nulls, false, 0);
}

/* ---------- running ---------- */

/* What a sequence of robots for one item shares. */
typedef struct RunState
{
	const char *entity_type;
	int64		item_id;
	int64		stage_id;
	CrmEvalContext cx;
	Jsonb	   *outputs;		/* {"NAME": {...}} of named robots so far */
	bool		stopped;		/* a robot ended the sequence */
	bool		careful;		/* each robot in a subtransaction of its own */
	bool		held;			/* the robot just run holds the later ones */
	bool		entries;		/* runs go to an entry row (crm_log_has_entries) */
	EntryLog   *log;			/* the runs not written yet */
} RunState;

/* Logs a run of r for the item of rs (log_run). */
static void
log_rs(RunState *rs, const CrmRobot *r, const char *status, const char *error,
	   Jsonb *outputs, const char *cycle, TimestampTz started)
{
	log_run(rs->entries ? &rs->log : NULL, r, rs->entity_type, rs->item_id, status, error,
			outputs, cycle, started);
}

/* Writes the runs of rs gathered so far. */
static void
log_rs_flush(RunState *rs)
{
	entry_flush(rs->log, rs->entity_type, rs->item_id, rs->stage_id);
}

static void
remember_outputs(RunState *rs, const CrmRobot *r, Jsonb *outputs)
{
	JsonbValue	v;

	if (outputs == NULL || r->name == NULL)
		return;
	crm_jsonb_binary(outputs, &v);
	rs->outputs = crm_jsonb_with(rs->outputs, r->name, &v);
	rs->cx.robot_outputs = rs->outputs;
}

/* A call of a robot's action for the item of rs. */
static void
robot_call(CrmActionCall *call, RunState *rs, const CrmRobot *r)
{
	memset(call, 0, sizeof(*call));
	call->action = r->action;
	call->params = r->params;
	call->cx = &rs->cx;
	call->robot_id = r->id;
	call->stage_id = rs->stage_id;
	call->where = r->where;
}

/*
 * One run of a robot: condition, action, outputs, log.  With log_id set,
 * updates that (scheduled) log row instead of logging a new one.
 */
static void
robot_body(RunState *rs, const CrmRobot *r, int64 log_id, TimestampTz started)
{
	CrmActionCall call;
	Jsonb	   *outputs = NULL;
	const char *status = "done";

	robot_call(&call, rs, r);

	if (r->condition != NULL && !crm_expr_test(r->condition, &rs->cx))
		status = "skipped";
	else
	{
		r->action->exec(&call);
		rs->held = call.hold;
		if (call.has_outputs)
			outputs = JsonbValueToJsonb(pushJsonbValue(&call.outputs, WJB_END_OBJECT, NULL));
		if (call.stop_chain || (r->action->flags & CRM_ACT_STOPS_CHAIN))
			rs->stopped = true;
	}
	if (log_id)
		log_update(log_id, status, NULL, outputs);
	else
		log_rs(rs, r, status, NULL, outputs, NULL, started);
	if (outputs)
		remember_outputs(rs, r, outputs);
}

typedef void (*RobotBody) (RunState *rs, const CrmRobot *r, int64 log_id, TimestampTz started);

typedef struct RobotCall
{
	RunState   *rs;
	const CrmRobot *r;
	int64		log_id;
	TimestampTz started;
	RobotBody	body;
} RobotCall;

static void
robot_body_call(void *arg)
{
	RobotCall  *c = arg;

	c->body(c->rs, c->r, c->log_id, c->started);
}

/*
 * Runs body for a robot.  Carefully, it runs in a subtransaction of its own
 * (crm_run_isolated): a failure rolls back its effects and is returned (the
 * caller logs it), and the sequence goes on.  Otherwise (a batch that will
 * be replayed carefully if anything fails) an error propagates to the
 * batch.  A query cancel always propagates.
 */
static ErrorData *
run_guarded(RunState *rs, const CrmRobot *r, int64 log_id, TimestampTz started,
			RobotBody body)
{
	RobotCall	c = {rs, r, log_id, started, body};

	if (!rs->careful)
	{
		body(rs, r, log_id, started);
		return NULL;
	}
	return crm_run_isolated_retrying(robot_body_call, &c);
}

/* Attempts of a step that failed on a deadlock or a serialization failure. */
#define RETRY_ATTEMPTS 3

/*
 * crm_run_isolated, again after a deadlock or a serialization failure: the
 * step's own subtransaction was rolled back, so it runs again from scratch
 * (a lock another transaction held may be free by then).  Other errors,
 * and the last attempt's, are returned as they are.
 */
ErrorData *
crm_run_isolated_retrying(void (*body) (void *arg), void *arg)
{
	int			attempt;

	for (attempt = 1;; attempt++)
	{
		ErrorData  *edata = crm_run_isolated(body, arg);

		if (edata == NULL || attempt >= RETRY_ATTEMPTS ||
			(edata->sqlerrcode != ERRCODE_T_R_DEADLOCK_DETECTED &&
			 edata->sqlerrcode != ERRCODE_T_R_SERIALIZATION_FAILURE))
			return edata;
		ereport(LOG,
				(errmsg("crm_automation: attempt %d of %d failed, trying again: %s",
						attempt, RETRY_ATTEMPTS, edata->message)));
		FreeErrorData(edata);
		pg_usleep(attempt * 50000L);
		CHECK_FOR_INTERRUPTS();
	}
}

/* Runs one robot now (run_guarded); a failure is logged as the robot's. */
static void
run_robot_now(RunState *rs, const CrmRobot *r, int64 log_id)
{
	char	   *cycle = NULL;
	TimestampTz started = GetCurrentTimestamp();
	ErrorData  *edata;
	int			logged;

	if (r->invalid != NULL)
	{
		/* its row failed the checks when loaded: it fails alone */
		if (log_id)
			log_update(log_id, "failed", r->invalid, NULL);
		else
			log_rs(rs, r, "failed", r->invalid, NULL, NULL, started);
		return;
	}
	if (!crm_lineage_push('r', r->id, rs->entity_type, rs->item_id, &cycle))
	{
		if (log_id)
			log_update(log_id, "loop_stopped", cycle, NULL);
		else
			log_rs(rs, r, "loop_stopped", NULL, NULL, cycle, started);
		return;
	}
	/* an error thrown on skips the pop: the batch restores the depth */
	rs->held = false;
	logged = rs->log ? rs->log->n : 0;
	edata = run_guarded(rs, r, log_id, started, robot_body);
	crm_lineage_pop();
	if (edata != NULL)
	{
		rs->held = false;
		/* what its body logged was rolled back with it */
		if (rs->log && rs->log->n > logged)
			rs->log->n = logged;
		/* the failure is the robot's, not the statement's */
		if (log_id)
			log_update(log_id, "failed", edata->message, NULL);
		else
			log_rs(rs, r, "failed", edata->message, NULL, NULL, started);
		FreeErrorData(edata);
	}
}

/* Encodes robot ids as a jsonb array for a job's chain. */
static Jsonb *
job_context(CrmRobot **seq, int from, int to, Jsonb *outputs)
{
	JsonbParseState *st = NULL;
	JsonbValue	v;
	JsonbValue *res;
	int			i;

	pushJsonbValue(&st, WJB_BEGIN_OBJECT, NULL);
	v.type = jbvString;
	v.val.string.val = "chain";
	v.val.string.len = 5;
	pushJsonbValue(&st, WJB_KEY, &v);
	pushJsonbValue(&st, WJB_BEGIN_ARRAY, NULL);
	for (i = from; i < to; i++)
	{
		v.type = jbvNumeric;
		v.val.numeric = int64_to_numeric(seq[i]->id);
		pushJsonbValue(&st, WJB_ELEM, &v);
	}
	pushJsonbValue(&st, WJB_END_ARRAY, NULL);
	if (outputs)
	{
		v.type = jbvString;
		v.val.string.val = "outputs";
		v.val.string.len = 7;
		pushJsonbValue(&st, WJB_KEY, &v);
		v.type = jbvBinary;
		v.val.binary.data = &outputs->root;
		v.val.binary.len = VARSIZE(outputs) - VARHDRSZ;
		pushJsonbValue(&st, WJB_VALUE, &v);
	}
	res = pushJsonbValue(&st, WJB_END_OBJECT, NULL);
	return JsonbValueToJsonb(res);
}

/* The due time of a delayed robot, or false with *why when it has none. */
static bool
robot_due(RunState *rs, const CrmRobot *r, TimestampTz *due, char **why)
{
	TimestampTz now = GetCurrentTransactionStartTimestamp();

	if (r->delay_kind == CRM_DELAY_AFTER && r->delay_work_time)
	{
		*due = crm_work_time_add(crm_work_schedule(), now, r->delay_after);
		return true;
	}
	if (r->delay_kind == CRM_DELAY_AFTER)
	{
		*due = DatumGetTimestampTz(DirectFunctionCall2(timestamptz_pl_interval,
													   TimestampTzGetDatum(now),
													   IntervalPGetDatum(r->delay_after)));
		return true;
	}
	if (r->delay_kind == CRM_DELAY_AT)
	{
		CrmExpr    *e = crm_expr_compile_text(psprintf("{{%s}}", r->delay_field), "delay.at");
		CrmValue	v = crm_expr_eval(e, &rs->cx);

		if (!crm_value_to_timestamptz(v, due))
		{
			*why = psprintf("field \"%s\" of the item holds no date, so the robot has no due time",
							r->delay_field);
			return false;
		}
		if (r->delay_offset)
			*due = DatumGetTimestampTz(DirectFunctionCall2(timestamptz_pl_interval,
														   TimestampTzGetDatum(*due),
														   IntervalPGetDatum(r->delay_offset)));
		return true;
	}
	*due = now;
	return true;
}

static void
schedule_job(RunState *rs, const char *kind, const CrmRobot *r, TimestampTz due,
			 Jsonb *context)
{
	static SPIPlanPtr plan = NULL;
	Oid			types[10] = {TEXTOID, INT8OID, INT8OID, INT8OID, TEXTOID, INT8OID,
	TIMESTAMPTZOID, TEXTOID, JSONBOID, INTERVALOID};
	Datum		vals[10];
	char		nulls[10] = {' ', ' ', ' ', ' ', ' ', ' ', ' ', ' ', ' ', 'n'};
	int64		log_id;

	log_id = log_scheduled(r, rs->entity_type, rs->item_id);
	vals[0] = CStringGetTextDatum(kind);
	vals[1] = Int64GetDatum(r->id);
	vals[2] = Int64GetDatum(log_id);
	vals[3] = Int64GetDatum(rs->stage_id);
	vals[4] = CStringGetTextDatum(rs->entity_type);
	vals[5] = Int64GetDatum(rs->item_id);
	vals[6] = TimestampTzGetDatum(due);
	if (r->delay_kind == CRM_DELAY_AT && strcmp(kind, "robot") == 0)
	{
		/* the due time follows the field (due_dates.c) */
		vals[7] = CStringGetTextDatum(r->delay_field);
		if (r->delay_offset)
		{
			vals[9] = IntervalPGetDatum(r->delay_offset);
			nulls[9] = ' ';
		}
	}
	else
		nulls[7] = 'n';
	vals[8] = JsonbPGetDatum(context);
	crm_exec(crm_plan(&plan,
					  "INSERT INTO crm.job (kind, robot_id, log_id, stage_id, entity_type, entity_id,"
					  " due_at, due_field, context, due_offset)"
					  " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
					  10, types), vals, nulls, false, 0);
}

/* When a wait with no end of its own is due: in a hundred years. */
static TimestampTz
far_future(void)
{
	return DatumGetTimestampTz(DirectFunctionCall2(timestamptz_pl_interval,
												   TimestampTzGetDatum(GetCurrentTransactionStartTimestamp()),
												   DirectFunctionCall3(interval_in, CStringGetDatum("100 years"),
																	   ObjectIdGetDatum(InvalidOid), Int32GetDatum(-1))));
}

/*
 * A robot that holds the later ones (a robocall waiting for its result):
 * robots seq[from..n) become a wait job, ended when its message is sent or
 * given up (crm._end_waits_on_message in 75_scheduler.sql).  False when
 * there is none to hold.
 */
static bool
hold_rest(RunState *rs, const CrmRobot *r, CrmRobot **seq, int from, int n)
{
	rs->held = false;
	if (from >= n)
		return false;
	schedule_job(rs, "wait", r, far_future(), job_context(seq, from, n, rs->outputs));
	return true;
}

/* Planning one robot of a sequence that does not run now (plan_step). */
typedef struct PlanStep
{
	RunState   *rs;
	CrmRobot  **seq;
	int			i;				/* the robot, seq[i] */
	int			n;
	int			chain_end;		/* seq[i + 1 .. chain_end) go with a delayed one */
	const char *status;			/* not NULL: log the robot with it */
	char	   *error;
	bool		ends_sequence;	/* a wait: the later robots are its job */
} PlanStep;

/* An interval parameter as a due time from now, within the bounds of delays. */
static TimestampTz
due_after(Interval *iv)
{
	if (!crm_delay_in_bounds(iv))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("the interval is too long"),
				 errdetail("A delay is at most %d days (about 100 years).", CRM_MAX_DELAY_DAYS)));
	return DatumGetTimestampTz(DirectFunctionCall2(timestamptz_pl_interval,
												   TimestampTzGetDatum(GetCurrentTransactionStartTimestamp()),
												   IntervalPGetDatum(iv)));
}

/*
 * A wait or a control: condition, due time, the wait's instructions (its
 * executor), its job.
 */
static void
plan_wait_or_control(void *arg)
{
	PlanStep   *ps = arg;
	RunState   *rs = ps->rs;
	CrmRobot   *r = ps->seq[ps->i];
	bool		is_wait = strcmp(r->action->name, "wait") == 0;
	CrmActionCall call;
	Interval   *iv = NULL;
	TimestampTz due;

	robot_call(&call, rs, r);
	if (r->condition != NULL && !crm_expr_test(r->condition, &rs->cx))
	{
		ps->status = "skipped";
		return;
	}
	if (!crm_param_interval(&call, is_wait ? "for" : "after", &iv))
		due = far_future();
	else
		due = due_after(iv);
	if (is_wait)
	{
		/* its instructions go to the responsible user; later robots wait */
		r->action->exec(&call);
		schedule_job(rs, "wait", r, due, job_context(ps->seq, ps->i + 1, ps->n, rs->outputs));
		ps->ends_sequence = true;
	}
	else
		schedule_job(rs, "control", r, due, job_context(ps->seq, 0, 0, rs->outputs));
}

/* A delayed robot: its due time and its job (with the robots chained to it). */
static void
plan_delayed(void *arg)
{
	PlanStep   *ps = arg;
	RunState   *rs = ps->rs;
	CrmRobot   *r = ps->seq[ps->i];
	TimestampTz due;
	char	   *why = NULL;

	if (robot_due(rs, r, &due, &why))
		schedule_job(rs, "robot", r, due,
					 job_context(ps->seq, ps->i + 1, ps->chain_end, rs->outputs));
	else
	{
		ps->status = "failed";
		ps->error = why;
	}
}

/*
 * Plans one robot with body; carefully, in a subtransaction of its own, so
 * that anything failing (a condition dividing by zero, a due time out of
 * range, the job's INSERT) fails this robot alone and is logged as its run.
 */
static void
plan_step(PlanStep *ps, void (*body) (void *arg))
{
	const CrmRobot *r = ps->seq[ps->i];
	ErrorData  *edata = NULL;

	if (ps->rs->careful)
		edata = crm_run_isolated_retrying(body, ps);
	else
		body(ps);
	if (edata != NULL)
	{
		ps->status = "failed";
		ps->error = pstrdup(edata->message);
		ps->ends_sequence = false;
		FreeErrorData(edata);
	}
	if (ps->status != NULL)
		log_rs(ps->rs, r, ps->status, ps->error, NULL, NULL, 0);
}

/*
 * Runs a sequence of robots for one item: immediate ones now, delayed ones
 * (with the robots chained to them) and everything after a wait as jobs.
 * A robot whose row failed its checks when loaded (r->invalid) is logged as
 * failed where it would have run; the others go on.
 */
static void
run_sequence(RunState *rs, CrmRobot **seq, int n)
{
	int			i = 0;

	while (i < n && !rs->stopped)
	{
		CrmRobot   *r = seq[i];
		int			chain_end = i + 1;
		PlanStep	ps;

		CHECK_FOR_INTERRUPTS();

		/* a delayed robot takes the robots chained to it along */
		while (chain_end < n && seq[chain_end]->after_previous)
			chain_end++;

		if (r->invalid != NULL)
		{
			log_rs(rs, r, "failed", r->invalid, NULL, NULL, 0);
			/* a delayed one's chain would have run with it */
			i = r->has_delay ? chain_end : i + 1;
			continue;
		}

		memset(&ps, 0, sizeof(ps));
		ps.rs = rs;
		ps.seq = seq;
		ps.i = i;
		ps.n = n;
		ps.chain_end = chain_end;

		if (r->action->flags & CRM_ACT_SCHEDULES)
		{
			/* wait and control schedule their own job */
			plan_step(&ps, plan_wait_or_control);
			if (ps.ends_sequence)
				return;			/* every later robot runs when the wait ends */
			i++;
			continue;
		}

		if (r->delay_kind != CRM_DELAY_NONE)
		{
			plan_step(&ps, plan_delayed);
			i = chain_end;
			continue;
		}

		run_robot_now(rs, r, 0);
		if (rs->held && hold_rest(rs, r, seq, i + 1, n))
			return;				/* the later robots run when its message is done */
		i++;
	}
}

static void
runstate_init(RunState *rs, const char *entity_type, int64 item_id, int64 stage_id,
			  HeapTuple tuple, TupleDesc desc)
{
	memset(rs, 0, sizeof(*rs));
	rs->entity_type = entity_type;
	rs->item_id = item_id;
	rs->stage_id = stage_id;
	rs->entries = crm_log_has_entries();
	crm_eval_context_init(&rs->cx, entity_type, item_id, tuple, desc);
}

/* Ids found by probes, for one statement's = ANY($1). */
typedef struct IdList
{
	Datum	   *ids;
	int			n;
	int			cap;
} IdList;

static void
id_add(IdList *l, Datum id)
{
	if (l->n == l->cap)
	{
		l->cap = l->cap ? l->cap * 2 : 16;
		l->ids = l->ids ? repalloc(l->ids, sizeof(Datum) * l->cap)
			: palloc(sizeof(Datum) * l->cap);
	}
	l->ids[l->n++] = id;
}

static Datum
id_array(const IdList *l)
{
	return PointerGetDatum(construct_array(l->ids, l->n, INT8OID, 8, true, TYPALIGN_DOUBLE));
}

static bool
slot_text_is(TupleTableSlot *slot, AttrNumber att, const char *const *values, int n)
{
	bool		isnull;
	Datum		d = slot_getattr(slot, att, &isnull);
	char	   *s;
	int			i;

	if (isnull)
		return false;
	s = TextDatumGetCString(d);
	for (i = 0; i < n; i++)
		if (strcmp(s, values[i]) == 0)
			return true;
	return false;
}

static bool
slot_bool(TupleTableSlot *slot, AttrNumber att)
{
	bool		isnull;
	Datum		d = slot_getattr(slot, att, &isnull);

	return !isnull && DatumGetBool(d);
}

/*
 * What the items that left a stage still have: their pending robots, waits
 * and controls (job_item, the pending jobs by item), and their activities
 * marked "complete when the stage changes" (activity_auto_complete, the
 * open ones by item).  Each item is one probe of each index, whatever the
 * size or the statistics of the tables; rows are checked as read.
 */
static void
find_pending(const CrmStageEntry *entries, int n, IdList *jobs, IdList *activities)
{
	static const char *const pending[] = {"pending"};
	static const char *const kinds[] = {"robot", "wait", "control"};
	CrmProbe	pj,
				pa;
	AttrNumber	j_id,
				j_status,
				j_kind,
				a_id,
				a_auto,
				a_completed;
	int			i;

	crm_probe_begin(&pj, "job", "job_item", 2);
	crm_probe_begin(&pa, "activity", "activity_auto_complete", 2);
	j_id = crm_probe_attnum(&pj, "id");
	j_status = crm_probe_attnum(&pj, "status");
	j_kind = crm_probe_attnum(&pj, "kind");
	a_id = crm_probe_attnum(&pa, "id");
	a_auto = crm_probe_attnum(&pa, "auto_complete");
	a_completed = crm_probe_attnum(&pa, "completed");
	for (i = 0; i < n; i++)
	{
		Datum		keys[2];
		TupleTableSlot *slot;
		bool		isnull;

		if (!entries[i].left)
			continue;
		keys[0] = CStringGetTextDatum(entries[i].entity_type);
		keys[1] = Int64GetDatum(entries[i].item_id);
		crm_probe_start(&pj, keys);
		while ((slot = crm_probe_next(&pj)) != NULL)
			if (slot_text_is(slot, j_status, pending, 1) &&
				slot_text_is(slot, j_kind, kinds, lengthof(kinds)))
				id_add(jobs, slot_getattr(slot, j_id, &isnull));
		crm_probe_start(&pa, keys);
		while ((slot = crm_probe_next(&pa)) != NULL)
			if (slot_bool(slot, a_auto) && !slot_bool(slot, a_completed))
				id_add(activities, slot_getattr(slot, a_id, &isnull));
	}
	crm_probe_end(&pa);
	crm_probe_end(&pj);
}

/*
 * Items that left a stage, in one statement: cancels their pending robots,
 * waits and controls (and the log rows of those), and completes the
 * activities marked "complete when the stage changes".  Found by index
 * probes (find_pending); a statement runs only when something was found,
 * and reads the rows by primary key.  Their conditions recheck each row
 * (a job the worker ran meanwhile stays done) in a form that implies no
 * partial index's predicate: "status = 'pending'" or "auto_complete AND
 * NOT completed" would let the planner read all of job_item, job_due or
 * activity_auto_complete (every pending job, every open activity), which
 * looks cheap while they are empty.
 */
/*
 * The same on a distributed installation (core/citus.h): the rows are in
 * the shard of the items, which the trigger's statement runs on, and each
 * statement names the items so that Citus sends it to that shard alone;
 * the time is a parameter (Citus refuses volatile functions in an UPDATE
 * it might send to several shards).
 */
static void
cancel_pending_distributed(const CrmStageEntry *entries, int n, IdList *jobs, IdList *activities)
{
	static SPIPlanPtr job_plan = NULL;
	static SPIPlanPtr log_plans[2];
	static SPIPlanPtr complete_plan = NULL;
	Oid			types[3] = {INT8ARRAYOID, INT8ARRAYOID, TIMESTAMPTZOID};
	Datum		vals[3];
	IdList		items = {0},
				logs = {0};
	uint64		r;
	int			i;

	for (i = 0; i < n; i++)
		if (entries[i].left)
			id_add(&items, Int64GetDatum(entries[i].item_id));
	vals[1] = id_array(&items);
	vals[2] = TimestampTzGetDatum(GetCurrentTimestamp());
	if (jobs->n > 0)
	{
		bool		layout = crm_log_has_entries();

		vals[0] = id_array(jobs);
		crm_exec(crm_plan(&job_plan,
						  "UPDATE crm.job SET status = 'cancelled', updated_at = now()"
						  " WHERE entity_id = ANY ($2) AND id = ANY ($1)"
						  "   AND status IS NOT DISTINCT FROM 'pending' RETURNING log_id",
						  2, types), vals, NULL, false, 0);
		for (r = 0; r < SPI_processed; r++)
		{
			bool		isnull;
			Datum		d = SPI_getbinval(SPI_tuptable->vals[r], SPI_tuptable->tupdesc, 1, &isnull);

			if (!isnull)
				id_add(&logs, d);
		}
		if (logs.n > 0)
		{
			vals[0] = id_array(&logs);
			crm_exec(crm_plan(&log_plans[layout],
							  psprintf("UPDATE %s SET status = 'cancelled', finished_at = $3"
									   " WHERE entity_id = ANY ($2) AND id = ANY ($1)", crm_log_table()),
							  3, types), vals, NULL, false, 0);
		}
	}
	if (activities->n > 0)
	{
		vals[0] = id_array(activities);
		crm_exec(crm_plan(&complete_plan,
						  "UPDATE crm.activity SET completed = true, status = 'completed'"
						  " WHERE entity_id = ANY ($2) AND id = ANY ($1) AND NOT completed",
						  2, types), vals, NULL, false, 0);
	}
}

static void
cancel_pending(const CrmStageEntry *entries, int n)
{
	static SPIPlanPtr cancel_plans[2];
	static SPIPlanPtr complete_plan = NULL;
	Oid			types[1] = {INT8ARRAYOID};
	Datum		vals[1];
	IdList		jobs = {0},
				activities = {0};
	int			i;

	for (i = 0; i < n && !entries[i].left; i++)
		;
	if (i == n)
		return;
	find_pending(entries, n, &jobs, &activities);
	if ((jobs.n > 0 || activities.n > 0) &&
		crm_table_is_distributed(get_relname_relid("job", get_namespace_oid("crm", false))))
	{
		cancel_pending_distributed(entries, n, &jobs, &activities);
		return;
	}
	if (jobs.n > 0)
	{
		bool		layout = crm_log_has_entries();

		vals[0] = id_array(&jobs);
		crm_exec(crm_plan(&cancel_plans[layout],
						  psprintf("WITH j AS (UPDATE crm.job SET status = 'cancelled', updated_at = now()"
								   "  WHERE id = ANY ($1) AND status IS NOT DISTINCT FROM 'pending' RETURNING log_id)"
								   " UPDATE %s SET status = 'cancelled', finished_at = clock_timestamp()"
								   "  WHERE id = ANY (ARRAY (SELECT log_id FROM j))", crm_log_table()),
						  1, types), vals, NULL, false, 0);
	}
	if (activities.n > 0)
	{
		vals[0] = id_array(&activities);
		crm_exec(crm_plan(&complete_plan,
						  "UPDATE crm.activity SET completed = true, status = 'completed'"
						  " WHERE id = ANY ($1) AND NOT completed",
						  1, types), vals, NULL, false, 0);
	}
}

/* Runs the robots of the stage an item has just entered. */
static void
enter_stage(const CrmStageEntry *e, bool careful)
{
	List	   *robots = crm_stage_rules(e->stage_id);
	CrmRobot  **seq;
	RunState	rs;
	ListCell   *lc;
	int			n = 0;

	if (robots == NIL)
		return;
	seq = palloc(sizeof(CrmRobot *) * list_length(robots));
	foreach(lc, robots)
		seq[n++] = (CrmRobot *) lfirst(lc);
	runstate_init(&rs, e->entity_type, e->item_id, e->stage_id, e->tuple, e->desc);
	rs.careful = careful;
	run_sequence(&rs, seq, n);
	log_rs_flush(&rs);
}

/*
 * An entered stage: a move made by a trigger is logged and puts the trigger
 * on the lineage while the stage's robots run.
 */
static void
enter(const CrmStageEntry *e, bool careful)
{
	bool		by_trigger = false;

	if (e->trigger_move != NULL)
		by_trigger = crm_move_hooks->begin_move(e->trigger_move);
	enter_stage(e, careful);
	if (by_trigger)
		crm_lineage_pop();
}

/*
 * Runs what a batch of stage changes calls for: first every cancellation
 * (one statement), then the robots of each entered stage, item by item in
 * the order the rows changed.  The caller is connected to SPI and acts as
 * the automation owner.
 */
void
crm_robots_run_entries(const CrmStageEntry *entries, int n, bool careful)
{
	MemoryContext item_cxt;
	MemoryContext old;
	int			i;

	cancel_pending(entries, n);

	item_cxt = AllocSetContextCreate(CurrentMemoryContext, "crm robots of an item",
									 ALLOCSET_DEFAULT_SIZES);
	old = MemoryContextSwitchTo(item_cxt);
	crm_rule_cache_pin();
	PG_TRY();
	{
		for (i = 0; i < n; i++)
		{
			CHECK_FOR_INTERRUPTS();
			if (entries[i].stage_id != 0)
				enter(&entries[i], careful);
			MemoryContextReset(item_cxt);
		}
	}
	PG_FINALLY();
	{
		crm_rule_cache_unpin();
		MemoryContextSwitchTo(old);
	}
	PG_END_TRY();
	MemoryContextDelete(item_cxt);
}

/* ---------- jobs ---------- */

static CrmRobot *
find_robot(int64 stage_id, int64 robot_id, List **robots_out)
{
	List	   *robots = crm_stage_rules(stage_id);
	ListCell   *lc;

	*robots_out = robots;
	foreach(lc, robots)
	{
		CrmRobot   *r = (CrmRobot *) lfirst(lc);

		if (r->id == robot_id)
			return r;
	}
	return NULL;
}

/* The robots named in a job's chain, in order, that still exist. */
static int
chain_robots(List *robots, Jsonb *context, CrmRobot ***seq)
{
	JsonbValue *chain;
	JsonbIterator *it;
	JsonbValue	v;
	JsonbIteratorToken tok;
	int			n = 0;

	*seq = palloc(sizeof(CrmRobot *) * (list_length(robots) + 1));
	if (context == NULL ||
		(chain = getKeyJsonValueFromContainer(&context->root, "chain", 5, NULL)) == NULL ||
		chain->type != jbvBinary)
		return 0;
	it = JsonbIteratorInit(chain->val.binary.data);
	while ((tok = JsonbIteratorNext(&it, &v, true)) != WJB_DONE)
	{
		ListCell   *lc;
		int64		id;

		if (tok != WJB_ELEM || v.type != jbvNumeric)
			continue;
		id = DatumGetInt64(DirectFunctionCall1(numeric_int8, NumericGetDatum(v.val.numeric)));
		foreach(lc, robots)
		{
			CrmRobot   *r = (CrmRobot *) lfirst(lc);

			if (r->id == id)
				(*seq)[n++] = r;
		}
	}
	return n;
}

static Jsonb *
context_outputs(Jsonb *context)
{
	JsonbValue *v;

	if (context == NULL ||
		(v = getKeyJsonValueFromContainer(&context->root, "outputs", 7, NULL)) == NULL ||
		v->type != jbvBinary)
		return NULL;
	return JsonbValueToJsonb(v);
}

/* A control's check when it is due, alone in its subtransaction. */
typedef struct ControlRun
{
	RunState   *rs;
	const CrmRobot *r;
} ControlRun;

static void
run_control(void *arg)
{
	ControlRun *cr = arg;
	CrmActionCall call;

	robot_call(&call, cr->rs, cr->r);
	cr->r->action->exec(&call);
}

/*
 * Executes a due robot job, a finished wait or a stage control.  The item
 * is still in the stage: leaving it cancels the job.
 */
static void
execute_robot_job(const CrmJob *job)
{
	List	   *robots;
	CrmRobot   *r;
	CrmRobot  **seq;
	int			n;
	RunState	rs;
	bool		held = false;
	CrmScope	scope;

	crm_scope_enter(&scope, CRM_SCOPE_SPI);
	crm_rule_cache_pin();
	PG_TRY();
	{
		r = find_robot(job->stage_id, job->robot_id, &robots);
		if (r == NULL)
			ereport(ERROR,
					(errcode(ERRCODE_UNDEFINED_OBJECT),
					 errmsg("robot %lld no longer exists or is inactive", (long long) job->robot_id)));
		runstate_init(&rs, job->entity_type, job->entity_id, job->stage_id, NULL, NULL);
		rs.careful = true;
		rs.outputs = context_outputs(job->context);
		rs.cx.robot_outputs = rs.outputs;

		n = chain_robots(robots, job->context, &seq);
		if (strcmp(job->kind, "robot") == 0)
		{
			run_robot_now(&rs, r, job->log_id);
			held = rs.held && hold_rest(&rs, r, seq, 0, n);
		}
		else if (strcmp(job->kind, "wait") == 0)
			log_update(job->log_id, "done", NULL, NULL);
		else if (strcmp(job->kind, "control") == 0)
		{
			ControlRun	cr = {&rs, r};
			ErrorData  *edata = r->invalid ? NULL : crm_run_isolated_retrying(run_control, &cr);

			if (r->invalid)
				log_update(job->log_id, "failed", r->invalid, NULL);
			else if (edata != NULL)
			{
				log_update(job->log_id, "failed", edata->message, NULL);
				FreeErrorData(edata);
			}
			else
				log_update(job->log_id, "done", NULL, NULL);
		}
		if (!held)
			run_sequence(&rs, seq, n);
		log_rs_flush(&rs);
	}
	PG_FINALLY();
	{
		crm_rule_cache_unpin();
	}
	PG_END_TRY();
	crm_scope_leave(&scope);
}

void
crm_robots_init(void)
{
	crm_rule_cache_stage_loader(crm_robots_load);
	crm_register_job_executor("robot", execute_robot_job);
	crm_register_job_executor("wait", execute_robot_job);
	crm_register_job_executor("control", execute_robot_job);
}
