/*-------------------------------------------------------------------------
 *
 * guc.h
 *	  Settings shared by every part of the extension.
 *
 * The GUC variables are defined in core/guc.c; other files read them
 * through these declarations.
 *
 *-------------------------------------------------------------------------
 */
#ifndef CRM_GUC_H
#define CRM_GUC_H

#define CRM_VERSION "0.2.0"

/* Upper bound of crm.workers_per_database (shared memory is sized by it). */
#define CRM_MAX_WORKERS_PER_DATABASE 16

/* Upper bound of crm.job_workers (shared memory is sized by it). */
#define CRM_MAX_JOB_WORKERS 4

/* outbound safety */
extern bool crm_allow_private_networks;
extern char *crm_allowed_hosts;

/* delivery and retries */
extern int	crm_max_attempts;
extern int	crm_retry_base_delay;	/* seconds */
extern int	crm_retry_max_delay;	/* seconds */
extern int	crm_http_timeout;		/* milliseconds */
extern int	crm_worker_concurrency;
extern int	crm_workers_per_database;
extern int	crm_outbox_retention;	/* seconds */
extern bool crm_worker_enabled;

/* scheduled jobs */
extern int	crm_job_workers;
extern int	crm_job_timeout;		/* milliseconds, 0: none */
extern int	crm_job_retention;		/* seconds */

/* automation */
extern int	crm_max_depth;
extern int	crm_max_steps;
extern int	crm_acting_user_id;
extern bool crm_import_mode;
extern bool crm_create_lead_from_unknown;

/*
 * Not a setting: true while crm.simulate runs a statement in a
 * subtransaction it always rolls back (admin/simulate.c), so that what the
 * statement queues wakes no worker at commit (delivery/launcher.c).
 */
extern bool crm_simulating;

/* Defines every setting above (from _PG_init). */
extern void crm_guc_init(void);

#endif							/* CRM_GUC_H */
