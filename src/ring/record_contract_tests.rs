//! The contract of records longer than a slot, over both backings (as `contract_tests.rs`):
//! contiguity, padding at the ring's end, the commit words of covered slots restored on
//! release and repaired after an abandoned or dead write, and forged records rejected.

use super::contract_tests::{heap_ring, shm_ring, Make};
use super::{Consumer, Producer, RingMemory, Shape};
use crate::error::{Corruption, Error};
use crate::sync::Ordering;

/// 8-byte slots, 4 of them: with the real layout's 64-byte stride a record holds 8, 72,
/// 136 or 200 bytes.
fn ring<M: RingMemory>(make: Make<M>) -> (Producer<M>, Consumer<M>) {
    let (p, c) = make(8, 4);
    (Producer::new(p, 0, 0, 0), Consumer::new(c, 0, 0))
}

fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31) ^ seed)
        .collect()
}

fn recv_all<M: RingMemory>(c: &mut Consumer<M>) -> Vec<Vec<u8>> {
    let mut got = vec![];
    c.drain(usize::MAX, |m| got.push(m.to_vec())).unwrap();
    got
}

/// Every slot of index `from..to` holds the commit word `index + 1`, as a published and
/// released slot does.
fn assert_restored<M: RingMemory>(mem: &M, from: u64, to: u64) {
    for index in from..to {
        let slot = (index % mem.slot_count() as u64) as usize;
        assert_eq!(
            mem.commit(slot).load(Ordering::Relaxed),
            index + 1,
            "slot {slot} (index {index}) not restored"
        );
    }
}

/// A long message is one contiguous slice; one that would pass the ring's end is
/// preceded by padding and starts at slot 0; released records leave every covered slot's
/// commit word as a one-slot message would.
pub(super) fn long_messages_are_contiguous_and_wrap_after_padding<M: RingMemory>(make: Make<M>) {
    let (mut p, mut c) = ring(make);
    let stride = p.memory().slot_stride();
    let three_slots = pattern(8 + stride + 1, 1);
    assert_eq!(p.slots_needed(three_slots.len()), 3);
    assert!(p.try_send(&three_slots).unwrap());
    assert_eq!(recv_all(&mut c), std::slice::from_ref(&three_slots));
    assert_restored(c.memory(), 0, 3);
    // From slot 3, three slots would pass the end: padding over slot 3 first.
    assert_eq!(p.slots_needed(three_slots.len()), 1);
    assert!(p.try_send(&three_slots).unwrap());
    assert_eq!(p.memory().head().load(Ordering::Relaxed), 7);
    assert_eq!(recv_all(&mut c), [three_slots]);
    assert_restored(c.memory(), 3, 7);
    // The whole ring, from slot 3: padding (1 slot) goes out, then the message waits
    // until the consumer released the padding.
    let whole = pattern(p.max_len(), 2);
    assert!(p.try_send(b"x").unwrap());
    assert!(!p.try_send(&whole).unwrap(), "needs every slot");
    assert_eq!(recv_all(&mut c), [b"x".to_vec()]);
    assert!(p.try_send(&whole).unwrap());
    assert_eq!(recv_all(&mut c), [whole]);
    assert!(p.try_send(b"after").unwrap());
    assert_eq!(recv_all(&mut c), [b"after".to_vec()]);
}

/// An in-place write over several slots that fails, or publishes fewer bytes than it
/// reserved, leaves the slot headers it may have written as the consumer expects them.
pub(super) fn abandoned_or_short_in_place_writes_leave_valid_headers<M: RingMemory>(make: Make<M>) {
    let (mut p, mut c) = ring(make);
    let capacity = p.max_len();
    let failed = p.try_send_with(capacity, |buf| {
        buf.fill(0xAB);
        Err(Error::Closed)
    });
    assert!(matches!(failed, Err(Error::Closed)));
    assert!(p
        .try_send_with(capacity, |buf| {
            buf.fill(0xCD);
            Ok::<_, Error>(3)
        })
        .unwrap());
    // The consumer looks at each next slot while it is still unpublished: its commit word
    // must be the previous lap's, not the writer's bytes.
    assert_eq!(recv_all(&mut c), [vec![0xCD; 3]]);
    for msg in [&b"a"[..], b"b", b"c"] {
        assert!(p.try_send(msg).unwrap());
        assert_eq!(recv_all(&mut c), [msg.to_vec()]);
    }
}

/// A producer that died in the middle of a long write published nothing of it; a producer
/// resumed after it repairs the headers the dead one's bytes covered and goes on.
pub(super) fn a_producer_dead_mid_long_write_publishes_nothing<M: RingMemory + Clone>(
    make: Make<M>,
) {
    let (mut p, mut c) = ring(make);
    assert!(p.try_send(b"first").unwrap());
    // The dead producer reserved slots 1..4 and wrote bytes over them, no commit.
    let len = 8 + 2 * p.memory().slot_stride();
    // SAFETY: slots 1..4 are free and this test is their only producer.
    unsafe { p.memory().payload_mut(1, len) }.fill(0xEE);
    let mem = p.memory().clone();
    drop(p);
    assert_eq!(recv_all(&mut c), [b"first".to_vec()]);
    let mut p = Producer::resume(mem, c.tail(), 0);
    assert_eq!(p.memory().head().load(Ordering::Relaxed), 1);
    // Each next slot is looked at while still unpublished (see above).
    for msg in [&b"x"[..], b"y", b"z"] {
        assert!(p.try_send(msg).unwrap());
        assert_eq!(recv_all(&mut c), [msg.to_vec()]);
    }
}

/// Forged records are typed errors, and a takeover stops at them.
pub(super) fn forged_records_are_corruption<M: RingMemory + Clone>(make: Make<M>) {
    let (p, c) = ring(make);
    let stride = p.memory().slot_stride() as u64;
    let max_len = p.max_len() as u64;
    let forge = |slot: usize, index: u64, len: u64, span: u64| {
        c.memory().commit(slot).store(index + 1, Ordering::Relaxed);
        c.memory()
            .meta(slot)
            .store(Shape::meta(len as u32, span), Ordering::Relaxed);
    };
    let peek_at = |ahead: u64| c.peek(ahead);
    let cases: [(&str, usize, u64, u64, u64); 6] = [
        ("length beyond the ring", 0, 0, max_len + 1, 4),
        ("length near u32::MAX", 0, 0, u64::from(u32::MAX - 1), 4),
        ("span past the end", 0, 0, 8 + 3 * stride, 5),
        ("length spanning past the segment", 2, 2, 8 + 2 * stride, 3),
        ("padding short of the end", 1, 1, u64::from(u32::MAX), 2),
        ("padding past the end", 1, 1, u64::from(u32::MAX), 4),
    ];
    for (what, slot, index, len, span) in cases {
        forge(slot, index, len, span);
        let found = peek_at(index);
        assert!(
            matches!(
                found,
                Err(Corruption::SlotLength { .. } | Corruption::RecordSpan { .. })
            ),
            "{what}: {found:?}"
        );
        // A takeover from that index stops there instead of trusting the record.
        let resumed = Producer::resume(p.memory().clone(), index, 0);
        assert_eq!(
            resumed.memory().head().load(Ordering::Relaxed),
            index,
            "{what}"
        );
        c.memory().commit(slot).store(0, Ordering::Relaxed);
    }
}

/// Instantiates every contract as a `#[test]` in module `$backing`, over `$make`.
macro_rules! record_contract_tests {
    ($backing:ident, $make:expr) => {
        mod $backing {
            #[test]
            fn long_messages_are_contiguous_and_wrap_after_padding() {
                super::long_messages_are_contiguous_and_wrap_after_padding($make);
            }
            #[test]
            fn abandoned_or_short_in_place_writes_leave_valid_headers() {
                super::abandoned_or_short_in_place_writes_leave_valid_headers($make);
            }
            #[test]
            fn a_producer_dead_mid_long_write_publishes_nothing() {
                super::a_producer_dead_mid_long_write_publishes_nothing($make);
            }
            #[test]
            fn forged_records_are_corruption() {
                super::forged_records_are_corruption($make);
            }
        }
    };
}

record_contract_tests!(heap, super::heap_ring);
record_contract_tests!(shm, super::shm_ring);
