//! The single-producer/single-consumer ring protocol over a [`RingMemory`].
//!
//! Indices are 64-bit monotonic counters, at most [`MAX_INDEX`] (2^63); the slot of index
//! `i` is `i & (count - 1)`. The producer stops at `MAX_INDEX` (publishing index
//! `MAX_INDEX - 1` last), so the plain `u64` additions below cannot overflow: a consumer
//! fed by a hostile producer past that point would need 2^63 more messages to get there.
//! Publication is per record (see `record.rs`): the producer writes the payload and the
//! record's meta word (length and span), then stores the commit word `i + 1` of the
//! record's first slot (Release); the consumer polls the commit word of the slot it expects
//! (Acquire). A message of up to `slot_size` bytes is one slot and one cache line moves per
//! small message; a longer one covers consecutive slots, contiguous, and is still published
//! by that one commit word, so a producer that dies mid-write publishes nothing
//! half-written, whatever the message's size.
//!
//! Each side keeps its own index in process-local memory and mirrors it into the header.
//! The producer reads the consumer's `tail` only when its cached copy says the ring is
//! full (rtrb's cached-index habit); the consumer never reads `head` at all.
//!
//! Everything read from the memory is untrusted: commit words, lengths and the tail index
//! are checked, and a bad value is a [`Corruption`] error, never an out-of-bounds access.
//!
//! The folder, one concept per file:
//! - `mod.rs` (this file): [`RingMemory`], what the protocol runs over;
//! - `record.rs`: records (messages and padding), their spans and their validation;
//! - `producer.rs`, `consumer.rs`: the protocol's two halves, [`Producer`] and
//!   [`Consumer`], over any [`RingMemory`];
//! - `region.rs`: `Region`, a ring's bytes seen as a header and slots, the
//!   [`RingMemory`] the transport uses, over whichever backing owns the bytes;
//! - `shm.rs`: that backing as a mapped POSIX shared-memory segment, and `header_of`
//!   for openers that have not trusted a segment's geometry yet;
//! - `heap.rs`: that backing as heap memory, for tests, benchmarks and fuzzing;
//! - `contract_tests.rs`, `record_contract_tests.rs`: the ring's tests (the second for
//!   records longer than a slot), written once over any [`RingMemory`] and run over both
//!   backings;
//! - `loom_tests.rs`: loom models of the orderings, built only with `--cfg loom` (then
//!   only the protocol and the models are compiled, with loom atomics; the backings are
//!   not).

use crate::sync::AtomicU64;

mod consumer;
mod producer;
mod record;

#[cfg_attr(loom, allow(unused_imports))] // under loom only the models use them
pub(crate) use consumer::Consumer;
#[cfg_attr(loom, allow(unused_imports))]
pub(crate) use producer::Producer;
#[cfg_attr(loom, allow(unused_imports))] // the loom build has no transport
pub(crate) use record::Record;
pub(crate) use record::Shape;

#[cfg(not(loom))]
mod copy;
#[cfg(not(loom))]
mod heap;
#[cfg(not(loom))]
mod region;
#[cfg(not(loom))]
mod shm;

#[cfg(not(loom))]
pub(crate) use copy::PrivateCopy;
#[cfg(not(loom))]
pub(crate) use region::{Region, INLINE_COPY_MAX};
#[cfg(not(loom))]
pub(crate) use shm::header_of;

/// Largest valid ring index: always `tail <= head <= MAX_INDEX`. Checked wherever an index
/// is read from the mapping (`layout::check_indices`); the producer never publishes the
/// message of index `MAX_INDEX` (a send at that head is `IndexOutOfRange`). 2^63 messages
/// are 292 years at 10^9 per second, so only a segment that starts near the top (hostile,
/// or written by another implementation) ever gets there.
pub(crate) const MAX_INDEX: u64 = 1 << 63;

/// Access to one ring's shared words and slot payloads.
///
/// # Safety
/// Implementors guarantee that, for the lifetime of `&self`:
/// - `slot_count()` is a non-zero power of two and never changes;
/// - `commit(s)`, `meta(s)` and the payload of slot `s` are valid for every
///   `s < slot_count()`, each payload `slot_size()` bytes long and disjoint from every
///   other slot's payload and from the header words;
/// - slots are `slot_stride()` bytes apart, so the payload of slot `s` continued for
///   `slot_size() + (k - 1) * slot_stride()` bytes covers exactly slots `s..s + k` (their
///   commit and meta words included) when `s + k <= slot_count()`: a record of `k` slots;
/// - the payload accessors are sound whenever the caller upholds their own contract.
pub(crate) unsafe trait RingMemory {
    /// Number of slots (a power of two).
    fn slot_count(&self) -> usize;
    /// Payload bytes per slot.
    fn slot_size(&self) -> usize;
    /// Bytes from one slot's start to the next's.
    fn slot_stride(&self) -> usize;
    /// The producer's mirrored index (stats, attach, liveness).
    fn head(&self) -> &AtomicU64;
    /// The producer's mirrored byte count.
    fn head_bytes(&self) -> &AtomicU64;
    /// The producer's count of published slots that did not start a message.
    fn head_extra(&self) -> &AtomicU64;
    /// The consumer's index: every slot below it is free for the producer.
    fn tail(&self) -> &AtomicU64;
    /// The consumer's mirrored byte count.
    fn tail_bytes(&self) -> &AtomicU64;
    /// The consumer's count of released slots that did not start a message.
    fn tail_extra(&self) -> &AtomicU64;
    /// Slot `slot`'s commit word.
    fn commit(&self, slot: usize) -> &AtomicU64;
    /// Slot `slot`'s meta word (a record's length and span, see `record.rs`).
    fn meta(&self, slot: usize) -> &AtomicU64;
    /// Slot `slot`'s commit and meta words, from one address computation (the hot path
    /// uses both).
    #[inline(always)]
    fn words(&self, slot: usize) -> (&AtomicU64, &AtomicU64) {
        (self.commit(slot), self.meta(slot))
    }
    /// Copies `src` to the payload of the record starting at slot `slot`.
    ///
    /// # Safety
    /// The caller is the producer and owns every slot the record covers (reserved, not yet
    /// committed): `k` slots from `slot`, where `src.len()` fits `k` slots and
    /// `slot + k <= slot_count()`.
    unsafe fn write_payload(&self, slot: usize, src: &[u8]);
    /// The first `len` bytes of the payload of the record starting at slot `slot`.
    ///
    /// # Safety
    /// The caller is the consumer, the record is published and not yet released (so the
    /// producer does not write it while the borrow lives), and `len` fits the `k` slots it
    /// covers, with `slot + k <= slot_count()`.
    unsafe fn payload(&self, slot: usize, len: usize) -> &[u8];
    /// The first `len` bytes of the record at slot `slot`, for an in-place write.
    ///
    /// # Safety
    /// As for [`RingMemory::write_payload`] with `len` for `src.len()`; the borrow ends
    /// before the record is committed.
    #[allow(clippy::mut_from_ref)] // the ring protocol, not `&self`, grants exclusivity
    unsafe fn payload_mut(&self, slot: usize, len: usize) -> &mut [u8];
}

/// The record rules' view of a ring's memory.
fn shape_of<M: RingMemory>(mem: &M) -> Shape {
    Shape {
        slot_size: mem.slot_size(),
        stride: mem.slot_stride(),
        count: mem.slot_count() as u64,
    }
}

#[cfg(all(test, not(loom)))]
mod contract_tests;
#[cfg(all(test, loom))]
pub(crate) mod loom_tests;
#[cfg(all(test, not(loom)))]
mod record_contract_tests;
