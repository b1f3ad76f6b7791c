/*-------------------------------------------------------------------------
 *
 * trigger_admin.c
 *	  Save-time validation of triggers (crm._validate_trigger), behind
 *	  crm.add_trigger, crm.update_trigger and crm.copy_trigger.
 *
 * A trigger is checked against its event's descriptor (trigger_events.c):
 * the event must exist and be available for the stage's entity type, every
 * parameter must be known and of its type (fields of the item, an existing
 * web form, a URL, a code), the condition must compile, name known fields
 * and read only payload keys the event gives, and on_behalf_of must be a
 * user.  Anything wrong is an ERROR; the caller stores nothing.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <ctype.h>

#include "catalog/namespace.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "utils/builtins.h"
#include "utils/formatting.h"
#include "utils/jsonb.h"
#include "utils/lsyscache.h"

#include "actions/actions.h"
#include "core/rule_cache.h"
#include "core/spi_util.h"
#include "triggers/triggers.h"

PG_FUNCTION_INFO_V1(crm_validate_trigger);

/* Columns the engine maintains itself: watching them makes no sense. */
static const char *const unwatchable[] = {
	"id", "stage_id", "stage_changed_at", "updated_at", "updated_by",
	"created_at", "created_by", "entity_type"
};

typedef struct TriggerErrorContext
{
	const char *event;
	const char *param;
} TriggerErrorContext;

static void
trigger_error_callback(void *arg)
{
	TriggerErrorContext *tc = (TriggerErrorContext *) arg;

	if (tc->param)
		errcontext("parameter \"%s\" of a %s trigger", tc->param, tc->event);
	else
		errcontext("%s trigger", tc->event);
}

static char *
event_param_names(const CrmEventDesc *ev)
{
	StringInfoData buf;
	const CrmEventParam *p;

	initStringInfo(&buf);
	for (p = ev->params; p->name != NULL; p++)
		appendStringInfo(&buf, "%s%s%s", buf.len ? ", " : "", p->name, p->required ? "*" : "");
	return buf.len ? buf.data : "none";
}

static const CrmEventParam *
find_event_param(const CrmEventDesc *ev, const char *name)
{
	const CrmEventParam *p;

	for (p = ev->params; p->name != NULL; p++)
		if (strcmp(p->name, name) == 0)
			return p;
	return NULL;
}

static char *
string_param(JsonbValue *v, const char *name, const char *what)
{
	if (v->type != jbvString || v->val.string.len == 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("parameter \"%s\" must be %s, not %s", name, what,
						v->type == jbvString ? "an empty string" : crm_jsonb_type_name(v))));
	return pnstrdup(v->val.string.val, v->val.string.len);
}

/* One watched field: a column of the item's table or a custom field. */
static void
check_watched_field(const char *field, const char *entity_type)
{
	CrmExpr    *e;
	int			i;

	if (strchr(field, '.') != NULL && pg_strncasecmp(field, "fields.", 7) != 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("field \"%s\" is not a field of the %s itself", field, entity_type),
				 errhint("A field_changed trigger watches the item's own columns and custom fields; related records are not watched.")));
	for (i = 0; i < lengthof(unwatchable); i++)
		if (pg_strcasecmp(field, unwatchable[i]) == 0)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("field \"%s\" cannot be watched", field),
					 errdetail("The engine maintains it on every write or stage change."),
					 errhint("Robots run when the stage changes; watch the fields the application sets.")));
	e = crm_expr_compile_text(psprintf("{{%s}}", field), "params.fields");
	crm_expr_check(e, entity_type, NIL, false, "params.fields");
}

static void
check_fields_param(JsonbValue *v, const char *entity_type)
{
	JsonbIterator *it;
	JsonbValue	e;
	JsonbIteratorToken tok;
	int			n = 0;

	if (v->type != jbvBinary || !JsonContainerIsArray(v->val.binary.data))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("parameter \"fields\" must be an array of field names, not %s",
						crm_jsonb_type_name(v)),
				 errhint("For example {\"fields\": [\"amount\", \"UF_DELIVERY_DATE\"]}.")));
	it = JsonbIteratorInit(v->val.binary.data);
	while ((tok = JsonbIteratorNext(&it, &e, true)) != WJB_DONE)
	{
		if (tok != WJB_ELEM)
			continue;
		if (e.type != jbvString || e.val.string.len == 0)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("parameter \"fields\" must hold field names, not %s", crm_jsonb_type_name(&e)),
					 errhint("For example {\"fields\": [\"amount\", \"UF_DELIVERY_DATE\"]}.")));
		check_watched_field(pnstrdup(e.val.string.val, e.val.string.len), entity_type);
		n++;
	}
	if (n == 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("parameter \"fields\" must name at least one field"),
				 errhint("For example {\"fields\": [\"amount\"]}.")));
}

static void
check_webform(const char *code)
{
	static SPIPlanPtr plan = NULL;
	static SPIPlanPtr list_plan = NULL;
	Oid			types[1] = {TEXTOID};
	Datum		vals[1];
	bool		isnull;
	Datum		forms;

	vals[0] = CStringGetTextDatum(code);
	crm_exec(crm_plan(&plan, "SELECT 1 FROM crm.webform WHERE code = $1", 1, types),
			 vals, NULL, true, 1);
	if (SPI_processed > 0)
		return;
	crm_exec(crm_plan(&list_plan,
					  "SELECT coalesce(string_agg(code, ', ' ORDER BY code), 'none yet') FROM crm.webform",
					  0, NULL), NULL, NULL, true, 1);
	forms = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);
	ereport(ERROR,
			(errcode(ERRCODE_UNDEFINED_OBJECT),
			 errmsg("unknown web form \"%s\"", code),
			 errdetail("Web forms: %s.", TextDatumGetCString(forms)),
			 errhint("Create it with crm.add_webform(code, name).")));
}

static void
check_param(const CrmEventParam *p, JsonbValue *v, const char *entity_type)
{
	switch (p->type)
	{
		case CRM_EP_FIELDS:
			check_fields_param(v, entity_type);
			break;
		case CRM_EP_WEBFORM:
			check_webform(string_param(v, p->name, "a web form code"));
			break;
		case CRM_EP_CODE:
			crm_check_event_code(string_param(v, p->name, "an event code"));
			break;
		case CRM_EP_URL:
			crm_check_tracked_url(string_param(v, p->name, "an http(s) URL"));
			break;
		case CRM_EP_TEXT:
			(void) string_param(v, p->name, "a non-empty string");
			break;
	}
}

static void
check_params(const CrmEventDesc *ev, Jsonb *params, const char *entity_type,
			 TriggerErrorContext *tc)
{
	JsonbIterator *it;
	JsonbValue	k;
	JsonbIteratorToken tok;
	const CrmEventParam *p;

	if (!JB_ROOT_IS_OBJECT(params) || JB_ROOT_IS_SCALAR(params))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("params must be a JSON object"),
				 errhint("Parameters of %s (* = required): %s.", ev->name, event_param_names(ev))));
	it = JsonbIteratorInit(&params->root);
	while ((tok = JsonbIteratorNext(&it, &k, true)) != WJB_DONE)
	{
		JsonbValue	v;
		char	   *key;

		if (tok != WJB_KEY)
			continue;
		key = pnstrdup(k.val.string.val, k.val.string.len);
		(void) JsonbIteratorNext(&it, &v, true);
		p = find_event_param(ev, key);
		if (p == NULL)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("unknown parameter \"%s\" for event \"%s\"", key, ev->name),
					 errhint("Parameters of %s (* = required): %s.", ev->name, event_param_names(ev))));
		tc->param = p->name;
		if (v.type == jbvNull)
		{
			if (p->required)
				ereport(ERROR,
						(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
						 errmsg("parameter \"%s\" of event \"%s\" must not be null", key, ev->name)));
		}
		else
			check_param(p, &v, entity_type);
		tc->param = NULL;
	}
	for (p = ev->params; p->name != NULL; p++)
		if (p->required &&
			getKeyJsonValueFromContainer(&params->root, p->name, strlen(p->name), NULL) == NULL)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("missing required parameter \"%s\" for event \"%s\"", p->name, ev->name),
					 errhint("Parameters of %s (* = required): %s.", ev->name, event_param_names(ev))));
}

/* The keys {=Event:key} may read, for hints. */
static char *
payload_keys_text(const CrmEventDesc *ev)
{
	if (ev->payload_keys)
		return pstrdup(ev->payload_keys);
	return psprintf("the columns of crm.%s", ev->payload_table);
}

static bool
payload_has_key(const CrmEventDesc *ev, const char *key)
{
	if (ev->payload_table)
	{
		Oid			relid = get_relname_relid(ev->payload_table,
											  get_namespace_oid("crm", false));

		return get_attnum(relid, asc_tolower(key, strlen(key))) != InvalidAttrNumber;
	}
	if (ev->payload_keys)
	{
		char	   *keys = pstrdup(ev->payload_keys);
		char	   *tok;
		char	   *save;

		for (tok = strtok_r(keys, ",", &save); tok; tok = strtok_r(NULL, ",", &save))
			if (pg_strcasecmp(tok, key) == 0)
				return true;
		return false;
	}
	return true;				/* free-form payload */
}

static void
check_condition(const CrmEventDesc *ev, Jsonb *condition, const char *entity_type)
{
	CrmExpr    *e = crm_expr_compile_condition(condition, "condition");
	ListCell   *lc;

	crm_expr_check(e, entity_type, NIL, false, "condition");
	if (crm_expr_refs(e, "Robot") != NIL)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("a trigger's condition cannot read robot outputs"),
				 errhint("It reads the item ({{field}}) and the event ({=Event:key}).")));
	foreach(lc, crm_expr_refs(e, "Event"))
	{
		char	   *key = (char *) lfirst(lc);

		if (!payload_has_key(ev, key))
			ereport(ERROR,
					(errcode(ERRCODE_UNDEFINED_OBJECT),
					 errmsg("event \"%s\" has no payload key \"%s\"", ev->name, key),
					 errhint("{=Event:key} reads %s.", payload_keys_text(ev))));
	}
}

static void
check_user(int64 user_id)
{
	static SPIPlanPtr plan = NULL;
	Oid			types[1] = {INT8OID};
	Datum		vals[1];

	vals[0] = Int64GetDatum(user_id);
	crm_exec(crm_plan(&plan, "SELECT 1 FROM crm.user WHERE id = $1", 1, types),
			 vals, NULL, true, 1);
	if (SPI_processed == 0)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("user %lld does not exist", (long long) user_id),
				 errhint("on_behalf_of is a crm.user id; NULL changes the stage on behalf of the item's responsible user.")));
}

/*
 * crm._validate_trigger(stage_id, event, params, condition, on_behalf_of)
 * raises an error for anything wrong with the definition.
 */
Datum
crm_validate_trigger(PG_FUNCTION_ARGS)
{
	int64		stage_id;
	char	   *event_name;
	Jsonb	   *params;
	const CrmStageInfo *st;
	const CrmEventDesc *ev;
	char		entity_type[CRM_NAME_LEN];
	ErrorContextCallback errcb;
	TriggerErrorContext tc;

	if (PG_ARGISNULL(0))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("stage id must not be null"),
				 errhint("Find a stage id with crm.stage(entity_type, code).")));
	if (PG_ARGISNULL(1))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("event must not be null"),
				 errhint("Events: %s.", crm_event_names())));
	stage_id = PG_GETARG_INT64(0);
	event_name = text_to_cstring(PG_GETARG_TEXT_PP(1));

	st = crm_stage_info_required(stage_id);
	strlcpy(entity_type, st->entity_type, CRM_NAME_LEN);

	ev = crm_event_lookup(event_name);
	if (ev == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("unknown event \"%s\"", event_name),
				 errdetail("Events: %s.", crm_event_names()),
				 errhint("See SELECT event, parameters FROM crm.trigger_events; for the list.")));
	if ((ev->flags & CRM_EVF_INVOICES_AND_DEALS) &&
		strcmp(entity_type, "invoice") != 0 && strcmp(entity_type, "deal") != 0)
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("event \"%s\" is not available for %s stages", ev->name, entity_type),
				 errhint("It fires for invoices and their deals.")));

	tc.event = ev->name;
	tc.param = NULL;
	errcb.callback = trigger_error_callback;
	errcb.arg = &tc;
	errcb.previous = error_context_stack;
	error_context_stack = &errcb;

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	params = PG_ARGISNULL(2) ? DatumGetJsonbP(DirectFunctionCall1(jsonb_in, CStringGetDatum("{}")))
		: PG_GETARG_JSONB_P(2);
	check_params(ev, params, entity_type, &tc);
	if (!PG_ARGISNULL(3))
		check_condition(ev, PG_GETARG_JSONB_P(3), entity_type);
	if (!PG_ARGISNULL(4))
		check_user(PG_GETARG_INT64(4));
	SPI_finish();

	error_context_stack = errcb.previous;
	PG_RETURN_VOID();
}
