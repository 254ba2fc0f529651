//! The options of `cst_create` and `cst_open`: sizes, wait mode, trust, open timeout and the
//! receive callback with its user pointer, and how they become a `ChannelBuilder`.

use std::ffi::c_void;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use capnp_shm_transport::{Channel, ChannelBuilder, Trust, WaitMode};

use crate::handle::{out_arg, timeout_from_us};
use crate::status::{guard, CstStatus, Failure, CST_INVALID_ARGUMENT};

/// A receive callback: called on the handle's receive thread with each message, in place
/// (valid only during the call). Returns 0, or non-zero to report a failure (counted by
/// `cst_callback_failures`; the thread goes on). It must not unwind: a C++ callback catches
/// its exceptions (the C++ header's trampoline does). It must not close its own handle, and
/// it may send on it only if no other thread sends at the same time.
pub type CstReceiveFn =
    Option<unsafe extern "C" fn(user: *mut c_void, data: *const u8, len: usize) -> i32>;

/// How a side waits when idle.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CstWaitMode {
    /// The reference design's: busy spin with poll interval 0, else sleep it per round.
    CST_WAIT_POLL = 0,
    /// Spin briefly, then sleep on a futex until the peer wakes it (the default).
    CST_WAIT_BLOCK = 1,
}

/// How received messages are read (see the README's "Trust").
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CstTrust {
    /// In place, zero copy (the default).
    CST_TRUST_COOPERATING = 0,
    /// Each message copied once out of the slot before anything reads it.
    CST_TRUST_UNTRUSTED = 1,
}

/// Options of `cst_create` and `cst_open`; fill with `cst_options_default` first.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct CstOptions {
    /// Largest message in bytes (side A; side B takes A's).
    pub slot_size: usize,
    /// Slots per direction, a power of two (side A).
    pub slot_count: usize,
    /// How this side waits when idle: a `CstWaitMode` (any other value is refused with
    /// `CST_INVALID_ARGUMENT`).
    pub wait_mode: u32,
    /// This side's poll interval in µs (0 = busy spin in `CST_WAIT_POLL`).
    pub poll_us: u32,
    /// Side B: how long to wait for side A, in ms; negative = no limit.
    pub open_timeout_ms: i64,
    /// How received messages are read: a `CstTrust` (any other value is refused).
    pub trust: u32,
    /// With a callback, a receive thread delivers every message to it and direct
    /// receives fail with `CST_RECEIVER_IN_USE`.
    pub callback: CstReceiveFn,
    /// Passed to `callback` unchanged.
    pub callback_user: *mut c_void,
}

/// A user pointer and function moved into the receive thread.
struct UserCallback {
    call: unsafe extern "C" fn(*mut c_void, *const u8, usize) -> i32,
    user: *mut c_void,
    failures: Arc<Mutex<u64>>,
}

// SAFETY: the C contract of `CstOptions::callback` is that the function may be called on
// the handle's receive thread with `callback_user`; the pointer is only passed back.
unsafe impl Send for UserCallback {}

impl UserCallback {
    fn deliver(&mut self, msg: &[u8]) {
        // SAFETY: `call` is the user's function with the user's pointer, as documented;
        // `msg` is valid for `msg.len()` bytes for the duration of the call.
        let rc = unsafe { (self.call)(self.user, msg.as_ptr(), msg.len()) };
        if rc != 0 {
            *self.failures.lock().unwrap_or_else(PoisonError::into_inner) += 1;
        }
    }
}

/// A wait mode passed as an integer from C.
pub(crate) fn wait_mode_arg(mode: u32) -> Result<WaitMode, Failure> {
    match mode {
        m if m == CstWaitMode::CST_WAIT_POLL as u32 => Ok(WaitMode::Poll),
        m if m == CstWaitMode::CST_WAIT_BLOCK as u32 => Ok(WaitMode::Block),
        m => Err(Failure::new(
            CST_INVALID_ARGUMENT,
            format!("wait mode {m} is none of CST_WAIT_POLL (0), CST_WAIT_BLOCK (1)"),
        )),
    }
}

pub(crate) fn builder(
    name: &str,
    options: &CstOptions,
    failures: &Arc<Mutex<u64>>,
) -> Result<ChannelBuilder, Failure> {
    let trust = match options.trust {
        t if t == CstTrust::CST_TRUST_COOPERATING as u32 => Trust::Cooperating,
        t if t == CstTrust::CST_TRUST_UNTRUSTED as u32 => Trust::Untrusted,
        t => {
            return Err(Failure::new(
                CST_INVALID_ARGUMENT,
                format!("trust {t} is none of CST_TRUST_COOPERATING (0), CST_TRUST_UNTRUSTED (1)"),
            ))
        }
    };
    let mut b = Channel::builder(name)
        .slot_size(options.slot_size)
        .slot_count(options.slot_count)
        .trust(trust)
        .open_timeout(timeout_from_us(
            options.open_timeout_ms.saturating_mul(1000),
        ));
    b = match wait_mode_arg(options.wait_mode)? {
        WaitMode::Block => b.wait_mode(WaitMode::Block),
        _ => b.poll_interval(Duration::from_micros(options.poll_us.into())),
    };
    if let Some(call) = options.callback {
        let mut cb = UserCallback {
            call,
            user: options.callback_user,
            failures: failures.clone(),
        };
        b = b.on_receive(move |msg: &[u8]| cb.deliver(msg));
    }
    Ok(b)
}

/// Fills `options` with the defaults: slot size 1024, 64 slots, block wait mode, poll
/// interval 0, open timeout 5000 ms, cooperating trust, no callback.
///
/// # Safety
/// `options` is null (reported as `CST_NULL_POINTER`) or writable.
#[no_mangle]
pub unsafe extern "C" fn cst_options_default(options: *mut CstOptions) -> CstStatus {
    guard(|| {
        // SAFETY: null, or valid for writes by the caller's contract.
        let options = unsafe { out_arg(options, "options") }?;
        *options = CstOptions {
            slot_size: capnp_shm_transport::DEFAULT_SLOT_SIZE,
            slot_count: capnp_shm_transport::DEFAULT_SLOT_COUNT,
            wait_mode: CstWaitMode::CST_WAIT_BLOCK as u32,
            poll_us: 0,
            open_timeout_ms: 5000,
            trust: CstTrust::CST_TRUST_COOPERATING as u32,
            callback: None,
            callback_user: std::ptr::null_mut(),
        };
        Ok(())
    })
}
