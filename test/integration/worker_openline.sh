#!/usr/bin/env bash
# Open-channel messages (the process activity openline_message) reach the
# channel connector, a local HTTP sink: a signed Standard Webhooks POST whose
# body names the item, the client (from the item's latest incoming openline
# activity), the text and the attachments.  A hidden message is recorded but
# never sent; a message without an openline provider, or whose provider lost
# its secret, is dead with the reason.
set -euo pipefail
cd "$(dirname "$0")/../.."
. scripts/lib.sh
. test/integration/common.bash

it_begin worker_openline \
	"crm.allowed_hosts = '127.0.0.1'" \
	"crm.retry_base_delay = 1s" "crm.retry_max_delay = 1s" "crm.max_attempts = 2"
it_sink_http
B=http://127.0.0.1:$HTTP_PORT
SECRET=whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw

echo "# no openline provider yet: the message is dead, saying so"
q "INSERT INTO crm.user (id, name, email) VALUES (100, 'Ann', 'ann@example.com')"
q "INSERT INTO crm.deal (id, title, responsible_id) VALUES (100, 'Café tables', 100), (101, 'Chairs', 100)"
q "SELECT crm.add_process_template('deal', 'Chat', '{\"activities\": [
	{\"type\": \"openline_message\", \"text\": \"Bonjour, votre devis « {{title}} »\\nà bientôt\", \"attachments\": [100]},
	{\"type\": \"openline_message\", \"text\": \"internal note\", \"hidden\": true}]}')" >/dev/null
q "INSERT INTO crm.drive_file (id, name, content_type, content) VALUES (100, 'devis.pdf', 'application/pdf', '\\x25504446')"
q "SELECT crm.start_process('Chat', 'deal', 101)" >/dev/null
wait_for "SELECT status = 'dead' FROM crm.outbox WHERE channel = 'openline' AND entity_id = 101" 10 || true
check "dead without a provider" "dead|no openline provider: add one with crm.add_provider('openline', name, config)" \
	"$(q "SELECT status || '|' || last_error FROM crm.outbox WHERE channel = 'openline' AND entity_id = 101")"

echo "# with the connector's provider: signed, to its url"
q "SELECT crm.add_provider('openline', 'connector', '{\"url\": \"$B/ok/connector\", \"headers\": {\"X-Line\": \"7\"}}', secret => '$SECRET')" >/dev/null
q "INSERT INTO crm.activity (entity_type, entity_id, type, direction, subject, remote_address)
   VALUES ('deal', 100, 'openline', 'incoming', 'Hi', 'whatsapp:+33612345678')"
q "SELECT crm.start_process('Chat', 'deal', 100)" >/dev/null
wait_for "SELECT status = 'sent' FROM crm.outbox WHERE channel = 'openline' AND entity_id = 100" 10 || true
check "the open-channel message is sent, the hidden one only recorded" "sent/1|2" \
	"$(q "SELECT string_agg(status || '/' || attempts, ',') FROM crm.outbox WHERE channel = 'openline' AND entity_id = 100")|$(q "SELECT count(*) FROM crm.activity WHERE entity_id = 100 AND type = 'openline' AND direction = 'outgoing'")"
KEY=$(q "SELECT idempotency_key FROM crm.outbox WHERE channel = 'openline' AND entity_id = 100")
check "the connector verifies the signature and reads item, client, text and attachments" "ok" "$("$PY" - "$HTTP_LOG" "$KEY" "$SECRET" <<'PY'
import base64, hashlib, hmac, json, sys, time
log, key, secret = sys.argv[1:]
reqs = [json.loads(l) for l in open(log, encoding="utf-8")]
r = [x for x in reqs if x["headers"].get("webhook-id") == key]
if len(r) != 1:
    print("requests with this id:", len(r), "of", len(reqs)); sys.exit()
r = r[0]; h = r["headers"]
ts = h["webhook-timestamp"]
mac = hmac.new(base64.b64decode(secret[6:]), f"{key}.{ts}.{r['body']}".encode(), hashlib.sha256).digest()
problems = []
if h.get("webhook-signature") != "v1," + base64.b64encode(mac).decode(): problems.append("signature")
if abs(int(ts) - time.time()) > 60: problems.append("timestamp")
if h.get("content-type") != "application/json": problems.append("content-type")
if h.get("x-line") != "7": problems.append("provider header")
if r["method"] != "POST" or r["path"] != "/ok/connector": problems.append("request line " + r["method"] + r["path"])
b = json.loads(r["body"])
if b.get("event") != "openline_message" or b.get("entity_type") != "deal" or b.get("entity_id") != 100:
    problems.append("item " + r["body"])
if b.get("client", {}).get("address") != "whatsapp:+33612345678": problems.append("client " + r["body"])
if b.get("text") != "Bonjour, votre devis « Café tables »\nà bientôt": problems.append("text %r" % b.get("text"))
if b.get("attachments") != [{"id": 100, "name": "devis.pdf", "size": 4, "content_type": "application/pdf"}]:
    problems.append("attachments %r" % b.get("attachments"))
if not isinstance(b.get("activity_id"), int) or not isinstance(b.get("process_instance_id"), int):
    problems.append("activity / instance")
if "internal note" in open(log, encoding="utf-8").read(): problems.append("the hidden message was sent")
print("ok" if not problems else ", ".join(problems))
PY
)"

echo "# the worker trusts no row: a hidden message or a provider without its secret is dead"
id=$(q "INSERT INTO crm.outbox (channel, payload) VALUES ('openline', '{\"text\": \"psst\", \"hidden\": true}') RETURNING id")
wait_for "SELECT status = 'dead' FROM crm.outbox WHERE id = $id" 10 || true
check "a hidden message written by hand is never sent" "dead|a hidden open-channel message is never sent to the client" \
	"$(q "SELECT status || '|' || last_error FROM crm.outbox WHERE id = $id")"
id=$(q "INSERT INTO crm.outbox (channel, payload) VALUES ('openline', '{\"text\": 5}') RETURNING id")
wait_for "SELECT status = 'dead' FROM crm.outbox WHERE id = $id" 10 || true
check "a text of the wrong type" "dead|openline \"text\" must be string, not number" \
	"$(q "SELECT status || '|' || last_error FROM crm.outbox WHERE id = $id")"
q "DELETE FROM crm.provider_secret" >/dev/null
id=$(q "INSERT INTO crm.outbox (channel, payload) VALUES ('openline', '{\"text\": \"unsigned?\"}') RETURNING id")
wait_for "SELECT status = 'dead' FROM crm.outbox WHERE id = $id" 10 || true
check "never sent unsigned" "dead|openline provider \"connector\" has no signing secret: give one with crm.update_provider(id, secret => ...)" \
	"$(q "SELECT status || '|' || last_error FROM crm.outbox WHERE id = $id")"
check "the sink saw only the signed message" "1" "$(grep -c '"/ok/connector"' "$HTTP_LOG" || true)"

it_end
