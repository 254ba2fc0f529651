#!/usr/bin/env bash
# Model-checks with loom, on the real code built with --cfg loom: the ring's publish and
# consume orderings (src/ring/loom_tests.rs), and block-mode waiting, the eventcount and
# the close protocol (src/wait/loom_tests.rs) through the futex seam's loom mock, and the
# board's sequence lock and reader wake-up (src/board/loom_tests.rs).
# LOOM_MAX_PREEMPTIONS bounds the search (CI: 3); LOOM_LOG=info --nocapture prints each
# model's iteration count. scripts/loom-weakened.py checks that the models can fail.
set -euo pipefail
cd "$(dirname "$0")/.."
export LOOM_MAX_PREEMPTIONS="${LOOM_MAX_PREEMPTIONS:-3}"
RUSTFLAGS="--cfg loom" cargo test -p capnp-shm-transport --release --lib --target-dir "${LOOM_TARGET_DIR:-target/loom}" \
  loom -- --test-threads=1 "$@"
