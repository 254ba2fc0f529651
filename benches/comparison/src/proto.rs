//! The protocol floor (issue 20): the smallest ring that carries this transport's slot
//! format and nothing else, measured beside the raw floors so that a gap to the floor can
//! be split into what the protocol costs and what the transport's code path adds
//! (docs/BENCHMARKS.md).
//!
//! Slots are laid out as docs/LAYOUT.md's: a 16-byte header (the commit word, u64, holding
//! `index + 1` once the message is published; then `len` u32 and `span` u32, written as
//! one 8-byte store) and the payload at offset 16, `round_up(16 + slot_size, 64)` bytes
//! from one slot to the next, the slot area 4096-aligned. Each ring's first page holds its
//! control words, each on its own 128-byte block: the producer's block (empty: there is no
//! `head` mirror), the consumer's `tail`, and three flags (`ready`, `done`, `stop`) for the
//! harness.
//!
//! Per message the producer waits for room only when its cached `tail` says the ring is
//! full, copies the payload, stores the length word (Relaxed) and the commit word
//! (Release). The consumer spins on the expected slot's commit word (Acquire), reads the
//! length word and releases with a Release store of `tail`. None of the transport's
//! per-message work is here: no length check (a length read back is clamped to the slot,
//! a `min` that keeps copies in bounds, not a check with an error), no `head` or byte
//! mirrors, no peer or link checks, no validation of what is read. Waits look at the clock
//! (and at `stop`) once per [`SPINS`] spins only, so a message that is already there costs
//! no more than its loads.

use std::marker::PhantomData;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use crate::baselines::Mapping;
use crate::{err, Error, WAIT};

mod round_trip;
pub(crate) use round_trip::{echo, Pinger};

/// Bytes of a slot's header: the commit word, then `len` and `span`.
pub(crate) const HEADER: usize = 16;
/// Where a ring's slot area starts within its part of the mapping (its first page holds
/// the control blocks).
const SLOT_AREA: usize = 4096;
/// The consumer's `tail` (the index of the first message not yet released), on the block
/// after the producer's (bytes 0-127, empty: no `head` mirror).
const TAIL: usize = 128;

/// The harness's flags in a ring's control page (their byte offsets), each on its own
/// 128-byte block; raised once, never lowered.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Flag {
    /// The consumer has mapped the ring and starts polling: a measurement timed from here
    /// leaves out the peer process's start (as the streaming floor's `wait_ready`).
    Ready = 256,
    /// A stream's consumer has consumed every message.
    Done = 384,
    /// The pinging side of a round trip is finished: the echoing side's wait returns
    /// [`Halt::Stopped`].
    Stop = 512,
}
/// Spins between two looks at the clock and the `stop` flag.
const SPINS: u32 = 1024;

/// Why a wait ended without what it waited for.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Halt {
    /// The ring's `stop` flag was set.
    Stopped,
    /// Nothing came for [`WAIT`].
    TimedOut,
}

impl From<Halt> for Error {
    fn from(h: Halt) -> Error {
        err("protocol floor", format!("{h:?}"))
    }
}

/// One ring: where it starts in the mapping, its slot size and slot count.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct ProtoRing {
    /// Byte offset of the ring's control page in the mapping (a multiple of 4096).
    pub base: usize,
    /// Payload bytes per slot.
    pub slot_size: usize,
    /// Slots, a power of two.
    pub slots: u64,
}

/// The two rings of a round trip (a2b, then b2a) of `slots` slots of `slot_size` bytes,
/// one after the other in one mapping of `duplex(..)[1].end()` bytes.
pub(crate) fn duplex(slot_size: usize, slots: u64) -> [ProtoRing; 2] {
    let a2b = ProtoRing::new(0, slot_size, slots);
    [a2b, ProtoRing::new(a2b.end(), slot_size, slots)]
}

impl ProtoRing {
    /// A ring at `base` (a multiple of 4096); `slots` must be a power of two.
    pub(crate) fn new(base: usize, slot_size: usize, slots: u64) -> ProtoRing {
        assert!(base % 4096 == 0 && slots.is_power_of_two() && slot_size > 0);
        ProtoRing {
            base,
            slot_size,
            slots,
        }
    }

    /// Bytes from one slot to the next: `round_up(16 + slot_size, 64)`, as LAYOUT.md's.
    pub(crate) fn stride(&self) -> usize {
        (HEADER + self.slot_size).div_ceil(64) * 64
    }

    /// Byte offset of the slot area in the mapping (4096-aligned).
    pub(crate) fn slot_area(&self) -> usize {
        self.base + SLOT_AREA
    }

    /// Byte offset just past the ring, rounded up to a page: where a next ring may start.
    pub(crate) fn end(&self) -> usize {
        (self.slot_area() + self.slots as usize * self.stride()).div_ceil(4096) * 4096
    }

    /// The control word at `offset` in the ring's control page.
    fn word<'m>(&self, m: &'m Mapping, offset: usize) -> &'m AtomicU64 {
        m.u64_at(self.base + offset)
    }

    /// The ring's slots in `m` (which must be at least [`ProtoRing::end`] bytes).
    fn slots<'m>(&self, m: &'m Mapping) -> Slots<'m> {
        let len = self.slots as usize * self.stride();
        Slots {
            area: m.bytes_at(self.slot_area(), len),
            mask: self.slots - 1,
            stride: self.stride(),
            _mapping: PhantomData,
        }
    }

    /// The producing side in `m`, starting at index 0.
    pub(crate) fn producer<'m>(&self, m: &'m Mapping) -> Producer<'m> {
        Producer {
            slots: self.slots(m),
            tail: self.word(m, TAIL),
            count: self.slots,
            slot_size: self.slot_size,
            next: 0,
            cached_tail: 0,
        }
    }

    /// The consuming side in `m`, starting at index 0.
    pub(crate) fn consumer<'m>(&self, m: &'m Mapping) -> Consumer<'m> {
        Consumer {
            slots: self.slots(m),
            tail: self.word(m, TAIL),
            stop: self.word(m, Flag::Stop as usize),
            count: self.slots,
            slot_size: self.slot_size,
            next: 0,
        }
    }

    /// Raises `flag`.
    pub(crate) fn raise(&self, m: &Mapping, flag: Flag) {
        // SYNC POINT with the Acquire load in `wait_for` (`Ready`, `Done`) or in
        // `look` (`Stop`): what this side did before is visible after.
        self.word(m, flag as usize).store(1, Ordering::Release);
    }

    /// Waits (up to [`WAIT`]) until `flag` is raised.
    pub(crate) fn wait_for(&self, m: &Mapping, flag: Flag) -> Result<(), Halt> {
        let word = self.word(m, flag as usize);
        // SYNC POINT with the Release store in `raise`.
        spin_until(|| word.load(Ordering::Acquire) != 0, None)
    }
}

/// Spins until `ready()`; every [`SPINS`] spins looks at `stop` (if any) and at the clock.
#[inline(always)]
fn spin_until(mut ready: impl FnMut() -> bool, stop: Option<&AtomicU64>) -> Result<(), Halt> {
    let mut spins = 0;
    let mut deadline = None;
    while !ready() {
        std::hint::spin_loop();
        spins += 1;
        if spins == SPINS {
            spins = 0;
            look(stop, &mut deadline)?;
        }
    }
    Ok(())
}

/// The slow part of [`spin_until`]: is `stop` raised, or the deadline (set on the first
/// look) past?
#[cold]
#[inline(never)]
fn look(stop: Option<&AtomicU64>, deadline: &mut Option<Instant>) -> Result<(), Halt> {
    // SYNC POINT with the Release store of `stop` in `ProtoRing::raise`.
    if stop.is_some_and(|s| s.load(Ordering::Acquire) != 0) {
        return Err(Halt::Stopped);
    }
    let now = Instant::now();
    match *deadline {
        None => *deadline = Some(now + WAIT),
        Some(d) if now >= d => return Err(Halt::TimedOut),
        Some(_) => {}
    }
    Ok(())
}

/// A ring's slot area: `mask + 1` slots of `stride` bytes, valid while the mapping is.
struct Slots<'m> {
    area: *mut u8,
    mask: u64,
    stride: usize,
    _mapping: PhantomData<&'m Mapping>,
}

impl<'m> Slots<'m> {
    /// The first byte of message `i`'s slot.
    #[inline(always)]
    fn slot(&self, i: u64) -> *mut u8 {
        // SAFETY: `i & mask` is below the slot count, so the slot lies within the area
        // that `ProtoRing::slots` took from the mapping (bounds-checked there).
        unsafe { self.area.add((i & self.mask) as usize * self.stride) }
    }

    /// Message `i`'s commit word (slot offset 0).
    #[inline(always)]
    fn commit(&self, i: u64) -> &'m AtomicU64 {
        // SAFETY: in bounds (`slot`), 8-aligned (the area is 4096-aligned and the stride a
        // multiple of 64), and only ever accessed atomically; valid for the mapping's life.
        unsafe { &*self.slot(i).cast::<AtomicU64>() }
    }

    /// Message `i`'s length word (slot offset 8): `len` in the low half, `span` above.
    #[inline(always)]
    fn meta(&self, i: u64) -> &'m AtomicU64 {
        // SAFETY: as for `commit`, 8 bytes further, still within the 16-byte header.
        unsafe { &*self.slot(i).add(8).cast::<AtomicU64>() }
    }

    /// Message `i`'s payload (slot offset 16).
    #[inline(always)]
    fn payload(&self, i: u64) -> *mut u8 {
        // SAFETY: within the slot: the stride is at least 16 + slot_size.
        unsafe { self.slot(i).add(HEADER) }
    }
}

/// The producing side of a [`ProtoRing`].
pub(crate) struct Producer<'m> {
    slots: Slots<'m>,
    tail: &'m AtomicU64,
    count: u64,
    slot_size: usize,
    /// The index of the next message.
    next: u64,
    /// The consumer's `tail` as last read.
    cached_tail: u64,
}

impl Producer<'_> {
    /// Publishes `len` bytes from `src` as the next message.
    ///
    /// # Safety
    /// `src` is valid for reads of `len` bytes, `len <= slot_size`, and `src` does not lie
    /// in this ring's slot area.
    #[inline(always)]
    unsafe fn publish(&mut self, src: *const u8, len: usize) -> Result<(), Halt> {
        let i = self.next;
        if i - self.cached_tail >= self.count {
            self.wait_for_room()?;
        }
        // SAFETY: the slot is free (the consumer released it: `tail` > i - count), its
        // payload has room for `len <= slot_size` bytes, and `src` is valid and apart
        // (the caller).
        unsafe { std::ptr::copy_nonoverlapping(src, self.slots.payload(i), len) };
        // One 8-byte store of `len` and `span` (1), as the transport's.
        self.slots
            .meta(i)
            .store(len as u64 | 1 << 32, Ordering::Relaxed);
        // SYNC POINT with the Acquire load of the commit word in `Consumer::wait_next` and
        // `Consumer::drain`: the payload and length word are visible once this is.
        self.slots.commit(i).store(i + 1, Ordering::Release);
        self.next = i + 1;
        Ok(())
    }

    /// Waits until the consumer released a slot for message `next`.
    #[cold]
    #[inline(never)]
    fn wait_for_room(&mut self) -> Result<(), Halt> {
        let (tail, i, count) = (self.tail, self.next, self.count);
        let mut cached = self.cached_tail;
        spin_until(
            || {
                // SYNC POINT with the Release store of `tail` in `Consumer::release`: the
                // consumer's reads of the slot happen before we overwrite it.
                cached = tail.load(Ordering::Acquire);
                i - cached < count
            },
            None,
        )?;
        self.cached_tail = cached;
        Ok(())
    }

    /// Sends `msg` `n` times (the producer of a stream).
    pub(crate) fn send_n(&mut self, msg: &[u8], n: u64) -> Result<(), Halt> {
        assert!(msg.len() <= self.slot_size, "message larger than a slot");
        for _ in 0..n {
            // SAFETY: `msg` fits a slot (checked once above) and is the caller's memory.
            unsafe { self.publish(msg.as_ptr(), msg.len())? };
        }
        Ok(())
    }
}

/// The consuming side of a [`ProtoRing`].
pub(crate) struct Consumer<'m> {
    slots: Slots<'m>,
    tail: &'m AtomicU64,
    stop: &'m AtomicU64,
    count: u64,
    slot_size: usize,
    /// The index of the next message (everything before it is released).
    next: u64,
}

impl Consumer<'_> {
    /// Waits for the next message and returns its length (clamped to the slot size).
    #[inline(always)]
    fn wait_next(&self) -> Result<usize, Halt> {
        let (i, commit) = (self.next, self.slots.commit(self.next));
        // SYNC POINT with the Release store of the commit word in `Producer::publish`.
        spin_until(|| commit.load(Ordering::Acquire) == i + 1, Some(self.stop))?;
        let len = self.slots.meta(i).load(Ordering::Relaxed) as u32 as usize;
        Ok(len.min(self.slot_size))
    }

    /// Releases every message before `upto` to the producer.
    #[inline(always)]
    fn release(&mut self, upto: u64) {
        self.next = upto;
        // SYNC POINT with the Acquire load of `tail` in `Producer::wait_for_room`: our
        // reads of the released slots happen before the producer reuses them.
        self.tail.store(upto, Ordering::Release);
    }

    /// Receives the next message (its length word read, its payload not) and releases it:
    /// what the round trip's pinging side does with a reply.
    #[inline(always)]
    pub(crate) fn take_one(&mut self) -> Result<usize, Halt> {
        let len = self.wait_next()?;
        self.release(self.next + 1);
        Ok(len)
    }

    /// Waits for the next message, then reads every message already published from there,
    /// up to `max` (at most the slot count): its length word and its first payload word;
    /// then releases them all with one `tail` store, as the transport's `recv_batch`
    /// does. Returns how many it read.
    pub(crate) fn drain(&mut self, max: u64) -> Result<u64, Halt> {
        let max = max.min(self.count);
        let first = self.next;
        if max == 0 {
            return Ok(0);
        }
        self.wait_next()?;
        let mut i = first;
        loop {
            let len = self.slots.meta(i).load(Ordering::Relaxed);
            // SAFETY: message `i` is published (its commit word was seen, Acquire) and not
            // released; its payload's first 8 bytes lie within the slot (stride >= 64),
            // 8-aligned; the producer wrote them before the commit (or they are the
            // mapping's earlier bytes, initialized: any u64 is valid).
            let word = unsafe { std::ptr::read_volatile(self.slots.payload(i).cast::<u64>()) };
            std::hint::black_box((len, word));
            i += 1;
            // SYNC POINT with the Release store of the commit word in `Producer::publish`.
            if i - first == max || self.slots.commit(i).load(Ordering::Acquire) != i + 1 {
                break;
            }
        }
        self.release(i);
        Ok(i - first)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    /// A mapping under a name of its own (`cst-` prefix, pid, counter), unlinked on drop,
    /// and its name (another thread maps it again, as a peer process would).
    pub(super) fn named_mapping(len: usize) -> (Mapping, String) {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let name = format!("cst-proto-{}-{n}", std::process::id());
        (Mapping::create(&name, len).expect("shm"), name)
    }

    fn mapping(len: usize) -> Mapping {
        named_mapping(len).0
    }

    /// The 8-byte word at byte `offset` of `m`.
    pub(super) fn word(m: &Mapping, offset: usize) -> u64 {
        m.u64_at(offset).load(Ordering::Relaxed)
    }

    #[test]
    fn slots_are_laid_out_as_layout_md_says() {
        for (slot_size, stride) in [(8, 64), (48, 64), (49, 128), (64, 128), (256, 320)] {
            assert_eq!(
                ProtoRing::new(0, slot_size, 16).stride(),
                stride,
                "{slot_size}"
            );
        }
        let [a2b, b2a] = duplex(256, 16);
        assert_eq!((a2b.slot_area(), a2b.end()), (4096, 4096 + 8192));
        assert_eq!((b2a.base, b2a.slot_area()), (a2b.end(), a2b.end() + 4096));

        let ring = ProtoRing::new(0, 64, 4);
        let m = mapping(ring.end());
        ring.producer(&m).send_n(&[7; 50], 3).unwrap();
        for i in 0..3 {
            let slot = ring.slot_area() + i * ring.stride();
            assert_eq!(word(&m, slot), i as u64 + 1, "commit word of {i}");
            assert_eq!(word(&m, slot + 8), 50 | 1 << 32, "len and span of {i}");
            // SAFETY: in bounds of the mapping (bytes_at checks), written above.
            let payload = unsafe { std::slice::from_raw_parts(m.bytes_at(slot + 16, 50), 50) };
            assert!(payload.iter().all(|b| *b == 7));
            assert_eq!(word(&m, slot + 16 + 56), 0, "nothing past the message");
        }
        assert_eq!(
            word(&m, ring.slot_area() + 3 * ring.stride()),
            0,
            "slot 3 unused"
        );
        assert_eq!(word(&m, TAIL), 0);
    }

    #[test]
    fn a_drain_reads_what_is_published_and_releases_it_at_once() {
        let ring = ProtoRing::new(0, 48, 8);
        let m = mapping(ring.end());
        let (mut tx, mut rx) = (ring.producer(&m), ring.consumer(&m));
        tx.send_n(&[1; 48], 8).unwrap(); // a full ring
        assert_eq!(rx.drain(256), Ok(8));
        assert_eq!(word(&m, TAIL), 8);
        tx.send_n(&[2; 48], 3).unwrap();
        assert_eq!(rx.drain(2), Ok(2));
        assert_eq!(word(&m, TAIL), 10);
        assert_eq!(rx.drain(256), Ok(1));
        assert_eq!(rx.drain(0), Ok(0));
        assert_eq!(word(&m, TAIL), 11);
        // Nothing more published: a stopped wait returns.
        ring.raise(&m, Flag::Stop);
        assert_eq!(rx.drain(256), Err(Halt::Stopped));
        assert_eq!(rx.take_one(), Err(Halt::Stopped));
    }

    #[test]
    fn a_stream_arrives_whole_through_a_small_ring() {
        let ring = ProtoRing::new(0, 64, 8);
        let (m, name) = named_mapping(ring.end());
        let n = 10_000;
        let batches = std::thread::scope(|s| {
            let consumer = s.spawn(|| {
                let m = Mapping::open(&name, ring.end()).expect("shm");
                let mut rx = ring.consumer(&m);
                ring.raise(&m, Flag::Ready);
                let (mut got, mut batches) = (0, 0);
                while got < n {
                    got += rx.drain(256)?;
                    batches += 1;
                }
                ring.raise(&m, Flag::Done);
                Ok::<_, Halt>((got, batches))
            });
            ring.wait_for(&m, Flag::Ready).unwrap();
            ring.producer(&m).send_n(&[3; 64], n).unwrap();
            ring.wait_for(&m, Flag::Done).unwrap();
            consumer.join().unwrap().unwrap()
        });
        assert_eq!(batches.0, n);
        assert!((n / 8..=n).contains(&batches.1), "{batches:?}");
        assert_eq!(word(&m, TAIL), n);
    }
}
