/*-------------------------------------------------------------------------
 *
 * rule_cache.h
 *	  Backend-local cache of automation definitions: stages and, per stage,
 *	  its robots; per entity type, its triggers.
 *
 *-------------------------------------------------------------------------
 */
#ifndef CRM_RULE_CACHE_H
#define CRM_RULE_CACHE_H

#include "nodes/pg_list.h"

#define CRM_NAME_LEN 64

typedef enum CrmSemantics
{
	CRM_SEM_PROCESS = 'p',
	CRM_SEM_SUCCESS = 's',
	CRM_SEM_FAILURE = 'f'
} CrmSemantics;

typedef struct CrmStageInfo
{
	int64		id;				/* hash key */
	int64		pipeline_id;
	int32		sort;
	char		semantics;		/* CrmSemantics */
	bool		pipeline_is_default;
	char		entity_type[CRM_NAME_LEN];
	char		code[CRM_NAME_LEN];
	bool		robots_loaded;
	List	   *robots;			/* CrmRobot *, in order (robots.c) */
} CrmStageInfo;

/*
 * Stage lookup.  The result points into the cache and stays valid only until
 * the next call into the cache: copy what you keep.  Returns NULL when the
 * stage does not exist.
 */
extern const CrmStageInfo *crm_stage_info(int64 stage_id);

/*
 * The table (in schema crm) and binding prefix of an entity type, palloc'd
 * in the caller's context; an unknown type is an ERROR.
 */
extern char *crm_entity_table(const char *entity_type);
extern char *crm_entity_prefix(const char *entity_type);

/* First stage of the entity type's default pipeline, or 0 when it has none. */
extern int64 crm_default_stage(const char *entity_type);

/*
 * The robots of a stage, loaded on first use.  The list and the robots stay
 * valid while the cache is pinned: pin it before using them across anything
 * that may run SQL (a robot's action may change definitions or accept
 * invalidations), unpin after.  Pins are dropped at transaction end.
 */
extern List *crm_stage_robots(int64 stage_id);
extern void crm_rule_cache_pin(void);
extern void crm_rule_cache_unpin(void);

/*
 * The triggers of an entity type (triggers.h), loaded on first use; NULL
 * for an unknown entity type.  Valid while the cache is pinned, as robots.
 */
struct CrmEntityTriggers;
extern const struct CrmEntityTriggers *crm_entity_triggers(const char *entity_type);

/*
 * The date fields that delays of the entity type's robots follow
 * (due_dates.h), loaded on first use; NULL for an unknown entity type.
 */
struct CrmDueFields;
extern const struct CrmDueFields *crm_entity_due_fields(const char *entity_type);

/* The working-time schedule (work_time.h), loaded on first use. */
struct CrmWorkSchedule;
extern const struct CrmWorkSchedule *crm_work_schedule(void);

/* Registers the invalidation callback (once per backend). */
extern void crm_rule_cache_init(void);

/*
 * Per-relation cache of attribute numbers, dropped with the relation's
 * relcache entry.  Used by the row trigger to find its columns by name once.
 */
typedef struct CrmItemColumns
{
	Oid			relid;			/* hash key */
	AttrNumber	id;
	AttrNumber	stage_id;
	AttrNumber	entity_type;
	AttrNumber	updated_at;
	AttrNumber	created_by;
	AttrNumber	updated_by;
	AttrNumber	stage_changed_at;
} CrmItemColumns;

extern const CrmItemColumns *crm_item_columns(Relation rel);

#endif							/* CRM_RULE_CACHE_H */
