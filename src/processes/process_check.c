/*-------------------------------------------------------------------------
 *
 * process_check.c
 *	  Save-time validation of business-process templates
 *	  (crm._validate_process_template), behind crm.add_process_template and
 *	  crm.update_process_template, and the activity helpers processes.c
 *	  shares.
 *
 * A definition declares parameters, variables and constants and lists
 * activities.  An activity whose type is a robot action is checked by that
 * action's descriptor exactly as a robot is (crm_action_validate, then the
 * references it names), and so is each process-only activity of SPEC §5
 * (actions_catalog.c); the flow types if, delay, set_variable, set_field and
 * set_status_text are checked here.  A type listed in unsupported_types is
 * refused as not supported yet (none is, in this version).  Every template and
 * formula is parsed and its fields checked against the document type;
 * {=Variable:x}, {=Constant:x}, {=Parameter:x} and {=Activity:NAME.key} must
 * name something the template declares.  An error says where it is
 * (activities[2].then[0]) in its detail; the caller stores nothing.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "miscadmin.h"

#include <ctype.h>

#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "utils/builtins.h"
#include "utils/date.h"
#include "utils/jsonb.h"
#include "utils/memutils.h"
#include "utils/numeric.h"
#include "utils/timestamp.h"

#include "actions/actions.h"
#include "core/rule_cache.h"
#include "expr/expr.h"
#include "processes/processes.h"
#include "engine/robots.h"

PG_FUNCTION_INFO_V1(crm_validate_process_template);

/*
 * Process-only types of seed 000 that this version does not run, each with
 * the nearest activity that works.
 */
static const char *const unsupported_types[][2] = {
	{NULL, NULL}
};

static const char *const value_types = "text, int, number, bool, date, datetime, user";

#define ACTIVITY_TYPES_HINT "Activity types are listed in crm.activity_types."

/* ---------- shared helpers ---------- */

CrmActivityKind
crm_activity_kind(const char *type, const CrmActionDesc **action)
{
	int			i;

	*action = NULL;
	if (strcmp(type, "if") == 0)
		return CRM_ACTIVITY_IF;
	if (strcmp(type, "delay") == 0)
		return CRM_ACTIVITY_DELAY;
	if (strcmp(type, "set_variable") == 0)
		return CRM_ACTIVITY_SET_VARIABLE;
	if (strcmp(type, "set_field") == 0)
	{
		*action = crm_action_lookup("update_item");
		return CRM_ACTIVITY_SET_FIELD;
	}
	if (strcmp(type, "set_status_text") == 0)
		return CRM_ACTIVITY_SET_STATUS_TEXT;
	for (i = 0; unsupported_types[i][0] != NULL; i++)
		if (strcmp(type, unsupported_types[i][0]) == 0)
			return CRM_ACTIVITY_UNSUPPORTED;
	/* the process-only ones first: inside a process, control is seed 000's */
	*action = crm_process_action_lookup(type);
	if (*action == NULL)
		*action = crm_action_lookup(type);
	return *action ? CRM_ACTIVITY_ACTION : CRM_ACTIVITY_UNKNOWN;
}

/* The nearest working activity for a type this version does not run. */
const char *
crm_activity_alternative(const char *type)
{
	int			i;

	for (i = 0; unsupported_types[i][0] != NULL; i++)
		if (strcmp(type, unsupported_types[i][0]) == 0)
			return unsupported_types[i][1];
	return ACTIVITY_TYPES_HINT;
}

char *
crm_jsonb_string(Jsonb *obj, const char *key)
{
	JsonbValue *v;

	if (obj == NULL || !JB_ROOT_IS_OBJECT(obj))
		return NULL;
	v = getKeyJsonValueFromContainer(&obj->root, key, strlen(key), NULL);
	if (v == NULL || v->type != jbvString)
		return NULL;
	return pnstrdup(v->val.string.val, v->val.string.len);
}

static void
push_key(JsonbParseState **st, const char *key, int len)
{
	JsonbValue	k;

	k.type = jbvString;
	k.val.string.val = (char *) key;
	k.val.string.len = len;
	pushJsonbValue(st, WJB_KEY, &k);
}

/* A value of an iterator (scalar, or a container as jbvBinary) pushed as is. */
static void
push_value(JsonbParseState **st, JsonbValue *v)
{
	pushJsonbValue(st, WJB_VALUE, v);
}

static bool
key_is(const JsonbValue *k, const char *key)
{
	return k->val.string.len == strlen(key) && strncmp(k->val.string.val, key, k->val.string.len) == 0;
}

Jsonb *
crm_activity_params(Jsonb *activity, CrmActivityKind kind)
{
	JsonbParseState *st = NULL;
	JsonbIterator *it;
	JsonbValue	k;
	JsonbValue	v;
	JsonbIteratorToken tok;
	char	   *type = crm_jsonb_string(activity, "type");
	JsonbValue *params;

	pushJsonbValue(&st, WJB_BEGIN_OBJECT, NULL);
	if (kind == CRM_ACTIVITY_SET_FIELD)
	{
		/* update_item's {"fields": {field: value}} */
		char	   *field = crm_jsonb_string(activity, "field");
		JsonbValue *value = getKeyJsonValueFromContainer(&activity->root, "value", 5, NULL);

		push_key(&st, "fields", 6);
		pushJsonbValue(&st, WJB_BEGIN_OBJECT, NULL);
		if (field != NULL && value != NULL)
		{
			push_key(&st, field, strlen(field));
			push_value(&st, value);
		}
		pushJsonbValue(&st, WJB_END_OBJECT, NULL);
		return JsonbValueToJsonb(pushJsonbValue(&st, WJB_END_OBJECT, NULL));
	}
	/*
	 * With "params", every parameter is read from it, so that an action's own
	 * "name" or "type" (create_group_chat, chat_message, ...) can be given;
	 * nothing but type, name and params may then stand beside it.
	 */
	params = getKeyJsonValueFromContainer(&activity->root, "params", 6, NULL);
	if (params != NULL)
	{
		if (params->type != jbvBinary || !JsonContainerIsObject(params->val.binary.data))
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("\"params\" must be a JSON object of the activity's parameters, not %s",
							crm_jsonb_type_name(params)),
					 errhint("For example {\"type\": \"create_group_chat\", \"params\": {\"name\": \"Deal {{title}}\", \"members\": [\"responsible\"]}}.")));
		it = JsonbIteratorInit(&activity->root);
		while ((tok = JsonbIteratorNext(&it, &k, true)) != WJB_DONE)
		{
			if (tok != WJB_KEY)
				continue;
			(void) JsonbIteratorNext(&it, &v, true);
			if (!key_is(&k, "type") && !key_is(&k, "name") && !key_is(&k, "params"))
				ereport(ERROR,
						(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
						 errmsg("parameter \"%.*s\" stands beside \"params\"",
								k.val.string.len, k.val.string.val),
						 errhint("With \"params\", every parameter of the activity goes inside it.")));
		}
	}
	it = JsonbIteratorInit(params ? params->val.binary.data : &activity->root);
	while ((tok = JsonbIteratorNext(&it, &k, true)) != WJB_DONE)
	{
		if (tok != WJB_KEY)
			continue;
		(void) JsonbIteratorNext(&it, &v, true);
		if (params == NULL && (key_is(&k, "type") || key_is(&k, "name")))
			continue;
		/* create_task's "wait" and "bind_current" are the process's (processes.c) */
		if (type != NULL && strcmp(type, "create_task") == 0 &&
			(key_is(&k, "wait") || key_is(&k, "bind_current")))
			continue;
		pushJsonbValue(&st, WJB_KEY, &k);
		push_value(&st, &v);
	}
	return JsonbValueToJsonb(pushJsonbValue(&st, WJB_END_OBJECT, NULL));
}

JsonbValue *
crm_activity_param(Jsonb *activity, const char *key)
{
	JsonbValue *params = getKeyJsonValueFromContainer(&activity->root, "params", 6, NULL);

	if (params != NULL && params->type == jbvBinary && JsonContainerIsObject(params->val.binary.data))
		return getKeyJsonValueFromContainer(params->val.binary.data, key, strlen(key), NULL);
	return getKeyJsonValueFromContainer(&activity->root, key, strlen(key), NULL);
}

bool
crm_activity_flag(Jsonb *activity, const char *key, bool dflt)
{
	JsonbValue *v = crm_activity_param(activity, key);

	if (v == NULL || v->type != jbvBool)
		return dflt;
	return v->val.boolean;
}

static bool
digits_only(const char *s)
{
	if (*s == '-')
		s++;
	if (*s == '\0')
		return false;
	for (; *s; s++)
		if (!isdigit((unsigned char) *s))
			return false;
	return true;
}

static bool
looks_like_date(const char *s)
{
	return strlen(s) >= 10 && isdigit((unsigned char) s[0]) && isdigit((unsigned char) s[3]) &&
		s[4] == '-' && isdigit((unsigned char) s[5]) && s[7] == '-';
}

bool
crm_process_value(const char *type, JsonbValue *v, JsonbValue *out)
{
	char	   *s = NULL;

	if (v->type == jbvNull)
	{
		*out = *v;
		return true;
	}
	if (v->type == jbvString)
		s = pnstrdup(v->val.string.val, v->val.string.len);
	else if (v->type == jbvNumeric)
		s = DatumGetCString(DirectFunctionCall1(numeric_out, NumericGetDatum(v->val.numeric)));
	else if (v->type == jbvBool)
		s = pstrdup(v->val.boolean ? "true" : "false");
	else
		return false;				/* objects and arrays */

	if (strcmp(type, "text") == 0)
	{
		out->type = jbvString;
		out->val.string.val = s;
		out->val.string.len = strlen(s);
		return true;
	}
	if (strcmp(type, "bool") == 0)
	{
		if (strcmp(s, "true") != 0 && strcmp(s, "false") != 0)
			return false;
		out->type = jbvBool;
		out->val.boolean = (strcmp(s, "true") == 0);
		return true;
	}
	if (strcmp(type, "int") == 0 || strcmp(type, "user") == 0)
	{
		char	   *dot = strchr(s, '.');

		/* a number that is whole after evaluation (8000 / 1000 is 8.0000) */
		if (dot != NULL && dot > s && strspn(dot + 1, "0") == strlen(dot + 1))
			*dot = '\0';
		if (!digits_only(s) || strlen(s) > 18 || (strcmp(type, "user") == 0 && s[0] == '-'))
			return false;
		out->type = jbvNumeric;
		out->val.numeric = int64_to_numeric(strtoi64(s, NULL, 10));
		return true;
	}
	if (strcmp(type, "number") == 0)
	{
		char	   *p = s;
		bool		digit = false;

		if (*p == '-')
			p++;
		for (; *p; p++)
		{
			if (isdigit((unsigned char) *p))
				digit = true;
			else if (*p != '.' && *p != 'e' && *p != 'E' && *p != '+' && *p != '-')
				return false;
		}
		if (!digit)
			return false;
		out->type = jbvNumeric;
		out->val.numeric = DatumGetNumeric(DirectFunctionCall3(numeric_in, CStringGetDatum(s),
															   ObjectIdGetDatum(InvalidOid),
															   Int32GetDatum(-1)));
		return true;
	}
	if (strcmp(type, "date") == 0 || strcmp(type, "datetime") == 0)
	{
		bool		is_date = strcmp(type, "date") == 0;

		if (v->type != jbvString || !looks_like_date(s))
			return false;
		/* out-of-range values are the input functions' own errors */
		if (is_date)
			s = DatumGetCString(DirectFunctionCall1(date_out,
													DirectFunctionCall1(date_in, CStringGetDatum(s))));
		else
			s = DatumGetCString(DirectFunctionCall1(timestamptz_out,
													DirectFunctionCall3(timestamptz_in, CStringGetDatum(s),
																		ObjectIdGetDatum(InvalidOid),
																		Int32GetDatum(-1))));
		out->type = jbvString;
		out->val.string.val = s;
		out->val.string.len = strlen(s);
		return true;
	}
	return false;
}

/* ---------- validation ---------- */

static bool
known_type(const char *type)
{
	static const char *const types[] = {"text", "int", "number", "bool", "date", "datetime", "user", NULL};
	int			i;

	for (i = 0; types[i] != NULL; i++)
		if (strcmp(type, types[i]) == 0)
			return true;
	return false;
}

typedef struct ActivityRef
{
	char	   *name;
	char	   *path;
} ActivityRef;

typedef struct Validation
{
	const char *document_type;
	Jsonb	   *parameters;		/* declarations, or NULL */
	Jsonb	   *variables;
	Jsonb	   *constants;
	List	   *names;			/* activity names (char *) */
	List	   *activity_refs;	/* ActivityRef *: checked once all names are known */
	const char *path;			/* where the check is, for the error's detail */
} Validation;

static bool
is_identifier(const char *s)
{
	int			n = 0;

	if (!(isalpha((unsigned char) s[0]) || s[0] == '_'))
		return false;
	for (; *s; s++, n++)
		if (!(isalnum((unsigned char) *s) || *s == '_'))
			return false;
	return n <= 63;
}

static char *
jbv_cstring(JsonbValue *v)
{
	return pnstrdup(v->val.string.val, v->val.string.len);
}

static const char *
root_type_name(Jsonb *j)
{
	JsonbValue	v;

	if (JB_ROOT_IS_SCALAR(j))
	{
		(void) JsonbExtractScalar(&j->root, &v);
		return crm_jsonb_type_name(&v);
	}
	return JB_ROOT_IS_ARRAY(j) ? "an array" : "an object";
}

static bool
is_object(JsonbValue *v)
{
	return v->type == jbvBinary && JsonContainerIsObject(v->val.binary.data);
}

static bool
is_array(JsonbValue *v)
{
	return v->type == jbvBinary && JsonContainerIsArray(v->val.binary.data);
}

/* True when obj (a declarations object) has the key, matched without case. */
static bool
declared(Jsonb *obj, const char *key)
{
	JsonbIterator *it;
	JsonbValue	k;
	JsonbIteratorToken tok;

	if (obj == NULL)
		return false;
	it = JsonbIteratorInit(&obj->root);
	while ((tok = JsonbIteratorNext(&it, &k, true)) != WJB_DONE)
		if (tok == WJB_KEY && k.val.string.len == strlen(key) &&
			pg_strncasecmp(k.val.string.val, key, k.val.string.len) == 0)
			return true;
	return false;
}

/* {=Variable:x}, {=Constant:x}, {=Parameter:x}, {=Activity:N.k} of an expression. */
static void
check_refs(Validation *vs, const CrmExpr *e, const char *where)
{
	static const struct
	{
		const char *ns;
		const char *what;
		const char *section;
	}			decl[] = {
		{"Variable", "variable", "variables"},
		{"Constant", "constant", "constants"},
		{"Parameter", "parameter", "parameters"}
	};
	ListCell   *lc;
	int			i;

	for (i = 0; i < lengthof(decl); i++)
	{
		Jsonb	   *obj = i == 0 ? vs->variables : i == 1 ? vs->constants : vs->parameters;

		foreach(lc, crm_expr_refs(e, decl[i].ns))
		{
			char	   *name = (char *) lfirst(lc);

			if (!declared(obj, name))
				ereport(ERROR,
						(errcode(ERRCODE_UNDEFINED_OBJECT),
						 errmsg("unknown %s \"%s\" in %s", decl[i].what, name, where),
						 errhint("Declare it in the definition's \"%s\".", decl[i].section)));
		}
	}
	foreach(lc, crm_expr_refs(e, "Activity"))
	{
		ActivityRef *r = palloc(sizeof(ActivityRef));

		r->name = (char *) lfirst(lc);
		r->path = pstrdup(vs->path);
		vs->activity_refs = lappend(vs->activity_refs, r);
	}
}

static bool
is_expression(const char *s)
{
	return strstr(s, "{{") != NULL || strstr(s, "{=") != NULL || s[0] == '=';
}

/* A text that is a template or formula: parsed, fields and references checked. */
static void
check_text(Validation *vs, const char *src, const char *where)
{
	CrmExpr    *e = crm_expr_compile_text(src, where);

	crm_expr_check(e, vs->document_type, NIL, true, where);
	check_refs(vs, e, where);
}

/* The references of the templates in a parameter's value (already validated). */
static void
check_value_refs(Validation *vs, JsonbValue *v, const char *where)
{
	JsonbIterator *it;
	JsonbValue	e;
	JsonbIteratorToken tok;

	check_stack_depth();
	if (v->type == jbvString)
	{
		char	   *s = jbv_cstring(v);

		if (is_expression(s))
			check_refs(vs, crm_expr_compile_text(s, where), where);
		return;
	}
	if (v->type != jbvBinary)
		return;
	it = JsonbIteratorInit(v->val.binary.data);
	while ((tok = JsonbIteratorNext(&it, &e, false)) != WJB_DONE)
		if ((tok == WJB_VALUE || tok == WJB_ELEM) && e.type == jbvString)
			check_value_refs(vs, &e, where);
}

/* The references of every template in an action's parameters. */
static void
check_param_refs(Validation *vs, Jsonb *params)
{
	JsonbIterator *it = JsonbIteratorInit(&params->root);
	JsonbValue	k;
	JsonbIteratorToken tok;

	while ((tok = JsonbIteratorNext(&it, &k, true)) != WJB_DONE)
	{
		JsonbValue	v;

		if (tok != WJB_KEY)
			continue;
		(void) JsonbIteratorNext(&it, &v, true);
		check_value_refs(vs, &v, psprintf("params.%s", jbv_cstring(&k)));
	}
}

/* Keys of an object (owner names it) must be among allowed ("a|b|c"). */
static void
check_keys(JsonbContainer *obj, const char *owner, const char *allowed)
{
	JsonbIterator *it = JsonbIteratorInit(obj);
	JsonbValue	k;
	JsonbIteratorToken tok;

	while ((tok = JsonbIteratorNext(&it, &k, true)) != WJB_DONE)
	{
		char	   *key;
		char	   *list;
		char	   *t;
		bool		ok = false;

		if (tok != WJB_KEY)
			continue;
		key = jbv_cstring(&k);
		list = pstrdup(allowed);
		for (t = strtok(list, "|"); t; t = strtok(NULL, "|"))
			if (strcmp(t, key) == 0)
				ok = true;
		if (!ok)
		{
			StringInfoData keys;
			const char *c;

			initStringInfo(&keys);
			for (c = allowed; *c; c++)
			{
				if (*c == '|')
					appendStringInfoString(&keys, ", ");
				else
					appendStringInfoChar(&keys, *c);
			}
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("unknown key \"%s\" for %s", key, owner),
					 errhint("Keys: %s.", keys.data)));
		}
	}
}

static JsonbValue *
member(JsonbContainer *obj, const char *key)
{
	return getKeyJsonValueFromContainer(obj, key, strlen(key), NULL);
}

static void check_block(Validation *vs, JsonbValue *arr, const char *path);

static void
check_if(Validation *vs, JsonbContainer *act, const char *path)
{
	JsonbValue *cond = member(act, "condition");
	JsonbValue *then_v = member(act, "then");
	JsonbValue *else_v = member(act, "else");
	CrmExpr    *e;

	check_keys(act, "activity type \"if\"", "type|name|condition|then|else");
	if (cond == NULL || !(cond->type == jbvString || is_object(cond)))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("an if activity needs a \"condition\": a formula or a JSON condition"),
				 errhint("For example \"{{amount}} >= 5000\" or {\"all\": [{\"field\": \"amount\", \"op\": \">=\", \"value\": 5000}]}.")));
	e = crm_expr_compile_condition(JsonbValueToJsonb(cond), "condition");
	crm_expr_check(e, vs->document_type, NIL, true, "condition");
	check_refs(vs, e, "condition");
	if (then_v == NULL || !is_array(then_v))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("an if activity needs \"then\", an array of activities"),
				 errhint("\"else\" is optional.")));
	if (else_v != NULL && !is_array(else_v))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("\"else\" of an if activity must be an array of activities, not %s",
						crm_jsonb_type_name(else_v))));
	check_block(vs, then_v, psprintf("%s.then", path));
	if (else_v != NULL)
		check_block(vs, else_v, psprintf("%s.else", path));
}

/*
 * delay: "for" a positive interval (counted in working time with
 * "work_time": true), or "until" a date: a timestamp, or a template or
 * formula that gives one when the delay is reached.
 */
static void
check_delay(Validation *vs, JsonbContainer *act)
{
	JsonbValue *v = member(act, "for");
	JsonbValue *until = member(act, "until");
	JsonbValue *wt = member(act, "work_time");
	Interval   *iv;
	char	   *s;

	check_keys(act, "activity type \"delay\"", "type|name|for|until|work_time");
	if (wt != NULL && wt->type != jbvBool)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("\"work_time\" of a delay activity must be true or false, not %s",
						crm_jsonb_type_name(wt)),
				 errhint("{\"type\": \"delay\", \"for\": \"3 hours\", \"work_time\": true} counts working hours.")));
	if (v != NULL && until != NULL)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("a delay activity has \"for\" or \"until\", not both"),
				 errhint("Use two delay activities to wait for both.")));
	if (until != NULL)
	{
		if (until->type != jbvString || until->val.string.len == 0)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("\"until\" of a delay activity must be a date, template or formula, not %s",
							crm_jsonb_type_name(until)),
					 errhint("For example \"2027-01-15 09:00\", \"{{close_date}}\" or \"{=Variable:deadline}\".")));
		if (wt != NULL && wt->val.boolean)
			ereport(ERROR,
					(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
					 errmsg("\"work_time\" applies to \"for\" delays, not to \"until\""),
					 errhint("A date is kept as it is; use {\"for\": \"3 hours\", \"work_time\": true} to count working hours.")));
		s = jbv_cstring(until);
		if (is_expression(s))
			check_text(vs, s, "until");
		else
		{
			if (!looks_like_date(s))
				ereport(ERROR,
						(errcode(ERRCODE_INVALID_DATETIME_FORMAT),
						 errmsg("\"until\" of a delay activity is not a date: \"%s\"", s),
						 errhint("Write a timestamp (\"2027-01-15 09:00\") or a template that gives one (\"{{close_date}}\").")));
			(void) DirectFunctionCall3(timestamptz_in, CStringGetDatum(s),
									   ObjectIdGetDatum(InvalidOid), Int32GetDatum(-1));
		}
		return;
	}
	if (v == NULL || v->type != jbvString)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("a delay activity needs \"for\", an interval such as \"1 hour\", or \"until\", a date"),
				 errhint("For example {\"type\": \"delay\", \"for\": \"1 hour\"} or {\"type\": \"delay\", \"until\": \"{{close_date}}\"}.")));
	s = jbv_cstring(v);
	iv = DatumGetIntervalP(DirectFunctionCall3(interval_in, CStringGetDatum(s),
											   ObjectIdGetDatum(InvalidOid), Int32GetDatum(-1)));
	if (iv->month < 0 || iv->day < 0 || iv->time < 0 ||
		(iv->month == 0 && iv->day == 0 && iv->time == 0))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("\"for\" of a delay activity must be a positive interval, not \"%s\"", s),
				 errhint("For example \"1 hour\" or \"2 days\".")));
	if (!crm_delay_in_bounds(iv))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("\"for\" of a delay activity is too long: \"%s\"", s),
				 errdetail("A delay is at most %d days (about 100 years).", CRM_MAX_DELAY_DAYS)));
	if (wt != NULL && wt->val.boolean && iv->month != 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("a delay in working time counts days and hours, not months"),
				 errhint("Write \"20 days\" rather than \"1 month\".")));
}

char *
crm_process_variable(Jsonb *variables, const char *name, char **type)
{
	JsonbIterator *it;
	JsonbValue	k;
	JsonbIteratorToken tok;

	if (variables == NULL)
		return NULL;
	it = JsonbIteratorInit(&variables->root);
	while ((tok = JsonbIteratorNext(&it, &k, true)) != WJB_DONE)
	{
		JsonbValue	v;

		if (tok != WJB_KEY)
			continue;
		(void) JsonbIteratorNext(&it, &v, true);
		if (k.val.string.len == strlen(name) &&
			pg_strncasecmp(k.val.string.val, name, k.val.string.len) == 0)
		{
			*type = jbv_cstring(member(v.val.binary.data, "type"));
			return jbv_cstring(&k);
		}
	}
	return NULL;
}

static void
check_set_variable(Validation *vs, JsonbContainer *act)
{
	JsonbValue *var = member(act, "variable");
	JsonbValue *value = member(act, "value");
	JsonbValue	converted;
	char	   *name;
	char	   *type;

	check_keys(act, "activity type \"set_variable\"", "type|name|variable|value");
	if (var == NULL || var->type != jbvString)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("a set_variable activity needs \"variable\", the name of a declared variable")));
	name = jbv_cstring(var);
	if (crm_process_variable(vs->variables, name, &type) == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("unknown variable \"%s\"", name),
				 errhint("Declare it in the definition's \"variables\", e.g. {\"%s\": {\"type\": \"text\"}}.", name)));
	if (value == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("a set_variable activity needs \"value\", a value, template or formula")));
	if (value->type == jbvString && is_expression(jbv_cstring(value)))
		check_text(vs, jbv_cstring(value), "value");
	else if (!crm_process_value(type, value, &converted))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("value of variable \"%s\" is not a valid %s", name, type)));
}

/*
 * Feed posts and drive files (document types that are no CRM items): the
 * fields set_field sets, and for the activities that need a CRM item the
 * nearest one that works.
 */
static const char *const workspace_fields[][2] = {
	{"feed_post", "title, text, tags, to_all, files, author_id"},
	{"drive_file", "name, content_type, owner_id"},
	{NULL, NULL}
};

static const char *const workspace_alternatives[][2] = {
	{"change_stage", "A %s has no stage: keep its state with set_status_text or a variable (set_variable)."},
	{"change_status", "A %s has no status: keep its state with set_status_text or a variable (set_variable)."},
	{"change_pipeline", "A %s has no pipeline: keep its state with set_status_text or a variable (set_variable)."},
	{"update_item", "Use set_field with a column of the %s (one activity per field)."},
	{"change_responsible", "Use set_field on the %s's author_id (a feed post) or owner_id (a drive file)."},
	{"add_comment", "A %s has no CRM timeline: use set_status_text, or user_notification / feed_message to tell people."},
	{"write_log", "A %s has no CRM history: the process log (crm.item_automation) keeps the trace; use set_status_text to show a state."},
	{"create_activity", "A %s has no CRM timeline: use create_task (not bound to the document) or calendar_event."},
	{"schedule_call", "A %s has no CRM timeline: use create_task or calendar_event."},
	{"schedule_meeting", "A %s has no CRM timeline: use create_task or calendar_event."},
	{"control", "Use user_notification with \"to\": [\"supervisor\"] (the supervisor of the %s's author or owner)."},
	{"openline_message", "A %s has no client's open channel: tell people with user_notification or feed_message, or call the connector with webhook."},
	{NULL, NULL}
};

static const char *
workspace_field_list(const char *document_type)
{
	int			i;

	for (i = 0; workspace_fields[i][0] != NULL; i++)
		if (strcmp(workspace_fields[i][0], document_type) == 0)
			return workspace_fields[i][1];
	return "";
}

/* Is field one of the columns set_field sets on a feed post or drive file? */
static bool
workspace_field(const char *document_type, const char *field)
{
	char	   *list = pstrdup(workspace_field_list(document_type));
	char	   *tok;
	char	   *save = NULL;

	for (tok = strtok_r(list, ", ", &save); tok != NULL; tok = strtok_r(NULL, ", ", &save))
		if (pg_strcasecmp(tok, field) == 0)
			return true;
	return false;
}

/*
 * An activity on a feed post or drive file: set_field on one of its
 * columns, or an action that works on any document (CRM_ACT_ANY_DOCUMENT,
 * "all" in crm.activity_types); the others need a CRM item.
 */
static void
check_workspace_activity(Validation *vs, Jsonb *activity, CrmActivityKind kind,
						 const CrmActionDesc *action, const char *path)
{
	const char *doc = vs->document_type;
	const char *hint = NULL;
	char	   *type = crm_jsonb_string(activity, "type");
	int			i;

	if (kind == CRM_ACTIVITY_SET_FIELD)
	{
		char	   *field = crm_jsonb_string(activity, "field");

		if (field != NULL && !workspace_field(doc, field))
			ereport(ERROR,
					(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
					 errmsg("set_field at %s cannot set \"%s\" of a %s", path, field, doc),
					 errhint("set_field on a %s sets one of: %s.", doc, workspace_field_list(doc))));
		return;
	}
	if (action->flags & CRM_ACT_ANY_DOCUMENT)
		return;
	for (i = 0; workspace_alternatives[i][0] != NULL; i++)
		if (strcmp(workspace_alternatives[i][0], type) == 0)
			hint = psprintf(workspace_alternatives[i][1], doc);
	ereport(ERROR,
			(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
			 errmsg("activity \"%s\" at %s works on CRM items only, not on %s documents", type, path, doc),
			 errhint("%s", hint ? hint :
					 "On feed posts and drive files, use the activities whose document_types is \"all\" in crm.activity_types.")));
}

static void
check_action(Validation *vs, Jsonb *activity, CrmActivityKind kind,
			 const CrmActionDesc *action, const char *path)
{
	Jsonb	   *params;
	JsonbValue *v;

	if (kind == CRM_ACTIVITY_SET_FIELD)
	{
		check_keys(&activity->root, "activity type \"set_field\"", "type|name|field|value");
		if ((v = member(&activity->root, "field")) == NULL || v->type != jbvString)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("a set_field activity needs \"field\", a field of the document")));
		if (member(&activity->root, "value") == NULL)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("a set_field activity needs \"value\", a value, template or formula")));
	}
	else if ((action->flags & CRM_ACT_SCHEDULES) && strcmp(action->name, "wait") != 0)
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("action \"%s\" cannot be a process activity yet", action->name),
				 errhint("Use a delay activity: {\"type\": \"delay\", \"for\": \"1 day\"}.")));
	else if (strcmp(action->name, "create_task") == 0)
	{
		static const char *const flags[] = {"wait", "bind_current"};
		int			i;

		for (i = 0; i < lengthof(flags); i++)
			if ((v = crm_activity_param(activity, flags[i])) != NULL && v->type != jbvBool)
				ereport(ERROR,
						(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
						 errmsg("\"%s\" of create_task must be true or false, not %s",
								flags[i], crm_jsonb_type_name(v)),
						 errhint("\"wait\": true pauses the instance until the task is completed; \"bind_current\": false leaves the document out of the task's bindings.")));
	}
	else if (strcmp(action->name, "change_responsible") == 0 &&
			 (v = member(&activity->root, "mode")) != NULL &&
			 v->type == jbvString && strncmp(v->val.string.val, "rotate", v->val.string.len) == 0 &&
			 v->val.string.len == 6)
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("change_responsible with mode \"rotate\" is not supported in processes yet"),
				 errhint("Turns are counted per robot; use \"first\" or \"random\".")));

	if (crm_workspace_document(vs->document_type))
		check_workspace_activity(vs, activity, kind, action, path);
	params = crm_activity_params(activity, kind);
	crm_action_validate(action, params, 0, vs->document_type, NIL, path);
	crm_action_check_references(action, params, vs->document_type);
	check_param_refs(vs, params);
}

static void
check_activity(Validation *vs, JsonbValue *av, const char *path)
{
	Jsonb	   *activity;
	JsonbValue *tv;
	JsonbValue *nv;
	char	   *type;
	const CrmActionDesc *action;
	CrmActivityKind kind;

	vs->path = path;
	if (!is_object(av))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("an activity must be a JSON object, not %s", crm_jsonb_type_name(av)),
				 errhint("For example {\"type\": \"add_comment\", \"text\": \"Hello\"}.")));
	activity = JsonbValueToJsonb(av);
	tv = member(&activity->root, "type");
	if (tv == NULL || tv->type != jbvString)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("an activity needs \"type\", a string"),
				 errhint(ACTIVITY_TYPES_HINT)));
	type = jbv_cstring(tv);
	if ((nv = member(&activity->root, "name")) != NULL)
	{
		char	   *name;
		ListCell   *lc;

		if (nv->type != jbvString)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("an activity name must be a string, not %s", crm_jsonb_type_name(nv)),
					 errhint("An activity name is an identifier (letters, digits, underscores), used as {=Activity:NAME.output}.")));
		if (!is_identifier(name = jbv_cstring(nv)))
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("invalid activity name \"%s\"", name),
					 errhint("An activity name is an identifier (letters, digits, underscores), used as {=Activity:NAME.output}.")));
		foreach(lc, vs->names)
			if (pg_strcasecmp((char *) lfirst(lc), name) == 0)
				ereport(ERROR,
						(errcode(ERRCODE_DUPLICATE_OBJECT),
						 errmsg("activity name \"%s\" is used twice", name),
						 errhint("Activity names are unique within a template.")));
		vs->names = lappend(vs->names, name);
	}

	kind = crm_activity_kind(type, &action);
	switch (kind)
	{
		case CRM_ACTIVITY_IF:
			check_if(vs, &activity->root, path);
			break;
		case CRM_ACTIVITY_DELAY:
			check_delay(vs, &activity->root);
			break;
		case CRM_ACTIVITY_SET_VARIABLE:
			check_set_variable(vs, &activity->root);
			break;
		case CRM_ACTIVITY_SET_STATUS_TEXT:
			check_keys(&activity->root, "activity type \"set_status_text\"", "type|name|text");
			if ((tv = member(&activity->root, "text")) == NULL || tv->type != jbvString)
				ereport(ERROR,
						(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
						 errmsg("a set_status_text activity needs \"text\", a string or template")));
			check_text(vs, jbv_cstring(tv), "text");
			break;
		case CRM_ACTIVITY_ACTION:
		case CRM_ACTIVITY_SET_FIELD:
			check_action(vs, activity, kind, action, path);
			break;
		case CRM_ACTIVITY_UNSUPPORTED:
			ereport(ERROR,
					(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
					 errmsg("activity type \"%s\" is not supported yet", type),
					 errhint("%s", crm_activity_alternative(type))));
			break;
		case CRM_ACTIVITY_UNKNOWN:
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("unknown activity type \"%s\"", type),
					 errhint(ACTIVITY_TYPES_HINT)));
			break;
	}
}

static void
check_block(Validation *vs, JsonbValue *arr, const char *path)
{
	JsonbIterator *it = JsonbIteratorInit(arr->val.binary.data);
	JsonbValue	v;
	JsonbIteratorToken tok;
	int			i = 0;

	while ((tok = JsonbIteratorNext(&it, &v, true)) != WJB_DONE)
	{
		if (tok != WJB_ELEM)
			continue;
		check_activity(vs, &v, psprintf("%s[%d]", path, i));
		i++;
	}
}

/* parameters or variables: name -> {"type", "required", "default", "description"}. */
static void
check_declarations(Validation *vs, JsonbValue *obj, const char *section, bool params)
{
	JsonbIterator *it;
	JsonbValue	k;
	JsonbIteratorToken tok;
	const char *what = params ? "parameter" : "variable";

	vs->path = section;
	if (!is_object(obj))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("\"%s\" must be a JSON object, not %s", section, crm_jsonb_type_name(obj)),
				 errhint("For example {\"reason\": {\"type\": \"text\", \"required\": true}}.")));
	it = JsonbIteratorInit(obj->val.binary.data);
	while ((tok = JsonbIteratorNext(&it, &k, true)) != WJB_DONE)
	{
		JsonbValue	d;
		JsonbValue *t;
		JsonbValue *v;
		JsonbValue	converted;
		char	   *name;
		char	   *type;

		if (tok != WJB_KEY)
			continue;
		name = jbv_cstring(&k);
		(void) JsonbIteratorNext(&it, &d, true);
		vs->path = psprintf("%s.%s", section, name);
		if (!is_identifier(name))
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("invalid %s name \"%s\"", what, name),
					 errhint("A name is an identifier (letters, digits, underscores).")));
		if (!is_object(&d))
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("%s \"%s\" must be declared by an object, not %s", what, name,
							crm_jsonb_type_name(&d)),
					 errhint("For example {\"type\": \"text\"}.")));
		check_keys(d.val.binary.data, psprintf("%s \"%s\"", what, name),
				   params ? "type|required|default|description" : "type|default|description");
		t = member(d.val.binary.data, "type");
		type = (t != NULL && t->type == jbvString) ? jbv_cstring(t) : NULL;
		if (type == NULL || !known_type(type))
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 type ? errmsg("%s \"%s\" has an unknown type \"%s\"", what, name, type)
					 : errmsg("%s \"%s\" needs a \"type\"", what, name),
					 errhint("Types: %s.", value_types)));
		if ((v = member(d.val.binary.data, "required")) != NULL && v->type != jbvBool)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("\"required\" of %s \"%s\" must be a boolean, not %s", what, name,
							crm_jsonb_type_name(v))));
		if ((v = member(d.val.binary.data, "default")) != NULL &&
			!crm_process_value(type, v, &converted))
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("default of %s \"%s\" is not a valid %s", what, name, type)));
	}
}

static void
check_definition(Validation *vs, Jsonb *def)
{
	JsonbIterator *it;
	JsonbValue	k;
	JsonbIteratorToken tok;
	JsonbValue *v;
	ListCell   *lc;

	if (!JB_ROOT_IS_OBJECT(def) || JB_ROOT_IS_SCALAR(def))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("a process definition must be a JSON object, not %s", root_type_name(def)),
				 errhint("For example {\"activities\": [{\"type\": \"add_comment\", \"text\": \"Started\"}]}.")));
	it = JsonbIteratorInit(&def->root);
	while ((tok = JsonbIteratorNext(&it, &k, true)) != WJB_DONE)
	{
		char	   *key;

		if (tok != WJB_KEY)
			continue;
		key = jbv_cstring(&k);
		if (strcmp(key, "parameters") != 0 && strcmp(key, "variables") != 0 &&
			strcmp(key, "constants") != 0 && strcmp(key, "activities") != 0)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("unknown key \"%s\" in a process definition", key),
					 errhint("A definition has \"parameters\", \"variables\", \"constants\" and \"activities\".")));
	}
	if ((v = member(&def->root, "parameters")) != NULL)
	{
		check_declarations(vs, v, "parameters", true);
		vs->parameters = JsonbValueToJsonb(v);
	}
	if ((v = member(&def->root, "variables")) != NULL)
	{
		check_declarations(vs, v, "variables", false);
		vs->variables = JsonbValueToJsonb(v);
	}
	if ((v = member(&def->root, "constants")) != NULL)
	{
		vs->path = "constants";
		if (!is_object(v))
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("\"constants\" must be a JSON object, not %s", crm_jsonb_type_name(v)),
					 errhint("For example {\"threshold\": 5000}.")));
		vs->constants = JsonbValueToJsonb(v);
	}
	vs->path = "activities";
	v = member(&def->root, "activities");
	if (v == NULL || !is_array(v) || JsonContainerSize(v->val.binary.data) == 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 v == NULL ? errmsg("a process definition needs \"activities\"")
				 : is_array(v) ? errmsg("a process definition needs at least one activity")
				 : errmsg("\"activities\" must be a JSON array, not %s", crm_jsonb_type_name(v)),
				 errhint("For example {\"activities\": [{\"type\": \"add_comment\", \"text\": \"Started\"}]}.")));
	check_block(vs, v, "activities");

	foreach(lc, vs->activity_refs)
	{
		ActivityRef *r = (ActivityRef *) lfirst(lc);
		ListCell   *nc;
		bool		found = false;

		foreach(nc, vs->names)
			if (pg_strcasecmp((char *) lfirst(nc), r->name) == 0)
				found = true;
		vs->path = r->path;
		if (!found)
			ereport(ERROR,
					(errcode(ERRCODE_UNDEFINED_OBJECT),
					 errmsg("unknown activity \"%s\"", r->name),
					 errhint("{=Activity:NAME.key} reads the outputs of a named activity of the template.")));
	}
	vs->path = NULL;
}

/*
 * Checks a definition for a document type, as when its template is saved;
 * an ERROR whose detail gives the place in the definition.  The caller is
 * connected to SPI.  crm.start_process and the process_timer job check the
 * definition they run again: a row of crm.process_template (or an
 * instance's copy) may have been changed by a direct UPDATE.
 */
void
crm_process_check_definition(const char *document_type, Jsonb *definition)
{
	Validation	vs;
	MemoryContext oldcxt = CurrentMemoryContext;

	memset(&vs, 0, sizeof(vs));
	vs.document_type = document_type;

	/*
	 * Errors of the checks (our own and the action descriptors') get the
	 * place in the definition as their detail, then go on up: nothing is
	 * caught for good, the caller's statement fails and stores nothing.
	 */
	PG_TRY();
	{
		check_definition(&vs, definition);
	}
	PG_CATCH();
	{
		ErrorData  *edata;

		if (vs.path == NULL)
			PG_RE_THROW();
		MemoryContextSwitchTo(oldcxt);
		edata = CopyErrorData();
		FlushErrorState();
		edata->detail = edata->detail ? psprintf("%s\nAt %s.", edata->detail, vs.path)
			: psprintf("At %s.", vs.path);
		ReThrowError(edata);
	}
	PG_END_TRY();
}

/*
 * crm._validate_process_template(document_type, definition) raises an
 * error for anything wrong with the definition.  The document type was
 * checked by the caller.
 */
Datum
crm_validate_process_template(PG_FUNCTION_ARGS)
{
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	crm_process_check_definition(text_to_cstring(PG_GETARG_TEXT_PP(0)),
								 PG_GETARG_JSONB_P(1));
	SPI_finish();
	PG_RETURN_VOID();
}
