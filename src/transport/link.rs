//! One attachment to a channel's two segments: the regions, the control words, this
//! side's identity and the liveness monitor. Side B gets a new `Link` when it reconnects
//! to a restarted side A.

use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;

use super::Side;
use crate::error::{Corruption, Error, Result};
use crate::layout::{self, ControlBlock, Readiness, Validated, HEADER_SIZE};
use crate::liveness::{Monitor, ProcessIdentity};
use crate::ring::{header_of, Region};
use crate::segment::{Direction, Segment};
use crate::sync::{AtomicU32, Ordering};
use crate::wait::{self, Policy};

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
    /// Keeps our heartbeat going and watches the peer; stopped when the link drops.
    pub monitor: Mutex<Option<Monitor>>,
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
    /// The control block read by both sides (the a2b copy).
    pub(crate) fn control(&self) -> &ControlBlock {
        &self.a2b.header().control
    }
    /// Writes a control word in both headers (they mirror each other).
    pub(crate) fn set_control_word(&self, word: impl Fn(&ControlBlock) -> &AtomicU32, value: u32) {
        for region in [&self.b2a, &self.a2b] {
            // SYNC POINT (closed flags) with the Acquire load in `peer_closed`: messages
            // committed before we close are visible to a peer that sees the flag.
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
    pub(crate) fn peer_closed(&self) -> bool {
        self.control().closed[self.side.peer() as usize].load(Ordering::Acquire) != 0
    }
    /// Why the peer will send or read nothing more, if it will not: it closed, or died.
    pub(crate) fn peer_gone(&self) -> Option<Error> {
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

impl Drop for Link {
    fn drop(&mut self) {
        // Stop the monitor first: it must not report the peer's reaction to our close.
        drop(self.monitor.lock().take());
        self.set_control_word(|c| &c.closed[self.side as usize], 1);
        self.wake_everyone();
        if self.side == Side::A {
            for segment in &self.segments {
                segment.remove_if_same();
            }
        }
    }
}

/// The outcome of one attempt by side B to attach.
pub(crate) enum Attach {
    Attached(Link),
    /// A's segments are missing or not ready yet.
    NotYet,
    /// Both are there but disagree (A is re-creating them, or they are corrupt).
    Disagree(Corruption),
}

/// One attempt by side B to map and validate both segments.
pub(crate) fn try_attach(name: &str, sleep_slice: Duration) -> Result<Attach> {
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
    let regions = [
        Region::over_segment(a2b.clone(), va.geometry),
        Region::over_segment(b2a.clone(), vb.geometry),
    ];
    Ok(Attach::Attached(Link::new(
        Side::B,
        name,
        va.generation,
        regions,
        [a2b, b2a],
        sleep_slice,
    )))
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
