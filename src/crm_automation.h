/*-------------------------------------------------------------------------
 *
 * crm_automation.h
 *	  Settings shared by every part of the extension.
 *
 * The GUC variables are defined in crm_automation.c (_PG_init); other files
 * read them through these declarations.
 *
 *-------------------------------------------------------------------------
 */
#ifndef CRM_AUTOMATION_H
#define CRM_AUTOMATION_H

#define CRM_VERSION "0.1.0"

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

/* automation */
extern int	crm_max_depth;
extern int	crm_acting_user_id;
extern bool crm_import_mode;

#endif							/* CRM_AUTOMATION_H */
