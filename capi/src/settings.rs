//! Live settings, statistics and channel housekeeping: poll intervals and wait modes of
//! both sides, stats, geometry, peer state, removal and listing.

use std::ffi::c_char;
use std::sync::PoisonError;
use std::time::Duration;

use capnp_shm_transport::{DirectionStats, PeerState, WaitMode};

use crate::handle::{handle_arg, name_arg, out_arg, send_half, CstTransport};
use crate::options::{wait_mode_arg, CstWaitMode};
use crate::status::{guard, CstStatus, Failure, CST_BUFFER_TOO_SMALL};

/// One direction's counters (an advisory snapshot).
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct CstRingStats {
    /// Payload bytes per slot.
    pub slot_size: u64,
    /// Slots in the ring.
    pub slot_count: u64,
    /// Slots published and not yet released.
    pub used_slots: u64,
    /// 1 when the writing side of this direction has shut down.
    pub shutdown: u32,
    /// Messages published so far.
    pub messages_sent: u64,
    /// Payload bytes published so far.
    pub bytes_sent: u64,
    /// Messages consumed so far.
    pub messages_received: u64,
    /// Payload bytes consumed so far.
    pub bytes_received: u64,
}

/// Both directions' counters as seen from this side: `tx` is the ring it writes.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct CstStats {
    /// The ring this side writes.
    pub tx: CstRingStats,
    /// The ring this side reads.
    pub rx: CstRingStats,
}

/// Whether the peer is there.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CstPeerState {
    /// No peer has attached yet (side A before B opens).
    CST_PEER_STATE_NOT_ATTACHED = 0,
    /// The peer is attached and alive.
    CST_PEER_STATE_ALIVE = 1,
    /// The peer closed its side.
    CST_PEER_STATE_CLOSED = 2,
    /// The peer process died.
    CST_PEER_STATE_DEAD = 3,
}

fn ring(d: DirectionStats) -> CstRingStats {
    CstRingStats {
        slot_size: d.slot_size as u64,
        slot_count: d.slot_count as u64,
        used_slots: d.used_slots as u64,
        shutdown: d.producer_closed.into(),
        messages_sent: d.messages_sent,
        bytes_sent: d.bytes_sent,
        messages_received: d.messages_received,
        bytes_received: d.bytes_received,
    }
}

/// Writes both directions' counters into `*out`.
///
/// # Safety
/// `handle` is a live handle (or null); `out` is writable.
#[no_mangle]
pub unsafe extern "C" fn cst_stats(handle: *const CstTransport, out: *mut CstStats) -> CstStatus {
    guard(|| {
        // SAFETY: per the contract.
        let h = unsafe { handle_arg(handle) }?;
        // SAFETY: as above.
        let out = unsafe { out_arg(out, "out") }?;
        let s = h.control.stats();
        *out = CstStats {
            tx: ring(s.outgoing),
            rx: ring(s.incoming),
        };
        Ok(())
    })
}

/// The geometry and role: slot size, slot count, and 1 for side A (the creator), 0 for B.
/// Any out-pointer may be null (that value is not wanted).
///
/// # Safety
/// `handle` is a live handle (or null); each non-null pointer is writable.
#[no_mangle]
pub unsafe extern "C" fn cst_info(
    handle: *const CstTransport,
    slot_size: *mut u64,
    slot_count: *mut u64,
    is_creator: *mut u32,
) -> CstStatus {
    guard(|| {
        // SAFETY: per the contract.
        let h = unsafe { handle_arg(handle) }?;
        // SAFETY: each pointer is null or writable, per the contract.
        unsafe {
            if let Some(p) = slot_size.as_mut() {
                *p = h.control.slot_size() as u64;
            }
            if let Some(p) = slot_count.as_mut() {
                *p = h.control.slot_count() as u64;
            }
            if let Some(p) = is_creator.as_mut() {
                *p = h.control.is_creator().into();
            }
        }
        Ok(())
    })
}

/// The longest message this side can send, in bytes.
///
/// # Safety
/// `handle` is a live handle (or null) with no send running on another thread; `out` is
/// writable.
#[no_mangle]
pub unsafe extern "C" fn cst_max_message_len(
    handle: *const CstTransport,
    out: *mut usize,
) -> CstStatus {
    guard(|| {
        // SAFETY: per the contract.
        let h = unsafe { handle_arg(handle) }?;
        // SAFETY: as above.
        let out = unsafe { out_arg(out, "out") }?;
        // SAFETY: one send-side call at a time per handle (the C contract).
        *out = unsafe { send_half(h) }.max_message_len();
        Ok(())
    })
}

/// Sets this side's (`remote` = 0) or the peer's (`remote` != 0) poll interval in µs (at
/// most 1,000,000); both sides see the new value. 0 with `CST_WAIT_POLL` busy-spins.
///
/// # Safety
/// `handle` is a live handle (or null).
#[no_mangle]
pub unsafe extern "C" fn cst_set_poll_us(
    handle: *const CstTransport,
    remote: u32,
    us: u64,
) -> CstStatus {
    guard(|| {
        // SAFETY: per the contract.
        let h = unsafe { handle_arg(handle) }?;
        let d = Duration::from_micros(us);
        if remote != 0 {
            h.control.set_remote_poll_interval(d)?;
        } else {
            h.control.set_local_poll_interval(d)?;
        }
        Ok(())
    })
}

/// This side's (`remote` = 0) or the peer's poll interval in µs, into `*out`.
///
/// # Safety
/// `handle` is a live handle (or null); `out` is writable.
#[no_mangle]
pub unsafe extern "C" fn cst_poll_us(
    handle: *const CstTransport,
    remote: u32,
    out: *mut u64,
) -> CstStatus {
    guard(|| {
        // SAFETY: per the contract.
        let h = unsafe { handle_arg(handle) }?;
        // SAFETY: as above.
        let out = unsafe { out_arg(out, "out") }?;
        let d = if remote != 0 {
            h.control.remote_poll_interval()
        } else {
            h.control.local_poll_interval()
        };
        *out = d.as_micros() as u64;
        Ok(())
    })
}

/// Sets this side's (`remote` = 0) or the peer's wait mode (a `CstWaitMode`; another value
/// is refused with `CST_INVALID_ARGUMENT`).
///
/// # Safety
/// `handle` is a live handle (or null).
#[no_mangle]
pub unsafe extern "C" fn cst_set_wait_mode(
    handle: *const CstTransport,
    remote: u32,
    mode: u32,
) -> CstStatus {
    guard(|| {
        // SAFETY: per the contract.
        let h = unsafe { handle_arg(handle) }?;
        let mode = wait_mode_arg(mode)?;
        if remote != 0 {
            h.control.set_remote_wait_mode(mode);
        } else {
            h.control.set_local_wait_mode(mode);
        }
        Ok(())
    })
}

/// This side's (`remote` = 0) or the peer's wait mode, into `*out`.
///
/// # Safety
/// `handle` is a live handle (or null); `out` is writable.
#[no_mangle]
pub unsafe extern "C" fn cst_wait_mode(
    handle: *const CstTransport,
    remote: u32,
    out: *mut CstWaitMode,
) -> CstStatus {
    guard(|| {
        // SAFETY: per the contract.
        let h = unsafe { handle_arg(handle) }?;
        // SAFETY: as above.
        let out = unsafe { out_arg(out, "out") }?;
        let mode = if remote != 0 {
            h.control.remote_wait_mode()
        } else {
            h.control.local_wait_mode()
        };
        *out = match mode {
            WaitMode::Block => CstWaitMode::CST_WAIT_BLOCK,
            _ => CstWaitMode::CST_WAIT_POLL,
        };
        Ok(())
    })
}

/// Whether the peer is attached, alive, closed or dead, into `*out`.
///
/// # Safety
/// `handle` is a live handle (or null); `out` is writable.
#[no_mangle]
pub unsafe extern "C" fn cst_peer_state(
    handle: *const CstTransport,
    out: *mut CstPeerState,
) -> CstStatus {
    guard(|| {
        // SAFETY: per the contract.
        let h = unsafe { handle_arg(handle) }?;
        // SAFETY: as above.
        let out = unsafe { out_arg(out, "out") }?;
        *out = match h.control.peer_state() {
            PeerState::NotAttached => CstPeerState::CST_PEER_STATE_NOT_ATTACHED,
            PeerState::Alive => CstPeerState::CST_PEER_STATE_ALIVE,
            PeerState::Closed => CstPeerState::CST_PEER_STATE_CLOSED,
            _ => CstPeerState::CST_PEER_STATE_DEAD,
        };
        Ok(())
    })
}

/// How many times the receive callback reported a failure (returned non-zero; in C++,
/// threw), into `*out`.
///
/// # Safety
/// `handle` is a live handle (or null); `out` is writable.
#[no_mangle]
pub unsafe extern "C" fn cst_callback_failures(
    handle: *const CstTransport,
    out: *mut u64,
) -> CstStatus {
    guard(|| {
        // SAFETY: per the contract.
        let h = unsafe { handle_arg(handle) }?;
        // SAFETY: as above.
        let out = unsafe { out_arg(out, "out") }?;
        *out = *h
            .callback_failures
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        Ok(())
    })
}

/// Removes channel `name`'s segments; `*removed` (if not null) gets 1 when there were any.
///
/// # Safety
/// `name` is NUL-terminated (or null); `removed` is null or writable.
#[no_mangle]
pub unsafe extern "C" fn cst_remove(name: *const c_char, removed: *mut u32) -> CstStatus {
    guard(|| {
        // SAFETY: per the contract.
        let name = unsafe { name_arg(name) }?;
        let any = capnp_shm_transport::remove_channel(name)?;
        // SAFETY: null or writable, per the contract.
        if let Some(out) = unsafe { removed.as_mut() } {
            *out = any.into();
        }
        Ok(())
    })
}

/// Lists the channels in `/dev/shm`: their names, one per line, NUL-terminated, into `buf`
/// (`capacity` bytes). `*needed` gets the bytes the list takes (NUL included); when that
/// is more than `capacity`, nothing is written and `CST_BUFFER_TOO_SMALL` is returned.
///
/// # Safety
/// `buf` is writable for `capacity` bytes (null only with capacity 0); `needed` is
/// writable.
#[no_mangle]
pub unsafe extern "C" fn cst_list(
    buf: *mut c_char,
    capacity: usize,
    needed: *mut usize,
) -> CstStatus {
    guard(|| {
        // SAFETY: per the contract.
        let needed = unsafe { out_arg(needed, "needed") }?;
        if buf.is_null() && capacity > 0 {
            return Err(Failure::null("buf"));
        }
        let names = capnp_shm_transport::inspect::list_channels()?;
        let mut text = names.join("\n").into_bytes();
        text.push(0);
        *needed = text.len();
        if text.len() > capacity {
            return Err(Failure::new(
                CST_BUFFER_TOO_SMALL,
                format!("the list takes {} bytes, the buffer {capacity}", text.len()),
            ));
        }
        // SAFETY: `buf` is writable for `capacity` >= text.len() bytes per the contract.
        unsafe { std::ptr::copy_nonoverlapping(text.as_ptr(), buf.cast::<u8>(), text.len()) };
        Ok(())
    })
}
