//! Status codes, the thread-local last error, and the guard every entry point runs in
//! (panics are caught there and never cross the C boundary).

use std::cell::RefCell;
use std::ffi::{c_char, CString};
use std::panic::{catch_unwind, AssertUnwindSafe};

use capnp_shm_transport::Error;

/// What a call returns: `CST_OK` (0), or why it failed. The message of the failure is
/// [`cst_last_error`]'s.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CstStatus {
    /// Success.
    CST_OK = 0,
    /// The timeout passed (ring full for a send, empty for a receive).
    CST_TIMEOUT = 1,
    /// The peer closed its side.
    CST_CLOSED = 2,
    /// The peer process died.
    CST_PEER_DEAD = 3,
    /// Side B is re-attaching to a restarted side A.
    CST_RECONNECTING = 4,
    /// Side B's reconnection gave up.
    CST_GAVE_UP = 5,
    /// The message is longer than the largest this side can send (`cst_max_message_len`).
    CST_MESSAGE_TOO_LARGE = 6,
    /// An argument is out of range (slot count not a power of two, a bad name, ...).
    CST_INVALID_ARGUMENT = 7,
    /// Side B waited its whole open timeout and side A never appeared.
    CST_NOT_FOUND = 8,
    /// That side of the channel is held by a live process.
    CST_SIDE_IN_USE = 9,
    /// A segment is not ours (another owner or mode).
    CST_FOREIGN = 10,
    /// This side receives through its callback thread; direct receives are refused.
    CST_RECEIVER_IN_USE = 11,
    /// A shared segment broke the layout contract.
    CST_CORRUPT = 12,
    /// A Cap'n Proto message did not decode.
    CST_DECODE = 13,
    /// A Cap'n Proto message could not be framed.
    CST_ENCODE = 14,
    /// An operating-system call failed.
    CST_OS = 15,
    /// A required pointer argument (handle, name, buffer, out-parameter) was null.
    CST_NULL_POINTER = 16,
    /// The handle was already closed (a second `cst_close` of the same handle).
    CST_INVALID_HANDLE = 17,
    /// A caller's buffer is too small for the message; the message is kept for the next
    /// receive, and the needed length is reported.
    CST_BUFFER_TOO_SMALL = 18,
    /// A borrowed message was not released yet (`cst_recv_release`).
    CST_BORROW_OUTSTANDING = 19,
    /// A user callback reported a failure (in C++: it threw).
    CST_CALLBACK_FAILED = 20,
    /// A bug: Rust code panicked; the panic was caught at the boundary.
    CST_PANIC = 21,
    /// An error this version of the C ABI has no code for (its message says what).
    CST_OTHER = 22,
}

pub use CstStatus::*;

/// A failure of one call: its status code and message.
#[derive(Debug)]
pub(crate) struct Failure {
    pub(crate) status: CstStatus,
    pub(crate) message: String,
}

impl Failure {
    pub(crate) fn new(status: CstStatus, message: impl Into<String>) -> Self {
        Failure {
            status,
            message: message.into(),
        }
    }

    /// A null pointer passed as the argument `what`.
    pub(crate) fn null(what: &str) -> Self {
        Failure::new(CST_NULL_POINTER, format!("`{what}` is a null pointer"))
    }
}

impl From<Error> for Failure {
    fn from(e: Error) -> Self {
        let status = match &e {
            Error::Timeout { .. } => CST_TIMEOUT,
            Error::Closed => CST_CLOSED,
            Error::PeerDead => CST_PEER_DEAD,
            Error::Reconnecting => CST_RECONNECTING,
            Error::GaveUp => CST_GAVE_UP,
            Error::MessageTooLarge { .. } => CST_MESSAGE_TOO_LARGE,
            Error::InvalidArgument { .. } => CST_INVALID_ARGUMENT,
            Error::NotFound { .. } => CST_NOT_FOUND,
            Error::SideInUse { .. } => CST_SIDE_IN_USE,
            Error::Foreign { .. } => CST_FOREIGN,
            Error::ReceiverInUse => CST_RECEIVER_IN_USE,
            Error::Corrupt(_) => CST_CORRUPT,
            Error::Decode(_) => CST_DECODE,
            Error::Encode(_) => CST_ENCODE,
            Error::Os { .. } => CST_OS,
            _ => CST_OTHER,
        };
        Failure::new(status, e.to_string())
    }
}

/// What an entry point's body returns.
pub(crate) type CallResult = Result<(), Failure>;

thread_local! {
    /// The message of this thread's last failed call (empty after a success).
    static LAST_ERROR: RefCell<CString> = RefCell::new(CString::default());
}

fn set_last_error(message: &str) {
    // A message never holds NUL bytes in practice; if one does, cut it there.
    let bytes = message.as_bytes();
    let end = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
    let text = CString::new(&bytes[..end]).unwrap_or_default();
    LAST_ERROR.with(|last| *last.borrow_mut() = text);
}

/// Runs an entry point's body: a panic becomes `CST_PANIC`, a failure sets the thread's
/// last error. A success leaves it alone (no allocation on the data path).
pub(crate) fn guard(body: impl FnOnce() -> CallResult) -> CstStatus {
    let outcome = catch_unwind(AssertUnwindSafe(body)).unwrap_or_else(|panic| {
        let what = panic
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| panic.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "unknown panic".into());
        Err(Failure::new(
            CST_PANIC,
            format!("internal error (panic caught at the C boundary): {what}"),
        ))
    });
    match outcome {
        Ok(()) => CST_OK,
        Err(f) => {
            set_last_error(&f.message);
            f.status
        }
    }
}

/// The message of the calling thread's last failed call (`""` if none failed yet). The
/// pointer stays valid until this thread's next failed call into this library.
///
/// ```c
/// if (cst_send(t, buf, len, 1000) != CST_OK) fprintf(stderr, "%s\n", cst_last_error());
/// ```
#[no_mangle]
pub extern "C" fn cst_last_error() -> *const c_char {
    catch_unwind(|| LAST_ERROR.with(|last| last.borrow().as_ptr()))
        .unwrap_or(c"internal error".as_ptr())
}

/// A constant name for a status code (`"CST_TIMEOUT"`, ...); `"CST_UNKNOWN"` for a value
/// that is none. Never null; the string is static.
#[no_mangle]
pub extern "C" fn cst_status_name(status: i32) -> *const c_char {
    const NAMES: [&std::ffi::CStr; 23] = [
        c"CST_OK",
        c"CST_TIMEOUT",
        c"CST_CLOSED",
        c"CST_PEER_DEAD",
        c"CST_RECONNECTING",
        c"CST_GAVE_UP",
        c"CST_MESSAGE_TOO_LARGE",
        c"CST_INVALID_ARGUMENT",
        c"CST_NOT_FOUND",
        c"CST_SIDE_IN_USE",
        c"CST_FOREIGN",
        c"CST_RECEIVER_IN_USE",
        c"CST_CORRUPT",
        c"CST_DECODE",
        c"CST_ENCODE",
        c"CST_OS",
        c"CST_NULL_POINTER",
        c"CST_INVALID_HANDLE",
        c"CST_BUFFER_TOO_SMALL",
        c"CST_BORROW_OUTSTANDING",
        c"CST_CALLBACK_FAILED",
        c"CST_PANIC",
        c"CST_OTHER",
    ];
    usize::try_from(status)
        .ok()
        .and_then(|i| NAMES.get(i))
        .map_or(c"CST_UNKNOWN".as_ptr(), |n| n.as_ptr())
}

/// The version of this library, as a static NUL-terminated string.
#[no_mangle]
pub extern "C" fn cst_version() -> *const c_char {
    c"capnp-shm-transport 0.1.0".as_ptr()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_status_has_its_own_name() {
        let all = [
            CST_OK,
            CST_TIMEOUT,
            CST_CLOSED,
            CST_PEER_DEAD,
            CST_RECONNECTING,
            CST_GAVE_UP,
            CST_MESSAGE_TOO_LARGE,
            CST_INVALID_ARGUMENT,
            CST_NOT_FOUND,
            CST_SIDE_IN_USE,
            CST_FOREIGN,
            CST_RECEIVER_IN_USE,
            CST_CORRUPT,
            CST_DECODE,
            CST_ENCODE,
            CST_OS,
            CST_NULL_POINTER,
            CST_INVALID_HANDLE,
            CST_BUFFER_TOO_SMALL,
            CST_BORROW_OUTSTANDING,
            CST_CALLBACK_FAILED,
            CST_PANIC,
            CST_OTHER,
        ];
        for (i, s) in all.into_iter().enumerate() {
            assert_eq!(s as usize, i);
            // SAFETY: cst_status_name returns a static NUL-terminated string.
            let name = unsafe { std::ffi::CStr::from_ptr(cst_status_name(s as i32)) };
            assert_eq!(name.to_str().unwrap(), format!("{s:?}"));
        }
        // SAFETY: as above.
        let unknown = unsafe { std::ffi::CStr::from_ptr(cst_status_name(99)) };
        assert_eq!(unknown.to_str().unwrap(), "CST_UNKNOWN");
    }

    #[test]
    fn a_panic_becomes_cst_panic_with_a_message() {
        let status = guard(|| panic!("boom"));
        assert_eq!(status, CST_PANIC);
        // SAFETY: cst_last_error returns this thread's NUL-terminated message.
        let msg = unsafe { std::ffi::CStr::from_ptr(cst_last_error()) };
        assert!(msg.to_str().unwrap().contains("boom"), "{msg:?}");
        assert_eq!(guard(|| Ok(())), CST_OK);
    }
}
