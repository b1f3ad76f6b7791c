#!/usr/bin/env bash
# The worker and a poisoned search_path: the database's default path is set
# to a schema a crm_user owns, holding an operator (bigint = bigint) and
# functions that record who runs them.  The worker connects with that
# database default, claims, sends a webhook and runs a delayed robot: none of
# her code may run as the worker (a superuser).
set -euo pipefail
cd "$(dirname "$0")/../.."
. scripts/lib.sh
. test/integration/common.bash

# This script's own sessions keep a clean path, whatever the database's.
export PGOPTIONS="-c search_path=pg_catalog,public"
it_begin worker_search_path "crm.allowed_hosts = '127.0.0.1'"
it_sink_http
B=http://127.0.0.1:$HTTP_PORT

q "CREATE ROLE mallory_wsp NOLOGIN;
   GRANT crm_user TO mallory_wsp;
   CREATE SCHEMA evil AUTHORIZATION mallory_wsp;
   CREATE TABLE evil.pwned (who text, what text);
   ALTER TABLE evil.pwned OWNER TO mallory_wsp;
   GRANT USAGE ON SCHEMA evil TO PUBLIC;
   GRANT INSERT, SELECT ON evil.pwned TO PUBLIC;
   SET ROLE mallory_wsp;
   CREATE FUNCTION evil.eq(bigint, bigint) RETURNS boolean LANGUAGE plpgsql AS \$\$
   BEGIN
	   INSERT INTO evil.pwned VALUES (current_user, 'operator =');
	   RETURN \$1 OPERATOR(pg_catalog.=) \$2;
   END \$\$;
   CREATE OPERATOR evil.= (LEFTARG = bigint, RIGHTARG = bigint, FUNCTION = evil.eq,
	   COMMUTATOR = OPERATOR(evil.=));
   CREATE FUNCTION evil.now() RETURNS timestamptz LANGUAGE plpgsql AS \$\$
   BEGIN
	   INSERT INTO evil.pwned VALUES (current_user, 'now');
	   RETURN pg_catalog.now();
   END \$\$;
   RESET ROLE;" >/dev/null

q "INSERT INTO crm.department (id, name) VALUES (1, 'Sales');
   INSERT INTO crm.user (id, name, email, department_id) VALUES (1, 'Mia', 'mia@example.com', 1);" >/dev/null
P=$(q "SELECT crm.stage('deal', 'preparation')")
q "SELECT crm.add_robot($P, 'webhook', '{\"url\": \"$B/ok/deal/{{id}}\"}')" >/dev/null
q "SELECT crm.add_robot($P, 'add_comment', '{\"text\": \"a second later\"}', delay => '{\"after\": \"1 second\"}')" >/dev/null
q "INSERT INTO crm.deal (id, title, responsible_id) VALUES (7, 'Shadow', 1)" >/dev/null

# The database default path puts her schema first; workers reconnect with it.
q "ALTER DATABASE crm_it SET search_path = evil, pg_catalog" >/dev/null
wait_for "SELECT count(*) >= 1 FROM crm.worker_status() WHERE role = 'delivery' AND database = 'crm_it' AND worker = 0 AND state = 'running'" 20 || true
old=$(q "SELECT pid FROM crm.worker_status() WHERE role = 'delivery' AND database = 'crm_it' AND worker = 0")
q "SELECT pg_terminate_backend(pid) FROM crm.worker_status() WHERE database = 'crm_it' AND pid IS NOT NULL" >/dev/null
wait_for "SELECT count(*) = 1 FROM crm.worker_status() WHERE role = 'delivery' AND database = 'crm_it' AND worker = 0
          AND state = 'running' AND pid IS DISTINCT FROM ${old:-0}" 20 || true
check "the worker reconnected with the database's path" "evil, pg_catalog" \
	"$(q "SELECT setting FROM pg_db_role_setting s, unnest(s.setconfig) AS c(setting0), LATERAL (SELECT split_part(setting0, '=', 2) AS setting) x WHERE s.setdatabase = (SELECT oid FROM pg_database WHERE datname = 'crm_it')")"

q "UPDATE crm.deal SET stage_id = $P WHERE id = 7" >/dev/null
wait_for "SELECT count(*) = 1 FROM crm.outbox WHERE status = 'sent'" 15 || true
wait_for "SELECT count(*) = 1 FROM crm.timeline_comment WHERE text = 'a second later'" 15 || true
check "the webhook was sent" 1 "$(q "SELECT count(*) FROM crm.outbox WHERE status = 'sent'")"
check "the delayed robot ran" 1 "$(q "SELECT count(*) FROM crm.timeline_comment WHERE text = 'a second later'")"
check "none of her code ran as the worker" 0 "$(q "SELECT count(*) FROM evil.pwned WHERE who <> 'mallory_wsp'")"
check "the server log has no crash" 0 "$(grep -c 'terminated by signal' "$CRM_CLUSTER_DIR/server.log" || true)"
q "ALTER DATABASE crm_it RESET search_path" >/dev/null
it_end
