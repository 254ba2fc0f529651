//! The one place atomics come from: `std` normally, `loom` under `--cfg loom`, so the ring
//! protocol can be model-checked with the very code that runs in production (the same
//! funnel tokio and crossbeam use).

#[cfg(not(loom))]
pub(crate) use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

#[cfg(loom)]
pub(crate) use loom::sync::atomic::{AtomicU32, AtomicU64, Ordering};
