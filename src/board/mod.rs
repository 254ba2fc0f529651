//! The latest-value board: a second kind of channel, for readers that want the newest
//! value, never a backlog (sensor state, configuration, a setpoint, a frame).
//!
//! One writer [creates](BoardBuilder::create) board `name`: one segment,
//! `/dev/shm/<name>.fs.board`, holding a header and a ring of `max(history, 2)` slots.
//! Each [published](BoardWriter::publish) value goes into the next slot under that slot's
//! sequence lock, stamped with its sequence number and `CLOCK_MONOTONIC` nanoseconds. Any
//! number of readers [open](BoardBuilder::open) it and copy out the [newest
//! value](BoardReader::latest), a recent one ([`BoardReader::get`]), the one closest to a
//! time ([`BoardReader::closest`]) or the pair around it
//! ([`BoardReader::interpolation_pair`]), or [wait](BoardReader::wait_newer) for a newer
//! one. A slow reader never falls behind: it skips to now.
//!
//! ```
//! use std::time::Duration;
//! use capnp_shm_transport::board::{Board, BoardWait};
//!
//! # let name = format!("doc-board-{}", std::process::id());
//! let mut writer = Board::builder(&name).value_size(64).history(16).create()?;
//! let mut reader = Board::builder(&name)
//!     .wait(BoardWait::Block)
//!     .open(Duration::from_secs(1))?;
//! for i in 0..20u32 {
//!     writer.publish(&i.to_le_bytes())?;
//! }
//! let mut buf = Vec::new();
//! let newest = reader.latest(&mut buf)?.expect("published");
//! assert_eq!((newest.sequence, &buf[..]), (20, &19u32.to_le_bytes()[..]));
//! // The value nearest a time, within a distance guard.
//! let hit = reader.closest(newest.timestamp_ns, 1_000, &mut buf)?.unwrap();
//! assert_eq!(hit.sequence, 20);
//! # Ok::<(), capnp_shm_transport::Error>(())
//! ```
//!
//! Layers: `protocol` (the sequence lock and the wake-up, model-checked under loom),
//! `layout` (the header and its validation), `map` (the mapping: all of the board's
//! `unsafe`), `writer`, `reader`, `history` (time queries), `info` (listing, inspecting,
//! removing), `typed` (Cap'n Proto values). `docs/LAYOUT.md`, "Board segment", gives the
//! bytes.

mod protocol;

#[cfg(loom)]
mod loom_tests;

not_under_loom! {
    mod history;
    mod info;
    mod layout;
    mod map;
    mod reader;
    mod typed;
    mod writer;
    #[cfg(test)]
    mod tests;

    pub use info::{board_is_stale, inspect_board, list_boards, remove_board, remove_stale_boards, BoardInfo};
    pub use layout::{BoardGeometry, MAX_HISTORY, MAX_VALUE_SIZE};
    pub use reader::BoardReader;
    pub use writer::BoardWriter;

    use std::time::Duration;

    /// The suffix of a board's segment name.
    pub const BOARD_SUFFIX: &str = ".fs.board";

    /// The segment name of board `name`.
    pub(crate) fn segment_name(name: &str) -> String {
        format!("{name}{BOARD_SUFFIX}")
    }

    /// `CLOCK_MONOTONIC` now, in nanoseconds: the clock the writer stamps values with.
    pub fn monotonic_ns() -> u64 {
        let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
        // SAFETY: `ts` is a valid, writable timespec on our stack; CLOCK_MONOTONIC exists
        // on every Linux, so the call cannot fail.
        unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
        (ts.tv_sec as u64).saturating_mul(1_000_000_000).saturating_add(ts.tv_nsec as u64)
    }

    /// Entry point: [`Board::builder`], then [`BoardBuilder::create`] (the writer) or
    /// [`BoardBuilder::open`] (a reader).
    ///
    /// ```
    /// use capnp_shm_transport::board::Board;
    /// # let name = format!("doc-board-entry-{}", std::process::id());
    /// let writer = Board::builder(&name).value_size(128).history(1).create()?;
    /// assert_eq!(writer.max_value_len(), 128);
    /// # Ok::<(), capnp_shm_transport::Error>(())
    /// ```
    #[derive(Debug)]
    pub struct Board;

    impl Board {
        /// A builder for board `name` (checked like a channel name), with value size 64,
        /// history 1 (latest only) and [`BoardWait::Block`].
        pub fn builder(name: &str) -> BoardBuilder {
            BoardBuilder {
                name: name.to_string(),
                value_size: 64,
                history: 1,
                wait: BoardWait::Block,
            }
        }
    }

    /// How a board is created or opened (see [`Board::builder`]).
    #[derive(Debug, Clone)]
    pub struct BoardBuilder {
        name: String,
        value_size: usize,
        history: usize,
        wait: BoardWait,
    }

    impl BoardBuilder {
        /// The largest value in bytes (1 to [`MAX_VALUE_SIZE`]); the creator's choice.
        pub fn value_size(mut self, bytes: usize) -> Self {
            self.value_size = bytes;
            self
        }

        /// How many newest values stay readable: a power of two up to [`MAX_HISTORY`];
        /// 1 keeps only the latest. The creator's choice.
        pub fn history(mut self, values: usize) -> Self {
            self.history = values;
            self
        }

        /// How an opened reader waits in [`BoardReader::wait_newer`].
        pub fn wait(mut self, wait: BoardWait) -> Self {
            self.wait = wait;
            self
        }

        /// Creates the board and returns its writer. A leftover board of the same name
        /// whose writer is gone is replaced; a live one is [`crate::Error::SideInUse`].
        pub fn create(self) -> crate::Result<BoardWriter> {
            writer::create(&self)
        }

        /// Opens the board as a reader, waiting up to `timeout` for its writer to create
        /// it ([`crate::Error::NotFound`] then). The header is validated first: a bad one
        /// is [`crate::Error::Corrupt`].
        pub fn open(self, timeout: Duration) -> crate::Result<BoardReader> {
            reader::open(&self, timeout)
        }
    }

    /// A value's envelope: what was copied out with it.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub struct Stamp {
        /// Its sequence number: 1 for the first value, one more for each.
        pub sequence: u64,
        /// Its timestamp in ns (`CLOCK_MONOTONIC`, unless the writer gave its own).
        pub timestamp_ns: u64,
        /// Its length in bytes.
        pub len: usize,
    }

    /// How [`BoardReader::wait_newer`] idles.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub enum BoardWait {
        /// Busy-spin: lowest latency, one core busy.
        Spin,
        /// Sleep this long per idle round.
        Sleep(Duration),
        /// Spin 20 µs, then sleep on a futex until the writer wakes it (the writer makes a
        /// system call only when a reader sleeps).
        Block,
    }

    /// What a reader knows of the board's writer.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub enum WriterState {
        /// It holds the board's owner lock.
        Alive,
        /// It closed the board (dropped its writer).
        Closed,
        /// Its process died: the kernel released its owner lock without a close.
        Dead,
    }
}
