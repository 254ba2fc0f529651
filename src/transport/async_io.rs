//! The async calls: `recv_async`, `send_async` and their typed and in-place variants, on
//! [`Receiver`], [`Sender`] and [`Channel`]. They are runtime-agnostic (std `Future` and
//! `Waker` only) and have no timeout of their own: wrap them in the runtime's timeout, or
//! drop them, to give up. Each awaits [`Ready`] (check, spin phase, park on the half's
//! waiter thread), then does one non-blocking call, so dropping a pending call loses no
//! message and publishes nothing. Errors are those of the blocking calls (never
//! [`Error::Timeout`](crate::Error::Timeout)); with
//! [`OnDisconnect::WaitForReconnect`](super::OnDisconnect) or `KeepWaiting` a call waits
//! across a reconnection as the blocking calls do. See docs/ARCHITECTURE.md, "Async".

use capnp::message::{Allocator, Builder, ReaderOptions};

use super::channel::Channel;
use super::ready::{Half, Ready};
use super::receiver::{Receiver, RecvGuard};
use super::sender::Sender;
use crate::error::{Error, Result};
use crate::typed::{MessageGuard, RecvMessage, SendMessage};
use crate::wait::Timeout;

/// The framed size of a Cap'n Proto message (what `send_message` writes).
fn framed_len<A: Allocator>(message: &Builder<A>) -> usize {
    capnp::serialize::compute_serialized_size_in_words(message) * 8
}

impl Receiver {
    /// Awaits the next message and lends it in place, like [`Receiver::recv`] with no
    /// timeout. While messages flow it returns at once; with none it spins for the
    /// block-mode spin phase, then sleeps (no CPU) until the peer's next publication
    /// wakes it. Dropping the pending future loses no message.
    ///
    /// ```
    /// use std::time::Duration;
    /// use capnp_shm_transport::Channel;
    ///
    /// # let name = format!("doc-recv-async-{}", std::process::id());
    /// let a = Channel::builder(&name).slot_size(64).create()?;
    /// let b = Channel::builder(&name).open_timeout(Duration::from_secs(1)).open()?;
    /// let (mut tx, _) = a.split()?;
    /// let (_, mut rx) = b.split()?;
    /// futures::executor::block_on(async {
    ///     tx.send_async(b"ping").await?;
    ///     assert_eq!(&*rx.recv_async().await?, b"ping");
    ///     Ok::<(), capnp_shm_transport::Error>(())
    /// })?;
    /// # Ok::<(), capnp_shm_transport::Error>(())
    /// ```
    pub async fn recv_async(&mut self) -> Result<RecvGuard<'_>> {
        Ready::new(self, 0).await?;
        self.recv(Timeout::Immediate)
    }

    /// Sets how long (in block mode) an awaiting receive spins for a message before its
    /// task parks: the block-mode spin phase (20 µs) by default; zero parks after one
    /// short burst of checks. The spin runs in bursts between which the executor runs its
    /// other tasks; still, it takes a core while it lasts, which a peer on a busy machine
    /// may need (see README, "RPC").
    pub fn set_async_spin(&mut self, spin: std::time::Duration) {
        self.parker_mut().set_spin(spin);
    }

    /// Awaits the next message and copies it into `buf`; see [`Receiver::recv_into`].
    pub async fn recv_into_async(&mut self, buf: &mut Vec<u8>) -> Result<usize> {
        Ready::new(self, 0).await?;
        self.recv_into(buf, Timeout::Immediate)
    }

    /// Awaits the next Cap'n Proto message, read in place with the default limits; see
    /// [`RecvMessage::recv_message`].
    pub async fn recv_message_async(&mut self) -> Result<MessageGuard<'_>> {
        self.recv_message_with_async(crate::typed::default_reader_options())
            .await
    }

    /// Like [`Receiver::recv_message_async`], with explicit reading limits.
    pub async fn recv_message_with_async(
        &mut self,
        options: ReaderOptions,
    ) -> Result<MessageGuard<'_>> {
        Ready::new(self, 0).await?;
        self.recv_message_with(options, Timeout::Immediate)
    }
}

impl Sender {
    /// Awaits room for `msg` and sends it, like [`Sender::send`] with no timeout. Dropping
    /// the pending future publishes nothing; once it completes, all of `msg` is published.
    /// A message longer than [`Sender::max_message_len`] fails at once with
    /// [`Error::MessageTooLarge`]. (Example: [`Receiver::recv_async`].)
    pub async fn send_async(&mut self, msg: &[u8]) -> Result<()> {
        loop {
            Ready::new(self, msg.len()).await?;
            match self.send(msg, Timeout::Immediate) {
                // Another look found the slots taken (a long message first published
                // its padding): wait again.
                Err(Error::Timeout { .. }) => continue,
                done => return done,
            }
        }
    }

    /// Sets how long (in block mode) an awaiting send spins for free slots before its task
    /// parks; see [`Receiver::set_async_spin`].
    pub fn set_async_spin(&mut self, spin: std::time::Duration) {
        self.parker_mut().set_spin(spin);
    }

    /// Awaits room for `capacity` bytes and writes a message of up to that many in place;
    /// see [`Sender::send_with_capacity`]. `write` is called once, when the slots are free.
    pub async fn send_with_capacity_async<E: From<Error>>(
        &mut self,
        capacity: usize,
        write: impl FnOnce(&mut [u8]) -> std::result::Result<usize, E>,
    ) -> std::result::Result<(), E> {
        let mut write = Some(write);
        loop {
            Ready::new(self, capacity).await?;
            let mut called = false;
            let sent = self.send_with_capacity(capacity, Timeout::Immediate, |buf| {
                called = true;
                (write.take().expect("called at most once"))(buf)
            });
            match sent {
                Err(_) if !called && write.is_some() => continue,
                done => return done,
            }
        }
    }

    /// Awaits room for a Cap'n Proto message and writes it in place; see
    /// [`SendMessage::send_message`].
    pub async fn send_message_async<A: Allocator>(&mut self, message: &Builder<A>) -> Result<()> {
        let len = framed_len(message);
        loop {
            Ready::new(self, len).await?;
            match self.send_message(message, Timeout::Immediate) {
                Err(Error::Timeout { .. }) => continue,
                done => return done,
            }
        }
    }
}

impl Channel {
    /// Awaits the next message; see [`Receiver::recv_async`]. [`Error::ReceiverInUse`]
    /// when a callback thread receives for this side.
    pub async fn recv_async(&mut self) -> Result<RecvGuard<'_>> {
        self.receiver_mut()?.recv_async().await
    }

    /// Awaits the next Cap'n Proto message; see [`Receiver::recv_message_async`].
    pub async fn recv_message_async(&mut self) -> Result<MessageGuard<'_>> {
        self.receiver_mut()?.recv_message_async().await
    }

    /// Awaits room and sends; see [`Sender::send_async`].
    pub async fn send_async(&mut self, msg: &[u8]) -> Result<()> {
        self.sender().send_async(msg).await
    }

    /// Awaits room and sends a Cap'n Proto message; see [`Sender::send_message_async`].
    pub async fn send_message_async<A: Allocator>(&mut self, message: &Builder<A>) -> Result<()> {
        self.sender().send_message_async(message).await
    }
}
