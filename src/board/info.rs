//! Looking at boards without reading values: list them, read one's header, judge and
//! remove stale ones (for tools such as the demo's `list`, `inspect` and `remove`).

use super::layout;
use super::map::header_of;
use super::{segment_name, BoardGeometry, WriterState, BOARD_SUFFIX};
use crate::error::{Error, Result};
use crate::segment::{self, Object, Segment};
use crate::sync::Ordering;

/// One board's header, validated like an open would.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BoardInfo {
    /// The board name.
    pub name: String,
    /// Its shape.
    pub geometry: BoardGeometry,
    /// Sequence number of the newest value (0: none yet).
    pub newest: u64,
    /// The writer's process id as recorded (information only).
    pub writer_pid: u32,
    /// Whether the writer is attached, closed or dead (judged by its owner lock).
    pub writer: WriterState,
    /// Readers announced as waiting for a newer value (a reader killed while waiting
    /// leaves its count behind: information only).
    pub waiters: u32,
}

/// Names of the boards under `/dev/shm`, sorted.
pub fn list_boards() -> Result<Vec<String>> {
    let entries = std::fs::read_dir(segment::SHM_DIR).map_err(|source| Error::Os {
        op: "read_dir",
        name: segment::SHM_DIR.to_string(),
        source,
    })?;
    let mut names: Vec<String> = entries
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter_map(|f| f.strip_suffix(BOARD_SUFFIX).map(str::to_string))
        .filter(|name| segment::validate_name(name).is_ok())
        .collect();
    names.sort();
    Ok(names)
}

/// Reads and validates board `name`'s header. [`Error::NotFound`] when it does not exist
/// or is not ready; the [`Error::Corrupt`] errors an open would give.
pub fn inspect_board(name: &str) -> Result<BoardInfo> {
    segment::validate_name(name)?;
    let not_found = || Error::NotFound {
        name: name.to_string(),
        waited: std::time::Duration::ZERO,
    };
    let segment = Segment::open(&segment_name(name))?.ok_or_else(not_found)?;
    let header = header_of(&segment)?;
    let geometry = layout::validate(header, segment.len())?.ok_or_else(not_found)?;
    let w = &header.writer;
    // SYNC POINT with the Release store of `closed` in `BoardWriter::drop` (as
    // `BoardReader::writer_state`).
    let closed = w.closed.load(Ordering::Acquire) != 0;
    Ok(BoardInfo {
        name: name.to_string(),
        geometry,
        // Relaxed: a snapshot for display.
        newest: w.head.load(Ordering::Relaxed),
        writer_pid: w.pid.load(Ordering::Relaxed),
        writer: if closed {
            WriterState::Closed
        } else if segment.object().lock_held() {
            WriterState::Alive
        } else {
            WriterState::Dead
        },
        waiters: header.readers.waiters.load(Ordering::Relaxed),
    })
}

/// Whether board `name` is stale: its segment is ours, no live writer holds its owner
/// lock, and either its header is complete (its writer closed or died) or, not ready, it
/// is over a second old and no process maps it (a creator takes the lock a moment after
/// creating the object: a board that young is never judged). `false` when it does not
/// exist.
pub fn board_is_stale(name: &str) -> Result<bool> {
    Ok(stale_object(name)?.is_some())
}

/// Removes board `name`'s segment whatever its state (a live writer keeps its mapping
/// and the board carries on unnamed). `true` when it existed.
pub fn remove_board(name: &str) -> Result<bool> {
    segment::validate_name(name)?;
    segment::remove(&segment_name(name))
}

/// Removes every stale board (see [`board_is_stale`]) and returns their names.
pub fn remove_stale_boards() -> Result<Vec<String>> {
    let mut removed = Vec::new();
    for name in list_boards()? {
        if let Some(object) = stale_object(&name)? {
            crate::ownership::removal_window();
            if object.remove_if_named(&segment_name(&name))? {
                removed.push(name);
            }
        }
    }
    Ok(removed)
}

fn stale_object(name: &str) -> Result<Option<Object>> {
    segment::validate_name(name)?;
    let seg_name = segment_name(name);
    let object = match Object::open(&seg_name) {
        Ok(Some(object)) => object,
        Ok(None) | Err(Error::Foreign { .. }) => return Ok(None),
        Err(e) => return Err(e),
    };
    if object.check_ours(&seg_name).is_err() || object.lock_held() {
        return Ok(None);
    }
    // A board a writer finished creating, whose writer is gone: stale.
    if inspect_board(name).is_ok() {
        return Ok(Some(object));
    }
    // Not ready (or unreadable): a creator may be between creating the object and taking
    // its lock, a window in which the lock is free too. Such a board is stale only once
    // it is older than `UNREADY_GRACE` and no process maps it.
    let young = std::fs::metadata(segment::path_of(&seg_name))
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| t.elapsed().ok())
        .is_none_or(|age| age < UNREADY_GRACE);
    if young || crate::inspect::mapped_by_any_process(&[object.inode()]) {
        return Ok(None);
    }
    Ok(Some(object))
}

/// How old a board that is not ready must be before `remove --stale` may judge it stale.
const UNREADY_GRACE: std::time::Duration = std::time::Duration::from_secs(1);
