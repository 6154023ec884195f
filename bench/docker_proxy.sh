#!/usr/bin/env bash
# p50/p99 of `GET /containers/json` against dockerd's socket directly and
# through kaudit's auditing proxy (recording every call into a spool), same
# run, interleaved. Starts its own dockerd (root; Debian's docker.io) unless
# DOCKER_SOCK names a running one.
#
#   bench/docker_proxy.sh            # 5000 requests per path
#   REQUESTS=20000 bench/docker_proxy.sh
set -euo pipefail
cd "$(dirname "$0")/.."
requests="${REQUESTS:-5000}"
sock="${DOCKER_SOCK:-}"
tmp=""
if [ -z "$sock" ]; then
  tmp="$(mktemp -d /tmp/kaudit-bench-docker.XXXXXX)"
  sock="$tmp/docker.sock"
  dockerd --data-root "$tmp/data" --exec-root "$tmp/exec" --pidfile "$tmp/docker.pid" \
    -H "unix://$sock" --iptables=false --ip6tables=false --bridge=none --storage-driver=vfs \
    >"$tmp/dockerd.log" 2>&1 &
  dpid=$!
  trap 'kill $dpid 2>/dev/null; wait $dpid 2>/dev/null; rm -rf "$tmp"' EXIT
  for _ in $(seq 1 100); do docker -H "unix://$sock" version >/dev/null 2>&1 && break; sleep 0.2; done
fi
cargo run --quiet --release -p kaudit-sources --example docker_proxy_bench -- "$sock" "$requests"
