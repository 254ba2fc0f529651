//! Configuring a channel, then creating it (side A) or opening it (side B).

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::attach::{try_attach, Attach};
use super::channel::Channel;
use super::control::poll_to_us;
use super::link::{Link, Side};
use super::receive_thread::Callback;
use super::receiver::Trust;
use super::session::{
    EventCallback, LinkEvent, OnDisconnect, ReconnectPolicy, Session, SessionConfig,
};
use crate::error::{Error, Result};
use crate::layout::{self, Geometry, HeaderInit};
use crate::liveness::DEFAULT_DEAD_AFTER;
use crate::ring::Region;
use crate::sigbus;
use crate::segment::{self, Direction, Object, Segment};
use crate::wait::{self, Timeout, WaitMode};

/// Default payload bytes per slot.
pub const DEFAULT_SLOT_SIZE: usize = 1024;
/// Default number of slots per direction.
pub const DEFAULT_SLOT_COUNT: usize = 64;
/// Default number of messages the receive thread hands to the callback per loop.
pub const DEFAULT_BURST: usize = 64;
/// How often side B looks for side A while it waits in [`ChannelBuilder::open`].
const OPEN_RETRY: Duration = Duration::from_millis(1);

impl Channel {
    /// Starts configuring channel `name` (1..=248 bytes, no '/').
    pub fn builder(name: impl Into<String>) -> ChannelBuilder {
        ChannelBuilder::new(name.into())
    }
}

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
    reconnect: Option<ReconnectPolicy>,
    on_disconnect: OnDisconnect,
    events: Option<EventCallback>,
    callback: Option<Callback>,
    burst: usize,
    replace_live: bool,
    sigbus_guard: bool,
    trust: Trust,
}

impl ChannelBuilder {
    pub(crate) fn new(name: String) -> ChannelBuilder {
        ChannelBuilder {
            name,
            slot_size: DEFAULT_SLOT_SIZE,
            slot_count: DEFAULT_SLOT_COUNT,
            poll_interval: Duration::ZERO,
            wait_mode: None,
            sleep_slice: wait::SLEEP_SLICE,
            dead_after: DEFAULT_DEAD_AFTER,
            open_timeout: Timeout::After(Duration::from_secs(5)),
            reconnect: None,
            on_disconnect: OnDisconnect::Fail,
            events: None,
            callback: None,
            burst: DEFAULT_BURST,
            replace_live: false,
            sigbus_guard: true,
            trust: Trust::default(),
        }
    }

    /// Payload bytes per slot (side A only; B reads it from A). Default
    /// [`DEFAULT_SLOT_SIZE`]. A message up to this size takes one slot; a longer one covers
    /// consecutive slots, up to the whole ring (`Control::max_message_len`), so size slots
    /// for the common message, not the largest.
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

    /// How this side waits when idle. Default [`WaitMode::Block`] (spin briefly, then
    /// sleep on a futex until woken), or [`WaitMode::Poll`] once a poll interval is set.
    pub fn wait_mode(mut self, mode: WaitMode) -> Self {
        self.wait_mode = Some(mode);
        self
    }

    /// In [`WaitMode::Block`], how long a waiter's first futex sleep lasts before it
    /// re-checks on its own (it is normally woken by the peer long before); each later
    /// sleep of the same idle stretch that nothing interrupted lasts twice as long, up to
    /// [`MAX_IDLE_SLICE`](crate::MAX_IDLE_SLICE) (1 s; a longer slice stays as it is), so an
    /// idle side wakes about once a second. Bounds how long a wake-up missed during a live
    /// mode switch can delay a message: the first sleep after a switch to `Block` lasts
    /// one slice. Default [`wait::SLEEP_SLICE`] (50 ms); at least 1 ms.
    pub fn sleep_slice(mut self, slice: Duration) -> Self {
        self.sleep_slice = slice;
        self
    }

    /// Whether to install the process-wide SIGBUS guard (default `true`). With it, a
    /// process that truncates a segment under this channel's mappings no longer kills
    /// this one with SIGBUS: the cut-off pages read as zeros and the channel's next
    /// operation reports [`Corruption::Truncated`](crate::Corruption::Truncated). The
    /// guard is one signal handler for the whole process, installed the first time a
    /// channel with the switch on is created or opened; it passes every SIGBUS outside
    /// the transport's mappings to the handler installed before it. Turn it off when the
    /// program owns SIGBUS itself. A handler the program installs *after* the guard
    /// replaces it, and truncation kills the process again.
    pub fn sigbus_guard(mut self, on: bool) -> Self {
        self.sigbus_guard = on;
        self
    }

    /// How soon a silent peer in another pid namespace counts as dead (in the same
    /// namespace death is seen at once through a pidfd). The liveness monitor runs every
    /// quarter of it. Default [`DEFAULT_DEAD_AFTER`] (100 ms); at least 4 ms.
    pub fn dead_after(mut self, threshold: Duration) -> Self {
        self.dead_after = threshold;
        self
    }

    /// How long [`ChannelBuilder::open`] waits for side A (side B only). Default 5 s.
    pub fn open_timeout(mut self, timeout: impl Into<Timeout>) -> Self {
        self.open_timeout = timeout.into();
        self
    }

    /// Side B: when side A dies or closes, re-attach to the channel once side A has
    /// re-created it (a new generation), under `policy`. Off by default.
    pub fn reconnect(mut self, policy: ReconnectPolicy) -> Self {
        self.reconnect = Some(policy);
        self
    }

    /// What sends and receives do while the peer is gone. Default
    /// [`OnDisconnect::Fail`]. [`OnDisconnect::KeepWaiting`] also turns reconnection on,
    /// without limits.
    pub fn on_disconnect(mut self, behaviour: OnDisconnect) -> Self {
        self.on_disconnect = behaviour;
        self
    }

    /// Calls `callback` (on the liveness thread) for each [`LinkEvent`]: peer dead,
    /// closed or attached, reconnecting, reconnected, gave up; and (on the receive thread)
    /// a receive thread stopped by an error.
    pub fn on_event(mut self, callback: impl FnMut(LinkEvent) + Send + 'static) -> Self {
        self.events = Some(Box::new(callback));
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

    /// Side A: whether [`ChannelBuilder::create`] may replace a channel of this name whose
    /// side A is alive (its creator still holds it). Default `false`: such a create fails
    /// with [`Error::SideInUse`]. The replaced creator and its B keep their objects, now
    /// nameless. A stale channel (its creator gone) is replaced either way.
    pub fn replace_live(mut self, replace: bool) -> Self {
        self.replace_live = replace;
        self
    }

    /// How far this side's receiver trusts the peer's writes to the slots it reads.
    /// Default [`Trust::Cooperating`] (zero copy); [`Trust::Untrusted`] copies each
    /// message once into private memory before anything reads it. Applies to direct
    /// receives, the receive thread and the typed layer alike.
    pub fn trust(mut self, trust: Trust) -> Self {
        self.trust = trust;
        self
    }

    /// Side A: removes any stale segments of this name (refusing a live channel unless
    /// [`ChannelBuilder::replace_live`]), creates both fresh (mode 0600), takes side A's
    /// owner lock, writes their headers and marks them ready last.
    pub fn create(self) -> Result<Channel> {
        segment::validate_name(&self.name)?;
        let geometry = Geometry::new(self.slot_size, self.slot_count)?;
        let config = self.session_config()?;
        if self.sigbus_guard {
            sigbus::install();
        }
        let len = usize::try_from(geometry.segment_len())
            .map_err(|_| Error::invalid("slot_count", "segment too large for this platform"))?;
        claim_name(&self.name, self.replace_live)?;
        let generation = fresh_generation();
        let mut regions = Vec::with_capacity(2);
        let mut segments = Vec::with_capacity(2);
        for direction in [Direction::AToB, Direction::BToA] {
            let name = direction.segment_name(&self.name);
            // Side A's owner lock: on a2b, taken the moment the object exists.
            let segment = Arc::new(Segment::create(&name, len, direction == Direction::AToB)?);
            let region = Region::over_segment(segment.clone(), geometry);
            layout::initialize(
                region.header(),
                &HeaderInit {
                    geometry,
                    direction,
                    generation,
                    creator_pid: std::process::id(),
                    poll_us: [config.poll_us, 0],
                    wait_mode: [config.wait_mode, 0],
                },
            );
            regions.push(region);
            segments.push(segment);
        }
        let regions: [Region; 2] = regions.try_into().ok().expect("two regions");
        let segments: [Arc<Segment>; 2] = segments.try_into().ok().expect("two segments");
        if let Some(lost) = segments.iter().find(|s| !s.is_named()) {
            // A concurrent creator removed our object in the instant before we locked it.
            lost.remove_if_same();
            return Err(Error::Os {
                op: "create (the name was taken by a concurrent creator)",
                name: self.name,
                source: std::io::Error::from_raw_os_error(libc::EEXIST),
            });
        }
        let link = Link::new(
            Side::A,
            &self.name,
            generation,
            regions,
            segments,
            self.sleep_slice,
        );
        // A's identity before `ready`: a B that can attach always finds it (a B that
        // found pid 0 could not tell a dying A from one still starting).
        link.record_identity();
        layout::mark_ready(link.a2b.header());
        layout::mark_ready(link.b2a.header());
        let session = Session::start(link, config, self.events)?;
        Channel::assemble(session, self.callback, self.burst, self.trust)
    }

    /// Side B: waits up to the open timeout for side A's segments, validates both headers
    /// fully, and attaches. Never creates or truncates anything.
    pub fn open(self) -> Result<Channel> {
        segment::validate_name(&self.name)?;
        let config = self.session_config()?;
        if self.sigbus_guard {
            sigbus::install();
        }
        let started = Instant::now();
        // A deadline past the clock's range is no deadline.
        let deadline = match self.open_timeout {
            Timeout::Immediate => Some(started),
            Timeout::After(d) => started.checked_add(d),
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
        link.announce(config.poll_us, config.wait_mode);
        let session = Session::start(link, config, self.events)?;
        Channel::assemble(session, self.callback, self.burst, self.trust)
    }

    /// Checks the settings both sides share and packs them for the session.
    fn session_config(&self) -> Result<SessionConfig> {
        if self.burst == 0 {
            return Err(Error::invalid("burst", "must be at least 1"));
        }
        if self.sleep_slice < Duration::from_millis(1) {
            return Err(Error::invalid(
                "sleep_slice",
                format!("{:?} is below 1 ms", self.sleep_slice),
            ));
        }
        if self.dead_after < Duration::from_millis(4) {
            return Err(Error::invalid(
                "dead_after",
                format!("{:?} is below 4 ms", self.dead_after),
            ));
        }
        if let Some(p) = self.reconnect {
            if p.retry_interval.is_zero() {
                return Err(Error::invalid(
                    "reconnect",
                    "retry_interval must be above zero",
                ));
            }
        }
        Ok(SessionConfig {
            dead_after: self.dead_after,
            poll_us: poll_to_us(self.poll_interval)?,
            wait_mode: self.wait_mode.unwrap_or_default() as u32,
            reconnect: self.reconnect,
            on_disconnect: self.on_disconnect,
        })
    }
}

/// Removes both segments of channel `name`. Returns `true` when at least one existed.
pub fn remove_channel(name: &str) -> Result<bool> {
    segment::validate_name(name)?;
    let a = segment::remove(&Direction::AToB.segment_name(name))?;
    let b = segment::remove(&Direction::BToA.segment_name(name))?;
    Ok(a || b)
}

/// Side A, before creating: frees the name. A channel whose side A is alive (its owner
/// lock on a2b is held) is refused with [`Error::SideInUse`] unless `replace_live`; a
/// stale one is removed, but only a segment of ours ([`Error::Foreign`] otherwise, and
/// nothing is removed) and only while its name still names what was opened and judged
/// here (a concurrent creator that took the name keeps it). b2a is opened before a2b, so
/// a b2a opened here belongs to the a2b judged here or to an older channel, never to a
/// newer one. Taking a dead creator's lock first means no one else judges that channel
/// alive or stale in the meantime.
fn claim_name(name: &str, replace_live: bool) -> Result<()> {
    let [a2b, b2a] = [Direction::AToB, Direction::BToA].map(|d| d.segment_name(name));
    let old_b2a = Object::open(&b2a)?;
    let old_a2b = Object::open(&a2b)?;
    crate::ownership::removal_window();
    if let Some(old) = &old_a2b {
        let free = old.try_lock().map_err(|source| Error::Os {
            op: "F_OFD_SETLK",
            name: a2b.clone(),
            source,
        })?;
        if !free && !replace_live {
            return Err(Error::SideInUse {
                name: name.to_string(),
                side: "A",
                pid: old.read_u32(layout::PRODUCER_PID_OFFSET).unwrap_or(0),
            });
        }
        old.check_ours(&a2b)?;
    }
    if let Some(old) = &old_b2a {
        old.check_ours(&b2a)?;
    }
    if let Some(old) = &old_a2b {
        if !old.remove_if_named(&a2b)? {
            return Err(Error::Os {
                op: "create (the name was taken by a concurrent creator)",
                name: name.to_string(),
                source: std::io::Error::from_raw_os_error(libc::EEXIST),
            });
        }
    }
    if let Some(old) = &old_b2a {
        old.remove_if_named(&b2a)?;
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
