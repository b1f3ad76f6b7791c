
-- ---------------------------------------------------------------------------
-- Why did (or didn't) it run?  crm.explain: the decision each robot of an
-- item's stage, each trigger of its pipeline and each auto-starting process
-- template would make now, with its condition taken apart (admin/explain.c).
-- It reads the item as the caller and writes nothing.
-- ---------------------------------------------------------------------------
CREATE FUNCTION crm.explain(entity_type text, id bigint, stage bigint DEFAULT NULL)
RETURNS TABLE (kind text, rule_id bigint, rule text, decision text, condition text,
			   substituted text, detail jsonb)
	AS 'MODULE_PATHNAME', 'crm_explain' LANGUAGE C VOLATILE;
COMMENT ON FUNCTION crm.explain(text, bigint, bigint) IS
	'What automation would do for an item now (or on entering stage): one row per robot, trigger and auto-starting process template, with its decision and its condition with the item''s values';
REVOKE EXECUTE ON FUNCTION crm.explain(text, bigint, bigint) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION crm.explain(text, bigint, bigint) TO crm_user;
