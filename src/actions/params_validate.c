/*-------------------------------------------------------------------------
 *
 * params_validate.c
 *	  Action parameters when a rule is saved: validation and references.
 *
 * Validation is driven by the action's descriptor (actions_catalog.c): a
 * missing required parameter, an unknown one, a value of the wrong type, a
 * bad expression or an unknown field is an ERROR that names the parameter.
 * The names a rule refers to (pipelines, document templates, providers)
 * must exist.  params_compile.c then compiles what was saved, and
 * params_render.c renders it when the rule runs.
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
#include "core/charset.h"
#include "core/guc.h"
#include "core/rule_cache.h"
#include "core/spi_util.h"

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

static bool
is_template(const char *s)
{
	return strstr(s, "{{") != NULL || strstr(s, "{=") != NULL || s[0] == '=';
}

static bool
is_user_keyword(const char *s)
{
	return strcmp(s, "responsible") == 0 || strcmp(s, "supervisor") == 0 ||
		strcmp(s, "author") == 0 ||
		(strncmp(s, "department:", 11) == 0 && crm_all_digits(s + 11));
}

static void
check_text(const char *src, const CrmParamDesc *p, const char *entity_type,
		   List *robot_names, const char *where)
{
	CrmExpr    *e = crm_expr_compile_text(src, psprintf("params.%s", p->name));

	/* the structural checks of a stored rule (no entity type) only compile */
	if (entity_type != NULL)
		crm_expr_check(e, entity_type, robot_names, true, psprintf("params.%s", p->name));
	if (p->max_length > 0 && crm_expr_is_constant(e) &&
		pg_mbstrlen(src) > p->max_length)
		ereport(ERROR,
				(errcode(ERRCODE_STRING_DATA_RIGHT_TRUNCATION),
				 errmsg("parameter \"%s\" is %d characters long; the limit is %d",
						p->name, pg_mbstrlen(src), p->max_length)));
}

/* A charset written as is (not a template) must be one PostgreSQL converts to. */
static void
check_charset(const char *s, const CrmParamDesc *p)
{
	if (is_template(s) || *s == '\0' || crm_charset_encoding(s) >= 0)
		return;
	ereport(ERROR,
			(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
			 errmsg("parameter \"%s\" names an unknown charset \"%s\"", p->name, s),
			 errhint("Use utf-8, iso-8859-1, windows-1252, koi8-r, or any other name of an encoding PostgreSQL knows (LATIN2, WIN1251, EUC_JP...).")));
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

	if (entity_type == NULL)
		return;					/* structural checks only */
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

	if (crm_all_digits(s))
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
		if (!crm_all_digits(s) || (id = strtoi64(s, NULL, 10)) <= 0)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("parameter \"%s\" has an invalid %s id %s", p->name,
							p->type == CRM_P_FILES ? "file" : "user", s)));
		return;
	}
	if (v->type != jbvString)
		type_error(p, v, p->type == CRM_P_FILES ? "a file id, a file field or an array of them"
				   : "a user id, a user keyword or a template, or an array of them");
	s = crm_jbv_string(v);
	if (p->type == CRM_P_FILES)
	{
		check_file_element(p, s, entity_type);
		return;
	}
	if (crm_all_digits(s) || is_user_keyword(s))
		return;
	if (is_template(s))
	{
		check_text(s, p, entity_type, robot_names, where);
		return;
	}
	if (p->type == CRM_P_ADDRESSES && (crm_looks_like_email(s) || crm_looks_like_phone(s)))
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
			check_text(crm_jbv_string(&v), p, entity_type, robot_names, where);
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
				 errmsg("parameter \"%s\" must be a positive interval, not \"%s\"", p->name, s)));	if (!crm_delay_in_bounds(iv))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("parameter \"%s\" is too long: \"%s\"", p->name, s),
				 errdetail("An interval parameter is at most %d days (about 100 years).",
						   CRM_MAX_DELAY_DAYS)));
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

	if (entity_type == NULL)
	{
		/* structural checks only: an id or a code */
		if (v->type != jbvNumeric && v->type != jbvString)
			type_error(p, v, "a stage id or code");
		return;
	}
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
		vals[1] = CStringGetTextDatum(crm_jbv_string(v));
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
			check_text(crm_jbv_string(v), p, entity_type, robot_names, where);
			if (strcmp(p->name, "charset") == 0)
				check_charset(crm_jbv_string(v), p);
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

				if (!crm_all_digits(s))
					ereport(ERROR,
							(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
							 errmsg("parameter \"%s\" must be a positive integer, not %s", p->name, s)));
				if (strcmp(p->name, "length") == 0 && (strlen(s) > 2 || atoi(s) < 1 || atoi(s) > 64))
					ereport(ERROR,
							(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
							 errmsg("parameter \"%s\" must be between 1 and 64, not %s", p->name, s)));
			}
			else if (v->type == jbvString && is_template(crm_jbv_string(v)))
				check_text(crm_jbv_string(v), p, entity_type, robot_names, where);
			else
				type_error(p, v, "an integer");
			break;
		case CRM_P_INTERVAL:
			if (v->type != jbvString)
				type_error(p, v, "an interval such as \"2 days\"");
			check_interval(crm_jbv_string(v), p);
			break;
		case CRM_P_WHEN:
			if (v->type != jbvString)
				type_error(p, v, "today, tomorrow, in_2_days, in_3_days, an interval or a timestamp");
			else
			{
				char	   *s = crm_jbv_string(v);

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
				s = crm_jbv_string(v);
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
					field = crm_jbv_string(&k);
					tok = JsonbIteratorNext(&it, &val, true);
					n++;
					if (protected_field(field))
						ereport(ERROR,
								(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
								 errmsg("field \"%s\" cannot be set by update_item", field),
								 errhint("Use change_stage to move the item; custom fields are set by their code, e.g. \"UF_X\".")));
					/* the field must exist on the target: check it as a reference */
					check_text(psprintf("{{%s}}", field), p,
							   entity_type == NULL ? NULL :
							   p->enum_values ? p->enum_values : entity_type, NIL, where);
					if (val.type == jbvString)
						check_text(crm_jbv_string(&val), p, entity_type, robot_names, where);
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
				check_text(crm_jbv_string(v), p, entity_type, robot_names, where);
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
			check_custom_field(p, crm_jbv_string(v), entity_type, p->enum_values);
			break;
	}
}

/*
 * The checks of crm_action_validate; with entity_type NULL, only those that
 * need no catalog: the shape of params, required parameters, types, enum
 * values, intervals, and templates that compile.
 */
static void
validate_params(const CrmActionDesc *action, Jsonb *params, int64 stage_id,
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

	if (params == NULL || !JB_ROOT_IS_OBJECT(params) || JB_ROOT_IS_SCALAR(params))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("params must be a JSON object"),
				 errhint("Parameters of %s: %s.", action->name, param_names(action))));
	if (entity_type != NULL &&
		(((action->flags & CRM_ACT_DEALS_ONLY) && strcmp(entity_type, "deal") != 0) ||
		 ((action->flags & CRM_ACT_LEADS_ONLY) && strcmp(entity_type, "lead") != 0) ||
		 ((action->flags & CRM_ACT_DEALS_LEADS) && strcmp(entity_type, "deal") != 0 &&
		  strcmp(entity_type, "lead") != 0)))
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("%s \"%s\" is not available for %s %s",
						(action->flags & CRM_ACT_PROCESS_ONLY) ? "activity" : "action", action->name,
						entity_type, (action->flags & CRM_ACT_PROCESS_ONLY) ? "documents" : "stages"),
				 errhint("It works on %s only.", (action->flags & CRM_ACT_DEALS_ONLY) ? "deals" :
						 (action->flags & CRM_ACT_LEADS_ONLY) ? "leads" : "deals and leads")));
	if (entity_type != NULL && strcmp(action->name, "convert") == 0)
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
		key = crm_jbv_string(&k);
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

void
crm_action_validate(const CrmActionDesc *action, Jsonb *params, int64 stage_id,
					const char *entity_type, List *robot_names, const char *where)
{
	Assert(entity_type != NULL);
	validate_params(action, params, stage_id, entity_type, robot_names, where);
}

/*
 * The structural part of crm_action_validate, for a rule read back from its
 * table: the row may have been changed by a direct UPDATE, so what the rule
 * cache compiles is checked again.  No catalog lookups (fields, stages,
 * custom fields): those fail, if they must, when the rule runs.
 */
void
crm_action_check_structure(const CrmActionDesc *action, Jsonb *params, const char *where)
{
	validate_params(action, params, 0, NULL, NIL, where);
}


/* ---------- references ---------- */

/* A parameter's literal text, or NULL when absent or a template. */
static char *
literal_param(Jsonb *params, const char *key)
{
	JsonbValue *v = getKeyJsonValueFromContainer(&params->root, key, strlen(key), NULL);
	char	   *s;

	if (v == NULL)
		return NULL;
	if (v->type == jbvNumeric)
		return DatumGetCString(DirectFunctionCall1(numeric_out, NumericGetDatum(v->val.numeric)));
	if (v->type != jbvString)
		return NULL;
	s = pnstrdup(v->val.string.val, v->val.string.len);
	return (strstr(s, "{{") || strstr(s, "{=") || s[0] == '=') ? NULL : s;
}

/*
 * Pipelines, document templates and providers that a robot (or a process
 * activity running the same action) names exist when it is saved
 * (templates are checked when it runs).
 */
void
crm_action_check_references(const CrmActionDesc *action, Jsonb *params, const char *entity_type)
{
	static SPIPlanPtr pipeline_plan = NULL;
	static SPIPlanPtr template_plan = NULL;
	static SPIPlanPtr provider_plan = NULL;
	Oid			types[3] = {TEXTOID, TEXTOID, TEXTOID};
	Datum		vals[3];
	char		nulls[3] = {' ', ' ', ' '};
	const char *name = action->name;
	char	   *v;

	if (params == NULL)
		return;
	if ((v = literal_param(params, "pipeline")) != NULL)
	{
		const char *of = entity_type;
		char	   *stage = strcmp(name, "change_pipeline") == 0 ? literal_param(params, "stage") : NULL;

		if (strcmp(name, "copy_deal") == 0)
			of = "deal";
		else if (strcmp(name, "convert") == 0)
		{
			of = literal_param(params, "to");
			if (of == NULL || strcmp(of, "contact") == 0 || strcmp(of, "company") == 0)
				ereport(ERROR,
						(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
						 errmsg("parameter \"pipeline\" does not apply to a conversion to %s", of ? of : "that"),
						 errhint("Contacts and companies have no pipelines.")));
		}
		vals[0] = CStringGetTextDatum(of);
		vals[1] = CStringGetTextDatum(v);
		vals[2] = stage ? CStringGetTextDatum(stage) : (Datum) 0;
		nulls[2] = stage ? ' ' : 'n';
		crm_exec(crm_plan(&pipeline_plan,
						  "SELECT 1 FROM crm.pipeline p JOIN crm.stage s ON s.pipeline_id = p.id"
						  " WHERE p.entity_type = $1"
						  "   AND CASE WHEN $2 ~ '^[0-9]+$' THEN p.id = $2::bigint ELSE p.name = $2 END"
						  "   AND ($3 IS NULL OR s.code = lower($3) OR s.id::text = $3) LIMIT 1",
						  3, types), vals, nulls, true, 1);
		if (SPI_processed == 0)
			ereport(ERROR,
					(errcode(ERRCODE_UNDEFINED_OBJECT),
					 stage ? errmsg("%s pipeline \"%s\" has no stage \"%s\"", of, v, stage)
					 : errmsg("%s pipeline \"%s\" does not exist", of, v),
					 errhint("Give a pipeline id or name of the %s entity type (SELECT id, name FROM crm.pipeline WHERE entity_type = '%s').",
							 of, of)));
	}
	if (strcmp(name, "create_document") == 0 && (v = literal_param(params, "template")) != NULL)
	{
		vals[0] = CStringGetTextDatum(v);
		crm_exec(crm_plan(&template_plan,
						  "SELECT 1 FROM crm.document_template"
						  " WHERE CASE WHEN $1 ~ '^[0-9]+$' THEN id = $1::bigint ELSE name = $1 END",
						  1, types), vals, NULL, true, 1);
		if (SPI_processed == 0)
			ereport(ERROR,
					(errcode(ERRCODE_UNDEFINED_OBJECT),
					 errmsg("document template \"%s\" does not exist", v),
					 errhint("Templates are rows of crm.document_template (id, name, body).")));
	}
	if ((action->flags & CRM_ACT_OUTBOUND) && (v = literal_param(params, "provider")) != NULL)
	{
		const char *channel = strcmp(name, "send_email") == 0 ? "email" :
			strcmp(name, "send_sms") == 0 ? "sms" :
			strcmp(name, "openline_message") == 0 ? "openline" : name;

		vals[0] = CStringGetTextDatum(channel);
		vals[1] = CStringGetTextDatum(v);
		crm_exec(crm_plan(&provider_plan,
						  "SELECT 1 FROM crm.provider WHERE channel = $1 AND name = $2",
						  2, types), vals, NULL, true, 1);
		if (SPI_processed == 0)
			ereport(ERROR,
					(errcode(ERRCODE_UNDEFINED_OBJECT),
					 errmsg("%s provider \"%s\" does not exist", channel, v),
					 errhint("Add it first with crm.add_provider('%s', name, config, secret).", channel)));
	}
}
