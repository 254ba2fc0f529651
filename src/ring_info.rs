//! One ring's counters, read from its header: the single reader behind transport's
//! `DirectionStats` and `inspect`'s [`RingInfo`] (an advisory snapshot: both sides update
//! the words concurrently).

use crate::layout::Header;
use crate::sync::Ordering;

/// One ring's words, as read from its header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RingInfo {
    /// The producer's index: slots its records covered (a message longer than a slot
    /// covers several, and padding records count too).
    pub head: u64,
    /// The consumer's index: slots released.
    pub tail: u64,
    /// Messages published.
    pub messages_sent: u64,
    /// Messages consumed.
    pub messages_received: u64,
    /// Slots published and not yet released (`head - tail`, clamped to the slot count).
    pub used_slots: u64,
    /// Payload bytes published.
    pub bytes_sent: u64,
    /// Payload bytes consumed.
    pub bytes_received: u64,
    /// Process id the producer recorded (0 if none yet).
    pub producer_pid: u32,
    /// Process id the consumer recorded (0 if none yet).
    pub consumer_pid: u32,
}

impl RingInfo {
    /// Reads the counters of the ring whose header is `header` and which has `slot_count`
    /// slots (its validated geometry).
    pub(crate) fn read(header: &Header, slot_count: usize) -> RingInfo {
        // Tail first: the producer stores head before the commits that let tail move, so
        // head read after tail is never below it in a well-behaved channel. Values from a
        // misbehaving peer are clamped into range rather than trusted.
        let tail = header.consumer.tail.load(Ordering::Acquire);
        let head = header.producer.head.load(Ordering::Relaxed);
        RingInfo {
            head,
            tail,
            used_slots: head.saturating_sub(tail).min(slot_count as u64),
            // Statistics: slots minus those that started no message (they wrap).
            messages_sent: head.wrapping_sub(header.producer.extra.load(Ordering::Relaxed)),
            messages_received: tail.wrapping_sub(header.consumer.extra.load(Ordering::Relaxed)),
            bytes_sent: header.producer.bytes.load(Ordering::Relaxed),
            bytes_received: header.consumer.bytes.load(Ordering::Relaxed),
            producer_pid: header.producer.pid.load(Ordering::Relaxed),
            consumer_pid: header.consumer.pid.load(Ordering::Relaxed),
        }
    }
}
