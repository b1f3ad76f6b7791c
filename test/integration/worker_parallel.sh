#!/usr/bin/env bash
# Several delivery workers per database (crm.workers_per_database): they
# share crm.worker_concurrency, a burst draws them all in while a trickle
# wakes only the first, every message is delivered exactly once while they
# claim from the same outbox, one of them stopped (SIGTERM) or killed
# (SIGKILL) mid-delivery loses nothing and is started again, the setting is
# checked and followed on reload.
set -euo pipefail
cd "$(dirname "$0")/../.."
. scripts/lib.sh
. test/integration/common.bash

CONC=30
it_begin worker_parallel "crm.allowed_hosts = '127.0.0.1'" "crm.worker_concurrency = $CONC" \
	"crm.workers_per_database = 3" "crm.http_timeout = 5s"
it_sink_http
B=http://127.0.0.1:$HTTP_PORT

workers() {
	q "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'crm_automation worker' AND datname = 'crm_it'"
}
pid_of() {	# pid_of RANK
	q "SELECT pid FROM crm.worker_status() WHERE role = 'delivery' AND database = 'crm_it' AND worker = $1"
}
pause() { q "ALTER SYSTEM SET crm.worker_enabled = off" && q "SELECT pg_reload_conf()" >/dev/null; sleep 0.3; }
resume() { q "ALTER SYSTEM RESET crm.worker_enabled" && q "SELECT pg_reload_conf()" >/dev/null; }
# received PATTERN: "distinct total" webhook-ids of the requests whose path contains PATTERN
received() {
	"$PY" - "$HTTP_LOG" "$1" <<'PY'
import json, sys
ids = [r["headers"]["webhook-id"] for r in map(json.loads, open(sys.argv[1])) if sys.argv[2] in r["path"]]
print(len(set(ids)), len(ids))
PY
}

echo "# three workers"
wait_for "SELECT count(*) = 3 FROM crm.worker_status() WHERE role = 'delivery' AND database = 'crm_it' AND state = 'running'" 15 || true
check "crm.worker_status() shows ranks 0, 1, 2 running" "0 running,1 running,2 running" \
	"$(q "SELECT string_agg(worker || ' ' || state, ',' ORDER BY worker) FROM crm.worker_status() WHERE role = 'delivery' AND database = 'crm_it'")"
check "three worker processes, with the pids shown" "3|3" \
	"$(workers)|$(q "SELECT count(DISTINCT pid) FROM crm.worker_status() s JOIN pg_stat_activity a USING (pid) WHERE s.database = 'crm_it' AND a.backend_type = 'crm_automation worker'")"

echo "# bad values are refused, nothing is stored"
bad() {	# bad VALUE: "SQLSTATE message"
	psql -X -q -t -A -d crm_it -v VERBOSITY=verbose -c "ALTER SYSTEM SET crm.workers_per_database = $1" 2>&1 |
		sed -nE 's/^ERROR: +([0-9A-Z]{5}): (.*)$/\1 \2/p'
}
check "0 is refused" '22023 0 is outside the valid range for parameter "crm.workers_per_database" (1 .. 16)' "$(bad 0)"
check "17 is refused" '22023 17 is outside the valid range for parameter "crm.workers_per_database" (1 .. 16)' "$(bad 17)"
check "a word is refused" '22023 invalid value for parameter "crm.workers_per_database": "two"' "$(bad "'two'")"
check "a session cannot SET it" "55P02" \
	"$(psql -X -q -d crm_it -v VERBOSITY=verbose -c "SET crm.workers_per_database = 2" 2>&1 | sed -nE 's/^ERROR: +([0-9A-Z]{5}).*/\1/p')"
check "nothing was written to postgresql.auto.conf" "0" \
	"$(grep -c workers_per_database "$CRM_CLUSTER_DIR/data/postgresql.auto.conf" || true)"

echo "# a trickle wakes only the first worker"
sleep 0.5
wakeups() { awk '/^voluntary_ctxt_switches/ {print $2}' "/proc/$1/status"; }
p1=$(pid_of 1); p2=$(pid_of 2)
w1=$(wakeups "$p1"); w2=$(wakeups "$p2")
for i in $(seq 1 20); do
	q "INSERT INTO crm.outbox (channel, payload) VALUES ('webhook', '{\"url\": \"$B/ok/trickle/$i\"}')"
	sleep 0.05
done
wait_for "SELECT count(*) = 20 FROM crm.outbox WHERE payload->>'url' LIKE '%/ok/trickle/%' AND status = 'sent'" 10 || true
check "20 single messages committed one by one are sent" "20 20" "$(received /ok/trickle/)"
echo "# ranks 1 and 2 woke $(($(wakeups "$p1") - w1)) and $(($(wakeups "$p2") - w2)) times"
check "the other workers slept meanwhile (at most 2 wake-ups each)" "t" \
	"$([ $(($(wakeups "$p1") - w1)) -le 2 ] && [ $(($(wakeups "$p2") - w2)) -le 2 ] && echo t || echo f)"

echo "# a burst draws every worker in, and they share crm.worker_concurrency"
# 90 requests that take 2 s each, all to one endpoint: with 10 slots per
# worker, of which one endpoint may hold 9 (all but an eighth, at least
# one, stays free for other endpoints), three workers have 27 in flight at
# once; one worker alone would have 9.
SHARE=$((3 * (CONC / 3 - 1)))
q "INSERT INTO crm.outbox (channel, payload)
   SELECT 'webhook', jsonb_build_object('url', '$B/slow/2/burst/' || i) FROM generate_series(1, 90) i"
for _ in $(seq 1 15); do [ "$(grep -c '/slow/2/burst/' "$HTTP_LOG" || true)" -ge $SHARE ] && break; sleep 0.1; done
sleep 0.3
check "within 2 s, $SHARE requests are in flight: the three workers' shares for one endpoint, no more" "$SHARE" \
	"$(grep -c '/slow/2/burst/' "$HTTP_LOG" || true)"
wait_for "SELECT count(*) = 90 FROM crm.outbox WHERE payload->>'url' LIKE '%/slow/2/burst/%' AND status = 'sent'" 30 || true
check "all 90 are sent once" "90 90" "$(received /slow/2/burst/)"

echo "# exactly once: 3,000 messages, three claimers, one worker stopped mid-delivery"
N=3000
pause
q "INSERT INTO crm.outbox (channel, payload)
   SELECT 'webhook', jsonb_build_object('url', '$B/ok/many/' || i) FROM generate_series(1, $N) i"
resume
# paused workers have left (crm.worker_enabled = off); take rank 1's new pid
wait_for "SELECT count(*) = 3 FROM crm.worker_status() WHERE role = 'delivery' AND database = 'crm_it' AND state = 'running'" 15 || true
old1=$(pid_of 1)
for _ in $(seq 1 300); do [ "$(grep -c '/ok/many/' "$HTTP_LOG" || true)" -ge $((N / 3)) ] && break; sleep 0.05; done
q "SELECT pg_terminate_backend($old1)" >/dev/null
echo "# stopped rank 1 (SIGTERM) after $(grep -c '/ok/many/' "$HTTP_LOG" || true) requests"
wait_for "SELECT count(*) = $N FROM crm.outbox WHERE payload->>'url' LIKE '%/ok/many/%' AND status = 'sent'" 60 || true
check "every message is marked sent" "$N" \
	"$(q "SELECT count(*) FROM crm.outbox WHERE payload->>'url' LIKE '%/ok/many/%' AND status = 'sent'")"
check "the sink received each exactly once (distinct webhook-ids = requests)" "$N $N" "$(received /ok/many/)"
check "each message took one attempt" "1" \
	"$(q "SELECT max(attempts) FROM crm.outbox WHERE payload->>'url' LIKE '%/ok/many/%'")"
wait_for "SELECT count(*) = 3 FROM crm.worker_status() WHERE role = 'delivery' AND database = 'crm_it' AND state = 'running'" 15 || true
check "the launcher started rank 1 again (a new process)" "running|t" \
	"$(q "SELECT state FROM crm.worker_status() WHERE role = 'delivery' AND database = 'crm_it' AND worker = 1")|$([ "$(pid_of 1)" != "$old1" ] && echo t || echo f)"

echo "# one worker killed mid-delivery (SIGKILL: the server reinitialises)"
pause
q "INSERT INTO crm.outbox (channel, payload)
   SELECT 'webhook', jsonb_build_object('url', '$B/ok/killed/' || i) FROM generate_series(1, $N) i"
resume
for _ in $(seq 1 300); do [ "$(grep -c '/ok/killed/' "$HTTP_LOG" || true)" -ge $((N / 3)) ] && break; sleep 0.05; done
kill -9 "$(pid_of 2)"
sleep 0.5
for _ in $(seq 1 100); do psql -X -q -d crm_it -c "SELECT 1" >/dev/null 2>&1 && break; sleep 0.2; done
wait_for "SELECT count(*) = $N FROM crm.outbox WHERE payload->>'url' LIKE '%/ok/killed/%' AND status = 'sent'" 60 || true
check "every message is marked sent" "$N" \
	"$(q "SELECT count(*) FROM crm.outbox WHERE payload->>'url' LIKE '%/ok/killed/%' AND status = 'sent'")"
read -r distinct total <<<"$(received /ok/killed/)"
echo "# received $total requests, $distinct distinct webhook-ids"
check "the sink received every message" "$N" "$distinct"
check "duplicates are bounded by the in-flight window and the results not yet written (2 x $CONC)" "t" \
	"$([ $((total - distinct)) -le $((2 * CONC)) ] && echo t || echo f)"
wait_for "SELECT count(*) = 3 FROM crm.worker_status() WHERE role = 'delivery' AND database = 'crm_it' AND state = 'running'" 15 || true
check "three workers run again" "3" "$(workers)"

echo "# the setting follows reloads"
q "ALTER SYSTEM SET crm.workers_per_database = 1" && q "SELECT pg_reload_conf()" >/dev/null
wait_for "SELECT count(*) = 1 FROM pg_stat_activity WHERE backend_type = 'crm_automation worker' AND datname = 'crm_it'" 10 || true
check "lowered to 1: ranks 1 and 2 leave, rank 0 stays" "1|0 running" \
	"$(workers)|$(q "SELECT string_agg(worker || ' ' || state, ',' ORDER BY worker) FROM crm.worker_status() WHERE role = 'delivery' AND database = 'crm_it'")"
check "and say why in the server log" "2" \
	"$(grep -c 'crm_automation worker [12] stopping: crm.workers_per_database is 1' "$CRM_CLUSTER_DIR/server.log" || true)"
id=$(q "INSERT INTO crm.outbox (channel, payload) VALUES ('webhook', '{\"url\": \"$B/ok/alone\"}') RETURNING id")
wait_for "SELECT status = 'sent' FROM crm.outbox WHERE id = $id" 10 || true
check "the one worker left delivers" "sent" "$(q "SELECT status FROM crm.outbox WHERE id = $id")"
q "ALTER SYSTEM SET crm.workers_per_database = 2" && q "SELECT pg_reload_conf()" >/dev/null
wait_for "SELECT count(*) = 2 FROM pg_stat_activity WHERE backend_type = 'crm_automation worker' AND datname = 'crm_it'" 10 || true
check "raised to 2: rank 1 starts again" "2|0 running,1 running" \
	"$(workers)|$(q "SELECT string_agg(worker || ' ' || state, ',' ORDER BY worker) FROM crm.worker_status() WHERE role = 'delivery' AND database = 'crm_it'")"
q "ALTER SYSTEM SET crm.worker_concurrency = 1" && q "SELECT pg_reload_conf()" >/dev/null
wait_for "SELECT count(*) = 1 FROM pg_stat_activity WHERE backend_type = 'crm_automation worker' AND datname = 'crm_it'" 10 || true
check "never more workers than crm.worker_concurrency" "1" "$(workers)"

it_end
