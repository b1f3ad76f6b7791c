#!/usr/bin/env bash
# Behind a transaction pooler (pgbouncer, pool_mode = transaction, two server
# connections for six clients): the acting user set with crm.set_user() (or
# SET LOCAL crm.user_id) is right for every transaction, including those of
# a client that never set one; robots fire for writes coming through the
# pooler, and a robot added meanwhile reaches the pooled connections.
set -euo pipefail
cd "$(dirname "$0")/../.."
. scripts/lib.sh
crm_install_deps pgbouncer
. test/integration/common.bash

it_begin pooler "crm.worker_enabled = off"

q "INSERT INTO crm.department (id, name) VALUES (1, 'Sales');
   INSERT INTO crm.user (id, name, email, department_id)
   SELECT g, 'User ' || g, 'u' || g || '@example.com', 1 FROM generate_series(1, 6) g;
   SELECT crm.add_robot(crm.stage('deal', 'new'), 'add_comment', '{\"text\": \"Hello {{title}}\"}');" >/dev/null

BOUNCER_PORT=$(crm_free_port)
mkdir -p "$IT_DIR/bouncer"
cat >"$IT_DIR/bouncer/pgbouncer.ini" <<EOF
[databases]
crm_it = host=127.0.0.1 port=$PGPORT dbname=crm_it
[pgbouncer]
listen_addr = 127.0.0.1
listen_port = $BOUNCER_PORT
unix_socket_dir =
auth_type = trust
auth_file = $IT_DIR/bouncer/users.txt
pool_mode = transaction
default_pool_size = 2
max_client_conn = 50
logfile = $IT_DIR/bouncer/pgbouncer.log
pidfile = $IT_DIR/bouncer/pgbouncer.pid
EOF
echo "\"$PGUSER\" \"\"" >"$IT_DIR/bouncer/users.txt"
chmod -R a+rwX "$IT_DIR/bouncer"
crm_as_owner /usr/sbin/pgbouncer -d "$IT_DIR/bouncer/pgbouncer.ini"
for i in $(seq 1 50); do
	psql -X -q -h 127.0.0.1 -p "$BOUNCER_PORT" -d crm_it -c "SELECT 1" >/dev/null 2>&1 && break
	sleep 0.1
done
stop_bouncer() {
	[ -f "$IT_DIR/bouncer/pgbouncer.pid" ] && kill "$(cat "$IT_DIR/bouncer/pgbouncer.pid")" 2>/dev/null || true
	it_cleanup
}
trap stop_bouncer EXIT

# bq SQL: one client's statement through the pooler.
bq() {
	psql -X -q -t -A -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$BOUNCER_PORT" -d crm_it -c "$1"
}

# Six clients at once, three transactions each.  Clients 1-4 use
# crm.set_user, client 5 SET LOCAL, client 6 sets nothing.  Each
# transaction holds its server connection a little, so that the two are
# shared by turns.
client() {
	local c=$1 t set
	for t in 1 2 3; do
		case $c in
			5) set="SET LOCAL crm.user_id = 5;" ;;
			6) set="" ;;
			*) set="SELECT crm.set_user($c);" ;;
		esac
		psql -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$BOUNCER_PORT" -d crm_it >/dev/null <<SQL
BEGIN;
$set
SELECT pg_sleep(0.05);
INSERT INTO crm.deal (title, responsible_id) VALUES ('client $c tx $t', 1);
COMMIT;
SQL
	done
}
pids=()
for c in 1 2 3 4 5 6; do client "$c" & pids+=($!); done
for p in "${pids[@]}"; do wait "$p"; done

check "every transaction went through the pooler" 18 "$(q "SELECT count(*) FROM crm.deal WHERE title LIKE 'client %'")"
check "crm.set_user / SET LOCAL: the author is the client's own user, 15 of 15" 15 \
	"$(q "SELECT count(*) FROM crm.deal WHERE title LIKE 'client %' AND split_part(title, ' ', 2)::int <= 5
	      AND created_by = split_part(title, ' ', 2)::bigint")"
check "a client that set no user writes as the system, 3 of 3" 3 \
	"$(q "SELECT count(*) FROM crm.deal WHERE title LIKE 'client 6 %' AND created_by IS NULL")"
check "robots fired for every write through the pooler" 18 \
	"$(q "SELECT count(*) FROM crm.timeline_comment c JOIN crm.deal d ON d.id = c.entity_id
	      WHERE d.title LIKE 'client %' AND c.text = 'Hello ' || d.title")"
check "nothing is left set on the server connections" 0 \
	"$(bq "SELECT current_setting('crm.user_id')")"

# A robot added directly reaches the pooled connections at once.
q "SELECT crm.add_robot(crm.stage('deal', 'preparation'), 'add_comment', '{\"text\": \"Prepared\"}')" >/dev/null
for i in 1 2 3 4; do
	bq "UPDATE crm.deal SET stage_id = crm.stage('deal', 'preparation') WHERE title = 'client $i tx 1'" >/dev/null
done
check "a robot added meanwhile fires on every pooled connection" 4 \
	"$(q "SELECT count(*) FROM crm.timeline_comment WHERE text = 'Prepared'")"

err=$(bq "SELECT crm.set_user(999)" 2>&1 >/dev/null || true)
check "crm.set_user refuses an unknown user" 1 "$(echo "$err" | grep -c 'user 999 does not exist' || true)"
check "the server log has no crash" 0 "$(grep -c 'terminated by signal' "$CRM_CLUSTER_DIR/server.log" || true)"
it_end
