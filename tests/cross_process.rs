//! Two real processes: the test binary re-executes itself as the peer (fork is fragile with
//! threads). The child runs `child_process_entry` with its role in an environment variable.

// clippy.toml funnels the library's spin and yield hints through its loom-aware module;
// test code is not model-checked and uses std's.
#![allow(clippy::disallowed_methods)]

mod common;

use std::time::{Duration, Instant};

use capnp_shm_transport::{Channel, Error, Timeout, WaitMode};
use common::peer::{read_stdin_line, say, Peer};
use common::{message, TestName};

const WAIT: Duration = Duration::from_secs(30);
const STRESS_MESSAGES: u64 = 1_000_000;
const STRESS_SLOT_SIZE: usize = 64;
const A_TO_B: u64 = 1;
const B_TO_A: u64 = 2;

/// The peer process. In a normal test run (no role set) this entry does nothing.
#[test]
fn child_process_entry() {
    let Some((role, name)) = common::peer::role() else {
        return;
    };
    let name = name.as_str();
    match role.as_str() {
        "stress-b" => stress_b(name),
        "late-b" => late_b(name),
        "old-b" => old_b(name),
        "closing-a" => closing_a(name),
        "pong-b" => pong_b(name),
        other => panic!("unknown role {other}"),
    }
}

/// Sends `n` messages of `stream` as fast as the ring allows.
fn send_stream(tx: &mut capnp_shm_transport::Sender, stream: u64, n: u64) {
    let mut buf = Vec::with_capacity(STRESS_SLOT_SIZE);
    for i in 0..n {
        message(stream, i, STRESS_SLOT_SIZE, &mut buf);
        tx.send(&buf, WAIT)
            .unwrap_or_else(|e| panic!("send {i} of stream {stream}: {e}"));
    }
}

/// Receives `n` messages of `stream` and checks each one: none lost, duplicated,
/// reordered or altered.
fn check_stream(rx: &mut capnp_shm_transport::Receiver, stream: u64, n: u64) {
    let mut want = Vec::with_capacity(STRESS_SLOT_SIZE);
    let mut i = 0;
    while i < n {
        let got = rx
            .recv_batch(64, WAIT, |msg| {
                message(stream, i, STRESS_SLOT_SIZE, &mut want);
                assert_eq!(msg, &want[..], "message {i} of stream {stream} differs");
                i += 1;
            })
            .unwrap_or_else(|e| panic!("receive {i} of stream {stream}: {e}"));
        assert!(got > 0);
    }
    assert!(
        matches!(
            rx.recv(Duration::ZERO),
            Err(Error::Timeout { .. } | Error::Closed)
        ),
        "extra message after the stream"
    );
}

fn stress_b(name: &str) {
    let b = Channel::builder(name)
        .poll_interval(Duration::from_micros(50))
        .open_timeout(WAIT)
        .open()
        .unwrap();
    let (mut tx, mut rx) = b.split().unwrap();
    let sender = std::thread::spawn(move || send_stream(&mut tx, B_TO_A, STRESS_MESSAGES));
    check_stream(&mut rx, A_TO_B, STRESS_MESSAGES);
    sender.join().unwrap();
}

#[test]
fn a_million_messages_each_way_at_once() {
    let name = TestName::new("stress");
    let a = Channel::builder(&*name)
        .slot_size(STRESS_SLOT_SIZE)
        .slot_count(256)
        .poll_interval(Duration::from_micros(50))
        .create()
        .unwrap();
    let peer = Peer::spawn("stress-b", &name);
    let (mut tx, mut rx) = a.split().unwrap();
    let sender = std::thread::spawn(move || {
        send_stream(&mut tx, A_TO_B, STRESS_MESSAGES);
        tx
    });
    check_stream(&mut rx, B_TO_A, STRESS_MESSAGES);
    let tx = sender.join().unwrap();
    peer.finish();
    let stats = tx.control().stats();
    assert_eq!(stats.outgoing.messages_received, STRESS_MESSAGES);
    assert_eq!(stats.incoming.messages_sent, STRESS_MESSAGES);
}

fn late_b(name: &str) {
    say("opening");
    let mut b = Channel::builder(name).open_timeout(WAIT).open().unwrap();
    let msg = b.recv(WAIT).unwrap().to_vec();
    b.send(&[&msg[..], b" back"].concat(), WAIT).unwrap();
}

#[test]
fn b_started_before_a_waits_then_connects() {
    let name = TestName::new("late");
    let mut peer = Peer::spawn("late-b", &name);
    peer.expect_line("opening"); // B is now waiting for segments that do not exist yet
    assert!(!name.path(".fs.a2b").exists());
    let mut a = Channel::builder(&*name).create().unwrap();
    a.send(b"hello", WAIT).unwrap();
    assert_eq!(&*a.recv(WAIT).unwrap(), b"hello back");
    peer.finish();
}

fn old_b(name: &str) {
    let mut b = Channel::builder(name).open_timeout(WAIT).open().unwrap();
    say("attached");
    // Keep writing into the (soon unlinked) old mapping until told to stop.
    let stop = std::thread::spawn(read_stdin_line);
    let mut sent = 0u64;
    while !stop.is_finished() {
        if b.send(b"from the old generation", Duration::ZERO).is_ok() {
            sent += 1;
        }
        let _ = b.recv(Duration::ZERO).map(drop);
        std::thread::yield_now();
    }
    say(&format!("old-b sent {sent}"));
}

#[test]
fn recreated_a_is_not_disturbed_by_an_old_b() {
    let name = TestName::new("recreate");
    let a1 = Channel::builder(&*name).slot_count(8).create().unwrap();
    let gen1 = a1.control().generation();
    let mut old = Peer::spawn("old-b", &name);
    old.expect_line("attached");
    drop(a1);
    let mut a2 = Channel::builder(&*name).slot_count(8).create().unwrap();
    assert_ne!(a2.control().generation(), gen1);
    let mut b2 = Channel::builder(&*name).open_timeout(WAIT).open().unwrap();
    assert_eq!(b2.control().generation(), a2.control().generation());
    for i in 0..2000u32 {
        a2.send(&i.to_le_bytes(), WAIT).unwrap();
        assert_eq!(&*b2.recv(WAIT).unwrap(), &i.to_le_bytes());
        b2.send(&i.to_be_bytes(), WAIT).unwrap();
        assert_eq!(&*a2.recv(WAIT).unwrap(), &i.to_be_bytes());
    }
    old.tell("stop");
    assert!(
        matches!(a2.recv(Duration::ZERO), Err(Error::Timeout { .. })),
        "nothing from the old B"
    );
    old.finish();
}

fn closing_a(name: &str) {
    let _a = Channel::builder(name)
        .slot_size(16)
        .slot_count(2)
        .create()
        .unwrap();
    say("created");
    read_stdin_line(); // drop (close) when told
}

#[test]
fn peer_exit_unblocks_a_busy_spinning_receiver() {
    let name = TestName::new("close-recv");
    let mut peer = Peer::spawn("closing-a", &name);
    peer.expect_line("created");
    let mut b = Channel::builder(&*name).open_timeout(WAIT).open().unwrap();
    peer.tell("close");
    let start = Instant::now();
    let result = b.recv(Timeout::After(WAIT)).map(|m| m.len());
    assert!(matches!(result, Err(Error::Closed)), "{result:?}");
    assert!(start.elapsed() < WAIT);
    peer.finish();
}

#[test]
fn peer_exit_unblocks_a_sleeping_sender_on_a_full_ring() {
    let name = TestName::new("close-send");
    let mut peer = Peer::spawn("closing-a", &name);
    peer.expect_line("created");
    let mut b = Channel::builder(&*name)
        .poll_interval(Duration::from_millis(1))
        .open_timeout(WAIT)
        .open()
        .unwrap();
    b.send(b"1", WAIT).unwrap();
    b.send(b"2", WAIT).unwrap();
    peer.tell("close");
    let result = b.send(b"3", Timeout::Never);
    assert!(matches!(result, Err(Error::Closed)), "{result:?}");
    peer.finish();
}

/// Futex sleeps longer than the receive timeout: a lost wake-up fails the test instead of
/// hiding behind the periodic re-check.
const NO_RECHECK: Duration = Duration::from_secs(60);

fn pong_b(name: &str) {
    let mut b = Channel::builder(name)
        .wait_mode(WaitMode::Block)
        .sleep_slice(NO_RECHECK)
        .open_timeout(WAIT)
        .open()
        .unwrap();
    let mut buf = Vec::new();
    loop {
        match b.recv_into(&mut buf, WAIT) {
            Ok(_) => b.send(&buf, WAIT).unwrap(),
            Err(Error::Closed) => return,
            Err(e) => panic!("pong side: {e}"),
        }
    }
}

/// Round trips for the block-mode stress; `CAPNP_SHM_PINGPONGS` overrides (the soak runs
/// 10 million in release mode).
fn ping_pongs() -> u64 {
    std::env::var("CAPNP_SHM_PINGPONGS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(300_000)
}

#[test]
fn block_mode_ping_pong_never_loses_a_wake_up() {
    let name = TestName::new("pingpong");
    let mut a = Channel::builder(&*name)
        .slot_size(64)
        .slot_count(16)
        .wait_mode(WaitMode::Block)
        .sleep_slice(NO_RECHECK)
        .create()
        .unwrap();
    let peer = Peer::spawn("pong-b", &name);
    let n = ping_pongs();
    for i in 0..n {
        if i % 1024 == 1023 {
            // Go quiet past the peer's spin and yield phases, so it sleeps on its futex and
            // the next ping must wake it (busy-waiting: this is a gap, not synchronization).
            let gap = Instant::now();
            while gap.elapsed() < Duration::from_micros(200) {
                std::hint::spin_loop();
            }
        }
        a.send(&i.to_le_bytes(), WAIT).unwrap();
        let reply = a
            .recv(WAIT)
            .unwrap_or_else(|e| panic!("round trip {i}: {e}"));
        assert_eq!(&*reply, &i.to_le_bytes(), "round trip {i}");
    }
    drop(a);
    peer.finish();
}
