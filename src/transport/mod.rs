//! The duplex channel: side A creates it, side B opens it; each side sends on one ring and
//! receives on the other, with live wait settings, stats, shutdown, peer liveness and
//! (side B) reconnection.
//!
//! - `builder`: [`ChannelBuilder`], create and open;
//! - `attach`: opening both segments and validating them (side B, and `inspect`);
//! - `link`: one attachment to the two segments;
//! - `session`: a side's current link, peer events, reconnection;
//! - `control`: live settings and statistics ([`Control`]);
//! - `sender`: [`Sender`], the sending half;
//! - `receiver`: [`Receiver`] and [`RecvGuard`], the receiving half;
//! - `receive_thread`: the optional callback thread that owns a [`Receiver`].

pub(crate) mod attach;
mod builder;
mod control;
mod link;
mod receive_thread;
mod receiver;
mod sender;
mod session;

use std::sync::Arc;
use std::time::Duration;

pub use builder::{ChannelBuilder, DEFAULT_BURST, DEFAULT_SLOT_COUNT, DEFAULT_SLOT_SIZE};
pub use control::{Control, DirectionStats, PeerState, Stats};
pub use receiver::{Receiver, RecvGuard};
pub use sender::Sender;
pub use session::{EventCallback, LinkEvent, OnDisconnect, ReconnectPolicy};

use crate::error::{Error, Result};
use crate::layout::MAX_POLL_US;
use crate::segment::{self, Direction};
use crate::wait::Timeout;
use receive_thread::ReceiveThread;
use session::Session;

/// Which end of a channel this process is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// The creator: writes `<name>.fs.a2b`, reads `<name>.fs.b2a`.
    A = 0,
    /// The opener: writes `<name>.fs.b2a`, reads `<name>.fs.a2b`.
    B = 1,
}

impl Side {
    fn peer(self) -> Side {
        match self {
            Side::A => Side::B,
            Side::B => Side::A,
        }
    }
}

/// The callback the receive thread calls for each incoming message; the slice is valid
/// only during the call.
pub type Callback = Box<dyn FnMut(&[u8]) + Send + 'static>;

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
    /// Starts configuring channel `name` (1..=248 bytes, no '/').
    pub fn builder(name: impl Into<String>) -> ChannelBuilder {
        ChannelBuilder::new(name.into())
    }

    fn assemble(
        session: Arc<Session>,
        callback: Option<Callback>,
        burst: usize,
    ) -> Result<Channel> {
        let control = Control { session };
        let sender = Sender::new(control.clone())?;
        let receiver = Receiver::new(control)?;
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

    /// Whether a receive thread was started and is still running. It ends when the peer
    /// closes or dies (after delivering everything the peer sent) unless the channel
    /// reconnects, on corruption, or if the callback panics.
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

    pub(crate) fn receiver_mut(&mut self) -> Result<&mut Receiver> {
        self.receiver.as_mut().ok_or(Error::ReceiverInUse)
    }
}

/// Removes both segments of channel `name`. Returns `true` when at least one existed.
pub fn remove_channel(name: &str) -> Result<bool> {
    segment::validate_name(name)?;
    let a = segment::remove(&Direction::AToB.segment_name(name))?;
    let b = segment::remove(&Direction::BToA.segment_name(name))?;
    Ok(a || b)
}

/// A poll interval in whole microseconds, at most [`MAX_POLL_US`].
fn poll_to_us(interval: Duration) -> Result<u32> {
    let us = interval.as_micros();
    if us > MAX_POLL_US as u128 {
        return Err(Error::invalid(
            "poll_interval",
            format!("{interval:?} is above the limit of {MAX_POLL_US} µs"),
        ));
    }
    Ok(us as u32)
}
