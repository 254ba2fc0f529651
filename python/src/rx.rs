//! The receiving half as Python uses it: a [`Receiver`] and at most one message held past
//! the call that received it — lent to a `recv_view` block, or kept because the buffer
//! given to `recv_into` was too small (the next receive delivers it again).
//!
//! A held message is a [`RecvGuard`] borrowing the receiver, stored beside it. The
//! receiver lives on the heap at a fixed address (a raw pointer from `Box::into_raw`) and
//! is not touched while a guard exists, so the guard's borrow stays valid; the guard is
//! always dropped before the receiver is freed.

use std::ptr::NonNull;
use std::time::Duration;

use capnp_shm_transport::{Error, Receiver, RecvGuard};

/// Why a message is held.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Hold {
    /// Lent to a view; released by [`Rx::end_view`] with this number.
    View(u64),
    /// Not delivered yet (the caller's buffer was too small): the next receive takes it.
    Pending,
}

/// A receiver and the message held from it, if any.
pub(crate) struct Rx {
    /// Borrows `*receiver`: dropped first (see `Drop`).
    held: Option<(RecvGuard<'static>, Hold)>,
    receiver: NonNull<Receiver>,
    views: u64,
}

// SAFETY: `Rx` owns the receiver (a `Receiver` is `Send`) and the guard borrowing it; the
// two move together and are used by one thread at a time (behind a mutex).
unsafe impl Send for Rx {}

/// What a receive found.
pub(crate) enum Got<'a> {
    /// A message, borrowed until the guard drops.
    Message(RecvGuard<'a>),
    /// A message held as `Pending`, to deliver now.
    Pending(&'a [u8]),
}

impl Rx {
    pub(crate) fn new(receiver: Receiver) -> Rx {
        Rx {
            held: None,
            receiver: NonNull::from(Box::leak(Box::new(receiver))),
            views: 0,
        }
    }

    /// The receiver, or `None` while a message is held.
    fn receiver(&mut self) -> Option<&mut Receiver> {
        if self.held.is_some() {
            return None;
        }
        // SAFETY: `receiver` came from `Box::leak` and is freed only in `Drop`; no guard
        // borrows it (checked just before), and `&mut self` makes this borrow unique.
        Some(unsafe { self.receiver.as_mut() })
    }

    /// Whether a view holds a message.
    pub(crate) fn view_open(&self) -> bool {
        matches!(self.held, Some((_, Hold::View(_))))
    }

    /// Receives one message (a pending one first). `Err(None)` when a view is open.
    pub(crate) fn recv(&mut self, timeout: Duration) -> Result<Got<'_>, Option<Error>> {
        if self.view_open() {
            return Err(None);
        }
        #[allow(clippy::unnecessary_unwrap)]
        // `if let` here trips the borrow checker (NLL problem case 3)
        if self.held.is_some() {
            let (guard, _) = self.held.as_ref().expect("checked just above");
            return Ok(Got::Pending(guard));
        }
        let receiver = self.receiver().ok_or(None)?;
        receiver.recv(timeout).map(Got::Message).map_err(Some)
    }

    /// Drops the pending message (after delivering it).
    pub(crate) fn clear_pending(&mut self) {
        if matches!(self.held, Some((_, Hold::Pending))) {
            self.held = None;
        }
    }

    /// Receives one message and keeps it held as `hold` (a new view's number for
    /// `None`); returns its address, length and view number.
    pub(crate) fn hold(
        &mut self,
        timeout: Duration,
        view: bool,
    ) -> Result<(usize, usize, u64), Option<Error>> {
        if self.view_open() {
            return Err(None);
        }
        if self.held.is_none() {
            // SAFETY: no guard exists (checked), so this is the only borrow of the
            // receiver; it is stored in `held`, which is dropped before the receiver is
            // freed (`Drop`) and before the receiver is used again (`receiver()` refuses
            // while `held` is set). The lifetime is widened to 'static for that storage.
            let receiver: &'static mut Receiver = unsafe { &mut *self.receiver.as_ptr() };
            let guard = receiver.recv(timeout).map_err(Some)?;
            self.held = Some((guard, Hold::Pending));
        }
        let (guard, hold) = self.held.as_mut().expect("set above");
        let id = if view {
            self.views += 1;
            *hold = Hold::View(self.views);
            self.views
        } else {
            0
        };
        Ok((guard.as_ptr() as usize, guard.len(), id))
    }

    /// Releases the message lent to view `id` (no effect if it is not the open view).
    pub(crate) fn end_view(&mut self, id: u64) {
        if matches!(self.held, Some((_, Hold::View(v))) if v == id) {
            self.held = None;
        }
    }

    /// The receiver for calls that take it whole (batch receives); `None` while held.
    pub(crate) fn receiver_mut(&mut self) -> Option<&mut Receiver> {
        self.receiver()
    }
}

impl Drop for Rx {
    fn drop(&mut self) {
        self.held = None; // the guard borrows the receiver: it goes first
                          // SAFETY: `receiver` came from `Box::leak` in `new` and is freed only here, after
                          // the only borrow of it (`held`) was dropped.
        drop(unsafe { Box::from_raw(self.receiver.as_ptr()) });
    }
}
