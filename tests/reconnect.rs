//! Side B re-attaching to a restarted side A: after a kill -9 and after a clean exit, each
//! disconnect behaviour, and giving up under each limit of the policy.

// Test code is not model-checked: it uses std's atomics (clippy.toml funnels the library's).
#![allow(clippy::disallowed_types)]

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use capnp_shm_transport::{Channel, Error, LinkEvent, OnDisconnect, ReconnectPolicy, WaitMode};
use common::peer::{read_stdin_line, say, Peer};
use common::TestName;

const WAIT: Duration = Duration::from_secs(20);

#[test]
fn child_process_entry() {
    let Some((role, name)) = common::peer::role() else {
        return;
    };
    let name = name.as_str();
    match role.as_str() {
        "echo-a" => echo_a(name),
        other => panic!("unknown role {other}"),
    }
}

/// Side A that echoes every message back, prefixed with its generation's low byte, until
/// it is killed or told to quit (then it closes cleanly).
fn echo_a(name: &str) {
    let mut a = Channel::builder(name)
        .slot_size(64)
        .slot_count(8)
        .wait_mode(WaitMode::Block)
        .create()
        .unwrap();
    let quit = Arc::new(AtomicBool::new(false));
    std::thread::spawn({
        let quit = quit.clone();
        move || {
            read_stdin_line();
            quit.store(true, Ordering::Relaxed);
        }
    });
    say("created");
    let tag = a.control().generation() as u8;
    let mut buf = Vec::new();
    while !quit.load(Ordering::Relaxed) {
        match a.recv_into(&mut buf, Duration::from_millis(5)) {
            Ok(_) => {
                buf.insert(0, tag);
                let _ = a.send(&buf, WAIT);
            }
            Err(Error::Timeout { .. } | Error::Closed | Error::PeerDead) => {}
            Err(e) => panic!("echo-a: {e}"),
        }
    }
}

fn start_a(name: &str) -> Peer {
    let mut a = Peer::spawn("echo-a", name);
    a.expect_line("created");
    a
}

fn open_b(
    name: &str,
    policy: ReconnectPolicy,
    on_disconnect: OnDisconnect,
) -> (Channel, mpsc::Receiver<LinkEvent>) {
    let (tx, events) = mpsc::channel();
    let b = Channel::builder(name)
        .wait_mode(WaitMode::Block)
        .reconnect(policy)
        .on_disconnect(on_disconnect)
        .on_event(move |e| {
            let _ = tx.send(e);
        })
        .open_timeout(WAIT)
        .open()
        .unwrap();
    (b, events)
}

/// A round trip through the echoing side A; returns the generation tag it added.
fn round_trip(b: &mut Channel, payload: &[u8]) -> u8 {
    b.send(payload, WAIT).unwrap();
    let reply = b.recv(WAIT).unwrap();
    assert_eq!(&reply[1..], payload);
    reply[0]
}

/// Waits (bounded) for an event matching `want`, returning the events seen before it.
fn expect_event(
    events: &mpsc::Receiver<LinkEvent>,
    want: impl Fn(&LinkEvent) -> bool,
) -> LinkEvent {
    let deadline = Instant::now() + WAIT;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let e = events.recv_timeout(left).expect("event did not come");
        if want(&e) {
            return e;
        }
    }
}

fn fast_retries() -> ReconnectPolicy {
    ReconnectPolicy {
        retry_interval: Duration::from_millis(10),
        ..ReconnectPolicy::default()
    }
}

#[test]
fn b_reconnects_after_a_is_killed_and_restarted() {
    let name = TestName::new("rc-kill");
    let mut a1 = start_a(&name);
    let (mut b, events) = open_b(&name, fast_retries(), OnDisconnect::WaitForReconnect);
    let gen1 = b.control().generation();
    assert_eq!(round_trip(&mut b, b"before"), gen1 as u8);
    a1.kill();
    expect_event(&events, |e| *e == LinkEvent::PeerDead);
    expect_event(&events, |e| {
        matches!(e, LinkEvent::Reconnecting { attempt: 1 })
    });
    let _a2 = start_a(&name);
    let reconnected = expect_event(&events, |e| matches!(e, LinkEvent::Reconnected { .. }));
    let gen2 = b.control().generation();
    assert_ne!(gen2, gen1);
    assert_eq!(reconnected, LinkEvent::Reconnected { generation: gen2 });
    // The new side A's headers start with side B in poll mode: B announced itself again.
    assert_eq!(b.control().local_wait_mode(), WaitMode::Block);
    for i in 0..100u32 {
        assert_eq!(
            round_trip(&mut b, &i.to_le_bytes()),
            gen2 as u8,
            "traffic both ways on the new link"
        );
    }
}

#[test]
fn b_reconnects_after_a_closes_cleanly_and_calls_wait_for_it() {
    let name = TestName::new("rc-close");
    let mut a1 = start_a(&name);
    let (mut b, events) = open_b(&name, fast_retries(), OnDisconnect::WaitForReconnect);
    round_trip(&mut b, b"hello");
    a1.tell("quit");
    expect_event(&events, |e| *e == LinkEvent::PeerClosed);
    // A receive now waits (within its timeout) for the reconnection instead of failing.
    let restarter = std::thread::spawn({
        let name = name.0.clone();
        move || {
            std::thread::sleep(Duration::from_millis(50)); // B is waiting by now
            start_a(&name)
        }
    });
    b.send(b"queued on the new link", WAIT).unwrap();
    let _a2 = restarter.join().unwrap();
    let reply = b.recv(WAIT).unwrap();
    assert_eq!(&reply[1..], b"queued on the new link");
    drop(reply);
    a1.finish();
}

#[test]
fn fail_fast_reports_reconnecting_at_once() {
    let name = TestName::new("rc-failfast");
    let mut a1 = start_a(&name);
    let (mut b, events) = open_b(&name, fast_retries(), OnDisconnect::Fail);
    round_trip(&mut b, b"x");
    a1.kill();
    expect_event(&events, |e| *e == LinkEvent::PeerDead);
    let start = Instant::now();
    let result = b.recv(WAIT).map(|m| m.len());
    assert!(matches!(result, Err(Error::Reconnecting)), "{result:?}");
    assert!(start.elapsed() < WAIT / 2, "failed fast");
    let _a2 = start_a(&name);
    expect_event(&events, |e| matches!(e, LinkEvent::Reconnected { .. }));
    round_trip(&mut b, b"back");
}

#[test]
fn gives_up_after_max_attempts() {
    let name = TestName::new("rc-attempts");
    let mut a1 = start_a(&name);
    let policy = ReconnectPolicy {
        retry_interval: Duration::from_millis(5),
        max_attempts: 4,
        max_wait: Duration::ZERO,
    };
    let (mut b, events) = open_b(&name, policy, OnDisconnect::WaitForReconnect);
    round_trip(&mut b, b"x");
    a1.kill();
    assert_eq!(
        expect_event(&events, |e| matches!(e, LinkEvent::GaveUp { .. })),
        LinkEvent::GaveUp { attempts: 4 }
    );
    let result = b.recv(WAIT).map(|m| m.len());
    assert!(matches!(result, Err(Error::GaveUp)), "{result:?}");
}

#[test]
fn gives_up_after_max_wait() {
    let name = TestName::new("rc-wait");
    let mut a1 = start_a(&name);
    let policy = ReconnectPolicy {
        retry_interval: Duration::from_millis(5),
        max_attempts: 0,
        max_wait: Duration::from_millis(100),
    };
    let (mut b, events) = open_b(&name, policy, OnDisconnect::WaitForReconnect);
    round_trip(&mut b, b"x");
    a1.kill();
    expect_event(&events, |e| *e == LinkEvent::PeerDead);
    let start = Instant::now();
    expect_event(&events, |e| matches!(e, LinkEvent::GaveUp { .. }));
    assert!(start.elapsed() >= Duration::from_millis(90));
    assert!(matches!(b.send(b"x", WAIT), Err(Error::GaveUp) | Ok(())));
}

#[test]
fn keep_waiting_returns_reconnecting_when_the_call_times_out_then_recovers() {
    let name = TestName::new("rc-keep");
    let mut a1 = start_a(&name);
    let (mut b, events) = open_b(&name, fast_retries(), OnDisconnect::KeepWaiting);
    round_trip(&mut b, b"x");
    a1.kill();
    expect_event(&events, |e| *e == LinkEvent::PeerDead);
    let start = Instant::now();
    let result = b.recv(Duration::from_millis(150)).map(|m| m.len());
    assert!(matches!(result, Err(Error::Reconnecting)), "{result:?}");
    assert!(
        start.elapsed() >= Duration::from_millis(140),
        "waited out its own timeout"
    );
    // Unlimited: far past the default policy's 50 attempts, still trying.
    expect_event(&events, |e| {
        matches!(e, LinkEvent::Reconnecting { attempt: 60 })
    });
    let _a2 = start_a(&name);
    round_trip(&mut b, b"recovered");
}
