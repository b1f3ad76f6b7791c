/*-------------------------------------------------------------------------
 *
 * trigger_explain.h
 *	  What each trigger of an item's pipeline would decide if its event
 *	  happened now (crm.explain).
 *
 *-------------------------------------------------------------------------
 */
#ifndef CRM_TRIGGER_EXPLAIN_H
#define CRM_TRIGGER_EXPLAIN_H

#include "triggers/triggers.h"

typedef struct CrmTriggerVerdict
{
	const CrmTrigger *trigger;
	/* fired, condition_false, already_there, backwards, loop_stopped, failed, or shadowed */
	const char *outcome;
	const CrmTrigger *decided_by;	/* shadowed: the trigger that decides first */
	const char *decided_as;			/* shadowed: its outcome */
	char	   *error;			/* failed: why; loop_stopped: the cycle */
} CrmTriggerVerdict;

/*
 * For each active trigger of the pipeline of stage_id (stage order, then
 * event order), runs the decision its event would get now for the item
 * (tuple, read as the item is in stage_id): its own key, its own fields
 * changed, an empty payload.  Decisions run as trig_decide runs them;
 * carefully, each in a subtransaction of its own so that a failing
 * condition fails alone, else an error propagates.
 * The caller acts as the automation owner and has the rule cache pinned.
 * Returns a List of CrmTriggerVerdict *.
 */
extern List *crm_triggers_explain(const char *entity_type, int64 item_id,
								  HeapTuple tuple, TupleDesc desc, int64 stage_id,
								  bool careful);

#endif							/* CRM_TRIGGER_EXPLAIN_H */
