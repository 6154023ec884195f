#!/usr/bin/env bash
# User activity benchmark: sessions and RBAC from usage answered from the index
# columns vs reading every one of the user's events, in one run.
# usage: bench/user_activity.sh [EVENTS]   (default 1000000)
set -euo pipefail
cd "$(dirname "$0")/.."
export BENCH_EVENTS="${1:-1000000}"
cargo bench -p kaudit-index --bench user_activity
