#!/usr/bin/env bash
# make demo: run two demo services (frontend calls users) and the agent with
# the console exporter, drive a few requests, then stop the agent so it
# prints every trace it saw as a waterfall.
set -euo pipefail
cd "$(dirname "$0")/.."
port=${DEMO_PORT:-18080}
cp bin/hello bin/users
GODEBUG=httpmuxgo121=0 OTEL_SERVICE_NAME=frontend ./bin/hello -addr 127.0.0.1:$port 2>/dev/null &
front=$!
GODEBUG=httpmuxgo121=0 OTEL_SERVICE_NAME=users ./bin/users -addr 127.0.0.1:$((port + 1)) 2>/dev/null &
users=$!
trap 'kill $front $users 2>/dev/null || true' EXIT
OTEL_BSP_SCHEDULE_DELAY=1000 ./bin/agent --target hello --target users --exporter console &
agent=$!
sleep 2 # the agent finds both services
down=$(printf 'http%%3A%%2F%%2F127.0.0.1%%3A%d%%2Fusers%%2F7' $((port + 1)))
for path in /users/1 "/status?code=503" /silent "/call?url=$down" "/fanout?n=3&url=$down"; do
	curl -s -o /dev/null -w "GET $path -> %{http_code}\n" "http://127.0.0.1:$port$path" >&2
	sleep 0.1
done
sleep 0.5
kill -TERM $agent
wait $agent
