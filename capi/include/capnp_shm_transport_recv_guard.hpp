// capnp_shm_transport_recv_guard.hpp: RecvGuard, a message received in place (included by
// capnp_shm_transport.hpp; ShmFixedSlotDuplexTransport::recvInPlace fills it).
#ifndef CAPNP_SHM_TRANSPORT_RECV_GUARD_HPP
#define CAPNP_SHM_TRANSPORT_RECV_GUARD_HPP

#include <cstddef>
#include <cstdint>
#include <utility>

#include "capnp_shm_transport.h"

namespace capnproto_shm_transport {

class ShmFixedSlotDuplexTransport;

// A message received in place (zero copy): valid until release() or destruction, which
// hand the slot back. Must not outlive the transport it came from.
class RecvGuard {
 public:
  RecvGuard() = default;
  RecvGuard(RecvGuard&& o) noexcept { *this = std::move(o); }
  RecvGuard& operator=(RecvGuard&& o) noexcept {
    if (this != &o) {
      release();
      std::swap(handle_, o.handle_);
      data_ = o.data_;
      size_ = o.size_;
    }
    return *this;
  }
  RecvGuard(const RecvGuard&) = delete;
  RecvGuard& operator=(const RecvGuard&) = delete;
  ~RecvGuard() { release(); }

  const uint8_t* data() const noexcept { return data_; }
  size_t size() const noexcept { return size_; }
  explicit operator bool() const noexcept { return handle_ != nullptr; }

  // Hands the slot back now.
  void release() noexcept {
    if (handle_ != nullptr) {
      cst_recv_release(handle_);
      handle_ = nullptr;
      data_ = nullptr;
      size_ = 0;
    }
  }

 private:
  friend class ShmFixedSlotDuplexTransport;
  const CstTransport* handle_ = nullptr;
  const uint8_t* data_ = nullptr;
  size_t size_ = 0;
};

}  // namespace capnproto_shm_transport

#endif  // CAPNP_SHM_TRANSPORT_RECV_GUARD_HPP
