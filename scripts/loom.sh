#!/usr/bin/env bash
# Model-checks the ring's publish/consume orderings with loom (src/ring_loom.rs), on the
# real ring code built with --cfg loom. LOOM_MAX_PREEMPTIONS bounds the search (CI: 3).
set -euo pipefail
cd "$(dirname "$0")/.."
export LOOM_MAX_PREEMPTIONS="${LOOM_MAX_PREEMPTIONS:-3}"
RUSTFLAGS="--cfg loom" cargo test --release --lib --target-dir target/loom loom_tests -- --test-threads=1 "$@"
