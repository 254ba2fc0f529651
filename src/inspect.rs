//! Looking at channels without attaching to them: list the channels under `/dev/shm` and
//! read one channel's headers (for tools such as the demo's `list` and `inspect`).

use crate::error::{Error, Result};
use crate::layout::Geometry;
use crate::segment::{self, Direction, Object};
use crate::sync::Ordering;
use crate::transport::attach::open_segments;
use crate::wait::WaitMode;

pub use crate::ring_info::RingInfo;

// Boards (the latest-value channels) are looked at with their own functions, re-exported
// here beside the channels' (the demo's `list`, `inspect` and `remove --stale` use both).
pub use crate::board::{board_is_stale, inspect_board, list_boards, remove_stale_boards, BoardInfo};

/// One channel's headers, validated like an open would, read without attaching.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChannelInfo {
    /// The channel name.
    pub name: String,
    /// The creation generation.
    pub generation: u64,
    /// Process id of side A.
    pub creator_pid: u32,
    /// Slot geometry (the same in both directions).
    pub geometry: Geometry,
    /// The a2b ring (A writes, B reads).
    pub a2b: RingInfo,
    /// The b2a ring (B writes, A reads).
    pub b2a: RingInfo,
    /// Poll intervals in µs, side A then side B.
    pub poll_us: [u32; 2],
    /// Wait modes, side A then side B.
    pub wait_mode: [WaitMode; 2],
    /// Closed flags, side A then side B.
    pub closed: [bool; 2],
    /// Whether no live process holds side A's owner lock: the creator closed or died, and
    /// the channel is stale. Judged from the kernel's lock, so it holds across pid
    /// namespaces and no word written into the segment can fake it.
    pub creator_gone: bool,
    /// Whether a live process holds side B's owner lock (a B is attached).
    pub b_held: bool,
}

impl ChannelInfo {
    /// Whether side A is attached: its owner lock is held and it has not closed.
    pub fn a_attached(&self) -> bool {
        !self.closed[0] && !self.creator_gone
    }

    /// Whether side B is attached: its owner lock is held and it has not closed.
    pub fn b_attached(&self) -> bool {
        self.b_held && !self.closed[1]
    }
}

/// Names of the channels that have both segments under `/dev/shm`, sorted.
pub fn list_channels() -> Result<Vec<String>> {
    let mut names = segment_names()?;
    names.retain(|name| {
        [Direction::AToB, Direction::BToA]
            .iter()
            .all(|d| segment::path_of(&d.segment_name(name)).exists())
    });
    Ok(names)
}

/// Reads and validates channel `name`'s headers without attaching to it.
///
/// Errors: [`Error::NotFound`] when a segment is missing or not ready yet, and the
/// [`Error::Corrupt`] errors an open would give.
pub fn inspect_channel(name: &str) -> Result<ChannelInfo> {
    segment::validate_name(name)?;
    let Some([a2b, b2a]) = open_segments(name)? else {
        return Err(Error::NotFound {
            name: name.to_string(),
            waited: std::time::Duration::ZERO,
        });
    };
    let va = a2b.header;
    let control = &a2b.region.header().control;
    let word = |w: &crate::sync::AtomicU32| w.load(Ordering::Relaxed);
    Ok(ChannelInfo {
        name: name.to_string(),
        generation: va.generation,
        creator_pid: va.creator_pid,
        geometry: va.geometry,
        a2b: RingInfo::read(a2b.region.header(), a2b.region.geometry().slot_count),
        b2a: RingInfo::read(b2a.region.header(), b2a.region.geometry().slot_count),
        poll_us: [word(&control.poll_us[0]), word(&control.poll_us[1])],
        wait_mode: [
            WaitMode::from_word(word(&control.wait_mode[0])),
            WaitMode::from_word(word(&control.wait_mode[1])),
        ],
        closed: [word(&control.closed[0]) != 0, word(&control.closed[1]) != 0],
        creator_gone: !a2b.segment.object().lock_held(),
        b_held: b2a.segment.object().lock_held(),
    })
}

/// Whether channel `name` is stale, so that removing it harms no live creator. A channel
/// whose side A holds its owner lock is never stale, nor is one with a segment that is not
/// ours (another owner, or a mode other than 0600: see [`Error::Foreign`]). Otherwise a
/// channel with a readable header of this layout version is stale (the lock is
/// authoritative there), and an unreadable one (truncated, scribbled, half created,
/// another layout version) is stale when no process we can see maps either of its
/// segments (`/proc/<pid>/maps`).
pub fn channel_is_stale(name: &str) -> Result<bool> {
    Ok(stale_segments(name)?.is_some())
}

/// Removes every stale channel (see [`channel_is_stale`]), including unreadable ones and
/// lone segments, and returns their names. A segment is unlinked only while its name
/// still names the object judged stale, so a channel created meanwhile under the same
/// name is left alone.
pub fn remove_stale_channels() -> Result<Vec<String>> {
    let mut removed = Vec::new();
    for name in segment_names()? {
        if remove_if_stale(&name)? {
            removed.push(name);
        }
    }
    Ok(removed)
}

/// Removes channel `name` if it is stale; `true` when a segment judged stale was removed.
pub(crate) fn remove_if_stale(name: &str) -> Result<bool> {
    let Some(judged) = stale_segments(name)? else {
        return Ok(false);
    };
    crate::ownership::removal_window();
    let mut removed = false;
    for (object, direction) in judged.iter().zip([Direction::AToB, Direction::BToA]) {
        if let Some(object) = object {
            removed |= object.remove_if_named(&direction.segment_name(name))?;
        }
    }
    Ok(removed)
}

/// The segments of channel `name` (a2b, b2a; `None` where missing), opened and judged
/// stale, or `None` when the channel is not stale. b2a is opened first, as side A's
/// create does (a b2a opened here never belongs to a newer a2b).
fn stale_segments(name: &str) -> Result<Option<[Option<Object>; 2]>> {
    segment::validate_name(name)?;
    let [a2b, b2a] = [Direction::AToB, Direction::BToA].map(|d| d.segment_name(name));
    let opened = Object::open(&b2a).and_then(|b| Ok((Object::open(&a2b)?, b)));
    let (a2b_object, b2a_object) = match opened {
        Ok(objects) => objects,
        Err(Error::Foreign { .. }) => return Ok(None),
        Err(e) => return Err(e),
    };
    let objects = [a2b_object, b2a_object];
    let named = [&a2b, &b2a];
    if objects
        .iter()
        .zip(named)
        .any(|(o, n)| o.as_ref().is_some_and(|o| o.check_ours(n).is_err()))
    {
        return Ok(None);
    }
    if objects[0].as_ref().is_some_and(Object::lock_held) {
        return Ok(None);
    }
    if inspect_channel(name).is_ok() {
        return Ok(Some(objects));
    }
    let inodes: Vec<u64> = objects.iter().flatten().map(Object::inode).collect();
    Ok((!mapped_by_any_process(&inodes)).then_some(objects))
}

/// Names of the channels with at least one segment under `/dev/shm`, sorted.
fn segment_names() -> Result<Vec<String>> {
    let entries = std::fs::read_dir(segment::SHM_DIR).map_err(|source| Error::Os {
        op: "read_dir",
        name: segment::SHM_DIR.to_string(),
        source,
    })?;
    let mut names: Vec<String> = entries
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter_map(|f| {
            [Direction::AToB, Direction::BToA]
                .iter()
                .find_map(|d| f.strip_suffix(d.suffix()).map(str::to_string))
        })
        .filter(|name| segment::validate_name(name).is_ok())
        .collect();
    names.sort();
    names.dedup();
    Ok(names)
}

/// Whether any process whose memory map we may read maps a `/dev/shm` object with one of
/// these inodes.
pub(crate) fn mapped_by_any_process(inodes: &[u64]) -> bool {
    let Ok(procs) = std::fs::read_dir("/proc") else {
        return false;
    };
    procs
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|pid| pid.bytes().all(|b| b.is_ascii_digit()))
        .filter_map(|pid| std::fs::read_to_string(format!("/proc/{pid}/maps")).ok())
        .any(|maps| {
            maps.lines().any(|line| {
                // address perms offset dev inode path
                let mut fields = line.split_whitespace().skip(4);
                let inode = fields.next().and_then(|i| i.parse::<u64>().ok());
                let path = fields.next().unwrap_or("");
                path.starts_with("/dev/shm/") && inode.is_some_and(|i| inodes.contains(&i))
            })
        })
}
