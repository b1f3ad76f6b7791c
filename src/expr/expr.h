/*-------------------------------------------------------------------------
 *
 * expr.h
 *	  The expression language of SPEC §6: templates, formulas, conditions.
 *
 * A rule's text parameters are compiled once (when the rule is saved, to
 * check them, and when the rule cache loads them) into a CrmExpr, and
 * evaluated for each item against a CrmEvalContext.  Values are never turned
 * into SQL text: field lookups go through prepared plans with parameters.
 *
 * Forms:
 *	  template   "Deal {{title}} for {{contact.name}}: {=Document:AMOUNT}"
 *	  formula    "={{amount}}*1.2", "=if({{amount}}>=5000,\"big\",\"small\")"
 *	  condition  a jsonb string holding a boolean formula (leading '='
 *				 optional), or {"all"|"any": [{"field", "op", "value"}, ...]}
 *
 * References: {{field}}, {{fields.UF_X}}, {{UF_X}}, {{related.field}} with
 * related = responsible, created_by, updated_by, contact, company, stage,
 * lead, deal; {=Document:FIELD}, {=Variable:x}, {=Constant:x}, {=Parameter:x},
 * {=Robot:NAME.output}, {=Activity:NAME.output}, {=Event:key}.  Field names
 * are case-insensitive.
 *
 *-------------------------------------------------------------------------
 */
#ifndef CRM_EXPR_H
#define CRM_EXPR_H

#include "access/htup.h"
#include "access/tupdesc.h"
#include "nodes/pg_list.h"
#include "utils/date.h"
#include "utils/jsonb.h"
#include "utils/numeric.h"
#include "utils/timestamp.h"

typedef enum CrmValueType
{
	CRM_VAL_NULL = 0,
	CRM_VAL_BOOL,
	CRM_VAL_NUMBER,				/* PostgreSQL numeric: exact money arithmetic */
	CRM_VAL_TEXT,
	CRM_VAL_DATE,
	CRM_VAL_TIMESTAMP,
	CRM_VAL_JSON				/* an object or array from a jsonb field */
} CrmValueType;

typedef struct CrmValue
{
	CrmValueType type;
	bool		b;
	Numeric		num;
	char	   *str;
	DateADT		date;
	TimestampTz ts;
	Jsonb	   *json;
} CrmValue;

/*
 * Limits of a compiled template, formula or condition, enforced by the
 * compiler (so by save-time validation and by the rule cache alike) and again
 * by the evaluator.  Nesting: each pair of parentheses, function call,
 * operator, condition group and embedded formula is a level; a chain of one
 * operator ("1 + 2 + 3", "a & b & c", the rules of one "all" group) is one
 * level however long.  Terms: literals, references, operators, function
 * calls and condition rules, counted over the whole expression.
 */
#define CRM_EXPR_MAX_DEPTH	100
#define CRM_EXPR_MAX_TERMS	50000

/* A compiled template, formula or condition (opaque). */
typedef struct CrmExpr CrmExpr;

/*
 * What an expression is evaluated against: the current item (its row when
 * the caller has it, else loaded by id on first use), and the named values of
 * the running rule or process.  Any jsonb may be NULL.
 */
typedef struct CrmEvalContext
{
	const char *entity_type;	/* e.g. "deal", or a smart-process code */
	int64		item_id;
	HeapTuple	tuple;			/* the item row, or NULL */
	TupleDesc	desc;
	Jsonb	   *variables;		/* {=Variable:x} */
	Jsonb	   *constants;		/* {=Constant:x} */
	Jsonb	   *parameters;		/* {=Parameter:x}: a process's start parameters */
	Jsonb	   *robot_outputs;	/* {"NAME": {"code": ...}} for {=Robot:NAME.code} */
	Jsonb	   *activity_outputs;	/* same shape, {=Activity:NAME.x} */
	Jsonb	   *event;			/* trigger payload, {=Event:key} */
	void	   *cache;			/* resolver's private cache of related rows */
} CrmEvalContext;

/*
 * Compiling.  'where' names the parameter in error messages (for example
 * "params.text").  Errors are ERRORs with ERRCODE_SYNTAX_ERROR and the
 * 1-based character position; past the limits above, with
 * ERRCODE_STATEMENT_TOO_COMPLEX (nesting) or ERRCODE_PROGRAM_LIMIT_EXCEEDED
 * (terms).  The result is allocated in
 * CurrentMemoryContext and holds no pointers outside it.
 */
extern CrmExpr *crm_expr_compile_text(const char *src, const char *where);
extern CrmExpr *crm_expr_compile_condition(Jsonb *cond, const char *where);

/* True when the text has no reference or formula: rendering returns it as is. */
extern bool crm_expr_is_constant(const CrmExpr *e);

/*
 * Checks every field reference against the entity type (its table's
 * columns, related records' columns, registered custom fields in
 * crm.user_field); raises ERRCODE_UNDEFINED_COLUMN naming the field, with a
 * hint.  robot_names (List of char *) are the names {=Robot:NAME...} may
 * refer to; NIL with check_robots false skips that check.
 */
extern void crm_expr_check(const CrmExpr *e, const char *entity_type,
						   List *robot_names, bool check_robots,
						   const char *where);

/*
 * The names read from a namespace ("Event", "Robot", ...): {=Event:key}
 * gives "key".  A List of char * pointing into the expression.
 */
extern List *crm_expr_refs(const CrmExpr *e, const char *ns);

/* Evaluation. */
extern void crm_eval_context_init(CrmEvalContext *cx, const char *entity_type,
								  int64 item_id, HeapTuple tuple, TupleDesc desc);
extern CrmValue crm_expr_eval(const CrmExpr *e, CrmEvalContext *cx);
extern bool crm_expr_same_in_rows(const CrmExpr *e, HeapTuple a, HeapTuple b,
								  TupleDesc desc);
extern char *crm_expr_render(const CrmExpr *e, CrmEvalContext *cx);

/* The same for a URL: values after its first literal part percent-encoded. */
extern char *crm_expr_render_url(const CrmExpr *e, CrmEvalContext *cx);
extern bool crm_expr_test(const CrmExpr *e, CrmEvalContext *cx);

/* Conversions used by actions. */
extern char *crm_value_to_cstring(CrmValue v);	/* NULL -> "" */
extern void crm_value_to_jsonb_value(CrmValue v, JsonbValue *out);
extern Jsonb *crm_value_to_jsonb(CrmValue v);
extern void crm_jsonb_binary(Jsonb *j, JsonbValue *out);
extern Jsonb *crm_jsonb_with(Jsonb *obj, const char *key, JsonbValue *v);
extern bool crm_value_to_int64(CrmValue v, int64 *out);
extern bool crm_value_to_timestamptz(CrmValue v, TimestampTz *out);

#endif							/* CRM_EXPR_H */
