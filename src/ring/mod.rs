//! The single-producer/single-consumer ring protocol over a [`RingMemory`].
//!
//! Indices are 64-bit monotonic counters, at most [`MAX_INDEX`] (2^63); the slot of index
//! `i` is `i & (count - 1)`. The producer stops at `MAX_INDEX` (publishing index
//! `MAX_INDEX - 1` last), so the plain `u64` additions below cannot overflow: a consumer
//! fed by a hostile producer past that point would need 2^63 more messages to get there.
//! Publication is per slot: the producer writes length and payload, then stores the slot's
//! commit word `i + 1` (Release); the consumer polls the commit word of the slot it expects
//! (Acquire). Only one cache line moves per message, and a message is visible only after
//! its commit word, so a producer that dies mid-write publishes nothing half-written.
//!
//! Each side keeps its own index in process-local memory and mirrors it into the header.
//! The producer reads the consumer's `tail` only when its cached copy says the ring is
//! full (rtrb's cached-index habit); the consumer never reads `head` at all.
//!
//! Everything read from the memory is untrusted: commit words, lengths and the tail index
//! are checked, and a bad value is a [`Corruption`] error, never an out-of-bounds access.
//!
//! The folder, one concept per file:
//! - `mod.rs` (this file): the protocol, [`Producer`] and [`Consumer`], over any
//!   [`RingMemory`];
//! - `region.rs`: `Region`, a ring's bytes seen as a header and slots, the
//!   [`RingMemory`] the transport uses, over whichever backing owns the bytes;
//! - `shm.rs`: that backing as a mapped POSIX shared-memory segment, and `header_of`
//!   for openers that have not trusted a segment's geometry yet;
//! - `heap.rs`: that backing as heap memory, for tests, benchmarks and fuzzing;
//! - `contract_tests.rs`: the ring's tests, written once over any [`RingMemory`] and run
//!   over both backings;
//! - `loom_tests.rs`: loom models of the orderings, built only with `--cfg loom` (then
//!   only the protocol and the models are compiled, with loom atomics; the backings are
//!   not).

use crate::error::{Corruption, Error, Result};
use crate::sync::{AtomicU32, AtomicU64, Ordering};

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
pub(crate) use region::Region;
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
/// - `commit(s)`, `len(s)` and the payload of slot `s` are valid for every
///   `s < slot_count()`, each payload `slot_size()` bytes long and disjoint from every
///   other slot and header word;
/// - the payload accessors are sound whenever the caller upholds their own contract.
pub(crate) unsafe trait RingMemory {
    /// Number of slots (a power of two).
    fn slot_count(&self) -> usize;
    /// Payload bytes per slot.
    fn slot_size(&self) -> usize;
    /// The producer's mirrored index (stats, attach, liveness).
    fn head(&self) -> &AtomicU64;
    /// The producer's mirrored byte count.
    fn head_bytes(&self) -> &AtomicU64;
    /// The consumer's index: every slot below it is free for the producer.
    fn tail(&self) -> &AtomicU64;
    /// The consumer's mirrored byte count.
    fn tail_bytes(&self) -> &AtomicU64;
    /// Slot `slot`'s commit word.
    fn commit(&self, slot: usize) -> &AtomicU64;
    /// Slot `slot`'s length word.
    fn len(&self, slot: usize) -> &AtomicU32;
    /// Copies `src` to the start of slot `slot`'s payload.
    ///
    /// # Safety
    /// The caller is the producer, owns the slot (reserved, not yet committed), and
    /// `src.len() <= slot_size()`.
    unsafe fn write_payload(&self, slot: usize, src: &[u8]);
    /// The first `len` bytes of slot `slot`'s payload.
    ///
    /// # Safety
    /// The caller is the consumer, the slot is published and not yet released (so the
    /// producer does not write it while the borrow lives), and `len <= slot_size()`.
    unsafe fn payload(&self, slot: usize, len: usize) -> &[u8];
    /// Slot `slot`'s whole payload (`slot_size()` bytes) for an in-place write.
    ///
    /// # Safety
    /// As for [`RingMemory::write_payload`]; the borrow ends before the slot is committed.
    #[allow(clippy::mut_from_ref)] // the ring protocol, not `&self`, grants exclusivity
    unsafe fn payload_mut(&self, slot: usize) -> &mut [u8];
}

/// The producer half of a ring. Only one may exist per ring.
pub(crate) struct Producer<M: RingMemory> {
    mem: M,
    /// Next index to write. Local and authoritative; mirrored to `mem.head()`.
    head: u64,
    /// Last tail read from the memory, clamped to `MAX_INDEX - count` (see
    /// [`Producer::cache_tail`]). May be stale (then it is lower than the real one, which
    /// only makes the ring look fuller). Invariant: `head - count <= cached_tail <= head`.
    cached_tail: u64,
    /// Payload bytes published so far; mirrored to `mem.head_bytes()`.
    bytes: u64,
    mask: u64,
    count: u64,
    slot_size: usize,
}

impl<M: RingMemory> Producer<M> {
    /// A producer continuing at `head`, with the consumer known to be at `tail`.
    /// The caller has checked `tail <= head <= tail + count` and `head <= MAX_INDEX`.
    pub(crate) fn new(mem: M, head: u64, tail: u64, bytes: u64) -> Self {
        let count = mem.slot_count() as u64;
        debug_assert!(tail <= head && head - tail <= count && head <= MAX_INDEX);
        Producer {
            head,
            cached_tail: Self::cache_tail(tail, count),
            bytes,
            mask: count - 1,
            count,
            slot_size: mem.slot_size(),
            mem,
        }
    }

    /// A producer taking over a ring whose consumer is at `tail`: its head is the first
    /// index from `tail` whose slot is not committed. A previous producer that died after
    /// mirroring its head but before committing leaves no hole this way (the mirrored head
    /// is not trusted). `bytes` continues the byte count.
    pub(crate) fn resume(mem: M, tail: u64, bytes: u64) -> Self {
        let count = mem.slot_count() as u64;
        let mask = count - 1;
        let mut head = tail;
        while head - tail < count
            && head < MAX_INDEX
            && mem.commit((head & mask) as usize).load(Ordering::Acquire) == head + 1
        {
            head += 1;
        }
        mem.head().store(head, Ordering::Relaxed);
        Producer::new(mem, head, tail, bytes)
    }

    /// The largest message this ring carries.
    #[cfg_attr(loom, allow(dead_code))] // used by the transport, compiled out under loom
    pub(crate) fn slot_size(&self) -> usize {
        self.slot_size
    }

    /// The memory this producer writes.
    #[cfg_attr(loom, allow(dead_code))] // used by the transport, compiled out under loom
    pub(crate) fn memory(&self) -> &M {
        &self.mem
    }

    /// Whether the shared tail shows a free slot, without updating the cache: a cheap
    /// re-check for a waiter about to sleep. A corrupt tail reads as "free" so the caller's
    /// real check ([`Producer::free_slots`]) reports it.
    pub(crate) fn space_visible(&self) -> bool {
        let tail = self.mem.tail().load(Ordering::Acquire);
        self.head.wrapping_sub(tail) < self.count
    }

    /// The tail to cache: `tail`, but never above `MAX_INDEX - count`, so the free-slot
    /// count (`count - (head - cached_tail)`) never lets the head pass `MAX_INDEX`. This
    /// costs the hot path nothing: near the top the ring merely looks fuller, and
    /// [`Producer::free_slots`] reports the exhausted range when it re-reads the tail.
    #[inline]
    fn cache_tail(tail: u64, count: u64) -> u64 {
        tail.min(MAX_INDEX - count)
    }

    /// Free slots, reading the consumer's tail only when the cached copy shows fewer than
    /// `wanted`. A head at `MAX_INDEX` (the index range used up) is `IndexOutOfRange`.
    #[inline]
    pub(crate) fn free_slots(&mut self, wanted: u64) -> Result<u64, Corruption> {
        let free = self.count - (self.head - self.cached_tail);
        if free >= wanted {
            return Ok(free);
        }
        // SYNC POINT with the Release store of `tail` in `Consumer::release`: the
        // consumer's reads of every slot below `tail` happen before we overwrite them.
        let tail = self.mem.tail().load(Ordering::Acquire);
        if tail < self.cached_tail || tail > self.head || self.head == MAX_INDEX {
            return Err(Corruption::IndexOutOfRange {
                head: self.head,
                tail,
                count: self.count,
            });
        }
        self.cached_tail = Self::cache_tail(tail, self.count);
        Ok(self.count - (self.head - self.cached_tail))
    }

    /// Publishes `msg` if a slot is free. `Ok(false)` when the ring is full.
    #[inline]
    pub(crate) fn try_send(&mut self, msg: &[u8]) -> Result<bool> {
        self.check_len(msg.len())?;
        if self.free_slots(1)? == 0 {
            return Ok(false);
        }
        self.mirror_head(1, msg.len() as u64);
        self.write_and_commit(msg);
        Ok(true)
    }

    /// Publishes as many of `msgs` as fit, in order, after one free-space check. Returns
    /// how many were published. Every message is length-checked before any is published.
    pub(crate) fn try_send_batch(&mut self, msgs: &[&[u8]]) -> Result<usize> {
        for msg in msgs {
            self.check_len(msg.len())?;
        }
        let free = self.free_slots(msgs.len() as u64)?;
        let n = msgs.len().min(free as usize);
        let bytes = msgs[..n].iter().map(|m| m.len() as u64).sum();
        self.mirror_head(n as u64, bytes);
        for msg in &msgs[..n] {
            self.write_and_commit(msg);
        }
        Ok(n)
    }

    /// If a slot is free, lets `write` fill its payload in place (all `slot_size` bytes,
    /// holding whatever an earlier message left) and publishes the length it returns.
    /// `Ok(false)` when the ring is full (then `write` is not called). A writer's error
    /// comes back unchanged and a returned length above the slot size is
    /// [`Error::MessageTooLarge`]: either way nothing is published.
    pub(crate) fn try_send_with<E: From<Error>>(
        &mut self,
        write: impl FnOnce(&mut [u8]) -> std::result::Result<usize, E>,
    ) -> std::result::Result<bool, E> {
        if self.free_slots(1).map_err(Error::from)? == 0 {
            return Ok(false);
        }
        let slot = (self.head & self.mask) as usize;
        // SAFETY: the slot at `head` is free (see `write_and_commit`) and we are the only
        // producer; the borrow ends when `write` returns, before the commit.
        let len = write(unsafe { self.mem.payload_mut(slot) })?;
        self.check_len(len)?;
        self.mirror_head(1, len as u64);
        self.commit(len);
        Ok(true)
    }

    #[inline]
    fn check_len(&self, len: usize) -> Result<()> {
        if len > self.slot_size {
            return Err(Error::MessageTooLarge {
                len,
                slot_size: self.slot_size,
            });
        }
        Ok(())
    }

    /// Stores the mirrored head and byte count for the `n` messages about to be committed.
    /// They are stored *before* the commits, so whoever acquires a commit word (and then
    /// the tail derived from it) never sees `head < tail`.
    #[inline]
    fn mirror_head(&mut self, n: u64, bytes: u64) {
        // A statistic that starts from the mapping's (untrusted) count: it wraps.
        self.bytes = self.bytes.wrapping_add(bytes);
        self.mem.head().store(self.head + n, Ordering::Relaxed);
        self.mem.head_bytes().store(self.bytes, Ordering::Relaxed);
    }

    /// Writes `msg` into the slot at `head` and commits it. The caller checked space/length.
    #[inline]
    fn write_and_commit(&mut self, msg: &[u8]) {
        let slot = (self.head & self.mask) as usize;
        // SAFETY: `free_slots` showed the slot at `head` is free (the consumer released it,
        // and acquired-before-reuse per the SYNC POINT there), we are the only producer,
        // and `check_len` bounded `msg.len()` by the slot size.
        unsafe { self.mem.write_payload(slot, msg) };
        self.commit(msg.len());
    }

    #[inline]
    fn commit(&mut self, len: usize) {
        let slot = (self.head & self.mask) as usize;
        self.mem.len(slot).store(len as u32, Ordering::Relaxed);
        // SYNC POINT with the Acquire load of the commit word in `Consumer::peek`: the
        // length and payload written above are visible to a consumer that sees `head + 1`.
        self.mem
            .commit(slot)
            .store(self.head + 1, Ordering::Release);
        self.head += 1;
    }
}

/// The consumer half of a ring. Only one may exist per ring.
pub(crate) struct Consumer<M: RingMemory> {
    mem: M,
    /// Next index to read. Local and authoritative; published to `mem.tail()` on release.
    tail: u64,
    /// Payload bytes consumed so far; mirrored to `mem.tail_bytes()`.
    bytes: u64,
    mask: u64,
    count: u64,
    slot_size: usize,
}

impl<M: RingMemory> Consumer<M> {
    /// A consumer continuing at `tail`. The caller has checked `tail <= MAX_INDEX`.
    pub(crate) fn new(mem: M, tail: u64, bytes: u64) -> Self {
        let count = mem.slot_count() as u64;
        debug_assert!(tail <= MAX_INDEX);
        Consumer {
            tail,
            bytes,
            mask: count - 1,
            count,
            slot_size: mem.slot_size(),
            mem,
        }
    }

    /// The memory this consumer reads.
    #[cfg_attr(loom, allow(dead_code))] // used by the transport, compiled out under loom
    pub(crate) fn memory(&self) -> &M {
        &self.mem
    }

    /// Length of the message `ahead` places after the next one, if it is published.
    /// `ahead` must be below the slot count.
    #[inline]
    pub(crate) fn peek(&self, ahead: u64) -> Result<Option<usize>, Corruption> {
        debug_assert!(ahead < self.count);
        let index = self.tail + ahead;
        let slot = (index & self.mask) as usize;
        let expected = index + 1;
        // SYNC POINT with the Release store of the commit word in `Producer::commit`.
        let found = self.mem.commit(slot).load(Ordering::Acquire);
        if found == expected {
            let len = self.mem.len(slot).load(Ordering::Relaxed);
            if len as usize > self.slot_size {
                return Err(Corruption::SlotLength {
                    len: len.into(),
                    slot_size: self.slot_size,
                });
            }
            return Ok(Some(len as usize));
        }
        // Not yet published: the slot must still hold the previous lap's word.
        let previous = expected.saturating_sub(self.count);
        if found == previous {
            Ok(None)
        } else {
            Err(Corruption::CommitWord {
                index,
                found,
                expected,
                previous,
            })
        }
    }

    /// The payload of the message `ahead` places after the next one.
    ///
    /// # Safety
    /// `peek(ahead)` returned `Some(len)` and nothing has been released since.
    #[inline]
    pub(crate) unsafe fn payload(&self, ahead: u64, len: usize) -> &[u8] {
        let slot = ((self.tail + ahead) & self.mask) as usize;
        // SAFETY: the caller saw the slot published (`peek`), it is not released, and
        // `peek` checked `len <= slot_size`.
        unsafe { self.mem.payload(slot, len) }
    }

    /// Marks the next `n` messages (of `bytes` payload bytes in all) consumed and hands
    /// their slots back to the producer.
    #[inline]
    pub(crate) fn release(&mut self, n: u64, bytes: u64) {
        debug_assert!(n <= self.count);
        self.tail += n;
        // A statistic that starts from the mapping's (untrusted) count: it wraps.
        self.bytes = self.bytes.wrapping_add(bytes);
        self.mem.tail_bytes().store(self.bytes, Ordering::Relaxed);
        // SYNC POINT with the Acquire load of `tail` in `Producer::free_slots`: our reads
        // of the released slots happen before the producer reuses them.
        self.mem.tail().store(self.tail, Ordering::Release);
    }

    /// Reads up to `max` published messages in place, calling `f` on each, then releases
    /// them all at once. Returns how many were read.
    pub(crate) fn drain(
        &mut self,
        max: usize,
        mut f: impl FnMut(&[u8]),
    ) -> Result<usize, Corruption> {
        let max = (max as u64).min(self.count);
        let mut n = 0;
        let mut bytes = 0;
        while n < max {
            let Some(len) = self.peek(n)? else { break };
            // SAFETY: `peek(n)` returned `Some(len)` and nothing was released since.
            f(unsafe { self.payload(n, len) });
            bytes += len as u64;
            n += 1;
        }
        if n > 0 {
            self.release(n, bytes);
        }
        Ok(n as usize)
    }
}

#[cfg(all(test, not(loom)))]
mod contract_tests;
#[cfg(all(test, loom))]
pub(crate) mod loom_tests;
