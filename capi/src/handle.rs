//! The opaque handle: creating (side A), opening (side B) and closing a channel.
//!
//! A handle is a [`CstTransport`]; C sees only a pointer to it. Its send side and its
//! receive side are separate cells, so one thread may send while another receives on the
//! same handle (as with the Rust `Channel::split`); the settings and stats calls may run on
//! any thread.

use std::cell::UnsafeCell;
use std::collections::HashSet;
use std::ffi::{c_char, CStr};
use std::ptr::NonNull;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use capnp_shm_transport::{Channel, Control, Receiver, RecvGuard, Sender, Timeout};

use crate::options::{builder, CstOptions};
use crate::status::{guard, CstStatus, Failure, CST_INVALID_ARGUMENT, CST_INVALID_HANDLE};

/// A received message lent out of its slot until released.
pub(crate) struct Borrowed {
    pub(crate) guard: RecvGuard<'static>,
    /// `false` while it is kept for a receive whose buffer was too small.
    pub(crate) handed_out: bool,
}

/// The receiving half: the receiver, and the message borrowed from it (if any).
pub(crate) struct RecvHalf {
    pub(crate) borrowed: Option<Borrowed>,
    /// Owned (from `Box::into_raw`); freed in `Drop` after `borrowed`, which points into it.
    pub(crate) receiver: NonNull<Receiver>,
}

impl Drop for RecvHalf {
    fn drop(&mut self) {
        self.borrowed = None;
        // SAFETY: `receiver` came from `Box::into_raw` in `Handle::new` and is freed only
        // here; the only borrow of it (`borrowed`) was dropped on the line above.
        drop(unsafe { Box::from_raw(self.receiver.as_ptr()) });
    }
}

/// The sending half: a split-off sender, or the whole channel when a receive thread owns
/// the receiver.
// One per handle, inside the handle's own box: the variants' sizes do not matter.
#[allow(clippy::large_enum_variant)]
pub(crate) enum SendHalf {
    Split(Sender),
    WithThread(Channel),
}

impl SendHalf {
    pub(crate) fn sender(&mut self) -> &mut Sender {
        match self {
            SendHalf::Split(s) => s,
            SendHalf::WithThread(c) => c.sender(),
        }
    }
}

/// The C handle (`CstTransport*`): opaque to C.
pub struct CstTransport {
    // Field order is drop order: the receiving half (and its borrow) goes first.
    pub(crate) recv: Option<UnsafeCell<RecvHalf>>,
    pub(crate) send: UnsafeCell<SendHalf>,
    pub(crate) control: Control,
    pub(crate) callback_failures: Arc<Mutex<u64>>,
}

/// Handles not yet closed, by address: lets a second close of the same pointer fail
/// cleanly instead of freeing twice.
static LIVE: Mutex<Option<HashSet<usize>>> = Mutex::new(None);

fn live() -> std::sync::MutexGuard<'static, Option<HashSet<usize>>> {
    LIVE.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A timeout in µs as the library takes it: negative = none, 0 = try once.
pub(crate) fn timeout_from_us(us: i64) -> Timeout {
    match u64::try_from(us) {
        Err(_) => Timeout::Never,
        Ok(0) => Timeout::Immediate,
        Ok(us) => Timeout::After(Duration::from_micros(us)),
    }
}

/// Reads a NUL-terminated channel name.
///
/// # Safety
/// `name` is null or points to a NUL-terminated string.
pub(crate) unsafe fn name_arg<'a>(name: *const c_char) -> Result<&'a str, Failure> {
    if name.is_null() {
        return Err(Failure::null("name"));
    }
    // SAFETY: non-null, and NUL-terminated by the caller's contract.
    let name = unsafe { CStr::from_ptr(name) };
    name.to_str()
        .map_err(|_| Failure::new(CST_INVALID_ARGUMENT, "`name` is not UTF-8"))
}

/// Checks an out-parameter and returns it as a reference.
///
/// # Safety
/// `out` is null or valid for writes of a `T`.
pub(crate) unsafe fn out_arg<'a, T>(out: *mut T, what: &str) -> Result<&'a mut T, Failure> {
    // SAFETY: null is refused by `as_mut`; otherwise valid per the caller's contract.
    unsafe { out.as_mut() }.ok_or_else(|| Failure::null(what))
}

/// The handle behind a pointer.
///
/// # Safety
/// `handle` is null or a handle from `cst_create`/`cst_open` not yet closed.
pub(crate) unsafe fn handle_arg<'a>(
    handle: *const CstTransport,
) -> Result<&'a CstTransport, Failure> {
    // SAFETY: per the caller's contract.
    unsafe { handle.as_ref() }.ok_or_else(|| Failure::null("handle"))
}

fn wrap(
    channel: Channel,
    with_thread: bool,
    failures: Arc<Mutex<u64>>,
) -> Result<CstTransport, Failure> {
    let control = channel.control().clone();
    let (recv, send) = if with_thread {
        (None, SendHalf::WithThread(channel))
    } else {
        let (sender, receiver) = channel.split()?;
        let receiver = NonNull::from(Box::leak(Box::new(receiver)));
        let half = RecvHalf {
            borrowed: None,
            receiver,
        };
        (Some(UnsafeCell::new(half)), SendHalf::Split(sender))
    };
    Ok(CstTransport {
        recv,
        send: UnsafeCell::new(send),
        control,
        callback_failures: failures,
    })
}

/// Shared body of create and open.
///
/// # Safety
/// As `cst_create`.
unsafe fn attach(
    name: *const c_char,
    options: *const CstOptions,
    out: *mut *mut CstTransport,
    create: bool,
) -> CstStatus {
    guard(|| {
        // SAFETY: per this function's contract (the entry points').
        let out = unsafe { out_arg(out, "out") }?;
        *out = std::ptr::null_mut();
        // SAFETY: as above.
        let name = unsafe { name_arg(name) }?;
        // SAFETY: as above: null or a valid `CstOptions`.
        let options = unsafe { options.as_ref() }.ok_or_else(|| Failure::null("options"))?;
        let failures = Arc::new(Mutex::new(0));
        let b = builder(name, options, &failures)?;
        let channel = if create { b.create()? } else { b.open()? };
        let handle = Box::into_raw(Box::new(wrap(
            channel,
            options.callback.is_some(),
            failures,
        )?));
        live()
            .get_or_insert_with(HashSet::new)
            .insert(handle as usize);
        *out = handle;
        Ok(())
    })
}

/// Side A: creates channel `name` (removing stale segments of that name first) and stores
/// the new handle in `*out` (null on failure).
///
/// ```c
/// CstOptions o; cst_options_default(&o); o.slot_size = 256;
/// CstTransport* a = NULL;
/// if (cst_create("orders", &o, &a) != CST_OK) fprintf(stderr, "%s\n", cst_last_error());
/// ```
///
/// # Safety
/// `name` is NUL-terminated, `options` points to a `CstOptions`, `out` is writable (each
/// may be null: that is reported as `CST_NULL_POINTER`).
#[no_mangle]
pub unsafe extern "C" fn cst_create(
    name: *const c_char,
    options: *const CstOptions,
    out: *mut *mut CstTransport,
) -> CstStatus {
    // SAFETY: forwarded contract.
    unsafe { attach(name, options, out, true) }
}

/// Side B: opens channel `name`, waiting up to `options->open_timeout_ms` for side A.
///
/// # Safety
/// As `cst_create`.
#[no_mangle]
pub unsafe extern "C" fn cst_open(
    name: *const c_char,
    options: *const CstOptions,
    out: *mut *mut CstTransport,
) -> CstStatus {
    // SAFETY: forwarded contract.
    unsafe { attach(name, options, out, false) }
}

/// Closes `*handle` and sets `*handle` to null: marks this side closed (the peer's calls
/// then report `CST_CLOSED`), stops the receive thread, and on side A removes the
/// segments. Closing twice is safe: the second call through the same `handle` finds null,
/// and one through another copy of the freed pointer is recognised; both return
/// `CST_INVALID_HANDLE` and touch nothing. A borrowed message is released first.
///
/// # Safety
/// `handle` is null or points to a handle pointer; no other call on the handle may run.
#[no_mangle]
pub unsafe extern "C" fn cst_close(handle: *mut *mut CstTransport) -> CstStatus {
    guard(|| {
        // SAFETY: per the contract.
        let slot = unsafe { out_arg(handle, "handle") }?;
        let h = std::mem::replace(slot, std::ptr::null_mut());
        let was_live = !h.is_null() && live().as_mut().is_some_and(|set| set.remove(&(h as usize)));
        if !was_live {
            return Err(Failure::new(
                CST_INVALID_HANDLE,
                "the handle is closed already (or was never opened)",
            ));
        }
        // SAFETY: `h` came from `Box::into_raw` in `attach` and was still live (removed
        // from LIVE just now, under its lock, so only this call frees it).
        drop(unsafe { Box::from_raw(h) });
        Ok(())
    })
}

/// Used by the receive-side entry points: the receiving half, or why there is none.
///
/// # Safety
/// No other reference to the receiving half exists: the C contract allows one thread at a
/// time in a handle's receive-side calls, and each takes the half once.
// The half lives in an UnsafeCell; its exclusivity is the C contract's (above).
#[allow(clippy::mut_from_ref)]
pub(crate) unsafe fn recv_half(h: &CstTransport) -> Result<&mut RecvHalf, Failure> {
    let cell = h
        .recv
        .as_ref()
        .ok_or_else(|| Failure::from(capnp_shm_transport::Error::ReceiverInUse))?;
    // SAFETY: the only reference to the receiving half, per this function's contract.
    Ok(unsafe { &mut *cell.get() })
}

/// Used by the send-side entry points: the sender.
///
/// # Safety
/// No other reference to the sending half exists: the C contract allows one thread at a
/// time in a handle's send-side calls, and each takes the half once.
// The half lives in an UnsafeCell; its exclusivity is the C contract's (above).
#[allow(clippy::mut_from_ref)]
pub(crate) unsafe fn send_half(h: &CstTransport) -> &mut Sender {
    // SAFETY: the only reference to the sending half, per this function's contract.
    unsafe { &mut *h.send.get() }.sender()
}
