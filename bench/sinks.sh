#!/usr/bin/env bash
# Forwarding throughput: every event of a store (filled with `kaudit gen` +
# `kaudit import`) through a webhook sink to a local receiver that counts
# EventList items. Baseline in the same run: a naive forwarder that re-encodes
# every event through serde_json::Value (and keeps no cursor), to the same
# receiver. Target: >= 50,000 events/s for the sink.
# Usage: bench/sinks.sh [EVENTS]
set -euo pipefail
cd "$(dirname "$0")/.."
N="${1:-1000000}"
mkdir -p bench/out
if [ -z "${KAUDIT_BENCH_NO_BUILD:-}" ]; then
  cargo build --release --locked -p kaudit
  cargo build --release --locked -p kaudit-sinks --example count_receiver --example forward_bench
fi
K=./target/release/kaudit
EX=./target/release/examples
events=bench/out/events-$N.jsonl
[ -s "$events" ] || $K gen --events "$N" --seed 1 -o "$events"
store=bench/out/sinks-store-$N
if [ ! -s "$store/checkpoint.key" ]; then
  rm -rf "$store"
  $K import --data "$store" "$events" >/dev/null
fi
work=$(mktemp -d); rpid=""
trap '[ -n "$rpid" ] && kill $rpid 2>/dev/null; rm -rf "$work"' EXIT

run_one() { # mode
  $EX/count_receiver 127.0.0.1:0 >"$work/recv.out" 2>&1 &
  rpid=$!
  for _ in $(seq 100); do grep -q listening "$work/recv.out" && break; sleep 0.05; done
  local addr; addr=$(sed -n 's/listening on //p' "$work/recv.out")
  $EX/forward_bench "$store" "http://$addr/audit" "$1" 500 | tee -a "$work/results"
  local got; got=$(curl -sf "http://$addr/count")
  kill $rpid; wait $rpid 2>/dev/null || true; rpid=""
  if [ "$got" != "$N" ]; then echo "receiver counted $got events, expected $N" >&2; exit 1; fi
}

echo "== kaudit webhook sink, batches of 500, $N events"
run_one kaudit
echo "== baseline: naive forwarder (serde_json::Value re-encode), batches of 500"
run_one naive
python3 - "$work/results" <<'PY' | tee bench/out/sinks.txt
import json, sys
r = {j["mode"]: j for j in map(json.loads, open(sys.argv[1]))}
k, n = r["kaudit"]["events_per_s"], r["naive"]["events_per_s"]
print(f"sink: {k:,.0f} events/s; naive: {n:,.0f} events/s; sink/naive = {k/n:.2f}; target 50,000: {'met' if k >= 50000 else 'NOT met'}")
PY
