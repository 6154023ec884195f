#!/usr/bin/env bash
# Import that indexes as it writes (issue #21, goal 1): `kaudit import` of
# N generated events into a fresh store, leaving it searchable, against two
# baselines in the same run, in alternating rounds:
#   - `zstd -3` of the same file (the cost of just compressing the bytes);
#   - the old two steps: `kaudit import --no-index` then `kaudit reindex`.
# Also times `kaudit import --no-index` alone, and once streams
# `kaudit gen | kaudit import -` (goal 4's path: no temporary file).
# Usage: bench/import.sh [EVENTS] [ROUNDS]   (default 1000000 3)
# Needs: zstd. The machine's load matters: read only same-run ratios.
set -euo pipefail
N=${1:-1000000}
ROUNDS=${2:-3}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
OUT=$ROOT/bench/out
mkdir -p "$OUT"
command -v zstd >/dev/null || { echo "missing zstd: apt-get install zstd" >&2; exit 2; }
if [ -z "${KAUDIT_BENCH_NO_BUILD:-}" ]; then
  cargo build --release --locked -p kaudit --manifest-path "$ROOT/Cargo.toml" >&2
fi
K=${CARGO_TARGET_DIR:-$ROOT/target}/release/kaudit
W=$(mktemp -d /tmp/kaudit-import-bench.XXXXXX)
trap 'rm -rf "$W"' EXIT
"$K" gen --events "$N" --seed 1 -o "$W/events.jsonl" >&2
RAW=$(stat -c %s "$W/events.jsonl")
now() { date +%s.%N; }
# One timed run of "$@"; prints seconds.
timed() { local a b; a=$(now); "$@" >/dev/null 2>"$W/last.err" || { cat "$W/last.err" >&2; exit 1; }; b=$(now); python3 -c "print($b-$a)"; }
: > "$W/times"
for r in $(seq "$ROUNDS"); do
  rm -rf "$W/a" "$W/b" "$W/c" "$W/e.zst"
  z=$(timed zstd -q -3 -f "$W/events.jsonl" -o "$W/e.zst")
  i=$(timed "$K" import --no-progress --data "$W/a" --cluster bench "$W/events.jsonl")
  grep -q "warning: search index" "$W/last.err" && { cat "$W/last.err" >&2; exit 1; }
  n=$(timed "$K" import --no-progress --no-index --data "$W/b" --cluster bench "$W/events.jsonl")
  x=$(timed "$K" reindex --data "$W/b")
  echo "$r $z $i $n $x" | tee -a "$W/times" >&2
done
# The index import wrote is the one reindex builds (same rows, same files).
for f in "$W/a/search/"*; do
  name=$(basename "$f"); [ "$name" = LOCK ] && continue
  cmp -s "$f" "$W/b/search/$name" || { echo "index file $name differs from reindex's" >&2; exit 1; }
done
# Goal 4's streamed path, once (same events regenerated on the fly).
s=$(timed bash -c "'$K' gen --events $N --seed 1 | '$K' import --no-progress --data '$W/c' --cluster bench -")
ZS=$(stat -c %s "$W/e.zst")
python3 - "$N" "$RAW" "$ZS" "$s" "$W/times" <<'PY' | tee "$OUT/import.txt"
import sys, statistics as st
n, raw, zs = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
stream = float(sys.argv[4])
rows = [list(map(float, l.split()[1:])) for l in open(sys.argv[5])]
z, i, ni, rx = (st.median(c) for c in zip(*rows))
print(f"input: {n} events, {raw/1e6:.1f} MB JSON lines; {len(rows)} alternating rounds, medians (loaded machine)")
print(f"import + index (this):          {i:6.2f} s  {n/i:9,.0f} events/s  {raw/i/1e6:6.1f} MB/s")
print(f"zstd -3 of the file (baseline): {z:6.2f} s  {n/z:9,.0f} events/s  {raw/z/1e6:6.1f} MB/s   import+index / zstd time: {i/z:.2f}x")
print(f"import --no-index, then reindex:{ni+rx:6.2f} s  {n/(ni+rx):9,.0f} events/s  ({ni:.2f} + {rx:.2f} s)   speed-up: {(ni+rx)/i:.2f}x")
print(f"import --no-index alone:        {ni:6.2f} s  {n/ni:9,.0f} events/s   indexing costs {100*(i-ni)/ni:+.0f}% of import time")
print(f"streamed gen | import - (once): {stream:6.2f} s  {n/stream:9,.0f} events/s (includes generating)")
print("per round (zstd, import+index, import --no-index, reindex), s:")
for r in rows:
    print("  " + "  ".join(f"{x:6.2f}" for x in r))
PY
echo "load average: $(cut -d' ' -f1-3 /proc/loadavg) on $(nproc) cores" | tee -a "$OUT/import.txt"
