//! Records: what one commit publishes. A record is a message or a padding record, and it
//! covers one or more consecutive slots (its *span*):
//!
//! - a message of `len <= slot_size` bytes covers one slot, as it always did;
//! - a longer message starts at its first slot's payload and runs on, contiguous, over the
//!   next slots (their headers included): it covers `1 + ceil((len - slot_size) / stride)`
//!   slots, never past the ring's end;
//! - a message that would run past the ring's end is preceded by a padding record that
//!   covers the rest of the ring (Aeron's log buffers do the same), and starts at slot 0.
//!
//! The slot header's second word (`meta`) says which: the low 32 bits are the message
//! length, or [`PADDING`]; the high 32 bits are the span. Both are validated against the
//! ring's geometry before anything is read through them (see [`Shape::decode`]).

use std::num::NonZeroU64;

use crate::error::Corruption;

/// The length word of a padding record.
pub(crate) const PADDING: u32 = u32::MAX;

/// The longest message a record can hold: the length word is 32 bits and [`PADDING`] is
/// taken.
pub(crate) const MAX_RECORD_LEN: usize = PADDING as usize - 1;

/// One published record, validated: its meta word (`span << 32 | len`), which is never 0
/// (a span is at least 1), so `Option<Record>` is one word.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Record(NonZeroU64);

impl Record {
    /// A record from a meta word that [`Shape::decode`] accepted.
    #[inline(always)]
    fn new(meta: u64) -> Record {
        Record(NonZeroU64::new(meta).expect("a validated span is at least 1"))
    }

    /// Payload bytes of a message (for padding: the `PADDING` marker, not a length).
    #[inline(always)]
    pub(crate) fn len(self) -> usize {
        self.0.get() as u32 as usize
    }

    /// Slots covered, at least 1.
    #[inline(always)]
    pub(crate) fn span(self) -> u64 {
        self.0.get() >> 32
    }

    /// A message of one slot (span 1, not padding): one comparison of the word.
    #[inline(always)]
    pub(crate) fn is_one_slot_message(self) -> bool {
        self.0.get().wrapping_sub(1 << 32) < u64::from(PADDING)
    }

    /// A padding record: no message, skip `span` slots.
    #[inline(always)]
    pub(crate) fn is_padding(self) -> bool {
        self.0.get() as u32 == PADDING
    }
}

/// A ring's fixed geometry, as the record rules need it.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Shape {
    /// Payload bytes of one slot.
    pub(crate) slot_size: usize,
    /// Bytes from one slot's start to the next's.
    pub(crate) stride: usize,
    /// Number of slots (a power of two).
    pub(crate) count: u64,
}

impl Shape {
    /// Slots a message of `len` bytes covers: its first slot's payload, then whole slots.
    #[inline]
    pub(crate) fn span_of(&self, len: usize) -> u64 {
        if len <= self.slot_size {
            1
        } else {
            1 + (len - self.slot_size).div_ceil(self.stride) as u64
        }
    }

    /// Payload bytes a record of `span` slots can hold.
    #[inline]
    pub(crate) fn capacity(&self, span: u64) -> usize {
        self.slot_size + (span as usize - 1) * self.stride
    }

    /// The longest message the ring carries: one that covers every slot, within the
    /// length word's range.
    pub(crate) fn max_len(&self) -> usize {
        self.capacity(self.count).min(MAX_RECORD_LEN)
    }

    /// The `meta` word of a record.
    #[inline]
    pub(crate) fn meta(len: u32, span: u64) -> u64 {
        (span << 32) | u64::from(len)
    }

    /// Validates the `meta` word of the record published at `index`, which lies `ahead`
    /// slots past the consumer's tail (so it may cover at most `count - ahead` slots: the
    /// rest belong to messages not yet released).
    #[inline(always)]
    pub(crate) fn decode(&self, index: u64, ahead: u64, meta: u64) -> Result<Record, Corruption> {
        // One slot: `span == 1` and `len <= slot_size`, one comparison of the whole word.
        if meta.wrapping_sub(1 << 32) <= self.slot_size as u64 {
            return Ok(Record::new(meta));
        }
        self.decode_long(index, ahead, meta as u32, meta >> 32)
    }

    /// The rare records: padding and messages longer than a slot, and corrupt words.
    #[cold]
    fn decode_long(
        &self,
        index: u64,
        ahead: u64,
        len: u32,
        span: u64,
    ) -> Result<Record, Corruption> {
        let slot = index & (self.count - 1);
        let (expected, padding) = if len == PADDING {
            // Padding covers exactly the rest of the ring, and never a whole ring.
            (self.count - slot, true)
        } else if len as usize <= self.max_len() {
            (self.span_of(len as usize), false)
        } else {
            return Err(Corruption::SlotLength {
                len: len.into(),
                slot_size: self.max_len(),
            });
        };
        let fits = slot + expected <= self.count && ahead + expected <= self.count;
        if span != expected || !fits || (padding && slot == 0) {
            return Err(Corruption::RecordSpan {
                index,
                len: len.into(),
                span,
                expected,
            });
        }
        Ok(Record::new(Self::meta(len, span)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SHAPE: Shape = Shape {
        slot_size: 48,
        stride: 64,
        count: 8,
    };

    #[test]
    fn spans_count_the_first_payload_then_whole_slots() {
        assert_eq!(SHAPE.span_of(0), 1);
        assert_eq!(SHAPE.span_of(48), 1);
        assert_eq!(SHAPE.span_of(49), 2);
        assert_eq!(SHAPE.span_of(48 + 64), 2);
        assert_eq!(SHAPE.span_of(48 + 65), 3);
        assert_eq!(SHAPE.max_len(), 48 + 7 * 64);
        assert_eq!(SHAPE.span_of(SHAPE.max_len()), 8);
        for len in 0..=SHAPE.max_len() {
            let span = SHAPE.span_of(len);
            assert!(len <= SHAPE.capacity(span));
            assert!(span == 1 || len > SHAPE.capacity(span - 1));
        }
    }

    #[test]
    fn records_decode_and_bad_words_are_corruption() {
        let ok = |index, ahead, len, span| SHAPE.decode(index, ahead, Shape::meta(len, span));
        assert_eq!(ok(3, 0, 5, 1).unwrap().len(), 5);
        assert_eq!(ok(3, 0, 48, 1).unwrap().len(), 48);
        assert_eq!(ok(3, 0, 0, 1).unwrap().len(), 0);
        assert_eq!(ok(3, 0, 100, 2).unwrap().span(), 2);
        // Padding from slot 5 covers 5, 6, 7.
        let padding = ok(13, 0, PADDING, 3).unwrap();
        assert!(padding.is_padding() && padding.span() == 3);
        assert!(!padding.is_one_slot_message());
        assert!(ok(3, 0, 48, 1).unwrap().is_one_slot_message());
        assert!(!ok(3, 0, 100, 2).unwrap().is_one_slot_message());
        // Padding of one slot (from the last slot) is not a message either.
        assert!(!ok(7, 0, PADDING, 1).unwrap().is_one_slot_message());
        let corrupt = [
            ok(3, 0, 5, 0),            // a small message with span 0
            ok(3, 0, 5, 2),            // ... or 2
            ok(3, 0, 100, 3),          // wrong span for its length
            ok(7, 0, 100, 2),          // runs past the ring's end
            ok(3, 7, 100, 2),          // covers unreleased slots
            ok(13, 0, PADDING, 2),     // padding short of the end
            ok(8, 0, PADDING, 8),      // padding over the whole ring
            ok(3, 0, 49 + 7 * 64, 8),  // longer than the ring
            ok(3, 0, u32::MAX - 1, 8), // far longer
        ];
        for (i, c) in corrupt.iter().enumerate() {
            assert!(c.is_err(), "case {i}: {c:?}");
        }
    }
}
