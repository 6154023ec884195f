#!/usr/bin/env bash
# UI benchmark: every console page opened in headless Chromium over a store of
# N events (default 10M, as made by bench/search.sh), timed until usable;
# baselines: the API floor (same requests, no browser) and a 1M-event store.
#   bash bench/ui.sh [N] [BASELINE_N]
set -euo pipefail
cd "$(dirname "$0")/.."
N="${1:-10000000}"
B="${2:-1000000}"
BENCH_DIR="${BENCH_DIR:-/tmp/kaudit-search-bench}"
for n in "$N" "$B"; do
  if [ ! -d "$BENCH_DIR/store-$n" ]; then
    echo "building the $n-event store with bench/search.sh $n"
    bash bench/search.sh "$n"
  fi
done
command -v chromium >/dev/null || { echo "needs Debian's chromium (apt-get install chromium)" >&2; exit 1; }
cargo build --release --locked -p kaudit
npm ci --prefix e2e --no-audit --no-fund --loglevel=error
mkdir -p bench/out
node bench/ui.mjs --bin target/release/kaudit --store "$BENCH_DIR/store-$N" \
  --baseline-store "$BENCH_DIR/store-$B" --runs "${KAUDIT_UI_RUNS:-5}" | tee bench/out/ui.txt
