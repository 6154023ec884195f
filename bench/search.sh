#!/usr/bin/env bash
# Search benchmark: kaudit's index vs jq and ripgrep over the same JSON lines,
# and vs ClickHouse (chdb) for stats, in one run. Needs: apt-get install jq
# ripgrep; pip install chdb (optional, for the ClickHouse lines).
# usage: bench/search.sh [EVENTS]   (default 1000000; the issue's target is 10000000)
set -euo pipefail
cd "$(dirname "$0")/.."
N="${1:-1000000}"
for t in jq rg; do command -v "$t" >/dev/null || { echo "missing $t: apt-get install jq ripgrep" >&2; exit 1; }; done
export BENCH_EVENTS="$N"
export BENCH_DIR="${BENCH_DIR:-/tmp/kaudit-search-bench}"
cargo bench -p kaudit-index --bench search
# End to end through the CLI (includes opening the store read-only).
cargo build --release -p kaudit >/dev/null 2>&1
K=target/release/kaudit
D="$BENCH_DIR/store-$N"
if command -v hyperfine >/dev/null; then
  hyperfine -w 1 -r 5 -N \
    "$K query --data $D -o jsonl --limit 100 verb=delete" \
    "$K stats --data $D --by user --top 10"
fi
