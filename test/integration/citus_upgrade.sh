#!/usr/bin/env bash
# Upgrading a distributed installation (issue 16): ALTER EXTENSION ... UPDATE
# run on the coordinator reaches every node.  Citus runs the update script
# on each worker node and also sends the DDL the coordinator's run makes to
# the workers' copies and shards, so an upgrade script's statements must be
# idempotent (ADD COLUMN IF NOT EXISTS, CREATE OR REPLACE, ...): the test
# installs such a script for a probe version, updates, and checks each
# node's tables and shards, and that robots still run.
set -euo pipefail
cd "$(dirname "$0")/../.."
. scripts/lib.sh
. scripts/citus.sh
. test/integration/common.bash

IT_NAME=citus_upgrade
crm_citus_install
EXT_DIR=${PG_ROOT:-}$(pg_config --sharedir)/extension
PROBE=$EXT_DIR/crm_automation--0.2.0--0.2.0-probe.sql
trap 'crm_as_root rm -f "$PROBE"; crm_citus_cluster_stop; rm -rf "$IT_DIR"' EXIT
crm_citus_cluster_start crm_it "crm.worker_enabled = off"
W1=${CRM_CITUS_PORTS[1]}
W2=${CRM_CITUS_PORTS[2]}
qw() {
	psql -X -q -t -A -v ON_ERROR_STOP=1 -p "$1" -d crm_it -c "$2"
}
# an update script of the kind a later version ships: idempotent statements
crm_as_root tee "$PROBE" >/dev/null <<'SQL'
ALTER TABLE crm.timeline_comment ADD COLUMN IF NOT EXISTS probe_note text DEFAULT 'upgraded';
CREATE OR REPLACE FUNCTION crm.probe_version() RETURNS text LANGUAGE sql IMMUTABLE AS $$ SELECT '0.2.0-probe' $$;
SQL
crm_as_root chmod 644 "$PROBE"

q "CREATE EXTENSION crm_automation"
q "SELECT count(*) FROM crm.distribute()" >/dev/null
q "INSERT INTO crm.department (id, name) VALUES (1, 'Sales');
   INSERT INTO crm.user (id, name, department_id) VALUES (1, 'Mia', 1);
   INSERT INTO crm.robot (stage_id, name, action, params, sort)
   VALUES (crm.stage('deal', 'preparation'), 'c', 'add_comment', '{\"text\": \"hello {{title}}\"}', 10);
   INSERT INTO crm.deal (title, responsible_id) SELECT 'Deal ' || g, 1 FROM generate_series(1, 20) g;
   UPDATE crm.deal SET stage_id = crm.stage('deal', 'preparation') WHERE id <= 10;"

q "ALTER EXTENSION crm_automation UPDATE TO '0.2.0-probe'"
check "every node is at the new version" "0.2.0-probe 0.2.0-probe 0.2.0-probe" \
	"$(q "SELECT extversion FROM pg_extension WHERE extname = 'crm_automation'") $(qw "$W1" "SELECT extversion FROM pg_extension WHERE extname = 'crm_automation'") $(qw "$W2" "SELECT extversion FROM pg_extension WHERE extname = 'crm_automation'")"
check "the new column is on each node's copy and every shard" "1|17|17" \
	"$(q "SELECT count(*) FROM pg_attribute WHERE attname = 'probe_note' AND attrelid::regclass::text LIKE 'crm.timeline_comment%'")|$(qw "$W1" "SELECT count(*) FROM pg_attribute WHERE attname = 'probe_note' AND attrelid::regclass::text LIKE 'crm.timeline_comment%'")|$(qw "$W2" "SELECT count(*) FROM pg_attribute WHERE attname = 'probe_note' AND attrelid::regclass::text LIKE 'crm.timeline_comment%'")"
check "the new function on every node" "0.2.0-probe|0.2.0-probe" \
	"$(qw "$W1" "SELECT crm.probe_version()")|$(qw "$W2" "SELECT crm.probe_version()")"
check "rows written before keep theirs, the column's default applies" "10|10" \
	"$(q "SELECT count(*), count(*) FILTER (WHERE probe_note = 'upgraded') FROM crm.timeline_comment")"
q "UPDATE crm.deal SET stage_id = crm.stage('deal', 'preparation') WHERE id > 10"
check "robots still run after the update, on both workers" "20|20" \
	"$(q "SELECT count(*) || '|' || count(DISTINCT entity_id) FROM crm.timeline_comment")"
check "no server crashed" 0 "$(cat "$CRM_CITUS_DIR"/*.log | grep -c 'terminated by signal' || true)"
it_end
