//! [`Producer`]: the writing half of a ring. It reserves the slots a record covers (after
//! a padding record when a long message would run past the ring's end), writes the
//! payload, then publishes with one Release store of the record's first commit word.

use super::record::{Record, Shape, PADDING};
use super::{RingMemory, MAX_INDEX};
use crate::error::{Corruption, Error, Result};
use crate::sync::{AtomicU64, Ordering};

/// The producer half of a ring. Only one may exist per ring. (A clone is a read-only
/// view: the async waiter thread uses one to see when slots are free.)
#[derive(Clone)]
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
    /// Published slots that started no message; mirrored to `mem.head_extra()` (only
    /// padding and long records change it, so one-slot messages never touch it).
    extra: u64,
    mask: u64,
    shape: Shape,
}

impl<M: RingMemory> Producer<M> {
    /// A producer continuing at `head`, with the consumer known to be at `tail`.
    /// The caller has checked `tail <= head <= tail + count` and `head <= MAX_INDEX`.
    pub(crate) fn new(mem: M, head: u64, tail: u64, bytes: u64) -> Self {
        let shape = super::shape_of(&mem);
        let count = shape.count;
        debug_assert!(tail <= head && head - tail <= count && head <= MAX_INDEX);
        Producer {
            head,
            cached_tail: Self::cache_tail(tail, count),
            bytes,
            // A statistic continued from the mapping (untrusted: it only wraps).
            extra: mem.head_extra().load(Ordering::Relaxed),
            mask: count - 1,
            shape,
            mem,
        }
    }

    /// A producer taking over a ring whose consumer is at `tail`: its head is the end of
    /// the last whole record published from `tail` on (records are walked by their
    /// validated spans). A previous producer that died after mirroring its head but before
    /// committing leaves no hole this way (the mirrored head is not trusted), and one that
    /// died in the middle of a long message left its first commit word unwritten, so
    /// nothing of it counts; the slot headers its bytes overwrote are repaired (see
    /// [`Producer::repair`]). `bytes` continues the byte count.
    pub(crate) fn resume(mem: M, tail: u64, bytes: u64) -> Self {
        let shape = super::shape_of(&mem);
        let mask = shape.count - 1;
        let mut head = tail;
        while head - tail < shape.count && head < MAX_INDEX {
            let slot = (head & mask) as usize;
            // SYNC POINT with the Release store in `publish` (of the producer that
            // died): its meta word and payload are visible once its commit is.
            if mem.commit(slot).load(Ordering::Acquire) != head + 1 {
                break;
            }
            let meta = mem.meta(slot).load(Ordering::Relaxed);
            match shape.decode(head, head - tail, meta) {
                Ok(record) if head + record.span() <= MAX_INDEX => head += record.span(),
                // A corrupt record ends the walk; the consumer reports it when it gets
                // there.
                _ => break,
            }
        }
        mem.head().store(head, Ordering::Relaxed);
        let producer = Producer::new(mem, head, tail, bytes);
        // Every free slot after `head` may have been covered by the dead producer's
        // unfinished record. (The slot at `head` itself was not: a record's bytes start
        // after its first slot's header, and the consumer may be polling that word.)
        producer.repair(head + 1, (tail + shape.count).min(MAX_INDEX));
        producer
    }

    /// Writes the commit word of each free slot of index `from..to` back to the previous
    /// lap's value (`index + 1 - count`, or 0 on the first lap), which the consumer expects
    /// of a slot not yet published: an in-place write that was abandoned, or published
    /// shorter than reserved, or a producer that died mid-write, may have put message bytes
    /// over those headers. The consumer reads none of these slots before a later commit
    /// (Release) tells it a record starts there, so Relaxed stores suffice.
    fn repair(&self, from: u64, to: u64) {
        for index in from..to {
            let previous = (index + 1).saturating_sub(self.shape.count);
            self.mem
                .commit((index & self.mask) as usize)
                .store(previous, Ordering::Relaxed);
        }
    }

    /// The largest message this ring carries.
    #[cfg_attr(loom, allow(dead_code))] // used by the transport, compiled out under loom
    pub(crate) fn max_len(&self) -> usize {
        self.shape.max_len()
    }

    /// Payload bytes of one slot: messages up to this length take one slot.
    #[cfg_attr(loom, allow(dead_code))] // used by the transport, compiled out under loom
    pub(crate) fn slot_size(&self) -> usize {
        self.shape.slot_size
    }

    /// The memory this producer writes.
    #[cfg_attr(loom, allow(dead_code))] // used by the transport, compiled out under loom
    pub(crate) fn memory(&self) -> &M {
        &self.mem
    }

    /// Whether the shared tail shows `wanted` free slots, without updating the cache: a
    /// cheap re-check for a waiter about to sleep. A corrupt tail reads as "free" so the
    /// caller's real check ([`Producer::free_slots`]) reports it.
    pub(crate) fn space_visible(&self, wanted: u64) -> bool {
        let tail = self.mem.tail().load(Ordering::Acquire);
        let used = self.head.wrapping_sub(tail);
        used > self.shape.count || self.shape.count - used >= wanted
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
    #[inline(always)]
    pub(crate) fn free_slots(&mut self, wanted: u64) -> Result<u64, Corruption> {
        let count = self.shape.count;
        let free = count - (self.head - self.cached_tail);
        if free >= wanted {
            return Ok(free);
        }
        // SYNC POINT with the Release store of `tail` in `Consumer::release`: the
        // consumer's reads of every slot below `tail` (and its restoring of the covered
        // slots' words) happen before we overwrite them.
        let tail = self.mem.tail().load(Ordering::Acquire);
        if tail < self.cached_tail || tail > self.head || self.head == MAX_INDEX {
            return Err(Corruption::IndexOutOfRange {
                head: self.head,
                tail,
                count,
            });
        }
        self.cached_tail = Self::cache_tail(tail, count);
        Ok(count - (self.head - self.cached_tail))
    }

    /// Slots a message of `len` bytes needs free before it can be sent now: its span, or,
    /// where it would run past the ring's end, the padding in front of it (sent first).
    /// A waiter waits for this many.
    #[cfg_attr(loom, allow(dead_code))] // used by the transport, compiled out under loom
    pub(crate) fn slots_needed(&self, len: usize) -> u64 {
        let span = self.shape.span_of(len);
        let slot = self.head & self.mask;
        if slot + span > self.shape.count {
            self.shape.count - slot
        } else {
            span
        }
    }

    /// Reserves the slots for a message of `len` bytes (checked against the ring's
    /// largest): `Ok(Some(span))` when they are free, `Ok(None)` when not. A long message
    /// that would run past the ring's end first publishes a padding record over the rest
    /// of the ring, as soon as those slots are free; that padding stays published if the
    /// message then has to wait (it is no message: the consumer skips it).
    #[inline(always)]
    fn reserve(&mut self, len: usize) -> Result<Option<u64>> {
        if len <= self.shape.slot_size {
            return Ok((self.free_slots(1)? > 0).then_some(1));
        }
        self.reserve_long(len)
    }

    #[cold]
    fn reserve_long(&mut self, len: usize) -> Result<Option<u64>> {
        self.check_len(len)?;
        let span = self.shape.span_of(len);
        let slot = self.head & self.mask;
        if slot + span > self.shape.count {
            let pad = self.shape.count - slot;
            if self.free_slots(pad)? < pad {
                return Ok(None);
            }
            self.mirror_head(pad, 0);
            self.add_extra(pad);
            self.commit(PADDING, pad);
        }
        Ok((self.free_slots(span)? >= span).then_some(span))
    }

    /// Publishes `msg` if it fits one slot and the cached tail already shows a free slot:
    /// no shared read, nothing that can fail. `false` otherwise (nothing done), for
    /// [`Producer::try_send`] to decide. The send path's fast case.
    #[inline(always)]
    pub(crate) fn try_send_cached(&mut self, msg: &[u8]) -> bool {
        // `cached_tail <= MAX_INDEX - count` (see `cache_tail`), so a free slot here also
        // means `head < MAX_INDEX`.
        if msg.len() > self.shape.slot_size || self.head - self.cached_tail >= self.shape.count {
            return false;
        }
        self.mirror_head(1, msg.len() as u64);
        self.write_and_commit(msg, 1);
        true
    }

    /// Publishes `msg` if its slots are free. `Ok(false)` when they are not.
    #[inline(always)]
    pub(crate) fn try_send(&mut self, msg: &[u8]) -> Result<bool> {
        if msg.len() > self.shape.slot_size {
            return self.try_send_long(msg);
        }
        // One slot: the common case, with constant span (see `try_send_long`).
        if self.free_slots(1)? == 0 {
            return Ok(false);
        }
        self.mirror_head(1, msg.len() as u64);
        self.write_and_commit(msg, 1);
        Ok(true)
    }

    /// [`Producer::try_send`] of a message longer than a slot.
    #[cold]
    fn try_send_long(&mut self, msg: &[u8]) -> Result<bool> {
        let Some(span) = self.reserve_long(msg.len())? else {
            return Ok(false);
        };
        self.mirror_head(span, msg.len() as u64);
        self.add_extra(span - 1);
        self.write_and_commit(msg, span);
        Ok(true)
    }

    /// Publishes as many of `msgs` as fit, in order. Returns how many were published.
    /// Every message is length-checked before any is published. Messages of one slot
    /// each take one free-space check for the whole batch.
    pub(crate) fn try_send_batch(&mut self, msgs: &[&[u8]]) -> Result<usize> {
        let mut long = false;
        for msg in msgs {
            // A message of one slot is never too long; only longer ones need the check.
            if msg.len() > self.shape.slot_size {
                self.check_len(msg.len())?;
                long = true;
            }
        }
        if long {
            return self.try_send_each(msgs);
        }
        let free = self.free_slots(msgs.len() as u64)?;
        let n = msgs.len().min(free as usize);
        let bytes = msgs[..n].iter().map(|m| m.len() as u64).sum();
        self.mirror_head(n as u64, bytes);
        for msg in &msgs[..n] {
            self.write_and_commit(msg, 1);
        }
        Ok(n)
    }

    #[cold]
    fn try_send_each(&mut self, msgs: &[&[u8]]) -> Result<usize> {
        let mut n = 0;
        for msg in msgs {
            if !self.try_send(msg)? {
                break;
            }
            n += 1;
        }
        Ok(n)
    }

    /// If the slots for a message of up to `capacity` bytes are free, lets `write` fill
    /// them in place (`capacity` bytes, holding whatever earlier messages left, one
    /// contiguous buffer) and publishes the length it returns. `Ok(false)` when the slots
    /// are not free (then `write` is not called). A writer's error comes back unchanged
    /// and a returned length above `capacity` is [`Error::MessageTooLarge`]: either way
    /// nothing is published (a padding record may have been, see `reserve`).
    pub(crate) fn try_send_with<E: From<Error>>(
        &mut self,
        capacity: usize,
        write: impl FnOnce(&mut [u8]) -> std::result::Result<usize, E>,
    ) -> std::result::Result<bool, E> {
        let Some(span) = self.reserve(capacity)? else {
            return Ok(false);
        };
        let slot = (self.head & self.mask) as usize;
        // SAFETY: `reserve` showed the `span` slots from `head` free (see
        // `write_and_commit`) and `check_len` bounded `capacity` by the ring; we are the
        // only producer; the borrow ends when `write` returns, before the commit.
        let written = write(unsafe { self.mem.payload_mut(slot, capacity) });
        // The headers of reserved slots that will not be published may hold the writer's
        // bytes now.
        let used = match &written {
            Ok(len) if *len <= capacity => self.shape.span_of(*len),
            _ => 1,
        };
        if used < span {
            self.repair(self.head + used, self.head + span);
        }
        let len = written?;
        if len > capacity {
            return Err(Error::MessageTooLarge {
                len,
                max_len: capacity,
            }
            .into());
        }
        self.mirror_head(used, len as u64);
        if used > 1 {
            self.add_extra(used - 1);
        }
        self.commit(len as u32, used);
        Ok(true)
    }

    #[inline]
    fn check_len(&self, len: usize) -> Result<()> {
        let max_len = self.shape.max_len();
        if len > max_len {
            return Err(Error::MessageTooLarge { len, max_len });
        }
        Ok(())
    }

    /// Stores the mirrored head and byte count for the `span` slots about to be committed.
    /// They are stored *before* the commits, so whoever acquires a commit word (and then
    /// the tail derived from it) never sees `head < tail`.
    #[inline(always)]
    fn mirror_head(&mut self, span: u64, bytes: u64) {
        // A statistic that starts from the mapping's (untrusted) count: it wraps.
        self.bytes = self.bytes.wrapping_add(bytes);
        self.mem.head().store(self.head + span, Ordering::Relaxed);
        self.mem.head_bytes().store(self.bytes, Ordering::Relaxed);
    }

    /// Counts `slots` published slots that start no message (stats: `head - extra`).
    #[cold]
    fn add_extra(&mut self, slots: u64) {
        // A statistic that starts from the mapping's (untrusted) count: it wraps.
        self.extra = self.extra.wrapping_add(slots);
        self.mem.head_extra().store(self.extra, Ordering::Relaxed);
    }

    /// Writes `msg` into the `span` slots at `head` and commits it. The caller reserved
    /// them.
    ///
    /// Everything the commit needs (the slot's words, the values stored) is computed
    /// before the copy, so nothing is reloaded after it (the copy writes through a raw
    /// pointer the compiler cannot tell apart from `self`).
    #[inline(always)]
    fn write_and_commit(&mut self, msg: &[u8], span: u64) {
        let slot = (self.head & self.mask) as usize;
        let words = self.mem.words(slot);
        let values = self.record_words(msg.len() as u32, span);
        // SAFETY: `reserve` (or `free_slots` for a batch, or `try_send_cached` by the
        // cached tail, which only ever comes from `free_slots`' Acquire load or from
        // `new`) showed the `span` slots from `head` free (the consumer released them,
        // acquired-before-reuse per the SYNC POINT there), they do not pass the ring's end
        // (`reserve` padded; a cached send is one slot), we are the only producer, and
        // `check_len` (or `try_send_cached`'s `slot_size` check) bounded `msg.len()` by
        // the ring.
        unsafe { self.mem.write_payload(slot, msg) };
        publish(words, values);
        self.head += span;
    }

    /// The commit and meta words that publish the record of `len` (or [`PADDING`])
    /// covering `span` slots at `head`.
    #[inline(always)]
    fn record_words(&self, len: u32, span: u64) -> (u64, u64) {
        debug_assert_eq!(
            self.shape
                .decode(self.head, 0, Shape::meta(len, span))
                .map(Record::span),
            Ok(span)
        );
        (self.head + 1, Shape::meta(len, span))
    }

    /// Publishes the record of `len` (or [`PADDING`]) covering `span` slots at `head`.
    #[inline(always)]
    fn commit(&mut self, len: u32, span: u64) {
        let slot = (self.head & self.mask) as usize;
        publish(self.mem.words(slot), self.record_words(len, span));
        self.head += span;
    }
}

/// Stores a record's meta word, then its commit word, which publishes it (the payload
/// was written before).
#[inline(always)]
fn publish((commit, meta): (&AtomicU64, &AtomicU64), (published, meta_word): (u64, u64)) {
    meta.store(meta_word, Ordering::Relaxed);
    // SYNC POINT with the Acquire load of the commit word in `Consumer::peek`: the meta
    // word and payload written before are visible to a consumer that sees `head + 1`.
    commit.store(published, Ordering::Release);
}
