#!/usr/bin/env bash
# The job runners (crm.job_workers = 2): due jobs claimed and run in batches
# (crm.run_due_jobs), each job in a subtransaction of its own.
#   - a failing job among many fails alone, the others run;
#   - two job runners on one burst of 3,000 jobs: both take part, each job
#     runs once;
#   - a webhook queued during a burst is delivered at once (the delivery
#     workers run no jobs);
#   - a job that runs too long is stopped at crm.job_timeout and fails
#     alone, the jobs of its batch run;
#   - SIGTERM (pg_terminate_backend) and crm.worker_enabled = off stop a
#     running job at once: its batch rolls back, its jobs stay pending;
#   - a crash (pg_ctl stop -m immediate) in the middle of a batch: the jobs
#     that had run in it are rolled back with it and run again once, none
#     is lost;
#   - done and cancelled jobs past crm.job_retention are deleted, failed
#     and recent ones kept;
#   - a lone delayed robot still runs within 10 ms of its due time.
# A row trigger on crm.timeline_comment writes "crm_test comment <deal> by
# <pid>" to the server log for every comment a robot writes, even in a
# transaction that is rolled back, and sleeps 60 s for a comment "slow".
set -euo pipefail
cd "$(dirname "$0")/../.."
. scripts/lib.sh
. test/integration/common.bash

it_begin worker_job_batches "crm.allowed_hosts = '127.0.0.1'" "crm.job_workers = 2" \
	"crm.job_timeout = 3s" "log_min_messages = log" "fsync = on"
it_sink_http
B=http://127.0.0.1:$HTTP_PORT
LOG=$CRM_CLUSTER_DIR/server.log

runner_pids() { q "SELECT pid FROM crm.worker_status() WHERE role = 'jobs' AND database = 'crm_it' AND state = 'running' ORDER BY worker"; }
wait_for "SELECT count(*) = 2 FROM crm.worker_status() WHERE role = 'jobs' AND database = 'crm_it' AND state = 'running'" 15 || true
check "two job runners run, apart from the two delivery workers" "2|2" \
	"$(q "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'crm_automation job runner' AND datname = 'crm_it'")|$(q "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'crm_automation worker' AND datname = 'crm_it'")"

q "INSERT INTO crm.department (id, name) VALUES (1, 'Sales');
   INSERT INTO crm.user (id, name, department_id) VALUES (1, 'Seller', 1);
   CREATE FUNCTION public.comment_seen() RETURNS trigger LANGUAGE plpgsql AS \$\$
   BEGIN
	   RAISE LOG 'crm_test comment % by %', NEW.entity_id, pg_backend_pid();
	   IF NEW.text = 'slow' THEN
		   PERFORM pg_sleep(60);
	   END IF;
	   RETURN NEW;
   END \$\$;
   CREATE TRIGGER comment_seen BEFORE INSERT ON crm.timeline_comment
	   FOR EACH ROW EXECUTE FUNCTION public.comment_seen();" >/dev/null
S=$(q "SELECT crm.stage('deal', 'preparation')")
q "SELECT crm.add_robot($S, 'add_comment', '{\"text\": \"{{title}}\"}', delay => '{\"after\": \"1 day\"}')" >/dev/null
# deals FROM..TO, titled "deal N" (the one numbered SLOW, if any, "slow"),
# moved into the stage: one job each, due tomorrow
deals() {
	q "INSERT INTO crm.deal (id, title, responsible_id)
	   SELECT i, CASE WHEN i = ${3:-0} THEN 'slow' ELSE 'deal ' || i END, 1 FROM generate_series($1, $2) i;
	   UPDATE crm.deal SET stage_id = $S WHERE id BETWEEN $1 AND $2" >/dev/null
}
due_now() { q "UPDATE crm.job SET due_at = now() WHERE status = 'pending' AND entity_id BETWEEN $1 AND $2" >/dev/null; }
logged() {	# logged FROM TO: comments written (maybe rolled back) for those deals, from the log
	awk -v a="$1" -v b="$2" '/crm_test comment/ { for (i = 1; i <= NF; i++) if ($i == "comment") { n = $(i + 1) + 0; if (n >= a && n <= b) c++ } } END { print c + 0 }' "$LOG"
}

echo "# a failing job among many"
deals 1 300
q "INSERT INTO crm.job (kind, entity_type, entity_id, due_at) VALUES ('process_resume', 'deal', 150, now() + interval '1 day')" >/dev/null
due_now 1 300
wait_for "SELECT count(*) = 0 FROM crm.job WHERE status = 'pending' AND entity_id BETWEEN 1 AND 300" 20 || true
check "300 robot jobs done, the one without an executor failed alone" "done:300|failed:1" \
	"$(q "SELECT string_agg(status || ':' || n, '|' ORDER BY status) FROM (SELECT status, count(*) n FROM crm.job WHERE entity_id BETWEEN 1 AND 300 GROUP BY status) x")"
check "each of the 300 deals got its comment once" "300|300" \
	"$(q "SELECT count(*) || '|' || count(DISTINCT entity_id) FROM crm.timeline_comment WHERE entity_id BETWEEN 1 AND 300")"
check "the failure is recorded with its error" "no executor for job kind \"process_resume\"" \
	"$(q "SELECT last_error FROM crm.job WHERE kind = 'process_resume'")"

echo "# two job runners on one burst of 3,000 jobs"
deals 1001 4000
due_now 1001 4000
wait_for "SELECT count(*) = 0 FROM crm.job WHERE status = 'pending' AND entity_id BETWEEN 1001 AND 4000" 60 || true
check "every job done, in one attempt" "3000|1" \
	"$(q "SELECT count(*) || '|' || max(attempts) FROM crm.job WHERE entity_id BETWEEN 1001 AND 4000 AND status = 'done'")"
check "each deal got its comment once" "3000|3000" \
	"$(q "SELECT count(*) || '|' || count(DISTINCT entity_id) FROM crm.timeline_comment WHERE entity_id BETWEEN 1001 AND 4000")"
runners=$(grep 'crm_test comment' "$LOG" | awk '{for (i = 1; i <= NF; i++) if ($i == "comment" && $(i + 1) >= 1001 && $(i + 1) <= 4000) print $(i + 3)}' | sort -u | wc -l)
check "both job runners ran some of them" "2" "$runners"

echo "# a webhook queued during a burst of 5,000 jobs is sent at once"
deals 5001 10000
# the burst falls due and the webhook is queued by the same commit
t0=$(q "SELECT extract(epoch FROM clock_timestamp())")
id=$(q "UPDATE crm.job SET due_at = now() WHERE status = 'pending' AND entity_id BETWEEN 5001 AND 10000;
		INSERT INTO crm.outbox (channel, payload) VALUES ('webhook', '{\"url\": \"$B/ok/during-burst\"}') RETURNING id")
wait_for "SELECT status = 'sent' FROM crm.outbox WHERE id = $id" 10 || true
wait_for "SELECT count(*) = 0 FROM crm.job WHERE status = 'pending' AND entity_id BETWEEN 5001 AND 10000" 60 || true
took=$(q "SELECT round((extract(epoch FROM sent_at) - $t0)::numeric * 1000) FROM crm.outbox WHERE id = $id")
after=$(q "SELECT count(*) FROM crm.job WHERE entity_id BETWEEN 5001 AND 10000 AND updated_at > (SELECT sent_at FROM crm.outbox WHERE id = $id)")
echo "# sent ${took} ms after it was queued; $after jobs of the burst ran in batches begun after that"
check "the webhook was sent within 500 ms, while the burst went on" "t" \
	"$(q "SELECT ${took:-99999} < 500 AND ${after:-0} > 0")"
check "the whole burst is done" "5000" \
	"$(q "SELECT count(*) FROM crm.job WHERE status = 'done' AND entity_id BETWEEN 5001 AND 10000")"

echo "# a job that runs too long stops at crm.job_timeout (3 s) and fails alone"
deals 20001 20020 20010
t0=$(date +%s%N)
due_now 20001 20020
wait_for "SELECT count(*) = 0 FROM crm.job WHERE status = 'pending' AND entity_id BETWEEN 20001 AND 20020" 15 || true
took=$((($(date +%s%N) - t0) / 1000000))
echo "# the batch committed after $took ms"
check "the slow job failed with the time limit, its 19 neighbours are done" "done:19|failed:1:job ran longer than crm.job_timeout (3000 ms)" \
	"$(q "SELECT string_agg(status || ':' || n || coalesce(':' || e, ''), '|' ORDER BY status) FROM (SELECT status, count(*) n, max(last_error) e FROM crm.job WHERE entity_id BETWEEN 20001 AND 20020 GROUP BY status) x")"
check "its effects rolled back, theirs kept" "0|19" \
	"$(q "SELECT count(*) FILTER (WHERE entity_id = 20010) || '|' || count(*) FILTER (WHERE entity_id <> 20010) FROM crm.timeline_comment WHERE entity_id BETWEEN 20001 AND 20020")"
check "stopped after about 3 s, not 60" "t" "$([ $took -ge 2900 ] && [ $took -lt 10000 ] && echo t || echo f)"

slow_runner() {	# the pid of the job runner sleeping in the slow job, once it is
	local p
	for _ in $(seq 1 100); do
		p=$(q "SELECT pid FROM pg_stat_activity WHERE backend_type = 'crm_automation job runner' AND wait_event = 'PgSleep'")
		[ -n "$p" ] && { echo "$p"; return; }
		sleep 0.1
	done
}

echo "# SIGTERM stops a running job at once; its batch stays pending"
deals 21001 21020 21010
due_now 21001 21020
pid=$(slow_runner)
t0=$(date +%s%N)
q "SELECT pg_terminate_backend(${pid:-0})" >/dev/null
for _ in $(seq 1 50); do kill -0 "${pid:-0}" 2>/dev/null || break; sleep 0.02; done
ms=$((($(date +%s%N) - t0) / 1000000))
echo "# gone after $ms ms"
check "the job runner left within 1 s of pg_terminate_backend" "t" "$([ -n "$pid" ] && [ $ms -lt 1000 ] && echo t || echo f)"
check "the slow job is pending again, neither done nor failed, attempts not counted" "pending|0" \
	"$(q "SELECT status || '|' || attempts FROM crm.job WHERE entity_id = 21010")"
wait_for "SELECT count(*) = 0 FROM crm.job WHERE status = 'pending' AND entity_id BETWEEN 21001 AND 21020" 30 || true
check "a runner took the batch again: 19 done once each, the slow one failed at the time limit" "19|19|failed:1" \
	"$(q "SELECT count(*) FROM crm.job WHERE status = 'done' AND attempts = 1 AND entity_id BETWEEN 21001 AND 21020")|$(q "SELECT count(*) FROM crm.timeline_comment WHERE entity_id BETWEEN 21001 AND 21020")|$(q "SELECT status || ':' || attempts FROM crm.job WHERE entity_id = 21010")"

echo "# crm.worker_enabled = off stops a running job at once"
wait_for "SELECT count(*) = 2 FROM crm.worker_status() WHERE role = 'jobs' AND database = 'crm_it' AND state = 'running'" 15 || true
deals 22001 22020 22010
due_now 22001 22020
pid=$(slow_runner)
t0=$(date +%s%N)
q "ALTER SYSTEM SET crm.worker_enabled = off" && q "SELECT pg_reload_conf()" >/dev/null
for _ in $(seq 1 50); do kill -0 "${pid:-0}" 2>/dev/null || break; sleep 0.02; done
ms=$((($(date +%s%N) - t0) / 1000000))
echo "# gone after $ms ms"
check "the job runner left within 1 s of the reload" "t" "$([ -n "$pid" ] && [ $ms -lt 1000 ] && echo t || echo f)"
check "its jobs are pending, their comments rolled back" "20|0" \
	"$(q "SELECT count(*) FROM crm.job WHERE status = 'pending' AND entity_id BETWEEN 22001 AND 22020")|$(q "SELECT count(*) FROM crm.timeline_comment WHERE entity_id BETWEEN 22001 AND 22020")"
check "the job runners show as disabled" "disabled,disabled" \
	"$(q "SELECT string_agg(state, ',' ORDER BY worker) FROM crm.worker_status() WHERE role = 'jobs' AND database = 'crm_it'")"
q "ALTER SYSTEM RESET crm.worker_enabled" && q "SELECT pg_reload_conf()" >/dev/null
wait_for "SELECT count(*) = 0 FROM crm.job WHERE status = 'pending' AND entity_id BETWEEN 22001 AND 22020" 30 || true
check "on again, they run: 19 comments, one each" "19|19" \
	"$(q "SELECT count(*) || '|' || count(DISTINCT entity_id) FROM crm.timeline_comment WHERE entity_id BETWEEN 22001 AND 22020")"

echo "# a crash in the middle of a batch"
# the slow job is the batch's last: the 99 others have run in it when it sleeps
deals 30001 30100 30100
q "UPDATE crm.job SET due_at = CASE WHEN entity_id = 30100 THEN now() ELSE now() - interval '1 second' END
    WHERE status = 'pending' AND entity_id BETWEEN 30001 AND 30100" >/dev/null
pid=$(slow_runner)
before=$(logged 30001 30099)
echo "# $before comments of the batch written before the crash"
crm_as_owner "$(crm_pg_bindir)/pg_ctl" -D "$CRM_CLUSTER_DIR/data" -m immediate -w stop >/dev/null
crm_as_owner "$(crm_pg_bindir)/pg_ctl" -D "$CRM_CLUSTER_DIR/data" -l "$LOG" -w -t 60 start >/dev/null
wait_for "SELECT count(*) = 0 FROM crm.job WHERE status = 'pending' AND entity_id BETWEEN 30001 AND 30100" 40 || true
check "the batch had run its 99 other jobs when the server crashed" "99" "$before"
check "they ran again after the restart (their first run was rolled back)" "198" "$(logged 30001 30099)"
check "after the restart every job of the batch is done once: 99 comments, one per deal" "99|99|99" \
	"$(q "SELECT count(*) || '|' || count(DISTINCT entity_id) FROM crm.timeline_comment WHERE entity_id BETWEEN 30001 AND 30099")|$(q "SELECT count(*) FROM crm.job WHERE status = 'done' AND attempts = 1 AND entity_id BETWEEN 30001 AND 30099")"
check "the slow one failed once, at the time limit" "failed|1" \
	"$(q "SELECT status || '|' || attempts FROM crm.job WHERE entity_id = 30100")"

echo "# cleanup of done and cancelled jobs past crm.job_retention (7 days)"
q "INSERT INTO crm.job (kind, entity_type, entity_id, due_at, status, updated_at)
   SELECT 'robot', 'deal', 0, now() - interval '9 days', s, now() - a
     FROM unnest(ARRAY['done', 'cancelled', 'failed', 'done']) WITH ORDINALITY u(s, n),
          LATERAL (SELECT CASE WHEN n = 4 THEN interval '6 days' ELSE interval '8 days' END) x(a)" >/dev/null
check "crm.cleanup_jobs() deletes the old done and cancelled ones" "2" "$(q "SELECT crm.cleanup_jobs()")"
check "the failed one and the recent done one stay" "done,failed" \
	"$(q "SELECT string_agg(status, ',' ORDER BY status) FROM crm.job WHERE entity_id = 0")"
check "with older_than, the recent one goes too" "1" "$(q "SELECT crm.cleanup_jobs(older_than => '5 days')")"
q "INSERT INTO crm.job (kind, entity_type, entity_id, due_at, status, updated_at) VALUES ('robot', 'deal', 0, now(), 'done', now() - interval '8 days')" >/dev/null
q "SELECT pg_terminate_backend(pid) FROM crm.worker_status() WHERE role = 'jobs' AND database = 'crm_it' AND worker = 0" >/dev/null
wait_for "SELECT count(*) = 0 FROM crm.job WHERE entity_id = 0 AND status = 'done'" 15 || true
check "the first job runner cleans up when it starts" "0" "$(q "SELECT count(*) FROM crm.job WHERE entity_id = 0 AND status = 'done'")"

echo "# a lone delayed robot still runs within 10 ms of its due time"
L=$(q "SELECT crm.stage('deal', 'executing')")
q "SELECT crm.add_robot($L, 'add_comment', '{\"text\": \"lone\"}', delay => '{\"after\": \"1 second\"}')" >/dev/null
q "INSERT INTO crm.deal (id, title, responsible_id) SELECT i, 'lone ' || i, 1 FROM generate_series(40001, 40005) i" >/dev/null
for i in 40001 40002 40003 40004 40005; do
	q "UPDATE crm.deal SET stage_id = $L WHERE id = $i" >/dev/null
	wait_for "SELECT count(*) = 1 FROM crm.timeline_comment WHERE entity_id = $i" 5 || true
done
lates=$(q "SELECT string_agg(round(extract(epoch FROM l.started_at - j.due_at)::numeric * 1000, 1)::text, ' ' ORDER BY j.entity_id) FROM crm.job j JOIN crm.robot_log l ON l.id = j.log_id WHERE j.entity_id BETWEEN 40001 AND 40005")
echo "# started after their due time by (ms): $lates"
check "the median delay from due to start is under 10 ms" "t" \
	"$(q "SELECT percentile_disc(0.5) WITHIN GROUP (ORDER BY l.started_at - j.due_at) < interval '10 ms' FROM crm.job j JOIN crm.robot_log l ON l.id = j.log_id WHERE j.entity_id BETWEEN 40001 AND 40005")"

it_end
