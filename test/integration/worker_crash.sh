#!/usr/bin/env bash
# Nothing committed is lost: 3,000 webhooks are queued, the server is stopped
# with "pg_ctl stop -m immediate" while they are being delivered, restarted,
# and every message still reaches the sink (distinct webhook-ids), each
# marked sent, with duplicates bounded: the requests that were in flight
# (crm.worker_concurrency) and the results whose commit PostgreSQL had not
# yet written (the worker records results without waiting for the disk:
# worker.c); a few WAL pages' worth, well under crm.worker_concurrency.
set -euo pipefail
cd "$(dirname "$0")/../.."
. scripts/lib.sh
. test/integration/common.bash

N=3000
CONC=32
it_begin worker_crash "crm.allowed_hosts = '127.0.0.1'" "crm.worker_concurrency = $CONC" \
	"crm.http_timeout = 5s" "fsync = on"
it_sink_http
B=http://127.0.0.1:$HTTP_PORT

q "ALTER SYSTEM SET crm.worker_enabled = off" && q "SELECT pg_reload_conf()" >/dev/null
sleep 0.3
q "INSERT INTO crm.outbox (channel, payload)
   SELECT 'webhook', jsonb_build_object('url', '$B/ok/crash/' || i, 'body', jsonb_build_object('n', i))
     FROM generate_series(1, $N) i"
q "ALTER SYSTEM RESET crm.worker_enabled" && q "SELECT pg_reload_conf()" >/dev/null

# stop the server abruptly once a third has arrived
for i in $(seq 1 300); do
	[ "$(wc -l < "$HTTP_LOG")" -ge $((N / 3)) ] && break
	sleep 0.05
done
received_before=$(wc -l < "$HTTP_LOG")
crm_as_owner "$(crm_pg_bindir)/pg_ctl" -D "$CRM_CLUSTER_DIR/data" -m immediate -w stop >/dev/null
echo "# stopped with -m immediate after $received_before requests"
crm_as_owner "$(crm_pg_bindir)/pg_ctl" -D "$CRM_CLUSTER_DIR/data" -l "$CRM_CLUSTER_DIR/server.log" -w -t 60 start >/dev/null

wait_for "SELECT count(*) = $N FROM crm.outbox WHERE status = 'sent'" 60 || true
check "every message is marked sent after the restart" "$N" "$(q "SELECT count(*) FROM crm.outbox WHERE status = 'sent'")"
read -r distinct total <<<"$("$PY" - "$HTTP_LOG" <<'PY'
import json, sys
ids = [json.loads(l)["headers"]["webhook-id"] for l in open(sys.argv[1]) if '"/ok/crash/' in l]
print(len(set(ids)), len(ids))
PY
)"
dups=$((total - distinct))
echo "# received $total requests, $distinct distinct webhook-ids, $dups duplicates"
check "the sink received every message (distinct webhook-ids)" "$N" "$distinct"
check "duplicates are bounded by the in-flight window and the results not yet written (2 x $CONC)" "t" \
	"$([ "$dups" -le $((2 * CONC)) ] && echo t || echo f)"
check "each message's webhook-id is its idempotency key" "$N" "$(q "SELECT count(*) FROM crm.outbox WHERE idempotency_key LIKE 'msg_%'")"

it_end
