//! One side's session: the current [`Link`], and what happens when the peer goes away
//! (events, and for side B, reconnection to a restarted side A).
//!
//! The session outlives links. When side A goes away, side B's reconnection thread
//! re-attaches under the [`ReconnectPolicy`] to a restarted side A (a new generation), swaps
//! the new link in and bumps the epoch; each [`Sender`](super::Sender) and
//! [`Receiver`](super::Receiver) notices it (one Acquire load per call) and moves over. An
//! old side A seen alive again stops the reconnection: B goes on over the same link.

use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use super::attach::{try_attach, Attach};
use super::link::{wake_regions, Link, Side};
use crate::error::{Error, Result};
use crate::liveness::{Monitor, PeerChange, Watched};
use crate::sync::{AtomicBool, AtomicU32, AtomicU64, AtomicU8, Ordering};
use crate::wait::{Policy, WaitMode, Waiter};

/// How side B re-attaches after side A died or closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReconnectPolicy {
    /// Pause between attempts. Default 100 ms.
    pub retry_interval: Duration,
    /// Attempts before giving up; 0 = unlimited. Default 50.
    pub max_attempts: u32,
    /// Total time before giving up; zero = unlimited. Default 5 s.
    pub max_wait: Duration,
}

impl Default for ReconnectPolicy {
    fn default() -> Self {
        ReconnectPolicy {
            retry_interval: Duration::from_millis(100),
            max_attempts: 50,
            max_wait: Duration::from_secs(5),
        }
    }
}

impl ReconnectPolicy {
    /// Never gives up (retrying every 100 ms).
    pub fn unlimited() -> Self {
        ReconnectPolicy {
            max_attempts: 0,
            max_wait: Duration::ZERO,
            ..Self::default()
        }
    }
}

/// What sends and receives do once the peer is gone.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OnDisconnect {
    /// Fail at once: [`Error::Closed`] or [`Error::PeerDead`] without reconnection, and
    /// [`Error::Reconnecting`] while a reconnection runs in the background.
    #[default]
    Fail,
    /// Wait (within each call's own timeout) while the reconnection policy runs, then go
    /// on over the new link, or fail with [`Error::GaveUp`] if the policy gave up.
    WaitForReconnect,
    /// Reconnect with no limits and wait (within each call's own timeout) as long as it
    /// takes.
    KeepWaiting,
}

/// What happened to the connection, reported to the `on_event` callback from the
/// liveness thread (and [`LinkEvent::ReceiveStopped`] from the receive thread).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum LinkEvent {
    /// The peer's process died without closing.
    PeerDead,
    /// The peer closed the channel.
    PeerClosed,
    /// A new peer process attached after the previous one died or closed (side A).
    PeerAttached,
    /// Side B tries to re-attach (attempt numbers start at 1).
    Reconnecting {
        /// This attempt's number.
        attempt: u32,
    },
    /// Side B re-attached to a restarted side A.
    Reconnected {
        /// The new channel generation.
        generation: u64,
    },
    /// Side B gave up re-attaching under its policy.
    GaveUp {
        /// Attempts made.
        attempts: u32,
    },
    /// The receive thread (see `ChannelBuilder::on_receive`) stopped on an error: corrupt
    /// shared memory, or a peer gone for good. `Channel::take_receive_error` says which.
    /// Reported from the receive thread.
    ReceiveStopped,
}

/// The event callback.
pub type EventCallback = Box<dyn FnMut(LinkEvent) + Send + 'static>;

/// Settings a session needs to (re)attach.
pub(crate) struct SessionConfig {
    pub dead_after: Duration,
    pub poll_us: u32,
    pub wait_mode: u32,
    /// Side B only: reconnect when side A goes away.
    pub reconnect: Option<ReconnectPolicy>,
    pub on_disconnect: OnDisconnect,
}

const CONNECTED: u8 = 0;
const RECONNECTING: u8 = 1;
const GAVE_UP: u8 = 2;

pub(crate) struct Session {
    pub name: String,
    pub side: Side,
    config: SessionConfig,
    events: Option<Mutex<EventCallback>>,
    link: Mutex<Arc<Link>>,
    /// Bumped (Release) after each reconnection has swapped in a new link.
    epoch: AtomicU64,
    state: AtomicU8,
    /// Numbers reconnection threads: a thread whose number is no longer the latest stops.
    reconnects: AtomicU64,
    /// Set once the last user handle is gone: no reconnection starts or installs after it.
    shut: AtomicBool,
}

impl Session {
    /// Starts a session over its first link (and that link's liveness monitor).
    pub(crate) fn start(
        link: Link,
        mut config: SessionConfig,
        events: Option<EventCallback>,
    ) -> Result<Arc<Session>> {
        if config.on_disconnect == OnDisconnect::KeepWaiting {
            // No limits, at the user's retry interval if one was given.
            let base = config.reconnect.unwrap_or_default();
            config.reconnect = Some(ReconnectPolicy {
                max_attempts: 0,
                max_wait: Duration::ZERO,
                ..base
            });
        }
        if link.side == Side::A {
            config.reconnect = None;
        }
        let link = Arc::new(link);
        let session = Arc::new(Session {
            name: link.name.clone(),
            side: link.side,
            config,
            events: events.map(Mutex::new),
            link: Mutex::new(link.clone()),
            epoch: AtomicU64::new(0),
            state: AtomicU8::new(CONNECTED),
            reconnects: AtomicU64::new(0),
            shut: AtomicBool::new(false),
        });
        session.start_monitor(&link)?;
        Ok(session)
    }

    /// The current link and epoch.
    pub(crate) fn current(&self) -> (Arc<Link>, u64) {
        let link = self.link.lock();
        (link.clone(), self.epoch.load(Ordering::Acquire))
    }

    /// The current epoch; a handle whose epoch differs must move to [`Session::current`].
    #[inline]
    pub(crate) fn epoch(&self) -> u64 {
        // SYNC POINT with the Release increment in `install`: a handle that sees the new
        // epoch finds the new link under the lock.
        self.epoch.load(Ordering::Acquire)
    }

    fn start_monitor(self: &Arc<Self>, link: &Arc<Link>) -> Result<()> {
        let watched = Watched {
            own: link.outgoing().clone(),
            peer: link.incoming().clone(),
            control: link.a2b.clone(),
            peer_index: link.side.peer() as usize,
            dead_after: self.config.dead_after,
            peer_owner: Some(link.segments[link.side.peer() as usize].clone()),
            segments: link.segments.to_vec(),
        };
        let session = Arc::downgrade(self);
        let weak_link = Arc::downgrade(link);
        let monitor = Monitor::spawn(watched, move |change| {
            on_peer_change(&session, &weak_link, change)
        })
        .map_err(|source| Error::Os {
            op: "spawn liveness monitor",
            name: link.name.clone(),
            source,
        })?;
        *link.monitor.lock() = Some(monitor);
        Ok(())
    }

    pub(crate) fn emit(&self, event: LinkEvent) {
        if let Some(events) = &self.events {
            (events.lock())(event);
        }
    }

    /// Decides what a call does once it found the peer gone (`gone`): fail, or wait for a
    /// reconnection within the call's own `waiter` (the deadline it already runs under, so
    /// the wait does not start a fresh timeout). `Ok(())` means a new link is in place: the
    /// caller moves to it and retries.
    pub(crate) fn after_gone(&self, gone: Error, my_epoch: u64, waiter: &mut Waiter) -> Result<()> {
        // A truncated segment is not a departed peer: nothing to wait for.
        if self.config.reconnect.is_none() || matches!(gone, Error::Corrupt(_)) {
            return Err(gone);
        }
        if self.config.on_disconnect == OnDisconnect::Fail {
            return Err(self.reconnect_error());
        }
        // Poll the epoch every millisecond; reconnection itself takes retry intervals.
        let poll = AtomicU32::new(1000);
        let mode = AtomicU32::new(WaitMode::Poll as u32);
        let unused = AtomicU32::new(0);
        let policy = Policy {
            mode: &mode,
            poll_us: &poll,
            wait_word: &unused,
            sleep_slice: Duration::from_millis(1),
        };
        loop {
            if self.epoch() != my_epoch {
                // Spin and yield afresh on the new link; the deadline stays.
                waiter.reset();
                return Ok(());
            }
            // The same link, its peer there again (it was never really gone): go on.
            if self.state.load(Ordering::Relaxed) == CONNECTED
                && self.current().0.peer_gone().is_none()
            {
                return Ok(());
            }
            if self.state.load(Ordering::Acquire) == GAVE_UP || !waiter.idle(&policy, || false) {
                return Err(self.reconnect_error());
            }
        }
    }

    fn reconnect_error(&self) -> Error {
        if self.state.load(Ordering::Acquire) == GAVE_UP {
            Error::GaveUp
        } else {
            Error::Reconnecting
        }
    }

    /// Whether a call that found the peer gone waits for a reconnection (rather than
    /// failing at once): what [`Session::after_gone`] does with time left.
    pub(crate) fn waits_for_reconnect(&self) -> bool {
        self.config.reconnect.is_some() && self.config.on_disconnect != OnDisconnect::Fail
    }

    /// Whether a wait for a reconnection, begun on link `my_epoch`, would end now (a new
    /// link, the policy gave up, or the same link's peer is there again): the async
    /// calls' waiter thread polls this where [`Session::after_gone`] would loop.
    pub(crate) fn reconnect_settled(&self, my_epoch: u64) -> bool {
        self.epoch() != my_epoch
            // SYNC POINT: the Acquire pairs with the Release store of GAVE_UP, as in
            // `after_gone`.
            || self.state.load(Ordering::Acquire) == GAVE_UP
            || (self.state.load(Ordering::Relaxed) == CONNECTED
                && self.current().0.peer_gone().is_none())
    }

    /// Whether a receive thread should stay up after the peer went away.
    pub(crate) fn will_reconnect(&self) -> bool {
        self.config.reconnect.is_some() && self.state.load(Ordering::Acquire) != GAVE_UP
    }

    /// Starts side B's reconnection after the current link lost its peer, on a thread of
    /// its own: the monitor that noticed goes on beating this side's heartbeat and watching
    /// the old peer, which may turn out to be alive ([`Session::peer_back`]).
    fn start_reconnect(self: &Arc<Self>, old_generation: u64) {
        // Relaxed (`shut`, `state` here and in `peer_back`): flags only; the link itself is
        // published under the mutex and the epoch with Release.
        if self.config.reconnect.is_none() || self.shut.load(Ordering::Relaxed) {
            return;
        }
        if self
            .state
            .compare_exchange(CONNECTED, RECONNECTING, Ordering::Relaxed, Ordering::Relaxed)
            .is_err()
        {
            return; // already reconnecting, or given up
        }
        // Relaxed: only the numbering of the threads, no data depends on it.
        let run = self.reconnects.fetch_add(1, Ordering::Relaxed) + 1;
        let session = Arc::downgrade(self);
        let spawned = std::thread::Builder::new()
            .name("shm-reconnect".into())
            .spawn(move || reconnect(&session, run, old_generation));
        if spawned.is_err() {
            // No thread: give up at once rather than leave calls waiting for nothing.
            self.give_up(0);
        }
    }

    /// Side B's side A is there again (it only looked gone): stop reconnecting.
    fn peer_back(&self) {
        if self.side == Side::B && self.state.swap(CONNECTED, Ordering::Relaxed) != CONNECTED {
            // Calls waiting in `after_gone` notice within a millisecond.
            self.current().0.wake_everyone();
        }
    }

    fn give_up(&self, attempts: u32) {
        self.state.store(GAVE_UP, Ordering::Release);
        let (link, _) = self.current();
        link.wake_everyone();
        self.emit(LinkEvent::GaveUp { attempts });
    }

    /// Closes this side on the thread that dropped its last user handle (see
    /// [`Link::close`]; the monitor is joined first), whichever thread frees it last.
    pub(crate) fn shutdown(&self) {
        self.shut.store(true, Ordering::Relaxed); // a flag only (see `start_reconnect`)
        let (link, _) = self.current();
        link.close();
    }

    /// Makes `link` (freshly attached) the session's link.
    fn install(self: &Arc<Self>, link: Link) -> Result<u64> {
        if self.shut.load(Ordering::Relaxed) {
            link.discard();
            return Err(Error::Closed);
        }
        link.announce(self.config.poll_us, self.config.wait_mode);
        let link = Arc::new(link);
        self.start_monitor(&link)?;
        let generation = link.generation;
        let old = std::mem::replace(&mut *self.link.lock(), link);
        self.state.store(CONNECTED, Ordering::Release);
        self.epoch.fetch_add(1, Ordering::Release);
        // Handles asleep on the old link's words wake up, see the new epoch and move.
        old.wake_everyone();
        Ok(generation)
    }
}

/// Called on a link's liveness thread when its peer's state changes.
fn on_peer_change(session: &Weak<Session>, link: &Weak<Link>, change: PeerChange) {
    let Some(link) = link.upgrade() else { return };
    let generation = link.generation;
    match change {
        PeerChange::Died => {
            // SYNC POINT with the Acquire load in `Link::peer_gone`.
            link.peer_dead.store(true, Ordering::Release);
            wake_regions(&[&link.a2b, &link.b2a]);
        }
        PeerChange::Back => link.peer_dead.store(false, Ordering::Release),
        PeerChange::Closed => {}
    }
    drop(link);
    let Some(session) = session.upgrade() else {
        return;
    };
    match change {
        PeerChange::Died => session.emit(LinkEvent::PeerDead),
        PeerChange::Closed => session.emit(LinkEvent::PeerClosed),
        PeerChange::Back => session.emit(LinkEvent::PeerAttached),
    }
    if session.current().0.generation != generation {
        return; // an old link's news
    }
    match change {
        PeerChange::Back => session.peer_back(),
        _ if session.side == Side::B => session.start_reconnect(generation),
        _ => {}
    }
}

/// Side B's reconnection loop, on its own thread (number `run`). Attaches only to a *new*
/// generation (the dead one's segments may linger). Ends when it succeeds or gives up,
/// when the old peer is back, when a later thread took over, or when the channel is gone.
fn reconnect(session: &Weak<Session>, run: u64, old_generation: u64) {
    let Some(policy) = session.upgrade().and_then(|s| s.config.reconnect) else {
        return;
    };
    let started = Instant::now();
    let mut attempt = 0u32;
    loop {
        let Some(session) = session.upgrade() else {
            return; // every handle is gone
        };
        // Relaxed: flags only (see `Session::start_reconnect`).
        let superseded = session.reconnects.load(Ordering::Relaxed) != run;
        if superseded
            || session.state.load(Ordering::Relaxed) != RECONNECTING
            || session.shut.load(Ordering::Relaxed)
        {
            return;
        }
        attempt += 1;
        let out_of_attempts = policy.max_attempts != 0 && attempt > policy.max_attempts;
        let out_of_time = !policy.max_wait.is_zero() && started.elapsed() > policy.max_wait;
        if out_of_attempts || out_of_time {
            session.give_up(attempt - 1);
            return;
        }
        session.emit(LinkEvent::Reconnecting { attempt });
        match try_attach(&session.name, session.current().0.sleep_slice) {
            Ok(Attach::Attached(link)) if link.generation != old_generation => {
                // If its monitor could not start, the next attempt tries again.
                if let Ok(generation) = session.install(link) {
                    session.emit(LinkEvent::Reconnected { generation });
                    return;
                }
            }
            // The generation we lost, its side A perhaps alive: leave its headers alone.
            Ok(Attach::Attached(link)) => link.discard(),
            _ => {}
        }
        drop(session);
        std::thread::sleep(policy.retry_interval);
    }
}
