/*-------------------------------------------------------------------------
 *
 * params.c
 *	  Action parameters: validation when a rule is saved, compilation when
 *	  the rule cache loads it, and rendering when it runs.
 *
 * Validation is driven by the action's descriptor (actions_catalog.c): a
 * missing required parameter, an unknown one, a value of the wrong type, a
 * bad expression or an unknown field is an ERROR that names the parameter.
 *
 * User lists (recipients, members, responsible, ...) take a user id or an
 * array of user ids, "responsible", "supervisor" (head of the responsible
 * user's department, or of the parent department for a head), "author",
 * "department:ID" (its active members), or templates that yield ids.
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

#include "actions.h"
#include "crm_automation.h"
#include "rule_cache.h"
#include "spi_util.h"

/* ---------- validation ---------- */

typedef struct ParamErrorContext
{
	const char *action;
	const char *param;
	const char *where;
} ParamErrorContext;

static void
param_error_callback(void *arg)
{
	ParamErrorContext *pc = (ParamErrorContext *) arg;

	if (pc->param)
		errcontext("parameter \"%s\" of action \"%s\" (%s)", pc->param, pc->action, pc->where);
	else
		errcontext("action \"%s\" (%s)", pc->action, pc->where);
}

static const CrmParamDesc *
find_param(const CrmActionDesc *action, const char *name)
{
	const CrmParamDesc *p;

	for (p = action->params; p->name != NULL; p++)
		if (strcmp(p->name, name) == 0)
			return p;
	return NULL;
}

static char *
param_names(const CrmActionDesc *action)
{
	StringInfoData buf;
	const CrmParamDesc *p;

	initStringInfo(&buf);
	for (p = action->params; p->name != NULL; p++)
	{
		if (buf.len > 0)
			appendStringInfoString(&buf, ", ");
		appendStringInfo(&buf, "%s%s", p->name, p->required ? "*" : "");
	}
	return buf.len > 0 ? buf.data : pstrdup("none");
}

/* "a string", "an array", ... for messages about a JSON value's type. */
const char *
crm_jsonb_type_name(JsonbValue *v)
{
	switch (v->type)
	{
		case jbvNull:
			return "null";
		case jbvString:
			return "a string";
		case jbvNumeric:
			return "a number";
		case jbvBool:
			return "a boolean";
		case jbvBinary:
			return JsonContainerIsArray(v->val.binary.data) ? "an array" : "an object";
		default:
			return "a value";
	}
}

static void
type_error(const CrmParamDesc *p, JsonbValue *v, const char *expected)
{
	ereport(ERROR,
			(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
			 errmsg("parameter \"%s\" must be %s, not %s", p->name, expected, crm_jsonb_type_name(v))));
}

static char *
jbv_string(JsonbValue *v)
{
	return pnstrdup(v->val.string.val, v->val.string.len);
}

static bool
is_template(const char *s)
{
	return strstr(s, "{{") != NULL || strstr(s, "{=") != NULL || s[0] == '=';
}

static bool
all_digits(const char *s)
{
	if (*s == '\0')
		return false;
	for (; *s; s++)
		if (!isdigit((unsigned char) *s))
			return false;
	return true;
}

static bool
is_user_keyword(const char *s)
{
	return strcmp(s, "responsible") == 0 || strcmp(s, "supervisor") == 0 ||
		strcmp(s, "author") == 0 ||
		(strncmp(s, "department:", 11) == 0 && all_digits(s + 11));
}

static bool
looks_like_email(const char *s)
{
	const char *at = strchr(s, '@');

	return at != NULL && at != s && strchr(at + 1, '.') != NULL &&
		strpbrk(s, " \t\r\n,;<>") == NULL;
}

static bool
looks_like_phone(const char *s)
{
	int			digits = 0;

	if (*s == '+')
		s++;
	for (; *s; s++)
	{
		if (isdigit((unsigned char) *s))
			digits++;
		else if (strchr(" ()-.", *s) == NULL)
			return false;
	}
	return digits >= 3;
}

static void
check_text(const char *src, const CrmParamDesc *p, const char *entity_type,
		   List *robot_names, const char *where)
{
	CrmExpr    *e = crm_expr_compile_text(src, psprintf("params.%s", p->name));

	crm_expr_check(e, entity_type, robot_names, true, psprintf("params.%s", p->name));
	if (p->max_length > 0 && crm_expr_is_constant(e) &&
		pg_mbstrlen(src) > p->max_length)
		ereport(ERROR,
				(errcode(ERRCODE_STRING_DATA_RIGHT_TRUNCATION),
				 errmsg("parameter \"%s\" is %d characters long; the limit is %d",
						p->name, pg_mbstrlen(src), p->max_length)));
}

/*
 * A custom field of the item's entity type, of the given type ("booking",
 * "file"): a parameter that names a field is checked against crm.user_field
 * when the rule is saved.
 */
static void
check_custom_field(const CrmParamDesc *p, const char *code, const char *entity_type,
				   const char *field_type)
{
	static SPIPlanPtr plan = NULL;
	Oid			types[2] = {TEXTOID, TEXTOID};
	Datum		vals[2];
	bool		isnull;
	char	   *type;

	vals[0] = CStringGetTextDatum(entity_type);
	vals[1] = CStringGetTextDatum(code);
	crm_exec(crm_plan(&plan,
					  "SELECT type FROM crm.user_field WHERE entity_type = $1 AND upper(code) = upper($2)",
					  2, types), vals, NULL, true, 1);
	if (SPI_processed == 0)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_COLUMN),
				 errmsg("parameter \"%s\" names an unknown field \"%s\"", p->name, code),
				 errhint("Register a %s field with crm.add_field('%s', '%s', name, '%s').",
						 field_type, entity_type, code, field_type)));
	type = TextDatumGetCString(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
	if (strcmp(type, field_type) != 0)
		ereport(ERROR,
				(errcode(ERRCODE_WRONG_OBJECT_TYPE),
				 errmsg("parameter \"%s\" names field \"%s\" of type %s, not %s",
						p->name, code, type, field_type),
				 errhint("Give a custom field of type %s of the %s.", field_type, entity_type)));
}

/*
 * One element of a file list that is a string: a drive file id, or a
 * template that is exactly one file field of the item, "{{UF_FILES}}",
 * rendered to its file id(s) when the robot runs.
 */
static void
check_file_element(const CrmParamDesc *p, const char *s, const char *entity_type)
{
	const char *start = s;
	const char *end;

	if (all_digits(s))
		return;
	if (strncmp(s, "{{", 2) == 0 && (end = strstr(s, "}}")) != NULL && end[2] == '\0')
	{
		start = s + 2;
		while (*start == ' ')
			start++;
		while (end > start && end[-1] == ' ')
			end--;
		if (end > start && isalpha((unsigned char) *start) &&
			strspn(start, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_") ==
			(size_t) (end - start))
		{
			check_custom_field(p, pnstrdup(start, end - start), entity_type, "file");
			return;
		}
	}
	ereport(ERROR,
			(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
			 errmsg("parameter \"%s\" has an invalid file reference \"%s\"", p->name, s),
			 errhint("Use drive file ids (crm.drive_file) or a file field of the item, e.g. \"{{UF_FILES}}\".")));
}

/* One element of a user, address or file list. */
static void
check_list_element(JsonbValue *v, const CrmParamDesc *p, const char *entity_type,
				   List *robot_names, const char *where)
{
	char	   *s;

	if (v->type == jbvNumeric)
	{
		int64		id;

		s = DatumGetCString(DirectFunctionCall1(numeric_out, NumericGetDatum(v->val.numeric)));
		if (!all_digits(s) || (id = strtoi64(s, NULL, 10)) <= 0)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("parameter \"%s\" has an invalid %s id %s", p->name,
							p->type == CRM_P_FILES ? "file" : "user", s)));
		return;
	}
	if (v->type != jbvString)
		type_error(p, v, p->type == CRM_P_FILES ? "a file id, a file field or an array of them"
				   : "a user id, a user keyword or a template, or an array of them");
	s = jbv_string(v);
	if (p->type == CRM_P_FILES)
	{
		check_file_element(p, s, entity_type);
		return;
	}
	if (all_digits(s) || is_user_keyword(s))
		return;
	if (is_template(s))
	{
		check_text(s, p, entity_type, robot_names, where);
		return;
	}
	if (p->type == CRM_P_ADDRESSES && (looks_like_email(s) || looks_like_phone(s)))
		return;
	ereport(ERROR,
			(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
			 errmsg("parameter \"%s\" has an invalid %s \"%s\"", p->name,
					p->type == CRM_P_ADDRESSES ? "recipient" : "user reference", s),
			 errhint("Use a user id, \"responsible\", \"supervisor\", \"author\", \"department:ID\"%s, or a template such as \"{{responsible_id}}\".",
					 p->type == CRM_P_ADDRESSES ? ", an e-mail address or a phone number" : "")));
}

static void
check_json_strings(JsonbContainer *jc, const CrmParamDesc *p, const char *entity_type,
				   List *robot_names, const char *where)
{
	JsonbIterator *it = JsonbIteratorInit(jc);
	JsonbValue	v;
	JsonbIteratorToken tok;

	while ((tok = JsonbIteratorNext(&it, &v, false)) != WJB_DONE)
	{
		if ((tok == WJB_VALUE || tok == WJB_ELEM) && v.type == jbvString)
			check_text(jbv_string(&v), p, entity_type, robot_names, where);
	}
}

static void
check_interval(const char *s, const CrmParamDesc *p)
{
	Interval   *iv = DatumGetIntervalP(DirectFunctionCall3(interval_in, CStringGetDatum(s),
														   ObjectIdGetDatum(InvalidOid),
														   Int32GetDatum(-1)));

	if (iv->month < 0 || iv->day < 0 || iv->time < 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("parameter \"%s\" must be a positive interval, not \"%s\"", p->name, s)));
}

static bool
is_when_keyword(const char *s)
{
	return strcmp(s, "today") == 0 || strcmp(s, "tomorrow") == 0 ||
		strcmp(s, "in_2_days") == 0 || strcmp(s, "in_3_days") == 0;
}

/*
 * A stage of the rule's pipeline; with no stage (stage_id 0: a process
 * activity, whose document may be in any pipeline), a stage of any pipeline
 * of the entity type.
 */
static void
check_stage_param(JsonbValue *v, const CrmParamDesc *p, int64 stage_id,
				  const char *entity_type)
{
	static SPIPlanPtr by_id = NULL;
	static SPIPlanPtr by_code = NULL;
	Oid			types[3] = {INT8OID, TEXTOID, TEXTOID};
	Datum		vals[3];
	int			ret;

	vals[0] = Int64GetDatum(stage_id);
	vals[2] = CStringGetTextDatum(entity_type);
	if (v->type == jbvNumeric)
	{
		types[1] = INT8OID;
		vals[1] = DirectFunctionCall1(numeric_int8, NumericGetDatum(v->val.numeric));
		ret = crm_exec(crm_plan(&by_id,
								"SELECT 1 FROM crm.stage s JOIN crm.pipeline p ON p.id = s.pipeline_id"
								" WHERE s.id = $2 AND CASE WHEN $1 = 0 THEN p.entity_type = $3"
								"   ELSE s.pipeline_id = (SELECT pipeline_id FROM crm.stage WHERE id = $1) END",
								3, types), vals, NULL, true, 1);
	}
	else if (v->type == jbvString)
	{
		vals[1] = CStringGetTextDatum(jbv_string(v));
		ret = crm_exec(crm_plan(&by_code,
								"SELECT 1 FROM crm.stage s JOIN crm.pipeline p ON p.id = s.pipeline_id"
								" WHERE s.code = lower($2) AND CASE WHEN $1 = 0 THEN p.entity_type = $3"
								"   ELSE s.pipeline_id = (SELECT pipeline_id FROM crm.stage WHERE id = $1) END",
								3, types), vals, NULL, true, 1);
	}
	else
	{
		type_error(p, v, "a stage id or code");
		return;
	}
	(void) ret;
	if (SPI_processed == 0 && stage_id == 0)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("parameter \"%s\" names no stage of a %s pipeline", p->name, entity_type),
				 errhint("Give a stage code or id (SELECT id, code FROM crm.stage).")));
	if (SPI_processed == 0)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("parameter \"%s\" names no stage of the robot's pipeline", p->name),
				 errhint("Give a stage code or id of the robot's pipeline; change_pipeline moves an item to another pipeline.")));
}

/* Columns an update_item robot may not set. */
static bool
protected_field(const char *f)
{
	return pg_strcasecmp(f, "id") == 0 || pg_strcasecmp(f, "created_at") == 0 ||
		pg_strcasecmp(f, "updated_at") == 0 || pg_strcasecmp(f, "created_by") == 0 ||
		pg_strcasecmp(f, "stage_changed_at") == 0 || pg_strcasecmp(f, "entity_type") == 0 ||
		pg_strcasecmp(f, "fields") == 0 || pg_strcasecmp(f, "stage_id") == 0;
}

static void
check_one_param(const CrmParamDesc *p, JsonbValue *v, int64 stage_id,
				const char *entity_type, List *robot_names, const char *where)
{
	switch (p->type)
	{
		case CRM_P_TEXT:
			if (v->type == jbvNumeric)
				return;
			if (v->type != jbvString)
				type_error(p, v, "a string");
			check_text(jbv_string(v), p, entity_type, robot_names, where);
			break;
		case CRM_P_BOOL:
			if (v->type != jbvBool)
				type_error(p, v, "a boolean");
			break;
		case CRM_P_INT:
			if (v->type == jbvNumeric)
			{
				char	   *s = DatumGetCString(DirectFunctionCall1(numeric_out,
																	NumericGetDatum(v->val.numeric)));

				if (!all_digits(s))
					ereport(ERROR,
							(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
							 errmsg("parameter \"%s\" must be a positive integer, not %s", p->name, s)));
				if (strcmp(p->name, "length") == 0 && (strlen(s) > 2 || atoi(s) < 1 || atoi(s) > 64))
					ereport(ERROR,
							(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
							 errmsg("parameter \"%s\" must be between 1 and 64, not %s", p->name, s)));
			}
			else if (v->type == jbvString && is_template(jbv_string(v)))
				check_text(jbv_string(v), p, entity_type, robot_names, where);
			else
				type_error(p, v, "an integer");
			break;
		case CRM_P_INTERVAL:
			if (v->type != jbvString)
				type_error(p, v, "an interval such as \"2 days\"");
			check_interval(jbv_string(v), p);
			break;
		case CRM_P_WHEN:
			if (v->type != jbvString)
				type_error(p, v, "today, tomorrow, in_2_days, in_3_days, an interval or a timestamp");
			else
			{
				char	   *s = jbv_string(v);

				if (is_when_keyword(s))
					return;
				if (is_template(s))
					check_text(s, p, entity_type, robot_names, where);
				else
				{
					/* an interval from now, or a timestamp */
					if (strchr(s, '-') != NULL && isdigit((unsigned char) s[0]))
						(void) DirectFunctionCall3(timestamptz_in, CStringGetDatum(s),
												   ObjectIdGetDatum(InvalidOid), Int32GetDatum(-1));
					else
						check_interval(s, p);
				}
			}
			break;
		case CRM_P_ENUM:
			{
				char	   *s;
				char	   *vals;
				char	   *tok;
				bool		ok = false;

				if (v->type != jbvString)
					type_error(p, v, "a string");
				s = jbv_string(v);
				vals = pstrdup(p->enum_values);
				for (tok = strtok(vals, "|"); tok; tok = strtok(NULL, "|"))
					if (strcmp(tok, s) == 0)
						ok = true;
				if (!ok)
					ereport(ERROR,
							(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
							 errmsg("parameter \"%s\" must be one of %s, not \"%s\"",
									p->name, p->enum_values, s)));
			}
			break;
		case CRM_P_USERS:
		case CRM_P_ADDRESSES:
		case CRM_P_FILES:
			if (v->type == jbvBinary && JsonContainerIsArray(v->val.binary.data))
			{
				JsonbIterator *it = JsonbIteratorInit(v->val.binary.data);
				JsonbValue	e;
				JsonbIteratorToken tok;
				int			n = 0;

				while ((tok = JsonbIteratorNext(&it, &e, true)) != WJB_DONE)
				{
					if (tok != WJB_ELEM)
						continue;
					if (e.type == jbvBinary)
						type_error(p, &e, "an array of user ids, keywords or templates");
					check_list_element(&e, p, entity_type, robot_names, where);
					n++;
				}
				if (n == 0 && p->required)
					ereport(ERROR,
							(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
							 errmsg("parameter \"%s\" must not be an empty list", p->name)));
			}
			else
				check_list_element(v, p, entity_type, robot_names, where);
			break;
		case CRM_P_FIELDS:
			if (!(v->type == jbvBinary && JsonContainerIsObject(v->val.binary.data)))
				type_error(p, v, "an object of field -> value");
			else
			{
				JsonbIterator *it = JsonbIteratorInit(v->val.binary.data);
				JsonbValue	k;
				JsonbIteratorToken tok;
				int			n = 0;

				while ((tok = JsonbIteratorNext(&it, &k, true)) != WJB_DONE)
				{
					char	   *field;
					JsonbValue	val;

					if (tok != WJB_KEY)
						continue;
					field = jbv_string(&k);
					tok = JsonbIteratorNext(&it, &val, true);
					n++;
					if (protected_field(field))
						ereport(ERROR,
								(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
								 errmsg("field \"%s\" cannot be set by update_item", field),
								 errhint("Use change_stage to move the item; custom fields are set by their code, e.g. \"UF_X\".")));
					/* the field must exist on the target: check it as a reference */
					check_text(psprintf("{{%s}}", field), p,
							   p->enum_values ? p->enum_values : entity_type, NIL, where);
					if (val.type == jbvString)
						check_text(jbv_string(&val), p, entity_type, robot_names, where);
					else if (val.type == jbvBinary)
						type_error(p, &val, "a scalar or a template per field");
				}
				if (n == 0)
					ereport(ERROR,
							(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
							 errmsg("parameter \"%s\" must set at least one field", p->name)));
			}
			break;
		case CRM_P_JSON:
			if (v->type == jbvString)
				check_text(jbv_string(v), p, entity_type, robot_names, where);
			else if (v->type == jbvBinary)
				check_json_strings(v->val.binary.data, p, entity_type, robot_names, where);
			if (strcmp(p->name, "headers") == 0 &&
				!(v->type == jbvBinary && JsonContainerIsObject(v->val.binary.data)))
				type_error(p, v, "an object of header -> value");
			break;
		case CRM_P_STAGE:
			check_stage_param(v, p, stage_id, entity_type);
			break;
		case CRM_P_PIPELINE:
			if (v->type != jbvNumeric && v->type != jbvString)
				type_error(p, v, "a pipeline id or name");
			break;
		case CRM_P_FIELD:
			if (v->type != jbvString)
				type_error(p, v, psprintf("the code of a %s field", p->enum_values));
			check_custom_field(p, jbv_string(v), entity_type, p->enum_values);
			break;
	}
}

void
crm_action_validate(const CrmActionDesc *action, Jsonb *params, int64 stage_id,
					const char *entity_type, List *robot_names, const char *where)
{
	ErrorContextCallback errcb;
	ParamErrorContext pc;
	const CrmParamDesc *p;
	JsonbIterator *it;
	JsonbValue	k;
	JsonbIteratorToken tok;

	pc.action = action->name;
	pc.param = NULL;
	pc.where = where;
	errcb.callback = param_error_callback;
	errcb.arg = &pc;
	errcb.previous = error_context_stack;
	error_context_stack = &errcb;

	if (((action->flags & CRM_ACT_DEALS_ONLY) && strcmp(entity_type, "deal") != 0) ||
		((action->flags & CRM_ACT_LEADS_ONLY) && strcmp(entity_type, "lead") != 0))
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("action \"%s\" is not available for %s stages", action->name, entity_type),
				 errhint("It works on %s only.", (action->flags & CRM_ACT_DEALS_ONLY) ? "deals" : "leads")));
	if (strcmp(action->name, "convert") == 0)
	{
		JsonbValue *to = getKeyJsonValueFromContainer(&params->root, "to", 2, NULL);
		bool		from_lead = strcmp(entity_type, "lead") == 0;

		if (to != NULL && to->type == jbvString)
		{
			char	   *t = pnstrdup(to->val.string.val, to->val.string.len);
			bool		lead_target = strcmp(t, "deal") == 0 || strcmp(t, "contact") == 0 ||
				strcmp(t, "company") == 0;

			if ((from_lead && !lead_target) || (!from_lead && (lead_target || strcmp(entity_type, "deal") != 0)))
				ereport(ERROR,
						(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
						 errmsg("cannot convert a %s to a %s", entity_type, t),
						 errhint("Leads convert to deal, contact or company; deals to quote or invoice.")));
		}
	}
	if (!JB_ROOT_IS_OBJECT(params) || JB_ROOT_IS_SCALAR(params))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("params must be a JSON object"),
				 errhint("Parameters of %s: %s.", action->name, param_names(action))));

	/* every key must be a known parameter */
	it = JsonbIteratorInit(&params->root);
	while ((tok = JsonbIteratorNext(&it, &k, true)) != WJB_DONE)
	{
		JsonbValue	v;
		const CrmParamDesc *d;
		char	   *key;

		if (tok != WJB_KEY)
			continue;
		key = jbv_string(&k);
		tok = JsonbIteratorNext(&it, &v, true);
		d = find_param(action, key);
		if (d == NULL)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("unknown parameter \"%s\" for action \"%s\"", key, action->name),
					 errhint("Parameters of %s (* = required): %s.", action->name, param_names(action))));
		if (v.type == jbvNull)
		{
			if (d->required)
				ereport(ERROR,
						(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
						 errmsg("parameter \"%s\" of action \"%s\" must not be null", key, action->name)));
			continue;
		}
		pc.param = d->name;
		check_one_param(d, &v, stage_id, entity_type, robot_names, where);
		pc.param = NULL;
	}

	for (p = action->params; p->name != NULL; p++)
	{
		JsonbValue *v;

		if (!p->required)
			continue;
		v = getKeyJsonValueFromContainer(&params->root, p->name, strlen(p->name), NULL);
		if (v == NULL)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("missing required parameter \"%s\" for action \"%s\"", p->name, action->name),
					 errhint("Parameters of %s (* = required): %s.", action->name, param_names(action))));
	}
	if (strcmp(action->name, "wait") == 0 &&
		getKeyJsonValueFromContainer(&params->root, "for", 3, NULL) == NULL)
	{
		JsonbValue *u = getKeyJsonValueFromContainer(&params->root, "until_client_activity", 21, NULL);

		if (u == NULL || u->type != jbvBool || !u->val.boolean)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("action \"wait\" needs \"for\" or \"until_client_activity\""),
					 errhint("For example: {\"for\": \"2 days\"}.")));
	}
	error_context_stack = errcb.previous;
}

/* ---------- compilation ---------- */

static Jsonb *
jbv_to_jsonb(JsonbValue *v)
{
	return JsonbValueToJsonb(v);
}

static CrmExpr *
compile_scalar(JsonbValue *v, const char *where)
{
	char	   *s;

	if (v->type == jbvString)
		s = jbv_string(v);
	else if (v->type == jbvNumeric)
		s = DatumGetCString(DirectFunctionCall1(numeric_out, NumericGetDatum(v->val.numeric)));
	else if (v->type == jbvBool)
		s = pstrdup(v->val.boolean ? "true" : "false");
	else
		s = pstrdup("");
	return crm_expr_compile_text(s, where);
}

CrmCompiledParams *
crm_action_compile(const CrmActionDesc *action, Jsonb *params, const char *where)
{
	CrmCompiledParams *cp = palloc0(sizeof(CrmCompiledParams));
	const CrmParamDesc *p;
	int			n = 0;
	int			i;

	for (p = action->params; p->name != NULL; p++)
		n++;
	cp->n = n;
	cp->params = palloc0(sizeof(CrmCompiledParam) * Max(n, 1));

	for (i = 0; i < n; i++)
	{
		CrmCompiledParam *c = &cp->params[i];
		JsonbValue *v;
		char	   *pw;

		p = &action->params[i];
		c->desc = p;
		v = getKeyJsonValueFromContainer(&params->root, p->name, strlen(p->name), NULL);
		if (v == NULL || v->type == jbvNull)
			continue;
		c->present = true;
		c->raw = jbv_to_jsonb(v);
		pw = psprintf("params.%s", p->name);

		switch (p->type)
		{
			case CRM_P_TEXT:
			case CRM_P_INT:
			case CRM_P_WHEN:
			case CRM_P_INTERVAL:
			case CRM_P_ENUM:
			case CRM_P_FIELD:
				if (v->type != jbvBinary)
					c->expr = compile_scalar(v, pw);
				break;
			case CRM_P_USERS:
			case CRM_P_ADDRESSES:
			case CRM_P_FILES:
				if (v->type == jbvBinary)
				{
					JsonbIterator *it = JsonbIteratorInit(v->val.binary.data);
					JsonbValue	e;
					JsonbIteratorToken tok;

					while ((tok = JsonbIteratorNext(&it, &e, true)) != WJB_DONE)
						if (tok == WJB_ELEM)
							c->items = lappend(c->items, compile_scalar(&e, pw));
				}
				else
					c->items = list_make1(compile_scalar(v, pw));
				break;
			case CRM_P_FIELDS:
				if (v->type == jbvBinary)
				{
					JsonbIterator *it = JsonbIteratorInit(v->val.binary.data);
					JsonbValue	k;
					JsonbIteratorToken tok;

					while ((tok = JsonbIteratorNext(&it, &k, true)) != WJB_DONE)
					{
						JsonbValue	val;

						if (tok != WJB_KEY)
							continue;
						c->field_names = lappend(c->field_names, jbv_string(&k));
						(void) JsonbIteratorNext(&it, &val, true);
						c->field_exprs = lappend(c->field_exprs,
												 val.type == jbvNull ? NULL : compile_scalar(&val, pw));
					}
				}
				break;
			case CRM_P_JSON:
			case CRM_P_STAGE:
			case CRM_P_PIPELINE:
			case CRM_P_BOOL:
				break;
		}
	}
	return cp;
}

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
			CrmExpr    *e = crm_expr_compile_text(jbv_string(&v), psprintf("params.%s", name));
			char	   *r = crm_expr_render(e, call->cx);

			v.val.string.val = r;
			v.val.string.len = strlen(r);
		}
		res = pushJsonbValue(&state, tok, (tok < WJB_BEGIN_ARRAY) ? &v : NULL);
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
	vals[1] = CStringGetTextDatum(jbv_string(&v));
	crm_exec(crm_plan(&by_code,
					  "SELECT s.id FROM crm.stage s WHERE s.code = lower($2)"
					  " AND s.pipeline_id = (SELECT pipeline_id FROM crm.stage WHERE id = $1)",
					  2, types), vals, NULL, true, 1);
	if (SPI_processed == 0)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("stage \"%s\" does not exist in the item's pipeline", jbv_string(&v))));
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
	if ((!phones && looks_like_email(s)) || (phones && !all_digits(s) && looks_like_phone(s)))
		return lappend(result, s);
	if (phones && all_digits(s) && strlen(s) > 7)
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
