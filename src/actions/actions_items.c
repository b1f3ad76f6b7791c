/*-------------------------------------------------------------------------
 *
 * actions_items.c
 *	  Actions on the item itself: update_item, change_stage, change_status,
 *	  change_responsible, delete_item, generate_code.
 *
 * Statements name only tables and columns taken from the catalog (the item's
 * table, a column that exists); values always travel as parameters.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "common/pg_prng.h"
#include "executor/spi.h"
#include "utils/builtins.h"
#include "utils/numeric.h"
#include "utils/jsonb.h"

#include "actions/actions.h"
#include "core/spi_util.h"

static const char *
item_table(CrmActionCall *call)
{
	return quote_qualified_identifier("crm", crm_item_table(call->cx->entity_type));
}

/* The SQL type of a column of the item's table, or NULL for a custom field. */
static char *
column_type(const char *table, const char *column)
{
	static SPIPlanPtr plan = NULL;
	Oid			types[2] = {TEXTOID, TEXTOID};
	Datum		vals[2];
	bool		isnull;

	vals[0] = CStringGetTextDatum(table);
	vals[1] = CStringGetTextDatum(column);
	crm_exec(crm_plan(&plan,
					  "SELECT format_type(a.atttypid, a.atttypmod) FROM pg_attribute a"
					  " WHERE a.attrelid = ('crm.' || quote_ident($1))::regclass"
					  "   AND a.attname = lower($2) AND a.attnum > 0 AND NOT a.attisdropped",
					  2, types), vals, NULL, true, 1);
	if (SPI_processed == 0)
		return NULL;
	return TextDatumGetCString(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
}

/* The declared type of a custom field (crm.user_field), or NULL. */
static char *
custom_field_type(const char *entity_type, const char *code)
{
	static SPIPlanPtr plan = NULL;
	Oid			types[2] = {TEXTOID, TEXTOID};
	Datum		vals[2];
	bool		isnull;

	vals[0] = CStringGetTextDatum(entity_type);
	vals[1] = CStringGetTextDatum(code);
	crm_exec(crm_plan(&plan,
					  "SELECT type FROM crm.user_field WHERE entity_type = $1 AND upper(code) = upper($2)",
					  2, types), vals, NULL, true, 1);
	if (SPI_processed == 0)
		return NULL;
	return TextDatumGetCString(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
}

/* A decimal number as written: [-+]digits[.digits][e[-+]digits]. */
static bool
looks_numeric(const char *s)
{
	bool		digits = false;

	if (*s == '-' || *s == '+')
		s++;
	for (; isdigit((unsigned char) *s); s++)
		digits = true;
	if (*s == '.')
		for (s++; isdigit((unsigned char) *s); s++)
			digits = true;
	if (digits && (*s == 'e' || *s == 'E'))
	{
		s++;
		if (*s == '-' || *s == '+')
			s++;
		if (!isdigit((unsigned char) *s))
			return false;
		while (isdigit((unsigned char) *s))
			s++;
	}
	return digits && *s == '\0';
}

/*
 * A value for a typed custom field keeps the field's type, whatever form the
 * template gave it ("1200" for a number field is 1200): number and money as
 * numbers, boolean as true/false, user as a user id.  A value that is not of
 * the type is an error naming the field; other types are stored as given.
 */
static CrmValue
typed_custom_value(const char *entity_type, const char *field, CrmValue v)
{
	char	   *type;
	char	   *s;
	CrmValue	out = v;

	if (v.type == CRM_VAL_NULL || v.type == CRM_VAL_JSON ||
		(type = custom_field_type(entity_type, field)) == NULL)
		return v;
	s = crm_value_to_cstring(v);
	if (v.type == CRM_VAL_TEXT && *s == '\0')
	{
		out.type = CRM_VAL_NULL;
		return out;
	}
	if (strcmp(type, "number") == 0 || strcmp(type, "money") == 0)
	{
		if (v.type == CRM_VAL_NUMBER)
			return v;
		if (v.type == CRM_VAL_TEXT && looks_numeric(s))
		{
			out.type = CRM_VAL_NUMBER;
			out.num = DatumGetNumeric(DirectFunctionCall3(numeric_in, CStringGetDatum(s),
														  ObjectIdGetDatum(InvalidOid),
														  Int32GetDatum(-1)));
			return out;
		}
	}
	else if (strcmp(type, "boolean") == 0)
	{
		if (v.type == CRM_VAL_BOOL)
			return v;
		if (v.type == CRM_VAL_TEXT || v.type == CRM_VAL_NUMBER)
		{
			out.type = CRM_VAL_BOOL;
			if (pg_strcasecmp(s, "true") == 0 || pg_strcasecmp(s, "y") == 0 ||
				pg_strcasecmp(s, "yes") == 0 || strcmp(s, "1") == 0)
			{
				out.b = true;
				return out;
			}
			if (pg_strcasecmp(s, "false") == 0 || pg_strcasecmp(s, "n") == 0 ||
				pg_strcasecmp(s, "no") == 0 || strcmp(s, "0") == 0)
			{
				out.b = false;
				return out;
			}
		}
	}
	else if (strcmp(type, "user") == 0)
	{
		int64		id;

		if (crm_value_to_int64(v, &id) && id > 0)
		{
			out.type = CRM_VAL_NUMBER;
			out.num = int64_to_numeric(id);
			return out;
		}
	}
	else
		return v;
	ereport(ERROR,
			(errcode(ERRCODE_INVALID_TEXT_REPRESENTATION),
			 errmsg("value \"%s\" does not fit custom field %s of type %s", s, field, type),
			 errhint("Give the field a value of its type (crm.user_field.type).")));
	return v;					/* not reached */
}

/*
 * Sets the "fields" parameter on an item of the entity type: columns by
 * their type, anything else as a custom field in fields jsonb.
 */
void
crm_update_fields(CrmActionCall *call, const char *entity_type, int64 id)
{
	const char *table = crm_item_table(entity_type);
	const CrmCompiledParam *c = crm_param(call, "fields");
	ListCell   *ln;
	ListCell   *le;
	StringInfoData sql;
	StringInfoData custom;
	int			ncolumns = 0;
	int			ncustom = 0;
	Oid		   *types;
	Datum	   *vals;
	char	   *nulls;
	int			n = 0;
	int			nmax = list_length(c->field_names) + 1;

	types = palloc(sizeof(Oid) * nmax);
	vals = palloc(sizeof(Datum) * nmax);
	nulls = palloc(sizeof(char) * nmax);
	initStringInfo(&sql);
	appendStringInfo(&sql, "UPDATE %s SET ", quote_qualified_identifier("crm", table));

	initStringInfo(&custom);
	forboth(ln, c->field_names, le, c->field_exprs)
	{
		char	   *field = (char *) lfirst(ln);
		CrmExpr    *e = (CrmExpr *) lfirst(le);
		CrmValue	v;
		char	   *type;

		/* "fields.UF_X" and "UF_X" name the same custom field */
		if (pg_strncasecmp(field, "fields.", 7) == 0)
			field += 7;
		type = column_type(table, field);

		if (e == NULL)
			v.type = CRM_VAL_NULL;
		else
			v = crm_expr_eval(e, call->cx);
		if (type != NULL)
		{
			/* a column: the text form is cast by the column's input function */
			appendStringInfo(&sql, "%s%s = $%d::%s", ncolumns++ > 0 ? ", " : "",
							 quote_identifier(pstrdup(field)), n + 1, type);
			types[n] = TEXTOID;
			nulls[n] = v.type == CRM_VAL_NULL ? 'n' : ' ';
			vals[n] = v.type == CRM_VAL_NULL ? (Datum) 0 : CStringGetTextDatum(crm_value_to_cstring(v));
		}
		else
		{
			/* a custom field, kept in fields under its code, in its type */
			v = typed_custom_value(entity_type, field, v);
			/* jsonb_build_object takes up to 100 arguments: 40 pairs each */
			appendStringInfo(&custom, "%s%s, $%d::jsonb",
							 ncustom == 0 ? "" : ncustom % 40 == 0 ? ") || jsonb_build_object(" : ", ",
							 quote_literal_cstr(field), n + 1);
			ncustom++;
			types[n] = JSONBOID;
			nulls[n] = ' ';
			vals[n] = JsonbPGetDatum(crm_value_to_jsonb(v));
		}
		n++;
	}
	/* every custom field in one assignment: a column is set once */
	if (custom.len > 0)
		appendStringInfo(&sql, "%sfields = fields || jsonb_build_object(%s)",
						 ncolumns > 0 ? ", " : "", custom.data);
	appendStringInfo(&sql, " WHERE id = $%d", n + 1);
	types[n] = INT8OID;
	vals[n] = Int64GetDatum(id);
	nulls[n] = ' ';
	if (SPI_execute_with_args(sql.data, n + 1, types, vals, nulls, false, 0) < 0)
		elog(ERROR, "updating crm.%s failed", table);
}

void
crm_exec_update_item(CrmActionCall *call)
{
	crm_update_fields(call, call->cx->entity_type, call->cx->item_id);
}

static void
set_stage(CrmActionCall *call, int64 stage_id)
{
	char	   *sql = psprintf("UPDATE %s SET stage_id = $1 WHERE id = $2", item_table(call));
	Oid			types[2] = {INT8OID, INT8OID};
	Datum		vals[2];

	vals[0] = Int64GetDatum(stage_id);
	vals[1] = Int64GetDatum(call->cx->item_id);
	if (SPI_execute_with_args(sql, 2, types, vals, NULL, false, 0) < 0)
		elog(ERROR, "change_stage failed");
}

void
crm_exec_change_stage(CrmActionCall *call)
{
	set_stage(call, crm_param_stage(call, "stage"));
	call->stop_chain = true;
}

void
crm_exec_delete_item(CrmActionCall *call)
{
	char	   *sql = psprintf("DELETE FROM %s WHERE id = $1", item_table(call));
	Oid			types[1] = {INT8OID};
	Datum		vals[1];

	vals[0] = Int64GetDatum(call->cx->item_id);
	if (SPI_execute_with_args(sql, 1, types, vals, NULL, false, 0) < 0)
		elog(ERROR, "delete_item failed");
	call->stop_chain = true;
}

void
crm_exec_generate_code(CrmActionCall *call)
{
	static const char digits[] = "0123456789";
	static const char letters[] = "ABCDEFGHJKLMNPQRSTUVWXYZ";
	static const char mixed[] = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789";
	char	   *format = crm_param_text(call, "format");
	int64		len = 0;
	const char *alphabet;
	char	   *code;
	int			i;

	(void) crm_param_int(call, "length", &len);
	if (len < 1 || len > 64)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("parameter \"length\" must be between 1 and 64, not %lld", (long long) len)));
	alphabet = strcmp(format, "digits") == 0 ? digits :
		strcmp(format, "letters") == 0 ? letters : mixed;
	code = palloc(len + 1);
	for (i = 0; i < len; i++)
		code[i] = alphabet[pg_prng_uint64_range(&pg_global_prng_state, 0, strlen(alphabet) - 1)];
	code[len] = '\0';
	crm_action_output_text(call, "code", code);
}

/* Whether a user can take work now: active and not on the absence chart. */
static bool
user_available(int64 id)
{
	static SPIPlanPtr plan = NULL;
	Oid			types[1] = {INT8OID};
	Datum		vals[1];

	vals[0] = Int64GetDatum(id);
	crm_exec(crm_plan(&plan,
					  "SELECT 1 FROM crm.user u WHERE u.id = $1 AND u.active AND NOT EXISTS"
					  " (SELECT 1 FROM crm.absence a WHERE a.user_id = u.id"
					  "   AND now() >= a.start_at AND now() < a.end_at)",
					  1, types), vals, NULL, true, 1);
	return SPI_processed > 0;
}

void
crm_exec_change_responsible(CrmActionCall *call)
{
	static SPIPlanPtr turns = NULL;
	int64	   *ids;
	int			n = crm_param_users(call, "users", &ids);
	char	   *mode = crm_param_text(call, "mode");
	bool		skip_absent = crm_param_bool(call, "skip_absent", false);
	int64	   *cand = palloc(sizeof(int64) * Max(n, 1));
	int			nc = 0;
	int			i;
	int64		chosen;
	char	   *sql;
	Oid			types[2] = {INT8OID, INT8OID};
	Datum		vals[2];

	for (i = 0; i < n; i++)
		if (!skip_absent || user_available(ids[i]))
			cand[nc++] = ids[i];
	if (nc == 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("no available user to assign"),
				 errdetail("%d user(s) listed, none %s.", n, skip_absent ? "present and active" : "found")));
	if (mode == NULL || strcmp(mode, "first") == 0)
		chosen = cand[0];
	else if (strcmp(mode, "random") == 0)
		chosen = cand[pg_prng_uint64_range(&pg_global_prng_state, 0, nc - 1)];
	else
	{
		/* rotate: the robot's turns so far pick the next candidate */
		int64		k;

		vals[0] = Int64GetDatum(call->robot_id);
		crm_exec(crm_plan(&turns,
						  "INSERT INTO crm.robot_turn AS t (robot_id, turns) VALUES ($1, 1)"
						  " ON CONFLICT (robot_id) DO UPDATE SET turns = t.turns + 1"
						  " RETURNING turns - 1",
						  1, types), vals, NULL, false, 1);
		k = crm_returned_id();
		chosen = cand[k % nc];
	}
	sql = psprintf("UPDATE %s SET responsible_id = $1 WHERE id = $2", item_table(call));
	vals[0] = Int64GetDatum(chosen);
	vals[1] = Int64GetDatum(call->cx->item_id);
	if (SPI_execute_with_args(sql, 2, types, vals, NULL, false, 0) < 0)
		elog(ERROR, "change_responsible failed");
}
