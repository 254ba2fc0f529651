//! Model checks of the ring protocol with loom: the real `Producer` and `Consumer` over a
//! memory whose words are loom atomics and whose payloads are loom cells, so loom explores
//! the interleavings and weak-memory outcomes the orderings allow, and reports a data race
//! if a payload could be read while written. Run with `scripts/loom.sh`.

use loom::cell::UnsafeCell;
use loom::sync::Arc;
use loom::thread;

use super::{Consumer, Producer, RingMemory};
use crate::sync::{AtomicU64, Ordering};

const SLOT_SIZE: usize = 4;
/// What a record's bytes write over a slot header it covers, in this model: a value no
/// commit or meta word ever holds, so a consumer that read a covered slot's words without
/// their being restored would report corruption (and fail the model).
const OVERWRITTEN: u64 = 0xDEAD_BEEF_DEAD_BEEF;

struct Inner {
    head: AtomicU64,
    head_bytes: AtomicU64,
    tail: AtomicU64,
    tail_bytes: AtomicU64,
    head_extra: AtomicU64,
    tail_extra: AtomicU64,
    commit: Vec<AtomicU64>,
    meta: Vec<AtomicU64>,
    /// The payload bytes of all slots, back to back (the model's stride is `SLOT_SIZE`:
    /// its slot headers live in `commit` and `meta`), so a record is one contiguous slice.
    bytes: std::cell::UnsafeCell<Vec<u8>>,
    /// One loom cell per slot, accessed (read or written) whenever a record covering the
    /// slot is: loom reports a data race if two such accesses are not ordered.
    access: Vec<UnsafeCell<()>>,
}

// SAFETY: `bytes` is only reached through `LoomMemory`'s accessors, whose callers own the
// slots they touch (the `RingMemory` contract), and every such access is checked by loom
// through the per-slot `access` cells.
unsafe impl Sync for Inner {}
// SAFETY: see `Sync`.
unsafe impl Send for Inner {}

/// A ring's memory for loom, shared by the two threads (also used by the waiter's
/// models in `wait/loom_tests.rs`).
#[derive(Clone)]
pub(crate) struct LoomMemory(Arc<Inner>);

impl LoomMemory {
    pub(crate) fn new(slots: usize) -> LoomMemory {
        LoomMemory(Arc::new(Inner {
            head: AtomicU64::new(0),
            head_bytes: AtomicU64::new(0),
            tail: AtomicU64::new(0),
            tail_bytes: AtomicU64::new(0),
            head_extra: AtomicU64::new(0),
            tail_extra: AtomicU64::new(0),
            commit: (0..slots).map(|_| AtomicU64::new(0)).collect(),
            meta: (0..slots).map(|_| AtomicU64::new(0)).collect(),
            bytes: std::cell::UnsafeCell::new(vec![0; slots * SLOT_SIZE]),
            access: (0..slots).map(|_| UnsafeCell::new(())).collect(),
        }))
    }

    /// The slots a record of `len` bytes at `slot` covers.
    fn covered(slot: usize, len: usize) -> std::ops::Range<usize> {
        slot..slot + len.div_ceil(SLOT_SIZE).max(1)
    }

    /// Records a write of the record's slots, and overwrites the headers it covers after
    /// its first, as the real layout's payload does.
    fn write_access(&self, slot: usize, len: usize) -> *mut u8 {
        let covered = Self::covered(slot, len);
        assert!(covered.end <= self.0.commit.len(), "record passes the ring");
        for s in covered.clone() {
            self.0.access[s].with_mut(|_| ());
        }
        for s in covered.skip(1) {
            self.0.commit[s].store(OVERWRITTEN, Ordering::Relaxed);
            self.0.meta[s].store(OVERWRITTEN, Ordering::Relaxed);
        }
        // SAFETY: in bounds (checked above); the caller owns these slots.
        unsafe { (*self.0.bytes.get()).as_mut_ptr().add(slot * SLOT_SIZE) }
    }

    /// Records a read of the record's slots.
    fn read_access(&self, slot: usize, len: usize) -> *const u8 {
        let covered = Self::covered(slot, len);
        assert!(covered.end <= self.0.commit.len(), "record passes the ring");
        for s in covered {
            self.0.access[s].with(|_| ());
        }
        // SAFETY: in bounds (checked above); the producer does not write these slots.
        unsafe { (*self.0.bytes.get()).as_ptr().add(slot * SLOT_SIZE) }
    }
}

// SAFETY: the slot count is fixed at construction (a power of two in every test), each
// slot has its own commit and meta word, the payload bytes are `slot_count * SLOT_SIZE`
// long with slot `s` at `s * SLOT_SIZE` (the stride), and every payload access is checked
// by loom through the per-slot cells.
unsafe impl RingMemory for LoomMemory {
    fn slot_count(&self) -> usize {
        self.0.commit.len()
    }
    fn slot_size(&self) -> usize {
        SLOT_SIZE
    }
    fn slot_stride(&self) -> usize {
        SLOT_SIZE
    }
    fn head(&self) -> &AtomicU64 {
        &self.0.head
    }
    fn head_bytes(&self) -> &AtomicU64 {
        &self.0.head_bytes
    }
    fn tail(&self) -> &AtomicU64 {
        &self.0.tail
    }
    fn tail_bytes(&self) -> &AtomicU64 {
        &self.0.tail_bytes
    }
    fn head_extra(&self) -> &AtomicU64 {
        &self.0.head_extra
    }
    fn tail_extra(&self) -> &AtomicU64 {
        &self.0.tail_extra
    }
    fn commit(&self, slot: usize) -> &AtomicU64 {
        &self.0.commit[slot]
    }
    fn meta(&self, slot: usize) -> &AtomicU64 {
        &self.0.meta[slot]
    }
    unsafe fn write_payload(&self, slot: usize, src: &[u8]) {
        let dst = self.write_access(slot, src.len());
        // SAFETY: `write_access` checked the bounds; the caller owns the slots.
        unsafe { std::ptr::copy_nonoverlapping(src.as_ptr(), dst, src.len()) }
    }
    unsafe fn payload(&self, slot: usize, len: usize) -> &[u8] {
        // SAFETY: in bounds; the read is recorded where the consumer takes the bytes, and
        // the slice is used only while the caller's contract (the record stays published
        // and unreleased) holds, which is what the model checks.
        unsafe { std::slice::from_raw_parts(self.read_access(slot, len), len) }
    }
    unsafe fn payload_mut(&self, slot: usize, len: usize) -> &mut [u8] {
        // SAFETY: as for `payload`, with a write recorded; the caller owns the slots.
        unsafe { std::slice::from_raw_parts_mut(self.write_access(slot, len), len) }
    }
}

/// Receives `n` messages, yielding while the ring is empty.
fn receive(consumer: &mut Consumer<LoomMemory>, n: usize) -> Vec<Vec<u8>> {
    let mut got = Vec::new();
    while got.len() < n {
        if consumer
            .drain(n - got.len(), |m| got.push(m.to_vec()))
            .unwrap()
            == 0
        {
            thread::yield_now();
        }
    }
    got
}

fn messages(n: u8) -> Vec<Vec<u8>> {
    (1..=n)
        .map(|i| vec![i; (i as usize) % (SLOT_SIZE + 1)])
        .collect()
}

#[test]
fn one_message_is_seen_whole() {
    loom::model(|| {
        let mem = LoomMemory::new(2);
        let mut producer = Producer::new(mem.clone(), 0, 0, 0);
        let sender = thread::spawn(move || assert!(producer.try_send(&[7, 7, 7]).unwrap()));
        let got = receive(&mut Consumer::new(mem, 0, 0), 1);
        sender.join().unwrap();
        assert_eq!(got, [vec![7, 7, 7]]);
    });
}

#[test]
fn slots_are_reused_only_after_release() {
    // Two slots, three messages: the third overwrites slot 0, which the tail's
    // Release/Acquire pair must protect from the consumer's read of message 1. Sent as
    // `Sender::send` does: the cached-tail fast case first, then the full `try_send`.
    loom::model(|| {
        let mem = LoomMemory::new(2);
        let mut producer = Producer::new(mem.clone(), 0, 0, 0);
        let sender = thread::spawn(move || {
            for msg in messages(3) {
                while !(producer.try_send_cached(&msg) || producer.try_send(&msg).unwrap()) {
                    thread::yield_now();
                }
            }
        });
        let got = receive(&mut Consumer::new(mem, 0, 0), 3);
        sender.join().unwrap();
        assert_eq!(got, messages(3));
    });
}

#[test]
fn batches_publish_in_order() {
    loom::model(|| {
        let mem = LoomMemory::new(2);
        let mut producer = Producer::new(mem.clone(), 0, 0, 0);
        let sender = thread::spawn(move || {
            let batch = messages(2);
            let refs: Vec<&[u8]> = batch.iter().map(|m| m.as_slice()).collect();
            assert_eq!(producer.try_send_batch(&refs).unwrap(), 2);
        });
        let got = receive(&mut Consumer::new(mem, 0, 0), 2);
        sender.join().unwrap();
        assert_eq!(got, messages(2));
    });
}

#[test]
fn in_place_writes_are_published_whole() {
    loom::model(|| {
        let mem = LoomMemory::new(1);
        let mut producer = Producer::new(mem.clone(), 0, 0, 0);
        let sender = thread::spawn(move || {
            for round in 1..=2u8 {
                loop {
                    let sent = producer
                        .try_send_with(SLOT_SIZE, |slot| {
                            slot[..2].copy_from_slice(&[round, round]);
                            Ok::<_, crate::error::Error>(2)
                        })
                        .unwrap();
                    if sent {
                        break;
                    }
                    thread::yield_now();
                }
            }
        });
        let got = receive(&mut Consumer::new(mem, 0, 0), 2);
        sender.join().unwrap();
        assert_eq!(got, [vec![1, 1], vec![2, 2]]);
    });
}

#[test]
fn a_resumed_producer_leaves_no_hole_and_no_duplicate() {
    // A producer committed message 1, mirrored its head for message 2 and died before
    // committing it. A new producer takes over (reading the consumer's tail as
    // `Sender::new` does) while the consumer is draining: the consumer sees 1, 2, 3 with
    // no hole at the uncommitted index and nothing twice.
    loom::model(|| {
        let mem = LoomMemory::new(2);
        let mut dead = Producer::new(mem.clone(), 0, 0, 0);
        assert!(dead.try_send(&[1]).unwrap());
        mem.head().store(2, Ordering::Relaxed);
        drop(dead);
        let consumer = {
            let mem = mem.clone();
            thread::spawn(move || receive(&mut Consumer::new(mem, 0, 0), 3))
        };
        let tail = mem.tail().load(Ordering::Acquire);
        let mut producer = Producer::resume(mem.clone(), tail, 0);
        for msg in [[2u8], [3]] {
            while !producer.try_send(&msg).unwrap() {
                thread::yield_now();
            }
        }
        assert_eq!(consumer.join().unwrap(), [vec![1], vec![2], vec![3]]);
    });
}

#[test]
fn long_records_wrap_after_padding_and_their_slots_are_restored() {
    // Four slots of four bytes. Message 1 covers slots 0-1; message 2 (9 bytes, three
    // slots) would run past the end from slot 2, so a padding record covers slots 2-3 and
    // the message starts at slot 0 once the consumer released message 1 and the padding.
    // Message 3 (one slot) follows at slot 3, which the padding covered. The headers
    // message 1 and 2 covered were overwritten (`OVERWRITTEN`) and the padding's hold the
    // previous lap's words, so a missing restore, or a reuse before release, fails.
    loom::model(|| {
        let mem = LoomMemory::new(4);
        let mut producer = Producer::new(mem.clone(), 0, 0, 0);
        let msgs = [vec![1u8; 6], vec![2u8; 9], vec![3u8; 1]];
        let sent = msgs.clone();
        let sender = thread::spawn(move || {
            for msg in &sent {
                while !producer.try_send(msg).unwrap() {
                    thread::yield_now();
                }
            }
        });
        let got = receive(&mut Consumer::new(mem, 0, 0), 3);
        sender.join().unwrap();
        assert_eq!(got, msgs);
    });
}
