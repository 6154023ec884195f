#!/usr/bin/env bash
# The main job: build kaudit and run `kaudit serve` on the embedded store with
# demo traffic, UI and API on 127.0.0.1:8080. Extra arguments go to `serve`.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --locked -p kaudit
exec ./target/release/kaudit serve --demo --data "${KAUDIT_DATA:-./kaudit-data}" --listen 127.0.0.1:8080 "$@"
