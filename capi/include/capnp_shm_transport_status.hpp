// capnp_shm_transport_status.hpp: how the C++ API reports failures (included by
// capnp_shm_transport.hpp): Errc, the C ABI's status codes as a std::error_code enum; Status,
// a code and the library's message; Error, what constructors throw.
#ifndef CAPNP_SHM_TRANSPORT_STATUS_HPP
#define CAPNP_SHM_TRANSPORT_STATUS_HPP

#include <chrono>
#include <cstdint>
#include <string>
#include <system_error>
#include <type_traits>

#include "capnp_shm_transport.h"

namespace capnproto_shm_transport {

// The C ABI's status codes as a C++ error enum (same values as CstStatus).
enum class Errc : int {
  ok = CST_OK,
  timeout = CST_TIMEOUT,
  closed = CST_CLOSED,
  peer_dead = CST_PEER_DEAD,
  reconnecting = CST_RECONNECTING,
  gave_up = CST_GAVE_UP,
  message_too_large = CST_MESSAGE_TOO_LARGE,
  invalid_argument = CST_INVALID_ARGUMENT,
  not_found = CST_NOT_FOUND,
  side_in_use = CST_SIDE_IN_USE,
  foreign = CST_FOREIGN,
  receiver_in_use = CST_RECEIVER_IN_USE,
  corrupt = CST_CORRUPT,
  decode = CST_DECODE,
  encode = CST_ENCODE,
  os = CST_OS,
  null_pointer = CST_NULL_POINTER,
  invalid_handle = CST_INVALID_HANDLE,
  buffer_too_small = CST_BUFFER_TOO_SMALL,
  borrow_outstanding = CST_BORROW_OUTSTANDING,
  callback_failed = CST_CALLBACK_FAILED,
  panic = CST_PANIC,
  other = CST_OTHER,
};

namespace detail {
class Category final : public std::error_category {
 public:
  const char* name() const noexcept override { return "capnp_shm_transport"; }
  std::string message(int code) const override { return cst_status_name(code); }
};
}  // namespace detail

// The error category of Errc ("capnp_shm_transport"; messages are the code names).
inline const std::error_category& errorCategory() noexcept {
  static const detail::Category category;
  return category;
}

inline std::error_code make_error_code(Errc e) noexcept {
  return {static_cast<int>(e), errorCategory()};
}

}  // namespace capnproto_shm_transport

namespace std {
template <>
struct is_error_code_enum<capnproto_shm_transport::Errc> : true_type {};
}  // namespace std

namespace capnproto_shm_transport {

// The outcome of a call: a code (empty on success) and, on failure, the library's message
// (the typed error's text, from cst_last_error()).
struct Status {
  std::error_code code;
  std::string message;
  explicit operator bool() const noexcept { return !code; }
  bool is(Errc e) const noexcept { return code == make_error_code(e); }
};

// What the constructors and open() throw: the code and the library's message.
class Error : public std::system_error {
 public:
  explicit Error(const Status& s) : std::system_error(s.code, s.message) {}
};

namespace detail {
// Status of a C call: the message is read only on failure.
inline Status status(CstStatus rc) {
  if (rc == CST_OK) return {};
  return {make_error_code(static_cast<Errc>(rc)), cst_last_error()};
}

// A timeout in µs for the C ABI: negative = none (the reference's milliseconds{-1}).
template <class Rep, class Period>
inline int64_t micros(std::chrono::duration<Rep, Period> d) {
  if (d.count() < 0) return -1;
  return std::chrono::duration_cast<std::chrono::microseconds>(d).count();
}
}  // namespace detail

}  // namespace capnproto_shm_transport

#endif  // CAPNP_SHM_TRANSPORT_STATUS_HPP
