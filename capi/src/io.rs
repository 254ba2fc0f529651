//! Sending and receiving: copy in, write in place, copy out, and borrow/release in place.

use std::ffi::c_void;

use crate::handle::{
    handle_arg, out_arg, recv_half, send_half, timeout_from_us, Borrowed, CstTransport,
};
use crate::status::{
    guard, CstStatus, Failure, CST_BORROW_OUTSTANDING, CST_BUFFER_TOO_SMALL, CST_CALLBACK_FAILED,
    CST_INVALID_ARGUMENT,
};

/// Writes one message into `slot` (`capacity` bytes, 8-byte aligned) and returns its
/// length, or a negative value to send nothing (reported as `CST_CALLBACK_FAILED`). It must
/// not unwind.
pub type CstWriteFn =
    Option<unsafe extern "C" fn(user: *mut c_void, slot: *mut u8, capacity: usize) -> i64>;

/// Sends `len` bytes from `data`, waiting up to `timeout_us` µs for a free slot (negative:
/// no limit; 0: try once). `data` may be null only when `len` is 0.
///
/// ```c
/// cst_send(t, (const uint8_t*)"ping", 4, 100000);
/// ```
///
/// # Safety
/// `handle` is a live handle (or null); `data` is valid for `len` bytes.
#[no_mangle]
pub unsafe extern "C" fn cst_send(
    handle: *const CstTransport,
    data: *const u8,
    len: usize,
    timeout_us: i64,
) -> CstStatus {
    guard(|| {
        // SAFETY: per the contract.
        let h = unsafe { handle_arg(handle) }?;
        let msg: &[u8] = if len == 0 {
            &[]
        } else if data.is_null() {
            return Err(Failure::null("data"));
        } else {
            // SAFETY: non-null and valid for `len` bytes per the contract.
            unsafe { std::slice::from_raw_parts(data, len) }
        };
        // SAFETY: one send-side call at a time per handle (the C contract).
        unsafe { send_half(h) }.send(msg, timeout_from_us(timeout_us))?;
        Ok(())
    })
}

/// Sends a message written in place: waits up to `timeout_us` for a free slot, then calls
/// `write(user, slot, capacity)` once (`capacity` is the slot size), which returns the
/// message length (at most `capacity`) or a negative value to publish nothing. Zero copy.
///
/// # Safety
/// `handle` is a live handle (or null); `write` follows [`CstWriteFn`]'s contract.
#[no_mangle]
pub unsafe extern "C" fn cst_send_with(
    handle: *const CstTransport,
    write: CstWriteFn,
    user: *mut c_void,
    timeout_us: i64,
) -> CstStatus {
    // SAFETY: per the contract; capacity 0 means the slot size.
    unsafe { cst_send_with_capacity(handle, 0, write, user, timeout_us) }
}

/// Like [`cst_send_with`], for a message of up to `capacity` bytes (0: the slot size), of
/// any size up to `cst_max_message_len`: `write` gets `capacity` contiguous bytes in the
/// ring (over several slots when `capacity` exceeds the slot size). A `capacity` above the
/// largest message is `CST_MESSAGE_TOO_LARGE`, and nothing is written or sent.
///
/// # Safety
/// `handle` is a live handle (or null); `write` follows [`CstWriteFn`]'s contract.
#[no_mangle]
pub unsafe extern "C" fn cst_send_with_capacity(
    handle: *const CstTransport,
    capacity: usize,
    write: CstWriteFn,
    user: *mut c_void,
    timeout_us: i64,
) -> CstStatus {
    guard(|| {
        // SAFETY: per the contract.
        let h = unsafe { handle_arg(handle) }?;
        let write = write.ok_or_else(|| Failure::null("write"))?;
        let capacity = if capacity == 0 {
            h.control.slot_size()
        } else {
            capacity
        };
        // SAFETY: one send-side call at a time per handle (the C contract).
        let sender = unsafe { send_half(h) };
        sender.send_with_capacity(
            capacity,
            timeout_from_us(timeout_us),
            |slot: &mut [u8]| {
                // SAFETY: `slot` is writable for `slot.len()` bytes during the call.
                let n = unsafe { write(user, slot.as_mut_ptr(), slot.len()) };
                match usize::try_from(n) {
                    Ok(n) if n <= slot.len() => Ok(n),
                    Ok(n) => Err(Failure::new(
                        CST_INVALID_ARGUMENT,
                        format!("the writer returned {n} bytes for a slot of {}", slot.len()),
                    )),
                    Err(_) => Err(Failure::new(
                        CST_CALLBACK_FAILED,
                        format!("the writer gave up (returned {n}); nothing was sent"),
                    )),
                }
            },
        )
    })
}

/// Receives one message by copy into `buf` (`capacity` bytes), waiting up to `timeout_us`;
/// `*len` gets its length. If the message is longer than `capacity`, nothing is copied,
/// `*len` gets the length needed, `CST_BUFFER_TOO_SMALL` is returned and the message stays
/// first in line for the next receive.
///
/// # Safety
/// `handle` is a live handle (or null); `buf` is writable for `capacity` bytes; `len` is
/// writable.
#[no_mangle]
pub unsafe extern "C" fn cst_recv(
    handle: *const CstTransport,
    buf: *mut u8,
    capacity: usize,
    len: *mut usize,
    timeout_us: i64,
) -> CstStatus {
    guard(|| {
        // SAFETY: per the contract.
        let h = unsafe { handle_arg(handle) }?;
        // SAFETY: as above.
        let len = unsafe { out_arg(len, "len") }?;
        if buf.is_null() && capacity > 0 {
            return Err(Failure::null("buf"));
        }
        // SAFETY: one receive-side call at a time per handle (the C contract).
        let half = unsafe { recv_half(h) }?;
        let msg = take(half, timeout_us)?;
        *len = msg.guard.len();
        if msg.guard.len() > capacity {
            let needed = msg.guard.len();
            half.borrowed = Some(Borrowed {
                handed_out: false,
                ..msg
            });
            return Err(Failure::new(
                CST_BUFFER_TOO_SMALL,
                format!("the message has {needed} bytes, the buffer {capacity}; it is kept for the next receive"),
            ));
        }
        if !msg.guard.is_empty() {
            // SAFETY: `buf` is writable for `capacity` >= len bytes, and does not overlap the
            // slot (the caller's memory).
            unsafe { std::ptr::copy_nonoverlapping(msg.guard.as_ptr(), buf, msg.guard.len()) };
        }
        Ok(())
    })
}

/// The next message: one kept from an earlier receive, or a new one.
fn take(half: &mut crate::handle::RecvHalf, timeout_us: i64) -> Result<Borrowed, Failure> {
    match half.borrowed.take() {
        Some(b) if b.handed_out => {
            half.borrowed = Some(b);
            Err(Failure::new(
                CST_BORROW_OUTSTANDING,
                "a borrowed message is not released yet (call cst_recv_release first)",
            ))
        }
        Some(kept) => Ok(kept),
        None => {
            // SAFETY: `receiver` is owned by the half and outlives every guard taken from
            // it (`RecvHalf::drop` drops the borrow first); only this call uses it now,
            // and no other borrow of it exists (`borrowed` was None).
            let receiver = unsafe { &mut *half.receiver.as_ptr() };
            let guard = receiver.recv(timeout_from_us(timeout_us))?;
            Ok(Borrowed {
                guard,
                handed_out: true,
            })
        }
    }
}

/// Receives one message in place: `*data` and `*len` describe it, in the slot (8-byte
/// aligned), until `cst_recv_release`. Zero copy. Until then, receives on this handle
/// return `CST_BORROW_OUTSTANDING`.
///
/// # Safety
/// `handle` is a live handle (or null); `data` and `len` are writable.
#[no_mangle]
pub unsafe extern "C" fn cst_recv_borrow(
    handle: *const CstTransport,
    data: *mut *const u8,
    len: *mut usize,
    timeout_us: i64,
) -> CstStatus {
    guard(|| {
        // SAFETY: per the contract.
        let h = unsafe { handle_arg(handle) }?;
        // SAFETY: as above.
        let data = unsafe { out_arg(data, "data") }?;
        // SAFETY: as above.
        let len = unsafe { out_arg(len, "len") }?;
        // SAFETY: one receive-side call at a time per handle (the C contract).
        let half = unsafe { recv_half(h) }?;
        let msg = take(half, timeout_us)?;
        *data = msg.guard.as_ptr();
        *len = msg.guard.len();
        half.borrowed = Some(Borrowed {
            handed_out: true,
            ..msg
        });
        Ok(())
    })
}

/// Releases the message of the last `cst_recv_borrow`, handing its slot back to the peer.
/// `CST_INVALID_ARGUMENT` when nothing is borrowed.
///
/// # Safety
/// `handle` is a live handle (or null).
#[no_mangle]
pub unsafe extern "C" fn cst_recv_release(handle: *const CstTransport) -> CstStatus {
    guard(|| {
        // SAFETY: per the contract.
        let h = unsafe { handle_arg(handle) }?;
        // SAFETY: one receive-side call at a time per handle (the C contract).
        let half = unsafe { recv_half(h) }?;
        match half.borrowed.take() {
            Some(b) if b.handed_out => Ok(()),
            kept => {
                half.borrowed = kept;
                Err(Failure::new(CST_INVALID_ARGUMENT, "no message is borrowed"))
            }
        }
    })
}
