#!/usr/bin/env bash
# Model-checks with loom: the ring's publish/consume orderings on the real ring code built
# with --cfg loom (src/ring/loom_tests.rs), and the block-mode eventcount (src/eventcount_loom.rs).
# LOOM_MAX_PREEMPTIONS bounds the search (CI: 3).
set -euo pipefail
cd "$(dirname "$0")/.."
export LOOM_MAX_PREEMPTIONS="${LOOM_MAX_PREEMPTIONS:-3}"
RUSTFLAGS="--cfg loom" cargo test --release --lib --target-dir target/loom loom --  --test-threads=1 "$@"
