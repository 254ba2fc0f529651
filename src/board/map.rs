//! The board's mapping: the one place its raw pointers are turned into header and slot
//! references and its payload bytes are copied (every `unsafe` of the board is here).

use std::sync::Arc;

use super::layout::{BoardGeometry, BoardHeader, HEADER_SIZE, SLOT_HEADER_SIZE};
use super::protocol::{SlotHeader, Words};
use crate::error::Corruption;
use crate::segment::Segment;

/// A mapped board segment whose header was validated (or written) with `geometry`.
pub(crate) struct BoardMap {
    segment: Arc<Segment>,
    geometry: BoardGeometry,
}

/// The header of a mapping not validated yet; `MappingTooSmall` when it cannot hold one.
pub(crate) fn header_of(segment: &Segment) -> Result<&BoardHeader, Corruption> {
    if segment.len() < HEADER_SIZE {
        return Err(Corruption::MappingTooSmall {
            len: segment.len(),
            needed: HEADER_SIZE,
        });
    }
    // SAFETY: the mapping is page-aligned (so 128-byte aligned), holds at least
    // HEADER_SIZE bytes and lives as long as `segment`; `BoardHeader` is all atomics,
    // valid for any bytes and for concurrent writes by other processes.
    Ok(unsafe { &*segment.as_ptr().cast::<BoardHeader>() })
}

impl BoardMap {
    /// Wraps a segment whose first `geometry.segment_len()` bytes hold a header validated
    /// (or written) with this geometry. Panics if the mapping is shorter (a caller bug:
    /// `layout::validate` checks it).
    pub(crate) fn new(segment: Arc<Segment>, geometry: BoardGeometry) -> BoardMap {
        assert!(segment.len() >= geometry.segment_len(), "validated geometry");
        BoardMap { segment, geometry }
    }

    pub(crate) fn segment(&self) -> &Arc<Segment> {
        &self.segment
    }

    pub(crate) fn geometry(&self) -> &BoardGeometry {
        &self.geometry
    }

    pub(crate) fn header(&self) -> &BoardHeader {
        header_of(&self.segment).expect("validated mapping holds a header")
    }

    /// The words publication and waiting use.
    pub(crate) fn words(&self) -> Words<'_> {
        let header = self.header();
        Words {
            head: &header.writer.head,
            notify: &header.writer.notify,
            waiters: &header.readers.waiters,
        }
    }

    /// The header of the slot that holds sequence number `seq` (any `seq`: taken modulo
    /// the slot count).
    #[inline]
    pub(crate) fn slot(&self, seq: u64) -> &SlotHeader {
        let offset = self.geometry.slot_offset(seq.wrapping_sub(1));
        // SAFETY: `slot_offset` is below HEADER_SIZE + slot_count * slot_stride, which the
        // mapping holds (checked in `new`); offsets are multiples of 64 from a page-aligned
        // base, so aligned for `SlotHeader`, which is all atomics (valid for any bytes).
        unsafe { &*self.segment.as_ptr().add(offset).cast::<SlotHeader>() }
    }

    /// Start of the payload of the slot that holds `seq`.
    #[inline]
    fn payload(&self, seq: u64) -> *mut u8 {
        let offset = self.geometry.slot_offset(seq.wrapping_sub(1)) + SLOT_HEADER_SIZE;
        // SAFETY: inside the mapping (see `slot`), `value_size` bytes follow it there.
        unsafe { self.segment.as_ptr().add(offset) }
    }

    /// Copies the first `len` payload bytes of the slot of `seq` into `dst` (cleared and
    /// resized to `len`). Bytes the writer changes meanwhile are copied as found: callers
    /// use the copy only if the slot's sequence lock did not move. Panics if `len`
    /// exceeds the value size (`protocol::read_slot` checks it first).
    #[inline]
    pub(crate) fn copy_out(&self, seq: u64, len: usize, dst: &mut Vec<u8>) {
        assert!(len <= self.geometry.value_size);
        dst.clear();
        dst.reserve(len);
        // SAFETY: the source is `len <= value_size` bytes inside the slot's payload (see
        // `payload`), read through a raw pointer with no reference into the mapping formed;
        // `dst` has capacity for `len` bytes and is process-private, so they do not overlap;
        // every byte pattern is a valid u8, so `set_len` exposes initialized bytes. A
        // concurrent write by the writer process can only change which bytes are copied.
        unsafe {
            std::ptr::copy_nonoverlapping(self.payload(seq), dst.as_mut_ptr(), len);
            dst.set_len(len);
        }
    }

    /// Like [`BoardMap::copy_out`], into 8-byte words (for Cap'n Proto, which needs its
    /// segments aligned): `dst` is resized to `len` rounded up to whole words.
    pub(crate) fn copy_out_words(&self, seq: u64, len: usize, dst: &mut Vec<u64>) {
        assert!(len <= self.geometry.value_size);
        dst.clear();
        dst.resize(len.div_ceil(8), 0);
        // SAFETY: as in `copy_out`: `len` bytes inside the payload, read through a raw
        // pointer, into `dst`'s `len.div_ceil(8) * 8 >= len` private, initialized bytes.
        unsafe { std::ptr::copy_nonoverlapping(self.payload(seq), dst.as_mut_ptr().cast::<u8>(), len) };
    }

    /// The payload of the slot of `seq`, for the writer to fill in place.
    ///
    /// # Safety
    /// Only the board's single writer calls this, for the slot it has marked odd with
    /// `protocol::begin_write`, and drops the slice before `end_write`. Readers of other
    /// processes read these bytes meanwhile, only through raw pointers, and discard what
    /// they read (the lock word moved).
    #[inline]
    #[allow(clippy::mut_from_ref)] // the writer's exclusive slot, see the safety contract
    pub(crate) unsafe fn payload_mut(&self, seq: u64) -> &mut [u8] {
        // SAFETY: `value_size` bytes inside the mapping (see `payload`), written only by
        // the single writer (caller's contract), so no other reference to them exists.
        unsafe { std::slice::from_raw_parts_mut(self.payload(seq), self.geometry.value_size) }
    }
}

/// The first `len` bytes of `words` (a value copied by [`BoardMap::copy_out_words`]).
pub(crate) fn word_bytes(words: &[u64], len: usize) -> &[u8] {
    assert!(len <= words.len() * 8);
    // SAFETY: `words` holds `words.len() * 8 >= len` initialized bytes, u8 has no invalid
    // values and alignment 1, and the returned borrow keeps `words` alive and unchanged.
    unsafe { std::slice::from_raw_parts(words.as_ptr().cast::<u8>(), len) }
}
