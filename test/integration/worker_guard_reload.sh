#!/usr/bin/env bash
# Tightening crm.allowed_hosts (a reload) holds for connections kept alive
# from before: with the worker idle its pool is dropped; with a transfer in
# flight (the pool kept) each request is guarded before it is sent, on a
# reused connection too.
set -euo pipefail
cd "$(dirname "$0")/../.."
. scripts/lib.sh
. test/integration/common.bash

it_begin worker_guard_reload "crm.allowed_hosts = '127.0.0.1'" "crm.http_timeout = 10s"
it_sink_http
B=http://127.0.0.1:$HTTP_PORT
LOG=$CRM_CLUSTER_DIR/server.log

sink_count() {
	"$PY" - "$HTTP_LOG" "$1" <<'PY'
import json, sys
print(sum(1 for l in open(sys.argv[1], encoding="utf-8") if json.loads(l)["path"].startswith(sys.argv[2])))
PY
}
msg() { q "INSERT INTO crm.outbox (channel, payload) VALUES ('webhook', jsonb_build_object('url', '$1')) RETURNING id"; }
set_hosts() { q "ALTER SYSTEM SET crm.allowed_hosts = '$1'" >/dev/null; q "SELECT pg_reload_conf()" >/dev/null; sleep 0.5; }
refused() { q "SELECT status || '|' || (last_error LIKE 'refused to connect to 127.0.0.1: 127.0.0.1 is a loopback address%') FROM crm.outbox WHERE id = $1"; }

echo "# the worker idle: its kept-alive connections are dropped"
id=$(msg "$B/ok/a1")
wait_for "SELECT status = 'sent' FROM crm.outbox WHERE id = $id" 5 || true
check "allowed: sent (its connection stays open)" "sent" "$(q "SELECT status FROM crm.outbox WHERE id = $id")"
set_hosts ''
id=$(msg "$B/ok/a2")
wait_for "SELECT status = 'dead' FROM crm.outbox WHERE id = $id" 5 || true
check "after the reload: refused, nothing sent" "dead|true|0" "$(refused $id)|$(sink_count /ok/a2)"

echo "# a transfer in flight across the reload: every request is guarded"
set_hosts '127.0.0.1'
id=$(msg "$B/ok/b1")
wait_for "SELECT status = 'sent' FROM crm.outbox WHERE id = $id" 5 || true
slow=$(msg "$B/slow/3/b")
wait_for "SELECT status = 'sending' FROM crm.outbox WHERE id = $slow" 5 || true
sleep 0.2
id=$(msg "$B/ok/b2")
wait_for "SELECT status = 'sent' FROM crm.outbox WHERE id = $id" 5 || true
check "allowed, while the slow one is in flight: sent" "sent" "$(q "SELECT status FROM crm.outbox WHERE id = $id")"
set_hosts ''
id=$(msg "$B/ok/b3")
wait_for "SELECT status = 'dead' FROM crm.outbox WHERE id = $id" 5 || true
check "after the reload, on a kept-alive connection: refused, nothing sent" "dead|true|0" "$(refused $id)|$(sink_count /ok/b3)"
wait_for "SELECT status <> 'sending' FROM crm.outbox WHERE id = $slow" 8 || true
check "the transfer in flight at the reload finishes" "sent" "$(q "SELECT status FROM crm.outbox WHERE id = $slow")"

check "no worker crashed (server log)" "0" "$(grep -c 'terminated by signal' "$LOG" || true)"
it_end
