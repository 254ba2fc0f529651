//! Side B re-attaching to a restarted side A: after a kill -9 and after a clean exit, each
//! disconnect behaviour, and giving up under each limit of the policy.

// Test code is not model-checked: it uses std's atomics (clippy.toml funnels the library's).
#![allow(clippy::disallowed_types)]

mod common;

use std::os::unix::fs::FileExt;
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
        "burst-a" => burst_a(name),
        "sender-b" => sender_b(name),
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

/// Side A that sends `BURST` numbered messages at once (B need not be reading), says
/// "sent", then waits for a line on stdin and closes cleanly (unless killed first).
fn burst_a(name: &str) {
    let mut a = Channel::builder(name)
        .slot_size(64)
        .slot_count(64)
        .wait_mode(WaitMode::Block)
        .create()
        .unwrap();
    say("created");
    for i in 0..BURST {
        a.send(&i.to_le_bytes(), WAIT).unwrap();
    }
    say("sent");
    read_stdin_line();
}

/// Side B that sends each line it reads on stdin (saying "sent" after each), and closes
/// cleanly on "quit" or at the end of its input.
fn sender_b(name: &str) {
    let mut b = Channel::builder(name).open_timeout(WAIT).open().unwrap();
    say("attached");
    loop {
        let line = read_stdin_line();
        let line = line.trim();
        if line.is_empty() || line == "quit" {
            return;
        }
        b.send(line.as_bytes(), WAIT).unwrap();
        say("sent");
    }
}

/// Messages `burst_a` sends.
const BURST: u32 = 20;

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

/// Side A sends `BURST` messages, then goes away (`kill`: killed -9, else closes cleanly)
/// while B's application is busy and does not receive. B reconnects to a new side A in the
/// background; its next receives must still get every old message, in order, before the
/// new generation's, and `recv_batch` must hand over what it saw.
fn old_messages_survive_a_reconnection(kill: bool) {
    let name = TestName::new(if kill {
        "rc-drain-kill"
    } else {
        "rc-drain-close"
    });
    let mut a1 = Peer::spawn("burst-a", &name);
    a1.expect_line("created");
    let (mut b, events) = open_b(&name, fast_retries(), OnDisconnect::WaitForReconnect);
    let gen1 = b.control().generation();
    a1.expect_line("sent");
    if kill {
        a1.kill();
        expect_event(&events, |e| *e == LinkEvent::PeerDead);
    } else {
        a1.tell("quit");
        expect_event(&events, |e| *e == LinkEvent::PeerClosed);
        a1.finish();
    }
    // B's application was busy all along: the reconnection completes first.
    let _a2 = start_a(&name);
    expect_event(&events, |e| matches!(e, LinkEvent::Reconnected { .. }));
    assert_ne!(b.control().generation(), gen1);
    // The first half through recv_batch: it must not come back empty-handed.
    let mut got = Vec::new();
    while got.len() < BURST as usize / 2 {
        let n = b
            .recv_batch(BURST as usize / 2 - got.len(), WAIT, |m| {
                got.push(u32::from_le_bytes(m.try_into().unwrap()))
            })
            .unwrap();
        assert!(n > 0, "recv_batch returned 0 after a message was seen");
    }
    while got.len() < BURST as usize {
        let msg = b.recv(WAIT).unwrap();
        got.push(u32::from_le_bytes(
            (&*msg).try_into().expect("an old message"),
        ));
    }
    assert_eq!(got, (0..BURST).collect::<Vec<_>>(), "lost or reordered");
    // Then the new generation.
    let gen2 = b.control().generation();
    assert_eq!(round_trip(&mut b, b"new"), gen2 as u8);
}

#[test]
fn messages_of_a_closed_a_reach_a_busy_b_after_the_reconnection() {
    old_messages_survive_a_reconnection(false);
}

#[test]
fn messages_of_a_killed_a_reach_a_busy_b_after_the_reconnection() {
    old_messages_survive_a_reconnection(true);
}

/// Side A with a receive thread keeps serving: after its B closes, and after the next B is
/// killed, a B that attaches later is drained, and each change is an event.
#[test]
fn a_keeps_receiving_from_each_new_b() {
    let name = TestName::new("rc-a-serves");
    let (event_tx, events) = mpsc::channel();
    let (message_tx, messages) = mpsc::channel();
    let a = Channel::builder(&*name)
        .slot_size(64)
        .slot_count(8)
        .wait_mode(WaitMode::Block)
        .on_event(move |e| {
            let _ = event_tx.send(e);
        })
        .on_receive(move |m| {
            let _ = message_tx.send(String::from_utf8_lossy(m).into_owned());
        })
        .create()
        .unwrap();
    let received = || messages.recv_timeout(WAIT).expect("A received nothing");
    let mut b1 = Peer::spawn("sender-b", &name);
    b1.expect_line("attached");
    b1.tell("from-b1");
    assert_eq!(received(), "from-b1");
    b1.tell("quit");
    b1.finish();
    expect_event(&events, |e| *e == LinkEvent::PeerClosed);

    let mut b2 = Peer::spawn("sender-b", &name);
    b2.expect_line("attached");
    b2.tell("from-b2");
    assert_eq!(received(), "from-b2");
    expect_event(&events, |e| *e == LinkEvent::PeerAttached);
    b2.kill();
    expect_event(&events, |e| *e == LinkEvent::PeerDead);

    let mut b3 = Peer::spawn("sender-b", &name);
    b3.expect_line("attached");
    b3.tell("from-b3");
    assert_eq!(received(), "from-b3");
    expect_event(&events, |e| *e == LinkEvent::PeerAttached);
    assert!(a.receive_thread_running());
    assert!(a.take_receive_error().is_none());
    b3.finish();
}

/// Reads one little-endian u64 of a live segment (a test's view of a shared word).
fn read_word(name: &TestName, suffix: &str, offset: u64) -> u64 {
    let mut bytes = [0u8; 8];
    std::fs::File::open(name.path(suffix))
        .unwrap()
        .read_exact_at(&mut bytes, offset)
        .unwrap();
    u64::from_le_bytes(bytes)
}

/// Writes `closed[A]` (control block, offset 392) in both segments, as a scribbling
/// process would.
fn scribble_closed_a(name: &TestName, value: u32) {
    for suffix in [".fs.a2b", ".fs.b2a"] {
        std::fs::OpenOptions::new()
            .write(true)
            .open(name.path(suffix))
            .unwrap()
            .write_all_at(&value.to_le_bytes(), 392)
            .unwrap();
    }
}

/// B wrongly believes side A closed (A's closed flag scribbled) and retries for a long
/// time. Meanwhile B's heartbeat must keep beating (a peer across pid namespaces would
/// otherwise declare the live B dead), and once A's words show it alive again B goes on
/// over the same link instead of waiting for a generation a live A never makes.
#[test]
fn b_keeps_beating_while_it_retries_and_recovers_when_a_was_alive() {
    let name = TestName::new("rc-alive");
    let _a = start_a(&name);
    let (mut b, events) = open_b(
        &name,
        ReconnectPolicy::unlimited(),
        OnDisconnect::WaitForReconnect,
    );
    let generation = b.control().generation();
    assert_eq!(round_trip(&mut b, b"before"), generation as u8);
    scribble_closed_a(&name, 1);
    expect_event(&events, |e| *e == LinkEvent::PeerClosed);
    expect_event(&events, |e| {
        matches!(e, LinkEvent::Reconnecting { attempt: 2 })
    });
    // HEARTBEAT of B: producer block of b2a, offset 152.
    let before = read_word(&name, ".fs.b2a", 152);
    expect_event(&events, |e| {
        matches!(e, LinkEvent::Reconnecting { attempt: 5 })
    });
    let after = read_word(&name, ".fs.b2a", 152);
    assert!(
        after > before,
        "B's heartbeat stopped while it retried ({before} -> {after})"
    );
    scribble_closed_a(&name, 0);
    expect_event(&events, |e| *e == LinkEvent::PeerAttached);
    assert_eq!(b.control().generation(), generation);
    assert_eq!(round_trip(&mut b, b"after"), generation as u8);
}

#[test]
fn an_awaiting_send_waits_across_a_reconnection_and_the_reply_is_awaited_on_the_new_link() {
    use std::future::Future;
    use std::task::{Context, Poll};
    let name = TestName::new("rc-async");
    let mut a1 = start_a(&name);
    let (mut b, events) = open_b(&name, fast_retries(), OnDisconnect::WaitForReconnect);
    let gen1 = b.control().generation();
    round_trip(&mut b, b"before");
    a1.kill();
    expect_event(&events, |e| *e == LinkEvent::PeerDead);
    let (waker, woken) = common::signal::signal_waker();
    let mut cx = Context::from_waker(&waker);
    let _a2;
    {
        let mut send = std::pin::pin!(b.send_async(b"after"));
        assert!(send.as_mut().poll(&mut cx).is_pending(), "no side A yet");
        _a2 = start_a(&name);
        let deadline = Instant::now() + WAIT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            woken
                .recv_timeout(left)
                .expect("the reconnection did not wake the send");
            match send.as_mut().poll(&mut cx) {
                Poll::Ready(sent) => break sent.unwrap(),
                Poll::Pending => {}
            }
        }
    }
    let reply = futures::executor::block_on(b.recv_async()).unwrap();
    assert_eq!(&reply[1..], b"after");
    assert_ne!(u64::from(reply[0]), gen1 & 0xff, "answered on the new link");
}

#[test]
fn fail_fast_reaches_an_async_caller_as_reconnecting() {
    let name = TestName::new("rc-async-fail");
    let mut a1 = start_a(&name);
    let (mut b, events) = open_b(&name, fast_retries(), OnDisconnect::Fail);
    round_trip(&mut b, b"hello");
    a1.kill();
    expect_event(&events, |e| *e == LinkEvent::PeerDead);
    let sent = futures::executor::block_on(b.send_async(b"x"));
    assert!(matches!(sent, Err(Error::Reconnecting)), "{sent:?}");
    let received = futures::executor::block_on(b.recv_async()).map(|m| m.to_vec());
    assert!(matches!(received, Err(Error::Reconnecting)), "{received:?}");
}
