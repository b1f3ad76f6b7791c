/*-------------------------------------------------------------------------
 *
 * expr_explain.c
 *	  A condition taken apart for one item (crm.explain): the condition
 *	  printed from its tree, the same with the item's values in place of
 *	  its references ({{amount}} >= 5000 -> 1200 >= 5000), and the value
 *	  of each reference, comparison and function on the way.
 *
 * The walk below evaluates the tree as expr_eval.c does, in the same order
 * and with the same short cuts: an "and" / "or" chain stops at the operand
 * that decides, an "if" evaluates one branch, "in" stops at the first value
 * that matches.  What the real evaluation would not reach is printed as
 * written and never evaluated, so explaining a condition raises exactly the
 * errors testing it raises (a division by zero past a false "and" operand
 * raises none).  Operators are folded with the evaluator's own functions
 * (expr_apply_binary, expr_eval_node for functions and rules), so the
 * value explained is the value tested.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "mb/pg_wchar.h"
#include "miscadmin.h"
#include "utils/jsonb.h"

#include "expr/expr_explain.h"
#include "expr/expr_int.h"

/* Past these, the rest of a condition is evaluated without being described. */
#define EXPLAIN_MAX_TEXT	2000
#define EXPLAIN_MAX_PARTS	50
#define EXPLAIN_MAX_LITERAL 200

/*
 * Precedence levels, as expr_parse.c parses them: "not" and unary "-" are
 * one level, above the arithmetic ("not {{a}} > 1" is "(not {{a}}) > 1").
 */
#define PREC_OR		1
#define PREC_AND	2
#define PREC_NOT	8
#define PREC_CMP	4
#define PREC_CAT	5
#define PREC_ADD	6
#define PREC_MUL	7
#define PREC_NEG	8
#define PREC_ATOM	9

typedef struct Walk
{
	CrmEvalContext *cx;
	const char *where;
	StringInfoData w;			/* as written */
	StringInfoData s;			/* substituted */
	JsonbParseState *parts;
	int			nparts;
	List	   *seen;			/* texts of the references already noted */
	bool		full;			/* past the bounds: evaluate only */
} Walk;

static const char *
op_name(ExprOp op)
{
	switch (op)
	{
		case OP_ADD:
			return "+";
		case OP_SUB:
			return "-";
		case OP_MUL:
			return "*";
		case OP_DIV:
			return "/";
		case OP_CAT:
			return "&";
		case OP_EQ:
			return "=";
		case OP_NE:
			return "!=";
		case OP_LT:
			return "<";
		case OP_LE:
			return "<=";
		case OP_GT:
			return ">";
		case OP_GE:
			return ">=";
		case OP_AND:
			return "and";
		case OP_OR:
			return "or";
		case OP_NOT:
			return "not";
		case OP_NEG:
			return "-";
		case OP_CONTAINS:
			return "contains";
		case OP_NOT_CONTAINS:
			return "!contains";
		case OP_IN:
			return "in";
		case OP_NOT_IN:
			return "!in";
		case OP_EMPTY:
			return "empty";
		case OP_NOT_EMPTY:
			return "!empty";
	}
	return "?";
}

static int
node_prec(const ExprNode *n)
{
	switch (n->kind)
	{
		case EN_CHAIN:
			switch (n->ops[1])
			{
				case OP_OR:
					return PREC_OR;
				case OP_AND:
					return PREC_AND;
				case OP_CAT:
					return PREC_CAT;
				case OP_ADD:
				case OP_SUB:
					return PREC_ADD;
				default:
					return PREC_MUL;
			}
		case EN_BINARY:
		case EN_COND:
			return PREC_CMP;
		case EN_UNARY:
			return n->op == OP_NOT ? PREC_NOT : PREC_NEG;
		default:
			return PREC_ATOM;
	}
}

/* A string as a formula literal: "..." with its quotes doubled, cut when long. */
static void
append_quoted(StringInfo buf, const char *s)
{
	int			len = strlen(s);
	int			cut = len;
	const char *p;

	if (pg_mbstrlen(s) > EXPLAIN_MAX_LITERAL)
		cut = pg_mbcharcliplen(s, len, EXPLAIN_MAX_LITERAL);
	appendStringInfoChar(buf, '"');
	for (p = s; p < s + cut; p++)
	{
		if (*p == '"')
			appendStringInfoChar(buf, '"');
		appendStringInfoChar(buf, *p);
	}
	if (cut < len)
		appendStringInfoString(buf, "…");
	appendStringInfoChar(buf, '"');
}

static void
append_literal(StringInfo buf, CrmValue v)
{
	switch (v.type)
	{
		case CRM_VAL_NULL:
			appendStringInfoString(buf, "null");
			break;
		case CRM_VAL_BOOL:
			appendStringInfoString(buf, v.b ? "true" : "false");
			break;
		case CRM_VAL_NUMBER:
			appendStringInfoString(buf, crm_value_to_cstring(v));
			break;
		default:
			append_quoted(buf, crm_value_to_cstring(v));
			break;
	}
}

static void
append_ref(StringInfo buf, const ExprNode *n)
{
	if (n->kind == EN_FIELD)
		appendStringInfo(buf, "{{%s%s%s%s}}", n->custom ? "fields." : "", n->name,
						 n->sub ? "." : "", n->sub ? n->sub : "");
	else
		appendStringInfo(buf, "{=%s:%s%s%s}", n->ns, n->name,
						 n->sub ? "." : "", n->sub ? n->sub : "");
}

/* ---------- printing (what is not evaluated) ---------- */

static void print_node(StringInfo buf, const ExprNode *n, int parent_prec);

static void
print_template(StringInfo buf, const ExprNode *n)
{
	int			i;

	appendStringInfoChar(buf, '"');
	for (i = 0; i < n->nargs; i++)
	{
		const ExprNode *a = n->args[i];

		if (buf->len > EXPLAIN_MAX_TEXT)
		{
			appendStringInfoString(buf, "…");
			break;
		}

		if (a->kind == EN_CONST)
		{
			const char *p;

			for (p = crm_value_to_cstring(a->value); *p; p++)
			{
				if (*p == '"')
					appendStringInfoChar(buf, '"');
				appendStringInfoChar(buf, *p);
			}
		}
		else if (a->kind == EN_FIELD || a->kind == EN_REF)
			append_ref(buf, a);
		else
		{
			appendStringInfoString(buf, "{{=");
			print_node(buf, a, 0);
			appendStringInfoString(buf, "}}");
		}
	}
	appendStringInfoChar(buf, '"');
}

static void
print_node(StringInfo buf, const ExprNode *n, int parent_prec)
{
	int			prec = node_prec(n);
	bool		paren = prec < parent_prec;
	int			i;

	check_stack_depth();
	if (buf->len > EXPLAIN_MAX_TEXT)
	{
		appendStringInfoString(buf, "…");
		return;
	}
	if (paren)
		appendStringInfoChar(buf, '(');
	switch (n->kind)
	{
		case EN_CONST:
			append_literal(buf, n->value);
			break;
		case EN_FIELD:
		case EN_REF:
			append_ref(buf, n);
			break;
		case EN_UNARY:
			appendStringInfoString(buf, n->op == OP_NOT ? "not " : "-");
			print_node(buf, n->args[0], prec);
			break;
		case EN_BINARY:
			print_node(buf, n->args[0], prec + 1);
			appendStringInfo(buf, " %s ", op_name(n->op));
			print_node(buf, n->args[1], prec + 1);
			break;
		case EN_CHAIN:
			for (i = 0; i < n->nargs; i++)
			{
				if (i > 0)
					appendStringInfo(buf, " %s ", op_name(n->ops[i]));
				print_node(buf, n->args[i], i == 0 ? prec : prec + 1);
			}
			break;
		case EN_FUNC:
			appendStringInfo(buf, "%s(", n->name);
			for (i = 0; i < n->nargs; i++)
			{
				if (i > 0)
					appendStringInfoString(buf, ", ");
				print_node(buf, n->args[i], 0);
			}
			appendStringInfoChar(buf, ')');
			break;
		case EN_CONCAT:
			print_template(buf, n);
			break;
		case EN_COND:
			print_node(buf, n->args[0], PREC_CAT);
			appendStringInfo(buf, " %s", op_name(n->op));
			if (n->op == OP_IN || n->op == OP_NOT_IN)
			{
				appendStringInfoString(buf, " (");
				for (i = 1; i < n->nargs; i++)
				{
					if (i > 1)
						appendStringInfoString(buf, ", ");
					print_node(buf, n->args[i], 0);
				}
				appendStringInfoChar(buf, ')');
			}
			else if (n->nargs > 1)
			{
				appendStringInfoChar(buf, ' ');
				print_node(buf, n->args[1], PREC_CAT);
			}
			break;
	}
	if (paren)
		appendStringInfoChar(buf, ')');
}

/* ---------- walking (what is evaluated) ---------- */

static void
note_part(Walk *k, const ExprNode *n, int start, CrmValue v)
{
	JsonbValue	jv;
	char	   *text = pnstrdup(k->w.data + start, k->w.len - start);

	if (k->nparts >= EXPLAIN_MAX_PARTS)
		return;
	if (n->kind == EN_FIELD || n->kind == EN_REF)
	{
		ListCell   *lc;

		foreach(lc, k->seen)
			if (strcmp((char *) lfirst(lc), text) == 0)
				return;
		k->seen = lappend(k->seen, text);
	}
	k->nparts++;
	pushJsonbValue(&k->parts, WJB_BEGIN_OBJECT, NULL);
	jv.type = jbvString;
	jv.val.string.val = "expr";
	jv.val.string.len = 4;
	pushJsonbValue(&k->parts, WJB_KEY, &jv);
	jv.val.string.val = text;
	jv.val.string.len = strlen(text);
	pushJsonbValue(&k->parts, WJB_VALUE, &jv);
	jv.val.string.val = "value";
	jv.val.string.len = 5;
	pushJsonbValue(&k->parts, WJB_KEY, &jv);
	crm_value_to_jsonb_value(v, &jv);
	pushJsonbValue(&k->parts, WJB_VALUE, &jv);
	pushJsonbValue(&k->parts, WJB_END_OBJECT, NULL);
}

/* Past the bounds: the rest is evaluated, not described (an ellipsis says so). */
static bool
past_bounds(Walk *k)
{
	if (!k->full && (k->w.len > EXPLAIN_MAX_TEXT || k->s.len > EXPLAIN_MAX_TEXT ||
					 k->nparts >= EXPLAIN_MAX_PARTS))
	{
		k->full = true;
		appendStringInfoString(&k->w, "…");
		appendStringInfoString(&k->s, "…");
	}
	return k->full;
}

/* Appends the same text to both renderings, within the bounds. */
static void
both(Walk *k, const char *s)
{
	if (past_bounds(k))
		return;
	appendStringInfoString(&k->w, s);
	appendStringInfoString(&k->s, s);
}

/* A node the evaluation does not reach: as written, in both renderings. */
static void
unevaluated(Walk *k, const ExprNode *n, int parent_prec)
{
	StringInfoData buf;

	if (past_bounds(k))
		return;
	initStringInfo(&buf);
	print_node(&buf, n, parent_prec);
	both(k, buf.data);
	pfree(buf.data);
}

static CrmValue walk(Walk *k, const ExprNode *n, int parent_prec, int depth);

static CrmValue
walk_chain(Walk *k, const ExprNode *n, int prec, int depth)
{
	CrmValue	acc;
	int			i;

	if (n->ops[1] == OP_AND || n->ops[1] == OP_OR)
	{
		bool		decides = n->ops[1] == OP_OR;
		bool		decided = false;

		memset(&acc, 0, sizeof(acc));
		acc.type = CRM_VAL_BOOL;
		for (i = 0; i < n->nargs; i++)
		{
			if (i > 0)
				both(k, n->ops[1] == OP_AND ? " and " : " or ");
			if (decided)
				unevaluated(k, n->args[i], prec + 1);
			else if (expr_value_true(walk(k, n->args[i], i == 0 ? prec : prec + 1,
										  depth + 1)) == decides)
				decided = true;
		}
		acc.b = decided ? decides : !decides;
		return acc;
	}
	if (n->ops[1] == OP_CAT)
	{
		StringInfoData buf;

		initStringInfo(&buf);
		for (i = 0; i < n->nargs; i++)
		{
			if (i > 0)
				both(k, " & ");
			appendStringInfoString(&buf, crm_value_to_cstring(walk(k, n->args[i],
																   i == 0 ? prec : prec + 1,
																   depth + 1)));
		}
		return expr_text_value(buf.data);
	}
	acc = walk(k, n->args[0], prec, depth + 1);
	for (i = 1; i < n->nargs; i++)
	{
		CrmValue	r;

		both(k, psprintf(" %s ", op_name(n->ops[i])));
		r = walk(k, n->args[i], prec + 1, depth + 1);
		acc = expr_apply_binary(n->ops[i], acc, r, n->opos[i], k->where);
	}
	return acc;
}

static CrmValue
walk_func(Walk *k, const ExprNode *n, int depth)
{
	int			i;
	CrmValue	v;

	both(k, psprintf("%s(", n->name));
	if (strcmp(n->name, "if") == 0 && n->nargs == 3)
	{
		bool		cond = expr_value_true(walk(k, n->args[0], 0, depth + 1));

		both(k, ", ");
		if (cond)
		{
			v = walk(k, n->args[1], 0, depth + 1);
			both(k, ", ");
			unevaluated(k, n->args[2], 0);
		}
		else
		{
			unevaluated(k, n->args[1], 0);
			both(k, ", ");
			v = walk(k, n->args[2], 0, depth + 1);
		}
		both(k, ")");
		return v;
	}
	for (i = 0; i < n->nargs; i++)
	{
		if (i > 0)
			both(k, ", ");
		(void) walk(k, n->args[i], 0, depth + 1);
	}
	both(k, ")");
	/* the function itself, by the evaluator (its arguments are cached reads) */
	return expr_eval_node(n, k->cx, k->where, depth);
}

static CrmValue
walk_rule(Walk *k, const ExprNode *n, int depth)
{
	CrmValue	f;
	int			i;

	f = walk(k, n->args[0], PREC_CAT, depth + 1);
	both(k, psprintf(" %s", op_name(n->op)));
	if (n->op == OP_IN || n->op == OP_NOT_IN)
	{
		bool		found = false;
		CrmValue	res;

		both(k, " (");
		for (i = 1; i < n->nargs; i++)
		{
			if (i > 1)
				both(k, ", ");
			if (found)
				unevaluated(k, n->args[i], 0);
			else
				found = expr_values_equal(f, walk(k, n->args[i], 0, depth + 1));
		}
		both(k, ")");
		memset(&res, 0, sizeof(res));
		res.type = CRM_VAL_BOOL;
		res.b = n->op == OP_IN ? found : !found;
		return res;
	}
	if (n->nargs > 1)
	{
		both(k, " ");
		(void) walk(k, n->args[1], PREC_CAT, depth + 1);
	}
	/* the rule itself, by the evaluator: the same reads, cached */
	return expr_eval_condition_leaf(n, k->cx, k->where, depth);
}

static CrmValue
walk(Walk *k, const ExprNode *n, int parent_prec, int depth)
{
	int			prec = node_prec(n);
	bool		paren = prec < parent_prec;
	int			start;
	CrmValue	v;

	check_stack_depth();
	CHECK_FOR_INTERRUPTS();
	if (depth > CRM_EXPR_MAX_DEPTH)
		expr_too_deep(k->where, n->pos);
	if (past_bounds(k))
		return expr_eval_node(n, k->cx, k->where, depth);

	if (paren)
		both(k, "(");
	start = k->w.len;
	switch (n->kind)
	{
		case EN_CONST:
			v = n->value;
			append_literal(&k->w, v);
			append_literal(&k->s, v);
			break;
		case EN_FIELD:
		case EN_REF:
			v = expr_eval_node(n, k->cx, k->where, depth);
			append_ref(&k->w, n);
			append_literal(&k->s, v);
			note_part(k, n, start, v);
			break;
		case EN_UNARY:
			both(k, n->op == OP_NOT ? "not " : "-");
			v = walk(k, n->args[0], prec, depth + 1);
			if (n->op == OP_NOT)
			{
				bool		b = !expr_value_true(v);

				memset(&v, 0, sizeof(v));
				v.type = CRM_VAL_BOOL;
				v.b = b;
				note_part(k, n, start, v);
			}
			else
				v = expr_eval_node(n, k->cx, k->where, depth);
			break;
		case EN_BINARY:
			{
				CrmValue	l = walk(k, n->args[0], prec + 1, depth + 1);
				CrmValue	r;

				both(k, psprintf(" %s ", op_name(n->op)));
				r = walk(k, n->args[1], prec + 1, depth + 1);
				v = expr_apply_binary(n->op, l, r, n->pos, k->where);
				note_part(k, n, start, v);
			}
			break;
		case EN_CHAIN:
			v = walk_chain(k, n, prec, depth);
			if (n->ops[1] == OP_AND || n->ops[1] == OP_OR)
				note_part(k, n, start, v);
			break;
		case EN_FUNC:
			v = walk_func(k, n, depth);
			note_part(k, n, start, v);
			break;
		case EN_CONCAT:
			v = expr_eval_node(n, k->cx, k->where, depth);
			print_template(&k->w, n);
			append_literal(&k->s, v);
			note_part(k, n, start, v);
			break;
		case EN_COND:
			v = walk_rule(k, n, depth);
			note_part(k, n, start, v);
			break;
		default:
			v = expr_eval_node(n, k->cx, k->where, depth);
			break;
	}
	if (paren)
		both(k, ")");
	return v;
}

void
crm_expr_explain(const CrmExpr *e, CrmEvalContext *cx, CrmExprExplained *out)
{
	Walk		k;
	CrmValue	v;

	memset(&k, 0, sizeof(k));
	k.cx = cx;
	k.where = e->where;
	initStringInfo(&k.w);
	initStringInfo(&k.s);
	pushJsonbValue(&k.parts, WJB_BEGIN_ARRAY, NULL);
	v = walk(&k, e->root, 0, 0);
	out->parts = JsonbValueToJsonb(pushJsonbValue(&k.parts, WJB_END_ARRAY, NULL));
	out->written = k.w.data;
	out->substituted = k.s.data;
	out->value = expr_value_true(v);
}

const char *
crm_expr_source(const CrmExpr *e)
{
	return e->src;
}
