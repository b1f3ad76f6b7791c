/*-------------------------------------------------------------------------
 *
 * index_probe.h
 *	  Reading rows of a crm table through one of its btree indexes, from C,
 *	  with no planner involved.
 *
 * The engine's hottest lookups (what an item leaving a stage has pending,
 * whether an address is on the exceptions list) must cost O(log n) in the
 * size of the table whatever its statistics say: a kept SPI plan is made
 * once, from the statistics of the moment, and a table that was empty then
 * may hold millions of rows now.  A probe walks the index for equal values
 * of its first columns and returns the rows visible to the current command
 * (the same snapshot SPI would use), so a caller that finds nothing runs
 * no statement at all.
 *
 *	  CrmProbe	p;
 *	  crm_probe_begin(&p, "job", "job_item", 2);
 *	  for each item: crm_probe_start(&p, keys); while (slot = crm_probe_next(&p)) ...
 *	  crm_probe_end(&p);
 *
 * Rows are read as stored: the caller checks what it relies on (an index's
 * predicate included) before acting on them.
 *
 *-------------------------------------------------------------------------
 */
#ifndef CRM_INDEX_PROBE_H
#define CRM_INDEX_PROBE_H

#include "access/genam.h"
#include "access/skey.h"
#include "access/htup.h"
#include "access/tupdesc.h"
#include "executor/tuptable.h"
#include "utils/relcache.h"

#define CRM_PROBE_MAX_KEYS 4

typedef struct CrmProbe
{
	Relation	heap;
	Relation	index;
	IndexScanDesc scan;
	TupleTableSlot *slot;
	int			nkeys;
	ScanKeyData keys[CRM_PROBE_MAX_KEYS];
	/* a table whose rows Citus keeps in shards (core/citus.h): read by SQL */
	bool		by_sql;
	char	   *query;			/* SELECT * FROM crm.<table> WHERE <key columns> = $n */
	Oid			key_types[CRM_PROBE_MAX_KEYS];
	List	   *rows;			/* the probe's rows, as tuples of the table's descriptor */
	int			next_row;
} CrmProbe;

/*
 * Opens table crm.<table> and its btree index crm.<index> (AccessShareLock)
 * for probes by equality on the index's first nkeys columns, and takes the
 * snapshot of the current command.  An index that is not the table's, not a
 * btree, or has fewer columns is an ERROR.  A table whose rows Citus keeps
 * in shards is read by a SELECT on the same columns instead (in a nested
 * SPI connection), with the same results.
 */
extern void crm_probe_begin(CrmProbe *p, const char *table, const char *index, int nkeys);

/* The table's column number of a column, an ERROR when it has none. */
extern AttrNumber crm_probe_attnum(CrmProbe *p, const char *column);

/* Starts a probe for rows whose first nkeys index columns equal values[]. */
extern void crm_probe_start(CrmProbe *p, const Datum *values);

/* The next row of the probe, or NULL; valid until the next call. */
extern TupleTableSlot *crm_probe_next(CrmProbe *p);

/* Ends the probes: the scan, the snapshot, the relations (locks are kept). */
extern void crm_probe_end(CrmProbe *p);

/*
 * The row of crm.<table> whose primary key (a single column) equals key, as
 * a statement of the current command would read it, by one probe of the
 * primary key: CRM_ROW_FOUND with a copy of it and of the table's
 * descriptor in the caller's context, or CRM_ROW_NONE.  CRM_ROW_UNREAD when
 * the table has no single-column btree primary key, has row security, or
 * the current user may not read it: the caller runs its SELECT (which
 * applies the policies, or raises the error a user would get), and when
 * Citus keeps the table's rows in shards.
 */
typedef enum CrmRowRead
{
	CRM_ROW_UNREAD,
	CRM_ROW_NONE,
	CRM_ROW_FOUND
} CrmRowRead;

extern CrmRowRead crm_probe_row(const char *table, Datum key, HeapTuple *tuple,
								TupleDesc *desc);

#endif							/* CRM_INDEX_PROBE_H */
