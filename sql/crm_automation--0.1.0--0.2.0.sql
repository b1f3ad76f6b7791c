\echo Use "ALTER EXTENSION crm_automation UPDATE TO '0.2.0'" to load this file. \quit

/*
 * crm_automation upgrade from 0.1.0 to 0.2.0.
 *
 * sql/crm_automation--0.1.0.sql is the install script of 0.1.0 as released,
 * frozen.  The install script of 0.2.0 is assembled from sql/install/; every
 * schema change made there after 0.1.0 (tables, columns, constraints,
 * indexes, functions, views, triggers, grants, extension config, default
 * rows) must also be made here, so that a database updated with
 * ALTER EXTENSION crm_automation UPDATE ends up with the same schema as a
 * fresh CREATE EXTENSION, and keeps its rows.  test/integration/upgrade.sh
 * compares the two and fails on any difference.
 *
 * Rules for what goes here:
 *  - CREATE OR REPLACE FUNCTION for changed functions (a changed signature:
 *    DROP the old one first); ALTER TABLE for tables, never drop and
 *    re-create one that holds rows.
 *  - A new table or sequence that holds rows: also
 *    SELECT pg_catalog.pg_extension_config_dump(...) as in 95_dump.sql.
 *  - New default rows: insert them only where missing, as 60_defaults.sql
 *    does on install.
 *  - Grants as in 90_grants.sql.
 *
 * Changes since 0.1.0: none yet.
 */
