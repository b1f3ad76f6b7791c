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
