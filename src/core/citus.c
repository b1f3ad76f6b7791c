/*-------------------------------------------------------------------------
 *
 * citus.c
 *	  Whether a crm table's rows live in Citus shards (core/citus.h).
 *
 * The answer comes from Citus's catalog pg_catalog.pg_dist_partition (one
 * row per distributed or reference table, on every node once metadata is
 * synced), read through its index on logicalrelid, and is kept per backend
 * for each table asked about until a relcache invalidation of that table,
 * of pg_dist_partition (which Citus sends when its metadata changes) or of
 * all tables.  Without Citus the catalog does not exist and every table
 * is a plain local one.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/genam.h"
#include "access/htup_details.h"
#include "access/stratnum.h"
#include "access/table.h"
#include "catalog/namespace.h"
#include "catalog/pg_namespace.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "utils/builtins.h"
#include "utils/fmgroids.h"
#include "utils/guc.h"
#include "utils/hsearch.h"
#include "utils/inval.h"
#include "utils/lsyscache.h"
#include "utils/rel.h"

#include "core/citus.h"

typedef struct DistEntry
{
	Oid			relid;			/* hash key */
	bool		distributed;
} DistEntry;

static HTAB *dist_cache = NULL;
static Oid	dist_partition_relid = InvalidOid;	/* pg_dist_partition, once seen */

static void
dist_cache_callback(Datum arg, Oid relid)
{
	if (dist_cache == NULL)
		return;
	/* Citus invalidates its catalog's entry when its metadata changes */
	if (relid == InvalidOid || relid == dist_partition_relid)
	{
		hash_destroy(dist_cache);
		dist_cache = NULL;
	}
	else
		hash_search(dist_cache, &relid, HASH_REMOVE, NULL);
}

static bool
lookup_distributed(Oid relid)
{
	Oid			catalog = get_relname_relid("pg_dist_partition", PG_CATALOG_NAMESPACE);
	Oid			index;
	Relation	rel;
	ScanKeyData key;
	SysScanDesc scan;
	bool		found;

	if (!OidIsValid(catalog))
		return false;
	dist_partition_relid = catalog;
	index = get_relname_relid("pg_dist_partition_logical_relid_index", PG_CATALOG_NAMESPACE);
	rel = table_open(catalog, AccessShareLock);
	ScanKeyInit(&key, 1, BTEqualStrategyNumber, F_OIDEQ, ObjectIdGetDatum(relid));
	scan = systable_beginscan(rel, index, OidIsValid(index), NULL, 1, &key);
	found = HeapTupleIsValid(systable_getnext(scan));
	systable_endscan(scan);
	table_close(rel, AccessShareLock);
	return found;
}

bool
crm_table_is_distributed(Oid relid)
{
	static bool callback_registered = false;
	DistEntry  *e;
	bool		found;

	if (!OidIsValid(relid))
		return false;
	if (!callback_registered)
	{
		CacheRegisterRelcacheCallback(dist_cache_callback, (Datum) 0);
		callback_registered = true;
	}
	if (dist_cache == NULL)
	{
		HASHCTL		ctl;

		ctl.keysize = sizeof(Oid);
		ctl.entrysize = sizeof(DistEntry);
		dist_cache = hash_create("crm distributed tables", 64, &ctl, HASH_ELEM | HASH_BLOBS);
	}
	e = hash_search(dist_cache, &relid, HASH_FIND, &found);
	if (found)
		return e->distributed;
	found = lookup_distributed(relid);
	/* the lookup may have processed invalidations that dropped the cache */
	if (dist_cache != NULL)
	{
		e = hash_search(dist_cache, &relid, HASH_ENTER, NULL);
		e->distributed = found;
	}
	return found;
}

Oid
crm_shard_parent(Oid relid)
{
	char	   *name;
	size_t		len;
	size_t		digits = 0;
	Oid			nsp = get_namespace_oid("crm", true);
	Oid			parent;
	char	   *base;

	if (!OidIsValid(nsp) || get_rel_namespace(relid) != nsp)
		return InvalidOid;
	name = get_rel_name(relid);
	if (name == NULL)
		return InvalidOid;
	len = strlen(name);
	while (digits < len && name[len - 1 - digits] >= '0' && name[len - 1 - digits] <= '9')
		digits++;
	if (digits == 0 || digits == len || name[len - 1 - digits] != '_')
		return InvalidOid;
	base = pnstrdup(name, len - 1 - digits);
	parent = get_relname_relid(base, nsp);
	if (OidIsValid(parent) && !crm_table_is_distributed(parent))
		parent = InvalidOid;
	return parent;
}

List *
crm_local_shards(Oid relid)
{
	Oid			types[1] = {OIDOID};
	Datum		vals[1];
	List	   *shards = NIL;
	char	   *name = get_rel_name(relid);
	uint64		i;

	if (name == NULL || !crm_table_is_distributed(relid))
		return NIL;
	vals[0] = ObjectIdGetDatum(relid);
	if (SPI_execute_with_args("SELECT s.shardid FROM pg_catalog.pg_dist_shard s"
							  " JOIN pg_catalog.pg_dist_placement p ON p.shardid = s.shardid"
							  " WHERE s.logicalrelid = $1"
							  "   AND p.groupid = (SELECT groupid FROM pg_catalog.pg_dist_local_group)"
							  " ORDER BY s.shardid",
							  1, types, vals, NULL, true, 0) != SPI_OK_SELECT)
		elog(ERROR, "could not read the shards of crm.%s", name);
	for (i = 0; i < SPI_processed; i++)
	{
		bool		isnull;
		int64		shardid = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[i],
														  SPI_tuptable->tupdesc, 1, &isnull));

		shards = lappend(shards, (void *) quote_qualified_identifier("crm",
																	 psprintf("%s_" INT64_FORMAT, name, shardid)));
	}
	return shards;
}

void
crm_citus_set_local(const char *name, const char *value)
{
	int			nest = NewGUCNestLevel();
	char	   *sql;

	/*
	 * Citus propagates a SET LOCAL from a multi-statement transaction, which
	 * a DO block counts as: the other nodes keep it until the transaction
	 * ends.  Here it is undone with the nest level (as an error would): this
	 * node's own value stays the caller's.
	 */
	(void) set_config_option("citus.propagate_set_commands", "local", PGC_USERSET,
							 PGC_S_SESSION, GUC_ACTION_SAVE, true, 0, false);
	sql = psprintf("DO $crm$BEGIN SET LOCAL %s TO %s; END$crm$",
				   name, quote_literal_cstr(value));
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	if (SPI_execute(sql, false, 0) != SPI_OK_UTILITY)
		elog(ERROR, "could not set %s on the nodes of the transaction", name);
	SPI_finish();
	AtEOXact_GUC(false, nest);
	pfree(sql);
}

void
crm_citus_coordinate(void)
{
	static uint32 n = 0;
	char	   *sql;

	sql = psprintf("SELECT pg_catalog.create_intermediate_result('crm_coordinate_%u',"
				   " 'SELECT 1 WHERE false')", ++n);
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	if (SPI_execute(sql, false, 0) != SPI_OK_SELECT)
		elog(ERROR, "could not make the transaction a distributed one");
	SPI_finish();
	pfree(sql);
}
