/*-------------------------------------------------------------------------
 *
 * expr_parse.c
 *	  Parsing templates and formulas (SPEC §6) into a tree, once, when a
 *	  rule is saved or loaded; checking their field references.
 *
 * A text is a template unless it starts with '=' (then it is a formula).
 * Templates hold literal text and references: {{field}}, {{related.field}},
 * {{fields.UF_X}}, {{=formula}}, {=Document:FIELD}, {=Variable:x},
 * {=Constant:x}, {=Parameter:x}, {=Robot:NAME.key}, {=Activity:NAME.key}, {=Event:key}.
 * Formulas: literals, references, & + - * / = == != <> < <= > >= and or not,
 * parentheses and function calls.  Errors give the 1-based position.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <ctype.h>

#include "catalog/namespace.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "mb/pg_wchar.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/formatting.h"
#include "utils/lsyscache.h"
#include "utils/numeric.h"

#include "expr/expr_int.h"
#include "core/rule_cache.h"
#include "core/spi_util.h"

ExprNode *
expr_new_node(ExprNodeKind kind, int pos)
{
	ExprNode   *n = palloc0(sizeof(ExprNode));

	n->kind = kind;
	n->pos = pos;
	n->size = 1;
	return n;
}

CrmValue
expr_text_value(const char *s)
{
	CrmValue	v;

	memset(&v, 0, sizeof(v));
	v.type = CRM_VAL_TEXT;
	v.str = (char *) s;
	return v;
}

/*
 * The source as an error's detail shows it: whole when short, else about
 * 160 bytes around the 1-based position, cut at character boundaries, so a
 * huge text does not become a huge message.
 */
static const char *
echo_source(const char *src, int pos)
{
	size_t		len = strlen(src);
	size_t		start = 0;
	size_t		clip;

	if (len <= 200)
		return src;
	if (pos > 60)
	{
		/* the first character boundary at or after pos - 60 */
		const char *q = src;

		while (*q && (size_t) (q - src) < (size_t) (pos - 60))
			q += pg_mblen(q);
		start = q - src;
	}
	clip = pg_mbcliplen(src + start, len - start, 160);
	return psprintf("%s%s%s", start > 0 ? "..." : "", pnstrdup(src + start, clip),
					start + clip < len ? "..." : "");
}

/* The (possibly multibyte) character at s, for messages. */
static char *
char_at(const char *s)
{
	return pnstrdup(s, pg_mblen(s));
}

static void
syntax_error(const char *where, const char *src, int pos, const char *what)
{
	ereport(ERROR,
			(errcode(ERRCODE_SYNTAX_ERROR),
			 errmsg("%s in %s at position %d", what, where, pos),
			 errdetail("Expression: %s", echo_source(src, pos)),
			 errhint("Formulas start with \"=\"; fields are written {{field}}, strings in double quotes.")));
}

/* ---------- limits ---------- */

void
expr_too_deep(const char *where, int pos)
{
	ereport(ERROR,
			(errcode(ERRCODE_STATEMENT_TOO_COMPLEX),
			 errmsg("%s is nested more than %d levels deep", where, CRM_EXPR_MAX_DEPTH),
			 pos > 0 ?
			 errdetail("The limit is passed at position %d.  Each pair of parentheses, function call, operator, condition group and embedded formula is a level.", pos) :
			 errdetail("Each pair of parentheses, function call, operator, condition group and embedded formula is a level."),
			 errhint("Flatten it: a chain of one operator (1 + 2 + 3, a & b & c) or the rules of one \"all\" / \"any\" group are one level however long.")));
}

void
expr_too_long(const char *where)
{
	ereport(ERROR,
			(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
			 errmsg("%s has more than %d terms", where, CRM_EXPR_MAX_TERMS),
			 errdetail("Terms are literals, references, operators, function calls and condition rules."),
			 errhint("Split it into several rules or expressions.")));
}

/* Adds n's terms to *size, stopping at the limit before anything more is built. */
void
expr_count_term(int *size, const ExprNode *n, const char *where)
{
	*size += n->size;
	if (*size > CRM_EXPR_MAX_TERMS)
		expr_too_long(where);
}

/* Sets the depth and size of a node from its arguments, within the limits. */
ExprNode *
expr_finish_node(ExprNode *n, const char *where)
{
	int			depth = 0;
	int			size = 1;
	int			i;

	for (i = 0; i < n->nargs; i++)
	{
		depth = Max(depth, n->args[i]->depth);
		expr_count_term(&size, n->args[i], where);
	}
	n->depth = depth + 1;
	n->size = size;
	if (n->depth > CRM_EXPR_MAX_DEPTH)
		expr_too_deep(where, n->pos);
	return n;
}

/* One more level around n (parentheses, a group of one). */
ExprNode *
expr_nest(ExprNode *n, const char *where)
{
	if (++n->depth > CRM_EXPR_MAX_DEPTH)
		expr_too_deep(where, n->pos);
	return n;
}

void
expr_chain_add(ExprChain *c, ExprOp op, int pos, ExprNode *arg, const char *where)
{
	expr_count_term(&c->size, arg, where);
	c->args = lappend(c->args, arg);
	c->ops = lappend_int(c->ops, (int) op);
	c->opos = lappend_int(c->opos, pos);
}

/* The chain as one node (its only operand when there is one). */
ExprNode *
expr_chain_end(ExprChain *c, const char *where)
{
	ExprNode   *n;
	int			k;

	Assert(c->args != NIL);
	if (list_length(c->args) == 1)
		return (ExprNode *) linitial(c->args);
	n = expr_new_node(EN_CHAIN, list_nth_int(c->opos, 1));
	n->nargs = list_length(c->args);
	n->args = palloc(sizeof(ExprNode *) * n->nargs);
	n->ops = palloc(sizeof(ExprOp) * n->nargs);
	n->opos = palloc(sizeof(int) * n->nargs);
	for (k = 0; k < n->nargs; k++)
	{
		n->args[k] = (ExprNode *) list_nth(c->args, k);
		n->ops[k] = (ExprOp) list_nth_int(c->ops, k);
		n->opos[k] = list_nth_int(c->opos, k);
	}
	n->op = n->ops[1];
	list_free(c->args);
	list_free(c->ops);
	list_free(c->opos);
	return expr_finish_node(n, where);
}

/* ---------- field paths ---------- */

ExprNode *
expr_parse_field_path(const char *path, int pos, const char *where)
{
	ExprNode   *n = expr_new_node(EN_FIELD, pos);
	char	   *p = pstrdup(path);
	char	   *dot;
	char	   *s;

	/* trim */
	while (isspace((unsigned char) *p))
		p++;
	for (s = p + strlen(p); s > p && isspace((unsigned char) s[-1]); s--)
		s[-1] = '\0';
	if (*p == '\0')
		syntax_error(where, path, pos, "empty field reference");
	for (s = p; *s; s++)
		if (!(isalnum((unsigned char) *s) || *s == '_' || *s == '.'))
			syntax_error(where, path, pos, psprintf("invalid character \"%s\" in field reference", char_at(s)));
	dot = strchr(p, '.');
	if (dot)
	{
		*dot = '\0';
		n->name = p;
		n->sub = dot + 1;
		if (strchr(n->sub, '.') || *n->sub == '\0' || *n->name == '\0')
			syntax_error(where, path, pos, "a field path has at most two parts");
		if (pg_strcasecmp(n->name, "fields") == 0)
		{
			n->name = n->sub;
			n->sub = NULL;
			n->custom = true;
		}
	}
	else
		n->name = p;
	return n;
}

/* {=NS:name[.key]} */
static ExprNode *
parse_ns_ref(const char *body, int pos, const char *where, const char *src)
{
	const char *colon = strchr(body, ':');
	char	   *ns;
	char	   *rest;
	char	   *dot;
	ExprNode   *n;

	if (colon == NULL)
		syntax_error(where, src, pos, "a reference needs a namespace, as in {=Document:TITLE}");
	ns = pnstrdup(body, colon - body);
	rest = pstrdup(colon + 1);
	if (pg_strcasecmp(ns, "Document") == 0)
		return expr_parse_field_path(rest, pos, where);
	if (pg_strcasecmp(ns, "Variable") != 0 && pg_strcasecmp(ns, "Constant") != 0 &&
		pg_strcasecmp(ns, "Parameter") != 0 &&
		pg_strcasecmp(ns, "Robot") != 0 && pg_strcasecmp(ns, "Activity") != 0 &&
		pg_strcasecmp(ns, "Event") != 0)
		syntax_error(where, src, pos,
					 psprintf("unknown namespace \"%s\" (Document, Variable, Constant, Parameter, Robot, Activity, Event)", ns));
	n = expr_new_node(EN_REF, pos);
	n->ns = pstrdup(ns);
	n->ns[0] = toupper((unsigned char) n->ns[0]);
	for (char *q = n->ns + 1; *q; q++)
		*q = tolower((unsigned char) *q);
	dot = strchr(rest, '.');
	if (dot)
	{
		*dot = '\0';
		n->sub = dot + 1;
	}
	n->name = rest;
	if (*n->name == '\0')
		syntax_error(where, src, pos, "empty reference name");
	if ((strcmp(n->ns, "Robot") == 0 || strcmp(n->ns, "Activity") == 0) && n->sub == NULL)
		syntax_error(where, src, pos, psprintf("{=%s:NAME.key} needs the output key", n->ns));
	return n;
}

/* ---------- formulas: a small recursive-descent parser ---------- */

typedef struct Parser
{
	const char *src;			/* the whole text (for messages) */
	const char *s;				/* the formula */
	int			i;
	int			offset;			/* position of s[0] in src, 0-based */
	const char *where;
	int			nest;			/* open parentheses, function calls, unary operators */
} Parser;

static ExprNode *parse_or(Parser *p);

static void
skip_ws(Parser *p)
{
	while (isspace((unsigned char) p->s[p->i]))
		p->i++;
}

static int
ppos(Parser *p)
{
	return p->offset + p->i + 1;
}

static bool
accept(Parser *p, const char *tok)
{
	size_t		len = strlen(tok);

	skip_ws(p);
	if (strncmp(p->s + p->i, tok, len) == 0)
	{
		p->i += len;
		return true;
	}
	return false;
}

static bool
accept_word(Parser *p, const char *word)
{
	size_t		len = strlen(word);

	skip_ws(p);
	if (pg_strncasecmp(p->s + p->i, word, len) == 0 &&
		!isalnum((unsigned char) p->s[p->i + len]) && p->s[p->i + len] != '_')
	{
		p->i += len;
		return true;
	}
	return false;
}

/*
 * Entering a construct that nests (and recurses): each adds a level to the
 * tree being built, so more open ones than the limit can never compile.
 */
static void
enter(Parser *p, int pos)
{
	check_stack_depth();
	if (++p->nest > CRM_EXPR_MAX_DEPTH)
		expr_too_deep(p->where, pos);
}

static void
leave(Parser *p)
{
	p->nest--;
}

static ExprNode *
binary(Parser *p, ExprOp op, ExprNode *l, ExprNode *r, int pos)
{
	ExprNode   *n = expr_new_node(EN_BINARY, pos);

	n->op = op;
	n->nargs = 2;
	n->args = palloc(sizeof(ExprNode *) * 2);
	n->args[0] = l;
	n->args[1] = r;
	return expr_finish_node(n, p->where);
}

/* Known functions and their arity (min, max; -1 = any). */
static const struct
{
	const char *name;
	int			min;
	int			max;
}			functions[] = {
	{"if", 3, 3}, {"concat", 0, -1}, {"upper", 1, 1}, {"lower", 1, 1},
	{"substr", 2, 3}, {"length", 1, 1}, {"trim", 1, 1}, {"round", 1, 2},
	{"abs", 1, 1}, {"min", 1, -1}, {"max", 1, -1}, {"dateadd", 2, 2},
	{"datediff", 2, 3}, {"date", 1, 1}, {"now", 0, 0}, {"today", 0, 0},
	{"number", 1, 1}
};

static ExprNode *
parse_primary(Parser *p)
{
	int			start;
	int			pos;

	skip_ws(p);
	start = p->i;
	pos = ppos(p);

	if (p->s[p->i] == '\0')
		syntax_error(p->where, p->src, pos, "unexpected end of formula");

	if (accept(p, "("))
	{
		ExprNode   *n;

		enter(p, pos);
		n = parse_or(p);
		if (!accept(p, ")"))
			syntax_error(p->where, p->src, ppos(p), "missing \")\"");
		leave(p);
		return expr_nest(n, p->where);
	}
	if (p->s[p->i] == '"' || p->s[p->i] == '\'')
	{
		char		q = p->s[p->i++];
		StringInfoData buf;
		ExprNode   *n;

		initStringInfo(&buf);
		for (;;)
		{
			if (p->s[p->i] == '\0')
				syntax_error(p->where, p->src, pos, "unterminated string");
			if (p->s[p->i] == q)
			{
				if (p->s[p->i + 1] == q)
				{
					appendStringInfoChar(&buf, q);
					p->i += 2;
					continue;
				}
				p->i++;
				break;
			}
			appendStringInfoChar(&buf, p->s[p->i++]);
		}
		n = expr_new_node(EN_CONST, pos);
		n->value = expr_text_value(buf.data);
		return n;
	}
	if (isdigit((unsigned char) p->s[p->i]) ||
		(p->s[p->i] == '.' && isdigit((unsigned char) p->s[p->i + 1])))
	{
		ExprNode   *n;
		char	   *num;

		while (isdigit((unsigned char) p->s[p->i]))
			p->i++;
		if (p->s[p->i] == '.')
		{
			p->i++;
			while (isdigit((unsigned char) p->s[p->i]))
				p->i++;
		}
		num = pnstrdup(p->s + start, p->i - start);
		n = expr_new_node(EN_CONST, pos);
		n->value.type = CRM_VAL_NUMBER;
		n->value.num = DatumGetNumeric(DirectFunctionCall3(numeric_in, CStringGetDatum(num),
														   ObjectIdGetDatum(InvalidOid),
														   Int32GetDatum(-1)));
		return n;
	}
	if (strncmp(p->s + p->i, "{{", 2) == 0)
	{
		const char *end = strstr(p->s + p->i + 2, "}}");
		char	   *inner;

		if (end == NULL)
			syntax_error(p->where, p->src, pos, "unterminated {{ reference");
		inner = pnstrdup(p->s + p->i + 2, end - (p->s + p->i + 2));
		p->i = end - p->s + 2;
		return expr_parse_field_path(inner, pos, p->where);
	}
	if (strncmp(p->s + p->i, "{=", 2) == 0)
	{
		const char *end = strchr(p->s + p->i + 2, '}');
		char	   *inner;

		if (end == NULL)
			syntax_error(p->where, p->src, pos, "unterminated {= reference");
		inner = pnstrdup(p->s + p->i + 2, end - (p->s + p->i + 2));
		p->i = end - p->s + 1;
		return parse_ns_ref(inner, pos, p->where, p->src);
	}
	if (isalpha((unsigned char) p->s[p->i]) || p->s[p->i] == '_')
	{
		char	   *word;
		ExprNode   *n;
		int			f;
		List	   *args = NIL;
		ListCell   *lc;
		int			k = 0;
		int			size = 1;

		while (isalnum((unsigned char) p->s[p->i]) || p->s[p->i] == '_')
			p->i++;
		word = pnstrdup(p->s + start, p->i - start);
		if (pg_strcasecmp(word, "true") == 0 || pg_strcasecmp(word, "false") == 0)
		{
			n = expr_new_node(EN_CONST, pos);
			n->value.type = CRM_VAL_BOOL;
			n->value.b = pg_strcasecmp(word, "true") == 0;
			return n;
		}
		if (pg_strcasecmp(word, "null") == 0)
			return expr_new_node(EN_CONST, pos);
		if (!accept(p, "("))
			syntax_error(p->where, p->src, pos,
						 psprintf("unknown word \"%s\" (fields are written {{%s}})", word, word));
		for (f = 0; f < lengthof(functions); f++)
			if (pg_strcasecmp(functions[f].name, word) == 0)
				break;
		if (f == lengthof(functions))
			ereport(ERROR,
					(errcode(ERRCODE_UNDEFINED_FUNCTION),
					 errmsg("unknown function \"%s\" in %s at position %d", word, p->where, pos),
					 errdetail("Expression: %s", p->src),
					 errhint("Functions: if, concat, upper, lower, substr, length, trim, round, abs, min, max, dateadd, datediff, date, now, today, number.")));
		enter(p, pos);
		if (!accept(p, ")"))
		{
			do
			{
				ExprNode   *arg = parse_or(p);

				expr_count_term(&size, arg, p->where);
				args = lappend(args, arg);
			} while (accept(p, ","));
			if (!accept(p, ")"))
				syntax_error(p->where, p->src, ppos(p), "missing \")\" after function arguments");
		}
		leave(p);
		if (list_length(args) < functions[f].min ||
			(functions[f].max >= 0 && list_length(args) > functions[f].max))
			ereport(ERROR,
					(errcode(ERRCODE_SYNTAX_ERROR),
					 errmsg("function \"%s\" takes %d%s argument(s), not %d, in %s at position %d",
							functions[f].name, functions[f].min,
							functions[f].max < 0 ? " or more" :
							functions[f].max != functions[f].min ? psprintf(" to %d", functions[f].max) : "",
							list_length(args), p->where, pos),
					 errdetail("Expression: %s", p->src)));
		n = expr_new_node(EN_FUNC, pos);
		n->name = pstrdup(functions[f].name);
		n->nargs = list_length(args);
		n->args = palloc(sizeof(ExprNode *) * Max(n->nargs, 1));
		foreach(lc, args)
			n->args[k++] = (ExprNode *) lfirst(lc);
		return expr_finish_node(n, p->where);
	}
	syntax_error(p->where, p->src, pos, psprintf("unexpected \"%s\"", char_at(p->s + p->i)));
	return NULL;				/* keep compiler quiet */
}

static ExprNode *
parse_unary(Parser *p)
{
	int			pos;
	ExprOp		op;
	ExprNode   *n;

	skip_ws(p);
	pos = ppos(p);
	if (accept(p, "-"))
		op = OP_NEG;
	else if (accept_word(p, "not") || (p->s[p->i] == '!' && p->s[p->i + 1] != '=' && accept(p, "!")))
		op = OP_NOT;
	else
		return parse_primary(p);
	enter(p, pos);
	n = expr_new_node(EN_UNARY, pos);
	n->op = op;
	n->nargs = 1;
	n->args = palloc(sizeof(ExprNode *));
	n->args[0] = parse_unary(p);
	leave(p);
	return expr_finish_node(n, p->where);
}

/*
 * Operators of one precedence level make one chain node, so "1 + 1 + ..."
 * neither nests nor recurses per operand.
 */
static ExprNode *
parse_mul(Parser *p)
{
	ExprChain	c = {NIL, NIL, NIL, 0};

	expr_chain_add(&c, OP_MUL, 0, parse_unary(p), p->where);
	for (;;)
	{
		int			pos = (skip_ws(p), ppos(p));

		if (accept(p, "*"))
			expr_chain_add(&c, OP_MUL, pos, parse_unary(p), p->where);
		else if (accept(p, "/"))
			expr_chain_add(&c, OP_DIV, pos, parse_unary(p), p->where);
		else
			return expr_chain_end(&c, p->where);
	}
}

static ExprNode *
parse_add(Parser *p)
{
	ExprChain	c = {NIL, NIL, NIL, 0};

	expr_chain_add(&c, OP_ADD, 0, parse_mul(p), p->where);
	for (;;)
	{
		int			pos = (skip_ws(p), ppos(p));

		if (accept(p, "+"))
			expr_chain_add(&c, OP_ADD, pos, parse_mul(p), p->where);
		else if (accept(p, "-"))
			expr_chain_add(&c, OP_SUB, pos, parse_mul(p), p->where);
		else
			return expr_chain_end(&c, p->where);
	}
}

static ExprNode *
parse_cat(Parser *p)
{
	ExprChain	c = {NIL, NIL, NIL, 0};

	expr_chain_add(&c, OP_CAT, 0, parse_add(p), p->where);
	for (;;)
	{
		int			pos = (skip_ws(p), ppos(p));

		if (p->s[p->i] == '&' && p->s[p->i + 1] != '&' && accept(p, "&"))
			expr_chain_add(&c, OP_CAT, pos, parse_add(p), p->where);
		else
			return expr_chain_end(&c, p->where);
	}
}

static ExprNode *
parse_cmp(Parser *p)
{
	ExprNode   *l = parse_cat(p);
	int			pos = (skip_ws(p), ppos(p));

	if (accept(p, "==") || accept(p, "="))
		return binary(p, OP_EQ, l, parse_cat(p), pos);
	if (accept(p, "!=") || accept(p, "<>"))
		return binary(p, OP_NE, l, parse_cat(p), pos);
	if (accept(p, "<="))
		return binary(p, OP_LE, l, parse_cat(p), pos);
	if (accept(p, ">="))
		return binary(p, OP_GE, l, parse_cat(p), pos);
	if (accept(p, "<"))
		return binary(p, OP_LT, l, parse_cat(p), pos);
	if (accept(p, ">"))
		return binary(p, OP_GT, l, parse_cat(p), pos);
	return l;
}

static ExprNode *
parse_and(Parser *p)
{
	ExprChain	c = {NIL, NIL, NIL, 0};

	expr_chain_add(&c, OP_AND, 0, parse_cmp(p), p->where);
	for (;;)
	{
		int			pos = (skip_ws(p), ppos(p));

		if (accept_word(p, "and") || accept(p, "&&"))
			expr_chain_add(&c, OP_AND, pos, parse_cmp(p), p->where);
		else
			return expr_chain_end(&c, p->where);
	}
}

static ExprNode *
parse_or(Parser *p)
{
	ExprChain	c = {NIL, NIL, NIL, 0};

	check_stack_depth();
	expr_chain_add(&c, OP_OR, 0, parse_and(p), p->where);
	for (;;)
	{
		int			pos = (skip_ws(p), ppos(p));

		if (accept_word(p, "or") || accept(p, "||"))
			expr_chain_add(&c, OP_OR, pos, parse_and(p), p->where);
		else
			return expr_chain_end(&c, p->where);
	}
}

/* Parses src + offset (after the '=') as a whole formula. */
ExprNode *
expr_parse_formula(const char *src, int offset, const char *where)
{
	Parser		p;
	ExprNode   *n;

	p.src = src;
	p.s = src + offset;
	p.i = 0;
	p.offset = offset;
	p.where = where;
	p.nest = 0;
	n = parse_or(&p);
	skip_ws(&p);
	if (p.s[p.i] != '\0')
		syntax_error(where, src, ppos(&p), psprintf("unexpected \"%s\"", char_at(p.s + p.i)));
	return n;
}

/* ---------- templates ---------- */

ExprNode *
expr_parse_text(const char *src, const char *where)
{
	ExprNode   *t;
	List	   *parts = NIL;
	StringInfoData lit;
	const char *s = src;
	ListCell   *lc;
	int			k = 0;
	int			size = 1;
	char	   *copy = NULL;

	if (src[0] == '=')
		return expr_parse_formula(src, 1, where);

	initStringInfo(&lit);
	while (*s)
	{
		if (s[0] == '{' && (s[1] == '{' || s[1] == '='))
		{
			int			pos = s - src + 1;
			ExprNode   *ref;

			if (lit.len > 0)
			{
				ExprNode   *c = expr_new_node(EN_CONST, pos);

				c->value = expr_text_value(pstrdup(lit.data));
				expr_count_term(&size, c, where);
				parts = lappend(parts, c);
				resetStringInfo(&lit);
			}
			if (s[1] == '{')
			{
				const char *end = strstr(s + 2, "}}");
				char	   *inner;

				if (s[2] == '=')
				{
					/* an embedded formula may itself hold {{field}}: match nesting */
					const char *q = s + 2;
					int			depth = 1;

					end = NULL;
					while (*q)
					{
						if (q[0] == '{' && q[1] == '{')
						{
							depth++;
							q += 2;
						}
						else if (q[0] == '}' && q[1] == '}')
						{
							if (--depth == 0)
							{
								end = q;
								break;
							}
							q += 2;
						}
						else
							q++;
					}
				}
				if (end == NULL)
					syntax_error(where, src, pos, "unterminated {{ reference");
				inner = pnstrdup(s + 2, end - (s + 2));
				if (inner[0] == '=')
				{
					/*
					 * An embedded formula: parsed in the context of the whole
					 * text (for positions), ended where its "}}" starts.  One
					 * copy serves every formula of the text.
					 */
					if (copy == NULL)
						copy = pstrdup(src);
					copy[end - src] = '\0';
					ref = expr_parse_formula(copy, (s + 3) - src, where);
					copy[end - src] = '}';
				}
				else
					ref = expr_parse_field_path(inner, pos, where);
				/* the template around it is one more level */
				if (ref->depth >= CRM_EXPR_MAX_DEPTH)
					expr_too_deep(where, pos);
				s = end + 2;
			}
			else
			{
				const char *end = strchr(s + 2, '}');

				if (end == NULL)
					syntax_error(where, src, pos, "unterminated {= reference");
				ref = parse_ns_ref(pnstrdup(s + 2, end - (s + 2)), pos, where, src);
				s = end + 1;
			}
			expr_count_term(&size, ref, where);
			parts = lappend(parts, ref);
			continue;
		}
		appendStringInfoChar(&lit, *s++);
	}
	if (lit.len > 0 || parts == NIL)
	{
		ExprNode   *c = expr_new_node(EN_CONST, 1);

		c->value = expr_text_value(pstrdup(lit.data));
		parts = lappend(parts, c);
	}
	if (list_length(parts) == 1 && ((ExprNode *) linitial(parts))->kind == EN_CONST)
		return (ExprNode *) linitial(parts);
	t = expr_new_node(EN_CONCAT, 1);
	t->nargs = list_length(parts);
	t->args = palloc(sizeof(ExprNode *) * t->nargs);
	foreach(lc, parts)
		t->args[k++] = (ExprNode *) lfirst(lc);
	return expr_finish_node(t, where);
}

CrmExpr *
crm_expr_compile_text(const char *src, const char *where)
{
	CrmExpr    *e = palloc0(sizeof(CrmExpr));

	e->src = pstrdup(src ? src : "");
	e->where = pstrdup(where ? where : "expression");
	e->root = expr_parse_text(e->src, e->where);
	e->constant = e->root->kind == EN_CONST && e->src[0] != '=';
	return e;
}

bool
crm_expr_is_constant(const CrmExpr *e)
{
	return e->constant;
}

/* ---------- checking field references ---------- */

/* Related records a field path may name, and the link column they need. */
static const struct
{
	const char *name;
	const char *link;
	const char *table;
}			relations[] = {
	{"responsible", "responsible_id", "user"},
	{"created_by", "created_by", "user"},
	{"updated_by", "updated_by", "user"},
	{"contact", "contact_id", "contact"},
	{"company", "company_id", "company"},
	{"stage", "stage_id", "stage"},
	{"lead", "lead_id", "lead"},
	{"deal", "deal_id", "deal"},
	{"quote", "quote_id", "quote"}
};

int			expr_relation_index(const char *name);

int
expr_relation_index(const char *name)
{
	int			i;

	for (i = 0; i < lengthof(relations); i++)
		if (pg_strcasecmp(relations[i].name, name) == 0)
			return i;
	return -1;
}

const char *expr_relation_link(int i);
const char *expr_relation_table(int i);

const char *
expr_relation_link(int i)
{
	return relations[i].link;
}

const char *
expr_relation_table(int i)
{
	return relations[i].table;
}

static bool
has_column(const char *table, const char *column)
{
	Oid			nsp = get_namespace_oid("crm", false);
	Oid			relid = get_relname_relid(table, nsp);
	char	   *lower = asc_tolower(column, strlen(column));

	return OidIsValid(relid) && get_attnum(relid, lower) != InvalidAttrNumber;
}

static bool
custom_field_registered(const char *entity_type, const char *code)
{
	static SPIPlanPtr plan = NULL;
	Oid			types[2] = {TEXTOID, TEXTOID};
	Datum		vals[2];
	bool		found;

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	vals[0] = CStringGetTextDatum(entity_type);
	vals[1] = CStringGetTextDatum(code);
	crm_exec(crm_plan(&plan,
					  "SELECT 1 FROM crm.user_field WHERE entity_type = $1 AND upper(code) = upper($2)",
					  2, types), vals, NULL, true, 1);
	found = SPI_processed > 0;
	SPI_finish();
	return found;
}

static void
unknown_field(const char *field, const char *entity_type, const char *where, const char *hint)
{
	/* a feed post or drive file has its table's columns, no custom fields */
	if (crm_workspace_document(entity_type))
		hint = psprintf("A %s document's fields are the columns of crm.%s (custom fields and related records are those of CRM items).",
						entity_type, entity_type);
	ereport(ERROR,
			(errcode(ERRCODE_UNDEFINED_COLUMN),
			 errmsg("unknown field \"%s\" in %s", field, where),
			 errhint("%s", hint ? hint : psprintf("Fields are the columns of the %s table, related records (responsible.name, contact.phone, ...) and custom fields registered with crm.add_field('%s', code, name).",
												  entity_type, entity_type))));
}

static void
check_node(const ExprNode *n, const char *entity_type, const char *table,
		   List *robot_names, bool check_robots, const char *where)
{
	int			i;

	check_stack_depth();
	switch (n->kind)
	{
		case EN_FIELD:
			if (n->custom)
			{
				if (!custom_field_registered(entity_type, n->name))
					unknown_field(psprintf("fields.%s", n->name), entity_type, where,
								  psprintf("Register it with crm.add_field('%s', '%s', name).", entity_type, n->name));
			}
			else if (n->sub != NULL)
			{
				int			r = expr_relation_index(n->name);

				if (r < 0 || !has_column(table, relations[r].link))
					unknown_field(psprintf("%s.%s", n->name, n->sub), entity_type, where,
								  psprintf("A %s links to: %s.", entity_type,
										   "responsible, created_by, updated_by and, where it has them, contact, company, stage, lead, deal"));
				if (!has_column(relations[r].table, n->sub))
					unknown_field(psprintf("%s.%s", n->name, n->sub), entity_type, where,
								  psprintf("crm.%s has no column \"%s\".", relations[r].table, n->sub));
			}
			else if (!has_column(table, n->name) && !custom_field_registered(entity_type, n->name))
				unknown_field(n->name, entity_type, where, NULL);
			break;
		case EN_REF:
			if (check_robots && strcmp(n->ns, "Robot") == 0)
			{
				ListCell   *lc;
				bool		found = false;

				foreach(lc, robot_names)
					if (pg_strcasecmp((char *) lfirst(lc), n->name) == 0)
						found = true;
				if (!found)
					ereport(ERROR,
							(errcode(ERRCODE_UNDEFINED_OBJECT),
							 errmsg("unknown robot \"%s\" in %s", n->name, where),
							 errhint("{=Robot:NAME.key} reads the output of a named robot of the same stage.")));
			}
			break;
		default:
			for (i = 0; i < n->nargs; i++)
				check_node(n->args[i], entity_type, table, robot_names, check_robots, where);
			break;
	}
}

void
crm_expr_check(const CrmExpr *e, const char *entity_type, List *robot_names,
			   bool check_robots, const char *where)
{
	check_node(e->root, entity_type, crm_document_table(entity_type), robot_names,
			   check_robots, where ? where : e->where);
}

static void
collect_refs(const ExprNode *n, const char *ns, List **out)
{
	int			i;

	check_stack_depth();
	if (n->kind == EN_REF && strcmp(n->ns, ns) == 0)
		*out = lappend(*out, n->name);
	for (i = 0; i < n->nargs; i++)
		collect_refs(n->args[i], ns, out);
}

List *
crm_expr_refs(const CrmExpr *e, const char *ns)
{
	List	   *out = NIL;

	collect_refs(e->root, ns, &out);
	return out;
}
