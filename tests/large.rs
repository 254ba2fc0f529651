//! Messages larger than a slot between two real processes: random sizes up to the ring's
//! capacity both ways at once with every byte checked, and a producer killed in the middle
//! of a long write. The child is this test binary re-executed (tests/common/peer.rs).
//!
//! `CST_LARGE_MIB` sets the volume each way (default 64 MiB, which a debug build moves in
//! seconds; the 1 GiB: `CST_LARGE_MIB=1024 cargo test --release --test large`).

mod common;

use std::time::Duration;

use capnp_shm_transport::{Channel, Error, Receiver, Sender};
use common::peer::{read_stdin_line, say, Peer};
use common::TestName;

const WAIT: Duration = Duration::from_secs(30);
const SLOT_SIZE: usize = 1024;
const SLOT_COUNT: usize = 64;
const A_TO_B: u64 = 1;
const B_TO_A: u64 = 2;

/// The peer process. In a normal test run (no role set) this entry does nothing.
#[test]
fn child_process_entry() {
    let Some((role, name)) = common::peer::role() else {
        return;
    };
    match role.as_str() {
        "stream-b" => stream_b(&name),
        "dying-writer-b" => dying_writer_b(&name),
        "after-b" => after_b(&name),
        other => panic!("unknown role {other}"),
    }
}

fn volume() -> u64 {
    let mib: u64 = std::env::var("CST_LARGE_MIB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(64);
    mib << 20
}

/// splitmix64: the stream's lengths and contents.
fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

/// Message `i` of `stream`: half of them up to a slot, half up to the whole ring; bytes
/// from the stream, the index and the position (word by word, cheap in a debug build).
fn fill(stream: u64, i: u64, max_len: usize, buf: &mut Vec<u8>) {
    let r = mix(stream << 48 ^ i);
    let len = if r & 1 == 0 {
        (r >> 1) as usize % (SLOT_SIZE + 1)
    } else {
        (r >> 1) as usize % (max_len + 1)
    };
    buf.clear();
    buf.resize(len.next_multiple_of(8), 0);
    for (k, word) in buf.chunks_exact_mut(8).enumerate() {
        word.copy_from_slice(&(r ^ (k as u64).wrapping_mul(0x2545_F491_4F6C_DD1D)).to_le_bytes());
    }
    buf.truncate(len);
}

/// Sends messages of `stream` until `bytes` payload bytes went out; every fifth is
/// written in place. Returns how many were sent.
fn send_stream(tx: &mut Sender, stream: u64, bytes: u64) -> u64 {
    let max_len = tx.max_message_len();
    let mut buf = Vec::new();
    let (mut sent, mut i) = (0, 0);
    while sent < bytes {
        fill(stream, i, max_len, &mut buf);
        if i % 5 == 0 {
            tx.send_with_capacity(buf.len(), WAIT, |slot| {
                slot.copy_from_slice(&buf);
                Ok::<_, Error>(buf.len())
            })
        } else {
            tx.send(&buf, WAIT)
        }
        .unwrap_or_else(|e| panic!("send {i} of stream {stream}: {e}"));
        sent += buf.len() as u64;
        i += 1;
    }
    tx.send(b"end", WAIT).unwrap();
    i
}

/// Receives `stream` up to its end marker, checking every message: none lost,
/// duplicated, reordered or altered. Returns how many arrived.
fn check_stream(rx: &mut Receiver, stream: u64, max_len: usize) -> u64 {
    let mut want = Vec::new();
    let mut i = 0;
    loop {
        let msg = rx
            .recv(WAIT)
            .unwrap_or_else(|e| panic!("receive {i} of stream {stream}: {e}"));
        if &*msg == b"end" {
            return i;
        }
        fill(stream, i, max_len, &mut want);
        assert!(*msg == want[..], "message {i} of stream {stream} differs");
        i += 1;
    }
}

fn stream_b(name: &str) {
    let b = Channel::builder(name).open_timeout(WAIT).open().unwrap();
    let (mut tx, mut rx) = b.split().unwrap();
    let max_len = rx.control().max_message_len();
    let sender = std::thread::spawn(move || send_stream(&mut tx, B_TO_A, volume()));
    let got = check_stream(&mut rx, A_TO_B, max_len);
    let sent = sender.join().unwrap();
    println!("b: sent {sent}, received {got}");
}

#[test]
fn random_sizes_up_to_the_ring_both_ways_at_once() {
    let name = TestName::new("large-stream");
    let a = Channel::builder(&*name)
        .slot_size(SLOT_SIZE)
        .slot_count(SLOT_COUNT)
        .create()
        .unwrap();
    let b = Peer::spawn("stream-b", &name);
    let (mut tx, mut rx) = a.split().unwrap();
    let max_len = tx.max_message_len();
    assert!(max_len > SLOT_SIZE * (SLOT_COUNT - 1));
    let sender = std::thread::spawn(move || send_stream(&mut tx, A_TO_B, volume()));
    let got = check_stream(&mut rx, B_TO_A, max_len);
    let sent = sender.join().unwrap();
    assert!(got > 0 && sent > 0);
    b.finish();
}

/// Side B starts a long message in place, says so, and blocks until it is killed.
fn dying_writer_b(name: &str) {
    let mut b = Channel::builder(name).open_timeout(WAIT).open().unwrap();
    b.send(b"before", WAIT).unwrap();
    let len = 3 * SLOT_SIZE;
    let _ = b.sender().send_with_capacity(len, WAIT, |buf| {
        buf.fill(0xEE);
        say("writing");
        read_stdin_line(); // killed here
        Ok::<_, Error>(len)
    });
    unreachable!("killed while writing");
}

/// A side B attached after the killed one: sends a long and a short message.
fn after_b(name: &str) {
    let mut b = Channel::builder(name).open_timeout(WAIT).open().unwrap();
    b.send(&vec![0x42; 2 * SLOT_SIZE + 5], WAIT).unwrap();
    b.send(b"short", WAIT).unwrap();
    say("sent");
    read_stdin_line();
}

#[test]
fn a_producer_killed_mid_long_write_publishes_nothing_and_the_next_continues() {
    let name = TestName::new("large-kill");
    let mut a = Channel::builder(&*name)
        .slot_size(SLOT_SIZE)
        .slot_count(8)
        .create()
        .unwrap();
    let mut dying = Peer::spawn("dying-writer-b", &name);
    dying.expect_line("writing");
    assert_eq!(&*a.recv(WAIT).unwrap(), b"before");
    dying.kill_and_reap();
    // Nothing of the unfinished message, whatever the receiver learns of the death.
    match a.recv(Duration::from_millis(50)) {
        Err(Error::Timeout { .. } | Error::PeerDead) => {}
        Ok(msg) => panic!("received {} bytes of an unfinished message", msg.len()),
        Err(e) => panic!("unexpected error {e}"),
    }
    let mut next = Peer::spawn("after-b", &name);
    next.expect_line("sent");
    let first = a.recv(WAIT).unwrap().to_vec();
    assert_eq!(first, vec![0x42; 2 * SLOT_SIZE + 5]);
    assert_eq!(&*a.recv(WAIT).unwrap(), b"short");
    next.tell("quit");
    next.finish();
}

/// A message that needs the whole ring waits until every slot is free, in each wait mode
/// (spin, sleep, block), within its timeout; one that cannot get its slots in time is a
/// `Timeout` with the ring left intact, and nothing reorders.
#[test]
fn whole_ring_messages_wait_for_their_slots_in_every_wait_mode() {
    use capnp_shm_transport::WaitMode;
    let modes: [(&str, WaitMode, Duration); 3] = [
        ("spin", WaitMode::Poll, Duration::ZERO),
        ("sleep", WaitMode::Poll, Duration::from_micros(200)),
        ("block", WaitMode::Block, Duration::ZERO),
    ];
    for (mode_name, mode, poll) in modes {
        let name = TestName::new(&format!("large-wait-{mode_name}"));
        let a = Channel::builder(&*name)
            .slot_size(64)
            .slot_count(8)
            .wait_mode(mode)
            .poll_interval(poll)
            .create()
            .unwrap();
        let b = Channel::builder(&*name)
            .wait_mode(mode)
            .poll_interval(poll)
            .open_timeout(WAIT)
            .open()
            .unwrap();
        let (mut tx, _a_rx) = a.split().unwrap();
        let (_b_tx, mut rx) = b.split().unwrap();
        let whole = tx.max_message_len();
        // One small message holds a slot: the whole-ring message cannot go in time.
        tx.send(b"first", WAIT).unwrap();
        let blocked = tx.send(&vec![1; whole], Duration::from_millis(20));
        assert!(
            matches!(blocked, Err(Error::Timeout { full: true })),
            "{mode_name}: {blocked:?}"
        );
        // A sender thread pushes three whole-ring messages and a small one; each waits
        // for the receiver to free every slot.
        let sender = std::thread::spawn(move || {
            for i in 2..=4u8 {
                tx.send(&vec![i; whole], WAIT).unwrap();
            }
            tx.send(b"last", WAIT).unwrap();
        });
        assert_eq!(&*rx.recv(WAIT).unwrap(), b"first", "{mode_name}");
        for i in 2..=4u8 {
            let msg = rx.recv(WAIT).unwrap();
            assert!(
                msg.len() == whole && msg.iter().all(|&b| b == i),
                "{mode_name}"
            );
        }
        assert_eq!(&*rx.recv(WAIT).unwrap(), b"last", "{mode_name}");
        sender.join().unwrap();
    }
}

/// Statistics count messages, not the slots their records cover (nor padding).
#[test]
fn stats_count_messages_not_slots() {
    let name = TestName::new("large-stats");
    let mut a = Channel::builder(&*name)
        .slot_size(64)
        .slot_count(8)
        .create()
        .unwrap();
    let mut b = Channel::builder(&*name).open_timeout(WAIT).open().unwrap();
    // 128-byte stride: 600 bytes cover slots 0..6; 300 bytes (3 slots) would pass the end
    // from slot 6, so padding covers 6..8 and the message 0..3; then one slot.
    for len in [600, 300, 1] {
        a.send(&vec![9; len], WAIT).unwrap();
        drop(b.recv(WAIT).unwrap());
    }
    let sent = a.control().stats().outgoing;
    assert_eq!((sent.messages_sent, sent.messages_received), (3, 3));
    assert_eq!((sent.bytes_sent, sent.bytes_received), (901, 901));
    let info = capnp_shm_transport::inspect::inspect_channel(&name).unwrap();
    assert_eq!(info.a2b.head, 12, "6 + 2 of padding + 3 + 1 slots");
    assert_eq!(info.a2b.messages_sent, 3);
}
