//! The one place the crate's concurrency primitives come from: atomics, fences, spin and
//! yield hints, sleeps and the futex. Normally they are `std`'s and the real system calls;
//! under `--cfg loom` they are loom's, and the futex is a mock that parks the calling loom
//! thread, so the ring, the waiter and the wake functions are model-checked as they run in
//! production (tokio's `src/loom/` funnel, iceoryx2's disallowed-types habit).
//!
//! `clippy.toml` forbids the `std` atomics and fences everywhere else, so nothing drifts
//! back around the funnel.

#![allow(clippy::disallowed_types, clippy::disallowed_methods)] // the funnel itself

// Type aliases, not re-exports: clippy's disallowed-types resolves a `use` to the std
// item (and would flag every user), while an alias is an item of its own.
#[cfg(not(loom))]
mod atomic {
    pub(crate) use std::sync::atomic::Ordering;
    pub(crate) type AtomicBool = std::sync::atomic::AtomicBool;
    pub(crate) type AtomicU8 = std::sync::atomic::AtomicU8;
    pub(crate) type AtomicU32 = std::sync::atomic::AtomicU32;
    pub(crate) type AtomicU64 = std::sync::atomic::AtomicU64;

    /// `std::sync::atomic::fence`.
    #[inline(always)]
    pub(crate) fn fence(order: Ordering) {
        std::sync::atomic::fence(order)
    }
}

#[cfg(loom)]
#[allow(dead_code)] // AtomicBool and AtomicU8 serve the transport, compiled out under loom
mod atomic {
    pub(crate) use loom::sync::atomic::{fence, Ordering};
    pub(crate) type AtomicBool = loom::sync::atomic::AtomicBool;
    pub(crate) type AtomicU8 = loom::sync::atomic::AtomicU8;
    pub(crate) type AtomicU32 = loom::sync::atomic::AtomicU32;
    pub(crate) type AtomicU64 = loom::sync::atomic::AtomicU64;
}

#[cfg_attr(loom, allow(unused_imports))]
pub(crate) use atomic::{fence, AtomicBool, AtomicU32, AtomicU64, AtomicU8, Ordering};

/// Threads: sleeping, yielding, spin hints.
pub(crate) mod thread {
    #[cfg(not(loom))]
    pub(crate) use std::thread::sleep;

    /// `std::thread::yield_now`.
    #[cfg(not(loom))]
    #[inline(always)]
    pub(crate) fn yield_now() {
        std::thread::yield_now()
    }

    /// `std::hint::spin_loop`.
    #[cfg(not(loom))]
    #[inline(always)]
    pub(crate) fn spin_loop() {
        std::hint::spin_loop()
    }

    #[cfg(loom)]
    pub(crate) use loom::{hint::spin_loop, thread::yield_now};

    /// Under loom time does not pass: a sleep is a yield to the other model threads.
    #[cfg(loom)]
    pub(crate) fn sleep(_: std::time::Duration) {
        yield_now();
    }
}

/// Futex wait and wake on a 32-bit word: the real system calls, or loom's mock.
#[cfg(not(loom))]
pub(crate) use crate::futex;

#[cfg(loom)]
pub(crate) mod futex;
