#!/usr/bin/env bash
# CI for the C and C++ API (capi/): g++ and Debian's libcapnp-dev, then through
# capi/Makefile the C ABI test and the C++ demo, plain and under AddressSanitizer (with its
# leak checker), and the cross-language runs (capi/tests/cross_language.sh) with the
# AddressSanitizer build of the C++ demo against the Rust demo.
# Debug builds (what `cargo test` left in target/debug); budget 120 s on a fresh machine.
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
command -v g++ >/dev/null || need+=(g++)
[ -e /usr/include/capnp/message.h ] || need+=(libcapnp-dev)
command -v capnp >/dev/null || need+=(capnproto)
if [ ${#need[@]} -gt 0 ]; then
  sudo=""; [ "$(id -u)" = 0 ] || sudo=sudo
  $sudo apt-get update -qq && $sudo apt-get install -y -qq "${need[@]}" >/dev/null
fi

cargo build -q -p capnp-shm-transport-c -p capnp-shm-demo
make -s -C capi PROFILE=debug all
make -s -C capi PROFILE=debug SANITIZE=address all
plain=target/cpp/debug
asan=target/cpp/debug-address
rust_demo=target/debug/capnp-shm-demo
# abi_test removes its channels (cst-cpp-<pid>-<n>) itself, unless it crashed.
trap 'rm -f /dev/shm/cst-cpp-*' EXIT

# Under ASan, LeakSanitizer runs at exit too (on by default on Linux). It needs no
# suppressions: it reports nothing for the Rust staticlib (its thread-locals and the
# handles' threads are gone or freed by then), so any report is a real leak and fails this.
echo "-- C ABI misuse and the C++ API (plain, then AddressSanitizer with leak checking)"
timeout 60 "$plain/abi_test" >/dev/null
timeout 60 "$asan/abi_test" | tail -1

echo "-- C++ (AddressSanitizer) <-> Rust"
capi/tests/cross_language.sh "$asan/capnp-shm-demo-cpp" "$rust_demo"
echo "C/C++ checks passed"
