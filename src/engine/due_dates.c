/*-------------------------------------------------------------------------
 *
 * due_dates.c
 *	  Delays tied to a date field follow the field.
 *
 * A robot delayed with {"at": "close_date", "offset": "-1 day"} becomes a
 * job due at the item's close date less a day.  When the close date moves,
 * the job moves with it: the items' BEFORE UPDATE trigger (row_trigger.c)
 * calls crm_due_dates_follow, which compares the fields that such delays of
 * the entity type refer to (kept in the rule cache: an entity type whose
 * robots have no such delay costs one cached lookup) and updates the
 * item's pending jobs in the same transaction.  The worker, woken by the
 * change at commit, then sleeps until the new earliest due time.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "utils/builtins.h"

#include "engine/due_dates.h"
#include "engine/robots.h"
#include "core/scope.h"
#include "core/rule_cache.h"
#include "core/spi_util.h"

/* The rule cache's slot of the due-date fields (crm_due_dates_init). */
static int	due_fields_slot = -1;

/* Loads them, for the rule cache, in its context. */
static void *
due_fields_load(const char *entity_type)
{
	static SPIPlanPtr plan = NULL;
	Oid			types[1] = {TEXTOID};
	Datum		vals[1];
	MemoryContext cxt = CurrentMemoryContext;
	CrmDueFields *f;
	uint64		i;

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	vals[0] = CStringGetTextDatum(entity_type);
	crm_exec(crm_plan(&plan,
					  "SELECT DISTINCT lower(r.delay->>'at')"
					  "  FROM crm.robot r JOIN crm.stage s ON s.id = r.stage_id"
					  "       JOIN crm.pipeline p ON p.id = s.pipeline_id"
					  " WHERE p.entity_type = $1 AND r.active AND r.delay ? 'at'",
					  1, types), vals, NULL, true, 0);
	f = MemoryContextAllocZero(cxt, sizeof(CrmDueFields));
	f->n = (int) SPI_processed;
	f->names = MemoryContextAllocZero(cxt, sizeof(char *) * Max(f->n, 1));
	f->exprs = MemoryContextAllocZero(cxt, sizeof(CrmExpr *) * Max(f->n, 1));
	for (i = 0; i < SPI_processed; i++)
	{
		char	   *name = SPI_getvalue(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 1);
		MemoryContext old = MemoryContextSwitchTo(cxt);

		f->names[i] = pstrdup(name);
		f->exprs[i] = crm_expr_compile_text(psprintf("{{%s}}", name), "delay.at");
		MemoryContextSwitchTo(old);
	}
	SPI_finish();
	return f;
}

/* Moves (or, for an emptied field, fails) the jobs that follow a field. */
static void
move_jobs(const char *entity_type, int64 item_id, const char *field,
		  bool has_date, TimestampTz due)
{
	static SPIPlanPtr move = NULL;
	static SPIPlanPtr fail[2];
	Oid			types[4] = {TEXTOID, INT8OID, TEXTOID, TIMESTAMPTZOID};
	Datum		vals[4];

	vals[0] = CStringGetTextDatum(entity_type);
	vals[1] = Int64GetDatum(item_id);
	vals[2] = CStringGetTextDatum(field);
	if (has_date)
	{
		vals[3] = TimestampTzGetDatum(due);
		crm_exec(crm_plan(&move,
						  "UPDATE crm.job SET due_at = $4 + coalesce(due_offset, interval '0'),"
						  "       updated_at = now()"
						  " WHERE entity_type = $1 AND entity_id = $2 AND status = 'pending'"
						  "   AND kind = 'robot' AND lower(due_field) = $3",
						  4, types), vals, NULL, false, 0);
	}
	else
		crm_exec(crm_plan(&fail[crm_log_has_entries()],
						  psprintf("WITH j AS (UPDATE crm.job SET status = 'failed', updated_at = now(),"
						  "       last_error = format('field \"%%s\" of the item no longer holds a date', $3)"
						  " WHERE entity_type = $1 AND entity_id = $2 AND status = 'pending'"
						  "   AND kind = 'robot' AND lower(due_field) = $3"
						  " RETURNING log_id, last_error)"
						  " UPDATE %s l SET status = 'failed', error = j.last_error,"
						  "       finished_at = clock_timestamp()"
						  "  FROM j WHERE l.id = j.log_id", crm_log_table()),
						  3, types), vals, NULL, false, 0);
}

void
crm_due_dates_follow(const char *entity_type, int64 item_id,
					 HeapTuple oldtuple, HeapTuple newtuple, TupleDesc desc)
{
	const CrmDueFields *f = crm_entity_rules(entity_type, due_fields_slot);
	CrmEvalContext oldcx;
	CrmEvalContext newcx;
	CrmScope	scope;
	bool		connected = false;
	int			i;

	if (f == NULL || f->n == 0)
		return;

	crm_rule_cache_pin();
	PG_TRY();
	{
		crm_eval_context_init(&oldcx, entity_type, item_id, oldtuple, desc);
		crm_eval_context_init(&newcx, entity_type, item_id, newtuple, desc);
		for (i = 0; i < f->n; i++)
		{
			TimestampTz before = 0;
			TimestampTz after = 0;
			bool		had = crm_value_to_timestamptz(crm_expr_eval(f->exprs[i], &oldcx), &before);
			bool		has = crm_value_to_timestamptz(crm_expr_eval(f->exprs[i], &newcx), &after);

			if (had == has && (!has || before == after))
				continue;
			if (!connected)
			{
				/* the jobs belong to the automation, not to the application's role */
				crm_scope_enter(&scope, CRM_SCOPE_SPI);
				connected = true;
			}
			move_jobs(entity_type, item_id, f->names[i], has, after);
		}
		if (connected)
			crm_scope_leave(&scope);
	}
	PG_FINALLY();
	{
		crm_rule_cache_unpin();
	}
	PG_END_TRY();
}

void
crm_due_dates_init(void)
{
	due_fields_slot = crm_rule_cache_entity_slot(due_fields_load);
}
