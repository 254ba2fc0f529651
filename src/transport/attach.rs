//! Opening an existing channel: map both segments and validate their headers. Side B
//! attaches with it ([`try_attach`], at open and on each reconnection attempt), and
//! `inspect` reads channels with it without attaching.

use std::sync::Arc;
use std::time::Duration;

use super::link::{Link, Side};
use crate::error::{Corruption, Error, Result};
use crate::layout::{self, Readiness, Validated, HEADER_SIZE, PRODUCER_PID_OFFSET};
use crate::ring::{header_of, Region};
use crate::segment::{Direction, Segment};

/// One segment of a channel, mapped, with its header validated.
pub(crate) struct OpenSegment {
    /// The mapping (side A removes it when its link drops).
    pub segment: Arc<Segment>,
    /// The ring over the mapping, with the validated geometry.
    pub region: Region,
    /// The values the header was validated with.
    pub header: Validated,
}

/// Maps both segments of channel `name`, a2b then b2a, and validates each header fully.
/// `Ok(None)` when a segment is missing or not marked ready yet (side A has not created
/// it, or is still writing it). The two headers are not compared with each other.
///
/// Errors: [`Error::Corrupt`](crate::Error::Corrupt) for a mapping too small for a header
/// or a header that fails validation, and the system errors of mapping a segment.
pub(crate) fn open_segments(name: &str) -> Result<Option<[OpenSegment; 2]>> {
    let a2b = open_segment(name, Direction::AToB)?;
    let Some(a2b) = a2b else { return Ok(None) };
    let b2a = open_segment(name, Direction::BToA)?;
    Ok(b2a.map(|b2a| [a2b, b2a]))
}

fn open_segment(name: &str, direction: Direction) -> Result<Option<OpenSegment>> {
    let Some(segment) = Segment::open(&direction.segment_name(name))? else {
        return Ok(None);
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
        return Ok(None);
    }
    let validated = layout::validate(header, len, direction)?;
    let segment = Arc::new(segment);
    Ok(Some(OpenSegment {
        region: Region::over_segment(segment.clone(), validated.geometry),
        segment,
        header: validated,
    }))
}

/// The outcome of one attempt by side B to attach.
pub(crate) enum Attach {
    Attached(Link),
    /// A's segments are missing or not ready yet.
    NotYet,
    /// Both are there but disagree (A is re-creating them, or they are corrupt).
    Disagree(Corruption),
}

/// One attempt by side B to map and validate both segments, and to take side B's owner
/// lock: [`Error::SideInUse`] when another live opener holds it.
pub(crate) fn try_attach(name: &str, sleep_slice: Duration) -> Result<Attach> {
    let Some([a2b, b2a]) = open_segments(name)? else {
        return Ok(Attach::NotYet);
    };
    if let Some(c) = disagreement(&a2b.header, &b2a.header) {
        return Ok(Attach::Disagree(c));
    }
    // Side B's owner lock, on b2a (the ring B writes); held until the link drops, or
    // released by the kernel when this process dies.
    let owner = b2a.segment.object();
    let claimed = owner.try_lock().map_err(|source| Error::Os {
        op: "F_OFD_SETLK",
        name: Direction::BToA.segment_name(name),
        source,
    })?;
    if !claimed {
        return Err(Error::SideInUse {
            name: name.to_string(),
            side: "B",
            pid: owner.read_u32(PRODUCER_PID_OFFSET).unwrap_or(0),
        });
    }
    Ok(Attach::Attached(Link::new(
        Side::B,
        name,
        a2b.header.generation,
        [a2b.region, b2a.region],
        [a2b.segment, b2a.segment],
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
