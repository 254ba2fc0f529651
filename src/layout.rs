//! The memory-layout contract (version 1): the segment header, slot geometry, writing a
//! fresh header and validating a mapped one. `docs/LAYOUT.md` describes the same bytes.
//!
//! Every field is an atomic: the peer process may write any byte of the mapping at any
//! time, so nothing here is read through a plain reference. Values read from a mapping are
//! untrusted until [`validate`] has checked them against the mapping's real length.

use std::mem::{offset_of, size_of};

use crate::error::{Corruption, Result};
use crate::segment::Direction;
use crate::sync::{AtomicU32, AtomicU64, Ordering};

/// `b"CAPNSHM1"` read as a little-endian `u64`.
pub(crate) const MAGIC: u64 = u64::from_le_bytes(*b"CAPNSHM1");
/// The layout version this library writes and accepts (3: records longer than a slot and
/// padding records, the slot header's second word being the record's length and span;
/// 2: each side holds an owner lock on the segment it writes, see `segment`).
pub(crate) const VERSION: u32 = 3;
/// Offset of the producer block's `pid` word in a header (read through a descriptor, as
/// information only, to name a side's owner in an error).
pub(crate) const PRODUCER_PID_OFFSET: usize =
    offset_of!(Header, producer) + offset_of!(ProducerBlock, pid);
/// Value of the `ready` word once the creator has finished writing the header.
pub(crate) const READY: u32 = 0x5245_4459; // "REDY"
/// Size of the header; slots start right after it.
pub(crate) const HEADER_SIZE: usize = size_of::<Header>();
/// Bytes before each slot's payload: commit word, length, reserved.
pub(crate) const SLOT_HEADER_SIZE: usize = size_of::<SlotHeader>();
/// Slot strides are a multiple of this (one cache line).
pub(crate) const STRIDE_ALIGN: usize = 64;
/// Largest accepted slot size (payload bytes per slot).
pub const MAX_SLOT_SIZE: usize = 1 << 30;
/// Largest accepted slot count.
pub const MAX_SLOT_COUNT: usize = 1 << 24;
/// Largest accepted segment (header plus ring).
pub(crate) const MAX_SEGMENT_LEN: u64 = 1 << 36;
/// Largest valid ring index (`tail <= head <= MAX_INDEX`, docs/LAYOUT.md "Index range"):
/// the contract's value, which the ring protocol's own constant must equal (checked at
/// compile time in `ring/region.rs`, so this module imports nothing from the ring).
pub(crate) const MAX_INDEX: u64 = 1 << 63;

/// The header at offset 0 of each segment: four 128-byte blocks, so the producer's words,
/// the consumer's words and the rarely written control words never share a cache line
/// (128 bytes, because Intel's adjacent-line prefetcher pulls lines in pairs).
#[repr(C)]
pub(crate) struct Header {
    pub identity: Identity,
    pub producer: ProducerBlock,
    pub consumer: ConsumerBlock,
    pub control: ControlBlock,
}

/// Written once by the creator before `ready`; read-only afterwards.
#[repr(C, align(128))]
pub(crate) struct Identity {
    /// [`MAGIC`].
    pub magic: AtomicU64,
    /// [`VERSION`].
    pub version: AtomicU32,
    /// [`HEADER_SIZE`].
    pub header_size: AtomicU32,
    /// Payload bytes per slot, `1..=MAX_SLOT_SIZE`.
    pub slot_size: AtomicU32,
    /// Bytes from one slot to the next: `round_up(16 + slot_size, 64)`.
    pub slot_stride: AtomicU32,
    /// Number of slots, a power of two in `1..=MAX_SLOT_COUNT`.
    pub slot_count: AtomicU32,
    /// [`Direction`] as 0 (a2b) or 1 (b2a).
    pub direction: AtomicU32,
    /// Fresh at every creation; both segments of a channel carry the same value.
    pub generation: AtomicU64,
    /// Process id of side A.
    pub creator_pid: AtomicU32,
    _reserved0: AtomicU32,
    /// `HEADER_SIZE + slot_count * slot_stride`.
    pub segment_len: AtomicU64,
    /// 0 while the creator writes the header, [`READY`] once it is complete (Release).
    pub ready: AtomicU32,
}

/// Written only by this ring's producer.
#[repr(C, align(128))]
pub(crate) struct ProducerBlock {
    /// Next index the producer will write (a monotonic count of the slots its records
    /// covered). For stats, attach and liveness only: the consumer's hot path reads commit
    /// words instead.
    pub head: AtomicU64,
    /// Payload bytes published so far.
    pub bytes: AtomicU64,
    /// Process id of the producer.
    pub pid: AtomicU32,
    /// Non-zero while the producer sleeps on this futex word waiting for a free slot; the
    /// consumer clears it and wakes the producer after releasing slots.
    pub wait: AtomicU32,
    /// Incremented by the producer's side every quarter of its liveness threshold, so a
    /// peer in another pid namespace can tell it is alive.
    pub heartbeat: AtomicU64,
    /// Start time of the producer's process (clock ticks since boot), so a recycled pid
    /// is not taken for it.
    pub start_time: AtomicU64,
    /// Inode of the producer's pid namespace: pids are only comparable when it matches.
    pub pid_ns: AtomicU64,
    /// Slots published that did not start a message (padding records' slots, and every
    /// slot of a long message after its first): `head - extra` messages were published.
    /// A statistic (it wraps), updated only by those rare records.
    pub extra: AtomicU64,
}

/// Written only by this ring's consumer.
#[repr(C, align(128))]
pub(crate) struct ConsumerBlock {
    /// Next index the consumer will read; every slot below it is free for the producer.
    /// Always `head - count <= tail <= head`.
    pub tail: AtomicU64,
    /// Payload bytes consumed so far.
    pub bytes: AtomicU64,
    /// Process id of the consumer.
    pub pid: AtomicU32,
    /// Non-zero while the consumer sleeps on this futex word waiting for a message; the
    /// producer clears it and wakes the consumer after publishing.
    pub wait: AtomicU32,
    /// Reserved for the liveness heartbeat (zero in version 1).
    pub heartbeat: AtomicU64,
    /// Slots released that did not start a message: `tail - extra` messages were consumed.
    /// A statistic (it wraps), updated only by padding and long records.
    pub extra: AtomicU64,
}

/// Control words of the whole channel, mirrored in both segments' headers: either side
/// writes both copies, and reads the copy in the a2b segment. Index 0 is side A, 1 is B.
#[repr(C, align(128))]
pub(crate) struct ControlBlock {
    /// Each side's poll interval in microseconds (0 = busy spin).
    pub poll_us: [AtomicU32; 2],
    /// Non-zero once that side has shut down.
    pub closed: [AtomicU32; 2],
    /// Each side's wait mode: 0 = poll (spin or sleep per `poll_us`), 1 = block (futex).
    pub wait_mode: [AtomicU32; 2],
}

/// The first 16 bytes of every slot; the payload follows at offset 16 (8-byte aligned).
#[repr(C)]
pub(crate) struct SlotHeader {
    /// `index + 1` once the message for `index` is published; the previous lap's value
    /// (`index + 1 - count`, or 0 on the first lap) before.
    pub commit: AtomicU64,
    /// The record's length (low 32 bits: payload bytes, or `u32::MAX` for padding) and
    /// span (high 32 bits: slots covered); valid once `commit` says published. LAYOUT.md
    /// names the halves `len` (offset 8) and `span` (offset 12); the producer stores them
    /// in one 8-byte store.
    pub meta: AtomicU64,
}

// The contract is the byte offsets, so pin them at compile time.
const _: () = {
    assert!(HEADER_SIZE == 512);
    assert!(offset_of!(Header, producer) == 128);
    assert!(offset_of!(Header, consumer) == 256);
    assert!(offset_of!(SlotHeader, meta) == 8);
    assert!(SLOT_HEADER_SIZE == 16);
    assert!(offset_of!(Header, control) == 384);
    assert!(offset_of!(Identity, version) == 8);
    assert!(offset_of!(Identity, slot_size) == 16);
    assert!(offset_of!(Identity, slot_count) == 24);
    assert!(offset_of!(Identity, generation) == 32);
    assert!(offset_of!(Identity, segment_len) == 48);
    assert!(offset_of!(Identity, ready) == 56);
    assert!(offset_of!(ProducerBlock, pid) == 16);
    assert!(offset_of!(ProducerBlock, heartbeat) == 24);
    assert!(offset_of!(ProducerBlock, start_time) == 32);
    assert!(offset_of!(ProducerBlock, pid_ns) == 40);
    assert!(offset_of!(ProducerBlock, extra) == 48);
    assert!(offset_of!(ConsumerBlock, extra) == 32);
    assert!(offset_of!(ControlBlock, closed) == 8);
    assert!(SLOT_HEADER_SIZE == 16);
};

/// The shape of one ring: slot size, stride and count.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Geometry {
    /// Payload bytes per slot (largest message).
    pub slot_size: usize,
    /// Number of slots (a power of two).
    pub slot_count: usize,
    /// Bytes from one slot to the next.
    pub slot_stride: usize,
}

impl Geometry {
    /// Checks the requested sizes and derives the stride. Errors name the argument.
    pub fn new(slot_size: usize, slot_count: usize) -> Result<Geometry> {
        use crate::error::Error;
        if slot_size == 0 || slot_size > MAX_SLOT_SIZE {
            return Err(Error::invalid(
                "slot_size",
                format!("{slot_size} is outside 1..={MAX_SLOT_SIZE}"),
            ));
        }
        if slot_count == 0 || !slot_count.is_power_of_two() || slot_count > MAX_SLOT_COUNT {
            return Err(Error::invalid(
                "slot_count",
                format!("{slot_count} is not a power of two in 1..={MAX_SLOT_COUNT}"),
            ));
        }
        let geometry = Geometry {
            slot_size,
            slot_count,
            slot_stride: stride_for(slot_size),
        };
        if geometry.segment_len() > MAX_SEGMENT_LEN {
            return Err(Error::invalid(
                "slot_count",
                format!(
                    "{slot_count} slots of {slot_size} bytes need {} bytes, above the limit of {MAX_SEGMENT_LEN}",
                    geometry.segment_len()
                ),
            ));
        }
        Ok(geometry)
    }

    /// Total bytes of a segment with this geometry.
    pub fn segment_len(&self) -> u64 {
        HEADER_SIZE as u64 + self.slot_count as u64 * self.slot_stride as u64
    }
}

/// `round_up(SLOT_HEADER_SIZE + slot_size, STRIDE_ALIGN)`.
fn stride_for(slot_size: usize) -> usize {
    (SLOT_HEADER_SIZE + slot_size).div_ceil(STRIDE_ALIGN) * STRIDE_ALIGN
}

/// What the creator writes into a fresh (zeroed) header.
pub(crate) struct HeaderInit {
    pub geometry: Geometry,
    pub direction: Direction,
    pub generation: u64,
    pub creator_pid: u32,
    pub poll_us: [u32; 2],
    pub wait_mode: [u32; 2],
}

impl HeaderInit {
    /// The header of a lone a2b ring (heap rings, the ring's contract tests): generation
    /// 1, this process as creator, both sides polling with interval 0.
    pub(crate) fn lone_ring(geometry: Geometry) -> HeaderInit {
        HeaderInit {
            geometry,
            direction: Direction::AToB,
            generation: 1,
            creator_pid: std::process::id(),
            poll_us: [0, 0],
            wait_mode: [0, 0],
        }
    }
}

/// Fills a zeroed header, all but `ready`: the creator then publishes its identity and
/// calls [`mark_ready`].
pub(crate) fn initialize(header: &Header, init: &HeaderInit) {
    let id = &header.identity;
    let g = init.geometry;
    id.magic.store(MAGIC, Ordering::Relaxed);
    id.version.store(VERSION, Ordering::Relaxed);
    id.header_size.store(HEADER_SIZE as u32, Ordering::Relaxed);
    id.slot_size.store(g.slot_size as u32, Ordering::Relaxed);
    id.slot_stride
        .store(g.slot_stride as u32, Ordering::Relaxed);
    id.slot_count.store(g.slot_count as u32, Ordering::Relaxed);
    id.direction.store(init.direction as u32, Ordering::Relaxed);
    id.generation.store(init.generation, Ordering::Relaxed);
    id.creator_pid.store(init.creator_pid, Ordering::Relaxed);
    id.segment_len.store(g.segment_len(), Ordering::Relaxed);
    for side in 0..2 {
        header.control.poll_us[side].store(init.poll_us[side], Ordering::Relaxed);
        header.control.wait_mode[side].store(init.wait_mode[side], Ordering::Relaxed);
    }
}

/// Stores `ready` (Release), last: the header and whatever the creator wrote before (its
/// identity) are then visible to an opener.
pub(crate) fn mark_ready(header: &Header) {
    // SYNC POINT with the Acquire load of `ready` in `readiness`: every field
    // `initialize` wrote, and the creator's identity, are visible to an opener that sees
    // READY.
    header.identity.ready.store(READY, Ordering::Release);
}

/// What an opener finds in a mapping before validating it.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Readiness {
    /// The creator has not finished (or not started) writing the header: wait.
    NotYet,
    /// The header is complete: validate it.
    Ready,
}

/// Checks whether a mapping of `len` bytes holds a finished header, without trusting it.
/// A fresh zeroed mapping is `NotYet`; foreign bytes are an error at once.
pub(crate) fn readiness(header: &Header, len: usize) -> Result<Readiness, Corruption> {
    debug_assert!(len >= HEADER_SIZE, "caller maps at least the header");
    // SYNC POINT with the Release store of `ready` in `initialize`.
    let ready = header.identity.ready.load(Ordering::Acquire);
    let magic = header.identity.magic.load(Ordering::Relaxed);
    match ready {
        READY => Ok(Readiness::Ready),
        0 if magic == 0 || magic == MAGIC => Ok(Readiness::NotYet),
        0 => Err(Corruption::BadMagic {
            found: magic,
            expected: MAGIC,
        }),
        found => {
            if magic != MAGIC {
                Err(Corruption::BadMagic {
                    found: magic,
                    expected: MAGIC,
                })
            } else {
                Err(Corruption::BadReady { found })
            }
        }
    }
}

/// A header that passed [`validate`]: the values it was checked with, copied out, so they
/// cannot change under the reader afterwards.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Validated {
    pub geometry: Geometry,
    pub generation: u64,
    pub creator_pid: u32,
    pub head: u64,
    pub tail: u64,
}

/// Validates every field of a ready header against the mapping's real length `len`.
pub(crate) fn validate(
    header: &Header,
    len: usize,
    direction: Direction,
) -> Result<Validated, Corruption> {
    if len < HEADER_SIZE {
        return Err(Corruption::MappingTooSmall {
            len,
            needed: HEADER_SIZE,
        });
    }
    let id = &header.identity;
    let magic = id.magic.load(Ordering::Relaxed);
    if magic != MAGIC {
        return Err(Corruption::BadMagic {
            found: magic,
            expected: MAGIC,
        });
    }
    let version = id.version.load(Ordering::Relaxed);
    if version != VERSION {
        return Err(Corruption::UnsupportedVersion {
            found: version,
            supported: VERSION,
        });
    }
    let geometry_err = |field, value: u64, why| Corruption::Geometry { field, value, why };
    let header_size = id.header_size.load(Ordering::Relaxed);
    if header_size as usize != HEADER_SIZE {
        return Err(geometry_err(
            "header_size",
            header_size.into(),
            "must be 512",
        ));
    }
    let dir = id.direction.load(Ordering::Relaxed);
    if dir != direction as u32 {
        return Err(geometry_err(
            "direction",
            dir.into(),
            "does not match the segment's name",
        ));
    }
    let slot_size = id.slot_size.load(Ordering::Relaxed) as usize;
    if slot_size == 0 || slot_size > MAX_SLOT_SIZE {
        return Err(geometry_err(
            "slot_size",
            slot_size as u64,
            "outside 1..=2^30",
        ));
    }
    let slot_count = id.slot_count.load(Ordering::Relaxed) as usize;
    if slot_count == 0 || !slot_count.is_power_of_two() || slot_count > MAX_SLOT_COUNT {
        return Err(geometry_err(
            "slot_count",
            slot_count as u64,
            "not a power of two in 1..=2^24",
        ));
    }
    let stride = id.slot_stride.load(Ordering::Relaxed) as usize;
    if stride != stride_for(slot_size) {
        return Err(geometry_err(
            "slot_stride",
            stride as u64,
            "must be round_up(16 + slot_size, 64)",
        ));
    }
    let geometry = Geometry {
        slot_size,
        slot_count,
        slot_stride: stride,
    };
    let needed = geometry.segment_len();
    let segment_len = id.segment_len.load(Ordering::Relaxed);
    if segment_len != needed {
        return Err(geometry_err(
            "segment_len",
            segment_len,
            "disagrees with slot_count * slot_stride + 512",
        ));
    }
    if needed > len as u64 {
        return Err(Corruption::GeometryExceedsMapping { needed, len });
    }
    // Tail first: the producer mirrors head before the commits that let tail move, so a
    // head read after the tail is never below it unless the segment is corrupt.
    let tail = header.consumer.tail.load(Ordering::Acquire);
    let head = header.producer.head.load(Ordering::Relaxed);
    check_indices(head, tail, slot_count as u64)?;
    Ok(Validated {
        geometry,
        generation: id.generation.load(Ordering::Relaxed),
        creator_pid: id.creator_pid.load(Ordering::Relaxed),
        head,
        tail,
    })
}

/// `tail <= head <= tail + count` and `head <= MAX_INDEX`, or the indices are corrupt.
pub(crate) fn check_indices(head: u64, tail: u64, count: u64) -> Result<(), Corruption> {
    if tail > head || head - tail > count || head > MAX_INDEX {
        return Err(Corruption::IndexOutOfRange { head, tail, count });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::Error;

    #[test]
    fn stride_is_cache_line_multiple_with_room_for_slot_header() {
        assert_eq!(stride_for(1), 64);
        assert_eq!(stride_for(48), 64);
        assert_eq!(stride_for(49), 128);
        assert_eq!(stride_for(64), 128);
        assert_eq!(stride_for(4096), 4160);
    }

    #[test]
    fn geometry_rejects_bad_sizes() {
        for (size, count) in [
            (0, 8),
            (MAX_SLOT_SIZE + 1, 8),
            (64, 0),
            (64, 3),
            (64, 1 << 25),
        ] {
            assert!(
                matches!(
                    Geometry::new(size, count),
                    Err(Error::InvalidArgument { .. })
                ),
                "{size} x {count} accepted"
            );
        }
        // Too large in total even though each number is in range.
        assert!(Geometry::new(MAX_SLOT_SIZE, 1 << 10).is_err());
        let g = Geometry::new(64, 16).unwrap();
        assert_eq!(g.segment_len(), 512 + 16 * 128);
    }

    #[test]
    fn indices_are_checked() {
        assert!(check_indices(0, 0, 4).is_ok());
        assert!(check_indices(4, 0, 4).is_ok());
        assert!(check_indices(5, 0, 4).is_err());
        assert!(check_indices(0, 1, 4).is_err());
        assert!(check_indices(u64::MAX, 0, 4).is_err());
        assert!(check_indices(MAX_INDEX, MAX_INDEX - 4, 4).is_ok());
        for top in [MAX_INDEX + 1, u64::MAX - 1, u64::MAX] {
            assert!(check_indices(top, top, 4).is_err(), "{top}");
            assert!(check_indices(top, top - 1, 4).is_err(), "{top}");
        }
    }
}
