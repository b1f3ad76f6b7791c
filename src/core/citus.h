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

/* true when Citus keeps relid's rows in shards (a distributed or reference table) */
extern bool crm_table_is_distributed(Oid relid);

/*
 * The crm table a Citus shard belongs to ("robot" for crm.robot_102015), or
 * InvalidOid when relid is no shard of a crm table.
 */
extern Oid	crm_shard_parent(Oid relid);

#endif							/* CRM_CITUS_H */
