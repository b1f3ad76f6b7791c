/*-------------------------------------------------------------------------
 *
 * actions.h
 *	  The action catalogue: one descriptor per action, shared by robots and
 *	  (later) business-process activities.
 *
 * A descriptor names the action, lists its parameters with their types, and
 * points to the executor.  Saving a rule validates its params against the
 * descriptor (validate.c); loading it compiles every text parameter once
 * (CrmCompiledParams); running it calls the executor with accessors that
 * render parameters for the current item.
 *
 *-------------------------------------------------------------------------
 */
#ifndef CRM_ACTIONS_H
#define CRM_ACTIONS_H

#include "expr/expr.h"
#include "utils/jsonb.h"

typedef enum CrmParamType
{
	CRM_P_TEXT,					/* template or formula */
	CRM_P_USERS,				/* user list: ids, responsible, supervisor, ... */
	CRM_P_BOOL,
	CRM_P_INT,					/* integer, or a template yielding one */
	CRM_P_INTERVAL,				/* '2 days' */
	CRM_P_WHEN,					/* today, tomorrow, in_2_days, in_3_days, or a timestamp template */
	CRM_P_ENUM,					/* one of enum_values */
	CRM_P_FIELDS,				/* object: field -> template/formula */
	CRM_P_JSON,					/* any JSON; string leaves are templates */
	CRM_P_ADDRESSES,			/* users or e-mail addresses / phone numbers */
	CRM_P_STAGE,				/* a stage id or code */
	CRM_P_PIPELINE,				/* a pipeline id or name */
	CRM_P_FILES,				/* drive file ids, or {{CODE}} of a file field */
	CRM_P_FIELD					/* code of a custom field of the item whose
								 * type is enum_values ("booking") */
} CrmParamType;

typedef struct CrmParamDesc
{
	const char *name;
	CrmParamType type;
	bool		required;
	const char *enum_values;	/* "a|b|c" for CRM_P_ENUM; for CRM_P_FIELDS the
								 * entity type whose fields are set (NULL: the
								 * item's own); for CRM_P_FIELD the field type */
	int			max_length;		/* rendered text limit, 0 = none */
	const char *description;
} CrmParamDesc;

struct CrmActionCall;

typedef void (*CrmActionExecutor) (struct CrmActionCall *call);

typedef enum CrmActionFlags
{
	CRM_ACT_OUTBOUND = 1 << 0,	/* goes through the outbox */
	CRM_ACT_STOPS_CHAIN = 1 << 1,	/* later robots of the stage do not run */
	CRM_ACT_SCHEDULES = 1 << 2, /* its effect is a job (wait, control) */
	CRM_ACT_LEADS_ONLY = 1 << 3,
	CRM_ACT_DEALS_ONLY = 1 << 4,
	CRM_ACT_DEALS_LEADS = 1 << 5,	/* deals and leads only */
	CRM_ACT_PROCESS_ONLY = 1 << 6,	/* an activity of business processes only */
	CRM_ACT_ANY_DOCUMENT = 1 << 7,	/* also an activity on feed posts and drive
									 * files (process documents that are no CRM
									 * items); the others need a CRM item */
	CRM_ACT_SHARED = 1 << 8		/* writes rows of another item or shared
								 * rows (chats, feed, rotation turns, the
								 * exceptions list): on a distributed
								 * installation a job runs it, apart from the
								 * item's shard (docs/citus.md) */
} CrmActionFlags;

typedef struct CrmActionDesc
{
	const char *name;
	const char *family;
	const char *description;
	int			flags;
	const char *outputs;		/* comma-separated output names, or NULL */
	CrmActionExecutor exec;
	const CrmParamDesc *params; /* terminated by a NULL name */
} CrmActionDesc;

/* A parameter compiled for execution. */
typedef struct CrmCompiledParam
{
	const CrmParamDesc *desc;
	bool		present;
	Jsonb	   *raw;			/* the value as saved (a one-element wrapper) */
	CrmExpr    *expr;			/* text-like params */
	List	   *items;			/* CRM_P_USERS/ADDRESSES/FILES: List of CrmExpr * */
	List	   *field_names;	/* CRM_P_FIELDS: names (char *) */
	List	   *field_exprs;	/* CRM_P_FIELDS: CrmExpr * */
} CrmCompiledParam;

typedef struct CrmCompiledParams
{
	int			n;
	CrmCompiledParam *params;	/* parallel to the descriptor's params */
} CrmCompiledParams;

/* One execution of an action for one item. */
typedef struct CrmActionCall
{
	const CrmActionDesc *action;
	const CrmCompiledParams *params;
	CrmEvalContext *cx;
	int64		robot_id;		/* 0 for a process activity */
	int64		process_instance_id;
	int64		stage_id;
	const char *where;			/* "robot \"x\"" for messages */
	JsonbParseState *outputs;	/* built by crm_action_output_* */
	bool		has_outputs;
	bool		stop_chain;		/* set by the executor to stop later robots */
	bool		hold;			/* set by the executor: later robots wait until
								 * the message it queued is sent or given up */
	bool		unbound;		/* the effect rows do not reference the
								 * document: create_task of a process with
								 * bind_current false, or any activity on a
								 * feed post or drive file (no CRM item) */
} CrmActionCall;

/* Catalogue. */
extern const CrmActionDesc *crm_action_lookup(const char *name);
/* The activities only business processes run (control here is seed 000's). */
extern const CrmActionDesc *crm_process_action_lookup(const char *name);
extern const CrmActionDesc *const *crm_process_action_catalogue(int *n);
extern const CrmActionDesc *const *crm_action_catalogue(int *n);

/* Validation at save time (ERRORs naming the bad parameter). */
extern void crm_action_validate(const CrmActionDesc *action, Jsonb *params,
								int64 stage_id, const char *entity_type,
								List *robot_names, const char *where);

/*
 * The same checks without the catalog (fields, stages, custom fields): the
 * shape, required parameters, types and templates of a rule read back from
 * its table, which may have been changed behind the admin API's back.
 */
extern void crm_action_check_structure(const CrmActionDesc *action, Jsonb *params,
									   const char *where);

/*
 * The pipelines, document templates and providers a rule names exist
 * (params_validate.c); the caller is connected to SPI.
 */
extern void crm_action_check_references(const CrmActionDesc *action, Jsonb *params,
										const char *entity_type);

/* "a string", "an array", ... for messages about a JSON value's type. */
extern const char *crm_jsonb_type_name(JsonbValue *v);

/* Compiling for the cache. */
extern CrmCompiledParams *crm_action_compile(const CrmActionDesc *action,
											 Jsonb *params, const char *where);

/* Accessors for executors: render a parameter for the current item. */
extern const CrmCompiledParam *crm_param(CrmActionCall *call, const char *name);
extern bool crm_param_present(CrmActionCall *call, const char *name);
extern char *crm_param_text(CrmActionCall *call, const char *name);
extern char *crm_param_url(CrmActionCall *call, const char *name);	/* NULL if absent */
extern bool crm_param_bool(CrmActionCall *call, const char *name, bool dflt);
extern bool crm_param_int(CrmActionCall *call, const char *name, int64 *out);
extern int	crm_param_users(CrmActionCall *call, const char *name, int64 **ids);
/* The same as an int8[] (empty when absent). */
extern Datum crm_param_user_array(CrmActionCall *call, const char *name);

/*
 * A files parameter as an int8[] of drive file ids (empty when absent); an
 * id that is not a number or not in crm.drive_file is an ERROR.
 */
extern Datum crm_param_file_array(CrmActionCall *call, const char *name);
extern List *crm_param_addresses(CrmActionCall *call, const char *name, bool phones,
								 const char *separators);	/* char * */
extern Jsonb *crm_param_json(CrmActionCall *call, const char *name);	/* rendered */
extern bool crm_param_interval(CrmActionCall *call, const char *name, Interval **out);
extern bool crm_param_when(CrmActionCall *call, const char *name, TimestampTz *out);
extern int64 crm_param_stage(CrmActionCall *call, const char *name);
extern int	crm_param_files(CrmActionCall *call, const char *name, int64 **ids);

extern void crm_action_output_int(CrmActionCall *call, const char *key, int64 v);
extern void crm_action_output_text(CrmActionCall *call, const char *key, const char *v);

/* Item helpers shared by executors. */
extern int64 crm_item_int(CrmEvalContext *cx, const char *column, bool *isnull);
extern const char *crm_item_table(const char *entity_type);
extern const char *crm_item_prefix(const char *entity_type);
extern int64 crm_returned_id(void);
extern void crm_action_author(const CrmActionCall *call, Datum *vals, char *nulls,
							  int robot, int instance);
extern Datum crm_int8_array(const int64 *ids, int n);

/* Small checks shared by the parameters' phases (actions_util.c). */
extern char *crm_jbv_string(JsonbValue *v);	/* a jbvString, palloc'd */
extern bool crm_all_digits(const char *s);	/* non-empty, 0-9 only */
extern bool crm_looks_like_email(const char *s);
extern bool crm_looks_like_phone(const char *s);	/* +, digits, " ()-." */

/*
 * The longest delay a rule may ask for, in days (about 100 years): a
 * robot's delay or date-field offset, an interval parameter (wait, control),
 * a process delay.  Checked when a rule is saved and again when it is
 * loaded or run, so a due time is always a valid timestamp.
 */
#define CRM_MAX_DELAY_DAYS 36525

extern bool crm_delay_in_bounds(const Interval *iv);

/* Executors, by family (actions_*.c). */
extern void crm_exec_add_comment(CrmActionCall *call);
extern void crm_exec_write_log(CrmActionCall *call);
extern void crm_exec_notify(CrmActionCall *call);
extern void crm_exec_create_task(CrmActionCall *call);
extern void crm_exec_create_activity(CrmActionCall *call);
extern void crm_exec_update_item(CrmActionCall *call);
extern void crm_exec_change_stage(CrmActionCall *call);
extern void crm_exec_change_responsible(CrmActionCall *call);
extern void crm_exec_generate_code(CrmActionCall *call);
extern void crm_exec_outbound(CrmActionCall *call);
extern void crm_exec_delete_item(CrmActionCall *call);
extern void crm_exec_control(CrmActionCall *call);
extern void crm_exec_wait(CrmActionCall *call);
extern void crm_exec_feed_post(CrmActionCall *call);
extern void crm_exec_create_group_chat(CrmActionCall *call);
extern void crm_exec_add_chat_members(CrmActionCall *call);
extern void crm_exec_chat_message(CrmActionCall *call);
extern void crm_exec_direct_message(CrmActionCall *call);
extern void crm_exec_add_to_exceptions(CrmActionCall *call);
extern void crm_exec_schedule_meeting(CrmActionCall *call);
extern void crm_exec_schedule_call(CrmActionCall *call);
extern void crm_exec_update_related(CrmActionCall *call);
extern void crm_exec_copy_deal(CrmActionCall *call);
extern void crm_exec_change_pipeline(CrmActionCall *call);
extern void crm_exec_create_document(CrmActionCall *call);
extern void crm_exec_create_contact_from_lead(CrmActionCall *call);
extern void crm_exec_convert(CrmActionCall *call);
extern void crm_exec_create_repeat_lead(CrmActionCall *call);
extern void crm_exec_reserve_resource(CrmActionCall *call);
extern void crm_exec_cancel_reservation(CrmActionCall *call);
extern void crm_exec_process_control(CrmActionCall *call);
extern void crm_exec_user_notification(CrmActionCall *call);
extern void crm_exec_social_message(CrmActionCall *call);
extern void crm_exec_calendar_event(CrmActionCall *call);
extern void crm_exec_absence(CrmActionCall *call);
extern void crm_exec_openline_message(CrmActionCall *call);
extern void crm_notify_users(CrmActionCall *call, const int64 *ids, int n, int64 sender,
							 const char *kind, const char *text, const char *email_text);
extern int64 crm_item_supervisor(CrmActionCall *call);
/* The parameter when the action has it, else NULL (actions sharing an executor). */
extern const CrmCompiledParam *crm_param_if_any(CrmActionCall *call, const char *name);

extern void crm_update_fields(CrmActionCall *call, const char *entity_type, int64 id);

/* Runs an SQL statement of the executors with parameters (actions_util). */
extern int64 crm_item_id_param(CrmActionCall *call);

#endif							/* CRM_ACTIONS_H */
