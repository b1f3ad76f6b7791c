/*-------------------------------------------------------------------------
 *
 * trigger_events.c
 *	  The catalogue of trigger events: one descriptor per event (SPEC §4).
 *
 * A descriptor names the event, says where it comes from, lists the
 * parameters a trigger of that event takes and the payload keys its
 * condition may read as {=Event:key}.  Saving a trigger validates it
 * against the descriptor (trigger_admin.c); firing matches the key
 * parameter (a form code, a URL, an application's code) against the event.
 * Administrators see the catalogue as the view crm.trigger_events.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <ctype.h>

#include "fmgr.h"
#include "funcapi.h"
#include "lib/stringinfo.h"
#include "utils/builtins.h"
#include "utils/json.h"
#include "utils/jsonb.h"

#include "triggers/triggers.h"

#define END_PARAMS {NULL, 0, false, NULL}

static const CrmEventParam p_none[] = {
	END_PARAMS
};

static const CrmEventParam p_field_changed[] = {
	{"fields", CRM_EP_FIELDS, true, "fields of the item whose change fires the trigger (columns or custom fields)"},
	END_PARAMS
};

static const CrmEventParam p_webform[] = {
	{"form", CRM_EP_WEBFORM, true, "code of the web form (crm.add_webform)"},
	END_PARAMS
};

static const CrmEventParam p_link_click[] = {
	{"url", CRM_EP_URL, false, "only clicks on this tracked URL (default: any tracked link of the item)"},
	END_PARAMS
};

static const CrmEventParam p_booking[] = {
	{"service", CRM_EP_TEXT, false, "only bookings of this service (default: any)"},
	END_PARAMS
};

static const CrmEventParam p_webhook[] = {
	{"code", CRM_EP_CODE, true, "the event code the application passes to crm.fire_trigger"},
	END_PARAMS
};

#define ACTIVITY_SOURCE(what) "INSERT into crm.activity of an incoming " what " bound to the item"

static const CrmEventDesc events[] = {
	{CRM_EV_FIELD_CHANGED, "field_changed", "item", "Field changed",
		"a watched field of the item changed",
		"UPDATE of the item row", 0, p_field_changed, NULL, NULL, "fields"},
	{CRM_EV_RESPONSIBLE_CHANGED, "responsible_changed", "item", "Responsible changed",
		"the item was assigned to another user",
		"UPDATE of the item's responsible_id", 0, p_none, NULL, NULL, "from,to"},
	{CRM_EV_INCOMING_CALL, "incoming_call", "communication", "Incoming call",
		"the client called",
		ACTIVITY_SOURCE("call (status other than missed)"), 0, p_none, NULL, "activity", NULL},
	{CRM_EV_MISSED_CALL, "missed_call", "communication", "Missed call",
		"the client called and nobody answered",
		"crm.activity: an incoming call inserted as missed, or updated to missed", 0, p_none,
		NULL, "activity", NULL},
	{CRM_EV_INCOMING_EMAIL, "incoming_email", "communication", "Incoming e-mail",
		"the client wrote an e-mail",
		ACTIVITY_SOURCE("e-mail"), 0, p_none, NULL, "activity", NULL},
	{CRM_EV_OPENLINE_MESSAGE, "openline_message", "communication", "Open channel message",
		"the client wrote in an open channel (chat, messenger)",
		ACTIVITY_SOURCE("open channel message"), 0, p_none, NULL, "activity", NULL},
	{CRM_EV_WEBFORM, "webform", "communication", "Web form filled",
		"the client submitted a web form",
		"crm.submit_webform(form_code, data)", 0, p_webform, "form", NULL, NULL},
	{CRM_EV_LINK_CLICK, "link_click", "client", "Link clicked",
		"the client opened a tracked link",
		"crm.track_click(token) of a token from crm.tracking_link(..., event => 'link_click')", 0,
		p_link_click, "url", NULL, "url,token,clicks"},
	{CRM_EV_EMAIL_READ, "email_read", "client", "E-mail read",
		"the client opened an e-mail (its tracking pixel was fetched)",
		"crm.track_click(token) of a token from crm.tracking_link(..., event => 'email_read')", 0,
		p_none, NULL, NULL, "url,token,clicks"},
	{CRM_EV_QR_SCAN, "qr_scan", "client", "QR code scanned",
		"the client scanned a QR code",
		"crm.track_click(token) of a token from crm.tracking_link(..., event => 'qr_scan')", 0,
		p_none, NULL, NULL, "url,token,clicks"},
	{CRM_EV_BOOKING, "booking", "client", "Resource booked",
		"a resource was booked for the item",
		"INSERT into crm.resource_booking bound to the item", 0, p_booking, "service",
		"resource_booking", NULL},
	{CRM_EV_INVOICE_PAID, "invoice_paid", "payment", "Invoice paid",
		"an invoice was paid: fires for the invoice and for its deal",
		"crm.invoice.paid becoming true", CRM_EVF_INVOICES_AND_DEALS, p_none, NULL, "invoice", NULL},
	{CRM_EV_PAYMENT, "payment", "payment", "Payment received",
		"a payment was received for the item",
		"INSERT into crm.payment bound to the item", 0, p_none, NULL, "payment", NULL},
	{CRM_EV_WEBHOOK, "webhook", "external", "Application event",
		"an application reported an event with a code and a payload",
		"crm.fire_trigger(code, entity_type, item_id, payload)", 0, p_webhook, "code", NULL, NULL},
};

StaticAssertDecl(lengthof(events) == CRM_N_EVENTS, "one descriptor per event");

const CrmEventDesc *
crm_event(CrmEventId id)
{
	Assert(id >= 0 && id < CRM_N_EVENTS && events[id].id == id);
	return &events[id];
}

const CrmEventDesc *
crm_event_lookup(const char *name)
{
	int			i;

	if (name == NULL)
		return NULL;
	for (i = 0; i < CRM_N_EVENTS; i++)
		if (strcmp(events[i].name, name) == 0)
			return &events[i];
	return NULL;
}

/* "field_changed, responsible_changed, ..." for hints. */
char *
crm_event_names(void)
{
	StringInfoData buf;
	int			i;

	initStringInfo(&buf);
	for (i = 0; i < CRM_N_EVENTS; i++)
		appendStringInfo(&buf, "%s%s", i ? ", " : "", events[i].name);
	return buf.data;
}

static const char *
event_param_type_name(CrmEventParamType t)
{
	switch (t)
	{
		case CRM_EP_FIELDS:
			return "fields";
		case CRM_EP_WEBFORM:
			return "webform";
		case CRM_EP_CODE:
			return "code";
		case CRM_EP_URL:
			return "url";
		case CRM_EP_TEXT:
			return "text";
	}
	return "unknown";
}

static Datum
params_jsonb(const CrmEventParam *params)
{
	StringInfoData buf;
	const CrmEventParam *p;

	initStringInfo(&buf);
	appendStringInfoChar(&buf, '[');
	for (p = params; p->name != NULL; p++)
	{
		if (p != params)
			appendStringInfoString(&buf, ", ");
		appendStringInfoString(&buf, "{\"name\": ");
		escape_json(&buf, p->name);
		appendStringInfoString(&buf, ", \"type\": ");
		escape_json(&buf, event_param_type_name(p->type));
		appendStringInfo(&buf, ", \"required\": %s, \"description\": ",
						 p->required ? "true" : "false");
		escape_json(&buf, p->description);
		appendStringInfoChar(&buf, '}');
	}
	appendStringInfoChar(&buf, ']');
	return DirectFunctionCall1(jsonb_in, CStringGetDatum(buf.data));
}

PG_FUNCTION_INFO_V1(crm_trigger_events);

/*
 * crm._trigger_events(): one row per event, behind the view
 * crm.trigger_events (which turns payload_table into its column names).
 */
Datum
crm_trigger_events(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	int			i;

	InitMaterializedSRF(fcinfo, 0);
	for (i = 0; i < CRM_N_EVENTS; i++)
	{
		const CrmEventDesc *e = &events[i];
		Datum		values[9];
		bool		nulls[9];

		memset(nulls, false, sizeof(nulls));
		values[0] = CStringGetTextDatum(e->name);
		values[1] = CStringGetTextDatum(e->family);
		values[2] = CStringGetTextDatum(e->title);
		values[3] = CStringGetTextDatum(e->description);
		values[4] = CStringGetTextDatum(e->source);
		values[5] = CStringGetTextDatum((e->flags & CRM_EVF_INVOICES_AND_DEALS) ?
										"invoice, deal" : "lead, deal, quote, invoice, smart processes");
		values[6] = params_jsonb(e->params);
		if (e->payload_table)
			values[7] = CStringGetTextDatum(e->payload_table);
		else
			nulls[7] = true;
		if (e->payload_keys)
			values[8] = CStringGetTextDatum(e->payload_keys);
		else
			nulls[8] = true;
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
	return (Datum) 0;
}

/* ---------- checks shared by triggers and their sources ---------- */

/* An application's event code, as webhook triggers and crm.fire_trigger take. */
void
crm_check_event_code(const char *code)
{
	const char *s;

	for (s = code; *s; s++)
		if (!(isalnum((unsigned char) *s) || *s == '_' || *s == '.' || *s == '-' || *s == ':'))
			break;
	if (*s != '\0' || strlen(code) > 64)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid event code \"%s\"", code),
				 errhint("A code has 1 to 64 letters, digits, '_', '.', '-' or ':', e.g. \"order.paid\".")));
}

/* An http(s) URL, as tracked links and link_click triggers take. */
void
crm_check_tracked_url(const char *url)
{
	if ((pg_strncasecmp(url, "http://", 7) != 0 && pg_strncasecmp(url, "https://", 8) != 0) ||
		strlen(url) > 2048 || strpbrk(url, " \t\r\n") != NULL)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid URL \"%s\"", url),
				 errhint("A tracked URL starts with http:// or https://, has no spaces and at most 2048 characters.")));
}
