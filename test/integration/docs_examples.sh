#!/usr/bin/env bash
# Every SQL example of README.md and docs/*.md runs, in order, on a fresh
# database of its own, and prints what the docs show (test/docs/examples.py
# has the conventions: ```sql, ```output, <!-- fails: SQLSTATE -->,
# <!-- docs-test: skip because ... -->).  The worker is on and local SMTP and
# HTTP sinks stand in for 127.0.0.1:8025 and 127.0.0.1:8080, so examples that
# send something are delivered as a reader's would be.
# CRM_DOCS_ROOT=DIR reads the docs of another checkout (e.g. to show that
# main's README fails).
set -euo pipefail
cd "$(dirname "$0")/../.."
. scripts/lib.sh
. test/integration/common.bash

it_begin docs_examples
it_sink_smtp
it_sink_http
# it_begin's database is not used: each docs file gets its own.
psql -X -q -d postgres -c "DROP DATABASE crm_it" >/dev/null

"$PY" test/docs/examples.py --smtp-port "$SMTP_PORT" --http-port "$HTTP_PORT" "${CRM_DOCS_ROOT:-.}"
