#!/usr/bin/env bash
# Delivery worker benchmark (issue 4).  Prints figures measured in one run
# on a throw-away cluster; nothing here is a pass/fail test.
#
#   0. From the commit (issue 17): N deals moved by one committed UPDATE
#      into a stage with one `webhook` robot, from that commit to nginx's
#      log of the last of the N requests ($msec), ROUNDS rounds; each round
#      then libcurl alone (bench/curl_client.c, no database) sends the same
#      N requests (the robot's body, the worker's headers) at CONC in flight
#      to the same server, from its start to its last request logged.
#      Medians, the median of the rounds' ratios, and the CPU each spent
#      per message.
#   1. Latency at idle: LAT_N (200) signed webhooks committed one at a time,
#      20 ms apart; the time from just before each commit to nginx's log of
#      its receipt ($msec).
#   2. Delivery rate, ROUNDS (3) rounds, medians reported: N (20,000)
#      signed webhooks, each for a deal as a robot queues them, queued with
#      the worker paused, then released; rate = N / (last sent_at -
#      release).  Next to it, in each round, the sink's own ceiling: wrk
#      sending the same requests (same body, same headers, as many
#      connections as crm.worker_concurrency) to the same nginx for 5 s; and
#      libcurl alone (bench/curl_client.c, compiled here): the same N
#      requests from one process, then from WORKERS processes, with no
#      database work at all, what any libcurl-based sender can reach here.
#      Also the CPU time the workers, nginx and curl_client spent per
#      message (from /proc and the shell's `time`), and the outbox's size
#      in pages before and after sending (the record keeps versions on
#      their page).
#   3. Worker memory (RSS and PSS from /proc, and the memory contexts'
#      grand total from pg_log_backend_memory_contexts) after phase 2
#      (ROUNDS x N + LAT_N messages) and after MEM_N (100,000).
#      Next to them, the database's share alone: the same claims and
#      records run from one SQL session with nothing sent, then from two.
#   4. Scheduler tick: crm.run_next_job() with no job due, with 0 and with
#      100,000 jobs in the future.
#
# The sink is Debian's nginx (`return 200`), started on 127.0.0.1 by this
# script in a temporary directory as an unprivileged user, with one worker
# process; the load generator is Debian's wrk.
#
#   N=20000 ROUNDS=3 MEM_N=100000 CONC=64 WORKERS=2 FSYNC=on bash bench/worker_bench.sh
#
# WORKERS is crm.workers_per_database.  With MEM_N=0, phase 3 queues nothing.
# PHASES picks phases by name (default "move latency rate memory tick").
# PG_ROOT=/tmp/x runs on a private copy of PostgreSQL instead of the
# system's, without the test lock: the extension is installed with
# `make install DESTDIR=/tmp/x` into a copy made beforehand with
#   mkdir -p /tmp/x/usr/lib/postgresql /tmp/x/usr/share/postgresql
#   cp -a /usr/lib/postgresql/15 /tmp/x/usr/lib/postgresql/
#   cp -a /usr/share/postgresql/15 /tmp/x/usr/share/postgresql/
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
crm_install_deps nginx wrk libcurl4-openssl-dev
if [ -n "${PG_ROOT:-}" ]; then
	# a private copy of PostgreSQL (see the header): no lock, nothing installed system-wide
	make -s -j2 >/dev/null
	make -s install DESTDIR="$PG_ROOT" >/dev/null
	crm_pg_bindir() { echo "$PG_ROOT$(pg_config --bindir)"; }
else
	exec 9>/tmp/crm_automation.test.lock
	flock 9
	crm_build_install
fi

N=${N:-20000}
MEM_N=${MEM_N:-100000}
LAT_N=${LAT_N:-200}
CONC=${CONC:-64}
WORKERS=${WORKERS:-2}
FSYNC=${FSYNC:-on}
ROUNDS=${ROUNDS:-3}
PHASES=${PHASES:-move latency rate memory tick}
has_phase() { case " $PHASES " in *" $1 "*) return 0 ;; esac; return 1; }

BENCH_DIR=$(mktemp -d /tmp/crm_bench.XXXXXX)
chmod 755 "$BENCH_DIR"
[ "$(id -u)" = 0 ] && chown postgres: "$BENCH_DIR"
cleanup() {
	[ -f "$BENCH_DIR/nginx.pid" ] && kill "$(cat "$BENCH_DIR/nginx.pid")" 2>/dev/null || true
	crm_cluster_stop
	rm -rf "$BENCH_DIR"
}
trap cleanup EXIT

# --- the sink ---------------------------------------------------------------
PORT=$(crm_free_port)
LAT_PORT=$(crm_free_port)
MOVE_PORT=$(crm_free_port)
cat >"$BENCH_DIR/nginx.conf" <<EOF
worker_processes 1;
pid $BENCH_DIR/nginx.pid;
error_log $BENCH_DIR/error.log warn;
events { worker_connections 1024; }
http {
	access_log off;
	client_body_temp_path $BENCH_DIR/body;
	proxy_temp_path $BENCH_DIR/proxy;
	fastcgi_temp_path $BENCH_DIR/fastcgi;
	uwsgi_temp_path $BENCH_DIR/uwsgi;
	scgi_temp_path $BENCH_DIR/scgi;
	keepalive_requests 100000;
	log_format receipt '\$http_webhook_id \$msec';
	server {
		listen 127.0.0.1:$PORT;
		location / { return 200 "ok"; }
	}
	server {
		listen 127.0.0.1:$MOVE_PORT;
		access_log $BENCH_DIR/move.log receipt buffer=256k flush=100ms;
		location / { return 200 "ok"; }
	}
	server {
		listen 127.0.0.1:$LAT_PORT;
		access_log $BENCH_DIR/receipts.log receipt;
		location / { return 200 "ok"; }
	}
}
EOF
crm_as_owner nginx -p "$BENCH_DIR" -e "$BENCH_DIR/error.log" -c "$BENCH_DIR/nginx.conf"
for _ in $(seq 1 50); do [ -s "$BENCH_DIR/nginx.pid" ] && break; sleep 0.1; done
curl -sf "http://127.0.0.1:$PORT/" >/dev/null

# --- the cluster ------------------------------------------------------------
crm_cluster_start "crm.allowed_hosts = '127.0.0.1'" "crm.worker_concurrency = $CONC" \
	"crm.workers_per_database = $WORKERS" \
	"fsync = $FSYNC" "shared_buffers = 256MB" "max_wal_size = 4GB" "log_min_messages = log" \
	"log_line_prefix = '[%p] '"
DB=crm_bench
psql -X -q -d postgres -c "CREATE DATABASE $DB"
psql -X -q -d "$DB" -c "CREATE EXTENSION crm_automation"
q() { psql -X -q -t -A -v ON_ERROR_STOP=1 -d "$DB" -c "$1"; }

SECRET=whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw
q "SELECT crm.add_provider('webhook', 'bench', '{}', '$SECRET')" >/dev/null
# A deal as a robot's default webhook body carries it (about 500 bytes).
BODY=$(q "SELECT jsonb_build_object('event', 'robot', 'entity_type', 'deal', 'item', jsonb_build_object(
	'id', 123456, 'title', 'Office chairs for the new Lyon branch', 'amount', 4800, 'currency', 'EUR',
	'stage_id', 3, 'pipeline_id', 1, 'responsible_id', 17, 'contact_id', 4211, 'company_id', 97,
	'created_at', '2024-05-02T09:14:51.123+00:00', 'updated_at', '2024-05-03T16:02:07.456+00:00',
	'stage_changed_at', '2024-05-03T16:02:07.456+00:00', 'created_by', 17, 'updated_by', 17,
	'fields', jsonb_build_object('UF_SOURCE', 'web form', 'UF_REGION', 'Auvergne-Rhône-Alpes',
								 'UF_PRIORITY', 'high', 'UF_SEATS', 42)))::text")

worker_pids() {
	q "SELECT pid FROM crm.worker_status() WHERE database = '$DB' AND state = 'running' ORDER BY worker"
}
for _ in $(seq 1 100); do [ "$(worker_pids | wc -l)" -ge "$WORKERS" ] && break; sleep 0.1; done
WPIDS=$(worker_pids)
WPID=$(echo "$WPIDS" | head -1)	# memory: the first worker's (they all do the same)
NGINX_PIDS=$(pgrep -P "$(cat "$BENCH_DIR/nginx.pid")" || true)
# CPU ticks (user + system) of the given processes
ticks() { local p s=0; for p in "$@"; do s=$((s + $(awk '{print $14 + $15}' "/proc/$p/stat"))); done; echo $s; }

pause_worker() { q "ALTER SYSTEM SET crm.worker_enabled = off" && q "SELECT pg_reload_conf()" >/dev/null; sleep 0.5; }
# Releases the worker; prints the time of release (epoch seconds).
release_worker() {
	q "ALTER SYSTEM RESET crm.worker_enabled"
	q "SELECT extract(epoch FROM clock_timestamp()) FROM pg_reload_conf()"
}
queue() {	# queue COUNT URL: webhooks as a robot queues them, each for a deal
	q "INSERT INTO crm.outbox (channel, provider_id, payload, entity_type, entity_id)
	   SELECT 'webhook', (SELECT id FROM crm.provider WHERE name = 'bench'),
			  jsonb_build_object('url', '$2', 'body', \$b\$$BODY\$b\$::jsonb), 'deal', i
		 FROM generate_series(1, $1) i"
}
sent() { q "SELECT count(*) FROM crm.outbox WHERE status = 'sent'"; }
# Waits until nothing is left to send, asking from one session that holds
# no snapshot between looks: a snapshot held while sleeping (a DO loop
# around pg_sleep) keeps the claims' old row versions from being pruned,
# and a new psql with a count(*) every half second took a fifth of the CPU
# from the workers.  Every benchmark message succeeds.
wait_sent() {	# wait_sent [poll seconds]
	local done=f
	coproc POLL { psql -X -q -t -A -v ON_ERROR_STOP=1 -d "$DB"; }
	while [ "$done" != t ]; do
		echo "SELECT NOT EXISTS (SELECT FROM crm.outbox WHERE sent_at IS NULL AND next_attempt_at < 'infinity');" >&"${POLL[1]}"
		read -r done <&"${POLL[0]}"
		[ "$done" = t ] || sleep "${1:-0.2}"
	done
	exec {POLL[1]}>&-
	wait "$POLL_PID" || true
}
# The worker's memory in kB: "anon shmem pss contexts".  Anonymous memory
# (RssAnon) is the process's own heap: palloc'd contexts and libcurl's
# malloc; RssShmem is the shared buffers it touched, which grows with the
# table and is no leak.
memory() {
	local anon shmem pss before ctx
	anon=$(awk '/^RssAnon:/ {print $2}' "/proc/$WPID/status")
	shmem=$(awk '/^RssShmem:/ {print $2}' "/proc/$WPID/status")
	pss=$(awk '/^Pss:/ {print $2}' "/proc/$WPID/smaps_rollup")
	before=$(grep -c "^\[$WPID\].*Grand total" "$CRM_CLUSTER_DIR/server.log" || true)
	q "SELECT pg_log_backend_memory_contexts($WPID)" >/dev/null
	for _ in $(seq 1 50); do
		[ "$(grep -c "^\[$WPID\].*Grand total" "$CRM_CLUSTER_DIR/server.log" || true)" -gt "$before" ] && break
		sleep 0.1
	done
	ctx=$(grep "^\[$WPID\].*Grand total" "$CRM_CLUSTER_DIR/server.log" | tail -1 | sed -E 's/.*Grand total: ([0-9]+) bytes.*/\1/')
	echo "$anon $shmem $pss $((ctx / 1024))"
}
commits() { q "SELECT xact_commit FROM pg_stat_database WHERE datname = '$DB'"; }

# --- 0. from the commit: one move queues N webhooks, vs libcurl alone ---------
# The issue's measure: N deals moved into a stage with one `webhook` robot by
# one committed UPDATE; the time from that commit (read by the same session
# right after it) to nginx's log of the last request ($msec), against
# libcurl alone (bench/curl_client.c, no database) sending the same N
# requests at CONC in flight, from its start to its last request logged.
# ROUNDS rounds, each ours then libcurl's; medians, and the median of the
# rounds' ratios.  The outbox keeps every round's messages (nothing is
# emptied between rounds), and the deals go back to their stage untimed.
cc -O2 -o "$BENCH_DIR/curl_client" bench/curl_client.c -lcurl
# CPU seconds (user + system) of the given command's processes
cpu_of() { local TIMEFORMAT=%3U+%3S; { time "$@" >/dev/null; } 2>&1 | tail -1; }
outbox_io() {	# "due-order index entries read|buffers of crm.outbox and crm.outbox_due (heap and indexes) accessed|HOT updates|updates of crm.outbox"
	# the messages not yet done are read in crm.outbox_due's order (0.2.0),
	# or in the index of crm.outbox by that name (0.1.0)
	q "SELECT (SELECT idx_tup_read FROM pg_stat_all_indexes
				WHERE indexrelid = coalesce(to_regclass('crm.outbox_due_next'), to_regclass('crm.outbox_due')))
			  || '|' || (SELECT sum(heap_blks_hit + heap_blks_read + idx_blks_hit + idx_blks_read)
						  FROM pg_statio_all_tables
						 WHERE relid IN ('crm.outbox'::regclass, to_regclass('crm.outbox_due')))
			  || '|' || (SELECT n_tup_hot_upd || '|' || n_tup_upd FROM pg_stat_all_tables
						  WHERE relid = 'crm.outbox'::regclass)"
}
last_receipt() {	# last_receipt COUNT: waits for COUNT receipts in move.log; prints the last one's time
	local n=0
	for _ in $(seq 1 1200); do
		n=$(wc -l <"$BENCH_DIR/move.log")
		[ "$n" -ge "$1" ] && break
		sleep 0.1
	done
	[ "$n" -ge "$1" ] || { echo "only $n of $1 receipts logged" >&2; return 1; }
	awk 'BEGIN {m = 0} $2 > m {m = $2} END {printf "%.3f\n", m}' "$BENCH_DIR/move.log"
}
if has_phase move; then
	echo "0. from the commit: $ROUNDS rounds of one move queuing $N webhooks, then libcurl alone" >&2
	q "INSERT INTO crm.user (name) VALUES ('Bench')" >/dev/null
	q "INSERT INTO crm.deal (title, responsible_id, amount, currency)
	   SELECT 'Office chairs for branch ' || g, (SELECT min(id) FROM crm.user), 4800 + g, 'EUR'
		 FROM generate_series(1, $N) g" >/dev/null
	FROM_STAGE=$(q "SELECT crm.stage('deal', 'new')")
	TO_STAGE=$(q "SELECT crm.stage('deal', 'preparation')")
	q "SELECT crm.add_robot($TO_STAGE, 'webhook',
		'{\"url\": \"http://127.0.0.1:$MOVE_PORT/deals/{{id}}\", \"provider\": \"bench\"}', name => 'bench_hook')" >/dev/null
	hz=$(getconf CLK_TCK)
	: >"$BENCH_DIR/move_rounds"
	for round in $(seq 1 "$ROUNDS"); do
		: >"$BENCH_DIR/move.log"
		# the outbox's work, robust to the machine's noise: index entries of
		# the due order read (the claims' scans) and buffers of crm.outbox and
		# its indexes accessed, from the move's INSERTs to the last record
		sleep 1	# statistics of earlier statements flushed
		io0=$(outbox_io)
		# shellcheck disable=SC2086
		wt0=$(ticks $WPIDS)
		t0=$(psql -X -q -t -A -v ON_ERROR_STOP=1 -d "$DB" \
			-c "UPDATE crm.deal SET stage_id = $TO_STAGE WHERE stage_id = $FROM_STAGE" \
			-c "SELECT extract(epoch FROM clock_timestamp())")
		# the sink's log first: a look at the outbox reads the due order (counted above)
		t1=$(last_receipt "$N")
		wait_sent 0.05
		# shellcheck disable=SC2086
		wt1=$(ticks $WPIDS)
		ours_us=$(python3 -c "print(round(($wt1 - $wt0) * 1e6 / $hz / $N, 1))")
		sleep 1.2	# the workers flush their statistics at their next transactions
		io1=$(outbox_io)
		if [ "$round" = 1 ]; then
			# libcurl's requests: a robot's body and the worker's headers
			q "SELECT payload -> 'body' FROM crm.outbox WHERE robot_id IS NOT NULL LIMIT 1" \
				| tr -d '\n' >"$BENCH_DIR/move.body"
			MSIG=$(q "SELECT crm.webhook_signature('$SECRET', 'msg_00000000000000000000000000000000', 1700000000,
					  (SELECT (payload -> 'body')::text FROM crm.outbox WHERE robot_id IS NOT NULL LIMIT 1))")
			printf '%s\n' "Content-Type: application/json" "User-Agent: crm_automation/0.2.0" \
				"webhook-id: msg_00000000000000000000000000000000" "webhook-timestamp: 1700000000" \
				"webhook-signature: $MSIG" >"$BENCH_DIR/move.headers"
		fi
		q "UPDATE crm.deal SET stage_id = $FROM_STAGE WHERE stage_id = $TO_STAGE" >/dev/null
		sleep 1
		: >"$BENCH_DIR/move.log"
		c0=$(date +%s.%N)
		curl_cpu=$(cpu_of "$BENCH_DIR/curl_client" "http://127.0.0.1:$MOVE_PORT/deals/123456" \
			"$BENCH_DIR/move.body" "$BENCH_DIR/move.headers" "$N" "$CONC")
		c1=$(last_receipt "$N")
		# ours curl ratio seconds curl_seconds worker_us curl_us due_entries buffers hot_percent
		python3 -c "
n = $N; s = $t1 - $t0; c = $c1 - $c0
a = [int(x) for x in '$io0'.split('|')]; b = [int(x) for x in '$io1'.split('|')]
print(round(n / s), round(n / c), round(c / s, 3), round(s, 3), round(c, 3), $ours_us, round(($curl_cpu) * 1e6 / n, 1),
	  round((b[0] - a[0]) / n, 1), round((b[1] - a[1]) / n, 1), round(100 * (b[2] - a[2]) / max(1, b[3] - a[3]), 1))" \
			>>"$BENCH_DIR/move_rounds"
		echo "   round $round: $(tail -1 "$BENCH_DIR/move_rounds")" >&2
		sleep 1
	done
	read -r m_ours m_curl m_ratio m_secs m_csecs m_worker_us m_curl_us m_entries m_buffers m_hot m_all <<<"$(python3 - "$BENCH_DIR/move_rounds" <<'PY'
import statistics, sys
rows = [[float(x) for x in l.split()] for l in open(sys.argv[1])]
med = [statistics.median(c) for c in zip(*rows)]
print("%d %d %.2f %.2f %.2f %.1f %.1f %.1f %.1f %.1f" % tuple(med),
      ",".join("%.2f" % r[2] for r in rows))
PY
)"
fi

# --- 1. latency at idle ------------------------------------------------------
if has_phase latency; then	# (not indented: the here-documents below)
echo "1. latency: $LAT_N webhooks committed one at a time" >&2
sleep 1
{
	for i in $(seq 1 "$LAT_N"); do
		echo "INSERT INTO crm.outbox (channel, provider_id, payload, idempotency_key)
			  SELECT 'webhook', id, jsonb_build_object('url', 'http://127.0.0.1:$LAT_PORT/hook', 'body', \$b\$$BODY\$b\$::jsonb), 'lat_$i'
				FROM crm.provider WHERE name = 'bench'
			  RETURNING idempotency_key, extract(epoch FROM clock_timestamp());"
		echo "SELECT pg_sleep(0.02);"
	done
} >"$BENCH_DIR/latency.sql"
psql -X -q -t -A -F ' ' -d "$DB" -f "$BENCH_DIR/latency.sql" | grep '^lat_' >"$BENCH_DIR/commits.txt"
wait_sent 0.1
read -r lat_med lat_p95 lat_max <<<"$(python3 - "$BENCH_DIR/commits.txt" "$BENCH_DIR/receipts.log" <<'PY'
import sys
commit = dict(l.split() for l in open(sys.argv[1]))
got = {}
for l in open(sys.argv[2]):
    k, t = l.split()
    got.setdefault(k, float(t))
lat = sorted((got[k] - float(c)) * 1000 for k, c in commit.items() if k in got)
print("%.1f %.1f %.1f" % (lat[len(lat) // 2], lat[int(len(lat) * 0.95)], lat[-1]))
PY
)"

fi

# --- 2. delivery rate vs the sink's ceiling ----------------------------------
if has_phase rate; then	# (not indented: the here-documents below)
# ROUNDS rounds, each: N messages queued with the worker paused, then
# released; wrk for 5 s against the same nginx; libcurl alone (bench/
# curl_client.c: no database, same requests, same concurrency) with one
# process and with as many as there are workers.  Medians are reported: the
# box is shared and single runs vary by a third.
echo "2. rate: $ROUNDS rounds of $N webhooks, wrk and libcurl alone against the same nginx" >&2

# The same requests from wrk and curl_client: same method, body and headers
# (a signature of the same length; values need not verify), CONC connections.
SIG=$(q "SELECT crm.webhook_signature('$SECRET', 'msg_00000000000000000000000000000000', 1700000000, \$b\$$BODY\$b\$)")
python3 - "$BODY" "$SIG" "$BENCH_DIR" <<'PY'
import json, sys
body, sig, out = sys.argv[1], sys.argv[2], sys.argv[3]
headers = [("Content-Type", "application/json"), ("User-Agent", "crm_automation/0.2.0"),
           ("webhook-id", "msg_00000000000000000000000000000000"),
           ("webhook-timestamp", "1700000000"), ("webhook-signature", sig)]
with open(out + "/post.lua", "w") as f:
    f.write('wrk.method = "POST"\n')
    f.write('wrk.body = %s\n' % json.dumps(body, ensure_ascii=False))
    for k, v in headers:
        f.write('wrk.headers["%s"] = "%s"\n' % (k, v))
with open(out + "/req.body", "w") as f:
    f.write(body)
with open(out + "/req.headers", "w") as f:
    f.write("".join("%s: %s\n" % kv for kv in headers))
PY
curl_alone() {	# curl_alone PROCESSES: prints "rate cpu_us_per_request"
	local procs=$1 each=$((N / $1)) i t0 t1 cpu
	t0=$(date +%s.%N)
	for i in $(seq 1 "$procs"); do
		cpu_of "$BENCH_DIR/curl_client" "http://127.0.0.1:$PORT/hook" "$BENCH_DIR/req.body" \
			"$BENCH_DIR/req.headers" "$each" $((CONC / procs)) >"$BENCH_DIR/curl.$i" &
	done
	wait
	t1=$(date +%s.%N)
	cpu=$(python3 -c "import glob; print(sum(eval(open(f).read()) for f in glob.glob('$BENCH_DIR/curl.*')))")
	rm -f "$BENCH_DIR"/curl.*
	python3 -c "print(round($each * $procs / ($t1 - $t0)), round($cpu * 1e6 / ($each * $procs), 1))"
}
wrk -t 2 -c "$CONC" -d 2s -s "$BENCH_DIR/post.lua" "http://127.0.0.1:$PORT/hook" >/dev/null	# warm-up
hz=$(getconf CLK_TCK)
: >"$BENCH_DIR/rounds"
for round in $(seq 1 "$ROUNDS"); do
	pause_worker
	queue "$N" "http://127.0.0.1:$PORT/hook"
	pages0=$(q "SELECT pg_relation_size('crm.outbox') / 8192")
	c0=$(commits)
	# shellcheck disable=SC2086
	wt0=$(ticks $WPIDS); nt0=$(ticks $NGINX_PIDS)
	t0=$(release_worker)
	wait_sent
	# shellcheck disable=SC2086
	wt1=$(ticks $WPIDS); nt1=$(ticks $NGINX_PIDS)
	c1=$(commits)
	pages1=$(q "SELECT pg_relation_size('crm.outbox') / 8192")
	t1=$(q "SELECT extract(epoch FROM max(sent_at)) FROM crm.outbox")
	wrk -t 2 -c "$CONC" -d 5s -s "$BENCH_DIR/post.lua" "http://127.0.0.1:$PORT/hook" >"$BENCH_DIR/wrk.txt"
	ceiling=$(sed -nE 's/^Requests\/sec: *([0-9.]+).*/\1/p' "$BENCH_DIR/wrk.txt" | cut -d. -f1)
	read -r curl1 curl1_us <<<"$(curl_alone 1)"
	read -r curlw curlw_us <<<"$(curl_alone "$WORKERS")"
	# rate seconds per_commit worker_us nginx_us ceiling curl1 curl1_us curlw curlw_us pages0 pages1
	python3 -c "
n = $N; secs = $t1 - $t0
print(round(n / secs), round(secs, 2), round(n / max($c1 - $c0, 1), 1),
	  round(($wt1 - $wt0) * 1e6 / $hz / n, 1), round(($nt1 - $nt0) * 1e6 / $hz / n, 1),
	  $ceiling, $curl1, $curl1_us, $curlw, $curlw_us, $pages0, $pages1)" >>"$BENCH_DIR/rounds"
	echo "   round $round: $(tail -1 "$BENCH_DIR/rounds")" >&2
done
read -r anon10 shmem10 pss10 ctx10 <<<"$(memory)"
mem10_at=$(sent)
# medians over the rounds, each column; ratios are the medians of each round's
read -r ours secs per_commit worker_us nginx_us ceiling curl1 curl1_us curlw curlw_us pages0 pages1 \
	ratio ratio_curl1 ratio_curlw ours_all ceiling_all <<<"$(python3 - "$BENCH_DIR/rounds" <<'PY'
import statistics, sys
rows = [[float(x) for x in l.split()] for l in open(sys.argv[1])]
med = lambda xs: statistics.median(xs)
cols = [med(c) for c in zip(*rows)]
fmt = lambda v: ("%d" % v) if v == int(v) else ("%.1f" % v)
out = [fmt(round(c, 2)) for c in cols]
out += ["%.2f" % med([r[0] / r[5] for r in rows]), "%.2f" % med([r[6] / r[5] for r in rows]),
        "%.2f" % med([r[8] / r[5] for r in rows]),
        ",".join("%d" % r[0] for r in rows), ",".join("%d" % r[5] for r in rows)]
print(" ".join(out))
PY
)"

# The database's share: the same claims and records from SQL sessions, with
# nothing sent ($CONC messages a claim, as the worker's slots allow); one
# session, then two at once (SKIP LOCKED keeps their claims apart): what
# more workers per database would get from more cores.
bookkeeping_session() {	# prints "messages seconds"
	q "DO \$\$
	DECLARE
		ids bigint[];
		t0 timestamptz := clock_timestamp();
		n int := 0;
	BEGIN
		LOOP
			SELECT array_agg(id) INTO ids FROM crm._claim_messages($CONC, '1 minute', false);
			COMMIT;
			EXIT WHEN ids IS NULL;
			UPDATE crm.outbox
			   SET status = 'sent', response_code = 200, response_excerpt = 'bookkeeping', last_error = NULL,
				   sent_at = clock_timestamp(), lease_until = NULL, updated_at = now()
			 WHERE id = ANY (ids) AND status = 'sending';
			n := n + cardinality(ids);
		END LOOP;
		RAISE NOTICE '% %', n, extract(epoch FROM clock_timestamp() - t0);
	END \$\$" 2>&1 | sed -E 's/.*NOTICE: *//'
}
pause_worker
queue "$N" "http://127.0.0.1:$PORT/hook"
read -r n1 s1 <<<"$(bookkeeping_session)"
bookkeeping=$(python3 -c "print(round($n1 / $s1))")
queue "$N" "http://127.0.0.1:$PORT/hook"
bookkeeping_session >"$BENCH_DIR/bk1" & b1=$!
bookkeeping_session >"$BENCH_DIR/bk2" & b2=$!
wait $b1 $b2
bookkeeping2=$(python3 -c "
a = open('$BENCH_DIR/bk1').read().split(); b = open('$BENCH_DIR/bk2').read().split()
print(round((int(a[0]) + int(b[0])) / max(float(a[1]), float(b[1]))))")
q "DELETE FROM crm.outbox WHERE response_excerpt = 'bookkeeping'" >/dev/null

fi

# --- 3. memory after MEM_N messages -------------------------------------------
if has_phase memory; then	# (not indented: the here-documents below)
echo "3. memory: up to $MEM_N messages in all" >&2
done_so_far=$(sent)
rest=$((MEM_N - done_so_far))
pause_worker
[ "$rest" -gt 0 ] && queue "$rest" "http://127.0.0.1:$PORT/hook"
release_worker >/dev/null
wait_sent
sleep 1
read -r anon100 shmem100 pss100 ctx100 <<<"$(memory)"
mem100_at=$(sent)

fi

# --- 4. scheduler tick -------------------------------------------------------
if has_phase tick; then	# (not indented: the here-documents below)
echo "4. scheduler: crm.run_next_job() with 0 and 100,000 future jobs" >&2
pause_worker
tick() {
	q "DO \$\$
	   DECLARE t0 timestamptz := clock_timestamp();
	   BEGIN
		   FOR i IN 1..2000 LOOP PERFORM crm.run_next_job(); END LOOP;
		   RAISE NOTICE '%', round(extract(epoch FROM clock_timestamp() - t0) * 1e6 / 2000, 1);
	   END \$\$" 2>&1 | sed -E 's/.*NOTICE: *//'
}
tick0=$(tick)
q "INSERT INTO crm.job (kind, entity_type, entity_id, due_at)
   SELECT 'process_timer', 'deal', i, now() + interval '1 day' + make_interval(secs => i)
	 FROM generate_series(1, 100000) i"
q "ANALYZE crm.job"
tick100k=$(tick)

fi

# --- report ------------------------------------------------------------------
row() { printf '| %-70s | %-24s | %-9s |\n' "$1" "$2" "$3"; }
echo
echo "crm_automation worker benchmark: fsync = $FSYNC, crm.worker_concurrency = $CONC, crm.workers_per_database = $WORKERS, $(nproc) CPUs"
echo "sink: nginx $(nginx -v 2>&1 | sed 's/.*\///'), 1 worker process, return 200; load generator: wrk, 2 threads"
echo "requests: POST, $(printf %s "$BODY" | wc -c)-byte JSON body, Standard Webhooks headers, signed (HMAC-SHA256)"
echo
row "measure" "figure" "goal"
row "----------------------------------------------------------------------" "------------------------" "---------"
if has_phase move; then
	row "from the commit of one move to the last request, $N webhooks (median of $ROUNDS)" "$m_ours /s, $m_secs s" ""
	row "libcurl alone, same $N requests, $CONC in flight (median of $ROUNDS)" "$m_curl /s, $m_csecs s" ""
	row "ratio ours / libcurl alone (median of the rounds': $m_all)" "$m_ratio" ">= 0.8"
	row "  CPU per message: the workers / libcurl alone" "$m_worker_us / $m_curl_us us" ""
	row "  per message: due-order entries read / outbox buffers accessed" "$m_entries / $m_buffers" ""
	row "  updates of crm.outbox that were HOT (no index entries)" "$m_hot %" ""
fi
if has_phase rate; then
	ratio_db=$(python3 -c "print('%.2f' % ($bookkeeping / $ceiling))")
	row "delivery rate, $N webhooks queued then released, median of $ROUNDS ($ours_all)" "$ours /s" ""
	row "  $secs s, $per_commit messages per commit" "" ""
	row "sink ceiling: wrk, same requests, $CONC connections ($ceiling_all)" "$ceiling /s" ""
	row "ratio ours / ceiling (median of the rounds')" "$ratio" ""
	row "libcurl alone, no database: 1 process / $WORKERS (curl_client.c)" "$curl1 / $curlw /s" ""
	row "  its ratio to the ceiling: 1 process / $WORKERS" "$ratio_curl1 / $ratio_curlw" ""
	row "CPU per message: the workers / nginx / libcurl alone (1 process)" "$worker_us / $nginx_us / $curl1_us us" ""
	row "outbox heap, pages queued / after sending (no growth: record in place)" "$pages0 / $pages1" ""
	row "outbox bookkeeping alone (claim + record, nothing sent)" "$bookkeeping /s" ""
	row "  its ratio to the ceiling" "$ratio_db" ""
	row "  the same from two sessions at once" "$bookkeeping2 /s" ""
fi
if has_phase latency; then
	row "latency commit -> receipt at idle, $LAT_N messages: median" "$lat_med ms" "<= 20 ms"
	row "  p95 / max" "$lat_p95 / $lat_max ms" ""
fi
if has_phase rate && has_phase memory; then
	row "worker heap (RssAnon) after $mem10_at / $mem100_at messages" "$anon10 / $anon100 kB" "flat"
	row "worker memory contexts after $mem10_at / $mem100_at messages" "$ctx10 / $ctx100 kB" "flat"
	row "worker shared buffers touched (RssShmem) after the same" "$shmem10 / $shmem100 kB" ""
	row "worker PSS after the same" "$pss10 / $pss100 kB" ""
fi
if has_phase tick; then
	row "crm.run_next_job(), nothing due, 0 / 100,000 future jobs" "$tick0 / $tick100k us" "equal"
fi
