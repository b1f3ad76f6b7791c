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
 * Changes since 0.1.0:
 *  - a provider pointed at another endpoint or channel loses its secret
 *    (crm._provider_secret_follows_url, trigger secret_follows_url);
 *  - crm.set_user(user_id): the acting user for the current transaction.
 */

-- A provider's secret goes to its URL's host (the SMTP password, an SMS or
-- robocall gateway's {secret}).  crm_admin may change a provider, by
-- crm.update_provider or a direct UPDATE, but not make it carry the secret
-- elsewhere: pointing it at another endpoint (scheme and authority) or
-- another channel removes its secret, which must then be given again.
CREATE FUNCTION crm._provider_secret_follows_url() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
	IF OLD.channel IS DISTINCT FROM NEW.channel
	   OR (NEW.channel IN ('email', 'sms', 'robocall')
		   AND crm._url_endpoint(OLD.config->>'url') IS DISTINCT FROM crm._url_endpoint(NEW.config->>'url')) THEN
		DELETE FROM crm.provider_secret s WHERE s.provider_id = NEW.id;
		IF FOUND THEN
			RAISE NOTICE 'the secret of % provider "%" was removed: it now points to another endpoint', NEW.channel, NEW.name
				USING HINT = 'Give it again with crm.update_provider(id, secret => ...).';
		END IF;
	END IF;
	RETURN NULL;
END
$$;
CREATE TRIGGER secret_follows_url AFTER UPDATE OF config, channel ON crm.provider
	FOR EACH ROW EXECUTE FUNCTION crm._provider_secret_follows_url();
REVOKE EXECUTE ON FUNCTION crm._provider_secret_follows_url() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION crm._provider_secret_follows_url() TO crm_admin;

-- The acting user for the current transaction only: what an application
-- behind a transaction pooler (pgbouncer in transaction mode) must use, since
-- a plain SET crm.user_id stays with the server connection and reaches
-- other clients' transactions.  Same as SET LOCAL crm.user_id; 0 or NULL
-- means the system.
CREATE FUNCTION crm.set_user(user_id bigint) RETURNS bigint
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
BEGIN
	IF coalesce(user_id, 0) <> 0 AND NOT EXISTS (SELECT FROM crm.user u WHERE u.id = set_user.user_id) THEN
		RAISE EXCEPTION 'user % does not exist', user_id
			USING ERRCODE = 'no_data_found',
				  HINT = 'List users with: SELECT id, name FROM crm.user;';
	END IF;
	IF coalesce(user_id, 0) < 0 OR coalesce(user_id, 0) > 2147483647 THEN
		RAISE EXCEPTION 'user id % is out of range', user_id USING ERRCODE = 'numeric_value_out_of_range';
	END IF;
	RETURN set_config('crm.user_id', coalesce(user_id, 0)::text, true)::bigint;
END
$$;
COMMENT ON FUNCTION crm.set_user(bigint) IS
	'Sets the acting CRM user for the current transaction only (safe behind a transaction pooler)';
REVOKE EXECUTE ON FUNCTION crm.set_user(bigint) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION crm.set_user(bigint) TO crm_user;
GRANT EXECUTE ON FUNCTION crm.set_user(bigint) TO crm_admin;
