//! Peer death: kill -9 the other process at random moments and check that this side notices
//! within the threshold, never sees a torn, duplicated or reordered message, and is never
//! left blocked.

mod common;

use std::time::{Duration, Instant};

use capnp_shm_transport::{Channel, Error, PeerState, Timeout, WaitMode};
use common::peer::{read_stdin_line, say, Peer};
use common::{message, TestName};

const WAIT: Duration = Duration::from_secs(30);
const SLOT_SIZE: usize = 64;
const STREAM: u64 = 7;
/// Far above the measured detection time (sub-millisecond through the pidfd), so a loaded
/// CI machine does not fail the test; the note reports the measured figures.
const DETECT_WITHIN: Duration = Duration::from_secs(2);

#[test]
fn child_process_entry() {
    let Some((role, name)) = common::peer::role() else {
        return;
    };
    let name = name.as_str();
    match role.as_str() {
        "writer-a" => writer_a(name),
        "idle-b" => idle_b(name),
        "full-a" => full_a(name),
        other => panic!("unknown role {other}"),
    }
}

/// Side A that streams checked messages until it is killed.
fn writer_a(name: &str) {
    let mut a = Channel::builder(name)
        .slot_size(SLOT_SIZE)
        .slot_count(64)
        .wait_mode(WaitMode::Block)
        .create()
        .unwrap();
    say("created");
    let mut buf = Vec::new();
    for i in 0.. {
        message(STREAM, i, SLOT_SIZE, &mut buf);
        a.send(&buf, WAIT).unwrap();
    }
}

/// Side B that attaches and then never receives, until it is killed.
fn idle_b(name: &str) {
    let _b = Channel::builder(name).open_timeout(WAIT).open().unwrap();
    say("attached");
    read_stdin_line();
}

/// Side A whose sender blocks on a full ring until its reader dies, then returns from the
/// process's main at once, while its event callback (slow, as user code may be) still runs
/// on the liveness thread.
fn full_a(name: &str) {
    let mut a = Channel::builder(name)
        .slot_size(16)
        .slot_count(4)
        .wait_mode(WaitMode::Block)
        .on_event(|_| std::thread::sleep(Duration::from_millis(300))) // a slow callback
        .create()
        .unwrap();
    say("created");
    for _ in 0..4 {
        a.send(b"fill", WAIT).unwrap();
    }
    say("full");
    let blocked = a.send(b"blocked", WAIT);
    assert!(matches!(blocked, Err(Error::PeerDead)), "{blocked:?}");
    // Returning ends the process, whichever thread holds the channel last.
}

/// A small deterministic generator for the kill moments.
fn next(x: &mut u64) -> u64 {
    *x ^= *x << 13;
    *x ^= *x >> 7;
    *x ^= *x << 17;
    *x
}

#[test]
fn killing_the_writer_at_random_moments_is_detected_and_nothing_is_torn() {
    const ROUNDS: usize = 50;
    let mut rng = 0x2545_f491_4f6c_dd1du64;
    let mut detections = Vec::with_capacity(ROUNDS);
    let mut want = Vec::with_capacity(SLOT_SIZE);
    for round in 0..ROUNDS {
        let name = TestName::new(&format!("kill{round}"));
        let mut writer = Peer::spawn("writer-a", &name);
        writer.expect_line("created");
        let mut b = Channel::builder(&*name).open_timeout(WAIT).open().unwrap();
        assert_eq!(b.control().peer_state(), PeerState::Alive);
        let kill_after = Duration::from_micros(500 + next(&mut rng) % 20_000);
        let start = Instant::now();
        let mut i = 0u64;
        let mut killed_at = None;
        let outcome = loop {
            if killed_at.is_none() && start.elapsed() >= kill_after {
                writer.kill();
                killed_at = Some(Instant::now());
            }
            let timeout = if killed_at.is_some() {
                Timeout::After(WAIT)
            } else {
                Timeout::Immediate
            };
            match b.recv(timeout) {
                Ok(msg) => {
                    message(STREAM, i, SLOT_SIZE, &mut want);
                    assert_eq!(
                        &*msg,
                        &want[..],
                        "round {round}: message {i} torn, duplicated or out of order"
                    );
                    i += 1;
                }
                Err(Error::Timeout { .. }) if killed_at.is_none() => {}
                Err(e) => break e,
            }
        };
        let detected = killed_at.expect("killed").elapsed();
        assert!(
            matches!(outcome, Error::PeerDead),
            "round {round}: {outcome}"
        );
        assert_eq!(b.control().peer_state(), PeerState::Dead);
        assert!(
            detected < DETECT_WITHIN,
            "round {round}: detected after {detected:?}"
        );
        detections.push(detected);
    }
    detections.sort();
    eprintln!(
        "peer death detected after kill -9: p50 {:?}, max {:?} over {ROUNDS} rounds",
        detections[ROUNDS / 2],
        detections[ROUNDS - 1]
    );
}

#[test]
fn killing_the_reader_unblocks_a_sender_on_a_full_ring() {
    let name = TestName::new("kill-reader");
    let mut a = Channel::builder(&*name)
        .slot_size(16)
        .slot_count(4)
        .wait_mode(WaitMode::Block)
        .create()
        .unwrap();
    assert_eq!(a.control().peer_state(), PeerState::NotAttached);
    let mut reader = Peer::spawn("idle-b", &name);
    reader.expect_line("attached");
    assert_eq!(a.control().peer_state(), PeerState::Alive);
    while a.send(b"fill", Duration::ZERO).is_ok() {}
    let killer = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(30)); // let the sender block first
        reader.kill();
        (Instant::now(), reader)
    });
    let result = a.send(b"blocked", Timeout::Never);
    let (killed_at, _reader) = killer.join().unwrap();
    assert!(matches!(result, Err(Error::PeerDead)), "{result:?}");
    assert!(killed_at.elapsed() < DETECT_WITHIN);
}

#[test]
fn a_channel_whose_creator_died_is_stale_and_removable() {
    use capnp_shm_transport::inspect::{inspect_channel, list_channels, remove_stale_channels};
    let name = TestName::new("stale");
    let mut writer = Peer::spawn("writer-a", &name);
    writer.expect_line("created");
    assert!(!inspect_channel(&name).unwrap().creator_gone);
    writer.kill();
    drop(writer); // reaped: the pid is gone
    let info = inspect_channel(&name).unwrap();
    assert!(info.creator_gone && !info.a_attached());
    let removed = remove_stale_channels().unwrap();
    assert!(removed.contains(&name.0), "{removed:?}");
    assert!(!list_channels().unwrap().contains(&name.0));
}

#[test]
fn a_exiting_on_a_dead_reader_leaves_no_segments() {
    for round in 0..3 {
        let name = TestName::new(&format!("exit-leak{round}"));
        let mut writer = Peer::spawn("full-a", &name);
        writer.expect_line("created");
        let mut reader = Peer::spawn("idle-b", &name);
        reader.expect_line("attached");
        writer.expect_line("full");
        reader.kill();
        writer.finish();
        for suffix in [".fs.a2b", ".fs.b2a"] {
            assert!(
                !name.path(suffix).exists(),
                "round {round}: {suffix} left in /dev/shm after side A exited"
            );
        }
    }
}

#[test]
fn a_creator_that_dies_before_its_identity_is_seen_is_dead_to_b() {
    // Side A died after marking its segments ready but before its identity (the producer
    // block's pid) was there: B attached, sees pid 0 ("nobody attached yet") and must still
    // learn that A is gone, from A's owner lock, instead of waiting forever.
    use std::os::unix::fs::FileExt;
    let name = TestName::new("early-death");
    let mut writer = Peer::spawn("writer-a", &name);
    writer.expect_line("created");
    let mut b = Channel::builder(&*name).open_timeout(WAIT).open().unwrap();
    // What a reader would find had A died before publishing: a2b's producer pid is 0
    // (byte 144, docs/LAYOUT.md).
    std::fs::OpenOptions::new()
        .write(true)
        .open(name.path(".fs.a2b"))
        .unwrap()
        .write_all_at(&0u32.to_ne_bytes(), 144)
        .unwrap();
    writer.kill();
    let killed_at = Instant::now();
    loop {
        match b.recv(DETECT_WITHIN) {
            Ok(_) => continue, // what A sent before it died
            Err(Error::PeerDead) => break,
            Err(e) => panic!(
                "B got {e:?}, not PeerDead, {:?} after A died",
                killed_at.elapsed()
            ),
        }
    }
    assert!(killed_at.elapsed() < DETECT_WITHIN);
    assert_eq!(b.control().peer_state(), PeerState::Dead);
}
