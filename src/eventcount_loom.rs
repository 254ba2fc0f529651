//! Model check of the block-mode eventcount in `wait.rs` (`Waiter::idle_block`'s sleep
//! step and `wake_sleeper` / `wake_all`), step for step with loom's atomics and fences; the
//! futex itself is modelled as "sleeps iff the re-check found nothing". The property is no
//! lost wake-up: never may the sleeper decide to sleep while the waker decides nobody
//! sleeps. Weakening either fence to anything below SeqCst makes loom find that outcome.

use loom::sync::atomic::{fence, AtomicU32, AtomicU64, Ordering};
use loom::sync::Arc;
use loom::thread;

struct Shared {
    /// The slot's commit word (or a closed flag): what the sleeper waits for.
    commit: AtomicU64,
    /// The sleeper's announced wait word.
    wait_word: AtomicU32,
}

/// The sleeper's last step before `FUTEX_WAIT`: returns whether it would sleep.
fn sleeper_would_sleep(s: &Shared) -> bool {
    s.wait_word.store(1, Ordering::Relaxed);
    fence(Ordering::SeqCst);
    s.commit.load(Ordering::Acquire) == 0
}

/// The waker after publishing: returns whether it would call `FUTEX_WAKE`.
fn waker_would_wake(s: &Shared) -> bool {
    s.commit.store(1, Ordering::Release);
    fence(Ordering::SeqCst);
    if s.wait_word.load(Ordering::Relaxed) != 0 {
        s.wait_word.store(0, Ordering::Relaxed);
        true
    } else {
        false
    }
}

#[test]
fn no_lost_wake_up() {
    loom::model(|| {
        let s = Arc::new(Shared {
            commit: AtomicU64::new(0),
            wait_word: AtomicU32::new(0),
        });
        let waker = {
            let s = s.clone();
            thread::spawn(move || waker_would_wake(&s))
        };
        let sleeps = sleeper_would_sleep(&s);
        let wakes = waker.join().unwrap();
        assert!(!sleeps || wakes, "the sleeper sleeps and nobody wakes it");
    });
}

/// The close protocol of `Link`: the closing side stores its last commit, then its closed
/// flag (Release); a receiver that sees the flag (Acquire) looks at the ring once more
/// and must find the message. Weakening the flag's store or load makes loom find a run
/// where the receiver reports Closed with the message unread.
#[test]
fn close_never_hides_the_last_message() {
    loom::model(|| {
        let commit = Arc::new(AtomicU64::new(0));
        let closed = Arc::new(AtomicU32::new(0));
        let closer = {
            let (commit, closed) = (commit.clone(), closed.clone());
            thread::spawn(move || {
                commit.store(1, Ordering::Release); // the last message's commit word
                closed.store(1, Ordering::Release); // then the closed flag
            })
        };
        // The receiver's wait loop: message? else closed? then one more look.
        let outcome = loop {
            if commit.load(Ordering::Acquire) == 1 {
                break "message";
            }
            if closed.load(Ordering::Acquire) != 0 {
                break if commit.load(Ordering::Acquire) == 1 {
                    "message"
                } else {
                    "closed early"
                };
            }
            thread::yield_now();
        };
        closer.join().unwrap();
        assert_eq!(outcome, "message");
    });
}
