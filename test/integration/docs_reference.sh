#!/usr/bin/env bash
# The reference in README.md and docs/*.md against the live catalogue, both
# ways: functions (arguments, defaults, result), views, settings (default,
# context), robot actions (parameters, outputs), trigger events
# (parameters), process activity types and crm.activity types.  Each
# difference is printed with the line to write (test/docs/reference.py has
# the conventions).  CRM_DOCS_ROOT=DIR reads the docs of another checkout.
set -euo pipefail
cd "$(dirname "$0")/../.."
. scripts/lib.sh
. test/integration/common.bash

it_begin docs_reference
CRM_DOCS_DB=crm_it "$PY" test/docs/reference.py "${CRM_DOCS_ROOT:-.}"
