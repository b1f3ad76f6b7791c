#!/usr/bin/env bash
# What the worker stores from the network is valid in the database
# encoding, and e-mails are written in it:
#   - a Latin-1 answer (0xe9) in a UTF-8 database: stored with the byte
#     escaped (\xe9); an answer of 2-byte characters cut at 1,024 bytes is
#     cut between characters; a Location header with a Latin-1 byte in the
#     error text; the outbox copies out and back in (as pg_restore does);
#   - a LATIN1 database: a subject of bytes 0x80-0xBF (which a UTF-8 reader
#     takes for continuation bytes) is encoded in words cut between
#     characters, labelled ISO-8859-1, and the message is sent.
set -euo pipefail
cd "$(dirname "$0")/../.."
. scripts/lib.sh
. test/integration/common.bash

it_begin worker_encoding "crm.allowed_hosts = '127.0.0.1'"
it_sink_http
it_sink_smtp
B=http://127.0.0.1:$HTTP_PORT
LOG=$CRM_CLUSTER_DIR/server.log
export PGCLIENTENCODING=UTF8

msg() { q "INSERT INTO crm.outbox (channel, payload) VALUES ('webhook', jsonb_build_object('url', '$1')) RETURNING id"; }

echo "# answers in another encoding, or cut inside a character"
a=$(msg "$B/latin1/a")
b=$(msg "$B/utf8/600/b")
c=$(msg "$B/redirect-raw/c")
wait_for "SELECT count(*) = 3 FROM crm.outbox WHERE id IN ($a, $b, $c) AND status IN ('sent', 'dead')" 10 || true
check "a Latin-1 answer is stored with its invalid byte escaped, and can be searched" 'sent|caf\xe9|true' \
	"$(q "SELECT status || '|' || response_excerpt || '|' || (response_excerpt ILIKE '%CAF%') FROM crm.outbox WHERE id = $a")"
check "a UTF-8 answer longer than 1,024 bytes is cut between characters" "sent|1023|é|true" \
	"$(q "SELECT status || '|' || octet_length(response_excerpt) || '|' || right(response_excerpt, 1) || '|' || (response_excerpt ILIKE 'xé%') FROM crm.outbox WHERE id = $b")"
check "a Location header with a Latin-1 byte: the error text escapes it" 'dead|HTTP 302: redirects are not followed (Location: /ok/caf\xe9)' \
	"$(q "SELECT status || '|' || last_error FROM crm.outbox WHERE id = $c")"
copied=$(psql -X -q -d crm_it -c "COPY (SELECT response_excerpt, last_error FROM crm.outbox) TO STDOUT" \
	| psql -X -q -d crm_it -c "CREATE TEMP TABLE t (e text, l text); COPY t FROM STDIN; SELECT count(*) FROM t" -t -A 2>&1)
check "the outbox copies out and back in (what pg_restore does)" "$(q "SELECT count(*) FROM crm.outbox")" "$copied"

echo "# a LATIN1 database: subjects cut between its characters"
psql -X -q -d postgres -c "CREATE DATABASE crm_latin1 ENCODING 'LATIN1' LC_COLLATE 'C' LC_CTYPE 'C' TEMPLATE template0" >/dev/null
psql -X -q -d crm_latin1 -c "CREATE EXTENSION crm_automation" >/dev/null
ql() { psql -X -q -t -A -v ON_ERROR_STOP=1 -d crm_latin1 -c "$1"; }
ql "SELECT crm.add_provider('email', 'local', '{\"url\": \"smtp://127.0.0.1:$SMTP_PORT\", \"from\": \"crm@example.com\", \"tls\": \"none\"}')" >/dev/null
SUBJECT="°±²³´µ¶·¸¹º»¼½¾¿°±²³´µ¶·¸¹º»¼½¾¿°±²³´µ¶·¸¹º»¼½¾¿°±²³´µ¶·¸¹º»¼½¾¿ fin"
id=$(ql "INSERT INTO crm.outbox (channel, payload) VALUES ('email', jsonb_build_object('to', jsonb_build_array('l1@example.com'), 'subject', '$SUBJECT', 'body', 'Été à Noël')) RETURNING id")
for i in $(seq 1 100); do [ "$(ql "SELECT status FROM crm.outbox WHERE id = $id")" = sent ] && break; sleep 0.1; done
check "the e-mail is sent" "sent" "$(ql "SELECT status FROM crm.outbox WHERE id = $id")"
check "subject and body decode back, labelled ISO-8859-1" "ok" "$("$PY" - "$SMTP_LOG" "$SUBJECT" <<'PY'
import email, json, sys
from email import policy
for l in open(sys.argv[1], encoding="utf-8"):
    r = json.loads(l)
    if r["to"] != ["l1@example.com"]:
        continue
    m = email.message_from_string(r["data"], policy=policy.default)
    raw = r["data"].split("\n\n")[0]
    problems = []
    if m["Subject"] != sys.argv[2]: problems.append("subject %r" % m["Subject"])
    if "=?ISO-8859-1?B?" not in raw: problems.append("charset label")
    body = m.get_body()
    if body.get_content_charset() != "iso-8859-1" or body.get_content().strip() != "Été à Noël":
        problems.append("body %r %r" % (body.get_content_charset(), body.get_content()))
    print("ok" if not problems else "; ".join(problems))
PY
)"

check "no worker crashed (server log)" "0" "$(grep -c 'terminated by signal' "$LOG" || true)"
it_end
