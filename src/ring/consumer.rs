//! [`Consumer`]: the reading half of a ring. It polls the commit word of the record it
//! expects, validates the record's meta word, lends the payload in place (one contiguous
//! slice, however many slots it covers), and on release first restores the commit words of
//! the slots a record covered, then hands the slots back with one Release store of `tail`.

use super::record::{Record, Shape};
use super::{RingMemory, MAX_INDEX};
use crate::error::Corruption;
use crate::sync::Ordering;

/// The consumer half of a ring. Only one may exist per ring.
pub(crate) struct Consumer<M: RingMemory> {
    pub(super) mem: M,
    /// Next index to read. Local and authoritative; published to `mem.tail()` on release.
    pub(super) tail: u64,
    /// Payload bytes consumed so far; mirrored to `mem.tail_bytes()`.
    bytes: u64,
    /// Released slots that started no message; mirrored to `mem.tail_extra()` (only
    /// padding and long records change it).
    extra: u64,
    pub(super) mask: u64,
    pub(super) shape: Shape,
}

impl<M: RingMemory> Consumer<M> {
    /// A consumer continuing at `tail`. The caller has checked `tail <= MAX_INDEX`.
    pub(crate) fn new(mem: M, tail: u64, bytes: u64) -> Self {
        let shape = super::shape_of(&mem);
        debug_assert!(tail <= MAX_INDEX);
        Consumer {
            tail,
            bytes,
            // A statistic continued from the mapping (untrusted: it only wraps).
            extra: mem.tail_extra().load(Ordering::Relaxed),
            mask: shape.count - 1,
            shape,
            mem,
        }
    }

    /// The memory this consumer reads.
    #[cfg_attr(loom, allow(dead_code))] // used by the transport, compiled out under loom
    pub(crate) fn memory(&self) -> &M {
        &self.mem
    }

    /// The next index to read.
    #[cfg_attr(loom, allow(dead_code))] // used by the transport, compiled out under loom
    pub(crate) fn tail(&self) -> u64 {
        self.tail
    }

    /// The record that starts `ahead` slots after the tail, if it is published. `ahead`
    /// must be below the slot count, and the start of a record (0, or the sum of the spans
    /// of the records before it).
    #[inline(always)]
    pub(crate) fn peek(&self, ahead: u64) -> Result<Option<Record>, Corruption> {
        debug_assert!(ahead < self.shape.count);
        let index = self.tail + ahead;
        let slot = (index & self.mask) as usize;
        let expected = index + 1;
        let (commit, meta) = self.mem.words(slot);
        // SYNC POINT with the Release store of the commit word in `publish`
        // (producer.rs).
        let found = commit.load(Ordering::Acquire);
        if found == expected {
            let meta = meta.load(Ordering::Relaxed);
            return self.shape.decode(index, ahead, meta).map(Some);
        }
        // Not yet published: the slot must still hold the previous lap's word (written by
        // the producer's commit, or by our `restore` if a record covered the slot).
        let previous = expected.saturating_sub(self.shape.count);
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

    /// The payload of the message `ahead` slots after the tail.
    ///
    /// # Safety
    /// `peek(ahead)` returned `Some(record)` with `record.len() == len`, and nothing has been
    /// released since.
    #[inline(always)]
    pub(crate) unsafe fn payload(&self, ahead: u64, len: usize) -> &[u8] {
        let slot = ((self.tail + ahead) & self.mask) as usize;
        // SAFETY: the caller saw the record published (`peek`), it is not released, and
        // `peek` checked that `len` fits the slots it covers, which end within the ring.
        unsafe { self.mem.payload(slot, len) }
    }

    /// Restores the commit words of the slots that the record `ahead` slots after the tail
    /// covered after its first (their headers held message bytes, or a padding record's
    /// stale words): each gets the value the rule "before publication, a slot holds the
    /// previous lap's value" needs at the next lap, `index + 1`. Called once the payload
    /// is no longer read, before the release that hands the slots back.
    #[inline]
    fn restore(&self, ahead: u64, span: u64) {
        for k in 1..span {
            let index = self.tail + ahead + k;
            // Relaxed: published to the producer by the Release store of `tail` in
            // `release`; read back (at the next lap) by this consumer itself.
            self.mem
                .commit((index & self.mask) as usize)
                .store(index + 1, Ordering::Relaxed);
        }
    }

    /// Marks the next `slots` slots (holding `bytes` payload bytes in all) consumed and
    /// hands them back to the producer. Their covered slots are restored already.
    #[inline(always)]
    pub(crate) fn release(&mut self, slots: u64, bytes: u64) {
        debug_assert!(slots <= self.shape.count);
        self.tail += slots;
        // A statistic that starts from the mapping's (untrusted) count: it wraps.
        self.bytes = self.bytes.wrapping_add(bytes);
        self.mem.tail_bytes().store(self.bytes, Ordering::Relaxed);
        // SYNC POINT with the Acquire load of `tail` in `Producer::free_slots`: our reads
        // of the released slots, and our restoring of their commit words, happen before
        // the producer reuses them.
        self.mem.tail().store(self.tail, Ordering::Release);
    }

    /// Releases the message record at the tail (`peek(0)` returned it), restoring what it
    /// covered.
    #[inline(always)]
    #[cfg_attr(loom, allow(dead_code))] // used by the transport, compiled out under loom
    pub(crate) fn finish(&mut self, record: Record) {
        debug_assert!(!record.is_padding());
        if record.span() > 1 {
            self.past_long_record(0, record);
        }
        self.release(record.span(), record.len() as u64);
    }

    /// Releases the padding record at the tail (`peek(0)` returned it).
    #[cold]
    #[cfg_attr(loom, allow(dead_code))] // used by the transport, compiled out under loom
    pub(crate) fn skip_padding(&mut self, record: Record) {
        debug_assert!(record.is_padding());
        self.past_long_record(0, record);
        self.release(record.span(), 0);
    }

    /// Reads up to `max` published messages in place, calling `f` on each, then releases
    /// them all at once (padding records among them are skipped). Returns how many
    /// messages were read.
    pub(crate) fn drain(
        &mut self,
        max: usize,
        mut f: impl FnMut(&[u8]),
    ) -> Result<usize, Corruption> {
        self.drain_with(max, |consumer, ahead, len| {
            // SAFETY: `drain_with` saw this record published, and nothing was released.
            f(unsafe { consumer.payload(ahead, len) })
        })
    }

    /// For the record `ahead` slots past the tail that is not a one-slot message: restores
    /// what it covered, counts its slots that start no message (stats: `tail - extra`),
    /// and returns the place of the next record.
    #[cold]
    #[inline(never)]
    fn past_long_record(&mut self, ahead: u64, record: Record) -> u64 {
        self.restore(ahead, record.span());
        let extra = record.span() - u64::from(!record.is_padding());
        // A statistic that starts from the mapping's (untrusted) count: it wraps.
        self.extra = self.extra.wrapping_add(extra);
        self.mem.tail_extra().store(self.extra, Ordering::Relaxed);
        ahead + record.span()
    }

    /// The walk behind the drains: visits up to `max` published messages in order (`visit`
    /// gets the consumer, the message's place and length), skipping padding, restoring
    /// each record's covered slots once visited, then releases everything visited.
    pub(super) fn drain_with(
        &mut self,
        max: usize,
        mut visit: impl FnMut(&Self, u64, usize),
    ) -> Result<usize, Corruption> {
        let mut ahead = 0;
        let mut n = 0;
        let mut bytes = 0;
        let result = loop {
            if n == max || ahead == self.shape.count {
                break Ok(());
            }
            let record = match self.peek(ahead) {
                Ok(Some(record)) => record,
                Ok(None) => break Ok(()),
                Err(corrupt) => break Err(corrupt),
            };
            if !record.is_padding() {
                visit(self, ahead, record.len());
                bytes += record.len() as u64;
                n += 1;
            }
            // The common case advances by a constant, so the next slot's address does not
            // wait for this slot's meta word (a load that may still be in flight from the
            // producer's core): successive slots' loads overlap, as before records.
            if record.is_one_slot_message() {
                ahead += 1;
            } else {
                ahead = self.past_long_record(ahead, record);
            }
        };
        // What was visited is released even when a later record is corrupt.
        if ahead > 0 {
            self.release(ahead, bytes);
        }
        result.map(|()| n)
    }
}
