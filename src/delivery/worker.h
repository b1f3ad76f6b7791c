/*-------------------------------------------------------------------------
 *
 * worker.h
 *	  The launcher, the per-database workers and their shared state.
 *
 * launcher.c owns the shared memory (one slot per database), the launcher
 * background worker, wake-up at commit and the hooks that stop a database's
 * worker before DROP DATABASE.  worker.c is the per-database delivery loop:
 * outbox claims, libcurl transfers (http.c, smtp.c), results; job_runner.c
 * the loop that runs due jobs.
 *
 *-------------------------------------------------------------------------
 */
#ifndef CRM_WORKER_H
#define CRM_WORKER_H

#include "datatype/timestamp.h"
#include "postmaster/bgworker.h"

#include "core/guc.h"

/*
 * A database's workers by rank: delivery workers from 0 (at most
 * CRM_MAX_WORKERS_PER_DATABASE), then the job runners from
 * CRM_JOB_RANK_BASE (at most CRM_MAX_JOB_WORKERS).
 */
#define CRM_JOB_RANK_BASE	CRM_MAX_WORKERS_PER_DATABASE
#define CRM_WORKER_SLOTS	(CRM_MAX_WORKERS_PER_DATABASE + CRM_MAX_JOB_WORKERS)

/* What a worker's slot says about it. */
typedef enum CrmWorkerState
{
	CRM_WORKER_FREE = 0,		/* unused slot */
	CRM_WORKER_STARTING,		/* registered, not yet connected */
	CRM_WORKER_RUNNING,			/* connected, extension present */
	CRM_WORKER_ABSENT,			/* the database has no crm_automation */
	CRM_WORKER_STOPPED,			/* exited; the launcher restarts it */
	CRM_WORKER_DROPPING,		/* DROP DATABASE asked it to leave */
	CRM_WORKER_PAUSED,			/* CREATE DATABASE ... TEMPLATE or ALTER
								 * DATABASE ... RENAME asked it to leave; it
								 * starts again once the statement ran */
	CRM_WORKER_DISABLED			/* left: crm.worker_enabled is off */
} CrmWorkerState;

/* _PG_init: shared memory hooks, launcher registration, utility hook. */
extern void crm_launcher_init(void);

/* Called by a database worker once connected; index is its rank (0..). */
extern void crm_worker_attach(Oid dboid, int index);
extern void crm_worker_set_state(CrmWorkerState state);
extern int	crm_workers_wanted(void);
extern bool crm_rank_wanted(int rank);
extern void crm_worker_wake_next(void);

/* The furthest message the database's delivery workers claimed (worker.c). */
extern bool crm_claim_point(TimestampTz *at, int64 *id);
extern void crm_claim_point_advance(TimestampTz at, int64 id);
extern void crm_claim_point_reset(void);

/* Background worker entry points (bgw_function_name). */
extern PGDLLEXPORT void crm_launcher_main(Datum arg);
extern PGDLLEXPORT void crm_worker_main(Datum arg);

/* job_runner.c: the loop of a job runner (a rank from CRM_JOB_RANK_BASE) */
extern void crm_job_runner_main(Oid dboid, int rank);

/* worker.c: settings, slot and state once connected; the database's name */
extern const char *crm_worker_begin(Oid dboid, int rank, const char *appname);

/* worker.c: a step in a transaction of its own (false: it failed, reported) */
typedef void (*CrmXactStep) (void *arg);
extern bool crm_worker_xact(CrmXactStep fn, void *arg, const char *activity);

#endif							/* CRM_WORKER_H */
