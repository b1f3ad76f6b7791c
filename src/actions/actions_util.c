/*-------------------------------------------------------------------------
 *
 * actions_util.c
 *	  Item helpers shared by the action executors.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <math.h>

#include <ctype.h>

#include "access/htup_details.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/memutils.h"

#include "actions/actions.h"
#include "core/rule_cache.h"
#include "core/spi_util.h"

/*
 * An integer column of the current item (NULL-aware): read from the row the
 * caller holds when it has one, else through the expression language.  The
 * responsible of a feed post (a business process's document) is its
 * author, of a drive file its owner.
 */
int64
crm_item_int(CrmEvalContext *cx, const char *column, bool *isnull)
{
	CrmExpr    *e;
	CrmValue	v;
	int64		out = 0;

	if (strcmp(column, "responsible_id") == 0 && crm_workspace_document(cx->entity_type))
		column = strcmp(cx->entity_type, "feed_post") == 0 ? "author_id" : "owner_id";

	if (cx->tuple != NULL && cx->desc != NULL)
	{
		int			att = SPI_fnumber(cx->desc, column);

		if (att > 0)
		{
			Oid			type = TupleDescAttr(cx->desc, att - 1)->atttypid;
			Datum		d;

			if (type == INT8OID || type == INT4OID)
			{
				d = heap_getattr(cx->tuple, att, cx->desc, isnull);
				if (*isnull)
					return 0;
				return type == INT8OID ? DatumGetInt64(d) : (int64) DatumGetInt32(d);
			}
		}
	}
	e = crm_expr_compile_text(psprintf("{{%s}}", column), column);
	v = crm_expr_eval(e, cx);
	*isnull = !crm_value_to_int64(v, &out);
	return out;
}

const char *
crm_item_table(const char *entity_type)
{
	/* an entity type's table, or a process document's (feed_post, drive_file) */
	return crm_document_table(entity_type);
}

const char *
crm_item_prefix(const char *entity_type)
{
	return crm_entity_prefix(entity_type);
}

/* The bigint in the first column of the first row SPI returned. */
int64
crm_returned_id(void)
{
	bool		isnull;

	return DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
}

/*
 * The automation that writes a row, as two parameters of its INSERT: the
 * robot at vals[robot], the process instance at vals[instance]; NULL for
 * the one that is not writing (a process's activity has no robot).
 */
void
crm_action_author(const CrmActionCall *call, Datum *vals, char *nulls, int robot, int instance)
{
	vals[robot] = Int64GetDatum(call->robot_id);
	nulls[robot] = call->robot_id ? ' ' : 'n';
	vals[instance] = Int64GetDatum(call->process_instance_id);
	nulls[instance] = call->process_instance_id ? ' ' : 'n';
}

/* A bigint[] datum of ids. */
Datum
crm_int8_array(const int64 *ids, int n)
{
	Datum	   *elems = palloc(sizeof(Datum) * Max(n, 1));
	int			i;

	for (i = 0; i < n; i++)
		elems[i] = Int64GetDatum(ids[i]);
	return PointerGetDatum(construct_array(elems, n, INT8OID, 8, true, TYPALIGN_DOUBLE));
}

int64
crm_item_id_param(CrmActionCall *call)
{
	return call->cx->item_id;
}

char *
crm_jbv_string(JsonbValue *v)
{
	return pnstrdup(v->val.string.val, v->val.string.len);
}

bool
crm_all_digits(const char *s)
{
	if (*s == '\0')
		return false;
	for (; *s; s++)
		if (!isdigit((unsigned char) *s))
			return false;
	return true;
}

bool
crm_looks_like_email(const char *s)
{
	const char *at = strchr(s, '@');

	return at != NULL && at != s && strchr(at + 1, '.') != NULL &&
		strpbrk(s, " \t\r\n,;<>") == NULL;
}

bool
crm_looks_like_phone(const char *s)
{
	int			digits = 0;

	if (*s == '+')
		s++;
	for (; *s; s++)
	{
		if (isdigit((unsigned char) *s))
			digits++;
		else if (strchr(" ()-.", *s) == NULL)
			return false;
	}
	return digits >= 3;
}

/*
 * Whether an interval's span is at most CRM_MAX_DELAY_DAYS, each of its
 * fields and all of them together (a month counted as 30 days, as
 * interval comparison does), in either direction.
 */
bool
crm_delay_in_bounds(const Interval *iv)
{
	double		days = (double) iv->month * DAYS_PER_MONTH + iv->day +
		(double) iv->time / USECS_PER_DAY;

	return fabs((double) iv->month * DAYS_PER_MONTH) <= CRM_MAX_DELAY_DAYS &&
		fabs((double) iv->day) <= CRM_MAX_DELAY_DAYS &&
		fabs((double) iv->time / USECS_PER_DAY) <= CRM_MAX_DELAY_DAYS &&
		fabs(days) <= CRM_MAX_DELAY_DAYS;
}
