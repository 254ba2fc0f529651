//! Untrusted-mode reads: a message is copied out of its slot once, by raw-pointer reads
//! (no reference into the mapping is formed), into process-local memory that the peer
//! cannot write; everything after that (validation, decoding, the user's code) sees only
//! the copy.

use super::{Consumer, Region};
use crate::error::Corruption;

/// A receiver's private, 8-byte-aligned buffer, allocated at one slot's size, grown (once)
/// when a longer message first arrives, and reused for every message: no allocation per
/// message once the largest has been seen.
pub(crate) struct PrivateCopy {
    /// Backing words (u64 for the alignment Cap'n Proto segments need).
    words: Vec<u64>,
}

impl PrivateCopy {
    /// A buffer that holds `capacity` bytes.
    pub(crate) fn new(capacity: usize) -> PrivateCopy {
        PrivateCopy {
            words: vec![0; capacity.div_ceil(8)],
        }
    }

    /// The first `len` bytes. Panics if `len` exceeds the capacity.
    #[inline]
    pub(crate) fn bytes(&self, len: usize) -> &[u8] {
        assert!(len <= self.words.len() * 8, "copy of {len} bytes");
        // SAFETY: `words` holds `words.len() * 8` initialized bytes (>= len), u8 has no
        // invalid values, and the borrow of `self` keeps them alive and unmodified.
        unsafe { std::slice::from_raw_parts(self.words.as_ptr().cast::<u8>(), len) }
    }

    /// Start of the buffer, for a raw copy into it.
    #[inline]
    fn as_mut_ptr(&mut self) -> *mut u8 {
        self.words.as_mut_ptr().cast::<u8>()
    }

    /// Makes room for `len` bytes.
    #[inline]
    fn reserve(&mut self, len: usize) {
        if len > self.words.len() * 8 {
            self.grow(len);
        }
    }

    #[cold]
    fn grow(&mut self, len: usize) {
        self.words.resize(len.div_ceil(8), 0);
    }
}

impl Consumer<Region> {
    /// Copies the `len` payload bytes of the message `ahead` places after the next one to
    /// `dst`, reading the slot through a raw pointer (the peer may write it meanwhile: the
    /// copy then holds whatever bytes were read, never anything outside the slot).
    ///
    /// # Safety
    /// `peek(ahead)` returned a message of `len` bytes and nothing has been released since;
    /// `dst` is valid for `len` bytes of writes and is not in the mapping.
    #[inline]
    pub(crate) unsafe fn copy_payload(&self, ahead: u64, len: usize, dst: *mut u8) {
        let slot = ((self.tail + ahead) & self.mask) as usize;
        // SAFETY: `peek` validated that the record's `len` bytes lie within the slots it
        // covers, which end within the ring (the caller's contract); `dst` is valid and
        // private (caller), so the two do not overlap. No reference to the slots is formed.
        unsafe { std::ptr::copy_nonoverlapping(self.mem.payload_ptr(slot, len), dst, len) }
    }

    /// Copies the message `ahead` places after the next one into `copy` and returns the
    /// copy.
    ///
    /// # Safety
    /// `peek(ahead)` returned a message of `len` bytes and nothing has been released since.
    #[inline]
    pub(crate) unsafe fn copy_out<'c>(
        &self,
        ahead: u64,
        len: usize,
        copy: &'c mut PrivateCopy,
    ) -> &'c [u8] {
        copy.reserve(len);
        // SAFETY: the caller's `peek`; the buffer holds `len` bytes and is process-local.
        unsafe { self.copy_payload(ahead, len, copy.as_mut_ptr()) };
        copy.bytes(len)
    }

    /// Like [`Consumer::drain`], but each message is copied into `copy` first and `f` gets
    /// the copy.
    pub(crate) fn drain_copied(
        &mut self,
        max: usize,
        copy: &mut PrivateCopy,
        mut f: impl FnMut(&[u8]),
    ) -> Result<usize, Corruption> {
        self.drain_with(max, |consumer, ahead, len| {
            // SAFETY: `drain_with` saw this record published, and nothing was released.
            f(unsafe { consumer.copy_out(ahead, len, copy) })
        })
    }
}
