/*-------------------------------------------------------------------------
 *
 * triggers.h
 *	  CRM triggers (SPEC §4): rules attached to a stage that move an item
 *	  there when an event happens for it.
 *
 * The events are a catalogue of descriptors (trigger_events.c), validated
 * when a trigger is saved (admin/trigger_admin.c).  The triggers of an
 * entity type are loaded once per backend into the rule cache (by the
 * loader trigger_load.c registers), with a bitmask of the events that have
 * any, so that a source with no trigger listening costs a hash lookup.
 * Events are fired by their sources (trigger_sources.c, and the engine's
 * BEFORE ROW trigger of the items for field and responsible changes,
 * through the hooks of engine/hooks.h) through trigger_fire.c, in the
 * transaction of the row or call that caused them.
 *
 *-------------------------------------------------------------------------
 */
#ifndef CRM_TRIGGERS_H
#define CRM_TRIGGERS_H

#include "access/htup.h"
#include "access/tupdesc.h"
#include "nodes/pg_list.h"
#include "utils/jsonb.h"
#include "utils/relcache.h"

#include "engine/hooks.h"
#include "expr/expr.h"

/* The events, in catalogue order; the value is the event's bit. */
typedef enum CrmEventId
{
	CRM_EV_FIELD_CHANGED = 0,
	CRM_EV_RESPONSIBLE_CHANGED,
	CRM_EV_INCOMING_CALL,
	CRM_EV_MISSED_CALL,
	CRM_EV_INCOMING_EMAIL,
	CRM_EV_OPENLINE_MESSAGE,
	CRM_EV_WEBFORM,
	CRM_EV_LINK_CLICK,
	CRM_EV_EMAIL_READ,
	CRM_EV_QR_SCAN,
	CRM_EV_BOOKING,
	CRM_EV_INVOICE_PAID,
	CRM_EV_PAYMENT,
	CRM_EV_WEBHOOK,
	CRM_N_EVENTS
} CrmEventId;

#define CRM_EVENT_BIT(ev) ((uint32) 1 << (ev))

/* What a trigger parameter holds. */
typedef enum CrmEventParamType
{
	CRM_EP_FIELDS,				/* array of field names of the item */
	CRM_EP_WEBFORM,				/* code of a crm.webform */
	CRM_EP_CODE,				/* an application's event code */
	CRM_EP_URL,					/* an http(s) URL */
	CRM_EP_TEXT					/* a non-empty string */
} CrmEventParamType;

typedef struct CrmEventParam
{
	const char *name;
	CrmEventParamType type;
	bool		required;
	const char *description;
} CrmEventParam;

typedef enum CrmEventFlags
{
	CRM_EVF_INVOICES_AND_DEALS = 1 << 0	/* only on invoice and deal stages */
} CrmEventFlags;

typedef struct CrmEventDesc
{
	CrmEventId	id;
	const char *name;
	const char *family;
	const char *title;			/* default name of a trigger */
	const char *description;
	const char *source;			/* where the event comes from */
	int			flags;
	const CrmEventParam *params;	/* terminated by a NULL name */

	/*
	 * The parameter whose value must equal the event's key for the trigger
	 * to apply (a form code, a webhook code, a URL, a service), or NULL.
	 */
	const char *key_param;

	/*
	 * Keys of the payload a condition reads as {=Event:key}: the columns of
	 * crm.<payload_table>, or the comma-separated payload_keys; both NULL
	 * means free-form (web form data, an application's payload).
	 */
	const char *payload_table;
	const char *payload_keys;
} CrmEventDesc;

/* Catalogue (trigger_events.c). */
extern const CrmEventDesc *crm_event_lookup(const char *name);
extern const CrmEventDesc *crm_event(CrmEventId id);
extern char *crm_event_names(void);

/* Shared checks (trigger_events.c): an application's event code, a URL. */
extern void crm_check_event_code(const char *code);
extern void crm_check_tracked_url(const char *url);

/* A trigger as cached: compiled once, used for every event. */
typedef struct CrmTrigger
{
	int64		id;
	int64		stage_id;
	int64		pipeline_id;
	int32		stage_sort;
	char	   *name;
	const CrmEventDesc *event;
	char	   *key;			/* value of the event's key parameter, or NULL */
	int			nfields;		/* field_changed: indexes into the watched list */
	int		   *fields;
	CrmExpr    *condition;		/* NULL: always */
	bool		reads_event;	/* the condition reads the payload, {=Event:key} */
	bool		allow_backwards;
	int64		on_behalf_of;	/* 0: the item's responsible user */
	char	   *invalid;		/* its row failed the checks when loaded: an
								 * event it would decide fails with this */
} CrmTrigger;

/* Every active trigger of one entity type, as kept in the rule cache. */
typedef struct CrmEntityTriggers
{
	uint32		events;			/* CRM_EVENT_BIT of each event with a trigger */
	List	   *by_event[CRM_N_EVENTS]; /* CrmTrigger *, by stage order */
	int			nwatched;		/* distinct fields watched by field_changed */
	char	  **watched_names;
	CrmExpr   **watched;		/* {{field}} compiled, read from old and new rows */
	CrmExpr    *responsible;	/* {{responsible_id}} */
} CrmEntityTriggers;


/*
 * Fires an event for an item: the triggers of the item's pipeline listening
 * to it, in stage order, decide whether the item moves; the outcome is
 * logged.  key is matched against the triggers' key parameter.  Returns the
 * outcome (fired, already_there, backwards, condition_false, loop_stopped,
 * failed) or "no_trigger" when no trigger listens.  A missing item is an
 * ERROR unless missing_ok.
 */
extern const char *crm_fire_event(CrmEventId event, const char *entity_type,
								  int64 item_id, Jsonb *payload, const char *key,
								  bool missing_ok);

/*
 * The same for an event that is a row (an activity, a payment, ...): its
 * payload, the row's columns, is built only if some trigger considers it.
 * A missing item fires nothing.
 */
extern const char *crm_fire_row_event(CrmEventId event, const char *entity_type,
									  int64 item_id, HeapTuple row, TupleDesc rowdesc,
									  const char *key);

/*
 * The hooks of the item row triggers (engine/hooks.h), registered with the
 * engine, and the triggers' loader, registered with the rule cache, by
 * crm_triggers_init (from _PG_init).
 */
extern void crm_triggers_init(void);

/* The triggers of an entity type, from the rule cache; NULL when unknown. */
extern const CrmEntityTriggers *crm_entity_triggers(const char *entity_type);

#endif							/* CRM_TRIGGERS_H */
