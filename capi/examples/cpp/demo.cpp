// capnp-shm-demo-cpp: the reference design's demo command line over capnp-shm-transport's
// C++ API, exchanging the Rust demo's typed `Sample` messages (schema/demo.capnp), so it
// runs against `capnp-shm-demo a` / `capnp-shm-demo b`:
//
//   capnp-shm-demo-cpp --a seconds slotSize slotCount [local] [remote]   side A, burst
//   capnp-shm-demo-cpp --b seconds [local] [remote]                      side B, burst
//   capnp-shm-demo-cpp --a30 ... / --b30 ...                             one message per 30 ms
//
// `local` is this side's initial poll interval in µs (default 1000, the reference's), and
// `remote` asks the peer to use that poll interval (applied once the peer is attached).
// The channel is named by $CST_DEMO_NAME (default "capnp_shm_demo"). Each side checks the
// peer's messages for loss, reordering and decode errors, prints a line per second on
// stderr and a one-line JSON report last on stdout; it exits 1 when anything was lost,
// reordered or undecodable, or nothing arrived.
#include <time.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include <capnp/message.h>
#include <capnp/serialize.h>

#include "capnp_shm_transport_capnp.hpp"
#include "demo.capnp.h"

using namespace capnproto_shm_transport;
using std::chrono::milliseconds;

namespace {

constexpr size_t kPayload = 32;  // as the Rust demo
constexpr size_t kMaxLatencies = 20'000'000;

uint64_t monotonicNs() {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<uint64_t>(ts.tv_sec) * 1'000'000'000u + static_cast<uint64_t>(ts.tv_nsec);
}

struct Seen {
  std::mutex mutex;
  uint64_t received = 0, bytes = 0, lost = 0, outOfOrder = 0, decodeErrors = 0, nextSeq = 0;
  uint64_t secondReceived = 0;
  std::vector<uint64_t> latencies;

  void record(const uint8_t* data, uint64_t len) {
    uint64_t now = monotonicNs();
    uint64_t seq = 0, sent = 0;
    size_t payload = 0;
    try {
      capnp::FlatArrayMessageReader reader(words(data, len));  // in the slot, zero copy
      auto s = reader.getRoot<Sample>();
      seq = s.getSeq();
      sent = s.getSentNs();
      payload = s.getPayload().size();
    } catch (const kj::Exception&) {
      std::lock_guard<std::mutex> lock(mutex);
      ++decodeErrors;
      return;
    }
    std::lock_guard<std::mutex> lock(mutex);
    if (seq < nextSeq) {
      ++outOfOrder;
    } else {
      lost += seq - nextSeq;
      nextSeq = seq + 1;
    }
    ++received;
    ++secondReceived;
    bytes += payload;
    if (latencies.size() < kMaxLatencies) latencies.push_back(now > sent ? now - sent : 1);
  }
};

uint64_t quantile(std::vector<uint64_t>& v, double q) {
  if (v.empty()) return 0;
  size_t i = std::min(v.size() - 1, static_cast<size_t>(q * static_cast<double>(v.size())));
  std::nth_element(v.begin(), v.begin() + static_cast<long>(i), v.end());
  return v[i];
}

int usage() {
  std::fprintf(stderr,
               "usage: capnp-shm-demo-cpp --a|--a30 seconds slotSize slotCount [local] [remote]\n"
               "       capnp-shm-demo-cpp --b|--b30 seconds [local] [remote]\n");
  return 2;
}

bool number(const char* s, double& out) {
  char* end = nullptr;
  out = std::strtod(s, &end);
  return end != s && *end == '\0' && out >= 0;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 3) return usage();
  std::string mode = argv[1];
  bool creator = mode == "--a" || mode == "--a30";
  bool paced = mode == "--a30" || mode == "--b30";
  if (!creator && mode != "--b" && mode != "--b30") return usage();
  std::vector<double> n;
  for (int i = 2; i < argc; ++i) {
    double v = 0;
    if (!number(argv[i], v)) {
      std::fprintf(stderr, "capnp-shm-demo-cpp: `%s` is not a non-negative number\n", argv[i]);
      return 2;
    }
    n.push_back(v);
  }
  size_t fixed = creator ? 3 : 1;
  if (n.size() < fixed || n.size() > fixed + 2 || n[0] <= 0) return usage();
  double seconds = n[0];
  auto local = std::chrono::microseconds(n.size() > fixed ? static_cast<int64_t>(n[fixed]) : 1000);
  bool askRemote = n.size() > fixed + 1;
  auto remote = std::chrono::microseconds(askRemote ? static_cast<int64_t>(n[fixed + 1]) : 0);
  const char* env = std::getenv("CST_DEMO_NAME");
  std::string name = env != nullptr && *env != '\0' ? env : "capnp_shm_demo";
  const char* role = creator ? "a" : "b";

  Seen seen;
  auto onMessage = [&seen](const uint8_t* data, uint64_t len) { seen.record(data, len); };
  ShmFixedSlotDuplexTransport t = [&]() {
    if (creator) {
      return ShmFixedSlotDuplexTransport(name, static_cast<uint64_t>(n[1]),
                                         static_cast<uint64_t>(n[2]), onMessage, local);
    }
    return ShmFixedSlotDuplexTransport::open(name, milliseconds(5000), onMessage, local);
  }();

  capnp::MallocMessageBuilder message;
  auto sample = message.initRoot<Sample>();
  std::vector<uint8_t> payload(kPayload, 0x5a);
  sample.setPayload(kj::arrayPtr(payload.data(), payload.size()));

  auto start = std::chrono::steady_clock::now();
  auto end = start + std::chrono::duration_cast<std::chrono::steady_clock::duration>(
                         std::chrono::duration<double>(seconds));
  auto nextTick = start + std::chrono::seconds(1);
  auto nextSend = start;
  uint64_t sent = 0;
  int exitCode = 0;
  for (;;) {
    auto now = std::chrono::steady_clock::now();
    if (now >= end) break;
    if (askRemote && t.peerState() == CST_PEER_STATE_ALIVE) {
      t.setRemoteSidePollInterval(remote);
      askRemote = false;
    }
    if (now >= nextTick) {
      nextTick += std::chrono::seconds(1);
      uint64_t perSecond;
      {
        std::lock_guard<std::mutex> lock(seen.mutex);
        perSecond = seen.secondReceived;
        seen.secondReceived = 0;
      }
      std::fprintf(stderr, "[%s] %3lds %10llu msg/s  poll %lld/%lld µs\n", role,
                   static_cast<long>(std::chrono::duration_cast<std::chrono::seconds>(now - start).count()),
                   static_cast<unsigned long long>(perSecond),
                   static_cast<long long>(t.getLocalSidePollInterval().count()),
                   static_cast<long long>(t.getRemoteSidePollInterval().count()));
    }
    if (paced) {
      if (now < nextSend) {
        std::this_thread::sleep_for(std::min<std::chrono::steady_clock::duration>(nextSend - now, milliseconds(10)));
        continue;
      }
      nextSend += milliseconds(30);
    }
    sample.setSeq(sent);
    sample.setSentNs(monotonicNs());
    Status s = sendMessage(t, message, milliseconds(100));
    if (s) {
      ++sent;
    } else if (s.is(Errc::timeout)) {
      continue;
    } else if (s.is(Errc::closed)) {
      break;  // the peer finished first
    } else {
      std::fprintf(stderr, "capnp-shm-demo-cpp: send: %s\n", s.message.c_str());
      exitCode = 1;
      break;
    }
  }
  double elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  std::this_thread::sleep_for(milliseconds(20));  // let the receive thread drain the ring
  long long localUs = t.getLocalSidePollInterval().count();
  long long remoteUs = t.getRemoteSidePollInterval().count();
  uint64_t callbackFailures = t.callbackFailures();
  t.close();

  std::lock_guard<std::mutex> lock(seen.mutex);
  uint64_t p50 = quantile(seen.latencies, 0.50), p99 = quantile(seen.latencies, 0.99);
  std::fprintf(stderr,
               "[%s] sent %llu received %llu lost %llu out-of-order %llu decode-errors %llu  "
               "%.0f msg/s  p50 %.1f µs  p99 %.1f µs  poll %lld/%lld µs\n",
               role, static_cast<unsigned long long>(sent),
               static_cast<unsigned long long>(seen.received),
               static_cast<unsigned long long>(seen.lost),
               static_cast<unsigned long long>(seen.outOfOrder),
               static_cast<unsigned long long>(seen.decodeErrors),
               static_cast<double>(seen.received) / elapsed, static_cast<double>(p50) / 1000.0,
               static_cast<double>(p99) / 1000.0, localUs, remoteUs);
  std::printf(
      "{\"role\":\"%s\",\"sent\":%llu,\"received\":%llu,\"lost\":%llu,\"out_of_order\":%llu,"
      "\"decode_errors\":%llu,\"callback_failures\":%llu,\"seconds\":%.3f,\"msgs_per_sec\":%.3f,"
      "\"latency_ns\":{\"p50\":%llu,\"p99\":%llu},\"local_poll_us\":%lld,\"remote_poll_us\":%lld}\n",
      role, static_cast<unsigned long long>(sent), static_cast<unsigned long long>(seen.received),
      static_cast<unsigned long long>(seen.lost), static_cast<unsigned long long>(seen.outOfOrder),
      static_cast<unsigned long long>(seen.decodeErrors),
      static_cast<unsigned long long>(callbackFailures), elapsed,
      static_cast<double>(seen.received) / elapsed, static_cast<unsigned long long>(p50),
      static_cast<unsigned long long>(p99), localUs, remoteUs);
  bool clean = seen.received > 0 && seen.lost == 0 && seen.outOfOrder == 0 &&
               seen.decodeErrors == 0 && callbackFailures == 0;
  return exitCode != 0 ? exitCode : (clean ? 0 : 1);
}
