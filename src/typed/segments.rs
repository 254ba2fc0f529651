//! [`SlotSegments`]: the segments of a message framed in a slot, from its segment table
//! read once and checked against the slot, so the reader's bounds are process-local.

use std::ops::Deref;

use capnp::message::{ReaderOptions, ReaderSegments};
use capnp::ErrorKind;

use super::{MAX_SEGMENTS, WORD};
use crate::error::{Error, Result};
use crate::transport::RecvGuard;

/// The segments of a message framed in a slot, read once from its segment table.
///
/// The segment bounds are kept in this (process-local) value and checked against the
/// slot's length when parsed, so nothing the peer writes into the slot afterwards can make
/// a segment reach outside it. Parsing a single-segment message allocates nothing (the
/// bounds of several segments take one small allocation).
///
/// The bytes are either borrowed ([`SlotSegments::parse`], [`read_slot`](super::read_slot)) or, for
/// [`RecvMessage::recv_message`](super::RecvMessage::recv_message), a received message that these segments own (its slot,
/// released when they drop, so a reader over them never outlives it; or, in untrusted
/// mode, the receiver's private copy).
pub struct SlotSegments<'a> {
    /// The whole slot payload (the message and any bytes after it).
    bytes: SlotBytes<'a>,
    /// Where `bytes` starts, taken once: the reader asks for a segment several times per
    /// field, and going through `bytes` each time (the guard, the receive mode, the slot's
    /// address) cost ~40 instructions a call. The bytes do not move while `bytes` holds
    /// them (a slot of the mapping, the receiver's private copy, or a borrowed slice), so
    /// this stays valid for as long as `self`.
    base: *const u8,
    /// `(start, end)` byte offsets into `bytes` of each segment.
    /// Invariant: `start <= end <= bytes.len()` and both are multiples of 8.
    bounds: Bounds,
}

// SAFETY: `base` points into what `bytes` owns or borrows, and is only read through,
// like `bytes` itself; so the segments may cross threads exactly when `bytes` may.
unsafe impl<'a> Send for SlotSegments<'a> where SlotBytes<'a>: Send {}
// SAFETY: as for `Send`: `&SlotSegments` gives shared reads of `bytes`' memory only.
unsafe impl<'a> Sync for SlotSegments<'a> where SlotBytes<'a>: Sync {}

/// The segments' bounds: the first inline (a message usually has one segment, and the
/// reader asks for segment 0 most), any others on the heap.
struct Bounds {
    first: (u32, u32),
    /// Segments 1.. (`None` for a single-segment message: no allocation).
    more: Option<Box<[(u32, u32)]>>,
}

impl Bounds {
    /// Segment `idx`'s bounds.
    #[inline]
    fn get(&self, idx: u32) -> Option<(u32, u32)> {
        if idx == 0 {
            return Some(self.first);
        }
        self.more.as_ref()?.get(idx as usize - 1).copied()
    }

    /// The number of segments.
    #[inline]
    fn count(&self) -> usize {
        1 + self.more.as_ref().map_or(0, |more| more.len())
    }

    /// The last segment's bounds.
    fn last(&self) -> (u32, u32) {
        match &self.more {
            Some(more) => more[more.len() - 1],
            None => self.first,
        }
    }
}

impl<'a> SlotSegments<'a> {
    /// Parses the segment table at the start of `bytes` (which must be 8-byte aligned, as
    /// slot payloads are) and checks that the segments fit in `bytes` and that their total
    /// size is within `options`' traversal limit.
    ///
    /// Errors are [`Error::Decode`] with the matching [`capnp::ErrorKind`].
    pub fn parse(bytes: &'a [u8], options: &ReaderOptions) -> Result<Self> {
        let bounds = parse_table(bytes, options)?;
        Ok(SlotSegments {
            base: bytes.as_ptr(),
            bytes: SlotBytes::Borrowed(bytes),
            bounds,
        })
    }

    /// Like [`SlotSegments::parse`], over a received slot, which the segments keep (and
    /// release when they drop). On an error the slot is released at once.
    #[inline]
    pub(super) fn from_slot(slot: RecvGuard<'a>, options: &ReaderOptions) -> Result<Self> {
        let bounds = parse_table(&slot, options)?;
        Ok(SlotSegments {
            base: slot.as_ptr(),
            bytes: SlotBytes::Slot(slot),
            bounds,
        })
    }

    /// The whole slot payload the segments were parsed from.
    pub(super) fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// Length in bytes of the framed message (segment table + segments), which may be
    /// shorter than the slot payload it was parsed from.
    pub fn framed_len(&self) -> usize {
        self.bounds.last().1 as usize
    }
}

/// Where the bytes of [`SlotSegments`] live.
enum SlotBytes<'a> {
    /// Lent by the caller (a receive-thread callback, [`read_slot`]).
    Borrowed(&'a [u8]),
    /// A received slot, owned until the segments drop.
    Slot(RecvGuard<'a>),
}

impl Deref for SlotBytes<'_> {
    type Target = [u8];
    #[inline]
    fn deref(&self) -> &[u8] {
        match self {
            SlotBytes::Borrowed(bytes) => bytes,
            SlotBytes::Slot(slot) => slot,
        }
    }
}

/// The `(start, end)` byte offsets of each segment framed at the start of `bytes` (see
/// [`SlotSegments::parse`]).
type Table = Bounds;

/// Parses and checks the segment table at the start of `bytes` (see
/// [`SlotSegments::parse`]).
#[inline]
fn parse_table(bytes: &[u8], options: &ReaderOptions) -> Result<Table> {
    if bytes.as_ptr() as usize % WORD != 0 {
        return Err(decode(ErrorKind::UnalignedSegment));
    }
    table_from_words(bytes.len(), options, |i| {
        let b = bytes.get(i * 4..i * 4 + 4)?;
        Some(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    })
}

/// An [`Error::Decode`] of `kind`.
fn decode(kind: ErrorKind) -> Error {
    Error::Decode(capnp::Error::from_kind(kind))
}

/// The segment table of a framed message of `len` bytes whose `i`-th little-endian u32 is
/// `word_at(i)` (`None` past the end). Each table word is read once: the bounds are
/// computed from the values read, so a table that changes while it is parsed can give
/// wrong segments, never segments outside the `len` bytes.
fn table_from_words(
    len: usize,
    options: &ReaderOptions,
    mut word_at: impl FnMut(usize) -> Option<u32>,
) -> Result<Table> {
    let available_words = len / WORD;
    let Some(first) = word_at(0) else {
        return Err(decode(ErrorKind::MessageEndsPrematurely(
            1,
            available_words,
        )));
    };
    // The table stores the count minus one.
    let count = first as usize + 1;
    if count > MAX_SEGMENTS {
        return Err(decode(ErrorKind::InvalidNumberOfSegments(count)));
    }
    let table_words = count / 2 + 1;
    if table_words > available_words {
        return Err(decode(ErrorKind::MessageEndsPrematurely(
            table_words,
            available_words,
        )));
    }
    let to_u32 = |v: usize| u32::try_from(v).map_err(|_| decode(ErrorKind::MessageSizeOverflow));
    if count == 1 {
        // The usual case: one length word, read once, checked, kept inline.
        let words = word_at(1).expect("inside the table checked above");
        check_total(u64::from(words), table_words, available_words, options)?;
        let start = table_words * WORD;
        let end = start + words as usize * WORD;
        return Ok(Bounds {
            first: (to_u32(start)?, to_u32(end)?),
            more: None,
        });
    }
    // Each segment's length in words, read once: the checks below and the bounds are
    // computed from these values only.
    let mut lens = [0u32; MAX_SEGMENTS];
    // Word offsets; at most MAX_SEGMENTS * (u32::MAX + 1) + table, fits in u64.
    let mut total_words: u64 = 0;
    for (i, words) in lens.iter_mut().enumerate().take(count) {
        *words = word_at(i + 1).expect("inside the table checked above");
        total_words += u64::from(*words);
    }
    check_total(total_words, table_words, available_words, options)?;
    // Everything below fits in `bytes`, whose length fits in usize; the slot size is
    // at most MAX_SLOT_SIZE (< 4 GiB), but check the u32 conversion anyway.
    let mut bounds = Vec::with_capacity(count);
    let mut start = table_words * WORD;
    for &words in lens.iter().take(count) {
        let end = start + words as usize * WORD;
        debug_assert!(end <= len);
        bounds.push((to_u32(start)?, to_u32(end)?));
        start = end;
    }
    let first = bounds.remove(0);
    Ok(Bounds {
        first,
        more: Some(bounds.into_boxed_slice()),
    })
}

/// Checks segments of `total_words` after a table of `table_words` against the
/// `available_words` and `options`' traversal limit.
#[inline]
fn check_total(
    total_words: u64,
    table_words: usize,
    available_words: usize,
    options: &ReaderOptions,
) -> Result<()> {
    if let Some(limit) = options.traversal_limit_in_words {
        if total_words > limit as u64 {
            return Err(decode(ErrorKind::MessageTooLarge(
                usize::try_from(total_words).unwrap_or(usize::MAX),
            )));
        }
    }
    let needed = total_words + table_words as u64;
    if needed > available_words as u64 {
        return Err(decode(ErrorKind::MessageEndsPrematurely(
            usize::try_from(needed).unwrap_or(usize::MAX),
            available_words,
        )));
    }
    Ok(())
}

impl ReaderSegments for SlotSegments<'_> {
    #[inline]
    fn get_segment(&self, idx: u32) -> Option<&[u8]> {
        let (start, end) = self.bounds.get(idx)?;
        // SAFETY: `base` is the start of `bytes` (see the field), which is alive and not
        // written through while `self` is borrowed; `start <= end <= bytes.len()` (the
        // bounds' invariant, checked when the table was parsed).
        Some(unsafe {
            std::slice::from_raw_parts(self.base.add(start as usize), (end - start) as usize)
        })
    }

    fn len(&self) -> usize {
        self.bounds.count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::typed::default_reader_options;

    /// A table whose segment length grows between two reads of the same word (a peer
    /// writing the slot while it is parsed) must still give segments inside the slot,
    /// each table word being read once.
    #[test]
    fn table_words_are_read_once() {
        let len = 64; // 8 words: the table (1) + one segment of up to 7
        let mut reads = [0u32; 2];
        let table = table_from_words(len, &default_reader_options(), |i| {
            let word = match i {
                0 => 0,                                  // one segment
                1 if reads[1] == 0 => 2,                 // first read: 2 words
                1 => 1000,                               // later reads: far past the slot
                _ => return None,
            };
            reads[i] += 1;
            Some(word)
        });
        assert_eq!(reads, [1, 1], "each table word read once");
        let bounds = table.unwrap();
        assert_eq!((bounds.count(), bounds.get(0)), (1, Some((8, 24))));
    }
}
