//! Cap'n Proto messages over a channel: a slot holds one message in the standard stream
//! framing (segment table + segments), so any Cap'n Proto implementation can decode it.
//!
//! - Sending ([`SendMessage::send_message`]) copies a built message's segments once into
//!   the next free slot; the size is checked first, so a message that does not fit
//!   publishes nothing. With a single-segment message (the usual case: give the builder a
//!   first segment large enough, e.g. a reused [`capnp::message::ScratchSpaceHeapAllocator`])
//!   the send path does no heap allocation.
//! - Receiving ([`RecvMessage::recv_message`]) lends a [`MessageGuard`] that derefs to a
//!   [`capnp::message::Reader`] over the slot's bytes, without copying or allocating;
//!   dropping the guard releases the slot.
//! - [`OnReceiveMessage::on_receive_message`] gives the receive thread's callback a reader
//!   per message (or the decode error for a malformed one).
//!
//! Slot bytes are untrusted. The segment table is parsed once into process-local bounds
//! ([`SlotSegments`]), so later changes to the slot by a misbehaving peer cannot move a
//! segment outside the slot; the reader enforces the traversal and nesting limits of its
//! [`ReaderOptions`], so pointer loops, deep nesting or huge claimed sizes give an
//! [`Error::Decode`], never a panic, a hang or an out-of-bounds read.
//!
//! ```
//! use std::time::Duration;
//! use capnp_shm_transport::{demo_capnp::sample, Channel};
//! use capnp_shm_transport::typed::{RecvMessage, SendMessage};
//!
//! # let name = format!("doc-typed-{}", std::process::id());
//! let mut a = Channel::builder(&name).slot_size(256).slot_count(16).create()?;
//! let mut b = Channel::builder(&name).open_timeout(Duration::from_secs(1)).open()?;
//!
//! let mut message = capnp::message::Builder::new_default();
//! let mut s = message.init_root::<sample::Builder>();
//! s.set_seq(7);
//! s.set_payload(b"hello");
//! s.get_control().set_ping(());
//! a.send_message(&message, Duration::from_millis(10))?;
//!
//! let msg = b.recv_message(Duration::from_secs(1))?; // borrowed in place from the slot
//! let s = msg.root::<sample::Owned>()?;
//! assert_eq!(s.get_seq(), 7);
//! assert_eq!(s.get_payload().map_err(capnp_shm_transport::Error::Decode)?, b"hello");
//! # Ok::<(), capnp_shm_transport::Error>(())
//! ```

use std::ops::Deref;

use capnp::message::{Allocator, Builder, Reader, ReaderOptions, ReaderSegments};
use capnp::traits::Owned;
use capnp::{ErrorKind, Word};

use crate::error::{Error, Result};
use crate::transport::{Channel, ChannelBuilder, Receiver, RecvGuard, Sender};
use crate::wait::Timeout;

/// The most segments a received message may have. A message written by
/// [`SendMessage::send_message`] from a builder with a large enough first segment has one.
pub const MAX_SEGMENTS: usize = 64;

/// Bytes per Cap'n Proto word.
const WORD: usize = std::mem::size_of::<Word>();

/// The reading limits used by [`RecvMessage::recv_message`] and
/// [`OnReceiveMessage::on_receive_message`] when none are given: Cap'n Proto's defaults,
/// a traversal limit of 8 Mi words (64 MiB, at most ~ the slot size times the number of
/// times a hostile message can make the reader revisit data) and a nesting limit of 64.
pub fn default_reader_options() -> ReaderOptions {
    ReaderOptions::new()
}

/// Size in bytes of `segments` in the standard stream framing.
fn framed_len(segments: &[&[u8]]) -> usize {
    // The table: a u32 count and one u32 length per segment, padded to a whole word.
    let table_words = segments.len() / 2 + 1;
    table_words * WORD + segments.iter().map(|s| s.len()).sum::<usize>()
}

/// Sends Cap'n Proto messages. Implemented by [`Sender`] and [`Channel`].
pub trait SendMessage {
    /// Writes `message` in the standard stream framing (segment table + segments) into
    /// the next free slot, waiting up to `timeout` for one, and publishes it.
    ///
    /// The framed size is checked first: a message larger than the slot size is
    /// [`Error::MessageTooLarge`] and publishes nothing. Single-segment messages are sent
    /// without heap allocation; a multi-segment message costs one small allocation (the
    /// builder's list of its segments).
    ///
    /// Other errors are those of [`Sender::send_with`].
    fn send_message<A: Allocator>(
        &mut self,
        message: &Builder<A>,
        timeout: impl Into<Timeout>,
    ) -> Result<()>;
}

impl SendMessage for Sender {
    fn send_message<A: Allocator>(
        &mut self,
        message: &Builder<A>,
        timeout: impl Into<Timeout>,
    ) -> Result<()> {
        let output = message.get_segments_for_output();
        let segments: &[&[u8]] = &output;
        let len = framed_len(segments);
        let slot_size = self.max_message_len();
        if len > slot_size {
            return Err(Error::MessageTooLarge { len, slot_size });
        }
        self.send_with(timeout, |slot| {
            let mut out = &mut slot[..len];
            capnp::serialize::write_message_segments(&mut out, &segments).map_err(Error::Encode)?;
            if !out.is_empty() {
                return Err(Error::Encode(capnp::Error::failed(format!(
                    "framing wrote {} bytes, {len} expected",
                    len - out.len()
                ))));
            }
            Ok(len)
        })
    }
}

impl SendMessage for Channel {
    fn send_message<A: Allocator>(
        &mut self,
        message: &Builder<A>,
        timeout: impl Into<Timeout>,
    ) -> Result<()> {
        self.sender().send_message(message, timeout)
    }
}

/// The segments of a message framed in a slot, read once from its segment table.
///
/// The segment bounds are kept in this (process-local) value and checked against the
/// slot's length when parsed, so nothing the peer writes into the slot afterwards can make
/// a segment reach outside it. Parsing allocates nothing.
///
/// The bytes are either borrowed ([`SlotSegments::parse`], [`read_slot`]) or, for
/// [`RecvMessage::recv_message`], a received slot that these segments own: it is released
/// when they drop, so a reader over them never outlives its slot.
pub struct SlotSegments<'a> {
    /// The whole slot payload (the message and any bytes after it).
    bytes: SlotBytes<'a>,
    /// `(start, end)` byte offsets into `bytes` of each segment; the first `count` are used.
    /// Invariant: `start <= end <= bytes.len()` and both are multiples of 8.
    bounds: [(u32, u32); MAX_SEGMENTS],
    /// Number of segments, `1..=MAX_SEGMENTS`.
    count: usize,
}

impl<'a> SlotSegments<'a> {
    /// Parses the segment table at the start of `bytes` (which must be 8-byte aligned, as
    /// slot payloads are) and checks that the segments fit in `bytes` and that their total
    /// size is within `options`' traversal limit.
    ///
    /// Errors are [`Error::Decode`] with the matching [`capnp::ErrorKind`].
    pub fn parse(bytes: &'a [u8], options: &ReaderOptions) -> Result<Self> {
        let (bounds, count) = parse_table(bytes, options)?;
        Ok(SlotSegments {
            bytes: SlotBytes::Borrowed(bytes),
            bounds,
            count,
        })
    }

    /// Like [`SlotSegments::parse`], over a received slot, which the segments keep (and
    /// release when they drop). On an error the slot is released at once.
    fn from_slot(slot: RecvGuard<'a>, options: &ReaderOptions) -> Result<Self> {
        let (bounds, count) = parse_table(&slot, options)?;
        Ok(SlotSegments {
            bytes: SlotBytes::Slot(slot),
            bounds,
            count,
        })
    }

    /// Length in bytes of the framed message (segment table + segments), which may be
    /// shorter than the slot payload it was parsed from.
    pub fn framed_len(&self) -> usize {
        self.bounds[self.count - 1].1 as usize
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
/// [`SlotSegments::parse`]), and the number of segments.
type Table = ([(u32, u32); MAX_SEGMENTS], usize);

/// Parses and checks the segment table at the start of `bytes` (see
/// [`SlotSegments::parse`]).
fn parse_table(bytes: &[u8], options: &ReaderOptions) -> Result<Table> {
    let decode = |kind| Error::Decode(capnp::Error::from_kind(kind));
    if bytes.as_ptr() as usize % WORD != 0 {
        return Err(decode(ErrorKind::UnalignedSegment));
    }
    let available_words = bytes.len() / WORD;
    let word_at = |i: usize| -> Option<u32> {
        let b = bytes.get(i * 4..i * 4 + 4)?;
        Some(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    };
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
    let mut bounds = [(0u32, 0u32); MAX_SEGMENTS];
    // Word offsets; at most MAX_SEGMENTS * (u32::MAX + 1) + table, fits in u64.
    let mut total_words: u64 = 0;
    for i in 0..count {
        let words = word_at(i + 1).expect("inside the table checked above");
        total_words += u64::from(words);
    }
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
    // Everything below fits in `bytes`, whose length fits in usize; the slot size is
    // at most MAX_SLOT_SIZE (< 4 GiB), but check the u32 conversion anyway.
    let to_u32 = |v: usize| u32::try_from(v).map_err(|_| decode(ErrorKind::MessageSizeOverflow));
    let mut start = table_words * WORD;
    for (i, bound) in bounds.iter_mut().enumerate().take(count) {
        let len = word_at(i + 1).expect("inside the table checked above") as usize * WORD;
        let end = start + len;
        debug_assert!(end <= bytes.len());
        *bound = (to_u32(start)?, to_u32(end)?);
        start = end;
    }
    Ok((bounds, count))
}

impl ReaderSegments for SlotSegments<'_> {
    fn get_segment(&self, idx: u32) -> Option<&[u8]> {
        let &(start, end) = self.bounds[..self.count].get(idx as usize)?;
        self.bytes.get(start as usize..end as usize)
    }

    fn len(&self) -> usize {
        self.count
    }
}

/// Decodes the message framed at the start of `bytes` (no copy, no allocation).
///
/// Checks only the segment table; pointers are checked as the returned reader follows
/// them, against `options`' limits.
pub fn read_slot(bytes: &[u8], options: ReaderOptions) -> Result<Reader<SlotSegments<'_>>> {
    Ok(Reader::new(SlotSegments::parse(bytes, &options)?, options))
}

/// A received Cap'n Proto message, read in place from its slot. Derefs to a
/// [`capnp::message::Reader`]; dropping the guard releases the slot to the peer.
pub struct MessageGuard<'a> {
    /// A reader over segments that own the received slot.
    reader: Reader<SlotSegments<'a>>,
}

impl MessageGuard<'_> {
    /// The root struct as type `T` (e.g. `demo_capnp::sample::Owned`); a malformed root
    /// pointer is [`Error::Decode`]. Fields are checked as they are read.
    pub fn root<T: Owned>(&self) -> Result<T::Reader<'_>> {
        self.reader
            .get_root::<T::Reader<'_>>()
            .map_err(Error::Decode)
    }

    /// The slot payload the message was read from (framed message, perhaps followed by
    /// unused bytes).
    pub fn bytes(&self) -> &[u8] {
        &self.reader.get_segments().bytes
    }
}

impl<'a> Deref for MessageGuard<'a> {
    type Target = Reader<SlotSegments<'a>>;
    fn deref(&self) -> &Self::Target {
        &self.reader
    }
}

/// Receives Cap'n Proto messages. Implemented by [`Receiver`] and [`Channel`].
pub trait RecvMessage {
    /// Like [`RecvMessage::recv_message`], with explicit reading limits.
    fn recv_message_with(
        &mut self,
        options: ReaderOptions,
        timeout: impl Into<Timeout>,
    ) -> Result<MessageGuard<'_>>;

    /// Waits up to `timeout` for the next message and lends it in place as a Cap'n Proto
    /// reader with the [default limits](default_reader_options).
    ///
    /// Errors: those of [`Receiver::recv`], and [`Error::Decode`] when the slot does not
    /// hold a well-framed message (the slot is then released: the message is consumed).
    fn recv_message(&mut self, timeout: impl Into<Timeout>) -> Result<MessageGuard<'_>> {
        self.recv_message_with(default_reader_options(), timeout)
    }
}

impl RecvMessage for Receiver {
    fn recv_message_with(
        &mut self,
        options: ReaderOptions,
        timeout: impl Into<Timeout>,
    ) -> Result<MessageGuard<'_>> {
        let slot = self.recv(timeout)?;
        let segments = SlotSegments::from_slot(slot, &options)?;
        Ok(MessageGuard {
            reader: Reader::new(segments, options),
        })
    }
}

impl RecvMessage for Channel {
    fn recv_message_with(
        &mut self,
        options: ReaderOptions,
        timeout: impl Into<Timeout>,
    ) -> Result<MessageGuard<'_>> {
        let receiver = self.receiver_mut()?;
        receiver.recv_message_with(options, timeout)
    }
}

/// Adds a receive-thread callback that gets a Cap'n Proto reader per message.
pub trait OnReceiveMessage {
    /// Receive through a thread (as [`ChannelBuilder::on_receive`]) that calls `callback`
    /// with a reader over each message, in place, with the given reading limits. A slot
    /// that does not hold a well-framed message is passed as `Err(Error::Decode(..))` and
    /// consumed; the thread goes on with the next message.
    fn on_receive_message(
        self,
        options: ReaderOptions,
        callback: impl FnMut(Result<Reader<SlotSegments<'_>>>) + Send + 'static,
    ) -> Self;
}

impl OnReceiveMessage for ChannelBuilder {
    fn on_receive_message(
        self,
        options: ReaderOptions,
        mut callback: impl FnMut(Result<Reader<SlotSegments<'_>>>) + Send + 'static,
    ) -> Self {
        self.on_receive(move |bytes| callback(read_slot(bytes, options)))
    }
}
