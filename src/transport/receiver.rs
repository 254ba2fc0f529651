//! The receiving half of a side: [`Receiver`] reads the incoming ring, and [`RecvGuard`]
//! lends one message in place. Like [`Sender`](super::Sender) it keeps its own view of the
//! current link and moves to a new one after a reconnection (one Relaxed-cost epoch check
//! per call).

use std::ops::Deref;
use std::sync::Arc;

use crossbeam_utils::CachePadded;

use super::control::Control;
use super::link::Link;
use super::parker::{Job, Parker, WordOf};
use super::ready::{Half, Readiness};
use crate::error::{Corruption, Error, Result};
use crate::ring::Region;
use crate::ring::{Consumer, PrivateCopy, Record};
use crate::sync::Ordering;
use crate::wait::{self, Received, Timeout, WaitMode, Waiter};

/// How far a receiver trusts the peer's writes to the slots it reads (see README, "Trust").
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Trust {
    /// The peer follows the protocol: it does not write a slot between publishing it and
    /// getting it back. Messages are read in place (zero copy). A peer that breaks this
    /// can make the bytes change while they are read, and Cap'n Proto's reader, which
    /// reads some words twice, read outside the slot. The default.
    #[default]
    Cooperating,
    /// The peer may write anything at any time. Each message is copied once from its slot
    /// into private, 8-byte-aligned memory (one buffer per receiver, no allocation per
    /// message) by raw-pointer reads, its slot is released, and everything handed out
    /// (bytes, Cap'n Proto readers) is over the copy, which no peer can change.
    Untrusted,
}

/// The receiving half: reads messages from this side's incoming ring.
pub struct Receiver {
    control: Control,
    link: Arc<Link>,
    epoch: u64,
    /// The consumer's hot local state, on cache lines of its own (see [`Sender`](super::Sender)).
    consumer: CachePadded<Consumer<Region>>,
    /// How far the peer is trusted.
    trust: Trust,
    /// In [`Trust::Untrusted`] mode, where messages are copied to (one slot's size).
    copy: Option<PrivateCopy>,
    /// The waiter thread of [`Receiver::recv_async`] (started at its first wait).
    parker: Parker,
}

impl Receiver {
    pub(crate) fn new(control: Control, trust: Trust) -> Result<Receiver> {
        let (link, epoch) = control.session.current();
        let inc = link.incoming().clone();
        let h = inc.header();
        let tail = h.consumer.tail.load(Ordering::Relaxed);
        if tail > crate::layout::MAX_INDEX {
            return Err(Error::Corrupt(Corruption::IndexOutOfRange {
                head: h.producer.head.load(Ordering::Relaxed),
                tail,
                count: inc.geometry().slot_count as u64,
            }));
        }
        let consumer = CachePadded::new(Consumer::new(
            inc.clone(),
            tail,
            h.consumer.bytes.load(Ordering::Relaxed),
        ));
        let copy = (trust == Trust::Untrusted).then(|| PrivateCopy::new(inc.geometry().slot_size));
        Ok(Receiver {
            control,
            link,
            epoch,
            consumer,
            trust,
            copy,
            parker: Parker::default(),
        })
    }

    /// Moves to the session's current link if a reconnection replaced ours, but only once
    /// the old ring is drained: messages the old side A committed before it closed or died
    /// come first. (A reconnection starts only after the old peer was seen closed or dead,
    /// and the epoch is bumped with Release after that, so its last commits are visible.)
    #[inline]
    fn sync(&mut self) -> Result<()> {
        if self.control.session.epoch() != self.epoch {
            self.switch_when_drained()?;
        }
        Ok(())
    }

    #[cold]
    fn switch_when_drained(&mut self) -> Result<()> {
        // A corrupt old ring is left behind too: its sender is gone either way. (A padding
        // record its sender left last is skipped: it is no message.)
        if !matches!(self.next_record(), Ok(Some(_))) {
            *self = Receiver::new(self.control.clone(), self.trust)?;
        }
        Ok(())
    }

    /// Waits up to `timeout` for the next message and lends it in place: the guard derefs
    /// to the payload bytes, and dropping it releases the slot to the peer. In
    /// [`Trust::Untrusted`] mode the guard derefs to a private copy instead (the slot is
    /// released at once).
    ///
    /// Errors: [`Error::Timeout`]; [`Error::Closed`] / [`Error::PeerDead`] once the peer
    /// is gone and every message it committed has been read; [`Error::Reconnecting`] /
    /// [`Error::GaveUp`] per the channel's [`OnDisconnect`](super::OnDisconnect);
    /// [`Error::Corrupt`].
    #[inline]
    pub fn recv(&mut self, timeout: impl Into<Timeout>) -> Result<RecvGuard<'_>> {
        let record = self.next_message(timeout)?;
        if let Some(copy) = self.copy.as_mut() {
            // SAFETY: `next_message` saw the message published, unreleased.
            unsafe { self.consumer.copy_out(0, record.len(), copy) };
            self.release(record);
        }
        Ok(RecvGuard {
            receiver: self,
            record,
        })
    }

    /// The next message (its record read once from its slot and validated), waiting up to
    /// `timeout` for one. Padding records in front of it are released on the way.
    #[inline(always)]
    fn next_message(&mut self, timeout: impl Into<Timeout>) -> Result<Record> {
        self.sync()?;
        let next = self.next_record();
        match next.map_err(|c| self.link.explain(c.into()))? {
            Some(record) => Ok(record),
            // The timeout is looked at only here, when there is something to wait for.
            None => self.wait_for_message(&mut Waiter::new(timeout.into())),
        }
    }

    /// The message record at the tail, if one is published; a padding record there is
    /// released first (and the producer woken: it may wait for those slots).
    #[inline(always)]
    fn next_record(&mut self) -> Result<Option<Record>, Corruption> {
        loop {
            match self.consumer.peek(0)? {
                Some(record) if record.is_padding() => self.skip_padding(record),
                other => return Ok(other),
            }
        }
    }

    /// Like [`Receiver::recv`], but copies the message into `buf` (replacing its
    /// contents) and releases the slot at once. Returns the message length. The copy
    /// reads the slot through a raw pointer in either [`Trust`] mode.
    pub fn recv_into(&mut self, buf: &mut Vec<u8>, timeout: impl Into<Timeout>) -> Result<usize> {
        let record = self.next_message(timeout)?;
        let len = record.len();
        buf.clear();
        buf.reserve(len);
        // SAFETY: `next_message` saw the message published with this length, unreleased;
        // `buf` has room for `len` bytes, which the copy initializes before `set_len`.
        unsafe {
            self.consumer.copy_payload(0, len, buf.as_mut_ptr());
            buf.set_len(len);
        }
        self.release(record);
        Ok(len)
    }

    /// Waits up to `timeout` for at least one message, then hands up to `max` published
    /// messages to `f` in order and releases all their slots at once. Returns how many.
    /// In [`Trust::Untrusted`] mode `f` gets each message's private copy.
    pub fn recv_batch(
        &mut self,
        max: usize,
        timeout: impl Into<Timeout>,
        f: impl FnMut(&[u8]),
    ) -> Result<usize> {
        if max == 0 {
            return Ok(0);
        }
        self.sync()?;
        let next = self.next_record();
        if next.map_err(|c| self.link.explain(c.into()))?.is_none() {
            self.wait_for_message(&mut Waiter::new(timeout.into()))?;
        }
        self.drain(max, f)
    }

    /// Reads up to `max` messages that are already published, without waiting.
    pub(super) fn drain(&mut self, max: usize, f: impl FnMut(&[u8])) -> Result<usize> {
        self.sync()?;
        let tail = self.consumer.tail();
        let drained = match self.copy.as_mut() {
            None => self.consumer.drain(max, f),
            Some(copy) => self.consumer.drain_copied(max, copy, f),
        };
        // Padding alone releases slots too: a producer may wait for them.
        if self.consumer.tail() != tail {
            self.wake_producer();
        }
        drained.map_err(|c| self.link.explain(c.into()))
    }

    /// Releases the message at the tail (after a [`RecvGuard`]).
    #[inline(always)]
    fn release(&mut self, record: Record) {
        self.consumer.finish(record);
        self.wake_producer();
    }

    /// Releases a padding record at the tail, and wakes a producer that may wait for its
    /// slots.
    #[cold]
    fn skip_padding(&mut self, record: Record) {
        self.consumer.skip_padding(record);
        self.wake_producer();
    }

    /// Wakes the peer's producer if it sleeps waiting for space (one Relaxed load otherwise).
    #[inline]
    fn wake_producer(&self) {
        let word = &self.consumer.memory().header().producer.wait;
        wait::wake_sleeper(self.link.peer_mode(), word);
    }

    /// Why the peer will send nothing more, if it will not ([`Error::Closed`] or
    /// [`Error::PeerDead`]).
    pub(super) fn peer_gone(&self) -> Option<Error> {
        self.link.peer_gone()
    }

    /// Whether the channel will try to reconnect after the peer went away.
    pub(super) fn will_reconnect(&self) -> bool {
        self.control.session.will_reconnect()
    }

    /// Live settings and statistics.
    pub fn control(&self) -> &Control {
        &self.control
    }

    /// Waits for the next message within `waiter`'s deadline, across a reconnection too;
    /// returns its record.
    #[cold]
    fn wait_for_message(&mut self, waiter: &mut Waiter) -> Result<Record> {
        loop {
            let link = &self.link;
            let consumer = &self.consumer;
            let (session, epoch) = (&self.control.session, self.epoch);
            let received = wait::next_message(
                waiter,
                &link.policy(&consumer.memory().header().consumer.wait),
                || consumer.peek(0),
                || link.peer_gone(),
                || session.epoch() != epoch,
            )
            .map_err(|e| link.explain(e.into()))?;
            match received {
                Received::Message(record) if record.is_padding() => self.skip_padding(record),
                Received::Message(record) => return Ok(record),
                Received::TimedOut => return Err(Error::Timeout { full: false }),
                Received::Gone(gone) => {
                    self.control.session.after_gone(gone, self.epoch, waiter)?;
                    self.sync()?;
                }
                // A new link: move to it once the old ring is drained, and look again.
                Received::Interrupted => self.sync()?,
            }
        }
    }

    /// Waits one idle round per this side's wait mode for a message (or `also`), whatever
    /// the peer's state: side A's receive thread, while it waits for a new side B.
    pub(super) fn idle_for_message(&self, waiter: &mut Waiter, also: impl FnOnce() -> bool) -> bool {
        let policy = self
            .link
            .policy(&self.consumer.memory().header().consumer.wait);
        let consumer = &self.consumer;
        waiter.idle(&policy, || !matches!(consumer.peek(0), Ok(None)) || also())
    }

    /// Waits one idle round per this side's wait mode. Before a futex sleep it re-checks
    /// for a message, the peer's departure, and `also` (the receive thread's stop flag).
    pub(super) fn idle(&self, waiter: &mut Waiter, also: impl FnOnce() -> bool) -> bool {
        let link = &self.link;
        let policy = link.policy(&self.consumer.memory().header().consumer.wait);
        let consumer = &self.consumer;
        let epoch = self.epoch;
        let session = &self.control.session;
        waiter.idle(&policy, || {
            !matches!(consumer.peek(0), Ok(None))
                || link.peer_gone().is_some()
                || session.epoch() != epoch
                || also()
        })
    }
}

impl Half for Receiver {
    fn readiness(&mut self, _len: usize) -> Result<Readiness> {
        loop {
            self.sync()?;
            let next = self.next_record();
            if next.map_err(|c| self.link.explain(c.into()))?.is_some() {
                return Ok(Readiness::Now);
            }
            let Some(gone) = self.link.peer_gone() else {
                return Ok(Readiness::Empty);
            };
            // SYNC POINT: after the Acquire load of the closed flag in `peer_gone`, one
            // more look finds every message committed before the close (as in
            // `wait::next_message`).
            let next = self.next_record();
            if next.map_err(|c| self.link.explain(c.into()))?.is_some() {
                return Ok(Readiness::Now);
            }
            let session = &self.control.session;
            match session.after_gone(gone, self.epoch, &mut Waiter::new(Timeout::Immediate)) {
                // A new link (or the peer back): look again.
                Ok(()) => {}
                Err(Error::Reconnecting) if session.waits_for_reconnect() => {
                    return Ok(Readiness::Reconnecting)
                }
                Err(e) => return Err(e),
            }
        }
    }

    fn job(&self, readiness: Readiness, _len: usize) -> Job {
        let session = self.control.session.clone();
        let epoch = self.epoch;
        let word: WordOf = incoming_wait;
        if readiness == Readiness::Reconnecting {
            return Job::reconnection(self.link.clone(), word, session, epoch);
        }
        // A read-only view of the ring at our tail: the thread only peeks.
        let view = Consumer::new(self.link.incoming().clone(), self.consumer.tail(), 0);
        Job::on_word(self.link.clone(), word, session, epoch, move || {
            !matches!(view.peek(0), Ok(None))
        })
    }

    fn parker(&self) -> &Parker {
        &self.parker
    }

    fn parker_mut(&mut self) -> &mut Parker {
        &mut self.parker
    }

    fn block_mode(&self) -> bool {
        self.control.local_wait_mode() == WaitMode::Block
    }
}

/// A received message, borrowed in place from its slot. Derefs to the payload; dropping
/// it releases the slot so the peer can reuse it. In [`Trust::Untrusted`] mode it derefs
/// to the receiver's private copy (the slot was released already).
pub struct RecvGuard<'a> {
    receiver: &'a mut Receiver,
    record: Record,
}

impl Deref for RecvGuard<'_> {
    type Target = [u8];
    #[inline]
    fn deref(&self) -> &[u8] {
        match &self.receiver.copy {
            // SAFETY: `recv` saw the record published with this length (`peek(0)`), and
            // it is released only when the guard drops, so a cooperating producer does not
            // touch its slots meanwhile.
            None => unsafe { self.receiver.consumer.payload(0, self.record.len()) },
            Some(copy) => copy.bytes(self.record.len()),
        }
    }
}

impl Drop for RecvGuard<'_> {
    #[inline]
    fn drop(&mut self) {
        if self.receiver.copy.is_none() {
            self.receiver.release(self.record);
        }
    }
}

/// The word this half's waits sleep on (the one the peer wakes).
fn incoming_wait(link: &Link) -> &crate::sync::AtomicU32 {
    &link.incoming().header().consumer.wait
}
