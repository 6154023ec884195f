#!/usr/bin/env bash
# kaudit gen throughput, each against a baseline in the same run:
#   plain: `kaudit gen -o /dev/null` vs `cat` of the same bytes (page cache);
#   gzip:  `kaudit gen -o x.gz` vs `gzip -1` of the same bytes (gen + compress vs compress only);
#   library: criterion bench, fast path vs building and encoding an EventDoc per event.
# Needs: apt-get install hyperfine. Usage: bench/gen.sh [EVENTS] (default 1000000)
set -euo pipefail
cd "$(dirname "$0")/.."
N="${1:-1000000}"
command -v hyperfine >/dev/null || { echo "missing hyperfine: apt-get install hyperfine" >&2; exit 1; }
cargo build --release -p kaudit >/dev/null
K=./target/release/kaudit
T="${TMPDIR:-/tmp}/kaudit-gen-bench"
mkdir -p "$T"
$K gen --events "$N" --seed 1 -o "$T/events.jsonl"
bytes=$(stat -c %s "$T/events.jsonl")
hyperfine -w 1 -r 5 -N --export-json "$T/plain.json" \
  "taskset -c 0 $K gen --events $N --seed 1 -o /dev/null" "cat $T/events.jsonl"
hyperfine -w 1 -r 3 --export-json "$T/gz.json" \
  "taskset -c 0 $K gen --events $N --seed 1 -o $T/out.jsonl.gz" "gzip -1 -c $T/events.jsonl > /dev/null"
python3 - "$N" "$bytes" "$T/plain.json" "$T/gz.json" <<'PY'
import json, sys
n, size = int(sys.argv[1]), int(sys.argv[2])
p = json.load(open(sys.argv[3]))["results"]; z = json.load(open(sys.argv[4]))["results"]
g, c = p[0]["median"], p[1]["median"]
gz, gzip = z[0]["median"], z[1]["median"]
print(f"gen -> /dev/null: {n/g:,.0f} events/s, {size/g/1e6:,.0f} MB/s ({n} events, {size/n:,.0f} B/event mean); cat of the same bytes {c*1000:.0f} ms; gen/cat {g/c:.1f}x")
print(f"gen -> .gz: {n/gz:,.0f} events/s; gzip -1 alone {gzip*1000:.0f} ms; gen+gzip/gzip {gz/gzip:.2f}x")
PY
cargo bench -p kaudit-gen --bench generate 2>&1 | grep -E "thrpt|gen summary"
