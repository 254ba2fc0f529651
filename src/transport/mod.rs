//! The duplex channel: side A creates it, side B opens it; each side sends on one ring and
//! receives on the other, with live wait settings, stats, shutdown, peer liveness and
//! (side B) reconnection.
//!
//! Its files, top down (each imports only from files below it, none from this one):
//! - `builder`: [`ChannelBuilder`], create and open, and [`remove_channel`];
//! - `channel`: [`Channel`], one side's sender, and its receiver or receive thread;
//! - `receive_thread`: the optional callback thread ([`Callback`]) that owns a [`Receiver`];
//! - `sender`: [`Sender`], the sending half;
//! - `receiver`: [`Receiver`] and [`RecvGuard`], the receiving half;
//! - `async_io`: the async calls (`recv_async`, `send_async`, ...) on the halves and the
//!   channel;
//! - `ready`: the future those calls await (check, spin, park; cancellation-safe);
//! - `parker`: the per-half waiter thread that sleeps on the futex for a parked task;
//! - `control`: live settings and statistics ([`Control`]);
//! - `session`: a side's current link, peer events, reconnection;
//! - `attach`: opening both segments and validating them (side B, and `inspect`);
//! - `link`: one attachment to the two segments, and which [`Side`] it is.

pub(crate) mod attach;
mod builder;
mod channel;
mod control;
mod external_wait;
mod link;
mod parker;
mod ready;
mod receive_thread;
mod receiver;
mod sender;
mod session;
mod async_io;

pub use builder::{
    remove_channel, ChannelBuilder, DEFAULT_BURST, DEFAULT_SLOT_COUNT, DEFAULT_SLOT_SIZE,
};
pub use channel::Channel;
pub use control::{Control, DirectionStats, PeerState, Stats};
pub use external_wait::{Announced, SleepWord};
pub use link::Side;
pub use receive_thread::Callback;
pub use receiver::{Receiver, RecvGuard, Trust};
pub use sender::Sender;
pub use session::{EventCallback, LinkEvent, OnDisconnect, ReconnectPolicy};
