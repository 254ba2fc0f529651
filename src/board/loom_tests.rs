//! Model checks of the board's protocol with loom: the real `begin_write` / `end_write` /
//! `read_slot` sequence lock and the `wait_step` / `wake_readers` eventcount, over words
//! that are loom atomics. The payload is two loom atomic words read and written Relaxed,
//! as the real copy races with the writer; a copy accepted as value `s` must hold `s` in
//! both words. Run with `scripts/loom.sh`.

use std::time::Duration;

use loom::sync::Arc;
use loom::thread;

use super::protocol::{self, SlotHeader, SlotRead, Words};
use crate::sync::{AtomicU32, AtomicU64, Ordering};

struct Board {
    slot: SlotHeader,
    payload: [AtomicU64; 2],
    head: AtomicU64,
    notify: AtomicU32,
    waiters: AtomicU32,
}

impl Board {
    fn new() -> Arc<Board> {
        Arc::new(Board {
            slot: SlotHeader {
                lock: AtomicU64::new(0),
                stamp: AtomicU64::new(0),
                len: AtomicU64::new(0),
                reserved: AtomicU64::new(0),
            },
            payload: [AtomicU64::new(0), AtomicU64::new(0)],
            head: AtomicU64::new(0),
            notify: AtomicU32::new(0),
            waiters: AtomicU32::new(0),
        })
    }

    fn words(&self) -> Words<'_> {
        Words {
            head: &self.head,
            notify: &self.notify,
            waiters: &self.waiters,
        }
    }

    /// Writes value `seq` into the one slot (a ring of one slot: every value laps the last).
    fn publish(&self, seq: u64) {
        protocol::begin_write(&self.slot, seq);
        for word in &self.payload {
            word.store(seq, Ordering::Relaxed);
        }
        protocol::end_write(&self.slot, &self.words(), seq, seq * 10, 16);
    }

    /// One read of the slot: the value's sequence number, after checking the copy.
    fn read(&self) -> Option<u64> {
        let mut copy = [0; 2];
        let read = protocol::read_slot(&self.slot, 16, |_| {
            for (c, word) in copy.iter_mut().zip(&self.payload) {
                *c = word.load(Ordering::Relaxed);
            }
        })
        .expect("no corruption in the model");
        match read {
            SlotRead::Stable { seq, stamp, len } => {
                assert_eq!(
                    copy,
                    [seq, seq],
                    "torn or stale copy accepted as value {seq}"
                );
                assert_eq!((stamp, len), (seq * 10, 16));
                Some(seq)
            }
            SlotRead::Busy | SlotRead::Empty => None,
        }
    }
}

/// A reader overlapping two rewrites of its slot never accepts a torn or stale copy.
#[test]
fn loom_board_seqlock_read_is_never_torn() {
    loom::model(|| {
        let board = Board::new();
        let writer = {
            let board = board.clone();
            thread::spawn(move || {
                board.publish(1);
                board.publish(2);
            })
        };
        let first = board.read();
        let second = board.read();
        if let (Some(a), Some(b)) = (first, second) {
            assert!(a <= b, "values went backwards: {a} then {b}");
        }
        writer.join().unwrap();
        assert_eq!(board.read(), Some(2));
    });
}

/// A reader that blocks waiting for the first value is always woken (the futex mock
/// never times out, so a lost wake-up is a loom deadlock), and then finds it complete.
#[test]
fn loom_board_wait_newer_is_woken() {
    loom::model(|| {
        let board = Board::new();
        let writer = {
            let board = board.clone();
            thread::spawn(move || board.publish(1))
        };
        let mut seen = protocol::newest(&board.words());
        while seen == 0 {
            seen = protocol::wait_step(&board.words(), 0, Duration::from_secs(1));
        }
        assert_eq!(seen, 1);
        assert_eq!(board.read(), Some(1));
        writer.join().unwrap();
    });
}
