#!/usr/bin/env bash
# The cross-language runs, judged by each side's JSON report (the last stdout line):
#   C++ --a <-> Rust b, and Rust a <-> C++ --b: typed Sample messages both ways with no
#   loss, reordering or decode error; poll intervals set from the C++ side seen by the Rust
#   side and back (C++ A's `remote` argument, Rust A's --tune); --a30 pacing.
# Usage: capi/tests/cross_language.sh CPP_DEMO RUST_DEMO (scripts/ci-cpp.sh runs it with
# the AddressSanitizer build of the C++ demo; Bazel as //:capi_cross_language_test).
set -euo pipefail
cpp_demo=$1
rust_demo=$2
tag="cst-cross-$$"
work="${TEST_TMPDIR:-/tmp}/$tag"
trap 'rm -f /dev/shm/$tag-*; rm -rf "$work"' EXIT
mkdir -p "$work"

# Runs side A (first command) and side B (after --) with a deadline, keeping each one's
# last stdout line (its JSON report) in $work/{a,b}.json; fails if either fails.
pair() {
  local a=() b=()
  while [ "$1" != -- ]; do a+=("$1"); shift; done; shift
  b=("$@")
  timeout 30 "${a[@]}" >"$work/a.out" 2>"$work/a.err" & local apid=$!
  local st=0
  timeout 30 "${b[@]}" >"$work/b.out" 2>"$work/b.err" || st=$?
  wait "$apid" || { echo "side A failed:"; cat "$work/a.err"; exit 1; }
  [ "$st" = 0 ] || { echo "side B failed ($st):"; cat "$work/b.err"; exit 1; }
  tail -n1 "$work/a.out" >"$work/a.json"
  tail -n1 "$work/b.out" >"$work/b.json"
}

# judge SIDE key=value...: the side's report has no loss, reordering or decode error, got
# messages, and each key has the value given.
judge() {
  python3 - "$work/$1.json" "$1" "${@:2}" <<'PY'
import json, sys
path, side, *want = sys.argv[1:]
r = json.load(open(path))
bad = [k for k in ("lost", "out_of_order", "decode_errors") if r[k] != 0]
if r["received"] == 0:
    bad.append("received")
for kv in want:
    k, v = kv.split("=")
    if str(r[k]) != v:
        bad.append(f"{k}={r[k]} (want {v})")
print(f"   {side}: received {r['received']}, lost {r['lost']}, reordered {r['out_of_order']}, "
      f"decode errors {r['decode_errors']}, poll {r['local_poll_us']}/{r['remote_poll_us']} us"
      + (f"  BAD: {bad}" if bad else ""))
sys.exit(1 if bad else 0)
PY
}

echo "-- C++ --a <-> Rust b: C++ A asks B for 2000 us, runs at 100 us itself"
n="$tag-1"
pair env CST_DEMO_NAME="$n" "$cpp_demo" --a 2 256 256 100 2000 -- \
  "$rust_demo" b --name "$n" --json --seconds 2
judge b local_poll_us=2000 remote_poll_us=100
judge a local_poll_us=100 remote_poll_us=2000

echo "-- Rust a <-> C++ --b: Rust A tunes B to 1500 us at 1 s, C++ B asks A for 700 us"
n="$tag-2"
pair "$rust_demo" a --name "$n" --json --seconds 2.5 --slot-size 256 --slot-count 256 --tune "1s:remote=1500" -- \
  env CST_DEMO_NAME="$n" "$cpp_demo" --b 2 50 700
judge a local_poll_us=700 remote_poll_us=1500
judge b local_poll_us=1500 remote_poll_us=700

echo "-- C++ --a30 <-> Rust b, 1 s: one message per 30 ms"
n="$tag-3"
pair env CST_DEMO_NAME="$n" "$cpp_demo" --a30 1 128 16 -- \
  "$rust_demo" b --name "$n" --json --seconds 1.2 --pace 30ms
judge b
python3 -c "import json,sys; r=json.load(open('$work/b.json')); sys.exit(0 if 25 <= r['received'] <= 40 else 'paced: %d messages in 1 s' % r['received'])"
echo "cross-language runs passed"
