#!/usr/bin/env bash
# The test command: installs what the tests need on a fresh Debian machine,
# then runs formatting and lint checks, every unit, property, integration and
# conformance test of the workspace. Used by .ci/run and by developers alike.
set -euo pipefail
cd "$(dirname "$0")/.."

# --- conformance data: must be there, never silently skipped ---------------
export KAUDIT_CONFORMANCE="${KAUDIT_CONFORMANCE:-$(cd .. && pwd)/shared/conformance}"
if [ ! -f "$KAUDIT_CONFORMANCE/README.md" ]; then
  echo "FATAL: conformance data not found at $KAUDIT_CONFORMANCE (expected ../shared/conformance)" >&2
  exit 1
fi

# --- system packages the tests use -----------------------------------------
need=()
for pkg_cmd in jq:jq zstd:zstd gzip:gzip rsyslog:rsyslogd nats-server:nats-server chromium:chromium nodejs:node npm:npm \
    docker.io:dockerd busybox-static:busybox docker-registry:docker-registry \
    clickhouse-server:clickhouse-server zookeeper:/usr/share/zookeeper/bin/zkServer.sh; do
  cmd=${pkg_cmd#*:}; pkg=${pkg_cmd%%:*}
  command -v "$cmd" >/dev/null 2>&1 || need+=("$pkg")
done
python3 -c 'import ensurepip' >/dev/null 2>&1 || need+=(python3-venv)
if [ ${#need[@]} -gt 0 ]; then
  echo "installing: ${need[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq && apt-get install -y -qq "${need[@]}" >/dev/null
fi

# --- chdb (current ClickHouse in-process) for the SQL dialect test -----------
# kaudit-clickhouse's dialect test runs the same DDL and generated queries on
# Debian's clickhouse-server 18.16 and on chdb; it fails (no skip) without it.
# Not KAUDIT_*: the server reads every KAUDIT_* variable as a config override.
export CHDB_PYTHON="${CHDB_PYTHON:-$PWD/target/chdb-venv/bin/python}"
if ! "$CHDB_PYTHON" -c 'import chdb' >/dev/null 2>&1; then
  echo "installing chdb into target/chdb-venv"
  python3 -m venv target/chdb-venv
  target/chdb-venv/bin/pip install -q chdb
fi

# --- rust checks -------------------------------------------------------------
export CARGO_TERM_COLOR=never
echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy -D warnings"
cargo clippy --workspace --all-targets --locked -- -D warnings
echo "== cargo test (workspace: unit, property, integration, conformance)"
cargo test --workspace --locked --no-fail-fast 2>&1 | tee target/test-output.txt

# --- fuzzing: every target in fuzz/fuzz_targets for a bounded time ------------
echo "== fuzz (scripts/fuzz.sh: every target, ${KAUDIT_FUZZ_SECONDS:-30}s each)"
if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "installing cargo-fuzz"
  cargo install cargo-fuzz --locked
fi
fuzz_rc=0
scripts/fuzz.sh "${KAUDIT_FUZZ_SECONDS:-30}" || fuzz_rc=$?

# --- web console end to end: headless Chromium against `kaudit serve` --------
echo "== e2e (web console in headless Chromium)"
# `cargo test` above built target/debug/kaudit for the CLI's integration tests,
# with the workspace's features; building it again with `-p kaudit` alone
# would compile every crate a second time under other features.
[ -x target/debug/kaudit ] || cargo build --locked --workspace --bins
npm ci --prefix e2e --no-audit --no-fund --loglevel=error
e2e_rc=0
node e2e/run.mjs --bin target/debug/kaudit 2>&1 | tee target/e2e-output.txt || e2e_rc=$?
grep -q '^e2e: ' target/e2e-output.txt || { echo "e2e: 0 passed, 1 failed" >> target/e2e-output.txt; e2e_rc=1; }

# One plain summary line over every test binary and the e2e run.
awk '/^test result:/ { p += $4; f += $6 } /^e2e: / { p += $2; f += $4 } END { printf "kaudit: %d passed, %d failed\n", p, f }' \
  target/test-output.txt target/e2e-output.txt
if [ "$fuzz_rc" -ne 0 ]; then
  echo "FUZZ FAILED (exit $fuzz_rc): see fuzz/artifacts/" >&2
  exit "$fuzz_rc"
fi
exit "$e2e_rc"
