/*-------------------------------------------------------------------------
 *
 * expr_sql.c
 *	  SQL entry points of the expression language, for administrators to
 *	  try templates, formulas and conditions from psql:
 *	  crm.evaluate, crm.test_condition, crm.check_expression.
 *
 * evaluate and test_condition are not STRICT (their defaults are NULLs): a
 * NULL expression or condition gives NULL, a NULL entity type evaluates
 * without an item, a NULL context is an empty one; an item id without an
 * entity type, or an entity type without an item id, is an error.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "fmgr.h"
#include "utils/builtins.h"
#include "utils/jsonb.h"

#include "expr/expr.h"

PG_FUNCTION_INFO_V1(crm_evaluate);
PG_FUNCTION_INFO_V1(crm_test_condition);
PG_FUNCTION_INFO_V1(crm_check_expression);

/* context->key, an object or absent (JSON null counts as absent). */
static Jsonb *
context_part(Jsonb *context, const char *key)
{
	JsonbValue *v;

	if (context == NULL ||
		(v = getKeyJsonValueFromContainer(&context->root, key, strlen(key), NULL)) == NULL ||
		v->type == jbvNull)
		return NULL;
	if (v->type != jbvBinary || !JsonContainerIsObject(v->val.binary.data))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("context key \"%s\" must be an object", key),
				 errhint("For example {\"%s\": {\"name\": \"value\"}}.", key)));
	return JsonbValueToJsonb(v);
}

/* Context from (entity_type, item_id, context jsonb) arguments 1..3. */
static void
sql_context(FunctionCallInfo fcinfo, CrmEvalContext *cx)
{
	char	   *entity_type = PG_ARGISNULL(1) ? NULL : text_to_cstring(PG_GETARG_TEXT_PP(1));
	int64		item_id = PG_ARGISNULL(2) ? 0 : PG_GETARG_INT64(2);
	Jsonb	   *context = PG_ARGISNULL(3) ? NULL : PG_GETARG_JSONB_P(3);

	if (entity_type != NULL && PG_ARGISNULL(2))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("an item id is needed with entity type \"%s\"", entity_type)));
	if (entity_type == NULL && !PG_ARGISNULL(2))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("an entity type is needed with item id %lld", (long long) item_id),
				 errhint("Pass the item's entity type, for example 'deal'.")));
	/* only an object's keys can be read (a scalar or array root has none) */
	if (context != NULL && !JB_ROOT_IS_OBJECT(context))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("context must be a JSON object"),
				 errhint("Keys: variables, constants, parameters, robots, activities, event.")));
	crm_eval_context_init(cx, entity_type, item_id, NULL, NULL);
	cx->variables = context_part(context, "variables");
	cx->constants = context_part(context, "constants");
	cx->parameters = context_part(context, "parameters");
	cx->robot_outputs = context_part(context, "robots");
	cx->activity_outputs = context_part(context, "activities");
	cx->event = context_part(context, "event");
}

Datum
crm_evaluate(PG_FUNCTION_ARGS)
{
	CrmExpr    *e;
	CrmEvalContext cx;
	CrmValue	v;

	if (PG_ARGISNULL(0))
		PG_RETURN_NULL();
	e = crm_expr_compile_text(text_to_cstring(PG_GETARG_TEXT_PP(0)), "expression");
	sql_context(fcinfo, &cx);
	if (!PG_ARGISNULL(1))
		crm_expr_check(e, cx.entity_type, NIL, false, "expression");
	v = crm_expr_eval(e, &cx);
	if (v.type == CRM_VAL_NULL)
		PG_RETURN_NULL();
	PG_RETURN_TEXT_P(cstring_to_text(crm_value_to_cstring(v)));
}

Datum
crm_test_condition(PG_FUNCTION_ARGS)
{
	CrmExpr    *e;
	CrmEvalContext cx;

	if (PG_ARGISNULL(0))
		PG_RETURN_NULL();
	e = crm_expr_compile_condition(PG_GETARG_JSONB_P(0), "condition");
	sql_context(fcinfo, &cx);
	if (!PG_ARGISNULL(1))
		crm_expr_check(e, cx.entity_type, NIL, false, "condition");
	PG_RETURN_BOOL(crm_expr_test(e, &cx));
}

/* STRICT in SQL; the NULL test keeps a direct call from another C caller safe. */
Datum
crm_check_expression(PG_FUNCTION_ARGS)
{
	CrmExpr    *e;

	if (PG_ARGISNULL(0) || PG_ARGISNULL(1))
		PG_RETURN_NULL();
	e = crm_expr_compile_text(text_to_cstring(PG_GETARG_TEXT_PP(0)), "expression");
	crm_expr_check(e, text_to_cstring(PG_GETARG_TEXT_PP(1)), NIL, false, "expression");
	PG_RETURN_VOID();
}
