#!/usr/bin/env bash
# Forwarding throughput: every event of a store (filled with `kaudit gen` +
# `kaudit import`) through a webhook sink to a local receiver that counts
# EventList items. Baseline in the same run: a naive forwarder that re-encodes
# every event through serde_json::Value (and keeps no cursor), to the same
# receiver. Target: >= 50,000 events/s for the sink.
# NATS: the same events through the NATS JetStream sink (async-nats) and,
# same run, through the former hand-written NATS client (the baseline), each
# to a fresh local nats-server (JetStream, file store in a temp dir, on
# 127.0.0.1); the rates and their ratio (target: new/old >= 1, no slower).
# Usage: bench/sinks.sh [EVENTS] [all|webhook|nats]
set -euo pipefail
cd "$(dirname "$0")/.."
N="${1:-1000000}"
WHAT="${2:-all}"
mkdir -p bench/out
if [ -z "${KAUDIT_BENCH_NO_BUILD:-}" ]; then
  cargo build --release --locked -p kaudit
  cargo build --release --locked -p kaudit-sinks --example count_receiver --example forward_bench
fi
T="${CARGO_TARGET_DIR:-target}"
K=$T/release/kaudit
EX=$T/release/examples
events=bench/out/events-$N.jsonl
[ -s "$events" ] || $K gen --events "$N" --seed 1 -o "$events"
store=bench/out/sinks-store-$N
if [ ! -s "$store/checkpoint.key" ]; then
  rm -rf "$store"
  $K import --data "$store" "$events" >/dev/null
fi
work=$(mktemp -d); rpid=""; npid=""
trap '[ -n "$rpid" ] && kill $rpid 2>/dev/null; [ -n "$npid" ] && kill $npid 2>/dev/null; rm -rf "$work"' EXIT

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

if [ "$WHAT" = all ] || [ "$WHAT" = webhook ]; then
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
fi

nats_one() { # mode: a fresh nats-server (JetStream) per run
  local bin; bin=$(command -v nats-server || echo /usr/sbin/nats-server)
  local port; port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  rm -rf "$work/js"; mkdir -p "$work/js"
  "$bin" -js -a 127.0.0.1 -p "$port" -sd "$work/js" >"$work/nats.log" 2>&1 &
  npid=$!
  for _ in $(seq 200); do (echo >/dev/tcp/127.0.0.1/"$port") 2>/dev/null && break; sleep 0.05; done
  $EX/forward_bench "$store" "nats://127.0.0.1:$port" "$1" 500 | tee -a "$work/nats-results"
  kill $npid; wait $npid 2>/dev/null || true; npid=""
}

if [ "$WHAT" = all ] || [ "$WHAT" = nats ]; then
  : >"$work/nats-results"
  for round in 1 2 3; do
    # Alternate which goes first, so neither always runs on a warmer machine.
    if [ $((round % 2)) = 1 ]; then order="nats nats-old"; else order="nats-old nats"; fi
    for m in $order; do
      echo "== round $round: $m ($([ "$m" = nats ] && echo 'the NATS sink on async-nats' || echo 'baseline: the former text-protocol client')), batches of 500, $N events"
      nats_one "$m"
    done
  done
  python3 - "$work/nats-results" <<'PY' | tee bench/out/sinks-nats.txt
import json, sys, statistics
r = {}
for j in map(json.loads, open(sys.argv[1])):
    r.setdefault(j["mode"], []).append(j["events_per_s"])
k, o = statistics.median(r["nats"]), statistics.median(r["nats-old"])
print(f"NATS sink (async-nats): {k:,.0f} events/s; former client: {o:,.0f} events/s (medians of {len(r['nats'])} runs each: {r['nats']} vs {r['nats-old']}); new/old = {k/o:.2f}; no slower: {'yes' if k >= o * 0.97 else 'NO'}")
PY
fi
