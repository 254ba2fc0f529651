//! [`Ready`]: the future every async call awaits before it does its work with
//! `Timeout::Immediate`. It resolves once the half can act at once (a message is there,
//! there is room) or must report an error; it costs nothing while traffic flows (one
//! check). When there is nothing yet (in block mode) it spins for the block-mode spin
//! phase, in short bursts: each poll spins [`SPINS_PER_POLL`] rounds, then yields to the
//! executor (waking its own task), so other tasks of a single-threaded executor (an RPC
//! system's, say) run meanwhile instead of waiting out the spin. Then it parks the task
//! with the half's [`Parker`] and returns `Pending`.
//!
//! Waiting and acting are separate steps so that cancellation is safe by construction:
//! dropping the future only withdraws the parked job; the send or receive that follows
//! it is one non-blocking call, which publishes or takes a whole message or nothing.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Instant;

use super::parker::{Job, Parker};
use crate::error::Result;
use crate::sync::thread;

/// Spin rounds (a spin-loop hint and a check each) per poll before yielding.
const SPINS_PER_POLL: u32 = 64;

/// What a half can do now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Readiness {
    /// Act now (it will not wait).
    Now,
    /// Nothing yet: wait for the peer (a message, free slots), its departure, or a new link.
    Empty,
    /// The peer is gone and the channel waits for a reconnection.
    Reconnecting,
}

/// A sending or receiving half as the async calls see it.
pub(super) trait Half {
    /// What the half can do now with a message of `len` bytes (`len` is the sender's).
    fn readiness(&mut self, len: usize) -> Result<Readiness>;
    /// The waiter thread's job for `readiness` (`Empty` or `Reconnecting`).
    fn job(&self, readiness: Readiness, len: usize) -> Job;
    /// The half's waiter thread (and its spin setting).
    fn parker(&self) -> &Parker;
    /// The same, to change its settings.
    fn parker_mut(&mut self) -> &mut Parker;
    /// Whether this side waits in block mode (spin first, then sleep).
    fn block_mode(&self) -> bool;
}

/// Resolves once `half` can act on a message of `len` bytes without waiting, or with the
/// error that ends the wait (the same typed errors as the blocking calls).
pub(super) struct Ready<'a, H: Half> {
    half: &'a mut H,
    len: usize,
    ticket: Option<u64>,
    phase: Phase,
}

/// Where a waiting [`Ready`] is.
#[derive(Clone, Copy)]
enum Phase {
    /// Not polled with nothing to do yet.
    Fresh,
    /// Spinning since then (block mode), a burst per poll.
    Spinning(Instant),
    /// Parked with the waiter thread (or spinning is over).
    Parking,
}

impl<'a, H: Half> Ready<'a, H> {
    pub(super) fn new(half: &'a mut H, len: usize) -> Self {
        Ready {
            half,
            len,
            ticket: None,
            phase: Phase::Fresh,
        }
    }
}

impl<H: Half> Future for Ready<'_, H> {
    type Output = Result<()>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<()>> {
        let this = self.get_mut();
        let mut state = this.half.readiness(this.len);
        if matches!(state, Ok(Readiness::Empty)) {
            if let Phase::Fresh = this.phase {
                this.phase = if this.half.block_mode() {
                    Phase::Spinning(Instant::now())
                } else {
                    Phase::Parking
                };
            }
            if let Phase::Spinning(since) = this.phase {
                state = spin(this.half, this.len);
                if matches!(state, Ok(Readiness::Empty)) {
                    if since.elapsed() < this.half.parker().spin() {
                        // Spin on at the next poll, after the executor's other tasks.
                        cx.waker().wake_by_ref();
                        return Poll::Pending;
                    }
                    this.phase = Phase::Parking;
                }
            }
        }
        let half = &*this.half;
        match state {
            Ok(waiting @ (Readiness::Empty | Readiness::Reconnecting)) => {
                let job = || half.job(waiting, this.len);
                match half.parker().park(&mut this.ticket, cx.waker(), job) {
                    Ok(()) => Poll::Pending,
                    Err(e) => Poll::Ready(Err(e)),
                }
            }
            done => {
                half.parker().cancel(&mut this.ticket);
                Poll::Ready(done.map(drop))
            }
        }
    }
}

impl<H: Half> Drop for Ready<'_, H> {
    fn drop(&mut self) {
        self.half.parker().cancel(&mut self.ticket);
    }
}

/// One burst of the spin phase: re-check after every spin-loop hint, as a blocking
/// call's spin does, [`SPINS_PER_POLL`] times at most.
fn spin<H: Half>(half: &mut H, len: usize) -> Result<Readiness> {
    for _ in 0..SPINS_PER_POLL {
        thread::spin_loop();
        match half.readiness(len)? {
            Readiness::Empty => {}
            other => return Ok(other),
        }
    }
    Ok(Readiness::Empty)
}
