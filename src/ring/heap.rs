//! Ring memory on the heap, for tests, benchmarks and fuzzing of the ring alone: the same
//! bytes a segment holds (header and slots), in zeroed, 128-byte-aligned memory, plus the
//! fuzzers' way to scribble on it like a hostile peer.

use std::alloc::{self, Layout};
use std::ptr::NonNull;
use std::sync::Arc;

use super::region::{Backing, Region};
use crate::error::{Error, Result};
use crate::layout::{self, Geometry, HeaderInit, HEADER_SIZE};
use crate::sync::{AtomicU64, Ordering};

impl Region {
    /// A region in zeroed heap memory with a fresh a2b header, for tests and benchmarks of
    /// the ring alone.
    pub(crate) fn heap(slot_size: usize, slot_count: usize) -> Result<Region> {
        let geometry = Geometry::new(slot_size, slot_count)?;
        let len = usize::try_from(geometry.segment_len())
            .map_err(|_| Error::invalid("slot_count", "too large for this platform"))?;
        let region = Region::new(Arc::new(HeapBacking::zeroed(len)?), geometry);
        layout::initialize(region.header(), &HeaderInit::lone_ring(geometry));
        layout::mark_ready(region.header());
        Ok(region)
    }

    /// A region over a zeroed heap copy of `bytes` (at least a header's worth), with an
    /// empty geometry until [`Region::with_geometry`] (for fuzzing: the bytes are
    /// untrusted). `None` for an absurd length.
    pub(crate) fn heap_copy(bytes: &[u8]) -> Option<Region> {
        let backing = HeapBacking::zeroed(bytes.len().max(HEADER_SIZE)).ok()?;
        // SAFETY: the backing holds at least bytes.len() bytes, freshly allocated, so it
        // cannot overlap `bytes`, and nothing else references it yet.
        unsafe { std::ptr::copy_nonoverlapping(bytes.as_ptr(), backing.ptr.as_ptr(), bytes.len()) };
        let geometry = Geometry {
            slot_size: 0,
            slot_count: 0,
            slot_stride: 0,
        };
        Some(Region::new(Arc::new(backing), geometry))
    }

    /// Stores `value` at byte `offset` (8-byte aligned, inside the geometry), as a peer
    /// scribbling on the mapping would (for fuzzing).
    pub(crate) fn poke_u64(&self, offset: usize, value: u64) {
        assert!(offset % 8 == 0 && offset + 8 <= self.geometry().segment_len() as usize);
        // SAFETY: in bounds of the memory (checked above against the geometry, which
        // `Region::new` checked against the memory) and 8-byte aligned (base is 128-byte
        // aligned); the word is accessed atomically like every other word of the mapping.
        let word = unsafe { &*self.base().as_ptr().add(offset).cast::<AtomicU64>() };
        word.store(value, Ordering::Relaxed);
    }
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

// SAFETY: `ptr` is 128-byte aligned (the layout's alignment) and holds `layout.size()`
// bytes; neither changes, and the memory is freed only when the backing drops.
unsafe impl Backing for HeapBacking {
    fn base(&self) -> NonNull<u8> {
        self.ptr
    }
    fn len(&self) -> usize {
        self.layout.size()
    }
}

impl HeapBacking {
    /// `len` zeroed bytes (at least one), 128-byte aligned.
    fn zeroed(len: usize) -> Result<HeapBacking> {
        let layout = Layout::from_size_align(len.max(1), 128)
            .map_err(|_| Error::invalid("slot_count", "segment too large"))?;
        // SAFETY: `layout` has a non-zero size (at least one byte, see above).
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
