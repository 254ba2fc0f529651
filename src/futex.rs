//! Inter-process futex wait and wake on a 32-bit word in a shared mapping.
//!
//! Shared (not `FUTEX_PRIVATE_FLAG`) futexes: the kernel keys them by the mapped object and
//! offset, so a waiter in one process is woken by a `FUTEX_WAKE` from the other.

use crate::sync::AtomicU32;
use std::time::Duration;

/// Sleeps while `*word == expected`, for at most `timeout` (or until woken). Returns early,
/// without sleeping, if the word already differs. Spurious returns are possible; callers
/// re-check their condition.
pub(crate) fn wait(word: &AtomicU32, expected: u32, timeout: Duration) {
    let ts = libc::timespec {
        tv_sec: timeout.as_secs().min(i64::MAX as u64) as libc::time_t,
        tv_nsec: timeout.subsec_nanos() as libc::c_long,
    };
    // SAFETY: `word` is a valid, aligned u32 for the duration of the call (it lives in a
    // mapping kept alive by the caller's region), `ts` is a valid timespec on our stack,
    // and FUTEX_WAIT ignores the remaining arguments. EINTR, EAGAIN and ETIMEDOUT are all
    // "return and re-check", so the result is deliberately ignored.
    unsafe {
        libc::syscall(
            libc::SYS_futex,
            word.as_ptr(),
            libc::FUTEX_WAIT,
            expected,
            &ts as *const libc::timespec,
            std::ptr::null::<u32>(),
            0u32,
        );
    }
}

/// Wakes up to `waiters` threads (in any process) sleeping on `word`.
pub(crate) fn wake(word: &AtomicU32, waiters: i32) {
    // SAFETY: `word` is a valid, aligned u32; FUTEX_WAKE only reads the address as a key
    // and ignores the timeout and second-address arguments.
    unsafe {
        libc::syscall(
            libc::SYS_futex,
            word.as_ptr(),
            libc::FUTEX_WAKE,
            waiters,
            std::ptr::null::<libc::timespec>(),
            std::ptr::null::<u32>(),
            0u32,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sync::Ordering;
    use std::sync::Arc;
    use std::time::Instant;

    #[test]
    fn wait_returns_at_once_when_the_word_differs() {
        let word = AtomicU32::new(0);
        let start = Instant::now();
        wait(&word, 1, Duration::from_secs(5));
        assert!(start.elapsed() < Duration::from_secs(4));
    }

    #[test]
    fn wait_times_out() {
        let word = AtomicU32::new(1);
        let start = Instant::now();
        wait(&word, 1, Duration::from_millis(20));
        assert!(start.elapsed() >= Duration::from_millis(19));
    }

    #[test]
    fn wake_ends_a_wait() {
        let word = Arc::new(AtomicU32::new(1));
        let sleeper = {
            let word = word.clone();
            std::thread::spawn(move || {
                let start = Instant::now();
                while word.load(Ordering::Acquire) == 1 {
                    wait(&word, 1, Duration::from_secs(10));
                }
                start.elapsed()
            })
        };
        word.store(0, Ordering::Release);
        wake(&word, 1);
        assert!(sleeper.join().unwrap() < Duration::from_secs(9));
    }
}
