#!/usr/bin/env bash
# E-mail safety:
#   - with a login, TLS is required: a server that offers AUTH but no
#     STARTTLS (as when a man in the middle strips it) never sees the
#     password, and the message is dead with the reason; a login with
#     "tls": "none" is refused outright;
#   - attachment file names and content types (crm.drive_file, written by
#     users) with CR LF cannot add headers or parts: the message is dead;
#     other names go out in RFC 2231 parameters (filename*=UTF-8''...),
#     decoded intact by a mail reader, quotes and all.
set -euo pipefail
cd "$(dirname "$0")/../.."
. scripts/lib.sh
. test/integration/common.bash

it_begin worker_mail_safety "crm.allowed_hosts = '127.0.0.1'" "crm.max_attempts = 2" \
	"crm.retry_base_delay = 1s" "crm.retry_max_delay = 1s"
LOG=$CRM_CLUSTER_DIR/server.log
AUTH_LOG=$IT_DIR/auth.log
touch "$AUTH_LOG"
"$PY" test/sinks/smtp_sink.py "$IT_DIR/smtp.port" "$IT_DIR/smtp.log" "$AUTH_LOG" >"$IT_DIR/smtp.out" 2>&1 &
IT_PIDS+=($!)
it_wait_file "$IT_DIR/smtp.port"
SMTP_PORT=$(cat "$IT_DIR/smtp.port")
SMTP_LOG=$IT_DIR/smtp.log
touch "$SMTP_LOG"

q "SELECT crm.add_provider('email', 'plain', '{\"url\": \"smtp://127.0.0.1:$SMTP_PORT\", \"from\": \"crm@example.com\", \"tls\": \"none\"}')" >/dev/null
q "SELECT crm.add_provider('email', 'login', '{\"url\": \"smtp://127.0.0.1:$SMTP_PORT\", \"from\": \"crm@example.com\", \"username\": \"crm\"}', 'hunter2', false)" >/dev/null
q "SELECT crm.add_provider('email', 'login-none', '{\"url\": \"smtp://127.0.0.1:$SMTP_PORT\", \"from\": \"crm@example.com\", \"username\": \"crm\", \"tls\": \"none\"}', 'hunter2', false)" >/dev/null
mail() {	# mail PROVIDER TO [ATTACHMENT_ID]
	q "INSERT INTO crm.outbox (channel, provider_id, payload)
	   VALUES ('email', (SELECT id FROM crm.provider WHERE name = '$1'),
			   jsonb_build_object('to', jsonb_build_array('$2'), 'subject', 's', 'body', 'b')
			   || CASE WHEN '${3:-}' = '' THEN '{}'::jsonb ELSE jsonb_build_object('attachments', jsonb_build_array(${3:-0})) END)
	   RETURNING id"
}
received() { "$PY" -c "import json,sys; print(sum(1 for l in open(sys.argv[1]) if sys.argv[2] in json.loads(l)['to']))" "$SMTP_LOG" "$1"; }

echo "# a login requires TLS"
id=$(mail plain plain@example.com)
wait_for "SELECT status = 'sent' FROM crm.outbox WHERE id = $id" 10 || true
check "without a login, tls none: sent" "sent" "$(q "SELECT status FROM crm.outbox WHERE id = $id")"
id=$(mail login try@example.com)
wait_for "SELECT status = 'dead' FROM crm.outbox WHERE id = $id" 10 || true
check "a login, the server offers no STARTTLS: dead at once, TLS named as the reason" "dead/1|true" \
	"$(q "SELECT status || '/' || attempts || '|' || (last_error ILIKE '%SSL%') FROM crm.outbox WHERE id = $id")"
id=$(mail login-none none@example.com)
wait_for "SELECT status = 'dead' FROM crm.outbox WHERE id = $id" 10 || true
check "a login with tls none: refused" 'dead|the e-mail provider has a login and "tls": "none": refused to send the password in clear' \
	"$(q "SELECT status || '|' || last_error FROM crm.outbox WHERE id = $id")"
check "the server never saw the password, nor the messages" "0|0|0" \
	"$(grep -c hunter2 "$AUTH_LOG" || true)|$(received try@example.com)|$(received none@example.com)"

echo "# attachment names and content types cannot inject headers"
q "INSERT INTO crm.drive_file (id, name, content_type, content) VALUES
	(1, E'a.pdf\"\r\nX-Injected: name\r\n\r\n--x', 'application/pdf', '\\x25504446'::bytea),
	(2, 'b.pdf', E'application/pdf\r\nX-Injected: type', '\\x25504446'::bytea),
	(3, 'c.pdf', 'not a type', '\\x25504446'::bytea),
	(4, 'd \"quoted\" é.pdf', 'application/pdf; name=d', '\\x25504446'::bytea)"
a=$(mail plain att1@example.com 1)
b=$(mail plain att2@example.com 2)
c=$(mail plain att3@example.com 3)
d=$(mail plain att4@example.com 4)
wait_for "SELECT count(*) = 4 FROM crm.outbox WHERE id IN ($a, $b, $c, $d) AND status IN ('sent', 'dead')" 10 || true
check "a file name with CR LF: dead" "dead|an attachment's file name contains CR, LF or another control character" \
	"$(q "SELECT status || '|' || last_error FROM crm.outbox WHERE id = $a")"
check "a content type with CR LF: dead" 'dead|attachment "b.pdf" has a content type with a control or non-ASCII character' \
	"$(q "SELECT status || '|' || last_error FROM crm.outbox WHERE id = $b")"
check "a content type that is not type/subtype: dead" 'dead|attachment "c.pdf" has an invalid content type "not a type"' \
	"$(q "SELECT status || '|' || last_error FROM crm.outbox WHERE id = $c")"
check "quotes and accents in a name are fine: sent, one attachment, its name intact" "sent|ok" \
	"$(q "SELECT status FROM crm.outbox WHERE id = $d")|$("$PY" - "$SMTP_LOG" <<'PY'
import email, json, sys
from email import policy
for l in open(sys.argv[1], encoding="utf-8"):
    r = json.loads(l)
    if r["to"] == ["att4@example.com"]:
        m = email.message_from_string(r["data"], policy=policy.default)
        atts = list(m.iter_attachments())
        print("ok" if len(atts) == 1 and atts[0].get_filename() == 'd "quoted" é.pdf' else [a.get_filename() for a in atts])
PY
)"
echo "# attachment names in RFC 2231 (filename*=UTF-8''...)"
q "INSERT INTO crm.drive_file (id, name, content_type, content) VALUES
	(5, 'devis-été 2026.pdf', 'application/pdf', '\\x25504446'::bytea),
	(6, E'a\"; filename=\"evil.exe', 'application/pdf', '\\x25504446'::bytea),
	(7, repeat('é', 40) || ' long.pdf', 'application/pdf', '\\x25504446'::bytea),
	(8, 'plain name.pdf', 'application/pdf', '\\x25504446'::bytea)"
e=$(mail plain att5@example.com 5)
f=$(mail plain att6@example.com 6)
g=$(mail plain att7@example.com 7)
h=$(mail plain att8@example.com 8)
wait_for "SELECT count(*) = 4 FROM crm.outbox WHERE id IN ($e, $f, $g, $h) AND status IN ('sent', 'dead')" 10 || true
check "all four sent" "sent|sent|sent|sent" "$(q "SELECT string_agg(status, '|' ORDER BY id) FROM crm.outbox WHERE id IN ($e, $f, $g, $h)")"
# filename DEST: the raw Content-Disposition of the attachment sent to DEST,
# unfolded, then the file name as a mail reader decodes it, and the number
# of filename parameters it finds
filename() { "$PY" - "$SMTP_LOG" "$1" <<'PY'
import email, json, re, sys
from email import policy
for l in open(sys.argv[1], encoding="utf-8"):
    r = json.loads(l)
    if r["to"] == [sys.argv[2]]:
        m = email.message_from_string(r["data"], policy=policy.default)
        atts = list(m.iter_attachments())
        raw = email.message_from_string(r["data"], policy=policy.compat32)
        part = [p for p in raw.walk() if p.get("Content-Disposition")][0]
        cd = re.sub(r"\r?\n[ \t]", " ", part["Content-Disposition"])
        params = [k for k, v in part.get_params(header="content-disposition")[1:]]
        print(cd)
        print("%s|%d|%d" % (atts[0].get_filename() if len(atts) == 1 else atts, len(atts), len(params)))
PY
}
out=$(filename att5@example.com)
check "a UTF-8 name is percent-encoded as RFC 2231 says" "attachment; filename*=UTF-8''devis-%C3%A9t%C3%A9%202026.pdf" "$(echo "$out" | head -1)"
check "and decodes intact" "devis-été 2026.pdf|1|1" "$(echo "$out" | tail -1)"
out=$(filename att6@example.com)
check "quotes and a semicolon in a name are encoded: no second filename" "attachment; filename*=UTF-8''a%22%3B%20filename%3D%22evil.exe" "$(echo "$out" | head -1)"
check "and the name decodes as it was" 'a"; filename="evil.exe|1|1' "$(echo "$out" | tail -1)"
out=$(filename att7@example.com)
check "a long name is split into numbered parts (filename*0*=, filename*1*=, ...), lines of 78 bytes at most" "t|t" \
	"$("$PY" -c "import json,sys; d=[json.loads(l)['data'] for l in open(sys.argv[1]) if json.loads(l)['to']==['att7@example.com']][0]; l=max((x.rstrip(chr(13)) for x in d.split(chr(10)) if 'filename' in x), key=len); print('t' if 'filename*0*=UTF-8' in d and 'filename*1*=' in d else 'f', 't' if len(l) <= 78 else repr(l), sep='|')" "$SMTP_LOG")"
check "and decodes intact" "$(printf 'é%.0s' $(seq 40)) long.pdf|1" "$(echo "$out" | tail -1 | cut -d'|' -f1,2)"
check "a plain ASCII name stays a quoted string" 'attachment; filename="plain name.pdf"' "$(filename att8@example.com | head -1)"

check "nothing injected reached the server" "0|0|0|0" \
	"$(grep -c X-Injected "$SMTP_LOG" || true)|$(received att1@example.com)|$(received att2@example.com)|$(received att3@example.com)"

check "no worker crashed (server log)" "0" "$(grep -c 'terminated by signal' "$LOG" || true)"
it_end
