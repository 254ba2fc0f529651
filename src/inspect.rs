//! Looking at channels without attaching to them: list the channels under `/dev/shm` and
//! read one channel's headers (for tools such as the demo's `list` and `inspect`).

use std::sync::Arc;

use crate::error::{Error, Result};
use crate::layout::{self, Geometry, Readiness, HEADER_SIZE};
use crate::liveness;
use crate::ring::{header_of, Region};
use crate::segment::{self, Direction, Segment};
use crate::sync::Ordering;
use crate::wait::WaitMode;

/// One ring's words, as read from its header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RingInfo {
    /// Messages published (the producer's index).
    pub head: u64,
    /// Messages consumed (the consumer's index).
    pub tail: u64,
    /// Slots published and not yet released (`head - tail`, clamped to the slot count).
    pub used_slots: u64,
    /// Payload bytes published.
    pub bytes_sent: u64,
    /// Payload bytes consumed.
    pub bytes_received: u64,
    /// Process id the producer recorded (0 if none yet).
    pub producer_pid: u32,
    /// Process id the consumer recorded (0 if none yet).
    pub consumer_pid: u32,
}

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
    /// Whether side A's process is known to be gone (its recorded pid no longer names
    /// the process that created the channel): the channel is stale. Only decidable in the
    /// same pid namespace; `false` when unknown.
    pub creator_gone: bool,
}

impl ChannelInfo {
    /// Whether side A looks attached: not closed, and its process exists (checked with
    /// `kill(pid, 0)`, so only meaningful in the same pid namespace).
    pub fn a_attached(&self) -> bool {
        !self.closed[0] && !self.creator_gone && process_exists(self.creator_pid)
    }

    /// Whether side B looks attached: it recorded its pid, is not closed, and its process
    /// exists (same caveat as [`ChannelInfo::a_attached`]).
    pub fn b_attached(&self) -> bool {
        let pid = self.a2b.consumer_pid;
        pid != 0 && !self.closed[1] && process_exists(pid)
    }
}

/// Names of the channels that have both segments under `/dev/shm`, sorted.
pub fn list_channels() -> Result<Vec<String>> {
    let entries = std::fs::read_dir(segment::SHM_DIR).map_err(|source| Error::Os {
        op: "read_dir",
        name: segment::SHM_DIR.to_string(),
        source,
    })?;
    let mut names: Vec<String> = entries
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter_map(|f| f.strip_suffix(Direction::AToB.suffix()).map(str::to_string))
        .filter(|name| segment::path_of(&Direction::BToA.segment_name(name)).exists())
        .collect();
    names.sort();
    Ok(names)
}

/// Reads and validates channel `name`'s headers without attaching to it.
///
/// Errors: [`Error::NotFound`] when a segment is missing or not ready yet, and the
/// [`Error::Corrupt`] errors an open would give.
pub fn inspect_channel(name: &str) -> Result<ChannelInfo> {
    segment::validate_name(name)?;
    let mut regions = Vec::with_capacity(2);
    for direction in [Direction::AToB, Direction::BToA] {
        let seg_name = direction.segment_name(name);
        let not_found = || Error::NotFound {
            name: name.to_string(),
            waited: std::time::Duration::ZERO,
        };
        let segment = Segment::open(&seg_name)?.ok_or_else(not_found)?;
        let len = segment.len();
        if len < HEADER_SIZE {
            return Err(crate::error::Corruption::MappingTooSmall {
                len,
                needed: HEADER_SIZE,
            }
            .into());
        }
        if layout::readiness(header_of(&segment), len)? == Readiness::NotYet {
            return Err(not_found());
        }
        let validated = layout::validate(header_of(&segment), len, direction)?;
        regions.push((
            Region::over_segment(Arc::new(segment), validated.geometry),
            validated,
        ));
    }
    let (b2a, _) = regions.pop().expect("two");
    let (a2b, va) = regions.pop().expect("two");
    let control = &a2b.header().control;
    let word = |w: &crate::sync::AtomicU32| w.load(Ordering::Relaxed);
    Ok(ChannelInfo {
        name: name.to_string(),
        generation: va.generation,
        creator_pid: va.creator_pid,
        geometry: va.geometry,
        a2b: ring_info(&a2b),
        b2a: ring_info(&b2a),
        poll_us: [word(&control.poll_us[0]), word(&control.poll_us[1])],
        wait_mode: [
            WaitMode::from_word(word(&control.wait_mode[0])),
            WaitMode::from_word(word(&control.wait_mode[1])),
        ],
        closed: [word(&control.closed[0]) != 0, word(&control.closed[1]) != 0],
        creator_gone: liveness::recorded_process_gone(&a2b.header().producer),
    })
}

/// Removes every channel whose creator is gone (see [`ChannelInfo::creator_gone`]), and
/// returns their names. Channels that cannot be read are left alone.
pub fn remove_stale_channels() -> Result<Vec<String>> {
    let mut removed = Vec::new();
    for name in list_channels()? {
        if inspect_channel(&name).is_ok_and(|info| info.creator_gone)
            && crate::transport::remove_channel(&name)?
        {
            removed.push(name);
        }
    }
    Ok(removed)
}

fn ring_info(region: &Region) -> RingInfo {
    let h = region.header();
    let tail = h.consumer.tail.load(Ordering::Acquire);
    let head = h.producer.head.load(Ordering::Relaxed);
    RingInfo {
        head,
        tail,
        used_slots: head
            .saturating_sub(tail)
            .min(region.geometry().slot_count as u64),
        bytes_sent: h.producer.bytes.load(Ordering::Relaxed),
        bytes_received: h.consumer.bytes.load(Ordering::Relaxed),
        producer_pid: h.producer.pid.load(Ordering::Relaxed),
        consumer_pid: h.consumer.pid.load(Ordering::Relaxed),
    }
}

/// Whether a process with this pid exists (in our pid namespace).
pub(crate) fn process_exists(pid: u32) -> bool {
    if pid == 0 || pid > i32::MAX as u32 {
        return false;
    }
    // SAFETY: kill with signal 0 sends nothing; it only checks that the pid exists and
    // may be signalled. EPERM means it exists but belongs to another user.
    let rc = unsafe { libc::kill(pid as libc::pid_t, 0) };
    rc == 0 || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
}
