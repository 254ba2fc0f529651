//! Typed (Cap'n Proto) sends and receives: round trips, size checks, the callback thread,
//! and hostile slot bytes, which must give `Error::Decode` (never a panic, hang or
//! out-of-bounds read).

#[path = "common/demo_capnp.rs"]
mod demo_capnp;

use std::sync::mpsc;
use std::time::Duration;

use std::cell::RefCell;

use capnp::message::{Builder, ReaderOptions, ReaderSegments};
use capnp_shm_transport::typed::read_slot;
use capnp_shm_transport::{Channel, Error, OnReceiveMessage, RecvMessage, SendMessage};
use demo_capnp::sample;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};

const WAIT: Duration = Duration::from_secs(5);
const SLOT: usize = 1024;

fn name(test: &str) -> String {
    format!("typed-{test}-{}", std::process::id())
}

fn pair(test: &str) -> (Channel, Channel) {
    let name = name(test);
    let a = Channel::builder(&name)
        .slot_size(SLOT)
        .slot_count(16)
        .create()
        .unwrap();
    let b = Channel::builder(&name).open_timeout(WAIT).open().unwrap();
    (a, b)
}

fn sample_message(seq: u64, payload: &[u8]) -> Builder<capnp::message::HeapAllocator> {
    let mut message = Builder::new_default();
    let mut s = message.init_root::<sample::Builder>();
    s.set_seq(seq);
    s.set_sent_ns(seq * 1000);
    s.set_payload(payload);
    s.get_control().init_tune().set_poll_interval_us(250);
    message
}

#[test]
fn round_trip_both_ways() {
    let (mut a, mut b) = pair("round-trip");
    a.send_message(&sample_message(1, b"to b"), WAIT).unwrap();
    {
        let msg = b.recv_message(WAIT).unwrap();
        let s = msg.root::<sample::Owned>().unwrap();
        assert_eq!(s.get_seq(), 1);
        assert_eq!(s.get_sent_ns(), 1000);
        assert_eq!(s.get_payload().unwrap(), b"to b");
        match s.get_control().which().unwrap() {
            sample::control::Tune(t) => assert_eq!(t.unwrap().get_poll_interval_us(), 250),
            _ => panic!("expected tune"),
        }
    }
    b.send_message(&sample_message(2, b"to a"), WAIT).unwrap();
    let msg = a.recv_message(WAIT).unwrap();
    assert_eq!(msg.root::<sample::Owned>().unwrap().get_seq(), 2);
}

#[test]
fn multi_segment_message_round_trips() {
    let (mut a, mut b) = pair("multi-seg");
    // A tiny first segment forces the payload into further segments.
    let mut message = Builder::new(
        capnp::message::HeapAllocator::new()
            .first_segment_words(1)
            .allocation_strategy(capnp::message::AllocationStrategy::FixedSize),
    );
    {
        let mut s = message.init_root::<sample::Builder>();
        s.set_seq(9);
        s.set_payload(&[7u8; 40]);
    }
    assert!(message.get_segments_for_output().len() > 1);
    a.send_message(&message, WAIT).unwrap();
    let msg = b.recv_message(WAIT).unwrap();
    assert!(msg.get_segments().len() > 1);
    let s = msg.root::<sample::Owned>().unwrap();
    assert_eq!(s.get_seq(), 9);
    assert_eq!(s.get_payload().unwrap(), &[7u8; 40]);
}

#[test]
fn too_large_message_publishes_nothing() {
    let (mut a, mut b) = pair("too-large");
    let max_len = a.sender().max_message_len();
    let big = sample_message(1, &vec![0u8; max_len]);
    match a.send_message(&big, WAIT) {
        Err(Error::MessageTooLarge { len, max_len: m }) => {
            assert!(len > max_len);
            assert_eq!(m, max_len);
        }
        other => panic!("expected MessageTooLarge, got {other:?}"),
    }
    assert!(matches!(
        b.recv_message(Duration::ZERO),
        Err(Error::Timeout { .. })
    ));
    // The channel is still usable.
    a.send_message(&sample_message(2, b"ok"), WAIT).unwrap();
    let msg = b.recv_message(WAIT).unwrap();
    assert_eq!(msg.root::<sample::Owned>().unwrap().get_seq(), 2);
}

#[test]
fn callback_thread_gets_readers_and_decode_errors() {
    let name = name("callback");
    let (tx, rx) = mpsc::channel();
    let mut a = Channel::builder(&name)
        .slot_size(SLOT)
        .slot_count(16)
        .create()
        .unwrap();
    let _b = Channel::builder(&name)
        .open_timeout(WAIT)
        .on_receive_message(ReaderOptions::new(), move |msg| {
            let seen = msg.and_then(|m| {
                let s = m.get_root::<sample::Reader>().map_err(Error::Decode)?;
                Ok(s.get_seq())
            });
            tx.send(seen.map_err(|e| e.to_string())).unwrap();
        })
        .open()
        .unwrap();
    a.send_message(&sample_message(5, b"x"), WAIT).unwrap();
    a.send(&[0xff; 16], WAIT).unwrap(); // a segment table claiming 2^32 segments
    a.send_message(&sample_message(6, b"y"), WAIT).unwrap();
    assert_eq!(rx.recv_timeout(WAIT).unwrap(), Ok(5));
    let err = rx.recv_timeout(WAIT).unwrap().unwrap_err();
    assert!(err.contains("malformed Cap'n Proto"), "{err}");
    assert_eq!(rx.recv_timeout(WAIT).unwrap(), Ok(6));
}

/// Reads everything reachable in `bytes` as the reader would from a slot: the whole
/// message through `any_pointer` (follows every pointer) and the demo struct's fields.
fn traverse(bytes: &[u8]) -> Result<(), Error> {
    // Aligned copy, as a slot payload is.
    let mut words = capnp::Word::allocate_zeroed_vec(bytes.len().div_ceil(8));
    capnp::Word::words_to_bytes_mut(&mut words)[..bytes.len()].copy_from_slice(bytes);
    let aligned = &capnp::Word::words_to_bytes(&words)[..bytes.len()];
    let reader = read_slot(aligned, ReaderOptions::new())?;
    reader
        .get_root::<capnp::any_pointer::Reader>()
        .and_then(|p| p.target_size())
        .map_err(Error::Decode)?;
    let s = reader.get_root::<sample::Reader>().map_err(Error::Decode)?;
    s.get_payload().map_err(Error::Decode)?;
    if let Ok(sample::control::Tune(t)) = s.get_control().which() {
        t.map_err(Error::Decode)?;
    }
    Ok(())
}

/// Sends `bytes` raw, receives them typed and traverses them; returns the first error.
fn through_channel(a: &mut Channel, b: &mut Channel, bytes: &[u8]) -> Result<(), Error> {
    a.send(bytes, WAIT).unwrap();
    let msg = b.recv_message(WAIT)?;
    msg.get_root::<capnp::any_pointer::Reader>()
        .and_then(|p| p.target_size())
        .map_err(Error::Decode)?;
    let s = msg.root::<sample::Owned>()?;
    s.get_payload().map_err(Error::Decode)?;
    Ok(())
}

fn words(ws: &[u64]) -> Vec<u8> {
    ws.iter().flat_map(|w| w.to_le_bytes()).collect()
}

/// Segment table for one segment of `len` words.
fn table(len: u32) -> u64 {
    u64::from(len) << 32
}

/// A struct pointer: `offset` words after the pointer, `data` data words, `ptrs` pointers.
fn struct_ptr(offset: i32, data: u16, ptrs: u16) -> u64 {
    (((offset as u32) << 2) as u64) | (u64::from(data) << 32) | (u64::from(ptrs) << 48)
}

fn assert_decode_error(result: Result<(), Error>, what: &str) {
    match result {
        Err(Error::Decode(e)) => println!("{what}: {e}"),
        other => panic!("{what}: expected Error::Decode, got {other:?}"),
    }
}

#[test]
fn hostile_slots_give_decode_errors() {
    let (mut a, mut b) = pair("hostile");
    let far_to_nowhere = 2 | (5u64 << 32); // far pointer into segment 5
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("empty", vec![]),
        ("segment table only", words(&[0])),
        ("huge segment", words(&[table(u32::MAX), 0])),
        ("2^32 segments", vec![0xff; 64]),
        ("segments past the slot", words(&[table(100), 0])),
        (
            "self-referencing struct (loop)",
            words(&[table(1), struct_ptr(-1, 0, 1)]),
        ),
        ("far pointer to nowhere", words(&[table(1), far_to_nowhere])),
        (
            "struct pointer out of bounds",
            words(&[table(1), struct_ptr(1000, 1, 0)]),
        ),
        // 100 nested structs (each one pointer to the next): over the nesting limit of 64.
        ("deep nesting", {
            let mut ws = vec![table(101)];
            ws.extend(std::iter::repeat_n(struct_ptr(0, 0, 1), 100));
            ws.push(0);
            words(&ws)
        }),
    ];
    for (what, bytes) in cases {
        assert_decode_error(through_channel(&mut a, &mut b, &bytes), what);
        assert_decode_error(traverse(&bytes), what);
    }
}

#[test]
fn pointer_amplification_hits_the_traversal_limit() {
    // A list of 50 pointers that each point back at the list: following them all never
    // ends (each visit re-reads 50 words); the traversal limit stops it.
    let (mut a, mut b) = pair("amplify");
    let n = 50u64;
    // Root: list pointer at word 0 to a list of n pointers (element size 6) at word 1.
    let list_ptr = 1 | (6u64 << 32) | (n << 35); // offset 0
    let mut ws = vec![table(1 + n as u32), list_ptr];
    for i in 0..n {
        // Element i (word 1 + i) points back at the list's first element (word 1).
        let offset = -(i as i32) - 1;
        ws.push(u64::from((offset as u32) << 2) | 1 | (6u64 << 32) | (n << 35));
    }
    let bytes = words(&ws);
    a.send(&bytes, WAIT).unwrap();
    let mut options = ReaderOptions::new();
    // A generous nesting limit, so that the traversal limit is what stops the reader.
    options
        .traversal_limit_in_words(Some(10_000))
        .nesting_limit(1000);
    let msg = b.recv_message_with(options, WAIT).unwrap();
    let result = msg
        .get_root::<capnp::any_pointer::Reader>()
        .and_then(|p| p.target_size());
    let err = result.expect_err("expected a limit error");
    assert!(err.to_string().contains("limit"), "{err}");
}

#[test]
fn random_and_mutated_bytes_never_panic() {
    let (a, b) = pair("fuzz");
    // `TestRunner::run` takes an `Fn`.
    let (a, b) = (RefCell::new(a), RefCell::new(b));
    let valid = capnp::serialize::write_message_to_words(&sample_message(3, b"payload!"));
    let mut runner = TestRunner::new(Config {
        cases: 512,
        failure_persistence: None,
        ..Config::default()
    });
    runner
        .run(&proptest::collection::vec(any::<u8>(), 0..SLOT), |bytes| {
            let _ = traverse(&bytes);
            let _ = through_channel(&mut a.borrow_mut(), &mut b.borrow_mut(), &bytes);
            Ok(())
        })
        .unwrap();
    let flips = proptest::collection::vec((0..valid.len(), any::<u8>()), 1..8);
    runner
        .run(&flips, |flips| {
            let mut bytes = valid.clone();
            for (at, value) in flips {
                bytes[at] = value;
            }
            let _ = traverse(&bytes);
            let _ = through_channel(&mut a.borrow_mut(), &mut b.borrow_mut(), &bytes);
            Ok(())
        })
        .unwrap();
}

/// A 1 MiB `Data` field through 64 KiB slots, both a single segment and many, decoded in
/// place (the payload's bytes are inside the mapping) and in untrusted mode.
#[test]
fn a_one_mib_data_field_crosses_64_kib_slots() {
    const BIG_SLOT: usize = 64 << 10;
    let name = name("one-mib");
    let mut a = Channel::builder(&name)
        .slot_size(BIG_SLOT)
        .slot_count(32)
        .create()
        .unwrap();
    let mut b = Channel::builder(&name).open_timeout(WAIT).open().unwrap();
    let payload: Vec<u8> = (0..1 << 20).map(|i: u32| (i % 251) as u8).collect();
    // One segment big enough for the whole message.
    let mut single =
        Builder::new(capnp::message::HeapAllocator::new().first_segment_words((1 << 17) + 64));
    {
        let mut s = single.init_root::<sample::Builder>();
        s.set_seq(1);
        s.set_payload(&payload);
    }
    assert_eq!(single.get_segments_for_output().len(), 1);
    // Many segments: a small first segment, then fixed-size ones.
    let mut multi = Builder::new(
        capnp::message::HeapAllocator::new()
            .first_segment_words(1)
            .allocation_strategy(capnp::message::AllocationStrategy::FixedSize),
    );
    {
        let mut s = multi.init_root::<sample::Builder>();
        s.set_seq(2);
        s.set_payload(&payload);
    }
    assert!(multi.get_segments_for_output().len() > 1);
    a.send_message(&single, WAIT).unwrap();
    a.send_message(&multi, WAIT).unwrap();
    for seq in [1, 2] {
        let msg = b.recv_message(WAIT).unwrap();
        let s = msg.root::<sample::Owned>().unwrap();
        assert_eq!(s.get_seq(), seq);
        assert_eq!(s.get_payload().unwrap(), &payload[..]);
    }
    // Untrusted mode copies the message once, into a private buffer grown to fit.
    drop((a, b));
    let name = format!("{name}-u");
    let mut a = Channel::builder(&name)
        .slot_size(BIG_SLOT)
        .slot_count(32)
        .create()
        .unwrap();
    let mut b = Channel::builder(&name)
        .open_timeout(WAIT)
        .trust(capnp_shm_transport::Trust::Untrusted)
        .open()
        .unwrap();
    a.send_message(&single, WAIT).unwrap();
    let msg = b.recv_message(WAIT).unwrap();
    let s = msg.root::<sample::Owned>().unwrap();
    assert_eq!(s.get_payload().unwrap(), &payload[..]);
}
