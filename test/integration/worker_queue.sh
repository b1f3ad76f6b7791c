#!/usr/bin/env bash
# The queue's guarantees with the worker running: a lease left by a dead
# worker returns the message to the queue when it expires; several claimers
# drain one outbox together without sending anything twice (SKIP LOCKED, as
# a database's workers do: worker_parallel.sh); no transaction is held while
# requests travel, and a fast shutdown gives them back to the queue; idle
# workers sleep without polling.
set -euo pipefail
cd "$(dirname "$0")/../.."
. scripts/lib.sh
. test/integration/common.bash

it_begin worker_queue "crm.allowed_hosts = '127.0.0.1'" "crm.worker_concurrency = 16"
it_sink_http
B=http://127.0.0.1:$HTTP_PORT

worker_pids() {
	q "SELECT pid FROM pg_stat_activity WHERE backend_type = 'crm_automation worker' AND datname = 'crm_it'"
}
wait_for "SELECT count(*) = 2 FROM pg_stat_activity WHERE backend_type = 'crm_automation worker' AND datname = 'crm_it'" 10 || true

echo "# a lease left by a dead worker"
# As if a worker had claimed it, sent nothing and died: status sending,
# attempt 1, leased for 2 more seconds.
id=$(q "INSERT INTO crm.outbox (channel, payload, status, attempts, claimed_at, lease_until)
	VALUES ('webhook', '{\"url\": \"$B/ok/leased\"}', 'sending', 1, now(), now() + interval '2 seconds')
	RETURNING id")
lease_end=$(q "SELECT extract(epoch FROM lease_until) FROM crm.outbox WHERE id = $id")
sleep 1
check "while leased, it is left alone" "sending|0" "$(q "SELECT status FROM crm.outbox WHERE id = $id")|$(grep -c /ok/leased "$HTTP_LOG" || true)"
wait_for "SELECT status = 'sent' FROM crm.outbox WHERE id = $id" 10 || true
check "once the lease expired, the message went back to the queue and was sent (attempt 2)" "sent/2" \
	"$(q "SELECT status || '/' || attempts FROM crm.outbox WHERE id = $id")"
got=$("$PY" - "$HTTP_LOG" <<'PY'
import json, sys
for l in open(sys.argv[1]):
    r = json.loads(l)
    if r["path"] == "/ok/leased": print(r["time"])
PY
)
check "the worker woke at the lease's end (within 1 s), not before" "t" \
	"$("$PY" -c "print('t' if 0 <= $got - $lease_end < 1.0 else '$got - $lease_end')")"

echo "# several claimers drain one outbox"
# The worker and three SQL sessions running the worker's claim, all at
# once.  A SQL claimer records its messages as sent without sending them.
N=3000
q "ALTER SYSTEM SET crm.worker_enabled = off" && q "SELECT pg_reload_conf()" >/dev/null
sleep 0.3
q "INSERT INTO crm.outbox (channel, payload)
   SELECT 'webhook', jsonb_build_object('url', '$B/ok/multi/' || i) FROM generate_series(1, $N) i"
claimer() {
	local ids
	while :; do
		ids=$(q "SELECT string_agg(id::text, ',') FROM crm._claim_messages(20, '1 minute')")
		[ -z "$ids" ] && break
		echo "$ids" | tr ',' '\n' >>"$IT_DIR/claimed.$1"
		q "UPDATE crm.outbox SET status = 'sent', sent_at = now(), lease_until = NULL, last_error = 'claimer $1'
		   WHERE id IN ($ids) AND status = 'sending'" >/dev/null
	done
}
q "ALTER SYSTEM RESET crm.worker_enabled" && q "SELECT pg_reload_conf()" >/dev/null
claimer 1 & c1=$!
claimer 2 & c2=$!
claimer 3 & c3=$!
wait $c1 $c2 $c3
wait_for "SELECT count(*) = $N FROM crm.outbox WHERE status = 'sent' AND payload->>'url' LIKE '%/ok/multi/%'" 30 || true
read -r by_worker dup_worker by_sql dup_sql <<<"$("$PY" - "$HTTP_LOG" "$IT_DIR" <<'PY'
import glob, json, sys
worker = [json.loads(l)["path"].rsplit("/", 1)[1] for l in open(sys.argv[1]) if "/ok/multi/" in l]
sql = []
for f in glob.glob(sys.argv[2] + "/claimed.*"):
    sql += [l.strip() for l in open(f) if l.strip()]
print(len(set(worker)), len(worker) - len(set(worker)), len(set(sql)), len(sql) - len(set(sql)))
PY
)"
ids_by_worker=$(q "SELECT count(*) FROM crm.outbox WHERE payload->>'url' LIKE '%/ok/multi/%' AND last_error IS NULL AND status = 'sent'")
echo "# the worker sent $by_worker, the SQL claimers took $by_sql"
check "every message was sent once: by the worker or by one claimer" "$N|0|0" \
	"$((by_worker + by_sql))|$dup_worker|$dup_sql"
check "the worker's share is what it recorded; the claimers' rows were never sent by it" "$by_worker" "$ids_by_worker"
check "each party took part" "t" "$([ "$by_worker" -gt 0 ] && [ "$by_sql" -gt 0 ] && echo t || echo f)"

echo "# messages due behind the workers' claim point"
# The workers claim after the furthest message any of them claimed (in due
# order); one that becomes due behind that point is claimed from the head
# of the queue: at once when the claim after the point comes back short,
# within 250 ms during a burst.
id=$(q "INSERT INTO crm.outbox (channel, payload, next_attempt_at)
	VALUES ('webhook', '{\"url\": \"$B/ok/behind/idle\"}', now() - interval '1 hour') RETURNING id")
wait_for "SELECT status = 'sent' FROM crm.outbox WHERE id = $id" 5 || true
check "queued behind the point with nothing else due, it is sent at once" "sent" \
	"$(q "SELECT status FROM crm.outbox WHERE id = $id")"
q "INSERT INTO crm.outbox (channel, payload)
   SELECT 'webhook', jsonb_build_object('url', '$B/ok/burst/' || i) FROM generate_series(1, 2000) i"
sleep 0.2
id=$(q "INSERT INTO crm.outbox (channel, payload, next_attempt_at)
	VALUES ('webhook', '{\"url\": \"$B/ok/behind/burst\"}', now() - interval '1 hour') RETURNING id")
wait_for "SELECT count(*) = 2001 FROM crm.outbox WHERE status = 'sent' AND payload->>'url' ~ '/ok/(burst|behind/burst)'" 30 || true
order=$("$PY" - "$HTTP_LOG" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
behind = [r["time"] for r in rows if r["path"] == "/ok/behind/burst"]
burst = [r["time"] for r in rows if r["path"].startswith("/ok/burst/")]
print("t" if behind and burst and behind[0] < max(burst) else "f %s %s" % (behind[:1], max(burst or [0])))
PY
)
check "queued behind the point during a burst, it is sent before the burst's last message" "t" "$order"

echo "# shutdown: transfers in flight finish or go back to the queue"
q "INSERT INTO crm.outbox (channel, payload) SELECT 'webhook', jsonb_build_object('url', '$B/slow/5/stop' || i) FROM generate_series(1, 3) i"
for _ in $(seq 1 50); do [ "$(grep -c '/slow/5/stop' "$HTTP_LOG" || true)" -ge 3 ] && break; sleep 0.1; done
check "while their requests travel, the workers hold no transaction" "idle||" \
	"$(q "SELECT DISTINCT state || '|' || coalesce(xact_start::text, '') || '|' || coalesce(backend_xid::text, '') FROM pg_stat_activity WHERE backend_type = 'crm_automation worker' AND datname = 'crm_it'")"
check "the three are sending, attempt 1" "sending/1 sending/1 sending/1" \
	"$(q "SELECT string_agg(status || '/' || attempts, ' ' ORDER BY id) FROM crm.outbox WHERE payload->>'url' LIKE '%/slow/5/stop%'")"
crm_cluster_restart -m fast
wait_for "SELECT count(*) = 3 FROM crm.outbox WHERE payload->>'url' LIKE '%/slow/5/stop%' AND status = 'sent'" 20 || true
check "stopped mid-request (SIGTERM), they went back to the queue and were sent after the restart, the interrupted attempt not counted" \
	"sent/1 sent/1 sent/1|6" \
	"$(q "SELECT string_agg(status || '/' || attempts, ' ' ORDER BY id) FROM crm.outbox WHERE payload->>'url' LIKE '%/slow/5/stop%'")|$(grep -c '/slow/5/stop' "$HTTP_LOG")"
wait_for "SELECT count(*) = 2 FROM pg_stat_activity WHERE backend_type = 'crm_automation worker' AND datname = 'crm_it'" 10 || true

echo "# idle workers use no CPU"
sleep 1
pids=$(worker_pids)
cpu() { local p s=0; for p in $pids; do s=$((s + $(awk '{print $14 + $15}' "/proc/$p/stat"))); done; echo $s; }
wakeups() { local p s=0; for p in $pids; do s=$((s + $(awk '/^voluntary_ctxt_switches/ {print $2}' "/proc/$p/status"))); done; echo $s; }
c0=$(cpu); w0=$(wakeups)
sleep 5
c1=$(cpu); w1=$(wakeups)
echo "# over 5 s idle, both workers: $((c1 - c0)) CPU ticks, $((w1 - w0)) wake-ups"
check "no CPU time over 5 idle seconds" "0" "$((c1 - c0))"
check "at most 2 wake-ups each over 5 idle seconds (no polling loop)" "t" "$([ $((w1 - w0)) -le 4 ] && echo t || echo f)"

it_end
