#!/usr/bin/env bash
# Providers' own TLS (README, "Providers"): a private CA ("ca", PEM text or
# a file on the server) and a client certificate ("client_cert" and the
# client key), against local servers whose certificates a test CA signed:
#   - HTTPS with a private CA: without "ca" a certificate error, with it
#     (PEM or file) delivered; host names are still verified; an SMS
#     provider over the same server;
#   - a server that requires a client certificate: refused without one,
#     delivered with it (PEM or files), the server sees the worker's name;
#   - SMTP with STARTTLS through the private CA;
#   - stored values changed by hand (bad PEM, a missing file, a key without
#     its certificate): that message dead with the reason, the others sent,
#     no crash.
set -euo pipefail
cd "$(dirname "$0")/../.."
. scripts/lib.sh
. test/integration/common.bash

it_begin worker_tls "crm.allowed_hosts = '127.0.0.1, localhost'" "crm.max_attempts = 1" \
	"crm.http_timeout = 5s"
LOG=$CRM_CLUSTER_DIR/server.log

echo "# a private CA, a server certificate for 127.0.0.1 and localhost, a client CA and a client certificate"
K=$IT_DIR/pki
mkdir -p "$K"
ossl() { openssl "$@" >/dev/null 2>&1; }
ossl req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=crm test CA" -keyout "$K/ca.key" -out "$K/ca.crt"
ossl req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=crm client CA" -keyout "$K/client-ca.key" -out "$K/client-ca.crt"
sign() {	# sign NAME CA SUBJECT EXTENSIONS
	ossl req -newkey rsa:2048 -nodes -subj "$3" -keyout "$K/$1.key" -out "$K/$1.csr"
	printf '%s\n' "$4" >"$K/$1.ext"
	ossl x509 -req -in "$K/$1.csr" -CA "$K/$2.crt" -CAkey "$K/$2.key" -CAcreateserial -days 2 \
		-extfile "$K/$1.ext" -out "$K/$1.crt"
}
sign server ca /CN=localhost "subjectAltName=IP:127.0.0.1,DNS:localhost"
sign other ca /CN=other.example "subjectAltName=DNS:other.example"
sign client client-ca /CN=crm-worker "extendedKeyUsage=clientAuth"
chmod a+rx "$K"; chmod a+r "$K"/*
check "openssl made the certificates" "ok" \
	"$(openssl verify -CAfile "$K/ca.crt" "$K/server.crt" >/dev/null && openssl verify -CAfile "$K/client-ca.crt" "$K/client.crt" >/dev/null && echo ok)"

https_sink() {	# https_sink NAME CERT [CLIENT_CA]: sets PORT
	"$PY" test/sinks/http_sink.py "$IT_DIR/$1.port" "$IT_DIR/$1.log" "$K/$2.crt" "$K/$2.key" ${3:+"$K/$3.crt"} \
		>"$IT_DIR/$1.out" 2>&1 &
	IT_PIDS+=($!)
	it_wait_file "$IT_DIR/$1.port"
	touch "$IT_DIR/$1.log"
	PORT=$(cat "$IT_DIR/$1.port")
}
https_sink private server; PRIVATE=https://127.0.0.1:$PORT
https_sink other other; OTHER=https://127.0.0.1:$PORT
https_sink mutual server client-ca; MUTUAL=https://localhost:$PORT
it_sink_http
"$PY" test/sinks/smtp_sink.py "$IT_DIR/smtps.port" "$IT_DIR/smtps.log" - "$K/server.crt" "$K/server.key" \
	>"$IT_DIR/smtps.out" 2>&1 &
IT_PIDS+=($!)
it_wait_file "$IT_DIR/smtps.port"
touch "$IT_DIR/smtps.log"
SMTP_URL=smtp://localhost:$(cat "$IT_DIR/smtps.port")

# arrived SINK PATH: requests that reached the sink at that path; client SINK PATH: their client's name
arrived() { grep -c "\"path\": \"$2\"" "$IT_DIR/$1.log" || true; }
client() { "$PY" -c "import json,sys; print(','.join(str(r.get('client')) for r in map(json.loads, open(sys.argv[1])) if r['path'] == sys.argv[2]))" "$IT_DIR/$1.log" "$2"; }
# hook PROVIDER URL: queues a webhook through the provider, prints its id
hook() {
	q "INSERT INTO crm.outbox (channel, provider_id, payload)
	   VALUES ('webhook', (SELECT id FROM crm.provider WHERE name = '$1'), jsonb_build_object('url', '$2', 'body', '{}'::jsonb))
	   RETURNING id"
}
# settle ID...: waits until the messages are sent or dead
settle() { wait_for "SELECT bool_and(status IN ('sent', 'dead')) FROM crm.outbox WHERE id IN ($(IFS=,; echo "$*"))" 15 || true; }
state() { q "SELECT status || CASE WHEN status = 'dead' THEN '|' || last_error ELSE '' END FROM crm.outbox WHERE id = $1"; }
# pem FILE: the file's text as an SQL expression
pem() { "$PY" -c "import json,sys; print(\"('%s'::jsonb #>> '{}')\" % json.dumps(open(sys.argv[1]).read()))" "$K/$1"; }

q "SELECT crm.add_provider('webhook', 'system', '{}')" >/dev/null
q "SELECT crm.add_provider('webhook', 'ca-pem', jsonb_build_object('ca', $(pem ca.crt)))" >/dev/null
q "SELECT crm.add_provider('webhook', 'ca-file', '{\"ca\": \"$K/ca.crt\"}')" >/dev/null
q "SELECT crm.add_provider('webhook', 'client-pem', jsonb_build_object('ca', '$K/ca.crt', 'client_cert', $(pem client.crt)),
	client_key => $(pem client.key))" >/dev/null
q "SELECT crm.add_provider('webhook', 'client-file', '{\"ca\": \"$K/ca.crt\", \"client_cert\": \"$K/client.crt\"}',
	client_key => '$K/client.key')" >/dev/null

echo "# a server whose certificate a private CA signed"
a=$(hook system "$PRIVATE/ok/system")
b=$(hook ca-pem "$PRIVATE/ok/ca-pem")
c=$(hook ca-file "$PRIVATE/ok/ca-file")
d=$(hook ca-pem "$OTHER/ok/other-name")
settle "$a" "$b" "$c" "$d"
check "without \"ca\": dead with a certificate error, nothing arrived" "dead|true|0" \
	"$(q "SELECT status || '|' || (last_error ILIKE '%certificate%') FROM crm.outbox WHERE id = $a")|$(arrived private /ok/system)"
check "\"ca\" as PEM text: delivered" "sent|1" "$(state "$b")|$(arrived private /ok/ca-pem)"
check "\"ca\" as a file on the server: delivered" "sent|1" "$(state "$c")|$(arrived private /ok/ca-file)"
check "the host name is still verified: a certificate of the same CA for another name is refused" "dead|true|0" \
	"$(q "SELECT status || '|' || (last_error ~* 'certificate|subject name|match') FROM crm.outbox WHERE id = $d")|$(arrived other /ok/other-name)"

echo "# an SMS provider over HTTPS with the private CA"
q "SELECT crm.add_provider('sms', 'gateway', jsonb_build_object('url', '$PRIVATE/ok/sms', 'ca', $(pem ca.crt)))" >/dev/null
s=$(q "INSERT INTO crm.outbox (channel, payload) VALUES ('sms', '{\"to\": [\"+33600000000\"], \"text\": \"hi\"}') RETURNING id")
settle "$s"
check "the SMS is delivered through the private CA" "sent|1" "$(state "$s")|$(arrived private /ok/sms)"

echo "# a server that requires a client certificate"
a=$(hook ca-file "$MUTUAL/ok/no-client")
b=$(hook client-pem "$MUTUAL/ok/client-pem")
c=$(hook client-file "$MUTUAL/ok/client-file")
settle "$a" "$b" "$c"
check "without a client certificate: dead, nothing arrived" "dead|0" \
	"$(q "SELECT status FROM crm.outbox WHERE id = $a")|$(arrived mutual /ok/no-client)"
check "with the client certificate and key as PEM: delivered, the server saw crm-worker" "sent|crm-worker" \
	"$(state "$b")|$(client mutual /ok/client-pem)"
check "with them as files on the server: delivered" "sent|crm-worker" \
	"$(state "$c")|$(client mutual /ok/client-file)"

echo "# e-mail: STARTTLS through the private CA"
q "SELECT crm.add_provider('email', 'smtp-system', '{\"url\": \"$SMTP_URL\", \"from\": \"crm@example.com\", \"tls\": \"required\"}')" >/dev/null
q "SELECT crm.add_provider('email', 'smtp-ca', jsonb_build_object('url', '$SMTP_URL', 'from', 'crm@example.com', 'tls', 'required',
	'ca', $(pem ca.crt)))" >/dev/null
mail() {	# mail PROVIDER TO
	q "INSERT INTO crm.outbox (channel, provider_id, payload)
	   VALUES ('email', (SELECT id FROM crm.provider WHERE name = '$1'),
			   jsonb_build_object('to', jsonb_build_array('$2'), 'subject', 's', 'body', 'b'))
	   RETURNING id"
}
a=$(mail smtp-system system@example.com)
b=$(mail smtp-ca ca@example.com)
settle "$a" "$b"
received() { grep -c "$1" "$IT_DIR/smtps.log" || true; }
check "STARTTLS without \"ca\": dead with a certificate error, nothing received" "dead|true|0" \
	"$(q "SELECT status || '|' || (last_error ILIKE '%certificate%') FROM crm.outbox WHERE id = $a")|$(received system@example.com)"
check "STARTTLS with the private CA: sent and received" "sent|1" "$(state "$b")|$(received ca@example.com)"
# Six more such pairs.  Each message keeps its provider's trust: the one
# without "ca" is refused though the server is the one the other just
# reached with its private CA (a connection upgraded by STARTTLS was reused
# across providers).  And a message committed while the worker handles
# another's TLS handshake (its sockets' events) wakes it all the same (the
# wake-up was lost about one time in two, the second never claimed).
pairs=""
for i in 1 2 3 4 5 6; do
	a=$(mail smtp-system "sys$i@example.com")
	b=$(mail smtp-ca "ca$i@example.com")
	settle "$a" "$b"
	pairs="$pairs$(q "SELECT string_agg(status, ',' ORDER BY id) FROM crm.outbox WHERE id IN ($a, $b)") "
done
check "six such pairs: the second of each sent" "dead,sent dead,sent dead,sent dead,sent dead,sent dead,sent " "$pairs"

echo "# stored values changed by hand are checked again when sent"
q "SELECT crm.add_provider('webhook', 'hand', jsonb_build_object('ca', '$K/ca.crt'))" >/dev/null
hand() {	# hand SQL: changes the provider "hand" by hand, then sends one webhook through it
	q "$1" >/dev/null
	local id
	id=$(hook hand "$PRIVATE/ok/hand")
	settle "$id"
	state "$id"
}
check "a \"ca\" that is neither PEM nor a path" \
	'dead|the provider'"'"'s "ca" is neither PEM text nor an absolute file path' \
	"$(hand "UPDATE crm.provider SET config = '{\"ca\": \"ca.crt\"}' WHERE name = 'hand'")"
check "a \"ca\" with a control character" \
	'dead|the provider'"'"'s "ca" is not PEM text: it holds a control or non-ASCII character' \
	"$(hand "UPDATE crm.provider SET config = jsonb_build_object('ca', E'-----BEGIN CERTIFICATE-----\\x01\\n-----END CERTIFICATE-----') WHERE name = 'hand'")"
check "a PEM block that is not a certificate: libcurl's error" "dead|t" \
	"$(hand "UPDATE crm.provider SET config = jsonb_build_object('ca', E'-----BEGIN CERTIFICATE-----\\nbm90IGEgY2VydA==\\n-----END CERTIFICATE-----\\n') WHERE name = 'hand'" | sed -E 's/^dead\|.*(CA|certificate).*/dead|t/')"
check "a \"ca\" file that is gone" \
	"dead|the provider's \"ca\" file \"$K/gone.crt\" cannot be read: No such file or directory" \
	"$(hand "UPDATE crm.provider SET config = '{\"ca\": \"$K/gone.crt\"}' WHERE name = 'hand'")"
check "a \"ca\" that is a directory" \
	"dead|the provider's \"ca\" file \"$K\" is not a regular file" \
	"$(hand "UPDATE crm.provider SET config = '{\"ca\": \"$K\"}' WHERE name = 'hand'")"
check "a client key without its certificate" \
	"dead|the provider has a client key but no client certificate" \
	"$(hand "UPDATE crm.provider SET config = '{\"ca\": \"$K/ca.crt\"}' WHERE name = 'hand';
	        INSERT INTO crm.provider_secret (provider_id, client_key) SELECT id, '$K/client.key' FROM crm.provider WHERE name = 'hand'")"
check "a client key that does not match its certificate: libcurl's error" "dead|t" \
	"$(hand "UPDATE crm.provider SET config = jsonb_build_object('ca', '$K/ca.crt', 'client_cert', '$K/client.crt') WHERE name = 'hand';
	        UPDATE crm.provider_secret SET client_key = '$K/server.key' WHERE provider_id = (SELECT id FROM crm.provider WHERE name = 'hand')" \
	  | sed -E 's/^dead\|.*(key|certificate).*/dead|t/')"
check "nothing of those reached the server" "0" "$(arrived private /ok/hand)"

q "UPDATE crm.provider SET config = jsonb_build_object('ca', '$K/ca.crt'), active = true WHERE name = 'hand'"
q "DELETE FROM crm.provider_secret WHERE provider_id = (SELECT id FROM crm.provider WHERE name = 'hand')"
a=$(hook hand "$PRIVATE/ok/hand-again")
b=$(q "INSERT INTO crm.outbox (channel, payload) VALUES ('webhook', '{\"url\": \"http://127.0.0.1:$HTTP_PORT/ok/plain\"}') RETURNING id")
settle "$a" "$b"
check "set right again, it delivers; plain HTTP was never affected" "sent|sent" "$(state "$a")|$(state "$b")"

check "no worker crashed (server log)" "0" "$(grep -c 'terminated by signal' "$LOG" || true)"
it_end
