/*-------------------------------------------------------------------------
 *
 * rule_cache.c
 *	  Backend-local cache of automation definitions.
 *
 * The row trigger runs for every write to an item, so it must not query the
 * definition tables each time.  This cache holds every stage (with its
 * pipeline and entity type) and the default stage of each entity type, and
 * the attribute numbers of the item tables' well-known columns.
 *
 * What the layers above keep (robots per stage, triggers and due-date fields
 * per entity type, the working-time schedule) is loaded on first use by
 * loaders they register from _PG_init (crm_rule_cache_stage_loader,
 * crm_rule_cache_entity_slot, crm_rule_cache_global_slot), into the cache's
 * memory context, and dropped with it: this file calls no layer above core.
 * Everything is read as automation (core/scope.h), whoever's statement
 * needed it first.
 *
 * Invalidation follows pg_cron: a statement trigger on each definition table
 * (crm.definitions_changed) registers a relcache invalidation for that
 * table; our relcache callback marks the cache stale, in this backend at the
 * end of the command and in every other backend when the change commits.
 * The cache is rebuilt on its next use.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "access/table.h"
#include "access/tableam.h"
#include "catalog/namespace.h"
#include "catalog/pg_type.h"
#include "commands/trigger.h"
#include "parser/parse_relation.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "lib/stringinfo.h"
#include "utils/builtins.h"
#include "utils/hsearch.h"
#include "utils/inval.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/snapmgr.h"

#include "access/xact.h"
#include "core/citus.h"
#include "core/rule_cache.h"
#include "core/scope.h"

/* Definition tables whose changes make the cache stale. */
static const char *const definition_tables[] = {
	"entity_type", "pipeline", "stage", "user_field", "robot", "trigger",
	"work_schedule", "holiday", "process_template"
};
#define N_DEFINITION_TABLES lengthof(definition_tables)

typedef struct EntityTypeInfo
{
	char		code[CRM_NAME_LEN]; /* hash key */
	char		table_name[CRM_NAME_LEN];
	char		prefix[16];
	/* loaded on first use by the registered loaders (crm_entity_rules) */
	bool		loaded[CRM_RULE_CACHE_SLOTS];
	void	   *data[CRM_RULE_CACHE_SLOTS];
} EntityTypeInfo;

typedef struct DefaultStage
{
	char		entity_type[CRM_NAME_LEN];	/* hash key */
	int64		stage_id;
} DefaultStage;

static MemoryContext RuleCacheContext = NULL;
static HTAB *StageHash = NULL;
static HTAB *DefaultStageHash = NULL;
static HTAB *EntityTypeHash = NULL;
static HTAB *ItemColumnsHash = NULL;
static Oid	definition_relids[N_DEFINITION_TABLES];
static bool rule_cache_valid = false;

/*
 * The cache was (partly) read under a transaction snapshot (REPEATABLE READ
 * or SERIALIZABLE), which may be older than a definition change whose
 * invalidation it already consumed: it is right for this transaction only,
 * and dropped at its end.
 */
static bool rule_cache_xact_local = false;

static inline void
note_snapshot(void)
{
	if (IsolationUsesXactSnapshot())
		rule_cache_xact_local = true;
}

/*
 * The row triggers look up the same entity type row after row: the last
 * one found is kept (it lives in RuleCacheContext, forgotten on reload).
 */
static EntityTypeInfo *last_entity_type = NULL;

/* The registered loaders. */
static CrmStageRulesLoader stage_loader = NULL;
static CrmEntityRulesLoader entity_loaders[CRM_RULE_CACHE_SLOTS];
static int	n_entity_loaders = 0;
static CrmGlobalRulesLoader global_loaders[CRM_RULE_CACHE_SLOTS];
static int	n_global_loaders = 0;

/* What the global loaders loaded, for this generation of the cache. */
static bool global_loaded[CRM_RULE_CACHE_SLOTS];
static void *global_data[CRM_RULE_CACHE_SLOTS];

static EntityTypeInfo *
find_entity_type(const char *entity_type)
{
	char		key[CRM_NAME_LEN];
	EntityTypeInfo *et;

	if (last_entity_type != NULL && strcmp(last_entity_type->code, entity_type) == 0)
		return last_entity_type;
	memset(key, 0, sizeof(key));
	strlcpy(key, entity_type, CRM_NAME_LEN);
	et = hash_search(EntityTypeHash, key, HASH_FIND, NULL);
	if (et != NULL)
		last_entity_type = et;
	return et;
}
static bool callback_registered = false;

/*
 * Pinning: while a trigger uses cached robots, a reload must not free them.
 * A reload under pins retires the old context; retired contexts are freed
 * once nothing is pinned (at the latest at transaction end).
 */
static int	cache_pins = 0;
static List *retired_contexts = NIL;

static void
free_retired(void)
{
	ListCell   *lc;

	foreach(lc, retired_contexts)
		MemoryContextDelete((MemoryContext) lfirst(lc));
	list_free(retired_contexts);
	retired_contexts = NIL;
}

void
crm_rule_cache_pin(void)
{
	cache_pins++;
}

void
crm_rule_cache_unpin(void)
{
	if (cache_pins > 0)
		cache_pins--;
	if (cache_pins == 0 && retired_contexts != NIL)
		free_retired();
}

static void
rule_cache_xact_callback(XactEvent event, void *arg)
{
	if (event == XACT_EVENT_COMMIT || event == XACT_EVENT_ABORT ||
		event == XACT_EVENT_PARALLEL_COMMIT || event == XACT_EVENT_PARALLEL_ABORT ||
		event == XACT_EVENT_PREPARE)
	{
		cache_pins = 0;
		if (retired_contexts != NIL)
			free_retired();
		if (rule_cache_xact_local)
		{
			rule_cache_valid = false;
			rule_cache_xact_local = false;
		}
	}
}

static void
rule_cache_relcache_callback(Datum arg, Oid relid)
{
	int			i;

	if (relid == InvalidOid)
	{
		rule_cache_valid = false;
		if (ItemColumnsHash)
		{
			hash_destroy(ItemColumnsHash);
			ItemColumnsHash = NULL;
		}
		return;
	}
	for (i = 0; i < N_DEFINITION_TABLES; i++)
	{
		if (definition_relids[i] == relid)
		{
			rule_cache_valid = false;
			break;
		}
	}
	if (ItemColumnsHash)
		hash_search(ItemColumnsHash, &relid, HASH_REMOVE, NULL);
}

void
crm_rule_cache_init(void)
{
	if (callback_registered)
		return;
	CacheRegisterRelcacheCallback(rule_cache_relcache_callback, (Datum) 0);
	RegisterXactCallback(rule_cache_xact_callback, NULL);
	callback_registered = true;
}

static void
resolve_definition_relids(void)
{
	Oid			nsp = get_namespace_oid("crm", true);
	int			i;

	for (i = 0; i < N_DEFINITION_TABLES; i++)
		definition_relids[i] = OidIsValid(nsp) ?
			get_relname_relid(definition_tables[i], nsp) : InvalidOid;
}

static char
semantics_code(const char *s)
{
	if (strcmp(s, "success") == 0)
		return CRM_SEM_SUCCESS;
	if (strcmp(s, "failure") == 0)
		return CRM_SEM_FAILURE;
	return CRM_SEM_PROCESS;
}

/* ---------- reading the definition tables ---------- */

/*
 * scan_definitions(TABLE, N, COLUMNS, ROW, ARG): ROW(values, nulls, ARG) for
 * each row of crm.TABLE visible to a new snapshot, with its COLUMNS (of the
 * types given; a table that lacks one, or has it of another type, is an
 * error).  The rows are read as they are: NULLs reach ROW.
 */
typedef struct DefColumn
{
	const char *name;
	Oid			type;
} DefColumn;

typedef void (*DefRow) (Datum *values, bool *nulls, void *arg);

#define DEF_MAX_COLS 8

/*
 * The same for a table whose rows Citus keeps in shards (core/citus.h): a
 * SELECT, which Citus routes to this node's copy of the reference table.
 * ROW runs in the caller's memory context.
 */
static void
scan_definitions_by_sql(Relation rel, int ncols, const DefColumn *cols, DefRow row, void *arg)
{
	MemoryContext caller = CurrentMemoryContext;
	StringInfoData q;
	Datum		values[DEF_MAX_COLS];
	bool		nulls[DEF_MAX_COLS];
	uint64		r;
	int			i;

	initStringInfo(&q);
	appendStringInfoString(&q, "SELECT ");
	for (i = 0; i < ncols; i++)
		appendStringInfo(&q, "%s%s", i > 0 ? ", " : "", quote_identifier(cols[i].name));
	appendStringInfo(&q, " FROM crm.%s", quote_identifier(RelationGetRelationName(rel)));
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	if (SPI_execute(q.data, true, 0) != SPI_OK_SELECT)
		elog(ERROR, "could not read crm.%s", RelationGetRelationName(rel));
	for (r = 0; r < SPI_processed; r++)
	{
		MemoryContext old;

		for (i = 0; i < ncols; i++)
			values[i] = SPI_getbinval(SPI_tuptable->vals[r], SPI_tuptable->tupdesc, i + 1, &nulls[i]);
		old = MemoryContextSwitchTo(caller);
		row(values, nulls, arg);
		MemoryContextSwitchTo(old);
	}
	SPI_finish();
}

static void
scan_definitions(const char *table, int ncols, const DefColumn *cols, DefRow row, void *arg)
{
	Oid			nsp = get_namespace_oid("crm", false);
	Oid			relid = get_relname_relid(table, nsp);
	Relation	rel;
	AttrNumber	atts[DEF_MAX_COLS];
	Snapshot	snap;
	TableScanDesc scan;
	TupleTableSlot *slot;
	Datum		values[DEF_MAX_COLS];
	bool		nulls[DEF_MAX_COLS];
	int			i;

	Assert(ncols <= DEF_MAX_COLS);
	if (!OidIsValid(relid))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_TABLE),
				 errmsg("could not load the automation's definitions: table crm.%s does not exist", table)));
	rel = table_open(relid, AccessShareLock);
	if (rel->rd_rel->relkind != RELKIND_RELATION)
		ereport(ERROR,
				(errcode(ERRCODE_WRONG_OBJECT_TYPE),
				 errmsg("could not load the automation's definitions: crm.%s is not a table", table)));
	for (i = 0; i < ncols; i++)
	{
		atts[i] = attnameAttNum(rel, cols[i].name, false);
		if (atts[i] <= 0 ||
			TupleDescAttr(RelationGetDescr(rel), atts[i] - 1)->atttypid != cols[i].type)
			ereport(ERROR,
					(errcode(ERRCODE_DATATYPE_MISMATCH),
					 errmsg("could not load the automation's definitions: column %s of crm.%s is missing or of another type",
							cols[i].name, table)));
	}
	if (crm_table_is_distributed(relid))
	{
		scan_definitions_by_sql(rel, ncols, cols, row, arg);
		table_close(rel, NoLock);
		return;
	}
	snap = RegisterSnapshot(GetTransactionSnapshot());
	scan = table_beginscan(rel, snap, 0, NULL);
	slot = table_slot_create(rel, NULL);
	while (table_scan_getnextslot(scan, ForwardScanDirection, slot))
	{
		for (i = 0; i < ncols; i++)
			values[i] = slot_getattr(slot, atts[i], &nulls[i]);
		row(values, nulls, arg);
	}
	ExecDropSingleTupleTableSlot(slot);
	table_endscan(scan);
	UnregisterSnapshot(snap);
	table_close(rel, NoLock);	/* locked until the end of the transaction, as a query's */
}

/* A pipeline, for the stages that refer to it. */
typedef struct PipelineRow
{
	int64		id;				/* hash key */
	char		entity_type[CRM_NAME_LEN];
	bool		is_default;
} PipelineRow;

static const DefColumn pipeline_cols[] = {
	{"id", INT8OID}, {"entity_type", TEXTOID}, {"is_default", BOOLOID}
};

static void
pipeline_row(Datum *values, bool *nulls, void *arg)
{
	int64		id;
	PipelineRow *p;

	if (nulls[0] || nulls[1])
		return;
	id = DatumGetInt64(values[0]);
	p = hash_search((HTAB *) arg, &id, HASH_ENTER, NULL);
	text_to_cstring_buffer(DatumGetTextPP(values[1]), p->entity_type, CRM_NAME_LEN);
	p->is_default = !nulls[2] && DatumGetBool(values[2]);
}

static HTAB *
load_pipelines(void)
{
	HASHCTL		ctl;
	HTAB	   *h;

	memset(&ctl, 0, sizeof(ctl));
	ctl.keysize = sizeof(int64);
	ctl.entrysize = sizeof(PipelineRow);
	ctl.hcxt = CurrentMemoryContext;
	h = hash_create("crm pipelines being loaded", 32, &ctl,
					HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);
	scan_definitions("pipeline", 3, pipeline_cols, pipeline_row, h);
	return h;
}

static const DefColumn entity_type_cols[] = {
	{"code", TEXTOID}, {"table_name", TEXTOID}, {"id_prefix", TEXTOID}
};

static void
entity_type_row(Datum *values, bool *nulls, void *arg)
{
	char		key[CRM_NAME_LEN];
	EntityTypeInfo *et;

	if (nulls[0] || nulls[1] || nulls[2])
		return;
	memset(key, 0, sizeof(key));
	text_to_cstring_buffer(DatumGetTextPP(values[0]), key, CRM_NAME_LEN);
	et = hash_search(EntityTypeHash, key, HASH_ENTER, NULL);
	text_to_cstring_buffer(DatumGetTextPP(values[1]), et->table_name, CRM_NAME_LEN);
	text_to_cstring_buffer(DatumGetTextPP(values[2]), et->prefix, sizeof(et->prefix));
	memset(et->loaded, 0, sizeof(et->loaded));
	memset(et->data, 0, sizeof(et->data));
}

static const DefColumn stage_cols[] = {
	{"id", INT8OID}, {"pipeline_id", INT8OID}, {"sort", INT4OID}, {"semantics", TEXTOID},
	{"code", TEXTOID}
};

/*
 * A stage with its pipeline's entity type (a stage whose pipeline is not
 * there is left out, as the join did); the first stage of a default
 * pipeline, by sort then id, is its entity type's default stage.
 */
static void
stage_row(Datum *values, bool *nulls, void *arg)
{
	PipelineRow *p;
	CrmStageInfo *st;
	int64		id;
	int64		pipeline_id;
	char		semantics[16];

	if (nulls[0] || nulls[1] || nulls[2] || nulls[3] || nulls[4])
		return;
	id = DatumGetInt64(values[0]);
	pipeline_id = DatumGetInt64(values[1]);
	p = hash_search((HTAB *) arg, &pipeline_id, HASH_FIND, NULL);
	if (p == NULL)
		return;
	st = hash_search(StageHash, &id, HASH_ENTER, NULL);
	st->pipeline_id = pipeline_id;
	st->sort = DatumGetInt32(values[2]);
	text_to_cstring_buffer(DatumGetTextPP(values[3]), semantics, sizeof(semantics));
	st->semantics = semantics_code(semantics);
	text_to_cstring_buffer(DatumGetTextPP(values[4]), st->code, CRM_NAME_LEN);
	strlcpy(st->entity_type, p->entity_type, CRM_NAME_LEN);
	st->pipeline_is_default = p->is_default;
	st->rules_loaded = false;
	st->rules = NIL;

	if (st->pipeline_is_default)
	{
		bool		found;
		DefaultStage *d = hash_search(DefaultStageHash, st->entity_type, HASH_ENTER, &found);
		CrmStageInfo *cur = found ? hash_search(StageHash, &d->stage_id, HASH_FIND, NULL) : NULL;

		if (cur == NULL || st->sort < cur->sort ||
			(st->sort == cur->sort && id < d->stage_id))
			d->stage_id = id;
	}
}

/*
 * Reloads every stage.  Stages are few (a pipeline has a handful), so one
 * query is cheaper than loading them one by one.
 */
static void
rule_cache_load(void)
{
	CrmScope	scope;
	HASHCTL		ctl;
	HTAB	   *pipelines;

	crm_rule_cache_init();

	if (RuleCacheContext != NULL && cache_pins > 0)
	{
		/* someone still walks the old robots: keep them until unpinned */
		MemoryContext old = MemoryContextSwitchTo(TopMemoryContext);

		retired_contexts = lappend(retired_contexts, RuleCacheContext);
		MemoryContextSwitchTo(old);
		RuleCacheContext = NULL;
	}
	if (RuleCacheContext == NULL)
		RuleCacheContext = AllocSetContextCreate(CacheMemoryContext,
												 "crm rule cache",
												 ALLOCSET_DEFAULT_SIZES);
	else
		MemoryContextReset(RuleCacheContext);
	StageHash = NULL;
	DefaultStageHash = NULL;
	last_entity_type = NULL;
	memset(global_loaded, 0, sizeof(global_loaded));
	memset(global_data, 0, sizeof(global_data));
	EntityTypeHash = NULL;

	/*
	 * Marked valid before loading: an invalidation that arrives while we read
	 * (locks taken by the query accept invalidations) makes the next use
	 * reload again rather than being lost.
	 */
	rule_cache_valid = true;
	resolve_definition_relids();

	memset(&ctl, 0, sizeof(ctl));
	ctl.keysize = sizeof(int64);
	ctl.entrysize = sizeof(CrmStageInfo);
	ctl.hcxt = RuleCacheContext;
	StageHash = hash_create("crm stages", 256, &ctl,
							HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);

	memset(&ctl, 0, sizeof(ctl));
	ctl.keysize = CRM_NAME_LEN;
	ctl.entrysize = sizeof(DefaultStage);
	ctl.hcxt = RuleCacheContext;
	DefaultStageHash = hash_create("crm default stages", 32, &ctl,
								   HASH_ELEM | HASH_STRINGS | HASH_CONTEXT);

	memset(&ctl, 0, sizeof(ctl));
	ctl.keysize = CRM_NAME_LEN;
	ctl.entrysize = sizeof(EntityTypeInfo);
	ctl.hcxt = RuleCacheContext;
	EntityTypeHash = hash_create("crm entity types", 32, &ctl,
								 HASH_ELEM | HASH_STRINGS | HASH_CONTEXT);

	/* read as automation: the caller's search_path finds nothing here */
	crm_scope_enter(&scope, CRM_SCOPE_SPI);

	/*
	 * Each table is read with a new snapshot (in READ COMMITTED), which sees
	 * the change whose invalidation brought us here even if the statement's
	 * own snapshot is older.  The tables are scanned directly rather than
	 * queried: a backend's first write to an item would otherwise parse and
	 * plan these queries (about 4 million instructions, more than the
	 * write).
	 */
	note_snapshot();
	pipelines = load_pipelines();
	scan_definitions("entity_type", 3, entity_type_cols, entity_type_row, NULL);
	scan_definitions("stage", 5, stage_cols, stage_row, pipelines);
	hash_destroy(pipelines);
	crm_scope_leave(&scope);
}

static inline void
rule_cache_ensure(void)
{
	if (!rule_cache_valid || StageHash == NULL)
		rule_cache_load();
}

const CrmStageInfo *
crm_stage_info(int64 stage_id)
{
	rule_cache_ensure();
	return hash_search(StageHash, &stage_id, HASH_FIND, NULL);
}

const CrmStageInfo *
crm_stage_info_required(int64 stage_id)
{
	const CrmStageInfo *st = crm_stage_info(stage_id);

	if (st == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("stage %lld does not exist", (long long) stage_id),
				 errhint("Find a stage id with crm.stage(entity_type, code).")));
	return st;
}

void
crm_rule_cache_stage_loader(CrmStageRulesLoader loader)
{
	stage_loader = loader;
}

List *
crm_stage_rules(int64 stage_id)
{
	CrmStageInfo *st;

	rule_cache_ensure();
	st = hash_search(StageHash, &stage_id, HASH_FIND, NULL);
	if (st == NULL || stage_loader == NULL)
		return NIL;
	if (!st->rules_loaded)
	{
		MemoryContext cxt = RuleCacheContext;
		MemoryContext old;
		List	   *rules;
		CrmScope	scope;

		crm_scope_enter(&scope, CRM_SCOPE_SPI);
		note_snapshot();
		old = MemoryContextSwitchTo(cxt);
		rules = stage_loader(stage_id);
		MemoryContextSwitchTo(old);
		crm_scope_leave(&scope);

		/*
		 * Loading ran SQL, which may have accepted an invalidation and
		 * rebuilt the cache: store only into the generation we loaded for.
		 */
		if (cxt == RuleCacheContext && rule_cache_valid)
		{
			st = hash_search(StageHash, &stage_id, HASH_FIND, NULL);
			if (st != NULL)
			{
				st->rules = rules;
				st->rules_loaded = true;
			}
		}
		return rules;
	}
	return st->rules;
}

int
crm_rule_cache_entity_slot(CrmEntityRulesLoader loader)
{
	if (n_entity_loaders >= CRM_RULE_CACHE_SLOTS)
		elog(ERROR, "too many entity rule loaders");
	entity_loaders[n_entity_loaders] = loader;
	return n_entity_loaders++;
}

int
crm_rule_cache_global_slot(CrmGlobalRulesLoader loader)
{
	if (n_global_loaders >= CRM_RULE_CACHE_SLOTS)
		elog(ERROR, "too many global rule loaders");
	global_loaders[n_global_loaders] = loader;
	return n_global_loaders++;
}

/*
 * What an entity type keeps besides its row, loaded on first use by the
 * slot's loader into the cache's context.
 */
void *
crm_entity_rules(const char *entity_type, int slot)
{
	CrmScope	scope;
	EntityTypeInfo *et;
	MemoryContext cxt;
	MemoryContext old;
	void	   *data;

	Assert(slot >= 0 && slot < n_entity_loaders);
	rule_cache_ensure();
	et = find_entity_type(entity_type);
	if (et == NULL)
		return NULL;
	if (et->loaded[slot])
		return et->data[slot];

	cxt = RuleCacheContext;
	crm_scope_enter(&scope, CRM_SCOPE_SPI);
	note_snapshot();
	old = MemoryContextSwitchTo(cxt);
	data = entity_loaders[slot] (entity_type);
	MemoryContextSwitchTo(old);
	crm_scope_leave(&scope);
	/* as for stages: store only into the generation we loaded for */
	if (cxt == RuleCacheContext && rule_cache_valid)
	{
		et = find_entity_type(entity_type);
		if (et != NULL)
		{
			et->data[slot] = data;
			et->loaded[slot] = true;
		}
	}
	return data;
}

static EntityTypeInfo *
entity_type_info(const char *entity_type)
{
	EntityTypeInfo *et;

	rule_cache_ensure();
	et = find_entity_type(entity_type);
	if (et == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("unknown entity type \"%s\"", entity_type)));
	return et;
}

char *
crm_entity_table(const char *entity_type)
{
	return pstrdup(entity_type_info(entity_type)->table_name);
}

bool
crm_workspace_document(const char *document_type)
{
	return document_type != NULL &&
		(strcmp(document_type, "feed_post") == 0 || strcmp(document_type, "drive_file") == 0);
}

char *
crm_document_table(const char *document_type)
{
	if (crm_workspace_document(document_type))
		return pstrdup(document_type);
	return crm_entity_table(document_type);
}

char *
crm_entity_prefix(const char *entity_type)
{
	return pstrdup(entity_type_info(entity_type)->prefix);
}

int64
crm_default_stage(const char *entity_type)
{
	char		key[CRM_NAME_LEN];
	DefaultStage *d;

	rule_cache_ensure();
	memset(key, 0, sizeof(key));
	strlcpy(key, entity_type, CRM_NAME_LEN);
	d = hash_search(DefaultStageHash, key, HASH_FIND, NULL);
	return d ? d->stage_id : 0;
}

/* A user column's number, or InvalidAttrNumber when the table lacks it. */
static AttrNumber
user_attnum(TupleDesc desc, const char *name)
{
	int			n = SPI_fnumber(desc, name);

	return n > 0 ? (AttrNumber) n : InvalidAttrNumber;
}

const CrmItemColumns *
crm_item_columns(Relation rel)
{
	Oid			relid = RelationGetRelid(rel);
	CrmItemColumns *cols;
	bool		found;
	TupleDesc	desc = RelationGetDescr(rel);

	crm_rule_cache_init();
	if (ItemColumnsHash == NULL)
	{
		HASHCTL		ctl;

		memset(&ctl, 0, sizeof(ctl));
		ctl.keysize = sizeof(Oid);
		ctl.entrysize = sizeof(CrmItemColumns);
		ctl.hcxt = CacheMemoryContext;
		ItemColumnsHash = hash_create("crm item columns", 16, &ctl,
									  HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);
	}
	cols = hash_search(ItemColumnsHash, &relid, HASH_ENTER, &found);
	if (!found)
	{
		cols->id = user_attnum(desc, "id");
		cols->stage_id = user_attnum(desc, "stage_id");
		cols->entity_type = user_attnum(desc, "entity_type");
		cols->updated_at = user_attnum(desc, "updated_at");
		cols->created_by = user_attnum(desc, "created_by");
		cols->updated_by = user_attnum(desc, "updated_by");
		cols->stage_changed_at = user_attnum(desc, "stage_changed_at");
	}
	return cols;
}

PG_FUNCTION_INFO_V1(crm_definitions_changed);

/*
 * Statement trigger on the definition tables: every backend drops its cache.
 */
Datum
crm_definitions_changed(PG_FUNCTION_ARGS)
{
	TriggerData *trigdata = (TriggerData *) fcinfo->context;

	if (!CALLED_AS_TRIGGER(fcinfo))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("crm.definitions_changed() must be called as a trigger")));

	CacheInvalidateRelcache(trigdata->tg_relation);

	/*
	 * On a distributed installation the trigger fires on a node's copy (a
	 * shard) of the reference table: the cache watches the table itself.
	 */
	{
		Oid			parent = crm_shard_parent(RelationGetRelid(trigdata->tg_relation));

		if (OidIsValid(parent))
			CacheInvalidateRelcacheByRelid(parent);
	}
	PG_RETURN_POINTER(NULL);
}

/* What a global loader keeps, loaded on first use into the cache's context. */
void *
crm_global_rules(int slot)
{
	CrmScope	scope;
	MemoryContext cxt;
	MemoryContext old;
	void	   *data;

	Assert(slot >= 0 && slot < n_global_loaders);
	rule_cache_ensure();
	if (global_loaded[slot])
		return global_data[slot];
	cxt = RuleCacheContext;
	crm_scope_enter(&scope, CRM_SCOPE_SPI);
	note_snapshot();
	old = MemoryContextSwitchTo(cxt);
	data = global_loaders[slot] ();
	MemoryContextSwitchTo(old);
	crm_scope_leave(&scope);
	if (cxt == RuleCacheContext && rule_cache_valid)
	{
		global_data[slot] = data;
		global_loaded[slot] = true;
	}
	return data;
}
