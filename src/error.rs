//! Errors: one typed, documented, printable enum for every failure of the transport.

use std::time::Duration;

/// Result alias used throughout the crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong when creating, opening or using a channel.
///
/// Every variant carries the values that explain it, and formats as one line a person can
/// act on. No error path panics, aborts or reads outside a mapping.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The call's deadline passed before it could complete (ring full for a send, ring
    /// empty for a receive).
    #[error("timed out: the ring stayed {} for the whole timeout", if *.full { "full" } else { "empty" })]
    Timeout {
        /// `true` when a send waited for free space, `false` when a receive waited for data.
        full: bool,
    },

    /// The peer has shut down (dropped its side); nothing more will arrive from it, and
    /// nothing sent to it will be read.
    #[error("the peer closed the channel")]
    Closed,

    /// The peer's process died without closing the channel (detected by the liveness
    /// monitor). Messages it committed before dying are still delivered first.
    #[error("the peer process died")]
    PeerDead,

    /// A board's writer process died without closing it (its owner lock was released by
    /// the kernel). The values it completed stay readable.
    #[error("the board's writer process died")]
    WriterDead,

    /// The peer is gone and side B is re-attaching to a restarted side A (returned at once
    /// with [`OnDisconnect::Fail`](crate::OnDisconnect::Fail), or when a call's own timeout
    /// ends during the reconnection).
    #[error("the peer is gone; reconnecting")]
    Reconnecting,

    /// The peer is gone and the reconnection policy gave up.
    #[error("the peer is gone and reconnection gave up")]
    GaveUp,

    /// A message is longer than the largest the ring carries (`max_message_len()`: about
    /// `slot_count * slot_stride`, see README "Messages larger than a slot"), or a board
    /// value longer than the board's value size. Nothing was published.
    #[error("message of {len} bytes exceeds the ring's largest message of {max_len} bytes")]
    MessageTooLarge {
        /// Length of the rejected message in bytes.
        len: usize,
        /// The largest message the ring carries.
        max_len: usize,
    },

    /// An argument is out of its documented range (slot count not a power of two, zero
    /// or absurd sizes, a bad channel name, ...).
    #[error("invalid argument `{what}`: {why}")]
    InvalidArgument {
        /// The argument's name.
        what: &'static str,
        /// Why it was refused, with the value.
        why: String,
    },

    /// Side B waited the whole open timeout and side A never created (or finished
    /// creating) the channel.
    #[error("channel `{name}` did not appear within {waited:?} (is side A running?)")]
    NotFound {
        /// The channel name that was looked for.
        name: String,
        /// How long side B waited.
        waited: Duration,
    },

    /// This side of the channel is already held by a live process (another process, or
    /// another handle in this one): a second opener of side B, or a creator over a live
    /// side A without [`ChannelBuilder::replace_live`](crate::ChannelBuilder::replace_live).
    /// The side is judged held by its owner lock, which the kernel releases when the owner
    /// dies; `pid` is the owner's pid as recorded in the channel, information only (0 when
    /// unreadable).
    #[error("side {side} of channel `{name}` is held by a live process (recorded pid {pid})")]
    SideInUse {
        /// The channel name.
        name: String,
        /// `"A"` or `"B"` (`"writer"` for a board).
        side: &'static str,
        /// The owner's process id as recorded in its header (not trusted: information only).
        pid: u32,
    },

    /// A segment of the channel is not ours to use: it is not a regular file owned by our
    /// effective uid with mode exactly 0600. Someone else created it (or changed it), so
    /// others may read or write it, or it may not be a channel at all. Side B's open
    /// refuses it, side A's create refuses to take it over (it is left in place), and
    /// `remove --stale` never judges it stale. Checked with `fstat` on the open descriptor.
    #[error(
        "segment `{name}` is not ours: owner uid {owner_uid}, mode {mode:o} (expected a \
         regular file owned by uid {expected_uid} with mode 0600); remove it if it is a leftover"
    )]
    Foreign {
        /// The segment's name (`<channel>.fs.a2b` or `<channel>.fs.b2a`).
        name: String,
        /// The uid that owns it.
        owner_uid: u32,
        /// Its full `st_mode`: file type and permission bits, as `fstat` reports them.
        mode: u32,
        /// Our effective uid, the owner a segment must have.
        expected_uid: u32,
    },

    /// The receive side is owned by the callback thread, so direct receives are refused.
    #[error("this side receives through its callback thread; direct receive is not available")]
    ReceiverInUse,

    /// A mapped segment holds a value that breaks the layout contract (see
    /// [`Corruption`]): the segment is damaged, foreign, or written by a misbehaving peer.
    #[error("corrupt or incompatible segment: {0}")]
    Corrupt(#[from] Corruption),

    /// A slot does not hold a well-formed Cap'n Proto message (bad segment table, a
    /// pointer out of bounds, a traversal or nesting limit exceeded, ...). The slot was
    /// consumed; the channel stays usable.
    #[error("malformed Cap'n Proto message: {0}")]
    Decode(#[source] capnp::Error),

    /// A Cap'n Proto message could not be written into a slot. Nothing was published.
    #[error("cannot frame Cap'n Proto message: {0}")]
    Encode(#[source] capnp::Error),

    /// An operating-system call failed.
    #[error("{op} failed for `{name}`: {source}")]
    Os {
        /// What was being done (`shm_open`, `mmap`, `shm_unlink`, ...).
        op: &'static str,
        /// The segment or channel name involved.
        name: String,
        /// The underlying OS error.
        #[source]
        source: std::io::Error,
    },
}

/// What exactly was wrong with a mapped segment. Each variant names the field and the
/// offending values, so a corrupt segment can be diagnosed from the message alone.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Corruption {
    /// The mapping is smaller than the fixed header.
    #[error("mapping of {len} bytes is smaller than the {needed}-byte header")]
    MappingTooSmall {
        /// The mapping's real length.
        len: usize,
        /// The header size.
        needed: usize,
    },
    /// The magic number is not this transport's.
    #[error("bad magic {found:#018x} (expected {expected:#018x})")]
    BadMagic {
        /// The value found.
        found: u64,
        /// The value this library writes.
        expected: u64,
    },
    /// The layout version is not one this library speaks.
    #[error("unsupported layout version {found} (this library speaks {supported})")]
    UnsupportedVersion {
        /// The version found.
        found: u32,
        /// The version this library writes and reads.
        supported: u32,
    },
    /// The `ready` word holds neither "not ready" nor "ready".
    #[error("bad ready word {found:#010x}")]
    BadReady {
        /// The value found.
        found: u32,
    },
    /// A geometry field is out of range or inconsistent with the others.
    #[error("header field `{field}` = {value} is invalid: {why}")]
    Geometry {
        /// The header field.
        field: &'static str,
        /// Its value.
        value: u64,
        /// What rule it breaks.
        why: &'static str,
    },
    /// The geometry in the header needs more bytes than the mapping has.
    #[error("header describes {needed} bytes but the mapping has only {len}")]
    GeometryExceedsMapping {
        /// Bytes the header's geometry needs.
        needed: u64,
        /// The mapping's real length.
        len: usize,
    },
    /// The two segments of one channel disagree (different generations or geometry).
    #[error("the two segments disagree on `{field}`: {a2b} vs {b2a}")]
    SegmentsDisagree {
        /// The field that differs.
        field: &'static str,
        /// Its value in `<name>.fs.a2b`.
        a2b: u64,
        /// Its value in `<name>.fs.b2a`.
        b2a: u64,
    },
    /// The head and tail indices are inconsistent (`tail > head`, `head - tail > count`,
    /// an index above 2^63, or an index moved backwards), or a send found the index range
    /// used up (`head` at 2^63).
    #[error("indices out of range: head {head}, tail {tail}, slot count {count}")]
    IndexOutOfRange {
        /// The producer's index.
        head: u64,
        /// The consumer's index.
        tail: u64,
        /// The ring's slot count.
        count: u64,
    },
    /// A slot's commit word is neither the expected "published" value nor the previous
    /// lap's value.
    #[error("slot for index {index} has commit word {found} (expected {expected} or {previous})")]
    CommitWord {
        /// The ring index being read.
        index: u64,
        /// The commit word found.
        found: u64,
        /// The value meaning "published".
        expected: u64,
        /// The value meaning "not yet published".
        previous: u64,
    },
    /// The segment was shrunk under its mapping (another process truncated the object):
    /// the pages past its new end now read as zeros in this process (the SIGBUS guard
    /// replaced them), and the channel carries nothing more.
    #[error("segment `{segment}` was truncated to {size} bytes under its {mapped}-byte mapping")]
    Truncated {
        /// The segment's name (`<name>.fs.a2b` or `<name>.fs.b2a`).
        segment: String,
        /// The mapping's length (the size the segment had when it was mapped).
        mapped: usize,
        /// The object's size when the truncation was reported.
        size: u64,
    },
    /// A board slot's sequence lock word or timestamp breaks the board protocol (a stable
    /// value in the wrong slot, a published value missing, stamps going backwards).
    #[error("board value {seq}: found {found} ({why})")]
    BoardSlot {
        /// The sequence number that was being read.
        seq: u64,
        /// The offending value (a sequence number or a timestamp).
        found: u64,
        /// Which rule it breaks.
        why: &'static str,
    },
    /// A published slot claims a length above the longest message the ring carries.
    #[error("slot length {len} exceeds the ring's largest message of {slot_size} bytes")]
    SlotLength {
        /// The length found.
        len: u64,
        /// The longest message the ring carries (its `max_message_len`).
        slot_size: usize,
    },

    /// A published record's span (the slots it covers) does not match its length, runs
    /// past the ring's end, or covers slots not yet released; or a padding record does
    /// not cover exactly the rest of the ring.
    #[error(
        "record at index {index} (length word {len}) claims {span} slots where {expected} \
         are expected, or runs past the ring"
    )]
    RecordSpan {
        /// Index of the record.
        index: u64,
        /// Its length word (`u32::MAX` for padding).
        len: u64,
        /// The span found.
        span: u64,
        /// The span its length (or position, for padding) implies.
        expected: u64,
    },
}

impl Error {
    #[cfg_attr(loom, allow(dead_code))] // used by the transport, compiled out under loom
    pub(crate) fn invalid(what: &'static str, why: impl Into<String>) -> Self {
        Error::InvalidArgument {
            what,
            why: why.into(),
        }
    }
}
