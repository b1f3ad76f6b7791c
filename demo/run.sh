#!/usr/bin/env bash
# The Quickstart demo: installs what is missing, builds and installs the
# extension, starts a throw-away cluster, runs demo/demo.sql and prints what
# the automation did, then removes the cluster.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh

crm_install_deps
exec 9>/tmp/crm_automation.test.lock
flock 9
crm_build_install
trap 'crm_cluster_stop' EXIT
crm_cluster_start

psql -X -q -v ON_ERROR_STOP=1 -d postgres -f demo/demo.sql
echo
echo "Demo finished; the throw-away cluster is removed."
