//! One side of a duplex channel: its [`Sender`], and its [`Receiver`] or the receive thread
//! that owns it.

use std::sync::Arc;

use super::control::Control;
use super::receive_thread::{Callback, ReceiveThread};
use super::receiver::{Receiver, RecvGuard, Trust};
use super::sender::Sender;
use super::session::Session;
use crate::error::{Error, Result};
use crate::wait::Timeout;

/// One side of a duplex channel: send on one ring, receive on the other (directly, or
/// through a callback thread).
///
/// ```no_run
/// use std::time::Duration;
/// use capnp_shm_transport::Channel;
///
/// // Process A:
/// let mut a = Channel::builder("orders").slot_size(512).create()?;
/// a.send(b"ping", Duration::from_millis(100))?;
/// // Process B:
/// let mut b = Channel::builder("orders").open()?;
/// let msg = b.recv(Duration::from_secs(1))?;
/// assert_eq!(&*msg, b"ping");
/// # Ok::<(), capnp_shm_transport::Error>(())
/// ```
pub struct Channel {
    receive_thread: Option<ReceiveThread>,
    receiver: Option<Receiver>,
    sender: Sender,
}

impl Channel {
    /// A channel over a started session: its sender, and its receiver or (with a
    /// `callback`) a receive thread that owns it.
    pub(super) fn assemble(
        session: Arc<Session>,
        callback: Option<Callback>,
        burst: usize,
        trust: Trust,
    ) -> Result<Channel> {
        let control = Control::new(session);
        let sender = Sender::new(control.clone())?;
        let receiver = Receiver::new(control, trust)?;
        let (receiver, receive_thread) = match callback {
            None => (Some(receiver), None),
            Some(cb) => (None, Some(ReceiveThread::spawn(receiver, burst, cb)?)),
        };
        Ok(Channel {
            receive_thread,
            receiver,
            sender,
        })
    }

    /// Sends `msg`; see [`Sender::send`].
    #[inline]
    pub fn send(&mut self, msg: &[u8], timeout: impl Into<Timeout>) -> Result<()> {
        self.sender.send(msg, timeout)
    }

    /// Sends several messages with one free-space check; see [`Sender::send_batch`].
    pub fn send_batch(&mut self, msgs: &[&[u8]], timeout: impl Into<Timeout>) -> Result<usize> {
        self.sender.send_batch(msgs, timeout)
    }

    /// Receives in place; see [`Receiver::recv`]. [`Error::ReceiverInUse`] when a
    /// callback thread receives for this side.
    #[inline]
    pub fn recv(&mut self, timeout: impl Into<Timeout>) -> Result<RecvGuard<'_>> {
        self.receiver_mut()?.recv(timeout)
    }

    /// Receives into `buf`; see [`Receiver::recv_into`].
    pub fn recv_into(&mut self, buf: &mut Vec<u8>, timeout: impl Into<Timeout>) -> Result<usize> {
        self.receiver_mut()?.recv_into(buf, timeout)
    }

    /// Receives up to `max` messages with one release; see [`Receiver::recv_batch`].
    pub fn recv_batch(
        &mut self,
        max: usize,
        timeout: impl Into<Timeout>,
        f: impl FnMut(&[u8]),
    ) -> Result<usize> {
        self.receiver_mut()?.recv_batch(max, timeout, f)
    }

    /// Live settings and statistics (poll intervals, wait modes, stats, peer state).
    pub fn control(&self) -> &Control {
        self.sender.control()
    }

    /// The sending half, for calls only it has (such as [`Sender::send_with`]).
    pub fn sender(&mut self) -> &mut Sender {
        &mut self.sender
    }

    /// Whether a receive thread was started and is still running. On side B it ends when
    /// side A closes or dies (after delivering everything A sent) unless the channel
    /// reconnects; on side A it goes on and serves the next side B. Either ends on
    /// corruption or if the callback panics; an error is reported as
    /// [`LinkEvent::ReceiveStopped`](super::LinkEvent::ReceiveStopped) and kept for
    /// [`Channel::take_receive_error`].
    pub fn receive_thread_running(&self) -> bool {
        self.receive_thread
            .as_ref()
            .is_some_and(|t| !t.is_finished())
    }

    /// The error that ended the receive thread, if one did (reported once).
    pub fn take_receive_error(&self) -> Option<Error> {
        self.receive_thread
            .as_ref()
            .and_then(ReceiveThread::take_error)
    }

    /// Splits the channel into halves that can move to different threads. Fails with
    /// [`Error::ReceiverInUse`] when a callback thread owns the receiving half.
    pub fn split(mut self) -> Result<(Sender, Receiver)> {
        let receiver = self.receiver.take().ok_or(Error::ReceiverInUse)?;
        let Channel { sender, .. } = self;
        Ok((sender, receiver))
    }

    #[inline]
    pub(crate) fn receiver_mut(&mut self) -> Result<&mut Receiver> {
        // A match, not `ok_or`: the error is built only when there is no receiver (`ok_or`
        // costs ~20 instructions a receive, building and dropping it).
        match self.receiver.as_mut() {
            Some(receiver) => Ok(receiver),
            None => Err(Error::ReceiverInUse),
        }
    }
}
