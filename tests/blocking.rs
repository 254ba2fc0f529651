//! Block mode (futex wake-ups) within one process: every sleeper is woken by the event it
//! waits for, by a close, by a mode change or by a stop, never only by its timeout.

// Test code is not model-checked: it uses std's yield (clippy.toml funnels the library's).
#![allow(clippy::disallowed_methods)]

mod common;

use std::sync::mpsc;
use std::time::{Duration, Instant};

use capnp_shm_transport::{Channel, Error, Timeout, WaitMode};
use common::TestName;

/// Far beyond any wake-up latency, far below the timeouts used: a wait that takes longer
/// than this was not woken by its event (except on a badly overloaded machine).
const WOKEN_WITHIN: Duration = Duration::from_secs(5);

/// Futex sleeps longer than any test: a lost wake-up shows as a test failure instead of
/// hiding behind the periodic re-check.
const NO_RECHECK: Duration = Duration::from_secs(60);

fn block_pair(name: &str, slot_count: usize) -> (Channel, Channel) {
    let a = Channel::builder(name)
        .slot_size(64)
        .slot_count(slot_count)
        .wait_mode(WaitMode::Block)
        .sleep_slice(NO_RECHECK)
        .create()
        .unwrap();
    let b = Channel::builder(name)
        .wait_mode(WaitMode::Block)
        .sleep_slice(NO_RECHECK)
        .open()
        .unwrap();
    (a, b)
}

/// Waits (bounded) until `word_holder` reports a sleeper, so the wake really has one.
fn until(cond: impl Fn() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(start.elapsed() < WOKEN_WITHIN, "condition never held");
        std::thread::yield_now();
    }
}

#[test]
fn block_is_the_default_and_modes_are_visible_both_ways() {
    let name = TestName::new("modes");
    let a = Channel::builder(&*name).create().unwrap();
    let b = Channel::builder(&*name)
        .poll_interval(Duration::from_micros(100))
        .open()
        .unwrap();
    assert_eq!(a.control().local_wait_mode(), WaitMode::Block);
    assert_eq!(
        a.control().remote_wait_mode(),
        WaitMode::Poll,
        "poll_interval selects Poll"
    );
    a.control().set_remote_wait_mode(WaitMode::Block);
    assert_eq!(b.control().local_wait_mode(), WaitMode::Block);
    b.control().set_local_wait_mode(WaitMode::Poll);
    assert_eq!(a.control().remote_wait_mode(), WaitMode::Poll);
}

#[test]
fn a_sleeping_receiver_is_woken_by_a_send() {
    let name = TestName::new("wake-recv");
    let (mut a, mut b) = block_pair(&name, 8);
    let (tx, rx) = mpsc::channel();
    let receiver = std::thread::spawn(move || {
        tx.send(()).unwrap();
        let start = Instant::now();
        let msg = b
            .recv(Timeout::After(Duration::from_secs(60)))
            .unwrap()
            .to_vec();
        (msg, start.elapsed())
    });
    rx.recv().unwrap();
    // Past the spin and yield phases the receiver sleeps on its futex.
    std::thread::sleep(Duration::from_millis(6)); // let it reach the futex
    a.send(b"wake up", Duration::from_secs(1)).unwrap();
    let (msg, waited) = receiver.join().unwrap();
    assert_eq!(msg, b"wake up");
    assert!(waited < WOKEN_WITHIN, "woken only after {waited:?}");
}

#[test]
fn a_sender_sleeping_on_a_full_ring_is_woken_by_a_receive() {
    let name = TestName::new("wake-send");
    let (mut a, mut b) = block_pair(&name, 2);
    a.send(b"1", Duration::ZERO).unwrap();
    a.send(b"2", Duration::ZERO).unwrap();
    let sender = std::thread::spawn(move || {
        let start = Instant::now();
        a.send(b"3", Timeout::After(Duration::from_secs(60)))
            .unwrap();
        start.elapsed()
    });
    std::thread::sleep(Duration::from_millis(6)); // let it reach the futex
    assert_eq!(&*b.recv(Duration::ZERO).unwrap(), b"1");
    let waited = sender.join().unwrap();
    assert!(waited < WOKEN_WITHIN, "woken only after {waited:?}");
    assert_eq!(&*b.recv(Duration::ZERO).unwrap(), b"2");
    assert_eq!(&*b.recv(Duration::from_secs(1)).unwrap(), b"3");
}

#[test]
fn close_wakes_a_futex_sleeper_at_once() {
    let name = TestName::new("wake-close");
    let (a, mut b) = block_pair(&name, 8);
    let receiver = std::thread::spawn(move || {
        let start = Instant::now();
        let result = b.recv(Timeout::Never).map(|m| m.len());
        (result, start.elapsed())
    });
    std::thread::sleep(Duration::from_millis(6)); // let it reach the futex
    drop(a);
    let (result, waited) = receiver.join().unwrap();
    assert!(matches!(result, Err(Error::Closed)), "{result:?}");
    assert!(waited < WOKEN_WITHIN);
}

#[test]
fn deadlines_hold_while_sleeping_on_the_futex() {
    let name = TestName::new("deadline");
    let (_a, mut b) = block_pair(&name, 8);
    let start = Instant::now();
    assert!(matches!(
        b.recv(Duration::from_millis(120)),
        Err(Error::Timeout { full: false })
    ));
    let waited = start.elapsed();
    assert!(
        waited >= Duration::from_millis(120) && waited < WOKEN_WITHIN,
        "{waited:?}"
    );
}

#[test]
fn receive_thread_in_block_mode_delivers_and_stops_promptly() {
    let name = TestName::new("thread");
    let (tx, rx) = mpsc::channel();
    let mut a = Channel::builder(&*name)
        .wait_mode(WaitMode::Block)
        .sleep_slice(NO_RECHECK)
        .create()
        .unwrap();
    let b = Channel::builder(&*name)
        .wait_mode(WaitMode::Block)
        .sleep_slice(NO_RECHECK)
        .on_receive(move |m| tx.send(m.to_vec()).unwrap())
        .open()
        .unwrap();
    for i in 0..100u8 {
        a.send(&[i], Duration::from_secs(1)).unwrap();
        assert_eq!(rx.recv_timeout(WOKEN_WITHIN).unwrap(), [i]);
        if i % 10 == 0 {
            std::thread::sleep(Duration::from_millis(1)); // let the thread fall asleep
        }
    }
    until(|| b.control().stats().incoming.used_slots == 0);
    let start = Instant::now();
    drop(b); // stop flag + futex wake: must not wait for a sleep slice, let alone forever
    assert!(start.elapsed() < WOKEN_WITHIN);
}
