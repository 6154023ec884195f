#!/usr/bin/env bash
# Compliance report benchmark: a month report (`kaudit report --period`) over
# N generated events spread over that month, against a same-run baseline
# that answers less: one jq pass over the JSON lines counting the same kinds
# of events the pci-dss sections count (secrets, RBAC changes, exec/attach/
# port-forward, denied). Prints both and the ratio.
# Nothing big is kept but the store: the events are streamed from
# `kaudit gen` into `kaudit import -`, and the baseline reads them from the
# same generator through a pipe (so its time includes generating them:
# `gen` alone is printed for reference).
# usage: bench/report.sh [EVENTS]   (default 1000000; the target is 10M in <= 10 s)
# env: KAUDIT_BENCH_RUNS (report runs, default 5), KAUDIT_BENCH_BASELINE_RUNS
#      (jq runs, default the same; 0 skips it: ~1 min per 1M events).
# Needs: jq, hyperfine (else a plain timed run). Release build.
set -euo pipefail
cd "$(dirname "$0")/.."
N="${1:-1000000}"
MONTH="${KAUDIT_BENCH_MONTH:-2026-11}"
RUNS="${KAUDIT_BENCH_RUNS:-5}"
BRUNS="${KAUDIT_BENCH_BASELINE_RUNS:-$RUNS}"
OUT=bench/out/report-$N
BIN=./target/release/kaudit
mkdir -p "$OUT"
cargo build --release --locked -p kaudit >/dev/null
data=$OUT/data
# N events evenly over the month (30 days), two clusters, incidents injected.
rate=$(awk -v n="$N" 'BEGIN { printf "%.6f", n / (30 * 86400) }')
gen=("$BIN" gen --events "$N" --seed 20 --clusters 2 --start "$MONTH-01T00:00:00Z" --rate "$rate")
if [ ! -d "$data" ]; then
  echo "== gen $N events over $MONTH (rate $rate/s) | import -"
  s=$(date +%s.%N)
  "${gen[@]}" | "$BIN" import --data "$data" --cluster bench - >/dev/null
  echo "   gen | import: $(echo "$(date +%s.%N) - $s" | bc) s"
  # The search index is built once (as a running server keeps it current);
  # the report then reads it, as it would on a live deployment.
  echo "== index (first report, not measured)"
  /usr/bin/time -f "   index + first report: %e s" "$BIN" report --data "$data" --period "$MONTH" \
    --template pci-dss --no-verify -o json --out /dev/null
fi
du -sh "$data" | sed 's/^/   /'

report=("$BIN" report --data "$data" --period "$MONTH" --template pci-dss -o json --out /dev/null)
bundle=("$BIN" report --data "$data" --period "$MONTH" --template pci-dss -o bundle --out "$OUT/evidence.tar.zst")
# One jq pass counting what the sections count (no proofs, no rows, no checkpoint).
jqprog='reduce inputs as $e ({s:0,r:0,x:0,d:0};
  ($e.objectRef.resource // "") as $res | ($e.objectRef.subresource // "") as $sub |
  .s += (if $res == "secrets" then 1 else 0 end) |
  .r += (if ($res | test("^(cluster)?role(binding)?s$")) and ($e.verb | test("create|update|patch|delete")) then 1 else 0 end) |
  .x += (if ($sub | test("^(exec|attach|portforward)$")) then 1 else 0 end) |
  .d += (if ($e.annotations["authorization.k8s.io/decision"] // "") == "forbid" then 1 else 0 end))'
printf '%s\n' '#!/usr/bin/env bash' 'set -o pipefail' \
  "${gen[*]@Q} | jq -n -c ${jqprog@Q}" >"$OUT/baseline.sh"
printf '%s\n' '#!/usr/bin/env bash' "${gen[*]@Q} >/dev/null" >"$OUT/gen.sh"
chmod +x "$OUT/baseline.sh" "$OUT/gen.sh"

if command -v hyperfine >/dev/null; then
  hyperfine --warmup 1 --runs "$RUNS" --export-json "$OUT/hyperfine.json" \
    -n "report --no-verify (json)" "${report[*]} --no-verify" \
    -n "report with full store verification (json)" "${report[*]}" \
    -n "report bundle --no-verify" "${bundle[*]} --no-verify" | tee "$OUT/hyperfine.txt"
  if [ "$BRUNS" -gt 0 ]; then
    hyperfine --runs "$BRUNS" --export-json "$OUT/baseline.json" \
      -n "baseline: gen | jq one pass counting 4 sections" "$OUT/baseline.sh" \
      -n "gen alone (part of the baseline)" "$OUT/gen.sh" | tee -a "$OUT/hyperfine.txt"
    jq -r -s '(.[1].results[] | select(.command | startswith("baseline")) | .mean) as $b |
      .[0].results[] | "\(.command): mean \(.mean * 1000 | round) ms, \(($b / .mean) * 100 | round / 100)x faster than the baseline"' \
      "$OUT/hyperfine.json" "$OUT/baseline.json"
  fi
else
  t() { local s e; s=$(date +%s.%N); "$@" >/dev/null; e=$(date +%s.%N); echo "$e - $s" | bc; }
  r=$(t "${report[@]}" --no-verify); v=$(t "${report[@]}")
  b=0; [ "$BRUNS" -gt 0 ] && b=$(t "$OUT/baseline.sh")
  echo "report --no-verify: ${r}s; with verification: ${v}s; gen | jq baseline: ${b}s; ratio $(echo "$b / $r" | bc -l | cut -c1-5)x"
fi
"$BIN" report verify "$OUT/evidence.tar.zst" | sed -n 1p
