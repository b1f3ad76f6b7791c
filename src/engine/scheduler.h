/*-------------------------------------------------------------------------
 *
 * scheduler.h
 *	  Scheduled jobs (crm.job): delayed robots, waits, stage controls and
 *	  process timers.  Planning writes rows; crm.run_next_job() runs them.
 *
 *-------------------------------------------------------------------------
 */
#ifndef CRM_SCHEDULER_H
#define CRM_SCHEDULER_H

#include "utils/jsonb.h"
#include "utils/timestamp.h"

typedef struct CrmJob
{
	int64		id;
	char		kind[32];		/* robot, wait, control, process_timer, ... */
	int64		robot_id;		/* 0 when none */
	int64		log_id;
	int64		process_instance_id;
	int64		stage_id;
	char		entity_type[64];
	int64		entity_id;
	TimestampTz due_at;
	Jsonb	   *context;
} CrmJob;

/*
 * Executor of one kind of job.  Runs inside the worker's transaction; an
 * ERROR fails the job (and rolls back its effects).
 */
typedef void (*CrmJobExecutor) (const CrmJob *job);

extern void crm_register_job_executor(const char *kind, CrmJobExecutor fn);

#endif							/* CRM_SCHEDULER_H */
