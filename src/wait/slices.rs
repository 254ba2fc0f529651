//! How long each futex sleep of an idle waiter lasts: the channel's sleep slice at first,
//! doubling after every sleep that ran its whole slice with nothing waking it, up to
//! [`MAX_IDLE_SLICE`]; back to the sleep slice after anything woke it, a mode other than
//! `Block`, or work found. A side idle for long wakes about once a second instead of once
//! per slice, and every event that must reach a sleeper at once still does (a message, a
//! close, a stop, a death, a truncation, a reconnection and a mode change all wake it).

use std::time::Duration;

/// The longest a slice grows to (a longer configured sleep slice is kept as it is).
pub const MAX_IDLE_SLICE: Duration = Duration::from_secs(1);

/// Doublings after which a slice is at its maximum for any sleep slice allowed (≥ 1 ms:
/// 2^10 ms > 1 s).
const MAX_DOUBLINGS: u32 = 10;

/// The growth of one waiter's slices.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Slices {
    doublings: u32,
}

impl Slices {
    /// The next sleep's slice for a channel whose sleep slice is `base`.
    pub(crate) fn slice(&self, base: Duration) -> Duration {
        if base >= MAX_IDLE_SLICE {
            return base;
        }
        base.saturating_mul(1 << self.doublings).min(MAX_IDLE_SLICE)
    }

    /// After one sleep: `undisturbed` when it lasted its whole slice (nothing woke it and
    /// the deadline did not cut it short), so the next may be longer.
    pub(crate) fn after_sleep(&mut self, undisturbed: bool) {
        if undisturbed {
            self.doublings = (self.doublings + 1).min(MAX_DOUBLINGS);
        } else {
            self.reset();
        }
    }

    /// Back to the channel's sleep slice.
    pub(crate) fn reset(&mut self) {
        self.doublings = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slices_double_while_undisturbed_up_to_the_maximum_and_reset_on_a_wake_up() {
        let base = Duration::from_millis(50);
        let mut s = Slices::default();
        let mut seen = Vec::new();
        for _ in 0..12 {
            seen.push(s.slice(base).as_millis());
            s.after_sleep(true);
        }
        assert_eq!(
            seen,
            [50, 100, 200, 400, 800, 1000, 1000, 1000, 1000, 1000, 1000, 1000]
        );
        s.after_sleep(false);
        assert_eq!(s.slice(base), base);
        s.after_sleep(true);
        s.reset();
        assert_eq!(s.slice(base), base);
        // The smallest slice allowed (1 ms) reaches the maximum too; a longer one is kept.
        let mut s = Slices::default();
        (0..20).for_each(|_| s.after_sleep(true));
        assert_eq!(s.slice(Duration::from_millis(1)), MAX_IDLE_SLICE);
        assert_eq!(s.slice(Duration::from_secs(60)), Duration::from_secs(60));
    }
}
