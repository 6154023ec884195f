#!/usr/bin/env bash
# Webhook ingest over loopback, as kube-apiserver sends it: EventList batches
# of 400 from `kaudit gen` output, 8 concurrent senders, durable acks.
# Baseline in the same run: `kaudit import` of the same events (the offline
# durable path, no HTTP), so the ratio shows what the HTTP path costs.
# Usage: bench/serve.sh [EVENTS]
set -euo pipefail
cd "$(dirname "$0")/.."
N="${1:-400000}"
mkdir -p bench/out
if [ -z "${KAUDIT_BENCH_NO_BUILD:-}" ]; then
  cargo build --release --locked -p kaudit
  cargo build --release --locked -p kaudit-server --example loadgen
fi
K=./target/release/kaudit
LOADGEN=./target/release/examples/loadgen
events=bench/out/events-$N.jsonl
[ -s "$events" ] || $K gen --events "$N" --seed 1 -o "$events"
work=$(mktemp -d); trap 'kill $pid 2>/dev/null || true; rm -rf "$work"' EXIT
port=$(python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])')
KAUDIT_INGEST__MIN_FREE_DISK=0 $K serve --data "$work/serve" --listen 127.0.0.1:$port 2>"$work/serve.log" &
pid=$!
for _ in $(seq 100); do curl -sf http://127.0.0.1:$port/readyz >/dev/null && break; sleep 0.1; done

echo "== throughput: 8 senders, batches of 400, all $N events"
$LOADGEN http://127.0.0.1:$port/api/v1/ingest/k8s "$events" --senders 8 --batch 400 | tee bench/out/serve-throughput.txt
rss=$(ps -o rss= -p $pid); echo "server RSS after the run: $((rss/1024)) MiB"
# Server CPU (ingest plus its followers: indexer, detection) per event of the throughput run.
ticks=$(awk '{print $14+$15}' /proc/$pid/stat); hz=$(getconf CLK_TCK)
python3 -c "import sys; t=$ticks/$hz; print(f'server CPU: {t:.2f} s for $N events = {t*1e6/$N:.1f} us/event (ingest and followers)')"

echo "== latency: paced at 20,000 events/s for 15 s"
$LOADGEN http://127.0.0.1:$port/api/v1/ingest/k8s "$events" --senders 8 --batch 400 --rate 20000 --seconds 15 | tee bench/out/serve-latency.txt

echo "== baseline: the same throughput run with the live feed off (followers re-read and re-parse the store)"
port2=$(python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])')
KAUDIT_STORE__FEED_MEMORY=0 KAUDIT_INGEST__MIN_FREE_DISK=0 $K serve --data "$work/nofeed" --listen 127.0.0.1:$port2 2>"$work/nofeed.log" &
pid2=$!
for _ in $(seq 100); do curl -sf http://127.0.0.1:$port2/readyz >/dev/null && break; sleep 0.1; done
$LOADGEN http://127.0.0.1:$port2/api/v1/ingest/k8s "$events" --senders 8 --batch 400 | tee bench/out/serve-nofeed.txt
kill -TERM $pid2; wait $pid2 || true
python3 - bench/out/serve-throughput.txt bench/out/serve-nofeed.txt <<'PY'
import sys, re
rate = lambda f: float(re.search(r"= (\d+) events/s", open(f).read()).group(1))
a, b = rate(sys.argv[1]), rate(sys.argv[2])
print(f"live feed on: {a:,.0f} events/s; off: {b:,.0f} events/s; on/off = {a/b:.2f}")
PY

echo "== baseline: kaudit import of the same file (durable, no HTTP)"
start=$(date +%s.%N)
$K import --data "$work/import" "$events" >/dev/null 2>&1
end=$(date +%s.%N)
python3 - "$N" "$start" "$end" bench/out/serve-throughput.txt <<'PY'
import sys, re
n, s, e = int(sys.argv[1]), float(sys.argv[2]), float(sys.argv[3])
imp = n / (e - s)
txt = open(sys.argv[4]).read()
m = re.search(r"= (\d+) events/s", txt)
web = float(m.group(1)) if m else 0
print(f"import: {imp:,.0f} events/s; webhook: {web:,.0f} events/s; webhook/import = {web/imp:.2f}")
PY
kill -TERM $pid; wait $pid || true
$K verify --data "$work/serve" | tail -1
