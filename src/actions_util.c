/*-------------------------------------------------------------------------
 *
 * actions_util.c
 *	  Item helpers shared by the action executors.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "utils/builtins.h"
#include "utils/memutils.h"

#include "actions.h"
#include "spi_util.h"

/* An integer column of the current item (NULL-aware). */
int64
crm_item_int(CrmEvalContext *cx, const char *column, bool *isnull)
{
	CrmExpr    *e;
	CrmValue	v;
	int64		out = 0;

	e = crm_expr_compile_text(psprintf("{{%s}}", column), column);
	v = crm_expr_eval(e, cx);
	*isnull = !crm_value_to_int64(v, &out);
	return out;
}

static char *
entity_type_column(const char *entity_type, int col)
{
	static SPIPlanPtr plan = NULL;
	Oid			types[1] = {TEXTOID};
	Datum		vals[1];
	bool		isnull;
	Datum		d;

	vals[0] = CStringGetTextDatum(entity_type);
	crm_exec(crm_plan(&plan, "SELECT table_name, id_prefix FROM crm.entity_type WHERE code = $1",
					  1, types), vals, NULL, true, 1);
	if (SPI_processed == 0)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("unknown entity type \"%s\"", entity_type)));
	d = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, col, &isnull);
	return TextDatumGetCString(d);
}

const char *
crm_item_table(const char *entity_type)
{
	return entity_type_column(entity_type, 1);
}

const char *
crm_item_prefix(const char *entity_type)
{
	return entity_type_column(entity_type, 2);
}

int64
crm_item_id_param(CrmActionCall *call)
{
	return call->cx->item_id;
}
