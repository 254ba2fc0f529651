//! Hostile segments: files under /dev/shm with the right names but wrong contents, and
//! valid channels whose words are scribbled on. Each must give its typed error.

mod common;

use std::fs::OpenOptions;
use std::os::unix::fs::FileExt;
use std::time::Duration;

use capnp_shm_transport::inspect::inspect_channel;
use capnp_shm_transport::{Channel, Corruption, Error, LinkEvent};
use common::TestName;

const WAIT: Duration = Duration::from_secs(2);
// Byte offsets from docs/LAYOUT.md.
const VERSION: u64 = 8;
const SLOT_COUNT: u64 = 24;
const GENERATION: u64 = 32;
const SEGMENT_LEN: u64 = 48;
const HEAD: u64 = 128;
const TAIL: u64 = 256;
const SLOT0_COMMIT: u64 = 512;
const SLOT0_LEN: u64 = 520;
const SLOT0_SPAN: u64 = 524;

fn poke(name: &TestName, suffix: &str, offset: u64, bytes: &[u8]) {
    let file = OpenOptions::new()
        .write(true)
        .open(name.path(suffix))
        .unwrap();
    file.write_all_at(bytes, offset).unwrap();
}

fn open(name: &TestName) -> Result<Channel, Error> {
    Channel::builder(&**name)
        .open_timeout(Duration::from_millis(30))
        .open()
}

fn corruption(result: Result<Channel, Error>) -> Corruption {
    match result {
        Err(Error::Corrupt(c)) => c,
        Err(other) => panic!("expected a corruption error, got {other}"),
        Ok(_) => panic!("expected a corruption error, got a channel"),
    }
}

/// The corruption that opening `name` reports. Inspecting it reads the segments through
/// the same validation, so it must report the same.
fn open_corruption(name: &TestName) -> Corruption {
    let c = corruption(open(name));
    match inspect_channel(name) {
        Err(Error::Corrupt(i)) => assert_eq!(i, c, "inspect and open disagree"),
        other => panic!("inspect: expected {c}, got {other:?}"),
    }
    c
}

#[test]
fn random_bytes_are_bad_magic() {
    let name = TestName::new("random");
    let mut x = 0x1234_5678_9abc_def1u64;
    let bytes: Vec<u8> = (0..4096)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect();
    common::write_segment(name.path(".fs.a2b"), &bytes).unwrap();
    common::write_segment(name.path(".fs.b2a"), &bytes).unwrap();
    let c = open_corruption(&name);
    assert!(matches!(c, Corruption::BadMagic { .. }), "{c}");
    assert!(Error::Corrupt(c)
        .to_string()
        .starts_with("corrupt or incompatible segment: bad magic"));
}

#[test]
fn truncated_file_is_too_small() {
    let name = TestName::new("truncated");
    common::write_segment(name.path(".fs.a2b"), [1u8; 100]).unwrap();
    common::write_segment(name.path(".fs.b2a"), [1u8; 100]).unwrap();
    let c = open_corruption(&name);
    assert_eq!(
        c,
        Corruption::MappingTooSmall {
            len: 100,
            needed: 512
        }
    );
}

#[test]
fn zeroed_file_is_not_ready_and_times_out() {
    // A creator between ftruncate and writing its header looks exactly like this.
    let name = TestName::new("zeroed");
    common::write_segment(name.path(".fs.a2b"), [0u8; 4096]).unwrap();
    common::write_segment(name.path(".fs.b2a"), [0u8; 4096]).unwrap();
    assert!(matches!(open(&name), Err(Error::NotFound { .. })));
    assert!(matches!(
        inspect_channel(&name),
        Err(Error::NotFound { .. })
    ));
}

#[test]
fn zero_length_file_is_not_ready_not_corrupt() {
    // A creator between shm_open and ftruncate looks exactly like this (docs/LAYOUT.md,
    // Validation): mapping it fails with EINVAL, which means "wait", not "corrupt".
    let name = TestName::new("empty");
    common::write_segment(name.path(".fs.a2b"), []).unwrap();
    common::write_segment(name.path(".fs.b2a"), []).unwrap();
    assert!(matches!(open(&name), Err(Error::NotFound { .. })));
}

#[test]
fn wrong_version_is_unsupported() {
    let name = TestName::new("version");
    let _a = Channel::builder(&*name).create().unwrap();
    poke(&name, ".fs.a2b", VERSION, &7u32.to_le_bytes());
    let c = open_corruption(&name);
    assert_eq!(
        c,
        Corruption::UnsupportedVersion {
            found: 7,
            supported: 3
        }
    );
}

#[test]
fn geometry_larger_than_the_file_is_refused() {
    let name = TestName::new("geometry");
    let _a = Channel::builder(&*name)
        .slot_size(64)
        .slot_count(16)
        .create()
        .unwrap();
    // Claim 1024 slots (consistently) in a file sized for 16.
    poke(&name, ".fs.b2a", SLOT_COUNT, &1024u32.to_le_bytes());
    poke(
        &name,
        ".fs.b2a",
        SEGMENT_LEN,
        &(512u64 + 1024 * 128).to_le_bytes(),
    );
    let c = open_corruption(&name);
    assert!(
        matches!(
            c,
            Corruption::GeometryExceedsMapping {
                needed: 131_584,
                ..
            }
        ),
        "{c}"
    );
    // An inconsistent count is caught before the size is even considered.
    poke(&name, ".fs.b2a", SLOT_COUNT, &1000u32.to_le_bytes());
    let c = open_corruption(&name);
    assert!(
        matches!(
            c,
            Corruption::Geometry {
                field: "slot_count",
                value: 1000,
                ..
            }
        ),
        "{c}"
    );
}

#[test]
fn head_far_ahead_of_tail_is_refused() {
    let name = TestName::new("indices");
    let _a = Channel::builder(&*name).slot_count(16).create().unwrap();
    poke(&name, ".fs.b2a", HEAD, &1_000_000u64.to_le_bytes());
    let c = open_corruption(&name);
    assert_eq!(
        c,
        Corruption::IndexOutOfRange {
            head: 1_000_000,
            tail: 0,
            count: 16
        }
    );
}

#[test]
fn generations_that_disagree_are_refused() {
    let name = TestName::new("generations");
    let _a = Channel::builder(&*name).create().unwrap();
    poke(&name, ".fs.b2a", GENERATION, &42u64.to_le_bytes());
    let c = corruption(open(&name));
    assert!(
        matches!(
            c,
            Corruption::SegmentsDisagree {
                field: "generation",
                b2a: 42,
                ..
            }
        ),
        "{c}"
    );
}

#[test]
fn slot_length_above_the_largest_message_is_an_error_not_a_read() {
    let name = TestName::new("length");
    let mut a = Channel::builder(&*name)
        .slot_size(32)
        .slot_count(4)
        .create()
        .unwrap();
    let mut b = Channel::builder(&*name).open_timeout(WAIT).open().unwrap();
    a.send(b"hello", WAIT).unwrap();
    // The largest message: the first slot's 32 bytes, then three 64-byte slots.
    assert_eq!(b.sender().max_message_len(), 32 + 3 * 64);
    poke(&name, ".fs.a2b", SLOT0_LEN, &0xFFFF_FFFEu32.to_le_bytes());
    let err = b.recv(WAIT).err().unwrap();
    assert!(
        matches!(
            err,
            Error::Corrupt(Corruption::SlotLength {
                len: 0xFFFF_FFFE,
                slot_size: 224
            })
        ),
        "{err}"
    );
}

/// Records longer than a slot, forged: a length beyond the ring, a span that runs past
/// the ring's end (so past the segment), a padding record that claims more than the rest
/// of the ring, a span that does not match the length. Each is a typed error, read
/// through the public API from a real segment.
#[test]
fn forged_long_records_are_typed_errors() {
    // 32-byte slots (64-byte stride), 4 of them: the largest message is 32 + 3 * 64.
    let cases: [(&str, u32, u32); 5] = [
        ("length beyond the ring", 32 + 3 * 64 + 1, 4),
        ("span past the segment's end", 32 + 4 * 64, 5),
        ("padding past the end", u32::MAX, 5),
        ("padding at slot 0", u32::MAX, 4),
        ("span not matching the length", 100, 2),
    ];
    for (what, len, span) in cases {
        let name = TestName::new("forged-record");
        let mut a = Channel::builder(&*name)
            .slot_size(32)
            .slot_count(4)
            .create()
            .unwrap();
        let mut b = Channel::builder(&*name).open_timeout(WAIT).open().unwrap();
        a.send(b"hello", WAIT).unwrap();
        poke(&name, ".fs.a2b", SLOT0_LEN, &len.to_le_bytes());
        poke(&name, ".fs.a2b", SLOT0_SPAN, &span.to_le_bytes());
        let err = b.recv(WAIT).err().unwrap();
        assert!(
            matches!(
                err,
                Error::Corrupt(Corruption::SlotLength { .. } | Corruption::RecordSpan { .. })
            ),
            "{what}: {err}"
        );
    }
}

#[test]
fn scribbled_commit_word_is_an_error() {
    let name = TestName::new("commit");
    let _a = Channel::builder(&*name).slot_count(4).create().unwrap();
    let mut b = Channel::builder(&*name).open_timeout(WAIT).open().unwrap();
    poke(&name, ".fs.a2b", SLOT0_COMMIT, &99u64.to_le_bytes());
    let err = b.recv(WAIT).err().unwrap();
    assert!(
        matches!(
            err,
            Error::Corrupt(Corruption::CommitWord {
                index: 0,
                found: 99,
                ..
            })
        ),
        "{err}"
    );
}

#[test]
fn a_receive_thread_stopped_by_corruption_says_so() {
    let name = TestName::new("commit-thread");
    let _a = Channel::builder(&*name).slot_count(4).create().unwrap();
    let (tx, events) = std::sync::mpsc::channel();
    let b = Channel::builder(&*name)
        .open_timeout(WAIT)
        .on_event(move |e| {
            let _ = tx.send(e);
        })
        .on_receive(|_| {})
        .open()
        .unwrap();
    poke(&name, ".fs.a2b", SLOT0_COMMIT, &99u64.to_le_bytes());
    // The thread, asleep, wakes after its sleep slice, meets the scribble and stops.
    let event = events.recv_timeout(WAIT).expect("no event");
    assert_eq!(event, LinkEvent::ReceiveStopped);
    // Stored before the event is emitted, so it is there now.
    let err = b.take_receive_error().expect("the reason");
    assert!(
        matches!(
            err,
            Error::Corrupt(Corruption::CommitWord { found: 99, .. })
        ),
        "{err}"
    );
}

#[test]
fn tail_moved_backwards_or_past_head_is_an_error() {
    let name = TestName::new("tail");
    let mut a = Channel::builder(&*name)
        .slot_size(8)
        .slot_count(2)
        .create()
        .unwrap();
    let _b = Channel::builder(&*name).open_timeout(WAIT).open().unwrap();
    a.send(b"1", WAIT).unwrap();
    a.send(b"2", WAIT).unwrap();
    poke(&name, ".fs.a2b", TAIL, &50u64.to_le_bytes());
    let err = a.send(b"3", WAIT).unwrap_err();
    assert!(
        matches!(
            err,
            Error::Corrupt(Corruption::IndexOutOfRange {
                head: 2,
                tail: 50,
                count: 2
            })
        ),
        "{err}"
    );
}

#[test]
fn indices_near_u64_max_are_refused() {
    // head == tail passes `tail <= head <= tail + count`; only a range check catches these.
    for suffix in [".fs.a2b", ".fs.b2a"] {
        for index in [u64::MAX, u64::MAX - 1, (1 << 63) + 1] {
            let name = TestName::new("index-top");
            let _a = Channel::builder(&*name).slot_count(4).create().unwrap();
            poke(&name, suffix, HEAD, &index.to_le_bytes());
            poke(&name, suffix, TAIL, &index.to_le_bytes());
            let c = open_corruption(&name);
            assert_eq!(
                c,
                Corruption::IndexOutOfRange {
                    head: index,
                    tail: index,
                    count: 4
                },
                "{suffix} at {index}"
            );
        }
    }
}
