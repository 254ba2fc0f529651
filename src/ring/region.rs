//! [`Region`]: one ring's memory seen as a [`Header`] followed by slots, over whatever
//! [`Backing`] keeps the bytes alive (a mapped segment, see `shm.rs`, or heap memory, see
//! `heap.rs`). The ring protocol runs over it through [`RingMemory`]; the backing is only
//! an owner, never on the data path.

use std::ptr::NonNull;
use std::sync::Arc;

use super::RingMemory;
use crate::layout::{Geometry, Header, SlotHeader, HEADER_SIZE, SLOT_HEADER_SIZE};
use crate::sync::AtomicU64;

// The ring protocol (built under loom too, where `layout` is not) keeps its own copy of
// the contract's largest index; they must agree.
const _: () = assert!(super::MAX_INDEX == crate::layout::MAX_INDEX);

/// Memory a [`Region`] can live in, kept alive by the region's owner handle.
///
/// # Safety
/// Implementors guarantee that `base()` is 128-byte aligned, never changes, and points
/// at `len()` bytes (`len()` never changes either) that stay mapped and are accessed only
/// through atomics or raw pointers for as long as the backing lives.
pub(super) unsafe trait Backing: Send + Sync {
    /// Start of the memory.
    fn base(&self) -> NonNull<u8>;
    /// Length of the memory in bytes.
    fn len(&self) -> usize;
}

/// A header plus `geometry.slot_count` slots at `base`, kept alive by `owner`.
#[derive(Clone)]
pub(crate) struct Region {
    owner: Arc<dyn Backing>,
    base: NonNull<u8>,
    geometry: Geometry,
    /// Offset (from the first slot) where the last slot's payload ends: no record passes it.
    payload_end: usize,
}

// SAFETY: `Region` only hands out `&` to atomics inside the mapping and raw payload
// pointers; the mapping lives as long as `owner`, which is `Send + Sync`. Who may write
// which bytes is governed by the ring protocol, not by the handle's thread.
unsafe impl Send for Region {}
// SAFETY: see `Send`.
unsafe impl Sync for Region {}

impl Region {
    /// A region over `owner`'s memory, whose first `geometry.segment_len()` bytes were
    /// validated (or freshly written) with this geometry. Panics if they do not fit.
    pub(super) fn new(owner: Arc<dyn Backing>, geometry: Geometry) -> Region {
        assert!(
            geometry.segment_len() <= owner.len() as u64,
            "caller validated the geometry against the memory"
        );
        Region {
            base: owner.base(),
            owner,
            payload_end: geometry.slot_count.saturating_sub(1) * geometry.slot_stride
                + SLOT_HEADER_SIZE
                + geometry.slot_size,
            geometry,
        }
    }

    /// The same memory with a geometry that [`crate::layout::validate`] accepted for it.
    /// Panics if it does not fit the memory.
    pub(crate) fn with_geometry(self, geometry: Geometry) -> Region {
        Region::new(self.owner, geometry)
    }

    /// The header at the start of the region.
    #[inline]
    pub(crate) fn header(&self) -> &Header {
        // SAFETY: `base` is 128-byte aligned and the memory holds at least HEADER_SIZE
        // bytes (`Backing` contract; `new` checked segment_len >= HEADER_SIZE fits), it
        // lives as long as `self.owner`, and `Header` consists only of atomics, so a
        // shared reference is sound even while the peer writes it.
        unsafe { &*self.base.as_ptr().cast::<Header>() }
    }

    /// The largest message a record in this ring can hold.
    pub(crate) fn max_message_len(&self) -> usize {
        super::shape_of(self).max_len()
    }

    /// The ring's geometry.
    pub(crate) fn geometry(&self) -> Geometry {
        self.geometry
    }

    /// Start of the memory, for the backings' own raw accesses (fuzzing pokes).
    pub(super) fn base(&self) -> NonNull<u8> {
        self.base
    }

    #[inline]
    fn slot_ptr(&self, slot: usize) -> *mut u8 {
        // No value in the message: formatting it would spill a register on every send.
        assert!(slot < self.geometry.slot_count, "slot out of range");
        // SAFETY: slot < slot_count, so the offset is within the geometry's
        // segment_len, which `new` checked against the memory's length.
        unsafe {
            self.base
                .as_ptr()
                .add(HEADER_SIZE + slot * self.geometry.slot_stride)
        }
    }

    #[inline]
    fn slot_header(&self, slot: usize) -> &SlotHeader {
        // SAFETY: `slot_ptr` is in bounds and 64-byte aligned (header and stride are
        // multiples of 64); `SlotHeader` is all atomics, valid for any bytes.
        unsafe { &*self.slot_ptr(slot).cast::<SlotHeader>() }
    }

    /// Pointer to the payload of the record at slot `slot` (8-byte aligned; `slot_size`
    /// bytes of the slot itself, then the following slots for a longer record). Using it
    /// for `len` bytes is sound when `len` bytes from there end within the slots, which
    /// every caller validated (a record's span never passes the ring's end); debug builds
    /// check it again.
    #[inline]
    pub(crate) fn payload_ptr(&self, slot: usize, len: usize) -> *mut u8 {
        debug_assert!(
            len <= self
                .payload_end
                .saturating_sub(slot * self.geometry.slot_stride + SLOT_HEADER_SIZE),
            "record of {len} bytes at slot {slot} passes the ring"
        );
        // SAFETY: the payload starts SLOT_HEADER_SIZE bytes into an in-bounds slot
        // (`slot_ptr` checks the slot), inside the mapping.
        unsafe { self.slot_ptr(slot).add(SLOT_HEADER_SIZE) }
    }
}

// SAFETY: the geometry was checked against the memory (`Region::new`), slot pointers are
// bounds-checked by `slot_ptr` (record payloads are bounded by the callers' contract), and
// slots do not
// overlap each other or the header because the stride is at least SLOT_HEADER_SIZE +
// slot_size and the slots are `slot_stride` apart.
unsafe impl RingMemory for Region {
    #[inline]
    fn slot_count(&self) -> usize {
        self.geometry.slot_count
    }
    #[inline]
    fn slot_size(&self) -> usize {
        self.geometry.slot_size
    }
    #[inline]
    fn head(&self) -> &AtomicU64 {
        &self.header().producer.head
    }
    #[inline]
    fn head_bytes(&self) -> &AtomicU64 {
        &self.header().producer.bytes
    }
    #[inline]
    fn tail(&self) -> &AtomicU64 {
        &self.header().consumer.tail
    }
    #[inline]
    fn tail_bytes(&self) -> &AtomicU64 {
        &self.header().consumer.bytes
    }
    #[inline]
    fn head_extra(&self) -> &AtomicU64 {
        &self.header().producer.extra
    }
    #[inline]
    fn tail_extra(&self) -> &AtomicU64 {
        &self.header().consumer.extra
    }
    #[inline]
    fn commit(&self, slot: usize) -> &AtomicU64 {
        &self.slot_header(slot).commit
    }
    #[inline]
    fn slot_stride(&self) -> usize {
        self.geometry.slot_stride
    }
    #[inline]
    fn meta(&self, slot: usize) -> &AtomicU64 {
        &self.slot_header(slot).meta
    }
    #[inline(always)]
    fn words(&self, slot: usize) -> (&AtomicU64, &AtomicU64) {
        let header = self.slot_header(slot);
        (&header.commit, &header.meta)
    }
    #[inline]
    unsafe fn write_payload(&self, slot: usize, src: &[u8]) {
        // SAFETY: the caller guarantees the `src.len()` bytes fit the slots the record
        // covers, which end within the ring (`RingMemory` contract), and owns them; the
        // payload never overlaps `src`, which is process-local memory.
        unsafe { copy_to_slot(src, self.payload_ptr(slot, src.len())) }
    }
    #[inline]
    unsafe fn payload_mut(&self, slot: usize, len: usize) -> &mut [u8] {
        // SAFETY: in bounds (the caller's `len` fits the record's slots, which end within
        // the ring); the caller owns the slots, so nothing else reads or writes them while
        // the borrow lives.
        unsafe { std::slice::from_raw_parts_mut(self.payload_ptr(slot, len), len) }
    }
    #[inline]
    unsafe fn payload(&self, slot: usize, len: usize) -> &[u8] {
        // SAFETY: in bounds (the caller's `len` fits the record's slots, which end within
        // the ring), and the caller guarantees the producer does not write the slots while
        // the borrow lives (published, not released).
        unsafe { std::slice::from_raw_parts(self.payload_ptr(slot, len), len) }
    }
}

/// The longest message [`copy_to_slot`] copies inline, without a call.
pub(crate) const INLINE_COPY_MAX: usize = 128;
// `copy_to_slot`'s cases are written for this value (its `129..` and `copy_ends::<64>`).
const _: () = assert!(INLINE_COPY_MAX == 128);

/// Copies `src` to `dst`. Up to [`INLINE_COPY_MAX`] bytes with at most two (overlapping)
/// moves of one power-of-two size, inline: a send of a small message then calls nothing,
/// so it saves no registers around a call (each push a store, queued behind the slot's
/// stores). Longer messages go through `memcpy`.
///
/// # Safety
/// `dst` is valid for `src.len()` bytes of writes and does not overlap `src`.
#[inline(always)]
unsafe fn copy_to_slot(src: &[u8], dst: *mut u8) {
    let (s, n) = (src.as_ptr(), src.len());
    // SAFETY: every move stays within `[0, n)` of both buffers, which the caller
    // guarantees valid and disjoint (`copy_ends::<W>` is called only with `n >= W`).
    unsafe {
        match n {
            129.. => std::ptr::copy_nonoverlapping(s, dst, n),
            65..=INLINE_COPY_MAX => copy_ends::<64>(s, dst, n),
            32..=64 => copy_ends::<32>(s, dst, n),
            16..=31 => copy_ends::<16>(s, dst, n),
            8..=15 => copy_ends::<8>(s, dst, n),
            4..=7 => copy_ends::<4>(s, dst, n),
            1..=3 => {
                *dst = *s;
                *dst.add(n / 2) = *s.add(n / 2);
                *dst.add(n - 1) = *s.add(n - 1);
            }
            0 => {}
        }
    }
}

/// Copies `n` bytes, `W <= n <= 2 * W`, as two moves of `W` bytes: the first `W` and the
/// last `W` (overlapping unless `n == 2 * W`).
///
/// # Safety
/// As [`copy_to_slot`], and `W <= n`.
#[inline(always)]
unsafe fn copy_ends<const W: usize>(s: *const u8, dst: *mut u8, n: usize) {
    debug_assert!(W <= n && n <= 2 * W, "copy_ends::<{W}> of {n} bytes");
    // SAFETY: both moves lie within `[0, n)` because `W <= n` (caller).
    unsafe {
        std::ptr::copy_nonoverlapping(s, dst, W);
        std::ptr::copy_nonoverlapping(s.add(n - W), dst.add(n - W), W);
    }
}

#[cfg(test)]
mod tests {
    use super::copy_to_slot;

    /// Every length through the small-copy cases and past them, from and to every
    /// alignment within 8 bytes: exactly the message's bytes arrive, nothing around them
    /// is touched.
    #[test]
    fn copy_to_slot_writes_exactly_the_message() {
        for len in 0..=200usize {
            for (from, to) in (0..8).flat_map(|f| (0..8).map(move |t| (f, t))) {
                let src: Vec<u8> = (0..from + len).map(|i| (i * 7 + 1) as u8).collect();
                let mut dst = vec![0xeeu8; 16 + to + len + 16];
                let at = 16 + to;
                // SAFETY: `dst` holds `at + len + 16` bytes, so `len` from `at` fit;
                // `src` holds `from + len`; the two are separate vectors.
                unsafe { copy_to_slot(&src[from..], dst.as_mut_ptr().add(at)) };
                let case = format!("len {len}, from +{from}, to +{to}");
                assert_eq!(&dst[at..at + len], &src[from..], "{case}");
                assert!(dst[..at].iter().all(|&b| b == 0xee), "before, {case}");
                assert!(dst[at + len..].iter().all(|&b| b == 0xee), "after, {case}");
            }
        }
    }
}
