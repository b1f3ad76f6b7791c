/*-------------------------------------------------------------------------
 *
 * trigger_int.h
 *	  What the files of src/triggers/ share among themselves.
 *
 *-------------------------------------------------------------------------
 */
#ifndef CRM_TRIGGER_INT_H
#define CRM_TRIGGER_INT_H

#include "triggers/triggers.h"

/* One event for one item. */
typedef struct EventCall
{
	const CrmEventDesc *event;
	const char *entity_type;
	int64		item_id;
	int64		stage_id;		/* where the item is */
	int64		pipeline_id;
	int32		stage_sort;
	HeapTuple	tuple;			/* the item's row */
	TupleDesc	desc;
	bool		locked;			/* the row is locked (or being updated) */
	Jsonb	   *payload;		/* built from source_row when first needed */
	HeapTuple	source_row;		/* the row that is the event, if any */
	TupleDesc	source_desc;
	const char *key;
	const bool *changed;		/* field_changed: per watched field */
} EventCall;

typedef struct Outcome
{
	const char *status;			/* NULL: no trigger applied to the event */
	const CrmTrigger *trigger;	/* the deciding trigger */
	char	   *error;			/* failed: the error; loop_stopped: the cycle */
	int			nchecked;
	int64	   *checked_ids;
	const char **checked_results;
} Outcome;

/* trigger_decide.c and trigger_log.c */
extern void trig_decide(const EventCall *c, List *triggers, Outcome *o);
extern bool trig_any_condition(List *triggers, const EventCall *c);
extern bool trig_any_reads_event(List *triggers, const EventCall *c);
extern bool trig_any_applies(List *triggers, const EventCall *c, bool any_pipeline);
extern void trig_log_outcome(const char *entity_type, int64 item_id, const CrmEventDesc *event, const CrmTrigger *t, const char *status, const char *error, Jsonb *detail);
extern void trig_record_history(const char *entity_type, int64 item_id, int64 from_stage, const CrmTrigger *t, int64 user_id);
extern Jsonb *trig_row_to_jsonb(HeapTuple tuple, TupleDesc desc);
extern Jsonb *trig_log_detail(const EventCall *c, const Outcome *o);
extern Jsonb *trig_no_trigger_detail(const EventCall *c);
extern void trig_log_compact(const char *entity_type, int64 item_id, const CrmEventDesc *event, const char *status, Jsonb *detail);
extern void trig_log_excepted(const char *entity_type, int64 item_id, const CrmEventDesc *event, const char *list_type, int64 entry_id, const char *entry, const char *address);
extern int64 trig_acting_user(const CrmTrigger *t, int64 responsible_id);
extern void trig_push_key(JsonbParseState **st, const char *key);
extern void trig_push_string(JsonbParseState **st, JsonbIteratorToken tok, const char *s);

/* trigger_load.c: registers the triggers' loader with the rule cache. */
extern void crm_triggers_load_init(void);

#endif							/* CRM_TRIGGER_INT_H */
