//! A duplex single-producer/single-consumer message transport between two processes on
//! one Linux machine, over POSIX shared memory, with no system call on the data path.
//!
//! Side A [creates](ChannelBuilder::create) a channel: two segments under `/dev/shm`,
//! `<name>.fs.a2b` (A writes, B reads) and `<name>.fs.b2a` (B writes, A reads), each a
//! header and a power-of-two ring of fixed-size slots. Side B [opens](ChannelBuilder::open)
//! it, waiting up to a timeout for A. Each side then [sends](Channel::send) byte messages
//! of up to `slot_size` bytes and [receives](Channel::recv) the other's, in place.
//!
//! ```
//! use std::time::Duration;
//! use capnp_shm_transport::{Channel, Error};
//!
//! # let name = format!("doc-lib-{}", std::process::id());
//! let mut a = Channel::builder(&name).slot_size(64).slot_count(16).create()?;
//! let mut b = Channel::builder(&name).open_timeout(Duration::from_secs(1)).open()?;
//!
//! a.send(b"ping", Duration::from_millis(10))?;
//! {
//!     let msg = b.recv(Duration::from_secs(1))?; // borrowed in place from the slot
//!     assert_eq!(&*msg, b"ping");
//! } // dropping the guard hands the slot back
//! b.send(b"pong", Duration::from_millis(10))?;
//! let mut buf = Vec::new();
//! a.recv_into(&mut buf, Duration::from_secs(1))?;
//! assert_eq!(buf, b"pong");
//!
//! // Nothing more is coming: a zero timeout tries once.
//! assert!(matches!(a.recv(Duration::ZERO), Err(Error::Timeout { .. })));
//! drop(b); // B shuts down; A's receives now report it.
//! assert!(matches!(a.recv(Duration::from_secs(1)), Err(Error::Closed)));
//! # Ok::<(), Error>(())
//! ```
//!
//! The layers, one module each (see `docs/LAYOUT.md` for the bytes and orderings):
//! segment (named shared memory) → layout (header contract and validation) → ring (the
//! SPSC protocol) → wait (spin / sleep with deadlines) → transport (the duplex channel)
//! → receiver (the optional callback thread).
//!
//! Shared memory is untrusted input: every index, length and flag read from it is
//! validated, and a bad value is an [`Error::Corrupt`], never undefined behaviour or an
//! out-of-bounds access.

#![deny(unsafe_op_in_unsafe_fn)]
#![warn(missing_docs, clippy::undocumented_unsafe_blocks)]

mod sync;

mod error;
#[cfg(not(loom))]
mod futex;
#[cfg(not(loom))]
mod layout;
#[cfg(not(loom))]
mod receiver;
#[cfg(not(loom))]
mod region;
mod ring;
#[cfg(not(loom))]
mod segment;
#[cfg(not(loom))]
mod transport;
#[cfg(not(loom))]
mod wait;

pub use error::{Corruption, Error, Result};
#[cfg(not(loom))]
pub use layout::{Geometry, MAX_POLL_US, MAX_SLOT_COUNT, MAX_SLOT_SIZE};
#[cfg(not(loom))]
pub use segment::{validate_name, Direction, MAX_NAME_LEN};
#[cfg(not(loom))]
pub use transport::{
    remove_channel, Callback, Channel, ChannelBuilder, Control, DirectionStats, Receiver,
    RecvGuard, Sender, Side, Stats, DEFAULT_BURST, DEFAULT_SLOT_COUNT, DEFAULT_SLOT_SIZE,
};
#[cfg(not(loom))]
pub use wait::{lower_timer_slack, Timeout, WaitMode, SLEEP_SLICE, SPIN_PHASE, YIELDS};

/// The README's examples, compiled and run as doctests so they stay true.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
