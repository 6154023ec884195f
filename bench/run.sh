#!/usr/bin/env bash
# Benchmark runner: each area's benchmark compares against a baseline in the
# same run and prints the ratio. Results and the commands go into BENCHMARKS.md.
#   bench/run.sh parse   # Event::from_json vs serde_json::Value (criterion)
#   bench/run.sh gen     # bench/gen.sh: kaudit gen vs cat / gzip, fast path vs EventDoc
#   bench/run.sh policy  # GCE policy compiled vs naive evaluator (criterion)
#   bench/run.sh store   # bench/store/run.sh: import, size vs zstd/gzip, verify vs sha256sum
#   bench/run.sh import  # bench/import.sh: import + index vs zstd -3, vs import then reindex
#   bench/run.sh rules   # full k8s_audit_rules.yaml vs a naive interpreter (criterion)
#   bench/run.sh serve   # bench/serve.sh: webhook load over loopback vs import
#   bench/run.sh search  # bench/search.sh: index vs jq, ripgrep, ClickHouse (chdb)
#   bench/run.sh sinks   # bench/sinks.sh: webhook sink forwarding vs a naive re-encoding forwarder
#   bench/run.sh ui      # bench/ui.sh: console pages in headless Chromium over 10M events vs API floor, 1M store
#   bench/run.sh report  # bench/report.sh: a month compliance report vs one jq pass counting the same sections
#   bench/run.sh clickhouse # bench/clickhouse.sh: 1/2/4 nodes shipping vs clickhouse-client JSONEachRow; queries CH vs embedded; bytes/event
#   bench/run.sh api_chdb # bench/api_chdb.sh: the nine questions of #21 goal 3 through the HTTP API vs chdb, bytes on disk
#   bench/run.sh all
# Benchmarks are not part of CI (scripts/test.sh); they need a quiet machine.
set -euo pipefail
cd "$(dirname "$0")/.."
what="${1:-all}"
N="${KAUDIT_BENCH_N:-200000}"
mkdir -p bench/out
run() { [ "$what" = all ] || [ "$what" = "$1" ]; }

if run parse; then
  cargo build --release --locked -p kaudit
  events=bench/out/events-$N.jsonl
  [ -s "$events" ] || ./target/release/kaudit gen --events "$N" --seed 1 -o "$events"
  echo "== parse: kaudit Event::from_json vs serde_json::Value"
  KAUDIT_BENCH_EVENTS="$PWD/$events" cargo bench --locked -p kaudit-event --bench parse -- --noplot 2>&1 \
    | grep -E '^parse|time:|thrpt:' | tee bench/out/parse.txt
fi
run gen && bash bench/gen.sh "${KAUDIT_BENCH_N:-1000000}"
run policy && cargo bench --locked -p kaudit-policy --bench policy
run store && bash bench/store/run.sh "${KAUDIT_BENCH_N:-1000000}"
run import && bash bench/import.sh "${KAUDIT_BENCH_N:-1000000}"
run rules && cargo bench --locked -p kaudit-rules --bench engine
run serve && bash bench/serve.sh "$N"
run search && bash bench/search.sh "${KAUDIT_BENCH_N:-1000000}"
run sinks && bash bench/sinks.sh "${KAUDIT_BENCH_N:-1000000}"
run ui && bash bench/ui.sh
run report && bash bench/report.sh "${KAUDIT_BENCH_N:-1000000}"
run clickhouse && bash bench/clickhouse.sh "${KAUDIT_BENCH_N:-1000000}"
run api_chdb && bash bench/api_chdb.sh "${KAUDIT_BENCH_N:-1000000}"
exit 0
