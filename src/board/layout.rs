//! The board segment's header: field positions, the creator's initialization, and the
//! validation every opener runs before trusting a byte of it (`docs/LAYOUT.md`, "Board
//! segment", is the byte-by-byte contract).

use super::protocol::SlotHeader;
use crate::error::Corruption;
use crate::sync::{AtomicU32, AtomicU64, Ordering};

/// `"CSHMBRD1"` read as a little-endian u64.
pub(crate) const MAGIC: u64 = u64::from_le_bytes(*b"CSHMBRD1");
/// The board layout version this library writes and reads.
pub(crate) const VERSION: u32 = 1;
/// The `ready` word's value once the header is complete.
pub(crate) const READY: u32 = 1;
/// Bytes before the first slot: three 128-byte blocks.
pub(crate) const HEADER_SIZE: usize = 384;
/// Bytes of a slot's header ([`SlotHeader`]) before its payload.
pub(crate) const SLOT_HEADER_SIZE: usize = 32;
/// Slots are padded to a multiple of this.
pub(crate) const SLOT_ALIGN: usize = 64;
/// The largest value size a board accepts (1 GiB).
pub const MAX_VALUE_SIZE: usize = 1 << 30;
/// The largest history a board accepts.
pub const MAX_HISTORY: usize = 1 << 16;
/// The largest segment a board may describe (4 GiB), whatever its fields say.
const MAX_SEGMENT_LEN: u64 = 1 << 32;

/// The header at offset 0. Three 128-byte blocks, so the writer's words and the readers'
/// word never share a cache line with each other or with the constants.
#[repr(C)]
pub(crate) struct BoardHeader {
    pub identity: Identity,
    pub writer: WriterBlock,
    pub readers: ReaderBlock,
}

/// Written once by the creator before `ready`; read-only afterwards.
#[repr(C, align(128))]
pub(crate) struct Identity {
    pub magic: AtomicU64,
    pub version: AtomicU32,
    pub ready: AtomicU32,
    pub value_size: AtomicU64,
    pub history: AtomicU64,
    pub slot_count: AtomicU64,
    pub slot_stride: AtomicU64,
    pub data_offset: AtomicU64,
    pub segment_len: AtomicU64,
}

/// Written by the writer only.
#[repr(C, align(128))]
pub(crate) struct WriterBlock {
    pub head: AtomicU64,
    pub notify: AtomicU32,
    pub closed: AtomicU32,
    pub pid: AtomicU32,
    pub reserved: AtomicU32,
    pub start_time: AtomicU64,
    pub pid_ns: AtomicU64,
}

/// The one word readers write.
#[repr(C, align(128))]
pub(crate) struct ReaderBlock {
    pub waiters: AtomicU32,
}

const _: () = assert!(std::mem::size_of::<BoardHeader>() == HEADER_SIZE);
// Every offset docs/LAYOUT.md ("Board segment") gives, checked at compile time.
const _: () = {
    use std::mem::offset_of;
    assert!(offset_of!(BoardHeader, identity) == 0);
    assert!(offset_of!(Identity, magic) == 0);
    assert!(offset_of!(Identity, version) == 8);
    assert!(offset_of!(Identity, ready) == 12);
    assert!(offset_of!(Identity, value_size) == 16);
    assert!(offset_of!(Identity, history) == 24);
    assert!(offset_of!(Identity, slot_count) == 32);
    assert!(offset_of!(Identity, slot_stride) == 40);
    assert!(offset_of!(Identity, data_offset) == 48);
    assert!(offset_of!(Identity, segment_len) == 56);
    assert!(offset_of!(BoardHeader, writer) == 128);
    assert!(offset_of!(WriterBlock, head) == 0);
    assert!(offset_of!(WriterBlock, notify) == 8);
    assert!(offset_of!(WriterBlock, closed) == 12);
    assert!(offset_of!(WriterBlock, pid) == 16);
    assert!(offset_of!(WriterBlock, start_time) == 24);
    assert!(offset_of!(WriterBlock, pid_ns) == 32);
    assert!(offset_of!(BoardHeader, readers) == 256);
    assert!(offset_of!(ReaderBlock, waiters) == 0);
    assert!(offset_of!(SlotHeader, lock) == 0);
    assert!(offset_of!(SlotHeader, stamp) == 8);
    assert!(offset_of!(SlotHeader, len) == 16);
};
const _: () = assert!(std::mem::size_of::<SlotHeader>() == SLOT_HEADER_SIZE);

/// A board's shape: what the creator chose, and what a validated header says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BoardGeometry {
    /// The largest value, in bytes.
    pub value_size: usize,
    /// How many newest values the history keeps readable (a power of two).
    pub history: usize,
    /// Slots in the ring: `max(history, 2)`, so the value being written never hides the
    /// newest complete one.
    pub slot_count: usize,
    /// Bytes from one slot to the next: the slot header and `value_size`, rounded up to 64.
    pub slot_stride: usize,
}

impl BoardGeometry {
    /// The geometry for `value_size` and `history`, or why they are out of range.
    pub(crate) fn new(value_size: usize, history: usize) -> Result<BoardGeometry, &'static str> {
        if value_size == 0 || value_size > MAX_VALUE_SIZE {
            return Err("value_size must be between 1 and 1 GiB");
        }
        if !history.is_power_of_two() || history > MAX_HISTORY {
            return Err("history must be a power of two between 1 and 65536");
        }
        let slot_stride = (SLOT_HEADER_SIZE + value_size).next_multiple_of(SLOT_ALIGN);
        let geometry = BoardGeometry {
            value_size,
            history,
            slot_count: history.max(2),
            slot_stride,
        };
        if geometry.segment_len() as u64 > MAX_SEGMENT_LEN {
            return Err("value_size * history needs more than 4 GiB");
        }
        Ok(geometry)
    }

    /// The segment's length in bytes.
    pub(crate) fn segment_len(&self) -> usize {
        HEADER_SIZE + self.slot_count * self.slot_stride
    }

    /// Byte offset of slot `index` (taken modulo the slot count).
    pub(crate) fn slot_offset(&self, index: u64) -> usize {
        HEADER_SIZE + (index as usize & (self.slot_count - 1)) * self.slot_stride
    }
}

/// Writes a fresh (zeroed) header and marks it ready.
pub(crate) fn initialize(header: &BoardHeader, g: &BoardGeometry) {
    let id = &header.identity;
    id.magic.store(MAGIC, Ordering::Relaxed);
    id.version.store(VERSION, Ordering::Relaxed);
    id.value_size.store(g.value_size as u64, Ordering::Relaxed);
    id.history.store(g.history as u64, Ordering::Relaxed);
    id.slot_count.store(g.slot_count as u64, Ordering::Relaxed);
    id.slot_stride.store(g.slot_stride as u64, Ordering::Relaxed);
    id.data_offset.store(HEADER_SIZE as u64, Ordering::Relaxed);
    id.segment_len.store(g.segment_len() as u64, Ordering::Relaxed);
    // SYNC POINT with the Acquire load of `ready` in `validate`: an opener that sees READY
    // sees every field above.
    id.ready.store(READY, Ordering::Release);
}

/// Validates a header in a mapping of `len` bytes. `Ok(None)`: not ready yet (all zero
/// so far, or our magic without `ready`).
pub(crate) fn validate(header: &BoardHeader, len: usize) -> Result<Option<BoardGeometry>, Corruption> {
    let id = &header.identity;
    // SYNC POINT with the Release store of `ready` in `initialize`.
    let ready = id.ready.load(Ordering::Acquire);
    let magic = id.magic.load(Ordering::Relaxed);
    if magic != MAGIC {
        if magic == 0 && ready == 0 {
            return Ok(None);
        }
        return Err(Corruption::BadMagic {
            found: magic,
            expected: MAGIC,
        });
    }
    match ready {
        0 => return Ok(None),
        READY => {}
        found => return Err(Corruption::BadReady { found }),
    }
    let version = id.version.load(Ordering::Relaxed);
    if version != VERSION {
        return Err(Corruption::UnsupportedVersion {
            found: version,
            supported: VERSION,
        });
    }
    let field = |field, value: u64, why| Corruption::Geometry { field, value, why };
    let word = |w: &AtomicU64| w.load(Ordering::Relaxed);
    let value_size = word(&id.value_size);
    let history = word(&id.history);
    let usize_of = |v: u64, name| usize::try_from(v).map_err(|_| field(name, v, "out of range"));
    let geometry = BoardGeometry::new(
        usize_of(value_size, "value_size")?,
        usize_of(history, "history")?,
    )
    .map_err(|why| {
        if value_size == 0 || value_size > MAX_VALUE_SIZE as u64 {
            field("value_size", value_size, why)
        } else {
            field("history", history, why)
        }
    })?;
    let expect = |name, w: &AtomicU64, want: usize| {
        let found = word(w);
        if found == want as u64 {
            Ok(())
        } else {
            Err(field(name, found, "does not match value_size and history"))
        }
    };
    expect("slot_count", &id.slot_count, geometry.slot_count)?;
    expect("slot_stride", &id.slot_stride, geometry.slot_stride)?;
    expect("data_offset", &id.data_offset, HEADER_SIZE)?;
    expect("segment_len", &id.segment_len, geometry.segment_len())?;
    if geometry.segment_len() > len {
        return Err(Corruption::GeometryExceedsMapping {
            needed: geometry.segment_len() as u64,
            len,
        });
    }
    Ok(Some(geometry))
}
