//! [`Ready`]: the future every async call awaits before it does its work with
//! `Timeout::Immediate`. It resolves once the half can act at once (a message is there,
//! there is room) or must report an error; it costs nothing while traffic flows (one
//! check), spins for the block-mode spin phase when there is nothing yet (in block mode),
//! then parks the task with the half's [`Parker`] and returns `Pending`.
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
use crate::wait::Backoff;

/// Spin rounds between two reads of the clock while spinning.
const SPINS_PER_CLOCK_CHECK: u32 = 64;

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
    /// The half's waiter thread.
    fn parker(&self) -> &Parker;
    /// Whether this side waits in block mode (spin first, then sleep).
    fn block_mode(&self) -> bool;
}

/// Resolves once `half` can act on a message of `len` bytes without waiting, or with the
/// error that ends the wait (the same typed errors as the blocking calls).
pub(super) struct Ready<'a, H: Half> {
    half: &'a mut H,
    len: usize,
    ticket: Option<u64>,
    spun: bool,
}

impl<'a, H: Half> Ready<'a, H> {
    pub(super) fn new(half: &'a mut H, len: usize) -> Self {
        Ready {
            half,
            len,
            ticket: None,
            spun: false,
        }
    }
}

impl<H: Half> Future for Ready<'_, H> {
    type Output = Result<()>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<()>> {
        let this = self.get_mut();
        let mut state = this.half.readiness(this.len);
        if matches!(state, Ok(Readiness::Empty)) && !this.spun {
            this.spun = true;
            if this.half.block_mode() {
                state = spin(this.half, this.len);
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

/// The block-mode spin phase: re-check after every spin-loop hint (as a blocking call's
/// spin does), reading the clock every [`SPINS_PER_CLOCK_CHECK`] rounds.
fn spin<H: Half>(half: &mut H, len: usize) -> Result<Readiness> {
    let start = Instant::now();
    let mut spins = 0u32;
    loop {
        thread::spin_loop();
        match half.readiness(len)? {
            Readiness::Empty => {
                spins = spins.wrapping_add(1);
                if spins % SPINS_PER_CLOCK_CHECK == 0 && start.elapsed() >= Backoff::DEFAULT.spin {
                    return Ok(Readiness::Empty);
                }
            }
            other => return Ok(other),
        }
    }
}
