#!/usr/bin/env bash
# A slow endpoint does not hold the others, even with more messages for it
# than the worker has transfer slots: it gets at most its share of them (all
# but an eighth), its messages beyond that wait without counting as ready,
# and claims skip it while enough of them wait, so messages queued after
# its burst for other endpoints go out at once.  Each message is still sent
# once, on its first attempt.
#
# One worker with 16 slots: the slow endpoint's share is 14.  The two
# endpoints are the same sink reached as localhost and as 127.0.0.1 (an
# endpoint is a URL's scheme and authority).
set -euo pipefail
cd "$(dirname "$0")/../.."
. scripts/lib.sh
. test/integration/common.bash

SLOW=60
it_begin worker_fairness "crm.allowed_hosts = '127.0.0.1, localhost'" \
	"crm.worker_concurrency = 16" "crm.workers_per_database = 1" "crm.http_timeout = 10s"
it_sink_http
PORT=$HTTP_PORT
pause() { q "ALTER SYSTEM SET crm.worker_enabled = off" && q "SELECT pg_reload_conf()" >/dev/null; sleep 0.3; }
resume() { q "ALTER SYSTEM RESET crm.worker_enabled" && q "SELECT pg_reload_conf()" >/dev/null; }
# hits PATTERN: requests received whose path contains PATTERN
hits() { grep -c "$1" "$HTTP_LOG" || true; }

echo "# the endpoint of a URL: scheme and authority, lower-cased"
check "crm._url_endpoint" "https://user@host.example:8443|http://h|http://h.example|" \
	"$(q "SELECT concat_ws('|', crm._url_endpoint('HTTPS://User@Host.Example:8443/p?q#f'),
								 crm._url_endpoint('http://h'), crm._url_endpoint('http://H.example?x=1'),
								 coalesce(crm._url_endpoint('not a url'), ''))")"

echo "# $SLOW messages for a slow endpoint (2 s each), then 5 for another"
pause
q "INSERT INTO crm.outbox (channel, payload)
   SELECT 'webhook', jsonb_build_object('url', 'http://localhost:$PORT/slow/2/burst/' || i)
	 FROM generate_series(1, $SLOW) i" >/dev/null
q "INSERT INTO crm.outbox (channel, payload)
   SELECT 'webhook', jsonb_build_object('url', 'http://127.0.0.1:$PORT/ok/fast/' || i)
	 FROM generate_series(1, 5) i" >/dev/null
t0=$(q "SELECT extract(epoch FROM clock_timestamp())")
resume
for _ in $(seq 1 30); do [ "$(hits /ok/fast/)" -ge 5 ] && break; sleep 0.05; done
sleep 0.5
check "the 5 other messages were received while the first slow ones were still running" "5" "$(hits /ok/fast/)"
check "they were recorded sent within 2 s of the release" "t" \
	"$(q "SELECT max(sent_at) < to_timestamp($t0) + interval '2 seconds' FROM crm.outbox WHERE payload->>'url' LIKE '%/ok/fast/%' AND status = 'sent'")"
check "the slow endpoint holds its share of the 16 slots, 14, no more" "14" "$(hits /slow/2/burst/)"
wait_for "SELECT count(*) = $SLOW FROM crm.outbox WHERE payload->>'url' LIKE '%/slow/2/burst/%' AND status = 'sent'" 30 || true
check "then all $SLOW slow messages are sent" "$SLOW" \
	"$(q "SELECT count(*) FROM crm.outbox WHERE payload->>'url' LIKE '%/slow/2/burst/%' AND status = 'sent'")"
check "each once, on its first attempt" "$SLOW 1 1" \
	"$(hits /slow/2/burst/) $(q "SELECT min(attempts) || ' ' || max(attempts) FROM crm.outbox WHERE payload->>'url' LIKE '%/slow/2/burst/%'")"

echo "# with one endpoint only, it has all the slots but its share's margin, and every message goes"
pause
q "INSERT INTO crm.outbox (channel, payload)
   SELECT 'webhook', jsonb_build_object('url', 'http://127.0.0.1:$PORT/ok/alone/' || i)
	 FROM generate_series(1, 500) i" >/dev/null
resume
wait_for "SELECT count(*) = 500 FROM crm.outbox WHERE payload->>'url' LIKE '%/ok/alone/%' AND status = 'sent'" 30 || true
check "500 messages to one endpoint are all sent, once each" "500 500" \
	"$(q "SELECT count(*) FROM crm.outbox WHERE payload->>'url' LIKE '%/ok/alone/%' AND status = 'sent'") $(hits /ok/alone/)"

it_end
