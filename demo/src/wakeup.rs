//! What an idle side's main thread sleeps on: a flag and a condition variable, set by the
//! channel's event callback (peer closed, dead or back, a receive thread stopped), so the
//! thread sleeps until its next deadline or an event instead of waking in short slices.

use std::time::Instant;

use parking_lot::{Condvar, Mutex};

/// A wake-up that is never lost: one that comes while nobody waits is kept for the next
/// wait.
#[derive(Default)]
pub struct Wakeup {
    pending: Mutex<bool>,
    signal: Condvar,
}

impl Wakeup {
    /// Wakes the waiting thread, or the next wait if none waits now.
    pub fn notify(&self) {
        *self.pending.lock() = true;
        self.signal.notify_all();
    }

    /// Sleeps until `deadline` or a [`Wakeup::notify`] (one that came since the last wait
    /// returns at once); may return early, so callers re-check what they wait for.
    pub fn wait_until(&self, deadline: Instant) {
        let mut pending = self.pending.lock();
        if !*pending {
            self.signal.wait_until(&mut pending, deadline);
        }
        *pending = false;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::time::Duration;

    #[test]
    fn a_notify_before_the_wait_is_kept_and_one_during_it_ends_it() {
        let w = Arc::new(Wakeup::default());
        w.notify();
        let start = Instant::now();
        w.wait_until(start + Duration::from_secs(30));
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "kept notify lost"
        );
        // Consumed: the next wait runs to its deadline.
        let start = Instant::now();
        w.wait_until(start + Duration::from_millis(20));
        assert!(start.elapsed() >= Duration::from_millis(19));
        let notifier = std::thread::spawn({
            let w = w.clone();
            move || {
                std::thread::sleep(Duration::from_millis(20));
                w.notify();
            }
        });
        let start = Instant::now();
        w.wait_until(start + Duration::from_secs(30));
        assert!(start.elapsed() < Duration::from_secs(10), "notify lost");
        notifier.join().unwrap();
    }
}
