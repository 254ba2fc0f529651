//! How [`ShmNetwork`](crate::ShmNetwork) waits for the next incoming message: first it
//! polls the ring on the executor thread itself ([`SpinRecv`]: one non-blocking look per
//! poll, then `wake_by_ref` and `Pending`, so the executor's other tasks run between
//! looks), for a short window; then it parks with the channel's `recv_async` (a waiter
//! thread sleeps on the futex and wakes the task). A message caught while polling costs
//! no thread wake-up at all; a parked receive costs two per message (the waiter thread,
//! then the executor).
//!
//! Polling pays only when the peer runs meanwhile on a core of its own: on a machine
//! whose cores are taken (by other work, or by the poller itself) the peer cannot answer
//! until the poller gives up, and the window is lost. So the window is adaptive
//! ([`SpinPolicy`]): after a window that caught nothing the next receives park at once,
//! 1, 3, 7, … up to [`MAX_SKIP`] of them, and a catch resets it. An idle connection polls
//! one window and parks (no CPU while idle). It is off unless asked for
//! ([`set_default_spin`], `ShmNetwork::set_spin`): on the 2-vCPU machine this was
//! measured on, shared with other work, a 20 µs window made the one-call time worse,
//! not better (README, "RPC").

use std::future::Future;
use std::pin::Pin;
use std::sync::Mutex;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use capnp_shm_transport::{Error as ChannelError, Receiver, Timeout};

/// The longest run of receives that park at once after windows that caught nothing.
pub(crate) const MAX_SKIP: u32 = 63;

/// The window new networks start with (see [`set_default_spin`]).
static DEFAULT_SPIN: Mutex<Duration> = Mutex::new(Duration::ZERO);

/// Sets the polling window of the [`ShmNetwork`](crate::ShmNetwork)s made after this
/// call in this process (zero unless set: every receive parks at once, as the channel's
/// async calls do with `set_async_spin(0)`). `connect("shm://..")` and
/// [`Server`](crate::Server) use it. Worth setting (to about 20 µs, on both sides) only
/// where each process has a core of its own; see README, "RPC", for what it buys and
/// costs.
///
/// ```
/// use std::time::Duration;
/// capnp_shm_rpc::set_default_spin(Duration::from_micros(20));
/// assert_eq!(capnp_shm_rpc::default_spin(), Duration::from_micros(20));
/// ```
pub fn set_default_spin(window: Duration) {
    *DEFAULT_SPIN.lock().unwrap_or_else(|e| e.into_inner()) = window;
}

/// The window [`set_default_spin`] set (zero unless set).
pub fn default_spin() -> Duration {
    *DEFAULT_SPIN.lock().unwrap_or_else(|e| e.into_inner())
}

/// The adaptive window of one network's receives.
#[derive(Clone, Copy, Debug)]
pub(crate) struct SpinPolicy {
    window: Duration,
    /// Receives still to park at once.
    skip: u32,
    /// The length of the next run of skips, should a window catch nothing again.
    backoff: u32,
}

/// How a receive's polling window ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// A message was there at the first look: polling neither helped nor cost.
    Ready,
    /// A message came while polling: no thread wake-up was needed.
    Caught,
    /// The window passed with no message (or there was none to poll).
    Missed,
}

impl SpinPolicy {
    pub(crate) fn new(window: Duration) -> SpinPolicy {
        SpinPolicy {
            window,
            skip: 0,
            backoff: 0,
        }
    }

    /// The deadline of this receive's polling window, or `None` to park at once.
    pub(crate) fn begin(&mut self, now: Instant) -> Option<Instant> {
        if self.window.is_zero() {
            return None;
        }
        if self.skip > 0 {
            self.skip -= 1;
            return None;
        }
        Some(now + self.window)
    }

    /// Records how a window ended (a skipped one is not recorded).
    pub(crate) fn record(&mut self, outcome: Outcome) {
        match outcome {
            Outcome::Ready => {}
            Outcome::Caught => self.backoff = 0,
            Outcome::Missed => {
                self.backoff = (self.backoff * 2 + 1).min(MAX_SKIP);
                self.skip = self.backoff;
            }
        }
    }
}

/// Polls `receiver` on the executor thread until a message (or an error) comes or
/// `deadline` passes; yields what it read, copied out by `take`.
pub(crate) struct SpinRecv<'a, T, F> {
    receiver: &'a mut Receiver,
    deadline: Instant,
    looked: bool,
    take: F,
    _out: std::marker::PhantomData<fn() -> T>,
}

impl<'a, T, F: FnMut(&[u8]) -> T + Unpin> SpinRecv<'a, T, F> {
    pub(crate) fn new(receiver: &'a mut Receiver, deadline: Instant, take: F) -> Self {
        SpinRecv {
            receiver,
            deadline,
            looked: false,
            take,
            _out: std::marker::PhantomData,
        }
    }
}

impl<T, F: FnMut(&[u8]) -> T + Unpin> Future for SpinRecv<'_, T, F> {
    /// The outcome, and the message (or the channel's error) unless missed.
    type Output = (Outcome, Option<Result<T, ChannelError>>);

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        let outcome = if this.looked {
            Outcome::Caught
        } else {
            Outcome::Ready
        };
        this.looked = true;
        match this.receiver.recv(Timeout::Immediate) {
            Ok(msg) => Poll::Ready((outcome, Some(Ok((this.take)(&msg))))),
            Err(ChannelError::Timeout { .. }) if Instant::now() < this.deadline => {
                // Look again at the next poll, after the executor's other tasks.
                cx.waker().wake_by_ref();
                Poll::Pending
            }
            Err(ChannelError::Timeout { .. }) => Poll::Ready((Outcome::Missed, None)),
            Err(e) => Poll::Ready((outcome, Some(Err(e)))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn misses_back_off_and_a_catch_resets() {
        let now = Instant::now();
        let mut p = SpinPolicy::new(Duration::from_micros(20));
        assert!(p.begin(now).is_some());
        p.record(Outcome::Missed);
        // One skip, then a window.
        assert!(p.begin(now).is_none());
        assert!(p.begin(now).is_some());
        p.record(Outcome::Missed);
        let skipped = (0..10).take_while(|_| p.begin(now).is_none()).count();
        assert_eq!(skipped, 3);
        for _ in 0..20 {
            p.record(Outcome::Missed);
        }
        assert_eq!(p.skip, MAX_SKIP);
        while p.begin(now).is_none() {}
        p.record(Outcome::Caught);
        p.record(Outcome::Missed);
        assert_eq!(p.skip, 1, "a catch resets the backoff");
        p.record(Outcome::Ready);
        assert_eq!(p.skip, 1, "a ready message changes nothing");
    }

    #[test]
    fn a_zero_window_always_parks() {
        let mut p = SpinPolicy::new(Duration::ZERO);
        assert!((0..5).all(|_| p.begin(Instant::now()).is_none()));
    }
}
