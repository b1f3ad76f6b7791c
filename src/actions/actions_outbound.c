/*-------------------------------------------------------------------------
 *
 * actions_outbound.c
 *	  Outbound actions: webhook, send_email, send_sms, robocall.
 *
 * None of them touches the network: each writes one fully rendered message
 * to crm.outbox in the transaction that ran the robot, and the worker
 * delivers it after commit.  A rolled-back change sends nothing.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "utils/builtins.h"
#include "utils/jsonb.h"

#include "actions/actions.h"
#include "core/spi_util.h"

/* Builds a jsonb object from (key, JsonbValue) pairs. */
typedef struct ObjBuilder
{
	JsonbParseState *st;
} ObjBuilder;

static void
ob_begin(ObjBuilder *b)
{
	b->st = NULL;
	pushJsonbValue(&b->st, WJB_BEGIN_OBJECT, NULL);
}

static void
ob_key(ObjBuilder *b, const char *key)
{
	JsonbValue	k;

	k.type = jbvString;
	k.val.string.val = (char *) key;
	k.val.string.len = strlen(key);
	pushJsonbValue(&b->st, WJB_KEY, &k);
}

static void
ob_text(ObjBuilder *b, const char *key, const char *val)
{
	JsonbValue	v;

	if (val == NULL)
		return;
	ob_key(b, key);
	v.type = jbvString;
	v.val.string.val = (char *) val;
	v.val.string.len = strlen(val);
	pushJsonbValue(&b->st, WJB_VALUE, &v);
}

static void
ob_bool(ObjBuilder *b, const char *key, bool val)
{
	JsonbValue	v;

	ob_key(b, key);
	v.type = jbvBool;
	v.val.boolean = val;
	pushJsonbValue(&b->st, WJB_VALUE, &v);
}

static void
ob_jsonb(ObjBuilder *b, const char *key, Jsonb *val)
{
	JsonbValue	v;

	if (val == NULL)
		return;
	ob_key(b, key);
	if (JB_ROOT_IS_SCALAR(val))
		(void) JsonbExtractScalar(&val->root, &v);
	else
	{
		v.type = jbvBinary;
		v.val.binary.data = &val->root;
		v.val.binary.len = VARSIZE(val) - VARHDRSZ;
	}
	pushJsonbValue(&b->st, WJB_VALUE, &v);
}

static void
ob_strings(ObjBuilder *b, const char *key, List *vals)
{
	ListCell   *lc;
	JsonbValue	v;

	ob_key(b, key);
	pushJsonbValue(&b->st, WJB_BEGIN_ARRAY, NULL);
	foreach(lc, vals)
	{
		char	   *s = (char *) lfirst(lc);

		v.type = jbvString;
		v.val.string.val = s;
		v.val.string.len = strlen(s);
		pushJsonbValue(&b->st, WJB_ELEM, &v);
	}
	pushJsonbValue(&b->st, WJB_END_ARRAY, NULL);
}

static Jsonb *
ob_end(ObjBuilder *b)
{
	return JsonbValueToJsonb(pushJsonbValue(&b->st, WJB_END_OBJECT, NULL));
}

static Jsonb *
item_as_jsonb(CrmActionCall *call)
{
	char	   *sql = psprintf("SELECT to_jsonb(t) FROM %s t WHERE id = $1",
							   quote_qualified_identifier("crm", crm_item_table(call->cx->entity_type)));
	Oid			types[1] = {INT8OID};
	Datum		vals[1];
	bool		isnull;
	Datum		d;

	vals[0] = Int64GetDatum(call->cx->item_id);
	if (SPI_execute_with_args(sql, 1, types, vals, NULL, false, 1) < 0 || SPI_processed == 0)
		return NULL;
	d = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);
	return isnull ? NULL : DatumGetJsonbPCopy(d);
}

/* The named provider of a channel, or 0 (the channel's default, chosen at delivery). */
static int64
provider_id(CrmActionCall *call, const char *channel)
{
	static SPIPlanPtr plan = NULL;
	char	   *name = crm_param_text(call, "provider");
	Oid			types[2] = {TEXTOID, TEXTOID};
	Datum		vals[2];
	bool		isnull;

	if (name == NULL || *name == '\0')
		return 0;
	vals[0] = CStringGetTextDatum(channel);
	vals[1] = CStringGetTextDatum(name);
	crm_exec(crm_plan(&plan, "SELECT id FROM crm.provider WHERE channel = $1 AND name = $2",
					  2, types), vals, NULL, true, 1);
	if (SPI_processed == 0)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("%s provider \"%s\" does not exist", channel, name),
				 errhint("Add it with crm.add_provider('%s', '%s', config).", channel, name)));
	return DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
}

/* The drive file ids of a files parameter, as strings for the payload. */
static List *
file_ids(CrmActionCall *call, const char *name)
{
	int64	   *ids;
	int			n = crm_param_files(call, name, &ids);
	List	   *out = NIL;
	int			i;

	for (i = 0; i < n; i++)
		out = lappend(out, psprintf(INT64_FORMAT, ids[i]));
	return out;
}

void
crm_exec_outbound(CrmActionCall *call)
{
	static SPIPlanPtr plan = NULL;
	const char *action = call->action->name;
	const char *channel;
	ObjBuilder	b;
	Oid			types[7] = {TEXTOID, INT8OID, JSONBOID, TEXTOID, INT8OID, INT8OID, INT8OID};
	Datum		vals[7];
	char		nulls[7] = {' ', ' ', ' ', ' ', ' ', ' ', ' '};
	int64		prov;
	bool		isnull;

	ob_begin(&b);
	if (strcmp(action, "webhook") == 0)
	{
		char	   *method = crm_param_text(call, "method");
		Jsonb	   *body = crm_param_json(call, "body");

		channel = "webhook";
		ob_text(&b, "url", crm_param_url(call, "url"));
		ob_text(&b, "method", method ? method : "POST");
		ob_jsonb(&b, "headers", crm_param_json(call, "headers"));
		if (body == NULL)
		{
			/* default body: the event and the item as JSON */
			ObjBuilder	d;

			ob_begin(&d);
			ob_text(&d, "event", "robot");
			ob_text(&d, "entity_type", call->cx->entity_type);
			ob_jsonb(&d, "item", item_as_jsonb(call));
			body = ob_end(&d);
		}
		ob_jsonb(&b, "body", body);
	}
	else if (strcmp(action, "send_email") == 0 || strcmp(action, "email") == 0)
	{
		/* email, the process activity, says format (text | html) for html */
		const char *format = crm_param_if_any(call, "format") ? crm_param_text(call, "format") : NULL;

		char	   *sep = crm_param_text(call, "separator");
		List	   *from = crm_param_addresses(call, "from", false, NULL);
		List	   *to = crm_param_addresses(call, "to", false, sep ? sep : ",");

		channel = "email";
		if (to == NIL)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("parameter \"to\" names no e-mail address for this item")));
		if (from != NIL)
			ob_text(&b, "from", (char *) linitial(from));
		ob_strings(&b, "to", to);
		ob_text(&b, "subject", crm_param_text(call, "subject"));
		ob_text(&b, "body", crm_param_text(call, "body"));
		ob_bool(&b, "html", format ? strcmp(format, "html") == 0 : crm_param_bool(call, "html", false));
		ob_text(&b, "charset", "utf-8");
		if (crm_param_present(call, "attachments"))
			ob_strings(&b, "attachments", file_ids(call, "attachments"));
	}
	else if (strcmp(action, "send_sms") == 0)
	{
		List	   *to = crm_param_addresses(call, "recipients", true, ",;");

		channel = "sms";
		if (to == NIL)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("parameter \"recipients\" names no phone number for this item")));
		ob_strings(&b, "to", to);
		ob_text(&b, "text", crm_param_text(call, "text"));
	}
	else
	{
		channel = "robocall";
		ob_text(&b, "number", crm_param_text(call, "number"));
		ob_text(&b, "text", crm_param_text(call, "text"));
		call->hold = crm_param_bool(call, "wait_for_result", false);
		ob_bool(&b, "wait_for_result", call->hold);
	}
	prov = provider_id(call, channel);

	vals[0] = CStringGetTextDatum(channel);
	vals[1] = Int64GetDatum(prov);
	nulls[1] = prov ? ' ' : 'n';
	vals[2] = JsonbPGetDatum(ob_end(&b));
	vals[3] = CStringGetTextDatum(call->cx->entity_type);
	vals[4] = Int64GetDatum(call->cx->item_id);
	vals[5] = Int64GetDatum(call->robot_id);
	nulls[5] = call->robot_id ? ' ' : 'n';
	vals[6] = Int64GetDatum(call->process_instance_id);
	nulls[6] = call->process_instance_id ? ' ' : 'n';
	crm_exec(crm_plan(&plan,
					  "INSERT INTO crm.outbox (channel, provider_id, payload, entity_type, entity_id, robot_id,"
					  " process_instance_id) VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING id",
					  7, types), vals, nulls, false, 1);
	crm_action_output_int(call, "message_id",
						  DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull)));
}
