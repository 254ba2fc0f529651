#!/usr/bin/env bash
# Longer runs than CI affords: 10 million block-mode ping-pongs between two processes, and
# the cross-process stress tests, in release mode. Prints each test's time.
set -euo pipefail
cd "$(dirname "$0")/.."
export CAPNP_SHM_PINGPONGS="${CAPNP_SHM_PINGPONGS:-10000000}"
echo "soak: ${CAPNP_SHM_PINGPONGS} block-mode ping-pongs"
time cargo test --release --test cross_process -- --exact block_mode_ping_pong_never_loses_a_wake_up
time cargo test --release --test cross_process -- --exact a_million_messages_each_way_at_once
