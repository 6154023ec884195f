#!/usr/bin/env bash
# ClickHouse scale-out benchmark (issue #17), in one run against one
# clickhouse-server (Debian's 18.16) that this script starts unprivileged on
# loopback with its own config and data dir, as the tests do:
#  (a) shipping: 1, 2 and 4 `kaudit serve` nodes (store.clickhouse, detection
#      off) each holding its share of the same EVENTS (imported first), started
#      together; timed until ClickHouse holds every row. Aggregate events/s,
#      CPU per event of the shipper threads (/proc/<pid>/task/*, thread
#      "f-clickhouse"), of the whole kaudit processes (shipper + indexer) and of
#      clickhouse-server. Baseline in the same run: clickhouse-client
#      `INSERT ... FORMAT JSONEachRow` of the same event files into a plain
#      MergeTree table of a few typed columns; the ratio is printed.
#  (b) the search benchmark's questions (user+verb and auditID needles, top-10
#      users, a resource's 1-minute histogram, object history) over kaudit's
#      HTTP API, from ClickHouse (store.clickhouse) vs from the embedded index
#      over the same events, warm, each run with a distinct parameter,
#      alternating the two (bench/clickhouse_search.py);
#  (c) bytes on disk per event: system.parts bytes_on_disk vs the embedded
#      store's data directory (segments, tree, index).
# usage: bench/clickhouse.sh [EVENTS]    (default 1000000; the issue asks 10M)
# QUESTIONS_ONLY=1: skip the clickhouse-client baseline and the 2- and 4-node
# shipping runs (the 1-node run still loads ClickHouse for (b)); for
# re-measuring the questions after a query change.
# Needs: apt-get install clickhouse-server clickhouse-client curl python3
set -euo pipefail
cd "$(dirname "$0")/.."
N="${1:-1000000}"
PARTS=4
PER=$((N / PARTS))
N=$((PER * PARTS))
for t in /usr/sbin/clickhouse-server clickhouse-client curl python3; do
  command -v "$t" >/dev/null || { echo "missing $t: apt-get install clickhouse-server clickhouse-client curl python3" >&2; exit 1; }
done
if [ -z "${KAUDIT_BENCH_NO_BUILD:-}" ]; then cargo build --release --locked -p kaudit; fi
K="$PWD/${CARGO_TARGET_DIR:-target}/release/kaudit"
[ -x "$K" ] || K="$PWD/target/release/kaudit"
W="${BENCH_DIR:-/tmp/kaudit-ch-bench}"
rm -rf "$W"; mkdir -p "$W"
mkdir -p bench/out
OUT=bench/out/clickhouse.txt
: >"$OUT"
say() { echo "$*" | tee -a "$OUT"; }
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  [ -n "${KEEP:-}" ] || rm -rf "$W"
}
trap cleanup EXIT
port() { python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])'; }
HZ=$(getconf CLK_TCK)
# CPU seconds (user+system) of a process, or of its threads named $2.
cpu() {
  if [ -n "${2:-}" ]; then
    local t=0
    for d in /proc/$1/task/*; do
      [ "$(cat "$d/comm" 2>/dev/null)" = "$2" ] || continue
      t=$((t + $(awk '{print $14+$15}' "$d/stat")))
    done
    python3 -c "print($t/$HZ)"
  else
    python3 -c "print($(awk '{print $14+$15}' /proc/$1/stat)/$HZ)"
  fi
}

# --- clickhouse-server -------------------------------------------------------
CH="$W/ch"; mkdir -p "$CH/data"
CHP=$(port); CHT=$(port); CHI=$(port)
cat >"$CH/config.xml" <<EOF
<?xml version="1.0"?>
<yandex>
  <logger><level>warning</level><log>$CH/server.log</log><errorlog>$CH/err.log</errorlog><console>0</console></logger>
  <listen_host>127.0.0.1</listen_host>
  <http_port>$CHP</http_port><tcp_port>$CHT</tcp_port><interserver_http_port>$CHI</interserver_http_port>
  <path>$CH/data/</path><tmp_path>$CH/data/tmp/</tmp_path>
  <user_files_path>$CH/data/user_files/</user_files_path><format_schema_path>$CH/data/format_schemas/</format_schema_path>
  <mark_cache_size>536870912</mark_cache_size><uncompressed_cache_size>0</uncompressed_cache_size>
  <max_concurrent_queries>50</max_concurrent_queries>
  <users_config>$CH/users.xml</users_config><default_profile>default</default_profile><default_database>default</default_database>
  <mlock_executable>false</mlock_executable>
</yandex>
EOF
cat >"$CH/users.xml" <<'EOF'
<?xml version="1.0"?>
<yandex>
  <profiles><default><max_memory_usage>4000000000</max_memory_usage></default></profiles>
  <users><default><password></password><networks><ip>127.0.0.1</ip><ip>::1</ip></networks><profile>default</profile><quota>default</quota></default></users>
  <quotas><default></default></quotas>
</yandex>
EOF
/usr/sbin/clickhouse-server --config-file="$CH/config.xml" </dev/null >/dev/null 2>&1 &
CHPID=$!; pids+=("$CHPID")
for _ in $(seq 600); do curl -sf "http://127.0.0.1:$CHP/ping" >/dev/null && break; sleep 0.1; done
curl -sf "http://127.0.0.1:$CHP/ping" >/dev/null || { echo "clickhouse-server did not start:"; tail "$CH/err.log"; exit 1; }
chq() { curl -sf "http://127.0.0.1:$CHP/" --data-binary "$1"; }
say "== ClickHouse scale-out bench: $N events ($PARTS files of $PER), clickhouse-server $(chq 'SELECT version()'), $(nproc) cores, loaded"

# --- the events: PARTS files, one cluster each --------------------------------
for i in $(seq $PARTS); do
  "$K" gen --events "$PER" --seed "$i" -o "$W/part$i.jsonl"
done
say "events: $(du -cb "$W"/part*.jsonl | tail -1 | cut -f1) bytes of JSON lines"

# --- (a) baseline: clickhouse-client INSERT FORMAT JSONEachRow ----------------
BASE=0
if [ -z "${QUESTIONS_ONLY:-}" ]; then
chq "CREATE DATABASE IF NOT EXISTS base"
chq "CREATE TABLE base.raw (auditID String, stage String, level String, verb String, requestURI String, userAgent String, stageTimestamp String, requestReceivedTimestamp String) ENGINE = MergeTree ORDER BY stageTimestamp"
c0=$(cpu "$CHPID")
t0=$(date +%s.%N)
bcpu=0
for i in $(seq $PARTS); do
  /usr/bin/time -f '%U %S' -o "$W/time$i" clickhouse-client --port "$CHT" \
    --input_format_skip_unknown_fields=1 --max_insert_block_size=100000 \
    --query "INSERT INTO base.raw FORMAT JSONEachRow" <"$W/part$i.jsonl"
  bcpu=$(python3 -c "a,b=open('$W/time$i').read().split()[-2:];print($bcpu+float(a)+float(b))")
done
t1=$(date +%s.%N)
c1=$(cpu "$CHPID")
[ "$(chq 'SELECT count() FROM base.raw')" = "$N" ] || { echo "baseline holds $(chq 'SELECT count() FROM base.raw') rows, want $N" >&2; exit 1; }
BASE=$(python3 -c "print(round($N/($t1-$t0)))")
say "baseline clickhouse-client JSONEachRow (8 typed columns, unknown fields skipped): $BASE events/s; client CPU $(python3 -c "print(f'{$bcpu*1e6/$N:.1f}')") us/event, server CPU $(python3 -c "print(f'{($c1-$c0)*1e6/$N:.1f}')") us/event"
fi
NODE_RUNS="1 2 4"
[ -z "${QUESTIONS_ONLY:-}" ] || NODE_RUNS=1

# --- (a) kaudit nodes shipping ------------------------------------------------
serve_cfg() { # node data port prefix(empty: no clickhouse)
  {
    echo "data: $2"
    echo "listen: 127.0.0.1:$3"
    echo "detect: {enabled: false}"
    echo "ingest: {min_free_disk: 0}"
    echo "query: {timeout: 120s}"
    if [ -n "$4" ]; then
      echo "store:"
      echo "  clickhouse: {url: 'http://127.0.0.1:$CHP', table_prefix: $4, node_id: $1, node: node$1, batch_events: 50000}"
    fi
  } >"$2.yaml"
}
for nodes in $NODE_RUNS; do
  per_node=$((PARTS / nodes))
  prefix="n${nodes}_"
  npids=(); nports=()
  for n in $(seq "$nodes"); do
    d="$W/n$nodes/node$n"
    for j in $(seq $(((n - 1) * per_node + 1)) $((n * per_node))); do
      "$K" import --data "$d" --cluster "c$j" "$W/part$j.jsonl" >/dev/null 2>&1
    done
    p=$(port); nports+=("$p")
    serve_cfg "$n" "$d" "$p" "$prefix"
  done
  c0=$(cpu "$CHPID")
  t0=$(date +%s.%N)
  for n in $(seq "$nodes"); do
    d="$W/n$nodes/node$n"
    "$K" serve --config "$d.yaml" 2>"$d.log" &
    npids+=("$!"); pids+=("$!")
  done
  got=0
  for _ in $(seq 36000); do
    got=$(chq "SELECT count() FROM kaudit.${prefix}events" 2>/dev/null || echo 0)
    [ "$got" -ge "$N" ] && break
    sleep 0.05
  done
  t1=$(date +%s.%N)
  c1=$(cpu "$CHPID")
  ship=0; proc=0
  for p in "${npids[@]}"; do
    ship=$(python3 -c "print($ship+$(cpu "$p" f-clickhouse))")
    proc=$(python3 -c "print($proc+$(cpu "$p"))")
  done
  rss=$(ps -o rss= -p "$CHPID")
  rate=$(python3 -c "print(round($N/($t1-$t0)))")
  say "$nodes node(s): $N events in $(python3 -c "print(f'{$t1-$t0:.1f}')") s = $rate events/s aggregate ($(python3 -c "print(round($rate/$nodes))") per node); shipper CPU $(python3 -c "print(f'{$ship*1e6/$N:.1f}')") us/event, kaudit processes (shipper+indexer) $(python3 -c "print(f'{$proc*1e6/$N:.1f}')") us/event, clickhouse-server $(python3 -c "print(f'{($c1-$c0)*1e6/$N:.1f}')") us/event, RSS $((rss / 1024)) MiB; kaudit/baseline = $(python3 -c "print(f'{$rate/$BASE:.2f}' if $BASE else 'not measured')")"
  [ "$got" -ge "$N" ] || { echo "only $got of $N rows arrived" >&2; exit 1; }
  if [ "$nodes" = 1 ]; then
    # Keep node 1 serving: it answers (b) from ClickHouse.
    CHNODE_PORT=${nports[0]}
  else
    for p in "${npids[@]}"; do kill -TERM "$p"; wait "$p" || true; done
    rm -rf "$W/n$nodes"
  fi
done

# --- (b) search: ClickHouse vs embedded over the same events -------------------
# The embedded side: the same event files imported into a store served
# without store.clickhouse (node 1 of the 1-node run answers from ClickHouse).
for j in $(seq $PARTS); do
  "$K" import --data "$W/emb" --cluster "c$j" "$W/part$j.jsonl" >/dev/null 2>&1
done
EP=$(port)
serve_cfg 1 "$W/emb" "$EP" ""
"$K" serve --config "$W/emb.yaml" 2>"$W/emb.log" &
pids+=("$!")
for _ in $(seq 600); do curl -sf "http://127.0.0.1:$EP/readyz" >/dev/null && break; sleep 0.1; done
python3 bench/clickhouse_search.py "http://127.0.0.1:$CHNODE_PORT" "http://127.0.0.1:$EP" "$N" "${RUNS:-15}" | tee -a "$OUT"

# --- (c) bytes per event ------------------------------------------------------
chq "OPTIMIZE TABLE kaudit.n1_events FINAL" || true
chbytes=$(chq "SELECT sum(bytes_on_disk) FROM system.parts WHERE database = 'kaudit' AND table = 'n1_events' AND active")
rawbytes=$(du -cb "$W"/part*.jsonl | tail -1 | cut -f1)
seg=$(du -sb "$W/emb/segments" | cut -f1)
all=$(du -sb "$W/emb" | cut -f1)
say "on disk per event: ClickHouse $(python3 -c "print(f'{$chbytes/$N:.0f}')") B (system.parts bytes_on_disk after OPTIMIZE FINAL); embedded segments $(python3 -c "print(f'{$seg/$N:.0f}')") B, whole data dir (segments, tree, index, checkpoints) $(python3 -c "print(f'{$all/$N:.0f}')") B; the JSON lines $(python3 -c "print(f'{$rawbytes/$N:.0f}')") B"
rss=$(ps -o rss= -p "$CHPID")
say "clickhouse-server RSS at the end: $((rss / 1024)) MiB"
