#!/usr/bin/env bash
# Plain updates of item tables (issue 17, item 3): an UPDATE of N deals that
# changes no stage, on crm.deal (the extension's triggers, 30 robots and 10
# triggers on a second pipeline, field_changed triggers to consult) against
# the same-shape table without the extension, and a lean 5-column table for
# scale; on a NEW connection (the statement is the backend's first: its
# caches, the rule cache included, are filled by it) and on a warm one.
# Then SINGLE one-row updates of deals spread over the table, one statement
# each, as applications edit items, where a fillfactor below 100 lets
# updates stay HOT.  Prints medians of RUNS alternating rounds, then the same statements counted
# in CPU instructions (callgrind, single-user backend: cold = its first
# statement, warm = after a one-row update of the same table), for each
# fillfactor in FFS given to all three tables.
#
# The tables hold 200,000 deals; each round updates another window of N of
# them; every table is vacuumed (not timed) before its statement, as
# autovacuum keeps a user's table.
#
#   N=20000 RUNS=3 FFS="100 90" SINGLE=2000 bash bench/update_bench.sh
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
crm_install_deps valgrind
crm_bench_build		# PG_ROOT=/tmp/x: on a private copy of PostgreSQL (scripts/lib.sh)
W=$(mktemp -d /tmp/crm_update.XXXXXX)
chmod 777 "$W"
trap 'crm_cluster_stop; rm -rf "$W"' EXIT

N=${N:-20000}
RUNS=${RUNS:-3}
FFS=${FFS:-100 90}
ROWS=200000
SINGLE=${SINGLE:-2000}

# window R: the ids a round updates (10 windows; a run of RUNS <= 3 leaves
# one that no timed round touched for the instruction counts).
window() { local a=$(( ($1 * N) % ROWS + 1 )); echo "id BETWEEN $a AND $((a + N - 1))"; }
# cold_ms DB SQL: the statement's time as a new connection's first.
cold_ms() { psql -X -q -d "$1" -c '\timing on' -c "$2" | sed -n 's/^Time: \([0-9.]*\) ms.*/\1/p' | tail -n 1; }
# warm_ms DB WARMUP SQL
warm_ms() { psql -X -q -d "$1" -c "$2" -c '\timing on' -c "$3" | sed -n 's/^Time: \([0-9.]*\) ms.*/\1/p' | tail -n 1; }
# singles TABLE R: SINGLE one-row UPDATEs of deals spread over the table, as
# an application edits them (the same ids for every table in a round).
singles() {
	local i
	for i in $(seq "$SINGLE"); do
		echo "UPDATE $1 SET amount = amount + 1 WHERE id = $(( (i * 7919 + $2 * 104729) % ROWS + 1 ));"
	done
}
# singles_ms DB TABLE R: their time, in one warm session.
singles_ms() {
	{
		echo "UPDATE $2 SET amount = amount + 1 WHERE id = $ROWS;"
		echo "SELECT clock_timestamp() AS t0 \\gset"
		singles "$2" "$3"
		echo "SELECT extract(epoch FROM clock_timestamp() - :'t0') * 1000;"
	} >"$W/singles.sql"
	chmod 644 "$W/singles.sql"
	psql -X -q -At -d "$1" -f "$W/singles.sql"
}

declare -A table=([engine]=crm.deal [same]=same_deal [lean]=lean_deal)
report=$W/report
: >"$report"
for ff in $FFS; do
	# a cluster per fillfactor: its copy is what the instruction counts run on
	crm_cluster_start "crm.worker_enabled = off" "autovacuum = off"
	db=postgres
	psql -X -q -v ON_ERROR_STOP=1 -d "$db" -v ff="$ff" -f bench/update_setup.sql >/dev/null
	r=0
	for round in $(seq "$RUNS"); do
		for mode in cold warm single; do
			# every table gets the same windows in the same order
			r=$((r + 1))
			for c in engine same lean; do
				t=${table[$c]}
				w=$(window "$r")
				psql -X -q -d "$db" -c "VACUUM $t"
				sql="UPDATE $t SET amount = amount + 1 WHERE $w"
				if [ $mode = cold ]; then
					ms=$(cold_ms "$db" "$sql")
				elif [ $mode = single ]; then
					ms=$(singles_ms "$db" "$t" "$r")
				else
					ms=$(warm_ms "$db" "UPDATE $t SET amount = amount + 1 WHERE id = $ROWS" "$sql")
				fi
				psql -X -q -d "$db" -c "INSERT INTO bench_run VALUES ('${mode}_$c', $ms)"
			done
		done
	done
	hot=$(psql -X -At -d "$db" -c "SELECT string_agg(format('%s %s%%', relname, round(100.0 * n_tup_hot_upd / nullif(n_tup_upd, 0))), ', ' ORDER BY relname)
	                                FROM pg_stat_user_tables WHERE relname IN ('deal', 'same_deal', 'lean_deal')")
	psql -X -At -F ' ' -d "$db" >>"$report" <<SQL
CREATE FUNCTION pg_temp.med(c text) RETURNS float8 LANGUAGE sql AS
	\$\$ SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY ms) FROM bench_run WHERE k = c \$\$;
SELECT 'timed', $ff, m, round(pg_temp.med(m || '_engine')::numeric, 1), round(pg_temp.med(m || '_same')::numeric, 1),
       round(pg_temp.med(m || '_lean')::numeric, 1),
       round((pg_temp.med(m || '_engine') / pg_temp.med(m || '_same'))::numeric, 3),
       round((pg_temp.med(m || '_same') / pg_temp.med(m || '_lean'))::numeric, 3)
  FROM unnest(ARRAY['cold', 'warm', 'single']) m;
SQL
	echo "hot $ff $hot" >>"$report"

	# Instructions: a copy of this database's cluster, one single-user backend
	# per count.
	psql -X -q -d "$db" -c "VACUUM crm.deal, same_deal, lean_deal"
	crm_icount_prepare "$W"
	# a window no timed round updated
	w=$(window $((RUNS * 3 + 1)))
	for mode in cold warm single; do
		for c in engine same lean; do
			t=${table[$c]}
			if [ $mode = cold ]; then warm="SELECT 1"; else warm="UPDATE $t SET amount = amount + 1 WHERE id = $ROWS"; fi
			if [ $mode = single ]; then
				mapfile -t stmts < <(singles "$t" 0 | sed 's/;$//')
			else
				stmts=("UPDATE $t SET amount = amount + 1 WHERE $w")
			fi
			with=$(crm_icount "$W" "${mode}_$c" "$warm" "${stmts[@]}")
			without=$(crm_icount "$W" "${mode}_${c}_0" "$warm")
			echo "$((with - without))" >"$W/ic_${mode}_$c"
		done
		echo "icount $ff $mode $(cat "$W/ic_${mode}_engine") $(cat "$W/ic_${mode}_same") $(cat "$W/ic_${mode}_lean")" >>"$report"
	done
	crm_as_owner rm -rf "$W/prepared" "$W/data"
	crm_cluster_stop
done

echo
echo "UPDATE of $N of $ROWS deals changing no stage, on a new connection (cold) and a warm one;"
echo "single: $SINGLE one-row UPDATEs of deals spread over the table, warm (medians of $RUNS rounds, ms)"
printf '%-9s %-5s %10s %10s %10s %13s %11s\n' fillfactor conn crm.deal same_shape lean_5col deal/same same/lean
awk '$1 == "timed" {printf "%-9s %-5s %10s %10s %10s %13s %11s\n", $2, $3, $4, $5, $6, $7, $8}' "$report"
echo
echo "The same statements in CPU instructions (millions)"
printf '%-9s %-5s %10s %10s %10s %13s %11s\n' fillfactor conn crm.deal same_shape lean_5col deal/same same/lean
awk '$1 == "icount" {printf "%-9s %-5s %10.1f %10.1f %10.1f %13.3f %11.3f\n", $2, $3, $4/1e6, $5/1e6, $6/1e6, $4/$5, $5/$6}' "$report"
echo
echo "HOT updates (share of all updates of the timed rounds)"
awk '$1 == "hot" {$1 = ""; print "  fillfactor" $0}' "$report"
echo "goal: crm.deal / same-shape <= 1.10, cold and warm"
