//! The two halves of a side: [`Sender`] publishes on the outgoing ring, [`Receiver`] reads
//! the incoming one. Each keeps its own view of the current link and moves to a new one
//! after a reconnection (one Relaxed-cost epoch check per call).

use std::ops::Deref;
use std::sync::Arc;

use crossbeam_utils::CachePadded;

use super::control::Control;
use super::link::Link;
use crate::error::{Error, Result};
use crate::ring::Region;
use crate::ring::{Consumer, Producer};
use crate::sync::Ordering;
use crate::wait::{self, Timeout, Waiter};

/// The sending half: publishes messages on this side's outgoing ring.
pub struct Sender {
    control: Control,
    link: Arc<Link>,
    epoch: u64,
    /// The producer's hot local state (head, cached tail), on cache lines of its own: a
    /// `Sender` and a `Receiver` placed side by side (adjacent locals, one struct) must not
    /// bounce a line between the producing and the consuming thread.
    producer: CachePadded<Producer<Region>>,
}

impl Sender {
    pub(crate) fn new(control: Control) -> Result<Sender> {
        let (link, epoch) = control.session.current();
        let producer = CachePadded::new(producer_for(&link)?);
        Ok(Sender {
            control,
            link,
            epoch,
            producer,
        })
    }

    /// Moves to the session's current link if a reconnection replaced ours.
    #[inline]
    fn sync(&mut self) -> Result<()> {
        if self.control.session.epoch() != self.epoch {
            *self = Sender::new(self.control.clone())?;
        }
        Ok(())
    }

    /// Before a send: on the current link, with a peer that is there. A gone peer fails
    /// the send (or waits for a reconnection, per the channel's settings) rather than
    /// letting it vanish into a ring nobody reads. Costs two loads of read-mostly words.
    #[inline]
    fn prepare(&mut self, timeout: Timeout) -> Result<()> {
        self.sync()?;
        while let Some(gone) = self.link.peer_gone() {
            self.follow(gone, timeout)?;
        }
        Ok(())
    }

    /// The peer is gone: fail, or wait for the reconnection and move to the new link.
    #[cold]
    fn follow(&mut self, gone: Error, timeout: Timeout) -> Result<()> {
        self.control.session.after_gone(gone, self.epoch, timeout)?;
        self.sync()
    }

    /// Sends `msg` (0..=slot_size bytes), waiting for a free slot up to `timeout`.
    ///
    /// Errors: [`Error::MessageTooLarge`] (nothing published), [`Error::Timeout`],
    /// [`Error::Closed`] / [`Error::PeerDead`] once the peer is known to be gone,
    /// [`Error::Reconnecting`] / [`Error::GaveUp`] per the channel's
    /// [`OnDisconnect`](super::OnDisconnect), and [`Error::Corrupt`].
    #[inline]
    pub fn send(&mut self, msg: &[u8], timeout: impl Into<Timeout>) -> Result<()> {
        let timeout = timeout.into();
        self.prepare(timeout)?;
        if !self.producer.try_send(msg)? {
            self.wait_for_space(timeout)?;
            let sent = self.producer.try_send(msg)?;
            debug_assert!(sent, "space was seen and only we produce");
        }
        self.wake_consumer();
        Ok(())
    }

    /// Sends as many of `msgs` as fit after one free-space check, waiting up to `timeout`
    /// for at least one free slot. Returns how many were sent (a prefix of `msgs`). Every
    /// length is checked before anything is published.
    pub fn send_batch(&mut self, msgs: &[&[u8]], timeout: impl Into<Timeout>) -> Result<usize> {
        if msgs.is_empty() {
            return Ok(0);
        }
        let timeout = timeout.into();
        self.prepare(timeout)?;
        let mut n = self.producer.try_send_batch(msgs)?;
        if n == 0 {
            self.wait_for_space(timeout)?;
            n = self.producer.try_send_batch(msgs)?;
        }
        self.wake_consumer();
        Ok(n)
    }

    /// Sends a message written in place: `write` gets the next free slot's whole payload
    /// (`slot_size` bytes, holding stale bytes from earlier messages) and returns how many
    /// bytes it wrote, which are then published. Waits up to `timeout` for a free slot.
    /// A length above the slot size publishes nothing and is [`Error::MessageTooLarge`].
    ///
    /// ```no_run
    /// # use std::time::Duration;
    /// # let mut ch = capnp_shm_transport::Channel::builder("x").create()?;
    /// ch.sender().send_with(Duration::from_millis(1), |slot| {
    ///     slot[..5].copy_from_slice(b"hello");
    ///     5
    /// })?;
    /// # Ok::<(), capnp_shm_transport::Error>(())
    /// ```
    pub fn send_with(
        &mut self,
        timeout: impl Into<Timeout>,
        write: impl FnOnce(&mut [u8]) -> usize,
    ) -> Result<()> {
        let timeout = timeout.into();
        self.prepare(timeout)?;
        let mut write = Some(write);
        let mut call = |buf: &mut [u8]| (write.take().expect("called once"))(buf);
        if !self.producer.try_send_with(&mut call)? {
            self.wait_for_space(timeout)?;
            let sent = self.producer.try_send_with(&mut call)?;
            debug_assert!(sent, "space was seen and only we produce");
        }
        self.wake_consumer();
        Ok(())
    }

    /// The largest message this side can send.
    pub fn max_message_len(&self) -> usize {
        self.producer.slot_size()
    }

    /// Live settings and statistics.
    pub fn control(&self) -> &Control {
        &self.control
    }

    /// Wakes the peer's consumer if it sleeps on a futex (one Relaxed load otherwise).
    #[inline]
    fn wake_consumer(&self) {
        let word = &self.producer.memory().header().consumer.wait;
        wait::wake_sleeper(self.link.peer_mode(), word);
    }

    /// Waits for a free slot, following a reconnection if the channel is set to.
    #[cold]
    fn wait_for_space(&mut self, timeout: Timeout) -> Result<()> {
        let mut waiter = Waiter::new(timeout);
        loop {
            if let Some(gone) = self.link.peer_gone() {
                self.follow(gone, timeout)?;
                if self.producer.free_slots(1)? > 0 {
                    return Ok(());
                }
                continue;
            }
            let link = &self.link;
            let producer = &self.producer;
            let policy = link.policy(&producer.memory().header().producer.wait);
            if !waiter.idle(&policy, || {
                producer.space_visible() || link.peer_gone().is_some()
            }) {
                return Err(Error::Timeout { full: true });
            }
            if self.producer.free_slots(1)? > 0 {
                return Ok(());
            }
        }
    }
}

/// Where this side's producer continues: after every committed slot from the consumer's
/// validated tail.
fn producer_for(link: &Link) -> Result<Producer<Region>> {
    let out = link.outgoing().clone();
    let h = out.header();
    let tail = h.consumer.tail.load(Ordering::Acquire);
    let head = h.producer.head.load(Ordering::Relaxed);
    // The mirrored head is stored before the commits, so tail <= head <= tail + count holds
    // even after a producer crash; anything else is corruption.
    crate::layout::check_indices(head, tail, out.geometry().slot_count as u64)?;
    let bytes = h.producer.bytes.load(Ordering::Relaxed);
    Ok(Producer::resume(out, tail, bytes))
}

/// The receiving half: reads messages from this side's incoming ring.
pub struct Receiver {
    control: Control,
    link: Arc<Link>,
    epoch: u64,
    /// The consumer's hot local state, on cache lines of its own (see [`Sender`]).
    consumer: CachePadded<Consumer<Region>>,
}

impl Receiver {
    pub(crate) fn new(control: Control) -> Result<Receiver> {
        let (link, epoch) = control.session.current();
        let inc = link.incoming().clone();
        let h = inc.header();
        let consumer = CachePadded::new(Consumer::new(
            inc.clone(),
            h.consumer.tail.load(Ordering::Relaxed),
            h.consumer.bytes.load(Ordering::Relaxed),
        ));
        Ok(Receiver {
            control,
            link,
            epoch,
            consumer,
        })
    }

    /// Moves to the session's current link if a reconnection replaced ours. Messages
    /// still unread on the old link are dropped with it (their sender is gone).
    #[inline]
    fn sync(&mut self) -> Result<()> {
        if self.control.session.epoch() != self.epoch {
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
        let len = match self.consumer.peek(0)? {
            Some(len) => len,
            None => self.wait_for_message(timeout.into())?,
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
        if self.consumer.peek(0)?.is_none() {
            self.wait_for_message(timeout.into())?;
        }
        self.drain(max, f)
    }

    /// Reads up to `max` messages that are already published, without waiting.
    pub(crate) fn drain(&mut self, max: usize, f: impl FnMut(&[u8])) -> Result<usize> {
        self.sync()?;
        let n = self.consumer.drain(max, f)?;
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
    pub(crate) fn peer_gone(&self) -> Option<Error> {
        self.link.peer_gone()
    }

    /// Whether the channel will try to reconnect after the peer went away.
    pub(crate) fn will_reconnect(&self) -> bool {
        self.control.session.will_reconnect()
    }

    /// The region whose consumer wait word this receiver sleeps on.
    pub(crate) fn incoming_region(&self) -> Region {
        self.consumer.memory().clone()
    }

    /// Live settings and statistics.
    pub fn control(&self) -> &Control {
        &self.control
    }

    /// Waits for the next message; returns its length.
    #[cold]
    fn wait_for_message(&mut self, timeout: Timeout) -> Result<usize> {
        let mut waiter = Waiter::new(timeout);
        loop {
            if let Some(gone) = self.link.peer_gone() {
                // A closing peer stored its flag after its last commit (Release/Acquire);
                // a dead one committed nothing after the monitor saw it exit. Either way
                // one more look finds every message it sent.
                if let Some(len) = self.consumer.peek(0)? {
                    return Ok(len);
                }
                self.control.session.after_gone(gone, self.epoch, timeout)?;
                self.sync()?;
                continue;
            }
            if !self.idle(&mut waiter, || false) {
                return Err(Error::Timeout { full: false });
            }
            if let Some(len) = self.consumer.peek(0)? {
                return Ok(len);
            }
        }
    }

    /// Waits one idle round per this side's wait mode. Before a futex sleep it re-checks
    /// for a message, the peer's departure, and `also` (the receive thread's stop flag).
    pub(crate) fn idle(&self, waiter: &mut Waiter, also: impl FnOnce() -> bool) -> bool {
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
