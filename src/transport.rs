//! The duplex channel: side A creates it, side B opens it; each side sends on one ring and
//! receives on the other, with per-side poll intervals, stats and shutdown.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::ops::Deref;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::error::{Corruption, Error, Result};
use crate::layout::{self, Geometry, HeaderInit, Readiness, Validated, HEADER_SIZE, MAX_POLL_US};
use crate::liveness::{Monitor, ProcessIdentity, Watched, DEFAULT_DEAD_AFTER};
use crate::receiver::ReceiveThread;
use crate::region::{header_of, Region};
use crate::ring::{Consumer, Producer, RingMemory};
use crate::segment::{self, Direction, Segment};
use crate::sync::{AtomicU32, Ordering};
use crate::wait::{self, Policy, Timeout, WaitMode, Waiter};

/// Default payload bytes per slot.
pub const DEFAULT_SLOT_SIZE: usize = 1024;
/// Default number of slots per direction.
pub const DEFAULT_SLOT_COUNT: usize = 64;
/// Default number of messages the receive thread hands to the callback per loop.
pub const DEFAULT_BURST: usize = 64;
/// How often side B looks for side A while it waits in [`ChannelBuilder::open`].
const OPEN_RETRY: Duration = Duration::from_millis(1);

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

/// Configures and then creates (side A) or opens (side B) a [`Channel`].
///
/// ```no_run
/// use std::time::Duration;
/// use capnp_shm_transport::Channel;
///
/// let mut a = Channel::builder("demo").slot_size(256).slot_count(64).create()?;
/// let mut b = Channel::builder("demo").open_timeout(Duration::from_secs(5)).open()?;
/// a.send(b"hello", Duration::from_secs(1))?;
/// assert_eq!(&*b.recv(Duration::from_secs(1))?, b"hello");
/// # Ok::<(), capnp_shm_transport::Error>(())
/// ```
pub struct ChannelBuilder {
    name: String,
    slot_size: usize,
    slot_count: usize,
    poll_interval: Duration,
    wait_mode: Option<WaitMode>,
    sleep_slice: Duration,
    dead_after: Duration,
    open_timeout: Timeout,
    callback: Option<Callback>,
    burst: usize,
}

impl ChannelBuilder {
    /// Payload bytes per slot, the largest message (side A only; B reads it from A).
    /// Default [`DEFAULT_SLOT_SIZE`].
    pub fn slot_size(mut self, bytes: usize) -> Self {
        self.slot_size = bytes;
        self
    }

    /// Slots per direction, a power of two (side A only). Default [`DEFAULT_SLOT_COUNT`].
    /// Small rings (16) give the lowest latency, large ones the best throughput.
    pub fn slot_count(mut self, count: usize) -> Self {
        self.slot_count = count;
        self
    }

    /// This side's initial poll interval, used in [`WaitMode::Poll`]: zero busy-spins when
    /// idle (lowest latency, one core at 100%), anything else sleeps that long per idle
    /// round (microsecond granularity, at most one second). Default zero. Setting it
    /// selects [`WaitMode::Poll`] unless [`ChannelBuilder::wait_mode`] says otherwise.
    pub fn poll_interval(mut self, interval: Duration) -> Self {
        self.poll_interval = interval;
        self.wait_mode.get_or_insert(WaitMode::Poll);
        self
    }

    /// In [`WaitMode::Block`], the longest single futex sleep before a waiter re-checks on
    /// its own (it is normally woken by the peer long before). Bounds how long a wake-up
    /// missed during a live mode switch can delay a message. Default [`wait::SLEEP_SLICE`]
    /// (50 ms); at least 1 ms.
    pub fn sleep_slice(mut self, slice: Duration) -> Self {
        self.sleep_slice = slice;
        self
    }

    /// How soon a silent peer in another pid namespace counts as dead (in the same
    /// namespace death is seen at once through a pidfd). The liveness monitor runs every
    /// quarter of it. Default [`DEFAULT_DEAD_AFTER`] (100 ms); at least 4 ms.
    pub fn dead_after(mut self, threshold: Duration) -> Self {
        self.dead_after = threshold;
        self
    }

    /// How this side waits when idle. Default [`WaitMode::Block`] (spin briefly, then
    /// sleep on a futex until woken), or [`WaitMode::Poll`] once a poll interval is set.
    pub fn wait_mode(mut self, mode: WaitMode) -> Self {
        self.wait_mode = Some(mode);
        self
    }

    /// How long [`ChannelBuilder::open`] waits for side A (side B only). Default 5 s.
    pub fn open_timeout(mut self, timeout: impl Into<Timeout>) -> Self {
        self.open_timeout = timeout.into();
        self
    }

    /// Receive through a thread that calls `callback` for each incoming message, in
    /// bursts of up to [`ChannelBuilder::burst`]. Direct receives are then refused.
    pub fn on_receive(mut self, callback: impl FnMut(&[u8]) + Send + 'static) -> Self {
        self.callback = Some(Box::new(callback));
        self
    }

    /// Messages the receive thread drains per loop before releasing their slots.
    /// Default [`DEFAULT_BURST`].
    pub fn burst(mut self, messages: usize) -> Self {
        self.burst = messages;
        self
    }

    /// Side A: removes any stale segments of this name, creates both fresh (mode 0600),
    /// writes their headers and marks them ready last.
    pub fn create(self) -> Result<Channel> {
        segment::validate_name(&self.name)?;
        let geometry = Geometry::new(self.slot_size, self.slot_count)?;
        let poll_us = poll_to_us(self.poll_interval)?;
        let mode = self.wait_mode.unwrap_or_default() as u32;
        check_burst(self.burst)?;
        let len = usize::try_from(geometry.segment_len())
            .map_err(|_| Error::invalid("slot_count", "segment too large for this platform"))?;
        remove_channel(&self.name)?;
        let generation = fresh_generation();
        let mut regions = Vec::with_capacity(2);
        let mut segments = Vec::with_capacity(2);
        for direction in [Direction::AToB, Direction::BToA] {
            let seg_name = direction.segment_name(&self.name);
            let segment = Arc::new(Segment::create(&seg_name, len)?);
            segments.push(segment.clone());
            let region = Region::over_segment(segment, geometry);
            layout::initialize(
                region.header(),
                &HeaderInit {
                    geometry,
                    direction,
                    generation,
                    creator_pid: std::process::id(),
                    poll_us: [poll_us, 0],
                    wait_mode: [mode, 0],
                },
            );
            regions.push(region);
        }
        let b2a = regions.pop().expect("two regions");
        let a2b = regions.pop().expect("two regions");
        check_slice(self.sleep_slice)?;
        check_dead_after(self.dead_after)?;
        let mut link = Link {
            sleep_slice: self.sleep_slice,
            side: Side::A,
            name: self.name.clone(),
            generation,
            a2b,
            b2a,
            segments: [segments[0].clone(), segments[1].clone()],
            peer_dead: Arc::new(AtomicBool::new(false)),
            monitor: None,
        };
        link.record_identity();
        link.start_monitor(self.dead_after)?;
        Channel::assemble(link, self.callback, self.burst)
    }

    /// Side B: waits up to the open timeout for side A's segments, validates both headers
    /// fully, and attaches. Never creates or truncates anything.
    pub fn open(self) -> Result<Channel> {
        segment::validate_name(&self.name)?;
        let poll_us = poll_to_us(self.poll_interval)?;
        let mode = self.wait_mode.unwrap_or_default() as u32;
        check_burst(self.burst)?;
        check_slice(self.sleep_slice)?;
        check_dead_after(self.dead_after)?;
        let started = Instant::now();
        let deadline = match self.open_timeout {
            Timeout::Immediate => Some(started),
            Timeout::After(d) => Some(started + d),
            Timeout::Never => None,
        };
        let link = loop {
            let last_problem = match try_attach(&self.name, self.sleep_slice)? {
                Attach::Attached(link) => break link,
                Attach::NotYet => None,
                Attach::Disagree(c) => Some(c),
            };
            if deadline.is_some_and(|d| Instant::now() >= d) {
                return Err(match last_problem {
                    Some(c) => Error::Corrupt(c),
                    None => Error::NotFound {
                        name: self.name,
                        waited: started.elapsed(),
                    },
                });
            }
            std::thread::sleep(OPEN_RETRY);
        };
        let me = Side::B as usize;
        link.set_control_word(|c| &c.closed[me], 0);
        link.set_control_word(|c| &c.poll_us[me], poll_us);
        link.set_control_word(|c| &c.wait_mode[me], mode);
        let mut link = link;
        link.record_identity();
        link.start_monitor(self.dead_after)?;
        Channel::assemble(link, self.callback, self.burst)
    }
}

enum Attach {
    Attached(Link),
    NotYet,
    Disagree(Corruption),
}

/// One attempt by side B to map and validate both segments.
fn try_attach(name: &str, sleep_slice: Duration) -> Result<Attach> {
    let mut found = Vec::with_capacity(2);
    for direction in [Direction::AToB, Direction::BToA] {
        let seg_name = direction.segment_name(name);
        let Some(segment) = Segment::open(&seg_name)? else {
            return Ok(Attach::NotYet);
        };
        let len = segment.len();
        if len < HEADER_SIZE {
            return Err(Corruption::MappingTooSmall {
                len,
                needed: HEADER_SIZE,
            }
            .into());
        }
        let header = header_of(&segment);
        if layout::readiness(header, len)? == Readiness::NotYet {
            return Ok(Attach::NotYet);
        }
        let validated = layout::validate(header, len, direction)?;
        found.push((Arc::new(segment), validated));
    }
    let (b2a, vb) = found.pop().expect("two segments");
    let (a2b, va) = found.pop().expect("two segments");
    if let Some(c) = disagreement(&va, &vb) {
        return Ok(Attach::Disagree(c));
    }
    Ok(Attach::Attached(Link {
        sleep_slice,
        side: Side::B,
        name: name.to_string(),
        generation: va.generation,
        a2b: Region::over_segment(a2b.clone(), va.geometry),
        b2a: Region::over_segment(b2a.clone(), vb.geometry),
        segments: [a2b, b2a],
        peer_dead: Arc::new(AtomicBool::new(false)),
        monitor: None,
    }))
}

fn disagreement(a2b: &Validated, b2a: &Validated) -> Option<Corruption> {
    let fields = [
        ("generation", a2b.generation, b2a.generation),
        (
            "slot_size",
            a2b.geometry.slot_size as u64,
            b2a.geometry.slot_size as u64,
        ),
        (
            "slot_count",
            a2b.geometry.slot_count as u64,
            b2a.geometry.slot_count as u64,
        ),
    ];
    fields
        .into_iter()
        .find(|(_, x, y)| x != y)
        .map(|(field, a2b, b2a)| Corruption::SegmentsDisagree { field, a2b, b2a })
}

/// Removes both segments of channel `name`. Returns `true` when at least one existed.
pub fn remove_channel(name: &str) -> Result<bool> {
    segment::validate_name(name)?;
    let a = segment::remove(&Direction::AToB.segment_name(name))?;
    let b = segment::remove(&Direction::BToA.segment_name(name))?;
    Ok(a || b)
}

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

fn check_slice(slice: Duration) -> Result<()> {
    if slice < Duration::from_millis(1) {
        return Err(Error::invalid(
            "sleep_slice",
            format!("{slice:?} is below 1 ms"),
        ));
    }
    Ok(())
}

fn check_dead_after(threshold: Duration) -> Result<()> {
    if threshold < Duration::from_millis(4) {
        return Err(Error::invalid(
            "dead_after",
            format!("{threshold:?} is below 4 ms"),
        ));
    }
    Ok(())
}

fn check_burst(burst: usize) -> Result<()> {
    if burst == 0 {
        return Err(Error::invalid("burst", "must be at least 1"));
    }
    Ok(())
}

/// A generation id that differs between creations, even of the same name by the same pid.
fn fresh_generation() -> u64 {
    let mut h = RandomState::new().build_hasher();
    h.write_u32(std::process::id());
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    h.finish() | 1 // never 0, which reads as "no generation"
}

/// What both halves of a channel share: the two regions and the control words.
/// Dropping the last handle marks this side closed and, for side A, removes the segments.
struct Link {
    /// Longest single futex sleep of this side's waiters (process-local setting).
    sleep_slice: Duration,
    side: Side,
    name: String,
    generation: u64,
    a2b: Region,
    b2a: Region,
    /// The mapped segments, a2b then b2a (side A removes them on drop).
    segments: [Arc<Segment>; 2],
    /// Set (Release) by the liveness monitor when the peer's process is gone.
    peer_dead: Arc<AtomicBool>,
    /// Keeps our heartbeat going and watches the peer; stopped when the link drops.
    monitor: Option<Monitor>,
}

impl Link {
    fn outgoing(&self) -> &Region {
        match self.side {
            Side::A => &self.a2b,
            Side::B => &self.b2a,
        }
    }
    fn incoming(&self) -> &Region {
        match self.side {
            Side::A => &self.b2a,
            Side::B => &self.a2b,
        }
    }
    /// The control block read by both sides (the a2b copy).
    fn control(&self) -> &layout::ControlBlock {
        &self.a2b.header().control
    }
    /// Writes a control word in both headers (they mirror each other).
    fn set_control_word(&self, word: impl Fn(&layout::ControlBlock) -> &AtomicU32, value: u32) {
        for region in [&self.b2a, &self.a2b] {
            // SYNC POINT (closed flags) with the Acquire load in `peer_closed`: messages
            // committed before we close are visible to a peer that sees the flag.
            word(&region.header().control).store(value, Ordering::Release);
        }
    }
    /// How this side idles while waiting on `wait_word`.
    fn policy<'a>(&'a self, wait_word: &'a AtomicU32) -> Policy<'a> {
        let me = self.side as usize;
        Policy {
            mode: &self.control().wait_mode[me],
            poll_us: &self.control().poll_us[me],
            wait_word,
            sleep_slice: self.sleep_slice,
        }
    }
    fn peer_mode(&self) -> &AtomicU32 {
        &self.control().wait_mode[self.side.peer() as usize]
    }
    /// Wakes every futex sleeper of either side (after a close or a mode change).
    fn wake_everyone(&self) {
        for region in [&self.a2b, &self.b2a] {
            wait::wake_all(&region.header().producer.wait);
            wait::wake_all(&region.header().consumer.wait);
        }
    }
    fn peer_closed(&self) -> bool {
        self.control().closed[self.side.peer() as usize].load(Ordering::Acquire) != 0
    }
    /// Why the peer will send or read nothing more, if it will not: it closed, or died.
    fn peer_gone(&self) -> Option<Error> {
        if self.peer_closed() {
            Some(Error::Closed)
        } else if self.peer_dead.load(Ordering::Acquire) {
            Some(Error::PeerDead)
        } else {
            None
        }
    }
    /// Records this process in the producer block of our outgoing ring (identity for
    /// liveness) and as the consumer of our incoming ring.
    fn record_identity(&self) {
        ProcessIdentity::current().record(&self.outgoing().header().producer);
        self.incoming()
            .header()
            .consumer
            .pid
            .store(std::process::id(), Ordering::Relaxed);
    }
    /// Starts the liveness monitor: on the peer's death it raises `peer_dead` and wakes
    /// every sleeper, so blocked calls return [`Error::PeerDead`].
    fn start_monitor(&mut self, dead_after: Duration) -> Result<()> {
        let watched = Watched {
            own: self.outgoing().clone(),
            peer: self.incoming().clone(),
            dead_after,
        };
        let dead = self.peer_dead.clone();
        let regions = [self.a2b.clone(), self.b2a.clone()];
        let monitor = Monitor::spawn(watched, move || {
            // SYNC POINT with the Acquire loads in `peer_gone`.
            dead.store(true, Ordering::Release);
            for region in &regions {
                wait::wake_all(&region.header().producer.wait);
                wait::wake_all(&region.header().consumer.wait);
            }
        })
        .map_err(|source| Error::Os {
            op: "spawn liveness monitor",
            name: self.name.clone(),
            source,
        })?;
        self.monitor = Some(monitor);
        Ok(())
    }
}

impl Drop for Link {
    fn drop(&mut self) {
        self.set_control_word(|c| &c.closed[self.side as usize], 1);
        self.wake_everyone();
        if self.side == Side::A {
            for segment in &self.segments {
                segment.remove_if_same();
            }
        }
    }
}

/// Live settings and statistics of a channel, shared by [`Channel`], [`Sender`] and
/// [`Receiver`]. Cheap to clone; changes take effect at each side's next idle wait.
#[derive(Clone)]
pub struct Control {
    link: Arc<Link>,
}

impl Control {
    /// The channel's name.
    pub fn name(&self) -> &str {
        &self.link.name
    }
    /// Whether this process is side A (the creator).
    pub fn is_creator(&self) -> bool {
        self.link.side == Side::A
    }
    /// Which side this process is.
    pub fn side(&self) -> Side {
        self.link.side
    }
    /// The creation generation shared by both segments.
    pub fn generation(&self) -> u64 {
        self.link.generation
    }
    /// Payload bytes per slot: the largest message.
    pub fn slot_size(&self) -> usize {
        self.link.outgoing().geometry().slot_size
    }
    /// Slots per direction.
    pub fn slot_count(&self) -> usize {
        self.link.outgoing().geometry().slot_count
    }
    /// This side's poll interval (zero = busy spin).
    pub fn local_poll_interval(&self) -> Duration {
        self.poll_of(self.link.side)
    }
    /// The peer's poll interval.
    pub fn remote_poll_interval(&self) -> Duration {
        self.poll_of(self.link.side.peer())
    }
    /// Changes this side's poll interval (zero = busy spin; at most one second).
    pub fn set_local_poll_interval(&self, interval: Duration) -> Result<()> {
        self.set_poll_of(self.link.side, interval)
    }
    /// Asks the peer to change its poll interval; it applies at the peer's next idle wait.
    pub fn set_remote_poll_interval(&self, interval: Duration) -> Result<()> {
        self.set_poll_of(self.link.side.peer(), interval)
    }
    /// This side's wait mode.
    pub fn local_wait_mode(&self) -> WaitMode {
        self.mode_of(self.link.side)
    }
    /// The peer's wait mode.
    pub fn remote_wait_mode(&self) -> WaitMode {
        self.mode_of(self.link.side.peer())
    }
    /// Changes this side's wait mode; a waiter sleeping now is woken to apply it.
    pub fn set_local_wait_mode(&self, mode: WaitMode) {
        self.set_mode_of(self.link.side, mode);
    }
    /// Asks the peer to change its wait mode; a peer sleeping now is woken to apply it.
    pub fn set_remote_wait_mode(&self, mode: WaitMode) {
        self.set_mode_of(self.link.side.peer(), mode);
    }
    /// Whether the peer has shut down.
    pub fn peer_closed(&self) -> bool {
        self.link.peer_closed()
    }
    /// The peer's state: not attached yet, alive, closed, or dead.
    pub fn peer_state(&self) -> PeerState {
        let link = &self.link;
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
    /// A snapshot of both directions' counters.
    pub fn stats(&self) -> Stats {
        Stats {
            outgoing: DirectionStats::read(
                self.link.outgoing(),
                self.link.control(),
                self.link.side,
            ),
            incoming: DirectionStats::read(
                self.link.incoming(),
                self.link.control(),
                self.link.side.peer(),
            ),
        }
    }

    fn poll_of(&self, side: Side) -> Duration {
        let us = self.link.control().poll_us[side as usize].load(Ordering::Relaxed);
        Duration::from_micros(us.min(MAX_POLL_US).into())
    }
    fn set_poll_of(&self, side: Side, interval: Duration) -> Result<()> {
        let us = poll_to_us(interval)?;
        self.link
            .set_control_word(|c| &c.poll_us[side as usize], us);
        self.link.wake_everyone();
        Ok(())
    }
    fn mode_of(&self, side: Side) -> WaitMode {
        WaitMode::from_word(self.link.control().wait_mode[side as usize].load(Ordering::Relaxed))
    }
    fn set_mode_of(&self, side: Side, mode: WaitMode) {
        self.link
            .set_control_word(|c| &c.wait_mode[side as usize], mode as u32);
        self.link.wake_everyone();
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
    fn read(region: &Region, control: &layout::ControlBlock, producer: Side) -> DirectionStats {
        let h = region.header();
        let g = region.geometry();
        // Tail first: the producer stores head before the commits that let tail move, so
        // head read after tail is never below it in a well-behaved channel. Values from a
        // misbehaving peer are clamped into range rather than trusted.
        let tail = h.consumer.tail.load(Ordering::Acquire);
        let head = h.producer.head.load(Ordering::Relaxed);
        DirectionStats {
            slot_size: g.slot_size,
            slot_count: g.slot_count,
            used_slots: head.saturating_sub(tail).min(g.slot_count as u64) as usize,
            producer_closed: control.closed[producer as usize].load(Ordering::Relaxed) != 0,
            messages_sent: head,
            bytes_sent: h.producer.bytes.load(Ordering::Relaxed),
            messages_received: tail,
            bytes_received: h.consumer.bytes.load(Ordering::Relaxed),
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

/// The sending half: publishes messages on this side's outgoing ring.
pub struct Sender {
    control: Control,
    producer: Producer<Region>,
}

impl Sender {
    /// Sends `msg` (0..=slot_size bytes), waiting for a free slot up to `timeout`.
    ///
    /// Errors: [`Error::MessageTooLarge`] (nothing published), [`Error::Timeout`],
    /// [`Error::Closed`] when the peer has shut down while we wait for space (a send that
    /// finds a free slot succeeds even if the peer is gone), [`Error::Corrupt`].
    #[inline]
    pub fn send(&mut self, msg: &[u8], timeout: impl Into<Timeout>) -> Result<()> {
        if !self.producer.try_send(msg)? {
            self.wait_for_space(timeout.into(), 1)?;
            let sent = self.producer.try_send(msg)?;
            debug_assert!(sent, "space was seen and only we produce");
        }
        self.wake_consumer();
        Ok(())
    }

    /// Wakes the peer's consumer if it sleeps on a futex (one Relaxed load otherwise).
    #[inline]
    fn wake_consumer(&self) {
        let word = &self.producer.memory().header().consumer.wait;
        wait::wake_sleeper(self.control.link.peer_mode(), word);
    }

    /// Sends as many of `msgs` as fit after one free-space check, waiting up to `timeout`
    /// for at least one free slot. Returns how many were sent (a prefix of `msgs`). Every
    /// length is checked before anything is published.
    pub fn send_batch(&mut self, msgs: &[&[u8]], timeout: impl Into<Timeout>) -> Result<usize> {
        if msgs.is_empty() {
            return Ok(0);
        }
        let mut n = self.producer.try_send_batch(msgs)?;
        if n == 0 {
            self.wait_for_space(timeout.into(), 1)?;
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
        let mut write = Some(write);
        let mut call = |buf: &mut [u8]| (write.take().expect("called once"))(buf);
        if !self.producer.try_send_with(&mut call)? {
            self.wait_for_space(timeout.into(), 1)?;
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

    #[cold]
    fn wait_for_space(&mut self, timeout: Timeout, wanted: u64) -> Result<()> {
        let link = &self.control.link;
        let region = self.producer.memory().clone();
        let policy = link.policy(&region.header().producer.wait);
        let mut waiter = Waiter::new(timeout);
        loop {
            if let Some(gone) = link.peer_gone() {
                return Err(gone);
            }
            let producer = &self.producer;
            if !waiter.idle(&policy, || {
                producer.space_visible() || link.peer_gone().is_some()
            }) {
                return Err(Error::Timeout { full: true });
            }
            if self.producer.free_slots(wanted)? >= wanted {
                return Ok(());
            }
        }
    }
}

/// The receiving half: reads messages from this side's incoming ring.
pub struct Receiver {
    control: Control,
    consumer: Consumer<Region>,
}

impl Receiver {
    /// Waits up to `timeout` for the next message and lends it in place: the guard derefs
    /// to the payload bytes, and dropping it releases the slot to the peer.
    ///
    /// Errors: [`Error::Timeout`], [`Error::Closed`] once the peer has shut down and every
    /// message it sent has been read, [`Error::Corrupt`].
    #[inline]
    pub fn recv(&mut self, timeout: impl Into<Timeout>) -> Result<RecvGuard<'_>> {
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
        if self.consumer.peek(0)?.is_none() {
            self.wait_for_message(timeout.into())?;
        }
        self.drain(max, f)
    }

    /// Reads up to `max` messages that are already published, without waiting.
    pub(crate) fn drain(&mut self, max: usize, f: impl FnMut(&[u8])) -> Result<usize> {
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
        wait::wake_sleeper(self.control.link.peer_mode(), word);
    }

    /// Why the peer will send nothing more, if it will not ([`Error::Closed`] or
    /// [`Error::PeerDead`]).
    pub(crate) fn peer_gone(&self) -> Option<Error> {
        self.control.link.peer_gone()
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
            if let Some(gone) = self.control.link.peer_gone() {
                // A closing peer stored its flag after its last commit (Release/Acquire);
                // a dead one committed nothing after the monitor saw it exit. Either way
                // one more look finds every message it sent.
                return self.consumer.peek(0)?.ok_or(gone);
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
    /// for a message, the peer's close, and `also` (the receive thread's stop flag).
    pub(crate) fn idle(&self, waiter: &mut Waiter, also: impl FnOnce() -> bool) -> bool {
        let link = &self.control.link;
        let policy = link.policy(&self.consumer.memory().header().consumer.wait);
        let consumer = &self.consumer;
        waiter.idle(&policy, || {
            !matches!(consumer.peek(0), Ok(None)) || link.peer_gone().is_some() || also()
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
        ChannelBuilder {
            name: name.into(),
            slot_size: DEFAULT_SLOT_SIZE,
            slot_count: DEFAULT_SLOT_COUNT,
            poll_interval: Duration::ZERO,
            wait_mode: None,
            sleep_slice: wait::SLEEP_SLICE,
            dead_after: DEFAULT_DEAD_AFTER,
            open_timeout: Timeout::After(Duration::from_secs(5)),
            callback: None,
            burst: DEFAULT_BURST,
        }
    }

    fn assemble(link: Link, callback: Option<Callback>, burst: usize) -> Result<Channel> {
        let out = link.outgoing().clone();
        let inc = link.incoming().clone();
        let (head, tail, head_bytes) = attach_producer(&out)?;
        let consumer_start = attach_consumer(&inc)?;
        let control = Control {
            link: Arc::new(link),
        };
        let sender = Sender {
            control: control.clone(),
            producer: Producer::new(out, head, tail, head_bytes),
        };
        let receiver = Receiver {
            control,
            consumer: Consumer::new(inc, consumer_start.0, consumer_start.1),
        };
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

    /// Live settings and statistics (poll intervals, stats, peer state).
    pub fn control(&self) -> &Control {
        self.sender.control()
    }

    /// The sending half, for calls only it has (such as [`Sender::send_with`]).
    pub fn sender(&mut self) -> &mut Sender {
        &mut self.sender
    }

    /// Whether a receive thread was started and is still running. It ends when the peer
    /// closes (after delivering everything the peer sent), on corruption, or if the
    /// callback panics.
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

/// Where this side's producer continues: head and tail (validated) and the byte count.
fn attach_producer(region: &Region) -> Result<(u64, u64, u64)> {
    let h = region.header();
    let count = region.slot_count() as u64;
    let tail = h.consumer.tail.load(Ordering::Acquire);
    let head = h.producer.head.load(Ordering::Relaxed);
    layout::check_indices(head, tail, count)?;
    Ok((head, tail, h.producer.bytes.load(Ordering::Relaxed)))
}

/// Where this side's consumer continues: tail and byte count.
fn attach_consumer(region: &Region) -> Result<(u64, u64)> {
    let h = region.header();
    Ok((
        h.consumer.tail.load(Ordering::Relaxed),
        h.consumer.bytes.load(Ordering::Relaxed),
    ))
}
