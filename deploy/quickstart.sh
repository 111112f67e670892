#!/usr/bin/env bash
# The README's first command: installs what is needed, builds moat (Release), then shows it
# relaying mail on its embedded default configuration:
#   a sink (moat-loadgen sink) listens on 127.0.0.1:2526, the internal mail server's stand-in;
#   moat serve runs with no main.cf: listen 127.0.0.1:2525, relay example.com to the sink;
#   five messages go in through moat (moat-loadgen send), and what reached the sink is printed.
# Every process it starts is stopped by its PID when it ends. Needs ports 2525 and 2526 free.
set -euo pipefail
cd "$(dirname "$0")/.."

bash deploy/install-deps.sh
echo "== building moat (Release)"
cmake -S . -B build/release -G Ninja -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build/release -j "$(nproc)" --target moat moat-loadgen

moat=build/release/core/moat
loadgen=build/release/bench/loadgen/moat-loadgen
work=$(mktemp -d /tmp/moat-quickstart-XXXXXX)
pids=()
cleanup() {
  for pid in "${pids[@]}"; do
    kill -TERM "$pid" 2>/dev/null || true
  done
  for pid in "${pids[@]}"; do
    wait "$pid" 2>/dev/null || true
  done
  rm -rf "$work"
}
trap cleanup EXIT

if [ -f /etc/moat/main.cf ]; then
  echo "quickstart: /etc/moat/main.cf exists; this demo needs the embedded default. Stopping." >&2
  exit 1
fi
messages=5

echo "== starting the sink on 127.0.0.1:2526 (it stands in for the internal mail server)"
mkdir -p "$work/received"
"$loadgen" sink --listen 127.0.0.1:2526 --dir "$work/received" --messages "$messages" \
  --duration 60 >"$work/sink.out" 2>"$work/sink.err" &
pids+=($!)

echo "== starting moat on its embedded default configuration"
"$moat" serve 2>"$work/moat.log" &
moat_pid=$!
pids+=($moat_pid)
for _ in $(seq 1 100); do
  if grep -q "daemon started" "$work/moat.log"; then break; fi
  sleep 0.1
done
sed 's/^/   /' "$work/moat.log"

echo "== sending $messages messages through moat (127.0.0.1:2525) to user@example.com"
"$loadgen" send --server 127.0.0.1:2525 --messages "$messages" --sessions 1 --size 600 \
  --from demo@client.example --to user@example.com

echo "== waiting for them at the sink"
for _ in $(seq 1 100); do
  count=$(find "$work/received" -name '*.eml' | wc -l)
  if [ "$count" -ge "$messages" ]; then break; fi
  sleep 0.1
done
count=$(find "$work/received" -name '*.eml' | wc -l)
if [ "$count" -ge "$messages" ]; then
  echo "== the sink received $count messages; the first one:"
  first=$(find "$work/received" -name '*.eml' | sort | head -1)
  sed -n '1,12p' "$first" | sed 's/^/   /'
else
  echo "== the sink received $count of $messages messages; moat's queue:"
  "$moat" queue list | sed 's/^/   /'
fi
echo "== moat's log:"
sed 's/^/   /' "$work/moat.log"
