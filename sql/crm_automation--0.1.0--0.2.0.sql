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
 *  - crm.set_user(user_id): the acting user for the current transaction;
 *  - crm._render_template renders in one pass (a value that says {secret}
 *    stays as written);
 *  - crm._claim_messages never raises on a message of the wrong shape: the
 *    message is dead with the reason, the others go on;
 *  - jobs run in batches by job runners of their own: crm.run_due_jobs(),
 *    crm.cleanup_jobs() and the index job_finished (done and cancelled
 *    jobs by age); crm.worker_status() says each worker's role.
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
		RAISE EXCEPTION 'user id % is out of range', user_id
			USING ERRCODE = 'numeric_value_out_of_range',
				  HINT = 'crm.user_id holds ids from 1 to 2147483647.';
	END IF;
	RETURN set_config('crm.user_id', coalesce(user_id, 0)::text, true)::bigint;
END
$$;
COMMENT ON FUNCTION crm.set_user(bigint) IS
	'Sets the acting CRM user for the current transaction only (safe behind a transaction pooler)';
REVOKE EXECUTE ON FUNCTION crm.set_user(bigint) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION crm.set_user(bigint) TO crm_user;
GRANT EXECUTE ON FUNCTION crm.set_user(bigint) TO crm_admin;

-- Provider templates rendered in one pass over the template.
CREATE OR REPLACE FUNCTION crm._render_template(tpl text, vars jsonb, format text DEFAULT 'text')
RETURNS text
LANGUAGE plpgsql IMMUTABLE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
	v_part	text[];
	v_val	text;
	v_out	text := '';
BEGIN
	IF tpl IS NULL THEN
		RETURN NULL;
	END IF;
	-- the template in pieces, in order: {name}, a run without "{", a lone "{"
	FOR v_part IN SELECT m FROM regexp_matches(tpl, '(\{([^{}]*)\}|[^{]+|\{)', 'g') AS m LOOP
		IF v_part[2] IS NULL OR NOT vars ? v_part[2] THEN
			v_out := v_out || v_part[1];
			CONTINUE;
		END IF;
		v_val := coalesce(vars ->> v_part[2], '');
		IF format = 'json' THEN
			v_val := substr(to_jsonb(v_val)::text, 2, length(to_jsonb(v_val)::text) - 2);
		ELSIF format = 'form' THEN
			SELECT string_agg(CASE WHEN b BETWEEN 48 AND 57 OR b BETWEEN 65 AND 90
									  OR b BETWEEN 97 AND 122 OR b IN (45, 46, 95, 126)
								   THEN chr(b) ELSE '%' || upper(lpad(to_hex(b), 2, '0')) END,
							  '' ORDER BY i)
			  INTO v_val
			  FROM (SELECT i, get_byte(convert_to(v_val, 'UTF8'), i) AS b
					  FROM generate_series(0, octet_length(convert_to(v_val, 'UTF8')) - 1) AS i) s;
			v_val := coalesce(v_val, '');
		END IF;
		v_out := v_out || v_val;
	END LOOP;
	RETURN v_out;
END
$$;

-- The claim reads fields by their JSON type; a message of the wrong shape
-- is dead with the reason.
CREATE OR REPLACE FUNCTION crm._claim_messages(p_limit integer, p_lease interval, p_expired boolean DEFAULT true,
									p_busy text[] DEFAULT '{}')
RETURNS TABLE (id bigint, channel text, attempts integer, idempotency_key text,
			   provider_id bigint, url text, method text, headers text[], body text,
			   secret text, username text, mail_from text, rcpt text[], subject text,
			   html boolean, tls text, attachments text[], error text)
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
-- called many times a second: plan it once.  A generic plan does not know
-- the limit and, with many messages due, would rather read the whole table
-- and sort it: the claim reads outbox_due in order, whatever the statistics.
SET plan_cache_mode = force_generic_plan
SET enable_seqscan = off
SET enable_bitmapscan = off
SET enable_sort = off
AS $$
BEGIN
	RETURN QUERY
	WITH claimed AS (
		-- rows locked by the subquery keep their place (ctid) until we update
		-- them: the update reads them by address, whatever the statistics say
		-- (the subquery's index scan has pruned their pages: room for the
		-- HOT versions)
		UPDATE crm.outbox o
		   SET status = 'sending', attempts = o.attempts + 1, claimed_at = now(),
			   lease_until = now() + p_lease, updated_at = now()
		 WHERE o.ctid = ANY (CASE WHEN cardinality(p_busy) = 0 THEN ARRAY(
				SELECT d.ctid FROM crm.outbox d
				 WHERE d.sent_at IS NULL AND d.next_attempt_at < 'infinity'	-- outbox_due
				   AND d.next_attempt_at <= now()
				   AND (d.status IN ('pending', 'failed')
						OR (p_expired AND d.status = 'sending'
							AND (d.lease_until < now() OR d.claimed_at < pg_postmaster_start_time())))
				 ORDER BY d.next_attempt_at
				 LIMIT p_limit
				 FOR UPDATE SKIP LOCKED)
			ELSE ARRAY(
				-- skipping busy endpoints (a webhook's URL, else its
				-- provider's): the same, among the first 2,000 due messages
				-- (in their order: the nested loop over them keeps it), so
				-- that a long backlog for a busy endpoint is not read again
				-- and again
				SELECT d.ctid
				  FROM unnest(ARRAY(SELECT w.ctid FROM crm.outbox w
									 WHERE w.sent_at IS NULL AND w.next_attempt_at < 'infinity'
									   AND w.next_attempt_at <= now()
									 ORDER BY w.next_attempt_at
									 LIMIT 2000)) AS w (row_address)
				  JOIN crm.outbox d ON d.ctid = w.row_address
				 WHERE d.sent_at IS NULL AND d.next_attempt_at < 'infinity'
				   AND d.next_attempt_at <= now()
				   AND (d.status IN ('pending', 'failed')
						OR (p_expired AND d.status = 'sending'
							AND (d.lease_until < now() OR d.claimed_at < pg_postmaster_start_time())))
				   AND coalesce(crm._url_endpoint(
							CASE WHEN d.channel = 'webhook' AND d.payload ? 'url' THEN d.payload ->> 'url'
								 ELSE (SELECT p.config ->> 'url' FROM crm.provider p
										WHERE p.id = coalesce(d.provider_id,
															  (SELECT e.id FROM crm.provider e
																WHERE e.channel = d.channel AND e.is_default))) END),
								'') <> ALL (p_busy)
				 LIMIT p_limit
				 FOR UPDATE OF d SKIP LOCKED) END)
		RETURNING o.id, o.channel, o.attempts, o.idempotency_key, o.provider_id, o.payload
	), resolved AS (
		SELECT c.*, p.id AS p_id, p.active AS p_active, p.name AS p_name,
			   coalesce(p.config, '{}') AS cfg, s.secret AS p_secret,
			   (c.channel = 'webhook'
				AND EXISTS (SELECT FROM crm.disabled_endpoint d WHERE d.url = c.payload ->> 'url')) AS gone
		  FROM claimed c
		  LEFT JOIN crm.provider p
			ON p.id = coalesce(c.provider_id,
							   (SELECT d.id FROM crm.provider d
								 WHERE d.channel = c.channel AND d.is_default))
		  LEFT JOIN crm.provider_secret s ON s.provider_id = p.id
	), rendered AS (
		SELECT r.*,
			   CASE WHEN r.channel IN ('sms', 'robocall') THEN jsonb_build_object(
				   'to', coalesce((SELECT string_agg(t, ',') FROM jsonb_array_elements_text(r.to_list) t),
								  r.payload ->> 'number'),
				   'number', coalesce(r.payload ->> 'number',
									  (SELECT string_agg(t, ',') FROM jsonb_array_elements_text(r.to_list) t)),
				   'text', r.payload ->> 'text',
				   'message_id', r.idempotency_key,
				   'wait_for_result', coalesce(r.payload ->> 'wait_for_result', 'false'),
				   'secret', coalesce(r.p_secret, '')) END AS vars,
			   coalesce(r.cfg ->> 'format', 'json') AS fmt,
			   -- most webhooks have no headers of their own: skip the subqueries then
			   (r.channel = 'webhook' AND jsonb_typeof(r.payload -> 'headers') = 'object') AS own_headers,
			   (jsonb_typeof(r.cfg -> 'headers') = 'object') AS cfg_headers
		  FROM (SELECT r.*,
					   -- lists read only when they are arrays: a message of the
					   -- wrong shape must not stop the claim (see shape_error)
					   CASE WHEN jsonb_typeof(r.payload -> 'to') = 'array' THEN r.payload -> 'to' ELSE '[]' END AS to_list,
					   CASE WHEN jsonb_typeof(r.payload -> 'attachments') = 'array' THEN r.payload -> 'attachments'
							ELSE '[]' END AS att_list,
					   -- the first field of the wrong type, if any: the message is
					   -- dead with it, the others of the claim go on
					   CASE WHEN r.channel = 'webhook' THEN
								CASE WHEN jsonb_typeof(r.payload -> 'url') NOT IN ('string', 'null') THEN
										 format('webhook "url" must be a string, not %s', jsonb_typeof(r.payload -> 'url'))
									 WHEN jsonb_typeof(r.payload -> 'method') NOT IN ('string', 'null') THEN
										 format('webhook "method" must be a string, not %s', jsonb_typeof(r.payload -> 'method'))
									 WHEN jsonb_typeof(r.payload -> 'headers') NOT IN ('object', 'null') THEN
										 'webhook headers must be a JSON object' END
							ELSE (SELECT format('%s "%s" must be %s, not %s', r.channel, f.key,
												replace(f.expect, ' ', ' or '), jsonb_typeof(r.payload -> f.key))
									FROM (VALUES ('email', 'to', 'array'), ('email', 'subject', 'string'),
												 ('email', 'body', 'string'), ('email', 'from', 'string'),
												 ('email', 'html', 'boolean'), ('email', 'attachments', 'array'),
												 ('sms', 'to', 'array'), ('sms', 'number', 'string number'),
												 ('sms', 'text', 'string'), ('robocall', 'to', 'array'),
												 ('robocall', 'number', 'string number'), ('robocall', 'text', 'string'),
												 ('robocall', 'wait_for_result', 'boolean string')) AS f (channel, key, expect)
								   WHERE f.channel = r.channel
									 AND jsonb_typeof(r.payload -> f.key) <> 'null'
									 AND jsonb_typeof(r.payload -> f.key) <> ALL (string_to_array(f.expect, ' '))
								   LIMIT 1) END AS shape_error
				  FROM resolved r) r
	)
	SELECT r.id, r.channel, r.attempts, r.idempotency_key, r.p_id,
		   CASE WHEN r.channel = 'webhook' THEN coalesce(r.payload ->> 'url', r.cfg ->> 'url')
				WHEN r.channel = 'email' THEN r.cfg ->> 'url'
				ELSE crm._render_template(r.cfg ->> 'url', r.vars, 'form') END,
		   upper(coalesce(CASE WHEN r.channel = 'webhook' THEN r.payload ->> 'method' END,
						  r.cfg ->> 'method', 'POST')),
		   CASE WHEN r.own_headers OR r.cfg_headers THEN
			   ARRAY(SELECT h.key || ': ' ||
							CASE WHEN r.channel IN ('sms', 'robocall')
								 THEN crm._render_template(h.value, r.vars, 'text') ELSE h.value END
					   FROM (SELECT * FROM jsonb_each_text(CASE WHEN r.cfg_headers THEN r.cfg -> 'headers' ELSE '{}' END)
							 UNION ALL
							 SELECT * FROM jsonb_each_text(CASE WHEN r.own_headers
																 THEN r.payload -> 'headers'
																 ELSE '{}' END)) h)
				ELSE '{}' END,
		   CASE WHEN r.channel = 'webhook' THEN
					CASE jsonb_typeof(r.payload -> 'body')
						WHEN 'string' THEN r.payload ->> 'body'
						ELSE coalesce((r.payload -> 'body')::text, '') END
				WHEN r.channel = 'email' THEN r.payload ->> 'body'
				ELSE crm._render_template(
						coalesce(r.cfg ->> 'body',
								 CASE r.fmt WHEN 'form' THEN 'to={to}&text={text}&id={message_id}'
											ELSE '{"to": "{to}", "text": "{text}", "id": "{message_id}"}' END),
						r.vars, r.fmt) END,
		   r.p_secret,
		   r.cfg ->> 'username',
		   coalesce(r.payload ->> 'from', r.cfg ->> 'from'),
		   CASE WHEN r.channel = 'email'
				THEN ARRAY(SELECT jsonb_array_elements_text(r.to_list)) END,
		   r.payload ->> 'subject',
		   coalesce(CASE jsonb_typeof(r.payload -> 'html') WHEN 'boolean' THEN (r.payload -> 'html')::boolean END, false),
		   coalesce(r.cfg ->> 'tls', 'try'),
		   CASE WHEN r.channel = 'email'
				THEN ARRAY(SELECT jsonb_array_elements_text(r.att_list)) END,
		   CASE WHEN r.gone THEN 'endpoint gone: ' || (SELECT d.reason FROM crm.disabled_endpoint d WHERE d.url = r.payload ->> 'url')
				WHEN r.p_id IS NULL AND r.channel <> 'webhook' THEN
					format('no %s provider: add one with crm.add_provider(''%s'', name, config)', r.channel, r.channel)
				WHEN r.p_id IS NOT NULL AND NOT r.p_active THEN
					format('%s provider "%s" is disabled', r.channel, r.p_name)
				WHEN r.shape_error IS NOT NULL THEN
					r.shape_error
				WHEN r.p_id IS NOT NULL AND (jsonb_typeof(r.cfg) <> 'object'
											 OR (r.cfg ? 'headers' AND NOT r.cfg_headers)
											 OR EXISTS (SELECT FROM jsonb_each(CASE WHEN jsonb_typeof(r.cfg) = 'object'
																			 THEN r.cfg ELSE '{}' END) c
														 WHERE c.key <> 'headers' AND jsonb_typeof(c.value) <> 'string')) THEN
					format('%s provider "%s" has a config of the wrong shape: an object of strings, with "headers" an object',
						   r.channel, r.p_name)
				WHEN r.channel = 'webhook' AND coalesce(r.payload ->> 'url', r.cfg ->> 'url') IS NULL THEN
					'the webhook has no url and its provider none'
				WHEN r.channel = 'email' AND coalesce(r.payload ->> 'from', r.cfg ->> 'from') IS NULL THEN
					format('e-mail provider "%s" has no "from" address and the message none', r.p_name)
				WHEN r.own_headers
					 AND EXISTS (SELECT FROM jsonb_each_text(r.payload -> 'headers') h
								  WHERE h.value ~ '[\r\n]' OR h.key !~ '^[A-Za-z0-9!#$%&''*+.^_`|~-]+$') THEN
					'a header name is not a token or a header value contains CR or LF'
		   END
	  FROM rendered r;
END
$$;

-- ---------------------------------------------------------------------------
-- Job runners: batches of due jobs, cleanup of done ones, workers' roles.
-- ---------------------------------------------------------------------------

-- Done and cancelled jobs by age, for crm.cleanup_jobs() (crm.job_retention).
CREATE INDEX job_finished ON crm.job (updated_at) WHERE status IN ('done', 'cancelled');

-- Claims up to max_jobs due jobs and runs them, each in a subtransaction,
-- each under crm.job_timeout (C, scheduler.c); returns how many ran or
-- failed.  Call it in a transaction of its own.
CREATE FUNCTION crm.run_due_jobs(max_jobs integer DEFAULT 100) RETURNS integer
	AS 'MODULE_PATHNAME', 'crm_run_due_jobs' LANGUAGE C
	SET search_path = pg_catalog, pg_temp;
COMMENT ON FUNCTION crm.run_due_jobs(integer) IS
	'Claims up to max_jobs due jobs (SKIP LOCKED) and runs each in a subtransaction; returns how many ran or failed. Call it in a transaction of its own.';

-- Deletes done and cancelled jobs last changed before crm.job_retention
-- (failed ones stay, as dead messages do); the job runner calls it every
-- few minutes.  Returns how many were deleted.
CREATE FUNCTION crm.cleanup_jobs(older_than interval DEFAULT NULL) RETURNS bigint
LANGUAGE sql SET search_path = pg_catalog, pg_temp AS $$
	WITH d AS (
		DELETE FROM crm.job
		 WHERE status IN ('done', 'cancelled')
		   AND updated_at < now() - coalesce(older_than, current_setting('crm.job_retention')::interval)
		RETURNING 1)
	SELECT count(*) FROM d;
$$;

-- Each worker's state, from shared memory: database, rank within its role,
-- pid, state, role ('delivery': the outbox; 'jobs': the job runners).
DROP FUNCTION crm.worker_status();
CREATE FUNCTION crm.worker_status(OUT database name, OUT worker integer, OUT pid integer, OUT state text,
								  OUT role text)
	RETURNS SETOF record
	AS 'MODULE_PATHNAME', 'crm_worker_status' LANGUAGE C;

REVOKE EXECUTE ON FUNCTION crm.run_due_jobs(integer), crm.cleanup_jobs(interval), crm.worker_status() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION crm.run_due_jobs(integer), crm.cleanup_jobs(interval), crm.worker_status() TO crm_admin;
