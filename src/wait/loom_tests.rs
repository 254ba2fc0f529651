//! Model checks of block-mode waiting with loom, on the real code: a real `Producer` and
//! `Consumer` over loom memory, the real `Waiter` (block mode, straight to the futex) and
//! [`next_message`], the real [`wake_sleeper`] / [`wake_all`], and the futex seam's loom
//! mock, which parks without a time limit: a lost wake-up is a loom deadlock, not a delay
//! of one sleep slice. Run with `scripts/loom.sh`.
//!
//! Weakening either SeqCst fence of the eventcount (in `Waiter::idle_block`, or in
//! `wake_sleeper`/`wake_all`) to AcqRel, or the closed flag's Release/Acquire pair to
//! Relaxed, makes loom find a failing run (see `scripts/loom.sh --weakened`).

use loom::sync::Arc;
use loom::thread;

use super::{next_message, wake_all, wake_sleeper, Backoff, Policy, Received, Timeout, Waiter};
use super::{WaitMode, SLEEP_SLICE};
use crate::error::Error;
use crate::ring::loom_tests::LoomMemory;
use crate::ring::{Consumer, Producer};
use crate::sync::{AtomicU32, Ordering};

/// One side's control words: its wait mode, its poll interval and the wait word it
/// sleeps on, as a header holds them.
struct Words {
    mode: AtomicU32,
    poll_us: AtomicU32,
    wait: AtomicU32,
}

impl Words {
    fn blocking() -> Words {
        Words {
            mode: AtomicU32::new(WaitMode::Block as u32),
            poll_us: AtomicU32::new(0),
            wait: AtomicU32::new(0),
        }
    }

    fn policy(&self) -> Policy<'_> {
        Policy {
            mode: &self.mode,
            poll_us: &self.poll_us,
            wait_word: &self.wait,
            sleep_slice: SLEEP_SLICE,
        }
    }
}

/// A waiter that goes to the futex at its first idle round and never times out.
fn sleeper() -> Waiter {
    Waiter::with_backoff(Timeout::Never, Backoff::NONE)
}

/// The consumer's wait for one message, as `Receiver::recv` runs it.
fn receive(
    consumer: &Consumer<LoomMemory>,
    words: &Words,
    gone: impl Fn() -> Option<Error>,
    also: impl Fn() -> bool,
) -> Received<crate::ring::Record> {
    next_message(
        &mut sleeper(),
        &words.policy(),
        || consumer.peek(0),
        gone,
        also,
    )
    .unwrap()
}

#[test]
fn a_sleeping_consumer_is_woken_by_the_publication() {
    loom::model(|| {
        let mem = LoomMemory::new(2);
        let consumer_words = Arc::new(Words::blocking());
        let mut producer = Producer::new(mem.clone(), 0, 0, 0);
        let sender = {
            let words = consumer_words.clone();
            thread::spawn(move || {
                assert!(producer.try_send(&[1, 2]).unwrap());
                wake_sleeper(&words.mode, &words.wait);
            })
        };
        let consumer = Consumer::new(mem, 0, 0);
        let got = receive(&consumer, &consumer_words, || None, || false);
        assert!(
            matches!(got, Received::Message(r) if r.len() == 2),
            "{got:?}"
        );
        sender.join().unwrap();
    });
}

#[test]
fn a_sleeping_producer_is_woken_by_the_release() {
    loom::model(|| {
        let mem = LoomMemory::new(1);
        let producer_words = Arc::new(Words::blocking());
        let mut producer = Producer::new(mem.clone(), 0, 0, 0);
        assert!(producer.try_send(&[1]).unwrap(), "the only slot is taken");
        let receiver = {
            let (mem, words) = (mem.clone(), producer_words.clone());
            thread::spawn(move || {
                let mut consumer = Consumer::new(mem, 0, 0);
                assert_eq!(consumer.drain(1, |m| assert_eq!(m, [1])).unwrap(), 1);
                wake_sleeper(&words.mode, &words.wait);
            })
        };
        // `Sender::wait_for_space`'s loop.
        let mut waiter = sleeper();
        let policy = producer_words.policy();
        while producer.free_slots(1).unwrap() == 0 {
            assert!(waiter.idle(&policy, || producer.space_visible(1)));
        }
        assert!(producer.try_send(&[2]).unwrap());
        receiver.join().unwrap();
    });
}

#[test]
fn a_close_never_hides_the_last_message() {
    loom::model(|| {
        let mem = LoomMemory::new(2);
        let consumer_words = Arc::new(Words::blocking());
        let closed = Arc::new(AtomicU32::new(0));
        let mut producer = Producer::new(mem.clone(), 0, 0, 0);
        let closer = {
            let (words, closed) = (consumer_words.clone(), closed.clone());
            thread::spawn(move || {
                assert!(producer.try_send(&[7]).unwrap());
                // `Link`'s close: the flag (Release) after the last commit, then wake all.
                closed.store(1, Ordering::Release);
                wake_all(&words.wait);
            })
        };
        let consumer = Consumer::new(mem.clone(), 0, 0);
        // `Link::peer_gone`: the peer's closed flag, loaded with Acquire.
        let gone = || (closed.load(Ordering::Acquire) != 0).then_some(Error::Closed);
        let got = receive(&consumer, &consumer_words, gone, || false);
        assert!(
            matches!(got, Received::Message(r) if r.len() == 1),
            "{got:?}"
        );
        // Once the message is consumed, the close is what the next wait reports.
        closer.join().unwrap();
        let mut consumer = Consumer::new(mem, 0, 0);
        consumer.drain(1, |_| {}).unwrap();
        let next = receive(&consumer, &consumer_words, gone, || false);
        assert!(matches!(next, Received::Gone(Error::Closed)), "{next:?}");
    });
}

#[test]
fn a_stop_request_wakes_a_sleeping_receive_thread() {
    loom::model(|| {
        let mem = LoomMemory::new(2);
        let consumer_words = Arc::new(Words::blocking());
        let stop = Arc::new(AtomicU32::new(0));
        let stopper = {
            let (words, stop) = (consumer_words.clone(), stop.clone());
            thread::spawn(move || {
                // `ReceiveThread`'s drop: the flag (Relaxed: it publishes no data), then
                // wake all; the fence in `wake_all` orders the two.
                stop.store(1, Ordering::Relaxed);
                wake_all(&words.wait);
            })
        };
        let consumer = Consumer::new(mem, 0, 0);
        let got = receive(
            &consumer,
            &consumer_words,
            || None,
            || stop.load(Ordering::Relaxed) != 0,
        );
        assert!(matches!(got, Received::Interrupted), "{got:?}");
        stopper.join().unwrap();
    });
}

#[test]
fn a_switch_away_from_block_ends_a_sleep_it_did_not_wake() {
    loom::model(|| {
        let words = Arc::new(Words::blocking());
        let switcher = {
            let words = words.clone();
            thread::spawn(move || {
                // `Control::set_local_wait_mode`: the mode (Relaxed: the fences order it),
                // then wake all. Its wake-up may come before the sleeper announces itself.
                words.mode.store(WaitMode::Poll as u32, Ordering::Relaxed);
                wake_all(&words.wait);
            })
        };
        // One idle round that chose Block: it must not sleep past the switch (the mock
        // futex never times out, so a sleep nobody ends is a deadlock).
        assert!(sleeper().idle(&words.policy(), || false));
        switcher.join().unwrap();
    });
}
