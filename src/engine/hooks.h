/*-------------------------------------------------------------------------
 *
 * hooks.h
 *	  What the item row triggers let a layer above decide: the triggers
 *	  (SPEC §4) of field and responsible changes.
 *
 * The engine's row triggers run for every write to an item; the CRM
 * triggers (src/triggers/) sit above the engine and register these hooks
 * once, from _PG_init, so that the engine never calls up.  Unset hooks mean
 * no trigger: the item keeps its stage.
 *
 *	- before_update (BEFORE UPDATE, row_trigger.c) fires field_changed and
 *	  responsible_changed from the old and new rows and returns the stage the
 *	  item moves to, 0 for none;
 *	- take_move (AFTER ROW, stage_entry.c) takes the move it decided, with
 *	  the stage change, or returns NULL;
 *	- begin_move (robots.c), when the stage's robots are about to run, logs
 *	  the move, records it in the history and puts the trigger on the
 *	  lineage while they run (then call crm_lineage_pop when it returned
 *	  true).
 *
 *-------------------------------------------------------------------------
 */
#ifndef CRM_ENGINE_HOOKS_H
#define CRM_ENGINE_HOOKS_H

#include "access/htup.h"
#include "utils/relcache.h"

/* A move a trigger decided; opaque to the engine. */
typedef struct CrmTriggerMove CrmTriggerMove;

typedef struct CrmMoveHooks
{
	int64		(*before_update) (Relation rel, const char *entity_type,
								  HeapTuple oldtuple, HeapTuple newtuple,
								  AttrNumber id_att, int64 stage_id);
	CrmTriggerMove *(*take_move) (const char *entity_type, int64 item_id,
								  int64 stage_id);
	bool		(*begin_move) (const CrmTriggerMove *move);
} CrmMoveHooks;

/* NULL until registered. */
extern const CrmMoveHooks *crm_move_hooks;

extern void crm_register_move_hooks(const CrmMoveHooks *hooks);

typedef struct CrmWriteHooks
{
	void		(*row_written) (Relation rel, const char *entity_type, bool is_insert,
								HeapTuple oldtuple, HeapTuple newtuple, AttrNumber id_att);
	void		(*statement_end) (void);
} CrmWriteHooks;

/* NULL until registered. */
extern const CrmWriteHooks *crm_write_hooks;

extern void crm_register_write_hooks(const CrmWriteHooks *hooks);

#endif							/* CRM_ENGINE_HOOKS_H */
