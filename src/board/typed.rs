//! Cap'n Proto values on a board: publish a message framed in place in the slot, read
//! the newest one into a reusable word buffer and decode it there.

use capnp::message::{Allocator, Builder, Reader, ReaderOptions};

use super::reader::{latest_by, BoardReader};
use super::writer::BoardWriter;
use super::Stamp;
use crate::error::{Error, Result};
use crate::typed::{read_slot, SlotSegments};

impl BoardWriter {
    /// Publishes `message` in the standard stream framing, written in place into the
    /// slot. [`Error::MessageTooLarge`] when its framed size exceeds the value size
    /// (nothing is published).
    ///
    /// ```
    /// use capnp_shm_transport::board::Board;
    /// # let name = format!("doc-board-typed-{}", std::process::id());
    /// let mut writer = Board::builder(&name).value_size(256).create()?;
    /// let mut reader = Board::builder(&name).open(std::time::Duration::from_secs(1))?;
    /// let mut message = capnp::message::Builder::new_default();
    /// message.set_root("hello")?;
    /// writer.publish_message(&message)?;
    /// let mut words = Vec::new();
    /// let (stamp, value) = reader.latest_message(&mut words, Default::default())?.unwrap();
    /// assert_eq!(stamp.sequence, 1);
    /// assert_eq!(value.get_root::<capnp::text::Reader>()?.to_str()?, "hello");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn publish_message<A: Allocator>(&mut self, message: &Builder<A>) -> Result<u64> {
        let output = message.get_segments_for_output();
        let segments: &[&[u8]] = &output;
        let len = capnp::serialize::compute_serialized_size_in_words(message) * 8;
        if len > self.max_value_len() {
            return Err(Error::MessageTooLarge {
                len,
                max_len: self.max_value_len(),
            });
        }
        let mut written = Ok(());
        let published = self.publish_with(|buf| {
            let mut out = &mut buf[..len];
            written = capnp::serialize::write_message_segments(&mut out, &segments);
            // A framing failure publishes nothing: a length past the payload aborts.
            if written.is_ok() {
                len
            } else {
                usize::MAX
            }
        });
        written.map_err(Error::Encode)?;
        published
    }
}

impl BoardReader {
    /// Copies the newest value into `words` (8-byte aligned, reused across calls) and
    /// decodes it as a Cap'n Proto message there, with `options`' limits. `None` before
    /// the first publish; [`Error::Decode`] when the value is not a well-formed message.
    pub fn latest_message<'b>(
        &mut self,
        words: &'b mut Vec<u64>,
        options: ReaderOptions,
    ) -> Result<Option<(Stamp, Reader<SlotSegments<'b>>)>> {
        let map = self.map();
        let Some(stamp) = latest_by(map, |seq, len| map.copy_out_words(seq, len, words))? else {
            return Ok(None);
        };
        let bytes = super::map::word_bytes(words, stamp.len);
        Ok(Some((stamp, read_slot(bytes, options)?)))
    }
}
