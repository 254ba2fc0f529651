//! Every call is bounded by its own timeout, and only by it: huge timeouts mean "no
//! deadline" instead of overflowing the clock, one deadline covers every phase of a call
//! (waiting for space, for the peer's return, for a message), and dropping a channel stops
//! its receive thread at once, even after a reconnection moved it to a new link.

// Test code is not model-checked: it uses std's atomics (clippy.toml funnels the library's).
#![allow(clippy::disallowed_types, clippy::disallowed_methods)]

mod common;

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use capnp_shm_transport::{Channel, Error, LinkEvent, OnDisconnect, ReconnectPolicy, WaitMode};
use common::peer::{read_stdin_line, say, Peer};
use common::TestName;

const WAIT: Duration = Duration::from_secs(20);
// Byte offsets from docs/LAYOUT.md: the wait words of a ring's producer and consumer.
const PRODUCER_WAIT: u64 = 148;
const CONSUMER_WAIT: u64 = 276;

/// Timeouts too large for `Instant + timeout`.
const HUGE: [Duration; 3] = [
    Duration::from_secs(u64::MAX),
    Duration::MAX.saturating_sub(Duration::from_nanos(1)),
    Duration::from_secs(u64::MAX / 2),
];

#[test]
fn child_process_entry() {
    let Some((role, name)) = common::peer::role() else {
        return;
    };
    let name = name.as_str();
    match role.as_str() {
        // Side A that neither reads nor sends: B's sends fill the ring, its receives wait.
        "silent-a" => {
            let _a = create_a(name);
            say("created");
            read_stdin_line();
        }
        // Side A that sends one "hello" at once, then closes when told to quit.
        "hello-a" => {
            let mut a = create_a(name);
            a.send(b"hello", WAIT).unwrap();
            say("created");
            read_stdin_line();
        }
        other => panic!("unknown role {other}"),
    }
}

fn create_a(name: &str) -> Channel {
    Channel::builder(name)
        .slot_size(16)
        .slot_count(2)
        .wait_mode(WaitMode::Block)
        .create()
        .unwrap()
}

fn start_a(role: &str, name: &str) -> Peer {
    let mut a = Peer::spawn(role, name);
    a.expect_line("created");
    a
}

/// Reconnects every 10 ms without limit, so a call's own timeout is what ends its wait.
fn unlimited_fast_retries() -> ReconnectPolicy {
    ReconnectPolicy {
        retry_interval: Duration::from_millis(10),
        ..ReconnectPolicy::unlimited()
    }
}

fn b_builder(name: &str, events: mpsc::Sender<LinkEvent>) -> capnp_shm_transport::ChannelBuilder {
    Channel::builder(name)
        .wait_mode(WaitMode::Block)
        .reconnect(unlimited_fast_retries())
        .on_disconnect(OnDisconnect::WaitForReconnect)
        .on_event(move |e| {
            let _ = events.send(e);
        })
        .open_timeout(WAIT)
}

fn expect_event(events: &mpsc::Receiver<LinkEvent>, want: impl Fn(&LinkEvent) -> bool) {
    let deadline = Instant::now() + WAIT;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let e = events.recv_timeout(left).expect("event did not come");
        if want(&e) {
            return;
        }
    }
}

/// Waits (bounded) until the wait word at `offset` of segment `suffix` says its owner
/// sleeps on the futex: the owner is past its spin phase and in its last, futex phase.
fn until_asleep(name: &TestName, suffix: &str, offset: u64) {
    let file = File::open(name.path(suffix)).unwrap();
    let deadline = Instant::now() + WAIT;
    loop {
        let mut word = [0u8; 4];
        file.read_exact_at(&mut word, offset).unwrap();
        if u32::from_le_bytes(word) != 0 {
            return;
        }
        assert!(Instant::now() < deadline, "the waiter never went to sleep");
        std::thread::yield_now();
    }
}

#[test]
fn huge_timeouts_mean_no_deadline_and_do_not_panic() {
    let name = TestName::new("huge");
    let a = Channel::builder(&*name)
        .slot_size(16)
        .slot_count(2)
        .wait_mode(WaitMode::Block)
        .create()
        .unwrap();
    for d in HUGE {
        drop(Channel::builder(&*name).open_timeout(d).open().unwrap());
    }
    let b = Channel::builder(&*name)
        .wait_mode(WaitMode::Block)
        .open_timeout(Duration::MAX.saturating_sub(Duration::from_nanos(1)))
        .open()
        .unwrap();
    let (mut a_tx, mut a_rx) = a.split().unwrap();
    let (mut b_tx, mut b_rx) = b.split().unwrap();
    for d in HUGE {
        // A receive that has to wait: the message comes once it sleeps on the futex, so
        // it has read the clock on the way (every 64 spins, and before sleeping).
        std::thread::scope(|s| {
            s.spawn(|| {
                until_asleep(&name, ".fs.a2b", CONSUMER_WAIT);
                a_tx.send(b"late", WAIT).unwrap();
            });
            assert_eq!(&*b_rx.recv(d).unwrap(), b"late", "{d:?}");
        });
        // A send that has to wait for space: B fills A's ring, then waits.
        b_tx.send(b"1", d).unwrap();
        b_tx.send(b"2", d).unwrap();
        std::thread::scope(|s| {
            s.spawn(|| {
                until_asleep(&name, ".fs.b2a", PRODUCER_WAIT);
                for want in [&b"1"[..], b"2"] {
                    assert_eq!(&*a_rx.recv(WAIT).unwrap(), want);
                }
            });
            b_tx.send(b"3", d).unwrap();
        });
        assert_eq!(&*a_rx.recv(WAIT).unwrap(), b"3");
    }
}

/// The timeout of the calls across a peer's death, and where the old code took about twice
/// as long: it waited for space (or a message) until the peer died just before the
/// deadline, then waited a whole fresh timeout for the reconnection.
const T: Duration = Duration::from_secs(2);
/// When the peer dies, after the call started.
const KILL_AFTER: Duration = Duration::from_millis(1800);
/// Generous for a loaded 2-core machine, and far below the old T + KILL_AFTER.
const SLACK: Duration = Duration::from_secs(1);

/// Kills `a` at `KILL_AFTER` after `start`, from another thread; returns the peer.
fn kill_later(mut a: Peer, start: Instant) -> std::thread::JoinHandle<Peer> {
    std::thread::spawn(move || {
        // The scenario's own timing: the call must be waiting when the peer dies.
        std::thread::sleep(KILL_AFTER.saturating_sub(start.elapsed()));
        a.kill();
        a
    })
}

fn assert_bounded(what: &str, result: Result<(), Error>, took: Duration) {
    assert!(
        matches!(result, Err(Error::Reconnecting | Error::Timeout { .. })),
        "{what}: {result:?}"
    );
    assert!(
        took >= T - Duration::from_millis(5),
        "{what} ended early: {took:?}"
    );
    assert!(
        took < T + SLACK,
        "{what} took {took:?} with a timeout of {T:?}"
    );
}

#[test]
fn a_send_across_a_peer_restart_ends_within_its_timeout() {
    let name = TestName::new("dl-send");
    let a1 = start_a("silent-a", &name);
    let (tx, events) = mpsc::channel();
    let mut b = b_builder(&name, tx).open().unwrap();
    b.send(b"1", WAIT).unwrap();
    b.send(b"2", WAIT).unwrap(); // A's ring is full; A never reads
    let start = Instant::now();
    let killer = kill_later(a1, start);
    let result = b.send(b"3", T);
    let took = start.elapsed();
    let _a1 = killer.join().unwrap();
    assert_bounded("send", result, took);
    // The peer comes back: the next call goes on over the new link.
    let _a2 = start_a("silent-a", &name);
    expect_event(&events, |e| matches!(e, LinkEvent::Reconnected { .. }));
    b.send(b"after restart", WAIT).unwrap();
}

#[test]
fn a_receive_across_a_peer_restart_ends_within_its_timeout() {
    let name = TestName::new("dl-recv");
    let a1 = start_a("silent-a", &name);
    let (tx, events) = mpsc::channel();
    let mut b = b_builder(&name, tx).open().unwrap();
    let start = Instant::now();
    let killer = kill_later(a1, start);
    let result = b.recv(T).map(|_| ());
    let took = start.elapsed();
    let _a1 = killer.join().unwrap();
    assert_bounded("recv", result, took);
    let _a2 = start_a("hello-a", &name);
    expect_event(&events, |e| matches!(e, LinkEvent::Reconnected { .. }));
    assert_eq!(&*b.recv(WAIT).unwrap(), b"hello");
}

#[test]
fn dropping_a_channel_after_a_reconnection_stops_its_receive_thread_at_once() {
    let name = TestName::new("dl-drop");
    let mut a1 = start_a("hello-a", &name);
    let (tx, events) = mpsc::channel();
    let (got_tx, got) = mpsc::channel();
    let slice = Duration::from_secs(10);
    let b = b_builder(&name, tx)
        .sleep_slice(slice)
        .on_receive(move |m| {
            let _ = got_tx.send(m.to_vec());
        })
        .open()
        .unwrap();
    assert_eq!(got.recv_timeout(WAIT).unwrap(), b"hello");
    a1.tell("quit");
    expect_event(&events, |e| *e == LinkEvent::PeerClosed);
    a1.finish();
    let _a2 = start_a("hello-a", &name);
    expect_event(&events, |e| matches!(e, LinkEvent::Reconnected { .. }));
    // The receive thread moved to the new link (it delivered the new A's message), and
    // now sleeps on the new ring's futex word.
    assert_eq!(got.recv_timeout(WAIT).unwrap(), b"hello");
    until_asleep(&name, ".fs.a2b", CONSUMER_WAIT);
    let start = Instant::now();
    drop(b);
    let took = start.elapsed();
    assert!(
        took < slice / 5,
        "drop took {took:?}: the receive thread slept out its {slice:?} slice"
    );
}
