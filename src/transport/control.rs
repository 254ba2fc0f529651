//! Live settings and statistics of a channel: poll intervals, wait modes, peer state,
//! counters.

use std::sync::Arc;
use std::time::Duration;

use super::link::{Link, Side};
use super::session::Session;
use crate::error::{Error, Result};
use crate::layout::ControlBlock;
use crate::ring::Region;
use crate::wait::MAX_POLL_US;
use crate::ring::RingMemory;
use crate::ring_info::RingInfo;
use crate::sync::Ordering;
use crate::wait::WaitMode;

/// Live settings and statistics of a channel, shared by [`Channel`](super::Channel),
/// [`Sender`](super::Sender) and [`Receiver`](super::Receiver). Cheap to clone; changes
/// take effect at each side's next idle wait. After a reconnection it speaks for the new
/// link.
#[derive(Clone)]
pub struct Control {
    pub(crate) session: Arc<Session>,
    /// Shared by every user handle (this and its clones, in each `Sender`, `Receiver` and
    /// `Channel`): when the last one drops, the side closes on that thread.
    _owner: Arc<Owner>,
}

/// Closes its session when dropped: the last user handle is gone. Internal threads hold
/// the session only for moments, and never an `Owner`, so none of them can be the one
/// whose drop closes the channel (the process may be exiting under them).
struct Owner(Arc<Session>);

impl Drop for Owner {
    fn drop(&mut self) {
        self.0.shutdown();
    }
}

impl Control {
    /// The first user handle of a started session.
    pub(super) fn new(session: Arc<Session>) -> Control {
        Control {
            _owner: Arc::new(Owner(session.clone())),
            session,
        }
    }

    fn link(&self) -> Arc<Link> {
        self.session.current().0
    }

    /// The channel's name.
    pub fn name(&self) -> &str {
        &self.session.name
    }
    /// Whether this process is side A (the creator).
    pub fn is_creator(&self) -> bool {
        self.session.side == Side::A
    }
    /// Which side this process is.
    pub fn side(&self) -> Side {
        self.session.side
    }
    /// The creation generation shared by both segments (changes when side B reconnects to
    /// a restarted side A).
    pub fn generation(&self) -> u64 {
        self.link().generation
    }
    /// Payload bytes per slot: messages up to this length take one slot each.
    pub fn slot_size(&self) -> usize {
        self.link().outgoing().slot_size()
    }
    /// The largest message the channel carries (either direction: both rings have one
    /// geometry): one that covers every slot, `slot_size + (slot_count - 1) * slot_stride`
    /// bytes (at most `u32::MAX - 1`).
    pub fn max_message_len(&self) -> usize {
        self.link().outgoing().max_message_len()
    }
    /// Slots per direction.
    pub fn slot_count(&self) -> usize {
        self.link().outgoing().slot_count()
    }
    /// This side's poll interval (zero = busy spin in [`WaitMode::Poll`]).
    pub fn local_poll_interval(&self) -> Duration {
        self.poll_of(self.session.side)
    }
    /// The peer's poll interval.
    pub fn remote_poll_interval(&self) -> Duration {
        self.poll_of(self.session.side.peer())
    }
    /// Changes this side's poll interval (zero = busy spin; at most one second).
    pub fn set_local_poll_interval(&self, interval: Duration) -> Result<()> {
        self.set_poll_of(self.session.side, interval)
    }
    /// Asks the peer to change its poll interval; it applies at the peer's next idle wait.
    pub fn set_remote_poll_interval(&self, interval: Duration) -> Result<()> {
        self.set_poll_of(self.session.side.peer(), interval)
    }
    /// This side's wait mode.
    pub fn local_wait_mode(&self) -> WaitMode {
        self.mode_of(self.session.side)
    }
    /// The peer's wait mode.
    pub fn remote_wait_mode(&self) -> WaitMode {
        self.mode_of(self.session.side.peer())
    }
    /// Changes this side's wait mode; a waiter sleeping now is woken to apply it.
    pub fn set_local_wait_mode(&self, mode: WaitMode) {
        self.set_mode_of(self.session.side, mode);
    }
    /// Asks the peer to change its wait mode; a peer sleeping now is woken to apply it.
    pub fn set_remote_wait_mode(&self, mode: WaitMode) {
        self.set_mode_of(self.session.side.peer(), mode);
    }
    /// Whether the peer has shut down.
    pub fn peer_closed(&self) -> bool {
        self.link().peer_closed()
    }
    /// The peer's state: not attached yet, alive, closed, or dead.
    pub fn peer_state(&self) -> PeerState {
        let link = self.link();
        match link.peer_gone() {
            Some(Error::Closed) => PeerState::Closed,
            Some(_) => PeerState::Dead,
            None if link
                .incoming()
                .header()
                .producer
                .pid
                .load(Ordering::Relaxed)
                == 0 =>
            {
                PeerState::NotAttached
            }
            None => PeerState::Alive,
        }
    }
    /// Whether the peer is attached and running.
    pub fn peer_alive(&self) -> bool {
        self.peer_state() == PeerState::Alive
    }
    /// A snapshot of both directions' counters.
    pub fn stats(&self) -> Stats {
        let link = self.link();
        Stats {
            outgoing: DirectionStats::read(link.outgoing(), link.control(), link.side),
            incoming: DirectionStats::read(link.incoming(), link.control(), link.side.peer()),
        }
    }

    fn poll_of(&self, side: Side) -> Duration {
        let us = self.link().control().poll_us[side as usize].load(Ordering::Relaxed);
        Duration::from_micros(us.min(MAX_POLL_US).into())
    }
    fn set_poll_of(&self, side: Side, interval: Duration) -> Result<()> {
        let us = poll_to_us(interval)?;
        let link = self.link();
        link.set_control_word(|c| &c.poll_us[side as usize], us);
        link.wake_everyone();
        Ok(())
    }
    fn mode_of(&self, side: Side) -> WaitMode {
        WaitMode::from_word(self.link().control().wait_mode[side as usize].load(Ordering::Relaxed))
    }
    fn set_mode_of(&self, side: Side, mode: WaitMode) {
        let link = self.link();
        link.set_control_word(|c| &c.wait_mode[side as usize], mode as u32);
        link.wake_everyone();
    }
}

/// What this side knows about the other.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PeerState {
    /// No peer has attached yet (side A before side B opens).
    NotAttached,
    /// The peer is attached and its process is running.
    Alive,
    /// The peer shut down cleanly.
    Closed,
    /// The peer's process died without shutting down.
    Dead,
}

/// Counters of one direction, read from its header (an advisory snapshot: the two
/// sides update them concurrently).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DirectionStats {
    /// Payload bytes per slot.
    pub slot_size: usize,
    /// Slots in the ring.
    pub slot_count: usize,
    /// Slots published and not yet released.
    pub used_slots: usize,
    /// Whether the writing side of this direction has shut down.
    pub producer_closed: bool,
    /// Messages published so far.
    pub messages_sent: u64,
    /// Payload bytes published so far.
    pub bytes_sent: u64,
    /// Messages consumed so far.
    pub messages_received: u64,
    /// Payload bytes consumed so far.
    pub bytes_received: u64,
}

impl DirectionStats {
    fn read(region: &Region, control: &ControlBlock, producer: Side) -> DirectionStats {
        let g = region.geometry();
        let ring = RingInfo::read(region.header(), g.slot_count);
        DirectionStats {
            slot_size: g.slot_size,
            slot_count: g.slot_count,
            used_slots: ring.used_slots as usize,
            producer_closed: control.closed[producer as usize].load(Ordering::Relaxed) != 0,
            messages_sent: ring.messages_sent,
            bytes_sent: ring.bytes_sent,
            messages_received: ring.messages_received,
            bytes_received: ring.bytes_received,
        }
    }
}

/// Both directions' counters, as seen from this side.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stats {
    /// The ring this side writes.
    pub outgoing: DirectionStats,
    /// The ring this side reads.
    pub incoming: DirectionStats,
}

/// A poll interval in whole microseconds, at most [`MAX_POLL_US`].
pub(super) fn poll_to_us(interval: Duration) -> Result<u32> {
    let us = interval.as_micros();
    if us > MAX_POLL_US as u128 {
        return Err(Error::invalid(
            "poll_interval",
            format!("{interval:?} is above the limit of {MAX_POLL_US} µs"),
        ));
    }
    Ok(us as u32)
}
