/*-------------------------------------------------------------------------
 *
 * params_compile.c
 *	  Action parameters when the rule cache loads a rule: compilation.
 *
 * Each parameter's templates and formulas are parsed once into expression
 * trees (expr/), kept with the rule in the rule cache; params_render.c
 * evaluates them when the rule runs.
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
		s = crm_jbv_string(v);
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
						c->field_names = lappend(c->field_names, crm_jbv_string(&k));
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
