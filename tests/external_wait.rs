//! `Receiver::announce_sleep`: a futex waiter of the caller's own (here a plain
//! `FUTEX_WAIT` on another thread, as io_uring's would be) on the announced word is woken
//! by the peer's ordinary send, and by the peer's departure; with a message there, no
//! sleep is announced.

// Test code reads the shared word with std's atomics directly.
#![allow(clippy::disallowed_types)]

mod common;

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use capnp_shm_transport::{
    Announced, Channel, LinkEvent, OnDisconnect, Receiver, ReconnectPolicy, SleepWord, Timeout,
    WaitMode,
};
use common::TestName;

/// Longer than any wake-up takes: a wait that lasts this long was not woken.
const NOT_WOKEN: Duration = Duration::from_secs(10);

fn pair(name: &str) -> (Channel, Channel) {
    let a = Channel::builder(name).slot_size(64).create().unwrap();
    let b = Channel::builder(name)
        .open_timeout(Duration::from_secs(5))
        .open()
        .unwrap();
    (a, b)
}

/// A `FUTEX_WAIT` on the word while it holds `SleepWord::VALUE` (shared, not private),
/// up to [`NOT_WOKEN`], on a thread of its own; how long it lasted.
fn wait_on(word: &SleepWord) -> std::thread::JoinHandle<Duration> {
    let addr = word.futex_addr() as usize;
    std::thread::spawn(move || {
        let start = Instant::now();
        let timeout = libc::timespec {
            tv_sec: NOT_WOKEN.as_secs() as libc::time_t,
            tv_nsec: 0,
        };
        // SAFETY: the word stays mapped while the caller holds its `SleepWord`, which it
        // does until this thread is joined; FUTEX_WAIT only reads it.
        unsafe {
            libc::syscall(
                libc::SYS_futex,
                addr as *const u32,
                libc::FUTEX_WAIT,
                SleepWord::VALUE,
                &timeout as *const libc::timespec,
            )
        };
        start.elapsed()
    })
}

/// The word's value now.
fn value(word: &SleepWord) -> u32 {
    // SAFETY: the word is a mapped, aligned u32 while `word` lives; read atomically.
    unsafe { &*(word.futex_addr() as *const AtomicU32) }.load(Ordering::SeqCst)
}

fn announced(rx: &mut Receiver) -> SleepWord {
    match rx.announce_sleep().unwrap() {
        Announced::Sleep(word) => word,
        Announced::Ready => panic!("ready with nothing sent"),
        Announced::NotBlockMode => panic!("not block mode"),
        Announced::Reconnecting => panic!("reconnecting"),
    }
}

#[test]
fn a_send_wakes_a_waiter_on_the_announced_word() {
    let name = TestName::new("ext-wait-send");
    let (a, b) = pair(&name);
    let (mut tx, _) = a.split().unwrap();
    let (_, mut rx) = b.split().unwrap();
    let word = announced(&mut rx);
    assert_eq!(value(&word), SleepWord::VALUE, "no sleep announced");
    let waiter = wait_on(&word);
    tx.send(b"wake", Timeout::Immediate).unwrap();
    // The sender saw the announcement: it took it back and woke the word.
    assert_eq!(value(&word), 0, "the sender did not see the announcement");
    let waited = waiter.join().unwrap();
    assert!(
        waited < NOT_WOKEN,
        "the send did not wake the word's waiter"
    );
    word.done();
    assert!(matches!(rx.announce_sleep().unwrap(), Announced::Ready));
    assert_eq!(&*rx.recv(Timeout::Immediate).unwrap(), b"wake");
}

#[test]
fn the_peers_departure_wakes_a_waiter_on_the_announced_word() {
    let name = TestName::new("ext-wait-close");
    let (a, b) = pair(&name);
    let (_, mut rx) = b.split().unwrap();
    let word = announced(&mut rx);
    let waiter = wait_on(&word);
    drop(a);
    let waited = waiter.join().unwrap();
    assert!(
        waited < NOT_WOKEN,
        "the close did not wake the word's waiter"
    );
    word.done();
    // The next announcement reports the departure (as a receive would).
    assert!(matches!(
        rx.announce_sleep(),
        Err(capnp_shm_transport::Error::Closed)
    ));
}

#[test]
fn nothing_is_announced_with_a_message_there_or_in_poll_mode() {
    let name = TestName::new("ext-wait-ready");
    let (a, b) = pair(&name);
    let (mut tx, _) = a.split().unwrap();
    tx.send(b"there", Timeout::Immediate).unwrap();
    let (_, mut rx) = b.split().unwrap();
    assert!(matches!(rx.announce_sleep().unwrap(), Announced::Ready));
    assert_eq!(&*rx.recv(Timeout::Immediate).unwrap(), b"there");
    rx.control().set_local_wait_mode(WaitMode::Poll);
    assert!(matches!(
        rx.announce_sleep().unwrap(),
        Announced::NotBlockMode
    ));
}

#[test]
fn a_receiver_waiting_for_a_reconnection_is_told_so_not_put_to_sleep() {
    let name = TestName::new("ext-wait-reconnect");
    let a = Channel::builder(&*name).slot_size(64).create().unwrap();
    let (events_tx, events) = std::sync::mpsc::channel();
    let b = Channel::builder(&*name)
        .wait_mode(WaitMode::Block)
        .reconnect(ReconnectPolicy {
            retry_interval: Duration::from_millis(10),
            ..ReconnectPolicy::default()
        })
        .on_disconnect(OnDisconnect::WaitForReconnect)
        .on_event(move |e| {
            let _ = events_tx.send(e);
        })
        .open_timeout(Duration::from_secs(5))
        .open()
        .unwrap();
    let (_, mut rx) = b.split().unwrap();
    drop(a);
    let deadline = Instant::now() + NOT_WOKEN;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let event = events.recv_timeout(left).expect("no departure reported");
        if event == LinkEvent::PeerClosed {
            break;
        }
    }
    // No word announces a reconnection: the caller must wait another way.
    assert!(matches!(
        rx.announce_sleep().unwrap(),
        Announced::Reconnecting
    ));
}
