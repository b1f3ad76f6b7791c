#!/usr/bin/env bash
# The rule cache across sessions: a robot that another session adds reaches a
# long-lived connection (as behind a pool) at its next transaction, also when
# that connection read the stage's robots inside a REPEATABLE READ
# transaction whose snapshot predates the robot.
set -euo pipefail
cd "$(dirname "$0")/../.."
. scripts/lib.sh
. test/integration/common.bash

it_begin rule_cache_sessions "crm.worker_enabled = off"

q "INSERT INTO crm.department (id, name) VALUES (1, 'Sales');
   INSERT INTO crm.user (id, name, email, department_id) VALUES (1, 'Mia', 'mia@example.com', 1);
   INSERT INTO crm.deal (id, title, responsible_id) SELECT g, 'Deal ' || g, 1 FROM generate_series(1, 6) g;" >/dev/null

# Session A: one psql kept open, fed line by line.
coproc SESSION_A { psql -X -q -t -A -v ON_ERROR_STOP=0 -d crm_it 2>&1; }
A_IN=${SESSION_A[1]}
A_OUT=${SESSION_A[0]}
A_PID=$SESSION_A_PID	# bash unsets SESSION_A_PID once the coprocess ends
# a SQL: runs SQL in session A and prints its output (bounded wait).
a() {
	local line out=""
	printf '%s\n\\echo __done__\n' "$1" >&"$A_IN"
	while IFS= read -r -t 20 line <&"$A_OUT"; do
		[ "$line" = __done__ ] && break
		out+="$line"$'\n'
	done
	printf '%s' "$out"
}
comments() {
	q "SELECT count(*) FROM crm.timeline_comment WHERE entity_id = $1 AND text = '$2'"
}

# 1. READ COMMITTED: A has its cache warm, B adds a robot, A's next move runs it.
a "UPDATE crm.deal SET stage_id = crm.stage('deal', 'preparation') WHERE id = 1;" >/dev/null
q "SELECT crm.add_robot(crm.stage('deal', 'preparation'), 'add_comment', '{\"text\": \"B1\"}')" >/dev/null
a "UPDATE crm.deal SET stage_id = crm.stage('deal', 'preparation') WHERE id = 2;" >/dev/null
check "read committed: a robot added by another session runs at the next move" 1 "$(comments 2 B1)"

# 2. REPEATABLE READ: A's snapshot predates the robot B adds; inside that
# transaction A does not see it (as its snapshot says), but once it commits
# the next transaction runs it.
a "UPDATE crm.deal SET stage_id = crm.stage('deal', 'executing') WHERE id = 3;" >/dev/null
a "BEGIN ISOLATION LEVEL REPEATABLE READ; SELECT count(*) FROM crm.robot;" >/dev/null
q "SELECT crm.add_robot(crm.stage('deal', 'executing'), 'add_comment', '{\"text\": \"B2\"}')" >/dev/null
a "UPDATE crm.deal SET stage_id = crm.stage('deal', 'executing') WHERE id = 4; COMMIT;" >/dev/null
check "repeatable read: the robot newer than the snapshot does not run in that transaction" 0 "$(comments 4 B2)"
a "UPDATE crm.deal SET stage_id = crm.stage('deal', 'executing') WHERE id = 5;" >/dev/null
check "repeatable read: the next transaction of that connection runs it" 1 "$(comments 5 B2)"

# 3. A definition change B commits while A is inside a statement-level
# snapshot older than it: A's next statement still sees it.
q "UPDATE crm.robot SET params = '{\"text\": \"B3\"}' WHERE params->>'text' = 'B2'" >/dev/null
a "UPDATE crm.deal SET stage_id = crm.stage('deal', 'executing') WHERE id = 6;" >/dev/null
check "a changed robot is seen at the next move" 1 "$(comments 6 B3)"

printf '\\q\n' >&"$A_IN" || true
wait "$A_PID" 2>/dev/null || true
check "the server log has no crash" 0 "$(grep -c 'terminated by signal' "$CRM_CLUSTER_DIR/server.log" 2>/dev/null || true)"
it_end
