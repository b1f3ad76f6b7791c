
-- ---------------------------------------------------------------------------
-- The expression language from SQL: try a template, formula or condition
-- against an item before putting it in a rule.  Context keys: variables,
-- constants, robots, activities, event (objects).
-- ---------------------------------------------------------------------------
CREATE FUNCTION crm.evaluate(expression text, entity_type text DEFAULT NULL,
							 item_id bigint DEFAULT NULL, context jsonb DEFAULT '{}')
RETURNS text
	AS 'MODULE_PATHNAME', 'crm_evaluate' LANGUAGE C STABLE;

CREATE FUNCTION crm.test_condition(condition jsonb, entity_type text DEFAULT NULL,
								   item_id bigint DEFAULT NULL, context jsonb DEFAULT '{}')
RETURNS boolean
	AS 'MODULE_PATHNAME', 'crm_test_condition' LANGUAGE C STABLE;

CREATE FUNCTION crm.check_expression(expression text, entity_type text) RETURNS void
	AS 'MODULE_PATHNAME', 'crm_check_expression' LANGUAGE C STABLE STRICT;
