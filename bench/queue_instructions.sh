#!/usr/bin/env bash
# What queuing a webhook costs a move (issue 17): one UPDATE moving N deals
# (default 2,000) into a stage with one `webhook` robot, each deal queuing a
# message into a crm.outbox already holding 100,000 sent ones, counted in CPU
# instructions with callgrind in a single-user backend (warm: a move of 100
# other deals first; the instructions of that backend without the measured
# move are subtracted).  The delivery workers are off.  Prints millions of
# instructions; compare builds by running it on each.
#
#   N=2000 bash bench/queue_instructions.sh
#   PG_ROOT=/tmp/x bash bench/queue_instructions.sh   (a private copy of
#     PostgreSQL, without the test lock: see bench/worker_bench.sh's header)
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
crm_install_deps valgrind
crm_bench_build
N=${N:-2000}
W=$(mktemp -d /tmp/crm_queue.XXXXXX)
chmod 777 "$W"
trap 'crm_cluster_stop; rm -rf "$W"' EXIT
crm_cluster_start "crm.worker_enabled = off"
q() { psql -X -q -t -A -v ON_ERROR_STOP=1 -d postgres -c "$1"; }
q "CREATE EXTENSION crm_automation"
q "SELECT crm.add_provider('webhook', 'bench', '{}', 'whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw')" >/dev/null
q "INSERT INTO crm.user (name) VALUES ('Bench')" >/dev/null
q "INSERT INTO crm.deal (title, responsible_id, amount, currency)
   SELECT 'Office chairs for branch ' || g, (SELECT min(id) FROM crm.user), 4800 + g, 'EUR'
	 FROM generate_series(1, $N + 100) g" >/dev/null
q "INSERT INTO crm.outbox (channel, payload, status, sent_at, entity_type, entity_id)
   SELECT 'webhook', jsonb_build_object('url', 'http://x/' || g, 'body', repeat('x', 500)), 'sent', now(), 'deal', g
	 FROM generate_series(1, 100000) g" >/dev/null
T=$(q "SELECT crm.stage('deal', 'preparation')")
q "SELECT crm.add_robot($T, 'webhook', '{\"url\": \"http://127.0.0.1:9/deals/{{id}}\", \"provider\": \"bench\"}', name => 'hook')" >/dev/null
q "VACUUM ANALYZE" >/dev/null
crm_icount_prepare "$W"
warm="UPDATE crm.deal SET stage_id = $T WHERE id > $N"
with=$(crm_icount "$W" with "$warm" "UPDATE crm.deal SET stage_id = $T WHERE id <= $N")
without=$(crm_icount "$W" without "$warm")
python3 -c "print('a move of $N deals, each queuing a webhook: %.1f M instructions (%.0f per deal)' % (($with - $without) / 1e6, ($with - $without) / $N))"
