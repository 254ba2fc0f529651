//! Model checks of the ring protocol with loom: the real `Producer` and `Consumer` over a
//! memory whose words are loom atomics and whose payloads are loom cells, so loom explores
//! the interleavings and weak-memory outcomes the orderings allow, and reports a data race
//! if a payload could be read while written. Run with `scripts/loom.sh`.

use loom::cell::UnsafeCell;
use loom::sync::Arc;
use loom::thread;

use super::{Consumer, Producer, RingMemory};
use crate::sync::{AtomicU32, AtomicU64, Ordering};

const SLOT_SIZE: usize = 4;

struct Inner {
    head: AtomicU64,
    head_bytes: AtomicU64,
    tail: AtomicU64,
    tail_bytes: AtomicU64,
    commit: Vec<AtomicU64>,
    len: Vec<AtomicU32>,
    payload: Vec<UnsafeCell<[u8; SLOT_SIZE]>>,
}

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
            commit: (0..slots).map(|_| AtomicU64::new(0)).collect(),
            len: (0..slots).map(|_| AtomicU32::new(0)).collect(),
            payload: (0..slots)
                .map(|_| UnsafeCell::new([0; SLOT_SIZE]))
                .collect(),
        }))
    }
}

// SAFETY: the slot count is fixed at construction (a power of two in every test), each
// slot has its own commit word, length word and payload cell, and the payload accessors
// go through loom's cell, which checks their exclusivity itself.
unsafe impl RingMemory for LoomMemory {
    fn slot_count(&self) -> usize {
        self.0.commit.len()
    }
    fn slot_size(&self) -> usize {
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
    fn commit(&self, slot: usize) -> &AtomicU64 {
        &self.0.commit[slot]
    }
    fn len(&self, slot: usize) -> &AtomicU32 {
        &self.0.len[slot]
    }
    unsafe fn write_payload(&self, slot: usize, src: &[u8]) {
        // SAFETY: `with_mut` records a write; loom fails the model if it races a read.
        self.0.payload[slot].with_mut(|p| {
            let bytes: &mut [u8; SLOT_SIZE] = unsafe { &mut *p };
            bytes[..src.len()].copy_from_slice(src);
        });
    }
    unsafe fn payload(&self, slot: usize, len: usize) -> &[u8] {
        // SAFETY: `with` records the read at this point, where the consumer takes the
        // bytes; the slice outlives the closure only as long as the caller's contract (the
        // slot stays published and unreleased) holds, which is what the model checks.
        self.0.payload[slot].with(|p| {
            let bytes: &[u8; SLOT_SIZE] = unsafe { &*p };
            &bytes[..len]
        })
    }
    unsafe fn payload_mut(&self, slot: usize) -> &mut [u8] {
        // SAFETY: as for `payload`, with a write recorded; the caller owns the slot.
        self.0.payload[slot].with_mut(|p| {
            let bytes: &mut [u8; SLOT_SIZE] = unsafe { &mut *p };
            &mut bytes[..]
        })
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
    // Release/Acquire pair must protect from the consumer's read of message 1.
    loom::model(|| {
        let mem = LoomMemory::new(2);
        let mut producer = Producer::new(mem.clone(), 0, 0, 0);
        let sender = thread::spawn(move || {
            for msg in messages(3) {
                while !producer.try_send(&msg).unwrap() {
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
                        .try_send_with(|slot| {
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
