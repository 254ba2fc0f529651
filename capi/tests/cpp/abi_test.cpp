// The C ABI under misuse, and the C++ API's reference and modern calls, in one process:
// every check prints its name; any failure makes the exit status 1. Each wait has a
// deadline; channel names are unique (cst-cpp-<pid>-<n>) and removed at the end, even when
// a check fails. Run it under AddressSanitizer too (scripts/ci-cpp.sh).
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <stdexcept>
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

int failures = 0;
int checks = 0;
std::vector<std::string> names;

#define CHECK(cond)                                                          \
  do {                                                                       \
    ++checks;                                                                \
    if (!(cond)) {                                                           \
      ++failures;                                                            \
      std::fprintf(stderr, "FAILED %s:%d: %s\n", __FILE__, __LINE__, #cond); \
    }                                                                        \
  } while (0)

// The status and, on failure, that the thread's message mentions `needle`.
#define CHECK_STATUS(call, expected, needle)                                         \
  do {                                                                               \
    CstStatus rc_ = (call);                                                          \
    CHECK(rc_ == (expected));                                                        \
    if (rc_ != (expected))                                                           \
      std::fprintf(stderr, "  got %s: %s\n", cst_status_name(rc_), cst_last_error()); \
    if ((expected) != CST_OK) CHECK(std::strstr(cst_last_error(), (needle)) != nullptr); \
  } while (0)

std::string fresh() {
  static int n = 0;
  names.push_back("cst-cpp-" + std::to_string(getpid()) + "-" + std::to_string(n++));
  return names.back();
}

CstOptions options(size_t slotSize = 64) {
  CstOptions o;
  cst_options_default(&o);
  o.slot_size = slotSize;
  o.slot_count = 8;
  o.open_timeout_ms = 2000;
  return o;
}

void nullPointers() {
  std::puts("null handles, names, options and out-parameters");
  uint8_t byte = 0;
  size_t len = 0;
  const uint8_t* data = nullptr;
  CstStats stats;
  uint64_t u = 0;
  CHECK_STATUS(cst_send(nullptr, &byte, 1, 0), CST_NULL_POINTER, "handle");
  CHECK_STATUS(cst_recv(nullptr, &byte, 1, &len, 0), CST_NULL_POINTER, "handle");
  CHECK_STATUS(cst_recv_borrow(nullptr, &data, &len, 0), CST_NULL_POINTER, "handle");
  CHECK_STATUS(cst_recv_release(nullptr), CST_NULL_POINTER, "handle");
  CHECK_STATUS(cst_stats(nullptr, &stats), CST_NULL_POINTER, "handle");
  CHECK_STATUS(cst_poll_us(nullptr, 0, &u), CST_NULL_POINTER, "handle");
  CHECK_STATUS(cst_set_poll_us(nullptr, 1, 10), CST_NULL_POINTER, "handle");
  CHECK_STATUS(cst_callback_failures(nullptr, &u), CST_NULL_POINTER, "handle");
  CHECK_STATUS(cst_close(nullptr), CST_NULL_POINTER, "handle");
  CstOptions o = options();
  CstTransport* t = reinterpret_cast<CstTransport*>(0x1);
  CHECK_STATUS(cst_create(nullptr, &o, &t), CST_NULL_POINTER, "name");
  CHECK(t == nullptr);  // cleared on failure
  CHECK_STATUS(cst_create("cst-cpp-never", nullptr, &t), CST_NULL_POINTER, "options");
  CHECK_STATUS(cst_create("cst-cpp-never", &o, nullptr), CST_NULL_POINTER, "out");
  CHECK_STATUS(cst_options_default(nullptr), CST_NULL_POINTER, "options");
  CHECK_STATUS(cst_list(nullptr, 0, nullptr), CST_NULL_POINTER, "needed");
}

void badArguments() {
  std::puts("bad arguments: slot count, wait mode, trust, name, open of a missing channel");
  CstTransport* t = nullptr;
  CstOptions o = options();
  o.slot_count = 3;
  CHECK_STATUS(cst_create(fresh().c_str(), &o, &t), CST_INVALID_ARGUMENT, "power of two");
  o = options();
  o.wait_mode = 7;
  CHECK_STATUS(cst_create(fresh().c_str(), &o, &t), CST_INVALID_ARGUMENT, "wait mode 7");
  o = options();
  o.trust = 9;
  CHECK_STATUS(cst_create(fresh().c_str(), &o, &t), CST_INVALID_ARGUMENT, "trust 9");
  o = options();
  CHECK_STATUS(cst_create("a/b", &o, &t), CST_INVALID_ARGUMENT, "name");
  o.open_timeout_ms = 0;
  CHECK_STATUS(cst_open(fresh().c_str(), &o, &t), CST_NOT_FOUND, "did not appear");
  CHECK(t == nullptr);
}

void lengthsBorrowsAndClose() {
  std::puts("wrong lengths, buffer too small, borrow/release misuse, double close");
  std::string name = fresh();
  CstOptions o = options(64);
  CstTransport* a = nullptr;
  CstTransport* b = nullptr;
  CHECK_STATUS(cst_create(name.c_str(), &o, &a), CST_OK, "");
  CHECK_STATUS(cst_open(name.c_str(), &o, &b), CST_OK, "");
  if (a == nullptr || b == nullptr) return;
  size_t max = 0;
  CHECK_STATUS(cst_max_message_len(a, &max), CST_OK, "");
  std::vector<uint8_t> big(max + 1, 7);
  CHECK_STATUS(cst_send(a, big.data(), big.size(), 0), CST_MESSAGE_TOO_LARGE, "largest message");
  CHECK_STATUS(cst_send(a, nullptr, 5, 0), CST_NULL_POINTER, "data");
  CHECK_STATUS(cst_send(a, big.data(), 40, 100000), CST_OK, "");
  uint8_t small[8];
  size_t len = 0;
  CHECK_STATUS(cst_recv(b, small, sizeof small, &len, 1000000), CST_BUFFER_TOO_SMALL, "40 bytes");
  CHECK(len == 40);
  CHECK_STATUS(cst_recv(b, nullptr, 16, &len, 0), CST_NULL_POINTER, "buf");
  uint8_t enough[64];
  CHECK_STATUS(cst_recv(b, enough, sizeof enough, &len, 0), CST_OK, "");  // the kept message
  CHECK(len == 40 && enough[39] == 7);
  CHECK_STATUS(cst_recv(b, enough, sizeof enough, &len, 0), CST_TIMEOUT, "empty");

  CHECK_STATUS(cst_send(a, big.data(), 3, 100000), CST_OK, "");
  const uint8_t* data = nullptr;
  CHECK_STATUS(cst_recv_borrow(b, &data, &len, 1000000), CST_OK, "");
  CHECK(len == 3 && data != nullptr && reinterpret_cast<uintptr_t>(data) % 8 == 0);
  CHECK_STATUS(cst_recv_borrow(b, &data, &len, 0), CST_BORROW_OUTSTANDING, "release");
  CHECK_STATUS(cst_recv(b, enough, sizeof enough, &len, 0), CST_BORROW_OUTSTANDING, "release");
  CHECK_STATUS(cst_recv_release(b), CST_OK, "");
  CHECK_STATUS(cst_recv_release(b), CST_INVALID_ARGUMENT, "no message is borrowed");

  auto throwing = [](void*, uint8_t*, size_t) -> int64_t { return -1; };
  CHECK_STATUS(cst_send_with(a, throwing, nullptr, 0), CST_CALLBACK_FAILED, "gave up");
  auto liar = [](void*, uint8_t*, size_t cap) -> int64_t { return static_cast<int64_t>(cap) + 1; };
  CHECK_STATUS(cst_send_with(a, liar, nullptr, 0), CST_INVALID_ARGUMENT, "returned");
  CHECK_STATUS(cst_send_with(a, nullptr, nullptr, 0), CST_NULL_POINTER, "write");
  CHECK_STATUS(cst_recv(b, enough, sizeof enough, &len, 0), CST_TIMEOUT, "empty");  // nothing sent

  // A borrowed message is released by close; closing twice is a clear error each time.
  CHECK_STATUS(cst_send(a, big.data(), 1, 100000), CST_OK, "");
  CHECK_STATUS(cst_recv_borrow(b, &data, &len, 1000000), CST_OK, "");
  CstTransport* stale = b;
  CHECK_STATUS(cst_close(&b), CST_OK, "");
  CHECK(b == nullptr);
  CHECK_STATUS(cst_close(&b), CST_INVALID_HANDLE, "closed already");
  CHECK_STATUS(cst_close(&stale), CST_INVALID_HANDLE, "closed already");
  CHECK_STATUS(cst_send(a, big.data(), 1, 1000000), CST_CLOSED, "closed");
  CHECK_STATUS(cst_close(&a), CST_OK, "");
}

void lastErrorIsPerThread() {
  std::puts("cst_last_error is per thread");
  cst_send(nullptr, nullptr, 0, 0);
  std::string other;
  std::thread([&] { other = cst_last_error(); }).join();
  CHECK(other.empty());
  CHECK(std::strstr(cst_last_error(), "handle") != nullptr);
}

void throwingCallback() {
  std::puts("a callback that throws: caught in the trampoline, counted, reported");
  std::string name = fresh();
  std::atomic<int> calls{0};
  ShmFixedSlotDuplexTransport a(
      name, 64, 8,
      [&](const uint8_t* data, uint64_t len) {
        ++calls;
        if (len == 4 && std::memcmp(data, "boom", 4) == 0) throw std::runtime_error("boom from C++");
      },
      std::chrono::microseconds(0));
  auto b = ShmFixedSlotDuplexTransport::open(name, milliseconds(2000));
  CHECK(b.sendSlot(reinterpret_cast<const uint8_t*>("boom"), 4, milliseconds(1000)) == 1);
  CHECK(b.sendSlot(reinterpret_cast<const uint8_t*>("fine"), 4, milliseconds(1000)) == 1);
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
  while (calls.load() < 2 && std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(milliseconds(1));
  CHECK(calls.load() == 2);  // the thread went on after the exception
  CHECK(a.callbackFailures() == 1);
  CHECK(a.lastCallbackError() == "boom from C++");
  std::vector<uint8_t> out;
  CHECK(a.recvSlot(out, milliseconds(0)) == 0);  // the callback thread owns receiving
  RecvGuard g;
  CHECK(a.recvInPlace(g, milliseconds(0)).is(Errc::receiver_in_use));
  // A writer that throws: caught in sendWith's trampoline.
  Status s = b.sendWith([](uint8_t*, size_t) -> int64_t { throw std::logic_error("no room"); },
                        milliseconds(100));
  CHECK(s.is(Errc::callback_failed));
  CHECK(s.message.find("no room") != std::string::npos);
}

void referenceApi() {
  std::puts("the reference API: constructors, 1/0 results, stats, poll intervals, remove");
  std::string name = fresh();
  try {
    ShmFixedSlotDuplexTransport::open(name, milliseconds(0));
    CHECK(false);
  } catch (const Error& e) {
    CHECK(e.code() == Errc::not_found);
    CHECK(std::string(e.what()).find(name) != std::string::npos);
  }
  try {
    ShmFixedSlotDuplexTransport bad(name, 64, 6, nullptr);
    CHECK(false);
  } catch (const std::system_error& e) {
    CHECK(e.code() == Errc::invalid_argument);
  }
  ShmFixedSlotDuplexTransport a(name, 128, 16, nullptr, std::chrono::microseconds(0));
  auto b = ShmFixedSlotDuplexTransport::open(name, milliseconds(2000));
  CHECK(a.isCreator() == 1 && b.isCreator() == 0);
  CHECK(a.slotSize() == 128 && b.slotSize() == 128 && b.slotCount() == 16);
  std::vector<uint8_t> msg(100, 1), out;
  CHECK(a.sendSlot(msg.data(), msg.size(), milliseconds(-1)) == 1);
  CHECK(b.recvSlot(out, milliseconds(1000)) == 1 && out == msg);
  CHECK(b.recvSlot(out, milliseconds(0)) == 0);
  std::vector<uint8_t> tooBig(a.maxMessageLen() + 1);
  CHECK(a.sendSlot(tooBig.data(), tooBig.size(), milliseconds(0)) == 0);
  CHECK(a.send(tooBig.data(), tooBig.size(), milliseconds(0)).is(Errc::message_too_large));
  for (int i = 0; i < 3; ++i) CHECK(a.sendSlot(msg.data(), 10, milliseconds(100)) == 1);
  ShmFixedSlotDuplexTransport::SlotTransportStats st;
  CHECK(a.getStats(st) == 1);
  CHECK(st.tx.slotSize == 128 && st.tx.slotCount == 16 && st.tx.usedSlots == 3 && st.tx.shutdown == 0);
  CHECK(st.tx.messagesSent == 4);
  a.setLocalSidePollInterval(std::chrono::microseconds(200));
  a.setRemoteSidePollInterval(std::chrono::microseconds(2000));
  CHECK(a.getLocalSidePollInterval().count() == 200 && a.getRemoteSidePollInterval().count() == 2000);
  CHECK(b.getLocalSidePollInterval().count() == 2000 && b.getRemoteSidePollInterval().count() == 200);
  try {
    a.setLocalSidePollInterval(std::chrono::seconds(5));
    CHECK(false);
  } catch (const Error& e) {
    CHECK(e.code() == Errc::invalid_argument);
  }
  // Modern calls: the futex wait mode, seen by both sides.
  CHECK(a.setRemoteWaitMode(WaitMode::Block));
  CHECK(b.localWaitMode() == WaitMode::Block && a.remoteWaitMode() == WaitMode::Block);
  b.close();
  CHECK(a.peerState() == CST_PEER_STATE_CLOSED);
  CHECK(a.send(msg.data(), 1, milliseconds(100)).is(Errc::closed));
  ShmFixedSlotDuplexTransport::remove(name);  // removing twice is harmless
  ShmFixedSlotDuplexTransport::remove(name);
  CHECK(version().find("capnp-shm-transport") == 0);
}

void capnpInPlace() {
  std::puts("Cap'n Proto: a MessageBuilder written into a slot, read in place");
  std::string name = fresh();
  Status s;
  Options o;
  o.slotSize = 256;
  o.slotCount = 8;
  auto a = ShmFixedSlotDuplexTransport::create(name, o, nullptr, s);
  CHECK(s && a);
  auto b = ShmFixedSlotDuplexTransport::connect(name, o, nullptr, s);
  CHECK(s && b);
  if (!a || !b) return;
  capnp::MallocMessageBuilder m;
  auto sample = m.initRoot<Sample>();
  sample.setSeq(42);
  sample.setSentNs(7);
  uint8_t payload[32] = {1, 2, 3};
  sample.setPayload(kj::arrayPtr(payload, sizeof payload));
  CHECK(sendMessage(a, m, milliseconds(100)));
  RecvGuard g;
  CHECK(b.recvInPlace(g, milliseconds(1000)));
  if (g) {
    capnp::FlatArrayMessageReader r(words(g));
    auto got = r.getRoot<Sample>();
    CHECK(got.getSeq() == 42 && got.getSentNs() == 7 && got.getPayload().size() == 32);
    CHECK(reinterpret_cast<const uint8_t*>(r.getSegment(0).begin()) > g.data());  // in the slot
  }
  g.release();
  // Larger than a slot: written over consecutive slots, read in place as one message.
  {
    capnp::MallocMessageBuilder large;
    std::vector<uint8_t> kib(1000, 9);
    large.initRoot<Sample>().setPayload(kj::arrayPtr(kib.data(), kib.size()));
    CHECK(sendMessage(a, large, milliseconds(100)));
    CHECK(b.recvInPlace(g, milliseconds(1000)));
    capnp::FlatArrayMessageReader r(words(g));
    CHECK(r.getRoot<Sample>().getPayload().size() == 1000);
    g.release();
  }
  // Too large for the ring: refused before anything is written.
  capnp::MallocMessageBuilder huge;
  std::vector<uint8_t> lots(a.maxMessageLen());
  huge.initRoot<Sample>().setPayload(kj::arrayPtr(lots.data(), lots.size()));
  CHECK(sendMessage(a, huge, milliseconds(0)).is(Errc::message_too_large));
  // Garbage in a slot: the reader throws, nothing crashes.
  CHECK(a.send("\xff\xff\xff\x7f\0\0\0\0", 8, milliseconds(100)));
  CHECK(b.recvInPlace(g, milliseconds(1000)));
  bool threw = false;
  try {
    capnp::FlatArrayMessageReader r(words(g));
    r.getRoot<Sample>().getSeq();
  } catch (const kj::Exception&) {
    threw = true;
  }
  CHECK(threw);
}

}  // namespace

int main() {
  nullPointers();
  badArguments();
  lengthsBorrowsAndClose();
  lastErrorIsPerThread();
  throwingCallback();
  referenceApi();
  capnpInPlace();
  for (const auto& n : names) cst_remove(n.c_str(), nullptr);
  std::printf("%d checks, %d failed\n", checks, failures);
  return failures == 0 ? 0 : 1;
}
