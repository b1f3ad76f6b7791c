#!/usr/bin/env bash
# Redirects are never followed: a 3xx answer to a webhook is a dead message
# with its status and Location in last_error, after one request; nothing
# reaches the target (a 301/302 was followed as a bodiless GET and recorded
# sent; a 307/308 re-sent the POST, the provider's headers with it, to
# whatever host the Location named).
set -euo pipefail
cd "$(dirname "$0")/../.."
. scripts/lib.sh
. test/integration/common.bash

it_begin worker_redirects "crm.allowed_hosts = '127.0.0.1'"
it_sink_http
B=http://127.0.0.1:$HTTP_PORT
LOG=$CRM_CLUSTER_DIR/server.log
# a second server: "another host" for the redirects
"$PY" test/sinks/http_sink.py "$IT_DIR/other.port" "$IT_DIR/other.log" >"$IT_DIR/other.out" 2>&1 &
IT_PIDS+=($!)
it_wait_file "$IT_DIR/other.port"
OTHER=http://127.0.0.1:$(cat "$IT_DIR/other.port")
touch "$IT_DIR/other.log"

q "SELECT crm.add_provider('webhook', 'erp', '{\"headers\": {\"Authorization\": \"Bearer s3cret\"}}', NULL, false)" >/dev/null
enc() { "$PY" -c "import urllib.parse,sys; print(urllib.parse.quote(sys.argv[1], safe=''))" "$1"; }
for code in 301 302 303 307 308; do
	id=$(q "INSERT INTO crm.outbox (channel, provider_id, payload)
		VALUES ('webhook', (SELECT id FROM crm.provider WHERE name = 'erp'),
				jsonb_build_object('url', '$B/redirect-code/$code/$(enc "$OTHER/ok/moved/$code")', 'body', '{\"n\": 1}'::jsonb))
		RETURNING id")
	wait_for "SELECT status IN ('sent', 'dead') FROM crm.outbox WHERE id = $id" 10 || true
	check "$code: dead after one attempt, status and Location kept" \
		"dead/1|$code|HTTP $code: redirects are not followed (Location: $OTHER/ok/moved/$code)" \
		"$(q "SELECT status || '/' || attempts || '|' || response_code || '|' || last_error FROM crm.outbox WHERE id = $id")"
done
check "nothing reached the other host (no request, no provider header)" "0" "$(wc -l < "$IT_DIR/other.log")"

check "no worker crashed (server log)" "0" "$(grep -c 'terminated by signal' "$LOG" || true)"
it_end
