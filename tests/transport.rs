//! The channel's behaviour within one process: A and B attached to the same segments.

// Test code is not model-checked: it uses std's yield (clippy.toml funnels the library's).
#![allow(clippy::disallowed_methods)]

mod common;

use std::sync::mpsc;
use std::time::{Duration, Instant};

use capnp_shm_transport::{Channel, Error, Timeout};
use common::TestName;

const WAIT: Duration = Duration::from_secs(5);

fn pair(name: &str, slot_size: usize, slot_count: usize) -> (Channel, Channel) {
    let a = Channel::builder(name)
        .slot_size(slot_size)
        .slot_count(slot_count)
        .create()
        .unwrap();
    let b = Channel::builder(name).open_timeout(WAIT).open().unwrap();
    (a, b)
}

#[test]
fn messages_flow_both_ways_in_order() {
    let name = TestName::new("both-ways");
    let (mut a, mut b) = pair(&name, 32, 4);
    for i in 0..50u8 {
        a.send(&[i; 3], WAIT).unwrap();
        assert_eq!(&*b.recv(WAIT).unwrap(), &[i; 3]);
        b.send(&[i; 32], WAIT).unwrap();
        assert_eq!(&*a.recv(WAIT).unwrap(), &[i; 32]);
    }
    a.send(b"", WAIT).unwrap();
    assert_eq!(
        b.recv(WAIT).unwrap().len(),
        0,
        "empty messages are messages"
    );
}

#[test]
fn recv_into_batch_and_send_with() {
    let name = TestName::new("variants");
    let (mut a, mut b) = pair(&name, 16, 8);
    assert_eq!(a.send_batch(&[b"one", b"two", b"three"], WAIT).unwrap(), 3);
    let mut got = Vec::new();
    assert_eq!(b.recv_batch(2, WAIT, |m| got.push(m.to_vec())).unwrap(), 2);
    assert_eq!(got, [b"one".to_vec(), b"two".to_vec()]);
    let mut buf = vec![0xAA; 100];
    assert_eq!(b.recv_into(&mut buf, WAIT).unwrap(), 5);
    assert_eq!(buf, b"three");
    a.sender()
        .send_with(WAIT, |slot| {
            slot[..4].copy_from_slice(b"made");
            Ok::<_, Error>(4)
        })
        .unwrap();
    assert_eq!(&*b.recv(WAIT).unwrap(), b"made");
    // A failing writer gets its own error back and publishes nothing.
    #[derive(Debug, PartialEq)]
    enum Mine {
        Refused,
        Transport(String),
    }
    impl From<Error> for Mine {
        fn from(e: Error) -> Self {
            Mine::Transport(e.to_string())
        }
    }
    let failed = a.sender().send_with(WAIT, |slot| {
        slot[..4].copy_from_slice(b"half");
        Err::<usize, _>(Mine::Refused)
    });
    assert_eq!(failed, Err(Mine::Refused));
    assert!(matches!(
        b.recv(Duration::ZERO),
        Err(Error::Timeout { full: false })
    ));
    // A length above the slot size is the transport's error, converted; nothing is sent.
    let too_long = a
        .sender()
        .send_with(WAIT, |slot| Ok::<_, Mine>(slot.len() + 1));
    assert!(matches!(too_long, Err(Mine::Transport(_))), "{too_long:?}");
    assert!(matches!(
        a.sender()
            .send_with(WAIT, |slot| Ok::<_, Error>(slot.len() + 1)),
        Err(Error::MessageTooLarge {
            len: 17,
            max_len: 16
        })
    ));
    a.send(b"after", WAIT).unwrap();
    assert_eq!(&*b.recv(WAIT).unwrap(), b"after", "the ring is intact");
}

#[test]
fn full_and_empty_rings_time_out() {
    let name = TestName::new("timeouts");
    let (mut a, mut b) = pair(&name, 8, 2);
    assert!(matches!(
        b.recv(Duration::ZERO),
        Err(Error::Timeout { full: false })
    ));
    let start = Instant::now();
    assert!(matches!(
        b.recv(Duration::from_millis(20)),
        Err(Error::Timeout { full: false })
    ));
    assert!(start.elapsed() >= Duration::from_millis(20));
    a.send(b"1", Duration::ZERO).unwrap();
    a.send(b"2", Duration::ZERO).unwrap();
    assert!(matches!(
        a.send(b"3", Duration::ZERO),
        Err(Error::Timeout { full: true })
    ));
    assert!(matches!(
        a.send(b"3", Duration::from_millis(20)),
        Err(Error::Timeout { full: true })
    ));
    assert_eq!(
        a.send_batch(&[b"3"], Duration::ZERO)
            .unwrap_err()
            .to_string(),
        "timed out: the ring stayed full for the whole timeout"
    );
    drop(b.recv(WAIT).unwrap());
    a.send(b"3", Duration::ZERO).unwrap();
}

#[test]
fn oversized_message_is_refused() {
    let name = TestName::new("too-large");
    let (mut a, mut b) = pair(&name, 8, 2);
    // The first slot's 8 bytes, then one whole slot (its 64-byte stride).
    assert_eq!(a.sender().max_message_len(), 8 + 64);
    let err = a.send(&[0; 73], WAIT).unwrap_err();
    assert!(
        matches!(
            err,
            Error::MessageTooLarge {
                len: 73,
                max_len: 72
            }
        ),
        "{err}"
    );
    assert!(
        matches!(b.recv(Duration::ZERO), Err(Error::Timeout { .. })),
        "nothing was published"
    );
}

#[test]
fn invalid_arguments_are_typed_errors() {
    let name = TestName::new("invalid");
    let cases: Vec<(&str, Result<Channel, Error>)> = vec![
        (
            "slot_count",
            Channel::builder(&*name).slot_count(3).create(),
        ),
        (
            "slot_count",
            Channel::builder(&*name).slot_count(0).create(),
        ),
        ("slot_size", Channel::builder(&*name).slot_size(0).create()),
        (
            "slot_size",
            Channel::builder(&*name).slot_size(usize::MAX).create(),
        ),
        ("name", Channel::builder("a/b").create()),
        ("name", Channel::builder("").create()),
        ("name", Channel::builder("x".repeat(300)).create()),
        ("name", Channel::builder("a/b").open()),
        (
            "poll_interval",
            Channel::builder(&*name)
                .poll_interval(Duration::from_secs(2))
                .create(),
        ),
        ("burst", Channel::builder(&*name).burst(0).create()),
    ];
    for (what, result) in cases {
        match result {
            Err(Error::InvalidArgument { what: w, .. }) => assert_eq!(w, what),
            Err(other) => panic!("expected invalid {what}, got {other}"),
            Ok(_) => panic!("expected invalid {what}, got a channel"),
        }
    }
    assert!(
        !name.path(".fs.a2b").exists(),
        "a refused create leaves nothing behind"
    );
}

#[test]
fn open_times_out_cleanly_when_a_never_comes() {
    let name = TestName::new("never");
    let start = Instant::now();
    let err = Channel::builder(&*name)
        .open_timeout(Duration::from_millis(50))
        .open()
        .err()
        .expect("nobody created it");
    assert!(
        matches!(&err, Error::NotFound { name: n, .. } if *n == *name),
        "{err}"
    );
    assert!(start.elapsed() >= Duration::from_millis(50));
    assert!(err.to_string().contains("did not appear"));
    assert!(matches!(
        Channel::builder(&*name)
            .open_timeout(Timeout::Immediate)
            .open(),
        Err(Error::NotFound { .. })
    ));
}

#[test]
fn poll_intervals_are_live_and_visible_from_both_sides() {
    let name = TestName::new("poll");
    let a = Channel::builder(&*name)
        .poll_interval(Duration::from_micros(250))
        .create()
        .unwrap();
    let b = Channel::builder(&*name)
        .poll_interval(Duration::from_micros(40))
        .open()
        .unwrap();
    assert_eq!(
        a.control().local_poll_interval(),
        Duration::from_micros(250)
    );
    assert_eq!(
        a.control().remote_poll_interval(),
        Duration::from_micros(40)
    );
    assert_eq!(
        b.control().remote_poll_interval(),
        Duration::from_micros(250)
    );
    a.control()
        .set_remote_poll_interval(Duration::from_micros(1000))
        .unwrap();
    assert_eq!(
        b.control().local_poll_interval(),
        Duration::from_micros(1000)
    );
    b.control().set_local_poll_interval(Duration::ZERO).unwrap();
    assert_eq!(a.control().remote_poll_interval(), Duration::ZERO);
    assert!(matches!(
        a.control().set_local_poll_interval(Duration::from_secs(5)),
        Err(Error::InvalidArgument {
            what: "poll_interval",
            ..
        })
    ));
}

#[test]
fn stats_count_both_directions() {
    let name = TestName::new("stats");
    let (mut a, mut b) = pair(&name, 64, 8);
    assert!(a.control().is_creator() && !b.control().is_creator());
    assert_eq!((a.control().slot_size(), a.control().slot_count()), (64, 8));
    for len in [10, 20, 30] {
        a.send(&vec![1; len], WAIT).unwrap();
    }
    drop(b.recv(WAIT).unwrap());
    let s = a.control().stats();
    assert_eq!(s.outgoing.messages_sent, 3);
    assert_eq!(s.outgoing.bytes_sent, 60);
    assert_eq!(s.outgoing.messages_received, 1);
    assert_eq!(s.outgoing.bytes_received, 10);
    assert_eq!(s.outgoing.used_slots, 2);
    assert!(!s.outgoing.producer_closed);
    assert_eq!(
        b.control().stats().incoming,
        s.outgoing,
        "both sides see the same ring"
    );
    assert_eq!(s.incoming.messages_sent, 0);
    drop(a);
    assert!(b.control().stats().incoming.producer_closed);
    assert!(b.control().peer_closed());
}

#[test]
fn callback_thread_drains_in_order_and_owns_the_receiver() {
    let name = TestName::new("callback");
    let (tx, rx) = mpsc::channel();
    let mut a = Channel::builder(&*name)
        .slot_size(16)
        .slot_count(8)
        .poll_interval(Duration::from_micros(50))
        .create()
        .unwrap();
    let mut b = Channel::builder(&*name)
        .on_receive(move |m| tx.send(u32::from_le_bytes(m.try_into().unwrap())).unwrap())
        .burst(3)
        .open()
        .unwrap();
    assert!(b.receive_thread_running());
    assert!(matches!(b.recv(Duration::ZERO), Err(Error::ReceiverInUse)));
    for i in 0..1000u32 {
        a.send(&i.to_le_bytes(), WAIT).unwrap();
    }
    for i in 0..1000u32 {
        assert_eq!(rx.recv_timeout(WAIT).unwrap(), i);
    }
    drop(a); // the thread delivers everything, sees the close and ends
    let start = Instant::now();
    while b.receive_thread_running() {
        assert!(
            start.elapsed() < WAIT,
            "receive thread did not end after the peer closed"
        );
        std::thread::yield_now();
    }
    assert!(b.take_receive_error().is_none());
    assert!(
        matches!(b.send(b"x", WAIT), Err(Error::Closed)),
        "a send to a closed peer fails rather than vanish into its ring"
    );
}

#[test]
fn close_is_reported_after_pending_messages() {
    let name = TestName::new("close");
    let (mut a, mut b) = pair(&name, 8, 4);
    b.send(b"last", WAIT).unwrap();
    drop(b);
    assert_eq!(
        &*a.recv(WAIT).unwrap(),
        b"last",
        "messages sent before closing arrive"
    );
    assert!(matches!(a.recv(WAIT), Err(Error::Closed)));
    // A send that must wait for space reports the close instead of waiting.
    for _ in 0..4 {
        let _ = a.send(b"x", Duration::ZERO);
    }
    let start = Instant::now();
    assert!(matches!(a.send(b"x", Timeout::Never), Err(Error::Closed)));
    assert!(start.elapsed() < WAIT);
}

#[test]
fn close_unblocks_a_waiting_receiver_in_sleep_mode() {
    let name = TestName::new("close-sleep");
    let a = Channel::builder(&*name).create().unwrap();
    let mut b = Channel::builder(&*name)
        .poll_interval(Duration::from_millis(1))
        .open()
        .unwrap();
    let (started_tx, started_rx) = mpsc::channel();
    let waiter = std::thread::spawn(move || {
        started_tx.send(()).unwrap();
        b.recv(Timeout::Never).map(|m| m.len())
    });
    started_rx.recv_timeout(WAIT).unwrap();
    drop(a);
    let result = waiter.join().unwrap();
    assert!(matches!(result, Err(Error::Closed)), "{result:?}");
}

#[test]
fn creator_removes_stale_segments_and_its_own_on_drop() {
    let name = TestName::new("stale");
    common::write_segment(name.path(".fs.a2b"), b"stale junk").unwrap();
    common::write_segment(name.path(".fs.b2a"), b"").unwrap();
    let a = Channel::builder(&*name).create().unwrap();
    let b = Channel::builder(&*name).open().unwrap();
    assert!(name.path(".fs.a2b").exists() && name.path(".fs.b2a").exists());
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(name.path(".fs.a2b"))
            .unwrap()
            .permissions(),
    );
    assert_eq!(mode & 0o777, 0o600);
    drop(a);
    assert!(!name.path(".fs.a2b").exists() && !name.path(".fs.b2a").exists());
    drop(b);
    assert!(!capnp_shm_transport::remove_channel(&name).unwrap());
}

#[test]
fn split_halves_work_from_two_threads() {
    let name = TestName::new("split");
    let (a, b) = pair(&name, 64, 16);
    // Three threads on a 2-core CI machine: sleep when idle rather than spin.
    a.control()
        .set_local_poll_interval(Duration::from_micros(20))
        .unwrap();
    a.control()
        .set_remote_poll_interval(Duration::from_micros(20))
        .unwrap();
    let (mut a_tx, mut a_rx) = a.split().unwrap();
    let (mut b_tx, mut b_rx) = b.split().unwrap();
    const N: u64 = 20_000;
    let echo = std::thread::spawn(move || {
        for _ in 0..N {
            let msg = b_rx.recv(WAIT).unwrap().to_vec();
            b_tx.send(&msg, WAIT).unwrap();
        }
    });
    let producer = std::thread::spawn(move || {
        for i in 0..N {
            a_tx.send(&i.to_le_bytes(), WAIT).unwrap();
        }
    });
    for i in 0..N {
        assert_eq!(&*a_rx.recv(WAIT).unwrap(), &i.to_le_bytes());
    }
    producer.join().unwrap();
    echo.join().unwrap();
}

#[test]
fn inspect_and_list_show_a_channel_without_attaching() {
    use capnp_shm_transport::inspect::{inspect_channel, list_channels};
    let name = TestName::new("inspect");
    assert!(matches!(
        inspect_channel(&name),
        Err(Error::NotFound { .. })
    ));
    let mut a = Channel::builder(&*name)
        .slot_size(32)
        .slot_count(8)
        .poll_interval(Duration::from_micros(70))
        .create()
        .unwrap();
    let info = inspect_channel(&name).unwrap();
    assert!(info.a_attached() && !info.b_attached());
    let mut b = Channel::builder(&*name).open().unwrap();
    a.send(b"abc", WAIT).unwrap();
    a.send(b"de", WAIT).unwrap();
    drop(b.recv(WAIT).unwrap());
    b.control()
        .set_remote_poll_interval(Duration::from_micros(900))
        .unwrap();
    let info = inspect_channel(&name).unwrap();
    assert!(info.a_attached() && info.b_attached());
    assert!(list_channels().unwrap().contains(&name.0));
    assert_eq!(info.generation, a.control().generation());
    assert_eq!(info.creator_pid, std::process::id());
    assert_eq!((info.geometry.slot_size, info.geometry.slot_count), (32, 8));
    assert_eq!(
        (info.a2b.head, info.a2b.tail, info.a2b.used_slots),
        (2, 1, 1)
    );
    assert_eq!((info.a2b.bytes_sent, info.a2b.bytes_received), (5, 3));
    assert_eq!(info.poll_us, [900, 0]);
    assert_eq!(info.closed, [false, false]);
    drop(b);
    assert!(inspect_channel(&name).unwrap().closed[1]);
}
