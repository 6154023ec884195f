#!/usr/bin/env bash
# Issue #21 goal 3: the nine questions through kaudit's HTTP API vs ClickHouse
# (chdb 26.x, in-process), same events, same run, warm, a distinct parameter
# per run, alternating (bench/api_chdb.py), plus bytes on disk of each.
#   N events from `kaudit gen --seed 1` -> `kaudit import` (indexes) ->
#   `kaudit serve` (release, 127.0.0.1, detection off) ; the same JSON lines
#   into chdb (typed LowCardinality columns + raw JSON under ZSTD(3), skip
#   indexes, OPTIMIZE FINAL, query cache off).
# usage: bench/api_chdb.sh [EVENTS] (default 1000000)
# Env: CHDB_PY (python with chdb; default /tmp/chdb-venv/bin/python:
#   python3 -m venv /tmp/chdb-venv && /tmp/chdb-venv/bin/pip install chdb),
#   BENCH_DIR (default /tmp/kaudit-api-bench), RUNS (default 21),
#   KEEP=1 keeps the store, chdb dir and events for another run (REUSE=1 reuses them;
#   remove the store dir first to re-import the same events with another binary),
#   KAUDIT_BENCH_NO_BUILD=1 skips the cargo build, ONLY=1,2 runs only those questions.
set -euo pipefail
cd "$(dirname "$0")/.."
N="${1:-1000000}"
PY="${CHDB_PY:-/tmp/chdb-venv/bin/python}"
"$PY" -c 'import chdb' 2>/dev/null || { echo "no chdb in $PY: python3 -m venv /tmp/chdb-venv && /tmp/chdb-venv/bin/pip install chdb" >&2; exit 1; }
if [ -z "${KAUDIT_BENCH_NO_BUILD:-}" ]; then cargo build --release --locked -p kaudit; fi
K="$PWD/${CARGO_TARGET_DIR:-target}/release/kaudit"
[ -x "$K" ] || K="$PWD/target/release/kaudit"
W="${BENCH_DIR:-/tmp/kaudit-api-bench}"
E="$W/events-$N.jsonl"; D="$W/store-$N"; C="$W/chdb-$N"
if [ -z "${REUSE:-}" ]; then
  rm -rf "$W"; mkdir -p "$W"
  "$K" gen --events "$N" --seed 1 -o "$E"
  t=$(date +%s.%N)
  "$K" import --data "$D" "$E" >/dev/null
  echo "  kaudit import (indexes): $(python3 -c "print(f'{$(date +%s.%N) - $t:.1f}')")s"
elif [ ! -d "$D" ]; then
  # REUSE=1 with the store removed: the same events and chdb table, a fresh import (another binary).
  t=$(date +%s.%N)
  "$K" import --data "$D" "$E" >/dev/null
  echo "  kaudit import (indexes): $(python3 -c "print(f'{$(date +%s.%N) - $t:.1f}')")s"
fi
pid=""
cleanup() {
  [ -n "$pid" ] && { kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; }
  [ -n "${KEEP:-}" ] || rm -rf "$W"
}
trap cleanup EXIT
P=$(python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])')
printf 'data: %s\nlisten: 127.0.0.1:%s\ndetect: {enabled: false}\ningest: {min_free_disk: 0}\nquery: {timeout: 120s}\n' "$D" "$P" >"$W/serve.yaml"
"$K" serve --config "$W/serve.yaml" 2>"$W/serve.log" &
pid=$!
for _ in $(seq 600); do curl -sf "http://127.0.0.1:$P/readyz" >/dev/null && break; sleep 0.1; done
echo "== questions through the HTTP API vs ClickHouse (chdb $("$PY" -c 'import chdb;print(chdb.__version__, "engine", chdb.engine_version)')), $N events, loaded machine"
mkdir -p bench/out
"$PY" bench/api_chdb.py "http://127.0.0.1:$P" "$E" "$C" "$D" "${RUNS:-21}" | tee "bench/out/api_chdb-$N.txt"
