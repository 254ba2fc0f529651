//! The ring's contract, written once over any [`RingMemory`] and run over every backing:
//! heap memory and real POSIX shared memory (the iceoryx2 `*_trait_tests.rs` habit).
//!
//! Each contract is a generic function taking a [`Make`]: how its backing builds a fresh
//! ring, as the producer's and the consumer's view of the same memory. The
//! `contract_tests!` macro at the bottom instantiates every contract as a `#[test]` in
//! one module per backing (`heap::…`, `shm::…`).

use std::collections::VecDeque;
use std::sync::Arc;

use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};

use super::{Consumer, Producer, Region, RingMemory, Shape};
use crate::error::{Corruption, Error};
use crate::layout::{self, Geometry, HeaderInit};
use crate::segment::{self, Segment};
use crate::sync::{AtomicU32, Ordering};

/// Builds a fresh, empty ring of `slot_count` slots of `slot_size` bytes: the producer's
/// view and the consumer's view of one memory.
pub(super) type Make<M> = fn(slot_size: usize, slot_count: usize) -> (M, M);

fn ring<M: RingMemory>(
    make: Make<M>,
    slot_size: usize,
    slot_count: usize,
) -> (Producer<M>, Consumer<M>) {
    let (p, c) = make(slot_size, slot_count);
    (Producer::new(p, 0, 0, 0), Consumer::new(c, 0, 0))
}

fn recv<M: RingMemory>(c: &mut Consumer<M>) -> Option<Vec<u8>> {
    let mut out = None;
    c.drain(1, |m| out = Some(m.to_vec())).unwrap();
    out
}

/// Many laps over a small ring, every length from empty to full.
pub(super) fn wraps_around_many_laps<M: RingMemory>(make: Make<M>) {
    let (mut p, mut c) = ring(make, 8, 4);
    for i in 0..100u8 {
        let msg = vec![i; (i % 9) as usize];
        assert!(p.try_send(&msg).unwrap());
        assert_eq!(recv(&mut c).unwrap(), msg);
    }
    assert_eq!(recv(&mut c), None);
}

/// A full ring refuses a send until the consumer releases a slot.
pub(super) fn full_ring_refuses_then_accepts_after_release<M: RingMemory>(make: Make<M>) {
    let (mut p, mut c) = ring(make, 8, 4);
    for i in 0..4u8 {
        assert!(p.try_send(&[i]).unwrap());
    }
    assert!(!p.try_send(&[9]).unwrap());
    assert_eq!(recv(&mut c).unwrap(), vec![0]);
    assert!(p.try_send(&[4]).unwrap());
    let mut got = vec![];
    assert_eq!(c.drain(10, |m| got.push(m[0])).unwrap(), 4);
    assert_eq!(got, vec![1, 2, 3, 4]);
}

/// A batch fills only the free slots, and is length-checked before anything is published.
pub(super) fn batch_send_fills_only_free_slots_and_checks_lengths_first<M: RingMemory>(
    make: Make<M>,
) {
    let (mut p, mut c) = ring(make, 4, 4);
    let msgs: Vec<&[u8]> = vec![b"a", b"bb", b"ccc", b"dddd", b"e"];
    assert_eq!(p.try_send_batch(&msgs).unwrap(), 4);
    let max_len = p.max_len();
    let too_long = vec![0; max_len + 1];
    assert!(matches!(
        p.try_send_batch(&[b"x", &too_long]),
        Err(Error::MessageTooLarge { len, max_len: m }) if len == max_len + 1 && m == max_len
    ));
    let mut got = vec![];
    c.drain(usize::MAX, |m| got.push(m.to_vec())).unwrap();
    assert_eq!(
        got,
        vec![
            b"a".to_vec(),
            b"bb".to_vec(),
            b"ccc".to_vec(),
            b"dddd".to_vec()
        ]
    );
}

/// A message above the ring's largest is an error and publishes nothing.
pub(super) fn oversized_message_is_refused_and_nothing_published<M: RingMemory>(make: Make<M>) {
    let (mut p, mut c) = ring(make, 4, 4);
    // The first slot's payload, then three whole slots.
    let max_len = 4 + 3 * p.memory().slot_stride();
    assert_eq!(p.max_len(), max_len);
    assert!(matches!(
        p.try_send(&vec![0; max_len + 1]),
        Err(Error::MessageTooLarge { len, max_len: m }) if len == max_len + 1 && m == max_len
    ));
    assert_eq!(recv(&mut c), None);
    assert!(p.try_send(&[1; 4]).unwrap());
    assert_eq!(recv(&mut c).unwrap(), vec![1; 4]);
}

/// A commit word from neither this lap nor the last, a length above the ring's largest, or
/// a span that does not match the length, is reported as corruption.
pub(super) fn corrupt_commit_word_and_length_are_errors<M: RingMemory>(make: Make<M>) {
    let (mut p, c) = ring(make, 8, 4);
    c.memory().commit(0).store(77, Ordering::Relaxed);
    assert!(matches!(
        c.peek(0),
        Err(Corruption::CommitWord {
            index: 0,
            found: 77,
            ..
        })
    ));
    c.memory().commit(0).store(0, Ordering::Relaxed);
    assert!(p.try_send(b"hi").unwrap());
    let max_len = p.max_len();
    c.memory()
        .meta(0)
        .store(Shape::meta(max_len as u32 + 1, 4), Ordering::Relaxed);
    assert!(matches!(
        c.peek(0),
        Err(Corruption::SlotLength { len, slot_size }) if len == max_len as u64 + 1 && slot_size == max_len
    ));
    // Longer than a slot but claiming one slot.
    c.memory()
        .meta(0)
        .store(Shape::meta(9, 1), Ordering::Relaxed);
    assert!(matches!(
        c.peek(0),
        Err(Corruption::RecordSpan {
            index: 0,
            len: 9,
            span: 1,
            expected: 2
        })
    ));
}

/// An in-place write sees the whole slot; an overlong length publishes nothing; a full
/// ring does not call the writer.
pub(super) fn send_with_writes_in_place_and_rejects_overlong_lengths<M: RingMemory>(make: Make<M>) {
    let (mut p, mut c) = ring(make, 8, 2);
    assert!(p
        .try_send_with(8, |buf| {
            assert_eq!(buf.len(), 8);
            buf[..3].copy_from_slice(b"abc");
            Ok::<_, Error>(3)
        })
        .unwrap());
    assert!(matches!(
        p.try_send_with(8, |_| Ok::<_, Error>(9)),
        Err(Error::MessageTooLarge { len: 9, .. })
    ));
    assert!(matches!(
        p.try_send_with(8, |buf| {
            buf[0] = b'!';
            Err(Error::Closed)
        }),
        Err(Error::Closed)
    ));
    assert_eq!(recv(&mut c).unwrap(), b"abc");
    assert_eq!(
        recv(&mut c),
        None,
        "the overlong and failed writes published nothing"
    );
    assert!(p.try_send(b"x").unwrap());
    assert!(p.try_send(b"y").unwrap());
    let mut called = false;
    assert!(!p
        .try_send_with(8, |_| {
            called = true;
            Ok::<_, Error>(0)
        })
        .unwrap());
    assert!(!called, "a full ring does not call the writer");
}

/// A resumed producer starts at the first uncommitted index, not at the mirrored head.
pub(super) fn resume_finds_the_committed_head_not_the_mirrored_one<M: RingMemory + Clone>(
    make: Make<M>,
) {
    let (mut p, mut c) = ring(make, 8, 4);
    assert!(p.try_send(b"a").unwrap());
    assert!(p.try_send(b"b").unwrap());
    assert_eq!(recv(&mut c).unwrap(), b"a");
    // A producer that died after mirroring head 3 but before committing index 2.
    p.memory().head().store(3, Ordering::Relaxed);
    let mut p2 = Producer::resume(p.memory().clone(), 1, 2);
    assert_eq!(p2.memory().head().load(Ordering::Relaxed), 2);
    assert!(p2.try_send(b"c").unwrap());
    assert_eq!(recv(&mut c).unwrap(), b"b");
    assert_eq!(recv(&mut c).unwrap(), b"c", "no hole at index 2");
    // A full ring resumes at tail + count.
    let (mut p, c) = ring(make, 8, 2);
    assert!(p.try_send(b"1").unwrap() && p.try_send(b"2").unwrap());
    let mut p3 = Producer::resume(c.memory().clone(), 0, 0);
    assert!(!p3.try_send(b"3").unwrap());
}

/// A tail behind the cached one or ahead of the head is corruption, not a free slot.
pub(super) fn tail_out_of_range_is_an_error<M: RingMemory>(make: Make<M>) {
    let (mut p, c) = ring(make, 8, 2);
    assert!(p.try_send(b"1").unwrap());
    assert!(p.try_send(b"2").unwrap());
    c.memory().tail().store(5, Ordering::Relaxed); // ahead of head
    assert!(matches!(
        p.try_send(b"3"),
        Err(Error::Corrupt(Corruption::IndexOutOfRange { .. }))
    ));
}

/// A ring resumed just below the top of the index range (as a segment that has carried
/// almost `MAX_INDEX` messages would be) runs up to the top, wrapping its slots, and then
/// refuses to publish index `MAX_INDEX` with a typed error instead of overflowing.
pub(super) fn resumes_near_the_top_of_the_index_range<M: RingMemory + Clone>(make: Make<M>) {
    let count = 4u64;
    let (p, c) = make(8, count as usize);
    let start = layout::MAX_INDEX - 6;
    // The previous lap's commit words, as the earlier messages left them.
    for index in start - count..start {
        p.commit((index % count) as usize)
            .store(index + 1, Ordering::Relaxed);
    }
    p.tail().store(start, Ordering::Relaxed);
    p.head().store(start, Ordering::Relaxed);
    assert!(layout::check_indices(start, start, count).is_ok());
    let mut p = Producer::resume(p, start, 0);
    let mut c = Consumer::new(c, start, 0);
    assert_eq!(p.memory().head().load(Ordering::Relaxed), start);
    for i in 0..6u8 {
        assert!(p.try_send(&[i]).unwrap(), "index {}", start + u64::from(i));
        assert_eq!(recv(&mut c).unwrap(), vec![i]);
    }
    // head == MAX_INDEX: the range is exhausted, with the ring empty or not.
    assert_eq!(p.memory().head().load(Ordering::Relaxed), layout::MAX_INDEX);
    let exhausted = |r: crate::error::Result<bool>| {
        matches!(
            r,
            Err(Error::Corrupt(Corruption::IndexOutOfRange { head, .. }))
                if head == layout::MAX_INDEX
        )
    };
    assert!(exhausted(p.try_send(b"x")), "published index MAX_INDEX");
    assert!(exhausted(p.try_send_with(8, |_| Ok::<_, Error>(1))));
    assert!(matches!(
        p.try_send_batch(&[b"a"]),
        Err(Error::Corrupt(Corruption::IndexOutOfRange { .. }))
    ));
    assert_eq!(recv(&mut c), None);
    assert!(layout::check_indices(layout::MAX_INDEX, layout::MAX_INDEX, count).is_ok());
    assert!(layout::check_indices(layout::MAX_INDEX + 1, layout::MAX_INDEX + 1, count).is_err());
    // A takeover at the top finds nothing to publish either, even if the slots claim
    // more (a hostile commit word for index MAX_INDEX).
    p.memory()
        .commit((layout::MAX_INDEX % count) as usize)
        .store(layout::MAX_INDEX + 1, Ordering::Relaxed);
    let mut p2 = Producer::resume(p.memory().clone(), layout::MAX_INDEX, 0);
    assert_eq!(
        p2.memory().head().load(Ordering::Relaxed),
        layout::MAX_INDEX
    );
    assert!(exhausted(p2.try_send(b"y")));
}

/// One step of the model test.
#[derive(Debug, Clone)]
enum Op {
    Send(Vec<u8>),
    Batch(Vec<Vec<u8>>),
    Recv,
    Drain(usize),
}

fn op(slot_size: usize, max_len: usize) -> impl Strategy<Value = Op> {
    // Mostly messages of one slot, some of any length up to the whole ring.
    let len = prop_oneof![3 => 0..=slot_size, 1 => 0..=max_len];
    let msg = len.prop_flat_map(|len| prop::collection::vec(any::<u8>(), len));
    prop_oneof![
        msg.clone().prop_map(Op::Send),
        prop::collection::vec(msg, 0..6).prop_map(Op::Batch),
        Just(Op::Recv),
        (0usize..10).prop_map(Op::Drain),
    ]
}

/// The model's view of the ring: records (`None` for padding) and the slots they cover.
#[derive(Default)]
struct Model {
    records: VecDeque<(Option<Vec<u8>>, u64)>,
    head: u64,
    tail: u64,
}

impl Model {
    /// What `try_send` does: padding first where a long message would wrap, then the
    /// message if its slots are free.
    fn send(&mut self, shape: Shape, msg: &[u8]) -> bool {
        let span = shape.span_of(msg.len());
        let slot = self.head % shape.count;
        let free = |m: &Model| shape.count - (m.head - m.tail);
        if slot + span > shape.count {
            let pad = shape.count - slot;
            if free(self) < pad {
                return false;
            }
            self.records.push_back((None, pad));
            self.head += pad;
        }
        if free(self) < span {
            return false;
        }
        self.records.push_back((Some(msg.to_vec()), span));
        self.head += span;
        true
    }

    /// What `drain(max)` does: up to `max` messages, padding before them skipped.
    fn drain(&mut self, max: usize) -> Vec<Vec<u8>> {
        let mut got = vec![];
        while got.len() < max {
            let Some((msg, span)) = self.records.pop_front() else {
                break;
            };
            self.tail += span;
            got.extend(msg);
        }
        got
    }
}

/// Any sequence of sends and receives, of any sizes up to the whole ring, matches a model
/// of records over a bounded ring.
pub(super) fn matches_vecdeque_model<M: RingMemory>(make: Make<M>) {
    const SLOT: usize = 24;
    let cases = (0u32..4).prop_flat_map(|count_log| {
        let (p, _) = ring(heap_ring, SLOT, 1 << count_log);
        (
            Just(count_log),
            prop::collection::vec(op(SLOT, p.max_len()), 0..100),
        )
    });
    // No regression file: a failure prints the shrunk case, which is what to keep.
    let config = Config {
        failure_persistence: None,
        ..Config::default()
    };
    let result = TestRunner::new(config).run(&cases, |(count_log, ops)| {
        let count = 1usize << count_log;
        let (mut p, mut c) = ring(make, SLOT, count);
        let shape = super::shape_of(p.memory());
        let mut model = Model::default();
        for op in ops {
            match op {
                Op::Send(m) => {
                    let sent = p.try_send(&m).unwrap();
                    prop_assert_eq!(sent, model.send(shape, &m));
                }
                Op::Batch(ms) => {
                    let refs: Vec<&[u8]> = ms.iter().map(|m| m.as_slice()).collect();
                    let n = p.try_send_batch(&refs).unwrap();
                    let want = ms.iter().take_while(|m| model.send(shape, m)).count();
                    prop_assert_eq!(n, want);
                }
                Op::Recv => prop_assert_eq!(recv(&mut c), model.drain(1).pop()),
                Op::Drain(max) => {
                    let mut got = vec![];
                    let n = c.drain(max, |m| got.push(m.to_vec())).unwrap();
                    let want = model.drain(max);
                    prop_assert_eq!(n, want.len());
                    prop_assert_eq!(got, want);
                }
            }
            prop_assert_eq!(p.memory().head().load(Ordering::Relaxed), model.head);
            prop_assert_eq!(c.tail(), model.tail);
        }
        Ok(())
    });
    if let Err(e) = result {
        panic!("{e}");
    }
}

/// Heap backing: one allocation, both views are clones of the same region.
pub(super) fn heap_ring(slot_size: usize, slot_count: usize) -> (Region, Region) {
    let region = Region::heap(slot_size, slot_count).unwrap();
    (region.clone(), region)
}

/// Shared-memory backing: a real segment under `/dev/shm`, mapped twice (the producer's
/// and the consumer's view sit at different addresses, as in two processes). Its name is
/// unlinked before this returns, and on any failure before that, so no test leaves a
/// segment behind; the mappings outlive the name.
pub(super) fn shm_ring(slot_size: usize, slot_count: usize) -> (Region, Region) {
    /// Unlinks the segment's name when dropped, panicking or not.
    struct Unlink(String);
    impl Drop for Unlink {
        fn drop(&mut self) {
            let _ = segment::remove(&self.0);
        }
    }
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let name = Unlink(format!("cst-ring-contract-{}-{n}", std::process::id()));
    let _ = segment::remove(&name.0);
    let geometry = Geometry::new(slot_size, slot_count).unwrap();
    let created = Segment::create(&name.0, geometry.segment_len() as usize, false).unwrap();
    let producer = Region::over_segment(Arc::new(created), geometry);
    layout::initialize(producer.header(), &HeaderInit::lone_ring(geometry));
    layout::mark_ready(producer.header());
    let opened = Segment::open(&name.0).unwrap().expect("just created");
    let consumer = Region::over_segment(Arc::new(opened), geometry);
    drop(name);
    (producer, consumer)
}

/// Instantiates every contract as a `#[test]` in module `$backing`, over `$make`.
macro_rules! contract_tests {
    ($backing:ident, $make:expr) => {
        mod $backing {
            #[test]
            fn wraps_around_many_laps() {
                super::wraps_around_many_laps($make);
            }
            #[test]
            fn full_ring_refuses_then_accepts_after_release() {
                super::full_ring_refuses_then_accepts_after_release($make);
            }
            #[test]
            fn batch_send_fills_only_free_slots_and_checks_lengths_first() {
                super::batch_send_fills_only_free_slots_and_checks_lengths_first($make);
            }
            #[test]
            fn oversized_message_is_refused_and_nothing_published() {
                super::oversized_message_is_refused_and_nothing_published($make);
            }
            #[test]
            fn corrupt_commit_word_and_length_are_errors() {
                super::corrupt_commit_word_and_length_are_errors($make);
            }
            #[test]
            fn send_with_writes_in_place_and_rejects_overlong_lengths() {
                super::send_with_writes_in_place_and_rejects_overlong_lengths($make);
            }
            #[test]
            fn resume_finds_the_committed_head_not_the_mirrored_one() {
                super::resume_finds_the_committed_head_not_the_mirrored_one($make);
            }
            #[test]
            fn tail_out_of_range_is_an_error() {
                super::tail_out_of_range_is_an_error($make);
            }
            #[test]
            fn resumes_near_the_top_of_the_index_range() {
                super::resumes_near_the_top_of_the_index_range($make);
            }
            #[test]
            fn matches_vecdeque_model() {
                super::matches_vecdeque_model($make);
            }
        }
    };
}

contract_tests!(heap, super::heap_ring);
contract_tests!(shm, super::shm_ring);
