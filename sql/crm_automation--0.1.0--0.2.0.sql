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
 *  - providers' TLS settings: "ca" and "client_cert" config keys, a client
 *    key kept in crm.provider_secret (client_key => of crm.add_provider and
 *    crm.update_provider), returned by the claim; file paths only from
 *    superusers and pg_read_server_files (trigger tls_files);
 *  - jobs run in batches by job runners of their own: crm.run_due_jobs(),
 *    crm.cleanup_jobs() and the index job_finished (done and cancelled
 *    jobs by age); crm.worker_status() says each worker's role;
 *  - business processes: the trace (crm.process_log), crm.document_processes,
 *    start by template name, the catalogue crm.activity_types, columns for
 *    the process-only activities (crm.absence, crm.calendar_event) and
 *    crm.resource_booking.process_instance_id;
 *  - open-channel messages (channel openline, openline providers, the
 *    process activity openline_message) and e-mail charsets (the claim's
 *    charset column);
 *  - the worker's claims start where its last one ended: outbox_due on
 *    (next_attempt_at, id), crm._claim_messages' p_after_at, p_after_id
 *    and due_at.
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
SET jit = off
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

-- The trace of business processes (crm.process_log), shown by
-- crm.item_automation; crm.document_processes.
-- The trace of business processes: a row per activity an instance ran (done
-- or failed) or paused at (waiting), with its place in the definition
-- (path, e.g. activities[2].then[0]), what it said (outputs) and its times.
-- crm.item_automation shows it next to the robot and trigger log.
CREATE TABLE crm.process_log (
	id			bigint GENERATED BY DEFAULT AS IDENTITY,
	instance_id bigint NOT NULL REFERENCES crm.process_instance ON DELETE CASCADE,
	document_type text NOT NULL,
	document_id bigint NOT NULL,
	path		text NOT NULL,
	type		text NOT NULL,
	name		text,
	status		text NOT NULL CHECK (status IN ('done', 'failed', 'waiting')),
	error		text,
	outputs		jsonb,
	started_at	timestamptz NOT NULL,
	finished_at timestamptz,
	-- its only index: an instance's rows in order (a document's history
	-- goes through its instances: crm.item_automation).  Each instance that
	-- auto-starts writes a row (bench/README.md, "Auto-start").
	PRIMARY KEY (instance_id, id)
);
SELECT pg_catalog.pg_extension_config_dump('crm.process_log', '');
SELECT pg_catalog.pg_extension_config_dump('crm.process_log_id_seq', '');
GRANT SELECT ON crm.process_log TO crm_user;
GRANT SELECT, INSERT, UPDATE, DELETE ON crm.process_log TO crm_admin;
GRANT USAGE ON SEQUENCE crm.process_log_id_seq TO crm_user;

CREATE OR REPLACE FUNCTION crm.item_automation(entity_type text, item_id bigint)
RETURNS TABLE (log_id bigint, kind text, name text, action text, stage text, status text,
			   error text, outputs jsonb, planned_at timestamptz, finished_at timestamptz)
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
	SELECT * FROM (
		SELECT l.id, l.kind, l.name, l.action, s.code, l.status, l.error,
			   coalesce(l.outputs, l.detail), l.planned_at, l.finished_at
		  FROM crm.robot_log l LEFT JOIN crm.stage s ON s.id = l.stage_id
		 WHERE l.entity_type = item_automation.entity_type AND l.entity_id = item_automation.item_id
		UNION ALL
		-- business processes' activities: "template / activity name or place"
		SELECT p.id, 'process', t.name || ' / ' || coalesce(p.name, p.path), p.type, NULL, p.status,
			   p.error, p.outputs, p.started_at, p.finished_at
		  FROM crm.process_instance i
		  JOIN crm.process_log p ON p.instance_id = i.id
		  JOIN crm.process_template t ON t.id = i.template_id
		 WHERE i.document_type = item_automation.entity_type AND i.document_id = item_automation.item_id
	) h (log_id, kind, name, action, stage, status, error, outputs, planned_at, finished_at)
	 ORDER BY h.planned_at, h.kind, h.log_id;
$$;

-- A document's business processes, newest first: what each is doing (its
-- status text, the activity it waits at) or how it ended.
CREATE FUNCTION crm.document_processes(document_type text, document_id bigint)
RETURNS TABLE (instance_id bigint, template text, status text, status_text text,
			   current_activity text, error text, started_at timestamptz, finished_at timestamptz)
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
	SELECT i.id, t.name, i.status, i.status_text, i.current_activity, i.error, i.created_at, i.finished_at
	  FROM crm.process_instance i
	  JOIN crm.process_template t ON t.id = i.template_id
	 WHERE i.document_type = document_processes.document_type
	   AND i.document_id = document_processes.document_id
	 ORDER BY i.created_at DESC, i.id DESC;
$$;
COMMENT ON FUNCTION crm.document_processes(text, bigint) IS
	'A document''s business-process instances with their status text, newest first';
REVOKE EXECUTE ON FUNCTION crm.document_processes(text, bigint) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION crm.document_processes(text, bigint) TO crm_user;
GRANT EXECUTE ON FUNCTION crm.document_processes(text, bigint) TO crm_admin;

-- Starting a process by its template's name.
-- Templates by name: names are unique per document type, so a name that
-- several document types use needs the type.
CREATE FUNCTION crm._process_template_id(p_name text, p_document_type text) RETURNS bigint
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
	v_ids bigint[];
	v_types text;
BEGIN
	IF p_name IS NULL THEN
		RAISE EXCEPTION 'template must not be null'
			USING ERRCODE = 'null_value_not_allowed',
				  HINT = 'Give a template''s id or name.';
	END IF;
	SELECT array_agg(t.id ORDER BY t.id), string_agg(t.document_type, ', ' ORDER BY t.document_type)
	  INTO v_ids, v_types
	  FROM crm.process_template t
	 WHERE t.name = p_name AND (p_document_type IS NULL OR t.document_type = p_document_type);
	IF v_ids IS NULL THEN
		RAISE EXCEPTION 'process template "%" does not exist%', p_name,
				CASE WHEN p_document_type IS NOT NULL THEN format(' for %s', p_document_type) ELSE '' END
			USING ERRCODE = 'undefined_object',
				  HINT = 'List templates with: SELECT id, document_type, name FROM crm.process_template;';
	END IF;
	IF cardinality(v_ids) > 1 THEN
		RAISE EXCEPTION 'process template name "%" is ambiguous', p_name
			USING ERRCODE = 'ambiguous_parameter',
				  DETAIL = format('Templates of that name exist for %s.', v_types),
				  HINT = format('Give the document type: crm.start_process(%L, document_type, document_id).', p_name);
	END IF;
	RETURN v_ids[1];
END
$$;

CREATE FUNCTION crm.start_process(template text, document_id bigint, parameters jsonb DEFAULT '{}')
RETURNS bigint
LANGUAGE sql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
	SELECT crm._start_process(crm._process_template_id(template, NULL), NULL, document_id,
							  coalesce(parameters, '{}'));
$$;
COMMENT ON FUNCTION crm.start_process(text, bigint, jsonb) IS
	'Starts a business process, its template given by name, for a document; returns the instance id';

CREATE FUNCTION crm.start_process(template text, document_type text, document_id bigint,
								  parameters jsonb DEFAULT '{}')
RETURNS bigint
LANGUAGE sql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
	SELECT crm._start_process(crm._process_template_id(template, document_type), document_type,
							  document_id, coalesce(parameters, '{}'));
$$;
COMMENT ON FUNCTION crm.start_process(text, text, bigint, jsonb) IS
	'Starts a business process, its template given by name, for a document of the given type; returns the instance id';
REVOKE EXECUTE ON FUNCTION crm._process_template_id(text, text), crm.start_process(text, bigint, jsonb),
	crm.start_process(text, text, bigint, jsonb) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION crm.start_process(text, bigint, jsonb), crm.start_process(text, text, bigint, jsonb) TO crm_user;
GRANT EXECUTE ON FUNCTION crm._process_template_id(text, text), crm.start_process(text, bigint, jsonb),
	crm.start_process(text, text, bigint, jsonb) TO crm_admin;

-- Bookings made by a business process say so, as other workspace rows do.
ALTER TABLE crm.resource_booking ADD COLUMN process_instance_id bigint;

-- Process activities calendar_event (a group calendar's group) and absence
-- (what the absence chart shows).
ALTER TABLE crm.calendar_event ADD COLUMN group_id bigint;
ALTER TABLE crm.absence ADD COLUMN name text, ADD COLUMN description text, ADD COLUMN location text;

-- The catalogue of activity types.
-- The catalogue of activity types: every robot action (most are also
-- process activities), the process-only activities of seed 000 and the flow
-- activities, with their parameters and outputs, the document types they
-- work on, where they run and what to use instead where they do not.
CREATE FUNCTION crm._activity_actions(
	OUT type text, OUT kind text, OUT family text, OUT description text, OUT parameters jsonb,
	OUT outputs text, OUT document_types text, OUT in_robots boolean, OUT in_processes boolean,
	OUT note text)
RETURNS SETOF record
	AS 'MODULE_PATHNAME', 'crm_activity_actions' LANGUAGE C STABLE;

CREATE VIEW crm.activity_types AS
	SELECT type, kind, family, description, parameters, outputs, document_types,
		   in_robots, in_processes, note
	  FROM crm._activity_actions()
	UNION ALL
	SELECT f.type, 'flow', 'flow', f.description, f.parameters::jsonb, NULL, 'all', false, true, f.note
	  FROM (VALUES
		('if', 'runs "then" or "else" by a condition',
		 '[{"name": "condition", "type": "condition", "required": true, "description": "a condition (text or JSON rules)"},'
		 ' {"name": "then", "type": "activities", "required": false, "description": "activities when true"},'
		 ' {"name": "else", "type": "activities", "required": false, "description": "activities when false"}]', NULL),
		('delay', 'pauses the instance; a timer resumes it', 
		 '[{"name": "for", "type": "interval", "required": true, "description": "how long"}]',
		 '"until" and working time are not supported yet'),
		('set_variable', 'sets a variable of the instance',
		 '[{"name": "variable", "type": "text", "required": true, "description": "a declared variable"},'
		 ' {"name": "value", "type": "value", "required": true, "description": "a value, template or =formula"}]', NULL),
		('set_field', 'sets one field of the document',
		 '[{"name": "field", "type": "field", "required": true, "description": "a column or custom field"},'
		 ' {"name": "value", "type": "value", "required": true, "description": "a value, template or =formula"}]', NULL),
		('set_status_text', 'sets the status text shown on the document',
		 '[{"name": "text", "type": "text", "required": true, "description": "status text (template)"}]', NULL),
		('openline_message', 'sends a message to the client''s open channel',
		 '[]', 'not supported yet: record it with create_activity and send it with webhook to the channel connector')
	  ) AS f (type, description, parameters, note);
COMMENT ON VIEW crm.activity_types IS
	'Activity types of business processes and robots: parameters, outputs, document types, where each runs';
REVOKE EXECUTE ON FUNCTION crm._activity_actions() FROM PUBLIC;
GRANT SELECT ON crm.activity_types TO crm_user;
GRANT EXECUTE ON FUNCTION crm._activity_actions() TO crm_user;
GRANT EXECUTE ON FUNCTION crm._activity_actions() TO crm_admin;

-- Providers' TLS settings: "ca" and "client_cert" in the config (PEM text,
-- or a file on the server), the client certificate's key kept with the
-- secret in crm.provider_secret (either may now be NULL), both checked when
-- saved and handed to the worker by the claim.
ALTER TABLE crm.provider_secret ALTER COLUMN secret DROP NOT NULL;
ALTER TABLE crm.provider_secret ADD COLUMN client_key text;

-- Refuses a file of the server as a provider's TLS setting (p_what: its
-- name) unless the role that logged in may name one: as for COPY FROM a
-- file, superusers and members of pg_read_server_files.  (The provider
-- functions are SECURITY DEFINER: current_user is the extension's owner
-- there, so the login role is asked.)
CREATE FUNCTION crm._check_file_role(p_what text) RETURNS void
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
BEGIN
	IF NOT (coalesce((SELECT r.rolsuper FROM pg_roles r WHERE r.rolname = session_user), false)
			OR pg_has_role(session_user, 'pg_read_server_files', 'USAGE')) THEN
		RAISE EXCEPTION 'only superusers and members of pg_read_server_files may give a file as provider %', p_what
			USING ERRCODE = 'insufficient_privilege',
				  DETAIL = 'The worker reads the file with the server''s rights.',
				  HINT = 'Give the PEM text itself (-----BEGIN ...).';
	END IF;
END
$$;

REVOKE EXECUTE ON FUNCTION crm._check_file_role(text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION crm._check_file_role(text) TO crm_admin;

-- Checks one TLS setting of a provider: "ca" or "client_cert" (config keys)
-- or its client key.  Each is PEM text (only its -----BEGIN/END----- blocks,
-- each of the right kind, in base64), or the absolute path of a file on the
-- server whose content is that, which only some roles may name
-- (crm._check_file_role).  The client key is never quoted in an error.
CREATE FUNCTION crm._validate_tls(p_key text, p_value text)
RETURNS void
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
	v_what		text := CASE p_key WHEN 'client_key' THEN 'client key' ELSE format('"%s"', p_key) END;
	v_labels	text[] := CASE p_key WHEN 'client_key' THEN ARRAY['PRIVATE KEY', 'RSA PRIVATE KEY', 'EC PRIVATE KEY']
									 ELSE ARRAY['CERTIFICATE'] END;
	v_text		text := p_value;
	v_size		bigint;
	v_isdir		boolean;
	v_block		text[];
	v_blocks	integer := 0;
	v_der		bytea;
	v_pem		constant text := '-----BEGIN ([A-Z0-9 ]*)-----([^-]*)-----END ([A-Z0-9 ]*)-----';
BEGIN
	IF p_value IS NULL THEN
		RETURN;
	END IF;
	IF octet_length(p_value) > 65536 THEN
		RAISE EXCEPTION 'provider % is too long', v_what
			USING ERRCODE = 'invalid_parameter_value',
				  DETAIL = format('It has %s bytes; at most 65536.', octet_length(p_value)),
				  HINT = 'Give the certificates it needs only, or the absolute path of a file on the server.';
	END IF;
	IF left(p_value, 1) = '/' THEN
		IF p_value ~ '[[:cntrl:]]' OR octet_length(p_value) > 1024 THEN
			RAISE EXCEPTION 'provider % is not a valid file path', v_what
				USING ERRCODE = 'invalid_parameter_value',
					  DETAIL = 'A path has at most 1024 bytes and no control character (CR, LF, ...).',
					  HINT = 'Give the absolute path of a PEM file the server can read, or the PEM text itself.';
		END IF;
		PERFORM crm._check_file_role(v_what);
		SELECT f.size, f.isdir INTO v_size, v_isdir FROM pg_stat_file(p_value, true) AS f;
		IF v_size IS NULL THEN
			RAISE EXCEPTION 'file "%" of provider % does not exist', p_value, v_what
				USING ERRCODE = 'undefined_file',
					  HINT = 'Give the absolute path of a PEM file the server can read.';
		END IF;
		IF v_isdir OR v_size > 1048576 THEN
			RAISE EXCEPTION 'file "%" of provider % is a directory or larger than 1 MB', p_value, v_what
				USING ERRCODE = 'invalid_parameter_value',
					  HINT = 'Give the absolute path of a PEM file the server can read.';
		END IF;
		BEGIN
			v_text := convert_from(pg_read_binary_file(p_value), 'UTF8');
		EXCEPTION WHEN character_not_in_repertoire OR untranslatable_character THEN
			v_text := E'\x01';	-- refused as not PEM below
		END;
		v_what := v_what || format(' (file "%s")', p_value);
	ELSIF position('-----BEGIN ' IN p_value) = 0 AND p_value !~ '[\n\r]' THEN
		RAISE EXCEPTION 'provider % is a relative path or not PEM', v_what
			USING ERRCODE = 'invalid_parameter_value',
				  DETAIL = CASE WHEN p_key = 'client_key' THEN 'It has no -----BEGIN line.'
								ELSE format('Got "%s".', left(p_value, 200)) END,
				  HINT = 'Give the PEM text (-----BEGIN ...) or an absolute path: the server resolves no relative one.';
	END IF;

	IF v_text ~ '[^\t\n\r -~]' THEN
		RAISE EXCEPTION 'provider % is not PEM text', v_what
			USING ERRCODE = 'invalid_parameter_value',
				  DETAIL = 'It holds a control character or a byte that is not ASCII.',
				  HINT = 'Give the -----BEGIN ...----- ... -----END ...----- blocks, in ASCII.';
	END IF;
	IF p_key = 'client_key' AND v_text ~ '(-----BEGIN ENCRYPTED PRIVATE KEY-----|Proc-Type:[ \t]*4,ENCRYPTED)' THEN
		RAISE EXCEPTION 'provider client key is encrypted'
			USING ERRCODE = 'invalid_parameter_value',
				  DETAIL = 'The worker has no passphrase to decrypt it.',
				  HINT = 'Give it decrypted (openssl pkey -in key.pem -out plain.pem): neither crm_admin nor crm_user can read it here.';
	END IF;
	FOR v_block IN SELECT m FROM regexp_matches(v_text, v_pem, 'g') AS m LOOP
		v_blocks := v_blocks + 1;
		IF v_block[1] <> v_block[3] OR NOT v_block[1] = ANY (v_labels) THEN
			RAISE EXCEPTION 'provider % holds a "%" block', v_what, v_block[1]
				USING ERRCODE = 'invalid_parameter_value',
					  DETAIL = format('Expected %s.', array_to_string(v_labels, ' or ')),
					  HINT = '"ca" and "client_cert" hold CERTIFICATE blocks, the client key one PRIVATE KEY block.';
		END IF;
		BEGIN
			v_der := decode(v_block[2], 'base64');
		EXCEPTION WHEN invalid_parameter_value THEN
			v_der := NULL;
		END;
		IF v_der IS NULL OR length(v_der) < 2 OR get_byte(v_der, 0) <> 48 THEN	-- a DER SEQUENCE
			RAISE EXCEPTION 'provider % has a % block that is not valid base64 DER', v_what, v_block[1]
				USING ERRCODE = 'invalid_parameter_value',
					  HINT = 'Give the block as openssl writes it.';
		END IF;
	END LOOP;
	IF v_blocks = 0 OR v_blocks <> (SELECT count(*) FROM regexp_matches(v_text, '-----BEGIN ', 'g'))
	   OR regexp_replace(v_text, v_pem, '', 'g') ~ '\S' THEN
		RAISE EXCEPTION 'provider % is not PEM', v_what
			USING ERRCODE = 'invalid_parameter_value',
				  DETAIL = 'Only -----BEGIN ...----- ... -----END ...----- blocks and white space are allowed.',
				  HINT = 'Give the blocks as openssl writes them, without the text of "openssl x509 -text".';
	END IF;
	IF p_key = 'client_key' AND v_blocks > 1 THEN
		RAISE EXCEPTION 'provider client key holds % keys', v_blocks
			USING ERRCODE = 'invalid_parameter_value',
				  HINT = 'Give the private key of the client certificate only.';
	END IF;
END
$$;

REVOKE EXECUTE ON FUNCTION crm._validate_tls(text, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION crm._validate_tls(text, text) TO crm_admin;

-- A client certificate and its key go together: both or neither.
CREATE FUNCTION crm._validate_client_pair(p_config jsonb, p_has_key boolean)
RETURNS void
LANGUAGE plpgsql IMMUTABLE SET search_path = pg_catalog, pg_temp AS $$
BEGIN
	IF p_config ? 'client_cert' AND NOT p_has_key THEN
		RAISE EXCEPTION 'a provider with a client certificate needs its client key'
			USING ERRCODE = 'invalid_parameter_value',
				  DETAIL = 'The config has "client_cert" and the provider no client key.',
				  HINT = 'Give it with client_key => ... (PEM, or a file path), or remove "client_cert" from the config.';
	ELSIF p_has_key AND NOT p_config ? 'client_cert' THEN
		RAISE EXCEPTION 'a provider with a client key needs its client certificate'
			USING ERRCODE = 'invalid_parameter_value',
				  DETAIL = 'The provider has a client key and its config no "client_cert".',
				  HINT = 'Add "client_cert" to the config, or remove the key with client_key => ''''.';
	END IF;
END
$$;

REVOKE EXECUTE ON FUNCTION crm._validate_client_pair(jsonb, boolean) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION crm._validate_client_pair(jsonb, boolean) TO crm_admin;

-- Checks a provider definition; raises a clear error or returns nothing.
CREATE OR REPLACE FUNCTION crm._validate_provider(p_channel text, p_name text, p_config jsonb, p_secret text)
RETURNS void
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
	v_allowed	text[];
	v_key		text;
	v_url		text;
	v_val		jsonb;
BEGIN
	IF p_channel IS NULL THEN
		RAISE EXCEPTION 'provider channel must not be null'
			USING ERRCODE = 'null_value_not_allowed',
				  HINT = 'Channels are webhook, email, sms and robocall.';
	END IF;
	IF p_channel NOT IN ('webhook', 'email', 'sms', 'robocall') THEN
		RAISE EXCEPTION 'unknown provider channel "%"', p_channel
			USING ERRCODE = 'invalid_parameter_value',
				  HINT = 'Channels are webhook, email, sms and robocall.';
	END IF;
	IF p_name IS NULL THEN
		RAISE EXCEPTION 'provider name must not be null'
			USING ERRCODE = 'null_value_not_allowed',
				  HINT = 'Robots choose a provider by its name, e.g. {"provider": "erp"}.';
	END IF;
	IF btrim(p_name) = '' THEN
		RAISE EXCEPTION 'provider name must not be empty'
			USING ERRCODE = 'invalid_parameter_value',
				  HINT = 'Robots choose a provider by its name, e.g. {"provider": "erp"}.';
	END IF;
	IF p_config IS NULL OR jsonb_typeof(p_config) <> 'object' THEN
		RAISE EXCEPTION 'provider config must be a JSON object'
			USING ERRCODE = 'invalid_parameter_value',
				  DETAIL = format('Got %s.', coalesce(jsonb_typeof(p_config), 'NULL')),
				  HINT = 'For example {"url": "https://erp.example.com/hook"}.';
	END IF;

	v_allowed := CASE p_channel
		WHEN 'webhook' THEN ARRAY['url', 'method', 'headers', 'ca', 'client_cert']
		WHEN 'email' THEN ARRAY['url', 'username', 'from', 'tls', 'ca', 'client_cert']
		ELSE ARRAY['url', 'method', 'headers', 'body', 'format', 'ca', 'client_cert']
	END;
	FOR v_key IN SELECT jsonb_object_keys(p_config) LOOP
		IF NOT v_key = ANY (v_allowed) THEN
			RAISE EXCEPTION 'unknown key "%" in % provider config', v_key, p_channel
				USING ERRCODE = 'invalid_parameter_value',
					  HINT = format('Allowed keys: %s.', array_to_string(v_allowed, ', '));
		END IF;
		IF v_key <> 'headers' AND jsonb_typeof(p_config -> v_key) <> 'string' THEN
			RAISE EXCEPTION 'key "%" of % provider config must be a string', v_key, p_channel
				USING ERRCODE = 'invalid_parameter_value',
					  DETAIL = format('Got %s.', p_config -> v_key);
		END IF;
	END LOOP;

	v_url := p_config ->> 'url';
	IF v_url IS NULL AND p_channel <> 'webhook' THEN
		RAISE EXCEPTION '% provider config needs a "url"', p_channel
			USING ERRCODE = 'invalid_parameter_value',
				  HINT = CASE WHEN p_channel = 'email'
							  THEN 'For example {"url": "smtps://smtp.example.com:465", "username": "crm", "from": "crm@example.com"}.'
							  ELSE 'For example {"url": "https://sms.example.com/send", "body": "{\"to\": \"{to}\", \"text\": \"{text}\"}"}.' END;
	END IF;
	IF v_url IS NOT NULL THEN
		IF p_channel = 'email' AND v_url !~* '^smtps?://[^/\s]+' THEN
			RAISE EXCEPTION 'e-mail provider url "%" is not an smtp:// or smtps:// URL', v_url
				USING ERRCODE = 'invalid_parameter_value',
					  HINT = 'For example smtps://smtp.example.com:465, or smtp://smtp.example.com:587 (STARTTLS).';
		ELSIF p_channel <> 'email' AND v_url !~* '^https?://[^/\s]+' THEN
			RAISE EXCEPTION '% provider url "%" is not an http:// or https:// URL', p_channel, v_url
				USING ERRCODE = 'invalid_parameter_value',
					  HINT = 'The worker speaks only HTTP(S) to webhooks and SMS or call providers.';
		END IF;
	END IF;
	IF p_config ? 'method' AND upper(p_config ->> 'method') NOT IN ('POST', 'PUT', 'PATCH', 'GET', 'DELETE') THEN
		RAISE EXCEPTION 'unsupported HTTP method "%"', p_config ->> 'method'
			USING ERRCODE = 'invalid_parameter_value',
				  HINT = 'Use POST, PUT, PATCH, GET or DELETE.';
	END IF;
	IF p_config ? 'format' AND p_config ->> 'format' NOT IN ('json', 'form', 'text') THEN
		RAISE EXCEPTION 'unknown body format "%"', p_config ->> 'format'
			USING ERRCODE = 'invalid_parameter_value',
				  HINT = 'Use json, form or text.';
	END IF;
	IF p_config ? 'tls' AND p_config ->> 'tls' NOT IN ('try', 'required', 'none') THEN
		RAISE EXCEPTION 'unknown tls mode "%"', p_config ->> 'tls'
			USING ERRCODE = 'invalid_parameter_value',
				  HINT = 'Use try (STARTTLS when offered), required or none.';
	END IF;
	IF p_config ? 'from' AND p_config ->> 'from' !~ '^[^@\s]+@[^@\s]+$' THEN
		RAISE EXCEPTION 'sender "%" is not an e-mail address', p_config ->> 'from'
			USING ERRCODE = 'invalid_parameter_value',
				  HINT = 'Give a bare address, e.g. "crm@example.com".';
	END IF;
	IF p_config ? 'headers' THEN
		IF jsonb_typeof(p_config -> 'headers') <> 'object' THEN
			RAISE EXCEPTION 'provider headers must be a JSON object of strings'
				USING ERRCODE = 'invalid_parameter_value',
					  DETAIL = format('Got %s.', p_config -> 'headers'),
					  HINT = 'For example {"headers": {"Authorization": "Bearer {secret}"}}.';
		END IF;
		FOR v_key, v_val IN SELECT key, value FROM jsonb_each(p_config -> 'headers') LOOP
			IF jsonb_typeof(v_val) <> 'string' THEN
				RAISE EXCEPTION 'header "%" must be a string', v_key
					USING ERRCODE = 'invalid_parameter_value',
						  DETAIL = format('Got %s.', v_val);
			END IF;
			IF v_key !~ '^[A-Za-z0-9!#$%&''*+.^_`|~-]+$' OR (v_val #>> '{}') ~ '[\r\n]' THEN
				RAISE EXCEPTION 'header "%" is not a valid HTTP header', v_key
					USING ERRCODE = 'invalid_parameter_value',
						  DETAIL = 'Header names are tokens; values may not contain CR or LF.';
			END IF;
		END LOOP;
	END IF;
	PERFORM crm._validate_tls('ca', p_config ->> 'ca');
	PERFORM crm._validate_tls('client_cert', p_config ->> 'client_cert');
	IF p_channel = 'webhook' AND p_secret IS NOT NULL THEN
		IF p_secret !~ '^whsec_[A-Za-z0-9+/]+={0,2}$' THEN
			RAISE EXCEPTION 'webhook secret must be "whsec_" followed by a base64 key'
				USING ERRCODE = 'invalid_parameter_value',
					  HINT = 'Generate one with: SELECT ''whsec_'' || encode(gen_random_bytes(24), ''base64'') (pgcrypto), or any 24-64 random bytes in base64.';
		END IF;
		BEGIN
			PERFORM decode(substr(p_secret, 7), 'base64');
		EXCEPTION WHEN OTHERS THEN
			RAISE EXCEPTION 'webhook secret must be "whsec_" followed by a base64 key'
				USING ERRCODE = 'invalid_parameter_value',
					  DETAIL = 'The part after "whsec_" does not decode as base64.';
		END;
	END IF;
END
$$;

DROP FUNCTION crm.add_provider(text, text, jsonb, text, boolean);

CREATE FUNCTION crm.add_provider(channel text, name text, config jsonb DEFAULT '{}',
								 secret text DEFAULT NULL, is_default boolean DEFAULT NULL,
								 client_key text DEFAULT NULL)
RETURNS bigint
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
	v_id		bigint;
	v_default	boolean := is_default;
	v_key		text := nullif(client_key, '');
BEGIN
	PERFORM crm._validate_provider(channel, name, config, secret);
	PERFORM crm._validate_tls('client_key', v_key);
	PERFORM crm._validate_client_pair(config, v_key IS NOT NULL);
	IF EXISTS (SELECT FROM crm.provider p WHERE p.channel = add_provider.channel AND p.name = add_provider.name) THEN
		RAISE EXCEPTION '% provider "%" already exists', channel, name
			USING ERRCODE = 'duplicate_object',
				  HINT = 'Change it with crm.update_provider.';
	END IF;
	-- The first provider of a channel is its default.
	IF v_default IS NULL THEN
		v_default := NOT EXISTS (SELECT FROM crm.provider p
								  WHERE p.channel = add_provider.channel AND p.is_default);
	ELSIF v_default THEN
		UPDATE crm.provider p SET is_default = false
		 WHERE p.channel = add_provider.channel AND p.is_default;
	END IF;
	INSERT INTO crm.provider (channel, name, config, is_default)
	VALUES (channel, name, config, v_default)
	RETURNING id INTO v_id;
	IF secret IS NOT NULL OR v_key IS NOT NULL THEN
		INSERT INTO crm.provider_secret (provider_id, secret, client_key) VALUES (v_id, secret, v_key);
	END IF;
	RETURN v_id;
END
$$;
COMMENT ON FUNCTION crm.add_provider(text, text, jsonb, text, boolean, text) IS
	'Adds a webhook, email, sms or robocall provider; the first of a channel becomes its default';

REVOKE EXECUTE ON FUNCTION crm.add_provider(text, text, jsonb, text, boolean, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION crm.add_provider(text, text, jsonb, text, boolean, text) TO crm_admin;


DROP FUNCTION crm.update_provider(bigint, jsonb, text, boolean, boolean, text);

-- NULL arguments leave a setting as it is; secret => '' removes the secret,
-- client_key => '' the client key.
CREATE FUNCTION crm.update_provider(provider_id bigint, config jsonb DEFAULT NULL,
									secret text DEFAULT NULL, is_default boolean DEFAULT NULL,
									active boolean DEFAULT NULL, name text DEFAULT NULL,
									client_key text DEFAULT NULL)
RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
	v	crm.provider := crm._provider(provider_id);
BEGIN
	PERFORM crm._validate_provider(v.channel, coalesce(name, v.name), coalesce(config, v.config),
								   nullif(secret, ''));
	PERFORM crm._validate_tls('client_key', nullif(client_key, ''));
	PERFORM crm._validate_client_pair(coalesce(config, v.config),
		CASE WHEN client_key IS NULL
			 THEN EXISTS (SELECT FROM crm.provider_secret s
						   WHERE s.provider_id = v.id AND s.client_key IS NOT NULL)
			 ELSE client_key <> '' END);
	IF is_default THEN
		UPDATE crm.provider p SET is_default = false
		 WHERE p.channel = v.channel AND p.is_default AND p.id <> v.id;
	END IF;
	UPDATE crm.provider p
	   SET config = coalesce(update_provider.config, p.config),
		   name = coalesce(update_provider.name, p.name),
		   is_default = coalesce(update_provider.is_default, p.is_default),
		   active = coalesce(update_provider.active, p.active),
		   disabled_reason = CASE WHEN update_provider.active THEN NULL ELSE p.disabled_reason END
	 WHERE p.id = v.id;
	-- '' removes, NULL keeps, a value replaces; a row left empty goes
	UPDATE crm.provider_secret s
	   SET secret = CASE WHEN update_provider.secret = '' THEN NULL ELSE s.secret END,
		   client_key = CASE WHEN update_provider.client_key = '' THEN NULL ELSE s.client_key END
	 WHERE s.provider_id = v.id AND (update_provider.secret = '' OR update_provider.client_key = '');
	IF nullif(secret, '') IS NOT NULL OR nullif(client_key, '') IS NOT NULL THEN
		INSERT INTO crm.provider_secret AS s (provider_id, secret, client_key)
		VALUES (v.id, nullif(secret, ''), nullif(client_key, ''))
		ON CONFLICT ON CONSTRAINT provider_secret_pkey
		DO UPDATE SET secret = coalesce(excluded.secret, s.secret),
					  client_key = coalesce(excluded.client_key, s.client_key);
	END IF;
	DELETE FROM crm.provider_secret s
	 WHERE s.provider_id = v.id AND s.secret IS NULL AND s.client_key IS NULL;
END
$$;

REVOKE EXECUTE ON FUNCTION crm.update_provider(bigint, jsonb, text, boolean, boolean, text, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION crm.update_provider(bigint, jsonb, text, boolean, boolean, text, text) TO crm_admin;


-- The claim hands each message its provider's TLS settings.
DROP FUNCTION crm._claim_messages(integer, interval, boolean, text[]);

CREATE FUNCTION crm._claim_messages(p_limit integer, p_lease interval, p_expired boolean DEFAULT true,
									p_busy text[] DEFAULT '{}')
RETURNS TABLE (id bigint, channel text, attempts integer, idempotency_key text,
			   provider_id bigint, url text, method text, headers text[], body text,
			   secret text, username text, mail_from text, rcpt text[], subject text,
			   html boolean, tls text, attachments text[], error text,
			   ca text, client_cert text, client_key text)
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
-- called many times a second: plan it once.  A generic plan does not know
-- the limit and, with many messages due, would rather read the whole table
-- and sort it: the claim reads outbox_due in order, whatever the statistics.
SET plan_cache_mode = force_generic_plan
SET enable_seqscan = off
SET jit = off
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
			   coalesce(p.config, '{}') AS cfg, s.secret AS p_secret, s.client_key AS p_client_key,
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
		   END,
		   r.cfg ->> 'ca', r.cfg ->> 'client_cert', r.p_client_key
	  FROM rendered r;
END
$$;

REVOKE EXECUTE ON FUNCTION crm._claim_messages(integer, interval, boolean, text[]) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION crm._claim_messages(integer, interval, boolean, text[]) TO crm_admin;


-- A provider pointed elsewhere keeps its client key (it never leaves the server).

CREATE OR REPLACE FUNCTION crm._provider_secret_follows_url() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
	IF OLD.channel IS DISTINCT FROM NEW.channel
	   OR (NEW.channel IN ('email', 'sms', 'robocall')
		   AND crm._url_endpoint(OLD.config->>'url') IS DISTINCT FROM crm._url_endpoint(NEW.config->>'url')) THEN
		-- the client key stays: it signs the TLS handshake, never leaves
		UPDATE crm.provider_secret s SET secret = NULL
		 WHERE s.provider_id = NEW.id AND s.secret IS NOT NULL;
		IF FOUND THEN
			DELETE FROM crm.provider_secret s
			 WHERE s.provider_id = NEW.id AND s.client_key IS NULL;
			RAISE NOTICE 'the secret of % provider "%" was removed: it now points to another endpoint', NEW.channel, NEW.name
				USING HINT = 'Give it again with crm.update_provider(id, secret => ...).';
		END IF;
	END IF;
	RETURN NULL;
END
$$;

-- A file path in a provider's "ca" or "client_cert" is read by the worker
-- with the server's rights: written by a direct INSERT or UPDATE too, it
-- needs the role crm._validate_tls asks of crm.add_provider's callers
-- (crm._check_file_role).
CREATE FUNCTION crm._provider_tls_files() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
	v_key	text;
BEGIN
	FOREACH v_key IN ARRAY ARRAY['ca', 'client_cert'] LOOP
		IF left(NEW.config ->> v_key, 1) = '/'
		   AND (TG_OP = 'INSERT' OR (NEW.config ->> v_key) IS DISTINCT FROM (OLD.config ->> v_key)) THEN
			PERFORM crm._check_file_role(format('"%s"', v_key));
		END IF;
	END LOOP;
	RETURN NEW;
END
$$;
CREATE TRIGGER tls_files BEFORE INSERT OR UPDATE OF config ON crm.provider
	FOR EACH ROW EXECUTE FUNCTION crm._provider_tls_files();

REVOKE EXECUTE ON FUNCTION crm._provider_tls_files() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION crm._provider_tls_files() TO crm_admin;

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
	SET search_path = pg_catalog, pg_temp
-- Plans kept by the session, made from the statistics of the moment (often
-- an empty crm.job): they read the partial index of due jobs in order and
-- jobs by primary key however the table grew (automation_plans.sh).
SET enable_seqscan = off
SET enable_bitmapscan = off
SET enable_sort = off
SET jit = off;
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

-- ---------------------------------------------------------------------------
-- Issue 19: the automation's cost does not grow with its tables.  The wait
-- triggers' kept plans stay on the index of an item's pending jobs however
-- crm.job grew since they were made (enable_seqscan = off).
-- ---------------------------------------------------------------------------
CREATE OR REPLACE FUNCTION crm._end_waits_on_activity() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
SET enable_seqscan = off SET jit = off AS $$
BEGIN
	UPDATE crm.job j
	   SET due_at = least(j.due_at, now()), updated_at = now(),
		   context = j.context || jsonb_build_object('ended_by_activity', NEW.id)
	 WHERE j.status = 'pending' AND j.kind = 'wait'
	   AND j.entity_type = NEW.entity_type AND j.entity_id = NEW.entity_id
	   AND coalesce((SELECT (r.params ->> 'until_client_activity')::boolean
					   FROM crm.robot r WHERE r.id = j.robot_id), false);
	RETURN NULL;
END
$$;
CREATE OR REPLACE FUNCTION crm._end_waits_on_message() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
SET enable_seqscan = off SET jit = off AS $$
BEGIN
	UPDATE crm.job j
	   SET due_at = least(j.due_at, now()), updated_at = now(),
		   context = j.context || jsonb_build_object('message_id', NEW.id, 'message_status', NEW.status)
	 WHERE j.status = 'pending' AND j.kind = 'wait'
	   AND j.entity_type = NEW.entity_type AND j.entity_id = NEW.entity_id
	   AND j.robot_id = NEW.robot_id;
	RETURN NULL;
END
$$;

-- The job runner's statements keep to the partial index of due jobs and to
-- primary keys however crm.job grew since they were planned (issue 19).
ALTER FUNCTION crm._execute_job(bigint) SET enable_seqscan = off;
ALTER FUNCTION crm._execute_job(bigint) SET jit = off;
CREATE OR REPLACE FUNCTION crm.run_next_job() RETURNS bigint
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp
-- Plans kept by the session, made from the statistics of the moment (often
-- an empty crm.job): they read the partial index of due jobs in order and
-- jobs by primary key however the table grew (automation_plans.sh).
SET enable_seqscan = off
SET enable_bitmapscan = off
SET enable_sort = off
SET jit = off
AS $$
DECLARE
	v_id bigint;
	-- A parameter, not clock_timestamp() in the query: a volatile call
	-- cannot bound the index scan, which would then read every job not yet
	-- due.  This way a call costs the same with none or millions of them.
	v_now timestamptz := clock_timestamp();
BEGIN
	SELECT id INTO v_id FROM crm.job
	 WHERE status = 'pending' AND due_at <= v_now
	 ORDER BY due_at
	 LIMIT 1
	 FOR UPDATE SKIP LOCKED;
	IF v_id IS NULL THEN
		RETURN NULL;
	END IF;
	BEGIN
		PERFORM crm._execute_job(v_id);
		-- (a recheck that implies no partial index's predicate: by primary key)
		UPDATE crm.job SET status = 'done', attempts = attempts + 1, updated_at = now()
		 WHERE id = v_id AND status IS NOT DISTINCT FROM 'pending';
	EXCEPTION WHEN OTHERS THEN
		-- The job's effects are rolled back with the block; its failure is kept.
		UPDATE crm.job SET status = 'failed', attempts = attempts + 1,
						   last_error = SQLERRM, updated_at = now()
		 WHERE id = v_id;
		RAISE LOG 'crm_automation: job % failed: %', v_id, SQLERRM;
	END;
	RETURN v_id;
END
$$;

-- ---------------------------------------------------------------------------
-- Business processes that pause: create_task with "wait", robocall with
-- wait_for_result and the wait action resume their instance (the
-- process_timer job made due by the triggers below); a delay "until" a
-- date or in working time; what a waiting instance waits for.
-- ---------------------------------------------------------------------------

CREATE OR REPLACE FUNCTION crm._end_waits_on_activity() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
SET enable_seqscan = off SET jit = off AS $$
BEGIN
	UPDATE crm.job j
	   SET due_at = least(j.due_at, now()), updated_at = now(),
		   context = j.context || jsonb_build_object('ended_by_activity', NEW.id)
	 WHERE j.status = 'pending' AND j.kind = 'wait'
	   AND j.entity_type = NEW.entity_type AND j.entity_id = NEW.entity_id
	   AND coalesce((SELECT (r.params ->> 'until_client_activity')::boolean
					   FROM crm.robot r WHERE r.id = j.robot_id), false);
	UPDATE crm.job j
	   SET due_at = least(j.due_at, now()), updated_at = now(),
		   context = j.context || jsonb_build_object('ended_by_activity', NEW.id)
	 WHERE j.status = 'pending' AND j.kind = 'process_timer'
	   AND j.entity_type = NEW.entity_type AND j.entity_id = NEW.entity_id
	   AND j.context @> '{"until_client_activity": true}';
	RETURN NULL;
END
$$;

-- A business process paused by a robocall with wait_for_result (a
-- process_timer job whose context names the message, processes.c) goes on
-- when the worker records the call sent or dead.
CREATE FUNCTION crm._resume_on_message() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
SET enable_seqscan = off SET jit = off AS $$
BEGIN
	UPDATE crm.job j
	   SET due_at = least(j.due_at, now()), updated_at = now(),
		   context = j.context || jsonb_build_object('message_status', NEW.status)
	 WHERE j.status = 'pending' AND j.kind = 'process_timer'
	   AND j.entity_type = NEW.entity_type AND j.entity_id = NEW.entity_id
	   AND j.process_instance_id = NEW.process_instance_id
	   AND j.context @> jsonb_build_object('message_id', NEW.id);
	RETURN NULL;
END
$$;
CREATE TRIGGER resume_processes AFTER UPDATE OF status ON crm.outbox
	FOR EACH ROW WHEN (NEW.status IN ('sent', 'dead') AND NEW.channel = 'robocall'
					   AND NEW.process_instance_id IS NOT NULL
					   AND NEW.payload @> '{"wait_for_result": true}')
	EXECUTE FUNCTION crm._resume_on_message();

-- A business process paused by create_task with "wait" goes on when its
-- task is completed, and fails there when the task is deleted: the
-- instance's job (far ahead until then) falls due now, and the job runner
-- resumes it in a transaction of its own, not in the user's UPDATE.
CREATE FUNCTION crm._resume_on_task() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
SET enable_seqscan = off SET jit = off AS $$
DECLARE
	t crm.task := CASE WHEN TG_OP = 'DELETE' THEN OLD ELSE NEW END;
	v_type text;
	v_id bigint;
BEGIN
	-- the instance's document first: the UPDATE then probes the index of
	-- the document's pending jobs (job_item), whatever the statistics
	SELECT i.document_type, i.document_id INTO v_type, v_id
	  FROM crm.process_instance i WHERE i.id = t.process_instance_id;
	IF NOT FOUND THEN
		RETURN NULL;
	END IF;
	UPDATE crm.job j
	   SET due_at = least(j.due_at, now()), updated_at = now(),
		   context = j.context || jsonb_build_object('task_status',
						CASE WHEN TG_OP = 'DELETE' THEN 'deleted' ELSE t.status END)
	 WHERE j.status = 'pending' AND j.kind = 'process_timer'
	   AND j.entity_type = v_type AND j.entity_id = v_id
	   AND j.process_instance_id = t.process_instance_id
	   AND j.context @> jsonb_build_object('task_id', t.id);
	RETURN NULL;
END
$$;
CREATE TRIGGER resume_processes AFTER UPDATE OF status ON crm.task
	FOR EACH ROW WHEN (NEW.process_instance_id IS NOT NULL AND NEW.status = 'completed'
					   AND OLD.status <> 'completed')
	EXECUTE FUNCTION crm._resume_on_task();
CREATE TRIGGER resume_processes_on_delete AFTER DELETE ON crm.task
	FOR EACH ROW WHEN (OLD.process_instance_id IS NOT NULL)
	EXECUTE FUNCTION crm._resume_on_task();

REVOKE EXECUTE ON FUNCTION crm._resume_on_message(), crm._resume_on_task() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION crm._resume_on_message(), crm._resume_on_task() TO crm_admin;

CREATE OR REPLACE VIEW crm.process_instances AS
	SELECT i.id, i.template_id, t.name AS template, i.document_type, i.document_id,
		   i.status, i.status_text, i.current_activity, i.error,
		   i.created_at AS started_at, i.updated_at, i.finished_at,
		   CASE WHEN i.status = 'waiting' THEN i.state ->> 'waiting_for' END AS waiting_for
	  FROM crm.process_instance i
	  JOIN crm.process_template t ON t.id = i.template_id;
COMMENT ON VIEW crm.process_instances IS
	'Business-process instances with their template, status, status text, current activity and what a waiting one waits for';

DROP FUNCTION crm.document_processes(text, bigint);
CREATE FUNCTION crm.document_processes(document_type text, document_id bigint)
RETURNS TABLE (instance_id bigint, template text, status text, status_text text,
			   current_activity text, waiting_for text, error text, started_at timestamptz,
			   finished_at timestamptz)
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
	SELECT i.id, t.name, i.status, i.status_text, i.current_activity,
		   CASE WHEN i.status = 'waiting' THEN i.state ->> 'waiting_for' END,
		   i.error, i.created_at, i.finished_at
	  FROM crm.process_instance i
	  JOIN crm.process_template t ON t.id = i.template_id
	 WHERE i.document_type = document_processes.document_type
	   AND i.document_id = document_processes.document_id
	 ORDER BY i.created_at DESC, i.id DESC;
$$;
COMMENT ON FUNCTION crm.document_processes(text, bigint) IS
	'A document''s business-process instances with their status text, newest first';
REVOKE EXECUTE ON FUNCTION crm.document_processes(text, bigint) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION crm.document_processes(text, bigint) TO crm_user;
GRANT EXECUTE ON FUNCTION crm.document_processes(text, bigint) TO crm_admin;

CREATE OR REPLACE VIEW crm.activity_types AS
	SELECT type, kind, family, description, parameters, outputs, document_types,
		   in_robots, in_processes, note
	  FROM crm._activity_actions()
	UNION ALL
	SELECT f.type, 'flow', 'flow', f.description, f.parameters::jsonb, NULL, 'all', false, true, f.note
	  FROM (VALUES
		('if', 'runs "then" or "else" by a condition',
		 '[{"name": "condition", "type": "condition", "required": true, "description": "a condition (text or JSON rules)"},'
		 ' {"name": "then", "type": "activities", "required": false, "description": "activities when true"},'
		 ' {"name": "else", "type": "activities", "required": false, "description": "activities when false"}]', NULL),
		('delay', 'pauses the instance; a timer resumes it',
		 '[{"name": "for", "type": "interval", "required": false, "description": "how long (or until)"},'
		 ' {"name": "until", "type": "text", "required": false, "description": "a timestamp, or a template or formula giving one (or for)"},'
		 ' {"name": "work_time", "type": "boolean", "required": false, "description": "count \"for\" in working time"}]',
		 NULL),
		('set_variable', 'sets a variable of the instance',
		 '[{"name": "variable", "type": "text", "required": true, "description": "a declared variable"},'
		 ' {"name": "value", "type": "value", "required": true, "description": "a value, template or =formula"}]', NULL),
		('set_field', 'sets one field of the document',
		 '[{"name": "field", "type": "field", "required": true, "description": "a column or custom field"},'
		 ' {"name": "value", "type": "value", "required": true, "description": "a value, template or =formula"}]', NULL),
		('set_status_text', 'sets the status text shown on the document',
		 '[{"name": "text", "type": "text", "required": true, "description": "status text (template)"}]', NULL),
		('openline_message', 'sends a message to the client''s open channel',
		 '[]', 'not supported yet: record it with create_activity and send it with webhook to the channel connector')
	  ) AS f (type, description, parameters, note);
COMMENT ON VIEW crm.activity_types IS
	'Activity types of business processes and robots: parameters, outputs, document types, where each runs';

-- ---------------------------------------------------------------------------
-- Auto-start of business processes (issue 14, item 3): auto_start is stored
-- and honoured; crm.record_incoming records incoming calls and e-mails.
-- ---------------------------------------------------------------------------

CREATE OR REPLACE FUNCTION crm._check_auto_start(p_auto_start text[]) RETURNS void
LANGUAGE plpgsql IMMUTABLE SET search_path = pg_catalog, pg_temp AS $$
BEGIN
	IF p_auto_start IS NOT NULL AND NOT p_auto_start <@ ARRAY['add', 'modify'] THEN
		RAISE EXCEPTION 'invalid auto_start %', p_auto_start
			USING ERRCODE = 'invalid_parameter_value',
				  HINT = 'auto_start holds "add" and/or "modify".';
	END IF;
END
$$;

-- A template that auto-starts gets no parameters: each one it declares as
-- required needs a default.
CREATE FUNCTION crm._check_auto_start_parameters(p_auto_start text[], p_definition jsonb) RETURNS void
LANGUAGE plpgsql IMMUTABLE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
	v_name text;
BEGIN
	IF cardinality(p_auto_start) > 0 AND jsonb_typeof(p_definition -> 'parameters') = 'object' THEN
		SELECT p.key INTO v_name
		  FROM jsonb_each(p_definition -> 'parameters') p
		 WHERE p.value ->> 'required' = 'true' AND coalesce(p.value -> 'default', 'null') = 'null'
		 ORDER BY p.key LIMIT 1;
		IF v_name IS NOT NULL THEN
			RAISE EXCEPTION 'a template that auto-starts cannot require parameter "%"', v_name
				USING ERRCODE = 'invalid_parameter_value',
					  DETAIL = format('auto_start %s starts it without parameters.', p_auto_start),
					  HINT = 'Give the parameter a default, or start the template with crm.start_process.';
		END IF;
	END IF;
END
$$;

-- The stored form of auto_start: each value once, in order.
CREATE FUNCTION crm._auto_start(p_auto_start text[]) RETURNS text[]
LANGUAGE sql IMMUTABLE SET search_path = pg_catalog, pg_temp AS $$
	SELECT coalesce(array_agg(DISTINCT a ORDER BY a), '{}') FROM unnest(p_auto_start) a;
$$;

CREATE OR REPLACE FUNCTION crm.add_process_template(document_type text, name text, definition jsonb,
										 auto_start text[] DEFAULT '{}')
RETURNS bigint
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
	v_type text := crm._process_document_type(add_process_template.document_type);
	v_id bigint;
BEGIN
	PERFORM crm._check_process_name(v_type, add_process_template.name, NULL);
	PERFORM crm._check_auto_start(add_process_template.auto_start);
	IF add_process_template.definition IS NULL THEN
		RAISE EXCEPTION 'a process template needs a definition'
			USING ERRCODE = 'null_value_not_allowed',
				  HINT = 'For example {"activities": [{"type": "add_comment", "text": "Started"}]}.';
	END IF;
	PERFORM crm._validate_process_template(v_type, add_process_template.definition);
	PERFORM crm._check_auto_start_parameters(add_process_template.auto_start, add_process_template.definition);
	INSERT INTO crm.process_template (document_type, name, definition, auto_start, created_by)
	VALUES (v_type, add_process_template.name, add_process_template.definition,
			crm._auto_start(add_process_template.auto_start),
			(SELECT u.id FROM crm.user u WHERE u.id = nullif(current_setting('crm.user_id')::bigint, 0)))
	RETURNING id INTO v_id;
	RETURN v_id;
END
$$;

CREATE OR REPLACE FUNCTION crm.update_process_template(template_id bigint, name text DEFAULT NULL,
											definition jsonb DEFAULT NULL,
											auto_start text[] DEFAULT NULL,
											active boolean DEFAULT NULL)
RETURNS void
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
	t crm.process_template := crm._process_template(update_process_template.template_id);
BEGIN
	IF update_process_template.name IS NOT NULL THEN
		PERFORM crm._check_process_name(t.document_type, update_process_template.name, t.id);
	END IF;
	PERFORM crm._check_auto_start(update_process_template.auto_start);
	IF update_process_template.definition IS NOT NULL THEN
		PERFORM crm._validate_process_template(t.document_type, update_process_template.definition);
	END IF;
	PERFORM crm._check_auto_start_parameters(coalesce(update_process_template.auto_start, t.auto_start),
											 coalesce(update_process_template.definition, t.definition));
	UPDATE crm.process_template p
	   SET name = coalesce(update_process_template.name, p.name),
		   definition = coalesce(update_process_template.definition, p.definition),
		   auto_start = CASE WHEN update_process_template.auto_start IS NULL THEN p.auto_start
							 ELSE crm._auto_start(update_process_template.auto_start) END,
		   active = coalesce(update_process_template.active, p.active)
	 WHERE p.id = t.id;
END
$$;

CREATE TRIGGER definitions_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON crm.process_template
	FOR EACH STATEMENT EXECUTE FUNCTION crm.definitions_changed();
CREATE TRIGGER item_batch AFTER INSERT OR UPDATE OR DELETE ON crm.contact
	FOR EACH STATEMENT EXECUTE FUNCTION crm.item_after_statement();
CREATE TRIGGER item_batch AFTER INSERT OR UPDATE OR DELETE ON crm.company
	FOR EACH STATEMENT EXECUTE FUNCTION crm.item_after_statement();

CREATE FUNCTION crm.record_incoming(channel text, address text, subject text DEFAULT NULL,
									body text DEFAULT NULL, status text DEFAULT 'completed',
									responsible_id bigint DEFAULT NULL,
									OUT entity_type text, OUT entity_id bigint,
									OUT activity_id bigint, OUT created_lead boolean)
RETURNS record
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
	v_channel text := lower(btrim(record_incoming.channel));
	v_address text := btrim(record_incoming.address);
	v_status text := coalesce(record_incoming.status, 'completed');
	v_key text;
	v_type text;
	v_id bigint;
	v_responsible bigint := record_incoming.responsible_id;
BEGIN
	created_lead := false;
	IF record_incoming.channel IS NULL OR record_incoming.address IS NULL THEN
		RAISE EXCEPTION '% must not be null', CASE WHEN record_incoming.channel IS NULL THEN 'channel' ELSE 'address' END
			USING ERRCODE = 'null_value_not_allowed',
				  HINT = 'For example crm.record_incoming(''call'', ''+33 6 11 22 33 44'').';
	END IF;
	IF v_channel NOT IN ('call', 'email') THEN
		RAISE EXCEPTION 'unknown channel "%"', left(record_incoming.channel, 40)
			USING ERRCODE = 'invalid_parameter_value',
				  HINT = 'The channel is call or email.';
	END IF;
	IF v_address ~ '[[:cntrl:]]' THEN
		RAISE EXCEPTION 'address must not contain line breaks or other control characters'
			USING ERRCODE = 'invalid_parameter_value',
				  HINT = 'Give one phone number or one e-mail address.';
	END IF;
	IF length(v_address) > 254 THEN
		RAISE EXCEPTION 'address is too long (% characters, at most 254)', length(v_address)
			USING ERRCODE = 'invalid_parameter_value',
				  HINT = 'Give one phone number or one e-mail address.';
	END IF;
	IF v_channel = 'call' THEN
		v_key := crm.phone_key(v_address);
		IF v_address !~ '^[+0-9 ()./-]+$' OR v_key !~ '[0-9]' THEN
			RAISE EXCEPTION 'invalid phone number "%"', v_address
				USING ERRCODE = 'invalid_parameter_value',
					  HINT = 'A phone number holds digits, a leading +, spaces and ()./- only.';
		END IF;
	ELSE
		v_key := lower(v_address);
		IF v_address !~ '^[^@[:space:]]+@[^@[:space:]]+$' THEN
			RAISE EXCEPTION 'invalid e-mail address "%"', v_address
				USING ERRCODE = 'invalid_parameter_value',
					  HINT = 'For example claire@example.org.';
		END IF;
	END IF;
	IF record_incoming.subject ~ '[\r\n]' OR length(record_incoming.subject) > 1000 THEN
		RAISE EXCEPTION 'subject must be one line of at most 1000 characters'
			USING ERRCODE = 'invalid_parameter_value',
				  HINT = 'Put the rest in body.';
	END IF;
	IF length(record_incoming.body) > 1048576 THEN
		RAISE EXCEPTION 'body is too long (% characters, at most 1048576)', length(record_incoming.body)
			USING ERRCODE = 'invalid_parameter_value';
	END IF;
	IF v_status NOT IN ('completed', 'missed') OR (v_channel = 'email' AND v_status <> 'completed') THEN
		RAISE EXCEPTION 'invalid status "%" for an incoming %', left(v_status, 40), v_channel
			USING ERRCODE = 'invalid_parameter_value',
				  HINT = 'A call is completed or missed; an e-mail is completed.';
	END IF;

	-- an address on the exceptions list is not recorded (crm.activity_exceptions)
	IF EXISTS (SELECT FROM crm.exception_list x
				WHERE x.type = CASE v_channel WHEN 'call' THEN 'phone' ELSE 'email' END AND x.key = v_key) THEN
		RETURN;
	END IF;

	IF v_channel = 'call' THEN
		SELECT 'contact', c.id, c.responsible_id INTO v_type, v_id, v_responsible
		  FROM crm.contact c WHERE crm.phone_key(c.phone) = v_key ORDER BY c.id LIMIT 1;
		IF v_id IS NULL THEN
			SELECT 'company', c.id, c.responsible_id INTO v_type, v_id, v_responsible
			  FROM crm.company c WHERE crm.phone_key(c.phone) = v_key ORDER BY c.id LIMIT 1;
		END IF;
		IF v_id IS NULL THEN
			SELECT 'lead', l.id, l.responsible_id INTO v_type, v_id, v_responsible
			  FROM crm.lead l WHERE NOT l.converted AND crm.phone_key(l.phone) = v_key ORDER BY l.id LIMIT 1;
		END IF;
	ELSE
		SELECT 'contact', c.id, c.responsible_id INTO v_type, v_id, v_responsible
		  FROM crm.contact c WHERE lower(c.email) = v_key ORDER BY c.id LIMIT 1;
		IF v_id IS NULL THEN
			SELECT 'company', c.id, c.responsible_id INTO v_type, v_id, v_responsible
			  FROM crm.company c WHERE lower(c.email) = v_key ORDER BY c.id LIMIT 1;
		END IF;
		IF v_id IS NULL THEN
			SELECT 'lead', l.id, l.responsible_id INTO v_type, v_id, v_responsible
			  FROM crm.lead l WHERE NOT l.converted AND lower(l.email) = v_key ORDER BY l.id LIMIT 1;
		END IF;
	END IF;
	v_responsible := coalesce(record_incoming.responsible_id, v_responsible);

	IF v_id IS NULL THEN
		IF NOT current_setting('crm.create_lead_from_unknown')::boolean THEN
			RETURN;
		END IF;
		INSERT INTO crm.lead (title, phone, email, source, responsible_id)
		VALUES (CASE v_channel WHEN 'call' THEN 'Call from ' || v_address
				ELSE coalesce(nullif(btrim(record_incoming.subject), ''), 'E-mail from ' || v_address) END,
				CASE WHEN v_channel = 'call' THEN v_address END,
				CASE WHEN v_channel = 'email' THEN v_address END,
				v_channel, v_responsible)
		RETURNING id INTO v_id;
		v_type := 'lead';
		created_lead := true;
	END IF;

	INSERT INTO crm.activity (entity_type, entity_id, type, direction, status, subject, description,
							  remote_address, responsible_id, completed)
	VALUES (v_type, v_id, v_channel, 'incoming', v_status,
			coalesce(record_incoming.subject, CASE v_channel WHEN 'call' THEN 'Incoming call' ELSE '' END),
			record_incoming.body, v_address, v_responsible, true)
	RETURNING id INTO activity_id;
	entity_type := v_type;
	entity_id := v_id;
END
$$;
COMMENT ON FUNCTION crm.record_incoming(text, text, text, text, text, bigint) IS
	'Records an incoming call or e-mail on the item its address belongs to, creating a lead for an unknown address; returns the item and the activity';

-- in the order of a fresh install's grants (48_triggers.sql, then 90_grants.sql)
REVOKE EXECUTE ON FUNCTION crm._check_auto_start_parameters(text[], jsonb), crm._auto_start(text[]),
	crm.record_incoming(text, text, text, text, text, bigint) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION crm.record_incoming(text, text, text, text, text, bigint) TO crm_user;
GRANT EXECUTE ON FUNCTION crm._check_auto_start_parameters(text[], jsonb), crm._auto_start(text[]),
	crm.record_incoming(text, text, text, text, text, bigint) TO crm_admin;

-- Triggers leave a trace when nothing matched (no_trigger) and when the
-- exceptions list dropped an incoming call, e-mail or message (excepted).
ALTER TABLE crm.robot_log DROP CONSTRAINT robot_log_status_check,
	ADD CONSTRAINT robot_log_status_check
		CHECK (status IN ('done', 'skipped', 'scheduled', 'failed', 'cancelled',
						  'loop_stopped', 'running',
						  'fired', 'condition_false', 'backwards', 'already_there',
						  'no_trigger', 'excepted'));

-- ---------------------------------------------------------------------------
-- Open-channel messages and e-mail charsets: the process activity
-- openline_message queues messages on a new channel, openline, sent as
-- signed webhooks to the channel connector (an openline provider, which
-- needs a signing secret); the claim returns the charset an e-mail asks for
-- (the worker converts its subject and body); crm.activity_types lists
-- openline_message among the process-only activities (crm._activity_actions)
-- instead of as not supported.
-- ---------------------------------------------------------------------------
ALTER TABLE crm.provider DROP CONSTRAINT provider_channel_check,
	ADD CONSTRAINT provider_channel_check CHECK (channel IN ('webhook', 'email', 'sms', 'robocall', 'openline'));
ALTER TABLE crm.outbox DROP CONSTRAINT outbox_channel_check,
	ADD CONSTRAINT outbox_channel_check CHECK (channel IN ('webhook', 'email', 'sms', 'robocall', 'openline'));

CREATE OR REPLACE FUNCTION crm._validate_provider(p_channel text, p_name text, p_config jsonb, p_secret text)
RETURNS void
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
	v_allowed	text[];
	v_key		text;
	v_url		text;
	v_val		jsonb;
BEGIN
	IF p_channel IS NULL THEN
		RAISE EXCEPTION 'provider channel must not be null'
			USING ERRCODE = 'null_value_not_allowed',
				  HINT = 'Channels are webhook, email, sms, robocall and openline.';
	END IF;
	IF p_channel NOT IN ('webhook', 'email', 'sms', 'robocall', 'openline') THEN
		RAISE EXCEPTION 'unknown provider channel "%"', p_channel
			USING ERRCODE = 'invalid_parameter_value',
				  HINT = 'Channels are webhook, email, sms, robocall and openline.';
	END IF;
	IF p_name IS NULL THEN
		RAISE EXCEPTION 'provider name must not be null'
			USING ERRCODE = 'null_value_not_allowed',
				  HINT = 'Robots choose a provider by its name, e.g. {"provider": "erp"}.';
	END IF;
	IF btrim(p_name) = '' THEN
		RAISE EXCEPTION 'provider name must not be empty'
			USING ERRCODE = 'invalid_parameter_value',
				  HINT = 'Robots choose a provider by its name, e.g. {"provider": "erp"}.';
	END IF;
	IF p_config IS NULL OR jsonb_typeof(p_config) <> 'object' THEN
		RAISE EXCEPTION 'provider config must be a JSON object'
			USING ERRCODE = 'invalid_parameter_value',
				  DETAIL = format('Got %s.', coalesce(jsonb_typeof(p_config), 'NULL')),
				  HINT = 'For example {"url": "https://erp.example.com/hook"}.';
	END IF;

	v_allowed := CASE p_channel
		WHEN 'webhook' THEN ARRAY['url', 'method', 'headers', 'ca', 'client_cert']
		WHEN 'openline' THEN ARRAY['url', 'method', 'headers', 'ca', 'client_cert']
		WHEN 'email' THEN ARRAY['url', 'username', 'from', 'tls', 'ca', 'client_cert']
		ELSE ARRAY['url', 'method', 'headers', 'body', 'format', 'ca', 'client_cert']
	END;
	FOR v_key IN SELECT jsonb_object_keys(p_config) LOOP
		IF NOT v_key = ANY (v_allowed) THEN
			RAISE EXCEPTION 'unknown key "%" in % provider config', v_key, p_channel
				USING ERRCODE = 'invalid_parameter_value',
					  HINT = format('Allowed keys: %s.', array_to_string(v_allowed, ', '));
		END IF;
		IF v_key <> 'headers' AND jsonb_typeof(p_config -> v_key) <> 'string' THEN
			RAISE EXCEPTION 'key "%" of % provider config must be a string', v_key, p_channel
				USING ERRCODE = 'invalid_parameter_value',
					  DETAIL = format('Got %s.', p_config -> v_key);
		END IF;
	END LOOP;

	v_url := p_config ->> 'url';
	IF v_url IS NULL AND p_channel <> 'webhook' THEN
		RAISE EXCEPTION '% provider config needs a "url"', p_channel
			USING ERRCODE = 'invalid_parameter_value',
				  HINT = CASE WHEN p_channel = 'email'
							  THEN 'For example {"url": "smtps://smtp.example.com:465", "username": "crm", "from": "crm@example.com"}.'
							  WHEN p_channel = 'openline'
							  THEN 'For example {"url": "https://connector.example.com/crm/messages"}, with secret => ''whsec_...''.'
							  ELSE 'For example {"url": "https://sms.example.com/send", "body": "{\"to\": \"{to}\", \"text\": \"{text}\"}"}.' END;
	END IF;
	IF v_url IS NOT NULL THEN
		IF p_channel = 'email' AND v_url !~* '^smtps?://[^/\s]+' THEN
			RAISE EXCEPTION 'e-mail provider url "%" is not an smtp:// or smtps:// URL', v_url
				USING ERRCODE = 'invalid_parameter_value',
					  HINT = 'For example smtps://smtp.example.com:465, or smtp://smtp.example.com:587 (STARTTLS).';
		ELSIF p_channel <> 'email' AND v_url !~* '^https?://[^/\s]+' THEN
			RAISE EXCEPTION '% provider url "%" is not an http:// or https:// URL', p_channel, v_url
				USING ERRCODE = 'invalid_parameter_value',
					  HINT = 'The worker speaks only HTTP(S) to webhooks, SMS, call and open-channel providers.';
		END IF;
	END IF;
	IF p_config ? 'method' AND upper(p_config ->> 'method') NOT IN ('POST', 'PUT', 'PATCH', 'GET', 'DELETE') THEN
		RAISE EXCEPTION 'unsupported HTTP method "%"', p_config ->> 'method'
			USING ERRCODE = 'invalid_parameter_value',
				  HINT = 'Use POST, PUT, PATCH, GET or DELETE.';
	END IF;
	IF p_config ? 'format' AND p_config ->> 'format' NOT IN ('json', 'form', 'text') THEN
		RAISE EXCEPTION 'unknown body format "%"', p_config ->> 'format'
			USING ERRCODE = 'invalid_parameter_value',
				  HINT = 'Use json, form or text.';
	END IF;
	IF p_config ? 'tls' AND p_config ->> 'tls' NOT IN ('try', 'required', 'none') THEN
		RAISE EXCEPTION 'unknown tls mode "%"', p_config ->> 'tls'
			USING ERRCODE = 'invalid_parameter_value',
				  HINT = 'Use try (STARTTLS when offered), required or none.';
	END IF;
	IF p_config ? 'from' AND p_config ->> 'from' !~ '^[^@\s]+@[^@\s]+$' THEN
		RAISE EXCEPTION 'sender "%" is not an e-mail address', p_config ->> 'from'
			USING ERRCODE = 'invalid_parameter_value',
				  HINT = 'Give a bare address, e.g. "crm@example.com".';
	END IF;
	IF p_config ? 'headers' THEN
		IF jsonb_typeof(p_config -> 'headers') <> 'object' THEN
			RAISE EXCEPTION 'provider headers must be a JSON object of strings'
				USING ERRCODE = 'invalid_parameter_value',
					  DETAIL = format('Got %s.', p_config -> 'headers'),
					  HINT = 'For example {"headers": {"Authorization": "Bearer {secret}"}}.';
		END IF;
		FOR v_key, v_val IN SELECT key, value FROM jsonb_each(p_config -> 'headers') LOOP
			IF jsonb_typeof(v_val) <> 'string' THEN
				RAISE EXCEPTION 'header "%" must be a string', v_key
					USING ERRCODE = 'invalid_parameter_value',
						  DETAIL = format('Got %s.', v_val);
			END IF;
			IF v_key !~ '^[A-Za-z0-9!#$%&''*+.^_`|~-]+$' OR (v_val #>> '{}') ~ '[\r\n]' THEN
				RAISE EXCEPTION 'header "%" is not a valid HTTP header', v_key
					USING ERRCODE = 'invalid_parameter_value',
						  DETAIL = 'Header names are tokens; values may not contain CR or LF.';
			END IF;
		END LOOP;
	END IF;
	PERFORM crm._validate_tls('ca', p_config ->> 'ca');
	PERFORM crm._validate_tls('client_cert', p_config ->> 'client_cert');
	IF p_channel IN ('webhook', 'openline') AND p_secret IS NOT NULL THEN
		IF p_secret !~ '^whsec_[A-Za-z0-9+/]+={0,2}$' THEN
			RAISE EXCEPTION 'webhook secret must be "whsec_" followed by a base64 key'
				USING ERRCODE = 'invalid_parameter_value',
					  HINT = 'Generate one with: SELECT ''whsec_'' || encode(gen_random_bytes(24), ''base64'') (pgcrypto), or any 24-64 random bytes in base64.';
		END IF;
		BEGIN
			PERFORM decode(substr(p_secret, 7), 'base64');
		EXCEPTION WHEN OTHERS THEN
			RAISE EXCEPTION 'webhook secret must be "whsec_" followed by a base64 key'
				USING ERRCODE = 'invalid_parameter_value',
					  DETAIL = 'The part after "whsec_" does not decode as base64.';
		END;
	END IF;
END
$$;

CREATE OR REPLACE FUNCTION crm.add_provider(channel text, name text, config jsonb DEFAULT '{}',
								 secret text DEFAULT NULL, is_default boolean DEFAULT NULL,
								 client_key text DEFAULT NULL)
RETURNS bigint
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
	v_id		bigint;
	v_default	boolean := is_default;
	v_key		text := nullif(client_key, '');
BEGIN
	PERFORM crm._validate_provider(channel, name, config, secret);
	-- open-channel messages are always signed: the connector checks them
	IF channel = 'openline' AND secret IS NULL THEN
		RAISE EXCEPTION 'an openline provider needs a signing secret'
			USING ERRCODE = 'invalid_parameter_value',
				  HINT = 'Give secret => ''whsec_'' followed by a base64 key, the one the channel connector checks signatures with.';
	END IF;
	PERFORM crm._validate_tls('client_key', v_key);
	PERFORM crm._validate_client_pair(config, v_key IS NOT NULL);
	IF EXISTS (SELECT FROM crm.provider p WHERE p.channel = add_provider.channel AND p.name = add_provider.name) THEN
		RAISE EXCEPTION '% provider "%" already exists', channel, name
			USING ERRCODE = 'duplicate_object',
				  HINT = 'Change it with crm.update_provider.';
	END IF;
	-- The first provider of a channel is its default.
	IF v_default IS NULL THEN
		v_default := NOT EXISTS (SELECT FROM crm.provider p
								  WHERE p.channel = add_provider.channel AND p.is_default);
	ELSIF v_default THEN
		UPDATE crm.provider p SET is_default = false
		 WHERE p.channel = add_provider.channel AND p.is_default;
	END IF;
	INSERT INTO crm.provider (channel, name, config, is_default)
	VALUES (channel, name, config, v_default)
	RETURNING id INTO v_id;
	IF secret IS NOT NULL OR v_key IS NOT NULL THEN
		INSERT INTO crm.provider_secret (provider_id, secret, client_key) VALUES (v_id, secret, v_key);
	END IF;
	RETURN v_id;
END
$$;
COMMENT ON FUNCTION crm.add_provider(text, text, jsonb, text, boolean, text) IS
	'Adds a webhook, email, sms, robocall or openline provider; the first of a channel becomes its default';

DROP FUNCTION crm._claim_messages(integer, interval, boolean, text[]);
CREATE FUNCTION crm._claim_messages(p_limit integer, p_lease interval, p_expired boolean DEFAULT true,
									p_busy text[] DEFAULT '{}')
RETURNS TABLE (id bigint, channel text, attempts integer, idempotency_key text,
			   provider_id bigint, url text, method text, headers text[], body text,
			   secret text, username text, mail_from text, rcpt text[], subject text,
			   html boolean, tls text, attachments text[], error text,
			   ca text, client_cert text, client_key text, charset text)
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
-- called many times a second: plan it once.  A generic plan does not know
-- the limit and, with many messages due, would rather read the whole table
-- and sort it: the claim reads outbox_due in order, whatever the statistics.
SET plan_cache_mode = force_generic_plan
SET enable_seqscan = off
SET jit = off
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
			   coalesce(p.config, '{}') AS cfg, s.secret AS p_secret, s.client_key AS p_client_key,
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
												 ('email', 'charset', 'string'),
												 ('openline', 'text', 'string'), ('openline', 'hidden', 'boolean'),
												 ('openline', 'attachments', 'array'), ('openline', 'client', 'object'),
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
				WHEN r.channel IN ('email', 'openline') THEN r.cfg ->> 'url'
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
				-- an open-channel message: the payload as the action wrote it
				WHEN r.channel = 'openline' THEN r.payload::text
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
				WHEN r.channel = 'openline' AND (r.payload -> 'hidden') = 'true' THEN
					'a hidden open-channel message is never sent to the client'
				WHEN r.channel = 'openline' AND r.p_secret IS NULL THEN
					format('openline provider "%s" has no signing secret: give one with crm.update_provider(id, secret => ...)',
						   r.p_name)
				WHEN r.own_headers
					 AND EXISTS (SELECT FROM jsonb_each_text(r.payload -> 'headers') h
								  WHERE h.value ~ '[\r\n]' OR h.key !~ '^[A-Za-z0-9!#$%&''*+.^_`|~-]+$') THEN
					'a header name is not a token or a header value contains CR or LF'
		   END,
		   r.cfg ->> 'ca', r.cfg ->> 'client_cert', r.p_client_key,
		   CASE WHEN r.channel = 'email' THEN r.payload ->> 'charset' END
	  FROM rendered r;
END
$$;

REVOKE EXECUTE ON FUNCTION crm._claim_messages(integer, interval, boolean, text[]) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION crm._claim_messages(integer, interval, boolean, text[]) TO crm_admin;

CREATE OR REPLACE VIEW crm.outbox_stats AS
	SELECT c.channel,
		   (SELECT count(*) FROM crm.outbox o WHERE o.channel = c.channel AND o.status = 'pending') AS pending,
		   (SELECT count(*) FROM crm.outbox o WHERE o.channel = c.channel AND o.status = 'sending') AS sending,
		   (SELECT count(*) FROM crm.outbox o WHERE o.channel = c.channel AND o.status = 'failed') AS failed,
		   (SELECT count(*) FROM crm.outbox o WHERE o.channel = c.channel AND o.status = 'dead') AS dead,
		   (SELECT count(*) FROM crm.outbox o WHERE o.channel = c.channel AND o.status = 'sent'
				AND o.sent_at > now() - interval '1 minute') AS sent_last_minute,
		   (SELECT count(*) FROM crm.outbox o WHERE o.channel = c.channel AND o.status = 'sent'
				AND o.sent_at > now() - interval '1 hour') AS sent_last_hour,
		   round((SELECT count(*) FROM crm.outbox o WHERE o.channel = c.channel AND o.status = 'sent'
					AND o.sent_at > now() - interval '1 minute') / 60.0, 2) AS per_second,
		   (SELECT now() - min(o.created_at) FROM crm.outbox o
			 WHERE o.channel = c.channel AND o.status IN ('pending', 'sending', 'failed')) AS oldest_pending_age
	  FROM (VALUES ('webhook'), ('email'), ('sms'), ('robocall'), ('openline')) AS c (channel);

CREATE OR REPLACE VIEW crm.activity_types AS
	SELECT type, kind, family, description, parameters, outputs, document_types,
		   in_robots, in_processes, note
	  FROM crm._activity_actions()
	UNION ALL
	SELECT f.type, 'flow', 'flow', f.description, f.parameters::jsonb, NULL, 'all', false, true, f.note
	  FROM (VALUES
		('if', 'runs "then" or "else" by a condition',
		 '[{"name": "condition", "type": "condition", "required": true, "description": "a condition (text or JSON rules)"},'
		 ' {"name": "then", "type": "activities", "required": false, "description": "activities when true"},'
		 ' {"name": "else", "type": "activities", "required": false, "description": "activities when false"}]', NULL),
		('delay', 'pauses the instance; a timer resumes it',
		 '[{"name": "for", "type": "interval", "required": false, "description": "how long (or until)"},'
		 ' {"name": "until", "type": "text", "required": false, "description": "a timestamp, or a template or formula giving one (or for)"},'
		 ' {"name": "work_time", "type": "boolean", "required": false, "description": "count \"for\" in working time"}]',
		 NULL),
		('set_variable', 'sets a variable of the instance',
		 '[{"name": "variable", "type": "text", "required": true, "description": "a declared variable"},'
		 ' {"name": "value", "type": "value", "required": true, "description": "a value, template or =formula"}]', NULL),
		('set_field', 'sets one field of the document',
		 '[{"name": "field", "type": "field", "required": true, "description": "a column or custom field"},'
		 ' {"name": "value", "type": "value", "required": true, "description": "a value, template or =formula"}]', NULL),
		('set_status_text', 'sets the status text shown on the document',
		 '[{"name": "text", "type": "text", "required": true, "description": "status text (template)"}]', NULL)
	  ) AS f (type, description, parameters, note);
COMMENT ON VIEW crm.activity_types IS
	'Activity types of business processes and robots: parameters, outputs, document types, where each runs';

-- Feed posts and drive files are documents of business processes (issue
-- 14): templates for them are accepted, and they auto-start on add / modify.
CREATE OR REPLACE FUNCTION crm._process_document_type(p_type text) RETURNS text
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
BEGIN
	IF p_type IS NULL THEN
		RAISE EXCEPTION 'document_type must not be null'
			USING ERRCODE = 'null_value_not_allowed',
				  HINT = 'Document types: an entity type (lead, deal, ...), feed_post or drive_file.';
	END IF;
	IF lower(p_type) IN ('feed_post', 'drive_file') THEN
		RETURN lower(p_type);
	END IF;
	IF NOT EXISTS (SELECT FROM crm.entity_type WHERE code = lower(p_type)) THEN
		RAISE EXCEPTION 'unknown document type "%"', p_type
			USING ERRCODE = 'undefined_object',
				  HINT = 'Document types: ' ||
					(SELECT string_agg(code, ', ' ORDER BY id) FROM crm.entity_type) ||
					' (entity types), feed_post and drive_file.';
	END IF;
	RETURN (crm._entity_type(p_type)).code;
END
$$;

CREATE FUNCTION crm._document_row_written() RETURNS trigger
	AS 'MODULE_PATHNAME', 'crm_document_row_written' LANGUAGE C;
CREATE FUNCTION crm._document_after_statement() RETURNS trigger
	AS 'MODULE_PATHNAME', 'crm_document_after_statement' LANGUAGE C;
CREATE TRIGGER process_autostart AFTER INSERT OR UPDATE ON crm.feed_post
	FOR EACH ROW EXECUTE FUNCTION crm._document_row_written();
CREATE TRIGGER process_autostart_batch AFTER INSERT OR UPDATE ON crm.feed_post
	FOR EACH STATEMENT EXECUTE FUNCTION crm._document_after_statement();
CREATE TRIGGER process_autostart AFTER INSERT OR UPDATE ON crm.drive_file
	FOR EACH ROW EXECUTE FUNCTION crm._document_row_written();
CREATE TRIGGER process_autostart_batch AFTER INSERT OR UPDATE ON crm.drive_file
	FOR EACH STATEMENT EXECUTE FUNCTION crm._document_after_statement();
REVOKE EXECUTE ON FUNCTION crm._document_row_written(), crm._document_after_statement() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION crm._document_row_written(), crm._document_after_statement() TO crm_admin;

-- crm.record_incoming looks callers up by their phone's digits: an index
-- per table, so a call costs the same however many items there are.
CREATE INDEX contact_phone_key ON crm.contact (crm.phone_key(phone));
CREATE INDEX company_phone_key ON crm.company (crm.phone_key(phone));
CREATE INDEX lead_phone_key ON crm.lead (crm.phone_key(phone)) WHERE NOT converted;

-- Why did (or didn't) it run?  crm.explain (issue 18).
CREATE FUNCTION crm.explain(entity_type text, id bigint, stage bigint DEFAULT NULL)
RETURNS TABLE (kind text, rule_id bigint, rule text, decision text, condition text,
			   substituted text, detail jsonb)
	AS 'MODULE_PATHNAME', 'crm_explain' LANGUAGE C VOLATILE;
COMMENT ON FUNCTION crm.explain(text, bigint, bigint) IS
	'What automation would do for an item now (or on entering stage): one row per robot, trigger and auto-starting process template, with its decision and its condition with the item''s values';
REVOKE EXECUTE ON FUNCTION crm.explain(text, bigint, bigint) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION crm.explain(text, bigint, bigint) TO crm_user;
GRANT EXECUTE ON FUNCTION crm.explain(text, bigint, bigint) TO crm_admin;

-- What would happen?  crm.simulate runs one INSERT, UPDATE or DELETE on a
-- CRM table as the caller, with all its automation, in a subtransaction it
-- always rolls back, and returns what it wrote (admin/simulate.c): one row
-- per row written, in the order written, its table, who wrote it, a short
-- summary, and the row as jsonb.  Nothing is left, and no worker is woken;
-- sequence values drawn stay used.
CREATE FUNCTION crm._simulate(statement text, row_limit integer)
RETURNS TABLE (seq bigint, op text, tbl text, row_id bigint, row_data jsonb)
	AS 'MODULE_PATHNAME', 'crm_simulate' LANGUAGE C VOLATILE;

CREATE FUNCTION crm.simulate(statement text, row_limit integer DEFAULT 100)
RETURNS TABLE (seq bigint, op text, tbl text, actor text, summary text, detail jsonb)
LANGUAGE sql VOLATILE AS $$
	SELECT s.seq, s.op, s.tbl,
		   CASE
			 WHEN s.op IN ('statement', 'error', 'truncated') THEN NULL
			 WHEN s.row_data IS NULL THEN NULL
			 WHEN s.tbl = 'robot_log' AND s.row_data->>'kind' = 'trigger'
			   THEN 'trigger ' || coalesce(s.row_data->>'trigger_id', '-')
			 WHEN s.row_data->>'robot_id' IS NOT NULL THEN 'robot ' || (s.row_data->>'robot_id')
			 WHEN s.row_data->>'process_instance_id' IS NOT NULL
			   THEN 'process ' || (s.row_data->>'process_instance_id')
			 WHEN s.tbl = 'process_log' THEN 'process ' || (s.row_data->>'instance_id')
			 WHEN s.tbl = 'process_instance' THEN 'template ' || (s.row_data->>'template_id')
			 ELSE NULL
		   END,
		   CASE
			 WHEN s.op = 'statement' THEN (s.row_data->>'rows') || ' row(s), ' ||
				  (s.row_data->>'effects') || ' row(s) written in all'
			 WHEN s.op = 'error' THEN (s.row_data->>'sqlstate') || ': ' || (s.row_data->>'message')
			 WHEN s.op = 'truncated' THEN (s.row_data->>'rows_not_shown') || ' more row(s) not shown (row_limit)'
			 WHEN s.row_data IS NULL THEN '(not readable by you)'
			 WHEN s.tbl = 'robot_log' THEN coalesce(s.row_data->>'name', s.row_data->>'action') || ': ' ||
				  (s.row_data->>'status') || coalesce(' (' || (s.row_data->>'error') || ')', '')
			 WHEN s.tbl = 'outbox' THEN (s.row_data->>'channel') || ' ' ||
				  coalesce(s.row_data->'payload'->>'url', s.row_data->'payload'->>'to', '')
			 WHEN s.tbl = 'job' AND s.row_data->>'status' = 'pending'
			   THEN (s.row_data->>'kind') || ' due in ' ||
				  ((s.row_data->>'due_at')::timestamptz - pg_catalog.now())::text
			 WHEN s.tbl = 'job' THEN (s.row_data->>'kind') || ': ' || (s.row_data->>'status')
			 WHEN s.tbl = 'process_instance' THEN (s.row_data->>'status') ||
				  coalesce(': ' || (s.row_data->>'status_text'), '')
			 WHEN s.tbl = 'process_log' THEN (s.row_data->>'type') || ': ' || (s.row_data->>'status')
			 WHEN s.tbl IN ('timeline_comment', 'notification', 'chat_message') THEN s.row_data->>'text'
			 WHEN s.tbl = 'history' THEN coalesce(nullif(s.row_data->>'text', ''), s.row_data->>'event_type')
			 WHEN s.tbl = 'activity' THEN s.row_data->>'subject'
			 ELSE coalesce(s.row_data->>'title', s.row_data->>'name', s.row_data->>'subject') ||
				  coalesce(' @ ' || (SELECT st.code FROM crm.stage st
									  WHERE st.id = (s.row_data->>'stage_id')::bigint), '')
		   END,
		   s.row_data
	  FROM crm._simulate(statement, row_limit) s
	 ORDER BY s.seq
$$;
COMMENT ON FUNCTION crm.simulate(text, integer) IS
	'Runs one INSERT, UPDATE or DELETE on a CRM table as the caller, with its automation, and rolls it back: returns every row it would write';
REVOKE EXECUTE ON FUNCTION crm._simulate(text, integer), crm.simulate(text, integer) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION crm._simulate(text, integer), crm.simulate(text, integer) TO crm_user;
GRANT EXECUTE ON FUNCTION crm._simulate(text, integer), crm.simulate(text, integer) TO crm_admin;

-- The worker claims from where its last claim ended (crm._claim_messages'
-- p_after_at and p_after_id, in outbox_due's order: due time, then id), so
-- that its claims no longer read past the messages it has in flight.
DROP INDEX crm.outbox_due;
CREATE INDEX outbox_due ON crm.outbox (next_attempt_at, id)
	WHERE sent_at IS NULL AND next_attempt_at < 'infinity';
DROP FUNCTION crm._claim_messages(integer, interval, boolean, text[]);
CREATE FUNCTION crm._claim_messages(p_limit integer, p_lease interval, p_expired boolean DEFAULT true,
									p_busy text[] DEFAULT '{}', p_after_at timestamptz DEFAULT NULL,
									p_after_id bigint DEFAULT NULL)
RETURNS TABLE (id bigint, channel text, attempts integer, idempotency_key text,
			   provider_id bigint, url text, method text, headers text[], body text,
			   secret text, username text, mail_from text, rcpt text[], subject text,
			   html boolean, tls text, attachments text[], error text,
			   ca text, client_cert text, client_key text, charset text, due_at timestamptz)
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
-- called many times a second: plan it once.  A generic plan does not know
-- the limit and, with many messages due, would rather read the whole table
-- and sort it: the claim reads outbox_due in order, whatever the statistics.
SET plan_cache_mode = force_generic_plan
SET enable_seqscan = off
SET jit = off
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
				   -- from the start, or after the given message
				   AND (d.next_attempt_at, d.id) > (coalesce(p_after_at, '-infinity'), coalesce(p_after_id, 0))
				   AND (d.status IN ('pending', 'failed')
						OR (p_expired AND d.status = 'sending'
							AND (d.lease_until < now() OR d.claimed_at < pg_postmaster_start_time())))
				 ORDER BY d.next_attempt_at, d.id
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
									 ORDER BY w.next_attempt_at, w.id
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
		RETURNING o.id, o.channel, o.attempts, o.idempotency_key, o.provider_id, o.payload, o.next_attempt_at
	), resolved AS (
		SELECT c.*, p.id AS p_id, p.active AS p_active, p.name AS p_name,
			   coalesce(p.config, '{}') AS cfg, s.secret AS p_secret, s.client_key AS p_client_key,
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
												 ('email', 'charset', 'string'),
												 ('openline', 'text', 'string'), ('openline', 'hidden', 'boolean'),
												 ('openline', 'attachments', 'array'), ('openline', 'client', 'object'),
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
				WHEN r.channel IN ('email', 'openline') THEN r.cfg ->> 'url'
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
				-- an open-channel message: the payload as the action wrote it
				WHEN r.channel = 'openline' THEN r.payload::text
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
				WHEN r.channel = 'openline' AND (r.payload -> 'hidden') = 'true' THEN
					'a hidden open-channel message is never sent to the client'
				WHEN r.channel = 'openline' AND r.p_secret IS NULL THEN
					format('openline provider "%s" has no signing secret: give one with crm.update_provider(id, secret => ...)',
						   r.p_name)
				WHEN r.own_headers
					 AND EXISTS (SELECT FROM jsonb_each_text(r.payload -> 'headers') h
								  WHERE h.value ~ '[\r\n]' OR h.key !~ '^[A-Za-z0-9!#$%&''*+.^_`|~-]+$') THEN
					'a header name is not a token or a header value contains CR or LF'
		   END,
		   r.cfg ->> 'ca', r.cfg ->> 'client_cert', r.p_client_key,
		   CASE WHEN r.channel = 'email' THEN r.payload ->> 'charset' END,
		   r.next_attempt_at
	  FROM rendered r;
END
$$;
REVOKE EXECUTE ON FUNCTION crm._claim_messages(integer, interval, boolean, text[], timestamptz, bigint) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION crm._claim_messages(integer, interval, boolean, text[], timestamptz, bigint) TO crm_admin;

-- The robot log in two tables read through the view crm.robot_log: the
-- table becomes crm.automation_log (trigger decisions, scheduled runs), the
-- robots' immediate runs go to crm.robot_log_entry, one row per item and
-- entry; ids are drawn 32 at a time (an entry row's runs are id .. id + 31).
ALTER TABLE crm.robot_log RENAME TO automation_log;
ALTER INDEX crm.robot_log_pkey RENAME TO automation_log_pkey;
ALTER INDEX crm.robot_log_entity_id_idx RENAME TO automation_log_entity_id_idx;
ALTER TABLE crm.automation_log RENAME CONSTRAINT robot_log_kind_check TO automation_log_kind_check;
ALTER TABLE crm.automation_log RENAME CONSTRAINT robot_log_status_check TO automation_log_status_check;
ALTER TABLE crm.automation_log RENAME CONSTRAINT robot_log_check TO automation_log_check;
ALTER TABLE crm.automation_log ALTER COLUMN id SET INCREMENT BY 32;
CREATE TABLE crm.robot_log_entry (
	id			bigint NOT NULL DEFAULT nextval('crm.robot_log_id_seq'),
	stage_id	bigint NOT NULL,
	entity_type text NOT NULL,
	entity_id	bigint NOT NULL,
	depth		integer NOT NULL DEFAULT 0,
	planned_at	timestamptz NOT NULL DEFAULT clock_timestamp(),
	robot_ids	bigint[] NOT NULL CHECK (cardinality(robot_ids) BETWEEN 1 AND 32),
	names		text[],
	actions		text[] NOT NULL,
	statuses	text[] NOT NULL
				CHECK (statuses <@ '{done,skipped,failed,loop_stopped}'::text[]),
	errors		text[],
	outputs		jsonb[],
	details		jsonb[],
	started		timestamptz[] NOT NULL,
	finished_at timestamptz[] NOT NULL
);
CREATE INDEX ON crm.robot_log_entry (entity_id);	-- an item's history
SELECT pg_catalog.pg_extension_config_dump('crm.robot_log_entry', '');
CREATE VIEW crm.robot_log AS
	SELECT l.id, l.kind, l.robot_id, l.trigger_id, l.name, l.action, l.stage_id, l.entity_type,
		   l.entity_id, l.status, l.error, l.outputs, l.detail, l.depth, l.job_id,
		   l.planned_at, l.started_at, l.finished_at
	  FROM crm.automation_log l
	UNION ALL
	SELECT e.id + r.n - 1, 'robot'::text, r.robot_id, NULL::bigint, r.name, r.action, e.stage_id,
		   e.entity_type, e.entity_id, r.status, r.error, r.outputs, r.detail, e.depth,
		   NULL::bigint, r.started, NULL::timestamptz, r.finished_at
	  FROM crm.robot_log_entry e,
		   unnest(e.robot_ids, e.names, e.actions, e.statuses, e.errors, e.outputs, e.details,
				  e.started, e.finished_at) WITH ORDINALITY
			   AS r (robot_id, name, action, status, error, outputs, detail, started, finished_at, n);
REVOKE SELECT ON crm.automation_log FROM crm_user;
GRANT SELECT ON crm.robot_log TO crm_user;
GRANT SELECT, INSERT, UPDATE, DELETE ON crm.robot_log_entry TO crm_admin;

CREATE OR REPLACE FUNCTION crm.delete_robot(robot_id bigint) RETURNS void
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
	r crm.robot := crm._robot(delete_robot.robot_id);
BEGIN
	-- its scheduled runs go with it
	WITH j AS (UPDATE crm.job SET status = 'cancelled', updated_at = now()
				WHERE job.robot_id = r.id AND status = 'pending' RETURNING log_id)
	UPDATE crm.automation_log l SET status = 'cancelled', finished_at = clock_timestamp()
	  FROM j WHERE l.id = j.log_id;
	DELETE FROM crm.robot WHERE id = r.id;
END
$$;

-- crm.simulate shows the robot log as crm.robot_log does (a stage entry's
-- runs one by one, under the name robot_log), now that the log is kept in
-- crm.robot_log_entry and crm.automation_log, and each row's cause.
DROP FUNCTION crm.simulate(text, integer);
CREATE FUNCTION crm.simulate(statement text, row_limit integer DEFAULT 100)
RETURNS TABLE (seq bigint, op text, tbl text, actor text, cause bigint, summary text, detail jsonb)
LANGUAGE sql VOLATILE AS $$
	-- the robot log as crm.robot_log shows it: a stage entry's runs (one
	-- row of crm.robot_log_entry) one by one, trigger decisions and
	-- scheduled runs (crm.automation_log) as they are
	WITH w AS (SELECT * FROM crm._simulate(statement, row_limit)),
	s AS (
		SELECT w.seq, 0::bigint AS sub, w.op,
			   CASE WHEN w.tbl IN ('automation_log', 'robot_log_entry') THEN 'robot_log' ELSE w.tbl END AS tbl,
			   w.row_data
		  FROM w
		 WHERE w.tbl IS DISTINCT FROM 'robot_log_entry' OR w.row_data IS NULL
		UNION ALL
		SELECT w.seq, r.n, w.op, 'robot_log',
			   jsonb_build_object('id', (w.row_data->>'id')::bigint + r.n - 1, 'kind', 'robot',
								  'robot_id', r.robot_id, 'trigger_id', NULL,
								  'name', w.row_data->'names'->(r.n::int - 1),
								  'action', w.row_data->'actions'->(r.n::int - 1),
								  'stage_id', w.row_data->'stage_id', 'entity_type', w.row_data->'entity_type',
								  'entity_id', w.row_data->'entity_id',
								  'status', w.row_data->'statuses'->(r.n::int - 1),
								  'error', w.row_data->'errors'->(r.n::int - 1),
								  'outputs', w.row_data->'outputs'->(r.n::int - 1),
								  'detail', w.row_data->'details'->(r.n::int - 1),
								  'depth', w.row_data->'depth', 'job_id', NULL,
								  'planned_at', w.row_data->'started'->(r.n::int - 1), 'started_at', NULL,
								  'finished_at', w.row_data->'finished_at'->(r.n::int - 1))
		  FROM w, jsonb_array_elements(w.row_data->'robot_ids') WITH ORDINALITY AS r (robot_id, n)
		 WHERE w.tbl = 'robot_log_entry' AND w.row_data IS NOT NULL
	),
	-- who wrote each row, and the item it belongs to (its own row, or the
	-- item its entity_type and entity_id name)
	a AS (
		SELECT row_number() OVER (ORDER BY s.seq, s.sub) - 1 AS seq, s.op, s.tbl,
			   CASE
				 WHEN s.op IN ('statement', 'error', 'truncated') THEN NULL
				 WHEN s.row_data IS NULL THEN NULL
				 WHEN s.tbl = 'robot_log' AND s.row_data->>'kind' = 'trigger'
				   THEN 'trigger ' || coalesce(s.row_data->>'trigger_id', '-')
				 WHEN s.row_data->>'robot_id' IS NOT NULL THEN 'robot ' || (s.row_data->>'robot_id')
				 WHEN s.row_data->>'process_instance_id' IS NOT NULL
				   THEN 'process ' || (s.row_data->>'process_instance_id')
				 WHEN s.tbl = 'process_log' THEN 'process ' || (s.row_data->>'instance_id')
				 WHEN s.tbl = 'process_instance' THEN 'template ' || (s.row_data->>'template_id')
				 ELSE NULL
		   END AS actor,
			   CASE
				 WHEN s.row_data IS NULL THEN NULL
				 -- the item tables: built-in types are named as their tables,
				 -- smart processes' items are in crm.item (read as the caller,
				 -- who may not read crm.entity_type)
				 WHEN s.tbl IN ('lead', 'deal', 'contact', 'company', 'quote', 'invoice', 'item')
				   THEN CASE WHEN s.tbl = 'item' THEN s.row_data->>'entity_type' ELSE s.tbl END
						|| ':' || (s.row_data->>'id')
				 WHEN s.row_data->>'entity_id' IS NOT NULL
				   THEN (s.row_data->>'entity_type') || ':' || (s.row_data->>'entity_id')
			   END AS item,
			   s.tbl IN ('lead', 'deal', 'contact', 'company', 'quote', 'invoice', 'item') AS item_row,
			   s.row_data
		  FROM s
	),
	-- the causal chain, within an item: a trigger's decision follows the
	-- event before it (a row no automation wrote); a robot's or a process's
	-- row follows the item's last write (its move into the stage); the
	-- item's own row and its history follow the decision or robot that
	-- moved it
	c AS (
		SELECT a.*,
			   max(a.seq) FILTER (WHERE a.actor IS NULL AND a.tbl <> 'robot_log') OVER earlier AS last_event,
			   max(a.seq) FILTER (WHERE a.item_row) OVER earlier AS last_item_write,
			   max(a.seq) FILTER (WHERE a.tbl = 'robot_log' AND a.op = 'insert'
								   AND (a.row_data->>'status' = 'fired'
										OR (a.row_data->>'action' = 'change_stage' AND a.row_data->>'status' = 'done'))) OVER earlier
				 AS last_move
		  FROM a
		WINDOW earlier AS (PARTITION BY a.item ORDER BY a.seq ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING)
	)
	SELECT s.seq, s.op, s.tbl, s.actor,
		   CASE
			 WHEN s.item IS NULL OR s.op IN ('statement', 'error', 'truncated') THEN NULL
			 WHEN s.actor LIKE 'trigger %' THEN s.last_event
			 WHEN s.actor IS NOT NULL THEN s.last_item_write
			 WHEN s.item_row OR s.tbl = 'history' THEN s.last_move
		   END,
		   CASE
			 WHEN s.op = 'statement' THEN (s.row_data->>'rows') || ' row(s), ' ||
				  -- a stage entry's runs count as the rows they are shown as
				  ((s.row_data->>'effects')::bigint +
				   (SELECT coalesce(sum(jsonb_array_length(e.row_data->'robot_ids') - 1), 0)
					  FROM w e WHERE e.tbl = 'robot_log_entry' AND e.row_data IS NOT NULL))::text ||
				  ' row(s) written in all'
			 WHEN s.op = 'error' THEN (s.row_data->>'sqlstate') || ': ' || (s.row_data->>'message')
			 WHEN s.op = 'truncated' THEN (s.row_data->>'rows_not_shown') || ' more row(s) not shown (row_limit)'
			 WHEN s.row_data IS NULL THEN '(not readable by you)'
			 WHEN s.tbl = 'robot_log' THEN coalesce(s.row_data->>'name', s.row_data->>'action') || ': ' ||
				  (s.row_data->>'status') || coalesce(' (' || (s.row_data->>'error') || ')', '')
			 WHEN s.tbl = 'outbox' THEN (s.row_data->>'channel') || ' ' ||
				  coalesce(s.row_data->'payload'->>'url', s.row_data->'payload'->>'to', '')
			 WHEN s.tbl = 'job' AND s.row_data->>'status' = 'pending'
			   THEN (s.row_data->>'kind') || ' due in ' ||
				  ((s.row_data->>'due_at')::timestamptz - pg_catalog.now())::text
			 WHEN s.tbl = 'job' THEN (s.row_data->>'kind') || ': ' || (s.row_data->>'status')
			 WHEN s.tbl = 'process_instance' THEN (s.row_data->>'status') ||
				  coalesce(': ' || (s.row_data->>'status_text'), '')
			 WHEN s.tbl = 'process_log' THEN (s.row_data->>'type') || ': ' || (s.row_data->>'status')
			 WHEN s.tbl IN ('timeline_comment', 'notification', 'chat_message') THEN s.row_data->>'text'
			 WHEN s.tbl = 'history' THEN coalesce(nullif(s.row_data->>'text', ''), s.row_data->>'event_type')
			 WHEN s.tbl = 'activity' THEN s.row_data->>'subject'
			 ELSE coalesce(s.row_data->>'title', s.row_data->>'name', s.row_data->>'subject') ||
				  coalesce(' @ ' || (SELECT st.code FROM crm.stage st
									  WHERE st.id = (s.row_data->>'stage_id')::bigint), '')
		   END,
		   s.row_data
	  FROM c s
	 ORDER BY s.seq
$$;
COMMENT ON FUNCTION crm.simulate(text, integer) IS
	'Runs one INSERT, UPDATE or DELETE on a CRM table as the caller, with its automation, and rolls it back: returns every row it would write';
REVOKE EXECUTE ON FUNCTION crm.simulate(text, integer) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION crm.simulate(text, integer) TO crm_user;
GRANT EXECUTE ON FUNCTION crm.simulate(text, integer) TO crm_admin;

-- ---------------------------------------------------------------------------
-- Scaling out with Citus (SPEC §10, docs/citus.md): crm.distribute(), run
-- once on the coordinator of a Citus cluster whose workers are added and
-- which has crm_automation installed on every node, turns the installation
-- into a distributed one:
--
--   - definitions (pipelines, stages, robots, triggers, templates,
--	   providers, users, departments, ...) become reference tables, a copy on
--	   every node;
--   - items (deal, lead, contact, company, quote, invoice, item) are
--	   distributed by id, and every row bound to an item (comments, history,
--	   activities, tasks, logs, jobs, outbox, process instances and their
--	   trace, ...) by that item's id (entity_id, document_id for processes),
--	   in the item's shard: what automation writes for an item stays on its
--	   node, in the same transaction.  Such a table's primary and unique
--	   keys start with that column; rows about no item carry 0 (its default);
--   - each node draws ids from a range of its own (its group id in the top
--	   16 bits), so ids are unique in the cluster.
--
-- The table layouts are changed on every node before any table is
-- distributed: Citus does not create worker copies of tables that belong
-- to an extension, so each node's own (empty) copy must match.
-- ---------------------------------------------------------------------------

-- The tables, what each becomes and by which column (NULL: a reference
-- table; 'local': stays a table of the coordinator, known to every node).
CREATE FUNCTION crm._distribution_plan(OUT tbl text, OUT dist_column text, OUT ord integer)
RETURNS SETOF record LANGUAGE sql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
	SELECT v.t, v.c, (row_number() OVER ())::integer FROM (VALUES
		-- definitions, referenced ones first
		('entity_type', NULL::text), ('department', NULL), ('user', NULL), ('pipeline', NULL),
		('stage', NULL), ('user_field', NULL), ('robot', NULL), ('trigger', NULL),
		('robot_turn', NULL), ('process_template', NULL), ('provider', NULL),
		('provider_secret', NULL), ('document_template', NULL), ('work_schedule', NULL),
		('holiday', NULL), ('disabled_endpoint', NULL), ('webform', NULL), ('exception_list', NULL),
		-- items, by id
		('deal', 'id'), ('lead', 'id'), ('contact', 'id'), ('company', 'id'), ('quote', 'id'),
		('invoice', 'id'), ('item', 'id'),
		-- what automation writes about an item, in its shard
		('timeline_comment', 'entity_id'), ('history', 'entity_id'), ('activity', 'entity_id'),
		('task', 'entity_id'), ('notification', 'entity_id'), ('calendar_event', 'entity_id'),
		('resource_booking', 'entity_id'), ('document', 'entity_id'),
		('automation_log', 'entity_id'), ('robot_log_entry', 'entity_id'), ('job', 'entity_id'),
		('outbox', 'entity_id'), ('payment', 'entity_id'), ('webform_submission', 'entity_id'),
		('tracked_link', 'entity_id'),
		('process_instance', 'document_id'), ('process_log', 'document_id'),
		-- not bound to an item (chats, feed posts, absences, drive files):
		-- a copy on every node as well
		('chat', NULL), ('chat_member', NULL), ('chat_message', NULL),
		('feed_post', NULL), ('feed_post_recipient', NULL), ('absence', NULL),
		('drive_file', NULL)) AS v (t, c)
$$;

-- Runs a DDL command on this node and on every worker node's copy of the
-- extension's tables, without Citus propagating it.
CREATE FUNCTION crm._on_every_node(command text) RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	r record;
BEGIN
	EXECUTE command;
	-- one statement (run_command_on_workers runs only the first of several)
	FOR r IN EXECUTE 'SELECT nodename, nodeport, success, result FROM run_command_on_workers($1)'
			USING format('DO %L', 'BEGIN PERFORM pg_catalog.set_config(''citus.enable_ddl_propagation'', ''off'', true); '
								  'EXECUTE ' || quote_literal(command) || '; END') LOOP
		IF NOT r.success THEN
			RAISE EXCEPTION 'on node %:%: %', r.nodename, r.nodeport, r.result
				USING ERRCODE = 'XX000', DETAIL = 'command: ' || command;
		END IF;
	END LOOP;
END
$$;

CREATE FUNCTION crm.distribute() RETURNS TABLE (tbl text, became text)
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
SET client_min_messages = warning
AS $fn$
DECLARE
	p record;
	k record;
	n_workers integer;
BEGIN
	IF NOT EXISTS (SELECT FROM pg_extension WHERE extname = 'citus') THEN
		RAISE EXCEPTION 'crm.distribute() needs the citus extension'
			USING ERRCODE = '55000',
				  HINT = 'Install Citus on every node, preload it before crm_automation, CREATE EXTENSION citus.';
	END IF;
	IF EXISTS (SELECT FROM pg_catalog.pg_dist_partition WHERE logicalrelid = 'crm.deal'::regclass) THEN
		RAISE EXCEPTION 'this installation is already distributed' USING ERRCODE = '55000',
			DETAIL = 'crm.deal is already a distributed table.',
			HINT = 'Nothing to do: see docs/citus.md for what crm.distribute() made.';
	END IF;
	EXECUTE 'SELECT count(*) FROM pg_dist_node WHERE noderole = ''primary'' AND groupid <> 0
			   AND isactive' INTO n_workers;
	IF n_workers = 0 THEN
		RAISE EXCEPTION 'the Citus cluster has no worker node' USING ERRCODE = '55000',
			HINT = 'Add the workers first: SELECT citus_add_node(host, port).';
	END IF;
	EXECUTE 'SELECT citus_is_coordinator()' INTO STRICT k;
	IF NOT k.citus_is_coordinator THEN
		RAISE EXCEPTION 'crm.distribute() runs on the coordinator' USING ERRCODE = '55000',
			HINT = 'Connect to the coordinator of the Citus cluster and run it there.';
	END IF;

	SET LOCAL citus.enable_ddl_propagation = off;
	SET LOCAL citus.enable_unsafe_triggers = on;
	SET LOCAL citus.enable_local_reference_table_foreign_keys = off;
	SET LOCAL citus.multi_shard_modify_mode = 'sequential';

	-- 1. Every node's copy takes the distributed layout.
	-- a cycle (department.head_id, user.department_id) and keys between
	-- tables that are no longer co-located come back after (3.)
	PERFORM crm._on_every_node('ALTER TABLE crm.department DROP CONSTRAINT department_head_id_fkey');
	PERFORM crm._on_every_node('ALTER TABLE crm.calendar_event DROP CONSTRAINT calendar_event_activity_id_fkey');
	PERFORM crm._on_every_node('ALTER TABLE crm.process_log DROP CONSTRAINT process_log_instance_id_fkey');
	FOR p IN SELECT * FROM crm._distribution_plan() d WHERE d.dist_column NOT IN ('id', 'local') ORDER BY d.ord LOOP
		-- keys start with the distribution column
		FOR k IN SELECT c.conname, c.contype,
						array_to_string(ARRAY(SELECT quote_ident(a.attname)
												FROM unnest(c.conkey) WITH ORDINALITY AS u (n, o)
												JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = u.n
											   ORDER BY u.o), ', ') AS cols
				   FROM pg_constraint c
				  WHERE c.conrelid = ('crm.' || p.tbl)::regclass AND c.contype IN ('p', 'u') LOOP
			PERFORM crm._on_every_node(format('ALTER TABLE crm.%I DROP CONSTRAINT %I, ADD CONSTRAINT %I %s (%I, %s)',
											  p.tbl, k.conname, k.conname,
											  CASE k.contype WHEN 'p' THEN 'PRIMARY KEY' ELSE 'UNIQUE' END,
											  p.dist_column, k.cols));
		END LOOP;
		EXECUTE format('UPDATE crm.%I SET %I = 0 WHERE %I IS NULL', p.tbl, p.dist_column, p.dist_column);
		PERFORM crm._on_every_node(format('ALTER TABLE crm.%I ALTER %I SET DEFAULT 0, ALTER %I SET NOT NULL',
										  p.tbl, p.dist_column, p.dist_column));
	END LOOP;

	-- 2. Ids: each worker node's sequences draw from a range of their own.
	PERFORM crm._on_every_node($cmd$DO $do$
		DECLARE
			s record;
			g bigint := coalesce((SELECT groupid FROM pg_catalog.pg_dist_local_group), 0);
		BEGIN
			IF g = 0 THEN RETURN; END IF;
			FOR s IN SELECT c.oid::regclass AS seq FROM pg_class c
					  WHERE c.relkind = 'S' AND c.relnamespace = 'crm'::regnamespace LOOP
				EXECUTE format('ALTER SEQUENCE %s MINVALUE %s MAXVALUE %s START %s RESTART', s.seq,
							   (g << 48) + 1, ((g + 1) << 48) - 1, (g << 48) + 1);
			END LOOP;
		END $do$$cmd$);

	-- 3. The functions users call in their queries read definitions: in a
	-- query on distributed items they run on the nodes of the shards, where
	-- Citus refuses their reads of the reference tables' copies (a nested
	-- distributed execution) unless allowed for the call.
	FOR k IN SELECT f.oid::regprocedure AS fn FROM pg_catalog.pg_proc f
			  WHERE f.pronamespace = 'crm'::regnamespace
				AND f.proname IN ('stage', 'default_pipeline', 'supervisor_of', 'work_time_add') LOOP
		PERFORM crm._on_every_node(format('ALTER FUNCTION %s SET citus.allow_nested_distributed_execution = on', k.fn));
	END LOOP;

	-- 4. Distribute.
	FOR p IN SELECT * FROM crm._distribution_plan() d ORDER BY d.ord LOOP
		IF p.dist_column IS NULL THEN
			EXECUTE 'SELECT create_reference_table($1)' USING ('crm.' || p.tbl)::regclass;
			tbl := p.tbl; became := 'reference table';
		ELSIF p.dist_column = 'local' THEN
			EXECUTE 'SELECT citus_add_local_table_to_metadata($1, cascade_via_foreign_keys => true)' USING ('crm.' || p.tbl)::regclass;
			tbl := p.tbl; became := 'coordinator table';
		ELSE
			EXECUTE 'SELECT create_distributed_table($1, $2, colocate_with => $3)'
				USING ('crm.' || p.tbl)::regclass, p.dist_column,
					  CASE WHEN p.tbl = 'deal' THEN 'none' ELSE 'crm.deal' END;
			tbl := p.tbl; became := 'distributed by ' || p.dist_column;
		END IF;
		RETURN NEXT;
	END LOOP;
	SET LOCAL citus.enable_ddl_propagation = on;
	-- crm.robot_log is a view that crm_user reads: Citus checks the query a
	-- view makes on the shards as the session's role, so that role reads
	-- the view's tables (the same rows; on one node it needs only the view)
	GRANT SELECT ON crm.automation_log, crm.robot_log_entry TO crm_user;
	ALTER TABLE crm.department ADD CONSTRAINT department_head_id_fkey
		FOREIGN KEY (head_id) REFERENCES crm."user" (id) ON DELETE SET NULL;
	ALTER TABLE crm.process_log ADD CONSTRAINT process_log_instance_id_fkey
		FOREIGN KEY (document_id, instance_id) REFERENCES crm.process_instance (document_id, id) ON DELETE CASCADE;
END
$fn$;
COMMENT ON FUNCTION crm.distribute() IS
	'Turns this installation into a distributed one on a Citus cluster (run once, on the coordinator)';
REVOKE ALL ON FUNCTION crm.distribute() FROM PUBLIC;
REVOKE ALL ON FUNCTION crm._on_every_node(text) FROM PUBLIC;

-- This node's shards of crm.outbox, each with its claim: crm._claim_messages
-- made for that shard (crm._claim_messages_<shard id>), reading the shard
-- and this node's copies of the reference tables in place of the tables,
-- so that a node's delivery workers claim from local tables as one node's
-- do (src/delivery/outbox.c).  Made when missing or when crm._claim_messages
-- changed (its definition's checksum is the claim's comment); executable by
-- no one but its owner, as crm._claim_messages.
CREATE FUNCTION crm._outbox_shard_claims() RETURNS TABLE (shard text, claim text)
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	r record;
	template text := pg_get_functiondef(
		'crm._claim_messages(integer, interval, boolean, text[], timestamptz, bigint)'::regprocedure);
	version text := md5(template);
	def text;
	t text;
	local_shard text;
BEGIN
	FOR r IN EXECUTE 'SELECT s.shardid FROM pg_catalog.pg_dist_shard s
						JOIN pg_catalog.pg_dist_placement p ON p.shardid = s.shardid
					   WHERE s.logicalrelid = ''crm.outbox''::regclass
						 AND p.groupid = (SELECT groupid FROM pg_catalog.pg_dist_local_group)
					   ORDER BY s.shardid' LOOP
		shard := 'crm.outbox_' || r.shardid;
		claim := 'crm._claim_messages_' || r.shardid;
		IF to_regproc(claim) IS NULL
		   OR obj_description(to_regproc(claim)::oid, 'pg_proc') IS DISTINCT FROM version THEN
			-- the node's workers make it once: the others wait, then see it
			PERFORM pg_advisory_xact_lock(hashtext('crm._outbox_shard_claims'));
		END IF;
		IF to_regproc(claim) IS NULL
		   OR obj_description(to_regproc(claim)::oid, 'pg_proc') IS DISTINCT FROM version THEN
			def := replace(template, 'FUNCTION crm._claim_messages(', 'FUNCTION ' || claim || '(');
			def := regexp_replace(def, '\mcrm\.outbox\M', shard, 'g');
			FOREACH t IN ARRAY ARRAY['provider', 'provider_secret', 'disabled_endpoint'] LOOP
				EXECUTE 'SELECT ''crm.'' || $1 || ''_'' || s.shardid FROM pg_catalog.pg_dist_shard s
						  WHERE s.logicalrelid = (''crm.'' || $1)::regclass'
					INTO STRICT local_shard USING t;
				def := regexp_replace(def, '\mcrm\.' || t || '\M', local_shard, 'g');
			END LOOP;
			-- this node's own function: Citus must not propagate it
			PERFORM set_config('citus.enable_ddl_propagation', 'off', true);
			EXECUTE def;
			EXECUTE format('REVOKE ALL ON FUNCTION %s(integer, interval, boolean, text[], timestamptz, bigint) FROM PUBLIC',
						   claim);
			EXECUTE format('COMMENT ON FUNCTION %s(integer, interval, boolean, text[], timestamptz, bigint) IS %L',
						   claim, version);
		END IF;
		RETURN NEXT;
	END LOOP;
END
$$;
REVOKE ALL ON FUNCTION crm._outbox_shard_claims() FROM PUBLIC;

-- ---------------------------------------------------------------------------
-- The admin functions on the coordinator of a distributed installation
-- (issue 16, item 5): what Citus does not plan is written another way, with
-- the same effect on a single node (INSERT ... SELECT instead of a subquery
-- in VALUES, PL/pgSQL instead of SQL functions with parameters, rows locked
-- by their distribution column too, reference rows deleted over one
-- connection per node).
-- ---------------------------------------------------------------------------

CREATE OR REPLACE FUNCTION crm.cleanup_jobs(older_than interval DEFAULT NULL) RETURNS bigint
-- PL/pgSQL, the limit a parameter: Citus plans no SQL function with
-- parameters on distributed tables, nor a stable function in a COALESCE of a
-- DELETE there
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
	n bigint;
	v_before timestamptz := now() - coalesce(older_than, current_setting('crm.job_retention')::interval);
BEGIN
	WITH d AS (
		DELETE FROM crm.job
		 WHERE status IN ('done', 'cancelled')
		   AND updated_at < v_before
		RETURNING 1)
	SELECT count(*) INTO n FROM d;
	RETURN n;
END
$$;

CREATE OR REPLACE FUNCTION crm.add_robot(stage_id bigint, action text, params jsonb DEFAULT '{}',
							  condition jsonb DEFAULT NULL, delay jsonb DEFAULT NULL,
							  name text DEFAULT NULL, after_previous boolean DEFAULT false)
RETURNS bigint
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
	s crm.stage := crm._stage(add_robot.stage_id);
	v_id bigint;
BEGIN
	PERFORM crm._check_robot_name(s.id, add_robot.name, NULL);
	PERFORM crm._validate_robot(s.id, add_robot.action, coalesce(add_robot.params, '{}'),
								add_robot.condition, add_robot.delay, NULL);
	INSERT INTO crm.robot (stage_id, name, action, params, condition, delay, after_previous, sort,
						   created_by)
	SELECT s.id, add_robot.name, add_robot.action, coalesce(add_robot.params, '{}'),
		   add_robot.condition, add_robot.delay, coalesce(add_robot.after_previous, false),
		   coalesce(max(r.sort), 0) + 10, nullif(current_setting('crm.user_id')::bigint, 0)
	  FROM crm.robot r WHERE r.stage_id = s.id
	RETURNING id INTO v_id;
	RETURN v_id;
END
$$;

CREATE OR REPLACE FUNCTION crm.delete_robot(robot_id bigint) RETURNS void
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp
-- Citus: the robot's row is deleted over the connections that read its jobs
SET citus.multi_shard_modify_mode = 'sequential'
AS $$
DECLARE
	r crm.robot := crm._robot(delete_robot.robot_id);
	-- a parameter: Citus takes no volatile function in an UPDATE of a distributed table
	v_now timestamptz := clock_timestamp();
BEGIN
	-- its scheduled runs go with it
	WITH j AS (UPDATE crm.job SET status = 'cancelled', updated_at = now()
				WHERE job.robot_id = r.id AND status = 'pending' RETURNING log_id)
	UPDATE crm.automation_log l SET status = 'cancelled', finished_at = v_now
	  FROM j WHERE l.id = j.log_id;
	DELETE FROM crm.robot WHERE id = r.id;
END
$$;

CREATE OR REPLACE FUNCTION crm.copy_robot(robot_id bigint, to_stage_id bigint) RETURNS bigint
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
	r crm.robot := crm._robot(copy_robot.robot_id);
	s crm.stage := crm._stage(copy_robot.to_stage_id);
	v_id bigint;
BEGIN
	PERFORM crm._check_robot_name(s.id, r.name, NULL);
	PERFORM crm._validate_robot(s.id, r.action, r.params, r.condition, r.delay, NULL);
	INSERT INTO crm.robot (stage_id, name, action, params, condition, delay, after_previous, sort, active)
	SELECT s.id, r.name, r.action, r.params, r.condition, r.delay, r.after_previous,
		   coalesce(max(x.sort), 0) + 10, r.active
	  FROM crm.robot x WHERE x.stage_id = s.id
	RETURNING id INTO v_id;
	RETURN v_id;
END
$$;

CREATE OR REPLACE FUNCTION crm.item_automation(entity_type text, item_id bigint)
RETURNS TABLE (log_id bigint, kind text, name text, action text, stage text, status text,
			   error text, outputs jsonb, planned_at timestamptz, finished_at timestamptz)
-- PL/pgSQL: Citus plans no SQL function with parameters on distributed
-- tables; a trace row's document is its instance's (the join stays in a shard)
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
BEGIN
	RETURN QUERY
	SELECT * FROM (
		SELECT l.id, l.kind, l.name, l.action, s.code, l.status, l.error,
			   coalesce(l.outputs, l.detail), l.planned_at, l.finished_at
		  FROM crm.robot_log l LEFT JOIN crm.stage s ON s.id = l.stage_id
		 WHERE l.entity_type = item_automation.entity_type AND l.entity_id = item_automation.item_id
		UNION ALL
		-- business processes' activities: "template / activity name or place"
		SELECT p.id, 'process', t.name || ' / ' || coalesce(p.name, p.path), p.type, NULL, p.status,
			   p.error, p.outputs, p.started_at, p.finished_at
		  FROM crm.process_instance i
		  JOIN crm.process_log p ON p.document_id = i.document_id AND p.instance_id = i.id
		  JOIN crm.process_template t ON t.id = i.template_id
		 WHERE i.document_type = item_automation.entity_type AND i.document_id = item_automation.item_id
	) h (log_id, kind, name, action, stage, status, error, outputs, planned_at, finished_at)
	 ORDER BY h.planned_at, h.kind, h.log_id;
END
$$;

CREATE OR REPLACE FUNCTION crm.add_trigger(stage_id bigint, event text, params jsonb DEFAULT '{}',
								condition jsonb DEFAULT NULL, name text DEFAULT NULL,
								allow_backwards boolean DEFAULT false,
								on_behalf_of bigint DEFAULT NULL)
RETURNS bigint
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
	v_id bigint;
BEGIN
	PERFORM crm._validate_trigger(add_trigger.stage_id, add_trigger.event,
								  coalesce(add_trigger.params, '{}'), add_trigger.condition,
								  add_trigger.on_behalf_of);
	INSERT INTO crm.trigger (stage_id, name, event, params, condition, allow_backwards,
							 on_behalf_of, sort)
	SELECT add_trigger.stage_id, crm._trigger_name(add_trigger.name, add_trigger.event),
		   add_trigger.event, coalesce(add_trigger.params, '{}'), add_trigger.condition,
		   coalesce(add_trigger.allow_backwards, false), add_trigger.on_behalf_of,
		   coalesce(max(t.sort), 0) + 10
	  FROM crm.trigger t WHERE t.stage_id = add_trigger.stage_id
	RETURNING id INTO v_id;
	RETURN v_id;
END
$$;

CREATE OR REPLACE FUNCTION crm.copy_trigger(trigger_id bigint, to_stage_id bigint) RETURNS bigint
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
	t crm.trigger := crm._trigger(copy_trigger.trigger_id);
	v_id bigint;
BEGIN
	PERFORM crm._validate_trigger(copy_trigger.to_stage_id, t.event, t.params, t.condition,
								  t.on_behalf_of);
	INSERT INTO crm.trigger (stage_id, name, event, params, condition, allow_backwards,
							 on_behalf_of, sort, active)
	SELECT copy_trigger.to_stage_id, t.name, t.event, t.params, t.condition, t.allow_backwards,
		   t.on_behalf_of, coalesce(max(x.sort), 0) + 10, t.active
	  FROM crm.trigger x WHERE x.stage_id = copy_trigger.to_stage_id
	RETURNING id INTO v_id;
	RETURN v_id;
END
$$;

CREATE OR REPLACE FUNCTION crm.record_incoming(channel text, address text, subject text DEFAULT NULL,
									body text DEFAULT NULL, status text DEFAULT 'completed',
									responsible_id bigint DEFAULT NULL,
									OUT entity_type text, OUT entity_id bigint,
									OUT activity_id bigint, OUT created_lead boolean)
RETURNS record
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
	v_channel text := lower(btrim(record_incoming.channel));
	v_address text := btrim(record_incoming.address);
	v_status text := coalesce(record_incoming.status, 'completed');
	v_key text;
	v_type text;
	v_id bigint;
	v_responsible bigint := record_incoming.responsible_id;
BEGIN
	created_lead := false;
	IF record_incoming.channel IS NULL OR record_incoming.address IS NULL THEN
		RAISE EXCEPTION '% must not be null', CASE WHEN record_incoming.channel IS NULL THEN 'channel' ELSE 'address' END
			USING ERRCODE = 'null_value_not_allowed',
				  HINT = 'For example crm.record_incoming(''call'', ''+33 6 11 22 33 44'').';
	END IF;
	IF v_channel NOT IN ('call', 'email') THEN
		RAISE EXCEPTION 'unknown channel "%"', left(record_incoming.channel, 40)
			USING ERRCODE = 'invalid_parameter_value',
				  HINT = 'The channel is call or email.';
	END IF;
	IF v_address ~ '[[:cntrl:]]' THEN
		RAISE EXCEPTION 'address must not contain line breaks or other control characters'
			USING ERRCODE = 'invalid_parameter_value',
				  HINT = 'Give one phone number or one e-mail address.';
	END IF;
	IF length(v_address) > 254 THEN
		RAISE EXCEPTION 'address is too long (% characters, at most 254)', length(v_address)
			USING ERRCODE = 'invalid_parameter_value',
				  HINT = 'Give one phone number or one e-mail address.';
	END IF;
	IF v_channel = 'call' THEN
		v_key := crm.phone_key(v_address);
		IF v_address !~ '^[+0-9 ()./-]+$' OR v_key !~ '[0-9]' THEN
			RAISE EXCEPTION 'invalid phone number "%"', v_address
				USING ERRCODE = 'invalid_parameter_value',
					  HINT = 'A phone number holds digits, a leading +, spaces and ()./- only.';
		END IF;
	ELSE
		v_key := lower(v_address);
		IF v_address !~ '^[^@[:space:]]+@[^@[:space:]]+$' THEN
			RAISE EXCEPTION 'invalid e-mail address "%"', v_address
				USING ERRCODE = 'invalid_parameter_value',
					  HINT = 'For example claire@example.org.';
		END IF;
	END IF;
	IF record_incoming.subject ~ '[\r\n]' OR length(record_incoming.subject) > 1000 THEN
		RAISE EXCEPTION 'subject must be one line of at most 1000 characters'
			USING ERRCODE = 'invalid_parameter_value',
				  HINT = 'Put the rest in body.';
	END IF;
	IF length(record_incoming.body) > 1048576 THEN
		RAISE EXCEPTION 'body is too long (% characters, at most 1048576)', length(record_incoming.body)
			USING ERRCODE = 'invalid_parameter_value';
	END IF;
	IF v_status NOT IN ('completed', 'missed') OR (v_channel = 'email' AND v_status <> 'completed') THEN
		RAISE EXCEPTION 'invalid status "%" for an incoming %', left(v_status, 40), v_channel
			USING ERRCODE = 'invalid_parameter_value',
				  HINT = 'A call is completed or missed; an e-mail is completed.';
	END IF;

	-- an address on the exceptions list is not recorded (crm.activity_exceptions)
	IF EXISTS (SELECT FROM crm.exception_list x
				WHERE x.type = CASE WHEN v_channel = 'call' THEN 'phone' ELSE 'email' END AND x.key = v_key) THEN
		RETURN;
	END IF;

	IF v_channel = 'call' THEN
		SELECT 'contact', c.id, c.responsible_id INTO v_type, v_id, v_responsible
		  FROM crm.contact c WHERE crm.phone_key(c.phone) = v_key ORDER BY c.id LIMIT 1;
		IF v_id IS NULL THEN
			SELECT 'company', c.id, c.responsible_id INTO v_type, v_id, v_responsible
			  FROM crm.company c WHERE crm.phone_key(c.phone) = v_key ORDER BY c.id LIMIT 1;
		END IF;
		IF v_id IS NULL THEN
			SELECT 'lead', l.id, l.responsible_id INTO v_type, v_id, v_responsible
			  FROM crm.lead l WHERE NOT l.converted AND crm.phone_key(l.phone) = v_key ORDER BY l.id LIMIT 1;
		END IF;
	ELSE
		SELECT 'contact', c.id, c.responsible_id INTO v_type, v_id, v_responsible
		  FROM crm.contact c WHERE lower(c.email) = v_key ORDER BY c.id LIMIT 1;
		IF v_id IS NULL THEN
			SELECT 'company', c.id, c.responsible_id INTO v_type, v_id, v_responsible
			  FROM crm.company c WHERE lower(c.email) = v_key ORDER BY c.id LIMIT 1;
		END IF;
		IF v_id IS NULL THEN
			SELECT 'lead', l.id, l.responsible_id INTO v_type, v_id, v_responsible
			  FROM crm.lead l WHERE NOT l.converted AND lower(l.email) = v_key ORDER BY l.id LIMIT 1;
		END IF;
	END IF;
	v_responsible := coalesce(record_incoming.responsible_id, v_responsible);

	IF v_id IS NULL THEN
		IF NOT current_setting('crm.create_lead_from_unknown')::boolean THEN
			RETURN;
		END IF;
		INSERT INTO crm.lead (title, phone, email, source, responsible_id)
		VALUES (CASE WHEN v_channel = 'call' THEN 'Call from ' || v_address
				ELSE coalesce(nullif(btrim(record_incoming.subject), ''), 'E-mail from ' || v_address) END,
				CASE WHEN v_channel = 'call' THEN v_address END,
				CASE WHEN v_channel = 'email' THEN v_address END,
				v_channel, v_responsible)
		RETURNING id INTO v_id;
		v_type := 'lead';
		created_lead := true;
	END IF;

	INSERT INTO crm.activity (entity_type, entity_id, type, direction, status, subject, description,
							  remote_address, responsible_id, completed)
	VALUES (v_type, v_id, v_channel, 'incoming', v_status,
			coalesce(record_incoming.subject, CASE WHEN v_channel = 'call' THEN 'Incoming call' ELSE '' END),
			record_incoming.body, v_address, v_responsible, true)
	RETURNING id INTO activity_id;
	entity_type := v_type;
	entity_id := v_id;
END
$$;

CREATE OR REPLACE FUNCTION crm.delete_stage(stage_id bigint) RETURNS void
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp
-- Citus: rows of a reference table that distributed tables refer to are
-- deleted over the connections that looked for the items
SET citus.multi_shard_modify_mode = 'sequential'
AS $$
DECLARE
	s crm.stage := crm._stage(delete_stage.stage_id);
	u record;
BEGIN
	u := crm._stage_in_use(s);
	IF u.in_use THEN
		RAISE EXCEPTION 'stage "%" still holds items', s.code
			USING ERRCODE = 'object_in_use',
				  DETAIL = format('Items of %s are in stage %s.', u.table_name, s.id),
				  HINT = format('Move them to another stage first: UPDATE %s SET stage_id = ... WHERE stage_id = %s;',
								u.table_name, s.id);
	END IF;
	IF NOT EXISTS (SELECT FROM crm.stage x WHERE x.pipeline_id = s.pipeline_id AND x.id <> s.id) THEN
		RAISE EXCEPTION 'stage "%" is the last stage of its pipeline', s.code
			USING ERRCODE = 'object_in_use',
				  HINT = 'A pipeline needs at least one stage; delete the pipeline instead with crm.delete_pipeline.';
	END IF;
	-- The stage's robots and triggers go with it.
	DELETE FROM crm.stage WHERE id = s.id;
	PERFORM crm._renumber_stages(s.pipeline_id);
END
$$;

CREATE OR REPLACE FUNCTION crm.add_pipeline(entity_type text, name text) RETURNS bigint
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
	et crm.entity_type := crm._entity_type(add_pipeline.entity_type);
	v_id bigint;
BEGIN
	IF NOT et.has_stages THEN
		RAISE EXCEPTION 'entity type "%" has no pipelines', et.code
			USING ERRCODE = 'feature_not_supported',
				  HINT = 'Pipelines exist for leads, deals, quotes, invoices and smart processes.';
	END IF;
	IF NOT et.multiple_pipelines THEN
		RAISE EXCEPTION 'entity type "%" has a single pipeline', et.code
			USING ERRCODE = 'feature_not_supported',
				  HINT = 'Add stages to its default pipeline: crm.add_stage(crm.default_pipeline(''' || et.code || '''), ...).';
	END IF;
	IF add_pipeline.name IS NULL OR btrim(add_pipeline.name) = '' THEN
		RAISE EXCEPTION 'pipeline name must not be empty'
			USING ERRCODE = 'invalid_parameter_value',
				  HINT = 'Give the pipeline a name, e.g. ''Wholesale''.';
	END IF;
	IF EXISTS (SELECT FROM crm.pipeline p WHERE p.entity_type = et.code AND p.name = btrim(add_pipeline.name)) THEN
		RAISE EXCEPTION 'pipeline "%" already exists for %', btrim(add_pipeline.name), et.code
			USING ERRCODE = 'duplicate_object',
				  HINT = 'Pipeline names are unique per entity type.';
	END IF;
	INSERT INTO crm.pipeline (entity_type, name, sort)
	SELECT et.code, btrim(add_pipeline.name), coalesce(max(p.sort), 0) + 10
	  FROM crm.pipeline p WHERE p.entity_type = et.code
	RETURNING id INTO v_id;
	RETURN v_id;
END
$$;

CREATE OR REPLACE FUNCTION crm.delete_pipeline(pipeline_id bigint) RETURNS void
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp
-- Citus: rows of a reference table that distributed tables refer to are
-- deleted over the connections that looked for the items
SET citus.multi_shard_modify_mode = 'sequential'
AS $$
DECLARE
	p crm.pipeline := crm._pipeline(delete_pipeline.pipeline_id);
	s crm.stage;
	u record;
BEGIN
	IF p.is_default THEN
		RAISE EXCEPTION 'pipeline "%" is the default pipeline of %', p.name, p.entity_type
			USING ERRCODE = 'object_in_use',
				  HINT = 'New items land in the default pipeline; it cannot be deleted.';
	END IF;
	FOR s IN SELECT * FROM crm.stage WHERE stage.pipeline_id = p.id LOOP
		u := crm._stage_in_use(s);
		IF u.in_use THEN
			RAISE EXCEPTION 'pipeline "%" still holds items', p.name
				USING ERRCODE = 'object_in_use',
					  DETAIL = format('Items of %s are in its stage "%s".', u.table_name, s.code),
					  HINT = 'Move them to another pipeline first.';
		END IF;
	END LOOP;
	DELETE FROM crm.pipeline WHERE id = p.id;
END
$$;

CREATE OR REPLACE FUNCTION crm.delete_provider(provider_id bigint) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
-- Citus: the provider's row is deleted over the connections that read the
-- outbox, and the outbox read with SELECT 1 (Citus plans no subquery without
-- columns on a distributed table)
SET citus.multi_shard_modify_mode = 'sequential'
AS $$
DECLARE
	v	crm.provider := crm._provider(provider_id);
BEGIN
	IF EXISTS (SELECT 1 FROM crm.outbox o
				WHERE o.provider_id = v.id AND o.status IN ('pending', 'sending', 'failed')) THEN
		RAISE EXCEPTION '% provider "%" has messages waiting to be sent', v.channel, v.name
			USING ERRCODE = 'object_in_use',
				  HINT = 'Wait for them, or disable it with crm.update_provider(id, active => false).';
	END IF;
	DELETE FROM crm.provider p WHERE p.id = v.id;
END
$$;

CREATE OR REPLACE FUNCTION crm.retry_message(message_id bigint) RETURNS boolean
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
	v_status	text;
	v_entity	bigint;
BEGIN
	IF message_id IS NULL THEN
		RAISE EXCEPTION 'message id must not be null'
			USING ERRCODE = 'null_value_not_allowed',
				  HINT = 'See SELECT id, last_error FROM crm.outbox_dead.';
	END IF;
	SELECT o.entity_id INTO v_entity FROM crm.outbox o WHERE o.id = message_id;
	IF FOUND THEN
		SELECT o.status INTO v_status FROM crm.outbox o
		 WHERE (o.entity_id = v_entity OR (v_entity IS NULL AND o.entity_id IS NULL))
		   AND o.id = message_id FOR UPDATE;
	END IF;
	IF NOT FOUND THEN
		RAISE EXCEPTION 'outbox message % does not exist', message_id
			USING ERRCODE = 'undefined_object',
				  HINT = 'See SELECT id, last_error FROM crm.outbox_dead.';
	END IF;
	IF v_status NOT IN ('failed', 'dead') THEN
		RETURN false;
	END IF;
	UPDATE crm.outbox
	   SET status = 'pending', attempts = 0, next_attempt_at = now(), lease_until = NULL,
		   updated_at = now()
	 WHERE (entity_id = v_entity OR (v_entity IS NULL AND entity_id IS NULL)) AND id = message_id;
	RETURN true;
END
$$;

CREATE OR REPLACE FUNCTION crm.retry_dead(channel text DEFAULT NULL) RETURNS bigint
-- PL/pgSQL: Citus plans no SQL function with parameters on distributed tables
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
	n bigint;
BEGIN
	WITH r AS (
		UPDATE crm.outbox o
		   SET status = 'pending', attempts = 0, next_attempt_at = now(), lease_until = NULL,
			   updated_at = now()
		 WHERE o.status = 'dead' AND (retry_dead.channel IS NULL OR o.channel = retry_dead.channel)
		RETURNING 1)
	SELECT count(*) INTO n FROM r;
	RETURN n;
END
$$;

CREATE OR REPLACE FUNCTION crm.cleanup_outbox(older_than interval DEFAULT NULL) RETURNS bigint
-- PL/pgSQL, the limit a parameter: Citus plans no SQL function with
-- parameters on distributed tables, nor a stable function in a COALESCE of a
-- DELETE there
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
	n bigint;
	v_before timestamptz := now() - coalesce(older_than, current_setting('crm.outbox_retention')::interval);
BEGIN
	WITH d AS (
		DELETE FROM crm.outbox
		 WHERE status = 'sent'
		   AND sent_at < v_before
		RETURNING 1)
	SELECT count(*) INTO n FROM d;
	RETURN n;
END
$$;

CREATE OR REPLACE FUNCTION crm.add_process_template(document_type text, name text, definition jsonb,
										 auto_start text[] DEFAULT '{}')
RETURNS bigint
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
	v_type text := crm._process_document_type(add_process_template.document_type);
	v_id bigint;
BEGIN
	PERFORM crm._check_process_name(v_type, add_process_template.name, NULL);
	PERFORM crm._check_auto_start(add_process_template.auto_start);
	IF add_process_template.definition IS NULL THEN
		RAISE EXCEPTION 'a process template needs a definition'
			USING ERRCODE = 'null_value_not_allowed',
				  HINT = 'For example {"activities": [{"type": "add_comment", "text": "Started"}]}.';
	END IF;
	PERFORM crm._validate_process_template(v_type, add_process_template.definition);
	PERFORM crm._check_auto_start_parameters(add_process_template.auto_start, add_process_template.definition);
	INSERT INTO crm.process_template (document_type, name, definition, auto_start, created_by)
	SELECT v_type, add_process_template.name, add_process_template.definition,
		   crm._auto_start(add_process_template.auto_start), max(u.id)
	  FROM crm.user u WHERE u.id = nullif(current_setting('crm.user_id')::bigint, 0)
	RETURNING id INTO v_id;
	RETURN v_id;
END
$$;

CREATE OR REPLACE FUNCTION crm.delete_process_template(template_id bigint) RETURNS void
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp
-- Citus: the template's row is deleted over the connections that cancelled the timers
SET citus.multi_shard_modify_mode = 'sequential'
AS $$
DECLARE
	t crm.process_template := crm._process_template(delete_process_template.template_id);
BEGIN
	UPDATE crm.job j SET status = 'cancelled', updated_at = now()
	  FROM crm.process_instance i
	 WHERE i.template_id = t.id AND j.process_instance_id = i.id AND j.status = 'pending'
	   AND j.entity_type = i.document_type AND j.entity_id = i.document_id;
	DELETE FROM crm.process_template WHERE id = t.id;
END
$$;

CREATE OR REPLACE FUNCTION crm.stop_process(instance_id bigint) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
	i crm.process_instance;
	v_document bigint;
BEGIN
	SELECT p.document_id INTO v_document FROM crm.process_instance p WHERE p.id = stop_process.instance_id;
	IF FOUND THEN
		SELECT * INTO i FROM crm.process_instance p
		 WHERE p.document_id = v_document AND p.id = stop_process.instance_id FOR UPDATE;
	END IF;
	IF NOT FOUND THEN
		RAISE EXCEPTION 'process instance % does not exist', stop_process.instance_id
			USING ERRCODE = 'undefined_object',
				  HINT = 'See SELECT id, template, document_id, status FROM crm.process_instances;';
	END IF;
	IF i.status NOT IN ('running', 'waiting') THEN
		RAISE EXCEPTION 'process instance % is not running (it is %)', i.id, i.status
			USING ERRCODE = 'object_not_in_prerequisite_state',
				  HINT = 'Only running and waiting instances can be stopped.';
	END IF;
	UPDATE crm.job SET status = 'cancelled', updated_at = now()
	 WHERE process_instance_id = i.id AND status = 'pending'
	   AND entity_type = i.document_type AND entity_id = i.document_id;
	UPDATE crm.process_instance
	   SET status = 'stopped', finished_at = now(), state = state - 'definition'
	 WHERE document_id = i.document_id AND id = i.id;
END
$$;

CREATE OR REPLACE FUNCTION crm.document_processes(document_type text, document_id bigint)
RETURNS TABLE (instance_id bigint, template text, status text, status_text text,
			   current_activity text, waiting_for text, error text, started_at timestamptz,
			   finished_at timestamptz)
-- PL/pgSQL: Citus plans no SQL function with parameters on distributed tables
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
BEGIN
	RETURN QUERY
	SELECT i.id, t.name, i.status, i.status_text, i.current_activity,
		   CASE WHEN i.status = 'waiting' THEN i.state ->> 'waiting_for' END,
		   i.error, i.created_at, i.finished_at
	  FROM crm.process_instance i
	  JOIN crm.process_template t ON t.id = i.template_id
	 WHERE i.document_type = document_processes.document_type
	   AND i.document_id = document_processes.document_id
	 ORDER BY i.created_at DESC, i.id DESC;
END
$$;

-- The secret follows the URL on each node's copy of crm.provider too (a
-- distributed installation, docs/citus.md).
CREATE OR REPLACE FUNCTION crm._provider_secret_follows_url() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
	v_secrets text := 'crm.provider_secret';
	v_n bigint;
BEGIN
	IF OLD.channel IS DISTINCT FROM NEW.channel
	   OR (NEW.channel IN ('email', 'sms', 'robocall')
		   AND crm._url_endpoint(OLD.config->>'url') IS DISTINCT FROM crm._url_endpoint(NEW.config->>'url')) THEN
		-- on a distributed installation this fires on each node's copy of
		-- crm.provider (docs/citus.md): each changes its copy of the secrets
		IF TG_TABLE_NAME <> 'provider' THEN
			EXECUTE 'SELECT ''crm.provider_secret_'' || shardid FROM pg_catalog.pg_dist_shard
					  WHERE logicalrelid = ''crm.provider_secret''::regclass'
				INTO STRICT v_secrets;
		END IF;
		-- the client key stays: it signs the TLS handshake, never leaves
		EXECUTE format('UPDATE %s s SET secret = NULL WHERE s.provider_id = $1 AND s.secret IS NOT NULL', v_secrets)
			USING NEW.id;
		GET DIAGNOSTICS v_n = ROW_COUNT;
		IF v_n > 0 THEN
			EXECUTE format('DELETE FROM %s s WHERE s.provider_id = $1 AND s.client_key IS NULL', v_secrets)
				USING NEW.id;
			RAISE NOTICE 'the secret of % provider "%" was removed: it now points to another endpoint', NEW.channel, NEW.name
				USING HINT = 'Give it again with crm.update_provider(id, secret => ...).';
		END IF;
	END IF;
	RETURN NULL;
END
$$;

-- A process's task finds its instance in its document's shard first (docs/citus.md).
CREATE OR REPLACE FUNCTION crm._resume_on_task() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
SET enable_seqscan = off SET jit = off AS $$
DECLARE
	t crm.task := CASE WHEN TG_OP = 'DELETE' THEN OLD ELSE NEW END;
	v_type text;
	v_id bigint;
BEGIN
	-- the instance's document first: the UPDATE then probes the index of
	-- the document's pending jobs (job_item), whatever the statistics.  A
	-- process's task is its document's, which names the instance's shard
	-- on a distributed installation (docs/citus.md); else by id alone.
	SELECT i.document_type, i.document_id INTO v_type, v_id
	  FROM crm.process_instance i WHERE i.id = t.process_instance_id AND i.document_id = t.entity_id;
	IF NOT FOUND THEN
		SELECT i.document_type, i.document_id INTO v_type, v_id
		  FROM crm.process_instance i WHERE i.id = t.process_instance_id;
		IF NOT FOUND THEN
			RETURN NULL;
		END IF;
	END IF;
	UPDATE crm.job j
	   SET due_at = least(j.due_at, now()), updated_at = now(),
		   context = j.context || jsonb_build_object('task_status',
						CASE WHEN TG_OP = 'DELETE' THEN 'deleted' ELSE t.status END)
	 WHERE j.status = 'pending' AND j.kind = 'process_timer'
	   AND j.entity_type = v_type AND j.entity_id = v_id
	   AND j.process_instance_id = t.process_instance_id
	   AND j.context @> jsonb_build_object('task_id', t.id);
	RETURN NULL;
END
$$;

-- crm.outbox_stats: one grouped pass over the outbox instead of a correlated
-- count per channel and column (Citus plans no correlated subquery on a
-- distributed table)
CREATE OR REPLACE VIEW crm.outbox_stats AS
	SELECT c.channel,
		   coalesce(s.pending, 0) AS pending,
		   coalesce(s.sending, 0) AS sending,
		   coalesce(s.failed, 0) AS failed,
		   coalesce(s.dead, 0) AS dead,
		   coalesce(s.sent_last_minute, 0) AS sent_last_minute,
		   coalesce(s.sent_last_hour, 0) AS sent_last_hour,
		   round(coalesce(s.sent_last_minute, 0) / 60.0, 2) AS per_second,
		   now() - s.oldest_waiting AS oldest_pending_age
	  FROM (VALUES ('webhook', 1), ('email', 2), ('sms', 3), ('robocall', 4), ('openline', 5))
			 AS c (channel, ord)
	  -- one pass over the outbox, grouped (also a query Citus can plan on
	  -- a distributed installation, which correlated subqueries are not)
	  LEFT JOIN (SELECT o.channel,
						count(*) FILTER (WHERE o.status = 'pending') AS pending,
						count(*) FILTER (WHERE o.status = 'sending') AS sending,
						count(*) FILTER (WHERE o.status = 'failed') AS failed,
						count(*) FILTER (WHERE o.status = 'dead') AS dead,
						count(*) FILTER (WHERE o.status = 'sent'
										   AND o.sent_at > now() - interval '1 minute') AS sent_last_minute,
						count(*) FILTER (WHERE o.status = 'sent'
										   AND o.sent_at > now() - interval '1 hour') AS sent_last_hour,
						min(o.created_at) FILTER (WHERE o.status IN ('pending', 'sending', 'failed'))
							AS oldest_waiting
				   FROM crm.outbox o
				  GROUP BY o.channel) s ON s.channel = c.channel
	 ORDER BY c.ord;

-- ---------------------------------------------------------------------------
-- Issue 17, delivery: no index of crm.outbox names a column the delivery
-- workers change, so that both the claim and the record of a result are HOT
-- updates (no index entries written); the messages not yet done are found
-- through crm.outbox_due, kept by crm.outbox's triggers and the workers'
-- records; cleanup finds old messages by created_at.
-- ---------------------------------------------------------------------------
DROP INDEX crm.outbox_due;
DROP INDEX crm.outbox_sent;
CREATE INDEX outbox_created ON crm.outbox (created_at);
-- The messages not yet done, by due time: pending, failed, and sending ones
-- (their lease may expire); sent and dead ones (next attempt 'infinity')
-- have no row here.  Kept by crm.outbox's triggers (crm._outbox_queued and
-- the others, delivery) and by the workers' records of results, in the same
-- transaction as the message's row; rel is the table the message is in
-- (crm.outbox, or on a distributed installation this node's shard of it).
CREATE TABLE crm.outbox_due (
	message_id	bigint NOT NULL,
	rel			regclass NOT NULL,
	next_attempt_at timestamptz NOT NULL,
	PRIMARY KEY (message_id, rel)
);
CREATE INDEX outbox_due_next ON crm.outbox_due (rel, next_attempt_at, message_id);
SELECT pg_catalog.pg_extension_config_dump('crm.outbox_due', '');
GRANT SELECT ON crm.outbox_due TO crm_admin;

-- ---------------------------------------------------------------------------
-- crm.outbox_due, the messages not yet done by due time, follows crm.outbox:
-- a row for each message inserted not yet sent or dead, its due time
-- changed, or the row deleted, by whoever writes the outbox (robots,
-- crm.retry_message, an administrator's INSERT or UPDATE).  The delivery
-- workers' records of results keep it themselves, in the same statement
-- (src/delivery/outbox.c), and skip the row trigger (crm._outbox_recording()
-- is true only there).  On a distributed installation these triggers are
-- on each shard (TG_RELID the shard), and crm.outbox_due is each node's own.
-- ---------------------------------------------------------------------------
CREATE FUNCTION crm._outbox_recording() RETURNS boolean
	AS 'MODULE_PATHNAME', 'crm_outbox_recording' LANGUAGE C VOLATILE;

-- (C, outbox.c: in one INSERT, as the owner through the automation scope)
CREATE FUNCTION crm._outbox_queued() RETURNS trigger
	AS 'MODULE_PATHNAME', 'crm_outbox_queued' LANGUAGE C;

-- Deletes a message's row of crm.outbox_due, found by a probe of its
-- primary key (C, outbox.c): crm.outbox_due is emptied and filled all day,
-- its statistics often say "empty", and a kept plan could read all of it.
CREATE FUNCTION crm._outbox_due_forget(message_id bigint, rel regclass) RETURNS boolean
	AS 'MODULE_PATHNAME', 'crm_outbox_due_forget' LANGUAGE C VOLATILE STRICT;

CREATE FUNCTION crm._outbox_changed() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
	IF TG_OP IN ('UPDATE', 'DELETE') THEN
		PERFORM crm._outbox_due_forget(OLD.id, TG_RELID);
	END IF;
	IF TG_OP = 'UPDATE' AND NEW.sent_at IS NULL AND NEW.next_attempt_at < 'infinity' THEN
		INSERT INTO crm.outbox_due (message_id, rel, next_attempt_at)
		VALUES (NEW.id, TG_RELID, NEW.next_attempt_at);
	END IF;
	RETURN NULL;
END
$$;

CREATE FUNCTION crm._outbox_truncated() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
	DELETE FROM crm.outbox_due d WHERE d.rel = TG_RELID;
	RETURN NULL;
END
$$;

CREATE TRIGGER outbox_queued AFTER INSERT ON crm.outbox
	REFERENCING NEW TABLE AS new_rows
	FOR EACH STATEMENT EXECUTE FUNCTION crm._outbox_queued();
CREATE TRIGGER outbox_rescheduled AFTER UPDATE OF id, next_attempt_at, sent_at ON crm.outbox
	FOR EACH ROW WHEN ((OLD.id <> NEW.id OR OLD.next_attempt_at IS DISTINCT FROM NEW.next_attempt_at
						OR (OLD.sent_at IS NULL) <> (NEW.sent_at IS NULL))
					   AND NOT crm._outbox_recording())
	EXECUTE FUNCTION crm._outbox_changed();
CREATE TRIGGER outbox_deleted AFTER DELETE ON crm.outbox
	FOR EACH ROW WHEN (OLD.sent_at IS NULL AND OLD.next_attempt_at < 'infinity')
	EXECUTE FUNCTION crm._outbox_changed();
CREATE TRIGGER outbox_truncated AFTER TRUNCATE ON crm.outbox
	FOR EACH STATEMENT EXECUTE FUNCTION crm._outbox_truncated();

-- Makes crm.outbox_due hold exactly the messages of rel (crm.outbox or a
-- shard of it) not yet done: after rows were loaded with triggers disabled
-- (pg_restore --disable-triggers, session_replication_role = replica), an
-- upgrade, crm.distribute().  Reads the whole table.  Returns the rows added.
CREATE FUNCTION crm._outbox_due_rebuild(p_rel regclass DEFAULT 'crm.outbox') RETURNS bigint
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
	n bigint;
BEGIN
	EXECUTE format('DELETE FROM crm.outbox_due d WHERE d.rel = $1
					  AND NOT EXISTS (SELECT FROM %s o WHERE o.id = d.message_id
									   AND o.sent_at IS NULL AND o.next_attempt_at < ''infinity''
									   AND o.next_attempt_at = d.next_attempt_at)', p_rel)
		USING p_rel;
	EXECUTE format('INSERT INTO crm.outbox_due (message_id, rel, next_attempt_at)
					SELECT o.id, $1, o.next_attempt_at FROM %s o
					 WHERE o.sent_at IS NULL AND o.next_attempt_at < ''infinity''
					ON CONFLICT (message_id, rel) DO NOTHING', p_rel)
		USING p_rel;
	GET DIAGNOSTICS n = ROW_COUNT;
	RETURN n;
END
$$;
REVOKE ALL ON FUNCTION crm._outbox_due_rebuild(regclass) FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION crm._outbox_recording(), crm._outbox_queued(), crm._outbox_changed(),
	crm._outbox_truncated(), crm._outbox_due_forget(bigint, regclass) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION crm._outbox_recording(), crm._outbox_queued(), crm._outbox_changed(),
	crm._outbox_truncated(), crm._outbox_due_rebuild(regclass) TO crm_admin;
-- the messages of the outbox not yet done
SELECT crm._outbox_due_rebuild();

CREATE OR REPLACE FUNCTION crm._claim_messages(p_limit integer, p_lease interval, p_expired boolean DEFAULT true,
									p_busy text[] DEFAULT '{}', p_after_at timestamptz DEFAULT NULL,
									p_after_id bigint DEFAULT NULL)
RETURNS TABLE (id bigint, channel text, attempts integer, idempotency_key text,
			   provider_id bigint, url text, method text, headers text[], body text,
			   secret text, username text, mail_from text, rcpt text[], subject text,
			   html boolean, tls text, attachments text[], error text,
			   ca text, client_cert text, client_key text, charset text, due_at timestamptz)
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
-- called many times a second: plan it once.  A generic plan does not know
-- the limit and, with many messages due, would rather read the whole table
-- and sort it: the claim reads crm.outbox_due in order, whatever the statistics.
SET plan_cache_mode = force_generic_plan
SET enable_seqscan = off
SET jit = off
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
				SELECT d.ctid
				  FROM crm.outbox_due q
				  JOIN crm.outbox d ON d.id = q.message_id
				 WHERE q.rel = 'crm.outbox'::regclass AND q.next_attempt_at <= now()
				   -- from the start, or after the given message
				   AND (q.next_attempt_at, q.message_id) > (coalesce(p_after_at, '-infinity'), coalesce(p_after_id, 0))
				   AND d.sent_at IS NULL AND d.next_attempt_at < 'infinity'
				   AND (d.status IN ('pending', 'failed')
						OR (p_expired AND d.status = 'sending'
							AND (d.lease_until < now() OR d.claimed_at < pg_postmaster_start_time())))
				 ORDER BY q.next_attempt_at, q.message_id
				 LIMIT p_limit
				 FOR UPDATE OF d SKIP LOCKED)
			ELSE ARRAY(
				-- skipping busy endpoints (a webhook's URL, else its
				-- provider's): the same, among the first 2,000 due messages
				-- (in their order: the nested loop over them keeps it), so
				-- that a long backlog for a busy endpoint is not read again
				-- and again
				SELECT d.ctid
				  FROM unnest(ARRAY(SELECT q.message_id FROM crm.outbox_due q
									 WHERE q.rel = 'crm.outbox'::regclass AND q.next_attempt_at <= now()
									 ORDER BY q.next_attempt_at, q.message_id
									 LIMIT 2000)) AS w (message_id)
				  JOIN crm.outbox d ON d.id = w.message_id
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
		RETURNING o.id, o.channel, o.attempts, o.idempotency_key, o.provider_id, o.payload, o.next_attempt_at
	), resolved AS (
		SELECT c.*, p.id AS p_id, p.active AS p_active, p.name AS p_name,
			   coalesce(p.config, '{}') AS cfg, s.secret AS p_secret, s.client_key AS p_client_key,
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
												 ('email', 'charset', 'string'),
												 ('openline', 'text', 'string'), ('openline', 'hidden', 'boolean'),
												 ('openline', 'attachments', 'array'), ('openline', 'client', 'object'),
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
				WHEN r.channel IN ('email', 'openline') THEN r.cfg ->> 'url'
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
				-- an open-channel message: the payload as the action wrote it
				WHEN r.channel = 'openline' THEN r.payload::text
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
				WHEN r.channel = 'openline' AND (r.payload -> 'hidden') = 'true' THEN
					'a hidden open-channel message is never sent to the client'
				WHEN r.channel = 'openline' AND r.p_secret IS NULL THEN
					format('openline provider "%s" has no signing secret: give one with crm.update_provider(id, secret => ...)',
						   r.p_name)
				WHEN r.own_headers
					 AND EXISTS (SELECT FROM jsonb_each_text(r.payload -> 'headers') h
								  WHERE h.value ~ '[\r\n]' OR h.key !~ '^[A-Za-z0-9!#$%&''*+.^_`|~-]+$') THEN
					'a header name is not a token or a header value contains CR or LF'
		   END,
		   r.cfg ->> 'ca', r.cfg ->> 'client_cert', r.p_client_key,
		   CASE WHEN r.channel = 'email' THEN r.payload ->> 'charset' END,
		   r.next_attempt_at
	  FROM rendered r;
END
$$;

CREATE OR REPLACE FUNCTION crm._next_message_due() RETURNS timestamptz
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
	SELECT least((SELECT q.next_attempt_at FROM crm.outbox_due q JOIN crm.outbox o ON o.id = q.message_id
				   WHERE q.rel = 'crm.outbox'::regclass
					 AND o.sent_at IS NULL AND o.status IN ('pending', 'failed')
				   ORDER BY q.rel, q.next_attempt_at, q.message_id LIMIT 1),
				 (SELECT min(o.lease_until) FROM crm.outbox_due q JOIN crm.outbox o ON o.id = q.message_id
				   WHERE q.rel = 'crm.outbox'::regclass AND q.next_attempt_at <= now()
					 AND o.sent_at IS NULL AND o.status = 'sending'));
$$;

CREATE OR REPLACE FUNCTION crm.cleanup_outbox(older_than interval DEFAULT NULL) RETURNS bigint
-- PL/pgSQL, the limit a parameter: Citus plans no SQL function with
-- parameters on distributed tables, nor a stable function in a COALESCE of a
-- DELETE there
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
	n bigint;
	v_before timestamptz := now() - coalesce(older_than, current_setting('crm.outbox_retention')::interval);
BEGIN
	WITH d AS (
		DELETE FROM crm.outbox
		 WHERE created_at < v_before
		   AND status = 'sent'
		   AND sent_at < v_before
		RETURNING 1)
	SELECT count(*) INTO n FROM d;
	RETURN n;
END
$$;

CREATE OR REPLACE FUNCTION crm._outbox_shard_claims() RETURNS TABLE (shard text, claim text)
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	r record;
	template text := pg_get_functiondef(
		'crm._claim_messages(integer, interval, boolean, text[], timestamptz, bigint)'::regprocedure);
	version text := md5(template);
	def text;
	t text;
	local_shard text;
BEGIN
	FOR r IN EXECUTE 'SELECT s.shardid FROM pg_catalog.pg_dist_shard s
						JOIN pg_catalog.pg_dist_placement p ON p.shardid = s.shardid
					   WHERE s.logicalrelid = ''crm.outbox''::regclass
						 AND p.groupid = (SELECT groupid FROM pg_catalog.pg_dist_local_group)
					   ORDER BY s.shardid' LOOP
		shard := 'crm.outbox_' || r.shardid;
		claim := 'crm._claim_messages_' || r.shardid;
		IF to_regproc(claim) IS NULL
		   OR obj_description(to_regproc(claim)::oid, 'pg_proc') IS DISTINCT FROM version THEN
			-- the node's workers make it once: the others wait, then see it
			PERFORM pg_advisory_xact_lock(hashtext('crm._outbox_shard_claims'));
		END IF;
		IF to_regproc(claim) IS NULL
		   OR obj_description(to_regproc(claim)::oid, 'pg_proc') IS DISTINCT FROM version THEN
			def := replace(template, 'FUNCTION crm._claim_messages(', 'FUNCTION ' || claim || '(');
			def := regexp_replace(def, '\mcrm\.outbox\M', shard, 'g');
			FOREACH t IN ARRAY ARRAY['provider', 'provider_secret', 'disabled_endpoint'] LOOP
				EXECUTE 'SELECT ''crm.'' || $1 || ''_'' || s.shardid FROM pg_catalog.pg_dist_shard s
						  WHERE s.logicalrelid = (''crm.'' || $1)::regclass'
					INTO STRICT local_shard USING t;
				def := regexp_replace(def, '\mcrm\.' || t || '\M', local_shard, 'g');
			END LOOP;
			-- this node's own function: Citus must not propagate it
			PERFORM set_config('citus.enable_ddl_propagation', 'off', true);
			EXECUTE def;
			EXECUTE format('REVOKE ALL ON FUNCTION %s(integer, interval, boolean, text[], timestamptz, bigint) FROM PUBLIC',
						   claim);
			EXECUTE format('COMMENT ON FUNCTION %s(integer, interval, boolean, text[], timestamptz, bigint) IS %L',
						   claim, version);
			-- the shard's messages not yet done, in this node's crm.outbox_due
			-- (those its rows had when Citus copied them into the shard)
			PERFORM crm._outbox_due_rebuild(shard::regclass);
		END IF;
		RETURN NEXT;
	END LOOP;
END
$$;

CREATE OR REPLACE FUNCTION crm.distribute() RETURNS TABLE (tbl text, became text)
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
SET client_min_messages = warning
AS $fn$
DECLARE
	p record;
	k record;
	n_workers integer;
BEGIN
	IF NOT EXISTS (SELECT FROM pg_extension WHERE extname = 'citus') THEN
		RAISE EXCEPTION 'crm.distribute() needs the citus extension'
			USING ERRCODE = '55000',
				  HINT = 'Install Citus on every node, preload it before crm_automation, CREATE EXTENSION citus.';
	END IF;
	IF EXISTS (SELECT FROM pg_catalog.pg_dist_partition WHERE logicalrelid = 'crm.deal'::regclass) THEN
		RAISE EXCEPTION 'this installation is already distributed' USING ERRCODE = '55000',
			DETAIL = 'crm.deal is already a distributed table.',
			HINT = 'Nothing to do: see docs/citus.md for what crm.distribute() made.';
	END IF;
	EXECUTE 'SELECT count(*) FROM pg_dist_node WHERE noderole = ''primary'' AND groupid <> 0
			   AND isactive' INTO n_workers;
	IF n_workers = 0 THEN
		RAISE EXCEPTION 'the Citus cluster has no worker node' USING ERRCODE = '55000',
			HINT = 'Add the workers first: SELECT citus_add_node(host, port).';
	END IF;
	EXECUTE 'SELECT citus_is_coordinator()' INTO STRICT k;
	IF NOT k.citus_is_coordinator THEN
		RAISE EXCEPTION 'crm.distribute() runs on the coordinator' USING ERRCODE = '55000',
			HINT = 'Connect to the coordinator of the Citus cluster and run it there.';
	END IF;

	SET LOCAL citus.enable_ddl_propagation = off;
	SET LOCAL citus.enable_unsafe_triggers = on;
	SET LOCAL citus.enable_local_reference_table_foreign_keys = off;
	SET LOCAL citus.multi_shard_modify_mode = 'sequential';

	-- 1. Every node's copy takes the distributed layout.
	-- a cycle (department.head_id, user.department_id) and keys between
	-- tables that are no longer co-located come back after (3.)
	PERFORM crm._on_every_node('ALTER TABLE crm.department DROP CONSTRAINT department_head_id_fkey');
	PERFORM crm._on_every_node('ALTER TABLE crm.calendar_event DROP CONSTRAINT calendar_event_activity_id_fkey');
	PERFORM crm._on_every_node('ALTER TABLE crm.process_log DROP CONSTRAINT process_log_instance_id_fkey');
	FOR p IN SELECT * FROM crm._distribution_plan() d WHERE d.dist_column NOT IN ('id', 'local') ORDER BY d.ord LOOP
		-- keys start with the distribution column
		FOR k IN SELECT c.conname, c.contype,
						array_to_string(ARRAY(SELECT quote_ident(a.attname)
												FROM unnest(c.conkey) WITH ORDINALITY AS u (n, o)
												JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = u.n
											   ORDER BY u.o), ', ') AS cols
				   FROM pg_constraint c
				  WHERE c.conrelid = ('crm.' || p.tbl)::regclass AND c.contype IN ('p', 'u') LOOP
			PERFORM crm._on_every_node(format('ALTER TABLE crm.%I DROP CONSTRAINT %I, ADD CONSTRAINT %I %s (%I, %s)',
											  p.tbl, k.conname, k.conname,
											  CASE k.contype WHEN 'p' THEN 'PRIMARY KEY' ELSE 'UNIQUE' END,
											  p.dist_column, k.cols));
		END LOOP;
		EXECUTE format('UPDATE crm.%I SET %I = 0 WHERE %I IS NULL', p.tbl, p.dist_column, p.dist_column);
		PERFORM crm._on_every_node(format('ALTER TABLE crm.%I ALTER %I SET DEFAULT 0, ALTER %I SET NOT NULL',
										  p.tbl, p.dist_column, p.dist_column));
	END LOOP;

	-- 2. Ids: each worker node's sequences draw from a range of their own.
	PERFORM crm._on_every_node($cmd$DO $do$
		DECLARE
			s record;
			g bigint := coalesce((SELECT groupid FROM pg_catalog.pg_dist_local_group), 0);
		BEGIN
			IF g = 0 THEN RETURN; END IF;
			FOR s IN SELECT c.oid::regclass AS seq FROM pg_class c
					  WHERE c.relkind = 'S' AND c.relnamespace = 'crm'::regnamespace LOOP
				EXECUTE format('ALTER SEQUENCE %s MINVALUE %s MAXVALUE %s START %s RESTART', s.seq,
							   (g << 48) + 1, ((g + 1) << 48) - 1, (g << 48) + 1);
			END LOOP;
		END $do$$cmd$);

	-- 3. The functions users call in their queries read definitions: in a
	-- query on distributed items they run on the nodes of the shards, where
	-- Citus refuses their reads of the reference tables' copies (a nested
	-- distributed execution) unless allowed for the call.
	FOR k IN SELECT f.oid::regprocedure AS fn FROM pg_catalog.pg_proc f
			  WHERE f.pronamespace = 'crm'::regnamespace
				AND f.proname IN ('stage', 'default_pipeline', 'supervisor_of', 'work_time_add') LOOP
		PERFORM crm._on_every_node(format('ALTER FUNCTION %s SET citus.allow_nested_distributed_execution = on', k.fn));
	END LOOP;

	-- 4. Distribute.
	FOR p IN SELECT * FROM crm._distribution_plan() d ORDER BY d.ord LOOP
		IF p.dist_column IS NULL THEN
			EXECUTE 'SELECT create_reference_table($1)' USING ('crm.' || p.tbl)::regclass;
			tbl := p.tbl; became := 'reference table';
		ELSIF p.dist_column = 'local' THEN
			EXECUTE 'SELECT citus_add_local_table_to_metadata($1, cascade_via_foreign_keys => true)' USING ('crm.' || p.tbl)::regclass;
			tbl := p.tbl; became := 'coordinator table';
		ELSE
			EXECUTE 'SELECT create_distributed_table($1, $2, colocate_with => $3)'
				USING ('crm.' || p.tbl)::regclass, p.dist_column,
					  CASE WHEN p.tbl = 'deal' THEN 'none' ELSE 'crm.deal' END;
			tbl := p.tbl; became := 'distributed by ' || p.dist_column;
		END IF;
		RETURN NEXT;
	END LOOP;
	SET LOCAL citus.enable_ddl_propagation = on;
	-- the messages not yet done are now in shards: each node's workers list
	-- them in its crm.outbox_due when they first claim from a shard
	DELETE FROM crm.outbox_due WHERE rel = 'crm.outbox'::regclass;
	-- crm.robot_log is a view that crm_user reads: Citus checks the query a
	-- view makes on the shards as the session's role, so that role reads
	-- the view's tables (the same rows; on one node it needs only the view)
	GRANT SELECT ON crm.automation_log, crm.robot_log_entry TO crm_user;
	ALTER TABLE crm.department ADD CONSTRAINT department_head_id_fkey
		FOREIGN KEY (head_id) REFERENCES crm."user" (id) ON DELETE SET NULL;
	ALTER TABLE crm.process_log ADD CONSTRAINT process_log_instance_id_fkey
		FOREIGN KEY (document_id, instance_id) REFERENCES crm.process_instance (document_id, id) ON DELETE CASCADE;
END
$fn$;


-- ---------------------------------------------------------------------------
-- Issue 17, delivery: the claim returns each message as stored with its
-- provider (crm._claim_leases), and the worker makes it ready to send in C
-- (src/delivery/render.c); crm._claim_messages shows the same from SQL.
-- Citus: each node's shard claims are made from crm._claim_leases.
-- ---------------------------------------------------------------------------
DROP FUNCTION crm._render_template(text, jsonb, text);
-- Replaces {name} placeholders of a provider template with the values of a
-- JSON object, escaped for the template's format: 'json' (inside a JSON
-- string), 'form' (application/x-www-form-urlencoded) or anything else as
-- is.  One pass over the template: a value is never searched for
-- placeholders, so a text that says "{secret}" stays as it is.
-- Placeholders not in vars stay as written.  The worker renders SMS and
-- call providers' templates with the same code (C, render.c).
CREATE FUNCTION crm._render_template(tpl text, vars jsonb, format text DEFAULT 'text')
RETURNS text
	AS 'MODULE_PATHNAME', 'crm_render_template' LANGUAGE C IMMUTABLE;
REVOKE EXECUTE ON FUNCTION crm._render_template(text, jsonb, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION crm._render_template(text, jsonb, text) TO crm_admin;

DROP FUNCTION crm._claim_messages(integer, interval, boolean, text[], timestamptz, bigint);
CREATE FUNCTION crm._claim_leases(p_limit integer, p_lease interval, p_expired boolean DEFAULT true,
								  p_busy text[] DEFAULT '{}', p_after_at timestamptz DEFAULT NULL,
								  p_after_id bigint DEFAULT NULL)
RETURNS TABLE (id bigint, channel text, attempts integer, idempotency_key text, payload jsonb,
			   due_at timestamptz, provider_id bigint, provider_active boolean, provider_name text,
			   provider_config jsonb, secret text, client_key text, gone text)
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
-- called many times a second: plan it once.  A generic plan does not know
-- the limit and, with many messages due, would rather read the whole table
-- and sort it: the claim reads crm.outbox_due in order, whatever the statistics.
SET plan_cache_mode = force_generic_plan
SET enable_seqscan = off
SET jit = off
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
				SELECT d.ctid
				  FROM crm.outbox_due q
				  JOIN crm.outbox d ON d.id = q.message_id
				 WHERE q.rel = 'crm.outbox'::regclass AND q.next_attempt_at <= now()
				   -- from the start, or after the given message
				   AND (q.next_attempt_at, q.message_id) > (coalesce(p_after_at, '-infinity'), coalesce(p_after_id, 0))
				   AND d.sent_at IS NULL AND d.next_attempt_at < 'infinity'
				   AND (d.status IN ('pending', 'failed')
						OR (p_expired AND d.status = 'sending'
							AND (d.lease_until < now() OR d.claimed_at < pg_postmaster_start_time())))
				 ORDER BY q.next_attempt_at, q.message_id
				 LIMIT p_limit
				 FOR UPDATE OF d SKIP LOCKED)
			ELSE ARRAY(
				-- skipping busy endpoints (a webhook's URL, else its
				-- provider's): the same, among the first 2,000 due messages
				-- (in their order: the nested loop over them keeps it), so
				-- that a long backlog for a busy endpoint is not read again
				-- and again
				SELECT d.ctid
				  FROM unnest(ARRAY(SELECT q.message_id FROM crm.outbox_due q
									 WHERE q.rel = 'crm.outbox'::regclass AND q.next_attempt_at <= now()
									 ORDER BY q.next_attempt_at, q.message_id
									 LIMIT 2000)) AS w (message_id)
				  JOIN crm.outbox d ON d.id = w.message_id
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
		RETURNING o.id, o.channel, o.attempts, o.idempotency_key, o.provider_id, o.payload, o.next_attempt_at
	)
	SELECT c.id, c.channel, c.attempts, c.idempotency_key, c.payload, c.next_attempt_at,
		   p.id, p.active, p.name, coalesce(p.config, '{}'), s.secret, s.client_key, g.reason
	  FROM claimed c
	  LEFT JOIN crm.provider p
		ON p.id = coalesce(c.provider_id,
						   (SELECT d.id FROM crm.provider d
							 WHERE d.channel = c.channel AND d.is_default))
	  LEFT JOIN crm.provider_secret s ON s.provider_id = p.id
	  LEFT JOIN crm.disabled_endpoint g ON c.channel = 'webhook' AND g.url = c.payload ->> 'url';
END
$$;
REVOKE EXECUTE ON FUNCTION crm._claim_leases(integer, interval, boolean, text[], timestamptz, bigint) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION crm._claim_leases(integer, interval, boolean, text[], timestamptz, bigint) TO crm_admin;

-- A leased message made ready to send, as the worker sends it (C,
-- render.c): crm._claim_leases' columns in, crm._claim_messages' out.
CREATE FUNCTION crm._render_claimed(l_id bigint, l_channel text, l_attempts integer, l_key text,
									l_payload jsonb, l_due_at timestamptz, l_provider_id bigint,
									l_provider_active boolean, l_provider_name text,
									l_provider_config jsonb, l_secret text, l_client_key text, l_gone text,
									OUT id bigint, OUT channel text, OUT attempts integer,
									OUT idempotency_key text, OUT provider_id bigint, OUT url text,
									OUT method text, OUT headers text[], OUT body text, OUT secret text,
									OUT username text, OUT mail_from text, OUT rcpt text[],
									OUT subject text, OUT html boolean, OUT tls text,
									OUT attachments text[], OUT error text, OUT ca text,
									OUT client_cert text, OUT client_key text, OUT charset text,
									OUT due_at timestamptz)
	AS 'MODULE_PATHNAME', 'crm_render_claimed' LANGUAGE C IMMUTABLE;
REVOKE EXECUTE ON FUNCTION crm._render_claimed(bigint, text, integer, text, jsonb, timestamptz, bigint, boolean, text, jsonb, text, text, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION crm._render_claimed(bigint, text, integer, text, jsonb, timestamptz, bigint, boolean, text, jsonb, text, text, text) TO crm_admin;

-- The worker's claim as the worker sends the messages (crm._claim_leases,
-- each message rendered by crm._render_claimed): what a test or an
-- administrator sees of a claim.
CREATE FUNCTION crm._claim_messages(p_limit integer, p_lease interval, p_expired boolean DEFAULT true,
									p_busy text[] DEFAULT '{}', p_after_at timestamptz DEFAULT NULL,
									p_after_id bigint DEFAULT NULL)
RETURNS TABLE (id bigint, channel text, attempts integer, idempotency_key text,
			   provider_id bigint, url text, method text, headers text[], body text,
			   secret text, username text, mail_from text, rcpt text[], subject text,
			   html boolean, tls text, attachments text[], error text,
			   ca text, client_cert text, client_key text, charset text, due_at timestamptz)
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $$
	SELECT r.*
	  FROM crm._claim_leases(p_limit, p_lease, p_expired, p_busy, p_after_at, p_after_id) l,
		   LATERAL crm._render_claimed(l.id, l.channel, l.attempts, l.idempotency_key, l.payload,
									   l.due_at, l.provider_id, l.provider_active, l.provider_name,
									   l.provider_config, l.secret, l.client_key, l.gone) r
$$;
REVOKE EXECUTE ON FUNCTION crm._claim_messages(integer, interval, boolean, text[], timestamptz, bigint) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION crm._claim_messages(integer, interval, boolean, text[], timestamptz, bigint) TO crm_admin;

CREATE OR REPLACE FUNCTION crm._outbox_shard_claims() RETURNS TABLE (shard text, claim text)
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	r record;
	template text := pg_get_functiondef(
		'crm._claim_leases(integer, interval, boolean, text[], timestamptz, bigint)'::regprocedure);
	version text := md5(template);
	def text;
	t text;
	local_shard text;
BEGIN
	FOR r IN EXECUTE 'SELECT s.shardid FROM pg_catalog.pg_dist_shard s
						JOIN pg_catalog.pg_dist_placement p ON p.shardid = s.shardid
					   WHERE s.logicalrelid = ''crm.outbox''::regclass
						 AND p.groupid = (SELECT groupid FROM pg_catalog.pg_dist_local_group)
					   ORDER BY s.shardid' LOOP
		shard := 'crm.outbox_' || r.shardid;
		claim := 'crm._claim_leases_' || r.shardid;
		IF to_regproc(claim) IS NULL
		   OR obj_description(to_regproc(claim)::oid, 'pg_proc') IS DISTINCT FROM version THEN
			-- the node's workers make it once: the others wait, then see it
			PERFORM pg_advisory_xact_lock(hashtext('crm._outbox_shard_claims'));
		END IF;
		IF to_regproc(claim) IS NULL
		   OR obj_description(to_regproc(claim)::oid, 'pg_proc') IS DISTINCT FROM version THEN
			def := replace(template, 'FUNCTION crm._claim_leases(', 'FUNCTION ' || claim || '(');
			def := regexp_replace(def, '\mcrm\.outbox\M', shard, 'g');
			FOREACH t IN ARRAY ARRAY['provider', 'provider_secret', 'disabled_endpoint'] LOOP
				EXECUTE 'SELECT ''crm.'' || $1 || ''_'' || s.shardid FROM pg_catalog.pg_dist_shard s
						  WHERE s.logicalrelid = (''crm.'' || $1)::regclass'
					INTO STRICT local_shard USING t;
				def := regexp_replace(def, '\mcrm\.' || t || '\M', local_shard, 'g');
			END LOOP;
			-- this node's own function: Citus must not propagate it
			PERFORM set_config('citus.enable_ddl_propagation', 'off', true);
			EXECUTE def;
			EXECUTE format('REVOKE ALL ON FUNCTION %s(integer, interval, boolean, text[], timestamptz, bigint) FROM PUBLIC',
						   claim);
			EXECUTE format('COMMENT ON FUNCTION %s(integer, interval, boolean, text[], timestamptz, bigint) IS %L',
						   claim, version);
			-- the claims of earlier versions (before crm._claim_leases)
			EXECUTE format('DROP FUNCTION IF EXISTS crm.%I(integer, interval, boolean, text[], timestamptz, bigint),
							crm.%1$I(integer, interval, boolean, text[])', '_claim_messages_' || r.shardid);
			-- the shard's messages not yet done, in this node's crm.outbox_due
			-- (those its rows had when Citus copied them into the shard)
			PERFORM crm._outbox_due_rebuild(shard::regclass);
		END IF;
		RETURN NEXT;
	END LOOP;
END
$$;
