// capnp_shm_transport.hpp: the C++17 API of capnp-shm-transport, header-only over the C ABI
// (capnp_shm_transport.h, link the Rust staticlib libcapnp_shm_transport_c.a).
//
// It keeps the reference design's API (namespace capnproto_shm_transport, class
// ShmFixedSlotDuplexTransport with nested SlotRingStats / SlotTransportStats, its methods,
// 1/0 results and throwing constructors), so code written for it compiles unchanged, and
// adds calls that say why they failed (Status: a std::error_code of Errc and the message),
// an RAII guard over a slot received in place (RecvGuard), and the futex wait mode
// (WaitMode::Block). The Cap'n Proto helpers are in capnp_shm_transport_capnp.hpp.
//
//   using namespace capnproto_shm_transport;
//   ShmFixedSlotDuplexTransport a("orders", 256, 64,
//       [](const uint8_t* data, uint64_t len) { /* on A's receive thread */ });
//   auto b = ShmFixedSlotDuplexTransport::open("orders", std::chrono::milliseconds{500});
//   a.sendSlot(bytes, n, std::chrono::milliseconds{-1});       // 1 = sent, 0 = not
//   std::vector<uint8_t> out;
//   if (b.recvSlot(out, std::chrono::milliseconds{10})) { /* out holds the message */ }
//   RecvGuard g;
//   if (b.recvInPlace(g, std::chrono::milliseconds{10})) { /* g.data(), g.size() */ }
//
// Differences from the reference design: a message may be shorter than slotSize (any length
// up to maxMessageLen() is sent as is, and recvSlot gives the message's own length), and
// recvSlot on a side with a callback returns 0 (the callback thread owns the receiving).
#ifndef CAPNP_SHM_TRANSPORT_HPP
#define CAPNP_SHM_TRANSPORT_HPP

#include <chrono>
#include <cstdint>
#include <cstring>
#include <exception>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <system_error>
#include <type_traits>
#include <utility>
#include <vector>

#include "capnp_shm_transport.h"
#include "capnp_shm_transport_recv_guard.hpp"
#include "capnp_shm_transport_status.hpp"

namespace capnproto_shm_transport {

// How a side waits when idle.
enum class WaitMode : uint32_t {
  Poll = CST_WAIT_POLL,   // busy spin at poll interval 0, else sleep it per idle round
  Block = CST_WAIT_BLOCK, // spin briefly, then sleep on a futex until woken
};

// Options of the modern factories create() and connect().
struct Options {
  uint64_t slotSize = 1024;  // largest message (side A)
  uint64_t slotCount = 64;   // per direction, a power of two (side A)
  WaitMode waitMode = WaitMode::Block;
  std::chrono::microseconds poll{0};
  std::chrono::milliseconds openTimeout{5000};  // side B; negative = no limit
  bool untrusted = false;  // copy each message out of the slot before it is read
};

class ShmFixedSlotDuplexTransport {
 public:
  using Callback = std::function<void(const uint8_t*, uint64_t)>;

  struct SlotRingStats {
    uint64_t slotSize{0};
    uint64_t slotCount{0};
    uint64_t usedSlots{0};
    uint32_t shutdown{0};
    // Beyond the reference design:
    uint64_t messagesSent{0};
    uint64_t bytesSent{0};
    uint64_t messagesReceived{0};
    uint64_t bytesReceived{0};
  };
  struct SlotTransportStats {
    SlotRingStats tx;  // the ring this side writes
    SlotRingStats rx;  // the ring this side reads
  };

  // Side A: creates channel `name` (stale segments of that name are removed first), with a
  // receive thread calling `callback` if it is non-empty, sleeping `initialPoll` per idle
  // round (0 = busy spin). Throws Error on failure.
  ShmFixedSlotDuplexTransport(const std::string& name, uint64_t slotSize, uint64_t slotCount,
                              Callback callback,
                              std::chrono::microseconds initialPoll = std::chrono::milliseconds(1)) {
    Options o;
    o.slotSize = slotSize;
    o.slotCount = slotCount;
    o.waitMode = WaitMode::Poll;
    o.poll = initialPoll;
    Status s = attach(name, o, std::move(callback), true);
    if (!s) throw Error(s);
  }

  // Side B: opens channel `name`, waiting up to `wait` for side A. Throws Error on failure.
  static ShmFixedSlotDuplexTransport open(const std::string& name, std::chrono::milliseconds wait,
                                          Callback callback,
                                          std::chrono::microseconds initialPoll = std::chrono::milliseconds(1)) {
    Options o;
    o.waitMode = WaitMode::Poll;
    o.poll = initialPoll;
    o.openTimeout = wait;
    ShmFixedSlotDuplexTransport t;
    Status s = t.attach(name, o, std::move(callback), false);
    if (!s) throw Error(s);
    return t;
  }

  // Side B without a callback (no receive thread): receive with recvSlot / recvInPlace.
  static ShmFixedSlotDuplexTransport open(const std::string& name, std::chrono::milliseconds wait) {
    return open(name, wait, nullptr);
  }

  // Modern factories: no exception; `status` says why on failure (then the result is
  // empty: operator bool is false).
  static ShmFixedSlotDuplexTransport create(const std::string& name, const Options& options,
                                            Callback callback, Status& status) {
    ShmFixedSlotDuplexTransport t;
    status = t.attach(name, options, std::move(callback), true);
    return t;
  }
  static ShmFixedSlotDuplexTransport connect(const std::string& name, const Options& options,
                                             Callback callback, Status& status) {
    ShmFixedSlotDuplexTransport t;
    status = t.attach(name, options, std::move(callback), false);
    return t;
  }

  ~ShmFixedSlotDuplexTransport() { close(); }
  ShmFixedSlotDuplexTransport(ShmFixedSlotDuplexTransport&& o) noexcept { *this = std::move(o); }
  ShmFixedSlotDuplexTransport& operator=(ShmFixedSlotDuplexTransport&& o) noexcept {
    if (this != &o) {
      close();
      std::swap(handle_, o.handle_);
      std::swap(callback_, o.callback_);
      slotSize_ = o.slotSize_;
      slotCount_ = o.slotCount_;
      creator_ = o.creator_;
    }
    return *this;
  }
  ShmFixedSlotDuplexTransport(const ShmFixedSlotDuplexTransport&) = delete;
  ShmFixedSlotDuplexTransport& operator=(const ShmFixedSlotDuplexTransport&) = delete;

  explicit operator bool() const noexcept { return handle_ != nullptr; }

  // Reference API: 1 when sent, 0 on timeout, shutdown or a bad length.
  // milliseconds{-1} waits without limit, milliseconds{0} tries once.
  uint32_t sendSlot(const uint8_t* data, uint64_t len, std::chrono::milliseconds timeout) {
    return send(data, len, timeout) ? 1 : 0;
  }
  // Reference API: 1 when a message was copied into `out` (resized to its length), else 0.
  uint32_t recvSlot(std::vector<uint8_t>& out, std::chrono::milliseconds timeout) {
    return recv(out, timeout) ? 1 : 0;
  }
  // Reference API: 1 on success.
  uint32_t getStats(SlotTransportStats& out) { return stats(out) ? 1 : 0; }

  uint64_t slotSize() const noexcept { return slotSize_; }
  uint64_t slotCount() const noexcept { return slotCount_; }
  uint32_t isCreator() const noexcept { return creator_; }

  // Poll intervals of this side and of the peer (both sides see both). The setters throw
  // Error for an interval above 1 s.
  void setLocalSidePollInterval(std::chrono::microseconds us) { setPoll(0, us); }
  void setRemoteSidePollInterval(std::chrono::microseconds us) { setPoll(1, us); }
  std::chrono::microseconds getLocalSidePollInterval() const { return getPoll(0); }
  std::chrono::microseconds getRemoteSidePollInterval() const { return getPoll(1); }

  // Removes channel `name`'s segments (normally side A does, when it is destroyed).
  static void remove(const std::string& name) { cst_remove(name.c_str(), nullptr); }

  // ---- Beyond the reference design: calls that say why ----

  template <class Rep, class Period>
  Status send(const void* data, size_t len, std::chrono::duration<Rep, Period> timeout) {
    return detail::status(
        cst_send(handle_, static_cast<const uint8_t*>(data), len, detail::micros(timeout)));
  }

  // Copies the next message into `out` (resized to its length).
  template <class Rep, class Period>
  Status recv(std::vector<uint8_t>& out, std::chrono::duration<Rep, Period> timeout) {
    RecvGuard g;
    Status s = recvInPlace(g, timeout);
    if (s) out.assign(g.data(), g.data() + g.size());
    return s;
  }

  // Receives the next message in place (zero copy) into `guard` (any message it held is
  // released first).
  template <class Rep, class Period>
  Status recvInPlace(RecvGuard& guard, std::chrono::duration<Rep, Period> timeout) {
    guard.release();
    const uint8_t* data = nullptr;
    size_t len = 0;
    Status s = detail::status(cst_recv_borrow(handle_, &data, &len, detail::micros(timeout)));
    if (s) {
      guard.handle_ = handle_;
      guard.data_ = data;
      guard.size_ = len;
    }
    return s;
  }

  // Sends a message written in place: `write(slot, capacity)` returns its length, or a
  // negative value to send nothing. An exception it throws is caught and reported.
  template <class Rep, class Period, class Write>
  Status sendWith(Write&& write, std::chrono::duration<Rep, Period> timeout, size_t capacity = 0) {
    struct Ctx {
      Write* write;
      std::string error;
    } ctx{&write, {}};
    auto trampoline = [](void* user, uint8_t* slot, size_t cap) -> int64_t {
      auto* c = static_cast<Ctx*>(user);
      try {
        return static_cast<int64_t>((*c->write)(slot, cap));
      } catch (const std::exception& e) {
        c->error = e.what();
      } catch (...) {
        c->error = "unknown exception";
      }
      return -1;
    };
    Status s = detail::status(
        cst_send_with_capacity(handle_, capacity, trampoline, &ctx, detail::micros(timeout)));
    if (!ctx.error.empty()) s.message = "the writer threw: " + ctx.error;
    return s;
  }

  Status stats(SlotTransportStats& out) const {
    CstStats s;
    Status st = detail::status(cst_stats(handle_, &s));
    if (st) {
      out.tx = ring(s.tx);
      out.rx = ring(s.rx);
    }
    return st;
  }

  // The longest message this side can send.
  uint64_t maxMessageLen() const noexcept {
    size_t n = 0;
    cst_max_message_len(handle_, &n);
    return n;
  }

  // Wait modes of this side and of the peer (WaitMode::Block: the futex mode).
  Status setLocalWaitMode(WaitMode m) { return detail::status(cst_set_wait_mode(handle_, 0, static_cast<uint32_t>(m))); }
  Status setRemoteWaitMode(WaitMode m) { return detail::status(cst_set_wait_mode(handle_, 1, static_cast<uint32_t>(m))); }
  WaitMode localWaitMode() const { return waitMode(0); }
  WaitMode remoteWaitMode() const { return waitMode(1); }

  // Whether the peer is attached, alive, closed or dead.
  CstPeerState peerState() const {
    CstPeerState p = CST_PEER_STATE_NOT_ATTACHED;
    cst_peer_state(handle_, &p);
    return p;
  }

  // How often the receive callback threw, and the last exception's message.
  uint64_t callbackFailures() const {
    uint64_t n = 0;
    cst_callback_failures(handle_, &n);
    return n;
  }
  std::string lastCallbackError() const {
    if (!callback_) return {};
    std::lock_guard<std::mutex> lock(callback_->mutex);
    return callback_->lastError;
  }

  // Removes channel `name`'s segments, saying why on failure.
  static Status removeChannel(const std::string& name) {
    return detail::status(cst_remove(name.c_str(), nullptr));
  }

  // Closes now (the destructor does it otherwise).
  void close() noexcept {
    if (handle_ != nullptr) cst_close(&handle_);
    callback_.reset();  // after the receive thread was joined by cst_close
  }

  // The C handle, for calls this class does not wrap.
  const CstTransport* handle() const noexcept { return handle_; }

 private:
  struct CallbackBox {
    Callback fn;
    std::mutex mutex;
    std::string lastError;
  };

  ShmFixedSlotDuplexTransport() = default;

  // Called on the Rust receive thread: catches what the callback throws (an exception must
  // not unwind into Rust) and reports it as a failure.
  static int32_t trampoline(void* user, const uint8_t* data, size_t len) noexcept {
    auto* box = static_cast<CallbackBox*>(user);
    try {
      box->fn(data, len);
      return 0;
    } catch (const std::exception& e) {
      std::lock_guard<std::mutex> lock(box->mutex);
      box->lastError = e.what();
    } catch (...) {
      std::lock_guard<std::mutex> lock(box->mutex);
      box->lastError = "unknown exception";
    }
    return 1;
  }

  Status attach(const std::string& name, const Options& o, Callback callback, bool create) {
    CstOptions c;
    cst_options_default(&c);
    c.slot_size = o.slotSize;
    c.slot_count = o.slotCount;
    c.wait_mode = static_cast<uint32_t>(o.waitMode);
    c.poll_us = static_cast<uint32_t>(o.poll.count() < 0 ? 0 : o.poll.count());
    c.open_timeout_ms = o.openTimeout.count() < 0 ? -1 : o.openTimeout.count();
    c.trust = o.untrusted ? CST_TRUST_UNTRUSTED : CST_TRUST_COOPERATING;
    if (callback) {
      callback_ = std::make_unique<CallbackBox>();
      callback_->fn = std::move(callback);
      c.callback = &ShmFixedSlotDuplexTransport::trampoline;
      c.callback_user = callback_.get();
    }
    CstStatus rc = create ? cst_create(name.c_str(), &c, &handle_) : cst_open(name.c_str(), &c, &handle_);
    Status s = detail::status(rc);
    if (!s) {
      callback_.reset();
      return s;
    }
    uint32_t creator = 0;
    cst_info(handle_, &slotSize_, &slotCount_, &creator);
    creator_ = creator;
    return s;
  }

  static SlotRingStats ring(const CstRingStats& r) {
    SlotRingStats s;
    s.slotSize = r.slot_size;
    s.slotCount = r.slot_count;
    s.usedSlots = r.used_slots;
    s.shutdown = r.shutdown;
    s.messagesSent = r.messages_sent;
    s.bytesSent = r.bytes_sent;
    s.messagesReceived = r.messages_received;
    s.bytesReceived = r.bytes_received;
    return s;
  }

  void setPoll(uint32_t remote, std::chrono::microseconds us) {
    Status s = detail::status(
        cst_set_poll_us(handle_, remote, static_cast<uint64_t>(us.count() < 0 ? 0 : us.count())));
    if (!s) throw Error(s);
  }
  std::chrono::microseconds getPoll(uint32_t remote) const {
    uint64_t us = 0;
    cst_poll_us(handle_, remote, &us);
    return std::chrono::microseconds(static_cast<int64_t>(us));
  }
  WaitMode waitMode(uint32_t remote) const {
    CstWaitMode m = CST_WAIT_BLOCK;
    cst_wait_mode(handle_, remote, &m);
    return static_cast<WaitMode>(m);
  }

  // Destroyed after handle_ is closed (close() runs first in the destructor).
  std::unique_ptr<CallbackBox> callback_;
  CstTransport* handle_ = nullptr;
  uint64_t slotSize_ = 0;
  uint64_t slotCount_ = 0;
  uint32_t creator_ = 0;
};

// The library's version.
inline std::string version() { return cst_version(); }

}  // namespace capnproto_shm_transport

#endif  // CAPNP_SHM_TRANSPORT_HPP
