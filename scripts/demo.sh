#!/usr/bin/env bash
# make demo: run the demo service and the agent (console exporter), drive a
# few requests, then stop the agent so it prints every trace it saw.
set -euo pipefail
cd "$(dirname "$0")/.."
port=${DEMO_PORT:-18080}
GODEBUG=httpmuxgo121=0 OTEL_SERVICE_NAME=demo-users ./bin/hello -addr 127.0.0.1:$port 2>/dev/null &
app=$!
trap 'kill $app 2>/dev/null || true' EXIT
OTEL_BSP_SCHEDULE_DELAY=1000 ./bin/agent --target hello --exporter console &
agent=$!
# Wait until the agent traces the service: its first request shows up on stdout.
sleep 2
for path in /users/1 /users/2 "/status?code=503" /silent /users/3; do
	curl -s -o /dev/null -w "GET $path -> %{http_code}\n" "http://127.0.0.1:$port$path" >&2
	sleep 0.1
done
sleep 0.5
kill -TERM $agent
wait $agent
