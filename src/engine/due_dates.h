/*-------------------------------------------------------------------------
 *
 * due_dates.h
 *	  Delays tied to a date field follow the field.
 *
 *-------------------------------------------------------------------------
 */
#ifndef CRM_DUE_DATES_H
#define CRM_DUE_DATES_H

#include "access/htup.h"
#include "access/tupdesc.h"
#include "expr/expr.h"

/* The date fields the "at" delays of an entity type's robots refer to. */
typedef struct CrmDueFields
{
	int			n;
	char	  **names;			/* lower case, as in crm.job.due_field */
	CrmExpr   **exprs;			/* {{name}} */
} CrmDueFields;

/* Registers their loader with the rule cache (from _PG_init). */
extern void crm_due_dates_init(void);

/*
 * An item row changed without changing stage (BEFORE UPDATE): when one of
 * those fields changed, the item's pending jobs that follow it get their
 * new due time, in the same transaction; a field emptied fails them.
 */
extern void crm_due_dates_follow(const char *entity_type, int64 item_id,
								 HeapTuple oldtuple, HeapTuple newtuple,
								 TupleDesc desc);

#endif							/* CRM_DUE_DATES_H */
