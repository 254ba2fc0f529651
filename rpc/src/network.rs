//! [`ShmNetwork`]: a capnp-rpc `VatNetwork` over a duplex channel, one RPC message per
//! ring message. Outgoing messages are framed straight into the ring
//! (`send_message`: one copy, from the builder's segments; messages longer than a slot
//! cover several); while the ring is full they wait in order in a queue that the
//! network's driver sends with `send_message_async`. Incoming messages are waited for and
//! copied once into word-aligned memory of their own by `receive.rs` (a polling window
//! when one is set, then an io_uring `FUTEX_WAIT` in tokio's reactor, or the channel's
//! `recv_async` where io_uring is refused; README, "RPC"): capnp-rpc keeps an incoming
//! message as long as the call it carries runs (a long-running call keeps its
//! parameters), and releasing ring slots out of order is not possible, so a message
//! cannot stay in its slot.
//!
//! The peer's departure reaches capnp-rpc as a clean end of stream (`Closed`) or as a
//! `Disconnected` error (`PeerDead`, and anything else the channel reports), so every
//! pending call fails with `capnp::ErrorKind::Disconnected` and nothing hangs.

use std::cell::{Cell, RefCell};
use std::rc::{Rc, Weak};

use capnp::capability::Promise;
use capnp::message::{Builder, HeapAllocator, ReaderOptions};
use capnp::serialize::BufferSegments;
use capnp_rpc::rpc_twoparty_capnp::Side;
use capnp_shm_transport::{Channel, Error as ChannelError, Receiver, SendMessage, Sender, Timeout};
use futures::channel::{mpsc, oneshot};
use futures::future::Either;
use futures::{FutureExt, StreamExt};

use crate::receive::{next_message, Aligned};
use crate::spin::{default_spin, SpinPolicy};

type Message = Rc<Builder<HeapAllocator>>;

/// A message that found no room (or others waiting before it), for the driver to send.
type Queued = (Message, oneshot::Sender<capnp::Result<()>>);

/// How a send that failed for good (the peer is gone, a message larger than the ring)
/// ends the connection: the pending receive fails with its error, so capnp-rpc fails
/// every pending call with it, as when a socket write fails under its two-party network.
struct Failure {
    tx: RefCell<Option<oneshot::Sender<capnp::Error>>>,
    rx: RefCell<Option<oneshot::Receiver<capnp::Error>>>,
}

impl Failure {
    fn new() -> Rc<Failure> {
        let (tx, rx) = oneshot::channel();
        Rc::new(Failure {
            tx: RefCell::new(Some(tx)),
            rx: RefCell::new(Some(rx)),
        })
    }

    /// Ends the connection with `e` (the first failure counts).
    fn fail(&self, e: capnp::Error) {
        if let Some(tx) = self.tx.borrow_mut().take() {
            let _ = tx.send(e);
        }
    }
}

/// A transport error as capnp-rpc sees it: `Disconnected` for a departed peer, `Failed`
/// otherwise.
pub(crate) fn to_capnp(e: ChannelError) -> capnp::Error {
    match e {
        ChannelError::Closed
        | ChannelError::PeerDead
        | ChannelError::Reconnecting
        | ChannelError::GaveUp => capnp::Error::disconnected(e.to_string()),
        other => capnp::Error::failed(other.to_string()),
    }
}

struct Incoming(capnp::message::Reader<BufferSegments<Aligned>>);

impl capnp_rpc::IncomingMessage for Incoming {
    fn get_body(&self) -> capnp::Result<capnp::any_pointer::Reader<'_>> {
        self.0.get_root()
    }
}

/// The sending half, lent to one sender at a time (the driver takes it while it waits).
type SenderSlot = Rc<RefCell<Option<Sender>>>;

struct Outgoing {
    message: Builder<HeapAllocator>,
    sender: SenderSlot,
    queue: mpsc::UnboundedSender<Queued>,
    queued: Rc<Cell<usize>>,
    failure: Rc<Failure>,
}

impl capnp_rpc::OutgoingMessage for Outgoing {
    fn get_body(&mut self) -> capnp::Result<capnp::any_pointer::Builder<'_>> {
        self.message.get_root()
    }

    fn get_body_as_reader(&self) -> capnp::Result<capnp::any_pointer::Reader<'_>> {
        self.message.get_root_as_reader()
    }

    fn send(self: Box<Self>) -> (Promise<(), capnp::Error>, Message) {
        let Outgoing {
            message,
            sender,
            queue,
            queued,
            failure,
        } = *self;
        let message = Rc::new(message);
        // Straight into the ring when nothing waits before it and there is room.
        if queued.get() == 0 {
            if let Some(sender) = sender.borrow_mut().as_mut() {
                match sender.send_message(&message, Timeout::Immediate) {
                    Ok(()) => return (Promise::ok(()), message),
                    Err(ChannelError::Timeout { .. }) => {}
                    Err(e) => {
                        let e = to_capnp(e);
                        failure.fail(e.clone());
                        return (Promise::err(e), message);
                    }
                }
            }
        }
        let (done, sent) = oneshot::channel();
        queued.set(queued.get() + 1);
        if queue.unbounded_send((message.clone(), done)).is_err() {
            queued.set(queued.get() - 1);
            let gone = capnp::Error::disconnected("the connection is shut down".into());
            return (Promise::err(gone), message);
        }
        let sent = sent.map(|r| {
            r.unwrap_or_else(|_| Err(capnp::Error::disconnected("connection dropped".into())))
        });
        (Promise::from_future(sent), message)
    }

    fn take(self: Box<Self>) -> Builder<HeapAllocator> {
        self.message
    }

    fn size_in_words(&self) -> usize {
        self.message.size_in_words()
    }
}

struct Inner {
    sender: SenderSlot,
    receiver: Rc<RefCell<Option<Receiver>>>,
    queue: mpsc::UnboundedSender<Queued>,
    queued: Rc<Cell<usize>>,
    failure: Rc<Failure>,
    side: Side,
    options: ReaderOptions,
    spin: Rc<Cell<SpinPolicy>>,
    uring: Rc<RefCell<Option<crate::uring::UringWait>>>,
    on_drop: Option<oneshot::Sender<()>>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        if let Some(on_drop) = self.on_drop.take() {
            let _ = on_drop.send(());
        }
    }
}

struct Connection(Rc<RefCell<Inner>>);

impl capnp_rpc::Connection<Side> for Connection {
    fn get_peer_vat_id(&self) -> Side {
        self.0.borrow().side
    }

    fn new_outgoing_message(
        &mut self,
        first_segment_words: u32,
    ) -> Box<dyn capnp_rpc::OutgoingMessage> {
        let inner = self.0.borrow();
        Box::new(Outgoing {
            message: Builder::new(HeapAllocator::new().first_segment_words(first_segment_words)),
            sender: inner.sender.clone(),
            queue: inner.queue.clone(),
            queued: inner.queued.clone(),
            failure: inner.failure.clone(),
        })
    }

    fn receive_incoming_message(
        &mut self,
    ) -> Promise<Option<Box<dyn capnp_rpc::IncomingMessage>>, capnp::Error> {
        let (slot, options, failure, spin, uring_slot) = {
            let inner = self.0.borrow();
            let spin = inner.spin.clone();
            let uring = inner.uring.clone();
            (
                inner.receiver.clone(),
                inner.options,
                inner.failure.clone(),
                spin,
                uring,
            )
        };
        let mut uring = uring_slot.borrow_mut().take();
        let taken = (slot.borrow_mut().take(), failure.rx.borrow_mut().take());
        let (Some(mut receiver), Some(mut failed)) = taken else {
            return Promise::err(capnp::Error::failed("connection failed or busy".into()));
        };
        let mut policy = spin.get();
        let deadline = policy.begin(std::time::Instant::now());
        spin.set(policy);
        Promise::from_future(async move {
            let received = {
                let next = std::pin::pin!(next_message(&mut receiver, &spin, deadline, &mut uring));
                match futures::future::select(next, &mut failed).await {
                    Either::Left((msg, _)) => msg,
                    Either::Right((failure, _)) => {
                        return Err(failure.unwrap_or_else(|_| {
                            capnp::Error::disconnected("connection dropped".into())
                        }))
                    }
                }
            };
            *slot.borrow_mut() = Some(receiver);
            *uring_slot.borrow_mut() = uring;
            *failure.rx.borrow_mut() = Some(failed);
            match received {
                Ok(bytes) => {
                    let segments = BufferSegments::new(bytes, options)?;
                    let reader = capnp::message::Reader::new(segments, options);
                    Ok(Some(
                        Box::new(Incoming(reader)) as Box<dyn capnp_rpc::IncomingMessage>
                    ))
                }
                // The peer closed after its last message: the stream's clean end.
                Err(ChannelError::Closed) => Ok(None),
                Err(e) => Err(to_capnp(e)),
            }
        })
    }

    fn shutdown(&mut self, result: capnp::Result<()>) -> Promise<(), capnp::Error> {
        // Everything queued is sent by the driver; then the channel closes when dropped.
        let _ = result;
        let inner = self.0.borrow();
        inner.queue.close_channel();
        Promise::ok(())
    }
}

/// A capnp-rpc network of two vats over one duplex channel: give it to
/// `capnp_rpc::RpcSystem::new`, as capnp-rpc's `twoparty::VatNetwork` for a socket.
/// `Side::Server` for the side that offers the bootstrap capability, `Side::Client` for
/// the other (either channel side may be either).
pub struct ShmNetwork {
    connection: Option<Connection>,
    weak: Weak<RefCell<Inner>>,
    driver: futures::future::Shared<Promise<(), capnp::Error>>,
    side: Side,
}

impl ShmNetwork {
    /// A network over `channel` (its receiver must not be taken by a callback thread),
    /// reading incoming messages with `options`, polling for each incoming message for
    /// [`default_spin`](crate::default_spin) before parking (see [`ShmNetwork::set_spin`]).
    pub fn new(
        channel: Channel,
        side: Side,
        options: ReaderOptions,
    ) -> Result<ShmNetwork, ChannelError> {
        let (mut sender, mut receiver) = channel.split()?;
        // The polling window is this network's own (`spin.rs`): once it is over, the
        // receive parks at once.
        receiver.set_async_spin(std::time::Duration::ZERO);
        sender.set_async_spin(std::time::Duration::ZERO);
        let sender: SenderSlot = Rc::new(RefCell::new(Some(sender)));
        let (queue, mut waiting) = mpsc::unbounded::<Queued>();
        let queued = Rc::new(Cell::new(0));
        let (on_drop, dropped) = oneshot::channel();
        let failure = Failure::new();
        let driver = {
            let (sender, queued, failure) = (sender.clone(), queued.clone(), failure.clone());
            async move {
                while let Some((message, done)) = waiting.next().await {
                    let taken = sender.borrow_mut().take();
                    let sent = match taken {
                        Some(mut s) => {
                            let sent = s.send_message_async(&message).await;
                            *sender.borrow_mut() = Some(s);
                            sent.map_err(to_capnp)
                        }
                        None => Err(capnp::Error::failed("sender lent twice".into())),
                    };
                    queued.set(queued.get() - 1);
                    if let Err(e) = &sent {
                        failure.fail(e.clone());
                        let _ = done.send(Err(e.clone()));
                        return sent;
                    }
                    let _ = done.send(sent);
                }
                let _ = dropped.await;
                Ok(())
            }
        };
        let inner = Rc::new(RefCell::new(Inner {
            sender,
            receiver: Rc::new(RefCell::new(Some(receiver))),
            queue,
            queued,
            failure,
            side,
            options,
            spin: Rc::new(Cell::new(SpinPolicy::new(default_spin()))),
            uring: Rc::new(RefCell::new(crate::uring::UringWait::if_enabled())),
            on_drop: Some(on_drop),
        }));
        Ok(ShmNetwork {
            weak: Rc::downgrade(&inner),
            connection: Some(Connection(inner)),
            driver: Promise::from_future(driver).shared(),
            side,
        })
    }
}

impl ShmNetwork {
    /// Sets how long each receive polls the ring on the executor thread before it parks
    /// (adaptive: windows that catch nothing make the next receives park at once; zero:
    /// always park at once). See [`set_default_spin`](crate::set_default_spin).
    ///
    /// ```
    /// # use capnp_shm_transport::Channel;
    /// # use capnp_rpc::rpc_twoparty_capnp::Side;
    /// # let name = format!("cst-doc-rpc-spin-{}", std::process::id());
    /// let channel = Channel::builder(&name).slot_size(256).create()?;
    /// let mut network = capnp_shm_rpc::ShmNetwork::new(
    ///     channel, Side::Server, capnp::message::ReaderOptions::new())?;
    /// network.set_spin(std::time::Duration::ZERO);
    /// # drop(network);
    /// # capnp_shm_transport::remove_channel(&name)?;
    /// # Ok::<(), capnp_shm_transport::Error>(())
    /// ```
    pub fn set_spin(&mut self, window: std::time::Duration) {
        if let Some(inner) = self.weak.upgrade() {
            inner.borrow().spin.set(SpinPolicy::new(window));
        }
    }
}

impl capnp_rpc::VatNetwork<Side> for ShmNetwork {
    fn connect(&mut self, host: Side) -> Option<Box<dyn capnp_rpc::Connection<Side>>> {
        if host == self.side {
            return None;
        }
        let inner = self.weak.upgrade()?;
        Some(Box::new(Connection(inner)))
    }

    fn accept(&mut self) -> Promise<Box<dyn capnp_rpc::Connection<Side>>, capnp::Error> {
        match self.connection.take() {
            Some(c) => Promise::ok(Box::new(c) as Box<dyn capnp_rpc::Connection<Side>>),
            None => Promise::from_future(futures::future::pending()),
        }
    }

    fn drive_until_shutdown(&mut self) -> Promise<(), capnp::Error> {
        Promise::from_future(self.driver.clone())
    }
}
