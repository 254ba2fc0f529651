//! The sending half of a side: [`Sender`] publishes on the outgoing ring. It keeps its own
//! view of the current link and moves to a new one after a reconnection (one Relaxed-cost
//! epoch check per call); [`Receiver`](super::Receiver) does the same for the incoming one.

use std::sync::Arc;

use crossbeam_utils::CachePadded;

use super::control::Control;
use super::link::Link;
use super::parker::{Job, Parker, WordOf};
use super::ready::{Half, Readiness};
use crate::error::{Error, Result};
use crate::ring::{Region, INLINE_COPY_MAX};
use crate::ring::Producer;
use crate::sync::Ordering;
use crate::wait::{self, Timeout, WaitMode, Waiter};

/// The sending half: publishes messages on this side's outgoing ring.
pub struct Sender {
    control: Control,
    link: Arc<Link>,
    epoch: u64,
    /// The producer's hot local state (head, cached tail), on cache lines of its own: a
    /// `Sender` and a `Receiver` placed side by side (adjacent locals, one struct) must not
    /// bounce a line between the producing and the consuming thread.
    producer: CachePadded<Producer<Region>>,
    /// The waiter thread of [`Sender::send_async`] (started at its first wait).
    parker: Parker,
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
            parker: Parker::default(),
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
    /// `waiter` is the call's one deadline, shared with [`Sender::wait_for_space`].
    #[inline]
    fn prepare(&mut self, waiter: &mut Waiter) -> Result<()> {
        self.sync()?;
        while let Some(gone) = self.link.peer_gone() {
            self.follow(gone, waiter)?;
        }
        Ok(())
    }

    /// The peer is gone: fail, or wait (within the call's deadline) for the reconnection
    /// and move to the new link.
    #[cold]
    fn follow(&mut self, gone: Error, waiter: &mut Waiter) -> Result<()> {
        self.control.session.after_gone(gone, self.epoch, waiter)?;
        self.sync()
    }

    /// Sends `msg`, of any length up to [`Sender::max_message_len`], waiting up to
    /// `timeout` for the slots it needs. A message longer than the slot size covers
    /// several consecutive slots and is received whole, in one piece (see README,
    /// "Messages larger than a slot").
    ///
    /// Errors: [`Error::MessageTooLarge`] (nothing published), [`Error::Timeout`],
    /// [`Error::Closed`] / [`Error::PeerDead`] once the peer is known to be gone,
    /// [`Error::Reconnecting`] / [`Error::GaveUp`] per the channel's
    /// [`OnDisconnect`](super::OnDisconnect), and [`Error::Corrupt`].
    #[inline]
    pub fn send(&mut self, msg: &[u8], timeout: impl Into<Timeout>) -> Result<()> {
        // The common case first: a one-slot message short enough to be copied inline,
        // sent by `try_send_now`. Nothing in it can fail or calls anything but a
        // Block-mode wake, so it saves one or two registers, not the seven a `memcpy`
        // call needs (each a store, queued behind the slot's); all else (a longer
        // message, a tail to re-read, a wait, a reconnection, an error) is
        // `send_general`'s.
        if msg.len() <= INLINE_COPY_MAX && self.try_send_now(msg) {
            return Ok(());
        }
        self.send_general(msg, timeout.into())
    }

    /// [`Sender::send`] past its inline fast case: the same fast case for a one-slot
    /// message longer than [`INLINE_COPY_MAX`] (copied with `memcpy`, so out of the
    /// caller's way); else [`Sender::send_after_wait`].
    #[inline(never)]
    fn send_general(&mut self, msg: &[u8], timeout: Timeout) -> Result<()> {
        if self.try_send_now(msg) {
            return Ok(());
        }
        self.send_after_wait(msg, timeout)
    }

    /// The send fast case: on the current link, the peer there, a one-slot message and a
    /// free slot by the cached tail, publishes `msg` and wakes the consumer; `false`
    /// (nothing done) otherwise.
    #[inline(always)]
    fn try_send_now(&mut self, msg: &[u8]) -> bool {
        let sent = self.control.session.epoch() == self.epoch
            && self.link.peer_present()
            && self.producer.try_send_cached(msg);
        if sent {
            self.wake_consumer();
        }
        sent
    }

    /// [`Sender::send`] past its fast cases: sends messages longer than a slot, re-reads
    /// the tail, waits for a reconnection or for free slots.
    #[cold]
    #[inline(never)]
    fn send_after_wait(&mut self, msg: &[u8], timeout: Timeout) -> Result<()> {
        // One deadline for the whole call, fixed lazily at its first wait.
        let mut waiter = Waiter::new(timeout);
        self.prepare(&mut waiter)?;
        // A long message may publish its padding first, then wait again for its slots.
        while !self
            .producer
            .try_send(msg)
            .map_err(|e| self.link.explain(e))?
        {
            self.wait_for_space(&mut waiter, msg.len())?;
        }
        self.wake_consumer();
        Ok(())
    }

    /// Sends as many of `msgs` as fit, in order, waiting up to `timeout` for the first
    /// one's slots. Returns how many were sent (a prefix of `msgs`). Every length is
    /// checked before anything is published. Messages of one slot each take one
    /// free-space check for the whole batch.
    pub fn send_batch(&mut self, msgs: &[&[u8]], timeout: impl Into<Timeout>) -> Result<usize> {
        if msgs.is_empty() {
            return Ok(0);
        }
        let mut waiter = Waiter::new(timeout.into());
        self.prepare(&mut waiter)?;
        let mut n = self.producer.try_send_batch(msgs)?;
        while n == 0 {
            self.wait_for_space(&mut waiter, msgs[0].len())?;
            n = self.producer.try_send_batch(msgs)?;
        }
        self.wake_consumer();
        Ok(n)
    }

    /// Sends a message written in place: `write` gets the next free slot's whole payload
    /// (`slot_size` bytes, holding stale bytes from earlier messages) and returns how many
    /// bytes it wrote, `Ok(len)`, which are then published. Waits up to `timeout` for a free
    /// slot; `write` is called once, and only when a slot is free.
    ///
    /// When `write` returns `Err(e)`, nothing is published (the slot stays free) and
    /// `send_with` returns that same `e`. The transport's own errors (those of
    /// [`Sender::send`]; a length above the slot size is [`Error::MessageTooLarge`] and
    /// publishes nothing; [`Sender::send_with_capacity`] writes longer messages) come back converted with `E::from`, so `E` is usually [`Error`]
    /// itself or an application error with a `From<Error>` impl.
    ///
    /// ```
    /// use std::io::Write;
    /// use std::time::Duration;
    /// use capnp_shm_transport::{Channel, Error};
    ///
    /// #[derive(Debug)]
    /// enum AppError {
    ///     Format(std::io::Error),
    ///     Transport(Error),
    /// }
    /// impl From<Error> for AppError {
    ///     fn from(e: Error) -> Self {
    ///         AppError::Transport(e)
    ///     }
    /// }
    ///
    /// # let name = format!("doc-send-with-{}", std::process::id());
    /// let mut a = Channel::builder(&name).slot_size(16).slot_count(4).create()?;
    /// let mut b = Channel::builder(&name).open_timeout(Duration::from_secs(1)).open()?;
    /// let timeout = Duration::from_millis(10);
    ///
    /// // Format straight into the slot; publish the bytes written.
    /// let seq = 7;
    /// a.sender().send_with(timeout, |slot| {
    ///     let total = slot.len();
    ///     let mut rest = &mut slot[..];
    ///     write!(rest, "seq={seq}").map_err(AppError::Format)?;
    ///     Ok::<_, AppError>(total - rest.len())
    /// }).unwrap();
    /// assert_eq!(&*b.recv(Duration::from_secs(1))?, b"seq=7");
    ///
    /// // Text too long for the slot: the writer's error comes back, nothing is published.
    /// let failed = a.sender().send_with(timeout, |slot| {
    ///     let total = slot.len();
    ///     let mut rest = &mut slot[..];
    ///     write!(rest, "{}", "x".repeat(100)).map_err(AppError::Format)?;
    ///     Ok(total - rest.len())
    /// });
    /// assert!(matches!(failed, Err(AppError::Format(_))));
    /// assert!(matches!(b.recv(Duration::ZERO), Err(Error::Timeout { .. })));
    ///
    /// // With `Error` as the error type, `?` works in a function returning `Result<_, Error>`.
    /// a.sender().send_with(timeout, |slot| {
    ///     slot[..2].copy_from_slice(b"ok");
    ///     Ok::<_, Error>(2)
    /// })?;
    /// # Ok::<(), Error>(())
    /// ```
    pub fn send_with<E: From<Error>>(
        &mut self,
        timeout: impl Into<Timeout>,
        write: impl FnOnce(&mut [u8]) -> std::result::Result<usize, E>,
    ) -> std::result::Result<(), E> {
        let capacity = self.producer.slot_size();
        self.send_with_capacity(capacity, timeout, write)
    }

    /// Like [`Sender::send_with`], for a message of up to `capacity` bytes (any size up to
    /// [`Sender::max_message_len`]): `write` gets `capacity` contiguous bytes in the ring
    /// (over several slots when `capacity` exceeds the slot size) and returns how many it
    /// wrote. Waits for the slots `capacity` bytes need; a message shorter than that
    /// is published over the slots its own length needs.
    ///
    /// ```
    /// use std::time::Duration;
    /// use capnp_shm_transport::{Channel, Error};
    ///
    /// # let name = format!("doc-send-with-capacity-{}", std::process::id());
    /// let mut a = Channel::builder(&name).slot_size(64).slot_count(8).create()?;
    /// let mut b = Channel::builder(&name).open_timeout(Duration::from_secs(1)).open()?;
    /// // 300 bytes through 64-byte slots, written in place.
    /// a.sender().send_with_capacity(300, Duration::from_secs(1), |buf| {
    ///     buf.fill(7);
    ///     Ok::<_, Error>(buf.len())
    /// })?;
    /// assert_eq!(&*b.recv(Duration::from_secs(1))?, &[7u8; 300][..]);
    /// # Ok::<(), Error>(())
    /// ```
    pub fn send_with_capacity<E: From<Error>>(
        &mut self,
        capacity: usize,
        timeout: impl Into<Timeout>,
        write: impl FnOnce(&mut [u8]) -> std::result::Result<usize, E>,
    ) -> std::result::Result<(), E> {
        let mut waiter = Waiter::new(timeout.into());
        self.prepare(&mut waiter)?;
        // The ring calls the writer only when the slots are free: at most once in all.
        let mut write = Some(write);
        let mut call = |slot: &mut [u8]| (write.take().expect("called at most once"))(slot);
        if !self.producer.try_send_with(capacity, &mut call)? {
            loop {
                self.wait_for_space(&mut waiter, capacity)?;
                if self.producer.try_send_with(capacity, &mut call)? {
                    break;
                }
            }
        }
        self.wake_consumer();
        Ok(())
    }

    /// The largest message this side can send: a message that covers every slot of the
    /// ring (`slot_size + (slot_count - 1) * slot_stride` bytes, at most `u32::MAX - 1`).
    /// Messages up to the slot size take one slot each; longer ones cover several.
    pub fn max_message_len(&self) -> usize {
        self.producer.max_len()
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

    /// Waits within `waiter`'s deadline until the slots a message of `len` bytes needs
    /// next are free, following a reconnection if the channel is set to.
    #[cold]
    fn wait_for_space(&mut self, waiter: &mut Waiter, len: usize) -> Result<()> {
        loop {
            let wanted = self.producer.slots_needed(len);
            if let Some(gone) = self.link.peer_gone() {
                self.follow(gone, waiter)?;
                if self.producer.free_slots(wanted)? >= wanted {
                    return Ok(());
                }
                continue;
            }
            let link = &self.link;
            let producer = &self.producer;
            let policy = link.policy(&producer.memory().header().producer.wait);
            if !waiter.idle(&policy, || {
                producer.space_visible(wanted) || link.peer_gone().is_some()
            }) {
                return Err(Error::Timeout { full: true });
            }
            let free = self.producer.free_slots(wanted);
            if free.map_err(|c| self.link.explain(c.into()))? >= wanted {
                return Ok(());
            }
        }
    }
}

impl Half for Sender {
    fn readiness(&mut self, len: usize) -> Result<Readiness> {
        let max_len = self.max_message_len();
        if len > max_len {
            return Err(Error::MessageTooLarge { len, max_len });
        }
        self.sync()?;
        if let Some(gone) = self.link.peer_gone() {
            let session = &self.control.session;
            return match session.after_gone(gone, self.epoch, &mut Waiter::new(Timeout::Immediate)) {
                // A new link (or the peer back): the send moves to it and tries.
                Ok(()) => Ok(Readiness::Now),
                Err(Error::Reconnecting) if session.waits_for_reconnect() => {
                    Ok(Readiness::Reconnecting)
                }
                Err(e) => Err(e),
            };
        }
        let wanted = self.producer.slots_needed(len);
        let free = self.producer.free_slots(wanted);
        if free.map_err(|c| self.link.explain(c.into()))? >= wanted {
            Ok(Readiness::Now)
        } else {
            Ok(Readiness::Empty)
        }
    }

    fn job(&self, readiness: Readiness, len: usize) -> Job {
        let session = self.control.session.clone();
        let epoch = self.epoch;
        let word: WordOf = outgoing_wait;
        if readiness == Readiness::Reconnecting {
            return Job::reconnection(self.link.clone(), word, session, epoch);
        }
        // A copy of the producer's position, only to look at the consumer's tail.
        let view = Producer::clone(&self.producer);
        let wanted = view.slots_needed(len);
        Job::on_word(self.link.clone(), word, session, epoch, move || {
            view.space_visible(wanted)
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

/// The word this half's waits sleep on (the one the peer wakes).
fn outgoing_wait(link: &Link) -> &crate::sync::AtomicU32 {
    &link.outgoing().header().producer.wait
}
