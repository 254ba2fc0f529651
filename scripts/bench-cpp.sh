#!/usr/bin/env bash
# The C/C++ binding's cost, measured in one run (release builds; README "C and C++"):
#  1. 64-byte round trip, busy spin, A pinned to CPU 0 and B to CPU 1: Rust <-> Rust
#     (capi/examples/pingpong.rs) against C++ <-> C++ through the header and the C ABI
#     (capi/examples/cpp/pingpong.cpp, in place and with the reference's copying calls),
#     ROUNDS rounds interleaved; the medians of each round's p50 and p99, and ratios.
#  2. The demos, SECONDS each, busy spin: Rust a <-> Rust b, C++ --a <-> Rust b, Rust a <->
#     C++ --b, C++ --a <-> C++ --b; each side's messages/s and one-way latency p50.
# Usage: scripts/bench-cpp.sh [ROUNDS=7] [ROUND_TRIPS=200000] [SECONDS=3]
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-7}
trips=${2:-200000}
seconds=${3:-3}

cargo build -q --release -p capnp-shm-transport-c --examples
cargo build -q --release -p capnp-shm-demo
make -s -C capi PROFILE=release all "$PWD/target/cpp/release/pingpong"
rust_pp=target/release/examples/pingpong
cpp_pp=target/cpp/release/pingpong
rust_demo=target/release/capnp-shm-demo
cpp_demo=target/cpp/release/capnp-shm-demo-cpp
tag="cst-bench-$$"
trap 'rm -f /dev/shm/$tag-*' EXIT

echo "machine: $(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), $(uname -sr)"
echo "== 64 B round trip, busy spin ($rounds rounds x $trips round trips, interleaved) =="
declare -A p50s p99s
for r in $(seq "$rounds"); do
  for impl in rust cpp rust-copy cpp-copy; do
    case $impl in
      rust) a=("$rust_pp" a "$tag-$impl-$r" "$trips"); b=("$rust_pp" b "$tag-$impl-$r") ;;
      rust-copy) a=("$rust_pp" a "$tag-$impl-$r" "$trips" copy); b=("$rust_pp" b "$tag-$impl-$r" copy) ;;
      cpp) a=("$cpp_pp" a "$tag-$impl-$r" "$trips" inplace); b=("$cpp_pp" b "$tag-$impl-$r" inplace) ;;
      cpp-copy) a=("$cpp_pp" a "$tag-$impl-$r" "$trips" copy); b=("$cpp_pp" b "$tag-$impl-$r" copy) ;;
    esac
    taskset -c 1 "${b[@]}" & bpid=$!
    read -r p50 p99 < <(timeout 60 taskset -c 0 "${a[@]}")
    wait "$bpid"
    p50s[$impl]+="$p50 "
    p99s[$impl]+="$p99 "
  done
done
python3 - "${p50s[rust]}" "${p50s[cpp]}" "${p50s[rust-copy]}" "${p50s[cpp-copy]}" \
  "${p99s[rust]}" "${p99s[cpp]}" "${p99s[rust-copy]}" "${p99s[cpp-copy]}" <<'PY'
import statistics, sys
v = [list(map(int, a.split())) for a in sys.argv[1:]]
m = [statistics.median(x) for x in v]
rows = [("Rust <-> Rust, in place (recv)", m[0], m[4], m[0]),
        ("C++ <-> C++, in place (recvInPlace)", m[1], m[5], m[0]),
        ("Rust <-> Rust, copy (recv_into)", m[2], m[6], m[2]),
        ("C++ <-> C++, copy (reference sendSlot / recvSlot)", m[3], m[7], m[2])]
print(f"{'':52} {'p50 ns':>8} {'p99 ns':>8} {'C++ / Rust':>11}")
for name, p50, p99, base in rows:
    print(f"{name:52} {p50:>8.0f} {p99:>8.0f} {p50 / base:>11.3f}")
print("per-round p50s:", {"rust": v[0], "cpp": v[1], "rust-copy": v[2], "cpp-copy": v[3]})
PY

echo "== demos, $seconds s each, busy spin (local poll 0) =="
run_pair() { # label, A command..., --, B command...
  local label=$1; shift
  local acmd=() bcmd=()
  while [ "$1" != -- ]; do acmd+=("$1"); shift; done; shift
  bcmd=("$@")
  taskset -c 0 "${acmd[@]}" >"/tmp/$tag.a" 2>/dev/null & local apid=$!
  sleep 0.3
  taskset -c 1 "${bcmd[@]}" >"/tmp/$tag.b" 2>/dev/null || true
  wait "$apid" || true
  python3 - "$label" "/tmp/$tag.a" "/tmp/$tag.b" <<'PY'
import json, sys
label = sys.argv[1]
def last(p):
    lines = [l for l in open(p) if l.startswith("{")]
    return json.loads(lines[-1]) if lines else {}
a, b = last(sys.argv[2]), last(sys.argv[3])
def fmt(r):
    if not r: return "no report"
    return (f"{r['msgs_per_sec'] / 1e6:5.2f} M msg/s, p50 {r['latency_ns']['p50'] / 1000:7.1f} us, "
            f"lost {r['lost']}, reordered {r['out_of_order']}, decode errors {r['decode_errors']}")
print(f"{label:28} A receives: {fmt(a)}\n{'':28} B receives: {fmt(b)}")
PY
  rm -f "/tmp/$tag.a" "/tmp/$tag.b"
}
n="$tag-demo"
run_pair "Rust a <-> Rust b" "$rust_demo" a --name "$n-1" --json --seconds "$seconds" --slot-size 256 --slot-count 256 --local-poll-us 0 -- "$rust_demo" b --name "$n-1" --json --seconds "$seconds" --local-poll-us 0
run_pair "C++ --a <-> Rust b" env CST_DEMO_NAME="$n-2" "$cpp_demo" --a "$seconds" 256 256 0 -- "$rust_demo" b --name "$n-2" --json --seconds "$seconds" --local-poll-us 0
run_pair "Rust a <-> C++ --b" "$rust_demo" a --name "$n-3" --json --seconds "$seconds" --slot-size 256 --slot-count 256 --local-poll-us 0 -- env CST_DEMO_NAME="$n-3" "$cpp_demo" --b "$seconds" 0
run_pair "C++ --a <-> C++ --b" env CST_DEMO_NAME="$n-4" "$cpp_demo" --a "$seconds" 256 256 0 -- env CST_DEMO_NAME="$n-4" "$cpp_demo" --b "$seconds" 0
