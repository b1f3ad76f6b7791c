/*-------------------------------------------------------------------------
 *
 * citus.h
 *	  Whether a crm table's rows live in Citus shards (SPEC §10).
 *
 * On a distributed installation (crm.distribute()) every node keeps its own
 * copy of the extension's tables, made by CREATE EXTENSION, but Citus keeps
 * the rows of distributed and reference tables in shards: on a worker node
 * that copy is an empty placeholder, and on the coordinator it holds what
 * was there before distribution.  The paths that read or write a table's
 * storage directly (index probes, heap scans of definitions, rows appended
 * without an INSERT) must then go through SQL, which Citus routes to the
 * shards.  Nothing here calls Citus: its catalog pg_dist_partition is read
 * when it exists.
 *
 *-------------------------------------------------------------------------
 */
#ifndef CRM_CITUS_H
#define CRM_CITUS_H

#include "nodes/pg_list.h"

/* true when Citus keeps relid's rows in shards (a distributed or reference table) */
extern bool crm_table_is_distributed(Oid relid);

/*
 * The crm table a Citus shard belongs to ("robot" for crm.robot_102015), or
 * InvalidOid when relid is no shard of a crm table.
 */
extern Oid	crm_shard_parent(Oid relid);

/*
 * The shards of distributed table relid placed on this node, as qualified
 * names (crm.job_102040), in shard order; NIL when there are none.  The
 * caller is connected to SPI.
 */
extern List *crm_local_shards(Oid relid);

/*
 * SET LOCAL name (a constant of ours: not quoted) TO value on every other
 * node this transaction writes to through Citus, now and later in the
 * transaction (this node's value does not change): the statement runs as
 * Citus propagates a SET LOCAL (citus.propagate_set_commands = local, for
 * this call only), so Citus sends it to the nodes already in the
 * transaction and with the BEGIN of those it reaches later.
 */
extern void crm_citus_set_local(const char *name, const char *value);

/*
 * Makes the transaction one Citus coordinates, so that even a statement
 * on one shard outside a transaction block reaches its node in a remote
 * transaction that Citus opens with BEGIN and the propagated SET LOCALs
 * (a statement on several shards, or a COPY, is coordinated anyway).
 * Citus offers no call for it; creating an empty intermediate result does
 * it, for the cost of a file removed at the transaction's end.
 */
extern void crm_citus_coordinate(void);

#endif							/* CRM_CITUS_H */
