/*-------------------------------------------------------------------------
 *
 * params_render.c
 *	  Action parameters when a rule runs: rendering, users, outputs.
 *
 * The executors read their parameters through these accessors, which
 * evaluate the compiled templates on the item.  User lists (recipients,
 * members, responsible, ...) take a user id or an array of user ids,
 * "responsible", "supervisor" (head of the responsible user's department,
 * or of the parent department for a head), "author", "department:ID" (its
 * active members), or templates that yield ids.  Outputs are what a run
 * gives the robots after it ({=Robot:NAME.key}).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <ctype.h>

#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "mb/pg_wchar.h"
#include "utils/builtins.h"
#include "utils/datetime.h"
#include "utils/jsonb.h"
#include "utils/memutils.h"
#include "utils/numeric.h"
#include "utils/timestamp.h"

#include "actions/actions.h"
#include "core/guc.h"
#include "core/rule_cache.h"
#include "core/spi_util.h"

/* ---------- accessors ---------- */

const CrmCompiledParam *
crm_param(CrmActionCall *call, const char *name)
{
	int			i;

	for (i = 0; i < call->params->n; i++)
		if (strcmp(call->params->params[i].desc->name, name) == 0)
			return &call->params->params[i];
	elog(ERROR, "action \"%s\" has no parameter \"%s\"", call->action->name, name);
	return NULL;				/* keep compiler quiet */
}

const CrmCompiledParam *
crm_param_if_any(CrmActionCall *call, const char *name)
{
	int			i;

	for (i = 0; i < call->params->n; i++)
		if (strcmp(call->params->params[i].desc->name, name) == 0)
			return &call->params->params[i];
	return NULL;
}

bool
crm_param_present(CrmActionCall *call, const char *name)
{
	return crm_param(call, name)->present;
}

char *
crm_param_text(CrmActionCall *call, const char *name)
{
	const CrmCompiledParam *c = crm_param(call, name);
	char	   *s;

	if (!c->present || c->expr == NULL)
		return NULL;
	s = crm_expr_render(c->expr, call->cx);
	if (c->desc->max_length > 0 && pg_mbstrlen(s) > c->desc->max_length)
		ereport(ERROR,
				(errcode(ERRCODE_STRING_DATA_RIGHT_TRUNCATION),
				 errmsg("parameter \"%s\" is %d characters long once rendered; the limit is %d",
						name, pg_mbstrlen(s), c->desc->max_length)));
	return s;
}

/* A URL parameter: its template's values percent-encoded (crm_expr_render_url). */
char *
crm_param_url(CrmActionCall *call, const char *name)
{
	const CrmCompiledParam *c = crm_param(call, name);

	if (!c->present || c->expr == NULL)
		return NULL;
	return crm_expr_render_url(c->expr, call->cx);
}

bool
crm_param_bool(CrmActionCall *call, const char *name, bool dflt)
{
	const CrmCompiledParam *c = crm_param(call, name);
	JsonbValue	v;

	if (!c->present)
		return dflt;
	if (JsonbExtractScalar(&c->raw->root, &v) && v.type == jbvBool)
		return v.val.boolean;
	return dflt;
}

static bool
parse_int64(const char *s, int64 *out)
{
	char	   *end;

	while (isspace((unsigned char) *s))
		s++;
	if (*s == '\0')
		return false;
	errno = 0;
	*out = strtoi64(s, &end, 10);
	while (isspace((unsigned char) *end))
		end++;
	return errno == 0 && *end == '\0';
}

bool
crm_param_int(CrmActionCall *call, const char *name, int64 *out)
{
	char	   *s = crm_param_text(call, name);

	if (s == NULL)
		return false;
	if (!parse_int64(s, out))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_TEXT_REPRESENTATION),
				 errmsg("parameter \"%s\" must be an integer, got \"%s\"", name, s)));
	return true;
}

bool
crm_param_interval(CrmActionCall *call, const char *name, Interval **out)
{
	char	   *s = crm_param_text(call, name);

	if (s == NULL)
		return false;
	*out = DatumGetIntervalP(DirectFunctionCall3(interval_in, CStringGetDatum(s),
												 ObjectIdGetDatum(InvalidOid), Int32GetDatum(-1)));
	return true;
}

bool
crm_param_when(CrmActionCall *call, const char *name, TimestampTz *out)
{
	char	   *s = crm_param_text(call, name);
	TimestampTz now = GetCurrentTransactionStartTimestamp();
	int			days = -1;

	if (s == NULL || *s == '\0')
		return false;
	if (strcmp(s, "today") == 0)
		days = 0;
	else if (strcmp(s, "tomorrow") == 0)
		days = 1;
	else if (strcmp(s, "in_2_days") == 0)
		days = 2;
	else if (strcmp(s, "in_3_days") == 0)
		days = 3;
	if (days >= 0)
	{
		/* end of that working day: 18:00 of the day in the session time zone */
		Datum		d = DirectFunctionCall1(timestamptz_date, TimestampTzGetDatum(now));
		Timestamp	ts;

		d = DateADTGetDatum(DatumGetDateADT(d) + days);
		ts = DatumGetTimestamp(DirectFunctionCall1(date_timestamp, d)) + INT64CONST(18) * USECS_PER_HOUR;
		*out = DatumGetTimestampTz(DirectFunctionCall1(timestamp_timestamptz, TimestampGetDatum(ts)));
		return true;
	}
	if (strchr(s, '-') != NULL && isdigit((unsigned char) s[0]))
	{
		*out = DatumGetTimestampTz(DirectFunctionCall3(timestamptz_in, CStringGetDatum(s),
													   ObjectIdGetDatum(InvalidOid), Int32GetDatum(-1)));
		return true;
	}
	{
		Interval   *iv = DatumGetIntervalP(DirectFunctionCall3(interval_in, CStringGetDatum(s),
															   ObjectIdGetDatum(InvalidOid),
															   Int32GetDatum(-1)));

		*out = DatumGetTimestampTz(DirectFunctionCall2(timestamptz_pl_interval,
													   TimestampTzGetDatum(now),
													   IntervalPGetDatum(iv)));
	}
	return true;
}

/* Rendered JSON: every string leaf is a template. */
Jsonb *
crm_param_json(CrmActionCall *call, const char *name)
{
	const CrmCompiledParam *c = crm_param(call, name);
	JsonbIterator *it;
	JsonbValue	v;
	JsonbIteratorToken tok;
	JsonbParseState *state = NULL;
	JsonbValue *res = NULL;

	if (!c->present)
		return NULL;
	it = JsonbIteratorInit(&c->raw->root);
	while ((tok = JsonbIteratorNext(&it, &v, false)) != WJB_DONE)
	{
		if ((tok == WJB_VALUE || tok == WJB_ELEM) && v.type == jbvString)
		{
			CrmExpr    *e = crm_expr_compile_text(crm_jbv_string(&v), psprintf("params.%s", name));
			char	   *r = crm_expr_render(e, call->cx);

			v.val.string.val = r;
			v.val.string.len = strlen(r);
		}
		/*
		 * A lone string (a webhook body given as text) is a raw scalar:
		 * keep it one, or it would come out as a one-element array.
		 */
		res = pushJsonbValue(&state, tok,
							 (tok < WJB_BEGIN_ARRAY ||
							  (tok == WJB_BEGIN_ARRAY && v.val.array.rawScalar)) ? &v : NULL);
	}
	return JsonbValueToJsonb(res);
}

int64
crm_param_stage(CrmActionCall *call, const char *name)
{
	static SPIPlanPtr by_code = NULL;
	const CrmCompiledParam *c = crm_param(call, name);
	JsonbValue	v;
	Oid			types[2] = {INT8OID, TEXTOID};
	Datum		vals[2];
	bool		isnull;

	if (!c->present || !JsonbExtractScalar(&c->raw->root, &v))
		elog(ERROR, "parameter \"%s\" has no stage", name);
	if (v.type == jbvNumeric)
	{
		int64		id = DatumGetInt64(DirectFunctionCall1(numeric_int8, NumericGetDatum(v.val.numeric)));
		int64		current = crm_item_int(call->cx, "stage_id", &isnull);
		const CrmStageInfo *info;
		int64		pipeline = -1;

		/* checked again: the stage may have been deleted since */
		if (!isnull && (info = crm_stage_info(current)) != NULL)
			pipeline = info->pipeline_id;
		info = crm_stage_info(id);
		if (info == NULL || info->pipeline_id != pipeline)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("stage %lld is not in the item's pipeline", (long long) id),
					 errhint("change_pipeline moves an item to another pipeline.")));
		return id;
	}
	vals[0] = Int64GetDatum(call->stage_id);
	vals[1] = CStringGetTextDatum(crm_jbv_string(&v));
	crm_exec(crm_plan(&by_code,
					  "SELECT s.id FROM crm.stage s WHERE s.code = lower($2)"
					  " AND s.pipeline_id = (SELECT pipeline_id FROM crm.stage WHERE id = $1)",
					  2, types), vals, NULL, true, 1);
	if (SPI_processed == 0)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("stage \"%s\" does not exist in the item's pipeline", crm_jbv_string(&v))));
	return DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
}

/* ---------- users ---------- */

/* Appends a positive id (a user's, a file's) unless it is already there. */
static void
add_user(int64 **ids, int *n, int *cap, int64 id)
{
	int			i;

	if (id <= 0)
		return;
	for (i = 0; i < *n; i++)
		if ((*ids)[i] == id)
			return;
	if (*n >= *cap)
	{
		*cap = *cap * 2;
		*ids = repalloc(*ids, sizeof(int64) * *cap);
	}
	(*ids)[(*n)++] = id;
}

static void
resolve_user_ref(CrmActionCall *call, const char *s, int64 **ids, int *n, int *cap)
{
	static SPIPlanPtr supervisor_plan = NULL;
	static SPIPlanPtr department_plan = NULL;
	Oid			t[1] = {INT8OID};
	Datum		val[1];
	int64		id;
	bool		isnull;
	uint64		i;

	if (parse_int64(s, &id))
	{
		add_user(ids, n, cap, id);
		return;
	}
	if (strcmp(s, "responsible") == 0)
	{
		id = crm_item_int(call->cx, "responsible_id", &isnull);
		if (!isnull)
			add_user(ids, n, cap, id);
		return;
	}
	if (strcmp(s, "author") == 0)
	{
		id = crm_item_int(call->cx, "created_by", &isnull);
		if (isnull && crm_acting_user_id > 0)
			id = crm_acting_user_id, isnull = false;
		if (!isnull)
			add_user(ids, n, cap, id);
		return;
	}
	if (strcmp(s, "supervisor") == 0)
	{
		id = crm_item_int(call->cx, "responsible_id", &isnull);
		if (isnull)
			return;
		val[0] = Int64GetDatum(id);
		crm_exec(crm_plan(&supervisor_plan, "SELECT crm.supervisor_of($1)", 1, t),
				 val, NULL, true, 1);
		if (SPI_processed > 0)
		{
			Datum		d = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);

			if (!isnull)
				add_user(ids, n, cap, DatumGetInt64(d));
		}
		return;
	}
	if (strncmp(s, "department:", 11) == 0 && parse_int64(s + 11, &id))
	{
		val[0] = Int64GetDatum(id);
		crm_exec(crm_plan(&department_plan,
						  "SELECT id FROM crm.user WHERE department_id = $1 AND active ORDER BY id",
						  1, t), val, NULL, true, 0);
		for (i = 0; i < SPI_processed; i++)
			add_user(ids, n, cap,
					 DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 1, &isnull)));
		return;
	}
	ereport(ERROR,
			(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
			 errmsg("\"%s\" is not a user", s),
			 errhint("A user list holds user ids, \"responsible\", \"supervisor\", \"author\" or \"department:ID\".")));
}

int
crm_param_users(CrmActionCall *call, const char *name, int64 **ids)
{
	const CrmCompiledParam *c = crm_param(call, name);
	ListCell   *lc;
	int			n = 0;
	int			cap = 8;

	*ids = palloc(sizeof(int64) * cap);
	if (!c->present)
		return 0;
	foreach(lc, c->items)
	{
		char	   *s = crm_expr_render((CrmExpr *) lfirst(lc), call->cx);
		char	   *tok;

		/* a template may yield several ids separated by commas */
		for (tok = strtok(s, ", "); tok; tok = strtok(NULL, ", "))
			resolve_user_ref(call, tok, ids, &n, &cap);
	}
	return n;
}

Datum
crm_param_user_array(CrmActionCall *call, const char *name)
{
	int64	   *ids;
	int			n = crm_param_users(call, name, &ids);

	return crm_int8_array(ids, n);
}

Datum
crm_param_file_array(CrmActionCall *call, const char *name)
{
	static SPIPlanPtr missing_plan = NULL;
	Oid			t[1] = {INT8ARRAYOID};
	Datum		arr;
	int64	   *ids;
	int			n = crm_param_files(call, name, &ids);
	bool		isnull;

	arr = crm_int8_array(ids, n);
	if (n == 0)
		return arr;
	crm_exec(crm_plan(&missing_plan,
					  "SELECT min(f) FROM unnest($1) f"
					  " WHERE NOT EXISTS (SELECT FROM crm.drive_file d WHERE d.id = f)",
					  1, t), &arr, NULL, true, 1);
	(void) SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);
	if (!isnull)
		ereport(ERROR,
				(errcode(ERRCODE_FOREIGN_KEY_VIOLATION),
				 errmsg("parameter \"%s\" names file %lld, which is not in crm.drive_file", name,
						(long long) DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0],
																SPI_tuptable->tupdesc, 1, &isnull))),
				 errhint("The file may have been deleted since the robot was saved; update the robot's files.")));
	return arr;
}

/* One rendered recipient: an address, or a user reference resolved to one. */
static List *
add_address(CrmActionCall *call, char *s, bool phones, List *result)
{
	static SPIPlanPtr user_plan = NULL;
	Oid			t[1] = {INT8OID};
	int64	   *ids;
	int			n = 0;
	int			cap = 4;
	int			i;

	if (*s == '\0')
		return result;
	if ((!phones && crm_looks_like_email(s)) || (phones && !crm_all_digits(s) && crm_looks_like_phone(s)))
		return lappend(result, s);
	if (phones && crm_all_digits(s) && strlen(s) > 7)
		return lappend(result, s);	/* a long number is a phone, not a user id */
	ids = palloc(sizeof(int64) * cap);
	resolve_user_ref(call, s, &ids, &n, &cap);
	for (i = 0; i < n; i++)
	{
		Datum		val[1];
		bool		isnull;

		val[0] = Int64GetDatum(ids[i]);
		crm_exec(crm_plan(&user_plan, "SELECT email, phone FROM crm.user WHERE id = $1", 1, t),
				 val, NULL, true, 1);
		if (SPI_processed > 0)
		{
			Datum		d = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc,
										  phones ? 2 : 1, &isnull);

			if (!isnull)
				result = lappend(result, TextDatumGetCString(d));
		}
	}
	return result;
}

/*
 * The recipients a parameter names for this item.  With separators (seed
 * 000's "address separator"), a rendered value holding several addresses,
 * such as a field "a@example.com; b@example.com", is split on any of
 * those characters.
 */
List *
crm_param_addresses(CrmActionCall *call, const char *name, bool phones,
					const char *separators)
{
	const CrmCompiledParam *c = crm_param(call, name);
	List	   *result = NIL;
	ListCell   *lc;

	if (!c->present)
		return NIL;
	foreach(lc, c->items)
	{
		char	   *s = pstrdup(crm_expr_render((CrmExpr *) lfirst(lc), call->cx));
		char	   *save = NULL;
		char	   *tok;

		if (separators == NULL || *separators == '\0')
		{
			result = add_address(call, s, phones, result);
			continue;
		}
		for (tok = strtok_r(s, separators, &save); tok; tok = strtok_r(NULL, separators, &save))
		{
			char	   *end = tok + strlen(tok);

			while (*tok == ' ' || *tok == '\t')
				tok++;
			while (end > tok && (end[-1] == ' ' || end[-1] == '\t'))
				*--end = '\0';
			result = add_address(call, tok, phones, result);
		}
	}
	return result;
}

/*
 * The drive file ids a file list names for this item: ids as saved, and the
 * values of file fields, a single id or an array of them ("[12, 13]").
 */
int
crm_param_files(CrmActionCall *call, const char *name, int64 **ids)
{
	const CrmCompiledParam *c = crm_param(call, name);
	ListCell   *lc;
	int			n = 0;
	int			cap = 8;

	*ids = palloc(sizeof(int64) * cap);
	if (!c->present)
		return 0;
	foreach(lc, c->items)
	{
		char	   *s = crm_expr_render((CrmExpr *) lfirst(lc), call->cx);
		char	   *save = NULL;
		char	   *tok;
		int64		id;

		for (tok = strtok_r(s, "[], \"", &save); tok; tok = strtok_r(NULL, "[], \"", &save))
		{
			if (!parse_int64(tok, &id) || id <= 0)
				ereport(ERROR,
						(errcode(ERRCODE_INVALID_TEXT_REPRESENTATION),
						 errmsg("parameter \"%s\" yields \"%s\", not a drive file id", name, tok),
						 errhint("A file field holds a drive file id or an array of them.")));
			add_user(ids, &n, &cap, id);
		}
	}
	return n;
}

/* ---------- outputs ---------- */

static void
output_key(CrmActionCall *call, const char *key)
{
	JsonbValue	k;

	if (!call->has_outputs)
	{
		pushJsonbValue(&call->outputs, WJB_BEGIN_OBJECT, NULL);
		call->has_outputs = true;
	}
	k.type = jbvString;
	k.val.string.val = (char *) key;
	k.val.string.len = strlen(key);
	pushJsonbValue(&call->outputs, WJB_KEY, &k);
}

void
crm_action_output_int(CrmActionCall *call, const char *key, int64 v)
{
	JsonbValue	jv;

	output_key(call, key);
	jv.type = jbvNumeric;
	jv.val.numeric = int64_to_numeric(v);
	pushJsonbValue(&call->outputs, WJB_VALUE, &jv);
}

void
crm_action_output_text(CrmActionCall *call, const char *key, const char *v)
{
	JsonbValue	jv;

	output_key(call, key);
	jv.type = jbvString;
	jv.val.string.val = (char *) v;
	jv.val.string.len = strlen(v);
	pushJsonbValue(&call->outputs, WJB_VALUE, &jv);
}
