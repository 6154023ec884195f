#!/usr/bin/env bash
# Webhook ingest, the server measured apart from the load generator: `kaudit serve` pinned to
# core 0 and the load generator (crates/kaudit-server/examples/loadgen.rs) to core 1 with
# taskset, 8 senders of 400-event EventList batches from `kaudit gen` output, durable acks.
# `perf stat -e task-clock -p <server pid>` counts the server's CPU over the load run (every
# event acknowledged when it ends), then over the following seconds while its followers
# (search indexer, live detection) catch up. Then, on a fresh server, `perf record -g` of the
# same load and the top symbols by self time.
# Other processes on the machine still run on both cores: say "loaded" with the figures.
# Usage: bench/serve_cpu.sh [EVENTS] (default 200000); KAUDIT_BENCH_NO_PROFILE=1 skips perf record;
# KAUDIT_BENCH_BIN=<path> runs another build of kaudit as the server (an A/B against a kept copy
# of the old binary; the load generator and `gen` stay the same); KAUDIT_BENCH_SERVER_ENV="K=V ..."
# adds environment to the server only (e.g. LD_PRELOAD of a shim).
set -euo pipefail
cd "$(dirname "$0")/.."
N="${1:-200000}"
K=./target/release/kaudit
SERVER="${KAUDIT_BENCH_BIN:-$K}"
LOADGEN=./target/release/examples/loadgen
[ -x "$K" ] && [ -x "$LOADGEN" ] || {
  echo "build first: cargo build --release -p kaudit && cargo build --release -p kaudit-server --example loadgen" >&2
  exit 1
}
mkdir -p bench/out
events=bench/out/events-$N.jsonl
[ -s "$events" ] || $K gen --events "$N" --seed 1 -o "$events"
work=$(mktemp -d)
pid=
trap '[ -n "$pid" ] && kill $pid 2>/dev/null; rm -rf "$work"' EXIT

start_server() {
  port=$(python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])')
  env KAUDIT_INGEST__MIN_FREE_DISK=0 ${KAUDIT_BENCH_SERVER_ENV:-} taskset -c 0 "$SERVER" serve --data "$work/$1" --listen 127.0.0.1:$port 2>"$work/$1.log" &
  pid=$!
  for _ in $(seq 100); do curl -sf http://127.0.0.1:$port/readyz >/dev/null && break; sleep 0.1; done
}

task_ms() { awk '/task-clock/ {gsub(",", "", $1); print $1}' "$1"; }

echo "== server $SERVER ${KAUDIT_BENCH_SERVER_ENV:-} on core 0, load generator on core 1: $N events, 8 senders x 400"
start_server stat
perf stat -e task-clock,context-switches,page-faults -p $pid -o "$work/run.txt" &
perf_pid=$!
sleep 0.2
taskset -c 1 $LOADGEN http://127.0.0.1:$port/api/v1/ingest/k8s "$events" --senders 8 --batch 400 | tee bench/out/serve-cpu-throughput.txt
kill -INT $perf_pid; wait $perf_pid || true
perf stat -e task-clock -p $pid -o "$work/after.txt" -- sleep 5 || true
cat "$work/run.txt"
python3 - "$N" "$(task_ms "$work/run.txt")" "$(task_ms "$work/after.txt")" <<'PY'
import sys
n, run, after = int(sys.argv[1]), float(sys.argv[2]), float(sys.argv[3] or 0)
print(f"server CPU while acknowledging: {run/1e3:.2f} s = {run*1e3/n:.1f} us per acknowledged event")
print(f"followers' catch-up in the 5 s after: {after/1e3:.2f} s; total {(run+after)*1e3/n:.1f} us/event")
PY
kill $pid; wait $pid || true; pid=

if [ -z "${KAUDIT_BENCH_NO_PROFILE:-}" ]; then
  echo "== perf record -g of a fresh server under the same load"
  start_server prof
  perf record -g -o bench/out/serve.perf.data -p $pid 2>"$work/record.log" &
  perf_pid=$!
  sleep 0.2
  taskset -c 1 $LOADGEN http://127.0.0.1:$port/api/v1/ingest/k8s "$events" --senders 8 --batch 400
  kill -INT $perf_pid; wait $perf_pid || true
  kill $pid; wait $pid || true; pid=
  perf report -i bench/out/serve.perf.data --no-children --sort symbol --stdio 2>/dev/null |
    grep -E '^ +[0-9.]+%' | head -25 | tee bench/out/serve-cpu-top.txt
fi
