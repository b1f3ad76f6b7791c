/*-------------------------------------------------------------------------
 *
 * robots.h
 *	  Robots: automation rules attached to a stage (SPEC §3).
 *
 *-------------------------------------------------------------------------
 */
#ifndef CRM_ROBOTS_H
#define CRM_ROBOTS_H

#include "actions.h"
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
	char	   *delay_field;
	Interval   *delay_offset;
	bool		after_previous;
	char	   *where;			/* "robot \"name\"" or "robot 12", for messages */
} CrmRobot;

/* Loads and compiles the active robots of a stage, in order (rule_cache.c). */
extern List *crm_robots_load(int64 stage_id);

/* The role automation acts as: the owner of schema crm. */
extern Oid	crm_automation_owner(void);

/* Registers the job executors of robots (called from _PG_init). */
extern void crm_robots_init(void);

/* Causal lineage, shared with triggers: what is running for which item. */
extern bool crm_lineage_push(char kind, int64 rule_id, const char *entity_type,
							 int64 item_id, char **cycle);
extern void crm_lineage_pop(void);
extern int	crm_lineage_depth(void);

#endif							/* CRM_ROBOTS_H */
