//! A side killed between the two stores of its `closed` flag. The control block is
//! mirrored in both segments, so such a side leaves the two copies disagreeing. Whichever
//! copy it managed to write, the survivor's monitor (its `on_event`) and its blocked send
//! and receive must agree that the peer is closed, or that it is dead, and the calls must
//! return at once, not at their timeout.

// Test code is not model-checked: it uses std's atomics (clippy.toml funnels the library's).
#![allow(clippy::disallowed_types)]

mod common;

use std::fs::OpenOptions;
use std::os::unix::fs::FileExt;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use capnp_shm_transport::{Channel, Error, LinkEvent, PeerState, Side, WaitMode};
use common::peer::{read_stdin_line, say, Peer};
use common::TestName;

const WAIT: Duration = Duration::from_secs(20);
/// The blocked calls' own timeout: a call that only returns at it has missed the peer.
const CALL_TIMEOUT: Duration = Duration::from_secs(10);
/// `closed[side]` in a header's control block (docs/LAYOUT.md).
const CLOSED: u64 = 392;

#[test]
fn child_process_entry() {
    let Some((role, name)) = common::peer::role() else {
        return;
    };
    match role.as_str() {
        "idle-a" => {
            let _a = builder(&name).create().unwrap();
            say("ready");
            read_stdin_line();
        }
        "idle-b" => {
            let _b = builder(&name).open_timeout(WAIT).open().unwrap();
            say("ready");
            read_stdin_line();
        }
        other => panic!("unknown role {other}"),
    }
}

fn builder(name: &str) -> capnp_shm_transport::ChannelBuilder {
    Channel::builder(name)
        .slot_size(16)
        .slot_count(4)
        .wait_mode(WaitMode::Block)
}

/// The peer (`dying`) attaches, the survivor fills its outgoing ring and blocks in a send
/// and in a receive; then the peer's `closed` flag is set in the `copy` segment only (its
/// first store of a close) and the peer is killed before the second.
fn killed_between_the_two_stores(dying: Side, copy: &str) {
    let name = TestName::new(&format!("half-closed-{dying:?}{copy}"));
    let (role, survivor_side) = match dying {
        Side::A => ("idle-a", Side::B),
        Side::B => ("idle-b", Side::A),
    };
    let (tx, events) = mpsc::channel();
    let on_event = move |e| {
        let _ = tx.send(e);
    };
    let (mut peer, survivor) = if survivor_side == Side::A {
        let a = builder(&name).on_event(on_event).create().unwrap();
        let mut peer = Peer::spawn(role, &name);
        peer.expect_line("ready");
        (peer, a)
    } else {
        let mut peer = Peer::spawn(role, &name);
        peer.expect_line("ready");
        let b = builder(&name)
            .on_event(on_event)
            .open_timeout(WAIT)
            .open()
            .unwrap();
        (peer, b)
    };
    assert_eq!(survivor.control().peer_state(), PeerState::Alive);
    let control = survivor.control().clone();
    let (mut sender, mut receiver) = survivor.split().unwrap();
    while sender.send(b"fill", Duration::ZERO).is_ok() {}
    let blocked_send = std::thread::spawn(move || {
        let started = Instant::now();
        (
            sender.send(b"blocked", CALL_TIMEOUT).err(),
            started.elapsed(),
        )
    });
    let blocked_recv = std::thread::spawn(move || {
        let started = Instant::now();
        (receiver.recv(CALL_TIMEOUT).err(), started.elapsed())
    });

    let file = OpenOptions::new()
        .write(true)
        .open(name.path(copy))
        .unwrap();
    file.write_all_at(&1u32.to_le_bytes(), CLOSED + 4 * dying as u64)
        .unwrap();
    peer.kill();
    drop(peer); // reaped

    let deadline = Instant::now() + WAIT;
    let event = loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let e = events
            .recv_timeout(left)
            .expect("no PeerDead or PeerClosed event");
        if matches!(e, LinkEvent::PeerDead | LinkEvent::PeerClosed) {
            break e;
        }
    };
    let seen_closed = event == LinkEvent::PeerClosed;
    for (what, call) in [("send", blocked_send), ("recv", blocked_recv)] {
        let (error, took) = call.join().unwrap();
        let error = error.unwrap_or_else(|| panic!("{what} succeeded"));
        assert!(
            matches!(error, Error::Closed | Error::PeerDead),
            "blocked {what} ended with {error:?} after {took:?}, not seeing the peer gone"
        );
        assert_eq!(
            matches!(error, Error::Closed),
            seen_closed,
            "the monitor reported {event:?} but a blocked {what} saw {error:?}"
        );
    }
    let expected_state = if seen_closed {
        PeerState::Closed
    } else {
        PeerState::Dead
    };
    assert_eq!(control.peer_state(), expected_state);
}

#[test]
fn b_killed_after_storing_closed_in_b2a_only() {
    killed_between_the_two_stores(Side::B, ".fs.b2a");
}

#[test]
fn b_killed_after_storing_closed_in_a2b_only() {
    killed_between_the_two_stores(Side::B, ".fs.a2b");
}

#[test]
fn a_killed_after_storing_closed_in_b2a_only() {
    killed_between_the_two_stores(Side::A, ".fs.b2a");
}

#[test]
fn a_killed_after_storing_closed_in_a2b_only() {
    killed_between_the_two_stores(Side::A, ".fs.a2b");
}
