//! The board's single writer: creates the segment, stamps and publishes each value into
//! the next slot of the ring under its sequence lock, and closes the board on drop.

use std::sync::Arc;

use super::layout::{self, BoardGeometry};
use super::map::BoardMap;
use super::protocol::{self, MAX_SEQUENCE};
use super::{monotonic_ns, BoardBuilder};
use crate::error::{Error, Result};
use crate::liveness::ProcessIdentity;
use crate::segment::{self, Object, Segment};
use crate::sync::Ordering;

/// Byte offset of the writer's pid in the header (`WriterBlock::pid`), read as
/// information for [`Error::SideInUse`].
const PID_OFFSET: usize = 144;

/// The writing end of a board: the one process that publishes values. Holds the board's
/// owner lock while it lives; on drop marks the board closed, wakes waiting readers and
/// removes the segment's name (readers keep their mapping and the last values).
///
/// ```
/// use capnp_shm_transport::board::Board;
/// # let name = format!("doc-board-writer-{}", std::process::id());
/// let mut writer = Board::builder(&name).value_size(16).history(4).create()?;
/// let seq = writer.publish(b"setpoint=42")?;
/// assert_eq!(seq, 1);
/// writer.publish_with(|buf| { buf[..2].copy_from_slice(b"ok"); 2 })?;
/// # Ok::<(), capnp_shm_transport::Error>(())
/// ```
pub struct BoardWriter {
    pub(super) map: BoardMap,
    name: String,
    /// Sequence number of the last value published (0: none).
    seq: u64,
    /// Timestamp of the last value published: stamps never go backwards.
    last_stamp: u64,
}

impl std::fmt::Debug for BoardWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BoardWriter")
            .field("name", &self.name)
            .field("geometry", self.map.geometry())
            .field("seq", &self.seq)
            .finish()
    }
}

pub(super) fn create(builder: &BoardBuilder) -> Result<BoardWriter> {
    segment::validate_name(&builder.name)?;
    let geometry = BoardGeometry::new(builder.value_size, builder.history).map_err(|why| {
        let what = if why.starts_with("history") { "history" } else { "value_size" };
        Error::invalid(what, format!("{why} (value_size {}, history {})", builder.value_size, builder.history))
    })?;
    let seg_name = super::segment_name(&builder.name);
    crate::sigbus::install(); // see `reader::open`
    let segment = Arc::new(create_segment(&builder.name, &seg_name, geometry.segment_len())?);
    let map = BoardMap::new(segment, geometry);
    let me = ProcessIdentity::current();
    let writer = &map.header().writer;
    writer.start_time.store(me.start_time, Ordering::Relaxed);
    writer.pid_ns.store(me.pid_ns, Ordering::Relaxed);
    writer.pid.store(me.pid, Ordering::Relaxed);
    // Publishes the identity above with the rest of the header (Release inside).
    layout::initialize(map.header(), &geometry);
    Ok(BoardWriter {
        map,
        name: builder.name.clone(),
        seq: 0,
        last_stamp: 0,
    })
}

/// Creates the board segment with its owner lock taken; a leftover whose owner lock is
/// free (its writer died) is removed first, a live one refused.
fn create_segment(name: &str, seg_name: &str, len: usize) -> Result<Segment> {
    match Segment::create(seg_name, len, true) {
        Err(Error::Os { source, .. }) if source.raw_os_error() == Some(libc::EEXIST) => {
            if let Some(old) = Object::open(seg_name)? {
                old.check_ours(seg_name)?;
                if old.lock_held() {
                    return Err(Error::SideInUse {
                        name: name.to_string(),
                        side: "writer",
                        pid: old.read_u32(PID_OFFSET).unwrap_or(0),
                    });
                }
                old.remove_if_named(seg_name)?;
            }
            Segment::create(seg_name, len, true)
        }
        other => other,
    }
}

impl BoardWriter {
    /// Publishes `value`, stamped with `CLOCK_MONOTONIC` now. Returns its sequence
    /// number (1 for the first value). [`Error::MessageTooLarge`] when `value` is longer
    /// than [`BoardWriter::max_value_len`] (nothing is published).
    pub fn publish(&mut self, value: &[u8]) -> Result<u64> {
        self.publish_at(value, monotonic_ns())
    }

    /// Publishes `value` with a caller-given timestamp in ns, which must not be earlier
    /// than the previous value's ([`Error::InvalidArgument`] otherwise): the history's
    /// time queries rely on stamps that never go backwards.
    pub fn publish_at(&mut self, value: &[u8], stamp_ns: u64) -> Result<u64> {
        if value.len() > self.max_value_len() {
            return Err(Error::MessageTooLarge {
                len: value.len(),
                max_len: self.max_value_len(),
            });
        }
        self.write(stamp_ns, |buf| {
            buf[..value.len()].copy_from_slice(value);
            value.len()
        })
    }

    /// Publishes a value written in place: `fill` gets the slot's whole payload
    /// ([`BoardWriter::max_value_len`] bytes, holding an older value's bytes) and returns
    /// how many bytes it wrote. Stamped with `CLOCK_MONOTONIC` now (taken after `fill`).
    /// A returned length above the payload is [`Error::MessageTooLarge`]; the slot then
    /// holds nothing readable and the previous value stays the newest.
    pub fn publish_with(&mut self, fill: impl FnOnce(&mut [u8]) -> usize) -> Result<u64> {
        self.write(u64::MAX, fill)
    }

    /// Sequence number of the last value published (0: none yet).
    pub fn sequence(&self) -> u64 {
        self.seq
    }

    /// The largest value this board takes, in bytes (its `value_size`).
    pub fn max_value_len(&self) -> usize {
        self.map.geometry().value_size
    }

    /// The board's shape.
    pub fn geometry(&self) -> BoardGeometry {
        *self.map.geometry()
    }

    /// The board's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Writes the next value; `stamp` `u64::MAX` means "the clock, after `fill`".
    fn write(&mut self, stamp: u64, fill: impl FnOnce(&mut [u8]) -> usize) -> Result<u64> {
        if stamp != u64::MAX && stamp < self.last_stamp {
            return Err(Error::invalid(
                "stamp_ns",
                format!("{stamp} is earlier than the previous value's {}", self.last_stamp),
            ));
        }
        let seq = self.seq + 1;
        if seq > MAX_SEQUENCE {
            return Err(Error::invalid("value", "the board's sequence numbers are used up"));
        }
        let slot = self.map.slot(seq);
        protocol::begin_write(slot, seq);
        // SAFETY: we are the board's only writer (the owner lock), the slot of `seq` is
        // marked odd above, and the slice is dropped before `end_write`.
        let len = fill(unsafe { self.map.payload_mut(seq) });
        if len > self.max_value_len() {
            // The slot stays odd: readers skip it, and `head` still names the previous
            // value. The next publish rewrites the same slot with the same sequence number.
            return Err(Error::MessageTooLarge {
                len,
                max_len: self.max_value_len(),
            });
        }
        let stamp = if stamp == u64::MAX {
            monotonic_ns().max(self.last_stamp)
        } else {
            stamp
        };
        protocol::end_write(slot, &self.map.words(), seq, stamp, len as u64);
        self.seq = seq;
        self.last_stamp = stamp;
        Ok(seq)
    }
}

impl Drop for BoardWriter {
    fn drop(&mut self) {
        let header = self.map.header();
        // SYNC POINT with the Acquire load of `closed` in `BoardReader::writer_state`:
        // a reader that sees it finds every value published before.
        header.writer.closed.store(1, Ordering::Release);
        // Wake every sleeper, announced or not: it re-checks and finds `closed`.
        header.writer.notify.fetch_add(1, Ordering::Release);
        crate::sync::futex::wake(&header.writer.notify, i32::MAX);
        let segment = self.map.segment();
        let _ = segment.object().remove_if_named(&super::segment_name(&self.name));
        segment.object().unlock();
    }
}
