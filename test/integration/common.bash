# Helpers for the integration scripts (sourced after scripts/lib.sh).
#
#   it_begin NAME [postgresql.conf lines...]  starts a cluster, database crm_it
#   it_sink_http / it_sink_smtp               start a sink; sets HTTP_PORT / SMTP_PORT
#   it_sink_https                             an HTTPS sink with a self-signed
#                                             certificate; sets HTTPS_PORT, HTTPS_LOG
#   q SQL                                     runs SQL in crm_it, prints bare rows
#   check NAME EXPECTED ACTUAL                one assertion
#   wait_for SQL [SECONDS]                    waits until SQL returns t (bounded)
#   it_end                                    prints "NAME: N passed, M failed"

# Debian's interpreter: the sinks need its packages (python3-aiosmtpd).
PY=/usr/bin/python3

IT_PASSED=0
IT_FAILED=0
IT_DIR=$(mktemp -d /tmp/crm_it.XXXXXX)
chmod 777 "$IT_DIR"
IT_PIDS=()

it_cleanup() {
	local p
	for p in "${IT_PIDS[@]:-}"; do [ -n "$p" ] && kill "$p" 2>/dev/null || true; done
	crm_cluster_stop
	rm -rf "$IT_DIR"
}

it_begin() {
	IT_NAME=$1; shift
	trap it_cleanup EXIT
	crm_cluster_start "$@"
	psql -X -q -d postgres -c "CREATE DATABASE crm_it" >/dev/null
	psql -X -q -d crm_it -c "CREATE EXTENSION crm_automation" >/dev/null
}

it_wait_file() {
	local i
	for i in $(seq 1 100); do [ -s "$1" ] && return 0; sleep 0.1; done
	echo "timeout waiting for $1" >&2; return 1
}

it_sink_http() {
	"$PY" test/sinks/http_sink.py "$IT_DIR/http.port" "$IT_DIR/http.log" >"$IT_DIR/http.out" 2>&1 &
	IT_PIDS+=($!)
	it_wait_file "$IT_DIR/http.port"
	HTTP_PORT=$(cat "$IT_DIR/http.port")
	HTTP_LOG=$IT_DIR/http.log
	touch "$HTTP_LOG"
}

it_sink_https() {
	openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj /CN=127.0.0.1 \
		-keyout "$IT_DIR/key.pem" -out "$IT_DIR/cert.pem" >/dev/null 2>&1
	"$PY" test/sinks/http_sink.py "$IT_DIR/https.port" "$IT_DIR/https.log" "$IT_DIR/cert.pem" "$IT_DIR/key.pem" \
		>"$IT_DIR/https.out" 2>&1 &
	IT_PIDS+=($!)
	it_wait_file "$IT_DIR/https.port"
	HTTPS_PORT=$(cat "$IT_DIR/https.port")
	HTTPS_LOG=$IT_DIR/https.log
	touch "$HTTPS_LOG"
}

it_sink_smtp() {
	"$PY" test/sinks/smtp_sink.py "$IT_DIR/smtp.port" "$IT_DIR/smtp.log" >"$IT_DIR/smtp.out" 2>&1 &
	IT_PIDS+=($!)
	it_wait_file "$IT_DIR/smtp.port"
	SMTP_PORT=$(cat "$IT_DIR/smtp.port")
	SMTP_LOG=$IT_DIR/smtp.log
	touch "$SMTP_LOG"
}

q() {
	psql -X -q -t -A -v ON_ERROR_STOP=1 -d crm_it -c "$1"
}

check() {
	if [ "$2" = "$3" ]; then
		IT_PASSED=$((IT_PASSED + 1)); echo "ok - $1"
	else
		IT_FAILED=$((IT_FAILED + 1)); echo "not ok - $1"; echo "#   expected: $2"; echo "#   got:      $3"
	fi
}

# wait_for SQL [SECONDS]: polls every 0.1 s; returns 1 on timeout.
wait_for() {
	local limit=${2:-10} i
	for i in $(seq 1 $((limit * 10))); do
		[ "$(q "$1")" = t ] && return 0
		sleep 0.1
	done
	return 1
}

it_end() {
	echo "$IT_NAME: $IT_PASSED passed, $IT_FAILED failed"
	[ "$IT_FAILED" -eq 0 ]
}
