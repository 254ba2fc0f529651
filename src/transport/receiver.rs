//! The receiving half of a side: [`Receiver`] reads the incoming ring, and [`RecvGuard`]
//! lends one message in place. Like [`Sender`](super::Sender) it keeps its own view of the
//! current link and moves to a new one after a reconnection (one Relaxed-cost epoch check
//! per call).

use std::ops::Deref;
use std::sync::Arc;

use crossbeam_utils::CachePadded;

use super::control::Control;
use super::link::Link;
use crate::error::{Corruption, Error, Result};
use crate::ring::Region;
use crate::ring::Consumer;
use crate::sync::Ordering;
use crate::wait::{self, Received, Timeout, Waiter};

/// The receiving half: reads messages from this side's incoming ring.
pub struct Receiver {
    control: Control,
    link: Arc<Link>,
    epoch: u64,
    /// The consumer's hot local state, on cache lines of its own (see [`Sender`](super::Sender)).
    consumer: CachePadded<Consumer<Region>>,
}

impl Receiver {
    pub(crate) fn new(control: Control) -> Result<Receiver> {
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
        Ok(Receiver {
            control,
            link,
            epoch,
            consumer,
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
        // A corrupt old ring is left behind too: its sender is gone either way.
        if !matches!(self.consumer.peek(0), Ok(Some(_))) {
            *self = Receiver::new(self.control.clone())?;
        }
        Ok(())
    }

    /// Waits up to `timeout` for the next message and lends it in place: the guard derefs
    /// to the payload bytes, and dropping it releases the slot to the peer.
    ///
    /// Errors: [`Error::Timeout`]; [`Error::Closed`] / [`Error::PeerDead`] once the peer
    /// is gone and every message it committed has been read; [`Error::Reconnecting`] /
    /// [`Error::GaveUp`] per the channel's [`OnDisconnect`](super::OnDisconnect);
    /// [`Error::Corrupt`].
    #[inline]
    pub fn recv(&mut self, timeout: impl Into<Timeout>) -> Result<RecvGuard<'_>> {
        self.sync()?;
        let peeked = self.consumer.peek(0);
        let len = match peeked.map_err(|c| self.link.explain(c.into()))? {
            Some(len) => len,
            None => self.wait_for_message(&mut Waiter::new(timeout.into()))?,
        };
        Ok(RecvGuard {
            receiver: self,
            len,
        })
    }

    /// Like [`Receiver::recv`], but copies the message into `buf` (replacing its
    /// contents) and releases the slot at once. Returns the message length.
    pub fn recv_into(&mut self, buf: &mut Vec<u8>, timeout: impl Into<Timeout>) -> Result<usize> {
        let msg = self.recv(timeout)?;
        buf.clear();
        buf.extend_from_slice(&msg);
        Ok(msg.len())
    }

    /// Waits up to `timeout` for at least one message, then hands up to `max` published
    /// messages to `f` in order and releases all their slots at once. Returns how many.
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
        let peeked = self.consumer.peek(0);
        if peeked.map_err(|c| self.link.explain(c.into()))?.is_none() {
            self.wait_for_message(&mut Waiter::new(timeout.into()))?;
        }
        self.drain(max, f)
    }

    /// Reads up to `max` messages that are already published, without waiting.
    pub(super) fn drain(&mut self, max: usize, f: impl FnMut(&[u8])) -> Result<usize> {
        self.sync()?;
        let drained = self.consumer.drain(max, f);
        let n = drained.map_err(|c| self.link.explain(c.into()))?;
        if n > 0 {
            self.wake_producer();
        }
        Ok(n)
    }

    /// Releases the next message's slot (after a [`RecvGuard`]).
    #[inline]
    fn release_one(&mut self, len: usize) {
        self.consumer.release(1, len as u64);
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
    /// returns its length.
    #[cold]
    fn wait_for_message(&mut self, waiter: &mut Waiter) -> Result<usize> {
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
                Received::Message(len) => return Ok(len),
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

/// A received message, borrowed in place from its slot. Derefs to the payload; dropping
/// it releases the slot so the peer can reuse it.
pub struct RecvGuard<'a> {
    receiver: &'a mut Receiver,
    len: usize,
}

impl Deref for RecvGuard<'_> {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        // SAFETY: `recv` saw the slot published with this length (`peek(0)`), and it is
        // released only when the guard drops, so the producer does not touch it meanwhile.
        unsafe { self.receiver.consumer.payload(0, self.len) }
    }
}

impl Drop for RecvGuard<'_> {
    fn drop(&mut self) {
        self.receiver.release_one(self.len);
    }
}
