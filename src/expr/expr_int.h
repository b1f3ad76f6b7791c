/*-------------------------------------------------------------------------
 *
 * expr_int.h
 *	  Internals of the expression language shared by expr_parse.c,
 *	  expr_eval.c and condition.c.
 *
 *-------------------------------------------------------------------------
 */
#ifndef CRM_EXPR_INT_H
#define CRM_EXPR_INT_H

#include "expr/expr.h"

typedef enum ExprNodeKind
{
	EN_CONST,					/* a literal value */
	EN_FIELD,					/* {{path}} / {=Document:path} */
	EN_REF,						/* {=Variable:x}, {=Constant:x}, {=Robot:N.k}, ... */
	EN_UNARY,					/* -x, not x */
	EN_BINARY,					/* x op y (comparisons) */
	EN_CHAIN,					/* x op y op z ...: one precedence level, left to right */
	EN_FUNC,					/* f(args) */
	EN_CONCAT,					/* a template: parts rendered and joined */
	EN_COND						/* JSON condition leaf: field op value */
} ExprNodeKind;

typedef enum ExprOp
{
	OP_ADD, OP_SUB, OP_MUL, OP_DIV, OP_CAT,
	OP_EQ, OP_NE, OP_LT, OP_LE, OP_GT, OP_GE,
	OP_AND, OP_OR, OP_NOT, OP_NEG,
	/* JSON condition operators */
	OP_CONTAINS, OP_NOT_CONTAINS, OP_IN, OP_NOT_IN, OP_EMPTY, OP_NOT_EMPTY
} ExprOp;

typedef struct ExprNode ExprNode;

struct ExprNode
{
	ExprNodeKind kind;
	int			pos;			/* 1-based position in the source */
	CrmValue	value;			/* EN_CONST */
	char	   *ns;				/* EN_REF: Variable, Constant, Robot, Activity, Event */
	char	   *name;			/* EN_FIELD: first segment; EN_REF: name; EN_FUNC: function */
	char	   *sub;			/* EN_FIELD: second segment (related field); EN_REF: key */
	bool		custom;			/* EN_FIELD: written as fields.X */
	ExprOp		op;
	int			nargs;
	ExprNode  **args;			/* operands, function arguments, template parts */
	ExprOp	   *ops;			/* EN_CHAIN: ops[i] joins args[i] (i >= 1) */
	int		   *opos;			/* EN_CHAIN: position of ops[i] */
	int			depth;			/* nesting levels below and at this node (leaf 0) */
	int			size;			/* terms in this subtree */
	/*
	 * EN_FIELD: where the column it reads was found last (attribute
	 * numbers, 0 = not yet), its own and that of the custom fields or the
	 * link; a hint checked by name before use (crm_expr_same_in_rows).
	 */
	int			att_hint;
	int			att_hint_other;
};

/*
 * An EN_CHAIN being built: operands joined by operators of one precedence
 * level, evaluated left to right without recursing once per operand.
 */
typedef struct ExprChain
{
	List	   *args;			/* ExprNode * */
	List	   *ops;			/* int (ExprOp), the first unused */
	List	   *opos;			/* int */
	int			size;
} ExprChain;

struct CrmExpr
{
	ExprNode   *root;
	bool		constant;		/* no reference, no formula */
	char	   *src;
	char	   *where;
};

extern ExprNode *expr_new_node(ExprNodeKind kind, int pos);
extern ExprNode *expr_parse_field_path(const char *path, int pos, const char *where);
extern ExprNode *expr_parse_text(const char *src, const char *where);
extern ExprNode *expr_parse_formula(const char *src, int offset, const char *where);

/* The limits (CRM_EXPR_MAX_DEPTH, CRM_EXPR_MAX_TERMS); pos 0: no position. */
extern void expr_too_deep(const char *where, int pos) pg_attribute_noreturn();
extern void expr_too_long(const char *where) pg_attribute_noreturn();
extern ExprNode *expr_finish_node(ExprNode *n, const char *where);
extern ExprNode *expr_nest(ExprNode *n, const char *where);
extern void expr_count_term(int *size, const ExprNode *n, const char *where);
extern void expr_chain_add(ExprChain *c, ExprOp op, int pos, ExprNode *arg, const char *where);
extern ExprNode *expr_chain_end(ExprChain *c, const char *where);

extern CrmValue expr_eval_node(const ExprNode *n, CrmEvalContext *cx, const char *where,
							   int depth);
extern CrmValue expr_eval_condition_leaf(const ExprNode *n, CrmEvalContext *cx,
										 const char *where, int depth);
extern CrmValue expr_apply_binary(ExprOp op, CrmValue l, CrmValue r, int pos,
								  const char *where);
extern bool expr_value_true(CrmValue v);
extern bool expr_values_equal(CrmValue a, CrmValue b);
extern int	expr_compare(CrmValue a, CrmValue b, bool *comparable);
extern CrmValue expr_text_value(const char *s);

#endif							/* CRM_EXPR_INT_H */
