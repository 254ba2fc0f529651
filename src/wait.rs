//! How an idle side waits: busy spin or sleep for the poll interval, always bounded by a
//! deadline.
//!
//! Poll interval 0 spins with a spin-loop hint and no system call; the clock is read only
//! every [`SPINS_PER_CLOCK_CHECK`] spins. A non-zero interval sleeps that long per idle
//! round. Note that `nanosleep` rounds up by the thread's timer slack (50 µs by default
//! on Linux), so on a stock system a 1 µs interval really sleeps 60–75 µs; the receive
//! thread lowers its own slack to 1 ns (`PR_SET_TIMERSLACK`), and [`lower_timer_slack`]
//! does the same for a caller's thread.

use std::time::{Duration, Instant};

use crate::layout::MAX_POLL_US;
use crate::sync::{AtomicU32, Ordering};

/// How long a blocking call may wait.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Timeout {
    /// Try once; never wait.
    Immediate,
    /// Wait up to this long.
    After(Duration),
    /// Wait as long as it takes (a closed peer still ends the wait).
    Never,
}

impl From<Duration> for Timeout {
    /// `Duration::ZERO` means [`Timeout::Immediate`]; `Duration::MAX` means
    /// [`Timeout::Never`].
    fn from(d: Duration) -> Self {
        if d.is_zero() {
            Timeout::Immediate
        } else if d == Duration::MAX {
            Timeout::Never
        } else {
            Timeout::After(d)
        }
    }
}

/// Spins between two reads of the clock in busy-spin mode.
pub const SPINS_PER_CLOCK_CHECK: u32 = 64;

/// One wait's state. The deadline is computed lazily, so a call that finds its ring ready
/// at once never reads the clock.
pub(crate) struct Waiter {
    timeout: Timeout,
    deadline: Option<Instant>,
    spins: u32,
}

impl Waiter {
    pub(crate) fn new(timeout: Timeout) -> Waiter {
        Waiter {
            timeout,
            deadline: None,
            spins: 0,
        }
    }

    /// Waits one idle round per the poll interval in `poll_us` (read afresh each round, so
    /// a change takes effect at once). Returns `false` once the deadline has passed.
    #[inline]
    pub(crate) fn idle(&mut self, poll_us: &AtomicU32) -> bool {
        let poll = poll_us.load(Ordering::Relaxed).min(MAX_POLL_US);
        if poll == 0 {
            std::hint::spin_loop();
            self.spins = self.spins.wrapping_add(1);
            if self.spins % SPINS_PER_CLOCK_CHECK != 0 {
                return !matches!(self.timeout, Timeout::Immediate);
            }
            self.remaining().is_some()
        } else {
            let Some(remaining) = self.remaining() else {
                return false;
            };
            std::thread::sleep(remaining.min(Duration::from_micros(poll.into())));
            true
        }
    }

    /// Time left before the deadline, `None` once it has passed.
    fn remaining(&mut self) -> Option<Duration> {
        match self.timeout {
            Timeout::Immediate => None,
            Timeout::Never => Some(Duration::MAX),
            Timeout::After(d) => {
                let now = Instant::now();
                let deadline = *self.deadline.get_or_insert_with(|| now + d);
                deadline
                    .checked_duration_since(now)
                    .filter(|r| !r.is_zero())
            }
        }
    }
}

/// Lowers the calling thread's timer slack to 1 ns, so sleeps of a few microseconds last
/// about as long as asked instead of the default 50 µs more. Affects this thread only.
pub fn lower_timer_slack() {
    // SAFETY: PR_SET_TIMERSLACK takes one integer argument and touches only the calling
    // thread's scheduling attributes.
    unsafe {
        libc::prctl(libc::PR_SET_TIMERSLACK, 1 as libc::c_ulong, 0, 0, 0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn immediate_never_waits() {
        let poll = AtomicU32::new(0);
        assert!(!Waiter::new(Timeout::Immediate).idle(&poll));
        let poll = AtomicU32::new(100);
        assert!(!Waiter::new(Timeout::Immediate).idle(&poll));
    }

    #[test]
    fn finite_timeout_expires_in_spin_and_sleep_modes() {
        for poll_us in [0, 200] {
            let poll = AtomicU32::new(poll_us);
            let mut w = Waiter::new(Timeout::After(Duration::from_millis(5)));
            let start = Instant::now();
            let mut rounds = 0u64;
            while w.idle(&poll) {
                rounds += 1;
                assert!(
                    start.elapsed() < Duration::from_secs(5),
                    "deadline never passed"
                );
            }
            assert!(start.elapsed() >= Duration::from_millis(5));
            assert!(rounds > 0);
        }
    }

    #[test]
    fn duration_conversions() {
        assert_eq!(Timeout::from(Duration::ZERO), Timeout::Immediate);
        assert_eq!(Timeout::from(Duration::MAX), Timeout::Never);
        assert_eq!(
            Timeout::from(Duration::from_millis(1)),
            Timeout::After(Duration::from_millis(1))
        );
    }
}
