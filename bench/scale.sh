#!/usr/bin/env bash
# Scale benchmark (#21 goal 4): N events on one node. A benchmark, not part
# of the test command.
#   1. `kaudit gen --events N | kaudit import -`, streamed (the JSON lines
#      never touch the disk), under /usr/bin/time -v: wall time, max RSS of
#      the import (target: flat, bounded by the chunk size, not by N);
#   2. opening the store: `kaudit stat` (read-only open) wall time and RSS;
#   3. `kaudit serve` on the store: RSS after warm-up and after the questions
#      (target <= 2 GiB), and through the HTTP API (bench/scale_api.py): needle
#      p50 (target <= 50 ms), top-N and histograms over all time (<= 1 s),
#      each console page's JSON calls, issued together as the page does
#      (<= 1 s);
#   4. `kaudit verify` throughput in GB/s of raw event bytes (target >= 1),
#      against a same-run baseline: `sha256sum` over the segment files (one
#      hash pass over the stored bytes, no decompression, no tree).
# usage: bench/scale.sh [N]        (default 100000000)
# env:   KAUDIT_BENCH_DIR (work dir, default bench/out/scale-N; the store is
#        ~170 B/event: 17 GB at 100M), KAUDIT_BENCH_KEEP=1 keeps the store,
#        KAUDIT_BENCH_NO_BUILD=1 skips the release build, KAUDIT_BENCH_RUNS
#        (runs per question, default 9).
# Needs: /usr/bin/time (GNU), python3, curl, sha256sum.
set -euo pipefail
cd "$(dirname "$0")/.."
N="${1:-100000000}"
W="${KAUDIT_BENCH_DIR:-bench/out/scale-$N}"
RUNS="${KAUDIT_BENCH_RUNS:-9}"
T="${CARGO_TARGET_DIR:-target}"
K="$T/release/kaudit"
for t in /usr/bin/time python3 curl sha256sum; do
  command -v "$t" >/dev/null || { echo "missing $t" >&2; exit 1; }
done
[ -n "${KAUDIT_BENCH_NO_BUILD:-}" ] || cargo build --release --locked -p kaudit >/dev/null
D="$W/data"
rm -rf "$W"
mkdir -p "$W"
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  [ -n "${KAUDIT_BENCH_KEEP:-}" ] || rm -rf "$D"
}
trap cleanup EXIT
say() { echo "$*" | tee -a "$W/results.txt"; }
field() { grep -F "$1" "$2" | head -1 | sed 's/.*: //'; }
secs() { python3 -c "import sys; p=sys.argv[1].split(':'); print(sum(float(x)*60**i for i,x in enumerate(reversed(p))))" "$1"; }

say "== scale: $N events ($(date -u +%FT%TZ), $(nproc) cores, loaded)"

# 1. Streamed import.
"$K" gen --events "$N" --seed 21 \
  | /usr/bin/time -v -o "$W/import.time" "$K" import --data "$D" --cluster bench --no-progress - 2>"$W/import.log"
tail -1 "$W/import.log" | sed 's/^/   /'
wall=$(secs "$(field 'Elapsed (wall clock)' "$W/import.time")")
rss=$(field 'Maximum resident set size' "$W/import.time")
bytes=$(du -sb "$D" | cut -f1)
seg=$(du -sb "$D/segments" | cut -f1)
idx=$(du -sb "$D/index" | cut -f1)
say "import (gen | import -): $(python3 -c "print(f'{$N/$wall:,.0f}')") events/s, wall ${wall} s, import max RSS $((rss / 1024)) MiB (target: flat in N)"
say "on disk: $(python3 -c "print(f'{$bytes/$N:.0f}')") B/event (segments $(python3 -c "print(f'{$seg/$N:.0f}')"), index dir $(python3 -c "print(f'{$idx/$N:.1f}')")); store $(python3 -c "print(f'{$bytes/1e9:.2f}')") GB"

# 2. Opening: a read-only open builds no dedupe state.
/usr/bin/time -v -o "$W/stat.time" "$K" stat --data "$D" >"$W/stat.txt"
raw=$(sed -n 's/^compression: *\([0-9]*\) raw.*/\1/p' "$W/stat.txt")
say "kaudit stat (read-only open + stat): wall $(secs "$(field 'Elapsed (wall clock)' "$W/stat.time")") s, max RSS $(( $(field 'Maximum resident set size' "$W/stat.time") / 1024 )) MiB"

# 3. Serve + the HTTP API.
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
cat >"$W/serve.yaml" <<YAML
data: $D
listen: 127.0.0.1:$port
detect: {enabled: false}
ingest: {min_free_disk: 0}
query: {timeout: 120s}
YAML
s0=$(date +%s.%N)
"$K" serve --config "$W/serve.yaml" 2>"$W/serve.log" &
spid=$!
pids+=("$spid")
for _ in $(seq 6000); do curl -sf "http://127.0.0.1:$port/readyz" >/dev/null && break; sleep 0.1; done
curl -sf "http://127.0.0.1:$port/readyz" >/dev/null || { echo "serve did not come up:" >&2; tail "$W/serve.log" >&2; exit 1; }
say "serve ready after $(python3 -c "print(f'{$(date +%s.%N)-$s0:.1f}')") s; RSS $(( $(ps -o rss= -p "$spid") / 1024 )) MiB"
python3 bench/scale_api.py "http://127.0.0.1:$port" "$RUNS" | tee -a "$W/results.txt"
rss=$(sed -n 's/VmRSS:[[:space:]]*\([0-9]*\).*/\1/p' "/proc/$spid/status")
hwm=$(sed -n 's/VmHWM:[[:space:]]*\([0-9]*\).*/\1/p' "/proc/$spid/status")
say "serve RSS after the questions $((rss / 1024)) MiB, peak $((hwm / 1024)) MiB (target <= 2048 MiB)"
kill -TERM "$spid"; wait "$spid" || true
pids=()

# 4. verify against sha256sum of the segments, alternating, same run.
sync
for run in 1 2; do
  b0=$(date +%s.%N); cat "$D"/segments/* | sha256sum >/dev/null; b1=$(date +%s.%N)
  v0=$(date +%s.%N); "$K" verify --data "$D" >"$W/verify.txt" 2>&1 || { cat "$W/verify.txt" >&2; exit 1; }; v1=$(date +%s.%N)
  say "verify run $run: $(python3 -c "print(f'{$v1-$v0:.1f} s = {$raw/($v1-$v0)/1e9:.2f} GB/s of raw event bytes')") (target >= 1); baseline sha256sum of the segments $(python3 -c "print(f'{$b1-$b0:.1f} s = {$seg/($b1-$b0)/1e9:.2f} GB/s of stored bytes, {$raw/($b1-$b0)/1e9:.2f} GB/s raw-equivalent')")"
done
