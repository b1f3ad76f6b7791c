#!/usr/bin/env bash
# The Quickstart demo: installs what is missing, builds and installs the
# extension, starts a throw-away cluster and a local HTTP sink (standing in
# for an ERP, on 127.0.0.1, allowed by crm.allowed_hosts), runs
# demo/demo.sql, prints what the automation did and what the sink received,
# then removes the cluster and stops the sink.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh

crm_install_deps
exec 9>/tmp/crm_automation.test.lock
flock 9
crm_build_install
SINK_DIR=$(mktemp -d /tmp/crm_demo.XXXXXX)
chmod 777 "$SINK_DIR"
/usr/bin/python3 test/sinks/http_sink.py "$SINK_DIR/port" "$SINK_DIR/requests.log" >"$SINK_DIR/out" 2>&1 &
SINK_PID=$!
trap 'kill $SINK_PID 2>/dev/null || true; crm_cluster_stop; rm -rf "$SINK_DIR"' EXIT
for _ in $(seq 1 100); do [ -s "$SINK_DIR/port" ] && break; sleep 0.1; done
SINK_URL=http://127.0.0.1:$(cat "$SINK_DIR/port")/ok
crm_cluster_start "crm.allowed_hosts = '127.0.0.1'"

psql -X -q -v ON_ERROR_STOP=1 -v sink_url="$SINK_URL" -d postgres -f demo/demo.sql

echo
echo "== What the sink ($SINK_URL) received"
/usr/bin/python3 - "$SINK_DIR/requests.log" <<'PY'
import base64, hashlib, hmac, json, sys
secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
for line in open(sys.argv[1], encoding="utf-8"):
    r = json.loads(line)
    h = r["headers"]
    sig = h.get("webhook-signature", "")
    mac = hmac.new(base64.b64decode(secret[6:]),
                   f"{h.get('webhook-id')}.{h.get('webhook-timestamp')}.{r['body']}".encode(), hashlib.sha256)
    print(f"{r['method']} {r['path']}")
    print(f"  webhook-id:        {h.get('webhook-id')}")
    print(f"  webhook-timestamp: {h.get('webhook-timestamp')}")
    print(f"  webhook-signature: {'present, ' if sig else 'missing'}"
          f"{'verified with the provider secret' if sig == 'v1,' + base64.b64encode(mac.digest()).decode() else 'does not verify'}")
    print(f"  content-type:      {h.get('content-type')}; x-source: {h.get('x-source')}")
    print(f"  body:              {r['body']}")
PY
echo
echo "Demo finished; the throw-away cluster is removed."
