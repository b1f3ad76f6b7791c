#!/usr/bin/env bash
# crm.explain benchmark (issue 18): a deal explained as if it entered a
# stage with 30 robots (each with a condition reading the deal and its
# contact, and a template to render), with 10 triggers on its pipeline and
# an auto-starting process template.  Prints the median and p95 of one call
# (the whole function: the item read, 30 conditions taken apart, 30
# robots' parameters rendered, the triggers decided), over RUNS calls, each
# its own statement; the first call (which loads the rule cache) is left
# out.  Goal: under 5 ms.
#
#   RUNS=500 bash bench/explain_bench.sh
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
crm_install_deps
exec 9>/tmp/crm_automation.test.lock
flock 9
crm_build_install
trap crm_cluster_stop EXIT
crm_cluster_start "crm.worker_enabled = off"

RUNS=${RUNS:-500}
P="psql -X -q -v ON_ERROR_STOP=1 -d postgres"

$P <<SQL
CREATE EXTENSION crm_automation;
\ir bench/common.sql
INSERT INTO crm.department (id, name) VALUES (1, 'Sales');
INSERT INTO crm.user (id, name, email, department_id) VALUES (1, 'Mia', 'mia@example.com', 1), (2, 'Sam', 'sam@example.com', 1);
UPDATE crm.department SET head_id = 1;
INSERT INTO crm.contact (id, name, phone, email) VALUES (1, 'Claire', '+33612345678', 'claire@example.org');
INSERT INTO crm.deal (title, responsible_id, contact_id, amount)
	SELECT 'Deal ' || g, 2, 1, g * 10 FROM generate_series(1, 10000) g;
SELECT count(crm.add_robot(crm.stage('deal', 'preparation'),
	(ARRAY['notify', 'add_comment', 'create_task', 'write_log', 'webhook'])[1 + g % 5],
	(ARRAY['{"text": "{{title}} for {{contact.name}}", "recipients": "supervisor"}',
		   '{"text": "={{title}} & \" \" & round({{amount}} * 0.3, 0)"}',
		   '{"title": "Call {{contact.name}} ({{contact.phone}})", "responsible": "responsible", "deadline": "tomorrow"}',
		   '{"text": "{{responsible.name}}: {{amount}} {{currency}}"}',
		   '{"url": "https://erp.example.com/deals/{{id}}", "body": {"deal": "{{title}}", "amount": "{{amount}}"}}'])[1 + g % 5]::jsonb,
	condition => to_jsonb(format('{{amount}} >= %s and {{contact.name}} != "x%s"', g * 100, g)),
	delay => CASE WHEN g % 10 = 0 THEN '{"after": "1 day"}'::jsonb END))
  FROM generate_series(1, 30) g;
SELECT count(crm.add_trigger(crm.stage('deal', s), 'webhook', jsonb_build_object('code', 'c' || g),
	condition => '"{=Event:total} >= {{amount}}"'))
  FROM generate_series(1, 10) g, (VALUES ('executing')) v(s);
SELECT crm.add_process_template('deal', 'Auto', '{"activities": [{"type": "add_comment", "text": "hi"}]}',
	auto_start => ARRAY['modify']);
VACUUM ANALYZE;
SQL

# one call per statement; \timing-free: the server's own clock
$P -t -A <<SQL
CREATE TABLE t (ms float8);
SELECT count(*) FROM crm.explain('deal', 5000, crm.stage('deal', 'preparation'));
SELECT 'rows per call: ' || count(*) FROM crm.explain('deal', 5000, crm.stage('deal', 'preparation'));
SELECT 'robots: ' || count(*) FILTER (WHERE kind = 'robot') || ', decisions: ' ||
	string_agg(DISTINCT decision, ', ') FROM crm.explain('deal', 5000, crm.stage('deal', 'preparation'));
$(for i in $(seq "$RUNS"); do echo "INSERT INTO t SELECT time_ms(\$\$SELECT count(*) FROM crm.explain('deal', $((1 + i * 7 % 10000)), crm.stage('deal', 'preparation'))\$\$);"; done)
SELECT format('crm.explain, 30 robots + 10 triggers + 1 template, %s calls: median %s ms, p95 %s ms, max %s ms',
	count(*), round(percentile_cont(0.5) WITHIN GROUP (ORDER BY ms)::numeric, 3),
	round(percentile_cont(0.95) WITHIN GROUP (ORDER BY ms)::numeric, 3), round(max(ms)::numeric, 3)) FROM t;
SQL
