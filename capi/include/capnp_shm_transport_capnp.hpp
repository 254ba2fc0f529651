// capnp_shm_transport_capnp.hpp: Cap'n Proto C++ messages through a
// capnproto_shm_transport::ShmFixedSlotDuplexTransport (link -lcapnp -lkj).
//
// A message travels in the standard stream framing (segment table, then segments), as the
// Rust side's send_message / recv_message write and read it, so C++ and Rust interoperate.
//
//   capnp::MallocMessageBuilder m;
//   auto s = m.initRoot<Sample>(); s.setSeq(1);
//   sendMessage(t, m, std::chrono::milliseconds{100});    // written straight into a slot
//
//   RecvGuard g;
//   if (t.recvInPlace(g, std::chrono::milliseconds{100})) {
//     capnp::FlatArrayMessageReader r(words(g));          // read in the slot, zero copy
//     auto s = r.getRoot<Sample>();
//   }
#ifndef CAPNP_SHM_TRANSPORT_CAPNP_HPP
#define CAPNP_SHM_TRANSPORT_CAPNP_HPP

#include <capnp/message.h>
#include <capnp/serialize.h>
#include <kj/io.h>

#include "capnp_shm_transport.hpp"

namespace capnproto_shm_transport {

// The bytes of a received message as Cap'n Proto words, for capnp::FlatArrayMessageReader.
// Empty when they cannot be words (not 8-byte aligned, or a length not a multiple of 8):
// the reader then reports the message as malformed.
inline kj::ArrayPtr<const capnp::word> words(const uint8_t* data, size_t len) {
  if (data == nullptr || reinterpret_cast<uintptr_t>(data) % sizeof(capnp::word) != 0 ||
      len % sizeof(capnp::word) != 0) {
    return nullptr;
  }
  return kj::arrayPtr(reinterpret_cast<const capnp::word*>(data), len / sizeof(capnp::word));
}

inline kj::ArrayPtr<const capnp::word> words(const RecvGuard& g) { return words(g.data(), g.size()); }

// Sends `message` framed straight into the ring (one copy, from the builder's segments into
// shared memory; no intermediate buffer): one slot, or consecutive slots for a message
// longer than a slot. Errc::message_too_large when its framed size exceeds maxMessageLen().
template <class Rep, class Period>
Status sendMessage(ShmFixedSlotDuplexTransport& t, capnp::MessageBuilder& message,
                   std::chrono::duration<Rep, Period> timeout) {
  size_t bytes = capnp::computeSerializedSizeInWords(message) * sizeof(capnp::word);
  if (bytes > t.maxMessageLen()) {
    return {make_error_code(Errc::message_too_large),
            "a framed message of " + std::to_string(bytes) +
                " bytes exceeds the ring's largest message of " + std::to_string(t.maxMessageLen()) +
                " bytes"};
  }
  return t.sendWith(
      [&](uint8_t* slot, size_t capacity) -> int64_t {
        kj::ArrayOutputStream out(kj::arrayPtr(slot, capacity));
        capnp::writeMessage(out, message);
        return static_cast<int64_t>(out.getArray().size());
      },
      timeout, bytes);
}

}  // namespace capnproto_shm_transport

#endif  // CAPNP_SHM_TRANSPORT_CAPNP_HPP
