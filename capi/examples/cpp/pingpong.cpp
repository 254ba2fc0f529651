// The C++ side of the binding's cost measurement (scripts/bench-cpp.sh): the same 64-byte
// ping-pong as examples/pingpong.rs, busy spin, through the C++ header and the C ABI.
//
//   pingpong a NAME ROUND_TRIPS [inplace|copy]   prints "p50_ns p99_ns"
//   pingpong b NAME [inplace|copy]               echoes until A closes
//
// `inplace` (default) receives with recvInPlace (zero copy, as the Rust side does); `copy`
// uses the reference design's sendSlot / recvSlot(std::vector&).
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "capnp_shm_transport.hpp"

using namespace capnproto_shm_transport;
using std::chrono::milliseconds;

constexpr size_t kLen = 64;

int main(int argc, char** argv) {
  if (argc < 3) {
    std::fprintf(stderr, "usage: pingpong a NAME ROUND_TRIPS [inplace|copy] | pingpong b NAME [inplace|copy]\n");
    return 2;
  }
  std::string role = argv[1], name = argv[2];
  bool a = role == "a";
  std::string how = argc > (a ? 4 : 3) ? argv[a ? 4 : 3] : "inplace";
  bool copy = how == "copy";
  const milliseconds forever(-1);
  uint8_t ping[kLen];
  std::memset(ping, 0x5a, kLen);
  std::vector<uint8_t> buf;
  RecvGuard g;
  if (!a) {
    auto b = ShmFixedSlotDuplexTransport::open(name, milliseconds(5000), nullptr, std::chrono::microseconds(0));
    uint8_t reply[kLen];
    for (;;) {
      if (copy) {
        if (!b.recvSlot(buf, forever)) return 0;  // A closed
        std::memcpy(reply, buf.data(), kLen);
        if (!b.sendSlot(reply, kLen, forever)) return 1;
      } else {
        if (!b.recvInPlace(g, forever)) return 0;
        std::memcpy(reply, g.data(), kLen);
        g.release();
        if (!b.send(reply, kLen, forever)) return 1;
      }
    }
  }
  size_t n = argc > 3 ? std::strtoul(argv[3], nullptr, 10) : 100000;
  ShmFixedSlotDuplexTransport t(name, kLen, 64, nullptr, std::chrono::microseconds(0));
  if (!t.sendSlot(ping, kLen, forever) || !t.recvSlot(buf, milliseconds(10000))) return 1;
  std::vector<uint64_t> rtt;
  rtt.reserve(n);
  for (size_t i = 0; i < n; ++i) {
    auto start = std::chrono::steady_clock::now();
    if (copy) {
      if (!t.sendSlot(ping, kLen, forever) || !t.recvSlot(buf, forever) || buf.size() != kLen) return 1;
    } else {
      if (!t.send(ping, kLen, forever) || !t.recvInPlace(g, forever) || g.size() != kLen) return 1;
      g.release();
    }
    rtt.push_back(static_cast<uint64_t>(
        std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now() - start).count()));
  }
  std::sort(rtt.begin(), rtt.end());
  std::printf("%llu %llu\n", static_cast<unsigned long long>(rtt[n / 2]),
              static_cast<unsigned long long>(rtt[n * 99 / 100]));
  return 0;
}
