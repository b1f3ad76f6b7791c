#!/usr/bin/env bash
# The worker's statements keep reading the outbox by index and by address
# as it grows: their plans are made once, at the first message, when the
# table is nearly empty and reading all of it looks as cheap as anything.
# After that first message, 3,000 more are delivered; the outbox must not be
# read in full even once (pg_stat_user_tables.seq_tup_read).  And the
# record of each result finds its row by an index scan, which prunes the
# page of the version the claim left: the new version stays on that page,
# and delivering the messages does not grow the table.
set -euo pipefail
cd "$(dirname "$0")/../.."
. scripts/lib.sh
. test/integration/common.bash

N=3000
it_begin worker_plans "crm.allowed_hosts = '127.0.0.1'" "crm.worker_concurrency = 16" "autovacuum = off"
it_sink_http
B=http://127.0.0.1:$HTTP_PORT
received() { grep -c '"/ok/plans/' "$HTTP_LOG" || true; }
wait_received() {	# COUNT: waits up to 30 s, reading only the sink's log
	for _ in $(seq 1 300); do [ "$(received)" -ge "$1" ] && return 0; sleep 0.1; done
	return 1
}

q "INSERT INTO crm.outbox (channel, payload) VALUES ('webhook', '{\"url\": \"$B/ok/plans/first\"}')" >/dev/null
wait_received 1 || true
check "the first message, into a nearly empty outbox, is sent" "1" "$(received)"

q "ALTER SYSTEM SET crm.worker_enabled = off" && q "SELECT pg_reload_conf()" >/dev/null
sleep 0.5
q "INSERT INTO crm.outbox (channel, payload)
   SELECT 'webhook', jsonb_build_object('url', '$B/ok/plans/' || i, 'body', jsonb_build_object('n', i, 'deal', repeat('x', 500)))
	 FROM generate_series(1, $N) i"
pages0=$(q "SELECT pg_relation_size('crm.outbox') / 8192")
sleep 1.2	# the worker's statistics from the first message are flushed by its next transactions
read0=$(q "SELECT seq_tup_read FROM pg_stat_user_tables WHERE relid = 'crm.outbox'::regclass")
q "ALTER SYSTEM RESET crm.worker_enabled" && q "SELECT pg_reload_conf()" >/dev/null
wait_received $((N + 1)) || true
# one more message after a pause, so that the worker reports its statistics
sleep 1.2
q "INSERT INTO crm.outbox (channel, payload) VALUES ('webhook', '{\"url\": \"$B/ok/plans/last\"}')" >/dev/null
wait_received $((N + 2)) || true
sleep 1.2
q "INSERT INTO crm.outbox (channel, payload) VALUES ('webhook', '{\"url\": \"$B/ok/plans/flush\"}')" >/dev/null
wait_received $((N + 3)) || true
sleep 0.5
read1=$(q "SELECT seq_tup_read FROM pg_stat_user_tables WHERE relid = 'crm.outbox'::regclass")
echo "# rows read by sequential scans while $N messages were delivered: $((read1 - read0))"
check "all $N messages were received" "$((N + 3))" "$(received)"
check "the outbox was not read in full while they were delivered (fewer than $N rows by sequential scans)" "t" \
	"$([ $((read1 - read0)) -lt "$N" ] && echo t || echo f)"
pages1=$(q "SELECT pg_relation_size('crm.outbox') / 8192")
echo "# outbox pages: $pages0 with the messages queued, $pages1 once they are sent"
check "delivering them did not grow the outbox by more than a tenth" "t" \
	"$([ "$pages1" -le $((pages0 + pages0 / 10 + 2)) ] && echo t || echo f)"
wait_for "SELECT count(*) = $((N + 3)) FROM crm.outbox WHERE status = 'sent'" 10 || true
check "and each is marked sent" "$((N + 3))" "$(q "SELECT count(*) FROM crm.outbox WHERE status = 'sent'")"

it_end
