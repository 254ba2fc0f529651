//! Each side of a channel has one owner at a time: a second opener of side B and a second
//! creator over a live side A are refused with an error naming the owner, a dead owner is
//! taken over, and staleness is judged from the owner's lock, which no scribbled word in
//! the segment can fake.

mod common;

use std::os::unix::fs::FileExt;
use std::sync::mpsc;
use std::time::Duration;

use capnp_shm_transport::inspect::{inspect_channel, list_channels, remove_stale_channels};
use capnp_shm_transport::{Channel, Error, LinkEvent, PeerState};
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
        "idle-a" => {
            let _a = Channel::builder(name)
                .slot_size(64)
                .slot_count(8)
                .create()
                .unwrap();
            say("created");
            read_stdin_line();
        }
        "idle-b" => {
            let _b = Channel::builder(name).open_timeout(WAIT).open().unwrap();
            say("attached");
            read_stdin_line();
        }
        other => panic!("unknown role {other}"),
    }
}

fn start(role: &str, name: &str, line: &str) -> Peer {
    let mut peer = Peer::spawn(role, name);
    peer.expect_line(line);
    peer
}

/// Asserts that `result` is the refusal of a side held by `pid`.
fn assert_in_use(result: Result<Channel, Error>, side: &str, pid: u32) {
    match result {
        Err(Error::SideInUse {
            side: s, pid: p, ..
        }) => {
            assert_eq!((s, p), (side, pid), "the error names the owner");
        }
        Err(e) => panic!("expected SideInUse for side {side} (pid {pid}), got: {e}"),
        Ok(_) => panic!("a second owner of side {side} was let in (owner pid {pid})"),
    }
}

#[test]
fn a_second_open_of_side_b_in_one_process_is_refused() {
    let name = TestName::new("excl-b1");
    let mut a = Channel::builder(&*name).slot_count(8).create().unwrap();
    let mut b = Channel::builder(&*name).open().unwrap();
    assert_in_use(Channel::builder(&*name).open(), "B", std::process::id());
    // The first B is undisturbed.
    a.send(b"still mine", WAIT).unwrap();
    assert_eq!(&*b.recv(WAIT).unwrap(), b"still mine");
    // Once it closes, the side is free again.
    drop(b);
    let mut b2 = Channel::builder(&*name).open().unwrap();
    a.send(b"second owner", WAIT).unwrap();
    assert_eq!(&*b2.recv(WAIT).unwrap(), b"second owner");
}

#[test]
fn a_second_open_of_side_b_from_another_process_is_refused_until_the_owner_dies() {
    let name = TestName::new("excl-b2");
    let (tx, events) = mpsc::channel();
    let mut a = Channel::builder(&*name)
        .slot_count(8)
        .on_event(move |e| {
            let _ = tx.send(e);
        })
        .create()
        .unwrap();
    let owner = start("idle-b", &name, "attached");
    assert_in_use(Channel::builder(&*name).open(), "B", owner.pid());
    owner.kill_and_reap();
    assert_eq!(events.recv_timeout(WAIT), Ok(LinkEvent::PeerDead));
    // The kernel dropped the dead owner's lock: a new opener takes the side over, and A's
    // sends go on once its monitor has seen the new B (within one liveness round).
    let mut b = Channel::builder(&*name).open().unwrap();
    assert_eq!(events.recv_timeout(WAIT), Ok(LinkEvent::PeerAttached));
    a.send(b"taken over", WAIT).unwrap();
    assert_eq!(&*b.recv(WAIT).unwrap(), b"taken over");
}

#[test]
fn a_second_create_over_a_live_channel_is_refused_unless_replacing() {
    let name = TestName::new("excl-a");
    let creator = start("idle-a", &name, "created");
    assert_in_use(Channel::builder(&*name).create(), "A", creator.pid());
    // Refused means untouched: the live creator's channel still opens.
    let info = inspect_channel(&name).unwrap();
    assert!(info.a_attached() && !info.creator_gone);
    // Asked explicitly, the caller replaces it.
    let mut a = Channel::builder(&*name)
        .replace_live(true)
        .create()
        .unwrap();
    assert_ne!(a.control().generation(), info.generation);
    let mut b = Channel::builder(&*name).open().unwrap();
    a.send(b"replaced", WAIT).unwrap();
    assert_eq!(&*b.recv(WAIT).unwrap(), b"replaced");
    drop((a, b));
    // A dead creator's channel is replaced without asking, as before.
    let creator = start("idle-a", &name, "created");
    creator.kill_and_reap();
    Channel::builder(&*name).create().unwrap();
}

/// Writes `bytes` at `offset` into segment `path` (through the file: the same pages the
/// peers map).
fn scribble(path: &std::path::Path, offset: u64, bytes: &[u8]) {
    let file = std::fs::OpenOptions::new().write(true).open(path).unwrap();
    file.write_all_at(bytes, offset).unwrap();
}

/// Offset of the pid word in a header's producer block (docs/LAYOUT.md).
const PRODUCER_PID: u64 = 144;

#[test]
fn a_scribbled_pid_does_not_make_a_live_creator_stale_or_dead() {
    let name = TestName::new("excl-pid");
    let _creator = start("idle-a", &name, "created");
    let (tx, events) = mpsc::channel();
    let b = Channel::builder(&*name)
        .on_event(move |e| {
            let _ = tx.send(e);
        })
        .open()
        .unwrap();
    assert_eq!(b.control().peer_state(), PeerState::Alive);
    // A pid no process has (above the kernel's limit of 2^22).
    scribble(
        &name.path(".fs.a2b"),
        PRODUCER_PID,
        &0x3fff_fff0u32.to_le_bytes(),
    );
    let info = inspect_channel(&name).unwrap();
    assert!(!info.creator_gone && info.a_attached(), "{info:?}");
    let removed = remove_stale_channels().unwrap();
    assert!(!removed.contains(&name.0), "a live channel was removed");
    assert!(list_channels().unwrap().contains(&name.0));
    // Many monitor periods (25 ms each): B never calls the live A dead.
    match events.recv_timeout(Duration::from_millis(500)) {
        Err(mpsc::RecvTimeoutError::Timeout) => {}
        other => panic!("B reported {other:?} for a live A"),
    }
    assert_eq!(b.control().peer_state(), PeerState::Alive);
    assert_ne!(events.try_recv().ok(), Some(LinkEvent::PeerDead));
}

#[test]
fn unreadable_channels_are_removed_when_their_creator_is_dead_and_kept_while_it_lives() {
    let truncated = TestName::new("excl-trunc");
    let garbage = TestName::new("excl-garbage");
    let live = TestName::new("excl-live");
    for name in [&truncated, &garbage] {
        start("idle-a", name, "created").kill_and_reap();
    }
    std::fs::OpenOptions::new()
        .write(true)
        .open(truncated.path(".fs.a2b"))
        .unwrap()
        .set_len(100)
        .unwrap();
    scribble(&garbage.path(".fs.a2b"), 0, &[0xa5; 512]);
    let live_creator = start("idle-a", &live, "created");
    scribble(&live.path(".fs.a2b"), 0, &[0xa5; 8]);
    for name in [&truncated, &garbage, &live] {
        assert!(inspect_channel(name).is_err(), "{} reads as valid", name.0);
    }
    let removed = remove_stale_channels().unwrap();
    for name in [&truncated, &garbage] {
        assert!(removed.contains(&name.0), "{} kept: {removed:?}", name.0);
        assert!(!name.path(".fs.a2b").exists() && !name.path(".fs.b2a").exists());
    }
    assert!(
        !removed.contains(&live.0),
        "a live creator's channel was removed"
    );
    assert!(live.path(".fs.a2b").exists() && live.path(".fs.b2a").exists());
    drop(live_creator);
}
