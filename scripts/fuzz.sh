#!/usr/bin/env bash
# Builds the fuzz workspace (fuzz/) once, then runs EVERY target in
# fuzz/fuzz_targets for SECONDS each (default 30), KAUDIT_FUZZ_JOBS at a time
# (default: the number of cores, so ten targets take five 30 s rounds on 2).
# Seeds come from ../shared/conformance where a target reads that kind of
# input, and from fuzz/seeds/<target>/ when that folder exists; what a run
# finds is kept in fuzz/corpus/<target>/ (git-ignored) for the next run.
# A crash, a panic, a leak, a timeout or an out-of-memory in any target fails
# the script (exit 1) after all targets ran, naming each failing target and
# its reproducer under fuzz/artifacts/<target>/.
#
#   scripts/fuzz.sh          # 30 s per target
#   scripts/fuzz.sh 300      # longer, before a release
set -euo pipefail
cd "$(dirname "$0")/.."

secs="${1:-30}"
case "$secs" in
  ''|*[!0-9]*) echo "usage: scripts/fuzz.sh [SECONDS per target]" >&2; exit 2 ;;
esac
conf="${KAUDIT_CONFORMANCE:-$(cd .. && pwd)/shared/conformance}"

if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "FATAL: cargo-fuzz is not installed (cargo install cargo-fuzz --locked)" >&2
  exit 1
fi
# cargo-fuzz needs nightly flags (-Z sanitizer); the stable toolchain takes
# them with RUSTC_BOOTSTRAP.
export RUSTC_BOOTSTRAP=1

targets=()
for f in fuzz/fuzz_targets/*.rs; do
  targets+=("$(basename "$f" .rs)")
done
if [ ${#targets[@]} -eq 0 ]; then
  echo "FATAL: no fuzz targets in fuzz/fuzz_targets" >&2
  exit 1
fi

echo "== fuzz: building ${#targets[@]} targets (${targets[*]})"
cargo fuzz build --fuzz-dir fuzz

# Seed folders for a target: conformance data where it is that target's input.
seeds_for() {
  case "$1" in
    event_reader|batch_paths|record*|segment*) echo "$conf/k8s/examples $conf/falco/traces" ;;
    policy*) echo "$conf/k8s/policies $conf/falco/k8saudit_audit-policy.yaml" ;;
    falco*) echo "$conf/falco/k8s_audit_rules.yaml $conf/falco/k8s_audit_rules_gke.yaml $conf/falco/traces/rules" ;;
    sigma*) echo "$conf/sigma" ;;
    *) echo "" ;;
  esac
}

run_one() {
  local t="$1" corpus="fuzz/corpus/$1" artifacts="fuzz/artifacts/$1"
  mkdir -p "$corpus" "$artifacts"
  # libFuzzer takes folders: copy single seed files into a folder of their own.
  local seed_dirs=() seed_tmp="fuzz/corpus/.seeds-$t"
  rm -rf "$seed_tmp"
  for s in $(seeds_for "$t") "fuzz/seeds/$t"; do
    if [ -d "$s" ]; then
      seed_dirs+=("$s")
    elif [ -f "$s" ]; then
      mkdir -p "$seed_tmp" && cp "$s" "$seed_tmp/"
    fi
  done
  [ -d "$seed_tmp" ] && seed_dirs+=("$seed_tmp")
  echo "== fuzz: $t for ${secs}s (seeds: ${seed_dirs[*]:-none})"
  local rc=0
  cargo fuzz run --fuzz-dir fuzz "$t" "$corpus" "${seed_dirs[@]}" -- \
    -max_total_time="$secs" -timeout=60 -rss_limit_mb=2048 -max_len=262144 \
    -artifact_prefix="$artifacts/" -print_final_stats=1 \
    >"fuzz/artifacts/$t.log" 2>&1 || rc=$?
  echo "$rc" >"fuzz/artifacts/$t.rc"
  rm -rf "$seed_tmp"
}

jobs_max="${KAUDIT_FUZZ_JOBS:-$(nproc)}"
for t in "${targets[@]}"; do
  while [ "$(jobs -rp | wc -l)" -ge "$jobs_max" ]; do wait -n || true; done
  run_one "$t" &
done
wait

failed=()
for t in "${targets[@]}"; do
  rc=$(cat "fuzz/artifacts/$t.rc" 2>/dev/null || echo 99)
  echo "-- $t: $(tail -n 12 "fuzz/artifacts/$t.log" | grep -E 'stat::number_of_executed_units|Done [0-9]+ runs' | head -n 1)"
  if [ "$rc" -ne 0 ]; then
    echo "!! fuzz: $t FAILED (exit $rc); log: fuzz/artifacts/$t.log" >&2
    grep -E 'ERROR|panicked|SUMMARY|Test unit written to' "fuzz/artifacts/$t.log" | head -n 20 >&2 || true
    failed+=("$t")
  fi
done

if [ ${#failed[@]} -gt 0 ]; then
  echo "FUZZ FAILED: ${failed[*]} (reproduce: RUSTC_BOOTSTRAP=1 cargo fuzz run <target> fuzz/artifacts/<target>/<file>)" >&2
  exit 1
fi
echo "fuzz: ${#targets[@]} targets, ${secs}s each, no crash"
