#!/usr/bin/env bash
# Robot engine benchmarks (issue 3).  Prints ratios measured in one run on a
# throw-away cluster; nothing here is a pass/fail test.
#
#   1. UPDATE that changes no stage: crm.deal (with the engine's triggers) vs
#      an identical table without them.
#   2. 20,000 deals moved into a stage with 3 templated add_comment robots vs
#      a lean PL/pgSQL trigger that looks rules up by stage and inserts the
#      rendered comments.
#   3. Per-row cost of a move as robots on OTHER stages grow from 10 to 10,000.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
crm_install_deps
exec 9>/tmp/crm_automation.test.lock
flock 9
crm_build_install
trap crm_cluster_stop EXIT
crm_cluster_start "crm.worker_enabled = off"

N=${N:-20000}
psql -X -q -v ON_ERROR_STOP=1 -d postgres -v n="$N" -f bench/robots_bench.sql
