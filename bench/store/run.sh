#!/usr/bin/env bash
# Store benchmark, end to end with the release binary, on `kaudit gen` output.
# Baselines in the same run: zstd -3 and gzip -6 of the same file (size and
# time), and sha256sum over it (verify speed floor).
# Usage: bench/store/run.sh [EVENTS]   (default 1000000)
# Needs: zstd, gzip, sha256sum (apt-get install zstd gzip coreutils).
set -euo pipefail
N=${1:-1000000}
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
OUT=$ROOT/bench/out
mkdir -p "$OUT"
for tool in zstd gzip sha256sum; do
  command -v $tool >/dev/null || { echo "missing $tool: apt-get install zstd gzip coreutils" >&2; exit 2; }
done
cargo build --release -p kaudit --manifest-path "$ROOT/Cargo.toml" >&2
K=$ROOT/target/release/kaudit
W=$(mktemp -d /tmp/kaudit-store-bench.XXXXXX)
trap 'rm -rf "$W"' EXIT
"$K" gen --events "$N" -o "$W/events.jsonl" >&2
RAW=$(stat -c %s "$W/events.jsonl")
sync
now() { date +%s.%N; }
t0=$(now); zstd -q -3 -c "$W/events.jsonl" > "$W/e.zst"; t1=$(now)
gzip -6 -c "$W/events.jsonl" > "$W/e.gz"; t2=$(now)
sha256sum "$W/events.jsonl" >/dev/null; t3=$(now)
ZS=$(stat -c %s "$W/e.zst"); GZ=$(stat -c %s "$W/e.gz")
t4=$(now); /usr/bin/time -f "import cpu: user %U s, sys %S s, %P of one core" -o "$W/import.cpu" "$K" import --no-progress --data "$W/data" --cluster bench "$W/events.jsonl" 2> "$W/import.txt"; t5=$(now)
/usr/bin/time -f "verify cpu: user %U s, sys %S s, %P of one core" -o "$W/verify.cpu" "$K" verify --data "$W/data" > "$W/verify.txt" 2>/dev/null
DATA=$(du -sb "$W/data/segments" | cut -f1); TREE=$(du -sb "$W/data/tree" | cut -f1)
CPS=$(stat -c %s "$W/data/checkpoints.jsonl")
python3 - "$N" "$RAW" "$ZS" "$GZ" "$DATA" "$TREE" "$CPS" "$t0" "$t1" "$t2" "$t3" "$t4" "$t5" <<'PY' | tee "$OUT/store.txt"
import sys
n,raw,zs,gz,data,tree,cps=map(int,sys.argv[1:8]); t0,t1,t2,t3,t4,t5=map(float,sys.argv[8:14])
imp=t5-t4
print(f"input: {n} events, {raw/1e6:.1f} MB JSON lines ({raw/n:.0f} B/event)")
print(f"durable import: {n/imp:,.0f} events/s ({raw/imp/1e6:.1f} MB/s) end to end; zstd -3 alone {raw/(t1-t0)/1e6:.1f} MB/s (import/zstd time {imp/(t1-t0):.2f}x)")
tot=data+tree+cps
print(f"on disk: data {data} + tree {tree} + checkpoints {cps} = {100*tot/raw:.2f}% of raw; zstd -3 {100*zs/raw:.2f}%; gzip -6 {100*gz/raw:.2f}%")
print(f"sha256sum over the raw file: {raw/(t3-t2)/1e9:.2f} GB/s")
PY
tail -1 "$W/import.txt" | tee -a "$OUT/store.txt"
tail -1 "$W/verify.txt" | tee -a "$OUT/store.txt"
cat "$W/import.cpu" "$W/verify.cpu" | tee -a "$OUT/store.txt"
echo "load average: $(cut -d' ' -f1-3 /proc/loadavg) on $(nproc) cores" | tee -a "$OUT/store.txt"
