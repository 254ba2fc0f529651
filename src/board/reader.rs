//! A board's reader: opens the segment (validating its header), reads the newest value
//! or a recent one under the slots' sequence locks, waits for newer values, and tells
//! whether the writer still lives. Time queries over the history are in `history.rs`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::layout::{self, BoardGeometry};
use super::map::{self, BoardMap};
use super::protocol::{self, SlotRead};
use super::{monotonic_ns, BoardBuilder, BoardWait, Stamp, WriterState};
use crate::error::{Corruption, Error, Result};
use crate::segment::{self, Segment};
use crate::sync::{thread, Ordering};

/// Consecutive rounds `latest` retries a slot that stays busy while `head` does not move
/// before it reports corruption (a live writer finishes a write long before).
const BUSY_LIMIT: u32 = 1 << 20;
/// How often a waiting reader asks the kernel whether the writer still holds its lock.
const LIVENESS_PERIOD: Duration = Duration::from_millis(1);
/// The longest futex sleep in [`BoardWait::Block`] before the writer's liveness is
/// checked again.
pub(crate) const BOARD_SLEEP_SLICE: Duration = Duration::from_millis(10);
/// How long [`BoardWait::Block`] spins before it sleeps on the futex.
const SPIN_PHASE: Duration = Duration::from_micros(20);

/// A reading end of a board. Any number of readers, in any processes, may read one
/// board; readers never write its values (only the waiter count, to be woken).
///
/// ```
/// use std::time::Duration;
/// use capnp_shm_transport::board::Board;
/// # let name = format!("doc-board-reader-{}", std::process::id());
/// let mut writer = Board::builder(&name).value_size(32).history(8).create()?;
/// let mut reader = Board::builder(&name).open(Duration::from_secs(1))?;
/// let mut buf = Vec::new();
/// assert!(reader.latest(&mut buf)?.is_none()); // nothing published yet
/// writer.publish(b"v1")?;
/// writer.publish(b"v2")?;
/// let stamp = reader.latest(&mut buf)?.unwrap();
/// assert_eq!((stamp.sequence, &buf[..]), (2, &b"v2"[..]));
/// assert_eq!(reader.get(1, &mut buf)?.unwrap().sequence, 1); // one back in history
/// assert_eq!(reader.wait_newer(1, Duration::from_secs(1))?, 2);
/// # Ok::<(), capnp_shm_transport::Error>(())
/// ```
pub struct BoardReader {
    map: BoardMap,
    name: String,
    wait: BoardWait,
}

impl std::fmt::Debug for BoardReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BoardReader")
            .field("name", &self.name)
            .field("geometry", self.map.geometry())
            .field("wait", &self.wait)
            .finish()
    }
}

pub(super) fn open(builder: &BoardBuilder, timeout: Duration) -> Result<BoardReader> {
    segment::validate_name(&builder.name)?;
    let seg_name = super::segment_name(&builder.name);
    // The SIGBUS guard: a board truncated under our mapping reads as zeros and is reported
    // as `Corrupt(Truncated)` instead of killing the process.
    crate::sigbus::install();
    let start = Instant::now();
    loop {
        if let Some(segment) = Segment::open(&seg_name)? {
            let header = map::header_of(&segment)?;
            if let Some(geometry) = layout::validate(header, segment.len())? {
                return Ok(BoardReader {
                    map: BoardMap::new(Arc::new(segment), geometry),
                    name: builder.name.clone(),
                    wait: builder.wait,
                });
            }
        }
        if start.elapsed() >= timeout {
            return Err(Error::NotFound {
                name: builder.name.clone(),
                waited: timeout,
            });
        }
        std::thread::sleep(Duration::from_millis(1).min(timeout));
    }
}

impl BoardReader {
    /// Copies the newest value into `buf` (cleared and resized) and returns its stamp;
    /// `None` before the first publish. Never returns a torn value: a copy the writer
    /// overwrote meanwhile is retried. A writer that died mid-write left the value being
    /// written incomplete in a slot of its own, so this returns the last complete one.
    pub fn latest(&mut self, buf: &mut Vec<u8>) -> Result<Option<Stamp>> {
        let map = &self.map;
        latest_by(map, |seq, len| map.copy_out(seq, len, buf))
    }

    /// Like [`BoardReader::latest`], but `None` unless the newest value's stamp is at most
    /// `max_age` before `CLOCK_MONOTONIC` now (for values stamped by the writer's clock).
    pub fn latest_if_fresh(&mut self, max_age: Duration, buf: &mut Vec<u8>) -> Result<Option<Stamp>> {
        let Some(stamp) = self.latest(buf)? else {
            return Ok(None);
        };
        let max_age = u64::try_from(max_age.as_nanos()).unwrap_or(u64::MAX);
        Ok((monotonic_ns().saturating_sub(stamp.timestamp_ns) <= max_age).then_some(stamp))
    }

    /// Copies the value `back` places before the newest (0: the newest) into `buf`.
    /// `None` when it does not exist, is beyond the history, or was overwritten while
    /// this ran (never a different value than asked for).
    pub fn get(&mut self, back: usize, buf: &mut Vec<u8>) -> Result<Option<Stamp>> {
        if back >= self.map.geometry().history {
            return Ok(None);
        }
        let head = protocol::newest(&self.map.words());
        let Some(seq) = head.checked_sub(back as u64).filter(|&s| s >= 1) else {
            return Ok(None);
        };
        match self.read(seq, buf)? {
            Found::Value(stamp) => Ok(Some(stamp)),
            Found::Gone => Ok(None),
        }
    }

    /// Waits until a value newer than sequence number `seen` is published and returns
    /// the newest sequence number, per the reader's [`BoardWait`]. Errors:
    /// [`Error::Timeout`] when `timeout` passes first, [`Error::Closed`] when the writer
    /// closed the board, [`Error::WriterDead`] when its process died (seen within
    /// about a millisecond, or a sleep slice of 10 ms in block mode).
    pub fn wait_newer(&mut self, seen: u64, timeout: Duration) -> Result<u64> {
        let words = self.map.words();
        let start = Instant::now();
        let (mut now, mut checked) = (start, start);
        let mut spins = 0u32;
        loop {
            let head = protocol::newest(&words);
            if head > seen {
                return Ok(head);
            }
            if spins % 64 == 0 {
                now = Instant::now();
            }
            spins = spins.wrapping_add(1);
            let elapsed = now.duration_since(start);
            // The writer's state costs a system call: asked once a period, and before
            // reporting a timeout (a dead writer is not a timeout).
            if elapsed >= timeout || now.duration_since(checked) >= LIVENESS_PERIOD {
                checked = now;
                if let Err(gone) = self.check_writer() {
                    // A value published before the close (or death) is still news: the
                    // Acquire load of `closed` makes the last `head` visible here.
                    let head = protocol::newest(&words);
                    return if head > seen { Ok(head) } else { Err(gone) };
                }
            }
            if elapsed >= timeout {
                return Err(Error::Timeout { full: false });
            }
            let left = timeout - elapsed;
            match self.wait {
                BoardWait::Spin => thread::spin_loop(),
                BoardWait::Sleep(d) => thread::sleep(d.min(left)),
                BoardWait::Block if elapsed < SPIN_PHASE => thread::spin_loop(),
                BoardWait::Block => {
                    protocol::wait_step(&words, seen, left.min(BOARD_SLEEP_SLICE));
                    spins = 0; // re-read the clock and the writer's state at once
                }
            }
        }
    }

    /// Sequence number of the newest value (0: none yet).
    pub fn newest_sequence(&self) -> u64 {
        protocol::newest(&self.map.words())
    }

    /// Whether the writer is attached, closed the board, or died. Asks the kernel about
    /// the writer's owner lock (one `fcntl`), so no word in the segment can fake a live
    /// writer's death.
    pub fn writer_state(&self) -> WriterState {
        // SYNC POINT with the Release store of `closed` in `BoardWriter::drop`.
        if self.map.header().writer.closed.load(Ordering::Acquire) != 0 {
            WriterState::Closed
        } else if self.map.segment().object().lock_held() {
            WriterState::Alive
        } else {
            WriterState::Dead
        }
    }

    /// `Ok(())` while the writer is attached; [`Error::Closed`] or [`Error::WriterDead`].
    pub fn check_writer(&self) -> Result<()> {
        match self.writer_state() {
            WriterState::Alive => Ok(()),
            WriterState::Closed => Err(Error::Closed),
            WriterState::Dead => Err(Error::WriterDead),
        }
    }

    /// How a waiting call idles (see [`BoardWait`]).
    pub fn set_wait(&mut self, wait: BoardWait) {
        self.wait = wait;
    }

    /// The board's shape as its validated header gives it.
    pub fn geometry(&self) -> BoardGeometry {
        *self.map.geometry()
    }

    /// The largest value the board carries, in bytes.
    pub fn max_value_len(&self) -> usize {
        self.map.geometry().value_size
    }

    /// The board's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    pub(super) fn map(&self) -> &BoardMap {
        &self.map
    }

    /// Reads value `seq` (published: `seq <= head` when read) into `buf`.
    pub(super) fn read(&self, seq: u64, buf: &mut Vec<u8>) -> Result<Found> {
        read_by(&self.map, seq, |seq, len| self.map.copy_out(seq, len, buf))
    }

    /// Reads the stamp of value `seq` (published) under its sequence lock.
    pub(super) fn stamp_of(&self, seq: u64) -> Result<Option<u64>> {
        let read = protocol::read_slot(self.map.slot(seq), self.map.geometry().value_size, |_| {})?;
        Ok(match classify(read, seq, self.map.geometry().slot_count)? {
            Found::Value(stamp) => Some(stamp.timestamp_ns),
            Found::Gone => None,
        })
    }
}

/// The newest value, copied by `copy(seq, len)`, retried while the writer overwrites it.
pub(super) fn latest_by(map: &BoardMap, mut copy: impl FnMut(u64, usize)) -> Result<Option<Stamp>> {
    let words = map.words();
    let mut head = protocol::newest(&words);
    let mut busy = 0u32;
    loop {
        if head == 0 {
            return nothing_yet(map);
        }
        if let Found::Value(stamp) = read_by(map, head, &mut copy)? {
            return Ok(Some(stamp));
        }
        let now = protocol::newest(&words);
        if now == head {
            busy += 1;
            if busy >= BUSY_LIMIT {
                return Err(Corruption::BoardSlot {
                    seq: head,
                    found: map.slot(head).lock.load(Ordering::Relaxed),
                    why: "the newest value's slot stays busy",
                }
                .into());
            }
            thread::spin_loop();
        } else {
            busy = 0;
        }
        head = now;
    }
}

/// Reads published value `seq`, copied by `copy(seq, len)`.
#[inline]
fn read_by(map: &BoardMap, seq: u64, mut copy: impl FnMut(u64, usize)) -> Result<Found> {
    let geometry = map.geometry();
    protocol::read_slot(map.slot(seq), geometry.value_size, |len| copy(seq, len))
        .and_then(|read| classify(read, seq, geometry.slot_count))
        .map_err(|bad| truncation(map).unwrap_or(bad.into()))
}

/// `Corrupt(Truncated)` when the board's object was shrunk under the mapping (bytes past
/// its new end read as zeros: the SIGBUS guard zero-fills pages past it, the kernel the
/// rest of the last page). A cold-path check (an `fstat` unless the guard marked it),
/// made where zeros would otherwise read as corruption or as "nothing published yet".
fn truncation(map: &BoardMap) -> Option<Error> {
    map.segment().truncation().map(Error::from)
}

/// `Ok(None)` for "nothing published yet" (`head` 0), unless the segment was truncated
/// (its `head` then reads 0 too): one `fstat`, paid only before the first publish.
fn nothing_yet(map: &BoardMap) -> Result<Option<Stamp>> {
    truncation(map).map_or(Ok(None), Err)
}

/// What reading a published value found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Found {
    /// The value, copied untorn.
    Value(Stamp),
    /// Overwritten by a newer value (or being overwritten).
    Gone,
}

/// Judges one slot read for published value `seq` in a ring of `slot_count` slots.
pub(super) fn classify(read: SlotRead, seq: u64, slot_count: usize) -> Result<Found, Corruption> {
    match read {
        SlotRead::Busy => Ok(Found::Gone),
        SlotRead::Empty => Err(Corruption::BoardSlot {
            seq,
            found: 0,
            why: "a published value's slot was never written",
        }),
        SlotRead::Stable { seq: found, .. }
            if found < seq || (found - seq) % slot_count as u64 != 0 =>
        {
            Err(Corruption::BoardSlot {
                seq,
                found,
                why: "the slot holds a sequence number that does not belong there",
            })
        }
        SlotRead::Stable { seq: found, .. } if found > seq => Ok(Found::Gone),
        SlotRead::Stable { stamp, len, .. } => Ok(Found::Value(Stamp {
            sequence: seq,
            timestamp_ns: stamp,
            len,
        })),
    }
}
