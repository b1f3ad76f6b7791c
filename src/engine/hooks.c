/*-------------------------------------------------------------------------
 *
 * hooks.c
 *	  The hooks a layer above registers with the engine (engine/hooks.h).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "engine/hooks.h"

const CrmMoveHooks *crm_move_hooks = NULL;

void
crm_register_move_hooks(const CrmMoveHooks *hooks)
{
	crm_move_hooks = hooks;
}

const CrmWriteHooks *crm_write_hooks = NULL;

void
crm_register_write_hooks(const CrmWriteHooks *hooks)
{
	crm_write_hooks = hooks;
}
