//! The async calls (`recv_async`, `send_async`, typed variants) under two executors
//! (futures' `block_on` and tokio), their wake-up after idle, cancellation without loss,
//! and the typed errors a departed peer gives an awaiting caller.

// Test code is not model-checked: std's thread calls directly.
#![allow(clippy::disallowed_methods)]

mod common;
#[path = "common/demo_capnp.rs"]
mod demo_capnp;

use std::future::Future;
use std::pin::pin;
use std::sync::mpsc;
use std::task::{Context, Poll};
use std::time::Duration;

use capnp_shm_transport::{Channel, Error, Receiver, RecvMessage, Sender, Timeout, WaitMode};
use common::peer::{read_stdin_line, say, Peer};
use common::signal::{poll_until_parked, signal_waker};
use common::TestName;

const WAIT: Duration = Duration::from_secs(30);

#[test]
fn child_process_entry() {
    let Some((role, name)) = common::peer::role() else {
        return;
    };
    match role.as_str() {
        "idle-a" => {
            let _a = Channel::builder(&name).slot_size(64).create().unwrap();
            say("created");
            read_stdin_line();
        }
        other => panic!("unknown role {other}"),
    }
}

/// Runs `f` on a thread and fails the test if it does not finish within `WAIT` (so an
/// async call that never wakes fails instead of hanging).
fn within<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.recv_timeout(WAIT)
        .expect("the async call never finished")
}

fn pair(name: &str, slot_size: usize, slot_count: usize) -> (Sender, Receiver, Sender, Receiver) {
    let a = Channel::builder(name)
        .slot_size(slot_size)
        .slot_count(slot_count)
        .wait_mode(WaitMode::Block)
        .create()
        .unwrap();
    let b = Channel::builder(name)
        .wait_mode(WaitMode::Block)
        .open_timeout(WAIT)
        .open()
        .unwrap();
    let (a_tx, a_rx) = a.split().unwrap();
    let (b_tx, b_rx) = b.split().unwrap();
    (a_tx, a_rx, b_tx, b_rx)
}

/// Side B echoes `n` messages back, awaiting each.
async fn echo(tx: &mut Sender, rx: &mut Receiver, n: usize) -> Result<(), Error> {
    for _ in 0..n {
        let msg = rx.recv_async().await?.to_vec();
        tx.send_async(&msg).await?;
    }
    Ok(())
}

/// Side A sends `n` numbered messages of growing length (some longer than a slot) and
/// checks each echo.
async fn ping(tx: &mut Sender, rx: &mut Receiver, n: usize) -> Result<(), Error> {
    for i in 0..n {
        let msg: Vec<u8> = (0..(i % 300) + 8).map(|j| (i + j) as u8).collect();
        tx.send_async(&msg).await?;
        assert_eq!(&*rx.recv_async().await?, &msg[..], "echo {i}");
    }
    Ok(())
}

#[test]
fn round_trips_under_futures_block_on() {
    let name = TestName::new("async-futures");
    let (mut a_tx, mut a_rx, mut b_tx, mut b_rx) = pair(&name, 64, 8);
    let n = 2000;
    let b = std::thread::spawn(move || futures::executor::block_on(echo(&mut b_tx, &mut b_rx, n)));
    within(move || futures::executor::block_on(ping(&mut a_tx, &mut a_rx, n))).unwrap();
    b.join().unwrap().unwrap();
}

#[test]
fn round_trips_under_tokio_on_one_and_on_many_threads() {
    for threads in [1, 4] {
        let name = TestName::new("async-tokio");
        let (mut a_tx, mut a_rx, mut b_tx, mut b_rx) = pair(&name, 64, 8);
        let rt = if threads == 1 {
            tokio::runtime::Builder::new_current_thread()
                .build()
                .unwrap()
        } else {
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(threads)
                .build()
                .unwrap()
        };
        let n = 2000;
        within(move || {
            rt.block_on(async move {
                let b = tokio::spawn(async move { echo(&mut b_tx, &mut b_rx, n).await });
                ping(&mut a_tx, &mut a_rx, n).await.unwrap();
                b.await.unwrap().unwrap();
            })
        });
    }
}

#[test]
fn a_parked_recv_is_woken_by_the_next_message_and_gets_it() {
    let name = TestName::new("async-wake");
    let (mut a_tx, _a_rx, _b_tx, mut b_rx) = pair(&name, 64, 8);
    let (waker, woken) = signal_waker();
    let mut cx = Context::from_waker(&waker);
    let mut fut = pin!(b_rx.recv_async());
    // Nothing there: the future spins, then parks its task with the waiter thread.
    poll_until_parked(fut.as_mut(), &waker, &woken);
    assert!(woken.try_recv().is_err(), "woken with nothing sent");
    a_tx.send(b"after idle", WAIT).unwrap();
    woken
        .recv_timeout(WAIT)
        .expect("the message did not wake the task");
    match fut.as_mut().poll(&mut cx) {
        Poll::Ready(Ok(msg)) => assert_eq!(&*msg, b"after idle"),
        Poll::Ready(Err(e)) => panic!("{e}"),
        Poll::Pending => panic!("woken, but no message"),
    };
}

#[test]
fn dropping_a_parked_recv_loses_no_message() {
    let name = TestName::new("async-cancel-recv");
    let (mut a_tx, _a_rx, _b_tx, mut b_rx) = pair(&name, 64, 8);
    let (waker, woken) = signal_waker();
    for i in 0u8..20 {
        {
            let mut fut = pin!(b_rx.recv_async());
            poll_until_parked(fut.as_mut(), &waker, &woken);
        } // dropped while parked
        a_tx.send(&[i], WAIT).unwrap();
        assert_eq!(&*b_rx.recv(WAIT).unwrap(), &[i], "message {i} was lost");
    }
    // A withdrawn job wakes nobody, even when what it waited for happens. (Absence of a
    // wake can only be watched for a while: a stale job wakes within microseconds.)
    {
        let mut fut = pin!(b_rx.recv_async());
        poll_until_parked(fut.as_mut(), &waker, &woken);
    }
    while woken.try_recv().is_ok() {}
    a_tx.send(b"unawaited", WAIT).unwrap();
    assert!(
        woken.recv_timeout(Duration::from_millis(200)).is_err(),
        "a dropped future's task was woken"
    );
    assert_eq!(&*b_rx.recv(WAIT).unwrap(), b"unawaited");
}

#[test]
fn recv_futures_dropped_at_random_moments_lose_nothing_and_reorder_nothing() {
    let name = TestName::new("async-cancel-race");
    let (mut a_tx, _a_rx, _b_tx, mut b_rx) = pair(&name, 64, 4);
    let n: u32 = 20_000;
    let sender = std::thread::spawn(move || {
        for i in 0..n {
            a_tx.send(&i.to_le_bytes(), WAIT).unwrap();
            if i % 64 == 0 {
                std::thread::yield_now();
            }
        }
        a_tx
    });
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    let (dropped, _a_tx) = within(move || {
        let dropped = rt.block_on(async {
            let (mut next, mut dropped) = (0u32, 0u32);
            while next < n {
                let timeout = Duration::from_micros(u64::from(next % 7) * 20);
                match tokio::time::timeout(timeout, b_rx.recv_async()).await {
                    Ok(msg) => {
                        let got = u32::from_le_bytes(msg.unwrap()[..4].try_into().unwrap());
                        assert_eq!(got, next, "lost or reordered");
                        next += 1;
                    }
                    Err(_) => dropped += 1,
                }
            }
            dropped
        });
        (dropped, sender.join().unwrap())
    });
    eprintln!("{dropped} recv futures dropped while pending");
}

#[test]
fn dropping_a_parked_send_publishes_nothing_and_a_later_send_goes_through() {
    let name = TestName::new("async-cancel-send");
    let (mut a_tx, _a_rx, _b_tx, mut b_rx) = pair(&name, 64, 4);
    for i in 0u8..4 {
        a_tx.send(&[i], WAIT).unwrap();
    }
    let (waker, woken) = signal_waker();
    let mut cx = Context::from_waker(&waker);
    {
        let mut fut = pin!(a_tx.send_async(b"dropped"));
        poll_until_parked(fut.as_mut(), &waker, &woken); // the ring is full
    }
    // A parked send is woken by freed slots, then completes.
    let mut fut = pin!(a_tx.send_async(b"kept"));
    poll_until_parked(fut.as_mut(), &waker, &woken);
    assert!(woken.try_recv().is_err());
    assert_eq!(&*b_rx.recv(WAIT).unwrap(), &[0]);
    woken
        .recv_timeout(WAIT)
        .expect("freed slots did not wake the send");
    assert!(matches!(fut.as_mut().poll(&mut cx), Poll::Ready(Ok(()))));
    for i in 1u8..4 {
        assert_eq!(&*b_rx.recv(WAIT).unwrap(), &[i]);
    }
    assert_eq!(&*b_rx.recv(WAIT).unwrap(), b"kept");
    assert!(matches!(
        b_rx.recv(Timeout::Immediate),
        Err(Error::Timeout { .. })
    ));
}

#[test]
fn a_message_larger_than_the_ring_fails_at_once() {
    let name = TestName::new("async-too-large");
    let (mut a_tx, ..) = pair(&name, 64, 4);
    let too_long = vec![0u8; a_tx.max_message_len() + 1];
    let sent = futures::executor::block_on(a_tx.send_async(&too_long));
    assert!(
        matches!(sent, Err(Error::MessageTooLarge { .. })),
        "{sent:?}"
    );
}

#[test]
fn typed_messages_round_trip_async_across_slots() {
    let name = TestName::new("async-typed");
    let (mut a_tx, _a_rx, _b_tx, mut b_rx) = pair(&name, 64, 64);
    let mut message = capnp::message::Builder::new_default();
    let data = vec![5u8; 1000];
    let mut root = message.init_root::<demo_capnp::sample::Builder>();
    root.set_seq(9);
    root.set_payload(&data);
    futures::executor::block_on(async {
        a_tx.send_message_async(&message).await.unwrap();
        let got = b_rx.recv_message_async().await.unwrap();
        let root = got.root::<demo_capnp::sample::Owned>().unwrap();
        assert_eq!(
            (root.get_seq(), root.get_payload().unwrap()),
            (9, &data[..])
        );
    });
    // The blocking typed call reads what the async one sent, too.
    futures::executor::block_on(a_tx.send_message_async(&message)).unwrap();
    let got = b_rx.recv_message(WAIT).unwrap();
    let root = got.root::<demo_capnp::sample::Owned>().unwrap();
    assert_eq!(root.get_payload().unwrap().len(), 1000);
}

#[test]
fn an_awaiting_recv_gets_closed_when_the_peer_closes_after_its_last_message() {
    let name = TestName::new("async-closed");
    let (mut a_tx, a_rx, _b_tx, mut b_rx) = pair(&name, 64, 8);
    let b = std::thread::spawn(move || {
        futures::executor::block_on(async {
            let first = b_rx.recv_async().await.map(|m| m.to_vec());
            let second = b_rx.recv_async().await.map(|m| m.to_vec());
            (first, second)
        })
    });
    a_tx.send(b"last", WAIT).unwrap();
    drop((a_tx, a_rx));
    let (first, second) = within(move || b.join().unwrap());
    assert_eq!(first.unwrap(), b"last");
    assert!(matches!(second, Err(Error::Closed)), "{second:?}");
}

#[test]
fn an_awaiting_send_gets_closed_when_the_reader_closes() {
    let name = TestName::new("async-send-closed");
    let (mut a_tx, _a_rx, b_tx, b_rx) = pair(&name, 64, 2);
    a_tx.send(b"1", WAIT).unwrap();
    a_tx.send(b"2", WAIT).unwrap();
    let a = std::thread::spawn(move || futures::executor::block_on(a_tx.send_async(b"3")));
    drop((b_tx, b_rx));
    let sent = within(move || a.join().unwrap());
    assert!(matches!(sent, Err(Error::Closed)), "{sent:?}");
}

#[test]
fn an_awaiting_recv_gets_peer_dead_when_the_peer_is_killed() {
    let name = TestName::new("async-killed");
    let mut peer = Peer::spawn("idle-a", &name);
    peer.expect_line("created");
    let b = Channel::builder(&*name).open_timeout(WAIT).open().unwrap();
    let (_b_tx, mut b_rx) = b.split().unwrap();
    let (waker, woken) = signal_waker();
    let mut cx = Context::from_waker(&waker);
    let mut fut = pin!(b_rx.recv_async());
    poll_until_parked(fut.as_mut(), &waker, &woken);
    peer.kill();
    woken
        .recv_timeout(WAIT)
        .expect("the peer's death did not wake the task");
    match fut.as_mut().poll(&mut cx) {
        Poll::Ready(Err(Error::PeerDead)) => {}
        other => panic!(
            "expected PeerDead, got {:?}",
            other.map(|r| r.map(|m| m.to_vec()))
        ),
    };
}
