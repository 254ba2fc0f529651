//! Untrusted-mode reads: a message is copied out of its slot once, by raw-pointer reads
//! (no reference into the mapping is formed), into process-local memory that the peer
//! cannot write; everything after that (validation, decoding, the user's code) sees only
//! the copy.

use super::{Consumer, Region};
use crate::error::Corruption;

/// A receiver's private, 8-byte-aligned buffer of one slot's size, allocated once and
/// reused for every message.
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

    /// Capacity in bytes.
    #[inline]
    fn capacity(&self) -> usize {
        self.words.len() * 8
    }
}

impl Consumer<Region> {
    /// Copies the `len` payload bytes of the message `ahead` places after the next one to
    /// `dst`, reading the slot through a raw pointer (the peer may write it meanwhile: the
    /// copy then holds whatever bytes were read, never anything outside the slot).
    ///
    /// # Safety
    /// `peek(ahead)` returned `Some(len)` and nothing has been released since; `dst` is
    /// valid for `len` bytes of writes and is not in the mapping.
    #[inline]
    pub(crate) unsafe fn copy_payload(&self, ahead: u64, len: usize, dst: *mut u8) {
        let slot = ((self.tail + ahead) & self.mask) as usize;
        debug_assert!(len <= self.slot_size);
        // SAFETY: `peek` checked len <= slot_size, so the source is inside the slot's
        // payload (`payload_ptr` is bounds-checked); `dst` is valid and private (caller),
        // so the two do not overlap. No reference to the slot is formed.
        unsafe { std::ptr::copy_nonoverlapping(self.mem.payload_ptr(slot), dst, len) }
    }

    /// Copies the message `ahead` places after the next one into `copy` and returns the
    /// copy.
    ///
    /// # Safety
    /// `peek(ahead)` returned `Some(len)` and nothing has been released since.
    #[inline]
    pub(crate) unsafe fn copy_out<'c>(
        &self,
        ahead: u64,
        len: usize,
        copy: &'c mut PrivateCopy,
    ) -> &'c [u8] {
        assert!(len <= copy.capacity(), "private copy smaller than a slot");
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
        let max = (max as u64).min(self.count);
        let mut n = 0;
        let mut bytes = 0;
        while n < max {
            let Some(len) = self.peek(n)? else { break };
            // SAFETY: `peek(n)` returned `Some(len)` and nothing was released since.
            f(unsafe { self.copy_out(n, len, copy) });
            bytes += len as u64;
            n += 1;
        }
        if n > 0 {
            self.release(n, bytes);
        }
        Ok(n as usize)
    }
}
