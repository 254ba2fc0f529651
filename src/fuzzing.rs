//! Entry points for the fuzz targets (`fuzz/`) and for the regression test that replays
//! their corpus on stable Rust (`tests/fuzz_corpus.rs`). Not a stable API. Each function
//! takes arbitrary bytes and must return without panicking, hanging or touching memory
//! outside what it was given: that is the property being fuzzed.

use crate::layout::{self, Readiness, HEADER_SIZE};
use crate::ring::Region;
use crate::ring::{Consumer, PrivateCopy, Producer, RingMemory};
use crate::segment::Direction;
use crate::sync::Ordering;

/// `bytes` as a whole mapped segment: validated like an opener does, and if valid, read
/// by a consumer (every published message) and taken over by a producer.
pub fn segment(bytes: &[u8]) {
    let Some(region) = Region::heap_copy(bytes) else {
        return;
    };
    let len = bytes.len();
    if len < HEADER_SIZE {
        return;
    }
    let header = region.header();
    if !matches!(layout::readiness(header, len), Ok(Readiness::Ready)) {
        return;
    }
    let Ok(valid) = layout::validate(header, len, Direction::AToB) else {
        return;
    };
    exercise(region.with_geometry(valid.geometry), valid.tail);
}

/// A valid small ring (32-byte slots, 4 of them) whose words are then overwritten by the
/// fuzz input, read as `(offset: u16, value: u64)` pairs (offsets into the header and
/// slots, 8-byte aligned): indices, commit words, lengths and flags all become hostile.
pub fn ring(bytes: &[u8]) {
    let Ok(region) = Region::heap(32, 4) else {
        return;
    };
    let len = region.geometry().segment_len() as usize;
    for pair in bytes.chunks_exact(10) {
        let offset = (u16::from_le_bytes([pair[0], pair[1]]) as usize % len) & !7;
        let value = u64::from_le_bytes(pair[2..10].try_into().expect("8 bytes"));
        region.poke_u64(offset, value);
    }
    let tail = region.tail().load(Ordering::Relaxed);
    exercise(region, tail);
}

/// Runs a consumer and a producer over `region`; every error is fine, no panic is. Like
/// the transport, it starts a consumer only at a tail within the index range.
fn exercise(region: Region, tail: u64) {
    let count = region.slot_count() as u64;
    if tail > layout::MAX_INDEX {
        return;
    }
    let mut consumer = Consumer::new(region.clone(), tail, 0);
    let mut seen = 0usize;
    let _ = consumer.drain(usize::MAX, |msg| seen = seen.wrapping_add(msg.len()));
    std::hint::black_box(seen);
    // A producer takes over as the transport's does: at the tail it reads now, once the
    // indices pass the same check.
    let tail = consumer_tail(&consumer);
    let head = region.head().load(Ordering::Relaxed);
    if layout::check_indices(head, tail, count).is_ok() {
        let mut producer = Producer::resume(region, tail, 0);
        let _ = producer.try_send(b"fuzz");
        let _ = producer.try_send_batch(&[b"a", b"bc"]);
        let slot = producer.slot_size();
        let _ = producer.try_send_with(slot, |buf| Ok::<_, crate::Error>(buf.len() + 1));
        // Records longer than a slot (padding first, where they would wrap).
        let _ = producer.try_send(&vec![7; 2 * slot + 1]);
        let _ = producer.try_send_with(3 * slot, |buf| Ok::<_, crate::Error>(buf.len()));
    }
}

fn consumer_tail(consumer: &Consumer<Region>) -> u64 {
    consumer.memory().tail().load(Ordering::Relaxed)
}

/// Untrusted-mode receive against a concurrent mutator. `bytes` is a message length
/// (u16, at most the 256-byte slot), that many message bytes, then `(offset: u16, value:
/// u64)` pairs. The message is published in each slot of a small ring; a mutator thread
/// keeps writing the pairs' words over the slots (payloads, lengths, commit words) while
/// the consumer copies each message out as untrusted mode does, decodes the copy as a
/// `Sample` and reads every field twice: the readings must agree (the copy is private),
/// and nothing may panic or read outside the ring. The inputs are deterministic; only the
/// interleaving varies, and the property holds for every interleaving.
pub fn untrusted_recv(bytes: &[u8]) {
    use crate::sync::AtomicBool;
    const SLOT: usize = 256;
    let Some((len, rest)) = bytes.split_first_chunk::<2>() else {
        return;
    };
    let len = (u16::from_le_bytes(*len) as usize).min(SLOT).min(rest.len());
    let (message, pokes) = rest.split_at(len);
    let Ok(region) = Region::heap(SLOT, 4) else {
        return;
    };
    let slots = region.geometry().slot_count * region.geometry().slot_stride;
    let mut producer = Producer::new(region.clone(), 0, 0, 0);
    while matches!(producer.try_send(message), Ok(true)) {}
    let mut consumer = Consumer::new(region.clone(), 0, 0);
    let mut copy = PrivateCopy::new(SLOT);
    let (started, done) = (AtomicBool::new(false), AtomicBool::new(false));
    std::thread::scope(|scope| {
        scope.spawn(|| {
            // Relaxed: these flags only pace the two threads; no data is published.
            started.store(true, Ordering::Relaxed);
            let mut flip = 0;
            while !done.load(Ordering::Relaxed) {
                for pair in pokes.chunks_exact(10) {
                    let offset = (u16::from_le_bytes([pair[0], pair[1]]) as usize % slots) & !7;
                    let value = u64::from_le_bytes(pair[2..10].try_into().expect("8 bytes"));
                    region.poke_u64(HEADER_SIZE + offset, value ^ flip);
                }
                flip = !flip;
            }
        });
        // Decode while the mutator runs (it starts within microseconds).
        while !started.load(Ordering::Relaxed) {
            crate::sync::thread::yield_now();
        }
        // Stops the mutator even if decoding panics (the finding), so the scope ends.
        let _stop = StopOnDrop(&done);
        let _ = consumer.drain_copied(4, &mut copy, decode_twice);
    });
}

/// Sets its flag when dropped (Relaxed: the flag only asks a loop to end).
struct StopOnDrop<'a>(&'a crate::sync::AtomicBool);

impl Drop for StopOnDrop<'_> {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// Decodes `bytes` as a `Sample` and reads every field twice; panics if they differ.
fn decode_twice(bytes: &[u8]) {
    use crate::demo_capnp::sample;
    let Ok(reader) = crate::typed::read_slot(bytes, crate::typed::default_reader_options())
    else {
        return;
    };
    let Ok(s) = reader.get_root::<sample::Reader<'_>>() else {
        return;
    };
    let read = || {
        (
            s.get_seq(),
            s.get_sent_ns(),
            s.get_payload().map(<[u8]>::to_vec).ok(),
            s.get_control().which().is_ok(),
        )
    };
    let first = read();
    for _ in 0..8 {
        assert_eq!(first, read(), "a private copy changed while it was decoded");
    }
}

/// `bytes` as one slot's payload, decoded through the typed receive path as the demo's
/// `Sample`, reading every field (with the default traversal and nesting limits).
pub fn typed_slot(bytes: &[u8]) {
    use crate::demo_capnp::sample;
    let words: Vec<u64> = bytes
        .chunks(8)
        .map(|c| {
            let mut w = [0u8; 8];
            w[..c.len()].copy_from_slice(c);
            u64::from_le_bytes(w)
        })
        .collect();
    // SAFETY: a Vec<u64> is 8-byte aligned and holds words.len() * 8 initialized bytes,
    // of which we view the first bytes.len() (<= that) as u8, which has no invalid values.
    let aligned = unsafe { std::slice::from_raw_parts(words.as_ptr().cast::<u8>(), bytes.len()) };
    let Ok(reader) = crate::typed::read_slot(aligned, crate::typed::default_reader_options())
    else {
        return;
    };
    let Ok(s) = reader.get_root::<sample::Reader<'_>>() else {
        return;
    };
    let _ = std::hint::black_box((
        s.get_seq(),
        s.get_sent_ns(),
        s.get_payload().map(|p| p.len()),
    ));
    if let Ok(control) = s.get_control().which() {
        std::hint::black_box(matches!(control, sample::control::Tune(_)));
    }
}
