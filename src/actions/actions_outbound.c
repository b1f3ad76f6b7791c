/*-------------------------------------------------------------------------
 *
 * actions_outbound.c
 *	  Outbound actions: webhook, send_email, send_sms, robocall, and the
 *	  process activities email and openline_message.
 *
 * None of them touches the network: each writes one fully rendered message
 * to crm.outbox in the transaction that ran the robot, and the worker
 * delivers it after commit.  A rolled-back change sends nothing.
 *
 * openline_message also records the message on the item, as an outgoing
 * openline activity; a hidden one is only recorded.  Its outbox message is
 * the body of a signed webhook to the channel connector (the openline
 * provider): the item, the client as the item's latest incoming openline
 * activity knows them, the text and the attachments.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/dependency.h"
#include "catalog/namespace.h"
#include "catalog/pg_type.h"
#include "commands/sequence.h"
#include "executor/spi.h"
#include "mb/pg_wchar.h"
#include "utils/builtins.h"
#include "utils/jsonb.h"
#include "utils/lsyscache.h"
#include "utils/syscache.h"

#include "actions/actions.h"
#include "core/charset.h"
#include "core/rowsink.h"
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
ob_int(ObjBuilder *b, const char *key, int64 val)
{
	JsonbValue	v;

	ob_key(b, key);
	v.type = jbvNumeric;
	v.val.numeric = DatumGetNumeric(DirectFunctionCall1(int8_numeric, Int64GetDatum(val)));
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

/*
 * The charset of the process activity email, by PostgreSQL's name for it
 * (UTF8, LATIN1, WIN1252, KOI8R, ...): the worker converts subject and body
 * to it.  utf-8 when absent or empty.
 */
static const char *
email_charset(CrmActionCall *call)
{
	char	   *name = crm_param_text(call, "charset");
	int			enc;

	if (name == NULL || *name == '\0')
		return "UTF8";
	enc = crm_charset_encoding(name);
	if (enc < 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("unknown charset \"%s\"", name),
				 errhint("Use utf-8, iso-8859-1, windows-1252, koi8-r, or any other name of an encoding PostgreSQL knows (LATIN2, WIN1251, EUC_JP...).")));
	return pg_encoding_to_char(enc);
}

/*
 * Messages are written through a sink: the messages of a statement's robots
 * go into crm.outbox with one INSERT when the statement's batch is written
 * (core/rowsink.c), so crm.outbox's triggers (crm.outbox_due, the worker's
 * wake-up) run once for them all; a robot run carefully, a process
 * activity, write theirs at once.  The id is drawn here, as the INSERT
 * would draw it (the identity's sequence), for the action's output.
 */
static CrmRowSink outbox_sink = {
	"crm.outbox", 8,
	{"id", "channel", "provider_id", "payload", "entity_type", "entity_id", "robot_id",
	"process_instance_id"},
	{INT8OID, TEXTOID, INT8OID, JSONBOID, TEXTOID, INT8OID, INT8OID, INT8OID}
};

/* The next id of crm.outbox, from its identity's sequence. */
static int64
next_message_id(void)
{
	static Oid	cached_rel = InvalidOid;
	static Oid	cached_seq = InvalidOid;
	Oid			rel = get_relname_relid("outbox", get_namespace_oid("crm", false));

	if (!OidIsValid(rel))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_TABLE),
				 errmsg("relation \"crm.outbox\" does not exist")));
	if (rel != cached_rel || !SearchSysCacheExists1(RELOID, ObjectIdGetDatum(cached_seq)))
	{
		AttrNumber	att = get_attnum(rel, "id");

		if (att == InvalidAttrNumber)
			ereport(ERROR,
					(errcode(ERRCODE_UNDEFINED_COLUMN),
					 errmsg("column \"id\" of relation \"crm.outbox\" does not exist")));
		cached_seq = getIdentitySequence(rel, att, false);
		cached_rel = rel;
	}
	/* as the INSERT's identity default: no privilege asked of the sequence */
	return nextval_internal(cached_seq, false);
}

/* One message into crm.outbox, for the channel's named or default provider; its id. */
static int64
queue_message(CrmActionCall *call, const char *channel, Jsonb *payload)
{
	Datum		vals[8];
	bool		nulls[8] = {false, false, false, false, false, false, false, false};
	int64		prov = provider_id(call, channel);
	int64		id = next_message_id();

	vals[0] = Int64GetDatum(id);
	vals[1] = CStringGetTextDatum(channel);
	vals[2] = Int64GetDatum(prov);
	nulls[2] = prov == 0;
	vals[3] = JsonbPGetDatum(payload);
	vals[4] = CStringGetTextDatum(call->cx->entity_type);
	vals[5] = Int64GetDatum(call->cx->item_id);
	vals[6] = Int64GetDatum(call->robot_id);
	nulls[6] = call->robot_id == 0;
	vals[7] = Int64GetDatum(call->process_instance_id);
	nulls[7] = call->process_instance_id == 0;
	crm_sink_add(&outbox_sink, vals, nulls);
	return id;
}

void
crm_exec_outbound(CrmActionCall *call)
{
	const char *action = call->action->name;
	const char *channel;
	ObjBuilder	b;

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
		ob_bool(&b, "html", format ? strcmp(format, "html") == 0
				: crm_param_if_any(call, "html") ? crm_param_bool(call, "html", false) : false);
		/* the robot's e-mail is UTF-8 (SPEC §7); the activity's, its charset */
		ob_text(&b, "charset", strcmp(action, "email") == 0 ? email_charset(call) : "utf-8");
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
	crm_action_output_int(call, "message_id", queue_message(call, channel, ob_end(&b)));
}

/* ---------- openline_message ---------- */

/*
 * The client of the item's open channel: its latest incoming openline
 * activity (id and remote address); false when it has none.
 */
static bool
openline_client(CrmActionCall *call, int64 *activity_id, char **address)
{
	static SPIPlanPtr plan = NULL;
	Oid			types[2] = {TEXTOID, INT8OID};
	Datum		vals[2];
	bool		isnull;
	Datum		d;

	vals[0] = CStringGetTextDatum(call->cx->entity_type);
	vals[1] = Int64GetDatum(call->cx->item_id);
	crm_exec(crm_plan(&plan,
					  "SELECT id, remote_address FROM crm.activity"
					  " WHERE entity_type = $1 AND entity_id = $2"
					  "   AND type = 'openline' AND direction = 'incoming'"
					  " ORDER BY created_at DESC, id DESC LIMIT 1",
					  2, types), vals, NULL, true, 1);
	if (SPI_processed == 0)
		return false;
	*activity_id = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
	d = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2, &isnull);
	*address = isnull ? NULL : TextDatumGetCString(d);
	return true;
}

/*
 * The attachments as [{id, name, content_type, size}]: drive files
 * (crm.drive_file) or generated documents (crm.document), each of which
 * must exist.
 */
static void
ob_openline_attachments(ObjBuilder *b, CrmActionCall *call, bool documents)
{
	static SPIPlanPtr drive_plan = NULL;
	static SPIPlanPtr document_plan = NULL;
	Oid			types[1] = {INT8OID};
	Datum		vals[1];
	int64	   *ids;
	int			n = crm_param_files(call, "attachments", &ids);
	int			i;

	ob_key(b, "attachments");
	pushJsonbValue(&b->st, WJB_BEGIN_ARRAY, NULL);
	for (i = 0; i < n; i++)
	{
		HeapTuple	tup;
		TupleDesc	desc;
		bool		isnull;

		vals[0] = Int64GetDatum(ids[i]);
		if (documents)
			crm_exec(crm_plan(&document_plan,
							  "SELECT title, 'text/html', octet_length(body)::bigint FROM crm.document"
							  " WHERE id = $1",
							  1, types), vals, NULL, true, 1);
		else
			crm_exec(crm_plan(&drive_plan,
							  "SELECT name, content_type, size FROM crm.drive_file WHERE id = $1",
							  1, types), vals, NULL, true, 1);
		if (SPI_processed == 0)
			ereport(ERROR,
					(errcode(ERRCODE_UNDEFINED_OBJECT),
					 errmsg("attachment " INT64_FORMAT " is not a %s", ids[i],
							documents ? "document (crm.document)" : "drive file (crm.drive_file)"),
					 errhint("\"attachment_type\" says what the ids of \"attachments\" are: document or drive (the default).")));
		tup = SPI_tuptable->vals[0];
		desc = SPI_tuptable->tupdesc;
		pushJsonbValue(&b->st, WJB_BEGIN_OBJECT, NULL);
		ob_int(b, "id", ids[i]);
		ob_text(b, "name", TextDatumGetCString(SPI_getbinval(tup, desc, 1, &isnull)));
		ob_text(b, "content_type", TextDatumGetCString(SPI_getbinval(tup, desc, 2, &isnull)));
		ob_int(b, "size", DatumGetInt64(SPI_getbinval(tup, desc, 3, &isnull)));
		pushJsonbValue(&b->st, WJB_END_OBJECT, NULL);
	}
	pushJsonbValue(&b->st, WJB_END_ARRAY, NULL);
}

/*
 * openline_message: an outgoing openline activity on the item and, unless
 * hidden, an outbox message on channel openline.  Outputs activity_id and,
 * when sent, message_id.
 */
void
crm_exec_openline_message(CrmActionCall *call)
{
	static SPIPlanPtr plan = NULL;
	Oid			types[8] = {TEXTOID, INT8OID, TEXTOID, TEXTOID, TEXTOID, INT8OID, INT8OID, INT8OID};
	Datum		vals[8];
	char		nulls[8] = {' ', ' ', ' ', ' ', ' ', ' ', ' ', ' '};
	char	   *text = crm_param_text(call, "text");
	bool		hidden = crm_param_bool(call, "hidden", false);
	char	   *att_type = crm_param_text(call, "attachment_type");
	bool		documents = att_type != NULL && strcmp(att_type, "document") == 0;
	int64		client_activity = 0;
	char	   *address = NULL;
	bool		has_client;
	int64		activity_id;
	int64		responsible;
	bool		isnull;
	ObjBuilder	b;

	if (text == NULL || *text == '\0')
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("the open-channel message is empty once rendered"),
				 errhint("\"text\" must give the message to send.")));
	has_client = openline_client(call, &client_activity, &address);
	responsible = crm_item_int(call->cx, "responsible_id", &isnull);
	if (isnull)
		responsible = 0;

	vals[0] = CStringGetTextDatum(call->cx->entity_type);
	vals[1] = Int64GetDatum(call->cx->item_id);
	vals[2] = CStringGetTextDatum(hidden ? "Open channel message (hidden, not sent to the client)"
								  : "Open channel message");
	vals[3] = CStringGetTextDatum(text);
	vals[4] = address ? CStringGetTextDatum(address) : (Datum) 0;
	nulls[4] = address ? ' ' : 'n';
	vals[5] = Int64GetDatum(responsible);
	nulls[5] = responsible ? ' ' : 'n';
	crm_action_author(call, vals, nulls, 6, 7);
	crm_exec(crm_plan(&plan,
					  "INSERT INTO crm.activity (entity_type, entity_id, type, direction, status, completed,"
					  " subject, description, remote_address, responsible_id, robot_id, process_instance_id)"
					  " VALUES ($1, $2, 'openline', 'outgoing', 'completed', true, $3, $4, $5, $6, $7, $8)"
					  " RETURNING id",
					  8, types), vals, nulls, false, 1);
	activity_id = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
	crm_action_output_int(call, "activity_id", activity_id);
	if (hidden)
		return;

	ob_begin(&b);
	ob_text(&b, "event", "openline_message");
	ob_text(&b, "entity_type", call->cx->entity_type);
	ob_int(&b, "entity_id", call->cx->item_id);
	ob_int(&b, "activity_id", activity_id);
	if (call->process_instance_id)
		ob_int(&b, "process_instance_id", call->process_instance_id);
	if (has_client)
	{
		ob_key(&b, "client");
		pushJsonbValue(&b.st, WJB_BEGIN_OBJECT, NULL);
		ob_int(&b, "activity_id", client_activity);
		ob_text(&b, "address", address);
		pushJsonbValue(&b.st, WJB_END_OBJECT, NULL);
	}
	ob_text(&b, "text", text);
	ob_text(&b, "attachment_type", documents ? "document" : "drive");
	ob_openline_attachments(&b, call, documents);
	crm_action_output_int(call, "message_id", queue_message(call, "openline", ob_end(&b)));
}
