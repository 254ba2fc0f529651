#!/usr/bin/env bash
# The checkers beyond `cargo test` (run by .ci/run; each can also run alone):
#   valgrind  memcheck over the in-process test binaries (stable)
#   asan      AddressSanitizer over the ring, channel and cross-process tests (nightly)
#   fuzz      each cargo-fuzz target for FUZZ_SECONDS (nightly)
# ThreadSanitizer is not run: it needs -Zbuild-std (an instrumented std), which needs the
# rust-src component, which our CI machines cannot install. Miri is not installable either.
# Steps that need nightly skip with a message when it is absent.
set -euo pipefail
cd "$(dirname "$0")/.."
which="${1:-all}"
FUZZ_SECONDS="${FUZZ_SECONDS:-30}"

have_nightly() { rustup run nightly rustc --version >/dev/null 2>&1; }

run_valgrind() {
  echo "--- valgrind memcheck (stable)"
  command -v valgrind >/dev/null || { echo "valgrind not installed: skipped"; return 0; }
  local bins
  bins=$(cargo test -p capnp-shm-transport -q --no-run --message-format=json 2>/dev/null | python3 -c '
import sys, json
wanted = {"capnp_shm_transport", "hostile", "fuzz_corpus", "typed", "transport", "blocking"}
for line in sys.stdin:
    try:
        m = json.loads(line)
    except ValueError:
        continue
    if m.get("reason") == "compiler-artifact" and m.get("executable") and m["target"]["name"] in wanted:
        print(m["executable"])')
  for exe in $bins; do
    echo "valgrind $(basename "$exe")"
        # valgrind does not know pidfd_open (syscall 434): the liveness monitor falls back to
    # /proc polling there, so its "unhandled syscall" warnings are expected noise.
    # (The three lines valgrind prints after each "unhandled syscall" warning are dropped
    # too; another unhandled syscall still shows its own first line.)
    # Property tests run 16 cases each under valgrind (256 natively): memcheck looks for
    # memory errors, which the first cases reach as well as the rest.
    PROPTEST_CASES=16 valgrind -q --error-exitcode=99 "$exe" --test-threads=2 -q 2> >(grep -v \
      -e 'unhandled amd64-linux syscall: 434' -e 'You may be able to write your own handler' \
      -e 'README_MISSING_SYSCALL_OR_IOCTL' -e 'Nevertheless we consider this a bug' \
      -e 'bug_reports.html' >&2)
  done
}

run_asan() {
  echo "--- AddressSanitizer (nightly)"
  have_nightly || { echo "no nightly toolchain: AddressSanitizer skipped"; return 0; }
  RUSTFLAGS="-Zsanitizer=address" cargo +nightly test -p capnp-shm-transport -q --target x86_64-unknown-linux-gnu \
    --target-dir target/asan --lib --test cross_process --test transport --test hostile \
    --test blocking --test liveness --test untrusted
}

run_fuzz() {
  echo "--- fuzzing, ${FUZZ_SECONDS} s per target (nightly)"
  have_nightly || { echo "no nightly toolchain: fuzzing skipped (the corpus still replays in cargo test)"; return 0; }
  command -v cargo-fuzz >/dev/null || cargo install -q cargo-fuzz --locked
  (
    cd fuzz
    cargo +nightly fuzz build -O
    for target in segment ring typed_slot untrusted_recv; do
      work=$(mktemp -d)
      # untrusted_recv spawns (and joins) a mutator thread per input; a joined thread's
      # last frees can land after libFuzzer's per-input leak check, which then reports a
      # leak that is not one (seen once in CI, not reproducible on the saved input). Its
      # leaks are checked by LeakSanitizer in the ASan job (tests/untrusted.rs) instead.
      leaks=1
      [ "$target" = untrusted_recv ] && leaks=0
      status=0
      cargo +nightly fuzz run -O "$target" "$work" "corpus/$target" -- \
        -max_total_time="$FUZZ_SECONDS" -rss_limit_mb=2048 -detect_leaks=$leaks >"$work.log" 2>&1 || status=$?
      echo "$target: $(grep -E '^Done' "$work.log" | tail -n 1)"
      if [ "$status" -ne 0 ]; then
        tail -n 40 "$work.log"
        echo "fuzz target $target failed (the input is saved under fuzz/artifacts/$target)"
        exit 1
      fi
      rm -rf "$work" "$work.log"
    done
  )
}

case "$which" in
  valgrind) run_valgrind ;;
  asan) run_asan ;;
  fuzz) run_fuzz ;;
  all) run_valgrind; run_asan; run_fuzz ;;
  *) echo "usage: $0 [valgrind|asan|fuzz|all]"; exit 2 ;;
esac
