/*-------------------------------------------------------------------------
 *
 * condition.c
 *	  Conditions of rules (SPEC §6): a jsonb string holding a boolean
 *	  formula (the leading '=' optional), or the JSON form
 *	  {"all"|"any": [{"field": "amount", "op": ">=", "value": 5000}, ...]}
 *	  with nested all/any groups; "field" may also be a reference such as
 *	  "{=Event:subject}".  Compiled into the same tree as formulas.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_collation.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/formatting.h"
#include "utils/jsonb.h"

#include "expr/expr_int.h"

static const struct
{
	const char *name;
	ExprOp		op;
}			cond_ops[] = {
	{"=", OP_EQ}, {"!=", OP_NE}, {">", OP_GT}, {">=", OP_GE}, {"<", OP_LT}, {"<=", OP_LE},
	{"contains", OP_CONTAINS}, {"!contains", OP_NOT_CONTAINS}, {"in", OP_IN},
	{"!in", OP_NOT_IN}, {"empty", OP_EMPTY}, {"!empty", OP_NOT_EMPTY}
};

static void
bad_condition(const char *where, const char *what)
{
	ereport(ERROR,
			(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
			 errmsg("invalid %s: %s", where, what),
			 errhint("A condition is a formula string such as \"{{amount}} >= 5000\", or "
					 "{\"all\"|\"any\": [{\"field\": \"amount\", \"op\": \">=\", \"value\": 5000}]} "
					 "with op one of = != > >= < <= contains !contains in !in empty !empty.")));
}

static ExprNode *
value_node(JsonbValue *v, const char *where)
{
	ExprNode   *n;

	if (v->type == jbvString)
		return expr_parse_text(pnstrdup(v->val.string.val, v->val.string.len), where);
	n = expr_new_node(EN_CONST, 0);
	switch (v->type)
	{
		case jbvNumeric:
			n->value.type = CRM_VAL_NUMBER;
			n->value.num = v->val.numeric;
			break;
		case jbvBool:
			n->value.type = CRM_VAL_BOOL;
			n->value.b = v->val.boolean;
			break;
		case jbvNull:
			break;
		default:
			bad_condition(where, "a value must be a scalar, or an array for in / !in");
	}
	return n;
}

static ExprNode *compile_group(JsonbContainer *jc, const char *where, int nest);

/*
 * A rule {"field", "op", "value"}, or a nested group; nest counts the groups
 * around it (each a level, so a condition nested past the limit is refused
 * before it is walked any deeper).
 */
static ExprNode *
compile_leaf(JsonbContainer *obj, const char *where, int nest)
{
	JsonbValue *field = getKeyJsonValueFromContainer(obj, "field", 5, NULL);
	JsonbValue *op = getKeyJsonValueFromContainer(obj, "op", 2, NULL);
	JsonbValue *value = getKeyJsonValueFromContainer(obj, "value", 5, NULL);
	ExprNode   *n;
	char	   *opname;
	int			i;

	check_stack_depth();
	if (getKeyJsonValueFromContainer(obj, "all", 3, NULL) != NULL ||
		getKeyJsonValueFromContainer(obj, "any", 3, NULL) != NULL)
		return compile_group(obj, where, nest);
	if (field == NULL || field->type != jbvString)
		bad_condition(where, "each element needs a \"field\" string");
	if (op == NULL || op->type != jbvString)
		bad_condition(where, "each element needs an \"op\" string");
	opname = pnstrdup(op->val.string.val, op->val.string.len);
	n = expr_new_node(EN_COND, 0);
	for (i = 0; i < lengthof(cond_ops); i++)
		if (strcmp(cond_ops[i].name, opname) == 0)
			break;
	if (i == lengthof(cond_ops))
		bad_condition(where, psprintf("unknown operator \"%s\"", opname));
	n->op = cond_ops[i].op;

	if (n->op == OP_EMPTY || n->op == OP_NOT_EMPTY)
	{
		n->nargs = 1;
		n->args = palloc(sizeof(ExprNode *));
	}
	else if (n->op == OP_IN || n->op == OP_NOT_IN)
	{
		JsonbIterator *it;
		JsonbValue	e;
		JsonbIteratorToken tok;
		List	   *vals = NIL;
		ListCell   *lc;
		int			k = 1;
		int			size = 1;

		if (value == NULL || value->type != jbvBinary || !JsonContainerIsArray(value->val.binary.data))
			bad_condition(where, psprintf("operator \"%s\" needs an array \"value\"", opname));
		it = JsonbIteratorInit(value->val.binary.data);
		while ((tok = JsonbIteratorNext(&it, &e, true)) != WJB_DONE)
			if (tok == WJB_ELEM)
			{
				ExprNode   *v = value_node(&e, where);

				expr_count_term(&size, v, where);
				vals = lappend(vals, v);
			}
		n->nargs = 1 + list_length(vals);
		n->args = palloc(sizeof(ExprNode *) * n->nargs);
		foreach(lc, vals)
			n->args[k++] = (ExprNode *) lfirst(lc);
	}
	else
	{
		if (value == NULL)
			bad_condition(where, psprintf("operator \"%s\" needs a \"value\"", opname));
		n->nargs = 2;
		n->args = palloc(sizeof(ExprNode *) * 2);
		n->args[1] = value_node(value, where);
	}
	/*
	 * "field" names a field of the item, or is a reference such as
	 * "{=Event:subject}" (a trigger's payload) or "{{contact.phone}}".
	 */
	if (field->val.string.len > 0 && field->val.string.val[0] == '{')
		n->args[0] = expr_parse_text(pnstrdup(field->val.string.val, field->val.string.len), where);
	else
		n->args[0] = expr_parse_field_path(pnstrdup(field->val.string.val, field->val.string.len), 1, where);
	return expr_finish_node(n, where);
}

/*
 * A group: its rules in one chain of "and" or "or" (one level however many
 * rules it has), evaluated without recursing once per rule.
 */
static ExprNode *
compile_group(JsonbContainer *jc, const char *where, int nest)
{
	JsonbValue *all;
	JsonbValue *any;
	JsonbValue *list;
	ExprChain	c = {NIL, NIL, NIL, 0};
	ExprNode   *acc;
	JsonbIterator *it;
	JsonbValue	e;
	JsonbIteratorToken tok;

	check_stack_depth();
	if (++nest > CRM_EXPR_MAX_DEPTH)
		expr_too_deep(where, 0);
	all = getKeyJsonValueFromContainer(jc, "all", 3, NULL);
	any = getKeyJsonValueFromContainer(jc, "any", 3, NULL);
	list = all ? all : any;
	if ((all == NULL) == (any == NULL))
		bad_condition(where, "a group has exactly one of \"all\" and \"any\"");
	if (list->type != jbvBinary || !JsonContainerIsArray(list->val.binary.data))
		bad_condition(where, "\"all\" / \"any\" must be an array");
	it = JsonbIteratorInit(list->val.binary.data);
	while ((tok = JsonbIteratorNext(&it, &e, true)) != WJB_DONE)
	{
		ExprNode   *leaf;

		if (tok != WJB_ELEM)
			continue;
		if (e.type != jbvBinary || !JsonContainerIsObject(e.val.binary.data))
			bad_condition(where, "each element of \"all\" / \"any\" must be an object");
		leaf = compile_leaf(e.val.binary.data, where, nest);
		expr_chain_add(&c, all ? OP_AND : OP_OR, 0, leaf, where);
	}
	if (c.args == NIL)
	{
		/* all of nothing holds; any of nothing does not */
		acc = expr_new_node(EN_CONST, 0);
		acc->value.type = CRM_VAL_BOOL;
		acc->value.b = all != NULL;
		return expr_nest(acc, where);
	}
	if (list_length(c.args) == 1)
		return expr_nest(expr_chain_end(&c, where), where);
	return expr_chain_end(&c, where);
}

CrmExpr *
crm_expr_compile_condition(Jsonb *cond, const char *where)
{
	CrmExpr    *e = palloc0(sizeof(CrmExpr));
	JsonbValue	v;

	e->where = pstrdup(where ? where : "condition");
	if (JB_ROOT_IS_SCALAR(cond))
	{
		char	   *s;

		if (!JsonbExtractScalar(&cond->root, &v) || v.type != jbvString)
			bad_condition(e->where, "a condition is a formula string or an object");
		s = pnstrdup(v.val.string.val, v.val.string.len);
		e->src = s[0] == '=' ? s : psprintf("=%s", s);
		e->root = expr_parse_formula(e->src, 1, e->where);
		return e;
	}
	if (!JB_ROOT_IS_OBJECT(cond))
		bad_condition(e->where, "a condition is a formula string or an object");
	e->src = JsonbToCString(NULL, &cond->root, VARSIZE(cond));
	e->root = compile_group(&cond->root, e->where, 0);
	return e;
}

static bool
is_empty(CrmValue v)
{
	if (v.type == CRM_VAL_NULL)
		return true;
	if (v.type == CRM_VAL_TEXT)
		return v.str[0] == '\0';
	if (v.type == CRM_VAL_JSON)
		return JB_ROOT_COUNT(v.json) == 0;
	return false;
}

/* Equality as the rules of a JSON condition see it (= and in). */
bool
expr_values_equal(CrmValue a, CrmValue b)
{
	bool		comparable;

	if (a.type == CRM_VAL_NULL || b.type == CRM_VAL_NULL)
		return a.type == b.type;
	return expr_compare(a, b, &comparable) == 0;
}

/* A rule of a JSON condition; depth is its own (the evaluator's count). */
CrmValue
expr_eval_condition_leaf(const ExprNode *n, CrmEvalContext *cx, const char *where, int depth)
{
	CrmValue	f;
	CrmValue	res;
	bool		r = false;
	int			i;

	check_stack_depth();
	f = expr_eval_node(n->args[0], cx, where, depth + 1);
	memset(&res, 0, sizeof(res));
	res.type = CRM_VAL_BOOL;
	switch (n->op)
	{
		case OP_EMPTY:
			r = is_empty(f);
			break;
		case OP_NOT_EMPTY:
			r = !is_empty(f);
			break;
		case OP_IN:
		case OP_NOT_IN:
			for (i = 1; i < n->nargs && !r; i++)
				r = expr_values_equal(f, expr_eval_node(n->args[i], cx, where, depth + 1));
			if (n->op == OP_NOT_IN)
				r = !r;
			break;
		case OP_CONTAINS:
		case OP_NOT_CONTAINS:
			{
				CrmValue	v = expr_eval_node(n->args[1], cx, where, depth + 1);
				char	   *hay = crm_value_to_cstring(f);
				char	   *needle = crm_value_to_cstring(v);

				hay = str_tolower(hay, strlen(hay), DEFAULT_COLLATION_OID);
				needle = str_tolower(needle, strlen(needle), DEFAULT_COLLATION_OID);
				r = f.type != CRM_VAL_NULL && strstr(hay, needle) != NULL;
				if (n->op == OP_NOT_CONTAINS)
					r = !r;
			}
			break;
		default:
			{
				CrmValue	v = expr_eval_node(n->args[1], cx, where, depth + 1);
				bool		comparable;
				int			c;

				if (f.type == CRM_VAL_NULL || v.type == CRM_VAL_NULL)
				{
					bool		both = f.type == v.type;

					r = n->op == OP_EQ ? both : n->op == OP_NE ? !both : false;
					break;
				}
				c = expr_compare(f, v, &comparable);
				r = (n->op == OP_EQ && c == 0) || (n->op == OP_NE && c != 0) ||
					(n->op == OP_LT && c < 0) || (n->op == OP_LE && c <= 0) ||
					(n->op == OP_GT && c > 0) || (n->op == OP_GE && c >= 0);
			}
			break;
	}
	res.b = r;
	return res;
}
