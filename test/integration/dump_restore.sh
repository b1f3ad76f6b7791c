#!/usr/bin/env bash
# Backup and restore (README, "Backup and restore"): pg_dump of a database
# using crm_automation holds every CRM row and sequence; restored into a new
# database with session_replication_role = replica in one transaction (plain
# format through psql, custom format through pg_restore), every crm table and
# sequence is identical, edits to the default pipeline and stages are kept,
# and the automation works there: robots, triggers, smart processes, delayed
# jobs planned before the dump, queued and leased messages, provider secrets.
set -euo pipefail
cd "$(dirname "$0")/../.."
. scripts/lib.sh
. test/integration/common.bash

# The worker stays off while the source is built and copied, so that every
# job and message is still where the dump left it when the copies are compared.
it_begin dump_restore "crm.allowed_hosts = '127.0.0.1'" "crm.worker_enabled = off"
it_sink_http
B=http://127.0.0.1:$HTTP_PORT

# qd DB SQL: like q, in another database
qd() {
	psql -X -q -t -A -v ON_ERROR_STOP=1 -d "$1" -c "$2"
}

echo "# the source: structure edited by the administrators, automation, items and their history"
q "INSERT INTO crm.department (id, name) VALUES (100, 'Sales'), (101, 'Wholesale')"
q "INSERT INTO crm.user (id, name, email, department_id) VALUES (100, 'Boss', 'boss@example.com', 100), (101, 'Seller', NULL, 101),
	(102, 'Trainee', NULL, 101)"
q "UPDATE crm.department SET head_id = 100, parent_id = CASE id WHEN 101 THEN 100 END"	# user <-> department
q "SELECT crm.rename_stage(crm.stage('deal', 'new'), 'Fresh lead')" >/dev/null
q "SELECT crm.delete_stage(crm.stage('deal', 'final_invoice'))" >/dev/null
N=$(q "SELECT crm.add_stage(crm.default_pipeline('deal'), 'negotiation', 'Negotiation')")
W=$(q "SELECT crm.add_pipeline('deal', 'Wholesale')")
q "SELECT crm.add_stage($W, 'offer', 'Offer')" >/dev/null
q "SELECT crm.add_field('deal', 'UF_PRIORITY', 'Priority', 'number')" >/dev/null
q "SELECT crm.create_smart_process('delivery', 'Deliveries')" >/dev/null
q "SELECT crm.add_field('delivery', 'UF_ADDRESS', 'Address')" >/dev/null
q "UPDATE crm.work_schedule SET work_days = '{1,2,3,4,5,6}', day_start = '08:00'"
q "INSERT INTO crm.holiday (day, name) VALUES ('2030-12-25', 'Christmas')"
q "SELECT crm.add_provider('sms', 'gateway', '{\"url\": \"$B/ok/sms\", \"headers\": {\"Authorization\": \"Bearer {secret}\"}}', 'restored-token')" >/dev/null
q "SELECT crm.add_provider('webhook', 'signed', '{}', 'whsec_' || encode('0123456789abcdef0123456789abcdef', 'base64'))" >/dev/null
q "SELECT crm.add_robot($N, 'add_comment', '{\"text\": \"negotiating {{title}}\"}', name => 'note')" >/dev/null
q "SELECT crm.add_robot($N, 'add_comment', '{\"text\": \"two seconds after {{title}}\"}', delay => '{\"after\": \"2 seconds\"}')" >/dev/null
q "SELECT crm.add_robot($N, 'add_comment', '{\"text\": \"a day after {{title}}\"}', delay => '{\"after\": \"1 day\"}')" >/dev/null
q "SELECT crm.add_robot($N, 'change_responsible', '{\"users\": [100, 101, 102], \"mode\": \"rotate\"}')" >/dev/null
q "SELECT crm.add_robot(crm.stage('delivery', 'preparation'), 'add_comment', '{\"text\": \"preparing {{title}}\"}')" >/dev/null
q "SELECT crm.add_trigger(crm.stage('deal', 'preparation'), 'incoming_call')" >/dev/null
q "SELECT crm.add_trigger(crm.stage('deal', 'won'), 'webhook', '{\"code\": \"contract.signed\"}')" >/dev/null
q "SELECT crm.add_webform('contact_us', 'Contact us', '{\"name\": \"contact_name\"}')" >/dev/null
q "INSERT INTO crm.contact (id, name, phone) VALUES (100, 'Client', '+33 1')"
q "INSERT INTO crm.company (id, title) VALUES (100, 'Client Ltd')"
q "INSERT INTO crm.deal (title, responsible_id, contact_id) VALUES ('First', 101, 100), ('Second', 101, 100), ('Third', 101, NULL), ('Fourth', 101, NULL)"
q "UPDATE crm.deal SET stage_id = $N WHERE title IN ('First', 'Second')"
D3=$(q "SELECT id FROM crm.deal WHERE title = 'Third'")
D4=$(q "SELECT id FROM crm.deal WHERE title = 'Fourth'")
q "INSERT INTO crm.activity (entity_type, entity_id, type, direction, subject, remote_address) VALUES ('deal', $D3, 'call', 'incoming', 'Call', '+33 1')"
q "INSERT INTO crm.item (entity_type, title, fields) VALUES ('delivery', 'Parcel', '{\"UF_ADDRESS\": \"Quai 1\"}')"
q "SELECT crm.submit_webform('contact_us', '{\"name\": \"Web visitor\"}')" >/dev/null
q "SELECT crm.tracking_link('deal', $D3, 'https://example.com/offer')" >/dev/null
q "INSERT INTO crm.outbox (channel, payload) VALUES ('sms', '{\"to\": [\"+33 6\"], \"text\": \"queued before the dump\"}')"
q "INSERT INTO crm.outbox (channel, payload, status, attempts, claimed_at, lease_until)
   VALUES ('webhook', '{\"url\": \"$B/ok/leased\"}', 'sending', 1, now() - interval '2 minutes', now() - interval '1 minute')"
q "INSERT INTO crm.outbox (channel, payload, status, attempts, sent_at) VALUES ('webhook', '{\"url\": \"$B/ok/old\"}', 'sent', 1, now())"
q "INSERT INTO crm.disabled_endpoint (url, reason) VALUES ('$B/ok/gone', '410 Gone')"
check "the source has rows in every table the backup must keep" "" \
	"$(q "SELECT string_agg(t, ' ') FROM unnest(ARRAY['department', 'user', 'entity_type', 'pipeline', 'stage', 'user_field',
		'work_schedule', 'holiday', 'provider', 'provider_secret', 'robot', 'robot_turn', 'trigger', 'webform',
		'webform_submission', 'tracked_link', 'deal', 'lead', 'contact', 'company', 'item', 'timeline_comment', 'history',
		'robot_log', 'job', 'outbox', 'disabled_endpoint']) t
	   WHERE NOT (xpath('/row/n/text()', query_to_xml(format('SELECT count(*) AS n FROM crm.%I', t), false, true, '')))[1]::text::int > 0")"
check "before the dump: 2 delayed jobs per deal in negotiation pending, messages pending and leased" "4|pending,sending,sent" \
	"$(q "SELECT count(*) FROM crm.job WHERE status = 'pending'")|$(q "SELECT string_agg(status, ',' ORDER BY status) FROM crm.outbox")"

echo "# dump: plain and custom format"
pg_dump -d crm_it -f "$IT_DIR/crm.sql" 2>"$IT_DIR/dump.err"
pg_dump -d crm_it -Fc -f "$IT_DIR/crm.dump" 2>>"$IT_DIR/dump.err"
check "the dump holds the rows of every crm table (COPY crm.deal, crm.stage, crm.provider_secret)" "3" \
	"$(grep -cE '^COPY crm\.(deal|stage|provider_secret) ' "$IT_DIR/crm.sql" || true)"
check "pg_dump reports nothing but the circular foreign keys user <-> department" "" \
	"$(grep -vE 'circular foreign-key constraints|detail: (department|user)$|hint: ' "$IT_DIR/dump.err" || true)"

echo "# restore into new databases: replica mode, one transaction"
psql -X -q -d postgres -c "CREATE DATABASE crm_plain" -c "CREATE DATABASE crm_custom" -c "CREATE DATABASE crm_origin"
PGOPTIONS='-c session_replication_role=replica' \
	psql -X -q -1 -v ON_ERROR_STOP=1 -d crm_plain -f "$IT_DIR/crm.sql" >"$IT_DIR/plain.out" 2>&1 || cat "$IT_DIR/plain.out"
PGOPTIONS='-c session_replication_role=replica' \
	pg_restore -1 -e -d crm_custom "$IT_DIR/crm.dump" || true
if pg_restore -1 -e -d crm_origin "$IT_DIR/crm.dump" 2>"$IT_DIR/origin.err"; then r=restored; else r=refused; fi
check "without replica mode the restore fails (foreign keys, the default rows) and leaves nothing" "refused|0" \
	"$r|$(qd crm_origin "SELECT count(*) FROM pg_namespace WHERE nspname = 'crm'")"

# One line per table and sequence of the extension: its name and the md5 of
# its rows in text form, in order (sequences: last_value, is_called).
fingerprint() {
	local sql
	sql=$(qd crm_it "SELECT string_agg(CASE WHEN c.relkind = 'S'
			THEN format('SELECT %L, (SELECT last_value || %L || is_called FROM %s)', c.oid::regclass, '/', c.oid::regclass)
			ELSE format('SELECT %L, (SELECT md5(coalesce(string_agg(t::text, E''\\n'' ORDER BY t::text), %L)) FROM %s t)',
						c.oid::regclass, '', c.oid::regclass) END, ' UNION ALL ' ORDER BY c.oid::regclass::text)
		  FROM pg_extension e, unnest(e.extconfig) x(oid) JOIN pg_class c ON c.oid = x.oid
		 WHERE e.extname = 'crm_automation'")
	qd "$1" "$sql"
}
fingerprint crm_it >"$IT_DIR/source.fp"
n_tables=$(q "SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = 'crm' AND c.relkind IN ('r', 'S')")
check "every table and sequence of schema crm is compared" "$n_tables" "$(wc -l <"$IT_DIR/source.fp")"
for db in crm_plain crm_custom; do
	fingerprint "$db" >"$IT_DIR/$db.fp"
	check "$db: every crm table and sequence is identical to the source" "" \
		"$(diff "$IT_DIR/source.fp" "$IT_DIR/$db.fp" | grep '^[<>]' | cut -d'|' -f1 | sort -u | tr '\n' ' ' || true)"
done
check "the renamed default stage, the deleted one, the new one, the working week: as the administrators left them" \
	"Fresh lead|0|Negotiation|{1,2,3,4,5,6}|1" \
	"$(qd crm_custom "SELECT name FROM crm.stage WHERE id = crm.stage('deal', 'new')")|$(qd crm_custom "SELECT count(*) FROM crm.stage s JOIN crm.pipeline p ON p.id = s.pipeline_id WHERE p.entity_type = 'deal' AND p.is_default AND s.code = 'final_invoice'")|$(qd crm_custom "SELECT name FROM crm.stage WHERE id = $N")|$(qd crm_custom "SELECT work_days FROM crm.work_schedule")|$(qd crm_custom "SELECT count(*) FROM crm.work_schedule")"

echo "# the worker on: what the dump held goes on in the copies"
q "ALTER SYSTEM SET crm.worker_enabled = on"
q "SELECT pg_reload_conf()" >/dev/null
# wait_db DB SQL: waits (10 s at most) until SQL returns t in DB
wait_db() {
	local i
	for i in $(seq 1 100); do [ "$(qd "$1" "$2")" = t ] && return 0; sleep 0.1; done
	return 1
}
for db in crm_plain crm_custom; do
	wait_db "$db" "SELECT count(*) = 2 FROM crm.timeline_comment WHERE text LIKE 'two seconds after %'" || true
	check "$db: the delayed robots planned before the dump ran; the next day's wait" "2|done,done,pending,pending" \
		"$(qd "$db" "SELECT count(*) FROM crm.timeline_comment WHERE text LIKE 'two seconds after %'")|$(qd "$db" "SELECT string_agg(status, ',' ORDER BY status) FROM crm.job")"
	wait_db "$db" "SELECT count(*) = 0 FROM crm.outbox WHERE status <> 'sent'" || true
	check "$db: the queued message and the one whose lease expired are sent (the leased one on its 2nd attempt)" "1|2|1" \
		"$(qd "$db" "SELECT attempts FROM crm.outbox WHERE channel = 'sms'")|$(qd "$db" "SELECT attempts FROM crm.outbox WHERE payload ->> 'url' LIKE '%/leased'")|$(qd "$db" "SELECT count(*) FROM crm.outbox WHERE payload ->> 'url' LIKE '%/old'")"

	before=$(qd "$db" "SELECT max(id) FROM crm.deal")
	id=$(qd "$db" "INSERT INTO crm.deal (title, responsible_id) VALUES ('After restore', 101) RETURNING id")
	check "$db: a new deal takes the next id and lands in the renamed first stage" "$((before + 1))|new" \
		"$id|$(qd "$db" "SELECT s.code FROM crm.deal d JOIN crm.stage s ON s.id = d.stage_id WHERE d.id = $id")"
	qd "$db" "UPDATE crm.deal SET stage_id = $N WHERE id = $id"
	check "$db: moved into a stage with robots, they run: comment, the rotation's third turn, delayed jobs planned" \
		"negotiating After restore|102|2" \
		"$(qd "$db" "SELECT text FROM crm.timeline_comment WHERE entity_id = $id AND robot_id IS NOT NULL AND text LIKE 'negotiating%'")|$(qd "$db" "SELECT responsible_id FROM crm.deal WHERE id = $id")|$(qd "$db" "SELECT count(*) FROM crm.job WHERE entity_id = $id AND status = 'pending'")"
	qd "$db" "INSERT INTO crm.activity (entity_type, entity_id, type, direction, subject, remote_address) VALUES ('deal', $D4, 'call', 'incoming', 'Call', '+33 1')"
	check "$db: an incoming call fires the restored trigger and moves the deal" "preparation|fired" \
		"$(qd "$db" "SELECT s.code FROM crm.deal d JOIN crm.stage s ON s.id = d.stage_id WHERE d.id = $D4")|$(qd "$db" "SELECT status FROM crm.robot_log WHERE kind = 'trigger' AND entity_type = 'deal' AND entity_id = $D4")"
	item=$(qd "$db" "INSERT INTO crm.item (entity_type, title) VALUES ('delivery', 'Box') RETURNING id")
	stage=$(qd "$db" "SELECT s.code FROM crm.item i JOIN crm.stage s ON s.id = i.stage_id WHERE i.id = $item")
	qd "$db" "UPDATE crm.item SET stage_id = crm.stage('delivery', 'preparation') WHERE id = $item"
	check "$db: a smart-process item: next id, default stage, its stage's robot runs" "2|new|preparing Box" \
		"$item|$stage|$(qd "$db" "SELECT text FROM crm.timeline_comment WHERE entity_type = 'delivery' AND entity_id = $item")"
	check "$db: the next smart process continues the numbering" "129|T81" \
		"$(qd "$db" "SELECT crm.create_smart_process('repair', 'Repairs')")|$(qd "$db" "SELECT id_prefix FROM crm.entity_type WHERE code = 'repair'")"
done
check "the restored provider secret is used: the queued SMS reached the gateway with it, once per database" "3" \
	"$(grep -c '"path": "/ok/sms".*"authorization": "Bearer restored-token"' "$HTTP_LOG" || true)"

it_end
