#!/usr/bin/env bash
# The Quickstart demo (demo/demo.sql, what demo/run.sh runs) runs to the end
# on a throw-away cluster with the worker on, and shows what it promises: the
# robots fired, the webhook reached the local sink, the trigger moved the
# deal, the approval process paused on its task and went on once the task
# was completed.
set -euo pipefail
cd "$(dirname "$0")/../.."
. scripts/lib.sh
. test/integration/common.bash

IT_NAME=demo
trap it_cleanup EXIT
it_sink_http
crm_cluster_start "crm.allowed_hosts = '127.0.0.1'"

rc=0
psql -X -q -v ON_ERROR_STOP=1 -v sink_url="http://127.0.0.1:$HTTP_PORT/ok" -d postgres \
	-f demo/demo.sql >"$IT_DIR/demo.out" 2>&1 || rc=$?
check "demo/demo.sql runs to the end without an error" "0|0" "$rc|$(grep -c ERROR "$IT_DIR/demo.out" || true)"
[ "$rc" = 0 ] || tail -20 "$IT_DIR/demo.out"
[ -z "${DEMO_SHOW:-}" ] || cat "$IT_DIR/demo.out"
qd() { psql -X -q -t -A -d postgres -c "$1"; }
check "the won deal's webhook reached the sink" "1" "$(grep -c '"path": "/ok/deals/2"' "$HTTP_LOG" || true)"
check "the client's call and the application's event moved the third deal" "executing" \
	"$(qd "SELECT s.code FROM crm.deal d JOIN crm.stage s ON s.id = d.stage_id WHERE d.title = 'Meeting tables'")"
check "the approval: the big deal's process completed after its task, the small one's needed none" \
	"Conference room:completed:Approved|Desk lamps:completed:No approval needed" \
	"$(qd "SELECT string_agg(d.title || ':' || i.status || ':' || i.status_text, '|' ORDER BY d.id) FROM crm.process_instance i JOIN crm.deal d ON d.id = i.document_id WHERE d.title IN ('Conference room', 'Desk lamps')")"
check "the trace shows the pause and the steps after it" "t" \
	"$(qd "SELECT bool_and(status = 'done') AND count(*) = 5 FROM crm.deal d, crm.item_automation('deal', d.id) a WHERE d.title = 'Conference room' AND a.kind = 'process'")"
check "explain: the small deal's notification would not run, and says why" "1" \
	"$(grep -cE 'robot +\| notify +\| condition_false +\| \{\{amount\}\} >= 1000 +\| 600 >= 1000' "$IT_DIR/demo.out" || true)"
check "simulate showed the webhook it would queue, left no message; the real move sent it once" "1|0|1" \
	"$(grep -c 'webhook http://127.0.0.1:[0-9]*/ok/deals/5' "$IT_DIR/demo.out" || true)|$(grep -A2 messages_for_desk_lamps "$IT_DIR/demo.out" | tail -1 | tr -d ' ')|$(grep -c '"path": "/ok/deals/5"' "$HTTP_LOG" || true)"
check "no backend crashed" "0" "$(grep -c 'terminated by signal' "$CRM_CLUSTER_DIR/server.log" || true)"
it_end
