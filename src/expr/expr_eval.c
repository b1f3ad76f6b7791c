/*-------------------------------------------------------------------------
 *
 * expr_eval.c
 *	  Evaluating compiled expressions for one item.
 *
 * Item fields are read from the row the caller has (the trigger's tuple) by
 * attribute number, or from the item loaded once by id.  Related records
 * (responsible, contact, company, stage, ...) are loaded on first use by a
 * prepared statement with the id as parameter, and kept in the context.
 * Custom fields are keys of the item's fields jsonb, matched without regard
 * to case.  Values: PostgreSQL numeric for numbers, dates and timestamps,
 * text, booleans, NULL (a missing field is NULL).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <ctype.h>

#include "access/htup_details.h"
#include "catalog/pg_collation.h"
#include "catalog/pg_type.h"
#include "common/int.h"
#include "executor/spi.h"
#include "mb/pg_wchar.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/formatting.h"
#include "utils/date.h"
#include "utils/datum.h"
#include "utils/datetime.h"
#include "utils/jsonb.h"
#include "utils/lsyscache.h"
#include "utils/numeric.h"
#include "utils/timestamp.h"

#include "expr/expr_int.h"
#include "core/index_probe.h"
#include "core/rule_cache.h"
#include "core/spi_util.h"

extern int	expr_relation_index(const char *name);
extern const char *expr_relation_link(int i);
extern const char *expr_relation_table(int i);

/* Rows loaded for one evaluation context. */
typedef struct LoadedRow
{
	char	   *key;			/* "item" or a relation name */
	HeapTuple	tuple;			/* NULL when there is no such row */
	TupleDesc	desc;
} LoadedRow;

typedef struct EvalCache
{
	List	   *rows;			/* LoadedRow * */
} EvalCache;

static CrmValue
null_value(void)
{
	CrmValue	v;

	memset(&v, 0, sizeof(v));
	return v;
}

static CrmValue
number_value(Numeric n)
{
	CrmValue	v = null_value();

	v.type = CRM_VAL_NUMBER;
	v.num = n;
	return v;
}

static CrmValue
bool_value(bool b)
{
	CrmValue	v = null_value();

	v.type = CRM_VAL_BOOL;
	v.b = b;
	return v;
}

static CrmValue
datum_value(Datum d, Oid type)
{
	CrmValue	v = null_value();

	switch (type)
	{
		case INT2OID:
			return number_value(int64_to_numeric(DatumGetInt16(d)));
		case INT4OID:
			return number_value(int64_to_numeric(DatumGetInt32(d)));
		case INT8OID:
			return number_value(int64_to_numeric(DatumGetInt64(d)));
		case NUMERICOID:
			return number_value(DatumGetNumeric(d));
		case FLOAT4OID:
		case FLOAT8OID:
			return number_value(DatumGetNumeric(DirectFunctionCall1(type == FLOAT8OID ? float8_numeric : float4_numeric, d)));
		case BOOLOID:
			return bool_value(DatumGetBool(d));
		case DATEOID:
			v.type = CRM_VAL_DATE;
			v.date = DatumGetDateADT(d);
			return v;
		case TIMESTAMPTZOID:
			v.type = CRM_VAL_TIMESTAMP;
			v.ts = DatumGetTimestampTz(d);
			return v;
		case TIMESTAMPOID:
			v.type = CRM_VAL_TIMESTAMP;
			v.ts = DatumGetTimestampTz(DirectFunctionCall1(timestamp_timestamptz, d));
			return v;
		case JSONBOID:
			v.type = CRM_VAL_JSON;
			v.json = DatumGetJsonbP(d);
			return v;
		case TEXTOID:
		case VARCHAROID:
		case BPCHAROID:
			return expr_text_value(TextDatumGetCString(d));
		default:
			{
				Oid			out;
				bool		isvarlena;

				getTypeOutputInfo(type, &out, &isvarlena);
				return expr_text_value(OidOutputFunctionCall(out, d));
			}
	}
}

static CrmValue
jsonb_scalar_value(JsonbValue *jv)
{
	switch (jv->type)
	{
		case jbvNull:
			return null_value();
		case jbvBool:
			return bool_value(jv->val.boolean);
		case jbvNumeric:
			return number_value(jv->val.numeric);
		case jbvString:
			return expr_text_value(pnstrdup(jv->val.string.val, jv->val.string.len));
		default:
			{
				CrmValue	v = null_value();

				v.type = CRM_VAL_JSON;
				v.json = JsonbValueToJsonb(jv);
				return v;
			}
	}
}

/* A key of a jsonb object, matched exactly first, then without regard to case. */
static CrmValue
jsonb_key_value(Jsonb *j, const char *key)
{
	JsonbValue *v;
	JsonbIterator *it;
	JsonbValue	k;
	JsonbIteratorToken tok;

	if (j == NULL || !JB_ROOT_IS_OBJECT(j))
		return null_value();
	v = getKeyJsonValueFromContainer(&j->root, key, strlen(key), NULL);
	if (v != NULL)
		return jsonb_scalar_value(v);
	it = JsonbIteratorInit(&j->root);
	while ((tok = JsonbIteratorNext(&it, &k, true)) != WJB_DONE)
	{
		if (tok == WJB_KEY && k.val.string.len == strlen(key) &&
			pg_strncasecmp(k.val.string.val, key, k.val.string.len) == 0)
		{
			JsonbValue	val;

			(void) JsonbIteratorNext(&it, &val, true);
			return jsonb_scalar_value(&val);
		}
	}
	return null_value();
}

/*
 * The kept plan reading a row of crm.<table> by id, one per table (a job
 * runner reads every job's item: parsing and planning the statement each
 * time cost a fifth of a delayed robot's run).  The table names come from
 * a fixed list and the entity types' catalog: a handful.
 */
#define ROW_PLANS 32

static SPIPlanPtr
row_plan(const char *table)
{
	static struct
	{
		char		table[NAMEDATALEN];
		SPIPlanPtr	plan;
	}			plans[ROW_PLANS];
	static int	nplans = 0;
	SPIPlanPtr	plan = NULL;
	Oid			types[1] = {INT8OID};
	int			i;

	for (i = 0; i < nplans; i++)
		if (strcmp(plans[i].table, table) == 0)
			return plans[i].plan;
	if (nplans >= ROW_PLANS || strlen(table) >= NAMEDATALEN)
		return NULL;
	(void) crm_plan_opts(&plan,
						 psprintf("SELECT * FROM %s WHERE id OPERATOR(pg_catalog.=) $1",
								  quote_qualified_identifier("crm", table)),
						 1, types, CURSOR_OPT_GENERIC_PLAN);
	strlcpy(plans[nplans].table, table, NAMEDATALEN);
	plans[nplans++].plan = plan;
	return plan;
}

/* Loads crm.<table> row by id, into the caller's context. */
static LoadedRow *
load_row(EvalCache *cache, const char *key, const char *table, int64 id)
{
	MemoryContext caller = CurrentMemoryContext;
	LoadedRow  *r = palloc0(sizeof(LoadedRow));
	Oid			types[1] = {INT8OID};
	Datum		vals[1];
	SPIPlanPtr	plan;

	r->key = pstrdup(key);
	/* by a probe of the primary key: no statement to start for one row */
	switch (crm_probe_row(table, Int64GetDatum(id), &r->tuple, &r->desc))
	{
		case CRM_ROW_FOUND:
		case CRM_ROW_NONE:
			cache->rows = lappend(cache->rows, r);
			return r;
		case CRM_ROW_UNREAD:
			break;
	}
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	/* the table name comes from the catalog of entity types / a fixed list */
	vals[0] = Int64GetDatum(id);
	plan = row_plan(table);
	if ((plan != NULL ? SPI_execute_plan(plan, vals, NULL, false, 1)
		 : SPI_execute_with_args(psprintf("SELECT * FROM %s WHERE id OPERATOR(pg_catalog.=) $1",
										  quote_qualified_identifier("crm", table)),
								 1, types, vals, NULL, false, 1)) < 0)
		elog(ERROR, "could not load crm.%s %lld", table, (long long) id);
	if (SPI_processed > 0)
	{
		MemoryContext old = MemoryContextSwitchTo(caller);

		r->tuple = heap_copytuple(SPI_tuptable->vals[0]);
		r->desc = CreateTupleDescCopy(SPI_tuptable->tupdesc);
		MemoryContextSwitchTo(old);
	}
	SPI_finish();
	cache->rows = lappend(cache->rows, r);
	return r;
}

static LoadedRow *
cached_row(EvalCache *cache, const char *key)
{
	ListCell   *lc;

	foreach(lc, cache->rows)
	{
		LoadedRow  *r = (LoadedRow *) lfirst(lc);

		if (strcmp(r->key, key) == 0)
			return r;
	}
	return NULL;
}

static EvalCache *
eval_cache(CrmEvalContext *cx)
{
	if (cx->cache == NULL)
		cx->cache = palloc0(sizeof(EvalCache));
	return (EvalCache *) cx->cache;
}

/* The item's row: the caller's tuple, or loaded by id once. */
static bool
item_row(CrmEvalContext *cx, HeapTuple *tuple, TupleDesc *desc)
{
	EvalCache  *cache;
	LoadedRow  *r;

	if (cx->tuple != NULL)
	{
		*tuple = cx->tuple;
		*desc = cx->desc;
		return true;
	}
	if (cx->entity_type == NULL)
		return false;
	cache = eval_cache(cx);
	r = cached_row(cache, "item");
	if (r == NULL)
		r = load_row(cache, "item", crm_document_table(cx->entity_type), cx->item_id);
	if (r->tuple == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_NO_DATA_FOUND),
				 errmsg("%s %lld does not exist", cx->entity_type, (long long) cx->item_id)));
	*tuple = r->tuple;
	*desc = r->desc;
	return true;
}

/* A column of a row by name (case-insensitive); false when there is none. */
static bool
row_column(HeapTuple tuple, TupleDesc desc, const char *name, CrmValue *out)
{
	int			i;

	for (i = 0; i < desc->natts; i++)
	{
		Form_pg_attribute att = TupleDescAttr(desc, i);

		if (!att->attisdropped && pg_strcasecmp(NameStr(att->attname), name) == 0)
		{
			bool		isnull;
			Datum		d = heap_getattr(tuple, i + 1, desc, &isnull);

			*out = isnull ? null_value() : datum_value(d, att->atttypid);
			return true;
		}
	}
	return false;
}

/*
 * The attribute number of the column of this name (case-insensitive), 0
 * when there is none; *hint, where it was found last, is tried first.
 */
static int
find_column(TupleDesc desc, const char *name, int *hint)
{
	int			i;

	if (*hint > 0 && *hint <= desc->natts)
	{
		Form_pg_attribute att = TupleDescAttr(desc, *hint - 1);

		if (!att->attisdropped && pg_strcasecmp(NameStr(att->attname), name) == 0)
			return *hint;
	}
	for (i = 0; i < desc->natts; i++)
	{
		Form_pg_attribute att = TupleDescAttr(desc, i);

		if (!att->attisdropped && pg_strcasecmp(NameStr(att->attname), name) == 0)
		{
			*hint = i + 1;
			return i + 1;
		}
	}
	return 0;
}

/* Whether a column holds the same bytes in both rows (both null included). */
static bool
column_same_in_rows(HeapTuple a, HeapTuple b, TupleDesc desc, int attnum)
{
	Form_pg_attribute att = TupleDescAttr(desc, attnum - 1);
	bool		anull;
	bool		bnull;
	Datum		ad = heap_getattr(a, attnum, desc, &anull);
	Datum		bd = heap_getattr(b, attnum, desc, &bnull);

	if (anull || bnull)
		return anull && bnull;
	return datum_image_eq(ad, bd, att->attbyval, att->attlen);
}

static bool
node_same_in_rows(const ExprNode *n, HeapTuple a, HeapTuple b, TupleDesc desc)
{
	/* the hints are a cache: they change no result */
	ExprNode   *hints = (ExprNode *) n;
	const char *other;
	int			att;
	int			i;

	check_stack_depth();
	switch (n->kind)
	{
		case EN_CONST:
			return true;
		case EN_FIELD:
			if (n->sub != NULL)
			{
				/* a related record's field: the same link, the same record */
				int			r = expr_relation_index(n->name);

				if (r < 0)
					return true;	/* reads null from both */
				other = expr_relation_link(r);
			}
			else
			{
				if (!n->custom && (att = find_column(desc, n->name, &hints->att_hint)) > 0)
					return column_same_in_rows(a, b, desc, att);
				other = "fields";
			}
			att = find_column(desc, other, &hints->att_hint_other);
			return att == 0 || column_same_in_rows(a, b, desc, att);
		case EN_UNARY:
		case EN_BINARY:
		case EN_CHAIN:
		case EN_CONCAT:
		case EN_COND:
			for (i = 0; i < n->nargs; i++)
				if (n->args[i] != NULL && !node_same_in_rows(n->args[i], a, b, desc))
					return false;
			return true;
		default:
			/* references and functions are not looked into */
			return false;
	}
}

/*
 * True when e cannot read different values from two versions of an item's
 * row: every field it reads comes from a column (its own, the custom
 * fields, the link to a related record) whose bytes are equal in both.
 * False means "maybe different": evaluate it on each row to know.  It lets
 * an update that changes no watched field skip the evaluation.
 */
bool
crm_expr_same_in_rows(const CrmExpr *e, HeapTuple a, HeapTuple b, TupleDesc desc)
{
	return e != NULL && e->root != NULL && node_same_in_rows(e->root, a, b, desc);
}

static CrmValue
field_value(const ExprNode *n, CrmEvalContext *cx)
{
	HeapTuple	tuple;
	TupleDesc	desc;
	CrmValue	v;

	if (!item_row(cx, &tuple, &desc))
		return null_value();

	if (n->sub != NULL)
	{
		/* a related record's field */
		int			r = expr_relation_index(n->name);
		EvalCache  *cache = eval_cache(cx);
		LoadedRow  *row;
		CrmValue	link;
		int64		id;

		if (r < 0 || !row_column(tuple, desc, expr_relation_link(r), &link) ||
			link.type == CRM_VAL_NULL)
			return null_value();
		row = cached_row(cache, n->name);
		if (row == NULL)
		{
			if (!crm_value_to_int64(link, &id))
				return null_value();
			row = load_row(cache, n->name, expr_relation_table(r), id);
		}
		if (row->tuple == NULL || !row_column(row->tuple, row->desc, n->sub, &v))
			return null_value();
		return v;
	}
	if (!n->custom && row_column(tuple, desc, n->name, &v))
		return v;
	/* a custom field */
	if (row_column(tuple, desc, "fields", &v) && v.type == CRM_VAL_JSON)
		return jsonb_key_value(v.json, n->name);
	return null_value();
}

static CrmValue
ref_value(const ExprNode *n, CrmEvalContext *cx)
{
	Jsonb	   *src = NULL;
	CrmValue	v;

	if (strcmp(n->ns, "Variable") == 0)
		src = cx->variables;
	else if (strcmp(n->ns, "Constant") == 0)
		src = cx->constants;
	else if (strcmp(n->ns, "Parameter") == 0)
		src = cx->parameters;
	else if (strcmp(n->ns, "Robot") == 0)
		src = cx->robot_outputs;
	else if (strcmp(n->ns, "Activity") == 0)
		src = cx->activity_outputs;
	else if (strcmp(n->ns, "Event") == 0)
		src = cx->event;
	v = jsonb_key_value(src, n->name);
	if (n->sub != NULL)
	{
		if (v.type != CRM_VAL_JSON)
			return null_value();
		v = jsonb_key_value(v.json, n->sub);
	}
	return v;
}

/* ---------- conversions ---------- */

static bool
text_to_numeric(const char *s, Numeric *out)
{
	const char *p = s;
	bool		digit = false;

	while (isspace((unsigned char) *p))
		p++;
	if (*p == '-' || *p == '+')
		p++;
	for (; *p; p++)
	{
		if (isdigit((unsigned char) *p))
			digit = true;
		else if (*p != '.' && !isspace((unsigned char) *p))
			return false;
	}
	if (!digit)
		return false;
	*out = DatumGetNumeric(DirectFunctionCall3(numeric_in, CStringGetDatum(s),
											   ObjectIdGetDatum(InvalidOid), Int32GetDatum(-1)));
	return true;
}

static bool
to_number(CrmValue v, Numeric *out)
{
	switch (v.type)
	{
		case CRM_VAL_NUMBER:
			*out = v.num;
			return true;
		case CRM_VAL_BOOL:
			*out = int64_to_numeric(v.b ? 1 : 0);
			return true;
		case CRM_VAL_TEXT:
			return text_to_numeric(v.str, out);
		default:
			return false;
	}
}

/* Text that reads as a date or timestamp (ISO forms, or [-]infinity). */
static bool
text_to_timestamp(const char *s, TimestampTz *out)
{
	int			y,
				m,
				d;

	if (pg_strcasecmp(s, "infinity") != 0 && pg_strcasecmp(s, "-infinity") != 0 &&
		sscanf(s, "%4d-%2d-%2d", &y, &m, &d) != 3)
		return false;
	*out = DatumGetTimestampTz(DirectFunctionCall3(timestamptz_in, CStringGetDatum(s),
												   ObjectIdGetDatum(InvalidOid), Int32GetDatum(-1)));
	return true;
}

bool
crm_value_to_timestamptz(CrmValue v, TimestampTz *out)
{
	switch (v.type)
	{
		case CRM_VAL_TIMESTAMP:
			*out = v.ts;
			return true;
		case CRM_VAL_DATE:
			*out = DatumGetTimestampTz(DirectFunctionCall1(date_timestamptz, DateADTGetDatum(v.date)));
			return true;
		case CRM_VAL_TEXT:
			return text_to_timestamp(v.str, out);
		default:
			return false;
	}
}

bool
crm_value_to_int64(CrmValue v, int64 *out)
{
	Numeric		n;

	if (!to_number(v, &n))
		return false;
	*out = DatumGetInt64(DirectFunctionCall1(numeric_int8, NumericGetDatum(n)));
	return true;
}

/*
 * The value as a JSON value: null, a boolean, a number, the JSON itself
 * (out points into it), anything else as its text.
 */
void
crm_value_to_jsonb_value(CrmValue v, JsonbValue *out)
{
	switch (v.type)
	{
		case CRM_VAL_NULL:
			out->type = jbvNull;
			break;
		case CRM_VAL_BOOL:
			out->type = jbvBool;
			out->val.boolean = v.b;
			break;
		case CRM_VAL_NUMBER:
			out->type = jbvNumeric;
			out->val.numeric = v.num;
			break;
		case CRM_VAL_JSON:
			crm_jsonb_binary(v.json, out);
			break;
		default:
			{
				char	   *s = crm_value_to_cstring(v);

				out->type = jbvString;
				out->val.string.val = s;
				out->val.string.len = strlen(s);
			}
			break;
	}
}

/* A jsonb datum as a JSON value (out points into it). */
void
crm_jsonb_binary(Jsonb *j, JsonbValue *out)
{
	out->type = jbvBinary;
	out->val.binary.data = &j->root;
	out->val.binary.len = VARSIZE(j) - VARHDRSZ;
}

/* The object obj (NULL: {}) with key set to v. */
Jsonb *
crm_jsonb_with(Jsonb *obj, const char *key, JsonbValue *v)
{
	JsonbParseState *st = NULL;
	JsonbValue	k;
	Jsonb	   *one;

	pushJsonbValue(&st, WJB_BEGIN_OBJECT, NULL);
	k.type = jbvString;
	k.val.string.val = (char *) key;
	k.val.string.len = strlen(key);
	pushJsonbValue(&st, WJB_KEY, &k);
	pushJsonbValue(&st, WJB_VALUE, v);
	one = JsonbValueToJsonb(pushJsonbValue(&st, WJB_END_OBJECT, NULL));
	if (obj == NULL)
		return one;
	return DatumGetJsonbP(DirectFunctionCall2(jsonb_concat, JsonbPGetDatum(obj),
											  JsonbPGetDatum(one)));
}

/* The same as a jsonb datum. */
Jsonb *
crm_value_to_jsonb(CrmValue v)
{
	JsonbValue	jv;

	if (v.type == CRM_VAL_JSON)
		return v.json;
	crm_value_to_jsonb_value(v, &jv);
	return JsonbValueToJsonb(&jv);
}

char *
crm_value_to_cstring(CrmValue v)
{
	switch (v.type)
	{
		case CRM_VAL_NULL:
			return pstrdup("");
		case CRM_VAL_BOOL:
			return pstrdup(v.b ? "true" : "false");
		case CRM_VAL_NUMBER:
			return DatumGetCString(DirectFunctionCall1(numeric_out, NumericGetDatum(v.num)));
		case CRM_VAL_TEXT:
			return v.str;
		case CRM_VAL_DATE:
			{
				int			y,
							m,
							d;

				if (DATE_IS_NOBEGIN(v.date))
					return pstrdup("-infinity");
				if (DATE_IS_NOEND(v.date))
					return pstrdup("infinity");
				j2date(v.date + POSTGRES_EPOCH_JDATE, &y, &m, &d);
				return psprintf("%04d-%02d-%02d", y, m, d);
			}
		case CRM_VAL_TIMESTAMP:
			{
				struct pg_tm tm;
				fsec_t		fsec;
				int			tz;

				if (TIMESTAMP_IS_NOBEGIN(v.ts))
					return pstrdup("-infinity");
				if (TIMESTAMP_IS_NOEND(v.ts))
					return pstrdup("infinity");
				if (timestamp2tm(v.ts, &tz, &tm, &fsec, NULL, NULL) != 0)
					ereport(ERROR,
							(errcode(ERRCODE_DATETIME_VALUE_OUT_OF_RANGE),
							 errmsg("timestamp out of range")));
				return psprintf("%04d-%02d-%02d %02d:%02d:%02d", tm.tm_year, tm.tm_mon,
								tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec);
			}
		case CRM_VAL_JSON:
			return JsonbToCString(NULL, &v.json->root, VARSIZE(v.json));
	}
	return pstrdup("");
}

bool
expr_value_true(CrmValue v)
{
	Numeric		n;

	switch (v.type)
	{
		case CRM_VAL_BOOL:
			return v.b;
		case CRM_VAL_NULL:
			return false;
		case CRM_VAL_NUMBER:
			return !DatumGetBool(DirectFunctionCall2(numeric_eq, NumericGetDatum(v.num),
													 NumericGetDatum(int64_to_numeric(0))));
		case CRM_VAL_TEXT:
			if (pg_strcasecmp(v.str, "false") == 0 || pg_strcasecmp(v.str, "n") == 0 || v.str[0] == '\0')
				return false;
			if (text_to_numeric(v.str, &n))
				return !DatumGetBool(DirectFunctionCall2(numeric_eq, NumericGetDatum(n),
														 NumericGetDatum(int64_to_numeric(0))));
			return true;
		default:
			return true;
	}
}

/*
 * Compares two non-null values: numbers (also numeric-looking text) as
 * numbers, dates and timestamps (also ISO text) in time, else as text.
 */
int
expr_compare(CrmValue a, CrmValue b, bool *comparable)
{
	Numeric		na,
				nb;
	TimestampTz ta,
				tb;

	*comparable = true;
	if ((a.type == CRM_VAL_NUMBER || b.type == CRM_VAL_NUMBER || a.type == CRM_VAL_BOOL) &&
		to_number(a, &na) && to_number(b, &nb))
		return DatumGetInt32(DirectFunctionCall2(numeric_cmp, NumericGetDatum(na), NumericGetDatum(nb)));
	if ((a.type == CRM_VAL_DATE || a.type == CRM_VAL_TIMESTAMP ||
		 b.type == CRM_VAL_DATE || b.type == CRM_VAL_TIMESTAMP) &&
		crm_value_to_timestamptz(a, &ta) && crm_value_to_timestamptz(b, &tb))
		return ta < tb ? -1 : ta > tb ? 1 : 0;
	if (a.type == CRM_VAL_BOOL && b.type == CRM_VAL_BOOL)
		return (int) a.b - (int) b.b;
	if (a.type == CRM_VAL_TEXT && b.type == CRM_VAL_TEXT &&
		to_number(a, &na) && to_number(b, &nb))
		return DatumGetInt32(DirectFunctionCall2(numeric_cmp, NumericGetDatum(na), NumericGetDatum(nb)));
	return strcmp(crm_value_to_cstring(a), crm_value_to_cstring(b));
}

/* ---------- evaluation ---------- */

static Numeric
need_number(CrmValue v, int pos, const char *where)
{
	Numeric		num;

	if (!to_number(v, &num))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_TEXT_REPRESENTATION),
				 errmsg("\"%s\" is not a number, in %s at position %d",
						crm_value_to_cstring(v), where, pos)));
	return num;
}

/* An integer argument: a number, rounded; NaN is refused. */
static Numeric
integer_arg(CrmValue v, const ExprNode *n, const char *where)
{
	Numeric		num = need_number(v, n->pos, where);

	if (numeric_is_nan(num))
		ereport(ERROR,
				(errcode(ERRCODE_NUMERIC_VALUE_OUT_OF_RANGE),
				 errmsg("NaN is not an integer, in argument of %s in %s at position %d",
						n->name, where, n->pos)));
	return DatumGetNumeric(DirectFunctionCall2(numeric_round, NumericGetDatum(num),
											   Int32GetDatum(0)));
}

/*
 * An integer clamped to [lo, hi]: a huge value is as far as the function can
 * go, never a wrapped-around small one.
 */
static int64
clamp_integer(Numeric num, int64 lo, int64 hi)
{
	if (DatumGetInt32(DirectFunctionCall2(numeric_cmp, NumericGetDatum(num),
										  NumericGetDatum(int64_to_numeric(lo)))) <= 0)
		return lo;
	if (DatumGetInt32(DirectFunctionCall2(numeric_cmp, NumericGetDatum(num),
										  NumericGetDatum(int64_to_numeric(hi)))) >= 0)
		return hi;
	return DatumGetInt64(DirectFunctionCall1(numeric_int8, NumericGetDatum(num)));
}

/*
 * substr(s, start[, len]) with start and len of any size: the characters
 * from max(start, 1) up to start + len (exclusive), computed exactly in
 * numeric and only then brought into text_substr's int32 range.
 */
static CrmValue
eval_substr(const ExprNode *n, CrmValue *a, const char *where)
{
	Datum		s = CStringGetTextDatum(crm_value_to_cstring(a[0]));
	Numeric		start = integer_arg(a[1], n, where);
	int64		first = Max(clamp_integer(start, 1, PG_INT64_MAX), 1);
	Numeric		len;
	int64		end;

	if (n->nargs < 3)
	{
		if (first > PG_INT32_MAX)
			return expr_text_value(pstrdup(""));
		return expr_text_value(TextDatumGetCString(DirectFunctionCall2(text_substr_no_len, s,
																	   Int32GetDatum((int32) first))));
	}
	len = integer_arg(a[2], n, where);
	if (DatumGetInt32(DirectFunctionCall2(numeric_cmp, NumericGetDatum(len),
										  NumericGetDatum(int64_to_numeric(0)))) < 0)
		ereport(ERROR,
				(errcode(ERRCODE_SUBSTRING_ERROR),
				 errmsg("negative substring length not allowed, in %s at position %d", where, n->pos)));
	end = clamp_integer(DatumGetNumeric(DirectFunctionCall2(numeric_add, NumericGetDatum(start),
															NumericGetDatum(len))),
						0, PG_INT64_MAX);
	if (end <= first || first > PG_INT32_MAX)
		return expr_text_value(pstrdup(""));
	if (end - 1 > PG_INT32_MAX)
		return expr_text_value(TextDatumGetCString(DirectFunctionCall2(text_substr_no_len, s,
																	   Int32GetDatum((int32) first))));
	return expr_text_value(TextDatumGetCString(DirectFunctionCall3(text_substr, s,
																   Int32GetDatum((int32) first),
																   Int32GetDatum((int32) (end - first)))));
}

static Interval *
text_interval(const char *s)
{
	return DatumGetIntervalP(DirectFunctionCall3(interval_in, CStringGetDatum(s),
												 ObjectIdGetDatum(InvalidOid), Int32GetDatum(-1)));
}

static void
not_a_date(CrmValue v, const ExprNode *n, const char *where)
{
	ereport(ERROR,
			(errcode(ERRCODE_INVALID_DATETIME_FORMAT),
			 errmsg("\"%s\" is not a date, in %s at position %d",
					crm_value_to_cstring(v), where, n->pos)));
}

static CrmValue
eval_func(const ExprNode *n, CrmEvalContext *cx, const char *where, int depth)
{
	const char *f = n->name;
	CrmValue   *a;
	int			i;

	if (strcmp(f, "if") == 0)
		return expr_value_true(expr_eval_node(n->args[0], cx, where, depth + 1)) ?
			expr_eval_node(n->args[1], cx, where, depth + 1) :
			expr_eval_node(n->args[2], cx, where, depth + 1);
	/* every argument, however many (concat, min, max take any number) */
	a = palloc(sizeof(CrmValue) * Max(n->nargs, 1));
	for (i = 0; i < n->nargs; i++)
		a[i] = expr_eval_node(n->args[i], cx, where, depth + 1);

	if (strcmp(f, "concat") == 0)
	{
		StringInfoData buf;

		initStringInfo(&buf);
		for (i = 0; i < n->nargs; i++)
			appendStringInfoString(&buf, crm_value_to_cstring(a[i]));
		return expr_text_value(buf.data);
	}
	if (strcmp(f, "now") == 0)
	{
		CrmValue	v = null_value();

		v.type = CRM_VAL_TIMESTAMP;
		v.ts = GetCurrentTransactionStartTimestamp();
		return v;
	}
	if (strcmp(f, "today") == 0)
	{
		CrmValue	v = null_value();

		v.type = CRM_VAL_DATE;
		v.date = DatumGetDateADT(DirectFunctionCall1(timestamptz_date,
													 TimestampTzGetDatum(GetCurrentTransactionStartTimestamp())));
		return v;
	}
	if (strcmp(f, "min") == 0 || strcmp(f, "max") == 0)
	{
		CrmValue	best = null_value();

		for (i = 0; i < n->nargs; i++)
		{
			bool		comparable;

			if (a[i].type == CRM_VAL_NULL)
				continue;
			if (best.type == CRM_VAL_NULL)
				best = a[i];
			else
			{
				int			c = expr_compare(a[i], best, &comparable);

				if ((strcmp(f, "min") == 0 && c < 0) || (strcmp(f, "max") == 0 && c > 0))
					best = a[i];
			}
		}
		return best;
	}
	/* the other functions give null for a null first argument */
	if (n->nargs > 0 && a[0].type == CRM_VAL_NULL)
		return null_value();
	if (strcmp(f, "upper") == 0 || strcmp(f, "lower") == 0)
	{
		char	   *s = crm_value_to_cstring(a[0]);

		return expr_text_value(strcmp(f, "upper") == 0 ?
							   str_toupper(s, strlen(s), DEFAULT_COLLATION_OID) :
							   str_tolower(s, strlen(s), DEFAULT_COLLATION_OID));
	}
	if (strcmp(f, "trim") == 0)
		return expr_text_value(TextDatumGetCString(DirectFunctionCall1(btrim1,
																	   CStringGetTextDatum(crm_value_to_cstring(a[0])))));
	if (strcmp(f, "length") == 0)
		return number_value(int64_to_numeric(pg_mbstrlen(crm_value_to_cstring(a[0]))));
	if (strcmp(f, "substr") == 0)
	{
		/* a null start or length: null, as in SQL */
		if (a[1].type == CRM_VAL_NULL || (n->nargs == 3 && a[2].type == CRM_VAL_NULL))
			return null_value();
		return eval_substr(n, a, where);
	}
	if (strcmp(f, "round") == 0)
	{
		int64		digits = 0;

		if (n->nargs == 2)
		{
			if (a[1].type == CRM_VAL_NULL)
				return null_value();
			/* numeric_round limits the scale further */
			digits = clamp_integer(integer_arg(a[1], n, where), PG_INT32_MIN, PG_INT32_MAX);
		}
		return number_value(DatumGetNumeric(DirectFunctionCall2(numeric_round,
																NumericGetDatum(need_number(a[0], n->pos, where)),
																Int32GetDatum((int32) digits))));
	}
	if (strcmp(f, "abs") == 0)
		return number_value(DatumGetNumeric(DirectFunctionCall1(numeric_abs,
																NumericGetDatum(need_number(a[0], n->pos, where)))));
	if (strcmp(f, "number") == 0)
		return number_value(need_number(a[0], n->pos, where));
	if (strcmp(f, "date") == 0)
	{
		TimestampTz ts;
		CrmValue	v = null_value();

		if (!crm_value_to_timestamptz(a[0], &ts))
			not_a_date(a[0], n, where);
		v.type = CRM_VAL_DATE;
		v.date = DatumGetDateADT(DirectFunctionCall1(timestamptz_date, TimestampTzGetDatum(ts)));
		return v;
	}
	if (strcmp(f, "dateadd") == 0)
	{
		TimestampTz ts;
		CrmValue	v = null_value();

		if (!crm_value_to_timestamptz(a[0], &ts))
			not_a_date(a[0], n, where);
		if (a[1].type == CRM_VAL_NULL)
			return null_value();
		/* an infinite date stays infinite (timestamptz_pl_interval) */
		ts = DatumGetTimestampTz(DirectFunctionCall2(timestamptz_pl_interval, TimestampTzGetDatum(ts),
													 IntervalPGetDatum(text_interval(crm_value_to_cstring(a[1])))));
		if (a[0].type == CRM_VAL_DATE)
		{
			v.type = CRM_VAL_DATE;
			v.date = DatumGetDateADT(DirectFunctionCall1(timestamptz_date, TimestampTzGetDatum(ts)));
		}
		else
		{
			v.type = CRM_VAL_TIMESTAMP;
			v.ts = ts;
		}
		return v;
	}
	if (strcmp(f, "datediff") == 0)
	{
		TimestampTz t1,
					t2;
		const char *unit = n->nargs == 3 ? crm_value_to_cstring(a[2]) : "days";
		int64		div;
		int64		diff;

		if (a[1].type == CRM_VAL_NULL)
			return null_value();
		if (!crm_value_to_timestamptz(a[0], &t1) || !crm_value_to_timestamptz(a[1], &t2))
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_DATETIME_FORMAT),
					 errmsg("datediff needs two dates, in %s at position %d", where, n->pos)));
		if (pg_strcasecmp(unit, "days") == 0 || pg_strcasecmp(unit, "day") == 0)
			div = USECS_PER_DAY;
		else if (pg_strcasecmp(unit, "hours") == 0 || pg_strcasecmp(unit, "hour") == 0)
			div = USECS_PER_HOUR;
		else if (pg_strcasecmp(unit, "minutes") == 0 || pg_strcasecmp(unit, "minute") == 0)
			div = USECS_PER_MINUTE;
		else if (pg_strcasecmp(unit, "seconds") == 0 || pg_strcasecmp(unit, "second") == 0)
			div = USECS_PER_SEC;
		else
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("unknown datediff unit \"%s\" in %s", unit, where),
					 errhint("Units: days, hours, minutes, seconds.")));
		if (TIMESTAMP_NOT_FINITE(t1) || TIMESTAMP_NOT_FINITE(t2))
			ereport(ERROR,
					(errcode(ERRCODE_DATETIME_VALUE_OUT_OF_RANGE),
					 errmsg("datediff cannot count the time to or from an infinite date, in %s at position %d",
							where, n->pos),
					 errhint("Test for it first, e.g. if({{close_date}} = \"infinity\", ..., datediff(...)).")));
		if (pg_sub_s64_overflow(t2, t1, &diff))
			ereport(ERROR,
					(errcode(ERRCODE_DATETIME_VALUE_OUT_OF_RANGE),
					 errmsg("datediff out of range, in %s at position %d", where, n->pos)));
		return number_value(int64_to_numeric(diff / div));
	}
	elog(ERROR, "function \"%s\" is not implemented", f);
	return null_value();
}

/* l op r for the arithmetic and comparison operators; pos is op's. */
CrmValue
expr_apply_binary(ExprOp op, CrmValue l, CrmValue r, int pos, const char *where)
{
	switch (op)
	{
		case OP_CAT:
			return expr_text_value(psprintf("%s%s", crm_value_to_cstring(l), crm_value_to_cstring(r)));
		case OP_ADD:
		case OP_SUB:
			if (l.type == CRM_VAL_NULL || r.type == CRM_VAL_NULL)
				return null_value();
			if (l.type == CRM_VAL_DATE || l.type == CRM_VAL_TIMESTAMP)
			{
				/* date + number of days */
				Numeric		days = need_number(r, pos, where);
				char	   *iv = psprintf("%s%s days", op == OP_SUB ? "-" : "",
										  DatumGetCString(DirectFunctionCall1(numeric_out, NumericGetDatum(days))));
				CrmValue	res = null_value();
				TimestampTz ts;

				(void) crm_value_to_timestamptz(l, &ts);
				ts = DatumGetTimestampTz(DirectFunctionCall2(timestamptz_pl_interval, TimestampTzGetDatum(ts),
															 IntervalPGetDatum(text_interval(iv))));
				res.type = l.type;
				if (l.type == CRM_VAL_DATE)
					res.date = DatumGetDateADT(DirectFunctionCall1(timestamptz_date, TimestampTzGetDatum(ts)));
				else
					res.ts = ts;
				return res;
			}
			return number_value(DatumGetNumeric(DirectFunctionCall2(op == OP_ADD ? numeric_add : numeric_sub,
																	NumericGetDatum(need_number(l, pos, where)),
																	NumericGetDatum(need_number(r, pos, where)))));
		case OP_MUL:
			if (l.type == CRM_VAL_NULL || r.type == CRM_VAL_NULL)
				return null_value();
			return number_value(DatumGetNumeric(DirectFunctionCall2(numeric_mul,
																	NumericGetDatum(need_number(l, pos, where)),
																	NumericGetDatum(need_number(r, pos, where)))));
		case OP_DIV:
			{
				Numeric		d;

				if (l.type == CRM_VAL_NULL || r.type == CRM_VAL_NULL)
					return null_value();
				d = need_number(r, pos, where);
				if (numeric_is_nan(d) ||
					DatumGetBool(DirectFunctionCall2(numeric_eq, NumericGetDatum(d),
													 NumericGetDatum(int64_to_numeric(0)))))
					ereport(ERROR,
							(errcode(ERRCODE_DIVISION_BY_ZERO),
							 errmsg("division by zero in %s at position %d", where, pos)));
				/* a quotient keeps no trailing zeros: 4 / 2 is 2, not 2.0000000000000000 */
				return number_value(DatumGetNumeric(DirectFunctionCall1(numeric_trim_scale,
																		DirectFunctionCall2(numeric_div,
																							NumericGetDatum(need_number(l, pos, where)),
																							NumericGetDatum(d)))));
			}
		case OP_EQ:
		case OP_NE:
		case OP_LT:
		case OP_LE:
		case OP_GT:
		case OP_GE:
			{
				bool		comparable;
				int			c;

				if (l.type == CRM_VAL_NULL || r.type == CRM_VAL_NULL)
				{
					bool		both = l.type == CRM_VAL_NULL && r.type == CRM_VAL_NULL;

					if (op == OP_EQ)
						return bool_value(both);
					if (op == OP_NE)
						return bool_value(!both);
					return bool_value(false);
				}
				c = expr_compare(l, r, &comparable);
				switch (op)
				{
					case OP_EQ:
						return bool_value(c == 0);
					case OP_NE:
						return bool_value(c != 0);
					case OP_LT:
						return bool_value(c < 0);
					case OP_LE:
						return bool_value(c <= 0);
					case OP_GT:
						return bool_value(c > 0);
					default:
						return bool_value(c >= 0);
				}
			}
		default:
			break;
	}
	elog(ERROR, "unexpected operator %d", (int) op);
	return null_value();
}

/*
 * A chain of one precedence level, left to right in a loop: "and" / "or"
 * stop at the first operand that decides, "&" appends to one buffer.
 */
static CrmValue
eval_chain(const ExprNode *n, CrmEvalContext *cx, const char *where, int depth)
{
	CrmValue	acc;
	int			i;

	switch (n->ops[1])
	{
		case OP_AND:
		case OP_OR:
			{
				bool		decides = n->ops[1] == OP_OR;

				for (i = 0; i < n->nargs; i++)
					if (expr_value_true(expr_eval_node(n->args[i], cx, where, depth + 1)) == decides)
						return bool_value(decides);
				return bool_value(!decides);
			}
		case OP_CAT:
			{
				StringInfoData buf;

				initStringInfo(&buf);
				for (i = 0; i < n->nargs; i++)
					appendStringInfoString(&buf, crm_value_to_cstring(expr_eval_node(n->args[i], cx, where, depth + 1)));
				return expr_text_value(buf.data);
			}
		default:
			acc = expr_eval_node(n->args[0], cx, where, depth + 1);
			for (i = 1; i < n->nargs; i++)
				acc = expr_apply_binary(n->ops[i], acc, expr_eval_node(n->args[i], cx, where, depth + 1),
								   n->opos[i], where);
			return acc;
	}
}

/*
 * Evaluates a node at the given depth (the root is 0).  A compiled tree is
 * never deeper than CRM_EXPR_MAX_DEPTH; the evaluator holds to the same limit.
 */
CrmValue
expr_eval_node(const ExprNode *n, CrmEvalContext *cx, const char *where, int depth)
{
	check_stack_depth();
	CHECK_FOR_INTERRUPTS();
	if (depth > CRM_EXPR_MAX_DEPTH)
		expr_too_deep(where, n->pos);
	switch (n->kind)
	{
		case EN_CONST:
			return n->value;
		case EN_FIELD:
			return field_value(n, cx);
		case EN_REF:
			return ref_value(n, cx);
		case EN_UNARY:
			{
				CrmValue	v = expr_eval_node(n->args[0], cx, where, depth + 1);

				if (n->op == OP_NOT)
					return bool_value(!expr_value_true(v));
				if (v.type == CRM_VAL_NULL)
					return v;
				return number_value(DatumGetNumeric(DirectFunctionCall1(numeric_uminus,
																		NumericGetDatum(need_number(v, n->pos, where)))));
			}
		case EN_BINARY:
			{
				CrmValue	l = expr_eval_node(n->args[0], cx, where, depth + 1);
				CrmValue	r = expr_eval_node(n->args[1], cx, where, depth + 1);

				return expr_apply_binary(n->op, l, r, n->pos, where);
			}
		case EN_CHAIN:
			return eval_chain(n, cx, where, depth);
		case EN_FUNC:
			return eval_func(n, cx, where, depth);
		case EN_CONCAT:
			{
				StringInfoData buf;
				int			i;

				initStringInfo(&buf);
				for (i = 0; i < n->nargs; i++)
					appendStringInfoString(&buf, crm_value_to_cstring(expr_eval_node(n->args[i], cx, where, depth + 1)));
				return expr_text_value(buf.data);
			}
		case EN_COND:
			return expr_eval_condition_leaf(n, cx, where, depth);
	}
	return null_value();
}

void
crm_eval_context_init(CrmEvalContext *cx, const char *entity_type, int64 item_id,
					  HeapTuple tuple, TupleDesc desc)
{
	memset(cx, 0, sizeof(*cx));
	cx->entity_type = entity_type;
	cx->item_id = item_id;
	cx->tuple = tuple;
	cx->desc = desc;
}

CrmValue
crm_expr_eval(const CrmExpr *e, CrmEvalContext *cx)
{
	return expr_eval_node(e->root, cx, e->where, 0);
}

char *
crm_expr_render(const CrmExpr *e, CrmEvalContext *cx)
{
	if (e->constant)
		return e->root->value.str;
	return crm_value_to_cstring(expr_eval_node(e->root, cx, e->where, 0));
}

/* Percent-encodes everything but RFC 3986's unreserved characters. */
static void
append_percent_encoded(StringInfo buf, const char *s)
{
	static const char hex[] = "0123456789ABCDEF";

	for (; *s; s++)
	{
		unsigned char c = (unsigned char) *s;

		if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
			(c >= '0' && c <= '9') || c == '-' || c == '.' || c == '_' || c == '~')
			appendStringInfoChar(buf, (char) c);
		else
		{
			appendStringInfoChar(buf, '%');
			appendStringInfoChar(buf, hex[c >> 4]);
			appendStringInfoChar(buf, hex[c & 15]);
		}
	}
}

/*
 * A template that is a URL: the values it inserts after its first literal
 * part are percent-encoded, so a title with "&", "/" or "#" stays one value
 * in its query or path segment.  A leading value (the base URL from a field)
 * and a formula's result are taken as written.
 */
char *
crm_expr_render_url(const CrmExpr *e, CrmEvalContext *cx)
{
	StringInfoData buf;
	bool		literal_seen = false;
	int			i;

	if (e->constant || e->root->kind != EN_CONCAT)
		return crm_expr_render(e, cx);
	initStringInfo(&buf);
	for (i = 0; i < e->root->nargs; i++)
	{
		const ExprNode *part = e->root->args[i];
		char	   *v = crm_value_to_cstring(expr_eval_node(part, cx, e->where, 1));

		if (part->kind == EN_CONST)
		{
			appendStringInfoString(&buf, v);
			literal_seen = true;
		}
		else if (literal_seen)
			append_percent_encoded(&buf, v);
		else
			appendStringInfoString(&buf, v);
	}
	return buf.data;
}

bool
crm_expr_test(const CrmExpr *e, CrmEvalContext *cx)
{
	return expr_value_true(expr_eval_node(e->root, cx, e->where, 0));
}
