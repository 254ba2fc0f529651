//! The futex under loom: a model of the kernel's semantics, so the eventcount in
//! `src/wait/` is checked with the code that issues the real calls.
//!
//! Like `FUTEX_WAIT`, [`wait`] compares the word with the expected value and enqueues the
//! caller atomically with respect to [`wake`] (the kernel holds its hash-bucket lock for
//! both; here one loom mutex), then parks until a wake for that word. Unlike the real
//! call it ignores the timeout: a lost wake-up then shows as a loom deadlock instead of
//! hiding behind the waiter's periodic re-check. It never wakes spuriously either, which
//! the real futex may; callers re-check their condition in both cases.

use std::time::Duration;

use loom::sync::{Condvar, Mutex};

use super::{AtomicU32, Ordering};

/// Wake generations, per futex word address: a waiter sleeps until its word's generation
/// moves past the one it enqueued under.
struct Futexes {
    generations: Mutex<Vec<(usize, u64)>>,
    woken: Condvar,
}

loom::lazy_static! {
    static ref FUTEXES: Futexes = Futexes {
        generations: Mutex::new(Vec::new()),
        woken: Condvar::new(),
    };
}

fn generation(generations: &[(usize, u64)], key: usize) -> u64 {
    generations
        .iter()
        .find(|(k, _)| *k == key)
        .map_or(0, |(_, g)| *g)
}

fn key(word: &AtomicU32) -> usize {
    word as *const AtomicU32 as usize
}

/// Parks while `*word == expected` until [`wake`] is called on `word`. The timeout is
/// ignored (see the module doc).
pub(crate) fn wait(word: &AtomicU32, expected: u32, _timeout: Duration) {
    let futexes = &*FUTEXES;
    let mut generations = futexes.generations.lock().unwrap();
    // The kernel reads the word under its bucket lock; a plain (Relaxed) load, as there.
    if word.load(Ordering::Relaxed) != expected {
        return;
    }
    let enqueued = generation(&generations, key(word));
    while generation(&generations, key(word)) == enqueued {
        generations = futexes.woken.wait(generations).unwrap();
    }
}

/// Wakes every loom thread parked on `word` (the count is ignored: the crate always
/// wakes all).
pub(crate) fn wake(word: &AtomicU32, _waiters: i32) {
    let futexes = &*FUTEXES;
    let mut generations = futexes.generations.lock().unwrap();
    let key = key(word);
    match generations.iter_mut().find(|(k, _)| *k == key) {
        Some((_, g)) => *g += 1,
        None => generations.push((key, 1)),
    }
    futexes.woken.notify_all();
}
