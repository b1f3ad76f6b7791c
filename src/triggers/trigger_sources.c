/*-------------------------------------------------------------------------
 *
 * trigger_sources.c
 *	  Where trigger events come from: row triggers on the tables whose rows
 *	  are events (activities, invoices, payments, bookings), the exceptions
 *	  list, and the SQL entry points for events that are calls (web forms,
 *	  tracked links, applications).
 *
 *	  crm.event_source(kind)	AFTER ROW on crm.activity ('activity'),
 *								crm.invoice ('invoice_paid'), crm.payment
 *								('payment'), crm.resource_booking ('booking');
 *								each with a WHEN clause, so rows that are no
 *								event never call it
 *	  crm.activity_exceptions()	BEFORE INSERT on crm.activity: an incoming
 *								call, e-mail or open-channel message from an
 *								address on crm.exception_list is not recorded
 *								(a compact log row, excepted, instead)
 *	  crm.phone_key(phone)		the form phones are compared in there
 *	  crm._fire_event(...)		for crm.submit_webform and crm.track_click
 *	  crm.fire_trigger(...)		an application's event (webhook triggers)
 *
 * Each fires through crm_fire_event / crm_fire_row_event (trigger_fire.c),
 * which do nothing more than a cache lookup when no trigger of the event
 * exists for the entity type.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "catalog/pg_collation.h"
#include "catalog/pg_type.h"
#include "commands/trigger.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/jsonb.h"
#include "utils/rel.h"

#include "engine/robots.h"
#include "core/index_probe.h"
#include "core/scope.h"
#include "core/rule_cache.h"
#include "core/spi_util.h"
#include "triggers/triggers.h"

#include "triggers/trigger_int.h"

PG_FUNCTION_INFO_V1(crm_event_source);
PG_FUNCTION_INFO_V1(crm_activity_exceptions);
PG_FUNCTION_INFO_V1(crm_fire_event_sql);
PG_FUNCTION_INFO_V1(crm_fire_trigger);
PG_FUNCTION_INFO_V1(crm_check_tracked_url_sql);
PG_FUNCTION_INFO_V1(crm_phone_key_sql);

static char *
column_text(HeapTuple tuple, TupleDesc desc, const char *column)
{
	int			att = SPI_fnumber(desc, column);

	return att > 0 ? SPI_getvalue(tuple, desc, att) : NULL;
}

static int64
column_int8(HeapTuple tuple, TupleDesc desc, const char *column, bool *isnull)
{
	int			att = SPI_fnumber(desc, column);
	Datum		d;

	*isnull = true;
	if (att <= 0)
		return 0;
	d = SPI_getbinval(tuple, desc, att, isnull);
	return *isnull ? 0 : DatumGetInt64(d);
}

/* The event of an incoming activity row. */
static CrmEventId
activity_event(HeapTuple tuple, TupleDesc desc, bool *is_event)
{
	char	   *type = column_text(tuple, desc, "type");
	char	   *status = column_text(tuple, desc, "status");

	*is_event = true;
	if (strcmp(type, "call") == 0)
		return status != NULL && strcmp(status, "missed") == 0 ?
			CRM_EV_MISSED_CALL : CRM_EV_INCOMING_CALL;
	if (strcmp(type, "email") == 0)
		return CRM_EV_INCOMING_EMAIL;
	if (strcmp(type, "openline") == 0)
		return CRM_EV_OPENLINE_MESSAGE;
	*is_event = false;
	return CRM_EV_INCOMING_CALL;
}

/*
 * crm.event_source(kind): AFTER ROW trigger on a table whose rows are
 * events.  The CREATE TRIGGER's WHEN clause selects the rows (incoming
 * activities, invoices becoming paid, bookings); this fires the event for
 * the item the row is bound to.
 */
Datum
crm_event_source(PG_FUNCTION_ARGS)
{
	TriggerData *td = (TriggerData *) fcinfo->context;
	HeapTuple	tuple;
	TupleDesc	desc;
	const char *kind;
	bool		isnull;

	if (!CALLED_AS_TRIGGER(fcinfo) || !TRIGGER_FIRED_AFTER(td->tg_event) ||
		!TRIGGER_FIRED_FOR_ROW(td->tg_event) || td->tg_trigger->tgnargs != 1)
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("crm.event_source(kind) must be an AFTER ROW trigger with one argument")));
	kind = td->tg_trigger->tgargs[0];
	tuple = TRIGGER_FIRED_BY_UPDATE(td->tg_event) ? td->tg_newtuple : td->tg_trigtuple;
	desc = RelationGetDescr(td->tg_relation);

	if (strcmp(kind, "invoice_paid") == 0)
	{
		/* the invoice itself, then the deal it bills */
		int64		id = column_int8(tuple, desc, "id", &isnull);
		int64		deal_id = column_int8(tuple, desc, "deal_id", &isnull);

		(void) crm_fire_row_event(CRM_EV_INVOICE_PAID, "invoice", id, tuple, desc, NULL);
		if (!isnull)
			(void) crm_fire_row_event(CRM_EV_INVOICE_PAID, "deal", deal_id, tuple, desc, NULL);
	}
	else
	{
		char	   *entity_type = column_text(tuple, desc, "entity_type");
		int64		item_id = column_int8(tuple, desc, "entity_id", &isnull);
		CrmEventId	event;
		bool		is_event = true;
		const char *key = NULL;

		if (strcmp(kind, "activity") == 0)
			event = activity_event(tuple, desc, &is_event);
		else if (strcmp(kind, "payment") == 0)
			event = CRM_EV_PAYMENT;
		else if (strcmp(kind, "booking") == 0)
		{
			event = CRM_EV_BOOKING;
			key = column_text(tuple, desc, "service");
		}
		else
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("unknown event source \"%s\"", kind),
					 errhint("Sources: activity, invoice_paid, payment, booking.")));
		if (is_event && entity_type != NULL && !isnull)
			(void) crm_fire_row_event(event, entity_type, item_id, tuple, desc, key);
	}
	PG_RETURN_POINTER(NULL);
}

/*
 * A phone number as compared on the exceptions list: its digits, after a
 * leading '+' if it has one, so "+33 6 11 22 33 44" and "+33611223344" are
 * the same number.  The list stores this key (a generated column calling
 * crm.phone_key) and the trigger below computes it for the incoming side.
 */
static char *
phone_key(const char *s)
{
	char	   *out = palloc(strlen(s) + 1);
	char	   *o = out;

	while (*s == ' ' || *s == '\t')
		s++;
	if (*s == '+')
		*o++ = *s++;
	for (; *s; s++)
		if (*s >= '0' && *s <= '9')
			*o++ = *s;
	*o = '\0';
	return out;
}

Datum
crm_phone_key_sql(PG_FUNCTION_ARGS)
{
	PG_RETURN_TEXT_P(cstring_to_text(phone_key(text_to_cstring(PG_GETARG_TEXT_PP(0)))));
}

/* An entry of the exceptions list that matched. */
typedef struct ListEntry
{
	const char *type;
	int64		id;
	char	   *value;
} ListEntry;

/*
 * Whether the exceptions list holds (type, key): one probe of its unique
 * index; the entry found in *entry.
 */
static bool
listed_as(CrmProbe *p, const char *type, text *key, ListEntry *entry)
{
	Datum		keys[2];
	TupleTableSlot *slot;
	bool		isnull;
	Datum		d;

	keys[0] = CStringGetTextDatum(type);
	keys[1] = PointerGetDatum(key);
	crm_probe_start(p, keys);
	slot = crm_probe_next(p);
	if (slot == NULL)
		return false;
	entry->type = type;
	d = slot_getattr(slot, crm_probe_attnum(p, "id"), &isnull);
	entry->id = isnull ? 0 : DatumGetInt64(d);
	d = slot_getattr(slot, crm_probe_attnum(p, "value"), &isnull);
	entry->value = isnull ? pstrdup("") : TextDatumGetCString(d);
	return true;
}

/*
 * crm.activity_exceptions(): BEFORE INSERT on crm.activity, for incoming
 * calls, e-mails and open-channel messages with a remote address.  An
 * address on the exceptions list (a phone by its digits, an e-mail without
 * regard to case) skips the row: it is not recorded and fires nothing; the
 * log gets a compact row (status excepted, the entry that matched).  A
 * probe of the list's unique index on (type, key) for each form, read
 * directly (index_probe.h): no statement, no plan, whatever the list's
 * size or statistics.
 */
Datum
crm_activity_exceptions(PG_FUNCTION_ARGS)
{
	TriggerData *td = (TriggerData *) fcinfo->context;
	TupleDesc	desc;
	char	   *address;
	char	   *entity_type;
	int64		item_id;
	bool		isnull;
	bool		is_event;
	CrmEventId	event;
	bool		listed = false;
	ListEntry	entry;
	CrmProbe	p;

	if (!CALLED_AS_TRIGGER(fcinfo) || !TRIGGER_FIRED_BEFORE(td->tg_event) ||
		!TRIGGER_FIRED_FOR_ROW(td->tg_event) || !TRIGGER_FIRED_BY_INSERT(td->tg_event))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("crm.activity_exceptions() must be a BEFORE INSERT ROW trigger")));
	desc = RelationGetDescr(td->tg_relation);
	address = column_text(td->tg_trigtuple, desc, "remote_address");
	if (address == NULL)
		PG_RETURN_POINTER(td->tg_trigtuple);

	crm_probe_begin(&p, "exception_list", "exception_list_type_key_key", 2);
	/* only an address written as a phone is looked up as one */
	if (strspn(address, "+0123456789 ()-./") == strlen(address))
		listed = listed_as(&p, "phone", cstring_to_text(phone_key(address)), &entry);
	/* an e-mail's key is lower(value), in the database's collation */
	if (!listed)
		listed = listed_as(&p, "email",
						   DatumGetTextPP(DirectFunctionCall1Coll(lower, DEFAULT_COLLATION_OID,
																  CStringGetTextDatum(address))),
						   &entry);
	crm_probe_end(&p);
	if (!listed)
		PG_RETURN_POINTER(td->tg_trigtuple);

	/*
	 * Listed: the row is skipped and a compact log row (excepted) tells the
	 * item's history why.  A row without an item is no activity crm.activity
	 * records, listed or not: it goes on, to be refused by NOT NULL.
	 */
	entity_type = column_text(td->tg_trigtuple, desc, "entity_type");
	item_id = column_int8(td->tg_trigtuple, desc, "entity_id", &isnull);
	if (entity_type == NULL || isnull)
		PG_RETURN_POINTER(td->tg_trigtuple);
	event = activity_event(td->tg_trigtuple, desc, &is_event);
	trig_log_excepted(entity_type, item_id, crm_event(event), entry.type, entry.id,
					  entry.value, address);
	PG_RETURN_POINTER(NULL);
}

/*
 * crm._fire_event(event, entity_type, item_id, payload, key, missing_ok):
 * the engine's entry for the SQL sources (web forms, tracked links).
 */
Datum
crm_fire_event_sql(PG_FUNCTION_ARGS)
{
	char	   *name;
	const CrmEventDesc *ev;
	char	   *entity_type;

	if (PG_ARGISNULL(0) || PG_ARGISNULL(1) || PG_ARGISNULL(2))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("event, entity type and item id must not be null")));
	name = text_to_cstring(PG_GETARG_TEXT_PP(0));
	ev = crm_event_lookup(name);
	if (ev == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("unknown event \"%s\"", name),
				 errhint("Events: %s.", crm_event_names())));
	entity_type = text_to_cstring(PG_GETARG_TEXT_PP(1));
	PG_RETURN_TEXT_P(cstring_to_text(
									 crm_fire_event(ev->id, entity_type, PG_GETARG_INT64(2),
													PG_ARGISNULL(3) ? NULL : PG_GETARG_JSONB_P(3),
													PG_ARGISNULL(4) ? NULL : text_to_cstring(PG_GETARG_TEXT_PP(4)),
													!PG_ARGISNULL(5) && PG_GETARG_BOOL(5))));
}

/*
 * crm.fire_trigger(code, entity_type, item_id, payload): an application's
 * event for an item.  The webhook triggers with this code on the item's
 * pipeline decide; returns the outcome (see crm_fire_event).
 */
Datum
crm_fire_trigger(PG_FUNCTION_ARGS)
{
	char	   *code;
	char	   *entity_type;
	Jsonb	   *payload;

	if (PG_ARGISNULL(0))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("event code must not be null"),
				 errhint("Pass the code that webhook triggers listen to, e.g. 'order.paid'.")));
	if (PG_ARGISNULL(1) || PG_ARGISNULL(2))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("entity type and item id must not be null"),
				 errhint("For example crm.fire_trigger('order.paid', 'deal', 42, '{\"amount\": 100}').")));
	code = text_to_cstring(PG_GETARG_TEXT_PP(0));
	crm_check_event_code(code);
	entity_type = text_to_cstring(PG_GETARG_TEXT_PP(1));
	(void) crm_entity_table(entity_type);	/* an unknown type is an error */
	payload = PG_ARGISNULL(3) ? NULL : PG_GETARG_JSONB_P(3);
	if (payload != NULL && (!JB_ROOT_IS_OBJECT(payload) || JB_ROOT_IS_SCALAR(payload)))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("payload must be a JSON object"),
				 errhint("Conditions read its keys as {=Event:key}.")));
	PG_RETURN_TEXT_P(cstring_to_text(crm_fire_event(CRM_EV_WEBHOOK, entity_type,
													PG_GETARG_INT64(2), payload, code,
													false)));
}

/* crm._check_tracked_url(url): the URL rule of tracked links, for SQL. */
Datum
crm_check_tracked_url_sql(PG_FUNCTION_ARGS)
{
	crm_check_tracked_url(text_to_cstring(PG_GETARG_TEXT_PP(0)));
	PG_RETURN_VOID();
}
