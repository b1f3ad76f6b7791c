/*-------------------------------------------------------------------------
 *
 * rule_cache.h
 *	  Backend-local cache of automation definitions: entity types, stages
 *	  and item columns; and what the layers above load into it through the
 *	  loaders they register (robots per stage, triggers and due-date fields
 *	  per entity type, the working-time schedule).
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
	bool		rules_loaded;
	List	   *rules;			/* what the stage loader loaded (robots) */
} CrmStageInfo;

/*
 * Stage lookup.  The result points into the cache and stays valid only until
 * the next call into the cache: copy what you keep.  Returns NULL when the
 * stage does not exist.
 */
extern const CrmStageInfo *crm_stage_info(int64 stage_id);

/* The same, where an unknown stage is the caller's mistake: an ERROR. */
extern const CrmStageInfo *crm_stage_info_required(int64 stage_id);

/*
 * The table (in schema crm) and binding prefix of an entity type, palloc'd
 * in the caller's context; an unknown type is an ERROR.
 */
extern char *crm_entity_table(const char *entity_type);
extern char *crm_entity_prefix(const char *entity_type);

/*
 * Business processes also run on feed posts (document type "feed_post")
 * and drive files ("drive_file"), which are no entity types: rows of
 * crm.feed_post and crm.drive_file.  crm_workspace_document says whether a
 * document type is one of them; crm_document_table gives a document type's
 * table (in schema crm), an entity type's or theirs.
 */
extern bool crm_workspace_document(const char *document_type);
extern char *crm_document_table(const char *document_type);

/* First stage of the entity type's default pipeline, or 0 when it has none. */
extern int64 crm_default_stage(const char *entity_type);

/*
 * What the layers above keep in the cache, loaded on first use by loaders
 * they register once, from _PG_init, into the cache's memory context:
 *
 *	- per stage, one list (the robots, engine/robots.c): crm_stage_rules;
 *	- per entity type, a slot per loader (triggers, due-date fields):
 *	  crm_entity_rules, NULL for an unknown entity type;
 *	- global, a slot per loader (the working-time schedule): crm_global_rules.
 *
 * What they return stays valid while the cache is pinned: pin it before using
 * it across anything that may run SQL (an action may change definitions or
 * accept invalidations), unpin after.  Pins are dropped at transaction end.
 */
#define CRM_RULE_CACHE_SLOTS 4

typedef List *(*CrmStageRulesLoader) (int64 stage_id);
typedef void *(*CrmEntityRulesLoader) (const char *entity_type);
typedef void *(*CrmGlobalRulesLoader) (void);

extern void crm_rule_cache_stage_loader(CrmStageRulesLoader loader);
extern int	crm_rule_cache_entity_slot(CrmEntityRulesLoader loader);
extern int	crm_rule_cache_global_slot(CrmGlobalRulesLoader loader);

extern List *crm_stage_rules(int64 stage_id);
extern void *crm_entity_rules(const char *entity_type, int slot);
extern void *crm_global_rules(int slot);

extern void crm_rule_cache_pin(void);
extern void crm_rule_cache_unpin(void);

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
