#!/usr/bin/env bash
# Benchmark runner: builds release once, generates input with `kaudit gen`,
# and runs each benchmark, each against a baseline in the same run.
# Usage: bench/run.sh [parse|gen|all] ; results go to bench/out/.
set -euo pipefail
cd "$(dirname "$0")/.."
what="${1:-all}"
N="${KAUDIT_BENCH_N:-200000}"
mkdir -p bench/out
cargo build --release --locked -p kaudit
K=./target/release/kaudit
events=bench/out/events-$N.jsonl
[ -s "$events" ] || $K gen --events "$N" --seed 1 -o "$events"

if [ "$what" = all ] || [ "$what" = gen ]; then
  echo "== gen: events/s to /dev/null (baseline: cat of the same bytes from page cache)"
  command -v hyperfine >/dev/null || { echo "apt-get install hyperfine" >&2; exit 1; }
  hyperfine -w 1 -r 5 -N --export-json bench/out/gen.json \
    "$K gen --events $N --seed 1 -o /dev/null" "cat $events" | tee bench/out/gen.txt
  python3 - "$N" bench/out/gen.json <<'PY'
import json, sys
n = int(sys.argv[1]); r = json.load(open(sys.argv[2]))["results"]
g, c = r[0]["median"], r[1]["median"]
print(f"gen: {n/g:,.0f} events/s ({n} events in {g*1000:.0f} ms); cat of the output {c*1000:.0f} ms; ratio gen/cat {g/c:.1f}x")
PY
fi

if [ "$what" = all ] || [ "$what" = parse ]; then
  echo "== parse: kaudit Event::from_json vs serde_json::Value"
  KAUDIT_BENCH_EVENTS="$PWD/$events" cargo bench --locked -p kaudit-event --bench parse -- --noplot 2>&1 \
    | grep -E '^parse|time:|thrpt:' | tee bench/out/parse.txt
fi
