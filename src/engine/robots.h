/*-------------------------------------------------------------------------
 *
 * robots.h
 *	  Robots: automation rules attached to a stage (SPEC §3).
 *
 *-------------------------------------------------------------------------
 */
#ifndef CRM_ROBOTS_H
#define CRM_ROBOTS_H

#include "actions/actions.h"
#include "access/htup.h"
#include "access/tupdesc.h"
#include "datatype/timestamp.h"

typedef enum CrmDelayKind
{
	CRM_DELAY_NONE = 0,
	CRM_DELAY_AFTER,			/* {"after": "2 days"} */
	CRM_DELAY_AT				/* {"at": "close_date", "offset": "-1 day"} */
} CrmDelayKind;

/* A robot as cached: compiled once, used for every item. */
typedef struct CrmRobot
{
	int64		id;
	int64		stage_id;
	char	   *name;			/* NULL when unnamed */
	const CrmActionDesc *action;
	CrmCompiledParams *params;
	CrmExpr    *condition;		/* NULL: always */
	CrmDelayKind delay_kind;
	Interval   *delay_after;
	bool		delay_work_time;	/* delay_after counted in working time */
	char	   *delay_field;
	Interval   *delay_offset;
	bool		after_previous;
	char	   *where;			/* "robot \"name\"" or "robot 12", for messages */
	char	   *action_name;	/* as stored, for the log (action may be NULL) */
	bool		has_delay;		/* the row has a delay (parsed or not) */
	char	   *invalid;		/* the row failed its checks when loaded: the
								 * error every run of it is logged with */
} CrmRobot;

/*
 * Reads a robot's delay into r, checking its shape and bounds; an ERROR
 * when it is wrong (robots_load.c).
 */
extern void crm_robot_parse_delay(CrmRobot *r, Jsonb *delay);

/*
 * crm_run_isolated, but a deadlock or serialization failure is tried again
 * (up to 3 attempts, after a short sleep) before its error is returned:
 * the step's subtransaction was rolled back, so running it again is safe.
 */
extern struct ErrorData *crm_run_isolated_retrying(void (*body) (void *arg), void *arg);

/*
 * An item that entered and/or left a stage, as the row trigger saw it
 * (stage_entry.c gathers them per statement).
 */
typedef struct CrmStageEntry
{
	const char *entity_type;
	int64		item_id;
	int64		stage_id;		/* the stage entered, 0 when none (deleted) */
	bool		left;			/* it left a stage: cancel what was pending */
	HeapTuple	tuple;			/* the row as it entered, or NULL */
	TupleDesc	desc;
	struct CrmTriggerMove *trigger_move;	/* the trigger that moved it, or NULL */
} CrmStageEntry;

/*
 * Runs a batch of entries: every cancellation in one statement, then the
 * robots of each entered stage.  careful: each robot in a subtransaction of
 * its own (a failure is logged and the rest goes on); otherwise errors
 * propagate, for the caller to roll back and replay carefully.  The caller
 * is connected to SPI and acts as crm_automation_owner() (core/scope.h).
 */
extern void crm_robots_run_entries(const CrmStageEntry *entries, int n, bool careful);

/* Loads and compiles the active robots of a stage, in order (the rule cache's stage loader). */
extern List *crm_robots_load(int64 stage_id);

/* Registers the robots' loader and job executors (called from _PG_init). */
extern void crm_robots_init(void);

/* Causal lineage, shared with triggers: what is running for which item. */
extern bool crm_lineage_push(char kind, int64 rule_id, const char *entity_type,
							 int64 item_id, char **cycle);
extern void crm_lineage_pop(void);
extern int	crm_lineage_depth(void);

/* True when a rule of this kind ('r' robot, 't' trigger, 'p' process) is running. */
extern bool crm_lineage_has(char kind);

/*
 * Whether crm_lineage_push would take (kind, rule, item) now, after
 * steps_before more steps of the same change, without pushing anything;
 * false with the reason in *why as push gives it (crm.explain).
 */
extern bool crm_lineage_would_push(char kind, int64 rule_id, const char *entity_type,
								   int64 item_id, int steps_before, char **why);

/*
 * Runs body(arg) in a subtransaction of its own.  NULL when it succeeded;
 * otherwise its effects are rolled back, the lineage is back to its depth at
 * the call, and the error is returned (in the caller's memory context),
 * except a query cancel or statement timeout, which is thrown again.
 */
extern struct ErrorData *crm_run_isolated(void (*body) (void *arg), void *arg);
extern void crm_lineage_restore(int depth);

#endif							/* CRM_ROBOTS_H */
