/*-------------------------------------------------------------------------
 *
 * crm_automation.c
 *	  Module entry point: _PG_init initialises each layer, bottom up.
 *
 * This is the only file above every layer (src/README.md): the settings
 * first (core/guc.c), then the modules that register themselves with the
 * layers below them — rule loaders with the rule cache, job executors with
 * the scheduler, the triggers' hooks with the engine's row triggers — and,
 * when preloaded, the launcher of the background workers.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "fmgr.h"

#include "core/guc.h"
#include "core/scope.h"
#include "delivery/worker.h"
#include "engine/due_dates.h"
#include "engine/robots.h"
#include "engine/work_time.h"
#include "processes/processes.h"
#include "triggers/triggers.h"

PG_MODULE_MAGIC;

void		_PG_init(void);

void
_PG_init(void)
{
	crm_guc_init();
	crm_scope_init();
	crm_work_time_init();
	crm_due_dates_init();
	crm_robots_init();
	crm_triggers_init();
	crm_processes_init();
	crm_autostart_init();
	crm_launcher_init();
}
