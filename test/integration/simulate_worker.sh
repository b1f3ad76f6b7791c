#!/usr/bin/env bash
# crm.simulate with the delivery worker and the job runner running: a
# simulated move whose robots would queue a webhook and schedule a delayed
# run shows them, leaves every crm table as it was, and nothing reaches the
# HTTP sink (no worker woken, nothing queued); the same move made for real
# is delivered, so the worker was listening all along.  Also a simulation
# that fails halfway, and one run by a crm_user.
set -euo pipefail
cd "$(dirname "$0")/../.."
. scripts/lib.sh
. test/integration/common.bash

it_begin simulate_worker "crm.allowed_hosts = '127.0.0.1'"
it_sink_http
B=http://127.0.0.1:$HTTP_PORT

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

# every crm table's row count, in one line
counts() {
	q "SELECT string_agg(format('%s=%s', c.relname,
	          (xpath('/row/n/text()', query_to_xml(format('SELECT count(*) AS n FROM crm.%I', c.relname), false, true, '')))[1]::text),
	          ' ' ORDER BY c.relname)
	     FROM pg_class c WHERE c.relnamespace = 'crm'::regnamespace AND c.relkind = 'r'"
}

q "INSERT INTO crm.user (id, name, email) VALUES (1, 'Ann', 'ann@example.com')"
q "SELECT crm.add_robot(crm.stage('deal', 'preparation'), 'webhook', '{\"url\": \"$B/sim/{{id}}\"}')" >/dev/null
q "SELECT crm.add_robot(crm.stage('deal', 'preparation'), 'add_comment', '{\"text\": \"later\"}',
	delay => '{\"after\": \"1 hour\"}')" >/dev/null
q "SELECT crm.add_robot(crm.stage('deal', 'preparation'), 'create_task', '{\"title\": \"Call {{title}}\", \"responsible\": \"{{responsible_id}}\"}')" >/dev/null
q "INSERT INTO crm.deal (id, title, responsible_id, amount) VALUES (1, 'Desks', 1, 500), (2, 'Lamps', 1, 50)"
wait_for "SELECT count(*) > 0 FROM pg_stat_activity WHERE backend_type = 'crm_automation worker' AND datname = 'crm_it'" 20 || true
check "the database's delivery worker runs" "t" \
	"$(q "SELECT count(*) > 0 FROM pg_stat_activity WHERE backend_type = 'crm_automation worker' AND datname = 'crm_it'")"
before=$(counts)

MOVE="UPDATE crm.deal SET stage_id = crm.stage(''deal'', ''preparation'') WHERE id = 1"
check "the simulated move shows the message it would queue" "1" \
	"$(q "SELECT count(*) FROM crm.simulate('$MOVE') WHERE tbl = 'outbox'")"
check "and the delayed run it would schedule" "1" \
	"$(q "SELECT count(*) FROM crm.simulate('$MOVE') WHERE tbl = 'job'")"
check "and the task it would create" "1" \
	"$(q "SELECT count(*) FROM crm.simulate('$MOVE') WHERE tbl = 'task'")"
check "every crm table's row count is unchanged" "$before" "$(counts)"
check "the deal did not move" "new" \
	"$(q "SELECT s.code FROM crm.deal d JOIN crm.stage s ON s.id = d.stage_id WHERE d.id = 1")"

# a statement that fails halfway: the second row breaks a check
FAIL="UPDATE crm.deal SET stage_id = crm.stage(''deal'', ''preparation''), currency = CASE WHEN id = 2 THEN ''bad'' ELSE currency END"
check "a statement failing halfway is reported as an error row" "error" \
	"$(q "SELECT string_agg(DISTINCT op, ',') FROM crm.simulate('$FAIL')")"
check "and leaves every table as it was" "$before" "$(counts)"

# a crm_user simulates too (its own rights)
q "CREATE ROLE sim_user LOGIN IN ROLE crm_user" >/dev/null
check "a crm_user's simulation shows the message" "1" \
	"$(psql -X -q -t -A -U sim_user -d crm_it -c "SELECT count(*) FROM crm.simulate('$MOVE') WHERE tbl = 'outbox'")"
check "and leaves nothing" "$before" "$(counts)"

sleep 2		# time for a woken worker to send
check "nothing reached the sink" "0" "$(sink_count /sim/)"

q "UPDATE crm.deal SET stage_id = crm.stage('deal', 'preparation') WHERE id = 1"
wait_for "SELECT count(*) = 1 FROM crm.outbox WHERE status = 'sent'" 10 || true
check "the real move's webhook is delivered, once" "1" "$(sink_count /sim/1)"
check "the server log has no crash" "0" "$(grep -c 'terminated by signal' "$CRM_CLUSTER_DIR/server.log" || true)"
it_end
