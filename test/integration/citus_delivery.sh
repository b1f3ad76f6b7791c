#!/usr/bin/env bash
# Delivery on a distributed installation (issue 16): a coordinator and two
# worker nodes with their delivery workers on; webhooks queued by robots in
# the deals' shards are claimed by the workers of the nodes holding them,
# from their local shards, and reach a local HTTP sink once each; a message
# whose endpoint fails is retried there; the coordinator holds none.
set -euo pipefail
cd "$(dirname "$0")/../.."
. scripts/lib.sh
. scripts/citus.sh
. test/integration/common.bash

IT_NAME=citus_delivery
crm_citus_install
trap 'for p in "${IT_PIDS[@]:-}"; do [ -n "$p" ] && kill "$p" 2>/dev/null || true; done; crm_citus_cluster_stop; rm -rf "$IT_DIR"' EXIT
crm_citus_cluster_start crm_it "crm.allowed_hosts = '127.0.0.1'" \
	"crm.retry_base_delay = 1s" "crm.retry_max_delay = 1s" "crm.max_attempts = 3" "crm.http_timeout = 2s"
W1=${CRM_CITUS_PORTS[1]}
W2=${CRM_CITUS_PORTS[2]}
qw() {
	psql -X -q -t -A -v ON_ERROR_STOP=1 -p "$1" -d crm_it -c "$2"
}
it_sink_http
B=http://127.0.0.1:$HTTP_PORT

q "CREATE EXTENSION crm_automation"
q "SELECT count(*) FROM crm.distribute()" >/dev/null
# the nodes' workers poll while crm.distribute() changes the tables under
# them and may log an error then (retried on their next round): the check
# at the end reads what the logs say after it
sleep 1
W1_FROM=$(( $(wc -l <"$CRM_CITUS_DIR/worker1.log") + 1 ))
W2_FROM=$(( $(wc -l <"$CRM_CITUS_DIR/worker2.log") + 1 ))
q "INSERT INTO crm.department (id, name) VALUES (1, 'Sales');
   INSERT INTO crm.user (id, name, email, department_id) VALUES (1, 'Mia', 'mia@example.com', 1);
   INSERT INTO crm.robot (stage_id, name, action, params, sort)
   VALUES (crm.stage('deal', 'preparation'), 'hook', 'webhook',
		   jsonb_build_object('url', '$B/ok/{{id}}', 'body', jsonb_build_object('deal', '{{id}}', 'title', '{{title}}')), 10);
   INSERT INTO crm.deal (title, responsible_id) SELECT 'Deal ' || g, 1 FROM generate_series(1, 60) g;"
q "UPDATE crm.deal SET stage_id = crm.stage('deal', 'preparation')"
check "60 webhooks queued, each in its deal's shard" 60 "$(q "SELECT count(*) FROM crm.outbox WHERE entity_id BETWEEN 1 AND 60")"

wait_for "SELECT count(*) = 60 FROM crm.outbox WHERE status = 'sent'" 30 || true
check "the workers of the nodes sent them all" 60 "$(q "SELECT count(*) FROM crm.outbox WHERE status = 'sent'")"
sent=$("$PY" - "$HTTP_LOG" <<'PY'
import json, sys
paths = [json.loads(l)["path"] for l in open(sys.argv[1], encoding="utf-8")]
print(len(paths), len(set(paths)))
PY
)
check "each reached the sink once" "60 60" "$sent"
check "from both worker nodes' shards" 2 \
	"$(q "SELECT count(DISTINCT p.groupid) FROM crm.outbox o
		   JOIN pg_dist_placement p ON p.shardid = get_shard_id_for_distribution_column('crm.outbox', o.entity_id)
		  WHERE o.status = 'sent'")"
check "the bodies were rendered from the deal" 1 \
	"$("$PY" - "$HTTP_LOG" <<'PY'
import json, sys
n = 0
for l in open(sys.argv[1], encoding="utf-8"):
    r = json.loads(l)
    b = json.loads(r["body"])
    if r["path"] == "/ok/17" and b["deal"] == "17" and b["title"] == "Deal 17":
        n += 1
print(n)
PY
)"

# a delayed robot: its job is run by the job runner of the deal's node when
# due, and its webhook delivered from there
q "INSERT INTO crm.robot (stage_id, name, action, params, sort, delay)
   VALUES (crm.stage('deal', 'executing'), 'later', 'webhook',
		   jsonb_build_object('url', '$B/ok/later/{{id}}', 'body', '{}'::jsonb), 10, '{\"after\": \"2 seconds\"}')"
q "UPDATE crm.deal SET stage_id = crm.stage('deal', 'executing') WHERE id IN (7, 8, 9, 10)"
check "the delayed robots wait as jobs" 4 "$(q "SELECT count(*) FROM crm.job WHERE status = 'pending'")"
wait_for "SELECT count(*) = 4 FROM crm.outbox WHERE payload ->> 'url' LIKE '%/ok/later/%' AND status = 'sent'" 30 || true
check "the nodes' job runners ran them when due, their webhooks were sent" "4|4" \
	"$(q "SELECT count(*) FROM crm.job WHERE status = 'done'")|$(q "SELECT count(*) FROM crm.outbox WHERE payload ->> 'url' LIKE '%/ok/later/%' AND status = 'sent'")"

# a failing endpoint: retried on its node, then sent
q "INSERT INTO crm.outbox (channel, payload, entity_type, entity_id)
   VALUES ('webhook', jsonb_build_object('url', '$B/flaky/1/x', 'body', '{}'::jsonb), 'deal', 5)"
wait_for "SELECT status = 'sent' FROM crm.outbox WHERE payload ->> 'url' LIKE '%/flaky/%'" 30 || true
check "a message that failed once is retried and sent" "sent|2" \
	"$(q "SELECT status || '|' || attempts FROM crm.outbox WHERE payload ->> 'url' LIKE '%/flaky/%'")"
# a worker node stopped with -m immediate while its workers send: after
# its restart every message is sent, none lost, duplicates bounded by what
# was in flight
q "INSERT INTO crm.outbox (channel, payload, entity_type, entity_id)
   SELECT 'webhook', jsonb_build_object('url', '$B/slow/0.3/crash/' || g, 'body', '{}'::jsonb), 'deal', g
	 FROM generate_series(1, 60) g"
wait_for "SELECT count(*) >= 5 FROM crm.outbox WHERE payload ->> 'url' LIKE '%/crash/%' AND status = 'sent'" 30 || true
crm_as_owner "$(crm_pg_bindir)/pg_ctl" -D "$CRM_CITUS_DIR/worker1" -m immediate -w stop >/dev/null
echo "# worker node 1 stopped with -m immediate"
crm_as_owner "$(crm_pg_bindir)/pg_ctl" -D "$CRM_CITUS_DIR/worker1" -l "$CRM_CITUS_DIR/worker1.log" -w -t 60 start >/dev/null
wait_for "SELECT count(*) = 60 FROM crm.outbox WHERE payload ->> 'url' LIKE '%/crash/%' AND status = 'sent'" 60 || true
check "after the crash every message is sent" 60 \
	"$(q "SELECT count(*) FROM crm.outbox WHERE payload ->> 'url' LIKE '%/crash/%' AND status = 'sent'")"
crash=$("$PY" - "$HTTP_LOG" <<'PY'
import json, sys
paths = [json.loads(l)["path"] for l in open(sys.argv[1], encoding="utf-8") if "/crash/" in json.loads(l)["path"]]
print(len(set(paths)), "ok" if len(paths) - len(set(paths)) <= 60 else "too many duplicates: %d" % (len(paths) - len(set(paths))))
PY
)
check "each reached the sink, duplicates no more than those in flight" "60 ok" "$crash"

check "the claims are this node's own functions, run by no one else" "f|f" \
	"$(qw "$W1" "SELECT has_function_privilege('public', p.oid, 'EXECUTE') FROM pg_proc p WHERE p.proname LIKE '\_claim\_leases\_%' LIMIT 1")|$(qw "$W2" "SELECT has_function_privilege('public', p.oid, 'EXECUTE') FROM pg_proc p WHERE p.proname LIKE '\_claim\_leases\_%' LIMIT 1")"
[ "${CRM_IT_KEEP_LOGS:-}" ] && cp "$CRM_CITUS_DIR"/*.log /tmp/ 2>/dev/null
check "no server crashed" 0 "$(cat "$CRM_CITUS_DIR"/*.log | grep -c 'terminated by signal' || true)"
errors=$( { tail -n "+$W1_FROM" "$CRM_CITUS_DIR/worker1.log"; tail -n "+$W2_FROM" "$CRM_CITUS_DIR/worker2.log"; } |
	grep -A2 ' ERROR: ' | grep -v 'terminating connection\|connection to the remote node' || true)
# a node stopped with -m immediate: Citus's own maintenance daemon on the
# other loses its connection to it (not ours)
errors=$(echo "$errors" | grep ' ERROR: ' | grep -v 'SSL SYSCALL error\|server closed the connection' || true)
[ -z "$errors" ] || echo "$errors" | sed 's/^/# /'
check "no error on the worker nodes after crm.distribute() (claims, records, jobs)" 0 "$(echo -n "$errors" | grep -c . || true)"
it_end
