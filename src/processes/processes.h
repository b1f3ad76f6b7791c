/*-------------------------------------------------------------------------
 *
 * processes.h
 *	  Business processes (SPEC §5): templates of activities run for one
 *	  document, with branches, variables and timers.
 *
 * An activity is a JSON object {"type": ..., "name": ..., params...}.  Its
 * type is either an action of the robots' catalogue (actions.h: the same
 * descriptor validates, compiles and executes it) or one of the
 * process-only types below.  process_check.c checks a definition when a
 * template is saved; processes.c runs instances.
 *
 *-------------------------------------------------------------------------
 */
#ifndef CRM_PROCESSES_H
#define CRM_PROCESSES_H

#include "actions/actions.h"
#include "utils/jsonb.h"

typedef enum CrmActivityKind
{
	CRM_ACTIVITY_ACTION,		/* a robot action */
	CRM_ACTIVITY_IF,
	CRM_ACTIVITY_DELAY,
	CRM_ACTIVITY_SET_VARIABLE,
	CRM_ACTIVITY_SET_FIELD,		/* update_item with one field */
	CRM_ACTIVITY_SET_STATUS_TEXT,
	CRM_ACTIVITY_UNSUPPORTED,	/* a process-only type of SPEC §5 not built yet */
	CRM_ACTIVITY_UNKNOWN
} CrmActivityKind;

/* The kind of an activity type; *action is set for CRM_ACTIVITY_ACTION. */
extern CrmActivityKind crm_activity_kind(const char *type, const CrmActionDesc **action);
extern const char *crm_activity_alternative(const char *type);

/*
 * The parameters an action activity passes to its action's descriptor: the
 * activity without "type" and "name" (and, for set_field, {"fields":
 * {field: value}} for update_item).
 */
extern Jsonb *crm_activity_params(Jsonb *activity, CrmActivityKind kind);

/*
 * A parameter of an activity as written: inside its "params" object when it
 * has one, else beside "type".  crm_activity_flag reads a boolean one
 * (dflt when absent or not a boolean).
 */
extern JsonbValue *crm_activity_param(Jsonb *activity, const char *key);
extern bool crm_activity_flag(Jsonb *activity, const char *key, bool dflt);

/* A string member of a JSON object, or NULL. */
extern char *crm_jsonb_string(Jsonb *obj, const char *key);

/*
 * The value of a declared parameter or variable as stored: v converted to
 * the declared type ("text", "int", "number", "bool", "date", "datetime",
 * "user").  False when it cannot be.
 */
extern bool crm_process_value(const char *type, JsonbValue *v, JsonbValue *out);

/*
 * A declared variable matched without regard to case: its declared name,
 * with its type in *type; NULL when variables (the declarations) lack it.
 */
extern char *crm_process_variable(Jsonb *variables, const char *name, char **type);

/*
 * Checks a definition as when its template is saved (process_check.c); an
 * ERROR when it is wrong.  The caller is connected to SPI.
 */
extern void crm_process_check_definition(const char *document_type, Jsonb *definition);

/*
 * Starts an instance of a template for a document, as crm.start_process
 * does, and runs it until it ends or waits; returns its id.  asked_type
 * NULL takes the template's, given NULL means no parameters.  A document
 * that does not exist is an ERROR, or with missing_ok returns 0.
 */
/*
 * Set while auto-start runs the starts of a statement that wrote documents:
 * on a distributed installation their activities that write beyond the
 * document are run by the job runner instead (docs/citus.md).
 */
extern bool crm_processes_in_statement;

extern int64 crm_process_start(int64 template_id, const char *asked_type,
							   int64 document_id, Jsonb *given, bool missing_ok);

/*
 * The same in two steps, for many starts of one template: its row (locked
 * FOR KEY SHARE, as the foreign key of its instances would lock it) and the
 * check of its definition once (an unknown template is an ERROR; an
 * inactive one is refused by each start), then each start.  Starts in the
 * same subtransaction may share what they look up (shared, zeroed by the
 * caller; NULL: each start looks up for itself): the acting user who
 * starts them, also locked FOR KEY SHARE.
 */
typedef struct CrmStartShared
{
	bool		user_known;		/* user_asked was looked up */
	int64		user_asked;		/* crm.user_id at the time */
	bool		user_exists;
	struct CrmKeptRows *kept;	/* see crm_process_keep_begin */
} CrmStartShared;

/*
 * Between these two, the rows of the instances that complete without
 * pausing (their instance rows and trace rows) are kept and written
 * together: by crm_process_keep_flush, in the same subtransaction, or
 * whenever a thousand are kept.  Nothing may read them before.
 */
extern void crm_process_keep_begin(CrmStartShared *shared);
extern void crm_process_keep_flush(CrmStartShared *shared);

typedef struct CrmProcessTemplate
{
	int64		id;
	char	   *document_type;
	Jsonb	   *definition;
	bool		active;
	char	   *invalid_message;	/* the definition fails its check: why */
	char	   *invalid_detail;
} CrmProcessTemplate;

extern CrmProcessTemplate *crm_process_template(int64 template_id);
extern int64 crm_process_start_template(const CrmProcessTemplate *t, const char *asked_type,
										int64 document_id, Jsonb *given, bool missing_ok,
										CrmStartShared *shared);

/*
 * Registers the "process_timer" job executor, which resumes paused
 * instances (called from _PG_init).
 */
extern void crm_processes_init(void);

/* Auto-start (autostart.c): registers the engine's write hooks (from _PG_init). */
extern void crm_autostart_init(void);

#endif							/* CRM_PROCESSES_H */
