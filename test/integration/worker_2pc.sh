#!/usr/bin/env bash
# Two-phase commit: a message queued by a prepared transaction is sent as
# soon as COMMIT PREPARED runs (from another session), as fast as after a
# plain COMMIT; never after ROLLBACK PREPARED; and PREPARE leaves no
# wake-up behind for the session's next transaction.
set -euo pipefail
cd "$(dirname "$0")/../.."
. scripts/lib.sh
. test/integration/common.bash

it_begin worker_2pc "crm.allowed_hosts = '127.0.0.1'" "max_prepared_transactions = 5"
it_sink_http
B=http://127.0.0.1:$HTTP_PORT
LOG=$CRM_CLUSTER_DIR/server.log

arrived() {	# arrived PATH: the time the sink received it (empty: never)
	"$PY" - "$HTTP_LOG" "$1" <<'PY'
import json, sys
for l in open(sys.argv[1], encoding="utf-8"):
    r = json.loads(l)
    if r["path"] == sys.argv[2]: print(r["time"])
PY
}
now() { q "SELECT extract(epoch FROM clock_timestamp())"; }

sleep 1
q "BEGIN; INSERT INTO crm.outbox (channel, payload) VALUES ('webhook', '{\"url\": \"$B/ok/prepared\"}'); PREPARE TRANSACTION 'p1'" >/dev/null
sleep 0.5
check "prepared: not sent" "" "$(arrived /ok/prepared)"
t0=$(now)
q "COMMIT PREPARED 'p1'" >/dev/null
wait_for "SELECT status = 'sent' FROM crm.outbox WHERE payload->>'url' = '$B/ok/prepared'" 5 || true
t1=$(arrived /ok/prepared)
check "after COMMIT PREPARED: sent within 200 ms" "t" "$("$PY" -c "print(str(0 <= ${t1:-99} - $t0 < 0.2).lower()[0])")"

q "BEGIN; INSERT INTO crm.outbox (channel, payload) VALUES ('webhook', '{\"url\": \"$B/ok/rolled-back\"}'); PREPARE TRANSACTION 'p2'" >/dev/null
q "ROLLBACK PREPARED 'p2'" >/dev/null
sleep 0.5
check "after ROLLBACK PREPARED: never sent" "" "$(arrived /ok/rolled-back)"

check "no worker crashed (server log)" "0" "$(grep -c 'terminated by signal' "$LOG" || true)"
it_end
