#!/usr/bin/env bash
# The upgrade path (README, "Upgrading"): a database installed as 0.1.0 (the
# frozen sql/crm_automation--0.1.0.sql) works with the current library, is
# filled with rows of every kind, and is updated with ALTER EXTENSION
# crm_automation UPDATE.  Then (a) its schema equals a fresh install of the
# current version (pg_dump --binary-upgrade --schema-only of both, without
# the lines that carry OIDs, relfilenodes, xids and sequence values; the
# extension's config tables; the default rows of an updated empty 0.1.0
# database against a fresh one), (b) every row of every table and every
# sequence is unchanged, (c) pending work still runs: due and future delayed
# robots, a waiting business process, pending webhooks and SMS, new moves and
# triggers.  A change to sql/install/ that is not also in the upgrade script
# fails (a).
set -euo pipefail
cd "$(dirname "$0")/../.."
. scripts/lib.sh
. test/integration/common.bash

NEW=$(sed -nE "s/^default_version = '(.*)'/\1/p" crm_automation.control)
OLD=0.1.0

# Like it_begin, but database crm_it is created at version 0.1.0.
IT_NAME=upgrade
trap it_cleanup EXIT
crm_cluster_start "crm.allowed_hosts = '127.0.0.1'"
psql -X -q -d postgres -c "CREATE DATABASE crm_it" >/dev/null
psql -X -q -v ON_ERROR_STOP=1 -d crm_it -c "CREATE EXTENSION crm_automation VERSION '$OLD'" >/dev/null
it_sink_http
B=http://127.0.0.1:$HTTP_PORT

# qd DB SQL: like q, in another database
qd() {
	psql -X -q -t -A -v ON_ERROR_STOP=1 -d "$1" -c "$2"
}
worker() {	# worker on|off: crm.worker_enabled, reloaded
	if [ "$1" = on ]; then q "ALTER SYSTEM RESET crm.worker_enabled"; else q "ALTER SYSTEM SET crm.worker_enabled = off"; fi
	q "SELECT pg_reload_conf()" >/dev/null
	sleep 0.5
}

echo "# installed as $OLD, the current version is $NEW"
check "the current version is not $OLD" "t" "$( [ "$NEW" != "$OLD" ] && echo t || echo f)"
check "CREATE EXTENSION ... VERSION '$OLD' installs $OLD" "$OLD" \
	"$(q "SELECT extversion FROM pg_extension WHERE extname = 'crm_automation'")"
check "the versions installed and the update path" "$OLD,$NEW|$OLD--$NEW" \
	"$(q "SELECT string_agg(version, ',' ORDER BY version) FROM pg_available_extension_versions WHERE name = 'crm_automation'")|$(q "SELECT path FROM pg_extension_update_paths('crm_automation') WHERE source = '$OLD' AND target = '$NEW'")"

echo "# the current library serves the $OLD database: robots, triggers, the worker"
q "INSERT INTO crm.department (id, name) VALUES (100, 'Sales')"
q "INSERT INTO crm.user (id, name, department_id) VALUES (100, 'Boss', 100), (101, 'Seller', 100), (102, 'Trainee', 100)"
q "UPDATE crm.department SET head_id = 100 WHERE id = 100"
P=$(q "SELECT crm.stage('deal', 'preparation')")
E=$(q "SELECT crm.stage('deal', 'executing')")
q "SELECT crm.add_robot($P, 'add_comment', '{\"text\": \"prepared {{title}}\"}')" >/dev/null
q "SELECT crm.add_trigger($E, 'incoming_call')" >/dev/null
q "SELECT crm.add_robot($E, 'webhook', '{\"url\": \"$B/ok/executing/{{id}}\"}')" >/dev/null
q "INSERT INTO crm.contact (id, name, phone) VALUES (100, 'Client', '+33 1 11')"
q "INSERT INTO crm.company (id, title) VALUES (100, 'Client Ltd')"
q "INSERT INTO crm.deal (id, title, responsible_id, contact_id, company_id) VALUES (100, 'Before', 101, 100, 100)"
q "UPDATE crm.deal SET stage_id = $P WHERE id = 100"
check "$OLD: a move into a stage runs its robot (a comment)" "prepared Before" \
	"$(q "SELECT text FROM crm.timeline_comment WHERE entity_id = 100 AND robot_id IS NOT NULL")"
q "INSERT INTO crm.activity (entity_type, entity_id, type, direction, subject, remote_address) VALUES ('deal', 100, 'call', 'incoming', 'Call', '+33 1 11')"
check "$OLD: an incoming call fires the trigger and moves the deal" "executing|fired" \
	"$(q "SELECT s.code FROM crm.deal d JOIN crm.stage s ON s.id = d.stage_id WHERE d.id = 100")|$(q "SELECT status FROM crm.robot_log WHERE kind = 'trigger' AND entity_id = 100")"
q "INSERT INTO crm.exception_list (type, value) VALUES ('phone', '+33 1 99')"
q "INSERT INTO crm.activity (entity_type, entity_id, type, direction, subject, remote_address) VALUES ('deal', 100, 'call', 'incoming', 'Spam', '+33 1 99')"
check "$OLD: an unknown code and a listed number work without the rows its log cannot take (no_trigger, excepted)" \
	"no_trigger|0|1" \
	"$(q "SELECT crm.fire_trigger('nobody.listens', 'deal', 100)")|$(q "SELECT count(*) FROM crm.activity WHERE subject = 'Spam'")|$(q "SELECT count(*) FROM crm.robot_log WHERE kind = 'trigger' AND entity_id = 100")"
wait_for "SELECT count(*) = 1 FROM crm.outbox WHERE entity_id = 100 AND status = 'sent'" 10 || true
check "$OLD: the worker delivers the webhook robot's message" "sent|1" \
	"$(q "SELECT string_agg(status, ',') FROM crm.outbox WHERE entity_id = 100")|$(grep -c '"path": "/ok/executing/100"' "$HTTP_LOG" || true)"
q "INSERT INTO crm.outbox (channel, payload) VALUES ('webhook', '{\"url\": \"$B/ok/sent-before\"}'), ('webhook', '{\"url\": \"$B/ok/sent-before\"}')"
wait_for "SELECT count(*) = 0 FROM crm.outbox WHERE status <> 'sent'" 10 || true

echo "# rows of every kind, the worker off so that pending work stays pending"
worker off
N=$(q "SELECT crm.add_stage(crm.default_pipeline('deal'), 'negotiation', 'Negotiation')")
W=$(q "SELECT crm.add_pipeline('deal', 'Wholesale')")
q "SELECT crm.add_stage($W, 'offer', 'Offer')" >/dev/null
q "SELECT crm.rename_stage(crm.stage('deal', 'new'), 'Fresh lead')" >/dev/null
q "SELECT crm.add_field('deal', 'UF_PRIORITY', 'Priority', 'number')" >/dev/null
q "SELECT crm.create_smart_process('delivery', 'Deliveries')" >/dev/null
q "UPDATE crm.work_schedule SET work_days = '{1,2,3,4,5,6}', day_start = '08:00'"
q "INSERT INTO crm.holiday (day, name) VALUES ('2030-12-25', 'Christmas')"
q "SELECT crm.add_provider('sms', 'gateway', '{\"url\": \"$B/ok/sms\", \"headers\": {\"Authorization\": \"Bearer {secret}\"}}', 'kept-token')" >/dev/null
q "SELECT crm.add_provider('webhook', 'signed', '{}', 'whsec_' || encode('0123456789abcdef0123456789abcdef', 'base64'))" >/dev/null
q "SELECT crm.add_robot($N, 'add_comment', '{\"text\": \"negotiating {{title}}\"}', name => 'note')" >/dev/null
q "SELECT crm.add_robot($N, 'write_log', '{\"text\": \"logged {{title}}\"}')" >/dev/null
q "SELECT crm.add_robot($N, 'notify', '{\"text\": \"{{title}} negotiates\", \"recipients\": \"supervisor\"}')" >/dev/null
q "SELECT crm.add_robot($N, 'create_task', '{\"title\": \"Call {{title}}\", \"responsible\": \"responsible\"}')" >/dev/null
q "SELECT crm.add_robot($N, 'generate_code', '{\"format\": \"digits\", \"length\": 6}', name => 'gen')" >/dev/null
q "SELECT crm.add_robot($N, 'change_responsible', '{\"users\": [100, 101, 102], \"mode\": \"rotate\"}')" >/dev/null
q "SELECT crm.add_robot($N, 'webhook', '{\"url\": \"$B/ok/negotiation/{{id}}\"}')" >/dev/null
q "SELECT crm.add_robot($N, 'send_sms', '{\"text\": \"Offer for {{title}}\", \"recipients\": \"+33611111111\"}')" >/dev/null
q "SELECT crm.add_robot($N, 'add_comment', '{\"text\": \"a second after {{title}}\"}', delay => '{\"after\": \"1 second\"}')" >/dev/null
q "SELECT crm.add_robot($N, 'add_comment', '{\"text\": \"a day after {{title}}\"}', delay => '{\"after\": \"1 day\"}')" >/dev/null
q "SELECT crm.add_robot($N, 'control', '{\"after\": \"1 day\", \"text\": \"{{title}} is stuck\"}')" >/dev/null
q "SELECT crm.add_robot(crm.stage('delivery', 'preparation'), 'add_comment', '{\"text\": \"preparing {{title}}\"}')" >/dev/null
q "SELECT crm.add_trigger(crm.stage('deal', 'won'), 'webhook', '{\"code\": \"contract.signed\"}')" >/dev/null
q "SELECT crm.add_trigger($N, 'field_changed', '{\"fields\": [\"UF_PRIORITY\"]}')" >/dev/null
q "SELECT crm.add_webform('contact_us', 'Contact us', '{\"name\": \"contact_name\"}')" >/dev/null
q "INSERT INTO crm.deal (id, title, responsible_id, contact_id) VALUES (101, 'First', 101, 100), (102, 'Second', 101, NULL), (103, 'Third', 101, NULL)"
q "UPDATE crm.deal SET stage_id = $N WHERE id IN (101, 102)"
q "INSERT INTO crm.lead (title) VALUES ('A lead')"
q "SELECT crm.submit_webform('contact_us', '{\"name\": \"Web visitor\"}')" >/dev/null
q "SELECT crm.tracking_link('deal', 103, 'https://example.com/offer')" >/dev/null
q "INSERT INTO crm.item (entity_type, title) VALUES ('delivery', 'Parcel')"
q "INSERT INTO crm.outbox (channel, payload, next_attempt_at) VALUES ('webhook', '{\"url\": \"$B/ok/tomorrow\"}', now() + interval '1 day')"
q "INSERT INTO crm.disabled_endpoint (url, reason) VALUES ('$B/ok/gone', '410 Gone')"
TD=$(q "SELECT crm.add_process_template('deal', 'Later', '{\"activities\": [{\"type\": \"set_status_text\", \"text\": \"waiting\"}, {\"type\": \"delay\", \"for\": \"1 day\"}, {\"type\": \"add_comment\", \"text\": \"process resumed\"}, {\"type\": \"set_status_text\", \"text\": \"done\"}]}')")
TN=$(q "SELECT crm.add_process_template('deal', 'Now', '{\"activities\": [{\"type\": \"add_comment\", \"text\": \"process ran\"}]}')")
I=$(q "SELECT crm.start_process($TD, 103)")
q "SELECT crm.start_process($TN, 103)" >/dev/null
sleep 1.1	# the one-second robots are due now
check "rows in every kind of table" "" \
	"$(q "SELECT string_agg(t, ' ') FROM unnest(ARRAY['department', 'user', 'entity_type', 'pipeline', 'stage', 'user_field',
		'work_schedule', 'holiday', 'provider', 'provider_secret', 'robot', 'robot_turn', 'trigger', 'webform',
		'webform_submission', 'tracked_link', 'deal', 'lead', 'contact', 'company', 'item', 'activity', 'task',
		'notification', 'timeline_comment', 'history', 'robot_log', 'job', 'outbox', 'disabled_endpoint',
		'process_template', 'process_instance']) t
	   WHERE NOT (xpath('/row/n/text()', query_to_xml(format('SELECT count(*) AS n FROM crm.%I', t), false, true, '')))[1]::text::int > 0")"
check "pending jobs: 2 due now, 2 next day, 2 controls, 1 process timer" "control:2:0|process_timer:1:0|robot:4:2" \
	"$(q "SELECT string_agg(kind || ':' || n || ':' || due, '|' ORDER BY kind) FROM (SELECT kind, count(*) n, count(*) FILTER (WHERE due_at <= now()) due FROM crm.job WHERE status = 'pending' GROUP BY kind) x")"
check "messages: 3 sent, 5 pending (2 webhooks, 2 SMS due, 1 webhook tomorrow)" "pending:5|sent:3" \
	"$(q "SELECT string_agg(status || ':' || n, '|' ORDER BY status) FROM (SELECT status, count(*) n FROM crm.outbox GROUP BY status) x")"
check "process instances: one waiting at its delay, one completed" "completed,waiting" \
	"$(q "SELECT string_agg(status, ',' ORDER BY status) FROM crm.process_instance")"

# One line per table and sequence of schema crm: rows (in text form, in
# order) and their md5; sequences: last_value/is_called.  The query is built
# once, before the update, from the columns the tables have then (a later
# version may add columns: the rows must still hold what they held).
rows_sql() {	# rows_sql DB [COLUMNS TO LEAVE OUT: a WHERE condition on pg_attribute a]
	qd "$1" "SELECT string_agg(CASE WHEN c.relkind = 'S'
			THEN format('SELECT %L, (SELECT last_value || %L || is_called FROM %s)', c.oid::regclass, '/', c.oid::regclass)
			ELSE format('SELECT %L, (SELECT count(*) || %L || md5(coalesce(string_agg(r, E''\\n'' ORDER BY r), %L)) FROM (SELECT ROW(%s)::text AS r FROM %s t) s)',
						c.oid::regclass, ' ', '', cols.list, c.oid::regclass) END, ' UNION ALL ' ORDER BY c.oid::regclass::text)
		  FROM pg_class c
		  JOIN pg_namespace n ON n.oid = c.relnamespace
		  LEFT JOIN LATERAL (SELECT string_agg(format('t.%I', a.attname), ', ' ORDER BY a.attnum) AS list
							   FROM pg_attribute a
							  WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped AND ${2:-true}) cols ON true
		 WHERE n.nspname = 'crm' AND c.relkind IN ('r', 'p', 'S')"
}
ROWS_SQL=$(rows_sql crm_it)
qd crm_it "$ROWS_SQL" >"$IT_DIR/before.rows"
n_rel=$(q "SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = 'crm' AND c.relkind IN ('r', 'p', 'S')")
check "every table and sequence of schema crm is fingerprinted ($n_rel)" "$n_rel" "$(wc -l <"$IT_DIR/before.rows")"

echo "# ALTER EXTENSION crm_automation UPDATE"
if q "ALTER EXTENSION crm_automation UPDATE" >"$IT_DIR/update.out" 2>&1; then r=updated; else r=$(cat "$IT_DIR/update.out"); fi
check "ALTER EXTENSION crm_automation UPDATE succeeds" "updated" "$r"
check "the extension is at $NEW" "$NEW" "$(q "SELECT extversion FROM pg_extension WHERE extname = 'crm_automation'")"
# rows_diff DB SQL EXPECTED_FILE: the tables and sequences whose line differs
rows_diff() {
	if qd "$1" "$2" >"$IT_DIR/rows.out" 2>"$IT_DIR/rows.err"; then
		diff "$3" "$IT_DIR/rows.out" | grep '^[<>]' | cut -d'|' -f1 | sort -u | tr '\n' ' ' || true
	else
		grep -m1 ERROR "$IT_DIR/rows.err" || echo failed
	fi
}
check "every row of every table and every sequence survived the update" "" "$(rows_diff crm_it "$ROWS_SQL" "$IT_DIR/before.rows")"

echo "# the updated schema equals a fresh $NEW install"
psql -X -q -d postgres -c "CREATE DATABASE crm_fresh" -c "CREATE DATABASE crm_empty" >/dev/null
qd crm_fresh "CREATE EXTENSION crm_automation" >/dev/null
qd crm_empty "CREATE EXTENSION crm_automation VERSION '$OLD'" >/dev/null
qd crm_empty "ALTER EXTENSION crm_automation UPDATE" >/dev/null
check "a fresh CREATE EXTENSION installs $NEW" "$NEW" "$(qd crm_fresh "SELECT extversion FROM pg_extension WHERE extname = 'crm_automation'")"

# The schema of a database, extension members included (a plain pg_dump
# leaves them out; --binary-upgrade dumps them with ALTER EXTENSION ... ADD).
# Left out: what identifies storage rather than schema (OIDs, relfilenodes,
# relfrozenxid, attribute LSNs), sequence values, missing values of columns
# added to tables with rows, dropped columns' placeholders, psql's random
# \restrict key; the extension's config OIDs are compared by name below.
schema_of() {
	pg_dump --binary-upgrade --schema-only -d "$1" 2>"$IT_DIR/$1.dump.err" \
	| sed -E \
		-e '/^\\(un)?restrict /d' \
		-e '/^SELECT pg_catalog\.binary_upgrade_set_(next_|missing_value)/d' \
		-e '/^SELECT pg_catalog\.setval\(/d' \
		-e '/^-- For binary upgrade, (must preserve|set heap|set toast|set missing|recreate dropped)/d' \
		-e '/^-- set missing value\.$/d' \
		-e '/^UPDATE pg_catalog\.pg_(class|attribute)$/d' \
		-e '/^SET (relfrozenxid|attlen) = /d' \
		-e '/^WHERE (oid|attname) = /d' \
		-e '/^  AND attrelid = /d' \
		-e '/pg\.dropped\./d' \
		-e "s/^(SELECT pg_catalog\.binary_upgrade_create_empty_extension\('[^']*', '[^']*', [a-z]+, '[^']*', )'\{[0-9,]*\}'/\1'{config}'/" \
		-e 's/,$//' \
		-e '/^$/d'
}
schema_of crm_fresh >"$IT_DIR/fresh.schema" || true
schema_of crm_it >"$IT_DIR/updated.schema" || true
schema_of crm_empty >"$IT_DIR/empty.schema" || true
check "the dump of the fresh install holds the extension's members" "t" \
	"$(q "SELECT $(grep -c '^ALTER EXTENSION crm_automation ADD ' "$IT_DIR/fresh.schema" || true) = count(*) AND count(*) > 100 FROM pg_depend WHERE refobjid = (SELECT oid FROM pg_extension WHERE extname = 'crm_automation') AND deptype = 'e'")"
for db in updated empty; do
	d=$(diff -u "$IT_DIR/fresh.schema" "$IT_DIR/$db.schema" || true)
	check "schema of the $db $OLD database after UPDATE = schema of a fresh $NEW install" "" \
		"$( [ -z "$d" ] || echo "they differ in $(echo "$d" | grep -vE '^(---|\+\+\+) ' | grep -c '^[-+]') lines")"
	[ -z "$d" ] || echo "$d" | head -40 | sed 's/^/#   /'
done
extconfig() {
	qd "$1" "SELECT string_agg(c::regclass::text || coalesce(' ' || nullif(w, ''), ''), ',' ORDER BY c::regclass::text)
			   FROM pg_extension e, unnest(e.extconfig, e.extcondition) AS u(c, w) WHERE e.extname = 'crm_automation'"
}
check "the tables pg_dump keeps the rows of (pg_extension_config_dump) are the same" "$(extconfig crm_fresh)" "$(extconfig crm_it)"
# The default rows: an updated empty database against a fresh one, without
# the timestamps of when they were made.
DEF_SQL=$(rows_sql crm_fresh "a.atttypid <> 'timestamptz'::regtype")
qd crm_fresh "$DEF_SQL" >"$IT_DIR/fresh.rows" || true
check "default rows (entity types, pipelines, stages, working week) and sequences: as a fresh install's" "" \
	"$(rows_diff crm_empty "$DEF_SQL" "$IT_DIR/fresh.rows")"

echo "# pending work runs after the update"
worker on
wait_for "SELECT count(*) = 2 FROM crm.timeline_comment WHERE text LIKE 'a second after %'" 10 || true
check "the delayed robots due at the update ran" "a second after First,a second after Second" \
	"$(q "SELECT string_agg(text, ',' ORDER BY text) FROM crm.timeline_comment WHERE text LIKE 'a second after %'")"
wait_for "SELECT count(*) = 0 FROM crm.outbox WHERE status <> 'sent' AND next_attempt_at <= now()" 10 || true
check "the pending webhooks reached the sink" "1|1" \
	"$(grep -c '"path": "/ok/negotiation/101"' "$HTTP_LOG" || true)|$(grep -c '"path": "/ok/negotiation/102"' "$HTTP_LOG" || true)"
check "the pending SMS reached the gateway with the provider's secret" "2" \
	"$(grep -c '"path": "/ok/sms".*"authorization": "Bearer kept-token"' "$HTTP_LOG" || true)"
q "UPDATE crm.outbox SET next_attempt_at = now() WHERE payload ->> 'url' LIKE '%/ok/tomorrow'"
wait_for "SELECT status = 'sent' FROM crm.outbox WHERE payload ->> 'url' LIKE '%/ok/tomorrow'" 10 || true
check "the message planned for tomorrow, made due, is sent" "sent|1" \
	"$(q "SELECT status FROM crm.outbox WHERE payload ->> 'url' LIKE '%/ok/tomorrow'")|$(grep -c '"path": "/ok/tomorrow"' "$HTTP_LOG" || true)"
q "UPDATE crm.job SET due_at = now() WHERE status = 'pending' AND kind IN ('robot', 'process_timer')"
wait_for "SELECT count(*) = 0 FROM crm.job WHERE status = 'pending' AND kind IN ('robot', 'process_timer')" 10 || true
check "the next day's robots, made due, ran" "2" "$(q "SELECT count(*) FROM crm.timeline_comment WHERE text LIKE 'a day after %'")"
check "the waiting process resumed at its timer and completed" "completed|done|1" \
	"$(q "SELECT status || '|' || status_text FROM crm.process_instance WHERE id = $I")|$(q "SELECT count(*) FROM crm.timeline_comment WHERE text = 'process resumed'")"
check "the stage controls still wait for their day" "2" "$(q "SELECT count(*) FROM crm.job WHERE kind = 'control' AND status = 'pending'")"

echo "# new work after the update"
q "UPDATE crm.deal SET stage_id = $N WHERE id = 103"
check "a new move runs the stage's robots: comment, the rotation's third turn, delayed jobs planned" \
	"negotiating Third|102|3" \
	"$(q "SELECT text FROM crm.timeline_comment WHERE entity_id = 103 AND text LIKE 'negotiating%'")|$(q "SELECT responsible_id FROM crm.deal WHERE id = 103")|$(q "SELECT count(*) FROM crm.job WHERE entity_id = 103 AND kind IN ('robot', 'control')")"
wait_for "SELECT count(*) = 1 FROM crm.outbox WHERE entity_id = 103 AND channel = 'webhook' AND status = 'sent'" 10 || true
check "its webhook is delivered" "1" "$(grep -c '"path": "/ok/negotiation/103"' "$HTTP_LOG" || true)"
check "an application's event fires the webhook trigger" "fired|won" \
	"$(q "SELECT crm.fire_trigger('contract.signed', 'deal', 100)")|$(q "SELECT s.code FROM crm.deal d JOIN crm.stage s ON s.id = d.stage_id WHERE d.id = 100")"
q "UPDATE crm.deal SET stage_id = $P WHERE id = 101"
q "UPDATE crm.deal SET fields = fields || '{\"UF_PRIORITY\": 5}' WHERE id = 101"
check "a field change fires the field_changed trigger" "negotiation" \
	"$(q "SELECT s.code FROM crm.deal d JOIN crm.stage s ON s.id = d.stage_id WHERE d.id = 101")"
q "INSERT INTO crm.activity (entity_type, entity_id, type, direction, subject, remote_address) VALUES ('deal', 100, 'call', 'incoming', 'Spam', '+33 1 99')"
check "an unknown code and a listed number leave compact rows (no_trigger, excepted)" "no_trigger|excepted,no_trigger" \
	"$(q "SELECT crm.fire_trigger('nobody.listens', 'deal', 100)")|$(q "SELECT string_agg(status, ',' ORDER BY id) FROM crm.robot_log WHERE kind = 'trigger' AND entity_id = 100 AND status IN ('no_trigger', 'excepted')")"
J=$(q "SELECT crm.start_process($TN, 101)")
check "a process started after the update runs" "completed" "$(q "SELECT status FROM crm.process_instance WHERE id = $J")"

it_end
