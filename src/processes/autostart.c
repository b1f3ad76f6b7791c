/*-------------------------------------------------------------------------
 *
 * autostart.c
 *	  Auto-start of business processes (SPEC §5, seed 001): a template with
 *	  auto_start 'add' starts when an item of its document type is created,
 *	  with 'modify' when a statement changes an existing one.
 *
 * The engine's BEFORE ROW trigger on the item tables (row_trigger.c) shows
 * every row written to the write hooks registered here (engine/hooks.h);
 * the hook only notes the item, and the statement's AFTER STATEMENT
 * trigger (stage_entry.c), after the robots of the statement ran, starts
 * the noted items' templates, in template id order, as crm.start_process
 * does (each instance's activities in subtransactions of their own).
 *
 * What the hook costs when nothing auto-starts: the templates that
 * auto-start are kept per entity type in the rule cache (a slot loaded on
 * first use, dropped when crm.process_template changes), so a write to an
 * entity type without such a template is a hash lookup.
 *
 * Not noted:
 *	  - a session with crm.import_mode = on;
 *	  - rows written while a COPY ... FROM runs (the utility hook below
 *		counts them; PostgreSQL runs the row triggers from inside CopyFrom);
 *	  - rows written by automation: a robot or a process instance is on the
 *		causal lineage (lineage.c) while it runs, so a process that copies
 *		its deal does not start itself on the copy;
 *	  - an UPDATE that changes only the bookkeeping columns (updated_at,
 *		updated_by, stage_changed_at) or nothing.
 * Those writes still run robots and triggers as usual.
 *
 * Feed posts and drive files (document types "feed_post", "drive_file",
 * no entity types) have no engine row trigger: their own AFTER ROW and
 * AFTER STATEMENT triggers (crm._document_row_written,
 * crm._document_after_statement) note and start them the same way, with
 * the same exclusions; their templates that auto-start are a global slot
 * of the rule cache.
 *
 * The starts of a statement run optimistically in one subtransaction; if
 * anything in it fails (an instance's activities fail alone, so this is a
 * start that could not even begin), it is rolled back and every start is
 * replayed in a subtransaction of its own, a failing one reported with a
 * WARNING: the statement that wrote the items always succeeds.  In the
 * optimistic run, the starts share the template (read and locked once) and
 * the look-up of the user who starts them, and the rows of the instances
 * that complete are appended together at its end, a thousand at a time
 * (crm_process_keep_begin); the replay writes each start's rows as
 * crm.start_process does.
 *
 * Notes form a stack of frames, one per statement being gathered, as the
 * robots' stage changes do (core/frames.h: a frame belongs to the
 * subtransaction level it was opened at and a rolled-back subtransaction
 * drops its frames).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "commands/trigger.h"
#include "access/xact.h"
#include "catalog/namespace.h"
#include "catalog/pg_type.h"
#include "executor/executor.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "storage/proc.h"
#include "nodes/parsenodes.h"
#include "tcop/pquery.h"
#include "tcop/utility.h"
#include "utils/builtins.h"
#include "utils/datum.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/portal.h"
#include "utils/rel.h"
#include "utils/resowner.h"
#include "utils/timestamp.h"

#include "core/citus.h"
#include "core/frames.h"
#include "core/guc.h"
#include "core/rule_cache.h"
#include "core/scope.h"
#include "core/spi_util.h"
#include "engine/hooks.h"
#include "engine/robots.h"
#include "processes/processes.h"

#define AUTOSTART_ADD		0x01
#define AUTOSTART_MODIFY	0x02

/* The active templates of an entity type that auto-start, by id. */
typedef struct AutoStartRules
{
	int			n;
	int64	   *template_ids;
	uint8	   *on;				/* AUTOSTART_ADD | AUTOSTART_MODIFY */
	uint8		mask;			/* of them all */
} AutoStartRules;

typedef struct Note
{
	const char *entity_type;	/* one of the frame's types */
	int64		item_id;
	uint8		on;				/* AUTOSTART_ADD or AUTOSTART_MODIFY */
} Note;

typedef struct Frame
{
	CrmFrame	base;			/* its memory, level, busy (its starts are
								 * running), and n: its notes */
	int			cap;
	Note	   *notes;
	List	   *types;			/* char *: the entity types of its notes, once */
} Frame;

static int	rules_slot = -1;
static int	documents_slot = -1;
static CrmFrameStack frames = {
	.name = "crm process auto-start",
	.frame_size = sizeof(Frame),
	.small = true,
};

static ProcessUtility_hook_type prev_utility_hook = NULL;
static ExecutorStart_hook_type prev_executor_start = NULL;
static int	copy_from_depth = 0;

/* When the library was loaded by a statement (not preloaded): which one. */
static Portal load_portal = NULL;
static TimestampTz load_statement = 0;

/* ---------- the templates that auto-start (rule cache slot) ---------- */

static void *
autostart_load(const char *entity_type)
{
	static SPIPlanPtr plan = NULL;
	Oid			types[1] = {TEXTOID};
	Datum		vals[1];
	MemoryContext cxt = CurrentMemoryContext;
	AutoStartRules *r;
	uint64		i;

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	vals[0] = CStringGetTextDatum(entity_type);
	crm_exec(crm_plan(&plan,
					  "SELECT id, 'add' = ANY (auto_start), 'modify' = ANY (auto_start)"
					  "  FROM crm.process_template"
					  " WHERE document_type = $1 AND active AND cardinality(auto_start) > 0"
					  " ORDER BY id",
					  1, types), vals, NULL, true, 0);
	r = MemoryContextAllocZero(cxt, sizeof(AutoStartRules));
	r->n = (int) SPI_processed;
	r->template_ids = MemoryContextAllocZero(cxt, sizeof(int64) * Max(r->n, 1));
	r->on = MemoryContextAllocZero(cxt, sizeof(uint8) * Max(r->n, 1));
	for (i = 0; i < SPI_processed; i++)
	{
		HeapTuple	tup = SPI_tuptable->vals[i];
		TupleDesc	desc = SPI_tuptable->tupdesc;
		bool		isnull;

		r->template_ids[i] = DatumGetInt64(SPI_getbinval(tup, desc, 1, &isnull));
		if (DatumGetBool(SPI_getbinval(tup, desc, 2, &isnull)))
			r->on[i] |= AUTOSTART_ADD;
		if (DatumGetBool(SPI_getbinval(tup, desc, 3, &isnull)))
			r->on[i] |= AUTOSTART_MODIFY;
		r->mask |= r->on[i];
	}
	SPI_finish();
	return r;
}

/* The templates that auto-start on feed posts and on drive files. */
typedef struct DocumentRules
{
	AutoStartRules *feed_post;
	AutoStartRules *drive_file;
} DocumentRules;

static void *
documents_load(void)
{
	DocumentRules *d = palloc0(sizeof(DocumentRules));

	d->feed_post = autostart_load("feed_post");
	d->drive_file = autostart_load("drive_file");
	return d;
}

/* The templates that auto-start for a document type; NULL when none can. */
static const AutoStartRules *
rules_of(const char *document_type)
{
	if (crm_workspace_document(document_type))
	{
		const DocumentRules *d = crm_global_rules(documents_slot);

		return strcmp(document_type, "feed_post") == 0 ? d->feed_post : d->drive_file;
	}
	return crm_entity_rules(document_type, rules_slot);
}

/* ---------- COPY ... FROM ---------- */

/*
 * Citus: the node that runs a statement writing a distributed table (the
 * coordinator, or a worker node a client writes through) decides whether
 * it is an import, and the nodes holding the shards obey: it sets
 * crm.import_mode LOCAL on them (core/citus.h), once per transaction and
 * value.  A worker node's COPY into a shard is no import by itself: Citus
 * passes the rows of an INSERT ... SELECT that way too.
 */
static LocalTransactionId told_lxid = InvalidLocalTransactionId;
static bool told_known = false;	/* false after a subtransaction's abort,
								 * which may have undone it */
static bool told_import = false;

static bool
told(void)
{
	return told_lxid == MyProc->lxid;
}

static void
tell_shards(bool import)
{
	if (told() ? told_known && told_import == import : !import)
		return;
	crm_citus_set_local("crm.import_mode", import ? "on" : "off");
	told_lxid = MyProc->lxid;
	told_known = true;
	told_import = import;
}

static void
told_subxact_callback(SubXactEvent event, SubTransactionId mySubid,
					  SubTransactionId parentSubid, void *arg)
{
	if (event == SUBXACT_EVENT_ABORT_SUB && told())
		told_known = false;
}

/* Does the statement write a crm table that Citus keeps in shards? */
static bool
writes_distributed(PlannedStmt *pstmt)
{
	ListCell   *lc;

	if (pstmt->commandType == CMD_SELECT && !pstmt->hasModifyingCTE)
		return false;
	foreach(lc, pstmt->rtable)
	{
		RangeTblEntry *rte = lfirst(lc);

		if (rte->rtekind == RTE_RELATION &&
			(rte->requiredPerms & (ACL_INSERT | ACL_UPDATE | ACL_DELETE)) != 0 &&
			crm_table_is_distributed(rte->relid))
			return true;
	}
	return false;
}

/*
 * Whether the statement's writes must start nothing: an import, or a write
 * of automation (a robot or a process on the causal lineage, lineage.c),
 * which the nodes holding the shards cannot see (their backends have no
 * lineage of this one): for auto-start both are the same, and crm.import_mode
 * is what the nodes are told.
 */
static bool
starts_nothing(void)
{
	return crm_import_mode || crm_lineage_has('r') || crm_lineage_has('p');
}

static void
autostart_executor_start(QueryDesc *queryDesc, int eflags)
{
	bool		quiet = starts_nothing();

	if ((quiet || told()) && (eflags & EXEC_FLAG_EXPLAIN_ONLY) == 0 &&
		writes_distributed(queryDesc->plannedstmt))
	{
		/*
		 * One shard's INSERT outside a transaction block (a statement in
		 * autocommit, a job runner's transaction) would reach its node
		 * without a BEGIN, so without the SET LOCAL.
		 */
		if (quiet && !told() && !IsTransactionBlock())
			crm_citus_coordinate();
		tell_shards(quiet);
	}
	if (prev_executor_start)
		prev_executor_start(queryDesc, eflags);
	else
		standard_ExecutorStart(queryDesc, eflags);
}

static void
autostart_utility(PlannedStmt *pstmt, const char *queryString, bool readOnlyTree,
				  ProcessUtilityContext context, ParamListInfo params,
				  QueryEnvironment *queryEnv, DestReceiver *dest, QueryCompletion *qc)
{
	Node	   *stmt = pstmt->utilityStmt;
	bool		copy_from = IsA(stmt, CopyStmt) && ((CopyStmt *) stmt)->is_from;
	bool		restore = false;

	if (copy_from && ((CopyStmt *) stmt)->relation != NULL)
	{
		Oid			relid = RangeVarGetRelid(((CopyStmt *) stmt)->relation, NoLock, true);

		if (OidIsValid(crm_shard_parent(relid)))
			copy_from = false;	/* rows Citus passes on: the sender decided */
		else if (crm_table_is_distributed(relid))
		{
			/* the import of the session, or of this statement only */
			restore = !crm_import_mode && IsTransactionBlock();
			tell_shards(true);
		}
	}
	if (copy_from)
		copy_from_depth++;
	PG_TRY();
	{
		if (prev_utility_hook)
			prev_utility_hook(pstmt, queryString, readOnlyTree, context, params,
							  queryEnv, dest, qc);
		else
			standard_ProcessUtility(pstmt, queryString, readOnlyTree, context, params,
									queryEnv, dest, qc);
	}
	PG_FINALLY();
	{
		if (copy_from)
			copy_from_depth--;
	}
	PG_END_TRY();
	if (restore)
		tell_shards(false);
}

/*
 * A COPY ... FROM is running.  The utility hook counts them; a session
 * that loaded the library during its COPY (not preloaded: the COPY's first
 * row trigger loaded it) passed the hook before it was set, so that one
 * statement is recognised by its portal.
 */
static bool
copy_from_running(void)
{
	if (copy_from_depth > 0)
		return true;
	return load_portal != NULL && ActivePortal == load_portal &&
		GetCurrentStatementStartTimestamp() == load_statement &&
		ActivePortal->commandTag == CMDTAG_COPY;
}

/* ---------- frames ---------- */

static Frame *
current_frame(bool create)
{
	return (Frame *) crm_frame_current(&frames, create);
}

/* The frame's copy of an entity type's name. */
static const char *
frame_type(Frame *f, const char *entity_type)
{
	ListCell   *lc;
	MemoryContext old;
	char	   *copy;

	foreach(lc, f->types)
	{
		if (strcmp((char *) lfirst(lc), entity_type) == 0)
			return (char *) lfirst(lc);
	}
	old = MemoryContextSwitchTo(f->base.cxt);
	copy = pstrdup(entity_type);
	f->types = lappend(f->types, copy);
	MemoryContextSwitchTo(old);
	return copy;
}

static void
note(const char *entity_type, int64 item_id, uint8 on)
{
	Frame	   *f = current_frame(true);
	Note	   *last = f->base.n > 0 ? &f->notes[f->base.n - 1] : NULL;

	entity_type = frame_type(f, entity_type);

	/*
	 * INSERT ... ON CONFLICT DO UPDATE shows the row to insert, then the
	 * existing row it updates instead: with the same id, the item was not
	 * created but changed.
	 */
	if (last != NULL && last->item_id == item_id && last->entity_type == entity_type)
	{
		if (on == AUTOSTART_MODIFY)
			last->on = AUTOSTART_MODIFY;
		return;
	}
	if (f->base.n == f->cap)
	{
		f->cap = f->cap ? f->cap * 2 : 16;
		f->notes = f->notes ? repalloc_huge(f->notes, sizeof(Note) * f->cap)
			: MemoryContextAlloc(f->base.cxt, sizeof(Note) * f->cap);
	}
	last = &f->notes[f->base.n++];
	last->entity_type = entity_type;
	last->item_id = item_id;
	last->on = on;
}

/* ---------- the row hook ---------- */

/* Did the update change a column other than the bookkeeping ones? */
static bool
row_changed(Relation rel, HeapTuple oldtuple, HeapTuple newtuple)
{
	TupleDesc	desc = RelationGetDescr(rel);
	const CrmItemColumns *cols = crm_item_columns(rel);
	AttrNumber	updated_at = cols->updated_at;
	AttrNumber	updated_by = cols->updated_by;
	AttrNumber	stage_changed_at = cols->stage_changed_at;
	int			i;

	for (i = 1; i <= desc->natts; i++)
	{
		Form_pg_attribute att = TupleDescAttr(desc, i - 1);
		bool		oldnull;
		bool		newnull;
		Datum		oldval;
		Datum		newval;

		if (att->attisdropped || i == updated_at || i == updated_by || i == stage_changed_at)
			continue;
		oldval = heap_getattr(oldtuple, i, desc, &oldnull);
		newval = heap_getattr(newtuple, i, desc, &newnull);
		if (oldnull != newnull)
			return true;
		if (!oldnull && !datumIsEqual(oldval, newval, att->attbyval, att->attlen))
			return true;
	}
	return false;
}

static void
autostart_row_written(Relation rel, const char *entity_type, bool is_insert,
					  HeapTuple oldtuple, HeapTuple newtuple, AttrNumber id_att)
{
	const AutoStartRules *r;
	uint8		on = is_insert ? AUTOSTART_ADD : AUTOSTART_MODIFY;
	bool		isnull;
	Datum		id;

	if (crm_import_mode || id_att == InvalidAttrNumber || copy_from_running())
		return;
	r = rules_of(entity_type);
	if (r == NULL || (r->mask & on) == 0)
		return;
	if (crm_lineage_has('r') || crm_lineage_has('p'))
		return;
	if (!is_insert && !row_changed(rel, oldtuple, newtuple))
		return;
	id = heap_getattr(newtuple, id_att, RelationGetDescr(rel), &isnull);
	if (isnull)
		return;
	note(entity_type, DatumGetInt64(id), on);
}

/* ---------- starting ---------- */

typedef struct Start
{
	int64		template_id;
	const char *entity_type;
	int64		item_id;
	CrmProcessTemplate **loaded;	/* the template, loaded once per frame */
} Start;

/* The starts of a frame's notes: each note's templates, in id order. */
static Start *
frame_starts(Frame *f, int *nstarts)
{
	Start	   *starts = NULL;
	int			n = 0;
	int			cap = 0;
	int			i;
	int			j;

	for (i = 0; i < f->base.n; i++)
	{
		Note	   *nt = &f->notes[i];
		const AutoStartRules *r = rules_of(nt->entity_type);

		if (r == NULL)
			continue;
		for (j = 0; j < r->n; j++)
		{
			if ((r->on[j] & nt->on) == 0)
				continue;
			if (n == cap)
			{
				cap = cap ? cap * 2 : 16;
				starts = starts ? repalloc_huge(starts, sizeof(Start) * cap)
					: palloc(sizeof(Start) * cap);
			}
			starts[n].template_id = r->template_ids[j];
			starts[n].entity_type = nt->entity_type;
			starts[n].item_id = nt->item_id;
			starts[n].loaded = NULL;
			n++;
		}
	}
	*nstarts = n;
	return starts;
}

/*
 * Gives each start the slot of its template, so that a template is read
 * and its definition checked once for the statement, not once per item.
 */
static void
share_templates(Start *starts, int n)
{
	CrmProcessTemplate **slots = palloc0(sizeof(CrmProcessTemplate *) * n);
	int64	   *ids = palloc(sizeof(int64) * n);
	int			nids = 0;
	int			i;
	int			k;

	for (i = 0; i < n; i++)
	{
		for (k = 0; k < nids; k++)
			if (ids[k] == starts[i].template_id)
				break;
		if (k == nids)
			ids[nids++] = starts[i].template_id;
		starts[i].loaded = &slots[k];
	}
}

static void
start_one_call(void *arg)
{
	Start	   *s = arg;

	(void) crm_process_start(s->template_id, s->entity_type, s->item_id, NULL, true);
}

typedef struct StartBatch
{
	Start	   *starts;
	int			n;
	MemoryContext cxt;			/* where the templates are read */
	CrmStartShared shared;		/* what the starts look up once */
} StartBatch;

/*
 * A start of the optimistic run: the statement's templates are shared, and
 * so is the look-up of the user who starts them.
 */
static void
start_shared(StartBatch *b, Start *s)
{
	if (*s->loaded == NULL)
		*s->loaded = crm_process_template(s->template_id);
	(void) crm_process_start_template(*s->loaded, s->entity_type, s->item_id, NULL, true,
									  &b->shared);
}

/* The optimistic run's body: every start, each in a memory context reset after it. */
static void
start_all(void *arg)
{
	StartBatch *b = arg;
	MemoryContext per_start = AllocSetContextCreate(b->cxt, "crm process auto-start",
													ALLOCSET_DEFAULT_SIZES);
	int			i;

	share_templates(b->starts, b->n);
	/* the rows of instances that complete are written together, at the end */
	crm_process_keep_begin(&b->shared);
	for (i = 0; i < b->n; i++)
	{
		/* the templates are read into the caller's context, each start runs in per_start */
		if (*b->starts[i].loaded == NULL)
			*b->starts[i].loaded = crm_process_template(b->starts[i].template_id);
		MemoryContextSwitchTo(per_start);
		start_shared(b, &b->starts[i]);
		MemoryContextSwitchTo(b->cxt);
		MemoryContextReset(per_start);
	}
	MemoryContextDelete(per_start);
	crm_process_keep_flush(&b->shared);
}

/*
 * Every start in one subtransaction (crm_run_isolated); false, all rolled
 * back, when one failed.
 */
static bool
run_optimistic(Start *starts, int n)
{
	StartBatch	b;
	ErrorData  *edata;

	memset(&b, 0, sizeof(b));
	b.starts = starts;
	b.n = n;
	b.cxt = CurrentMemoryContext;
	edata = crm_run_isolated(start_all, &b);
	if (edata == NULL)
		return true;
	FreeErrorData(edata);
	return false;
}

static void
run_frame(Frame *f)
{
	bool		was_in_statement;
	int			n;
	Start	   *starts;
	int			i;
	CrmScope	scope;

	f->base.busy = true;
	starts = frame_starts(f, &n);
	/* as the automation owner once: the starts' own scopes nest for free */
	crm_scope_enter(&scope, 0);
	/* started by the statement that wrote the documents (on their shard) */
	was_in_statement = crm_processes_in_statement;
	crm_processes_in_statement = true;
	PG_TRY();
	{
		if (n > 0 && !run_optimistic(starts, n))
		{
			MemoryContext caller = CurrentMemoryContext;
			MemoryContext per_start = AllocSetContextCreate(caller, "crm process auto-start",
															ALLOCSET_DEFAULT_SIZES);

			for (i = 0; i < n; i++)
			{
				ErrorData  *edata;

				MemoryContextSwitchTo(per_start);
				edata = crm_run_isolated(start_one_call, &starts[i]);
				if (edata != NULL)
					ereport(WARNING,
							(errcode(edata->sqlerrcode),
							 errmsg("business process template %lld did not auto-start for %s %lld: %s",
									(long long) starts[i].template_id, starts[i].entity_type,
									(long long) starts[i].item_id, edata->message)));
				MemoryContextSwitchTo(caller);
				MemoryContextReset(per_start);
			}
			MemoryContextDelete(per_start);
		}
	}
	PG_FINALLY();
	{
		crm_processes_in_statement = was_in_statement;
	}
	PG_END_TRY();
	crm_scope_leave(&scope);
	if (starts)
		pfree(starts);
	f->base.n = 0;
	f->base.busy = false;
}

static void
autostart_statement_end(void)
{
	Frame	   *f = current_frame(false);

	if (f == NULL)
		return;
	if (f->base.n > 0)
		run_frame(f);
	/* frames of statements inside it whose end did not come are dropped too */
	crm_frame_pop(&frames, &f->base);
}

/* ---------- feed posts and drive files ---------- */

PG_FUNCTION_INFO_V1(crm_document_row_written);
PG_FUNCTION_INFO_V1(crm_document_after_statement);

/* The document type of a trigger's table: feed_post or drive_file. */
static const char *
trigger_document_type(FunctionCallInfo fcinfo, const char *name, bool row)
{
	TriggerData *td = (TriggerData *) fcinfo->context;
	const char *table;

	if (!CALLED_AS_TRIGGER(fcinfo) || !TRIGGER_FIRED_AFTER(td->tg_event) ||
		row != (TRIGGER_FIRED_FOR_ROW(td->tg_event) != 0))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("%s must be fired AFTER %s", name, row ? "ROW" : "STATEMENT")));
	table = RelationGetRelationName(td->tg_relation);
	if (strncmp(table, "feed_post_", 10) == 0 || strncmp(table, "drive_file_", 11) == 0)
	{
		/* a Citus placement of the reference table (crm.distribute()) */
		Oid			parent = crm_shard_parent(RelationGetRelid(td->tg_relation));

		if (OidIsValid(parent))
			table = get_rel_name(parent);
	}
	if (strcmp(table, "feed_post") == 0)
		return "feed_post";
	if (strcmp(table, "drive_file") == 0)
		return "drive_file";
	ereport(ERROR,
			(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
			 errmsg("%s is a trigger of crm.feed_post and crm.drive_file, not of %s", name, table)));
	return NULL;				/* keep compiler quiet */
}

/*
 * Citus keeps feed posts and drive files in reference tables: a write
 * reaches the placement on every node, and each fires the trigger.  The
 * document's processes start on one of them, the node holding the
 * document's shard of crm.process_instance, where its rows are written.
 */
static bool
placement_starts(Relation rel, HeapTuple tuple)
{
	static SPIPlanPtr plan = NULL;
	Oid			types[1] = {INT8OID};
	Datum		vals[1];
	bool		isnull;
	bool		local;
	CrmScope	scope;

	vals[0] = heap_getattr(tuple, crm_item_columns(rel)->id, RelationGetDescr(rel), &isnull);
	if (isnull)
		return false;
	crm_scope_enter(&scope, CRM_SCOPE_SPI);
	crm_exec(crm_plan(&plan,
					  "SELECT EXISTS (SELECT FROM pg_catalog.pg_dist_placement p,"
					  "   pg_catalog.pg_dist_local_group g"
					  " WHERE p.groupid = g.groupid AND p.shardid = pg_catalog."
					  "   get_shard_id_for_distribution_column('crm.process_instance', $1))",
					  1, types), vals, NULL, true, 1);
	local = SPI_processed == 1 &&
		DatumGetBool(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
	crm_scope_leave(&scope);
	return local;
}

/*
 * crm._document_row_written(): AFTER INSERT OR UPDATE FOR EACH ROW on
 * crm.feed_post and crm.drive_file notes the row, as the engine's row
 * trigger does for items.
 */
Datum
crm_document_row_written(PG_FUNCTION_ARGS)
{
	const char *type = trigger_document_type(fcinfo, "crm._document_row_written()", true);
	TriggerData *td = (TriggerData *) fcinfo->context;
	Relation	rel = td->tg_relation;
	bool		is_insert = TRIGGER_FIRED_BY_INSERT(td->tg_event);
	const AutoStartRules *r = rules_of(type);

	if (r == NULL || (r->mask & (is_insert ? AUTOSTART_ADD : AUTOSTART_MODIFY)) == 0)
		return PointerGetDatum(NULL);
	if (strcmp(RelationGetRelationName(rel), type) != 0 &&
		!placement_starts(rel, td->tg_trigtuple))
		return PointerGetDatum(NULL);
	if (is_insert)
		autostart_row_written(rel, type, true, NULL, td->tg_trigtuple, crm_item_columns(rel)->id);
	else if (TRIGGER_FIRED_BY_UPDATE(td->tg_event))
		autostart_row_written(rel, type, false, td->tg_trigtuple, td->tg_newtuple,
							  crm_item_columns(rel)->id);
	return PointerGetDatum(NULL);
}

/* Does a frame hold notes of feed posts or drive files? */
static bool
frame_has_documents(Frame *f)
{
	ListCell   *lc;

	foreach(lc, f->types)
		if (crm_workspace_document((char *) lfirst(lc)))
			return true;
	return false;
}

/*
 * crm._document_after_statement(): AFTER INSERT OR UPDATE FOR EACH
 * STATEMENT starts what the statement's rows noted.  A frame of item notes
 * only (a statement on items around this one) is left to its own statement.
 */
Datum
crm_document_after_statement(PG_FUNCTION_ARGS)
{
	Frame	   *f;

	(void) trigger_document_type(fcinfo, "crm._document_after_statement()", false);
	f = current_frame(false);
	if (f != NULL && frame_has_documents(f))
		autostart_statement_end();
	return PointerGetDatum(NULL);
}

static const CrmWriteHooks autostart_hooks = {
	autostart_row_written,
	autostart_statement_end
};

void
crm_autostart_init(void)
{
	rules_slot = crm_rule_cache_entity_slot(autostart_load);
	documents_slot = crm_rule_cache_global_slot(documents_load);
	crm_register_write_hooks(&autostart_hooks);
	prev_utility_hook = ProcessUtility_hook;
	ProcessUtility_hook = autostart_utility;
	prev_executor_start = ExecutorStart_hook;
	ExecutorStart_hook = autostart_executor_start;
	RegisterSubXactCallback(told_subxact_callback, NULL);
	if (!process_shared_preload_libraries_in_progress && ActivePortal != NULL &&
		IsTransactionState())
	{
		load_portal = ActivePortal;
		load_statement = GetCurrentStatementStartTimestamp();
	}
}
