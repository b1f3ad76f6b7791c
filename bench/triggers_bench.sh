#!/usr/bin/env bash
# Trigger engine benchmark (issue 5).  Prints ratios measured in one run on a
# throw-away cluster; nothing here is a pass/fail test.
#
#   An incoming-call INSERT into crm.activity (one statement per call) with
#   50 triggers defined vs the same INSERT with none:
#     a. none of the 50 listens to calls on the deal's pipeline (other events,
#        other pipelines and entity types): the cost of looking triggers up;
#     b. 5 of the 50 listen to calls on the deal's pipeline, with conditions
#        that do not hold: each call is an event, decided and logged.
#   And, for scale, what a call costs when it moves the deal (c).
# bench/triggers_instructions.sh counts the same cases in instructions.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
crm_install_deps
exec 9>/tmp/crm_automation.test.lock
flock 9
crm_build_install
trap crm_cluster_stop EXIT
crm_cluster_start "crm.worker_enabled = off"

N=${N:-5000}
psql -X -q -v ON_ERROR_STOP=1 -d postgres -v n="$N" -f bench/triggers_setup.sql -f bench/triggers_bench.sql
