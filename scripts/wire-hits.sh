#!/bin/bash
# Tracepoint and uprobe runs per request (docs/performance.md): a Python server traced from the wire and a
# Go server traced by its uprobes, under one agent with BPF run statistics on; 2000 keep-alive requests from
# a Python http.client each. Run as root from anywhere: scripts/wire-hits.sh
set -e
export PATH=/usr/local/go/bin:$PATH
W=$(mktemp -d); cd "$(dirname "$0")/.."
go build -o $W/agent ./cmd/agent
go build -C testdata/apps/hello -o $W/gohello .
ln -s /usr/bin/python3 $W/pyshop
$W/pyshop testdata/apps/pyhttp/server.py -addr 127.0.0.1:18101 & PY=$!
$W/gohello -addr 127.0.0.1:18102 & GO=$!
sleep 1
TRACEWIRE_PROBE_STATS=true OTEL_METRICS_EXPORTER=prometheus OTEL_EXPORTER_PROMETHEUS_HOST=127.0.0.1 OTEL_EXPORTER_PROMETHEUS_PORT=19464 \
  OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:1 $W/agent --target pyshop --target gohello 2>$W/agent.log & AG=$!
sleep 3
scrape() { curl -s http://127.0.0.1:19464/metrics | grep '^tracewire_probe_hits_total' | sed 's/{.*program="\([^"]*\)".*} / \1 /' | awk '{print $2, $3}'; }
load() { python3 - "$1" <<'PY'
import http.client, sys
c = http.client.HTTPConnection("127.0.0.1", int(sys.argv[1]))
for i in range(2000):
    c.request("GET", "/users/%d" % i); c.getresponse().read()
PY
}
for port in 18101 18102; do
  scrape > $W/before.$port; load $port; sleep 1; scrape > $W/after.$port
  echo "== server on $port: runs per request (2000 requests)"
  join $W/before.$port $W/after.$port | awk '{d=($3-$2)/2000; if (d>0.01) printf "%-40s %.2f\n", $1, d}'
done
kill $AG $PY $GO; wait 2>/dev/null || true
