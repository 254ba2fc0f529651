//! The board's concurrency core: the per-slot sequence lock, the `head` word that names
//! the newest value, and the eventcount that wakes readers waiting for a newer one. Built
//! under `--cfg loom` too (with loom atomics and the futex mock), where
//! `loom_tests.rs` model-checks these very functions.
//!
//! **Slot lock word.** `0`: never written. Odd `2s - 1`: value `s` is being written.
//! Even `2s` (`s >= 1`): value `s` is complete. A writer stores the odd word (Relaxed),
//! issues a Release fence, writes stamp, length and bytes, then stores the even word with
//! Release. A reader loads the word with Acquire, copies, issues an Acquire fence and
//! loads the word again: equal and even means the copy is value `s`, untorn.

use crate::error::Corruption;
use crate::sync::{fence, futex, AtomicU32, AtomicU64, Ordering};

/// The highest sequence number a slot's lock word can carry (`2s` must fit in 63 bits).
pub(crate) const MAX_SEQUENCE: u64 = (1 << 62) - 1;

/// The first 32 bytes of a slot. All atomics: valid for any bytes, and for concurrent
/// writes by the writer process.
#[repr(C)]
pub(crate) struct SlotHeader {
    /// The sequence lock word (see the module doc).
    pub lock: AtomicU64,
    /// The value's timestamp in nanoseconds (`CLOCK_MONOTONIC` unless the writer gave one).
    pub stamp: AtomicU64,
    /// The value's length in bytes (at most the board's value size).
    pub len: AtomicU64,
    /// Reserved, zero.
    pub reserved: AtomicU64,
}

/// The words of one board that publication and waiting use.
pub(crate) struct Words<'a> {
    /// Sequence number of the newest complete value (0: none yet). Writer only.
    pub head: &'a AtomicU64,
    /// The futex word readers sleep on; the writer bumps it when someone waits.
    pub notify: &'a AtomicU32,
    /// How many readers are (about to be) asleep on `notify`. Readers only.
    pub waiters: &'a AtomicU32,
}

/// What one look at a slot found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SlotRead {
    /// Never written.
    Empty,
    /// Being written (odd lock word), or rewritten during the copy: the copy is discarded.
    Busy,
    /// A complete value, copied untorn.
    Stable {
        /// Its sequence number.
        seq: u64,
        /// Its timestamp in ns.
        stamp: u64,
        /// Its length in bytes (validated against the value size).
        len: usize,
    },
}

/// Starts writing value `seq` into `slot`: marks it odd. The caller then writes the
/// payload and calls [`end_write`].
#[inline]
pub(crate) fn begin_write(slot: &SlotHeader, seq: u64) {
    debug_assert!((1..=MAX_SEQUENCE).contains(&seq));
    slot.lock.store(2 * seq - 1, Ordering::Relaxed);
    // SYNC POINT with the Acquire fence in `read_slot`: a reader whose copy saw any byte
    // written after this fence sees the odd word (or later) in its second load.
    fence(Ordering::Release);
}

/// Completes value `seq` in `slot` (stamp and length stored here), then makes it the
/// newest one in `head` and wakes sleeping readers.
#[inline]
pub(crate) fn end_write(slot: &SlotHeader, words: &Words<'_>, seq: u64, stamp: u64, len: u64) {
    slot.stamp.store(stamp, Ordering::Relaxed);
    slot.len.store(len, Ordering::Relaxed);
    // SYNC POINT with the Acquire load of the lock word in `read_slot`: a reader that
    // sees `2 * seq` sees the stamp, length and payload written before it.
    slot.lock.store(2 * seq, Ordering::Release);
    // SYNC POINT with the Acquire load of `head` in `newest`: a reader that sees `seq`
    // there finds the slot complete (or rewritten later).
    words.head.store(seq, Ordering::Release);
    wake_readers(words);
}

/// Wakes readers asleep in [`wait_step`], only when one announced itself: one SeqCst fence
/// and one Relaxed load otherwise.
#[inline]
pub(crate) fn wake_readers(words: &Words<'_>) {
    // SYNC POINT with the SeqCst fence in `wait_step` (Dekker): either the reader's
    // re-check sees our `head`, or we see its `waiters` increment.
    fence(Ordering::SeqCst);
    if words.waiters.load(Ordering::Relaxed) != 0 {
        // SYNC POINT with the Acquire load of `notify` in `wait_step`: a reader that reads
        // this bump sees the `head` stored before it.
        words.notify.fetch_add(1, Ordering::Release);
        futex::wake(words.notify, i32::MAX);
    }
}

/// The newest published sequence number (0: none yet).
#[inline]
pub(crate) fn newest(words: &Words<'_>) -> u64 {
    // SYNC POINT with the Release store of `head` in `end_write`.
    words.head.load(Ordering::Acquire)
}

/// Reads `slot` under its sequence lock. `copy(len)` copies the payload's first `len`
/// bytes (`len <= value_size`, checked first); its result is used only when the lock word
/// did not move. A stable word whose length exceeds `value_size` is corruption.
#[inline]
pub(crate) fn read_slot(
    slot: &SlotHeader,
    value_size: usize,
    copy: impl FnOnce(usize),
) -> Result<SlotRead, Corruption> {
    // SYNC POINT with the Release store of the even lock word in `end_write`.
    let before = slot.lock.load(Ordering::Acquire);
    if before == 0 {
        return Ok(SlotRead::Empty);
    }
    if before & 1 == 1 {
        return Ok(SlotRead::Busy);
    }
    let stamp = slot.stamp.load(Ordering::Relaxed);
    let raw_len = slot.len.load(Ordering::Relaxed);
    let len = usize::try_from(raw_len).ok().filter(|&l| l <= value_size);
    if let Some(len) = len {
        copy(len);
    }
    // SYNC POINT with the Release fence in `begin_write` (see there).
    fence(Ordering::Acquire);
    if slot.lock.load(Ordering::Relaxed) != before {
        return Ok(SlotRead::Busy);
    }
    let Some(len) = len else {
        return Err(Corruption::SlotLength {
            len: raw_len,
            slot_size: value_size,
        });
    };
    Ok(SlotRead::Stable {
        seq: before / 2,
        stamp,
        len,
    })
}

/// One blocking round of a wait for a value newer than `seen`: announces the reader,
/// re-checks `head`, and sleeps on `notify` for at most `slice` unless a newer value is
/// there. Returns the newest sequence number seen by the re-check.
pub(crate) fn wait_step(words: &Words<'_>, seen: u64, slice: std::time::Duration) -> u64 {
    words.waiters.fetch_add(1, Ordering::Relaxed);
    // SYNC POINT with the SeqCst fence in `wake_readers` (see there).
    fence(Ordering::SeqCst);
    // SYNC POINT with the Release bump of `notify` in `wake_readers`.
    let ticket = words.notify.load(Ordering::Acquire);
    let head = newest(words);
    if head <= seen {
        futex::wait(words.notify, ticket, slice);
    }
    words.waiters.fetch_sub(1, Ordering::Relaxed);
    head.max(newest(words))
}
