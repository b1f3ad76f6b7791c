/*-------------------------------------------------------------------------
 *
 * index_probe.c
 *	  Reading rows of a crm table through one of its btree indexes
 *	  (core/index_probe.h).
 *
 * As PostgreSQL's own code reads catalogs by index (systable_beginscan) and
 * logical replication finds the rows it applies to (RelationFindReplTuple-
 * ByIndex): scan keys built from the index's operator families, one index
 * scan rescanned for each probe, rows returned in a slot of the table.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "access/nbtree.h"
#include "access/relation.h"
#include "access/table.h"
#include "access/tableam.h"
#include "access/xact.h"
#include "catalog/namespace.h"
#include "catalog/pg_am.h"
#include "executor/executor.h"
#include "executor/spi.h"
#include "lib/stringinfo.h"
#include "utils/builtins.h"
#include "miscadmin.h"
#include "utils/acl.h"
#include "utils/lsyscache.h"
#include "utils/rel.h"
#include "utils/snapmgr.h"

#include "core/citus.h"
#include "core/index_probe.h"

static Oid
crm_relation_oid(const char *name)
{
	Oid			relid = get_relname_relid(name, get_namespace_oid("crm", false));

	if (!OidIsValid(relid))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("relation \"crm.%s\" does not exist", name)));
	return relid;
}

void
crm_probe_begin(CrmProbe *p, const char *table, const char *index, int nkeys)
{
	int			i;

	memset(p, 0, sizeof(*p));
	p->heap = table_open(crm_relation_oid(table), AccessShareLock);
	p->index = index_open(crm_relation_oid(index), AccessShareLock);
	if (p->index->rd_index->indrelid != RelationGetRelid(p->heap) ||
		p->index->rd_rel->relam != BTREE_AM_OID ||
		nkeys < 1 || nkeys > CRM_PROBE_MAX_KEYS ||
		nkeys > IndexRelationGetNumberOfKeyAttributes(p->index))
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("index \"crm.%s\" cannot be probed on %d columns of \"crm.%s\"",
						index, nkeys, table)));
	p->nkeys = nkeys;
	if (crm_table_is_distributed(RelationGetRelid(p->heap)))
	{
		StringInfoData q;

		p->by_sql = true;
		initStringInfo(&q);
		appendStringInfo(&q, "SELECT * FROM crm.%s WHERE ",
						 quote_identifier(RelationGetRelationName(p->heap)));
		for (i = 0; i < nkeys; i++)
		{
			AttrNumber	att = p->index->rd_index->indkey.values[i];

			if (att <= 0)
				elog(ERROR, "index \"crm.%s\" has an expression column", index);
			appendStringInfo(&q, "%s%s = $%d", i > 0 ? " AND " : "",
							 quote_identifier(NameStr(TupleDescAttr(RelationGetDescr(p->heap), att - 1)->attname)),
							 i + 1);
			p->key_types[i] = TupleDescAttr(RelationGetDescr(p->heap), att - 1)->atttypid;
		}
		p->query = q.data;
		p->slot = MakeSingleTupleTableSlot(RelationGetDescr(p->heap), &TTSOpsHeapTuple);
		return;
	}
	for (i = 0; i < nkeys; i++)
	{
		Oid			type = p->index->rd_opcintype[i];
		Oid			op = get_opfamily_member(p->index->rd_opfamily[i], type, type,
											 BTEqualStrategyNumber);

		if (!OidIsValid(op))
			elog(ERROR, "no equality operator for column %d of index \"crm.%s\"", i + 1, index);
		ScanKeyEntryInitialize(&p->keys[i], 0, i + 1, BTEqualStrategyNumber, type,
							   p->index->rd_indcollation[i], get_opcode(op), (Datum) 0);
	}

	/* what SPI would see: every earlier command of the transaction */
	CommandCounterIncrement();
	PushCopiedSnapshot(GetTransactionSnapshot());
	UpdateActiveSnapshotCommandId();
	p->slot = table_slot_create(p->heap, NULL);
	p->scan = index_beginscan(p->heap, p->index, GetActiveSnapshot(), nkeys, 0);
}

AttrNumber
crm_probe_attnum(CrmProbe *p, const char *column)
{
	AttrNumber	attnum = get_attnum(RelationGetRelid(p->heap), column);

	if (attnum == InvalidAttrNumber)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_COLUMN),
				 errmsg("column \"%s\" of relation \"crm.%s\" does not exist",
						column, RelationGetRelationName(p->heap))));
	return attnum;
}

/*
 * The rows of a probe of a distributed table, by SELECT, as tuples of the
 * table's descriptor (columns matched by name: the placeholder's dropped
 * columns stay NULL), in the caller's memory context.
 */
static void
probe_by_sql(CrmProbe *p, const Datum *values)
{
	MemoryContext caller = CurrentMemoryContext;
	TupleDesc	desc = RelationGetDescr(p->heap);
	uint64		r;
	int			ret;

	p->rows = NIL;
	p->next_row = 0;
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	ret = SPI_execute_with_args(p->query, p->nkeys, p->key_types, (Datum *) values, NULL, true, 0);
	if (ret != SPI_OK_SELECT)
		elog(ERROR, "could not read crm.%s: %s", RelationGetRelationName(p->heap),
			 SPI_result_code_string(ret));
	for (r = 0; r < SPI_processed; r++)
	{
		TupleDesc	sdesc = SPI_tuptable->tupdesc;
		Datum	   *vals = palloc0(sizeof(Datum) * desc->natts);
		bool	   *nulls = palloc(sizeof(bool) * desc->natts);
		MemoryContext old;
		int			a;

		memset(nulls, true, sizeof(bool) * desc->natts);
		for (a = 0; a < sdesc->natts; a++)
		{
			int			att = SPI_fnumber(desc, NameStr(TupleDescAttr(sdesc, a)->attname));

			if (att > 0 && !TupleDescAttr(desc, att - 1)->attisdropped &&
				TupleDescAttr(desc, att - 1)->atttypid == TupleDescAttr(sdesc, a)->atttypid)
				vals[att - 1] = SPI_getbinval(SPI_tuptable->vals[r], sdesc, a + 1, &nulls[att - 1]);
		}
		old = MemoryContextSwitchTo(caller);
		p->rows = lappend(p->rows, heap_form_tuple(desc, vals, nulls));
		MemoryContextSwitchTo(old);
	}
	SPI_finish();
}

void
crm_probe_start(CrmProbe *p, const Datum *values)
{
	int			i;

	if (p->by_sql)
	{
		probe_by_sql(p, values);
		return;
	}
	for (i = 0; i < p->nkeys; i++)
		p->keys[i].sk_argument = values[i];
	index_rescan(p->scan, p->keys, p->nkeys, NULL, 0);
}

TupleTableSlot *
crm_probe_next(CrmProbe *p)
{
	CHECK_FOR_INTERRUPTS();
	if (p->by_sql)
	{
		if (p->next_row >= list_length(p->rows))
			return NULL;
		ExecStoreHeapTuple(list_nth(p->rows, p->next_row++), p->slot, false);
		return p->slot;
	}
	if (index_getnext_slot(p->scan, ForwardScanDirection, p->slot))
		return p->slot;
	return NULL;
}

void
crm_probe_end(CrmProbe *p)
{
	if (p->by_sql)
	{
		ExecDropSingleTupleTableSlot(p->slot);
		index_close(p->index, NoLock);
		table_close(p->heap, NoLock);
		return;
	}
	index_endscan(p->scan);
	ExecDropSingleTupleTableSlot(p->slot);
	PopActiveSnapshot();
	index_close(p->index, NoLock);
	table_close(p->heap, NoLock);
}

CrmRowRead
crm_probe_row(const char *table, Datum key, HeapTuple *tuple, TupleDesc *desc)
{
	Oid			nsp = get_namespace_oid("crm", false);
	Oid			relid = get_relname_relid(table, nsp);
	Relation	heap;
	Relation	index;
	Oid			pk;
	Oid			type;
	Oid			op;
	ScanKeyData skey;
	IndexScanDesc scan;
	TupleTableSlot *slot;
	CrmRowRead	result = CRM_ROW_NONE;

	if (!OidIsValid(relid) ||
		pg_class_aclcheck(relid, GetUserId(), ACL_SELECT) != ACLCHECK_OK)
		return CRM_ROW_UNREAD;
	heap = table_open(relid, AccessShareLock);
	/* a table with row security is read by SELECT, which applies it */
	pk = heap->rd_rel->relkind == RELKIND_RELATION && !heap->rd_rel->relrowsecurity &&
		!crm_table_is_distributed(relid)
		? RelationGetPrimaryKeyIndex(heap) : InvalidOid;
	if (!OidIsValid(pk))
	{
		table_close(heap, NoLock);
		return CRM_ROW_UNREAD;
	}
	index = index_open(pk, AccessShareLock);
	type = index->rd_opcintype[0];
	op = InvalidOid;
	if (index->rd_rel->relam == BTREE_AM_OID &&
		IndexRelationGetNumberOfKeyAttributes(index) == 1)
		op = get_opfamily_member(index->rd_opfamily[0], type, type, BTEqualStrategyNumber);
	if (!OidIsValid(op))
	{
		index_close(index, NoLock);
		table_close(heap, NoLock);
		return CRM_ROW_UNREAD;
	}
	ScanKeyEntryInitialize(&skey, 0, 1, BTEqualStrategyNumber, type,
						   index->rd_indcollation[0], get_opcode(op), key);

	/* what SPI would see: every earlier command of the transaction */
	CommandCounterIncrement();
	PushCopiedSnapshot(GetTransactionSnapshot());
	UpdateActiveSnapshotCommandId();
	slot = table_slot_create(heap, NULL);
	scan = index_beginscan(heap, index, GetActiveSnapshot(), 1, 0);
	index_rescan(scan, &skey, 1, NULL, 0);
	if (index_getnext_slot(scan, ForwardScanDirection, slot))
	{
		HeapTuple	copy = ExecCopySlotHeapTuple(slot);

		/* columns added since it was written (their defaults) as SELECT has them */
		if (HeapTupleHeaderGetNatts(copy->t_data) < RelationGetDescr(heap)->natts)
			copy = heap_expand_tuple(copy, RelationGetDescr(heap));
		*tuple = copy;
		*desc = CreateTupleDescCopy(RelationGetDescr(heap));
		result = CRM_ROW_FOUND;
	}
	index_endscan(scan);
	ExecDropSingleTupleTableSlot(slot);
	PopActiveSnapshot();
	index_close(index, NoLock);
	table_close(heap, NoLock);
	return result;
}
