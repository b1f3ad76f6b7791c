/*-------------------------------------------------------------------------
 *
 * citus.c
 *	  Whether a crm table's rows live in Citus shards (core/citus.h).
 *
 * The answer comes from Citus's catalog pg_catalog.pg_dist_partition (one
 * row per distributed or reference table, on every node once metadata is
 * synced), read through its index on logicalrelid, and is kept per backend
 * for each table asked about until a relcache invalidation of that table
 * (Citus invalidates a table's relcache entry when it distributes it) or
 * of all tables.  Without Citus the catalog does not exist and every table
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
#include "utils/fmgroids.h"
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

static void
dist_cache_callback(Datum arg, Oid relid)
{
	if (dist_cache == NULL)
		return;
	if (relid == InvalidOid)
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
