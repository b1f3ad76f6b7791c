#!/usr/bin/env bash
# The worker delivers webhooks to a local HTTP sink: Standard Webhooks headers
# and signature, body rendering, retries, dead messages, final 4xx, 410 Gone,
# redirects (never followed), timeouts, Retry-After, the private-address guard, header
# injection, a slow endpoint not holding the others, wake-up latency, and
# SMS / robocall provider templates.
set -euo pipefail
cd "$(dirname "$0")/../.."
. scripts/lib.sh
. test/integration/common.bash

it_begin worker_webhooks \
	"crm.allowed_hosts = '127.0.0.1'" \
	"crm.retry_base_delay = 1s" "crm.retry_max_delay = 1s" \
	"crm.max_attempts = 3" "crm.http_timeout = 2s"
it_sink_http
B=http://127.0.0.1:$HTTP_PORT
SECRET=whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw

# sink_count PATH_PREFIX: requests received on paths starting with it
sink_count() {
	"$PY" - "$HTTP_LOG" "$1" <<'PY'
import json, sys
n = 0
for line in open(sys.argv[1], encoding="utf-8"):
    if json.loads(line)["path"].startswith(sys.argv[2]):
        n += 1
print(n)
PY
}

msg() {	# msg URL [BODY_JSON] [EXTRA_PAYLOAD_JSON] -> message id
	q "INSERT INTO crm.outbox (channel, payload)
	   VALUES ('webhook', jsonb_build_object('url', '$1', 'body', '${2:-{\"n\": 1\}}'::jsonb) || '${3:-{\}}'::jsonb)
	   RETURNING id"
}
status() { q "SELECT status || '/' || attempts FROM crm.outbox WHERE id = $1"; }

q "SELECT crm.add_provider('webhook', 'signed', '{\"headers\": {\"X-Source\": \"crm\"}}', '$SECRET')" >/dev/null

echo "# a robot's webhook, signed, with the item in its default body"
q "INSERT INTO crm.user (id, name, email) VALUES (100, 'Ann', 'ann@example.com')"
q "SELECT crm.add_robot(crm.stage('deal', 'preparation'), 'webhook',
	'{\"url\": \"$B/ok/robot/{{id}}\", \"provider\": \"signed\"}')" >/dev/null
q "INSERT INTO crm.deal (id, title, responsible_id, amount) VALUES (100, 'Café tables', 100, 990)"
q "UPDATE crm.deal SET stage_id = crm.stage('deal', 'preparation') WHERE id = 100"
wait_for "SELECT status = 'sent' FROM crm.outbox WHERE robot_id IS NOT NULL" 10 || true
check "robot webhook sent" "sent/1" "$(q "SELECT status || '/' || attempts FROM crm.outbox WHERE robot_id IS NOT NULL")"
KEY=$(q "SELECT idempotency_key FROM crm.outbox WHERE robot_id IS NOT NULL")
check "signature, headers and body verified by the receiver" "ok" "$("$PY" - "$HTTP_LOG" "$KEY" "$SECRET" <<'PY'
import base64, hashlib, hmac, json, sys, time
log, key, secret = sys.argv[1:]
reqs = [json.loads(l) for l in open(log, encoding="utf-8")]
r = [x for x in reqs if x["headers"].get("webhook-id") == key]
if len(r) != 1:
    print("requests with this id:", len(r)); sys.exit()
r = r[0]; h = r["headers"]
ts = h["webhook-timestamp"]
mac = hmac.new(base64.b64decode(secret[6:]), f"{key}.{ts}.{r['body']}".encode(), hashlib.sha256).digest()
problems = []
if h.get("webhook-signature") != "v1," + base64.b64encode(mac).decode(): problems.append("signature")
if abs(int(ts) - time.time()) > 60: problems.append("timestamp")
if h.get("content-type") != "application/json": problems.append("content-type")
if h.get("x-source") != "crm": problems.append("provider header")
if r["method"] != "POST" or r["path"] != "/ok/robot/100": problems.append("request line " + r["method"] + r["path"])
body = json.loads(r["body"])
if body.get("entity_type") != "deal" or body.get("item", {}).get("title") != "Café tables" or body["item"].get("amount") != 990:
    problems.append("body " + r["body"])
print("ok" if not problems else ",".join(problems))
PY
)"

echo "# retries"
id=$(msg "$B/flaky/2/a")
wait_for "SELECT status = 'sent' FROM crm.outbox WHERE id = $id" 15 || true
check "503 twice then 200: sent on the third attempt" "sent/3" "$(status $id)"
check "the same webhook-id on every attempt" "1" "$("$PY" - "$HTTP_LOG" <<'PY'
import json, sys
ids = {json.loads(l)["headers"].get("webhook-id") for l in open(sys.argv[1]) if json.loads(l)["path"].startswith("/flaky/2/a")}
print(len(ids))
PY
)"
check "three requests reached the sink" "3" "$(sink_count /flaky/2/a)"

id=$(msg "$B/status/503/b")
wait_for "SELECT status = 'failed' FROM crm.outbox WHERE id = $id" 10 || true
check "after a failure the next attempt waits between half and all of the delay (jitter)" "t" \
	"$(q "SELECT next_attempt_at - updated_at BETWEEN interval '0.45 s' AND interval '1.05 s' FROM crm.outbox WHERE id = $id")"
wait_for "SELECT status = 'dead' FROM crm.outbox WHERE id = $id" 15 || true
check "always 503: dead after crm.max_attempts" "dead/3" "$(status $id)"
check "dead message says why" "t" "$(q "SELECT last_error LIKE 'gave up after 3 attempts: HTTP 503%' FROM crm.outbox WHERE id = $id")"

id=$(msg "$B/status/404/c")
wait_for "SELECT status = 'dead' FROM crm.outbox WHERE id = $id" 10 || true
check "404 is final: dead after one attempt" "dead/1" "$(status $id)"
check "its response code and excerpt are kept" "404|ok" "$(q "SELECT response_code || '|' || response_excerpt FROM crm.outbox WHERE id = $id")"
check "a dead message has no next attempt and leaves crm.outbox_due" "infinity|0" \
	"$(q "SELECT next_attempt_at FROM crm.outbox WHERE id = $id")|$(q "SELECT count(*) FROM crm.outbox_due WHERE message_id = $id")"

id=$(msg "$B/status/429/d")
sleep 1.5
check "429 is retried" "t" "$(q "SELECT attempts >= 2 OR status = 'failed' FROM crm.outbox WHERE id = $id")"

id=$(msg "$B/status/408/d2")
wait_for "SELECT status = 'failed' FROM crm.outbox WHERE id = $id" 10 || true
check "408 Request Timeout is retried: failed with a next attempt, not dead" "failed/1|HTTP 408|true" \
	"$(status $id)|$(q "SELECT last_error || '|' || (next_attempt_at > updated_at) FROM crm.outbox WHERE id = $id")"
check "a failed message is listed in crm.outbox_due at its next attempt" "1" \
	"$(q "SELECT count(*) FROM crm.outbox_due q JOIN crm.outbox o ON o.id = q.message_id WHERE o.id = $id AND q.next_attempt_at = o.next_attempt_at")"

id=$(msg "$B/retry-after/1/e")
wait_for "SELECT status = 'sent' FROM crm.outbox WHERE id = $id" 10 || true
check "Retry-After honoured, then sent" "sent/2" "$(status $id)"

echo "# 410 Gone disables the endpoint"
id=$(msg "$B/status/410/gone")
wait_for "SELECT status = 'dead' FROM crm.outbox WHERE id = $id" 10 || true
check "410: dead after one attempt" "dead/1" "$(status $id)"
check "the endpoint is listed as disabled" "1" "$(q "SELECT count(*) FROM crm.disabled_endpoint WHERE url = '$B/status/410/gone'")"
id2=$(msg "$B/status/410/gone")
wait_for "SELECT status = 'dead' FROM crm.outbox WHERE id = $id2" 10 || true
check "a later message to it is dead without a request" "dead|endpoint gone: HTTP 410|1" \
	"$(q "SELECT status || '|' || last_error FROM crm.outbox WHERE id = $id2")|$(sink_count /status/410/gone)"

echo "# redirects and timeouts"
id=$(msg "$B/redirect/f")
wait_for "SELECT status = 'dead' FROM crm.outbox WHERE id = $id" 10 || true
check "a redirect is not followed: dead at once with its status and Location, nothing sent there" \
	"dead/1|302|HTTP 302: redirects are not followed (Location: /ok/f)|0" \
	"$(status $id)|$(q "SELECT response_code || '|' || last_error FROM crm.outbox WHERE id = $id")|$(sink_count /ok/f)"
id=$(msg "$B/redirect-loop/g")
wait_for "SELECT status = 'dead' FROM crm.outbox WHERE id = $id" 10 || true
check "a redirect loop: one request, dead" "dead/1|1" "$(status $id)|$(sink_count /redirect-loop/g)"
id=$(msg "$B/slow/4/h")
wait_for "SELECT status <> 'sending' FROM crm.outbox WHERE id = $id" 10 || true
check "a request slower than crm.http_timeout fails and will be retried" "t" \
	"$(q "SELECT status IN ('failed', 'sending') AND last_error LIKE 'Timeout was reached%' FROM crm.outbox WHERE id = $id")"

echo "# the private-address guard"
id=$(msg "http://localhost:$HTTP_PORT/ok/ssrf")
wait_for "SELECT status = 'dead' FROM crm.outbox WHERE id = $id" 10 || true
check "localhost is not in crm.allowed_hosts: refused, dead" "dead|t|0" \
	"$(q "SELECT status || '|' || CASE WHEN last_error LIKE 'refused to connect to localhost: % is a loopback address%' THEN 't' ELSE last_error END FROM crm.outbox WHERE id = $id")|$(sink_count /ok/ssrf)"
for target in 10.1.2.3 169.254.169.254 192.168.0.1 '[::1]' '[fd00::1]'; do
	id=$(msg "http://$target:9/x")
	wait_for "SELECT status = 'dead' FROM crm.outbox WHERE id = $id" 10 || true
	check "refused: $target" "dead|t" "$(q "SELECT status || '|' || CASE WHEN last_error LIKE 'refused to connect%' THEN 't' ELSE last_error END FROM crm.outbox WHERE id = $id")"
done

echo "# a redirect towards a name resolving to loopback is not followed"
id=$(msg "$B/redirect-to/$("$PY" -c "import urllib.parse,sys; print(urllib.parse.quote(sys.argv[1], safe=''))" "http://localhost:$HTTP_PORT/ok/rebound")")
wait_for "SELECT status = 'dead' FROM crm.outbox WHERE id = $id" 10 || true
check "a redirect from an allowed host to a name resolving to loopback is not followed" "dead|t|0" \
	"$(q "SELECT status || '|' || CASE WHEN last_error LIKE 'HTTP 302: redirects are not followed (Location: http://localhost:%/ok/rebound)' THEN 't' ELSE last_error END FROM crm.outbox WHERE id = $id")|$(sink_count /ok/rebound)"

echo "# protocols: http and https only; redirects to others are not followed either"
for target in "file:///etc/passwd" "ftp://127.0.0.1:$HTTP_PORT/x" "gopher://127.0.0.1:$HTTP_PORT/x" "dict://127.0.0.1:$HTTP_PORT/x"; do
	id=$(msg "$target")
	wait_for "SELECT status = 'dead' FROM crm.outbox WHERE id = $id" 10 || true
	check "a ${target%%:*} URL is refused, dead at once" "dead/1|t" \
		"$(status $id)|$(q "SELECT last_error LIKE '%Unsupported protocol%' OR last_error LIKE '%not supported%' FROM crm.outbox WHERE id = $id")"
	enc=$("$PY" -c "import urllib.parse,sys; print(urllib.parse.quote(sys.argv[1], safe=''))" "$target")
	id=$(msg "$B/redirect-to/$enc")
	wait_for "SELECT status = 'dead' FROM crm.outbox WHERE id = $id" 10 || true
	check "a redirect to a ${target%%:*} URL is not followed, dead at once" "dead/1|t" \
		"$(status $id)|$(q "SELECT last_error LIKE 'HTTP 302: redirects are not followed%' FROM crm.outbox WHERE id = $id")"
done

echo "# the response body is capped"
id=$(msg "$B/big/3000000/a")
wait_for "SELECT status = 'sent' FROM crm.outbox WHERE id = $id" 10 || true
check "a 3 MB answer: sent, 1024 bytes of it kept" "sent/1|1024" "$(status $id)|$(q "SELECT length(response_excerpt) FROM crm.outbox WHERE id = $id")"

echo "# TLS is verified"
it_sink_https
id=$(msg "https://127.0.0.1:$HTTPS_PORT/ok/tls")
wait_for "SELECT status <> 'sending' AND last_error IS NOT NULL FROM crm.outbox WHERE id = $id" 10 || true
check "a self-signed certificate fails the request (retried later), nothing is sent" "t|0" \
	"$(q "SELECT status IN ('failed', 'dead') AND last_error ILIKE '%certificate%' FROM crm.outbox WHERE id = $id")|$(wc -l < "$HTTPS_LOG")"

echo "# header injection"
id=$(q "INSERT INTO crm.outbox (channel, payload) VALUES ('webhook',
	jsonb_build_object('url', '$B/ok/inj', 'headers', jsonb_build_object('X-A', E'a\r\nX-B: b'), 'body', '{}'::jsonb)) RETURNING id")
wait_for "SELECT status = 'dead' FROM crm.outbox WHERE id = $id" 10 || true
check "a header value with CR LF is refused, nothing sent" "dead|0" "$(q "SELECT status FROM crm.outbox WHERE id = $id")|$(sink_count /ok/inj)"

echo "# methods and bodies"
id=$(msg "$B/ok/put" '"plain text"' '{"method": "PUT", "headers": {"Content-Type": "text/plain"}}')
wait_for "SELECT status = 'sent' FROM crm.outbox WHERE id = $id" 10 || true
check "PUT with a text body and its own content type" "PUT|plain text|text/plain" "$("$PY" - "$HTTP_LOG" <<'PY'
import json, sys
for l in open(sys.argv[1]):
    r = json.loads(l)
    if r["path"] == "/ok/put":
        print(r["method"] + "|" + r["body"] + "|" + r["headers"]["content-type"])
PY
)"

echo "# a slow endpoint does not hold the others"
q "INSERT INTO crm.outbox (channel, payload) SELECT 'webhook', jsonb_build_object('url', '$B/slow/1.5/s' || i, 'body', '{}'::jsonb) FROM generate_series(1, 3) i" >/dev/null
q "INSERT INTO crm.outbox (channel, payload) SELECT 'webhook', jsonb_build_object('url', '$B/ok/fast' || i, 'body', '{}'::jsonb) FROM generate_series(1, 20) i" >/dev/null
wait_for "SELECT count(*) = 23 FROM crm.outbox WHERE status = 'sent' AND payload->>'url' ~ '/(slow/1.5/s|ok/fast)'" 15 || true
check "all 20 fast messages were sent before the slow ones finished" "t" \
	"$(q "SELECT max(sent_at) FILTER (WHERE payload->>'url' ~ '/ok/fast') < min(sent_at) FILTER (WHERE payload->>'url' ~ '/slow/1.5/')
	        FROM crm.outbox WHERE status = 'sent'")"

echo "# wake-up at commit"
sleep 1
t0=$(q "SELECT extract(epoch FROM clock_timestamp())")
id=$(msg "$B/ok/latency")
wait_for "SELECT status = 'sent' FROM crm.outbox WHERE id = $id" 5 || true
t1=$("$PY" - "$HTTP_LOG" <<'PY'
import json, sys
for l in open(sys.argv[1]):
    r = json.loads(l)
    if r["path"] == "/ok/latency": print(r["time"])
PY
)
check "an idle worker sends a committed message within 200 ms" "t" "$("$PY" -c "print(str(0 <= $t1 - $t0 < 0.2).lower()[0])")"
q "SELECT crm.add_robot(crm.stage('deal', 'won'), 'webhook', '{\"url\": \"$B/ok/created/{{id}}\"}')" >/dev/null
sleep 1
t0=$(q "SELECT extract(epoch FROM clock_timestamp())")
q "INSERT INTO crm.deal (id, title, stage_id) VALUES (101, 'Won at once', crm.stage('deal', 'won'))"
wait_for "SELECT status = 'sent' FROM crm.outbox WHERE entity_id = 101" 5 || true
t1=$("$PY" - "$HTTP_LOG" <<'PY'
import json, sys
for l in open(sys.argv[1]):
    r = json.loads(l)
    if r["path"] == "/ok/created/101": print(r["time"])
PY
)
check "a deal created in a stage: its robot's webhook arrives within 200 ms (the robot's INSERT wakes the worker)" "t" \
	"$("$PY" -c "print(str(0 <= ${t1:-99} - $t0 < 0.2).lower()[0])")"
check "a rolled-back message is never sent" "0" "$(psql -X -q -d crm_it -c "BEGIN; INSERT INTO crm.outbox (channel, payload) VALUES ('webhook', '{\"url\": \"$B/ok/rolledback\"}'); ROLLBACK;" >/dev/null; sleep 0.5; sink_count /ok/rolledback)"

echo "# SMS and robocall providers: request templates"
q "SELECT crm.add_provider('sms', 'gateway', '{\"url\": \"$B/ok/sms\", \"headers\": {\"Authorization\": \"Bearer {secret}\"},
	\"body\": \"{\\\"to\\\": \\\"{to}\\\", \\\"message\\\": \\\"{text}\\\", \\\"ref\\\": \\\"{message_id}\\\"}\"}', 'tok123')" >/dev/null
q "SELECT crm.add_provider('robocall', 'voice', '{\"url\": \"$B/ok/call?to={number}\", \"format\": \"form\", \"body\": \"text={text}&wait={wait_for_result}\"}')" >/dev/null
q "INSERT INTO crm.outbox (channel, payload) VALUES ('sms', '{\"to\": [\"+33 6 12\", \"+33 7 34\"], \"text\": \"Line \\\"one\\\"\\nÉté\"}')" >/dev/null
q "INSERT INTO crm.outbox (channel, payload) VALUES ('robocall', '{\"number\": \"+1 555\", \"text\": \"Hello & bye\", \"wait_for_result\": true}')" >/dev/null
wait_for "SELECT count(*) = 2 FROM crm.outbox WHERE channel IN ('sms', 'robocall') AND status = 'sent'" 10 || true
check "sms and robocall sent" "2" "$(q "SELECT count(*) FROM crm.outbox WHERE channel IN ('sms', 'robocall') AND status = 'sent'")"
check "sms body is the JSON template, values escaped; secret in the header" "ok" "$("$PY" - "$HTTP_LOG" <<'PY'
import json, sys
for l in open(sys.argv[1]):
    r = json.loads(l)
    if r["path"] == "/ok/sms":
        b = json.loads(r["body"])
        good = b["to"] == "+33 6 12,+33 7 34" and b["message"] == 'Line "one"\nÉté' and b["ref"].startswith("msg_") \
            and r["headers"]["authorization"] == "Bearer tok123" and r["headers"]["content-type"] == "application/json"
        print("ok" if good else r)
PY
)"
check "robocall: URL and form body url-encoded" "ok" "$("$PY" - "$HTTP_LOG" <<'PY'
import json, sys
from urllib.parse import parse_qs
for l in open(sys.argv[1]):
    r = json.loads(l)
    if r["path"].startswith("/ok/call"):
        f = parse_qs(r["body"])
        good = r["path"] == "/ok/call?to=%2B1%20555" and f == {"text": ["Hello & bye"], "wait": ["true"]} \
            and r["headers"]["content-type"] == "application/x-www-form-urlencoded"
        print("ok" if good else r)
PY
)"
q "SELECT crm.update_provider(crm_p.id, active => false) FROM crm.provider crm_p WHERE name = 'gateway'" >/dev/null
id=$(q "INSERT INTO crm.outbox (channel, payload) VALUES ('sms', '{\"to\": [\"1\"], \"text\": \"x\"}') RETURNING id")
wait_for "SELECT status = 'dead' FROM crm.outbox WHERE id = $id" 5 || true
check "a disabled provider's message is dead with the reason" "dead|sms provider \"gateway\" is disabled" \
	"$(q "SELECT status || '|' || last_error FROM crm.outbox WHERE id = $id")"

echo "# requeue"
q "SELECT crm.retry_message(id) FROM crm.outbox WHERE payload->>'url' = '$B/status/404/c'" >/dev/null
wait_for "SELECT status = 'dead' AND attempts = 1 AND updated_at > now() - interval '5 s' FROM crm.outbox WHERE payload->>'url' = '$B/status/404/c'" 5 || true
check "crm.retry_message sends a dead message again" "2" "$(sink_count /status/404/c)"
check "every message sent or dead has left crm.outbox_due" "0" \
	"$(q "SELECT count(*) FROM crm.outbox_due q JOIN crm.outbox o ON o.id = q.message_id WHERE o.status IN ('sent', 'dead')")"

it_end
