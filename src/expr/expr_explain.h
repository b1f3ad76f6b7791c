/*-------------------------------------------------------------------------
 *
 * expr_explain.h
 *	  A condition taken apart for one item: the text with the item's values
 *	  in place of its references, and the value of each part (crm.explain).
 *
 *-------------------------------------------------------------------------
 */
#ifndef CRM_EXPR_EXPLAIN_H
#define CRM_EXPR_EXPLAIN_H

#include "expr/expr.h"

typedef struct CrmExprExplained
{
	char	   *written;		/* the expression, printed from its tree */
	char	   *substituted;	/* the same with each reference's value */
	Jsonb	   *parts;			/* [{"expr": ..., "value": ...}, ...] */
	bool		value;			/* what crm_expr_test gives */
} CrmExprExplained;

/*
 * Evaluates e for cx as crm_expr_test does, operand for operand (an "and"
 * stops at its first false operand, an "if" evaluates one branch: what the
 * real evaluation does not reach is shown as written, never evaluated), and
 * describes it.  An evaluation error is thrown as crm_expr_test throws it.
 * The texts are bounded (about 2,000 characters, 50 parts): past that, the
 * rest is evaluated without being described.
 */
extern void crm_expr_explain(const CrmExpr *e, CrmEvalContext *cx, CrmExprExplained *out);

/* The source of a compiled expression (a condition's formula or JSON). */
extern const char *crm_expr_source(const CrmExpr *e);

#endif							/* CRM_EXPR_EXPLAIN_H */
