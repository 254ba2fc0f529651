//! One attachment to a channel's two segments: the regions, the control words, this
//! side's identity and the liveness monitor. Side B gets a new `Link` when it reconnects
//! to a restarted side A. Also [`Side`], which end of the channel this process is.

use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;

use crate::error::Error;
use crate::layout::ControlBlock;
use crate::liveness::{Monitor, ProcessIdentity};
use crate::ring::Region;
use crate::segment::Segment;
use crate::sigbus;
use crate::sync::{AtomicBool, AtomicU32, Ordering};
use crate::wait::{self, Policy};

/// Which end of a channel this process is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// The creator: writes `<name>.fs.a2b`, reads `<name>.fs.b2a`.
    A = 0,
    /// The opener: writes `<name>.fs.b2a`, reads `<name>.fs.a2b`.
    B = 1,
}

impl Side {
    /// The other side.
    pub(crate) fn peer(self) -> Side {
        match self {
            Side::A => Side::B,
            Side::B => Side::A,
        }
    }
}

pub(crate) struct Link {
    /// Longest single futex sleep of this side's waiters (process-local setting).
    pub sleep_slice: Duration,
    pub side: Side,
    pub name: String,
    pub generation: u64,
    pub a2b: Region,
    pub b2a: Region,
    /// The mapped segments, a2b then b2a (side A removes them on drop).
    pub segments: [Arc<Segment>; 2],
    /// Set (Release) by the liveness monitor while the peer's process is gone.
    pub peer_dead: Arc<AtomicBool>,
    /// Keeps our heartbeat going and watches the peer; stopped when the link closes.
    pub monitor: Mutex<Option<Monitor>>,
    /// Set by the first [`Link::close`].
    closing: AtomicBool,
}

impl Link {
    /// A link over freshly created (side A) or validated (side B) segments.
    pub(crate) fn new(
        side: Side,
        name: &str,
        generation: u64,
        regions: [Region; 2],
        segments: [Arc<Segment>; 2],
        sleep_slice: Duration,
    ) -> Link {
        let [a2b, b2a] = regions;
        Link {
            sleep_slice,
            side,
            name: name.to_string(),
            generation,
            a2b,
            b2a,
            segments,
            peer_dead: Arc::new(AtomicBool::new(false)),
            monitor: Mutex::new(None),
            closing: AtomicBool::new(false),
        }
    }

    /// The ring this side writes.
    pub(crate) fn outgoing(&self) -> &Region {
        match self.side {
            Side::A => &self.a2b,
            Side::B => &self.b2a,
        }
    }
    /// The ring this side reads.
    pub(crate) fn incoming(&self) -> &Region {
        match self.side {
            Side::A => &self.b2a,
            Side::B => &self.a2b,
        }
    }
    /// The control block every reader uses, on both sides and in the monitor: the a2b
    /// copy, the one source of truth. (The b2a copy is a mirror nothing here reads, so a
    /// side killed between its two stores is seen by its peer's calls and monitor alike.)
    #[inline]
    pub(crate) fn control(&self) -> &ControlBlock {
        &self.a2b.header().control
    }
    /// Writes a control word in both headers: the a2b copy (the one read) first, then the
    /// b2a mirror.
    pub(crate) fn set_control_word(&self, word: impl Fn(&ControlBlock) -> &AtomicU32, value: u32) {
        for region in [&self.a2b, &self.b2a] {
            // SYNC POINT (closed flags) with the Acquire loads in `peer_closed` and in the
            // liveness monitor (`liveness::run`), both of the a2b copy: messages committed
            // before we close are visible to a peer that sees the flag.
            word(&region.header().control).store(value, Ordering::Release);
        }
    }
    /// How this side idles while waiting on `wait_word`.
    pub(crate) fn policy<'a>(&'a self, wait_word: &'a AtomicU32) -> Policy<'a> {
        let me = self.side as usize;
        Policy {
            mode: &self.control().wait_mode[me],
            poll_us: &self.control().poll_us[me],
            wait_word,
            sleep_slice: self.sleep_slice,
        }
    }
    /// The peer's wait-mode word (whether to wake it after publishing).
    pub(crate) fn peer_mode(&self) -> &AtomicU32 {
        &self.control().wait_mode[self.side.peer() as usize]
    }
    /// Wakes every futex sleeper of either side (after a close or a mode change).
    pub(crate) fn wake_everyone(&self) {
        wake_regions(&[&self.a2b, &self.b2a]);
    }
    /// Whether the peer's closed flag (a2b copy) is set.
    #[inline]
    pub(crate) fn peer_closed(&self) -> bool {
        // SYNC POINT with the peer's Release store in `set_control_word`.
        self.control().closed[self.side.peer() as usize].load(Ordering::Acquire) != 0
    }
    /// Why the peer will send or read nothing more, if it will not: a segment was
    /// truncated, the peer closed, or it died. Costs one more load of a process-wide word
    /// than the two flags: this link's truncation marks are read only once some mapping of
    /// the process was found truncated; a gone peer's segments are checked with `fstat`
    /// (so a truncation that closed the peer is reported as what it is).
    #[inline]
    pub(crate) fn peer_gone(&self) -> Option<Error> {
        if self.peer_present() {
            return None;
        }
        self.why_peer_gone()
    }
    /// The common case of [`Link::peer_gone`], inlined into every send and receive: no
    /// truncation anywhere in the process, the peer's closed flag clear, not known dead.
    #[inline(always)]
    pub(crate) fn peer_present(&self) -> bool {
        // SYNC POINT (peer_dead) with the Release stores in `on_peer_change`
        // (session.rs); the closed flag's is in `peer_closed`.
        !sigbus::any_truncated() && !self.peer_closed() && !self.peer_dead.load(Ordering::Acquire)
    }
    /// [`Link::peer_gone`] once [`Link::peer_present`] said no: which of them it is.
    #[cold]
    #[inline(never)]
    fn why_peer_gone(&self) -> Option<Error> {
        if sigbus::any_truncated() && self.segments.iter().any(|s| s.marked()) {
            return self.truncated();
        }
        let gone = if self.peer_closed() {
            Error::Closed
        } else if self.peer_dead.load(Ordering::Acquire) {
            Error::PeerDead
        } else {
            return None;
        };
        Some(self.truncated().unwrap_or(gone))
    }
    /// `Corrupt(Truncated)` when either segment was shrunk under its mapping (cold path:
    /// an `fstat` per segment unless already marked).
    pub(crate) fn truncated(&self) -> Option<Error> {
        self.segments
            .iter()
            .find_map(|s| s.truncation())
            .map(Error::Corrupt)
    }
    /// A corrupt value read from a truncated segment is reported as the truncation.
    #[cold]
    pub(crate) fn explain(&self, error: Error) -> Error {
        match error {
            Error::Corrupt(_) => self.truncated().unwrap_or(error),
            other => other,
        }
    }
    /// Announces side B on a freshly attached link (at open and after each reconnection):
    /// records its identity, publishes its poll interval and wait mode in both headers,
    /// and clears its closed flag last, so a peer that sees it open again sees the new
    /// identity, never the previous B's. Side A writes the same in its headers when it
    /// creates them.
    pub(crate) fn announce(&self, poll_us: u32, wait_mode: u32) {
        let me = self.side as usize;
        self.record_identity();
        self.set_control_word(|c| &c.poll_us[me], poll_us);
        self.set_control_word(|c| &c.wait_mode[me], wait_mode);
        self.set_control_word(|c| &c.closed[me], 0);
    }
    /// Records this process in the producer block of our outgoing ring (identity for
    /// liveness) and as the consumer of our incoming ring.
    pub(crate) fn record_identity(&self) {
        ProcessIdentity::current().record(&self.outgoing().header().producer);
        self.incoming()
            .header()
            .consumer
            .pid
            .store(std::process::id(), Ordering::Relaxed);
    }
}

/// Wakes every futex sleeper on the given regions' wait words.
pub(crate) fn wake_regions(regions: &[&Region]) {
    for region in regions {
        wait::wake_all(&region.header().producer.wait);
        wait::wake_all(&region.header().consumer.wait);
    }
}

impl Link {
    /// Closes this side of the link, once (later calls do nothing): stops the monitor,
    /// marks this side closed, wakes every sleeper and, on side A, removes the segments.
    /// Called when the session's last user handle is gone, and on drop.
    ///
    /// A link that was never announced is dropped with [`Link::discard`] instead.
    pub(crate) fn close(&self) {
        // Relaxed: exactly one caller wins the swap; nothing is published with it.
        if self.closing.swap(true, Ordering::Relaxed) {
            return;
        }
        // Stop the monitor first: it must not report the peer's reaction to our close.
        let monitor = self.monitor.lock().take();
        drop(monitor);
        self.set_control_word(|c| &c.closed[self.side as usize], 1);
        self.wake_everyone();
        if self.side == Side::A {
            for segment in &self.segments {
                segment.remove_if_same();
            }
        }
        // Last: the side is free for a new owner once it is closed (and, for A, unlinked).
        self.segments[self.side as usize].object().unlock();
    }
}

impl Link {
    /// Drops a link attached but never announced (a reconnection attempt that found the
    /// generation it lost, or came too late) without touching the headers: they may
    /// belong to a live side A, and to whatever side B is announced there.
    pub(crate) fn discard(self) {
        // Relaxed: read back only by `close`, on this thread, when `self` drops below.
        self.closing.store(true, Ordering::Relaxed);
    }
}

impl Drop for Link {
    fn drop(&mut self) {
        self.close();
    }
}
