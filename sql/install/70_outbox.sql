
-- ---------------------------------------------------------------------------
-- Delivery: providers API, the worker's claim function, wake-up at commit,
-- observability views and requeue functions (SPEC §7).
--
-- The worker (src/delivery/worker.c) claims messages with crm._claim_leases() in a
-- short transaction, commits, sends them with libcurl, and records each
-- result in a second short transaction.  A message is done only once it is
-- sent or dead; a crash at any point leaves it pending or leased, never lost.
-- ---------------------------------------------------------------------------

-- Lease bookkeeping: when the current lease was taken.  A lease taken before
-- the server's last start belongs to a worker that no longer exists.
ALTER TABLE crm.outbox ADD COLUMN claimed_at timestamptz;

-- Every message is updated twice (claimed, then its result): room on its
-- page keeps the new versions next to the old ones (both are HOT updates:
-- see crm.outbox_due).
ALTER TABLE crm.outbox SET (fillfactor = 50);

-- Endpoints that answered 410 Gone: their further messages are dead.
CREATE TABLE crm.disabled_endpoint (
	url			text PRIMARY KEY,
	reason		text NOT NULL,
	disabled_at timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE crm.disabled_endpoint IS
	'Webhook URLs that answered 410 Gone; delete a row to send to it again';

-- ---------------------------------------------------------------------------
-- Webhook signatures (Standard Webhooks): v1,<base64 HMAC-SHA256 of
-- "id.timestamp.body"> with the key of a whsec_ secret (C, signature.c).
-- ---------------------------------------------------------------------------
CREATE FUNCTION crm.webhook_signature(secret text, msg_id text, ts bigint, body text)
	RETURNS text
	AS 'MODULE_PATHNAME', 'crm_webhook_signature_sql'
	LANGUAGE C IMMUTABLE STRICT;
COMMENT ON FUNCTION crm.webhook_signature(text, text, bigint, text) IS
	'The webhook-signature header value the worker sends for this message id, timestamp and body';

-- ---------------------------------------------------------------------------
-- Wake-up at commit: a statement trigger marks the transaction, and its
-- commit sets the database worker's latch (C, launcher.c).  Rolled-back
-- transactions wake nobody.  The argument 'jobs' marks crm.job's: a
-- worker's own commit that changed a job wakes the worker that runs jobs.
-- ---------------------------------------------------------------------------
CREATE FUNCTION crm._wake_worker() RETURNS trigger
	AS 'MODULE_PATHNAME', 'crm_wake_worker_trigger' LANGUAGE C;

CREATE TRIGGER wake_worker AFTER INSERT OR UPDATE ON crm.outbox
	FOR EACH STATEMENT EXECUTE FUNCTION crm._wake_worker();
CREATE TRIGGER wake_worker AFTER INSERT OR UPDATE ON crm.job
	FOR EACH STATEMENT EXECUTE FUNCTION crm._wake_worker('jobs');

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

-- Asks the launcher to start this database's worker once the transaction
-- commits (called at CREATE EXTENSION; harmless to call again).
CREATE FUNCTION crm.start_worker() RETURNS boolean
	AS 'MODULE_PATHNAME', 'crm_start_worker' LANGUAGE C;
COMMENT ON FUNCTION crm.start_worker() IS
	'Asks the launcher to start the delivery worker of this database at commit; false when the library is not preloaded';

-- Each worker's state, from shared memory: database, rank within its role,
-- pid, state, role ('delivery': the outbox; 'jobs': the job runners).
CREATE FUNCTION crm.worker_status(OUT database name, OUT worker integer, OUT pid integer, OUT state text,
								  OUT role text)
	RETURNS SETOF record
	AS 'MODULE_PATHNAME', 'crm_worker_status' LANGUAGE C;

-- ---------------------------------------------------------------------------
-- Providers
-- ---------------------------------------------------------------------------

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

-- Checks a provider definition; raises a clear error or returns nothing.
CREATE FUNCTION crm._validate_provider(p_channel text, p_name text, p_config jsonb, p_secret text)
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

CREATE FUNCTION crm._provider(p_id bigint) RETURNS crm.provider
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
	v	crm.provider;
BEGIN
	IF p_id IS NULL THEN
		RAISE EXCEPTION 'provider id must not be null'
			USING ERRCODE = 'null_value_not_allowed',
				  HINT = 'See SELECT id, channel, name FROM crm.provider.';
	END IF;
	SELECT * INTO v FROM crm.provider WHERE id = p_id;
	IF NOT FOUND THEN
		RAISE EXCEPTION 'provider % does not exist', p_id
			USING ERRCODE = 'undefined_object',
				  HINT = 'See SELECT id, channel, name FROM crm.provider.';
	END IF;
	RETURN v;
END
$$;

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

CREATE FUNCTION crm.delete_provider(provider_id bigint) RETURNS void
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

-- ---------------------------------------------------------------------------
-- The worker's claim.  Leases up to p_limit due messages (pending, failed
-- whose next attempt is due, and, when p_expired, sending ones whose lease
-- expired or was taken before the server started), oldest due first, and
-- returns each one as stored, with its provider (the one it names, else
-- its channel's default: config, secret, client key) and, for a webhook
-- whose URL answered 410 Gone, why.  The worker makes each one ready to
-- send in C (src/delivery/render.c: templates rendered, every field's
-- JSON type checked, crm._claim_messages shows the same); a message that
-- cannot be sent gets an error, and the worker marks it dead.
--
-- Every message is updated twice, claimed and then recorded; neither
-- changes an indexed column of crm.outbox, so PostgreSQL writes the new
-- versions on the same page without index entries (HOT updates).  Due
-- messages are read in crm.outbox_due's order (next_attempt_at,
-- message_id); messages being sent keep their row there: a claim from the
-- start reads past them (at most the requests in flight) and takes back
-- those whose lease ended, in the same pass.  The workers mostly claim
-- after the furthest message any of them claimed (p_after_at, p_after_id,
-- in that order), which skips those in flight, and from the start when
-- that comes back short and at least every 250 ms (src/delivery/worker.c).
-- The last column, due_at, is each message's place in that order.  A row
-- of crm.outbox_due whose message is done or gone is never claimed
-- (crm.cleanup_outbox deletes it).
-- ---------------------------------------------------------------------------
-- The endpoint of a URL as the worker counts its transfers: scheme and
-- authority, lower-cased; NULL when the URL has none (C, outbox.c).
CREATE FUNCTION crm._url_endpoint(url text) RETURNS text
	AS 'MODULE_PATHNAME', 'crm_url_endpoint_sql' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;

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

-- Earliest time a message becomes claimable: its next attempt, or the end
-- of a lease (both through crm.outbox_due: a lease is only ever taken on a
-- message already due, so leased messages lie before now() in it).
CREATE FUNCTION crm._next_message_due() RETURNS timestamptz
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
	SELECT least((SELECT q.next_attempt_at FROM crm.outbox_due q JOIN crm.outbox o ON o.id = q.message_id
				   WHERE q.rel = 'crm.outbox'::regclass
					 AND o.sent_at IS NULL AND o.status IN ('pending', 'failed')
				   ORDER BY q.rel, q.next_attempt_at, q.message_id LIMIT 1),
				 (SELECT min(o.lease_until) FROM crm.outbox_due q JOIN crm.outbox o ON o.id = q.message_id
				   WHERE q.rel = 'crm.outbox'::regclass AND q.next_attempt_at <= now()
					 AND o.sent_at IS NULL AND o.status = 'sending'));
$$;

-- ---------------------------------------------------------------------------
-- Notifications reach offline users by e-mail (seed 000): a notification for
-- a user who is offline and has an address also queues an e-mail.
-- ---------------------------------------------------------------------------
CREATE FUNCTION crm._notification_email() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
	v_user	crm.user;
BEGIN
	SELECT * INTO v_user FROM crm.user WHERE id = NEW.user_id;
	IF v_user.online OR v_user.email IS NULL OR NOT v_user.active THEN
		RETURN NULL;
	END IF;
	INSERT INTO crm.outbox (channel, payload, entity_type, entity_id, robot_id, process_instance_id)
	VALUES ('email',
			jsonb_build_object('to', jsonb_build_array(v_user.email),
							   'subject', 'Notification',
							   'body', coalesce(NEW.email_text, NEW.text),
							   'html', false, 'charset', 'utf-8',
							   'notification_id', NEW.id),
			NEW.entity_type, NEW.entity_id, NEW.robot_id, NEW.process_instance_id);
	RETURN NULL;
END
$$;
CREATE TRIGGER email_offline AFTER INSERT ON crm.notification
	FOR EACH ROW EXECUTE FUNCTION crm._notification_email();

-- ---------------------------------------------------------------------------
-- Observability
-- ---------------------------------------------------------------------------
CREATE VIEW crm.outbox_queue AS
	SELECT channel, status, count(*) AS messages,
		   min(created_at) AS oldest, now() - min(created_at) AS oldest_age,
		   min(next_attempt_at) FILTER (WHERE status IN ('pending', 'failed')) AS next_attempt_at
	  FROM crm.outbox
	 WHERE status <> 'sent'
	 GROUP BY channel, status;
COMMENT ON VIEW crm.outbox_queue IS 'Messages not yet sent, by channel and status';

CREATE VIEW crm.outbox_stats AS
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
COMMENT ON VIEW crm.outbox_stats IS 'Queue depth, send rate and oldest waiting message per channel';

CREATE VIEW crm.outbox_failures AS
	SELECT id, channel, status, attempts, response_code, last_error, next_attempt_at,
		   entity_type, entity_id, robot_id, updated_at
	  FROM crm.outbox
	 WHERE status IN ('failed', 'dead')
	 ORDER BY updated_at DESC;
COMMENT ON VIEW crm.outbox_failures IS 'Messages whose last attempt failed (retrying) or that were given up, latest first';

CREATE VIEW crm.outbox_dead AS
	SELECT id, channel, attempts, response_code, last_error, response_excerpt,
		   entity_type, entity_id, robot_id, created_at, updated_at
	  FROM crm.outbox
	 WHERE status = 'dead';
COMMENT ON VIEW crm.outbox_dead IS 'Messages given up; requeue them with crm.retry_message(id) or crm.retry_dead()';

-- The retry delays under the current settings (C, outbox.c).
CREATE FUNCTION crm.retry_schedule(OUT attempt integer, OUT wait_min interval, OUT wait_max interval)
	RETURNS SETOF record
	AS 'MODULE_PATHNAME', 'crm_retry_schedule' LANGUAGE C STABLE;
COMMENT ON FUNCTION crm.retry_schedule() IS
	'For each failed attempt that is retried, the shortest and longest wait before the next (crm.retry_base_delay doubling, capped by crm.retry_max_delay, with jitter); the last of crm.max_attempts is final';

-- Requeues one failed or dead message for an immediate attempt, with a
-- fresh count of attempts.
-- The message is found, then locked and changed, by its item too: on Citus
-- its item (entity_id) is the outbox's distribution column, and a row is
-- locked in its shard only.
CREATE FUNCTION crm.retry_message(message_id bigint) RETURNS boolean
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

CREATE FUNCTION crm.retry_dead(channel text DEFAULT NULL) RETURNS bigint
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
COMMENT ON FUNCTION crm.retry_dead(text) IS 'Requeues every dead message (of one channel); returns how many';

-- Deletes sent messages older than crm.outbox_retention (created and sent
-- before it); the worker calls it every few minutes.  Returns how many were
-- deleted.  Found by created_at: no index of crm.outbox names sent_at,
-- which the worker's record changes (see crm.outbox_due).
CREATE FUNCTION crm.cleanup_outbox(older_than interval DEFAULT NULL) RETURNS bigint
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


-- A provider's secret goes to its URL's host (the SMTP password, an SMS or
-- robocall gateway's {secret}).  crm_admin may change a provider, by
-- crm.update_provider or a direct UPDATE, but not make it carry the secret
-- elsewhere: pointing it at another endpoint (scheme and authority) or
-- another channel removes its secret, which must then be given again.
CREATE FUNCTION crm._provider_secret_follows_url() RETURNS trigger
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
CREATE TRIGGER secret_follows_url AFTER UPDATE OF config, channel ON crm.provider
	FOR EACH ROW EXECUTE FUNCTION crm._provider_secret_follows_url();

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
