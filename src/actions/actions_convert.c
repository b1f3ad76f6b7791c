/*-------------------------------------------------------------------------
 *
 * actions_convert.c
 *	  Actions that create or re-home items: update_company, update_contact,
 *	  copy_deal, change_pipeline, create_contact_from_lead, convert,
 *	  create_repeat_lead, create_document, reserve_resource,
 *	  cancel_reservation.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/jsonb.h"

#include "actions/actions.h"
#include "core/spi_util.h"

static void
require_type(CrmActionCall *call, const char *a, const char *b)
{
	if (strcmp(call->cx->entity_type, a) != 0 && (b == NULL || strcmp(call->cx->entity_type, b) != 0))
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("action \"%s\" is not available for %s items", call->action->name,
						call->cx->entity_type)));
}

/* update_company / update_contact: the item's linked company or primary contact. */
void
crm_exec_update_related(CrmActionCall *call)
{
	bool		company = strcmp(call->action->name, "update_company") == 0;
	bool		isnull;
	int64		id = crm_item_int(call->cx, company ? "company_id" : "contact_id", &isnull);

	if (isnull)
		ereport(ERROR,
				(errcode(ERRCODE_NO_DATA_FOUND),
				 errmsg("the item has no linked %s", company ? "company" : "contact")));
	crm_update_fields(call, company ? "company" : "contact", id);
}

/* First stage of a pipeline given by id or name, or the named stage in it. */
static int64
pipeline_stage(CrmActionCall *call, const char *entity_type, const char *pipeline,
			   const char *stage)
{
	static SPIPlanPtr plan = NULL;
	Oid			types[3] = {TEXTOID, TEXTOID, TEXTOID};
	Datum		vals[3];
	char		nulls[3] = {' ', ' ', ' '};

	vals[0] = CStringGetTextDatum(entity_type);
	vals[1] = CStringGetTextDatum(pipeline ? pipeline : "");
	nulls[1] = pipeline ? ' ' : 'n';
	vals[2] = CStringGetTextDatum(stage ? stage : "");
	nulls[2] = stage ? ' ' : 'n';
	crm_exec(crm_plan(&plan,
					  "SELECT s.id FROM crm.stage s JOIN crm.pipeline p ON p.id = s.pipeline_id"
					  " WHERE p.entity_type = $1"
					  "   AND CASE WHEN $2 IS NULL THEN p.is_default"
					  "            WHEN $2 ~ '^[0-9]+$' THEN p.id = $2::bigint ELSE p.name = $2 END"
					  "   AND ($3 IS NULL OR s.code = lower($3) OR s.id::text = $3)"
					  " ORDER BY s.sort, s.id LIMIT 1",
					  3, types), vals, nulls, true, 1);
	if (SPI_processed == 0)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("%s pipeline \"%s\"%s%s%s has no such stage", entity_type,
						pipeline ? pipeline : "(default)", stage ? " stage \"" : "",
						stage ? stage : "", stage ? "\"" : ""),
				 errhint("Give a pipeline id or name of the same entity type, and a stage code of it.")));
	return crm_returned_id();
}

void
crm_exec_copy_deal(CrmActionCall *call)
{
	static SPIPlanPtr plan = NULL;
	char	   *pipeline = crm_param_text(call, "pipeline");
	int64	   *ids;
	int			n = crm_param_users(call, "responsible", &ids);
	Oid			types[3] = {INT8OID, INT8OID, INT8OID};
	Datum		vals[3];
	char		nulls[3] = {' ', ' ', ' '};

	require_type(call, "deal", NULL);
	vals[0] = Int64GetDatum(call->cx->item_id);
	vals[1] = Int64GetDatum(pipeline_stage(call, "deal", pipeline, NULL));
	vals[2] = Int64GetDatum(n > 0 ? ids[0] : 0);
	nulls[2] = n > 0 ? ' ' : 'n';
	crm_exec(crm_plan(&plan,
					  "INSERT INTO crm.deal (title, stage_id, responsible_id, amount, currency, contact_id,"
					  " company_id, lead_id, begin_date, close_date, fields)"
					  " SELECT title, $2, coalesce($3, responsible_id), amount, currency, contact_id,"
					  "  company_id, lead_id, begin_date, close_date, fields FROM crm.deal WHERE id = $1"
					  " RETURNING id", 3, types), vals, nulls, false, 1);
	crm_action_output_int(call, "deal_id", crm_returned_id());
}

void
crm_exec_change_pipeline(CrmActionCall *call)
{
	static SPIPlanPtr stop = NULL;
	char	   *pipeline = crm_param_text(call, "pipeline");
	char	   *stage = crm_param_text(call, "stage");
	int64		target = pipeline_stage(call, call->cx->entity_type, pipeline, stage);
	char	   *sql = psprintf("UPDATE %s SET stage_id = $1 WHERE id = $2",
							   quote_qualified_identifier("crm", crm_item_table(call->cx->entity_type)));
	Oid			types[2] = {INT8OID, INT8OID};
	Oid			stypes[2] = {TEXTOID, INT8OID};
	Datum		vals[2];

	/* every running business process of the item stops, its timer with it */
	vals[0] = CStringGetTextDatum(call->cx->entity_type);
	vals[1] = Int64GetDatum(call->cx->item_id);
	crm_exec(crm_plan(&stop,
					  "WITH s AS (UPDATE crm.process_instance SET status = 'stopped', finished_at = now()"
					  "  WHERE document_type = $1 AND document_id = $2 AND status IN ('running', 'waiting')"
					  "  RETURNING id)"
					  " UPDATE crm.job j SET status = 'cancelled', updated_at = now() FROM s"
					  "  WHERE j.process_instance_id = s.id AND j.status = 'pending'"
					  "    AND j.entity_type = $1 AND j.entity_id = $2",
					  2, stypes), vals, NULL, false, 0);
	/* moving cancels the pending robots of the old stage and runs the new one's */
	vals[0] = Int64GetDatum(target);
	vals[1] = Int64GetDatum(call->cx->item_id);
	if (SPI_execute_with_args(sql, 2, types, vals, NULL, false, 0) < 0)
		elog(ERROR, "change_pipeline failed");
	call->stop_chain = true;
}

/*
 * Creates a contact from the lead's contact data and links it; returns its
 * id.  With repeated (create_contact_from_lead), the lead becomes a repeated
 * lead: one of an existing client (seed 002).
 */
static int64
lead_to_contact(CrmActionCall *call, bool repeated)
{
	static SPIPlanPtr plan = NULL;
	Oid			types[2] = {INT8OID, BOOLOID};
	Datum		vals[2];

	vals[0] = Int64GetDatum(call->cx->item_id);
	vals[1] = BoolGetDatum(repeated);
	crm_exec(crm_plan(&plan,
					  "WITH c AS (INSERT INTO crm.contact (name, phone, email, address, lead_id, responsible_id)"
					  "  SELECT coalesce(nullif(contact_name, ''), nullif(title, ''), 'Contact'), phone, email,"
					  "         address, id, responsible_id FROM crm.lead WHERE id = $1 RETURNING id),"
					  " l AS (UPDATE crm.lead SET contact_id = c.id, is_repeated = lead.is_repeated OR $2"
					  "  FROM c WHERE lead.id = $1)"
					  " SELECT id FROM c", 2, types), vals, NULL, false, 1);
	return crm_returned_id();
}

void
crm_exec_create_contact_from_lead(CrmActionCall *call)
{
	require_type(call, "lead", NULL);
	crm_action_output_int(call, "contact_id", lead_to_contact(call, true));
}

void
crm_exec_create_repeat_lead(CrmActionCall *call)
{
	static SPIPlanPtr plan = NULL;
	int64	   *ids;
	int			n = crm_param_users(call, "responsible", &ids);
	Oid			types[2] = {INT8OID, INT8OID};
	Datum		vals[2];
	char		nulls[2] = {' ', ' '};

	require_type(call, "deal", NULL);
	vals[0] = Int64GetDatum(call->cx->item_id);
	vals[1] = Int64GetDatum(n > 0 ? ids[0] : 0);
	nulls[1] = n > 0 ? ' ' : 'n';
	crm_exec(crm_plan(&plan,
					  "INSERT INTO crm.lead (title, responsible_id, amount, currency, contact_id, company_id, source,"
					  " is_repeated)"
					  " SELECT 'Repeat: ' || title, coalesce($2, responsible_id), amount, currency,"
					  "        contact_id, company_id, 'repeat', true FROM crm.deal WHERE id = $1 RETURNING id",
					  2, types), vals, nulls, false, 1);
	crm_action_output_int(call, "lead_id", crm_returned_id());
}

void
crm_exec_convert(CrmActionCall *call)
{
	static SPIPlanPtr deal_plan = NULL;
	static SPIPlanPtr company_plan = NULL;
	static SPIPlanPtr quote_plan = NULL;
	static SPIPlanPtr invoice_plan = NULL;
	static SPIPlanPtr done_plan = NULL;
	char	   *to = crm_param_text(call, "to");
	char	   *pipeline = crm_param_text(call, "pipeline");
	Oid			types[2] = {INT8OID, INT8OID};
	Datum		vals[2];
	int64		id = 0;

	vals[0] = Int64GetDatum(call->cx->item_id);
	if (strcmp(to, "deal") == 0 || strcmp(to, "contact") == 0 || strcmp(to, "company") == 0)
	{
		require_type(call, "lead", NULL);
		if (strcmp(to, "deal") == 0)
		{
			vals[1] = Int64GetDatum(pipeline_stage(call, "deal", pipeline, NULL));
			crm_exec(crm_plan(&deal_plan,
							  "INSERT INTO crm.deal (title, stage_id, responsible_id, amount, currency,"
							  " contact_id, company_id, lead_id, fields)"
							  " SELECT title, $2, responsible_id, amount, currency, contact_id, company_id, id, fields"
							  "   FROM crm.lead WHERE id = $1 RETURNING id", 2, types), vals, NULL, false, 1);
		}
		else if (strcmp(to, "contact") == 0)
			id = lead_to_contact(call, false);
		else
			crm_exec(crm_plan(&company_plan,
							  "WITH c AS (INSERT INTO crm.company (title, phone, email, address, lead_id, responsible_id)"
							  "  SELECT coalesce(nullif(company_title, ''), nullif(title, ''), 'Company'), phone, email,"
							  "         address, id, responsible_id FROM crm.lead WHERE id = $1 RETURNING id),"
							  " l AS (UPDATE crm.lead SET company_id = c.id FROM c WHERE lead.id = $1)"
							  " SELECT id FROM c", 1, types), vals, NULL, false, 1);
		if (strcmp(to, "contact") != 0)
			id = crm_returned_id();
		/* the lead is converted: flagged and moved to its success status */
		crm_exec(crm_plan(&done_plan,
						  "UPDATE crm.lead SET converted = true, stage_id = coalesce((SELECT s.id FROM crm.stage s"
						  "  WHERE s.pipeline_id = (SELECT pipeline_id FROM crm.stage WHERE id = lead.stage_id)"
						  "    AND s.semantics = 'success'), stage_id) WHERE id = $1",
						  1, types), vals, NULL, false, 0);
		call->stop_chain = true;
	}
	else
	{
		require_type(call, "deal", NULL);
		vals[1] = Int64GetDatum(pipeline_stage(call, to, pipeline, NULL));
		if (strcmp(to, "quote") == 0)
			crm_exec(crm_plan(&quote_plan,
							  "INSERT INTO crm.quote (title, stage_id, responsible_id, amount, currency, deal_id,"
							  " contact_id, company_id) SELECT title, $2, responsible_id, amount, currency, id,"
							  " contact_id, company_id FROM crm.deal WHERE id = $1 RETURNING id",
							  2, types), vals, NULL, false, 1);
		else
			crm_exec(crm_plan(&invoice_plan,
							  "INSERT INTO crm.invoice (title, stage_id, responsible_id, amount, currency, deal_id,"
							  " contact_id, company_id) SELECT title, $2, responsible_id, amount, currency, id,"
							  " contact_id, company_id FROM crm.deal WHERE id = $1 RETURNING id",
							  2, types), vals, NULL, false, 1);
		id = crm_returned_id();
	}
	crm_action_output_int(call, psprintf("%s_id", to), id);
}

void
crm_exec_create_document(CrmActionCall *call)
{
	static SPIPlanPtr tpl = NULL;
	static SPIPlanPtr ins = NULL;
	char	   *template = crm_param_text(call, "template");
	Oid			ttypes[1] = {TEXTOID};
	Oid			types[7] = {INT8OID, TEXTOID, TEXTOID, TEXTOID, INT8OID, INT8OID, INT8OID};
	Datum		vals[7];
	char		nulls[7] = {' ', ' ', ' ', ' ', ' ', ' ', ' '};
	bool		isnull;
	int64		tid;
	char	   *name;
	char	   *body;

	vals[0] = CStringGetTextDatum(template);
	crm_exec(crm_plan(&tpl,
					  "SELECT id, name, body FROM crm.document_template"
					  " WHERE CASE WHEN $1 ~ '^[0-9]+$' THEN id = $1::bigint ELSE name = $1 END",
					  1, ttypes), vals, NULL, true, 1);
	if (SPI_processed == 0)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("document template \"%s\" does not exist", template),
				 errhint("Templates are rows of crm.document_template (id, name, body).")));
	tid = crm_returned_id();
	name = TextDatumGetCString(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2, &isnull));
	body = TextDatumGetCString(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 3, &isnull));
	/* the template's body is itself a template, rendered for the item */
	body = crm_expr_render(crm_expr_compile_text(body, "document_template.body"), call->cx);

	vals[0] = Int64GetDatum(tid);
	vals[1] = CStringGetTextDatum(name);
	vals[2] = CStringGetTextDatum(body);
	vals[3] = CStringGetTextDatum(call->cx->entity_type);
	vals[4] = Int64GetDatum(call->cx->item_id);
	crm_action_author(call, vals, nulls, 5, 6);
	crm_exec(crm_plan(&ins,
					  "INSERT INTO crm.document (template_id, title, body, entity_type, entity_id, robot_id,"
					  " process_instance_id)"
					  " VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING id", 7, types), vals, nulls, false, 1);
	crm_action_output_int(call, "document_id", crm_returned_id());
}

void
crm_exec_reserve_resource(CrmActionCall *call)
{
	static SPIPlanPtr plan = NULL;
	static SPIPlanPtr robot_plan = NULL;
	Oid			types[9] = {TEXTOID, INT8ARRAYOID, TIMESTAMPTZOID, INTERVALOID, TEXTOID,
	TEXTOID, INT8OID, INT8OID, INT8OID};
	Datum		vals[9];
	char		nulls[9] = {' ', ' ', ' ', ' ', ' ', ' ', ' ', ' ', ' '};
	TimestampTz start;
	Interval   *duration;
	int64	   *ids;
	int			n = crm_param_users(call, "employees", &ids);
	char	   *field = crm_param_text(call, "field");

	if (n == 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("parameter \"employees\" names no user for this item")));
	(void) crm_param_when(call, "start", &start);
	(void) crm_param_interval(call, "duration", &duration);
	vals[0] = CStringGetTextDatum(crm_param_text(call, "service"));
	vals[1] = crm_int8_array(ids, n);
	vals[2] = TimestampTzGetDatum(start);
	vals[3] = IntervalPGetDatum(duration);
	vals[4] = field ? CStringGetTextDatum(field) : (Datum) 0;
	nulls[4] = field ? ' ' : 'n';
	vals[5] = CStringGetTextDatum(call->cx->entity_type);
	vals[6] = Int64GetDatum(call->cx->item_id);
	crm_action_author(call, vals, nulls, 7, 8);
	/*
	 * The column came in 0.2.0: a robot's booking does without it, so that
	 * robots keep working on a 0.1.0 schema until ALTER EXTENSION ... UPDATE.
	 */
	if (call->process_instance_id == 0)
		crm_exec(crm_plan(&robot_plan,
						  "INSERT INTO crm.resource_booking (service, user_id, start_at, duration, field,"
						  " entity_type, entity_id, robot_id)"
						  " SELECT $1, u, $3, $4, $5, $6, $7, $8 FROM unnest($2) u",
						  8, types), vals, nulls, false, 0);
	else
		crm_exec(crm_plan(&plan,
						  "INSERT INTO crm.resource_booking (service, user_id, start_at, duration, field,"
						  " entity_type, entity_id, robot_id, process_instance_id)"
						  " SELECT $1, u, $3, $4, $5, $6, $7, $8, $9 FROM unnest($2) u",
						  9, types), vals, nulls, false, 0);
	crm_action_output_int(call, "booked", (int64) SPI_processed);
}

/*
 * Seed 002: "the rule will cancel any active booking in the selected field
 * of the lead or deal" - whatever its service, employees or time.  Field
 * codes are compared without regard to case, as everywhere else.
 */
void
crm_exec_cancel_reservation(CrmActionCall *call)
{
	static SPIPlanPtr plan = NULL;
	Oid			types[3] = {TEXTOID, INT8OID, TEXTOID};
	Datum		vals[3];

	vals[0] = CStringGetTextDatum(call->cx->entity_type);
	vals[1] = Int64GetDatum(call->cx->item_id);
	vals[2] = CStringGetTextDatum(crm_param_text(call, "field"));
	crm_exec(crm_plan(&plan,
					  "UPDATE crm.resource_booking SET status = 'cancelled'"
					  " WHERE entity_type = $1 AND entity_id = $2 AND upper(field) = upper($3)"
					  "   AND status = 'booked'",
					  3, types), vals, NULL, false, 0);
	crm_action_output_int(call, "cancelled", (int64) SPI_processed);
}
