/*-------------------------------------------------------------------------
 *
 * guc.c
 *	  Every setting (GUC) of the extension, defined in one place.
 *
 * Every setting of the product is registered here, even those that only a
 * later part (the worker, the scheduler) reads, so that postgresql.conf and
 * ALTER SYSTEM accept them from the first install on.  Other files read the
 * variables through core/guc.h.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <limits.h>

#include "miscadmin.h"
#include "utils/guc.h"

#include "core/guc.h"

bool		crm_allow_private_networks = false;
char	   *crm_allowed_hosts = NULL;
int			crm_max_attempts = 10;
int			crm_retry_base_delay = 30;
int			crm_retry_max_delay = 6 * 3600;
int			crm_http_timeout = 30000;
int			crm_worker_concurrency = 64;
int			crm_workers_per_database = 2;
int			crm_outbox_retention = 7 * 24 * 3600;
bool		crm_worker_enabled = true;
int			crm_job_workers = 1;
int			crm_job_timeout = 60000;
int			crm_job_retention = 7 * 24 * 3600;
int			crm_max_depth = 16;
int			crm_max_steps = 1000;
int			crm_acting_user_id = 0;
bool		crm_import_mode = false;
bool		crm_simulating = false;
bool		crm_create_lead_from_unknown = true;

/* Called once from _PG_init, before any other part's initialisation. */
void
crm_guc_init(void)
{
	DefineCustomBoolVariable("crm.allow_private_networks",
							 "Allows outbound requests to loopback, private, link-local and unique-local addresses.",
							 "Off by default: webhooks and providers may only reach public addresses, unless the host is in crm.allowed_hosts.",
							 &crm_allow_private_networks,
							 false,
							 PGC_SIGHUP, 0,
							 NULL, NULL, NULL);

	DefineCustomStringVariable("crm.allowed_hosts",
							   "Comma-separated host names allowed even when they resolve to a private address.",
							   NULL,
							   &crm_allowed_hosts,
							   "",
							   PGC_SIGHUP, 0,
							   NULL, NULL, NULL);

	DefineCustomIntVariable("crm.max_attempts",
							"Delivery attempts before an outbox message is marked dead.",
							NULL,
							&crm_max_attempts,
							10, 1, 1000,
							PGC_SIGHUP, 0,
							NULL, NULL, NULL);

	DefineCustomIntVariable("crm.retry_base_delay",
							"Delay before the first retry of a failed delivery; it doubles on each attempt.",
							NULL,
							&crm_retry_base_delay,
							30, 0, INT_MAX / 1000,
							PGC_SIGHUP, GUC_UNIT_S,
							NULL, NULL, NULL);

	DefineCustomIntVariable("crm.retry_max_delay",
							"Upper bound of the delay between two delivery attempts.",
							NULL,
							&crm_retry_max_delay,
							6 * 3600, 0, INT_MAX / 1000,
							PGC_SIGHUP, GUC_UNIT_S,
							NULL, NULL, NULL);

	DefineCustomIntVariable("crm.http_timeout",
							"Timeout of one outbound request (HTTP or SMTP), connection included.",
							NULL,
							&crm_http_timeout,
							30000, 100, INT_MAX,
							PGC_SIGHUP, GUC_UNIT_MS,
							NULL, NULL, NULL);

	DefineCustomIntVariable("crm.worker_concurrency",
							"Outbound requests in flight at once, per database.",
							NULL,
							&crm_worker_concurrency,
							64, 1, 1000,
							PGC_SIGHUP, 0,
							NULL, NULL, NULL);

	DefineCustomIntVariable("crm.workers_per_database",
							"Delivery workers per database, sharing crm.worker_concurrency.",
							"They claim from the same outbox (FOR UPDATE SKIP LOCKED); the first also runs due jobs.",
							&crm_workers_per_database,
							2, 1, CRM_MAX_WORKERS_PER_DATABASE,
							PGC_SIGHUP, 0,
							NULL, NULL, NULL);

	DefineCustomIntVariable("crm.outbox_retention",
							"How long sent outbox messages are kept before cleanup.",
							NULL,
							&crm_outbox_retention,
							7 * 24 * 3600, 0, INT_MAX,
							PGC_SUSET, GUC_UNIT_S,
							NULL, NULL, NULL);

	DefineCustomIntVariable("crm.job_workers",
							"Job runners per database: background workers that run due jobs.",
							"The first runs every due job; the others join in while a burst keeps its batches full.",
							&crm_job_workers,
							1, 1, CRM_MAX_JOB_WORKERS,
							PGC_SIGHUP, 0,
							NULL, NULL, NULL);

	DefineCustomIntVariable("crm.job_timeout",
							"Longest a scheduled job may run; one that runs longer fails.",
							"0 means no limit.",
							&crm_job_timeout,
							60000, 0, INT_MAX,
							PGC_SUSET, GUC_UNIT_MS,
							NULL, NULL, NULL);

	DefineCustomIntVariable("crm.job_retention",
							"How long done and cancelled jobs are kept before cleanup.",
							NULL,
							&crm_job_retention,
							7 * 24 * 3600, 0, INT_MAX,
							PGC_SUSET, GUC_UNIT_S,
							NULL, NULL, NULL);

	DefineCustomBoolVariable("crm.worker_enabled",
							 "Runs the delivery and scheduling workers.",
							 "When off, outbox messages and due jobs wait until it is turned back on, and the workers disconnect.",
							 &crm_worker_enabled,
							 true,
							 PGC_SIGHUP, 0,
							 NULL, NULL, NULL);

	DefineCustomIntVariable("crm.max_depth",
							"Longest chain of automation steps one change may cause.",
							"A chain that reaches it stops with a log entry; the statement still succeeds.",
							&crm_max_depth,
							16, 1, 1000,
							PGC_SUSET, 0,
							NULL, NULL, NULL);

	DefineCustomIntVariable("crm.max_steps",
							"Most automation steps (robots, triggers, processes) one change may cause, however wide.",
							"Counted from a change made outside automation; the step past it stops with a log entry, the statement still succeeds.",
							&crm_max_steps,
							1000, 1, INT_MAX,
							PGC_SUSET, 0,
							NULL, NULL, NULL);
	DefineCustomIntVariable("crm.user_id",
							"The CRM user acting in this session (crm.user id), used as author of changes.",
							"0 means no user: changes are recorded as made by the system.",
							&crm_acting_user_id,
							0, 0, INT_MAX,
							PGC_USERSET, 0,
							NULL, NULL, NULL);

	DefineCustomBoolVariable("crm.import_mode",
							 "Marks this session as an import: business processes do not auto-start.",
							 NULL,
							 &crm_import_mode,
							 false,
							 PGC_USERSET, 0,
							 NULL, NULL, NULL);

	DefineCustomBoolVariable("crm.create_lead_from_unknown",
							 "An incoming e-mail or call from an address that matches no item creates a lead.",
							 "Read by crm.record_incoming; off: such an e-mail or call is not recorded.",
							 &crm_create_lead_from_unknown,
							 true,
							 PGC_USERSET, 0,
							 NULL, NULL, NULL);

	if (process_shared_preload_libraries_in_progress)
		MarkGUCPrefixReserved("crm");
}
