\echo Use "CREATE EXTENSION crm_automation" to load this file. \quit

/*
 * crm_automation install script.
 *
 * Assembled by the Makefile from the fragments in sql/install/, in file-name
 * order: roles, structure (entity types, users, pipelines, stages), items,
 * workspace effects, automation tables, admin functions, default data,
 * grants.  Everything lives in schema crm.
 */

-- ---------------------------------------------------------------------------
-- Schema crm belongs to whoever installs the extension: automation acts as
-- its owner.  CREATE EXTENSION uses an existing schema of that name, so one
-- that another role owns (and could have filled with its own objects) is
-- refused rather than adopted.
-- ---------------------------------------------------------------------------
DO $$
DECLARE
	owner name;
BEGIN
	SELECT r.rolname INTO owner
	  FROM pg_catalog.pg_namespace n JOIN pg_catalog.pg_roles r ON r.oid OPERATOR(pg_catalog.=) n.nspowner
	 WHERE n.nspname OPERATOR(pg_catalog.=) 'crm';
	IF owner IS DISTINCT FROM current_user THEN
		RAISE EXCEPTION 'schema "crm" already exists and is owned by role "%"', owner
			USING ERRCODE = 'insufficient_privilege',
				  DETAIL = 'Automation acts as the owner of schema crm, so it must belong to the role that installs the extension.',
				  HINT = 'Drop the schema, or make the installing role its owner (ALTER SCHEMA crm OWNER TO ...), then CREATE EXTENSION again.';
	END IF;
END
$$;

-- ---------------------------------------------------------------------------
-- Roles: crm_admin defines structure and automation, crm_user works with
-- items.  Roles are cluster-wide, so they are created only when missing and
-- survive DROP EXTENSION.
-- ---------------------------------------------------------------------------
DO $$
BEGIN
	IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = 'crm_user') THEN
		CREATE ROLE crm_user NOLOGIN;
	END IF;
	IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = 'crm_admin') THEN
		CREATE ROLE crm_admin NOLOGIN;
	END IF;
END
$$;

-- An administrator can do everything a user can.
GRANT crm_user TO crm_admin;
