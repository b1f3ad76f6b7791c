#!/usr/bin/env bash
# Job runner benchmark (issue 20).  Prints figures measured in one run on a
# throw-away cluster; nothing here is a pass/fail test.
#
# N delayed robots fall due at the same moment: N deals are moved into a
# stage whose robot writes a templated timeline comment a day later, then
# their N jobs are all given the same due time T, a second or two ahead
# (one UPDATE, committed before T).  Measured: the time from T to the end
# of the last robot run (its log row's finished_at), and N / that time.
#
#   old  the way the worker ran jobs before the job runners: one transaction
#        per crm.run_next_job() call (with crm.next_job_due(), as the
#        worker's loop asked both), here a DO loop that COMMITs after each
#        call, started at T in one session; the workers are off
#   new  the job runners (crm.job_workers of them) on their own: woken at
#        the UPDATE's commit, asleep until T, then batches of
#        crm.run_due_jobs()
#
# each for N in N_LIST (2,000, 20,000 and 100,000; the old way only up to
# OLD_MAX, 20,000: it runs at about 1,500 jobs/s), first with the jobs the
# earlier rounds left (the "old jobs" column counts them), then again once
# OLD_JOBS (1,000,000) done jobs were added and the table analyzed.  Every
# round starts after a checkpoint (same WAL full-page images in each).  The
# tables are never emptied: each round adds its comments, log rows and
# jobs to those of the rounds before.  The second phase's jobs are planned
# (deals of their own moved into the stage) before the old jobs are added:
# moving 100,000 deals on a crm.job of a million analyzed rows takes many
# minutes (the robots' cancellation of the stage's pending jobs, a query of
# robots.c, is planned badly then; not the job runners' part).
#
# The job runner's rounds of N <= SMALL (5,000) run REPEAT (3) times each:
# the median is reported.
#
#   N_LIST="2000 20000 100000" OLD_MAX=20000 OLD_JOBS=1000000 JOB_WORKERS=1 \
#     FSYNC=on bash bench/jobs_bench.sh
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
crm_install_deps
exec 9>/tmp/crm_automation.test.lock
flock 9
crm_build_install

N_LIST=${N_LIST:-2000 20000 100000}
OLD_MAX=${OLD_MAX:-20000}
OLD_JOBS=${OLD_JOBS:-1000000}
JOB_WORKERS=${JOB_WORKERS:-1}
SMALL=${SMALL:-5000}
REPEAT=${REPEAT:-3}
FSYNC=${FSYNC:-on}

trap crm_cluster_stop EXIT
crm_cluster_start "crm.job_workers = $JOB_WORKERS" "fsync = $FSYNC" "shared_buffers = 256MB" \
	"max_wal_size = 4GB" "crm.job_timeout = 0"
DB=crm_bench
psql -X -q -d postgres -c "CREATE DATABASE $DB"
psql -X -q -d "$DB" -c "CREATE EXTENSION crm_automation"
q() { psql -X -q -t -A -v ON_ERROR_STOP=1 -d "$DB" -c "$1"; }

max_n=0
for n in $N_LIST; do [ "$n" -gt "$max_n" ] && max_n=$n; done
q "INSERT INTO crm.department (id, name) VALUES (1, 'Sales');
   INSERT INTO crm.user (id, name, department_id) VALUES (1, 'Seller', 1);
   INSERT INTO crm.deal (id, title, responsible_id, amount)
   SELECT i, 'Lead campaign deal ' || i, 1, i FROM generate_series(1, $max_n) i" >/dev/null
HOLD=$(q "SELECT crm.stage('deal', 'new')")
S=$(q "SELECT crm.stage('deal', 'preparation')")
q "SELECT crm.add_robot($S, 'add_comment', '{\"text\": \"Follow-up for {{title}} ({{amount}} EUR), 3 days after the campaign\"}',
	delay => '{\"after\": \"1 day\"}')" >/dev/null

workers() {	# workers on|off
	if [ "$1" = on ]; then q "ALTER SYSTEM RESET crm.worker_enabled"; else q "ALTER SYSTEM SET crm.worker_enabled = off"; fi
	q "SELECT pg_reload_conf()" >/dev/null
	sleep 1
}

# Waits until no robot job due by T is pending, asking from one session
# that holds no snapshot between looks.
wait_done() {	# wait_done T
	local done=f
	coproc POLL { psql -X -q -t -A -v ON_ERROR_STOP=1 -d "$DB"; }
	while [ "$done" != t ]; do
		echo "SELECT NOT EXISTS (SELECT FROM crm.job WHERE status = 'pending' AND due_at <= '$1');" >&"${POLL[1]}"
		read -r done <&"${POLL[0]}"
		[ "$done" = t ] || sleep 0.05
	done
	exec {POLL[1]}>&-
	wait "$POLL_PID" || true
}

# Plans N jobs, due tomorrow: deals FROM..FROM+N-1 moved into the stage.
plan() {	# plan N FROM
	q "UPDATE crm.deal SET stage_id = $HOLD WHERE id BETWEEN $2 AND $2 + $1 - 1" >/dev/null
	q "UPDATE crm.deal SET stage_id = $S WHERE id BETWEEN $2 AND $2 + $1 - 1" >/dev/null
}

# One round: prints "old_jobs seconds_from_due_to_last jobs_per_s".  Its
# jobs were planned (plan) for deals FROM...
round() {	# round N FROM old|new
	local n=$1 from=$2 how=$3 old t late last
	# every round starts after a checkpoint, so that each pays the same
	# full-page images in the WAL and writes no other round's dirty buffers
	q "CHECKPOINT" >/dev/null
	old=$(q "SELECT count(*) FROM crm.job WHERE status <> 'pending'")
	t=$(q "SELECT clock_timestamp() + interval '1 second' + $n * interval '20 microseconds'")
	late=$(q "WITH u AS (UPDATE crm.job SET due_at = '$t' WHERE status = 'pending' AND kind = 'robot'
						 AND entity_id BETWEEN $from AND $from + $n - 1 RETURNING 1)
			  SELECT clock_timestamp() > '$t' FROM u LIMIT 1")
	[ "$late" = f ] || echo "warning: the jobs were made due only after their due time" >&2
	if [ "$how" = old ]; then
		q "DO \$\$
		   DECLARE v bigint;
		   BEGIN
			   PERFORM pg_sleep_until('$t');
			   LOOP
				   SELECT crm.run_next_job() INTO v;
				   PERFORM crm.next_job_due();
				   COMMIT;
				   EXIT WHEN v IS NULL;
			   END LOOP;
		   END \$\$" >/dev/null
	else
		wait_done "$t"
	fi
	last=$(q "SELECT extract(epoch FROM max(l.finished_at) - '$t') FROM crm.job j JOIN crm.robot_log l ON l.id = j.log_id
			  WHERE j.due_at = '$t' AND j.status = 'done'")
	[ "$(q "SELECT count(*) FROM crm.job WHERE due_at = '$t' AND status = 'done'")" = "$n" ] ||
		echo "warning: not every job of the round is done" >&2
	echo "$old $last $(q "SELECT round($n / $last)")"
}

# Rounds of one case: a small burst lasts a few tenths of a second, which the
# machine's load moves by half: the job runner's rounds of N <= SMALL are run
# REPEAT times, and the round with the median rate is reported.
reps() {	# reps N HOW
	if [ "$2" = new ] && [ "$1" -le "$SMALL" ]; then echo "$REPEAT"; else echo 1; fi
}

# median_round LINE...: the "old_jobs seconds rate" line with the median rate
median_round() {
	printf '%s\n' "$@" | sort -k3,3n | sed -n "$(( ($# + 1) / 2 ))p"
}

declare -A R
declare -A FROM
# the deals of each round of the second phase, after those of the first
next=$((max_n + 1))
for n in $N_LIST; do
	for how in old new; do
		for r in $(seq 1 "$(reps "$n" "$how")"); do
			FROM[$n,$how,$r]=$next
			next=$((next + n))
		done
	done
done
q "INSERT INTO crm.deal (id, title, responsible_id, amount)
   SELECT i, 'Lead campaign deal ' || i, 1, i FROM generate_series($max_n + 1, $next - 1) i" >/dev/null

phase() {	# phase LABEL
	local n how from r lines
	for n in $N_LIST; do
		for how in old new; do
			if [ "$how" = old ] && [ "$n" -gt "$OLD_MAX" ]; then R[$1,$n,$how]="- - -"; continue; fi
			lines=()
			for r in $(seq 1 "$(reps "$n" "$how")"); do
				if [ "$1" = base ]; then from=1; plan "$n" 1; else from=${FROM[$n,$how,$r]}; fi
				if [ "$how" = old ]; then workers off; fi
				echo "$1: N=$n, $how way, round $r" >&2
				lines+=("$(round "$n" "$from" "$how")")
				if [ "$how" = old ]; then workers on; fi
			done
			R[$1,$n,$how]=$(median_round "${lines[@]}")
		done
	done
}

workers on
phase base
echo "planning the second phase's jobs" >&2
for n in $N_LIST; do
	for how in old new; do
		if [ "$how" = old ] && [ "$n" -gt "$OLD_MAX" ]; then continue; fi
		for r in $(seq 1 "$(reps "$n" "$how")"); do
			plan "$n" "${FROM[$n,$how,$r]}"
		done
	done
done
echo "adding $OLD_JOBS old done jobs, VACUUM ANALYZE" >&2
q "INSERT INTO crm.job (kind, robot_id, entity_type, entity_id, due_at, status, attempts, created_at, updated_at)
   SELECT 'robot', 1, 'deal', i % $max_n + 1, now() - interval '2 days', 'done', 1,
		  now() - interval '3 days', now() - interval '1 day'
	 FROM generate_series(1, $OLD_JOBS) i" >/dev/null
q "VACUUM ANALYZE crm.job" >/dev/null
phase million

fmt() { python3 -c "import sys; print(f'{int(sys.argv[1]):,}')" "$1"; }
echo
echo "jobs due at once, one robot each (add_comment), crm.job_workers = $JOB_WORKERS, fsync = $FSYNC, $(nproc) CPUs"
printf '%-9s %-11s | %-22s | %-22s | %s\n' "N" "old jobs" "old way: last done, /s" "job runner: last done, /s" "new/old"
for label in base million; do
	for n in $N_LIST; do
		read -r o_old o_s o_r <<<"${R[$label,$n,old]}"
		read -r n_old n_s n_r <<<"${R[$label,$n,new]}"
		if [ "$o_s" = - ]; then old_txt="(not run)"; ratio="-"
		else old_txt=$(printf '%.2f s, %s' "$o_s" "$(fmt "$o_r")"); ratio=$(python3 -c "print(f'{$n_r / $o_r:.1f}x')"); fi
		printf '%-9s %-11s | %-22s | %-22s | %s\n' "$(fmt "$n")" "$(fmt "$n_old")" "$old_txt" \
			"$(printf '%.2f s, %s' "$n_s" "$(fmt "$n_r")")" "$ratio"
	done
done
echo
for n in $N_LIST; do
	read -r _ _ b <<<"${R[base,$n,new]}"
	read -r _ _ m <<<"${R[million,$n,new]}"
	echo "N=$(fmt "$n"): job runner rate with $(fmt "$OLD_JOBS") more old jobs / without: $(python3 -c "print(f'{$m / $b:.2f}')")"
done
