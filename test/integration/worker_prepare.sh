#!/usr/bin/env bash
# An ERROR raised while a message is prepared, by the claim itself
# (crm._claim_messages: the lease, the provider, the rendering), fails that
# message alone: it rolls back the claim of every message taken with it,
# so the worker claims the next batch one message at a time, each in a
# subtransaction; the one whose claim fails is dead with the error, logged,
# and the others are sent.  Two bad rows queued by hand, in between good
# ones:
#   - an attempts count of 2^31 - 1 (the claim's attempts + 1 overflows);
#   - a payload that the site's own trigger on crm.outbox refuses when it
#     is leased.
# The worker goes on delivering afterwards, and nothing crashed.
set -euo pipefail
cd "$(dirname "$0")/../.."
. scripts/lib.sh
. test/integration/common.bash

it_begin worker_prepare "crm.allowed_hosts = '127.0.0.1'" "crm.http_timeout = 5s"
it_sink_http
B=http://127.0.0.1:$HTTP_PORT
LOG=$CRM_CLUSTER_DIR/server.log
arrived() { grep -c "\"path\": \"$1" "$HTTP_LOG" || true; }

q "CREATE FUNCTION public.refuse_poison() RETURNS trigger LANGUAGE plpgsql AS \$\$
BEGIN
	IF NEW.status = 'sending' AND NEW.payload ? 'poison' THEN
		RAISE EXCEPTION 'the audit trigger refuses message %', NEW.id;
	END IF;
	RETURN NEW;
END \$\$"
q "CREATE TRIGGER refuse_poison BEFORE UPDATE ON crm.outbox FOR EACH ROW EXECUTE FUNCTION public.refuse_poison()"

echo "# two bad rows queued by hand between good messages, in one transaction"
q "ALTER SYSTEM SET crm.worker_enabled = off" >/dev/null && q "SELECT pg_reload_conf()" >/dev/null
sleep 0.3
q "BEGIN;
   INSERT INTO crm.outbox (channel, payload, entity_id, next_attempt_at)
   SELECT 'webhook', jsonb_build_object('url', '$B/ok/before/' || i), 100 + i, now() - interval '1 minute' + i * interval '1 ms'
	 FROM generate_series(1, 5) i;
   INSERT INTO crm.outbox (channel, payload, entity_id, attempts, next_attempt_at)
   VALUES ('webhook', jsonb_build_object('url', '$B/ok/overflow'), 1, 2147483647, now() - interval '30 seconds');
   INSERT INTO crm.outbox (channel, payload, entity_id, next_attempt_at)
   VALUES ('webhook', jsonb_build_object('url', '$B/ok/poison', 'poison', true), 2, now() - interval '20 seconds');
   INSERT INTO crm.outbox (channel, payload, entity_id, next_attempt_at)
   SELECT 'webhook', jsonb_build_object('url', '$B/ok/after/' || i), 200 + i, now() - interval '10 seconds' + i * interval '1 ms'
	 FROM generate_series(1, 5) i;
   COMMIT"
q "ALTER SYSTEM RESET crm.worker_enabled" >/dev/null && q "SELECT pg_reload_conf()" >/dev/null
wait_for "SELECT count(*) = 10 FROM crm.outbox WHERE entity_id > 100 AND status = 'sent'" 20 || true
check "the good messages before and after them are sent, each once" "10|5|5" \
	"$(q "SELECT count(*) FROM crm.outbox WHERE entity_id > 100 AND status = 'sent'")|$(arrived /ok/before/)|$(arrived /ok/after/)"
wait_for "SELECT count(*) = 2 FROM crm.outbox WHERE entity_id IN (1, 2) AND status = 'dead'" 10 || true
check "the attempts overflow: dead with the error, no request" \
	"dead|could not prepare the message: integer out of range|0" \
	"$(q "SELECT status || '|' || last_error FROM crm.outbox WHERE entity_id = 1")|$(arrived /ok/overflow)"
poison=$(q "SELECT id FROM crm.outbox WHERE entity_id = 2")
check "the refused payload: dead with the trigger's error, no request" \
	"dead|could not prepare the message: the audit trigger refuses message $poison|0" \
	"$(q "SELECT status || '|' || last_error FROM crm.outbox WHERE entity_id = 2")|$(arrived /ok/poison)"
check "each is logged with its message id" "1|1" \
	"$(grep -c "outbox message $(q "SELECT id FROM crm.outbox WHERE entity_id = 1") is dead: could not prepare the message: integer out of range" "$LOG" || true)|$(grep -c "outbox message $poison is dead: could not prepare the message: the audit trigger refuses" "$LOG" || true)"

echo "# and the worker goes on"
q "INSERT INTO crm.outbox (channel, payload, entity_id) SELECT 'webhook', jsonb_build_object('url', '$B/ok/later/' || i), 300 + i FROM generate_series(1, 20) i"
wait_for "SELECT count(*) = 20 FROM crm.outbox WHERE entity_id > 300 AND status = 'sent'" 10 || true
check "messages queued later are sent as usual" "20|20" \
	"$(q "SELECT count(*) FROM crm.outbox WHERE entity_id > 300 AND status = 'sent'")|$(arrived /ok/later/)"
check "a bad row queued alone is dead too" "dead" \
	"$(id=$(q "INSERT INTO crm.outbox (channel, payload) VALUES ('webhook', '{\"url\": \"$B/ok/poison-alone\", \"poison\": 1}') RETURNING id")
	   wait_for "SELECT status = 'dead' FROM crm.outbox WHERE id = $id" 10 || true
	   q "SELECT status FROM crm.outbox WHERE id = $id")"
q "DROP TRIGGER refuse_poison ON crm.outbox"

check "no worker crashed (server log)" "0" "$(grep -c 'terminated by signal' "$LOG" || true)"
check "no worker exited with an error (server log)" "0" "$(grep -c 'exited with exit code 1' "$LOG" || true)"
it_end
