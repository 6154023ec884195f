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
#        (runs per question, default 9), KAUDIT_BENCH_STORE=DIR reuses a
#        store built by an earlier run (steps 2-4 only; it is opened
#        writable by serve and never deleted), KAUDIT_BENCH_NO_VERIFY=1
#        skips step 4, KAUDIT_BENCH_MEMCG_LIMIT (default 2G; "" for none):
#        when a cgroup-v1 memory controller is writable (root), serve runs in
#        a cgroup with that hard limit, so the RSS target is enforced, not
#        only read: page cache of the memory-mapped index and segments is
#        charged to it and must be reclaimed, and anonymous memory over the
#        limit gets the server OOM-killed (the run then fails).
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
D="${KAUDIT_BENCH_STORE:-$W/data}"
rm -rf "$W"
mkdir -p "$W"
pids=()
CG=""
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  [ -n "${KAUDIT_BENCH_KEEP:-}${KAUDIT_BENCH_STORE:-}" ] || rm -rf "$D"
  if [ -n "$CG" ]; then
    for _ in $(seq 50); do rmdir "$CG" 2>/dev/null && break; sleep 0.1; done
  fi
}
trap cleanup EXIT
say() { echo "$*" | tee -a "$W/results.txt"; }
field() { grep -F "$1" "$2" | head -1 | sed 's/.*: //'; }
secs() { python3 -c "import sys; p=sys.argv[1].split(':'); print(sum(float(x)*60**i for i,x in enumerate(reversed(p))))" "$1"; }

say "== scale: $N events ($(date -u +%FT%TZ), $(nproc) cores, loaded)"

# 1. Streamed import.
if [ -z "${KAUDIT_BENCH_STORE:-}" ]; then
"$K" gen --events "$N" --seed 21 \
  | /usr/bin/time -v -o "$W/import.time" "$K" import --data "$D" --cluster bench --no-progress - 2>"$W/import.log"
tail -1 "$W/import.log" | sed 's/^/   /'
wall=$(secs "$(field 'Elapsed (wall clock)' "$W/import.time")")
rss=$(field 'Maximum resident set size' "$W/import.time")
bytes=$(du -sb "$D" | cut -f1)
seg=$(du -sb "$D/segments" | cut -f1)
idx=$(du -sb "$D/index" | cut -f1)
say "import (gen | import -): $(python3 -c "print(f'{$N/$wall:,.0f}')") events/s, wall ${wall} s, import max RSS $((rss / 1024)) MiB (target: flat in N)"
fi
bytes=$(du -sb "$D" | cut -f1)
seg=$(du -sb "$D/segments" | cut -f1)
idx=$(du -sb "$D/index" | cut -f1)
srch=$(du -sb "$D/search" 2>/dev/null | cut -f1 || echo 0)
say "on disk: $(python3 -c "print(f'{$bytes/$N:.0f}')") B/event (segments $(python3 -c "print(f'{$seg/$N:.0f}')"), index dir $(python3 -c "print(f'{$idx/$N:.1f}')"), search index $(python3 -c "print(f'{${srch:-0}/$N:.1f}')")); store $(python3 -c "print(f'{$bytes/1e9:.2f}')") GB"

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
limit="${KAUDIT_BENCH_MEMCG_LIMIT-2G}"
if [ -n "$limit" ] && [ -w /sys/fs/cgroup/memory ]; then
  CG="/sys/fs/cgroup/memory/kaudit-scale-$$"
  mkdir "$CG" && echo "$limit" >"$CG/memory.limit_in_bytes" || CG=""
fi
s0=$(date +%s.%N)
if [ -n "$CG" ]; then
  # The child joins the cgroup before it execs serve.
  sh -c 'echo $$ > "$1/cgroup.procs" && shift && exec "$@"' sh "$CG" "$K" serve --config "$W/serve.yaml" 2>"$W/serve.log" &
  say "serve runs in a memory cgroup limited to $limit (page cache included)"
else
  "$K" serve --config "$W/serve.yaml" 2>"$W/serve.log" &
  say "serve runs without a memory limit (no writable cgroup-v1 memory controller)"
fi
spid=$!
pids+=("$spid")
for _ in $(seq 6000); do curl -sf "http://127.0.0.1:$port/readyz" >/dev/null && break; sleep 0.1; done
curl -sf "http://127.0.0.1:$port/readyz" >/dev/null || { echo "serve did not come up:" >&2; tail "$W/serve.log" >&2; exit 1; }
say "serve ready after $(python3 -c "print(f'{$(date +%s.%N)-$s0:.1f}')") s; RSS $(( $(ps -o rss= -p "$spid") / 1024 )) MiB"
python3 bench/scale_api.py "http://127.0.0.1:$port" "$RUNS" | tee -a "$W/results.txt"
st() { sed -n "s/^$1:[[:space:]]*\([0-9]*\).*/\1/p" "/proc/$spid/status"; }
kill -0 "$spid" 2>/dev/null || { echo "serve died (OOM-killed in its cgroup?):" >&2; tail "$W/serve.log" >&2; exit 1; }
say "serve RSS after the questions $(( $(st VmRSS) / 1024 )) MiB (anonymous $(( $(st RssAnon) / 1024 )), file-backed $(( $(st RssFile) / 1024 )): mapped index and segment pages the kernel may reclaim), peak $(( $(st VmHWM) / 1024 )) MiB (target <= 2048 MiB)"
if [ -n "$CG" ]; then
  say "cgroup: peak charge $(( $(cat "$CG/memory.max_usage_in_bytes") / 1048576 )) MiB of $limit, limit hit $(cat "$CG/memory.failcnt") times (reclaim), serve alive: every answer above came from within the limit"
fi
kill -TERM "$spid"; wait "$spid" || true
pids=()

# 4. verify against sha256sum of the segments, alternating, same run.
[ -z "${KAUDIT_BENCH_NO_VERIFY:-}" ] || exit 0
raw=${raw:-0}
sync
for run in 1 2; do
  b0=$(date +%s.%N); cat "$D"/segments/* | sha256sum >/dev/null; b1=$(date +%s.%N)
  v0=$(date +%s.%N); "$K" verify --data "$D" >"$W/verify.txt" 2>&1 || { cat "$W/verify.txt" >&2; exit 1; }; v1=$(date +%s.%N)
  say "verify run $run: $(python3 -c "print(f'{$v1-$v0:.1f} s = {$raw/($v1-$v0)/1e9:.2f} GB/s of raw event bytes')") (target >= 1); baseline sha256sum of the segments $(python3 -c "print(f'{$b1-$b0:.1f} s = {$seg/($b1-$b0)/1e9:.2f} GB/s of stored bytes, {$raw/($b1-$b0)/1e9:.2f} GB/s raw-equivalent')")"
done
