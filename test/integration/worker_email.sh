#!/usr/bin/env bash
# The worker sends e-mail over SMTP to a local aiosmtpd sink: a robot's
# message with a UTF-8 subject, an html body and a drive-file attachment,
# parsed back with Python's MIME parser; several recipients; permanent (5xx)
# and transient (4xx) refusals; the notification that falls back to e-mail
# for an offline user; the process activity email in another charset
# (ISO-8859-1, KOI8-R): the bytes and the MIME headers.
set -euo pipefail
cd "$(dirname "$0")/../.."
. scripts/lib.sh
. test/integration/common.bash

it_begin worker_email \
	"crm.allowed_hosts = '127.0.0.1'" \
	"crm.retry_base_delay = 1s" "crm.retry_max_delay = 1s" "crm.max_attempts = 2"
it_sink_smtp

q "SELECT crm.add_provider('email', 'local', '{\"url\": \"smtp://127.0.0.1:$SMTP_PORT\", \"from\": \"crm@example.com\", \"tls\": \"none\"}')" >/dev/null
q "INSERT INTO crm.user (id, name, email, online) VALUES (100, 'Zoë Seller', 'zoe@example.com', true), (101, 'Ugo Boss', 'ugo@example.com', false)"
q "INSERT INTO crm.contact (id, name, email) VALUES (100, 'Claire Client', 'claire@example.org')"
q "INSERT INTO crm.drive_file (id, name, content_type, content) VALUES (100, 'devis été.pdf', 'application/pdf', '\\x255044462d312e340a00ff'::bytea)"
q "SELECT crm.add_robot(crm.stage('deal', 'preparation'), 'send_email',
	'{\"from\": \"responsible\", \"to\": [\"{{contact.email}}\", \"ugo@example.com\"], \"subject\": \"Votre devis « {{title}} » — n° {{id}}\",
	  \"body\": \"<p>Bonjour {{contact.name}}, voici le devis : <b>{{amount}} €</b></p>\", \"html\": true,
	  \"attachments\": [100]}')" >/dev/null
q "INSERT INTO crm.deal (id, title, responsible_id, contact_id, amount) VALUES (100, 'Chaises café', 100, 100, 4800)"
q "UPDATE crm.deal SET stage_id = crm.stage('deal', 'preparation') WHERE id = 100"
wait_for "SELECT bool_and(status = 'sent') FROM crm.outbox WHERE channel = 'email' AND robot_id IS NOT NULL" 10 || true
check "the robot's e-mail is sent" "sent/1" "$(q "SELECT status || '/' || attempts FROM crm.outbox WHERE channel = 'email' AND robot_id IS NOT NULL")"
check "parsed back: sender, recipients, UTF-8 subject, html body, attachment" "ok" "$("$PY" - "$SMTP_LOG" <<'PY'
import email, json, sys
from email import policy
recs = [json.loads(l) for l in open(sys.argv[1], encoding="utf-8")]
r = [x for x in recs if "claire@example.org" in x["to"]]
if len(r) != 1:
    print("messages:", len(recs)); sys.exit()
r = r[0]
m = email.message_from_string(r["data"], policy=policy.default)
problems = []
if r["from"] != "zoe@example.com": problems.append("envelope from " + r["from"])
if sorted(r["to"]) != ["claire@example.org", "ugo@example.com"]: problems.append("rcpt %s" % r["to"])
if m["Subject"] != "Votre devis « Chaises café » — n° 100": problems.append("subject " + repr(m["Subject"]))
if m["From"] != "zoe@example.com": problems.append("From " + str(m["From"]))
if not m["Message-ID"].startswith("<msg_"): problems.append("message-id")
body = m.get_body(preferencelist=("html",))
if body is None or body.get_content().strip() != "<p>Bonjour Claire Client, voici le devis : <b>4800 €</b></p>":
    problems.append("body %r" % (body and body.get_content()))
atts = list(m.iter_attachments())
if len(atts) != 1 or atts[0].get_filename() != "devis été.pdf" or atts[0].get_content() != b"%PDF-1.4\n\x00\xff" \
        or atts[0].get_content_type() != "application/pdf":
    problems.append("attachment %r" % [(a.get_filename(), a.get_content_type()) for a in atts])
print("ok" if not problems else "; ".join(problems))
PY
)"

echo "# several addresses in one value: the address separator (seed 000)"
q "INSERT INTO crm.contact (id, name, email) VALUES (101, 'Two Desks', 'ana@example.org, ben@example.org'), (102, 'Three Desks', 'cy@example.org;dee@example.org ; eve@example.org')"
q "SELECT crm.add_robot(crm.stage('deal', 'executing'), 'send_email', '{\"to\": \"{{contact.email}}\", \"subject\": \"s\", \"body\": \"b\"}')" >/dev/null
q "SELECT crm.add_robot(crm.stage('deal', 'final_invoice'), 'send_email', '{\"to\": \"{{contact.email}}\", \"separator\": \";\", \"subject\": \"s\", \"body\": \"b\"}')" >/dev/null
q "INSERT INTO crm.deal (id, title, responsible_id, contact_id, stage_id) VALUES (101, 'D1', 100, 101, crm.stage('deal', 'executing')), (102, 'D2', 100, 102, crm.stage('deal', 'final_invoice'))"
check "the default separator is a comma; \";\" when the robot says so" \
	'101:["ana@example.org", "ben@example.org"]|102:["cy@example.org", "dee@example.org", "eve@example.org"]' \
	"$(q "SELECT string_agg(entity_id || ':' || (payload->'to')::text, '|' ORDER BY entity_id) FROM crm.outbox WHERE entity_id IN (101, 102)")"
wait_for "SELECT count(*) = 2 FROM crm.outbox WHERE entity_id IN (101, 102) AND status = 'sent'" 10 || true
check "both e-mails were sent" "sent|sent" "$(q "SELECT string_agg(status || coalesce(' ' || last_error, ''), '|' ORDER BY entity_id) FROM crm.outbox WHERE entity_id IN (101, 102)")"
check "each went out as one e-mail to all its recipients" "ok" "$("$PY" - "$SMTP_LOG" <<'PY'
import json, sys
tos = sorted(sorted(json.loads(l)["to"]) for l in open(sys.argv[1], encoding="utf-8"))
want = [["ana@example.org", "ben@example.org"], ["cy@example.org", "dee@example.org", "eve@example.org"]]
print("ok" if all(w in tos for w in want) else tos)
PY
)"

echo "# refusals"
id=$(q "INSERT INTO crm.outbox (channel, payload) VALUES ('email', '{\"to\": [\"reject@example.com\"], \"subject\": \"s\", \"body\": \"b\"}') RETURNING id")
wait_for "SELECT status = 'dead' FROM crm.outbox WHERE id = $id" 10 || true
check "550 from the server: dead at once" "dead/1/550" "$(q "SELECT status || '/' || attempts || '/' || response_code FROM crm.outbox WHERE id = $id")"
id=$(q "INSERT INTO crm.outbox (channel, payload) VALUES ('email', '{\"to\": [\"busy@example.com\"], \"subject\": \"s\", \"body\": \"b\"}') RETURNING id")
wait_for "SELECT status = 'dead' FROM crm.outbox WHERE id = $id" 10 || true
check "451 from the server: retried, then dead after crm.max_attempts" "dead/2/451" "$(q "SELECT status || '/' || attempts || '/' || response_code FROM crm.outbox WHERE id = $id")"
id=$(q "INSERT INTO crm.outbox (channel, payload) VALUES ('email', jsonb_build_object('to', jsonb_build_array('a@example.com'), 'subject', E'hi\r\nBcc: evil@example.com', 'body', 'b')) RETURNING id")
wait_for "SELECT status = 'dead' FROM crm.outbox WHERE id = $id" 10 || true
check "a subject with CR LF is refused (no header injection)" "dead|the subject contains CR or LF" "$(q "SELECT status || '|' || last_error FROM crm.outbox WHERE id = $id")"
id=$(q "INSERT INTO crm.outbox (channel, payload) VALUES ('email', '{\"to\": [\"x@example.com>\\r\\nRCPT TO:<y@example.com\"], \"subject\": \"s\", \"body\": \"b\"}') RETURNING id")
wait_for "SELECT status = 'dead' FROM crm.outbox WHERE id = $id" 10 || true
check "a recipient with CR LF or brackets is refused" "dead" "$(q "SELECT status FROM crm.outbox WHERE id = $id")"

echo "# notifications reach offline users by e-mail"
q "INSERT INTO crm.notification (user_id, text) VALUES (101, 'Deal 100 needs you'), (100, 'Zoë is online')"
wait_for "SELECT count(*) = 1 FROM crm.outbox WHERE payload ? 'notification_id' AND status = 'sent'" 10 || true
check "only the offline user's notification became an e-mail, and it was sent" "1|1" \
	"$(q "SELECT count(*) FROM crm.outbox WHERE payload ? 'notification_id'")|$(q "SELECT count(*) FROM crm.outbox WHERE payload ? 'notification_id' AND status = 'sent'")"
check "it reached ugo@example.com with the notification's text" "ok" "$("$PY" - "$SMTP_LOG" <<'PY'
import email, json, sys
from email import policy
for l in open(sys.argv[1], encoding="utf-8"):
    r = json.loads(l)
    m = email.message_from_string(r["data"], policy=policy.default)
    if r["to"] == ["ugo@example.com"] and "Deal 100 needs you" in m.get_body().get_content():
        print("ok")
PY
)"

echo "# the process activity email's charset: subject and body converted, declared in the headers"
q "SELECT crm.add_process_template('deal', 'Latin', '{\"activities\": [
	{\"type\": \"email\", \"to\": [\"latin@example.com\"], \"subject\": \"Devis « {{title}} »\", \"body\": \"Café crème à 3 €, merci\", \"charset\": \"iso-8859-1\"},
	{\"type\": \"email\", \"to\": [\"koi@example.com\"], \"subject\": \"Привет\", \"body\": \"Счёт готов\", \"charset\": \"koi8-r\"}]}')" >/dev/null
q "SELECT crm.start_process('Latin', 'deal', 100)" >/dev/null
wait_for "SELECT count(*) = 2 FROM crm.outbox WHERE payload ? 'charset' AND process_instance_id IS NOT NULL AND status = 'sent'" 10 || true
check "both sent" "sent|sent" "$(q "SELECT string_agg(status || coalesce(' ' || last_error, ''), '|' ORDER BY id) FROM crm.outbox WHERE process_instance_id IS NOT NULL AND channel = 'email'")"
check "latin1: ISO-8859-1 bytes, Content-Type and RFC 2047 words say so; the euro sign, not in latin1, is ?" "ok" "$("$PY" - "$SMTP_LOG" <<'PY'
import email, json, re, sys
from email import policy
problems = []
for l in open(sys.argv[1], encoding="utf-8"):
    r = json.loads(l)
    if r["to"] == ["latin@example.com"]:
        raw = r["data"]
        m = email.message_from_string(raw, policy=policy.compat32)
        t = next(p for p in m.walk() if p.get_content_maintype() == "text")
        if t.get_content_charset() != "iso-8859-1": problems.append("content-type " + str(t["Content-Type"]))
        body = t.get_payload(decode=True)
        if body.rstrip(b"\r\n") != "Café crème à 3 ?, merci".encode("latin-1"): problems.append("body %r" % body)
        words = re.findall(r"=\?([^?]+)\?B\?([^?]*)\?=", m["Subject"])
        if not words or any(c != "ISO-8859-1" for c, _ in words): problems.append("subject " + m["Subject"])
        import base64
        subj = b"".join(base64.b64decode(w) for _, w in words)
        if subj != "Devis « Chaises café »".encode("latin-1"): problems.append("subject bytes %r" % subj)
        break
else:
    problems.append("no message to latin@example.com")
print("ok" if not problems else "; ".join(problems))
PY
)"
check "koi8-r: KOI8-R bytes, declared" "ok" "$("$PY" - "$SMTP_LOG" <<'PY'
import email, json, sys
from email import policy
for l in open(sys.argv[1], encoding="utf-8"):
    r = json.loads(l)
    if r["to"] == ["koi@example.com"]:
        m = email.message_from_string(r["data"], policy=policy.default)
        t = next(p for p in m.walk() if p.get_content_maintype() == "text")
        body = t.get_payload(decode=True)
        ok = (t.get_content_charset() == "koi8-r" and m["Subject"] == "Привет"
              and "=?KOI8-R?B?" in r["data"]
              and body.rstrip(b"\r\n") == "Счёт готов".encode("koi8-r"))
        print("ok" if ok else "got %r %r %r" % (m["Subject"], t["Content-Type"], body))
        break
else:
    print("no message to koi@example.com")
PY
)"
id=$(q "INSERT INTO crm.outbox (channel, payload) VALUES ('email', '{\"to\": [\"a@example.com\"], \"subject\": \"s\", \"body\": \"b\", \"charset\": \"ebcdic\"}') RETURNING id")
wait_for "SELECT status = 'dead' FROM crm.outbox WHERE id = $id" 10 || true
check "an unknown charset written by hand: dead" 'dead|unknown charset "ebcdic"' "$(q "SELECT status || '|' || last_error FROM crm.outbox WHERE id = $id")"

it_end
