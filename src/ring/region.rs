//! One ring's memory: a mapping (shared memory, or heap memory for tests) seen as a
//! [`Header`] followed by slots. The ring code runs unchanged over either, so the ring's
//! contract tests run on heap memory and the cross-process tests on POSIX shared memory.

use std::alloc::{self, Layout};
use std::ptr::NonNull;
use std::sync::Arc;

use super::RingMemory;
use crate::error::{Error, Result};
use crate::layout::{self, HeaderInit};
use crate::layout::{Geometry, Header, SlotHeader, HEADER_SIZE, SLOT_HEADER_SIZE};
use crate::segment::Direction;
use crate::segment::Segment;
use crate::sync::{AtomicU32, AtomicU64};

/// Keeps a mapping alive; a [`Region`] holds one so its pointers stay valid.
trait Backing: Send + Sync {}
impl Backing for Segment {}
impl Backing for HeapBacking {}

/// A header plus `geometry.slot_count` slots at `base`, kept alive by `_owner`.
#[derive(Clone)]
pub(crate) struct Region {
    _owner: Arc<dyn Backing>,
    base: NonNull<u8>,
    geometry: Geometry,
}

// SAFETY: `Region` only hands out `&` to atomics inside the mapping and raw payload
// pointers; the mapping lives as long as `_owner`, which is `Send + Sync`. Who may write
// which bytes is governed by the ring protocol, not by the handle's thread.
unsafe impl Send for Region {}
// SAFETY: see `Send`.
unsafe impl Sync for Region {}

impl Region {
    /// A region over a segment whose first `geometry.segment_len()` bytes were validated
    /// (or freshly written) with this geometry.
    pub(crate) fn over_segment(segment: Arc<Segment>, geometry: Geometry) -> Region {
        assert!(
            geometry.segment_len() <= segment.len() as u64,
            "caller validated the geometry"
        );
        let base = NonNull::new(segment.as_ptr()).expect("mmap never returns null");
        Region {
            _owner: segment,
            base,
            geometry,
        }
    }

    /// A region in zeroed, 128-byte-aligned heap memory with a fresh a2b header: the same
    /// bytes a segment holds, for tests and benchmarks of the ring alone.
    pub(crate) fn heap(slot_size: usize, slot_count: usize) -> Result<Region> {
        let geometry = Geometry::new(slot_size, slot_count)?;
        let len = usize::try_from(geometry.segment_len())
            .map_err(|_| Error::invalid("slot_count", "too large for this platform"))?;
        let backing = HeapBacking::zeroed(len)?;
        let region = Region {
            base: backing.ptr,
            _owner: Arc::new(backing),
            geometry,
        };
        layout::initialize(
            region.header(),
            &HeaderInit {
                geometry,
                direction: Direction::AToB,
                generation: 1,
                creator_pid: std::process::id(),
                poll_us: [0, 0],
                wait_mode: [0, 0],
            },
        );
        Ok(region)
    }

    /// A region over a zeroed, aligned heap copy of `bytes` (at least a header's worth),
    /// with an empty geometry until [`Region::with_geometry`] (for fuzzing: the bytes are
    /// untrusted). `None` for an absurd length.
    pub(crate) fn heap_copy(bytes: &[u8]) -> Option<Region> {
        let backing = HeapBacking::zeroed(bytes.len().max(HEADER_SIZE)).ok()?;
        // SAFETY: the backing holds at least bytes.len() bytes, freshly allocated, so it
        // cannot overlap `bytes`.
        unsafe { std::ptr::copy_nonoverlapping(bytes.as_ptr(), backing.ptr.as_ptr(), bytes.len()) };
        let geometry = Geometry {
            slot_size: 0,
            slot_count: 0,
            slot_stride: 0,
        };
        Some(Region {
            base: backing.ptr,
            _owner: Arc::new(backing),
            geometry,
        })
    }

    /// The same memory with a geometry that [`layout::validate`] accepted for it.
    pub(crate) fn with_geometry(self, geometry: Geometry) -> Region {
        Region { geometry, ..self }
    }

    /// Stores `value` at byte `offset` (8-byte aligned, inside the geometry), as a peer
    /// scribbling on the mapping would (for fuzzing).
    pub(crate) fn poke_u64(&self, offset: usize, value: u64) {
        assert!(offset % 8 == 0 && offset + 8 <= self.geometry.segment_len() as usize);
        // SAFETY: in bounds and 8-byte aligned (checked above, base is 128-aligned); the
        // word is accessed atomically like every other word of the mapping.
        let word = unsafe { &*self.base.as_ptr().add(offset).cast::<AtomicU64>() };
        word.store(value, std::sync::atomic::Ordering::Relaxed);
    }

    /// The header at the start of the region.
    #[inline]
    pub(crate) fn header(&self) -> &Header {
        // SAFETY: `base` is page- (or 128-byte-) aligned, the mapping holds at least
        // HEADER_SIZE bytes, it lives as long as `self`, and `Header` consists only of
        // atomics, so a shared reference is sound even while the peer writes it.
        unsafe { &*self.base.as_ptr().cast::<Header>() }
    }

    /// The ring's geometry.
    pub(crate) fn geometry(&self) -> Geometry {
        self.geometry
    }

    #[inline]
    fn slot_ptr(&self, slot: usize) -> *mut u8 {
        assert!(slot < self.geometry.slot_count, "slot {slot} out of range");
        // SAFETY: slot < slot_count, so the offset is within the geometry's
        // segment_len, which the constructor checked against the mapping's length.
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

    /// Pointer to slot `slot`'s payload (`slot_size` bytes, 8-byte aligned).
    #[inline]
    pub(crate) fn payload_ptr(&self, slot: usize) -> *mut u8 {
        // SAFETY: the payload starts SLOT_HEADER_SIZE bytes into an in-bounds slot, and
        // the stride leaves room for `slot_size` payload bytes after it.
        unsafe { self.slot_ptr(slot).add(SLOT_HEADER_SIZE) }
    }
}

// SAFETY: the geometry was validated against the mapping (see constructors), slot
// pointers are bounds-checked by `slot_ptr`, and slots do not overlap each other or the
// header because the stride is at least SLOT_HEADER_SIZE + slot_size.
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
    fn commit(&self, slot: usize) -> &AtomicU64 {
        &self.slot_header(slot).commit
    }
    #[inline]
    fn len(&self, slot: usize) -> &AtomicU32 {
        &self.slot_header(slot).len
    }
    #[inline]
    unsafe fn write_payload(&self, slot: usize, src: &[u8]) {
        debug_assert!(src.len() <= self.geometry.slot_size);
        // SAFETY: the caller owns the slot and bounded `src.len()` by slot_size; the
        // payload never overlaps `src`, which is process-local memory.
        unsafe { std::ptr::copy_nonoverlapping(src.as_ptr(), self.payload_ptr(slot), src.len()) }
    }
    #[inline]
    unsafe fn payload_mut(&self, slot: usize) -> &mut [u8] {
        // SAFETY: in bounds (slot_size bytes after the slot header); the caller owns the
        // slot, so nothing else reads or writes it while the borrow lives.
        unsafe { std::slice::from_raw_parts_mut(self.payload_ptr(slot), self.geometry.slot_size) }
    }
    #[inline]
    unsafe fn payload(&self, slot: usize, len: usize) -> &[u8] {
        debug_assert!(len <= self.geometry.slot_size);
        // SAFETY: in bounds (len <= slot_size), and the caller guarantees the producer
        // does not write the slot while the borrow lives (published, not released).
        unsafe { std::slice::from_raw_parts(self.payload_ptr(slot), len) }
    }
}

/// The header of a mapped segment, before its geometry is trusted (for validation).
/// Panics if the mapping is smaller than the header; callers check that first.
pub(crate) fn header_of(segment: &Segment) -> &Header {
    assert!(
        segment.len() >= HEADER_SIZE,
        "caller checked the mapping holds a header"
    );
    // SAFETY: the mapping is page-aligned, holds at least HEADER_SIZE bytes and lives as
    // long as `segment`; `Header` is all atomics, valid for any bytes and for concurrent
    // writes by the peer.
    unsafe { &*segment.as_ptr().cast::<Header>() }
}

/// Zeroed heap memory aligned like a mapping's start.
struct HeapBacking {
    ptr: NonNull<u8>,
    layout: Layout,
}

// SAFETY: plain owned memory; all access goes through `Region` (atomics, raw pointers).
unsafe impl Send for HeapBacking {}
// SAFETY: as above.
unsafe impl Sync for HeapBacking {}

impl HeapBacking {
    fn zeroed(len: usize) -> Result<HeapBacking> {
        let layout = Layout::from_size_align(len, 128)
            .map_err(|_| Error::invalid("slot_count", "segment too large"))?;
        // SAFETY: `layout` has a non-zero size (it includes the header).
        let ptr = unsafe { alloc::alloc_zeroed(layout) };
        let ptr = NonNull::new(ptr).unwrap_or_else(|| alloc::handle_alloc_error(layout));
        Ok(HeapBacking { ptr, layout })
    }
}

impl Drop for HeapBacking {
    fn drop(&mut self) {
        // SAFETY: allocated in `zeroed` with exactly this layout, freed once.
        unsafe { alloc::dealloc(self.ptr.as_ptr(), self.layout) }
    }
}
