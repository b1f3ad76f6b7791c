#!/usr/bin/env bash
# One bad message holds no other, and the worker survives what goes wrong
# around it:
#   - messages of the wrong shape, queued by a direct INSERT (an e-mail's
#     "to" a string, a method with CR LF, a URL with a space, a header
#     with CR LF in its provider's config ...), are dead with the reason at
#     their claim, and the good ones queued with them are sent; the log
#     does not fill with the same error;
#   - a message whose last attempt never finished (the worker crashed or
#     exited with it in flight) is dead once past crm.max_attempts;
#   - an ERROR outside a transaction (a cancel of the worker) does not end
#     it: the transfer in flight is recorded, not sent again;
#   - results whose record rolled back are recorded again (not sent again
#     once their lease ends), and one result that cannot be recorded holds
#     no other.
set -euo pipefail
cd "$(dirname "$0")/../.."
. scripts/lib.sh
. test/integration/common.bash

it_begin worker_faults \
	"crm.allowed_hosts = '127.0.0.1'" \
	"crm.retry_base_delay = 1s" "crm.retry_max_delay = 1s" \
	"crm.max_attempts = 3" "crm.http_timeout = 5s"
it_sink_http
it_sink_smtp
B=http://127.0.0.1:$HTTP_PORT
LOG=$CRM_CLUSTER_DIR/server.log

sink_count() {
	"$PY" - "$HTTP_LOG" "$1" <<'PY'
import json, sys
print(sum(1 for l in open(sys.argv[1], encoding="utf-8") if json.loads(l)["path"].startswith(sys.argv[2])))
PY
}
worker_pid() { q "SELECT pid FROM crm.worker_status() WHERE role = 'delivery' AND worker = 0 AND state = 'running'"; }

q "SELECT crm.add_provider('email', 'local', '{\"url\": \"smtp://127.0.0.1:$SMTP_PORT\", \"from\": \"crm@example.com\", \"tls\": \"none\"}')" >/dev/null
q "SELECT crm.add_provider('sms', 'gateway', '{\"url\": \"$B/ok/sms\"}')" >/dev/null
q "SELECT crm.add_provider('webhook', 'broken', '{\"url\": \"$B/ok/broken\"}', NULL, false)" >/dev/null

echo "# messages of the wrong shape, queued with good ones in one transaction"
errors_before=$(grep -c ERROR "$LOG" || true)
q "ALTER SYSTEM SET crm.worker_enabled = off" >/dev/null && q "SELECT pg_reload_conf()" >/dev/null
sleep 0.3
# a provider's config changed behind crm.update_provider's back
q "UPDATE crm.provider SET config = jsonb_build_object('url', '$B/ok/broken', 'headers', jsonb_build_object('X-A', E'a\r\nX-Injected: 1')) WHERE name = 'broken'"
q "INSERT INTO crm.outbox (channel, payload, provider_id, entity_id) VALUES
	('email', '{\"to\": \"a@example.com\", \"subject\": \"s\", \"body\": \"b\"}', NULL, 1),
	('email', '{\"to\": [\"a@example.com\"], \"subject\": \"s\", \"body\": \"b\", \"html\": \"yes\"}', NULL, 2),
	('email', '{\"to\": [\"a@example.com\"], \"subject\": {\"a\": 1}, \"body\": \"b\"}', NULL, 3),
	('email', '{\"to\": [\"a@example.com\"], \"subject\": \"s\", \"body\": \"b\", \"attachments\": \"x\"}', NULL, 4),
	('sms', '{\"to\": {\"n\": \"1\"}, \"text\": \"t\"}', NULL, 5),
	('webhook', jsonb_build_object('url', '$B/ok/split', 'method', E'POST /ok/smuggled HTTP/1.1\r\nHost: x\r\n\r\nGET'), NULL, 6),
	('webhook', jsonb_build_object('url', '$B/ok/m', 'method', 'FETCH'), NULL, 7),
	('webhook', '{\"url\": 42}', NULL, 8),
	('webhook', jsonb_build_object('url', '$B/ok/a b'), NULL, 9),
	('webhook', jsonb_build_object('url', 'http://:80/x'), NULL, 10),
	('webhook', jsonb_build_object('url', '$B/ok/h', 'headers', '[1]'::jsonb), NULL, 11),
	('webhook', '{}', (SELECT id FROM crm.provider WHERE name = 'broken'), 12)"
q "INSERT INTO crm.outbox (channel, payload, idempotency_key, entity_id) VALUES
	('webhook', jsonb_build_object('url', '$B/ok/key'), E'k\r\nX-Injected: 1', 13)"
q "INSERT INTO crm.outbox (channel, payload, entity_id)
   SELECT 'webhook', jsonb_build_object('url', '$B/ok/good/' || i), 100 + i FROM generate_series(1, 5) i"
q "INSERT INTO crm.outbox (channel, payload, entity_id) VALUES
	('email', '{\"to\": [\"good@example.com\"], \"subject\": \"good\", \"body\": \"b\"}', 106),
	('sms', '{\"to\": [\"+1 555\"], \"text\": \"good\"}', 107)"
q "ALTER SYSTEM RESET crm.worker_enabled" >/dev/null && q "SELECT pg_reload_conf()" >/dev/null
wait_for "SELECT count(*) = 7 FROM crm.outbox WHERE entity_id > 100 AND status = 'sent'" 15 || true
check "the good messages queued with them are sent" "7" "$(q "SELECT count(*) FROM crm.outbox WHERE entity_id > 100 AND status = 'sent'")"
wait_for "SELECT count(*) = 13 FROM crm.outbox WHERE entity_id <= 13 AND status = 'dead'" 10 || true
check "each bad one is dead after one claim" "13" "$(q "SELECT count(*) FROM crm.outbox WHERE entity_id <= 13 AND status = 'dead' AND attempts = 1")"
while IFS='|' read -r n want; do
	check "bad message $n: its reason" "$want" "$(q "SELECT last_error FROM crm.outbox WHERE entity_id = $n")"
done <<'EOF'
1|email "to" must be array, not string
2|email "html" must be boolean, not string
3|email "subject" must be string, not object
4|email "attachments" must be array, not string
5|sms "to" must be array, not object
6|unsupported HTTP method "POST /OK/SMUGGLED HTTP/1.1\x0d\x0aHOST: " (GET, POST, PUT, PATCH or DELETE)
7|unsupported HTTP method "FETCH" (GET, POST, PUT, PATCH or DELETE)
8|webhook "url" must be a string, not number
9|the URL contains a space or a control character
10|the URL is not valid: No host part in the URL
11|webhook headers must be a JSON object
12|a header value contains CR, LF or another control character
13|the idempotency key must be printable ASCII without spaces or angle brackets
EOF
check "nothing of them reached the sink (no request splitting, no injected header)" "0|0|0|0" \
	"$(sink_count /ok/split)|$(sink_count /ok/smuggled)|$(sink_count /ok/broken)|$(grep -ci x-injected "$HTTP_LOG" || true)"
sleep 1
errors_after=$(grep -c ERROR "$LOG" || true)
check "the server log did not fill with errors" "t" "$([ $((errors_after - errors_before)) -le 2 ] && echo t || echo "f ($((errors_after - errors_before)) errors)")"

echo "# a message whose last attempt never finished is not tried past crm.max_attempts"
id=$(q "INSERT INTO crm.outbox (channel, payload, status, attempts, claimed_at, lease_until)
	VALUES ('webhook', jsonb_build_object('url', '$B/ok/crashed'), 'sending', 3, now() - interval '1 hour', now() - interval '1 minute')
	RETURNING id")
q "SELECT 1 FROM crm.outbox WHERE id = $id FOR UPDATE" >/dev/null	# wakes nobody: poke with a message
q "INSERT INTO crm.outbox (channel, payload) VALUES ('webhook', jsonb_build_object('url', '$B/ok/poke'))" >/dev/null
wait_for "SELECT status = 'dead' FROM crm.outbox WHERE id = $id" 10 || true
check "taken back after its lease, attempt 4 of 3: dead without a request" \
	"dead|gave up after 3 attempts: the last one did not finish (the worker stopped or crashed while it was in flight)|0" \
	"$(q "SELECT status || '|' || last_error FROM crm.outbox WHERE id = $id")|$(sink_count /ok/crashed)"

echo "# an ERROR outside a transaction does not end the worker"
pid=$(worker_pid)
id=$(q "INSERT INTO crm.outbox (channel, payload) VALUES ('webhook', jsonb_build_object('url', '$B/slow/1.5/cancel')) RETURNING id")
wait_for "SELECT status = 'sending' FROM crm.outbox WHERE id = $id" 5 || true
sleep 0.3
q "SELECT pg_cancel_backend($pid)" >/dev/null
wait_for "SELECT status = 'sent' FROM crm.outbox WHERE id = $id" 8 || true
check "cancelled while a transfer was in flight: same worker, the transfer recorded sent once" "$pid|sent/1|1" \
	"$(worker_pid)|$(q "SELECT status || '/' || attempts FROM crm.outbox WHERE id = $id")|$(sink_count /slow/1.5/cancel)"
id=$(q "INSERT INTO crm.outbox (channel, payload) VALUES ('webhook', jsonb_build_object('url', '$B/ok/after-cancel')) RETURNING id")
wait_for "SELECT status = 'sent' FROM crm.outbox WHERE id = $id" 5 || true
check "and it goes on delivering" "sent" "$(q "SELECT status FROM crm.outbox WHERE id = $id")"

echo "# results whose record rolled back are recorded again, not sent again"
q "CREATE TABLE public.fail_record (id bigint)"
q "CREATE FUNCTION public.fail_record() RETURNS trigger LANGUAGE plpgsql AS \$\$
BEGIN
	IF EXISTS (SELECT FROM public.fail_record f WHERE f.id = 0 OR f.id = NEW.id) THEN
		RAISE EXCEPTION 'recording refused for message %', NEW.id;
	END IF;
	RETURN NEW;
END \$\$"
q "CREATE TRIGGER fail_record BEFORE UPDATE ON crm.outbox FOR EACH ROW
	WHEN (OLD.status = 'sending' AND NEW.status <> 'sending') EXECUTE FUNCTION public.fail_record()"
q "INSERT INTO public.fail_record VALUES (0)"
id=$(q "INSERT INTO crm.outbox (channel, payload) VALUES ('webhook', jsonb_build_object('url', '$B/ok/kept')) RETURNING id")
for i in $(seq 1 50); do [ "$(sink_count /ok/kept)" -ge 1 ] && break; sleep 0.1; done
sleep 1.5
check "delivered while recording fails: still sending" "sending|1" "$(q "SELECT status FROM crm.outbox WHERE id = $id")|$(sink_count /ok/kept)"
q "DELETE FROM public.fail_record"
wait_for "SELECT status = 'sent' FROM crm.outbox WHERE id = $id" 5 || true
check "once recording works again: recorded sent, attempt 1, never sent again" "sent/1|1" \
	"$(q "SELECT status || '/' || attempts FROM crm.outbox WHERE id = $id")|$(sink_count /ok/kept)"

q "ALTER SYSTEM SET crm.worker_enabled = off" >/dev/null && q "SELECT pg_reload_conf()" >/dev/null
sleep 0.3
bad=$(q "INSERT INTO crm.outbox (channel, payload) VALUES ('webhook', jsonb_build_object('url', '$B/ok/unrecordable')) RETURNING id")
q "INSERT INTO public.fail_record VALUES ($bad)"
q "INSERT INTO crm.outbox (channel, payload, entity_id) SELECT 'webhook', jsonb_build_object('url', '$B/ok/neighbour/' || i), 200 + i FROM generate_series(1, 5) i"
q "ALTER SYSTEM RESET crm.worker_enabled" >/dev/null && q "SELECT pg_reload_conf()" >/dev/null
wait_for "SELECT count(*) = 5 FROM crm.outbox WHERE entity_id > 200 AND status = 'sent'" 10 || true
check "one result that cannot be recorded holds no other" "5|sending" \
	"$(q "SELECT count(*) FROM crm.outbox WHERE entity_id > 200 AND status = 'sent'")|$(q "SELECT status FROM crm.outbox WHERE id = $bad")"
q "DROP TRIGGER fail_record ON crm.outbox"

check "no worker crashed (server log)" "0" "$(grep -c 'terminated by signal' "$LOG" || true)"
check "no worker exited with an error (server log)" "0" "$(grep -c 'exited with exit code 1' "$LOG" || true)"

it_end
