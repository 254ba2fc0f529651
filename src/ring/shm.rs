//! Ring memory over a mapped POSIX shared-memory [`Segment`]: the backing the transport
//! uses, and the header view an opener reads before it trusts the segment's geometry.

use std::ptr::NonNull;
use std::sync::Arc;

use super::region::{Backing, Region};
use crate::layout::{Geometry, Header, HEADER_SIZE};
use crate::segment::Segment;

// SAFETY: the mapping is page-aligned (so 128-byte aligned), its pointer and length are
// fixed from creation until the segment drops (unmapped only then), and its bytes are only
// accessed through atomics or raw pointers.
unsafe impl Backing for Segment {
    fn base(&self) -> NonNull<u8> {
        NonNull::new(self.as_ptr()).expect("mmap never returns null")
    }
    fn len(&self) -> usize {
        Segment::len(self)
    }
}

impl Region {
    /// A region over a segment whose first `geometry.segment_len()` bytes were validated
    /// (or freshly written) with this geometry.
    pub(crate) fn over_segment(segment: Arc<Segment>, geometry: Geometry) -> Region {
        Region::new(segment, geometry)
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
